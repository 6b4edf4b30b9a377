//! Applying a stack: converge every wanted part forward through the graph (create and update are the same
//! walk), then remove backward the parts the spec no longer wants (a dropped load balancer); or observe
//! everything and remove it backward on destroy. A failure returns the state of what exists, so nothing is
//! orphaned and the next apply continues.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::{self, AwsContext, DEPLOYED_TAG};
use crate::framework::{Diagnostics, RequestContext, StateResult, Value};

use super::graph::{self, Direction};
use super::guard;
use super::model::{COMPONENTS, StackSpec};
use super::outcome::{self, Walk};
use super::outputs;
use super::ownership::{self, PrivateState, any_blocking, conflict_diagnostics};
use super::parts::{
    self, Part, PartContext, PartState, PasswordChange, Passwords, Removal, SOURCE_BRANCH, SOURCE_COMMIT,
    SOURCE_REPOSITORY, WEB_PATH, WEB_PORT,
};
use super::service::Service;
use super::survey::{CONCURRENCY, Purpose, Survey, survey};
/// How often the steady-state wait polls ECS.
const STEADY_STATE_POLL: Duration = Duration::from_secs(15);

/// A token cancelled by Terraform's stop or when `limit` has passed, whichever comes first.
fn cancelled_after(cancel: &CancellationToken, limit: Duration) -> CancellationToken {
    let token = cancel.child_token();
    let timer = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(limit) => timer.cancel(),
            () = timer.cancelled() => {}
        }
    });
    token
}

/// Whether an existing stack's password version is set to a new value (removing it asks for nothing).
pub(super) fn new_version(prior: &Value, planned: &Value, version: impl Fn(&Value) -> Option<f64>) -> bool {
    !prior.is_null() && version(planned).is_some() && version(prior) != version(planned)
}

/// What this apply does with the master password: the write-only one is set on create and when its
/// version changed; a new version without one generates a new password; otherwise it is kept.
fn password_change<'a>(prior: &Value, planned: &Value, config: &'a Value) -> PasswordChange<'a> {
    let given = config.get("database").get("password_wo").as_str();
    let changed = new_version(prior, planned, |v| v.get("database").get("password_wo_version").as_f64());
    match given {
        Some(password) if prior.is_null() || changed => PasswordChange::Set(password),
        None if changed => PasswordChange::Generate,
        _ => PasswordChange::Keep,
    }
}

/// Whether this apply generates a new RabbitMQ password: a new version on an existing stack.
fn rabbitmq_password_change(prior: &Value, planned: &Value) -> PasswordChange<'static> {
    let changed = new_version(prior, planned, |v| v.get("rabbitmq_password_version").as_f64());
    if changed { PasswordChange::Generate } else { PasswordChange::Keep }
}

