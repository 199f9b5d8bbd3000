//! Property tests: merge is a join-semilattice over random tasks with tags, removals and
//! unknown fields, and its output is normalised.

use hypertask_core::{merge, Task};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn timestamp() -> impl Strategy<Value = String> {
    // A few minutes apart, so equal clocks (ties) are common.
    (0u32..6).prop_map(|m| format!("2026-11-26T10:0{m}:00.000Z"))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-c]{0,2}".prop_map(Value::from),
        (0i64..3).prop_map(Value::from),
        Just(json!(1.5)),
        Just(json!(null)),
        Just(json!({"k": [1, 2]})),
    ]
}

/// A raw (not normalised) task document of the one id every test merges.
fn task() -> impl Strategy<Value = Task> {
    let fields = proptest::collection::btree_map(
        prop_oneof![
            Just("description".to_owned()),
            Just("due".to_owned()),
            Just("deleted".to_owned()),
            Just("priority".to_owned()),
            Just("project".to_owned()),
        ],
        (value(), timestamp()),
        0..4,
    );
    let tags = proptest::collection::btree_set("[xyz]", 0..3);
    let removed = proptest::collection::btree_map(
        prop_oneof![
            Just("description".to_owned()),
            Just("tags.x".to_owned()),
            Just("tags.y".to_owned()),
            Just("priority".to_owned()),
        ],
        timestamp(),
        0..3,
    );
    (
        fields,
        tags,
        removed,
        timestamp(),
        timestamp(),
        any::<bool>(),
    )
        .prop_map(|(fields, tags, removed, created, updated, clocks)| {
            let mut doc = Map::new();
            let mut fua = Map::new();
            doc.insert("id".into(), json!("prop1"));
            doc.insert("created_at".into(), json!(created));
            doc.insert("updated_at".into(), json!(updated));
            for (k, clock) in removed {
                fua.insert(k, json!(clock));
            }
            for (k, (v, clock)) in fields {
                let v = match k.as_str() {
                    "due" | "deleted" => json!(clock),
                    // Typed fields (docs/task-format.md): a project is a string.
                    "description" | "project" => json!(v.as_str().unwrap_or("d")),
                    _ => v,
                };
                doc.insert(k.clone(), v);
                if clocks {
                    fua.insert(k, json!(clock));
                } else {
                    fua.remove(&k);
                }
            }
            for t in &tags {
                fua.remove(&format!("tags.{t}"));
            }
            doc.insert("tags".into(), json!(tags));
            doc.insert("field_updated_at".into(), Value::Object(fua));
            Task::from_value(Value::Object(doc)).expect("generated task is valid")
        })
}

fn m(a: &Task, b: &Task) -> Task {
    merge(Some(a), Some(b)).unwrap().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn commutative(a in task(), b in task()) {
        prop_assert_eq!(m(&a, &b), m(&b, &a));
    }

    #[test]
    fn associative(a in task(), b in task(), c in task()) {
        prop_assert_eq!(m(&m(&a, &b), &c), m(&a, &m(&b, &c)));
    }

    #[test]
    fn idempotent(a in task(), b in task()) {
        prop_assert_eq!(m(&a, &a), a.clone());
        let ab = m(&a, &b);
        prop_assert_eq!(m(&ab, &b), ab.clone());
        prop_assert_eq!(m(&ab, &a), ab);
    }

    #[test]
    fn output_is_normalised(a in task(), b in task()) {
        let ab = m(&a, &b);
        let again = Task::from_value(ab.to_value()).unwrap();
        prop_assert_eq!(&again, &ab);
        prop_assert_eq!(again.hash(), ab.hash());
    }

    #[test]
    fn none_is_identity(a in task()) {
        prop_assert_eq!(merge(Some(&a), None).unwrap(), Some(a.clone()));
        prop_assert_eq!(merge(None, Some(&a)).unwrap(), Some(a));
    }
}
