//! A shared account: resources with the stack's names that are not the stack's own are never changed or
//! deleted, by any command, and every refusal names them.
//!
//! Look-alikes are made through the SDK before the stack exists, without the stack's tag (as another team
//! or the reference HCL would make them) and one with another stack's tag. Then plan, apply, import,
//! destroy and the removal of an unwanted load balancer run; each must fail or skip with a diagnostic that
//! names the resource, make no AWS write at all (counted at the fault proxy), and leave every look-alike
//! exactly as it was, down to its tags, its rules, its objects and its images.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{IpPermission, IpRange, TagSpecification};
use datavault_acceptance_tests::Emulator;
use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::runner::announce;
use regex::Regex;

use crate::proxy::writes;
use crate::support::{Ctx, OkOrPanic, Tf, setup, stack_config};

const NAME: &str = "rb-owner";
const OTHER_STACK: &str = "someone-else";

/// A description of every look-alike, keyed by what it is, detailed enough that any change shows.
type Snapshot = BTreeMap<String, String>;

fn tag(key: &str, value: &str) -> aws_sdk_ecr::types::Tag {
    aws_sdk_ecr::types::Tag::builder().key(key).value(value).build().expect("tag")
}

/// Makes look-alikes of the stack's parts: none tagged for this stack, the state bucket tagged for another
/// one. Returns the default VPC id.
/// Creates a bucket in the emulator's region, without any of the stack's settings.
async fn create_bucket(emu: &Emulator, bucket: &str) -> Result<(), String> {
    let location = aws_sdk_s3::types::CreateBucketConfiguration::builder()
        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(emu.region()))
        .build();
    emu.s3()
        .create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(location)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(())
}

