//! A stack under a customer-managed KMS key (`kms_key_arn`): every part that encrypts uses the key, each
//! read back through its own service's API; the roles may use the key through S3 and Secrets Manager only;
//! an import finds the key again; and a change of key, or a key AWS would refuse, stops at plan with
//! nothing created.
//!
//! The key is made in the emulator after the case resets it, so its ARN reaches the configuration as a
//! variable, through a `*.auto.tfvars` file that Terraform reads from the working directory.

use std::path::Path;
use std::sync::Mutex;

use aws_sdk_ecr::types::EncryptionType;
use aws_sdk_s3::types::ServerSideEncryption;
use datavault_acceptance_tests::{
    CheckError, CheckResult, Emulator, Step, TestCase, ensure, ensure_eq, expect_attr, run,
};
use serde_json::Value;

use crate::full::inline_policies;
use crate::support::{ADDR, region, stack_config};

const NAME: &str = "acc-kms";
const REFUSED: &str = "acc-kms-refused";
const VARIABLES_FILE: &str = "kms.auto.tfvars";

/// The key the current case encrypts with (tests run one at a time).
static KEY: Mutex<String> = Mutex::new(String::new());

fn key() -> String {
    KEY.lock().unwrap().clone()
}

fn config(name: &str) -> String {
    let variable = "variable \"kms_key_arn\" {\n  type = string\n}\n\n";
    format!("{variable}{}", stack_config(name, "  kms_key_arn = var.kms_key_arn\n"))
}

/// The key's ARN depends on a resource created in the same run (through an empty piece of its id), so plan
/// does not know it yet.
fn config_with_key_known_after_apply(name: &str) -> String {
    let variable = "variable \"kms_key_arn\" {\n  type = string\n}\n\n";
    let later = "resource \"terraform_data\" \"later\" {}\n\n";
    let key = "  kms_key_arn = \"${var.kms_key_arn}${substr(terraform_data.later.id, 0, 0)}\"\n";
    format!("{variable}{later}{}", stack_config(name, key))
}

/// A key policy as a careful administrator writes it: the account administers the key; CloudWatch Logs of
/// the region and the Auto Scaling service-linked role may use it.
fn key_policy(account: &str) -> String {
    let region = region();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Administer", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "Logs", "Effect": "Allow", "Principal": {"Service": format!("logs.{region}.amazonaws.com")},
             "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
             "Resource": "*"},
            {"Sid": "AutoScaling", "Effect": "Allow",
             "Principal": {"AWS": format!(
                 "arn:aws:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey",
                        "kms:CreateGrant"],
             "Resource": "*"}
        ]
    })
    .to_string()
}

/// Creates a symmetric key with [`key_policy`] and returns its ARN.
async fn create_key(emu: &Emulator) -> Result<String, CheckError> {
    let out = emu.kms().create_key().policy(key_policy("123456789012")).description("acceptance test").send().await?;
    Ok(out.key_metadata().and_then(|m| m.arn()).ok_or("CreateKey returned no ARN")?.to_string())
}

/// Makes `arn` the key the configuration uses.
fn use_key(dir: &Path, arn: &str) -> CheckResult {
    *KEY.lock().unwrap() = arn.to_string();
    std::fs::write(dir.join(VARIABLES_FILE), format!("kms_key_arn = \"{arn}\"\n"))?;
    Ok(())
}

/// A step that creates a fresh key and points the configuration at it; `disable` turns it off first.
fn with_new_key(disable: bool) -> Step {
    Step::custom(move |ctx| async move {
        let arn = create_key(ctx.emulator()).await?;
        if disable {
            // By key id: the emulator fails DisableKey given an ARN (AWS takes either).
            let id = arn.rsplit_once("key/").map_or(arn.as_str(), |(_, id)| id);
            ctx.emulator().kms().disable_key().key_id(id).send().await?;
        }
        use_key(ctx.dir(), &arn)
    })
}

fn same_key(found: Option<&str>, wanted: &str) -> bool {
    let id = |k: &str| k.rsplit_once("key/").map_or(k, |(_, id)| id).to_string();
    found.is_some_and(|found| id(found) == id(wanted))
}

