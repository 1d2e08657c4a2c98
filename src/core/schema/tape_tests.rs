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
    fn for_each_member<E>(&self, f: &mut dyn FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        (&self.0).for_each_member(&mut |k, v| f(k, NoIndexing(v)))
    }
    fn for_each_item<E>(&self, f: &mut dyn FnMut(usize, Self) -> Result<(), E>) -> Result<(), E> {
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
