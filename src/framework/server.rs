//! The framework's server: runs the provider and its resources for each protocol call, in
//! framework-native types, and checks what they return the way Terraform will.
//!
//! The protocol layer (`crate::plugin`) decodes wire values into [`Value`]s and calls in here; nothing in
//! this module knows about gRPC.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::diagnostics::{AttributePath, Diagnostics};
use super::plan;
use super::resource::{IdentitySchema, PlannedChange, Provider, RequestContext, Resource, StateResult};
use super::schema::{Attribute, AttributeKind, Schema};
use super::value::Value;

/// The result of planning one resource change.
#[derive(Debug, Clone)]
pub struct PlanOutcome {
    /// The planned new state (null for a destroy).
    pub planned: Value,
    /// Paths whose change forces replacement.
    pub requires_replace: Vec<AttributePath>,
    /// What happened.
    pub diagnostics: Diagnostics,
}

/// The oldest Terraform this framework's schemas work with. Terraform 1.0.0-1.0.8 panic in core
/// (`objchange.proposedNewNestedType`, hashicorp/terraform#29701) when planning a new resource whose schema
/// has nested attributes, before the provider is asked anything about the resource; configuring the
/// provider is the last point where a clear error can still be given instead of that crash.
pub const MINIMUM_TERRAFORM: (u64, u64, u64) = (1, 0, 9);

/// An error diagnostic when `terraform_version` is older than [`MINIMUM_TERRAFORM`]; `None` for newer
/// versions and for versions that cannot be parsed (a client that does not say is given the benefit of the
/// doubt rather than locked out).
pub fn refuse_old_terraform(terraform_version: &str) -> Option<Diagnostics> {
    let version = parse_version(terraform_version)?;
    if version >= MINIMUM_TERRAFORM {
        return None;
    }
    let (major, minor, patch) = MINIMUM_TERRAFORM;
    let mut diags = Diagnostics::new();
    diags.error(
        format!("Terraform {major}.{minor}.{patch} Or Later Required"),
        format!(
            "This provider needs Terraform {major}.{minor}.{patch} or later; this is Terraform {terraform_version}. \
             Terraform 1.0.0 to 1.0.8 crash while planning resources with nested attributes, which this \
             provider's resources have (hashicorp/terraform#29701). Upgrade Terraform, and consider \
             `required_version = \">= {major}.{minor}.{patch}\"` in the terraform block."
        ),
    );
    Some(diags)
}

/// `MAJOR.MINOR.PATCH` from a Terraform version string such as `1.0.3` or `1.11.0-beta1`.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v').split(['-', '+']).next()?;
    let mut numbers = core.split('.').map(|n| n.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??, numbers.next().unwrap_or(Some(0))?))
}

/// Runs a provider for the protocol layer.
pub struct FrameworkServer {
    provider: Arc<dyn Provider>,
    resources: BTreeMap<&'static str, Arc<dyn Resource>>,
    stop: Mutex<CancellationToken>,
}

impl FrameworkServer {
    /// Wraps a provider.
    pub fn new(provider: Arc<dyn Provider>) -> Self {
        let resources = provider.resources().into_iter().map(|r| (r.type_name(), r)).collect();
        FrameworkServer { provider, resources, stop: Mutex::new(CancellationToken::new()) }
    }

    /// A context for a new request, tied to the current stop signal.
    pub fn context(&self, write_only_allowed: bool) -> RequestContext {
        let cancel = self.stop.lock().expect("stop token lock").clone();
        RequestContext { cancel, write_only_allowed }
    }

    /// Cancels every request in flight. Later requests get a fresh token: StopProvider ends the current
    /// work, it does not end the server.
    pub fn stop(&self) {
        let mut token = self.stop.lock().expect("stop token lock");
        token.cancel();
        *token = CancellationToken::new();
    }

