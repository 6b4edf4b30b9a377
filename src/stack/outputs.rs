//! The stack's outputs in one table: each computed attribute that reports a part, the part it comes from
//! and which of the part's facts it shows. The schema declares them from here, apply and read fill them in
//! from here, and plan marks them unknown from here when their part has gone missing.

use std::collections::BTreeMap;

use crate::framework::{Attribute, Type, Value};

use super::model::COMPONENTS;
use super::parts::{Group, Part, PartState, group_key};
use super::service::Service;

/// Which fact of a part's state an output shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// [`PartState::arn`].
    Arn,
    /// [`PartState::id`].
    Id,
    /// [`PartState::url`].
    Url,
}

impl Fact {
    fn of(self, state: &PartState) -> Option<&String> {
        match self {
            Fact::Arn => state.arn.as_ref(),
            Fact::Id => state.id.as_ref(),
            Fact::Url => state.url.as_ref(),
        }
    }
}

/// A string output that shows one fact of one part.
#[derive(Debug, Clone, Copy)]
pub struct PartOutput {
    /// The attribute.
    pub attribute: &'static str,
    /// The part it reports.
    pub part: Part,
    /// What of the part it shows.
    pub fact: Fact,
    /// Its documentation.
    pub description: &'static str,
}

/// The string outputs, one part each.
pub const PART_OUTPUTS: [PartOutput; 11] = [
    PartOutput {
        attribute: "archive_bucket_arn",
        part: Part::ArchiveBucket,
        fact: Fact::Arn,
        description: "ARN of the archive bucket.",
    },
    PartOutput {
        attribute: "access_log_bucket_arn",
        part: Part::AccessLogBucket,
        fact: Fact::Arn,
        description: "ARN of the bucket the archive bucket's server access logs and the load balancer's access logs go to (`<name>-access-logs`); they expire after `log_retention_days`.",
    },
    PartOutput {
        attribute: "state_bucket_arn",
        part: Part::StateBucket,
        fact: Fact::Arn,
        description: "ARN of the state bucket.",
    },
    PartOutput {
        attribute: "log_group_arn",
        part: Part::LogGroup,
        fact: Fact::Arn,
        description: "ARN of the CloudWatch log group.",
    },
    PartOutput {
        attribute: "cluster_arn",
        part: Part::Cluster,
        fact: Fact::Arn,
        description: "ARN of the ECS cluster.",
    },
    PartOutput {
        attribute: "autoscaling_group_name",
        part: Part::AutoScalingGroup,
        fact: Fact::Id,
        description: "Name of the Auto Scaling group of container instances.",
    },
    PartOutput {
        attribute: "launch_template_id",
        part: Part::LaunchTemplate,
        fact: Fact::Id,
        description: "Id of the instances' launch template.",
    },
    PartOutput {
        attribute: "database_endpoint",
        part: Part::Database,
        fact: Fact::Url,
        description: "Address of the MySQL database.",
    },
    PartOutput {
        attribute: "database_secret_arn",
        part: Part::DatabaseSecret,
        fact: Fact::Arn,
        description: concat!(
            "ARN of the Secrets Manager secret holding the database master password (managed by RDS unless ",
            "`password_wo` is used). The password itself is never in state."
        ),
    },
    PartOutput {
        attribute: "rabbitmq_secret_arn",
        part: Part::RabbitmqSecret,
        fact: Fact::Arn,
        description: "ARN of the Secrets Manager secret holding the generated RabbitMQ password.",
    },
    PartOutput {
        attribute: "file_system_id",
        part: Part::FileSystem,
        fact: Fact::Id,
        description: "Id of the EFS file system (RabbitMQ data and the shared /tmp/datavault working folder).",
    },
];

/// The kinds of part a map output has one entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// The ECR repositories, keyed by component.
    Repositories,
    /// The security groups, keyed by [`group_key`].
    SecurityGroups,
    /// The ECS services, keyed by service.
    Services,
    /// The Cloud Map services of the discoverable services.
    Discovery,
}

/// A map output: one entry per part of a kind, keyed by the part's short name.
#[derive(Debug, Clone, Copy)]
pub struct MapOutput {
    /// The attribute.
    pub attribute: &'static str,
    /// The parts it has an entry for.
    pub parts: PartKind,
    /// What of each part it shows.
    pub fact: Fact,
    /// Its documentation.
    pub description: &'static str,
}

