//! Generic planning rules every resource gets, mirroring terraform-plugin-framework's behaviour.
//!
//! Terraform's proposed new state already merges configuration with prior state. On top of it the
//! framework plans defaults for unset optional+computed attributes, marks computed values unknown when a
//! resource is created, blanks write-only attributes (they must never reach plan or state), and lists the
//! attributes whose change forces replacement.

use super::schema::{Attribute, AttributeKind, Schema};
use super::value::Value;

/// The generic part of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericPlan {
    /// The planned new state.
    pub planned: Value,
    /// Top-level attributes whose change forces replacement.
    pub requires_replace: Vec<String>,
}

/// Applies the generic rules to Terraform's proposed new state.
pub fn plan(schema: &Schema, prior: &Value, proposed: &Value, config: &Value) -> GenericPlan {
    let ty = schema.value_type();
    let mut planned = proposed.conform(&ty);
    plan_attributes(&schema.block.attributes, config, &mut planned, prior.is_null());
    let requires_replace = requires_replace(schema, prior, &planned);
    GenericPlan { planned, requires_replace }
}

/// Top-level attributes flagged `requires_replace` whose planned value differs from the prior state.
/// Evaluated again after resource-specific planning, which may derive such values.
pub fn requires_replace(schema: &Schema, prior: &Value, planned: &Value) -> Vec<String> {
    if prior.is_null() {
        return Vec::new();
    }
    schema
        .block
        .attributes
        .iter()
        .filter(|a| a.requires_replace && prior.get(&a.name) != planned.get(&a.name))
        .map(|a| a.name.clone())
        .collect()
}

fn plan_attributes(attributes: &[Attribute], config: &Value, planned: &mut Value, creating: bool) {
    for attribute in attributes {
        let configured = config.get(&attribute.name);
        let mut value = planned.get(&attribute.name).clone();
        if attribute.write_only {
            value = Value::Null;
        } else if configured.is_null() {
            if let Some(default) = &attribute.default {
                value = default.clone();
            } else if attribute.computed && creating && value.is_null() {
                value = Value::Unknown;
            }
        }
        if let (AttributeKind::Nested(_, nested), Value::Map(_)) = (&attribute.kind, &value) {
            plan_attributes(nested, configured, &mut value, creating);
        }
        planned.set(&attribute.name, value);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::framework::schema::Block;
    use crate::framework::types::Type;

    fn schema() -> Schema {
        Schema {
            version: 0,
            block: Block {
                attributes: vec![
                    Attribute::required("name", Type::String, "n").requires_replace(),
                    Attribute::optional_computed("retention", Type::Number, "r").default(Value::Number(365.0)),
                    Attribute::computed("arn", Type::String, "a"),
                    Attribute::optional("password_wo", Type::String, "p").write_only(),
                ],
                ..Block::default()
            },
        }
    }

    fn object(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn create_plans_defaults_and_unknown_outputs_and_drops_write_only() {
        let config = object(&[("name", Value::string("a")), ("password_wo", Value::string("secret"))]);
        let result = plan(&schema(), &Value::Null, &config, &config);
        assert_eq!(result.planned.get("retention"), &Value::Number(365.0));
        assert_eq!(result.planned.get("arn"), &Value::Unknown);
        assert_eq!(result.planned.get("password_wo"), &Value::Null);
        assert!(result.requires_replace.is_empty());
    }

    #[test]
    fn update_keeps_outputs_and_flags_replacing_attributes() {
        let prior = object(&[
            ("name", Value::string("a")),
            ("retention", Value::Number(30.0)),
            ("arn", Value::string("arn:x")),
        ]);
        let config = object(&[("name", Value::string("b"))]);
        let proposed = object(&[
            ("name", Value::string("b")),
            ("retention", Value::Number(30.0)),
            ("arn", Value::string("arn:x")),
        ]);
        let result = plan(&schema(), &prior, &proposed, &config);
        assert_eq!(result.planned.get("arn"), &Value::string("arn:x"));
        // Removing an optional value from configuration returns it to its default.
        assert_eq!(result.planned.get("retention"), &Value::Number(365.0));
        assert_eq!(result.requires_replace, vec!["name".to_string()]);
    }
}
