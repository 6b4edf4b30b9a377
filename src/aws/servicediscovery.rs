//! AWS Cloud Map: the stack's private DNS namespace and one discovery service per ECS service, so web reaches
//! `broker:8080` and broker and workers reach `rabbitmq:5672/15672` by name (the original deployment's first
//! defect was that nothing resolved across tasks).
//!
//! Records are A records (tasks use awsvpc networking, so each task has its own address) with a short TTL and
//! multivalue routing; health comes from ECS through a custom health check. Namespace creation and deletion
//! are asynchronous in Cloud Map and are awaited through their operation, within a caller-given timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::types::{
    DnsConfig, DnsRecord, FilterCondition, HealthCheckCustomConfig, NamespaceFilter, NamespaceFilterName,
    NamespaceSummary, NamespaceType, Operation, OperationStatus, OperationTargetType, RecordType, RoutingPolicy,
    ServiceFilter, ServiceFilterName, Tag,
};
use tokio::time::Instant;

use super::wait::Backoff;
use super::{AwsError, AwsResult};

/// How often asynchronous Cloud Map operations and blocked deletes are polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// TTL of the A records: short, so a replaced task's address stops being served quickly.
pub const DNS_TTL_SECONDS: i64 = 10;

/// A private DNS namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its id (`ns-...`).
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// Its DNS name, e.g. `rdss-datavault.datavault.internal`.
    pub name: String,
}

/// A discovery service: the DNS name one ECS service's tasks register under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryService {
    /// Its id (`srv-...`).
    pub id: String,
    /// Its ARN, which the ECS service's `serviceRegistries` entry points at.
    pub arn: String,
}

/// A discovery service as its namespace's listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedService {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Its ARN.
    pub arn: String,
}

/// Where an asynchronous Cloud Map operation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationProgress {
    /// Finished; carries the namespace id the operation targeted, when it names one.
    Succeeded(Option<String>),
    /// Submitted or pending.
    Running,
    /// Failed, with Cloud Map's reason.
    Failed(String),
}

/// Decides where an operation stands from one GetOperation reply.
pub fn assess_operation(operation: &Operation) -> OperationProgress {
    match operation.status() {
        Some(OperationStatus::Success) => OperationProgress::Succeeded(
            operation.targets().and_then(|t| t.get(&OperationTargetType::Namespace)).cloned(),
        ),
        Some(OperationStatus::Fail) => OperationProgress::Failed(format!(
            "{}: {}",
            operation.error_code().unwrap_or("unknown error"),
            operation.error_message().unwrap_or("no message")
        )),
        _ => OperationProgress::Running,
    }
}

