//! How a walk over the parts' graph that did not finish is told to the user: one error per part that
//! failed, or one saying why the walk stopped, each naming the stack and what happens next. Every walk
//! (the survey that starts read, plan, apply and destroy; apply; the removal of parts no longer wanted;
//! destroy) reports through [`diagnostics`], so the same failure reads the same wherever it happens.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::framework::Diagnostics;

use super::graph::Report;
use super::parts::{Part, PartError};

/// The walk a report comes from, which decides its words.
#[derive(Debug, Clone, Copy)]
pub enum Walk<'a> {
    /// Observing the parts; `consequence` says what the caller therefore did not do.
    Survey {
        /// What the caller did not do because the survey did not finish.
        consequence: &'a str,
    },
    /// Ensuring the wanted parts, within `limit`.
    Apply {
        /// The timeout the apply ran under.
        limit: Duration,
    },
    /// Removing the stack's parts that the configuration no longer wants, at the end of an apply.
    Removal,
    /// Deleting every part, within `limit`.
    Destroy {
        /// The timeout the destroy ran under.
        limit: Duration,
    },
}

impl<'a> Walk<'a> {
    /// The summary of the error for one failed part.
    fn failure_summary(self, part: Part, error: &PartError) -> String {
        match (self, error) {
            (Walk::Apply { .. }, PartError::Refused(_)) => "Apply Refused To Protect Data".into(),
            (Walk::Destroy { .. }, PartError::Refused(_)) => "Destroy Refused To Protect Data".into(),
            (Walk::Survey { .. }, _) => format!("Failed To Read Part {part}"),
            (Walk::Apply { .. }, _) => format!("Failed To Apply Part {part}"),
            (Walk::Removal, _) => format!("Failed To Remove Part {part}"),
            (Walk::Destroy { .. }, _) => format!("Failed To Delete Part {part}"),
        }
    }

    /// The detail of the error for one failed part.
    fn failure_detail(self, stack: &str, part: Part, error: &PartError) -> String {
        let error = error.to_string();
        let error = error.trim_end_matches('.');
        match self {
            Walk::Removal => format!(
                "Stack {stack}: {part} is no longer wanted, but removing it failed: {error}. The next apply tries again."
            ),
            _ => format!("Stack {stack}: {part}: {error}. {}", self.next()),
        }
    }

    /// What the user can expect after this walk stopped half-way (for a survey, what its caller did not do).
    fn next(self) -> &'a str {
        match self {
            Walk::Survey { consequence } => consequence,
            Walk::Apply { .. } => "What was created is recorded in state; the next apply continues from there.",
            Walk::Removal => "The next apply continues.",
            Walk::Destroy { .. } => "Parts already deleted are skipped when destroy runs again.",
        }
    }

    /// The error for a walk that stopped without a part failing: Terraform's stop, or a timeout.
    fn interruption(self, stack: &str, cancel: &CancellationToken) -> (String, String) {
        let why = |limit: Duration| {
            if cancel.is_cancelled() {
                "Terraform asked the provider to stop".to_string()
            } else {
                format!("the {} timeout passed", crate::framework::duration::format(limit))
            }
        };
        match self {
            Walk::Survey { consequence } => {
                ("Interrupted".into(), format!("The provider was stopped or timed out. {consequence}"))
            }
            Walk::Apply { limit } => {
                ("Apply Interrupted".into(), format!("Stack {stack}: {}. {}", why(limit), self.next()))
            }
            Walk::Removal => (
                "Apply Interrupted".into(),
                format!(
                    "Stack {stack}: the apply stopped while removing parts the configuration no longer wants. {}",
                    self.next()
                ),
            ),
            Walk::Destroy { limit } => {
                ("Destroy Interrupted".into(), format!("Stack {stack}: {}. {}", why(limit), self.next()))
            }
        }
    }
}

/// The errors of a walk over `stack`'s parts: one per failed part, or, when none failed but the walk was
/// cancelled, one saying why. Empty for a walk that finished. `cancel` is Terraform's own stop, which
/// tells a stop from a timeout.
pub fn diagnostics<T>(
    report: &Report<Part, T, PartError>,
    walk: Walk<'_>,
    stack: &str,
    cancel: &CancellationToken,
) -> Diagnostics {
    let mut diagnostics = Diagnostics::new();
    for (part, error) in &report.failed {
        diagnostics.error(walk.failure_summary(*part, error), walk.failure_detail(stack, *part, error));
    }
    if report.cancelled && report.failed.is_empty() {
        let (summary, detail) = walk.interruption(stack, cancel);
        diagnostics.error(summary, detail);
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failed: Vec<(Part, PartError)>, cancelled: bool) -> Report<Part, (), PartError> {
        Report { done: vec![], failed, skipped: vec![], cancelled }
    }

    fn texts(diagnostics: &Diagnostics) -> Vec<(String, String)> {
        diagnostics.0.iter().map(|d| (d.summary.clone(), d.detail.clone())).collect()
    }

    #[test]
    fn each_failed_part_is_named_with_what_happens_next() {
        let failed = report(vec![(Part::Database, PartError::Missing("RDS said no.".into()))], false);
        let token = CancellationToken::new();
        let apply = texts(&diagnostics(&failed, Walk::Apply { limit: Duration::from_secs(60) }, "vault", &token));
        assert_eq!(apply.len(), 1);
        assert_eq!(apply[0].0, "Failed To Apply Part database");
        assert!(apply[0].1.starts_with("Stack vault: database: RDS said no. What was created"), "{}", apply[0].1);
        let survey =
            texts(&diagnostics(&failed, Walk::Survey { consequence: "Nothing was changed." }, "vault", &token));
        assert_eq!(
            survey[0],
            ("Failed To Read Part database".into(), "Stack vault: database: RDS said no. Nothing was changed.".into())
        );
        let removal = texts(&diagnostics(&failed, Walk::Removal, "vault", &token));
        assert!(removal[0].1.contains("no longer wanted, but removing it failed: RDS said no. The next apply"));
    }

    #[test]
    fn a_refusal_says_it_protects_data_and_a_stop_says_why() {
        let refused = report(vec![(Part::ArchiveBucket, PartError::Refused("it holds data".into()))], false);
        let token = CancellationToken::new();
        let destroy = Walk::Destroy { limit: Duration::from_secs(60) };
        assert_eq!(texts(&diagnostics(&refused, destroy, "vault", &token))[0].0, "Destroy Refused To Protect Data");
        let stopped = report(vec![], true);
        let timed_out = texts(&diagnostics(&stopped, destroy, "vault", &token));
        assert_eq!(timed_out[0].0, "Destroy Interrupted");
        assert!(timed_out[0].1.contains("timeout passed"), "{}", timed_out[0].1);
        token.cancel();
        let asked = texts(&diagnostics(&stopped, destroy, "vault", &token));
        assert!(asked[0].1.contains("Terraform asked the provider to stop"), "{}", asked[0].1);
        assert!(diagnostics(&report(vec![], false), destroy, "vault", &token).0.is_empty());
    }
}
