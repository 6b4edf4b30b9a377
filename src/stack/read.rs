//! Reading a stack: observe every part at once, record what exists and how it drifted, and complete the
//! minimal state an import starts from.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::{self, AwsContext, PART_TAG, STACK_TAG};
use crate::framework::{Diagnostics, RequestContext, StateResult, Value};

use super::apply::state_with_outputs;
use super::model::{COMPONENTS, StackSpec, default_archive_bucket, default_state_bucket, log_group_name};
use super::ownership::{Conflict, PrivateState, bullets};
use super::parts::{Group, Part, PartState, RABBITMQ_IMAGE};
use super::schema::DEFAULT_LOG_RETENTION_DAYS;
use super::service::Service;
use super::survey::{Purpose, Survey, survey};
use super::validation::name_problem;

/// Refreshes `state` from AWS. `None` when the stack is gone (only the retained state bucket, or nothing,
/// is left). Resources that only share the stack's names are not recorded as its parts; the private state
/// carries them to the plan, which refuses (or, where the configuration asks, takes them over).
pub async fn read(ctx: &RequestContext, aws: &AwsContext, state: &Value) -> StateResult {
    let mut diagnostics = Diagnostics::new();
    let mut state = match complete_bucket_names(aws, state).await {
        Ok(state) => state,
        Err(e) => {
            diagnostics.error("Failed To Read Stack", format!("Looking up the stack's buckets failed: {e}."));
            return StateResult { state: Some(state.clone()), diagnostics, private: None };
        }
    };
    let importing = state.get("drift").is_null();
    let mut conflicts = Vec::new();
    // Settings the state leaves open (after an import, or where the configuration leaves them to the
    // provider) are first read from AWS; drift is then judged against them in a second look.
    for pass in 0..2 {
        let spec = StackSpec::from_value(&state, aws);
        let consequence = "The state was left as it was.";
        let found = match survey(&ctx.cancel, aws, &spec, &Part::possible(), Purpose::Refresh, consequence).await {
            Ok(found) => found,
            Err(failed) => {
                diagnostics.extend(failed);
                return StateResult { state: Some(state), diagnostics, private: None };
            }
        };
        if !found.finds_stack() {
            diagnostics.warning(
                "Stack Not Found",
                format!(
                    "No part of stack {} exists any more (apart from a retained state bucket), so it was removed \
                     from the state. The next apply creates it again.",
                    spec.name
                ),
            );
            diagnostics.extend(not_owned_warnings(&found.look_alikes(&spec), &spec.name));
            return StateResult { state: None, diagnostics, private: None };
        }
        conflicts = found.conflicts(&spec);
        let refreshed = refreshed_state(&state, &spec, aws, &found);
        let settled = pass == 1 || StackSpec::from_value(&refreshed, aws) == spec;
        state = refreshed;
        if settled {
            break;
        }
    }
    if importing {
        // An import ends here (no plan follows it), so it names what it did not take.
        let name = state.get("name").as_str().unwrap_or_default().to_string();
        diagnostics.extend(not_owned_warnings(&conflicts, &name));
    }
    StateResult { state: Some(state), diagnostics, private: Some(PrivateState { conflicts }.encode()) }
}

fn not_owned_warnings(conflicts: &[Conflict], stack: &str) -> Diagnostics {
    let mut diagnostics = Diagnostics::new();
    if !conflicts.is_empty() {
        diagnostics.warning(
            "Resources Not Owned By The Stack",
            format!(
                "Stack {stack}: these resources have the names of the stack's parts, but they are not its own. They \
                 are not part of the stack and are never changed or deleted by it; an apply that needs a name \
                 refuses until it is free (or, for an untagged resource, until adopt_untagged_resources = true takes \
                 it over).\n{}",
                bullets(conflicts.iter().map(|c| format!("{}: {}", c.identified(), c.owner)))
            ),
        );
    }
    diagnostics
}

