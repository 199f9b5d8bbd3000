//! The sync protocol's JSON bodies and headers, defined once for the client and the server
//! (docs/http-protocol.md).
//!
//! The request and answer types are generic over how a task state is held: the client sends
//! `&Task` and reads answers as raw JSON (so it can measure each state before parsing it); the
//! server reads requests as raw JSON for the same reason and answers `Task`s.

use std::collections::BTreeMap;

use hypertask_core::{Bucket, BucketHashes, Depth};
use serde::{Deserialize, Deserializer, Serialize};

/// The protocol versions, repeated on `/hashes` answers (`1.0, 1.1, 1.2`).
pub(crate) const PROTOCOL_HEADER: &str = "hypertask-protocol";
/// `max_batch`, repeated on `/hashes` answers.
pub(crate) const MAX_BATCH_HEADER: &str = "hypertask-max-batch";
/// `max_body_bytes`, repeated on `/hashes` answers.
pub(crate) const MAX_BODY_HEADER: &str = "hypertask-max-body-bytes";
/// `long_poll`, repeated on `/hashes` answers (`true`) when the server holds long polls.
pub(crate) const LONG_POLL_HEADER: &str = "hypertask-long-poll";
/// `buckets`, repeated on `/hashes` and `/buckets` answers (`true`) when the server answers
/// `GET /buckets` and `GET /hashes?buckets=…` (protocol 1.2).
pub(crate) const BUCKETS_HEADER: &str = "hypertask-buckets";
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
pub(crate) const PROTOCOL_VERSIONS: [&str; 3] = ["1.0", "1.1", "1.2"];

/// [`PROTOCOL_VERSIONS`] as the `Hypertask-Protocol` header spells them.
#[cfg(feature = "server")]
pub(crate) const PROTOCOL_VERSIONS_HEADER: &str = "1.0, 1.1, 1.2";

/// The query parameter of `GET /hashes?buckets=<prefix>,<prefix>,…` (protocol 1.2).
pub(crate) const BUCKETS_PARAM: &str = "buckets";

/// Most buckets one `GET /hashes?buckets=…` names: the URL stays under 2 KB (the client
/// sends more in several requests; the server refuses more with `400`).
pub(crate) const MAX_QUERY_BUCKETS: usize = 256;

/// `GET /buckets` (protocol 1.2): `{"depth": d, "buckets": {"<prefix>": "<hash>", ...}}`, the
/// hash of every non-empty bucket of `d` hex digits (docs/task-format.md#buckets).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BucketsDoc {
    /// How many hex digits name a bucket, 1 to 4.
    pub(crate) depth: Depth,
    /// Each non-empty bucket's hash.
    pub(crate) buckets: BucketHashes,
}

/// The value of the `buckets` query parameter: prefixes joined by commas.
pub(crate) fn bucket_list<'a>(buckets: impl IntoIterator<Item = &'a Bucket>) -> String {
    let names: Vec<&str> = buckets.into_iter().map(Bucket::as_str).collect();
    names.join(",")
}

/// Reads the value of the `buckets` query parameter: 1 to [`MAX_QUERY_BUCKETS`] prefixes of
/// one depth, separated by commas (sent as is or percent-encoded as `%2C`).
#[cfg(any(feature = "server", test))]
pub(crate) fn parse_bucket_list(value: &str) -> Result<std::collections::BTreeSet<Bucket>, String> {
    let value = value.replace("%2C", ",").replace("%2c", ",");
    let mut out = std::collections::BTreeSet::new();
    for name in value.split(',') {
        let bucket = Bucket::parse(name).ok_or_else(|| {
            format!("`buckets`: {name:?} is not a bucket (1 to 4 lowercase hex digits)")
        })?;
        if let Some(first) = out
            .first()
            .filter(|b: &&Bucket| b.depth() != bucket.depth())
        {
            return Err(format!(
                "`buckets`: {first} and {bucket} are of different depths; ask one depth at a time"
            ));
        }
        out.insert(bucket);
        if out.len() > MAX_QUERY_BUCKETS {
            return Err(format!(
                "`buckets`: more than {MAX_QUERY_BUCKETS} buckets in one request"
            ));
        }
    }
    Ok(out)
}

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
    /// Whether `GET /buckets` and `GET /hashes?buckets=…` are answered (absent: no).
    #[serde(default)]
    pub(crate) buckets: bool,
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
    fn bucket_lists_are_one_depth_and_bounded() {
        let b = |s: &str| Bucket::parse(s).unwrap();
        let list = bucket_list(&[b("0a"), b("ff")]);
        assert_eq!(list, "0a,ff");
        let want = std::collections::BTreeSet::from([b("0a"), b("ff")]);
        assert_eq!(parse_bucket_list(&list).unwrap(), want);
        assert_eq!(parse_bucket_list("0a%2Cff").unwrap().len(), 2);
        for bad in ["", "0a,", "0a,f", "0A", "12345", "0a,,ff"] {
            assert!(parse_bucket_list(bad).is_err(), "{bad:?}");
        }
        let many: Vec<Bucket> = (0..=MAX_QUERY_BUCKETS)
            .map(|i| b(&format!("{i:03x}")))
            .collect();
        assert!(parse_bucket_list(&bucket_list(&many[..MAX_QUERY_BUCKETS])).is_ok());
        assert!(parse_bucket_list(&bucket_list(&many)).is_err());
        let doc: BucketsDoc = serde_json::from_str(r#"{"depth": 1, "buckets": {}}"#).unwrap();
        assert_eq!(doc.depth, Depth::MIN);
        assert!(serde_json::from_str::<BucketsDoc>(r#"{"depth": 9, "buckets": {}}"#).is_err());
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
