//! Amazon S3: the archive and state buckets, and the bucket the archive's access logs go to.
//!
//! Buckets are created private, versioned, encrypted, without ACLs and reachable only over TLS, and those
//! settings are re-applied on every ensure so out-of-band changes are repaired. Deleting refuses a bucket
//! that still holds data unless the caller explicitly asks to empty it. Server access logs (FSBP S3.9) are
//! delivered by the S3 logging service under a bucket policy, since the buckets have no ACLs.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint, BucketLoggingStatus,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, LoggingEnabled, NoncurrentVersionExpiration, ObjectIdentifier, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};

use super::{AwsError, AwsResult};

/// What a bucket looks like now, and how it differs from the secure settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketObservation {
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Human-readable differences from the managed settings (empty when none).
    pub drift: Vec<String>,
    /// The KMS key of its default encryption, when that is SSE-KMS with a customer key.
    pub kms_key: Option<String>,
}

/// The TLS-only bucket policy (AWS Foundational Security Best Practices S3.5).
pub fn tls_only_policy(partition: &str, bucket: &str) -> String {
    serde_json::json!({ "Version": "2012-10-17", "Statement": [deny_insecure_transport(partition, bucket)] })
        .to_string()
}

fn deny_insecure_transport(partition: &str, bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        // Everyone, in the object form IAM documents as equivalent to "*": some policy readers expect every
        // principal to be an object.
        "Principal": { "AWS": "*" },
        "Action": "s3:*",
        "Resource": [format!("arn:{partition}:s3:::{bucket}"), format!("arn:{partition}:s3:::{bucket}/*")],
        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
    })
}

/// The principal that delivers S3 server access logs.
pub const LOGGING_SERVICE: &str = "logging.s3.amazonaws.com";

/// Where a bucket's access logs go: the log bucket and the key prefix of its logs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The bucket the logs are written to.
    pub bucket: String,
    /// The prefix of the log objects' keys, ending in `/`.
    pub prefix: String,
}

/// Who delivers a region's load balancer access logs, and under which prefix of the log bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerLogs {
    /// The principal, as a bucket policy names it (see `elbv2::log_delivery_principal`).
    pub principal: serde_json::Value,
    /// The load balancer's log prefix.
    pub prefix: String,
}

/// The policy of a bucket receiving server access logs: TLS only, and the S3 logging service may write
/// each source bucket's logs under that bucket's prefix only, on behalf of this account's bucket (the
/// conditions AWS recommends, so no other account's bucket can log into it).
/// Without the account (when it is not known), the source bucket's ARN alone pins the writer: bucket names
/// are global.
pub fn access_log_policy(
    partition: &str,
    log_bucket: &str,
    sources: &[(&str, &LogTarget)],
    load_balancer: Option<&LoadBalancerLogs>,
    account: Option<&str>,
) -> String {
    let mut statements = vec![deny_insecure_transport(partition, log_bucket)];
    if let Some(lb) = load_balancer {
        // Load balancers write under `<prefix>/AWSLogs/<their account>/`: this account's only.
        let owner = account.unwrap_or("*");
        statements.push(serde_json::json!({
            "Sid": "LoadBalancerAccessLogs",
            "Effect": "Allow",
            "Principal": lb.principal,
            "Action": "s3:PutObject",
            "Resource": format!("arn:{partition}:s3:::{log_bucket}/{}/AWSLogs/{owner}/*", lb.prefix),
        }));
    }
    statements.extend(sources.iter().map(|(source, target)| {
        let mut statement = serde_json::json!({
            "Sid": "ServerAccessLogsOf".to_string() + &source.replace(['-', '.'], ""),
            "Effect": "Allow",
            "Principal": { "Service": LOGGING_SERVICE },
            "Action": "s3:PutObject",
            "Resource": format!("arn:{partition}:s3:::{log_bucket}/{}*", target.prefix),
            "Condition": { "ArnLike": { "aws:SourceArn": format!("arn:{partition}:s3:::{source}") } }
        });
        if let Some(account) = account {
            statement["Condition"]["StringEquals"] = serde_json::json!({ "aws:SourceAccount": account });
        }
        statement
    }));
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

/// Who can use a bucket name, as HeadBucket tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketAccess {
    /// No bucket has the name (in any account): it can be created.
    Absent,
    /// The bucket exists and this account can reach it (whose it is, its tags tell).
    Reachable,
    /// The bucket exists in another account, or this account may not see it.
    Forbidden,
    /// The bucket exists in another region (named when S3 said which).
    ElsewhereIn(Option<String>),
}