fn refreshed_state(state: &Value, spec: &StackSpec, aws: &AwsContext, found: &Survey) -> Value {
    let existing = &found.own;
    let mut new = state_with_outputs(state, existing);
    new.set("id", Value::string(&spec.name));
    new.set("region", Value::string(&aws.region));
    new.set("log_group_name", Value::string(log_group_name(&spec.name)));
    // Settings AWS cannot report (after an import) take their defaults, so that a configuration Terraform
    // generates from the state (`plan -generate-config-out`) imports with no change.
    let unobservable = [
        ("archive_force_destroy", false),
        ("adopt_untagged_resources", false),
        ("images_force_destroy", false),
        ("wait_for_steady_state", true),
    ];
    for (attribute, default) in unobservable {
        if new.get(attribute).is_null() {
            new.set(attribute, Value::Bool(default));
        }
    }
    new.set("drift", Value::string_list(drift(spec, found)));
    if let Some(log_group) = existing.get(&Part::LogGroup) {
        // Retention "never expire" is recorded as 0 so the plan shows the change back to a real value.
        new.set("log_retention_days", Value::Number(log_group.retention_days.unwrap_or(0) as f64));
        if let Some(tags) = &log_group.tags {
            record_tags(&mut new, tags, &aws.default_tags);
        }
    } else if new.get("log_retention_days").is_null() {
        new.set("log_retention_days", Value::Number(DEFAULT_LOG_RETENTION_DAYS as f64));
    }
    fill_settings(&mut new, existing);
    // Only a state that was never read or applied (an import) takes over a load balancer it finds: for any
    // other state, no `load_balancer` means the configuration does not want one, and the plan removes it.
    if state.get("drift").is_null() {
        fill_load_balancer(&mut new, existing);
        fill_kms_key(&mut new, existing);
        fill_password_versions(&mut new, existing);
    }
    new
}

/// An import takes the password versions from the task definitions made for them, so that a configuration
/// that states the same versions does not change the passwords at its first apply.
fn fill_password_versions(state: &mut Value, existing: &BTreeMap<Part, PartState>) {
    let version = |service: Service| {
        let td = existing.get(&Part::TaskDefinition(service))?;
        td.facts.password_version.map(|v| Value::Number(v as f64))
    };
    if state.get("rabbitmq_password_version").is_null()
        && let Some(v) = version(Service::Rabbitmq)
    {
        state.set("rabbitmq_password_version", v);
    }
    let mut database = state.get("database").clone();
    if let (Value::Map(_), true, Some(v)) =
        (&database, database.get("password_wo_version").is_null(), version(Service::Broker))
    {
        database.set("password_wo_version", v);
        state.set("database", database);
    }
}

/// How what exists differs from what the spec wants, one line per difference.
fn drift(spec: &StackSpec, found: &Survey) -> Vec<String> {
    let mut drift = Vec::new();
    for part in Part::possible().into_iter().collect::<BTreeSet<_>>() {
        let wanted = part.is_wanted(spec);
        match (found.own.get(&part), found.foreign.get(&part)) {
            // A part that exists although the stack does not want it (left by an interrupted apply, or by
            // a removal that failed) is reported, so the plan shows an update and apply removes it.
            (Some(_), _) if !wanted => drift
                .push(format!("{part}: exists without load_balancer in the state: removed on apply unless configured")),
            (Some(own), _) => drift.extend(own.drift.iter().map(|d| format!("{part}: {d}"))),
            (None, Some(other)) if wanted => {
                drift.push(format!("{part}: {} has the part's name but is {}", part.resource(spec), other.owner))
            }
            // The network is looked up, not managed: the VPC missing is reported by the parts in it.
            (None, _) if wanted && part != Part::Network => drift.push(format!("{part}: missing, will be recreated")),
            (None, _) => {}
        }
    }
    drift
}

/// Fills `load_balancer` from the entry-point parts found, when the state has none.
fn fill_load_balancer(state: &mut Value, existing: &BTreeMap<Part, PartState>) {
    if !state.get("load_balancer").is_null() || !existing.contains_key(&Part::LoadBalancer) {
        return;
    }
    let facts = |part: Part| existing.get(&part).map(|s| &s.facts);
    let cidrs = facts(Part::SecurityGroup(Group::LoadBalancer)).map(|f| f.allowed_cidr_blocks.clone());
    let load_balancer = existing.get(&Part::LoadBalancer);
    // Subnets of its own are recorded only when they are not the stack's (the default).
    let zone_subnets = facts(Part::Network).map(|f| sorted(f.zone_subnet_ids.clone())).unwrap_or_default();
    let subnets = facts(Part::LoadBalancer)
        .map(|f| sorted(f.subnet_ids.clone()))
        .filter(|s| !s.is_empty() && *s != zone_subnets)
        .map(Value::string_list);
    let fields = [
        ("certificate_arn", facts(Part::Listeners).and_then(|f| f.certificate_arn.as_deref()).map(Value::string)),
        ("allowed_cidr_blocks", Some(Value::string_list(cidrs.unwrap_or_default()))),
        ("subnet_ids", subnets),
        ("dns_name", load_balancer.and_then(|lb| lb.url.clone()).map(Value::string)),
        ("arn", load_balancer.and_then(|lb| lb.arn.clone()).map(Value::string)),
    ];
    state.set("load_balancer", object(fields));
}

