//! EFS helpers against the local emulator: file system create/adopt, mount targets in the default VPC's
//! subnets (one per zone), access points with root directory and POSIX user, and deletion in order.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use terraform_provider_datavault::aws::STACK_TAG;
use terraform_provider_datavault::aws::efs::{self, AccessPointSpec};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The default VPC's id and its default subnets, one per Availability Zone, sorted by zone.
async fn default_subnets(ec2: &aws_sdk_ec2::Client) -> (String, Vec<String>) {
    let out = ec2
        .describe_subnets()
        .filters(Filter::builder().name("default-for-az").values("true").build())
        .send()
        .await
        .expect("DescribeSubnets");
    let mut subnets: Vec<_> = out
        .subnets()
        .iter()
        .map(|s| {
            (
                s.availability_zone().unwrap().to_string(),
                s.subnet_id().unwrap().to_string(),
                s.vpc_id().unwrap().to_string(),
            )
        })
        .collect();
    subnets.sort();
    subnets.dedup_by(|a, b| a.0 == b.0);
    assert!(subnets.len() >= 3, "the emulator should have three default subnets: {subnets:?}");
    (subnets[0].2.clone(), subnets.into_iter().map(|s| s.1).collect())
}

async fn security_group(ec2: &aws_sdk_ec2::Client, vpc_id: &str, name: &str) -> String {
    common::create_security_group(ec2, vpc_id, name, "datavault efs test").await
}

fn access_point(name: &str, root: &str, uid: i64) -> AccessPointSpec {
    AccessPointSpec { name: name.into(), root_path: root.into(), uid, gid: uid, permissions: "0750".into() }
}

