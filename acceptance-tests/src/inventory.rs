//! Lists what the emulator holds of every kind of AWS object a stack is made of (buckets, repositories,
//! log groups, security groups, IAM roles, EFS, RDS, ECS, EC2 capacity, Cloud Map, secrets, load
//! balancing), with their
//! tags, and decides what a destroyed stack may leave behind.
//!
//! Only live objects are listed: an ECS cluster, service or task definition that is no longer ACTIVE, a
//! secret scheduled for deletion (it waits out its recovery window by design) or a terminated instance is
//! gone as far as a stack is concerned. The region's defaults (the default VPC's `default` security group)
//! belong to nobody and are not listed either.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::case::{CheckError, CheckResult};
use crate::emulator::{Emulator, describe};

/// Tag the provider puts on every part of a stack, naming the stack.
pub const STACK_TAG: &str = "datavault:stack";
/// Tag RDS puts on the master-password secret it manages, naming the database's ARN.
pub const RDS_SECRET_TAG: &str = "aws:rds:primaryDBInstanceArn";
/// Tag EC2 Auto Scaling puts on the instances it launches, naming the group.
pub const ASG_TAG: &str = "aws:autoscaling:groupName";

/// Suffixes of a stack's security group names (`<stack>-instances`, ...).
const GROUP_SUFFIXES: [&str; 5] = ["instances", "services", "database", "file-system", "load-balancer"];
/// Suffixes of a stack's IAM role names.
const ROLE_SUFFIXES: [&str; 7] =
    ["instance", "execution", "web-task", "broker-task", "worker-task", "rabbitmq-task", "task"];
/// Suffixes of a stack's EFS access point names.
const ACCESS_POINT_SUFFIXES: [&str; 2] = ["rabbitmq", "working"];
/// The four services; task definition families are `<stack>-<service>`.
const SERVICES: [&str; 4] = ["web", "broker", "worker", "rabbitmq"];

/// `rds:<db>-YYYY-MM-DD-HH-MM`: an automated snapshot of database `<db>`.
static AUTOMATED_SNAPSHOT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^rds:(.+)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}$").expect("valid regex"));
/// `<db>-final` or `<db>-final-N`: the final snapshot destroy takes.
static FINAL_SNAPSHOT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(.+)-final(-\d+)?$").expect("valid regex"));

/// The kind of an AWS object the inventory lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An S3 bucket.
    Bucket,
    /// An ECR repository.
    Repository,
    /// A CloudWatch Logs log group.
    LogGroup,
    /// An EC2 security group (named by its group name).
    SecurityGroup,
    /// A VPC endpoint that is not deleted (named by its id; whose it is, only its tags say).
    VpcEndpoint,
    /// An IAM role.
    Role,
    /// An IAM instance profile.
    InstanceProfile,
    /// An EFS file system (named by its creation token).
    FileSystem,
    /// An EFS access point (named by its `Name`, else its id).
    AccessPoint,
    /// An RDS DB instance.
    DbInstance,
    /// An RDS DB subnet group.
    DbSubnetGroup,
    /// An RDS DB parameter group (not the default ones RDS provides).
    DbParameterGroup,
    /// An RDS DB snapshot, manual or automated.
    DbSnapshot,
    /// An ACTIVE ECS cluster.
    Cluster,
    /// An ACTIVE ECS service, named `<cluster>/<service>`.
    Service,
    /// An ACTIVE ECS task definition revision, named `<family>:<revision>`.
    TaskDefinition,
    /// An EC2 launch template.
    LaunchTemplate,
    /// An EC2 Auto Scaling group.
    AutoScalingGroup,
    /// An EC2 instance that is not terminated (named by its id).
    Instance,
    /// A Cloud Map namespace.
    Namespace,
    /// A Cloud Map service, named `<service>.<namespace>` (or `<service> in <namespace id>` when its
    /// namespace is gone).
    DiscoveryService,
    /// A Secrets Manager secret not scheduled for deletion.
    Secret,
    /// An Elastic Load Balancing v2 load balancer.
    LoadBalancer,
    /// An Elastic Load Balancing v2 target group.
    TargetGroup,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Bucket => "S3 bucket",
            Kind::Repository => "ECR repository",
            Kind::LogGroup => "log group",
            Kind::SecurityGroup => "security group",
            Kind::VpcEndpoint => "VPC endpoint",
            Kind::Role => "IAM role",
            Kind::InstanceProfile => "IAM instance profile",
            Kind::FileSystem => "EFS file system",
            Kind::AccessPoint => "EFS access point",
            Kind::DbInstance => "RDS instance",
            Kind::DbSubnetGroup => "RDS subnet group",
            Kind::DbParameterGroup => "RDS parameter group",
            Kind::DbSnapshot => "RDS snapshot",
            Kind::Cluster => "ECS cluster",
            Kind::Service => "ECS service",
            Kind::TaskDefinition => "ECS task definition",
            Kind::LaunchTemplate => "launch template",
            Kind::AutoScalingGroup => "Auto Scaling group",
            Kind::Instance => "EC2 instance",
            Kind::Namespace => "Cloud Map namespace",
            Kind::DiscoveryService => "Cloud Map service",
            Kind::Secret => "secret",
            Kind::LoadBalancer => "load balancer",
            Kind::TargetGroup => "target group",
        }
    }
}

