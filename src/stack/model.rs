//! The stack's desired shape, derived from a planned (or stored) value: every name and setting the parts
//! need, so no part reads Terraform values directly.

use std::collections::BTreeMap;

use crate::aws::{AwsContext, PART_TAG, STACK_TAG};
use crate::framework::Value;

use super::schema::DEFAULT_LOG_RETENTION_DAYS;

/// The three DataVault images built by the project, one ECR repository each.
pub const COMPONENTS: [&str; 3] = ["web", "broker", "worker"];

/// Everything the parts need to know about the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    /// The stack's name.
    pub name: String,
    /// Archive bucket name.
    pub archive_bucket: String,
    /// Whether destroy may delete a non-empty archive bucket.
    pub archive_force_destroy: bool,
    /// State bucket name.
    pub state_bucket: String,
    /// CloudWatch log group name.
    pub log_group: String,
    /// Log retention in days.
    pub log_retention_days: i64,
    /// Provider default tags merged with the resource's tags.
    pub tags_all: BTreeMap<String, String>,
    /// The region.
    pub region: String,
    /// The partition, for ARNs.
    pub partition: String,
}

/// The default archive bucket name.
pub fn default_archive_bucket(name: &str) -> String {
    format!("{name}-archive")
}

/// The default state bucket name.
pub fn default_state_bucket(name: &str) -> String {
    format!("{name}-state")
}

/// The log group name.
pub fn log_group_name(name: &str) -> String {
    format!("/datavault/{name}")
}

/// An ECR repository name.
pub fn repository_name(name: &str, component: &str) -> String {
    format!("{name}/{component}")
}

/// An S3 bucket ARN.
pub fn bucket_arn(partition: &str, bucket: &str) -> String {
    format!("arn:{partition}:s3:::{bucket}")
}

/// Provider default tags overlaid with the resource's tags.
pub fn merged_tags(defaults: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = defaults.clone();
    all.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

impl StackSpec {
    /// Derives the spec from a wholly known planned or stored value.
    pub fn from_value(value: &Value, aws: &AwsContext) -> StackSpec {
        let name = value.get("name").as_str().unwrap_or_default().to_string();
        let tags = value.get("tags").as_string_map().unwrap_or_default();
        StackSpec {
            archive_bucket: value
                .get("archive_bucket_name")
                .as_str()
                .map_or_else(|| default_archive_bucket(&name), str::to_string),
            archive_force_destroy: value.get("archive_force_destroy").as_bool().unwrap_or(false),
            state_bucket: value
                .get("state_bucket_name")
                .as_str()
                .map_or_else(|| default_state_bucket(&name), str::to_string),
            log_group: log_group_name(&name),
            log_retention_days: value.get("log_retention_days").as_i64().unwrap_or(DEFAULT_LOG_RETENTION_DAYS),
            tags_all: merged_tags(&aws.default_tags, &tags),
            region: aws.region.clone(),
            partition: aws.partition.clone(),
            name,
        }
    }

    /// The tags one part carries: all user tags plus the stack and part markers.
    pub fn part_tags(&self, part: &str) -> BTreeMap<String, String> {
        let mut tags = self.tags_all.clone();
        tags.insert(STACK_TAG.to_string(), self.name.clone());
        tags.insert(PART_TAG.to_string(), part.to_string());
        tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_tags_mark_stack_and_part_over_user_tags() {
        let spec = StackSpec {
            name: "vault".into(),
            archive_bucket: default_archive_bucket("vault"),
            archive_force_destroy: false,
            state_bucket: default_state_bucket("vault"),
            log_group: log_group_name("vault"),
            log_retention_days: 365,
            tags_all: BTreeMap::from([("team".to_string(), "rdm".to_string())]),
            region: "eu-west-2".into(),
            partition: "aws".into(),
        };
        let tags = spec.part_tags("archive_bucket");
        assert_eq!(tags["datavault:stack"], "vault");
        assert_eq!(tags["datavault:part"], "archive_bucket");
        assert_eq!(tags["team"], "rdm");
        assert_eq!(spec.archive_bucket, "vault-archive");
        assert_eq!(repository_name("vault", "web"), "vault/web");
    }
}
