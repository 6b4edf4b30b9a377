//! The archive bucket protects its data: destroy refuses a non-empty archive unless
//! `archive_force_destroy` is set.

use datavault_acceptance_tests::{Step, TestCase, ensure, expect_attr_eq, run};
use regex::Regex;

use crate::support::{ADDR, stack_config};

const NAME: &str = "acc-archive";
const KEY: &str = "deposits/hello.txt";

fn archive_bucket() -> String {
    format!("{NAME}-archive")
}

#[test]
fn non_empty_archive_blocks_destroy_until_forced() {
    run(TestCase::new()
        .stack(NAME)
        .step(Step::config(stack_config(NAME, "")))
        .step(Step::custom(|ctx| async move {
            ctx.emulator().put_object_past_tls_policy(&archive_bucket(), KEY, b"research data").await?;
            Ok(())
        }))
        .step(Step::custom(|ctx| async move {
            let out = ctx.terraform(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
            out.expect_failure(&Regex::new("archive_force_destroy")?)?;
            // The refusal must leave the data where it was. Listing, unlike reading the object, is a
            // bucket operation the TLS-only policy does not block over the emulator's plain HTTP.
            let listing = ctx.emulator().s3().list_objects_v2().bucket(archive_bucket()).prefix(KEY).send().await?;
            ensure!(
                listing.contents().iter().any(|o| o.key() == Some(KEY)),
                "{KEY} disappeared from {} after the refused destroy",
                archive_bucket()
            );
            Ok(())
        }))
        .step(
            Step::config(stack_config(NAME, "  archive_force_destroy = true\n"))
                .check(|state| expect_attr_eq(state, ADDR, "archive_force_destroy", true)),
        ));
    // The case's own destroy now has to empty and delete the archive; the standard after-destroy check
    // confirms nothing but the state bucket is left.
}
