//! The parts of a stack, on one screen: what each part is, what it depends on, and where its ensure,
//! observe and remove live.
//!
//! Most parts belong to every stack; the public entry point (the load balancer's security group, the load
//! balancer, its target group and listeners) only to a stack whose spec asks for one. [`Part::wanted_by`] is
//! what a spec wants; [`Part::possible`] is everything a stack may have, which read and destroy look for, so
//! a part left by an interrupted apply or by a removed setting is found and never orphaned.
//!
//! Every operation may be called again after a crash and must converge: ensure finds the part by its
//! deterministic name and adopts it before creating anything; remove treats "already gone" as done.
//! Ensure receives the outputs of the parts it depends on. Observe asks for them itself
//! ([`PartContext::dependencies`]) after its own lookups, so a survey's requests do not queue behind the
//! graph. Remove receives what a refresh just observed of every part, because a backward walk runs before
//! the parts it would otherwise read.
//!
//! Adding a part: a variant of [`Part`] with its name in [`Part::key`], its edges in [`Part::depends_on`]
//! (each one that costs time says why), its wait in [`Part::typical_seconds`] and its family in
//! [`Part::family`]; a variant of that family's enum, whose module gives it an ensure, an observe and a
//! remove; a row in [`super::outputs`] if an attribute reports it; when it holds data, a check in
//! [`super::guard`] before anything deletes it; and, when it carries tags, a way to take them off in
//! [`untag::remove_tags`]. The compiler points at every match that needs the variant.

mod compute;
mod data;
mod entry;
mod identity;
mod network;
mod reads;
mod services;
pub(crate) mod storage;
pub mod untag;
mod wiring;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::aws::{AwsContext, AwsError};

use super::model::{COMPONENTS, StackSpec, namespace_name, repository_name};
use super::ownership::{Conflict, Owner};
use super::service::Service;

pub use compute::ComputePart;
pub use data::DataPart;
pub use entry::{EntryPart, WEB_PATH};
pub use identity::IdentityPart;
pub use network::{NetworkPart, WEB_PORT};
pub use reads::SharedReads;
pub use services::{ServicesPart, dns_name};
pub use storage::{StoragePart, archive_not_empty_message};
pub use wiring::{RABBITMQ_IMAGE, SOURCE_BRANCH, SOURCE_COMMIT, SOURCE_REPOSITORY};

/// A security group of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// The EC2 container instances.
    Instances,
    /// The awsvpc tasks of the four services.
    Services,
    /// The database: 3306 from services and instances only.
    Database,
    /// The file system: 2049 from services and instances only.
    FileSystem,
    /// The public load balancer: web ports from the allowed CIDR blocks, out to web's 8080 only.
    LoadBalancer,
}

/// An EFS access point of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessPointKind {
    /// RabbitMQ's data directory.
    Rabbitmq,
    /// The /tmp/datavault working folder shared by broker and workers.
    Working,
}

/// One part of the stack. Repositories are indexed into [`COMPONENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The VPC and subnets (looked up, never created).
    Network,
    /// A security group with its rules.
    SecurityGroup(Group),
    /// The S3 gateway endpoint that lets the tasks (which have no public address) reach the archive.
    S3Endpoint,
    /// The S3 bucket the archive bucket's server access logs go to.
    AccessLogBucket,
    /// The S3 bucket for archived research data.
    ArchiveBucket,
    /// The S3 bucket for Terraform state (never deleted).
    StateBucket,
    /// An ECR repository.
    Repository(usize),
    /// The CloudWatch log group.
    LogGroup,
    /// The container instances' role and instance profile.
    InstanceRole,
    /// The tasks' execution role (image pulls, logs, secrets).
    ExecutionRole,
    /// A service's task role: ECS Exec, its folder on the file system, and for workers the archive bucket.
    TaskRole(Service),
    /// The generated RabbitMQ password.
    RabbitmqSecret,
    /// The database's master password (generated, or the write-only one), for RDS and the services.
    DatabaseSecret,
    /// The EFS file system.
    FileSystem,
    /// One EFS mount target per availability zone.
    MountTargets,
    /// An EFS access point.
    AccessPoint(AccessPointKind),
    /// The RDS subnet group.
    DbSubnetGroup,
    /// The database's parameter group (utf8mb4).
    DbParameterGroup,
    /// The MySQL database.
    Database,
    /// The ECS cluster.
    Cluster,
    /// The instances' launch template.
    LaunchTemplate,
    /// The Auto Scaling group of container instances.
    AutoScalingGroup,
    /// The private DNS namespace.
    Namespace,
    /// A Cloud Map service (web, broker, rabbitmq).
    Discovery(Service),
    /// A task definition.
    TaskDefinition(Service),
    /// An ECS service.
    Service(Service),
    /// The public Application Load Balancer in front of web (optional).
    LoadBalancer,
    /// The load balancer's target group, in which ECS registers web's tasks (optional).
    TargetGroup,
    /// The load balancer's listeners: HTTPS plus a redirect from HTTP, or plain HTTP (optional).
    Listeners,
}