/// DNS names compare case-insensitively and with or without the root dot.
fn same_dns_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Picks the private DNS namespace called `name` from a ListNamespaces page. The type is checked here too
/// because some implementations (moto) ignore the request's filters.
pub fn find_private_namespace(summaries: &[NamespaceSummary], name: &str) -> Option<Namespace> {
    summaries
        .iter()
        .filter(|s| s.r#type() == Some(&NamespaceType::DnsPrivate))
        .find(|s| s.name().is_some_and(|n| same_dns_name(n, name)))
        .map(|s| Namespace {
            id: s.id().unwrap_or_default().to_string(),
            arn: s.arn().unwrap_or_default().to_string(),
            name: s.name().unwrap_or_default().to_string(),
        })
}

/// The DNS settings of every discovery service: one A record per task, short TTL, all healthy answers.
pub fn dns_config() -> AwsResult<DnsConfig> {
    Ok(DnsConfig::builder()
        .routing_policy(RoutingPolicy::Multivalue)
        .dns_records(DnsRecord::builder().r#type(RecordType::A).ttl(DNS_TTL_SECONDS).build()?)
        .build()?)
}

fn tag_list(tags: &BTreeMap<String, String>) -> AwsResult<Vec<Tag>> {
    super::try_tags_as(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// Takes the tags with these keys off the namespace or discovery service (keys it does not have are no error): the
/// stack's tags that the configuration no longer has.
pub async fn remove_tags(client: &Client, arn: &str, keys: &[String]) -> AwsResult<()> {
    let out = client.untag_resource().resource_arn(arn).set_tag_keys(Some(keys.to_vec())).send().await;
    out.map_err(|e| AwsError::from_sdk("UntagResource", e))?;
    Ok(())
}

/// Gives the resource the tags of `tags` it lacks; reads them first unless `created` (this run created it
/// with them). Refuses another stack's resource.
async fn converge_tags(client: &Client, arn: &str, tags: &BTreeMap<String, String>, created: bool) -> AwsResult<()> {
    let current = if created || tags.is_empty() { tags.clone() } else { self::tags(client, arn).await? };
    super::refuse_foreign("TagResource", arn, &current, tags)?;
    let missing = super::tags_to_write(tags, &current);
    if missing.is_empty() {
        return Ok(());
    }
    client
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(tag_list(&missing)?))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("TagResource", e))?;
    Ok(())
}

/// The resource's tags.
pub async fn tags(client: &Client, arn: &str) -> AwsResult<BTreeMap<String, String>> {
    let out = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTagsForResource", e))?;
    Ok(super::tag_map(out.tags().iter().map(|t| (t.key(), t.value()))))
}

/// Finds the private DNS namespace by name; `None` when there is none.
pub async fn describe_namespace(client: &Client, name: &str) -> AwsResult<Option<Namespace>> {
    let filter = NamespaceFilter::builder()
        .name(NamespaceFilterName::Type)
        .values(NamespaceType::DnsPrivate.as_str())
        .condition(FilterCondition::Eq)
        .build()?;
    // Page by page, so the pages after the one holding it are never fetched.
    let mut pages = client.list_namespaces().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("ListNamespaces", e))?;
        if let Some(found) = find_private_namespace(page.namespaces(), name) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Creates the private DNS namespace in the VPC, or adopts the one already called `name`, and converges its tags.
/// A namespace with the same name is adopted whatever VPC it is in (Cloud Map's listing does not say), which
/// is why the name carries the stack's name. Creation is awaited up to `timeout`. May be called again after a
/// crash, including one in the middle of the creation operation; converges.
pub async fn ensure_private_namespace(
    client: &Client,
    name: &str,
    vpc_id: &str,
    tags: &BTreeMap<String, String>,
    timeout: Duration,
) -> AwsResult<Namespace> {
    let deadline = super::deadline_after(timeout);
    let (namespace, created) = match describe_namespace(client, name).await? {
        Some(found) => (found, false),
        None => create_private_namespace(client, name, vpc_id, tags, deadline, timeout).await?,
    };
    converge_tags(client, &namespace.arn, tags, created).await?;
    Ok(namespace)
}

async fn create_private_namespace(
    client: &Client,
    name: &str,
    vpc_id: &str,
    tags: &BTreeMap<String, String>,
    deadline: Instant,
    timeout: Duration,
) -> AwsResult<(Namespace, bool)> {
    let created = client
        .create_private_dns_namespace()
        .name(name)
        .vpc(vpc_id)
        .description("DataVault service discovery")
        .set_tags(Some(tag_list(tags)?))
        .send()
        .await;
    match created {
        Ok(out) => {
            let operation_id = out.operation_id().unwrap_or_default();
            let id = wait_operation(client, operation_id, &format!("creation of namespace {name}"), deadline, timeout)
                .await?;
            let namespace = match id {
                Some(id) => get_namespace(client, &id).await?,
                None => wait_for_namespace(client, name, deadline, timeout).await?,
            };
            Ok((namespace, true))
        }
        Err(err) => {
            let err = AwsError::from_sdk("CreatePrivateDnsNamespace", err);
            if err.is(&["NamespaceAlreadyExists", "DuplicateRequest"]) {
                // Another run (or our own crashed one) is creating it: wait until it is listed, then adopt it.
                Ok((wait_for_namespace(client, name, deadline, timeout).await?, false))
            } else if err.is(&["ConflictingDomainExists"]) {
                // Adopt it if it is ours under the same name; otherwise the conflict is the caller's to resolve.
                Ok((describe_namespace(client, name).await?.ok_or(err)?, false))
            } else {
                Err(err)
            }
        }
    }
}

async fn get_namespace(client: &Client, id: &str) -> AwsResult<Namespace> {
    let out = client.get_namespace().id(id).send().await.map_err(|e| AwsError::from_sdk("GetNamespace", e))?;
    let ns = out
        .namespace()
        .ok_or_else(|| AwsError::other("GetNamespace", format!("no namespace in the reply for {id}")))?;
    Ok(Namespace {
        id: ns.id().unwrap_or(id).to_string(),
        arn: ns.arn().unwrap_or_default().to_string(),
        name: ns.name().unwrap_or_default().to_string(),
    })
}

async fn wait_for_namespace(client: &Client, name: &str, deadline: Instant, timeout: Duration) -> AwsResult<Namespace> {
    let backoff = Backoff::up_to(POLL_INTERVAL);
    loop {
        if let Some(found) = describe_namespace(client, name).await? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(AwsError::other(
                "ListNamespaces",
                format!("namespace {name} was being created but did not appear within {timeout:?}"),
            ));
        }
        backoff.sleep_before(deadline).await;
    }
}

/// Polls an operation until it finishes; returns the namespace id it targeted.
async fn wait_operation(
    client: &Client,
    operation_id: &str,
    what: &str,
    deadline: Instant,
    timeout: Duration,
) -> AwsResult<Option<String>> {
    let backoff = Backoff::up_to(POLL_INTERVAL);
    loop {
        let out = client
            .get_operation()
            .operation_id(operation_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetOperation", e))?;
        let progress = out.operation().map_or(OperationProgress::Running, assess_operation);
        match progress {
            OperationProgress::Succeeded(target) => return Ok(target),
            OperationProgress::Failed(reason) => {
                return Err(AwsError::other("GetOperation", format!("{what} failed: {reason}")));
            }
            OperationProgress::Running if Instant::now() >= deadline => {
                return Err(AwsError::other(
                    "GetOperation",
                    format!("{what} (operation {operation_id}) did not finish within {timeout:?}"),
                ));
            }
            OperationProgress::Running => backoff.sleep_before(deadline).await,
        }
    }
}

/// Finds the discovery service called `name` in the namespace; `None` when there is none.
pub async fn describe_service(client: &Client, namespace_id: &str, name: &str) -> AwsResult<Option<DiscoveryService>> {
    let summaries = service_summaries(client, namespace_id).await?;
    find_service(client, &summaries, namespace_id, name).await
}

/// Every discovery service the namespace lists.
pub async fn service_summaries(client: &Client, namespace_id: &str) -> AwsResult<Vec<ListedService>> {
    let filter = ServiceFilter::builder()
        .name(ServiceFilterName::NamespaceId)
        .values(namespace_id)
        .condition(FilterCondition::Eq)
        .build()?;
    let mut pages = client.list_services().filters(filter).into_paginator().send();
    let mut summaries = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("ListServices", e))?;
        let listed = page.services().iter().filter_map(|s| {
            Some(ListedService { name: s.name()?.to_string(), id: s.id()?.to_string(), arn: s.arn()?.to_string() })
        });
        summaries.extend(listed);
    }
    Ok(summaries)
}

