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
            Num::Float(f) => f.is_finite() && f.fract() == 0.0,
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

/// `date-time` exactly as `jsonschema`'s FormatChecker checks it (rfc3339-validator on the
/// upper-cased string; like Python's `$`, one trailing newline is tolerated).
pub fn is_rfc3339_datetime(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s).as_bytes();
    if s.len() < 20 || !s.is_ascii() {
        return false;
    }
    let d = |r: std::ops::Range<usize>| s[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| {
        s[r].iter()
            .fold(0u32, |acc, c| acc * 10 + (c - b'0') as u32)
    };
    let date_ok = d(0..4) && s[4] == b'-' && d(5..7) && s[7] == b'-' && d(8..10);
    let time_ok = d(11..13) && s[13] == b':' && d(14..16) && s[16] == b':' && d(17..19);
    if !(date_ok && matches!(s[10], b'T' | b't') && time_ok) {
        return false;
    }
    let (y, mo, day) = (num(0..4), num(5..7), num(8..10));
    if num(11..13) > 23 || num(14..16) > 59 || num(17..19) > 59 || !(1..=12).contains(&mo) {
        return false;
    }
    let mut i = 19;
    if s[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let tz_ok = match &s[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
                && ((h1 - b'0') * 10 + (h2 - b'0')) <= 23
                && *m1 <= b'5'
        }
        _ => false,
    };
    if !tz_ok || y == 0 {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max_day = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if leap => 29,
        _ => 28,
    };
    (1..=max_day).contains(&day)
}

