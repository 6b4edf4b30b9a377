//! Amazon EC2: the network the stack runs in (VPC and subnets, looked up, never created), its security
//! groups, and the launch template its container instances start from.
//!
//! Security groups are converged to exactly the rules the stack asks for, so a port opened out of band is
//! reported as drift and closed again on the next apply. The launch template requires IMDSv2, encrypts the
//! root volume and enables detailed monitoring; a changed setting becomes a new template version, made the
//! default, which the Auto Scaling group then rolls out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateInstanceMetadataEndpointState,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateTagSpecificationRequest,
    LaunchTemplatesMonitoringRequest, PrefixListId, RequestLaunchTemplateData, ResourceType,
    ResponseLaunchTemplateData, Tag, TagSpecification, UserIdGroupPair, VolumeType,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{AwsError, AwsResult};

// ---------------------------------------------------------------------------------------------------------
// Network lookup
// ---------------------------------------------------------------------------------------------------------

/// A VPC the stack runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    /// Its id, e.g. `vpc-0abc`.
    pub id: String,
    /// Its primary IPv4 CIDR block.
    pub cidr: String,
    /// Whether it is the region's default VPC (whose default subnets the stack uses when none are given).
    pub is_default: bool,
}

/// A subnet the stack places instances, tasks, mount targets and the database in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    /// Its id, e.g. `subnet-0abc`.
    pub id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Its Availability Zone, e.g. `eu-west-2a`.
    pub availability_zone: String,
    /// Whether instances launched in it get a public IPv4 address (default subnets do).
    pub public_ip_on_launch: bool,
}

fn filter<I, S>(name: &str, values: I) -> Filter
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Filter::builder().name(name).set_values(Some(values.into_iter().map(Into::into).collect())).build()
}

fn to_vpc(vpc: &aws_sdk_ec2::types::Vpc) -> Vpc {
    Vpc {
        id: vpc.vpc_id().unwrap_or_default().to_string(),
        cidr: vpc.cidr_block().unwrap_or_default().to_string(),
        is_default: vpc.is_default().unwrap_or(false),
    }
}

fn to_subnet(subnet: &aws_sdk_ec2::types::Subnet) -> Subnet {
    Subnet {
        id: subnet.subnet_id().unwrap_or_default().to_string(),
        vpc_id: subnet.vpc_id().unwrap_or_default().to_string(),
        availability_zone: subnet.availability_zone().unwrap_or_default().to_string(),
        public_ip_on_launch: subnet.map_public_ip_on_launch().unwrap_or(false),
    }
}

/// The region's default VPC; `None` when the account has deleted it.
pub async fn default_vpc(client: &Client) -> AwsResult<Option<Vpc>> {
    let out = client
        .describe_vpcs()
        .filters(filter("is-default", ["true"]))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeVpcs", e))?;
    Ok(out.vpcs().first().map(to_vpc))
}

/// The VPC with this id; `None` when it does not exist.
pub async fn vpc(client: &Client, id: &str) -> AwsResult<Option<Vpc>> {
    match client.describe_vpcs().vpc_ids(id).send().await {
        Ok(out) => Ok(out.vpcs().first().map(to_vpc)),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeVpcs", err);
            if err.is(&["InvalidVpcID.NotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

async fn describe_subnets(client: &Client, filters: Vec<Filter>) -> AwsResult<Vec<Subnet>> {
    let pages = client.describe_subnets().set_filters(Some(filters)).into_paginator().items().send();
    let subnets = pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("DescribeSubnets", e))?;
    Ok(subnets.iter().map(to_subnet).collect())
}

/// The subnets of a VPC, sorted by Availability Zone then id. For the default VPC only its default subnets
/// (one per zone) are returned, so subnets someone added to it by hand are not picked up silently.
pub async fn subnets_in_vpc(client: &Client, vpc_id: &str) -> AwsResult<Vec<Subnet>> {
    let vpc = vpc(client, vpc_id)
        .await?
        .ok_or_else(|| AwsError::other("DescribeVpcs", format!("VPC {vpc_id} does not exist in this region")))?;
    let mut filters = vec![filter("vpc-id", [vpc_id])];
    if vpc.is_default {
        filters.push(filter("default-for-az", ["true"]));
    }
    let mut subnets = describe_subnets(client, filters).await?;
    sort_by_zone(&mut subnets);
    Ok(subnets)
}

fn sort_by_zone(subnets: &mut [Subnet]) {
    subnets.sort_by(|a, b| (&a.availability_zone, &a.id).cmp(&(&b.availability_zone, &b.id)));
}

/// The subnets with these ids, in the order given; an error naming every id that does not exist.
pub async fn subnets(client: &Client, ids: &[String]) -> AwsResult<Vec<Subnet>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // A filter rather than SubnetIds: AWS then answers with what exists instead of failing on the first
    // unknown id, so the error can name all of them at once.
    let found = describe_subnets(client, vec![filter("subnet-id", ids.iter().cloned())]).await?;
    order_subnets(ids, found).map_err(|missing| {
        AwsError::other(
            "DescribeSubnets",
            format!("subnet(s) {} do not exist in this region (check subnet_ids and the region)", missing.join(", ")),
        )
    })
}

/// The subnets among `ids` that exist, in any order; unknown ids are simply absent. Reads only.
pub async fn existing_subnets(client: &Client, ids: &[String]) -> AwsResult<Vec<Subnet>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    describe_subnets(client, vec![filter("subnet-id", ids.iter().cloned())]).await
}

/// Whether the region offers the instance type at all. Reads only.
pub async fn instance_type_offered(client: &Client, instance_type: &str) -> AwsResult<bool> {
    let out = client
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::Region)
        .filters(filter("instance-type", [instance_type]))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeInstanceTypeOfferings", e))?;
    Ok(!out.instance_type_offerings().is_empty())
}

/// Puts found subnets in the requested order, or returns the ids that were not found.
fn order_subnets(ids: &[String], found: Vec<Subnet>) -> Result<Vec<Subnet>, Vec<String>> {
    let by_id: BTreeMap<String, Subnet> = found.into_iter().map(|s| (s.id.clone(), s)).collect();
    let missing: Vec<String> = ids.iter().filter(|id| !by_id.contains_key(*id)).cloned().collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut seen = BTreeSet::new();
    Ok(ids.iter().filter(|id| seen.insert(id.as_str())).map(|id| by_id[id].clone()).collect())
}

