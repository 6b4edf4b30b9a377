//! Amazon EC2 Auto Scaling: the group of container instances the ECS cluster runs on.
//!
//! The group launches from the stack's launch template at a fixed version number (FSBP AutoScaling.9), so a
//! new template version is an explicit change here, rolled out to running instances by an instance
//! refresh. Deleting scales the group to zero and waits for its instances to go instead of force-deleting,
//! so ECS sees its instances leave and a stuck instance surfaces as a clear error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, InstanceRefreshStatus, LaunchTemplateSpecification, RefreshPreferences, RefreshStrategy, Tag,
};

use super::{AwsError, AwsResult};

/// Health checks by EC2 status checks (the instances serve no load balancer themselves).
pub const HEALTH_CHECK_TYPE: &str = "EC2";
/// Seconds a new instance gets before its health counts, and between scaling activities.
pub const DEFAULT_COOLDOWN_SECS: i32 = 300;
/// The share of instances an instance refresh keeps in service while replacing the rest.
pub const REFRESH_MIN_HEALTHY_PERCENT: i32 = 50;
/// How often a delete looks at the group again.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The group the stack wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// The launch template instances start from.
    pub launch_template_id: String,
    /// The template version, a number (never `$Latest`/`$Default`, so a version change is visible here).
    pub launch_template_version: String,
    /// Fewest instances.
    pub min_size: i32,
    /// Most instances.
    pub max_size: i32,
    /// Instances wanted now.
    pub desired_capacity: i32,
    /// Subnets to launch into, spread across their zones.
    pub subnet_ids: Vec<String>,
    /// Tags of the group, propagated to instances at launch.
    pub tags: BTreeMap<String, String>,
}

/// A group the stack manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its ARN (for an ECS capacity provider).
    pub arn: String,
}

/// One instance of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    /// The instance id.
    pub id: String,
    /// The launch template it was started from.
    pub launch_template_id: Option<String>,
    /// The template version it was started from.
    pub launch_template_version: Option<String>,
    /// Its lifecycle state, e.g. `InService` or `Terminating`.
    pub lifecycle_state: String,
}

/// A group as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupObservation {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Fewest instances.
    pub min_size: i32,
    /// Most instances.
    pub max_size: i32,
    /// Instances wanted now.
    pub desired_capacity: i32,
    /// Its subnets, sorted.
    pub subnet_ids: Vec<String>,
    /// Its launch template (empty when it uses something else, e.g. a launch configuration).
    pub launch_template_id: String,
    /// Its launch template version.
    pub launch_template_version: String,
    /// `EC2` or `ELB`.
    pub health_check_type: String,
    /// Whether new instances are protected from scale-in.
    pub protect_new_instances: bool,
    /// Ids of its instances, in any lifecycle state.
    pub instance_ids: Vec<String>,
    /// Its instances in detail.
    pub instances: Vec<GroupInstance>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Set while the group is being deleted (`Delete in progress`).
    pub status: Option<String>,
    /// How it differs from the spec passed to describe (empty when none).
    pub drift: Vec<String>,
}

fn split_subnets(zone_identifier: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        zone_identifier.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    ids.sort();
    ids.dedup();
    ids
}

fn observe(group: &AutoScalingGroup) -> GroupObservation {
    let template = group.launch_template();
    let instances: Vec<GroupInstance> = group
        .instances()
        .iter()
        .map(|i| GroupInstance {
            id: i.instance_id().unwrap_or_default().to_string(),
            launch_template_id: i.launch_template().and_then(|t| t.launch_template_id()).map(str::to_string),
            launch_template_version: i.launch_template().and_then(|t| t.version()).map(str::to_string),
            lifecycle_state: i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        })
        .collect();
    GroupObservation {
        name: group.auto_scaling_group_name().unwrap_or_default().to_string(),
        arn: group.auto_scaling_group_arn().unwrap_or_default().to_string(),
        min_size: group.min_size().unwrap_or_default(),
        max_size: group.max_size().unwrap_or_default(),
        desired_capacity: group.desired_capacity().unwrap_or_default(),
        subnet_ids: split_subnets(group.vpc_zone_identifier().unwrap_or_default()),
        launch_template_id: template.and_then(|t| t.launch_template_id()).unwrap_or_default().to_string(),
        launch_template_version: template.and_then(|t| t.version()).unwrap_or_default().to_string(),
        health_check_type: group.health_check_type().unwrap_or_default().to_string(),
        protect_new_instances: group.new_instances_protected_from_scale_in().unwrap_or(false),
        instance_ids: instances.iter().map(|i| i.id.clone()).collect(),
        instances,
        tags: group
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
            .collect(),
        status: group.status().filter(|s| !s.is_empty()).map(str::to_string),
        drift: Vec::new(),
    }
}

