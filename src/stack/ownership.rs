//! Ownership: a stack changes or deletes only what it can prove is its own.
//!
//! AWS accounts are shared, and every part of a stack has a name anyone could have taken first: another
//! team's bucket `shop-archive`, a role `shop-task` made by hand, the reference deployment's untagged
//! resources, or a second stack whose name makes the same look-alike. What proves a resource is this
//! stack's is its mark, the tag `datavault:stack = <name>` together with `datavault:part = <part>`, which
//! every create call writes (or, for S3, a claim written before the bucket: see the
//! storage parts in [`super::parts`]). Parts that cannot carry tags (mount targets, listeners) belong to the parent
//! they live in.
//!
//! A found resource is judged once, when it is observed, into an [`Owner`]. Everything downstream works
//! from that verdict: read and destroy see only the stack's own parts, apply refuses before its first write
//! when a wanted part's name is taken, and the plan says so first. Taking over unmarked resources (a
//! deployment made before the provider) is possible only when the configuration asks for it
//! (`adopt_untagged_resources`), and the plan lists each one; a resource marked for another stack is never
//! taken over.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::aws::{DEPLOYED_TAG, PART_TAG, STACK_TAG};
use crate::framework::{AttributePath, Diagnostic, Diagnostics};

use super::parts::Part;
use super::survey::Survey;

/// Whom a resource found under a part's name belongs to, judged from its marks.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Owner {
    /// Marked as this part of this stack (or inside a parent that is).
    #[default]
    Stack,
    /// No stack mark at all: made by hand, by other tooling, or by the reference deployment.
    Unmarked,
    /// Marked for another stack.
    OtherStack(String),
    /// Marked for this stack, but as another of its parts (e.g. the state bucket named as the archive).
    OtherPart(String),
}

impl Owner {
    /// Judges a resource by its tags: whether it is `part` of `stack`.
    pub fn from_tags(tags: &BTreeMap<String, String>, stack: &str, part: &str) -> Owner {
        match (tags.get(STACK_TAG), tags.get(PART_TAG)) {
            (None, _) => Owner::Unmarked,
            (Some(other), _) if other != stack => Owner::OtherStack(other.clone()),
            // Resources made before parts were tagged carry no part tag; the stack tag alone is theirs.
            (Some(_), Some(other)) if other != part => Owner::OtherPart(other.clone()),
            (Some(_), _) => Owner::Stack,
        }
    }

    /// Whether the stack may change (and, when unwanted, delete) the resource.
    pub fn is_stack(&self) -> bool {
        *self == Owner::Stack
    }

    /// Whether `adopt_untagged_resources` can make it the stack's.
    pub fn is_adoptable(&self) -> bool {
        *self == Owner::Unmarked
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Stack => f.write_str("this stack's"),
            Owner::Unmarked => write!(f, "not tagged {STACK_TAG}: it was not made by this stack"),
            Owner::OtherStack(stack) => write!(f, "tagged {STACK_TAG} = {stack:?}: it belongs to another stack"),
            Owner::OtherPart(part) => write!(f, "tagged as this stack's {part}, not as this part"),
        }
    }
}

/// A part whose name is taken by a resource the stack does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The part's key, e.g. `archive_bucket`.
    pub part: String,
    /// What the resource is, e.g. `S3 bucket shop-archive`.
    pub resource: String,
    /// Its ARN or id, when AWS gave one.
    pub arn: Option<String>,
    /// Whose it is.
    pub owner: Owner,
}

impl Conflict {
    /// `S3 bucket shop-archive (arn:aws:s3:::shop-archive)`.
    pub fn identified(&self) -> String {
        match &self.arn {
            Some(arn) => format!("{} ({arn})", self.resource),
            None => self.resource.clone(),
        }
    }

    /// Whether `adopt_untagged_resources` covers it.
    fn adopted(&self, adopt_untagged: bool) -> bool {
        adopt_untagged && self.owner.is_adoptable()
    }

    /// The error for a plan or apply that meets it, with the ways out.
    fn error(&self, stack: &str) -> Diagnostic {
        Diagnostic::error(
            "Name Taken By A Resource The Stack Does Not Own",
            format!(
                "Stack {stack}: {} has the name of the stack's {}, but it is {}. The provider changes and deletes \
                 only resources tagged as the stack's own, so nothing was changed. {}",
                self.identified(),
                self.part,
                self.owner,
                self.ways_out(stack)
            ),
        )
        .at(AttributePath::root("name"))
    }

    fn ways_out(&self, stack: &str) -> String {
        match &self.owner {
            Owner::Unmarked => format!(
                "Choose another stack name (or bucket name), remove or rename that resource, or, if it really \
                 belongs to this deployment (for example one made by hand or with the reference HCL), set \
                 adopt_untagged_resources = true to take it over; the plan then lists what is taken over. \
                 Tagging it {STACK_TAG} = {stack:?} and {PART_TAG} = {:?} by hand also works.",
                self.part
            ),
            Owner::OtherStack(other) => format!(
                "It belongs to stack {other:?} and is never taken over. Choose another name for this stack (or \
                 for the bucket)."
            ),
            Owner::OtherPart(_) => {
                "Give each part its own name (for example different archive and state bucket names).".to_string()
            }
            Owner::Stack => String::new(),
        }
    }
}

