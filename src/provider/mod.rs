//! The `datavault` provider: its configuration, and the AWS context it hands to the stack resource.
//!
//! Configuration follows hashicorp/aws: anything left unset falls back to the standard AWS environment
//! variables and shared files through `aws-config`, so a profile with `role_arn` + `source_profile`, SSO,
//! web identity and `AWS_ENDPOINT_URL[_<SERVICE>]` all work the way they do for the AWS CLI.

mod config;

pub use config::build as build_aws_context;
pub mod schema;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::aws::AwsContext;
use crate::framework::{Diagnostics, Provider, RequestContext, Resource, Schema, Value};

/// The configured AWS context, shared between the provider and its resources. Empty until Terraform has
/// called ConfigureProvider.
#[derive(Debug, Default)]
pub struct ProviderData {
    aws: RwLock<Option<Arc<AwsContext>>>,
}

impl ProviderData {
    /// The AWS context, or a diagnostic if the provider has not been configured (e.g. its configuration
    /// depends on values unknown until apply).
    pub fn aws(&self) -> Result<Arc<AwsContext>, Diagnostics> {
        self.aws.read().expect("provider data lock").clone().ok_or_else(|| {
            let mut diags = Diagnostics::new();
            diags.error(
                "Provider Not Configured",
                "The datavault provider has no AWS configuration yet. If the provider block uses values known \
                 only after apply, apply those first (for example with -target).",
            );
            diags
        })
    }
}

/// The provider.
pub struct DataVaultProvider {
    data: Arc<ProviderData>,
}

impl DataVaultProvider {
    /// A provider waiting to be configured.
    pub fn new() -> Self {
        DataVaultProvider { data: Arc::new(ProviderData::default()) }
    }
}

impl Default for DataVaultProvider {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Provider for DataVaultProvider {
    fn type_name(&self) -> &'static str {
        "datavault"
    }

    fn schema(&self) -> Schema {
        schema::provider_schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        config::validate(config)
    }

    async fn configure(&self, ctx: &RequestContext, config: &Value) -> Diagnostics {
        let mut diags = config::validate(config);
        if diags.has_errors() {
            return diags;
        }
        let built = tokio::select! {
            built = config::build(config) => built,
            () = ctx.cancel.cancelled() => {
                diags.error("Configuration Cancelled", "Terraform asked the provider to stop while it was configuring.");
                return diags;
            }
        };
        match built {
            Ok(aws) => *self.data.aws.write().expect("provider data lock") = Some(Arc::new(aws)),
            Err(more) => diags.extend(more),
        }
        diags
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(crate::stack::StackResource::new(self.data.clone()))]
    }
}
