use super::*;
use crate::core::schema::TapeNode;
use proptest::prelude::*;
use serde_json::{json, Value};

fn compile(v: Value) -> Schema {
    Schema::compile(&v).unwrap()
}

#[test]
fn only_schemas_without_leaf_rules_are_judged_by_shape() {
    let plain = json!({"type": "object", "required": ["a"],
        "properties": {"a": {"type": ["integer", "string"]}, "b": {"items": {"type": "number"}}},
        "additionalProperties": false});
    assert!(compile(plain).verdict_by_shape());
    assert!(compile(json!(true)).verdict_by_shape());
    for leaf in [
        json!({"enum": [1]}),
        json!({"minimum": 0}),
        json!({"maximum": 0}),
        json!({"minLength": 1}),
        json!({"maxLength": 1}),
        json!({"format": "date-time"}),
    ] {
        assert!(!compile(leaf.clone()).verdict_by_shape(), "{leaf}");
        for nested in [
            json!({"properties": {"x": leaf}}),
            json!({"additionalProperties": leaf}),
            json!({"items": leaf}),
        ] {
            assert!(!compile(nested.clone()).verdict_by_shape(), "{nested}");
        }
    }
}

#[test]
fn a_remembered_shape_skips_the_schema() {
    // The contract that makes the memo worth having: once a shape is accepted, a value of the
    // same shape is accepted without consulting the schema (here a schema that refuses all).
    let open = compile(json!({"type": "object"}));
    let memo = ShapeMemo::new(&open);
    let check = |s: &Schema, text: &[u8]| {
        let mut tape = Tape::default();
        tape.parse(text).unwrap();
        memo.validate(s, text, &tape).is_ok()
    };
    assert!(check(&open, br#"{"a":1,"b":[2.5]}"#));
    assert!(check(&Schema::Bool(false), br#"{"a":7,"b":[0.25]}"#));
    assert!(!check(&Schema::Bool(false), br#"{"a":7,"b":[1.0]}"#));
    assert!(!check(&Schema::Bool(false), br#"{"a":7,"c":[0.5]}"#));
    // Nesting is part of the shape: [[1,2]] and [1,[2]] have the same leaves in order.
    let lists = compile(json!({"type": "array", "items": {"type": "array"}}));
    let memo = ShapeMemo::new(&lists);
    for (text, ok) in [
        (&b"[[1,2]]"[..], true),
        (b"[1,[2]]", false),
        (b"[[3,4]]", true),
    ] {
        let mut tape = Tape::default();
        tape.parse(text).unwrap();
        assert_eq!(memo.validate(&lists, text, &tape).is_ok(), ok);
    }
}

#[test]
fn the_last_few_accepted_shapes_are_kept() {
    // A number that is integral every seventh time alternates between two shapes: both stay.
    let open = compile(json!({"type": "object"}));
    let memo = ShapeMemo::new(&open);
    let check = |s: &Schema, text: &str| {
        let mut tape = Tape::default();
        tape.parse(text.as_bytes()).unwrap();
        memo.validate(s, text.as_bytes(), &tape).is_ok()
    };
    let no = Schema::Bool(false);
    for i in 0..5 {
        assert!(check(&open, &format!(r#"{{"k{i}":1}}"#)));
    }
    // The newest four are remembered (the schema is not consulted), the oldest is not.
    for i in 1..5 {
        assert!(check(&no, &format!(r#"{{"k{i}":2}}"#)), "k{i}");
    }
    assert!(!check(&no, r#"{"k0":2}"#));
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(|i| json!(i)),
        (-6i32..6).prop_map(|i| json!(f64::from(i) / 2.0)),
        Just(json!(1e300)),
        prop_oneof![Just("x"), Just("yy"), Just("a\"b")].prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![Just("a"), Just("b"), Just("c"), Just("a\"")].prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn schemas() -> Vec<Schema> {
    [
        json!({"type": "object", "required": ["a"],
               "properties": {"a": {"type": "integer"}, "b": {"items": {"type": ["integer", "null"]}}},
               "additionalProperties": {"type": ["string", "boolean", "object"]}}),
        json!({"type": "object", "properties": {"a\"": {"type": "array", "items": {"type": "integer"}}},
               "additionalProperties": false}),
        json!({"type": ["array", "object"], "items": {"type": "object", "required": ["b", "c"],
               "properties": {"c": {"type": "number"}}}}),
    ]
    .into_iter()
    .map(compile)
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    /// In any sequence of values, validating through a memo gives the verdict validating
    /// without one gives (values of one shape differ in their leaves: 2.0 vs 2.5, true vs
    /// false, strings; keys differ by one character or an escape).
    #[test]
    fn the_memo_never_changes_a_verdict(docs in proptest::collection::vec(value(), 1..12)) {
        for schema in schemas() {
            let memo = ShapeMemo::new(&schema);
            let mut tape = Tape::default();
            for d in &docs {
                let text = serde_json::to_vec(d).unwrap();
                tape.parse(&text).unwrap();
                let plain = schema.validate(&TapeNode::root(&text, &tape)).is_ok();
                let memoized = memo.validate(&schema, &text, &tape).is_ok();
                prop_assert_eq!(plain, memoized, "{}", d);
            }
        }
    }
}

#[test]
fn integrality_is_fract_zero_at_the_edges() {
    let two52 = 4_503_599_627_370_496.0_f64;
    for v in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1e-300,
        5e-324,
        two52,
        two52 - 0.5,
        -(two52 - 0.5),
        two52 * 2.0 - 1.0,
        9.2e18,
        -9.3e18,
        1e300,
        f64::MAX,
        f64::MIN,
        12.000_000_000_000_002,
    ] {
        assert_eq!(is_integral(v), v.fract() == 0.0, "{v:e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn integrality_is_fract_zero(bits in any::<u64>()) {
        let v = f64::from_bits(bits);
        if v.is_finite() {
            prop_assert_eq!(is_integral(v), v.fract() == 0.0, "{:e}", v);
        }
    }

    #[test]
    fn integrality_near_integers_is_fract_zero(m in any::<i64>(), q in 0u32..4, e in 0i32..64) {
        let v = (m as f64 + f64::from(q) * 0.25) / 2f64.powi(e);
        prop_assert_eq!(is_integral(v), v.fract() == 0.0, "{:e}", v);
    }
}
