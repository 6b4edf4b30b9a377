//! Deploys the whole DataVault system: every part is inspected through the AWS APIs the way an auditor
//! would (network rules, task wiring, secrets, encryption, IAM scope, service discovery, capacity), the
//! Terraform outputs are compared with what AWS holds, an update changes images, counts, instance type and
//! database class in place, and destroy leaves only what it keeps by design.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Instant;

use aws_sdk_ec2::types::{Filter, LaunchTemplateHttpTokensState};
use aws_sdk_ecs::types::{
    AssignPublicIp, ClusterField, ClusterSettingName, ContainerDefinition, EfsTransitEncryption, NetworkMode,
    ServiceField, TaskDefinition,
};
use base64::Engine;
use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::env::acceptance_enabled;
use datavault_acceptance_tests::inventory::{self, Kind};
use datavault_acceptance_tests::runner::announce;
use datavault_acceptance_tests::{
    CheckError, CheckResult, Emulator, STACK_TAG, Step, TestCase, check_actions, ensure, ensure_eq, expect_attr,
    expect_attr_eq, run, stack_items,
};
use serde_json::{Value, json};

use crate::support::{ADDR, Rule, check_stack, check_tags, region, rules, stack_config, stack_config_with};

const NAME: &str = "acc-full";
/// The image tag of the update step.
const NEW_TAG: &str = "1.4.2";
/// The four services, in the order the checks walk them.
const SERVICES: [&str; 4] = ["web", "broker", "worker", "rabbitmq"];
/// The services other services reach by name (workers only connect out).
const DISCOVERABLE: [&str; 3] = ["web", "broker", "rabbitmq"];
/// Ports an administrator could reach an instance on; none may be open to the internet.
const ADMIN_PORTS: [i32; 3] = [22, 3389, 5985];

/// What the stack should look like after a step.
#[derive(Debug, Clone)]
struct Expected {
    image_tag: &'static str,
    worker_count: i32,
    instance_type: &'static str,
    min_size: i32,
    max_size: i32,
    desired_capacity: i32,
    instance_class: &'static str,
}

/// The stack as first created: defaults everywhere but three instances (see [`UPDATED`] for why).
const CREATED: Expected = Expected {
    image_tag: "729ca07",
    worker_count: 1,
    instance_type: "t3.medium",
    min_size: 2,
    max_size: 4,
    desired_capacity: 3,
    instance_class: "db.t3.micro",
};

/// The update: a new image tag, the worker stopped, bigger instances and database.
///
/// The stack runs three instances from the start, so the update does not need to raise the capacity. Raising the capacity in the same
/// update is not possible against moto: its CreateLaunchTemplateVersion stores UserData unencoded, and
/// the first instance an Auto Scaling group launches from such a version fails with an AssertionError
/// (HTTP 500 on UpdateAutoScalingGroup). With the capacity unchanged the group launches nothing.
const UPDATED: Expected = Expected {
    image_tag: NEW_TAG,
    worker_count: 0,
    instance_type: "t3.large",
    min_size: 2,
    max_size: 4,
    desired_capacity: 3,
    instance_class: "db.t3.small",
};

/// What one step saw, for the next step to compare with.
#[derive(Debug, Default, Clone)]
struct Observed {
    /// `terraform show -json` after the apply.
    state: Value,
    /// Task definition ARN each service runs.
    task_definitions: BTreeMap<String, String>,
    /// The launch template's default version.
    launch_template_version: i64,
}

type Shared = Rc<RefCell<Observed>>;

/// Prints the wall time of the test when it ends, passed or failed: from when it had the emulator to
/// itself (its first step started; tests queue for the emulator) to the end of its after-destroy checks.
struct WallTime {
    test: &'static str,
    queued: Instant,
    started: Rc<Cell<Option<Instant>>>,
}

impl Drop for WallTime {
    fn drop(&mut self) {
        if !acceptance_enabled() {
            return;
        }
        let started = self.started.get().unwrap_or(self.queued);
        announce(&format!(
            "{}: wall time {:.1}s (after {:.1}s waiting for the emulator)",
            self.test,
            started.elapsed().as_secs_f64(),
            started.duration_since(self.queued).as_secs_f64()
        ));
    }
}

/// The images of both steps, pushed before the stack exists, as a team that builds its images first would:
/// into repositories made (and tagged as the stack's) ahead of the stack, which adopts them. Services whose
/// image is missing would not be started (see the images test).
async fn push_images(emu: &Emulator) -> CheckResult {
    for component in ["web", "broker", "worker"] {
        let repository = format!("{NAME}/{component}");
        emu.ecr()
            .create_repository()
            .repository_name(&repository)
            .tags(aws_sdk_ecr::types::Tag::builder().key("datavault:stack").value(NAME).build()?)
            .tags(aws_sdk_ecr::types::Tag::builder().key("datavault:part").value(format!("ecr_{component}")).build()?)
            .send()
            .await
            .map_err(|e| format!("CreateRepository {repository}: {}", describe(&e)))?;
        for tag in [CREATED.image_tag, UPDATED.image_tag] {
            emu.push_image(&repository, tag).await?;
        }
    }
    Ok(())
}

fn create_config() -> String {
    // A final snapshot on destroy, as in production; deletion protection off so the case can destroy.
    stack_config_with(
        NAME,
        "deletion_protection = false, skip_final_snapshot = false",
        // The images were pushed for this test only: destroy may delete them with their repositories.
        "  cluster = { desired_capacity = 3 }\n  images_force_destroy = true\n",
    )
}

fn update_config() -> String {
    stack_config_with(
        NAME,
        "instance_class = \"db.t3.small\", deletion_protection = false, skip_final_snapshot = false",
        &[
            format!("  image_tag = \"{NEW_TAG}\"\n"),
            "  services = { worker = { desired_count = 0 } }\n".to_string(),
            "  cluster = { instance_type = \"t3.large\", desired_capacity = 3 }\n".to_string(),
            "  images_force_destroy = true\n".to_string(),
        ]
        .concat(),
    )
}

#[test]
fn deploys_the_whole_datavault_system() {
    let started = Rc::new(Cell::new(None));
    let _wall =
        WallTime { test: "full::deploys_the_whole_datavault_system", queued: Instant::now(), started: started.clone() };
    let created = Shared::default();
    let updated = Shared::default();
    let (record_created, check_created) = (created.clone(), created.clone());
    let (record_updated, check_updated, before_update) = (updated.clone(), updated.clone(), created.clone());
    run(TestCase::new()
        .stack(NAME)
        .step(
            Step::config(create_config())
                .pre_apply(move |emu| async move {
                    started.set(Some(Instant::now()));
                    push_images(&emu).await
                })
                .check(move |state| {
                    expect_attr_eq(state, ADDR, "drift", json!([]))?;
                    record_created.borrow_mut().state = state.clone();
                    Ok(())
                })
                .check_emulator(|emu| async move { check_stack(&emu, NAME, 365, &[]).await })
                .check_emulator(move |emu| async move {
                    let seen = check_system(&emu, &CREATED, &check_created).await?;
                    *check_created.borrow_mut() = seen;
                    check_inventory_sees_every_kind(&emu).await
                }),
        )
        .step(
            Step::config(update_config())
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(move |state| {
                    expect_attr_eq(state, ADDR, "image_tag", NEW_TAG)?;
                    expect_attr_eq(state, ADDR, "services.worker.desired_count", 0)?;
                    expect_attr_eq(state, ADDR, "cluster.instance_type", "t3.large")?;
                    expect_attr_eq(state, ADDR, "database.instance_class", "db.t3.small")?;
                    expect_attr_eq(state, ADDR, "drift", json!([]))?;
                    record_updated.borrow_mut().state = state.clone();
                    Ok(())
                })
                .check_emulator(move |emu| async move {
                    let seen = check_system(&emu, &UPDATED, &check_updated).await?;
                    check_rollout(&before_update.borrow(), &seen)
                }),
        )
        .check_destroy(|emu| async move { check_retained_after_destroy(&emu).await }));
}