    /// The provider's type name.
    pub fn provider_type_name(&self) -> &'static str {
        self.provider.type_name()
    }

    /// The provider configuration schema.
    pub fn provider_schema(&self) -> Schema {
        self.provider.schema()
    }

    /// Every resource type with its schema.
    pub fn resource_schemas(&self) -> Vec<(&'static str, Schema)> {
        self.resources.iter().map(|(name, r)| (*name, r.schema())).collect()
    }

    /// Every resource type with an identity schema.
    pub fn identity_schemas(&self) -> Vec<(&'static str, IdentitySchema)> {
        self.resources.iter().filter_map(|(name, r)| r.identity_schema().map(|s| (*name, s))).collect()
    }

    /// The identity of the object `state` describes, for a resource type that has identities.
    pub fn identity(&self, type_name: &str, state: Option<&Value>) -> Option<Value> {
        let resource = self.resources.get(type_name)?;
        let schema = resource.identity_schema()?;
        resource.identity(state?).map(|v| v.conform(&schema.value_type())).filter(Value::is_wholly_known)
    }

    /// Upgrades a stored identity to the current identity schema.
    pub fn upgrade_identity(&self, type_name: &str, json: &[u8]) -> StateResult {
        let mut diagnostics = Diagnostics::new();
        let Some(schema) = self.resources.get(type_name).and_then(|r| r.identity_schema()) else {
            diagnostics.error("No Identity Schema", format!("Resource type {type_name:?} has no identity."));
            return StateResult { state: None, diagnostics, private: None };
        };
        match Value::from_json(json) {
            Ok(value) => StateResult { state: Some(value.conform(&schema.value_type())), diagnostics, private: None },
            Err(e) => {
                diagnostics.error("Unreadable Stored Identity", format!("The stored identity is not valid JSON: {e}."));
                StateResult { state: None, diagnostics, private: None }
            }
        }
    }

    /// Imports by identity.
    pub async fn import_by_identity(&self, ctx: &RequestContext, type_name: &str, identity: &Value) -> StateResult {
        match self.resource(type_name) {
            Ok(resource) => {
                let mut result = resource.import_by_identity(ctx, identity).await;
                result.state = result.state.map(|s| s.conform(&resource.schema().value_type()));
                result
            }
            Err(diagnostics) => StateResult { state: None, diagnostics, private: None },
        }
    }

    /// Looks a resource type up, or explains that it does not exist.
    pub fn resource(&self, type_name: &str) -> Result<&Arc<dyn Resource>, Diagnostics> {
        self.resources.get(type_name).ok_or_else(|| {
            let mut diags = Diagnostics::new();
            diags.error(
                "Unknown Resource Type",
                format!(
                    "This provider has no resource type {type_name:?}. This is a bug in Terraform or the provider."
                ),
            );
            diags
        })
    }

    /// Validates the provider configuration.
    pub fn validate_provider(&self, config: &Value) -> Diagnostics {
        self.provider.validate(config)
    }

    /// Configures the provider, first refusing a Terraform too old to plan this framework's schemas.
    /// `terraform_version` is what ConfigureProvider carries (empty from a client that does not say).
    pub async fn configure(&self, ctx: &RequestContext, terraform_version: &str, config: &Value) -> Diagnostics {
        if let Some(diags) = refuse_old_terraform(terraform_version) {
            return diags;
        }
        self.provider.configure(ctx, config).await
    }

    /// Validates one resource configuration. A Terraform without write-only support (< 1.11) would store
    /// write-only values in plan and state, so setting one is refused before anything is planned.
    pub fn validate_resource(&self, type_name: &str, config: &Value, write_only_allowed: bool) -> Diagnostics {
        match self.resource(type_name) {
            Ok(resource) => {
                let mut diags = Diagnostics::new();
                if !write_only_allowed {
                    refuse_write_only(
                        &resource.schema().block.attributes,
                        config,
                        &AttributePath::default(),
                        &mut diags,
                    );
                }
                diags.extend(resource.validate(config));
                diags
            }
            Err(diags) => diags,
        }
    }

    /// Upgrades stored JSON state to the current schema.
    pub fn upgrade_state(&self, type_name: &str, version: i64, json: &[u8]) -> StateResult {
        let resource = match self.resource(type_name) {
            Ok(resource) => resource,
            Err(diagnostics) => return StateResult { state: None, diagnostics, private: None },
        };
        let schema = resource.schema();
        let mut diagnostics = Diagnostics::new();
        if version > schema.version {
            diagnostics.error(
                "State From A Newer Provider",
                format!(
                    "The stored state has schema version {version}, newer than this provider's {}. Upgrade the provider.",
                    schema.version
                ),
            );
            return StateResult { state: None, diagnostics, private: None };
        }
        match Value::from_json(json) {
            Ok(value) => StateResult { state: Some(value.conform(&schema.value_type())), diagnostics, private: None },
            Err(e) => {
                diagnostics.error("Unreadable Stored State", format!("The stored state is not valid JSON: {e}."));
                StateResult { state: None, diagnostics, private: None }
            }
        }
    }

    /// Plans a change: create or update when `proposed` is not null, destroy otherwise. `prior_private` is
    /// what the last read or apply left in the resource's private state.
    pub async fn plan(
        &self,
        ctx: &RequestContext,
        type_name: &str,
        prior: &Value,
        proposed: &Value,
        config: &Value,
        prior_private: &[u8],
    ) -> PlanOutcome {
        let resource = match self.resource(type_name) {
            Ok(resource) => resource,
            Err(diagnostics) => return PlanOutcome { planned: Value::Null, requires_replace: vec![], diagnostics },
        };
        if proposed.is_null() {
            let diagnostics = resource.plan_destroy(ctx, prior).await;
            return PlanOutcome { planned: Value::Null, requires_replace: vec![], diagnostics };
        }
        let schema = resource.schema();
        let generic = plan::plan(&schema, prior, proposed, config);
        let mut change = PlannedChange {
            prior: prior.clone(),
            config: config.clone(),
            planned: generic.planned,
            requires_replace: generic.requires_replace,
            prior_private: prior_private.to_vec(),
        };
        let diagnostics = resource.modify_plan(ctx, &mut change).await;
        let mut requires_replace: Vec<String> = change.requires_replace;
        requires_replace.extend(plan::requires_replace(&schema, prior, &change.planned));
        requires_replace.sort();
        requires_replace.dedup();
        PlanOutcome {
            planned: change.planned.conform(&schema.value_type()),
            requires_replace: requires_replace.iter().map(|name| AttributePath::root(name)).collect(),
            diagnostics,
        }
    }

    /// Applies a planned change. A destroy returns no state; a failed destroy keeps the prior state.
    pub async fn apply(
        &self,
        ctx: &RequestContext,
        type_name: &str,
        prior: &Value,
        planned: &Value,
        config: &Value,
    ) -> StateResult {
        let resource = match self.resource(type_name) {
            Ok(resource) => resource,
            Err(diagnostics) => return StateResult { state: Some(prior.clone()), diagnostics, private: None },
        };
        if planned.is_null() {
            let diagnostics = resource.delete(ctx, prior).await;
            let state = diagnostics.has_errors().then(|| prior.clone());
            return StateResult { state, diagnostics, private: None };
        }
        let mut result = resource.apply(ctx, prior, planned, config).await;
        check_applied_state(&mut result);
        result.state = result.state.map(|s| s.conform(&resource.schema().value_type()));
        result
    }

    /// Refreshes state.
    pub async fn read(&self, ctx: &RequestContext, type_name: &str, state: &Value) -> StateResult {
        match self.resource(type_name) {
            Ok(resource) => {
                let mut result = resource.read(ctx, state).await;
                result.state = result.state.map(|s| s.conform(&resource.schema().value_type()));
                result
            }
            Err(diagnostics) => StateResult { state: Some(state.clone()), diagnostics, private: None },
        }
    }

    /// Imports by id.
    pub async fn import(&self, ctx: &RequestContext, type_name: &str, id: &str) -> StateResult {
        match self.resource(type_name) {
            Ok(resource) => {
                let mut result = resource.import(ctx, id).await;
                result.state = result.state.map(|s| s.conform(&resource.schema().value_type()));
                result
            }
            Err(diagnostics) => StateResult { state: None, diagnostics, private: None },
        }
    }
}