/// A part as one of its family's, which is what that family's module ensures, observes and removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The VPC and subnets, the security groups and the S3 endpoint.
    Network(NetworkPart),
    /// The buckets, the ECR repositories and the log groups.
    Storage(StoragePart),
    /// The IAM roles and the secrets.
    Identity(IdentityPart),
    /// The file system and the database, with what they need.
    Data(DataPart),
    /// The cluster and its container instances.
    Compute(ComputePart),
    /// Service discovery, the task definitions and the ECS services.
    Services(ServicesPart),
    /// The optional public entry point, but for its security group.
    Entry(EntryPart),
}

/// The parts of the optional public entry point, in creation order.
pub const ENTRY_PARTS: [Part; 4] =
    [Part::SecurityGroup(Group::LoadBalancer), Part::LoadBalancer, Part::TargetGroup, Part::Listeners];

impl Part {
    /// Every part this spec wants: the parts of every stack, plus the entry point when it asks for one.
    pub fn wanted_by(spec: &StackSpec) -> Vec<Part> {
        Part::possible().into_iter().filter(|p| p.is_wanted(spec)).collect()
    }

    /// Whether the spec wants this part.
    pub fn is_wanted(self, spec: &StackSpec) -> bool {
        !ENTRY_PARTS.contains(&self) || spec.load_balancer.is_some()
    }

    /// Every part any stack may have, wanted or not: what read observes and destroy removes.
    pub fn possible() -> Vec<Part> {
        let mut parts = vec![Part::Network, Part::S3Endpoint];
        parts.extend([Group::Instances, Group::Services, Group::Database, Group::FileSystem].map(Part::SecurityGroup));
        parts.extend([Part::AccessLogBucket, Part::ArchiveBucket, Part::StateBucket, Part::LogGroup]);
        parts.extend((0..COMPONENTS.len()).map(Part::Repository));
        parts.extend([Part::InstanceRole, Part::ExecutionRole, Part::RabbitmqSecret, Part::DatabaseSecret]);
        parts.extend(Service::ALL.map(Part::TaskRole));
        parts.extend([Part::FileSystem, Part::MountTargets]);
        parts.extend([AccessPointKind::Rabbitmq, AccessPointKind::Working].map(Part::AccessPoint));
        parts.extend([
            Part::DbSubnetGroup,
            Part::DbParameterGroup,
            Part::Database,
            Part::Cluster,
            Part::LaunchTemplate,
            Part::AutoScalingGroup,
        ]);
        parts.push(Part::Namespace);
        parts.extend(Service::ALL.into_iter().filter(|s| s.is_discoverable()).map(Part::Discovery));
        parts.extend(Service::ALL.map(Part::TaskDefinition));
        parts.extend(Service::ALL.map(Part::Service));
        parts.extend(ENTRY_PARTS);
        parts
    }