#[test]
fn services_that_do_not_fit_fail_at_plan() {
    const NAME: &str = "acc-full-capacity";
    // Four tasks; one t3.medium holds two awsvpc tasks.
    let config = stack_config(NAME, "  cluster = { min_size = 1, desired_capacity = 1 }\n");
    let pattern = format!(
        r"(?s)Services Do Not Fit On The Instances.*{}.*{}",
        words("The services ask for 4 tasks, but 1 t3.medium instances hold only 2"),
        words("Raise cluster.desired_capacity")
    );
    run(TestCase::new().stack(NAME).step(Step::config(config).plan_only().expect_error(&pattern)).check_destroy(
        |emu| async move {
            let items = stack_items(&emu, NAME).await?;
            ensure!(items.is_empty(), "a plan that failed created {} object(s): {items:?}", items.len());
            Ok(())
        },
    ));
}

/// A regex matching `phrase` however Terraform wraps it (it breaks diagnostic text at spaces).
fn words(phrase: &str) -> String {
    phrase.split(' ').map(regex::escape).collect::<Vec<_>>().join(r"\s+")
}

/// The stack's parts as AWS reports them, checked against `expected`; what later steps compare with is
/// returned. `shared.state` is the state the step applied, so outputs are compared with reality too.
async fn check_system(emu: &Emulator, expected: &Expected, shared: &Shared) -> Result<Observed, CheckError> {
    let state = shared.borrow().state.clone();
    let groups = check_security_groups(emu).await?;
    let secrets = read_secrets(emu).await?;
    let database = check_database(emu, &groups, expected, &secrets).await?;
    let file_system = check_file_system(emu, &groups).await?;
    let roles = check_roles(emu, &database, &secrets, &file_system).await?;
    let discovery = check_discovery(emu).await?;
    let task_definitions = check_task_definitions(emu, expected, &database, &secrets, &file_system, &roles).await?;
    let services = check_services(emu, expected, &groups, &discovery, &task_definitions).await?;
    let cluster_arn = check_cluster(emu).await?;
    let template = check_capacity(emu, expected, &groups, &roles).await?;

    // The outputs are what users wire other things to: they must name the parts that exist.
    let outputs = [
        ("security_group_ids", json!(groups.ids())),
        ("database_endpoint", json!(database.endpoint)),
        ("database_secret_arn", json!(database.secret_arn)),
        ("rabbitmq_secret_arn", json!(secrets.rabbitmq_arn)),
        ("file_system_id", json!(file_system.id)),
        ("cluster_arn", json!(cluster_arn)),
        ("autoscaling_group_name", json!(NAME)),
        ("launch_template_id", json!(template.id)),
        ("service_arns", json!(services)),
        (
            "service_discovery_names",
            json!(DISCOVERABLE.iter().map(|s| (s.to_string(), dns_name(s))).collect::<BTreeMap<_, _>>()),
        ),
        ("web_url", json!(format!("http://{}:8080/datavault-webapp/", dns_name("web")))),
        ("log_group_name", json!(format!("/datavault/{NAME}"))),
    ];
    for (output, value) in outputs {
        ensure_eq!(expect_attr(&state, ADDR, output)?, &value, "output {output}");
    }
    // The state holds secret ARNs, never the passwords themselves.
    let text = state.to_string();
    for (what, password) in [("RabbitMQ", &secrets.rabbitmq_password), ("database", &secrets.database_password)] {
        ensure!(!text.contains(password.as_str()), "the Terraform state contains the {what} password");
    }
    Ok(Observed { state, task_definitions, launch_template_version: template.default_version })
}

fn dns_name(service: &str) -> String {
    format!("{service}.{NAME}.datavault.internal")
}

fn group_name(group: &str) -> String {
    format!("{NAME}-{group}")
}

// ---------------------------------------------------------------------------------------------- network

struct Groups {
    instances: String,
    services: String,
    database: String,
    file_system: String,
}

impl Groups {
    fn ids(&self) -> BTreeMap<&'static str, &str> {
        BTreeMap::from([
            ("instances", self.instances.as_str()),
            ("services", self.services.as_str()),
            ("database", self.database.as_str()),
            ("file_system", self.file_system.as_str()),
        ])
    }
}

fn tcp_from(port: i32, sources: &[&str]) -> BTreeSet<Rule> {
    sources.iter().map(|g| ("tcp".to_string(), port, port, format!("group {g}"))).collect()
}

/// Each group allows only what the next part needs: the database and the file system only their port from
/// the services and instances, the services their ports from each other, the instances nothing.
async fn check_security_groups(emu: &Emulator) -> Result<Groups, CheckError> {
    let names = ["instances", "services", "database", "file-system"].map(group_name);
    let out = emu
        .ec2()
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").set_values(Some(names.to_vec())).build())
        .send()
        .await
        .map_err(|e| format!("DescribeSecurityGroups: {}", describe(&e)))?;
    let mut by_name = BTreeMap::new();
    for group in out.security_groups() {
        let name = group.group_name().unwrap_or_default().to_string();
        let tags =
            group.tags().iter().map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
        check_tags(&format!("security group {name}"), &tags.collect(), NAME, &[])?;
        ensure!(by_name.insert(name.clone(), group.clone()).is_none(), "two security groups are named {name}");
    }
    let get = |suffix: &str| {
        by_name
            .get(&group_name(suffix))
            .cloned()
            .ok_or_else(|| format!("security group {} does not exist", group_name(suffix)))
    };
    let (instances, services, database, file_system) =
        (get("instances")?, get("services")?, get("database")?, get("file-system")?);
    let id = |g: &aws_sdk_ec2::types::SecurityGroup| g.group_id().unwrap_or_default().to_string();
    let groups = Groups {
        instances: id(&instances),
        services: id(&services),
        database: id(&database),
        file_system: id(&file_system),
    };

    for group in [&instances, &services, &database, &file_system] {
        let name = group.group_name().unwrap_or_default();
        for (protocol, from, to, source) in rules(group.ip_permissions()) {
            let open = source == "cidr 0.0.0.0/0" || source == "cidr ::/0";
            ensure!(!open || protocol != "-1", "{name} allows all traffic from {source}");
            ensure!(
                !open || !ADMIN_PORTS.iter().any(|p| (from..=to).contains(p)),
                "{name} opens an administrative port ({protocol} {from}-{to}) to {source}"
            );
            ensure!(!open, "{name} accepts {protocol} {from}-{to} from the whole internet ({source})");
        }
    }
    let both = [groups.services.as_str(), groups.instances.as_str()];
    ensure_eq!(rules(database.ip_permissions()), tcp_from(3306, &both), "{} ingress", group_name("database"));
    ensure_eq!(rules(file_system.ip_permissions()), tcp_from(2049, &both), "{} ingress", group_name("file-system"));
    // No admin_cidr_blocks configured: nothing may reach the instances.
    ensure_eq!(rules(instances.ip_permissions()), BTreeSet::new(), "{} ingress", group_name("instances"));
    let own = [groups.services.as_str()];
    let service_rules: BTreeSet<Rule> = [8080, 5672, 15672].iter().flat_map(|p| tcp_from(*p, &own)).collect();
    ensure_eq!(rules(services.ip_permissions()), service_rules, "{} ingress", group_name("services"));
    // Neither the database nor the file system starts connections.
    for group in [&database, &file_system] {
        ensure_eq!(
            rules(group.ip_permissions_egress()),
            BTreeSet::new(),
            "{} egress",
            group.group_name().unwrap_or_default()
        );
    }
    Ok(groups)
}