fn refuse_write_only(attributes: &[Attribute], config: &Value, path: &AttributePath, diags: &mut Diagnostics) {
    for attribute in attributes {
        let value = config.get(&attribute.name);
        let here =
            if path.steps.is_empty() { AttributePath::root(&attribute.name) } else { path.attribute(&attribute.name) };
        if attribute.write_only && !value.is_null() {
            diags.attribute_error(
                here.clone(),
                "Write-Only Attribute Needs Terraform 1.11",
                format!(
                    "{here} is write-only: Terraform 1.11 and later send it without storing it. This Terraform would \
                     keep it in plan and state, so it is refused. Upgrade Terraform, or remove {here}."
                ),
            );
        }
        if let AttributeKind::Nested(_, nested) = &attribute.kind {
            refuse_write_only(nested, value, &here, diags);
        }
    }
}

/// Terraform rejects an apply result that is missing or still unknown; say so with a clear diagnostic
/// instead of letting Terraform report a provider bug.
fn check_applied_state(result: &mut StateResult) {
    if result.diagnostics.has_errors() {
        return;
    }
    match &result.state {
        None => result.diagnostics.error(
            "Missing Resource State After Apply",
            "The provider reported success but returned no state. This is a bug in the provider.",
        ),
        Some(state) if !state.is_wholly_known() => result.diagnostics.error(
            "Unknown Values After Apply",
            "The provider returned a state with values still unknown. This is a bug in the provider.",
        ),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Type;

    #[test]
    fn terraform_older_than_the_minimum_is_refused_with_the_reason() {
        let refused = refuse_old_terraform("1.0.3").expect("1.0.3 is too old");
        let text = format!("{refused:?}");
        assert!(text.contains("1.0.9 or later") && text.contains("29701"), "{text}");
        assert!(refuse_old_terraform("0.15.5").is_some());
        for fine in ["1.0.9", "1.1.0", "1.11.0-beta1", "v1.15.5", "2.0", "", "dev"] {
            assert!(refuse_old_terraform(fine).is_none(), "{fine} should be accepted");
        }
    }

    #[test]
    fn write_only_values_are_refused_for_terraform_without_support() {
        let attributes = vec![Attribute::optional_object(
            "database",
            vec![
                Attribute::optional("password_wo", Type::String, "p").write_only(),
                Attribute::optional("size", Type::Number, "s"),
            ],
            "d",
        )];
        let database = |password: Value| {
            Value::Map(
                [(
                    "database".to_string(),
                    Value::Map(
                        [("password_wo".to_string(), password), ("size".to_string(), Value::Number(1.0))].into(),
                    ),
                )]
                .into(),
            )
        };
        let mut diags = Diagnostics::new();
        refuse_write_only(&attributes, &database(Value::string("secret")), &AttributePath::default(), &mut diags);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(diags.0[0].path.as_ref().unwrap().to_string(), "database.password_wo");
        assert!(!diags.0[0].detail.contains("secret"), "the value never appears in a message");
        let mut none = Diagnostics::new();
        refuse_write_only(&attributes, &database(Value::Null), &AttributePath::default(), &mut none);
        assert!(none.0.is_empty());
    }
}
