//! Plan-time checks that need AWS: what AWS would otherwise refuse only at apply, after other parts were
//! already made. Each asks with read-only calls, and only when the plan creates the stack or changes the
//! setting concerned, so a plan that changes nothing asks nothing. Every refusal carries the path of the
//! attribute to fix.

use std::collections::BTreeSet;

use crate::aws::s3::BucketAccess;
use crate::aws::{self, AwsContext};
use crate::framework::{AttributePath, Diagnostic, Diagnostics, Value};

use super::model::{COMPONENTS, StackSpec, repository_name};
use super::parts::{SOURCE_BRANCH, SOURCE_COMMIT, SOURCE_REPOSITORY};

/// Runs the checks the change calls for. `prior` is null when the stack is being created; a setting the
/// configuration does not know yet (it comes from another resource) is not checked.
pub async fn plan_checks(
    aws: &AwsContext,
    spec: &StackSpec,
    prior: &Value,
    planned: &Value,
    config: &Value,
) -> Diagnostics {
    let changed = |path: &[&str]| prior.is_null() || at(prior, path) != at(planned, path);
    let known = |path: &[&str]| !at(config, path).is_unknown() && !at(config, &path[..1]).is_unknown();
    let (vpc, subnets, instance_type) = (["vpc_id"], ["subnet_ids"], ["cluster", "instance_type"]);
    let mut diagnostics = Diagnostics::new();
    let network = async {
        let public = ["load_balancer", "subnet_ids"];
        let wanted = (changed(&vpc) || changed(&subnets) || changed(&public)) && known(&vpc) && known(&subnets);
        if wanted { check_network(aws, spec, planned).await } else { Ok(vec![]) }
    };
    let instance_type = async {
        if changed(&instance_type) && known(&instance_type) { check_instance_type(aws, spec).await } else { Ok(vec![]) }
    };
    let buckets = async {
        let wanted = prior.is_null() && known(&["archive_bucket_name"]) && known(&["state_bucket_name"]);
        if wanted { check_buckets(aws, spec, planned).await } else { Ok(vec![]) }
    };
    let images = async {
        let overrides = |v: &Value| COMPONENTS.map(|c| v.get("services").get(c).get("image").clone());
        let wanted = (prior.is_null() || changed(&["image_tag"]) || overrides(prior) != overrides(planned))
            && known(&["image_tag"])
            && !config.get("services").is_unknown();
        if wanted { check_images(aws, spec).await } else { Ok(vec![]) }
    };
    let key = async {
        let wanted = spec.kms_key_arn.is_some() && changed(&["kms_key_arn"]) && known(&["kms_key_arn"]);
        if wanted { check_kms_key(aws, spec).await } else { Ok(vec![]) }
    };
    let (network, instance_type, buckets, images, key) = tokio::join!(network, instance_type, buckets, images, key);
    for result in [network, instance_type, buckets, images, key] {
        match result {
            Ok(found) => diagnostics.0.extend(found),
            Err(e) => diagnostics.warning(
                "Check Not Made",
                format!("Stack {}: a plan-time check could not ask AWS ({e}); apply will find out instead.", spec.name),
            ),
        }
    }
    diagnostics
}

/// The value at `path` (attribute names, outermost first).
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, name| v.get(name))
}

fn refuse(path: AttributePath, summary: &str, detail: String) -> Diagnostic {
    Diagnostic::error(summary, detail).at(path)
}

