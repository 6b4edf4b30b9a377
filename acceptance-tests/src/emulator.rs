//! A handle on the AWS emulator (moto server) that tests use to look behind Terraform's back: AWS SDK
//! clients pointed at the emulator, its reset endpoint, and a few operations the checks need repeatedly.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use crate::case::CheckError;

/// Region used when `AWS_REGION` is unset; it is also what `make acceptance` exports.
pub const DEFAULT_REGION: &str = "eu-west-2";

/// SDK clients for the services a stack uses, all pointed at the emulator.
///
/// Cheap to clone (the clients share their connection pools), so async checks can take it by value.
#[derive(Clone, Debug)]
pub struct Emulator {
    url: String,
    region: String,
    s3: aws_sdk_s3::Client,
    ecr: aws_sdk_ecr::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    efs: aws_sdk_efs::Client,
    iam: aws_sdk_iam::Client,
    kms: aws_sdk_kms::Client,
    rds: aws_sdk_rds::Client,
    secrets: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    servicediscovery: aws_sdk_servicediscovery::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
}

/// The error code of an SDK error, when the service sent one (`NoSuchTagSet`, `RepositoryNotFoundException`).
pub fn error_code<E: ProvideErrorMetadata>(err: &E) -> Option<&str> {
    err.code()
}

