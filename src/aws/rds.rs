//! Amazon RDS: the stack's database (MariaDB or MySQL), its DB subnet group and its parameter group.
//!
//! The instance is created encrypted, private, with backups, minor-version upgrades and tags copied to
//! snapshots (FSBP RDS.2, RDS.3, RDS.8, RDS.11, RDS.13, RDS.17); its master password is either managed by
//! RDS in Secrets Manager or given write-only by the user and never logged. Deleting takes a final
//! snapshot with a deterministic, collision-free name unless told not to, and refuses (rather than
//! silently switching it off) while deletion protection is on. Every function may be called again after a
//! crash: ensures adopt what exists by identifier or name and converge it; deletes treat "not found" as
//! done. Waits are bounded by the caller's timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_sdk_rds::Client;
use aws_sdk_rds::types::{CloudwatchLogsExportConfiguration, DbInstance, DbSubnetGroup, Tag};

use super::{AwsError, AwsResult};

/// How often [`delete_instance`] looks again while RDS works.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The storage type of new instances: gp3 gives baseline IOPS independent of size, cheaper than gp2.
pub const STORAGE_TYPE: &str = "gp3";

/// A secret string (the master password) whose `Debug` never shows it; it has no `Display`, so it cannot
/// end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself, for the one request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the master password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterPassword {
    /// RDS generates it and keeps it in Secrets Manager (`ManageMasterUserPassword`); the stack only
    /// holds the secret's ARN.
    Managed,
    /// The user gave it (a write-only attribute); it is sent to RDS and nowhere else.
    Given(SecretString),
}

/// The database as configured. It holds no password: see [`MasterPassword`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// The DB instance identifier (lowercase letters, digits and hyphens).
    pub identifier: String,
    /// The instance class, e.g. `db.t3.micro`.
    pub instance_class: String,
    /// Storage in GiB; it can grow in place but never shrink.
    pub allocated_storage: i32,
    /// The engine, `mariadb` or `mysql`; RDS cannot change it in place.
    pub engine: String,
    /// The engine version, e.g. `10.11` (RDS picks the newest minor version).
    pub engine_version: String,
    /// The DB parameter group to use.
    pub parameter_group: String,
    /// The database created at launch, e.g. `datavault`.
    pub db_name: String,
    /// The master user, e.g. `datavault`.
    pub master_username: String,
    /// The DB subnet group to place it in.
    pub subnet_group: String,
    /// The VPC security groups guarding it.
    pub security_group_ids: Vec<String>,
    /// Days of automated backups (RDS.11 wants at least 7).
    pub backup_retention_days: i32,
    /// Whether RDS refuses to delete it (RDS.8).
    pub deletion_protection: bool,
    /// Whether it runs a standby in a second Availability Zone.
    pub multi_az: bool,
    /// The customer-managed KMS key of its storage and of the password secret RDS manages; `None`: the
    /// AWS managed keys. RDS fixes the storage key at creation.
    pub kms_key: Option<String>,
    /// Tags for the instance (copied to its snapshots).
    pub tags: BTreeMap<String, String>,
}

/// A database instance as the stack needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Its identifier.
    pub identifier: String,
    /// Its ARN.
    pub arn: String,
    /// Its DNS name, once RDS has assigned one.
    pub endpoint: Option<String>,
    /// Its port, once known.
    pub port: Option<i32>,
    /// The Secrets Manager secret holding the master password, when RDS manages it.
    pub master_secret_arn: Option<String>,
    /// Its status, e.g. `creating` or `available`.
    pub status: String,
}

/// What a database instance looks like now. Class, storage, backup retention and multi-AZ report the
/// value being applied when a modification is pending, so a change in flight does not count as drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseObservation {
    /// Its identifier.
    pub identifier: String,
    /// Its ARN.
    pub arn: String,
    /// Its status.
    pub status: String,
    /// Its DNS name, once assigned.
    pub endpoint: Option<String>,
    /// Its port, once known.
    pub port: Option<i32>,
    /// The engine, e.g. `mariadb`.
    pub engine: String,
    /// The running engine version, e.g. `10.11.9`.
    pub engine_version: String,
    /// Its DB parameter group.
    pub parameter_group: Option<String>,
    /// Its instance class.
    pub instance_class: String,
    /// Its storage in GiB.
    pub allocated_storage: i32,
    /// Whether it has a public address.
    pub publicly_accessible: bool,
    /// Whether its storage is encrypted.
    pub storage_encrypted: bool,
    /// Days of automated backups.
    pub backup_retention_days: i32,
    /// Whether deletion protection is on.
    pub deletion_protection: bool,
    /// Whether it is multi-AZ.
    pub multi_az: bool,
    /// Whether minor engine upgrades are applied automatically.
    pub auto_minor_version_upgrade: bool,
    /// Whether tags are copied to snapshots.
    pub copy_tags_to_snapshot: bool,
    /// Whether IAM database authentication is on (FSBP RDS.10).
    pub iam_database_authentication: bool,
    /// The logs published to CloudWatch Logs, sorted (with a pending change already counted).
    pub log_exports: Vec<String>,
    /// Its VPC security groups.
    pub security_group_ids: Vec<String>,
    /// Its DB subnet group.
    pub subnet_group: Option<String>,
    /// The Secrets Manager secret of the master password, when RDS manages it.
    pub master_secret_arn: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The database logs published to CloudWatch Logs (FSBP RDS.9): the error log and the slow query log. The
/// general log (every statement, with the data in it) and the audit plugin are left off: they cost per
/// statement and would copy archive metadata into the logs.
pub const LOG_EXPORTS: [&str; 2] = ["error", "slowquery"];

/// The CloudWatch Logs group RDS publishes the instance's `log_type` log to.
pub fn log_group_name(identifier: &str, log_type: &str) -> String {
    format!("{}{log_type}", log_group_prefix(identifier))
}

/// What the names of the log groups RDS publishes the instance's logs to start with.
pub fn log_group_prefix(identifier: &str) -> String {
    format!("/aws/rds/instance/{identifier}/")
}

/// What a waiter does after one look: the provider's one wait decision.
pub use super::wait::Decision as WaitDecision;

/// The changes `ModifyDBInstance` must make (everything `None` means nothing to do). Holds no password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modification {
    /// New instance class.
    pub instance_class: Option<String>,
    /// New (larger) storage in GiB.
    pub allocated_storage: Option<i32>,
    /// New backup retention in days.
    pub backup_retention_days: Option<i32>,
    /// New deletion protection.
    pub deletion_protection: Option<bool>,
    /// New VPC security groups.
    pub security_group_ids: Option<Vec<String>>,
    /// New multi-AZ setting.
    pub multi_az: Option<bool>,
    /// Switch automatic minor upgrades back on.
    pub auto_minor_version_upgrade: Option<bool>,
    /// Switch copying tags to snapshots back on.
    pub copy_tags_to_snapshot: Option<bool>,
    /// Switch IAM database authentication back on.
    pub iam_database_authentication: Option<bool>,
    /// Log types to start publishing to CloudWatch Logs, and to stop publishing.
    pub log_exports: Option<(Vec<String>, Vec<String>)>,
    /// Hand the master password to RDS (`true`) or take it back to set a given one (`false`).
    pub manage_master_password: Option<bool>,
    /// New DB parameter group (applied at the next reboot for static parameters).
    pub parameter_group: Option<String>,
}

