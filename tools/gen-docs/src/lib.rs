//! Registry documentation generated from the provider's own schema.
//!
//! The input is what `terraform providers schema -json` prints for the built provider, so the pages
//! describe exactly what Terraform sees. The output follows the Terraform Registry's layout (the one
//! HashiCorp's tfplugindocs produces): `index.md` for the provider, `resources/<name>.md` per resource and
//! `data-sources/<name>.md` per data source, each with YAML front matter and a "Schema" section listing
//! Required / Optional / Read-Only arguments, with a "Nested Schema for `x`" section (and an anchor to link
//! to) for every nested block, nested attribute and object type.
//!
//! Prose lives in templates (`templates/**/*.md.tmpl`), the generated parts come from the schema and the
//! examples. A template is Markdown with placeholders:
//!
//! | placeholder | replaced by |
//! | --- | --- |
//! | `{{name}}` | the resource or data source type (`datavault_stack`), or the provider name on the index |
//! | `{{provider}}` | the provider name (`datavault`) |
//! | `{{kind}}` | `Resource`, `Data Source` or `Provider` |
//! | `{{description}}` | the schema's top-level description |
//! | `{{schema}}` | the generated "Schema" section |
//! | `{{example "examples/provider/provider.tf"}}` | that file (relative to the repository root) as a fenced code block |
//! | `{{import}}` | the `import {}` block and `terraform import` command of `examples/resources/<name>/` |
//!
//! A placeholder that is alone on its line after some indentation gets that indentation on every line of its
//! replacement, so `description: |-` followed by an indented `{{description}}` stays valid YAML however long
//! the description is. Generation fails, listing every problem, when an attribute, block or schema has no
//! description, a template uses an unknown placeholder or a missing example, a template has no resource, or
//! a resource has no template.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// Everything that went wrong, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub Vec<String>);

impl Error {
    fn one(message: impl Into<String>) -> Self {
        Error(vec![message.into()])
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Error {}

/// A value type in Terraform's JSON type notation (`"string"`, `["list", "string"]`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    /// `string`
    String,
    /// `number`
    Number,
    /// `bool`
    Bool,
    /// `dynamic`: any type.
    Dynamic,
    /// A list of elements of one type.
    List(Box<ValueType>),
    /// A set of elements of one type.
    Set(Box<ValueType>),
    /// A map from strings to one type.
    Map(Box<ValueType>),
    /// An object: its attribute types and the names of the optional ones.
    Object(BTreeMap<String, ValueType>, Vec<String>),
    /// A tuple of element types.
    Tuple(Vec<ValueType>),
}

impl ValueType {
    /// Parses Terraform's JSON type notation.
    pub fn from_json(json: &Json) -> Result<Self, String> {
        match json {
            Json::String(s) => match s.as_str() {
                "string" => Ok(ValueType::String),
                "number" => Ok(ValueType::Number),
                "bool" => Ok(ValueType::Bool),
                "dynamic" => Ok(ValueType::Dynamic),
                other => Err(format!("unknown primitive type {other:?}")),
            },
            Json::Array(parts) => match (parts.first().and_then(Json::as_str), parts.get(1)) {
                (Some("list"), Some(element)) => Ok(ValueType::List(Box::new(Self::from_json(element)?))),
                (Some("set"), Some(element)) => Ok(ValueType::Set(Box::new(Self::from_json(element)?))),
                (Some("map"), Some(element)) => Ok(ValueType::Map(Box::new(Self::from_json(element)?))),
                (Some("object"), Some(Json::Object(fields))) => {
                    let fields = fields
                        .iter()
                        .map(|(name, ty)| Ok((name.clone(), Self::from_json(ty)?)))
                        .collect::<Result<_, String>>()?;
                    let optional = parts
                        .get(2)
                        .and_then(Json::as_array)
                        .map(|names| names.iter().filter_map(Json::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    Ok(ValueType::Object(fields, optional))
                }
                (Some("tuple"), Some(Json::Array(elements))) => {
                    Ok(ValueType::Tuple(elements.iter().map(Self::from_json).collect::<Result<_, _>>()?))
                }
                _ => Err(format!("unknown type {json}")),
            },
            _ => Err(format!("unknown type {json}")),
        }
    }

    /// The type as the Registry pages show it: `String`, `Boolean`, `List of String`, `Map of Number`, ...
    pub fn display(&self) -> String {
        match self {
            ValueType::String => "String".into(),
            ValueType::Number => "Number".into(),
            ValueType::Bool => "Boolean".into(),
            ValueType::Dynamic => "Dynamic".into(),
            ValueType::List(element) => format!("List of {}", element.display()),
            ValueType::Set(element) => format!("Set of {}", element.display()),
            ValueType::Map(element) => format!("Map of {}", element.display()),
            ValueType::Object(..) => "Object".into(),
            ValueType::Tuple(_) => "Tuple".into(),
        }
    }

    /// The object type this type is or holds (directly or in collections), whose fields get a section.
    fn object(&self) -> Option<(&BTreeMap<String, ValueType>, &[String])> {
        match self {
            ValueType::Object(fields, optional) => Some((fields, optional)),
            ValueType::List(element) | ValueType::Set(element) | ValueType::Map(element) => element.object(),
            _ => None,
        }
    }
}

/// How a nested block or nested attribute repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one.
    Single,
    /// Exactly one, never null (blocks only).
    Group,
    /// An ordered list.
    List,
    /// A set.
    Set,
    /// A map keyed by label (blocks) or string (attributes).
    Map,
}

impl Nesting {
    fn from_json(json: Option<&Json>) -> Result<Self, String> {
        match json.and_then(Json::as_str) {
            Some("single") => Ok(Nesting::Single),
            Some("group") => Ok(Nesting::Group),
            Some("list") => Ok(Nesting::List),
            Some("set") => Ok(Nesting::Set),
            Some("map") => Ok(Nesting::Map),
            other => Err(format!("unknown nesting_mode {other:?}")),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Nesting::Single | Nesting::Group => "",
            Nesting::List => " List",
            Nesting::Set => " Set",
            Nesting::Map => " Map",
        }
    }
}

/// One attribute of a block or of a nested attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Its name in configuration.
    pub name: String,
    /// Its type or nested attributes.
    pub kind: AttributeKind,
    /// Markdown description.
    pub description: String,
    /// Must be set.
    pub required: bool,
    /// May be set.
    pub optional: bool,
    /// Set by the provider.
    pub computed: bool,
    /// Hidden in plan output.
    pub sensitive: bool,
    /// Never stored in plan or state.
    pub write_only: bool,
    /// Marked deprecated.
    pub deprecated: bool,
}

/// The type of an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeKind {
    /// A value of a plain type.
    Plain(ValueType),
    /// Nested attributes (`name = { ... }`), repeated as the nesting says.
    Nested(Nesting, Vec<Attribute>),
}

