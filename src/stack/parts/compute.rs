//! Compute parts: the ECS cluster, the container instances' launch template, and their Auto Scaling group.

use std::time::Duration;

use crate::aws;
use crate::aws::autoscaling::GroupSpec;
use crate::aws::ec2::LaunchTemplateSpec;

use super::{Group, GroupSizes, Part, PartContext, PartError, PartResult, PartState, Removal};

/// The compute parts: the cluster and the container instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputePart {
    /// [`Part::Cluster`].
    Cluster,
    /// [`Part::LaunchTemplate`].
    LaunchTemplate,
    /// [`Part::AutoScalingGroup`].
    AutoScalingGroup,
}

impl From<ComputePart> for Part {
    fn from(part: ComputePart) -> Part {
        match part {
            ComputePart::Cluster => Part::Cluster,
            ComputePart::LaunchTemplate => Part::LaunchTemplate,
            ComputePart::AutoScalingGroup => Part::AutoScalingGroup,
        }
    }
}

/// How long a new instance profile may take to become usable by EC2 Auto Scaling.
const IAM_PROPAGATION: Duration = Duration::from_secs(120);

/// The instances' image: the configured one, else the region's recommended ECS-optimized image.
async fn image_id(ctx: &PartContext<'_>) -> PartResult<String> {
    Ok(match &ctx.spec.cluster.ami_id {
        Some(ami) => ami.clone(),
        None => aws::ssm::ecs_optimized_ami(&ctx.aws.ssm).await?,
    })
}

fn launch_template_spec(ctx: &PartContext<'_>, image_id: String) -> PartResult<LaunchTemplateSpec> {
    let profile = ctx
        .part(Part::InstanceRole)?
        .facts
        .instance_profile_arn
        .clone()
        .ok_or_else(|| PartError::Missing("instance_role has no instance profile".into()))?;
    Ok(LaunchTemplateSpec {
        image_id,
        instance_type: ctx.spec.cluster.instance_type.clone(),
        instance_profile_arn: profile,
        security_group_ids: vec![ctx.id_of(Part::SecurityGroup(Group::Instances))?.to_string()],
        user_data: aws::ec2::ecs_user_data(&ctx.spec.name),
        kms_key: ctx.spec.kms_key_arn.clone(),
        tags: ctx.tags(Part::LaunchTemplate),
    })
}

fn group_spec(ctx: &PartContext<'_>, template_id: &str, version: i64) -> PartResult<GroupSpec> {
    let c = &ctx.spec.cluster;
    Ok(GroupSpec {
        name: ctx.spec.name.clone(),
        launch_template_id: template_id.to_string(),
        launch_template_version: version.to_string(),
        min_size: c.min_size as i32,
        max_size: c.max_size as i32,
        desired_capacity: c.desired_capacity as i32,
        subnet_ids: ctx.subnet_ids()?,
        tags: ctx.tags(Part::AutoScalingGroup),
    })
}

fn template_of(ctx: &PartContext<'_>) -> PartResult<(String, i64)> {
    let template = ctx.part(Part::LaunchTemplate)?;
    let id = template.id.clone().ok_or_else(|| PartError::Missing("launch_template has no id".into()))?;
    let version = template.facts.template_version.unwrap_or(1);
    Ok((id, version))
}

/// Ensures a compute part.
pub async fn ensure(part: ComputePart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        ComputePart::Cluster => {
            let cluster =
                aws::ecs::ensure_cluster(&aws.ecs, &spec.name, &spec.log_group, &ctx.tags(part.into())).await?;
            Ok(PartState { id: Some(cluster.name), arn: Some(cluster.arn), ..PartState::default() })
        }
        ComputePart::LaunchTemplate => {
            let template = aws::ec2::ensure_launch_template(
                &aws.ec2,
                &spec.name,
                &launch_template_spec(ctx, image_id(ctx).await?)?,
            )
            .await?;
            let mut state = PartState::with_id(template.id);
            state.facts.template_version = Some(template.version);
            Ok(state)
        }
        ComputePart::AutoScalingGroup => {
            let (id, version) = template_of(ctx)?;
            let group_spec = group_spec(ctx, &id, version)?;
            let group = aws::iam::retry_while_propagating(IAM_PROPAGATION, || {
                aws::autoscaling::ensure_group(&aws.autoscaling, &group_spec)
            })
            .await?;
            Ok(PartState { id: Some(group.name), arn: Some(group.arn), ..PartState::default() })
        }
    }
}