/// The one VPC all these subnets belong to, or a message saying why there is not exactly one.
pub fn vpc_of_subnets(subnets: &[Subnet]) -> Result<String, String> {
    let vpcs: BTreeSet<&str> = subnets.iter().map(|s| s.vpc_id.as_str()).collect();
    match vpcs.len() {
        0 => Err("no subnets given".to_string()),
        1 => Ok(vpcs.into_iter().next().unwrap_or_default().to_string()),
        _ => Err(format!(
            "subnets must all be in one VPC, but they span {}",
            vpcs.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The first subnet of each Availability Zone, in input order: EFS allows one mount target per zone.
pub fn one_subnet_per_zone(subnets: &[Subnet]) -> Vec<Subnet> {
    let mut zones = BTreeSet::new();
    subnets.iter().filter(|s| zones.insert(s.availability_zone.as_str())).cloned().collect()
}

/// The route tables that route each of these subnets: its explicitly associated table, else the VPC's main
/// table. Reads only.
pub async fn route_tables_for_subnets(
    client: &Client,
    vpc_id: &str,
    subnet_ids: &[String],
) -> AwsResult<BTreeSet<String>> {
    Ok(subnet_routes(client, vpc_id, subnet_ids).await?.into_values().map(|route| route.table_id).collect())
}

/// Where a route table sends traffic for addresses outside the VPC: its active `0.0.0.0/0` route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultRoute {
    /// None (or a blackhole): only the VPC and its endpoints are reachable.
    Missing,
    /// An internet gateway (`igw-...`): the internet, for addresses that have a public IP.
    InternetGateway(String),
    /// Anything else that forwards traffic out (a NAT gateway, a transit gateway, a peering, an appliance),
    /// which gives private addresses a way out.
    Forwarded(String),
}

/// A subnet's route table and its default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRoute {
    /// The table that routes the subnet: its own association, else the VPC's main table.
    pub table_id: String,
    /// Where the table sends traffic for outside the VPC.
    pub default_route: DefaultRoute,
}

fn default_route_of(table: &aws_sdk_ec2::types::RouteTable) -> DefaultRoute {
    let active = |r: &&aws_sdk_ec2::types::Route| {
        r.destination_cidr_block() == Some("0.0.0.0/0") && r.state().map(|s| s.as_str()) != Some("blackhole")
    };
    let Some(route) = table.routes().iter().find(active) else { return DefaultRoute::Missing };
    if let Some(gateway) = route.gateway_id().filter(|g| g.starts_with("igw-")) {
        return DefaultRoute::InternetGateway(gateway.to_string());
    }
    let target = [
        route.nat_gateway_id(),
        route.transit_gateway_id(),
        route.vpc_peering_connection_id(),
        route.network_interface_id(),
        route.instance_id(),
        route.gateway_id(),
        route.local_gateway_id(),
        route.core_network_arn(),
    ]
    .into_iter()
    .flatten()
    .next();
    target.map_or(DefaultRoute::Missing, |t| DefaultRoute::Forwarded(t.to_string()))
}

/// Each subnet's route table and default route, keyed by subnet id; an error when a subnet has no table
/// (a VPC without a main table). Reads only.
pub async fn subnet_routes(
    client: &Client,
    vpc_id: &str,
    subnet_ids: &[String],
) -> AwsResult<BTreeMap<String, SubnetRoute>> {
    let out = client
        .describe_route_tables()
        .filters(filter("vpc-id", [vpc_id]))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeRouteTables", e))?;
    let mut explicit: BTreeMap<&str, &aws_sdk_ec2::types::RouteTable> = BTreeMap::new();
    let mut main = None;
    for table in out.route_tables() {
        for association in table.associations() {
            if association.main() == Some(true) {
                main = Some(table);
            }
            if let Some(subnet) = association.subnet_id() {
                explicit.insert(subnet, table);
            }
        }
    }
    let mut routes = BTreeMap::new();
    for subnet in subnet_ids {
        let Some(table) = explicit.get(subnet.as_str()).copied().or(main) else {
            return Err(AwsError::other("DescribeRouteTables", format!("no route table routes subnet {subnet}")));
        };
        let table_id = table.route_table_id().unwrap_or_default().to_string();
        routes.insert(subnet.clone(), SubnetRoute { table_id, default_route: default_route_of(table) });
    }
    Ok(routes)
}

async fn vpc_endpoints(client: &Client, filters: Vec<Filter>) -> AwsResult<Vec<aws_sdk_ec2::types::VpcEndpoint>> {
    let out = client
        .describe_vpc_endpoints()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeVpcEndpoints", e))?;
    Ok(out.vpc_endpoints().to_vec())
}

/// The services the VPC has interface endpoints for with private DNS on (what lets a subnet without a way
/// out reach them under their usual names), as the part after the region: `ecr.api`, `logs`. Reads only.
pub async fn interface_endpoint_services(client: &Client, vpc_id: &str) -> AwsResult<BTreeSet<String>> {
    let found = vpc_endpoints(client, vec![filter("vpc-id", [vpc_id]), filter("vpc-endpoint-type", ["Interface"])]);
    Ok(found
        .await?
        .iter()
        .filter(|e| {
            matches!(e.state().map(|s| s.as_str().to_ascii_lowercase()).as_deref(), Some("available" | "pending"))
        })
        .filter(|e| e.private_dns_enabled() == Some(true))
        .filter_map(|e| e.service_name().and_then(short_service_name))
        .collect())
}

/// `com.amazonaws.eu-west-2.ecr.api` (or `cn.com.amazonaws.cn-north-1.ecr.api`) to `ecr.api`.
fn short_service_name(name: &str) -> Option<String> {
    let (_, after) = name.split_once("amazonaws.")?;
    let (_region, service) = after.split_once('.')?;
    Some(service.to_string())
}

/// The name of the S3 gateway endpoint service in a region.
pub fn s3_endpoint_service(partition: &str, region: &str) -> String {
    if partition == "aws-cn" { format!("cn.com.amazonaws.{region}.s3") } else { format!("com.amazonaws.{region}.s3") }
}

/// A gateway VPC endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEndpoint {
    /// Its id, `vpce-...`.
    pub id: String,
    /// The route tables it adds its route to.
    pub route_table_ids: BTreeSet<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The gateway endpoints for `service` in the VPC that are not deleted. Reads only.
pub async fn gateway_endpoints(client: &Client, vpc_id: &str, service: &str) -> AwsResult<Vec<GatewayEndpoint>> {
    let filters =
        vec![filter("vpc-id", [vpc_id]), filter("service-name", [service]), filter("vpc-endpoint-type", ["Gateway"])];
    Ok(vpc_endpoints(client, filters)
        .await?
        .iter()
        .filter(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting" | "Deleted" | "Deleting")))
        .map(|e| GatewayEndpoint {
            id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
            route_table_ids: e.route_table_ids().iter().cloned().collect(),
            tags: tag_map(e.tags()),
        })
        .collect())
}

/// Creates a gateway endpoint for `service` on these route tables, tagged in the same call. Returns its id.
pub async fn create_gateway_endpoint(
    client: &Client,
    vpc_id: &str,
    service: &str,
    route_table_ids: &BTreeSet<String>,
    tags: &BTreeMap<String, String>,
) -> AwsResult<String> {
    let out = client
        .create_vpc_endpoint()
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Gateway)
        .vpc_id(vpc_id)
        .service_name(service)
        .set_route_table_ids(Some(route_table_ids.iter().cloned().collect()))
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::VpcEndpoint).set_tags(Some(tag_list(tags))).build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateVpcEndpoint", e))?;
    Ok(out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()).unwrap_or_default().to_string())
}

/// Makes the endpoint route exactly these tables. Idempotent.
pub async fn set_endpoint_route_tables(
    client: &Client,
    endpoint: &GatewayEndpoint,
    route_table_ids: &BTreeSet<String>,
) -> AwsResult<()> {
    let add: Vec<String> = route_table_ids.difference(&endpoint.route_table_ids).cloned().collect();
    let remove: Vec<String> = endpoint.route_table_ids.difference(route_table_ids).cloned().collect();
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    client
        .modify_vpc_endpoint()
        .vpc_endpoint_id(&endpoint.id)
        .set_add_route_table_ids((!add.is_empty()).then_some(add))
        .set_remove_route_table_ids((!remove.is_empty()).then_some(remove))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyVpcEndpoint", e))?;
    Ok(())
}

/// Deletes the endpoint; absent is success.
pub async fn delete_endpoint(client: &Client, id: &str) -> AwsResult<()> {
    let out = client
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DeleteVpcEndpoints", e));
    match out {
        Ok(out) => match out
            .unsuccessful()
            .iter()
            .find(|u| u.error().and_then(|e| e.code()).is_some_and(|c| c != "InvalidVpcEndpointId.NotFound"))
        {
            Some(failed) => Err(AwsError::other(
                "DeleteVpcEndpoints",
                failed.error().and_then(|e| e.message()).unwrap_or("the endpoint was not deleted").to_string(),
            )),
            None => Ok(()),
        },
        Err(err) if err.is(&["InvalidVpcEndpointId.NotFound"]) => Ok(()),
        Err(err) => Err(err),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Security groups
// ---------------------------------------------------------------------------------------------------------

/// Where traffic a rule allows comes from (for egress rules: where it goes to).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleSource {
    /// An IPv4 or IPv6 CIDR block, e.g. `10.0.0.0/16` or `::/0`.
    Cidr(String),
    /// Another security group, by id.
    Group(String),
    /// A managed prefix list, by id. The stack never asks for these; they appear only when someone added
    /// such a rule out of band, and are listed so it can be reported and removed.
    PrefixList(String),
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::Cidr(v) | RuleSource::Group(v) | RuleSource::PrefixList(v) => f.write_str(v),
        }
    }
}

/// One rule of a security group. Identity is protocol, ports and source; the description is not part of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressRule {
    /// `tcp`, `udp`, `icmp` or `-1` (all traffic).
    pub protocol: String,
    /// First port of the range (-1 for all traffic).
    pub from_port: i32,
    /// Last port of the range (-1 for all traffic).
    pub to_port: i32,
    /// Where the traffic comes from.
    pub source: RuleSource,
    /// Why the rule exists, shown in the console.
    pub description: String,
}

impl IngressRule {
    /// A rule allowing one TCP port from a source.
    pub fn tcp(port: i32, source: RuleSource, description: impl Into<String>) -> Self {
        IngressRule { protocol: "tcp".into(), from_port: port, to_port: port, source, description: description.into() }
    }

    /// The rule allowing all traffic to or from a CIDR block (the shape of the default egress rule).
    pub fn all_traffic(cidr: &str, description: impl Into<String>) -> Self {
        IngressRule {
            protocol: "-1".into(),
            from_port: -1,
            to_port: -1,
            source: RuleSource::Cidr(cidr.into()),
            description: description.into(),
        }
    }

    /// The rule in the canonical form AWS reports it in: protocol numbers become names, and rules for all
    /// traffic carry no ports.
    fn normalised(&self) -> IngressRule {
        let protocol = normalise_protocol(&self.protocol);
        let (from_port, to_port) = if protocol == "-1" { (-1, -1) } else { (self.from_port, self.to_port) };
        IngressRule { protocol, from_port, to_port, source: self.source.clone(), description: self.description.clone() }
    }

    /// What makes two rules the same rule.
    fn identity(&self) -> (String, i32, i32, RuleSource) {
        let n = self.normalised();
        (n.protocol, n.from_port, n.to_port, n.source)
    }
}

