//! AWS service modules: one small module per service, each with idempotent ensure / describe / delete
//! functions that the stack's parts call. Absent is success for deletes; "already exists" is adoption for
//! creates. Nothing here knows about Terraform.

pub mod autoscaling;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod efs;
pub mod elbv2;
pub mod iam;
pub mod kms;
pub mod logs;
pub mod rds;
pub mod s3;
pub mod secretsmanager;
pub mod servicediscovery;
pub mod ssm;
pub mod wait;

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;

/// The tag every part carries so a stack can find its own parts again.
pub const STACK_TAG: &str = "datavault:stack";
/// The tag naming which part of the stack a resource is.
pub const PART_TAG: &str = "datavault:part";
/// The tag on a stack's ECS cluster saying that an apply of the whole stack finished (its value: when, in
/// RFC 3339): from then on a Terraform state records the stack, so a configuration creating a stack of the
/// same name belongs to another state, and must import it rather than take it over.
pub const DEPLOYED_TAG: &str = "datavault:deployed";

/// Whether a tag key is not the configuration's to set: `datavault:` keys are the provider's markers,
/// `aws:` keys AWS's own (no API may set or remove them).
pub fn is_reserved_tag_key(key: &str) -> bool {
    key.starts_with("datavault:") || key.starts_with("aws:")
}

