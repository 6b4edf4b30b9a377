//! Storage, registry and logging parts: the archive and state buckets, the bucket the archive's server
//! access logs go to, the ECR repositories and the log groups (the stack's own, and the two RDS publishes
//! the database's error and slow query logs to).
//!
//! The access log bucket is encrypted with SSE-S3 even under `kms_key_arn`: S3 delivers server access logs
//! only to such buckets. Its logs expire after `log_retention_days`, like the log groups. The state bucket
//! does not log there: it outlives the stack, and its logs would outlive their bucket.
//!
//! S3 cannot tag a bucket in the call that creates it (the emulator ignores tags there, and callers may
//! lack the newer permission), so a crash between CreateBucket and PutBucketTagging would leave a bucket
//! with the stack's name and no mark, which the next run must not mistake for someone else's, nor someone
//! else's for its own. Before creating a bucket the stack writes a claim, a tagged SSM parameter naming
//! the bucket; a bucket found without tags but with the stack's claim is the stack's. The claim is written
//! only after the bucket was seen not to exist, and removed once the bucket carries its tags.

use std::collections::BTreeMap;

use crate::aws;

use super::super::model::{COMPONENTS, StackSpec, bucket_arn, repository_name};
use super::{Part, PartContext, PartError, PartResult, PartState, Removal};

/// The storage parts: the buckets, the ECR repositories and the log groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoragePart {
    /// [`Part::AccessLogBucket`].
    AccessLogBucket,
    /// [`Part::ArchiveBucket`].
    ArchiveBucket,
    /// [`Part::StateBucket`].
    StateBucket,
    /// [`Part::Repository`].
    Repository(usize),
    /// [`Part::LogGroup`].
    LogGroup,
}

impl From<StoragePart> for Part {
    fn from(part: StoragePart) -> Part {
        match part {
            StoragePart::AccessLogBucket => Part::AccessLogBucket,
            StoragePart::ArchiveBucket => Part::ArchiveBucket,
            StoragePart::StateBucket => Part::StateBucket,
            StoragePart::Repository(i) => Part::Repository(i),
            StoragePart::LogGroup => Part::LogGroup,
        }
    }
}

/// The stack's three buckets, which are made, claimed and observed alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    AccessLogs,
    Archive,
    State,
}

impl Bucket {
    const ALL: [Bucket; 3] = [Bucket::AccessLogs, Bucket::Archive, Bucket::State];
}

impl From<Bucket> for Part {
    fn from(bucket: Bucket) -> Part {
        match bucket {
            Bucket::AccessLogs => Part::AccessLogBucket,
            Bucket::Archive => Part::ArchiveBucket,
            Bucket::State => Part::StateBucket,
        }
    }
}

fn bucket_name(bucket: Bucket, spec: &StackSpec) -> &str {
    match bucket {
        Bucket::AccessLogs => &spec.access_log_bucket,
        Bucket::Archive => &spec.archive_bucket,
        Bucket::State => &spec.state_bucket,
    }
}

/// Where the archive bucket's server access logs go.
fn archive_log_target(spec: &StackSpec) -> aws::s3::LogTarget {
    aws::s3::LogTarget { bucket: spec.access_log_bucket.clone(), prefix: format!("s3/{}/", spec.archive_bucket) }
}

/// Where the load balancer's access logs go (FSBP ELB.5): the same bucket, under `elb/`.
pub fn load_balancer_log_target(spec: &StackSpec) -> aws::s3::LogTarget {
    aws::s3::LogTarget { bucket: spec.access_log_bucket.clone(), prefix: "elb".into() }
}

/// The bucket's policy: TLS only, and for the access log bucket, the S3 logging service writing the
/// archive's logs and the region's load balancer log delivery writing the load balancer's. The latter is
/// there with or without a load balancer, so adding one changes no policy.
fn bucket_policy(bucket: Bucket, ctx: &PartContext<'_>) -> String {
    let spec = ctx.spec;
    let name = bucket_name(bucket, spec);
    match bucket {
        Bucket::AccessLogs => {
            let sources = [(spec.archive_bucket.as_str(), &archive_log_target(spec))];
            let load_balancer = aws::s3::LoadBalancerLogs {
                principal: aws::elbv2::log_delivery_principal(&spec.partition, &spec.region),
                prefix: load_balancer_log_target(spec).prefix,
            };
            let account = ctx.aws.account_id.as_deref();
            aws::s3::access_log_policy(&spec.partition, name, &sources, Some(&load_balancer), account)
        }
        Bucket::Archive | Bucket::State => aws::s3::tls_only_policy(&spec.partition, name),
    }
}

