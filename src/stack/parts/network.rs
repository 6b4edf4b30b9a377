//! Network parts: the VPC and subnets the stack uses (looked up, never created), and its security groups,
//! each allowing only what the next part needs.
//!
//! The load balancer's group and the services' group name each other (the load balancer may only reach
//! web's 8080; the services admit only the load balancer on it), which a dependency graph cannot express
//! both ways. The load balancer's group comes second and adds the services' rule for itself; the services'
//! group, when ensured again, finds the load balancer's group by name and keeps that rule.

use crate::aws;
use crate::aws::ec2::{IngressRule, RuleSource};

use super::{Group, Part, PartContext, PartError, PartResult, PartState, Removal, group_key};

/// Ports the services listen on for each other: web and broker (Tomcat), RabbitMQ AMQP and management.
const SERVICE_PORTS: [(i32, &str); 3] =
    [(8080, "web and broker HTTP"), (5672, "RabbitMQ AMQP"), (15672, "RabbitMQ management")];

/// The network parts: the looked-up VPC and subnets, the security groups and the S3 endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPart {
    /// [`Part::Network`].
    Network,
    /// [`Part::SecurityGroup`].
    SecurityGroup(Group),
    /// [`Part::S3Endpoint`].
    S3Endpoint,
}

impl From<NetworkPart> for Part {
    fn from(part: NetworkPart) -> Part {
        match part {
            NetworkPart::Network => Part::Network,
            NetworkPart::SecurityGroup(group) => Part::SecurityGroup(group),
            NetworkPart::S3Endpoint => Part::S3Endpoint,
        }
    }
}

/// Ensures a network part.
pub async fn ensure(part: NetworkPart, ctx: &PartContext<'_>) -> PartResult<PartState> {
    match part {
        NetworkPart::Network => ensure_network(ctx).await,
        NetworkPart::SecurityGroup(group) => ensure_group(group, ctx).await,
        NetworkPart::S3Endpoint => ensure_s3_endpoint(ctx).await,
    }
}

/// Observes a network part.
pub async fn observe(part: NetworkPart, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    match part {
        NetworkPart::Network => observe_network(ctx).await,
        NetworkPart::SecurityGroup(group) => observe_group(group, ctx).await,
        NetworkPart::S3Endpoint => observe_s3_endpoint(ctx).await,
    }
}

/// Removes a network part; the network itself was never the stack's to remove.
pub async fn remove(part: NetworkPart, ctx: &PartContext<'_>) -> PartResult<Removal> {
    match part {
        NetworkPart::Network => Ok(Removal::Removed),
        NetworkPart::SecurityGroup(group) => remove_group(group, ctx).await,
        NetworkPart::S3Endpoint => remove_s3_endpoint(ctx).await,
    }
}

/// The security group's name.
pub fn group_name(stack: &str, group: Group) -> String {
    format!("{stack}-{}", group_key(group).replace('_', "-"))
}

fn group_description(group: Group) -> &'static str {
    match group {
        Group::Instances => "DataVault ECS container instances",
        Group::Services => "DataVault service tasks (web, broker, worker, rabbitmq)",
        Group::Database => "DataVault MySQL database: 3306 from the services and instances only",
        Group::FileSystem => "DataVault EFS file system: NFS from the services and instances only",
        Group::LoadBalancer => "DataVault public load balancer: web ports from allowed CIDR blocks, out to web only",
    }
}

/// The port web's Tomcat listens on, the only one the load balancer may reach.
pub const WEB_PORT: i32 = 8080;

/// Looks up the VPC and subnets: the configured ones, else the region's default VPC and its subnets.
async fn ensure_network(ctx: &PartContext<'_>) -> PartResult<PartState> {
    observe_network(ctx).await?.ok_or_else(|| {
        PartError::Missing(match &ctx.spec.vpc_id {
            Some(vpc) => format!("VPC {vpc} does not exist in {}", ctx.spec.region),
            None => format!(
                "{} has no default VPC: set vpc_id and subnet_ids to the network the stack should use",
                ctx.spec.region
            ),
        })
    })
}

