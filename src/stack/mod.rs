//! The `datavault_stack` resource: a whole DataVault deployment managed as a graph of parts.
//!
//! - [`schema`]: attributes and static validation;
//! - [`model`]: the desired shape derived from a plan or state (names, tags);
//! - [`parts`]: the part list with ensure / observe / remove for each part;
//! - [`graph`]: the dependency-graph runner (concurrent, stops cleanly on failure or cancellation);
//! - [`plan`], [`apply`], [`read`]: the lifecycle over the parts.

pub mod apply;
pub mod graph;
pub mod model;
pub mod parts;
pub mod plan;
pub mod read;
pub mod schema;

use std::sync::Arc;

use async_trait::async_trait;

use crate::framework::{Diagnostics, PlannedChange, RequestContext, Resource, Schema, StateResult, Value};
use crate::provider::ProviderData;

/// The resource type.
pub struct StackResource {
    data: Arc<ProviderData>,
}

impl StackResource {
    /// A resource using the provider's (eventually configured) AWS context.
    pub fn new(data: Arc<ProviderData>) -> Self {
        StackResource { data }
    }
}

fn failed(diagnostics: Diagnostics, state: Option<&Value>) -> StateResult {
    StateResult { state: state.cloned(), diagnostics }
}

#[async_trait]
impl Resource for StackResource {
    fn type_name(&self) -> &'static str {
        "datavault_stack"
    }

    fn schema(&self) -> Schema {
        schema::stack_schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        schema::validate(config)
    }

    async fn modify_plan(&self, _ctx: &RequestContext, change: &mut PlannedChange) -> Diagnostics {
        let mut diagnostics = schema::validate(&change.config);
        match self.data.aws() {
            Ok(aws) => plan::modify_plan(change, &aws),
            Err(diags) => diagnostics.extend(diags),
        }
        diagnostics
    }

    async fn plan_destroy(&self, _ctx: &RequestContext, prior: &Value) -> Diagnostics {
        match self.data.aws() {
            Ok(aws) => plan::plan_destroy(prior, &aws).await,
            Err(diags) => diags,
        }
    }

    async fn apply(&self, ctx: &RequestContext, _prior: &Value, planned: &Value, _config: &Value) -> StateResult {
        match self.data.aws() {
            Ok(aws) => apply::converge(ctx, &aws, planned).await,
            Err(diags) => failed(diags, None),
        }
    }

    async fn delete(&self, ctx: &RequestContext, prior: &Value) -> Diagnostics {
        match self.data.aws() {
            Ok(aws) => apply::delete(ctx, &aws, prior).await,
            Err(diags) => diags,
        }
    }

    async fn read(&self, ctx: &RequestContext, state: &Value) -> StateResult {
        match self.data.aws() {
            Ok(aws) => read::read(ctx, &aws, state).await,
            Err(diags) => failed(diags, Some(state)),
        }
    }

    async fn import(&self, _ctx: &RequestContext, id: &str) -> StateResult {
        read::import_state(id)
    }
}