/// One object in the emulator, with its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// Its name, as documented on each [`Kind`].
    pub name: String,
    /// Its tags (empty where the listing does not return them).
    pub tags: BTreeMap<String, String>,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (tags {:?})", self.kind.label(), self.name, self.tags)
    }
}

/// `<stack><suffix>` as the provider names load balancers and target groups: at most 32 characters, the
/// stack name shortened (and stripped of a trailing hyphen) to make room.
fn load_balancing_name(stack: &str, suffix: &str) -> String {
    let stem: String = stack.chars().take(32 - suffix.len()).collect();
    format!("{}{suffix}", stem.trim_end_matches('-'))
}

fn suffixed(stack: &str, suffixes: &[&str], name: &str) -> bool {
    name.strip_prefix(stack).and_then(|rest| rest.strip_prefix('-')).is_some_and(|rest| suffixes.contains(&rest))
}

/// Whether `snapshot` is the final snapshot destroy takes of `stack`'s database (`<stack>-final`, or
/// `<stack>-final-N` when that name was taken).
pub fn is_final_snapshot(snapshot: &str, stack: &str) -> bool {
    FINAL_SNAPSHOT.captures(snapshot).is_some_and(|c| &c[1] == stack)
}

/// Whether `snapshot` is an automated backup of `stack`'s database (`rds:<stack>-<timestamp>`).
pub fn is_automated_snapshot(snapshot: &str, stack: &str) -> bool {
    AUTOMATED_SNAPSHOT.captures(snapshot).is_some_and(|c| &c[1] == stack)
}

