//! Task ids and the error every rejected task document carries.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Alphabet of generated ids: no look-alike characters.
pub(crate) const ID_ALPHABET: &[u8] = b"23456789abcdefghkmnpqrstwxyz";

/// Why a task document was rejected; names the task (when it has a usable id) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TaskError {
    /// The task's id as given, when there was one.
    pub id: Option<String>,
    /// The offending field, when one field is to blame.
    pub field: Option<String>,
    /// What is wrong, in a few words.
    pub message: String,
}

impl TaskError {
    pub(crate) fn new(id: Option<&str>, field: Option<&str>, message: impl Into<String>) -> Self {
        TaskError {
            id: id.map(str::to_owned),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "task '{id}'")?,
            None => write!(f, "task")?,
        }
        if let Some(field) = &self.field {
            write!(f, ", field '{field}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A validated task id: `^[A-Za-z0-9_-]{1,64}$`, so it is always safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(String);

impl TaskId {
    /// Validates `s` as a task id.
    pub fn new(s: impl Into<String>) -> Result<TaskId, TaskError> {
        let s = s.into();
        if Self::is_valid(&s) {
            Ok(TaskId(s))
        } else {
            Err(TaskError::new(None, Some("id"), invalid_id_message(&s)))
        }
    }

    /// Whether `s` is a valid task id.
    pub fn is_valid(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    /// A fresh random id: 16 characters from an alphabet without look-alikes.
    pub fn generate() -> TaskId {
        use rand::Rng;
        let mut rng = rand::rng();
        TaskId(
            (0..16)
                .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn invalid_id_message(s: &str) -> String {
    format!("invalid id {s:?}: expected 1 to 64 of A-Z a-z 0-9 _ -")
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TaskId {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskId::new(s)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = TaskId::generate();
        let b = TaskId::generate();
        assert_eq!(a.as_str().len(), 16);
        assert_ne!(a, b);
        assert!(a.as_str().bytes().all(|c| ID_ALPHABET.contains(&c)));
    }
}