impl Modification {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == Modification::default()
    }
}

/// What [`delete_instance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The final snapshot taken, if any (none when skipped or the instance was already gone).
    pub final_snapshot: Option<String>,
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    super::tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

use super::wait::remaining;

/// Takes the tags with these keys off the database, subnet group or parameter group (keys it does not have are no
/// error): the stack's tags that the configuration no longer has.
pub async fn remove_tags(client: &Client, arn: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.remove_tags_from_resource().resource_name(arn).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("RemoveTagsFromResource", e))?;
    Ok(())
}

/// Gives the resource the tags of `tags` it lacks. `current` are its tags when the caller has them (a
/// described instance carries them); otherwise they are read first.
async fn converge_tags(
    client: &Client,
    arn: &str,
    tags: &BTreeMap<String, String>,
    current: Option<&BTreeMap<String, String>>,
) -> AwsResult<()> {
    if tags.is_empty() || arn.is_empty() {
        return Ok(());
    }
    let missing = match current {
        Some(current) => super::tags_to_write(tags, current),
        None => super::tags_to_write(tags, &resource_tags(client, arn).await?),
    };
    if missing.is_empty() {
        return Ok(());
    }
    client
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tag_list(&missing)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("AddTagsToResource", e))?;
    Ok(())
}

/// Whether two subnet lists name different sets of subnets (order and duplicates do not matter).
pub fn subnets_differ(current: &[String], wanted: &[String]) -> bool {
    let current: BTreeSet<&String> = current.iter().collect();
    let wanted: BTreeSet<&String> = wanted.iter().collect();
    current != wanted
}

async fn find_subnet_group(client: &Client, name: &str) -> AwsResult<Option<DbSubnetGroup>> {
    match client.describe_db_subnet_groups().db_subnet_group_name(name).send().await {
        Ok(out) => Ok(out.db_subnet_groups().first().cloned()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeDBSubnetGroups", err);
            if err.is(&["DBSubnetGroupNotFoundFault"]) { Ok(None) } else { Err(err) }
        }
    }
}

async fn converge_subnet_group(
    client: &Client,
    group: &DbSubnetGroup,
    description: &str,
    subnet_ids: &[String],
) -> AwsResult<()> {
    let current: Vec<String> =
        group.subnets().iter().filter_map(|s| s.subnet_identifier()).map(str::to_string).collect();
    if !subnets_differ(&current, subnet_ids) && group.db_subnet_group_description() == Some(description) {
        return Ok(());
    }
    client
        .modify_db_subnet_group()
        .db_subnet_group_name(group.db_subnet_group_name().unwrap_or_default())
        .db_subnet_group_description(description)
        .set_subnet_ids(Some(subnet_ids.to_vec()))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyDBSubnetGroup", e))?;
    Ok(())
}

/// Creates the DB subnet group or adopts the existing one, replaces its subnets (and description) when
/// they differ, and converges the tags; returns its ARN. May be called again after a crash; converges.
pub async fn ensure_subnet_group(
    client: &Client,
    name: &str,
    description: &str,
    subnet_ids: &[String],
    tags: &BTreeMap<String, String>,
) -> AwsResult<String> {
    let existing = match find_subnet_group(client, name).await? {
        Some(group) => Some(group),
        None => {
            let created = client
                .create_db_subnet_group()
                .db_subnet_group_name(name)
                .db_subnet_group_description(description)
                .set_subnet_ids(Some(subnet_ids.to_vec()))
                .set_tags(Some(tag_list(tags)))
                .send()
                .await;
            match created {
                Ok(out) => {
                    return Ok(out
                        .db_subnet_group()
                        .and_then(|g| g.db_subnet_group_arn())
                        .unwrap_or_default()
                        .to_string());
                }
                Err(err) => {
                    let err = AwsError::from_sdk("CreateDBSubnetGroup", err);
                    // Created by a concurrent or interrupted run: adopt it.
                    if !err.is(&["DBSubnetGroupAlreadyExists"]) {
                        return Err(err);
                    }
                    find_subnet_group(client, name).await?
                }
            }
        }
    };
    let Some(group) = existing else { return Ok(String::new()) };
    let arn = group.db_subnet_group_arn().unwrap_or_default().to_string();
    converge_subnet_group(client, &group, description, subnet_ids).await?;
    converge_tags(client, &arn, tags, None).await?;
    Ok(arn)
}

/// Deletes the DB subnet group; absent is success. RDS refuses while an instance still uses it.
pub async fn delete_subnet_group(client: &Client, name: &str) -> AwsResult<()> {
    match client.delete_db_subnet_group().db_subnet_group_name(name).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteDBSubnetGroup", err);
            if err.is(&["DBSubnetGroupNotFoundFault"]) { Ok(()) } else { Err(err) }
        }
    }
}

async fn describe_raw(client: &Client, identifier: &str) -> AwsResult<Option<DbInstance>> {
    match client.describe_db_instances().db_instance_identifier(identifier).send().await {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeDBInstances", err);
            if err.is(&["DBInstanceNotFound", "DBInstanceNotFoundFault"]) { Ok(None) } else { Err(err) }
        }
    }
}

fn database_of(db: &DbInstance) -> Database {
    Database {
        identifier: db.db_instance_identifier().unwrap_or_default().to_string(),
        arn: db.db_instance_arn().unwrap_or_default().to_string(),
        endpoint: db.endpoint().and_then(|e| e.address()).map(str::to_string),
        port: db.endpoint().and_then(|e| e.port()).or(db.db_instance_port().filter(|p| *p > 0)),
        master_secret_arn: db.master_user_secret().and_then(|s| s.secret_arn()).map(str::to_string),
        status: db.db_instance_status().unwrap_or_default().to_string(),
    }
}