/// Which of [`BucketAccess`] a bucket name is in. Reads only.
pub async fn access(client: &Client, bucket: &str) -> AwsResult<BucketAccess> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(BucketAccess::Reachable),
        Err(err) => {
            // A HEAD answer has no body, so S3's error code is missing for anything the SDK does not model
            // (only 404 is): the status and the region header say what happened.
            let raw = err.raw_response();
            let status = raw.map(|r| r.status().as_u16());
            let region = raw.and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_string);
            let err = AwsError::from_sdk("HeadBucket", err);
            if err.is(&["NotFound", "NoSuchBucket"]) || status == Some(404) {
                Ok(BucketAccess::Absent)
            } else if err.is(&["Forbidden", "AccessDenied"]) || status == Some(403) {
                Ok(BucketAccess::Forbidden)
            } else if err.is(&["PermanentRedirect", "MovedPermanently"]) || status == Some(301) || region.is_some() {
                Ok(BucketAccess::ElsewhereIn(region))
            } else {
                Err(err)
            }
        }
    }
}

/// Whether the bucket exists and is this account's to use. A bucket another account owns, or one in
/// another region, is an error that says so.
pub async fn exists(client: &Client, bucket: &str) -> AwsResult<bool> {
    match access(client, bucket).await? {
        BucketAccess::Absent => Ok(false),
        BucketAccess::Reachable => Ok(true),
        BucketAccess::Forbidden => Err(AwsError::other(
            "HeadBucket",
            format!(
                "bucket {bucket} exists but this account cannot access it; S3 bucket names are global, choose another name"
            ),
        )),
        BucketAccess::ElsewhereIn(region) => Err(AwsError::other(
            "HeadBucket",
            format!(
                "bucket {bucket} exists in {}, not in this client's region; choose another name",
                region.as_deref().unwrap_or("another region")
            ),
        )),
    }
}

/// Creates the bucket; `false` when this account already owned one of that name (created meanwhile by
/// someone else, or by an earlier attempt whose answer was lost).
pub async fn create(client: &Client, bucket: &str, region: &str) -> AwsResult<bool> {
    let mut request = client.create_bucket().bucket(bucket).object_ownership(ObjectOwnership::BucketOwnerEnforced);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(true),
        Err(err) => {
            let err = AwsError::from_sdk("CreateBucket", err);
            if err.is(&["BucketAlreadyOwnedByYou"]) {
                Ok(false)
            } else if err.is(&["BucketAlreadyExists"]) {
                Err(AwsError::other(
                    "CreateBucket",
                    format!(
                        "bucket name {bucket} is taken by another AWS account; S3 bucket names are global, choose another name"
                    ),
                ))
            } else {
                Err(err)
            }
        }
    }
}

/// Converges every managed setting: no ACLs, no public access, default encryption (SSE-KMS with a bucket
/// key under `kms_key`, else SSE-S3), versioning and the bucket policy (which must deny insecure
/// transport). The settings are read at once first and only those that differ are written, so an apply
/// that changes nothing here sends one round of reads; `fresh` (a bucket this run just created, with
/// ACLs already off) skips the reads and writes the rest.
pub async fn configure(
    client: &Client,
    bucket: &str,
    policy: &str,
    kms_key: Option<&str>,
    fresh: bool,
) -> AwsResult<()> {
    // What was found: whether ACLs are off, the public access block's and versioning's drift, the default
    // encryption and the policy. A new bucket has ACLs off (CreateBucket set its ownership) and nothing else.
    let (acls_off, public_access, encryption, versioning, current_policy) = if fresh {
        let missing = Some("missing".to_string());
        (true, missing.clone(), None, missing, None)
    } else {
        tokio::try_join!(
            acls_disabled(client, bucket),
            public_access_drift(client, bucket),
            encryption(client, bucket),
            versioning_drift(client, bucket),
            policy_text(client, bucket),
        )?
    };
    if !acls_off {
        client
            .put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(
                OwnershipControls::builder()
                    .rules(
                        OwnershipControlsRule::builder()
                            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                            .build()?,
                    )
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutBucketOwnershipControls", e))?;
    }
    if public_access.is_some() {
        client
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutPublicAccessBlock", e))?;
    }
    if encryption_drift(encryption.as_ref(), kms_key).is_some() {
        client
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(match kms_key {
                                        Some(_) => ServerSideEncryption::AwsKms,
                                        None => ServerSideEncryption::Aes256,
                                    })
                                    .set_kms_master_key_id(kms_key.map(str::to_string))
                                    .build()?,
                            )
                            .bucket_key_enabled(true)
                            .build(),
                    )
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutBucketEncryption", e))?;
    }
    if versioning.is_some() {
        client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutBucketVersioning", e))?;
    }
    if !current_policy.is_some_and(|current| super::iam::same_policy(&current, policy)) {
        client
            .put_bucket_policy()
            .bucket(bucket)
            .policy(policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutBucketPolicy", e))?;
    }
    Ok(())
}

