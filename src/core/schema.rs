//! JSON Schema (draft 2020-12) validator for the subset of docs/schema.md, compiled once and run
//! on any document type through the `JsonView` trait (serde_json values here, Python objects
//! in the binding), so the emit path validates Python objects without re-parsing JSON.

use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Keywords that carry meaning (validated) and annotations (accepted, ignored).
pub const SUPPORTED_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "items",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "format",
];
pub const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "$comment",
    "default",
    "examples",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

/// A JSON number, exact for integers.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn is_integral(self) -> bool {
        match self {
            Num::Int(_) => true,
            Num::Float(f) => f.is_finite() && crate::core::json::is_integral(f),
        }
    }

    /// Exact comparison across ints and floats.
    pub fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
        }
    }
}

fn cmp_int_float(a: i128, b: f64) -> Option<Ordering> {
    if b.is_nan() {
        return None;
    }
    if b >= 1.7e38 {
        return Some(Ordering::Less);
    }
    if b <= -1.7e38 {
        return Some(Ordering::Greater);
    }
    let fl = b.floor();
    match a.cmp(&(fl as i128)) {
        Ordering::Equal if b > fl => Some(Ordering::Less),
        o => Some(o),
    }
}

/// Read-only view of a JSON document, implemented for serde_json values and Python objects.
pub trait JsonView: Sized {
    fn kind(&self) -> Kind;
    fn as_bool(&self) -> bool;
    fn as_num(&self) -> Num;
    /// Whether a number is integral (`type: integer`); views that know it without parsing
    /// (an integer token on the tape) override it.
    fn is_integral(&self) -> bool {
        self.as_num().is_integral()
    }
    fn as_str(&self) -> Cow<'_, str>;
    fn array_len(&self) -> usize;
    fn array_item(&self, i: usize) -> Self;
    fn object_len(&self) -> usize;
    fn object_get(&self, key: &str) -> Option<Self>;
    /// Visit members in order; stop at the first error the callback returns.
    fn for_each_member<E>(&self, f: &mut dyn FnMut(&str, Self) -> Result<(), E>) -> Result<(), E>;
    /// Visit array items in order; stop at the first error. Views whose `array_item` is not
    /// O(1) (the tape) override it so an array is validated in one pass, not O(n²).
    fn for_each_item<E>(&self, f: &mut dyn FnMut(usize, Self) -> Result<(), E>) -> Result<(), E> {
        for i in 0..self.array_len() {
            f(i, self.array_item(i))?;
        }
        Ok(())
    }
}

impl JsonView for &Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }
    fn as_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
    fn as_num(&self) -> Num {
        match self {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Num::Int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    Num::Int(u as i128)
                } else {
                    Num::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            _ => Num::Float(f64::NAN),
        }
    }
    fn as_str(&self) -> Cow<'_, str> {
        Cow::Borrowed(Value::as_str(self).unwrap_or(""))
    }
    fn array_len(&self) -> usize {
        self.as_array().map_or(0, Vec::len)
    }
    fn array_item(&self, i: usize) -> Self {
        &self.as_array().expect("array")[i]
    }
    fn object_len(&self) -> usize {
        self.as_object().map_or(0, |m| m.len())
    }
    fn object_get(&self, key: &str) -> Option<Self> {
        self.as_object().and_then(|m| m.get(key))
    }
    fn for_each_member<E>(&self, f: &mut dyn FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        if let Some(m) = self.as_object() {
            for (k, v) in m {
                f(k, v)?;
            }
        }
        Ok(())
    }
}

/// JSON equality as JSON Schema defines it: 1 == 1.0, true != 1, objects unordered.
pub fn json_equal<V: JsonView>(a: &V, b: &Value) -> bool {
    let bv = &b;
    match (a.kind(), bv.kind()) {
        (Kind::Null, Kind::Null) => true,
        (Kind::Bool, Kind::Bool) => a.as_bool() == bv.as_bool(),
        (Kind::Number, Kind::Number) => a.as_num().compare(bv.as_num()) == Some(Ordering::Equal),
        (Kind::String, Kind::String) => a.as_str() == bv.as_str(),
        (Kind::Array, Kind::Array) => {
            let items = b.as_array().expect("array");
            a.array_len() == items.len()
                && a.for_each_item(&mut |i, x| json_equal(&x, &items[i]).then_some(()).ok_or(()))
                    .is_ok()
        }
        (Kind::Object, Kind::Object) => {
            let m = b.as_object().expect("object");
            a.object_len() == m.len()
                && m.iter()
                    .all(|(k, x)| a.object_get(k).is_some_and(|v| json_equal(&v, x)))
        }
        _ => false,
    }
}

const T_NULL: u8 = 1;
const T_BOOL: u8 = 2;
const T_OBJECT: u8 = 4;
const T_ARRAY: u8 = 8;
const T_NUMBER: u8 = 16;
const T_STRING: u8 = 32;
const T_INTEGER: u8 = 64;

