//! The shape of an acceptance test: a [`TestCase`] made of [`Step`]s, and the closures steps carry.
//!
//! Steps are built with small constructors and chained options, so a test reads like the scenario it
//! checks:
//!
//! ```no_run
//! use datavault_acceptance_tests::{Step, TestCase, run, expect_attr_str};
//!
//! run(TestCase::new()
//!     .stack("acc-doc")
//!     .step(Step::config(r#"resource "datavault_stack" "main" { name = "acc-doc" }"#)
//!         .check(|state| {
//!             expect_attr_str(state, "datavault_stack.main", "log_group_name")?;
//!             Ok(())
//!         })
//!         .check_emulator(|emu| async move {
//!             emu.s3().head_bucket().bucket("acc-doc-archive").send().await?;
//!             Ok(())
//!         })));
//! ```

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use regex::Regex;
use serde_json::Value;

use crate::emulator::Emulator;
use crate::terraform::{CommandOutput, Terraform};

/// What a failed check returns. Any error converts into it with `?`, and so do `String` and `&str`.
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;
/// What every check returns.
pub type CheckResult = Result<(), CheckError>;
/// A boxed future run on the shared runtime's calling thread; it need not be `Send`.
pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;
/// A check over a `terraform show -json` document (a state, or a saved plan for plan checks).
pub type JsonCheck = Box<dyn FnOnce(&Value) -> CheckResult>;
/// An async check (or hook) that looks at the emulator through the AWS SDK.
pub type EmulatorCheck = Box<dyn FnOnce(Emulator) -> LocalBoxFuture<CheckResult>>;
/// The body of a custom step.
pub type CustomFn = Box<dyn FnOnce(StepContext) -> LocalBoxFuture<CheckResult>>;

fn boxed_emulator_fn<F, Fut>(f: F) -> EmulatorCheck
where
    F: FnOnce(Emulator) -> Fut + 'static,
    Fut: Future<Output = CheckResult> + 'static,
{
    Box::new(move |emu| Box::pin(f(emu)))
}

/// One acceptance test: steps run in order against one working directory, then a destroy and the
/// after-destroy checks.
#[derive(Default)]
pub struct TestCase {
    /// The steps, run in order; the first failure stops the sequence (the destroy still runs).
    pub steps: Vec<Step>,
    /// Stack names whose parts must all be gone after the destroy, except each one's state bucket.
    pub stacks: Vec<String>,
    /// Extra checks run after the destroy.
    pub check_destroy: Vec<EmulatorCheck>,
    /// Leave the resources in place at the end (the after-destroy checks are skipped too).
    pub skip_destroy: bool,
}

impl TestCase {
    /// An empty case.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Declares a stack the case creates, so the standard after-destroy check
    /// ([`crate::assert_emulator_clean`]) covers it.
    pub fn stack(mut self, name: impl Into<String>) -> Self {
        self.stacks.push(name.into());
        self
    }

    /// Adds an async check run after the destroy.
    pub fn check_destroy<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce(Emulator) -> Fut + 'static,
        Fut: Future<Output = CheckResult> + 'static,
    {
        self.check_destroy.push(boxed_emulator_fn(f));
        self
    }

    /// Opts out of the final destroy.
    pub fn skip_destroy(mut self) -> Self {
        self.skip_destroy = true;
        self
    }
}

/// How an import step brings the resource in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// `terraform import ADDRESS ID`.
    Command,
    /// An `import { to = ADDRESS id = ID }` block, planned and applied.
    Block,
    /// An `import { to = ADDRESS identity = { ... } }` block (Terraform >= 1.12, resource identity),
    /// planned and applied; the identity's attributes come from [`Step::import_identity`].
    Identity,
    /// An `import {}` block whose resource block Terraform writes itself (`plan -generate-config-out`):
    /// the generated configuration must then plan the import as a no-op, as it must for a user who
    /// imports that way. The step's import configuration must not declare the resource.
    GeneratedConfig,
}

pub(crate) struct ImportSpec {
    pub(crate) resource: String,
    pub(crate) id: Option<String>,
    pub(crate) config: Option<String>,
    pub(crate) verify: bool,
    pub(crate) verify_ignore: Vec<String>,
    pub(crate) mode: ImportMode,
    pub(crate) identity: Vec<(String, String)>,
}

pub(crate) enum StepKind {
    Config(String),
    Import(ImportSpec),
    Refresh,
    Custom(CustomFn),
}

