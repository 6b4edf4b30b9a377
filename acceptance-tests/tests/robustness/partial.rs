//! One part fails for good (the proxy answers every `CreateDBInstance` with a non-retryable 400
//! `ValidationError`): the apply fails, Terraform records the half-created stack as tainted with what was
//! created, and then either the next apply replaces it cleanly, or a destroy removes everything it created.

use datavault_acceptance_tests::runner::announce;
use regex::Regex;
use serde_json::{Value, json};

use crate::support::{
    Ctx, OkOrPanic, Shape, Tf, expect_clean_apply, expected_shape, orphans, setup, stack_config, tainted, value,
};

const NAME: &str = "rb-partial";

/// Every `CreateDBInstance` fails with a client error the SDK does not retry.
fn fail_the_database(ctx: &Ctx) {
    ctx.proxy.configure(json!({
        "rules": [{
            "action": "CreateDBInstance",
            "status": 400,
            "code": "ValidationError",
            "message": "Injected by the robustness tests: the database cannot be created",
        }]
    }));
}

/// Applies with the database failing; returns the recorded (tainted) state.
fn failed_apply(ctx: &Ctx, tf: &Tf) -> Value {
    fail_the_database(ctx);
    let out = tf.apply();
    ctx.proxy.reset();
    let pattern = Regex::new(r"(?s)Failed To Apply Part database.*ValidationError").expect("valid regex");
    out.expect_failure(&pattern).unwrap_or_else(|e| panic!("{e}"));
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(tainted(&state), "a failed create must leave the stack tainted in the state; it holds {state:#}");
    // What was created before the failure is recorded, so nothing is orphaned.
    for recorded in ["archive_bucket_arn", "log_group_arn", "file_system_id"] {
        assert!(
            value(&state, recorded).is_some_and(|v| v.is_string()),
            "{recorded} should be recorded in the tainted state, it is {:?}",
            value(&state, recorded)
        );
    }
    assert_eq!(value(&state, "database_endpoint"), Some(&Value::Null), "the database never existed");
    state
}

#[test]
fn a_failed_part_taints_the_stack_and_the_next_apply_replaces_it() {
    let Some(ctx) = setup("partial-replace") else { return };
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    failed_apply(&ctx, &tf);

    let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
    assert_eq!(plan.code, Some(2), "the tainted stack must be planned for replacement:\n{plan}");
    assert!(
        plan.matches(&Regex::new(r"is tainted, so must be replaced").expect("valid regex")),
        "the plan does not replace the tainted stack:\n{plan}"
    );
    let out = expect_clean_apply(tf.apply()).unwrap_or_else(|e| panic!("replacing the tainted stack failed: {e}"));
    assert!(out.stdout.contains("1 added, 0 changed, 1 destroyed"), "not a replacement:\n{out}");
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(!tainted(&state), "the replaced stack is still tainted");
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    let shape = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    let problems = shape.problems(&expected_shape());
    assert!(problems.is_empty(), "after the replacement:\n  {}", problems.join("\n  "));

    tf.destroy().ok_or_panic();
    let left = ctx.block_on(orphans(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    announce(&format!(
        "robustness/partial: failed CreateDBInstance -> tainted -> replaced; orphans found: {}",
        left.len()
    ));
    assert!(left.is_empty(), "destroy left orphans:\n  {}", left.join("\n  "));
    ctx.finish();
}

#[test]
fn a_tainted_stack_is_destroyed_completely() {
    let Some(ctx) = setup("partial-destroy") else { return };
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    failed_apply(&ctx, &tf);
    let before = ctx.block_on(Shape::of(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));

    let out = tf.destroy();
    assert!(out.success(), "destroying the tainted stack failed:\n{out}");
    let left = ctx.block_on(orphans(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    announce(&format!(
        "robustness/partial: failed CreateDBInstance -> tainted ({}) -> destroyed; orphans found: {}",
        before.summary(),
        left.len()
    ));
    assert!(left.is_empty(), "destroy of the tainted stack left orphans:\n  {}", left.join("\n  "));
    ctx.finish();
}

/// The RabbitMQ secret's current value, read past the proxy.
fn rabbitmq_password(ctx: &Ctx) -> String {
    let id = format!("{NAME}/rabbitmq");
    let out = ctx
        .block_on(ctx.emulator.secrets().get_secret_value().secret_id(&id).send())
        .unwrap_or_else(|e| panic!("GetSecretValue {id}: {e:?}"));
    out.secret_string().unwrap_or_default().to_string()
}

/// A new RabbitMQ password that never reaches the secret (every `PutSecretValue` fails) is not recorded:
/// the stack stays untainted with the version it had, and the next apply generates the password again.
#[test]
fn a_rabbitmq_password_that_never_reached_its_secret_is_set_by_the_next_apply() {
    let Some(ctx) = setup("partial-rabbitmq-password") else { return };
    let with_version = |version: &str| {
        stack_config(NAME, "").replace(
            "wait_for_steady_state = false\n",
            &format!("wait_for_steady_state = false\n  rabbitmq_password_version = {version}\n"),
        )
    };
    let tf = ctx.workdir("work", &with_version("1"));
    expect_clean_apply(tf.apply()).unwrap_or_else(|e| panic!("{e}"));
    let first = rabbitmq_password(&ctx);

    std::fs::write(tf.dir().join("main.tf"), with_version("2")).expect("writing main.tf");
    ctx.proxy.configure(json!({
        "rules": [{
            "action": "PutSecretValue",
            "status": 400,
            "code": "InvalidRequestException",
            "message": "Injected by the robustness tests: the secret cannot take a new value",
        }]
    }));
    let out = tf.apply();
    ctx.proxy.reset();
    let pattern = Regex::new(r"(?s)rabbitmq_secret.*InvalidRequestException").expect("valid regex");
    out.expect_failure(&pattern).unwrap_or_else(|e| panic!("{e}"));
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(!tainted(&state), "a failed update must not taint the stack");
    assert_eq!(value(&state, "rabbitmq_password_version"), Some(&json!(1)), "the version that never got applied");
    assert_eq!(rabbitmq_password(&ctx), first, "the secret changed although PutSecretValue failed");

    expect_clean_apply(tf.apply()).unwrap_or_else(|e| panic!("the retry failed: {e}"));
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&state, "rabbitmq_password_version"), Some(&json!(2)));
    assert_ne!(rabbitmq_password(&ctx), first, "the retry did not set a new password");
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    tf.destroy().ok_or_panic();
    ctx.finish();
}
