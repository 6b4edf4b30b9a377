//! Reads a survey shares between parts.
//!
//! Where one request can answer several parts (EC2 describes every security group of the stack by name at
//! once, ECS up to ten services, Cloud Map lists a namespace's services), the first part that asks makes
//! the request and the others wait for its answer: one request per kind instead of one per part.
//!
//! A survey also starts every part at once and publishes each observation here as it arrives, so a part
//! waits for another only where it needs it: before its own requests when it cannot find its resource
//! without the other's id (a mount target needs its file system's), and otherwise only when it judges
//! drift. A refresh then costs the longest chain of lookups, not the depth of the creation graph.
//!
//! Only surveys share reads: ensure and remove always ask afresh, since what they read must follow what
//! they have just written.

use std::collections::BTreeMap;

use tokio::sync::{OnceCell, watch};

use crate::aws::{self, AwsError, AwsResult};

use super::data::creation_token;
use super::network::group_name;
use super::{Group, Part, PartContext, PartResult, PartState};
use crate::stack::model::namespace_name;
use crate::stack::service::Service;

/// The shared answers of one survey.
#[derive(Debug, Default)]
pub struct SharedReads {
    /// Each surveyed part's observation once it is known: `None` until then, `Some(None)` when the part
    /// does not exist, is not the stack's own, or could not be read (that failure is reported by the part
    /// itself, and makes the whole survey fail).
    observed: BTreeMap<Part, watch::Sender<Option<Option<PartState>>>>,
    /// Whether the parts judge drift (a refresh) or only find what exists and whose it is.
    skips_drift: bool,
    security_groups: OnceCell<Result<Vec<aws::ec2::SecurityGroup>, AwsError>>,
    services: OnceCell<Result<BTreeMap<String, aws_sdk_ecs::types::Service>, AwsError>>,
    namespace: OnceCell<Result<Option<aws::servicediscovery::Namespace>, AwsError>>,
    file_system: OnceCell<Result<Option<aws_sdk_efs::types::FileSystemDescription>, AwsError>>,
    access_points: OnceCell<Result<Vec<aws_sdk_efs::types::AccessPointDescription>, AwsError>>,
    discovery: OnceCell<Result<Vec<aws::servicediscovery::ListedService>, AwsError>>,
}

/// Every security group a stack may have, for the one request that finds them all.
const GROUPS: [Group; 5] = [Group::Instances, Group::Services, Group::Database, Group::FileSystem, Group::LoadBalancer];

/// The group named `name` in the VPC, from groups found by name in every VPC: the same name in another
/// VPC is someone else's group.
fn in_vpc(groups: Vec<aws::ec2::SecurityGroup>, vpc_id: &str, name: &str) -> Option<aws::ec2::SecurityGroup> {
    groups.into_iter().find(|g| g.vpc_id == vpc_id && g.name == name)
}

/// The stored answer, or its error again (each part that waited reports it as its own).
fn answer<T: Clone>(stored: &Result<T, AwsError>) -> AwsResult<T> {
    stored.clone()
}

impl SharedReads {
    /// The shared reads of a survey of `parts`.
    pub fn for_parts(parts: &[Part]) -> Self {
        let observed = parts.iter().map(|p| (*p, watch::Sender::new(None))).collect();
        SharedReads { observed, ..SharedReads::default() }
    }

    /// The same reads, judging drift only when `judge` says so (see [`PartContext::judges_drift`]).
    pub fn judging_drift(self, judge: bool) -> Self {
        SharedReads { skips_drift: !judge, ..self }
    }

    /// Whether the survey judges drift.
    pub fn judges_drift(&self) -> bool {
        !self.skips_drift
    }

    /// Publishes what the survey found of `part`: its state when it is the stack's own, `None` otherwise
    /// (a look-alike's id never ends up in another part's request).
    pub fn publish(&self, part: Part, own: Option<PartState>) {
        if let Some(cell) = self.observed.get(&part) {
            cell.send_replace(Some(own));
        }
    }

    /// The survey's observation of `part`, once it is published; `None` when it is not the stack's own.
    pub async fn observed(&self, part: Part) -> Option<PartState> {
        let mut receiver = self.observed.get(&part)?.subscribe();
        let published = receiver.wait_for(Option::is_some).await.ok()?;
        published.clone().flatten()
    }

    /// Starts the survey's one request for every security group the stack may have, by name in any VPC, so
    /// that it runs beside the VPC's own lookup; [`SharedReads::security_group`] then picks from its answer.
    pub async fn look_up_security_groups(&self, ctx: &PartContext<'_>) {
        // An error is kept in the cell and reported by `security_group`.
        let _ = self.all_security_groups(ctx).await;
    }

    /// The stack's security group `group` in the VPC, as found by the survey's one request for all of them.
    pub async fn security_group(
        &self,
        ctx: &PartContext<'_>,
        vpc_id: &str,
        group: Group,
    ) -> PartResult<Option<aws::ec2::SecurityGroup>> {
        let found = answer(self.all_security_groups(ctx).await)?;
        Ok(in_vpc(found, vpc_id, &group_name(&ctx.spec.name, group)))
    }

