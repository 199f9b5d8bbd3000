//! Reading a `GET /hashes` body (`{"<id>": "<hash>", ...}`) entry by entry, refusing a listing
//! with more entries than the client accepts before it is held in memory, into an inventory.

use std::fmt;

use hypertask_core::{ContentHash, DriverError, ErrorKind, Inventory, Problem, TaskId};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::Origin;

/// The entries of a `/hashes` body, at most `max` of them, as sent (checked by the caller).
struct Entries {
    /// `(id, value)` in the order sent.
    entries: Vec<(String, Box<RawValue>)>,
}

/// Why a body could not be read.
enum ReadError {
    /// More than the accepted number of entries.
    TooMany(usize),
    /// Not a JSON object.
    Malformed(serde_json::Error),
}

/// Reads `body` as a JSON object of at most `max` entries.
fn read_entries(body: &[u8], max: usize) -> Result<Entries, ReadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let entries = Capped { max }.deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(TOO_MANY) {
            ReadError::TooMany(max)
        } else {
            ReadError::Malformed(e)
        }
    })?;
    de.end().map_err(ReadError::Malformed)?;
    Ok(Entries { entries })
}

/// Reads a `/hashes` body (the whole map, or some buckets' entries) of at most `max` entries
/// into an inventory; an invalid id or hash is a problem of that entry, not of the listing.
pub(crate) fn read_inventory(
    o: &Origin,
    what: &str,
    body: &[u8],
    max: usize,
) -> Result<Inventory, DriverError> {
    let entries = read_entries(body, max).map_err(|e| match e {
        ReadError::TooMany(max) => o.error(
            ErrorKind::Protocol,
            format!(
                "the server at {} lists more than {max} tasks, the most this driver accepts \
                 (`max_tasks`); the listing was refused",
                o.url
            ),
        ),
        ReadError::Malformed(e) => o.protocol(
            what,
            format_args!("a body that is not a JSON object of id → hash: {e}"),
        ),
    })?;
    let mut inventory = Inventory::default();
    for (key, value) in entries.entries {
        let Ok(id) = TaskId::new(key.as_str()) else {
            inventory.problems.push(Problem {
                id: None,
                error: o.error(
                    ErrorKind::InvalidData,
                    format!("the server at {} lists the invalid task id {key:?}", o.url),
                ),
            });
            continue;
        };
        let hash = serde_json::from_str::<&str>(value.get())
            .ok()
            .and_then(ContentHash::parse);
        match hash {
            Some(hash) => {
                inventory.hashes.insert(id, hash);
            }
            None => inventory.problems.push(Problem {
                error: o.error(
                    ErrorKind::InvalidData,
                    format!(
                        "the server at {} lists task '{id}' with {}, not a content hash",
                        o.url,
                        value.get()
                    ),
                ),
                id: Some(id),
            }),
        }
    }
    Ok(inventory)
}

const TOO_MANY: &str = "too many entries";

struct Capped {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Capped {
    type Value = Vec<(String, Box<RawValue>)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Capped {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of task id → content hash")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(self.max).min(4096));
        while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
            if out.len() == self.max {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_counted_while_reading() {
        let got = read_entries(br#"{"a": "h1", "b": 2}"#, 2).ok().unwrap();
        assert_eq!(got.entries.len(), 2);
        assert_eq!(got.entries[1].1.get(), "2");
        assert!(matches!(
            read_entries(br#"{"a": "h1", "b": "h2", "c": "h3"}"#, 2),
            Err(ReadError::TooMany(2))
        ));
        assert!(matches!(
            read_entries(b"[1]", 2),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            read_entries(b"{} x", 2),
            Err(ReadError::Malformed(_))
        ));
    }
}
