//! The protocol server: everything Terraform's plugin client needs to start, reach and stop the provider.
//!
//! - [`handshake`]: the go-plugin environment contract and the handshake line;
//! - [`tls`]: mutual TLS with Terraform's one-off client certificate ([`p521`] checks its signatures);
//! - [`logging`]: hclog-style JSON lines on stderr;
//! - [`go_plugin`]: go-plugin's controller, stdio and broker services;
//! - [`provider_service`] and [`convert`]: the `tfplugin6.Provider` service over the framework server.
//!
//! [`serve`] runs the plugin for Terraform; [`serve_debug`] runs it without Terraform for a debugger, printing
//! the `TF_REATTACH_PROVIDERS` value to use.

pub mod convert;
pub mod go_plugin;
pub mod handshake;
pub mod logging;
pub mod p521;
pub mod proto;
pub mod provider_service;
pub mod tls;

use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, Router};

use crate::framework::Provider;
use crate::framework::server::FrameworkServer;
use proto::go_plugin::{grpc_broker_server, grpc_controller_server, grpc_stdio_server};
use proto::tfplugin6::provider_server::ProviderServer;

/// Terraform may send large states and plans; 256 MiB matches HashiCorp's own provider servers.
const MAX_MESSAGE_SIZE: usize = 256 << 20;

/// Serves the provider to the Terraform process that started it. Returns the process exit code.
pub async fn serve(provider: Arc<dyn Provider>) -> ExitCode {
    let handshake = match handshake::from_env(|key| std::env::var(key).ok()) {
        Ok(handshake) => handshake,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match tls::server_tls(&handshake.client_cert_pem) {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("Cannot set up mutual TLS with Terraform: {message}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match bind(handshake.ports).await {
        Ok(listener) => listener,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("bound listener has an address");
    let shutdown = CancellationToken::new();
    ignore_interrupts(shutdown.clone(), false);
    exit_when_orphaned(shutdown.clone());
    let router = router(provider, shutdown.clone()).await;
    let incoming = accept_tls(listener, TlsAcceptor::from(tls.config), shutdown.clone());

    // Terraform reads this single line, then talks gRPC; nothing else may go to stdout.
    say(&handshake::handshake_line(addr, &tls.certificate_base64));
    tracing::info!(address = %addr, "serving Terraform plugin protocol 6 over mutual TLS");

    match router.serve_with_incoming_shutdown(incoming, shutdown.cancelled()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "plugin server failed");
            ExitCode::FAILURE
        }
    }
}

/// Serves without Terraform (no handshake, no TLS) so a debugger can hold the process; prints the
/// `TF_REATTACH_PROVIDERS` value that points Terraform at it.
pub async fn serve_debug(provider: Arc<dyn Provider>, address: &str) -> ExitCode {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("bound listener has an address");
    let shutdown = CancellationToken::new();
    ignore_interrupts(shutdown.clone(), true);
    let reattach = serde_json::json!({
        address: {
            "Protocol": "grpc",
            "ProtocolVersion": handshake::PROTOCOL_VERSION,
            "Pid": std::process::id(),
            "Test": true,
            "Addr": { "Network": "tcp", "String": addr.to_string() },
        }
    });
    say("Provider started in debug mode. To attach Terraform, set this in the shell running Terraform:\n");
    say(&format!("\tTF_REATTACH_PROVIDERS='{reattach}'\n"));
    say("Press Ctrl-C to stop the provider.");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    match router(provider, shutdown.clone()).await.serve_with_incoming_shutdown(incoming, shutdown.cancelled()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stdout, ignoring a closed pipe: whoever started the plugin may stop reading stdout once
/// it has what it needs, and that must not bring the server down.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn router(provider: Arc<dyn Provider>, shutdown: CancellationToken) -> Router {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // go-plugin's client checks the health of the service named "plugin".
    health_reporter.set_service_status("plugin", tonic_health::ServingStatus::Serving).await;
    let framework = Arc::new(FrameworkServer::new(provider));
    let provider_service = ProviderServer::new(provider_service::ProviderService::new(framework))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(provider_service)
        .add_service(grpc_controller_server::GrpcControllerServer::new(go_plugin::Controller {
            shutdown: shutdown.clone(),
        }))
        .add_service(grpc_stdio_server::GrpcStdioServer::new(go_plugin::Stdio { shutdown: shutdown.clone() }))
        .add_service(grpc_broker_server::GrpcBrokerServer::new(go_plugin::Broker { shutdown }))
}

/// Binds a loopback port inside Terraform's range (or any free port).
async fn bind(ports: Option<(u16, u16)>) -> Result<TcpListener, String> {
    let Some((low, high)) = ports else {
        return TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen on 127.0.0.1: {e}"));
    };
    for port in low..=high {
        if let Ok(listener) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
            return Ok(listener);
        }
    }
    Err(format!("no free port on 127.0.0.1 between PLUGIN_MIN_PORT={low} and PLUGIN_MAX_PORT={high}"))
}

/// Terraform handles Ctrl-C itself and asks the provider to stop through StopProvider, so a plugin must
/// survive the SIGINT its process group receives (as go-plugin plugins do). In debug mode there is no
/// Terraform, and Ctrl-C stops the server.
fn ignore_interrupts(shutdown: CancellationToken, stop_on_interrupt: bool) {
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if stop_on_interrupt {
                shutdown.cancel();
                return;
            }
            tracing::debug!("interrupt received; waiting for Terraform to send StopProvider");
        }
    });
}

/// How often the plugin checks that Terraform is still its parent.
const PARENT_POLL: Duration = Duration::from_secs(1);
/// How long in-flight work gets to end once Terraform is gone, before the process exits regardless.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// Ends the plugin when the Terraform that started it dies without saying so (a crash, SIGKILL, an OOM
/// kill): nobody will ever call or stop this process again, and a provider left running on a CI runner holds
/// memory and AWS credentials. A dead parent shows as re-parenting (to init or a subreaper); where the
/// plugin was started by init to begin with, there is nothing to watch.
fn exit_when_orphaned(shutdown: CancellationToken) {
    let parent = std::os::unix::process::parent_id();
    if parent <= 1 {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PARENT_POLL) => {}
            }
            if std::os::unix::process::parent_id() != parent {
                break;
            }
        }
        tracing::warn!(parent, "Terraform (the parent process) is gone; stopping the plugin");
        shutdown.cancel();
        tokio::time::sleep(ORPHAN_GRACE).await;
        std::process::exit(1);
    });
}

/// Accepts TCP connections and completes each TLS handshake in its own task, so one slow or hostile client
/// cannot hold up the others. Clients that fail mutual TLS are dropped here and never reach gRPC.
fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsConnection, std::io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let Ok((stream, peer)) = accepted else { continue };
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = sender.send(Ok(TlsConnection(tls))).await;
                    }
                    Err(e) => tracing::warn!(peer = %peer, error = %e, "refused a connection that failed mutual TLS"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// A TLS connection that tonic can serve.
pub struct TlsConnection(TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
