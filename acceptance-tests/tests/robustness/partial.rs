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
