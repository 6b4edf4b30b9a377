//! Amazon EFS: the stack's shared file system, its mount targets (one per subnet) and the access points
//! through which the containers use it (`rabbitmq` for the broker's queue data, `working` for the
//! broker/worker scratch space).
//!
//! File systems are created encrypted (FSBP EFS.1) with automatic backups; access points pin a root
//! directory and a POSIX user (EFS.3, EFS.4). Every function may be called again after a crash: ensures
//! find what exists by creation token, subnet or `Name` tag and converge it; deletes treat "not found" as
//! done. Waits are bounded by the caller's timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use std::time::Duration;

use aws_sdk_efs::Client;
use aws_sdk_efs::types::{
    AccessPointDescription, BackupPolicy, CreationInfo, FileSystemDescription, PerformanceMode, PosixUser,
    RootDirectory, Status, Tag, ThroughputMode,
};
use tokio::time::Instant;

use super::{AwsError, AwsResult};

/// How often the waiters look again.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Throughput mode for new file systems: elastic scales with the archive's bursty transfers and never runs
/// out of burst credits, which a bursting file system of DataVault's small size would.
pub const THROUGHPUT_MODE: ThroughputMode = ThroughputMode::Elastic;

/// What a waiter does after one look: the provider's one wait decision.
pub use super::wait::Decision as WaitDecision;

/// A file system the stack owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystem {
    /// Its id, `fs-...`.
    pub id: String,
    /// Its ARN.
    pub arn: String,
}

/// What a file system looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystemObservation {
    /// Its id.
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// Whether data at rest is encrypted.
    pub encrypted: bool,
    /// `creating`, `available`, `updating`, `deleting`, `deleted` or `error`.
    pub life_cycle_state: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Human-readable differences from the managed settings (empty when none).
    pub drift: Vec<String>,
}

/// A mount target the stack owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTarget {
    /// Its id, `fsmt-...`.
    pub id: String,
    /// The subnet it serves.
    pub subnet_id: String,
}

/// What a mount target looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTargetObservation {
    /// Its id.
    pub id: String,
    /// The subnet it lives in.
    pub subnet_id: String,
    /// Its Availability Zone, when EFS reports it.
    pub availability_zone: Option<String>,
    /// Its life cycle state (`creating`, `available`, `deleting`, ...).
    pub state: String,
    /// The security groups of its network interface (only known while it is available).
    pub security_groups: Vec<String>,
}

/// What the mount targets must change to match the wanted subnets and security group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTargetPlan {
    /// Mount targets in subnets no longer wanted (ids).
    pub delete: Vec<String>,
    /// Wanted subnets without a mount target.
    pub create: Vec<String>,
    /// Available mount targets whose security groups are not exactly the wanted one (ids).
    pub secure: Vec<String>,
}

/// An access point as configured: the directory a service sees as `/` and the identity it acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPointSpec {
    /// The `Name` tag that identifies it, e.g. `<stack>-rabbitmq`.
    pub name: String,
    /// The directory exposed as the root, e.g. `/rabbitmq`; created on first use.
    pub root_path: String,
    /// The POSIX user id every file operation runs as, and the owner of a newly created root.
    pub uid: i64,
    /// The POSIX group id, likewise.
    pub gid: i64,
    /// Octal permissions of a newly created root directory, e.g. `0750`.
    pub permissions: String,
}

/// An access point the stack owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPoint {
    /// Its id, `fsap-...`.
    pub id: String,
    /// Its ARN.
    pub arn: String,
}

/// What an access point looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPointObservation {
    /// Its id.
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// Its root directory path (`/` when none was set).
    pub root_path: String,
    /// Its enforced POSIX user as (uid, gid), if any.
    pub posix_user: Option<(i64, i64)>,
    /// The owner and permissions used to create the root directory, as (uid, gid, permissions), if any.
    pub creation_info: Option<(i64, i64, String)>,
    /// Its life cycle state.
    pub state: String,
    /// Differences from the spec (empty when none); access points are immutable, so any drift means
    /// replacement.
    pub drift: Vec<String>,
    /// Its tags, which say whose it is.
    pub tags: BTreeMap<String, String>,
}

