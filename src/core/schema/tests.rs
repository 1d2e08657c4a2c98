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
