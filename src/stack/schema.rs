//! The `datavault_stack` schema and the static checks of its configuration.

use crate::aws::logs::ALLOWED_RETENTION_DAYS;
use crate::framework::{Attribute, AttributePath, Block, Diagnostics, Schema, Type, Value};

/// Default log retention: one year, the AWS Foundational Security Best Practices minimum (CloudWatch.16).
pub const DEFAULT_LOG_RETENTION_DAYS: i64 = 365;
/// Longest stack name: it prefixes names with tight limits (load balancers and target groups: 32).
pub const MAX_NAME_LENGTH: usize = 24;

/// Defaults of the `cluster` object.
pub mod cluster_defaults {
    /// EC2 instance type of the container instances.
    pub const INSTANCE_TYPE: &str = "t3.medium";
    /// Smallest group size.
    pub const MIN_SIZE: i64 = 2;
    /// Largest group size.
    pub const MAX_SIZE: i64 = 4;
    /// Instances normally running: two t3.medium hold the four default awsvpc tasks (two ENIs each).
    pub const DESIRED_CAPACITY: i64 = 2;
}

/// Defaults of the `database` object.
pub mod database_defaults {
    /// RDS instance class.
    pub const INSTANCE_CLASS: &str = "db.t3.micro";
    /// Storage in GiB.
    pub const ALLOCATED_STORAGE: i64 = 20;
    /// MySQL major version.
    pub const ENGINE_VERSION: &str = "8.0";
    /// Days of automated backups (FSBP RDS.11).
    pub const BACKUP_RETENTION_DAYS: i64 = 7;
}

/// Defaults of the `load_balancer` object.
pub mod load_balancer_defaults {
    /// Who may reach a public entry point unless the configuration narrows it: everyone, which is what
    /// "public" means; institutions usually narrow it to their own ranges.
    pub const ALLOWED_CIDR_BLOCKS: [&str; 1] = ["0.0.0.0/0"];
}

/// Image tag deployed when none is given.
pub const DEFAULT_IMAGE_TAG: &str = "latest";
/// The public RabbitMQ image the reference deployment used (management plugin included).
pub const RABBITMQ_IMAGE: &str = "rabbitmq:3-management-alpine";
/// The four DataVault services.
pub const SERVICES: [&str; 4] = ["web", "broker", "worker", "rabbitmq"];

fn n(value: i64) -> Value {
    Value::Number(value as f64)
}

fn service_attributes(name: &str) -> Vec<Attribute> {
    let (cpu, memory) = (256, 512);
    vec![
        Attribute::optional(
            "image",
            Type::String,
            &format!(
                "Full image reference for {name}, overriding the default (the stack's ECR repository at `image_tag`; for rabbitmq `{RABBITMQ_IMAGE}`)."
            ),
        ),
        Attribute::optional_computed(
            "cpu",
            Type::Number,
            &format!("CPU units reserved for the {name} task (1024 = one vCPU). Defaults to {cpu}."),
        )
        .default(n(cpu)),
        Attribute::optional_computed(
            "memory",
            Type::Number,
            &format!("Memory in MiB for the {name} task. Defaults to {memory}."),
        )
        .default(n(memory)),
        Attribute::optional_computed(
            "desired_count",
            Type::Number,
            &format!("Number of {name} tasks to run. Defaults to 1."),
        )
        .default(n(1)),
        Attribute::optional(
            "environment",
            Type::map_of_strings(),
            &format!(
                "Extra environment variables for the {name} container, on top of the ones the stack wires (never put passwords here: the stack passes them as ECS secrets)."
            ),
        ),
    ]
}

