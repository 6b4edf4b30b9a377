//! Two `terraform apply` started at once in two working directories that share one S3 backend with
//! native locking (`use_lockfile`, Terraform >= 1.10): one gets the lock and creates the stack, the other
//! fails with "Error acquiring the state lock", and the shared state is intact afterwards.
//!
//! The backend bucket is the test's own (versioned), not a stack's state bucket: the stack's TLS-only policy
//! would refuse the backend's plain-HTTP requests to the emulator.

use std::time::{Duration, Instant};

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::hcl::quote;
use datavault_acceptance_tests::runner::announce;
use regex::Regex;
use serde_json::json;

use crate::support::{OkOrPanic, expect_clean_apply, orphans, secs, setup, stack_config};

const NAME: &str = "rb-lock";
const BACKEND_BUCKET: &str = "rb-lock-backend";
const KEY: &str = "datavault/terraform.tfstate";

fn backend(emulator_url: &str, region: &str) -> String {
    format!(
        "terraform {{\n  backend \"s3\" {{\n    bucket                      = \"{BACKEND_BUCKET}\"\n    key                         = \"{KEY}\"\n    \
         region                      = \"{region}\"\n    use_lockfile                = true\n    \
         endpoints                   = {{ s3 = {} }}\n    use_path_style              = true\n    \
         skip_credentials_validation = true\n    skip_requesting_account_id  = true\n    \
         skip_metadata_api_check     = true\n    skip_region_validation      = true\n    \
         access_key                  = \"testing\"\n    secret_key                  = \"testing\"\n  }}\n}}\n",
        quote(emulator_url)
    )
}

async fn create_backend_bucket(emu: &datavault_acceptance_tests::Emulator) -> Result<(), String> {
    let s3 = emu.s3();
    s3.create_bucket()
        .bucket(BACKEND_BUCKET)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(emu.region()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;
    s3.put_bucket_versioning()
        .bucket(BACKEND_BUCKET)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(())
}

async fn backend_keys(emu: &datavault_acceptance_tests::Emulator) -> Result<Vec<String>, String> {
    let out = emu.s3().list_objects_v2().bucket(BACKEND_BUCKET).send().await.map_err(|e| describe(&e))?;
    Ok(out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect())
}

#[test]
fn two_concurrent_applies_on_one_s3_backend_one_wins_one_is_locked_out() {
    let Some(ctx) = setup("locking") else { return };
    ctx.block_on(create_backend_bucket(&ctx.emulator)).unwrap_or_else(|e| panic!("creating the backend bucket: {e}"));
    let config = format!("{}\n{}", backend(&ctx.settings.emulator_url, ctx.emulator.region()), stack_config(NAME, ""));
    // Two `terraform` blocks are fine: Terraform merges them.
    let a = ctx.workdir("a", &config);
    let b = ctx.workdir("b", &config);
    // A little latency keeps the winner's apply (and so its lock) going well past the loser's attempt.
    ctx.proxy.configure(json!({"latency_ms": 20}));

    let t = Instant::now();
    let run_a = a.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let run_b = b.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let out_a = run_a.finish(Duration::from_secs(600));
    let out_b = run_b.finish(Duration::from_secs(600));
    ctx.proxy.reset();
    let locked = Regex::new("Error acquiring the state lock").expect("valid regex");
    let (winner, loser, out_w, out_l) = match (out_a.success(), out_b.success()) {
        (true, false) => (&a, &b, out_a, out_b),
        (false, true) => (&b, &a, out_b, out_a),
        _ => panic!("exactly one of two concurrent applies must succeed:\n{out_a}\n\n{out_b}"),
    };
    out_l.expect_failure(&locked).unwrap_or_else(|e| panic!("the losing apply failed for another reason: {e}"));
    expect_clean_apply(out_w).unwrap_or_else(|e| panic!("{e}"));
    announce(&format!(
        "robustness/locking: two concurrent applies on one S3 backend: {} won, {} was locked out ({} in all)",
        winner.dir().file_name().unwrap_or_default().to_string_lossy(),
        loser.dir().file_name().unwrap_or_default().to_string_lossy(),
        secs(t.elapsed())
    ));

    // The shared state is intact, seen from the loser's directory, and the lock was released.
    let list = loser.run(&["state", "list"]).ok_or_panic();
    assert_eq!(list.stdout.trim(), "datavault_stack.main", "the shared state should hold the stack");
    loser.expect_empty_plans().unwrap_or_else(|e| panic!("the shared state is not intact: {e}"));
    let keys = ctx.block_on(backend_keys(&ctx.emulator)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys, vec![KEY.to_string()], "the backend should hold the state and no lock file");

    loser.destroy().ok_or_panic();
    let left = ctx.block_on(orphans(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    announce(&format!("robustness/locking: state intact, destroyed; orphans found: {}", left.len()));
    assert!(left.is_empty(), "destroy left orphans:\n  {}", left.join("\n  "));
    ctx.finish();
}