/// The bucket's default encryption key: none (SSE-S3) for the access logs, which S3 delivers only there.
fn bucket_key(bucket: Bucket, spec: &StackSpec) -> Option<&str> {
    match bucket {
        Bucket::AccessLogs => None,
        Bucket::Archive | Bucket::State => spec.kms_key_arn.as_deref(),
    }
}

/// The SSM parameter that claims a bucket for the stack while it is being created.
fn claim_name(stack: &str, bucket: Bucket) -> String {
    format!("/datavault/{stack}/claims/{}", Part::from(bucket).key())
}

/// Creates the bucket if it does not exist, claiming it first, and gives it the stack's tags; the claim
/// goes once the tags are on. A bucket found without the stack's mark keeps its claim until then too.
/// `true` when this call created the bucket (it has none of the managed settings yet).
async fn create_and_mark(ctx: &PartContext<'_>, part: Bucket, tags: &BTreeMap<String, String>) -> PartResult<bool> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    let bucket = bucket_name(part, spec);
    let claim = claim_name(&spec.name, part);
    let what = format!("S3 bucket {bucket}");
    // `marked`: found with the stack's mark, so no claim of this stack is left on it.
    let (found, fresh, marked) = if aws::s3::exists(&aws.s3, bucket).await? {
        let found = aws::s3::tags(&aws.s3, bucket).await?;
        let marked = found.contains_key(aws::STACK_TAG);
        (found, false, marked)
    } else {
        let why = format!("Claims S3 bucket {bucket} for DataVault stack {} while it is created", spec.name);
        aws::ssm::put_claim(&aws.ssm, &claim, bucket, &why, tags).await?;
        if aws::s3::create(&aws.s3, bucket, &spec.region).await? {
            (BTreeMap::new(), true, false)
        } else {
            (aws::s3::tags(&aws.s3, bucket).await?, false, false)
        }
    };
    aws::refuse_foreign("PutBucketTagging", &what, &found, tags)?;
    aws::s3::converge_tags(&aws.s3, bucket, tags, &found).await?;
    if !marked {
        aws::ssm::delete_claim(&aws.ssm, &claim).await?;
    }
    Ok(fresh)
}

/// A bucket's marks: its tags, or, while it has none, the stack's claim on it.
async fn bucket_marks(
    ctx: &PartContext<'_>,
    part: Bucket,
    tags: BTreeMap<String, String>,
) -> PartResult<BTreeMap<String, String>> {
    if tags.contains_key(aws::STACK_TAG) {
        return Ok(tags);
    }
    let claimed = aws::ssm::claim(&ctx.aws.ssm, &claim_name(&ctx.spec.name, part), &ctx.spec.name).await?;
    Ok(if claimed.as_deref() == Some(bucket_name(part, ctx.spec)) { ctx.tags(part.into()) } else { tags })
}

/// Ensures a storage, registry or logging part.
pub async fn ensure(part: StoragePart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    let tags = ctx.tags(part.into());
    match part {
        StoragePart::AccessLogBucket => ensure_bucket(Bucket::AccessLogs, ctx, tags).await,
        StoragePart::ArchiveBucket => ensure_bucket(Bucket::Archive, ctx, tags).await,
        StoragePart::StateBucket => ensure_bucket(Bucket::State, ctx, tags).await,
        StoragePart::Repository(i) => {
            let name = repository_name(&spec.name, COMPONENTS[i]);
            let repo = aws::ecr::ensure(&aws.ecr, &name, spec.kms_key_arn.as_deref(), &tags).await?;
            let state =
                PartState { arn: Some(repo.arn), url: Some(repo.uri), tags: Some(tags), ..PartState::default() };
            let present = aws::ecr::has_image(&aws.ecr, &name, &spec.image_tag).await?;
            Ok(with_image(ctx, present, state))
        }
        StoragePart::LogGroup => {
            let key = spec.kms_key_arn.as_deref();
            let group = aws::logs::ensure(&aws.logs, &spec.log_group, spec.log_retention_days, key, &tags).await?;
            ensure_database_log_groups(ctx, &tags).await?;
            Ok(PartState {
                id: Some(spec.log_group.clone()),
                arn: Some(group.arn),
                retention_days: group.retention_days,
                tags: Some(tags),
                ..PartState::default()
            })
        }
    }
}