/// The resource schema.
pub fn stack_schema() -> Schema {
    use cluster_defaults as c;
    use database_defaults as d;
    let attributes = vec![
        Attribute::required("name", Type::String, "Name of the stack. Every AWS resource of the stack is named from it and tagged `datavault:stack = <name>`. 3 to 24 characters: lowercase letters, digits and hyphens, starting with a letter. Changing it replaces the whole stack.").requires_replace(),
        Attribute::optional("tags", Type::map_of_strings(), "Tags for every AWS resource of the stack, on top of the provider's `default_tags`."),
        Attribute::optional_computed("archive_bucket_name", Type::String, "Name of the S3 bucket holding archived research data. Defaults to `<name>-archive`. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("archive_force_destroy", Type::Bool, "Allow destroy to delete the archive bucket while it still holds data (every object version is deleted). Defaults to `false`: destroy stops with an error instead.").default(Value::Bool(false)),
        Attribute::optional_computed("state_bucket_name", Type::String, "Name of the S3 bucket for Terraform state. Defaults to `<name>-state`. Destroy never deletes it: it is retained and reported. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("log_retention_days", Type::Number, "Days CloudWatch Logs keeps the stack's logs. One of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653. Defaults to 365.").default(n(DEFAULT_LOG_RETENTION_DAYS)),
        Attribute::optional_computed("vpc_id", Type::String, "VPC to deploy into. Defaults to the region's default VPC. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("subnet_ids", Type::list_of_strings(), "Subnets (of `vpc_id`) for instances, tasks, the database and the file system; use at least two availability zones. Defaults to the default VPC's default subnets."),
        Attribute::optional_computed("image_tag", Type::String, "Tag of the web, broker and worker images in the stack's ECR repositories. Defaults to `latest`; prefer a version: the repositories keep tags immutable.").default(Value::string(DEFAULT_IMAGE_TAG)),
        Attribute::optional_computed_object("cluster", vec![
            Attribute::optional_computed("instance_type", Type::String, &format!("EC2 instance type of the ECS container instances. Defaults to `{}`. Changing it rolls the instances through a new launch template version.", c::INSTANCE_TYPE)).default(Value::string(c::INSTANCE_TYPE)),
            Attribute::optional_computed("min_size", Type::Number, &format!("Minimum number of instances. Defaults to {}.", c::MIN_SIZE)).default(n(c::MIN_SIZE)),
            Attribute::optional_computed("max_size", Type::Number, &format!("Maximum number of instances. Defaults to {}.", c::MAX_SIZE)).default(n(c::MAX_SIZE)),
            Attribute::optional_computed("desired_capacity", Type::Number, &format!("Instances normally running. Defaults to {}. Each task uses one network interface (awsvpc), so the plan checks that the services fit.", c::DESIRED_CAPACITY)).default(n(c::DESIRED_CAPACITY)),
            Attribute::optional("ami_id", Type::String, "AMI of the instances. Defaults to the current ECS-optimized Amazon Linux 2023 AMI from the public SSM parameter."),
            Attribute::optional("admin_cidr_blocks", Type::list_of_strings(), "CIDR blocks allowed to reach the instances over SSH. Empty by default: no administrative port is open."),
        ], "The EC2 capacity the services run on: an Auto Scaling group of ECS container instances."),
        Attribute::optional_computed_object("services", SERVICES.iter().map(|s| Attribute::optional_computed_object(s, service_attributes(s), &format!("Settings of the {s} service."))).collect(), "Per-service settings of the four DataVault services (web, broker, worker, rabbitmq)."),
        Attribute::optional_computed_object("database", vec![
            Attribute::optional_computed("instance_class", Type::String, &format!("RDS instance class. Defaults to `{}`. Changed in place.", d::INSTANCE_CLASS)).default(Value::string(d::INSTANCE_CLASS)),
            Attribute::optional_computed("allocated_storage", Type::Number, &format!("Storage in GiB (can grow, never shrink). Defaults to {}.", d::ALLOCATED_STORAGE)).default(n(d::ALLOCATED_STORAGE)),
            Attribute::optional_computed("engine_version", Type::String, &format!("MySQL version. Defaults to `{}`; minor versions are upgraded automatically.", d::ENGINE_VERSION)).default(Value::string(d::ENGINE_VERSION)),
            Attribute::optional_computed("backup_retention_days", Type::Number, &format!("Days of automated backups (1 to 35). Defaults to {}.", d::BACKUP_RETENTION_DAYS)).default(n(d::BACKUP_RETENTION_DAYS)),
            Attribute::optional_computed("deletion_protection", Type::Bool, "Protect the database from deletion. Defaults to `true`: set it to `false` and apply before destroying the stack.").default(Value::Bool(true)),
            Attribute::optional_computed("skip_final_snapshot", Type::Bool, "Delete the database without a final snapshot. Defaults to `false`: destroy takes a snapshot named `<name>-final` (or `-final-2`, ... if taken).").default(Value::Bool(false)),
            Attribute::optional_computed("multi_az", Type::Bool, "Run a standby in a second availability zone. Defaults to `false`.").default(Value::Bool(false)),
            Attribute::optional("password_wo", Type::String, "Master password, write-only: sent to RDS, never stored in plan or state (Terraform >= 1.11). Without it, RDS generates and rotates the password in Secrets Manager.").sensitive().write_only(),
            Attribute::optional("password_wo_version", Type::Number, "Change this number to send a new `password_wo` to RDS (write-only values cannot be compared)."),
        ], "The MySQL database (RDS): encrypted, private, backed up."),
        Attribute::optional_object("load_balancer", vec![
            Attribute::optional("certificate_arn", Type::String, "ARN of the ACM certificate (an IAM server certificate also works) for HTTPS on port 443, with a TLS 1.2+ policy; port 80 then only redirects to HTTPS. Without it the load balancer serves plain HTTP on port 80, which is meant for trials only."),
            Attribute::optional_computed("allowed_cidr_blocks", Type::list_of_strings(), "IPv4 CIDR blocks allowed to reach the load balancer. Defaults to `[\"0.0.0.0/0\"]`: a public entry point is open to everyone unless narrowed, e.g. to the institution's address ranges.").default(Value::string_list(load_balancer_defaults::ALLOWED_CIDR_BLOCKS)),
            Attribute::computed("dns_name", Type::String, "Public DNS name of the load balancer: point a CNAME or alias record of the web app's domain at it."),
            Attribute::computed("arn", Type::String, "ARN of the load balancer."),
        ], "Optional public entry point: an internet-facing Application Load Balancer in front of the web service, in one subnet per availability zone of `subnet_ids` (which must then be public subnets, routed to an internet gateway). Only the load balancer may reach web's port 8080. Without `load_balancer` the web app stays private, reachable only inside the VPC; removing it deletes the load balancer."),
        Attribute::optional_computed("wait_for_steady_state", Type::Bool, "Wait for the services to reach a steady state (tasks running and healthy) before finishing apply. Defaults to `true`.").default(Value::Bool(true)),
        Attribute::optional_object("timeouts", vec![
            Attribute::optional("create", Type::String, "How long create may take, e.g. `60m`. Defaults to 60m."),
            Attribute::optional("update", Type::String, "How long update may take. Defaults to 60m."),
            Attribute::optional("delete", Type::String, "How long destroy may take. Defaults to 60m."),
        ], "Limits on how long apply waits for AWS."),
        Attribute::computed("id", Type::String, "The stack's name, which is also its import id."),
        Attribute::computed("region", Type::String, "AWS region of the stack. A provider configured for another region replaces the stack.").requires_replace(),
        Attribute::computed("tags_all", Type::map_of_strings(), "All tags of the stack's resources: the provider's `default_tags` merged with `tags`."),
        Attribute::computed("archive_bucket_arn", Type::String, "ARN of the archive bucket."),
        Attribute::computed("state_bucket_arn", Type::String, "ARN of the state bucket."),
        Attribute::computed("ecr_repository_urls", Type::map_of_strings(), "Repository URLs to push the DataVault images to, keyed by `web`, `broker` and `worker`."),
        Attribute::computed("log_group_name", Type::String, "Name of the CloudWatch log group (`/datavault/<name>`)."),
        Attribute::computed("log_group_arn", Type::String, "ARN of the CloudWatch log group."),
        Attribute::computed("security_group_ids", Type::map_of_strings(), "Security group ids, keyed by `instances`, `services`, `database` and `file_system`, and `load_balancer` with a load balancer."),
        Attribute::computed("cluster_arn", Type::String, "ARN of the ECS cluster."),
        Attribute::computed("autoscaling_group_name", Type::String, "Name of the Auto Scaling group of container instances."),
        Attribute::computed("launch_template_id", Type::String, "Id of the instances' launch template."),
        Attribute::computed("service_arns", Type::map_of_strings(), "ARNs of the ECS services, keyed by service."),
        Attribute::computed("service_discovery_names", Type::map_of_strings(), "Private DNS names the services reach each other by, keyed by service (e.g. `broker.<name>.datavault.internal`)."),
        Attribute::computed("database_endpoint", Type::String, "Address of the MySQL database."),
        Attribute::computed("database_secret_arn", Type::String, "ARN of the Secrets Manager secret holding the database master password (managed by RDS unless `password_wo` is used). The password itself is never in state."),
        Attribute::computed("rabbitmq_secret_arn", Type::String, "ARN of the Secrets Manager secret holding the generated RabbitMQ password."),
        Attribute::computed("file_system_id", Type::String, "Id of the EFS file system (RabbitMQ data and the shared /tmp/datavault working folder)."),
        Attribute::computed("web_url", Type::String, "Where the web app answers: with `load_balancer`, `https://<dns_name>/datavault-webapp/` (`http://` without a certificate); without, its service discovery name and path, inside the VPC only."),
        Attribute::computed("drift", Type::list_of_strings(), "Differences between the stack's AWS resources and their managed settings, found by the last refresh. Empty after every apply, which repairs them."),
    ];
    Schema {
        version: 0,
        block: Block {
            attributes,
            blocks: vec![],
            description: "A complete DataVault deployment on AWS, managed as one resource.".into(),
        },
    }
}

/// Why a stack name is invalid, if it is.
pub fn name_problem(name: &str) -> Option<String> {
    let len = name.chars().count();
    if !(3..=MAX_NAME_LENGTH).contains(&len) {
        return Some(format!("must be 3 to {MAX_NAME_LENGTH} characters long, not {len}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    if name.ends_with('-') {
        return Some("must not end with a hyphen".into());
    }
    if name.contains("--") {
        return Some("must not contain two hyphens in a row".into());
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Some(format!("may contain only lowercase letters, digits and hyphens, not {bad:?}"));
    }
    None
}

/// Why a bucket name is invalid, if it is (the S3 naming rules that matter in practice).
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Some(format!("must be 3 to 63 characters long, not {len}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    if name.chars().any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')) {
        return Some("may contain only lowercase letters, digits, hyphens and dots".into());
    }
    if name.contains("..") {
        return Some("must not contain two dots in a row".into());
    }
    None
}

/// Checks the known parts of a configuration.
pub fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if let Some(name) = config.get("name").as_str()
        && let Some(problem) = name_problem(name)
    {
        diags.attribute_error(
                AttributePath::root("name"),
                "Invalid Stack Name",
                format!("The stack name {name:?} {problem}. It names S3 buckets, ECR repositories and other AWS resources, so it is restricted to what all of them accept."),
            );
    }
    for attribute in ["archive_bucket_name", "state_bucket_name"] {
        if let Some(bucket) = config.get(attribute).as_str()
            && let Some(problem) = bucket_name_problem(bucket)
        {
            diags.attribute_error(
                AttributePath::root(attribute),
                "Invalid Bucket Name",
                format!("The bucket name {bucket:?} {problem}."),
            );
        }
    }
    if let (Some(archive), Some(state)) =
        (config.get("archive_bucket_name").as_str(), config.get("state_bucket_name").as_str())
        && archive == state
    {
        diags.attribute_error(
            AttributePath::root("state_bucket_name"),
            "Same Bucket For Archive And State",
            "The archive bucket and the state bucket must be different buckets.",
        );
    }
    let retention = config.get("log_retention_days");
    if let Some(days) = retention.as_f64()
        && (days.fract() != 0.0 || !ALLOWED_RETENTION_DAYS.contains(&(days as i64)))
    {
        diags.attribute_error(
            AttributePath::root("log_retention_days"),
            "Invalid Log Retention",
            format!(
                "CloudWatch Logs cannot keep logs for {days} days. Use one of: {}.",
                ALLOWED_RETENTION_DAYS.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    validate_cluster(config.get("cluster"), &mut diags);
    validate_database(config.get("database"), &mut diags);
    validate_services(config.get("services"), &mut diags);
    validate_load_balancer(config.get("load_balancer"), &mut diags);
    let timeouts = config.get("timeouts");
    for operation in ["create", "update", "delete"] {
        if let Some(text) = timeouts.get(operation).as_str()
            && super::model::parse_duration(text).is_none()
        {
            diags.attribute_error(
                AttributePath::root("timeouts").attribute(operation),
                "Invalid Timeout",
                format!("{text:?} is not a duration such as \"60m\", \"1h30m\" or \"90s\"."),
            );
        }
    }
    if let Some(tags) = config.get("tags").as_map() {
        for key in tags.keys() {
            if key.starts_with("datavault:") || key.starts_with("aws:") {
                diags.attribute_error(
                    AttributePath::root("tags").key(key),
                    "Reserved Tag Key",
                    format!("The tag key {key:?} is reserved: keys starting with \"datavault:\" are set by the provider and \"aws:\" by AWS."),
                );
            }
        }
    }
    diags
}

fn validate_cluster(cluster: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("cluster");
    let size = |name: &str| cluster.get(name).as_f64();
    for name in ["min_size", "max_size", "desired_capacity"] {
        if let Some(n) = size(name)
            && (n < 0.0 || n.fract() != 0.0)
        {
            diags.attribute_error(
                path.attribute(name),
                "Invalid Group Size",
                format!("{name} must be a whole number of instances, not {n}."),
            );
        }
    }
    let (min, max, desired) = (size("min_size"), size("max_size"), size("desired_capacity"));
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        diags.attribute_error(
            path.attribute("min_size"),
            "Invalid Group Size",
            format!("min_size ({min}) is larger than max_size ({max})."),
        );
    }
    if let Some(desired) = desired
        && (min.is_some_and(|m| desired < m) || max.is_some_and(|m| desired > m))
    {
        diags.attribute_error(
            path.attribute("desired_capacity"),
            "Invalid Group Size",
            format!("desired_capacity ({desired}) must lie between min_size and max_size."),
        );
    }
    if let Some(blocks) = cluster.get("admin_cidr_blocks").as_list() {
        for (i, block) in blocks.iter().enumerate() {
            let Some(text) = block.as_str() else { continue };
            let problem = if !is_cidr(text) {
                Some(format!("{text:?} is not a CIDR block such as \"192.0.2.0/24\"."))
            } else if text.ends_with("/0") {
                Some(format!(
                    "{text:?} would open SSH to the whole internet. Use the address ranges of your administrators (FSBP EC2.13)."
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                diags.attribute_error(
                    path.attribute("admin_cidr_blocks").index(i as i64),
                    "Invalid Admin CIDR Block",
                    problem,
                );
            }
        }
    }
}

fn is_cidr(text: &str) -> bool {
    let Some((address, bits)) = text.split_once('/') else { return false };
    let Ok(bits) = bits.parse::<u8>() else { return false };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn validate_database(database: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("database");
    if let Some(days) = database.get("backup_retention_days").as_f64()
        && !(1.0..=35.0).contains(&days)
    {
        diags.attribute_error(
            path.attribute("backup_retention_days"),
            "Invalid Backup Retention",
            format!("RDS keeps automated backups for 1 to 35 days; {days} is outside that (0 would turn backups off, FSBP RDS.11)."),
        );
    }
    if let Some(gib) = database.get("allocated_storage").as_f64()
        && !(20.0..=65536.0).contains(&gib)
    {
        diags.attribute_error(
            path.attribute("allocated_storage"),
            "Invalid Storage Size",
            format!("MySQL storage must be 20 to 65536 GiB, not {gib}."),
        );
    }
    if let Some(class) = database.get("instance_class").as_str()
        && !class.starts_with("db.")
    {
        diags.attribute_error(
            path.attribute("instance_class"),
            "Invalid Instance Class",
            format!("{class:?} is not an RDS instance class such as \"db.t3.micro\"."),
        );
    }
}

/// Why a certificate ARN cannot be one a load balancer listener accepts, if it cannot: an ACM certificate
/// (`arn:<partition>:acm:<region>:<account>:certificate/<id>`) or an IAM server certificate
/// (`arn:<partition>:iam::<account>:server-certificate/<name>`).
pub fn certificate_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let account_ok = |a: &str| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit());
    let ok = match parts[..] {
        ["arn", partition, "acm", region, account, resource] => {
            !partition.is_empty()
                && !region.is_empty()
                && account_ok(account)
                && resource.strip_prefix("certificate/").is_some_and(|id| !id.is_empty())
        }
        ["arn", partition, "iam", "", account, resource] => {
            !partition.is_empty()
                && account_ok(account)
                && resource.strip_prefix("server-certificate/").is_some_and(|name| !name.is_empty())
        }
        _ => false,
    };
    (!ok).then(|| {
        format!(
            "{arn:?} is not a certificate ARN such as \"arn:aws:acm:eu-west-2:123456789012:certificate/<id>\" (ACM) or \
             \"arn:aws:iam::123456789012:server-certificate/<name>\""
        )
    })
}

fn validate_load_balancer(load_balancer: &Value, diags: &mut Diagnostics) {
    let path = AttributePath::root("load_balancer");
    if let Some(arn) = load_balancer.get("certificate_arn").as_str()
        && let Some(problem) = certificate_arn_problem(arn)
    {
        diags.attribute_error(
            path.attribute("certificate_arn"),
            "Invalid Certificate ARN",
            format!(
                "{problem}. The HTTPS listener needs the ARN of a certificate in ACM (or IAM) of the stack's region."
            ),
        );
    }
    let Some(blocks) = load_balancer.get("allowed_cidr_blocks").as_list() else { return };
    if blocks.is_empty() {
        diags.attribute_error(
            path.attribute("allowed_cidr_blocks"),
            "No One Allowed In",
            "An empty allowed_cidr_blocks lets nobody reach the load balancer. List the address ranges allowed in, \
             or remove load_balancer to keep the web app private.",
        );
    }
    for (i, block) in blocks.iter().enumerate() {
        let Some(text) = block.as_str() else { continue };
        let problem = if !is_cidr(text) {
            format!("{text:?} is not a CIDR block such as \"192.0.2.0/24\".")
        } else if text.contains(':') {
            format!("{text:?} is an IPv6 block, but the load balancer has IPv4 addresses only. Use IPv4 blocks.")
        } else {
            continue;
        };
        diags.attribute_error(
            path.attribute("allowed_cidr_blocks").index(i as i64),
            "Invalid Allowed CIDR Block",
            problem,
        );
    }
}

/// Names of variables the stack wires itself; user environment must not shadow them.
const WIRED_ENVIRONMENT: &[&str] = &[
    "MYSQL_HOST",
    "MYSQL_PORT",
    "MYSQL_USER",
    "MYSQL_DATABASE",
    "MYSQL_PASSWORD",
    "RABBITMQ_HOST",
    "RABBITMQ_PORT",
    "RABBITMQ_USER",
    "RABBITMQ_PASSWORD",
    "RABBITMQ_DEFAULT_USER",
    "RABBITMQ_DEFAULT_PASS",
    "AWS_S3_BUCKET",
    "AWS_REGION",
    "BROKER_HOST",
    "BROKER_PORT",
];

fn validate_services(services: &Value, diags: &mut Diagnostics) {
    for service in SERVICES {
        let settings = services.get(service);
        let path = AttributePath::root("services").attribute(service);
        if let Some(count) = settings.get("desired_count").as_f64()
            && (count < 0.0 || count.fract() != 0.0)
        {
            diags.attribute_error(
                path.attribute("desired_count"),
                "Invalid Task Count",
                format!("desired_count must be a whole number, not {count}."),
            );
        }
        if service == "rabbitmq" && settings.get("desired_count").as_f64().is_some_and(|c| c > 1.0) {
            diags.attribute_error(
                path.attribute("desired_count"),
                "One RabbitMQ Only",
                "RabbitMQ keeps its data on one shared directory; two brokers would corrupt it. Use 0 or 1.",
            );
        }
        if let Some(cpu) = settings.get("cpu").as_f64()
            && !(128.0..=16384.0).contains(&cpu)
        {
            diags.attribute_error(
                path.attribute("cpu"),
                "Invalid CPU",
                format!("cpu is in units of 1/1024 vCPU, from 128 to 16384; not {cpu}."),
            );
        }
        if let Some(memory) = settings.get("memory").as_f64()
            && !(128.0..=122880.0).contains(&memory)
        {
            diags.attribute_error(
                path.attribute("memory"),
                "Invalid Memory",
                format!("memory is in MiB, from 128 to 122880; not {memory}."),
            );
        }
        let Some(environment) = settings.get("environment").as_map() else { continue };
        for key in environment.keys() {
            let upper = key.to_ascii_uppercase();
            let problem = if WIRED_ENVIRONMENT.contains(&upper.as_str()) {
                Some(format!("{key} is set by the stack itself (it wires the services together); remove it."))
            } else if ["PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY"].iter().any(|w| upper.contains(w)) {
                Some(format!(
                    "{key} looks like a secret. Plain environment variables are visible to anyone who can read the task \
                     definition (FSBP ECS.8); store it in Secrets Manager instead."
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                diags.attribute_error(
                    path.attribute("environment").key(key),
                    "Environment Variable Not Allowed",
                    problem,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_must_fit_every_aws_naming_rule() {
        assert_eq!(name_problem("rdss-datavault"), None);
        assert!(name_problem("Bad_Name").is_some());
        assert!(name_problem("x").is_some());
        assert!(name_problem("1abc").is_some());
        assert!(name_problem("abc-").is_some());
        assert!(name_problem("a--b").is_some());
        assert!(name_problem(&"a".repeat(MAX_NAME_LENGTH + 1)).is_some());
    }

    #[test]
    fn invalid_values_are_reported_at_their_attribute() {
        let config = Value::Map(
            [
                ("name".to_string(), Value::string("Bad_Name")),
                ("log_retention_days".to_string(), Value::Number(42.0)),
                ("tags".to_string(), Value::Map([("datavault:stack".to_string(), Value::string("x"))].into())),
            ]
            .into(),
        );
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(paths, vec!["name", "log_retention_days", "tags[\"datavault:stack\"]"]);
    }

    #[test]
    fn nested_settings_are_checked_at_their_paths() {
        let object =
            |entries: &[(&str, Value)]| Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        let config = object(&[
            ("name", Value::string("vault")),
            ("cluster", object(&[("admin_cidr_blocks", Value::string_list(["10.0.0.0/8", "0.0.0.0/0", "nonsense"]))])),
            ("database", object(&[("backup_retention_days", Value::Number(0.0))])),
            (
                "services",
                object(&[("broker", object(&[("environment", object(&[("DB_PASSWORD", Value::string("x"))]))]))]),
            ),
            ("timeouts", object(&[("create", Value::string("soon"))])),
        ]);
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            vec![
                "cluster.admin_cidr_blocks[1]",
                "cluster.admin_cidr_blocks[2]",
                "database.backup_retention_days",
                "services.broker.environment[\"DB_PASSWORD\"]",
                "timeouts.create",
            ]
        );
    }

    #[test]
    fn load_balancer_settings_are_checked_at_their_paths() {
        let object =
            |entries: &[(&str, Value)]| Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        let config = object(&[
            ("name", Value::string("vault")),
            (
                "load_balancer",
                object(&[
                    ("certificate_arn", Value::string("arn:aws:s3:::not-a-certificate")),
                    ("allowed_cidr_blocks", Value::string_list(["192.0.2.0/24", "10.0.0.300/8", "2001:db8::/32"])),
                ]),
            ),
        ]);
        let diags = validate(&config);
        let paths: Vec<String> = diags.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            vec![
                "load_balancer.certificate_arn",
                "load_balancer.allowed_cidr_blocks[1]",
                "load_balancer.allowed_cidr_blocks[2]",
            ]
        );
        let empty = object(&[("load_balancer", object(&[("allowed_cidr_blocks", Value::List(vec![]))]))]);
        let diags = validate(&empty);
        assert_eq!(diags.0[0].path.as_ref().unwrap().to_string(), "load_balancer.allowed_cidr_blocks");
        // A load balancer with every setting left to its default is valid; so is none at all.
        assert!(!validate(&object(&[("load_balancer", object(&[]))])).has_errors());
        assert!(!validate(&object(&[("load_balancer", Value::Null)])).has_errors());
    }

    #[test]
    fn certificates_come_from_acm_or_iam() {
        assert_eq!(certificate_arn_problem("arn:aws:acm:eu-west-2:123456789012:certificate/1111-2222-3333"), None);
        assert_eq!(certificate_arn_problem("arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/x"), None);
        assert_eq!(certificate_arn_problem("arn:aws:iam::123456789012:server-certificate/web/vault"), None);
        assert!(certificate_arn_problem("arn:aws:acm:eu-west-2:1234:certificate/x").is_some());
        assert!(certificate_arn_problem("arn:aws:acm:eu-west-2:123456789012:certificate/").is_some());
        assert!(certificate_arn_problem("arn:aws:acm::123456789012:certificate/x").is_some());
        assert!(certificate_arn_problem("arn:aws:iam::123456789012:role/web").is_some());
        assert!(certificate_arn_problem("my-certificate").is_some());
    }

    #[test]
    fn unknown_values_are_not_judged() {
        let config = Value::Map(
            [("name".to_string(), Value::Unknown), ("log_retention_days".to_string(), Value::Unknown)].into(),
        );
        assert!(!validate(&config).has_errors());
    }

    #[test]
    fn every_attribute_is_documented() {
        // Nested attributes too: the docs list them as well.
        fn check(attributes: &[Attribute], prefix: &str) {
            for attribute in attributes {
                let name = format!("{prefix}{}", attribute.name);
                assert!(attribute.description.ends_with('.'), "{name} needs a full-sentence description");
                if let crate::framework::schema::AttributeKind::Nested(_, nested) = &attribute.kind {
                    check(nested, &format!("{name}."));
                }
            }
        }
        check(&stack_schema().block.attributes, "");
    }
}