/// Observes the network; `None` when the VPC is gone.
async fn observe_network(ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let client = &ctx.aws.ec2;
    let vpc = match &ctx.spec.vpc_id {
        Some(id) => aws::ec2::vpc(client, id).await?,
        None => aws::ec2::default_vpc(client).await?,
    };
    let Some(vpc) = vpc else { return Ok(None) };
    let subnets = match &ctx.spec.subnet_ids {
        Some(ids) => aws::ec2::subnets(client, ids).await?,
        None => aws::ec2::subnets_in_vpc(client, &vpc.id).await?,
    };
    if let Some(stray) = subnets.iter().find(|s| s.vpc_id != vpc.id) {
        return Err(PartError::Missing(format!("subnet {} is not in VPC {}", stray.id, vpc.id)));
    }
    if subnets.is_empty() {
        return Err(PartError::Missing(format!("VPC {} has no subnets to use", vpc.id)));
    }
    let per_zone = aws::ec2::one_subnet_per_zone(&subnets);
    let mut state = PartState::with_id(&vpc.id);
    if let Some(ids) = ctx.spec.load_balancer.as_ref().and_then(|lb| lb.subnet_ids.as_ref()) {
        let public = aws::ec2::subnets(client, ids).await?;
        if let Some(stray) = public.iter().find(|s| s.vpc_id != vpc.id) {
            return Err(PartError::Missing(format!("load balancer subnet {} is not in VPC {}", stray.id, vpc.id)));
        }
        let ids: Vec<String> = aws::ec2::one_subnet_per_zone(&public).into_iter().map(|s| s.id).collect();
        state.facts.load_balancer_subnet_ids = Some(ids);
    }
    state.facts.vpc_cidr = Some(vpc.cidr);
    state.facts.subnet_ids = subnets.into_iter().map(|s| s.id).collect();
    state.facts.zone_subnet_ids = per_zone.into_iter().map(|s| s.id).collect();
    Ok(Some(state))
}

/// One subnet per availability zone (EFS allows one mount target per zone).
pub fn zone_subnet_ids(ctx: &PartContext<'_>) -> PartResult<Vec<String>> {
    Ok(ctx.part(Part::Network)?.facts.zone_subnet_ids.clone())
}

/// The load balancer's subnets, one per zone: its own public ones when configured, else the stack's.
pub fn load_balancer_subnet_ids(ctx: &PartContext<'_>) -> PartResult<Vec<String>> {
    match &ctx.part(Part::Network)?.facts.load_balancer_subnet_ids {
        Some(ids) => Ok(ids.clone()),
        None => zone_subnet_ids(ctx),
    }
}

/// The ports the public load balancer listens on: HTTPS and HTTP (which only redirects) with a
/// certificate, HTTP alone without.
fn load_balancer_ports(https: bool) -> &'static [i32] {
    if https { &[443, 80] } else { &[80] }
}

/// The rule that lets the load balancer's group into the services' group.
fn web_from_load_balancer(load_balancer_group: &str) -> IngressRule {
    IngressRule::tcp(WEB_PORT, RuleSource::Group(load_balancer_group.to_string()), "web from the load balancer")
}

/// The load balancer's group when the spec wants a load balancer and the group exists (see the module
/// comment for why it is looked up rather than waited for).
async fn wanted_load_balancer_group(ctx: &PartContext<'_>, vpc_id: &str) -> PartResult<Option<String>> {
    if ctx.spec.load_balancer.is_none() {
        return Ok(None);
    }
    Ok(find_group(ctx, vpc_id, Group::LoadBalancer).await?.map(|g| g.id))
}

/// The stack's security group `group`, through the survey's shared read when there is one.
async fn find_group(ctx: &PartContext<'_>, vpc_id: &str, group: Group) -> PartResult<Option<aws::ec2::SecurityGroup>> {
    match ctx.reads {
        Some(reads) => reads.security_group(ctx, vpc_id, group).await,
        None => Ok(aws::ec2::describe_security_group(&ctx.aws.ec2, vpc_id, &group_name(&ctx.spec.name, group)).await?),
    }
}