/// `ecr_repository_urls`.
pub const REPOSITORY_URLS: MapOutput = MapOutput {
    attribute: "ecr_repository_urls",
    parts: PartKind::Repositories,
    fact: Fact::Url,
    description: "Repository URLs to push the DataVault images to, keyed by `web`, `broker` and `worker`.",
};
/// `security_group_ids`.
pub const SECURITY_GROUP_IDS: MapOutput = MapOutput {
    attribute: "security_group_ids",
    parts: PartKind::SecurityGroups,
    fact: Fact::Id,
    description: concat!(
        "Security group ids, keyed by `instances`, `services`, `database` and `file_system`, and ",
        "`load_balancer` with a load balancer."
    ),
};
/// `service_arns`.
pub const SERVICE_ARNS: MapOutput = MapOutput {
    attribute: "service_arns",
    parts: PartKind::Services,
    fact: Fact::Arn,
    description: "ARNs of the ECS services, keyed by service.",
};
/// `service_discovery_names`.
pub const SERVICE_DISCOVERY_NAMES: MapOutput = MapOutput {
    attribute: "service_discovery_names",
    parts: PartKind::Discovery,
    fact: Fact::Url,
    description: concat!(
        "Private DNS names the services reach each other by, keyed by service (e.g. ",
        "`broker.<name>.datavault.internal`)."
    ),
};

/// The map outputs.
pub const MAP_OUTPUTS: [MapOutput; 4] = [REPOSITORY_URLS, SECURITY_GROUP_IDS, SERVICE_ARNS, SERVICE_DISCOVERY_NAMES];

impl MapOutput {
    /// The entries the map has once every part of its kind exists (`load_balancer`: whether the stack has
    /// one), with the part behind each.
    pub fn entries(&self, load_balancer: bool) -> Vec<(&'static str, Part)> {
        match self.parts {
            PartKind::Repositories => COMPONENTS.iter().enumerate().map(|(i, c)| (*c, Part::Repository(i))).collect(),
            PartKind::SecurityGroups => {
                let mut groups = vec![Group::Instances, Group::Services, Group::Database, Group::FileSystem];
                if load_balancer {
                    groups.push(Group::LoadBalancer);
                }
                groups.into_iter().map(|g| (group_key(g), Part::SecurityGroup(g))).collect()
            }
            PartKind::Services => Service::ALL.into_iter().map(|s| (s.name(), Part::Service(s))).collect(),
            PartKind::Discovery => {
                let discoverable = Service::ALL.into_iter().filter(|s| s.is_discoverable());
                discoverable.map(|s| (s.name(), Part::Discovery(s))).collect()
            }
        }
    }

    /// The map as the parts in `done` make it; entries whose part is missing are left out.
    fn value(&self, done: &BTreeMap<Part, PartState>, load_balancer: bool) -> Value {
        let entries = self.entries(load_balancer).into_iter().filter_map(|(key, part)| {
            let fact = done.get(&part).and_then(|state| self.fact.of(state))?;
            Some((key.to_string(), Value::string(fact)))
        });
        Value::Map(entries.collect())
    }
}

/// The schema attributes of the table's outputs.
pub fn attributes() -> Vec<Attribute> {
    let strings = PART_OUTPUTS.iter().map(|o| Attribute::computed(o.attribute, Type::String, o.description));
    let maps = MAP_OUTPUTS.iter().map(|o| Attribute::computed(o.attribute, Type::map_of_strings(), o.description));
    strings.chain(maps).collect()
}

/// Sets every output of the table in `state` from the parts in `done`. The security groups include the load
/// balancer's whenever it exists, so a group left behind by a removed `load_balancer` still shows.
pub fn fill(state: &mut Value, done: &BTreeMap<Part, PartState>) {
    for output in PART_OUTPUTS {
        let fact = done.get(&output.part).and_then(|s| output.fact.of(s)).cloned();
        state.set(output.attribute, Value::opt_string(fact));
    }
    for output in MAP_OUTPUTS {
        state.set(output.attribute, output.value(done, true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_is_declared_once() {
        let attributes = attributes();
        let names: Vec<&str> = attributes.iter().map(|a| a.name.as_str()).collect();
        let unique: std::collections::BTreeSet<&&str> = names.iter().collect();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        assert_eq!(names.len(), PART_OUTPUTS.len() + MAP_OUTPUTS.len());
    }

    #[test]
    fn outputs_show_the_fact_of_their_part_and_leave_out_missing_parts() {
        let done = BTreeMap::from([
            (Part::ArchiveBucket, PartState { arn: Some("arn:aws:s3:::vault-archive".into()), ..Default::default() }),
            (Part::Repository(0), PartState { url: Some("1.dkr.ecr/vault/web".into()), ..Default::default() }),
            (Part::SecurityGroup(Group::LoadBalancer), PartState::with_id("sg-lb")),
        ]);
        let mut state = Value::Map(BTreeMap::new());
        fill(&mut state, &done);
        assert_eq!(state.get("archive_bucket_arn").as_str(), Some("arn:aws:s3:::vault-archive"));
        assert!(state.get("cluster_arn").is_null());
        let urls = state.get("ecr_repository_urls").as_string_map().unwrap();
        assert_eq!(urls, BTreeMap::from([("web".to_string(), "1.dkr.ecr/vault/web".to_string())]));
        assert_eq!(state.get("security_group_ids").get("load_balancer").as_str(), Some("sg-lb"));
        assert_eq!(SECURITY_GROUP_IDS.entries(false).len(), 4);
        assert_eq!(SERVICE_DISCOVERY_NAMES.entries(false).len(), 3);
    }
}
