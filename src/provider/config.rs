//! Turns the provider block into an AWS context: credentials, region, retries, endpoints and tags, then
//! validates the credentials with STS unless told not to.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_runtime::env_config::file::{EnvConfigFileKind as ProfileFileKind, EnvConfigFiles as ProfileFiles};
use aws_sdk_sts::config::retry::{RetryPartition, TokenBucket};

use crate::aws::{AwsContext, partition_of};
use crate::framework::{AttributePath, Diagnostics, Value};

/// Default retries, matching the AWS CLI's standard mode budget closely enough for long applies.
const DEFAULT_MAX_RETRIES: u32 = 10;

/// Checks what can be checked without AWS.
pub fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let access_key = config.get("access_key");
    let secret_key = config.get("secret_key");
    if access_key.is_null() != secret_key.is_null() && !access_key.is_unknown() && !secret_key.is_unknown() {
        let missing = if access_key.is_null() { "access_key" } else { "secret_key" };
        diags.attribute_error(
            AttributePath::root(missing),
            "Incomplete Static Credentials",
            "access_key and secret_key must be set together. Set both, or neither to use the AWS environment, \
             a profile or a role.",
        );
    }
    if let Some(retries) = config.get("max_retries").as_f64()
        && (!(0.0..=100.0).contains(&retries) || retries.fract() != 0.0)
    {
        diags.attribute_error(
            AttributePath::root("max_retries"),
            "Invalid Retry Count",
            format!("max_retries must be a whole number from 0 to 100, not {retries}."),
        );
    }
    if let Some(mode) = config.get("retry_mode").as_str()
        && !matches!(mode, "standard" | "adaptive")
    {
        diags.attribute_error(
            AttributePath::root("retry_mode"),
            "Invalid Retry Mode",
            format!("retry_mode must be \"standard\" or \"adaptive\", not {mode:?}."),
        );
    }
    let duration = config.get("assume_role").get("duration");
    if let Some(text) = duration.as_str()
        && parse_duration(text).is_none()
    {
        diags.attribute_error(
            AttributePath::root("assume_role").attribute("duration"),
            "Invalid Duration",
            format!("{text:?} is not a duration such as \"1h\", \"45m\" or \"900s\" (15m to 12h)."),
        );
    }
    diags
}

/// Parses `1h`, `45m`, `900s` or combinations like `1h30m`, within STS's 15 minutes to 12 hours.
pub fn parse_duration(text: &str) -> Option<Duration> {
    crate::framework::duration::parse(text).filter(|d| (900..=43_200).contains(&d.as_secs()))
}

/// A service client from the shared SDK config, with the `endpoints` override for that service if set and
/// no retry quota (see [`unmetered_retries`]).
macro_rules! client {
    ($crate_name:ident, $sdk:expr, $config:expr, $service:literal) => {{
        let builder = $crate_name::config::Builder::from($sdk).retry_partition(unmetered_retries($service));
        $crate_name::Client::from_conf(with_endpoint(builder, $config, $service, |b, url| b.endpoint_url(url)).build())
    }};
}

/// The retry partition of a client: retries limited by `max_retries` and the backoff only, never by the
/// SDK's retry quota. The quota (500 tokens per service and process, 5 per retried throttling error) is
/// shared by every stack the provider process serves; several stacks planned at once against an account
/// that throttles drain it within a second, and the SDK then fails calls at the first throttling error
/// instead of backing off (terraform-provider-aws turned its Go SDK's equivalent off for the same reason).
/// Adaptive mode still slows the client down as throttling comes back. (Every SDK crate re-exports the same
/// runtime types; STS's are used for all.)
fn unmetered_retries(service: &str) -> RetryPartition {
    RetryPartition::custom(format!("datavault-{service}")).token_bucket(TokenBucket::unlimited()).build()
}