async fn check_buckets(emu: &Emulator, key: &str) -> CheckResult {
    for bucket in [format!("{NAME}-archive"), format!("{NAME}-state")] {
        let out = emu.s3().get_bucket_encryption().bucket(&bucket).send().await?;
        let rules = out.server_side_encryption_configuration().map(|c| c.rules()).unwrap_or_default();
        let rule = rules.first().ok_or(format!("{bucket} has no encryption rule"))?;
        let default = rule.apply_server_side_encryption_by_default().ok_or(format!("{bucket}: no default"))?;
        ensure_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms, "{bucket} default encryption");
        ensure!(
            same_key(default.kms_master_key_id(), key),
            "{bucket} key {:?}, expected {key}",
            default.kms_master_key_id()
        );
        ensure_eq!(rule.bucket_key_enabled(), Some(true), "{bucket} bucket key (fewer KMS requests)");
    }
    Ok(())
}

async fn check_log_groups(emu: &Emulator, key: &str) -> CheckResult {
    let names = [
        format!("/datavault/{NAME}"),
        format!("/aws/rds/instance/{NAME}/error"),
        format!("/aws/rds/instance/{NAME}/slowquery"),
    ];
    for name in names {
        let group = emu.log_group(&name).await?.ok_or(format!("log group {name} does not exist"))?;
        ensure!(same_key(group.kms_key_id(), key), "log group {name} key {:?}, expected {key}", group.kms_key_id());
    }
    Ok(())
}

async fn check_secrets(emu: &Emulator, key: &str) -> CheckResult {
    for secret in ["database", "rabbitmq"] {
        let id = format!("{NAME}/{secret}");
        let out = emu.secrets().describe_secret().secret_id(&id).send().await?;
        ensure!(same_key(out.kms_key_id(), key), "secret {id} key {:?}, expected {key}", out.kms_key_id());
    }
    Ok(())
}

async fn check_database_and_file_system(emu: &Emulator, key: &str) -> CheckResult {
    let dbs = emu.rds().describe_db_instances().db_instance_identifier(NAME).send().await?;
    let db = dbs.db_instances().first().ok_or("the database does not exist")?;
    ensure_eq!(db.storage_encrypted(), Some(true), "database storage encryption");
    ensure!(same_key(db.kms_key_id(), key), "database key {:?}, expected {key}", db.kms_key_id());
    let systems = emu.efs().describe_file_systems().creation_token(format!("datavault-{NAME}")).send().await?;
    let fs = systems.file_systems().first().ok_or("the file system does not exist")?;
    ensure_eq!(fs.encrypted(), Some(true), "file system encryption");
    ensure!(same_key(fs.kms_key_id(), key), "file system key {:?}, expected {key}", fs.kms_key_id());
    Ok(())
}

async fn check_repositories_and_volumes(emu: &Emulator, key: &str) -> CheckResult {
    for component in ["web", "broker", "worker"] {
        let name = format!("{NAME}/{component}");
        let out = emu.ecr().describe_repositories().repository_names(&name).send().await?;
        let repo = out.repositories().first().ok_or(format!("repository {name} does not exist"))?;
        let encryption = repo.encryption_configuration().ok_or(format!("{name}: no encryption configuration"))?;
        ensure_eq!(encryption.encryption_type(), &EncryptionType::Kms, "repository {name} encryption");
        ensure!(
            same_key(encryption.kms_key(), key),
            "repository {name} key {:?}, expected {key}",
            encryption.kms_key()
        );
    }
    let versions =
        emu.ec2().describe_launch_template_versions().launch_template_name(NAME).versions("$Default").send().await?;
    let data = versions.launch_template_versions().first().and_then(|v| v.launch_template_data());
    let root = data.map(|d| d.block_device_mappings()).unwrap_or_default().first().and_then(|m| m.ebs());
    let root = root.ok_or("the launch template has no root volume mapping")?;
    ensure_eq!(root.encrypted(), Some(true), "root volume encryption");
    ensure!(same_key(root.kms_key_id(), key), "root volume key {:?}, expected {key}", root.kms_key_id());
    Ok(())
}

/// The execution role decrypts the secrets, the worker writes the archive, both through one service only;
/// no other role may use the key.
async fn check_roles(emu: &Emulator, key: &str) -> CheckResult {
    let wanted = [
        ("execution", "secrets-key", vec!["kms:Decrypt"], "secretsmanager"),
        ("worker-task", "archive-key", vec!["kms:Decrypt", "kms:GenerateDataKey"], "s3"),
    ];
    for (role, policy, actions, service) in wanted {
        let role = format!("{NAME}-{role}");
        let policies = inline_policies(emu, &role).await?;
        let document = policies.get(policy).ok_or(format!("role {role} has no policy {policy}: {policies:?}"))?;
        let statement = &document["Statement"][0];
        ensure_eq!(statement["Resource"], Value::from(key), "{role} {policy} resource");
        ensure_eq!(statement["Action"], Value::from(actions.clone()), "{role} {policy} actions");
        let via = &statement["Condition"]["StringEquals"]["kms:ViaService"];
        ensure_eq!(via, &Value::from(format!("{service}.{}.amazonaws.com", region())), "{role} {policy} condition");
    }
    for role in ["instance", "web-task", "broker-task", "rabbitmq-task"] {
        let role = format!("{NAME}-{role}");
        let policies = inline_policies(emu, &role).await?;
        let keyed: Vec<&String> = policies.keys().filter(|p| p.ends_with("-key")).collect();
        ensure!(keyed.is_empty(), "role {role} should not use the key, but has {keyed:?}");
    }
    Ok(())
}

