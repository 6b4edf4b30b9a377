//! The stack's desired shape, derived from a planned (or stored) value: every name and setting the parts
//! need, so no part reads Terraform values directly.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::aws::{AwsContext, PART_TAG, STACK_TAG};
use crate::framework::Value;

use super::schema::{
    DEFAULT_IMAGE_TAG, DEFAULT_LOG_RETENTION_DAYS, RABBITMQ_IMAGE, SERVICES, cluster_defaults, database_defaults,
    load_balancer_defaults,
};

/// The three DataVault images built by the project, one ECR repository each.
pub const COMPONENTS: [&str; 3] = ["web", "broker", "worker"];
/// How long create, update and delete may take unless `timeouts` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The EC2 capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Instance type.
    pub instance_type: String,
    /// Group minimum.
    pub min_size: i64,
    /// Group maximum.
    pub max_size: i64,
    /// Group desired capacity.
    pub desired_capacity: i64,
    /// AMI override.
    pub ami_id: Option<String>,
    /// CIDR blocks allowed to SSH to the instances.
    pub admin_cidr_blocks: Vec<String>,
}

/// One service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Image override.
    pub image: Option<String>,
    /// CPU units.
    pub cpu: i64,
    /// Memory in MiB.
    pub memory: i64,
    /// Tasks to run.
    pub desired_count: i64,
    /// Extra environment.
    pub environment: BTreeMap<String, String>,
}

/// The database settings. The write-only password is not here: it is read from configuration at apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// RDS instance class.
    pub instance_class: String,
    /// Storage in GiB.
    pub allocated_storage: i64,
    /// `mariadb` or `mysql`.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// Days of backups.
    pub backup_retention_days: i64,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// Skip the final snapshot on delete.
    pub skip_final_snapshot: bool,
    /// Multi-AZ standby.
    pub multi_az: bool,
    /// The version of the write-only password, if one is used.
    pub password_version: Option<i64>,
}

/// The optional public entry point: an Application Load Balancer in front of web.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerSettings {
    /// ACM (or IAM server) certificate for HTTPS; without one the load balancer speaks plain HTTP.
    pub certificate_arn: Option<String>,
    /// Who may reach the load balancer.
    pub allowed_cidr_blocks: Vec<String>,
    /// Public subnets of its own, when the tasks' subnets are private.
    pub subnet_ids: Option<Vec<String>>,
}

/// Time limits per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Create.
    pub create: Duration,
    /// Update.
    pub update: Duration,
    /// Delete.
    pub delete: Duration,
}

/// Everything the parts need to know about the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    /// The stack's name.
    pub name: String,
    /// Archive bucket name.
    pub archive_bucket: String,
    /// Whether destroy may delete a non-empty archive bucket.
    pub archive_force_destroy: bool,
    /// Whether destroy may delete ECR repositories that hold images.
    pub images_force_destroy: bool,
    /// State bucket name.
    pub state_bucket: String,
    /// The bucket the archive's access logs go to.
    pub access_log_bucket: String,
    /// CloudWatch log group name.
    pub log_group: String,
    /// Log retention in days.
    pub log_retention_days: i64,
    /// The customer-managed KMS key every encrypting part uses; `None`: AWS-managed encryption.
    pub kms_key_arn: Option<String>,
    /// Provider default tags merged with the resource's tags.
    pub tags_all: BTreeMap<String, String>,
    /// The region.
    pub region: String,
    /// The partition, for ARNs.
    pub partition: String,
    /// VPC override (else the default VPC).
    pub vpc_id: Option<String>,
    /// Subnet override (else the VPC's default subnets).
    pub subnet_ids: Option<Vec<String>>,
    /// Tag of the DataVault images.
    pub image_tag: String,
    /// EC2 capacity.
    pub cluster: ClusterSettings,
    /// Per service, keyed by the names in [`SERVICES`].
    pub services: BTreeMap<String, ServiceSettings>,
    /// The database.
    pub database: DatabaseSettings,
    /// The public entry point, when the configuration asks for one; without it web stays private.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// The configuration's version of the RabbitMQ password: a new one generates a new password.
    pub rabbitmq_password_version: Option<i64>,
    /// Take over resources with the stack's names that carry no stack tag.
    pub adopt_untagged: bool,
    /// Wait for services to become stable.
    pub wait_for_steady_state: bool,
    /// Time limits.
    pub timeouts: Timeouts,
}

