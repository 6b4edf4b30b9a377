//! AWS IAM: the stack's roles (container instances, task execution, broker/worker task) and the instance
//! profile that hands the instance role to EC2.
//!
//! Every role is converged to exactly its spec: trust policy, managed policies and inline policies that are
//! not in the spec are removed, so permissions granted out of band do not linger. Policies are compared as
//! parsed, normalised JSON (IAM returns them URL-encoded, with its own whitespace), so an unchanged role
//! causes no writes. IAM is eventually consistent: [`retry_while_propagating`] lets the services that use a
//! fresh role or profile retry until it is usable.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::{AwsError, AwsResult};

/// The EC2 service principal, trusted by the container instance role.
pub const EC2_SERVICE: &str = "ec2.amazonaws.com";
/// The ECS tasks service principal, trusted by the task execution role and the task role.
pub const ECS_TASKS_SERVICE: &str = "ecs-tasks.amazonaws.com";
/// The AWS managed policy the ECS agent needs on the container instances (register with the cluster, pull
/// from ECR, write logs); the only policy of the instance role.
pub const ECS_INSTANCE_ROLE_POLICY: &str = "AmazonEC2ContainerServiceforEC2Role";
/// The AWS managed policy ECS needs to start tasks (pull images, create log streams).
pub const ECS_TASK_EXECUTION_ROLE_POLICY: &str = "AmazonECSTaskExecutionRolePolicy";

/// First pause before retrying an action that failed because IAM had not propagated yet.
const PROPAGATION_FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest pause between such retries.
const PROPAGATION_MAX_DELAY: Duration = Duration::from_secs(10);

/// A role as the stack wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    /// The role's name (deterministic from the stack name).
    pub name: String,
    /// The trust policy, e.g. from [`assume_role_policy`].
    pub assume_role_policy: String,
    /// ARNs of the managed policies attached to it, and no others.
    pub managed_policy_arns: Vec<String>,
    /// Inline policies by name (JSON documents), and no others.
    pub inline_policies: BTreeMap<String, String>,
    /// Tags to set on it.
    pub tags: BTreeMap<String, String>,
    /// Its description.
    pub description: String,
}

/// A role that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
}

/// A role as it is now, to be judged against its spec with [`RoleObservation::drift`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleObservation {
    /// Its ARN.
    pub arn: String,
    /// Its tags, which say whose it is.
    pub tags: BTreeMap<String, String>,
    current: RoleState,
}

impl RoleObservation {
    /// Human-readable differences from `spec` (empty when none).
    pub fn drift(&self, spec: &RoleSpec) -> Vec<String> {
        plan_role(spec, &self.current).describe(&self.current)
    }
}

/// A role as IAM reports it, with every policy document URL-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RoleState {
    arn: String,
    tags: BTreeMap<String, String>,
    trust_policy: String,
    description: String,
    managed_policy_arns: BTreeSet<String>,
    inline_policies: BTreeMap<String, String>,
}

/// The writes that bring a role to its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RoleChanges {
    trust_policy: bool,
    description: bool,
    attach: Vec<String>,
    detach: Vec<String>,
    put_inline: Vec<String>,
    delete_inline: Vec<String>,
}

impl RoleChanges {
    /// The changes as drift messages, so observe reports exactly what ensure would repair.
    fn describe(&self, current: &RoleState) -> Vec<String> {
        let mut drift = Vec::new();
        if self.trust_policy {
            drift.push("trust policy differs".to_string());
        }
        if self.description {
            drift.push("description differs".to_string());
        }
        drift.extend(self.attach.iter().map(|arn| format!("managed policy {arn} is not attached")));
        drift.extend(self.detach.iter().map(|arn| format!("extra managed policy {arn} is attached")));
        for name in &self.put_inline {
            if current.inline_policies.contains_key(name) {
                drift.push(format!("inline policy {name} differs"));
            } else {
                drift.push(format!("inline policy {name} is missing"));
            }
        }
        drift.extend(self.delete_inline.iter().map(|name| format!("extra inline policy {name}")));
        drift
    }
}

/// The trust policy letting one AWS service principal (e.g. [`EC2_SERVICE`], [`ECS_TASKS_SERVICE`]) assume
/// the role.
pub fn assume_role_policy(service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// The trust policy letting ECS tasks of one account and region assume the role, and nothing acting for
/// anyone else: `aws:SourceAccount` and `aws:SourceArn` conditions, the confused-deputy protection AWS
/// recommends for task roles (Amazon ECS Developer Guide, "Amazon ECS task IAM role").
pub fn ecs_tasks_trust_policy(partition: &str, region: &str, account: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": ECS_TASKS_SERVICE },
            "Action": "sts:AssumeRole",
            "Condition": {
                "ArnLike": { "aws:SourceArn": format!("arn:{partition}:ecs:{region}:{account}:*") },
                "StringEquals": { "aws:SourceAccount": account }
            }
        }]
    })
    .to_string()
}

/// The ARN of an AWS managed service-role policy, e.g. [`ECS_INSTANCE_ROLE_POLICY`].
pub fn managed_policy_arn(partition: &str, name: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/service-role/{name}")
}

