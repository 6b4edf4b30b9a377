//! The Terraform version matrix: the provider under test against every extra Terraform installed beside the
//! pinned one (`scripts/terraform-matrix.sh`, or `make matrix`), each installing it through a filesystem
//! mirror as users of a private mirror would. For each version:
//! - the provider's schema loads: init, validate, `providers schema -json` and a plan without resources;
//! - a `datavault_stack` goes through plan, apply, an empty second plan and destroy against the emulator,
//!   except on Terraform < 1.0.9, whose core would crash planning any new resource with nested attributes
//!   (hashicorp/terraform#29701, fixed in 1.0.9): there the provider must refuse it with a clear error when
//!   configured, before the crash, and nothing may be created;
//! - `database.password_wo` is refused with the provider's own diagnostic before Terraform 1.11, and kept
//!   out of the saved plan from 1.11 on.
//!
//! Which Terraforms: `DATAVAULT_MATRIX_TERRAFORMS` (paths separated by `:`), else every
//! `<toolchain>/terraform-*/terraform` plus a `terraform` on PATH, skipping the version the other acceptance
//! tests already use; finding none is a failure. Gated on `TF_ACC` and, so that `make acceptance` does not
//! depend on whichever extra Terraforms happen to be installed, on `DATAVAULT_MATRIX` (`make matrix` sets
//! both). Needs the emulator (with-emulator.sh).

mod tfexec;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use datavault_acceptance_tests::env::{EMULATOR_URL, SKIP_MESSAGE, acceptance_enabled};
use datavault_acceptance_tests::mirror::{Mirror, cli_config};
use datavault_acceptance_tests::{CommandOutput, Emulator, assert_emulator_clean, runtime, stack_items};
use regex::Regex;
use serde_json::Value;

use tfexec::{
    Cli, TestDir, default_terraform, non_empty_var, provider_bin, provider_version, terraform_version, toolchain_dir,
    version_tuple, write,
};

/// Paths of the Terraforms to test, separated by `:`; replaces the search.
const MATRIX_TERRAFORMS: &str = "DATAVAULT_MATRIX_TERRAFORMS";
/// Opts in to the matrix (besides `TF_ACC`).
const MATRIX: &str = "DATAVAULT_MATRIX";
/// First Terraform that plans new resources with nested attributes without crashing.
const NESTED_ATTRIBUTES_FIXED: (u64, u64, u64) = (1, 0, 9);
/// First Terraform with write-only attributes.
const WRITE_ONLY_SINCE: (u64, u64, u64) = (1, 11, 0);
/// The provider's diagnostic for `password_wo` on a Terraform without write-only attributes.
const WRITE_ONLY_DIAGNOSTIC: &str = "Write-Only Attribute Needs Terraform 1.11";
/// A password that must never show up in a plan.
const PASSWORD: &str = "MatrixSecretPassw0rd42";
/// The provider's refusal of a Terraform older than 1.0.9, given when Terraform configures it.
const OLD_TERRAFORM_DIAGNOSTIC: &str = "Terraform 1.0.9 Or Later Required";
/// The crash Terraform < 1.0.9 has when it proposes a new state with nested attributes.
const NESTED_CRASH: &str =
    r"(?s)TERRAFORM CRASH|panic: interface conversion: interface \{\} is nil.*objchange\.proposedNewNestedType";

/// One Terraform of the matrix.
#[derive(Debug, Clone)]
struct Terraform {
    bin: PathBuf,
    version: String,
}

impl Terraform {
    fn at_least(&self, min: (u64, u64, u64)) -> bool {
        version_tuple(&self.version) >= min
    }

    /// A working directory named after the version, with `config` and the mirror-only CLI configuration.
    fn cli(&self, work: &Path, name: &str, config: &str) -> Cli {
        let dir = work.join(format!("{name}-{}", self.version));
        write(&dir.join("main.tf"), config);
        let cli_file = work.join("cli.tfrc");
        if !cli_file.exists() {
            write(&cli_file, cli_config(mirror().root()));
        }
        Cli::new(&self.bin, cli_file, dir)
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The extra Terraforms, oldest first, one per version, without the one the other tests use.
fn terraforms() -> &'static [Terraform] {
    static FOUND: OnceLock<Vec<Terraform>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let candidates: Vec<PathBuf> = match non_empty_var(MATRIX_TERRAFORMS) {
            Some(list) => list.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect(),
            None => {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir(toolchain_dir())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("terraform-"))
                    .map(|e| e.path().join("terraform"))
                    .filter(|p| p.is_file())
                    .collect();
                dirs.sort();
                dirs.extend(on_path("terraform"));
                dirs
            }
        };
        let main = terraform_version(&default_terraform());
        let mut found: Vec<Terraform> = Vec::new();
        for bin in candidates {
            let Some(version) = terraform_version(&bin) else {
                println!("matrix: {} does not report a Terraform version; skipped", bin.display());
                continue;
            };
            if Some(&version) == main.as_ref() || found.iter().any(|t| t.version == version) {
                continue;
            }
            found.push(Terraform { bin, version });
        }
        found.sort_by_key(|t| version_tuple(&t.version));
        let list: Vec<String> = found.iter().map(|t| format!("{} ({})", t.version, t.bin.display())).collect();
        println!("matrix: Terraform {}", if list.is_empty() { "none found".into() } else { list.join(", ") });
        found
    })
}

