//! The `datavault_stack` resource: a whole DataVault deployment managed as a graph of parts.
//!
//! - [`schema`]: attributes and their defaults;
//! - [`validation`]: static checks of a configuration, with attribute paths;
//! - [`checks`]: plan-time checks that ask AWS (read-only), for a new stack or a changed setting;
//! - [`model`]: the desired shape derived from a plan or state (names, tags);
//! - [`service`]: the four DataVault services as a type;
//! - [`parts`]: the part list with ensure / observe / remove for each part;
//! - [`ownership`]: which resources are the stack's own (its tags), and the conflicts with those that are not;
//! - [`survey`]: observing every part and sorting what exists into own parts and look-alikes;
//! - [`guard`]: what must hold before any part is deleted;
//! - [`graph`]: the dependency-graph runner (concurrent, stops cleanly on failure or cancellation);
//! - [`outcome`]: how a walk over the graph that did not finish is told to the user;
//! - [`plan`], [`apply`], [`read`]: the lifecycle over the parts.

pub mod apply;
pub mod checks;
pub mod graph;
pub mod guard;
pub mod model;
pub mod outcome;
pub mod outputs;
pub mod ownership;
pub mod parts;
pub mod plan;
pub mod read;
pub mod schema;
pub mod service;
pub mod survey;
pub mod validation;

use std::sync::Arc;

use async_trait::async_trait;

use crate::aws::AwsContext;
use crate::framework::{
    Configured, Diagnostics, IdentityAttribute, IdentitySchema, PlannedChange, RequestContext, Resource, Schema,
    StateResult, Type, Value,
};

/// The resource type.
pub struct StackResource {
    data: Arc<Configured<AwsContext>>,
}

impl StackResource {
    /// A resource using the provider's (eventually configured) AWS context.
    pub fn new(data: Arc<Configured<AwsContext>>) -> Self {
        StackResource { data }
    }
}

fn failed(diagnostics: Diagnostics, state: Option<&Value>) -> StateResult {
    StateResult { state: state.cloned(), diagnostics, private: None }
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
        validation::validate(config)
    }

    async fn modify_plan(&self, ctx: &RequestContext, change: &mut PlannedChange) -> Diagnostics {
        let mut diagnostics = validation::validate(&change.config);
        match self.data.get() {
            Ok(aws) => diagnostics.extend(plan::modify_plan(ctx, change, &aws).await),
            Err(diags) => diagnostics.extend(diags),
        }
        diagnostics
    }

    async fn plan_destroy(&self, ctx: &RequestContext, prior: &Value) -> Diagnostics {
        match self.data.get() {
            Ok(aws) => plan::plan_destroy(ctx, prior, &aws).await,
            Err(diags) => diags,
        }
    }

    async fn apply(&self, ctx: &RequestContext, prior: &Value, planned: &Value, config: &Value) -> StateResult {
        match self.data.get() {
            Ok(aws) => apply::converge(ctx, &aws, prior, planned, config).await,
            Err(diags) => failed(diags, None),
        }
    }

    async fn delete(&self, ctx: &RequestContext, prior: &Value) -> Diagnostics {
        match self.data.get() {
            Ok(aws) => apply::delete(ctx, &aws, prior).await,
            Err(diags) => diags,
        }
    }

    async fn read(&self, ctx: &RequestContext, state: &Value) -> StateResult {
        match self.data.get() {
            Ok(aws) => read::read(ctx, &aws, state).await,
            Err(diags) => failed(diags, Some(state)),
        }
    }

    async fn import(&self, _ctx: &RequestContext, id: &str) -> StateResult {
        match self.data.get() {
            Ok(aws) => read::import_state(id, &aws.region),
            Err(diags) => failed(diags, None),
        }
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        let attribute = |name: &str, required: bool, description: &str| IdentityAttribute {
            name: name.to_string(),
            ty: Type::String,
            required_for_import: required,
            optional_for_import: !required,
            description: description.to_string(),
        };
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                attribute("name", true, "The stack's name."),
                attribute("region", false, "The stack's AWS region; defaults to the provider's."),
            ],
        })
    }

    fn identity(&self, state: &Value) -> Option<Value> {
        let (name, region) = (state.get("name").as_str()?, state.get("region").as_str()?);
        Some(Value::Map(
            [("name".to_string(), Value::string(name)), ("region".to_string(), Value::string(region))].into(),
        ))
    }

    async fn import_by_identity(&self, _ctx: &RequestContext, identity: &Value) -> StateResult {
        let aws = match self.data.get() {
            Ok(aws) => aws,
            Err(diags) => return failed(diags, None),
        };
        if let Some(region) = identity.get("region").as_str().filter(|r| *r != aws.region) {
            let mut diagnostics = Diagnostics::new();
            diagnostics.error(
                "Identity In Another Region",
                format!("The identity names region {region}, but this provider works in {}. Use a provider configured for {region}.", aws.region),
            );
            return failed(diagnostics, None);
        }
        read::import_state(identity.get("name").as_str().unwrap_or_default(), &aws.region)
    }
}
