//! Changes made through the AWS SDK straight to the emulator, behind Terraform's back: the web service
//! deleted, an EFS access point deleted, a rule of the database security group revoked, the archive
//! bucket's policy deleted. The refreshed plan must update the stack in place and list each in `drift`;
//! the apply repairs them; both plans are empty after. Settings changed out of band (a desired count, bucket
//! versioning, a public access block, privileges granted to a task role) are reported and restored; a stack
//! whose parts all vanished leaves the state with a warning and is planned for creation again.

use aws_sdk_ec2::types::{Filter, IpPermission};
use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::runner::announce;
use datavault_acceptance_tests::{Emulator, change_actions, resource_change, state};
use serde_json::Value;

use crate::support::{ADDR, OkOrPanic, Shape, expect_clean_apply, expected_shape, orphans, setup, stack_config};

const NAME: &str = "rb-drift";
/// The drift entries (`<part>: ...`) the changes below must produce.
const DRIFTED_PARTS: [&str; 4] = ["service_web", "access_point_working", "security_group_database", "archive_bucket"];

async fn database_group(emu: &Emulator) -> Result<aws_sdk_ec2::types::SecurityGroup, String> {
    let out = emu
        .ec2()
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(format!("{NAME}-database")).build())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    out.security_groups().first().cloned().ok_or_else(|| format!("no security group {NAME}-database"))
}

async fn working_access_point(emu: &Emulator) -> Result<Option<String>, String> {
    let out = emu.efs().describe_access_points().send().await.map_err(|e| describe(&e))?;
    Ok(out
        .access_points()
        .iter()
        .find(|ap| {
            ap.name() == Some(&format!("{NAME}-working"))
                || ap.tags().iter().any(|t| t.key() == "Name" && t.value() == format!("{NAME}-working"))
        })
        .and_then(|ap| ap.access_point_id().map(str::to_string)))
}

async fn web_service_active(emu: &Emulator) -> Result<bool, String> {
    let out = emu.ecs().describe_services().cluster(NAME).services("web").send().await.map_err(|e| describe(&e))?;
    Ok(out.services().iter().any(|s| s.status() == Some("ACTIVE")))
}

/// Makes the four changes; returns the rule it revoked, for the messages.
async fn drift(emu: Emulator) -> Result<String, String> {
    emu.ecs().delete_service().cluster(NAME).service("web").force(true).send().await.map_err(|e| describe(&e))?;

    let ap = working_access_point(&emu).await?.ok_or("no working access point")?;
    emu.efs().delete_access_point().access_point_id(&ap).send().await.map_err(|e| describe(&e))?;

    let group = database_group(&emu).await?;
    let permission = group.ip_permissions().first().ok_or("the database group has no ingress rule")?;
    let pair = permission.user_id_group_pairs().first().ok_or("the database rule names no group")?;
    let one = IpPermission::builder()
        .set_ip_protocol(permission.ip_protocol().map(str::to_string))
        .set_from_port(permission.from_port())
        .set_to_port(permission.to_port())
        .user_id_group_pairs(pair.clone())
        .build();
    emu.ec2()
        .revoke_security_group_ingress()
        .set_group_id(group.group_id().map(str::to_string))
        .ip_permissions(one)
        .send()
        .await
        .map_err(|e| describe(&e))?;

    emu.s3().delete_bucket_policy().bucket(format!("{NAME}-archive")).send().await.map_err(|e| describe(&e))?;
    Ok(format!("port {:?} from {}", permission.from_port(), pair.group_id().unwrap_or_default()))
}

/// Checks each change was undone.
async fn repaired(emu: Emulator, rules_before: usize) -> Result<(), String> {
    if !web_service_active(&emu).await? {
        return Err("the web service was not recreated".into());
    }
    if working_access_point(&emu).await?.is_none() {
        return Err("the working access point was not recreated".into());
    }
    let group = database_group(&emu).await?;
    let rules: usize = group.ip_permissions().iter().map(|p| p.user_id_group_pairs().len()).sum();
    if rules != rules_before {
        return Err(format!("the database group has {rules} group rules, it had {rules_before}"));
    }
    let policy =
        emu.s3().get_bucket_policy().bucket(format!("{NAME}-archive")).send().await.map_err(|e| describe(&e))?;
    if !policy.policy().unwrap_or_default().contains("aws:SecureTransport") {
        return Err(format!("the archive bucket policy was not restored: {:?}", policy.policy()));
    }
    Ok(())
}