fn tag_list(tags: &BTreeMap<String, String>) -> AwsResult<Vec<Tag>> {
    super::try_tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// Takes the tags with these keys off the file system or access point (keys it does not have are no error): the
/// stack's tags that the configuration no longer has.
pub async fn remove_tags(client: &Client, id: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_resource().resource_id(id).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagResource", e))?;
    Ok(())
}

/// Gives the file system or access point `id` the tags of `tags` its `current` ones lack.
async fn converge_tags(
    client: &Client,
    id: &str,
    tags: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> AwsResult<()> {
    let missing = super::tags_to_write(tags, current);
    if missing.is_empty() {
        return Ok(());
    }
    client
        .tag_resource()
        .resource_id(id)
        .set_tags(Some(tag_list(&missing)?))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("TagResource", e))?;
    Ok(())
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    super::tag_map(tags.iter().map(|t| (t.key(), t.value())))
}

use super::wait::{self, remaining};

/// Whether a file system in this life cycle state (or gone, `None`) is ready for mount targets.
pub fn assess_file_system(state: Option<&str>) -> WaitDecision {
    match state {
        Some("available") => WaitDecision::Done,
        Some("creating" | "updating") => WaitDecision::Wait,
        Some("error") => WaitDecision::Fail("EFS reports the file system in state error".to_string()),
        Some(state @ ("deleting" | "deleted")) => {
            WaitDecision::Fail(format!("the file system is {state}; it was removed while being set up"))
        }
        Some(_) => WaitDecision::Wait,
        None => WaitDecision::Fail("the file system no longer exists".to_string()),
    }
}

/// Differences of a file system from the managed settings: encryption (EFS.1, which cannot be changed
/// in place), automatic backups and its resource policy (`policy_in_force`, `None` when it has none).
pub fn file_system_drift(
    encrypted: bool,
    backups_enabled: bool,
    policy_in_force: Option<&str>,
    arn: &str,
) -> Vec<String> {
    let mut drift = Vec::new();
    if !encrypted {
        drift.push("not encrypted (EFS cannot encrypt an existing file system; it must be replaced)".to_string());
    }
    if !backups_enabled {
        drift.push("automatic backups are disabled".to_string());
    }
    match policy_in_force {
        None => drift.push("no file system policy (plain NFS and anonymous clients are not refused)".to_string()),
        Some(policy) if !super::iam::same_policy(policy, &file_system_policy(arn)) => {
            drift.push("the file system policy differs from the stack's".to_string());
        }
        Some(_) => {}
    }
    drift
}

/// The file system's resource policy: any request without TLS is denied, and mounting is allowed only to
/// IAM principals coming through a mount target, so an anonymous NFS client is refused (EFS's own "enforce
/// in-transit encryption" and "prevent anonymous access" policies). Which principal may mount which folder
/// is still decided by the task roles' policies, through their access points.
pub fn file_system_policy(arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyWithoutTls",
                "Effect": "Deny",
                "Principal": { "AWS": "*" },
                "Action": "*",
                "Resource": arn,
                "Condition": { "Bool": { "aws:SecureTransport": "false" } }
            },
            {
                "Sid": "MountOnlyAsAnIamPrincipalThroughAMountTarget",
                "Effect": "Allow",
                "Principal": { "AWS": "*" },
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                "Resource": arn,
                "Condition": { "Bool": { "elasticfilesystem:AccessedViaMountTarget": "true" } }
            }
        ]
    })
    .to_string()
}