impl Item {
    /// Whether this object belongs to `stack`, by its tag or, should tagging have failed (or the kind
    /// carry no tags in its listing), by the names the provider derives from the stack name.
    pub fn belongs_to(&self, stack: &str) -> bool {
        if self.tags.get(STACK_TAG).is_some_and(|s| s == stack) {
            return true;
        }
        let name = self.name.as_str();
        match self.kind {
            Kind::Bucket => name == format!("{stack}-archive") || name == format!("{stack}-state"),
            Kind::Repository => name.starts_with(&format!("{stack}/")),
            Kind::LogGroup => {
                name == format!("/datavault/{stack}") || name.starts_with(&format!("/aws/rds/instance/{stack}/"))
            }
            Kind::SecurityGroup => suffixed(stack, &GROUP_SUFFIXES, name),
            Kind::VpcEndpoint => false,
            Kind::Role => suffixed(stack, &ROLE_SUFFIXES, name),
            Kind::InstanceProfile => name == format!("{stack}-instance"),
            Kind::FileSystem => name == format!("datavault-{stack}"),
            Kind::AccessPoint => suffixed(stack, &ACCESS_POINT_SUFFIXES, name),
            Kind::DbInstance | Kind::DbSubnetGroup | Kind::Cluster | Kind::LaunchTemplate => name == stack,
            Kind::DbParameterGroup => name == format!("{stack}-db"),
            Kind::AutoScalingGroup => name == stack,
            Kind::DbSnapshot => is_final_snapshot(name, stack) || is_automated_snapshot(name, stack),
            Kind::Service => name.strip_prefix(stack).is_some_and(|rest| rest.starts_with('/')),
            Kind::TaskDefinition => {
                let family = name.rsplit_once(':').map_or(name, |(family, _)| family);
                suffixed(stack, &SERVICES, family)
            }
            Kind::Instance => self.tags.get(ASG_TAG).is_some_and(|g| g == stack),
            Kind::Namespace => name == format!("{stack}.datavault.internal"),
            Kind::DiscoveryService => name.ends_with(&format!(".{stack}.datavault.internal")),
            Kind::LoadBalancer => name == load_balancing_name(stack, "-web"),
            Kind::TargetGroup => name == load_balancing_name(stack, "-web-tg"),
            Kind::Secret => {
                name == format!("{stack}/rabbitmq")
                    || name == format!("{stack}/database")
                    // The database's master password, which RDS manages (and deletes with the database).
                    || self.tags.get(RDS_SECRET_TAG).is_some_and(|arn| arn.ends_with(&format!(":db:{stack}")))
            }
        }
    }

    /// Whether destroy keeps this object of `stack` on purpose: the state bucket (it may hold Terraform
    /// state), the database's final snapshot, and its automated backups (destroy passes
    /// `DeleteAutomatedBackups = false`, so they stay until their retention period ends, like a deleted
    /// secret's recovery window).
    pub fn retained_by_design(&self, stack: &str, state_bucket: &str) -> bool {
        match self.kind {
            Kind::Bucket => self.name == state_bucket,
            Kind::DbSnapshot => is_final_snapshot(&self.name, stack) || is_automated_snapshot(&self.name, stack),
            _ => false,
        }
    }
}

/// Everything of `stack` left in `items`, except what destroy keeps by design (see
/// [`Item::retained_by_design`]); `retained_bucket` is the stack's state bucket.
pub fn leftovers<'a>(items: &'a [Item], stack: &str, retained_bucket: &str) -> Vec<&'a Item> {
    items.iter().filter(|i| i.belongs_to(stack)).filter(|i| !i.retained_by_design(stack, retained_bucket)).collect()
}

fn tag_map<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>) -> BTreeMap<String, String> {
    pairs.into_iter().filter_map(|(k, v)| Some((k?.to_string(), v.unwrap_or_default().to_string()))).collect()
}

/// Lists every live object in the emulator, with its tags.
pub async fn list(emulator: &Emulator) -> Result<Vec<Item>, CheckError> {
    let mut items = Vec::new();
    list_storage(emulator, &mut items).await?;
    list_network(emulator, &mut items).await?;
    list_identity(emulator, &mut items).await?;
    list_data(emulator, &mut items).await?;
    list_ecs(emulator, &mut items).await?;
    list_capacity(emulator, &mut items).await?;
    list_discovery(emulator, &mut items).await?;
    list_load_balancing(emulator, &mut items).await?;
    Ok(items)
}