/// Differences in the settings UpdateAutoScalingGroup changes.
fn settings_drift(spec: &GroupSpec, group: &GroupObservation) -> Vec<String> {
    let mut drift = Vec::new();
    let mut sizes = |what: &str, is: i32, want: i32| {
        if is != want {
            drift.push(format!("{what} is {is}, expected {want}"));
        }
    };
    sizes("min size", group.min_size, spec.min_size);
    sizes("max size", group.max_size, spec.max_size);
    sizes("desired capacity", group.desired_capacity, spec.desired_capacity);
    let wanted_subnets = split_subnets(&spec.subnet_ids.join(","));
    if group.subnet_ids != wanted_subnets {
        drift.push(format!("subnets are {}, expected {}", group.subnet_ids.join(","), wanted_subnets.join(",")));
    }
    if group.launch_template_id != spec.launch_template_id {
        drift.push(format!(
            "launch template is {}, expected {}",
            show(&group.launch_template_id),
            spec.launch_template_id
        ));
    }
    if group.launch_template_version != spec.launch_template_version {
        drift.push(format!(
            "launch template version is {}, expected {}",
            show(&group.launch_template_version),
            spec.launch_template_version
        ));
    }
    if group.health_check_type != HEALTH_CHECK_TYPE {
        drift.push(format!("health check type is {}, expected {HEALTH_CHECK_TYPE}", show(&group.health_check_type)));
    }
    if group.protect_new_instances {
        drift.push("new instances are protected from scale-in".to_string());
    }
    drift
}

fn show(value: &str) -> &str {
    if value.is_empty() { "unset" } else { value }
}

/// Tags the spec asks for that are missing or different. Extra tags are left alone: ECS adds its own
/// (`AmazonECSManaged`) to groups behind a capacity provider.
fn tag_drift(spec: &GroupSpec, group: &GroupObservation) -> Vec<String> {
    spec.tags
        .iter()
        .filter_map(|(key, want)| match group.tags.get(key) {
            None => Some(format!("tag {key} is missing")),
            Some(is) if is != want => Some(format!("tag {key} is {is}, expected {want}")),
            Some(_) => None,
        })
        .collect()
}

/// How a group differs from the spec, e.g. `desired capacity is 0, expected 2`.
pub fn group_drift(spec: &GroupSpec, group: &GroupObservation) -> Vec<String> {
    let mut drift = settings_drift(spec, group);
    drift.extend(tag_drift(spec, group));
    drift
}

/// Instances still running from another template or version than the spec's: an instance refresh is
/// needed to move them. Instances on their way out do not count.
fn stale_instances(spec: &GroupSpec, instances: &[GroupInstance]) -> Vec<String> {
    instances
        .iter()
        .filter(|i| !i.lifecycle_state.starts_with("Terminat") && i.lifecycle_state != "Detaching")
        .filter(|i| {
            i.launch_template_id.as_deref() != Some(spec.launch_template_id.as_str())
                || i.launch_template_version.as_deref() != Some(spec.launch_template_version.as_str())
        })
        .map(|i| i.id.clone())
        .collect()
}

/// Whether one of these instance refreshes is still running (a new one cannot start until it ends).
fn refresh_active(statuses: &[InstanceRefreshStatus]) -> bool {
    statuses.iter().any(|s| {
        matches!(
            s,
            InstanceRefreshStatus::Pending
                | InstanceRefreshStatus::InProgress
                | InstanceRefreshStatus::Cancelling
                | InstanceRefreshStatus::RollbackInProgress
                | InstanceRefreshStatus::Baking
        )
    })
}

async fn find(client: &Client, name: &str) -> AwsResult<Option<GroupObservation>> {
    let out = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeAutoScalingGroups", e))?;
    Ok(out.auto_scaling_groups().iter().find(|g| g.auto_scaling_group_name() == Some(name)).map(observe))
}

