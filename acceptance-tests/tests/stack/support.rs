//! Shared pieces of the `datavault_stack` tests: configuration builders and checks that look at each
//! part of a stack in the emulator the way an auditor would.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::IpPermission;
use aws_sdk_s3::types::{BucketVersioningStatus, ObjectOwnership};
use datavault_acceptance_tests::emulator::describe;
use datavault_acceptance_tests::{CheckError, CheckResult, Emulator, STACK_TAG, ensure, ensure_eq};
use serde_json::Value;

/// The resource address every test uses.
pub const ADDR: &str = "datavault_stack.main";
/// The ECR repositories a stack owns, by their key in `ecr_repository_urls`.
pub const REPOSITORIES: [&str; 3] = ["web", "broker", "worker"];
/// A replacement, whichever order Terraform chooses.
pub const REPLACE: &[&[&str]] = &[&["delete", "create"], &["create", "delete"]];

/// The `database` attributes most tests use against the emulator: no deletion protection (it defaults to
/// true and, by design, blocks destroy) and no final snapshot (fast, and nothing retained).
pub const EPHEMERAL_DATABASE: &str = "deletion_protection = false, skip_final_snapshot = true";

/// `resource "datavault_stack" "main"` named `name`, with extra argument lines, set up for the emulator:
/// see [`stack_config_with`], with [`EPHEMERAL_DATABASE`].
pub fn stack_config(name: &str, extra: &str) -> String {
    stack_config_with(name, EPHEMERAL_DATABASE, extra)
}

/// `resource "datavault_stack" "main"` named `name` with `database = { <database> }` (comma-separated
/// attributes; against the emulator include `deletion_protection = false`, or destroy is refused) and
/// extra argument lines. It never waits for a steady state: the emulator never starts tasks.
pub fn stack_config_with(name: &str, database: &str, extra: &str) -> String {
    format!(
        "resource \"datavault_stack\" \"main\" {{\n  name = \"{name}\"\n  wait_for_steady_state = false\n  database = {{ {database} }}\n{extra}}}\n"
    )
}

/// The region the provider and the checks work in (what `make acceptance` exports).
pub fn region() -> String {
    std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| "eu-west-2".into())
}

/// Checks a tag set carries the stack tag, plus `extra` tags.
pub fn check_tags(what: &str, tags: &BTreeMap<String, String>, stack: &str, extra: &[(&str, &str)]) -> CheckResult {
    ensure_eq!(tags.get(STACK_TAG).map(String::as_str), Some(stack), "{what} tag {STACK_TAG}");
    for (key, value) in extra {
        ensure_eq!(tags.get(*key).map(String::as_str), Some(*value), "{what} tag {key}");
    }
    Ok(())
}

/// A bucket with versioning, a full public access block, default encryption, enforced bucket ownership,
/// a TLS-only policy and the stack tag.
pub async fn check_bucket(emu: &Emulator, bucket: &str, stack: &str, extra_tags: &[(&str, &str)]) -> CheckResult {
    let s3 = emu.s3();
    let versioning = s3.get_bucket_versioning().bucket(bucket).send().await?;
    ensure_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled), "{bucket} versioning");

    let pab = s3.get_public_access_block().bucket(bucket).send().await?;
    let pab = pab.public_access_block_configuration().ok_or(format!("{bucket} has no public access block"))?;
    ensure_eq!(
        [pab.block_public_acls(), pab.ignore_public_acls(), pab.block_public_policy(), pab.restrict_public_buckets()],
        [Some(true); 4],
        "{bucket} public access block (acls, ignore acls, policy, restrict)"
    );

    let encryption = s3.get_bucket_encryption().bucket(bucket).send().await?;
    let rules = encryption.server_side_encryption_configuration().map(|c| c.rules()).unwrap_or_default();
    ensure!(
        rules.iter().any(|r| r.apply_server_side_encryption_by_default().is_some()),
        "{bucket} has no default encryption rule: {rules:?}"
    );

    let ownership = s3.get_bucket_ownership_controls().bucket(bucket).send().await?;
    let owners: Vec<&ObjectOwnership> = ownership
        .ownership_controls()
        .map(|c| c.rules().iter().map(|r| r.object_ownership()).collect())
        .unwrap_or_default();
    ensure_eq!(owners, vec![&ObjectOwnership::BucketOwnerEnforced], "{bucket} ownership controls");

    let policy = s3.get_bucket_policy().bucket(bucket).send().await?;
    let policy = policy.policy().unwrap_or_default();
    ensure!(policy.contains("aws:SecureTransport"), "{bucket} policy does not deny plain HTTP: {policy}");
    let parsed: Value = serde_json::from_str(policy)?;
    ensure!(
        parsed["Statement"].as_array().is_some_and(|s| s.iter().any(|st| st["Effect"] == "Deny")),
        "{bucket} policy has no Deny statement: {policy}"
    );

    check_tags(&format!("bucket {bucket}"), &emu.bucket_tags(bucket).await?, stack, extra_tags)
}