// ---------------------------------------------------------------------------------------------- secrets

struct Secrets {
    rabbitmq_arn: String,
    rabbitmq_password: String,
    database_arn: String,
    database_password: String,
}

/// The secret's value; for RDS's JSON credentials, the password in it.
pub(crate) async fn secret_password(emu: &Emulator, id: &str) -> Result<String, CheckError> {
    let out = emu
        .secrets()
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| format!("GetSecretValue {id}: {}", describe(&e)))?;
    let text = out.secret_string().ok_or(format!("secret {id} has no string value"))?;
    let password = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map.get("password").and_then(Value::as_str).map(str::to_string),
        _ => Some(text.to_string()),
    };
    let password = password.ok_or(format!("secret {id} holds JSON without a password"))?;
    ensure!(password.len() >= 8, "the password in {id} is only {} characters", password.len());
    Ok(password)
}

async fn read_secrets(emu: &Emulator) -> Result<Secrets, CheckError> {
    let name = format!("{NAME}/rabbitmq");
    let described = emu
        .secrets()
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .map_err(|e| format!("DescribeSecret {name}: {}", describe(&e)))?;
    ensure!(described.deleted_date().is_none(), "secret {name} is scheduled for deletion");
    let tags =
        described.tags().iter().map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
    check_tags(&format!("secret {name}"), &tags.collect(), NAME, &[])?;
    let rabbitmq_arn = described.arn().ok_or(format!("secret {name} has no ARN"))?.to_string();
    let rabbitmq_password = secret_password(emu, &name).await?;
    let database_secret = format!("{NAME}/database");
    let database_arn = emu
        .secrets()
        .describe_secret()
        .secret_id(&database_secret)
        .send()
        .await
        .map_err(|e| format!("DescribeSecret {database_secret}: {}", describe(&e)))?
        .arn()
        .unwrap_or_default()
        .to_string();
    let database_password = secret_password(emu, &database_secret).await?;
    // The images paste passwords unescaped into a shell script and a properties file.
    for (what, password) in [("RabbitMQ", &rabbitmq_password), ("database", &database_password)] {
        ensure!(password.chars().all(|c| c.is_ascii_alphanumeric()), "the {what} password is not alphanumeric");
    }
    for secret in [&name, &database_secret] {
        check_secret_policy(emu, secret).await?;
    }
    Ok(Secrets { rabbitmq_arn, rabbitmq_password, database_arn, database_password })
}

