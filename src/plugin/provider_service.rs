//! The `tfplugin6.Provider` gRPC service: decodes each request, runs it on the framework server and encodes
//! the response. One short method per RPC; features this provider does not offer (data sources, functions,
//! ephemeral and list resources, actions, state stores) answer with a clear diagnostic or an empty list.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::{decode, diagnostics, encode, identity_data, identity_schema, schema as wire_schema};
use super::proto::tfplugin6 as tf;
use crate::framework::server::FrameworkServer;
use crate::framework::{Diagnostic, Diagnostics, Type, Value};

/// Serves Terraform's provider RPCs for one framework server.
pub struct ProviderService {
    server: Arc<FrameworkServer>,
    provider_type: Type,
    resource_types: HashMap<String, Type>,
}

type RpcResult<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl ProviderService {
    /// Wraps a framework server, caching the value types needed to decode requests.
    pub fn new(server: Arc<FrameworkServer>) -> Self {
        let provider_type = server.provider_schema().value_type();
        let resource_types =
            server.resource_schemas().into_iter().map(|(name, s)| (name.to_string(), s.value_type())).collect();
        ProviderService { server, provider_type, resource_types }
    }

    fn resource_type(&self, type_name: &str) -> Result<&Type, Diagnostics> {
        self.resource_types.get(type_name).ok_or_else(|| self.server.resource(type_name).err().unwrap_or_default())
    }

    fn capabilities() -> tf::ServerCapabilities {
        tf::ServerCapabilities {
            // PlanResourceChange is called for destroys too, so blocked deletes surface at plan time.
            plan_destroy: true,
            get_provider_schema_optional: false,
            move_resource_state: false,
            generate_resource_config: false,
        }
    }
}

fn write_only_allowed(capabilities: Option<&tf::ClientCapabilities>) -> bool {
    capabilities.is_some_and(|c| c.write_only_attributes_allowed)
}

fn unsupported(what: &str) -> Vec<tf::Diagnostic> {
    diagnostics(
        Diagnostic::error(
            format!("{what} Not Supported"),
            format!("The datavault provider offers no {}. Check the provider documentation.", what.to_lowercase()),
        )
        .into(),
    )
}