impl fmt::Display for IngressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.normalised();
        match (n.protocol.as_str(), n.from_port, n.to_port) {
            ("-1", _, _) => write!(f, "all traffic"),
            (p, from, to) if from == to => write!(f, "{p} {from}"),
            (p, from, to) => write!(f, "{p} {from}-{to}"),
        }?;
        write!(f, " from {}", n.source)
    }
}

fn normalise_protocol(protocol: &str) -> String {
    match protocol.to_ascii_lowercase().as_str() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "all" | "-1" => "-1".into(),
        other => other.into(),
    }
}

/// A security group as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroup {
    /// Its id, e.g. `sg-0abc`.
    pub id: String,
    /// Its name, unique within its VPC.
    pub name: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Its ingress rules, one per source, sorted.
    pub ingress: Vec<IngressRule>,
    /// Whether the allow-all IPv4 egress rule is present.
    pub egress_all: bool,
    /// Every egress rule (`source` is the destination), sorted.
    pub egress: Vec<IngressRule>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// Flattens AWS's permissions (one per protocol and port range, with several sources) into one rule per
/// source, sorted.
fn rules_from_permissions(permissions: &[IpPermission]) -> Vec<IngressRule> {
    let mut rules = Vec::new();
    for p in permissions {
        let base = IngressRule {
            protocol: p.ip_protocol().unwrap_or("-1").to_string(),
            from_port: p.from_port().unwrap_or(-1),
            to_port: p.to_port().unwrap_or(-1),
            source: RuleSource::Cidr(String::new()),
            description: String::new(),
        }
        .normalised();
        let with = |source: RuleSource, description: Option<&str>| IngressRule {
            source,
            description: description.unwrap_or_default().to_string(),
            ..base.clone()
        };
        for r in p.ip_ranges() {
            rules.push(with(RuleSource::Cidr(r.cidr_ip().unwrap_or_default().into()), r.description()));
        }
        for r in p.ipv6_ranges() {
            rules.push(with(RuleSource::Cidr(r.cidr_ipv6().unwrap_or_default().into()), r.description()));
        }
        for g in p.user_id_group_pairs() {
            rules.push(with(RuleSource::Group(g.group_id().unwrap_or_default().into()), g.description()));
        }
        for l in p.prefix_list_ids() {
            rules.push(with(RuleSource::PrefixList(l.prefix_list_id().unwrap_or_default().into()), l.description()));
        }
    }
    rules.sort();
    rules
}

/// The AWS permission granting exactly this rule.
fn permission(rule: &IngressRule) -> IpPermission {
    let rule = rule.normalised();
    let description = (!rule.description.is_empty()).then(|| rule.description.clone());
    let mut builder = IpPermission::builder().ip_protocol(&rule.protocol);
    if rule.protocol != "-1" {
        builder = builder.from_port(rule.from_port).to_port(rule.to_port);
    }
    builder = match &rule.source {
        RuleSource::Cidr(cidr) if cidr.contains(':') => {
            builder.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(cidr).set_description(description).build())
        }
        RuleSource::Cidr(cidr) => {
            builder.ip_ranges(IpRange::builder().cidr_ip(cidr).set_description(description).build())
        }
        RuleSource::Group(id) => {
            builder.user_id_group_pairs(UserIdGroupPair::builder().group_id(id).set_description(description).build())
        }
        RuleSource::PrefixList(id) => {
            builder.prefix_list_ids(PrefixListId::builder().prefix_list_id(id).set_description(description).build())
        }
    };
    builder.build()
}

/// What it takes to turn `actual` rules into `expected` ones.
#[derive(Debug, Default, PartialEq, Eq)]
struct RulePlan {
    /// Expected rules that are missing.
    authorize: Vec<IngressRule>,
    /// Present rules nobody asked for.
    revoke: Vec<IngressRule>,
    /// Present rules whose description differs (cosmetic: updated in place, never reported as drift).
    redescribe: Vec<IngressRule>,
}

fn plan_rules(expected: &[IngressRule], actual: &[IngressRule]) -> RulePlan {
    let actual_by_identity: BTreeMap<_, &IngressRule> = actual.iter().map(|r| (r.identity(), r)).collect();
    let expected_by_identity: BTreeMap<_, &IngressRule> = expected.iter().map(|r| (r.identity(), r)).collect();
    let mut plan = RulePlan::default();
    for (identity, rule) in &expected_by_identity {
        match actual_by_identity.get(identity) {
            None => plan.authorize.push(rule.normalised()),
            Some(present) if present.description != rule.description => plan.redescribe.push(rule.normalised()),
            Some(_) => {}
        }
    }
    for (identity, rule) in &actual_by_identity {
        if !expected_by_identity.contains_key(identity) {
            plan.revoke.push(rule.normalised());
        }
    }
    plan
}

/// How the actual ingress rules differ from the expected ones, e.g. `missing rule tcp 3306 from sg-0abc`
/// or `extra rule tcp 22 from 0.0.0.0/0`. Descriptions are ignored.
pub fn ingress_drift(expected: &[IngressRule], actual: &[IngressRule]) -> Vec<String> {
    let plan = plan_rules(expected, actual);
    let missing = plan.authorize.iter().map(|r| format!("missing rule {r}"));
    let extra = plan.revoke.iter().map(|r| format!("extra rule {r}"));
    missing.chain(extra).collect()
}

/// The egress rules a group should have: the allow-all IPv4 rule when `allow_all`, none otherwise.
fn egress_plan(allow_all: bool, actual: &[IngressRule]) -> RulePlan {
    let all_v4 = IngressRule::all_traffic("0.0.0.0/0", "");
    let all_v6 = IngressRule::all_traffic("::/0", "");
    let mut plan = RulePlan::default();
    if allow_all && !actual.iter().any(|r| r.identity() == all_v4.identity()) {
        plan.authorize.push(all_v4.clone());
    }
    for rule in actual {
        // With allow-all, an all-traffic IPv6 rule (which AWS adds in dual-stack VPCs) is in keeping; every
        // narrower rule is redundant. Without it, nothing may leave.
        let in_keeping = allow_all && (rule.identity() == all_v4.identity() || rule.identity() == all_v6.identity());
        if !in_keeping {
            plan.revoke.push(rule.normalised());
        }
    }
    plan
}

/// How the actual egress rules differ from "allow all" (`allow_all`) or "none".
pub fn egress_drift(allow_all: bool, actual: &[IngressRule]) -> Vec<String> {
    let plan = egress_plan(allow_all, actual);
    let missing = plan.authorize.iter().map(|r| format!("missing egress rule {}", egress_text(r)));
    let extra = plan.revoke.iter().map(|r| format!("extra egress rule {}", egress_text(r)));
    missing.chain(extra).collect()
}

/// How the actual egress rules differ from exactly `expected` (for groups whose traffic out is narrowed to
/// named destinations, such as a load balancer's). Descriptions are ignored.
pub fn egress_rules_drift(expected: &[IngressRule], actual: &[IngressRule]) -> Vec<String> {
    let plan = plan_rules(expected, actual);
    let missing = plan.authorize.iter().map(|r| format!("missing egress rule {}", egress_text(r)));
    let extra = plan.revoke.iter().map(|r| format!("extra egress rule {}", egress_text(r)));
    missing.chain(extra).collect()
}

