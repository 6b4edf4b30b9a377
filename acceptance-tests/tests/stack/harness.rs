//! Self-checks of the harness against the real toolchain: a harness that cannot fail proves nothing, so
//! these cases are built to fail and the tests assert that they do, with a useful message.

use std::panic::{AssertUnwindSafe, catch_unwind};

use datavault_acceptance_tests::env::acceptance_enabled;
use datavault_acceptance_tests::{STACK_TAG, Step, TestCase, expect_attr_eq, run};

use crate::support::{ADDR, stack_config};

/// Runs a case that must fail and returns its failure report; `None` when acceptance tests are off
/// (the case then prints its SKIPPED line like any other).
fn failure_of(case: TestCase) -> Option<String> {
    if !acceptance_enabled() {
        run(case);
        return None;
    }
    match catch_unwind(AssertUnwindSafe(|| run(case))) {
        Ok(()) => panic!("the harness passed a case built to fail"),
        Err(payload) => Some(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        ),
    }
}

fn assert_contains(report: &str, parts: &[&str]) {
    for part in parts {
        assert!(report.contains(part), "{part:?} missing from the failure report:\n{report}");
    }
}

#[test]
fn harness_reports_a_failing_check_and_still_destroys() {
    const NAME: &str = "acc-selfcheck-check";
    let Some(report) = failure_of(TestCase::new().stack(NAME).step(
        Step::config(stack_config(NAME, "")).check(|state| expect_attr_eq(state, ADDR, "log_retention_days", 366)),
    )) else {
        return;
    };
    assert_contains(&report, &["step 1/1 (config) failed", "check #1 failed", "expected 366, got 365"]);
    // The destroy after the failed step ran and left only the state bucket.
    assert!(!report.contains("destroy failed") && !report.contains("left"), "{report}");
}

#[test]
fn harness_rejects_a_perpetual_diff() {
    // `timestamp()` differs on every plan, so the plan after the apply can never be empty.
    let Some(report) = failure_of(
        TestCase::new().step(Step::config("resource \"terraform_data\" \"clock\" {\n  input = timestamp()\n}\n")),
    ) else {
        return;
    };
    assert_contains(&report, &["After applying this step, the plan was not empty", "terraform_data.clock"]);
}

#[test]
fn harness_rejects_a_missing_expected_error() {
    let Some(report) = failure_of(
        TestCase::new()
            .step(Step::config("resource \"terraform_data\" \"x\" {}\n").plan_only().expect_error("no such error")),
    ) else {
        return;
    };
    assert_contains(&report, &["expected an error matching /no such error/, but the plan succeeded"]);
}

#[test]
fn harness_reports_import_verify_differences() {
    const NAME: &str = "acc-selfcheck-import";
    // The flag cannot be read back from AWS, so without an ignore list the import must differ.
    let Some(report) = failure_of(
        TestCase::new()
            .stack(NAME)
            .step(Step::config(stack_config(NAME, "  archive_force_destroy = true\n")))
            .step(Step::import(ADDR).import_state_verify()),
    ) else {
        return;
    };
    assert_contains(
        &report,
        &["step 2/2 (import datavault_stack.main) failed", "ImportStateVerify", "archive_force_destroy"],
    );
}

#[test]
fn harness_reports_leftovers_of_a_stack() {
    const NAME: &str = "acc-selfcheck-leftover";
    // Orphans of several kinds, found by tag or by the names the provider derives from the stack name; a
    // secret scheduled for deletion is in its recovery window by design and must not count.
    let Some(report) = failure_of(TestCase::new().stack(NAME).step(Step::custom(|ctx| async move {
        let emu = ctx.emulator();
        emu.logs().create_log_group().log_group_name("/datavault/orphan").tags(STACK_TAG, NAME).send().await?;
        let vpcs = emu
            .ec2()
            .describe_vpcs()
            .filters(aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build())
            .send()
            .await?;
        let vpc = vpcs.vpcs().first().and_then(|v| v.vpc_id()).ok_or("the emulator has no default VPC")?;
        emu.ec2()
            .create_security_group()
            .group_name(format!("{NAME}-database"))
            .description("orphan")
            .vpc_id(vpc)
            .send()
            .await?;
        emu.iam()
            .create_role()
            .role_name(format!("{NAME}-task"))
            .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
            .send()
            .await?;
        emu.ecs().create_cluster().cluster_name(NAME).send().await?;
        emu.secrets().create_secret().name(format!("{NAME}/rabbitmq")).secret_string("orphan-password").send().await?;
        emu.secrets()
            .create_secret()
            .name(format!("{NAME}/deleted"))
            .secret_string("x")
            .tags(aws_sdk_secretsmanager::types::Tag::builder().key(STACK_TAG).value(NAME).build())
            .send()
            .await?;
        emu.secrets().delete_secret().secret_id(format!("{NAME}/deleted")).recovery_window_in_days(7).send().await?;
        Ok(())
    }))) else {
        return;
    };
    assert_contains(
        &report,
        &[
            "stack acc-selfcheck-leftover left 5 object(s)",
            "log group /datavault/orphan",
            "security group acc-selfcheck-leftover-database",
            "IAM role acc-selfcheck-leftover-task",
            "ECS cluster acc-selfcheck-leftover ",
            "secret acc-selfcheck-leftover/rabbitmq",
        ],
    );
    assert!(!report.contains("acc-selfcheck-leftover/deleted"), "{report}");
}
