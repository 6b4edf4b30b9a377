//! Lookups in the JSON Terraform prints for `terraform show -json` of a state or of a saved plan.
//!
//! Checks work on these documents rather than on the state file because the JSON output is Terraform's
//! documented, stable interface; the state file format is not.

use serde_json::Value;

fn modules(root: &Value) -> Vec<&Value> {
    // Depth-first over child_modules, so resources in nested modules are found by their full address.
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(children) = out[i].get("child_modules").and_then(Value::as_array) {
            out.extend(children.iter());
        }
        i += 1;
    }
    out
}

fn state_resources(state: &Value) -> impl Iterator<Item = &Value> {
    state
        .get("values")
        .and_then(|v| v.get("root_module"))
        .map(modules)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|m| m.get("resources").and_then(Value::as_array).into_iter().flatten())
}

/// The resource object (`address`, `type`, `values`, ...) at `address` in a `terraform show -json` state.
pub fn resource<'a>(state: &'a Value, address: &str) -> Option<&'a Value> {
    state_resources(state).find(|r| r.get("address").and_then(Value::as_str) == Some(address))
}

/// Addresses of every resource in the state, for messages and emptiness checks.
pub fn resource_addresses(state: &Value) -> Vec<String> {
    state_resources(state).filter_map(|r| r.get("address").and_then(Value::as_str).map(str::to_string)).collect()
}

/// Follows a dotted path (`tags.team`, `ecr_repository_urls.web`, `drift.0`) into a JSON value; numeric
/// segments index lists.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Attribute `path` (dotted, see [`lookup`]) of the resource at `address`; `None` when the resource or
/// the attribute is missing. A null attribute is returned as `Some(Value::Null)`.
pub fn attr<'a>(state: &'a Value, address: &str, path: &str) -> Option<&'a Value> {
    lookup(resource(state, address)?.get("values")?, path)
}

/// Like [`attr`], for string attributes.
pub fn attr_str<'a>(state: &'a Value, address: &str, path: &str) -> Option<&'a str> {
    attr(state, address, path)?.as_str()
}

/// The entry of a plan's `resource_changes` for `address`.
pub fn resource_change<'a>(plan: &'a Value, address: &str) -> Option<&'a Value> {
    plan.get("resource_changes")?.as_array()?.iter().find(|c| c.get("address").and_then(Value::as_str) == Some(address))
}

/// The planned actions for `address`, e.g. `["update"]` or `["delete", "create"]`.
pub fn change_actions(plan: &Value, address: &str) -> Option<Vec<String>> {
    let actions = resource_change(plan, address)?.get("change")?.get("actions")?.as_array()?;
    Some(actions.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// One line per planned resource change (`address: [actions]`), for failure messages.
pub fn summarize_changes(plan: &Value) -> String {
    let Some(changes) = plan.get("resource_changes").and_then(Value::as_array) else {
        return "(no resource_changes)".to_string();
    };
    changes
        .iter()
        .map(|c| {
            let address = c.get("address").and_then(Value::as_str).unwrap_or("?");
            let actions = c.get("change").and_then(|ch| ch.get("actions")).cloned().unwrap_or(Value::Null);
            format!("{address}: {actions}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({
            "format_version": "1.0",
            "values": {"root_module": {
                "resources": [{
                    "address": "datavault_stack.main",
                    "type": "datavault_stack",
                    "values": {
                        "name": "acc-basic",
                        "archive_bucket_arn": "arn:aws:s3:::acc-basic-archive",
                        "ecr_repository_urls": {"web": "123.dkr.ecr/acc-basic/web"},
                        "drift": [],
                        "tags": null
                    }
                }],
                "child_modules": [{
                    "address": "module.m",
                    "resources": [{"address": "module.m.datavault_stack.x", "values": {"name": "nested"}}]
                }]
            }}
        })
    }

    #[test]
    fn finds_attributes_by_address_and_path() {
        let s = state();
        assert_eq!(attr_str(&s, "datavault_stack.main", "name"), Some("acc-basic"));
        assert_eq!(attr_str(&s, "datavault_stack.main", "ecr_repository_urls.web"), Some("123.dkr.ecr/acc-basic/web"));
        assert_eq!(attr(&s, "datavault_stack.main", "drift"), Some(&json!([])));
        assert_eq!(attr(&s, "datavault_stack.main", "tags"), Some(&Value::Null));
        assert_eq!(attr(&s, "datavault_stack.main", "nope"), None);
        assert_eq!(attr(&s, "datavault_stack.other", "name"), None);
    }

    #[test]
    fn finds_resources_in_child_modules() {
        let s = state();
        assert_eq!(attr_str(&s, "module.m.datavault_stack.x", "name"), Some("nested"));
        assert_eq!(resource_addresses(&s), ["datavault_stack.main", "module.m.datavault_stack.x"]);
    }

    #[test]
    fn an_empty_state_has_no_resources() {
        assert!(resource_addresses(&json!({"format_version": "1.0"})).is_empty());
    }

    #[test]
    fn lookup_indexes_lists() {
        let v = json!({"drift": ["log_group", "ecr"]});
        assert_eq!(lookup(&v, "drift.1"), Some(&json!("ecr")));
        assert_eq!(lookup(&v, "drift.2"), None);
        assert_eq!(lookup(&v, "drift.x"), None);
    }

    #[test]
    fn reads_planned_actions() {
        let plan = json!({"resource_changes": [
            {"address": "datavault_stack.main", "change": {"actions": ["delete", "create"]}}
        ]});
        assert_eq!(change_actions(&plan, "datavault_stack.main").unwrap(), ["delete", "create"]);
        assert_eq!(change_actions(&plan, "datavault_stack.other"), None);
        assert_eq!(summarize_changes(&plan), "datavault_stack.main: [\"delete\",\"create\"]");
    }
}