/// How a plan or apply reports conflicts it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Stop: one error per conflict (a new stack's plan, and every apply).
    Refuse,
    /// Warn, in one diagnostic: the plan of a stack that already exists. Terraform runs that same plan
    /// before a destroy, and a destroy must never be stopped by a resource it will not touch anyway; the
    /// apply that would use the name refuses before it writes.
    Warn,
}

/// The diagnostics for `conflicts`. Adoptions the configuration asked for are one warning listing them
/// all (Terraform folds warnings with the same summary into one, so a list is what stays readable).
pub fn conflict_diagnostics(conflicts: &[Conflict], stack: &str, adopt_untagged: bool, report: Report) -> Diagnostics {
    let mut diagnostics = Diagnostics::new();
    let (adopted, blocking): (Vec<&Conflict>, Vec<&Conflict>) =
        conflicts.iter().partition(|c| c.adopted(adopt_untagged));
    if !adopted.is_empty() {
        diagnostics.push(
            Diagnostic::warning(
                "Untagged Resources Will Be Taken Over",
                format!(
                    "Stack {stack}: these resources have the names of the stack's parts but no {STACK_TAG} tag. \
                     Because adopt_untagged_resources = true, apply takes them over: each is tagged as this stack's, \
                     its settings are changed to the stack's, and destroy will delete it like any other part.\n{}",
                    bullets(adopted.iter().map(|c| format!("{} (the stack's {})", c.identified(), c.part)))
                ),
            )
            .at(AttributePath::root("adopt_untagged_resources")),
        );
    }
    match report {
        Report::Refuse => diagnostics.0.extend(blocking.iter().map(|c| c.error(stack))),
        Report::Warn if !blocking.is_empty() => diagnostics.push(
            Diagnostic::warning(
                "Names Taken By Resources The Stack Does Not Own",
                format!(
                    "Stack {stack}: these resources have the names of the stack's parts, but they are not its own. \
                     Apply refuses before it changes anything while they are there; destroy leaves them alone.\n{}",
                    bullets(blocking.iter().map(|c| format!("{}: {}. {}", c.identified(), c.owner, c.ways_out(stack))))
                ),
            )
            .at(AttributePath::root("name")),
        ),
        Report::Warn => {}
    }
    diagnostics
}

/// What to say of a new stack whose name is a stack deployed already (its cluster carries
/// [`DEPLOYED_TAG`]): a Terraform state records that stack (another workspace, directory or backend), and
/// two states managing one stack would each change it to their configuration, and either's destroy would
/// delete it. Parts of an apply that never finished carry no such tag and are continued instead. `None`
/// when there is no such stack.
///
/// Apply refuses ([`Report::Refuse`]). A plan only warns ([`Report::Warn`]): Terraform plans the new half
/// of a replacement (a tainted stack, a change of VPC) as a new stack too, while the stack it replaces
/// still stands, and nothing in that plan tells the two cases apart; by the time the replacement's create
/// is applied, its delete has removed the stack, and the mark with it.
pub fn deployed_elsewhere(found: &Survey, stack: &str, report: Report) -> Option<Diagnostic> {
    let when = found.own.get(&Part::Cluster)?.tags.as_ref()?.get(DEPLOYED_TAG)?;
    let exists = format!(
        "Stack {stack} already exists in this account and region (its first complete apply finished at {when}), \
         and this Terraform state does not hold it."
    );
    let why = "Creating it here would make two states manage one stack, and destroying either would delete it.";
    let way_in = format!(
        "To manage it from this configuration, remove it from the other state and import it here (terraform \
         import <address> {stack}, or an import block with id = {stack:?}); otherwise choose another name."
    );
    let diagnostic = match report {
        Report::Refuse => Diagnostic::error(
            "Stack Already Deployed",
            format!(
                "{exists} Another state probably manages it (another workspace, directory or backend). {why} \
                 {way_in} Nothing was changed."
            ),
        ),
        Report::Warn => Diagnostic::warning(
            "Stack Already Deployed",
            format!(
                "{exists} If this plan replaces this configuration's own stack (it is tainted, or a change forces \
                 a replacement), that is expected: the stack is deleted before it is created again. Otherwise \
                 another state manages it, and apply will refuse before it changes anything. {why} {way_in}"
            ),
        ),
    };
    Some(diagnostic.at(AttributePath::root("name")))
}

/// Lines of a list, each starting with "- ".
pub fn bullets(lines: impl Iterator<Item = String>) -> String {
    lines.map(|line| format!("- {line}")).collect::<Vec<_>>().join("\n")
}

/// Whether any conflict stops the operation (one adoption does not cover).
pub fn any_blocking(conflicts: &[Conflict], adopt_untagged: bool) -> bool {
    conflicts.iter().any(|c| !c.adopted(adopt_untagged))
}

/// What a read leaves for the plan that follows it, in the resource's private state: the conflicts it met.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateState {
    /// Parts whose names are taken by resources the stack does not own.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
}

