//! Rust types and server traits generated from `proto/` at build time.

#![allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]

/// Terraform plugin protocol 6 (`tfplugin6.proto`).
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin's own services: controller, stdio and broker.
pub mod go_plugin {
    tonic::include_proto!("plugin");
}