/// Creates or updates every part to match `planned`. Nothing is written before a survey has shown that
/// every wanted part's name is free or the stack's own (or an unmarked resource the configuration takes
/// over); a failure afterwards returns the state of what exists, so the next apply continues.
pub async fn converge(
    ctx: &RequestContext,
    aws: &AwsContext,
    prior: &Value,
    planned: &Value,
    config: &Value,
) -> StateResult {
    let spec = StackSpec::from_value(planned, aws);
    let limit = if prior.is_null() { spec.timeouts.create } else { spec.timeouts.update };
    let stop = cancelled_after(&ctx.cancel, limit);
    let unchanged =
        |diagnostics| StateResult { state: (!prior.is_null()).then(|| prior.clone()), diagnostics, private: None };
    if let Some(refusal) = super::plan::kms_key_change_refusal(prior, planned) {
        return unchanged(Diagnostics(vec![refusal]));
    }
    let found = match survey(&stop, aws, &spec, &Part::possible(), Purpose::Ownership, "Nothing was changed.").await {
        Ok(found) => found,
        Err(diagnostics) => return unchanged(diagnostics),
    };
    if prior.is_null()
        && let Some(refusal) = ownership::deployed_elsewhere(&found, &spec.name, ownership::Report::Refuse)
    {
        return unchanged(Diagnostics(vec![refusal]));
    }
    let conflicts = found.conflicts(&spec);
    let mut diagnostics = conflict_diagnostics(&conflicts, &spec.name, spec.adopt_untagged, ownership::Report::Refuse);
    if any_blocking(&conflicts, spec.adopt_untagged) {
        return unchanged(diagnostics);
    }
    let passwords = Passwords {
        database: password_change(prior, planned, config),
        rabbitmq: rabbitmq_password_change(prior, planned),
    };
    let wanted = Part::wanted_by(&spec);
    let weight = |part: &Part| part.typical_seconds(Direction::Forward);
    let report =
        graph::run_weighted(&Part::graph(&wanted), Direction::Forward, CONCURRENCY, &stop, weight, |part, inputs| {
            let spec = &spec;
            async move {
                let pctx = PartContext { spec, aws, parts: &inputs, passwords, reads: None };
                parts::ensure(part, &pctx).await
            }
        })
        .await;
    let done: BTreeMap<Part, PartState> = report.done.iter().cloned().collect();
    diagnostics.extend(outcome::diagnostics(&report, Walk::Apply { limit }, &spec.name, &ctx.cancel));
    // Only once every wanted part is right (web no longer uses the target group, the services' group no
    // longer admits the load balancer) can the unwanted ones go.
    if report.is_complete() {
        remove_unwanted(&stop, aws, &spec, &done, &found, &mut diagnostics).await;
    }
    let dropped = dropped_tag_keys(prior, planned);
    let tags_removed =
        !report.is_complete() || remove_dropped_tags(aws, &spec, &done, &dropped, &mut diagnostics).await;
    if let Some((summary, detail)) = images_missing_warning(&spec, &done) {
        diagnostics.warning(summary, detail);
    }
    if report.is_complete() && spec.wait_for_steady_state {
        wait_for_services(&stop, aws, &spec, &done, limit, prior.is_null(), &mut diagnostics).await;
    }
    if report.is_complete() {
        mark_deployed(aws, &found, &done, &mut diagnostics).await;
    }
    let mut state = planned.clone();
    for (attribute, value) in spec.settings_values() {
        state.set(attribute, super::model::resolve_unknowns(planned.get(attribute), &value));
    }
    if passwords.database != PasswordChange::Keep && !done.contains_key(&Part::Database) {
        // The new password never reached RDS: keep the version that did, so the next apply sends it again.
        let mut database = state.get("database").clone();
        database.set("password_wo_version", prior.get("database").get("password_wo_version").clone());
        state.set("database", database);
    }
    if passwords.rabbitmq != PasswordChange::Keep && !done.contains_key(&Part::RabbitmqSecret) {
        // The same for RabbitMQ's: the secret never got a new one.
        state.set("rabbitmq_password_version", prior.get("rabbitmq_password_version").clone());
    }
    if !tags_removed {
        // Record the tags as they are, so the next plan shows the keys again and its apply retries.
        state.set("tags", prior.get("tags").clone());
        state.set("tags_all", prior.get("tags_all").clone());
    }
    let private = PrivateState::default().encode();
    let mut state = state_with_outputs(&state, &done);
    if let Value::List(planned_missing) = planned.get("missing_images") {
        // The plan promised the list the refresh found; a push since then shows at the next refresh.
        state.set("missing_images", Value::List(planned_missing.clone()));
    }
    StateResult { state: Some(state), diagnostics, private: Some(private) }
}

/// The tag keys the prior state's `tags_all` has and the plan's does not: tags the stack set that the
/// configuration no longer has, or that the refresh found on the stack's log group and it never had.
fn dropped_tag_keys(prior: &Value, planned: &Value) -> Vec<String> {
    let tags = |v: &Value| v.get("tags_all").as_string_map().unwrap_or_default();
    let (before, after) = (tags(prior), tags(planned));
    before.into_keys().filter(|k| !after.contains_key(k) && !crate::aws::is_reserved_tag_key(k)).collect()
}

/// Takes the `dropped` tag keys off every part just ensured, all at once (see [`parts::untag`]); `false`
/// when some part kept them (an error diagnostic names it).
async fn remove_dropped_tags(
    aws: &AwsContext,
    spec: &StackSpec,
    done: &BTreeMap<Part, PartState>,
    dropped: &[String],
    diagnostics: &mut Diagnostics,
) -> bool {
    if dropped.is_empty() {
        return true;
    }
    let removals = done.iter().map(|(part, state)| async move {
        parts::untag::remove_tags(*part, state, dropped, aws, &spec.name).await.err().map(|e| format!("{part}: {e}"))
    });
    let failed: Vec<String> = futures_util::future::join_all(removals).await.into_iter().flatten().collect();
    if failed.is_empty() {
        return true;
    }
    diagnostics.error(
        "Tags Not Removed",
        format!(
            "Stack {}: the tags {} the configuration no longer has are still on some parts:\n  {}\nEverything \
             else was applied. The next plan shows those tags again and its apply removes them.",
            spec.name,
            dropped.join(", "),
            failed.join("\n  ")
        ),
    );
    false
}