async fn ensure_bucket(part: Bucket, ctx: &PartContext<'_>, tags: BTreeMap<String, String>) -> PartResult<PartState> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    let bucket = bucket_name(part, spec);
    let fresh = create_and_mark(ctx, part, &tags).await?;
    aws::s3::configure(&aws.s3, bucket, &bucket_policy(part, ctx), bucket_key(part, spec), fresh).await?;
    let days = spec.log_retention_days;
    match part {
        Bucket::AccessLogs if fresh || aws::s3::log_expiry_drift(&aws.s3, bucket, days).await?.is_some() => {
            aws::s3::put_log_expiry(&aws.s3, bucket, days).await?;
        }
        Bucket::Archive
            if fresh || aws::s3::logging_drift(&aws.s3, bucket, &archive_log_target(spec)).await?.is_some() =>
        {
            aws::s3::put_logging(&aws.s3, bucket, &archive_log_target(spec)).await?;
        }
        Bucket::AccessLogs | Bucket::Archive | Bucket::State => {}
    }
    Ok(PartState {
        id: Some(bucket.to_string()),
        arn: Some(bucket_arn(&spec.partition, bucket)),
        tags: Some(tags),
        ..PartState::default()
    })
}

/// Observes a storage, registry or logging part.
pub async fn observe(part: StoragePart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    match part {
        StoragePart::AccessLogBucket => observe_bucket(Bucket::AccessLogs, ctx).await,
        StoragePart::ArchiveBucket => observe_bucket(Bucket::Archive, ctx).await,
        StoragePart::StateBucket => observe_bucket(Bucket::State, ctx).await,
        StoragePart::Repository(i) => {
            let Some(repo) = aws::ecr::describe(&aws.ecr, &repository_name(&spec.name, COMPONENTS[i])).await? else {
                return Ok(None);
            };
            let name = repository_name(&spec.name, COMPONENTS[i]);
            let (tags, image, lifecycle) = tokio::join!(
                aws::ecr::tags(&aws.ecr, &repo.arn),
                aws::ecr::has_image(&aws.ecr, &name, &spec.image_tag),
                ctx.drift_read(aws::ecr::lifecycle_drift(&aws.ecr, &name))
            );
            let state = PartState {
                arn: Some(repo.arn),
                url: Some(repo.uri),
                drift: repo.drift.into_iter().chain(lifecycle?).collect(),
                tags: Some(tags?),
                ..PartState::default()
            };
            Ok(Some(with_image(ctx, image?, state)))
        }
        StoragePart::LogGroup => {
            // Retention drift is not listed here: read records the actual retention in
            // log_retention_days, so the plan shows it as a change of that attribute.
            let Some(group) = aws::logs::describe(&aws.logs, &spec.log_group).await? else { return Ok(None) };
            let (tags, drift) =
                tokio::join!(aws::logs::tags(&aws.logs, &group.arn), ctx.drift_read(database_log_group_drift(ctx)));
            let key_drift = group.key_drift(&spec.log_group, spec.kms_key_arn.as_deref());
            Ok(Some(PartState {
                id: Some(spec.log_group.clone()),
                arn: Some(group.arn),
                retention_days: group.retention_days,
                drift: key_drift.into_iter().chain(drift?).collect(),
                tags: Some(tags?),
                ..PartState::default()
            }))
        }
    }
}

