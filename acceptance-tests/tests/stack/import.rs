//! Import by stack name, with `terraform import` and with an `import {}` block.

use datavault_acceptance_tests::{Step, TestCase, expect_attr_eq, run};

use crate::support::{ADDR, stack_config};

/// Not observable in AWS (like hashicorp/aws's `force_destroy`), so an import cannot recover it.
const NOT_IMPORTABLE: &[&str] = &["archive_force_destroy"];

#[test]
fn import_by_name_and_import_block() {
    const NAME: &str = "acc-import";
    let config = stack_config(NAME, "  tags = {\n    team = \"import\"\n  }\n  log_retention_days = 60\n");
    run(TestCase::new()
        .stack(NAME)
        .step(Step::config(config))
        .step(
            Step::import(ADDR).import_id(NAME).import_state_verify().import_state_verify_ignore(NOT_IMPORTABLE).check(
                |state| {
                    expect_attr_eq(state, ADDR, "name", NAME)?;
                    expect_attr_eq(state, ADDR, "log_retention_days", 60)?;
                    expect_attr_eq(state, ADDR, "tags.team", "import")
                },
            ),
        )
        .step(
            Step::import(ADDR)
                .import_id(NAME)
                .import_block()
                .import_state_verify()
                .import_state_verify_ignore(NOT_IMPORTABLE),
        ));
}