fn template_spec(spec: &GroupSpec) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(&spec.launch_template_id)
        .version(&spec.launch_template_version)
        .build()
}

/// Auto Scaling tags name the group they belong to, and are copied onto the instances it launches.
fn tag_list(name: &str, tags: &BTreeMap<String, String>) -> Vec<Tag> {
    super::tags_as(tags, |k, v| {
        Tag::builder()
            .resource_id(name)
            .resource_type("auto-scaling-group")
            .key(k)
            .value(v)
            .propagate_at_launch(true)
            .build()
    })
}

/// Whether an Auto Scaling error says the group does not exist (it has no code of its own for that).
fn is_not_found(err: &AwsError) -> bool {
    err.is(&["ValidationError"]) && err.message.to_ascii_lowercase().contains("not found")
}

/// Finds the group by name or creates it, then converges sizes, subnets, launch template version and tags;
/// when instances run from an older template version, starts an instance refresh (rolling, at least
/// [`REFRESH_MIN_HEALTHY_PERCENT`]% in service) to replace them. May be called again after a crash (even
/// between updating the group and starting the refresh): it adopts the group and converges.
pub async fn ensure_group(client: &Client, spec: &GroupSpec) -> AwsResult<Group> {
    let current = match find(client, &spec.name).await? {
        Some(group) => group,
        None => {
            create(client, spec).await?;
            find(client, &spec.name).await?.ok_or_else(|| {
                AwsError::other(
                    "DescribeAutoScalingGroups",
                    format!("Auto Scaling group {} vanished right after being created", spec.name),
                )
            })?
        }
    };
    if let Some(status) = &current.status {
        return Err(AwsError::other(
            "CreateAutoScalingGroup",
            format!("Auto Scaling group {} is being deleted ({status}); apply again once it is gone", spec.name),
        ));
    }
    if !settings_drift(spec, &current).is_empty() {
        update(client, spec).await?;
    }
    put_tags(client, &spec.name, &super::tags_to_write(&spec.tags, &current.tags)).await?;
    if !stale_instances(spec, &current.instances).is_empty() {
        start_refresh_unless_running(client, &spec.name).await?;
    }
    Ok(Group { name: spec.name.clone(), arn: current.arn })
}

async fn create(client: &Client, spec: &GroupSpec) -> AwsResult<()> {
    let created = client
        .create_auto_scaling_group()
        .auto_scaling_group_name(&spec.name)
        .launch_template(template_spec(spec))
        .min_size(spec.min_size)
        .max_size(spec.max_size)
        .desired_capacity(spec.desired_capacity)
        .vpc_zone_identifier(spec.subnet_ids.join(","))
        .health_check_type(HEALTH_CHECK_TYPE)
        .health_check_grace_period(DEFAULT_COOLDOWN_SECS)
        .default_cooldown(DEFAULT_COOLDOWN_SECS)
        .new_instances_protected_from_scale_in(false)
        .set_tags(Some(tag_list(&spec.name, &spec.tags)))
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("CreateAutoScalingGroup", err);
            // Another run created it between our look and our create: adopt it.
            if err.is(&["AlreadyExists"]) { Ok(()) } else { Err(err) }
        }
    }
}

async fn update(client: &Client, spec: &GroupSpec) -> AwsResult<()> {
    client
        .update_auto_scaling_group()
        .auto_scaling_group_name(&spec.name)
        .launch_template(template_spec(spec))
        .min_size(spec.min_size)
        .max_size(spec.max_size)
        .desired_capacity(spec.desired_capacity)
        .vpc_zone_identifier(spec.subnet_ids.join(","))
        .health_check_type(HEALTH_CHECK_TYPE)
        .new_instances_protected_from_scale_in(false)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("UpdateAutoScalingGroup", e))?;
    Ok(())
}

/// Takes the tags with these keys off the Auto Scaling group (keys it does not have are no error): the stack's tags
/// that the configuration no longer has.
pub async fn remove_tags(client: &Client, name: &str, keys: &[String]) -> AwsResult<()> {
    let tags: Vec<Tag> = keys
        .iter()
        .map(|k| Tag::builder().resource_id(name).resource_type("auto-scaling-group").key(k).build())
        .collect();
    client.delete_tags().set_tags(Some(tags)).send().await.map_err(|e| AwsError::from_sdk("DeleteTags", e))?;
    Ok(())
}

