//! The plugin as Terraform's go-plugin client sees it: run the real binary, read its handshake line, and
//! speak gRPC to it over mutual TLS, with and without the certificate Terraform would announce.
//!
//! gRPC calls are made by hand over HTTP/2 (a five-byte frame header plus a protobuf message), so the test
//! depends on nothing of the server's own code.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

const BINARY: &str = env!("CARGO_BIN_EXE_terraform-provider-datavault");
const COOKIE: (&str, &str) =
    ("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2");

/// A client identity like the one go-plugin generates (ECDSA P-521, self-signed).
struct Identity {
    cert_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity() -> Identity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Identity {
        cert_pem: cert.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    }
}

struct Plugin {
    child: Child,
    addr: SocketAddr,
    server_cert: CertificateDer<'static>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_plugin(client: &Identity) -> Plugin {
    let mut child = Command::new(BINARY)
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_MIN_PORT", "42100")
        .env("PLUGIN_MAX_PORT", "42400")
        .env("PLUGIN_CLIENT_CERT", &client.cert_pem)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let fields: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(fields.len(), 6, "handshake line: {line:?}");
    assert_eq!(&fields[..3], ["1", "6", "tcp"]);
    assert_eq!(fields[4], "grpc");
    let addr: SocketAddr = fields[3].parse().unwrap();
    assert!(addr.ip().is_loopback());
    assert!((42100..=42400).contains(&addr.port()), "port {} outside PLUGIN_MIN_PORT..PLUGIN_MAX_PORT", addr.port());
    let der = base64::engine::general_purpose::STANDARD_NO_PAD.decode(fields[5]).unwrap();
    Plugin { child, addr, server_cert: CertificateDer::from(der) }
}

/// Trusts exactly the certificate printed in the handshake, as go-plugin does.
#[derive(Debug)]
struct PinnedServer(CertificateDer<'static>);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        assert_eq!(end_entity.as_ref(), self.0.as_ref(), "server presented another certificate");
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &provider().signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &provider().signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn client_config(plugin: &Plugin, identity: Option<&Identity>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer(plugin.server_cert.clone())));
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One unary gRPC call; `Err` carries whatever stopped it (TLS refusal, HTTP/2 error, gRPC status).
async fn grpc_call(
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    path: &str,
    message: &[u8],
) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    match tls {
        Some(config) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            let name = ServerName::try_from("localhost").unwrap();
            let stream = connector.connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
            h2_call(stream, path, message).await
        }
        None => h2_call(tcp, path, message).await,
    }
}