#[test]
fn drift_made_through_the_sdk_is_planned_as_an_update_and_repaired() {
    let Some(ctx) = setup("drift") else { return };
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    expect_clean_apply(tf.apply()).unwrap_or_else(|e| panic!("{e}"));
    let group = ctx.block_on(database_group(&ctx.emulator)).unwrap_or_else(|e| panic!("{e}"));
    let rules_before: usize = group.ip_permissions().iter().map(|p| p.user_id_group_pairs().len()).sum();

    let revoked = ctx.block_on(drift(ctx.emulator.clone())).unwrap_or_else(|e| panic!("making the drift: {e}"));

    let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=tfplan"]);
    assert_eq!(plan.code, Some(2), "the drift must be planned as a change:\n{plan}");
    let json = tf.run(&["show", "-json", "-no-color", "tfplan"]).ok_or_panic();
    let json: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}"));
    assert_eq!(change_actions(&json, ADDR), Some(vec!["update".to_string()]), "drift is repaired in place:\n{plan}");
    let drift: Vec<String> = resource_change(&json, ADDR)
        .and_then(|c| c.get("change")?.get("before"))
        .and_then(|before| state::lookup(before, "drift"))
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = DRIFTED_PARTS
        .iter()
        .copied()
        .filter(|part| !drift.iter().any(|d| d.starts_with(&format!("{part}:"))))
        .collect();
    assert!(missing.is_empty(), "the refreshed `drift` does not list {missing:?}; it is {drift:#?}");
    announce(&format!(
        "robustness/drift: deleted web service, working access point, database rule ({revoked}), archive policy -> plan exit 2 with drift {drift:?}"
    ));

    tf.run(&["apply", "-input=false", "-no-color", "tfplan"]).ok_or_panic();
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("after repairing the drift: {e}"));
    ctx.block_on(repaired(ctx.emulator.clone(), rules_before)).unwrap_or_else(|e| panic!("{e}"));
    let shape = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    let problems = shape.problems(&expected_shape());
    assert!(problems.is_empty(), "after repairing the drift:\n  {}", problems.join("\n  "));

    tf.destroy().ok_or_panic();
    let left = ctx.block_on(orphans(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    announce(&format!("robustness/drift: repaired, plans empty; orphans found: {}", left.len()));
    assert!(left.is_empty(), "destroy left orphans:\n  {}", left.join("\n  "));
    ctx.finish();
}

/// The stack of the settings test.
const SETTINGS_NAME: &str = "rb-settings";

/// Changes settings of existing parts out of band: RabbitMQ's desired count (the one service that runs
/// without a pushed image), the archive bucket's versioning and its public access block, security settings
/// and the broker's task role.
async fn change_settings(emu: Emulator) -> Result<(), String> {
    emu.ecs()
        .update_service()
        .cluster(SETTINGS_NAME)
        .service("rabbitmq")
        .desired_count(5)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let bucket = format!("{SETTINGS_NAME}-archive");
    emu.s3()
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.s3().delete_public_access_block().bucket(&bucket).send().await.map_err(|e| describe(&e))?;
    // Security settings someone relaxes by hand: IAM database authentication off, a file system policy that
    // lets anyone mount without TLS (the API has no way to take the policy away that the emulator serves).
    emu.rds()
        .modify_db_instance()
        .db_instance_identifier(SETTINGS_NAME)
        .enable_iam_database_authentication(false)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let db_log = format!("/aws/rds/instance/{SETTINGS_NAME}/error");
    emu.logs().delete_retention_policy().log_group_name(&db_log).send().await.map_err(|e| describe(&e))?;
    let secret = format!("{SETTINGS_NAME}/rabbitmq");
    emu.secrets().delete_resource_policy().secret_id(&secret).send().await.map_err(|e| describe(&e))?;
    let fs_id = file_system_id(&emu).await?;
    let open = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"elasticfilesystem:ClientMount","Resource":"*"}]}"#;
    emu.efs().put_file_system_policy().file_system_id(&fs_id).policy(open).send().await.map_err(|e| describe(&e))?;
    // Privileges someone grants a task role by hand: the stack's roles are least-privilege, so both are drift.
    let role = format!("{SETTINGS_NAME}-broker-task");
    emu.iam()
        .attach_role_policy()
        .role_name(&role)
        .policy_arn(ADMINISTRATOR_ACCESS)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let everything = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    emu.iam()
        .put_role_policy()
        .role_name(&role)
        .policy_name("backdoor")
        .policy_document(everything)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(())
}

