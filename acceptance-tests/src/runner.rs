//! Runs a [`TestCase`]: gating on `TF_ACC`, preparing the emulator, mirror and working directory, running
//! each step with terraform-plugin-testing's semantics, and always destroying what the case created.

use std::any::Any;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use regex::Regex;
use serde_json::Value;

use crate::case::{
    CheckResult, EmulatorCheck, ImportMode, ImportSpec, JsonCheck, Step, StepContext, StepKind, TestCase,
};
use crate::emulator::{Emulator, describe};
use crate::env::{self, SKIP_MESSAGE, Settings};
use crate::mirror::{self, Mirror};
use crate::terraform::{CommandOutput, Terraform};
use crate::workdir::{GENERATED_FILE, PLAN_FILE, WorkingDir};
use crate::{hcl, inventory, runtime, state, verify};

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static MIRROR: OnceLock<Mirror> = OnceLock::new();

/// Writes a line straight to the process's stderr.
///
/// The test harness captures `eprintln!` output of passing tests; skips and kept working directories
/// must be visible in a normal `cargo test` run, so they bypass the capture.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn test_name() -> String {
    std::thread::current().name().filter(|n| *n != "main").unwrap_or("acceptance-test").to_string()
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panicked with a non-string payload".to_string()
    }
}

/// Runs `f`, turning both an `Err` and a panic into an error message, so one failure cannot skip the
/// clean-up that follows it.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(payload))))
}

