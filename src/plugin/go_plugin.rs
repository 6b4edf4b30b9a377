//! go-plugin's housekeeping services, which Terraform's plugin client expects beside the provider:
//! GRPCController (Terraform asks the plugin to exit), GRPCStdio (stdout/stderr mirroring) and GRPCBroker
//! (extra connections, unused by providers but opened by the client).

use std::pin::Pin;

use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::proto::go_plugin::{self as gp, grpc_broker_server, grpc_controller_server, grpc_stdio_server};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream that yields nothing and ends when the server shuts down, so the client's reader does not see
/// an early end of stream (which it would report as an error).
fn idle_until<T: Send + 'static>(shutdown: CancellationToken) -> BoxStream<T> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<T, Status>>(1);
    tokio::spawn(async move {
        shutdown.cancelled().await;
        drop(sender);
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

/// Shuts the server down when Terraform is done with the plugin.
pub struct Controller {
    /// Fired by `Shutdown`; the server stops serving and the process exits.
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl grpc_controller_server::GrpcController for Controller {
    async fn shutdown(&self, _: Request<gp::Empty>) -> Result<Response<gp::Empty>, Status> {
        tracing::debug!("GRPCController.Shutdown received");
        self.shutdown.cancel();
        Ok(Response::new(gp::Empty {}))
    }
}

/// Mirrors stdout/stderr to Terraform. The provider never writes to stdout after the handshake and logs
/// go to stderr (which go-plugin reads directly), so the stream stays open and empty.
pub struct Stdio {
    /// Ends the stream when the server stops.
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = BoxStream<gp::StdioData>;

    async fn stream_stdio(&self, _: Request<()>) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(idle_until(self.shutdown.clone())))
    }
}

/// go-plugin's connection broker. Providers never dial back, so it only keeps the stream open.
pub struct Broker {
    /// Ends the stream when the server stops.
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl grpc_broker_server::GrpcBroker for Broker {
    type StartStreamStream = BoxStream<gp::ConnInfo>;

    async fn start_stream(
        &self,
        _: Request<Streaming<gp::ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        Ok(Response::new(idle_until(self.shutdown.clone())))
    }
}