    /// The parts this part needs before it can be ensured (and that must outlive it on delete).
    pub fn depends_on(self) -> Vec<Part> {
        use Part::*;
        match self {
            Network | AccessLogBucket | StateBucket | Repository(_) => vec![],
            // Its access logs go to the log bucket, which S3 checks when logging is turned on, and which
            // on delete must outlive it.
            ArchiveBucket => vec![AccessLogBucket],
            InstanceRole | RabbitmqSecret | DatabaseSecret | FileSystem | LogGroup | DbParameterGroup => vec![],
            // Exec sessions are recorded in the log group.
            Cluster => vec![LogGroup],
            // Its policies name the log group (exec sessions), the service's access point and, for workers,
            // the archive bucket, which on delete must outlive everything that writes to it.
            TaskRole(s) => {
                let mut deps = vec![LogGroup, FileSystem];
                deps.extend(wiring::access_points(s).into_iter().map(AccessPoint));
                if s.writes_archive() {
                    deps.push(ArchiveBucket);
                }
                deps
            }
            SecurityGroup(Group::Instances | Group::Services) | S3Endpoint => vec![Network],
            // Its egress names the services' group. The services' group admits it in turn, but cannot wait
            // for it (that would be a cycle): this part adds that rule, and the services' group keeps it.
            SecurityGroup(Group::LoadBalancer) => vec![Network, SecurityGroup(Group::Services)],
            // Their rules name the groups allowed in.
            SecurityGroup(Group::Database | Group::FileSystem) => {
                vec![Network, SecurityGroup(Group::Services), SecurityGroup(Group::Instances)]
            }
            // Its policy names the exact secrets the tasks may read.
            ExecutionRole => vec![DatabaseSecret, RabbitmqSecret],
            MountTargets => vec![FileSystem, SecurityGroup(Group::FileSystem), Network],
            AccessPoint(_) => vec![FileSystem],
            DbSubnetGroup => vec![Network],
            // Its master password comes from the secret, which must therefore exist first. Its logs go to
            // groups the log group part makes (one quick request before the database's long wait), and
            // which must outlive it on delete, or RDS would make them again, untagged.
            Database => {
                vec![DbSubnetGroup, DbParameterGroup, SecurityGroup(Group::Database), DatabaseSecret, LogGroup]
            }
            LaunchTemplate => vec![InstanceRole, SecurityGroup(Group::Instances), Cluster],
            AutoScalingGroup => vec![LaunchTemplate, Network],
            Namespace => vec![Network],
            Discovery(_) => vec![Namespace],
            TaskDefinition(s) => {
                let mut deps = vec![ExecutionRole, TaskRole(s), LogGroup, RabbitmqSecret, Namespace, FileSystem];
                // Only broker and workers are given the database's address and password. On delete this
                // holds the database (and its final snapshot) until their tasks have stopped, a stop timeout
                // at most: the snapshot then has their last writes, not a transaction cut off half way.
                if s.needs_database() {
                    deps.extend([Database, DatabaseSecret]);
                }
                deps.extend([AccessPointKind::Rabbitmq, AccessPointKind::Working].map(AccessPoint));
                deps.extend((0..COMPONENTS.len()).map(Repository));
                deps
            }
            // On delete the instances and mount targets outlive the tasks on them, so that RabbitMQ and the
            // broker stop with their files written rather than lose their host or their volume mid-write.
            Service(s) => {
                let mut deps = vec![
                    TaskDefinition(s),
                    Cluster,
                    SecurityGroup(Group::Services),
                    Network,
                    MountTargets,
                    AutoScalingGroup,
                ];
                if s.is_discoverable() {
                    deps.push(Discovery(s));
                }
                // ECS registers tasks only in a target group a load balancer forwards to; and on delete
                // the service lets go of the target group before the listeners and the group go.
                if s.faces_users() {
                    deps.extend([Listeners, TargetGroup]);
                }
                // Workers write to the archive through it, so it goes only after them.
                if s.writes_archive() {
                    deps.push(S3Endpoint);
                }
                deps
            }
            // Its access logs go to the log bucket, which must admit them first and outlive it.
            LoadBalancer => vec![SecurityGroup(Group::LoadBalancer), Network, AccessLogBucket],
            // Independent of the load balancer until the listeners join them, so both are made (and,
            // once the listeners are gone, deleted) side by side.
            TargetGroup => vec![Network],
            Listeners => vec![LoadBalancer, TargetGroup],
        }
    }

    /// How long AWS typically takes to finish making (`Forward`) or deleting (`Backward`) this part, in
    /// seconds: what the walk uses to start the longest waits first (see [`super::graph::run_weighted`]).
    /// Typical figures for small instance classes in one region (RDS user guide; EFS, Cloud Map and ECS
    /// documentation; the harness's behaviour model, acceptance-tests/aws_model.py, cites each); a part that
    /// is a few quick requests counts 1.
    pub fn typical_seconds(self, direction: super::graph::Direction) -> u64 {
        use super::graph::Direction::{Backward, Forward};
        match (self, direction) {
            // Creating, backing up, available; deleting with a final snapshot takes as long.
            (Part::Database, _) => 450,
            (Part::MountTargets, Forward) => 90,
            (Part::MountTargets, Backward) => 60,
            // The namespace's asynchronous operation (and its Route 53 hosted zone).
            (Part::Namespace, _) => 60,
            // Tasks starting and the deployment completing; on delete, tasks draining.
            (Part::Service(_), Forward) => 165,
            (Part::Service(_), Backward) => 60,
            // Instances terminating before the group goes.
            (Part::AutoScalingGroup, Backward) => 120,
            (Part::LoadBalancer, Forward) => 150,
            _ => 1,
        }
    }

    /// The part's family: the one place that says which module handles which part.
    pub fn family(self) -> Family {
        match self {
            Part::Network => Family::Network(NetworkPart::Network),
            Part::SecurityGroup(g) => Family::Network(NetworkPart::SecurityGroup(g)),
            Part::S3Endpoint => Family::Network(NetworkPart::S3Endpoint),
            Part::AccessLogBucket => Family::Storage(StoragePart::AccessLogBucket),
            Part::ArchiveBucket => Family::Storage(StoragePart::ArchiveBucket),
            Part::StateBucket => Family::Storage(StoragePart::StateBucket),
            Part::Repository(i) => Family::Storage(StoragePart::Repository(i)),
            Part::LogGroup => Family::Storage(StoragePart::LogGroup),
            Part::InstanceRole => Family::Identity(IdentityPart::InstanceRole),
            Part::ExecutionRole => Family::Identity(IdentityPart::ExecutionRole),
            Part::TaskRole(s) => Family::Identity(IdentityPart::TaskRole(s)),
            Part::RabbitmqSecret => Family::Identity(IdentityPart::RabbitmqSecret),
            Part::DatabaseSecret => Family::Identity(IdentityPart::DatabaseSecret),
            Part::FileSystem => Family::Data(DataPart::FileSystem),
            Part::MountTargets => Family::Data(DataPart::MountTargets),
            Part::AccessPoint(kind) => Family::Data(DataPart::AccessPoint(kind)),
            Part::DbSubnetGroup => Family::Data(DataPart::DbSubnetGroup),
            Part::DbParameterGroup => Family::Data(DataPart::DbParameterGroup),
            Part::Database => Family::Data(DataPart::Database),
            Part::Cluster => Family::Compute(ComputePart::Cluster),
            Part::LaunchTemplate => Family::Compute(ComputePart::LaunchTemplate),
            Part::AutoScalingGroup => Family::Compute(ComputePart::AutoScalingGroup),
            Part::Namespace => Family::Services(ServicesPart::Namespace),
            Part::Discovery(s) => Family::Services(ServicesPart::Discovery(s)),
            Part::TaskDefinition(s) => Family::Services(ServicesPart::TaskDefinition(s)),
            Part::Service(s) => Family::Services(ServicesPart::Service(s)),
            Part::LoadBalancer => Family::Entry(EntryPart::LoadBalancer),
            Part::TargetGroup => Family::Entry(EntryPart::TargetGroup),
            Part::Listeners => Family::Entry(EntryPart::Listeners),
        }
    }

