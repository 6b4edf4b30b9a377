//! What the robustness tests share: a per-test context (the emulator, reset; a provider mirror; a fault
//! proxy; a temp dir), a Terraform runner that points the provider at the proxy and can kill Terraform
//! together with its provider, and an inventory of a stack's parts that catches duplicates.

#![allow(dead_code)] // shared by the robustness and bench test binaries, which use different parts

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::env::{self, SKIP_MESSAGE, Settings};
use datavault_acceptance_tests::inventory::{self, Item, Kind};
use datavault_acceptance_tests::mirror::{self, Mirror};
use datavault_acceptance_tests::runner::announce;
use datavault_acceptance_tests::{CommandOutput, Emulator, runtime};
use regex::Regex;
use serde_json::Value;

use crate::proxy::Proxy;

/// How much faster than AWS time runs in the behaviour model (`aws_model.py`) under the kill and fault
/// suites: ten minutes of AWS time per real second, so a database is `creating` for about half a second and
/// every wait and IAM retry is exercised without slowing the suites down much.
pub const QUICK_MODEL: f64 = 600.0;

/// The proxy configuration that puts the behaviour model in front of the emulator at `scale`.
pub fn model(scale: f64) -> Value {
    serde_json::json!({"model": {"scale": scale}})
}

/// The resource address of every robustness test's stack.
pub const ADDR: &str = "datavault_stack.main";

/// Variables from the developer's shell that would change what Terraform does here.
const SCRUBBED_VARS: &[&str] = &["TF_DATA_DIR", "TF_WORKSPACE", "TF_PLUGIN_CACHE_DIR"];

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static MIRROR: OnceLock<Mirror> = OnceLock::new();