/// One step of a [`TestCase`]. Build it with [`Step::config`], [`Step::import`], [`Step::refresh`] or
/// [`Step::custom`], then chain options; an option that makes no sense for the step's kind panics when
/// the step runs.
pub struct Step {
    pub(crate) kind: StepKind,
    pub(crate) checks: Vec<JsonCheck>,
    pub(crate) emulator_checks: Vec<EmulatorCheck>,
    pub(crate) plan_checks: Vec<JsonCheck>,
    pub(crate) pre_apply: Vec<EmulatorCheck>,
    pub(crate) expect_error: Option<Regex>,
    pub(crate) expect_non_empty_plan: bool,
    pub(crate) plan_only: bool,
}

impl Step {
    fn new(kind: StepKind) -> Self {
        Step {
            kind,
            checks: Vec::new(),
            emulator_checks: Vec::new(),
            plan_checks: Vec::new(),
            pre_apply: Vec::new(),
            expect_error: None,
            expect_non_empty_plan: false,
            plan_only: false,
        }
    }

    /// Applies `config` (HCL; provider blocks are added when missing), checks, then requires an empty
    /// plan without and with a refresh.
    pub fn config(config: impl Into<String>) -> Self {
        Self::new(StepKind::Config(config.into()))
    }

    /// Imports `resource` (an address such as `datavault_stack.main`) into a fresh working directory
    /// using the previous config step's configuration; the ID defaults to the `id` attribute in the
    /// state that step applied.
    pub fn import(resource: impl Into<String>) -> Self {
        Self::new(StepKind::Import(ImportSpec {
            resource: resource.into(),
            id: None,
            config: None,
            verify: false,
            verify_ignore: Vec::new(),
            mode: ImportMode::Command,
            identity: Vec::new(),
        }))
    }

    /// Runs `terraform apply -refresh-only` in the case's working directory, then the checks, then
    /// requires an empty plan.
    pub fn refresh() -> Self {
        Self::new(StepKind::Refresh)
    }

    /// Runs arbitrary async code with the working directory, a Terraform CLI and the emulator, for
    /// out-of-band changes or commands the other steps do not cover.
    pub fn custom<F, Fut>(f: F) -> Self
    where
        F: FnOnce(StepContext) -> Fut + 'static,
        Fut: Future<Output = CheckResult> + 'static,
    {
        Self::new(StepKind::Custom(Box::new(move |ctx| Box::pin(f(ctx)))))
    }

    /// Adds a check over the state (`terraform show -json`) after the step.
    pub fn check<F>(mut self, f: F) -> Self
    where
        F: FnOnce(&Value) -> CheckResult + 'static,
    {
        self.checks.push(Box::new(f));
        self
    }

    /// Adds an async check that inspects the emulator after the step.
    pub fn check_emulator<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce(Emulator) -> Fut + 'static,
        Fut: Future<Output = CheckResult> + 'static,
    {
        self.emulator_checks.push(boxed_emulator_fn(f));
        self
    }

    /// Adds a check over the saved plan (`terraform show -json tfplan`), run before it is applied.
    pub fn plan_check<F>(mut self, f: F) -> Self
    where
        F: FnOnce(&Value) -> CheckResult + 'static,
    {
        self.plan_checks.push(Box::new(f));
        self
    }

    /// Adds a hook run before the step touches Terraform, typically to change things out of band.
    pub fn pre_apply<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce(Emulator) -> Fut + 'static,
        Fut: Future<Output = CheckResult> + 'static,
    {
        self.pre_apply.push(boxed_emulator_fn(f));
        self
    }

    /// Expects the step's Terraform command to fail with output matching `pattern`; the step then ends
    /// there, skipping plans and checks.
    #[track_caller]
    pub fn expect_error(mut self, pattern: &str) -> Self {
        self.expect_error =
            Some(Regex::new(pattern).unwrap_or_else(|e| panic!("invalid expect_error pattern {pattern:?}: {e}")));
        self
    }

    /// Accepts (and then requires) a non-empty plan after the step.
    pub fn expect_non_empty_plan(mut self) -> Self {
        self.expect_non_empty_plan = true;
        self
    }

    /// Plans without applying (config steps only).
    pub fn plan_only(mut self) -> Self {
        self.plan_only = true;
        self
    }

    #[track_caller]
    fn import_spec(&mut self, option: &str) -> &mut ImportSpec {
        match &mut self.kind {
            StepKind::Import(spec) => spec,
            _ => panic!("{option} only applies to import steps"),
        }
    }

    /// Imports with this ID instead of the applied resource's `id`.
    #[track_caller]
    pub fn import_id(mut self, id: impl Into<String>) -> Self {
        self.import_spec("import_id").id = Some(id.into());
        self
    }