/// Refuses to take over an existing resource whose tags give it to another stack; `wanted` are the tags the
/// stack would give it. The plan's and apply's ownership survey judges every part before the first write;
/// this is the last look at the moment of writing, for a look-alike that appeared since (an adoption after
/// "already exists", a secret restored from deletion). Untagged resources pass here: whether to adopt them
/// is the survey's decision, which the user controls.
pub fn refuse_foreign(
    operation: &'static str,
    what: &str,
    found: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> AwsResult<()> {
    match (found.get(STACK_TAG), wanted.get(STACK_TAG)) {
        (Some(theirs), Some(ours)) if theirs != ours => Err(AwsError::other(
            operation,
            format!(
                "{what} exists and is tagged {STACK_TAG} = {theirs}: it belongs to another stack, and this \
                 stack changes nothing it does not own. Give this stack another name, or remove that resource."
            ),
        )),
        _ => Ok(()),
    }
}

/// The tags of `wanted` that `current` lacks or gives another value: what a tagging call must still write.
/// Tagging calls only add and overwrite, so tags someone else added stay; an empty result means no call.
/// Every ensure writes only this, so an apply that changes one part does not spend AWS's write limits
/// (IAM's are a few requests a second per account) re-tagging all the others.
pub fn tags_to_write(
    wanted: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    wanted.iter().filter(|(k, v)| current.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The service clients and account facts the stack needs, built once when the provider is configured.
#[derive(Debug, Clone)]
pub struct AwsContext {
    /// Amazon S3.
    pub s3: aws_sdk_s3::Client,
    /// Amazon ECR.
    pub ecr: aws_sdk_ecr::Client,
    /// Amazon CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Amazon EC2 (network lookup, security groups, launch templates).
    pub ec2: aws_sdk_ec2::Client,
    /// Amazon EC2 Auto Scaling.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// Amazon ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// Amazon EFS.
    pub efs: aws_sdk_efs::Client,
    /// Elastic Load Balancing v2.
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// AWS IAM.
    pub iam: aws_sdk_iam::Client,
    /// AWS KMS (reads of the stack's customer-managed key only).
    pub kms: aws_sdk_kms::Client,
    /// Amazon RDS.
    pub rds: aws_sdk_rds::Client,
    /// AWS Secrets Manager.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// AWS Cloud Map.
    pub servicediscovery: aws_sdk_servicediscovery::Client,
    /// AWS Systems Manager (public parameters such as the ECS-optimized AMI).
    pub ssm: aws_sdk_ssm::Client,
    /// The region every part lives in.
    pub region: String,
    /// `aws`, `aws-cn` or `aws-us-gov`, for building ARNs.
    pub partition: String,
    /// Tags from the provider's `default_tags`.
    pub default_tags: BTreeMap<String, String>,
    /// The account the credentials belong to, when the provider checked them.
    pub account_id: Option<String>,
}

/// A failed AWS call, with the operation and the service's error code kept for decisions and messages.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// The API operation, e.g. `CreateBucket`.
    pub operation: &'static str,
    /// The service's error code, e.g. `NoSuchBucket`, when it gave one.
    pub code: Option<String>,
    /// A readable message.
    pub message: String,
}

impl AwsError {
    /// Wraps an SDK error.
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let code = err.code().map(str::to_string);
        let message = match &err {
            SdkError::ServiceError(service) => {
                service.err().message().map(str::to_string).unwrap_or_else(|| service.err().to_string())
            }
            other => aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
        };
        AwsError { operation, code, message }
    }

    /// An error that did not come from an AWS response (e.g. an unexpected reply).
    pub fn other(operation: &'static str, message: impl Into<String>) -> Self {
        AwsError { operation, code: None, message: message.into() }
    }

    /// Whether the service answered with one of these error codes.
    pub fn is(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl std::error::Error for AwsError {}

impl From<aws_smithy_types::error::operation::BuildError> for AwsError {
    fn from(err: aws_smithy_types::error::operation::BuildError) -> Self {
        AwsError::other("building a request", err.to_string())
    }
}

/// Result of an AWS helper.
pub type AwsResult<T> = Result<T, AwsError>;

/// The stack's tags as a service's own tag type, in key order. Every SDK has its own `Tag`, so the caller
/// says how one is made (and anything else the service wants on it).
pub(crate) fn tags_as<T>(tags: &BTreeMap<String, String>, make: impl Fn(&str, &str) -> T) -> Vec<T> {
    tags.iter().map(|(k, v)| make(k, v)).collect()
}

/// [`tags_as`] for the SDKs whose tag builder checks its required fields, and so can fail.
pub(crate) fn try_tags_as<T>(
    tags: &BTreeMap<String, String>,
    make: impl Fn(&str, &str) -> Result<T, aws_smithy_types::error::operation::BuildError>,
) -> AwsResult<Vec<T>> {
    tags.iter().map(|(k, v)| make(k, v).map_err(AwsError::from)).collect()
}

/// A service's tags, given as (key, value) pairs, back as a map. Some SDKs model both as optional: a tag
/// without a key is dropped, a missing value reads as empty.
pub(crate) fn tag_map<'a, K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<String, String>
where
    K: Into<Option<&'a str>>,
    V: Into<Option<&'a str>>,
{
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((k.into()?.to_string(), v.into().unwrap_or_default().to_string())))
        .collect()
}

pub use wait::deadline_after;

/// The partition of a region, for ARNs.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_deadlines_do_not_overflow() {
        assert!(deadline_after(std::time::Duration::MAX) > tokio::time::Instant::now());
    }

    #[test]
    fn partitions_follow_region_prefixes() {
        assert_eq!(partition_of("eu-west-2"), "aws");
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }

    #[test]
    fn error_codes_drive_decisions() {
        let err = AwsError { operation: "HeadBucket", code: Some("NotFound".into()), message: "gone".into() };
        assert!(err.is(&["NoSuchBucket", "NotFound"]));
        assert_eq!(err.to_string(), "HeadBucket failed: NotFound: gone");
    }

    #[test]
    fn tags_convert_both_ways() {
        let tags: BTreeMap<String, String> =
            [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())].into();
        assert_eq!(tags_as(&tags, |k, v| format!("{k}={v}")), ["a=1", "b=2"]);
        assert_eq!(try_tags_as(&tags, |k, _| Ok(k.len())).unwrap(), [1, 1]);
        let read = tag_map([(Some("a"), Some("1")), (None, Some("lost")), (Some("b"), None)]);
        assert_eq!(read, BTreeMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), String::new())]));
        assert_eq!(tag_map([("a", "1")]), BTreeMap::from([("a".to_string(), "1".to_string())]));
    }

    #[test]
    fn only_another_stacks_tag_is_refused_at_the_moment_of_writing() {
        let tags = |stack: Option<&str>| -> BTreeMap<String, String> {
            stack.map(|s| (STACK_TAG.to_string(), s.to_string())).into_iter().collect()
        };
        let ours = tags(Some("shop"));
        let refused = refuse_foreign("RestoreSecret", "secret shop/database", &tags(Some("other")), &ours).unwrap_err();
        assert!(refused.message.contains("secret shop/database") && refused.message.contains("= other"), "{refused}");
        assert!(refuse_foreign("X", "x", &tags(Some("shop")), &ours).is_ok());
        assert!(refuse_foreign("X", "x", &tags(None), &ours).is_ok(), "untagged ones are the survey's to judge");
    }
}
