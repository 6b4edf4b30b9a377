//! The `datavault_stack` schema and the static checks of its configuration.

use crate::aws::logs::ALLOWED_RETENTION_DAYS;
use crate::framework::{Attribute, AttributePath, Block, Diagnostics, Schema, Type, Value};

/// Default log retention: one year, the AWS Foundational Security Best Practices minimum (CloudWatch.16).
pub const DEFAULT_LOG_RETENTION_DAYS: i64 = 365;
/// Longest stack name: it prefixes names with tight limits (load balancers and target groups: 32).
pub const MAX_NAME_LENGTH: usize = 24;

/// The resource schema.
pub fn stack_schema() -> Schema {
    let attributes = vec![
        Attribute::required("name", Type::String, "Name of the stack. Every AWS resource of the stack is named from it and tagged `datavault:stack = <name>`. 3 to 24 characters: lowercase letters, digits and hyphens, starting with a letter. Changing it replaces the whole stack.").requires_replace(),
        Attribute::optional("tags", Type::map_of_strings(), "Tags for every AWS resource of the stack, on top of the provider's `default_tags`."),
        Attribute::optional_computed("archive_bucket_name", Type::String, "Name of the S3 bucket holding archived research data. Defaults to `<name>-archive`. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("archive_force_destroy", Type::Bool, "Allow destroy to delete the archive bucket while it still holds data (every object version is deleted). Defaults to `false`: destroy stops with an error instead.").default(Value::Bool(false)),
        Attribute::optional_computed("state_bucket_name", Type::String, "Name of the S3 bucket for Terraform state. Defaults to `<name>-state`. Destroy never deletes it: it is retained and reported. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("log_retention_days", Type::Number, "Days CloudWatch Logs keeps the stack's logs. One of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653. Defaults to 365.").default(Value::Number(DEFAULT_LOG_RETENTION_DAYS as f64)),
        Attribute::computed("id", Type::String, "The stack's name, which is also its import id."),
        Attribute::computed("region", Type::String, "AWS region of the stack. A provider configured for another region replaces the stack.").requires_replace(),
        Attribute::computed("tags_all", Type::map_of_strings(), "All tags of the stack's resources: the provider's `default_tags` merged with `tags`."),
        Attribute::computed("archive_bucket_arn", Type::String, "ARN of the archive bucket."),
        Attribute::computed("state_bucket_arn", Type::String, "ARN of the state bucket."),
        Attribute::computed("ecr_repository_urls", Type::map_of_strings(), "Repository URLs to push the DataVault images to, keyed by `web`, `broker` and `worker`."),
        Attribute::computed("log_group_name", Type::String, "Name of the CloudWatch log group (`/datavault/<name>`)."),
        Attribute::computed("log_group_arn", Type::String, "ARN of the CloudWatch log group."),
        Attribute::computed("drift", Type::list_of_strings(), "Differences between the stack's AWS resources and their managed settings, found by the last refresh. Empty after every apply, which repairs them."),
    ];
    Schema {
        version: 0,
        block: Block {
            attributes,
            blocks: vec![],
            description: "A complete DataVault deployment on AWS, managed as one resource.".into(),
        },
    }
}

/// Why a stack name is invalid, if it is.
pub fn name_problem(name: &str) -> Option<String> {
    let len = name.chars().count();
    if !(3..=MAX_NAME_LENGTH).contains(&len) {
        return Some(format!("must be 3 to {MAX_NAME_LENGTH} characters long, not {len}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    if name.ends_with('-') {
        return Some("must not end with a hyphen".into());
    }
    if name.contains("--") {
        return Some("must not contain two hyphens in a row".into());
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Some(format!("may contain only lowercase letters, digits and hyphens, not {bad:?}"));
    }
    None
}

/// Why a bucket name is invalid, if it is (the S3 naming rules that matter in practice).
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Some(format!("must be 3 to 63 characters long, not {len}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    if name.chars().any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')) {
        return Some("may contain only lowercase letters, digits, hyphens and dots".into());
    }
    if name.contains("..") {
        return Some("must not contain two dots in a row".into());
    }
    None
}

/// Checks the known parts of a configuration.
pub fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(name) = config.get("name").as_str()
        && let Some(problem) = name_problem(name)
    {
        diags.attribute_error(
                AttributePath::root("name"),
                "Invalid Stack Name",
                format!("The stack name {name:?} {problem}. It names S3 buckets, ECR repositories and other AWS resources, so it is restricted to what all of them accept."),
            );
    }
    for attribute in ["archive_bucket_name", "state_bucket_name"] {
        if let Some(bucket) = config.get(attribute).as_str()
            && let Some(problem) = bucket_name_problem(bucket)
        {
            diags.attribute_error(
                AttributePath::root(attribute),
                "Invalid Bucket Name",
                format!("The bucket name {bucket:?} {problem}."),
            );
        }
    }
    if let (Some(archive), Some(state)) =
        (config.get("archive_bucket_name").as_str(), config.get("state_bucket_name").as_str())
        && archive == state
    {
        diags.attribute_error(
            AttributePath::root("state_bucket_name"),
            "Same Bucket For Archive And State",
            "The archive bucket and the state bucket must be different buckets.",
        );
    }
    let retention = config.get("log_retention_days");
    if let Some(days) = retention.as_f64()
        && (days.fract() != 0.0 || !ALLOWED_RETENTION_DAYS.contains(&(days as i64)))
    {
        diags.attribute_error(
            AttributePath::root("log_retention_days"),
            "Invalid Log Retention",
            format!(
                "CloudWatch Logs cannot keep logs for {days} days. Use one of: {}.",
                ALLOWED_RETENTION_DAYS.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    if let Some(tags) = config.get("tags").as_map() {
        for key in tags.keys() {
            if key.starts_with("datavault:") || key.starts_with("aws:") {
                diags.attribute_error(
                    AttributePath::root("tags").key(key),
                    "Reserved Tag Key",
                    format!("The tag key {key:?} is reserved: keys starting with \"datavault:\" are set by the provider and \"aws:\" by AWS."),
                );
            }
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_must_fit_every_aws_naming_rule() {
        assert_eq!(name_problem("rdss-datavault"), None);
        assert!(name_problem("Bad_Name").is_some());
        assert!(name_problem("x").is_some());
        assert!(name_problem("1abc").is_some());
        assert!(name_problem("abc-").is_some());
        assert!(name_problem("a--b").is_some());
        assert!(name_problem(&"a".repeat(MAX_NAME_LENGTH + 1)).is_some());
    }

    #[test]
    fn invalid_values_are_reported_at_their_attribute() {
        let config = Value::Map(
            [
                ("name".to_string(), Value::string("Bad_Name")),
                ("log_retention_days".to_string(), Value::Number(42.0)),
                ("tags".to_string(), Value::Map([("datavault:stack".to_string(), Value::string("x"))].into())),
            ]
            .into(),
        );
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(paths, vec!["name", "log_retention_days", "tags[\"datavault:stack\"]"]);
    }

    #[test]
    fn unknown_values_are_not_judged() {
        let config = Value::Map(
            [("name".to_string(), Value::Unknown), ("log_retention_days".to_string(), Value::Unknown)].into(),
        );
        assert!(!validate(&config).has_errors());
    }

    #[test]
    fn every_attribute_is_documented() {
        for attribute in stack_schema().block.attributes {
            assert!(attribute.description.ends_with('.'), "{} needs a full-sentence description", attribute.name);
        }
    }
}