fn observation_of(db: &DbInstance) -> DatabaseObservation {
    let base = database_of(db);
    let pending = db.pending_modified_values();
    DatabaseObservation {
        identifier: base.identifier,
        arn: base.arn,
        status: base.status,
        endpoint: base.endpoint,
        port: base.port,
        engine: db.engine().unwrap_or_default().to_string(),
        engine_version: db.engine_version().unwrap_or_default().to_string(),
        parameter_group: db.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()).map(str::to_string),
        instance_class: pending
            .and_then(|p| p.db_instance_class())
            .or(db.db_instance_class())
            .unwrap_or_default()
            .to_string(),
        allocated_storage: pending.and_then(|p| p.allocated_storage()).or(db.allocated_storage()).unwrap_or(0),
        publicly_accessible: db.publicly_accessible().unwrap_or(false),
        storage_encrypted: db.storage_encrypted().unwrap_or(false),
        backup_retention_days: pending
            .and_then(|p| p.backup_retention_period())
            .or(db.backup_retention_period())
            .unwrap_or(0),
        deletion_protection: db.deletion_protection().unwrap_or(false),
        multi_az: pending.and_then(|p| p.multi_az()).or(db.multi_az()).unwrap_or(false),
        auto_minor_version_upgrade: db.auto_minor_version_upgrade().unwrap_or(false),
        copy_tags_to_snapshot: db.copy_tags_to_snapshot().unwrap_or(false),
        iam_database_authentication: pending
            .and_then(|p| p.iam_database_authentication_enabled())
            .or(db.iam_database_authentication_enabled())
            .unwrap_or(false),
        log_exports: log_exports_of(db),
        security_group_ids: db
            .vpc_security_groups()
            .iter()
            .filter(|g| !matches!(g.status(), Some("removing" | "inactive")))
            .filter_map(|g| g.vpc_security_group_id())
            .map(str::to_string)
            .collect(),
        subnet_group: db.db_subnet_group().and_then(|g| g.db_subnet_group_name()).map(str::to_string),
        master_secret_arn: base.master_secret_arn,
        tags: super::tag_map(db.tag_list().iter().map(|t| (t.key(), t.value()))),
    }
}

/// The log types the instance publishes, counting a pending change as made.
fn log_exports_of(db: &DbInstance) -> Vec<String> {
    let mut exports: BTreeSet<String> = db.enabled_cloudwatch_logs_exports().iter().cloned().collect();
    if let Some(pending) = db.pending_modified_values().and_then(|p| p.pending_cloudwatch_logs_exports()) {
        exports.extend(pending.log_types_to_enable().iter().cloned());
        for gone in pending.log_types_to_disable() {
            exports.remove(gone);
        }
    }
    exports.into_iter().collect()
}

/// Which of [`LOG_EXPORTS`] to start publishing, and which other log types to stop; `None` when the
/// instance publishes exactly those.
fn log_exports_change(current: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let enable: Vec<String> =
        LOG_EXPORTS.iter().filter(|t| !current.iter().any(|c| c == *t)).map(|t| t.to_string()).collect();
    let disable: Vec<String> = current.iter().filter(|c| !LOG_EXPORTS.contains(&c.as_str())).cloned().collect();
    (!enable.is_empty() || !disable.is_empty()).then_some((enable, disable))
}

/// Describes the instance; `None` when it does not exist.
pub async fn describe_instance(client: &Client, identifier: &str) -> AwsResult<Option<DatabaseObservation>> {
    Ok(describe_raw(client, identifier).await?.map(|db| observation_of(&db)))
}

fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

fn same_major_minor(running: &str, wanted: &str) -> bool {
    running == wanted || running.starts_with(&format!("{wanted}."))
}

/// Human-readable differences between the instance and its spec, including the secure settings that
/// ensure never changes (public access, encryption) so they are at least reported.
pub fn drift(spec: &DatabaseSpec, obs: &DatabaseObservation) -> Vec<String> {
    let mut drift = Vec::new();
    if obs.publicly_accessible {
        drift.push("publicly accessible".to_string());
    }
    if !obs.storage_encrypted {
        drift.push("storage is not encrypted".to_string());
    }
    if obs.instance_class != spec.instance_class {
        drift.push(format!("instance class is {}, expected {}", obs.instance_class, spec.instance_class));
    }
    if obs.allocated_storage != spec.allocated_storage {
        drift.push(format!(
            "allocated storage is {} GiB, expected {} GiB",
            obs.allocated_storage, spec.allocated_storage
        ));
    }
    if obs.engine != spec.engine {
        drift.push(format!("engine is {}, expected {}", obs.engine, spec.engine));
    }
    if obs.parameter_group.as_deref() != Some(spec.parameter_group.as_str()) {
        let have = obs.parameter_group.as_deref().unwrap_or("none");
        drift.push(format!("parameter group is {have}, expected {}", spec.parameter_group));
    }
    if !same_major_minor(&obs.engine_version, &spec.engine_version) {
        drift.push(format!("engine version is {}, expected {}", obs.engine_version, spec.engine_version));
    }
    if obs.backup_retention_days != spec.backup_retention_days {
        drift.push(format!(
            "backup retention is {} days, expected {}",
            obs.backup_retention_days, spec.backup_retention_days
        ));
    }
    if obs.deletion_protection != spec.deletion_protection {
        drift.push(format!(
            "deletion protection is {}, expected {}",
            on_off(obs.deletion_protection),
            on_off(spec.deletion_protection)
        ));
    }
    if obs.multi_az != spec.multi_az {
        drift.push(format!("multi-AZ is {}, expected {}", on_off(obs.multi_az), on_off(spec.multi_az)));
    }
    if subnets_differ(&obs.security_group_ids, &spec.security_group_ids) {
        drift.push(format!(
            "security groups are [{}], expected [{}]",
            obs.security_group_ids.join(", "),
            spec.security_group_ids.join(", ")
        ));
    }
    if obs.subnet_group.as_deref().is_some_and(|g| !g.eq_ignore_ascii_case(&spec.subnet_group)) {
        drift.push(format!(
            "DB subnet group is {}, expected {}",
            obs.subnet_group.as_deref().unwrap_or(""),
            spec.subnet_group
        ));
    }
    if !obs.auto_minor_version_upgrade {
        drift.push("automatic minor version upgrades are off".to_string());
    }
    if !obs.copy_tags_to_snapshot {
        drift.push("tags are not copied to snapshots".to_string());
    }
    if !obs.iam_database_authentication {
        drift.push("IAM database authentication is off".to_string());
    }
    if log_exports_change(&obs.log_exports).is_some() {
        drift.push(format!(
            "logs published to CloudWatch Logs are [{}], expected [{}]",
            obs.log_exports.join(", "),
            LOG_EXPORTS.join(", ")
        ));
    }
    drift
}

