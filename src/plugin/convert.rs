//! Conversions between wire messages and framework types: the only place the protocol meets the framework.

use super::proto::tfplugin6 as tf;
use crate::framework::diagnostics::PathStep;
use crate::framework::schema::{Attribute, AttributeKind, Block, NestedBlock, Nesting};
use crate::framework::{AttributePath, Diagnostic, Diagnostics, IdentitySchema, Schema, Severity, Type, Value};

/// Decodes a wire value and shapes it to `ty`; a missing value is null.
pub fn decode(value: Option<&tf::DynamicValue>, ty: &Type) -> Result<Value, Diagnostics> {
    let Some(value) = value else { return Ok(Value::Null) };
    let decoded = if !value.msgpack.is_empty() {
        Value::from_msgpack(&value.msgpack)
    } else if !value.json.is_empty() {
        Value::from_json(&value.json)
    } else {
        Ok(Value::Null)
    };
    decoded.map(|v| v.conform(ty)).map_err(|e| {
        Diagnostic::error(
            "Undecodable Value From Terraform",
            format!("The provider could not decode a value sent by Terraform: {e}. This is a bug in the provider."),
        )
        .into()
    })
}

/// Encodes a value for the wire.
pub fn encode(value: &Value) -> tf::DynamicValue {
    tf::DynamicValue { msgpack: value.to_msgpack(), json: Vec::new() }
}

/// Converts diagnostics for the wire.
pub fn diagnostics(diags: Diagnostics) -> Vec<tf::Diagnostic> {
    diags.0.into_iter().map(diagnostic).collect()
}

fn diagnostic(d: Diagnostic) -> tf::Diagnostic {
    let severity = match d.severity {
        Severity::Error => tf::diagnostic::Severity::Error,
        Severity::Warning => tf::diagnostic::Severity::Warning,
    };
    tf::Diagnostic {
        severity: severity as i32,
        summary: d.summary,
        detail: d.detail,
        attribute: d.path.map(|p| attribute_path(&p)),
    }
}

/// Converts an attribute path for the wire.
pub fn attribute_path(path: &AttributePath) -> tf::AttributePath {
    use tf::attribute_path::step::Selector;
    let steps = path
        .steps
        .iter()
        .map(|step| tf::attribute_path::Step {
            selector: Some(match step {
                PathStep::Attribute(name) => Selector::AttributeName(name.clone()),
                PathStep::Key(key) => Selector::ElementKeyString(key.clone()),
                PathStep::Index(index) => Selector::ElementKeyInt(*index),
            }),
        })
        .collect();
    tf::AttributePath { steps }
}

/// Converts an identity schema for the wire.
pub fn identity_schema(schema: &IdentitySchema) -> tf::ResourceIdentitySchema {
    tf::ResourceIdentitySchema {
        version: schema.version,
        identity_attributes: schema
            .attributes
            .iter()
            .map(|a| tf::resource_identity_schema::IdentityAttribute {
                name: a.name.clone(),
                r#type: a.ty.to_json_bytes(),
                required_for_import: a.required_for_import,
                optional_for_import: a.optional_for_import,
                description: a.description.clone(),
            })
            .collect(),
    }
}

/// Wraps an identity value for the wire.
pub fn identity_data(identity: Option<Value>) -> Option<tf::ResourceIdentityData> {
    identity.map(|v| tf::ResourceIdentityData { identity_data: Some(encode(&v)) })
}

/// Converts a schema for the wire.
pub fn schema(schema: &Schema) -> tf::Schema {
    tf::Schema { version: schema.version, block: Some(block(&schema.block)) }
}

fn block(block: &Block) -> tf::schema::Block {
    tf::schema::Block {
        version: 0,
        attributes: block.attributes.iter().map(attribute).collect(),
        block_types: block.blocks.iter().map(nested_block).collect(),
        description: block.description.clone(),
        description_kind: tf::StringKind::Markdown as i32,
        deprecated: false,
        deprecation_message: String::new(),
    }
}

fn nested_block(nested: &NestedBlock) -> tf::schema::NestedBlock {
    use tf::schema::nested_block::NestingMode;
    let nesting = match nested.nesting {
        Nesting::Single => NestingMode::Single,
        Nesting::List => NestingMode::List,
    };
    tf::schema::NestedBlock {
        type_name: nested.name.clone(),
        block: Some(block(&nested.block)),
        nesting: nesting as i32,
        min_items: 0,
        max_items: if nested.nesting == Nesting::Single { 1 } else { 0 },
    }
}

fn attribute(attribute: &Attribute) -> tf::schema::Attribute {
    // Terraform >= 1.3 rejects an attribute that sets both `type` and `nested_type`: exactly one is sent.
    let (ty, nested_type) = match &attribute.kind {
        AttributeKind::Plain(ty) => (ty.to_json_bytes(), None),
        AttributeKind::Nested(nesting, attributes) => {
            use tf::schema::object::NestingMode;
            let nesting = match nesting {
                Nesting::Single => NestingMode::Single,
                Nesting::List => NestingMode::List,
            };
            #[allow(deprecated)]
            let object = tf::schema::Object {
                attributes: attributes.iter().map(self::attribute).collect(),
                nesting: nesting as i32,
                min_items: 0,
                max_items: 0,
            };
            (Vec::new(), Some(object))
        }
    };
    tf::schema::Attribute {
        name: attribute.name.clone(),
        r#type: ty,
        nested_type,
        description: attribute.description.clone(),
        required: attribute.required,
        optional: attribute.optional,
        computed: attribute.computed,
        sensitive: attribute.sensitive,
        description_kind: tf::StringKind::Markdown as i32,
        deprecated: false,
        deprecation_message: String::new(),
        write_only: attribute.write_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_send_nested_type_without_type() {
        let attr = Attribute::optional_object("db", vec![Attribute::optional("size", Type::Number, "Size.")], "Db.");
        let wire = attribute(&attr);
        assert!(wire.r#type.is_empty());
        assert_eq!(wire.nested_type.unwrap().attributes[0].r#type, b"\"number\"".to_vec());
    }

    #[test]
    fn diagnostics_keep_their_attribute_path() {
        let diags: Diagnostics =
            Diagnostic::error("Invalid Name", "Use lowercase.").at(AttributePath::root("tags").key("team")).into();
        let wire = diagnostics(diags);
        assert_eq!(wire[0].severity, tf::diagnostic::Severity::Error as i32);
        assert_eq!(wire[0].attribute.as_ref().unwrap().steps.len(), 2);
    }

    #[test]
    fn decode_treats_missing_value_as_null() {
        assert_eq!(decode(None, &Type::String).unwrap(), Value::Null);
    }
}
