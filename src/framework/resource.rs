//! The API a provider and its resources implement, in framework-native types only.
//!
//! Nothing here knows about gRPC or MessagePack: [`super::server`] turns protocol requests into these calls.
//! Every call gets a [`RequestContext`] whose cancellation token fires when Terraform asks the provider to stop.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::diagnostics::Diagnostics;
use super::schema::Schema;
use super::value::Value;

/// What every request carries besides its payload.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Fires when Terraform sends StopProvider (Ctrl-C): in-flight AWS work should end promptly.
    pub cancel: CancellationToken,
    /// Whether this Terraform supports write-only attributes (>= 1.11).
    pub write_only_allowed: bool,
}

/// A provider: its configuration schema, how it configures itself, and its resources.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's type name as used in HCL (`datavault`).
    fn type_name(&self) -> &'static str;

    /// The `provider "..." { }` block's schema.
    fn schema(&self) -> Schema;

    /// Static checks of the provider configuration (values may still be unknown).
    fn validate(&self, config: &Value) -> Diagnostics;

    /// Configures clients from the final provider configuration; called once before resource calls.
    async fn configure(&self, ctx: &RequestContext, config: &Value) -> Diagnostics;

    /// The managed resource types.
    fn resources(&self) -> Vec<std::sync::Arc<dyn Resource>>;
}

/// A plan being prepared for one resource instance. The framework has already applied the generic rules
/// (configuration values, defaults, unknown computed values on create, replacement triggers).
#[derive(Debug, Clone)]
pub struct PlannedChange {
    /// State before the change; null when creating.
    pub prior: Value,
    /// The configuration as written (may contain unknowns).
    pub config: Value,
    /// The planned new state, to adjust.
    pub planned: Value,
    /// Top-level attributes whose change forces replacement.
    pub requires_replace: Vec<String>,
    /// The private state the last read or apply left (empty when none).
    pub prior_private: Vec<u8>,
}

/// The outcome of creating, updating or reading: the state to record (possibly partial) and diagnostics.
#[derive(Debug, Clone, Default)]
pub struct StateResult {
    /// The state Terraform should record; `None` records nothing (or removes the resource on read).
    pub state: Option<Value>,
    /// What happened.
    pub diagnostics: Diagnostics,
    /// The resource's private state for Terraform to keep and hand back on the next plan, read and apply;
    /// `None` keeps what Terraform sent.
    pub private: Option<Vec<u8>>,
}

/// A managed resource type.
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// The resource type name, e.g. `datavault_stack`.
    fn type_name(&self) -> &'static str;

    /// The resource's schema.
    fn schema(&self) -> Schema;

    /// Static checks of one configuration (values may be unknown; check only what is known).
    fn validate(&self, config: &Value) -> Diagnostics;

    /// Resource-specific planning on top of the framework's generic rules.
    async fn modify_plan(&self, ctx: &RequestContext, change: &mut PlannedChange) -> Diagnostics;

    /// Checks before a planned destroy (e.g. data that would block it), reported at plan time.
    async fn plan_destroy(&self, ctx: &RequestContext, prior: &Value) -> Diagnostics;

    /// Creates or updates the resource to match `planned` (prior is null on create). On failure the
    /// returned state must still describe what exists, so nothing is orphaned.
    async fn apply(&self, ctx: &RequestContext, prior: &Value, planned: &Value, config: &Value) -> StateResult;

    /// Deletes the resource.
    async fn delete(&self, ctx: &RequestContext, prior: &Value) -> Diagnostics;

    /// Refreshes state from the real world; `None` when the resource is gone.
    async fn read(&self, ctx: &RequestContext, state: &Value) -> StateResult;

    /// Turns an import id into a minimal state that a following read completes.
    async fn import(&self, ctx: &RequestContext, id: &str) -> StateResult;

    /// The resource identity schema (Terraform >= 1.12), if the resource has one.
    fn identity_schema(&self) -> Option<IdentitySchema> {
        None
    }

    /// The identity of the object a state describes; `None` when it is not wholly known.
    fn identity(&self, _state: &Value) -> Option<Value> {
        None
    }

    /// Turns an identity (from an `import {}` block with `identity = {...}`) into a minimal state.
    async fn import_by_identity(&self, ctx: &RequestContext, identity: &Value) -> StateResult {
        let _ = (ctx, identity);
        let mut diagnostics = Diagnostics::new();
        diagnostics.error("Import By Identity Not Supported", "This resource can only be imported by id.");
        StateResult { state: None, diagnostics, private: None }
    }
}

/// A resource identity schema: the attributes that identify an object, for import and comparisons.
#[derive(Debug, Clone)]
pub struct IdentitySchema {
    /// Bumped when the identity's shape changes.
    pub version: i64,
    /// The identifying attributes.
    pub attributes: Vec<IdentityAttribute>,
}

/// One attribute of an identity.
#[derive(Debug, Clone)]
pub struct IdentityAttribute {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: super::Type,
    /// An identity import must give it.
    pub required_for_import: bool,
    /// An identity import may give it (the provider can fill it in).
    pub optional_for_import: bool,
    /// Markdown description.
    pub description: String,
}

impl IdentitySchema {
    /// The object type of an identity value.
    pub fn value_type(&self) -> super::Type {
        super::Type::Object(self.attributes.iter().map(|a| (a.name.clone(), a.ty.clone())).collect())
    }
}