/// Builds the AWS context from the provider block and the environment.
pub async fn build(config: &Value) -> Result<AwsContext, Diagnostics> {
    let sdk = load_sdk_config(config).await?;
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        let mut diags = Diagnostics::new();
        diags.attribute_error(
            AttributePath::root("region"),
            "No AWS Region",
            "The provider found no AWS region. Set region in the provider block, or AWS_REGION in the \
             environment, or a region in your AWS profile.",
        );
        return Err(diags);
    };
    let account_id = if config.get("skip_credentials_validation").as_bool() != Some(true) {
        validate_credentials(&sdk, config).await?
    } else {
        None
    };
    Ok(AwsContext {
        s3: s3_client(&sdk, config),
        ecr: client!(aws_sdk_ecr, &sdk, config, "ecr"),
        logs: client!(aws_sdk_cloudwatchlogs, &sdk, config, "logs"),
        ec2: client!(aws_sdk_ec2, &sdk, config, "ec2"),
        autoscaling: client!(aws_sdk_autoscaling, &sdk, config, "autoscaling"),
        ecs: client!(aws_sdk_ecs, &sdk, config, "ecs"),
        efs: client!(aws_sdk_efs, &sdk, config, "efs"),
        elbv2: client!(aws_sdk_elasticloadbalancingv2, &sdk, config, "elbv2"),
        iam: client!(aws_sdk_iam, &sdk, config, "iam"),
        kms: client!(aws_sdk_kms, &sdk, config, "kms"),
        rds: client!(aws_sdk_rds, &sdk, config, "rds"),
        secrets: client!(aws_sdk_secretsmanager, &sdk, config, "secretsmanager"),
        servicediscovery: client!(aws_sdk_servicediscovery, &sdk, config, "servicediscovery"),
        ssm: client!(aws_sdk_ssm, &sdk, config, "ssm"),
        partition: partition_of(&region).to_string(),
        region,
        default_tags: config.get("default_tags").as_string_map().unwrap_or_default(),
        account_id,
    })
}

fn endpoint<'a>(config: &'a Value, service: &str) -> Option<&'a str> {
    config.get("endpoints").get(service).as_str().filter(|s| !s.is_empty())
}

fn with_endpoint<B>(builder: B, config: &Value, service: &str, set: impl FnOnce(B, &str) -> B) -> B {
    match endpoint(config, service) {
        Some(url) => set(builder, url),
        None => builder,
    }
}

fn s3_client(sdk: &SdkConfig, config: &Value) -> aws_sdk_s3::Client {
    let path_style = config
        .get("s3_use_path_style")
        .as_bool()
        .unwrap_or_else(|| std::env::var("AWS_S3_USE_PATH_STYLE").is_ok_and(|v| v.eq_ignore_ascii_case("true")));
    let builder =
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(path_style).retry_partition(unmetered_retries("s3"));
    aws_sdk_s3::Client::from_conf(with_endpoint(builder, config, "s3", |b, url| b.endpoint_url(url)).build())
}

fn sts_client(sdk: &SdkConfig, config: &Value) -> aws_sdk_sts::Client {
    let builder = aws_sdk_sts::config::Builder::from(sdk).retry_partition(unmetered_retries("sts"));
    aws_sdk_sts::Client::from_conf(with_endpoint(builder, config, "sts", |b, url| b.endpoint_url(url)).build())
}