async fn list_storage(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let mut pages = emulator.s3().list_buckets().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListBuckets: {}", describe(&e)))?;
        for bucket in out.buckets() {
            let Some(name) = bucket.name() else { continue };
            let tags = emulator.bucket_tags(name).await?;
            items.push(Item { kind: Kind::Bucket, name: name.to_string(), tags });
        }
    }

    let mut pages = emulator.ecr().describe_repositories().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeRepositories: {}", describe(&e)))?;
        for repo in out.repositories() {
            let (Some(name), Some(arn)) = (repo.repository_name(), repo.repository_arn()) else {
                continue;
            };
            let tags = emulator.repository_tags(arn).await?;
            items.push(Item { kind: Kind::Repository, name: name.to_string(), tags });
        }
    }

    let mut pages = emulator.logs().describe_log_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeLogGroups: {}", describe(&e)))?;
        for group in out.log_groups() {
            let Some(name) = group.log_group_name() else {
                continue;
            };
            let tags = match group.log_group_arn().or(group.arn()) {
                Some(arn) => emulator.log_group_tags(arn).await?,
                None => BTreeMap::new(),
            };
            items.push(Item { kind: Kind::LogGroup, name: name.to_string(), tags });
        }
    }

    // Without IncludePlannedDeletion, secrets in their recovery window are left out.
    let mut pages = emulator.secrets().list_secrets().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListSecrets: {}", describe(&e)))?;
        for secret in out.secret_list() {
            let Some(name) = secret.name() else { continue };
            if secret.deleted_date().is_some() {
                continue;
            }
            let tags = tag_map(secret.tags().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::Secret, name: name.to_string(), tags });
        }
    }
    Ok(())
}

async fn list_network(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let mut pages = emulator.ec2().describe_security_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeSecurityGroups: {}", describe(&e)))?;
        for group in out.security_groups() {
            let Some(name) = group.group_name() else { continue };
            // Every VPC has one; it is the region's, not a stack's.
            if name == "default" {
                continue;
            }
            let tags = tag_map(group.tags().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::SecurityGroup, name: name.to_string(), tags });
        }
    }
    let out = emulator
        .ec2()
        .describe_vpc_endpoints()
        .send()
        .await
        .map_err(|e| format!("DescribeVpcEndpoints: {}", describe(&e)))?;
    for endpoint in out.vpc_endpoints() {
        let state = endpoint.state().map(|s| s.as_str().to_ascii_lowercase()).unwrap_or_default();
        if state == "deleted" || state == "deleting" {
            continue;
        }
        let tags = tag_map(endpoint.tags().iter().map(|t| (t.key(), t.value())));
        items.push(Item {
            kind: Kind::VpcEndpoint,
            name: endpoint.vpc_endpoint_id().unwrap_or_default().to_string(),
            tags,
        });
    }
    Ok(())
}

async fn list_identity(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let iam = emulator.iam();
    let mut pages = iam.list_roles().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListRoles: {}", describe(&e)))?;
        for role in out.roles() {
            // ListRoles does not return tags on AWS; the role names identify a stack's roles.
            let tags = tag_map(role.tags().iter().map(|t| (Some(t.key()), Some(t.value()))));
            items.push(Item { kind: Kind::Role, name: role.role_name().to_string(), tags });
        }
    }

    let mut pages = iam.list_instance_profiles().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListInstanceProfiles: {}", describe(&e)))?;
        for profile in out.instance_profiles() {
            let tags = tag_map(profile.tags().iter().map(|t| (Some(t.key()), Some(t.value()))));
            items.push(Item { kind: Kind::InstanceProfile, name: profile.instance_profile_name().to_string(), tags });
        }
    }
    Ok(())
}