    async fn all_security_groups(&self, ctx: &PartContext<'_>) -> &Result<Vec<aws::ec2::SecurityGroup>, AwsError> {
        let names: Vec<String> = GROUPS.iter().map(|g| group_name(&ctx.spec.name, *g)).collect();
        self.security_groups.get_or_init(|| aws::ec2::security_groups_named(&ctx.aws.ec2, &names)).await
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

    /// The namespace under the stack's name, whoever owns it: the namespace part and the discovery services
    /// inside it look it up once.
    pub async fn namespace(&self, ctx: &PartContext<'_>) -> PartResult<Option<aws::servicediscovery::Namespace>> {
        let (client, name) = (&ctx.aws.servicediscovery, namespace_name(&ctx.spec.name));
        let found = self.namespace.get_or_init(|| aws::servicediscovery::describe_namespace(client, &name)).await;
        Ok(answer(found)?)
    }

    /// The file system under the stack's creation token, whoever owns it: the file system part, its mount
    /// targets and its access points look it up once.
    pub async fn file_system(
        &self,
        ctx: &PartContext<'_>,
    ) -> PartResult<Option<aws_sdk_efs::types::FileSystemDescription>> {
        let (client, token) = (&ctx.aws.efs, creation_token(&ctx.spec.name));
        let found = self.file_system.get_or_init(|| aws::efs::describe_by_token(client, &token)).await;
        Ok(answer(found)?)
    }

    /// The access point `spec` names on the file system `fs_id` (the survey's one file system), found among
    /// the survey's one listing of its access points.
    pub async fn access_point(
        &self,
        ctx: &PartContext<'_>,
        fs_id: &str,
        spec: &aws::efs::AccessPointSpec,
    ) -> PartResult<Option<aws::efs::AccessPointObservation>> {
        let found = self.access_points.get_or_init(|| aws::efs::access_points(&ctx.aws.efs, fs_id)).await;
        Ok(aws::efs::pick_access_point(&answer(found)?, spec))
    }

    /// The discovery service of `service` in the stack's namespace, with its tags, found among the names the
    /// survey's one listing of the namespace returned.
    pub async fn discovery_service(
        &self,
        ctx: &PartContext<'_>,
        namespace_id: &str,
        service: Service,
    ) -> PartResult<Option<(aws::servicediscovery::DiscoveryService, BTreeMap<String, String>)>> {
        let client = &ctx.aws.servicediscovery;
        let listed =
            self.discovery.get_or_init(|| aws::servicediscovery::service_summaries(client, namespace_id)).await;
        Ok(aws::servicediscovery::observe_service(client, &answer(listed)?, namespace_id, service.name()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_observation_is_awaited_until_it_is_published() {
        let reads = SharedReads::for_parts(&[Part::Network, Part::FileSystem]);
        let waiting = reads.observed(Part::FileSystem);
        tokio::pin!(waiting);
        // Nothing published yet: the waiter is still waiting.
        assert!(futures_util::FutureExt::now_or_never(&mut waiting).is_none());
        reads.publish(Part::FileSystem, Some(PartState::with_id("fs-1")));
        assert_eq!(waiting.await.and_then(|s| s.id).as_deref(), Some("fs-1"));
    }

    #[test]
    fn a_survey_judges_drift_unless_told_not_to() {
        assert!(SharedReads::for_parts(&[Part::Network]).judges_drift());
        assert!(!SharedReads::for_parts(&[Part::Network]).judging_drift(false).judges_drift());
        assert!(SharedReads::for_parts(&[Part::Network]).judging_drift(true).judges_drift());
    }

    #[test]
    fn a_group_is_picked_by_its_vpc_and_name() {
        let group = |id: &str, name: &str, vpc_id: &str| aws::ec2::SecurityGroup {
            id: id.to_string(),
            name: name.to_string(),
            vpc_id: vpc_id.to_string(),
            ..Default::default()
        };
        let found = vec![
            group("sg-other", "dv-services", "vpc-other"),
            group("sg-db", "dv-database", "vpc-1"),
            group("sg-ours", "dv-services", "vpc-1"),
        ];
        assert_eq!(in_vpc(found.clone(), "vpc-1", "dv-services").map(|g| g.id).as_deref(), Some("sg-ours"));
        assert_eq!(in_vpc(found.clone(), "vpc-other", "dv-services").map(|g| g.id).as_deref(), Some("sg-other"));
        assert_eq!(in_vpc(found, "vpc-2", "dv-services"), None, "not in this VPC");
    }

    #[tokio::test]
    async fn an_absent_or_foreign_part_and_one_outside_the_survey_are_none() {
        let reads = SharedReads::for_parts(&[Part::Network]);
        reads.publish(Part::Network, None);
        assert_eq!(reads.observed(Part::Network).await, None);
        // Not surveyed: answered at once rather than awaited forever.
        assert_eq!(reads.observed(Part::Database).await, None);
    }
}