fn egress_text(rule: &IngressRule) -> String {
    rule.to_string().replacen(" from ", " to ", 1)
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    super::tag_map(tags.iter().map(|t| (t.key().unwrap_or_default(), t.value())))
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    super::tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

fn to_security_group(group: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    let egress = rules_from_permissions(group.ip_permissions_egress());
    let all_v4 = IngressRule::all_traffic("0.0.0.0/0", "").identity();
    SecurityGroup {
        id: group.group_id().unwrap_or_default().to_string(),
        name: group.group_name().unwrap_or_default().to_string(),
        vpc_id: group.vpc_id().unwrap_or_default().to_string(),
        ingress: rules_from_permissions(group.ip_permissions()),
        egress_all: egress.iter().any(|r| r.identity() == all_v4),
        egress,
        tags: tag_map(group.tags()),
    }
}

async fn find_group(client: &Client, vpc_id: &str, name: &str) -> AwsResult<Option<SecurityGroup>> {
    let out = client
        .describe_security_groups()
        .filters(filter("group-name", [name]))
        .filters(filter("vpc-id", [vpc_id]))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", e))?;
    Ok(out.security_groups().first().map(to_security_group))
}

async fn group_by_id(client: &Client, group_id: &str) -> AwsResult<Option<SecurityGroup>> {
    match client.describe_security_groups().group_ids(group_id).send().await {
        Ok(out) => Ok(out.security_groups().first().map(to_security_group)),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeSecurityGroups", err);
            if err.is(&["InvalidGroup.NotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

async fn existing_group(client: &Client, group_id: &str) -> AwsResult<SecurityGroup> {
    group_by_id(client, group_id)
        .await?
        .ok_or_else(|| AwsError::other("DescribeSecurityGroups", format!("security group {group_id} does not exist")))
}

/// Takes the tags with these keys off the security group, endpoint or launch template (keys it does not have are no
/// error): the stack's tags that the configuration no longer has.
pub async fn remove_tags(client: &Client, resource_id: &str, keys: &[String]) -> AwsResult<()> {
    let tags: Vec<Tag> = keys.iter().map(|k| Tag::builder().key(k).build()).collect();
    client
        .delete_tags()
        .resources(resource_id)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DeleteTags", e))?;
    Ok(())
}

/// Writes `tags` (what [`super::tags_to_write`] says is missing); nothing when there are none.
async fn put_tags(client: &Client, resource_id: &str, tags: &BTreeMap<String, String>) -> AwsResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    client
        .create_tags()
        .resources(resource_id)
        .set_tags(Some(tag_list(tags)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateTags", e))?;
    Ok(())
}

/// Finds the security group by name in the VPC or creates it, then converges tags; returns its id. May be
/// called again after a crash: it adopts the group a previous run created and converges.
///
/// The description is fixed at creation (AWS cannot change it), so a different description on an adopted
/// group is left as it is.
pub async fn ensure_security_group(
    client: &Client,
    vpc_id: &str,
    name: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<String> {
    let (id, current) = match find_group(client, vpc_id, name).await? {
        Some(group) => (group.id, group.tags),
        None => create_group(client, vpc_id, name, description, tags).await?,
    };
    put_tags(client, &id, &super::tags_to_write(tags, &current)).await?;
    Ok(id)
}

async fn create_group(
    client: &Client,
    vpc_id: &str,
    name: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<(String, BTreeMap<String, String>)> {
    let mut request = client.create_security_group().vpc_id(vpc_id).group_name(name).description(description);
    if !tags.is_empty() {
        request = request.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .set_tags(Some(tag_list(tags)))
                .build(),
        );
    }
    match request.send().await {
        Ok(out) => Ok((out.group_id().unwrap_or_default().to_string(), tags.clone())),
        Err(err) => {
            let err = AwsError::from_sdk("CreateSecurityGroup", err);
            if !err.is(&["InvalidGroup.Duplicate"]) {
                return Err(err);
            }
            // Another run created it between our look and our create: adopt it.
            find_group(client, vpc_id, name).await?.map(|g| (g.id, g.tags)).ok_or_else(|| {
                AwsError::other("CreateSecurityGroup", format!("security group {name} exists but cannot be found"))
            })
        }
    }
}

/// The security group with this name in the VPC; `None` when it does not exist.
pub async fn describe_security_group(client: &Client, vpc_id: &str, name: &str) -> AwsResult<Option<SecurityGroup>> {
    find_group(client, vpc_id, name).await
}

/// The security groups that have one of `names`, in every VPC, in one request: the VPC does not narrow
/// the request, so it need not wait for the VPC's own lookup (callers pick the VPC's groups by `vpc_id`).
pub async fn security_groups_named(client: &Client, names: &[String]) -> AwsResult<Vec<SecurityGroup>> {
    let mut groups = Vec::new();
    let mut pages = client
        .describe_security_groups()
        .filters(filter("group-name", names.iter().map(String::as_str)))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", e))?;
        groups.extend(page.security_groups().iter().map(to_security_group));
    }
    Ok(groups)
}

/// Makes the group's ingress rules exactly `rules`: missing ones are authorized (first, so a changed source
/// never leaves a gap), extra ones revoked, changed descriptions updated. Idempotent; converges.
pub async fn set_ingress(client: &Client, group_id: &str, rules: &[IngressRule]) -> AwsResult<()> {
    let group = existing_group(client, group_id).await?;
    let plan = plan_rules(rules, &group.ingress);
    for rule in &plan.authorize {
        authorize_ingress(client, group_id, rule).await?;
    }
    for rule in &plan.revoke {
        revoke_ingress(client, group_id, rule).await?;
    }
    for rule in &plan.redescribe {
        client
            .update_security_group_rule_descriptions_ingress()
            .group_id(group_id)
            .ip_permissions(permission(rule))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateSecurityGroupRuleDescriptionsIngress", e))?;
    }
    Ok(())
}

async fn authorize_ingress(client: &Client, group_id: &str, rule: &IngressRule) -> AwsResult<()> {
    match client.authorize_security_group_ingress().group_id(group_id).ip_permissions(permission(rule)).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("AuthorizeSecurityGroupIngress", err);
            if err.is(&["InvalidPermission.Duplicate"]) { Ok(()) } else { Err(err) }
        }
    }
}

async fn revoke_ingress(client: &Client, group_id: &str, rule: &IngressRule) -> AwsResult<()> {
    match client.revoke_security_group_ingress().group_id(group_id).ip_permissions(permission(rule)).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("RevokeSecurityGroupIngress", err);
            if err.is(&["InvalidPermission.NotFound"]) { Ok(()) } else { Err(err) }
        }
    }
}

/// Keeps (`allow_all`) or removes the allow-all egress rule. Instance and service groups keep it (they pull
/// images, call AWS APIs); the database and file-system groups never initiate connections, so they get no
/// egress at all. Any narrower egress rule added out of band is removed. Idempotent; converges.
pub async fn set_egress_all(client: &Client, group_id: &str, allow_all: bool) -> AwsResult<()> {
    let group = existing_group(client, group_id).await?;
    apply_egress_plan(client, group_id, &egress_plan(allow_all, &group.egress)).await
}

/// Makes the group's egress rules exactly `rules` (`source` is the destination): missing ones are
/// authorized first, then every other rule, the default allow-all included, is revoked. Idempotent;
/// converges.
pub async fn set_egress_rules(client: &Client, group_id: &str, rules: &[IngressRule]) -> AwsResult<()> {
    let group = existing_group(client, group_id).await?;
    apply_egress_plan(client, group_id, &plan_rules(rules, &group.egress)).await
}

/// Authorizes, then revokes, the egress rules of `plan`; a rule already there (or already gone) is success.
async fn apply_egress_plan(client: &Client, group_id: &str, plan: &RulePlan) -> AwsResult<()> {
    for rule in &plan.authorize {
        let result =
            client.authorize_security_group_egress().group_id(group_id).ip_permissions(permission(rule)).send().await;
        if let Err(err) = result {
            let err = AwsError::from_sdk("AuthorizeSecurityGroupEgress", err);
            if !err.is(&["InvalidPermission.Duplicate"]) {
                return Err(err);
            }
        }
    }
    for rule in &plan.revoke {
        let result =
            client.revoke_security_group_egress().group_id(group_id).ip_permissions(permission(rule)).send().await;
        if let Err(err) = result {
            let err = AwsError::from_sdk("RevokeSecurityGroupEgress", err);
            if !err.is(&["InvalidPermission.NotFound"]) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Adds one ingress rule to a group, leaving its other rules alone; already present is success. For a
/// rule owned by another group's part (a load balancer's group letting itself into the services' group).
pub async fn allow_ingress(client: &Client, group_id: &str, rule: &IngressRule) -> AwsResult<()> {
    authorize_ingress(client, group_id, rule).await
}

/// Revokes every ingress rule of `group_id` whose source is the group `source_id`, so `source_id` can be
/// deleted. Either group being gone already is success.
pub async fn revoke_ingress_from_group(client: &Client, group_id: &str, source_id: &str) -> AwsResult<()> {
    let Some(group) = group_by_id(client, group_id).await? else { return Ok(()) };
    for rule in group.ingress.iter().filter(|r| r.source == RuleSource::Group(source_id.to_string())) {
        revoke_ingress(client, group_id, rule).await?;
    }
    Ok(())
}

/// Revokes every ingress rule of the group. Groups that reference each other (database allows instances,
/// ...) cannot be deleted while the references exist, so teardown calls this on all of them first. A group
/// that no longer exists is success.
pub async fn revoke_all_ingress(client: &Client, group_id: &str) -> AwsResult<()> {
    let Some(group) = group_by_id(client, group_id).await? else { return Ok(()) };
    for rule in &group.ingress {
        revoke_ingress(client, group_id, rule).await?;
    }
    Ok(())
}

/// How long to wait before the first retry of a security group delete blocked by a dependency.
pub const SECURITY_GROUP_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// The longest wait between two retries.
const SECURITY_GROUP_MAX_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// What to do after one DeleteSecurityGroup attempt.
#[derive(Debug)]
enum DeleteDecision {
    /// The group is gone.
    Done,
    /// Still in use; try again later.
    Retry,
    /// Give up with this error.
    Fail(AwsError),
}

fn delete_decision(
    group_id: &str,
    outcome: Result<(), AwsError>,
    elapsed: Duration,
    timeout: Duration,
) -> DeleteDecision {
    match outcome {
        Ok(()) => DeleteDecision::Done,
        Err(err) if err.is(&["InvalidGroup.NotFound"]) => DeleteDecision::Done,
        Err(err) if err.is(&["DependencyViolation"]) && elapsed < timeout => DeleteDecision::Retry,
        Err(err) if err.is(&["DependencyViolation"]) => DeleteDecision::Fail(AwsError::other(
            "DeleteSecurityGroup",
            format!(
                "security group {group_id} was still in use after waiting {}s ({}); network interfaces of \
                 deleted tasks and instances usually go within minutes, so retry or raise the delete timeout, \
                 and check for other resources using the group",
                timeout.as_secs(),
                err.message
            ),
        )),
        Err(err) => DeleteDecision::Fail(err),
    }
}

fn next_interval(interval: Duration) -> Duration {
    (interval * 2).min(SECURITY_GROUP_MAX_RETRY_INTERVAL)
}

/// Deletes the security group, retrying with backoff while it is still in use (network interfaces of
/// deleted tasks and instances linger for minutes) until `timeout`. A group that does not exist is success,
/// so this may be called again after a crash.
pub async fn delete_security_group(client: &Client, group_id: &str, timeout: Duration) -> AwsResult<()> {
    delete_security_group_polling(client, group_id, timeout, SECURITY_GROUP_RETRY_INTERVAL).await
}

async fn delete_security_group_polling(
    client: &Client,
    group_id: &str,
    timeout: Duration,
    first_interval: Duration,
) -> AwsResult<()> {
    let started = Instant::now();
    let mut interval = first_interval;
    loop {
        let outcome = client
            .delete_security_group()
            .group_id(group_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("DeleteSecurityGroup", e));
        match delete_decision(group_id, outcome, started.elapsed(), timeout) {
            DeleteDecision::Done => return Ok(()),
            DeleteDecision::Fail(err) => return Err(err),
            DeleteDecision::Retry => {
                let remaining = timeout.saturating_sub(started.elapsed());
                tokio::time::sleep(interval.min(remaining)).await;
                interval = next_interval(interval);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Launch templates
// ---------------------------------------------------------------------------------------------------------

/// The root device of the ECS-optimized Amazon Linux AMIs.
pub const ROOT_DEVICE: &str = "/dev/xvda";
/// Root volume size: the ECS-optimized AMI needs 30 GiB for its image cache.
pub const ROOT_VOLUME_GIB: i32 = 30;
/// Instance metadata hop limit. 1 keeps IMDS out of reach of anything behind an extra network hop (bridge
/// or awsvpc containers): awsvpc tasks get credentials from their task role through the ECS agent, never
/// from IMDS, and the agent itself runs in the host's network namespace.
pub const METADATA_HOP_LIMIT: i32 = 1;

/// What the stack puts in its launch template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplateSpec {
    /// The AMI, normally the ECS-optimized one from the public SSM parameter.
    pub image_id: String,
    /// The instance type, e.g. `t3.medium`.
    pub instance_type: String,
    /// The ARN of the instance profile carrying the ECS agent's role.
    pub instance_profile_arn: String,
    /// Security groups of the instances (no network interfaces are set: the subnet decides public IPs).
    pub security_group_ids: Vec<String>,
    /// The user data as plain text (it is base64-encoded here).
    pub user_data: String,
    /// The customer-managed KMS key of the root volumes; `None`: the account's default EBS key.
    pub kms_key: Option<String>,
    /// Tags for the template itself and the instances' root volumes (instances get theirs from the Auto
    /// Scaling group). Changing them creates a new template version.
    pub tags: BTreeMap<String, String>,
}

/// A launch template and the version the stack uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    /// Its id, e.g. `lt-0abc`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its default version, which carries the current spec.
    pub version: i64,
}

/// The root volume settings of a template version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootVolume {
    /// The device name.
    pub device: String,
    /// Size in GiB.
    pub size_gib: Option<i32>,
    /// EBS volume type, e.g. `gp3`.
    pub volume_type: Option<String>,
    /// Whether it is encrypted.
    pub encrypted: bool,
    /// The KMS key it is encrypted with, when one is named.
    pub kms_key: Option<String>,
    /// Whether it goes with the instance.
    pub delete_on_termination: bool,
}

/// The fields of a launch template version the stack manages, normalised so a spec and AWS's answer
/// compare equal when they mean the same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateData {
    /// The AMI.
    pub image_id: String,
    /// The instance type.
    pub instance_type: String,
    /// The instance profile ARN.
    pub instance_profile_arn: String,
    /// Security group ids, sorted.
    pub security_group_ids: Vec<String>,
    /// User data, decoded to text.
    pub user_data: String,
    /// Whether IMDSv2 (session tokens) is required.
    pub imdsv2_required: bool,
    /// Whether the metadata endpoint is on (the ECS agent needs it).
    pub metadata_endpoint_enabled: bool,
    /// The metadata response hop limit.
    pub metadata_hop_limit: Option<i32>,
    /// The root volume mapping, if any.
    pub root_volume: Option<RootVolume>,
    /// Whether detailed (1-minute) monitoring is on.
    pub detailed_monitoring: bool,
    /// Tags given to volumes at launch.
    pub volume_tags: BTreeMap<String, String>,
}

impl TemplateData {
    /// The data a spec asks for.
    pub fn from_spec(spec: &LaunchTemplateSpec) -> Self {
        let mut security_group_ids = spec.security_group_ids.clone();
        security_group_ids.sort();
        security_group_ids.dedup();
        TemplateData {
            image_id: spec.image_id.clone(),
            instance_type: spec.instance_type.clone(),
            instance_profile_arn: spec.instance_profile_arn.clone(),
            security_group_ids,
            user_data: spec.user_data.clone(),
            imdsv2_required: true,
            metadata_endpoint_enabled: true,
            metadata_hop_limit: Some(METADATA_HOP_LIMIT),
            root_volume: Some(RootVolume {
                device: ROOT_DEVICE.into(),
                size_gib: Some(ROOT_VOLUME_GIB),
                volume_type: Some("gp3".into()),
                encrypted: true,
                kms_key: spec.kms_key.clone(),
                delete_on_termination: true,
            }),
            detailed_monitoring: true,
            volume_tags: spec.tags.clone(),
        }
    }

    /// The managed fields of a version as AWS reports them.
    pub fn from_response(data: &ResponseLaunchTemplateData) -> Self {
        let metadata = data.metadata_options();
        let mut security_group_ids = data.security_group_ids().to_vec();
        security_group_ids.sort();
        security_group_ids.dedup();
        TemplateData {
            image_id: data.image_id().unwrap_or_default().to_string(),
            instance_type: data.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            instance_profile_arn: data.iam_instance_profile().and_then(|p| p.arn()).unwrap_or_default().to_string(),
            security_group_ids,
            user_data: decode_user_data(data.user_data().unwrap_or_default()),
            imdsv2_required: metadata.and_then(|m| m.http_tokens()) == Some(&LaunchTemplateHttpTokensState::Required),
            // Unset means enabled.
            metadata_endpoint_enabled: metadata.and_then(|m| m.http_endpoint())
                != Some(&LaunchTemplateInstanceMetadataEndpointState::Disabled),
            metadata_hop_limit: metadata.and_then(|m| m.http_put_response_hop_limit()),
            root_volume: data.block_device_mappings().iter().find(|m| m.device_name() == Some(ROOT_DEVICE)).map(|m| {
                RootVolume {
                    device: ROOT_DEVICE.into(),
                    size_gib: m.ebs().and_then(|e| e.volume_size()),
                    volume_type: m.ebs().and_then(|e| e.volume_type()).map(|t| t.as_str().to_string()),
                    encrypted: m.ebs().and_then(|e| e.encrypted()).unwrap_or(false),
                    kms_key: m.ebs().and_then(|e| e.kms_key_id()).map(str::to_string),
                    delete_on_termination: m.ebs().and_then(|e| e.delete_on_termination()).unwrap_or(false),
                }
            }),
            detailed_monitoring: data.monitoring().and_then(|m| m.enabled()).unwrap_or(false),
            volume_tags: data
                .tag_specifications()
                .iter()
                .filter(|s| s.resource_type() == Some(&ResourceType::Volume))
                .flat_map(|s| s.tags())
                .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                .collect(),
        }
    }

    /// The request carrying this data.
    fn request(&self) -> RequestLaunchTemplateData {
        let mut builder = RequestLaunchTemplateData::builder()
            .image_id(&self.image_id)
            .instance_type(self.instance_type.as_str().into())
            .iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder().arn(&self.instance_profile_arn).build(),
            )
            .set_security_group_ids(Some(self.security_group_ids.clone()))
            .user_data(BASE64.encode(&self.user_data))
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(if self.imdsv2_required {
                        LaunchTemplateHttpTokensState::Required
                    } else {
                        LaunchTemplateHttpTokensState::Optional
                    })
                    .http_endpoint(if self.metadata_endpoint_enabled {
                        LaunchTemplateInstanceMetadataEndpointState::Enabled
                    } else {
                        LaunchTemplateInstanceMetadataEndpointState::Disabled
                    })
                    .set_http_put_response_hop_limit(self.metadata_hop_limit)
                    .build(),
            )
            .monitoring(LaunchTemplatesMonitoringRequest::builder().enabled(self.detailed_monitoring).build());
        if let Some(root) = &self.root_volume {
            builder = builder.block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(&root.device)
                    .ebs(
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            .set_volume_size(root.size_gib)
                            .set_volume_type(root.volume_type.as_deref().map(VolumeType::from))
                            .encrypted(root.encrypted)
                            .set_kms_key_id(root.kms_key.clone())
                            .delete_on_termination(root.delete_on_termination)
                            .build(),
                    )
                    .build(),
            );
        }
        if !self.volume_tags.is_empty() {
            builder = builder.tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tag_list(&self.volume_tags)))
                    .build(),
            );
        }
        builder.build()
    }
}