/// A nested block type (`name { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockType {
    /// The block's type name.
    pub name: String,
    /// How it repeats.
    pub nesting: Nesting,
    /// Fewest blocks allowed (more than zero makes it required).
    pub min_items: u64,
    /// Most blocks allowed (zero: no limit).
    pub max_items: u64,
    /// What it contains.
    pub block: Block,
}

/// A block: the top level of a provider, resource or data source schema, or a nested block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// Attributes, sorted by name.
    pub attributes: Vec<Attribute>,
    /// Nested block types, sorted by name.
    pub blocks: Vec<BlockType>,
    /// Markdown description.
    pub description: String,
    /// Marked deprecated.
    pub deprecated: bool,
}

fn text(json: &Json, key: &str) -> String {
    json.get(key).and_then(Json::as_str).unwrap_or_default().to_string()
}

fn flag(json: &Json, key: &str) -> bool {
    json.get(key).and_then(Json::as_bool).unwrap_or(false)
}

fn attributes_from_json(json: Option<&Json>, path: &str) -> Result<Vec<Attribute>, String> {
    let Some(map) = json.and_then(Json::as_object) else { return Ok(Vec::new()) };
    let mut attributes = Vec::new();
    for (name, attr) in map {
        let here = format!("{path}.{name}");
        let kind = if let Some(nested) = attr.get("nested_type") {
            let nesting = Nesting::from_json(nested.get("nesting_mode")).map_err(|e| format!("{here}: {e}"))?;
            AttributeKind::Nested(nesting, attributes_from_json(nested.get("attributes"), &here)?)
        } else {
            let ty = attr.get("type").ok_or_else(|| format!("{here}: neither type nor nested_type"))?;
            AttributeKind::Plain(ValueType::from_json(ty).map_err(|e| format!("{here}: {e}"))?)
        };
        attributes.push(Attribute {
            name: name.clone(),
            kind,
            description: text(attr, "description"),
            required: flag(attr, "required"),
            optional: flag(attr, "optional"),
            computed: flag(attr, "computed"),
            sensitive: flag(attr, "sensitive"),
            write_only: flag(attr, "write_only"),
            deprecated: flag(attr, "deprecated"),
        });
    }
    attributes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(attributes)
}

impl Block {
    /// Parses a `block` object of `terraform providers schema -json`; `path` names it in errors.
    pub fn from_json(json: &Json, path: &str) -> Result<Self, String> {
        let attributes = attributes_from_json(json.get("attributes"), path)?;
        let mut blocks = Vec::new();
        if let Some(types) = json.get("block_types").and_then(Json::as_object) {
            for (name, nested) in types {
                let here = format!("{path}.{name}");
                let nesting = Nesting::from_json(nested.get("nesting_mode")).map_err(|e| format!("{here}: {e}"))?;
                let block = Block::from_json(nested.get("block").unwrap_or(&Json::Null), &here)?;
                let count = |key| nested.get(key).and_then(Json::as_u64).unwrap_or(0);
                blocks.push(BlockType {
                    name: name.clone(),
                    nesting,
                    min_items: count("min_items"),
                    max_items: count("max_items"),
                    block,
                });
            }
        }
        blocks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Block { attributes, blocks, description: text(json, "description"), deprecated: flag(json, "deprecated") })
    }

    /// Everything in the block without a description, as dotted paths under `prefix`.
    pub fn missing_descriptions(&self, prefix: &str) -> Vec<String> {
        let mut missing = Vec::new();
        fn attributes(list: &[Attribute], prefix: &str, missing: &mut Vec<String>) {
            for attribute in list {
                let path = format!("{prefix}.{}", attribute.name);
                if attribute.description.trim().is_empty() {
                    missing.push(format!("attribute {path}"));
                }
                if let AttributeKind::Nested(_, nested) = &attribute.kind {
                    attributes(nested, &path, missing);
                }
            }
        }
        attributes(&self.attributes, prefix, &mut missing);
        for nested in &self.blocks {
            let path = format!("{prefix}.{}", nested.name);
            if nested.block.description.trim().is_empty() {
                missing.push(format!("block {path}"));
            }
            missing.extend(nested.block.missing_descriptions(&path));
        }
        missing
    }

    /// Whether nothing in the block can be configured.
    fn read_only(&self) -> bool {
        self.attributes.iter().all(|a| a.computed && !a.optional && !a.required)
            && self.blocks.iter().all(|b| b.block.read_only())
            && !(self.attributes.is_empty() && self.blocks.is_empty())
    }
}