/// Least privilege for broker and workers on the archive bucket only: list it, read and write its objects
/// (including multipart uploads and versions), and nothing over plain HTTP.
pub fn archive_bucket_access_policy(partition: &str, bucket: &str) -> String {
    let bucket_arn = format!("arn:{partition}:s3:::{bucket}");
    let objects_arn = format!("{bucket_arn}/*");
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListArchiveBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                    "s3:ListBucketMultipartUploads",
                    "s3:ListBucketVersions"
                ],
                "Resource": bucket_arn
            },
            {
                "Sid": "ReadWriteArchiveObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"
                ],
                "Resource": objects_arn
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Action": "s3:*",
                "Resource": [bucket_arn, objects_arn],
                "Condition": { "Bool": { "aws:SecureTransport": "false" } }
            }
        ]
    })
    .to_string()
}

/// What an ECS Exec session needs from the task role: the SSM message channels (which take no resource but
/// `*`) and writing the session's record to the stack's log group (`log_group_arn` without `:*`).
pub fn ecs_exec_policy(log_group_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ExecSessionChannels",
                "Effect": "Allow",
                "Action": [
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel"
                ],
                "Resource": "*"
            },
            {
                "Sid": "ExecSessionLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": format!("{log_group_arn}:*")
            },
            {
                "Sid": "ExecSessionLogGroup",
                "Effect": "Allow",
                "Action": "logs:DescribeLogGroups",
                "Resource": "*"
            }
        ]
    })
    .to_string()
}

/// Mounting the file system with IAM authorisation, read and write, through this access point only.
pub fn file_system_client_policy(file_system_arn: &str, access_point_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "MountThroughAccessPoint",
            "Effect": "Allow",
            "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            "Resource": file_system_arn,
            "Condition": { "StringEquals": { "elasticfilesystem:AccessPointArn": access_point_arn } }
        }]
    })
    .to_string()
}

/// Lets the task execution role read exactly these secrets, to inject them into containers as ECS
/// `secrets`. IAM rejects a statement without resources, so callers skip this policy when there are none.
pub fn read_secrets_policy(secret_arns: &[String]) -> String {
    let arns: BTreeSet<&String> = secret_arns.iter().collect();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadStackSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": arns
        }]
    })
    .to_string()
}

/// Use of a customer-managed KMS key through one AWS service only (`kms:ViaService`, e.g.
/// `s3.eu-west-2.amazonaws.com`): what a role needs to read (kms:Decrypt) and, with kms:GenerateDataKey, to
/// write data that service encrypts with the key. The role cannot use the key directly.
pub fn kms_via_service_policy(key_arn: &str, actions: &[&str], service_host: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "UseStackKeyThroughOneService",
            "Effect": "Allow",
            "Action": actions,
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": service_host}}
        }]
    })
    .to_string()
}

/// Decodes `%XX` escapes and `+` (IAM returns policy documents form-URL-encoded).
fn url_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1]).zip(hex(bytes[i + 2])).map(|(hi, lo)| hi * 16 + lo),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A policy document as JSON text, whether IAM returned it URL-encoded or not.
fn decode_policy(document: &str) -> String {
    if document.trim_start().starts_with('{') { document.to_string() } else { url_decode(document) }
}

/// Puts a policy in a canonical form: every list in the policy grammar is a set (statements, actions,
/// resources, principals, condition values) and a one-element list means the same as its element.
fn normalise_policy(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(normalise_policy).collect();
            items.sort_by_key(|item| item.to_string());
            items.dedup();
            if items.len() == 1 { items.pop().unwrap_or(Value::Null) } else { Value::Array(items) }
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, normalise_policy(v))).collect()),
        other => other,
    }
}

/// Whether two policy documents (either may be URL-encoded, as IAM returns them) grant the same thing.
/// Documents that are not JSON are compared as text.
pub fn same_policy(a: &str, b: &str) -> bool {
    let (a, b) = (decode_policy(a), decode_policy(b));
    match (serde_json::from_str::<Value>(&a), serde_json::from_str::<Value>(&b)) {
        (Ok(a), Ok(b)) => normalise_policy(a) == normalise_policy(b),
        _ => a.trim() == b.trim(),
    }
}

/// The writes that make `current` match `spec`.
fn plan_role(spec: &RoleSpec, current: &RoleState) -> RoleChanges {
    let wanted_managed: BTreeSet<&String> = spec.managed_policy_arns.iter().collect();
    RoleChanges {
        trust_policy: !same_policy(&spec.assume_role_policy, &current.trust_policy),
        description: spec.description != current.description,
        attach: wanted_managed
            .iter()
            .filter(|arn| !current.managed_policy_arns.contains(**arn))
            .map(|arn| arn.to_string())
            .collect(),
        detach: current.managed_policy_arns.iter().filter(|arn| !wanted_managed.contains(arn)).cloned().collect(),
        put_inline: spec
            .inline_policies
            .iter()
            .filter(|(name, doc)| current.inline_policies.get(*name).is_none_or(|have| !same_policy(doc, have)))
            .map(|(name, _)| name.clone())
            .collect(),
        delete_inline: current
            .inline_policies
            .keys()
            .filter(|name| !spec.inline_policies.contains_key(*name))
            .cloned()
            .collect(),
    }
}

