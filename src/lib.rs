//! terraform-provider-datavault: a Terraform provider that deploys and manages a DataVault research-data
//! archive on AWS through one resource, `datavault_stack`.
//!
//! # Layout
//! Data flows one way, Terraform -> protocol server -> framework -> stack resource -> AWS:
//! - [`plugin`]: the protocol server (go-plugin handshake, mutual TLS, gRPC services, hclog logging);
//! - [`framework`]: schemas, dynamic values, diagnostics and generic planning, protocol-agnostic;
//! - [`provider`]: the `provider "datavault"` configuration and the AWS clients it builds;
//! - [`stack`]: the `datavault_stack` resource, a graph of parts with ensure / observe / remove;
//! - [`aws`]: one small module per AWS service with idempotent ensure / describe / delete functions.

pub mod aws;
pub mod framework;
pub mod plugin;
pub mod provider;
pub mod stack;

/// The provider's registry address, used in debug mode's reattach instructions.
pub const REGISTRY_ADDRESS: &str = "registry.terraform.io/datavault/datavault";
