//! AWS Secrets Manager: passwords the stack generates itself (the RabbitMQ password), which containers
//! receive through ECS `secrets` and which never enter Terraform state or logs.
//!
//! A generated value is never overwritten: ensuring an existing secret only converges its description,
//! tags and resource policy. Deletion always keeps a recovery window, so a mistaken destroy can be undone,
//! and a later ensure of the same name restores the secret (with its old value) instead of generating a new
//! one.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::types::Tag;

use super::{AwsError, AwsResult};

/// Length of generated passwords.
pub const GENERATED_PASSWORD_LENGTH: i64 = 32;
/// The recovery window Secrets Manager allows, in days.
pub const RECOVERY_WINDOW_DAYS: std::ops::RangeInclusive<i64> = 7..=30;

/// A secret as the stack needs it (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// Its ARN (with the random suffix Secrets Manager adds).
    pub arn: String,
    /// Whether it is scheduled for deletion (restorable until the recovery window ends).
    pub scheduled_for_deletion: bool,
    /// Its tags, which say whose it is.
    pub tags: BTreeMap<String, String>,
    /// The KMS key its values are encrypted with; `None`: the AWS managed key `aws/secretsmanager`.
    pub kms_key: Option<String>,
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    super::tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

fn to_info(out: &DescribeSecretOutput) -> SecretInfo {
    SecretInfo {
        arn: out.arn().unwrap_or_default().to_string(),
        scheduled_for_deletion: out.deleted_date().is_some(),
        tags: super::tag_map(out.tags().iter().map(|t| (t.key(), t.value()))),
        kms_key: out.kms_key_id().map(str::to_string),
    }
}

