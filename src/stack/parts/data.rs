//! Data parts: the EFS file system (RabbitMQ's data and the shared /tmp/datavault working folder) with its
//! mount targets and access points, and the database with its subnet group and parameter group.
//!
//! The database's master password lives in the stack's secret `<stack>/database`, where the services read
//! it when they start. It changes only when the configuration says so (a new `password_wo_version`):
//! RDS gets the new password first, then the secret, so a failure in between leaves the version unrecorded
//! and the next apply sets it again. Nothing rotates it behind the running services' back.

use crate::aws;
use crate::aws::efs::AccessPointSpec;
use crate::aws::rds::{DatabaseSpec, MasterPassword, SecretString};
use std::collections::BTreeMap;

use super::network::zone_subnet_ids;
use super::{AccessPointKind, DatabaseFacts, Group, Part, PartContext, PartResult, PartState, PasswordChange, Removal};

/// The data parts: the file system with its mount targets and access points, and the database with its
/// subnet and parameter groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPart {
    /// [`Part::FileSystem`].
    FileSystem,
    /// [`Part::MountTargets`].
    MountTargets,
    /// [`Part::AccessPoint`].
    AccessPoint(AccessPointKind),
    /// [`Part::DbSubnetGroup`].
    DbSubnetGroup,
    /// [`Part::DbParameterGroup`].
    DbParameterGroup,
    /// [`Part::Database`].
    Database,
}

impl From<DataPart> for Part {
    fn from(part: DataPart) -> Part {
        match part {
            DataPart::FileSystem => Part::FileSystem,
            DataPart::MountTargets => Part::MountTargets,
            DataPart::AccessPoint(kind) => Part::AccessPoint(kind),
            DataPart::DbSubnetGroup => Part::DbSubnetGroup,
            DataPart::DbParameterGroup => Part::DbParameterGroup,
            DataPart::Database => Part::Database,
        }
    }
}

/// The database name and master user the DataVault images expect.
const DATABASE_USER: &str = "datavault";

/// The file system's creation token (its idempotency key).
pub fn creation_token(stack: &str) -> String {
    format!("datavault-{stack}")
}

/// What an access point exposes: a directory owned by the POSIX user every NFS call is made as.
pub fn access_point_spec(stack: &str, kind: AccessPointKind) -> AccessPointSpec {
    match kind {
        // The rabbitmq Alpine image runs as rabbitmq (uid 100, gid 101).
        AccessPointKind::Rabbitmq => AccessPointSpec {
            name: format!("{stack}-rabbitmq"),
            root_path: "/rabbitmq".into(),
            uid: 100,
            gid: 101,
            permissions: "0750".into(),
        },
        AccessPointKind::Working => AccessPointSpec {
            name: format!("{stack}-working"),
            root_path: "/datavault".into(),
            uid: 1000,
            gid: 1000,
            permissions: "0770".into(),
        },
    }
}

/// The database's parameter group.
pub fn parameter_group_name(stack: &str) -> String {
    format!("{stack}-db")
}

/// What the stack sets in the parameter group: utf8mb4 throughout, with a collation the images' MySQL
/// driver knows (MariaDB's default character set is latin1); the slow query log on, written to a file,
/// since RDS publishes file logs to CloudWatch Logs and never a `TABLE` log.
fn database_parameters() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("character_set_server".to_string(), "utf8mb4".to_string()),
        ("collation_server".to_string(), "utf8mb4_unicode_ci".to_string()),
        ("slow_query_log".to_string(), "1".to_string()),
        ("log_output".to_string(), "FILE".to_string()),
    ])
}

fn parameter_group_family(ctx: &PartContext<'_>) -> String {
    aws::rds::parameter_group_family(&ctx.spec.database.engine, &ctx.spec.database.engine_version)
}

