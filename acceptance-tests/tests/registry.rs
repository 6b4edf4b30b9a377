//! Installs the provider the way users get a released provider: `scripts/release.sh` packages, checksums and
//! signs it, `scripts/registry.py` serves the result over HTTPS with the provider registry protocol, and a
//! real `terraform init` downloads, verifies and installs it, with no filesystem mirror or dev override in
//! sight. Tampered and wrongly signed releases must be refused; the packed filesystem-mirror layout (for
//! installing without a registry) must work too.
//!
//! Gated on `TF_ACC` like every acceptance test. Needs python3 and openssl (the registry and its throwaway
//! CA) and gpg (release signing); no emulator. The release is made from the provider binary under test
//! (`DATAVAULT_PROVIDER_BIN`) unless `DATAVAULT_RELEASE_BUILD=1` asks release.sh for its own
//! `cargo build --release`, or `DATAVAULT_RELEASE_DIR` names a release directory made earlier.

mod tfexec;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use datavault_acceptance_tests::env::{SKIP_MESSAGE, acceptance_enabled, package_version};
use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use tfexec::{Cli, TestDir, default_terraform, non_empty_var, provider_bin, repo_root, write};

const PROVIDER: &str = "terraform-provider-datavault";
/// A release directory made earlier (`make release`), used as it is instead of running release.sh.
const RELEASE_DIR: &str = "DATAVAULT_RELEASE_DIR";
/// When set, release.sh builds the release binary itself instead of packaging the binary under test.
const RELEASE_BUILD: &str = "DATAVAULT_RELEASE_BUILD";
/// Prefix of the per-process release directories, so stale ones can be recognised and swept.
const RELEASE_PREFIX: &str = "datavault-acc-release-";

/// The files of one release, as `scripts/release.sh` names them.
struct Release {
    dir: PathBuf,
    version: String,
}

impl Release {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{PROVIDER}_{}_{suffix}", self.version))
    }

    fn zip_name(&self) -> String {
        format!("{PROVIDER}_{}_linux_amd64.zip", self.version)
    }

    fn sums(&self) -> PathBuf {
        self.file("SHA256SUMS")
    }

    /// The SHA-256 that SHA256SUMS lists for `name`.
    fn listed_sum(&self, name: &str) -> String {
        let sums = fs::read_to_string(self.sums()).expect("reading SHA256SUMS");
        sums.lines()
            .find_map(|l| l.split_once("  ").filter(|(_, f)| *f == name).map(|(h, _)| h.to_string()))
            .unwrap_or_else(|| panic!("{name} is not listed in SHA256SUMS:\n{sums}"))
    }
}

fn skip() -> bool {
    if acceptance_enabled() {
        return false;
    }
    println!("{SKIP_MESSAGE}");
    true
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Terraform's `h1:` hash of a package holding the single file `name` with `contents`
/// (golang.org/x/mod/sumdb/dirhash Hash1: SHA-256 over "<sha256 hex>  <name>\n" lines, base64).
fn h1_hash(name: &str, contents: &[u8]) -> String {
    use base64::Engine;
    let summary = format!("{}  {name}\n", sha256_hex(contents));
    format!("h1:{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(summary.as_bytes())))
}

/// The one entry of a release zip, read with Python's zipfile (no zip crate needed for one read).
fn zip_entry(zip: &Path) -> (String, Vec<u8>) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\n[n] = z.namelist()\n\
             sys.stdout.buffer.write(n.encode() + b'\\0' + z.read(n))",
        ])
        .arg(zip)
        .output()
        .expect("running python3");
    assert!(out.status.success(), "reading {}: {}", zip.display(), String::from_utf8_lossy(&out.stderr));
    let nul = out.stdout.iter().position(|&b| b == 0).expect("name separator");
    (String::from_utf8_lossy(&out.stdout[..nul]).into_owned(), out.stdout[nul + 1..].to_vec())
}