fn type_bit(name: &str) -> Option<u8> {
    Some(match name {
        "null" => T_NULL,
        "boolean" => T_BOOL,
        "object" => T_OBJECT,
        "array" => T_ARRAY,
        "number" => T_NUMBER,
        "string" => T_STRING,
        "integer" => T_INTEGER,
        _ => return None,
    })
}

fn type_names(bits: u8) -> String {
    let names = [
        "null", "boolean", "object", "array", "number", "string", "integer",
    ];
    let v: Vec<&str> = (0..7)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| names[i])
        .collect();
    v.join(" or ")
}

/// A compiled schema.
#[derive(Debug, Clone)]
pub enum Schema {
    Bool(bool),
    Node(Box<Node>),
}

#[derive(Debug, Clone, Default)]
pub struct Node {
    types: u8,
    properties: Vec<(String, Schema)>,
    required: Vec<String>,
    additional: Option<Schema>,
    enumeration: Option<Vec<Value>>,
    items: Option<Schema>,
    minimum: Option<Num>,
    maximum: Option<Num>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    date_time: bool,
}

/// A validation failure: where (JSON path below `data`) and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: Vec<String>,
    pub message: String,
}

impl Violation {
    fn new(message: String) -> Self {
        Violation {
            path: Vec::new(),
            message,
        }
    }

    fn at(mut self, seg: &str) -> Self {
        self.path.push(seg.to_string());
        self
    }

    /// `data.metrics.sharpe` (path segments were pushed innermost first while unwinding).
    pub fn path_str(&self, root: &str) -> String {
        let mut p = String::from(root);
        for seg in self.path.iter().rev() {
            if !seg.starts_with('[') {
                p.push('.');
            }
            p.push_str(seg);
        }
        p
    }

    /// `data.metrics.sharpe: expected number, got string`.
    pub fn render(&self, root: &str) -> String {
        format!("{}: {}", self.path_str(root), self.message)
    }
}

fn schema_err(path: &str, msg: impl std::fmt::Display) -> String {
    if path.is_empty() {
        format!("{msg}")
    } else {
        format!("at {path}: {msg}")
    }
}

fn count_value(v: &Value, kw: &str, path: &str) -> Result<u64, String> {
    match v.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f as u64),
        _ => Err(schema_err(
            path,
            format!("'{kw}' must be a non-negative integer"),
        )),
    }
}

fn num_value(v: &Value, kw: &str, path: &str) -> Result<Num, String> {
    if v.is_number() {
        Ok((&v).as_num())
    } else {
        Err(schema_err(path, format!("'{kw}' must be a number")))
    }
}

impl Schema {
    /// Compile a schema; refuse any keyword outside the subset, naming it.
    pub fn compile(v: &Value) -> Result<Schema, String> {
        Self::compile_at(v, "")
    }

    fn compile_at(v: &Value, path: &str) -> Result<Schema, String> {
        let m = match v {
            Value::Bool(b) => return Ok(Schema::Bool(*b)),
            Value::Object(m) => m,
            _ => return Err(schema_err(path, "a schema must be an object or a boolean")),
        };
        let mut n = Node::default();
        for (kw, val) in m {
            let sub = |name: &str| format!("{path}/{name}");
            match kw.as_str() {
                "type" => {
                    let names: Vec<&Value> = match val {
                        Value::Array(a) => a.iter().collect(),
                        one => vec![one],
                    };
                    for t in names {
                        let bit = t.as_str().and_then(type_bit).ok_or_else(|| {
                            schema_err(path, format!("'type' has an unknown type {t}"))
                        })?;
                        n.types |= bit;
                    }
                    if n.types == 0 {
                        return Err(schema_err(path, "'type' must name at least one type"));
                    }
                }
                "properties" => {
                    let props = val
                        .as_object()
                        .ok_or_else(|| schema_err(path, "'properties' must be an object"))?;
                    for (name, s) in props {
                        n.properties.push((
                            name.clone(),
                            Self::compile_at(s, &sub(&format!("properties/{name}")))?,
                        ));
                    }
                }
                "required" => {
                    let req = val
                        .as_array()
                        .ok_or_else(|| schema_err(path, "'required' must be an array"))?;
                    for r in req {
                        let r = r
                            .as_str()
                            .ok_or_else(|| schema_err(path, "'required' must hold strings"))?;
                        if n.required.iter().any(|x| x == r) {
                            return Err(schema_err(path, "'required' items must be unique"));
                        }
                        n.required.push(r.to_string());
                    }
                }
                "additionalProperties" => {
                    n.additional = Some(Self::compile_at(val, &sub("additionalProperties"))?)
                }
                "items" => n.items = Some(Self::compile_at(val, &sub("items"))?),
                "enum" => {
                    n.enumeration = Some(
                        val.as_array()
                            .ok_or_else(|| schema_err(path, "'enum' must be an array"))?
                            .clone(),
                    )
                }
                "minimum" => n.minimum = Some(num_value(val, kw, path)?),
                "maximum" => n.maximum = Some(num_value(val, kw, path)?),
                "minLength" => n.min_length = Some(count_value(val, kw, path)?),
                "maxLength" => n.max_length = Some(count_value(val, kw, path)?),
                "format" => match val.as_str() {
                    Some("date-time") => n.date_time = true,
                    Some(other) => {
                        return Err(schema_err(
                            path,
                            format!("unsupported format '{other}' (only 'date-time')"),
                        ))
                    }
                    None => return Err(schema_err(path, "'format' must be a string")),
                },
                a if ANNOTATIONS.contains(&a) => {}
                other => return Err(schema_err(path, format!("unsupported keyword '{other}'"))),
            }
        }
        Ok(Schema::Node(Box::new(n)))
    }

