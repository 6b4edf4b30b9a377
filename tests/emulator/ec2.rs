//! The EC2 module against the local emulator: network lookup, security groups (create, adopt, converge,
//! teardown of groups that reference each other, the one lookup by name across VPCs) and launch templates
//! (create, adopt, new versions).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use terraform_provider_datavault::aws::ec2::{self, IngressRule, LaunchTemplateSpec, RuleSource};
use terraform_provider_datavault::aws::{PART_TAG, STACK_TAG};

/// The launch template found by name and judged against `spec`, as a refresh does.
async fn describe_launch_template(
    client: &aws_sdk_ec2::Client,
    name: &str,
    spec: &LaunchTemplateSpec,
) -> Option<common::Judged<ec2::LaunchTemplateObservation>> {
    let found = ec2::describe_launch_template(client, name).await.unwrap()?;
    Some(common::Judged { drift: found.drift(spec), found })
}

fn tags(stack: &str, part: &str) -> BTreeMap<String, String> {
    [(STACK_TAG.to_string(), stack.to_string()), (PART_TAG.to_string(), part.to_string())].into()
}

/// An AMI the emulator knows, so instances launched from the template have a real image.
async fn some_image(client: &aws_sdk_ec2::Client) -> String {
    let out = client.describe_images().owners("amazon").send().await.expect("DescribeImages");
    out.images().iter().find_map(|i| i.image_id()).expect("the emulator has public images").to_string()
}

#[tokio::test]
async fn default_vpc_and_subnets_are_found() {
    let Some(aws) = common::emulator().await else { return };
    let vpc = ec2::default_vpc(&aws.ec2).await.unwrap().expect("the emulator has a default VPC");
    assert!(vpc.is_default && !vpc.cidr.is_empty(), "{vpc:?}");
    assert_eq!(ec2::vpc(&aws.ec2, &vpc.id).await.unwrap(), Some(vpc.clone()));
    assert_eq!(ec2::vpc(&aws.ec2, "vpc-0000000000000dead").await.unwrap(), None);

    let subnets = ec2::subnets_in_vpc(&aws.ec2, &vpc.id).await.unwrap();
    assert!(subnets.len() >= 2, "{subnets:?}");
    assert!(subnets.iter().all(|s| s.vpc_id == vpc.id && !s.availability_zone.is_empty()));
    let mut sorted = subnets.clone();
    sorted.sort_by(|a, b| (&a.availability_zone, &a.id).cmp(&(&b.availability_zone, &b.id)));
    assert_eq!(subnets, sorted, "sorted by zone, then id");
    assert_eq!(ec2::one_subnet_per_zone(&subnets).len(), subnets.len(), "default subnets: one per zone");
    assert_eq!(ec2::vpc_of_subnets(&subnets).unwrap(), vpc.id);

    let ids: Vec<String> = subnets.iter().rev().map(|s| s.id.clone()).collect();
    let by_id = ec2::subnets(&aws.ec2, &ids).await.unwrap();
    assert_eq!(by_id.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), ids, "in the order asked for");
    let err = ec2::subnets(&aws.ec2, &[ids[0].clone(), "subnet-0000000000000dead".to_string()]).await.unwrap_err();
    assert!(err.to_string().contains("subnet-0000000000000dead"), "{err}");
    assert!(!err.to_string().contains(&ids[0]), "only the missing id is named: {err}");

    let missing = ec2::subnets_in_vpc(&aws.ec2, "vpc-0000000000000dead").await.unwrap_err();
    assert!(missing.to_string().contains("vpc-0000000000000dead"), "{missing}");
}

