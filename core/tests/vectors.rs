//! The task vectors shipped in this crate (`core/vectors/task-vectors.json`, a copy of the
//! project's reference vectors): every hash, normalise, merge, invalid and root vector must pass.

use hypertask_core::conformance::TASK_VECTORS;
use hypertask_core::{canonical_json, merge, root_hash, ContentHash, Hashes, Task};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(TASK_VECTORS).expect("vectors are JSON")
}

/// The shipped copy holds the reference file's vectors when `HYPERTASK_VECTORS` names one
/// (see CONTRIBUTING.md: how to compare the vectors with a newer reference). Only the
/// `about` text differs: the copy points at this repository's docs.
#[test]
fn shipped_vectors_are_the_reference_vectors() {
    if let Some(reference) = std::env::var_os("HYPERTASK_VECTORS") {
        let reference = std::path::PathBuf::from(reference);
        let text = std::fs::read_to_string(&reference)
            .unwrap_or_else(|e| panic!("HYPERTASK_VECTORS={}: {e}", reference.display()));
        let without_about = |text: &str| {
            let mut v: Value = serde_json::from_str(text).expect("vectors are JSON");
            v.as_object_mut().map(|o| o.remove("about"));
            v
        };
        assert!(
            without_about(&text) == without_about(TASK_VECTORS),
            "{} holds other vectors than the shipped copy",
            reference.display()
        );
    }
    assert!(vectors()["invalid"]
        .as_array()
        .is_some_and(|a| a.len() >= 14));
}

fn section(name: &str) -> Vec<Value> {
    let v = vectors()[name].as_array().cloned().unwrap_or_default();
    assert!(!v.is_empty(), "vector section {name} is empty or missing");
    v
}

fn name(v: &Value) -> &str {
    v["name"].as_str().or(v["why"].as_str()).unwrap_or("?")
}

#[test]
fn hash_vectors() {
    for v in section("hash") {
        let task =
            Task::from_value(v["task"].clone()).unwrap_or_else(|e| panic!("{}: {e}", name(&v)));
        let canonical = String::from_utf8(task.canonical_bytes()).unwrap();
        assert_eq!(canonical, v["canonical"].as_str().unwrap(), "{}", name(&v));
        assert_eq!(
            task.hash().as_str(),
            v["sha256"].as_str().unwrap(),
            "{}",
            name(&v)
        );
    }
}

#[test]
fn normalize_vectors() {
    for v in section("normalize") {
        let task =
            Task::from_value(v["input"].clone()).unwrap_or_else(|e| panic!("{}: {e}", name(&v)));
        assert_eq!(task.to_value(), v["expected"], "{}", name(&v));
        let again = Task::from_value(task.to_value()).unwrap();
        assert_eq!(
            again,
            task,
            "{}: normalising twice changes nothing",
            name(&v)
        );
    }
}

#[test]
fn merge_vectors() {
    for v in section("merge") {
        let a = Task::from_value(v["a"].clone()).unwrap();
        let b = match &v["b"] {
            Value::Null => None,
            b => Some(Task::from_value(b.clone()).unwrap()),
        };
        let ab = merge(Some(&a), b.as_ref()).unwrap().unwrap();
        let ba = merge(b.as_ref(), Some(&a)).unwrap().unwrap();
        assert_eq!(ab.to_value(), v["expected"], "{}: merge(a, b)", name(&v));
        assert_eq!(ba.to_value(), v["expected"], "{}: merge(b, a)", name(&v));
        assert_eq!(
            ab.hash().as_str(),
            v["expected_sha256"].as_str().unwrap(),
            "{}",
            name(&v)
        );
    }
}

#[test]
fn invalid_vectors() {
    for v in section("invalid") {
        let err = Task::from_value(v["input"].clone());
        assert!(err.is_err(), "{} must be rejected", name(&v));
        let msg = err.unwrap_err().to_string();
        assert!(msg.starts_with("task"), "error names the task: {msg}");
    }
}

#[test]
fn root_vectors() {
    for v in section("root") {
        let hashes: Hashes = serde_json::from_value(v["hashes"].clone()).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&hashes)).unwrap(),
            v["canonical"].as_str().unwrap(),
            "{}",
            name(&v)
        );
        assert_eq!(
            root_hash(&hashes),
            ContentHash::parse(v["sha256"].as_str().unwrap()).unwrap()
        );
    }
}

#[test]
fn errors_name_the_field() {
    let e = Task::from_value(serde_json::json!({"id": "abc", "due": "tomorrow"})).unwrap_err();
    assert_eq!(e.id.as_deref(), Some("abc"));
    assert_eq!(e.field.as_deref(), Some("due"));
    assert!(
        e.to_string().contains("'abc'") && e.to_string().contains("'due'"),
        "{e}"
    );
}
