//! The `datavault_stack` schema: attributes, their defaults and descriptions.

use super::service::Service;
use crate::framework::{Attribute, Block, Schema, Type, Value};

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
    /// The engine: MariaDB, which the supported images' MySQL driver and schema work with (MySQL 8 reserves
    /// the `GROUPS` table name they use and its default collation is unknown to their driver).
    pub const ENGINE: &str = "mariadb";
    /// MariaDB 10.11, in RDS standard support until 2028 (11.8 requires TLS, which the images cannot do).
    pub const ENGINE_VERSION: &str = "10.11";
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
/// Image tag deployed when none is given: the short commit of the supported DataVault source, which the
/// images are built from (the repositories keep tags immutable, so a tag names one build for good).
pub const DEFAULT_IMAGE_TAG: &str = "729ca07";
/// The public RabbitMQ image (management listener included, which the other services probe).
pub use super::parts::RABBITMQ_IMAGE;
/// The four DataVault services.
pub const SERVICES: [&str; 4] =
    [Service::Web.name(), Service::Broker.name(), Service::Worker.name(), Service::Rabbitmq.name()];

/// A schema default or bound as a Terraform number.
fn number(value: i64) -> Value {
    Value::Number(value as f64)
}

/// CPU units and memory (MiB) of a service unless configured: the Java services need a gigabyte (their
/// JVMs take three quarters of it for the heap), RabbitMQ half of that.
pub fn service_defaults(service: &str) -> (i64, i64) {
    if service == "rabbitmq" { (256, 512) } else { (256, 1024) }
}

