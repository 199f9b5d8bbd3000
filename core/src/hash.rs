//! Content hashes and root hashes (docs/task-format.md).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::id::TaskId;

/// A lowercase hex SHA-256 digest: a task's content hash or a map's root hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(String);

/// An upstream's (or the cache's) map of task id → content hash, sorted by id.
pub type Hashes = BTreeMap<TaskId, ContentHash>;

impl ContentHash {
    /// SHA-256 of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> ContentHash {
        ContentHash(hex::encode(Sha256::digest(bytes)))
    }

    /// Parses 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<ContentHash> {
        (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| ContentHash(s.to_owned()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ContentHash::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a content hash: {s:?}")))
    }
}

/// Root hash of an id → hash map: SHA-256 of the map's RFC 8785 form (`{}` when empty).
///
/// Ids are `[A-Za-z0-9_-]` and hashes lowercase hex, so the canonical form needs no escaping and
/// the map's byte order is RFC 8785's UTF-16 order: the bytes are streamed straight into the
/// digest instead of building a JSON value (a no-op sync hashes 10k entries on both sides).
pub fn root_hash(hashes: &Hashes) -> ContentHash {
    root_of(hashes.iter().map(|(id, h)| (id.as_str(), h)))
}

/// [`root_hash`] of entries given in id order (ids as strings).
pub(crate) fn root_of<'a>(
    entries: impl Iterator<Item = (&'a str, &'a ContentHash)>,
) -> ContentHash {
    let mut digest = Sha256::new();
    digest.update(b"{");
    for (i, (id, hash)) in entries.enumerate() {
        if i > 0 {
            digest.update(b",");
        }
        digest.update(b"\"");
        digest.update(id.as_bytes());
        digest.update(b"\":\"");
        digest.update(hash.as_str().as_bytes());
        digest.update(b"\"");
    }
    digest.update(b"}");
    ContentHash(hex::encode(digest.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::canonical_json;

    #[test]
    fn streamed_root_hash_equals_the_canonical_json_hash() {
        let mut hashes = Hashes::new();
        assert_eq!(
            root_hash(&hashes),
            ContentHash::of_bytes(&canonical_json(&hashes))
        );
        for id in ["b", "A", "a_-9", "Z0", "zz", "-x"] {
            hashes.insert(
                TaskId::new(id).unwrap(),
                ContentHash::of_bytes(id.as_bytes()),
            );
        }
        assert_eq!(
            root_hash(&hashes),
            ContentHash::of_bytes(&canonical_json(&hashes))
        );
    }
}
