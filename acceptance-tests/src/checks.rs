//! Helpers for writing checks that fail with a message rather than a bare `None`: attribute lookups that
//! name what was missing, planned-action assertions, and the `ensure!` family of macros.

use serde_json::Value;

use crate::case::{CheckError, CheckResult};
use crate::state::{attr, change_actions, resource, resource_change, summarize_changes};

/// Returns early from a check with an error when a condition does not hold.
///
/// `ensure!(cond, "format", args...)`; the message should say what was expected and what was found.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return ::std::result::Result::Err(::std::format!($($msg)+).into());
        }
    };
}

/// Returns early from a check with an error when two values differ, showing both.
///
/// `ensure_eq!(actual, expected, "what is compared")`.
#[macro_export]
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($what:tt)+) => {
        match (&$actual, &$expected) {
            (actual, expected) => {
                if actual != expected {
                    return ::std::result::Result::Err(::std::format!(
                        "{}: expected {:?}, got {:?}", ::std::format!($($what)+), expected, actual
                    ).into());
                }
            }
        }
    };
}

/// Attribute `path` of `address`, or an error naming the resource and listing its attributes.
pub fn expect_attr<'a>(state: &'a Value, address: &str, path: &str) -> Result<&'a Value, CheckError> {
    let Some(res) = resource(state, address) else {
        return Err(format!("resource {address} is not in the state").into());
    };
    attr(state, address, path).ok_or_else(|| {
        let names: Vec<&String> =
            res.get("values").and_then(Value::as_object).map(|m| m.keys().collect()).unwrap_or_default();
        format!("{address} has no attribute {path}; its attributes are {names:?}").into()
    })
}

/// Like [`expect_attr`], for a string attribute.
pub fn expect_attr_str<'a>(state: &'a Value, address: &str, path: &str) -> Result<&'a str, CheckError> {
    let value = expect_attr(state, address, path)?;
    value.as_str().ok_or_else(|| format!("{address}.{path} is {value}, not a string").into())
}

/// Checks that the attribute equals `expected` (a JSON value: `json!(365)`, `json!("x")`, `json!([])`).
pub fn expect_attr_eq(state: &Value, address: &str, path: &str, expected: impl Into<Value>) -> CheckResult {
    let expected = expected.into();
    let value = expect_attr(state, address, path)?;
    if *value != expected {
        return Err(format!("{address}.{path}: expected {expected}, got {value}").into());
    }
    Ok(())
}

/// Checks that the plan's actions for `address` are one of `allowed`, e.g.
/// `&[&["delete", "create"], &["create", "delete"]]` for a replacement either way round.
pub fn check_actions(plan: &Value, address: &str, allowed: &[&[&str]]) -> CheckResult {
    let Some(actions) = change_actions(plan, address) else {
        return Err(
            format!("the plan has no change for {address}; its changes are:\n{}", summarize_changes(plan)).into()
        );
    };
    if allowed.iter().any(|a| a.iter().copied().eq(actions.iter().map(String::as_str))) {
        return Ok(());
    }
    let change = resource_change(plan, address).cloned().unwrap_or(Value::Null);
    Err(format!(
        "planned actions for {address} are {actions:?}, expected one of {allowed:?}; the change is:\n{}",
        serde_json::to_string_pretty(&change).unwrap_or_default()
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({"values": {"root_module": {"resources": [
            {"address": "datavault_stack.main", "values": {"name": "acc", "log_retention_days": 365}}
        ]}}})
    }

    #[test]
    fn missing_attributes_are_named() {
        let s = state();
        assert_eq!(expect_attr_str(&s, "datavault_stack.main", "name").unwrap(), "acc");
        let err = expect_attr(&s, "datavault_stack.main", "region").unwrap_err().to_string();
        assert!(err.contains("has no attribute region") && err.contains("log_retention_days"), "{err}");
        let err = expect_attr(&s, "datavault_stack.x", "name").unwrap_err().to_string();
        assert!(err.contains("not in the state"), "{err}");
        let err = expect_attr_str(&s, "datavault_stack.main", "log_retention_days").unwrap_err().to_string();
        assert!(err.contains("not a string"), "{err}");
    }

    #[test]
    fn compares_attribute_values() {
        let s = state();
        assert!(expect_attr_eq(&s, "datavault_stack.main", "log_retention_days", 365).is_ok());
        let err = expect_attr_eq(&s, "datavault_stack.main", "log_retention_days", 30).unwrap_err().to_string();
        assert_eq!(err, "datavault_stack.main.log_retention_days: expected 30, got 365");
    }

    #[test]
    fn accepts_any_allowed_action_sequence() {
        let plan = json!({"resource_changes": [
            {"address": "datavault_stack.main", "change": {"actions": ["create", "delete"]}}
        ]});
        let replace: &[&[&str]] = &[&["delete", "create"], &["create", "delete"]];
        assert!(check_actions(&plan, "datavault_stack.main", replace).is_ok());
        let err = check_actions(&plan, "datavault_stack.main", &[&["update"]]).unwrap_err().to_string();
        assert!(err.contains("[\"create\", \"delete\"]"), "{err}");
        let err = check_actions(&plan, "datavault_stack.other", &[&["update"]]).unwrap_err().to_string();
        assert!(err.contains("no change for datavault_stack.other"), "{err}");
    }

    fn with_macros(n: i32) -> CheckResult {
        ensure!(n > 0, "n must be positive, got {n}");
        ensure_eq!(n % 2, 0, "parity of {n}");
        Ok(())
    }

    #[test]
    fn macros_return_errors() {
        assert!(with_macros(2).is_ok());
        assert_eq!(with_macros(-1).unwrap_err().to_string(), "n must be positive, got -1");
        assert_eq!(with_macros(3).unwrap_err().to_string(), "parity of 3: expected 0, got 1");
    }
}