fn database_spec(ctx: &PartContext<'_>) -> PartResult<DatabaseSpec> {
    let d = &ctx.spec.database;
    Ok(DatabaseSpec {
        identifier: ctx.spec.name.clone(),
        instance_class: d.instance_class.clone(),
        allocated_storage: d.allocated_storage as i32,
        engine: d.engine.clone(),
        engine_version: d.engine_version.clone(),
        parameter_group: parameter_group_name(&ctx.spec.name),
        db_name: DATABASE_USER.into(),
        master_username: DATABASE_USER.into(),
        subnet_group: ctx.spec.name.clone(),
        security_group_ids: vec![ctx.id_of(Part::SecurityGroup(Group::Database))?.to_string()],
        backup_retention_days: d.backup_retention_days as i32,
        deletion_protection: d.deletion_protection,
        multi_az: d.multi_az,
        kms_key: ctx.spec.kms_key_arn.clone(),
        tags: ctx.tags(Part::Database),
    })
}

fn database_state(identifier: &str, arn: String, endpoint: Option<String>) -> PartState {
    PartState { id: Some(identifier.to_string()), arn: Some(arn), url: endpoint, ..PartState::default() }
}

/// Ensures a data part, waiting until it is usable.
pub async fn ensure(part: DataPart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    let timeout = spec.timeouts.create;
    match part {
        DataPart::FileSystem => {
            let (token, key, tags) = (creation_token(&spec.name), spec.kms_key_arn.as_deref(), ctx.tags(part.into()));
            let fs = aws::efs::ensure_file_system(&aws.efs, &token, key, &tags, timeout).await?;
            Ok(PartState { id: Some(fs.id), arn: Some(fs.arn), ..PartState::default() })
        }
        DataPart::MountTargets => {
            let fs_id = ctx.id_of(Part::FileSystem)?;
            let group = ctx.id_of(Part::SecurityGroup(Group::FileSystem))?;
            let targets =
                aws::efs::ensure_mount_targets(&aws.efs, fs_id, &zone_subnet_ids(ctx)?, group, timeout).await?;
            tracing::debug!(file_system = %fs_id, mount_targets = targets.len(), "mount targets ready");
            Ok(PartState::with_id(fs_id))
        }
        DataPart::AccessPoint(kind) => {
            let fs_id = ctx.id_of(Part::FileSystem)?;
            let point = aws::efs::ensure_access_point(
                &aws.efs,
                fs_id,
                &access_point_spec(&spec.name, kind),
                &ctx.tags(part.into()),
            )
            .await?;
            Ok(PartState { id: Some(point.id), arn: Some(point.arn), ..PartState::default() })
        }
        DataPart::DbSubnetGroup => {
            let subnets = ctx.subnet_ids()?;
            let arn = aws::rds::ensure_subnet_group(
                &aws.rds,
                &spec.name,
                "DataVault database subnets",
                &subnets,
                &ctx.tags(part.into()),
            )
            .await?;
            Ok(PartState { arn: Some(arn).filter(|a| !a.is_empty()), ..PartState::with_id(&spec.name) })
        }
        DataPart::DbParameterGroup => {
            let arn = aws::rds::ensure_parameter_group(
                &aws.rds,
                &parameter_group_name(&spec.name),
                &parameter_group_family(ctx),
                "DataVault database: utf8mb4",
                &database_parameters(),
                &ctx.tags(part.into()),
            )
            .await?;
            Ok(PartState { arn: Some(arn), ..PartState::with_id(parameter_group_name(&spec.name)) })
        }
        DataPart::Database => ensure_database(ctx).await,
    }
}

