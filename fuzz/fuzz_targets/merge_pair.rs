//! Two arbitrary documents of one task: merge is commutative, idempotent and normalised.
#![no_main]

use hypertask_core::{merge, Task};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn doc(bytes: &[u8]) -> Option<Task> {
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    v.as_object_mut()?.insert("id".into(), Value::from("fuzz"));
    Task::from_value(v).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Some(a), Some(b)) = (doc(a), doc(b)) else {
        return;
    };
    let ab = merge(Some(&a), Some(&b)).unwrap().unwrap();
    let ba = merge(Some(&b), Some(&a)).unwrap().unwrap();
    assert_eq!(ab, ba, "commutative");
    assert_eq!(merge(Some(&ab), Some(&a)).unwrap().unwrap(), ab, "idempotent");
    assert_eq!(Task::from_value(ab.to_value()).unwrap(), ab, "normalised");
});