async fn list_data(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let efs = emulator.efs();
    let mut pages = efs.describe_file_systems().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeFileSystems: {}", describe(&e)))?;
        for fs in out.file_systems() {
            let tags = tag_map(fs.tags().iter().map(|t| (Some(t.key()), Some(t.value()))));
            items.push(Item { kind: Kind::FileSystem, name: fs.creation_token().to_string(), tags });
        }
    }

    let mut pages = efs.describe_access_points().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeAccessPoints: {}", describe(&e)))?;
        for point in out.access_points() {
            let tags = tag_map(point.tags().iter().map(|t| (Some(t.key()), Some(t.value()))));
            let name = point.name().or(point.access_point_id()).unwrap_or_default();
            items.push(Item { kind: Kind::AccessPoint, name: name.to_string(), tags });
        }
    }

    let rds = emulator.rds();
    let mut pages = rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeDBInstances: {}", describe(&e)))?;
        for db in out.db_instances() {
            let Some(name) = db.db_instance_identifier() else { continue };
            let tags = tag_map(db.tag_list().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::DbInstance, name: name.to_string(), tags });
        }
    }

    let mut pages = rds.describe_db_subnet_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeDBSubnetGroups: {}", describe(&e)))?;
        for group in out.db_subnet_groups() {
            let Some(name) = group.db_subnet_group_name() else { continue };
            items.push(Item { kind: Kind::DbSubnetGroup, name: name.to_string(), tags: BTreeMap::new() });
        }
    }

    let mut pages = rds.describe_db_parameter_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeDBParameterGroups: {}", describe(&e)))?;
        for group in out.db_parameter_groups() {
            let Some(name) = group.db_parameter_group_name().filter(|n| !n.starts_with("default.")) else { continue };
            items.push(Item { kind: Kind::DbParameterGroup, name: name.to_string(), tags: BTreeMap::new() });
        }
    }

    let mut pages = rds.describe_db_snapshots().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeDBSnapshots: {}", describe(&e)))?;
        for snapshot in out.db_snapshots() {
            let Some(name) = snapshot.db_snapshot_identifier() else { continue };
            let tags = tag_map(snapshot.tag_list().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::DbSnapshot, name: name.to_string(), tags });
        }
    }
    Ok(())
}

async fn list_ecs(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    use aws_sdk_ecs::types::{ClusterField, ServiceField, TaskDefinitionStatus};
    let ecs = emulator.ecs();

    let mut cluster_arns = Vec::new();
    let mut pages = ecs.list_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListClusters: {}", describe(&e)))?;
        cluster_arns.extend(out.cluster_arns().iter().cloned());
    }
    for chunk in cluster_arns.chunks(100) {
        let out = ecs
            .describe_clusters()
            .set_clusters(Some(chunk.to_vec()))
            .include(ClusterField::Tags)
            .send()
            .await
            .map_err(|e| format!("DescribeClusters: {}", describe(&e)))?;
        for cluster in out.clusters() {
            let (Some(name), Some(arn)) = (cluster.cluster_name(), cluster.cluster_arn()) else { continue };
            if cluster.status() != Some("ACTIVE") {
                continue;
            }
            let tags = tag_map(cluster.tags().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::Cluster, name: name.to_string(), tags });

            let mut service_arns = Vec::new();
            let mut pages = ecs.list_services().cluster(arn).into_paginator().send();
            while let Some(page) = pages.next().await {
                let out = page.map_err(|e| format!("ListServices {name}: {}", describe(&e)))?;
                service_arns.extend(out.service_arns().iter().cloned());
            }
            for chunk in service_arns.chunks(10) {
                let out = ecs
                    .describe_services()
                    .cluster(arn)
                    .set_services(Some(chunk.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeServices {name}: {}", describe(&e)))?;
                for service in out.services() {
                    let Some(service_name) = service.service_name() else { continue };
                    if service.status() != Some("ACTIVE") {
                        continue;
                    }
                    let tags = tag_map(service.tags().iter().map(|t| (t.key(), t.value())));
                    items.push(Item { kind: Kind::Service, name: format!("{name}/{service_name}"), tags });
                }
            }
        }
    }

    let mut pages = ecs.list_task_definitions().status(TaskDefinitionStatus::Active).into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListTaskDefinitions: {}", describe(&e)))?;
        for arn in out.task_definition_arns() {
            let name = arn.rsplit_once('/').map_or(arn.as_str(), |(_, family_revision)| family_revision);
            items.push(Item { kind: Kind::TaskDefinition, name: name.to_string(), tags: BTreeMap::new() });
        }
    }
    Ok(())
}

