//! The `datavault` provider: its configuration, and the AWS context it hands to the stack resource.
//!
//! Configuration follows hashicorp/aws: anything left unset falls back to the standard AWS environment
//! variables and shared files through `aws-config`, so a profile with `role_arn` + `source_profile`, SSO,
//! web identity and `AWS_ENDPOINT_URL[_<SERVICE>]` all work the way they do for the AWS CLI.

mod config;

pub use config::build as build_aws_context;
pub mod schema;

use std::sync::Arc;

use async_trait::async_trait;

use crate::aws::AwsContext;
use crate::framework::{Configured, Diagnostics, Provider, RequestContext, Resource, Schema, Value};

/// The AWS context the provider's configuration builds, shared with the stack resource.
pub type SharedAws = Configured<AwsContext>;

/// Why there is no AWS context yet, when a resource asks before ConfigureProvider.
const NOT_CONFIGURED: &str = "The datavault provider has no AWS configuration yet. If the provider block uses values \
                              known only after apply, apply those first (for example with -target).";

/// The provider.
pub struct DataVaultProvider {
    data: Arc<SharedAws>,
}

impl DataVaultProvider {
    /// A provider waiting to be configured.
    pub fn new() -> Self {
        DataVaultProvider { data: Arc::new(Configured::new(NOT_CONFIGURED)) }
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
            Ok(aws) => self.data.set(aws),
            Err(more) => diags.extend(more),
        }
        diags
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(crate::stack::StackResource::new(self.data.clone()))]
    }
}
