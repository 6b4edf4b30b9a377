//! Shared by the `registry`, `matrix` and `bench` tests: the harness's Terraform runner under the name
//! [`Cli`] (for a Terraform chosen by the test, with variables such as `SSL_CERT_FILE`), and the pieces
//! those tests need (the provider binary, its version, a Terraform's version).
//!
//! Each test binary uses a different subset of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use datavault_acceptance_tests::env::{PROVIDER_BIN, PROVIDER_VERSION, TERRAFORM_PATH, package_version};

/// A variable set to something non-empty.
pub fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The repository root, from the `CARGO_MANIFEST_DIR` cargo sets when it runs the test.
///
/// Read at run time rather than compiled in: with a cargo target dir shared between clones, a test binary
/// built in one clone can be reused by another, and a compiled-in path would then name the wrong clone.
pub fn repo_root() -> PathBuf {
    let manifest_dir = non_empty_var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(datavault_acceptance_tests::env::workspace_root);
    if manifest_dir.join("scripts").is_dir() {
        manifest_dir
    } else {
        manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf()
    }
}

/// The Terraform the acceptance tests use: `TF_ACC_TERRAFORM_PATH`, else the pinned `.toolchain/bin/terraform`.
pub fn default_terraform() -> PathBuf {
    let path =
        non_empty_var(TERRAFORM_PATH).map(PathBuf::from).unwrap_or_else(|| toolchain_dir().join("bin/terraform"));
    assert!(
        path.is_file(),
        "Terraform CLI not found at {} (set {TERRAFORM_PATH}, or run scripts/toolchain.sh)",
        path.display()
    );
    path
}

/// Where scripts/toolchain.sh installs: `DATAVAULT_TOOLCHAIN_DIR`, else `<repo>/.toolchain`.
pub fn toolchain_dir() -> PathBuf {
    non_empty_var("DATAVAULT_TOOLCHAIN_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".toolchain"))
}

/// The provider binary under test: `DATAVAULT_PROVIDER_BIN`, else the debug build in the cargo target dir.
pub fn provider_bin() -> PathBuf {
    let path = non_empty_var(PROVIDER_BIN).map(PathBuf::from).unwrap_or_else(|| {
        let target = non_empty_var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
        target.join("debug/terraform-provider-datavault")
    });
    assert!(
        path.is_file(),
        "provider binary not found at {} (run `cargo build`, or set {PROVIDER_BIN})",
        path.display()
    );
    path
}

/// The version the provider is published as: `DATAVAULT_PROVIDER_VERSION`, else Cargo.toml's.
pub fn provider_version() -> String {
    non_empty_var(PROVIDER_VERSION).unwrap_or_else(|| {
        let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("reading Cargo.toml");
        package_version(&manifest).expect("Cargo.toml has a [package] version")
    })
}

/// `MAJOR.MINOR.PATCH` of a Terraform binary, from the first line of `terraform version`.
pub fn terraform_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    first.strip_prefix("Terraform v").map(|v| v.trim().to_string())
}

/// `(major, minor, patch)` of a version string such as `1.0.3` (a pre-release suffix is ignored).
pub fn version_tuple(version: &str) -> (u64, u64, u64) {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Writes a file, panicking with its path on failure.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A temporary directory for one test, kept when `TF_ACC_PERSIST_WORKING_DIR` is set.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A fresh directory named after `prefix`.
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("creating a temp dir");
        let path = dir.path().to_path_buf();
        if non_empty_var(datavault_acceptance_tests::env::PERSIST_WORKING_DIR).is_some() {
            eprintln!("keeping {} (TF_ACC_PERSIST_WORKING_DIR)", path.display());
            let _ = dir.keep();
            return TestDir { dir: None, path };
        }
        TestDir { dir: Some(dir), path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(&self.path)
    }
}

/// The harness's Terraform runner: one working directory, one CLI configuration, extra variables.
pub use datavault_acceptance_tests::terraform::Terraform as Cli;
