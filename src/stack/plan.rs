//! Planning a stack: derived names and ARNs known before apply, tags, replacement triggers, drift repair,
//! checks that need the provider's context (capacity, Terraform features), and the checks that block a
//! destroy before it starts.

use std::collections::BTreeMap;

use crate::aws::{self, AwsContext};
use crate::framework::{AttributePath, Diagnostic, Diagnostics, PlannedChange, RequestContext, Value};

use super::apply::{internal_web_url, new_version, public_web_url};
use super::model::{
    COMPONENTS, StackSpec, access_log_bucket_name, bucket_arn, default_archive_bucket, default_state_bucket,
    log_group_name, merged_tags,
};
use super::outputs::{MAP_OUTPUTS, PART_OUTPUTS};
use super::ownership::{PrivateState, Report, conflict_diagnostics, deployed_elsewhere};
use super::parts::{Part, dns_name};
use super::service::Service;
use super::survey::{Purpose, survey};
use super::{checks, guard};

/// Fills in what the provider knows at plan time on top of the framework's generic plan, and refuses now,
/// with read-only calls only, what apply would otherwise find out after writing: names taken by resources
/// the stack does not own.
pub async fn modify_plan(ctx: &RequestContext, change: &mut PlannedChange, aws: &AwsContext) -> Diagnostics {
    let mut diagnostics = plan_settings(ctx, change, aws);
    if diagnostics.has_errors() || !change.planned.get("name").is_wholly_known() {
        return diagnostics;
    }
    let spec = StackSpec::from_value(&change.planned, aws);
    let checks = checks::plan_checks(aws, &spec, &change.prior, &change.planned, &change.config);
    let (conflicts, report) = if change.prior.is_null() {
        // A new stack: look for everything under its names (a killed apply's parts are the stack's own and
        // are adopted; one whose apply finished is another state's, or the stack this plan replaces;
        // anything else is not). Beside the checks, since both only read: the network lookup
        // each starts with is three rounds of requests.
        let consequence = "The plan could not check the stack's names.";
        let possible = Part::possible();
        let survey = survey(&ctx.cancel, aws, &spec, &possible, Purpose::Ownership, consequence);
        let (checked, surveyed) = tokio::join!(checks, survey);
        diagnostics.extend(checked);
        if diagnostics.has_errors() {
            return diagnostics;
        }
        match surveyed {
            Ok(found) => {
                if let Some(warning) = deployed_elsewhere(&found, &spec.name, Report::Warn) {
                    diagnostics.push(warning);
                }
                (found.conflicts(&spec), Report::Refuse)
            }
            Err(failed) => {
                diagnostics.extend(failed);
                return diagnostics;
            }
        }
    } else {
        diagnostics.extend(checks.await);
        if diagnostics.has_errors() {
            return diagnostics;
        }
        // The refresh before this plan has just surveyed the stack and left what it met here.
        (PrivateState::decode(&change.prior_private).conflicts, Report::Warn)
    };
    diagnostics.extend(conflict_diagnostics(&conflicts, &spec.name, spec.adopt_untagged, report));
    diagnostics
}

/// The plan's values: everything the provider derives without asking AWS.
fn plan_settings(ctx: &RequestContext, change: &mut PlannedChange, aws: &AwsContext) -> Diagnostics {
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
            let access_logs = bucket_arn(&aws.partition, &access_log_bucket_name(name));
            planned.set("access_log_bucket_arn", Value::string(access_logs));
        }
        None => {
            for attribute in ["id", "log_group_name", "archive_bucket_arn", "state_bucket_arn", "access_log_bucket_arn"]
            {
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
        plan_entry_point(planned);
        mark_missing_outputs(planned);
        check_engine_change(&change.prior, planned, &mut diagnostics);
        diagnostics.0.extend(kms_key_change_refusal(&change.prior, planned));
        plan_images(&change.prior, planned);
        announce_password_changes(&change.prior, planned, &mut diagnostics);
    }
    // Unknown settings here are ones the configuration leaves to the provider, which means defaults;
    // settings the configuration itself does not know yet cannot be checked.
    if change.config.get("cluster").is_wholly_known() && change.config.get("services").is_wholly_known() {
        check_capacity(&StackSpec::from_value(planned, aws), &mut diagnostics);
    }
    diagnostics
}