/// The rules a group should have, given the ids of the groups it admits; `own_id` is the group itself and
/// `load_balancer_group` the load balancer's, for the services' group when there is one.
fn expected_rules(
    group: Group,
    ctx: &PartContext<'_>,
    own_id: &str,
    load_balancer_group: Option<&str>,
) -> PartResult<Vec<IngressRule>> {
    let from =
        |g: Group| -> PartResult<RuleSource> { Ok(RuleSource::Group(ctx.id_of(Part::SecurityGroup(g))?.to_string())) };
    Ok(match group {
        Group::Instances => ctx
            .spec
            .cluster
            .admin_cidr_blocks
            .iter()
            .map(|cidr| IngressRule::tcp(22, RuleSource::Cidr(cidr.clone()), "SSH from admin_cidr_blocks"))
            .collect(),
        Group::Services => SERVICE_PORTS
            .iter()
            .map(|(port, why)| IngressRule::tcp(*port, RuleSource::Group(own_id.to_string()), *why))
            .chain(load_balancer_group.map(web_from_load_balancer))
            .collect(),
        Group::Database => vec![
            IngressRule::tcp(3306, from(Group::Services)?, "MySQL from the services"),
            IngressRule::tcp(3306, from(Group::Instances)?, "MySQL from the container instances"),
        ],
        Group::FileSystem => vec![
            IngressRule::tcp(2049, from(Group::Services)?, "NFS from the services"),
            IngressRule::tcp(2049, from(Group::Instances)?, "NFS from the container instances"),
        ],
        Group::LoadBalancer => {
            let Some(lb) = &ctx.spec.load_balancer else {
                return Err(PartError::Missing("the stack has no load balancer".into()));
            };
            let mut rules = Vec::new();
            for port in load_balancer_ports(lb.https()) {
                for cidr in &lb.allowed_cidr_blocks {
                    rules.push(IngressRule::tcp(*port, RuleSource::Cidr(cidr.clone()), "web from allowed_cidr_blocks"));
                }
            }
            rules
        }
    })
}

/// The load balancer's only way out: web's port in the services' group (its health checks included).
fn load_balancer_egress(ctx: &PartContext<'_>) -> PartResult<Vec<IngressRule>> {
    let services = ctx.id_of(Part::SecurityGroup(Group::Services))?;
    Ok(vec![IngressRule::tcp(WEB_PORT, RuleSource::Group(services.to_string()), "to web's tasks")])
}

/// Only instances and tasks start connections (image pulls, AWS APIs, the database, the queue).
fn allows_egress(group: Group) -> bool {
    matches!(group, Group::Instances | Group::Services)
}

/// Ensures a security group and converges its rules.
async fn ensure_group(group: Group, ctx: &PartContext<'_>) -> PartResult<PartState> {
    let client = &ctx.aws.ec2;
    let vpc_id = ctx.id_of(Part::Network)?;
    let name = group_name(&ctx.spec.name, group);
    let id = aws::ec2::ensure_security_group(
        client,
        vpc_id,
        &name,
        group_description(group),
        &ctx.tags(Part::SecurityGroup(group)),
    )
    .await?;
    let load_balancer_group =
        if group == Group::Services { wanted_load_balancer_group(ctx, vpc_id).await? } else { None };
    let rules = expected_rules(group, ctx, &id, load_balancer_group.as_deref())?;
    aws::ec2::set_ingress(client, &id, &rules).await?;
    if group == Group::LoadBalancer {
        aws::ec2::set_egress_rules(client, &id, &load_balancer_egress(ctx)?).await?;
        let services = ctx.id_of(Part::SecurityGroup(Group::Services))?;
        aws::ec2::allow_ingress(client, services, &web_from_load_balancer(&id)).await?;
    } else {
        aws::ec2::set_egress_all(client, &id, allows_egress(group)).await?;
    }
    Ok(PartState::with_id(id))
}