/// The archive's server access logs (FSBP S3.9) go to the stack's log bucket under `s3/<archive>/`, which
/// only the S3 logging service may write to, for the archive bucket of this account only; the logs there
/// expire with the log groups, and the log bucket uses SSE-S3, the only encryption S3 delivers logs into.
/// The state bucket, which outlives the stack, does not log there.
pub async fn check_access_logs(emu: &Emulator, stack: &str, retention: i32) -> CheckResult {
    let s3 = emu.s3();
    let (archive, logs) = (format!("{stack}-archive"), format!("{stack}-access-logs"));
    let prefix = format!("s3/{archive}/");
    let logging = s3.get_bucket_logging().bucket(&archive).send().await?;
    let target = logging.logging_enabled().map(|l| (l.target_bucket().to_string(), l.target_prefix().to_string()));
    ensure_eq!(target, Some((logs.clone(), prefix.clone())), "{archive} server access logging");
    let state = s3.get_bucket_logging().bucket(format!("{stack}-state")).send().await?;
    ensure!(state.logging_enabled().is_none(), "the state bucket logs into a bucket that goes with the stack");

    let policy: Value =
        serde_json::from_str(s3.get_bucket_policy().bucket(&logs).send().await?.policy().unwrap_or("{}"))?;
    let writers: Vec<&Value> =
        policy["Statement"].as_array().into_iter().flatten().filter(|s| s["Effect"] == "Allow").collect();
    // Two writers: the S3 logging service, and the region's load balancer log delivery (checked with the
    // load balancer), which may write this account's load balancer logs under `elb/` only.
    ensure_eq!(writers.len(), 2, "{logs}: statements allowing anything: {policy}");
    let writer = writers
        .iter()
        .find(|s| s["Principal"]["Service"] == "logging.s3.amazonaws.com")
        .ok_or(format!("{logs}: the S3 logging service may not write: {policy}"))?;
    let elb = writers.iter().find(|s| *s != writer).expect("two writers");
    ensure_eq!(elb["Action"], "s3:PutObject", "{logs}: what load balancer log delivery may do");
    ensure!(
        elb["Resource"].as_str().is_some_and(|r| r.starts_with(&format!("arn:aws:s3:::{logs}/elb/AWSLogs/"))),
        "{logs}: load balancer log delivery may write outside elb/AWSLogs/: {elb}"
    );
    ensure_eq!(writer["Principal"]["Service"], "logging.s3.amazonaws.com", "{logs}: who may write");
    ensure_eq!(writer["Action"], "s3:PutObject", "{logs}: what the logging service may do");
    ensure_eq!(writer["Resource"], format!("arn:aws:s3:::{logs}/{prefix}*"), "{logs}: where it may write");
    ensure_eq!(
        writer["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:s3:::{archive}"),
        "{logs}: on behalf of which bucket"
    );
    ensure!(
        writer["Condition"]["StringEquals"]["aws:SourceAccount"].as_str().is_some_and(|a| a.len() == 12),
        "{logs}: the policy does not pin the source account: {writer}"
    );

    let encryption = s3.get_bucket_encryption().bucket(&logs).send().await?;
    let algorithms: Vec<String> = encryption
        .server_side_encryption_configuration()
        .map(|c| c.rules())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_string())
        .collect();
    ensure_eq!(algorithms, vec!["AES256".to_string()], "{logs} default encryption");

    let lifecycle = s3.get_bucket_lifecycle_configuration().bucket(&logs).send().await?;
    let expiry: Vec<Option<i32>> = lifecycle.rules().iter().map(|r| r.expiration().and_then(|e| e.days())).collect();
    ensure_eq!(expiry, vec![Some(retention)], "{logs}: days before logs expire");
    Ok(())
}

/// The three repositories, each scanning on push, with a lifecycle policy for untagged images and the
/// stack tag.
pub async fn check_repositories(emu: &Emulator, stack: &str, extra_tags: &[(&str, &str)]) -> CheckResult {
    for key in REPOSITORIES {
        let name = format!("{stack}/{key}");
        let out = emu
            .ecr()
            .describe_repositories()
            .repository_names(&name)
            .send()
            .await
            .map_err(|e| format!("DescribeRepositories {name}: {}", describe(&e)))?;
        let repo = out.repositories().first().ok_or(format!("repository {name} does not exist"))?;
        ensure!(
            repo.image_scanning_configuration().is_some_and(|c| c.scan_on_push()),
            "repository {name} does not scan on push: {:?}",
            repo.image_scanning_configuration()
        );
        let lifecycle = emu
            .ecr()
            .get_lifecycle_policy()
            .repository_name(&name)
            .send()
            .await
            .map_err(|e| format!("GetLifecyclePolicy {name}: {}", describe(&e)))?;
        let text = lifecycle.lifecycle_policy_text().unwrap_or_default();
        ensure!(
            text.to_ascii_lowercase().contains("untagged"),
            "repository {name} lifecycle policy does not expire untagged images: {text}"
        );
        let arn = repo.repository_arn().ok_or(format!("repository {name} has no ARN"))?;
        check_tags(&format!("repository {name}"), &emu.repository_tags(arn).await?, stack, extra_tags)?;
    }
    Ok(())
}

