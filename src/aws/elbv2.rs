//! Elastic Load Balancing v2: the optional public entry point of a stack, an Application Load Balancer in
//! front of the web service (Tomcat on 8080, the app at /datavault-webapp), with its target group and
//! listeners.
//!
//! Security defaults (AWS Foundational Security Best Practices): with a certificate, HTTP only redirects to
//! HTTPS (ELB.1) and HTTPS uses a predefined TLS 1.2+/1.3 policy (ELB.8); invalid HTTP header fields are
//! dropped (ELB.4); desync mitigation stays `defensive` or `strictest` (ELB.12); access logs go to the
//! bucket the spec names (ELB.5), whose policy must let the region's log delivery principal
//! ([`log_delivery_principal`]) write there. Deletion protection (ELB.6) is knowingly off because the stack
//! owns the load balancer's life and it holds no data.
//!
//! Everything is found by its deterministic name, adopted, and converged: security groups, subnets,
//! attributes, the target group's health check and exactly the listeners the spec asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, IpAddressType, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, Matcher, ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, Tag,
    TargetGroupAttribute, TargetGroupIpAddressTypeEnum, TargetTypeEnum,
};
use tokio::time::Instant;

use super::{AwsError, AwsResult};

/// How often deletions are polled and in-use target groups retried.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The TLS policy of the HTTPS listener: TLS 1.3 and 1.2 with forward-secret ciphers only (ELB.8).
pub const HTTPS_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";
/// Responses that count as healthy: Tomcat answers the app root with a redirect to the login page.
pub const HEALTH_CHECK_MATCHER: &str = "200-399";
/// Load balancer and target group names are at most this long.
const MAX_NAME_LEN: usize = 32;
/// The target group attribute holding how long a deregistering task keeps its in-flight requests.
const DEREGISTRATION_DELAY_KEY: &str = "deregistration_delay.timeout_seconds";
/// Seconds a web task taken out of service (a deployment replacing it, a destroy) keeps serving the requests
/// it has, before ECS stops it. AWS's default of 300 adds five minutes to every web deployment and destroy;
/// the web app's requests are page loads and upload chunks of 10 MB (flow.js, retried once on failure), which
/// a minute lets finish down to about 1.4 Mbit/s.
pub const DEREGISTRATION_DELAY_SECONDS: &str = "60";

// ---------------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------------

/// `<stem><suffix>` cut to 32 characters: the stem is shortened (never the suffix, which says what the
/// resource is) and loses trailing hyphens so the join never makes `--`.
fn bounded_name(stack: &str, suffix: &str) -> String {
    let room = MAX_NAME_LEN - suffix.len();
    let stem: String = stack.chars().take(room).collect();
    format!("{}{suffix}", stem.trim_end_matches('-'))
}

/// The stack's load balancer name, `<stack>-web` (at most 32 characters).
pub fn load_balancer_name(stack: &str) -> String {
    bounded_name(stack, "-web")
}

/// The stack's target group name, `<stack>-web-tg` (at most 32 characters).
pub fn target_group_name(stack: &str) -> String {
    bounded_name(stack, "-web-tg")
}

/// The rules both load balancer and target group names follow.
fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("{kind} name {name:?} must be 1 to {MAX_NAME_LEN} characters long"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("{kind} name {name:?} may only contain letters, digits and hyphens"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{kind} name {name:?} must not begin or end with a hyphen"));
    }
    Ok(())
}

/// Checks a load balancer name against AWS's rules, which AWS would otherwise report one at a time.
pub fn validate_load_balancer_name(name: &str) -> Result<(), String> {
    check_name("load balancer", name)?;
    if name.starts_with("internal-") {
        return Err(format!("load balancer name {name:?} must not begin with \"internal-\""));
    }
    Ok(())
}

/// Checks a target group name against AWS's rules.
pub fn validate_target_group_name(name: &str) -> Result<(), String> {
    check_name("target group", name)?;
    if name.contains("--") {
        return Err(format!("target group name {name:?} must not contain two hyphens in a row"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Tags and small helpers
// ---------------------------------------------------------------------------------------------------------

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    super::tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    super::tag_map(tags.iter().map(|t| (t.key(), t.value())))
}

/// Takes the tags with these keys off the load balancer or target group (keys it does not have are no error): the
/// stack's tags that the configuration no longer has.
pub async fn remove_tags(client: &Client, arn: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.remove_tags().resource_arns(arn).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("RemoveTags", e))?;
    Ok(())
}

/// Adds or updates the tags of `tags` the resource lacks, read first (tags set by others are left alone).
async fn converge_tags(client: &Client, arn: &str, tags: &BTreeMap<String, String>) -> AwsResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let missing = super::tags_to_write(tags, &tags_of(client, arn).await?);
    if missing.is_empty() {
        return Ok(());
    }
    client
        .add_tags()
        .resource_arns(arn)
        .set_tags(Some(tag_list(&missing)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("AddTags", e))?;
    Ok(())
}

async fn tags_of(client: &Client, arn: &str) -> AwsResult<BTreeMap<String, String>> {
    let out =
        client.describe_tags().resource_arns(arn).send().await.map_err(|e| AwsError::from_sdk("DescribeTags", e))?;
    Ok(out
        .tag_descriptions()
        .iter()
        .find(|d| d.resource_arn() == Some(arn))
        .map(|d| tag_map(d.tags()))
        .unwrap_or_default())
}

fn sorted(values: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = values.iter().cloned().collect();
    set.into_iter().collect()
}

/// `missing <what> x` / `extra <what> y` for two sets of ids.
fn set_drift(what: &str, expected: &[String], actual: &[String]) -> Vec<String> {
    let expected: BTreeSet<&String> = expected.iter().collect();
    let actual: BTreeSet<&String> = actual.iter().collect();
    let missing = expected.difference(&actual).map(|id| format!("missing {what} {id}"));
    let extra = actual.difference(&expected).map(|id| format!("extra {what} {id}"));
    missing.chain(extra).collect()
}

fn same_set(a: &[String], b: &[String]) -> bool {
    sorted(a) == sorted(b)
}

/// What to do after one look at something being deleted.
#[derive(Debug)]
enum WaitDecision {
    /// It is gone.
    Done,
    /// Not yet; look again after the poll interval.
    Retry,
    /// Give up with this error.
    Fail(AwsError),
}

// ---------------------------------------------------------------------------------------------------------
// Load balancer
// ---------------------------------------------------------------------------------------------------------

/// What the stack's load balancer is created from: always internet-facing, application type, IPv4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerSpec {
    /// Its name, at most 32 characters ([`load_balancer_name`]).
    pub name: String,
    /// Public subnets in at least two Availability Zones.
    pub subnet_ids: Vec<String>,
    /// Its security groups (which ports the world may reach it on).
    pub security_group_ids: Vec<String>,
    /// Where its access logs go; `None` leaves them as they are.
    pub access_logs: Option<super::s3::LogTarget>,
    /// Tags, including `datavault:stack`.
    pub tags: BTreeMap<String, String>,
}

/// The account Elastic Load Balancing delivers access logs from, in the regions that opened before
/// August 2022 (ELB user guide, "Access logs for your Application Load Balancer"); the regions since take
/// the service principal instead.
const LOG_DELIVERY_ACCOUNTS: [(&str, &str); 29] = [
    ("af-south-1", "098369216593"),
    ("ap-east-1", "754344448648"),
    ("ap-northeast-1", "582318560864"),
    ("ap-northeast-2", "600734575887"),
    ("ap-northeast-3", "383597477331"),
    ("ap-south-1", "718504428378"),
    ("ap-southeast-1", "114774131450"),
    ("ap-southeast-2", "783225319266"),
    ("ap-southeast-3", "589379963580"),
    ("ca-central-1", "985666609251"),
    ("cn-north-1", "638102146993"),
    ("cn-northwest-1", "037604701340"),
    ("eu-central-1", "054676820928"),
    ("eu-north-1", "897822967062"),
    ("eu-south-1", "635631232127"),
    ("eu-west-1", "156460612806"),
    ("eu-west-2", "652711504416"),
    ("eu-west-3", "009996457667"),
    ("me-south-1", "076674570225"),
    ("sa-east-1", "507241528517"),
    ("us-east-1", "127311923021"),
    ("us-east-2", "033677994240"),
    ("us-gov-east-1", "190560391635"),
    ("us-gov-west-1", "048591011584"),
    ("us-iso-east-1", "770363063475"),
    ("us-iso-west-1", "121062877647"),
    ("us-isob-east-1", "740734521339"),
    ("us-west-1", "027434742980"),
    ("us-west-2", "797873946194"),
];

/// The principal that writes a region's load balancer access logs, as a bucket policy names it.
pub fn log_delivery_principal(partition: &str, region: &str) -> serde_json::Value {
    match LOG_DELIVERY_ACCOUNTS.iter().find(|(r, _)| *r == region) {
        Some((_, account)) => serde_json::json!({ "AWS": format!("arn:{partition}:iam::{account}:root") }),
        None => serde_json::json!({ "Service": "logdelivery.elasticloadbalancing.amazonaws.com" }),
    }
}

/// The load balancer as the stack records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// Its ARN.
    pub arn: String,
    /// The public DNS name users reach the web app at.
    pub dns_name: String,
}