fn decode_user_data(encoded: &str) -> String {
    match BASE64.decode(encoded.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => encoded.to_string(),
    }
}

/// How `actual` differs from `expected`, one readable line per managed field, e.g. `IMDSv2 not required`.
pub fn template_drift(expected: &TemplateData, actual: &TemplateData) -> Vec<String> {
    let mut drift = Vec::new();
    let mut differs = |what: &str, is: &str, want: &str| {
        if is != want {
            drift.push(format!("{what} is {}, expected {want}", if is.is_empty() { "unset" } else { is }));
        }
    };
    differs("image", &actual.image_id, &expected.image_id);
    differs("instance type", &actual.instance_type, &expected.instance_type);
    differs("instance profile", &actual.instance_profile_arn, &expected.instance_profile_arn);
    differs("security groups", &actual.security_group_ids.join(","), &expected.security_group_ids.join(","));
    if actual.user_data != expected.user_data {
        drift.push("user data differs".to_string());
    }
    if expected.imdsv2_required && !actual.imdsv2_required {
        drift.push("IMDSv2 not required".to_string());
    }
    if expected.metadata_endpoint_enabled && !actual.metadata_endpoint_enabled {
        drift.push("instance metadata endpoint is disabled (the ECS agent needs it)".to_string());
    }
    if actual.metadata_hop_limit != expected.metadata_hop_limit {
        let is = actual.metadata_hop_limit.map_or("unset".to_string(), |h| h.to_string());
        let want = expected.metadata_hop_limit.map_or("unset".to_string(), |h| h.to_string());
        drift.push(format!("metadata hop limit is {is}, expected {want}"));
    }
    drift.extend(root_volume_drift(expected.root_volume.as_ref(), actual.root_volume.as_ref()));
    if expected.detailed_monitoring && !actual.detailed_monitoring {
        drift.push("detailed monitoring is off".to_string());
    }
    if actual.volume_tags != expected.volume_tags {
        drift.push("volume tags differ".to_string());
    }
    drift
}