/// Maps IAM's NoSuchEntity to `None`, so deletes and lookups treat "already gone" as success.
fn unless_missing<T>(result: AwsResult<T>) -> AwsResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.is(&["NoSuchEntity"]) => Ok(None),
        Err(err) => Err(err),
    }
}

fn tag_list(tags: &BTreeMap<String, String>) -> AwsResult<Vec<Tag>> {
    super::try_tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// ARNs of the managed policies attached to the role (every page).
async fn attached_policies(client: &Client, role: &str) -> AwsResult<BTreeSet<String>> {
    let pages = client.list_attached_role_policies().role_name(role).into_paginator().items().send();
    let attached =
        pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("ListAttachedRolePolicies", e))?;
    Ok(attached.iter().filter_map(|p| p.policy_arn().map(str::to_string)).collect())
}

/// Names of the role's inline policies (every page).
async fn inline_policy_names(client: &Client, role: &str) -> AwsResult<Vec<String>> {
    let pages = client.list_role_policies().role_name(role).into_paginator().items().send();
    pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("ListRolePolicies", e))
}

/// The role's inline policies `names` (as listed), URL-decoded, all read at once.
async fn inline_policies(client: &Client, role: &str, names: Vec<String>) -> AwsResult<BTreeMap<String, String>> {
    let reads = names.into_iter().map(|name| async move {
        let out = client.get_role_policy().role_name(role).policy_name(&name).send().await;
        // A policy deleted between the listing and this read is simply not there.
        let found = unless_missing(out.map_err(|e| AwsError::from_sdk("GetRolePolicy", e)))?;
        AwsResult::Ok(found.map(|out| (name, decode_policy(out.policy_document()))))
    });
    let policies: Vec<Option<(String, String)>> = futures_util::future::try_join_all(reads).await?;
    Ok(policies.into_iter().flatten().collect())
}

/// Reads the role and its policies; `None` when it does not exist. The inline policies' listing goes
/// first, since it also says whether the role exists: a lookup of a role that is not there (every plan of a
/// new stack looks for its names) costs one request, not three, which counts under an account's IAM rate
/// limit when many stacks are planned together. Then the role, its managed policies and each inline policy
/// at once, so a refresh still waits for two round trips.
async fn fetch_role(client: &Client, name: &str) -> AwsResult<Option<RoleState>> {
    let Some(inline_names) = unless_missing(inline_policy_names(client, name).await)? else { return Ok(None) };
    let role = async {
        unless_missing(client.get_role().role_name(name).send().await.map_err(|e| AwsError::from_sdk("GetRole", e)))
    };
    let (out, managed, inline) =
        tokio::join!(role, async { unless_missing(attached_policies(client, name).await) }, async {
            unless_missing(inline_policies(client, name, inline_names).await)
        });
    // Deleted since the listing: as good as never there.
    let Some(out) = out? else { return Ok(None) };
    let role = out.role().ok_or_else(|| AwsError::other("GetRole", format!("no role in the reply for {name}")))?;
    Ok(Some(RoleState {
        arn: role.arn().to_string(),
        tags: role.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
        trust_policy: role.assume_role_policy_document().map(decode_policy).unwrap_or_default(),
        description: role.description().unwrap_or_default().to_string(),
        // Deleted between GetRole and the listing: as good as none.
        managed_policy_arns: managed?.unwrap_or_default(),
        inline_policies: inline?.unwrap_or_default(),
    }))
}

/// Creates the role; if it appeared since we looked (a concurrent or interrupted run), reads it instead.
async fn create_role(client: &Client, spec: &RoleSpec) -> AwsResult<RoleState> {
    let mut request = client
        .create_role()
        .role_name(&spec.name)
        .assume_role_policy_document(&spec.assume_role_policy)
        .set_tags(Some(tag_list(&spec.tags)?));
    if !spec.description.is_empty() {
        request = request.description(&spec.description);
    }
    match request.send().await {
        Ok(out) => {
            let arn = out.role().map(|r| r.arn().to_string()).unwrap_or_default();
            // A new role has no policies; its trust policy and description are the spec's.
            Ok(RoleState {
                arn,
                trust_policy: spec.assume_role_policy.clone(),
                description: spec.description.clone(),
                tags: spec.tags.clone(),
                ..RoleState::default()
            })
        }
        Err(err) => {
            let err = AwsError::from_sdk("CreateRole", err);
            if !err.is(&["EntityAlreadyExists"]) {
                return Err(err);
            }
            fetch_role(client, &spec.name).await?.ok_or_else(|| {
                AwsError::other("GetRole", format!("role {} reported as existing but cannot be read", spec.name))
            })
        }
    }
}