/// Marks the stack deployed ([`crate::aws::DEPLOYED_TAG`] on its cluster) after its first complete apply, or
/// the first since the mark was lost, so that a configuration of the same name in another Terraform state
/// is refused instead of taking it over (see [`ownership::deployed_elsewhere`]). Last, after any wait for
/// the services: an apply killed before it leaves parts the next one continues. A failure only warns: the
/// stack works without the mark, and the next apply sets it.
async fn mark_deployed(
    aws: &AwsContext,
    found: &Survey,
    done: &BTreeMap<Part, PartState>,
    diagnostics: &mut Diagnostics,
) {
    let cluster_tags = found.own.get(&Part::Cluster).and_then(|c| c.tags.as_ref());
    if cluster_tags.is_some_and(|tags| tags.contains_key(DEPLOYED_TAG)) {
        return;
    }
    let Some(arn) = done.get(&Part::Cluster).and_then(|c| c.arn.as_deref()) else { return };
    if let Err(e) = aws::ecs::mark_deployed(&aws.ecs, arn).await {
        diagnostics.warning(
            "Stack Not Marked As Deployed",
            format!(
                "The stack was applied, but tagging its cluster {DEPLOYED_TAG} failed ({e}). Until the next apply \
                 sets it, a configuration of the same name in another Terraform state would not be refused."
            ),
        );
    }
}

/// Removes, dependents first, the stack's own parts that the spec does not want (those of a load balancer
/// the configuration dropped, or left by an interrupted apply). `done` holds the wanted parts as just
/// ensured; `found` is the survey taken before. Look-alikes that are not the stack's are never touched.
async fn remove_unwanted(
    stop: &CancellationToken,
    aws: &AwsContext,
    spec: &StackSpec,
    done: &BTreeMap<Part, PartState>,
    found: &Survey,
    diagnostics: &mut Diagnostics,
) {
    let unwanted: Vec<Part> = found.own.keys().filter(|p| !p.is_wanted(spec)).copied().collect();
    if unwanted.is_empty() {
        return;
    }
    let mut existing = done.clone();
    existing.extend(unwanted.iter().map(|p| (*p, found.own[p].clone())));
    match guard::blockers(aws, spec, &existing, &unwanted).await {
        Ok(blockers) if blockers.is_empty() => {}
        Ok(blockers) => return diagnostics.extend(guard::refusal(&blockers, &spec.name)),
        Err(e) => {
            return diagnostics.error(
                "Failed To Check Removal",
                format!("Stack {}: {e}. Parts the configuration no longer wants were left in place.", spec.name),
            );
        }
    }
    let weight = |part: &Part| part.typical_seconds(Direction::Backward);
    let report =
        graph::run_weighted(&Part::graph(&unwanted), Direction::Backward, CONCURRENCY, stop, weight, |part, _| {
            let existing = &existing;
            async move {
                let pctx = PartContext { spec, aws, parts: existing, passwords: Passwords::KEEP, reads: None };
                parts::remove(part, &pctx).await
            }
        })
        .await;
    diagnostics.extend(outcome::diagnostics(&report, Walk::Removal, &spec.name, stop));
}