async fn make_look_alikes(emu: &Emulator, stack: &str) -> Result<String, String> {
    let s3 = emu.s3();
    create_bucket(emu, &format!("{stack}-archive")).await?;
    emu.put_object_past_tls_policy(&format!("{stack}-archive"), "their/data.txt", b"another team's data")
        .await
        .map_err(|e| e.to_string())?;
    let state = format!("{stack}-state");
    create_bucket(emu, &state).await?;
    let tagging = aws_sdk_s3::types::Tagging::builder()
        .tag_set(aws_sdk_s3::types::Tag::builder().key("datavault:stack").value(OTHER_STACK).build().expect("tag"))
        .tag_set(aws_sdk_s3::types::Tag::builder().key("datavault:part").value("state_bucket").build().expect("tag"))
        .build()
        .expect("tagging");
    s3.put_bucket_tagging().bucket(&state).tagging(tagging).send().await.map_err(|e| describe(&e))?;

    let repo = format!("{stack}/web");
    emu.ecr()
        .create_repository()
        .repository_name(&repo)
        .tags(tag("team", "theirs"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.push_image(&repo, "1.0").await.map_err(|e| e.to_string())?;

    let logs = emu.logs();
    logs.create_log_group().log_group_name(format!("/datavault/{stack}")).send().await.map_err(|e| describe(&e))?;
    logs.put_retention_policy()
        .log_group_name(format!("/datavault/{stack}"))
        .retention_in_days(3)
        .send()
        .await
        .map_err(|e| describe(&e))?;

    let vpcs = emu
        .ec2()
        .describe_vpcs()
        .filters(aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let vpc = vpcs.vpcs().first().and_then(|v| v.vpc_id()).ok_or("no default VPC")?.to_string();
    let group = emu
        .ec2()
        .create_security_group()
        .group_name(format!("{stack}-services"))
        .description("another team's group")
        .vpc_id(&vpc)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.ec2()
        .authorize_security_group_ingress()
        .group_id(group.group_id().unwrap_or_default())
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;

    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    emu.iam()
        .create_role()
        .role_name(format!("{stack}-worker-task"))
        .assume_role_policy_document(trust)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.iam()
        .put_role_policy()
        .role_name(format!("{stack}-worker-task"))
        .policy_name("theirs")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.secrets()
        .create_secret()
        .name(format!("{stack}/rabbitmq"))
        .secret_string("their-password")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.ecs().create_cluster().cluster_name(stack).set_tags(Some(vec![])).send().await.map_err(|e| describe(&e))?;
    emu.ec2()
        .create_launch_template()
        .launch_template_name(stack)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder().instance_type("t3.nano".into()).build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::LaunchTemplate)
                .tags(aws_sdk_ec2::types::Tag::builder().key("team").value("theirs").build())
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;
    // A file system under the stack's creation token, with a mount target and an access point of the names
    // the stack's own would have: found with the file system, but never the stack's.
    let fs = emu
        .efs()
        .create_file_system()
        .creation_token(format!("datavault-{stack}"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let subnets = emu
        .ec2()
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let subnet = subnets.subnets().first().and_then(|s| s.subnet_id()).ok_or("no subnet in the default VPC")?;
    let efs = emu.efs();
    efs.create_mount_target()
        .file_system_id(fs.file_system_id())
        .subnet_id(subnet)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    efs.create_access_point()
        .file_system_id(fs.file_system_id())
        .tags(aws_sdk_efs::types::Tag::builder().key("Name").value(format!("{stack}-rabbitmq")).build().expect("tag"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(vpc)
}

/// Every look-alike, described through the SDK.
async fn snapshot(emu: &Emulator, stack: &str) -> Result<Snapshot, String> {
    let mut shot = Snapshot::new();
    let s3 = emu.s3();
    for bucket in [format!("{stack}-archive"), format!("{stack}-state")] {
        let tags = emu.bucket_tags(&bucket).await.map_err(|e| e.to_string())?;
        let versions = s3.list_object_versions().bucket(&bucket).send().await.map_err(|e| describe(&e))?;
        let policy = s3.get_bucket_policy().bucket(&bucket).send().await.map(|p| p.policy().map(str::to_string));
        let versioning = s3.get_bucket_versioning().bucket(&bucket).send().await.map_err(|e| describe(&e))?;
        shot.insert(
            format!("bucket {bucket}"),
            format!(
                "tags {tags:?} versions {:?} policy {:?} versioning {:?}",
                versions.versions(),
                policy.ok(),
                versioning.status()
            ),
        );
    }
    let repo = format!("{stack}/web");
    let described = emu.ecr().describe_repositories().repository_names(&repo).send().await.map_err(|e| describe(&e))?;
    let images = emu.ecr().list_images().repository_name(&repo).send().await.map_err(|e| describe(&e))?;
    let arn = described.repositories().first().and_then(|r| r.repository_arn()).unwrap_or_default().to_string();
    let tags = emu.repository_tags(&arn).await.map_err(|e| e.to_string())?;
    let lifecycle = emu.ecr().get_lifecycle_policy().repository_name(&repo).send().await.is_ok();
    shot.insert(
        format!("repository {repo}"),
        format!("{:?} images {:?} tags {tags:?} lifecycle {lifecycle}", described.repositories(), images.image_ids()),
    );
    let group = emu.log_group(&format!("/datavault/{stack}")).await.map_err(|e| e.to_string())?;
    shot.insert("log group".into(), format!("{group:?}"));
    let groups = emu
        .ec2()
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values(format!("{stack}-services")).build())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    shot.insert("security group".into(), format!("{:?}", groups.security_groups()));
    let role = emu.iam().get_role().role_name(format!("{stack}-worker-task")).send().await.map_err(|e| describe(&e))?;
    let policies = emu
        .iam()
        .list_role_policies()
        .role_name(format!("{stack}-worker-task"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let attached = emu
        .iam()
        .list_attached_role_policies()
        .role_name(format!("{stack}-worker-task"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    shot.insert(
        "role".into(),
        format!("{:?} inline {:?} attached {:?}", role.role(), policies.policy_names(), attached.attached_policies()),
    );
    let secret = emu
        .secrets()
        .describe_secret()
        .secret_id(format!("{stack}/rabbitmq"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let value = emu
        .secrets()
        .get_secret_value()
        .secret_id(format!("{stack}/rabbitmq"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    shot.insert(
        "secret".into(),
        format!(
            "{:?} {:?} {:?} deleted {:?} value {:?}",
            secret.name(),
            secret.description(),
            secret.tags(),
            secret.deleted_date(),
            value.secret_string()
        ),
    );
    let clusters = emu
        .ecs()
        .describe_clusters()
        .clusters(stack)
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .include(aws_sdk_ecs::types::ClusterField::Settings)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    shot.insert("cluster".into(), format!("{:?}", clusters.clusters()));
    let templates =
        emu.ec2().describe_launch_templates().launch_template_names(stack).send().await.map_err(|e| describe(&e))?;
    shot.insert("launch template".into(), format!("{:?}", templates.launch_templates()));
    let systems = emu
        .efs()
        .describe_file_systems()
        .creation_token(format!("datavault-{stack}"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let ids: Vec<String> = systems.file_systems().iter().map(|f| f.file_system_id().to_string()).collect();
    let (mut mount_targets, mut access_points) = (Vec::new(), Vec::new());
    for id in &ids {
        let out = emu.efs().describe_mount_targets().file_system_id(id).send().await.map_err(|e| describe(&e))?;
        mount_targets.extend(out.mount_targets().iter().map(|t| t.mount_target_id().to_string()));
        let out = emu.efs().describe_access_points().file_system_id(id).send().await.map_err(|e| describe(&e))?;
        access_points
            .extend(out.access_points().iter().map(|p| (p.access_point_id().map(str::to_string), p.tags().to_vec())));
    }
    shot.insert(
        "file system".into(),
        format!(
            "{:?} mount targets {mount_targets:?} access points {access_points:?}",
            systems.file_systems().iter().map(|f| (f.file_system_id(), f.tags(), f.encrypted())).collect::<Vec<_>>()
        ),
    );
    Ok(shot)
}

/// The resources every refusal must name.
fn named(stack: &str) -> Vec<String> {
    [
        format!("S3 bucket {stack}-archive"),
        format!("S3 bucket {stack}-state"),
        format!("ECR repository {stack}/web"),
        format!("CloudWatch log group /datavault/{stack}"),
        format!("security group {stack}-services"),
        format!("IAM role {stack}-worker-task"),
        format!("Secrets Manager secret {stack}/rabbitmq"),
        format!("ECS cluster {stack}"),
        format!("EC2 launch template {stack}"),
        format!("EFS file system with creation token datavault-{stack}"),
    ]
    .to_vec()
}

/// Runs `args`, and checks it made no AWS write, named every look-alike (when `must_name`) and left them
/// all as they were.
fn run_and_check(ctx: &Ctx, tf: &Tf, before: &Snapshot, args: &[&str], must_name: bool) -> String {
    ctx.proxy.clear();
    let out = tf.run(args);
    let combined = out.combined().split_whitespace().collect::<Vec<_>>().join(" ");
    let records = ctx.proxy.records();
    let wrote = writes(&records);
    assert!(wrote.is_empty(), "`terraform {}` wrote to AWS: {wrote:?}\n{out}", args.join(" "));
    if must_name {
        for resource in named(NAME) {
            assert!(combined.contains(&resource), "`terraform {}` does not name {resource}:\n{out}", args.join(" "));
        }
    }
    let after = ctx.block_on(snapshot(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    for (what, was) in before {
        assert_eq!(after.get(what), Some(was), "`terraform {}` changed the look-alike {what}", args.join(" "));
    }
    announce(&format!(
        "robustness/ownership: terraform {}: exit {:?}, {} AWS requests, 0 writes, {} look-alikes unchanged",
        args.join(" "),
        out.code,
        records.len(),
        before.len()
    ));
    combined
}

#[test]
fn look_alikes_stop_plan_and_apply_and_survive_import_and_destroy() {
    let Some(ctx) = setup("ownership-look-alikes") else { return };
    ctx.block_on(make_look_alikes(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    let before = ctx.block_on(snapshot(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    let tf = ctx.workdir("work", &stack_config(NAME, ""));

    let plan = run_and_check(&ctx, &tf, &before, &["plan", "-input=false", "-no-color"], true);
    assert!(plan.contains("Name Taken By A Resource The Stack Does Not Own"), "{plan}");
    assert!(plan.contains(&format!("tagged datavault:stack = \"{OTHER_STACK}\"")), "{plan}");
    run_and_check(&ctx, &tf, &before, &["apply", "-auto-approve", "-input=false", "-no-color"], true);
    let state = tf.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(state.get("values").is_none(), "a refused apply recorded state: {state}");

    // An import takes the name, but none of the look-alikes: it says so, and the destroy that follows
    // leaves them alone.
    let import =
        run_and_check(&ctx, &tf, &before, &["import", "-input=false", "-no-color", crate::support::ADDR, NAME], false);
    assert!(import.contains("Resources Not Owned By The Stack"), "{import}");
    assert!(import.contains(&format!("S3 bucket {NAME}-archive")), "{import}");
    let destroy = run_and_check(&ctx, &tf, &before, &["destroy", "-auto-approve", "-input=false", "-no-color"], false);
    assert!(destroy.contains("Resources Left Alone"), "{destroy}");
    assert!(destroy.contains(&format!("ECR repository {NAME}/web")), "{destroy}");
    ctx.finish();
}

/// Look-alikes that a first look by name would miss: another stack's database secret, scheduled for
/// deletion (restoring it would take it over); an untagged instance profile holding another team's role,
/// where the stack's role does not exist; and an untagged archive bucket with an untagged "claim" parameter
/// naming it (a claim proves ownership only when the stack wrote it).
async fn make_hidden_look_alikes(emu: &Emulator, stack: &str) -> Result<(), String> {
    let secret = format!("{stack}/database");
    emu.secrets()
        .create_secret()
        .name(&secret)
        .secret_string("their-password")
        .tags(aws_sdk_secretsmanager::types::Tag::builder().key("datavault:stack").value(OTHER_STACK).build())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    emu.secrets()
        .delete_secret()
        .secret_id(&secret)
        .recovery_window_in_days(7)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    emu.iam()
        .create_role()
        .role_name("their-role")
        .assume_role_policy_document(trust)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let profile = format!("{stack}-instance");
    emu.iam().create_instance_profile().instance_profile_name(&profile).send().await.map_err(|e| describe(&e))?;
    emu.iam()
        .add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name("their-role")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    create_bucket(emu, &format!("{stack}-archive")).await?;
    emu.ssm()
        .put_parameter()
        .name(format!("/datavault/{stack}/claims/archive_bucket"))
        .value(format!("{stack}-archive"))
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(())
}

/// The hidden look-alikes, described through the SDK.
async fn hidden_snapshot(emu: &Emulator, stack: &str) -> Result<Snapshot, String> {
    let mut shot = Snapshot::new();
    let secret = emu
        .secrets()
        .describe_secret()
        .secret_id(format!("{stack}/database"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    shot.insert("secret".into(), format!("{:?} {:?}", secret.deleted_date(), secret.tags()));
    let profile = emu
        .iam()
        .get_instance_profile()
        .instance_profile_name(format!("{stack}-instance"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let profile = profile.instance_profile().ok_or("no instance profile")?;
    let roles: Vec<&str> = profile.roles().iter().map(|r| r.role_name()).collect();
    shot.insert("instance profile".into(), format!("{roles:?} {:?}", profile.tags()));
    let claim = format!("/datavault/{stack}/claims/archive_bucket");
    let value = emu.ssm().get_parameter().name(&claim).send().await.map_err(|e| describe(&e))?;
    shot.insert("claim".into(), format!("{:?}", value.parameter().and_then(|p| p.value())));
    let tags = emu.bucket_tags(&format!("{stack}-archive")).await.map_err(|e| e.to_string())?;
    shot.insert("bucket".into(), format!("{tags:?}"));
    Ok(shot)
}

#[test]
fn look_alikes_hidden_by_deletion_a_missing_role_or_a_forged_claim_are_seen_too() {
    let Some(ctx) = setup("ownership-hidden") else { return };
    ctx.block_on(make_hidden_look_alikes(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    let before = ctx.block_on(hidden_snapshot(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    for args in
        [&["plan", "-input=false", "-no-color"][..], &["apply", "-auto-approve", "-input=false", "-no-color"][..]]
    {
        ctx.proxy.clear();
        let out = tf.run(args);
        let text = out.combined().split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(!out.success(), "`terraform {}` went ahead:\n{out}", args.join(" "));
        for resource in [
            format!("Secrets Manager secret {NAME}/database"),
            format!("IAM role and instance profile {NAME}-instance"),
            format!("S3 bucket {NAME}-archive"),
        ] {
            assert!(text.contains(&resource), "`terraform {}` does not name {resource}:\n{out}", args.join(" "));
        }
        let wrote = writes(&ctx.proxy.records());
        assert!(wrote.is_empty(), "`terraform {}` wrote to AWS: {wrote:?}", args.join(" "));
        let after = ctx.block_on(hidden_snapshot(&ctx.emulator, NAME)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(after, before, "`terraform {}` changed a hidden look-alike", args.join(" "));
    }
    announce(
        "robustness/ownership: a deleted secret of another stack, an untagged instance profile in use and a forged bucket claim stop plan and apply, unchanged",
    );
    ctx.finish();
}

#[test]
fn taking_over_untagged_resources_is_an_explicit_choice_the_plan_shows() {
    let Some(ctx) = setup("ownership-adopt") else { return };
    // A deployment made by hand: an archive bucket and a log group with the stack's names, untagged.
    ctx.block_on(async {
        create_bucket(&ctx.emulator, &format!("{NAME}-archive")).await?;
        ctx.emulator
            .logs()
            .create_log_group()
            .log_group_name(format!("/datavault/{NAME}"))
            .send()
            .await
            .map_err(|e| describe(&e))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let adopting = stack_config(NAME, "").replace(
        "  wait_for_steady_state = false\n",
        "  wait_for_steady_state = false\n  adopt_untagged_resources = true\n",
    );
    let tf = ctx.workdir("work", &adopting);
    let plan = tf.run(&["plan", "-input=false", "-no-color"]).ok_or_panic();
    let text = plan.combined().split_whitespace().collect::<Vec<_>>().join(" ");
    for resource in [format!("S3 bucket {NAME}-archive"), format!("CloudWatch log group /datavault/{NAME}")] {
        assert!(text.contains("Untagged Resources Will Be Taken Over"), "{plan}");
        assert!(text.contains(&resource), "the plan does not show that {resource} is taken over:\n{plan}");
    }
    tf.apply().ok_or_panic();
    let tags = ctx.block_on(ctx.emulator.bucket_tags(&format!("{NAME}-archive"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tags.get("datavault:stack").map(String::as_str), Some(NAME), "the taken-over bucket is not tagged");
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    tf.destroy().ok_or_panic();
    ctx.finish();
}

#[test]
fn removing_the_load_balancer_leaves_a_look_alike_alone() {
    let Some(ctx) = setup("ownership-unwanted") else { return };
    let tf = ctx.workdir("work", &stack_config(NAME, ""));
    tf.apply().ok_or_panic();
    // Another team's load balancer, target group and group with the names the stack's would have.
    let vpc_and_subnets = ctx.block_on(async {
        let emu = &ctx.emulator;
        let subnets = emu.ec2().describe_subnets().send().await.map_err(|e| describe(&e))?;
        let vpc = subnets.subnets().first().and_then(|s| s.vpc_id()).ok_or("no subnet")?.to_string();
        let ids: Vec<String> = subnets
            .subnets()
            .iter()
            .filter(|s| s.vpc_id() == Some(vpc.as_str()))
            .filter_map(|s| s.subnet_id().map(str::to_string))
            .collect();
        let group = emu
            .ec2()
            .create_security_group()
            .group_name(format!("{NAME}-load-balancer"))
            .description("theirs")
            .vpc_id(&vpc)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        emu.elbv2()
            .create_load_balancer()
            .name(format!("{NAME}-web"))
            .set_subnets(Some(ids[..2].to_vec()))
            .security_groups(group.group_id().unwrap_or_default())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        emu.elbv2()
            .create_target_group()
            .name(format!("{NAME}-web-tg"))
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok::<_, String>(vpc)
    });
    vpc_and_subnets.unwrap_or_else(|e| panic!("{e}"));
    let load_balancers = || {
        ctx.block_on(async {
            let lbs = ctx.emulator.elbv2().describe_load_balancers().send().await.map_err(|e| describe(&e))?;
            let tgs = ctx.emulator.elbv2().describe_target_groups().send().await.map_err(|e| describe(&e))?;
            Ok::<_, String>(format!("{:?} {:?}", lbs.load_balancers(), tgs.target_groups()))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let before = load_balancers();
    assert!(before.contains(&format!("{NAME}-web")), "{before}");

    // Not the stack's, not wanted by it: no drift, nothing to remove.
    tf.expect_empty_plans().unwrap_or_else(|e| panic!("{e}"));
    ctx.proxy.clear();
    tf.apply().ok_or_panic();
    let deletes: Vec<String> =
        ctx.proxy.records().iter().filter(|r| r.is_delete()).map(|r| format!("#{} {}", r.n, r.action)).collect();
    assert!(deletes.is_empty(), "apply deleted something: {deletes:?}");
    assert_eq!(load_balancers(), before, "apply changed the look-alike load balancer");
    let out = tf.destroy().ok_or_panic();
    assert!(
        out.matches(&Regex::new(&format!(r"(?s)Resources Left Alone.*load balancer {NAME}-web")).expect("regex")),
        "destroy does not say it left the look-alike alone:\n{out}"
    );
    assert_eq!(load_balancers(), before, "destroy changed the look-alike load balancer");
    ctx.finish();
}

/// A stack is one Terraform state's. A second configuration of the same name with a state of its own
/// (another workspace, directory or backend) must not take over the deployed stack, as a killed apply's
/// parts are taken over: its plan warns (Terraform plans the new half of a replacement the same way, while
/// the stack it replaces still stands), and its apply is refused, writing nothing; both name the way in,
/// an import. (On AWS, hashicorp/aws's resources meet "already exists" errors here; this stack finds its
/// parts by their tags, so it has to tell a finished stack from an interrupted one itself.)
#[test]
fn a_stack_deployed_from_another_state_is_refused_until_imported() {
    let Some(ctx) = setup("ownership-other-state") else { return };
    let first = ctx.workdir("first", &stack_config(NAME, ""));
    first.apply().ok_or_panic();
    let second = ctx.workdir("second", &stack_config(NAME, "  default_tags = { team = \"second\" }\n"));

    let said = |out: &datavault_acceptance_tests::CommandOutput, severity: &str| {
        let text = out.combined().split_whitespace().collect::<Vec<_>>().join(" ");
        text.contains(&format!("{severity}: Stack Already Deployed"))
            && text.contains(&format!("terraform import <address> {NAME}"))
    };
    ctx.proxy.clear();
    let plan = second.run(&["plan", "-input=false", "-no-color"]).ok_or_panic();
    assert!(said(&plan, "Warning"), "the plan does not warn of the deployed stack:\n{plan}");
    assert!(writes(&ctx.proxy.records()).is_empty(), "the plan wrote to AWS");
    ctx.proxy.clear();
    let apply = second.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(!apply.success() && said(&apply, "Error"), "the apply was not refused:\n{apply}");
    assert_eq!(apply.combined().matches("Error: ").count(), 1, "one refusal:\n{apply}");
    let wrote = writes(&ctx.proxy.records());
    assert!(wrote.is_empty(), "the refused apply wrote to AWS: {wrote:?}");
    let state = second.state().unwrap_or_else(|e| panic!("{e}"));
    assert!(state.get("values").is_none(), "a refused apply recorded state: {state}");
    first.expect_empty_plans().unwrap_or_else(|e| panic!("the refusals changed the first state's stack: {e}"));

    // The way in the refusal names: once imported, the second configuration manages the stack (its plan
    // is the tag it adds, not a new stack).
    second.run(&["import", "-input=false", "-no-color", crate::support::ADDR, NAME]).ok_or_panic();
    let plan = second.run(&["plan", "-input=false", "-no-color"]);
    let plan = plan.ok_or_panic().combined();
    assert!(plan.contains("1 to change") && plan.contains("\"team\""), "{plan}");
    announce(
        "robustness/ownership: another state's stack of the same name: plan warns, apply refused, 0 writes; import works",
    );
    second.run(&["state", "rm", crate::support::ADDR]).ok_or_panic();
    first.destroy().ok_or_panic();
    ctx.finish();
}
