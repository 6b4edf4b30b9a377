//! A Terraform working directory: the configuration files a step writes, `terraform init` run once, and
//! reading back the state or a saved plan as JSON.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::hcl;
use crate::terraform::Terraform;

/// File holding the test's configuration (with the provider blocks added).
pub const CONFIG_FILE: &str = "main.tf";
/// File holding `import {}` blocks, kept apart so a later config can drop them by removing the file.
pub const IMPORTS_FILE: &str = "imports.tf";
/// File Terraform writes a resource's configuration into when an import generates it.
pub const GENERATED_FILE: &str = "generated.tf";
/// Name of the saved plan every planning step writes.
pub const PLAN_FILE: &str = "tfplan";

/// One directory Terraform runs in, with its own state.
#[derive(Debug)]
pub struct WorkingDir {
    terraform: Terraform,
    initialised: bool,
}

impl WorkingDir {
    /// Creates the directory (if needed) for `terraform`'s working directory.
    pub fn new(terraform: Terraform) -> Result<WorkingDir, String> {
        fs::create_dir_all(terraform.dir())
            .map_err(|e| format!("creating working dir {}: {e}", terraform.dir().display()))?;
        Ok(WorkingDir { terraform, initialised: false })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.terraform.dir()
    }

    /// The CLI bound to this directory.
    pub fn terraform(&self) -> &Terraform {
        &self.terraform
    }

    /// Whether `terraform init` has run here, i.e. whether there can be any state.
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Replaces the configuration with `config`, adding the provider blocks it lacks and removing any
    /// import blocks a previous step wrote.
    pub fn write_config(&self, config: &str) -> Result<(), String> {
        self.write_file(CONFIG_FILE, &hcl::with_provider_blocks(config))?;
        match fs::remove_file(self.dir().join(IMPORTS_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("removing {IMPORTS_FILE}: {e}")),
            _ => Ok(()),
        }
    }

    /// Writes one file into the directory.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<(), String> {
        let path = self.dir().join(name);
        fs::write(&path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Runs `terraform init` the first time it is called.
    ///
    /// Once is enough: steps only change resource arguments, never the set of providers, and a repeat
    /// init would only slow every step down.
    pub fn init(&mut self) -> Result<(), String> {
        if self.initialised {
            return Ok(());
        }
        let out = self.terraform.run(&["init", "-input=false", "-no-color"]);
        if !out.success() {
            return Err(format!("terraform init failed\n{out}"));
        }
        self.initialised = true;
        Ok(())
    }

    fn show_json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.terraform.run(args);
        if !out.success() {
            return Err(out.to_string());
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("`{}` printed invalid JSON ({e}):\n{}", out.command, out.stdout))
    }

    /// The state, as `terraform show -json` prints it.
    pub fn state(&self) -> Result<Value, String> {
        self.show_json(&["show", "-json", "-no-color"])
    }

    /// The saved plan, as `terraform show -json tfplan` prints it.
    pub fn saved_plan(&self) -> Result<Value, String> {
        self.show_json(&["show", "-json", "-no-color", PLAN_FILE])
    }

    /// The saved plan in Terraform's human-readable form, for failure messages.
    pub fn saved_plan_text(&self) -> String {
        let out = self.terraform.run(&["show", "-no-color", PLAN_FILE]);
        if out.success() { out.stdout } else { out.to_string() }
    }
}