/// The stack's log group with `retention` days and the stack tag.
pub async fn check_log_group(emu: &Emulator, stack: &str, retention: i32, extra_tags: &[(&str, &str)]) -> CheckResult {
    let name = format!("/datavault/{stack}");
    let group = emu.log_group(&name).await?.ok_or(format!("log group {name} does not exist"))?;
    ensure_eq!(group.retention_in_days(), Some(retention), "log group {name} retention");
    let arn = group.log_group_arn().or(group.arn()).ok_or(format!("log group {name} has no ARN"))?;
    check_tags(&format!("log group {name}"), &emu.log_group_tags(arn).await?, stack, extra_tags)
}

/// The stack's parts in the emulator (every kind the inventory lists with its tags: buckets, repositories,
/// log groups, secrets, security groups, the endpoint, roles, the database and its groups, the file system
/// and access points, ECS, the Auto Scaling group, Cloud Map) whose tags still have `key`. Left out: what
/// keeps the tags it was made with on AWS too (automated database snapshots, and instances, whose tags come
/// from their launch), and launch templates, whose tags moto's DescribeLaunchTemplates answers as they were
/// at creation whatever CreateTags and DeleteTags did since (AWS answers the current ones).
pub async fn parts_tagged(emu: &Emulator, stack: &str, key: &str) -> Result<Vec<String>, CheckError> {
    use datavault_acceptance_tests::inventory::Kind;
    let items = datavault_acceptance_tests::stack_items(emu, stack).await?;
    Ok(items
        .iter()
        .filter(|i| !matches!(i.kind, Kind::DbSnapshot | Kind::Instance | Kind::LaunchTemplate))
        .filter(|i| i.tags.contains_key(key))
        .map(|i| format!("{:?} {}", i.kind, i.name))
        .collect())
}

/// Every part of a stack with default names.
pub async fn check_stack(emu: &Emulator, stack: &str, retention: i32, extra_tags: &[(&str, &str)]) -> CheckResult {
    check_bucket(emu, &format!("{stack}-archive"), stack, extra_tags).await?;
    check_bucket(emu, &format!("{stack}-state"), stack, extra_tags).await?;
    check_bucket(emu, &format!("{stack}-access-logs"), stack, extra_tags).await?;
    check_access_logs(emu, stack, retention).await?;
    check_repositories(emu, stack, extra_tags).await?;
    check_log_group(emu, stack, retention, extra_tags).await
}

/// The value of `path` in the plan's `change.before` for [`ADDR`]: the refreshed state the plan starts
/// from.
pub fn planned_before<'a>(plan: &'a Value, path: &str) -> Option<&'a Value> {
    let before = datavault_acceptance_tests::resource_change(plan, ADDR)?.get("change")?.get("before")?;
    datavault_acceptance_tests::state::lookup(before, path)
}

/// Whether the refreshed state the plan starts from lists some drift.
pub fn plan_reports_drift(plan: &Value) -> bool {
    planned_before(plan, "drift").and_then(Value::as_array).is_some_and(|d| !d.is_empty())
}

/// One ingress or egress rule, flattened: (protocol, from port, to port, source).
pub type Rule = (String, i32, i32, String);

/// Every rule of `permissions`, one per source (`cidr ...`, `prefix list ...`, `group ...`).
pub fn rules(permissions: &[IpPermission]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in permissions {
        let (protocol, from, to) =
            (p.ip_protocol().unwrap_or_default().to_string(), p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
        let mut add = |source: String| out.insert((protocol.clone(), from, to, source));
        p.ip_ranges().iter().for_each(|r| {
            add(format!("cidr {}", r.cidr_ip().unwrap_or_default()));
        });
        p.ipv6_ranges().iter().for_each(|r| {
            add(format!("cidr {}", r.cidr_ipv6().unwrap_or_default()));
        });
        p.prefix_list_ids().iter().for_each(|r| {
            add(format!("prefix list {}", r.prefix_list_id().unwrap_or_default()));
        });
        p.user_id_group_pairs().iter().for_each(|r| {
            add(format!("group {}", r.group_id().unwrap_or_default()));
        });
    }
    out
}