async fn observe_bucket(part: Bucket, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    let bucket = bucket_name(part, spec);
    // Deciding whose a bucket is needs its tags alone; only a refresh reads the settings to judge them.
    let found = if ctx.judges_drift() {
        judged_bucket(part, ctx).await?
    } else {
        let tags = aws::s3::find(&aws.s3, bucket).await?;
        tags.map(|tags| aws::s3::BucketObservation { tags, drift: Vec::new(), kms_key: None })
    };
    let Some(found) = found else { return Ok(None) };
    let mut state = PartState {
        id: Some(bucket.to_string()),
        arn: Some(bucket_arn(&spec.partition, bucket)),
        drift: found.drift,
        tags: Some(bucket_marks(ctx, part, found.tags).await?),
        ..PartState::default()
    };
    state.facts.kms_key = found.kms_key;
    Ok(Some(state))
}

/// The bucket with every way its settings differ from the managed ones; `None` when it does not exist.
async fn judged_bucket(part: Bucket, ctx: &PartContext<'_>) -> PartResult<Option<aws::s3::BucketObservation>> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    let bucket = bucket_name(part, spec);
    let required: &[&str] = if part == Bucket::AccessLogs { &[aws::s3::LOGGING_SERVICE] } else { &[] };
    let more = async {
        match part {
            Bucket::AccessLogs => aws::s3::log_expiry_drift(&aws.s3, bucket, spec.log_retention_days).await,
            Bucket::Archive => aws::s3::logging_drift(&aws.s3, bucket, &archive_log_target(spec)).await,
            Bucket::State => Ok(None),
        }
    };
    // Asked alongside the bucket's other settings rather than after them: when the bucket turns out not to
    // exist, the answer (an error) is not used.
    let (found, more) = tokio::join!(aws::s3::observe(&aws.s3, bucket, bucket_key(part, spec), required), more);
    let Some(mut found) = found? else { return Ok(None) };
    found.drift.extend(more?);
    Ok(Some(found))
}

/// Removes a storage, registry or logging part; the state bucket is always retained.
pub async fn remove(part: StoragePart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (spec, aws) = (ctx.spec, ctx.aws);
    match part {
        StoragePart::StateBucket => Ok(Removal::Retained(format!(
            "The state bucket {} was kept: it may hold Terraform state, including this configuration's own. Delete it \
             yourself once nothing uses it.",
            spec.state_bucket
        ))),
        StoragePart::ArchiveBucket => remove_archive_bucket(spec, aws).await,
        StoragePart::AccessLogBucket => remove_access_log_bucket(spec, aws).await,
        StoragePart::Repository(i) => remove_repository(spec, aws, &repository_name(&spec.name, COMPONENTS[i])).await,
        StoragePart::LogGroup => {
            // The database's groups go first: while the stack's own group exists, a later destroy still
            // finds this part and comes back for them.
            remove_database_log_groups(ctx).await?;
            aws::logs::delete(&aws.logs, &spec.log_group).await?;
            Ok(Removal::Removed)
        }
    }
}

/// The log groups RDS publishes the database's logs to. The stack makes them itself, tagged and with the
/// stack's retention, before the database exists (the database part depends on this one): left to RDS,
/// they would be untagged, keep logs forever and outlive the stack.
fn database_log_groups(stack: &str) -> Vec<String> {
    aws::rds::LOG_EXPORTS.iter().map(|log_type| aws::rds::log_group_name(stack, log_type)).collect()
}

/// Whether the log group carries this stack's tag; someone else's group of that name is left as it is
/// (RDS still publishes into it).
async fn is_own_log_group(ctx: &PartContext<'_>, group: &aws::logs::LogGroup) -> PartResult<bool> {
    let tags = aws::logs::tags(&ctx.aws.logs, &group.arn).await?;
    Ok(tags.get(aws::STACK_TAG) == Some(&ctx.spec.name))
}

/// Creates the database's log groups, or brings the stack's own back to the stack's retention.
async fn ensure_database_log_groups(ctx: &PartContext<'_>, tags: &BTreeMap<String, String>) -> PartResult<()> {
    let (retention, key) = (ctx.spec.log_retention_days, ctx.spec.kms_key_arn.as_deref());
    for name in database_log_groups(&ctx.spec.name) {
        let wanted = match aws::logs::describe(&ctx.aws.logs, &name).await? {
            None => true,
            Some(group) if group.retention_days == Some(retention) && group.key_drift(&name, key).is_none() => false,
            Some(group) => is_own_log_group(ctx, &group).await?,
        };
        if wanted {
            aws::logs::ensure(&ctx.aws.logs, &name, retention, key, tags).await?;
        }
    }
    Ok(())
}

