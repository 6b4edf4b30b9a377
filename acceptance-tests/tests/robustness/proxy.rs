//! Starts `acceptance-tests/fault_proxy.py` between the provider and the emulator, and drives it through
//! its control path (`/__proxy/config`, `/__proxy/stats`, `/__proxy/log`).
//!
//! The proxy is a child process on a free loopback port that it picks itself and announces on its first
//! stdout line; the [`Proxy`] guard kills it by pid when dropped, so a failing test never leaves one behind.

#![allow(dead_code)] // shared by the robustness and bench test binaries, which use different parts

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// The proxy script, beside this package's manifest.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fault_proxy.py")
}

/// A running fault proxy; killed (by pid) when dropped.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// The proxy's counters (`GET /__proxy/stats`).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// AWS requests seen (the emulator's own `/moto-api/` requests are not counted).
    pub total: u64,
    /// AWS requests forwarded to the emulator.
    pub forwarded: u64,
    /// AWS requests that got a fault (latency included).
    pub faulted: u64,
    /// Faults by kind (`throttle`, `500`, `503`, `reset`, `latency`, `rule:<code>`).
    pub by_kind: BTreeMap<String, u64>,
    /// Requests by action.
    pub by_action: BTreeMap<String, u64>,
    /// Whether the frozen request's answer came back from the emulator.
    pub freeze_committed: bool,
    /// Requests held by the freeze.
    pub held: u64,
    /// The action of the frozen request, once it arrived.
    pub freeze_action: Option<String>,
}

impl Stats {
    /// The faults as `kind n, kind n` (or `none`).
    pub fn faults(&self) -> String {
        if self.by_kind.is_empty() {
            return "none".into();
        }
        self.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    }
}

/// One AWS request as the proxy logged it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its number, in arrival order from 1.
    pub n: u64,
    /// The operation (`CreateDBInstance`), or `s3` / `efs` for REST requests.
    pub action: String,
    /// The HTTP method (what tells a REST read from a write).
    pub method: String,
    /// The request path with its query (what tells S3 calls apart: `/bucket?tagging`).
    pub path: String,
    /// The service its signature names (`ec2`, `iam`, `s3`): what the proxy's rate limits are kept per.
    pub service: String,
    /// When it arrived, in seconds since the proxy started.
    pub start: f64,
    /// When the proxy finished with it.
    pub end: f64,
    /// The status sent back, if any.
    pub status: Option<u64>,
    /// The fault injected, if any.
    pub fault: Option<String>,
}

/// Operation name prefixes of calls that only read.
const READ_PREFIXES: [&str; 8] = ["Describe", "Get", "List", "Head", "BatchGet", "Lookup", "Search", "Discover"];

impl Record {
    /// Whether the request could change anything in AWS: a REST request other than GET or HEAD, or an
    /// operation that does not only describe, get or list.
    pub fn is_write(&self) -> bool {
        match self.action.as_str() {
            "s3" | "efs" => !matches!(self.method.as_str(), "GET" | "HEAD"),
            action => !READ_PREFIXES.iter().any(|p| action.starts_with(p)),
        }
    }

    /// Whether the request deletes or takes something away.
    pub fn is_delete(&self) -> bool {
        match self.action.as_str() {
            "s3" | "efs" => self.method == "DELETE",
            action => ["Delete", "Deregister", "Remove", "Revoke", "Terminate", "Detach", "Untag"]
                .iter()
                .any(|p| action.starts_with(p)),
        }
    }
}

/// The writes among `records`, as `#n method action` lines, with the path of REST calls (for messages).
pub fn writes(records: &[Record]) -> Vec<String> {
    let line = |r: &Record| match r.action.as_str() {
        "s3" | "efs" => format!("#{} {} {} {}", r.n, r.method, r.action, r.path),
        action => format!("#{} {} {action}", r.n, r.method),
    };
    records.iter().filter(|r| r.is_write()).map(line).collect()
}

fn http(port: u16, method: &str, path: &str, body: &str) -> Result<Value, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connecting to the fault proxy: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("{method} {path}: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("{method} {path}: {e}"))?;
    let (head, payload) = response.split_once("\r\n\r\n").ok_or_else(|| format!("{method} {path}: {response:?}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{method} {path} answered {response}"));
    }
    serde_json::from_str(payload).map_err(|e| format!("{method} {path}: invalid JSON ({e}): {payload}"))
}

impl Proxy {
    /// Starts the proxy in front of the emulator at `upstream`; its stderr goes to `log`.
    pub fn start(upstream: &str, log: &Path) -> Proxy {
        let stderr = std::fs::File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let mut child = Command::new("python3")
            .arg(script())
            .args(["--upstream", upstream])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script().display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|line| line.trim().strip_prefix("PORT ").and_then(|p| p.parse::<u16>().ok()));
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the fault proxy did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
        };
        Proxy { child, port, log: log.to_path_buf() }
    }

    /// The URL to give the provider as `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The proxy's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Merges `patch` into the configuration (see the script's documentation for the keys).
    pub fn configure(&self, patch: Value) -> Value {
        http(self.port, "POST", "/__proxy/config", &patch.to_string()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Back to no faults, no latency, no rules, no freeze (held requests are released), counters zeroed.
    pub fn reset(&self) {
        self.configure(json!({"reset": true}));
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let v = http(self.port, "GET", "/__proxy/stats", "").unwrap_or_else(|e| panic!("{e}"));
        let counts = |key: &str| -> BTreeMap<String, u64> {
            v[key]
                .as_object()
                .map(|m| m.iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect())
                .unwrap_or_default()
        };
        Stats {
            total: v["total"].as_u64().unwrap_or(0),
            forwarded: v["forwarded"].as_u64().unwrap_or(0),
            faulted: v["faulted"].as_u64().unwrap_or(0),
            by_kind: counts("by_kind"),
            by_action: counts("by_action"),
            freeze_committed: v["freeze"]["committed"].as_bool().unwrap_or(false),
            held: v["freeze"]["held"].as_u64().unwrap_or(0),
            freeze_action: v["freeze"]["action"].as_str().map(str::to_string),
        }
    }

    /// The per-request log since the last reset or clear.
    pub fn records(&self) -> Vec<Record> {
        let v = http(self.port, "GET", "/__proxy/log", "").unwrap_or_else(|e| panic!("{e}"));
        let mut records: Vec<Record> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| Record {
                        n: r["n"].as_u64().unwrap_or(0),
                        action: r["action"].as_str().unwrap_or_default().to_string(),
                        method: r["method"].as_str().unwrap_or_default().to_string(),
                        path: r["path"].as_str().unwrap_or_default().to_string(),
                        service: r["service"].as_str().unwrap_or_default().to_string(),
                        start: r["start"].as_f64().unwrap_or(0.0),
                        end: r["end"].as_f64().unwrap_or(0.0),
                        status: r["status"].as_u64(),
                        fault: r["fault"].as_str().map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by_key(|r| r.n);
        records
    }

    /// Zeroes the counters and the log, keeping the configuration.
    pub fn clear(&self) {
        http(self.port, "POST", "/__proxy/clear", "").unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // By pid: the proxy is our own child, nothing else is touched.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
