//! Network paths: the load balancer in public subnets of its own while everything else stays in the stack's
//! subnets, the S3 gateway endpoint that lets tasks without a public address reach the archive, and the
//! plan-time warning for subnets the instances or tasks could not get out of.

use std::collections::BTreeSet;

use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::runner::announce;

use crate::support::{OkOrPanic, orphans, setup};

const NAME: &str = "rb-network";

/// Two new subnets in two zones of the default VPC, standing for public ones; returns their ids.
async fn public_subnets(emu: &datavault_acceptance_tests::Emulator) -> Result<Vec<String>, String> {
    let defaults = emu.ec2().describe_subnets().send().await.map_err(|e| describe(&e))?;
    let vpc = defaults.subnets().first().and_then(|s| s.vpc_id()).ok_or("no default subnet")?.to_string();
    let zones: BTreeSet<String> =
        defaults.subnets().iter().filter_map(|s| s.availability_zone().map(str::to_string)).collect();
    let mut ids = Vec::new();
    for (i, zone) in zones.iter().take(2).enumerate() {
        let created = emu
            .ec2()
            .create_subnet()
            .vpc_id(&vpc)
            .availability_zone(zone)
            .cidr_block(format!("172.31.{}.0/24", 210 + i))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        ids.push(created.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string());
    }
    Ok(ids)
}

fn config(public: &[String]) -> String {
    let list = public.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "terraform {{\n  required_providers {{\n    datavault = {{ source = \"datavault/datavault\" }}\n  }}\n}}\n\n\
         provider \"datavault\" {{}}\n\n\
         resource \"datavault_stack\" \"main\" {{\n  name                  = \"{NAME}\"\n  wait_for_steady_state = false\n  \
         database              = {{ deletion_protection = false, skip_final_snapshot = true }}\n  \
         load_balancer         = {{ subnet_ids = [{list}] }}\n}}\n"
    )
}

#[test]
fn the_load_balancer_takes_its_own_subnets_and_tasks_reach_s3_through_the_endpoint() {
    let Some(ctx) = setup("network") else { return };
    let public = ctx.block_on(public_subnets(&ctx.emulator)).unwrap_or_else(|e| panic!("{e}"));
    let tf = ctx.workdir("work", &config(&public));
    tf.apply().ok_or_panic();
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));

    let (lb_subnets, mount_subnets, service_subnets, endpoint_tables, main_table) = ctx
        .block_on(async {
            let emu = &ctx.emulator;
            let lbs = emu
                .elbv2()
                .describe_load_balancers()
                .names(format!("{NAME}-web"))
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let lb_subnets: BTreeSet<String> = lbs
                .load_balancers()
                .iter()
                .flat_map(|lb| lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)))
                .collect();
            let systems = emu
                .efs()
                .describe_file_systems()
                .creation_token(format!("datavault-{NAME}"))
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let fs = systems.file_systems().first().ok_or("no file system")?.file_system_id().to_string();
            let targets =
                emu.efs().describe_mount_targets().file_system_id(&fs).send().await.map_err(|e| describe(&e))?;
            let mount_subnets: BTreeSet<String> =
                targets.mount_targets().iter().map(|t| t.subnet_id().to_string()).collect();
            let services = emu
                .ecs()
                .describe_services()
                .cluster(NAME)
                .services("worker")
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let service_subnets: BTreeSet<String> = services
                .services()
                .iter()
                .flat_map(|s| {
                    s.network_configuration()
                        .and_then(|n| n.awsvpc_configuration())
                        .map(|a| a.subnets().to_vec())
                        .unwrap_or_default()
                })
                .collect();
            let endpoints = emu.ec2().describe_vpc_endpoints().send().await.map_err(|e| describe(&e))?;
            let ours = endpoints
                .vpc_endpoints()
                .iter()
                .find(|e| {
                    e.state().map(|s| s.as_str().to_ascii_lowercase()) != Some("deleted".into())
                        && e.tags().iter().any(|t| t.key() == Some("datavault:stack") && t.value() == Some(NAME))
                })
                .ok_or("the stack has no S3 endpoint")?;
            ensure_s3(ours.service_name().unwrap_or_default())?;
            let endpoint_tables: BTreeSet<String> = ours.route_table_ids().iter().cloned().collect();
            let tables = emu.ec2().describe_route_tables().send().await.map_err(|e| describe(&e))?;
            let main_table = tables
                .route_tables()
                .iter()
                .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
                .and_then(|t| t.route_table_id())
                .unwrap_or_default()
                .to_string();
            Ok::<_, String>((lb_subnets, mount_subnets, service_subnets, endpoint_tables, main_table))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let public_set: BTreeSet<String> = public.iter().cloned().collect();
    assert_eq!(lb_subnets, public_set, "the load balancer is not in its own subnets");
    assert!(mount_subnets.is_disjoint(&public_set), "mount targets went into the public subnets: {mount_subnets:?}");
    assert!(service_subnets.is_disjoint(&public_set), "tasks went into the public subnets: {service_subnets:?}");
    // The default subnets have no route table of their own: the main one routes them.
    assert_eq!(endpoint_tables, BTreeSet::from([main_table]), "the S3 endpoint does not route the task subnets");
    announce(&format!(
        "robustness/network: load balancer in {lb_subnets:?}, tasks in {service_subnets:?}, S3 endpoint on {endpoint_tables:?}"
    ));

    tf.destroy().ok_or_panic();
    let left = ctx.block_on(orphans(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty(), "destroy left orphans:\n  {}", left.join("\n  "));
    ctx.finish();
}

