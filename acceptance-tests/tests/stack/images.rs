//! From empty repositories to running services. The first apply of a new stack finds no images in its
//! repositories: it succeeds (nothing tainted), creates the services without starting them, and says which
//! images to push and where. Once images are pushed, the next plan starts those services, as an update in
//! place. Destroy keeps a repository that holds images (it took a build to make them) and says so.

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::{CheckResult, Emulator, Step, TestCase, check_actions, ensure, ensure_eq, run};
use regex::Regex;
use serde_json::json;

use crate::support::{ADDR, stack_config};

const NAME: &str = "acc-images";
/// The default image tag: the commit of the supported DataVault source.
const TAG: &str = "729ca07";

async fn push(emu: &Emulator, component: &str) -> CheckResult {
    emu.push_image(&format!("{NAME}/{component}"), TAG).await
}

/// Each service's desired task count.
async fn desired_counts(emu: &Emulator) -> Result<Vec<(String, i32)>, String> {
    let services = emu.service_summaries(NAME).await.map_err(|e| e.to_string())?;
    Ok(services.into_iter().map(|(name, desired, _)| (name, desired)).collect())
}

async fn expect_counts(emu: &Emulator, expected: &[(&str, i32)]) -> CheckResult {
    let mut seen = desired_counts(emu).await?;
    seen.sort();
    let mut want: Vec<(String, i32)> = expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    want.sort();
    ensure_eq!(seen, want, "desired task counts");
    Ok(())
}

#[test]
fn services_start_once_their_images_are_pushed_and_destroy_keeps_the_images() {
    run(TestCase::new()
        .stack(NAME)
        .step(
            Step::config(stack_config(NAME, ""))
                .check(|state| {
                    let values = datavault_acceptance_tests::resource(state, ADDR)
                        .and_then(|r| r.get("values"))
                        .ok_or("no stack in the state")?;
                    ensure_eq!(values["missing_images"], json!(["web", "broker", "worker"]), "missing_images");
                    let target = values["image_push_targets"]["web"].as_str().unwrap_or_default();
                    ensure!(target.ends_with(&format!("/{NAME}/web:{TAG}")), "image_push_targets.web is {target}");
                    Ok(())
                })
                // Web, broker and worker exist but run nothing; RabbitMQ's public image needs no push.
                .check_emulator(|emu| async move {
                    expect_counts(&emu, &[("web", 0), ("broker", 0), ("worker", 0), ("rabbitmq", 1)]).await
                }),
        )
        .step(Step::custom(|ctx| async move {
            // Waiting for images is a steady state, not a difference to repair.
            let plan = ctx.terraform(&["plan", "-input=false", "-no-color"]);
            let text = plan.combined().split_whitespace().collect::<Vec<_>>().join(" ");
            ensure!(plan.success(), "plan failed:\n{plan}");
            ensure!(text.contains("No changes"), "an unchanged stack waiting for its images plans changes:\n{plan}");
            push(ctx.emulator(), "web").await?;
            push(ctx.emulator(), "broker").await
        }))
        .step(
            Step::config(stack_config(NAME, ""))
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(|state| {
                    let values = datavault_acceptance_tests::resource(state, ADDR)
                        .and_then(|r| r.get("values"))
                        .ok_or("no stack in the state")?;
                    ensure_eq!(values["missing_images"], json!(["worker"]), "missing_images after the push");
                    Ok(())
                })
                .check_emulator(|emu| async move {
                    expect_counts(&emu, &[("web", 1), ("broker", 1), ("worker", 0), ("rabbitmq", 1)]).await
                }),
        )
        .step(Step::custom(|ctx| async move {
            let out = ctx.terraform(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
            ensure!(out.success(), "destroy failed:\n{out}");
            for kept in ["web", "broker"] {
                let pattern =
                    format!(r"ECR\s+repository\s+{NAME}/{kept}\s+holds\s+1\s+image\(s\),\s+so\s+it\s+was\s+kept");
                ensure!(out.matches(&Regex::new(&pattern)?), "destroy does not say it kept {NAME}/{kept}:\n{out}");
            }
            let repositories = ctx.emulator().ecr().describe_repositories().send().await.map_err(|e| describe(&e))?;
            let mut left: Vec<String> = repositories
                .repositories()
                .iter()
                .filter_map(|r| r.repository_name())
                .filter(|n| n.starts_with(&format!("{NAME}/")))
                .map(str::to_string)
                .collect();
            left.sort_unstable();
            ensure_eq!(left, vec![format!("{NAME}/broker"), format!("{NAME}/web")], "repositories after destroy");
            // Done: clear them away so the case's own checks see a clean account.
            for component in ["web", "broker"] {
                let repository = format!("{NAME}/{component}");
                ctx.emulator()
                    .ecr()
                    .delete_repository()
                    .repository_name(&repository)
                    .force(true)
                    .send()
                    .await
                    .map_err(|e| format!("DeleteRepository {repository}: {}", describe(&e)))?;
            }
            Ok(())
        })));
}
