//! Taking the tags the configuration no longer has off the stack's parts.
//!
//! Every ensure adds and overwrites tags but never removes one, so that tags others add stay. A key
//! dropped from `tags` or the provider's `default_tags` would therefore stay on every part, and the next
//! refresh, which reads the stack's tags from its log group, would find it again: every plan would show
//! it. An apply that drops keys (the prior state's `tags_all` has them, the plan's does not) takes them
//! off each part it ensured.

use crate::aws::{self, AwsContext, AwsResult};

use super::{Part, PartState};

/// Takes `keys` off the part's resources: the instance role's instance profile with the role, and the
/// database's log groups that are the stack's with its log group. Parts without tags (the network, the
/// mount targets, the listeners) and a part whose state names nothing are left alone.
pub async fn remove_tags(
    part: Part,
    state: &PartState,
    keys: &[String],
    aws: &AwsContext,
    stack: &str,
) -> AwsResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (id, arn) = (state.id.as_deref(), state.arn.as_deref());
    match (part, id, arn) {
        (Part::SecurityGroup(_) | Part::S3Endpoint | Part::LaunchTemplate, Some(id), _) => {
            aws::ec2::remove_tags(&aws.ec2, id, keys).await
        }
        (Part::AccessLogBucket | Part::ArchiveBucket | Part::StateBucket, Some(bucket), _) => {
            aws::s3::remove_tags(&aws.s3, bucket, keys).await
        }
        (Part::Repository(_), _, Some(arn)) => aws::ecr::remove_tags(&aws.ecr, arn, keys).await,
        (Part::LogGroup, _, Some(arn)) => {
            aws::logs::remove_tags(&aws.logs, arn, keys).await?;
            remove_database_log_group_tags(aws, stack, keys).await
        }
        (Part::InstanceRole, Some(name), _) => {
            aws::iam::remove_role_tags(&aws.iam, name, keys).await?;
            aws::iam::remove_instance_profile_tags(&aws.iam, name, keys).await
        }
        (Part::ExecutionRole | Part::TaskRole(_), Some(name), _) => {
            aws::iam::remove_role_tags(&aws.iam, name, keys).await
        }
        (Part::RabbitmqSecret | Part::DatabaseSecret, _, Some(arn)) => {
            aws::secretsmanager::remove_tags(&aws.secrets, arn, keys).await
        }
        (Part::FileSystem | Part::AccessPoint(_), Some(id), _) => aws::efs::remove_tags(&aws.efs, id, keys).await,
        (Part::DbSubnetGroup | Part::DbParameterGroup | Part::Database, _, Some(arn)) => {
            aws::rds::remove_tags(&aws.rds, arn, keys).await
        }
        (Part::Cluster | Part::TaskDefinition(_) | Part::Service(_), _, Some(arn)) => {
            aws::ecs::remove_tags(&aws.ecs, arn, keys).await
        }
        (Part::AutoScalingGroup, Some(name), _) => aws::autoscaling::remove_tags(&aws.autoscaling, name, keys).await,
        (Part::Namespace | Part::Discovery(_), _, Some(arn)) => {
            aws::servicediscovery::remove_tags(&aws.servicediscovery, arn, keys).await
        }
        (Part::LoadBalancer | Part::TargetGroup, _, Some(arn)) => aws::elbv2::remove_tags(&aws.elbv2, arn, keys).await,
        _ => Ok(()),
    }
}

/// The database's log groups carry the stack's tags when the stack made them; one of that name that is
/// someone else's keeps its tags.
async fn remove_database_log_group_tags(aws: &AwsContext, stack: &str, keys: &[String]) -> AwsResult<()> {
    let found = aws::logs::under_prefix(&aws.logs, &aws::rds::log_group_prefix(stack)).await?;
    for group in found.values() {
        if aws::logs::tags(&aws.logs, &group.arn).await?.get(aws::STACK_TAG).map(String::as_str) == Some(stack) {
            aws::logs::remove_tags(&aws.logs, &group.arn, keys).await?;
        }
    }
    Ok(())
}