    /// The dependency graph of `parts`: dependencies outside the set are dropped (web without a load
    /// balancer does not wait for one).
    pub fn graph(parts: &[Part]) -> BTreeMap<Part, Vec<Part>> {
        parts.iter().map(|p| (*p, p.depends_on().into_iter().filter(|d| parts.contains(d)).collect())).collect()
    }

    /// The part's key, used in tags and messages.
    pub fn key(self) -> String {
        match self {
            Part::Network => "network".into(),
            Part::SecurityGroup(g) => format!("security_group_{}", group_key(g)),
            Part::S3Endpoint => "s3_endpoint".into(),
            Part::AccessLogBucket => "access_log_bucket".into(),
            Part::ArchiveBucket => "archive_bucket".into(),
            Part::StateBucket => "state_bucket".into(),
            Part::Repository(i) => format!("ecr_{}", COMPONENTS[i]),
            Part::LogGroup => "log_group".into(),
            Part::InstanceRole => "instance_role".into(),
            Part::ExecutionRole => "execution_role".into(),
            Part::TaskRole(s) => format!("task_role_{}", s),
            Part::RabbitmqSecret => "rabbitmq_secret".into(),
            Part::DatabaseSecret => "database_secret".into(),
            Part::FileSystem => "file_system".into(),
            Part::MountTargets => "mount_targets".into(),
            Part::AccessPoint(AccessPointKind::Rabbitmq) => "access_point_rabbitmq".into(),
            Part::AccessPoint(AccessPointKind::Working) => "access_point_working".into(),
            Part::DbSubnetGroup => "db_subnet_group".into(),
            Part::DbParameterGroup => "db_parameter_group".into(),
            Part::Database => "database".into(),
            Part::Cluster => "cluster".into(),
            Part::LaunchTemplate => "launch_template".into(),
            Part::AutoScalingGroup => "autoscaling_group".into(),
            Part::Namespace => "namespace".into(),
            Part::Discovery(s) => format!("discovery_{}", s),
            Part::TaskDefinition(s) => format!("task_definition_{}", s),
            Part::Service(s) => format!("service_{}", s),
            Part::LoadBalancer => "load_balancer".into(),
            Part::TargetGroup => "target_group".into(),
            Part::Listeners => "listeners".into(),
        }
    }
}

impl Part {
    /// Judges whose a resource found under this part's name is. Mount targets and listeners cannot be
    /// tagged: they are found only inside the stack's own file system and load balancer, so they are its
    /// own. The network is looked up, never changed.
    pub fn owner_from(self, spec: &StackSpec, tags: Option<&BTreeMap<String, String>>) -> Owner {
        match self {
            Part::Network | Part::MountTargets | Part::Listeners => Owner::Stack,
            _ => tags.map_or(Owner::Unmarked, |tags| Owner::from_tags(tags, &spec.name, &self.key())),
        }
    }