impl PrivateState {
    /// Decodes what a previous read or apply stored; anything unreadable (or nothing) is an empty state.
    pub fn decode(bytes: &[u8]) -> PrivateState {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// Encodes it for Terraform to keep; an empty state is no bytes at all.
    pub fn encode(&self) -> Vec<u8> {
        if self.conflicts.is_empty() { Vec::new() } else { serde_json::to_vec(self).unwrap_or_default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Severity;

    fn tags(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_the_stack_and_part_marks_make_a_resource_the_stacks() {
        let own = tags(&[(STACK_TAG, "shop"), (PART_TAG, "archive_bucket"), ("team", "x")]);
        assert_eq!(Owner::from_tags(&own, "shop", "archive_bucket"), Owner::Stack);
        assert_eq!(Owner::from_tags(&tags(&[("team", "x")]), "shop", "archive_bucket"), Owner::Unmarked);
        assert_eq!(Owner::from_tags(&BTreeMap::new(), "shop", "archive_bucket"), Owner::Unmarked);
        assert_eq!(Owner::from_tags(&own, "shop2", "archive_bucket"), Owner::OtherStack("shop".into()));
        assert_eq!(Owner::from_tags(&own, "shop", "state_bucket"), Owner::OtherPart("archive_bucket".into()));
        // A stack tag without a part tag (older resources) is the stack's.
        assert_eq!(Owner::from_tags(&tags(&[(STACK_TAG, "shop")]), "shop", "log_group"), Owner::Stack);
    }

    #[test]
    fn only_a_cluster_marked_deployed_makes_a_stack_another_states() {
        let with_cluster = |cluster_tags: &[(&str, &str)]| Survey {
            own: BTreeMap::from([(
                Part::Cluster,
                crate::stack::parts::PartState { tags: Some(tags(cluster_tags)), ..Default::default() },
            )]),
            foreign: BTreeMap::new(),
        };
        let finished = with_cluster(&[(STACK_TAG, "shop"), (DEPLOYED_TAG, "2026-12-01T17:46:14Z")]);
        let refusal = deployed_elsewhere(&finished, "shop", Report::Refuse).expect("a finished stack is refused");
        assert_eq!((refusal.severity, refusal.summary.as_str()), (Severity::Error, "Stack Already Deployed"));
        assert!(refusal.detail.contains("2026-12-01T17:46:14Z") && refusal.detail.contains("import"), "{refusal:?}");
        let warning = deployed_elsewhere(&finished, "shop", Report::Warn).expect("a plan warns");
        assert_eq!(warning.severity, Severity::Warning);
        // A killed apply's parts carry no mark: they are continued.
        assert!(deployed_elsewhere(&with_cluster(&[(STACK_TAG, "shop")]), "shop", Report::Refuse).is_none());
        let nothing = Survey { own: BTreeMap::new(), foreign: BTreeMap::new() };
        assert!(deployed_elsewhere(&nothing, "shop", Report::Refuse).is_none());
    }

    #[test]
    fn adoption_covers_unmarked_resources_only() {
        let conflict = |owner| Conflict {
            part: "task_role".into(),
            resource: "IAM role shop-task".into(),
            arn: Some("arn:aws:iam::123456789012:role/shop-task".into()),
            owner,
        };
        let unmarked = [conflict(Owner::Unmarked)];
        assert!(any_blocking(&unmarked, false));
        assert!(!any_blocking(&unmarked, true));
        let warning = &conflict_diagnostics(&unmarked, "shop", true, Report::Refuse).0[0];
        assert_eq!(warning.severity, crate::framework::Severity::Warning);
        let error = &conflict_diagnostics(&unmarked, "shop", false, Report::Refuse).0[0];
        assert!(error.detail.contains("arn:aws:iam::123456789012:role/shop-task"), "{}", error.detail);
        assert!(error.detail.contains("adopt_untagged_resources"), "{}", error.detail);
        let foreign = [conflict(Owner::OtherStack("other".into()))];
        assert!(any_blocking(&foreign, true), "another stack's resource is never adopted");
        assert!(conflict_diagnostics(&foreign, "shop", true, Report::Refuse).has_errors());
        // An existing stack's plan (which Terraform also runs before a destroy) only warns, naming each.
        let both = [conflict(Owner::OtherStack("other".into())), conflict(Owner::Unmarked)];
        let warned = conflict_diagnostics(&both, "shop", false, Report::Warn);
        assert!(!warned.has_errors());
        assert_eq!(warned.0.len(), 1);
        assert_eq!(warned.0[0].detail.matches("IAM role shop-task").count(), 2, "{}", warned.0[0].detail);
    }

    #[test]
    fn private_state_round_trips_and_tolerates_garbage() {
        let state = PrivateState {
            conflicts: vec![Conflict {
                part: "log_group".into(),
                resource: "log group /datavault/shop".into(),
                arn: None,
                owner: Owner::OtherStack("x".into()),
            }],
        };
        assert_eq!(PrivateState::decode(&state.encode()), state);
        assert_eq!(PrivateState::decode(b"not json"), PrivateState::default());
        assert!(PrivateState::default().encode().is_empty());
    }
}