async fn list_capacity(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let ec2 = emulator.ec2();
    let mut pages = ec2.describe_launch_templates().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeLaunchTemplates: {}", describe(&e)))?;
        for template in out.launch_templates() {
            let Some(name) = template.launch_template_name() else { continue };
            let tags = tag_map(template.tags().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::LaunchTemplate, name: name.to_string(), tags });
        }
    }

    let mut pages = emulator.autoscaling().describe_auto_scaling_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeAutoScalingGroups: {}", describe(&e)))?;
        for group in out.auto_scaling_groups() {
            let Some(name) = group.auto_scaling_group_name() else { continue };
            let tags = tag_map(group.tags().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::AutoScalingGroup, name: name.to_string(), tags });
        }
    }

    let mut pages = ec2.describe_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeInstances: {}", describe(&e)))?;
        for instance in out.reservations().iter().flat_map(|r| r.instances()) {
            let Some(id) = instance.instance_id() else { continue };
            let state = instance.state().and_then(|s| s.name()).map(|s| s.as_str()).unwrap_or_default();
            if matches!(state, "terminated" | "shutting-down") {
                continue;
            }
            let tags = tag_map(instance.tags().iter().map(|t| (t.key(), t.value())));
            items.push(Item { kind: Kind::Instance, name: id.to_string(), tags });
        }
    }
    Ok(())
}

async fn list_discovery(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let sd = emulator.servicediscovery();
    let mut namespaces = BTreeMap::new();
    let mut pages = sd.list_namespaces().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListNamespaces: {}", describe(&e)))?;
        for ns in out.namespaces() {
            let (Some(id), Some(name)) = (ns.id(), ns.name()) else { continue };
            namespaces.insert(id.to_string(), name.to_string());
            let tags = match ns.arn() {
                Some(arn) => discovery_tags(emulator, arn).await?,
                None => BTreeMap::new(),
            };
            items.push(Item { kind: Kind::Namespace, name: name.to_string(), tags });
        }
    }

    let mut pages = sd.list_services().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("ListServices (Cloud Map): {}", describe(&e)))?;
        for service in out.services() {
            let (Some(id), Some(name)) = (service.id(), service.name()) else { continue };
            let detail =
                sd.get_service().id(id).send().await.map_err(|e| format!("GetService {id}: {}", describe(&e)))?;
            let namespace_id = detail.service().and_then(|s| s.namespace_id()).unwrap_or_default();
            let full_name = match namespaces.get(namespace_id) {
                Some(ns) => format!("{name}.{ns}"),
                None => format!("{name} in {namespace_id}"),
            };
            let tags = match service.arn() {
                Some(arn) => discovery_tags(emulator, arn).await?,
                None => BTreeMap::new(),
            };
            items.push(Item { kind: Kind::DiscoveryService, name: full_name, tags });
        }
    }
    Ok(())
}

async fn list_load_balancing(emulator: &Emulator, items: &mut Vec<Item>) -> CheckResult {
    let elb = emulator.elbv2();
    let mut found: Vec<(Kind, String, String)> = Vec::new();
    let mut pages = elb.describe_load_balancers().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeLoadBalancers: {}", describe(&e)))?;
        for lb in out.load_balancers() {
            if let (Some(name), Some(arn)) = (lb.load_balancer_name(), lb.load_balancer_arn()) {
                found.push((Kind::LoadBalancer, name.to_string(), arn.to_string()));
            }
        }
    }
    let mut pages = elb.describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(|e| format!("DescribeTargetGroups: {}", describe(&e)))?;
        for tg in out.target_groups() {
            if let (Some(name), Some(arn)) = (tg.target_group_name(), tg.target_group_arn()) {
                found.push((Kind::TargetGroup, name.to_string(), arn.to_string()));
            }
        }
    }
    for (kind, name, arn) in found {
        let out = elb
            .describe_tags()
            .resource_arns(&arn)
            .send()
            .await
            .map_err(|e| format!("ELB DescribeTags {arn}: {}", describe(&e)))?;
        let tags =
            out.tag_descriptions().iter().flat_map(|d| d.tags()).map(|t| (t.key(), t.value())).collect::<Vec<_>>();
        items.push(Item { kind, name, tags: tag_map(tags) });
    }
    Ok(())
}

