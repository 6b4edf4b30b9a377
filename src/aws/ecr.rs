//! Amazon ECR: the stack's image repositories (`<stack>/web`, `<stack>/broker`, `<stack>/worker`).
//!
//! Repositories scan images on push, keep tags immutable, and expire untagged images after a day so
//! superseded layers do not pile up.

use std::collections::BTreeMap;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Tag,
};

use super::{AwsError, AwsResult};

/// Days an untagged image is kept.
pub const UNTAGGED_IMAGE_DAYS: i32 = 1;

/// A repository as the stack needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Its ARN.
    pub arn: String,
    /// The URL to push and pull images.
    pub uri: String,
    /// Differences from the managed settings.
    pub drift: Vec<String>,
}

/// The lifecycle policy that expires untagged images (FSBP ECR.3).
pub fn lifecycle_policy() -> String {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": "Expire untagged images",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": UNTAGGED_IMAGE_DAYS
            },
            "action": { "type": "expire" }
        }]
    })
    .to_string()
}

fn tag_list(tags: &BTreeMap<String, String>) -> AwsResult<Vec<Tag>> {
    super::try_tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// Describes the repository; `None` when it does not exist. Its drift covers scanning only: the lifecycle
/// policy is a request of its own ([`lifecycle_drift`]), made only for a repository that exists, so that
/// looking for a stack's names before it is created costs one request per repository.
pub async fn describe(client: &Client, name: &str) -> AwsResult<Option<Repository>> {
    let out = match client.describe_repositories().repository_names(name).send().await {
        Ok(out) => out,
        Err(err) => {
            let err = AwsError::from_sdk("DescribeRepositories", err);
            return if err.is(&["RepositoryNotFoundException"]) { Ok(None) } else { Err(err) };
        }
    };
    let Some(repo) = out.repositories().first() else { return Ok(None) };
    let mut drift = Vec::new();
    if !repo.image_scanning_configuration().is_some_and(|c| c.scan_on_push()) {
        drift.push("scan on push is off".to_string());
    }
    Ok(Some(Repository {
        arn: repo.repository_arn().unwrap_or_default().to_string(),
        uri: repo.repository_uri().unwrap_or_default().to_string(),
        drift,
    }))
}

/// How the repository's lifecycle policy differs from the stack's: `None` when it is the stack's. A
/// repository deleted meanwhile has no drift to report (its absence is the caller's finding).
pub async fn lifecycle_drift(client: &Client, name: &str) -> AwsResult<Option<String>> {
    match client.get_lifecycle_policy().repository_name(name).send().await {
        Ok(out) => Ok(policy_drift(out.lifecycle_policy_text())),
        Err(err) => {
            let err = AwsError::from_sdk("GetLifecyclePolicy", err);
            if err.is(&["RepositoryNotFoundException"]) {
                Ok(None)
            } else if err.is(&["LifecyclePolicyNotFoundException"]) {
                Ok(Some("lifecycle policy is missing".to_string()))
            } else {
                Err(err)
            }
        }
    }
}

/// How a lifecycle policy text as ECR returns it differs from the stack's. Only what decides which images
/// expire is compared (each rule's priority, selection and action, as JSON values), so another spacing,
/// key order or description is not drift and cannot make every refresh report a change.
fn policy_drift(text: Option<&str>) -> Option<String> {
    let rules = |t: &str| {
        let policy: serde_json::Value = serde_json::from_str(t).ok()?;
        let mut rules: Vec<_> = policy["rules"]
            .as_array()?
            .iter()
            .map(|r| (r["rulePriority"].as_i64(), r["selection"].clone(), r["action"].clone()))
            .collect();
        rules.sort_by_key(|r| r.0);
        Some(rules)
    };
    let same = text.and_then(rules).is_some_and(|found| Some(found) == rules(&lifecycle_policy()));
    (!same).then(|| "lifecycle policy is not the stack's (untagged images expire after a day)".to_string())
}

/// Creates the repository (encrypted with `kms_key` when given, which ECR fixes at creation) or adopts the
/// existing one, then converges scanning, lifecycle policy and tags, writing only what differs.
pub async fn ensure(
    client: &Client,
    name: &str,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<Repository> {
    let (repo, created) = match describe(client, name).await? {
        Some(repo) => (repo, false),
        None => create(client, name, kms_key, tags).await?,
    };
    // `describe`'s drift covers scanning only.
    if !repo.drift.is_empty() {
        client
            .put_image_scanning_configuration()
            .repository_name(name)
            .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutImageScanningConfiguration", e))?;
    }
    // A repository this call created has no lifecycle policy yet and has the spec's tags.
    let (policy_drift, current_tags) = if created {
        (Some(String::new()), tags.clone())
    } else {
        tokio::try_join!(lifecycle_drift(client, name), self::tags(client, &repo.arn))?
    };
    if policy_drift.is_some() {
        client
            .put_lifecycle_policy()
            .repository_name(name)
            .lifecycle_policy_text(lifecycle_policy())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutLifecyclePolicy", e))?;
    }
    super::refuse_foreign("TagResource", &format!("repository {name}"), &current_tags, tags)?;
    let missing = super::tags_to_write(tags, &current_tags);
    if !missing.is_empty() {
        client
            .tag_resource()
            .resource_arn(&repo.arn)
            .set_tags(Some(tag_list(&missing)?))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TagResource", e))?;
    }
    Ok(Repository { drift: Vec::new(), ..repo })
}

/// Creates the repository with scanning on and the spec's tags; `true` beside it when this call created it,
/// `false` when another run had created it between our look and our create (it is adopted, and converged
/// like any existing one).
async fn create(
    client: &Client,
    name: &str,
    kms_key: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<(Repository, bool)> {
    let created = client
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(ImageTagMutability::Immutable)
        .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
        .encryption_configuration(
            EncryptionConfiguration::builder()
                .encryption_type(if kms_key.is_some() { EncryptionType::Kms } else { EncryptionType::Aes256 })
                .set_kms_key(kms_key.map(str::to_string))
                .build()?,
        )
        .set_tags(Some(tag_list(tags)?))
        .send()
        .await;
    match created {
        Ok(out) => {
            let repo = out
                .repository()
                .ok_or_else(|| AwsError::other("CreateRepository", format!("no repository in the reply for {name}")))?;
            let repo = Repository {
                arn: repo.repository_arn().unwrap_or_default().to_string(),
                uri: repo.repository_uri().unwrap_or_default().to_string(),
                drift: Vec::new(),
            };
            Ok((repo, true))
        }
        Err(err) => {
            let err = AwsError::from_sdk("CreateRepository", err);
            if !err.is(&["RepositoryAlreadyExistsException"]) {
                return Err(err);
            }
            let repo = describe(client, name).await?.ok_or_else(|| {
                AwsError::other("DescribeRepositories", format!("repository {name} exists but cannot be read"))
            })?;
            Ok((repo, false))
        }
    }
}

/// Whether the repository holds an image with this tag; `false` when the repository does not exist.
/// Reads only.
pub async fn has_image(client: &Client, repository: &str, tag: &str) -> AwsResult<bool> {
    let id = aws_sdk_ecr::types::ImageIdentifier::builder().image_tag(tag).build();
    match client.describe_images().repository_name(repository).image_ids(id).send().await {
        Ok(out) => Ok(!out.image_details().is_empty()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeImages", err);
            if err.is(&["ImageNotFoundException", "RepositoryNotFoundException"]) { Ok(false) } else { Err(err) }
        }
    }
}

/// How many images the repository holds, up to `at_most`. Reads only.
pub async fn image_count(client: &Client, repository: &str, at_most: i32) -> AwsResult<usize> {
    match client.list_images().repository_name(repository).max_results(at_most).send().await {
        Ok(out) => Ok(out.image_ids().len()),
        Err(err) => {
            let err = AwsError::from_sdk("ListImages", err);
            if err.is(&["RepositoryNotFoundException"]) { Ok(0) } else { Err(err) }
        }
    }
}

/// The repository's tags.
pub async fn tags(client: &Client, arn: &str) -> AwsResult<BTreeMap<String, String>> {
    let out = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTagsForResource", e))?;
    Ok(super::tag_map(out.tags().iter().map(|t| (t.key(), t.value()))))
}

/// Takes the tags with these keys off the repository (keys it does not have are no error): the stack's tags that
/// the configuration no longer has.
pub async fn remove_tags(client: &Client, arn: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_resource().resource_arn(arn).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagResource", e))?;
    Ok(())
}

/// Deletes the repository, with its images only when `with_images` (otherwise ECR refuses a repository
/// that holds any); absent is success.
pub async fn delete(client: &Client, name: &str, with_images: bool) -> AwsResult<()> {
    match client.delete_repository().repository_name(name).force(with_images).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteRepository", err);
            if err.is(&["RepositoryNotFoundException"]) { Ok(()) } else { Err(err) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_policy_expires_only_untagged_images() {
        let policy: serde_json::Value = serde_json::from_str(&lifecycle_policy()).unwrap();
        assert_eq!(policy["rules"][0]["selection"]["tagStatus"], "untagged");
        assert_eq!(policy["rules"][0]["action"]["type"], "expire");
    }

    #[test]
    fn a_lifecycle_policy_is_judged_by_what_it_expires() {
        let respaced =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&lifecycle_policy()).unwrap());
        assert_eq!(policy_drift(respaced.ok().as_deref()), None, "the stack's policy, spaced otherwise");
        let keep_all = lifecycle_policy().replace("\"countNumber\":1", "\"countNumber\":30");
        assert_ne!(keep_all, lifecycle_policy());
        assert!(policy_drift(Some(&keep_all)).is_some(), "another expiry is drift");
        let described = lifecycle_policy().replace("Expire untagged images", "written by someone else");
        assert_eq!(policy_drift(Some(&described)), None, "a description decides nothing");
        assert!(policy_drift(Some("not json")).is_some());
        assert!(policy_drift(None).is_some());
    }
}
