//! Amazon ECS: the stack's cluster, the four task definitions (broker, worker, web, rabbitmq) and their
//! services, and the wait for those services to reach a steady state.
//!
//! Security defaults (AWS Foundational Security Best Practices): tasks use awsvpc networking without public
//! IPs (ECS.2) and never host networking (ECS.17); containers are never privileged (ECS.4), may have a
//! read-only root file system (ECS.5), receive secrets only through `secrets` (ECS.8), always log to
//! CloudWatch (ECS.9), and mount EFS with transit encryption and IAM authorisation (ECS.18).
//!
//! Task definitions are compared with what ECS describes after normalisation, so an unchanged spec never
//! registers a new revision (the perpetual-diff trap). Services deploy with the circuit breaker and rollback.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ClusterField, ClusterSetting, ClusterSettingName, Compatibility,
    ContainerCondition, ContainerDefinition, ContainerDependency, DeploymentCircuitBreaker, DeploymentConfiguration,
    DeploymentRolloutState, EfsAuthorizationConfig, EfsAuthorizationConfigIam, EfsTransitEncryption,
    EfsVolumeConfiguration, KeyValuePair, LaunchType, LoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration,
    NetworkMode, PortMapping, PropagateTags, SchedulingStrategy, Secret, ServiceField, ServiceRegistry, Tag,
    TaskDefinitionField, TaskDefinitionStatus, TransportProtocol, Volume,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wait::Backoff;
use super::{AwsError, AwsResult};

/// How often deletions that AWS carries out in the background are polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// First pause before retrying a CreateService that failed because a new IAM role is not usable yet.
pub const IAM_RETRY_INITIAL: Duration = Duration::from_secs(2);
/// Longest pause between those retries.
pub const IAM_RETRY_MAX: Duration = Duration::from_secs(20);
/// Minimum healthy percent for a rolling deployment that starts new tasks before stopping old ones.
pub const ROLLING_MIN_HEALTHY_PERCENT: i32 = 100;
/// Maximum percent for a rolling deployment that starts new tasks before stopping old ones.
pub const ROLLING_MAX_PERCENT: i32 = 200;

/// The awslogs options a task definition sets, and the only ones compared (ECS may add others).
const LOG_OPTION_KEYS: [&str; 4] = ["awslogs-group", "awslogs-region", "awslogs-stream-prefix", "mode"];
/// DescribeServices accepts at most this many services per call.
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// DeleteTaskDefinitions accepts at most this many revisions per call.
const DELETE_TASK_DEFINITIONS_BATCH: usize = 10;

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    super::tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    super::tag_map(tags.iter().map(|t| (t.key(), t.value())))
}

/// Takes the tags with these keys off the cluster, task definition or service (keys it does not have are no error):
/// the stack's tags that the configuration no longer has.
pub async fn remove_tags(client: &Client, arn: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_resource().resource_arn(arn).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagResource", e))?;
    Ok(())
}

/// Writes `tags` (what [`super::tags_to_write`] says is missing); nothing when there are none.
async fn put_tags(client: &Client, arn: &str, tags: &BTreeMap<String, String>) -> AwsResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    client
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tag_list(tags)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("TagResource", e))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------------------

/// The stack's ECS cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
}

/// What the cluster looks like now, and how it differs from the managed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterObservation {
    /// Its ARN.
    pub arn: String,
    /// `ACTIVE`, `PROVISIONING`, `DEPROVISIONING` or `FAILED`.
    pub status: String,
    /// Whether Container Insights is on (`enabled` or `enhanced`).
    pub container_insights: bool,
    /// Container instances registered with it.
    pub registered_instances: i32,
    /// Services in it.
    pub active_services: i32,
    /// Tasks running in it.
    pub running_tasks: i32,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Human-readable differences from the managed settings (empty when none).
    pub drift: Vec<String>,
}

/// Whether Container Insights is on; `enhanced` counts, so a user's upgrade is never undone.
pub fn container_insights_on(cluster: &aws_sdk_ecs::types::Cluster) -> bool {
    cluster.settings().iter().any(|s| {
        s.name() == Some(&ClusterSettingName::ContainerInsights) && matches!(s.value(), Some("enabled" | "enhanced"))
    })
}

/// The log group ECS Exec sessions are recorded in, when the cluster records them there.
pub fn exec_log_group(cluster: &aws_sdk_ecs::types::Cluster) -> Option<&str> {
    let exec = cluster.configuration()?.execute_command_configuration()?;
    if exec.logging() != Some(&aws_sdk_ecs::types::ExecuteCommandLogging::Override) {
        return None;
    }
    exec.log_configuration()?.cloud_watch_log_group_name()
}

fn exec_configuration(log_group: &str) -> aws_sdk_ecs::types::ClusterConfiguration {
    let logs =
        aws_sdk_ecs::types::ExecuteCommandLogConfiguration::builder().cloud_watch_log_group_name(log_group).build();
    aws_sdk_ecs::types::ClusterConfiguration::builder()
        .execute_command_configuration(
            aws_sdk_ecs::types::ExecuteCommandConfiguration::builder()
                .logging(aws_sdk_ecs::types::ExecuteCommandLogging::Override)
                .log_configuration(logs)
                .build(),
        )
        .build()
}

/// Differences between the cluster and the managed settings; `exec_logs` is the log group ECS Exec sessions
/// must be recorded in.
pub fn cluster_drift(cluster: &aws_sdk_ecs::types::Cluster, exec_logs: &str) -> Vec<String> {
    let mut drift = Vec::new();
    match cluster.status() {
        Some("ACTIVE") | Some("PROVISIONING") => {}
        other => drift.push(format!("cluster status is {}, expected ACTIVE", other.unwrap_or("unknown"))),
    }
    if !container_insights_on(cluster) {
        drift.push("container insights is disabled, expected enabled".to_string());
    }
    if exec_log_group(cluster) != Some(exec_logs) {
        let have = exec_log_group(cluster).unwrap_or("not recorded");
        drift.push(format!("ECS Exec sessions are logged to {have}, expected {exec_logs}"));
    }
    drift
}

fn insights_setting() -> ClusterSetting {
    ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value("enabled").build()
}

/// The cluster as DescribeClusters reports it, in any status; `None` when ECS does not know it.
async fn find_cluster(client: &Client, name: &str) -> AwsResult<Option<aws_sdk_ecs::types::Cluster>> {
    let out = client
        .describe_clusters()
        .clusters(name)
        .include(ClusterField::Settings)
        .include(ClusterField::Configurations)
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeClusters", e))?;
    Ok(out.clusters().iter().find(|c| c.cluster_name() == Some(name)).cloned())
}

fn is_inactive(cluster: &aws_sdk_ecs::types::Cluster) -> bool {
    cluster.status() == Some("INACTIVE")
}

/// Creates the cluster with Container Insights on and ECS Exec sessions recorded in `exec_logs`, or adopts
/// the existing one (an INACTIVE cluster of the same name is a deleted one and is created afresh), then
/// restores either setting if it was changed and converges tags. May be called again after a crash; converges.
pub async fn ensure_cluster(
    client: &Client,
    name: &str,
    exec_logs: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<Cluster> {
    let cluster = match find_cluster(client, name).await?.filter(|c| !is_inactive(c)) {
        Some(found) => found,
        None => {
            // CreateCluster is idempotent for an ACTIVE cluster, so a concurrent creation is simply adopted.
            let out = client
                .create_cluster()
                .cluster_name(name)
                .settings(insights_setting())
                .configuration(exec_configuration(exec_logs))
                .set_tags(Some(tag_list(tags)))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("CreateCluster", e))?;
            out.cluster()
                .cloned()
                .ok_or_else(|| AwsError::other("CreateCluster", format!("no cluster in the reply for {name}")))?
        }
    };
    let insights = container_insights_on(&cluster);
    let exec = exec_log_group(&cluster) == Some(exec_logs);
    if !insights || !exec {
        let mut request = client.update_cluster().cluster(name);
        if !insights {
            request = request.settings(insights_setting());
        }
        if !exec {
            request = request.configuration(exec_configuration(exec_logs));
        }
        request.send().await.map_err(|e| AwsError::from_sdk("UpdateCluster", e))?;
    }
    let arn = cluster.cluster_arn().unwrap_or_default().to_string();
    put_tags(client, &arn, &super::tags_to_write(tags, &tag_map(cluster.tags()))).await?;
    Ok(Cluster { name: name.to_string(), arn })
}

/// Tags the cluster [`super::DEPLOYED_TAG`] with the time now: the stack's first complete apply.
pub async fn mark_deployed(client: &Client, arn: &str) -> AwsResult<()> {
    // Whole seconds: the value is for people reading the tag.
    let now = aws_sdk_ecs::primitives::DateTime::from(std::time::SystemTime::now());
    let now = aws_sdk_ecs::primitives::DateTime::from_secs(now.secs());
    let when = now
        .fmt(aws_sdk_ecs::primitives::DateTimeFormat::DateTime)
        .map_err(|e| AwsError::other("TagResource", e.to_string()))?;
    put_tags(client, arn, &BTreeMap::from([(super::DEPLOYED_TAG.to_string(), when)])).await
}

/// Describes the cluster and its drift; `None` when it does not exist or was deleted (INACTIVE).
pub async fn describe_cluster(client: &Client, name: &str, exec_logs: &str) -> AwsResult<Option<ClusterObservation>> {
    let Some(cluster) = find_cluster(client, name).await?.filter(|c| !is_inactive(c)) else { return Ok(None) };
    Ok(Some(ClusterObservation {
        arn: cluster.cluster_arn().unwrap_or_default().to_string(),
        status: cluster.status().unwrap_or_default().to_string(),
        container_insights: container_insights_on(&cluster),
        registered_instances: cluster.registered_container_instances_count(),
        active_services: cluster.active_services_count(),
        running_tasks: cluster.running_tasks_count(),
        tags: tag_map(cluster.tags()),
        drift: cluster_drift(&cluster, exec_logs),
    }))
}

/// Why DeleteCluster refused, when the refusal is one that clears up by itself (the caller removed the
/// services and instances, but AWS is still draining them); `None` for errors that retrying will not fix.
pub fn cluster_delete_blocker(err: &AwsError) -> Option<&'static str> {
    let code = err.code.as_deref()?;
    match code {
        "ClusterContainsContainerInstancesException" => Some("container instances are still registered"),
        "ClusterContainsTasksException" => Some("tasks are still running"),
        "ClusterContainsServicesException" => Some("services are still draining"),
        "UpdateInProgressException" => Some("an update is still in progress"),
        _ => None,
    }
}

/// Force-deregisters every container instance still registered, so DeleteCluster is not blocked by
/// instances whose Auto Scaling group is removed only after the cluster.
async fn deregister_container_instances(client: &Client, cluster: &str) -> AwsResult<()> {
    let mut pages = client.list_container_instances().cluster(cluster).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                let err = AwsError::from_sdk("ListContainerInstances", err);
                return if err.is(&["ClusterNotFoundException"]) { Ok(()) } else { Err(err) };
            }
        };
        for arn in page.container_instance_arns() {
            client
                .deregister_container_instance()
                .cluster(cluster)
                .container_instance(arn)
                .force(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DeregisterContainerInstance", e))?;
        }
    }
    Ok(())
}

/// Deletes the cluster. Services must already be deleted (the caller's order); container instances still
/// registered are force-deregistered, and refusals that clear up by themselves (instances, tasks or services
/// still draining) are retried for up to `timeout`. Absent or INACTIVE is success. May be called again after a
/// crash; converges.
pub async fn delete_cluster(client: &Client, name: &str, timeout: Duration) -> AwsResult<()> {
    let deadline = super::deadline_after(timeout);
    let backoff = Backoff::up_to(POLL_INTERVAL);
    loop {
        match find_cluster(client, name).await? {
            None => return Ok(()),
            Some(c) if is_inactive(&c) => return Ok(()),
            Some(_) => {}
        }
        deregister_container_instances(client, name).await?;
        let err = match client.delete_cluster().cluster(name).send().await {
            Ok(_) => return Ok(()),
            Err(err) => AwsError::from_sdk("DeleteCluster", err),
        };
        if err.is(&["ClusterNotFoundException"]) {
            return Ok(());
        }
        let Some(blocker) = cluster_delete_blocker(&err) else { return Err(err) };
        if Instant::now() >= deadline {
            return Err(AwsError::other(
                "DeleteCluster",
                format!("cluster {name} could not be deleted within {timeout:?}: {blocker} ({})", err.message),
            ));
        }
        backoff.sleep_before(deadline).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Task definitions
// ---------------------------------------------------------------------------------------------------------

/// A container's view of a task volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// The task volume's name ([`EfsVolume::name`]).
    pub source_volume: String,
    /// Where it appears in the container.
    pub container_path: String,
    /// Whether the container may only read it.
    pub read_only: bool,
}

/// Where a container's output goes in CloudWatch Logs (ECS.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// The log group.
    pub group: String,
    /// The log group's region.
    pub region: String,
    /// Stream prefix; each task writes `<prefix>/<container>/<task id>`.
    pub stream_prefix: String,
}

