//! The optional public entry point, on one stack: created with a load balancer open to two CIDR blocks,
//! it is inspected through the AWS APIs (internet-facing in the stack's subnets, an HTTP listener forwarding
//! to a target group of web's task addresses, a security group admitting only those blocks and reaching
//! only web, web's service registered in the target group); then the load balancer is dropped from the
//! configuration and everything of it goes while the rest of the stack stays; a target group left behind
//! (as by an interrupted apply) is found by refresh and removed; the load balancer is added back to the
//! running stack with another block; destroy leaves nothing.
//!
//! No certificate: the emulator accepts only certificates it holds, and HTTPS listeners are covered by the
//! elbv2 module's own emulator test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use aws_sdk_ec2::types::{Filter, SecurityGroup};
use aws_sdk_ecs::types::Service;
use aws_sdk_elasticloadbalancingv2::types::{ActionTypeEnum, ProtocolEnum, Tag, TargetTypeEnum};
use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::env::acceptance_enabled;
use datavault_acceptance_tests::runner::announce;
use datavault_acceptance_tests::{
    CheckError, CheckResult, Emulator, STACK_TAG, Step, TestCase, check_actions, ensure, ensure_eq, expect_attr,
    expect_attr_eq, expect_attr_str, run,
};
use serde_json::{Value, json};

use crate::support::{ADDR, Rule, check_tags, planned_before, region, rules, stack_config};

const NAME: &str = "acc-entry";
/// Who may reach the load balancer (documentation ranges, RFC 5737).
const ALLOWED: [&str; 2] = ["192.0.2.0/24", "198.51.100.0/24"];
/// Who may reach it once it is added back.
const ALLOWED_LATER: [&str; 1] = ["203.0.113.0/24"];
const LOAD_BALANCER: &str = "acc-entry-web";
const TARGET_GROUP: &str = "acc-entry-web-tg";
const LOAD_BALANCER_GROUP: &str = "acc-entry-load-balancer";
const SERVICES_GROUP: &str = "acc-entry-services";

/// The stack, with a load balancer open to `allowed` unless that is `None`.
fn config(allowed: Option<&[&str]>) -> String {
    let extra = match allowed {
        Some(blocks) => {
            let blocks = blocks.iter().map(|b| format!("\"{b}\"")).collect::<Vec<_>>().join(", ");
            format!("  load_balancer = {{ allowed_cidr_blocks = [{blocks}] }}\n")
        }
        None => String::new(),
    };
    stack_config(NAME, &extra)
}

/// Prints the test's wall time when it ends, passed or failed.
struct WallTime(Instant);

impl Drop for WallTime {
    fn drop(&mut self) {
        if acceptance_enabled() {
            announce(&format!(
                "load_balancer::public_entry_point_comes_and_goes: wall time {:.1}s",
                self.0.elapsed().as_secs_f64()
            ));
        }
    }
}

fn check_state(state: &Value, allowed: &[&str]) -> CheckResult {
    let dns = expect_attr_str(state, ADDR, "load_balancer.dns_name")?;
    ensure!(!dns.is_empty(), "load_balancer.dns_name is empty");
    expect_attr_eq(state, ADDR, "web_url", format!("http://{dns}/datavault-webapp/"))?;
    let arn = expect_attr_str(state, ADDR, "load_balancer.arn")?;
    ensure!(arn.contains(&format!("loadbalancer/app/{LOAD_BALANCER}/")), "load_balancer.arn = {arn}");
    expect_attr_eq(state, ADDR, "load_balancer.allowed_cidr_blocks", json!(allowed))?;
    expect_attr_eq(state, ADDR, "load_balancer.certificate_arn", Value::Null)?;
    expect_attr_str(state, ADDR, "security_group_ids.load_balancer")?;
    expect_attr_eq(state, ADDR, "drift", json!([]))
}