    /// What the resource under this part's name is, for messages: `S3 bucket shop-archive`.
    pub fn resource(self, spec: &StackSpec) -> String {
        let stack = &spec.name;
        match self {
            Part::Network => "the VPC and subnets".into(),
            Part::SecurityGroup(g) => format!("security group {}", network::group_name(stack, g)),
            Part::S3Endpoint => "the stack's S3 gateway endpoint".into(),
            Part::AccessLogBucket => format!("S3 bucket {}", spec.access_log_bucket),
            Part::ArchiveBucket => format!("S3 bucket {}", spec.archive_bucket),
            Part::StateBucket => format!("S3 bucket {}", spec.state_bucket),
            Part::Repository(i) => format!("ECR repository {}", repository_name(stack, COMPONENTS[i])),
            Part::LogGroup => format!("CloudWatch log group {}", spec.log_group),
            Part::InstanceRole => {
                format!("IAM role and instance profile {}", identity::role_name(stack, identity::Role::Instance))
            }
            Part::ExecutionRole => format!("IAM role {}", identity::role_name(stack, identity::Role::Execution)),
            Part::TaskRole(s) => format!("IAM role {}", identity::role_name(stack, identity::Role::Task(s))),
            Part::RabbitmqSecret => {
                format!("Secrets Manager secret {}", identity::secret_name(stack, identity::Secret::Rabbitmq))
            }
            Part::DatabaseSecret => {
                format!("Secrets Manager secret {}", identity::secret_name(stack, identity::Secret::Database))
            }
            Part::FileSystem => format!("EFS file system with creation token {}", data::creation_token(stack)),
            Part::MountTargets => "the file system's mount targets".into(),
            Part::AccessPoint(kind) => format!("EFS access point {}", data::access_point_spec(stack, kind).name),
            Part::DbSubnetGroup => format!("DB subnet group {stack}"),
            Part::DbParameterGroup => format!("DB parameter group {}", data::parameter_group_name(stack)),
            Part::Database => format!("RDS DB instance {stack}"),
            Part::Cluster => format!("ECS cluster {stack}"),
            Part::LaunchTemplate => format!("EC2 launch template {stack}"),
            Part::AutoScalingGroup => format!("Auto Scaling group {stack}"),
            Part::Namespace => format!("Cloud Map namespace {}", namespace_name(stack)),
            Part::Discovery(s) => format!("Cloud Map service {} in {}", s, namespace_name(stack)),
            Part::TaskDefinition(s) => format!("ECS task definition family {}", services::family(stack, s)),
            Part::Service(s) => format!("ECS service {} in cluster {stack}", s),
            Part::LoadBalancer => format!("load balancer {}", crate::aws::elbv2::load_balancer_name(stack)),
            Part::TargetGroup => format!("target group {}", crate::aws::elbv2::target_group_name(stack)),
            Part::Listeners => "the load balancer's listeners".into(),
        }
    }

    /// The conflict a found resource makes when it is not the stack's own.
    pub fn conflict(self, spec: &StackSpec, found: &PartState) -> Option<Conflict> {
        (!found.owner.is_stack()).then(|| Conflict {
            part: self.key(),
            resource: self.resource(spec),
            arn: found.arn.clone().or_else(|| found.id.clone()),
            owner: found.owner.clone(),
        })
    }
}

/// The key of a security group in names and outputs.
pub fn group_key(group: Group) -> &'static str {
    match group {
        Group::Instances => "instances",
        Group::Services => "services",
        Group::Database => "database",
        Group::FileSystem => "file_system",
        Group::LoadBalancer => "load_balancer",
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// What is known about an existing part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartState {
    /// Its id (group id, file system id, ...), where it has one.
    pub id: Option<String>,
    /// Its ARN, where it has one.
    pub arn: Option<String>,
    /// Its URL or address, where it has one (repositories, database endpoint).
    pub url: Option<String>,
    /// What else later parts, the outputs or an import read of it.
    pub facts: Facts,
    /// Settings that differ from the managed ones.
    pub drift: Vec<String>,
    /// Log retention in days, for the log group.
    pub retention_days: Option<i64>,
    /// The part's tags, where they were read.
    pub tags: Option<BTreeMap<String, String>>,
    /// Whose the resource found under the part's name is (an ensured part is always the stack's).
    pub owner: Owner,
}

/// Facts a part's state carries beyond its id, ARN and URL. Each part fills in its own (named in each
/// field's documentation); every other field stays at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Network: the VPC's CIDR block.
    pub vpc_cidr: Option<String>,
    /// Network: the subnets of the instances, tasks, database and file system. Load balancer: its own.
    pub subnet_ids: Vec<String>,
    /// Network: one of those subnets per availability zone (for the mount targets).
    pub zone_subnet_ids: Vec<String>,
    /// Network: the load balancer's public subnets, when the configuration names them.
    pub load_balancer_subnet_ids: Option<Vec<String>>,
    /// The load balancer's security group: the address ranges it admits; the instances': those admitted to SSH.
    pub allowed_cidr_blocks: Vec<String>,
    /// Listeners: the HTTPS certificate, when there is one.
    pub certificate_arn: Option<String>,
    /// Instance role: its instance profile.
    pub instance_profile_arn: Option<String>,
    /// Archive and state buckets: the KMS key of their default encryption, when it names one.
    pub kms_key: Option<String>,
    /// Repository: whether it holds the image at `image_tag`.
    pub image_present: Option<bool>,
    /// Repository: where to push that image (`<url>:<image_tag>`).
    pub push_target: Option<String>,
    /// Task definition and service: where to push the image they wait for, while it is missing.
    pub image_missing: Option<String>,
    /// Task definition: the image its container runs.
    pub image: Option<String>,
    /// Task definition: the variables the configuration added to its container's environment (`None` when
    /// the service's wiring could not be worked out to tell them apart).
    pub environment: Option<BTreeMap<String, String>>,
    /// Task definition: task CPU units.
    pub cpu: Option<i64>,
    /// Task definition: task memory in MiB.
    pub memory: Option<i64>,
    /// Task definition: the version of a password it was made for (the broker's: the database's;
    /// RabbitMQ's: its own), which an import takes back into the configuration's terms.
    pub password_version: Option<i64>,
    /// Service: the tasks it asks for.
    pub desired_count: Option<i64>,
    /// Launch template: its default version.
    pub template_version: Option<i64>,
    /// Launch template: the instance type of that version.
    pub instance_type: Option<String>,
    /// Auto Scaling group: its minimum, maximum and desired capacity.
    pub group_sizes: Option<GroupSizes>,
    /// Database: its settings as the configuration says them.
    pub database: Option<DatabaseFacts>,
}