/// The AWS managed policy attached to a task role out of band.
const ADMINISTRATOR_ACCESS: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

/// The privileges the broker's task role was given out of band, as far as they are still there.
async fn granted_by_hand(emu: &Emulator) -> Result<Vec<String>, String> {
    let role = format!("{SETTINGS_NAME}-broker-task");
    let attached = emu.iam().list_attached_role_policies().role_name(&role).send().await;
    let attached = attached.map_err(|e| describe(&e))?;
    let inline = emu.iam().list_role_policies().role_name(&role).send().await.map_err(|e| describe(&e))?;
    let mut granted: Vec<String> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .filter(|arn| *arn == ADMINISTRATOR_ACCESS)
        .map(str::to_string)
        .collect();
    granted.extend(inline.policy_names().iter().filter(|n| *n == "backdoor").cloned());
    Ok(granted)
}

/// The stack's file system, found by its tag.
async fn file_system_id(emu: &Emulator) -> Result<String, String> {
    let systems = emu.efs().describe_file_systems().send().await.map_err(|e| describe(&e))?;
    let ours = systems
        .file_systems()
        .iter()
        .find(|fs| fs.tags().iter().any(|t| t.key() == "datavault:stack" && t.value() == SETTINGS_NAME));
    ours.map(|fs| fs.file_system_id().to_string()).ok_or_else(|| "no file system tagged for the stack".into())
}

/// Checks the changed settings are back to what the configuration says.
async fn settings_restored(emu: Emulator) -> Result<(), String> {
    let services = emu
        .ecs()
        .describe_services()
        .cluster(SETTINGS_NAME)
        .services("rabbitmq")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let count = services.services().first().map(|s| s.desired_count()).ok_or("no rabbitmq service")?;
    if count != 1 {
        return Err(format!("RabbitMQ's desired count is {count}, the configuration says 1"));
    }
    let bucket = format!("{SETTINGS_NAME}-archive");
    let versioning = emu.s3().get_bucket_versioning().bucket(&bucket).send().await.map_err(|e| describe(&e))?;
    if versioning.status().map(|s| s.as_str()) != Some("Enabled") {
        return Err(format!("archive versioning is {:?}, expected Enabled", versioning.status()));
    }
    let block = emu.s3().get_public_access_block().bucket(&bucket).send().await.map_err(|e| describe(&e))?;
    let block = block.public_access_block_configuration().ok_or("no public access block")?;
    let all = [
        block.block_public_acls(),
        block.ignore_public_acls(),
        block.block_public_policy(),
        block.restrict_public_buckets(),
    ];
    if !all.iter().all(|b| *b == Some(true)) {
        return Err(format!("the public access block is not fully on: {block:?}"));
    }
    let db = emu.rds().describe_db_instances().db_instance_identifier(SETTINGS_NAME).send().await;
    let db = db.map_err(|e| describe(&e))?;
    let iam = db.db_instances().first().and_then(|d| d.iam_database_authentication_enabled());
    if iam != Some(true) {
        return Err(format!("IAM database authentication is {iam:?}, expected on"));
    }
    let db_log = format!("/aws/rds/instance/{SETTINGS_NAME}/error");
    let groups = emu.logs().describe_log_groups().log_group_name_prefix(&db_log).send().await;
    let retention = groups.map_err(|e| describe(&e))?.log_groups().first().and_then(|g| g.retention_in_days());
    if retention != Some(365) {
        return Err(format!("log group {db_log} keeps logs for {retention:?} days, expected 365"));
    }
    let secret = format!("{SETTINGS_NAME}/rabbitmq");
    let secret_policy = emu.secrets().get_resource_policy().secret_id(&secret).send().await;
    if secret_policy.map_err(|e| describe(&e))?.resource_policy().is_none() {
        return Err(format!("secret {secret} has no resource policy again"));
    }
    let fs_id = file_system_id(&emu).await?;
    let policy = emu.efs().describe_file_system_policy().file_system_id(&fs_id).send().await;
    let policy = policy.map_err(|e| describe(&e))?.policy().unwrap_or_default().to_string();
    let policy: serde_json::Value = serde_json::from_str(&policy).map_err(|e| format!("{e}: {policy}"))?;
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    let restored = statements.iter().any(|s| s["Condition"]["Bool"]["aws:SecureTransport"] == "false")
        && statements.iter().all(|s| {
            s["Effect"] != "Allow" || s["Condition"]["Bool"]["elasticfilesystem:AccessedViaMountTarget"] == "true"
        });
    if !restored {
        return Err(format!("the file system policy was not restored: {policy}"));
    }
    let granted = granted_by_hand(&emu).await?;
    if !granted.is_empty() {
        return Err(format!("the broker's task role still has what was granted by hand: {granted:?}"));
    }
    Ok(())
}