#[tokio::test]
async fn security_groups_converge_and_tear_down() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.ec2;
    let vpc = ec2::default_vpc(client).await.unwrap().unwrap();
    let stack = common::unique("dv-sg");
    let (app_name, db_name) = (format!("{stack}-instances"), format!("{stack}-database"));

    // Create, then adopt.
    let app = ec2::ensure_security_group(client, &vpc.id, &app_name, "DataVault instances", &tags(&stack, "instances"))
        .await
        .unwrap();
    let db = ec2::ensure_security_group(client, &vpc.id, &db_name, "DataVault database", &tags(&stack, "database"))
        .await
        .unwrap();
    let again =
        ec2::ensure_security_group(client, &vpc.id, &app_name, "DataVault instances", &tags(&stack, "instances"))
            .await
            .unwrap();
    assert_eq!(again, app, "ensure adopts the existing group");

    // Rules that make the two groups reference each other.
    let db_rules = vec![IngressRule::tcp(3306, RuleSource::Group(app.clone()), "MySQL from the instances")];
    let app_rules = vec![IngressRule::tcp(8080, RuleSource::Group(db.clone()), "test back-reference")];
    ec2::set_ingress(client, &db, &db_rules).await.unwrap();
    ec2::set_egress_all(client, &db, false).await.unwrap();
    ec2::set_ingress(client, &app, &app_rules).await.unwrap();
    ec2::set_egress_all(client, &app, true).await.unwrap();
    ec2::set_ingress(client, &db, &db_rules).await.unwrap(); // idempotent

    let seen = ec2::describe_security_group(client, &vpc.id, &db_name).await.unwrap().expect("database group");
    assert_eq!(seen.id, db);
    assert!(ec2::ingress_drift(&db_rules, &seen.ingress).is_empty(), "{:?}", seen.ingress);
    assert_eq!(seen.ingress[0].description, "MySQL from the instances");
    assert!(!seen.egress_all && seen.egress.is_empty(), "database group has no egress: {:?}", seen.egress);
    assert!(ec2::egress_drift(false, &seen.egress).is_empty());
    assert_eq!(seen.tags.get(STACK_TAG), Some(&stack));
    let app_seen = ec2::describe_security_group(client, &vpc.id, &app_name).await.unwrap().unwrap();
    assert!(app_seen.egress_all, "instance group keeps allow-all egress");

    // Someone opens SSH to the world out of band: reported, then removed.
    client
        .authorize_security_group_ingress()
        .group_id(&db)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let seen = ec2::describe_security_group(client, &vpc.id, &db_name).await.unwrap().unwrap();
    assert_eq!(ec2::ingress_drift(&db_rules, &seen.ingress), ["extra rule tcp 22 from 0.0.0.0/0"]);
    ec2::set_ingress(client, &db, &db_rules).await.unwrap();
    let seen = ec2::describe_security_group(client, &vpc.id, &db_name).await.unwrap().unwrap();
    assert!(ec2::ingress_drift(&db_rules, &seen.ingress).is_empty(), "{:?}", seen.ingress);

    // A changed description is updated in place, without revoking the rule.
    let office = |description: &str| IngressRule::tcp(3306, RuleSource::Cidr("10.1.0.0/16".into()), description);
    let with_office = |description: &str| [db_rules.clone(), vec![office(description)]].concat();
    ec2::set_ingress(client, &db, &with_office("office")).await.unwrap();
    ec2::set_ingress(client, &db, &with_office("office VPN")).await.unwrap();
    let seen = ec2::describe_security_group(client, &vpc.id, &db_name).await.unwrap().unwrap();
    assert!(ec2::ingress_drift(&with_office("x"), &seen.ingress).is_empty(), "{:?}", seen.ingress);
    assert!(seen.ingress.contains(&office("office VPN")), "{:?}", seen.ingress);
    ec2::set_ingress(client, &db, &db_rules).await.unwrap();

    // Teardown: drop the cross references, then delete both; deleting again is fine.
    ec2::revoke_all_ingress(client, &app).await.unwrap();
    ec2::revoke_all_ingress(client, &db).await.unwrap();
    for name in [&app_name, &db_name] {
        assert!(ec2::describe_security_group(client, &vpc.id, name).await.unwrap().unwrap().ingress.is_empty());
    }
    for id in [&app, &db] {
        ec2::delete_security_group(client, id, Duration::from_secs(30)).await.unwrap();
    }
    assert_eq!(ec2::describe_security_group(client, &vpc.id, &db_name).await.unwrap(), None);
    ec2::delete_security_group(client, &db, Duration::from_secs(30)).await.unwrap();
    ec2::revoke_all_ingress(client, &db).await.unwrap();
}