/// Applies the planned writes to the role.
async fn apply_role_changes(client: &Client, spec: &RoleSpec, changes: &RoleChanges) -> AwsResult<()> {
    let role = spec.name.as_str();
    if changes.trust_policy {
        client
            .update_assume_role_policy()
            .role_name(role)
            .policy_document(&spec.assume_role_policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateAssumeRolePolicy", e))?;
    }
    if changes.description {
        client
            .update_role()
            .role_name(role)
            .description(&spec.description)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateRole", e))?;
    }
    for arn in &changes.attach {
        client
            .attach_role_policy()
            .role_name(role)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AttachRolePolicy", e))?;
    }
    for arn in &changes.detach {
        let out = client.detach_role_policy().role_name(role).policy_arn(arn).send().await;
        unless_missing(out.map_err(|e| AwsError::from_sdk("DetachRolePolicy", e)))?;
    }
    for name in &changes.put_inline {
        client
            .put_role_policy()
            .role_name(role)
            .policy_name(name)
            .policy_document(&spec.inline_policies[name])
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutRolePolicy", e))?;
    }
    for name in &changes.delete_inline {
        let out = client.delete_role_policy().role_name(role).policy_name(name).send().await;
        unless_missing(out.map_err(|e| AwsError::from_sdk("DeleteRolePolicy", e)))?;
    }
    Ok(())
}

/// Creates the role or adopts the one with that name, then converges trust policy, description, managed
/// and inline policies (removing any not in the spec) and tags. Writes only what differs, so it may be
/// called again at any time, including after a crash half-way through; it converges.
pub async fn ensure_role(client: &Client, spec: &RoleSpec) -> AwsResult<Role> {
    let current = match fetch_role(client, &spec.name).await? {
        Some(current) => current,
        None => create_role(client, spec).await?,
    };
    apply_role_changes(client, spec, &plan_role(spec, &current)).await?;
    let missing = super::tags_to_write(&spec.tags, &current.tags);
    if !missing.is_empty() {
        client
            .tag_role()
            .role_name(&spec.name)
            .set_tags(Some(tag_list(&missing)?))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagRole", e))?;
    }
    Ok(Role { name: spec.name.clone(), arn: current.arn })
}

/// The role's ARN and tags, without its policies (one request): what tells whether it exists and whose it
/// is. `None` when it does not exist. Reads only.
pub async fn find_role(client: &Client, name: &str) -> AwsResult<Option<(String, BTreeMap<String, String>)>> {
    let out = client.get_role().role_name(name).send().await.map_err(|e| AwsError::from_sdk("GetRole", e));
    let Some(out) = unless_missing(out)? else { return Ok(None) };
    Ok(out.role().map(|role| {
        let tags = role.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
        (role.arn().to_string(), tags)
    }))
}

/// Describes the role with its policies; `None` when it does not exist. Reads only.
pub async fn observe_role(client: &Client, name: &str) -> AwsResult<Option<RoleObservation>> {
    let Some(current) = fetch_role(client, name).await? else { return Ok(None) };
    Ok(Some(RoleObservation { arn: current.arn.clone(), tags: current.tags.clone(), current }))
}

/// Names of the instance profiles holding the role (every page).
async fn profiles_for_role(client: &Client, role: &str) -> AwsResult<Vec<String>> {
    let pages = client.list_instance_profiles_for_role().role_name(role).into_paginator().items().send();
    let profiles =
        pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("ListInstanceProfilesForRole", e))?;
    Ok(profiles.iter().map(|p| p.instance_profile_name().to_string()).collect())
}

async fn remove_role_from_profile(client: &Client, profile: &str, role: &str) -> AwsResult<()> {
    let out = client.remove_role_from_instance_profile().instance_profile_name(profile).role_name(role).send().await;
    unless_missing(out.map_err(|e| AwsError::from_sdk("RemoveRoleFromInstanceProfile", e)))?;
    Ok(())
}

/// Deletes the role after taking it out of its instance profiles and removing its policies (IAM refuses
/// otherwise). A role or policy already gone is success, so it may be called again after a crash.
pub async fn delete_role(client: &Client, name: &str) -> AwsResult<()> {
    let Some(profiles) = unless_missing(profiles_for_role(client, name).await)? else { return Ok(()) };
    for profile in profiles {
        remove_role_from_profile(client, &profile, name).await?;
    }
    let Some(managed) = unless_missing(attached_policies(client, name).await)? else { return Ok(()) };
    for arn in managed {
        let out = client.detach_role_policy().role_name(name).policy_arn(&arn).send().await;
        unless_missing(out.map_err(|e| AwsError::from_sdk("DetachRolePolicy", e)))?;
    }
    let Some(inline) = unless_missing(inline_policy_names(client, name).await)? else { return Ok(()) };
    for policy in inline {
        let out = client.delete_role_policy().role_name(name).policy_name(&policy).send().await;
        unless_missing(out.map_err(|e| AwsError::from_sdk("DeleteRolePolicy", e)))?;
    }
    let out = client.delete_role().role_name(name).send().await;
    unless_missing(out.map_err(|e| AwsError::from_sdk("DeleteRole", e)))?;
    Ok(())
}

/// An instance profile as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProfile {
    /// Its ARN.
    pub arn: String,
    /// The roles it holds (at most one).
    pub roles: Vec<String>,
    /// Its tags, which say whose it is.
    pub tags: BTreeMap<String, String>,
}

