//! Dynamic values: what Terraform sends and receives for configuration, plans and state.
//!
//! On the wire values are MessagePack (or JSON for stored state being upgraded). Terraform's encoding is
//! type-directed: objects always carry every attribute, unknown values are a MessagePack extension. So values
//! are decoded loosely and then [`Value::conform`]ed to the schema type before they are encoded again.

use std::collections::BTreeMap;

use super::types::Type;

/// A Terraform value, possibly null or not yet known.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Explicitly absent.
    Null,
    /// Known only after apply.
    Unknown,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// A list or set (their wire encodings are the same; order is kept as received).
    List(Vec<Value>),
    /// A map or object (their wire encodings are the same).
    Map(BTreeMap<String, Value>),
}

/// A value could not be decoded from the wire.
#[derive(Debug)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// MessagePack extension code cty uses for unknown values (refined unknowns use 12).
const UNKNOWN_EXTENSION: i8 = 0;
const REFINED_UNKNOWN_EXTENSION: i8 = 12;

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A string value, or null when absent.
    pub fn opt_string(s: Option<impl Into<String>>) -> Value {
        s.map(|s| Value::String(s.into())).unwrap_or(Value::Null)
    }

    /// A map of strings.
    pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    }

    /// A list of strings.
    pub fn string_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(items.into_iter().map(|s| Value::String(s.as_ref().to_string())).collect())
    }

    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether the value is unknown at this level (not looking inside).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// Whether the value, and everything inside it, is known.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(items) => items.iter().all(Value::is_wholly_known),
            Value::Map(entries) => entries.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    /// An attribute of an object value; null when the value is not an object or lacks it.
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Map(entries) => entries.get(name).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }

    /// Sets an attribute of an object value (no effect on other kinds of value).
    pub fn set(&mut self, name: &str, value: Value) {
        if let Value::Map(entries) = self {
            entries.insert(name.to_string(), value);
        }
    }

    /// The string inside, if the value is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean inside, if the value is a known bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number inside, if the value is a known number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The number inside as an integer, if it is a known whole number.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_f64().filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15).map(|n| n as i64)
    }

    /// The elements of a known list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries of a known map or object.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// A known map of known strings, e.g. tags; `None` if null, unknown or holding unknowns.
    pub fn as_string_map(&self) -> Option<BTreeMap<String, String>> {
        self.as_map()?.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
    }

    /// A known list of known strings; `None` if null, unknown or holding unknowns.
    pub fn as_string_list(&self) -> Option<Vec<String>> {
        self.as_list()?.iter().map(|v| v.as_str().map(str::to_string)).collect()
    }

    /// Reshapes a loosely decoded value to `ty`: objects get every attribute (missing ones null, unknown
    /// ones dropped), so the encoding is exactly what Terraform expects for the schema.
    pub fn conform(&self, ty: &Type) -> Value {
        match (self, ty) {
            (Value::Null, _) => Value::Null,
            (Value::Unknown, _) => Value::Unknown,
            (Value::Map(entries), Type::Object(attributes)) => Value::Map(
                attributes
                    .iter()
                    .map(|(name, attr_ty)| {
                        let value = entries.get(name).unwrap_or(&Value::Null);
                        (name.clone(), value.conform(attr_ty))
                    })
                    .collect(),
            ),
            (_, Type::Object(attributes)) => Value::Map(
                attributes.iter().map(|(name, attr_ty)| (name.clone(), Value::Null.conform(attr_ty))).collect(),
            ),
            (Value::Map(entries), Type::Map(element)) => {
                Value::Map(entries.iter().map(|(k, v)| (k.clone(), v.conform(element))).collect())
            }
            (Value::List(items), Type::List(element) | Type::Set(element)) => {
                Value::List(items.iter().map(|v| v.conform(element)).collect())
            }
            (Value::String(s), Type::Number) => s.parse().map(Value::Number).unwrap_or(Value::Null),
            (Value::String(s), Type::Bool) => Value::Bool(s == "true"),
            (Value::Number(n), Type::String) => Value::String(format_number(*n)),
            (Value::Bool(b), Type::String) => Value::String(b.to_string()),
            (other, _) => other.clone(),
        }
    }

    /// Decodes Terraform's MessagePack encoding.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Value, DecodeError> {
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        let raw = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| DecodeError(e.to_string()))?;
        from_rmpv(raw)
    }

    /// Encodes as Terraform's MessagePack encoding (conform to the schema type first).
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &to_rmpv(self)).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes Terraform's JSON encoding (stored state; never contains unknowns).
    pub fn from_json(bytes: &[u8]) -> Result<Value, DecodeError> {
        let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))?;
        Ok(from_serde_json(raw))
    }

    /// The JSON form of a known value, for logs and tests.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null | Value::Unknown => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Number(n) => serde_json::Number::from_f64(*n).map(Into::into).unwrap_or_default(),
            Value::String(s) => s.clone().into(),
            Value::List(items) => items.iter().map(Value::to_json).collect(),
            Value::Map(entries) => entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { format!("{}", n as i64) } else { n.to_string() }
}

