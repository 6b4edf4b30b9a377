//! Runs the Terraform CLI in a working directory with an environment the test controls, and captures
//! everything it prints so a failure can show the whole story.

use regex::Regex;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for one Terraform command. A hung provider must fail the test rather than eat the whole
/// CI budget; override with `TF_ACC_COMMAND_TIMEOUT` (seconds) when debugging under a slow machine.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Variables from the developer's shell that would change what the test exercises, so Terraform never
/// sees them: extra CLI arguments, another data dir or workspace, a plugin cache bypassing the mirror, or
/// CA settings (a test that needs one passes it with [`Terraform::env`]).
const SCRUBBED_VARS: &[&str] = &["TF_DATA_DIR", "TF_WORKSPACE", "TF_PLUGIN_CACHE_DIR", "SSL_CERT_FILE", "SSL_CERT_DIR"];
/// How long a finished Terraform's output pipes may stay open (held by a provider it left behind) before
/// that provider is stopped.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// A Terraform CLI bound to one working directory and one CLI configuration file.
#[derive(Debug, Clone)]
pub struct Terraform {
    bin: PathBuf,
    cli_config: PathBuf,
    dir: PathBuf,
    env: Vec<(OsString, OsString)>,
}

/// What a finished (or killed) Terraform command left behind.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command line, for messages.
    pub command: String,
    /// Directory the command ran in.
    pub dir: PathBuf,
    /// Exit code; `None` when the process was killed (by a signal or by the harness's timeout).
    pub code: Option<i32>,
    /// Everything written to standard output.
    pub stdout: String,
    /// Everything written to standard error.
    pub stderr: String,
    /// Set when the harness killed the command for running too long.
    pub timed_out: bool,
}

static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid regex"));

impl CommandOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output followed by standard error, as a person at a terminal would have read them.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Whether `pattern` matches the output.
    ///
    /// Terraform wraps diagnostic text at 78 columns when not writing to a terminal, so a phrase may be
    /// split across lines; the pattern is tried against the raw output and against a copy with every run
    /// of whitespace collapsed to one space, so `must be one of` matches however it was wrapped.
    pub fn matches(&self, pattern: &Regex) -> bool {
        let combined = self.combined();
        pattern.is_match(&combined) || pattern.is_match(&WHITESPACE.replace_all(&combined, " "))
    }

    /// Panics with the full output unless the command succeeded; returns `self` for chaining.
    #[track_caller]
    pub fn expect_success(self) -> Self {
        if !self.success() {
            panic!("{self}");
        }
        self
    }

    /// Checks that the command failed and that its output matches `pattern`, describing any mismatch.
    pub fn expect_failure(&self, pattern: &Regex) -> Result<(), String> {
        if self.success() {
            return Err(format!("expected an error matching /{pattern}/, but the command succeeded.\n{self}"));
        }
        if !self.matches(pattern) {
            return Err(format!("the command failed, but its output does not match /{pattern}/.\n{self}"));
        }
        Ok(())
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.timed_out, self.code) {
            (true, _) => "was killed after timing out".to_string(),
            (false, Some(code)) => format!("exited with code {code}"),
            (false, None) => "was killed by a signal".to_string(),
        };
        writeln!(f, "`{}` {status}", self.command)?;
        writeln!(f, "working dir: {}", self.dir.display())?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

fn command_timeout() -> Duration {
    std::env::var("TF_ACC_COMMAND_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT)
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    // Each pipe is read on its own thread so a chatty stream cannot fill its buffer and stall Terraform
    // while we wait on the other one.
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Terraform {
    /// A CLI that runs `bin` in `dir` with the CLI configuration at `cli_config`.
    pub fn new(bin: impl Into<PathBuf>, cli_config: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Terraform { bin: bin.into(), cli_config: cli_config.into(), dir: dir.into(), env: Vec::new() }
    }

    /// The same CLI with one more environment variable for every command.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The working directory commands run in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The same CLI, run in another directory.
    pub fn in_dir(&self, dir: impl Into<PathBuf>) -> Self {
        Terraform { dir: dir.into(), ..self.clone() }
    }

    /// Runs `terraform ARGS...` to completion and captures its output; never panics on a failed command.
    pub fn run(&self, args: &[&str]) -> CommandOutput {
        let command = format!("terraform {}", args.join(" "));
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Terraform must never read the developer's ~/.terraformrc: the mirror is the only source.
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1");
        for var in SCRUBBED_VARS {
            cmd.env_remove(var);
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TF_CLI_ARGS") {
                cmd.env_remove(name);
            }
        }
        // TF_LOG and TF_LOG_PROVIDER are inherited untouched, so a developer can turn on provider logs.
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));

        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("could not start {} for `{command}`: {e}", self.bin.display()));
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));

        let deadline = Instant::now() + command_timeout();
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
        // A Terraform that crashed can leave its provider running, holding our pipes open; stop such an
        // orphan (started by this command, in this directory) so the output can be read to its end.
        let grace = Instant::now() + ORPHAN_GRACE;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn output(code: Option<i32>, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            command: "terraform plan".into(),
            dir: PathBuf::from("/tmp/wd"),
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            timed_out: false,
        }
    }

    #[test]
    fn matches_phrases_wrapped_across_lines() {
        let out = output(Some(1), "", "Error: expected log_retention_days to be\none of [1 3 5]");
        assert!(out.matches(&Regex::new("to be one of").unwrap()));
        assert!(out.matches(&Regex::new(r"log_retention_days").unwrap()));
        assert!(!out.matches(&Regex::new("archive_force_destroy").unwrap()));
    }

    #[test]
    fn expect_failure_reports_success_and_mismatch() {
        let re = Regex::new("boom").unwrap();
        assert!(output(Some(0), "ok", "").expect_failure(&re).unwrap_err().contains("succeeded"));
        assert!(output(Some(1), "", "other").expect_failure(&re).unwrap_err().contains("does not match"));
        assert!(output(Some(1), "", "a boom").expect_failure(&re).is_ok());
    }

    #[test]
    fn display_names_command_code_dir_and_both_streams() {
        let text = output(Some(2), "plan text", "warn").to_string();
        for part in ["`terraform plan` exited with code 2", "/tmp/wd", "plan text", "warn"] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
    }

    #[test]
    fn runs_a_real_process_and_captures_its_streams() {
        // /bin/sh stands in for Terraform: the runner is agnostic to the binary it drives.
        let dir = tempfile::tempdir().unwrap();
        let sh = Terraform::new("/bin/sh", dir.path().join("cli.tfrc"), dir.path());
        let out = sh.run(&["-c", "echo out; echo err >&2; echo \"$TF_CLI_CONFIG_FILE $TF_IN_AUTOMATION\"; exit 3"]);
        assert_eq!(out.code, Some(3));
        assert!(out.stdout.contains("out\n"));
        assert!(out.stdout.contains("cli.tfrc 1"), "{}", out.stdout);
        assert_eq!(out.stderr, "err\n");
    }
}
