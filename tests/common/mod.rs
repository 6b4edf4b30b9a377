//! Shared set-up for the service-module tests that talk to the local AWS emulator.
//!
//! They run under `make acceptance` (scripts/with-emulator.sh sets DATAVAULT_EMULATOR_URL and the AWS_*
//! environment). Without an emulator they say so loudly and pass without asserting anything.

#![allow(dead_code)]

use terraform_provider_datavault::aws::AwsContext;
use terraform_provider_datavault::framework::Value;

/// An AWS context pointed at the emulator through the standard AWS environment, or `None` (with a loud
/// SKIPPED line) when no emulator is running.
pub async fn emulator() -> Option<AwsContext> {
    if std::env::var("DATAVAULT_EMULATOR_URL").is_err() {
        eprintln!("SKIPPED: no emulator (run `make acceptance`, which sets DATAVAULT_EMULATOR_URL)");
        return None;
    }
    terraform_provider_datavault::plugin::tls::install_crypto_provider();
    let config = Value::Map(
        [
            ("region".to_string(), Value::string("eu-west-2")),
            ("skip_credentials_validation".to_string(), Value::Bool(true)),
        ]
        .into(),
    );
    match terraform_provider_datavault::provider::build_aws_context(&config).await {
        Ok(aws) => Some(aws),
        Err(diags) => panic!("cannot build an AWS context for the emulator: {diags:?}"),
    }
}

/// A name unique to this test run, so tests sharing one emulator never collide.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Creates a security group straight through the SDK (a stand-in for what the stack or another team
/// makes); returns its id.
pub async fn create_security_group(ec2: &aws_sdk_ec2::Client, vpc_id: &str, name: &str, description: &str) -> String {
    let out = ec2
        .create_security_group()
        .group_name(name)
        .description(description)
        .vpc_id(vpc_id)
        .send()
        .await
        .expect("CreateSecurityGroup");
    out.group_id().unwrap().to_string()
}

/// A resource as a describe call found it, with its drift from a spec judged as the stack's refresh judges
/// it (describing and judging are separate steps there, so a refresh can describe before it knows the spec).
#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)] // each test binary uses what it needs
pub struct Judged<T> {
    /// What was described.
    pub found: T,
    /// How it differs from the spec.
    pub drift: Vec<String>,
}

impl<T> std::ops::Deref for Judged<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.found
    }
}
