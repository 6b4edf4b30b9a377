//! Planning a stack: derived names and ARNs known before apply, tags, replacement triggers, drift repair,
//! checks that need the provider's context (capacity, Terraform features), and the checks that block a
//! destroy before it starts.

use crate::aws::{self, AwsContext};
use crate::framework::{AttributePath, Diagnostic, Diagnostics, PlannedChange, RequestContext, Value};

use super::model::{
    COMPONENTS, StackSpec, bucket_arn, default_archive_bucket, default_state_bucket, log_group_name, merged_tags,
};
use super::parts::archive_not_empty_message;
use super::schema::SERVICES;

/// Outputs that exist once their part exists: null in state means the part went missing.
const PART_OUTPUTS: &[&str] = &[
    "archive_bucket_arn",
    "state_bucket_arn",
    "log_group_arn",
    "cluster_arn",
    "autoscaling_group_name",
    "launch_template_id",
    "database_endpoint",
    "database_secret_arn",
    "rabbitmq_secret_arn",
    "file_system_id",
    "web_url",
];

/// Map outputs with the keys they have once every part of theirs exists.
fn map_outputs() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("ecr_repository_urls", COMPONENTS.to_vec()),
        ("security_group_ids", vec!["instances", "services", "database", "file_system"]),
        ("service_arns", SERVICES.to_vec()),
        ("service_discovery_names", SERVICES.iter().copied().filter(|s| *s != "worker").collect()),
    ]
}

/// Fills in what the provider knows at plan time on top of the framework's generic plan.
pub fn modify_plan(ctx: &RequestContext, change: &mut PlannedChange, aws: &AwsContext) -> Diagnostics {
    let mut diagnostics = Diagnostics::new();
    check_write_only(ctx, &change.config, &mut diagnostics);
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
        mark_missing_outputs(planned);
    }
    // Unknown settings here are ones the configuration leaves to the provider, which means defaults;
    // settings the configuration itself does not know yet cannot be checked.
    if change.config.get("cluster").is_wholly_known() && change.config.get("services").is_wholly_known() {
        check_capacity(&StackSpec::from_value(planned, aws), &mut diagnostics);
    }
    diagnostics
}

/// A part that went missing out of band left its outputs null (or its key out of a map): they come back
/// on apply.
fn mark_missing_outputs(planned: &mut Value) {
    for output in PART_OUTPUTS {
        if planned.get(output).is_null() {
            planned.set(output, Value::Unknown);
        }
    }
    for (output, keys) in map_outputs() {
        let complete =
            planned.get(output).as_map().is_some_and(|m| keys.iter().all(|k| m.get(*k).is_some_and(|v| !v.is_null())));
        if !complete {
            planned.set(output, Value::Unknown);
        }
    }
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

/// A write-only password needs a Terraform that keeps it out of plan and state (>= 1.11); an older one
/// would store it, so it is refused rather than leaked.
fn check_write_only(ctx: &RequestContext, config: &Value, diagnostics: &mut Diagnostics) {
    let database = config.get("database");
    if !database.get("password_wo").is_null() && !ctx.write_only_allowed {
        diagnostics.push(
            Diagnostic::error(
                "Write-Only Password Needs Terraform 1.11",
                "database.password_wo is a write-only attribute, which this Terraform does not support: it would store \
                 the password in plan and state. Upgrade to Terraform 1.11 or newer, or remove password_wo to let RDS \
                 manage the password in Secrets Manager.",
            )
            .at(AttributePath::root("database").attribute("password_wo")),
        );
    }
    if !database.get("password_wo").is_null() && database.get("password_wo_version").is_null() {
        diagnostics.push(
            Diagnostic::error(
                "Password Version Missing",
                "Set database.password_wo_version together with password_wo, and change it whenever the password \
                 changes: write-only values are never stored, so the version is how a change is noticed.",
            )
            .at(AttributePath::root("database").attribute("password_wo_version")),
        );
    }
}

/// Each awsvpc task takes a network interface of its instance: the services must fit on the instances.
fn check_capacity(spec: &StackSpec, diagnostics: &mut Diagnostics) {
    let tasks = spec.total_tasks();
    let instance_type = &spec.cluster.instance_type;
    let Some(per_instance) = aws::ec2::awsvpc_tasks_per_instance(instance_type) else {
        diagnostics.warning(
            "Capacity Not Checked",
            format!("The provider does not know how many network interfaces a {instance_type} has, so it cannot check that the {tasks} tasks fit on the instances."),
        );
        return;
    };
    let capacity = i64::from(per_instance) * spec.cluster.desired_capacity;
    if tasks > capacity {
        diagnostics.push(
            Diagnostic::error(
                "Services Do Not Fit On The Instances",
                format!(
                    "The services ask for {tasks} tasks, but {} {instance_type} instances hold only {capacity}: each task \
                     uses one network interface (awsvpc networking) and a {instance_type} has {per_instance} besides its \
                     own. Raise cluster.desired_capacity (and max_size) to at least {}, or use a larger instance type.",
                    spec.cluster.desired_capacity,
                    (tasks + i64::from(per_instance) - 1) / i64::from(per_instance).max(1)
                ),
            )
            .at(AttributePath::root("cluster").attribute("desired_capacity")),
        );
    }
}

/// Checks a planned destroy: archived data blocks it (unless force_destroy), deletion protection blocks it,
/// and the retained state bucket is announced.
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
    if spec.database.deletion_protection
        && let Ok(Some(_)) = aws::rds::describe_instance(&aws.rds, &spec.name).await
    {
        diags.push(
            Diagnostic::error(
                "Database Deletion Protection Is On",
                format!(
                    "The database {} has deletion protection. To destroy the stack, set database.deletion_protection = \
                         false and apply first; a final snapshot is still taken unless skip_final_snapshot is true.",
                    spec.name
                ),
            )
            .at(AttributePath::root("database").attribute("deletion_protection")),
        );
    }
    diags.warning(
        "State Bucket Will Be Retained",
        format!(
            "Destroying stack {} keeps its state bucket {}: it may hold Terraform state. Delete it yourself once nothing uses it.",
            spec.name, spec.state_bucket
        ),
    );
    diags
}