fn root_volume_drift(expected: Option<&RootVolume>, actual: Option<&RootVolume>) -> Vec<String> {
    let (Some(want), Some(is)) = (expected, actual) else {
        return match (expected, actual) {
            (Some(want), None) => vec![format!("root volume mapping for {} is missing", want.device)],
            _ => Vec::new(),
        };
    };
    let mut drift = Vec::new();
    if want.encrypted && !is.encrypted {
        drift.push("root volume is not encrypted".to_string());
    }
    if let Some(key) = &want.kms_key
        && !super::kms::same_key(is.kms_key.as_deref(), key)
    {
        drift.push(format!("root volume is not encrypted with {key}"));
    }
    if is.volume_type != want.volume_type {
        let show = |t: &Option<String>| t.clone().unwrap_or_else(|| "unset".into());
        drift.push(format!("root volume type is {}, expected {}", show(&is.volume_type), show(&want.volume_type)));
    }
    if is.size_gib != want.size_gib {
        let show = |s: Option<i32>| s.map_or("unset".into(), |s| format!("{s} GiB"));
        drift.push(format!("root volume size is {}, expected {}", show(is.size_gib), show(want.size_gib)));
    }
    if want.delete_on_termination && !is.delete_on_termination {
        drift.push("root volume outlives its instance".to_string());
    }
    drift
}

/// A launch template as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplateObservation {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The default version (the one the stack uses).
    pub default_version: i64,
    /// The newest version.
    pub latest_version: i64,
    /// The managed fields of the default version.
    pub data: TemplateData,
    /// The template's tags.
    pub tags: BTreeMap<String, String>,
}

impl LaunchTemplateObservation {
    /// How the default version differs from `expected` (empty when none).
    pub fn drift(&self, expected: &LaunchTemplateSpec) -> Vec<String> {
        template_drift(&TemplateData::from_spec(expected), &self.data)
    }
}

const TEMPLATE_NOT_FOUND: &[&str] =
    &["InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound"];

async fn find_template(client: &Client, name: &str) -> AwsResult<Option<aws_sdk_ec2::types::LaunchTemplate>> {
    match client.describe_launch_templates().launch_template_names(name).send().await {
        Ok(out) => Ok(out.launch_templates().first().cloned()),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeLaunchTemplates", err);
            if err.is(TEMPLATE_NOT_FOUND) { Ok(None) } else { Err(err) }
        }
    }
}

async fn version_data(client: &Client, template_id: &str, version: &str) -> AwsResult<(i64, TemplateData)> {
    let out = client
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .versions(version)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeLaunchTemplateVersions", e))?;
    let found = out.launch_template_versions().first().ok_or_else(|| {
        AwsError::other(
            "DescribeLaunchTemplateVersions",
            format!("launch template {template_id} has no version {version}"),
        )
    })?;
    let data = found.launch_template_data().map(TemplateData::from_response).unwrap_or_default();
    Ok((found.version_number().unwrap_or_default(), data))
}

/// Finds the launch template by name or creates it; when its newest version differs from the spec,
/// creates a version carrying the spec, and makes the matching version the default. Returns the default
/// version. May be called again after a crash (between creating a version and making it the default, say):
/// it converges without duplicate versions.
pub async fn ensure_launch_template(
    client: &Client,
    name: &str,
    spec: &LaunchTemplateSpec,
) -> AwsResult<LaunchTemplate> {
    let expected = TemplateData::from_spec(spec);
    let found = match find_template(client, name).await? {
        Some(found) => found,
        None => match create_template(client, name, &expected, &spec.tags).await? {
            Some(created) => return Ok(created),
            // Another run created it between our look and our create: adopt it.
            None => find_template(client, name).await?.ok_or_else(|| {
                AwsError::other("CreateLaunchTemplate", format!("launch template {name} exists but cannot be found"))
            })?,
        },
    };
    let id = found.launch_template_id().unwrap_or_default().to_string();
    let (latest, latest_data) = version_data(client, &id, "$Latest").await?;
    let wanted = if latest_data == expected { latest } else { create_version(client, &id, &expected).await? };
    if found.default_version_number() != Some(wanted) {
        client
            .modify_launch_template()
            .launch_template_id(&id)
            .default_version(wanted.to_string())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ModifyLaunchTemplate", e))?;
    }
    let current = super::tag_map(found.tags().iter().map(|t| (t.key(), t.value())));
    put_tags(client, &id, &super::tags_to_write(&spec.tags, &current)).await?;
    Ok(LaunchTemplate { id, name: name.to_string(), version: wanted })
}

/// Creates the template; `None` when it already exists.
async fn create_template(
    client: &Client,
    name: &str,
    data: &TemplateData,
    tags: &BTreeMap<String, String>,
) -> AwsResult<Option<LaunchTemplate>> {
    let mut request = client.create_launch_template().launch_template_name(name).launch_template_data(data.request());
    if !tags.is_empty() {
        request = request.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(tag_list(tags)))
                .build(),
        );
    }
    match request.send().await {
        Ok(out) => {
            let template = out.launch_template();
            Ok(Some(LaunchTemplate {
                id: template.and_then(|t| t.launch_template_id()).unwrap_or_default().to_string(),
                name: name.to_string(),
                version: template.and_then(|t| t.default_version_number()).unwrap_or(1),
            }))
        }
        Err(err) => {
            let err = AwsError::from_sdk("CreateLaunchTemplate", err);
            if err.is(&["AlreadyExistsException", "InvalidLaunchTemplateName.AlreadyExistsException"]) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

async fn create_version(client: &Client, template_id: &str, data: &TemplateData) -> AwsResult<i64> {
    let out = client
        .create_launch_template_version()
        .launch_template_id(template_id)
        .launch_template_data(data.request())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateLaunchTemplateVersion", e))?;
    out.launch_template_version().and_then(|v| v.version_number()).ok_or_else(|| {
        AwsError::other("CreateLaunchTemplateVersion", format!("no version number for launch template {template_id}"))
    })
}

/// Describes the launch template and its default version (judged with [`LaunchTemplateObservation::drift`]);
/// `None` when it does not exist.
pub async fn describe_launch_template(client: &Client, name: &str) -> AwsResult<Option<LaunchTemplateObservation>> {
    let Some(found) = find_template(client, name).await? else { return Ok(None) };
    let id = found.launch_template_id().unwrap_or_default().to_string();
    let (default_version, data) = version_data(client, &id, "$Default").await?;
    Ok(Some(LaunchTemplateObservation {
        id,
        name: name.to_string(),
        default_version,
        latest_version: found.latest_version_number().unwrap_or(default_version),
        data,
        tags: tag_map(found.tags()),
    }))
}

/// Deletes the launch template with all its versions; absent is success.
pub async fn delete_launch_template(client: &Client, name: &str) -> AwsResult<()> {
    // Looked up first and deleted by id: deleting an unknown name is answered inconsistently (moto says
    // MissingParameter), while a lookup says "not found" plainly.
    let Some(found) = find_template(client, name).await? else { return Ok(()) };
    let id = found.launch_template_id().unwrap_or_default();
    match client.delete_launch_template().launch_template_id(id).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteLaunchTemplate", err);
            if err.is(TEMPLATE_NOT_FOUND) { Ok(()) } else { Err(err) }
        }
    }
}