async fn load_sdk_config(config: &Value) -> Result<SdkConfig, Diagnostics> {
    let retries = config.get("max_retries").as_i64().map_or(DEFAULT_MAX_RETRIES, |n| n as u32);
    let mode = config.get("retry_mode").as_str().map(str::to_string).or_else(|| std::env::var("AWS_RETRY_MODE").ok());
    let retry = match mode.as_deref() {
        Some("adaptive") => RetryConfig::adaptive(),
        _ => RetryConfig::standard(),
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(retry.with_max_attempts(retries + 1))
        .timeout_config(call_timeouts());
    if let Some(region) = config.get("region").as_str() {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(profile) = config.get("profile").as_str() {
        loader = loader.profile_name(profile);
    }
    if let Some(files) = profile_files(config) {
        loader = loader.profile_files(files);
    }
    if let (Some(key), Some(secret)) = (config.get("access_key").as_str(), config.get("secret_key").as_str()) {
        let token = config.get("token").as_str().map(str::to_string);
        loader = loader.credentials_provider(Credentials::new(key, secret, token, None, "datavault-provider-block"));
    }
    let base = loader.load().await;
    let with_web_identity = assume_role_with_web_identity(base, config.get("assume_role_with_web_identity"));
    Ok(assume_role(with_web_identity, config.get("assume_role")).await)
}

/// The HTTPS client for every AWS call (and the credential providers'): rustls with ring, trusting the
/// system's certificate store, as aws-config's default client does.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Bounds on every AWS call, so an endpoint that stops answering fails the call instead of hanging plan or
/// apply: a connection must open within 10 s, one attempt may take a minute (the slowest calls the stack
/// makes, such as deleting a thousand object versions, take seconds), and a call with all its retries five
/// minutes. Waits for AWS to finish something (a database becoming available) are loops of short calls,
/// bounded by the resource's `timeouts`, not by these.
fn call_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .operation_attempt_timeout(Duration::from_secs(60))
        .operation_timeout(Duration::from_secs(300))
        .build()
}

fn profile_files(config: &Value) -> Option<ProfileFiles> {
    let config_files = config.get("shared_config_files").as_string_list().unwrap_or_default();
    let credential_files = config.get("shared_credentials_files").as_string_list().unwrap_or_default();
    if config_files.is_empty() && credential_files.is_empty() {
        return None;
    }
    let mut builder = ProfileFiles::builder();
    if config_files.is_empty() {
        builder = builder.include_default_config_file(true);
    }
    if credential_files.is_empty() {
        builder = builder.include_default_credentials_file(true);
    }
    for file in config_files {
        builder = builder.with_file(ProfileFileKind::Config, expand_home(&file));
    }
    for file in credential_files {
        builder = builder.with_file(ProfileFileKind::Credentials, expand_home(&file));
    }
    Some(builder.build())
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

fn assume_role_with_web_identity(base: SdkConfig, block: &Value) -> SdkConfig {
    let (Some(role_arn), Some(token_file)) =
        (block.get("role_arn").as_str(), block.get("web_identity_token_file").as_str())
    else {
        return base;
    };
    let provider_config = aws_config::provider_config::ProviderConfig::without_region()
        .with_region(base.region().cloned())
        .with_http_client(base.http_client().expect("aws-config always sets an HTTP client"));
    let provider = WebIdentityTokenCredentialsProvider::builder()
        .static_configuration(StaticConfiguration {
            web_identity_token_file: expand_home(token_file).into(),
            role_arn: role_arn.to_string(),
            session_name: block.get("session_name").as_str().unwrap_or("terraform-provider-datavault").to_string(),
        })
        .configure(&provider_config)
        .build();
    base.to_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build()
}

async fn assume_role(base: SdkConfig, block: &Value) -> SdkConfig {
    let Some(role_arn) = block.get("role_arn").as_str() else { return base };
    let mut builder = AssumeRoleProvider::builder(role_arn)
        .session_name(block.get("session_name").as_str().unwrap_or("terraform-provider-datavault"));
    if let Some(external_id) = block.get("external_id").as_str() {
        builder = builder.external_id(external_id);
    }
    if let Some(duration) = block.get("duration").as_str().and_then(parse_duration) {
        builder = builder.session_length(duration);
    }
    let provider = builder.configure(&base).build().await;
    base.to_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build()
}

/// Checks the credentials with STS; returns the account they belong to.
async fn validate_credentials(sdk: &SdkConfig, config: &Value) -> Result<Option<String>, Diagnostics> {
    match sts_client(sdk, config).get_caller_identity().send().await {
        Ok(identity) => {
            tracing::info!(account = identity.account().unwrap_or_default(), "AWS credentials validated");
            Ok(identity.account().map(str::to_string))
        }
        Err(err) => {
            let err = crate::aws::AwsError::from_sdk("GetCallerIdentity", err);
            let mut diags = Diagnostics::new();
            diags.error(
                "Invalid AWS Credentials",
                format!(
                    "The provider could not validate its AWS credentials ({err}). Configure credentials the way the \
                     AWS CLI finds them: `aws configure` or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile \
                     (profile = \"...\" or AWS_PROFILE), or an assume_role block. Check that `aws sts \
                     get-caller-identity` works with the same settings. Set skip_credentials_validation = true \
                     to skip this check."
                ),
            );
            Err(diags)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_sts_limits() {
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5m"), None, "below STS's 15 minute minimum");
        assert_eq!(parse_duration("13h"), None, "above STS's 12 hour maximum");
        assert_eq!(parse_duration("soon"), None);
    }

    #[tokio::test]
    async fn clients_retry_without_a_shared_quota() {
        let config = Value::Map(
            [
                ("region".to_string(), Value::string("eu-west-2")),
                ("access_key".to_string(), Value::string("AKIAEXAMPLE")),
                ("secret_key".to_string(), Value::string("example")),
                ("skip_credentials_validation".to_string(), Value::Bool(true)),
            ]
            .into(),
        );
        let aws = build(&config).await.map_err(|d| format!("{d:?}")).unwrap();
        let partition = aws.iam.config().retry_partition().expect("a retry partition is set").clone();
        assert_eq!(partition.to_string(), "datavault-iam");
        let s3 = aws.s3.config().retry_partition().expect("a retry partition is set").clone();
        assert_eq!(s3.to_string(), "datavault-s3");
    }

    #[test]
    fn static_keys_must_come_in_pairs() {
        let config = Value::Map([("access_key".to_string(), Value::string("AKIA"))].into());
        let diags = validate(&config);
        assert!(diags.has_errors());
        assert_eq!(diags.0[0].path, Some(AttributePath::root("secret_key")));
    }
}
