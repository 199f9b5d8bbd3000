//! The attributes a `key:value` word may name, and how each value is read and stored.
//!
//! Built in: `description`, `project` (dotted hierarchy), `priority` (`H`/`M`/`L`), the dates
//! `due`, `wait`, `scheduled`, `until`, `recur` (a period) and `depends` (task references).
//! User-defined attributes come from the configuration (`[uda.NAME] type = "string" | "number" |
//! "date" | "duration"`, optional allowed `values`). A key that is none of these is an error
//! naming the key and the known ones: never description text, never a silent change.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::when::{parse_duration, parse_recur, parse_when};
use crate::task::format_timestamp;

/// Built-in attributes that hold a timestamp.
pub const DATE_ATTRIBUTES: &[&str] = &["due", "wait", "scheduled", "until"];

/// Every built-in attribute a `key:value` word may set.
pub const BUILTIN_ATTRIBUTES: &[&str] = &[
    "description",
    "project",
    "priority",
    "due",
    "wait",
    "scheduled",
    "until",
    "recur",
    "depends",
];

/// Field names a user-defined attribute may not take: bookkeeping, fields with their own
/// meaning, and the task-manager fields.
const RESERVED: &[&str] = &[
    "id",
    "uuid",
    "created_at",
    "updated_at",
    "field_updated_at",
    "tags",
    "done",
    "deleted",
    "snooze",
    "start",
    "blocked_by",
    "status",
    "parent",
    "entry",
    "end",
    "modified",
    "urgency",
];

/// The type of a user-defined attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdaType {
    /// Text, stored as a string.
    String,
    /// A number, stored as a JSON number.
    Number,
    /// A date, stored as a canonical timestamp.
    Date,
    /// A duration (`2h`, `PT1H`), stored as a string.
    Duration,
}

/// One `[uda.NAME]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uda {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: UdaType,
    /// `values`: the only values allowed (strings only), when given.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// `label`: a column heading for reports.
    #[serde(default)]
    pub label: Option<String>,
}

/// A mistake in a `key:value` word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// The key is not an attribute.
    #[error("'{key}' is not an attribute; known attributes are {}; put words after a lone -- to use them as description text", known.join(", "))]
    Unknown {
        /// The key as typed.
        key: String,
        /// Every attribute the key could have been.
        known: Vec<String>,
    },
    /// The value cannot be read for this attribute.
    #[error("{key}: {message}")]
    Value {
        /// The attribute.
        key: String,
        /// What is wrong, and what is accepted.
        message: String,
    },
}

/// What a `key:value` word does to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrChange {
    /// Set the field to a value.
    Set(String, Value),
    /// Remove the field (`key:`).
    Clear(String),
    /// `depends:A,B,-C`: references to add and to remove (working-set numbers or id prefixes,
    /// resolved by the caller); `depends:` alone clears every dependency.
    Depends {
        /// References to depend on.
        add: Vec<String>,
        /// References to stop depending on.
        remove: Vec<String>,
        /// Whether every dependency is removed first.
        clear: bool,
    },
}

/// The attributes known to this configuration: the built-ins plus the user-defined ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    udas: BTreeMap<String, Uda>,
}

impl Schema {
    /// A schema with these user-defined attributes; a name that is built in, reserved, or not
    /// a plain lowercase name (`[a-z][a-z0-9_]*`, not `annotation_…`/`dep_…`) is an error.
    pub fn new(udas: BTreeMap<String, Uda>) -> Result<Schema, String> {
        for (name, uda) in &udas {
            let plain = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !plain
                || name.starts_with(super::ANNOTATION_PREFIX)
                || name.starts_with(super::DEP_PREFIX)
            {
                return Err(format!(
                    "[uda.{name}]: a user-defined attribute name is lowercase letters, digits and _, starting with a letter"
                ));
            }
            if BUILTIN_ATTRIBUTES.contains(&name.as_str()) || RESERVED.contains(&name.as_str()) {
                return Err(format!(
                    "[uda.{name}]: '{name}' is a built-in field; choose another name"
                ));
            }
            if uda.values.is_some() && uda.kind != UdaType::String {
                return Err(format!(
                    "[uda.{name}]: `values` is only allowed with type = \"string\""
                ));
            }
        }
        Ok(Schema { udas })
    }

    /// The user-defined attributes, by name.
    pub fn udas(&self) -> &BTreeMap<String, Uda> {
        &self.udas
    }

    /// Every attribute name a `key:value` word may use, built-ins first.
    pub fn known(&self) -> Vec<String> {
        BUILTIN_ATTRIBUTES
            .iter()
            .map(|s| s.to_string())
            .chain(self.udas.keys().cloned())
            .collect()
    }

    /// Whether `key` names an attribute.
    pub fn is_attribute(&self, key: &str) -> bool {
        BUILTIN_ATTRIBUTES.contains(&key) || self.udas.contains_key(key)
    }

    /// The error for a key that is not an attribute.
    pub fn unknown(&self, key: &str) -> AttrError {
        AttrError::Unknown {
            key: key.to_owned(),
            known: self.known(),
        }
    }

    /// Whether `key` holds a date (built-in or a `date` attribute).
    pub fn is_date(&self, key: &str) -> bool {
        DATE_ATTRIBUTES.contains(&key)
            || matches!(
                key,
                "start" | "done" | "deleted" | "created_at" | "updated_at"
            )
            || self.udas.get(key).is_some_and(|u| u.kind == UdaType::Date)
    }

    /// Whether `key` holds a number (a `number` attribute).
    pub fn is_number(&self, key: &str) -> bool {
        self.udas
            .get(key)
            .is_some_and(|u| u.kind == UdaType::Number)
    }

