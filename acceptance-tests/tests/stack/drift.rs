//! Changes made behind Terraform's back are detected on refresh and repaired by the next apply.

use datavault_acceptance_tests::{Step, TestCase, check_actions, ensure, expect_attr, expect_attr_eq, run};
use serde_json::{Value, json};

use crate::support::{
    ADDR, check_access_logs, check_log_group, check_stack, plan_reports_drift, planned_before, stack_config,
};

const NAME: &str = "acc-drift";

fn log_group() -> String {
    format!("/datavault/{NAME}")
}

#[test]
fn drift_is_detected_and_repaired() {
    let config = stack_config(NAME, "");
    run(TestCase::new()
        .stack(NAME)
        .step(Step::config(config.clone()))
        // A deleted part: the refreshed plan updates the stack in place and the apply recreates it.
        .step(
            Step::config(config.clone())
                .pre_apply(|emu| async move {
                    emu.logs().delete_log_group().log_group_name(log_group()).send().await?;
                    Ok(())
                })
                .plan_check(|plan| {
                    check_actions(plan, ADDR, &[&["update"]])?;
                    ensure!(
                        plan_reports_drift(plan),
                        "the refreshed state should list the missing log group in `drift`, it has {:?}",
                        planned_before(plan, "drift")
                    );
                    Ok(())
                })
                .check(|state| expect_attr_eq(state, ADDR, "drift", json!([])))
                .check_emulator(|emu| async move { check_stack(&emu, NAME, 365, &[]).await }),
        )
        // A changed setting: retention set to 7 out of band is put back to the configured 365.
        .step(
            Step::config(config.clone())
                .pre_apply(|emu| async move {
                    emu.logs().put_retention_policy().log_group_name(log_group()).retention_in_days(7).send().await?;
                    Ok(())
                })
                .plan_check(|plan| {
                    check_actions(plan, ADDR, &[&["update"]])?;
                    let retention = planned_before(plan, "log_retention_days");
                    ensure!(
                        plan_reports_drift(plan) || retention == Some(&json!(7)),
                        "the refreshed state shows neither drift nor the changed retention (log_retention_days = {retention:?})"
                    );
                    Ok(())
                })
                .check(|state| {
                    expect_attr_eq(state, ADDR, "log_retention_days", 365)?;
                    expect_attr_eq(state, ADDR, "drift", json!([]))
                })
                .check_emulator(|emu| async move { check_log_group(&emu, NAME, 365, &[]).await }),
        )
        // A refresh alone records the drift in state and leaves AWS as it found it.
        .step(
            Step::refresh()
                .pre_apply(|emu| async move {
                    emu.logs().put_retention_policy().log_group_name(log_group()).retention_in_days(14).send().await?;
                    Ok(())
                })
                .expect_non_empty_plan()
                .check(|state| {
                    let drift = expect_attr(state, ADDR, "drift")?;
                    let retention = expect_attr(state, ADDR, "log_retention_days")?;
                    ensure!(
                        drift.as_array().is_some_and(|d| !d.is_empty()) || *retention == json!(14),
                        "after a refresh, neither drift ({drift}) nor log_retention_days ({retention}) shows the change"
                    );
                    Ok(())
                })
                .check_emulator(|emu| async move { check_log_group(&emu, NAME, 14, &[]).await }),
        )
        // The password handed to RDS's own management (as stacks of earlier versions had it): the services
        // read the stack's secret, so the plan shows drift and apply takes the password back.
        .step(
            Step::config(config.clone())
                .pre_apply(|emu| async move {
                    let rds = emu.rds().modify_db_instance().db_instance_identifier(NAME);
                    rds.manage_master_user_password(true).apply_immediately(true).send().await?;
                    Ok(())
                })
                .plan_check(|plan| {
                    check_actions(plan, ADDR, &[&["update"]])?;
                    let drift = planned_before(plan, "drift").cloned().unwrap_or_default();
                    ensure!(
                        drift.to_string().contains("managed by RDS"),
                        "the refreshed drift should say RDS manages the password, it is {drift}"
                    );
                    Ok(())
                })
                .check_emulator(|emu| async move {
                    let out = emu.rds().describe_db_instances().db_instance_identifier(NAME).send().await?;
                    let db = out.db_instances().first().ok_or("the database is gone")?;
                    ensure!(db.master_user_secret().is_none(), "RDS still manages the password: {db:?}");
                    Ok(())
                }),
        )
        // The archive's access logging turned off and the log bucket's expiry removed (FSBP S3.9): both are
        // drift, and apply turns them back on.
        .step(
            Step::config(config.clone())
                .pre_apply(|emu| async move {
                    let logging = aws_sdk_s3::types::BucketLoggingStatus::builder().build();
                    let archive = format!("{NAME}-archive");
                    emu.s3().put_bucket_logging().bucket(&archive).bucket_logging_status(logging).send().await?;
                    emu.s3().delete_bucket_lifecycle().bucket(format!("{NAME}-access-logs")).send().await?;
                    Ok(())
                })
                .plan_check(|plan| {
                    check_actions(plan, ADDR, &[&["update"]])?;
                    let drift = planned_before(plan, "drift").cloned().unwrap_or_default().to_string();
                    ensure!(
                        drift.contains("server access logging is off") && drift.contains("logs no longer expire"),
                        "the refreshed drift should name the access logging and the expiry, it is {drift}"
                    );
                    Ok(())
                })
                .check(|state| expect_attr_eq(state, ADDR, "drift", json!([])))
                .check_emulator(|emu| async move { check_access_logs(&emu, NAME, 365).await }),
        )
        .step(
            Step::config(config)
                .check(|state| expect_attr_eq(state, ADDR, "drift", Value::Array(Vec::new())))
                .check_emulator(|emu| async move { check_log_group(&emu, NAME, 365, &[]).await }),
        ));
}