fn check_state_without(state: &Value) -> CheckResult {
    expect_attr_eq(state, ADDR, "load_balancer", Value::Null)?;
    expect_attr_eq(state, ADDR, "web_url", format!("http://web.{NAME}.datavault.internal:8080/datavault-webapp/"))?;
    let groups = expect_attr(state, ADDR, "security_group_ids")?;
    ensure!(groups.get("load_balancer").is_none(), "security_group_ids still lists it: {groups}");
    expect_attr_eq(state, ADDR, "drift", json!([]))
}

/// A target group of the stack's name and tags, as an apply killed right after making it would leave.
async fn leave_target_group_behind(emu: &Emulator) -> CheckResult {
    let vpcs =
        emu.ec2().describe_vpcs().filters(Filter::builder().name("is-default").values("true").build()).send().await?;
    let vpc = vpcs.vpcs().first().and_then(|v| v.vpc_id()).ok_or("the emulator has no default VPC")?;
    emu.elbv2()
        .create_target_group()
        .name(TARGET_GROUP)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Ip)
        .tags(Tag::builder().key(STACK_TAG).value(NAME).build())
        .send()
        .await
        .map_err(|e| format!("CreateTargetGroup: {}", describe(&e)))?;
    Ok(())
}

#[test]
fn public_entry_point_comes_and_goes() {
    let _wall = WallTime(Instant::now());
    run(TestCase::new()
        .stack(NAME)
        .step(
            Step::config(config(Some(&ALLOWED)))
                .check(|state| check_state(state, &ALLOWED))
                .check_emulator(|emu| async move { check_entry_point(&emu, &ALLOWED).await }),
        )
        // An import finds the load balancer and takes over its settings (CIDRs from its security group).
        .step(Step::import(ADDR).import_id(NAME).import_state_verify().import_state_verify_ignore(&[
            "archive_force_destroy",
            "wait_for_steady_state",
            "database.skip_final_snapshot",
        ]))
        .step(
            Step::config(config(None))
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(check_state_without)
                .check_emulator(|emu| async move { check_entry_point_gone(&emu).await }),
        )
        .step(Step::custom(|ctx| async move { leave_target_group_behind(ctx.emulator()).await }))
        .step(
            Step::config(config(None))
                .plan_check(|plan| {
                    check_actions(plan, ADDR, &[&["update"]])?;
                    let drift = planned_before(plan, "drift").cloned().unwrap_or_default();
                    ensure!(
                        drift.to_string().contains("target_group: exists without load_balancer"),
                        "refresh missed it: {drift}"
                    );
                    Ok(())
                })
                .check(check_state_without)
                .check_emulator(|emu| async move { check_entry_point_gone(&emu).await }),
        )
        .step(
            Step::config(config(Some(&ALLOWED_LATER)))
                .plan_check(|plan| check_actions(plan, ADDR, &[&["update"]]))
                .check(|state| check_state(state, &ALLOWED_LATER))
                .check_emulator(|emu| async move { check_entry_point(&emu, &ALLOWED_LATER).await }),
        ));
}

fn tcp(port: i32, source: &str) -> Rule {
    ("tcp".to_string(), port, port, source.to_string())
}

async fn security_group(emu: &Emulator, name: &str) -> Result<Option<SecurityGroup>, CheckError> {
    let out = emu
        .ec2()
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .map_err(|e| format!("DescribeSecurityGroups: {}", describe(&e)))?;
    Ok(out.security_groups().first().cloned())
}

async fn web_service(emu: &Emulator) -> Result<Service, CheckError> {
    let out = emu
        .ecs()
        .describe_services()
        .cluster(NAME)
        .services("web")
        .send()
        .await
        .map_err(|e| format!("DescribeServices: {}", describe(&e)))?;
    Ok(out.services().iter().find(|s| s.status() == Some("ACTIVE")).cloned().ok_or("service web is not ACTIVE")?)
}

async fn elb_tags(emu: &Emulator, arn: &str) -> Result<std::collections::BTreeMap<String, String>, CheckError> {
    let out = emu.elbv2().describe_tags().resource_arns(arn).send().await?;
    Ok(out
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
        .collect())
}