    /// Reads `key:value` as a modification; dates are read relative to `now`, in its zone.
    pub fn modification<Tz: TimeZone>(
        &self,
        key: &str,
        value: &str,
        now: &DateTime<Tz>,
    ) -> Result<AttrChange, AttrError> {
        if !self.is_attribute(key) {
            return Err(self.unknown(key));
        }
        let bad = |message: String| AttrError::Value {
            key: key.to_owned(),
            message,
        };
        if key == "depends" {
            let mut add = Vec::new();
            let mut remove = Vec::new();
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.strip_prefix('-') {
                    Some(r) if !r.is_empty() => remove.push(r.to_owned()),
                    _ => add.push(part.to_owned()),
                }
            }
            return Ok(AttrChange::Depends {
                clear: value.trim().is_empty(),
                add,
                remove,
            });
        }
        if value.is_empty() {
            if key == "description" {
                return Err(bad("a task needs a description".into()));
            }
            return Ok(AttrChange::Clear(key.to_owned()));
        }
        let stored = match key {
            "description" => Value::String(value.to_owned()),
            "project" => {
                if value.split('.').any(str::is_empty) || value.chars().any(char::is_whitespace) {
                    return Err(bad(format!(
                        "'{value}' is not a project name: use words joined by dots, such as home.garden"
                    )));
                }
                Value::String(value.to_owned())
            }
            "priority" => match super::Priority::parse(value) {
                Some(p) => Value::String(p.as_str().to_owned()),
                None => return Err(bad(format!("'{value}' is not a priority: use H, M or L"))),
            },
            "recur" => Value::String(parse_recur(value).map_err(bad)?),
            k if self.is_date(k) => Value::String(date(value, now).map_err(bad)?),
            k => match self.udas.get(k) {
                Some(uda) => self.uda_value(k, uda, value, now)?,
                None => return Err(self.unknown(k)),
            },
        };
        Ok(AttrChange::Set(key.to_owned(), stored))
    }

    fn uda_value<Tz: TimeZone>(
        &self,
        key: &str,
        uda: &Uda,
        value: &str,
        now: &DateTime<Tz>,
    ) -> Result<Value, AttrError> {
        let bad = |message: String| AttrError::Value {
            key: key.to_owned(),
            message,
        };
        Ok(match uda.kind {
            UdaType::String => {
                if let Some(allowed) = &uda.values {
                    if !allowed.iter().any(|a| a == value) {
                        return Err(bad(format!(
                            "'{value}' is not allowed; use one of {}",
                            allowed.join(", ")
                        )));
                    }
                }
                Value::String(value.to_owned())
            }
            UdaType::Number => {
                let n: f64 = value
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| bad(format!("'{value}' is not a number")))?;
                serde_json::Number::from_f64(n)
                    .map(|n| match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                        _ => Value::Number(n),
                    })
                    .ok_or_else(|| bad(format!("'{value}' is not a number")))?
            }
            UdaType::Date => Value::String(date(value, now).map_err(bad)?),
            UdaType::Duration => Value::String(parse_duration(value).map_err(bad)?),
        })
    }
}

/// A date people type, stored canonically.
pub fn date<Tz: TimeZone>(value: &str, now: &DateTime<Tz>) -> Result<String, String> {
    let t: DateTime<Utc> = parse_when(value, now)?;
    format_timestamp(t).ok_or_else(|| format!("'{value}' is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let mut udas = BTreeMap::new();
        udas.insert(
            "estimate".to_owned(),
            Uda {
                kind: UdaType::Number,
                values: None,
                label: None,
            },
        );
        udas.insert(
            "size".to_owned(),
            Uda {
                kind: UdaType::String,
                values: Some(vec!["S".into(), "L".into()]),
                label: None,
            },
        );
        Schema::new(udas).unwrap()
    }

    #[test]
    fn values_are_read_per_attribute() {
        let s = schema();
        let now = Utc::now();
        let set = |k: &str, v: &str| s.modification(k, v, &now);
        assert_eq!(
            set("project", "home.garden").unwrap(),
            AttrChange::Set("project".into(), "home.garden".into())
        );
        assert_eq!(
            set("priority", "h").unwrap(),
            AttrChange::Set("priority".into(), "H".into())
        );
        assert_eq!(
            set("estimate", "3").unwrap(),
            AttrChange::Set("estimate".into(), 3.into())
        );
        assert_eq!(set("due", "").unwrap(), AttrChange::Clear("due".into()));
        assert!(matches!(set("size", "M"), Err(AttrError::Value { .. })));
        assert!(matches!(
            set("priority", "urgent"),
            Err(AttrError::Value { .. })
        ));
        assert!(matches!(
            set("project", "a..b"),
            Err(AttrError::Value { .. })
        ));
        let e = set("foo", "bar").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("'foo'") && text.contains("project") && text.contains("estimate"));
        assert_eq!(
            set("depends", "1,abcd,-2").unwrap(),
            AttrChange::Depends {
                add: vec!["1".into(), "abcd".into()],
                remove: vec!["2".into()],
                clear: false
            }
        );
    }

    #[test]
    fn uda_names_may_not_shadow_fields() {
        for name in ["due", "tags", "Bad", "annotation_1", "dep_x"] {
            let mut udas = BTreeMap::new();
            udas.insert(
                name.to_owned(),
                Uda {
                    kind: UdaType::String,
                    values: None,
                    label: None,
                },
            );
            assert!(Schema::new(udas).is_err(), "{name}");
        }
    }
}