/// An import takes the stack's key from the archive bucket's default encryption: the key the stack was
/// created with, which its database, file system and repositories keep. Later reads leave the setting to the
/// configuration, and a bucket under another key is drift.
fn fill_kms_key(state: &mut Value, existing: &BTreeMap<Part, PartState>) {
    let key = existing.get(&Part::ArchiveBucket).and_then(|bucket| bucket.facts.kms_key.as_ref());
    if state.get("kms_key_arn").is_null()
        && let Some(key) = key.filter(|k| k.starts_with("arn:"))
    {
        state.set("kms_key_arn", Value::string(key));
    }
}

/// Fills the settings the state leaves open (null) with what AWS has: after an import, or where the
/// configuration leaves them to the provider. Settings the state has are kept: a difference from them is
/// drift, which the plan repairs.
fn fill_settings(state: &mut Value, existing: &BTreeMap<Part, PartState>) {
    let facts = |part: Part| existing.get(&part).map(|s| &s.facts);
    let number = |n: Option<i64>| n.map(|n| Value::Number(n as f64));
    let images = service_images(existing);
    if state.get("image_tag").is_null()
        && let Some(tag) = images.tag
    {
        state.set("image_tag", Value::string(&tag));
    }
    if state.get("database").is_null()
        && let Some(db) = facts(Part::Database).and_then(|f| f.database.as_ref())
    {
        let fields = [
            ("instance_class", Some(Value::string(&db.instance_class))),
            ("allocated_storage", number(Some(db.allocated_storage))),
            ("engine", Some(Value::string(&db.engine))),
            ("engine_version", Some(Value::string(&db.engine_version))),
            ("backup_retention_days", number(Some(db.backup_retention_days))),
            ("deletion_protection", Some(Value::Bool(db.deletion_protection))),
            // Not observable: the default (a final snapshot on delete).
            ("skip_final_snapshot", Some(Value::Bool(false))),
            ("multi_az", Some(Value::Bool(db.multi_az))),
        ];
        state.set("database", object(fields));
    }
    if state.get("cluster").is_null()
        && let (Some(template), Some(group)) = (facts(Part::LaunchTemplate), facts(Part::AutoScalingGroup))
    {
        let sizes = group.group_sizes;
        let admin = facts(Part::SecurityGroup(Group::Instances))
            .map(|f| f.allowed_cidr_blocks.clone())
            .filter(|cidrs| !cidrs.is_empty())
            .map(Value::string_list);
        let fields = [
            ("instance_type", template.instance_type.as_deref().map(Value::string)),
            ("min_size", number(sizes.map(|s| s.min))),
            ("max_size", number(sizes.map(|s| s.max))),
            ("desired_capacity", number(sizes.map(|s| s.desired))),
            ("admin_cidr_blocks", admin),
        ];
        state.set("cluster", object(fields));
    }
    let mut services = state.get("services").as_map().cloned().unwrap_or_default();
    for i in Service::ALL {
        let name = i.name();
        let known = services.get(name).is_some_and(|v| !v.is_null());
        if known || !existing.contains_key(&Part::Service(i)) || !existing.contains_key(&Part::TaskDefinition(i)) {
            continue;
        }
        let task_definition = &existing[&Part::TaskDefinition(i)].facts;
        let environment = task_definition.environment.as_ref().filter(|env| !env.is_empty()).map(Value::string_map);
        let fields = [
            ("image", images.explicit.get(&i).map(Value::string)),
            ("environment", environment),
            ("cpu", number(task_definition.cpu)),
            ("memory", number(task_definition.memory)),
            // A service waiting for its image runs no task by the stack's own choice: its configured count
            // is not to be seen in AWS, and the default is the best reading of it. (One that runs an image of
            // its own is not waiting, whatever the first look, which did not know that image yet, said.)
            (
                "desired_count",
                if task_definition.image_missing.is_some() && !images.explicit.contains_key(&i) {
                    Some(Value::Number(1.0))
                } else {
                    number(existing[&Part::Service(i)].facts.desired_count)
                },
            ),
        ];
        services.insert(name.to_string(), object(fields));
    }
    if !services.is_empty() {
        state.set("services", Value::Map(services));
    }
}

/// What the task definitions found say of the images: the stack's `image_tag` (that of the first of web,
/// broker and worker that runs an image of its own repository) and the services whose image is not the one
/// the stack would choose (`services.<name>.image`).
struct ServiceImages {
    tag: Option<String>,
    explicit: BTreeMap<Service, String>,
}

