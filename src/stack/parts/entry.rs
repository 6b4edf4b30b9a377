//! The optional public entry point: an internet-facing Application Load Balancer in one subnet per
//! availability zone, the target group ECS registers web's task addresses in, and the listeners (HTTPS with
//! the configured certificate plus a redirect from HTTP, or plain HTTP without one). Its security group is
//! a network part, next to the groups it names.
//!
//! Everything is found again by the names [`aws::elbv2`] derives from the stack's name, so an apply
//! interrupted half-way adopts what it made, and a read finds these parts even when the stack no longer
//! wants them (they are then reported as drift, and the next apply removes them).

use crate::aws;
use crate::aws::elbv2::{ListenerSpec, LoadBalancerSpec, TargetGroupSpec};

use super::network::{WEB_PORT, load_balancer_subnet_ids};
use super::{Group, Part, PartContext, PartError, PartResult, PartState, Removal};

/// The entry-point parts (the load balancer's security group is a network part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPart {
    /// [`Part::LoadBalancer`].
    LoadBalancer,
    /// [`Part::TargetGroup`].
    TargetGroup,
    /// [`Part::Listeners`].
    Listeners,
}

impl From<EntryPart> for Part {
    fn from(part: EntryPart) -> Part {
        match part {
            EntryPart::LoadBalancer => Part::LoadBalancer,
            EntryPart::TargetGroup => Part::TargetGroup,
            EntryPart::Listeners => Part::Listeners,
        }
    }
}

/// Where the web app answers, which the target group's health check asks for (Tomcat redirects it to the
/// login page, a healthy answer).
pub const WEB_PATH: &str = "/datavault-webapp/";

fn load_balancer_spec(ctx: &PartContext<'_>) -> PartResult<LoadBalancerSpec> {
    Ok(LoadBalancerSpec {
        name: aws::elbv2::load_balancer_name(&ctx.spec.name),
        // An Application Load Balancer takes at most one subnet per zone.
        subnet_ids: load_balancer_subnet_ids(ctx)?,
        security_group_ids: vec![ctx.id_of(Part::SecurityGroup(Group::LoadBalancer))?.to_string()],
        access_logs: Some(super::storage::load_balancer_log_target(ctx.spec)),
        tags: ctx.tags(Part::LoadBalancer),
    })
}

fn target_group_spec(ctx: &PartContext<'_>) -> PartResult<TargetGroupSpec> {
    Ok(TargetGroupSpec {
        name: aws::elbv2::target_group_name(&ctx.spec.name),
        vpc_id: ctx.id_of(Part::Network)?.to_string(),
        port: WEB_PORT,
        health_check_path: WEB_PATH.to_string(),
        tags: ctx.tags(Part::TargetGroup),
    })
}

fn listener_spec(ctx: &PartContext<'_>) -> PartResult<ListenerSpec> {
    let settings =
        ctx.spec.load_balancer.as_ref().ok_or_else(|| PartError::Missing("the stack has no load balancer".into()))?;
    Ok(ListenerSpec {
        load_balancer_arn: ctx.arn_of(Part::LoadBalancer)?.to_string(),
        target_group_arn: ctx.arn_of(Part::TargetGroup)?.to_string(),
        certificate_arn: settings.certificate_arn.clone(),
    })
}

/// A spec to judge drift against, only while the stack wants the part: one it no longer wants is about to
/// be removed, and differences from settings nobody asks for mean nothing.
fn expected<T>(ctx: &PartContext<'_>, spec: impl FnOnce(&PartContext<'_>) -> PartResult<T>) -> Option<T> {
    ctx.spec.load_balancer.as_ref().and_then(|_| spec(ctx).ok())
}