    /// Validate a document; the first violation found, with its path.
    pub fn validate<V: JsonView>(&self, v: &V) -> Result<(), Violation> {
        match self {
            Schema::Bool(true) => Ok(()),
            Schema::Bool(false) => Err(Violation::new("not allowed by schema false".into())),
            Schema::Node(n) => n.validate(v),
        }
    }
}

/// `date-time` exactly as `jsonschema`'s FormatChecker checks it: the one RFC 3339 parser
/// (`clock::parse_rfc3339`) with its JSON Schema profile.
pub fn is_rfc3339_datetime(s: &str) -> bool {
    crate::core::clock::parse_rfc3339(s.as_bytes(), crate::core::clock::Rfc3339::SchemaDateTime)
        .is_some()
}

fn kind_matches(types: u8, k: Kind, v: &impl JsonView) -> bool {
    match k {
        Kind::Null => types & T_NULL != 0,
        Kind::Bool => types & T_BOOL != 0,
        Kind::Object => types & T_OBJECT != 0,
        Kind::Array => types & T_ARRAY != 0,
        Kind::String => types & T_STRING != 0,
        Kind::Number => types & T_NUMBER != 0 || (types & T_INTEGER != 0 && v.is_integral()),
    }
}

impl Node {
    fn validate<V: JsonView>(&self, v: &V) -> Result<(), Violation> {
        let k = v.kind();
        if self.types != 0 && !kind_matches(self.types, k, v) {
            let got = if k == Kind::Number && v.as_num().is_integral() {
                "integer"
            } else {
                k.name()
            };
            return Err(Violation::new(format!(
                "expected {}, got {got}",
                type_names(self.types)
            )));
        }
        if let Some(options) = &self.enumeration {
            if !options.iter().any(|o| json_equal(v, o)) {
                return Err(Violation::new(
                    "not one of the allowed values (enum)".into(),
                ));
            }
        }
        match k {
            Kind::Object => self.validate_object(v)?,
            Kind::Array => {
                if let Some(items) = &self.items {
                    v.for_each_item(&mut |i, item| {
                        items.validate(&item).map_err(|e| e.at(&format!("[{i}]")))
                    })?;
                }
            }
            Kind::Number if self.minimum.is_some() || self.maximum.is_some() => {
                // Parsed only when a bound needs it (the type check above does not).
                let x = v.as_num();
                if let Some(m) = self.minimum {
                    if x.compare(m) == Some(Ordering::Less) {
                        return Err(Violation::new(format!("below minimum {}", show(m))));
                    }
                }
                if let Some(m) = self.maximum {
                    if x.compare(m) == Some(Ordering::Greater) {
                        return Err(Violation::new(format!("above maximum {}", show(m))));
                    }
                }
            }
            Kind::String => {
                if self.min_length.is_some() || self.max_length.is_some() {
                    let n = v.as_str().chars().count() as u64;
                    if self.min_length.is_some_and(|m| n < m) {
                        return Err(Violation::new(format!(
                            "shorter than minLength {}",
                            self.min_length.unwrap_or(0)
                        )));
                    }
                    if self.max_length.is_some_and(|m| n > m) {
                        return Err(Violation::new(format!(
                            "longer than maxLength {}",
                            self.max_length.unwrap_or(0)
                        )));
                    }
                }
                if self.date_time && !is_rfc3339_datetime(&v.as_str()) {
                    return Err(Violation::new("not an RFC 3339 date-time".into()));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn validate_object<V: JsonView>(&self, v: &V) -> Result<(), Violation> {
        for r in &self.required {
            if v.object_get(r).is_none() {
                return Err(Violation::new(format!("missing required field '{r}'")));
            }
        }
        for (name, s) in &self.properties {
            if let Some(x) = v.object_get(name) {
                s.validate(&x).map_err(|e| e.at(name))?;
            }
        }
        if let Some(extra) = &self.additional {
            v.for_each_member(&mut |key, x| {
                if self.properties.iter().any(|(p, _)| p == key) {
                    return Ok(());
                }
                match extra {
                    Schema::Bool(false) => Err(Violation::new(format!(
                        "additional property '{key}' is not allowed"
                    ))),
                    s => s.validate(&x).map_err(|e| e.at(key)),
                }
            })?;
        }
        Ok(())
    }
}

fn show(n: Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => f.to_string(),
    }
}

mod registry;
pub use registry::Registry;

mod tape_view;
pub use tape_view::TapeNode;

mod shape;
#[cfg(any(test, feature = "test-hooks"))]
pub use shape::shape_of_text;
pub use shape::{ShapeBuf, ShapeMemo};

#[cfg(test)]
mod tests;
