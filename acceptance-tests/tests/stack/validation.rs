//! Invalid arguments fail at plan time, pointing at the offending attribute, and create nothing.

use datavault_acceptance_tests::{Step, TestCase, assert_emulator_empty, run};

use crate::support::stack_config;

/// Terraform's rendering of a diagnostic attached to `attribute` of `datavault_stack.main`: the resource
/// it belongs to, then the source line of that argument.
fn error_at(attribute: &str, value: &str) -> String {
    format!(
        r#"(?s)with datavault_stack\.main,.*in resource "datavault_stack" "main":\s*\d+:\s*{attribute}\s*=\s*{}"#,
        regex_escape(value)
    )
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == ' ' { vec![c] } else { vec!['\\', c] }).collect()
}

#[test]
fn invalid_name_and_retention_fail_at_plan() {
    run(TestCase::new()
        .step(Step::config(stack_config("Bad_Name", "")).plan_only().expect_error(&error_at("name", "\"Bad_Name\"")))
        .step(Step::config(stack_config("x", "")).plan_only().expect_error(&error_at("name", "\"x\"")))
        .step(
            Step::config(stack_config("acc-invalid", "  log_retention_days = 42\n"))
                .plan_only()
                .expect_error(&error_at("log_retention_days", "42")),
        )
        // Nothing was applied, so there is nothing to destroy; the emulator must be untouched.
        .check_destroy(|emu| async move { assert_emulator_empty(&emu).await }));
}