/// The discovery service called `name` among the namespace's `summaries` ([`service_summaries`]).
pub async fn find_service(
    client: &Client,
    summaries: &[ListedService],
    namespace_id: &str,
    name: &str,
) -> AwsResult<Option<DiscoveryService>> {
    for listed in summaries.iter().filter(|listed| same_dns_name(&listed.name, name)) {
        // Summaries do not say their namespace, and some implementations ignore the filter: confirm it.
        if let Some(found) = service_in_namespace(client, &listed.id, namespace_id).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// [`find_service`] with the service's tags, read while its namespace is confirmed (a refresh waits one
/// round trip for both).
pub async fn observe_service(
    client: &Client,
    summaries: &[ListedService],
    namespace_id: &str,
    name: &str,
) -> AwsResult<Option<(DiscoveryService, BTreeMap<String, String>)>> {
    for listed in summaries.iter().filter(|listed| same_dns_name(&listed.name, name)) {
        let (found, tags) =
            tokio::try_join!(service_in_namespace(client, &listed.id, namespace_id), tags(client, &listed.arn))?;
        if let Some(found) = found {
            return Ok(Some((found, tags)));
        }
    }
    Ok(None)
}

async fn service_in_namespace(client: &Client, id: &str, namespace_id: &str) -> AwsResult<Option<DiscoveryService>> {
    match client.get_service().id(id).send().await {
        Ok(out) => Ok(out.service().filter(|s| s.namespace_id() == Some(namespace_id)).map(|s| DiscoveryService {
            id: s.id().unwrap_or(id).to_string(),
            arn: s.arn().unwrap_or_default().to_string(),
        })),
        Err(err) => {
            let err = AwsError::from_sdk("GetService", err);
            if err.is(&["ServiceNotFound"]) { Ok(None) } else { Err(err) }
        }
    }
}

/// Creates the discovery service `name` in the namespace (A record, TTL [`DNS_TTL_SECONDS`], multivalue
/// routing, health reported by ECS), or adopts the existing one, and converges its tags. May be called again after a
/// crash; converges.
pub async fn ensure_service(
    client: &Client,
    namespace_id: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<DiscoveryService> {
    let (service, created) = match describe_service(client, namespace_id, name).await? {
        Some(found) => (found, false),
        None => create_service(client, namespace_id, name, tags).await?,
    };
    converge_tags(client, &service.arn, tags, created).await?;
    Ok(service)
}

async fn create_service(
    client: &Client,
    namespace_id: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> AwsResult<(DiscoveryService, bool)> {
    let created = client
        .create_service()
        .name(name)
        .namespace_id(namespace_id)
        .description("DataVault service discovery")
        .dns_config(dns_config()?)
        .health_check_custom_config(HealthCheckCustomConfig::builder().build())
        .set_tags(Some(tag_list(tags)?))
        .send()
        .await;
    match created {
        Ok(out) => {
            let s = out
                .service()
                .ok_or_else(|| AwsError::other("CreateService", format!("no service in the reply for {name}")))?;
            let service = DiscoveryService {
                id: s.id().unwrap_or_default().to_string(),
                arn: s.arn().unwrap_or_default().to_string(),
            };
            Ok((service, true))
        }
        Err(err) => {
            let err = AwsError::from_sdk("CreateService", err);
            if !err.is(&["ServiceAlreadyExists"]) {
                return Err(err);
            }
            // Created by a concurrent or crashed run between our look and our create: adopt it.
            Ok((describe_service(client, namespace_id, name).await?.ok_or(err)?, false))
        }
    }
}

/// Deregisters every instance still registered in the service (ECS normally does so when its service goes).
async fn deregister_instances(client: &Client, service_id: &str) -> AwsResult<()> {
    let mut pages = client.list_instances().service_id(service_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                let err = AwsError::from_sdk("ListInstances", err);
                return if err.is(&["ServiceNotFound"]) { Ok(()) } else { Err(err) };
            }
        };
        for instance in page.instances() {
            let Some(instance_id) = instance.id() else { continue };
            if let Err(err) = client.deregister_instance().service_id(service_id).instance_id(instance_id).send().await
            {
                let err = AwsError::from_sdk("DeregisterInstance", err);
                if !err.is(&["InstanceNotFound", "ServiceNotFound", "DuplicateRequest"]) {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Deletes the discovery service after deregistering any instance left in it, retrying while Cloud Map still
/// reports it in use (deregistration is asynchronous) for up to `timeout`; absent is success. May be called
/// again after a crash; converges.
pub async fn delete_service(client: &Client, id: &str, timeout: Duration) -> AwsResult<()> {
    let deadline = super::deadline_after(timeout);
    let backoff = Backoff::up_to(POLL_INTERVAL);
    loop {
        deregister_instances(client, id).await?;
        let err = match client.delete_service().id(id).send().await {
            Ok(_) => return Ok(()),
            Err(err) => AwsError::from_sdk("DeleteService", err),
        };
        if err.is(&["ServiceNotFound"]) {
            return Ok(());
        }
        if !err.is(&["ResourceInUse"]) {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(AwsError::other(
                "DeleteService",
                format!("Cloud Map service {id} was still in use after {timeout:?}: {}", err.message),
            ));
        }
        backoff.sleep_before(deadline).await;
    }
}

/// Deletes the namespace and waits for the deletion to finish, up to `timeout`; retries while it still holds
/// services being deleted; absent is success. May be called again after a crash; converges.
pub async fn delete_namespace(client: &Client, id: &str, timeout: Duration) -> AwsResult<()> {
    let deadline = super::deadline_after(timeout);
    let backoff = Backoff::up_to(POLL_INTERVAL);
    let operation_id = loop {
        let err = match client.delete_namespace().id(id).send().await {
            Ok(out) => break out.operation_id().unwrap_or_default().to_string(),
            Err(err) => AwsError::from_sdk("DeleteNamespace", err),
        };
        if err.is(&["NamespaceNotFound"]) {
            return Ok(());
        }
        if !err.is(&["ResourceInUse", "DuplicateRequest"]) {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(AwsError::other(
                "DeleteNamespace",
                format!("namespace {id} could not be deleted within {timeout:?}: {}", err.message),
            ));
        }
        backoff.sleep_before(deadline).await;
    };
    match wait_operation(client, &operation_id, &format!("deletion of namespace {id}"), deadline, timeout).await {
        Ok(_) => Ok(()),
        // Some implementations forget an operation once its namespace is gone: the namespace's absence decides.
        Err(err) if namespace_gone(client, id).await? => {
            tracing::debug!(namespace = id, error = %err, "namespace deleted; its operation is no longer listed");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

async fn namespace_gone(client: &Client, id: &str) -> AwsResult<bool> {
    match client.get_namespace().id(id).send().await {
        Ok(_) => Ok(false),
        Err(err) => {
            let err = AwsError::from_sdk("GetNamespace", err);
            if err.is(&["NamespaceNotFound"]) { Ok(true) } else { Err(err) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, kind: NamespaceType) -> NamespaceSummary {
        NamespaceSummary::builder()
            .id(format!("ns-{name}"))
            .arn(format!("arn:aws:servicediscovery:eu-west-2:123456789012:namespace/ns-{name}"))
            .name(name)
            .r#type(kind)
            .build()
    }

    #[test]
    fn finds_only_private_namespaces_by_dns_name() {
        let page = vec![
            summary("vault.datavault.internal", NamespaceType::Http),
            summary("other.datavault.internal", NamespaceType::DnsPrivate),
            summary("Vault.DataVault.Internal.", NamespaceType::DnsPrivate),
        ];
        let found = find_private_namespace(&page, "vault.datavault.internal").unwrap();
        assert_eq!(found.id, "ns-Vault.DataVault.Internal.");
        assert!(find_private_namespace(&page[..2], "vault.datavault.internal").is_none());
        assert!(find_private_namespace(&[], "vault.datavault.internal").is_none());
    }

    #[test]
    fn operation_states_drive_the_wait() {
        let done = Operation::builder()
            .status(OperationStatus::Success)
            .targets(OperationTargetType::Namespace, "ns-123")
            .build();
        assert_eq!(assess_operation(&done), OperationProgress::Succeeded(Some("ns-123".into())));
        let failed = Operation::builder()
            .status(OperationStatus::Fail)
            .error_code("CANNOT_CREATE_HOSTED_ZONE")
            .error_message("zone conflict")
            .build();
        match assess_operation(&failed) {
            OperationProgress::Failed(reason) => {
                assert!(reason.contains("CANNOT_CREATE_HOSTED_ZONE") && reason.contains("zone conflict"))
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        for status in [OperationStatus::Submitted, OperationStatus::Pending] {
            assert_eq!(assess_operation(&Operation::builder().status(status).build()), OperationProgress::Running);
        }
        assert_eq!(assess_operation(&Operation::builder().build()), OperationProgress::Running);
    }

    #[test]
    fn records_are_short_lived_multivalue_a_records() {
        let config = dns_config().unwrap();
        assert_eq!(config.routing_policy(), Some(&RoutingPolicy::Multivalue));
        assert_eq!(config.dns_records().len(), 1);
        assert_eq!(config.dns_records()[0].r#type(), &RecordType::A);
        assert_eq!(config.dns_records()[0].ttl(), 10);
    }
}
