//! The IAM module against the local emulator: roles converge to their spec (out-of-band policies are
//! reported and removed), instance profiles hold exactly their role, and deletes are idempotent.

use crate::common;

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use terraform_provider_datavault::aws::iam::{self, RoleSpec};
use terraform_provider_datavault::aws::{AwsError, STACK_TAG};

/// The role found by name and judged against `spec`, as a refresh does.
async fn observe_role(
    client: &Client,
    spec: &RoleSpec,
) -> Result<Option<common::Judged<iam::RoleObservation>>, AwsError> {
    Ok(iam::observe_role(client, &spec.name).await?.map(|found| common::Judged { drift: found.drift(spec), found }))
}

/// A customer managed policy, so each test has policies of its own to attach and detach.
async fn customer_policy(client: &Client, name: &str, action: &str) -> String {
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": action, "Resource": "*" }]
    });
    let out = client.create_policy().policy_name(name).policy_document(document.to_string()).send().await.unwrap();
    out.policy().and_then(|p| p.arn()).unwrap().to_string()
}

fn task_role_spec(name: &str, managed: &str) -> RoleSpec {
    RoleSpec {
        name: name.to_string(),
        assume_role_policy: iam::assume_role_policy(iam::ECS_TASKS_SERVICE),
        managed_policy_arns: vec![managed.to_string()],
        inline_policies: [("archive".to_string(), iam::archive_bucket_access_policy("aws", "vault-archive"))].into(),
        tags: [(STACK_TAG.to_string(), "test".to_string())].into(),
        description: "DataVault broker and worker task role".to_string(),
    }
}

async fn inline_names(client: &Client, role: &str) -> Vec<String> {
    client.list_role_policies().role_name(role).send().await.unwrap().policy_names().to_vec()
}

async fn attached_arns(client: &Client, role: &str) -> Vec<String> {
    let out = client.list_attached_role_policies().role_name(role).send().await.unwrap();
    out.attached_policies().iter().filter_map(|p| p.policy_arn().map(str::to_string)).collect()
}

#[tokio::test]
async fn role_is_created_adopted_converged_and_deleted() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.iam;
    let name = common::unique("dv-task");
    let wanted = customer_policy(client, &common::unique("dv-wanted"), "logs:CreateLogStream").await;
    let intruder = customer_policy(client, &common::unique("dv-intruder"), "iam:*").await;
    let spec = task_role_spec(&name, &wanted);

    let role = iam::ensure_role(client, &spec).await.unwrap();
    assert_eq!(role.name, name);
    assert!(role.arn.ends_with(&format!(":role/{name}")), "{}", role.arn);
    let seen = observe_role(client, &spec).await.unwrap().expect("role exists");
    assert_eq!(seen.arn, role.arn);
    assert!(seen.drift.is_empty(), "fresh role drifted: {:?}", seen.drift);
    let (arn, tags) = iam::find_role(client, &name).await.unwrap().expect("found without its policies");
    assert_eq!((arn, tags.get(STACK_TAG).map(String::as_str)), (role.arn.clone(), Some("test")));
    assert_eq!(iam::find_role(client, &format!("{name}-absent")).await.unwrap(), None);
    assert_eq!(iam::ensure_role(client, &spec).await.unwrap(), role, "second ensure adopts the same role");

    let tags = client.list_role_tags().role_name(&name).send().await.unwrap();
    assert!(tags.tags().iter().any(|t| t.key() == STACK_TAG && t.value() == "test"));

    // Out of band: an extra inline policy, an extra managed policy and a widened trust policy.
    client
        .put_role_policy()
        .role_name(&name)
        .policy_name("backdoor")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    client.attach_role_policy().role_name(&name).policy_arn(&intruder).send().await.unwrap();
    client
        .update_assume_role_policy()
        .role_name(&name)
        .policy_document(iam::assume_role_policy(iam::EC2_SERVICE))
        .send()
        .await
        .unwrap();
    let drift = observe_role(client, &spec).await.unwrap().unwrap().drift;
    assert!(drift.contains(&"extra inline policy backdoor".to_string()), "{drift:?}");
    assert!(drift.contains(&format!("extra managed policy {intruder} is attached")), "{drift:?}");
    assert!(drift.contains(&"trust policy differs".to_string()), "{drift:?}");
    assert_eq!(drift.len(), 3, "{drift:?}");

    assert_eq!(iam::ensure_role(client, &spec).await.unwrap(), role);
    assert!(observe_role(client, &spec).await.unwrap().unwrap().drift.is_empty());
    assert_eq!(inline_names(client, &name).await, vec!["archive".to_string()]);
    assert_eq!(attached_arns(client, &name).await, vec![wanted.clone()]);
    let trust = client.get_role().role_name(&name).send().await.unwrap();
    let trust = trust.role().unwrap().assume_role_policy_document().unwrap();
    assert!(iam::same_policy(trust, &spec.assume_role_policy), "trust policy restored");

    // A changed inline document in the spec is pushed.
    let mut changed = spec.clone();
    changed.inline_policies.insert("archive".into(), iam::archive_bucket_access_policy("aws", "other-archive"));
    let drift = observe_role(client, &changed).await.unwrap().unwrap().drift;
    assert_eq!(drift, vec!["inline policy archive differs".to_string()]);
    iam::ensure_role(client, &changed).await.unwrap();
    let doc = client.get_role_policy().role_name(&name).policy_name("archive").send().await.unwrap();
    assert!(iam::same_policy(doc.policy_document(), &changed.inline_policies["archive"]));

    iam::delete_role(client, &name).await.unwrap();
    let gone = client.get_role().role_name(&name).send().await.map_err(|e| AwsError::from_sdk("GetRole", e));
    assert!(gone.unwrap_err().is(&["NoSuchEntity"]));
    assert!(observe_role(client, &spec).await.unwrap().is_none());
    iam::delete_role(client, &name).await.unwrap();
}