/// The key exists in the stack's region and can encrypt data for the services the stack uses (refused
/// otherwise), and its policy lets the two principals that use it outside the stack's own roles do so
/// (a warning: a grant can also give them the key, and the caller may not read the policy).
async fn check_kms_key(aws: &AwsContext, spec: &StackSpec) -> aws::AwsResult<Vec<Diagnostic>> {
    let Some(arn) = &spec.kms_key_arn else { return Ok(vec![]) };
    let path = AttributePath::root("kms_key_arn");
    let key_region = arn.split(':').nth(3).unwrap_or_default();
    if key_region != spec.region {
        let detail = format!(
            "The key {arn} is in {key_region}, and the stack is in {}: every service encrypts with keys of its own \
             region only. Give a key of {} (or a replica of this multi-Region key there).",
            spec.region, spec.region
        );
        return Ok(vec![refuse(path, "KMS Key In Another Region", detail)]);
    }
    let Some(key) = aws::kms::describe(&aws.kms, arn).await? else {
        let detail = format!(
            "KMS has no key {arn} that this account can use. Check the ARN, and that the key policy lets this \
             account use a key of another account."
        );
        return Ok(vec![refuse(path, "KMS Key Not Found", detail)]);
    };
    let problems = aws::kms::key_problems(&key);
    if !problems.is_empty() {
        let detail = format!("The stack cannot encrypt with {arn}: {}.", problems.join("; "));
        return Ok(vec![refuse(path, "Unusable KMS Key", detail)]);
    }
    let (Some(account), Some(policy)) = (&aws.account_id, aws::kms::policy(&aws.kms, arn).await?) else {
        return Ok(vec![]);
    };
    let logs = aws::kms::logs_service_principal(&spec.region);
    let autoscaling = aws::kms::autoscaling_service_role(&spec.partition, account);
    let missing = aws::kms::principals_not_allowed(&policy, &[&logs, &autoscaling]);
    let consequences = missing.iter().map(|principal| {
        if *principal == logs {
            format!("{logs} (CloudWatch Logs: creating the log groups fails with AccessDeniedException)")
        } else {
            format!(
                "{autoscaling} (Auto Scaling: instances with encrypted root volumes fail to launch with \
                 Client.InternalError, unless a grant gives it the key)"
            )
        }
    });
    let consequences: Vec<String> = consequences.collect();
    Ok(if consequences.is_empty() {
        vec![]
    } else {
        vec![
            Diagnostic::warning(
                "KMS Key Policy Does Not Name All Users",
                format!(
                    "The key policy of {arn} does not allow {}. Add a statement allowing kms:Encrypt*, kms:Decrypt*, \
                     kms:ReEncrypt*, kms:GenerateDataKey* and kms:Describe* to each (see the provider's security \
                     guide).",
                    consequences.join(", nor ")
                ),
            )
            .at(path),
        ]
    })
}