/// The secret's resource policy refuses other accounts, and refuses the value to the roles the instances and
/// containers run as; the execution role, which hands the value to tasks, is not among them.
async fn check_secret_policy(emu: &Emulator, name: &str) -> Result<(), CheckError> {
    let out = emu.secrets().get_resource_policy().secret_id(name).send().await;
    let out = out.map_err(|e| format!("GetResourcePolicy {name}: {}", describe(&e)))?;
    let policy = policy_document(out.resource_policy().ok_or(format!("secret {name} has no resource policy"))?)?;
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    ensure!(statements.iter().all(|s| s["Effect"] == "Deny"), "secret {name}'s policy grants something: {policy}");
    ensure!(
        statements.iter().any(|s| s["Condition"]["StringNotEquals"]["aws:PrincipalAccount"].is_string()),
        "secret {name}'s policy does not refuse other accounts: {policy}"
    );
    let barred: Vec<String> = statements
        .iter()
        .filter(|s| s["Action"] == "secretsmanager:GetSecretValue")
        .flat_map(|s| s["Condition"]["ArnEquals"]["aws:PrincipalArn"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for role in ["instance", "web-task", "broker-task", "worker-task", "rabbitmq-task"] {
        let arn_end = format!(":role/{NAME}-{role}");
        ensure!(barred.iter().any(|a| a.ends_with(&arn_end)), "secret {name}'s policy lets {role} read it: {policy}");
    }
    ensure!(
        !barred.iter().any(|a| a.ends_with("-execution")),
        "secret {name}'s policy refuses the execution role, so no task could start: {policy}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------- data

struct Database {
    endpoint: String,
    secret_arn: String,
}

async fn describe_database(emu: &Emulator) -> Result<aws_sdk_rds::types::DbInstance, CheckError> {
    let out = emu
        .rds()
        .describe_db_instances()
        .db_instance_identifier(NAME)
        .send()
        .await
        .map_err(|e| format!("DescribeDBInstances {NAME}: {}", describe(&e)))?;
    Ok(out.db_instances().first().cloned().ok_or(format!("database {NAME} does not exist"))?)
}

/// MariaDB 10.11 (what the supported images work with), encrypted, private, backed up, in the stack's
/// subnet group behind the database group, with the stack's utf8mb4 parameter group, and a master password
/// the stack keeps in its own secret (not one RDS rotates behind the services' back).
async fn check_database(
    emu: &Emulator,
    groups: &Groups,
    expected: &Expected,
    secrets: &Secrets,
) -> Result<Database, CheckError> {
    let db = describe_database(emu).await?;
    ensure_eq!(db.engine(), Some("mariadb"), "database engine");
    ensure!(
        db.engine_version().is_some_and(|v| v.starts_with("10.11")),
        "database engine version is {:?}, expected 10.11.x",
        db.engine_version()
    );
    let parameter_group = format!("{NAME}-db");
    let groups_used: Vec<&str> = db.db_parameter_groups().iter().filter_map(|g| g.db_parameter_group_name()).collect();
    ensure_eq!(groups_used, vec![parameter_group.as_str()], "database parameter groups");
    let parameters = emu
        .rds()
        .describe_db_parameters()
        .db_parameter_group_name(&parameter_group)
        .send()
        .await
        .map_err(|e| format!("DescribeDBParameters {parameter_group}: {}", describe(&e)))?;
    let set: BTreeMap<&str, &str> =
        parameters.parameters().iter().filter_map(|p| Some((p.parameter_name()?, p.parameter_value()?))).collect();
    ensure_eq!(set.get("character_set_server").copied(), Some("utf8mb4"), "{parameter_group} character_set_server");
    ensure_eq!(set.get("collation_server").copied(), Some("utf8mb4_unicode_ci"), "{parameter_group} collation_server");
    // FSBP RDS.9: error and slow query logs go to CloudWatch Logs, into groups the stack owns.
    ensure_eq!(set.get("slow_query_log").copied(), Some("1"), "{parameter_group} slow_query_log");
    ensure_eq!(set.get("log_output").copied(), Some("FILE"), "{parameter_group} log_output");
    let mut exports: Vec<&str> = db.enabled_cloudwatch_logs_exports().iter().map(String::as_str).collect();
    exports.sort();
    ensure_eq!(exports, vec!["error", "slowquery"], "database logs published to CloudWatch Logs");
    for log_type in exports {
        let name = format!("/aws/rds/instance/{NAME}/{log_type}");
        let out = emu.logs().describe_log_groups().log_group_name_prefix(&name).send().await;
        let out = out.map_err(|e| format!("DescribeLogGroups {name}: {}", describe(&e)))?;
        let group = out.log_groups().iter().find(|g| g.log_group_name() == Some(name.as_str()));
        let group = group.ok_or(format!("log group {name} does not exist"))?;
        ensure_eq!(group.retention_in_days(), Some(365), "{name} retention");
        let arn = group.arn().unwrap_or_default().trim_end_matches(":*").to_string();
        let tags = emu.logs().list_tags_for_resource().resource_arn(&arn).send().await;
        let tags = tags.map_err(|e| format!("ListTagsForResource {arn}: {}", describe(&e)))?;
        check_tags(&name, &tags.tags().cloned().unwrap_or_default().into_iter().collect(), NAME, &[])?;
    }
    ensure!(db.master_user_secret().is_none(), "the master password is managed (and rotated) by RDS");
    ensure_eq!(db.db_instance_class(), Some(expected.instance_class), "database instance class");
    ensure_eq!(db.storage_encrypted(), Some(true), "database StorageEncrypted");
    ensure_eq!(db.iam_database_authentication_enabled(), Some(true), "database IAM authentication (FSBP RDS.10)");
    ensure_eq!(db.publicly_accessible(), Some(false), "database PubliclyAccessible");
    ensure_eq!(db.backup_retention_period(), Some(7), "database backup retention days");
    ensure_eq!(db.allocated_storage(), Some(20), "database allocated storage");
    ensure_eq!(db.deletion_protection(), Some(false), "database deletion protection (as configured)");
    ensure_eq!(db.copy_tags_to_snapshot(), Some(true), "database CopyTagsToSnapshot");
    ensure_eq!(db.auto_minor_version_upgrade(), Some(true), "database AutoMinorVersionUpgrade");
    ensure_eq!(db.db_name(), Some("datavault"), "database name");
    ensure_eq!(db.master_username(), Some("datavault"), "database master user");
    ensure_eq!(db.db_subnet_group().and_then(|g| g.db_subnet_group_name()), Some(NAME), "database subnet group");
    let db_groups: Vec<&str> = db.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
    ensure_eq!(db_groups, vec![groups.database.as_str()], "database security groups");
    let tags = db.tag_list().iter().map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
    check_tags(&format!("database {NAME}"), &tags.collect(), NAME, &[])?;
    let endpoint = db.endpoint().and_then(|e| e.address()).ok_or("the database has no endpoint")?.to_string();
    Ok(Database { endpoint, secret_arn: secrets.database_arn.clone() })
}

struct FileSystem {
    id: String,
    rabbitmq_access_point: String,
    working_access_point: String,
}

/// EFS, encrypted, mounted in one subnet per zone behind the file-system group, with an access point per
/// use that confines it to its own directory and user.
async fn check_file_system(emu: &Emulator, groups: &Groups) -> Result<FileSystem, CheckError> {
    let token = format!("datavault-{NAME}");
    let out = emu
        .efs()
        .describe_file_systems()
        .creation_token(&token)
        .send()
        .await
        .map_err(|e| format!("DescribeFileSystems {token}: {}", describe(&e)))?;
    ensure_eq!(out.file_systems().len(), 1, "file systems with creation token {token}");
    let fs = &out.file_systems()[0];
    ensure_eq!(fs.encrypted(), Some(true), "file system {token} Encrypted");
    let tags = fs.tags().iter().map(|t| (t.key().to_string(), t.value().to_string()));
    check_tags(&format!("file system {token}"), &tags.collect(), NAME, &[])?;
    let id = fs.file_system_id().to_string();
    // No plain NFS and no anonymous mounts: only IAM principals, over TLS, through a mount target.
    let policy = emu.efs().describe_file_system_policy().file_system_id(&id).send().await;
    let policy = policy.map_err(|e| format!("DescribeFileSystemPolicy {id}: {}", describe(&e)))?;
    let policy = policy_document(policy.policy().unwrap_or_default())?;
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    ensure!(
        statements.iter().any(|s| s["Effect"] == "Deny" && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"),
        "file system {id} does not refuse plain NFS: {policy}"
    );
    ensure!(
        statements
            .iter()
            .all(|s| s["Effect"] != "Allow"
                || s["Condition"]["Bool"]["elasticfilesystem:AccessedViaMountTarget"] == "true"),
        "file system {id} allows access other than through a mount target: {policy}"
    );

    let targets = emu
        .efs()
        .describe_mount_targets()
        .file_system_id(&id)
        .send()
        .await
        .map_err(|e| format!("DescribeMountTargets {id}: {}", describe(&e)))?;
    ensure!(!targets.mount_targets().is_empty(), "file system {id} has no mount targets");
    let mut zones = BTreeSet::new();
    for target in targets.mount_targets() {
        let target_id = target.mount_target_id();
        ensure!(
            zones.insert(target.availability_zone_id().or(target.availability_zone_name()).unwrap_or_default()),
            "two mount targets of {id} share a zone"
        );
        let sg = emu
            .efs()
            .describe_mount_target_security_groups()
            .mount_target_id(target_id)
            .send()
            .await
            .map_err(|e| format!("DescribeMountTargetSecurityGroups {target_id}: {}", describe(&e)))?;
        ensure_eq!(
            sg.security_groups(),
            std::slice::from_ref(&groups.file_system),
            "security groups of mount target {target_id}"
        );
    }

    let points = emu
        .efs()
        .describe_access_points()
        .file_system_id(&id)
        .send()
        .await
        .map_err(|e| format!("DescribeAccessPoints {id}: {}", describe(&e)))?;
    let mut found = BTreeMap::new();
    for point in points.access_points() {
        let name = point.name().unwrap_or_default().to_string();
        let root = point.root_directory().and_then(|r| r.path()).unwrap_or("/");
        ensure!(root != "/", "access point {name} exposes the file system's root");
        ensure!(point.posix_user().is_some(), "access point {name} does not enforce a POSIX user");
        found.insert(name, (point.access_point_id().unwrap_or_default().to_string(), root.to_string()));
    }
    let names: Vec<&String> = found.keys().collect();
    ensure_eq!(names, vec![&format!("{NAME}-rabbitmq"), &format!("{NAME}-working")], "access points of {id}");
    let (rabbitmq_access_point, rabbitmq_root) = found[&format!("{NAME}-rabbitmq")].clone();
    let (working_access_point, working_root) = found[&format!("{NAME}-working")].clone();
    ensure!(rabbitmq_root != working_root, "both access points share the directory {rabbitmq_root}");
    Ok(FileSystem { id, rabbitmq_access_point, working_access_point })
}

// ---------------------------------------------------------------------------------------------- identity

struct Roles {
    /// Each service's task role.
    task_arns: BTreeMap<String, String>,
    execution_arn: String,
    instance_profile_arn: String,
}

/// IAM returns policy documents URL-encoded.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn policy_document(raw: &str) -> Result<Value, CheckError> {
    match serde_json::from_str(raw) {
        Ok(v) => Ok(v),
        Err(_) => Ok(serde_json::from_str(&url_decode(raw)).map_err(|e| format!("policy is not JSON ({e}): {raw}"))?),
    }
}

/// A policy field that may be a string or a list of strings, as a list.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    }
}

/// A role's inline policies by name, decoded.
pub(crate) async fn inline_policies(emu: &Emulator, role: &str) -> Result<BTreeMap<String, Value>, CheckError> {
    let names = emu
        .iam()
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| format!("ListRolePolicies {role}: {}", describe(&e)))?;
    let mut out = BTreeMap::new();
    for name in names.policy_names() {
        let policy = emu
            .iam()
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| format!("GetRolePolicy {role}/{name}: {}", describe(&e)))?;
        out.insert(name.clone(), policy_document(policy.policy_document())?);
    }
    Ok(out)
}

async fn attached_policies(emu: &Emulator, role: &str) -> Result<Vec<String>, CheckError> {
    let out = emu
        .iam()
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| format!("ListAttachedRolePolicies {role}: {}", describe(&e)))?;
    Ok(out.attached_policies().iter().filter_map(|p| p.policy_arn()).map(str::to_string).collect())
}