async fn check_encryption(emu: Emulator) -> CheckResult {
    let key = key();
    check_buckets(&emu, &key).await?;
    check_log_groups(&emu, &key).await?;
    check_secrets(&emu, &key).await?;
    check_database_and_file_system(&emu, &key).await?;
    check_repositories_and_volumes(&emu, &key).await?;
    check_roles(&emu, &key).await
}

/// `terraform import` in the case's own directory (where the variables file is) finds the key, and the
/// plan that follows does not try to change it.
fn import_finds_the_key() -> Step {
    Step::custom(|ctx| async move {
        let removed = ctx.terraform(&["state", "rm", ADDR]);
        ensure!(removed.success(), "terraform state rm failed:\n{removed}");
        let imported = ctx.terraform(&["import", "-no-color", ADDR, NAME]);
        ensure!(imported.success(), "terraform import failed:\n{imported}");
        let state = ctx.state()?;
        ensure_eq!(expect_attr(&state, ADDR, "kms_key_arn")?, &Value::from(key()), "kms_key_arn after import");
        let plan = ctx.terraform(&["plan", "-no-color", "-input=false"]);
        ensure!(plan.success(), "the plan after the import failed:\n{plan}");
        Ok(())
    })
}

#[test]
fn every_part_encrypts_with_the_stacks_key() {
    run(TestCase::new()
        .stack(NAME)
        .step(with_new_key(false))
        .step(Step::config(config(NAME)).check_emulator(check_encryption))
        // A new key: the database, the file system and the repositories cannot take it, so plan refuses.
        .step(with_new_key(false))
        .step(Step::config(config(NAME)).expect_error("KMS Key Cannot Change"))
        // Unknown at plan: Terraform plans the stack again during apply once the key is known, and that is
        // refused before anything changes (apply itself checks once more).
        .step(Step::config(config_with_key_known_after_apply(NAME)).expect_error("KMS Key Cannot Change"))
        .step(Step::custom(|ctx| async move {
            let state = ctx.state()?;
            let first = expect_attr(&state, ADDR, "kms_key_arn")?.as_str().ok_or("kms_key_arn is not a string")?;
            use_key(ctx.dir(), first)?;
            check_encryption(ctx.emulator().clone()).await
        }))
        .step(import_finds_the_key())
        .step(Step::config(config(NAME)).check_emulator(check_encryption)));
}

/// Nothing of the refused stack exists.
async fn nothing_created(emu: Emulator) -> CheckResult {
    ensure!(!emu.bucket_exists(&format!("{REFUSED}-archive")).await?, "the archive bucket was created");
    ensure!(emu.log_group(&format!("/datavault/{REFUSED}")).await?.is_none(), "the log group was created");
    Ok(())
}

#[test]
fn keys_aws_would_refuse_stop_at_plan() {
    let region = region();
    let missing = format!("arn:aws:kms:{region}:123456789012:key/00000000-0000-0000-0000-000000000000");
    let elsewhere = format!("arn:aws:kms:{}:123456789012:key/00000000-0000-0000-0000-000000000000", other(&region));
    let literal = |arn: &str| stack_config(REFUSED, &format!("  kms_key_arn = \"{arn}\"\n"));
    run(TestCase::new()
        .stack(REFUSED)
        .step(Step::config(literal(&missing)).expect_error("KMS Key Not Found"))
        .step(Step::config(literal(&elsewhere)).expect_error("KMS Key In Another Region"))
        .step(Step::config(literal("alias/archive")).expect_error("Invalid KMS Key ARN"))
        .step(with_new_key(true))
        .step(Step::config(config(REFUSED)).expect_error("Unusable KMS Key"))
        .step(Step::custom(|ctx| async move { nothing_created(ctx.emulator().clone()).await })));
}

fn other(region: &str) -> &'static str {
    if region == "eu-west-1" { "eu-west-2" } else { "eu-west-1" }
}