/// An Auto Scaling group's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSizes {
    /// Minimum.
    pub min: i64,
    /// Maximum.
    pub max: i64,
    /// Desired.
    pub desired: i64,
}

/// A database's settings as the `database` attribute says them (engine version as major.minor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseFacts {
    /// Instance class.
    pub instance_class: String,
    /// Storage in GiB.
    pub allocated_storage: i64,
    /// Engine.
    pub engine: String,
    /// Engine version, major.minor.
    pub engine_version: String,
    /// Days of automated backups.
    pub backup_retention_days: i64,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// Multi-AZ standby.
    pub multi_az: bool,
}

impl PartState {
    /// A state with just an id.
    pub fn with_id(id: impl Into<String>) -> Self {
        PartState { id: Some(id.into()), ..PartState::default() }
    }
}

/// What removing a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The part is gone.
    Removed,
    /// The part is gone, with something the user should know (e.g. the final snapshot's name).
    RemovedWithNote(String),
    /// The part was deliberately kept; the text says why.
    Retained(String),
}

/// A part operation failed.
#[derive(Debug, Clone)]
pub enum PartError {
    /// AWS refused or failed a call.
    Aws(AwsError),
    /// The provider refused, to protect data; the text says what the user can do.
    Refused(String),
    /// A part this one needs is missing or incomplete.
    Missing(String),
}

impl fmt::Display for PartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartError::Aws(e) => write!(f, "{e}"),
            PartError::Refused(why) | PartError::Missing(why) => f.write_str(why),
        }
    }
}

impl From<AwsError> for PartError {
    fn from(e: AwsError) -> Self {
        PartError::Aws(e)
    }
}

/// Result of a part operation.
pub type PartResult<T> = Result<T, PartError>;

/// What a part operation works with.
pub struct PartContext<'a> {
    /// The desired stack.
    pub spec: &'a StackSpec,
    /// AWS clients.
    pub aws: &'a AwsContext,
    /// Outputs of other parts: direct dependencies for ensure, everything observed for remove. An observe
    /// asks for its dependencies itself ([`PartContext::dependencies`]), at the point where it needs them.
    pub parts: &'a BTreeMap<Part, PartState>,
    /// What this apply does with the stack's passwords.
    pub passwords: Passwords<'a>,
    /// Answers shared by the parts of one survey; `None` outside surveys.
    pub reads: Option<&'a SharedReads>,
}

/// What an apply does with a password of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange<'a> {
    /// Keep the one the stack's secret holds (the database's goes to RDS only when it is created).
    Keep,
    /// Set this one: the write-only `password_wo`, on create or when its version changed.
    Set(&'a str),
    /// Generate a new one: the version changed without a password given.
    Generate,
}

/// What an apply does with each of the stack's two passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passwords<'a> {
    /// The database's master password.
    pub database: PasswordChange<'a>,
    /// RabbitMQ's password: kept, or generated anew (it is never given).
    pub rabbitmq: PasswordChange<'a>,
}

impl Passwords<'_> {
    /// Both kept: every walk but an apply's.
    pub const KEEP: Passwords<'static> = Passwords { database: PasswordChange::Keep, rabbitmq: PasswordChange::Keep };
}

impl<'a> PartContext<'a> {
    /// Whether an observation judges drift: always, except in a survey that only finds what exists and
    /// whose it is (see [`crate::stack::survey::Purpose`]), where a part skips the reads that serve drift
    /// alone.
    pub fn judges_drift(&self) -> bool {
        self.reads.is_none_or(SharedReads::judges_drift)
    }

    /// `read`'s answer when the observation judges drift; otherwise nothing, and no request is sent (a
    /// future does nothing until awaited). For reads that serve drift alone.
    pub async fn drift_read<T: Default, E>(&self, read: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        if self.judges_drift() { read.await } else { Ok(T::default()) }
    }

    /// Another part's state, as far as it exists and is the stack's own: in a survey, once the survey has
    /// observed it (see [`SharedReads`]); elsewhere, what the walk handed over.
    pub async fn dependency(&self, part: Part) -> Option<PartState> {
        if let Some(state) = self.parts.get(&part) {
            return Some(state.clone());
        }
        self.reads?.observed(part).await
    }