/// The address ranges `rules` admit (on TCP `port` only, when given): each once, in a stable order, though
/// one may have a rule per port (80 and 443 with a certificate).
fn cidr_sources(rules: &[IngressRule], port: Option<i32>) -> Vec<String> {
    let mut cidrs: Vec<&str> = rules
        .iter()
        .filter(|rule| port.is_none_or(|p| rule.protocol == "tcp" && rule.from_port == p && rule.to_port == p))
        .filter_map(|rule| match &rule.source {
            RuleSource::Cidr(cidr) => Some(cidr.as_str()),
            _ => None,
        })
        .collect();
    cidrs.sort_unstable();
    cidrs.dedup();
    cidrs.into_iter().map(str::to_string).collect()
}

/// Observes a security group and how its rules differ.
async fn observe_group(group: Group, ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    // Every group is found by the survey's one request, which names them in any VPC and so starts at once,
    // beside the VPC's lookup; waiting for the VPC and the groups this one admits then costs no request.
    let look_up = async {
        if let Some(reads) = ctx.reads {
            reads.look_up_security_groups(ctx).await;
        }
    };
    let (dependencies, ()) = tokio::join!(ctx.dependencies(Part::SecurityGroup(group)), look_up);
    let ctx = &ctx.with(&dependencies);
    let Ok(vpc_id) = ctx.id_of(Part::Network) else { return Ok(None) };
    let Some(found) = find_group(ctx, vpc_id, group).await? else { return Ok(None) };
    let mut state = PartState { tags: Some(found.tags.clone()), ..PartState::with_id(&found.id) };
    let load_balancer_group =
        if group == Group::Services { wanted_load_balancer_group(ctx, vpc_id).await? } else { None };
    // Rules naming other groups can only be judged while those groups exist; a load balancer's group the
    // spec no longer wants is not judged at all (it is about to go).
    if let Ok(expected) = expected_rules(group, ctx, &found.id, load_balancer_group.as_deref()) {
        state.drift = aws::ec2::ingress_drift(&expected, &found.ingress);
    }
    // What the group admits from address ranges is a setting, for an import to take over: the load
    // balancer's `allowed_cidr_blocks` (on any port), the instances' `cluster.admin_cidr_blocks` (on SSH's).
    match group {
        Group::LoadBalancer => state.facts.allowed_cidr_blocks = cidr_sources(&found.ingress, None),
        Group::Instances => state.facts.allowed_cidr_blocks = cidr_sources(&found.ingress, Some(22)),
        _ => {}
    }
    if group == Group::LoadBalancer {
        if ctx.spec.load_balancer.is_some()
            && let Ok(expected) = load_balancer_egress(ctx)
        {
            state.drift.extend(aws::ec2::egress_rules_drift(&expected, &found.egress));
        }
    } else {
        state.drift.extend(aws::ec2::egress_drift(allows_egress(group), &found.egress));
    }
    Ok(Some(state))
}

/// Deletes a security group once nothing uses it (lingering network interfaces are waited out).
async fn remove_group(group: Group, ctx: &PartContext<'_>) -> PartResult<Removal> {
    let Some(id) = ctx.parts.get(&Part::SecurityGroup(group)).and_then(|s| s.id.clone()) else {
        return Ok(Removal::Removed);
    };
    // Rules referencing other groups would block their deletion.
    aws::ec2::revoke_all_ingress(&ctx.aws.ec2, &id).await?;
    if group == Group::LoadBalancer
        && let Some(services) = ctx.parts.get(&Part::SecurityGroup(Group::Services)).and_then(|s| s.id.as_deref())
    {
        // The services' group admits this one: that rule goes with it, or this group cannot be deleted.
        aws::ec2::revoke_ingress_from_group(&ctx.aws.ec2, services, &id).await?;
    }
    aws::ec2::delete_security_group(&ctx.aws.ec2, &id, ctx.spec.timeouts.delete).await?;
    Ok(Removal::Removed)
}