/// The file system's resource policy in force; `None` when it has none. Reads only.
async fn policy_in_force(client: &Client, fs_id: &str) -> AwsResult<Option<String>> {
    match client.describe_file_system_policy().file_system_id(fs_id).send().await {
        Ok(out) => Ok(out.policy().map(str::to_string)),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeFileSystemPolicy", err);
            if err.is(&["PolicyNotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// The file system with this creation token, as EFS describes it; `None` when there is none.
pub async fn describe_by_token(client: &Client, creation_token: &str) -> AwsResult<Option<FileSystemDescription>> {
    let out = client
        .describe_file_systems()
        .creation_token(creation_token)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeFileSystems", e))?;
    Ok(out.file_systems().iter().find(|fs| fs.creation_token() == creation_token).cloned())
}

async fn describe_by_id(client: &Client, fs_id: &str) -> AwsResult<Option<FileSystemDescription>> {
    match client.describe_file_systems().file_system_id(fs_id).send().await {
        Ok(out) => Ok(out.file_systems().first().cloned()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeFileSystems", err);
            if err.is(&["FileSystemNotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

async fn backups_enabled(client: &Client, fs_id: &str) -> AwsResult<bool> {
    match client.describe_backup_policy().file_system_id(fs_id).send().await {
        Ok(out) => Ok(out.backup_policy().is_some_and(|p| matches!(p.status(), Status::Enabled | Status::Enabling))),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeBackupPolicy", err);
            if err.is(&["PolicyNotFound"]) { Ok(false) } else { Err(err) }
        }
    }
}

fn file_system_of(fs: &FileSystemDescription) -> FileSystem {
    FileSystem { id: fs.file_system_id().to_string(), arn: fs.file_system_arn().unwrap_or_default().to_string() }
}

async fn create_file_system(
    client: &Client,
    creation_token: &str,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<FileSystem> {
    let created = client
        .create_file_system()
        .creation_token(creation_token)
        .encrypted(true)
        .set_kms_key_id(kms_key.map(str::to_string))
        .performance_mode(PerformanceMode::GeneralPurpose)
        .throughput_mode(THROUGHPUT_MODE)
        .backup(true)
        .set_tags(Some(tag_list(tags)?))
        .send()
        .await;
    match created {
        Ok(fs) => Ok(FileSystem {
            id: fs.file_system_id().to_string(),
            arn: fs.file_system_arn().unwrap_or_default().to_string(),
        }),
        Err(err) => {
            let err = AwsError::from_sdk("CreateFileSystem", err);
            // The token is taken: an earlier, interrupted run created it. Adopt that one.
            if !err.is(&["FileSystemAlreadyExists"]) {
                return Err(err);
            }
            let fs = describe_by_token(client, creation_token).await?.ok_or_else(|| {
                AwsError::other(
                    "CreateFileSystem",
                    format!("creation token {creation_token} is in use but no file system carries it"),
                )
            })?;
            Ok(file_system_of(&fs))
        }
    }
}

async fn wait_file_system_available(client: &Client, fs_id: &str, timeout: Duration) -> AwsResult<()> {
    let what = format!("EFS file system {fs_id} to become available");
    let observe = || async { Ok(describe_by_id(client, fs_id).await?.map(|fs| fs.life_cycle_state().to_string())) };
    wait::until("DescribeFileSystems", &what, timeout, POLL_INTERVAL, observe, |s: &Option<String>| {
        assess_file_system(s.as_deref())
    })
    .await?;
    Ok(())
}

/// Finds the file system by its creation token, or creates it (encrypted, with `kms_key` when given, which
/// EFS fixes at creation; general purpose, elastic throughput, automatic backups); waits until it is available; enables backups if they were switched
/// off; puts [`file_system_policy`] in force; converges the tags. May be called again after a crash;
/// converges.
pub async fn ensure_file_system(
    client: &Client,
    creation_token: &str,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
    timeout: Duration,
) -> AwsResult<FileSystem> {
    // A file system this call creates carries the spec's tags from its creation.
    let (fs, current_tags) = match describe_by_token(client, creation_token).await? {
        Some(existing) => (file_system_of(&existing), tag_map(existing.tags())),
        None => (create_file_system(client, creation_token, kms_key, tags).await?, tags.clone()),
    };
    wait_file_system_available(client, &fs.id, timeout).await?;
    if !backups_enabled(client, &fs.id).await? {
        client
            .put_backup_policy()
            .file_system_id(&fs.id)
            .backup_policy(BackupPolicy::builder().status(Status::Enabled).build()?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutBackupPolicy", e))?;
    }
    let policy = file_system_policy(&fs.arn);
    if !policy_in_force(client, &fs.id).await?.is_some_and(|p| super::iam::same_policy(&p, &policy)) {
        client
            .put_file_system_policy()
            .file_system_id(&fs.id)
            .policy(policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutFileSystemPolicy", e))?;
    }
    super::refuse_foreign("TagResource", &format!("file system {}", fs.id), &current_tags, tags)?;
    converge_tags(client, &fs.id, tags, &current_tags).await?;
    Ok(fs)
}

/// Describes the file system with this creation token and how it differs from the managed settings;
/// `None` when there is none.
pub async fn find_file_system(client: &Client, creation_token: &str) -> AwsResult<Option<FileSystemObservation>> {
    let Some(fs) = describe_by_token(client, creation_token).await? else { return Ok(None) };
    Ok(Some(observe_file_system(client, &fs).await?))
}

/// How the described file system differs from the managed settings.
pub async fn observe_file_system(client: &Client, fs: &FileSystemDescription) -> AwsResult<FileSystemObservation> {
    let (backups, policy) =
        tokio::try_join!(backups_enabled(client, fs.file_system_id()), policy_in_force(client, fs.file_system_id()))?;
    let mut observation = FileSystemObservation::described(fs);
    observation.drift = file_system_drift(observation.encrypted, backups, policy.as_deref(), &observation.arn);
    Ok(observation)
}

impl FileSystemObservation {
    /// The file system as its description says, without the reads that judge its settings (no drift).
    pub fn described(fs: &FileSystemDescription) -> FileSystemObservation {
        FileSystemObservation {
            id: fs.file_system_id().to_string(),
            arn: fs.file_system_arn().unwrap_or_default().to_string(),
            encrypted: fs.encrypted().unwrap_or(false),
            life_cycle_state: fs.life_cycle_state().to_string(),
            tags: tag_map(fs.tags()),
            drift: Vec::new(),
        }
    }
}

fn is_going(state: &str) -> bool {
    matches!(state, "deleting" | "deleted")
}

/// What must change so there is exactly one mount target per wanted subnet, each guarded by exactly the
/// wanted security group. Mount targets already being deleted are ignored.
pub fn plan_mount_targets(
    existing: &[MountTargetObservation],
    subnet_ids: &[String],
    security_group_id: &str,
) -> MountTargetPlan {
    let live: Vec<&MountTargetObservation> = existing.iter().filter(|mt| !is_going(&mt.state)).collect();
    let wanted: BTreeSet<&str> = subnet_ids.iter().map(String::as_str).collect();
    let present: BTreeSet<&str> = live.iter().map(|mt| mt.subnet_id.as_str()).collect();
    let mut plan = MountTargetPlan::default();
    for mt in &live {
        if !wanted.contains(mt.subnet_id.as_str()) {
            plan.delete.push(mt.id.clone());
        } else if mt.state == "available" && mt.security_groups != [security_group_id] {
            plan.secure.push(mt.id.clone());
        }
    }
    let mut seen = BTreeSet::new();
    for subnet in subnet_ids {
        if !present.contains(subnet.as_str()) && seen.insert(subnet.as_str()) {
            plan.create.push(subnet.clone());
        }
    }
    plan
}

/// Whether every wanted subnet has an available mount target.
pub fn assess_mount_targets_ready(observed: &[MountTargetObservation], subnet_ids: &[String]) -> WaitDecision {
    for subnet in subnet_ids {
        match observed.iter().find(|mt| &mt.subnet_id == subnet && !is_going(&mt.state)) {
            Some(mt) if mt.state == "available" => {}
            Some(mt) if mt.state == "error" => {
                return WaitDecision::Fail(format!("mount target {} in subnet {subnet} is in state error", mt.id));
            }
            _ => return WaitDecision::Wait,
        }
    }
    WaitDecision::Done
}

/// Whether none of these mount targets (by id; all of them when `ids` is `None`) remains.
pub fn assess_mount_targets_gone(observed: &[MountTargetObservation], ids: Option<&[String]>) -> WaitDecision {
    let left = observed.iter().any(|mt| ids.is_none_or(|ids| ids.contains(&mt.id)) && mt.state != "deleted");
    if left { WaitDecision::Wait } else { WaitDecision::Done }
}

async fn security_groups_of(client: &Client, mount_target_id: &str) -> AwsResult<Vec<String>> {
    match client.describe_mount_target_security_groups().mount_target_id(mount_target_id).send().await {
        Ok(out) => Ok(out.security_groups().to_vec()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeMountTargetSecurityGroups", err);
            // Gone or in transition between our listing and this call: nothing to report.
            if err.is(&["MountTargetNotFound", "IncorrectMountTargetState"]) { Ok(Vec::new()) } else { Err(err) }
        }
    }
}

/// The file system's mount targets with their security groups; empty when the file system does not
/// exist.
pub async fn describe_mount_targets(client: &Client, fs_id: &str) -> AwsResult<Vec<MountTargetObservation>> {
    let pages = client.describe_mount_targets().file_system_id(fs_id).into_paginator().items().send();
    let targets = match pages.collect::<Result<Vec<_>, _>>().await {
        Ok(targets) => targets,
        Err(err) => {
            let err = AwsError::from_sdk("DescribeMountTargets", err);
            return if err.is(&["FileSystemNotFound"]) { Ok(Vec::new()) } else { Err(err) };
        }
    };
    // One request per target for its security groups, all at once.
    let observed = targets.iter().map(|mt| async move {
        let state = mt.life_cycle_state().to_string();
        let security_groups =
            if state == "available" { security_groups_of(client, mt.mount_target_id()).await? } else { Vec::new() };
        Ok::<_, AwsError>(MountTargetObservation {
            id: mt.mount_target_id().to_string(),
            subnet_id: mt.subnet_id().to_string(),
            availability_zone: mt.availability_zone_name().map(str::to_string),
            state,
            security_groups,
        })
    });
    futures_util::future::try_join_all(observed).await
}

async fn delete_mount_target(client: &Client, id: &str) -> AwsResult<()> {
    match client.delete_mount_target().mount_target_id(id).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteMountTarget", err);
            if err.is(&["MountTargetNotFound"]) { Ok(()) } else { Err(err) }
        }
    }
}

async fn create_mount_target(client: &Client, fs_id: &str, subnet_id: &str, security_group_id: &str) -> AwsResult<()> {
    let created = client
        .create_mount_target()
        .file_system_id(fs_id)
        .subnet_id(subnet_id)
        .security_groups(security_group_id)
        .send()
        .await;
    let Err(err) = created else { return Ok(()) };
    let err = AwsError::from_sdk("CreateMountTarget", err);
    if !err.is(&["MountTargetConflict"]) {
        return Err(err);
    }
    // An interrupted run may have created it already: adopt it. Any other conflict (another mount target
    // in the same Availability Zone or VPC) is the caller's to fix.
    let existing = describe_mount_targets(client, fs_id).await?;
    if existing.iter().any(|mt| mt.subnet_id == subnet_id && !is_going(&mt.state)) {
        return Ok(());
    }
    Err(AwsError::other(
        "CreateMountTarget",
        format!(
            "cannot create a mount target for {fs_id} in subnet {subnet_id}: {} (EFS allows one mount target per \
             Availability Zone, all in one VPC: pass one subnet per zone)",
            err.message
        ),
    ))
}

async fn wait_mount_targets<D>(
    client: &Client,
    fs_id: &str,
    what: &str,
    timeout: Duration,
    decide: D,
) -> AwsResult<Vec<MountTargetObservation>>
where
    D: Fn(&Vec<MountTargetObservation>) -> WaitDecision,
{
    wait::until("DescribeMountTargets", what, timeout, POLL_INTERVAL, || describe_mount_targets(client, fs_id), decide)
        .await
}

/// Makes the file system's mount targets exactly one per given subnet (the caller passes one subnet per
/// Availability Zone), each guarded by exactly `security_group_id`: deletes those in subnets no longer
/// listed (and waits, since a zone holds only one), creates the missing ones (adopting any an interrupted
/// run created), waits until all are available, then corrects security groups. May be called again after
/// a crash; converges.
pub async fn ensure_mount_targets(
    client: &Client,
    fs_id: &str,
    subnet_ids: &[String],
    security_group_id: &str,
    timeout: Duration,
) -> AwsResult<Vec<MountTarget>> {
    let deadline = super::deadline_after(timeout);
    let plan = plan_mount_targets(&describe_mount_targets(client, fs_id).await?, subnet_ids, security_group_id);
    if !plan.delete.is_empty() {
        for id in &plan.delete {
            delete_mount_target(client, id).await?;
        }
        let what = format!("EFS mount targets {} of {fs_id} to be deleted", plan.delete.join(", "));
        wait_mount_targets(client, fs_id, &what, remaining(deadline), |seen| {
            assess_mount_targets_gone(seen, Some(&plan.delete))
        })
        .await?;
    }
    for subnet in &plan.create {
        create_mount_target(client, fs_id, subnet, security_group_id).await?;
    }
    let what = format!("EFS mount targets of {fs_id} in {} to become available", subnet_ids.join(", "));
    let observed = wait_mount_targets(client, fs_id, &what, remaining(deadline), |seen| {
        assess_mount_targets_ready(seen, subnet_ids)
    })
    .await?;
    for id in plan_mount_targets(&observed, subnet_ids, security_group_id).secure {
        client
            .modify_mount_target_security_groups()
            .mount_target_id(&id)
            .security_groups(security_group_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ModifyMountTargetSecurityGroups", e))?;
    }
    Ok(subnet_ids
        .iter()
        .filter_map(|subnet| observed.iter().find(|mt| &mt.subnet_id == subnet && !is_going(&mt.state)))
        .map(|mt| MountTarget { id: mt.id.clone(), subnet_id: mt.subnet_id.clone() })
        .collect())
}

/// Deletes every mount target of the file system and waits until none remains (EFS refuses to delete a
/// file system while any exists). A missing file system is success. May be called again after a crash.
pub async fn delete_mount_targets(client: &Client, fs_id: &str, timeout: Duration) -> AwsResult<()> {
    let existing = describe_mount_targets(client, fs_id).await?;
    if existing.is_empty() {
        return Ok(());
    }
    for mt in existing.iter().filter(|mt| !is_going(&mt.state)) {
        delete_mount_target(client, &mt.id).await?;
    }
    let what = format!("all EFS mount targets of {fs_id} to be deleted");
    wait_mount_targets(client, fs_id, &what, timeout, |seen| assess_mount_targets_gone(seen, None)).await?;
    Ok(())
}

fn normalise_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }
}

fn same_permissions(a: &str, b: &str) -> bool {
    match (u32::from_str_radix(a, 8), u32::from_str_radix(b, 8)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Differences of an access point from its spec: root directory, POSIX user, and how the root directory
/// is created.
pub fn access_point_drift(spec: &AccessPointSpec, observed: &AccessPointObservation) -> Vec<String> {
    let mut drift = Vec::new();
    let (want_path, have_path) = (normalise_path(&spec.root_path), normalise_path(&observed.root_path));
    if want_path != have_path {
        drift.push(format!("root directory is {have_path}, expected {want_path}"));
    }
    match observed.posix_user {
        Some((uid, gid)) if (uid, gid) == (spec.uid, spec.gid) => {}
        Some((uid, gid)) => drift.push(format!("POSIX user is {uid}:{gid}, expected {}:{}", spec.uid, spec.gid)),
        None => drift.push("no POSIX user is enforced".to_string()),
    }
    match &observed.creation_info {
        Some((uid, gid, perms))
            if (*uid, *gid) == (spec.uid, spec.gid) && same_permissions(perms, &spec.permissions) => {}
        Some((uid, gid, perms)) => drift.push(format!(
            "root directory is created as {uid}:{gid} {perms}, expected {}:{} {}",
            spec.uid, spec.gid, spec.permissions
        )),
        None => drift.push("root directory has no creation owner and permissions".to_string()),
    }
    drift
}

/// The idempotency token for creating this access point: derived from its name and settings (and the
/// access point it replaces, if any) so a retried request never makes a duplicate, while a later
/// replacement never collides with the token of an earlier, deleted one. At most 64 characters.
pub fn access_point_client_token(spec: &AccessPointSpec, replaces: Option<&str>) -> String {
    // FNV-1a: tiny, dependency-free and stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let material = format!(
        "{}\0{}\0{}\0{}\0{}\0{}",
        spec.name,
        normalise_path(&spec.root_path),
        spec.uid,
        spec.gid,
        spec.permissions,
        replaces.unwrap_or_default()
    );
    for byte in material.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let name: String = spec.name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(47).collect();
    format!("{name}-{hash:016x}")
}

fn observe_access_point(ap: &AccessPointDescription, spec: &AccessPointSpec) -> AccessPointObservation {
    let root = ap.root_directory();
    let mut observed = AccessPointObservation {
        id: ap.access_point_id().unwrap_or_default().to_string(),
        arn: ap.access_point_arn().unwrap_or_default().to_string(),
        root_path: root.and_then(RootDirectory::path).unwrap_or("/").to_string(),
        posix_user: ap.posix_user().map(|u| (u.uid(), u.gid())),
        creation_info: root
            .and_then(RootDirectory::creation_info)
            .map(|c| (c.owner_uid(), c.owner_gid(), c.permissions().to_string())),
        state: ap.life_cycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        drift: Vec::new(),
        tags: tag_map(ap.tags()),
    };
    observed.drift = access_point_drift(spec, &observed);
    observed
}

fn name_of(ap: &AccessPointDescription) -> Option<&str> {
    ap.name().or_else(|| ap.tags().iter().find(|t| t.key() == "Name").map(Tag::value))
}

/// The file system's live access points carrying this `Name` tag.
async fn access_points_named(
    client: &Client,
    fs_id: &str,
    spec: &AccessPointSpec,
) -> AwsResult<Vec<AccessPointObservation>> {
    Ok(named(&access_points(client, fs_id).await?, spec))
}

/// Every access point of the file system (none when it does not exist): one listing for all of them.
pub async fn access_points(client: &Client, fs_id: &str) -> AwsResult<Vec<AccessPointDescription>> {
    let pages = client.describe_access_points().file_system_id(fs_id).into_paginator().items().send();
    match pages.collect::<Result<Vec<_>, _>>().await {
        Ok(all) => Ok(all),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeAccessPoints", err);
            if err.is(&["FileSystemNotFound"]) { Ok(Vec::new()) } else { Err(err) }
        }
    }
}

/// The live ones among `all` that carry `spec`'s `Name` tag, with how each differs from `spec`.
fn named(all: &[AccessPointDescription], spec: &AccessPointSpec) -> Vec<AccessPointObservation> {
    all.iter()
        .filter(|ap| name_of(ap) == Some(spec.name.as_str()))
        .map(|ap| observe_access_point(ap, spec))
        .filter(|ap| !is_going(&ap.state))
        .collect()
}

/// The access point named `spec.name` among the file system's `all` ([`access_points`]), preferring one
/// that matches the spec; `None` when there is none.
pub fn pick_access_point(all: &[AccessPointDescription], spec: &AccessPointSpec) -> Option<AccessPointObservation> {
    let mut existing = named(all, spec);
    existing.sort_by_key(|ap| !ap.drift.is_empty());
    existing.into_iter().next()
}

async fn create_access_point(
    client: &Client,
    fs_id: &str,
    spec: &AccessPointSpec,
    tags: &BTreeMap<String, String>,
    replaces: Option<&str>,
) -> AwsResult<AccessPoint> {
    let created = client
        .create_access_point()
        .client_token(access_point_client_token(spec, replaces))
        .file_system_id(fs_id)
        .posix_user(PosixUser::builder().uid(spec.uid).gid(spec.gid).build()?)
        .root_directory(
            RootDirectory::builder()
                .path(normalise_path(&spec.root_path))
                .creation_info(
                    CreationInfo::builder()
                        .owner_uid(spec.uid)
                        .owner_gid(spec.gid)
                        .permissions(&spec.permissions)
                        .build()?,
                )
                .build(),
        )
        .set_tags(Some(tag_list(tags)?))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateAccessPoint", e))?;
    Ok(AccessPoint {
        id: created.access_point_id().unwrap_or_default().to_string(),
        arn: created.access_point_arn().unwrap_or_default().to_string(),
    })
}

/// Finds the access point by its `Name` tag and returns it when it matches the spec; otherwise creates
/// it. Access points are immutable, so one whose root directory or POSIX user differs from the spec is
/// deleted and recreated (its id and ARN change; task definitions referring to it must follow). Extra
/// access points with the same name are deleted. Tags (plus `Name`) are converged. May be called again
/// after a crash; converges.
pub async fn ensure_access_point(
    client: &Client,
    fs_id: &str,
    spec: &AccessPointSpec,
    tags: &BTreeMap<String, String>,
) -> AwsResult<AccessPoint> {
    let mut tags = tags.clone();
    tags.insert("Name".to_string(), spec.name.clone());
    let existing = access_points_named(client, fs_id, spec).await?;
    let keep = existing.iter().find(|ap| ap.drift.is_empty());
    let replaced = existing.iter().find(|ap| !ap.drift.is_empty()).map(|ap| ap.id.clone());
    for ap in existing.iter().filter(|ap| Some(&ap.id) != keep.map(|k| &k.id)) {
        delete_access_point(client, &ap.id).await?;
    }
    let Some(keep) = keep else {
        return create_access_point(client, fs_id, spec, &tags, replaced.as_deref()).await;
    };
    converge_tags(client, &keep.id, &tags, &keep.tags).await?;
    Ok(AccessPoint { id: keep.id.clone(), arn: keep.arn.clone() })
}

/// Describes the access point named `spec.name` on the file system and how it differs from the spec
/// (preferring one that matches, if several carry the name); `None` when there is none.
pub async fn describe_access_point(
    client: &Client,
    fs_id: &str,
    spec: &AccessPointSpec,
) -> AwsResult<Option<AccessPointObservation>> {
    Ok(pick_access_point(&access_points(client, fs_id).await?, spec))
}

/// Deletes the access point; absent is success.
pub async fn delete_access_point(client: &Client, id: &str) -> AwsResult<()> {
    match client.delete_access_point().access_point_id(id).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteAccessPoint", err);
            if err.is(&["AccessPointNotFound"]) { Ok(()) } else { Err(err) }
        }
    }
}

async fn delete_all_access_points(client: &Client, fs_id: &str) -> AwsResult<()> {
    let all = access_points(client, fs_id).await?;
    for id in all.iter().filter_map(AccessPointDescription::access_point_id) {
        delete_access_point(client, id).await?;
    }
    Ok(())
}

/// Deletes the file system after its access points and mount targets (waiting for those), retrying while
/// EFS still reports it in use; absent is success. All data on it is lost. May be called again after a
/// crash.
pub async fn delete_file_system(client: &Client, fs_id: &str, timeout: Duration) -> AwsResult<()> {
    let deadline = super::deadline_after(timeout);
    if describe_by_id(client, fs_id).await?.is_none() {
        return Ok(());
    }
    delete_all_access_points(client, fs_id).await?;
    delete_mount_targets(client, fs_id, remaining(deadline)).await?;
    let backoff = super::wait::Backoff::up_to(POLL_INTERVAL);
    loop {
        let err = match client.delete_file_system().file_system_id(fs_id).send().await {
            Ok(_) => return Ok(()),
            Err(err) => AwsError::from_sdk("DeleteFileSystem", err),
        };
        if err.is(&["FileSystemNotFound"]) {
            return Ok(());
        }
        // Mount target deletion is eventually consistent: EFS may refuse for a little while longer.
        if !err.is(&["FileSystemInUse"]) {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(AwsError::other(
                "DeleteFileSystem",
                format!(
                    "timed out after {timeout:?} waiting for EFS file system {fs_id} to be no longer in use: {}",
                    err.message
                ),
            ));
        }
        backoff.sleep_before(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn mt(id: &str, subnet: &str, state: &str, sgs: &[&str]) -> MountTargetObservation {
        MountTargetObservation {
            id: id.into(),
            subnet_id: subnet.into(),
            availability_zone: None,
            state: state.into(),
            security_groups: sgs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn subnets(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn spec() -> AccessPointSpec {
        AccessPointSpec {
            name: "vault-rabbitmq".into(),
            root_path: "/rabbitmq".into(),
            uid: 100,
            gid: 101,
            permissions: "0750".into(),
        }
    }

    fn observed(root: &str, user: Option<(i64, i64)>, info: Option<(i64, i64, &str)>) -> AccessPointObservation {
        AccessPointObservation {
            id: "fsap-1".into(),
            arn: "arn".into(),
            root_path: root.into(),
            posix_user: user,
            creation_info: info.map(|(u, g, p)| (u, g, p.to_string())),
            state: "available".into(),
            tags: BTreeMap::new(),
            drift: Vec::new(),
        }
    }

    #[test]
    fn file_system_states_decide_the_wait() {
        assert_eq!(assess_file_system(Some("available")), WaitDecision::Done);
        assert_eq!(assess_file_system(Some("creating")), WaitDecision::Wait);
        assert!(matches!(assess_file_system(Some("error")), WaitDecision::Fail(_)));
        assert!(matches!(assess_file_system(Some("deleting")), WaitDecision::Fail(m) if m.contains("deleting")));
        assert!(matches!(assess_file_system(None), WaitDecision::Fail(_)));
    }

    #[test]
    fn file_system_drift_names_encryption_backups_and_the_policy() {
        let arn = "arn:aws:elasticfilesystem:eu-west-2:1:file-system/fs-1";
        let ours = file_system_policy(arn);
        assert!(file_system_drift(true, true, Some(&ours), arn).is_empty());
        let drift = file_system_drift(false, false, None, arn);
        assert!(drift[0].starts_with("not encrypted"));
        assert_eq!(drift[1], "automatic backups are disabled");
        assert!(drift[2].starts_with("no file system policy"));
        let open = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"*"}]}"#;
        assert_eq!(
            file_system_drift(true, true, Some(open), arn),
            vec!["the file system policy differs from the stack's"]
        );
    }

    #[test]
    fn the_file_system_refuses_plain_nfs_and_anonymous_mounts() {
        let policy: serde_json::Value = serde_json::from_str(&file_system_policy("arn:fs")).unwrap();
        let deny = &policy["Statement"][0];
        assert_eq!((deny["Effect"].as_str(), deny["Action"].as_str()), (Some("Deny"), Some("*")));
        assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
        let allow = &policy["Statement"][1];
        assert_eq!(allow["Condition"]["Bool"]["elasticfilesystem:AccessedViaMountTarget"], "true");
        assert!(!allow["Action"].to_string().contains("ClientRootAccess"), "no root access: {allow}");
    }

    #[test]
    fn plan_creates_missing_deletes_unlisted_and_resecures() {
        let existing = [
            mt("fsmt-a", "subnet-a", "available", &["sg-old"]),
            mt("fsmt-b", "subnet-b", "available", &["sg-new"]),
            mt("fsmt-x", "subnet-x", "available", &["sg-new"]),
            mt("fsmt-gone", "subnet-c", "deleting", &[]),
        ];
        let plan = plan_mount_targets(&existing, &subnets(&["subnet-a", "subnet-b", "subnet-c"]), "sg-new");
        assert_eq!(plan.delete, ["fsmt-x"]);
        assert_eq!(plan.create, ["subnet-c"]);
        assert_eq!(plan.secure, ["fsmt-a"]);
    }

    #[test]
    fn plan_wants_exactly_one_security_group() {
        let existing = [mt("fsmt-a", "subnet-a", "available", &["sg-new", "sg-extra"])];
        let plan = plan_mount_targets(&existing, &subnets(&["subnet-a"]), "sg-new");
        assert_eq!(plan.secure, ["fsmt-a"]);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn plan_leaves_creating_targets_alone_and_ignores_duplicate_subnets() {
        let existing = [mt("fsmt-a", "subnet-a", "creating", &[])];
        let plan = plan_mount_targets(&existing, &subnets(&["subnet-a", "subnet-b", "subnet-b"]), "sg");
        assert_eq!(plan, MountTargetPlan { delete: vec![], create: subnets(&["subnet-b"]), secure: vec![] });
    }

    #[test]
    fn mount_targets_are_ready_when_every_subnet_has_an_available_one() {
        let wanted = subnets(&["subnet-a", "subnet-b"]);
        let creating = [mt("1", "subnet-a", "available", &[]), mt("2", "subnet-b", "creating", &[])];
        assert_eq!(assess_mount_targets_ready(&creating, &wanted), WaitDecision::Wait);
        let missing = [mt("1", "subnet-a", "available", &[])];
        assert_eq!(assess_mount_targets_ready(&missing, &wanted), WaitDecision::Wait);
        let ready = [mt("1", "subnet-a", "available", &[]), mt("2", "subnet-b", "available", &[])];
        assert_eq!(assess_mount_targets_ready(&ready, &wanted), WaitDecision::Done);
        let broken = [mt("1", "subnet-a", "error", &[])];
        assert!(
            matches!(assess_mount_targets_ready(&broken, &wanted), WaitDecision::Fail(m) if m.contains("subnet-a"))
        );
    }

    #[test]
    fn mount_targets_are_gone_when_none_of_the_awaited_ones_remain() {
        let seen = [mt("1", "subnet-a", "deleting", &[]), mt("2", "subnet-b", "available", &[])];
        assert_eq!(assess_mount_targets_gone(&seen, Some(&subnets(&["1"]))), WaitDecision::Wait);
        assert_eq!(assess_mount_targets_gone(&seen, Some(&subnets(&["3"]))), WaitDecision::Done);
        assert_eq!(assess_mount_targets_gone(&seen, None), WaitDecision::Wait);
        assert_eq!(assess_mount_targets_gone(&[], None), WaitDecision::Done);
        assert_eq!(assess_mount_targets_gone(&[mt("1", "s", "deleted", &[])], None), WaitDecision::Done);
    }

    #[test]
    fn matching_access_point_has_no_drift() {
        let ap = observed("/rabbitmq/", Some((100, 101)), Some((100, 101, "750")));
        assert!(access_point_drift(&spec(), &ap).is_empty());
    }

    #[test]
    fn access_point_drift_names_each_difference() {
        let ap = observed("/", Some((0, 0)), None);
        let drift = access_point_drift(&spec(), &ap);
        assert_eq!(drift[0], "root directory is /, expected /rabbitmq");
        assert_eq!(drift[1], "POSIX user is 0:0, expected 100:101");
        assert_eq!(drift[2], "root directory has no creation owner and permissions");
        let ap = observed("/rabbitmq", None, Some((100, 101, "0777")));
        let drift = access_point_drift(&spec(), &ap);
        assert_eq!(
            drift,
            ["no POSIX user is enforced", "root directory is created as 100:101 0777, expected 100:101 0750"]
        );
    }

    #[test]
    fn client_tokens_are_stable_bounded_and_change_with_the_spec() {
        let token = access_point_client_token(&spec(), None);
        assert_eq!(token, access_point_client_token(&spec(), None));
        assert!(token.starts_with("vault-rabbitmq-") && token.len() <= 64);
        let other_user = AccessPointSpec { uid: 999, ..spec() };
        assert_ne!(token, access_point_client_token(&other_user, None));
        assert_ne!(token, access_point_client_token(&spec(), Some("fsap-old")));
        let long = AccessPointSpec { name: "n".repeat(200), ..spec() };
        assert_eq!(access_point_client_token(&long, None).len(), 64);
    }

    fn recorded(states: &[&str]) -> impl FnMut() -> std::future::Ready<AwsResult<Option<String>>> {
        let mut queue: VecDeque<String> = states.iter().map(|s| s.to_string()).collect();
        move || {
            // The last recorded state repeats forever, as a stuck resource would.
            let next = if queue.len() > 1 { queue.pop_front() } else { queue.front().cloned() };
            std::future::ready(Ok(next))
        }
    }

    #[tokio::test]
    async fn waiter_follows_a_recorded_sequence_to_available() {
        let decide = |s: &Option<String>| assess_file_system(s.as_deref());
        let seen = wait::until(
            "Op",
            "fs",
            Duration::from_secs(5),
            Duration::ZERO,
            recorded(&["creating", "creating", "available"]),
            decide,
        )
        .await
        .unwrap();
        assert_eq!(seen.as_deref(), Some("available"));
    }

    #[tokio::test]
    async fn waiter_stops_on_failure_and_at_the_timeout() {
        let decide = |s: &Option<String>| assess_file_system(s.as_deref());
        let err =
            wait::until("Op", "fs x", Duration::from_secs(5), Duration::ZERO, recorded(&["creating", "error"]), decide)
                .await
                .unwrap_err();
        assert!(err.message.contains("fs x") && err.message.contains("error"), "{err}");
        let err = wait::until(
            "Op",
            "fs y",
            Duration::from_millis(30),
            Duration::from_millis(5),
            recorded(&["creating"]),
            decide,
        )
        .await
        .unwrap_err();
        assert!(
            err.message.contains("timed out") && err.message.contains("fs y") && err.message.contains("creating"),
            "{err}"
        );
    }
}