#[test]
fn settings_changed_out_of_band_are_reported_and_restored_and_a_vanished_stack_leaves_state() {
    let Some(ctx) = setup("settings") else { return };
    let tf = ctx.workdir("work", &stack_config(SETTINGS_NAME, ""));
    expect_clean_apply(tf.apply()).unwrap_or_else(|e| panic!("{e}"));

    ctx.block_on(change_settings(ctx.emulator.clone())).unwrap_or_else(|e| panic!("changing settings: {e}"));
    let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=tfplan"]);
    assert_eq!(plan.code, Some(2), "settings changed out of band must be planned as a change:\n{plan}");
    let json = tf.run(&["show", "-json", "-no-color", "tfplan"]).ok_or_panic();
    let json: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}"));
    assert_eq!(change_actions(&json, ADDR), Some(vec!["update".to_string()]), "restored in place:\n{plan}");
    let before = resource_change(&json, ADDR).and_then(|c| c.get("change")?.get("before")).cloned();
    let before = before.unwrap_or_else(|| panic!("no prior state in the plan:\n{plan}"));
    let drift = state::lookup(&before, "drift").map(Value::to_string).unwrap_or_default();
    let expectations = [
        "versioning is Suspended",
        "public access block is missing",
        "IAM database authentication is off",
        "the file system policy differs",
        "the secret has no resource policy",
        "keeps logs for ever, expected 365 days",
        "extra managed policy arn:aws:iam::aws:policy/AdministratorAccess is attached",
        "extra inline policy backdoor",
    ];
    for expected in expectations {
        assert!(drift.contains(expected), "the refreshed `drift` should say \"{expected}\"; it is {drift}");
    }
    let rabbitmq_count = state::lookup(&before, "services.rabbitmq.desired_count").cloned();
    assert!(
        rabbitmq_count == Some(Value::from(5)) || drift.contains("service_rabbitmq"),
        "the refreshed state shows neither RabbitMQ's desired count 5 ({rabbitmq_count:?}) nor drift for it ({drift})"
    );
    announce(&format!(
        "robustness/settings: desired count, versioning, public access block, IAM database authentication, file system \
         and secret policies, database log retention, task role privileges changed -> drift {drift}"
    ));

    tf.run(&["apply", "-input=false", "-no-color", "tfplan"]).ok_or_panic();
    ctx.block_on(settings_restored(ctx.emulator.clone())).unwrap_or_else(|e| panic!("after apply: {e}"));
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("after restoring the settings: {e}"));

    // Every part gone (the emulator wiped): refresh drops the stack from state with a warning, and the plan
    // creates it again rather than failing on parts that are not there.
    ctx.reset();
    let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=tfplan"]);
    assert_eq!(plan.code, Some(2), "a vanished stack must be planned for creation:\n{plan}");
    assert!(plan.stdout.contains("Stack Not Found") || plan.stderr.contains("Stack Not Found"), "no warning:\n{plan}");
    let json = tf.run(&["show", "-json", "-no-color", "tfplan"]).ok_or_panic();
    let json: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}"));
    assert_eq!(change_actions(&json, ADDR), Some(vec!["create".to_string()]), "recreated:\n{plan}");
    announce("robustness/settings: all parts gone -> \"Stack Not Found\" warning, plan creates the stack again");
    ctx.finish();
}
