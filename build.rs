//! Compiles the vendored protocol definitions in `proto/` into Rust gRPC server code.
//!
//! `protox` parses the `.proto` files in pure Rust, so building the provider needs no system `protoc`.
//! Only server stubs are generated: Terraform is always the client.

use std::io;

const PROTOS: &[&str] =
    &["proto/tfplugin6.proto", "proto/grpc_controller.proto", "proto/grpc_stdio.proto", "proto/grpc_broker.proto"];

fn main() -> io::Result<()> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"]).map_err(io::Error::other)?;
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds(descriptors)
}
