//! AWS KMS: reads of the customer-managed key a stack encrypts with, so that plan refuses a key AWS would
//! refuse only at apply, after other parts were made. The stack never creates, changes or deletes keys.

use aws_sdk_kms::Client;
use serde_json::Value as Json;

use super::{AwsError, AwsResult};

/// What the stack needs to know about a key before encrypting with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key's ARN as KMS reports it.
    pub arn: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`, ...
    pub state: String,
    /// `ENCRYPT_DECRYPT` for keys that can encrypt data (when KMS says; it is the default).
    pub usage: Option<String>,
    /// `SYMMETRIC_DEFAULT` for the only kind S3, RDS, EFS, ECR, EBS, Logs and Secrets Manager accept.
    pub spec: String,
    /// Whether AWS manages the key (`aws/s3` and the like), which other services cannot be granted.
    pub aws_managed: bool,
}

/// Describes the key; `None` when KMS does not know it (in this account and region, or not shared with it).
pub async fn describe(client: &Client, key_arn: &str) -> AwsResult<Option<KeyFacts>> {
    let out = match client.describe_key().key_id(key_arn).send().await {
        Ok(out) => out,
        Err(err) => {
            let err = AwsError::from_sdk("DescribeKey", err);
            return if err.is(&["NotFoundException"]) { Ok(None) } else { Err(err) };
        }
    };
    let Some(meta) = out.key_metadata() else { return Ok(None) };
    Ok(Some(KeyFacts {
        arn: meta.arn().unwrap_or(key_arn).to_string(),
        state: meta.key_state().map_or("unknown", |s| s.as_str()).to_string(),
        usage: meta.key_usage().map(|u| u.as_str().to_string()),
        spec: meta.key_spec().map_or("SYMMETRIC_DEFAULT", |s| s.as_str()).to_string(),
        aws_managed: meta.key_manager().is_some_and(|m| m.as_str() == "AWS"),
    }))
}

/// Whether a key reference a service reports (a key ARN, or the bare key id some services echo back) names
/// the key `wanted`, a key ARN.
pub fn same_key(found: Option<&str>, wanted: &str) -> bool {
    let id = |key: &str| key.rsplit_once("key/").map_or(key, |(_, id)| id).to_string();
    found.is_some_and(|found| id(found) == id(wanted))
}

/// Why the stack's services could not encrypt with this key, one sentence each.
pub fn key_problems(key: &KeyFacts) -> Vec<String> {
    let mut problems = Vec::new();
    if key.state != "Enabled" {
        problems.push(format!("the key is {}, so no service can encrypt with it", key.state));
    }
    if let Some(usage) = key.usage.as_deref().filter(|u| *u != "ENCRYPT_DECRYPT") {
        problems.push(format!("its key usage is {usage}; data encryption needs ENCRYPT_DECRYPT"));
    }
    if key.spec != "SYMMETRIC_DEFAULT" {
        problems.push(format!(
            "it is a {} key; S3, RDS, EFS, ECR, EBS, CloudWatch Logs and Secrets Manager accept symmetric keys only",
            key.spec
        ));
    }
    if key.aws_managed {
        problems.push(
            "it is an AWS managed key, which only its own service may use; give a customer managed key".to_string(),
        );
    }
    problems
}

/// The key's policy; `None` when the caller may not read it (kms:GetKeyPolicy is often withheld from
/// deployment roles, and the policy is then simply not checked).
pub async fn policy(client: &Client, key_arn: &str) -> AwsResult<Option<String>> {
    match client.get_key_policy().key_id(key_arn).policy_name("default").send().await {
        Ok(out) => Ok(out.policy().map(str::to_string)),
        Err(err) => {
            let err = AwsError::from_sdk("GetKeyPolicy", err);
            if err.is(&["AccessDeniedException"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// The Auto Scaling service-linked role, which launches the instances and so must use the key for their
/// encrypted root volumes.
pub fn autoscaling_service_role(partition: &str, account: &str) -> String {
    format!(
        "arn:{partition}:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    )
}

/// The CloudWatch Logs principal of a region, which encrypts the log groups' events itself.
pub fn logs_service_principal(region: &str) -> String {
    format!("logs.{region}.amazonaws.com")
}

/// Which of `principals` no statement of the key policy allows (by name or `*`): each would be refused when it
/// uses the key, unless a grant lets it. Principals are matched as written; an unreadable policy lacks none.
pub fn principals_not_allowed<'a>(policy: &str, principals: &[&'a str]) -> Vec<&'a str> {
    let Ok(policy) = serde_json::from_str::<Json>(policy) else { return Vec::new() };
    let statements = match &policy["Statement"] {
        Json::Array(statements) => statements.clone(),
        single @ Json::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut allowed = Vec::new();
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        collect_strings(&statement["Principal"], &mut allowed);
    }
    principals.iter().copied().filter(|p| !allowed.iter().any(|a| a == "*" || a == p)).collect()
}

/// Every string inside a policy's `Principal` element (`"*"`, or `AWS` / `Service` with one or many).
fn collect_strings(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Json::Object(entries) => entries.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyFacts {
        KeyFacts {
            arn: "arn:aws:kms:eu-west-2:123456789012:key/k".into(),
            state: "Enabled".into(),
            usage: Some("ENCRYPT_DECRYPT".into()),
            spec: "SYMMETRIC_DEFAULT".into(),
            aws_managed: false,
        }
    }

    #[test]
    fn keys_compare_by_id_whatever_form_a_service_reports() {
        let arn = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd";
        assert!(same_key(Some(arn), arn));
        assert!(same_key(Some("1234abcd"), arn));
        assert!(!same_key(Some("arn:aws:kms:eu-west-2:123456789012:key/other"), arn));
        assert!(!same_key(None, arn));
    }

    #[test]
    fn an_enabled_symmetric_customer_key_is_usable() {
        assert!(key_problems(&key()).is_empty());
    }

    #[test]
    fn disabled_asymmetric_signing_and_aws_managed_keys_are_not() {
        let bad = KeyFacts {
            state: "PendingDeletion".into(),
            usage: Some("SIGN_VERIFY".into()),
            spec: "RSA_2048".into(),
            aws_managed: true,
            ..key()
        };
        let problems = key_problems(&bad);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("PendingDeletion"));
        assert!(problems[1].contains("SIGN_VERIFY"));
        assert!(problems[2].contains("RSA_2048"));
        assert!(problems[3].contains("AWS managed"));
    }

    #[test]
    fn a_default_key_policy_names_neither_logs_nor_auto_scaling() {
        let default = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow",
            "Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;
        let logs = logs_service_principal("eu-west-2");
        let asg = autoscaling_service_role("aws", "123456789012");
        assert_eq!(principals_not_allowed(default, &[&logs, &asg]), [logs.as_str(), asg.as_str()]);
    }

    #[test]
    fn principals_are_found_in_lists_single_statements_and_wildcards() {
        let logs = logs_service_principal("eu-west-2");
        let asg = autoscaling_service_role("aws", "123456789012");
        let policy = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"Service":["{logs}"]}},"Action":"kms:*"}},
                {{"Effect":"Allow","Principal":{{"AWS":["arn:aws:iam::123456789012:root","{asg}"]}}}}]}}"#
        );
        assert!(principals_not_allowed(&policy, &[&logs, &asg]).is_empty());
        let denied = format!(r#"{{"Statement":{{"Effect":"Deny","Principal":{{"Service":"{logs}"}}}}}}"#);
        assert_eq!(principals_not_allowed(&denied, &[&logs]), [logs.as_str()]);
        let everyone = r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#;
        assert!(principals_not_allowed(everyone, &[&logs, &asg]).is_empty());
        assert!(principals_not_allowed("not json", &[&logs]).is_empty());
    }
}