/// Whether the bucket's object ownership is BucketOwnerEnforced, which turns ACLs off (FSBP S3.12).
async fn acls_disabled(client: &Client, bucket: &str) -> AwsResult<bool> {
    match client.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .ownership_controls()
            .is_some_and(|c| c.rules().iter().any(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced))),
        Err(err) => {
            let err = AwsError::from_sdk("GetBucketOwnershipControls", err);
            if err.is(&["OwnershipControlsNotFoundError"]) { Ok(false) } else { Err(err) }
        }
    }
}

/// Gives the bucket the tags of `tags` it lacks. PutBucketTagging replaces the whole set, so the tags it
/// has (`current`) are written back beside them: tags someone else added stay, as with every other part.
pub async fn converge_tags(
    client: &Client,
    bucket: &str,
    tags: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> AwsResult<()> {
    if super::tags_to_write(tags, current).is_empty() {
        return Ok(());
    }
    // Keys under `aws:` are AWS's own (CloudFormation's, say): S3 refuses them in a PutBucketTagging.
    let mut merged: BTreeMap<String, String> =
        current.iter().filter(|(k, _)| !k.starts_with("aws:")).map(|(k, v)| (k.clone(), v.clone())).collect();
    merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    put_tags(client, bucket, &merged).await
}

/// Replaces the bucket's tags.
pub async fn put_tags(client: &Client, bucket: &str, tags: &BTreeMap<String, String>) -> AwsResult<()> {
    let tag_set = super::try_tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())?;
    client
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(Tagging::builder().set_tag_set(Some(tag_set)).build()?)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutBucketTagging", e))?;
    Ok(())
}

/// Takes the tags with these keys off the bucket (keys it does not have are no error): the stack's tags that the
/// configuration no longer has.
/// S3 has no call that removes single tags: the remaining set is written back, or the set deleted.
pub async fn remove_tags(client: &Client, bucket: &str, keys: &[String]) -> AwsResult<()> {
    let current = tags(client, bucket).await?;
    if !keys.iter().any(|k| current.contains_key(k)) {
        return Ok(());
    }
    let remaining: BTreeMap<String, String> =
        current.into_iter().filter(|(k, _)| !keys.contains(k) && !k.starts_with("aws:")).collect();
    if remaining.is_empty() {
        client
            .delete_bucket_tagging()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteBucketTagging", e))?;
        return Ok(());
    }
    put_tags(client, bucket, &remaining).await
}

/// The bucket's tags; empty when it has none.
pub async fn tags(client: &Client, bucket: &str) -> AwsResult<BTreeMap<String, String>> {
    match client.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(super::tag_map(out.tag_set().iter().map(|t| (t.key(), t.value())))),
        Err(err) => {
            let err = AwsError::from_sdk("GetBucketTagging", err);
            if err.is(&["NoSuchTagSet"]) { Ok(BTreeMap::new()) } else { Err(err) }
        }
    }
}

/// The bucket's tags, without judging its settings (what deciding whose it is needs); `None` when it does
/// not exist.
pub async fn find(client: &Client, bucket: &str) -> AwsResult<Option<BTreeMap<String, String>>> {
    let (exists, tags) = tokio::join!(exists(client, bucket), tags(client, bucket));
    if !exists? {
        return Ok(None);
    }
    tags.map(Some)
}