/// Observes a compute part.
pub async fn observe(part: ComputePart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        ComputePart::Cluster => {
            Ok(aws::ecs::describe_cluster(&aws.ecs, &spec.name, &spec.log_group).await?.map(|c| PartState {
                id: Some(spec.name.clone()),
                arn: Some(c.arn),
                drift: c.drift,
                tags: Some(c.tags),
                ..PartState::default()
            }))
        }
        ComputePart::LaunchTemplate => {
            // The template is described and its image looked up while the parts it names are observed.
            let (found, image, dependencies) = tokio::join!(
                aws::ec2::describe_launch_template(&aws.ec2, &spec.name),
                image_id(ctx),
                ctx.dependencies(Part::LaunchTemplate)
            );
            let Some(t) = found? else { return Ok(None) };
            let expected = image.and_then(|image| launch_template_spec(&ctx.with(&dependencies), image));
            // Without the parts it refers to, the template is found but not judged.
            let Ok(expected) = expected else {
                return Ok(Some(PartState {
                    tags: Some(t.tags),
                    ..template_state(t.id, t.default_version, Vec::new())
                }));
            };
            let mut state = template_state(t.id.clone(), t.default_version, t.drift(&expected));
            state.tags = Some(t.tags);
            state.facts.instance_type = Some(t.data.instance_type);
            Ok(Some(state))
        }
        ComputePart::AutoScalingGroup => {
            let Some(found) = aws::autoscaling::describe_group(&aws.autoscaling, &spec.name).await? else {
                return Ok(None);
            };
            let dependencies = ctx.dependencies(Part::AutoScalingGroup).await;
            let ctx = &ctx.with(&dependencies);
            let expected = template_of(ctx).and_then(|(id, version)| group_spec(ctx, &id, version));
            let drift = match expected {
                Ok(expected) => {
                    aws::autoscaling::group_drift(&expected, &found).into_iter().chain(found.drift).collect()
                }
                Err(_) => Vec::new(),
            };
            let mut state = PartState {
                id: Some(found.name),
                arn: Some(found.arn),
                drift,
                tags: Some(found.tags.clone()),
                ..PartState::default()
            };
            let (min, max, desired) = (found.min_size.into(), found.max_size.into(), found.desired_capacity.into());
            state.facts.group_sizes = Some(GroupSizes { min, max, desired });
            Ok(Some(state))
        }
    }
}

fn template_state(id: String, version: i64, drift: Vec<String>) -> PartState {
    let mut state = PartState { id: Some(id), drift, ..PartState::default() };
    state.facts.template_version = Some(version);
    state
}

/// Removes a compute part: the group's instances are terminated before the group goes, and the cluster
/// deregisters what is left of them.
pub async fn remove(part: ComputePart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (aws, spec) = (ctx.aws, ctx.spec);
    match part {
        ComputePart::Cluster => aws::ecs::delete_cluster(&aws.ecs, &spec.name, spec.timeouts.delete).await?,
        ComputePart::LaunchTemplate => aws::ec2::delete_launch_template(&aws.ec2, &spec.name).await?,
        ComputePart::AutoScalingGroup => {
            aws::autoscaling::delete_group(&aws.autoscaling, &spec.name, spec.timeouts.delete).await?
        }
    }
    Ok(Removal::Removed)
}
