//! Cloud Map namespaces and discovery services against the local emulator: create, find, adopt, repair tags,
//! delete (with instances still registered) and delete again.
//!
//! Each test works in a VPC of its own because moto refuses a second private namespace in a VPC that already
//! has one (ConflictingDomainExists), where AWS only refuses conflicting names.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use terraform_provider_datavault::aws::servicediscovery as sd;
use terraform_provider_datavault::aws::{AwsContext, STACK_TAG};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn fresh_vpc(aws: &AwsContext) -> String {
    let out = aws.ec2.create_vpc().cidr_block("10.42.0.0/16").send().await.expect("CreateVpc");
    out.vpc().and_then(|v| v.vpc_id()).expect("a VPC id").to_string()
}

fn stack_tags(stack: &str) -> BTreeMap<String, String> {
    [(STACK_TAG.to_string(), stack.to_string())].into()
}

#[tokio::test]
async fn namespace_is_created_adopted_repaired_and_deleted() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.servicediscovery;
    let vpc = fresh_vpc(&aws).await;
    let stack = common::unique("sd");
    let name = format!("{stack}.datavault.internal");
    let tags = stack_tags(&stack);

    assert_eq!(sd::describe_namespace(client, &name).await.unwrap(), None);
    let ns = sd::ensure_private_namespace(client, &name, &vpc, &tags, TIMEOUT).await.unwrap();
    assert_eq!(ns.name, name);
    assert!(ns.id.starts_with("ns-") && ns.arn.ends_with(&ns.id), "{ns:?}");
    assert_eq!(sd::describe_namespace(client, &name).await.unwrap(), Some(ns.clone()));
    assert_eq!(sd::tags(client, &ns.arn).await.unwrap().get(STACK_TAG), Some(&stack));

    // Ensuring again adopts the same namespace, and restores a tag removed out of band.
    client.untag_resource().resource_arn(&ns.arn).tag_keys(STACK_TAG).send().await.unwrap();
    assert_eq!(sd::tags(client, &ns.arn).await.unwrap().get(STACK_TAG), None);
    let again = sd::ensure_private_namespace(client, &name, &vpc, &tags, TIMEOUT).await.unwrap();
    assert_eq!(again, ns);
    assert_eq!(sd::tags(client, &ns.arn).await.unwrap().get(STACK_TAG), Some(&stack));

    sd::delete_namespace(client, &ns.id, TIMEOUT).await.unwrap();
    assert_eq!(sd::describe_namespace(client, &name).await.unwrap(), None);
    sd::delete_namespace(client, &ns.id, TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn concurrent_ensures_converge_on_one_namespace() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.servicediscovery;
    let vpc = fresh_vpc(&aws).await;
    let stack = common::unique("race");
    let name = format!("{stack}.datavault.internal");
    let tags = stack_tags(&stack);

    // Two runs racing (or a retry after a crash mid-creation): the loser's "already exists" is adoption.
    let (a, b) = tokio::join!(
        sd::ensure_private_namespace(client, &name, &vpc, &tags, TIMEOUT),
        sd::ensure_private_namespace(client, &name, &vpc, &tags, TIMEOUT),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);

    sd::delete_namespace(client, &a.id, TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn discovery_services_are_created_adopted_and_deleted_with_their_instances() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.servicediscovery;
    let vpc = fresh_vpc(&aws).await;
    let stack = common::unique("svc");
    let tags = stack_tags(&stack);
    let ns = sd::ensure_private_namespace(client, &format!("{stack}.datavault.internal"), &vpc, &tags, TIMEOUT)
        .await
        .unwrap();

    assert_eq!(sd::describe_service(client, &ns.id, "broker").await.unwrap(), None);
    let broker = sd::ensure_service(client, &ns.id, "broker", &tags).await.unwrap();
    assert!(broker.id.starts_with("srv-"), "{broker:?}");
    assert_eq!(sd::describe_service(client, &ns.id, "broker").await.unwrap(), Some(broker.clone()));
    assert_eq!(sd::ensure_service(client, &ns.id, "broker", &tags).await.unwrap(), broker);
    assert_eq!(sd::tags(client, &broker.arn).await.unwrap().get(STACK_TAG), Some(&stack));

    let rabbitmq = sd::ensure_service(client, &ns.id, "rabbitmq", &tags).await.unwrap();
    assert_ne!(rabbitmq.id, broker.id);
    // The name alone does not match: the service must be in the namespace asked about.
    assert_eq!(sd::describe_service(client, "ns-someoneelse", "broker").await.unwrap(), None);

    let described = client.get_service().id(&broker.id).send().await.unwrap();
    let dns = described.service().and_then(|s| s.dns_config()).expect("a DNS config");
    assert_eq!(dns.dns_records()[0].ttl(), sd::DNS_TTL_SECONDS);

    // An instance ECS failed to deregister must not block the delete.
    client
        .register_instance()
        .service_id(&broker.id)
        .instance_id("task-1")
        .attributes("AWS_INSTANCE_IPV4", "10.42.0.10")
        .send()
        .await
        .unwrap();
    sd::delete_service(client, &broker.id, TIMEOUT).await.unwrap();
    assert_eq!(sd::describe_service(client, &ns.id, "broker").await.unwrap(), None);
    sd::delete_service(client, &broker.id, TIMEOUT).await.unwrap();

    sd::delete_service(client, &rabbitmq.id, TIMEOUT).await.unwrap();
    sd::delete_namespace(client, &ns.id, TIMEOUT).await.unwrap();
}