/// How the database's log groups differ from what the stack makes: missing, keeping logs for another time,
/// or not encrypted with the stack's key. Reads only, one request for all of them.
async fn database_log_group_drift(ctx: &PartContext<'_>) -> PartResult<Vec<String>> {
    let retention = ctx.spec.log_retention_days;
    let names = database_log_groups(&ctx.spec.name);
    let mut found = aws::logs::under_prefix(&ctx.aws.logs, &aws::rds::log_group_prefix(&ctx.spec.name)).await?;
    let key = ctx.spec.kms_key_arn.as_deref();
    let drift = names.iter().map(|name| (name, found.remove(name))).flat_map(|(name, group)| match group {
        None => vec![format!("log group {name} is missing")],
        Some(group) => {
            let retention = (group.retention_days != Some(retention)).then(|| {
                format!(
                    "log group {name} keeps logs for {}, expected {retention} days",
                    group.retention_days.map_or("ever".to_string(), |days| format!("{days} days")),
                )
            });
            retention.into_iter().chain(group.key_drift(name, key)).collect()
        }
    });
    Ok(drift.collect())
}

/// Deletes the database's log groups that carry the stack's tag.
async fn remove_database_log_groups(ctx: &PartContext<'_>) -> PartResult<()> {
    for name in database_log_groups(&ctx.spec.name) {
        if let Some(group) = aws::logs::describe(&ctx.aws.logs, &name).await?
            && is_own_log_group(ctx, &group).await?
        {
            aws::logs::delete(&ctx.aws.logs, &name).await?;
        }
    }
    Ok(())
}

/// Records whether the repository holds the image the services run (`image_tag`), and where to push it.
fn with_image(ctx: &PartContext<'_>, present: bool, mut state: PartState) -> PartState {
    state.facts.image_present = Some(present);
    state.facts.push_target = state.url.as_ref().map(|url| format!("{url}:{}", ctx.spec.image_tag));
    state
}

/// Deletes the repository when it is empty or the user allows deleting its images; otherwise keeps it and
/// says so (images take long to build, and a stack created again with the same name adopts them).
async fn remove_repository(spec: &StackSpec, aws: &aws::AwsContext, name: &str) -> PartResult<Removal> {
    if !spec.images_force_destroy {
        let images = aws::ecr::image_count(&aws.ecr, name, 100).await?;
        if images > 0 {
            let count = if images >= 100 { "100 or more".to_string() } else { images.to_string() };
            return Ok(Removal::Retained(format!(
                "The ECR repository {name} holds {count} image(s), so it was kept. A stack created again with the \
                 name {} uses it as it is; delete it yourself (aws ecr delete-repository --force) if the images are \
                 no longer needed, or set images_force_destroy = true before destroying.",
                spec.name
            )));
        }
    }
    aws::ecr::delete(&aws.ecr, name, spec.images_force_destroy).await?;
    Ok(Removal::Removed)
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

/// Deletes the access log bucket with its logs: the archive they record is gone (it goes first, and a
/// destroy that keeps it never gets here), and the logs would expire anyway.
async fn remove_access_log_bucket(spec: &StackSpec, aws: &aws::AwsContext) -> PartResult<Removal> {
    let bucket = &spec.access_log_bucket;
    if !aws::s3::exists(&aws.s3, bucket).await? {
        return Ok(Removal::Removed);
    }
    aws::s3::delete_policy(&aws.s3, bucket).await?;
    aws::s3::empty(&aws.s3, bucket).await?;
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

/// Deletes the stack's bucket claims that a crash before a bucket's tagging may have left. Absent is
/// success, and a stack without leftover claims sees only reads.
pub async fn remove_claims(spec: &StackSpec, aws: &aws::AwsContext) -> PartResult<()> {
    for part in Bucket::ALL {
        let claim = claim_name(&spec.name, part);
        if aws::ssm::claim(&aws.ssm, &claim, &spec.name).await?.is_some() {
            aws::ssm::delete_claim(&aws.ssm, &claim).await?;
        }
    }
    Ok(())
}
