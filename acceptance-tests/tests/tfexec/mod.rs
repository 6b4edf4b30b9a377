//! Shared by the `registry` and `matrix` tests: runs a Terraform CLI chosen by the test (not only the one
//! the harness is configured with), with environment variables of the test's choosing such as
//! `SSL_CERT_FILE`, and finds the pieces those tests need (the provider binary, its version, a Terraform's
//! version). Output comes back as the harness's [`CommandOutput`], so failures print the same way.
//!
//! Each test binary uses a different subset of this module.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use datavault_acceptance_tests::CommandOutput;
use datavault_acceptance_tests::env::{PROVIDER_BIN, PROVIDER_VERSION, TERRAFORM_PATH, package_version};

/// Upper bound for one command, as in the harness (`TF_ACC_COMMAND_TIMEOUT` seconds overrides it).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

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

/// A Terraform CLI bound to a working directory, a CLI configuration file and extra environment.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: PathBuf,
    cli_config: PathBuf,
    dir: PathBuf,
    env: Vec<(OsString, OsString)>,
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Cli {
    /// Runs `bin` in `dir` with `TF_CLI_CONFIG_FILE=cli_config`: never the developer's ~/.terraformrc.
    pub fn new(bin: impl Into<PathBuf>, cli_config: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Cli {
        Cli { bin: bin.into(), cli_config: cli_config.into(), dir: dir.into(), env: Vec::new() }
    }

    /// The same CLI with one more environment variable.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Cli {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `terraform ARGS...` to completion (or the timeout) and captures its output; never panics on a
    /// failed command.
    pub fn run(&self, args: &[&str]) -> CommandOutput {
        let command = format!("{} {}", self.bin.display(), args.join(" "));
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1");
        for var in ["TF_DATA_DIR", "TF_WORKSPACE", "TF_PLUGIN_CACHE_DIR", "SSL_CERT_FILE", "SSL_CERT_DIR"] {
            cmd.env_remove(var);
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TF_CLI_ARGS") {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));

        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("could not start `{command}`: {e}"));
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let timeout = non_empty_var("TF_ACC_COMMAND_TIMEOUT")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("waiting for `{command}`: {e}"),
            }
        };
        // A Terraform that crashed leaves its provider running, holding our pipes open; stop such orphans
        // (started by this command, in this directory) so the output can be read to its end.
        let grace = Instant::now() + Duration::from_secs(10);
        while !(stdout.is_finished() && stderr.is_finished()) {
            if Instant::now() >= grace {
                kill_providers_in(&self.dir);
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        CommandOutput {
            command,
            dir: self.dir.clone(),
            code: if timed_out { None } else { status.and_then(|s| s.code()) },
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
            timed_out,
        }
    }

    /// Runs a command that must succeed, panicking with its full output otherwise.
    #[track_caller]
    pub fn run_ok(&self, args: &[&str]) -> CommandOutput {
        self.run(args).expect_success()
    }
}

/// Kills provider processes left running in `dir` (their working directory) by a Terraform that is gone.
pub fn kill_providers_in(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let proc_dir = entry.path();
        let in_dir = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == dir);
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let is_provider = String::from_utf8_lossy(&cmdline).contains("terraform-provider-datavault");
        if in_dir && is_provider {
            eprintln!("stopping provider pid {pid} orphaned by a Terraform that exited in {}", dir.display());
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}
