//! Arbitrary bytes as a task document: parsing never panics, and a task that parses is
//! normalised, round-trips through its file format, and merges with itself to itself.
#![no_main]

use hypertask_core::{merge, Task};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(task) = Task::from_json(data) else {
        return;
    };
    let again = Task::from_value(task.to_value()).expect("a normalised task is valid");
    assert_eq!(again, task, "normalisation is idempotent");
    let from_file = Task::from_json(&task.to_pretty_json()).expect("the file format parses");
    assert_eq!(from_file.hash(), task.hash(), "the file format round-trips");
    assert_eq!(merge(Some(&task), Some(&task)).unwrap(), Some(task));
});