fn kind_matches(types: u8, k: Kind, v: &impl JsonView) -> bool {
    match k {
        Kind::Null => types & T_NULL != 0,
        Kind::Bool => types & T_BOOL != 0,
        Kind::Object => types & T_OBJECT != 0,
        Kind::Array => types & T_ARRAY != 0,
        Kind::String => types & T_STRING != 0,
        Kind::Number => {
            types & T_NUMBER != 0 || (types & T_INTEGER != 0 && v.as_num().is_integral())
        }
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
            Kind::Number => {
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

/// All schemas of a registry, by type and version, compiled.
#[derive(Debug, Default)]
pub struct Registry {
    types: HashMap<String, Vec<(u32, Schema)>>,
    /// Types whose entry in the file is invalid (hand-edited): their events fail closed with
    /// this reason; every other type stays writable.
    broken: HashMap<String, String>,
}

impl Registry {
    /// Parse `_schema.json`: `{"types": {TYPE: {"VERSION": SCHEMA, ...}, ...}, ...}`.
    pub fn from_json(text: &str) -> Result<Registry, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("bad registry: {e}"))?;
        let types = doc
            .get("types")
            .and_then(Value::as_object)
            .ok_or("bad registry: no 'types' object")?;
        let mut reg = Registry::default();
        for (t, versions) in types {
            match Self::compile_type(t, versions) {
                Ok(list) => {
                    reg.types.insert(t.clone(), list);
                }
                Err(e) => {
                    reg.broken.insert(t.clone(), e);
                }
            }
        }
        Ok(reg)
    }

    fn compile_type(t: &str, versions: &Value) -> Result<Vec<(u32, Schema)>, String> {
        let versions = versions
            .as_object()
            .ok_or_else(|| format!("bad registry: {t} must map versions to schemas"))?;
        let mut list = Vec::new();
        for (ver, s) in versions {
            let n: u32 = ver
                .parse()
                .map_err(|_| format!("bad registry: {t} version '{ver}' is not a number"))?;
            let compiled = Schema::compile(s).map_err(|e| format!("{t} v{n}: {e}"))?;
            list.push((n, compiled));
        }
        list.sort_by_key(|(n, _)| *n);
        Ok(list)
    }

    /// The types whose registry entry is invalid, with the reason.
    pub fn broken(&self) -> &HashMap<String, String> {
        &self.broken
    }

    /// The schema for a type: the newest version, or the one asked for.
    pub fn get(&self, event_type: &str, version: Option<u32>) -> Result<(u32, &Schema), String> {
        let Some(list) = self.types.get(event_type) else {
            if let Some(why) = self.broken.get(event_type) {
                return Err(format!(
                    "{event_type}: its entry in events/_schema.json is invalid ({why}); no event \
                     of this type is written until it is fixed"
                ));
            }
            return Err(format!("unknown event type '{event_type}'"));
        };
        match version {
            None => list
                .last()
                .map(|(n, s)| (*n, s))
                .ok_or_else(|| format!("{event_type}: no versions")),
            Some(want) => list
                .iter()
                .find(|(n, _)| *n == want)
                .map(|(n, s)| (*n, s))
                .ok_or_else(|| format!("{event_type}: unknown schema_version {want}")),
        }
    }

    pub fn contains(&self, event_type: &str) -> bool {
        self.types.contains_key(event_type) || self.broken.contains_key(event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, doc: Value) -> Result<(), String> {
        let s = Schema::compile(&schema)?;
        s.validate(&&doc).map_err(|v| v.render("data"))
    }

    #[test]
    fn builtin_trial_messages() {
        let reg = Registry::from_json(crate::core::builtin::BUILTIN_REGISTRY).unwrap();
        let (_, s) = reg.get("trial.recorded", None).unwrap();
        let bad = json!({"trial_id": 1, "params": {}, "metrics": {"sharpe": "x"}});
        let e = s.validate(&&bad).unwrap_err().render("data");
        assert_eq!(e, "data.metrics.sharpe: expected number, got string");
        let missing = json!({"trial_id": 1, "params": {}});
        assert!(s
            .validate(&&missing)
            .unwrap_err()
            .message
            .contains("metrics"));
    }

    #[test]
    fn subset_semantics() {
        assert!(check(json!({"type": "integer"}), json!(1.0)).is_ok());
        assert!(check(json!({"type": "integer"}), json!(1.5)).is_err());
        assert!(check(json!({"enum": [1]}), json!(true)).is_err());
        assert!(check(json!({"enum": [1]}), json!(1.0)).is_ok());
        assert!(check(json!({"maxLength": 2}), json!("ééé")).is_err());
        assert!(check(json!({"minimum": 2}), json!("x")).is_ok());
        assert!(check(json!({"items": {"type": "string"}}), json!(["a", 1])).is_err());
        assert!(check(
            json!({"format": "date-time"}),
            json!("2020-02-30T00:00:00Z")
        )
        .is_err());
        assert!(check(
            json!({"format": "date-time"}),
            json!("2020-02-29t00:00:00z")
        )
        .is_ok());
    }

    #[test]
    fn refuses_unknown_keywords() {
        let e = Schema::compile(&json!({"properties": {"a": {"pattern": "x"}}})).unwrap_err();
        assert!(e.contains("'pattern'"), "{e}");
        assert!(Schema::compile(&json!({"title": "t", "$comment": "c"})).is_ok());
    }

    #[test]
    fn int_float_comparison_is_exact() {
        let big = Num::Int(9_007_199_254_740_993);
        assert_eq!(
            big.compare(Num::Float(9_007_199_254_740_992.0)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            Num::Int(3).compare(Num::Float(2.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(Num::Int(-3).compare(Num::Float(-2.5)), Some(Ordering::Less));
    }
}

/// A position in a token tape, seen as JSON by the validator.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    pub src: &'a [u8],
    pub toks: &'a [crate::core::json::Tok],
    pub i: usize,
}

impl<'a> TapeNode<'a> {
    pub fn root(src: &'a [u8], tape: &'a crate::core::json::Tape) -> Self {
        TapeNode {
            src,
            toks: &tape.toks,
            i: 0,
        }
    }

    fn tok(&self) -> crate::core::json::Tok {
        self.toks[self.i]
    }

    fn text(&self) -> &'a [u8] {
        let t = self.tok();
        &self.src[t.start as usize..t.end as usize]
    }

    fn at(&self, i: usize) -> Self {
        TapeNode { i, ..*self }
    }

    fn key_is(&self, key: &str) -> bool {
        use crate::core::json::TokKind;
        let t = self.tok();
        let raw = &self.src[t.start as usize + 1..t.end as usize - 1];
        match t.kind {
            TokKind::Str => raw == key.as_bytes(),
            _ => crate::core::json::unescape(self.text()) == key,
        }
    }
}

impl JsonView for TapeNode<'_> {
    fn kind(&self) -> Kind {
        use crate::core::json::TokKind as T;
        match self.tok().kind {
            T::Null => Kind::Null,
            T::True | T::False => Kind::Bool,
            T::Int | T::Float => Kind::Number,
            T::Str | T::StrEsc => Kind::String,
            T::Arr => Kind::Array,
            T::Obj => Kind::Object,
        }
    }

    fn as_bool(&self) -> bool {
        self.tok().kind == crate::core::json::TokKind::True
    }

    fn as_num(&self) -> Num {
        let s = std::str::from_utf8(self.text()).unwrap_or("");
        if self.tok().kind == crate::core::json::TokKind::Int {
            if let Ok(i) = s.parse::<i128>() {
                return Num::Int(i);
            }
        }
        Num::Float(s.parse::<f64>().unwrap_or(f64::NAN))
    }

    fn as_str(&self) -> Cow<'_, str> {
        let t = self.tok();
        match t.kind {
            crate::core::json::TokKind::Str => Cow::Borrowed(
                std::str::from_utf8(&self.src[t.start as usize + 1..t.end as usize - 1])
                    .unwrap_or(""),
            ),
            _ => Cow::Owned(crate::core::json::unescape(self.text())),
        }
    }

    fn array_len(&self) -> usize {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        let mut n = 0;
        while i < end {
            n += 1;
            i = self.toks[i].next as usize;
        }
        n
    }

    fn array_item(&self, k: usize) -> Self {
        let mut i = self.i + 1;
        for _ in 0..k {
            i = self.toks[i].next as usize;
        }
        self.at(i)
    }

    fn object_len(&self) -> usize {
        self.array_len() / 2
    }

    fn for_each_item<E>(&self, f: &mut dyn FnMut(usize, Self) -> Result<(), E>) -> Result<(), E> {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        let mut k = 0;
        while i < end {
            f(k, self.at(i))?;
            i = self.toks[i].next as usize;
            k += 1;
        }
        Ok(())
    }

    fn object_get(&self, key: &str) -> Option<Self> {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        while i < end {
            let k = self.at(i);
            let v = i + 1;
            if k.key_is(key) {
                return Some(self.at(v));
            }
            i = self.toks[v].next as usize;
        }
        None
    }

    fn for_each_member<E>(&self, f: &mut dyn FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        while i < end {
            let k = self.at(i);
            let v = i + 1;
            f(&k.as_str(), self.at(v))?;
            i = self.toks[v].next as usize;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tape_tests {
    use super::*;
    use crate::core::json::Tape;
    use serde_json::json;

    #[test]
    fn tape_and_value_views_agree() {
        let schema = Schema::compile(&json!({
            "type": "object", "required": ["a", "b"],
            "properties": {"a": {"type": "integer", "minimum": 2}, "b": {"items": {"type": "string", "maxLength": 2}},
                           "c\n": {"enum": [1, [true, null], {"x": 1.0}]}},
            "additionalProperties": {"type": "number"}
        })).unwrap();
        let docs = [
            json!({"a": 2, "b": ["xy"]}),
            json!({"a": 2.0, "b": []}),
            json!({"a": 1, "b": []}),
            json!({"a": 2, "b": ["xyz"]}),
            json!({"a": 2, "b": [], "c\n": [true, null]}),
            json!({"a": 2, "b": [], "c\n": {"x": 1}}),
            json!({"a": 2, "b": [], "c\n": 2}),
            json!({"a": 2, "b": [], "z": "s"}),
            json!({"a": 2, "b": [], "z": 1e300}),
            json!([1]),
        ];
        let mut tape = Tape::default();
        for d in &docs {
            let text = serde_json::to_vec(d).unwrap();
            tape.parse(&text).unwrap();
            let via_tape = schema
                .validate(&TapeNode::root(&text, &tape))
                .map_err(|v| v.render("data"));
            let via_value = schema.validate(&d).map_err(|v| v.render("data"));
            assert_eq!(via_tape, via_value, "{d}");
        }
    }

    #[test]
    fn long_arrays_are_walked_once() {
        // 100k items: a walk from the start for each item would take 5e9 steps.
        let n = 100_000;
        let mut text = b"[".to_vec();
        for i in 0..n {
            text.extend_from_slice(if i + 1 < n { b"1," } else { b"\"x\"]" });
        }
        let mut tape = Tape::default();
        tape.parse(&text).unwrap();
        let root = TapeNode::root(&text, &tape);
        let mut seen = 0;
        root.for_each_item(&mut |i, _| {
            assert_eq!(i, seen);
            seen += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(seen, n);
        let schema = Schema::compile(&json!({"items": {"type": "integer"}})).unwrap();
        let err = schema.validate(&root).unwrap_err();
        assert_eq!(
            err.render("data"),
            format!("data[{}]: expected integer, got string", n - 1)
        );
        assert_eq!(err.path_str("data"), format!("data[{}]", n - 1));
    }

    /// A view whose `array_item` panics: validation must go through `for_each_item`.
    #[derive(Clone, Copy)]
    struct NoIndexing<'a>(&'a Value);

    impl JsonView for NoIndexing<'_> {
        fn kind(&self) -> Kind {
            (&self.0).kind()
        }
        fn as_bool(&self) -> bool {
            (&self.0).as_bool()
        }
        fn as_num(&self) -> Num {
            (&self.0).as_num()
        }
        fn as_str(&self) -> Cow<'_, str> {
            Cow::Borrowed(self.0.as_str().unwrap_or(""))
        }
        fn array_len(&self) -> usize {
            (&self.0).array_len()
        }
        fn array_item(&self, _: usize) -> Self {
            panic!("array_item is O(n) on the tape: validate must use for_each_item")
        }
        fn object_len(&self) -> usize {
            (&self.0).object_len()
        }
        fn object_get(&self, key: &str) -> Option<Self> {
            self.0.get(key).map(NoIndexing)
        }
        fn for_each_member<E>(
            &self,
            f: &mut dyn FnMut(&str, Self) -> Result<(), E>,
        ) -> Result<(), E> {
            (&self.0).for_each_member(&mut |k, v| f(k, NoIndexing(v)))
        }
        fn for_each_item<E>(
            &self,
            f: &mut dyn FnMut(usize, Self) -> Result<(), E>,
        ) -> Result<(), E> {
            (&self.0).for_each_item(&mut |i, v| f(i, NoIndexing(v)))
        }
    }

    #[test]
    fn validation_and_enum_use_for_each_item() {
        let schema = Schema::compile(&json!({
            "properties": {"a": {"items": {"type": "integer"}}, "e": {"enum": [[1, 2]]}}
        }))
        .unwrap();
        let ok = json!({"a": [1, 2, 3], "e": [1, 2]});
        assert!(schema.validate(&NoIndexing(&ok)).is_ok());
        let bad = json!({"a": [1, "x"], "e": [1, 2]});
        let err = schema.validate(&NoIndexing(&bad)).unwrap_err();
        assert_eq!(
            err.render("data"),
            "data.a[1]: expected integer, got string"
        );
    }
}