/// The planned value with every output filled from the parts that exist; outputs of parts that do not
/// exist (after a failure) are null, never unknown.
pub fn state_with_outputs(planned: &Value, done: &BTreeMap<Part, PartState>) -> Value {
    let mut state = planned.clone();
    outputs::fill(&mut state, done);
    let arn = |part: Part| Value::opt_string(done.get(&part).and_then(|s| s.arn.clone()));
    let url = |part: Part| Value::opt_string(done.get(&part).and_then(|s| s.url.clone()));
    let map = |entries: Vec<(String, Option<String>)>| {
        Value::Map(entries.into_iter().filter_map(|(k, v)| v.map(|v| (k, Value::string(v)))).collect())
    };
    if let Some(network) = done.get(&Part::Network) {
        state.set("vpc_id", Value::opt_string(network.id.clone()));
        state.set("subnet_ids", Value::string_list(network.facts.subnet_ids.clone()));
    }
    state.set(
        "image_push_targets",
        map(COMPONENTS
            .iter()
            .enumerate()
            .filter(|(_, c)| state.get("services").get(c).get("image").is_null())
            .map(|(i, c)| (c.to_string(), done.get(&Part::Repository(i)).and_then(|r| r.facts.push_target.clone())))
            .collect()),
    );
    state.set("missing_images", Value::string_list(services_waiting_for_images(done)));
    let web = Service::Web;
    let load_balancer = state.get("load_balancer").clone();
    let web_url = if load_balancer.is_null() {
        done.get(&Part::Discovery(web)).and_then(|d| d.url.as_deref()).map(internal_web_url)
    } else {
        let https = load_balancer.get("certificate_arn").as_str().is_some_and(|a| !a.is_empty());
        done.get(&Part::LoadBalancer).and_then(|lb| lb.url.as_deref()).map(|dns| public_web_url(dns, https))
    };
    state.set("web_url", Value::opt_string(web_url));
    if let Value::Map(mut entries) = load_balancer {
        // The configured settings stay as planned; only the outputs come from AWS.
        entries.insert("dns_name".into(), url(Part::LoadBalancer));
        entries.insert("arn".into(), arn(Part::LoadBalancer));
        state.set("load_balancer", Value::Map(entries));
    }
    state.set("drift", Value::List(vec![]));
    null_unknowns(state)
}

/// Waits until the services that should run are stable. A deployment that does not get there is an error
/// on update; on create it is a warning, because Terraform would otherwise taint the stack and replace it
/// (database included) on the next apply, where all that is wrong is a deployment: the next refresh reports
/// a failed deployment as drift, and the next apply starts a new one.
async fn wait_for_services(
    stop: &CancellationToken,
    aws: &AwsContext,
    spec: &StackSpec,
    done: &BTreeMap<Part, PartState>,
    limit: Duration,
    creating: bool,
    diagnostics: &mut Diagnostics,
) {
    let waiting_for_images = services_waiting_for_images(done);
    let names: Vec<String> = Service::ALL
        .into_iter()
        .filter(|s| spec.service(s.name()).desired_count > 0 && !waiting_for_images.iter().any(|w| w == s.name()))
        .map(|s| s.name().to_string())
        .collect();
    if names.is_empty() {
        return;
    }
    let Err(e) = crate::aws::ecs::wait_steady(&aws.ecs, &spec.name, &names, limit, STEADY_STATE_POLL, stop).await
    else {
        return;
    };
    let detail = format!(
        "Stack {}: {e}. Every part exists and is recorded in state. Read the reasons above and the task logs in \
         {}; fix the cause (an image that does not start, a setting), then apply again: a failed deployment is \
         started anew. (wait_for_steady_state = false stops waiting; timeouts.{} bounds the wait, {} now.)",
        spec.name,
        spec.log_group,
        if creating { "create" } else { "update" },
        crate::framework::duration::format(limit)
    );
    if creating {
        diagnostics.warning("Services Not Stable", detail);
    } else {
        diagnostics.error("Services Not Stable", detail);
    }
}

/// The services created but not started because their image is not in the stack's repository yet.
pub fn services_waiting_for_images(done: &BTreeMap<Part, PartState>) -> Vec<String> {
    Service::ALL
        .into_iter()
        .filter(|s| done.get(&Part::TaskDefinition(*s)).is_some_and(|td| td.facts.image_missing.is_some()))
        .map(|s| s.name().to_string())
        .collect()
}

