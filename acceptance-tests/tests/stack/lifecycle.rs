//! Create, update in place, replace and destroy.

use datavault_acceptance_tests::{
    Step, TestCase, check_actions, ensure, expect_attr, expect_attr_eq, expect_attr_str, run,
};
use serde_json::json;

use crate::support::{
    ADDR, REPLACE, REPOSITORIES, check_bucket, check_log_group, check_stack, parts_tagged, region, stack_config,
};

#[test]
fn basic_lifecycle() {
    const NAME: &str = "acc-basic";
    run(TestCase::new()
        .stack(NAME)
        .step(
            Step::config(stack_config(NAME, ""))
                .check(|state| {
                    expect_attr_eq(state, ADDR, "id", NAME)?;
                    expect_attr_eq(state, ADDR, "name", NAME)?;
                    expect_attr_eq(state, ADDR, "region", region())?;
                    expect_attr_eq(state, ADDR, "archive_bucket_name", format!("{NAME}-archive"))?;
                    expect_attr_eq(state, ADDR, "state_bucket_name", format!("{NAME}-state"))?;
                    expect_attr_eq(state, ADDR, "archive_force_destroy", false)?;
                    expect_attr_eq(state, ADDR, "log_retention_days", 365)?;
                    expect_attr_eq(state, ADDR, "log_group_name", format!("/datavault/{NAME}"))?;
                    expect_attr_eq(state, ADDR, "drift", json!([]))?;
                    for (attr, bucket) in [("archive_bucket_arn", "archive"), ("state_bucket_arn", "state")] {
                        let arn = expect_attr_str(state, ADDR, attr)?;
                        ensure!(
                            arn.starts_with("arn:") && arn.ends_with(&format!(":{NAME}-{bucket}")),
                            "{attr} = {arn:?} is not the ARN of bucket {NAME}-{bucket}"
                        );
                    }
                    let log_arn = expect_attr_str(state, ADDR, "log_group_arn")?;
                    ensure!(
                        log_arn.starts_with("arn:") && log_arn.contains(&format!(":log-group:/datavault/{NAME}")),
                        "log_group_arn = {log_arn:?} is not the ARN of /datavault/{NAME}"
                    );
                    let urls = expect_attr(state, ADDR, "ecr_repository_urls")?
                        .as_object()
                        .ok_or("ecr_repository_urls is not a map")?;
                    let mut keys: Vec<&str> = urls.keys().map(String::as_str).collect();
                    keys.sort_unstable();
                    ensure!(keys == ["broker", "web", "worker"], "ecr_repository_urls keys are {keys:?}");
                    for key in REPOSITORIES {
                        let url = urls[key].as_str().unwrap_or_default();
                        ensure!(url.ends_with(&format!("/{NAME}/{key}")), "ecr_repository_urls.{key} = {url:?}");
                    }
                    Ok(())
                })
                .check_emulator(|emu| async move { check_stack(&emu, NAME, 365, &[]).await }),
        )
        .check_destroy(|emu| async move {
            // The state bucket is kept by design: it may hold the Terraform state of the archive itself.
            ensure!(emu.bucket_exists(&format!("{NAME}-state")).await?, "state bucket {NAME}-state was deleted");
            ensure!(!emu.bucket_exists(&format!("{NAME}-archive")).await?, "archive bucket {NAME}-archive survived");
            Ok(())
        }));
}

#[test]
fn update_in_place() {
    const NAME: &str = "acc-update";
    let config = |team: &str, retention: i32| {
        stack_config(NAME, &format!("  tags = {{\n    team = \"{team}\"\n  }}\n  log_retention_days = {retention}\n"))
    };
    run(TestCase::new()
        .stack(NAME)
        .step(
            Step::config(config("a", 30))
                .check(|state| {
                    expect_attr_eq(state, ADDR, "log_retention_days", 30)?;
                    expect_attr_eq(state, ADDR, "tags", json!({"team": "a"}))?;
                    expect_attr_eq(state, ADDR, "tags_all.team", "a")
                })
                .check_emulator(|emu| async move { check_stack(&emu, NAME, 30, &[("team", "a")]).await }),
        )
        .step(
            Step::config(config("b", 90))
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(|state| {
                    expect_attr_eq(state, ADDR, "log_retention_days", 90)?;
                    expect_attr_eq(state, ADDR, "tags", json!({"team": "b"}))?;
                    expect_attr_eq(state, ADDR, "tags_all.team", "b")?;
                    expect_attr_eq(state, ADDR, "id", NAME)
                })
                .check_emulator(|emu| async move {
                    check_log_group(&emu, NAME, 90, &[("team", "b")]).await?;
                    check_bucket(&emu, &format!("{NAME}-archive"), NAME, &[("team", "b")]).await?;
                    // What the next step's check sees: the tag on the parts of every kind.
                    let tagged = parts_tagged(&emu, NAME, "team").await?;
                    ensure!(tagged.len() >= 25, "the tag is on only {} parts: {tagged:?}", tagged.len());
                    Ok(())
                }),
        )
        .step(
            // A tag taken out of the configuration goes from every part that had it, or the next refresh
            // would find it again and every plan would show it.
            Step::config(stack_config(NAME, "  log_retention_days = 90\n"))
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(|state| {
                    let tags = datavault_acceptance_tests::state::attr(state, ADDR, "tags");
                    ensure!(
                        tags.is_none_or(|t| t.is_null() || t.as_object().is_some_and(|m| m.is_empty())),
                        "tags after removing them: {tags:?}"
                    );
                    let all = datavault_acceptance_tests::state::attr(state, ADDR, "tags_all");
                    ensure!(all.and_then(|a| a.get("team")).is_none(), "tags_all still has team: {all:?}");
                    Ok(())
                })
                .check_emulator(|emu| async move {
                    let tagged = parts_tagged(&emu, NAME, "team").await?;
                    ensure!(tagged.is_empty(), "the removed tag is still on {tagged:?}");
                    Ok(())
                }),
        ));
}

#[test]
fn name_change_forces_replacement() {
    const OLD: &str = "acc-rename-a";
    const NEW: &str = "acc-rename-b";
    run(TestCase::new()
        .stack(OLD)
        .stack(NEW)
        .step(Step::config(stack_config(OLD, "")))
        .step(
            Step::config(stack_config(NEW, ""))
                .plan_only()
                .expect_non_empty_plan()
                .plan_check(|plan| check_actions(plan, ADDR, REPLACE)),
        )
        .step(
            Step::config(stack_config(NEW, ""))
                .plan_check(|plan| check_actions(plan, ADDR, REPLACE))
                .check(|state| {
                    expect_attr_eq(state, ADDR, "id", NEW)?;
                    expect_attr_eq(state, ADDR, "archive_bucket_name", format!("{NEW}-archive"))
                })
                .check_emulator(|emu| async move {
                    check_stack(&emu, NEW, 365, &[]).await?;
                    // Replacing destroyed the old stack, which keeps only its state bucket.
                    ensure!(
                        !emu.bucket_exists(&format!("{OLD}-archive")).await?,
                        "{OLD}-archive survived the replacement"
                    );
                    ensure!(emu.log_group(&format!("/datavault/{OLD}")).await?.is_none(), "/datavault/{OLD} survived");
                    Ok(())
                }),
        ));
}