/// The schemas of one provider, from `terraform providers schema -json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSchemas {
    /// Source address, e.g. `registry.terraform.io/datavault/datavault`.
    pub address: String,
    /// Local name: the last part of the address (`datavault`).
    pub name: String,
    /// The provider configuration block.
    pub provider: Block,
    /// Resource schemas by type name.
    pub resources: BTreeMap<String, Block>,
    /// Data source schemas by type name.
    pub data_sources: BTreeMap<String, Block>,
}

impl ProviderSchemas {
    /// Parses the output of `terraform providers schema -json`, picking the provider whose address or name
    /// is `provider`, or the only one when `provider` is `None`.
    pub fn from_json(text: &str, provider: Option<&str>) -> Result<Self, Error> {
        let json: Json = serde_json::from_str(text).map_err(|e| {
            Error::one(format!("the schema is not JSON (expected `terraform providers schema -json`): {e}"))
        })?;
        let providers = json
            .get("provider_schemas")
            .and_then(Json::as_object)
            .ok_or_else(|| Error::one("the schema JSON has no provider_schemas"))?;
        let short = |address: &str| address.rsplit('/').next().unwrap_or(address).to_string();
        let candidates: Vec<&String> = providers
            .keys()
            .filter(|address| match provider {
                Some(wanted) => address.as_str() == wanted || short(address) == wanted,
                None => !address.starts_with("terraform.io/builtin/"),
            })
            .collect();
        let address = match candidates.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(Error::one(format!("no provider {provider:?} in the schema JSON"))),
            many => {
                return Err(Error::one(format!(
                    "the schema JSON holds several providers ({}); choose one with --provider",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        };
        let schemas = &providers[&address];
        let name = short(&address);
        let mut errors = Vec::new();
        let mut parse = |json: Option<&Json>, path: &str| match json.and_then(|s| s.get("block")) {
            Some(block) => Block::from_json(block, path).unwrap_or_else(|e| {
                errors.push(e);
                Block::default()
            }),
            None => Block::default(),
        };
        let provider = parse(schemas.get("provider"), "provider");
        let mut collection = |key: &str| -> BTreeMap<String, Block> {
            schemas
                .get(key)
                .and_then(Json::as_object)
                .map(|map| map.iter().map(|(name, schema)| (name.clone(), parse(Some(schema), name))).collect())
                .unwrap_or_default()
        };
        let resources = collection("resource_schemas");
        let data_sources = collection("data_source_schemas");
        if !errors.is_empty() {
            return Err(Error(errors));
        }
        Ok(ProviderSchemas { address, name, provider, resources, data_sources })
    }

    /// Everything without a description, across all schemas.
    pub fn missing_descriptions(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let mut check = |block: &Block, what: String, prefix: &str| {
            if block.description.trim().is_empty() {
                missing.push(format!("{what} has no description"));
            }
            missing.extend(block.missing_descriptions(prefix).into_iter().map(|m| format!("{m} has no description")));
        };
        check(&self.provider, "the provider schema".into(), "provider");
        for (name, block) in &self.resources {
            check(block, format!("resource {name}"), name);
        }
        for (name, block) in &self.data_sources {
            check(block, format!("data source {name}"), &format!("data.{name}"));
        }
        missing
    }
}

/// Where an argument is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Required,
    Optional,
    ReadOnly,
}

impl Group {
    const ALL: [Group; 3] = [Group::Required, Group::Optional, Group::ReadOnly];

    fn title(self) -> &'static str {
        match self {
            Group::Required => "Required",
            Group::Optional => "Optional",
            Group::ReadOnly => "Read-Only",
        }
    }

    fn of(attribute: &Attribute) -> Group {
        if attribute.required {
            Group::Required
        } else if attribute.optional {
            Group::Optional
        } else {
            Group::ReadOnly
        }
    }
}

/// One line of a schema listing, and the section its nested schema gets.
struct Item {
    group: Group,
    name: String,
    line: String,
    write_only: bool,
    nested: Option<Nested>,
}

/// A "Nested Schema for `x`" section.
struct Nested {
    anchor: String,
    title: String,
    items: Vec<Item>,
}

/// Markdown of a description inside a list item: trimmed, continuation lines indented.
fn list_text(description: &str) -> String {
    description
        .trim()
        .lines()
        .enumerate()
        .map(
            |(i, line)| {
                if i == 0 || line.trim().is_empty() { line.trim_end().to_string() } else { format!("  {line}") }
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

fn item_line(name: &str, kind: &str, flags: &[(&str, bool)], description: &str, nested: Option<&Nested>) -> String {
    let mut label = kind.to_string();
    for (flag, set) in flags {
        if *set {
            label.push_str(", ");
            label.push_str(flag);
        }
    }
    let mut line = format!("- `{name}` ({label})");
    let description = list_text(description);
    if !description.is_empty() {
        line.push(' ');
        line.push_str(&description);
    }
    if let Some(nested) = nested {
        line.push_str(&format!(" (see [below for nested schema](#{}))", nested.anchor));
    }
    line
}

fn anchor(kind: &str, path: &[String]) -> String {
    format!("{kind}--{}", path.join("--"))
}

fn attribute_item(attribute: &Attribute, parent: &[String], inside_read_only: bool) -> Item {
    let group = if inside_read_only { Group::ReadOnly } else { Group::of(attribute) };
    let path: Vec<String> = parent.iter().cloned().chain([attribute.name.clone()]).collect();
    let (kind, nested) = match &attribute.kind {
        AttributeKind::Plain(ty) => {
            let nested = ty.object().map(|(fields, optional)| Nested {
                anchor: anchor("nestedobjatt", &path),
                title: path.join("."),
                items: object_items(fields, optional, &path, group),
            });
            (ty.display(), nested)
        }
        AttributeKind::Nested(nesting, attributes) => {
            let nested = Nested {
                anchor: anchor("nestedatt", &path),
                title: path.join("."),
                items: sorted(attributes.iter().map(|a| attribute_item(a, &path, group == Group::ReadOnly)).collect()),
            };
            (format!("Attributes{}", nesting.suffix()), Some(nested))
        }
    };
    let flags = [
        ("Sensitive", attribute.sensitive),
        ("Write-only", attribute.write_only),
        ("Deprecated", attribute.deprecated),
    ];
    Item {
        group,
        name: attribute.name.clone(),
        line: item_line(&attribute.name, &kind, &flags, &attribute.description, nested.as_ref()),
        write_only: attribute.write_only,
        nested,
    }
}

fn object_items(
    fields: &BTreeMap<String, ValueType>,
    optional: &[String],
    parent: &[String],
    parent_group: Group,
) -> Vec<Item> {
    let items = fields
        .iter()
        .map(|(name, ty)| {
            let group = match parent_group {
                Group::ReadOnly => Group::ReadOnly,
                _ if optional.contains(name) => Group::Optional,
                _ => Group::Required,
            };
            let path: Vec<String> = parent.iter().cloned().chain([name.clone()]).collect();
            let nested = ty.object().map(|(fields, optional)| Nested {
                anchor: anchor("nestedobjatt", &path),
                title: path.join("."),
                items: object_items(fields, optional, &path, group),
            });
            Item {
                group,
                name: name.clone(),
                line: item_line(name, &ty.display(), &[], "", nested.as_ref()),
                write_only: false,
                nested,
            }
        })
        .collect();
    sorted(items)
}

fn block_items(block: &Block, parent: &[String], inside_read_only: bool) -> Vec<Item> {
    let mut items: Vec<Item> = block.attributes.iter().map(|a| attribute_item(a, parent, inside_read_only)).collect();
    for nested_block in &block.blocks {
        let group = if inside_read_only || nested_block.block.read_only() {
            Group::ReadOnly
        } else if nested_block.min_items > 0 {
            Group::Required
        } else {
            Group::Optional
        };
        let path: Vec<String> = parent.iter().cloned().chain([nested_block.name.clone()]).collect();
        let nested = Nested {
            anchor: anchor("nestedblock", &path),
            title: path.join("."),
            items: block_items(&nested_block.block, &path, group == Group::ReadOnly),
        };
        let mut kind = format!("Block{}", nested_block.nesting.suffix());
        if matches!(nested_block.nesting, Nesting::List | Nesting::Set) {
            if nested_block.min_items > 0 {
                kind.push_str(&format!(", Min: {}", nested_block.min_items));
            }
            if nested_block.max_items > 0 {
                kind.push_str(&format!(", Max: {}", nested_block.max_items));
            }
        }
        items.push(Item {
            group,
            name: nested_block.name.clone(),
            line: item_line(
                &nested_block.name,
                &kind,
                &[("Deprecated", nested_block.block.deprecated)],
                &nested_block.block.description,
                Some(&nested),
            ),
            write_only: false,
            nested: Some(nested),
        });
    }
    sorted(items)
}

fn sorted(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by(|a, b| (a.group, &a.name).cmp(&(b.group, &b.name)));
    items
}

const WRITE_ONLY_NOTE: &str = "> **Note:** Write-only arguments are sent to the provider but never stored in the plan or the \
state; they need Terraform 1.11 or later.";

fn render_items(out: &mut String, items: &[Item], top_level: bool) {
    for group in Group::ALL {
        let members: Vec<&Item> = items.iter().filter(|i| i.group == group).collect();
        if members.is_empty() {
            continue;
        }
        if top_level {
            out.push_str(&format!("### {}\n\n", group.title()));
        } else {
            out.push_str(&format!("{}:\n\n", group.title()));
        }
        if members.iter().any(|i| i.write_only) {
            out.push_str(WRITE_ONLY_NOTE);
            out.push_str("\n\n");
        }
        for item in members {
            out.push_str(&item.line);
            out.push('\n');
        }
        out.push('\n');
    }
    for nested in items.iter().filter_map(|i| i.nested.as_ref()) {
        out.push_str(&format!("<a id=\"{}\"></a>\n### Nested Schema for `{}`\n\n", nested.anchor, nested.title));
        render_items(out, &nested.items, false);
    }
}

/// The "Schema" section of a page: the arguments of `block` grouped into Required, Optional and Read-Only,
/// then a "Nested Schema for `x`" section for each nested block, nested attribute and object type.
pub fn render_schema(block: &Block) -> String {
    let mut out =
        String::from("<!-- schema generated by scripts/gen-docs.sh from the provider schema -->\n## Schema\n\n");
    render_items(&mut out, &block_items(block, &[], false), true);
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// What a page documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// The provider (`index.md`).
    Provider,
    /// A resource (`resources/<name>.md`).
    Resource,
    /// A data source (`data-sources/<name>.md`).
    DataSource,
    /// Any other page (a guide): only `{{example}}` and `{{provider}}` apply.
    Other,
}

impl PageKind {
    fn label(self) -> &'static str {
        match self {
            PageKind::Provider => "Provider",
            PageKind::Resource => "Resource",
            PageKind::DataSource => "Data Source",
            PageKind::Other => "Guide",
        }
    }
}

/// The context a template is rendered in.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// What the page documents.
    pub kind: PageKind,
    /// The resource or data source type, or the provider name.
    pub name: &'a str,
    /// The provider name.
    pub provider: &'a str,
    /// The schema it documents, if any.
    pub block: Option<&'a Block>,
    /// The repository root that example paths are relative to.
    pub root: &'a Path,
}

fn fenced(path: &Path, display: &str) -> Result<String, String> {
    let language = match path.extension().and_then(|e| e.to_str()) {
        Some("tf" | "tfvars") => "terraform",
        Some("sh") => "shell",
        Some("json") => "json",
        Some("hcl") => "hcl",
        Some("ini") => "ini",
        _ => "text",
    };
    let content = fs::read_to_string(path).map_err(|e| format!("example {display}: {e}"))?;
    Ok(format!("```{language}\n{}\n```", content.trim_end()))
}

/// Splits the inside of `{{ ... }}` into a name and string arguments.
fn parse_call(inner: &str) -> Result<(String, Vec<String>), String> {
    let inner = inner.trim();
    let name_end = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("malformed placeholder {{{{{inner}}}}}"));
    }
    let mut args = Vec::new();
    let mut rest = inner[name_end..].trim_start();
    while !rest.is_empty() {
        let Some(quoted) = rest.strip_prefix('"') else {
            return Err(format!("arguments of {{{{{name}}}}} must be \"quoted\""));
        };
        let Some(end) = quoted.find('"') else { return Err(format!("unterminated string in {{{{{inner}}}}}")) };
        args.push(quoted[..end].to_string());
        rest = quoted[end + 1..].trim_start();
    }
    Ok((name.to_string(), args))
}