/// Where the images go and which are missing follow `image_tag` and the image overrides: when those
/// change, the push targets are derived again and whether the images exist is left to apply. Otherwise
/// both stay as the refresh found them.
fn plan_images(prior: &Value, planned: &mut Value) {
    let images = |v: &Value| {
        let overrides: Vec<Value> = COMPONENTS.iter().map(|c| v.get("services").get(c).get("image").clone()).collect();
        (v.get("image_tag").clone(), overrides)
    };
    if images(prior) == images(planned) {
        return;
    }
    planned.set("missing_images", Value::Unknown);
    let tag = planned.get("image_tag").as_str().map(str::to_string);
    let urls = planned.get("ecr_repository_urls").as_string_map();
    let targets = match (tag, urls) {
        (Some(tag), Some(urls)) => Value::string_map(
            &COMPONENTS
                .iter()
                .filter(|c| planned.get("services").get(c).get("image").is_null())
                .filter_map(|c| urls.get(*c).map(|url| (c.to_string(), format!("{url}:{tag}"))))
                .collect::<BTreeMap<String, String>>(),
        ),
        _ => Value::Unknown,
    };
    planned.set("image_push_targets", targets);
}

/// The database, the file system and the ECR repositories keep the key they were created with (AWS has no
/// call that changes it), so a stack keeps its key for life; the other way, replacing the stack, would
/// delete the archive's database. Refused at plan, with the way out, and again at apply for a key that plan
/// did not know yet (one made by another resource in the same run).
pub fn kms_key_change_refusal(prior: &Value, planned: &Value) -> Option<Diagnostic> {
    let (was, wanted) = (prior.get("kms_key_arn"), planned.get("kms_key_arn"));
    if prior.is_null() || was == wanted || wanted.is_unknown() {
        return None;
    }
    let show = |key: &Value| key.as_str().map_or("AWS managed keys".to_string(), |k| format!("the key {k}"));
    Some(
        Diagnostic::error(
            "KMS Key Cannot Change",
            format!(
                "The stack was created with {}, and its database, file system and ECR repositories cannot change \
                 the key they are encrypted with. Keep kms_key_arn as it was; to move the data under {}, create a \
                 new stack with it and move the data (database dump or snapshot copy, DataSync for the file \
                 system, S3 Batch Operations for the archive).",
                show(was),
                show(wanted)
            ),
        )
        .at(AttributePath::root("kms_key_arn")),
    )
}

/// RDS changes neither the engine of a database nor, through the stack's parameter group, its major
/// version in place: refused at plan, where the way out can be said, rather than half-way through apply.
fn check_engine_change(prior: &Value, planned: &Value, diagnostics: &mut Diagnostics) {
    let setting = |value: &Value, name: &str| value.get("database").get(name).as_str().map(str::to_string);
    let major = |version: &str| version.split('.').take(2).collect::<Vec<_>>().join(".");
    let path = AttributePath::root("database");
    if let (Some(was), Some(wanted)) = (setting(prior, "engine"), setting(planned, "engine"))
        && was != wanted
    {
        diagnostics.push(
            Diagnostic::error(
                "Engine Cannot Change In Place",
                format!(
                    "The database runs {was}, and RDS cannot change an instance's engine. Keep engine = {was:?}; to \
                     move to {wanted}, create a new stack and move the data with a dump."
                ),
            )
            .at(path.attribute("engine")),
        );
    } else if let (Some(was), Some(wanted)) = (setting(prior, "engine_version"), setting(planned, "engine_version"))
        && major(&was) != major(&wanted)
    {
        diagnostics.push(
            Diagnostic::error(
                "Major Version Upgrade Not Supported",
                format!(
                    "The database runs version {was}; moving to {wanted} is a major version upgrade, which needs a new \
                     parameter group family and a snapshot first. The stack does not do that in place: upgrade with \
                     RDS (snapshot, then modify the instance), then set engine_version to the new version."
                ),
            )
            .at(path.attribute("engine_version")),
        );
    }
}

/// A part that went missing out of band left its outputs null (or its key out of a map): they come back
/// on apply.
fn mark_missing_outputs(planned: &mut Value) {
    // Outputs that exist once their part exists: null in state means the part went missing.
    let attributes = PART_OUTPUTS.iter().map(|o| o.attribute).chain(["web_url"]);
    for output in attributes {
        if planned.get(output).is_null() {
            planned.set(output, Value::Unknown);
        }
    }
    let load_balancer = planned.get("load_balancer");
    if !load_balancer.is_null() && !load_balancer.is_unknown() {
        let mut load_balancer = load_balancer.clone();
        for output in ["dns_name", "arn"] {
            if load_balancer.get(output).is_null() {
                load_balancer.set(output, Value::Unknown);
            }
        }
        planned.set("load_balancer", load_balancer);
    }
    let load_balancer = !planned.get("load_balancer").is_null();
    for output in MAP_OUTPUTS {
        let keys = output.entries(load_balancer).into_iter().map(|(key, _)| key);
        let map = planned.get(output.attribute).as_map().cloned();
        let complete = map.is_some_and(|m| keys.into_iter().all(|k| m.get(k).is_some_and(|v| !v.is_null())));
        if !complete {
            planned.set(output.attribute, Value::Unknown);
        }
    }
}

