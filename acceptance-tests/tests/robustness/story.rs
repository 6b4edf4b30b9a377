//! The first deployment as a new user lives it, with `wait_for_steady_state = true`, through the AWS
//! behaviour model (`acceptance-tests/aws_model.py`, in the fault proxy): databases and mount targets that
//! take a while, an instance profile IAM has not propagated yet, tasks that start only when their image can
//! be pulled, and deployments the circuit breaker fails.
//!
//! Empty repositories: the first apply succeeds, warns, starts nothing and taints nothing. Images pushed:
//! the plan is an update that starts the services, and its apply waits until they are stable. A tag never
//! pushed: the services keep running what they run. An image that cannot be pulled: the apply fails with
//! ECS's stopped reason, nothing is tainted, the next plan retries; fixing the image converges. A secret
//! the execution role may not read: ECS's reason, and the next apply repairs the policy and redeploys.

use std::time::Instant;

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::runner::announce;
use datavault_acceptance_tests::{CommandOutput, Emulator};
use serde_json::{Value, json};

use crate::proxy::writes;
use crate::support::{OkOrPanic, Tf, orphans, secs, setup, tainted, value};

const NAME: &str = "rb-story";
/// The default image tag: the commit of the supported DataVault source.
const TAG: &str = "729ca07";
/// A minute of AWS time passes in a second.
const SCALE: f64 = 60.0;
const BUILT: [&str; 3] = ["web", "broker", "worker"];
/// What starting the services once their images exist may write: new task definitions and deployments.
const DEPLOYMENT_WRITES: [&str; 2] = ["RegisterTaskDefinition", "UpdateService"];

