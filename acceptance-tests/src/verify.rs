//! Import verification: compares the attributes of an imported resource with those the previous config
//! step applied, the way terraform-plugin-testing's `ImportStateVerify` does.
//!
//! Both sides are flattened to `path = value` pairs (the "flatmap" shape older Terraform used), which
//! makes a difference deep inside a map or list name the exact element that differs.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Flattens attribute values into dotted paths.
///
/// Lists and maps also get a count entry (`drift.#`, `tags.%`) so an empty collection still differs from
/// a null one, as it does for Terraform. Nulls are left out: a null attribute and a missing one are the
/// same to Terraform.
pub fn flatten(values: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Value::Object(map) = values {
        for (key, value) in map {
            flatten_into(key, value, &mut out);
        }
    }
    out
}

fn flatten_into(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            out.insert(format!("{path}.%"), map.len().to_string());
            for (key, v) in map {
                flatten_into(&format!("{path}.{key}"), v, out);
            }
        }
        Value::Array(items) => {
            out.insert(format!("{path}.#"), items.len().to_string());
            for (i, v) in items.iter().enumerate() {
                flatten_into(&format!("{path}.{i}"), v, out);
            }
        }
        Value::String(s) => {
            out.insert(path.to_string(), s.clone());
        }
        other => {
            out.insert(path.to_string(), other.to_string());
        }
    }
}

/// Whether `path` is the ignored attribute `ignore` or lies inside it.
///
/// Unlike plugin-testing's plain prefix match, `tags` does not also hide `tags_all`.
fn is_ignored(path: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|i| path == i || path.strip_prefix(i.as_str()).is_some_and(|rest| rest.starts_with('.')))
}

/// One attribute whose applied and imported values differ; `None` means absent (or null) on that side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrDiff {
    /// Flattened attribute path.
    pub path: String,
    /// Value in the state the config step applied.
    pub applied: Option<String>,
    /// Value in the imported state.
    pub imported: Option<String>,
}

impl fmt::Display for AttrDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.as_ref().map_or("<absent>".to_string(), |s| format!("{s:?}"));
        write!(f, "  {}: applied {} != imported {}", self.path, show(&self.applied), show(&self.imported))
    }
}

/// Every attribute that differs between the applied and the imported resource values, ignoring `ignore`
/// (attribute names, or dotted paths, and everything below them).
pub fn diff(applied: &Value, imported: &Value, ignore: &[String]) -> Vec<AttrDiff> {
    let applied = flatten(applied);
    let imported = flatten(imported);
    let mut paths: Vec<&String> = applied.keys().chain(imported.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| !is_ignored(p, ignore))
        .filter_map(|p| {
            let (a, i) = (applied.get(p), imported.get(p));
            (a != i).then(|| AttrDiff { path: p.clone(), applied: a.cloned(), imported: i.cloned() })
        })
        .collect()
}

/// A readable report of `diffs` for the resource at `address`, or `None` when there are none.
pub fn report(address: &str, diffs: &[AttrDiff]) -> Option<String> {
    if diffs.is_empty() {
        return None;
    }
    let lines: Vec<String> = diffs.iter().map(ToString::to_string).collect();
    Some(format!(
        "ImportStateVerify: {} attribute(s) of {address} differ between the applied and the imported state:\n{}\n\
         (if an attribute cannot be read back from AWS, list it in import_state_verify_ignore)",
        diffs.len(),
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_nested_values_with_counts() {
        let flat = flatten(&json!({
            "name": "acc", "log_retention_days": 365, "archive_force_destroy": false,
            "tags": {"team": "a"}, "drift": [], "token": null
        }));
        let expected: BTreeMap<String, String> = [
            ("archive_force_destroy", "false"),
            ("drift.#", "0"),
            ("log_retention_days", "365"),
            ("name", "acc"),
            ("tags.%", "1"),
            ("tags.team", "a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(flat, expected);
    }

    #[test]
    fn identical_values_have_no_diff() {
        let v = json!({"name": "acc", "tags": {"a": "b"}, "drift": ["x"]});
        assert!(diff(&v, &v, &[]).is_empty());
        assert_eq!(report("datavault_stack.main", &[]), None);
    }

    #[test]
    fn reports_changed_missing_and_extra_attributes() {
        let applied = json!({"name": "acc", "archive_force_destroy": true, "tags": {"team": "a"}});
        let imported =
            json!({"name": "acc", "archive_force_destroy": null, "tags": {"team": "b"}, "region": "eu-west-2"});
        let d = diff(&applied, &imported, &[]);
        assert_eq!(
            d,
            vec![
                AttrDiff { path: "archive_force_destroy".into(), applied: Some("true".into()), imported: None },
                AttrDiff { path: "region".into(), applied: None, imported: Some("eu-west-2".into()) },
                AttrDiff { path: "tags.team".into(), applied: Some("a".into()), imported: Some("b".into()) },
            ]
        );
        let text = report("datavault_stack.main", &d).unwrap();
        assert!(text.contains("3 attribute(s) of datavault_stack.main"), "{text}");
        assert!(text.contains("archive_force_destroy: applied \"true\" != imported <absent>"), "{text}");
    }

    #[test]
    fn ignores_named_attributes_and_their_children_only() {
        let applied = json!({"archive_force_destroy": true, "tags": {"a": "1"}, "tags_all": {"a": "1"}});
        let imported = json!({"archive_force_destroy": false, "tags": {"a": "2"}, "tags_all": {"a": "2"}});
        let ignore = ["archive_force_destroy".to_string(), "tags".to_string()];
        let d = diff(&applied, &imported, &ignore);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "tags_all.a");
    }

    #[test]
    fn empty_and_null_collections_differ() {
        let d = diff(&json!({"tags": {}}), &json!({"tags": null}), &[]);
        assert_eq!(d, vec![AttrDiff { path: "tags.%".into(), applied: Some("0".into()), imported: None }]);
    }
}