fn ensure_s3(service: &str) -> Result<(), String> {
    if service.ends_with(".s3") { Ok(()) } else { Err(format!("the stack's endpoint is for {service}, not S3")) }
}

/// A VPC of its own with a subnet in each of two zones and no route out of it; returns (VPC, subnets,
/// main route table).
async fn private_vpc(emu: &datavault_acceptance_tests::Emulator) -> Result<(String, Vec<String>, String), String> {
    let ec2 = emu.ec2();
    let vpc = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.map_err(|e| describe(&e))?;
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    let zones = ec2.describe_availability_zones().send().await.map_err(|e| describe(&e))?;
    let mut subnets = Vec::new();
    for (i, zone) in zones.availability_zones().iter().filter_map(|z| z.zone_name()).take(2).enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .availability_zone(zone)
            .cidr_block(format!("10.20.{}.0/24", i + 1))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        subnets.push(subnet.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string());
    }
    let tables = ec2
        .describe_route_tables()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let main = tables.route_tables().first().and_then(|t| t.route_table_id()).ok_or("no route table")?.to_string();
    Ok((vpc, subnets, main))
}

/// A NAT gateway in the first subnet, and the main table's way out through it.
async fn route_through_nat(
    emu: &datavault_acceptance_tests::Emulator,
    subnet: &str,
    table: &str,
) -> Result<(), String> {
    let ec2 = emu.ec2();
    let address = ec2.allocate_address().domain(aws_sdk_ec2::types::DomainType::Vpc).send().await;
    let address = address.map_err(|e| describe(&e))?.allocation_id().unwrap_or_default().to_string();
    let nat = ec2.create_nat_gateway().subnet_id(subnet).allocation_id(address).send().await;
    let nat = nat.map_err(|e| describe(&e))?;
    let nat = nat.nat_gateway().and_then(|n| n.nat_gateway_id()).unwrap_or_default().to_string();
    ec2.create_route()
        .route_table_id(table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(nat)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(())
}

fn in_vpc_config(name: &str, vpc: &str, subnets: &[String]) -> String {
    let list = subnets.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    crate::support::stack_config(name, "").replace(
        "  wait_for_steady_state = false\n",
        &format!("  wait_for_steady_state = false\n  vpc_id = \"{vpc}\"\n  subnet_ids = [{list}]\n"),
    )
}

#[test]
fn plan_says_which_subnets_cannot_reach_aws_and_what_would_fix_it() {
    let Some(ctx) = setup("egress") else { return };
    let (vpc, subnets, main) = ctx.block_on(private_vpc(&ctx.emulator)).unwrap_or_else(|e| panic!("{e}"));
    let plan = |tf: &crate::support::Tf| {
        ctx.proxy.clear();
        let out = tf.run(&["plan", "-input=false", "-no-color"]).ok_or_panic();
        let wrote = crate::proxy::writes(&ctx.proxy.records());
        assert!(wrote.is_empty(), "plan wrote to AWS: {wrote:?}");
        out.combined().split_whitespace().collect::<Vec<_>>().join(" ")
    };

    // Private subnets without a way out: the plan names each, its route table and the endpoints missing.
    let private = ctx.workdir("private", &in_vpc_config("rb-egress", &vpc, &subnets));
    let text = plan(&private);
    assert!(text.contains("Instances Cannot Reach AWS"), "{text}");
    for subnet in &subnets {
        let line = format!("- {subnet} (route table {main}): no route out of the VPC");
        assert!(text.contains(&line), "the plan does not say `{line}`:\n{text}");
    }
    assert!(text.contains("for: ecs, ecs-agent, ecs-telemetry, ecr.api, ecr.dkr, logs, secretsmanager"), "{text}");
    assert!(text.contains("ECS Exec Cannot Connect"), "{text}");

    // A NAT gateway route: instances and tasks both have a way out.
    ctx.block_on(route_through_nat(&ctx.emulator, &subnets[0], &main)).unwrap_or_else(|e| panic!("{e}"));
    let text = plan(&private);
    assert!(!text.contains("Instances Cannot Reach AWS") && !text.contains("ECS Exec Cannot Connect"), "{text}");

    // The default VPC, as AWS makes it: public subnets serve the instances, but the tasks have no public
    // address, so only ECS Exec is out of reach.
    let default = ctx.workdir("default", &crate::support::stack_config("rb-egress", ""));
    let text = plan(&default);
    assert!(!text.contains("Instances Cannot Reach AWS"), "{text}");
    assert!(text.contains("ECS Exec Cannot Connect"), "{text}");
    announce("robustness/network: plan named the subnets without a way out, and was quiet once a NAT route existed");
    ctx.finish();
}
