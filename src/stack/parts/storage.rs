//! Storage, registry and logging parts: the archive and state buckets, the ECR repositories and the log
//! group.

use crate::aws;

use super::super::model::{COMPONENTS, StackSpec, bucket_arn, repository_name};
use super::{Part, PartContext, PartError, PartResult, PartState, Removal};

fn bucket_name(part: Part, spec: &StackSpec) -> &str {
    if part == Part::ArchiveBucket { &spec.archive_bucket } else { &spec.state_bucket }
}

/// Ensures a storage, registry or logging part.
pub async fn ensure(part: Part, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    let tags = ctx.tags(part);
    match part {
        Part::ArchiveBucket | Part::StateBucket => {
            let bucket = bucket_name(part, spec);
            if !aws::s3::exists(&aws.s3, bucket).await? {
                aws::s3::create(&aws.s3, bucket, &spec.region).await?;
            }
            aws::s3::configure(&aws.s3, bucket, &spec.partition, &tags).await?;
            Ok(PartState {
                id: Some(bucket.to_string()),
                arn: Some(bucket_arn(&spec.partition, bucket)),
                tags: Some(tags),
                ..PartState::default()
            })
        }
        Part::Repository(i) => {
            let repo = aws::ecr::ensure(&aws.ecr, &repository_name(&spec.name, COMPONENTS[i]), &tags).await?;
            Ok(PartState { arn: Some(repo.arn), url: Some(repo.uri), tags: Some(tags), ..PartState::default() })
        }
        Part::LogGroup => {
            let group = aws::logs::ensure(&aws.logs, &spec.log_group, spec.log_retention_days, &tags).await?;
            Ok(PartState {
                id: Some(spec.log_group.clone()),
                arn: Some(group.arn),
                retention_days: group.retention_days,
                tags: Some(tags),
                ..PartState::default()
            })
        }
        _ => unreachable!("not a storage part: {part}"),
    }
}

/// Observes a storage, registry or logging part.
pub async fn observe(part: Part, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    match part {
        Part::ArchiveBucket | Part::StateBucket => {
            let bucket = bucket_name(part, spec);
            Ok(aws::s3::observe(&aws.s3, bucket).await?.map(|b| PartState {
                id: Some(bucket.to_string()),
                arn: Some(bucket_arn(&spec.partition, bucket)),
                drift: b.drift,
                tags: Some(b.tags),
                ..PartState::default()
            }))
        }
        Part::Repository(i) => {
            let repo = aws::ecr::describe(&aws.ecr, &repository_name(&spec.name, COMPONENTS[i])).await?;
            Ok(repo.map(|r| PartState { arn: Some(r.arn), url: Some(r.uri), drift: r.drift, ..PartState::default() }))
        }
        Part::LogGroup => {
            // Retention drift is not listed here: read records the actual retention in
            // log_retention_days, so the plan shows it as a change of that attribute.
            let Some(group) = aws::logs::describe(&aws.logs, &spec.log_group).await? else { return Ok(None) };
            let tags = aws::logs::tags(&aws.logs, &group.arn).await?;
            Ok(Some(PartState {
                id: Some(spec.log_group.clone()),
                arn: Some(group.arn),
                retention_days: group.retention_days,
                tags: Some(tags),
                ..PartState::default()
            }))
        }
        _ => unreachable!("not a storage part: {part}"),
    }
}

/// Removes a storage, registry or logging part; the state bucket is always retained.
pub async fn remove(part: Part, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    match part {
        Part::StateBucket => Ok(Removal::Retained(format!(
            "The state bucket {} was kept: it may hold Terraform state, including this configuration's own. Delete it \
             yourself once nothing uses it.",
            spec.state_bucket
        ))),
        Part::ArchiveBucket => remove_archive_bucket(spec, aws).await,
        Part::Repository(i) => {
            aws::ecr::delete(&aws.ecr, &repository_name(&spec.name, COMPONENTS[i])).await?;
            Ok(Removal::Removed)
        }
        Part::LogGroup => {
            aws::logs::delete(&aws.logs, &spec.log_group).await?;
            Ok(Removal::Removed)
        }
        _ => unreachable!("not a storage part: {part}"),
    }
}

async fn remove_archive_bucket(spec: &StackSpec, aws: &aws::AwsContext) -> PartResult<Removal> {
    let bucket = &spec.archive_bucket;
    if !aws::s3::exists(&aws.s3, bucket).await? {
        return Ok(Removal::Removed);
    }
    let empty = aws::s3::is_empty(&aws.s3, bucket).await?;
    if !empty && !spec.archive_force_destroy {
        return Err(PartError::Refused(archive_not_empty_message(bucket)));
    }
    // Reverse of creation: the policy goes first, then the data (force_destroy only), then the bucket.
    aws::s3::delete_policy(&aws.s3, bucket).await?;
    if !empty {
        let deleted = aws::s3::empty(&aws.s3, bucket).await?;
        tracing::warn!(bucket = %bucket, versions = deleted, "archive_force_destroy: deleted every object version");
    }
    aws::s3::delete(&aws.s3, bucket).await?;
    Ok(Removal::Removed)
}

/// The message for a destroy blocked by archived data.
pub fn archive_not_empty_message(bucket: &str) -> String {
    format!(
        "The archive bucket {bucket} still holds archived data, so it was not deleted. Move the data elsewhere, or \
         set archive_force_destroy = true and apply before destroying if the data may really be deleted."
    )
}