/// A container health check; times in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The command, e.g. `["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"]`.
    pub command: Vec<String>,
    /// Seconds between checks (ECS default 30).
    pub interval: i32,
    /// Seconds before a check counts as failed (ECS default 5).
    pub timeout: i32,
    /// Failures before the container is unhealthy (ECS default 3).
    pub retries: i32,
    /// Grace period after start during which failures do not count (ECS default 0).
    pub start_period: i32,
}

/// One container of a task definition. Holds no secret values: `secrets` maps variable names to secret ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name, also its name in `depends_on`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// CPU units reserved for it.
    pub cpu: i32,
    /// Hard memory limit in MiB; `None` shares the task's memory with the other containers.
    pub memory: Option<i32>,
    /// Whether the task stops when this container stops.
    pub essential: bool,
    /// TCP ports it listens on (host port = container port under awsvpc).
    pub port_mappings: Vec<i32>,
    /// Plain environment; never secrets (ECS.8).
    pub environment: BTreeMap<String, String>,
    /// Variable name -> `valueFrom` (a secret ARN, optionally with `:json-key::`).
    pub secrets: BTreeMap<String, String>,
    /// Volumes it mounts.
    pub mount_points: Vec<MountPoint>,
    /// Where its logs go.
    pub log: LogSpec,
    /// Its health check, if the image can run one.
    pub health_check: Option<HealthCheck>,
    /// Read-only root file system (ECS.5), where the image allows it.
    pub readonly_root_filesystem: bool,
    /// Containers of the same task that must start first (healthy, when they have a health check).
    pub depends_on: Vec<String>,
    /// The command, replacing the image's `CMD`; empty keeps the image's.
    pub command: Vec<String>,
    /// The working directory, replacing the image's `WORKDIR`.
    pub working_directory: Option<String>,
    /// Run a minimal init as PID 1 (reaps the processes ECS Exec sessions leave).
    pub init_process: bool,
    /// Seconds ECS waits after SIGTERM before it kills the container.
    pub stop_timeout: Option<i32>,
}

/// An EFS volume of a task, mounted through an access point with TLS and IAM authorisation (ECS.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfsVolume {
    /// The volume's name within the task.
    pub name: String,
    /// The file system id.
    pub file_system_id: String,
    /// The access point id, which fixes the root directory and POSIX user.
    pub access_point_id: String,
}

/// Everything a task definition is registered from: network mode awsvpc, EC2 compatibility, never privileged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionSpec {
    /// The family, e.g. `rdss-datavault-broker`.
    pub family: String,
    /// The role the application assumes, if it calls AWS.
    pub task_role_arn: Option<String>,
    /// The role ECS uses to pull images, write logs and read secrets.
    pub execution_role_arn: String,
    /// Task CPU units.
    pub cpu: i32,
    /// Task memory in MiB.
    pub memory: i32,
    /// The containers.
    pub containers: Vec<ContainerSpec>,
    /// EFS volumes.
    pub volumes: Vec<EfsVolume>,
    /// Tags of every revision registered.
    pub tags: BTreeMap<String, String>,
}

/// A registered task definition revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinition {
    /// Its ARN, including the revision.
    pub arn: String,
    /// Its revision number.
    pub revision: i32,
}

/// Checks the spec for mistakes ECS would reject late or not at all.
pub fn validate_task_definition(spec: &TaskDefinitionSpec) -> Result<(), String> {
    if spec.containers.is_empty() {
        return Err(format!("task definition {} has no containers", spec.family));
    }
    if !spec.containers.iter().any(|c| c.essential) {
        return Err(format!("task definition {} has no essential container", spec.family));
    }
    let names: BTreeSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    if names.len() != spec.containers.len() {
        return Err(format!("task definition {} has two containers with the same name", spec.family));
    }
    let limits: i32 = spec.containers.iter().filter_map(|c| c.memory).sum();
    if limits > spec.memory {
        return Err(format!(
            "task definition {}: its containers' memory limits add up to {limits} MiB, more than the task's {} MiB",
            spec.family, spec.memory
        ));
    }
    let volumes: BTreeSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
    for c in &spec.containers {
        if let Some(both) = c.environment.keys().find(|k| c.secrets.contains_key(*k)) {
            return Err(format!("container {}: {both} is both an environment variable and a secret", c.name));
        }
        if let Some(m) = c.mount_points.iter().find(|m| !volumes.contains(m.source_volume.as_str())) {
            return Err(format!("container {} mounts unknown volume {}", c.name, m.source_volume));
        }
        if let Some(d) = c.depends_on.iter().find(|d| !names.contains(d.as_str()) || **d == c.name) {
            return Err(format!("container {} depends on {d}, which is not another container of the task", c.name));
        }
    }
    Ok(())
}

/// A task definition reduced to the fields we set, with ECS's defaults applied, so a spec and a described
/// revision compare equal exactly when registering again would change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NormalTask {
    family: String,
    task_role_arn: Option<String>,
    execution_role_arn: Option<String>,
    network_mode: String,
    ec2_compatible: bool,
    cpu: Option<i64>,
    memory: Option<i64>,
    containers: BTreeMap<String, NormalContainer>,
    volumes: BTreeMap<String, NormalVolume>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NormalContainer {
    image: String,
    cpu: i32,
    memory: Option<i32>,
    essential: bool,
    /// (container port, host port, protocol).
    ports: BTreeSet<(i32, i32, String)>,
    environment: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    /// (source volume, container path, read only).
    mount_points: BTreeSet<(String, String, bool)>,
    log_driver: Option<String>,
    log_options: BTreeMap<String, String>,
    health_check: Option<HealthCheck>,
    readonly_root_filesystem: bool,
    privileged: bool,
    /// (container, condition).
    depends_on: BTreeSet<(String, String)>,
    command: Vec<String>,
    working_directory: Option<String>,
    init_process: bool,
    stop_timeout: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NormalVolume {
    file_system_id: Option<String>,
    access_point_id: Option<String>,
    root_directory: String,
    transit_encryption: bool,
    iam_authorization: bool,
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_string)
}

/// Task-level CPU or memory as ECS reports it: units/MiB (`"256"`), or `"0.25 vCPU"` / `"1 GB"`.
fn parse_task_size(value: Option<&str>) -> Option<i64> {
    let value = value?.trim().to_ascii_lowercase();
    let digits_end = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
    let number: f64 = value[..digits_end].parse().ok()?;
    let unit = value[digits_end..].trim();
    let factor = if unit.contains("vcpu") || unit.contains("gb") { 1024.0 } else { 1.0 };
    Some((number * factor).round() as i64)
}

fn log_options(log: &LogSpec) -> BTreeMap<String, String> {
    let values = [log.group.as_str(), log.region.as_str(), log.stream_prefix.as_str(), "non-blocking"];
    LOG_OPTION_KEYS.iter().zip(values).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Dependencies wait for health when the dependency can report it, otherwise only for its start.
fn dependency_condition(spec: &TaskDefinitionSpec, dependency: &str) -> ContainerCondition {
    let healthy = spec.containers.iter().any(|c| c.name == dependency && c.health_check.is_some());
    if healthy { ContainerCondition::Healthy } else { ContainerCondition::Start }
}

impl NormalTask {
    /// What ECS would describe after registering `spec`: the spec goes through the same builder as the
    /// registration, so what is compared and what is registered cannot drift apart.
    fn from_spec(spec: &TaskDefinitionSpec) -> AwsResult<Self> {
        Ok(NormalTask::from_described(&wanted_definition(spec)?))
    }

    fn from_described(td: &aws_sdk_ecs::types::TaskDefinition) -> Self {
        let containers = td.container_definitions().iter().map(|c| {
            let name = c.name().unwrap_or_default().to_string();
            (name, NormalContainer::from_described(c))
        });
        let volumes = td.volumes().iter().map(|v| (v.name().unwrap_or_default().to_string(), normal_volume(v)));
        NormalTask {
            family: td.family().unwrap_or_default().to_string(),
            task_role_arn: non_empty(td.task_role_arn()),
            execution_role_arn: non_empty(td.execution_role_arn()),
            network_mode: td.network_mode().map_or("bridge", |m| m.as_str()).to_string(),
            ec2_compatible: td.requires_compatibilities().contains(&Compatibility::Ec2),
            cpu: parse_task_size(td.cpu()),
            memory: parse_task_size(td.memory()),
            containers: containers.collect(),
            volumes: volumes.collect(),
        }
    }
}

fn normal_volume(v: &Volume) -> NormalVolume {
    let efs = v.efs_volume_configuration();
    let auth = efs.and_then(|e| e.authorization_config());
    NormalVolume {
        file_system_id: efs.map(|e| e.file_system_id().to_string()),
        access_point_id: non_empty(auth.and_then(|a| a.access_point_id())),
        root_directory: efs.and_then(|e| non_empty(e.root_directory())).unwrap_or_else(|| "/".to_string()),
        transit_encryption: efs.and_then(|e| e.transit_encryption()) == Some(&EfsTransitEncryption::Enabled),
        iam_authorization: auth.and_then(|a| a.iam()) == Some(&EfsAuthorizationConfigIam::Enabled),
    }
}

impl NormalContainer {
    fn from_described(c: &ContainerDefinition) -> Self {
        let log = c.log_configuration();
        NormalContainer {
            image: c.image().unwrap_or_default().to_string(),
            cpu: c.cpu(),
            memory: c.memory(),
            essential: c.essential().unwrap_or(true),
            ports: c
                .port_mappings()
                .iter()
                .filter_map(|p| {
                    let container = p.container_port()?;
                    let protocol = p.protocol().map_or("tcp", |p| p.as_str()).to_string();
                    Some((container, p.host_port().filter(|h| *h != 0).unwrap_or(container), protocol))
                })
                .collect(),
            environment: c
                .environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_string(), kv.value().unwrap_or_default().to_string())))
                .collect(),
            secrets: c.secrets().iter().map(|s| (s.name().to_string(), s.value_from().to_string())).collect(),
            mount_points: c
                .mount_points()
                .iter()
                .map(|m| {
                    let source = m.source_volume().unwrap_or_default().to_string();
                    (source, m.container_path().unwrap_or_default().to_string(), m.read_only().unwrap_or(false))
                })
                .collect(),
            log_driver: log.map(|l| l.log_driver().as_str().to_string()),
            log_options: log
                .and_then(|l| l.options())
                .map(|o| o.iter().filter(|(k, _)| LOG_OPTION_KEYS.contains(&k.as_str())))
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            health_check: c.health_check().map(|h| HealthCheck {
                command: h.command().to_vec(),
                interval: h.interval().unwrap_or(30),
                timeout: h.timeout().unwrap_or(5),
                retries: h.retries().unwrap_or(3),
                start_period: h.start_period().unwrap_or(0),
            }),
            readonly_root_filesystem: c.readonly_root_filesystem().unwrap_or(false),
            privileged: c.privileged().unwrap_or(false),
            depends_on: c
                .depends_on()
                .iter()
                .map(|d| (d.container_name().to_string(), d.condition().as_str().to_string()))
                .collect(),
            command: c.command().to_vec(),
            working_directory: non_empty(c.working_directory()),
            init_process: c.linux_parameters().and_then(|l| l.init_process_enabled()).unwrap_or(false),
            stop_timeout: c.stop_timeout(),
        }
    }

    fn differences(&self, name: &str, have: &NormalContainer, out: &mut Vec<String>) {
        let label = |field: &str| format!("container {name}: {field}");
        differ(out, &label("image"), &self.image, &have.image);
        differ(out, &label("cpu"), &self.cpu, &have.cpu);
        differ(out, &label("memory"), &self.memory, &have.memory);
        differ(out, &label("essential"), &self.essential, &have.essential);
        differ(out, &label("port mappings"), &self.ports, &have.ports);
        differ_keys(out, &label("environment"), &self.environment, &have.environment);
        differ_keys(out, &label("secrets"), &self.secrets, &have.secrets);
        differ(out, &label("mount points"), &self.mount_points, &have.mount_points);
        differ(out, &label("log driver"), &self.log_driver, &have.log_driver);
        differ(out, &label("log options"), &self.log_options, &have.log_options);
        differ(out, &label("health check"), &self.health_check, &have.health_check);
        differ(
            out,
            &label("read-only root file system"),
            &self.readonly_root_filesystem,
            &have.readonly_root_filesystem,
        );
        differ(out, &label("privileged"), &self.privileged, &have.privileged);
        differ(out, &label("depends on"), &self.depends_on, &have.depends_on);
        differ(out, &label("command"), &self.command, &have.command);
        differ(out, &label("working directory"), &self.working_directory, &have.working_directory);
        differ(out, &label("init process"), &self.init_process, &have.init_process);
        differ(out, &label("stop timeout"), &self.stop_timeout, &have.stop_timeout);
    }
}