/// Runs one acceptance test case; panics (failing the test) with a full report when anything fails.
///
/// Without `TF_ACC` the case is skipped with a loud line on stderr. Otherwise the case takes the
/// process-wide lock, resets the emulator, runs its steps in a fresh working directory and, whatever
/// happened, destroys the resources and runs the after-destroy checks.
pub fn run(case: TestCase) {
    let name = test_name();
    if !env::acceptance_enabled() {
        announce(&format!("{SKIP_MESSAGE} ({name})"));
        return;
    }
    let settings = Settings::from_env();
    let _serial = runtime::serialise();

    let emulator = EMULATOR.get_or_init(|| runtime::block_on(Emulator::connect(&settings.emulator_url))).clone();
    if let Err(e) = emulator.reset() {
        panic!("{e}");
    }
    let mirror = MIRROR.get_or_init(|| Mirror::create(&settings.provider_bin, &settings.provider_version));

    let prefix: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let root = tempfile::Builder::new()
        .prefix(&format!("datavault-acc-{prefix}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temp dir: {e}"));
    let cli_config = root.path().join("terraform.tfrc");
    std::fs::write(&cli_config, mirror::cli_config(mirror.root()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", cli_config.display()));
    let terraform = Terraform::new(&settings.terraform, &cli_config, root.path().join("work"));
    let main = WorkingDir::new(terraform.clone()).unwrap_or_else(|e| panic!("{e}"));

    let mut runner = Runner {
        emulator,
        root: root.path().to_path_buf(),
        terraform,
        main,
        last_config: None,
        last_applied_config: None,
        last_state: None,
        import_dirs: 0,
    };

    let TestCase { steps, stacks, check_destroy, skip_destroy } = case;
    let total = steps.len();
    let mut failures = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        let label = format!("step {}/{total} ({})", i + 1, step.describe());
        eprintln!("=== {name}: {label}");
        let started = Instant::now();
        let result = guarded(|| runner.run_step(step));
        eprintln!("=== {name}: {label} took {:.1}s", started.elapsed().as_secs_f64());
        if let Err(e) = result {
            failures.push(format!("{label} failed: {e}"));
            break;
        }
    }

    if skip_destroy {
        eprintln!("=== {name}: destroy skipped by the test case");
    } else {
        eprintln!("=== {name}: destroy");
        let started = Instant::now();
        let destroyed = guarded(|| runner.destroy());
        eprintln!("=== {name}: destroy took {:.1}s", started.elapsed().as_secs_f64());
        if let Err(e) = destroyed {
            failures.push(format!("destroy failed: {e}"));
        }
        for (i, check) in check_destroy.into_iter().enumerate() {
            if let Err(e) = guarded(|| runner.run_async(check).map_err(|e| describe(&*e))) {
                failures.push(format!("check_destroy #{} failed: {e}", i + 1));
            }
        }
        for stack in &stacks {
            let emu = runner.emulator.clone();
            let clean =
                guarded(|| runtime::block_on(inventory::assert_emulator_clean(&emu, stack)).map_err(|e| describe(&*e)));
            if let Err(e) = clean {
                failures.push(e);
            }
        }
    }

    let dir = root.path().display().to_string();
    let where_ = if settings.persist_working_dir {
        let kept = root.keep();
        announce(&format!("{name}: working dir kept at {}", kept.display()));
        format!("working dir (kept): {dir}")
    } else {
        format!("working dir (removed; set {}=1 to keep it): {dir}", env::PERSIST_WORKING_DIR)
    };
    if !failures.is_empty() {
        panic!("acceptance test {name} failed:\n\n{}\n\n{where_}", failures.join("\n\n"));
    }
}

/// The step-to-step memory of a running case.
struct Runner {
    emulator: Emulator,
    root: PathBuf,
    terraform: Terraform,
    main: WorkingDir,
    /// Configuration of the latest config step, reused by import steps.
    last_config: Option<String>,
    /// Configuration of the latest successfully applied config step, used for the final destroy.
    last_applied_config: Option<String>,
    /// State after the latest successful apply or refresh, the reference for import verification.
    last_state: Option<Value>,
    import_dirs: usize,
}

/// Judges a command that may be expected to fail.
///
/// `Ok(Some(out))`: it exited with one of `ok_codes`. `Ok(None)`: it failed as `expect_error` said it
/// would, so the step is over. `Err`: it failed unexpectedly, or with a different error.
fn judge(out: CommandOutput, ok_codes: &[i32], expect_error: Option<&Regex>) -> Result<Option<CommandOutput>, String> {
    if out.code.is_some_and(|c| ok_codes.contains(&c)) {
        return Ok(Some(out));
    }
    match expect_error {
        Some(re) if out.matches(re) => Ok(None),
        Some(re) => Err(format!("expected an error matching /{re}/, but got a different failure:\n{out}")),
        None => Err(out.to_string()),
    }
}

fn unexpected_success(expect_error: Option<&Regex>, what: &str) -> Result<(), String> {
    match expect_error {
        Some(re) => Err(format!("expected an error matching /{re}/, but {what} succeeded")),
        None => Ok(()),
    }
}

impl Runner {
    fn run_async(&self, f: EmulatorCheck) -> CheckResult {
        runtime::block_on(f(self.emulator.clone()))
    }

    fn run_step(&mut self, step: Step) -> Result<(), String> {
        if let Some(problem) = step.misconfiguration() {
            return Err(format!("misconfigured step: {problem}"));
        }
        let Step {
            kind,
            checks,
            emulator_checks,
            plan_checks,
            pre_apply,
            expect_error,
            expect_non_empty_plan,
            plan_only,
        } = step;
        for (i, hook) in pre_apply.into_iter().enumerate() {
            self.run_async(hook).map_err(|e| format!("pre_apply hook #{} failed: {}", i + 1, describe(&*e)))?;
        }
        let expect_error = expect_error.as_ref();
        match kind {
            StepKind::Config(config) => self.config_step(
                config,
                plan_checks,
                plan_only,
                expect_error,
                expect_non_empty_plan,
                checks,
                emulator_checks,
            ),
            StepKind::Import(spec) => self.import_step(spec, expect_error, checks, emulator_checks),
            StepKind::Refresh => self.refresh_step(expect_error, expect_non_empty_plan, checks, emulator_checks),
            StepKind::Custom(body) => {
                let ctx = StepContext { terraform: self.terraform.clone(), emulator: self.emulator.clone() };
                runtime::block_on(body(ctx)).map_err(|e| describe(&*e))?;
                if !checks.is_empty() {
                    let state = self.main.state()?;
                    self.run_checks(&state, checks, emulator_checks)
                } else {
                    self.run_checks(&Value::Null, Vec::new(), emulator_checks)
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the destructured step; bundling it again would only add noise
    fn config_step(
        &mut self,
        config: String,
        plan_checks: Vec<JsonCheck>,
        plan_only: bool,
        expect_error: Option<&Regex>,
        expect_non_empty_plan: bool,
        checks: Vec<JsonCheck>,
        emulator_checks: Vec<EmulatorCheck>,
    ) -> Result<(), String> {
        self.main.write_config(&config)?;
        self.main.init()?;
        self.last_config = Some(config.clone());
        let tf = self.main.terraform().clone();

        // Plan to a file and apply that file, as plugin-testing does, so plan checks see exactly what
        // gets applied.
        let out_arg = format!("-out={PLAN_FILE}");
        let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode", &out_arg]);
        let Some(plan) = judge(plan, &[0, 2], expect_error)? else {
            return Ok(());
        };
        if !plan_checks.is_empty() {
            let json = self.main.saved_plan()?;
            for (i, check) in plan_checks.into_iter().enumerate() {
                check(&json).map_err(|e| {
                    format!(
                        "plan check #{} failed: {}\n--- plan ---\n{}",
                        i + 1,
                        describe(&*e),
                        self.main.saved_plan_text()
                    )
                })?;
            }
        }
        if plan_only {
            unexpected_success(expect_error, "the plan")?;
            return plan_emptiness(&plan, expect_non_empty_plan, true, "The plan-only step's plan");
        }

        let apply = tf.run(&["apply", "-input=false", "-no-color", PLAN_FILE]);
        let Some(_) = judge(apply, &[0], expect_error)? else {
            return Ok(());
        };
        unexpected_success(expect_error, "the apply")?;
        self.last_applied_config = Some(config);
        let state = self.main.state()?;
        self.last_state = Some(state.clone());
        self.run_checks(&state, checks, emulator_checks)?;

        // A provider that reports something other than what it was told to apply shows up here as a
        // perpetual diff; one whose read disagrees with its apply shows up in the refreshed plan.
        let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode", "-refresh=false"]);
        let plan = judge(plan, &[0, 2], None)?.expect("judge without expect_error never ends a step");
        plan_emptiness(&plan, expect_non_empty_plan, false, "After applying this step, the plan")?;
        let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
        let plan = judge(plan, &[0, 2], None)?.expect("judge without expect_error never ends a step");
        plan_emptiness(&plan, expect_non_empty_plan, true, "After applying this step and refreshing, the plan")
    }

    fn import_step(
        &mut self,
        spec: ImportSpec,
        expect_error: Option<&Regex>,
        checks: Vec<JsonCheck>,
        emulator_checks: Vec<EmulatorCheck>,
    ) -> Result<(), String> {
        let ImportSpec { resource, id, config, verify, verify_ignore, mode, identity } = spec;
        let config = config
            .or_else(|| self.last_config.clone())
            .ok_or("an import step needs a configuration: give it one or put a config step before it")?;
        let id = match id {
            Some(id) => id,
            None => self
                .last_state
                .as_ref()
                .and_then(|s| state::attr_str(s, &resource, "id"))
                .map(str::to_string)
                .ok_or_else(|| format!("no import ID given and no applied {resource} with an id to take it from"))?,
        };

        // A fresh directory shares the configuration but not the state, so the import has to find the
        // object in AWS by its ID alone.
        self.import_dirs += 1;
        let mut wd = WorkingDir::new(self.terraform.in_dir(self.root.join(format!("import-{}", self.import_dirs))))?;
        wd.write_config(&config)?;
        let tf = wd.terraform().clone();
        match mode {
            ImportMode::Command => {
                wd.init()?;
                let out = tf.run(&["import", "-input=false", "-no-color", &resource, &id]);
                let Some(_) = judge(out, &[0], expect_error)? else {
                    return Ok(());
                };
                unexpected_success(expect_error, "the import")?;
            }
            ImportMode::Block | ImportMode::Identity | ImportMode::GeneratedConfig => {
                let block = match mode {
                    ImportMode::Identity => hcl::import_identity_block(&resource, &identity),
                    _ => hcl::import_block(&resource, &id),
                };
                wd.write_file(crate::workdir::IMPORTS_FILE, &block)?;
                wd.init()?;
                if mode == ImportMode::GeneratedConfig {
                    let generate = format!("-generate-config-out={GENERATED_FILE}");
                    let plan = tf.run(&["plan", "-input=false", "-no-color", &generate]);
                    let Some(_) = judge(plan, &[0], expect_error)? else {
                        return Ok(());
                    };
                }
                let out_arg = format!("-out={PLAN_FILE}");
                let plan = tf.run(&["plan", "-input=false", "-no-color", &out_arg]);
                let Some(_) = judge(plan, &[0], expect_error)? else {
                    return Ok(());
                };
                let json = wd.saved_plan()?;
                check_noop_import(&json, &resource, &verify_ignore).map_err(|e| {
                    let generated = std::fs::read_to_string(wd.dir().join(GENERATED_FILE)).unwrap_or_default();
                    format!("{e}\n--- plan ---\n{}\n--- generated configuration ---\n{generated}", wd.saved_plan_text())
                })?;
                let apply = tf.run(&["apply", "-input=false", "-no-color", PLAN_FILE]);
                let Some(_) = judge(apply, &[0], expect_error)? else {
                    return Ok(());
                };
                unexpected_success(expect_error, "the import")?;
            }
        }

        let imported_state = wd.state()?;
        self.run_checks(&imported_state, checks, emulator_checks)?;
        if verify {
            let applied = self
                .last_state
                .as_ref()
                .and_then(|s| state::resource(s, &resource))
                .ok_or_else(|| format!("import_state_verify: no applied {resource} to compare with"))?;
            let imported = state::resource(&imported_state, &resource).ok_or_else(|| {
                format!(
                    "import_state_verify: the import left no {resource} in the state; it holds {:?}",
                    state::resource_addresses(&imported_state)
                )
            })?;
            let diffs = verify::diff(
                applied.get("values").unwrap_or(&Value::Null),
                imported.get("values").unwrap_or(&Value::Null),
                &verify_ignore,
            );
            if let Some(report) = verify::report(&resource, &diffs) {
                return Err(report);
            }
        }
        Ok(())
    }

    fn refresh_step(
        &mut self,
        expect_error: Option<&Regex>,
        expect_non_empty_plan: bool,
        checks: Vec<JsonCheck>,
        emulator_checks: Vec<EmulatorCheck>,
    ) -> Result<(), String> {
        if !self.main.is_initialised() {
            return Err("a refresh step needs a config step before it".into());
        }
        let tf = self.main.terraform().clone();
        let out = tf.run(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
        let Some(_) = judge(out, &[0], expect_error)? else {
            return Ok(());
        };
        unexpected_success(expect_error, "the refresh")?;
        let state = self.main.state()?;
        self.last_state = Some(state.clone());
        self.run_checks(&state, checks, emulator_checks)?;
        let plan = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
        let plan = judge(plan, &[0, 2], None)?.expect("judge without expect_error never ends a step");
        plan_emptiness(&plan, expect_non_empty_plan, true, "After refreshing, the plan")
    }

    fn run_checks(
        &self,
        state: &Value,
        checks: Vec<JsonCheck>,
        emulator_checks: Vec<EmulatorCheck>,
    ) -> Result<(), String> {
        for (i, check) in checks.into_iter().enumerate() {
            check(state).map_err(|e| {
                format!(
                    "check #{} failed: {}\n--- state ---\n{}",
                    i + 1,
                    describe(&*e),
                    serde_json::to_string_pretty(state.get("values").unwrap_or(state)).unwrap_or_default()
                )
            })?;
        }
        for (i, check) in emulator_checks.into_iter().enumerate() {
            self.run_async(check).map_err(|e| format!("emulator check #{} failed: {}", i + 1, describe(&*e)))?;
        }
        Ok(())
    }

    /// Destroys whatever the main working directory's state holds, with the last configuration that
    /// applied cleanly (a later plan-only or failing config might not even validate).
    fn destroy(&mut self) -> Result<(), String> {
        if !self.main.is_initialised() {
            return Ok(());
        }
        let state = self.main.state()?;
        if state::resource_addresses(&state).is_empty() {
            return Ok(());
        }
        if let Some(config) = &self.last_applied_config {
            self.main.write_config(config)?;
        }
        let out = self.main.terraform().run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        if !out.success() {
            return Err(format!("resources may be left in the emulator\n{out}"));
        }
        Ok(())
    }
}

/// Enforces plugin-testing's plan rules on a `plan -detailed-exitcode` (0 = no changes, 2 = changes).
///
/// A non-empty plan fails unless `expect_non_empty`; with `final_plan`, an empty plan fails when a
/// non-empty one was expected (only the last plan of a step is held to that).
fn plan_emptiness(plan: &CommandOutput, expect_non_empty: bool, final_plan: bool, what: &str) -> Result<(), String> {
    let non_empty = plan.code == Some(2);
    if non_empty && !expect_non_empty {
        return Err(format!("{what} was not empty.\n--- `{}` ---\n{}", plan.command, plan.stdout.trim_end()));
    }
    if final_plan && expect_non_empty && !non_empty {
        return Err(format!("Expected a non-empty plan, but got an empty one from `{}`", plan.command));
    }
    Ok(())
}

/// An `import {}` block must plan as a pure import: the object is adopted and nothing else changes, except
/// attributes AWS cannot report (`ignore`, the same list import verification ignores), which the
/// configuration may set to something else than the import could find.
fn check_noop_import(plan: &Value, address: &str, ignore: &[String]) -> Result<(), String> {
    let change = state::resource_change(plan, address).ok_or_else(|| {
        format!("the import plan has no change for {address}; its changes are:\n{}", state::summarize_changes(plan))
    })?;
    let importing = change.get("change").and_then(|c| c.get("importing"));
    if importing.is_none_or(Value::is_null) {
        return Err(format!("the plan does not import {address}"));
    }
    let actions = state::change_actions(plan, address).unwrap_or_default();
    if actions == ["no-op"] {
        return Ok(());
    }
    let (before, after) = (change.pointer("/change/before"), change.pointer("/change/after"));
    let changed: Vec<String> = match (before.and_then(Value::as_object), after.and_then(Value::as_object)) {
        (Some(before), Some(after)) => after
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(*value) && !ignore.iter().any(|i| i == *key))
            .map(|(key, _)| key.clone())
            .collect(),
        _ => vec!["(whole object)".to_string()],
    };
    if actions == ["update"] && changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "importing {address} should change nothing, but the plan's actions are {actions:?} (changing {changed:?})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output(code: i32, stdout: &str) -> CommandOutput {
        CommandOutput {
            command: "terraform plan".into(),
            dir: PathBuf::from("/wd"),
            code: Some(code),
            stdout: stdout.into(),
            stderr: String::new(),
            timed_out: false,
        }
    }

    #[test]
    fn judge_distinguishes_success_expected_and_unexpected_errors() {
        let re = Regex::new("log_retention_days").unwrap();
        assert!(judge(output(2, "changes"), &[0, 2], None).unwrap().is_some());
        assert!(judge(output(1, "Error: bad log_retention_days"), &[0], Some(&re)).unwrap().is_none());
        assert!(judge(output(1, "Error: other"), &[0], Some(&re)).unwrap_err().contains("different failure"));
        assert!(judge(output(1, "Error: other"), &[0], None).unwrap_err().contains("exited with code 1"));
    }

    #[test]
    fn plan_emptiness_follows_plugin_testing() {
        assert!(plan_emptiness(&output(0, ""), false, true, "p").is_ok());
        let err =
            plan_emptiness(&output(2, "~ update in-place"), false, false, "After applying, the plan").unwrap_err();
        assert!(err.contains("was not empty") && err.contains("~ update in-place"), "{err}");
        assert!(plan_emptiness(&output(2, ""), true, true, "p").is_ok());
        // Only the final plan must be non-empty when one is expected.
        assert!(plan_emptiness(&output(0, ""), true, false, "p").is_ok());
        assert!(plan_emptiness(&output(0, ""), true, true, "p").unwrap_err().contains("non-empty"));
    }

    #[test]
    fn import_plans_must_be_pure_imports() {
        let address = "datavault_stack.main";
        let ignore = vec!["wait_for_steady_state".to_string()];
        let ok = json!({"resource_changes": [{"address": address,
            "change": {"actions": ["no-op"], "importing": {"id": "acc-import"}}}]});
        assert!(check_noop_import(&ok, address, &[]).is_ok());

        let update = |after: Value| {
            json!({"resource_changes": [{"address": address, "change": {"actions": ["update"],
                "importing": {"id": "acc-import"}, "before": {"name": "a", "wait_for_steady_state": null},
                "after": after}}]})
        };
        // Only attributes AWS cannot report may differ.
        let unobservable = update(json!({"name": "a", "wait_for_steady_state": false}));
        assert!(check_noop_import(&unobservable, address, &ignore).is_ok());
        assert!(check_noop_import(&unobservable, address, &[]).unwrap_err().contains("wait_for_steady_state"));
        let real_change = update(json!({"name": "b", "wait_for_steady_state": false}));
        assert!(check_noop_import(&real_change, address, &ignore).unwrap_err().contains("[\"name\"]"));

        let create = json!({"resource_changes": [{"address": address,
            "change": {"actions": ["create"]}}]});
        assert!(check_noop_import(&create, address, &[]).unwrap_err().contains("does not import"));
    }

    #[test]
    fn unexpected_success_only_fails_when_an_error_was_expected() {
        assert!(unexpected_success(None, "the apply").is_ok());
        let re = Regex::new("x").unwrap();
        assert!(unexpected_success(Some(&re), "the apply").unwrap_err().contains("the apply succeeded"));
    }
}