impl Emulator {
    /// Builds clients for the emulator at `url`, with the static `testing` credentials moto accepts.
    ///
    /// Explicit settings rather than the ambient credential chain: a developer's real AWS profile must
    /// never be picked up by a test.
    pub async fn connect(url: &str) -> Emulator {
        let region =
            std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| DEFAULT_REGION.to_string());
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.clone()))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "acceptance-tests"))
            // A wedged emulator should fail a check, not hang the test binary.
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(60)).build())
            .load()
            .await;
        // Path-style addressing: virtual-host style would need DNS for BUCKET.127.0.0.1.
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build();
        Emulator {
            url: url.trim_end_matches('/').to_string(),
            region,
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            ecr: aws_sdk_ecr::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            efs: aws_sdk_efs::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            kms: aws_sdk_kms::Client::new(&sdk),
            rds: aws_sdk_rds::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            servicediscovery: aws_sdk_servicediscovery::Client::new(&sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(&sdk),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
        }
    }

    /// Base URL of the emulator.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Region the clients (and the provider) operate in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// S3 client (path-style addressing).
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// ECR client.
    pub fn ecr(&self) -> &aws_sdk_ecr::Client {
        &self.ecr
    }

    /// CloudWatch Logs client.
    pub fn logs(&self) -> &aws_sdk_cloudwatchlogs::Client {
        &self.logs
    }

    /// EC2 client (security groups, launch templates, the default VPC).
    pub fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }

    /// ECS client.
    pub fn ecs(&self) -> &aws_sdk_ecs::Client {
        &self.ecs
    }

    /// EFS client.
    pub fn efs(&self) -> &aws_sdk_efs::Client {
        &self.efs
    }

    /// IAM client.
    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.iam
    }

    /// AWS KMS.
    pub fn kms(&self) -> &aws_sdk_kms::Client {
        &self.kms
    }

    /// RDS client.
    pub fn rds(&self) -> &aws_sdk_rds::Client {
        &self.rds
    }

    /// Secrets Manager client.
    pub fn secrets(&self) -> &aws_sdk_secretsmanager::Client {
        &self.secrets
    }

    /// Systems Manager client (Parameter Store).
    pub fn ssm(&self) -> &aws_sdk_ssm::Client {
        &self.ssm
    }

    /// Cloud Map (service discovery) client.
    pub fn servicediscovery(&self) -> &aws_sdk_servicediscovery::Client {
        &self.servicediscovery
    }

    /// EC2 Auto Scaling client.
    pub fn autoscaling(&self) -> &aws_sdk_autoscaling::Client {
        &self.autoscaling
    }

    /// Elastic Load Balancing v2 client (the optional public load balancer, its target group and listeners).
    pub fn elbv2(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        &self.elbv2
    }

    /// Wipes every resource in the emulator (`POST /moto-api/reset`), so a test starts from nothing.
    ///
    /// Plain blocking HTTP over `std::net`: it is one request to a local plain-HTTP server, not worth an
    /// HTTP client dependency.
    pub fn reset(&self) -> Result<(), String> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| format!("emulator URL {} must start with http://", self.url))?;
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let mut stream = TcpStream::connect(authority)
            .map_err(|e| format!("connecting to the emulator at {}: {e} (is moto running?)", self.url))?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        let request = format!(
            "POST {base_path}/moto-api/reset HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).map_err(|e| format!("resetting the emulator: {e}"))?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| format!("resetting the emulator: {e}"))?;
        let status_line = response.lines().next().unwrap_or_default();
        match status_line.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => {}
            _ => return Err(format!("emulator reset failed: {response}")),
        }
        crate::runtime::block_on(self.like_aws_default_vpc())
    }

    /// Makes the region's default VPC what AWS's is: every real default VPC has an internet gateway, a
    /// `0.0.0.0/0` route to it in its main route table, and default subnets that give instances public
    /// addresses (Amazon VPC User Guide, "Default VPCs"); moto's has no gateway and no route. Without this,
    /// the stack's plan would rightly warn that the instances cannot reach AWS. (scripts/emulator.sh does the
    /// same when it starts the emulator, for the demo.)
    async fn like_aws_default_vpc(&self) -> Result<(), String> {
        let filter = |name: &str, value: &str| aws_sdk_ec2::types::Filter::builder().name(name).values(value).build();
        let vpcs = self.ec2.describe_vpcs().filters(filter("is-default", "true")).send().await;
        let vpcs = vpcs.map_err(|e| format!("DescribeVpcs: {}", describe(&e)))?;
        let Some(vpc) = vpcs.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_string) else { return Ok(()) };
        let igw = self.ec2.create_internet_gateway().send().await;
        let igw = igw.map_err(|e| format!("CreateInternetGateway: {}", describe(&e)))?;
        let igw = igw.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string();
        self.ec2
            .attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc)
            .send()
            .await
            .map_err(|e| format!("AttachInternetGateway: {}", describe(&e)))?;
        let tables = self
            .ec2
            .describe_route_tables()
            .filters(filter("vpc-id", &vpc))
            .filters(filter("association.main", "true"))
            .send()
            .await
            .map_err(|e| format!("DescribeRouteTables: {}", describe(&e)))?;
        let main = tables.route_tables().first().and_then(|t| t.route_table_id()).ok_or("no main route table")?;
        self.ec2
            .create_route()
            .route_table_id(main)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .map_err(|e| format!("CreateRoute: {}", describe(&e)))?;
        Ok(())
    }

    /// Tags of an S3 bucket; a bucket without a tag set has none.
    pub async fn bucket_tags(&self, bucket: &str) -> Result<BTreeMap<String, String>, CheckError> {
        match self.s3.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => Ok(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()),
            Err(e) if error_code(&e) == Some("NoSuchTagSet") => Ok(BTreeMap::new()),
            Err(e) => Err(format!("GetBucketTagging {bucket}: {}", describe(&e)).into()),
        }
    }

    /// Tags of an ECR repository, by ARN.
    pub async fn repository_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, CheckError> {
        let out = self
            .ecr
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| format!("ECR ListTagsForResource {arn}: {}", describe(&e)))?;
        Ok(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
    }

    /// Tags of a log group, by ARN (the form without the trailing `:*`).
    pub async fn log_group_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, CheckError> {
        let arn = arn.strip_suffix(":*").unwrap_or(arn);
        let out = self
            .logs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| format!("Logs ListTagsForResource {arn}: {}", describe(&e)))?;
        Ok(out.tags().cloned().unwrap_or_default().into_iter().collect())
    }

    /// The log group called exactly `name`, if it exists.
    pub async fn log_group(&self, name: &str) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, CheckError> {
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .map_err(|e| format!("DescribeLogGroups {name}: {}", describe(&e)))?;
        Ok(out.log_groups().iter().find(|g| g.log_group_name() == Some(name)).cloned())
    }

    /// Whether the bucket exists.
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool, CheckError> {
        match self.s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if error_code(&e).is_some_and(|c| c == "NotFound" || c == "NoSuchBucket") => Ok(false),
            Err(e) => Err(format!("HeadBucket {bucket}: {}", describe(&e)).into()),
        }
    }

    /// Pushes a minimal image (a manifest with no layers, as `docker push` leaves one) to `repository` as
    /// `tag`; the emulator's ECR keeps it as a real image.
    pub async fn push_image(&self, repository: &str, tag: &str) -> Result<(), CheckError> {
        const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
        self.ecr
            .put_image()
            .repository_name(repository)
            .image_manifest(MANIFEST)
            .image_tag(tag)
            .send()
            .await
            .map_err(|e| format!("PutImage {repository}:{tag}: {}", describe(&e)))?;
        Ok(())
    }

    /// The four DataVault services of cluster `cluster` as (name, desired count, task definition as
    /// `family:revision`), sorted by name.
    pub async fn service_summaries(&self, cluster: &str) -> Result<Vec<(String, i32, String)>, CheckError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(["web", "broker", "worker", "rabbitmq"].map(String::from).to_vec()))
            .send()
            .await
            .map_err(|e| format!("DescribeServices: {}", describe(&e)))?;
        let mut seen: Vec<(String, i32, String)> = out
            .services()
            .iter()
            .map(|s| {
                let td = s.task_definition().unwrap_or_default();
                let family_revision = td.rsplit('/').next().unwrap_or(td).to_string();
                (s.service_name().unwrap_or_default().to_string(), s.desired_count(), family_revision)
            })
            .collect();
        seen.sort();
        Ok(seen)
    }

    /// Puts an object into a bucket whose policy denies plain-HTTP requests.
    ///
    /// The stack's buckets deny `aws:SecureTransport = false` and moto enforces that for object writes,
    /// while the emulator only speaks HTTP. So the policy is saved, removed for the write, and put back
    /// exactly as it was, even when the write fails.
    pub async fn put_object_past_tls_policy(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), CheckError> {
        let policy = match self.s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => out.policy().map(str::to_string),
            Err(e) if error_code(&e) == Some("NoSuchBucketPolicy") => None,
            Err(e) => return Err(format!("GetBucketPolicy {bucket}: {}", describe(&e)).into()),
        };
        if policy.is_some() {
            self.s3
                .delete_bucket_policy()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| format!("DeleteBucketPolicy {bucket}: {}", describe(&e)))?;
        }
        let put = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map_err(|e| format!("PutObject {bucket}/{key}: {}", describe(&e)));
        if let Some(policy) = policy {
            self.s3
                .put_bucket_policy()
                .bucket(bucket)
                .policy(policy)
                .send()
                .await
                .map_err(|e| format!("restoring the policy of {bucket}: {}", describe(&e)))?;
        }
        put?;
        Ok(())
    }
}

/// An error and all its sources on one line.
///
/// The SDK's own `Display` says little more than "service error"; the code and message the emulator
/// sent are further down the source chain.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("service error")
        }
    }
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("NoSuchBucket: the bucket does not exist")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Inner {}

    #[test]
    fn describe_walks_the_source_chain() {
        assert_eq!(describe(&Outer(Inner)), "service error: NoSuchBucket: the bucket does not exist");
    }
}
