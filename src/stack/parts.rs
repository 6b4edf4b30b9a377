//! The parts of a stack, on one screen: what each part is, what it depends on, and how it is ensured,
//! observed and removed.
//!
//! Every operation here may be called again after a crash and must converge: ensure finds the part by its
//! deterministic name and adopts it before creating anything; remove treats "already gone" as done.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::aws::{self, AwsContext, AwsError};

use super::model::{COMPONENTS, StackSpec, bucket_arn, repository_name};

/// One part of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The S3 bucket for archived research data.
    ArchiveBucket,
    /// The S3 bucket for Terraform state (never deleted).
    StateBucket,
    /// One ECR repository, by component index into [`COMPONENTS`].
    Repository(usize),
    /// The CloudWatch log group.
    LogGroup,
}

impl Part {
    /// Every part of a stack.
    pub fn all() -> Vec<Part> {
        let mut parts = vec![Part::ArchiveBucket, Part::StateBucket, Part::LogGroup];
        parts.extend((0..COMPONENTS.len()).map(Part::Repository));
        parts
    }

    /// The parts this part needs before it can be ensured (and must outlive it on delete).
    pub fn depends_on(self) -> Vec<Part> {
        // The storage, registry and logging parts are independent of each other.
        Vec::new()
    }

    /// The dependency graph of all parts.
    pub fn graph() -> BTreeMap<Part, Vec<Part>> {
        Part::all().into_iter().map(|p| (p, p.depends_on())).collect()
    }

    /// The part's key, used in tags and drift messages.
    pub fn key(self) -> String {
        match self {
            Part::ArchiveBucket => "archive_bucket".into(),
            Part::StateBucket => "state_bucket".into(),
            Part::Repository(i) => format!("ecr_{}", COMPONENTS[i]),
            Part::LogGroup => "log_group".into(),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// What is known about an existing part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartState {
    /// Its ARN, where it has one.
    pub arn: Option<String>,
    /// Its URL, where it has one (ECR repositories).
    pub url: Option<String>,
    /// Settings that differ from the managed ones.
    pub drift: Vec<String>,
    /// Log retention in days, for the log group.
    pub retention_days: Option<i64>,
    /// The part's tags, where they were read.
    pub tags: Option<BTreeMap<String, String>>,
}

/// What removing a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The part is gone.
    Removed,
    /// The part was deliberately kept; the text says why.
    Retained(String),
}

/// A part operation failed.
#[derive(Debug, Clone)]
pub enum PartError {
    /// AWS refused or failed a call.
    Aws(AwsError),
    /// The provider refused, to protect data; the text says what the user can do.
    Refused(String),
}

impl fmt::Display for PartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartError::Aws(e) => write!(f, "{e}"),
            PartError::Refused(why) => f.write_str(why),
        }
    }
}

impl From<AwsError> for PartError {
    fn from(e: AwsError) -> Self {
        PartError::Aws(e)
    }
}

/// Creates or adopts the part and converges its settings.
pub async fn ensure(part: Part, spec: &StackSpec, aws: &AwsContext) -> Result<PartState, PartError> {
    let tags = spec.part_tags(&part.key());
    match part {
        Part::ArchiveBucket | Part::StateBucket => {
            let bucket = bucket_name(part, spec);
            if !aws::s3::exists(&aws.s3, bucket).await? {
                aws::s3::create(&aws.s3, bucket, &spec.region).await?;
            }
            aws::s3::configure(&aws.s3, bucket, &spec.partition, &tags).await?;
            Ok(PartState { arn: Some(bucket_arn(&spec.partition, bucket)), tags: Some(tags), ..PartState::default() })
        }
        Part::Repository(i) => {
            let repo = aws::ecr::ensure(&aws.ecr, &repository_name(&spec.name, COMPONENTS[i]), &tags).await?;
            Ok(PartState { arn: Some(repo.arn), url: Some(repo.uri), tags: Some(tags), ..PartState::default() })
        }
        Part::LogGroup => {
            let group = aws::logs::ensure(&aws.logs, &spec.log_group, spec.log_retention_days, &tags).await?;
            Ok(PartState {
                arn: Some(group.arn),
                retention_days: group.retention_days,
                tags: Some(tags),
                ..PartState::default()
            })
        }
    }
}

/// Describes the part as it exists now; `None` when it does not exist.
pub async fn observe(part: Part, spec: &StackSpec, aws: &AwsContext) -> Result<Option<PartState>, PartError> {
    match part {
        Part::ArchiveBucket | Part::StateBucket => {
            let bucket = bucket_name(part, spec);
            Ok(aws::s3::observe(&aws.s3, bucket).await?.map(|b| PartState {
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
                arn: Some(group.arn),
                retention_days: group.retention_days,
                tags: Some(tags),
                ..PartState::default()
            }))
        }
    }
}

/// Removes the part, or keeps it where data must be protected.
pub async fn remove(part: Part, spec: &StackSpec, aws: &AwsContext) -> Result<Removal, PartError> {
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
    }
}

async fn remove_archive_bucket(spec: &StackSpec, aws: &AwsContext) -> Result<Removal, PartError> {
    let bucket = &spec.archive_bucket;
    if !aws::s3::exists(&aws.s3, bucket).await? {
        return Ok(Removal::Removed);
    }
    if !aws::s3::is_empty(&aws.s3, bucket).await? {
        if !spec.archive_force_destroy {
            return Err(PartError::Refused(archive_not_empty_message(bucket)));
        }
        // Reverse of creation: the policy goes first, then the data (force_destroy only), then the bucket.
        aws::s3::delete_policy(&aws.s3, bucket).await?;
        let deleted = aws::s3::empty(&aws.s3, bucket).await?;
        tracing::warn!(bucket = %bucket, versions = deleted, "archive_force_destroy: deleted every object version");
    } else {
        aws::s3::delete_policy(&aws.s3, bucket).await?;
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

fn bucket_name(part: Part, spec: &StackSpec) -> &str {
    if part == Part::ArchiveBucket { &spec.archive_bucket } else { &spec.state_bucket }
}

/// Parts that count as "the stack exists" on read: everything but the retained state bucket.
pub fn defining_parts() -> BTreeSet<Part> {
    Part::all().into_iter().filter(|p| *p != Part::StateBucket).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_has_a_distinct_key_and_the_graph_covers_them() {
        let keys: BTreeSet<String> = Part::all().into_iter().map(Part::key).collect();
        assert_eq!(keys.len(), Part::all().len());
        assert!(keys.contains("ecr_worker"));
        assert_eq!(Part::graph().len(), Part::all().len());
    }

    #[test]
    fn the_state_bucket_never_defines_existence() {
        assert!(!defining_parts().contains(&Part::StateBucket));
    }
}