/// Where the stack's S3 endpoint must add its route: the route tables of the task subnets, except those
/// another gateway endpoint for S3 already serves (a route table takes one per service). Also returns the
/// stack's own endpoint, when there is one.
async fn s3_endpoint_plan(
    ctx: &PartContext<'_>,
) -> PartResult<(std::collections::BTreeSet<String>, Option<aws::ec2::GatewayEndpoint>)> {
    let vpc_id = ctx.id_of(Part::Network)?;
    let client = &ctx.aws.ec2;
    let service = aws::ec2::s3_endpoint_service(&ctx.spec.partition, &ctx.spec.region);
    let subnets = ctx.subnet_ids()?;
    let (tables, endpoints) = tokio::try_join!(
        aws::ec2::route_tables_for_subnets(client, vpc_id, &subnets),
        aws::ec2::gateway_endpoints(client, vpc_id, &service)
    )?;
    let ours = |e: &aws::ec2::GatewayEndpoint| {
        e.tags.get(aws::STACK_TAG) == Some(&ctx.spec.name)
            && e.tags.get(aws::PART_TAG).map(String::as_str) == Some("s3_endpoint")
    };
    let served_elsewhere: std::collections::BTreeSet<String> =
        endpoints.iter().filter(|e| !ours(e)).flat_map(|e| e.route_table_ids.iter().cloned()).collect();
    let wanted = tables.difference(&served_elsewhere).cloned().collect();
    Ok((wanted, endpoints.into_iter().find(ours)))
}

/// Ensures the S3 gateway endpoint: awsvpc tasks on EC2 get no public address, so without a NAT route
/// or this endpoint the workers could not reach the archive bucket. Gateway endpoints cost nothing and
/// keep the traffic inside AWS.
async fn ensure_s3_endpoint(ctx: &PartContext<'_>) -> PartResult<PartState> {
    let (wanted, ours) = s3_endpoint_plan(ctx).await?;
    let client = &ctx.aws.ec2;
    let id = match ours {
        Some(endpoint) => {
            aws::ec2::set_endpoint_route_tables(client, &endpoint, &wanted).await?;
            endpoint.id
        }
        None => {
            let vpc_id = ctx.id_of(Part::Network)?;
            let service = aws::ec2::s3_endpoint_service(&ctx.spec.partition, &ctx.spec.region);
            aws::ec2::create_gateway_endpoint(client, vpc_id, &service, &wanted, &ctx.tags(Part::S3Endpoint)).await?
        }
    };
    Ok(PartState { tags: Some(ctx.tags(Part::S3Endpoint)), ..PartState::with_id(id) })
}

/// Observes the stack's S3 endpoint (found by its tags) and whether it routes every task subnet that no
/// other endpoint serves.
async fn observe_s3_endpoint(ctx: &PartContext<'_>) -> PartResult<Option<PartState>> {
    let dependencies = ctx.dependencies(Part::S3Endpoint).await;
    let ctx = &ctx.with(&dependencies);
    if ctx.id_of(Part::Network).is_err() {
        return Ok(None);
    }
    let (wanted, ours) = s3_endpoint_plan(ctx).await?;
    let Some(endpoint) = ours else { return Ok(None) };
    let mut state = PartState { tags: Some(endpoint.tags.clone()), ..PartState::with_id(&endpoint.id) };
    for missing in wanted.difference(&endpoint.route_table_ids) {
        state.drift.push(format!("route table {missing} has no route to S3 through it"));
    }
    for extra in endpoint.route_table_ids.difference(&wanted) {
        state.drift.push(format!("it routes route table {extra}, which the tasks do not use"));
    }
    Ok(Some(state))
}

/// Deletes the stack's S3 endpoint.
async fn remove_s3_endpoint(ctx: &PartContext<'_>) -> PartResult<Removal> {
    if let Some(id) = ctx.parts.get(&Part::S3Endpoint).and_then(|s| s.id.clone()) {
        aws::ec2::delete_endpoint(&ctx.aws.ec2, &id).await?;
    }
    Ok(Removal::Removed)
}