/// Adds or updates `tags` on the group (what [`super::tags_to_write`] says is missing), all propagated at
/// launch. Tags added by others stay.
async fn put_tags(client: &Client, name: &str, tags: &BTreeMap<String, String>) -> AwsResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    client
        .create_or_update_tags()
        .set_tags(Some(tag_list(name, tags)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateOrUpdateTags", e))?;
    Ok(())
}

async fn start_refresh_unless_running(client: &Client, name: &str) -> AwsResult<()> {
    let out = client
        .describe_instance_refreshes()
        .auto_scaling_group_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeInstanceRefreshes", e))?;
    let statuses: Vec<InstanceRefreshStatus> =
        out.instance_refreshes().iter().filter_map(|r| r.status().cloned()).collect();
    if refresh_active(&statuses) {
        return Ok(());
    }
    let started = client
        .start_instance_refresh()
        .auto_scaling_group_name(name)
        .strategy(RefreshStrategy::Rolling)
        .preferences(
            RefreshPreferences::builder()
                .min_healthy_percentage(REFRESH_MIN_HEALTHY_PERCENT)
                // Instances already on the group's template version stay.
                .skip_matching(true)
                .build(),
        )
        .send()
        .await;
    match started {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("StartInstanceRefresh", err);
            if err.is(&["InstanceRefreshInProgress"]) { Ok(()) } else { Err(err) }
        }
    }
}

/// Describes the group; `None` when it does not exist. Its drift says only whether it is being deleted:
/// how it differs from its spec is [`group_drift`]'s to judge.
pub async fn describe_group(client: &Client, name: &str) -> AwsResult<Option<GroupObservation>> {
    let Some(mut group) = find(client, name).await? else { return Ok(None) };
    if let Some(status) = &group.status {
        group.drift.push(format!("group is being deleted ({status})"));
    }
    Ok(Some(group))
}

/// The next step of deleting a group, decided from how it looks now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DeleteStep {
    /// The group no longer exists: done.
    Gone,
    /// Set min, max and desired to zero so its instances terminate.
    ScaleToZero,
    /// Wait for these instances to terminate.
    AwaitInstances(Vec<String>),
    /// Empty: delete it.
    Delete,
    /// Wait for a deletion under way to finish.
    AwaitDeletion,
}

fn delete_step(group: Option<&GroupObservation>) -> DeleteStep {
    match group {
        None => DeleteStep::Gone,
        Some(g) if g.status.is_some() => DeleteStep::AwaitDeletion,
        Some(g) if g.min_size != 0 || g.max_size != 0 || g.desired_capacity != 0 => DeleteStep::ScaleToZero,
        Some(g) if !g.instance_ids.is_empty() => DeleteStep::AwaitInstances(g.instance_ids.clone()),
        Some(_) => DeleteStep::Delete,
    }
}

/// The error for a delete that ran out of time at `step`.
fn delete_timeout(name: &str, step: &DeleteStep, timeout: Duration) -> AwsError {
    let secs = timeout.as_secs();
    let message = match step {
        DeleteStep::AwaitInstances(ids) => format!(
            "instances {} were still in Auto Scaling group {name} after waiting {secs}s for them to terminate; \
             the group is not force-deleted (that would cut running tasks off without draining): check for \
             scale-in protection or lifecycle hooks holding them, or raise the delete timeout",
            ids.join(", ")
        ),
        DeleteStep::AwaitDeletion => {
            format!("Auto Scaling group {name} was still being deleted after waiting {secs}s")
        }
        other => format!("Auto Scaling group {name} could not be deleted within {secs}s (last step: {other:?})"),
    };
    AwsError::other("DeleteAutoScalingGroup", message)
}

/// Deletes the group: scales it to zero, waits (up to `timeout`) until its instances have terminated,
/// deletes it and waits until it is gone. Never force-deletes: instances that do not go are reported as an
/// error naming them. A group that does not exist is success, so this may be called again after a crash.
pub async fn delete_group(client: &Client, name: &str, timeout: Duration) -> AwsResult<()> {
    delete_group_polling(client, name, timeout, POLL_INTERVAL).await
}