/// User data that joins the instance to the ECS cluster. It also turns on container metadata and blocks
/// awsvpc tasks from the instance metadata service, so tasks cannot borrow the instance role's credentials
/// (they have their own task roles).
pub fn ecs_user_data(cluster: &str) -> String {
    // The quoted heredoc keeps the shell from expanding anything in the values.
    format!(
        "#!/bin/bash\nset -euo pipefail\nmkdir -p /etc/ecs\ncat >> /etc/ecs/ecs.config <<'EOF'\n\
         ECS_CLUSTER={cluster}\nECS_ENABLE_CONTAINER_METADATA=true\nECS_AWSVPC_BLOCK_IMDS=true\nEOF\n"
    )
}

// ---------------------------------------------------------------------------------------------------------
// Instance capacity
// ---------------------------------------------------------------------------------------------------------

/// Network interfaces an instance type can attach (for common current types; `None` when unknown). Every
/// awsvpc task takes one interface besides the instance's primary one, which decides how many tasks fit on
/// an instance (without ENI trunking).
pub fn max_network_interfaces(instance_type: &str) -> Option<u32> {
    let (family, size) = instance_type.split_once('.')?;
    let burstable = matches!(family, "t2" | "t3" | "t3a");
    let general = matches!(family, "m5" | "m6i" | "m7i" | "c5" | "c6i" | "c7i");
    let memory = matches!(family, "r5" | "r6i");
    match size {
        "nano" | "micro" if burstable => Some(2),
        "small" | "medium" | "large" if burstable => Some(3),
        "xlarge" | "2xlarge" if family == "t2" => Some(3),
        "xlarge" | "2xlarge" if burstable => Some(4),
        "large" if general || memory => Some(3),
        "xlarge" | "2xlarge" if general || memory => Some(4),
        "4xlarge" if general => Some(8),
        _ => None,
    }
}