/// Describes the bucket and how it differs from the managed settings (encrypted under `kms_key` when one is
/// given, its policy naming each of `in_policy` besides denying insecure transport); `None` when it does
/// not exist.
pub async fn observe(
    client: &Client,
    bucket: &str,
    kms_key: Option<&str>,
    in_policy: &[&str],
) -> AwsResult<Option<BucketObservation>> {
    // Each setting is its own request; all of them at once, and beside the existence check, so a refresh
    // waits one round trip for them. When the bucket turns out not to exist, their answers are not used.
    let settings = async {
        tokio::try_join!(
            versioning_drift(client, bucket),
            public_access_drift(client, bucket),
            encryption(client, bucket),
            policy_drift(client, bucket, in_policy),
            tags(client, bucket),
        )
    };
    let (exists, settings) = tokio::join!(exists(client, bucket), settings);
    if !exists? {
        return Ok(None);
    }
    let (versioning, public_access, encryption, policy, tags) = settings?;
    let encryption_drift = encryption_drift(encryption.as_ref(), kms_key);
    let drift = [versioning, public_access, encryption_drift, policy].into_iter().flatten().collect();
    let kms_key = encryption.and_then(|e| e.kms_key);
    Ok(Some(BucketObservation { tags, drift, kms_key }))
}

async fn versioning_drift(client: &Client, bucket: &str) -> AwsResult<Option<String>> {
    let versioning = client
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetBucketVersioning", e))?;
    Ok((versioning.status() != Some(&BucketVersioningStatus::Enabled)).then(|| {
        let status = versioning.status().map_or("never enabled", |s| s.as_str());
        format!("versioning is {status}, expected Enabled")
    }))
}

async fn public_access_drift(client: &Client, bucket: &str) -> AwsResult<Option<String>> {
    match client.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => {
            let c = out.public_access_block_configuration();
            let all = c.is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            });
            Ok((!all).then(|| "public access block is not fully enabled".to_string()))
        }
        Err(err) => {
            let err = AwsError::from_sdk("GetPublicAccessBlock", err);
            if !err.is(&["NoSuchPublicAccessBlockConfiguration"]) {
                return Err(err);
            }
            Ok(Some("public access block is missing".to_string()))
        }
    }
}

/// A bucket's default encryption: its algorithm and, for SSE-KMS, its key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DefaultEncryption {
    algorithm: String,
    kms_key: Option<String>,
}

/// The bucket's default encryption; `None` when it has none.
async fn encryption(client: &Client, bucket: &str) -> AwsResult<Option<DefaultEncryption>> {
    match client.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => {
            let rules = out.server_side_encryption_configuration().map(|c| c.rules()).unwrap_or_default();
            let default = rules.iter().find_map(|r| r.apply_server_side_encryption_by_default());
            Ok(Some(DefaultEncryption {
                algorithm: default.map_or("unknown", |d| d.sse_algorithm().as_str()).to_string(),
                kms_key: default.and_then(|d| d.kms_master_key_id()).map(str::to_string),
            }))
        }
        Err(err) => {
            let err = AwsError::from_sdk("GetBucketEncryption", err);
            if !err.is(&["ServerSideEncryptionConfigurationNotFoundError"]) {
                return Err(err);
            }
            Ok(None)
        }
    }
}

/// How the default encryption differs from the stack's: missing, or not under the stack's key.
fn encryption_drift(found: Option<&DefaultEncryption>, kms_key: Option<&str>) -> Option<String> {
    let Some(found) = found else { return Some("default encryption is missing".to_string()) };
    let key = kms_key?;
    (found.algorithm != "aws:kms" || !super::kms::same_key(found.kms_key.as_deref(), key)).then(|| {
        let now = found.kms_key.as_deref().map_or(found.algorithm.clone(), |k| format!("{} with {k}", found.algorithm));
        format!("default encryption is {now}, expected aws:kms with {key}")
    })
}

async fn policy_drift(client: &Client, bucket: &str, in_policy: &[&str]) -> AwsResult<Option<String>> {
    Ok(match policy_text(client, bucket).await? {
        None => Some("TLS-only bucket policy is missing".to_string()),
        Some(policy) if !policy.contains("aws:SecureTransport") => {
            Some("bucket policy no longer denies insecure transport".to_string())
        }
        Some(policy) => {
            in_policy.iter().find(|s| !policy.contains(*s)).map(|s| format!("bucket policy no longer names {s}"))
        }
    })
}

