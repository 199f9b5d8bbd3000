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
fn cas_filter(version: &Version) -> Document {
    match version.as_str() {
        ABSENT => doc! { HASH_FIELD: { "$exists": false } },
        NOT_A_STRING => doc! { HASH_FIELD: { "$exists": true, "$not": { "$type": "string" } } },
        v => doc! { HASH_FIELD: v },
    }
}

/// The filter matching documents whose version is `version` or whose hash is already `new`
/// (an equal document, which a write leaves as it is). A plain `$in` on the hash in the common
/// case: some servers stop using the `_id` index for a filter with an `$or` (the SecantusDB
/// test server scanned the collection, 68 ms a write at 10,000 documents, against 2 ms).
pub(super) fn cas_or_equal_filter(version: &Version, new: &str) -> Document {
    match version.as_str() {
        ABSENT | NOT_A_STRING => doc! { "$or": [cas_filter(version), { HASH_FIELD: new }] },
        v => doc! { HASH_FIELD: { "$in": [v, new] } },
    }
}

/// The version of a document without a `hash` field.
const ABSENT: &str = "absent";
/// The version of a document whose `hash` field is not a string.
const NOT_A_STRING: &str = "not-a-string";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_version_is_matched_without_an_or() {
        let f = cas_or_equal_filter(&Version::new("h1"), "h2");
        assert_eq!(f, doc! { HASH_FIELD: { "$in": ["h1", "h2"] } });
        let f = cas_or_equal_filter(&version_of(None), "h2");
        assert_eq!(
            f,
            doc! { "$or": [{ HASH_FIELD: { "$exists": false } }, { HASH_FIELD: "h2" }] }
        );
    }
}