async fn role(emu: &Emulator, name: &str, service: &str) -> Result<String, CheckError> {
    let out =
        emu.iam().get_role().role_name(name).send().await.map_err(|e| format!("GetRole {name}: {}", describe(&e)))?;
    let role = out.role().ok_or(format!("role {name} does not exist"))?;
    let trust = policy_document(role.assume_role_policy_document().unwrap_or_default())?;
    let principals: Vec<String> =
        trust["Statement"].as_array().into_iter().flatten().flat_map(|s| strings(&s["Principal"]["Service"])).collect();
    ensure_eq!(principals, vec![service.to_string()], "services that may assume {name}");
    Ok(role.arn().to_string())
}

/// What a service's task role may do, statement by statement: each action it is granted, mapped to the
/// resources it may be granted on. `*` only where the action takes no resource (ECS Exec's channels).
fn task_role_grants(service: &str, fs: &FileSystem) -> BTreeMap<String, BTreeSet<String>> {
    let archive = format!("arn:aws:s3:::{NAME}-archive");
    let log_group = format!("arn:aws:logs:{}:123456789012:log-group:/datavault/{NAME}:*", region());
    let file_system = format!("arn:aws:elasticfilesystem:{}:123456789012:file-system/{}", region(), fs.id);
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut grant = |actions: &[&str], resources: &[&str]| {
        for action in actions {
            grants.entry(action.to_string()).or_default().extend(resources.iter().map(|r| r.to_string()));
        }
    };
    grant(
        &[
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
            "logs:DescribeLogGroups",
        ],
        &["*"],
    );
    grant(&["logs:CreateLogStream", "logs:PutLogEvents"], &[&log_group]);
    if service != "web" {
        grant(&["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"], &[&file_system]);
    }
    if service == "worker" {
        let objects = format!("{archive}/*");
        grant(
            &["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions"],
            &[&archive],
        );
        grant(
            &[
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            &[&objects],
        );
    }
    grants
}

/// Least privilege: each service's task role allows ECS Exec and its own data (its folder of the file
/// system through its access point; the archive bucket for workers only), the execution role reads exactly
/// the two passwords, the instance role has the ECS agent's policy only.
async fn check_roles(
    emu: &Emulator,
    database: &Database,
    secrets: &Secrets,
    fs: &FileSystem,
) -> Result<Roles, CheckError> {
    let mut task_arns = BTreeMap::new();
    for service in SERVICES {
        let task = format!("{NAME}-{service}-task");
        task_arns.insert(service.to_string(), role(emu, &task, "ecs-tasks.amazonaws.com").await?);
        // Confused-deputy protection: only ECS acting for this account and region may assume it.
        let trust = emu.iam().get_role().role_name(&task).send().await.map_err(|e| describe(&e))?;
        let trust = policy_document(trust.role().and_then(|r| r.assume_role_policy_document()).unwrap_or_default())?;
        let condition = &trust["Statement"][0]["Condition"];
        ensure_eq!(condition["StringEquals"]["aws:SourceAccount"], "123456789012", "{task}'s aws:SourceAccount");
        ensure_eq!(
            condition["ArnLike"]["aws:SourceArn"],
            format!("arn:aws:ecs:{}:123456789012:*", region()).as_str(),
            "{task}'s aws:SourceArn"
        );
        ensure_eq!(attached_policies(emu, &task).await?, Vec::<String>::new(), "managed policies of {task}");
        let allowed = task_role_grants(service, fs);
        let mut granted: BTreeSet<String> = BTreeSet::new();
        for (name, policy) in inline_policies(emu, &task).await? {
            for statement in policy["Statement"].as_array().into_iter().flatten() {
                ensure!(
                    statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                    "{task}/{name} uses NotAction/NotResource: {statement}"
                );
                if statement["Effect"] != "Allow" {
                    continue;
                }
                for action in strings(&statement["Action"]) {
                    let resources =
                        allowed.get(&action).ok_or(format!("{task}/{name} allows {action}: {statement}"))?;
                    for resource in strings(&statement["Resource"]) {
                        ensure!(
                            resources.contains(&resource),
                            "{task}/{name} allows {action} on {resource}: {statement}"
                        );
                    }
                    if action.starts_with("elasticfilesystem:") {
                        ensure!(
                            statement["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"].is_string(),
                            "{task}/{name} mounts the file system through any access point: {statement}"
                        );
                    }
                    granted.insert(action);
                }
            }
        }
        let needed: BTreeSet<String> = allowed.keys().cloned().collect();
        ensure_eq!(granted, needed, "actions {task} allows");
    }

    let execution = format!("{NAME}-execution");
    let execution_arn = role(emu, &execution, "ecs-tasks.amazonaws.com").await?;
    let attached = attached_policies(emu, &execution).await?;
    ensure!(
        attached.len() == 1 && attached[0].ends_with(":policy/service-role/AmazonECSTaskExecutionRolePolicy"),
        "managed policies of {execution} are {attached:?}, expected AmazonECSTaskExecutionRolePolicy only"
    );
    let mut readable = BTreeSet::new();
    for (name, policy) in inline_policies(emu, &execution).await? {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let actions = strings(&statement["Action"]);
            ensure!(
                actions.iter().all(|a| a == "secretsmanager:GetSecretValue"),
                "{execution}/{name} allows more than reading secrets: {statement}"
            );
            readable.extend(strings(&statement["Resource"]));
        }
    }
    let expected: BTreeSet<String> = [database.secret_arn.clone(), secrets.rabbitmq_arn.clone()].into();
    ensure_eq!(readable, expected, "secrets {execution} can read");

    let instance = format!("{NAME}-instance");
    role(emu, &instance, "ec2.amazonaws.com").await?;
    let attached = attached_policies(emu, &instance).await?;
    ensure!(
        attached.len() == 1 && attached[0].ends_with(":policy/service-role/AmazonEC2ContainerServiceforEC2Role"),
        "managed policies of {instance} are {attached:?}, expected AmazonEC2ContainerServiceforEC2Role only"
    );
    let profile = emu
        .iam()
        .get_instance_profile()
        .instance_profile_name(&instance)
        .send()
        .await
        .map_err(|e| format!("GetInstanceProfile {instance}: {}", describe(&e)))?;
    let profile = profile.instance_profile().ok_or(format!("instance profile {instance} does not exist"))?;
    let profile_roles: Vec<&str> = profile.roles().iter().map(|r| r.role_name()).collect();
    ensure_eq!(profile_roles, vec![instance.as_str()], "roles of instance profile {instance}");
    Ok(Roles { task_arns, execution_arn, instance_profile_arn: profile.arn().to_string() })
}