/// What the load balancer looks like now, and how it differs from what the stack manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerObservation {
    /// Its ARN.
    pub arn: String,
    /// Its public DNS name.
    pub dns_name: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// `application`, `network` or `gateway`.
    pub load_balancer_type: String,
    /// `ipv4` or `dualstack`.
    pub ip_address_type: String,
    /// `provisioning`, `active`, `active_impaired` or `failed`.
    pub state: String,
    /// The VPC it is in.
    pub vpc_id: String,
    /// Its security groups, sorted.
    pub security_groups: Vec<String>,
    /// Its subnets, sorted.
    pub subnets: Vec<String>,
    /// Its attributes as AWS reports them.
    pub attributes: BTreeMap<String, String>,
    /// Its listeners, by port.
    pub listeners: Vec<ListenerSummary>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Human-readable differences from the managed settings (empty when none).
    pub drift: Vec<String>,
}

/// Checks the spec for mistakes AWS would reject late.
pub fn validate_load_balancer_spec(spec: &LoadBalancerSpec) -> Result<(), String> {
    validate_load_balancer_name(&spec.name)?;
    if sorted(&spec.subnet_ids).len() < 2 {
        return Err(format!("load balancer {} needs at least two subnets in different Availability Zones", spec.name));
    }
    if spec.security_group_ids.is_empty() {
        // Without one AWS would attach the VPC's default group, whose rules nobody here controls.
        return Err(format!("load balancer {} needs at least one security group", spec.name));
    }
    Ok(())
}

/// An attribute the stack keeps at a fixed setting.
struct ManagedAttribute {
    key: &'static str,
    /// Values that are in keeping (a stricter choice someone made is not undone).
    accepted: &'static [&'static str],
    /// What it is set to when it is not in keeping.
    value: &'static str,
    /// What AWS means when it does not report the attribute.
    aws_default: &'static str,
}

const MANAGED_ATTRIBUTES: [ManagedAttribute; 3] = [
    // ELB.4: requests with malformed headers are dropped rather than passed to Tomcat.
    ManagedAttribute {
        key: "routing.http.drop_invalid_header_fields.enabled",
        accepted: &["true"],
        value: "true",
        aws_default: "false",
    },
    // ELB.12: request smuggling protection; `monitor` would only log.
    ManagedAttribute {
        key: "routing.http.desync_mitigation_mode",
        accepted: &["defensive", "strictest"],
        value: "defensive",
        aws_default: "defensive",
    },
    // Off on purpose (ELB.6 not met): the stack creates and deletes the load balancer with itself, and it
    // holds no data; protection would only make `terraform destroy` fail half-way.
    ManagedAttribute { key: "deletion_protection.enabled", accepted: &["false"], value: "false", aws_default: "false" },
];

/// The attributes that must change, as (key, new value).
fn attribute_changes(actual: &BTreeMap<String, String>) -> Vec<(&'static str, &'static str)> {
    MANAGED_ATTRIBUTES
        .iter()
        .filter(|a| !a.accepted.contains(&actual.get(a.key).map_or(a.aws_default, String::as_str)))
        .map(|a| (a.key, a.value))
        .collect()
}

/// The access log attributes that must change to send the logs to `target`, as (key, new value).
fn access_log_changes(actual: &BTreeMap<String, String>, target: &super::s3::LogTarget) -> Vec<(&'static str, String)> {
    let wanted = [
        ("access_logs.s3.enabled", "true".to_string()),
        ("access_logs.s3.bucket", target.bucket.clone()),
        ("access_logs.s3.prefix", target.prefix.clone()),
    ];
    wanted.into_iter().filter(|(key, value)| actual.get(*key) != Some(value)).collect()
}

/// How the access logs differ from going to `target`.
fn access_log_drift(actual: &BTreeMap<String, String>, target: &super::s3::LogTarget) -> Vec<String> {
    access_log_changes(actual, target)
        .into_iter()
        .map(|(key, value)| format!("{key} is {}, expected {value}", actual.get(key).map_or("unset", String::as_str)))
        .collect()
}

/// How the attributes differ from the managed settings, e.g.
/// `routing.http.drop_invalid_header_fields.enabled is false, expected true`.
pub fn attribute_drift(actual: &BTreeMap<String, String>) -> Vec<String> {
    attribute_changes(actual)
        .into_iter()
        .map(|(key, value)| {
            let default = MANAGED_ATTRIBUTES.iter().find(|a| a.key == key).map_or("", |a| a.aws_default);
            format!("{key} is {}, expected {value}", actual.get(key).map_or(default, String::as_str))
        })
        .collect()
}

/// Settings that cannot change in place: a load balancer with the stack's name but another scheme or type
/// was not made by the stack and has to be removed by hand.
fn identity_drift(observed: &LoadBalancerObservation) -> Vec<String> {
    let mut drift = Vec::new();
    if observed.load_balancer_type != "application" {
        drift.push(format!("type is {}, expected application", observed.load_balancer_type));
    }
    if observed.scheme != "internet-facing" {
        drift.push(format!("scheme is {}, expected internet-facing", observed.scheme));
    }
    drift
}

/// How the load balancer differs from the managed settings and, when given, from `expected`'s security
/// groups and subnets.
pub fn load_balancer_drift(observed: &LoadBalancerObservation, expected: Option<&LoadBalancerSpec>) -> Vec<String> {
    let mut drift = identity_drift(observed);
    if observed.ip_address_type != "ipv4" {
        drift.push(format!("IP address type is {}, expected ipv4", observed.ip_address_type));
    }
    if observed.state == "failed" {
        drift.push("state is failed".to_string());
    }
    if let Some(spec) = expected {
        drift.extend(set_drift("security group", &spec.security_group_ids, &observed.security_groups));
        drift.extend(set_drift("subnet", &spec.subnet_ids, &observed.subnets));
        if let Some(target) = &spec.access_logs {
            drift.extend(access_log_drift(&observed.attributes, target));
        }
    }
    drift.extend(attribute_drift(&observed.attributes));
    drift
}

/// The parts of the observation that come with DescribeLoadBalancers.
fn observe(lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer) -> LoadBalancerObservation {
    let subnets: Vec<String> =
        lb.availability_zones().iter().filter_map(|z| z.subnet_id()).map(str::to_string).collect();
    LoadBalancerObservation {
        arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        scheme: lb.scheme().map(|s| s.as_str().to_string()).unwrap_or_default(),
        load_balancer_type: lb.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        ip_address_type: lb.ip_address_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        state: lb.state().and_then(|s| s.code()).map(|c| c.as_str().to_string()).unwrap_or_default(),
        vpc_id: lb.vpc_id().unwrap_or_default().to_string(),
        security_groups: sorted(lb.security_groups()),
        subnets: sorted(&subnets),
        attributes: BTreeMap::new(),
        listeners: Vec::new(),
        tags: BTreeMap::new(),
        drift: Vec::new(),
    }
}