fn differ<T: PartialEq + Debug>(out: &mut Vec<String>, label: &str, want: &T, have: &T) {
    if want != have {
        out.push(format!("{label} is {have:?}, expected {want:?}"));
    }
}

/// Like [`differ`] but names only the keys, so values never reach messages or logs.
fn differ_keys(out: &mut Vec<String>, label: &str, want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) {
    let keys: BTreeSet<&String> = want.keys().chain(have.keys()).filter(|k| want.get(*k) != have.get(*k)).collect();
    if !keys.is_empty() {
        let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
        out.push(format!("{label} differs in {}", keys.join(", ")));
    }
}

/// How a described revision differs from the spec, after normalisation (empty when registering again would
/// change nothing). Only the fields the spec sets are compared; environment and secret values are not shown.
pub fn task_definition_differences(
    spec: &TaskDefinitionSpec,
    described: &aws_sdk_ecs::types::TaskDefinition,
) -> Vec<String> {
    let want = match NormalTask::from_spec(spec) {
        Ok(want) => want,
        Err(e) => return vec![format!("the spec cannot be registered: {e}")],
    };
    let have = NormalTask::from_described(described);
    let mut out = Vec::new();
    differ(&mut out, "family", &want.family, &have.family);
    differ(&mut out, "task role", &want.task_role_arn, &have.task_role_arn);
    differ(&mut out, "execution role", &want.execution_role_arn, &have.execution_role_arn);
    differ(&mut out, "network mode", &want.network_mode, &have.network_mode);
    differ(&mut out, "EC2 compatibility", &want.ec2_compatible, &have.ec2_compatible);
    differ(&mut out, "task cpu", &want.cpu, &have.cpu);
    differ(&mut out, "task memory", &want.memory, &have.memory);
    let names: BTreeSet<&String> = want.containers.keys().chain(have.containers.keys()).collect();
    for name in names {
        match (want.containers.get(name), have.containers.get(name)) {
            (Some(w), Some(h)) => w.differences(name, h, &mut out),
            (Some(_), None) => out.push(format!("container {name} is missing")),
            (None, _) => out.push(format!("container {name} is not in the spec")),
        }
    }
    differ(&mut out, "volumes", &want.volumes, &have.volumes);
    out
}

/// Whether the described revision already is what the spec would register (see
/// [`task_definition_differences`]).
pub fn matches(spec: &TaskDefinitionSpec, described: &aws_sdk_ecs::types::TaskDefinition) -> bool {
    task_definition_differences(spec, described).is_empty()
}

fn container_definition(spec: &TaskDefinitionSpec, c: &ContainerSpec) -> AwsResult<ContainerDefinition> {
    let ports = c
        .port_mappings
        .iter()
        .map(|p| PortMapping::builder().container_port(*p).host_port(*p).protocol(TransportProtocol::Tcp).build());
    let environment = c.environment.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build());
    let secrets = c.secrets.iter().map(|(k, v)| Secret::builder().name(k).value_from(v).build());
    let mounts = c.mount_points.iter().map(|m| {
        aws_sdk_ecs::types::MountPoint::builder()
            .source_volume(&m.source_volume)
            .container_path(&m.container_path)
            .read_only(m.read_only)
            .build()
    });
    let depends = c
        .depends_on
        .iter()
        .map(|d| ContainerDependency::builder().container_name(d).condition(dependency_condition(spec, d)).build());
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .set_options(Some(log_options(&c.log).into_iter().collect()));
    let health_check = match &c.health_check {
        Some(h) => Some(
            aws_sdk_ecs::types::HealthCheck::builder()
                .set_command(Some(h.command.clone()))
                .interval(h.interval)
                .timeout(h.timeout)
                .retries(h.retries)
                .start_period(h.start_period)
                .build()?,
        ),
        None => None,
    };
    Ok(ContainerDefinition::builder()
        .name(&c.name)
        .image(&c.image)
        .cpu(c.cpu)
        .set_memory(c.memory)
        .essential(c.essential)
        .privileged(false)
        .readonly_root_filesystem(c.readonly_root_filesystem)
        .set_port_mappings(Some(ports.collect()))
        .set_environment(Some(environment.collect()))
        .set_secrets(Some(secrets.collect::<Result<_, _>>()?))
        .set_mount_points(Some(mounts.collect()))
        .set_depends_on(Some(depends.collect::<Result<_, _>>()?))
        .log_configuration(log.build()?)
        .set_health_check(health_check)
        .set_command((!c.command.is_empty()).then(|| c.command.clone()))
        .set_working_directory(c.working_directory.clone())
        .set_linux_parameters(
            c.init_process.then(|| aws_sdk_ecs::types::LinuxParameters::builder().init_process_enabled(true).build()),
        )
        .set_stop_timeout(c.stop_timeout)
        .build())
}

fn efs_volume(v: &EfsVolume) -> AwsResult<Volume> {
    let efs = EfsVolumeConfiguration::builder()
        .file_system_id(&v.file_system_id)
        .transit_encryption(EfsTransitEncryption::Enabled)
        .authorization_config(
            EfsAuthorizationConfig::builder()
                .access_point_id(&v.access_point_id)
                .iam(EfsAuthorizationConfigIam::Enabled)
                .build(),
        )
        .build()?;
    Ok(Volume::builder().name(&v.name).efs_volume_configuration(efs).build())
}

/// The family's latest ACTIVE revision, with its tags; `None` when the family has none.
async fn latest_revision(
    client: &Client,
    family: &str,
) -> AwsResult<Option<(aws_sdk_ecs::types::TaskDefinition, BTreeMap<String, String>)>> {
    match client.describe_task_definition().task_definition(family).include(TaskDefinitionField::Tags).send().await {
        Ok(out) => Ok(out
            .task_definition()
            // A family whose revisions are all deregistered can still describe one (moto does): not reusable.
            .filter(|td| td.status() == Some(&TaskDefinitionStatus::Active))
            .map(|td| (td.clone(), tag_map(out.tags())))),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeTaskDefinition", err);
            let unknown = err.is(&["ClientException"]) && err.message.contains("Unable to describe task definition");
            if unknown { Ok(None) } else { Err(err) }
        }
    }
}

/// Returns the family's latest ACTIVE revision when it already matches the spec (after normalisation, so an
/// unchanged spec never registers a new revision), otherwise registers a new one; converges tags either way.
/// May be called again after a crash; converges.
pub async fn ensure_task_definition(client: &Client, spec: &TaskDefinitionSpec) -> AwsResult<TaskDefinition> {
    validate_task_definition(spec).map_err(|m| AwsError::other("RegisterTaskDefinition", m))?;
    if let Some((td, tags)) = latest_revision(client, &spec.family).await?
        && matches(spec, &td)
    {
        let arn = td.task_definition_arn().unwrap_or_default().to_string();
        put_tags(client, &arn, &super::tags_to_write(&spec.tags, &tags)).await?;
        return Ok(TaskDefinition { arn, revision: td.revision() });
    }
    register_task_definition(client, spec).await
}

/// The task definition `spec` describes, as ECS reports a registered revision: the one description of a
/// spec, which registration sends and drift detection compares against.
fn wanted_definition(spec: &TaskDefinitionSpec) -> AwsResult<aws_sdk_ecs::types::TaskDefinition> {
    let containers = spec.containers.iter().map(|c| container_definition(spec, c)).collect::<AwsResult<Vec<_>>>()?;
    let volumes = spec.volumes.iter().map(efs_volume).collect::<AwsResult<Vec<_>>>()?;
    Ok(aws_sdk_ecs::types::TaskDefinition::builder()
        .family(&spec.family)
        .set_task_role_arn(non_empty(spec.task_role_arn.as_deref()))
        .execution_role_arn(&spec.execution_role_arn)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Ec2)
        .cpu(spec.cpu.to_string())
        .memory(spec.memory.to_string())
        .set_container_definitions(Some(containers))
        .set_volumes(Some(volumes))
        .build())
}

async fn register_task_definition(client: &Client, spec: &TaskDefinitionSpec) -> AwsResult<TaskDefinition> {
    let wanted = wanted_definition(spec)?;
    let out = client
        .register_task_definition()
        .set_family(wanted.family().map(str::to_string))
        .set_task_role_arn(wanted.task_role_arn().map(str::to_string))
        .set_execution_role_arn(wanted.execution_role_arn().map(str::to_string))
        .set_network_mode(wanted.network_mode().cloned())
        .set_requires_compatibilities(Some(wanted.requires_compatibilities().to_vec()))
        .set_cpu(wanted.cpu().map(str::to_string))
        .set_memory(wanted.memory().map(str::to_string))
        .set_container_definitions(Some(wanted.container_definitions().to_vec()))
        .set_volumes(Some(wanted.volumes().to_vec()))
        .set_tags(if spec.tags.is_empty() { None } else { Some(tag_list(&spec.tags)) })
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("RegisterTaskDefinition", e))?;
    let td = out.task_definition().ok_or_else(|| {
        AwsError::other("RegisterTaskDefinition", format!("no task definition in the reply for {}", spec.family))
    })?;
    Ok(TaskDefinition { arn: td.task_definition_arn().unwrap_or_default().to_string(), revision: td.revision() })
}

async fn list_revisions(client: &Client, family: &str, status: TaskDefinitionStatus) -> AwsResult<Vec<String>> {
    let pages = client.list_task_definitions().family_prefix(family).status(status).into_paginator().items().send();
    pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("ListTaskDefinitions", e))
}

/// Deregisters every ACTIVE revision of the family, then deletes the family's INACTIVE revisions where the
/// API offers DeleteTaskDefinitions (revisions still used by a draining task are kept by ECS until it stops).
/// A family with no revisions is success. May be called again after a crash; converges.
pub async fn deregister_task_definitions(client: &Client, family: &str) -> AwsResult<()> {
    for arn in list_revisions(client, family, TaskDefinitionStatus::Active).await? {
        if let Err(err) = client.deregister_task_definition().task_definition(&arn).send().await {
            let err = AwsError::from_sdk("DeregisterTaskDefinition", err);
            let gone = err.is(&["ClientException"]) && err.message.to_ascii_lowercase().contains("does not exist");
            if !gone {
                return Err(err);
            }
        }
    }
    let inactive = list_revisions(client, family, TaskDefinitionStatus::Inactive).await?;
    for batch in inactive.chunks(DELETE_TASK_DEFINITIONS_BATCH) {
        let out = match client.delete_task_definitions().set_task_definitions(Some(batch.to_vec())).send().await {
            Ok(out) => out,
            Err(err) => {
                let err = AwsError::from_sdk("DeleteTaskDefinitions", err);
                // Deregistered revisions are harmless; a partition without the API keeps them.
                let unsupported =
                    err.is(&["UnsupportedFeatureException", "InvalidAction", "UnknownOperationException"]);
                return if unsupported { Ok(()) } else { Err(err) };
            }
        };
        let failures: Vec<String> = out
            .failures()
            .iter()
            .filter(|f| !f.reason().unwrap_or_default().contains("does not exist"))
            .map(|f| format!("{}: {}", f.arn().unwrap_or_default(), f.reason().unwrap_or_default()))
            .collect();
        if !failures.is_empty() {
            return Err(AwsError::other("DeleteTaskDefinitions", failures.join("; ")));
        }
    }
    Ok(())
}