async fn discovery_tags(emulator: &Emulator, arn: &str) -> Result<BTreeMap<String, String>, CheckError> {
    let out = emulator
        .servicediscovery()
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| format!("Cloud Map ListTagsForResource {arn}: {}", describe(&e)))?;
    Ok(tag_map(out.tags().iter().map(|t| (Some(t.key()), Some(t.value())))))
}

/// Fails listing every part of `stack` still in the emulator, except what destroy keeps by design: its
/// state bucket `<stack>-state` and its database's final snapshot and automated backups. The standard
/// after-destroy check.
pub async fn assert_emulator_clean(emulator: &Emulator, stack: &str) -> CheckResult {
    assert_emulator_clean_except(emulator, stack, &format!("{stack}-state")).await
}

/// [`assert_emulator_clean`] for a stack whose state bucket has a custom name.
pub async fn assert_emulator_clean_except(emulator: &Emulator, stack: &str, state_bucket: &str) -> CheckResult {
    let items = list(emulator).await?;
    let left = leftovers(&items, stack, state_bucket);
    if left.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = left.iter().map(|i| format!("  {i}")).collect();
    Err(format!("stack {stack} left {} object(s) behind after destroy:\n{}", left.len(), lines.join("\n")).into())
}

/// Everything of `stack` in the emulator, retained or not; empty means nothing of it was ever created
/// (or all of it is gone).
pub async fn stack_items(emulator: &Emulator, stack: &str) -> Result<Vec<Item>, CheckError> {
    Ok(list(emulator).await?.into_iter().filter(|i| i.belongs_to(stack)).collect())
}