/// The `ModifyDBInstance` changes that bring the instance to its spec: class, storage growth, backup
/// retention, deletion protection, security groups, multi-AZ, the secure defaults RDS.13/RDS.17, and the
/// master password's management (`wants_managed`: the spec asks RDS to manage it; `sets_given`: a given
/// password is being set now). A storage shrink is an error, since RDS cannot shrink storage. Public
/// access and encryption are never changed here (see [`drift`]).
pub fn plan_modification(
    spec: &DatabaseSpec,
    obs: &DatabaseObservation,
    wants_managed: bool,
    sets_given: bool,
) -> Result<Modification, String> {
    if spec.allocated_storage < obs.allocated_storage {
        return Err(format!(
            "database {} has {} GiB of storage and the configuration asks for {} GiB: RDS cannot shrink storage; \
             set allocated_storage to at least {}",
            obs.identifier, obs.allocated_storage, spec.allocated_storage, obs.allocated_storage
        ));
    }
    if obs.engine != spec.engine {
        return Err(format!(
            "database {} runs {} and the configuration asks for {}: RDS cannot change the engine of an instance; \
             keep engine = {:?}, or move the data to a new stack through a dump",
            obs.identifier, obs.engine, spec.engine, obs.engine
        ));
    }
    let managed = obs.master_secret_arn.is_some();
    Ok(Modification {
        instance_class: (obs.instance_class != spec.instance_class).then(|| spec.instance_class.clone()),
        allocated_storage: (obs.allocated_storage != spec.allocated_storage).then_some(spec.allocated_storage),
        backup_retention_days: (obs.backup_retention_days != spec.backup_retention_days)
            .then_some(spec.backup_retention_days),
        deletion_protection: (obs.deletion_protection != spec.deletion_protection).then_some(spec.deletion_protection),
        security_group_ids: subnets_differ(&obs.security_group_ids, &spec.security_group_ids)
            .then(|| spec.security_group_ids.clone()),
        multi_az: (obs.multi_az != spec.multi_az).then_some(spec.multi_az),
        auto_minor_version_upgrade: (!obs.auto_minor_version_upgrade).then_some(true),
        copy_tags_to_snapshot: (!obs.copy_tags_to_snapshot).then_some(true),
        iam_database_authentication: (!obs.iam_database_authentication).then_some(true),
        log_exports: log_exports_change(&obs.log_exports),
        parameter_group: (obs.parameter_group.as_deref() != Some(spec.parameter_group.as_str()))
            .then(|| spec.parameter_group.clone()),
        manage_master_password: if wants_managed && !managed {
            Some(true)
        } else if sets_given && managed {
            Some(false)
        } else {
            None
        },
    })
}

async fn create_instance(client: &Client, spec: &DatabaseSpec, password: &MasterPassword) -> AwsResult<DbInstance> {
    let mut request = client
        .create_db_instance()
        .db_instance_identifier(&spec.identifier)
        .engine(&spec.engine)
        .engine_version(&spec.engine_version)
        .db_parameter_group_name(&spec.parameter_group)
        .db_instance_class(&spec.instance_class)
        .allocated_storage(spec.allocated_storage)
        .storage_type(STORAGE_TYPE)
        .storage_encrypted(true)
        .set_kms_key_id(spec.kms_key.clone())
        .publicly_accessible(false)
        .auto_minor_version_upgrade(true)
        .copy_tags_to_snapshot(true)
        // FSBP RDS.10: database users can be IAM identities (the images log in with the password; an
        // operator can create IAM-authenticated users for their own sessions).
        .enable_iam_database_authentication(true)
        .set_enable_cloudwatch_logs_exports(Some(LOG_EXPORTS.map(str::to_string).to_vec()))
        .backup_retention_period(spec.backup_retention_days)
        .deletion_protection(spec.deletion_protection)
        .multi_az(spec.multi_az)
        .set_vpc_security_group_ids(Some(spec.security_group_ids.clone()))
        .db_subnet_group_name(&spec.subnet_group)
        .db_name(&spec.db_name)
        .master_username(&spec.master_username)
        .set_tags(Some(tag_list(&spec.tags)));
    request = match password {
        MasterPassword::Managed => {
            request.manage_master_user_password(true).set_master_user_secret_kms_key_id(spec.kms_key.clone())
        }
        MasterPassword::Given(secret) => request.master_user_password(secret.expose()),
    };
    let out = request.send().await.map_err(|e| AwsError::from_sdk("CreateDBInstance", e))?;
    out.db_instance().cloned().ok_or_else(|| AwsError::other("CreateDBInstance", "RDS returned no instance"))
}

async fn modify_instance(
    client: &Client,
    spec: &DatabaseSpec,
    change: &Modification,
    password: Option<&SecretString>,
) -> AwsResult<DbInstance> {
    let identifier = &spec.identifier;
    // A password RDS starts to manage goes into a secret under the stack's key, as at creation.
    let secret_key = if change.manage_master_password == Some(true) { spec.kms_key.clone() } else { None };
    let out = client
        .modify_db_instance()
        .db_instance_identifier(identifier)
        .apply_immediately(true)
        .set_db_instance_class(change.instance_class.clone())
        .set_allocated_storage(change.allocated_storage)
        .set_backup_retention_period(change.backup_retention_days)
        .set_deletion_protection(change.deletion_protection)
        .set_vpc_security_group_ids(change.security_group_ids.clone())
        .set_multi_az(change.multi_az)
        .set_auto_minor_version_upgrade(change.auto_minor_version_upgrade)
        .set_copy_tags_to_snapshot(change.copy_tags_to_snapshot)
        .set_enable_iam_database_authentication(change.iam_database_authentication)
        .set_cloudwatch_logs_export_configuration(change.log_exports.as_ref().map(|(enable, disable)| {
            CloudwatchLogsExportConfiguration::builder()
                .set_enable_log_types(Some(enable.clone()))
                .set_disable_log_types(Some(disable.clone()))
                .build()
        }))
        .set_manage_master_user_password(change.manage_master_password)
        .set_master_user_secret_kms_key_id(secret_key)
        .set_db_parameter_group_name(change.parameter_group.clone())
        .set_master_user_password(password.map(|p| p.expose().to_string()))
        .send()
        .await
        .map_err(|e| {
            let mut err = AwsError::from_sdk("ModifyDBInstance", e);
            if err.is(&["InvalidDBInstanceState"]) {
                err.message =
                    format!("{} (wait until database {identifier} is available, then apply again)", err.message);
            }
            err
        })?;
    out.db_instance().cloned().ok_or_else(|| AwsError::other("ModifyDBInstance", "RDS returned no instance"))
}

async fn converge_instance(
    client: &Client,
    spec: &DatabaseSpec,
    db: DbInstance,
    password: &MasterPassword,
    set_password: bool,
) -> AwsResult<Database> {
    let given = match password {
        MasterPassword::Given(secret) if set_password => Some(secret),
        _ => None,
    };
    let obs = observation_of(&db);
    let current_tags = super::tag_map(db.tag_list().iter().map(|t| (t.key(), t.value())));
    if obs.status == "deleting" {
        return Err(AwsError::other(
            "ModifyDBInstance",
            format!("database {} is being deleted; wait until it is gone, then apply again", obs.identifier),
        ));
    }
    let change = plan_modification(spec, &obs, *password == MasterPassword::Managed, given.is_some())
        .map_err(|message| AwsError::other("ModifyDBInstance", message))?;
    let db =
        if change.is_empty() && given.is_none() { db } else { modify_instance(client, spec, &change, given).await? };
    converge_tags(client, &obs.arn, &spec.tags, Some(&current_tags)).await?;
    Ok(database_of(&db))
}