/// The default archive bucket name.
pub fn default_archive_bucket(name: &str) -> String {
    format!("{name}-archive")
}

/// The default state bucket name.
pub fn default_state_bucket(name: &str) -> String {
    format!("{name}-state")
}

/// The name of the bucket the archive's server access logs go to.
pub fn access_log_bucket_name(name: &str) -> String {
    format!("{name}-access-logs")
}

/// The log group name.
pub fn log_group_name(name: &str) -> String {
    format!("/datavault/{name}")
}

/// An ECR repository name.
pub fn repository_name(name: &str, component: &str) -> String {
    format!("{name}/{component}")
}

/// The private DNS namespace the services find each other in.
pub fn namespace_name(name: &str) -> String {
    format!("{name}.datavault.internal")
}

/// An S3 bucket ARN.
pub fn bucket_arn(partition: &str, bucket: &str) -> String {
    format!("arn:{partition}:s3:::{bucket}")
}

/// Provider default tags overlaid with the resource's tags.
pub fn merged_tags(defaults: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = defaults.clone();
    all.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Parses durations such as `60m`, `1h30m` or `90s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    crate::framework::duration::parse(text)
}

fn object(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Replaces every unknown inside `planned` with the value at the same place in `known` (unknowns the
/// provider resolves at apply, where the configuration left a setting to it).
pub fn resolve_unknowns(planned: &Value, known: &Value) -> Value {
    match (planned, known) {
        (Value::Unknown, known) => known.clone(),
        (Value::Map(entries), Value::Map(known_entries)) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), resolve_unknowns(v, known_entries.get(k).unwrap_or(&Value::Null))))
                .collect(),
        ),
        (other, _) => other.clone(),
    }
}

fn string_or(value: &Value, default: &str) -> String {
    value.as_str().map_or_else(|| default.to_string(), str::to_string)
}

fn int_or(value: &Value, default: i64) -> i64 {
    value.as_i64().unwrap_or(default)
}

fn bool_or(value: &Value, default: bool) -> bool {
    value.as_bool().unwrap_or(default)
}

impl ClusterSettings {
    fn from_value(v: &Value) -> Self {
        use cluster_defaults as d;
        ClusterSettings {
            instance_type: string_or(v.get("instance_type"), d::INSTANCE_TYPE),
            min_size: int_or(v.get("min_size"), d::MIN_SIZE),
            max_size: int_or(v.get("max_size"), d::MAX_SIZE),
            desired_capacity: int_or(v.get("desired_capacity"), d::DESIRED_CAPACITY),
            ami_id: v.get("ami_id").as_str().map(str::to_string),
            admin_cidr_blocks: v.get("admin_cidr_blocks").as_string_list().unwrap_or_default(),
        }
    }
}

impl ServiceSettings {
    fn from_value(service: &str, v: &Value) -> Self {
        let defaults = super::schema::service_defaults(service);
        ServiceSettings {
            image: v.get("image").as_str().map(str::to_string),
            cpu: int_or(v.get("cpu"), defaults.0),
            memory: int_or(v.get("memory"), defaults.1),
            desired_count: int_or(v.get("desired_count"), 1),
            environment: v.get("environment").as_string_map().unwrap_or_default(),
        }
    }
}

impl DatabaseSettings {
    fn from_value(v: &Value) -> Self {
        use database_defaults as d;
        DatabaseSettings {
            instance_class: string_or(v.get("instance_class"), d::INSTANCE_CLASS),
            allocated_storage: int_or(v.get("allocated_storage"), d::ALLOCATED_STORAGE),
            engine: string_or(v.get("engine"), d::ENGINE),
            engine_version: string_or(v.get("engine_version"), d::ENGINE_VERSION),
            backup_retention_days: int_or(v.get("backup_retention_days"), d::BACKUP_RETENTION_DAYS),
            deletion_protection: bool_or(v.get("deletion_protection"), true),
            skip_final_snapshot: bool_or(v.get("skip_final_snapshot"), false),
            multi_az: bool_or(v.get("multi_az"), false),
            password_version: v.get("password_wo_version").as_i64(),
        }
    }
}

impl LoadBalancerSettings {
    /// `None` for a null object: no load balancer.
    fn from_value(v: &Value) -> Option<Self> {
        if v.is_null() {
            return None;
        }
        Some(LoadBalancerSettings {
            certificate_arn: v.get("certificate_arn").as_str().filter(|a| !a.is_empty()).map(str::to_string),
            subnet_ids: v.get("subnet_ids").as_string_list().filter(|s| !s.is_empty()),
            allowed_cidr_blocks: v
                .get("allowed_cidr_blocks")
                .as_string_list()
                .unwrap_or_else(|| load_balancer_defaults::ALLOWED_CIDR_BLOCKS.iter().map(|c| c.to_string()).collect()),
        })
    }

    /// Whether the load balancer speaks HTTPS.
    pub fn https(&self) -> bool {
        self.certificate_arn.is_some()
    }
}

impl Timeouts {
    fn from_value(v: &Value) -> Self {
        let get = |name: &str| v.get(name).as_str().and_then(parse_duration).unwrap_or(DEFAULT_TIMEOUT);
        Timeouts { create: get("create"), update: get("update"), delete: get("delete") }
    }
}

impl StackSpec {
    /// Derives the spec from a wholly known planned or stored value.
    pub fn from_value(value: &Value, aws: &AwsContext) -> StackSpec {
        StackSpec::from_value_in(value, &aws.default_tags, &aws.region, &aws.partition)
    }

    /// [`StackSpec::from_value`] with the provider's settings given one by one (tests have no AWS clients).
    pub fn from_value_in(
        value: &Value,
        default_tags: &BTreeMap<String, String>,
        region: &str,
        partition: &str,
    ) -> StackSpec {
        let name = value.get("name").as_str().unwrap_or_default().to_string();
        let tags = value.get("tags").as_string_map().unwrap_or_default();
        let services = SERVICES
            .iter()
            .map(|s| (s.to_string(), ServiceSettings::from_value(s, value.get("services").get(s))))
            .collect();
        StackSpec {
            archive_bucket: value
                .get("archive_bucket_name")
                .as_str()
                .map_or_else(|| default_archive_bucket(&name), str::to_string),
            archive_force_destroy: bool_or(value.get("archive_force_destroy"), false),
            images_force_destroy: bool_or(value.get("images_force_destroy"), false),
            state_bucket: value
                .get("state_bucket_name")
                .as_str()
                .map_or_else(|| default_state_bucket(&name), str::to_string),
            access_log_bucket: access_log_bucket_name(&name),
            log_group: log_group_name(&name),
            log_retention_days: int_or(value.get("log_retention_days"), DEFAULT_LOG_RETENTION_DAYS),
            kms_key_arn: value.get("kms_key_arn").as_str().filter(|k| !k.is_empty()).map(str::to_string),
            tags_all: merged_tags(default_tags, &tags),
            region: region.to_string(),
            partition: partition.to_string(),
            vpc_id: value.get("vpc_id").as_str().map(str::to_string),
            subnet_ids: value.get("subnet_ids").as_string_list().filter(|s| !s.is_empty()),
            image_tag: string_or(value.get("image_tag"), DEFAULT_IMAGE_TAG),
            cluster: ClusterSettings::from_value(value.get("cluster")),
            services,
            database: DatabaseSettings::from_value(value.get("database")),
            load_balancer: LoadBalancerSettings::from_value(value.get("load_balancer")),
            rabbitmq_password_version: value.get("rabbitmq_password_version").as_i64(),
            adopt_untagged: bool_or(value.get("adopt_untagged_resources"), false),
            wait_for_steady_state: bool_or(value.get("wait_for_steady_state"), true),
            timeouts: Timeouts::from_value(value.get("timeouts")),
            name,
        }
    }

    /// The tags one part carries: all user tags plus the stack and part markers.
    pub fn part_tags(&self, part: &str) -> BTreeMap<String, String> {
        let mut tags = self.tags_all.clone();
        tags.insert(STACK_TAG.to_string(), self.name.clone());
        tags.insert(PART_TAG.to_string(), part.to_string());
        tags
    }

    /// A service's settings.
    pub fn service(&self, service: &str) -> &ServiceSettings {
        &self.services[service]
    }

    /// The image a service runs: its override, else the stack's repository at `image_tag` (RabbitMQ: the
    /// public management image).
    pub fn image(&self, service: &str, repository_url: Option<&str>) -> String {
        if let Some(image) = &self.service(service).image {
            return image.clone();
        }
        match repository_url {
            Some(url) => format!("{url}:{}", self.image_tag),
            None => RABBITMQ_IMAGE.to_string(),
        }
    }

    /// The `cluster`, `services` and `database` objects as this spec has them (defaults filled in), used to
    /// record what apply made where the configuration left those objects to the provider.
    pub fn settings_values(&self) -> [(&'static str, Value); 3] {
        let n = |v: i64| Value::Number(v as f64);
        let c = &self.cluster;
        let cluster = object(vec![
            ("instance_type", Value::string(&c.instance_type)),
            ("min_size", n(c.min_size)),
            ("max_size", n(c.max_size)),
            ("desired_capacity", n(c.desired_capacity)),
            ("ami_id", Value::opt_string(c.ami_id.clone())),
            (
                "admin_cidr_blocks",
                if c.admin_cidr_blocks.is_empty() { Value::Null } else { Value::string_list(&c.admin_cidr_blocks) },
            ),
        ]);
        let services = Value::Map(
            self.services
                .iter()
                .map(|(name, s)| {
                    let value = object(vec![
                        ("image", Value::opt_string(s.image.clone())),
                        ("cpu", n(s.cpu)),
                        ("memory", n(s.memory)),
                        ("desired_count", n(s.desired_count)),
                        (
                            "environment",
                            if s.environment.is_empty() { Value::Null } else { Value::string_map(&s.environment) },
                        ),
                    ]);
                    (name.clone(), value)
                })
                .collect(),
        );
        let d = &self.database;
        let database = object(vec![
            ("instance_class", Value::string(&d.instance_class)),
            ("allocated_storage", n(d.allocated_storage)),
            ("engine", Value::string(&d.engine)),
            ("engine_version", Value::string(&d.engine_version)),
            ("backup_retention_days", n(d.backup_retention_days)),
            ("deletion_protection", Value::Bool(d.deletion_protection)),
            ("skip_final_snapshot", Value::Bool(d.skip_final_snapshot)),
            ("multi_az", Value::Bool(d.multi_az)),
            ("password_wo", Value::Null),
            ("password_wo_version", d.password_version.map_or(Value::Null, n)),
        ]);
        [("cluster", cluster), ("services", services), ("database", database)]
    }

    /// Total awsvpc tasks the services ask for.
    pub fn total_tasks(&self) -> i64 {
        self.services.values().map(|s| s.desired_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_terraform_timeouts() {
        assert_eq!(parse_duration("60m"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("0s"), None);
    }

    #[test]
    fn a_load_balancer_is_wanted_only_when_configured() {
        let spec = |value: Value| StackSpec::from_value_in(&value, &BTreeMap::new(), "eu-west-2", "aws");
        let stack = |lb: Value| object(vec![("name", Value::string("vault")), ("load_balancer", lb)]);
        assert_eq!(spec(stack(Value::Null)).load_balancer, None);
        let default = spec(stack(object(vec![]))).load_balancer.unwrap();
        assert_eq!(default.allowed_cidr_blocks, ["0.0.0.0/0"]);
        assert!(!default.https());
        let narrowed = spec(stack(object(vec![
            ("certificate_arn", Value::string("arn:aws:acm:eu-west-2:123456789012:certificate/1")),
            ("allowed_cidr_blocks", Value::string_list(["192.0.2.0/24"])),
        ])))
        .load_balancer
        .unwrap();
        assert_eq!(narrowed.allowed_cidr_blocks, ["192.0.2.0/24"]);
        assert!(narrowed.https());
    }

    #[test]
    fn names_derive_from_the_stack_name() {
        assert_eq!(default_archive_bucket("vault"), "vault-archive");
        assert_eq!(repository_name("vault", "web"), "vault/web");
        assert_eq!(namespace_name("vault"), "vault.datavault.internal");
    }
}