#[tokio::test]
async fn a_role_created_out_of_band_is_adopted_and_converged() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.iam;
    let name = common::unique("dv-adopt");
    let wanted = customer_policy(client, &common::unique("dv-adopt-policy"), "ecr:GetAuthorizationToken").await;
    let spec = task_role_spec(&name, &wanted);
    let created = client
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(iam::assume_role_policy(iam::EC2_SERVICE))
        .send()
        .await
        .unwrap();
    let arn = created.role().unwrap().arn().to_string();

    let drift = observe_role(client, &spec).await.unwrap().unwrap().drift;
    assert!(drift.contains(&"inline policy archive is missing".to_string()), "{drift:?}");
    assert!(drift.contains(&format!("managed policy {wanted} is not attached")), "{drift:?}");
    assert!(drift.contains(&"description differs".to_string()), "{drift:?}");

    let role = iam::ensure_role(client, &spec).await.unwrap();
    assert_eq!(role.arn, arn, "the existing role is adopted, not replaced");
    assert!(observe_role(client, &spec).await.unwrap().unwrap().drift.is_empty());
    iam::delete_role(client, &name).await.unwrap();
}

#[tokio::test]
async fn aws_managed_policies_are_attached_by_arn() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.iam;
    let name = common::unique("dv-instance");
    let mut spec = RoleSpec {
        name: name.clone(),
        assume_role_policy: iam::assume_role_policy(iam::EC2_SERVICE),
        managed_policy_arns: vec![iam::managed_policy_arn("aws", iam::ECS_INSTANCE_ROLE_POLICY)],
        inline_policies: BTreeMap::new(),
        tags: BTreeMap::new(),
        description: String::new(),
    };
    // scripts/emulator.sh starts moto with MOTO_IAM_LOAD_MANAGED_POLICIES=true; without it moto knows no
    // AWS managed policies and AttachRolePolicy fails with NoSuchEntity.
    iam::ensure_role(client, &spec).await.unwrap();
    assert_eq!(attached_arns(client, &name).await, spec.managed_policy_arns);
    assert!(observe_role(client, &spec).await.unwrap().unwrap().drift.is_empty());

    // Swapping the managed policy detaches the old one.
    spec.managed_policy_arns = vec![iam::managed_policy_arn("aws", iam::ECS_TASK_EXECUTION_ROLE_POLICY)];
    let drift = observe_role(client, &spec).await.unwrap().unwrap().drift;
    assert_eq!(drift.len(), 2, "{drift:?}");
    iam::ensure_role(client, &spec).await.unwrap();
    assert_eq!(attached_arns(client, &name).await, spec.managed_policy_arns);

    iam::delete_role(client, &name).await.unwrap();
    assert!(observe_role(client, &spec).await.unwrap().is_none());
}

