//! The RabbitMQ password: RabbitMQ's task makes the secret's password its own at every start, and a new
//! `rabbitmq_password_version` puts a new password in the secret and restarts the services that read it
//! (RabbitMQ, broker and worker), as an update in place that leaves web alone.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use aws_sdk_ecs::types::{ContainerCondition, TaskDefinition};
use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::{
    CheckError, CheckResult, Emulator, Step, TestCase, check_actions, ensure, ensure_eq, expect_attr_eq, run,
};

use crate::full::secret_password;
use crate::support::{ADDR, stack_config};

const NAME: &str = "acc-rabbit-pw";
/// The companion container of the RabbitMQ task that sets the password.
const SETTER: &str = "rabbitmq-password";
/// The variable whose change restarts the services that read the RabbitMQ password.
const VERSION_VARIABLE: &str = "DATAVAULT_RABBITMQ_PASSWORD_VERSION";

/// Images from elsewhere, which the stack does not wait for: every service runs, so every service rolls.
fn config(extra: &str) -> String {
    let images = "  services = {\n    web = { image = \"registry.example.org/datavault/web:1\" }\n    broker = { image = \"registry.example.org/datavault/broker:1\" }\n    worker = { image = \"registry.example.org/datavault/worker:1\" }\n  }\n";
    stack_config(NAME, &format!("{images}{extra}"))
}

/// What a step saw: the secret's value and the task definition each service runs.
#[derive(Debug, Default, Clone)]
struct Seen {
    password: String,
    running: BTreeMap<String, String>,
}

async fn seen(emu: &Emulator) -> Result<Seen, CheckError> {
    let services = emu.service_summaries(NAME).await?;
    let running = services.into_iter().map(|(name, _, task_definition)| (name, task_definition)).collect();
    Ok(Seen { password: secret_password(emu, &format!("{NAME}/rabbitmq")).await?, running })
}

async fn task_definition(emu: &Emulator, family_revision: &str) -> Result<TaskDefinition, CheckError> {
    let out = emu
        .ecs()
        .describe_task_definition()
        .task_definition(family_revision)
        .send()
        .await
        .map_err(|e| format!("DescribeTaskDefinition {family_revision}: {}", describe(&e)))?;
    Ok(out.task_definition().cloned().ok_or(format!("{family_revision} does not exist"))?)
}

fn variable<'a>(td: &'a TaskDefinition, container: &str, name: &str) -> Option<&'a str> {
    let c = td.container_definitions().iter().find(|c| c.name() == Some(container))?;
    c.environment().iter().find(|kv| kv.name() == Some(name)).and_then(|kv| kv.value())
}

/// RabbitMQ's task: the server, and a companion that starts once the server is healthy, may exit without
/// stopping the task, gets the same secret and the data directory (for the Erlang cookie) read-only, and
/// runs `rabbitmqctl change_password`. It reserves no memory of its own, so the task's size still fits.
async fn check_password_setter(emu: &Emulator, seen: &Seen) -> CheckResult {
    let td = task_definition(emu, &seen.running["rabbitmq"]).await?;
    let names: Vec<&str> = td.container_definitions().iter().filter_map(|c| c.name()).collect();
    ensure_eq!(names, vec!["rabbitmq", SETTER], "containers of the RabbitMQ task");
    let (server, setter) = (&td.container_definitions()[0], &td.container_definitions()[1]);
    ensure_eq!(server.essential(), Some(true), "the server is essential");
    ensure_eq!(setter.essential(), Some(false), "the setter is essential, so its exit would stop RabbitMQ");
    ensure_eq!(setter.image(), server.image(), "the setter's image");
    ensure_eq!(setter.memory(), None, "the setter's hard memory limit");
    let dependencies: Vec<(&str, &ContainerCondition)> =
        setter.depends_on().iter().map(|d| (d.container_name(), d.condition())).collect();
    ensure_eq!(dependencies, vec![("rabbitmq", &ContainerCondition::Healthy)], "the setter waits for");
    let secret = |c: &aws_sdk_ecs::types::ContainerDefinition| {
        c.secrets().iter().map(|s| (s.name().to_string(), s.value_from().to_string())).collect::<Vec<_>>()
    };
    ensure_eq!(secret(setter), secret(server), "the setter's secrets");
    let mounts: Vec<(&str, &str, Option<bool>)> = setter
        .mount_points()
        .iter()
        .map(|m| (m.source_volume().unwrap_or_default(), m.container_path().unwrap_or_default(), m.read_only()))
        .collect();
    ensure_eq!(mounts, vec![("rabbitmq-data", "/var/lib/rabbitmq", Some(true))], "the setter's mounts");
    let script = setter.command().join(" ");
    ensure!(script.contains("rabbitmqctl") && script.contains("change_password"), "the setter runs {script:?}");
    ensure!(!script.contains(&seen.password), "the password is in the setter's command");
    Ok(())
}