    /// The states of the parts `part` depends on, as far as they exist and are the stack's own. An observe
    /// asks for them after its own lookups, so that its requests do not wait for theirs.
    pub async fn dependencies(&self, part: Part) -> BTreeMap<Part, PartState> {
        let mut found = BTreeMap::new();
        for dependency in part.depends_on() {
            if let Some(state) = self.dependency(dependency).await {
                found.insert(dependency, state);
            }
        }
        found
    }

    /// Whether `id` is the id of the stack's own `part`: what a part found inside a resource it looked up by
    /// name (a file system, a namespace) needs before it counts, since that resource may be a look-alike.
    pub async fn is_own(&self, part: Part, id: &str) -> bool {
        self.dependency(part).await.and_then(|state| state.id).as_deref() == Some(id)
    }

    /// This context with `parts` as the other parts' outputs.
    pub fn with<'b>(&self, parts: &'b BTreeMap<Part, PartState>) -> PartContext<'b>
    where
        'a: 'b,
    {
        PartContext { spec: self.spec, aws: self.aws, parts, passwords: self.passwords, reads: self.reads }
    }
}

impl PartContext<'_> {
    /// The output of another part, or a clear error if it is not there.
    pub fn part(&self, part: Part) -> PartResult<&PartState> {
        self.parts.get(&part).ok_or_else(|| PartError::Missing(format!("{part} is missing")))
    }

    /// The id of another part.
    pub fn id_of(&self, part: Part) -> PartResult<&str> {
        self.part(part)?.id.as_deref().ok_or_else(|| PartError::Missing(format!("{part} has no id")))
    }

    /// The ARN of another part.
    pub fn arn_of(&self, part: Part) -> PartResult<&str> {
        self.part(part)?.arn.as_deref().ok_or_else(|| PartError::Missing(format!("{part} has no ARN")))
    }

    /// The subnets the network part chose.
    pub fn subnet_ids(&self) -> PartResult<Vec<String>> {
        Ok(self.part(Part::Network)?.facts.subnet_ids.clone())
    }

    /// Tags for a part.
    pub fn tags(&self, part: Part) -> BTreeMap<String, String> {
        self.spec.part_tags(&part.key())
    }
}

/// Creates or adopts the part and converges its settings.
pub async fn ensure(part: Part, ctx: &PartContext<'_>) -> PartResult<PartState> {
    tracing::debug!(part = %part, stack = %ctx.spec.name, "ensuring part");
    let result = match part.family() {
        Family::Network(p) => network::ensure(p, ctx).await,
        Family::Storage(p) => storage::ensure(p, ctx).await,
        Family::Identity(p) => identity::ensure(p, ctx).await,
        Family::Data(p) => data::ensure(p, ctx).await,
        Family::Compute(p) => compute::ensure(p, ctx).await,
        Family::Services(p) => services::ensure(p, ctx).await,
        Family::Entry(p) => entry::ensure(p, ctx).await,
    };
    if let Err(e) = &result {
        tracing::warn!(part = %part, stack = %ctx.spec.name, error = %e, "part failed");
    }
    result
}

/// Describes the part as it exists now, and whose it is; `None` when nothing has its name.
pub async fn observe(part: Part, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let found = observe_resource(part, ctx).await?;
    Ok(found.map(|state| PartState { owner: part.owner_from(ctx.spec, state.tags.as_ref()), ..state }))
}

async fn observe_resource(part: Part, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    match part.family() {
        Family::Network(p) => network::observe(p, ctx).await,
        Family::Storage(p) => storage::observe(p, ctx).await,
        Family::Identity(p) => identity::observe(p, ctx).await,
        Family::Data(p) => data::observe(p, ctx).await,
        Family::Compute(p) => compute::observe(p, ctx).await,
        Family::Services(p) => services::observe(p, ctx).await,
        Family::Entry(p) => entry::observe(p, ctx).await,
    }
}

/// Removes the part, or keeps it where data must be protected.
pub async fn remove(part: Part, ctx: &PartContext<'_>) -> PartResult<Removal> {
    tracing::debug!(part = %part, stack = %ctx.spec.name, "removing part");
    match part.family() {
        Family::Network(p) => network::remove(p, ctx).await,
        Family::Storage(p) => storage::remove(p, ctx).await,
        Family::Identity(p) => identity::remove(p, ctx).await,
        Family::Data(p) => data::remove(p, ctx).await,
        Family::Compute(p) => compute::remove(p, ctx).await,
        Family::Services(p) => services::remove(p, ctx).await,
        Family::Entry(p) => entry::remove(p, ctx).await,
    }
}