#[tonic::async_trait]
impl tf::provider_server::Provider for ProviderService {
    async fn get_metadata(&self, _: Request<tf::get_metadata::Request>) -> RpcResult<tf::get_metadata::Response> {
        let resources = self
            .resource_types
            .keys()
            .map(|name| tf::get_metadata::ResourceMetadata { type_name: name.clone() })
            .collect();
        Ok(Response::new(tf::get_metadata::Response {
            server_capabilities: Some(Self::capabilities()),
            resources,
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<tf::get_provider_schema::Request>,
    ) -> RpcResult<tf::get_provider_schema::Response> {
        let resource_schemas =
            self.server.resource_schemas().iter().map(|(name, s)| (name.to_string(), wire_schema(s))).collect();
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(wire_schema(&self.server.provider_schema())),
            resource_schemas,
            server_capabilities: Some(Self::capabilities()),
            ..Default::default()
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<tf::validate_provider_config::Request>,
    ) -> RpcResult<tf::validate_provider_config::Response> {
        let diags = match decode(request.get_ref().config.as_ref(), &self.provider_type) {
            Ok(config) => self.server.validate_provider(&config),
            Err(diags) => diags,
        };
        Ok(Response::new(tf::validate_provider_config::Response { diagnostics: diagnostics(diags) }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<tf::validate_resource_config::Request>,
    ) -> RpcResult<tf::validate_resource_config::Response> {
        let req = request.get_ref();
        let diags = match self.resource_type(&req.type_name).and_then(|ty| decode(req.config.as_ref(), ty)) {
            Ok(config) => self.server.validate_resource(
                &req.type_name,
                &config,
                write_only_allowed(req.client_capabilities.as_ref()),
            ),
            Err(diags) => diags,
        };
        Ok(Response::new(tf::validate_resource_config::Response { diagnostics: diagnostics(diags) }))
    }

    async fn validate_data_resource_config(
        &self,
        _: Request<tf::validate_data_resource_config::Request>,
    ) -> RpcResult<tf::validate_data_resource_config::Response> {
        Ok(Response::new(tf::validate_data_resource_config::Response { diagnostics: unsupported("Data Sources") }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<tf::upgrade_resource_state::Request>,
    ) -> RpcResult<tf::upgrade_resource_state::Response> {
        let req = request.get_ref();
        let json = req.raw_state.as_ref().map(|r| r.json.as_slice()).unwrap_or_default();
        let result = self.server.upgrade_state(&req.type_name, req.version, json);
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state: result.state.as_ref().map(encode),
            diagnostics: diagnostics(result.diagnostics),
        }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _: Request<tf::get_resource_identity_schemas::Request>,
    ) -> RpcResult<tf::get_resource_identity_schemas::Response> {
        let identity_schemas =
            self.server.identity_schemas().iter().map(|(name, s)| (name.to_string(), identity_schema(s))).collect();
        Ok(Response::new(tf::get_resource_identity_schemas::Response { identity_schemas, diagnostics: vec![] }))
    }

    async fn upgrade_resource_identity(
        &self,
        request: Request<tf::upgrade_resource_identity::Request>,
    ) -> RpcResult<tf::upgrade_resource_identity::Response> {
        let req = request.get_ref();
        let json = req.raw_identity.as_ref().map(|r| r.json.as_slice()).unwrap_or_default();
        let result = self.server.upgrade_identity(&req.type_name, json);
        Ok(Response::new(tf::upgrade_resource_identity::Response {
            upgraded_identity: identity_data(result.state),
            diagnostics: diagnostics(result.diagnostics),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<tf::configure_provider::Request>,
    ) -> RpcResult<tf::configure_provider::Response> {
        let req = request.get_ref();
        let ctx = self.server.context(write_only_allowed(req.client_capabilities.as_ref()));
        let diags = match decode(req.config.as_ref(), &self.provider_type) {
            Ok(config) => self.server.configure(&ctx, &req.terraform_version, &config).await,
            Err(diags) => diags,
        };
        Ok(Response::new(tf::configure_provider::Response { diagnostics: diagnostics(diags) }))
    }

    async fn read_resource(
        &self,
        request: Request<tf::read_resource::Request>,
    ) -> RpcResult<tf::read_resource::Response> {
        let req = request.get_ref();
        let ctx = self.server.context(write_only_allowed(req.client_capabilities.as_ref()));
        let current = match self.resource_type(&req.type_name).and_then(|ty| decode(req.current_state.as_ref(), ty)) {
            Ok(state) => state,
            Err(diags) => {
                return Ok(Response::new(tf::read_resource::Response {
                    new_state: req.current_state.clone(),
                    diagnostics: diagnostics(diags),
                    ..Default::default()
                }));
            }
        };
        let result = self.server.read(&ctx, &req.type_name, &current).await;
        Ok(Response::new(tf::read_resource::Response {
            new_identity: identity_data(self.server.identity(&req.type_name, result.state.as_ref())),
            new_state: Some(encode(result.state.as_ref().unwrap_or(&Value::Null))),
            diagnostics: diagnostics(result.diagnostics),
            private: result.private.unwrap_or_else(|| req.private.clone()),
            ..Default::default()
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<tf::plan_resource_change::Request>,
    ) -> RpcResult<tf::plan_resource_change::Response> {
        let req = request.get_ref();
        let ctx = self.server.context(write_only_allowed(req.client_capabilities.as_ref()));
        let decoded = self.resource_type(&req.type_name).and_then(|ty| {
            Ok((
                decode(req.prior_state.as_ref(), ty)?,
                decode(req.proposed_new_state.as_ref(), ty)?,
                decode(req.config.as_ref(), ty)?,
            ))
        });
        let (prior, proposed, config) = match decoded {
            Ok(values) => values,
            Err(diags) => {
                return Ok(Response::new(tf::plan_resource_change::Response {
                    diagnostics: diagnostics(diags),
                    ..Default::default()
                }));
            }
        };
        let outcome = self.server.plan(&ctx, &req.type_name, &prior, &proposed, &config, &req.prior_private).await;
        // A destroy plans no identity (Terraform allows it to go away with the object).
        let planned_identity = identity_data(self.server.identity(&req.type_name, Some(&outcome.planned)));
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_identity,
            planned_state: Some(encode(&outcome.planned)),
            requires_replace: outcome.requires_replace.iter().map(super::convert::attribute_path).collect(),
            planned_private: req.prior_private.clone(),
            diagnostics: diagnostics(outcome.diagnostics),
            ..Default::default()
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> RpcResult<tf::apply_resource_change::Response> {
        let req = request.get_ref();
        let ctx = self.server.context(true);
        let decoded = self.resource_type(&req.type_name).and_then(|ty| {
            Ok((
                decode(req.prior_state.as_ref(), ty)?,
                decode(req.planned_state.as_ref(), ty)?,
                decode(req.config.as_ref(), ty)?,
            ))
        });
        let (prior, planned, config) = match decoded {
            Ok(values) => values,
            Err(diags) => {
                return Ok(Response::new(tf::apply_resource_change::Response {
                    new_state: req.prior_state.clone(),
                    diagnostics: diagnostics(diags),
                    ..Default::default()
                }));
            }
        };
        let result = self.server.apply(&ctx, &req.type_name, &prior, &planned, &config).await;
        Ok(Response::new(tf::apply_resource_change::Response {
            new_identity: identity_data(self.server.identity(&req.type_name, result.state.as_ref())),
            new_state: Some(encode(result.state.as_ref().unwrap_or(&Value::Null))),
            private: result.private.unwrap_or_else(|| req.planned_private.clone()),
            diagnostics: diagnostics(result.diagnostics),
            ..Default::default()
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<tf::import_resource_state::Request>,
    ) -> RpcResult<tf::import_resource_state::Response> {
        let req = request.get_ref();
        let ctx = self.server.context(write_only_allowed(req.client_capabilities.as_ref()));
        let by_identity = req.identity.as_ref().and_then(|i| i.identity_data.as_ref());
        let result = match (by_identity, self.server.identity_schemas().iter().find(|(n, _)| *n == req.type_name)) {
            (Some(data), Some((_, schema))) if req.id.is_empty() => match decode(Some(data), &schema.value_type()) {
                Ok(identity) => self.server.import_by_identity(&ctx, &req.type_name, &identity).await,
                Err(diags) => crate::framework::StateResult { state: None, diagnostics: diags, private: None },
            },
            _ => self.server.import(&ctx, &req.type_name, &req.id).await,
        };
        let imported_resources = result
            .state
            .iter()
            .map(|state| tf::import_resource_state::ImportedResource {
                type_name: req.type_name.clone(),
                state: Some(encode(state)),
                identity: identity_data(self.server.identity(&req.type_name, Some(state))),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(tf::import_resource_state::Response {
            imported_resources,
            diagnostics: diagnostics(result.diagnostics),
            deferred: None,
        }))
    }

    async fn move_resource_state(
        &self,
        _: Request<tf::move_resource_state::Request>,
    ) -> RpcResult<tf::move_resource_state::Response> {
        Ok(Response::new(tf::move_resource_state::Response {
            diagnostics: unsupported("Moving State From Other Resource Types"),
            ..Default::default()
        }))
    }

    async fn read_data_source(
        &self,
        _: Request<tf::read_data_source::Request>,
    ) -> RpcResult<tf::read_data_source::Response> {
        Ok(Response::new(tf::read_data_source::Response {
            diagnostics: unsupported("Data Sources"),
            ..Default::default()
        }))
    }

    async fn generate_resource_config(
        &self,
        _: Request<tf::generate_resource_config::Request>,
    ) -> RpcResult<tf::generate_resource_config::Response> {
        Ok(Response::new(tf::generate_resource_config::Response {
            diagnostics: unsupported("Configuration Generation"),
            ..Default::default()
        }))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        _: Request<tf::validate_ephemeral_resource_config::Request>,
    ) -> RpcResult<tf::validate_ephemeral_resource_config::Response> {
        Ok(Response::new(tf::validate_ephemeral_resource_config::Response {
            diagnostics: unsupported("Ephemeral Resources"),
        }))
    }

    async fn open_ephemeral_resource(
        &self,
        _: Request<tf::open_ephemeral_resource::Request>,
    ) -> RpcResult<tf::open_ephemeral_resource::Response> {
        Ok(Response::new(tf::open_ephemeral_resource::Response {
            diagnostics: unsupported("Ephemeral Resources"),
            ..Default::default()
        }))
    }

    async fn renew_ephemeral_resource(
        &self,
        _: Request<tf::renew_ephemeral_resource::Request>,
    ) -> RpcResult<tf::renew_ephemeral_resource::Response> {
        Ok(Response::new(tf::renew_ephemeral_resource::Response {
            diagnostics: unsupported("Ephemeral Resources"),
            ..Default::default()
        }))
    }

    async fn close_ephemeral_resource(
        &self,
        _: Request<tf::close_ephemeral_resource::Request>,
    ) -> RpcResult<tf::close_ephemeral_resource::Response> {
        Ok(Response::new(tf::close_ephemeral_resource::Response { diagnostics: unsupported("Ephemeral Resources") }))
    }

    type ListResourceStream = BoxStream<tf::list_resource::Event>;

    async fn list_resource(&self, _: Request<tf::list_resource::Request>) -> RpcResult<Self::ListResourceStream> {
        Err(Status::unimplemented("the datavault provider offers no list resources"))
    }

    async fn validate_list_resource_config(
        &self,
        _: Request<tf::validate_list_resource_config::Request>,
    ) -> RpcResult<tf::validate_list_resource_config::Response> {
        Ok(Response::new(tf::validate_list_resource_config::Response { diagnostics: unsupported("List Resources") }))
    }

    async fn get_functions(&self, _: Request<tf::get_functions::Request>) -> RpcResult<tf::get_functions::Response> {
        Ok(Response::new(tf::get_functions::Response::default()))
    }

    async fn call_function(&self, _: Request<tf::call_function::Request>) -> RpcResult<tf::call_function::Response> {
        Ok(Response::new(tf::call_function::Response {
            result: None,
            error: Some(tf::FunctionError {
                text: "the datavault provider offers no functions".into(),
                function_argument: None,
            }),
        }))
    }

    async fn validate_state_store_config(
        &self,
        _: Request<tf::validate_state_store::Request>,
    ) -> RpcResult<tf::validate_state_store::Response> {
        Ok(Response::new(tf::validate_state_store::Response { diagnostics: unsupported("State Stores") }))
    }

    async fn configure_state_store(
        &self,
        _: Request<tf::configure_state_store::Request>,
    ) -> RpcResult<tf::configure_state_store::Response> {
        Ok(Response::new(tf::configure_state_store::Response {
            diagnostics: unsupported("State Stores"),
            ..Default::default()
        }))
    }

    type ReadStateBytesStream = BoxStream<tf::read_state_bytes::Response>;

    async fn read_state_bytes(
        &self,
        _: Request<tf::read_state_bytes::Request>,
    ) -> RpcResult<Self::ReadStateBytesStream> {
        Err(Status::unimplemented("the datavault provider offers no state stores"))
    }

    async fn write_state_bytes(
        &self,
        _: Request<tonic::Streaming<tf::write_state_bytes::RequestChunk>>,
    ) -> RpcResult<tf::write_state_bytes::Response> {
        Err(Status::unimplemented("the datavault provider offers no state stores"))
    }

    async fn lock_state(&self, _: Request<tf::lock_state::Request>) -> RpcResult<tf::lock_state::Response> {
        Ok(Response::new(tf::lock_state::Response { diagnostics: unsupported("State Stores"), ..Default::default() }))
    }

    async fn unlock_state(&self, _: Request<tf::unlock_state::Request>) -> RpcResult<tf::unlock_state::Response> {
        Ok(Response::new(tf::unlock_state::Response { diagnostics: unsupported("State Stores") }))
    }

    async fn get_states(&self, _: Request<tf::get_states::Request>) -> RpcResult<tf::get_states::Response> {
        Ok(Response::new(tf::get_states::Response { diagnostics: unsupported("State Stores"), ..Default::default() }))
    }

    async fn delete_state(&self, _: Request<tf::delete_state::Request>) -> RpcResult<tf::delete_state::Response> {
        Ok(Response::new(tf::delete_state::Response { diagnostics: unsupported("State Stores") }))
    }

    async fn plan_action(&self, _: Request<tf::plan_action::Request>) -> RpcResult<tf::plan_action::Response> {
        Ok(Response::new(tf::plan_action::Response { diagnostics: unsupported("Actions"), ..Default::default() }))
    }

    type InvokeActionStream = BoxStream<tf::invoke_action::Event>;

    async fn invoke_action(&self, _: Request<tf::invoke_action::Request>) -> RpcResult<Self::InvokeActionStream> {
        Err(Status::unimplemented("the datavault provider offers no actions"))
    }

    async fn validate_action_config(
        &self,
        _: Request<tf::validate_action_config::Request>,
    ) -> RpcResult<tf::validate_action_config::Response> {
        Ok(Response::new(tf::validate_action_config::Response { diagnostics: unsupported("Actions") }))
    }

    async fn stop_provider(&self, _: Request<tf::stop_provider::Request>) -> RpcResult<tf::stop_provider::Response> {
        tracing::info!("StopProvider received: cancelling in-flight operations");
        self.server.stop();
        Ok(Response::new(tf::stop_provider::Response { error: String::new() }))
    }
}
