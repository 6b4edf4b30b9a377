//! Surveying a stack: every part is observed at once, each waiting for the parts it depends on only where
//! it needs them (see [`SharedReads`]), and what was found is sorted into the stack's own parts and
//! look-alikes that merely share their names (see [`super::ownership`]). Read, plan, apply and destroy all start from a survey, so none of them
//! ever acts on a resource it has not first judged. A survey only reads.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;

use crate::aws::AwsContext;
use crate::framework::Diagnostics;

use super::graph::{self, Direction};
use super::model::StackSpec;
use super::outcome::{self, Walk};
use super::ownership::{Conflict, Owner};
use super::parts::{self, Part, PartContext, PartState, Passwords, SharedReads, defining_parts};

/// How many parts are ensured or removed at once: enough to overlap waits, few enough to keep the
/// account's write rate limits (a few requests per second for many APIs) clear of throttling.
pub const CONCURRENCY: usize = 8;

/// What a survey is for, which decides how much of each part it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A refresh: every part is found and judged for drift, which the plan then shows.
    Refresh,
    /// Finding what exists and whose it is, before a new stack is planned or an apply or destroy acts:
    /// drift is not judged where judging costs requests of its own (a role's policies, a bucket's settings,
    /// other policies: see [`PartContext::drift_read`]), since ensure and remove read afresh whatever they
    /// change.
    Ownership,
}

/// What exists under a stack's names.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Parts that exist and are the stack's own.
    pub own: BTreeMap<Part, PartState>,
    /// Resources that have a part's name but are not the stack's (each judged in its `owner`).
    pub foreign: BTreeMap<Part, PartState>,
}

impl Survey {
    /// Parts the spec wants whose names are taken by resources the stack does not own: what a plan or
    /// apply must refuse (or, where the configuration allows it, take over) before anything is written.
    pub fn conflicts(&self, spec: &StackSpec) -> Vec<Conflict> {
        self.foreign.iter().filter(|(p, _)| p.is_wanted(spec)).filter_map(|(p, s)| p.conflict(spec, s)).collect()
    }

    /// Look-alikes of every part, wanted or not, for notes about what was left alone.
    pub fn look_alikes(&self, spec: &StackSpec) -> Vec<Conflict> {
        self.foreign.iter().filter_map(|(p, s)| p.conflict(spec, s)).collect()
    }

    /// Whether anything says the stack exists: one of its defining parts, or an unmarked resource in a
    /// defining part's place (a deployment made before the provider, which only an explicit choice in the
    /// configuration takes over). Look-alikes marked for other stacks say nothing about this one.
    pub fn finds_stack(&self) -> bool {
        defining_parts()
            .iter()
            .any(|p| self.own.contains_key(p) || self.foreign.get(p).is_some_and(|s| s.owner == Owner::Unmarked))
    }
}

/// Observes `parts`, all at once: each part waits for another's observation only where it needs it (see
/// [`SharedReads`]); a dependency outside `parts` counts as absent. Only
/// the stack's own parts are handed to the parts that depend on them: a look-alike's id never ends up in a
/// request. `purpose` says whether drift is judged. On failure or cancellation, the diagnostics say which
/// part could not be read and end with `consequence` (what the caller therefore did not do).
pub async fn survey(
    cancel: &CancellationToken,
    aws: &AwsContext,
    spec: &StackSpec,
    parts: &[Part],
    purpose: Purpose,
    consequence: &str,
) -> Result<Survey, Diagnostics> {
    let reads = SharedReads::for_parts(parts).judging_drift(purpose == Purpose::Refresh);
    let reads = &reads;
    // No part is handed over: a part's dependencies come from the survey's own observations (`reads`).
    let known = &BTreeMap::new();
    // No edges: a part's dependencies are awaited inside its observe. Every part runs at once (a waiting
    // part holds its slot, so a cap below the number of parts could leave a dependency unstarted). Reads
    // are what AWS allows most of (EC2's describe calls refill at 20 per second on a bucket of 100), and a
    // survey is one burst of a few requests per part.
    let independent: BTreeMap<Part, Vec<Part>> = parts.iter().map(|p| (*p, Vec::new())).collect();
    let report = graph::run(
        &independent,
        Direction::Forward,
        parts.len().max(1),
        cancel,
        |part, _: BTreeMap<Part, Option<PartState>>| async move {
            let pctx = PartContext { spec, aws, parts: known, passwords: Passwords::KEEP, reads: Some(reads) };
            let observed = parts::observe(part, &pctx).await;
            let own = observed.as_ref().ok().and_then(Option::as_ref).filter(|s| s.owner.is_stack());
            reads.publish(part, own.cloned());
            observed
        },
    )
    .await;
    if !report.is_complete() {
        return Err(outcome::diagnostics(&report, Walk::Survey { consequence }, &spec.name, cancel));
    }
    let mut found = Survey::default();
    for (part, state) in report.done.into_iter().filter_map(|(p, s)| s.map(|s| (p, s))) {
        if state.owner.is_stack() {
            found.own.insert(part, state);
        } else {
            found.foreign.insert(part, state);
        }
    }
    Ok(found)
}