// ---------------------------------------------------------------------------------------------- services

/// The private namespace and a Cloud Map service per reachable service; returns their ARNs by service.
async fn check_discovery(emu: &Emulator) -> Result<BTreeMap<String, String>, CheckError> {
    let sd = emu.servicediscovery();
    let namespace_name = format!("{NAME}.datavault.internal");
    let namespaces = sd.list_namespaces().send().await.map_err(|e| format!("ListNamespaces: {}", describe(&e)))?;
    let namespace = namespaces
        .namespaces()
        .iter()
        .find(|n| n.name() == Some(namespace_name.as_str()))
        .ok_or(format!("namespace {namespace_name} does not exist"))?;
    ensure_eq!(
        namespace.r#type(),
        Some(&aws_sdk_servicediscovery::types::NamespaceType::DnsPrivate),
        "type of namespace {namespace_name}"
    );
    let namespace_id = namespace.id().unwrap_or_default();
    let listed = sd.list_services().send().await.map_err(|e| format!("ListServices: {}", describe(&e)))?;
    let mut registered = BTreeMap::new();
    for summary in listed.services() {
        let id = summary.id().unwrap_or_default();
        let service = sd.get_service().id(id).send().await.map_err(|e| format!("GetService {id}: {}", describe(&e)))?;
        let service = service.service().ok_or(format!("Cloud Map service {id} vanished"))?;
        if service.namespace_id() == Some(namespace_id) {
            registered
                .insert(service.name().unwrap_or_default().to_string(), service.arn().unwrap_or_default().to_string());
        }
    }
    let names: BTreeSet<&str> = registered.keys().map(String::as_str).collect();
    ensure_eq!(names, BTreeSet::from(DISCOVERABLE), "services registered in {namespace_name}");
    Ok(registered)
}

/// The service's container, first of its task definition; RabbitMQ's task also has the companion that sets
/// its password (checked in the passwords tests).
fn container<'a>(td: &'a TaskDefinition, name: &str) -> Result<&'a ContainerDefinition, CheckError> {
    let names: Vec<&str> = td.container_definitions().iter().filter_map(|c| c.name()).collect();
    let expected = if name == "rabbitmq" { vec![name, "rabbitmq-password"] } else { vec![name] };
    ensure_eq!(names, expected, "containers of task definition {}", td.family().unwrap_or_default());
    Ok(&td.container_definitions()[0])
}

/// Task definitions: awsvpc, wired by DNS names, passwords only as ECS secrets, EFS volumes encrypted in
/// transit through their access points, logs to the stack's log group, never privileged, the images at the
/// configured tag, the archive role for broker and workers only. Returns each service's task definition ARN.
async fn check_task_definitions(
    emu: &Emulator,
    expected: &Expected,
    database: &Database,
    secrets: &Secrets,
    fs: &FileSystem,
    roles: &Roles,
) -> Result<BTreeMap<String, String>, CheckError> {
    let log_group = format!("/datavault/{NAME}");
    let mut arns = BTreeMap::new();
    for service in SERVICES {
        let family = format!("{NAME}-{service}");
        let out = emu
            .ecs()
            .describe_task_definition()
            .task_definition(&family)
            .send()
            .await
            .map_err(|e| format!("DescribeTaskDefinition {family}: {}", describe(&e)))?;
        let td = out.task_definition().ok_or(format!("task definition {family} does not exist"))?;
        ensure_eq!(td.network_mode(), Some(&NetworkMode::Awsvpc), "{family} network mode");
        ensure_eq!(td.execution_role_arn(), Some(roles.execution_arn.as_str()), "{family} execution role");
        ensure_eq!(td.task_role_arn(), roles.task_arns.get(service).map(String::as_str), "{family} task role");

        let c = container(td, service)?;
        ensure!(c.privileged() != Some(true), "{family}: container {service} is privileged");
        let image = c.image().unwrap_or_default();
        match service {
            "rabbitmq" => ensure_eq!(image, "rabbitmq:3.13-management-alpine", "{family} image"),
            _ => ensure!(
                image.ends_with(&format!("/{NAME}/{service}:{}", expected.image_tag)),
                "{family} image is {image}, expected the stack's {service} repository at tag {}",
                expected.image_tag
            ),
        }
        let log = c.log_configuration().ok_or(format!("{family}: container {service} has no log configuration"))?;
        ensure_eq!(log.log_driver().as_str(), "awslogs", "{family} log driver");
        let options = log.options().cloned().unwrap_or_default();
        ensure_eq!(options.get("awslogs-group"), Some(&log_group), "{family} awslogs-group");

        let env: BTreeMap<&str, &str> =
            c.environment().iter().filter_map(|kv| Some((kv.name()?, kv.value().unwrap_or_default()))).collect();
        let secret_refs: BTreeMap<&str, &str> = c.secrets().iter().map(|s| (s.name(), s.value_from())).collect();
        for (key, value) in &env {
            ensure!(
                !key.contains("PASSWORD") && !key.ends_with("_PASS"),
                "{family}: {key} is a plain environment variable; passwords go in `secrets`"
            );
            for (what, password) in [("RabbitMQ", &secrets.rabbitmq_password), ("database", &secrets.database_password)]
            {
                ensure!(!value.contains(password.as_str()), "{family}: environment {key} contains the {what} password");
            }
        }
        let expect_env = |key: &str, value: &str| -> CheckResult {
            ensure_eq!(env.get(key).copied(), Some(value), "{family} environment {key}");
            Ok(())
        };
        let rabbitmq_host = dns_name("rabbitmq");
        let archive_bucket = format!("{NAME}-archive");
        let mut mounts = BTreeMap::new();
        match service {
            "web" => {
                expect_env("BROKER_HOST", &dns_name("broker"))?;
                ensure_eq!(secret_refs.len(), 0, "{family} secrets");
            }
            "broker" | "worker" => {
                expect_env("MYSQL_HOST", &database.endpoint)?;
                expect_env("RABBITMQ_HOST", &rabbitmq_host)?;
                expect_env("AWS_S3_BUCKET", &archive_bucket)?;
                expect_env("AWS_REGION", &region())?;
                // Empty, not unset: the images turn unset keys into "-" and use that as a credential.
                expect_env("AWS_ACCESS_KEY_ID", "")?;
                expect_env("AWS_SECRET_KEY_ID", "")?;
                expect_env("USER_DATA_DIR", "/tmp/datavault/users")?;
                let names: BTreeSet<&str> = secret_refs.keys().copied().collect();
                ensure_eq!(names, BTreeSet::from(["MYSQL_PASSWORD", "RABBITMQ_PASSWORD"]), "{family} secrets");
                ensure_eq!(secret_refs["MYSQL_PASSWORD"], database.secret_arn.as_str(), "{family} MYSQL_PASSWORD");
                ensure_eq!(
                    secret_refs["RABBITMQ_PASSWORD"],
                    secrets.rabbitmq_arn.as_str(),
                    "{family} RABBITMQ_PASSWORD"
                );
                mounts.insert("/tmp/datavault", fs.working_access_point.as_str());
            }
            _ => {
                ensure_eq!(
                    secret_refs.keys().copied().collect::<Vec<_>>(),
                    vec!["RABBITMQ_DEFAULT_PASS"],
                    "{family} secrets"
                );
                ensure_eq!(
                    secret_refs["RABBITMQ_DEFAULT_PASS"],
                    secrets.rabbitmq_arn.as_str(),
                    "{family} RABBITMQ_DEFAULT_PASS"
                );
                mounts.insert("/var/lib/rabbitmq", fs.rabbitmq_access_point.as_str());
            }
        }

        // The worker keeps its key store on the shared folder; every container runs an init for ECS Exec
        // and has a health check.
        let working_directory = (service == "worker").then_some("/tmp/datavault");
        ensure_eq!(c.working_directory(), working_directory, "{family} working directory");
        ensure_eq!(
            c.linux_parameters().and_then(|l| l.init_process_enabled()),
            Some(true),
            "{family} init process (ECS Exec)"
        );
        ensure!(c.health_check().is_some(), "{family} has no health check");

        // Every mount is an EFS volume through the right access point, encrypted in transit.
        let mut seen = BTreeMap::new();
        for mount in c.mount_points() {
            let (volume_name, path) =
                (mount.source_volume().unwrap_or_default(), mount.container_path().unwrap_or_default());
            let volume = td
                .volumes()
                .iter()
                .find(|v| v.name() == Some(volume_name))
                .ok_or(format!("{family}: mount {path} names a missing volume {volume_name}"))?;
            let efs = volume.efs_volume_configuration().ok_or(format!("{family}: volume {volume_name} is not EFS"))?;
            ensure_eq!(efs.file_system_id(), fs.id.as_str(), "{family} volume {volume_name} file system");
            ensure_eq!(
                efs.transit_encryption(),
                Some(&EfsTransitEncryption::Enabled),
                "{family} volume {volume_name} transit encryption"
            );
            let access_point = efs.authorization_config().and_then(|a| a.access_point_id()).unwrap_or_default();
            seen.insert(path, access_point);
        }
        ensure_eq!(seen, mounts, "{family} mounts (path -> access point)");
        arns.insert(service.to_string(), td.task_definition_arn().unwrap_or_default().to_string());
    }
    Ok(arns)
}

