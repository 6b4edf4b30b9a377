//! What must hold before any part is deleted. Destroy, the replacement of a tainted stack, and the removal
//! of parts the configuration no longer wants all decide first, for every part they would remove, whether
//! something forbids it (data that must not be lost), and delete nothing at all if it does: a refusal
//! half-way would leave a stack without its services but with its database, broken and still tainted.

use std::collections::BTreeMap;

use crate::aws::{self, AwsContext};
use crate::framework::{AttributePath, Diagnostic, Diagnostics};

use super::model::StackSpec;
use super::parts::{Part, PartResult, PartState, archive_not_empty_message};

/// One reason the removal must not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// Title Case summary.
    pub summary: &'static str,
    /// What holds and how to go on.
    pub detail: String,
    /// The setting that releases it.
    pub path: AttributePath,
}

/// What forbids removing `parts`, judged from the stack's own parts as just observed (`own`). Reads only.
pub async fn blockers(
    aws: &AwsContext,
    spec: &StackSpec,
    own: &BTreeMap<Part, PartState>,
    parts: &[Part],
) -> PartResult<Vec<Blocker>> {
    let mut found = Vec::new();
    let removes = |part: Part| parts.contains(&part) && own.contains_key(&part);
    let database = own.get(&Part::Database).and_then(|db| db.facts.database.as_ref());
    if removes(Part::Database) && database.is_some_and(|db| db.deletion_protection) {
        found.push(Blocker {
            summary: "Database Deletion Protection Is On",
            detail: format!(
                "The database {} has deletion protection. To delete it with the stack, set \
                 database.deletion_protection = false and apply first; a final snapshot is still taken unless \
                 skip_final_snapshot is true.",
                spec.name
            ),
            path: AttributePath::root("database").attribute("deletion_protection"),
        });
    }
    if removes(Part::ArchiveBucket)
        && !spec.archive_force_destroy
        && !aws::s3::is_empty(&aws.s3, &spec.archive_bucket).await?
    {
        found.push(Blocker {
            summary: "Archive Bucket Holds Data",
            detail: archive_not_empty_message(&spec.archive_bucket),
            path: AttributePath::root("archive_force_destroy"),
        });
    }
    Ok(found)
}

/// The diagnostics of a refused removal: each blocker, and that nothing was deleted. A destroy cannot tell
/// a plain `terraform destroy` from the replacement of a tainted stack (Terraform asks for both the same
/// way), so the way out of the second is named too.
pub fn refusal(blockers: &[Blocker], stack: &str) -> Diagnostics {
    let mut diagnostics = Diagnostics::new();
    for blocker in blockers {
        diagnostics.push(
            Diagnostic::error(
                blocker.summary,
                format!(
                    "Stack {stack}: {} Nothing was deleted. If Terraform is replacing the stack because an earlier \
                     apply failed and marked it tainted, run `terraform untaint` on it (for example `terraform \
                     untaint datavault_stack.main`): the stack is then kept, and the next apply continues it in \
                     place instead of replacing it.",
                    blocker.detail
                ),
            )
            .at(blocker.path.clone()),
        );
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_setting_and_the_way_out_of_a_replacement() {
        let blocker = Blocker {
            summary: "Database Deletion Protection Is On",
            detail: "The database vault has deletion protection.".into(),
            path: AttributePath::root("database").attribute("deletion_protection"),
        };
        let diagnostics = refusal(&[blocker], "vault");
        let error = &diagnostics.0[0];
        assert!(diagnostics.has_errors());
        assert_eq!(error.path.as_ref().unwrap().to_string(), "database.deletion_protection");
        assert!(error.detail.contains("Nothing was deleted"), "{}", error.detail);
        assert!(error.detail.contains("terraform untaint"), "{}", error.detail);
    }
}
