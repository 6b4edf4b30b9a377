//! The ECR module against the local emulator: a repository is looked up in one request, and its lifecycle
//! policy is judged only once it exists.

use crate::common;

use std::collections::BTreeMap;

use terraform_provider_datavault::aws::{STACK_TAG, ecr};

#[tokio::test]
async fn a_repository_is_found_then_its_lifecycle_policy_judged() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.ecr;
    let name = format!("{}/web", common::unique("dv-ecr"));
    assert!(ecr::describe(client, &name).await.unwrap().is_none(), "not there yet");
    assert_eq!(ecr::lifecycle_drift(client, &name).await.unwrap(), None, "a missing repository has no drift");

    let tags = BTreeMap::from([(STACK_TAG.to_string(), "dv-ecr".to_string())]);
    let made = ecr::ensure(client, &name, None, &tags).await.unwrap();
    let found = ecr::describe(client, &name).await.unwrap().expect("the repository");
    assert_eq!(found.arn, made.arn);
    assert!(found.drift.is_empty(), "{:?}", found.drift);
    assert_eq!(ecr::lifecycle_drift(client, &name).await.unwrap(), None, "ensure set the lifecycle policy");

    client.delete_lifecycle_policy().repository_name(&name).send().await.expect("DeleteLifecyclePolicy");
    assert_eq!(ecr::lifecycle_drift(client, &name).await.unwrap().as_deref(), Some("lifecycle policy is missing"));
    ecr::ensure(client, &name, None, &tags).await.unwrap();
    assert_eq!(ecr::lifecycle_drift(client, &name).await.unwrap(), None, "ensure repairs it");

    ecr::delete(client, &name, false).await.unwrap();
    assert!(ecr::describe(client, &name).await.unwrap().is_none());
}