fn service_attributes(name: &str) -> Vec<Attribute> {
    let (cpu, memory) = service_defaults(name);
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
        .default(number(cpu)),
        Attribute::optional_computed(
            "memory",
            Type::Number,
            &format!("Memory in MiB for the {name} task. Defaults to {memory}."),
        )
        .default(number(memory)),
        Attribute::optional_computed(
            "desired_count",
            Type::Number,
            &format!("Number of {name} tasks to run. Defaults to 1."),
        )
        .default(number(1)),
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
    let mut attributes = vec![
        Attribute::required("name", Type::String, "Name of the stack. Every AWS resource of the stack is named from it and tagged `datavault:stack = <name>`. 3 to 24 characters: lowercase letters, digits and hyphens, starting with a letter. Changing it replaces the whole stack.").requires_replace(),
        Attribute::optional("tags", Type::map_of_strings(), "Tags for every AWS resource of the stack, on top of the provider's `default_tags`. A key taken out is taken off every resource; tags others add stay, except on the stack's log group, where the refresh reads the stack's tags."),
        Attribute::optional_computed("archive_bucket_name", Type::String, "Name of the S3 bucket holding archived research data. Defaults to `<name>-archive`. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("images_force_destroy", Type::Bool, "Allow destroy to delete the ECR repositories while they hold images. Defaults to `false`: destroy keeps a repository that holds images (and says so), so a stack created again with the same name finds its images; empty repositories are always deleted.").default(Value::Bool(false)),
        Attribute::optional_computed("archive_force_destroy", Type::Bool, "Allow destroy to delete the archive bucket while it still holds data (every object version is deleted). Defaults to `false`: destroy stops with an error instead.").default(Value::Bool(false)),
        Attribute::optional_computed("adopt_untagged_resources", Type::Bool, "Take over existing resources that have the stack's names but no `datavault:stack` tag, for example a deployment made by hand or with the reference HCL. Defaults to `false`: a resource with one of the stack's names that is not tagged as the stack's stops plan and apply, and is never changed or deleted. When `true`, the plan lists every resource it takes over; apply tags each one as the stack's and manages it from then on. Resources tagged for another stack are never taken over.").default(Value::Bool(false)),
        Attribute::optional_computed("state_bucket_name", Type::String, "Name of the S3 bucket for Terraform state. Defaults to `<name>-state`. Destroy never deletes it: it is retained and reported. Changing it replaces the stack.").requires_replace(),
        Attribute::optional("kms_key_arn", Type::String, "ARN of a customer-managed KMS key (symmetric, enabled, in the stack's region) that encrypts the stack's data at rest: the archive and state buckets (SSE-KMS with a bucket key), the log groups, the secrets (and the database password RDS manages), the database, the file system, the ECR repositories and the instances' root volumes. Defaults to none: each service's AWS-managed encryption. The key is fixed when the stack is created: the database, the file system and the repositories cannot change their key, so a change is refused at plan. The key's policy must let CloudWatch Logs (`logs.<region>.amazonaws.com`) and the Auto Scaling service-linked role use it; the plan warns when it does not. The stack's roles get `kms:Decrypt` (and, for the archive's writers, `kms:GenerateDataKey`) on the key, through S3 and Secrets Manager only."),
        Attribute::optional_computed("log_retention_days", Type::Number, "Days CloudWatch Logs keeps the stack's logs (the services' and the database's). One of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653. Defaults to 365.").default(number(DEFAULT_LOG_RETENTION_DAYS)),
        Attribute::optional_computed("vpc_id", Type::String, "VPC to deploy into. Defaults to the region's default VPC. Changing it replaces the stack.").requires_replace(),
        Attribute::optional_computed("subnet_ids", Type::list_of_strings(), "Subnets (of `vpc_id`) for instances, tasks, the database and the file system; use at least two availability zones. Defaults to the default VPC's default subnets."),
        Attribute::optional_computed("image_tag", Type::String, "Tag of the web, broker and worker images in the stack's ECR repositories. Defaults to `729ca07`, the commit of the supported DataVault source (JiscRDSS/datavault, branch `aws_fixes`) the images are built from; the repositories keep tags immutable, so each tag names one build.").default(Value::string(DEFAULT_IMAGE_TAG)),
        Attribute::optional_computed_object("cluster", vec![
            Attribute::optional_computed("instance_type", Type::String, &format!("EC2 instance type of the ECS container instances. Defaults to `{}`. Changing it rolls the instances through a new launch template version.", c::INSTANCE_TYPE)).default(Value::string(c::INSTANCE_TYPE)),
            Attribute::optional_computed("min_size", Type::Number, &format!("Minimum number of instances. Defaults to {}.", c::MIN_SIZE)).default(number(c::MIN_SIZE)),
            Attribute::optional_computed("max_size", Type::Number, &format!("Maximum number of instances. Defaults to {}.", c::MAX_SIZE)).default(number(c::MAX_SIZE)),
            Attribute::optional_computed("desired_capacity", Type::Number, &format!("Instances normally running. Defaults to {}. Each task uses one network interface (awsvpc), so the plan checks that the services fit.", c::DESIRED_CAPACITY)).default(number(c::DESIRED_CAPACITY)),
            Attribute::optional("ami_id", Type::String, "AMI of the instances. Defaults to the current ECS-optimized Amazon Linux 2023 AMI from the public SSM parameter."),
            Attribute::optional("admin_cidr_blocks", Type::list_of_strings(), "CIDR blocks allowed to reach the instances over SSH. Empty by default: no administrative port is open."),
        ], "The EC2 capacity the services run on: an Auto Scaling group of ECS container instances."),
        Attribute::optional_computed_object("services", SERVICES.iter().map(|s| Attribute::optional_computed_object(s, service_attributes(s), &format!("Settings of the {s} service."))).collect(), "Per-service settings of the four DataVault services (web, broker, worker, rabbitmq)."),
        Attribute::optional_computed_object("database", vec![
            Attribute::optional_computed("instance_class", Type::String, &format!("RDS instance class. Defaults to `{}`. Changed in place.", d::INSTANCE_CLASS)).default(Value::string(d::INSTANCE_CLASS)),
            Attribute::optional_computed("allocated_storage", Type::Number, &format!("Storage in GiB (can grow, never shrink). Defaults to {}.", d::ALLOCATED_STORAGE)).default(number(d::ALLOCATED_STORAGE)),
            Attribute::optional_computed("engine", Type::String, &format!("Database engine, `mariadb` or `mysql`. Defaults to `{}`, which the supported DataVault images work with; MySQL 8 does not (its reserved word `GROUPS` is a table name of DataVault's, and its driver predates MySQL 8's collations), and MySQL 5.7 costs RDS Extended Support fees. RDS cannot change the engine of a database in place.", d::ENGINE)).default(Value::string(d::ENGINE)),
            Attribute::optional_computed("engine_version", Type::String, &format!("Engine version (major.minor, e.g. `10.11` or `11.4` for MariaDB). Defaults to `{}`; minor versions are upgraded automatically. Versions the supported images cannot use are refused at plan.", d::ENGINE_VERSION)).default(Value::string(d::ENGINE_VERSION)),
            Attribute::optional_computed("backup_retention_days", Type::Number, &format!("Days of automated backups (1 to 35). Defaults to {}.", d::BACKUP_RETENTION_DAYS)).default(number(d::BACKUP_RETENTION_DAYS)),
            Attribute::optional_computed("deletion_protection", Type::Bool, "Protect the database from deletion. Defaults to `true`: set it to `false` and apply before destroying the stack.").default(Value::Bool(true)),
            Attribute::optional_computed("skip_final_snapshot", Type::Bool, "Delete the database without a final snapshot. Defaults to `false`: destroy takes a snapshot named `<name>-final` (or `-final-2`, ... if taken).").default(Value::Bool(false)),
            Attribute::optional_computed("multi_az", Type::Bool, "Run a standby in a second availability zone. Defaults to `false`.").default(Value::Bool(false)),
            Attribute::optional("password_wo", Type::String, "Master password, write-only (Terraform >= 1.11): sent to RDS and kept in the stack's Secrets Manager secret `<name>/database` for the services, never in plan or state. 8 to 41 letters and digits: the DataVault images paste it into a shell script and a properties file unescaped. Without it, the stack generates such a password.").sensitive().write_only(),
            Attribute::optional("password_wo_version", Type::Number, "Change this number to change the master password: apply sends the new `password_wo` to RDS, or, without `password_wo`, generates a new password; the broker restarts with it. Nothing rotates the password otherwise, since the running services read it only when they start."),
        ], "The database (RDS, MariaDB by default): encrypted, private, backed up, with the stack's parameter group (utf8mb4)."),
        Attribute::optional("rabbitmq_password_version", Type::Number, "Change this number to change the RabbitMQ password: apply generates a new one into the stack's secret `<name>/rabbitmq`, and RabbitMQ, the broker and the worker restart with it (RabbitMQ's task sets the secret's password at every start, so the secret is always the password). The clients may fail and be restarted by ECS for a minute or two, until RabbitMQ runs with the new password. Nothing rotates the password otherwise, since the services read it only when they start."),
        Attribute::optional_object("load_balancer", vec![
            Attribute::optional("certificate_arn", Type::String, "ARN of the ACM certificate (an IAM server certificate also works) for HTTPS on port 443, with a TLS 1.2+ policy; port 80 then only redirects to HTTPS. Without it the load balancer serves plain HTTP on port 80, which is meant for trials only."),
            Attribute::optional_computed("allowed_cidr_blocks", Type::list_of_strings(), "IPv4 CIDR blocks allowed to reach the load balancer. Defaults to `[\"0.0.0.0/0\"]`: a public entry point is open to everyone unless narrowed, e.g. to the institution's address ranges.").default(Value::string_list(load_balancer_defaults::ALLOWED_CIDR_BLOCKS)),
            Attribute::optional("subnet_ids", Type::list_of_strings(), "Public subnets (of `vpc_id`, routed to an internet gateway) for the load balancer, in at least two availability zones; one per zone is used. Defaults to `subnet_ids`, which must then be public themselves. With its own public subnets, the instances, tasks, database and file system can stay in private subnets behind a NAT gateway."),
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
        Attribute::computed("image_push_targets", Type::map_of_strings(), "Where to push each DataVault image for this stack to run it: `<repository URL>:<image_tag>`, keyed by `web`, `broker` and `worker` (services whose `image` is overridden are left out)."),
        Attribute::computed("missing_images", Type::list_of_strings(), "Services whose image is not in the stack's repository at `image_tag`, as of the last refresh or apply. They are created but not started; once the images are pushed, the next plan shows them starting. Empty when every image is there."),
        Attribute::computed("log_group_name", Type::String, "Name of the CloudWatch log group (`/datavault/<name>`)."),
        Attribute::computed("web_url", Type::String, "Where the web app answers: with `load_balancer`, `https://<dns_name>/datavault-webapp/` (`http://` without a certificate); without, its service discovery name and path, inside the VPC only."),
        Attribute::computed("drift", Type::list_of_strings(), "Differences between the stack's AWS resources and their managed settings, found by the last refresh. Empty after every apply, which repairs them."),
    ];
    attributes.extend(super::outputs::attributes());
    Schema {
        version: 0,
        block: Block {
            attributes,
            blocks: vec![],
            description: "A complete DataVault deployment on AWS, managed as one resource.".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