/// The raw description of the secret; `None` when it does not exist.
async fn describe_raw(client: &Client, name: &str) -> AwsResult<Option<DescribeSecretOutput>> {
    match client.describe_secret().secret_id(name).send().await {
        Ok(out) => Ok(Some(out)),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeSecret", err);
            if err.is(&["ResourceNotFoundException"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// Describes the secret (including one scheduled for deletion); `None` when it does not exist.
pub async fn describe_secret(client: &Client, name: &str) -> AwsResult<Option<SecretInfo>> {
    Ok(describe_raw(client, name).await?.as_ref().map(to_info))
}

/// Cancels a scheduled deletion, keeping the secret's value.
async fn restore(client: &Client, name: &str) -> AwsResult<()> {
    client.restore_secret().secret_id(name).send().await.map_err(|e| AwsError::from_sdk("RestoreSecret", e))?;
    Ok(())
}

/// Generates a password of letters and digits only, so it needs no escaping in AMQP or JDBC URLs, shell
/// scripts or properties files. The caller must never log it.
pub async fn random_password(client: &Client) -> AwsResult<String> {
    let out = client
        .get_random_password()
        .password_length(GENERATED_PASSWORD_LENGTH)
        .exclude_punctuation(true)
        .include_space(false)
        .require_each_included_type(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetRandomPassword", e))?;
    out.random_password()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| AwsError::other("GetRandomPassword", "the reply held no password"))
}

/// Creates the secret with a fresh password. Returns `None` when a secret of that name appeared since we
/// looked (a concurrent or interrupted run), which the caller then adopts.
async fn create(
    client: &Client,
    name: &str,
    description: &str,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<Option<String>> {
    let created = client
        .create_secret()
        .name(name)
        .description(description)
        .set_kms_key_id(kms_key.map(str::to_string))
        .secret_string(random_password(client).await?)
        .set_tags(Some(tag_list(tags)))
        .send()
        .await;
    match created {
        Ok(out) => Ok(Some(out.arn().unwrap_or_default().to_string())),
        Err(err) => {
            let err = AwsError::from_sdk("CreateSecret", err);
            if err.is(&["ResourceExistsException"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// Restores an existing secret if it is scheduled for deletion; returns its ARN and description. Refuses
/// one another stack's tags claim (see [`super::refuse_foreign`]), and restores only a secret that carries
/// the stack's own tag: nothing else proves that a deleted secret was the stack's.
async fn adopt(
    client: &Client,
    name: &str,
    existing: &DescribeSecretOutput,
    tags: &BTreeMap<String, String>,
) -> AwsResult<(String, String, Option<String>, BTreeMap<String, String>)> {
    let info = to_info(existing);
    super::refuse_foreign("RestoreSecret", &format!("secret {name}"), &info.tags, tags)?;
    if info.scheduled_for_deletion && info.tags.get(super::STACK_TAG) != tags.get(super::STACK_TAG) {
        return Err(AwsError::other(
            "RestoreSecret",
            format!(
                "secret {name} is scheduled for deletion and carries no {} tag of this stack, so the stack \
                 cannot tell it is its own and will not restore it; restore it and tag it, or delete it for good",
                super::STACK_TAG
            ),
        ));
    }
    if info.scheduled_for_deletion {
        restore(client, name).await?;
    }
    Ok((info.arn, existing.description().unwrap_or_default().to_string(), info.kms_key, info.tags))
}

/// The resource policy of a stack's secret, in `account`. It refuses every principal of another account,
/// and refuses the value to `workload_roles` (the roles the stack's instances and containers run as): only
/// the task execution role, which hands the value to a task as it starts, reads it among the stack's own
/// roles. It only denies, so it grants nothing by itself and cannot lock out the account's operators or
/// whoever runs Terraform, whose principal the stack cannot know in advance.
pub fn secret_policy(account: &str, workload_roles: &[String]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyOtherAccounts",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:*",
                "Resource": "*",
                "Condition": { "StringNotEquals": { "aws:PrincipalAccount": account } }
            },
            {
                "Sid": "DenyTheStacksWorkloads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": { "ArnEquals": { "aws:PrincipalArn": workload_roles } }
            }
        ]
    })
    .to_string()
}

/// The secret's resource policy; `None` when it has none. Reads only.
pub async fn resource_policy(client: &Client, name: &str) -> AwsResult<Option<String>> {
    let out = client
        .get_resource_policy()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetResourcePolicy", e))?;
    Ok(out.resource_policy().filter(|p| !p.is_empty()).map(str::to_string))
}

/// Puts `policy` on the secret unless an equivalent one is in force. `BlockPublicPolicy` makes AWS refuse a
/// policy that would open the secret to the world, should this one ever be edited into one.
async fn converge_policy(client: &Client, name: &str, policy: &str) -> AwsResult<()> {
    if resource_policy(client, name).await?.is_some_and(|p| super::iam::same_policy(&p, policy)) {
        return Ok(());
    }
    client
        .put_resource_policy()
        .secret_id(name)
        .resource_policy(policy)
        .block_public_policy(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutResourcePolicy", e))?;
    Ok(())
}

/// Makes sure the secret `name` exists and holds a generated password: adopts an existing secret (restoring
/// it if scheduled for deletion) without ever changing its value, or creates it with a random 32-character
/// alphanumeric password, encrypted with `kms_key` when given. Then converges description, the key (when
/// one is given), tags and, when given, its resource `policy`. May be called again after a crash;
/// converges. Returns the secret's ARN.
pub async fn ensure_generated_secret(
    client: &Client,
    name: &str,
    description: &str,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
    policy: Option<&str>,
) -> AwsResult<String> {
    let (arn, current_description, current_key, current_tags) = match describe_raw(client, name).await? {
        Some(existing) => adopt(client, name, &existing, tags).await?,
        None => match create(client, name, description, kms_key, tags).await? {
            Some(arn) => (arn, description.to_string(), kms_key.map(str::to_string), tags.clone()),
            None => {
                let existing = describe_raw(client, name).await?.ok_or_else(|| {
                    AwsError::other("DescribeSecret", format!("secret {name} reported as existing but not found"))
                })?;
                adopt(client, name, &existing, tags).await?
            }
        },
    };
    let new_key = kms_key.filter(|key| !super::kms::same_key(current_key.as_deref(), key));
    if current_description != description || new_key.is_some() {
        // Without SecretString, UpdateSecret changes metadata only and creates no new version; a new key
        // re-encrypts the current and previous versions.
        client
            .update_secret()
            .secret_id(name)
            .description(description)
            .set_kms_key_id(new_key.map(str::to_string))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateSecret", e))?;
    }
    let missing = super::tags_to_write(tags, &current_tags);
    if !missing.is_empty() {
        client
            .tag_resource()
            .secret_id(name)
            .set_tags(Some(tag_list(&missing)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagResource", e))?;
    }
    if let Some(policy) = policy {
        converge_policy(client, name, policy).await?;
    }
    Ok(arn)
}

/// Takes the tags with these keys off the secret (keys it does not have are no error): the stack's tags that the
/// configuration no longer has.
pub async fn remove_tags(client: &Client, id: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_resource().secret_id(id).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagResource", e))?;
    Ok(())
}

/// The secret's current value, for the one request that needs it; the caller must never log it.
pub async fn secret_value(client: &Client, id: &str) -> AwsResult<String> {
    let out =
        client.get_secret_value().secret_id(id).send().await.map_err(|e| AwsError::from_sdk("GetSecretValue", e))?;
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| AwsError::other("GetSecretValue", format!("secret {id} holds no text value")))
}

/// Stores a new current value in the secret (the previous one stays as AWSPREVIOUS). Idempotent.
pub async fn put_secret_value(client: &Client, id: &str, value: &str) -> AwsResult<()> {
    client
        .put_secret_value()
        .secret_id(id)
        .secret_string(value)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutSecretValue", e))?;
    Ok(())
}

/// The secret's tags; `None` when it does not exist.
pub async fn secret_tags(client: &Client, name: &str) -> AwsResult<Option<BTreeMap<String, String>>> {
    Ok(describe_raw(client, name).await?.map(|out| super::tag_map(out.tags().iter().map(|t| (t.key(), t.value())))))
}

/// Schedules the secret for deletion after `recovery_window_days` (7 to 30), so a mistaken destroy can be
/// undone with RestoreSecret or a new apply. Absent or already scheduled is success, so it may be called
/// again after a crash.
pub async fn delete_secret(client: &Client, name: &str, recovery_window_days: i64) -> AwsResult<()> {
    if !RECOVERY_WINDOW_DAYS.contains(&recovery_window_days) {
        return Err(AwsError::other(
            "DeleteSecret",
            format!("recovery window must be 7 to 30 days, got {recovery_window_days}"),
        ));
    }
    match describe_secret(client, name).await? {
        None => return Ok(()),
        Some(info) if info.scheduled_for_deletion => return Ok(()),
        Some(_) => {}
    }
    match client.delete_secret().secret_id(name).recovery_window_in_days(recovery_window_days).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteSecret", err);
            // Deleted or scheduled by someone else between our look and our call.
            if err.is(&["ResourceNotFoundException"]) || is_already_scheduled(&err) { Ok(()) } else { Err(err) }
        }
    }
}

/// Whether Secrets Manager refused a call because the secret is already scheduled for deletion.
fn is_already_scheduled(err: &AwsError) -> bool {
    let message = err.message.to_ascii_lowercase();
    err.is(&["InvalidRequestException"])
        && (message.contains("marked deleted") || message.contains("marked for deletion"))
}

#[cfg(test)]
mod tests {
    use aws_smithy_types::DateTime;

    use super::*;

    #[test]
    fn a_deletion_date_means_scheduled_for_deletion() {
        let live = DescribeSecretOutput::builder().arn("arn:aws:secretsmanager:eu-west-2:1:secret:mq-AbCdEf").build();
        assert_eq!(
            to_info(&live),
            SecretInfo {
                arn: "arn:aws:secretsmanager:eu-west-2:1:secret:mq-AbCdEf".into(),
                scheduled_for_deletion: false,
                tags: BTreeMap::new(),
                kms_key: None,
            }
        );
        let doomed =
            DescribeSecretOutput::builder().arn("arn:x").deleted_date(DateTime::from_secs(1_800_000_000)).build();
        assert!(to_info(&doomed).scheduled_for_deletion);
    }

    #[test]
    fn already_scheduled_refusals_are_recognised() {
        let aws = AwsError {
            operation: "DeleteSecret",
            code: Some("InvalidRequestException".into()),
            message: "You can't perform this operation on the secret because it was marked for deletion.".into(),
        };
        let moto = AwsError {
            message: "You tried to perform the operation on a secret that's currently marked deleted.".into(),
            ..aws.clone()
        };
        let other = AwsError { message: "You can't delete a secret that has replicas.".into(), ..aws.clone() };
        assert!(is_already_scheduled(&aws));
        assert!(is_already_scheduled(&moto));
        assert!(!is_already_scheduled(&other));
    }

    #[test]
    fn tags_become_secrets_manager_tags() {
        let tags = tag_list(&[("datavault:stack".to_string(), "vault".to_string())].into());
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].key(), Some("datavault:stack"));
        assert_eq!(tags[0].value(), Some("vault"));
    }

    #[test]
    fn the_secret_policy_only_denies_other_accounts_and_the_workloads_reading_the_value() {
        let roles = ["arn:aws:iam::123456789012:role/vault-web-task".to_string()];
        let policy: serde_json::Value = serde_json::from_str(&secret_policy("123456789012", &roles)).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert!(statements.iter().all(|s| s["Effect"] == "Deny"), "it must grant nothing: {policy}");
        assert_eq!(statements[0]["Condition"]["StringNotEquals"]["aws:PrincipalAccount"], "123456789012");
        assert_eq!(statements[1]["Action"], "secretsmanager:GetSecretValue");
        assert_eq!(statements[1]["Condition"]["ArnEquals"]["aws:PrincipalArn"][0], roles[0].as_str());
    }

    #[tokio::test]
    async fn recovery_window_is_validated_before_any_call() {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("eu-west-2"))
            .build();
        let client = Client::from_conf(config);
        let err = delete_secret(&client, "mq", 3).await.unwrap_err();
        assert!(err.message.contains("7 to 30"), "{err}");
    }
}