#[tokio::test]
async fn file_system_mount_targets_and_access_points_converge_and_delete_in_order() {
    let Some(aws) = common::emulator().await else { return };
    let (client, ec2) = (&aws.efs, &aws.ec2);
    let token = common::unique("dv-efs");
    let tags =
        BTreeMap::from([(STACK_TAG.to_string(), token.clone()), ("Application".to_string(), "DataVault".to_string())]);
    let (vpc, subnets) = default_subnets(ec2).await;
    let sg_old = security_group(ec2, &vpc, &format!("{token}-old")).await;
    let sg = security_group(ec2, &vpc, &format!("{token}-fs")).await;

    // File system: created encrypted with backups, found again, adopted on the second ensure.
    assert!(efs::find_file_system(client, &token).await.unwrap().is_none());
    let fs = efs::ensure_file_system(client, &token, None, &tags, TIMEOUT).await.unwrap();
    assert!(fs.id.starts_with("fs-") && fs.arn.contains(&fs.id), "{fs:?}");
    let seen = efs::find_file_system(client, &token).await.unwrap().expect("file system exists");
    assert_eq!((seen.id.as_str(), seen.encrypted, seen.life_cycle_state.as_str()), (fs.id.as_str(), true, "available"));
    assert!(seen.drift.is_empty(), "{:?}", seen.drift);
    assert_eq!(seen.tags.get(STACK_TAG), Some(&token));
    assert_eq!(efs::ensure_file_system(client, &token, None, &tags, TIMEOUT).await.unwrap(), fs);

    // Out-of-band: a tag removed is restored by the next ensure.
    client.untag_resource().resource_id(&fs.id).tag_keys("Application").send().await.unwrap();
    assert!(!efs::find_file_system(client, &token).await.unwrap().unwrap().tags.contains_key("Application"));
    efs::ensure_file_system(client, &token, None, &tags, TIMEOUT).await.unwrap();
    assert_eq!(
        efs::find_file_system(client, &token).await.unwrap().unwrap().tags.get("Application").map(String::as_str),
        Some("DataVault")
    );

    // Mount targets: two zones with the old group, then all three with the new group (the existing ones
    // are kept and re-secured), then the first zone dropped.
    let first_two = efs::ensure_mount_targets(client, &fs.id, &subnets[..2], &sg_old, TIMEOUT).await.unwrap();
    assert_eq!(first_two.iter().map(|m| m.subnet_id.as_str()).collect::<Vec<_>>(), [&subnets[0], &subnets[1]]);
    let all = efs::ensure_mount_targets(client, &fs.id, &subnets, &sg, TIMEOUT).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[..2], first_two[..], "existing mount targets are adopted, not replaced");
    let observed = efs::describe_mount_targets(client, &fs.id).await.unwrap();
    assert_eq!(observed.len(), 3);
    for mt in &observed {
        assert_eq!((mt.state.as_str(), mt.security_groups.clone()), ("available", vec![sg.clone()]), "{mt:?}");
    }
    // Again: a no-op returning the same ids.
    assert_eq!(efs::ensure_mount_targets(client, &fs.id, &subnets, &sg, TIMEOUT).await.unwrap(), all);
    // Out-of-band: a security group swapped back is repaired.
    client
        .modify_mount_target_security_groups()
        .mount_target_id(&all[2].id)
        .security_groups(&sg_old)
        .send()
        .await
        .unwrap();
    efs::ensure_mount_targets(client, &fs.id, &subnets, &sg, TIMEOUT).await.unwrap();
    let repaired = efs::describe_mount_targets(client, &fs.id).await.unwrap();
    assert!(repaired.iter().all(|mt| mt.security_groups == [sg.clone()]), "{repaired:?}");
    let last_two = efs::ensure_mount_targets(client, &fs.id, &subnets[1..], &sg, TIMEOUT).await.unwrap();
    assert_eq!(last_two[..], all[1..]);
    let observed = efs::describe_mount_targets(client, &fs.id).await.unwrap();
    assert_eq!(observed.iter().map(|m| m.subnet_id.as_str()).collect::<Vec<_>>().len(), 2);
    assert!(observed.iter().all(|m| m.subnet_id != subnets[0]), "{observed:?}");

    // Access points: root directory, POSIX user and creation info as specified; adopted by name.
    let rabbit = access_point(&format!("{token}-rabbitmq"), "/rabbitmq", 100);
    let working = access_point(&format!("{token}-working"), "/tmp/datavault", 1000);
    let rabbit_ap = efs::ensure_access_point(client, &fs.id, &rabbit, &tags).await.unwrap();
    let working_ap = efs::ensure_access_point(client, &fs.id, &working, &tags).await.unwrap();
    assert_ne!(rabbit_ap.id, working_ap.id);
    let seen = efs::describe_access_point(client, &fs.id, &working).await.unwrap().expect("access point exists");
    assert_eq!(
        (seen.id.as_str(), seen.root_path.as_str(), seen.posix_user),
        (working_ap.id.as_str(), "/tmp/datavault", Some((1000, 1000)))
    );
    assert_eq!(seen.creation_info, Some((1000, 1000, "0750".to_string())));
    assert!(seen.drift.is_empty(), "{:?}", seen.drift);
    assert_eq!(efs::ensure_access_point(client, &fs.id, &rabbit, &tags).await.unwrap(), rabbit_ap);
    let tagged = client.list_tags_for_resource().resource_id(&rabbit_ap.id).send().await.unwrap();
    assert!(tagged.tags().iter().any(|t| t.key() == "Name" && t.value() == rabbit.name));
    assert!(tagged.tags().iter().any(|t| t.key() == STACK_TAG && t.value() == token));

    // A changed POSIX user: the old access point shows drift; ensure replaces it (immutable).
    let rabbit_999 = AccessPointSpec { uid: 999, gid: 999, ..rabbit.clone() };
    let drifted = efs::describe_access_point(client, &fs.id, &rabbit_999).await.unwrap().unwrap();
    assert!(drifted.drift.iter().any(|d| d.contains("POSIX user is 100:100")), "{:?}", drifted.drift);
    let replaced = efs::ensure_access_point(client, &fs.id, &rabbit_999, &tags).await.unwrap();
    assert_ne!(replaced.id, rabbit_ap.id);
    let seen = efs::describe_access_point(client, &fs.id, &rabbit_999).await.unwrap().unwrap();
    assert_eq!((seen.id, seen.posix_user), (replaced.id.clone(), Some((999, 999))));
    let listed = client.describe_access_points().file_system_id(&fs.id).send().await.unwrap();
    let ids: Vec<_> = listed.access_points().iter().filter_map(|a| a.access_point_id()).collect();
    assert!(!ids.contains(&rabbit_ap.id.as_str()) && ids.contains(&replaced.id.as_str()), "{ids:?}");

    // Delete: access points and mount targets first, then the file system; again is a no-op.
    efs::delete_access_point(client, &working_ap.id).await.unwrap();
    efs::delete_access_point(client, &working_ap.id).await.unwrap();
    efs::delete_file_system(client, &fs.id, TIMEOUT).await.unwrap();
    assert!(efs::find_file_system(client, &token).await.unwrap().is_none());
    assert!(efs::describe_mount_targets(client, &fs.id).await.unwrap().is_empty());
    let left = client.describe_access_points().file_system_id(&fs.id).send().await.unwrap();
    assert!(left.access_points().is_empty(), "access points outlived the file system: {left:?}");
    efs::delete_file_system(client, &fs.id, TIMEOUT).await.unwrap();
    efs::delete_mount_targets(client, &fs.id, TIMEOUT).await.unwrap();

    for group in [sg_old, sg] {
        ec2.delete_security_group().group_id(group).send().await.expect("DeleteSecurityGroup");
    }
}