/// The bucket's policy; `None` when it has none.
async fn policy_text(client: &Client, bucket: &str) -> AwsResult<Option<String>> {
    match client.get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => Ok(out.policy().map(str::to_string)),
        Err(err) => {
            let err = AwsError::from_sdk("GetBucketPolicy", err);
            if err.is(&["NoSuchBucketPolicy"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// Sends the bucket's server access logs to `target` (FSBP S3.9). The target's policy must already let
/// the logging service write there: S3 checks it here.
pub async fn put_logging(client: &Client, bucket: &str, target: &LogTarget) -> AwsResult<()> {
    let enabled = LoggingEnabled::builder().target_bucket(&target.bucket).target_prefix(&target.prefix).build()?;
    client
        .put_bucket_logging()
        .bucket(bucket)
        .bucket_logging_status(BucketLoggingStatus::builder().logging_enabled(enabled).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutBucketLogging", e))?;
    Ok(())
}

/// How the bucket's access logging differs from `target`.
pub async fn logging_drift(client: &Client, bucket: &str, target: &LogTarget) -> AwsResult<Option<String>> {
    let out = client
        .get_bucket_logging()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetBucketLogging", e))?;
    let found = out.logging_enabled().map(|l| (l.target_bucket(), l.target_prefix()));
    Ok(match found {
        None => Some(format!("server access logging is off, expected logs in {}/{}", target.bucket, target.prefix)),
        Some((bucket, prefix)) if bucket != target.bucket || prefix != target.prefix => {
            Some(format!("server access logs go to {bucket}/{prefix}, expected {}/{}", target.bucket, target.prefix))
        }
        Some(_) => None,
    })
}

/// The one lifecycle rule of a log bucket: logs expire after `days`, replaced versions a day later.
fn log_expiry_rule(days: i64) -> AwsResult<LifecycleRule> {
    Ok(LifecycleRule::builder()
        .id("expire-logs")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().days(days as i32).build())
        .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(1).build())
        .abort_incomplete_multipart_upload(AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build())
        .build()?)
}

/// Makes the bucket's objects expire after `days` (a log bucket keeps logs as long as the log groups do).
pub async fn put_log_expiry(client: &Client, bucket: &str, days: i64) -> AwsResult<()> {
    let configuration = BucketLifecycleConfiguration::builder().rules(log_expiry_rule(days)?).build()?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(configuration)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutBucketLifecycleConfiguration", e))?;
    Ok(())
}

/// How the bucket's lifecycle differs from expiring objects after `days`.
pub async fn log_expiry_drift(client: &Client, bucket: &str, days: i64) -> AwsResult<Option<String>> {
    let rules = match client.get_bucket_lifecycle_configuration().bucket(bucket).send().await {
        Ok(out) => out.rules().to_vec(),
        Err(err) => {
            let err = AwsError::from_sdk("GetBucketLifecycleConfiguration", err);
            if !err.is(&["NoSuchLifecycleConfiguration"]) {
                return Err(err);
            }
            vec![]
        }
    };
    let expires = rules.iter().any(|r| {
        r.status() == &ExpirationStatus::Enabled && r.expiration().and_then(|e| e.days()) == Some(days as i32)
    });
    Ok((!expires).then(|| format!("logs no longer expire after {days} days")))
}

/// Whether the bucket holds any object version or delete marker.
pub async fn is_empty(client: &Client, bucket: &str) -> AwsResult<bool> {
    let out = client
        .list_object_versions()
        .bucket(bucket)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListObjectVersions", e))?;
    Ok(out.versions().is_empty() && out.delete_markers().is_empty())
}

/// Deletes every object version and delete marker (only when the user set force_destroy).
pub async fn empty(client: &Client, bucket: &str) -> AwsResult<u64> {
    let mut deleted = 0;
    loop {
        let out = client
            .list_object_versions()
            .bucket(bucket)
            .max_keys(1000)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListObjectVersions", e))?;
        let mut objects = Vec::new();
        for v in out.versions() {
            objects.push(
                ObjectIdentifier::builder()
                    .key(v.key().unwrap_or_default())
                    .set_version_id(v.version_id().map(str::to_string))
                    .build()?,
            );
        }
        for m in out.delete_markers() {
            objects.push(
                ObjectIdentifier::builder()
                    .key(m.key().unwrap_or_default())
                    .set_version_id(m.version_id().map(str::to_string))
                    .build()?,
            );
        }
        if objects.is_empty() {
            return Ok(deleted);
        }
        let count = objects.len() as u64;
        let out = client
            .delete_objects()
            .bucket(bucket)
            .delete(Delete::builder().set_objects(Some(objects)).quiet(true).build()?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteObjects", e))?;
        // Quiet mode reports only failures. Versions S3 refuses to delete (object lock, a legal hold, a
        // denying policy) would be listed again forever: stop at the first refusal instead.
        if let Some(refused) = out.errors().first() {
            return Err(AwsError {
                operation: "DeleteObjects",
                code: refused.code().map(str::to_string),
                message: format!(
                    "{} of {count} object versions in {bucket} could not be deleted; the first, {}, because: {}",
                    out.errors().len(),
                    refused.key().unwrap_or("?"),
                    refused.message().unwrap_or("no reason given")
                ),
            });
        }
        deleted += count;
    }
}

/// Removes the bucket policy (the first step of tearing a bucket down, the reverse of its creation).
pub async fn delete_policy(client: &Client, bucket: &str) -> AwsResult<()> {
    match client.delete_bucket_policy().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteBucketPolicy", err);
            if err.is(&["NoSuchBucket", "NoSuchBucketPolicy"]) { Ok(()) } else { Err(err) }
        }
    }
}

/// Deletes an empty bucket; absent is success.
pub async fn delete(client: &Client, bucket: &str) -> AwsResult<()> {
    match client.delete_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteBucket", err);
            if err.is(&["NoSuchBucket", "NotFound"]) { Ok(()) } else { Err(err) }
        }
    }
}

