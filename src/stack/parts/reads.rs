//! Reads a survey shares between parts: where one request can answer several parts (EC2 describes every
//! security group of the stack by name at once, ECS up to ten services, Cloud Map lists a namespace's
//! services), the first part that asks makes the
//! request and the others wait for its answer. A survey observes every part concurrently, so this turns
//! one request per part into one per kind. Only surveys share reads: ensure and remove always ask afresh,
//! since what they read must follow what they have just written.

use std::collections::BTreeMap;

use tokio::sync::OnceCell;

use crate::aws::{self, AwsError, AwsResult};

use super::network::group_name;
use super::{Group, PartContext, PartResult};
use crate::stack::service::Service;

/// The shared answers of one survey.
#[derive(Debug, Default)]
pub struct SharedReads {
    security_groups: OnceCell<Result<BTreeMap<String, aws::ec2::SecurityGroup>, AwsError>>,
    services: OnceCell<Result<BTreeMap<String, aws_sdk_ecs::types::Service>, AwsError>>,
    discovery: OnceCell<Result<Vec<(String, String)>, AwsError>>,
}

/// Every security group a stack may have, for the one request that finds them all.
const GROUPS: [Group; 5] = [Group::Instances, Group::Services, Group::Database, Group::FileSystem, Group::LoadBalancer];

/// The stored answer, or its error again (each part that waited reports it as its own).
fn answer<T: Clone>(stored: &Result<T, AwsError>) -> AwsResult<T> {
    stored.clone()
}

impl SharedReads {
    /// The stack's security group `group` in the VPC, as found by the survey's one request for all of them.
    pub async fn security_group(
        &self,
        ctx: &PartContext<'_>,
        vpc_id: &str,
        group: Group,
    ) -> PartResult<Option<aws::ec2::SecurityGroup>> {
        let names: Vec<String> = GROUPS.iter().map(|g| group_name(&ctx.spec.name, *g)).collect();
        let found =
            self.security_groups.get_or_init(|| aws::ec2::security_groups_named(&ctx.aws.ec2, vpc_id, &names)).await;
        Ok(answer(found)?.remove(&group_name(&ctx.spec.name, group)))
    }

    /// The stack's ECS service `service` in its cluster, in any status, as found by the survey's one
    /// request for all four.
    pub async fn service(
        &self,
        ctx: &PartContext<'_>,
        service: Service,
    ) -> PartResult<Option<aws_sdk_ecs::types::Service>> {
        let names: Vec<String> = Service::ALL.iter().map(|s| s.name().to_string()).collect();
        let found = self.services.get_or_init(|| aws::ecs::find_services(&ctx.aws.ecs, &ctx.spec.name, &names)).await;
        Ok(answer(found)?.remove(service.name()))
    }

    /// The discovery service of `service` in the stack's namespace, found among the names the survey's one
    /// listing of the namespace returned.
    pub async fn discovery_service(
        &self,
        ctx: &PartContext<'_>,
        namespace_id: &str,
        service: Service,
    ) -> PartResult<Option<aws::servicediscovery::DiscoveryService>> {
        let client = &ctx.aws.servicediscovery;
        let listed =
            self.discovery.get_or_init(|| aws::servicediscovery::service_summaries(client, namespace_id)).await;
        Ok(aws::servicediscovery::find_service(client, &answer(listed)?, namespace_id, service.name()).await?)
    }
}