fn config(extra: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    datavault = {{ source = \"datavault/datavault\" }}\n  }}\n}}\n\n\
         provider \"datavault\" {{}}\n\n\
         resource \"datavault_stack\" \"main\" {{\n  name                  = \"{NAME}\"\n  wait_for_steady_state = true\n  \
         images_force_destroy  = true\n  \
         database              = {{ deletion_protection = false, skip_final_snapshot = true }}\n{extra}}}\n"
    )
}

async fn services(emu: &Emulator) -> Result<Vec<(String, i32, String)>, String> {
    emu.service_summaries(NAME).await.map_err(|e| e.to_string())
}

fn counts(services: &[(String, i32, String)]) -> Vec<(String, i32)> {
    services.iter().map(|(name, count, _)| (name.clone(), *count)).collect()
}

fn expected_counts(web_broker_worker: i32) -> Vec<(String, i32)> {
    let mut want: Vec<(String, i32)> =
        BUILT.iter().map(|s| (s.to_string(), web_broker_worker)).chain([("rabbitmq".to_string(), 1)]).collect();
    want.sort();
    want
}

/// The output with its lines joined, so wrapped diagnostics match.
fn flat(out: &CommandOutput) -> String {
    out.combined().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A plan of the current configuration must be an update in place that replaces nothing.
fn expect_update_plan(tf: &Tf, why: &str) {
    let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
    let text = flat(&plan);
    assert_eq!(plan.code, Some(2), "{why}: expected a plan with changes:\n{plan}");
    assert!(text.contains("will be updated in-place"), "{why}: expected an update in place:\n{plan}");
    assert!(!text.contains("must be replaced"), "{why}: the plan replaces the stack:\n{plan}");
}

fn state_value(tf: &Tf, path: &str) -> Value {
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(!tainted(&state), "the stack is tainted");
    value(&state, path).cloned().unwrap_or(Value::Null)
}

/// Denies the stack's execution role the RabbitMQ secret in its resource policy, forces a new RabbitMQ
/// deployment through the model (at `proxy`), and returns the stopped reason of its tasks once the circuit
/// breaker has failed it.
async fn deny_the_secret_and_redeploy(emu: &Emulator, proxy: &str) -> Result<String, String> {
    let role = emu.iam().get_role().role_name(format!("{NAME}-execution")).send().await;
    let role = role.map_err(|e| describe(&e))?.role().map(|r| r.arn().to_string()).ok_or("no execution role")?;
    let deny = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Principal": "*",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
            "Condition": { "ArnEquals": { "aws:PrincipalArn": role } }
        }]
    });
    let secret = format!("{NAME}/rabbitmq");
    let put = emu.secrets().put_resource_policy().secret_id(&secret).resource_policy(deny.to_string()).send().await;
    put.map_err(|e| describe(&e))?;
    let model = Emulator::connect(proxy).await;
    let update = model.ecs().update_service().cluster(NAME).service("rabbitmq").force_new_deployment(true);
    update.send().await.map_err(|e| describe(&e))?;
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = model.ecs().describe_services().cluster(NAME).services("rabbitmq").send().await;
        let out = out.map_err(|e| describe(&e))?;
        let primary = out.services().first().and_then(|s| s.deployments().first()).cloned();
        let state = primary.as_ref().and_then(|d| d.rollout_state()).map(|s| s.as_str().to_string());
        if state.as_deref() == Some("FAILED") {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("RabbitMQ's deployment never failed; it is {state:?}"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let stopped = model
        .ecs()
        .list_tasks()
        .cluster(NAME)
        .service_name("rabbitmq")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let tasks = model.ecs().describe_tasks().cluster(NAME).set_tasks(Some(stopped.task_arns().to_vec())).send().await;
    let tasks = tasks.map_err(|e| describe(&e))?;
    let reason = tasks.tasks().first().and_then(|t| t.stopped_reason()).ok_or("no stopped task")?;
    Ok(reason.to_string())
}

#[test]
fn from_empty_repositories_to_running_services_and_back_from_a_failed_deployment() {
    let Some(ctx) = setup("story") else { return };
    ctx.proxy.configure(json!({"model": {"scale": SCALE}}));
    let story = Instant::now();
    let tf = ctx.workdir("work", &config(""));
    let emu = &ctx.emulator;

    // 1. Empty repositories: the apply succeeds, says what to push, and starts only RabbitMQ.
    let first = tf.apply().ok_or_panic();
    let first_took = story.elapsed();
    let text = flat(&first);
    assert!(text.contains("Images Not Pushed Yet"), "no warning about the missing images:\n{first}");
    for service in BUILT {
        assert!(
            text.contains(&format!("{NAME}/{service}:{TAG}")),
            "the warning does not name {service}'s push target:\n{first}"
        );
    }
    assert_eq!(state_value(&tf, "missing_images"), json!(BUILT), "missing_images after the first apply");
    let before = ctx.block_on(services(emu)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&before), expected_counts(0), "only RabbitMQ starts before the images exist");
    let refused = ctx.proxy.records().iter().filter(|r| r.fault.as_deref() == Some("model")).count();
    assert!(refused >= 1, "the model never refused the Auto Scaling group for its young instance profile");

    // 2. The images are pushed: the plan starts the services as an update, and the apply waits for them.
    ctx.block_on(async {
        for service in BUILT {
            emu.push_image(&format!("{NAME}/{service}"), TAG).await?;
        }
        Ok::<_, datavault_acceptance_tests::CheckError>(())
    })
    .unwrap_or_else(|e| panic!("pushing the images: {e}"));
    expect_update_plan(&tf, "after the push");
    ctx.proxy.clear();
    let started = Instant::now();
    tf.apply().ok_or_panic();
    let second_took = started.elapsed();
    let records = ctx.proxy.records();
    let looks = records.iter().filter(|r| r.action == "DescribeServices").count();
    assert!(looks >= 2, "the apply did not wait for the deployments ({looks} DescribeServices)");
    // Only the services change: every other part already is what the configuration says, so an update
    // that rewrote their tags or settings would spend AWS's write limits (IAM's are low) for nothing.
    let needless: Vec<String> = writes(&records)
        .into_iter()
        .filter(|w| !DEPLOYMENT_WRITES.iter().any(|op| w.ends_with(&format!(" {op}"))))
        .collect();
    assert!(needless.is_empty(), "the update wrote to parts that did not change:\n  {}", needless.join("\n  "));
    let running = ctx.block_on(services(emu)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&running), expected_counts(1), "every service runs once its image is there");
    assert_eq!(state_value(&tf, "missing_images"), json!([]), "missing_images after the push");
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));

    // 3. A tag that was never pushed: a warning, and the services keep running the build they run.
    std::fs::write(tf.dir().join("main.tf"), config("  image_tag = \"no-such-build\"\n")).expect("main.tf");
    let third = tf.apply().ok_or_panic();
    assert!(flat(&third).contains("Images Not Pushed Yet"), "no warning about the unpushed tag:\n{third}");
    let kept = ctx.block_on(services(emu)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept, running, "services moved to a tag that does not exist");

    // 4. An image that cannot be pulled (elsewhere, so plan cannot check it): the deployment fails with
    // ECS's reason; nothing is tainted and the next plan retries it.
    let registry = state_value(&tf, "ecr_repository_urls.web");
    let registry = registry.as_str().and_then(|u| u.split('/').next()).expect("a repository URL").to_string();
    let broken = format!("{registry}/elsewhere/worker:missing");
    std::fs::write(
        tf.dir().join("main.tf"),
        config(&format!("  services = {{ worker = {{ image = \"{broken}\" }} }}\n")),
    )
    .expect("main.tf");
    let started = Instant::now();
    let failed = tf.apply();
    let failure_took = started.elapsed();
    let text = flat(&failed);
    assert!(!failed.success(), "an image that cannot be pulled deployed:\n{failed}");
    assert!(text.contains("worker"), "the error does not name the service:\n{failed}");
    assert!(text.contains("CannotPullContainerError"), "the error does not give ECS's stopped reason:\n{failed}");
    assert!(text.contains("circuit breaker"), "the error does not say why the deployment stopped:\n{failed}");
    let error = failed.stderr.lines().skip_while(|l| !l.starts_with("Error:")).collect::<Vec<_>>().join("\n");
    eprintln!("robustness/story: the failed deployment as the user sees it:\n{error}");
    assert!(!tainted(&tf.state().unwrap_or_else(|e| panic!("{e}"))), "a failed update tainted the stack");
    expect_update_plan(&tf, "after the failed deployment");

    // 5. The image fixed: the next apply converges.
    std::fs::write(tf.dir().join("main.tf"), config("")).expect("main.tf");
    tf.apply().ok_or_panic();
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    let fixed = ctx.block_on(services(emu)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&fixed), expected_counts(1), "every service runs again");

    // 6. A secret the execution role may not read (a policy tightened by hand): the tasks of RabbitMQ's next
    // deployment cannot start; the next apply puts the stack's policy back and starts the deployment anew.
    let reason = ctx.block_on(deny_the_secret_and_redeploy(&ctx.emulator, &ctx.proxy.url()));
    let reason = reason.unwrap_or_else(|e| panic!("{e}"));
    assert!(reason.contains("ResourceInitializationError"), "not ECS's reason for a secret it cannot read: {reason}");
    assert!(reason.contains("explicit deny"), "the stopped reason does not say the policy denied it: {reason}");
    expect_update_plan(&tf, "after the secret's policy was tightened");
    tf.apply().ok_or_panic();
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    let recovered = ctx.block_on(services(emu)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&recovered), expected_counts(1), "every service runs once the policy is the stack's again");

    tf.destroy().ok_or_panic();
    let left = ctx.block_on(orphans(emu, NAME)).unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty(), "destroy left {left:?}");
    announce(&format!(
        "robustness/story: model scale {SCALE}; first apply {} (images missing), apply after the push {}, \
         failed deployment reported after {}, whole story {}",
        secs(first_took),
        secs(second_took),
        secs(failure_took),
        secs(story.elapsed()),
    ));
    ctx.finish();
}