/// Removes release directories left by test processes that no longer run.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(RELEASE_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok_and(|p| p != std::process::id() && !Path::new("/proc").join(p.to_string()).exists())
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The release every test installs from, made once per process.
fn release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let manifest = fs::read_to_string(repo_root().join("Cargo.toml")).expect("reading Cargo.toml");
        let version = package_version(&manifest).expect("Cargo.toml has a [package] version");
        if let Some(dir) = non_empty_var(RELEASE_DIR) {
            let release = Release { dir: PathBuf::from(dir), version };
            assert!(release.sums().is_file(), "{RELEASE_DIR}: {} not found", release.sums().display());
            return release;
        }
        sweep_stale();
        let dir = std::env::temp_dir().join(format!("{RELEASE_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the release dir");
        let mut cmd = Command::new(repo_root().join("scripts/release.sh"));
        cmd.env("DIST_DIR", &dir).env_remove("VERSION").env_remove("RELEASE_TARGETS");
        // Always a throwaway key: a developer's GPG_* settings must never sign test artefacts.
        for var in ["GPG_FINGERPRINT", "GPG_PRIVATE_KEY", "GPG_PASSPHRASE", "RELEASE_BINARY"] {
            cmd.env_remove(var);
        }
        if non_empty_var(RELEASE_BUILD).is_none() {
            cmd.env("RELEASE_BINARY", provider_bin());
        }
        let started = Instant::now();
        let out = cmd.stdin(Stdio::null()).output().expect("running scripts/release.sh");
        assert!(
            out.status.success(),
            "scripts/release.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("release {version} made in {:.1}s in {}", started.elapsed().as_secs_f64(), dir.display());
        Release { dir, version }
    })
}

/// `scripts/registry.py` serving a release directory; killed when dropped, also when a test panics.
struct Registry {
    child: Child,
    host: String,
    ca_file: PathBuf,
    log: PathBuf,
}