/// How many awsvpc tasks fit on one instance of this type (its interfaces minus the primary one).
pub fn awsvpc_tasks_per_instance(instance_type: &str) -> Option<u32> {
    max_network_interfaces(instance_type).map(|n| n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{
        InstanceType, LaunchTemplateBlockDeviceMapping, LaunchTemplateEbsBlockDevice,
        LaunchTemplateIamInstanceProfileSpecification, LaunchTemplateInstanceMetadataOptions,
        LaunchTemplateTagSpecification, LaunchTemplatesMonitoring,
    };

    fn subnet(id: &str, az: &str) -> Subnet {
        Subnet { id: id.into(), vpc_id: "vpc-1".into(), availability_zone: az.into(), public_ip_on_launch: false }
    }

    fn err(code: &str) -> AwsError {
        AwsError { operation: "DeleteSecurityGroup", code: Some(code.into()), message: "has a dependent object".into() }
    }

    fn spec() -> LaunchTemplateSpec {
        LaunchTemplateSpec {
            image_id: "ami-123".into(),
            instance_type: "t3.medium".into(),
            instance_profile_arn: "arn:aws:iam::123456789012:instance-profile/vault".into(),
            security_group_ids: vec!["sg-b".into(), "sg-a".into()],
            user_data: ecs_user_data("vault"),
            kms_key: None,
            tags: [("datavault:stack".to_string(), "vault".to_string())].into(),
        }
    }

    /// What AWS answers for a version created from `spec()`.
    fn response_for_spec() -> ResponseLaunchTemplateData {
        ResponseLaunchTemplateData::builder()
            .image_id("ami-123")
            .instance_type(InstanceType::T3Medium)
            .iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecification::builder()
                    .arn("arn:aws:iam::123456789012:instance-profile/vault")
                    .build(),
            )
            .security_group_ids("sg-a")
            .security_group_ids("sg-b")
            .user_data(BASE64.encode(ecs_user_data("vault")))
            .metadata_options(
                LaunchTemplateInstanceMetadataOptions::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(
                LaunchTemplateBlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        LaunchTemplateEbsBlockDevice::builder()
                            .volume_size(30)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .monitoring(LaunchTemplatesMonitoring::builder().enabled(true).build())
            .tag_specifications(
                LaunchTemplateTagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .tags(Tag::builder().key("datavault:stack").value("vault").build())
                    .build(),
            )
            // moto copies the template's own tags in here; they must not count.
            .tag_specifications(
                LaunchTemplateTagSpecification::builder()
                    .resource_type(ResourceType::LaunchTemplate)
                    .tags(Tag::builder().key("datavault:stack").value("vault").build())
                    .build(),
            )
            .build()
    }

    #[test]
    fn subnets_keep_requested_order_and_name_every_missing_id() {
        let ids = vec!["subnet-b".to_string(), "subnet-a".to_string(), "subnet-b".to_string()];
        let found = vec![subnet("subnet-a", "eu-west-2a"), subnet("subnet-b", "eu-west-2b")];
        let ordered = order_subnets(&ids, found.clone()).unwrap();
        assert_eq!(ordered.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["subnet-b", "subnet-a"]);
        let ids = vec!["subnet-a".to_string(), "subnet-x".to_string(), "subnet-y".to_string()];
        assert_eq!(order_subnets(&ids, found).unwrap_err(), ["subnet-x", "subnet-y"]);
    }

    #[test]
    fn subnets_sort_by_zone_then_id() {
        let mut subnets =
            vec![subnet("subnet-2", "eu-west-2b"), subnet("subnet-3", "eu-west-2a"), subnet("subnet-1", "eu-west-2b")];
        sort_by_zone(&mut subnets);
        assert_eq!(subnets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["subnet-3", "subnet-1", "subnet-2"]);
    }

    #[test]
    fn one_subnet_per_zone_keeps_the_first_of_each_zone() {
        let subnets = vec![
            subnet("s-1", "eu-west-2a"),
            subnet("s-2", "eu-west-2b"),
            subnet("s-3", "eu-west-2a"),
            subnet("s-4", "eu-west-2c"),
        ];
        let picked = one_subnet_per_zone(&subnets);
        assert_eq!(picked.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s-1", "s-2", "s-4"]);
    }

    #[test]
    fn subnets_must_share_one_vpc() {
        let mut subnets = vec![subnet("s-1", "a"), subnet("s-2", "b")];
        assert_eq!(vpc_of_subnets(&subnets).unwrap(), "vpc-1");
        subnets[1].vpc_id = "vpc-2".into();
        assert!(vpc_of_subnets(&subnets).unwrap_err().contains("vpc-1, vpc-2"));
        assert!(vpc_of_subnets(&[]).is_err());
    }

    #[test]
    fn permissions_flatten_to_one_rule_per_source() {
        let permissions = vec![
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").description("ssh").build())
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("6")
                .from_port(3306)
                .to_port(3306)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-app").user_id("123").build())
                .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-1").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        ];
        let rules = rules_from_permissions(&permissions);
        assert_eq!(rules.len(), 5);
        assert!(rules.contains(&IngressRule::tcp(22, RuleSource::Cidr("0.0.0.0/0".into()), "ssh")));
        assert!(rules.contains(&IngressRule::tcp(22, RuleSource::Cidr("::/0".into()), "")));
        assert!(rules.contains(&IngressRule::tcp(3306, RuleSource::Group("sg-app".into()), "")));
        assert!(rules.contains(&IngressRule::tcp(3306, RuleSource::PrefixList("pl-1".into()), "")));
        assert!(rules.contains(&IngressRule::all_traffic("10.0.0.0/8", "")));
    }

    #[test]
    fn permission_round_trips_through_flattening() {
        let rules = vec![
            IngressRule::tcp(2049, RuleSource::Group("sg-1".into()), "nfs"),
            IngressRule::tcp(443, RuleSource::Cidr("2001:db8::/32".into()), ""),
            IngressRule {
                protocol: "tcp".into(),
                from_port: 8000,
                to_port: 8080,
                source: RuleSource::Cidr("10.0.0.0/16".into()),
                description: "web".into(),
            },
            IngressRule::all_traffic("0.0.0.0/0", ""),
        ];
        let permissions: Vec<_> = rules.iter().map(permission).collect();
        assert_eq!(permissions[3].from_port(), None, "all-traffic rules carry no ports");
        assert_eq!(permissions[1].ipv6_ranges().len(), 1);
        let mut expected = rules.clone();
        expected.sort();
        assert_eq!(rules_from_permissions(&permissions), expected);
    }

    #[test]
    fn drift_names_missing_and_extra_rules_but_not_descriptions() {
        let expected = vec![
            IngressRule::tcp(3306, RuleSource::Group("sg-app".into()), "mysql from instances"),
            IngressRule::tcp(2049, RuleSource::Group("sg-app".into()), "nfs"),
        ];
        let actual = vec![
            IngressRule::tcp(2049, RuleSource::Group("sg-app".into()), "edited by hand"),
            IngressRule::tcp(22, RuleSource::Cidr("0.0.0.0/0".into()), ""),
        ];
        assert_eq!(
            ingress_drift(&expected, &actual),
            ["missing rule tcp 3306 from sg-app", "extra rule tcp 22 from 0.0.0.0/0"]
        );
        assert!(ingress_drift(&expected, &expected).is_empty());
        let plan = plan_rules(&expected, &actual);
        assert_eq!(plan.redescribe, [IngressRule::tcp(2049, RuleSource::Group("sg-app".into()), "nfs")]);
    }

    #[test]
    fn protocol_numbers_and_all_traffic_ports_compare_equal() {
        let by_number =
            IngressRule { protocol: "6".into(), ..IngressRule::tcp(80, RuleSource::Cidr("10.0.0.0/8".into()), "") };
        assert!(
            ingress_drift(&[by_number], &[IngressRule::tcp(80, RuleSource::Cidr("10.0.0.0/8".into()), "")]).is_empty()
        );
        let all_with_ports = IngressRule { from_port: 0, to_port: 65535, ..IngressRule::all_traffic("0.0.0.0/0", "") };
        assert!(ingress_drift(&[all_with_ports], &[IngressRule::all_traffic("0.0.0.0/0", "")]).is_empty());
        let range = IngressRule { to_port: 8080, ..IngressRule::tcp(8000, RuleSource::Cidr("10.0.0.0/8".into()), "") };
        assert_eq!(range.to_string(), "tcp 8000-8080 from 10.0.0.0/8");
        assert_eq!(IngressRule::all_traffic("::/0", "").to_string(), "all traffic from ::/0");
    }

    #[test]
    fn egress_converges_to_all_or_nothing() {
        let all = IngressRule::all_traffic("0.0.0.0/0", "");
        let all_v6 = IngressRule::all_traffic("::/0", "");
        let https = IngressRule::tcp(443, RuleSource::Cidr("0.0.0.0/0".into()), "");
        let plan = egress_plan(true, &[all.clone(), all_v6, https.clone()]);
        assert!(plan.authorize.is_empty());
        assert_eq!(plan.revoke, std::slice::from_ref(&https));
        assert_eq!(egress_plan(true, &[]).authorize, std::slice::from_ref(&all));
        let plan = egress_plan(false, &[all.clone(), https]);
        assert_eq!(plan.revoke.len(), 2);
        assert_eq!(egress_drift(false, std::slice::from_ref(&all)), ["extra egress rule all traffic to 0.0.0.0/0"]);
        assert_eq!(egress_drift(true, &[]), ["missing egress rule all traffic to 0.0.0.0/0"]);
        assert!(egress_drift(true, &[all]).is_empty());
    }

    #[test]
    fn delete_retries_dependencies_until_the_timeout() {
        let timeout = Duration::from_secs(600);
        // Recorded: two DependencyViolations while ENIs drain, then success.
        let sequence = [Err(err("DependencyViolation")), Err(err("DependencyViolation")), Ok(())];
        let decisions: Vec<_> = sequence
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| delete_decision("sg-1", outcome, Duration::from_secs(i as u64 * 30), timeout))
            .collect();
        assert!(matches!(decisions[0], DeleteDecision::Retry));
        assert!(matches!(decisions[1], DeleteDecision::Retry));
        assert!(matches!(decisions[2], DeleteDecision::Done));
        assert!(matches!(
            delete_decision("sg-1", Err(err("InvalidGroup.NotFound")), Duration::ZERO, timeout),
            DeleteDecision::Done
        ));
        match delete_decision("sg-1", Err(err("DependencyViolation")), timeout, timeout) {
            DeleteDecision::Fail(e) => {
                assert!(e.message.contains("sg-1") && e.message.contains("600s"), "{e}");
            }
            other => panic!("expected failure, got {other:?}"),
        }
        assert!(matches!(
            delete_decision("sg-1", Err(err("UnauthorizedOperation")), Duration::ZERO, timeout),
            DeleteDecision::Fail(_)
        ));
    }

    #[test]
    fn retry_interval_backs_off_to_a_ceiling() {
        assert_eq!(next_interval(Duration::from_secs(5)), Duration::from_secs(10));
        assert_eq!(next_interval(Duration::from_secs(20)), Duration::from_secs(30));
        assert_eq!(next_interval(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn spec_and_aws_answer_compare_equal() {
        let expected = TemplateData::from_spec(&spec());
        let actual = TemplateData::from_response(&response_for_spec());
        assert_eq!(template_drift(&expected, &actual), Vec::<String>::new());
        assert_eq!(expected, actual);
    }

    #[test]
    fn spec_is_secure_by_default() {
        let data = TemplateData::from_spec(&spec());
        assert!(data.imdsv2_required);
        assert_eq!(data.metadata_hop_limit, Some(1));
        assert!(data.detailed_monitoring);
        let root = data.root_volume.clone().unwrap();
        assert!(root.encrypted && root.delete_on_termination);
        assert_eq!(
            (root.device.as_str(), root.size_gib, root.volume_type.as_deref()),
            ("/dev/xvda", Some(30), Some("gp3"))
        );
        let request = data.request();
        assert_eq!(request.metadata_options().unwrap().http_tokens(), Some(&LaunchTemplateHttpTokensState::Required));
        assert!(request.network_interfaces().is_empty(), "the subnet decides public IPs");
        assert_eq!(decode_user_data(request.user_data().unwrap()), spec().user_data);
    }

    #[test]
    fn drift_reports_each_changed_field() {
        let expected = TemplateData::from_spec(&spec());
        let mut actual = expected.clone();
        actual.imdsv2_required = false;
        actual.instance_type = "t3.large".into();
        actual.metadata_hop_limit = Some(2);
        actual.root_volume = Some(RootVolume {
            encrypted: false,
            volume_type: Some("gp2".into()),
            size_gib: Some(8),
            ..expected.root_volume.clone().unwrap()
        });
        actual.detailed_monitoring = false;
        actual.user_data = "#!/bin/bash\n".into();
        assert_eq!(
            template_drift(&expected, &actual),
            [
                "instance type is t3.large, expected t3.medium",
                "user data differs",
                "IMDSv2 not required",
                "metadata hop limit is 2, expected 1",
                "root volume is not encrypted",
                "root volume type is gp2, expected gp3",
                "root volume size is 8 GiB, expected 30 GiB",
                "detailed monitoring is off",
            ]
        );
        actual.root_volume = None;
        assert!(
            template_drift(&expected, &actual).contains(&"root volume mapping for /dev/xvda is missing".to_string())
        );
    }

    #[test]
    fn user_data_joins_the_cluster_and_blocks_imds_for_tasks() {
        let script = ecs_user_data("rdss-datavault");
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains("cat >> /etc/ecs/ecs.config <<'EOF'\n"));
        let config: Vec<&str> =
            script.lines().skip_while(|l| !l.starts_with("cat ")).skip(1).take_while(|l| *l != "EOF").collect();
        assert_eq!(
            config,
            ["ECS_CLUSTER=rdss-datavault", "ECS_ENABLE_CONTAINER_METADATA=true", "ECS_AWSVPC_BLOCK_IMDS=true"]
        );
    }

    #[test]
    fn network_interface_limits_of_known_types() {
        assert_eq!(max_network_interfaces("t3.medium"), Some(3));
        assert_eq!(max_network_interfaces("t3.large"), Some(3));
        assert_eq!(max_network_interfaces("t3.micro"), Some(2));
        assert_eq!(max_network_interfaces("t3a.2xlarge"), Some(4));
        assert_eq!(max_network_interfaces("t2.2xlarge"), Some(3));
        assert_eq!(max_network_interfaces("m5.large"), Some(3));
        assert_eq!(max_network_interfaces("m5.xlarge"), Some(4));
        assert_eq!(max_network_interfaces("m6i.4xlarge"), Some(8));
        assert_eq!(max_network_interfaces("c5.xlarge"), Some(4));
        assert_eq!(max_network_interfaces("r6i.2xlarge"), Some(4));
        assert_eq!(max_network_interfaces("r5.4xlarge"), None);
        assert_eq!(max_network_interfaces("x1e.xlarge"), None);
        assert_eq!(max_network_interfaces("t3"), None);
        assert_eq!(awsvpc_tasks_per_instance("t3.medium"), Some(2));
    }
}