/// The warning of an apply that leaves services waiting for their images: which, where to push them, and
/// how (from a clone of the supported DataVault source).
fn images_missing_warning(spec: &StackSpec, done: &BTreeMap<Part, PartState>) -> Option<(String, String)> {
    let waiting: Vec<(Service, String)> = Service::ALL
        .into_iter()
        .filter_map(|s| done.get(&Part::TaskDefinition(s))?.facts.image_missing.clone().map(|t| (s, t)))
        .collect();
    if waiting.is_empty() {
        return None;
    }
    let registry = waiting.first().and_then(|(_, t)| t.split('/').next()).unwrap_or_default().to_string();
    let mut commands = vec![
        format!("git clone {SOURCE_REPOSITORY} && cd datavault && git checkout {SOURCE_COMMIT}"),
        format!(
            "aws ecr get-login-password --region {} | docker login --username AWS --password-stdin {registry}",
            spec.region
        ),
    ];
    for (s, target) in &waiting {
        let dockerfile = if *s == Service::Web { "webapp" } else { s.name() };
        commands.push(format!(
            "docker build --platform linux/amd64 -f {dockerfile}.Dockerfile -t {target} . && docker push {target}"
        ));
    }
    Some((
        "Images Not Pushed Yet".to_string(),
        format!(
            "Stack {}: the stack's repositories do not hold the images of {} at tag {} yet, so those services wait: \
             one that never ran is created without starting, one that runs keeps its current version. Build the \
             images from {SOURCE_REPOSITORY} (branch {SOURCE_BRANCH}) and push them:\n{}\nThen run terraform \
             apply again: the plan shows the services starting.",
            spec.name,
            waiting.iter().map(|(s, _)| s.name()).collect::<Vec<_>>().join(", "),
            spec.image_tag,
            commands.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
        ),
    ))
}

/// Where web answers inside the VPC, at its service discovery name.
pub fn internal_web_url(host: &str) -> String {
    format!("http://{host}:{WEB_PORT}{WEB_PATH}")
}

/// Where web answers through the public load balancer.
pub fn public_web_url(dns_name: &str, https: bool) -> String {
    format!("{}://{dns_name}{WEB_PATH}", if https { "https" } else { "http" })
}

fn null_unknowns(value: Value) -> Value {
    match value {
        Value::Unknown => Value::Null,
        Value::List(items) => Value::List(items.into_iter().map(null_unknowns).collect()),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, v)| (k, null_unknowns(v))).collect()),
        other => other,
    }
}