/// Finds a bucket by its stack and part tags (for import when the name is not the default).
pub async fn find_by_tags(client: &Client, stack: &str, part: &str) -> AwsResult<Option<String>> {
    let out = client.list_buckets().send().await.map_err(|e| AwsError::from_sdk("ListBuckets", e))?;
    for bucket in out.buckets() {
        let Some(name) = bucket.name() else { continue };
        let Ok(tags) = tags(client, name).await else { continue };
        if tags.get(super::STACK_TAG).map(String::as_str) == Some(stack)
            && tags.get(super::PART_TAG).map(String::as_str) == Some(part)
        {
            return Ok(Some(name.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_encryption_drifts_when_missing_or_under_another_key() {
        let key = "arn:aws:kms:eu-west-2:123456789012:key/k1";
        let sse = |algorithm: &str, key: Option<&str>| DefaultEncryption {
            algorithm: algorithm.to_string(),
            kms_key: key.map(str::to_string),
        };
        assert_eq!(encryption_drift(None, None).unwrap(), "default encryption is missing");
        assert_eq!(encryption_drift(Some(&sse("AES256", None)), None), None);
        assert_eq!(encryption_drift(Some(&sse("aws:kms", Some("k1"))), Some(key)), None);
        assert!(
            encryption_drift(Some(&sse("AES256", None)), Some(key)).unwrap().contains("is AES256, expected aws:kms")
        );
        let other = encryption_drift(Some(&sse("aws:kms", Some("k2"))), Some(key)).unwrap();
        assert!(other.contains("aws:kms with k2"), "{other}");
    }

    #[test]
    fn the_log_bucket_admits_the_logging_service_for_each_source_under_its_prefix_only() {
        let target = LogTarget { bucket: "vault-access-logs".into(), prefix: "s3/vault-archive/".into() };
        let lb = LoadBalancerLogs {
            principal: serde_json::json!({ "AWS": "arn:aws:iam::652711504416:root" }),
            prefix: "elb".into(),
        };
        let policy = access_log_policy(
            "aws",
            "vault-access-logs",
            &[("vault-archive", &target)],
            Some(&lb),
            Some("123456789012"),
        );
        let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(policy["Statement"][0]["Sid"], "DenyInsecureTransport");
        let load_balancers = &policy["Statement"][1];
        assert_eq!(load_balancers["Resource"], "arn:aws:s3:::vault-access-logs/elb/AWSLogs/123456789012/*");
        let allow = &policy["Statement"][2];
        assert_eq!(allow["Principal"]["Service"], LOGGING_SERVICE);
        assert_eq!(allow["Action"], "s3:PutObject");
        assert_eq!(allow["Resource"], "arn:aws:s3:::vault-access-logs/s3/vault-archive/*");
        assert_eq!(allow["Condition"]["ArnLike"]["aws:SourceArn"], "arn:aws:s3:::vault-archive");
        assert_eq!(allow["Condition"]["StringEquals"]["aws:SourceAccount"], "123456789012");
    }

    #[test]
    fn log_expiry_keeps_logs_for_the_days_given() {
        let rule = log_expiry_rule(365).unwrap();
        assert_eq!(rule.expiration().and_then(|e| e.days()), Some(365));
        assert_eq!(rule.status(), &ExpirationStatus::Enabled);
    }

    #[test]
    fn policy_denies_plain_http_on_bucket_and_objects() {
        let policy: serde_json::Value = serde_json::from_str(&tls_only_policy("aws", "vault-archive")).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(statement["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(statement["Resource"][1], "arn:aws:s3:::vault-archive/*");
    }
}