    /// Uses this configuration for the import instead of the previous config step's.
    #[track_caller]
    pub fn import_config(mut self, config: impl Into<String>) -> Self {
        self.import_spec("import_config").config = Some(config.into());
        self
    }

    /// Compares every attribute of the imported resource with the state the previous config step applied.
    #[track_caller]
    pub fn import_state_verify(mut self) -> Self {
        self.import_spec("import_state_verify").verify = true;
        self
    }

    /// Attributes (or dotted paths) import verification skips, e.g. ones AWS cannot report back.
    #[track_caller]
    pub fn import_state_verify_ignore(mut self, names: &[&str]) -> Self {
        self.import_spec("import_state_verify_ignore").verify_ignore.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// Imports through an `import {}` block (plan must show a no-op import, then it is applied) instead
    /// of `terraform import`.
    #[track_caller]
    pub fn import_block(mut self) -> Self {
        self.import_spec("import_block").mode = ImportMode::Block;
        self
    }

    /// Imports through an `import {}` block naming the resource by its identity (these attribute/value
    /// pairs) instead of an import ID, as Terraform >= 1.12 allows for providers with resource identity.
    #[track_caller]
    pub fn import_identity(mut self, identity: &[(&str, &str)]) -> Self {
        let spec = self.import_spec("import_identity");
        spec.mode = ImportMode::Identity;
        spec.identity = identity.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }

    /// Imports through an `import {}` block with Terraform generating the resource's configuration
    /// (`plan -generate-config-out`); the generated configuration must plan the import as a no-op.
    #[track_caller]
    pub fn generate_config(mut self) -> Self {
        self.import_spec("generate_config").mode = ImportMode::GeneratedConfig;
        self
    }

    /// A short name for messages: `config`, `plan-only config`, `import`, `import block`, `refresh`,
    /// `custom`.
    pub fn describe(&self) -> String {
        match &self.kind {
            StepKind::Config(_) if self.plan_only => "plan-only config".into(),
            StepKind::Config(_) => "config".into(),
            StepKind::Import(spec) if spec.mode == ImportMode::Block => {
                format!("import block {}", spec.resource)
            }
            StepKind::Import(spec) if spec.mode == ImportMode::Identity => {
                format!("import by identity {}", spec.resource)
            }
            StepKind::Import(spec) if spec.mode == ImportMode::GeneratedConfig => {
                format!("import with generated configuration {}", spec.resource)
            }
            StepKind::Import(spec) => format!("import {}", spec.resource),
            StepKind::Refresh => "refresh".into(),
            StepKind::Custom(_) => "custom".into(),
        }
    }

    /// Options that do not fit the step's kind; the runner refuses such a step rather than ignoring
    /// what the test author asked for.
    pub(crate) fn misconfiguration(&self) -> Option<String> {
        let config = matches!(self.kind, StepKind::Config(_));
        let custom = matches!(self.kind, StepKind::Custom(_));
        if self.plan_only && !config {
            return Some("plan_only only applies to config steps".into());
        }
        if !self.plan_checks.is_empty() && !config {
            return Some("plan checks only apply to config steps".into());
        }
        if self.expect_error.is_some() && custom {
            return Some("a custom step checks its own commands; expect_error does not apply".into());
        }
        if let StepKind::Import(spec) = &self.kind
            && !spec.verify
            && !spec.verify_ignore.is_empty()
        {
            return Some("import_state_verify_ignore needs import_state_verify".into());
        }
        None
    }
}

/// What a custom step gets: the case's working directory, a Terraform CLI bound to it, and the emulator.
#[derive(Clone, Debug)]
pub struct StepContext {
    pub(crate) terraform: Terraform,
    pub(crate) emulator: Emulator,
}

impl StepContext {
    /// The case's main working directory.
    pub fn dir(&self) -> &Path {
        self.terraform.dir()
    }

    /// The emulator.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Runs `terraform ARGS...` in the working directory; the caller decides what counts as success.
    pub fn terraform(&self, args: &[&str]) -> CommandOutput {
        self.terraform.run(args)
    }

    /// The current state as `terraform show -json` prints it.
    pub fn state(&self) -> Result<Value, CheckError> {
        let out = self.terraform.run(&["show", "-json", "-no-color"]);
        if !out.success() {
            return Err(out.to_string().into());
        }
        Ok(serde_json::from_str(&out.stdout)?)
    }

    /// Prints the working directory to stderr (bypassing the test harness's capture), for poking at it
    /// by hand while debugging.
    pub fn print_working_dir(&self) {
        crate::runner::announce(&format!("working dir: {}", self.dir().display()));
    }
}
