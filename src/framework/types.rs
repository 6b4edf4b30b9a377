//! Terraform's type system as the provider declares it in schemas.
//!
//! Terraform describes types as JSON (`"string"`, `["map","string"]`, `["object",{...}]`); this module
//! holds the small subset the provider uses and produces that encoding for the schema RPCs.

use std::collections::BTreeMap;

use serde_json::json;

/// A Terraform value type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// A UTF-8 string.
    String,
    /// An arbitrary-precision number (the provider only needs what fits an `f64`).
    Number,
    /// `true` or `false`.
    Bool,
    /// An ordered sequence of one element type.
    List(Box<Type>),
    /// An unordered collection of unique elements of one type.
    Set(Box<Type>),
    /// String keys to values of one type.
    Map(Box<Type>),
    /// Named attributes, each with its own type.
    Object(BTreeMap<String, Type>),
}

impl Type {
    /// `list(string)`, the most common collection in the schemas.
    pub fn list_of_strings() -> Type {
        Type::List(Box::new(Type::String))
    }

    /// `map(string)`, as used for tags.
    pub fn map_of_strings() -> Type {
        Type::Map(Box::new(Type::String))
    }

    /// The JSON type constraint Terraform expects in `Schema.Attribute.type`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Type::String => json!("string"),
            Type::Number => json!("number"),
            Type::Bool => json!("bool"),
            Type::List(element) => json!(["list", element.to_json()]),
            Type::Set(element) => json!(["set", element.to_json()]),
            Type::Map(element) => json!(["map", element.to_json()]),
            Type::Object(attributes) => {
                let fields: serde_json::Map<String, serde_json::Value> =
                    attributes.iter().map(|(name, ty)| (name.clone(), ty.to_json())).collect();
                json!(["object", fields])
            }
        }
    }

    /// The JSON encoding as bytes, ready for the wire.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_nested_types_as_terraform_expects() {
        let ty = Type::Object(BTreeMap::from([
            ("tags".to_string(), Type::map_of_strings()),
            ("count".to_string(), Type::Number),
        ]));
        assert_eq!(
            String::from_utf8(ty.to_json_bytes()).unwrap(),
            r#"["object",{"count":"number","tags":["map","string"]}]"#
        );
    }
}
