//! Elastic Load Balancing v2 against the local emulator: the web load balancer in the default VPC (create,
//! adopt, repair), its target group (create, adopt, repair), listeners switched from HTTP to HTTPS and back
//! with an out-of-band listener removed, and teardown with the target group still in use.
//!
//! The HTTPS certificate is an IAM server certificate (a throwaway self-signed one): the emulator insists
//! that a listener's certificate exists in ACM or IAM, and this crate has no ACM client.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, LoadBalancerAttribute, LoadBalancerSchemeEnum, ProtocolEnum,
};
use terraform_provider_datavault::aws::elbv2::{
    self, HTTPS_SSL_POLICY, ListenerAction, ListenerSpec, LoadBalancerSpec, TargetGroupSpec,
};
use terraform_provider_datavault::aws::{AwsContext, AwsResult, PART_TAG, STACK_TAG};

/// The load balancer found by name and judged (against `expected` when given), as a refresh does.
async fn describe_load_balancer(
    client: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
    expected: Option<&LoadBalancerSpec>,
) -> AwsResult<Option<elbv2::LoadBalancerObservation>> {
    let found = elbv2::describe_load_balancer(client, name).await?;
    Ok(found.map(|lb| elbv2::LoadBalancerObservation { drift: elbv2::load_balancer_drift(&lb, expected), ..lb }))
}

/// The target group found by name and judged (against `expected` when given), as a refresh does.
async fn describe_target_group(
    client: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
    expected: Option<&TargetGroupSpec>,
) -> AwsResult<Option<elbv2::TargetGroupObservation>> {
    let found = elbv2::describe_target_group(client, name).await?;
    Ok(found.map(|tg| elbv2::TargetGroupObservation { drift: elbv2::target_group_drift(&tg, expected), ..tg }))
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn tags(stack: &str) -> BTreeMap<String, String> {
    [(STACK_TAG.to_string(), stack.to_string()), (PART_TAG.to_string(), "web-entry".to_string())].into()
}

/// The default VPC and its default subnets (one per zone), looked up with the SDK alone.
async fn default_network(aws: &AwsContext) -> (String, Vec<String>) {
    let is_default = |v: &str| aws_sdk_ec2::types::Filter::builder().name("is-default").values(v).build();
    let vpcs = aws.ec2.describe_vpcs().filters(is_default("true")).send().await.expect("DescribeVpcs");
    let vpc_id = vpcs.vpcs().first().and_then(|v| v.vpc_id()).expect("the emulator has a default VPC").to_string();
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc_id).build())
        .filters(aws_sdk_ec2::types::Filter::builder().name("default-for-az").values("true").build())
        .send()
        .await
        .expect("DescribeSubnets");
    let mut ids: Vec<String> = subnets.subnets().iter().filter_map(|s| s.subnet_id()).map(str::to_string).collect();
    ids.sort();
    assert!(ids.len() >= 2, "the default VPC has a subnet per zone: {ids:?}");
    (vpc_id, ids)
}

async fn security_group(aws: &AwsContext, vpc_id: &str, name: &str) -> String {
    common::create_security_group(&aws.ec2, vpc_id, name, "DataVault web entry (test)").await
}

/// A throwaway self-signed IAM server certificate; returns its ARN.
async fn server_certificate(aws: &AwsContext, name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["datavault.example".to_string()]).unwrap().self_signed(&key).unwrap();
    let out = aws
        .iam
        .upload_server_certificate()
        .server_certificate_name(name)
        .certificate_body(cert.pem())
        .private_key(key.serialize_pem())
        .send()
        .await
        .expect("UploadServerCertificate");
    out.server_certificate_metadata().unwrap().arn().to_string()
}