/// The family's latest ACTIVE revision as it exists now (judged with [`TaskDefinitionObservation::drift`]);
/// `None` when the family has no active revision.
pub async fn describe_task_definition(client: &Client, family: &str) -> AwsResult<Option<TaskDefinitionObservation>> {
    Ok(latest_revision(client, family).await?.map(|(td, tags)| TaskDefinitionObservation {
        arn: td.task_definition_arn().unwrap_or_default().to_string(),
        revision: td.revision(),
        image: td.container_definitions().first().and_then(|c| c.image()).map(str::to_string),
        cpu: td.cpu().and_then(|c| c.parse().ok()),
        memory: td.memory().and_then(|m| m.parse().ok()),
        environment: td
            .container_definitions()
            .first()
            .map(|c| {
                c.environment()
                    .iter()
                    .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        tags,
        described: td,
    }))
}

/// A task definition revision as observed on refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefinitionObservation {
    /// The revision's ARN.
    pub arn: String,
    /// The revision number.
    pub revision: i32,
    /// The first container's image.
    pub image: Option<String>,
    /// Task CPU units, when set as a number.
    pub cpu: Option<i64>,
    /// Task memory in MiB, when set as a number.
    pub memory: Option<i64>,
    /// The first container's plain environment (never a password: those are ECS secrets).
    pub environment: BTreeMap<String, String>,
    /// The revision's tags, which say whose the family is.
    pub tags: BTreeMap<String, String>,
    described: aws_sdk_ecs::types::TaskDefinition,
}

impl TaskDefinitionObservation {
    /// How the revision differs from `expected` (empty when it does not).
    pub fn drift(&self, expected: &TaskDefinitionSpec) -> Vec<String> {
        task_definition_differences(expected, &self.described)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------------------

/// A target group the service's tasks register with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerTarget {
    /// The target group's ARN.
    pub target_group_arn: String,
    /// The container receiving the traffic.
    pub container_name: String,
    /// Its port.
    pub container_port: i32,
}

/// An ECS service as the stack wants it: launch type EC2, awsvpc without public IPs (ECS.2), deployment
/// circuit breaker with rollback, tags propagated from the service, ECS-managed tags on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The cluster's name.
    pub cluster: String,
    /// The service's name.
    pub name: String,
    /// The task definition revision to run.
    pub task_definition_arn: String,
    /// Tasks to keep running.
    pub desired_count: i32,
    /// Subnets of the task network interfaces.
    pub subnet_ids: Vec<String>,
    /// Security groups of the task network interfaces; always required (never the VPC default group).
    pub security_group_ids: Vec<String>,
    /// The Cloud Map service the tasks register in, so others reach them by name.
    pub registry_arn: Option<String>,
    /// Seconds during which failing health checks of a new task are ignored.
    pub health_check_grace_seconds: Option<i32>,
    /// A target group, when the service is behind a load balancer.
    pub load_balancer: Option<LoadBalancerTarget>,
    /// Minimum healthy percent during deployments: [`ROLLING_MIN_HEALTHY_PERCENT`] normally; 0 for a single
    /// instance (rabbitmq) that must stop before its replacement starts.
    pub minimum_healthy_percent: i32,
    /// Maximum percent during deployments: [`ROLLING_MAX_PERCENT`] normally; 100 for a single instance.
    pub maximum_percent: i32,
    /// Whether operators may open a shell in its tasks with ECS Exec (through SSM, no inbound port).
    pub enable_execute_command: bool,
    /// The task definition's image is not pushed yet: a new service is created with no task, and an
    /// existing one keeps the task definition and count it runs (rolling it onto an image that cannot be
    /// pulled would only stop what works).
    pub awaiting_image: bool,
    /// The service's tags, propagated to its tasks.
    pub tags: BTreeMap<String, String>,
}

/// A service as the stack records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
}

/// What a service looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceObservation {
    /// Its ARN.
    pub arn: String,
    /// `ACTIVE` or `DRAINING`.
    pub status: String,
    /// Tasks it should run.
    pub desired_count: i32,
    /// Tasks running.
    pub running_count: i32,
    /// Tasks starting.
    pub pending_count: i32,
    /// The task definition of its primary deployment.
    pub task_definition: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Differences from the expected spec (empty when none or when no spec was given).
    pub drift: Vec<String>,
}

/// Checks a service spec for settings ECS would reject or that break the security defaults.
pub fn validate_service(spec: &ServiceSpec) -> Result<(), String> {
    if spec.subnet_ids.is_empty() {
        return Err(format!("service {} needs at least one subnet", spec.name));
    }
    if spec.security_group_ids.is_empty() {
        return Err(format!("service {} needs at least one security group", spec.name));
    }
    if !(0..=100).contains(&spec.minimum_healthy_percent) || spec.maximum_percent < 100 {
        return Err(format!(
            "service {}: minimum healthy percent must be 0-100 and maximum percent at least 100 (got {} and {})",
            spec.name, spec.minimum_healthy_percent, spec.maximum_percent
        ));
    }
    if spec.desired_count < 0 {
        return Err(format!("service {}: desired count cannot be negative", spec.name));
    }
    Ok(())
}

/// The `family:revision` part of a task definition ARN, so ARNs and short forms compare equal.
fn task_definition_key(arn: &str) -> &str {
    arn.rsplit_once("task-definition/").map_or(arn, |(_, key)| key)
}

/// What differs between a spec and a described service, grouped by the UpdateService field that repairs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ServiceDiff {
    task_definition: bool,
    desired_count: bool,
    network: bool,
    deployment: bool,
    registries: bool,
    load_balancers: bool,
    grace: bool,
    tagging: bool,
    execute_command: bool,
    /// A deployment failed and nothing will retry it by itself: a new deployment is forced.
    redeploy: bool,
    /// Human-readable differences, repairable or not.
    messages: Vec<String>,
}

impl ServiceDiff {
    fn needs_update(&self) -> bool {
        self.task_definition
            || self.desired_count
            || self.network
            || self.deployment
            || self.registries
            || self.load_balancers
            || self.grace
            || self.tagging
            || self.execute_command
            || self.redeploy
    }
}

fn sorted(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

fn compare_network(spec: &ServiceSpec, svc: &aws_sdk_ecs::types::Service, diff: &mut ServiceDiff) {
    let Some(vpc) = svc.network_configuration().and_then(|n| n.awsvpc_configuration()) else {
        diff.network = true;
        diff.messages.push("awsvpc network configuration is missing".to_string());
        return;
    };
    let before = diff.messages.len();
    differ(&mut diff.messages, "subnets", &sorted(&spec.subnet_ids), &sorted(vpc.subnets()));
    differ(&mut diff.messages, "security groups", &sorted(&spec.security_group_ids), &sorted(vpc.security_groups()));
    if vpc.assign_public_ip() == Some(&AssignPublicIp::Enabled) {
        diff.messages.push("public IP assignment is ENABLED, expected DISABLED".to_string());
    }
    diff.network = diff.messages.len() > before;
}

fn compare_deployment(spec: &ServiceSpec, svc: &aws_sdk_ecs::types::Service, diff: &mut ServiceDiff) {
    let config = svc.deployment_configuration();
    let breaker = config.and_then(|c| c.deployment_circuit_breaker());
    let before = diff.messages.len();
    if !breaker.is_some_and(|b| b.enable()) {
        diff.messages.push("deployment circuit breaker off".to_string());
    } else if !breaker.is_some_and(|b| b.rollback()) {
        diff.messages.push("deployment circuit breaker rollback off".to_string());
    }
    // Absent percentages are ECS's defaults for a rolling deployment.
    let min = config.and_then(|c| c.minimum_healthy_percent()).unwrap_or(ROLLING_MIN_HEALTHY_PERCENT);
    let max = config.and_then(|c| c.maximum_percent()).unwrap_or(ROLLING_MAX_PERCENT);
    differ(&mut diff.messages, "minimum healthy percent", &spec.minimum_healthy_percent, &min);
    differ(&mut diff.messages, "maximum percent", &spec.maximum_percent, &max);
    diff.deployment = diff.messages.len() > before;
}

fn compare_attachments(spec: &ServiceSpec, svc: &aws_sdk_ecs::types::Service, diff: &mut ServiceDiff) {
    let want: BTreeSet<String> = spec.registry_arn.iter().cloned().collect();
    let have: BTreeSet<String> =
        svc.service_registries().iter().filter_map(|r| r.registry_arn().map(str::to_string)).collect();
    if want != have {
        diff.registries = true;
        differ(&mut diff.messages, "service registries", &want, &have);
    }
    let want: BTreeSet<(String, String, i32)> = spec
        .load_balancer
        .iter()
        .map(|lb| (lb.target_group_arn.clone(), lb.container_name.clone(), lb.container_port))
        .collect();
    let have: BTreeSet<(String, String, i32)> = svc
        .load_balancers()
        .iter()
        .map(|lb| {
            let target = lb.target_group_arn().unwrap_or_default().to_string();
            (target, lb.container_name().unwrap_or_default().to_string(), lb.container_port().unwrap_or_default())
        })
        .collect();
    if want != have {
        diff.load_balancers = true;
        differ(&mut diff.messages, "load balancers", &want, &have);
    }
}

fn compare_service(spec: &ServiceSpec, svc: &aws_sdk_ecs::types::Service) -> ServiceDiff {
    let mut diff = ServiceDiff::default();
    let have_td = svc.task_definition().unwrap_or_default();
    if !spec.awaiting_image && task_definition_key(have_td) != task_definition_key(&spec.task_definition_arn) {
        diff.task_definition = true;
        diff.messages.push(format!("task definition is {have_td}, expected {}", spec.task_definition_arn));
    }
    if !spec.awaiting_image && svc.desired_count() != spec.desired_count {
        diff.desired_count = true;
        diff.messages.push(format!("desired count is {}, expected {}", svc.desired_count(), spec.desired_count));
    }
    compare_network(spec, svc, &mut diff);
    compare_deployment(spec, svc, &mut diff);
    compare_attachments(spec, svc, &mut diff);
    if let Some(want) = spec.health_check_grace_seconds {
        let have = svc.health_check_grace_period_seconds().unwrap_or(0);
        if have != want {
            diff.grace = true;
            diff.messages.push(format!("health check grace period is {have}s, expected {want}s"));
        }
    }
    if svc.propagate_tags() != Some(&PropagateTags::Service) {
        diff.tagging = true;
        let have = svc.propagate_tags().map_or("NONE", |p| p.as_str());
        diff.messages.push(format!("tags propagate from {have}, expected SERVICE"));
    }
    if let Some(failed) = svc.deployments().iter().find(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed))
    {
        diff.redeploy = true;
        let reason = failed.rollout_state_reason().unwrap_or("no reason given");
        diff.messages.push(format!("a deployment failed ({reason}); the next apply starts a new one"));
    }
    if svc.enable_execute_command() != spec.enable_execute_command {
        diff.execute_command = true;
        differ(&mut diff.messages, "ECS Exec", &spec.enable_execute_command, &svc.enable_execute_command());
    }
    if !svc.enable_ecs_managed_tags() {
        diff.tagging = true;
        diff.messages.push("ECS managed tags off".to_string());
    }
    if svc.launch_type().is_some_and(|l| *l != LaunchType::Ec2) {
        let have = svc.launch_type().map_or("none", |l| l.as_str());
        diff.messages
            .push(format!("launch type is {have}, expected EC2 (cannot change in place: replace the service)"));
    }
    diff
}

/// Human-readable differences between a described service and the spec (empty when it matches), e.g.
/// "desired count is 0, expected 1" or "deployment circuit breaker off".
pub fn service_drift(spec: &ServiceSpec, svc: &aws_sdk_ecs::types::Service) -> Vec<String> {
    compare_service(spec, svc).messages
}

/// Whether a CreateService failure is IAM eventual consistency (a role or the ECS service-linked role created
/// moments ago and not yet usable), which clears up on its own.
pub fn is_propagation_error(err: &AwsError) -> bool {
    const PATTERNS: [&str; 5] = [
        "unable to assume role",
        "unable to assume the service linked role",
        "verify that the ecs service role being passed has the proper permissions",
        "service linked role",
        "is not authorized to perform: iam:passrole",
    ];
    let message = err.message.to_ascii_lowercase();
    err.is(&["InvalidParameterException", "ClientException", "AccessDeniedException"])
        && PATTERNS.iter().any(|p| message.contains(p))
}

/// The next pause of the IAM retry: doubling, capped at [`IAM_RETRY_MAX`].
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(IAM_RETRY_MAX)
}

fn network_configuration(spec: &ServiceSpec) -> AwsResult<NetworkConfiguration> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(spec.subnet_ids.clone()))
        .set_security_groups(Some(spec.security_group_ids.clone()))
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

fn deployment_configuration(spec: &ServiceSpec) -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
        .minimum_healthy_percent(spec.minimum_healthy_percent)
        .maximum_percent(spec.maximum_percent)
        .build()
}

fn service_registries(spec: &ServiceSpec) -> Vec<ServiceRegistry> {
    spec.registry_arn.iter().map(|arn| ServiceRegistry::builder().registry_arn(arn).build()).collect()
}

fn load_balancers(spec: &ServiceSpec) -> Vec<LoadBalancer> {
    spec.load_balancer
        .iter()
        .map(|lb| {
            LoadBalancer::builder()
                .target_group_arn(&lb.target_group_arn)
                .container_name(&lb.container_name)
                .container_port(lb.container_port)
                .build()
        })
        .collect()
}