/// Creates the MySQL instance (encrypted, private, gp3, backups, minor upgrades, tags copied to snapshots,
/// the given or an RDS-managed master password) or adopts the existing one, then converges what differs
/// with `ModifyDBInstance` applied immediately: class, storage growth, backup retention, deletion
/// protection, security groups, multi-AZ, minor upgrades, tag copying, and a switch to an RDS-managed
/// password. A given password is sent only when `set_password` (the caller decides from the write-only
/// attribute's version). Does not wait: follow with [`wait_available`]. An instance that is busy (e.g.
/// still creating after an interrupted apply) cannot be modified; wait for it first. May be called again
/// after a crash; converges.
pub async fn ensure_instance(
    client: &Client,
    spec: &DatabaseSpec,
    password: &MasterPassword,
    set_password: bool,
) -> AwsResult<Database> {
    if let Some(db) = describe_raw(client, &spec.identifier).await? {
        return converge_instance(client, spec, db, password, set_password).await;
    }
    match create_instance(client, spec, password).await {
        Ok(db) => Ok(database_of(&db)),
        Err(err) if err.is(&["DBInstanceAlreadyExists"]) => {
            let db = describe_raw(client, &spec.identifier).await?.ok_or(err)?;
            converge_instance(client, spec, db, password, set_password).await
        }
        Err(err) => Err(err),
    }
}

/// Whether an instance in this status is available, on its way there, or stuck where waiting cannot help.
pub fn assess_status(status: &str) -> WaitDecision {
    let fail = |why: &str| WaitDecision::Fail(format!("the instance is {status}: {why}"));
    match status {
        "available" => WaitDecision::Done,
        "creating"
        | "modifying"
        | "backing-up"
        | "configuring-enhanced-monitoring"
        | "configuring-iam-database-auth"
        | "configuring-log-exports"
        | "upgrading"
        | "storage-optimization"
        | "storage-initialization"
        | "storage-config-upgrade"
        | "rebooting"
        | "resetting-master-credentials"
        | "renaming"
        | "maintenance"
        | "starting"
        | "converting-to-vpc"
        | "moving-to-vpc" => WaitDecision::Wait,
        "failed" => fail("RDS could not recover it; see its events in the RDS console, then delete or restore it"),
        "incompatible-network" => fail("its subnets or security groups no longer fit; check the DB subnet group"),
        "incompatible-option-group" | "incompatible-parameters" => {
            fail("its option or parameter group cannot be applied; fix the group and reboot")
        }
        "incompatible-restore" => fail("a point-in-time restore failed"),
        "incompatible-credentials" => fail("RDS cannot use the credentials it was given"),
        "inaccessible-encryption-credentials" | "inaccessible-encryption-credentials-recoverable" => {
            fail("its KMS key is disabled or its grant was removed; re-enable the key")
        }
        "storage-full" => fail("it ran out of storage; raise allocated_storage and apply"),
        "stopped" | "stopping" => fail("it was stopped; start it and apply again"),
        "deleting" | "deleted" => fail("it is being deleted"),
        "insufficient-capacity" => fail("AWS has no capacity for this instance class here; choose another class"),
        // Statuses introduced after this was written are transitions far more often than dead ends; the
        // timeout still bounds the wait.
        _ => WaitDecision::Wait,
    }
}

fn decide_available(status: &Option<String>) -> WaitDecision {
    match status {
        Some(status) => assess_status(status),
        None => WaitDecision::Fail("the instance does not exist".to_string()),
    }
}

fn decide_gone(status: &Option<String>) -> WaitDecision {
    if status.is_none() { WaitDecision::Done } else { WaitDecision::Wait }
}

/// Looks at the instance's status with `status` (`None` when it does not exist) until `decide` says done
/// or failed, or `timeout` passes (the shared loop, [`super::wait::until`], pausing up to `poll`).
async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    status: F,
    decide: fn(&Option<String>) -> WaitDecision,
) -> AwsResult<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<Option<String>>>,
{
    super::wait::until("DescribeDBInstances", what, timeout, poll, status, decide).await.map(|_| ())
}

async fn current_status(client: &Client, identifier: &str) -> AwsResult<Option<String>> {
    Ok(describe_raw(client, identifier).await?.map(|db| db.db_instance_status().unwrap_or_default().to_string()))
}

/// Waits until the instance is available (checking every `poll`, at most `timeout`) and returns it; fails
/// early with an explanation when its status cannot resolve by waiting.
pub async fn wait_available(
    client: &Client,
    identifier: &str,
    timeout: Duration,
    poll: Duration,
) -> AwsResult<Database> {
    let what = format!("RDS instance {identifier} to become available");
    wait_until(&what, timeout, poll, || current_status(client, identifier), decide_available).await?;
    let db = describe_raw(client, identifier)
        .await?
        .ok_or_else(|| AwsError::other("DescribeDBInstances", format!("RDS instance {identifier} vanished")))?;
    Ok(database_of(&db))
}

/// The final snapshot's identifier: `<identifier>-final`, or `-final-2`, `-final-3`, ... when earlier
/// ones are taken (compared case-insensitively, as RDS does; the result is lowercase, as RDS stores it).
pub fn final_snapshot_identifier(identifier: &str, taken: &[String]) -> String {
    let base = format!("{}-final", identifier.to_ascii_lowercase());
    let is_taken = |candidate: &str| taken.iter().any(|t| t.eq_ignore_ascii_case(candidate));
    if !is_taken(&base) {
        return base;
    }
    (2..).map(|n| format!("{base}-{n}")).find(|candidate| !is_taken(candidate)).unwrap_or(base)
}

async fn manual_snapshot_ids(client: &Client, identifier: &str) -> AwsResult<Vec<String>> {
    let pages = client
        .describe_db_snapshots()
        .db_instance_identifier(identifier)
        .snapshot_type("manual")
        .into_paginator()
        .items()
        .send();
    let snapshots =
        pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("DescribeDBSnapshots", e))?;
    Ok(snapshots.iter().filter_map(|s| s.db_snapshot_identifier()).map(str::to_string).collect())
}

async fn snapshot_exists(client: &Client, snapshot_id: &str) -> AwsResult<bool> {
    match client.describe_db_snapshots().db_snapshot_identifier(snapshot_id).send().await {
        Ok(out) => Ok(!out.db_snapshots().is_empty()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeDBSnapshots", err);
            if err.is(&["DBSnapshotNotFound", "DBSnapshotNotFoundFault"]) { Ok(false) } else { Err(err) }
        }
    }
}

/// Picks the first free final snapshot identifier: the instance's own manual snapshots are listed, and
/// the candidate is checked once more because snapshot names are shared by every instance in the region.
async fn choose_final_snapshot(client: &Client, identifier: &str) -> AwsResult<String> {
    let mut taken = manual_snapshot_ids(client, identifier).await?;
    for _ in 0..100 {
        let candidate = final_snapshot_identifier(identifier, &taken);
        if !snapshot_exists(client, &candidate).await? {
            return Ok(candidate);
        }
        taken.push(candidate);
    }
    Err(AwsError::other("DescribeDBSnapshots", format!("no free final snapshot name for {identifier} after 100 tries")))
}

async fn wait_gone(client: &Client, identifier: &str, timeout: Duration) -> AwsResult<()> {
    let what = format!("RDS instance {identifier} to be deleted");
    wait_until(&what, timeout, POLL_INTERVAL, || current_status(client, identifier), decide_gone).await
}