async fn h2_call<T>(io: T, path: &str, message: &[u8]) -> Result<Vec<u8>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(|e| format!("h2 ready: {e}"))?;
    let request = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).map_err(|e| format!("send: {e}"))?;
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    body.send_data(Bytes::from(frame), true).map_err(|e| format!("send body: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let mut data = Vec::new();
    let mut stream = response.into_body();
    while let Some(chunk) = stream.data().await {
        data.extend_from_slice(&chunk.map_err(|e| format!("body: {e}"))?);
    }
    let trailers = stream.trailers().await.map_err(|e| format!("trailers: {e}"))?.unwrap_or_default();
    match trailers.get("grpc-status").map(|v| v.to_str().unwrap_or("?").to_string()) {
        Some(status) if status == "0" => Ok(data.get(5..).unwrap_or_default().to_vec()),
        other => Err(format!("grpc-status {other:?}")),
    }
}

/// `grpc.health.v1.HealthCheckRequest { service: "plugin" }`.
const HEALTH_CHECK_PLUGIN: &[u8] = b"\x0a\x06plugin";
/// `HealthCheckResponse { status: SERVING }`.
const SERVING: &[u8] = b"\x08\x01";

#[tokio::test]
async fn terraform_with_the_announced_certificate_is_served_over_mutual_tls() {
    let client = identity();
    let plugin = start_plugin(&client);
    let tls = client_config(&plugin, Some(&client));
    let reply = grpc_call(plugin.addr, Some(tls.clone()), "/grpc.health.v1.Health/Check", HEALTH_CHECK_PLUGIN).await;
    assert_eq!(reply.as_deref(), Ok(SERVING));
    // GetProviderSchema answers with a schema that names the resource.
    let schema = grpc_call(plugin.addr, Some(tls), "/tfplugin6.Provider/GetProviderSchema", b"").await.unwrap();
    assert!(schema.windows(15).any(|w| w == b"datavault_stack"));
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let client = identity();
    let plugin = start_plugin(&client);
    let reply =
        grpc_call(plugin.addr, Some(client_config(&plugin, None)), "/grpc.health.v1.Health/Check", HEALTH_CHECK_PLUGIN)
            .await;
    assert!(reply.is_err(), "a client without a certificate got an answer: {reply:?}");
}

#[tokio::test]
async fn a_client_with_another_certificate_is_refused() {
    let client = identity();
    let stranger = identity();
    let plugin = start_plugin(&client);
    let tls = client_config(&plugin, Some(&stranger));
    let reply = grpc_call(plugin.addr, Some(tls), "/grpc.health.v1.Health/Check", HEALTH_CHECK_PLUGIN).await;
    assert!(reply.is_err(), "a client with the wrong certificate got an answer: {reply:?}");
}

#[tokio::test]
async fn a_plain_text_client_is_refused() {
    let client = identity();
    let plugin = start_plugin(&client);
    let reply = grpc_call(plugin.addr, None, "/grpc.health.v1.Health/Check", HEALTH_CHECK_PLUGIN).await;
    assert!(reply.is_err(), "a plain-text client got an answer: {reply:?}");
}

#[tokio::test]
async fn stop_provider_leaves_the_server_running_and_shutdown_ends_it() {
    let client = identity();
    let mut plugin = start_plugin(&client);
    let tls = client_config(&plugin, Some(&client));
    grpc_call(plugin.addr, Some(tls.clone()), "/tfplugin6.Provider/StopProvider", b"").await.unwrap();
    let reply = grpc_call(plugin.addr, Some(tls.clone()), "/grpc.health.v1.Health/Check", HEALTH_CHECK_PLUGIN).await;
    assert_eq!(reply.as_deref(), Ok(SERVING), "StopProvider must not stop the server");
    grpc_call(plugin.addr, Some(tls), "/plugin.GRPCController/Shutdown", b"").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(status) = plugin.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the plugin exits after GRPCController.Shutdown");
    assert!(status.success());
}

/// Whether process `pid` has ended: gone, or a zombie nobody reaped yet.
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "PID (comm) S ...".
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

#[test]
fn the_plugin_exits_when_terraform_dies_without_a_word() {
    let client = identity();
    // A shell stands in for Terraform: it starts the plugin in the background, says its pid, and waits.
    let mut terraform = Command::new("sh")
        .args(["-c", "\"$0\" & echo \"pid $!\"; wait", BINARY])
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .env("PLUGIN_CLIENT_CERT", &client.cert_pem)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut pid, mut serving) = (None, false);
    let mut lines = BufReader::new(terraform.stdout.take().unwrap()).lines();
    while pid.is_none() || !serving {
        let line = lines.next().expect("the plugin's pid and handshake").unwrap();
        match line.strip_prefix("pid ") {
            Some(number) => pid = Some(number.trim().parse::<u32>().unwrap()),
            None => serving |= line.starts_with("1|6|tcp|"),
        }
    }
    let pid = pid.unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has_exited(pid), "the plugin must keep serving while Terraform lives");
    terraform.kill().unwrap();
    terraform.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !has_exited(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = has_exited(pid);
    if !exited {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(exited, "the plugin (pid {pid}) was still running 20 s after Terraform died");
}

#[test]
fn run_by_hand_it_explains_itself_and_exits_1() {
    let out = Command::new(BINARY).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Terraform provider plugin"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing may reach stdout without a handshake");
}

#[test]
fn an_incompatible_protocol_version_is_refused() {
    let out = Command::new(BINARY).env(COOKIE.0, COOKIE.1).env("PLUGIN_PROTOCOL_VERSIONS", "5").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("speaks only version 6"));
}

#[tokio::test]
async fn debug_mode_serves_without_terraform_and_prints_reattach_settings() {
    let mut child = Command::new(BINARY).arg("-debug").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let line = reader.lines().map_while(Result::ok).find(|l| l.contains("TF_REATTACH_PROVIDERS=")).unwrap();
    let json = line.split_once('=').unwrap().1.trim().trim_matches('\'');
    let reattach: serde_json::Value = serde_json::from_str(json).unwrap();
    let entry = &reattach["registry.terraform.io/datavault/datavault"];
    assert_eq!(entry["ProtocolVersion"], 6);
    let addr: SocketAddr = entry["Addr"]["String"].as_str().unwrap().parse().unwrap();
    let reply = grpc_call(addr, None, "/grpc.health.v1.Health/Check", HEALTH_CHECK_PLUGIN).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply.as_deref(), Ok(SERVING));
}