/// Fails unless the emulator holds nothing at all of the kinds the inventory lists (the region's own
/// defaults aside).
pub async fn assert_emulator_empty(emulator: &Emulator) -> CheckResult {
    let items = list(emulator).await?;
    if items.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = items.iter().map(|i| format!("  {i}")).collect();
    Err(format!("expected an empty emulator, found {} object(s):\n{}", items.len(), lines.join("\n")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: Kind, name: &str, stack_tag: Option<&str>) -> Item {
        let tags = stack_tag.map(|s| (STACK_TAG.to_string(), s.to_string())).into_iter().collect();
        Item { kind, name: name.to_string(), tags }
    }

    #[test]
    fn the_state_bucket_and_database_backups_are_the_only_allowed_leftovers() {
        let items = vec![
            item(Kind::Bucket, "acc-basic-state", Some("acc-basic")),
            item(Kind::Bucket, "acc-basic-archive", Some("acc-basic")),
            item(Kind::Repository, "acc-basic/web", Some("acc-basic")),
            item(Kind::LogGroup, "/datavault/acc-basic", Some("acc-basic")),
            item(Kind::DbSnapshot, "acc-basic-final", Some("acc-basic")),
            item(Kind::DbSnapshot, "acc-basic-final-2", None),
            item(Kind::DbSnapshot, "rds:acc-basic-2026-01-02-03-04", None),
            item(Kind::DbSnapshot, "acc-basic-manual", Some("acc-basic")),
            item(Kind::DbInstance, "acc-basic", None),
            item(Kind::Bucket, "unrelated", None),
            item(Kind::Bucket, "other-archive", Some("other")),
        ];
        let left: Vec<&str> =
            leftovers(&items, "acc-basic", "acc-basic-state").iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            left,
            ["acc-basic-archive", "acc-basic/web", "/datavault/acc-basic", "acc-basic-manual", "acc-basic"]
        );
    }

    #[test]
    fn untagged_parts_are_recognised_by_name() {
        assert!(item(Kind::Bucket, "acc-x-archive", None).belongs_to("acc-x"));
        assert!(item(Kind::Repository, "acc-x/worker", None).belongs_to("acc-x"));
        assert!(item(Kind::LogGroup, "/datavault/acc-x", None).belongs_to("acc-x"));
        assert!(!item(Kind::LogGroup, "/datavault/acc-xy", None).belongs_to("acc-x"));
        assert!(!item(Kind::Repository, "acc-xy/web", None).belongs_to("acc-x"));
        // A custom-named bucket is still found through its tag.
        assert!(item(Kind::Bucket, "custom-name", Some("acc-x")).belongs_to("acc-x"));
    }

    #[test]
    fn every_kind_of_part_is_recognised_by_name_and_not_confused_with_a_longer_stack_name() {
        let cases = [
            (Kind::SecurityGroup, "acc-x-file-system", "acc-x-y-file-system"),
            (Kind::Role, "acc-x-execution", "acc-x-y-execution"),
            (Kind::InstanceProfile, "acc-x-instance", "acc-xy-instance"),
            (Kind::FileSystem, "datavault-acc-x", "datavault-acc-xy"),
            (Kind::AccessPoint, "acc-x-working", "acc-x-y-working"),
            (Kind::DbInstance, "acc-x", "acc-xy"),
            (Kind::DbSubnetGroup, "acc-x", "acc-x-y"),
            (Kind::DbSnapshot, "acc-x-final-3", "acc-x-y-final"),
            (Kind::DbSnapshot, "rds:acc-x-2026-01-02-03-04", "rds:acc-x-y-2026-01-02-03-04"),
            (Kind::Cluster, "acc-x", "acc-x-y"),
            (Kind::Service, "acc-x/web", "acc-x-y/web"),
            (Kind::TaskDefinition, "acc-x-rabbitmq:3", "acc-x-y-rabbitmq:3"),
            (Kind::LaunchTemplate, "acc-x", "acc-xy"),
            (Kind::AutoScalingGroup, "acc-x", "acc-xy"),
            (Kind::Namespace, "acc-x.datavault.internal", "acc-xy.datavault.internal"),
            (Kind::DiscoveryService, "broker.acc-x.datavault.internal", "broker.acc-xy.datavault.internal"),
            (Kind::Secret, "acc-x/rabbitmq", "acc-xy/rabbitmq"),
            (Kind::SecurityGroup, "acc-x-load-balancer", "acc-xy-load-balancer"),
            (Kind::LoadBalancer, "acc-x-web", "acc-xy-web"),
            (Kind::TargetGroup, "acc-x-web-tg", "acc-x-y-web-tg"),
        ];
        for (kind, ours, theirs) in cases {
            assert!(item(kind, ours, None).belongs_to("acc-x"), "{kind:?} {ours}");
            assert!(!item(kind, theirs, None).belongs_to("acc-x"), "{kind:?} {theirs}");
        }
        assert!(!item(Kind::SecurityGroup, "acc-x-other", None).belongs_to("acc-x"));
        assert!(!item(Kind::TaskDefinition, "acc-x-cron:1", None).belongs_to("acc-x"));
    }

    #[test]
    fn instances_and_the_rds_managed_secret_are_recognised_by_aws_tags() {
        let mut instance = item(Kind::Instance, "i-0123", None);
        assert!(!instance.belongs_to("acc-x"));
        instance.tags.insert(ASG_TAG.into(), "acc-x".into());
        assert!(instance.belongs_to("acc-x"));
        assert!(!instance.belongs_to("acc-xy"));

        let mut secret = item(Kind::Secret, "rds!db-1234", None);
        assert!(!secret.belongs_to("acc-x"));
        secret.tags.insert(RDS_SECRET_TAG.into(), "arn:aws:rds:eu-west-2:123456789012:db:acc-x".into());
        assert!(secret.belongs_to("acc-x"));
        assert!(!secret.belongs_to("acc"));
    }

    #[test]
    fn a_custom_state_bucket_can_be_retained() {
        let items = vec![item(Kind::Bucket, "my-state", Some("acc-x")), item(Kind::Bucket, "acc-x-state", None)];
        let left: Vec<&str> = leftovers(&items, "acc-x", "my-state").iter().map(|i| i.name.as_str()).collect();
        assert_eq!(left, ["acc-x-state"]);
    }
}