fn service_images(existing: &BTreeMap<Part, PartState>) -> ServiceImages {
    let image = |s: Service| existing.get(&Part::TaskDefinition(s)).and_then(|td| td.facts.image.clone());
    let repository = |s: Service| {
        let i = COMPONENTS.iter().position(|c| *c == s.name())?;
        existing.get(&Part::Repository(i)).and_then(|repo| repo.url.clone())
    };
    let tag = Service::ALL.into_iter().find_map(|s| {
        let (image, repository) = (image(s)?, repository(s)?);
        image.strip_prefix(&format!("{repository}:")).map(str::to_string)
    });
    let explicit = Service::ALL
        .into_iter()
        .filter_map(|s| {
            let image = image(s)?;
            let default = if s == Service::Rabbitmq {
                RABBITMQ_IMAGE.to_string()
            } else {
                // Without its repository or a tag of the stack's, the image cannot be told from the default.
                format!("{}:{}", repository(s)?, tag.as_ref()?)
            };
            (image != default).then_some((s, image))
        })
        .collect();
    ServiceImages { tag, explicit }
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (k.to_string(), v.unwrap_or(Value::Null))).collect())
}

/// Records the tags found on a part: `tags_all` is everything but the provider's markers and AWS's own
/// `aws:` tags (which no configuration may set or remove); `tags` is what is not explained by the
/// provider's default tags (null stays null when there are none).
fn record_tags(state: &mut Value, found: &BTreeMap<String, String>, defaults: &BTreeMap<String, String>) {
    let all: BTreeMap<String, String> =
        found.iter().filter(|(k, _)| !aws::is_reserved_tag_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let own: BTreeMap<String, String> =
        all.iter().filter(|(k, v)| defaults.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let prior_own = state.get("tags").as_string_map().unwrap_or_default();
    // A configured tag equal to a default tag is indistinguishable on AWS; keep it if the state had it.
    let own: BTreeMap<String, String> = all
        .iter()
        .filter(|(k, v)| own.contains_key(*k) || prior_own.get(*k) == Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !(own.is_empty() && state.get("tags").is_null()) {
        state.set("tags", Value::string_map(&own));
    }
    state.set("tags_all", Value::string_map(&all));
}

/// An import starts from the name alone: find the buckets, by default name or else by their tags.
async fn complete_bucket_names(aws: &AwsContext, state: &Value) -> aws::AwsResult<Value> {
    let mut state = state.clone();
    let name = state.get("name").as_str().unwrap_or_default().to_string();
    for (attribute, part, default) in [
        ("archive_bucket_name", "archive_bucket", default_archive_bucket(&name)),
        ("state_bucket_name", "state_bucket", default_state_bucket(&name)),
    ] {
        if state.get(attribute).is_null() {
            let bucket = find_bucket(aws, &name, part, &default).await?.unwrap_or(default);
            state.set(attribute, Value::string(bucket));
        }
    }
    Ok(state)
}

async fn find_bucket(aws: &AwsContext, stack: &str, part: &str, default: &str) -> aws::AwsResult<Option<String>> {
    if aws::s3::exists(&aws.s3, default).await? {
        let tags = aws::s3::tags(&aws.s3, default).await?;
        if tags.get(STACK_TAG).map(String::as_str) == Some(stack)
            && tags.get(PART_TAG).map(String::as_str) == Some(part)
        {
            return Ok(Some(default.to_string()));
        }
    }
    aws::s3::find_by_tags(&aws.s3, stack, part).await
}

/// The minimal state an import starts from; the read that Terraform runs next completes it.
pub fn import_state(id: &str, region: &str) -> StateResult {
    let mut diagnostics = Diagnostics::new();
    if let Some(problem) = name_problem(id) {
        diagnostics.error(
            "Invalid Import Id",
            format!("The import id is the stack's name, and {id:?} {problem}. Example: terraform import datavault_stack.main rdss-datavault"),
        );
        return StateResult { state: None, diagnostics, private: None };
    }
    let state = Value::Map(
        [
            ("id".to_string(), Value::string(id)),
            ("name".to_string(), Value::string(id)),
            ("region".to_string(), Value::string(region)),
        ]
        .into(),
    );
    StateResult { state: Some(state), diagnostics, private: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_into_own_and_all_without_markers() {
        let mut state = Value::Map([("tags".to_string(), Value::Null)].into());
        let found = BTreeMap::from([
            ("datavault:stack".to_string(), "v".to_string()),
            ("Application".to_string(), "DataVault".to_string()),
            ("team".to_string(), "rdm".to_string()),
        ]);
        let defaults = BTreeMap::from([("Application".to_string(), "DataVault".to_string())]);
        record_tags(&mut state, &found, &defaults);
        assert_eq!(
            state.get("tags").as_string_map().unwrap(),
            BTreeMap::from([("team".to_string(), "rdm".to_string())])
        );
        assert_eq!(state.get("tags_all").as_string_map().unwrap().len(), 2);
    }

    fn with_image(part: Part, image: &str) -> (Part, PartState) {
        let mut state = PartState::default();
        state.facts.image = Some(image.to_string());
        (part, state)
    }

    fn repository(i: usize, url: &str) -> (Part, PartState) {
        (Part::Repository(i), PartState { url: Some(url.to_string()), ..PartState::default() })
    }

    #[test]
    fn images_tell_the_stacks_tag_from_images_of_the_users_choice() {
        let repo = |name: &str| format!("1.dkr.ecr.eu-west-2.amazonaws.com/vault/{name}");
        let existing = BTreeMap::from([
            // Web runs an image from elsewhere: its tag says nothing of the stack's.
            with_image(Part::TaskDefinition(Service::Web), "registry.example.org/web:1.2"),
            with_image(Part::TaskDefinition(Service::Broker), &format!("{}:2.0.0", repo("broker"))),
            // Another tag of its own repository is an image of the user's choice too.
            with_image(Part::TaskDefinition(Service::Worker), &format!("{}:2.0.1", repo("worker"))),
            with_image(Part::TaskDefinition(Service::Rabbitmq), RABBITMQ_IMAGE),
            repository(0, &repo("web")),
            repository(1, &repo("broker")),
            repository(2, &repo("worker")),
        ]);
        let images = service_images(&existing);
        assert_eq!(images.tag.as_deref(), Some("2.0.0"));
        assert_eq!(
            images.explicit,
            BTreeMap::from([
                (Service::Web, "registry.example.org/web:1.2".to_string()),
                (Service::Worker, format!("{}:2.0.1", repo("worker"))),
            ])
        );
    }

    #[test]
    fn without_its_repository_an_image_is_not_judged() {
        let existing = BTreeMap::from([
            with_image(Part::TaskDefinition(Service::Web), "1.dkr.ecr.eu-west-2.amazonaws.com/vault/web:3"),
            with_image(Part::TaskDefinition(Service::Rabbitmq), "rabbitmq:4-management"),
        ]);
        let images = service_images(&existing);
        assert_eq!(images.tag, None);
        assert_eq!(images.explicit, BTreeMap::from([(Service::Rabbitmq, "rabbitmq:4-management".to_string())]));
    }

    #[test]
    fn no_own_tags_keeps_null_tags_null() {
        let mut state = Value::Map([("tags".to_string(), Value::Null)].into());
        record_tags(
            &mut state,
            &BTreeMap::from([("datavault:part".to_string(), "log_group".to_string())]),
            &BTreeMap::new(),
        );
        assert_eq!(state.get("tags"), &Value::Null);
    }

    #[test]
    fn an_import_takes_over_the_load_balancer_it_finds() {
        let lb =
            PartState { arn: Some("arn:lb".into()), url: Some("vault-web.elb.example".into()), ..PartState::default() };
        let mut group = PartState::with_id("sg-lb");
        group.facts.allowed_cidr_blocks = vec!["10.0.0.0/8".into(), "192.0.2.0/24".into()];
        let mut listeners = PartState::default();
        listeners.facts.certificate_arn = Some("arn:aws:acm:eu-west-2:1:certificate/x".into());
        let existing = BTreeMap::from([
            (Part::LoadBalancer, lb),
            (Part::SecurityGroup(Group::LoadBalancer), group),
            (Part::Listeners, listeners),
        ]);
        let mut state = Value::Map([("load_balancer".to_string(), Value::Null)].into());
        fill_load_balancer(&mut state, &existing);
        let filled = state.get("load_balancer");
        assert_eq!(filled.get("allowed_cidr_blocks"), &Value::string_list(["10.0.0.0/8", "192.0.2.0/24"]));
        assert_eq!(filled.get("certificate_arn"), &Value::string("arn:aws:acm:eu-west-2:1:certificate/x"));
        assert_eq!(filled.get("dns_name"), &Value::string("vault-web.elb.example"));
        // Nothing found, nothing filled.
        let mut state = Value::Map([("load_balancer".to_string(), Value::Null)].into());
        fill_load_balancer(&mut state, &BTreeMap::new());
        assert_eq!(state.get("load_balancer"), &Value::Null);
    }

    #[test]
    fn import_ids_are_stack_names() {
        assert!(import_state("Not A Name", "eu-west-2").diagnostics.has_errors());
        let state = import_state("vault", "eu-west-2").state.unwrap();
        assert_eq!(state.get("name"), &Value::string("vault"));
    }
}
