//! Schemas: what the provider tells Terraform about its configuration, resources and their attributes.
//!
//! A schema is also the provider's own source of truth: value types for decoding and encoding, which
//! attributes Terraform fills from configuration, which the provider computes, which force replacement and
//! which are never stored. The documentation generator reads the descriptions from here too.

use std::collections::BTreeMap;

use super::types::Type;
use super::value::Value;

/// A versioned schema for a provider configuration or a resource.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Bumped when stored state needs upgrading.
    pub version: i64,
    /// The top-level block.
    pub block: Block,
}

/// A block: attributes plus nested blocks.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// Attributes in display order.
    pub attributes: Vec<Attribute>,
    /// Nested blocks in display order.
    pub blocks: Vec<NestedBlock>,
    /// Markdown description.
    pub description: String,
}

/// How a nested block or nested attribute repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one (`assume_role { ... }` or `database = { ... }`).
    Single,
    /// A list of them.
    List,
}

/// A nested block such as `endpoints { ... }`.
#[derive(Debug, Clone)]
pub struct NestedBlock {
    /// The block's type name in configuration.
    pub name: String,
    /// How it repeats.
    pub nesting: Nesting,
    /// What it contains.
    pub block: Block,
}

/// One attribute.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Its name in configuration.
    pub name: String,
    /// Its value type, or the nested attributes it holds (`cluster = { ... }`).
    pub kind: AttributeKind,
    /// Markdown description (every attribute has one; the docs test checks).
    pub description: String,
    /// Must be set in configuration.
    pub required: bool,
    /// May be set in configuration.
    pub optional: bool,
    /// The provider may set it (alone: output only; with `optional`: a default or derived value).
    pub computed: bool,
    /// Hidden in plan output and logs.
    pub sensitive: bool,
    /// Sent by Terraform during plan and apply but never stored in plan or state (Terraform >= 1.11).
    pub write_only: bool,
    /// A change plans a replacement of the whole resource.
    pub requires_replace: bool,
    /// Planned when the configuration leaves it null (needs `optional` and `computed`).
    pub default: Option<Value>,
}

/// The type of an attribute: a plain type or nested attributes.
#[derive(Debug, Clone)]
pub enum AttributeKind {
    /// A plain value of this type.
    Plain(Type),
    /// An object (or list of objects) with its own attributes.
    Nested(Nesting, Vec<Attribute>),
}

impl Attribute {
    fn new(name: &str, kind: AttributeKind, description: &str) -> Self {
        Attribute {
            name: name.to_string(),
            kind,
            description: description.to_string(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            requires_replace: false,
            default: None,
        }
    }

    /// A required attribute.
    pub fn required(name: &str, ty: Type, description: &str) -> Self {
        Attribute { required: true, ..Self::new(name, AttributeKind::Plain(ty), description) }
    }

    /// An optional attribute (null when not set).
    pub fn optional(name: &str, ty: Type, description: &str) -> Self {
        Attribute { optional: true, ..Self::new(name, AttributeKind::Plain(ty), description) }
    }

    /// An output-only attribute.
    pub fn computed(name: &str, ty: Type, description: &str) -> Self {
        Attribute { computed: true, ..Self::new(name, AttributeKind::Plain(ty), description) }
    }

    /// An optional attribute the provider fills when it is not set.
    pub fn optional_computed(name: &str, ty: Type, description: &str) -> Self {
        Attribute { optional: true, computed: true, ..Self::new(name, AttributeKind::Plain(ty), description) }
    }

    /// An optional single nested object (`name = { ... }`).
    pub fn optional_object(name: &str, attributes: Vec<Attribute>, description: &str) -> Self {
        Attribute { optional: true, ..Self::new(name, AttributeKind::Nested(Nesting::Single, attributes), description) }
    }

    /// An optional single nested object that the provider fills in (with what exists) when it is not set.
    pub fn optional_computed_object(name: &str, attributes: Vec<Attribute>, description: &str) -> Self {
        Attribute { computed: true, ..Self::optional_object(name, attributes, description) }
    }

    /// Marks the attribute sensitive.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Marks the attribute write-only.
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    /// Marks that a change replaces the resource.
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }

    /// Sets the default planned when the configuration leaves it null.
    pub fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }

    /// The value type of the attribute.
    pub fn value_type(&self) -> Type {
        match &self.kind {
            AttributeKind::Plain(ty) => ty.clone(),
            AttributeKind::Nested(nesting, attributes) => {
                let object = object_type(attributes);
                match nesting {
                    Nesting::Single => object,
                    Nesting::List => Type::List(Box::new(object)),
                }
            }
        }
    }
}

fn object_type(attributes: &[Attribute]) -> Type {
    Type::Object(attributes.iter().map(|a| (a.name.clone(), a.value_type())).collect::<BTreeMap<_, _>>())
}

impl Block {
    /// The object type of a value of this block.
    pub fn value_type(&self) -> Type {
        let mut fields: BTreeMap<String, Type> =
            self.attributes.iter().map(|a| (a.name.clone(), a.value_type())).collect();
        for nested in &self.blocks {
            let object = nested.block.value_type();
            let ty = match nested.nesting {
                Nesting::Single => object,
                Nesting::List => Type::List(Box::new(object)),
            };
            fields.insert(nested.name.clone(), ty);
        }
        Type::Object(fields)
    }

    /// The attribute of this name, if any.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

impl Schema {
    /// The object type of a whole value of this schema.
    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_blocks_and_attributes_shape_the_value_type() {
        let block = Block {
            attributes: vec![
                Attribute::required("name", Type::String, "Name."),
                Attribute::optional_object("db", vec![Attribute::optional("size", Type::Number, "Size.")], "Db."),
            ],
            blocks: vec![NestedBlock {
                name: "endpoints".into(),
                nesting: Nesting::Single,
                block: Block { attributes: vec![Attribute::optional("s3", Type::String, "S3.")], ..Block::default() },
            }],
            description: String::new(),
        };
        let json = block.value_type().to_json().to_string();
        assert_eq!(
            json,
            r#"["object",{"db":["object",{"size":"number"}],"endpoints":["object",{"s3":"string"}],"name":"string"}]"#
        );
    }
}