fn deletion_protected(identifier: &str) -> AwsError {
    AwsError::other(
        "DeleteDBInstance",
        format!(
            "database {identifier} has deletion protection on; set database.deletion_protection = false and apply \
             first, then destroy"
        ),
    )
}

/// Deletes the instance, taking a final snapshot named by [`final_snapshot_identifier`] unless
/// `skip_final_snapshot`, keeping automated backups, and waits until it is gone. Refuses while deletion
/// protection is on (never switches it off itself). A busy instance is first awaited, since RDS cannot
/// snapshot it. Absent is success (no snapshot); one already being deleted is awaited (its snapshot name
/// is not known then). May be called again after a crash.
pub async fn delete_instance(
    client: &Client,
    identifier: &str,
    skip_final_snapshot: bool,
    timeout: Duration,
) -> AwsResult<DeleteOutcome> {
    let deadline = super::deadline_after(timeout);
    let none = DeleteOutcome { final_snapshot: None };
    let Some(db) = describe_raw(client, identifier).await? else { return Ok(none) };
    let status = db.db_instance_status().unwrap_or_default().to_string();
    if status == "deleting" {
        wait_gone(client, identifier, remaining(deadline)).await?;
        return Ok(none);
    }
    if db.deletion_protection() == Some(true) {
        return Err(deletion_protected(identifier));
    }
    if assess_status(&status) == WaitDecision::Wait {
        wait_available(client, identifier, remaining(deadline), POLL_INTERVAL).await?;
    }
    let final_snapshot =
        if skip_final_snapshot { None } else { Some(choose_final_snapshot(client, identifier).await?) };
    let deleted = client
        .delete_db_instance()
        .db_instance_identifier(identifier)
        .skip_final_snapshot(skip_final_snapshot)
        .set_final_db_snapshot_identifier(final_snapshot.clone())
        .delete_automated_backups(false)
        .send()
        .await;
    if let Err(err) = deleted {
        let err = AwsError::from_sdk("DeleteDBInstance", err);
        return if err.is(&["DBInstanceNotFound", "DBInstanceNotFoundFault"]) { Ok(none) } else { Err(err) };
    }
    wait_gone(client, identifier, remaining(deadline)).await?;
    Ok(DeleteOutcome { final_snapshot })
}

/// A DB subnet group as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetGroupObservation {
    /// Its ARN.
    pub arn: String,
    /// Its subnets.
    pub subnet_ids: Vec<String>,
    /// Its tags, which say whose it is.
    pub tags: BTreeMap<String, String>,
}

/// The DB subnet group with its tags; `None` when it does not exist.
pub async fn describe_subnet_group(client: &Client, name: &str) -> AwsResult<Option<SubnetGroupObservation>> {
    let Some(group) = find_subnet_group(client, name).await? else { return Ok(None) };
    let arn = group.db_subnet_group_arn().unwrap_or_default().to_string();
    let tags = resource_tags(client, &arn).await?;
    let subnet_ids = group.subnets().iter().filter_map(|s| s.subnet_identifier().map(str::to_string)).collect();
    Ok(Some(SubnetGroupObservation { arn, subnet_ids, tags }))
}

/// The DB parameter group family of an engine and version: `mariadb` `10.11.9` is `mariadb10.11`.
pub fn parameter_group_family(engine: &str, version: &str) -> String {
    let major_minor: Vec<&str> = version.split('.').take(2).collect();
    format!("{engine}{}", major_minor.join("."))
}

/// A DB parameter group as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterGroupObservation {
    /// Its ARN.
    pub arn: String,
    /// Its family, e.g. `mariadb10.11`.
    pub family: String,
    /// The parameters set in it, among those asked about.
    pub parameters: BTreeMap<String, String>,
    /// Its tags, which say whose it is.
    pub tags: BTreeMap<String, String>,
}

/// The parameter group with the values of `wanted`'s parameters and its tags; `None` when it does not
/// exist. Reads only.
pub async fn describe_parameter_group(
    client: &Client,
    name: &str,
    wanted: &BTreeMap<String, String>,
) -> AwsResult<Option<ParameterGroupObservation>> {
    let out = match client.describe_db_parameter_groups().db_parameter_group_name(name).send().await {
        Ok(out) => out,
        Err(err) => {
            let err = AwsError::from_sdk("DescribeDBParameterGroups", err);
            return if err.is(&["DBParameterGroupNotFound", "DBParameterGroupNotFoundFault"]) {
                Ok(None)
            } else {
                Err(err)
            };
        }
    };
    let Some(group) = out.db_parameter_groups().first() else { return Ok(None) };
    let arn = group.db_parameter_group_arn().unwrap_or_default().to_string();
    let (parameters, tags) = tokio::try_join!(parameter_values(client, name, wanted), resource_tags(client, &arn))?;
    Ok(Some(ParameterGroupObservation {
        family: group.db_parameter_group_family().unwrap_or_default().to_string(),
        parameters,
        tags,
        arn,
    }))
}

/// The values the group sets for `wanted`'s parameters; asked about none, it sends no request.
async fn parameter_values(
    client: &Client,
    name: &str,
    wanted: &BTreeMap<String, String>,
) -> AwsResult<BTreeMap<String, String>> {
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let described = client
        .describe_db_parameters()
        .db_parameter_group_name(name)
        .source("user")
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeDBParameters", e))?;
    Ok(described
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_name()?.to_string(), p.parameter_value()?.to_string())))
        .filter(|(name, _)| wanted.contains_key(name))
        .collect())
}

async fn resource_tags(client: &Client, arn: &str) -> AwsResult<BTreeMap<String, String>> {
    let out = client
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTagsForResource", e))?;
    Ok(super::tag_map(out.tag_list().iter().map(|t| (t.key(), t.value()))))
}

/// How the parameter group differs from what the stack sets (empty when it matches).
pub fn parameter_group_drift(
    family: &str,
    parameters: &BTreeMap<String, String>,
    found: &ParameterGroupObservation,
) -> Vec<String> {
    let mut drift = Vec::new();
    if found.family != family {
        drift.push(format!("family is {}, expected {family}", found.family));
    }
    for (name, value) in parameters {
        match found.parameters.get(name) {
            Some(have) if have == value => {}
            Some(have) => drift.push(format!("parameter {name} is {have}, expected {value}")),
            None => drift.push(format!("parameter {name} is not set, expected {value}")),
        }
    }
    drift
}

