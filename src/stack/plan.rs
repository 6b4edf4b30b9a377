//! Planning a stack: derived names and ARNs known before apply, tags, replacement triggers, drift repair,
//! and the checks that block a destroy before it starts.

use crate::aws::{self, AwsContext};
use crate::framework::{AttributePath, Diagnostic, Diagnostics, PlannedChange, Value};

use super::model::{StackSpec, bucket_arn, default_archive_bucket, default_state_bucket, log_group_name, merged_tags};
use super::parts::archive_not_empty_message;

/// Outputs that exist once their part exists; null in state means the part went missing.
const PART_OUTPUTS: &[&str] = &["archive_bucket_arn", "state_bucket_arn", "ecr_repository_urls", "log_group_arn"];

/// Fills in what the provider knows at plan time on top of the framework's generic plan.
pub fn modify_plan(change: &mut PlannedChange, aws: &AwsContext) {
    let planned = &mut change.planned;
    let name = planned.get("name").as_str().map(str::to_string);
    planned.set("region", Value::string(&aws.region));
    planned.set("drift", Value::List(vec![]));
    match &name {
        Some(name) => {
            planned.set("id", Value::string(name));
            planned.set("log_group_name", Value::string(log_group_name(name)));
            derive_bucket(
                planned,
                &change.config,
                "archive_bucket_name",
                "archive_bucket_arn",
                default_archive_bucket(name),
                aws,
            );
            derive_bucket(
                planned,
                &change.config,
                "state_bucket_name",
                "state_bucket_arn",
                default_state_bucket(name),
                aws,
            );
        }
        None => {
            for attribute in ["id", "log_group_name", "archive_bucket_arn", "state_bucket_arn"] {
                planned.set(attribute, Value::Unknown);
            }
        }
    }
    planned.set(
        "tags_all",
        match planned.get("tags") {
            Value::Null => Value::string_map(&aws.default_tags),
            tags => tags
                .as_string_map()
                .map_or(Value::Unknown, |tags| Value::string_map(&merged_tags(&aws.default_tags, &tags))),
        },
    );
    if !change.prior.is_null() {
        // A part that went missing out of band left its outputs null: they come back on apply.
        for output in PART_OUTPUTS {
            if planned.get(output).is_null()
                || (*output == "ecr_repository_urls" && !all_repositories(planned.get(output)))
            {
                planned.set(output, Value::Unknown);
            }
        }
    }
}

fn all_repositories(urls: &Value) -> bool {
    urls.as_map().is_some_and(|m| super::model::COMPONENTS.iter().all(|c| m.get(*c).is_some_and(|v| !v.is_null())))
}

fn derive_bucket(
    planned: &mut Value,
    config: &Value,
    name_attr: &str,
    arn_attr: &str,
    default: String,
    aws: &AwsContext,
) {
    let bucket = match config.get(name_attr) {
        Value::Null => Value::string(default),
        configured => configured.clone(),
    };
    let arn = bucket.as_str().map_or(Value::Unknown, |b| Value::string(bucket_arn(&aws.partition, b)));
    planned.set(name_attr, bucket);
    planned.set(arn_attr, arn);
}

/// Checks a planned destroy: archived data blocks it (unless force_destroy), and the retained state bucket
/// is announced.
pub async fn plan_destroy(prior: &Value, aws: &AwsContext) -> Diagnostics {
    let spec = StackSpec::from_value(prior, aws);
    let mut diags = Diagnostics::new();
    if !spec.archive_force_destroy {
        match aws::s3::exists(&aws.s3, &spec.archive_bucket).await {
            Ok(true) => match aws::s3::is_empty(&aws.s3, &spec.archive_bucket).await {
                Ok(true) => {}
                Ok(false) => diags.push(
                    Diagnostic::error("Archive Bucket Holds Data", archive_not_empty_message(&spec.archive_bucket))
                        .at(AttributePath::root("archive_force_destroy")),
                ),
                Err(e) => diags.warning(
                    "Archive Bucket Not Checked",
                    format!("Could not check whether the archive bucket is empty ({e}); destroy will check again."),
                ),
            },
            Ok(false) => {}
            Err(e) => diags.warning(
                "Archive Bucket Not Checked",
                format!("Could not check the archive bucket ({e}); destroy will check again."),
            ),
        }
    }
    diags.warning(
        "State Bucket Will Be Retained",
        format!("Destroying stack {} keeps its state bucket {}: it may hold Terraform state. Delete it yourself once nothing uses it.", spec.name, spec.state_bucket),
    );
    diags
}
