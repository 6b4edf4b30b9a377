//! ECS against the local emulator: the cluster (with a registered container instance blocking nothing), task
//! definitions that are registered once and then reused, and a service registered in Cloud Map that is
//! created, adopted, scaled, repaired and deleted.
//!
//! moto never starts tasks, so the steady-state wait is covered by the unit tests in src/aws/ecs.rs.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::types::{ClusterSetting, ClusterSettingName};
use terraform_provider_datavault::aws::ecs::{
    self, ContainerSpec, EfsVolume, HealthCheck, LogSpec, MountPoint, ServiceSpec, TaskDefinitionSpec,
};
use terraform_provider_datavault::aws::servicediscovery as sd;
use terraform_provider_datavault::aws::{AwsContext, STACK_TAG};

const TIMEOUT: Duration = Duration::from_secs(60);

fn stack_tags(stack: &str) -> BTreeMap<String, String> {
    [(STACK_TAG.to_string(), stack.to_string())].into()
}

fn task_spec(family: &str, image: &str, tags: &BTreeMap<String, String>) -> TaskDefinitionSpec {
    let secret = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:vault-db-AbCdEf";
    let broker = ContainerSpec {
        name: "broker".into(),
        image: image.into(),
        cpu: 256,
        memory: Some(512),
        essential: true,
        port_mappings: vec![8080],
        environment: [("RABBITMQ_HOST".to_string(), "rabbitmq.vault.internal".to_string())].into(),
        secrets: [
            ("MYSQL_PASSWORD".to_string(), format!("{secret}:password::")),
            ("RABBITMQ_PASSWORD".to_string(), secret.to_string()),
        ]
        .into(),
        mount_points: vec![MountPoint {
            source_volume: "working".into(),
            container_path: "/tmp/datavault".into(),
            read_only: false,
        }],
        log: LogSpec { group: "vault".into(), region: "eu-west-2".into(), stream_prefix: "vault".into() },
        health_check: Some(HealthCheck {
            command: vec!["CMD-SHELL".into(), "curl -f http://localhost:8080/ || exit 1".into()],
            interval: 30,
            timeout: 5,
            retries: 3,
            start_period: 120,
        }),
        readonly_root_filesystem: false,
        depends_on: vec![],
        command: vec!["catalina.sh".into(), "run".into()],
        working_directory: Some("/tmp/datavault".into()),
        init_process: true,
        stop_timeout: Some(30),
    };
    TaskDefinitionSpec {
        family: family.into(),
        task_role_arn: Some("arn:aws:iam::123456789012:role/vault-task".into()),
        execution_role_arn: "arn:aws:iam::123456789012:role/vault-execution".into(),
        cpu: 256,
        memory: 512,
        containers: vec![broker],
        volumes: vec![EfsVolume {
            name: "working".into(),
            file_system_id: "fs-12345678".into(),
            access_point_id: "fsap-12345678".into(),
        }],
        tags: tags.clone(),
    }
}

/// A VPC of the test's own with one subnet and a security group (the ec2 module is not used here so this
/// test depends only on the SDK).
async fn network(aws: &AwsContext, stack: &str) -> (String, String, String) {
    let vpc = aws.ec2.create_vpc().cidr_block("10.43.0.0/16").send().await.expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let subnet = aws
        .ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.43.1.0/24")
        .availability_zone("eu-west-2a")
        .send()
        .await
        .expect("CreateSubnet");
    let subnet_id = subnet.subnet().and_then(|s| s.subnet_id()).unwrap().to_string();
    let group =
        common::create_security_group(&aws.ec2, &vpc_id, &format!("{stack}-services"), "DataVault services (test)")
            .await;
    (vpc_id, subnet_id, group)
}

/// An EC2 instance to register as a container instance (any image the emulator knows).
async fn launch_instance(aws: &AwsContext) -> String {
    let images = aws.ec2.describe_images().owners("amazon").send().await.expect("DescribeImages");
    let image = images.images().iter().find_map(|i| i.image_id()).expect("an image").to_string();
    let out = aws
        .ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    out.instances()[0].instance_id().unwrap().to_string()
}

/// Where the clusters of these tests record ECS Exec sessions.
const LOGS: &str = "/datavault/emulator-tests";