/// Creates the parameter group (or adopts the one with this name), sets `parameters` in it (dynamic ones
/// apply at once) and its tags. A group of another family cannot be changed into this one: that is an
/// error naming what to do. May be called again after a crash; converges. Returns its ARN.
pub async fn ensure_parameter_group(
    client: &Client,
    name: &str,
    family: &str,
    description: &str,
    parameters: &BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<String> {
    let found = match describe_parameter_group(client, name, parameters).await? {
        Some(found) => found,
        None => {
            let created = client
                .create_db_parameter_group()
                .db_parameter_group_name(name)
                .db_parameter_group_family(family)
                .description(description)
                .set_tags(Some(tag_list(tags)))
                .send()
                .await;
            if let Err(err) = created {
                let err = AwsError::from_sdk("CreateDBParameterGroup", err);
                if !err.is(&["DBParameterGroupAlreadyExists", "DBParameterGroupAlreadyExistsFault"]) {
                    return Err(err);
                }
            }
            describe_parameter_group(client, name, parameters).await?.ok_or_else(|| {
                AwsError::other("CreateDBParameterGroup", format!("parameter group {name} vanished after its creation"))
            })?
        }
    };
    if found.family != family {
        return Err(AwsError::other(
            "ModifyDBParameterGroup",
            format!(
                "parameter group {name} is of family {}, but the database needs {family}: RDS cannot change a group's \
                 family (a major version upgrade); upgrade the engine outside the stack, or keep engine_version",
                found.family
            ),
        ));
    }
    let changes: Vec<aws_sdk_rds::types::Parameter> = parameters
        .iter()
        .filter(|(k, v)| found.parameters.get(*k) != Some(*v))
        .map(|(k, v)| {
            aws_sdk_rds::types::Parameter::builder()
                .parameter_name(k)
                .parameter_value(v)
                .apply_method(aws_sdk_rds::types::ApplyMethod::Immediate)
                .build()
        })
        .collect();
    if !changes.is_empty() {
        client
            .modify_db_parameter_group()
            .db_parameter_group_name(name)
            .set_parameters(Some(changes))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ModifyDBParameterGroup", e))?;
    }
    converge_tags(client, &found.arn, tags, Some(&found.tags)).await?;
    Ok(found.arn)
}

/// Deletes the parameter group; absent is success. RDS refuses while an instance uses it.
pub async fn delete_parameter_group(client: &Client, name: &str) -> AwsResult<()> {
    match client.delete_db_parameter_group().db_parameter_group_name(name).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteDBParameterGroup", err);
            if err.is(&["DBParameterGroupNotFound", "DBParameterGroupNotFoundFault"]) { Ok(()) } else { Err(err) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn spec() -> DatabaseSpec {
        DatabaseSpec {
            identifier: "vault-db".into(),
            instance_class: "db.t3.micro".into(),
            allocated_storage: 20,
            engine: "mariadb".into(),
            engine_version: "10.11".into(),
            parameter_group: "vault-db".into(),
            db_name: "datavault".into(),
            master_username: "datavault".into(),
            subnet_group: "vault-db".into(),
            security_group_ids: vec!["sg-db".into()],
            backup_retention_days: 7,
            deletion_protection: true,
            multi_az: false,
            kms_key: None,
            tags: BTreeMap::new(),
        }
    }

    fn matching() -> DatabaseObservation {
        DatabaseObservation {
            identifier: "vault-db".into(),
            arn: "arn:aws:rds:eu-west-2:1:db:vault-db".into(),
            status: "available".into(),
            endpoint: Some("vault-db.x.rds.amazonaws.com".into()),
            port: Some(3306),
            engine: "mariadb".into(),
            engine_version: "10.11.9".into(),
            parameter_group: Some("vault-db".into()),
            instance_class: "db.t3.micro".into(),
            allocated_storage: 20,
            publicly_accessible: false,
            storage_encrypted: true,
            backup_retention_days: 7,
            deletion_protection: true,
            multi_az: false,
            auto_minor_version_upgrade: true,
            copy_tags_to_snapshot: true,
            iam_database_authentication: true,
            log_exports: vec!["error".into(), "slowquery".into()],
            security_group_ids: vec!["sg-db".into()],
            subnet_group: Some("vault-db".into()),
            master_secret_arn: Some("arn:aws:secretsmanager:eu-west-2:1:secret:rds!db".into()),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn secret_string_never_shows_in_debug() {
        let password = MasterPassword::Given(SecretString::new("hunter2"));
        let printed = format!("{password:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn a_matching_instance_has_no_drift_and_needs_no_change() {
        assert!(drift(&spec(), &matching()).is_empty());
        assert!(plan_modification(&spec(), &matching(), true, false).unwrap().is_empty());
    }

    #[test]
    fn drift_reports_insecure_and_changed_settings() {
        let obs = DatabaseObservation {
            publicly_accessible: true,
            storage_encrypted: false,
            backup_retention_days: 0,
            deletion_protection: false,
            instance_class: "db.t3.small".into(),
            engine_version: "10.6.20".into(),
            parameter_group: Some("default.mariadb10.6".into()),
            security_group_ids: vec!["sg-other".into()],
            auto_minor_version_upgrade: false,
            ..matching()
        };
        let drift = drift(&spec(), &obs);
        for expected in [
            "publicly accessible",
            "storage is not encrypted",
            "instance class is db.t3.small, expected db.t3.micro",
            "engine version is 10.6.20, expected 10.11",
            "parameter group is default.mariadb10.6, expected vault-db",
            "backup retention is 0 days, expected 7",
            "deletion protection is off, expected on",
            "security groups are [sg-other], expected [sg-db]",
            "automatic minor version upgrades are off",
        ] {
            assert!(drift.iter().any(|d| d == expected), "missing {expected:?} in {drift:?}");
        }
    }

    #[test]
    fn engine_version_matches_by_major_minor_prefix() {
        assert!(same_major_minor("8.0.40", "8.0"));
        assert!(same_major_minor("8.0", "8.0"));
        assert!(!same_major_minor("8.0.40", "8.4"));
        assert!(!same_major_minor("8.01", "8.0"));
    }

    #[test]
    fn plan_changes_only_what_differs_and_never_public_access_or_encryption() {
        let obs = DatabaseObservation {
            instance_class: "db.t3.small".into(),
            allocated_storage: 10,
            multi_az: true,
            publicly_accessible: true,
            storage_encrypted: false,
            ..matching()
        };
        let change = plan_modification(&spec(), &obs, true, false).unwrap();
        assert_eq!(
            change,
            Modification {
                instance_class: Some("db.t3.micro".into()),
                allocated_storage: Some(20),
                multi_az: Some(false),
                ..Modification::default()
            }
        );
    }

    #[test]
    fn plan_refuses_to_change_the_engine() {
        let obs = DatabaseObservation { engine: "mysql".into(), ..matching() };
        let err = plan_modification(&spec(), &obs, false, false).unwrap_err();
        assert!(err.contains("cannot change the engine"), "{err}");
    }

    #[test]
    fn parameter_groups_follow_engine_and_version() {
        assert_eq!(parameter_group_family("mariadb", "10.11.9"), "mariadb10.11");
        assert_eq!(parameter_group_family("mariadb", "11.4"), "mariadb11.4");
        assert_eq!(parameter_group_family("mysql", "5.7.44"), "mysql5.7");
        let wanted = BTreeMap::from([("character_set_server".to_string(), "utf8mb4".to_string())]);
        let found = ParameterGroupObservation {
            arn: "arn".into(),
            family: "mariadb10.6".into(),
            parameters: BTreeMap::from([("character_set_server".to_string(), "latin1".to_string())]),
            tags: BTreeMap::new(),
        };
        assert_eq!(
            parameter_group_drift("mariadb10.11", &wanted, &found),
            vec![
                "family is mariadb10.6, expected mariadb10.11",
                "parameter character_set_server is latin1, expected utf8mb4"
            ]
        );
    }

    #[test]
    fn plan_refuses_to_shrink_storage() {
        let obs = DatabaseObservation { allocated_storage: 50, ..matching() };
        let err = plan_modification(&spec(), &obs, true, false).unwrap_err();
        assert!(err.contains("cannot shrink") && err.contains("at least 50"), "{err}");
    }

    #[test]
    fn plan_switches_password_management_only_when_needed() {
        let unmanaged = DatabaseObservation { master_secret_arn: None, ..matching() };
        assert_eq!(plan_modification(&spec(), &unmanaged, true, false).unwrap().manage_master_password, Some(true));
        assert_eq!(plan_modification(&spec(), &unmanaged, false, true).unwrap().manage_master_password, None);
        assert_eq!(plan_modification(&spec(), &unmanaged, false, false).unwrap().manage_master_password, None);
        assert_eq!(plan_modification(&spec(), &matching(), false, true).unwrap().manage_master_password, Some(false));
        assert_eq!(plan_modification(&spec(), &matching(), false, false).unwrap().manage_master_password, None);
    }

    #[test]
    fn plan_restores_secure_defaults() {
        let obs = DatabaseObservation {
            auto_minor_version_upgrade: false,
            copy_tags_to_snapshot: false,
            iam_database_authentication: false,
            ..matching()
        };
        let change = plan_modification(&spec(), &obs, true, false).unwrap();
        assert_eq!(change.auto_minor_version_upgrade, Some(true));
        assert_eq!(change.copy_tags_to_snapshot, Some(true));
        assert_eq!(change.iam_database_authentication, Some(true));
    }

    #[test]
    fn log_exports_are_published_and_others_stopped() {
        let none = DatabaseObservation { log_exports: vec![], ..matching() };
        assert_eq!(
            plan_modification(&spec(), &none, false, false).unwrap().log_exports,
            Some((vec!["error".to_string(), "slowquery".to_string()], vec![]))
        );
        assert!(drift(&spec(), &none).iter().any(|d| d.starts_with("logs published to CloudWatch Logs are []")));
        let general = DatabaseObservation {
            log_exports: vec!["error".into(), "general".into(), "slowquery".into()],
            ..matching()
        };
        assert_eq!(
            plan_modification(&spec(), &general, false, false).unwrap().log_exports,
            Some((vec![], vec!["general".to_string()]))
        );
        assert_eq!(plan_modification(&spec(), &matching(), false, false).unwrap().log_exports, None);
        assert!(drift(&spec(), &matching()).is_empty(), "{:?}", drift(&spec(), &matching()));
    }

    #[test]
    fn security_group_comparison_ignores_order() {
        assert!(!subnets_differ(&["b".into(), "a".into()], &["a".into(), "b".into()]));
        assert!(subnets_differ(&["a".into()], &["a".into(), "b".into()]));
    }

    #[test]
    fn statuses_decide_the_wait() {
        assert_eq!(assess_status("available"), WaitDecision::Done);
        for status in [
            "creating",
            "modifying",
            "backing-up",
            "configuring-enhanced-monitoring",
            "upgrading",
            "storage-optimization",
            "rebooting",
            "resetting-master-credentials",
            "some-future-status",
        ] {
            assert_eq!(assess_status(status), WaitDecision::Wait, "{status}");
        }
        for status in [
            "failed",
            "incompatible-network",
            "incompatible-parameters",
            "inaccessible-encryption-credentials",
            "storage-full",
            "stopped",
        ] {
            assert!(matches!(assess_status(status), WaitDecision::Fail(m) if m.contains(status)), "{status}");
        }
        assert!(matches!(assess_status("storage-full"), WaitDecision::Fail(m) if m.contains("allocated_storage")));
    }

    #[test]
    fn final_snapshot_names_are_deterministic_and_skip_taken_ones() {
        assert_eq!(final_snapshot_identifier("vault-db", &[]), "vault-db-final");
        let taken = vec!["vault-db-final".to_string(), "other-final".to_string()];
        assert_eq!(final_snapshot_identifier("vault-db", &taken), "vault-db-final-2");
        let taken = vec!["Vault-DB-Final".to_string(), "vault-db-final-2".to_string(), "vault-db-final-4".to_string()];
        assert_eq!(final_snapshot_identifier("vault-db", &taken), "vault-db-final-3");
        assert_eq!(final_snapshot_identifier("Vault-DB", &[]), "vault-db-final");
    }

    fn recorded(statuses: &[Option<&str>]) -> impl FnMut() -> std::future::Ready<AwsResult<Option<String>>> {
        let mut queue: VecDeque<Option<String>> = statuses.iter().map(|s| s.map(str::to_string)).collect();
        move || {
            // The last recorded status repeats forever, as a stuck instance would.
            let next = if queue.len() > 1 { queue.pop_front().flatten() } else { queue.front().cloned().flatten() };
            std::future::ready(Ok(next))
        }
    }

    #[tokio::test]
    async fn waiting_follows_a_recorded_creation_to_available() {
        let statuses = [Some("creating"), Some("backing-up"), Some("modifying"), Some("available")];
        wait_until("db", Duration::from_secs(5), Duration::ZERO, recorded(&statuses), decide_available).await.unwrap();
    }

    #[tokio::test]
    async fn waiting_fails_fast_on_a_dead_end_status() {
        let statuses = [Some("creating"), Some("incompatible-parameters")];
        let err = wait_until("db x", Duration::from_secs(5), Duration::ZERO, recorded(&statuses), decide_available)
            .await
            .unwrap_err();
        assert!(err.message.contains("db x") && err.message.contains("incompatible-parameters"), "{err}");
        let err = wait_until("db y", Duration::from_secs(5), Duration::ZERO, recorded(&[None]), decide_available)
            .await
            .unwrap_err();
        assert!(err.message.contains("does not exist"), "{err}");
    }

    #[tokio::test]
    async fn waiting_gives_up_at_the_timeout_naming_the_last_status() {
        let started = tokio::time::Instant::now();
        let err = wait_until(
            "db z",
            Duration::from_millis(40),
            Duration::from_millis(5),
            recorded(&[Some("modifying")]),
            decide_available,
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(
            err.message.contains("timed out") && err.message.contains("db z") && err.message.contains("modifying"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn waiting_for_deletion_ends_when_the_instance_is_gone() {
        let statuses = [Some("deleting"), Some("deleting"), None];
        wait_until("db", Duration::from_secs(5), Duration::ZERO, recorded(&statuses), decide_gone).await.unwrap();
        let err = wait_until(
            "db w",
            Duration::from_millis(20),
            Duration::from_millis(5),
            recorded(&[Some("deleting")]),
            decide_gone,
        )
        .await
        .unwrap_err();
        assert!(err.message.contains("deleting"), "{err}");
    }
}