#[tokio::test]
async fn groups_named_alike_in_two_vpcs_are_told_apart_by_their_vpc() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.ec2;
    let default_vpc = ec2::default_vpc(client).await.unwrap().unwrap();
    let other = client.create_vpc().cidr_block("10.77.0.0/16").send().await.expect("CreateVpc");
    let other_vpc = other.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let stack = common::unique("dv-sgx");
    let name = format!("{stack}-services");
    let ours =
        ec2::ensure_security_group(client, &default_vpc.id, &name, "DataVault services", &tags(&stack, "services"))
            .await
            .unwrap();
    // Another team's group of the same name in another VPC (names are unique only within a VPC).
    let theirs = common::create_security_group(client, &other_vpc, &name, "another team's").await;

    let found = ec2::security_groups_named(client, std::slice::from_ref(&name)).await.unwrap();
    let mut seen: Vec<(String, String, String)> =
        found.iter().map(|g| (g.name.clone(), g.vpc_id.clone(), g.id.clone())).collect();
    seen.sort();
    let mut expected =
        vec![(name.clone(), default_vpc.id.clone(), ours.clone()), (name.clone(), other_vpc.clone(), theirs.clone())];
    expected.sort();
    assert_eq!(seen, expected, "one request finds the name in every VPC, each group with its own VPC");

    for id in [&ours, &theirs] {
        ec2::delete_security_group(client, id, Duration::from_secs(30)).await.unwrap();
    }
    client.delete_vpc().vpc_id(&other_vpc).send().await.expect("DeleteVpc");
}

#[tokio::test]
async fn launch_templates_create_adopt_and_version() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.ec2;
    let vpc = ec2::default_vpc(client).await.unwrap().unwrap();
    let stack = common::unique("dv-lt");
    let sg = ec2::ensure_security_group(client, &vpc.id, &stack, "DataVault instances", &tags(&stack, "instances"))
        .await
        .unwrap();
    let spec = LaunchTemplateSpec {
        image_id: some_image(client).await,
        instance_type: "t3.medium".into(),
        instance_profile_arn: "arn:aws:iam::123456789012:instance-profile/datavault-test".into(),
        security_group_ids: vec![sg.clone()],
        user_data: ec2::ecs_user_data(&stack),
        kms_key: None,
        tags: tags(&stack, "launch-template"),
    };

    let created = ec2::ensure_launch_template(client, &stack, &spec).await.unwrap();
    assert_eq!((created.name.as_str(), created.version), (stack.as_str(), 1));
    let adopted = ec2::ensure_launch_template(client, &stack, &spec).await.unwrap();
    assert_eq!(adopted, created, "an unchanged spec keeps the version");

    let seen = describe_launch_template(client, &stack, &spec).await.expect("template");
    assert_eq!(seen.id, created.id);
    assert_eq!((seen.default_version, seen.latest_version), (1, 1));
    assert!(seen.drift.is_empty(), "{:?}", seen.drift);
    assert!(seen.data.imdsv2_required && seen.data.detailed_monitoring);
    assert!(seen.data.root_volume.as_ref().is_some_and(|r| r.encrypted));
    assert_eq!(seen.data.user_data, spec.user_data);
    assert_eq!(seen.tags.get(STACK_TAG), Some(&stack));

    // A changed spec becomes version 2, made the default.
    let bigger = LaunchTemplateSpec { instance_type: "t3.large".into(), ..spec.clone() };
    let v2 = ec2::ensure_launch_template(client, &stack, &bigger).await.unwrap();
    assert_eq!((v2.id.as_str(), v2.version), (created.id.as_str(), 2));
    let seen = describe_launch_template(client, &stack, &bigger).await.unwrap();
    assert_eq!((seen.default_version, seen.latest_version), (2, 2));
    assert!(seen.drift.is_empty(), "{:?}", seen.drift);
    let against_old = describe_launch_template(client, &stack, &spec).await.unwrap();
    assert_eq!(against_old.drift, ["instance type is t3.large, expected t3.medium"]);
    assert_eq!(ec2::ensure_launch_template(client, &stack, &bigger).await.unwrap(), v2, "no version 3");

    // Someone sets the default back to version 1: reported, and ensure restores version 2 without a new one.
    client.modify_launch_template().launch_template_id(&v2.id).default_version("1").send().await.unwrap();
    let seen = describe_launch_template(client, &stack, &bigger).await.unwrap();
    assert_eq!(seen.default_version, 1);
    assert_eq!(seen.drift, ["instance type is t3.medium, expected t3.large"]);
    assert_eq!(ec2::ensure_launch_template(client, &stack, &bigger).await.unwrap(), v2);
    let seen = describe_launch_template(client, &stack, &bigger).await.unwrap();
    assert_eq!((seen.default_version, seen.latest_version), (2, 2));

    ec2::delete_launch_template(client, &stack).await.unwrap();
    assert_eq!(describe_launch_template(client, &stack, &spec).await, None);
    ec2::delete_launch_template(client, &stack).await.unwrap();
    ec2::delete_security_group(client, &sg, Duration::from_secs(30)).await.unwrap();
}
