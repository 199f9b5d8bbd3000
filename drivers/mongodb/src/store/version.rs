//! A document's compare-and-swap version: its stored `hash` field exactly as written.

use hypertask_core::Version;
use mongodb::bson::{doc, Bson, Document};

use crate::document::HASH_FIELD;

/// The version of a document: its stored `hash` field as written, so a compare-and-swap can
/// match it exactly even when another client wrote it without a hash (or with another one).
pub(super) fn version_of(stored: Option<&Bson>) -> Version {
    match stored {
        Some(Bson::String(s)) => Version::new(s.as_str()),
        None => Version::new(ABSENT),
        Some(_) => Version::new(NOT_A_STRING),
    }
}

/// The filter matching documents whose version is `version`. Once hypertask writes a
/// document its `hash` is a string, so the two special versions match at most until then.
pub(super) fn cas_filter(version: &Version) -> Document {
    match version.as_str() {
        ABSENT => doc! { HASH_FIELD: { "$exists": false } },
        NOT_A_STRING => doc! { HASH_FIELD: { "$exists": true, "$not": { "$type": "string" } } },
        v => doc! { HASH_FIELD: v },
    }
}

/// The version of a document without a `hash` field.
const ABSENT: &str = "absent";
/// The version of a document whose `hash` field is not a string.
const NOT_A_STRING: &str = "not-a-string";
