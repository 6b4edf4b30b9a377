//! Amazon CloudWatch Logs: the stack's log group, one stream per task.

use std::collections::BTreeMap;

use aws_sdk_cloudwatchlogs::Client;

use super::{AwsError, AwsResult};

/// Retention periods CloudWatch Logs accepts, in days.
pub const ALLOWED_RETENTION_DAYS: &[i64] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// A log group as the stack needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroup {
    /// Its ARN (without the `:*` suffix DescribeLogGroups adds).
    pub arn: String,
    /// Retention in days; `None` means never expire.
    pub retention_days: Option<i64>,
    /// The KMS key its events are encrypted with; `None`: CloudWatch Logs' own encryption.
    pub kms_key: Option<String>,
}

impl LogGroup {
    /// How the group's encryption differs from encryption under `kms_key` (none when no key is wanted).
    pub fn key_drift(&self, name: &str, kms_key: Option<&str>) -> Option<String> {
        let key = kms_key?;
        (!super::kms::same_key(self.kms_key.as_deref(), key)).then(|| match &self.kms_key {
            Some(other) => format!("log group {name} is encrypted with {other}, expected {key}"),
            None => format!("log group {name} is not encrypted with {key}"),
        })
    }
}

/// Describes the log group; `None` when it does not exist.
pub async fn describe(client: &Client, name: &str) -> AwsResult<Option<LogGroup>> {
    let out = client
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeLogGroups", e))?;
    Ok(out.log_groups().iter().find(|g| g.log_group_name() == Some(name)).map(LogGroup::from))
}

/// Every log group whose name starts with `prefix`, by name: one request for several groups.
pub async fn under_prefix(client: &Client, prefix: &str) -> AwsResult<BTreeMap<String, LogGroup>> {
    let pages = client.describe_log_groups().log_group_name_prefix(prefix).into_paginator().items().send();
    let groups = pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("DescribeLogGroups", e))?;
    Ok(groups.iter().filter_map(|g| Some((g.log_group_name()?.to_string(), LogGroup::from(g)))).collect())
}

impl From<&aws_sdk_cloudwatchlogs::types::LogGroup> for LogGroup {
    fn from(described: &aws_sdk_cloudwatchlogs::types::LogGroup) -> LogGroup {
        LogGroup {
            arn: described.arn().unwrap_or_default().trim_end_matches(":*").to_string(),
            retention_days: described.retention_in_days().map(i64::from),
            kms_key: described.kms_key_id().map(str::to_string),
        }
    }
}

/// Creates the log group (encrypted under `kms_key` when given) or adopts it, then converges retention, the
/// key and tags, writing only what differs. A group found without the key gets it; one with a key the
/// stack did not ask for keeps it.
pub async fn ensure(
    client: &Client,
    name: &str,
    retention_days: i64,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<LogGroup> {
    let mut found = describe(client, name).await?;
    let mut created = false;
    if found.is_none() {
        let out = client
            .create_log_group()
            .log_group_name(name)
            .set_kms_key_id(kms_key.map(str::to_string))
            .set_tags(Some(tags.clone().into_iter().collect()))
            .send()
            .await;
        match out {
            Ok(_) => created = true,
            // Another run created it between our look and our create: adopt it.
            Err(err) => {
                let err = AwsError::from_sdk("CreateLogGroup", err);
                if !err.is(&["ResourceAlreadyExistsException"]) {
                    return Err(err);
                }
            }
        }
        found = describe(client, name).await?;
    }
    let group = found.ok_or_else(|| {
        AwsError::other("DescribeLogGroups", format!("log group {name} vanished while being configured"))
    })?;
    if group.retention_days != Some(retention_days) {
        client
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(retention_days as i32)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutRetentionPolicy", e))?;
    }
    if let Some(key) = kms_key
        && !created
        && group.key_drift(name, Some(key)).is_some()
    {
        // Only events written from now on are encrypted with the key; earlier ones keep theirs.
        client
            .associate_kms_key()
            .log_group_name(name)
            .kms_key_id(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AssociateKmsKey", e))?;
    }
    let current_tags = if created { tags.clone() } else { self::tags(client, &group.arn).await? };
    super::refuse_foreign("TagResource", &format!("log group {name}"), &current_tags, tags)?;
    let missing = super::tags_to_write(tags, &current_tags);
    if !missing.is_empty() {
        client
            .tag_resource()
            .resource_arn(&group.arn)
            .set_tags(Some(missing.into_iter().collect()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagResource", e))?;
    }
    Ok(LogGroup { retention_days: Some(retention_days), ..group })
}

/// The log group's tags.
pub async fn tags(client: &Client, arn: &str) -> AwsResult<BTreeMap<String, String>> {
    let out = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTagsForResource", e))?;
    Ok(out.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
}

/// Takes the tags with these keys off the log group (keys it does not have are no error): the stack's tags that the
/// configuration no longer has.
pub async fn remove_tags(client: &Client, arn: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_resource().resource_arn(arn).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagResource", e))?;
    Ok(())
}

/// Deletes the log group; absent is success.
pub async fn delete(client: &Client, name: &str) -> AwsResult<()> {
    match client.delete_log_group().log_group_name(name).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteLogGroup", err);
            if err.is(&["ResourceNotFoundException"]) { Ok(()) } else { Err(err) }
        }
    }
}