async fn delete_group_polling(client: &Client, name: &str, timeout: Duration, interval: Duration) -> AwsResult<()> {
    let started = Instant::now();
    let deadline = super::deadline_after(timeout);
    let backoff = super::wait::Backoff::up_to(interval);
    loop {
        let step = delete_step(find(client, name).await?.as_ref());
        if step != DeleteStep::Gone && started.elapsed() >= timeout {
            return Err(delete_timeout(name, &step, timeout));
        }
        let wait = match step {
            DeleteStep::Gone => return Ok(()),
            DeleteStep::ScaleToZero => scale_to_zero(client, name).await?,
            DeleteStep::Delete => delete(client, name).await?,
            DeleteStep::AwaitInstances(_) | DeleteStep::AwaitDeletion => true,
        };
        if wait {
            backoff.sleep_before(deadline).await;
        }
    }
}

/// Sets all sizes to zero; returns whether to wait before looking again (never: the next look shows the
/// instances terminating).
async fn scale_to_zero(client: &Client, name: &str) -> AwsResult<bool> {
    let result = client
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(0)
        .desired_capacity(0)
        .send()
        .await;
    match result {
        Ok(_) => Ok(false),
        Err(err) => {
            let err = AwsError::from_sdk("UpdateAutoScalingGroup", err);
            if is_not_found(&err) { Ok(false) } else { Err(err) }
        }
    }
}