#[tokio::test]
async fn a_repeated_creation_token_is_adopted_not_duplicated() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.efs;
    let token = common::unique("dv-efs-token");
    // A first run created the file system and crashed before recording it.
    let first = client.create_file_system().creation_token(&token).encrypted(true).backup(true).send().await.unwrap();
    let fs = efs::ensure_file_system(client, &token, None, &BTreeMap::new(), TIMEOUT).await.unwrap();
    assert_eq!(fs.id, first.file_system_id());
    let all = client.describe_file_systems().creation_token(&token).send().await.unwrap();
    assert_eq!(all.file_systems().len(), 1);
    // moto answers a repeated token with FileSystemAlreadyExists, as AWS does for a completed creation:
    let again = client.create_file_system().creation_token(&token).send().await.unwrap_err();
    assert_eq!(aws_sdk_efs::error::ProvideErrorMetadata::code(&again), Some("FileSystemAlreadyExists"));
    efs::delete_file_system(client, &fs.id, TIMEOUT).await.unwrap();
    assert!(efs::find_file_system(client, &token).await.unwrap().is_none());
}

#[tokio::test]
async fn mount_targets_reject_two_subnets_in_one_zone() {
    let Some(aws) = common::emulator().await else { return };
    let (client, ec2) = (&aws.efs, &aws.ec2);
    let token = common::unique("dv-efs-az");
    let (vpc, subnets) = default_subnets(ec2).await;
    let sg = security_group(ec2, &vpc, &token).await;
    let zone = ec2.describe_subnets().subnet_ids(&subnets[0]).send().await.unwrap().subnets()[0]
        .availability_zone()
        .unwrap()
        .to_string();
    let extra = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("172.31.200.0/24")
        .availability_zone(&zone)
        .send()
        .await
        .expect("CreateSubnet")
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    let fs = efs::ensure_file_system(client, &token, None, &BTreeMap::new(), TIMEOUT).await.unwrap();
    let err = efs::ensure_mount_targets(client, &fs.id, &[subnets[0].clone(), extra.clone()], &sg, TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.message.contains(&extra) && err.message.contains("one subnet per zone"), "{err}");
    efs::delete_file_system(client, &fs.id, TIMEOUT).await.unwrap();
    ec2.delete_subnet().subnet_id(extra).send().await.expect("DeleteSubnet");
    ec2.delete_security_group().group_id(sg).send().await.expect("DeleteSecurityGroup");
}