/// The service as DescribeServices reports it, in any status; `None` when the service or its cluster is
/// unknown.
async fn find_service(client: &Client, cluster: &str, name: &str) -> AwsResult<Option<aws_sdk_ecs::types::Service>> {
    match client.describe_services().cluster(cluster).services(name).include(ServiceField::Tags).send().await {
        Ok(out) => Ok(out.services().iter().find(|s| s.service_name() == Some(name)).cloned()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeServices", err);
            if err.is(&["ClusterNotFoundException"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// Whether a service no longer counts as existing (deleted, or deleted long enough ago to be forgotten).
pub fn service_gone(service: Option<&aws_sdk_ecs::types::Service>) -> bool {
    service.is_none_or(|s| s.status() == Some("INACTIVE"))
}

/// Creates the service, or updates it in place where it differs from the spec (task definition, desired
/// count, network, deployment configuration, service registries and load balancers, which UpdateService
/// changes with a rolling deployment, health check grace and tag propagation), then applies tags. An INACTIVE
/// service is a deleted one and is created afresh; a DRAINING one is awaited first. CreateService is retried
/// with backoff for up to `retry_for` while a new IAM role is not yet usable. May be called again after a
/// crash; converges.
pub async fn ensure_service(client: &Client, spec: &ServiceSpec, retry_for: Duration) -> AwsResult<Service> {
    validate_service(spec).map_err(|m| AwsError::other("CreateService", m))?;
    let existing = find_service(client, &spec.cluster, &spec.name).await?;
    let svc = match existing {
        Some(svc) if svc.status() == Some("ACTIVE") => {
            update_service(client, spec, &svc).await?;
            svc
        }
        Some(svc) if svc.status() == Some("DRAINING") => {
            wait_service_gone(client, &spec.cluster, &spec.name, retry_for).await?;
            create_and_check(client, spec, retry_for).await?
        }
        _ => create_and_check(client, spec, retry_for).await?,
    };
    let arn = svc.service_arn().unwrap_or_default().to_string();
    put_tags(client, &arn, &super::tags_to_write(&spec.tags, &tag_map(svc.tags()))).await?;
    Ok(Service { arn, name: spec.name.clone() })
}

/// Creates the service, then reads it back and updates whatever the create did not take, so the service is
/// exactly the spec after one ensure. (AWS honours every create setting; some implementations of the API,
/// such as the moto emulator, drop the deployment configuration on create but keep it on update.)
async fn create_and_check(
    client: &Client,
    spec: &ServiceSpec,
    retry_for: Duration,
) -> AwsResult<aws_sdk_ecs::types::Service> {
    let created = create_service(client, spec, retry_for).await?;
    match find_service(client, &spec.cluster, &spec.name).await? {
        Some(svc) if !service_drift(spec, &svc).is_empty() => {
            update_service(client, spec, &svc).await?;
            Ok(svc)
        }
        _ => Ok(created),
    }
}

async fn update_service(client: &Client, spec: &ServiceSpec, svc: &aws_sdk_ecs::types::Service) -> AwsResult<()> {
    let diff = compare_service(spec, svc);
    if !diff.needs_update() {
        return Ok(());
    }
    tracing::info!(service = %spec.name, changes = ?diff.messages, "updating ECS service");
    let mut request = client.update_service().cluster(&spec.cluster).service(&spec.name);
    if diff.task_definition {
        request = request.task_definition(&spec.task_definition_arn);
    }
    if diff.desired_count {
        request = request.desired_count(spec.desired_count);
    }
    if diff.network {
        request = request.network_configuration(network_configuration(spec)?);
    }
    if diff.deployment {
        request = request.deployment_configuration(deployment_configuration(spec));
    }
    // Registries and load balancers are sent only when they differ: sending them starts a new deployment.
    if diff.registries {
        request = request.set_service_registries(Some(service_registries(spec)));
    }
    if diff.load_balancers {
        request = request.set_load_balancers(Some(load_balancers(spec)));
    }
    if diff.grace {
        request = request.set_health_check_grace_period_seconds(spec.health_check_grace_seconds);
    }
    if diff.tagging {
        request = request.propagate_tags(PropagateTags::Service).enable_ecs_managed_tags(true);
    }
    if diff.redeploy && !diff.task_definition {
        // ECS never retries a failed deployment by itself; the same task definition is deployed again.
        request = request.force_new_deployment(true);
    }
    if diff.execute_command {
        // Takes effect for tasks started from now on, as ECS does for every setting of a running service.
        request = request.enable_execute_command(spec.enable_execute_command);
    }
    request.send().await.map_err(|e| AwsError::from_sdk("UpdateService", e))?;
    Ok(())
}

async fn create_service(
    client: &Client,
    spec: &ServiceSpec,
    retry_for: Duration,
) -> AwsResult<aws_sdk_ecs::types::Service> {
    let deadline = super::deadline_after(retry_for);
    let mut pause = IAM_RETRY_INITIAL;
    loop {
        let created = client
            .create_service()
            .cluster(&spec.cluster)
            .service_name(&spec.name)
            .task_definition(&spec.task_definition_arn)
            .desired_count(if spec.awaiting_image { 0 } else { spec.desired_count })
            .launch_type(LaunchType::Ec2)
            .scheduling_strategy(SchedulingStrategy::Replica)
            .network_configuration(network_configuration(spec)?)
            .deployment_configuration(deployment_configuration(spec))
            .set_service_registries(Some(service_registries(spec)))
            .set_load_balancers(Some(load_balancers(spec)))
            .set_health_check_grace_period_seconds(spec.health_check_grace_seconds)
            .propagate_tags(PropagateTags::Service)
            .enable_ecs_managed_tags(true)
            .enable_execute_command(spec.enable_execute_command)
            .set_tags(if spec.tags.is_empty() { None } else { Some(tag_list(&spec.tags)) })
            .send()
            .await;
        let err = match created {
            Ok(out) => {
                return out.service().cloned().ok_or_else(|| {
                    AwsError::other("CreateService", format!("no service in the reply for {}", spec.name))
                });
            }
            Err(err) => AwsError::from_sdk("CreateService", err),
        };
        if !is_propagation_error(&err) || super::deadline_after(pause) > deadline {
            return Err(err);
        }
        tracing::debug!(service = %spec.name, error = %err, "IAM not ready yet; retrying CreateService");
        tokio::time::sleep(pause).await;
        pause = next_backoff(pause);
    }
}

/// Describes the service; `None` when it does not exist or was deleted (INACTIVE). With `expected`, the
/// observation lists how the service differs from it.
pub async fn describe_service(
    client: &Client,
    cluster: &str,
    name: &str,
    expected: Option<&ServiceSpec>,
) -> AwsResult<Option<ServiceObservation>> {
    Ok(service_observation(find_service(client, cluster, name).await?, expected))
}

/// The services of the cluster that have one of `names` (at most ten, as DescribeServices takes), by name
/// and in any status, in one request; empty when the cluster is unknown.
pub async fn find_services(
    client: &Client,
    cluster: &str,
    names: &[String],
) -> AwsResult<BTreeMap<String, aws_sdk_ecs::types::Service>> {
    let request = client.describe_services().cluster(cluster).set_services(Some(names.to_vec()));
    match request.include(ServiceField::Tags).send().await {
        Ok(out) => {
            let named = out.services().iter().filter_map(|s| Some((s.service_name()?.to_string(), s.clone())));
            Ok(named.collect())
        }
        Err(err) => {
            let err = AwsError::from_sdk("DescribeServices", err);
            if err.is(&["ClusterNotFoundException"]) { Ok(BTreeMap::new()) } else { Err(err) }
        }
    }
}

/// A described service as the stack observes it, with how it differs from `expected`; `None` for a service
/// that does not exist or no longer counts (INACTIVE).
pub fn service_observation(
    svc: Option<aws_sdk_ecs::types::Service>,
    expected: Option<&ServiceSpec>,
) -> Option<ServiceObservation> {
    let svc = svc.filter(|s| !service_gone(Some(s)))?;
    Some(ServiceObservation {
        arn: svc.service_arn().unwrap_or_default().to_string(),
        status: svc.status().unwrap_or_default().to_string(),
        desired_count: svc.desired_count(),
        running_count: svc.running_count(),
        pending_count: svc.pending_count(),
        task_definition: svc.task_definition().unwrap_or_default().to_string(),
        tags: tag_map(svc.tags()),
        drift: expected.map(|spec| service_drift(spec, &svc)).unwrap_or_default(),
    })
}

async fn wait_service_gone(client: &Client, cluster: &str, name: &str, timeout: Duration) -> AwsResult<()> {
    let deadline = super::deadline_after(timeout);
    let backoff = Backoff::up_to(POLL_INTERVAL);
    loop {
        let svc = find_service(client, cluster, name).await?;
        if service_gone(svc.as_ref()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let (status, running) =
                svc.map_or((String::new(), 0), |s| (s.status().unwrap_or_default().to_string(), s.running_count()));
            return Err(AwsError::other(
                "DeleteService",
                format!(
                    "service {name} in cluster {cluster} was still {status} with {running} running tasks after {timeout:?}"
                ),
            ));
        }
        backoff.sleep_before(deadline).await;
    }
}

/// Scales the service to zero, deletes it (forced, so tasks are stopped) and waits up to `timeout` until it is
/// INACTIVE or gone; absent is success. May be called again after a crash; converges.
pub async fn delete_service(client: &Client, cluster: &str, name: &str, timeout: Duration) -> AwsResult<()> {
    let Some(svc) = find_service(client, cluster, name).await? else { return Ok(()) };
    if service_gone(Some(&svc)) {
        return Ok(());
    }
    if svc.status() == Some("ACTIVE")
        && svc.desired_count() > 0
        && let Err(err) = client.update_service().cluster(cluster).service(name).desired_count(0).send().await
    {
        let err = AwsError::from_sdk("UpdateService", err);
        if !err.is(&["ServiceNotActiveException", "ServiceNotFoundException"]) {
            return Err(err);
        }
    }
    if let Err(err) = client.delete_service().cluster(cluster).service(name).force(true).send().await {
        let err = AwsError::from_sdk("DeleteService", err);
        if err.is(&["ServiceNotFoundException", "ClusterNotFoundException"]) {
            return Ok(());
        }
        return Err(err);
    }
    wait_service_gone(client, cluster, name, timeout).await
}

// ---------------------------------------------------------------------------------------------------------
// Steady state
// ---------------------------------------------------------------------------------------------------------

/// Where a service's deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceProgress {
    /// One completed deployment with every desired task running.
    Stable,
    /// Still deploying; says what it is waiting for.
    InProgress(String),
    /// The deployment failed (and the circuit breaker rolled it back, where enabled); says why.
    Failed(String),
}

fn rolled_back(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason.contains("circuit breaker") && reason.contains("roll")
}

/// Decides from one DescribeServices entry whether the service is stable, still deploying, or failed. A
/// failed deployment shows as a deployment with rolloutState FAILED (during a rollback, next to a new PRIMARY
/// deployment reverting to the previous task definition) or as a PRIMARY deployment the circuit breaker
/// created to roll back.
pub fn assess(service: &aws_sdk_ecs::types::Service) -> ServiceProgress {
    if let Some(status) = service.status().filter(|s| *s != "ACTIVE") {
        return ServiceProgress::Failed(format!("service is {status}"));
    }
    let deployments = service.deployments();
    if let Some(failed) = deployments.iter().find(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed)) {
        let reason = failed.rollout_state_reason().unwrap_or("no reason given");
        let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY") && d.id() != failed.id());
        let rollback = primary
            .and_then(|p| p.task_definition())
            .map(|td| format!("; rolling back to {}", task_definition_key(td)))
            .unwrap_or_default();
        let td = failed.task_definition().map(task_definition_key).unwrap_or("unknown task definition");
        return ServiceProgress::Failed(format!("deployment of {td} failed: {reason}{rollback}"));
    }
    let Some(primary) = deployments.iter().find(|d| d.status() == Some("PRIMARY")) else {
        return ServiceProgress::InProgress("no primary deployment yet".to_string());
    };
    if let Some(reason) = primary.rollout_state_reason().filter(|r| rolled_back(r)) {
        return ServiceProgress::Failed(format!("deployment was rolled back: {reason}"));
    }
    let counts = format!(
        "running {} of {}, pending {}",
        service.running_count(),
        service.desired_count(),
        service.pending_count()
    );
    let rollout_done = primary.rollout_state().is_none_or(|s| *s == DeploymentRolloutState::Completed);
    if deployments.len() == 1
        && rollout_done
        && service.running_count() == service.desired_count()
        && service.pending_count() == 0
    {
        return ServiceProgress::Stable;
    }
    let rollout = primary.rollout_state().map(|s| format!(", rollout {}", s.as_str())).unwrap_or_default();
    let reason = primary.rollout_state_reason().map(|r| format!(": {r}")).unwrap_or_default();
    ServiceProgress::InProgress(format!("{counts}, {} deployment(s){rollout}{reason}", deployments.len()))
}

async fn describe_many(
    client: &Client,
    cluster: &str,
    names: &[String],
) -> AwsResult<Vec<aws_sdk_ecs::types::Service>> {
    let mut services = Vec::new();
    for batch in names.chunks(DESCRIBE_SERVICES_BATCH) {
        let out = client
            .describe_services()
            .cluster(cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeServices", e))?;
        services.extend(out.services().iter().cloned());
    }
    Ok(services)
}

/// Waits until every named service is stable (see [`assess`]), polling every `poll`. Fails at once when a
/// deployment fails or a service disappears; after `timeout`, fails naming the services still not stable and
/// their task counts; stops early when `cancel` fires. A failure names, for each service that is not
/// stable, why ECS stopped its most recent tasks (the stopped reason, and each container's reason and exit
/// code), which is what tells a missing image from a crashing application.
pub async fn wait_steady(
    client: &Client,
    cluster: &str,
    service_names: &[String],
    timeout: Duration,
    poll: Duration,
    cancel: &CancellationToken,
) -> AwsResult<()> {
    let outcome =
        wait_steady_with(|| describe_many(client, cluster, service_names), service_names, timeout, poll, cancel).await;
    let Err(mut err) = outcome else { return Ok(()) };
    let mut reasons = Vec::new();
    for name in service_names {
        // A failure to read why is not worth hiding the failure itself.
        for reason in stopped_task_reasons(client, cluster, name).await.unwrap_or_default() {
            reasons.push(format!("{name}: {reason}"));
        }
    }
    if !reasons.is_empty() {
        let said = err.message.trim_end_matches('.');
        err.message = format!("{said}. Recently stopped tasks: {}", reasons.join("; "));
    }
    Err(err)
}

/// Why ECS stopped the service's most recent tasks, distinct reasons only (at most three tasks are read).
pub async fn stopped_task_reasons(client: &Client, cluster: &str, service: &str) -> AwsResult<Vec<String>> {
    let listed = client
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .max_results(3)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTasks", e))?;
    if listed.task_arns().is_empty() {
        return Ok(Vec::new());
    }
    let described = client
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeTasks", e))?;
    let mut reasons: Vec<String> = described.tasks().iter().map(stopped_reason).collect();
    reasons.dedup();
    Ok(reasons)
}

/// One stopped task's reason: ECS's stopped reason, then each container's reason and exit code.
pub fn stopped_reason(task: &aws_sdk_ecs::types::Task) -> String {
    let stopped = task.stopped_reason().unwrap_or("stopped without a reason");
    let mut parts = vec![stopped.to_string()];
    for container in task.containers() {
        let name = container.name().unwrap_or("container");
        // ECS often repeats the task's reason as the container's: once is enough.
        let reason = container.reason().filter(|r| *r != stopped);
        match (reason, container.exit_code()) {
            (Some(reason), Some(code)) => parts.push(format!("{name}: {reason} (exit code {code})")),
            (Some(reason), None) => parts.push(format!("{name}: {reason}")),
            (None, Some(code)) => parts.push(format!("{name}: exit code {code}")),
            (None, None) => {}
        }
    }
    parts.join("; ")
}

/// The loop of [`wait_steady`], with the DescribeServices call injected so it runs on recorded replies.
async fn wait_steady_with<F, Fut>(
    mut describe: F,
    service_names: &[String],
    timeout: Duration,
    poll: Duration,
    cancel: &CancellationToken,
) -> AwsResult<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<Vec<aws_sdk_ecs::types::Service>>>,
{
    let cancelled = || AwsError::other("DescribeServices", "waiting for ECS services to become stable was cancelled");
    let deadline = super::deadline_after(timeout);
    let backoff = Backoff::up_to(poll);
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let services = describe().await?;
        let mut waiting = Vec::new();
        for name in service_names {
            let Some(svc) = services.iter().find(|s| s.service_name() == Some(name.as_str())) else {
                return Err(AwsError::other("DescribeServices", format!("service {name} disappeared while deploying")));
            };
            match assess(svc) {
                ServiceProgress::Stable => {}
                ServiceProgress::InProgress(what) => waiting.push(format!("{name} ({what})")),
                ServiceProgress::Failed(why) => {
                    return Err(AwsError::other("DescribeServices", format!("service {name} failed to deploy: {why}")));
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(AwsError::other(
                "DescribeServices",
                format!("ECS services not stable after {timeout:?}: {}", waiting.join("; ")),
            ));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(cancelled()),
            _ = backoff.sleep_before(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use aws_sdk_ecs::types::{Deployment, HealthCheck as EcsHealthCheck, MountPoint as EcsMountPoint};

    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/vault-execution";
    const SECRET: &str = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:vault-db-AbCdEf";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn log() -> LogSpec {
        LogSpec { group: "vault".into(), region: "eu-west-2".into(), stream_prefix: "vault".into() }
    }

    fn broker() -> ContainerSpec {
        ContainerSpec {
            name: "broker".into(),
            image: "123456789012.dkr.ecr.eu-west-2.amazonaws.com/vault/broker:1.4.2".into(),
            cpu: 256,
            memory: Some(512),
            essential: true,
            port_mappings: vec![8080],
            environment: map(&[("MYSQL_HOST", "db.internal"), ("RABBITMQ_HOST", "rabbitmq.vault.internal")]),
            secrets: map(&[("MYSQL_PASSWORD", &format!("{SECRET}:password::")), ("RABBITMQ_PASSWORD", SECRET)]),
            mount_points: vec![MountPoint {
                source_volume: "working".into(),
                container_path: "/tmp/datavault".into(),
                read_only: false,
            }],
            log: log(),
            health_check: Some(HealthCheck {
                command: vec!["CMD-SHELL".into(), "curl -f http://localhost:8080/ || exit 1".into()],
                interval: 30,
                timeout: 5,
                retries: 3,
                start_period: 120,
            }),
            readonly_root_filesystem: false,
            depends_on: vec![],
            command: vec![],
            working_directory: None,
            init_process: false,
            stop_timeout: None,
        }
    }

    fn sidecar() -> ContainerSpec {
        ContainerSpec {
            name: "wait".into(),
            image: "busybox:1".into(),
            cpu: 0,
            memory: None,
            essential: false,
            port_mappings: vec![],
            environment: BTreeMap::new(),
            secrets: BTreeMap::new(),
            mount_points: vec![],
            log: log(),
            health_check: None,
            readonly_root_filesystem: true,
            depends_on: vec!["broker".into()],
            command: vec!["sleep".into(), "1".into()],
            working_directory: Some("/tmp".into()),
            init_process: true,
            stop_timeout: Some(5),
        }
    }

    fn spec() -> TaskDefinitionSpec {
        TaskDefinitionSpec {
            family: "vault-broker".into(),
            task_role_arn: Some("arn:aws:iam::123456789012:role/vault-task".into()),
            execution_role_arn: ROLE.into(),
            cpu: 256,
            memory: 512,
            containers: vec![broker(), sidecar()],
            volumes: vec![EfsVolume {
                name: "working".into(),
                file_system_id: "fs-123".into(),
                access_point_id: "fsap-456".into(),
            }],
            tags: map(&[("datavault:stack", "vault")]),
        }
    }

    #[test]
    fn containers_may_not_reserve_more_memory_than_the_task_has() {
        let mut over = spec();
        over.containers[1].memory = Some(64);
        let problem = validate_task_definition(&over).expect_err("576 MiB of limits in a 512 MiB task");
        assert!(problem.contains("576 MiB"), "{problem}");
        assert_eq!(validate_task_definition(&spec()), Ok(()), "a container without a limit shares the task's");
    }

    fn kv(name: &str, value: &str) -> KeyValuePair {
        KeyValuePair::builder().name(name).value(value).build()
    }

    /// What DescribeTaskDefinition returns for `spec()`, in ECS's own shape: lists reordered, defaults filled
    /// in (host ports, protocol, root directory), defaults left out (essential, health check interval),
    /// extra log options and fields we never set.
    fn described_broker() -> ContainerDefinition {
        ContainerDefinition::builder()
            .name("broker")
            .image("123456789012.dkr.ecr.eu-west-2.amazonaws.com/vault/broker:1.4.2")
            .cpu(256)
            .memory(512)
            .port_mappings(
                PortMapping::builder().container_port(8080).host_port(8080).protocol(TransportProtocol::Tcp).build(),
            )
            .environment(kv("RABBITMQ_HOST", "rabbitmq.vault.internal"))
            .environment(kv("MYSQL_HOST", "db.internal"))
            .secrets(Secret::builder().name("RABBITMQ_PASSWORD").value_from(SECRET).build().unwrap())
            .secrets(
                Secret::builder().name("MYSQL_PASSWORD").value_from(format!("{SECRET}:password::")).build().unwrap(),
            )
            .mount_points(
                EcsMountPoint::builder()
                    .source_volume("working")
                    .container_path("/tmp/datavault")
                    .read_only(false)
                    .build(),
            )
            .log_configuration(
                LogConfiguration::builder()
                    .log_driver(LogDriver::Awslogs)
                    .options("awslogs-stream-prefix", "vault")
                    .options("awslogs-group", "vault")
                    .options("awslogs-region", "eu-west-2")
                    .options("mode", "non-blocking")
                    .options("max-buffer-size", "1m")
                    .build()
                    .unwrap(),
            )
            .health_check(
                EcsHealthCheck::builder()
                    .command("CMD-SHELL")
                    .command("curl -f http://localhost:8080/ || exit 1")
                    .retries(3)
                    .start_period(120)
                    .build()
                    .unwrap(),
            )
            .set_volumes_from(Some(vec![]))
            .set_system_controls(Some(vec![]))
            .build()
    }

    fn described_sidecar() -> ContainerDefinition {
        ContainerDefinition::builder()
            .name("wait")
            .image("busybox:1")
            .cpu(0)
            .essential(false)
            .readonly_root_filesystem(true)
            .privileged(false)
            .command("sleep")
            .command("1")
            .working_directory("/tmp")
            .linux_parameters(aws_sdk_ecs::types::LinuxParameters::builder().init_process_enabled(true).build())
            .stop_timeout(5)
            .depends_on(
                ContainerDependency::builder()
                    .container_name("broker")
                    .condition(ContainerCondition::Healthy)
                    .build()
                    .unwrap(),
            )
            .log_configuration(
                LogConfiguration::builder()
                    .log_driver(LogDriver::Awslogs)
                    .options("awslogs-group", "vault")
                    .options("awslogs-region", "eu-west-2")
                    .options("awslogs-stream-prefix", "vault")
                    .options("mode", "non-blocking")
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn described_volume(transit: EfsTransitEncryption) -> Volume {
        Volume::builder()
            .name("working")
            .efs_volume_configuration(
                EfsVolumeConfiguration::builder()
                    .file_system_id("fs-123")
                    .root_directory("/")
                    .transit_encryption(transit)
                    .authorization_config(
                        EfsAuthorizationConfig::builder()
                            .access_point_id("fsap-456")
                            .iam(EfsAuthorizationConfigIam::Enabled)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn described_with(containers: Vec<ContainerDefinition>) -> aws_sdk_ecs::types::TaskDefinition {
        aws_sdk_ecs::types::TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:eu-west-2:123456789012:task-definition/vault-broker:3")
            .family("vault-broker")
            .revision(3)
            .status(TaskDefinitionStatus::Active)
            .task_role_arn("arn:aws:iam::123456789012:role/vault-task")
            .execution_role_arn(ROLE)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Ec2)
            .compatibilities(Compatibility::Ec2)
            .cpu("256")
            .memory("512")
            .set_container_definitions(Some(containers))
            .volumes(described_volume(EfsTransitEncryption::Enabled))
            .build()
    }

    fn described() -> aws_sdk_ecs::types::TaskDefinition {
        // ECS keeps the registration order; ours is reversed here to prove order does not matter.
        described_with(vec![described_sidecar(), described_broker()])
    }

    #[test]
    fn an_unchanged_spec_matches_what_ecs_describes() {
        assert_eq!(task_definition_differences(&spec(), &described()), Vec::<String>::new());
        assert!(matches(&spec(), &described()));
    }

    #[test]
    fn what_we_register_is_secure_and_equals_what_ecs_describes() {
        let spec = spec();
        let td = wanted_definition(&spec).unwrap();
        // The hand-written description of the same revision, in ECS's order: the builder says what ECS says.
        assert_eq!(NormalTask::from_described(&td), NormalTask::from_described(&described()));
        let broker = td.container_definitions().iter().find(|c| c.name() == Some("broker")).unwrap();
        assert_eq!(broker.privileged(), Some(false));
        assert!(broker.environment().iter().all(|kv| !kv.name().unwrap().contains("PASSWORD")));
        let volume = td.volumes()[0].efs_volume_configuration().unwrap();
        assert_eq!(volume.transit_encryption(), Some(&EfsTransitEncryption::Enabled));
        assert_eq!(volume.authorization_config().unwrap().iam(), Some(&EfsAuthorizationConfigIam::Enabled));
    }

    #[test]
    fn a_new_image_needs_a_new_revision() {
        let mut spec = spec();
        spec.containers[0].image = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/vault/broker:1.4.3".into();
        let diff = task_definition_differences(&spec, &described());
        assert_eq!(diff.len(), 1);
        assert!(diff[0].starts_with("container broker: image"), "{diff:?}");
        assert!(!matches(&spec, &described()));
    }

    #[test]
    fn environment_changes_are_reported_by_key_only() {
        let mut spec = spec();
        spec.containers[0].environment.insert("MYSQL_HOST".into(), "other-db.internal".into());
        spec.containers[0].secrets.insert("RABBITMQ_PASSWORD".into(), format!("{SECRET}:other::"));
        let diff = task_definition_differences(&spec, &described());
        assert!(diff.contains(&"container broker: environment differs in MYSQL_HOST".to_string()), "{diff:?}");
        assert!(diff.contains(&"container broker: secrets differs in RABBITMQ_PASSWORD".to_string()), "{diff:?}");
        assert!(diff.iter().all(|d| !d.contains("other-db") && !d.contains("secretsmanager")));
    }

    #[test]
    fn a_removed_environment_variable_is_a_difference() {
        let mut spec = spec();
        spec.containers[0].environment.remove("RABBITMQ_HOST");
        assert!(!matches(&spec, &described()));
    }

    #[test]
    fn empty_lists_and_absent_lists_are_the_same() {
        let mut spec = spec();
        spec.containers.truncate(1);
        spec.containers[0].port_mappings.clear();
        spec.containers[0].environment.clear();
        let bare = ContainerDefinition::builder()
            .name("broker")
            .image(&spec.containers[0].image)
            .cpu(256)
            .memory(512)
            .essential(true)
            .set_environment(Some(vec![]))
            .secrets(Secret::builder().name("RABBITMQ_PASSWORD").value_from(SECRET).build().unwrap())
            .secrets(
                Secret::builder().name("MYSQL_PASSWORD").value_from(format!("{SECRET}:password::")).build().unwrap(),
            )
            .mount_points(EcsMountPoint::builder().source_volume("working").container_path("/tmp/datavault").build())
            .set_log_configuration(described_broker().log_configuration().cloned())
            .set_health_check(described_broker().health_check().cloned())
            .build();
        let td = described_with(vec![bare]);
        assert!(matches(&spec, &td), "{:?}", task_definition_differences(&spec, &td));
    }

    #[test]
    fn security_relevant_changes_out_of_band_are_differences() {
        let mut privileged = described_broker();
        privileged.privileged = Some(true);
        let td = described_with(vec![described_sidecar(), privileged]);
        assert_eq!(
            task_definition_differences(&spec(), &td),
            vec!["container broker: privileged is true, expected false"]
        );

        let mut td = described();
        td.volumes = Some(vec![described_volume(EfsTransitEncryption::Disabled)]);
        assert!(task_definition_differences(&spec(), &td)[0].starts_with("volumes"));

        let mut td = described();
        td.network_mode = Some(NetworkMode::Host);
        assert_eq!(task_definition_differences(&spec(), &td), vec!["network mode is \"host\", expected \"awsvpc\""]);
    }

    #[test]
    fn port_protocol_and_log_group_are_compared() {
        let mut udp = described_broker();
        udp.port_mappings =
            Some(vec![PortMapping::builder().container_port(8080).protocol(TransportProtocol::Udp).build()]);
        assert!(!matches(&spec(), &described_with(vec![described_sidecar(), udp])));

        let mut spec = spec();
        spec.containers[1].log.group = "elsewhere".into();
        let diff = task_definition_differences(&spec, &described());
        assert_eq!(diff.len(), 1);
        assert!(diff[0].starts_with("container wait: log options"), "{diff:?}");
    }

    #[test]
    fn missing_and_extra_containers_are_named() {
        let td = described_with(vec![described_broker()]);
        assert_eq!(task_definition_differences(&spec(), &td), vec!["container wait is missing"]);
        let mut spec = spec();
        spec.containers.truncate(1);
        let diff = task_definition_differences(&spec, &described());
        assert_eq!(diff, vec!["container wait is not in the spec"]);
    }

    #[test]
    fn dependencies_wait_for_health_only_when_it_is_reported() {
        let spec = spec();
        assert_eq!(dependency_condition(&spec, "broker"), ContainerCondition::Healthy);
        assert_eq!(dependency_condition(&spec, "wait"), ContainerCondition::Start);
        let mut start = described_sidecar();
        start.depends_on = Some(vec![
            ContainerDependency::builder()
                .container_name("broker")
                .condition(ContainerCondition::Start)
                .build()
                .unwrap(),
        ]);
        assert!(!matches(&spec, &described_with(vec![described_broker(), start])));
    }

    #[test]
    fn task_sizes_parse_in_every_notation_ecs_uses() {
        assert_eq!(parse_task_size(Some("256")), Some(256));
        assert_eq!(parse_task_size(Some("0.25 vCPU")), Some(256));
        assert_eq!(parse_task_size(Some("1 vcpu")), Some(1024));
        assert_eq!(parse_task_size(Some("1GB")), Some(1024));
        assert_eq!(parse_task_size(Some("0.5 GB")), Some(512));
        assert_eq!(parse_task_size(None), None);
        assert_eq!(parse_task_size(Some("lots")), None);
        let mut td = described();
        td.cpu = Some("0.25 vCPU".into());
        assert!(matches(&spec(), &td));
    }

    #[test]
    fn a_deregistered_family_or_other_family_never_matches() {
        let mut td = described();
        td.family = Some("vault-web".into());
        assert_eq!(
            task_definition_differences(&spec(), &td),
            vec!["family is \"vault-web\", expected \"vault-broker\""]
        );
    }

    #[test]
    fn task_definition_specs_are_validated() {
        assert!(validate_task_definition(&spec()).is_ok());
        let mut s = spec();
        s.containers[0].environment.insert("MYSQL_PASSWORD".into(), "plain".into());
        assert!(validate_task_definition(&s).unwrap_err().contains("both an environment variable and a secret"));
        let mut s = spec();
        s.volumes.clear();
        assert!(validate_task_definition(&s).unwrap_err().contains("unknown volume working"));
        let mut s = spec();
        s.containers[1].depends_on = vec!["wait".into()];
        assert!(validate_task_definition(&s).unwrap_err().contains("depends on wait"));
        let mut s = spec();
        s.containers[0].essential = false;
        assert!(validate_task_definition(&s).unwrap_err().contains("no essential container"));
        let mut s = spec();
        s.containers[1].name = "broker".into();
        assert!(validate_task_definition(&s).unwrap_err().contains("same name"));
    }

    // ----- services -------------------------------------------------------------------------------------

    const REGISTRY: &str = "arn:aws:servicediscovery:eu-west-2:123456789012:service/srv-broker";
    const TD: &str = "arn:aws:ecs:eu-west-2:123456789012:task-definition/vault-broker:3";

    fn service_spec() -> ServiceSpec {
        ServiceSpec {
            cluster: "vault".into(),
            name: "broker".into(),
            task_definition_arn: TD.into(),
            desired_count: 1,
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            security_group_ids: vec!["sg-services".into()],
            registry_arn: Some(REGISTRY.into()),
            health_check_grace_seconds: Some(120),
            load_balancer: None,
            minimum_healthy_percent: ROLLING_MIN_HEALTHY_PERCENT,
            maximum_percent: ROLLING_MAX_PERCENT,
            enable_execute_command: false,
            awaiting_image: false,
            tags: map(&[("datavault:stack", "vault")]),
        }
    }

    fn described_service() -> aws_sdk_ecs::types::builders::ServiceBuilder {
        aws_sdk_ecs::types::Service::builder()
            .service_name("broker")
            .service_arn("arn:aws:ecs:eu-west-2:123456789012:service/vault/broker")
            .status("ACTIVE")
            .task_definition(TD)
            .desired_count(1)
            .running_count(1)
            .pending_count(0)
            .launch_type(LaunchType::Ec2)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets("subnet-b")
                            .subnets("subnet-a")
                            .security_groups("sg-services")
                            .assign_public_ip(AssignPublicIp::Disabled)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .deployment_configuration(deployment_configuration(&service_spec()))
            .service_registries(ServiceRegistry::builder().registry_arn(REGISTRY).build())
            .health_check_grace_period_seconds(120)
            .propagate_tags(PropagateTags::Service)
            .enable_ecs_managed_tags(true)
    }

    #[test]
    fn a_matching_service_has_no_drift() {
        let svc = described_service().build();
        assert_eq!(service_drift(&service_spec(), &svc), Vec::<String>::new());
        assert!(!compare_service(&service_spec(), &svc).needs_update());
    }

    #[test]
    fn a_scaled_down_service_reports_its_count() {
        let svc = described_service().desired_count(0).build();
        assert_eq!(service_drift(&service_spec(), &svc), vec!["desired count is 0, expected 1"]);
        let diff = compare_service(&service_spec(), &svc);
        assert!(diff.desired_count && !diff.network && !diff.registries);
    }

    #[test]
    fn a_missing_deployment_configuration_means_no_circuit_breaker() {
        let mut svc = described_service().build();
        svc.deployment_configuration = None;
        assert_eq!(service_drift(&service_spec(), &svc), vec!["deployment circuit breaker off"]);
        let diff = compare_service(&service_spec(), &svc);
        assert!(diff.deployment && !diff.task_definition);

        let no_rollback = DeploymentConfiguration::builder()
            .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(false).build())
            .minimum_healthy_percent(50)
            .build();
        let svc = described_service().deployment_configuration(no_rollback).build();
        assert_eq!(
            service_drift(&service_spec(), &svc),
            vec!["deployment circuit breaker rollback off", "minimum healthy percent is 50, expected 100"]
        );
    }

    #[test]
    fn public_ips_and_changed_groups_are_network_drift() {
        let vpc = AwsVpcConfiguration::builder()
            .subnets("subnet-a")
            .subnets("subnet-b")
            .security_groups("sg-default")
            .assign_public_ip(AssignPublicIp::Enabled)
            .build()
            .unwrap();
        let svc = described_service()
            .network_configuration(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
            .build();
        let drift = service_drift(&service_spec(), &svc);
        assert_eq!(drift.len(), 2, "{drift:?}");
        assert!(drift[0].starts_with("security groups"));
        assert_eq!(drift[1], "public IP assignment is ENABLED, expected DISABLED");
        assert!(compare_service(&service_spec(), &svc).network);
    }

    #[test]
    fn registries_load_balancers_and_task_definitions_are_compared() {
        let mut spec = service_spec();
        spec.registry_arn = Some("arn:aws:servicediscovery:eu-west-2:123456789012:service/srv-other".into());
        spec.task_definition_arn = "arn:aws:ecs:eu-west-2:123456789012:task-definition/vault-broker:4".into();
        spec.load_balancer = Some(LoadBalancerTarget {
            target_group_arn: "arn:aws:elasticloadbalancing:eu-west-2:123456789012:targetgroup/web/1".into(),
            container_name: "web".into(),
            container_port: 8080,
        });
        let diff = compare_service(&spec, &described_service().build());
        assert!(diff.registries && diff.load_balancers && diff.task_definition);
        assert!(diff.messages[0].starts_with("task definition is"), "{:?}", diff.messages);
        // A short family:revision form names the same revision as the full ARN.
        let mut spec = service_spec();
        spec.task_definition_arn = "vault-broker:3".into();
        assert!(!compare_service(&spec, &described_service().build()).task_definition);
    }

    #[test]
    fn launch_type_drift_is_reported_but_not_updatable() {
        let svc = described_service().launch_type(LaunchType::Fargate).build();
        let diff = compare_service(&service_spec(), &svc);
        assert!(!diff.needs_update());
        assert_eq!(diff.messages.len(), 1);
        assert!(diff.messages[0].contains("replace the service"));
    }

    #[test]
    fn tag_propagation_and_grace_are_compared() {
        let svc = described_service()
            .propagate_tags(PropagateTags::None)
            .enable_ecs_managed_tags(false)
            .health_check_grace_period_seconds(0)
            .build();
        let diff = compare_service(&service_spec(), &svc);
        assert!(diff.tagging && diff.grace);
        assert_eq!(
            diff.messages,
            vec![
                "health check grace period is 0s, expected 120s",
                "tags propagate from NONE, expected SERVICE",
                "ECS managed tags off"
            ]
        );
    }

    #[test]
    fn service_specs_are_validated() {
        assert!(validate_service(&service_spec()).is_ok());
        let mut s = service_spec();
        s.security_group_ids.clear();
        assert!(validate_service(&s).unwrap_err().contains("security group"));
        let mut s = service_spec();
        s.subnet_ids.clear();
        assert!(validate_service(&s).unwrap_err().contains("subnet"));
        let mut s = service_spec();
        (s.minimum_healthy_percent, s.maximum_percent) = (0, 100);
        assert!(validate_service(&s).is_ok(), "a single rabbitmq stops before its replacement starts");
        s.maximum_percent = 50;
        assert!(validate_service(&s).is_err());
    }

    #[test]
    fn iam_propagation_errors_are_retried_with_capped_backoff() {
        let err = |code: &str, message: &str| AwsError {
            operation: "CreateService",
            code: Some(code.into()),
            message: message.into(),
        };
        assert!(is_propagation_error(&err(
            "InvalidParameterException",
            "Unable to assume the service linked role. Please verify that the ECS service linked role exists."
        )));
        assert!(is_propagation_error(&err("InvalidParameterException", "Unable to assume role and validate ...")));
        assert!(!is_propagation_error(&err("InvalidParameterException", "subnets can not be empty.")));
        assert!(!is_propagation_error(&err("ServerException", "Unable to assume role")));
        assert_eq!(next_backoff(IAM_RETRY_INITIAL), Duration::from_secs(4));
        assert_eq!(next_backoff(Duration::from_secs(16)), IAM_RETRY_MAX);
    }

    #[test]
    fn a_failed_deployment_is_drift_and_the_next_update_forces_a_new_one() {
        let failed = Deployment::builder()
            .id("ecs-svc/1")
            .status("PRIMARY")
            .task_definition(TD)
            .rollout_state(DeploymentRolloutState::Failed)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .build();
        let svc = described_service().deployments(failed).build();
        let diff = compare_service(&service_spec(), &svc);
        assert!(diff.redeploy && diff.needs_update(), "{diff:?}");
        assert!(
            diff.messages.iter().any(|m| m.contains("tasks failed to start") && m.contains("starts a new one")),
            "{:?}",
            diff.messages
        );
        let healthy = Deployment::builder().id("ecs-svc/2").status("PRIMARY").task_definition(TD).build();
        assert!(!compare_service(&service_spec(), &described_service().deployments(healthy).build()).redeploy);
    }

    #[test]
    fn a_service_awaiting_its_image_keeps_what_it_runs() {
        let running_old = described_service().task_definition("arn:aws:ecs:eu-west-2:1:task-definition/vault-broker:2");
        let waiting = ServiceSpec { awaiting_image: true, desired_count: 3, ..service_spec() };
        assert!(!compare_service(&waiting, &running_old.clone().build()).needs_update());
        let ready = ServiceSpec { awaiting_image: false, ..waiting };
        let diff = compare_service(&ready, &running_old.build());
        assert!(diff.task_definition && diff.desired_count, "{diff:?}");
    }

    #[test]
    fn a_stopped_task_says_why_with_each_containers_reason_and_exit_code() {
        let task = aws_sdk_ecs::types::Task::builder()
            .stopped_reason("CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref 1.dkr.ecr.eu-west-2.amazonaws.com/vault/web:729ca07: not found")
            .containers(
                aws_sdk_ecs::types::Container::builder()
                    .name("web")
                    .reason("CannotPullContainerError: not found")
                    .build(),
            )
            .containers(aws_sdk_ecs::types::Container::builder().name("sidecar").exit_code(137).build())
            .build();
        let reason = stopped_reason(&task);
        assert!(reason.starts_with("CannotPullContainerError: pull image manifest"), "{reason}");
        assert!(reason.contains("web: CannotPullContainerError: not found"), "{reason}");
        assert!(reason.contains("sidecar: exit code 137"), "{reason}");

        let repeated = "CannotPullContainerError: pull image manifest has been retried 1 time(s)";
        let task = aws_sdk_ecs::types::Task::builder()
            .stopped_reason(repeated)
            .containers(aws_sdk_ecs::types::Container::builder().name("web").reason(repeated).build())
            .build();
        assert_eq!(stopped_reason(&task), repeated, "the container's copy of the task's reason is left out");
    }

    #[test]
    fn deleted_services_count_as_gone() {
        assert!(service_gone(None));
        assert!(service_gone(Some(&described_service().status("INACTIVE").build())));
        assert!(!service_gone(Some(&described_service().status("DRAINING").build())));
        assert!(!service_gone(Some(&described_service().build())));
    }

    // ----- cluster --------------------------------------------------------------------------------------

    #[test]
    fn container_insights_and_status_drive_cluster_drift() {
        let setting =
            |value: &str| ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value(value).build();
        let cluster = |status: &str, value: &str| {
            aws_sdk_ecs::types::Cluster::builder()
                .status(status)
                .settings(setting(value))
                .configuration(exec_configuration("logs"))
                .build()
        };
        assert!(cluster_drift(&cluster("ACTIVE", "enabled"), "logs").is_empty());
        assert!(cluster_drift(&cluster("ACTIVE", "enhanced"), "logs").is_empty());
        assert_eq!(
            cluster_drift(&cluster("ACTIVE", "disabled"), "logs"),
            vec!["container insights is disabled, expected enabled"]
        );
        assert_eq!(
            cluster_drift(&cluster("FAILED", "enabled"), "logs"),
            vec!["cluster status is FAILED, expected ACTIVE"]
        );
        assert_eq!(
            cluster_drift(&cluster("ACTIVE", "enabled"), "other"),
            vec!["ECS Exec sessions are logged to logs, expected other"]
        );
        assert!(!container_insights_on(&aws_sdk_ecs::types::Cluster::builder().build()));
    }

    #[test]
    fn only_transient_refusals_block_cluster_deletion() {
        let err = |code: &str| AwsError { operation: "DeleteCluster", code: Some(code.into()), message: "no".into() };
        assert_eq!(
            cluster_delete_blocker(&err("ClusterContainsContainerInstancesException")),
            Some("container instances are still registered")
        );
        assert!(cluster_delete_blocker(&err("ClusterContainsTasksException")).is_some());
        assert!(cluster_delete_blocker(&err("ClusterContainsServicesException")).is_some());
        assert!(cluster_delete_blocker(&err("AccessDeniedException")).is_none());
        assert!(cluster_delete_blocker(&AwsError::other("DeleteCluster", "timeout")).is_none());
    }

    // ----- steady state ---------------------------------------------------------------------------------

    const OLD_TD: &str = "arn:aws:ecs:eu-west-2:123456789012:task-definition/vault-broker:2";

    fn deployment(id: &str, status: &str, td: &str, rollout: DeploymentRolloutState, running: i32) -> Deployment {
        Deployment::builder()
            .id(id)
            .status(status)
            .task_definition(td)
            .desired_count(1)
            .running_count(running)
            .pending_count(1 - running)
            .rollout_state(rollout)
            .build()
    }

    fn service_with(deployments: Vec<Deployment>, running: i32) -> aws_sdk_ecs::types::Service {
        described_service().set_deployments(Some(deployments)).running_count(running).pending_count(1 - running).build()
    }

    fn stable() -> aws_sdk_ecs::types::Service {
        service_with(vec![deployment("ecs-svc/2", "PRIMARY", TD, DeploymentRolloutState::Completed, 1)], 1)
    }

    fn rolling() -> aws_sdk_ecs::types::Service {
        service_with(
            vec![
                deployment("ecs-svc/2", "PRIMARY", TD, DeploymentRolloutState::InProgress, 0),
                deployment("ecs-svc/1", "ACTIVE", OLD_TD, DeploymentRolloutState::Completed, 1),
            ],
            1,
        )
    }

    fn rolled_back_service() -> aws_sdk_ecs::types::Service {
        let mut failed = deployment("ecs-svc/2", "ACTIVE", TD, DeploymentRolloutState::Failed, 0);
        failed.rollout_state_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
        service_with(vec![deployment("ecs-svc/3", "PRIMARY", OLD_TD, DeploymentRolloutState::InProgress, 1), failed], 1)
    }

    #[test]
    fn one_completed_deployment_with_all_tasks_running_is_stable() {
        assert_eq!(assess(&stable()), ServiceProgress::Stable);
        // Without rollout states (older API answers or the external controller), the counts decide.
        let plain = service_with(vec![Deployment::builder().id("ecs-svc/2").status("PRIMARY").build()], 1);
        assert_eq!(assess(&plain), ServiceProgress::Stable);
        let starting = service_with(vec![Deployment::builder().id("ecs-svc/2").status("PRIMARY").build()], 0);
        assert!(matches!(assess(&starting), ServiceProgress::InProgress(m) if m.contains("running 0 of 1, pending 1")));
    }

    #[test]
    fn a_rolling_deployment_is_in_progress() {
        match assess(&rolling()) {
            ServiceProgress::InProgress(m) => {
                assert!(m.contains("2 deployment(s)") && m.contains("rollout IN_PROGRESS"), "{m}")
            }
            other => panic!("expected in progress, got {other:?}"),
        }
    }

    #[test]
    fn a_circuit_breaker_rollback_is_a_failure_with_its_reason() {
        match assess(&rolled_back_service()) {
            ServiceProgress::Failed(m) => {
                assert!(m.contains("tasks failed to start"), "{m}");
                assert!(m.contains("vault-broker:3") && m.contains("rolling back to vault-broker:2"), "{m}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let mut primary = deployment("ecs-svc/3", "PRIMARY", OLD_TD, DeploymentRolloutState::Completed, 1);
        primary.rollout_state_reason =
            Some("ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.".into());
        assert!(matches!(assess(&service_with(vec![primary], 1)), ServiceProgress::Failed(_)));
        assert!(matches!(assess(&described_service().status("DRAINING").build()), ServiceProgress::Failed(_)));
    }

    fn recorded(
        replies: Vec<Vec<aws_sdk_ecs::types::Service>>,
    ) -> (Mutex<VecDeque<Vec<aws_sdk_ecs::types::Service>>>, Mutex<usize>) {
        (Mutex::new(replies.into()), Mutex::new(0))
    }

    /// Replays recorded DescribeServices answers, repeating the last one forever.
    fn replay<'a>(
        state: &'a (Mutex<VecDeque<Vec<aws_sdk_ecs::types::Service>>>, Mutex<usize>),
    ) -> impl FnMut() -> std::future::Ready<AwsResult<Vec<aws_sdk_ecs::types::Service>>> + 'a {
        move || {
            *state.1.lock().unwrap() += 1;
            let mut replies = state.0.lock().unwrap();
            let reply = if replies.len() > 1 { replies.pop_front().unwrap() } else { replies[0].clone() };
            std::future::ready(Ok(reply))
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn named(mut svc: aws_sdk_ecs::types::Service, name: &str) -> aws_sdk_ecs::types::Service {
        svc.service_name = Some(name.into());
        svc
    }

    #[tokio::test]
    async fn waiting_ends_when_a_rolling_deployment_settles() {
        let state = recorded(vec![
            vec![rolling(), named(stable(), "web")],
            vec![rolling(), named(stable(), "web")],
            vec![stable(), named(stable(), "web")],
        ]);
        let cancel = CancellationToken::new();
        let result = wait_steady_with(
            replay(&state),
            &names(&["broker", "web"]),
            Duration::from_secs(5),
            Duration::ZERO,
            &cancel,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(*state.1.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn waiting_stops_at_a_failed_deployment() {
        let state = recorded(vec![vec![rolling()], vec![rolled_back_service()], vec![stable()]]);
        let cancel = CancellationToken::new();
        let err =
            wait_steady_with(replay(&state), &names(&["broker"]), Duration::from_secs(5), Duration::ZERO, &cancel)
                .await
                .unwrap_err();
        assert!(err.message.contains("service broker failed to deploy"), "{err}");
        assert!(err.message.contains("tasks failed to start"), "{err}");
        assert_eq!(*state.1.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn waiting_times_out_naming_the_unsettled_services_and_their_counts() {
        let state = recorded(vec![vec![rolling(), named(stable(), "web")]]);
        let cancel = CancellationToken::new();
        let err = wait_steady_with(
            replay(&state),
            &names(&["broker", "web"]),
            Duration::from_millis(30),
            Duration::from_millis(1),
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(err.message.contains("not stable after 30ms"), "{err}");
        assert!(err.message.contains("broker (running 1 of 1, pending 0, 2 deployment(s)"), "{err}");
        assert!(!err.message.contains("web ("), "{err}");
        assert!(*state.1.lock().unwrap() > 1);
    }

    #[tokio::test]
    async fn waiting_stops_when_cancelled_or_when_a_service_disappears() {
        let state = recorded(vec![vec![rolling()]]);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err =
            wait_steady_with(replay(&state), &names(&["broker"]), Duration::from_secs(60), Duration::ZERO, &cancel)
                .await
                .unwrap_err();
        assert!(err.message.contains("cancelled"), "{err}");

        let state = recorded(vec![vec![stable()]]);
        let cancel = CancellationToken::new();
        let err = wait_steady_with(replay(&state), &names(&["web"]), Duration::from_secs(60), Duration::ZERO, &cancel)
            .await
            .unwrap_err();
        assert!(err.message.contains("service web disappeared"), "{err}");
    }

    #[tokio::test]
    async fn cancelling_interrupts_the_pause_between_polls() {
        let state = recorded(vec![vec![rolling()]]);
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.cancel();
        });
        let started = std::time::Instant::now();
        let err = wait_steady_with(
            replay(&state),
            &names(&["broker"]),
            Duration::from_secs(600),
            Duration::from_secs(300),
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(err.message.contains("cancelled"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