#[tokio::test]
async fn instance_profile_holds_exactly_its_role_and_deletes_cleanly() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.iam;
    let role_name = common::unique("dv-ec2");
    let other_name = common::unique("dv-ec2-other");
    let profile = common::unique("dv-profile");
    let tags: BTreeMap<String, String> = [(STACK_TAG.to_string(), "test".to_string())].into();
    for name in [&role_name, &other_name] {
        let spec = RoleSpec {
            name: name.clone(),
            assume_role_policy: iam::assume_role_policy(iam::EC2_SERVICE),
            managed_policy_arns: Vec::new(),
            inline_policies: BTreeMap::new(),
            tags: tags.clone(),
            description: String::new(),
        };
        iam::ensure_role(client, &spec).await.unwrap();
    }

    assert_eq!(iam::instance_profile_arn(client, &profile).await.unwrap(), None);
    let arn = iam::ensure_instance_profile(client, &profile, &role_name, &tags).await.unwrap();
    assert!(arn.ends_with(&format!(":instance-profile/{profile}")), "{arn}");
    assert_eq!(iam::instance_profile_arn(client, &profile).await.unwrap().as_deref(), Some(arn.as_str()));
    assert_eq!(iam::instance_profile_roles(client, &profile).await.unwrap(), Some(vec![role_name.clone()]));
    assert_eq!(iam::ensure_instance_profile(client, &profile, &role_name, &tags).await.unwrap(), arn);
    // Read through GetInstanceProfile: moto 5.1.22 answers ListInstanceProfileTags with a 500.
    let read = client.get_instance_profile().instance_profile_name(&profile).send().await.unwrap();
    assert!(read.instance_profile().unwrap().tags().iter().any(|t| t.key() == STACK_TAG && t.value() == "test"));

    // Out of band: the profile's role swapped for another one.
    client
        .remove_role_from_instance_profile()
        .instance_profile_name(&profile)
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    client.add_role_to_instance_profile().instance_profile_name(&profile).role_name(&other_name).send().await.unwrap();
    assert_eq!(iam::ensure_instance_profile(client, &profile, &role_name, &tags).await.unwrap(), arn);
    assert_eq!(iam::instance_profile_roles(client, &profile).await.unwrap(), Some(vec![role_name.clone()]));

    // Deleting a role still in a profile takes it out first.
    iam::delete_role(client, &role_name).await.unwrap();
    assert_eq!(iam::instance_profile_roles(client, &profile).await.unwrap(), Some(Vec::new()));
    iam::delete_role(client, &role_name).await.unwrap();

    // A profile left with a role is emptied before deletion.
    iam::ensure_instance_profile(client, &profile, &other_name, &tags).await.unwrap();
    iam::delete_instance_profile(client, &profile).await.unwrap();
    assert_eq!(iam::instance_profile_arn(client, &profile).await.unwrap(), None);
    iam::delete_instance_profile(client, &profile).await.unwrap();
    iam::delete_role(client, &other_name).await.unwrap();
}

#[tokio::test]
async fn an_instance_profile_created_out_of_band_is_adopted() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.iam;
    let role_name = common::unique("dv-ec2-adopt");
    let profile = common::unique("dv-profile-adopt");
    let spec = RoleSpec {
        name: role_name.clone(),
        assume_role_policy: iam::assume_role_policy(iam::EC2_SERVICE),
        managed_policy_arns: Vec::new(),
        inline_policies: BTreeMap::new(),
        tags: BTreeMap::new(),
        description: String::new(),
    };
    iam::ensure_role(client, &spec).await.unwrap();
    let created = client.create_instance_profile().instance_profile_name(&profile).send().await.unwrap();
    let existing_arn = created.instance_profile().unwrap().arn().to_string();

    let arn = iam::ensure_instance_profile(client, &profile, &role_name, &BTreeMap::new()).await.unwrap();
    assert_eq!(arn, existing_arn);
    assert_eq!(iam::instance_profile_roles(client, &profile).await.unwrap(), Some(vec![role_name.clone()]));

    iam::delete_instance_profile(client, &profile).await.unwrap();
    iam::delete_role(client, &role_name).await.unwrap();
    assert_eq!(iam::instance_profile_arn(client, &profile).await.unwrap(), None);
}