impl Registry {
    fn start(dist: &Path, work: &Path) -> Registry {
        let log = work.join("registry.log");
        let mut child = Command::new("python3")
            .arg(repo_root().join("scripts/registry.py"))
            .arg("--dist")
            .arg(dist)
            .arg("--tls-dir")
            .arg(work.join("tls"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("creating the registry log"))
            .spawn()
            .expect("starting scripts/registry.py");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut registry = Registry { child, host: String::new(), ca_file: PathBuf::new(), log };
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("registry.py did not announce itself ({e}): {line:?}\n{}", registry.log_text()));
        registry.host = info["host"].as_str().expect("host").to_string();
        registry.ca_file = PathBuf::from(info["ca_file"].as_str().expect("ca_file"));
        registry
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CLI configuration with nothing but direct installation: no mirror, no dev_overrides, no cache.
const DIRECT_ONLY: &str = "disable_checkpoint = true\n\nprovider_installation {\n  direct {}\n}\n";

/// The configuration every case initialises: the provider from `source` at exactly `version`, configured so
/// that it needs no AWS at all, and no resources.
fn config(source: &str, version: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    datavault = {{\n      source  = \"{source}\"\n      version = \"{version}\"\n    }}\n  }}\n}}\n\nprovider \"datavault\" {{\n  skip_credentials_validation = true\n  region                      = \"eu-west-2\"\n}}\n"
    )
}

/// A working directory with `config`, run by the test's Terraform under `cli_config`.
fn working_dir(work: &Path, cli_config: &str, config: &str) -> Cli {
    let dir = work.join("wd");
    write(&work.join("cli.tfrc"), cli_config);
    write(&dir.join("main.tf"), config);
    Cli::new(default_terraform(), work.join("cli.tfrc"), dir)
}

/// A copy of the release directory that a case may then spoil.
fn copy_release(release: &Release, dest: &Path) {
    fs::create_dir_all(dest).expect("creating the release copy");
    for entry in fs::read_dir(&release.dir).expect("reading the release dir").flatten() {
        fs::copy(entry.path(), dest.join(entry.file_name())).expect("copying a release file");
    }
}

/// The hashes the lock file records for `address`.
fn locked_hashes(cli: &Cli, address: &str, version: &str) -> Vec<String> {
    let lock = fs::read_to_string(cli.dir().join(".terraform.lock.hcl")).expect("init wrote .terraform.lock.hcl");
    let block = lock
        .split_once(&format!("provider \"{address}\" {{"))
        .map(|(_, rest)| rest.split_once("\n}").map_or(rest, |(b, _)| b))
        .unwrap_or_else(|| panic!("no provider \"{address}\" block in the lock file:\n{lock}"));
    let version_line = Regex::new(&format!(r#"(?m)^\s*version\s*=\s*"{}"$"#, regex::escape(version))).unwrap();
    assert!(version_line.is_match(block), "lock file does not pin {address} to {version}:\n{lock}");
    Regex::new(r#""((?:h1|zh):[^"]+)""#).unwrap().captures_iter(block).map(|c| c[1].to_string()).collect()
}

/// The installed executable, as `terraform init` unpacked it into the working directory.
fn installed_binary(cli: &Cli, address: &str, version: &str) -> Vec<u8> {
    let path = cli.dir().join(format!(".terraform/providers/{address}/{version}/linux_amd64/{PROVIDER}_v{version}"));
    fs::read(&path).unwrap_or_else(|e| panic!("init did not install {}: {e}", path.display()))
}

fn assert_no_provider_installed(cli: &Cli) {
    let providers = cli.dir().join(".terraform/providers");
    let installed: Vec<_> = walk(&providers).into_iter().filter(|p| p.is_file()).collect();
    assert!(installed.is_empty(), "a refused package must not be installed, found {installed:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn installs_from_a_registry_with_verified_checksums_and_signature() {
    if skip() {
        return;
    }
    let release = release();
    let work = TestDir::new("datavault-acc-registry-");
    let registry = Registry::start(&release.dir, work.path());
    let address = format!("{}/datavault/datavault", registry.host);
    let cli = working_dir(work.path(), DIRECT_ONLY, &config(&address, &release.version))
        .env("SSL_CERT_FILE", &registry.ca_file);

    let init = cli.run_ok(&["init", "-input=false", "-no-color"]);
    assert!(
        init.stdout.contains(&format!("Installed {address} v{}", release.version)),
        "init did not install the provider from the registry:\n{init}"
    );
    // Terraform went through every step of the protocol, not some local shortcut.
    let log = registry.log_text();
    for request in [
        "GET /.well-known/terraform.json",
        "GET /v1/providers/datavault/datavault/versions",
        &format!("GET /v1/providers/datavault/datavault/{}/download/linux/amd64", release.version),
        &format!("GET /files/{}", release.zip_name()),
        &format!("GET /files/{PROVIDER}_{}_SHA256SUMS ", release.version),
        &format!("GET /files/{PROVIDER}_{}_SHA256SUMS.sig", release.version),
    ] {
        assert!(log.contains(request), "the registry never saw `{request}`:\n{log}");
    }

    // The zip is what SHA256SUMS says, and the lock file records both that checksum (zh:) and the hash of
    // the unpacked package (h1:), which must match the binary inside the zip.
    let zip = fs::read(release.dir.join(release.zip_name())).expect("reading the zip");
    let zip_sum = sha256_hex(&zip);
    assert_eq!(release.listed_sum(&release.zip_name()), zip_sum, "SHA256SUMS lists another checksum for the zip");
    let (entry, binary) = zip_entry(&release.dir.join(release.zip_name()));
    assert_eq!(entry, format!("{PROVIDER}_v{}", release.version), "name of the executable in the zip");
    let hashes = locked_hashes(&cli, &address, &release.version);
    assert!(hashes.contains(&format!("zh:{zip_sum}")), "lock file lacks zh:{zip_sum}: {hashes:?}");
    let h1 = h1_hash(&entry, &binary);
    assert!(hashes.contains(&h1), "lock file lacks {h1} (the unpacked zip): {hashes:?}");
    assert!(installed_binary(&cli, &address, &release.version) == binary, "installed binary differs from the zip's");

    let providers = cli.run_ok(&["providers", "-no-color"]);
    assert!(
        providers.stdout.contains(&format!("provider[{address}] {}", release.version)),
        "`terraform providers` does not list the provider:\n{providers}"
    );
    let version = cli.run_ok(&["version"]);
    assert!(
        version.stdout.contains(&format!("+ provider {address} v{}", release.version)),
        "`terraform version` does not list the provider:\n{version}"
    );

    // The installed binary runs: Terraform reads its schema, validates the provider block, plans.
    cli.run_ok(&["validate", "-no-color"]);
    let schema = cli.run_ok(&["providers", "schema", "-json"]);
    let schema: Value = serde_json::from_str(&schema.stdout).expect("schema JSON");
    assert!(
        schema["provider_schemas"][&address]["resource_schemas"]["datavault_stack"].is_object(),
        "the installed provider does not offer datavault_stack"
    );
    let plan = cli.run_ok(&["plan", "-input=false", "-no-color"]);
    assert!(plan.stdout.contains("No changes"), "plan of a configuration without resources:\n{plan}");
}

#[test]
fn refuses_a_zip_that_does_not_match_its_checksum() {
    if skip() {
        return;
    }
    let release = release();
    let work = TestDir::new("datavault-acc-registry-tampered-");
    let dist = work.path().join("dist");
    copy_release(release, &dist);
    // One byte changed, SHA256SUMS and its signature untouched.
    let zip_path = dist.join(release.zip_name());
    let mut zip = fs::read(&zip_path).expect("reading the zip");
    let middle = zip.len() / 2;
    zip[middle] ^= 0x01;
    fs::write(&zip_path, &zip).expect("writing the tampered zip");

    let registry = Registry::start(&dist, work.path());
    let address = format!("{}/datavault/datavault", registry.host);
    let cli = working_dir(work.path(), DIRECT_ONLY, &config(&address, &release.version))
        .env("SSL_CERT_FILE", &registry.ca_file);
    let init = cli.run(&["init", "-input=false", "-no-color"]);
    if let Err(message) = init.expect_failure(&Regex::new(r"(?i)checksum").unwrap()) {
        panic!("init must refuse a tampered zip: {message}");
    }
    println!("tampered zip refused:\n{}", init.stderr.trim());
    assert_no_provider_installed(&cli);
}

#[test]
fn refuses_checksums_signed_by_another_key() {
    if skip() {
        return;
    }
    let release = release();
    let work = TestDir::new("datavault-acc-registry-badsig-");
    let dist = work.path().join("dist");
    copy_release(release, &dist);
    // Sign the genuine SHA256SUMS with a second throwaway key; the registry still advertises the first.
    let gnupg = work.path().join("gnupg");
    fs::create_dir_all(&gnupg).expect("creating GNUPGHOME");
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--yes", "--no-tty", "--trust-model", "always"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running gpg");
        assert!(out.status.success(), "gpg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    gpg(&["--passphrase", "", "--quick-gen-key", "impostor <impostor@localhost>", "rsa3072", "sign", "never"]);
    let sums = dist.join(format!("{PROVIDER}_{}_SHA256SUMS", release.version));
    let sig = format!("{}.sig", sums.display());
    gpg(&["--local-user", "impostor@localhost", "--detach-sign", "--output", &sig, &sums.display().to_string()]);

    let registry = Registry::start(&dist, work.path());
    let address = format!("{}/datavault/datavault", registry.host);
    let cli = working_dir(work.path(), DIRECT_ONLY, &config(&address, &release.version))
        .env("SSL_CERT_FILE", &registry.ca_file);
    let init = cli.run(&["init", "-input=false", "-no-color"]);
    if let Err(message) = init.expect_failure(&Regex::new(r"(?i)signature").unwrap()) {
        panic!("init must refuse checksums signed by a key the registry does not advertise: {message}");
    }
    println!("foreign signature refused:\n{}", init.stderr.trim());
    assert_no_provider_installed(&cli);
}

#[test]
fn installs_from_a_packed_filesystem_mirror() {
    if skip() {
        return;
    }
    let release = release();
    let work = TestDir::new("datavault-acc-packed-mirror-");
    // The packed layout: HOSTNAME/NAMESPACE/TYPE/terraform-provider-TYPE_VERSION_OS_ARCH.zip, the release zip
    // as it is (what `terraform providers mirror` writes too).
    let mirror = work.path().join("mirror");
    let dest = mirror.join("registry.terraform.io/datavault/datavault").join(release.zip_name());
    fs::create_dir_all(dest.parent().unwrap()).expect("creating the mirror");
    fs::copy(release.dir.join(release.zip_name()), &dest).expect("copying the zip into the mirror");
    let cli_config = format!(
        "disable_checkpoint = true\n\nprovider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/datavault/*\"]\n  }}\n}}\n",
        mirror.display()
    );
    let address = "registry.terraform.io/datavault/datavault";
    let cli = working_dir(work.path(), &cli_config, &config("datavault/datavault", &release.version));

    let init = cli.run_ok(&["init", "-input=false", "-no-color"]);
    assert!(
        init.stdout.contains(&format!("Installed datavault/datavault v{}", release.version)),
        "init did not install the provider from the mirror:\n{init}"
    );
    // A mirror has no signed checksums, so the lock file records only the package hash, which must be the
    // same h1: a registry install records.
    let (entry, binary) = zip_entry(&release.dir.join(release.zip_name()));
    let hashes = locked_hashes(&cli, address, &release.version);
    assert_eq!(hashes, vec![h1_hash(&entry, &binary)], "hashes recorded for a mirror install");
    assert!(installed_binary(&cli, address, &release.version) == binary, "installed binary differs from the zip's");
    cli.run_ok(&["validate", "-no-color"]);
    let version = cli.run_ok(&["version"]);
    assert!(
        version.stdout.contains(&format!("+ provider {address} v{}", release.version)),
        "`terraform version` does not list the provider:\n{version}"
    );
}
