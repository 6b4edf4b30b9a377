//! Diagnostics: how every failure and warning travels back to Terraform.
//!
//! Errors never cross the protocol as bare strings: each carries a severity, a short Title Case summary, a
//! full-sentence detail saying who must fix what, and where possible the attribute path that Terraform
//! uses to point at the offending line of configuration.

use std::fmt;

/// One step into a value: an object attribute, a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// An attribute of an object, e.g. `name`.
    Attribute(String),
    /// A key of a map, e.g. `tags["team"]`.
    Key(String),
    /// An index of a list, e.g. `subnet_ids[0]`.
    Index(i64),
}

/// A path from the root of a resource or provider configuration to one value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributePath {
    /// The steps from the root, outermost first.
    pub steps: Vec<PathStep>,
}

impl AttributePath {
    /// The path of a top-level attribute.
    pub fn root(name: &str) -> Self {
        AttributePath { steps: vec![PathStep::Attribute(name.to_string())] }
    }

    /// This path extended by an attribute name (returns a copy, so base paths can be reused).
    pub fn attribute(&self, name: &str) -> Self {
        self.with(PathStep::Attribute(name.to_string()))
    }

    /// This path extended by a map key.
    pub fn key(&self, key: &str) -> Self {
        self.with(PathStep::Key(key.to_string()))
    }

    /// This path extended by a list index.
    pub fn index(&self, index: i64) -> Self {
        self.with(PathStep::Index(index))
    }

    fn with(&self, step: PathStep) -> Self {
        let mut steps = self.steps.clone();
        steps.push(step);
        AttributePath { steps }
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, step) in self.steps.iter().enumerate() {
            match step {
                PathStep::Attribute(name) if position == 0 => write!(f, "{name}")?,
                PathStep::Attribute(name) => write!(f, ".{name}")?,
                PathStep::Key(key) => write!(f, "[{key:?}]")?,
                PathStep::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The operation failed.
    Error,
    /// The operation went ahead, but the user should know something.
    Warning,
}

/// One message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A short Title Case summary.
    pub summary: String,
    /// Full sentences: what happened and who must fix what.
    pub detail: String,
    /// The configuration attribute concerned, if any.
    pub path: Option<AttributePath>,
}

impl Diagnostic {
    /// An error not tied to one attribute.
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, summary: summary.into(), detail: detail.into(), path: None }
    }

    /// A warning not tied to one attribute.
    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, summary: summary.into(), detail: detail.into(), path: None }
    }

    /// The same diagnostic, pointing at an attribute.
    pub fn at(mut self, path: AttributePath) -> Self {
        self.path = Some(path);
        self
    }
}

/// An ordered collection of diagnostics, as every RPC returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// No diagnostics.
    pub fn new() -> Self {
        Diagnostics(Vec::new())
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Adds all diagnostics of another collection.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any diagnostic is an error (the operation must be treated as failed).
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Adds an error not tied to one attribute.
    pub fn error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::error(summary, detail));
    }

    /// Adds a warning not tied to one attribute.
    pub fn warning(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::warning(summary, detail));
    }

    /// Adds an error about one attribute.
    pub fn attribute_error(&mut self, path: AttributePath, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::error(summary, detail).at(path));
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_terraform_references() {
        let path = AttributePath::root("services").key("worker").attribute("environment").index(2);
        assert_eq!(path.to_string(), r#"services["worker"].environment[2]"#);
    }

    #[test]
    fn only_errors_fail_an_operation() {
        let mut diags = Diagnostics::new();
        diags.warning("Retained", "The state bucket is kept.");
        assert!(!diags.has_errors());
        diags.attribute_error(AttributePath::root("name"), "Invalid Name", "Use lowercase letters.");
        assert!(diags.has_errors());
    }
}