/// The load balancer, its target group, listener and security group, and web registered behind it.
async fn check_entry_point(emu: &Emulator, allowed: &[&str]) -> CheckResult {
    let web = web_service(emu).await?;
    let web_subnets: BTreeSet<&str> = web
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .map(|v| v.subnets().iter().map(String::as_str).collect())
        .unwrap_or_default();

    let lbs = emu.elbv2().describe_load_balancers().names(LOAD_BALANCER).send().await?;
    let lb = lbs.load_balancers().first().ok_or(format!("load balancer {LOAD_BALANCER} does not exist"))?;
    let lb_arn = lb.load_balancer_arn().unwrap_or_default();
    ensure_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"), "load balancer scheme");
    ensure_eq!(lb.r#type().map(|t| t.as_str()), Some("application"), "load balancer type");
    let lb_subnets: BTreeSet<&str> = lb.availability_zones().iter().filter_map(|z| z.subnet_id()).collect();
    ensure!(lb_subnets.len() >= 2, "the load balancer spans fewer than two subnets: {lb_subnets:?}");
    ensure!(
        lb_subnets.is_subset(&web_subnets),
        "load balancer subnets {lb_subnets:?} are not the stack's {web_subnets:?}"
    );
    check_tags("load balancer", &elb_tags(emu, lb_arn).await?, NAME, &[])?;
    check_load_balancer_access_logs(emu, lb_arn).await?;

    let lb_group = security_group(emu, LOAD_BALANCER_GROUP).await?.ok_or("the load balancer's group does not exist")?;
    let services_group = security_group(emu, SERVICES_GROUP).await?.ok_or("the services' group does not exist")?;
    let (lb_group_id, services_id) =
        (lb_group.group_id().unwrap_or_default(), services_group.group_id().unwrap_or_default());
    ensure_eq!(lb.security_groups(), [lb_group_id.to_string()], "load balancer security groups");
    let expected_in: BTreeSet<Rule> = allowed.iter().map(|b| tcp(80, &format!("cidr {b}"))).collect();
    ensure_eq!(
        rules(lb_group.ip_permissions()),
        expected_in,
        "the load balancer's ingress (HTTP from the allowed blocks only)"
    );
    let expected_out: BTreeSet<Rule> = [tcp(8080, &format!("group {services_id}"))].into();
    ensure_eq!(rules(lb_group.ip_permissions_egress()), expected_out, "the load balancer's egress (web's port only)");
    let services_in = rules(services_group.ip_permissions());
    ensure!(
        services_in.contains(&tcp(8080, &format!("group {lb_group_id}"))),
        "the services' group does not admit the load balancer on 8080: {services_in:?}"
    );
    ensure!(
        services_in.iter().all(|r| r.3.starts_with("group ")),
        "the services' group admits address ranges: {services_in:?}"
    );

    let tgs = emu.elbv2().describe_target_groups().names(TARGET_GROUP).send().await?;
    let tg = tgs.target_groups().first().ok_or(format!("target group {TARGET_GROUP} does not exist"))?;
    let tg_arn = tg.target_group_arn().unwrap_or_default();
    ensure_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"), "target type");
    ensure_eq!(
        (tg.protocol().map(|p| p.as_str()), tg.port()),
        (Some("HTTP"), Some(8080)),
        "target group protocol and port"
    );
    ensure_eq!(tg.health_check_path(), Some("/datavault-webapp/"), "target group health check path");
    ensure_eq!(tg.vpc_id(), lb.vpc_id(), "target group VPC");
    check_tags("target group", &elb_tags(emu, tg_arn).await?, NAME, &[])?;

    let listeners = emu.elbv2().describe_listeners().load_balancer_arn(lb_arn).send().await?;
    let listeners = listeners.listeners();
    ensure_eq!(listeners.len(), 1, "listeners (HTTP only without a certificate): {listeners:?}");
    let listener = &listeners[0];
    ensure_eq!((listener.protocol().map(|p| p.as_str()), listener.port()), (Some("HTTP"), Some(80)), "listener");
    let action = listener.default_actions().first().ok_or("the listener has no action")?;
    ensure_eq!(action.r#type(), Some(&ActionTypeEnum::Forward), "listener action");
    ensure_eq!(action.target_group_arn(), Some(tg_arn), "listener target group");

    let registered: Vec<(Option<&str>, Option<&str>, Option<i32>)> =
        web.load_balancers().iter().map(|l| (l.target_group_arn(), l.container_name(), l.container_port())).collect();
    ensure_eq!(registered, [(Some(tg_arn), Some("web"), Some(8080))], "web's load balancers");
    Ok(())
}

/// The load balancer's access logs (FSBP ELB.5) go to the stack's access log bucket under `elb/`, which
/// admits the region's log delivery account (eu-west-2's, for the emulator's region) for this account's
/// logs only.
async fn check_load_balancer_access_logs(emu: &Emulator, lb_arn: &str) -> CheckResult {
    let out = emu.elbv2().describe_load_balancer_attributes().load_balancer_arn(lb_arn).send().await?;
    let attributes: BTreeMap<&str, &str> =
        out.attributes().iter().filter_map(|a| Some((a.key()?, a.value()?))).collect();
    let logs = format!("{NAME}-access-logs");
    for (key, value) in
        [("access_logs.s3.enabled", "true"), ("access_logs.s3.bucket", &logs), ("access_logs.s3.prefix", "elb")]
    {
        ensure_eq!(attributes.get(key).copied(), Some(value), "load balancer attribute {key}");
    }
    let policy = emu.s3().get_bucket_policy().bucket(&logs).send().await?;
    let policy: Value = serde_json::from_str(policy.policy().unwrap_or("{}"))?;
    let delivery = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["Sid"] == "LoadBalancerAccessLogs")
        .ok_or(format!("{logs} does not admit load balancer logs: {policy}"))?;
    // The account AWS documents for the tests' region, eu-west-2 (or us-east-1 when AWS_REGION says so).
    let expected_principal = match region().as_str() {
        "us-east-1" => json!({ "AWS": "arn:aws:iam::127311923021:root" }),
        _ => json!({ "AWS": "arn:aws:iam::652711504416:root" }),
    };
    ensure_eq!(delivery["Principal"], expected_principal, "{logs}: who delivers load balancer logs");
    let resource = delivery["Resource"].as_str().unwrap_or_default();
    ensure!(
        resource.starts_with(&format!("arn:aws:s3:::{logs}/elb/AWSLogs/")) && !resource.contains("AWSLogs/*"),
        "{logs}: load balancer logs may be written at {resource}, not under this account's prefix only"
    );
    Ok(())
}

/// Nothing of the entry point is left, web no longer uses it, and the rest of the stack is still there.
async fn check_entry_point_gone(emu: &Emulator) -> CheckResult {
    let lbs = emu.elbv2().describe_load_balancers().names(LOAD_BALANCER).send().await;
    ensure!(lbs.map(|o| o.load_balancers().is_empty()).unwrap_or(true), "load balancer {LOAD_BALANCER} survived");
    let tgs = emu.elbv2().describe_target_groups().names(TARGET_GROUP).send().await;
    ensure!(tgs.map(|o| o.target_groups().is_empty()).unwrap_or(true), "target group {TARGET_GROUP} survived");
    ensure!(security_group(emu, LOAD_BALANCER_GROUP).await?.is_none(), "security group {LOAD_BALANCER_GROUP} survived");
    let services_group = security_group(emu, SERVICES_GROUP).await?.ok_or("the services' group went too")?;
    let own = format!("group {}", services_group.group_id().unwrap_or_default());
    let services_in = rules(services_group.ip_permissions());
    ensure!(services_in.iter().all(|r| r.3 == own), "the services' group admits others: {services_in:?}");
    let web = web_service(emu).await?;
    ensure!(web.load_balancers().is_empty(), "web still uses a load balancer: {:?}", web.load_balancers());
    Ok(())
}
