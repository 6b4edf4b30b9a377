//! Applying a stack: converge every part forward through the graph (create and update are the same walk),
//! or remove them backward on destroy. A failure returns the state of what exists, so nothing is orphaned.

use std::collections::BTreeMap;

use crate::aws::AwsContext;
use crate::framework::{Diagnostics, RequestContext, StateResult, Value};

use super::graph::{self, Direction};
use super::model::{COMPONENTS, StackSpec};
use super::parts::{self, Part, PartState, Removal};

/// How many AWS operations run at once: enough to overlap waits, few enough to stay clear of throttling.
const CONCURRENCY: usize = 8;

/// Creates or updates every part to match `planned`.
pub async fn converge(ctx: &RequestContext, aws: &AwsContext, planned: &Value) -> StateResult {
    let spec = StackSpec::from_value(planned, aws);
    let report = graph::run(&Part::graph(), Direction::Forward, CONCURRENCY, &ctx.cancel, |part, _| {
        let spec = &spec;
        async move { parts::ensure(part, spec, aws).await }
    })
    .await;
    let done: BTreeMap<Part, PartState> = report.done.iter().cloned().collect();
    let mut diagnostics = Diagnostics::new();
    for (part, error) in &report.failed {
        diagnostics.error(
            format!("Failed To Apply Part {part}"),
            format!("Stack {}: {part}: {error}. What was created is recorded in state; the next apply continues from there.", spec.name),
        );
    }
    if report.cancelled {
        diagnostics.error("Apply Interrupted", "Terraform asked the provider to stop. What was created is recorded in state; the next apply continues from there.");
    }
    StateResult { state: Some(state_with_outputs(planned, &done)), diagnostics }
}

/// The planned value with every output filled from the parts that exist; outputs of parts that do not
/// exist (after a failure) are null, never unknown.
pub fn state_with_outputs(planned: &Value, done: &BTreeMap<Part, PartState>) -> Value {
    let mut state = planned.clone();
    let arn = |part: Part| Value::opt_string(done.get(&part).and_then(|s| s.arn.clone()));
    state.set("archive_bucket_arn", arn(Part::ArchiveBucket));
    state.set("state_bucket_arn", arn(Part::StateBucket));
    state.set("log_group_arn", arn(Part::LogGroup));
    let urls: BTreeMap<String, Value> = COMPONENTS
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            done.get(&Part::Repository(i)).and_then(|s| s.url.clone()).map(|u| (c.to_string(), Value::string(u)))
        })
        .collect();
    state.set("ecr_repository_urls", Value::Map(urls));
    state.set("drift", Value::List(vec![]));
    null_unknowns(state)
}

fn null_unknowns(value: Value) -> Value {
    match value {
        Value::Unknown => Value::Null,
        Value::List(items) => Value::List(items.into_iter().map(null_unknowns).collect()),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, v)| (k, null_unknowns(v))).collect()),
        other => other,
    }
}

/// Removes every part, dependents first. Retained parts are reported as warnings.
pub async fn delete(ctx: &RequestContext, aws: &AwsContext, prior: &Value) -> Diagnostics {
    let spec = StackSpec::from_value(prior, aws);
    let report = graph::run(&Part::graph(), Direction::Backward, CONCURRENCY, &ctx.cancel, |part, _| {
        let spec = &spec;
        async move { parts::remove(part, spec, aws).await }
    })
    .await;
    let mut diagnostics = Diagnostics::new();
    for (_, removal) in &report.done {
        if let Removal::Retained(why) = removal {
            diagnostics.warning("Part Retained", why.clone());
        }
    }
    for (part, error) in &report.failed {
        let summary = match error {
            parts::PartError::Refused(_) => "Destroy Refused To Protect Data".to_string(),
            parts::PartError::Aws(_) => format!("Failed To Delete Part {part}"),
        };
        diagnostics.error(summary, format!("Stack {}: {part}: {error}", spec.name));
    }
    if report.cancelled {
        diagnostics.error(
            "Destroy Interrupted",
            "Terraform asked the provider to stop. Run destroy again to finish; parts already deleted are skipped.",
        );
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_of_missing_parts_are_null_not_unknown() {
        let planned = Value::Map(
            [
                ("archive_bucket_arn".to_string(), Value::Unknown),
                ("log_group_arn".to_string(), Value::Unknown),
                ("ecr_repository_urls".to_string(), Value::Unknown),
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
        assert_eq!(state.get("ecr_repository_urls").as_string_map().unwrap().len(), 1);
    }
}