/// The ECS services: the latest task definitions, the configured counts, private awsvpc networking in the
/// services group, registered in Cloud Map where reachable. Returns their ARNs.
async fn check_services(
    emu: &Emulator,
    expected: &Expected,
    groups: &Groups,
    discovery: &BTreeMap<String, String>,
    task_definitions: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, CheckError> {
    let out = emu
        .ecs()
        .describe_services()
        .cluster(NAME)
        .set_services(Some(SERVICES.map(String::from).to_vec()))
        .include(ServiceField::Tags)
        .send()
        .await
        .map_err(|e| format!("DescribeServices: {}", describe(&e)))?;
    let mut arns = BTreeMap::new();
    for name in SERVICES {
        let svc = out
            .services()
            .iter()
            .find(|s| s.service_name() == Some(name) && s.status() == Some("ACTIVE"))
            .ok_or(format!("service {name} is not ACTIVE in cluster {NAME}"))?;
        let desired = if name == "worker" { expected.worker_count } else { 1 };
        ensure_eq!(svc.desired_count(), desired, "service {name} desired count");
        ensure!(svc.enable_execute_command(), "service {name} does not allow ECS Exec");
        // Only web may run two tasks during a deployment (see the wiring of the images).
        let expected_max = if name == "web" { 200 } else { 100 };
        ensure_eq!(
            svc.deployment_configuration().and_then(|d| d.maximum_percent()),
            Some(expected_max),
            "service {name} maximum percent"
        );
        ensure_eq!(
            svc.task_definition(),
            task_definitions.get(name).map(String::as_str),
            "service {name} task definition"
        );
        let network = svc
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration())
            .ok_or(format!("service {name} has no awsvpc configuration"))?;
        ensure_eq!(network.security_groups(), std::slice::from_ref(&groups.services), "service {name} security groups");
        ensure!(network.assign_public_ip() != Some(&AssignPublicIp::Enabled), "service {name} assigns public IPs");
        ensure!(!network.subnets().is_empty(), "service {name} has no subnets");
        let registries: Vec<&str> = svc.service_registries().iter().filter_map(|r| r.registry_arn()).collect();
        let expected_registries: Vec<&str> = discovery.get(name).map(String::as_str).into_iter().collect();
        ensure_eq!(registries, expected_registries, "service {name} serviceRegistries");
        let tags =
            svc.tags().iter().map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
        check_tags(&format!("service {name}"), &tags.collect(), NAME, &[])?;
        arns.insert(name.to_string(), svc.service_arn().unwrap_or_default().to_string());
    }
    Ok(arns)
}

/// The cluster is ACTIVE with Container Insights on; returns its ARN.
async fn check_cluster(emu: &Emulator) -> Result<String, CheckError> {
    let out = emu
        .ecs()
        .describe_clusters()
        .clusters(NAME)
        .include(ClusterField::Settings)
        .include(ClusterField::Configurations)
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(|e| format!("DescribeClusters: {}", describe(&e)))?;
    let cluster = out.clusters().first().ok_or(format!("cluster {NAME} does not exist"))?;
    ensure_eq!(cluster.status(), Some("ACTIVE"), "cluster status");
    let exec = cluster.configuration().and_then(|c| c.execute_command_configuration());
    ensure_eq!(
        exec.and_then(|e| e.log_configuration()).and_then(|l| l.cloud_watch_log_group_name()),
        Some(format!("/datavault/{NAME}").as_str()),
        "log group recording ECS Exec sessions"
    );
    let insights = cluster
        .settings()
        .iter()
        .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        .and_then(|s| s.value());
    ensure!(
        matches!(insights, Some("enabled" | "enhanced")),
        "cluster containerInsights is {insights:?}, expected enabled"
    );
    let tags =
        cluster.tags().iter().map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
    check_tags(&format!("cluster {NAME}"), &tags.collect(), NAME, &[])?;
    Ok(cluster.cluster_arn().unwrap_or_default().to_string())
}

struct Template {
    id: String,
    default_version: i64,
}

