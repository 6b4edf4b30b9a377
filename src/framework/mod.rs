//! The provider framework: schemas, dynamic values, diagnostics and the generic planning rules, plus the
//! server that runs a [`Provider`] for the protocol layer.
//!
//! This layer is protocol-agnostic: `crate::plugin` converts wire messages to and from these types, and
//! `crate::provider` / `crate::stack` implement [`Provider`] and [`Resource`] on top of them.

pub mod configured;
pub mod diagnostics;
pub mod duration;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod server;
pub mod types;
pub mod value;

pub use configured::Configured;
pub use diagnostics::{AttributePath, Diagnostic, Diagnostics, Severity};
pub use resource::{IdentityAttribute, IdentitySchema, PlannedChange, Provider, RequestContext, Resource, StateResult};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema};
pub use types::Type;
pub use value::Value;
