//! Reads the harness's settings from the environment that `make acceptance` prepares, with defaults that
//! let a developer run a single test by hand from the workspace.

use std::env;
use std::path::{Path, PathBuf};

/// Variable that gates every acceptance test, as in terraform-plugin-testing.
pub const TF_ACC: &str = "TF_ACC";
/// Base URL (`http://127.0.0.1:PORT`) of the running moto server.
pub const EMULATOR_URL: &str = "DATAVAULT_EMULATOR_URL";
/// Overrides the Terraform binary, under the same name terraform-plugin-testing uses.
pub const TERRAFORM_PATH: &str = "TF_ACC_TERRAFORM_PATH";
/// Absolute path of the provider binary under test.
pub const PROVIDER_BIN: &str = "DATAVAULT_PROVIDER_BIN";
/// Version the provider is mirrored under; must be a valid semantic version.
pub const PROVIDER_VERSION: &str = "DATAVAULT_PROVIDER_VERSION";
/// When set, working directories are kept after the test so a failure can be reproduced by hand.
pub const PERSIST_WORKING_DIR: &str = "TF_ACC_PERSIST_WORKING_DIR";

/// The line every gated test prints when `TF_ACC` is unset.
pub const SKIP_MESSAGE: &str = "SKIPPED: set TF_ACC=1 to run acceptance tests";

/// Everything a test run needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Terraform CLI to run.
    pub terraform: PathBuf,
    /// Provider binary to install into the mirror.
    pub provider_bin: PathBuf,
    /// Version the provider is published under in the mirror.
    pub provider_version: String,
    /// Base URL of the emulator, without a trailing slash.
    pub emulator_url: String,
    /// Whether working directories outlive the test.
    pub persist_working_dir: bool,
}

/// True when acceptance tests should run: `TF_ACC` is set to anything non-empty, as in plugin-testing.
pub fn acceptance_enabled() -> bool {
    env::var_os(TF_ACC).is_some_and(|v| !v.is_empty())
}

/// The workspace root: this package lives one directory below it. Cargo's run-time value wins over the
/// compiled-in one, because a shared target directory can reuse a test binary built from another checkout.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf());
    manifest_dir.parent().map_or(manifest_dir.clone(), Path::to_path_buf)
}

/// Extracts `version = "..."` from the `[package]` table of a Cargo manifest.
///
/// A line-based scan is enough for the root manifest and spares a TOML dependency; it ignores `version`
/// keys of other tables such as `[dependencies]` or `[workspace.package]`.
pub fn package_version(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some(rest) = line.strip_prefix("version") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim();
        let value = value.strip_prefix('"')?;
        let end = value.find('"')?;
        return Some(value[..end].to_string());
    }
    None
}

fn non_empty_var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Reads the settings, panicking with instructions when the environment cannot run acceptance tests.
    ///
    /// Called only once `TF_ACC` is known to be set: a half-configured acceptance run must fail loudly
    /// rather than skip.
    pub fn from_env() -> Settings {
        let root = workspace_root();
        let emulator_url = non_empty_var(EMULATOR_URL).unwrap_or_else(|| {
            panic!(
                "{TF_ACC} is set but {EMULATOR_URL} is not: acceptance tests need a running AWS emulator. \
                 Run them with `make acceptance`, which starts moto and sets the AWS_* variables."
            )
        });
        let terraform =
            non_empty_var(TERRAFORM_PATH).map(PathBuf::from).unwrap_or_else(|| root.join(".toolchain/bin/terraform"));
        if !terraform.is_file() {
            panic!(
                "Terraform CLI not found at {} (set {TERRAFORM_PATH}, or run scripts/toolchain.sh)",
                terraform.display()
            );
        }
        let provider_bin = non_empty_var(PROVIDER_BIN).map(PathBuf::from).unwrap_or_else(|| {
            let target = non_empty_var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
            target.join("debug/terraform-provider-datavault")
        });
        if !provider_bin.is_file() {
            panic!(
                "provider binary not found at {} (build it with `cargo build`, or set {PROVIDER_BIN})",
                provider_bin.display()
            );
        }
        let provider_version = non_empty_var(PROVIDER_VERSION).unwrap_or_else(|| {
            let manifest_path = root.join("Cargo.toml");
            let manifest = std::fs::read_to_string(&manifest_path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", manifest_path.display()));
            package_version(&manifest).unwrap_or_else(|| {
                panic!("no [package] version in {} (set {PROVIDER_VERSION})", manifest_path.display())
            })
        });
        Settings {
            terraform,
            provider_bin,
            provider_version,
            emulator_url: emulator_url.trim_end_matches('/').to_string(),
            persist_working_dir: env::var_os(PERSIST_WORKING_DIR).is_some_and(|v| !v.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_package_version_only_from_package_table() {
        let manifest = r#"
[workspace]
members = ["."]

[workspace.package]
version = "9.9.9"

[package]
name = "terraform-provider-datavault"
version = "0.1.0"
edition = "2024"

[dependencies]
tokio = { version = "1" }
"#;
        assert_eq!(package_version(manifest).as_deref(), Some("0.1.0"));
    }

    #[test]
    fn ignores_keys_that_merely_start_with_version() {
        let manifest = "[package]\nversioned = \"x\"\nversion = \"1.2.3\"\n";
        assert_eq!(package_version(manifest).as_deref(), Some("1.2.3"));
    }

    #[test]
    fn missing_version_is_none() {
        assert_eq!(package_version("[package]\nname = \"x\"\n[dependencies]\nversion = \"1\"\n"), None);
    }

    #[test]
    fn workspace_root_holds_the_provider_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