#[tokio::test]
async fn cluster_is_created_adopted_repaired_and_deleted_despite_registered_instances() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.ecs;
    let name = common::unique("cluster");
    let tags = stack_tags(&name);

    assert_eq!(ecs::describe_cluster(client, &name, LOGS).await.unwrap(), None);
    let cluster = ecs::ensure_cluster(client, &name, LOGS, &tags).await.unwrap();
    let seen = ecs::describe_cluster(client, &name, LOGS).await.unwrap().expect("the cluster");
    assert_eq!(seen.arn, cluster.arn);
    assert_eq!(seen.status, "ACTIVE");
    assert!(seen.container_insights, "{seen:?}");
    assert_eq!(seen.tags.get(STACK_TAG), Some(&name));
    assert!(seen.drift.is_empty(), "{:?}", seen.drift);

    // Container Insights switched off out of band is reported, then restored by the next ensure.
    client
        .update_cluster()
        .cluster(&name)
        .settings(ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value("disabled").build())
        .send()
        .await
        .unwrap();
    let drifted = ecs::describe_cluster(client, &name, LOGS).await.unwrap().unwrap();
    assert_eq!(drifted.drift, vec!["container insights is disabled, expected enabled"]);
    assert_eq!(ecs::ensure_cluster(client, &name, LOGS, &tags).await.unwrap(), cluster);
    assert!(ecs::describe_cluster(client, &name, LOGS).await.unwrap().unwrap().drift.is_empty());
    // ECS Exec sessions recorded elsewhere (or not at all) are reported, then restored.
    let elsewhere = "/somewhere/else";
    let drifted = ecs::describe_cluster(client, &name, elsewhere).await.unwrap().unwrap();
    assert_eq!(drifted.drift, vec![format!("ECS Exec sessions are logged to {LOGS}, expected {elsewhere}")]);
    ecs::ensure_cluster(client, &name, elsewhere, &tags).await.unwrap();
    assert!(ecs::describe_cluster(client, &name, elsewhere).await.unwrap().unwrap().drift.is_empty());
    ecs::ensure_cluster(client, &name, LOGS, &tags).await.unwrap();

    // An instance of the Auto Scaling group still registered when the cluster is deleted.
    let instance_id = launch_instance(&aws).await;
    client
        .register_container_instance()
        .cluster(&name)
        .instance_identity_document(format!(r#"{{"instanceId": "{instance_id}", "region": "eu-west-2"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(ecs::describe_cluster(client, &name, LOGS).await.unwrap().unwrap().registered_instances, 1);

    ecs::delete_cluster(client, &name, TIMEOUT).await.unwrap();
    assert_eq!(ecs::describe_cluster(client, &name, LOGS).await.unwrap(), None);
    let left = client.list_container_instances().cluster(&name).send().await.unwrap();
    assert!(left.container_instance_arns().is_empty(), "instances were not deregistered");
    ecs::delete_cluster(client, &name, TIMEOUT).await.unwrap();

    // A deleted (INACTIVE) cluster of the same name is created afresh.
    ecs::ensure_cluster(client, &name, LOGS, &tags).await.unwrap();
    assert_eq!(ecs::describe_cluster(client, &name, LOGS).await.unwrap().unwrap().status, "ACTIVE");
    ecs::delete_cluster(client, &name, TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn task_definitions_are_registered_only_when_the_spec_changes() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.ecs;
    let family = common::unique("broker");
    let tags = stack_tags(&family);
    let spec = task_spec(&family, "vault/broker:1.4.2", &tags);

    let first = ecs::ensure_task_definition(client, &spec).await.unwrap();
    assert_eq!(first.revision, 1);
    // No perpetual re-registration: the same spec reuses the revision, again and again.
    assert_eq!(ecs::ensure_task_definition(client, &spec).await.unwrap(), first);
    assert_eq!(ecs::ensure_task_definition(client, &spec).await.unwrap(), first);

    let described = client.describe_task_definition().task_definition(&first.arn).send().await.unwrap();
    let td = described.task_definition().unwrap();
    assert!(ecs::matches(&spec, td), "{:?}", ecs::task_definition_differences(&spec, td));

    let changed = task_spec(&family, "vault/broker:1.4.3", &tags);
    let second = ecs::ensure_task_definition(client, &changed).await.unwrap();
    assert_eq!(second.revision, 2);
    assert_eq!(ecs::ensure_task_definition(client, &changed).await.unwrap(), second);

    ecs::deregister_task_definitions(client, &family).await.unwrap();
    let active = client.list_task_definitions().family_prefix(&family).send().await.unwrap();
    assert!(active.task_definition_arns().is_empty(), "{:?}", active.task_definition_arns());
    ecs::deregister_task_definitions(client, &family).await.unwrap();

    // After a deregistration the family has no reusable revision, so ensuring registers a fresh one.
    let fresh = ecs::ensure_task_definition(client, &changed).await.unwrap();
    assert_ne!(fresh.arn, second.arn);
    ecs::deregister_task_definitions(client, &family).await.unwrap();
}

#[tokio::test]
async fn service_with_cloud_map_registry_is_created_scaled_repaired_and_deleted() {
    let Some(aws) = common::emulator().await else { return };
    let stack = common::unique("svc");
    let tags = stack_tags(&stack);
    let (vpc_id, subnet_id, group_id) = network(&aws, &stack).await;
    let sd_client = &aws.servicediscovery;
    let ns = sd::ensure_private_namespace(sd_client, &format!("{stack}.datavault.internal"), &vpc_id, &tags, TIMEOUT)
        .await
        .unwrap();
    let registry = sd::ensure_service(sd_client, &ns.id, "broker", &tags).await.unwrap();

    let client = &aws.ecs;
    ecs::ensure_cluster(client, &stack, LOGS, &tags).await.unwrap();
    let td = ecs::ensure_task_definition(client, &task_spec(&format!("{stack}-broker"), "vault/broker:1", &tags))
        .await
        .unwrap();
    let mut spec = ServiceSpec {
        cluster: stack.clone(),
        name: "broker".into(),
        task_definition_arn: td.arn.clone(),
        desired_count: 1,
        subnet_ids: vec![subnet_id],
        security_group_ids: vec![group_id],
        registry_arn: Some(registry.arn.clone()),
        health_check_grace_seconds: Some(120),
        load_balancer: None,
        minimum_healthy_percent: ecs::ROLLING_MIN_HEALTHY_PERCENT,
        maximum_percent: ecs::ROLLING_MAX_PERCENT,
        enable_execute_command: true,
        awaiting_image: false,
        tags: tags.clone(),
    };

    assert_eq!(ecs::describe_service(client, &stack, "broker", Some(&spec)).await.unwrap(), None);
    let service = ecs::ensure_service(client, &spec, TIMEOUT).await.unwrap();
    assert_eq!(service.name, "broker");
    let raw = client.describe_services().cluster(&stack).services("broker").send().await.unwrap();
    let registries = raw.services()[0].service_registries();
    assert_eq!(registries.len(), 1);
    assert_eq!(registries[0].registry_arn(), Some(registry.arn.as_str()));

    // moto's CreateService drops the deployment configuration, grace period and managed tags (AWS keeps
    // them), so the first observation may report exactly those; the next ensure repairs them in place.
    let moto_gap =
        ["deployment circuit breaker off", "health check grace period is 0s, expected 120s", "ECS managed tags off"];
    let first = ecs::describe_service(client, &stack, "broker", Some(&spec)).await.unwrap().unwrap().drift;
    assert!(first.iter().all(|d| moto_gap.contains(&d.as_str())), "{first:?}");
    assert_eq!(ecs::ensure_service(client, &spec, TIMEOUT).await.unwrap(), service);
    let seen = ecs::describe_service(client, &stack, "broker", Some(&spec)).await.unwrap().expect("the service");
    assert_eq!(seen.arn, service.arn);
    assert_eq!(seen.status, "ACTIVE");
    assert_eq!(seen.desired_count, 1);
    assert_eq!(seen.task_definition, td.arn);
    assert_eq!(seen.tags.get(STACK_TAG), Some(&stack));
    assert_eq!(seen.drift, Vec::<String>::new());

    spec.desired_count = 2;
    assert_eq!(ecs::ensure_service(client, &spec, TIMEOUT).await.unwrap(), service);
    assert_eq!(ecs::describe_service(client, &stack, "broker", None).await.unwrap().unwrap().desired_count, 2);

    // Scaled to zero out of band: reported, then restored.
    client.update_service().cluster(&stack).service("broker").desired_count(0).send().await.unwrap();
    let drifted = ecs::describe_service(client, &stack, "broker", Some(&spec)).await.unwrap().unwrap();
    assert_eq!(drifted.drift, vec!["desired count is 0, expected 2"]);
    ecs::ensure_service(client, &spec, TIMEOUT).await.unwrap();
    assert!(ecs::describe_service(client, &stack, "broker", Some(&spec)).await.unwrap().unwrap().drift.is_empty());

    ecs::delete_service(client, &stack, "broker", TIMEOUT).await.unwrap();
    assert_eq!(ecs::describe_service(client, &stack, "broker", None).await.unwrap(), None);
    ecs::delete_service(client, &stack, "broker", TIMEOUT).await.unwrap();

    ecs::deregister_task_definitions(client, &format!("{stack}-broker")).await.unwrap();
    ecs::delete_cluster(client, &stack, TIMEOUT).await.unwrap();
    assert_eq!(ecs::describe_cluster(client, &stack, LOGS).await.unwrap(), None);
    sd::delete_service(sd_client, &registry.id, TIMEOUT).await.unwrap();
    sd::delete_namespace(sd_client, &ns.id, TIMEOUT).await.unwrap();
}