#[tokio::test]
async fn load_balancer_target_group_and_listeners_converge_and_tear_down() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.elbv2;
    let stack = common::unique("dvlb");
    let (vpc_id, subnets) = default_network(&aws).await;
    let sg = security_group(&aws, &vpc_id, &format!("{stack}-web")).await;
    let sg_other = security_group(&aws, &vpc_id, &format!("{stack}-other")).await;

    // Load balancer: create, describe, adopt.
    let lb_spec = LoadBalancerSpec {
        name: elbv2::load_balancer_name(&stack),
        subnet_ids: subnets[..2].to_vec(),
        security_group_ids: vec![sg.clone()],
        access_logs: None,
        tags: tags(&stack),
    };
    let lb = elbv2::ensure_load_balancer(client, &lb_spec).await.unwrap();
    assert!(lb.arn.contains(":loadbalancer/app/") && !lb.dns_name.is_empty(), "{lb:?}");
    let seen = describe_load_balancer(client, &lb_spec.name, Some(&lb_spec)).await.unwrap().unwrap();
    assert_eq!((seen.arn.as_str(), seen.dns_name.as_str()), (lb.arn.as_str(), lb.dns_name.as_str()));
    assert_eq!((seen.scheme.as_str(), seen.load_balancer_type.as_str()), ("internet-facing", "application"));
    assert_eq!(seen.security_groups, std::slice::from_ref(&sg));
    assert_eq!(seen.subnets, lb_spec.subnet_ids);
    assert_eq!(seen.attributes["routing.http.drop_invalid_header_fields.enabled"], "true");
    assert_eq!(seen.tags.get(STACK_TAG), Some(&stack));
    assert!(seen.drift.is_empty(), "{:?}", seen.drift);
    assert!(seen.listeners.is_empty());
    assert_eq!(elbv2::ensure_load_balancer(client, &lb_spec).await.unwrap(), lb, "ensure adopts");

    // Out-of-band changes are reported, then repaired.
    client
        .modify_load_balancer_attributes()
        .load_balancer_arn(&lb.arn)
        .attributes(LoadBalancerAttribute::builder().key("deletion_protection.enabled").value("true").build())
        .attributes(
            LoadBalancerAttribute::builder()
                .key("routing.http.drop_invalid_header_fields.enabled")
                .value("false")
                .build(),
        )
        .send()
        .await
        .unwrap();
    client.set_security_groups().load_balancer_arn(&lb.arn).security_groups(&sg_other).send().await.unwrap();
    client.set_subnets().load_balancer_arn(&lb.arn).set_subnets(Some(subnets.clone())).send().await.unwrap();
    let drifted = describe_load_balancer(client, &lb_spec.name, Some(&lb_spec)).await.unwrap().unwrap();
    let mut expected = vec![
        format!("missing security group {sg}"),
        format!("extra security group {sg_other}"),
        "routing.http.drop_invalid_header_fields.enabled is false, expected true".to_string(),
        "deletion_protection.enabled is true, expected false".to_string(),
    ];
    if subnets.len() > 2 {
        expected.insert(2, format!("extra subnet {}", subnets[2]));
    }
    assert_eq!(drifted.drift, expected);
    elbv2::ensure_load_balancer(client, &lb_spec).await.unwrap();
    let repaired = describe_load_balancer(client, &lb_spec.name, Some(&lb_spec)).await.unwrap().unwrap();
    assert!(repaired.drift.is_empty(), "{:?}", repaired.drift);

    // Target group: create, adopt, repair a changed health check.
    let tg_spec = TargetGroupSpec {
        name: elbv2::target_group_name(&stack),
        vpc_id: vpc_id.clone(),
        port: 8080,
        health_check_path: "/datavault-webapp/".into(),
        tags: tags(&stack),
    };
    let tg = elbv2::ensure_target_group(client, &tg_spec).await.unwrap();
    let seen_tg = describe_target_group(client, &tg_spec.name, Some(&tg_spec)).await.unwrap().unwrap();
    assert_eq!(seen_tg.arn, tg.arn);
    assert_eq!((seen_tg.protocol.as_str(), seen_tg.port, seen_tg.target_type.as_str()), ("HTTP", 8080, "ip"));
    assert_eq!(seen_tg.health_check.matcher, "200-399");
    // AWS's default is 300 s, which every web deployment and destroy would wait out.
    assert_eq!(seen_tg.deregistration_delay.as_deref(), Some(elbv2::DEREGISTRATION_DELAY_SECONDS));
    assert_eq!(seen_tg.tags.get(STACK_TAG), Some(&stack));
    assert!(seen_tg.drift.is_empty(), "{:?}", seen_tg.drift);
    assert_eq!(elbv2::ensure_target_group(client, &tg_spec).await.unwrap(), tg, "ensure adopts");
    client
        .modify_target_group()
        .target_group_arn(&tg.arn)
        .health_check_path("/")
        .matcher(aws_sdk_elasticloadbalancingv2::types::Matcher::builder().http_code("200").build())
        .send()
        .await
        .unwrap();
    let default_delay = aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
        .key("deregistration_delay.timeout_seconds")
        .value("300")
        .build();
    client.modify_target_group_attributes().target_group_arn(&tg.arn).attributes(default_delay).send().await.unwrap();
    let drifted_tg = describe_target_group(client, &tg_spec.name, Some(&tg_spec)).await.unwrap().unwrap();
    assert_eq!(
        drifted_tg.drift,
        [
            "health check path is /, expected /datavault-webapp/",
            "health check matcher is 200, expected 200-399",
            "deregistration delay is 300s, expected 60s"
        ]
    );
    elbv2::ensure_target_group(client, &tg_spec).await.unwrap();
    let repaired_tg = describe_target_group(client, &tg_spec.name, Some(&tg_spec)).await.unwrap().unwrap();
    assert!(repaired_tg.drift.is_empty(), "{:?}", repaired_tg.drift);

    // Listeners: HTTP only, idempotent.
    let http_only =
        ListenerSpec { load_balancer_arn: lb.arn.clone(), target_group_arn: tg.arn.clone(), certificate_arn: None };
    let http_arns = elbv2::ensure_listeners(client, &http_only).await.unwrap();
    assert_eq!(http_arns.len(), 1);
    assert_eq!(elbv2::ensure_listeners(client, &http_only).await.unwrap(), http_arns, "nothing to change");
    let seen = describe_load_balancer(client, &lb_spec.name, None).await.unwrap().unwrap();
    assert_eq!(seen.listeners.len(), 1);
    assert_eq!((seen.listeners[0].config.port, seen.listeners[0].config.protocol.as_str()), (80, "HTTP"));
    assert_eq!(seen.listeners[0].config.action, ListenerAction::Forward(tg.arn.clone()));
    assert!(elbv2::listener_drift(&http_only, &seen.listeners).is_empty());

    // HTTPS: the HTTP listener becomes the redirect in place, HTTPS:443 is added.
    let cert_name = format!("{stack}-cert");
    let certificate = server_certificate(&aws, &cert_name).await;
    let https = ListenerSpec { certificate_arn: Some(certificate.clone()), ..http_only.clone() };
    assert_eq!(elbv2::listener_drift(&https, &seen.listeners).len(), 2, "missing 443, wrong action on 80");
    let https_arns = elbv2::ensure_listeners(client, &https).await.unwrap();
    assert_eq!(https_arns.len(), 2);
    assert_eq!(https_arns[1], http_arns[0], "port 80 keeps its listener");
    let seen = describe_load_balancer(client, &lb_spec.name, None).await.unwrap().unwrap();
    let ports: Vec<(i32, &str)> = seen.listeners.iter().map(|l| (l.config.port, l.config.protocol.as_str())).collect();
    assert_eq!(ports, [(80, "HTTP"), (443, "HTTPS")]);
    assert_eq!(seen.listeners[0].config.action, ListenerAction::RedirectToHttps);
    assert_eq!(seen.listeners[1].config.ssl_policy.as_deref(), Some(HTTPS_SSL_POLICY));
    assert_eq!(seen.listeners[1].config.certificate_arn.as_deref(), Some(certificate.as_str()));
    assert_eq!(seen.listeners[1].config.action, ListenerAction::Forward(tg.arn.clone()));
    assert!(
        elbv2::listener_drift(&https, &seen.listeners).is_empty(),
        "{:?}",
        elbv2::listener_drift(&https, &seen.listeners)
    );
    assert_eq!(elbv2::ensure_listeners(client, &https).await.unwrap(), https_arns, "nothing to change");

    // A listener added by hand is reported and removed.
    client
        .create_listener()
        .load_balancer_arn(&lb.arn)
        .protocol(ProtocolEnum::Http)
        .port(8081)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(FixedResponseActionConfig::builder().status_code("503").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let seen = describe_load_balancer(client, &lb_spec.name, None).await.unwrap().unwrap();
    assert_eq!(elbv2::listener_drift(&https, &seen.listeners), ["extra listener HTTP:8081 with action fixed-response"]);
    assert_eq!(elbv2::ensure_listeners(client, &https).await.unwrap(), https_arns);
    let seen = describe_load_balancer(client, &lb_spec.name, None).await.unwrap().unwrap();
    assert_eq!(seen.listeners.len(), 2);

    // Back to HTTP only: 80 forwards again in place, 443 goes.
    assert_eq!(elbv2::ensure_listeners(client, &http_only).await.unwrap(), http_arns);
    let seen = describe_load_balancer(client, &lb_spec.name, None).await.unwrap().unwrap();
    assert!(elbv2::listener_drift(&http_only, &seen.listeners).is_empty());
    assert_eq!(seen.listeners.len(), 1);

    // Teardown: the target group is in use; with no time to wait that is a clear error...
    let in_use = elbv2::delete_target_group(client, &tg_spec.name, Duration::ZERO).await.unwrap_err();
    assert!(in_use.to_string().contains("still in use") && in_use.to_string().contains(&tg_spec.name), "{in_use}");
    // ... with time, it is retried until the load balancer (and its listeners) are gone.
    let waiting = {
        let (client, name) = (client.clone(), tg_spec.name.clone());
        tokio::spawn(async move { elbv2::delete_target_group(&client, &name, TIMEOUT).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    elbv2::delete_load_balancer(client, &lb_spec.name, TIMEOUT).await.unwrap();
    waiting.await.unwrap().unwrap();
    assert_eq!(describe_load_balancer(client, &lb_spec.name, None).await.unwrap(), None);
    assert_eq!(describe_target_group(client, &tg_spec.name, None).await.unwrap(), None);
    elbv2::delete_load_balancer(client, &lb_spec.name, TIMEOUT).await.unwrap();
    elbv2::delete_target_group(client, &tg_spec.name, TIMEOUT).await.unwrap();

    aws.iam.delete_server_certificate().server_certificate_name(&cert_name).send().await.unwrap();
    for group in [sg, sg_other] {
        aws.ec2.delete_security_group().group_id(group).send().await.unwrap();
    }
}

#[tokio::test]
async fn a_foreign_load_balancer_with_the_name_is_refused() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.elbv2;
    let stack = common::unique("dvin");
    let (vpc_id, subnets) = default_network(&aws).await;
    let sg = security_group(&aws, &vpc_id, &format!("{stack}-web")).await;
    let name = elbv2::load_balancer_name(&stack);
    client
        .create_load_balancer()
        .name(&name)
        .scheme(LoadBalancerSchemeEnum::Internal)
        .set_subnets(Some(subnets[..2].to_vec()))
        .security_groups(&sg)
        .send()
        .await
        .unwrap();
    let spec = LoadBalancerSpec {
        name: name.clone(),
        subnet_ids: subnets[..2].to_vec(),
        security_group_ids: vec![sg.clone()],
        access_logs: None,
        tags: tags(&stack),
    };
    let err = elbv2::ensure_load_balancer(client, &spec).await.unwrap_err();
    assert!(err.to_string().contains("scheme is internal, expected internet-facing"), "{err}");
    let seen = describe_load_balancer(client, &name, Some(&spec)).await.unwrap().unwrap();
    assert!(seen.drift.contains(&"scheme is internal, expected internet-facing".to_string()), "{:?}", seen.drift);
    elbv2::delete_load_balancer(client, &name, TIMEOUT).await.unwrap();
    aws.ec2.delete_security_group().group_id(sg).send().await.unwrap();
}

#[tokio::test]
async fn absent_parts_describe_as_none_and_delete_as_success() {
    let Some(aws) = common::emulator().await else { return };
    let client = &aws.elbv2;
    let stack = common::unique("dvno");
    let (lb_name, tg_name) = (elbv2::load_balancer_name(&stack), elbv2::target_group_name(&stack));
    assert_eq!(describe_load_balancer(client, &lb_name, None).await.unwrap(), None);
    assert_eq!(describe_target_group(client, &tg_name, None).await.unwrap(), None);
    elbv2::delete_load_balancer(client, &lb_name, TIMEOUT).await.unwrap();
    elbv2::delete_target_group(client, &tg_name, TIMEOUT).await.unwrap();
}