/// Creates or converges the database, setting the master password when it is created, when the
/// configuration changes it, and when RDS still manages it (a stack made by an earlier version).
async fn ensure_database(ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    let timeout = spec.timeouts.create;
    let db_spec = database_spec(ctx)?;
    let secret = ctx.arn_of(Part::DatabaseSecret)?;
    let mut existing = aws::rds::describe_instance(&aws.rds, &db_spec.identifier).await?;
    // RDS refuses changes while an instance is busy (e.g. still creating after an interrupted apply).
    if existing.as_ref().is_some_and(|db| db.status != "available") {
        aws::rds::wait_available(&aws.rds, &db_spec.identifier, timeout, aws::rds::POLL_INTERVAL).await?;
        existing = aws::rds::describe_instance(&aws.rds, &db_spec.identifier).await?;
    }
    let managed_by_rds = existing.as_ref().is_some_and(|db| db.master_secret_arn.is_some());
    let new_password = match ctx.passwords.database {
        PasswordChange::Set(given) => Some(given.to_string()),
        PasswordChange::Generate => Some(aws::secretsmanager::random_password(&aws.secrets).await?),
        PasswordChange::Keep => None,
    };
    let send = existing.is_none() || new_password.is_some() || managed_by_rds;
    // Only read the secret when RDS needs the password; otherwise nothing is sent.
    let password = match (&new_password, send) {
        (Some(password), _) => SecretString::new(password.clone()),
        (None, true) => SecretString::new(aws::secretsmanager::secret_value(&aws.secrets, secret).await?),
        (None, false) => SecretString::new(String::new()),
    };
    aws::rds::ensure_instance(&aws.rds, &db_spec, &MasterPassword::Given(password), send).await?;
    if let Some(password) = &new_password {
        aws::secretsmanager::put_secret_value(&aws.secrets, secret, password).await?;
    }
    let db = aws::rds::wait_available(&aws.rds, &db_spec.identifier, timeout, aws::rds::POLL_INTERVAL).await?;
    Ok(database_state(&db.identifier, db.arn, db.endpoint))
}

/// Observes a data part.
pub async fn observe(part: DataPart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        DataPart::FileSystem => {
            let Some(found) = file_system(ctx).await? else { return Ok(None) };
            let fs = if ctx.judges_drift() {
                aws::efs::observe_file_system(&aws.efs, &found).await?
            } else {
                aws::efs::FileSystemObservation::described(&found)
            };
            Ok(Some(PartState {
                id: Some(fs.id),
                arn: Some(fs.arn),
                drift: fs.drift,
                tags: Some(fs.tags),
                ..PartState::default()
            }))
        }
        DataPart::MountTargets => observe_mount_targets(ctx).await,
        DataPart::AccessPoint(kind) => {
            let Some(fs) = file_system(ctx).await? else { return Ok(None) };
            let fs_id = fs.file_system_id();
            let wanted = access_point_spec(&spec.name, kind);
            let found = match ctx.reads {
                Some(reads) => reads.access_point(ctx, fs_id, &wanted).await?,
                None => aws::efs::describe_access_point(&aws.efs, fs_id, &wanted).await?,
            };
            if !ctx.is_own(Part::FileSystem, fs_id).await {
                return Ok(None);
            }
            Ok(found.map(|p| PartState {
                id: Some(p.id),
                arn: Some(p.arn),
                drift: p.drift,
                tags: Some(p.tags),
                ..PartState::default()
            }))
        }
        DataPart::DbSubnetGroup => Ok(aws::rds::describe_subnet_group(&aws.rds, &spec.name)
            .await?
            .map(|group| PartState { arn: Some(group.arn), tags: Some(group.tags), ..PartState::with_id(&spec.name) })),
        DataPart::DbParameterGroup => observe_parameter_group(ctx).await,
        DataPart::Database => observe_database(ctx).await,
    }
}

/// The file system under the stack's creation token, whoever owns it, through the survey's shared read
/// when there is one. Its mount targets and access points are looked up as soon as it is found, and count
/// only once it has proven to be the stack's own ([`PartContext::is_own`]).
async fn file_system(ctx: &PartContext<'_>) -> PartResult<Option<aws_sdk_efs::types::FileSystemDescription>> {
    match ctx.reads {
        Some(reads) => reads.file_system(ctx).await,
        None => Ok(aws::efs::describe_by_token(&ctx.aws.efs, &creation_token(&ctx.spec.name)).await?),
    }
}

/// The mount targets, with a subnet of the stack's that has none and targets outside the file system's
/// security group as drift.
async fn observe_mount_targets(ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let Some(fs) = file_system(ctx).await? else { return Ok(None) };
    let fs_id = fs.file_system_id().to_string();
    let targets = aws::efs::describe_mount_targets(&ctx.aws.efs, &fs_id).await?;
    if targets.is_empty() || !ctx.is_own(Part::FileSystem, &fs_id).await {
        return Ok(None);
    }
    let dependencies = ctx.dependencies(Part::MountTargets).await;
    let ctx = &ctx.with(&dependencies);
    let mut state = PartState::with_id(fs_id);
    if let Ok(wanted) = zone_subnet_ids(ctx) {
        let missing = wanted.iter().filter(|s| !targets.iter().any(|t| &t.subnet_id == *s));
        state.drift.extend(missing.map(|s| format!("no mount target in subnet {s}")));
    }
    if let Ok(group) = ctx.id_of(Part::SecurityGroup(Group::FileSystem)) {
        let strays = targets.iter().filter(|t| t.security_groups != [group.to_string()]);
        state
            .drift
            .extend(strays.map(|t| format!("mount target {} has security groups {:?}", t.id, t.security_groups)));
    }
    Ok(Some(state))
}