/// The mirror holding the provider under test, shared by every Terraform of the run.
fn mirror() -> &'static Mirror {
    static MIRROR: OnceLock<Mirror> = OnceLock::new();
    MIRROR.get_or_init(|| Mirror::create(&provider_bin(), &provider_version()))
}

/// The Terraforms to test, or `None` (after saying why) when the test should not run.
fn matrix() -> Option<&'static [Terraform]> {
    if !acceptance_enabled() {
        println!("{SKIP_MESSAGE}");
        return None;
    }
    if non_empty_var(MATRIX).is_none() {
        println!("SKIPPED: set {MATRIX}=1 to run the Terraform version matrix (make matrix)");
        return None;
    }
    let found = terraforms();
    assert!(!found.is_empty(), "no extra Terraform found: install them with scripts/terraform-matrix.sh");
    Some(found)
}

/// Tests share the emulator, so they take turns.
fn serialise() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn succeeded(out: CommandOutput) -> Result<CommandOutput, String> {
    if out.success() { Ok(out) } else { Err(out.to_string()) }
}

/// Runs `case` for every Terraform and fails at the end with every failure, so one version's failure never
/// hides another's result.
fn for_each(name: &str, case: impl Fn(&Terraform, &Path) -> Result<String, String>) {
    let Some(terraforms) = matrix() else {
        return;
    };
    let _turn = serialise();
    let work = TestDir::new(&format!("datavault-acc-matrix-{name}-"));
    let mut failures = Vec::new();
    for tf in terraforms {
        let started = Instant::now();
        match case(tf, work.path()) {
            Ok(summary) => println!("matrix {name}: Terraform {}: ok in {:.0}s: {summary}", tf.version, secs(started)),
            Err(e) => {
                println!("matrix {name}: Terraform {}: FAILED in {:.0}s", tf.version, secs(started));
                failures.push(format!("Terraform {} ({}):\n{e}", tf.version, tf.bin.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

const REQUIRED_PROVIDERS: &str =
    "terraform {\n  required_providers {\n    datavault = {\n      source = \"datavault/datavault\"\n    }\n  }\n}\n\n";

/// The provider needs no AWS call to configure; region and endpoints come from the emulator's AWS_* env.
const PROVIDER_BLOCK: &str = "provider \"datavault\" {\n  skip_credentials_validation = true\n}\n\n";

/// A stack for the emulator: no steady-state wait (moto never starts tasks), a database destroy can delete.
fn stack_config(name: &str, database: &str) -> String {
    format!(
        "{REQUIRED_PROVIDERS}{PROVIDER_BLOCK}resource \"datavault_stack\" \"main\" {{\n  name                  = \"{name}\"\n  wait_for_steady_state = false\n  database = {{\n    deletion_protection = false\n    skip_final_snapshot = true\n{database}  }}\n}}\n"
    )
}

/// A stack name unique to the Terraform version: `acc-mx-1-11-4`.
fn stack_name(tf: &Terraform) -> String {
    format!("acc-mx-{}", tf.version.replace('.', "-"))
}

#[test]
fn schema_loads_on_every_terraform() {
    for_each("schema", |tf, work| {
        let config = format!(
            "{REQUIRED_PROVIDERS}provider \"datavault\" {{\n  skip_credentials_validation = true\n  region                      = \"eu-west-2\"\n}}\n"
        );
        let cli = tf.cli(work, "schema", &config);
        let init = succeeded(cli.run(&["init", "-input=false", "-no-color"]))?;
        if !init.stdout.contains("Installed datavault/datavault v") {
            return Err(format!("init did not install the provider from the mirror:\n{init}"));
        }
        succeeded(cli.run(&["validate", "-no-color"]))?;
        let schema = succeeded(cli.run(&["providers", "schema", "-json"]))?;
        let schema: Value = serde_json::from_str(&schema.stdout).map_err(|e| format!("schema JSON: {e}"))?;
        let stack = &schema["provider_schemas"]["registry.terraform.io/datavault/datavault"]["resource_schemas"]["datavault_stack"]
            ["block"]["attributes"];
        for attr in ["name", "database", "cluster", "services"] {
            if !stack[attr].is_object() {
                return Err(format!("datavault_stack.{attr} missing from the schema Terraform read: {stack}"));
            }
        }
        let nested = stack["database"]["nested_type"].is_object();
        let plan = succeeded(cli.run(&["plan", "-input=false", "-no-color"]))?;
        if !plan.stdout.contains("No changes") {
            return Err(format!("plan without resources is not empty:\n{plan}"));
        }
        Ok(format!("init, validate, schema (database as {}), empty plan", if nested { "nested_type" } else { "type" }))
    });
}

#[test]
fn stack_lifecycle_on_every_terraform() {
    for_each("lifecycle", |tf, work| {
        let url = non_empty_var(EMULATOR_URL)
            .ok_or_else(|| format!("{EMULATOR_URL} is not set: run under scripts/with-emulator.sh"))?;
        let emulator = runtime::block_on(Emulator::connect(&url));
        emulator.reset()?;
        let name = stack_name(tf);
        let cli = tf.cli(work, "lifecycle", &stack_config(&name, ""));
        succeeded(cli.run(&["init", "-input=false", "-no-color"]))?;
        succeeded(cli.run(&["validate", "-no-color"]))?;

        if !tf.at_least(NESTED_ATTRIBUTES_FIXED) {
            // Terraform's own bug would make every plan of a new resource with nested attributes panic in core;
            // the provider must refuse such a Terraform when configured, before that point, in its own words.
            let plan = cli.run(&["plan", "-input=false", "-no-color"]);
            if plan.matches(&Regex::new(NESTED_CRASH).unwrap()) {
                return Err(format!(
                    "Terraform {} crashed instead of getting the provider's error:\n{plan}",
                    tf.version
                ));
            }
            plan.expect_failure(&Regex::new(&regex::escape(OLD_TERRAFORM_DIAGNOSTIC)).unwrap())?;
            let items = runtime::block_on(stack_items(&emulator, &name)).map_err(|e| e.to_string())?;
            if !items.is_empty() {
                return Err(format!("the refused plan left parts in the emulator: {items:?}"));
            }
            return Ok(format!("plan refused with \"{OLD_TERRAFORM_DIAGNOSTIC}\" (no crash); nothing was created"));
        }

        let apply = cli.run(&["apply", "-input=false", "-auto-approve", "-no-color"]);
        let result = (|| {
            succeeded(apply)?;
            let state: Value = serde_json::from_str(&succeeded(cli.run(&["show", "-json", "-no-color"]))?.stdout)
                .map_err(|e| format!("state JSON: {e}"))?;
            let resources = &state["values"]["root_module"]["resources"];
            let stack = resources
                .as_array()
                .and_then(|r| r.iter().find(|r| r["address"] == "datavault_stack.main"))
                .ok_or_else(|| format!("datavault_stack.main not in the state: {resources}"))?;
            if stack["values"]["name"] != name.as_str() {
                return Err(format!("state has name {} instead of {name}", stack["values"]["name"]));
            }
            let items = runtime::block_on(stack_items(&emulator, &name)).map_err(|e| e.to_string())?;
            if items.is_empty() {
                return Err(format!("apply succeeded but the emulator holds nothing tagged with {name}"));
            }
            let replan = cli.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
            if replan.code != Some(0) {
                return Err(format!("the plan after apply is not empty:\n{replan}"));
            }
            Ok(items.len())
        })();
        let destroy = cli.run(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
        let parts = result?;
        succeeded(destroy)?;
        runtime::block_on(assert_emulator_clean(&emulator, &name)).map_err(|e| e.to_string())?;
        Ok(format!("apply ({parts} parts), empty re-plan, destroy, emulator clean"))
    });
}

#[test]
fn write_only_password_on_every_terraform() {
    for_each("write-only", |tf, work| {
        let database = format!("    password_wo         = \"{PASSWORD}\"\n    password_wo_version = 1\n");
        let cli = tf.cli(work, "write-only", &stack_config(&stack_name(tf), &database));
        succeeded(cli.run(&["init", "-input=false", "-no-color"]))?;
        let diagnostic = Regex::new(&regex::escape(WRITE_ONLY_DIAGNOSTIC)).unwrap();

        if !tf.at_least(WRITE_ONLY_SINCE) {
            // The provider must refuse, in its own words, before anything could store the password.
            let validate = cli.run(&["validate", "-no-color"]);
            if !validate.success() {
                validate.expect_failure(&diagnostic)?;
                return Ok(format!("validate refuses with \"{WRITE_ONLY_DIAGNOSTIC}\""));
            }
            let plan = cli.run(&["plan", "-input=false", "-no-color"]);
            if plan.matches(&Regex::new(NESTED_CRASH).unwrap()) {
                return Err(format!(
                    "Terraform {} crashed instead of refusing with \"{WRITE_ONLY_DIAGNOSTIC}\":\n{plan}",
                    tf.version
                ));
            }
            plan.expect_failure(&diagnostic)?;
            return Ok(format!("plan refuses with \"{WRITE_ONLY_DIAGNOSTIC}\""));
        }

        succeeded(cli.run(&["validate", "-no-color"]))?;
        succeeded(cli.run(&["plan", "-input=false", "-no-color", "-out=tfplan"]))?;
        let plan = succeeded(cli.run(&["show", "-json", "-no-color", "tfplan"]))?;
        let plan: Value = serde_json::from_str(&plan.stdout).map_err(|e| format!("plan JSON: {e}"))?;
        // The configuration snapshot in a plan holds the literal as written, as for any literal; what must not
        // hold it are the planned values, which end up in state.
        for part in ["planned_values", "resource_changes"] {
            if plan[part].to_string().contains(PASSWORD) {
                return Err(format!("the write-only password is in the plan's {part}: {}", plan[part]));
            }
        }
        Ok("plan accepted; the password is not in the planned values".into())
    });
}