/// Removes every part of the stack, dependents first. Nothing is deleted unless the survey succeeds and
/// no part's removal is forbidden (see [`guard`]); resources that only share the stack's names are left
/// alone and reported. Retained parts and final snapshots are reported as warnings.
pub async fn delete(ctx: &RequestContext, aws: &AwsContext, prior: &Value) -> Diagnostics {
    let spec = StackSpec::from_value(prior, aws);
    let stop = cancelled_after(&ctx.cancel, spec.timeouts.delete);
    let found = match survey(&stop, aws, &spec, &Part::possible(), Purpose::Ownership, "Nothing was deleted.").await {
        Ok(found) => found,
        Err(diagnostics) => return diagnostics,
    };
    match guard::blockers(aws, &spec, &found.own, &Part::possible()).await {
        Ok(blockers) if blockers.is_empty() => {}
        Ok(blockers) => return guard::refusal(&blockers, &spec.name),
        Err(e) => {
            let mut diagnostics = Diagnostics::new();
            diagnostics.error("Failed To Check Destroy", format!("Stack {}: {e}. Nothing was deleted.", spec.name));
            return diagnostics;
        }
    }
    let own = &found.own;
    let weight = |part: &Part| part.typical_seconds(Direction::Backward);
    let graph = Part::graph(&Part::possible());
    let report = graph::run_weighted(&graph, Direction::Backward, CONCURRENCY, &stop, weight, |part, _| {
        let spec = &spec;
        async move {
            if !own.contains_key(&part) {
                return Ok(Removal::Removed);
            }
            let pctx = PartContext { spec, aws, parts: own, passwords: Passwords::KEEP, reads: None };
            parts::remove(part, &pctx).await
        }
    })
    .await;
    let mut diagnostics = Diagnostics::new();
    for (_, removal) in &report.done {
        match removal {
            Removal::Retained(why) => diagnostics.warning("Part Retained", why.clone()),
            Removal::RemovedWithNote(note) => diagnostics.warning("Final Snapshot Kept", note.clone()),
            Removal::Removed => {}
        }
    }
    let look_alikes = found.look_alikes(&spec);
    if !look_alikes.is_empty() {
        diagnostics.warning(
            "Resources Left Alone",
            format!(
                "Stack {}: these resources have the names of the stack's parts but are not its own, so destroy did not \
                 touch them:\n{}",
                spec.name,
                ownership::bullets(look_alikes.iter().map(|c| format!("{}: {}", c.identified(), c.owner)))
            ),
        );
    }
    let walk = Walk::Destroy { limit: spec.timeouts.delete };
    diagnostics.extend(outcome::diagnostics(&report, walk, &spec.name, &ctx.cancel));
    if report.is_complete()
        && let Err(e) = parts::storage::remove_claims(&spec, aws).await
    {
        diagnostics.warning("Claims Not Removed", format!("Stack {}: {e}.", spec.name));
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::super::parts::Group;
    use super::*;

    #[test]
    fn tags_dropped_are_those_the_prior_state_had_and_the_plan_has_not() {
        let with = |tags: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Value::Map([("tags_all".to_string(), Value::string_map(&map))].into())
        };
        let prior = with(&[("team", "b"), ("cost", "1"), ("owner", "x")]);
        let planned = with(&[("cost", "2"), ("owner", "x")]);
        assert_eq!(dropped_tag_keys(&prior, &planned), vec!["team".to_string()], "a changed value is no drop");
        assert!(dropped_tag_keys(&Value::Null, &planned).is_empty(), "a new stack drops nothing");
        assert!(dropped_tag_keys(&planned, &prior).is_empty(), "adding drops nothing");
    }

    #[test]
    fn outputs_of_missing_parts_are_null_not_unknown() {
        let planned = Value::Map(
            [
                ("archive_bucket_arn".to_string(), Value::Unknown),
                ("log_group_arn".to_string(), Value::Unknown),
                ("ecr_repository_urls".to_string(), Value::Unknown),
                ("vpc_id".to_string(), Value::Unknown),
            ]
            .into(),
        );
        let done = BTreeMap::from([
            (Part::ArchiveBucket, PartState { arn: Some("arn:aws:s3:::a".into()), ..PartState::default() }),
            (Part::Repository(0), PartState { url: Some("repo/web".into()), ..PartState::default() }),
        ]);
        let state = state_with_outputs(&planned, &done);
        assert!(state.is_wholly_known());
        assert_eq!(state.get("archive_bucket_arn"), &Value::string("arn:aws:s3:::a"));
        assert_eq!(state.get("log_group_arn"), &Value::Null);
        assert_eq!(state.get("vpc_id"), &Value::Null);
        assert_eq!(state.get("ecr_repository_urls").as_string_map().unwrap().len(), 1);
    }

    fn object(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn the_web_address_follows_the_load_balancer() {
        let lb = PartState {
            arn: Some("arn:lb".into()),
            url: Some("vault-web-1.eu-west-2.elb.amazonaws.com".into()),
            ..PartState::default()
        };
        let web = Service::Web;
        let discovery = PartState { url: Some("web.vault.datavault.internal".into()), ..PartState::default() };
        let done = BTreeMap::from([
            (Part::LoadBalancer, lb),
            (Part::Discovery(web), discovery),
            (Part::SecurityGroup(Group::LoadBalancer), PartState::with_id("sg-lb")),
        ]);
        let planned = |lb: Value| object(&[("load_balancer", lb), ("web_url", Value::Unknown)]);
        let https = object(&[
            ("certificate_arn", Value::string("arn:aws:acm:eu-west-2:123456789012:certificate/1")),
            ("dns_name", Value::Unknown),
            ("arn", Value::Unknown),
        ]);
        let state = state_with_outputs(&planned(https), &done);
        assert_eq!(
            state.get("web_url"),
            &Value::string("https://vault-web-1.eu-west-2.elb.amazonaws.com/datavault-webapp/")
        );
        assert_eq!(state.get("load_balancer").get("arn"), &Value::string("arn:lb"));
        assert_eq!(state.get("security_group_ids").get("load_balancer"), &Value::string("sg-lb"));
        let http = object(&[("certificate_arn", Value::Null), ("dns_name", Value::Unknown)]);
        let state = state_with_outputs(&planned(http), &done);
        assert_eq!(
            state.get("web_url"),
            &Value::string("http://vault-web-1.eu-west-2.elb.amazonaws.com/datavault-webapp/")
        );
        // Without one: the internal name, and a load balancer still there (about to go) changes nothing.
        let state = state_with_outputs(&planned(Value::Null), &done);
        assert_eq!(state.get("web_url"), &Value::string("http://web.vault.datavault.internal:8080/datavault-webapp/"));
        assert_eq!(state.get("load_balancer"), &Value::Null);
        // A load balancer that failed to be made leaves its outputs null, never unknown.
        let state = state_with_outputs(&planned(object(&[("dns_name", Value::Unknown)])), &BTreeMap::new());
        assert_eq!(state.get("load_balancer").get("dns_name"), &Value::Null);
        assert_eq!(state.get("web_url"), &Value::Null);
    }

    #[test]
    fn services_waiting_for_their_images_are_named_with_the_commands_to_push_them() {
        let spec = StackSpec::from_value_in(
            &Value::Map([("name".to_string(), Value::string("vault"))].into()),
            &BTreeMap::new(),
            "eu-west-2",
            "aws",
        );
        let waiting = |target: &str| {
            let mut state = PartState::default();
            state.facts.image_missing = Some(target.into());
            state
        };
        let web = Service::Web;
        let target = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/vault/web:729ca07";
        let done = BTreeMap::from([
            (Part::TaskDefinition(web), waiting(target)),
            (Part::TaskDefinition(Service::Rabbitmq), PartState::default()),
        ]);
        assert_eq!(services_waiting_for_images(&done), vec!["web"]);
        let (summary, detail) = images_missing_warning(&spec, &done).expect("a warning");
        assert_eq!(summary, "Images Not Pushed Yet");
        assert!(detail.contains(&format!("-f webapp.Dockerfile -t {target} . && docker push {target}")), "{detail}");
        assert!(
            detail
                .contains("docker login --username AWS --password-stdin 123456789012.dkr.ecr.eu-west-2.amazonaws.com"),
            "{detail}"
        );
        assert!(detail.contains(SOURCE_COMMIT), "{detail}");
        assert!(images_missing_warning(&spec, &BTreeMap::new()).is_none());
    }

    #[test]
    fn a_new_rabbitmq_password_is_generated_when_its_version_changes_on_an_existing_stack() {
        let with = |version: Option<f64>| {
            Value::Map([("rabbitmq_password_version".to_string(), version.map_or(Value::Null, Value::Number))].into())
        };
        assert_eq!(rabbitmq_password_change(&Value::Null, &with(Some(1.0))), PasswordChange::Keep, "created anew");
        assert_eq!(rabbitmq_password_change(&with(Some(1.0)), &with(Some(1.0))), PasswordChange::Keep);
        assert_eq!(rabbitmq_password_change(&with(None), &with(Some(1.0))), PasswordChange::Generate);
        assert_eq!(rabbitmq_password_change(&with(Some(1.0)), &with(Some(2.0))), PasswordChange::Generate);
        assert_eq!(rabbitmq_password_change(&with(Some(2.0)), &with(None)), PasswordChange::Keep, "version dropped");
    }

    #[test]
    fn the_write_only_password_is_sent_on_create_and_on_a_new_version_only() {
        let with = |version: f64| {
            Value::Map(
                [(
                    "database".to_string(),
                    Value::Map(
                        [
                            ("password_wo".to_string(), Value::string("s3cret-pass")),
                            ("password_wo_version".to_string(), Value::Number(version)),
                        ]
                        .into(),
                    ),
                )]
                .into(),
            )
        };
        assert_eq!(password_change(&Value::Null, &with(1.0), &with(1.0)), PasswordChange::Set("s3cret-pass"));
        assert_eq!(password_change(&with(1.0), &with(1.0), &with(1.0)), PasswordChange::Keep);
        assert_eq!(password_change(&with(1.0), &with(2.0), &with(2.0)), PasswordChange::Set("s3cret-pass"));
        // Without a write-only password: a new version generates one, nothing else touches it.
        let version_only = |version: f64| {
            Value::Map(
                [(
                    "database".to_string(),
                    Value::Map([("password_wo_version".to_string(), Value::Number(version))].into()),
                )]
                .into(),
            )
        };
        assert_eq!(password_change(&Value::Null, &version_only(1.0), &version_only(1.0)), PasswordChange::Keep);
        assert_eq!(
            password_change(&version_only(1.0), &version_only(2.0), &version_only(2.0)),
            PasswordChange::Generate
        );
    }
}