async fn observe_parameter_group(ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let name = parameter_group_name(&ctx.spec.name);
    // Without drift to judge, only whose the group is matters: no parameter is asked about.
    let parameters = if ctx.judges_drift() { database_parameters() } else { BTreeMap::new() };
    let Some(found) = aws::rds::describe_parameter_group(&ctx.aws.rds, &name, &parameters).await? else {
        return Ok(None);
    };
    Ok(Some(PartState {
        arn: Some(found.arn.clone()),
        drift: aws::rds::parameter_group_drift(&parameter_group_family(ctx), &parameters, &found),
        tags: Some(found.tags),
        ..PartState::with_id(name)
    }))
}

/// The database, its drift, and its settings as the configuration says them (what a refresh records
/// where the configuration left them to the provider, and what an import reads back).
async fn observe_database(ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let Some(found) = aws::rds::describe_instance(&ctx.aws.rds, &ctx.spec.name).await? else { return Ok(None) };
    let mut state = database_state(&found.identifier, found.arn.clone(), found.endpoint.clone());
    state.tags = Some(found.tags.clone());
    let dependencies = ctx.dependencies(Part::Database).await;
    if let Ok(db_spec) = database_spec(&ctx.with(&dependencies)) {
        state.drift = aws::rds::drift(&db_spec, &found);
    }
    if found.master_secret_arn.is_some() {
        state.drift.push("the master password is managed by RDS, expected the stack's secret".into());
    }
    state.facts.database = Some(DatabaseFacts {
        instance_class: found.instance_class.clone(),
        allocated_storage: found.allocated_storage.into(),
        engine: found.engine.clone(),
        engine_version: found.engine_version.split('.').take(2).collect::<Vec<_>>().join("."),
        backup_retention_days: found.backup_retention_days.into(),
        deletion_protection: found.deletion_protection,
        multi_az: found.multi_az,
    });
    Ok(Some(state))
}

/// Removes a data part. The database keeps a final snapshot unless told otherwise; deletion protection
/// stops the destroy with a clear message.
pub async fn remove(part: DataPart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    let timeout = spec.timeouts.delete;
    let observed_id = ctx.parts.get(&Part::from(part)).and_then(|s| s.id.clone());
    match part {
        DataPart::FileSystem => {
            if let Some(fs_id) = observed_id {
                aws::efs::delete_file_system(&aws.efs, &fs_id, timeout).await?;
            }
        }
        DataPart::MountTargets => {
            if let Some(fs_id) = observed_id {
                aws::efs::delete_mount_targets(&aws.efs, &fs_id, timeout).await?;
            }
        }
        DataPart::AccessPoint(_) => {
            if let Some(id) = observed_id {
                aws::efs::delete_access_point(&aws.efs, &id).await?;
            }
        }
        DataPart::DbSubnetGroup => aws::rds::delete_subnet_group(&aws.rds, &spec.name).await?,
        DataPart::DbParameterGroup => {
            aws::rds::delete_parameter_group(&aws.rds, &parameter_group_name(&spec.name)).await?
        }
        DataPart::Database => {
            let outcome =
                aws::rds::delete_instance(&aws.rds, &spec.name, spec.database.skip_final_snapshot, timeout).await?;
            if let Some(snapshot) = outcome.final_snapshot {
                return Ok(Removal::RemovedWithNote(format!(
                    "The database {} was deleted after a final snapshot, {snapshot}, which is kept. Restore it with \
                     `aws rds restore-db-instance-from-db-snapshot`, or delete it once it is no longer needed.",
                    spec.name
                )));
            }
        }
    }
    Ok(Removal::Removed)
}
