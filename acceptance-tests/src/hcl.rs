//! Small pieces of HCL the harness writes around a test's own configuration: the provider requirement
//! and configuration blocks, and `import` blocks.

use regex::Regex;
use std::sync::LazyLock;

/// Source address the provider is installed under from the filesystem mirror.
pub const PROVIDER_SOURCE: &str = "datavault/datavault";

static REQUIRED_PROVIDERS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\brequired_providers\s*\{").expect("valid regex"));
static PROVIDER_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^\s*provider\s+"datavault"\s*\{"#).expect("valid regex"));

/// Returns `config` with the blocks every test needs but should not have to spell out.
///
/// Without a `required_providers` entry Terraform would look for `hashicorp/datavault`, which does not
/// exist; a module may declare `required_providers` only once, so a config that has its own is left
/// alone. The empty `provider "datavault" {}` makes the provider's configuration explicit; the provider
/// then takes region, credentials and the emulator endpoint from the `AWS_*` environment.
pub fn with_provider_blocks(config: &str) -> String {
    let mut out = String::new();
    if !REQUIRED_PROVIDERS.is_match(config) {
        out.push_str(&format!(
            "terraform {{\n  required_providers {{\n    datavault = {{\n      source = \"{PROVIDER_SOURCE}\"\n    }}\n  }}\n}}\n\n"
        ));
    }
    if !PROVIDER_BLOCK.is_match(config) {
        out.push_str("provider \"datavault\" {}\n\n");
    }
    out.push_str(config);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Quotes `value` as an HCL string literal.
///
/// Besides the JSON-style escapes, `${` and `%{` must be doubled or Terraform would treat them as
/// template interpolation and directives.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An `import` block bringing the object with `id` under the resource address `to`.
pub fn import_block(to: &str, id: &str) -> String {
    format!("import {{\n  to = {to}\n  id = {}\n}}\n", quote(id))
}

/// An `import` block bringing the object with this resource identity under the resource address `to`.
pub fn import_identity_block(to: &str, identity: &[(String, String)]) -> String {
    let fields: String = identity.iter().map(|(k, v)| format!("    {k} = {}\n", quote(v))).collect();
    format!("import {{\n  to = {to}\n  identity = {{\n{fields}  }}\n}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_identity_import_block() {
        let identity =
            [("name".to_string(), "acc-import".to_string()), ("region".to_string(), "eu-west-2".to_string())];
        assert_eq!(
            import_identity_block("datavault_stack.main", &identity),
            "import {\n  to = datavault_stack.main\n  identity = {\n    name = \"acc-import\"\n    region = \"eu-west-2\"\n  }\n}\n"
        );
    }

    #[test]
    fn prepends_both_blocks_to_a_bare_resource() {
        let out = with_provider_blocks("resource \"datavault_stack\" \"main\" {\n  name = \"x\"\n}");
        assert!(out.starts_with("terraform {\n  required_providers {"), "{out}");
        assert!(out.contains("source = \"datavault/datavault\""), "{out}");
        assert!(out.contains("provider \"datavault\" {}"), "{out}");
        assert!(out.ends_with("name = \"x\"\n}\n"), "{out}");
        // The prepended blocks come first so the test's line numbers shift but its text is intact.
        assert!(out.find("provider \"datavault\"").unwrap() < out.find("resource").unwrap());
    }

    #[test]
    fn keeps_a_config_that_declares_its_own_blocks() {
        let config = "terraform {\n  required_providers {\n    datavault = { source = \"datavault/datavault\" }\n  }\n}\n\nprovider \"datavault\" {\n  region = \"eu-west-2\"\n}\n";
        assert_eq!(with_provider_blocks(config), config);
    }

    #[test]
    fn adds_only_the_missing_block() {
        let with_provider = "provider \"datavault\" {\n  max_retries = 1\n}\n";
        let out = with_provider_blocks(with_provider);
        assert!(out.contains("required_providers"));
        assert_eq!(out.matches("provider \"datavault\"").count(), 1, "{out}");

        let with_requirements =
            "terraform {\n  required_providers {\n    datavault = { source = \"datavault/datavault\" }\n  }\n}\n";
        let out = with_provider_blocks(with_requirements);
        assert_eq!(out.matches("required_providers").count(), 1, "{out}");
        assert!(out.starts_with("provider \"datavault\" {}"), "{out}");
    }

    #[test]
    fn a_provider_mentioned_in_a_string_is_not_a_provider_block() {
        let config = "resource \"datavault_stack\" \"main\" {\n  name = \"x\"\n  tags = { note = \"provider \\\"datavault\\\" {\" }\n}\n";
        assert!(with_provider_blocks(config).contains("provider \"datavault\" {}\n"));
    }

    #[test]
    fn quotes_and_escapes_template_sequences() {
        assert_eq!(quote("acc-basic"), "\"acc-basic\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("${x} %{if} $5 %d"), "\"$${x} %%{if} $5 %d\"");
        assert_eq!(quote("l1\nl2"), "\"l1\\nl2\"");
    }

    #[test]
    fn renders_an_import_block() {
        assert_eq!(
            import_block("datavault_stack.main", "acc-import"),
            "import {\n  to = datavault_stack.main\n  id = \"acc-import\"\n}\n"
        );
    }
}