/// A stack configured for the emulator: no steady-state wait (moto never starts tasks), a database that
/// destroy may delete without a snapshot. `provider` goes into the provider block.
pub fn stack_config(name: &str, provider: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    datavault = {{ source = \"datavault/datavault\" }}\n  }}\n}}\n\n\
         provider \"datavault\" {{\n{provider}}}\n\n\
         resource \"datavault_stack\" \"main\" {{\n  name                  = \"{name}\"\n  wait_for_steady_state = false\n  \
         database              = {{ deletion_protection = false, skip_final_snapshot = true }}\n}}\n"
    )
}

/// Everything one robustness test works with. Dropping it stops the proxy, removes the temp dir and lets
/// the next test take the emulator.
pub struct Ctx {
    /// Test name, for messages.
    pub name: String,
    /// The emulator, reset when the context was made.
    pub emulator: Emulator,
    /// The fault proxy in front of the emulator (no faults until configured).
    pub proxy: Proxy,
    /// The harness's settings (Terraform, provider, emulator URL).
    pub settings: Settings,
    root: tempfile::TempDir,
    cli_config: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

/// The context for test `name`, or `None` (after printing the SKIPPED line) without `TF_ACC`.
pub fn setup(name: &str) -> Option<Ctx> {
    if !env::acceptance_enabled() {
        announce(&format!("{SKIP_MESSAGE} ({name})"));
        return None;
    }
    let settings = Settings::from_env();
    let serial = runtime::serialise();
    let emulator = EMULATOR.get_or_init(|| runtime::block_on(Emulator::connect(&settings.emulator_url))).clone();
    emulator.reset().unwrap_or_else(|e| panic!("{e}"));
    let mirror = MIRROR.get_or_init(|| Mirror::create(&settings.provider_bin, &settings.provider_version));
    let root = tempfile::Builder::new()
        .prefix(&format!("datavault-robustness-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temp dir: {e}"));
    let cli_config = root.path().join("terraform.tfrc");
    std::fs::write(&cli_config, mirror::cli_config(mirror.root()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", cli_config.display()));
    let proxy = Proxy::start(&settings.emulator_url, &root.path().join("proxy.log"));
    Some(Ctx { name: name.to_string(), emulator, proxy, settings, root, cli_config, _serial: serial })
}

impl Ctx {
    /// The temp dir every working directory of the test lives in.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A working directory `dir` (under the temp dir) holding `config` as main.tf, initialised, whose
    /// provider talks to AWS through the proxy.
    pub fn workdir(&self, dir: &str, config: &str) -> Tf {
        let path = self.root().join(dir);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        std::fs::write(path.join("main.tf"), config).unwrap_or_else(|e| panic!("writing main.tf: {e}"));
        let tf = Tf {
            bin: self.settings.terraform.clone(),
            cli_config: self.cli_config.clone(),
            dir: path,
            endpoint: self.proxy.url(),
        };
        tf.run(&["init", "-input=false", "-no-color"]).ok_or_panic();
        tf
    }

    /// Resets the emulator and the proxy (no faults, counters zeroed).
    pub fn reset(&self) {
        self.emulator.reset().unwrap_or_else(|e| panic!("{e}"));
        self.proxy.reset();
    }

    /// Runs an async SDK operation against the emulator (bypassing the proxy).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        runtime::block_on(future)
    }

    /// Keeps the temp dir when `TF_ACC_PERSIST_WORKING_DIR` is set, and says where it is.
    pub fn finish(self) {
        if self.settings.persist_working_dir {
            let kept = self.root.keep();
            announce(&format!("{}: working dir kept at {}", self.name, kept.display()));
        }
    }
}

/// A Terraform CLI bound to one working directory, with the provider pointed at `endpoint`.
#[derive(Debug, Clone)]
pub struct Tf {
    bin: PathBuf,
    cli_config: PathBuf,
    dir: PathBuf,
    endpoint: String,
}

/// A Terraform command running in the background, in its own process group (with its providers).
pub struct Running {
    child: Option<Child>,
    command: String,
    dir: PathBuf,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn command_timeout() -> Duration {
    std::env::var("TF_ACC_COMMAND_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(600), Duration::from_secs)
}

/// Sends SIGKILL to every process of group `pgid` (Terraform and the providers it started).
pub fn kill_group(pgid: u32) {
    // kill(1) rather than libc: this package forbids unsafe code.
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
}

impl Tf {
    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The same directory with the provider pointed at `endpoint` instead.
    pub fn with_endpoint(&self, endpoint: &str) -> Tf {
        Tf { endpoint: endpoint.to_string(), ..self.clone() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a kill takes the provider processes with it.
            .process_group(0)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("AWS_ENDPOINT_URL", &self.endpoint);
        for var in SCRUBBED_VARS {
            cmd.env_remove(var);
        }
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            // Per-service endpoints would bypass the proxy.
            if name_text.starts_with("TF_CLI_ARGS") || name_text.starts_with("AWS_ENDPOINT_URL_") {
                cmd.env_remove(&name);
            }
        }
        cmd
    }

    /// Starts `terraform ARGS...` in the background.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let command = format!("terraform {}", args.join(" "));
        let mut child = self
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {} for `{command}`: {e}", self.bin.display()));
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        Running {
            child: Some(child),
            command,
            dir: self.dir.clone(),
            started: Instant::now(),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Runs `terraform ARGS...` to completion (or the command timeout).
    pub fn run(&self, args: &[&str]) -> CommandOutput {
        self.spawn(args).finish(command_timeout())
    }

    /// `terraform apply -auto-approve`.
    pub fn apply(&self) -> CommandOutput {
        self.run(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform destroy -auto-approve`.
    pub fn destroy(&self) -> CommandOutput {
        self.run(&["destroy", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform show -json` of the state.
    pub fn state(&self) -> Result<Value, String> {
        let out = self.run(&["show", "-json", "-no-color"]);
        if !out.success() {
            return Err(out.to_string());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("`terraform show -json` printed invalid JSON ({e})"))
    }

    /// Both post-apply plans (`-refresh=false`, then with a refresh) must be empty.
    pub fn expect_empty_plans(&self) -> Result<(), String> {
        for args in [
            &["plan", "-input=false", "-no-color", "-detailed-exitcode", "-refresh=false"][..],
            &["plan", "-input=false", "-no-color", "-detailed-exitcode"][..],
        ] {
            let out = self.run(args);
            if out.code != Some(0) {
                return Err(format!("expected an empty plan (exit 0):\n{out}"));
            }
        }
        Ok(())
    }

    /// Removes the local state, so the next apply starts from nothing (used after an emulator reset).
    pub fn forget_state(&self) {
        for file in ["terraform.tfstate", "terraform.tfstate.backup", ".terraform.tfstate.lock.info"] {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
    }
}

impl Running {
    /// The process group id (Terraform's pid).
    pub fn pgid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether Terraform has exited.
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs Terraform and its providers, and reaps Terraform.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_group(child.id());
            let _ = child.wait();
        }
    }

    /// How long it has been running.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for it to end (killing it after `timeout`) and collects what it printed.
    pub fn finish(mut self, timeout: Duration) -> CommandOutput {
        let mut child = self.child.take().expect("finish is called once");
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    kill_group(child.id());
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(25)),
                Err(e) => panic!("waiting for `{}`: {e}", self.command),
            }
        };
        CommandOutput {
            command: self.command.clone(),
            dir: self.dir.clone(),
            code: if timed_out { None } else { status.and_then(|s| s.code()) },
            stdout: self.stdout.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default(),
            stderr: self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default(),
            timed_out,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panics mid-command must not leave Terraform or a provider running.
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            kill_group(child.id());
            let _ = child.wait();
        }
    }
}

/// `panic!` with the whole output unless the command succeeded.
pub trait OkOrPanic {
    /// The output, if the command succeeded.
    fn ok_or_panic(self) -> CommandOutput;
    /// The output, if the command succeeded; else the output as an error.
    fn ok(self) -> Result<CommandOutput, String>;
}

impl OkOrPanic for CommandOutput {
    #[track_caller]
    fn ok_or_panic(self) -> CommandOutput {
        if !self.success() {
            panic!("{self}");
        }
        self
    }

    fn ok(self) -> Result<CommandOutput, String> {
        if self.success() { Ok(self) } else { Err(self.to_string()) }
    }
}

/// An apply that must succeed without any "already exists" error on the way.
pub fn expect_clean_apply(out: CommandOutput) -> Result<CommandOutput, String> {
    let out = out.ok()?;
    let already = Regex::new(r"(?i)already exists|AlreadyExists|Duplicate").expect("valid regex");
    if out.matches(&already) {
        return Err(format!("the apply succeeded but reported an existing object:\n{out}"));
    }
    Ok(out)
}

/// How many of each kind of part a default stack is made of, on the emulator: four security groups, three
/// roles, one file system with an access point each for RabbitMQ and the working folder and a mount target
/// per subnet of the default VPC (three), the database with its subnet group and its RDS-managed secret plus
/// the RabbitMQ secret, three buckets (archive, state, access logs), three repositories, three log groups
/// (the stack's and the two its database's logs go to), the cluster, its launch template and Auto Scaling
/// group, the namespace with three Cloud Map services, and four services with a task
/// definition family each (counted by family, not revision).
pub const EXPECTED_SHAPE: &[(&str, usize)] = &[
    ("AccessPoint", 2),
    ("AutoScalingGroup", 1),
    ("Bucket", 3),
    ("Cluster", 1),
    ("DbInstance", 1),
    ("DbParameterGroup", 1),
    ("DbSubnetGroup", 1),
    ("DiscoveryService", 3),
    ("FileSystem", 1),
    ("InstanceProfile", 1),
    ("LaunchTemplate", 1),
    ("LogGroup", 3),
    ("MountTarget", 3),
    ("Namespace", 1),
    ("Repository", 3),
    ("Role", 6),
    ("Secret", 2),
    ("SecurityGroup", 4),
    ("Service", 4),
    ("TaskDefinition", 4),
    ("VpcEndpoint", 1),
];

/// Kinds whose number is not the stack's to decide: instances come from the Auto Scaling group, snapshots
/// from RDS.
const UNCOUNTED: &[Kind] = &[Kind::Instance, Kind::DbSnapshot];

/// A stack's parts in the emulator, by kind, with their names (listed through the SDK, not the proxy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Kind -> names of the live objects of that kind.
    pub parts: BTreeMap<String, Vec<String>>,
}

impl Shape {
    /// Lists everything of `stack`, plus the mount targets of its file systems.
    pub async fn of(emu: &Emulator, stack: &str) -> Result<Shape, String> {
        let items: Vec<Item> = inventory::stack_items(emu, stack).await.map_err(|e| describe(&*e))?;
        let mut parts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in items.iter().filter(|i| !UNCOUNTED.contains(&i.kind)) {
            let names = parts.entry(format!("{:?}", item.kind)).or_default();
            if item.kind == Kind::TaskDefinition {
                // The part is the family: an update registers a new revision and keeps the previous one
                // ACTIVE (ECS rolls back to it); destroy deregisters them all.
                let family = item.name.rsplit_once(':').map_or(item.name.as_str(), |(f, _)| f).to_string();
                if !names.contains(&family) {
                    names.push(family);
                }
                continue;
            }
            names.push(item.name.clone());
        }
        let systems = emu.efs().describe_file_systems().send().await.map_err(|e| describe(&e))?;
        for fs in systems.file_systems() {
            if fs.creation_token() != format!("datavault-{stack}") {
                continue;
            }
            let targets = emu
                .efs()
                .describe_mount_targets()
                .file_system_id(fs.file_system_id())
                .send()
                .await
                .map_err(|e| describe(&e))?;
            for target in targets.mount_targets() {
                parts.entry("MountTarget".into()).or_default().push(format!(
                    "{} in {}",
                    target.mount_target_id(),
                    target.subnet_id()
                ));
            }
        }
        for names in parts.values_mut() {
            names.sort();
        }
        Ok(Shape { parts })
    }

    /// Kind -> count.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.parts.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    }

    /// What is wrong with this shape against `expected` counts: missing parts, extra parts (orphans or
    /// duplicates), and the same name twice.
    pub fn problems(&self, expected: &BTreeMap<String, usize>) -> Vec<String> {
        let mut problems = Vec::new();
        let counts = self.counts();
        for (kind, want) in expected {
            let have = counts.get(kind).copied().unwrap_or(0);
            if have != *want {
                problems.push(format!(
                    "{kind}: {have} instead of {want}: {:?}",
                    self.parts.get(kind).cloned().unwrap_or_default()
                ));
            }
        }
        for (kind, names) in &self.parts {
            if !expected.contains_key(kind) {
                problems.push(format!("{kind}: unexpected {names:?}"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for name in names {
                if !seen.insert(name) {
                    problems.push(format!("{kind}: {name} exists twice"));
                }
            }
        }
        problems
    }

    /// One line: `Kind n, Kind n, ...`.
    pub fn summary(&self) -> String {
        self.counts().iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    }
}

/// [`EXPECTED_SHAPE`] as a map.
pub fn expected_shape() -> BTreeMap<String, usize> {
    EXPECTED_SHAPE.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// What destroy left of `stack` apart from its state bucket and database snapshots (listed through the
/// SDK): the orphans.
pub async fn orphans(emu: &Emulator, stack: &str) -> Result<Vec<String>, String> {
    let items = inventory::list(emu).await.map_err(|e| describe(&*e))?;
    Ok(inventory::leftovers(&items, stack, &format!("{stack}-state")).iter().map(|i| i.to_string()).collect())
}

/// The value of `path` (dotted) in the `values` of [`ADDR`] in a `terraform show -json` document.
pub fn value<'a>(state: &'a Value, path: &str) -> Option<&'a Value> {
    datavault_acceptance_tests::attr(state, ADDR, path)
}

/// Whether [`ADDR`] is tainted in a `terraform show -json` state.
pub fn tainted(state: &Value) -> bool {
    datavault_acceptance_tests::resource(state, ADDR).and_then(|r| r.get("tainted")).and_then(Value::as_bool)
        == Some(true)
}

/// Formats a duration in seconds with one decimal.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