/// Deletes the empty group; returns whether to wait before looking again (when a scaling activity still
/// holds it).
async fn delete(client: &Client, name: &str) -> AwsResult<bool> {
    match client.delete_auto_scaling_group().auto_scaling_group_name(name).send().await {
        Ok(_) => Ok(false),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteAutoScalingGroup", err);
            if is_not_found(&err) {
                Ok(false)
            } else if err.is(&["ResourceInUse", "ScalingActivityInProgress"]) {
                Ok(true)
            } else {
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GroupSpec {
        GroupSpec {
            name: "vault-instances".into(),
            launch_template_id: "lt-1".into(),
            launch_template_version: "2".into(),
            min_size: 2,
            max_size: 2,
            desired_capacity: 2,
            subnet_ids: vec!["subnet-b".into(), "subnet-a".into()],
            tags: [("datavault:stack".to_string(), "vault".to_string())].into(),
        }
    }

    fn instance(id: &str, version: &str, state: &str) -> GroupInstance {
        GroupInstance {
            id: id.into(),
            launch_template_id: Some("lt-1".into()),
            launch_template_version: Some(version.into()),
            lifecycle_state: state.into(),
        }
    }

    /// The group as AWS reports it right after being created from `spec()`.
    fn matching() -> GroupObservation {
        let instances = vec![instance("i-1", "2", "InService"), instance("i-2", "2", "InService")];
        GroupObservation {
            name: "vault-instances".into(),
            arn: "arn:aws:autoscaling:eu-west-2:123456789012:autoScalingGroup:x:autoScalingGroupName/vault-instances"
                .into(),
            min_size: 2,
            max_size: 2,
            desired_capacity: 2,
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            launch_template_id: "lt-1".into(),
            launch_template_version: "2".into(),
            health_check_type: "EC2".into(),
            protect_new_instances: false,
            instance_ids: instances.iter().map(|i| i.id.clone()).collect(),
            instances,
            tags: [
                ("datavault:stack".to_string(), "vault".to_string()),
                ("AmazonECSManaged".to_string(), String::new()),
            ]
            .into(),
            status: None,
            drift: Vec::new(),
        }
    }

    #[test]
    fn a_matching_group_has_no_drift() {
        assert!(group_drift(&spec(), &matching()).is_empty());
    }

    #[test]
    fn drift_names_each_difference() {
        let mut group = matching();
        group.desired_capacity = 0;
        group.subnet_ids = vec!["subnet-a".into()];
        group.launch_template_version = "1".into();
        group.health_check_type = "ELB".into();
        group.tags.insert("datavault:stack".into(), "other".into());
        assert_eq!(
            group_drift(&spec(), &group),
            [
                "desired capacity is 0, expected 2",
                "subnets are subnet-a, expected subnet-a,subnet-b",
                "launch template version is 1, expected 2",
                "health check type is ELB, expected EC2",
                "tag datavault:stack is other, expected vault",
            ]
        );
        group.tags.clear();
        assert!(tag_drift(&spec(), &group).contains(&"tag datavault:stack is missing".to_string()));
    }

    #[test]
    fn tag_changes_alone_do_not_update_the_group() {
        let mut group = matching();
        group.tags.clear();
        assert!(settings_drift(&spec(), &group).is_empty());
    }

    #[test]
    fn subnets_compare_as_sets() {
        assert_eq!(split_subnets("subnet-b, subnet-a,,subnet-b"), ["subnet-a", "subnet-b"]);
    }

    #[test]
    fn instances_on_an_older_version_need_a_refresh() {
        let spec = spec();
        assert!(stale_instances(&spec, &matching().instances).is_empty());
        let instances = vec![
            instance("i-1", "1", "InService"),
            instance("i-2", "2", "InService"),
            instance("i-3", "1", "Terminating"),
            GroupInstance { launch_template_id: Some("lt-old".into()), ..instance("i-4", "2", "Pending") },
        ];
        assert_eq!(stale_instances(&spec, &instances), ["i-1", "i-4"]);
    }

    #[test]
    fn a_running_refresh_blocks_a_new_one() {
        assert!(refresh_active(&[InstanceRefreshStatus::Successful, InstanceRefreshStatus::InProgress]));
        assert!(refresh_active(&[InstanceRefreshStatus::Pending]));
        assert!(!refresh_active(&[InstanceRefreshStatus::Successful, InstanceRefreshStatus::Cancelled]));
        assert!(!refresh_active(&[]));
    }

    #[test]
    fn delete_follows_the_recorded_sequence() {
        // Recorded: a running group, scaled to zero with instances terminating, empty, deleting, gone.
        let running = matching();
        let draining = GroupObservation {
            min_size: 0,
            max_size: 0,
            desired_capacity: 0,
            instances: vec![instance("i-1", "2", "Terminating")],
            instance_ids: vec!["i-1".into()],
            ..running.clone()
        };
        let empty = GroupObservation { instances: vec![], instance_ids: vec![], ..draining.clone() };
        let deleting = GroupObservation { status: Some("Delete in progress".into()), ..empty.clone() };
        let steps: Vec<DeleteStep> = [Some(&running), Some(&draining), Some(&empty), Some(&deleting), None]
            .into_iter()
            .map(delete_step)
            .collect();
        assert_eq!(
            steps,
            [
                DeleteStep::ScaleToZero,
                DeleteStep::AwaitInstances(vec!["i-1".into()]),
                DeleteStep::Delete,
                DeleteStep::AwaitDeletion,
                DeleteStep::Gone,
            ]
        );
    }

    #[test]
    fn a_partly_scaled_group_is_scaled_again() {
        let group = GroupObservation {
            min_size: 0,
            desired_capacity: 0,
            instances: vec![],
            instance_ids: vec![],
            ..matching()
        };
        assert_eq!(delete_step(Some(&group)), DeleteStep::ScaleToZero);
    }

    #[test]
    fn timeouts_name_what_was_awaited() {
        let timeout = Duration::from_secs(900);
        let err =
            delete_timeout("vault-instances", &DeleteStep::AwaitInstances(vec!["i-1".into(), "i-2".into()]), timeout);
        assert!(err.message.contains("i-1, i-2") && err.message.contains("900s"), "{err}");
        assert!(err.message.contains("not force-deleted"));
        let err = delete_timeout("vault-instances", &DeleteStep::AwaitDeletion, timeout);
        assert!(err.message.contains("still being deleted"), "{err}");
    }

    #[test]
    fn missing_groups_are_recognised_from_validation_errors() {
        let err = AwsError {
            operation: "DeleteAutoScalingGroup",
            code: Some("ValidationError".into()),
            message: "AutoScalingGroup name not found - null".into(),
        };
        assert!(is_not_found(&err));
        let err = AwsError { message: "Max bound, 1, must be >= desired".into(), ..err };
        assert!(!is_not_found(&err));
    }

    #[test]
    fn tags_propagate_at_launch() {
        let tags = tag_list("vault-instances", &spec().tags);
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].propagate_at_launch(), Some(true));
        assert_eq!(tags[0].resource_id(), Some("vault-instances"));
        assert_eq!(tags[0].resource_type(), Some("auto-scaling-group"));
    }
}
