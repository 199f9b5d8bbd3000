//! The sync protocol's JSON bodies and headers, defined once for the client and the server
//! (docs/http-protocol.md).
//!
//! The request and answer types are generic over how a task state is held: the client sends
//! `&Task` and reads answers as raw JSON (so it can measure each state before parsing it); the
//! server reads requests as raw JSON for the same reason and answers `Task`s.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// The protocol versions, repeated on `/hashes` answers (`1.0, 1.1`).
pub(crate) const PROTOCOL_HEADER: &str = "hypertask-protocol";
/// `max_batch`, repeated on `/hashes` answers.
pub(crate) const MAX_BATCH_HEADER: &str = "hypertask-max-batch";
/// `max_body_bytes`, repeated on `/hashes` answers.
pub(crate) const MAX_BODY_HEADER: &str = "hypertask-max-body-bytes";
/// `long_poll`, repeated on `/hashes` answers (`true`) when the server holds long polls.
pub(crate) const LONG_POLL_HEADER: &str = "hypertask-long-poll";
/// RFC 7240's request header: `Prefer: wait=N` asks the server to hold a long poll.
pub(crate) const PREFER_HEADER: &str = "prefer";
/// RFC 7240's answer header: `Preference-Applied: wait=N`, the long poll was held.
pub(crate) const PREFERENCE_APPLIED_HEADER: &str = "preference-applied";

/// The root hash an entity tag names: `"<root>"`, weak (`W/"<root>"`) or strong.
pub(crate) fn tag_root(tag: &str) -> Option<hypertask_core::ContentHash> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    hypertask_core::ContentHash::parse(tag.strip_prefix('"')?.strip_suffix('"')?)
}

/// The versions this implementation speaks, newest last.
#[cfg(feature = "server")]
pub(crate) const PROTOCOL_VERSIONS: [&str; 2] = ["1.0", "1.1"];

/// `POST /task/:id` (v1.0): `{"client_state": null | task}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct SingleRequest<T> {
    /// The sender's state of the task; `null` asks for the server's.
    #[serde(deserialize_with = "required")]
    pub(crate) client_state: Option<T>,
}

/// The answer to `POST /task/:id`: `{"server_state": null | task}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct SingleAnswer<T> {
    /// What the server holds after merging.
    #[serde(deserialize_with = "required")]
    pub(crate) server_state: Option<T>,
}

/// `POST /tasks` (v1.1): `{"client_states": {"<id>": null | task, ...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchRequest<T> {
    /// One state per task id.
    pub(crate) client_states: BTreeMap<String, Option<T>>,
}

/// The answer to `POST /tasks`: `{"server_states": {...}, "errors": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchAnswer<T> {
    /// What the server holds after merging, for every task it could resolve.
    pub(crate) server_states: BTreeMap<String, Option<T>>,
    /// Why the others could not be resolved (absent when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) errors: BTreeMap<String, TaskFailure>,
}

/// Why the server could not resolve one task of a batch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskFailure {
    /// The reason, for people.
    pub(crate) error: String,
    /// Whether the same request may succeed later.
    #[serde(default)]
    pub(crate) retryable: bool,
}

/// `GET /capabilities`. Every field is optional when read: a server may say less.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CapabilitiesDoc {
    /// The protocol versions spoken; absent means `["1.0"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<Vec<String>>,
    /// Most tasks in one `POST /tasks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_batch: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_body_bytes: Option<u64>,
    /// Largest task accepted, in bytes of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_task_bytes: Option<u64>,
    /// Whether `/hashes` carries an `ETag` and honours `If-None-Match`.
    #[serde(default)]
    pub(crate) etag: bool,
    /// Whether `GET /hashes` with `If-None-Match` and `Prefer: wait=N` is held until the root
    /// changes or N seconds pass (absent: no).
    #[serde(default)]
    pub(crate) long_poll: bool,
    /// The `Authorization` schemes accepted.
    #[serde(default)]
    pub(crate) auth: Vec<String>,
    /// The server software.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    pub(crate) error: String,
}

/// Makes an `Option` field required: `null` is `None`, a missing key is an error (serde would
/// otherwise read a missing `Option` field as `None`).
fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn states_are_required_but_may_be_null() {
        let a: SingleAnswer<Box<RawValue>> =
            serde_json::from_str(r#"{"server_state": null}"#).unwrap();
        assert!(a.server_state.is_none());
        let a: SingleAnswer<Box<RawValue>> =
            serde_json::from_str(r#"{"server_state": {"id": "x"}}"#).unwrap();
        assert_eq!(a.server_state.unwrap().get(), r#"{"id": "x"}"#);
        let e = serde_json::from_str::<SingleAnswer<Box<RawValue>>>("{}").unwrap_err();
        assert!(e.to_string().contains("server_state"), "{e}");
        let e = serde_json::from_str::<SingleRequest<Box<RawValue>>>("{}").unwrap_err();
        assert!(e.to_string().contains("client_state"), "{e}");
    }

    #[test]
    fn batch_answers_omit_empty_errors() {
        let a = BatchAnswer::<u8> {
            server_states: BTreeMap::from([("a".into(), None)]),
            errors: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"server_states":{"a":null}}"#
        );
        let read: BatchAnswer<Box<RawValue>> =
            serde_json::from_str(r#"{"server_states":{},"errors":{"b":{"error":"x"}}}"#).unwrap();
        assert!(!read.errors["b"].retryable);
    }
}