/// The launch template's default version (IMDSv2 required, the configured instance type, the instance
/// profile and group, user data joining the cluster) and the Auto Scaling group running it at the
/// configured sizes.
async fn check_capacity(
    emu: &Emulator,
    expected: &Expected,
    groups: &Groups,
    roles: &Roles,
) -> Result<Template, CheckError> {
    let out = emu
        .ec2()
        .describe_launch_templates()
        .launch_template_names(NAME)
        .send()
        .await
        .map_err(|e| format!("DescribeLaunchTemplates {NAME}: {}", describe(&e)))?;
    let template = out.launch_templates().first().ok_or(format!("launch template {NAME} does not exist"))?;
    let tags =
        template.tags().iter().map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()));
    check_tags(&format!("launch template {NAME}"), &tags.collect(), NAME, &[])?;
    let id = template.launch_template_id().unwrap_or_default().to_string();
    let default_version = template.default_version_number().ok_or("the launch template has no default version")?;
    let versions = emu
        .ec2()
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions(default_version.to_string())
        .send()
        .await
        .map_err(|e| format!("DescribeLaunchTemplateVersions {id}: {}", describe(&e)))?;
    let data = versions
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .ok_or(format!("launch template {id} version {default_version} has no data"))?;
    ensure_eq!(data.instance_type().map(|t| t.as_str()), Some(expected.instance_type), "launch template instance type");
    ensure_eq!(
        data.metadata_options().and_then(|m| m.http_tokens()),
        Some(&LaunchTemplateHttpTokensState::Required),
        "launch template HttpTokens (IMDSv2)"
    );
    let profile = data.iam_instance_profile();
    ensure!(
        profile.and_then(|p| p.arn()) == Some(roles.instance_profile_arn.as_str())
            || profile.and_then(|p| p.name()) == Some(format!("{NAME}-instance").as_str()),
        "launch template instance profile is {profile:?}, expected {}",
        roles.instance_profile_arn
    );
    let mut template_groups: Vec<String> = data.security_group_ids().to_vec();
    template_groups.extend(data.network_interfaces().iter().flat_map(|n| n.groups().iter().cloned()));
    ensure_eq!(template_groups, vec![groups.instances.clone()], "launch template security groups");
    ensure!(
        !data.network_interfaces().iter().any(|n| n.associate_public_ip_address() == Some(true)),
        "launch template gives instances public IPs"
    );
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().unwrap_or_default())
        .map_err(|e| format!("launch template user data is not base64: {e}"))?;
    let user_data = String::from_utf8_lossy(&user_data);
    ensure!(user_data.contains(&format!("ECS_CLUSTER={NAME}")), "user data does not join cluster {NAME}:\n{user_data}");

    let out = emu
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(NAME)
        .send()
        .await
        .map_err(|e| format!("DescribeAutoScalingGroups {NAME}: {}", describe(&e)))?;
    let group = out.auto_scaling_groups().first().ok_or(format!("Auto Scaling group {NAME} does not exist"))?;
    ensure_eq!(
        (group.min_size(), group.max_size(), group.desired_capacity()),
        (Some(expected.min_size), Some(expected.max_size), Some(expected.desired_capacity)),
        "Auto Scaling group (min, max, desired)"
    );
    let spec = group.launch_template().ok_or("the Auto Scaling group does not use a launch template")?;
    ensure_eq!(spec.launch_template_id(), Some(id.as_str()), "Auto Scaling group launch template");
    let version = spec.version().unwrap_or("$Default");
    ensure!(
        version == "$Default" || version == default_version.to_string(),
        "the Auto Scaling group runs launch template version {version}, not the default {default_version}"
    );
    let tags: BTreeMap<String, String> = group
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect();
    check_tags(&format!("Auto Scaling group {NAME}"), &tags, NAME, &[])?;
    Ok(Template { id, default_version })
}

/// The inventory that proves destroy left nothing must be able to see every kind of part; listed while
/// the stack exists, each kind has to show up.
async fn check_inventory_sees_every_kind(emu: &Emulator) -> CheckResult {
    let items = stack_items(emu, NAME).await?;
    let kinds: BTreeSet<Kind> = items.iter().map(|i| i.kind).collect();
    let every = [
        Kind::Bucket,
        Kind::Repository,
        Kind::LogGroup,
        Kind::SecurityGroup,
        Kind::VpcEndpoint,
        Kind::Role,
        Kind::InstanceProfile,
        Kind::FileSystem,
        Kind::AccessPoint,
        Kind::DbInstance,
        Kind::DbSubnetGroup,
        Kind::DbParameterGroup,
        Kind::Cluster,
        Kind::Service,
        Kind::TaskDefinition,
        Kind::LaunchTemplate,
        Kind::AutoScalingGroup,
        Kind::Instance,
        Kind::Namespace,
        Kind::DiscoveryService,
        Kind::Secret,
    ];
    let missing: Vec<&Kind> = every.iter().filter(|k| !kinds.contains(k)).collect();
    ensure!(missing.is_empty(), "the inventory does not see the stack's {missing:?}; it lists:\n{items:#?}");
    // Nothing is allowed to be left yet: the state bucket is the only "retained" part of a live stack.
    let retained: Vec<_> = items
        .iter()
        .filter(|i| i.retained_by_design(NAME, &format!("{NAME}-state")) && i.kind != Kind::Bucket)
        .collect();
    ensure!(
        retained.iter().all(|i| i.kind == Kind::DbSnapshot && inventory::is_automated_snapshot(&i.name, NAME)),
        "a live stack already has retained parts: {retained:?}"
    );
    Ok(())
}

/// The update rolled out: new task definition revisions at the new tag for web, broker and worker (the
/// rabbitmq task is untouched), a new default launch template version.
fn check_rollout(before: &Observed, after: &Observed) -> CheckResult {
    let revision = |arn: &str| arn.rsplit(':').next().and_then(|r| r.parse::<i64>().ok()).unwrap_or(-1);
    for service in ["web", "broker", "worker"] {
        let (old, new) = (&before.task_definitions[service], &after.task_definitions[service]);
        ensure!(
            revision(new) > revision(old),
            "{service} runs {new} after the update, not a newer revision than {old}"
        );
    }
    ensure_eq!(
        after.task_definitions["rabbitmq"],
        before.task_definitions["rabbitmq"],
        "rabbitmq task definition (its image does not follow image_tag, so it must not be re-registered)"
    );
    ensure!(
        revision(&after.task_definitions["worker"]) > 0,
        "the stopped worker still has a task definition, ready to start again"
    );
    ensure!(
        after.launch_template_version > before.launch_template_version,
        "the launch template's default version is {} after the update, it was {}",
        after.launch_template_version,
        before.launch_template_version
    );
    Ok(())
}

/// Destroy keeps the state bucket and the final snapshot, and schedules the RabbitMQ secret for deletion
/// (recoverable for its window) rather than deleting it outright.
async fn check_retained_after_destroy(emu: &Emulator) -> CheckResult {
    ensure!(emu.bucket_exists(&format!("{NAME}-state")).await?, "the state bucket {NAME}-state was deleted");
    let snapshot = format!("{NAME}-final");
    let out = emu
        .rds()
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .map_err(|e| format!("DescribeDBSnapshots {snapshot}: {} (was the final snapshot taken?)", describe(&e)))?;
    let found = out.db_snapshots().first().ok_or(format!("final snapshot {snapshot} does not exist"))?;
    ensure_eq!(found.db_instance_identifier(), Some(NAME), "final snapshot's database");
    ensure_eq!(found.snapshot_type(), Some("manual"), "final snapshot type");
    let tags: BTreeMap<String, String> = found
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect();
    ensure_eq!(
        tags.get(STACK_TAG).map(String::as_str),
        Some(NAME),
        "final snapshot tag {STACK_TAG} (CopyTagsToSnapshot)"
    );

    let secret = format!("{NAME}/rabbitmq");
    let described = emu
        .secrets()
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .map_err(|e| format!("DescribeSecret {secret}: {} (deleted without a recovery window?)", describe(&e)))?;
    ensure!(described.deleted_date().is_some(), "secret {secret} is not scheduled for deletion");
    Ok(())
}