/// After the new version: a new password, and new task definitions for the three services that read it
/// (each with the version, on both containers of RabbitMQ's), while web runs what it ran.
async fn check_rotated(emu: &Emulator, before: &Seen) -> CheckResult {
    let after = seen(emu).await?;
    ensure!(after.password != before.password, "the RabbitMQ password did not change");
    ensure!(after.password.len() >= 32 && after.password.chars().all(|c| c.is_ascii_alphanumeric()), "weak password");
    ensure_eq!(after.running["web"], before.running["web"], "web's task definition");
    for service in ["rabbitmq", "broker", "worker"] {
        ensure!(after.running[service] != before.running[service], "{service} still runs {}", before.running[service]);
        let td = task_definition(emu, &after.running[service]).await?;
        ensure_eq!(variable(&td, service, VERSION_VARIABLE), Some("1"), "{service}'s {VERSION_VARIABLE}");
    }
    let rabbitmq = task_definition(emu, &after.running["rabbitmq"]).await?;
    ensure_eq!(variable(&rabbitmq, SETTER, VERSION_VARIABLE), Some("1"), "the setter's {VERSION_VARIABLE}");
    check_password_setter(emu, &after).await
}

#[test]
fn a_new_rabbitmq_password_version_rotates_the_password_and_restarts_its_readers() {
    let before: Rc<RefCell<Seen>> = Rc::default();
    let (record, compare) = (before.clone(), before.clone());
    run(TestCase::new()
        .stack(NAME)
        .step(Step::config(config("")).check_emulator(move |emu| async move {
            let first = seen(&emu).await?;
            check_password_setter(&emu, &first).await?;
            *record.borrow_mut() = first;
            Ok(())
        }))
        // The plan says what the new version will restart before anything happens.
        .step(Step::custom(|ctx| async move {
            let config_file = ctx.dir().join(datavault_acceptance_tests::workdir::CONFIG_FILE);
            let with_version = config("  rabbitmq_password_version = 1\n");
            std::fs::write(&config_file, datavault_acceptance_tests::hcl::with_provider_blocks(&with_version))?;
            let plan = ctx.terraform(&["plan", "-input=false", "-no-color"]);
            ensure!(plan.success(), "plan failed:\n{plan}");
            let text = plan.combined().split_whitespace().collect::<Vec<_>>().join(" ");
            ensure!(
                text.contains("RabbitMQ Password Will Change")
                    && text.contains("restarts RabbitMQ, the broker and the worker")
                    && !text.contains("Database Password Will Change"),
                "the plan does not warn about the restarts the new version causes:\n{plan}"
            );
            Ok(())
        }))
        .step(
            Step::config(config("  rabbitmq_password_version = 1\n"))
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(|state| expect_attr_eq(state, ADDR, "rabbitmq_password_version", 1))
                .check_emulator(move |emu| async move {
                    let before = compare.borrow().clone();
                    check_rotated(&emu, &before).await
                }),
        ));
}