/// The load balancer with this name; `None` when there is none.
async fn find_load_balancer(client: &Client, name: &str) -> AwsResult<Option<LoadBalancerObservation>> {
    match client.describe_load_balancers().names(name).send().await {
        Ok(out) => Ok(out.load_balancers().iter().find(|lb| lb.load_balancer_name() == Some(name)).map(observe)),
        Err(err) => {
            let err = AwsError::from_sdk("DescribeLoadBalancers", err);
            if err.is(&["LoadBalancerNotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

async fn attributes_of(client: &Client, arn: &str) -> AwsResult<BTreeMap<String, String>> {
    let out = client
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeLoadBalancerAttributes", e))?;
    Ok(out
        .attributes()
        .iter()
        .filter_map(|a| Some((a.key()?.to_string(), a.value().unwrap_or_default().to_string())))
        .collect())
}

async fn create_load_balancer(client: &Client, spec: &LoadBalancerSpec) -> AwsResult<LoadBalancerObservation> {
    let request = client
        .create_load_balancer()
        .name(&spec.name)
        .set_subnets(Some(spec.subnet_ids.clone()))
        .set_security_groups(Some(spec.security_group_ids.clone()))
        .scheme(LoadBalancerSchemeEnum::InternetFacing)
        .r#type(LoadBalancerTypeEnum::Application)
        .ip_address_type(IpAddressType::Ipv4)
        .set_tags((!spec.tags.is_empty()).then(|| tag_list(&spec.tags)));
    match request.send().await {
        Ok(out) => out.load_balancers().first().map(observe).ok_or_else(|| {
            AwsError::other("CreateLoadBalancer", format!("no load balancer in the reply for {}", spec.name))
        }),
        Err(err) => {
            let err = AwsError::from_sdk("CreateLoadBalancer", err);
            if !err.is(&["DuplicateLoadBalancerName"]) {
                return Err(err);
            }
            // Another run created it between our look and our create: adopt it.
            find_load_balancer(client, &spec.name).await?.ok_or_else(|| {
                AwsError::other("CreateLoadBalancer", format!("load balancer {} exists but cannot be found", spec.name))
            })
        }
    }
}

/// Puts security groups, subnets and the IP address type back to the spec where they differ.
async fn converge_network(client: &Client, lb: &LoadBalancerObservation, spec: &LoadBalancerSpec) -> AwsResult<()> {
    if !same_set(&lb.security_groups, &spec.security_group_ids) {
        client
            .set_security_groups()
            .load_balancer_arn(&lb.arn)
            .set_security_groups(Some(spec.security_group_ids.clone()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SetSecurityGroups", e))?;
    }
    if !same_set(&lb.subnets, &spec.subnet_ids) {
        client
            .set_subnets()
            .load_balancer_arn(&lb.arn)
            .set_subnets(Some(spec.subnet_ids.clone()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SetSubnets", e))?;
    }
    if lb.ip_address_type != "ipv4" {
        client
            .set_ip_address_type()
            .load_balancer_arn(&lb.arn)
            .ip_address_type(IpAddressType::Ipv4)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SetIpAddressType", e))?;
    }
    Ok(())
}

async fn converge_attributes(client: &Client, arn: &str, spec: &LoadBalancerSpec) -> AwsResult<()> {
    let actual = attributes_of(client, arn).await?;
    let mut changes: Vec<(&str, String)> =
        attribute_changes(&actual).into_iter().map(|(k, v)| (k, v.to_string())).collect();
    if let Some(target) = &spec.access_logs {
        changes.extend(access_log_changes(&actual, target));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let attributes = changes.into_iter().map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build());
    client
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .set_attributes(Some(attributes.collect()))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyLoadBalancerAttributes", e))?;
    Ok(())
}

/// Finds the load balancer by name or creates it (internet-facing, application, IPv4), adopting one a
/// concurrent or crashed run created; then converges its security groups, subnets, IP address type,
/// attributes and tags. May be called again after a crash; converges.
///
/// A load balancer of the same name that is internal or not an application load balancer cannot be changed
/// in place, so it is an error naming what differs.
pub async fn ensure_load_balancer(client: &Client, spec: &LoadBalancerSpec) -> AwsResult<LoadBalancer> {
    validate_load_balancer_spec(spec).map_err(|m| AwsError::other("CreateLoadBalancer", m))?;
    let lb = match find_load_balancer(client, &spec.name).await? {
        Some(found) => found,
        None => create_load_balancer(client, spec).await?,
    };
    let identity = identity_drift(&lb);
    if !identity.is_empty() {
        return Err(AwsError::other(
            "CreateLoadBalancer",
            format!(
                "load balancer {} exists but was not made by this stack ({}); this cannot be changed in place: \
                 delete or rename it, then apply again",
                spec.name,
                identity.join(", ")
            ),
        ));
    }
    converge_network(client, &lb, spec).await?;
    converge_attributes(client, &lb.arn, spec).await?;
    converge_tags(client, &lb.arn, &spec.tags).await?;
    Ok(LoadBalancer { arn: lb.arn, dns_name: lb.dns_name })
}

/// Describes the load balancer with its attributes, listeners and tags; `None` when it does not exist. How it
/// differs is judged by [`load_balancer_drift`] (and, for its listeners, [`listener_drift`]).
pub async fn describe_load_balancer(client: &Client, name: &str) -> AwsResult<Option<LoadBalancerObservation>> {
    let Some(mut lb) = find_load_balancer(client, name).await? else { return Ok(None) };
    let (attributes, listeners, tags) =
        tokio::try_join!(attributes_of(client, &lb.arn), list_listeners(client, &lb.arn), tags_of(client, &lb.arn))?;
    (lb.attributes, lb.listeners, lb.tags) = (attributes, listeners, tags);
    Ok(Some(lb))
}

fn gone_decision(name: &str, still_there: bool, elapsed: Duration, timeout: Duration) -> WaitDecision {
    match (still_there, elapsed < timeout) {
        (false, _) => WaitDecision::Done,
        (true, true) => WaitDecision::Retry,
        (true, false) => WaitDecision::Fail(AwsError::other(
            "DeleteLoadBalancer",
            format!("load balancer {name} was still listed {}s after it was deleted", timeout.as_secs()),
        )),
    }
}

/// Deletes the load balancer (its listeners go with it) and waits, up to `timeout`, until AWS no longer
/// lists it. Absent is success, so this may be called again after a crash.
///
/// Its network interfaces linger for a few minutes more; the security group delete retries for that.
pub async fn delete_load_balancer(client: &Client, name: &str, timeout: Duration) -> AwsResult<()> {
    delete_load_balancer_polling(client, name, timeout, POLL_INTERVAL).await
}

async fn delete_load_balancer_polling(
    client: &Client,
    name: &str,
    timeout: Duration,
    interval: Duration,
) -> AwsResult<()> {
    let Some(lb) = find_load_balancer(client, name).await? else { return Ok(()) };
    if let Err(err) = client.delete_load_balancer().load_balancer_arn(&lb.arn).send().await {
        let err = AwsError::from_sdk("DeleteLoadBalancer", err);
        if err.is(&["LoadBalancerNotFound"]) {
            return Ok(());
        }
        if err.is(&["OperationNotPermitted"]) {
            return Err(AwsError::other(
                "DeleteLoadBalancer",
                format!(
                    "load balancer {name} has deletion protection, which was turned on outside the stack \
                     ({}); turn it off (or apply once, which does) and delete again",
                    err.message
                ),
            ));
        }
        return Err(err);
    }
    let started = Instant::now();
    let deadline = super::deadline_after(timeout);
    let backoff = super::wait::Backoff::up_to(interval);
    loop {
        let still_there = find_load_balancer(client, name).await?.is_some_and(|found| found.arn == lb.arn);
        match gone_decision(name, still_there, started.elapsed(), timeout) {
            WaitDecision::Done => return Ok(()),
            WaitDecision::Fail(err) => return Err(err),
            WaitDecision::Retry => backoff.sleep_before(deadline).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Target group
// ---------------------------------------------------------------------------------------------------------

/// What the web service's target group is created from: HTTP to awsvpc task IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupSpec {
    /// Its name, at most 32 characters ([`target_group_name`]).
    pub name: String,
    /// The VPC the tasks run in.
    pub vpc_id: String,
    /// The port the tasks listen on (Tomcat: 8080).
    pub port: i32,
    /// The path health checks ask for, e.g. `/datavault-webapp/`.
    pub health_check_path: String,
    /// Tags, including `datavault:stack`.
    pub tags: BTreeMap<String, String>,
}

/// The target group as the stack records it (the ECS service registers its tasks in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Its ARN.
    pub arn: String,
}

/// A target group's health check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    /// Whether health checks run.
    pub enabled: bool,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    /// The path asked for.
    pub path: String,
    /// Seconds between checks.
    pub interval_seconds: i32,
    /// Seconds before a check counts as failed.
    pub timeout_seconds: i32,
    /// Consecutive successes before a target is healthy.
    pub healthy_threshold: i32,
    /// Consecutive failures before a target is unhealthy.
    pub unhealthy_threshold: i32,
    /// HTTP codes that count as success, e.g. `200-399`.
    pub matcher: String,
}

impl HealthCheckSettings {
    /// The managed settings for a path. Three checks either way keep one slow answer (a Tomcat garbage
    /// collection pause) from taking a task out, while a new task takes traffic within about a minute and a
    /// half.
    pub fn for_path(path: &str) -> Self {
        HealthCheckSettings {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: path.into(),
            interval_seconds: 30,
            timeout_seconds: 5,
            healthy_threshold: 3,
            unhealthy_threshold: 3,
            matcher: HEALTH_CHECK_MATCHER.into(),
        }
    }

    fn from_target_group(tg: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> Self {
        HealthCheckSettings {
            enabled: tg.health_check_enabled().unwrap_or(true),
            protocol: tg.health_check_protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
            port: tg.health_check_port().unwrap_or_default().to_string(),
            path: tg.health_check_path().unwrap_or_default().to_string(),
            interval_seconds: tg.health_check_interval_seconds().unwrap_or_default(),
            timeout_seconds: tg.health_check_timeout_seconds().unwrap_or_default(),
            healthy_threshold: tg.healthy_threshold_count().unwrap_or_default(),
            unhealthy_threshold: tg.unhealthy_threshold_count().unwrap_or_default(),
            matcher: tg.matcher().and_then(|m| m.http_code()).unwrap_or_default().to_string(),
        }
    }
}

/// How the actual health check differs from the expected one, one line per setting.
pub fn health_check_drift(expected: &HealthCheckSettings, actual: &HealthCheckSettings) -> Vec<String> {
    let mut drift = Vec::new();
    let mut differs = |what: &str, actual: String, expected: String| {
        if actual != expected {
            drift.push(format!("health check {what} is {actual}, expected {expected}"));
        }
    };
    differs("enabled", actual.enabled.to_string(), expected.enabled.to_string());
    differs("protocol", actual.protocol.clone(), expected.protocol.clone());
    differs("port", actual.port.clone(), expected.port.clone());
    differs("path", actual.path.clone(), expected.path.clone());
    differs("interval", format!("{}s", actual.interval_seconds), format!("{}s", expected.interval_seconds));
    differs("timeout", format!("{}s", actual.timeout_seconds), format!("{}s", expected.timeout_seconds));
    differs("healthy threshold", actual.healthy_threshold.to_string(), expected.healthy_threshold.to_string());
    differs("unhealthy threshold", actual.unhealthy_threshold.to_string(), expected.unhealthy_threshold.to_string());
    differs("matcher", actual.matcher.clone(), expected.matcher.clone());
    drift
}

/// What the target group looks like now, and how it differs from the managed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupObservation {
    /// Its ARN.
    pub arn: String,
    /// The VPC it is in.
    pub vpc_id: String,
    /// Its protocol, `HTTP` for the stack's.
    pub protocol: String,
    /// Its port.
    pub port: i32,
    /// `ip` for the stack's (awsvpc tasks).
    pub target_type: String,
    /// Its health check.
    pub health_check: HealthCheckSettings,
    /// Load balancers whose listeners forward to it.
    pub load_balancer_arns: Vec<String>,
    /// Its deregistration delay in seconds as AWS reports it; `None` until its attributes are read.
    pub deregistration_delay: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Human-readable differences from the managed settings (empty when none).
    pub drift: Vec<String>,
}

fn observe_target_group(tg: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> TargetGroupObservation {
    TargetGroupObservation {
        arn: tg.target_group_arn().unwrap_or_default().to_string(),
        vpc_id: tg.vpc_id().unwrap_or_default().to_string(),
        protocol: tg.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        port: tg.port().unwrap_or_default(),
        target_type: tg.target_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        health_check: HealthCheckSettings::from_target_group(tg),
        load_balancer_arns: sorted(tg.load_balancer_arns()),
        deregistration_delay: None,
        tags: BTreeMap::new(),
        drift: Vec::new(),
    }
}

/// The target group's deregistration delay, as AWS reports it.
async fn deregistration_delay_of(client: &Client, arn: &str) -> AwsResult<Option<String>> {
    let out = client
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeTargetGroupAttributes", e))?;
    Ok(out
        .attributes()
        .iter()
        .find(|a| a.key() == Some(DEREGISTRATION_DELAY_KEY))
        .and_then(|a| a.value().map(str::to_string)))
}

/// Sets the managed deregistration delay unless `current` already is it.
async fn converge_deregistration_delay(client: &Client, arn: &str, current: Option<&str>) -> AwsResult<()> {
    if current == Some(DEREGISTRATION_DELAY_SECONDS) {
        return Ok(());
    }
    let attribute = TargetGroupAttribute::builder().key(DEREGISTRATION_DELAY_KEY).value(DEREGISTRATION_DELAY_SECONDS);
    client
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(attribute.build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyTargetGroupAttributes", e))?;
    Ok(())
}

/// Settings that cannot change in place (protocol and target type; with a spec, also VPC and port).
fn target_group_identity_drift(observed: &TargetGroupObservation, expected: Option<&TargetGroupSpec>) -> Vec<String> {
    let mut drift = Vec::new();
    if observed.protocol != "HTTP" {
        drift.push(format!("protocol is {}, expected HTTP", observed.protocol));
    }
    if observed.target_type != "ip" {
        drift.push(format!("target type is {}, expected ip", observed.target_type));
    }
    if let Some(spec) = expected {
        if observed.vpc_id != spec.vpc_id {
            drift.push(format!("VPC is {}, expected {}", observed.vpc_id, spec.vpc_id));
        }
        if observed.port != spec.port {
            drift.push(format!("port is {}, expected {}", observed.port, spec.port));
        }
    }
    drift
}

/// How the target group differs from the managed settings; without a spec the health check path is taken
/// as it is, since only the spec knows the right one.
pub fn target_group_drift(observed: &TargetGroupObservation, expected: Option<&TargetGroupSpec>) -> Vec<String> {
    let path = expected.map_or(observed.health_check.path.as_str(), |s| s.health_check_path.as_str());
    let mut drift = target_group_identity_drift(observed, expected);
    drift.extend(health_check_drift(&HealthCheckSettings::for_path(path), &observed.health_check));
    if let Some(delay) = observed.deregistration_delay.as_deref().filter(|d| *d != DEREGISTRATION_DELAY_SECONDS) {
        drift.push(format!("deregistration delay is {delay}s, expected {DEREGISTRATION_DELAY_SECONDS}s"));
    }
    drift
}

/// The target group with this name; `None` when there is none.
async fn find_target_group(client: &Client, name: &str) -> AwsResult<Option<TargetGroupObservation>> {
    match client.describe_target_groups().names(name).send().await {
        Ok(out) => {
            Ok(out.target_groups().iter().find(|tg| tg.target_group_name() == Some(name)).map(observe_target_group))
        }
        Err(err) => {
            let err = AwsError::from_sdk("DescribeTargetGroups", err);
            if err.is(&["TargetGroupNotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

async fn create_target_group(client: &Client, spec: &TargetGroupSpec) -> AwsResult<TargetGroupObservation> {
    let check = HealthCheckSettings::for_path(&spec.health_check_path);
    let request = client
        .create_target_group()
        .name(&spec.name)
        .protocol(ProtocolEnum::Http)
        .protocol_version("HTTP1")
        .port(spec.port)
        .vpc_id(&spec.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .ip_address_type(TargetGroupIpAddressTypeEnum::Ipv4)
        .health_check_enabled(check.enabled)
        .health_check_protocol(ProtocolEnum::from(check.protocol.as_str()))
        .health_check_port(&check.port)
        .health_check_path(&check.path)
        .health_check_interval_seconds(check.interval_seconds)
        .health_check_timeout_seconds(check.timeout_seconds)
        .healthy_threshold_count(check.healthy_threshold)
        .unhealthy_threshold_count(check.unhealthy_threshold)
        .matcher(Matcher::builder().http_code(&check.matcher).build())
        .set_tags((!spec.tags.is_empty()).then(|| tag_list(&spec.tags)));
    match request.send().await {
        Ok(out) => out.target_groups().first().map(observe_target_group).ok_or_else(|| {
            AwsError::other("CreateTargetGroup", format!("no target group in the reply for {}", spec.name))
        }),
        Err(err) => {
            let err = AwsError::from_sdk("CreateTargetGroup", err);
            if !err.is(&["DuplicateTargetGroupName"]) {
                return Err(err);
            }
            find_target_group(client, &spec.name).await?.ok_or_else(|| {
                AwsError::other("CreateTargetGroup", format!("target group {} exists but cannot be found", spec.name))
            })
        }
    }
}

async fn modify_health_check(client: &Client, arn: &str, check: &HealthCheckSettings) -> AwsResult<()> {
    client
        .modify_target_group()
        .target_group_arn(arn)
        .health_check_enabled(check.enabled)
        .health_check_protocol(ProtocolEnum::from(check.protocol.as_str()))
        .health_check_port(&check.port)
        .health_check_path(&check.path)
        .health_check_interval_seconds(check.interval_seconds)
        .health_check_timeout_seconds(check.timeout_seconds)
        .healthy_threshold_count(check.healthy_threshold)
        .unhealthy_threshold_count(check.unhealthy_threshold)
        .matcher(Matcher::builder().http_code(&check.matcher).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyTargetGroup", e))?;
    Ok(())
}

/// Finds the target group by name or creates it (HTTP to task IPs, health check on the spec's path),
/// adopting one a concurrent or crashed run created; then converges the health check and tags. May be
/// called again after a crash; converges.
///
/// Protocol, target type, VPC and port cannot change in place: a target group of the same name that
/// differs in them is an error naming what differs.
pub async fn ensure_target_group(client: &Client, spec: &TargetGroupSpec) -> AwsResult<TargetGroup> {
    validate_target_group_name(&spec.name).map_err(|m| AwsError::other("CreateTargetGroup", m))?;
    let tg = match find_target_group(client, &spec.name).await? {
        Some(found) => found,
        None => create_target_group(client, spec).await?,
    };
    let identity = target_group_identity_drift(&tg, Some(spec));
    if !identity.is_empty() {
        return Err(AwsError::other(
            "CreateTargetGroup",
            format!(
                "target group {} differs in settings that cannot be changed in place ({}); delete it (after \
                 whatever uses it), then apply again",
                spec.name,
                identity.join(", ")
            ),
        ));
    }
    let expected = HealthCheckSettings::for_path(&spec.health_check_path);
    if tg.health_check != expected {
        modify_health_check(client, &tg.arn, &expected).await?;
    }
    let delay = deregistration_delay_of(client, &tg.arn).await?;
    converge_deregistration_delay(client, &tg.arn, delay.as_deref()).await?;
    converge_tags(client, &tg.arn, &spec.tags).await?;
    Ok(TargetGroup { arn: tg.arn })
}

/// Describes the target group with its tags and deregistration delay; `None` when it does not exist. How it
/// differs is judged by [`target_group_drift`].
pub async fn describe_target_group(client: &Client, name: &str) -> AwsResult<Option<TargetGroupObservation>> {
    let Some(mut tg) = find_target_group(client, name).await? else { return Ok(None) };
    let (tags, delay) = tokio::try_join!(tags_of(client, &tg.arn), deregistration_delay_of(client, &tg.arn))?;
    (tg.tags, tg.deregistration_delay) = (tags, delay);
    Ok(Some(tg))
}

fn target_group_delete_decision(
    name: &str,
    outcome: Result<(), AwsError>,
    elapsed: Duration,
    timeout: Duration,
) -> WaitDecision {
    match outcome {
        Ok(()) => WaitDecision::Done,
        Err(err) if err.is(&["TargetGroupNotFound"]) => WaitDecision::Done,
        Err(err) if err.is(&["ResourceInUse"]) && elapsed < timeout => WaitDecision::Retry,
        Err(err) if err.is(&["ResourceInUse"]) => WaitDecision::Fail(AwsError::other(
            "DeleteTargetGroup",
            format!(
                "target group {name} was still in use after waiting {}s ({}); delete the load balancer (or its \
                 listeners) and any ECS service registering tasks in it first",
                timeout.as_secs(),
                err.message
            ),
        )),
        Err(err) => WaitDecision::Fail(err),
    }
}

/// Deletes the target group, retrying for up to `timeout` while a load balancer's listener or an ECS
/// service still uses it (the caller deletes those first; AWS lets go of them a little later). Absent is
/// success, so this may be called again after a crash.
pub async fn delete_target_group(client: &Client, name: &str, timeout: Duration) -> AwsResult<()> {
    delete_target_group_polling(client, name, timeout, POLL_INTERVAL).await
}

async fn delete_target_group_polling(
    client: &Client,
    name: &str,
    timeout: Duration,
    interval: Duration,
) -> AwsResult<()> {
    let Some(tg) = find_target_group(client, name).await? else { return Ok(()) };
    let started = Instant::now();
    let deadline = super::deadline_after(timeout);
    let backoff = super::wait::Backoff::up_to(interval);
    loop {
        let outcome = client
            .delete_target_group()
            .target_group_arn(&tg.arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("DeleteTargetGroup", e));
        match target_group_delete_decision(name, outcome, started.elapsed(), timeout) {
            WaitDecision::Done => return Ok(()),
            WaitDecision::Fail(err) => return Err(err),
            WaitDecision::Retry => backoff.sleep_before(deadline).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------------------------

/// Which listeners the load balancer gets: with a certificate, HTTPS:443 forwarding to the target group and
/// HTTP:80 redirecting to it; without, HTTP:80 forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The load balancer.
    pub load_balancer_arn: String,
    /// The web service's target group.
    pub target_group_arn: String,
    /// An ACM (or IAM server) certificate ARN; `None` or empty means HTTP only.
    pub certificate_arn: Option<String>,
}

/// What a listener does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerAction {
    /// Forward to this target group.
    Forward(String),
    /// Answer with a 301 to the same URL over HTTPS on 443.
    RedirectToHttps,
    /// Anything else (someone's hand-made action), described for drift messages.
    Other(String),
}

/// One listener's settings, as wanted or as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The port it listens on.
    pub port: i32,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// The TLS policy (HTTPS only).
    pub ssl_policy: Option<String>,
    /// The default certificate (HTTPS only).
    pub certificate_arn: Option<String>,
    /// Its default action.
    pub action: ListenerAction,
}

/// The name part of a target group ARN (`...:targetgroup/<name>/<id>`), for readable messages.
fn target_group_label(arn: &str) -> &str {
    arn.split_once(":targetgroup/").and_then(|(_, rest)| rest.split('/').next()).unwrap_or(arn)
}

impl fmt::Display for ListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol, self.port)?;
        match &self.action {
            ListenerAction::Forward(arn) => write!(f, " forwarding to {}", target_group_label(arn))?,
            ListenerAction::RedirectToHttps => write!(f, " redirecting to HTTPS:443")?,
            ListenerAction::Other(what) => write!(f, " with action {what}")?,
        }
        if let Some(policy) = &self.ssl_policy {
            write!(f, ", policy {policy}")?;
        }
        if let Some(certificate) = &self.certificate_arn {
            write!(f, ", certificate {certificate}")?;
        }
        Ok(())
    }
}

/// A listener that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSummary {
    /// Its ARN.
    pub arn: String,
    /// Its settings.
    pub config: ListenerConfig,
}

/// The listeners the spec asks for, HTTPS first so the redirect target exists before the redirect.
pub fn desired_listeners(spec: &ListenerSpec) -> Vec<ListenerConfig> {
    let forward = ListenerAction::Forward(spec.target_group_arn.clone());
    let http =
        |action| ListenerConfig { port: 80, protocol: "HTTP".into(), ssl_policy: None, certificate_arn: None, action };
    match spec.certificate_arn.as_deref().filter(|c| !c.is_empty()) {
        None => vec![http(forward)],
        Some(certificate) => vec![
            ListenerConfig {
                port: 443,
                protocol: "HTTPS".into(),
                ssl_policy: Some(HTTPS_SSL_POLICY.into()),
                certificate_arn: Some(certificate.into()),
                action: forward,
            },
            http(ListenerAction::RedirectToHttps),
        ],
    }
}

/// Whether a redirect keeps host, path and query and only moves to HTTPS:443 permanently. Unset parts mean
/// "keep" (AWS fills in the `#{...}` placeholders itself).
fn is_https_redirect(config: &RedirectActionConfig) -> bool {
    let keeps = |value: Option<&str>, placeholder: &str| value.is_none_or(|v| v == placeholder);
    config.protocol() == Some("HTTPS")
        && config.port() == Some("443")
        && config.status_code() == Some(&RedirectActionStatusCodeEnum::Http301)
        && keeps(config.host(), "#{host}")
        && keeps(config.path(), "/#{path}")
        && keeps(config.query(), "#{query}")
}

fn action_from_aws(action: &Action) -> ListenerAction {
    match action.r#type() {
        Some(ActionTypeEnum::Forward) => {
            let tuples = action.forward_config().map(|c| c.target_groups()).unwrap_or_default();
            match (action.target_group_arn(), tuples) {
                (Some(arn), _) => ListenerAction::Forward(arn.to_string()),
                (None, [one]) => ListenerAction::Forward(one.target_group_arn().unwrap_or_default().to_string()),
                (None, many) => ListenerAction::Other(format!("forward to {} target groups", many.len())),
            }
        }
        Some(ActionTypeEnum::Redirect) => match action.redirect_config() {
            Some(config) if is_https_redirect(config) => ListenerAction::RedirectToHttps,
            Some(config) => ListenerAction::Other(format!(
                "redirect to {}:{}",
                config.protocol().unwrap_or("#{protocol}"),
                config.port().unwrap_or("#{port}")
            )),
            None => ListenerAction::Other("redirect".into()),
        },
        Some(other) => ListenerAction::Other(other.as_str().to_string()),
        None => ListenerAction::Other("unknown".into()),
    }
}

/// The default action; several (e.g. authenticate, then forward) is something the stack never makes.
fn default_action_from_aws(actions: &[Action]) -> ListenerAction {
    match actions {
        [one] => action_from_aws(one),
        [] => ListenerAction::Other("none".into()),
        many => ListenerAction::Other(format!("a chain of {} actions", many.len())),
    }
}

/// A listener as the stack compares it. TLS settings count only for TLS protocols (some emulators report a
/// policy on plain HTTP listeners, and it means nothing there).
fn listener_from_aws(listener: &aws_sdk_elasticloadbalancingv2::types::Listener) -> ListenerSummary {
    let protocol = listener.protocol().map(|p| p.as_str().to_ascii_uppercase()).unwrap_or_default();
    let tls = matches!(protocol.as_str(), "HTTPS" | "TLS");
    let certificate = listener
        .certificates()
        .iter()
        .find(|c| c.is_default() == Some(true))
        .or_else(|| listener.certificates().first())
        .and_then(|c| c.certificate_arn());
    ListenerSummary {
        arn: listener.listener_arn().unwrap_or_default().to_string(),
        config: ListenerConfig {
            port: listener.port().unwrap_or_default(),
            ssl_policy: listener.ssl_policy().filter(|_| tls).map(str::to_string),
            certificate_arn: certificate.filter(|_| tls).map(str::to_string),
            action: default_action_from_aws(listener.default_actions()),
            protocol,
        },
    }
}

/// What happens to one wanted listener.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenerStep {
    /// The listener with this ARN is already right.
    Keep(String),
    /// The listener with this ARN is on the right port but differs.
    Modify(String),
    /// There is none on its port.
    Create,
}

/// What it takes to turn the current listeners into the wanted ones.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListenerPlan {
    /// One step per wanted listener, in the same order.
    steps: Vec<ListenerStep>,
    /// Listeners nobody asked for (other ports, or a second listener on a wanted port).
    delete: Vec<String>,
}

/// Matches listeners by port (AWS allows one per port): a matching one is kept, a differing one modified,
/// a missing one created, and every other deleted.
fn plan_listeners(desired: &[ListenerConfig], current: &[ListenerSummary]) -> ListenerPlan {
    let mut claimed = BTreeSet::new();
    let mut steps = Vec::new();
    for want in desired {
        let on_port: Vec<&ListenerSummary> = current.iter().filter(|l| l.config.port == want.port).collect();
        let step = match on_port.iter().find(|l| l.config == *want).or(on_port.first()) {
            Some(l) if l.config == *want => ListenerStep::Keep(l.arn.clone()),
            Some(l) => ListenerStep::Modify(l.arn.clone()),
            None => ListenerStep::Create,
        };
        if let ListenerStep::Keep(arn) | ListenerStep::Modify(arn) = &step {
            claimed.insert(arn.clone());
        }
        steps.push(step);
    }
    let delete = current.iter().filter(|l| !claimed.contains(&l.arn)).map(|l| l.arn.clone()).collect();
    ListenerPlan { steps, delete }
}

/// How the current listeners differ from the spec, e.g. `missing listener HTTPS:443 ...`,
/// `listener on port 80 is HTTP:80 forwarding to x, expected HTTP:80 redirecting to HTTPS:443` or
/// `extra listener HTTP:8080 ...`.
pub fn listener_drift(spec: &ListenerSpec, current: &[ListenerSummary]) -> Vec<String> {
    let desired = desired_listeners(spec);
    let plan = plan_listeners(&desired, current);
    let by_arn: BTreeMap<&str, &ListenerSummary> = current.iter().map(|l| (l.arn.as_str(), l)).collect();
    let mut drift = Vec::new();
    for (want, step) in desired.iter().zip(&plan.steps) {
        match step {
            ListenerStep::Keep(_) => {}
            ListenerStep::Create => drift.push(format!("missing listener {want}")),
            ListenerStep::Modify(arn) => {
                let have = by_arn.get(arn.as_str()).map(|l| l.config.to_string()).unwrap_or_default();
                drift.push(format!("listener on port {} is {have}, expected {want}", want.port));
            }
        }
    }
    for arn in &plan.delete {
        let have = by_arn.get(arn.as_str()).map(|l| l.config.to_string()).unwrap_or_default();
        drift.push(format!("extra listener {have}"));
    }
    drift
}

/// Every listener of the load balancer, by port.
async fn list_listeners(client: &Client, load_balancer_arn: &str) -> AwsResult<Vec<ListenerSummary>> {
    let pages = client.describe_listeners().load_balancer_arn(load_balancer_arn).into_paginator().items().send();
    let found = pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| AwsError::from_sdk("DescribeListeners", e))?;
    let mut listeners: Vec<_> = found.iter().map(listener_from_aws).collect();
    listeners.sort_by(|a, b| (a.config.port, &a.arn).cmp(&(b.config.port, &b.arn)));
    Ok(listeners)
}

fn aws_default_action(action: &ListenerAction) -> AwsResult<Action> {
    match action {
        ListenerAction::Forward(arn) => {
            Ok(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(arn).build())
        }
        ListenerAction::RedirectToHttps => Ok(Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .host("#{host}")
                    .path("/#{path}")
                    .query("#{query}")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build()),
        ListenerAction::Other(what) => {
            Err(AwsError::other("CreateListener", format!("the stack never makes a listener with action {what}")))
        }
    }
}

fn certificates(config: &ListenerConfig) -> Option<Vec<Certificate>> {
    config.certificate_arn.as_ref().map(|arn| vec![Certificate::builder().certificate_arn(arn).build()])
}

async fn create_listener(client: &Client, load_balancer_arn: &str, config: &ListenerConfig) -> AwsResult<String> {
    let out = client
        .create_listener()
        .load_balancer_arn(load_balancer_arn)
        .protocol(ProtocolEnum::from(config.protocol.as_str()))
        .port(config.port)
        .set_ssl_policy(config.ssl_policy.clone())
        .set_certificates(certificates(config))
        .default_actions(aws_default_action(&config.action)?)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateListener", e))?;
    out.listeners()
        .first()
        .and_then(|l| l.listener_arn())
        .map(str::to_string)
        .ok_or_else(|| AwsError::other("CreateListener", format!("no listener in the reply for port {}", config.port)))
}

async fn modify_listener(client: &Client, arn: &str, config: &ListenerConfig) -> AwsResult<()> {
    client
        .modify_listener()
        .listener_arn(arn)
        .protocol(ProtocolEnum::from(config.protocol.as_str()))
        .port(config.port)
        .set_ssl_policy(config.ssl_policy.clone())
        .set_certificates(certificates(config))
        .default_actions(aws_default_action(&config.action)?)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyListener", e))?;
    Ok(())
}

async fn delete_listener(client: &Client, arn: &str) -> AwsResult<()> {
    match client.delete_listener().listener_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = AwsError::from_sdk("DeleteListener", err);
            if err.is(&["ListenerNotFound"]) { Ok(()) } else { Err(err) }
        }
    }
}

/// Makes the load balancer's listeners exactly those of [`desired_listeners`]: missing ones are created,
/// differing ones modified in place (so the port never stops answering), then any other listener is deleted.
/// Returns the listener ARNs in the order of [`desired_listeners`]. Idempotent; may be called again after a
/// crash; converges.
pub async fn ensure_listeners(client: &Client, spec: &ListenerSpec) -> AwsResult<Vec<String>> {
    let desired = desired_listeners(spec);
    let current = list_listeners(client, &spec.load_balancer_arn).await?;
    let plan = plan_listeners(&desired, &current);
    let mut arns = Vec::new();
    for (config, step) in desired.iter().zip(plan.steps) {
        let arn = match step {
            ListenerStep::Keep(arn) => arn,
            ListenerStep::Modify(arn) => {
                modify_listener(client, &arn, config).await?;
                arn
            }
            ListenerStep::Create => create_listener(client, &spec.load_balancer_arn, config).await?,
        };
        arns.push(arn);
    }
    for arn in &plan.delete {
        delete_listener(client, arn).await?;
    }
    Ok(arns)
}

/// Every listener of the load balancer, sorted by port; empty when the load balancer has none. Compare
/// them with [`listener_drift`].
pub async fn describe_listeners(client: &Client, load_balancer_arn: &str) -> AwsResult<Vec<ListenerSummary>> {
    match list_listeners(client, load_balancer_arn).await {
        Err(err) if err.is(&["LoadBalancerNotFound"]) => Ok(Vec::new()),
        other => other,
    }
}

/// Deletes every listener of the load balancer, so nothing forwards to its target group any more (the
/// target group can then be deleted without waiting for the load balancer). Absent is success, so this may
/// be called again after a crash.
pub async fn delete_listeners(client: &Client, load_balancer_arn: &str) -> AwsResult<()> {
    for listener in describe_listeners(client, load_balancer_arn).await? {
        delete_listener(client, &listener.arn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::{
        AvailabilityZone, ForwardActionConfig, Listener, LoadBalancerState, LoadBalancerStateEnum, TargetGroupTuple,
    };

    const TG: &str = "arn:aws:elasticloadbalancing:eu-west-2:123456789012:targetgroup/vault-web-tg/0123456789abcdef";
    const CERT: &str = "arn:aws:acm:eu-west-2:123456789012:certificate/11111111-2222-3333-4444-555555555555";

    fn err(code: &str) -> AwsError {
        AwsError { operation: "Test", code: Some(code.into()), message: format!("{code} happened") }
    }

    fn lb_spec() -> LoadBalancerSpec {
        LoadBalancerSpec {
            name: "vault-web".into(),
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            security_group_ids: vec!["sg-web".into()],
            access_logs: Some(super::super::s3::LogTarget { bucket: "vault-access-logs".into(), prefix: "elb".into() }),
            tags: [("datavault:stack".to_string(), "vault".to_string())].into(),
        }
    }

    fn listener_spec(certificate: Option<&str>) -> ListenerSpec {
        ListenerSpec {
            load_balancer_arn: "arn:aws:elasticloadbalancing:eu-west-2:123456789012:loadbalancer/app/vault-web/1"
                .into(),
            target_group_arn: TG.into(),
            certificate_arn: certificate.map(str::to_string),
        }
    }

    fn summary(arn: &str, config: ListenerConfig) -> ListenerSummary {
        ListenerSummary { arn: arn.into(), config }
    }

    fn http(port: i32, action: ListenerAction) -> ListenerConfig {
        ListenerConfig { port, protocol: "HTTP".into(), ssl_policy: None, certificate_arn: None, action }
    }

    /// What AWS answers for a load balancer made from `lb_spec()`.
    fn aws_load_balancer() -> aws_sdk_elasticloadbalancingv2::types::LoadBalancer {
        aws_sdk_elasticloadbalancingv2::types::LoadBalancer::builder()
            .load_balancer_arn("arn:lb")
            .load_balancer_name("vault-web")
            .dns_name("vault-web-1.eu-west-2.elb.amazonaws.com")
            .scheme(LoadBalancerSchemeEnum::InternetFacing)
            .r#type(LoadBalancerTypeEnum::Application)
            .ip_address_type(IpAddressType::Ipv4)
            .state(LoadBalancerState::builder().code(LoadBalancerStateEnum::Active).build())
            .vpc_id("vpc-1")
            .security_groups("sg-web")
            .availability_zones(AvailabilityZone::builder().subnet_id("subnet-b").zone_name("eu-west-2b").build())
            .availability_zones(AvailabilityZone::builder().subnet_id("subnet-a").zone_name("eu-west-2a").build())
            .build()
    }

    fn good_attributes() -> BTreeMap<String, String> {
        [
            ("routing.http.drop_invalid_header_fields.enabled".to_string(), "true".to_string()),
            ("routing.http.desync_mitigation_mode".to_string(), "defensive".to_string()),
            ("deletion_protection.enabled".to_string(), "false".to_string()),
            ("access_logs.s3.enabled".to_string(), "true".to_string()),
            ("access_logs.s3.bucket".to_string(), "vault-access-logs".to_string()),
            ("access_logs.s3.prefix".to_string(), "elb".to_string()),
        ]
        .into()
    }

    #[test]
    fn names_fit_in_32_characters() {
        assert_eq!(load_balancer_name("rdss-datavault"), "rdss-datavault-web");
        assert_eq!(target_group_name("rdss-datavault"), "rdss-datavault-web-tg");
        let longest = "a".repeat(24);
        assert_eq!(load_balancer_name(&longest).len(), 28);
        assert_eq!(target_group_name(&longest).len(), 31);
        // Longer than the stack allows: cut, and never a double or trailing hyphen at the join.
        let long = format!("{}-rest", "b".repeat(24));
        let tg = target_group_name(&long);
        assert!(tg.len() <= 32 && tg.ends_with("-web-tg") && !tg.contains("--"), "{tg}");
        assert!(validate_target_group_name(&tg).is_ok());
        assert!(validate_load_balancer_name(&load_balancer_name(&"c".repeat(40))).is_ok());
    }

    #[test]
    fn invalid_names_are_explained() {
        assert!(validate_load_balancer_name("vault-web").is_ok());
        assert!(validate_load_balancer_name("internal-web").unwrap_err().contains("internal-"));
        assert!(validate_load_balancer_name("-web").unwrap_err().contains("hyphen"));
        assert!(validate_load_balancer_name("vault_web").unwrap_err().contains("letters, digits"));
        assert!(validate_load_balancer_name(&"x".repeat(33)).unwrap_err().contains("32"));
        assert!(validate_target_group_name("vault--tg").unwrap_err().contains("two hyphens"));
        assert!(validate_target_group_name("vault-web-tg").is_ok());
    }

    #[test]
    fn load_balancer_spec_needs_two_subnets_and_a_group() {
        assert!(validate_load_balancer_spec(&lb_spec()).is_ok());
        let one_subnet = LoadBalancerSpec { subnet_ids: vec!["subnet-a".into(), "subnet-a".into()], ..lb_spec() };
        assert!(validate_load_balancer_spec(&one_subnet).unwrap_err().contains("two subnets"));
        let no_group = LoadBalancerSpec { security_group_ids: vec![], ..lb_spec() };
        assert!(validate_load_balancer_spec(&no_group).unwrap_err().contains("security group"));
    }

    #[test]
    fn attributes_converge_to_secure_settings_without_undoing_stricter_ones() {
        assert!(attribute_changes(&good_attributes()).is_empty());
        // What a fresh load balancer reports (the emulator omits some keys; absent means AWS's default).
        let fresh: BTreeMap<String, String> = [("deletion_protection.enabled".to_string(), "false".to_string())].into();
        assert_eq!(attribute_changes(&fresh), [("routing.http.drop_invalid_header_fields.enabled", "true")]);
        assert_eq!(
            attribute_drift(&fresh),
            ["routing.http.drop_invalid_header_fields.enabled is false, expected true"]
        );
        let mut changed = good_attributes();
        changed.insert("routing.http.desync_mitigation_mode".into(), "monitor".into());
        changed.insert("deletion_protection.enabled".into(), "true".into());
        assert_eq!(
            attribute_changes(&changed),
            [("routing.http.desync_mitigation_mode", "defensive"), ("deletion_protection.enabled", "false")]
        );
        changed.insert("routing.http.desync_mitigation_mode".into(), "strictest".into());
        assert_eq!(attribute_drift(&changed), ["deletion_protection.enabled is true, expected false"]);
    }

    #[test]
    fn access_logs_go_to_the_spec_bucket_and_elsewhere_is_drift() {
        let spec = lb_spec();
        let target = spec.access_logs.as_ref().unwrap();
        let mut actual: BTreeMap<String, String> =
            good_attributes().into_iter().filter(|(k, _)| !k.starts_with("access_logs")).collect();
        assert_eq!(access_log_changes(&actual, target).len(), 3, "a fresh load balancer logs nowhere");
        actual.extend(access_log_changes(&actual, target).into_iter().map(|(k, v)| (k.to_string(), v)));
        assert!(access_log_drift(&actual, target).is_empty());
        actual.insert("access_logs.s3.enabled".into(), "false".into());
        assert_eq!(access_log_drift(&actual, target), ["access_logs.s3.enabled is false, expected true"]);
    }

    #[test]
    fn log_delivery_is_the_regional_account_or_the_service_principal() {
        assert_eq!(log_delivery_principal("aws", "eu-west-2")["AWS"], "arn:aws:iam::652711504416:root");
        assert_eq!(
            log_delivery_principal("aws", "eu-south-2")["Service"],
            "logdelivery.elasticloadbalancing.amazonaws.com"
        );
    }

    #[test]
    fn observation_reads_the_aws_answer() {
        let observed = observe(&aws_load_balancer());
        assert_eq!(observed.subnets, ["subnet-a", "subnet-b"], "sorted");
        assert_eq!(
            (observed.scheme.as_str(), observed.load_balancer_type.as_str(), observed.state.as_str()),
            ("internet-facing", "application", "active")
        );
        let mut observed = observed;
        observed.attributes = good_attributes();
        assert!(load_balancer_drift(&observed, Some(&lb_spec())).is_empty());
    }

    #[test]
    fn load_balancer_drift_names_each_difference() {
        let mut observed = observe(&aws_load_balancer());
        observed.attributes = good_attributes();
        observed.scheme = "internal".into();
        observed.ip_address_type = "dualstack".into();
        observed.security_groups = vec!["sg-other".into()];
        observed.subnets = vec!["subnet-a".into(), "subnet-c".into()];
        assert_eq!(
            load_balancer_drift(&observed, Some(&lb_spec())),
            [
                "scheme is internal, expected internet-facing",
                "IP address type is dualstack, expected ipv4",
                "missing security group sg-web",
                "extra security group sg-other",
                "missing subnet subnet-b",
                "extra subnet subnet-c",
            ]
        );
        // Without a spec only the fixed settings are judged.
        assert_eq!(load_balancer_drift(&observed, None).len(), 2);
        assert_eq!(identity_drift(&observed), ["scheme is internal, expected internet-facing"]);
    }

    #[test]
    fn load_balancer_wait_ends_when_it_is_gone_or_the_time_is_up() {
        let timeout = Duration::from_secs(60);
        // Recorded: still listed twice after DeleteLoadBalancer, then gone.
        let sequence = [true, true, false];
        let decisions: Vec<_> = sequence
            .iter()
            .enumerate()
            .map(|(i, still)| gone_decision("vault-web", *still, Duration::from_secs(i as u64 * 5), timeout))
            .collect();
        assert!(matches!(decisions[..], [WaitDecision::Retry, WaitDecision::Retry, WaitDecision::Done]));
        match gone_decision("vault-web", true, timeout, timeout) {
            WaitDecision::Fail(e) => assert!(e.message.contains("vault-web") && e.message.contains("60s"), "{e}"),
            other => panic!("expected failure, got {other:?}"),
        }
    }

    fn aws_target_group() -> aws_sdk_elasticloadbalancingv2::types::TargetGroup {
        aws_sdk_elasticloadbalancingv2::types::TargetGroup::builder()
            .target_group_arn(TG)
            .target_group_name("vault-web-tg")
            .protocol(ProtocolEnum::Http)
            .port(8080)
            .vpc_id("vpc-1")
            .target_type(TargetTypeEnum::Ip)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_port("traffic-port")
            .health_check_path("/datavault-webapp/")
            .health_check_interval_seconds(30)
            .health_check_timeout_seconds(5)
            .healthy_threshold_count(3)
            .unhealthy_threshold_count(3)
            .matcher(Matcher::builder().http_code("200-399").build())
            .load_balancer_arns("arn:lb")
            .build()
    }

    fn tg_spec() -> TargetGroupSpec {
        TargetGroupSpec {
            name: "vault-web-tg".into(),
            vpc_id: "vpc-1".into(),
            port: 8080,
            health_check_path: "/datavault-webapp/".into(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn target_group_answer_matches_the_managed_settings() {
        let observed = observe_target_group(&aws_target_group());
        assert_eq!(observed.health_check, HealthCheckSettings::for_path("/datavault-webapp/"));
        assert!(target_group_drift(&observed, Some(&tg_spec())).is_empty());
        assert_eq!(observed.load_balancer_arns, ["arn:lb"]);
        let check = HealthCheckSettings::for_path("/x");
        assert!(check.interval_seconds > check.timeout_seconds, "AWS requires the timeout below the interval");
        assert_eq!(check.matcher, "200-399", "Tomcat redirects the app root to the login page");
    }

    #[test]
    fn target_group_drift_names_each_difference() {
        let mut observed = observe_target_group(&aws_target_group());
        observed.health_check.path = "/".into();
        observed.health_check.matcher = "200".into();
        observed.health_check.unhealthy_threshold = 10;
        observed.port = 80;
        observed.target_type = "instance".into();
        observed.deregistration_delay = Some("300".into());
        assert_eq!(
            target_group_drift(&observed, Some(&tg_spec())),
            [
                "target type is instance, expected ip",
                "port is 80, expected 8080",
                "health check path is /, expected /datavault-webapp/",
                "health check unhealthy threshold is 10, expected 3",
                "health check matcher is 200, expected 200-399",
                "deregistration delay is 300s, expected 60s",
            ]
        );
        // Without a spec the path and port are taken as they are.
        assert_eq!(target_group_drift(&observed, None).len(), 4);
    }

    #[test]
    fn target_group_delete_retries_while_in_use_until_the_timeout() {
        let timeout = Duration::from_secs(300);
        // Recorded: in use while the load balancer goes away, then deleted.
        let sequence = [Err(err("ResourceInUse")), Err(err("ResourceInUse")), Ok(())];
        let decisions: Vec<_> = sequence
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| target_group_delete_decision("tg", outcome, Duration::from_secs(i as u64 * 5), timeout))
            .collect();
        assert!(matches!(decisions[..], [WaitDecision::Retry, WaitDecision::Retry, WaitDecision::Done]));
        assert!(matches!(
            target_group_delete_decision("tg", Err(err("TargetGroupNotFound")), Duration::ZERO, timeout),
            WaitDecision::Done
        ));
        match target_group_delete_decision("vault-web-tg", Err(err("ResourceInUse")), timeout, timeout) {
            WaitDecision::Fail(e) => {
                assert!(e.message.contains("vault-web-tg") && e.message.contains("300s"), "{e}");
                assert!(e.message.contains("ResourceInUse happened"), "keeps AWS's reason: {e}");
            }
            other => panic!("expected failure, got {other:?}"),
        }
        assert!(matches!(
            target_group_delete_decision("tg", Err(err("AccessDenied")), Duration::ZERO, timeout),
            WaitDecision::Fail(_)
        ));
    }

    #[test]
    fn listeners_without_certificate_forward_plain_http() {
        let listeners = desired_listeners(&listener_spec(None));
        assert_eq!(listeners, [http(80, ListenerAction::Forward(TG.into()))]);
        assert_eq!(desired_listeners(&listener_spec(Some(""))), listeners, "an empty ARN means none");
    }

    #[test]
    fn listeners_with_certificate_serve_https_and_redirect_http() {
        let listeners = desired_listeners(&listener_spec(Some(CERT)));
        assert_eq!(listeners.len(), 2);
        let https = &listeners[0];
        assert_eq!((https.port, https.protocol.as_str()), (443, "HTTPS"));
        assert_eq!(https.ssl_policy.as_deref(), Some("ELBSecurityPolicy-TLS13-1-2-2021-06"));
        assert_eq!(https.certificate_arn.as_deref(), Some(CERT));
        assert_eq!(https.action, ListenerAction::Forward(TG.into()));
        assert_eq!(listeners[1], http(80, ListenerAction::RedirectToHttps));
        assert_eq!(
            https.to_string(),
            format!(
                "HTTPS:443 forwarding to vault-web-tg, policy ELBSecurityPolicy-TLS13-1-2-2021-06, certificate {CERT}"
            )
        );
        assert_eq!(listeners[1].to_string(), "HTTP:80 redirecting to HTTPS:443");
    }

    #[test]
    fn built_actions_read_back_as_the_same_action() {
        for action in [ListenerAction::Forward(TG.into()), ListenerAction::RedirectToHttps] {
            let built = aws_default_action(&action).unwrap();
            assert_eq!(action_from_aws(&built), action);
        }
        assert!(aws_default_action(&ListenerAction::Other("fixed-response".into())).is_err());
    }

    #[test]
    fn aws_actions_are_recognised() {
        // A redirect with AWS's filled-in defaults is still the HTTPS redirect.
        let minimal = Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build();
        assert_eq!(action_from_aws(&minimal), ListenerAction::RedirectToHttps);
        let temporary = Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http302)
                    .build(),
            )
            .build();
        assert_eq!(action_from_aws(&temporary), ListenerAction::Other("redirect to HTTPS:443".into()));
        let weighted = |n: usize| {
            let mut config = ForwardActionConfig::builder();
            for _ in 0..n {
                config = config.target_groups(TargetGroupTuple::builder().target_group_arn(TG).weight(1).build());
            }
            Action::builder().r#type(ActionTypeEnum::Forward).forward_config(config.build()).build()
        };
        assert_eq!(action_from_aws(&weighted(1)), ListenerAction::Forward(TG.into()));
        assert_eq!(action_from_aws(&weighted(2)), ListenerAction::Other("forward to 2 target groups".into()));
        let fixed = Action::builder().r#type(ActionTypeEnum::FixedResponse).build();
        assert_eq!(action_from_aws(&fixed), ListenerAction::Other("fixed-response".into()));
        assert_eq!(default_action_from_aws(&[]), ListenerAction::Other("none".into()));
        assert_eq!(
            default_action_from_aws(&[fixed.clone(), fixed]),
            ListenerAction::Other("a chain of 2 actions".into())
        );
    }

    #[test]
    fn listeners_read_from_aws_ignore_tls_settings_on_plain_http() {
        // As the emulator answers: an HTTP listener carrying a TLS policy.
        let listener = Listener::builder()
            .listener_arn("arn:l80")
            .port(80)
            .protocol(ProtocolEnum::Http)
            .ssl_policy("ELBSecurityPolicy-2016-08")
            .default_actions(aws_default_action(&ListenerAction::Forward(TG.into())).unwrap())
            .build();
        assert_eq!(listener_from_aws(&listener), summary("arn:l80", http(80, ListenerAction::Forward(TG.into()))));
        let https = Listener::builder()
            .listener_arn("arn:l443")
            .port(443)
            .protocol(ProtocolEnum::Https)
            .ssl_policy(HTTPS_SSL_POLICY)
            .certificates(Certificate::builder().certificate_arn(CERT).build())
            .default_actions(aws_default_action(&ListenerAction::Forward(TG.into())).unwrap())
            .build();
        assert_eq!(listener_from_aws(&https).config, desired_listeners(&listener_spec(Some(CERT)))[0]);
    }

    #[test]
    fn plan_keeps_matching_listeners() {
        let desired = desired_listeners(&listener_spec(None));
        let current = [summary("arn:80", desired[0].clone())];
        let plan = plan_listeners(&desired, &current);
        assert_eq!(plan, ListenerPlan { steps: vec![ListenerStep::Keep("arn:80".into())], delete: vec![] });
        assert!(listener_drift(&listener_spec(None), &current).is_empty());
    }

    #[test]
    fn plan_switches_http_to_https() {
        let current = [summary("arn:80", http(80, ListenerAction::Forward(TG.into())))];
        let desired = desired_listeners(&listener_spec(Some(CERT)));
        let plan = plan_listeners(&desired, &current);
        assert_eq!(plan.steps, [ListenerStep::Create, ListenerStep::Modify("arn:80".into())]);
        assert!(plan.delete.is_empty());
        assert_eq!(
            listener_drift(&listener_spec(Some(CERT)), &current),
            [
                format!(
                    "missing listener HTTPS:443 forwarding to vault-web-tg, policy {HTTPS_SSL_POLICY}, \
                     certificate {CERT}"
                ),
                "listener on port 80 is HTTP:80 forwarding to vault-web-tg, expected HTTP:80 redirecting to HTTPS:443"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn plan_switches_https_back_to_http_and_removes_extras() {
        let https = desired_listeners(&listener_spec(Some(CERT)));
        let current = [
            summary("arn:443", https[0].clone()),
            summary("arn:80", https[1].clone()),
            summary("arn:8080", http(8080, ListenerAction::Other("fixed-response".into()))),
        ];
        let plan = plan_listeners(&desired_listeners(&listener_spec(None)), &current);
        assert_eq!(plan.steps, [ListenerStep::Modify("arn:80".into())]);
        assert_eq!(plan.delete, ["arn:443", "arn:8080"]);
        let drift = listener_drift(&listener_spec(None), &current);
        assert_eq!(drift.len(), 3);
        assert_eq!(drift[2], "extra listener HTTP:8080 with action fixed-response");
    }

    #[test]
    fn plan_detects_a_changed_certificate_or_policy() {
        let desired = desired_listeners(&listener_spec(Some(CERT)));
        let mut old = desired[0].clone();
        old.ssl_policy = Some("ELBSecurityPolicy-2016-08".into());
        let current = [summary("arn:443", old), summary("arn:80", desired[1].clone())];
        let plan = plan_listeners(&desired, &current);
        assert_eq!(plan.steps, [ListenerStep::Modify("arn:443".into()), ListenerStep::Keep("arn:80".into())]);
    }

    #[test]
    fn plan_keeps_one_listener_per_port() {
        let desired = desired_listeners(&listener_spec(None));
        let current = [
            summary("arn:a", http(80, ListenerAction::Other("fixed-response".into()))),
            summary("arn:b", desired[0].clone()),
        ];
        let plan = plan_listeners(&desired, &current);
        assert_eq!(plan.steps, [ListenerStep::Keep("arn:b".into())], "the matching one is kept");
        assert_eq!(plan.delete, ["arn:a"]);
    }
}