/// The VPC exists; the subnets exist, belong to it and span at least two availability zones (RDS and the
/// load balancer need two).
async fn check_network(aws: &AwsContext, spec: &StackSpec, planned: &Value) -> aws::AwsResult<Vec<Diagnostic>> {
    let client = &aws.ec2;
    let vpc = match &spec.vpc_id {
        Some(id) => aws::ec2::vpc(client, id).await?,
        None => aws::ec2::default_vpc(client).await?,
    };
    let Some(vpc) = vpc else {
        let detail = match &spec.vpc_id {
            Some(id) => format!("VPC {id} does not exist in {}. Check vpc_id and the provider's region.", spec.region),
            None => format!(
                "{} has no default VPC, so the stack does not know where to go. Set vpc_id and subnet_ids.",
                spec.region
            ),
        };
        return Ok(vec![refuse(AttributePath::root("vpc_id"), "VPC Not Found", detail)]);
    };
    let (subnets, configured) = match &spec.subnet_ids {
        Some(ids) => (aws::ec2::existing_subnets(client, ids).await?, ids.clone()),
        None => (aws::ec2::subnets_in_vpc(client, &vpc.id).await?, Vec::new()),
    };
    let mut found = Vec::new();
    let path = AttributePath::root("subnet_ids");
    for (i, id) in configured.iter().enumerate() {
        let problem = match subnets.iter().find(|s| &s.id == id) {
            None => format!("Subnet {id} does not exist in {}.", spec.region),
            Some(subnet) if subnet.vpc_id != vpc.id => {
                format!("Subnet {id} belongs to {}, not to the stack's VPC {}.", subnet.vpc_id, vpc.id)
            }
            Some(_) => continue,
        };
        found.push(refuse(path.index(i as i64), "Invalid Subnet", problem));
    }
    let zones: BTreeSet<&str> =
        subnets.iter().filter(|s| s.vpc_id == vpc.id).map(|s| s.availability_zone.as_str()).collect();
    if let Some(public) = spec.load_balancer.as_ref().and_then(|lb| lb.subnet_ids.as_ref()) {
        found.extend(check_load_balancer_subnets(client, spec, &vpc.id, public).await?);
    }
    if found.is_empty() && zones.len() < 2 {
        let whose =
            if configured.is_empty() { format!("The default subnets of {}", vpc.id) } else { "subnet_ids".into() };
        let attribute =
            if planned.get("subnet_ids").is_unknown() || configured.is_empty() { "vpc_id" } else { "subnet_ids" };
        found.push(refuse(
            AttributePath::root(attribute),
            "Subnets In Too Few Availability Zones",
            format!(
                "{whose} cover {} availability zone(s): {}. The database's subnet group and the load balancer need \
                 subnets in at least two zones.",
                zones.len(),
                zones.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // Only a network that passed every check above is worth asking about its routes.
    if found.is_empty() {
        let mine: Vec<&aws::ec2::Subnet> = subnets.iter().filter(|s| s.vpc_id == vpc.id).collect();
        let ids: Vec<String> = mine.iter().map(|s| s.id.clone()).collect();
        let (routes, endpoints) = tokio::join!(
            aws::ec2::subnet_routes(client, &vpc.id, &ids),
            aws::ec2::interface_endpoint_services(client, &vpc.id)
        );
        let at = AttributePath::root(if configured.is_empty() { "vpc_id" } else { "subnet_ids" });
        found.extend(egress_warnings(&spec.name, &mine, &routes?, &endpoints?, at));
    }
    Ok(found)
}

/// What the container instances reach AWS through when their subnet has no way out: the ECS agent's
/// endpoints, image pulls, log delivery and the secrets the agent hands to tasks (S3, for image layers and
/// the archive, goes through the stack's own gateway endpoint).
pub const INSTANCE_ENDPOINTS: [&str; 7] =
    ["ecs", "ecs-agent", "ecs-telemetry", "ecr.api", "ecr.dkr", "logs", "secretsmanager"];

/// Warnings for subnets the stack's instances or tasks could not get out of. Instances need a way to ECS,
/// ECR, CloudWatch Logs and Secrets Manager: a forwarded default route (NAT gateway and the like), an
/// internet gateway with public addresses, or interface endpoints. Tasks (awsvpc on EC2 never have a
/// public address) need a forwarded route or an `ssmmessages` endpoint for ECS Exec sessions. Warnings,
/// not errors: routes can be added after the plan, and a way out the stack cannot see (a proxy) may exist.
pub fn egress_warnings(
    stack: &str,
    subnets: &[&aws::ec2::Subnet],
    routes: &std::collections::BTreeMap<String, aws::ec2::SubnetRoute>,
    endpoints: &BTreeSet<String>,
    at: AttributePath,
) -> Vec<Diagnostic> {
    use aws::ec2::DefaultRoute;
    let missing_endpoints: Vec<&str> = INSTANCE_ENDPOINTS.iter().copied().filter(|e| !endpoints.contains(*e)).collect();
    let mut stranded = Vec::new();
    let mut no_exec = Vec::new();
    for subnet in subnets {
        let Some(route) = routes.get(&subnet.id) else { continue };
        let why = match &route.default_route {
            DefaultRoute::Forwarded(_) => continue,
            DefaultRoute::InternetGateway(_) if subnet.public_ip_on_launch => None,
            DefaultRoute::InternetGateway(igw) => {
                Some(format!("a route to internet gateway {igw}, but the subnet gives instances no public address"))
            }
            DefaultRoute::Missing => Some("no route out of the VPC (no 0.0.0.0/0 route)".to_string()),
        };
        if !endpoints.contains("ssmmessages") {
            no_exec.push(subnet.id.clone());
        }
        if let Some(why) = why.filter(|_| !missing_endpoints.is_empty()) {
            stranded.push(format!("- {} (route table {}): {why}", subnet.id, route.table_id));
        }
    }
    let mut warnings = Vec::new();
    if !stranded.is_empty() {
        warnings.push(
            Diagnostic::warning(
                "Instances Cannot Reach AWS",
                format!(
                    "Stack {stack}: container instances in these subnets could not reach ECS, ECR, CloudWatch Logs \
                     or Secrets Manager, so no task would start there:\n{}\nRoute the subnets' 0.0.0.0/0 through a \
                     NAT gateway, or add interface endpoints with private DNS to the VPC for: {}.",
                    stranded.join("\n"),
                    missing_endpoints.join(", ")
                ),
            )
            .at(at.clone()),
        );
    }
    if !no_exec.is_empty() {
        warnings.push(
            Diagnostic::warning(
                "ECS Exec Cannot Connect",
                format!(
                    "Stack {stack}: tasks in {} have no public address (tasks in awsvpc mode on EC2 never do), no \
                     route through a NAT gateway and no ssmmessages interface endpoint, so `aws ecs execute-command` \
                     sessions could not connect; the services themselves run. Add a NAT gateway route, or an \
                     ssmmessages interface endpoint with private DNS, to use ECS Exec.",
                    no_exec.join(", ")
                ),
            )
            .at(at),
        );
    }
    warnings
}

/// The load balancer's own subnets exist, belong to the stack's VPC and span two zones.
async fn check_load_balancer_subnets(
    client: &aws_sdk_ec2::Client,
    spec: &StackSpec,
    vpc_id: &str,
    ids: &[String],
) -> aws::AwsResult<Vec<Diagnostic>> {
    let subnets = aws::ec2::existing_subnets(client, ids).await?;
    let path = AttributePath::root("load_balancer").attribute("subnet_ids");
    let mut found = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let problem = match subnets.iter().find(|s| &s.id == id) {
            None => format!("Subnet {id} does not exist in {}.", spec.region),
            Some(subnet) if subnet.vpc_id != vpc_id => {
                format!("Subnet {id} belongs to {}, not to the stack's VPC {vpc_id}.", subnet.vpc_id)
            }
            Some(_) => continue,
        };
        found.push(refuse(path.index(i as i64), "Invalid Subnet", problem));
    }
    let zones: BTreeSet<&str> = subnets.iter().map(|s| s.availability_zone.as_str()).collect();
    if found.is_empty() && zones.len() < 2 {
        found.push(refuse(
            path,
            "Subnets In Too Few Availability Zones",
            format!(
                "The load balancer's subnets cover {} availability zone(s); an Application Load Balancer needs two.",
                zones.len()
            ),
        ));
    }
    Ok(found)
}

/// The region offers the instance type.
async fn check_instance_type(aws: &AwsContext, spec: &StackSpec) -> aws::AwsResult<Vec<Diagnostic>> {
    let instance_type = &spec.cluster.instance_type;
    if aws::ec2::instance_type_offered(&aws.ec2, instance_type).await? {
        return Ok(vec![]);
    }
    Ok(vec![refuse(
        AttributePath::root("cluster").attribute("instance_type"),
        "Instance Type Not Offered",
        format!("EC2 does not offer {instance_type} in {}. Choose an instance type the region offers.", spec.region),
    )])
}

/// Whether the stack's repositories hold the images the services will run. A missing image is no error
/// (apply creates the services without starting them), but the plan says which are missing and where
/// they go; images from elsewhere (`services.<name>.image`) cannot be checked and are not.
async fn check_images(aws: &AwsContext, spec: &StackSpec) -> aws::AwsResult<Vec<Diagnostic>> {
    let registry = match &aws.account_id {
        Some(account) => format!("{account}.dkr.ecr.{}.amazonaws.com", spec.region),
        None => format!("<account>.dkr.ecr.{}.amazonaws.com", spec.region),
    };
    // One request per repository, all at once.
    let checks = COMPONENTS
        .iter()
        .filter(|c| spec.service(c).image.is_none())
        .map(|component| missing_image(aws, spec, component, &registry));
    let missing: Vec<String> = futures_util::future::try_join_all(checks).await?.into_iter().flatten().collect();
    if missing.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![
        Diagnostic::warning(
            "Images Not Pushed Yet",
            format!(
                "Stack {}: the stack's repositories do not hold these images at tag {}, so apply creates their \
                 services without starting them:\n{}\nBuild them from {SOURCE_REPOSITORY} (branch {SOURCE_BRANCH}, \
                 commit {SOURCE_COMMIT}) and push them; the next plan then shows the services starting.",
                spec.name,
                spec.image_tag,
                missing.iter().map(|m| format!("- {m}")).collect::<Vec<_>>().join("\n")
            ),
        )
        .at(AttributePath::root("image_tag")),
    ])
}

/// `<component>: <push target>` when the stack's repository for `component` lacks the image.
async fn missing_image(
    aws: &AwsContext,
    spec: &StackSpec,
    component: &str,
    registry: &str,
) -> aws::AwsResult<Option<String>> {
    let repository = repository_name(&spec.name, component);
    let present = aws::ecr::has_image(&aws.ecr, &repository, &spec.image_tag).await?;
    Ok((!present).then(|| format!("{component}: {registry}/{repository}:{}", spec.image_tag)))
}

/// The bucket names are free or reachable by this account. S3 bucket names are global: a name another
/// account holds can never be created here. Whether a reachable bucket is the stack's own is judged by the
/// survey that follows.
async fn check_buckets(aws: &AwsContext, spec: &StackSpec, planned: &Value) -> aws::AwsResult<Vec<Diagnostic>> {
    let buckets = [
        (&spec.archive_bucket, "archive_bucket_name"),
        (&spec.state_bucket, "state_bucket_name"),
        (&spec.access_log_bucket, "name"),
    ];
    // One request per bucket, all at once.
    let access = futures_util::future::try_join_all(buckets.iter().map(|(bucket, _)| aws::s3::access(&aws.s3, bucket)));
    let mut found = Vec::new();
    for ((bucket, attribute), access) in buckets.into_iter().zip(access.await?) {
        let problem = match access {
            BucketAccess::Absent | BucketAccess::Reachable => continue,
            BucketAccess::Forbidden => format!(
                "The S3 bucket name {bucket} is taken by another AWS account (or this account may not see it). \
                 Bucket names are global across all accounts: choose another name."
            ),
            BucketAccess::ElsewhereIn(region) => format!(
                "The S3 bucket {bucket} exists in {}, not in the stack's region {}. Choose another name, or deploy \
                 the stack in that region.",
                region.as_deref().unwrap_or("another region"),
                spec.region
            ),
        };
        // A name derived from the stack's name is fixed by changing `name`.
        let path = if planned.get(attribute).is_null() || !is_configured(planned, attribute, bucket, &spec.name) {
            AttributePath::root("name")
        } else {
            AttributePath::root(attribute)
        };
        found.push(refuse(path, "Bucket Name Not Available", problem));
    }
    Ok(found)
}

/// Whether the bucket name came from the configuration rather than from the stack's name.
fn is_configured(planned: &Value, attribute: &str, bucket: &str, stack: &str) -> bool {
    let derived = match attribute {
        "archive_bucket_name" => super::model::default_archive_bucket(stack),
        "state_bucket_name" => super::model::default_state_bucket(stack),
        _ => return false,
    };
    planned.get(attribute).as_str() == Some(bucket) && bucket != derived
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aws::ec2::{DefaultRoute, Subnet, SubnetRoute};

    fn subnet(id: &str, public_ip_on_launch: bool) -> Subnet {
        Subnet { id: id.into(), vpc_id: "vpc-1".into(), availability_zone: "eu-west-2a".into(), public_ip_on_launch }
    }

    fn warnings(subnets: &[(Subnet, DefaultRoute)], endpoints: &[&str]) -> Vec<(String, String)> {
        let routes: BTreeMap<String, SubnetRoute> = subnets
            .iter()
            .map(|(s, r)| (s.id.clone(), SubnetRoute { table_id: format!("rtb-{}", s.id), default_route: r.clone() }))
            .collect();
        let refs: Vec<&Subnet> = subnets.iter().map(|(s, _)| s).collect();
        let endpoints: BTreeSet<String> = endpoints.iter().map(|e| e.to_string()).collect();
        egress_warnings("shop", &refs, &routes, &endpoints, AttributePath::root("subnet_ids"))
            .into_iter()
            .map(|d| (d.summary.clone(), d.detail.clone()))
            .collect()
    }

    #[test]
    fn a_nat_route_is_enough_for_instances_and_tasks() {
        let nat = DefaultRoute::Forwarded("nat-1".into());
        assert!(warnings(&[(subnet("a", false), nat)], &[]).is_empty());
    }

    #[test]
    fn public_subnets_serve_instances_but_not_ecs_exec() {
        let igw = DefaultRoute::InternetGateway("igw-1".into());
        let found = warnings(&[(subnet("a", true), igw.clone())], &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "ECS Exec Cannot Connect");
        assert!(warnings(&[(subnet("a", true), igw)], &["ssmmessages"]).is_empty());
    }

    #[test]
    fn a_subnet_without_a_way_out_names_its_route_and_the_endpoints_it_lacks() {
        let found = warnings(
            &[
                (subnet("a", false), DefaultRoute::Missing),
                (subnet("b", false), DefaultRoute::InternetGateway("igw-1".into())),
            ],
            &["ecr.api", "ecr.dkr"],
        );
        let (summary, detail) = &found[0];
        assert_eq!(summary, "Instances Cannot Reach AWS");
        assert!(detail.contains("- a (route table rtb-a): no route out of the VPC"), "{detail}");
        assert!(
            detail.contains("- b (route table rtb-b): a route to internet gateway igw-1, but the subnet gives"),
            "{detail}"
        );
        assert!(detail.contains("for: ecs, ecs-agent, ecs-telemetry, logs, secretsmanager."), "{detail}");
    }

    #[test]
    fn interface_endpoints_for_everything_make_a_private_subnet_work() {
        let mut all: Vec<&str> = INSTANCE_ENDPOINTS.to_vec();
        all.push("ssmmessages");
        assert!(warnings(&[(subnet("a", false), DefaultRoute::Missing)], &all).is_empty());
    }
}