/// On update, what adding, changing or removing the load balancer does to the outputs: the web address
/// moves between the public DNS name and the internal one, and the load balancer's security group joins or
/// leaves `security_group_ids`. (On create every output is unknown anyway.)
fn plan_entry_point(planned: &mut Value) {
    let load_balancer = planned.get("load_balancer").clone();
    if load_balancer.is_unknown() {
        planned.set("web_url", Value::Unknown);
        planned.set("security_group_ids", Value::Unknown);
        return;
    }
    let web_url = if load_balancer.is_null() {
        planned.get("name").as_str().map(|name| internal_web_url(&dns_name(name, Service::Web)))
    } else {
        match (load_balancer.get("dns_name"), load_balancer.get("certificate_arn")) {
            (Value::String(dns), Value::Null) => Some(public_web_url(dns, false)),
            (Value::String(dns), Value::String(certificate)) => Some(public_web_url(dns, !certificate.is_empty())),
            _ => None,
        }
    };
    planned.set("web_url", web_url.map_or(Value::Unknown, Value::string));
    if load_balancer.is_null()
        && let Value::Map(mut groups) = planned.get("security_group_ids").clone()
        && groups.remove("load_balancer").is_some()
    {
        planned.set("security_group_ids", Value::Map(groups));
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

/// Says which services a new password version restarts, so the plan shows the brief disruption before it
/// happens.
fn announce_password_changes(prior: &Value, planned: &Value, diagnostics: &mut Diagnostics) {
    let name = planned.get("name").as_str().unwrap_or_default();
    if new_version(prior, planned, |v| v.get("database").get("password_wo_version").as_f64()) {
        diagnostics.warning(
            "Database Password Will Change",
            format!(
                "Apply sets the new master password in RDS, then in the secret {name}/database, and restarts the broker \
                 with it; until it runs again, DataVault cannot reach its database."
            ),
        );
    }
    if new_version(prior, planned, |v| v.get("rabbitmq_password_version").as_f64()) {
        diagnostics.warning(
            "RabbitMQ Password Will Change",
            format!(
                "Apply puts a new generated password in the secret {name}/rabbitmq and restarts RabbitMQ, the broker and \
                 the worker with it; until RabbitMQ runs with the new password (a minute or two), the broker and worker \
                 may fail to connect and be restarted by ECS."
            ),
        );
    }
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

/// Checks a planned destroy with the same rules destroy applies (see [`guard`]): archived data (unless
/// force_destroy) and deletion protection block it, judged on the stack's own database and bucket only;
/// the retained state bucket is announced.
pub async fn plan_destroy(ctx: &RequestContext, prior: &Value, aws: &AwsContext) -> Diagnostics {
    let spec = StackSpec::from_value(prior, aws);
    let mut diags = Diagnostics::new();
    let guarded = [Part::ArchiveBucket, Part::Database];
    let checked = match survey(&ctx.cancel, aws, &spec, &guarded, Purpose::Ownership, "").await {
        Ok(found) => guard::blockers(aws, &spec, &found.own, &guarded).await.map_err(|e| e.to_string()),
        Err(failed) => Err(failed.0.iter().map(|d| d.detail.clone()).collect::<Vec<_>>().join(" ")),
    };
    match checked {
        Ok(blockers) => diags.extend(guard::refusal(&blockers, &spec.name)),
        Err(why) => diags.warning(
            "Destroy Not Checked",
            format!("Could not check the database and archive bucket ({why}); destroy checks again before it deletes."),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn groups(keys: &[&str]) -> Value {
        object(&keys.iter().map(|k| (*k, Value::string(format!("sg-{k}")))).collect::<Vec<_>>())
    }

    const GROUPS: [&str; 4] = ["instances", "services", "database", "file_system"];

    #[test]
    fn a_stack_keeps_its_kms_key_for_life() {
        let key = |k: Value| object(&[("name", Value::string("vault")), ("kms_key_arn", k)]);
        let (a, b) = (
            Value::string("arn:aws:kms:eu-west-2:123456789012:key/a"),
            Value::string("arn:aws:kms:eu-west-2:123456789012:key/b"),
        );
        assert!(kms_key_change_refusal(&Value::Null, &key(a.clone())).is_none(), "a new stack picks its key");
        assert!(kms_key_change_refusal(&key(a.clone()), &key(a.clone())).is_none());
        assert!(kms_key_change_refusal(&key(a.clone()), &key(Value::Unknown)).is_none(), "checked again at apply");
        for (was, wanted) in [(a.clone(), b), (Value::Null, a.clone()), (a, Value::Null)] {
            let refusal = kms_key_change_refusal(&key(was), &key(wanted)).expect("a change is refused");
            assert_eq!(refusal.summary, "KMS Key Cannot Change");
            assert_eq!(refusal.path.unwrap().to_string(), "kms_key_arn");
        }
    }

    #[test]
    fn removing_the_load_balancer_plans_the_internal_address_and_drops_its_group() {
        let mut all = GROUPS.to_vec();
        all.push("load_balancer");
        let mut planned = object(&[
            ("name", Value::string("vault")),
            ("load_balancer", Value::Null),
            ("web_url", Value::string("https://vault-web-1.elb.amazonaws.com/datavault-webapp/")),
            ("security_group_ids", groups(&all)),
        ]);
        plan_entry_point(&mut planned);
        mark_missing_outputs(&mut planned);
        assert_eq!(
            planned.get("web_url"),
            &Value::string("http://web.vault.datavault.internal:8080/datavault-webapp/")
        );
        assert_eq!(planned.get("security_group_ids"), &groups(&GROUPS));
    }

    #[test]
    fn adding_a_load_balancer_leaves_its_outputs_to_apply() {
        let mut planned = object(&[
            ("name", Value::string("vault")),
            ("load_balancer", object(&[("dns_name", Value::Null), ("arn", Value::Null)])),
            ("web_url", Value::string("http://web.vault.datavault.internal:8080/datavault-webapp/")),
            ("security_group_ids", groups(&GROUPS)),
        ]);
        plan_entry_point(&mut planned);
        mark_missing_outputs(&mut planned);
        assert_eq!(planned.get("web_url"), &Value::Unknown);
        assert_eq!(planned.get("load_balancer").get("dns_name"), &Value::Unknown);
        assert_eq!(planned.get("load_balancer").get("arn"), &Value::Unknown);
        assert_eq!(planned.get("security_group_ids"), &Value::Unknown);
    }

    #[test]
    fn a_new_image_tag_moves_the_push_targets_and_leaves_missing_images_to_apply() {
        let urls = object(&[
            ("web", Value::string("1.dkr.ecr/vault/web")),
            ("broker", Value::string("1.dkr.ecr/vault/broker")),
        ]);
        let stack = |tag: &str| {
            object(&[
                ("image_tag", Value::string(tag)),
                ("ecr_repository_urls", urls.clone()),
                ("image_push_targets", object(&[("web", Value::string(format!("1.dkr.ecr/vault/web:{tag}")))])),
                ("missing_images", Value::string_list(["web"])),
            ])
        };
        let mut unchanged = stack("1.0");
        plan_images(&stack("1.0"), &mut unchanged);
        assert_eq!(unchanged, stack("1.0"), "an unchanged tag keeps what the refresh found");
        let mut changed = stack("2.0");
        plan_images(&stack("1.0"), &mut changed);
        assert_eq!(changed.get("missing_images"), &Value::Unknown);
        assert_eq!(changed.get("image_push_targets").get("broker"), &Value::string("1.dkr.ecr/vault/broker:2.0"));
    }

    #[test]
    fn a_certificate_added_later_moves_the_address_to_https() {
        let dns = "vault-web-1.elb.amazonaws.com";
        let mut all = GROUPS.to_vec();
        all.push("load_balancer");
        let load_balancer = |certificate: Value| {
            object(&[
                ("certificate_arn", certificate),
                ("dns_name", Value::string(dns)),
                ("arn", Value::string("arn:lb")),
            ])
        };
        let mut planned = object(&[
            ("name", Value::string("vault")),
            ("load_balancer", load_balancer(Value::string("arn:aws:acm:eu-west-2:123456789012:certificate/1"))),
            ("web_url", Value::string(format!("http://{dns}/datavault-webapp/"))),
            ("security_group_ids", groups(&all)),
        ]);
        plan_entry_point(&mut planned);
        mark_missing_outputs(&mut planned);
        assert_eq!(planned.get("web_url"), &Value::string(format!("https://{dns}/datavault-webapp/")));
        assert_eq!(planned.get("security_group_ids"), &groups(&all), "nothing else changes");
        // A certificate only known at apply (made in the same run) leaves the address to apply.
        planned.set("load_balancer", load_balancer(Value::Unknown));
        plan_entry_point(&mut planned);
        assert_eq!(planned.get("web_url"), &Value::Unknown);
    }
}