/// Ensures an entry-point part: finds it by name and adopts it, else creates it; then converges it.
pub async fn ensure(part: EntryPart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let client = &ctx.aws.elbv2;
    match part {
        EntryPart::LoadBalancer => {
            let spec = load_balancer_spec(ctx)?;
            let lb = aws::elbv2::ensure_load_balancer(client, &spec).await?;
            Ok(PartState { id: Some(spec.name), arn: Some(lb.arn), url: Some(lb.dns_name), ..PartState::default() })
        }
        EntryPart::TargetGroup => {
            let spec = target_group_spec(ctx)?;
            let tg = aws::elbv2::ensure_target_group(client, &spec).await?;
            Ok(PartState { id: Some(spec.name), arn: Some(tg.arn), ..PartState::default() })
        }
        EntryPart::Listeners => {
            let spec = listener_spec(ctx)?;
            let arns = aws::elbv2::ensure_listeners(client, &spec).await?;
            Ok(PartState { id: arns.into_iter().next(), ..PartState::default() })
        }
    }
}

/// Observes an entry-point part, wanted or not; `None` when it does not exist.
pub async fn observe(part: EntryPart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let (client, stack) = (&ctx.aws.elbv2, &ctx.spec.name);
    match part {
        EntryPart::LoadBalancer => {
            let name = aws::elbv2::load_balancer_name(stack);
            let Some(lb) = aws::elbv2::describe_load_balancer(client, &name).await? else { return Ok(None) };
            let dependencies = ctx.dependencies(Part::LoadBalancer).await;
            let drift =
                aws::elbv2::load_balancer_drift(&lb, expected(&ctx.with(&dependencies), load_balancer_spec).as_ref());
            Ok(Some({
                let mut state = PartState {
                    id: Some(name),
                    arn: Some(lb.arn),
                    url: Some(lb.dns_name),
                    drift,
                    tags: Some(lb.tags),
                    ..PartState::default()
                };
                state.facts.subnet_ids = lb.subnets.clone();
                state
            }))
        }
        EntryPart::TargetGroup => {
            let name = aws::elbv2::target_group_name(stack);
            let Some(tg) = aws::elbv2::describe_target_group(client, &name).await? else { return Ok(None) };
            let dependencies = ctx.dependencies(Part::TargetGroup).await;
            let drift =
                aws::elbv2::target_group_drift(&tg, expected(&ctx.with(&dependencies), target_group_spec).as_ref());
            Ok(Some(PartState {
                id: Some(name),
                arn: Some(tg.arn),
                drift,
                tags: Some(tg.tags),
                ..PartState::default()
            }))
        }
        EntryPart::Listeners => {
            let Some(load_balancer_arn) = ctx.dependency(Part::LoadBalancer).await.and_then(|lb| lb.arn) else {
                return Ok(None);
            };
            let current = aws::elbv2::describe_listeners(client, &load_balancer_arn).await?;
            if current.is_empty() {
                return Ok(None);
            }
            let dependencies = ctx.dependencies(Part::Listeners).await;
            let ctx = &ctx.with(&dependencies);
            let mut state = PartState { id: current.first().map(|l| l.arn.clone()), ..PartState::default() };
            // The HTTPS listener's certificate is the load balancer's `certificate_arn`, for an import.
            if let Some(certificate) = current.iter().find_map(|l| l.config.certificate_arn.clone()) {
                state.facts.certificate_arn = Some(certificate);
            }
            if let Some(spec) = expected(ctx, listener_spec) {
                state.drift = aws::elbv2::listener_drift(&spec, &current);
            }
            Ok(Some(state))
        }
    }
}

/// Removes an entry-point part; absent is success. Listeners go first so nothing forwards to the target
/// group; the load balancer is awaited until AWS no longer lists it.
pub async fn remove(part: EntryPart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let (client, stack, timeout) = (&ctx.aws.elbv2, &ctx.spec.name, ctx.spec.timeouts.delete);
    match part {
        EntryPart::Listeners => {
            if let Some(arn) = ctx.parts.get(&Part::LoadBalancer).and_then(|lb| lb.arn.as_deref()) {
                aws::elbv2::delete_listeners(client, arn).await?;
            }
        }
        EntryPart::LoadBalancer => {
            aws::elbv2::delete_load_balancer(client, &aws::elbv2::load_balancer_name(stack), timeout).await?
        }
        EntryPart::TargetGroup => {
            aws::elbv2::delete_target_group(client, &aws::elbv2::target_group_name(stack), timeout).await?
        }
    }
    Ok(Removal::Removed)
}