/// The instance profile; `None` when it does not exist. Reads only.
pub async fn instance_profile(client: &Client, name: &str) -> AwsResult<Option<InstanceProfile>> {
    let out = client
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetInstanceProfile", e));
    let Some(out) = unless_missing(out)? else { return Ok(None) };
    let profile = out
        .instance_profile()
        .ok_or_else(|| AwsError::other("GetInstanceProfile", format!("no instance profile in the reply for {name}")))?;
    Ok(Some(InstanceProfile {
        arn: profile.arn().to_string(),
        roles: profile.roles().iter().map(|r| r.role_name().to_string()).collect(),
        tags: profile.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
    }))
}

async fn get_profile(client: &Client, name: &str) -> AwsResult<Option<(String, Vec<String>)>> {
    Ok(instance_profile(client, name).await?.map(|p| (p.arn, p.roles)))
}

/// An existing instance profile, if the stack may make it its own: not another stack's, and,
/// unless it already carries the stack's tag, holding no role but the stack's (one that holds someone
/// else's role is in use, and taking it over would take that role off their instances).
fn take_over_profile(
    name: &str,
    role_name: &str,
    found: InstanceProfile,
    tags: &BTreeMap<String, String>,
) -> AwsResult<InstanceProfile> {
    let what = format!("instance profile {name}");
    super::refuse_foreign("AddRoleToInstanceProfile", &what, &found.tags, tags)?;
    let ours = found.tags.get(super::STACK_TAG).is_some_and(|stack| tags.get(super::STACK_TAG) == Some(stack));
    let others: Vec<&String> = found.roles.iter().filter(|r| r.as_str() != role_name).collect();
    if !ours && !others.is_empty() {
        return Err(AwsError::other(
            "AddRoleToInstanceProfile",
            format!(
                "{what} holds role {} and is not tagged as this stack's; the stack will not take it over. Give \
                 this stack another name, or remove that instance profile.",
                others.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(found)
}

/// Creates the instance profile; if it appeared since we looked, takes it over only as
/// [`take_over_profile`] allows.
async fn create_profile(
    client: &Client,
    name: &str,
    role_name: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<InstanceProfile> {
    let created =
        client.create_instance_profile().instance_profile_name(name).set_tags(Some(tag_list(tags)?)).send().await;
    match created {
        Ok(out) => Ok(InstanceProfile {
            arn: out.instance_profile().map(|p| p.arn().to_string()).unwrap_or_default(),
            roles: Vec::new(),
            tags: tags.clone(),
        }),
        Err(err) => {
            let err = AwsError::from_sdk("CreateInstanceProfile", err);
            if !err.is(&["EntityAlreadyExists"]) {
                return Err(err);
            }
            let found = instance_profile(client, name).await?.ok_or_else(|| {
                AwsError::other("GetInstanceProfile", format!("instance profile {name} exists but cannot be read"))
            })?;
            take_over_profile(name, role_name, found, tags)
        }
    }
}

/// Creates the instance profile or adopts the one with that name, makes it hold exactly `role_name` (an
/// instance profile holds at most one role) and sets tags. May be called again after a crash; converges.
/// Returns its ARN.
pub async fn ensure_instance_profile(
    client: &Client,
    name: &str,
    role_name: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<String> {
    let profile = match instance_profile(client, name).await? {
        Some(found) => take_over_profile(name, role_name, found, tags)?,
        None => create_profile(client, name, role_name, tags).await?,
    };
    let roles = &profile.roles;
    for other in roles.iter().filter(|r| r.as_str() != role_name) {
        remove_role_from_profile(client, name, other).await?;
    }
    if !roles.iter().any(|r| r == role_name) {
        client
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(role_name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AddRoleToInstanceProfile", e))?;
    }
    let missing = super::tags_to_write(tags, &profile.tags);
    if !missing.is_empty() {
        client
            .tag_instance_profile()
            .instance_profile_name(name)
            .set_tags(Some(tag_list(&missing)?))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagInstanceProfile", e))?;
    }
    Ok(profile.arn)
}

/// Takes the tags with these keys off the role (keys it does not have are no error): the stack's tags that the
/// configuration no longer has.
pub async fn remove_role_tags(client: &Client, name: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_role().role_name(name).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagRole", e))?;
    Ok(())
}

/// Takes the tags with these keys off the instance profile (keys it does not have are no error): the stack's tags
/// that the configuration no longer has.
pub async fn remove_instance_profile_tags(client: &Client, name: &str, keys: &[String]) -> AwsResult<()> {
    let out =
        client.untag_instance_profile().instance_profile_name(name).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagInstanceProfile", e))?;
    Ok(())
}

/// The instance profile's ARN; `None` when it does not exist.
pub async fn instance_profile_arn(client: &Client, name: &str) -> AwsResult<Option<String>> {
    Ok(get_profile(client, name).await?.map(|(arn, _)| arn))
}

/// The names of the roles the instance profile holds; `None` when it does not exist.
pub async fn instance_profile_roles(client: &Client, name: &str) -> AwsResult<Option<Vec<String>>> {
    Ok(get_profile(client, name).await?.map(|(_, roles)| roles))
}

/// Deletes the instance profile after removing its role (IAM refuses otherwise); absent is success, so it
/// may be called again after a crash.
pub async fn delete_instance_profile(client: &Client, name: &str) -> AwsResult<()> {
    let Some((_, roles)) = get_profile(client, name).await? else { return Ok(()) };
    for role in roles {
        remove_role_from_profile(client, name, &role).await?;
    }
    let out = client.delete_instance_profile().instance_profile_name(name).send().await;
    unless_missing(out.map_err(|e| AwsError::from_sdk("DeleteInstanceProfile", e)))?;
    Ok(())
}

/// Error codes other services use when they reject a role or instance profile they cannot use yet.
const PROPAGATION_CODES: &[&str] = &[
    "InvalidParameterException",
    "ClientException",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "ValidationError",
];

/// Message fragments (lower case) of those rejections.
const PROPAGATION_MESSAGES: &[&str] = &[
    "unable to assume role",
    "unable to assume the role",
    "unable to assume the service linked role",
    "role cannot be assumed",
    "role is not valid",
    "invalid iaminstanceprofile",
    "invalid iam instance profile",
    "iaminstanceprofile.name is invalid",
    "iaminstanceprofile.arn is invalid",
    "has no associated iam roles",
];

/// Whether another service (ECS, EC2, Auto Scaling) rejected a call only because a role or instance profile
/// created moments ago has not propagated through IAM yet, so the call will succeed if retried.
pub fn is_propagation_delay(err: &AwsError) -> bool {
    if !err.is(PROPAGATION_CODES) {
        return false;
    }
    let message = err.message.to_ascii_lowercase();
    PROPAGATION_MESSAGES.iter().any(|fragment| message.contains(fragment))
        || (err.is(&["ValidationError"]) && message.contains("instance profile"))
}

/// The next backoff: [`PROPAGATION_FIRST_DELAY`], then doubling up to [`PROPAGATION_MAX_DELAY`].
fn next_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(PROPAGATION_FIRST_DELAY, |d| (d * 2).min(PROPAGATION_MAX_DELAY))
}

/// How long to sleep before the next attempt, or `None` once `max_wait` has passed; the last sleep is cut
/// short so the final attempt happens at the deadline rather than after it.
fn propagation_sleep(backoff: Duration, elapsed: Duration, max_wait: Duration) -> Option<Duration> {
    (elapsed < max_wait).then(|| backoff.min(max_wait - elapsed))
}

/// Runs `attempt` until it succeeds, fails for another reason than IAM propagation, or `max_wait` has
/// passed, pausing with exponential backoff (1 s doubling to 10 s) between attempts. When time runs out
/// the last error is returned (same operation and code) with a note that IAM had not propagated.
pub async fn retry_while_propagating<T, F, Fut>(max_wait: Duration, mut attempt: F) -> AwsResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
{
    let started = Instant::now();
    let mut backoff = None;
    loop {
        let err = match attempt().await {
            Err(err) if is_propagation_delay(&err) => err,
            other => return other,
        };
        let next = next_backoff(backoff);
        let Some(pause) = propagation_sleep(next, started.elapsed(), max_wait) else {
            let waited = format!("still failing after waiting {max_wait:?} for IAM changes to propagate");
            return Err(AwsError { message: format!("{} ({waited})", err.message), ..err });
        };
        tracing::info!(operation = err.operation, "IAM role or instance profile not usable yet; retrying in {pause:?}");
        tokio::time::sleep(pause).await;
        backoff = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_profile_is_taken_over_only_when_free_or_already_the_stacks() {
        let ours: BTreeMap<String, String> = [(super::super::STACK_TAG.to_string(), "shop".to_string())].into();
        let profile = |roles: &[&str], tags: &BTreeMap<String, String>| InstanceProfile {
            arn: "arn:aws:iam::1:instance-profile/shop-instance".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tags: tags.clone(),
        };
        let take = |found| take_over_profile("shop-instance", "shop-instance", found, &ours);
        assert!(take(profile(&[], &BTreeMap::new())).is_ok(), "an empty untagged profile");
        assert!(take(profile(&["shop-instance"], &BTreeMap::new())).is_ok(), "one holding the stack's role");
        assert!(take(profile(&["old-role"], &ours)).is_ok(), "the stack's own, holding a stale role");
        let refused = take(profile(&["their-role"], &BTreeMap::new())).unwrap_err();
        assert!(refused.message.contains("their-role"), "{refused}");
        let other: BTreeMap<String, String> = [(super::super::STACK_TAG.to_string(), "other".to_string())].into();
        assert!(take(profile(&[], &other)).is_err(), "another stack's");
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn spec() -> RoleSpec {
        RoleSpec {
            name: "vault-task".into(),
            assume_role_policy: assume_role_policy(ECS_TASKS_SERVICE),
            managed_policy_arns: vec![managed_policy_arn("aws", ECS_TASK_EXECUTION_ROLE_POLICY)],
            inline_policies: [("archive".to_string(), archive_bucket_access_policy("aws", "vault-archive"))].into(),
            tags: BTreeMap::new(),
            description: "DataVault task role".into(),
        }
    }

    fn matching_state(spec: &RoleSpec) -> RoleState {
        RoleState {
            arn: "arn:aws:iam::123456789012:role/vault-task".into(),
            tags: spec.tags.clone(),
            trust_policy: spec.assume_role_policy.clone(),
            description: spec.description.clone(),
            managed_policy_arns: spec.managed_policy_arns.iter().cloned().collect(),
            inline_policies: spec.inline_policies.clone(),
        }
    }

    #[test]
    fn task_roles_trust_only_ecs_acting_for_the_account_and_region() {
        let policy = json(&ecs_tasks_trust_policy("aws", "eu-west-2", "123456789012"));
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], ECS_TASKS_SERVICE);
        assert_eq!(statement["Condition"]["StringEquals"]["aws:SourceAccount"], "123456789012");
        assert_eq!(statement["Condition"]["ArnLike"]["aws:SourceArn"], "arn:aws:ecs:eu-west-2:123456789012:*");
    }

    #[test]
    fn trust_policy_names_the_service_principal() {
        let policy = json(&assume_role_policy(EC2_SERVICE));
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], "ec2.amazonaws.com");
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert_eq!(statement["Effect"], "Allow");
    }

    #[test]
    fn managed_policy_arns_live_under_service_role() {
        assert_eq!(
            managed_policy_arn("aws-cn", ECS_INSTANCE_ROLE_POLICY),
            "arn:aws-cn:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
        );
    }

    #[test]
    fn archive_policy_is_scoped_to_the_bucket_and_tls_only() {
        let policy = json(&archive_bucket_access_policy("aws", "vault-archive"));
        let statements = policy["Statement"].as_array().unwrap();
        for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
            let actions = statement["Action"].as_array().unwrap();
            assert!(actions.iter().all(|a| a.as_str().unwrap().starts_with("s3:") && a != "s3:*"));
            assert!(statement["Resource"].as_str().unwrap().starts_with("arn:aws:s3:::vault-archive"));
        }
        assert_eq!(statements[0]["Resource"], "arn:aws:s3:::vault-archive");
        assert!(statements[0]["Action"].as_array().unwrap().contains(&Value::from("s3:ListBucket")));
        assert_eq!(statements[1]["Resource"], "arn:aws:s3:::vault-archive/*");
        assert!(statements[1]["Action"].as_array().unwrap().contains(&Value::from("s3:PutObject")));
        let deny = &statements[2];
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert!(deny.get("Principal").is_none(), "identity policies must not name a principal");
    }

    #[test]
    fn secrets_policy_grants_only_get_secret_value_on_the_given_arns() {
        let arns = vec!["arn:aws:secretsmanager:eu-west-2:1:secret:b".to_string(), "arn:x:a".to_string()];
        let policy = json(&read_secrets_policy(&arns));
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Action"], "secretsmanager:GetSecretValue");
        assert_eq!(
            statement["Resource"],
            serde_json::json!(["arn:aws:secretsmanager:eu-west-2:1:secret:b", "arn:x:a"])
        );
    }

    #[test]
    fn url_decoding_handles_escapes_plus_and_stray_percent() {
        assert_eq!(url_decode("%7B%22a%22%3A%22b+c%22%7D"), r#"{"a":"b c"}"#);
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("caf%C3%A9"), "café");
    }

    #[test]
    fn policies_compare_semantically() {
        let ours = assume_role_policy(EC2_SERVICE);
        let encoded = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Action%22%3A%20%22sts%3AAssumeRole%22%2C%20%22Effect%22%3A%20%22Allow%22%2C%20%22Principal%22%3A%20%7B%22Service%22%3A%20%5B%22ec2.amazonaws.com%22%5D%7D%7D%5D%7D";
        assert!(same_policy(&ours, encoded), "URL-encoded, reordered, one-element list");
        assert!(!same_policy(&ours, &assume_role_policy(ECS_TASKS_SERVICE)));
        let a = r#"{"Statement":[{"Action":["s3:GetObject","s3:PutObject"]}]}"#;
        let b = r#"{"Statement":{"Action":["s3:PutObject","s3:GetObject"]}}"#;
        assert!(same_policy(a, b), "action order and statement wrapping do not matter");
        assert!(!same_policy(a, r#"{"Statement":[{"Action":"s3:GetObject"}]}"#));
    }

    #[test]
    fn a_matching_role_needs_no_changes() {
        let spec = spec();
        let changes = plan_role(&spec, &matching_state(&spec));
        assert_eq!(changes, RoleChanges::default());
        assert!(changes.describe(&matching_state(&spec)).is_empty());
    }

    #[test]
    fn drift_is_planned_and_described() {
        let spec = spec();
        let mut state = matching_state(&spec);
        state.trust_policy = assume_role_policy(EC2_SERVICE);
        state.managed_policy_arns = ["arn:aws:iam::aws:policy/AdministratorAccess".to_string()].into();
        state.inline_policies.insert("archive".into(), read_secrets_policy(&["arn:x".into()]));
        state.inline_policies.insert("backdoor".into(), "{}".into());
        let changes = plan_role(&spec, &state);
        assert!(changes.trust_policy);
        assert!(!changes.description);
        assert_eq!(changes.attach, spec.managed_policy_arns);
        assert_eq!(changes.detach, vec!["arn:aws:iam::aws:policy/AdministratorAccess".to_string()]);
        assert_eq!(changes.put_inline, vec!["archive".to_string()]);
        assert_eq!(changes.delete_inline, vec!["backdoor".to_string()]);
        let drift = changes.describe(&state);
        assert!(drift.contains(&"trust policy differs".to_string()));
        assert!(drift.contains(&"inline policy archive differs".to_string()));
        assert!(drift.contains(&"extra inline policy backdoor".to_string()));
        assert!(drift.iter().any(|d| d.contains("AdministratorAccess") && d.starts_with("extra managed policy")));
        assert!(drift.iter().any(|d| d.contains(ECS_TASK_EXECUTION_ROLE_POLICY) && d.ends_with("is not attached")));
    }

    #[test]
    fn a_missing_inline_policy_is_reported_as_missing() {
        let spec = spec();
        let mut state = matching_state(&spec);
        state.inline_policies.clear();
        let changes = plan_role(&spec, &state);
        assert_eq!(changes.put_inline, vec!["archive".to_string()]);
        assert_eq!(changes.describe(&state), vec!["inline policy archive is missing".to_string()]);
    }

    fn err(code: &str, message: &str) -> AwsError {
        AwsError { operation: "Test", code: Some(code.into()), message: message.into() }
    }

    #[test]
    fn propagation_delays_are_recognised() {
        let delayed = [
            err("InvalidParameterException", "Unable to assume role and validate the specified targetGroupArn."),
            err(
                "InvalidParameterException",
                "Unable to assume the service linked role. Please verify that the ECS service linked role exists.",
            ),
            err("ClientException", "Role is not valid"),
            err(
                "InvalidParameterValue",
                "Value (vault-instance) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
            ),
            err(
                "ValidationError",
                "You must use a valid fully-formed launch template. Value (vault) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
            ),
            err("ValidationError", "Invalid IamInstanceProfile: vault-instance"),
            err(
                "InvalidParameterValue",
                "IAM Instance Profile \"arn:aws:iam::1:instance-profile/v\" has no associated IAM Roles",
            ),
            err("ValidationError", "The instance profile vault-instance does not exist yet"),
        ];
        for e in &delayed {
            assert!(is_propagation_delay(e), "should retry: {e}");
        }
    }

    #[test]
    fn other_errors_are_not_propagation_delays() {
        let permanent = [
            err("InvalidParameterException", "Creation of service was not idempotent."),
            err("AccessDeniedException", "User is not authorized to perform: iam:PassRole"),
            err("ValidationError", "Max bound, 3, must be greater than or equal to min bound, 4"),
            err("ThrottlingException", "Unable to assume role"),
            AwsError::other("CreateService", "Unable to assume role"),
        ];
        for e in &permanent {
            assert!(!is_propagation_delay(e), "should not retry: {e}");
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let mut previous = None;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let next = next_backoff(previous);
            seen.push(next.as_secs());
            previous = Some(next);
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn sleeps_stop_at_the_deadline() {
        let s = Duration::from_secs;
        assert_eq!(propagation_sleep(s(4), s(3), s(60)), Some(s(4)));
        assert_eq!(propagation_sleep(s(10), s(55), s(60)), Some(s(5)), "last pause is cut to the deadline");
        assert_eq!(propagation_sleep(s(1), s(60), s(60)), None);
        assert_eq!(propagation_sleep(s(1), s(0), s(0)), None, "no waiting allowed: one attempt only");
    }

    #[tokio::test]
    async fn retry_returns_success_and_other_errors_at_once() {
        let mut calls = 0;
        let ok: AwsResult<u32> = retry_while_propagating(Duration::from_secs(60), || {
            calls += 1;
            async { Ok(7) }
        })
        .await;
        assert_eq!(ok.unwrap(), 7);
        assert_eq!(calls, 1);
        let mut calls = 0;
        let failed: AwsResult<()> = retry_while_propagating(Duration::from_secs(60), || {
            calls += 1;
            async { Err(err("ClientException", "Too many tags")) }
        })
        .await;
        assert_eq!(failed.unwrap_err().message, "Too many tags");
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn retry_retries_propagation_delays_until_they_clear() {
        let mut calls = 0;
        let result: AwsResult<&str> = retry_while_propagating(Duration::from_secs(30), || {
            calls += 1;
            let first = calls == 1;
            async move { if first { Err(err("ClientException", "Role is not valid")) } else { Ok("created") } }
        })
        .await;
        assert_eq!(result.unwrap(), "created");
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn retry_gives_up_at_the_deadline_with_the_last_error() {
        let mut calls = 0;
        let result: AwsResult<()> = retry_while_propagating(Duration::ZERO, || {
            calls += 1;
            async { Err(err("ClientException", "Role is not valid")) }
        })
        .await;
        let e = result.unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(e.code.as_deref(), Some("ClientException"));
        assert!(e.message.starts_with("Role is not valid ("), "{e}");
        assert!(e.message.contains("propagate"), "{e}");
    }
}