fn from_rmpv(raw: rmpv::Value) -> Result<Value, DecodeError> {
    Ok(match raw {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => Value::Number(i.as_f64().unwrap_or_default()),
        rmpv::Value::F32(f) => Value::Number(f64::from(f)),
        rmpv::Value::F64(f) => Value::Number(f),
        rmpv::Value::String(s) => {
            Value::String(s.into_str().ok_or_else(|| DecodeError("string is not valid UTF-8".into()))?)
        }
        rmpv::Value::Binary(_) => return Err(DecodeError("unexpected binary value".into())),
        rmpv::Value::Array(items) => Value::List(items.into_iter().map(from_rmpv).collect::<Result<_, _>>()?),
        rmpv::Value::Map(entries) => {
            let mut map = BTreeMap::new();
            for (key, value) in entries {
                let key = key.as_str().ok_or_else(|| DecodeError("map key is not a string".into()))?.to_string();
                map.insert(key, from_rmpv(value)?);
            }
            Value::Map(map)
        }
        rmpv::Value::Ext(UNKNOWN_EXTENSION | REFINED_UNKNOWN_EXTENSION, _) => Value::Unknown,
        rmpv::Value::Ext(code, _) => return Err(DecodeError(format!("unexpected extension type {code}"))),
    })
}

fn to_rmpv(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Unknown => rmpv::Value::Ext(UNKNOWN_EXTENSION, vec![0]),
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => rmpv::Value::from(*n as i64),
        Value::Number(n) => rmpv::Value::F64(*n),
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::List(items) => rmpv::Value::Array(items.iter().map(to_rmpv).collect()),
        Value::Map(entries) => {
            rmpv::Value::Map(entries.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), to_rmpv(v))).collect())
        }
    }
}

fn from_serde_json(raw: serde_json::Value) -> Value {
    match raw {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(from_serde_json).collect()),
        serde_json::Value::Object(entries) => {
            Value::Map(entries.into_iter().map(|(k, v)| (k, from_serde_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object_type() -> Type {
        Type::Object(BTreeMap::from([
            ("name".to_string(), Type::String),
            ("retention".to_string(), Type::Number),
            ("tags".to_string(), Type::map_of_strings()),
        ]))
    }

    #[test]
    fn msgpack_round_trip_keeps_nulls_unknowns_and_numbers() {
        let value = Value::Map(BTreeMap::from([
            ("name".to_string(), Value::string("vault")),
            ("retention".to_string(), Value::Number(365.0)),
            ("tags".to_string(), Value::Unknown),
        ]));
        let decoded = Value::from_msgpack(&value.to_msgpack()).unwrap();
        assert_eq!(decoded, value);
    }

    #[test]
    fn unknown_uses_ctys_extension_encoding() {
        assert_eq!(Value::Unknown.to_msgpack(), vec![0xd4, 0, 0]);
        // A refined unknown (extension 12) from newer Terraform still decodes as unknown.
        assert_eq!(Value::from_msgpack(&[0xd4, 12, 0]).unwrap(), Value::Unknown);
    }

    #[test]
    fn conform_fills_missing_attributes_and_drops_strangers() {
        let loose = Value::from_json(br#"{"name":"vault","legacy":1}"#).unwrap();
        let shaped = loose.conform(&object_type());
        assert_eq!(shaped.get("name"), &Value::string("vault"));
        assert_eq!(shaped.get("tags"), &Value::Null);
        assert!(shaped.as_map().unwrap().get("legacy").is_none());
        assert_eq!(shaped.as_map().unwrap().len(), 3);
    }

    #[test]
    fn string_helpers_reject_partially_unknown_collections() {
        let tags = Value::Map(BTreeMap::from([("a".to_string(), Value::Unknown)]));
        assert!(tags.as_string_map().is_none());
        assert!(!tags.is_wholly_known());
    }
}