fn expand(name: &str, args: &[String], page: &Page<'_>) -> Result<String, String> {
    let no_args = |value: String| {
        if args.is_empty() { Ok(value) } else { Err(format!("{{{{{name}}}}} takes no arguments")) }
    };
    let schema_page = matches!(page.kind, PageKind::Provider | PageKind::Resource | PageKind::DataSource);
    match name {
        "provider" => no_args(page.provider.to_string()),
        "name" if schema_page => no_args(page.name.to_string()),
        "kind" if schema_page => no_args(page.kind.label().to_string()),
        "description" if schema_page => {
            no_args(page.block.map(|b| b.description.trim().to_string()).unwrap_or_default())
        }
        "schema" if schema_page => no_args(page.block.map(render_schema).unwrap_or_default()),
        "example" => match args {
            [path] => fenced(&page.root.join(path), path),
            _ => Err("{{example}} takes one argument: the file's path from the repository root".into()),
        },
        "import" if page.kind == PageKind::Resource => {
            no_args(String::new())?;
            let dir = format!("examples/resources/{}", page.name);
            let mut parts = Vec::new();
            let block = format!("{dir}/import-by-block.tf");
            if page.root.join(&block).is_file() {
                parts.push(format!(
                    "With an `import` block (Terraform 1.5 and later):\n\n{}",
                    fenced(&page.root.join(&block), &block)?
                ));
            }
            let command = format!("{dir}/import.sh");
            if page.root.join(&command).is_file() {
                parts.push(format!(
                    "With the `terraform import` command:\n\n{}",
                    fenced(&page.root.join(&command), &command)?
                ));
            }
            if parts.is_empty() {
                return Err(format!("{{{{import}}}} needs {block} or {command}"));
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(format!("unknown placeholder {{{{{name}}}}} on a {} page", page.kind.label().to_lowercase())),
    }
}

/// Renders a template: every `{{...}}` placeholder is replaced, or its error is reported with its line.
pub fn render_template(template: &str, page: &Page<'_>) -> Result<String, Vec<String>> {
    let mut out = String::new();
    let mut errors = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let before = &rest[..start];
        out.push_str(before);
        let line = template[..template.len() - rest.len() + start].matches('\n').count() + 1;
        let Some(len) = rest[start + 2..].find("}}") else {
            errors.push(format!("line {line}: `{{{{` without `}}}}`"));
            rest = "";
            break;
        };
        let inner = &rest[start + 2..start + 2 + len];
        rest = &rest[start + 2 + len + 2..];
        let replacement = parse_call(inner).and_then(|(name, args)| expand(&name, &args, page));
        match replacement {
            Ok(text) => {
                // Indent continuation lines like the placeholder when it starts its line.
                let line_start = out.rfind('\n').map_or(0, |i| i + 1);
                let indent = &out[line_start..];
                let indent =
                    if indent.chars().all(|c| c == ' ' || c == '\t') { indent.to_string() } else { String::new() };
                let text = text.trim_end_matches('\n');
                for (i, part) in text.split('\n').enumerate() {
                    if i > 0 {
                        out.push('\n');
                        if !part.is_empty() {
                            out.push_str(&indent);
                        }
                    }
                    out.push_str(part);
                }
            }
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    // Generated pages end with exactly one newline and no trailing spaces.
    let mut out: String = out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    out.truncate(out.trim_end().len());
    out.push('\n');
    Ok(out)
}

/// Where the generator reads from.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory of `*.md.tmpl` templates (`templates/`).
    pub templates: PathBuf,
    /// The repository root: `{{example}}` paths and `examples/resources/<name>/` are relative to it.
    pub root: PathBuf,
    /// The provider to document, when the schema JSON holds several.
    pub provider: Option<String>,
}

fn template_files(dir: &Path, relative: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            template_files(&entry.path(), &path, found)?;
        } else if path.to_string_lossy().ends_with(".md.tmpl") {
            found.push(path);
        }
    }
    Ok(())
}