/// Parts that count as "the stack exists" on read: everything but the looked-up network and the retained
/// state bucket.
pub fn defining_parts() -> BTreeSet<Part> {
    Part::possible().into_iter().filter(|p| !matches!(p, Part::StateBucket | Part::Network)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Value;
    use crate::stack::graph::{self, Direction};

    /// A stack with every default, with or without a load balancer.
    fn spec(load_balancer: bool) -> StackSpec {
        let lb = if load_balancer { Value::Map(BTreeMap::new()) } else { Value::Null };
        let value =
            Value::Map([("name".to_string(), Value::string("vault")), ("load_balancer".to_string(), lb)].into());
        StackSpec::from_value_in(&value, &BTreeMap::new(), "eu-west-2", "aws")
    }

    /// The order a walk of `parts` in `direction` runs them in, one at a time.
    async fn walk(parts: &[Part], direction: Direction) -> Vec<Part> {
        let order = std::sync::Mutex::new(Vec::new());
        let report: graph::Report<Part, (), ()> =
            graph::run(&Part::graph(parts), direction, 1, &tokio_util::sync::CancellationToken::new(), |part, _| {
                order.lock().unwrap().push(part);
                async { Ok(()) }
            })
            .await;
        assert!(report.is_complete());
        order.into_inner().unwrap()
    }

    fn assert_order(order: &[Part], chain: &[Part]) {
        let position = |p: &Part| order.iter().position(|x| x == p).unwrap_or_else(|| panic!("{p} not walked"));
        for pair in chain.windows(2) {
            assert!(position(&pair[0]) < position(&pair[1]), "{} must come before {} in {order:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn every_part_has_a_distinct_key_and_known_dependencies() {
        let all = Part::possible();
        let keys: BTreeSet<String> = all.iter().map(|p| p.key()).collect();
        assert_eq!(keys.len(), all.len());
        for part in &all {
            for dep in part.depends_on() {
                assert!(all.contains(&dep), "{part} depends on {dep}, which is not a part");
            }
        }
    }

    #[tokio::test]
    async fn the_graph_is_acyclic_and_services_come_last() {
        let order = walk(&Part::wanted_by(&spec(false)), Direction::Forward).await;
        assert_order(&order, &[Part::SecurityGroup(Group::Database), Part::Database]);
        assert_order(&order, &[Part::AutoScalingGroup, Part::Service(Service::Web)]);
        assert_order(&order, &[Part::MountTargets, Part::Service(Service::Rabbitmq)]);
    }

    #[test]
    fn load_balancer_parts_exist_only_when_wanted() {
        let private = Part::wanted_by(&spec(false));
        assert!(ENTRY_PARTS.iter().all(|p| !private.contains(p)), "{private:?}");
        let web = Part::Service(Service::Web);
        assert!(Part::graph(&private)[&web].iter().all(|d| !ENTRY_PARTS.contains(d)));
        let public = Part::wanted_by(&spec(true));
        assert!(ENTRY_PARTS.iter().all(|p| public.contains(p)));
        assert_eq!(public.len(), private.len() + ENTRY_PARTS.len());
        assert!(Part::graph(&public)[&web].contains(&Part::TargetGroup));
        // Read and destroy look for them either way.
        assert!(ENTRY_PARTS.iter().all(|p| Part::possible().contains(p)));
    }

    #[tokio::test]
    async fn the_entry_point_is_created_before_web_and_deleted_after_it() {
        let web = Part::Service(Service::Web);
        let lb_group = Part::SecurityGroup(Group::LoadBalancer);
        let services_group = Part::SecurityGroup(Group::Services);
        let public = Part::wanted_by(&spec(true));
        let created = walk(&public, Direction::Forward).await;
        assert_order(&created, &[services_group, lb_group, Part::LoadBalancer, Part::Listeners, web]);
        assert_order(&created, &[Part::TargetGroup, Part::Listeners]);
        let deleted = walk(&Part::possible(), Direction::Backward).await;
        assert_order(&deleted, &[web, Part::Listeners, Part::LoadBalancer, lb_group, services_group]);
        assert_order(&deleted, &[Part::Listeners, Part::TargetGroup, Part::Network]);
    }

    #[test]
    fn every_part_comes_back_from_its_family() {
        for part in Part::possible() {
            let back = match part.family() {
                Family::Network(p) => Part::from(p),
                Family::Storage(p) => Part::from(p),
                Family::Identity(p) => Part::from(p),
                Family::Data(p) => Part::from(p),
                Family::Compute(p) => Part::from(p),
                Family::Services(p) => Part::from(p),
                Family::Entry(p) => Part::from(p),
            };
            assert_eq!(back, part);
        }
    }

    #[test]
    fn workers_have_no_dns_name() {
        assert!(!Service::Worker.is_discoverable());
        assert!(Service::Rabbitmq.is_discoverable());
    }

    #[test]
    fn neither_network_nor_state_bucket_defines_existence() {
        let defining = defining_parts();
        assert!(!defining.contains(&Part::StateBucket));
        assert!(!defining.contains(&Part::Network));
        assert!(defining.contains(&Part::Database));
        // A load balancer left behind still means the stack exists, so it is found and removed.
        assert!(defining.contains(&Part::LoadBalancer));
    }
}