/// Generates every page: a map from paths relative to the docs directory to their Markdown.
pub fn generate(schema_json: &str, options: &Options) -> Result<BTreeMap<PathBuf, String>, Error> {
    let schemas = ProviderSchemas::from_json(schema_json, options.provider.as_deref())?;
    let mut errors = schemas.missing_descriptions();

    let mut templates = Vec::new();
    if let Err(e) = template_files(&options.templates, Path::new(""), &mut templates) {
        return Err(Error::one(format!("reading templates from {}: {e}", options.templates.display())));
    }
    let prefix = format!("{}_", schemas.name);
    let type_name = |short: &str, known: &BTreeMap<String, Block>| {
        if known.contains_key(short) { short.to_string() } else { format!("{prefix}{short}") }
    };

    let mut pages = BTreeMap::new();
    let mut documented: Vec<(PageKind, String)> = Vec::new();
    for template in &templates {
        let relative = template.to_string_lossy().replace('\\', "/");
        let output = PathBuf::from(relative.trim_end_matches(".tmpl"));
        let short = relative.rsplit('/').next().unwrap_or_default().trim_end_matches(".md.tmpl").to_string();
        let (kind, name, block) = match relative.split('/').collect::<Vec<_>>().as_slice() {
            ["index.md.tmpl"] => (PageKind::Provider, schemas.name.clone(), Some(&schemas.provider)),
            ["resources", _] => {
                let name = type_name(&short, &schemas.resources);
                (PageKind::Resource, name.clone(), schemas.resources.get(&name))
            }
            ["data-sources", _] => {
                let name = type_name(&short, &schemas.data_sources);
                (PageKind::DataSource, name.clone(), schemas.data_sources.get(&name))
            }
            _ => (PageKind::Other, short.clone(), None),
        };
        if matches!(kind, PageKind::Resource | PageKind::DataSource) && block.is_none() {
            errors.push(format!("templates/{relative}: the provider has no {} {name}", kind.label().to_lowercase()));
            continue;
        }
        documented.push((kind, name.clone()));
        let source = match fs::read_to_string(options.templates.join(template)) {
            Ok(source) => source,
            Err(e) => {
                errors.push(format!("templates/{relative}: {e}"));
                continue;
            }
        };
        let page = Page { kind, name: &name, provider: &schemas.name, block, root: &options.root };
        match render_template(&source, &page) {
            Ok(markdown) => {
                pages.insert(output, markdown);
            }
            Err(template_errors) => {
                errors.extend(template_errors.into_iter().map(|e| format!("templates/{relative}: {e}")));
            }
        }
    }

    if !documented.iter().any(|(kind, _)| *kind == PageKind::Provider) {
        errors.push("templates/index.md.tmpl is missing: the provider page needs a template".into());
    }
    let undocumented = |kind: PageKind, dir: &str, known: &BTreeMap<String, Block>, errors: &mut Vec<String>| {
        for name in known.keys() {
            if !documented.contains(&(kind, name.clone())) {
                let short = name.strip_prefix(&prefix).unwrap_or(name);
                errors.push(format!("{} {name} has no template: add templates/{dir}/{short}.md.tmpl", kind.label()));
            }
        }
    };
    undocumented(PageKind::Resource, "resources", &schemas.resources, &mut errors);
    undocumented(PageKind::DataSource, "data-sources", &schemas.data_sources, &mut errors);

    if errors.is_empty() { Ok(pages) } else { Err(Error(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small provider covering every shape the renderer knows: plain types, sensitive and write-only
    /// attributes, nested attributes in nested attributes, object types, single and list blocks.
    const FIXTURE: &str = r#"{
      "format_version": "1.0",
      "provider_schemas": {
        "registry.terraform.io/acme/demo": {
          "provider": {
            "version": 0,
            "block": {
              "attributes": {
                "region": {"type": "string", "description": "Region.", "optional": true},
                "token": {"type": "string", "description": "API token.", "optional": true, "sensitive": true}
              },
              "block_types": {
                "retry": {
                  "nesting_mode": "single",
                  "max_items": 1,
                  "block": {
                    "attributes": {"attempts": {"type": "number", "description": "How often.", "required": true}},
                    "description": "Retry settings."
                  }
                }
              },
              "description": "The demo provider.\nIt demonstrates."
            }
          },
          "resource_schemas": {
            "demo_thing": {
              "version": 0,
              "block": {
                "attributes": {
                  "name": {"type": "string", "description": "Name.", "required": true},
                  "tags": {"type": ["map", "string"], "description": "Tags.", "optional": true},
                  "enabled": {"type": "bool", "description": "On or off.", "optional": true, "computed": true},
                  "password": {"type": "string", "description": "Secret.", "optional": true, "sensitive": true,
                               "write_only": true},
                  "database": {
                    "nested_type": {
                      "nesting_mode": "single",
                      "attributes": {
                        "size": {"type": "number", "description": "Size in GiB.", "required": true},
                        "replicas": {
                          "nested_type": {
                            "nesting_mode": "list",
                            "attributes": {
                              "zone": {"type": "string", "description": "Zone.", "optional": true},
                              "endpoint": {"type": "string", "description": "Endpoint.", "computed": true}
                            }
                          },
                          "description": "Read replicas.",
                          "optional": true
                        }
                      }
                    },
                    "description": "The database.",
                    "optional": true
                  },
                  "id": {"type": "string", "description": "Identifier.", "computed": true},
                  "ports": {"type": ["list", ["object", {"port": "number", "protocol": "string"}]],
                            "description": "Open ports.", "computed": true},
                  "zones": {"type": ["set", "string"], "description": "Zones.", "computed": true}
                },
                "block_types": {
                  "rule": {
                    "nesting_mode": "list",
                    "max_items": 3,
                    "block": {
                      "attributes": {"cidr": {"type": "string", "description": "CIDR.", "required": true}},
                      "description": "A firewall rule."
                    }
                  }
                },
                "description": "A thing."
              }
            }
          }
        }
      }
    }"#;

    const THING_SCHEMA: &str = r#"<!-- schema generated by scripts/gen-docs.sh from the provider schema -->
## Schema

### Required

- `name` (String) Name.

### Optional

> **Note:** Write-only arguments are sent to the provider but never stored in the plan or the state; they need Terraform 1.11 or later.

- `database` (Attributes) The database. (see [below for nested schema](#nestedatt--database))
- `enabled` (Boolean) On or off.
- `password` (String, Sensitive, Write-only) Secret.
- `rule` (Block List, Max: 3) A firewall rule. (see [below for nested schema](#nestedblock--rule))
- `tags` (Map of String) Tags.

### Read-Only

- `id` (String) Identifier.
- `ports` (List of Object) Open ports. (see [below for nested schema](#nestedobjatt--ports))
- `zones` (Set of String) Zones.

<a id="nestedatt--database"></a>
### Nested Schema for `database`

Required:

- `size` (Number) Size in GiB.

Optional:

- `replicas` (Attributes List) Read replicas. (see [below for nested schema](#nestedatt--database--replicas))

<a id="nestedatt--database--replicas"></a>
### Nested Schema for `database.replicas`

Optional:

- `zone` (String) Zone.

Read-Only:

- `endpoint` (String) Endpoint.

<a id="nestedblock--rule"></a>
### Nested Schema for `rule`

Required:

- `cidr` (String) CIDR.

<a id="nestedobjatt--ports"></a>
### Nested Schema for `ports`

Read-Only:

- `port` (Number)
- `protocol` (String)
"#;

    fn schemas() -> ProviderSchemas {
        ProviderSchemas::from_json(FIXTURE, None).unwrap()
    }

    #[test]
    fn types_render_as_on_the_registry() {
        let ty = |json: &str| ValueType::from_json(&serde_json::from_str(json).unwrap()).unwrap().display();
        assert_eq!(ty(r#""string""#), "String");
        assert_eq!(ty(r#""bool""#), "Boolean");
        assert_eq!(ty(r#""number""#), "Number");
        assert_eq!(ty(r#"["list", "string"]"#), "List of String");
        assert_eq!(ty(r#"["map", "string"]"#), "Map of String");
        assert_eq!(ty(r#"["set", ["list", "number"]]"#), "Set of List of Number");
        assert_eq!(ty(r#"["object", {"a": "string"}]"#), "Object");
        assert!(ValueType::from_json(&serde_json::json!("float")).is_err());
    }

    #[test]
    fn resource_schema_is_grouped_sorted_and_nested_sections_follow() {
        let schemas = schemas();
        assert_eq!(schemas.name, "demo");
        assert_eq!(render_schema(&schemas.resources["demo_thing"]), THING_SCHEMA);
    }

    #[test]
    fn single_blocks_are_plain_blocks() {
        let schema = render_schema(&schemas().provider);
        assert!(
            schema.contains("- `retry` (Block) Retry settings. (see [below for nested schema](#nestedblock--retry))")
        );
        assert!(schema.contains("- `token` (String, Sensitive) API token.\n"));
        assert!(schema.contains("<a id=\"nestedblock--retry\"></a>\n### Nested Schema for `retry`\n\nRequired:\n"));
    }

    #[test]
    fn every_missing_description_is_reported() {
        let mut json: Json = serde_json::from_str(FIXTURE).unwrap();
        let block =
            &mut json["provider_schemas"]["registry.terraform.io/acme/demo"]["resource_schemas"]["demo_thing"]["block"];
        block["attributes"]["name"]["description"] = Json::String(String::new());
        block["attributes"]["database"]["nested_type"]["attributes"]["size"]
            .as_object_mut()
            .unwrap()
            .remove("description");
        block["block_types"]["rule"]["block"]["description"] = Json::String(" ".into());
        let schemas = ProviderSchemas::from_json(&json.to_string(), None).unwrap();
        assert_eq!(
            schemas.missing_descriptions(),
            vec![
                "attribute demo_thing.database.size has no description",
                "attribute demo_thing.name has no description",
                "block demo_thing.rule has no description",
            ]
        );
    }

    fn write(root: &Path, path: &str, content: &str) {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn options(root: &Path) -> Options {
        Options { templates: root.join("templates"), root: root.to_path_buf(), provider: None }
    }

    #[test]
    fn templates_become_pages_with_examples_import_and_indented_descriptions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "templates/index.md.tmpl",
            "---\npage_title: \"{{name}} {{kind}}\"\ndescription: |-\n  {{description}}\n---\n\n# {{ name }}\n\n\
             {{example \"examples/provider/provider.tf\"}}\n\n{{schema}}\n",
        );
        write(root, "templates/resources/thing.md.tmpl", "# {{name}} ({{kind}})\n\n## Import\n\n{{import}}\n");
        write(root, "templates/guides/start.md.tmpl", "# Start with {{provider}}\n");
        write(root, "examples/provider/provider.tf", "provider \"demo\" {}\n\n\n");
        write(root, "examples/resources/demo_thing/import.sh", "terraform import demo_thing.x a\n");
        write(
            root,
            "examples/resources/demo_thing/import-by-block.tf",
            "import {\n  to = demo_thing.x\n  id = \"a\"\n}\n",
        );

        let pages = generate(FIXTURE, &options(root)).unwrap();
        assert_eq!(
            pages.keys().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            vec!["guides/start.md", "index.md", "resources/thing.md"]
        );
        let index = &pages[Path::new("index.md")];
        assert!(index.starts_with(
            "---\npage_title: \"demo Provider\"\ndescription: |-\n  The demo provider.\n  It demonstrates.\n---\n\n# demo\n\n\
             ```terraform\nprovider \"demo\" {}\n```\n\n<!-- schema generated"
        ));
        assert!(index.ends_with("- `attempts` (Number) How often.\n"));
        let thing = &pages[Path::new("resources/thing.md")];
        assert_eq!(
            thing,
            "# demo_thing (Resource)\n\n## Import\n\nWith an `import` block (Terraform 1.5 and later):\n\n\
             ```terraform\nimport {\n  to = demo_thing.x\n  id = \"a\"\n}\n```\n\n\
             With the `terraform import` command:\n\n```shell\nterraform import demo_thing.x a\n```\n"
        );
        assert_eq!(pages[Path::new("guides/start.md")], "# Start with demo\n");
    }

    #[test]
    fn template_mistakes_and_undocumented_resources_fail_together() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "templates/index.md.tmpl", "{{nope}}\n{{example \"examples/missing.tf\"}}\n{{schema\n");
        write(root, "templates/resources/other.md.tmpl", "{{schema}}\n");
        let errors = generate(FIXTURE, &options(root)).unwrap_err().0;
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].starts_with("templates/index.md.tmpl: line 1: unknown placeholder {{nope}}"));
        assert!(errors[1].starts_with("templates/index.md.tmpl: line 2: example examples/missing.tf:"));
        assert!(errors[2].starts_with("templates/index.md.tmpl: line 3: `{{` without `}}`"));
        assert_eq!(errors[3], "templates/resources/other.md.tmpl: the provider has no resource demo_other");
        assert_eq!(errors[4], "Resource demo_thing has no template: add templates/resources/thing.md.tmpl");
    }

    #[test]
    fn placeholders_are_parsed_strictly() {
        assert_eq!(parse_call(" example \"a b.tf\" ").unwrap(), ("example".into(), vec!["a b.tf".into()]));
        assert!(parse_call("example a.tf").is_err());
        assert!(parse_call("example \"a.tf").is_err());
        assert!(parse_call("").is_err());
    }
}
