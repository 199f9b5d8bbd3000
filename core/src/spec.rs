//! One configured driver instance: a `[drivers.NAME]` table and what core reads from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::checked::DEFAULT_TIMEOUT;
use crate::error::{DriverError, ErrorKind};
use crate::files::Durability;
use crate::task::DEFAULT_MAX_TASK_BYTES;

/// Keys of a driver table that core reads itself; the driver's own config never sees them.
pub const CORE_KEYS: &[&str] = &["type", "timeout", "max_task_bytes", "poll_interval"];

/// How often a daemon checks an upstream that cannot tell it about changes, by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// One `[drivers.NAME]` table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverSpec {
    /// The instance name (`NAME`).
    pub name: String,
    /// The kind (`type = "…"`).
    pub kind: String,
    /// The table's other keys, as the driver's config.
    pub options: Value,
    /// The local data directory, for drivers that keep local state (indexes, clones).
    pub data_dir: PathBuf,
    /// The directory of the config file: relative paths in `options` are relative to it.
    pub config_dir: Option<PathBuf>,
    /// How long one operation may take (`timeout`, seconds).
    pub timeout: Duration,
    /// The largest task accepted, in bytes of JSON (`max_task_bytes`).
    pub max_task_bytes: usize,
    /// How often `hypertask daemon` syncs with this upstream when nothing told it of a change
    /// (`poll_interval`, seconds).
    pub poll_interval: Duration,
    /// How drivers that write local files (a shared folder, a git clone) flush them; the
    /// front end's choice (`HYPERTASK_DURABILITY` in the CLI), not a key of the table.
    pub durability: Durability,
    /// One user's part of a store shared by several (`[server.users.NAME]`): the driver keeps
    /// it apart from every other namespace and from the store's own tasks (a subdirectory, a
    /// database file, a collection). Only kinds registered with
    /// [`crate::Registry::register_namespaced`] accept one. Not a key of the table.
    pub namespace: Option<String>,
}

impl DriverSpec {
    /// A spec with the default timeout and task size limit and no config directory.
    pub fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        options: Value,
        data_dir: impl Into<PathBuf>,
    ) -> DriverSpec {
        DriverSpec {
            name: name.into(),
            kind: kind.into(),
            options,
            data_dir: data_dir.into(),
            config_dir: None,
            timeout: DEFAULT_TIMEOUT,
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            poll_interval: DEFAULT_POLL_INTERVAL,
            durability: Durability::default(),
            namespace: None,
        }
    }

    /// Reads a whole driver table: `type`, `timeout`, `max_task_bytes` and `poll_interval` are
    /// core's, the rest is the driver's config.
    pub fn from_table(
        name: impl Into<String>,
        table: Value,
        data_dir: impl Into<PathBuf>,
        config_dir: Option<PathBuf>,
    ) -> Result<DriverSpec, DriverError> {
        let name = name.into();
        let err = |msg: String| DriverError::new(&name, ErrorKind::Config, msg);
        let Value::Object(mut table) = table else {
            return Err(err(format!("[drivers.{name}] must be a table")));
        };
        let kind = match table.remove("type") {
            Some(Value::String(k)) if !k.is_empty() => k,
            Some(_) => {
                return Err(err(format!(
                    "[drivers.{name}] type must be a non-empty string"
                )))
            }
            None => {
                return Err(err(format!(
                    "[drivers.{name}] has no type (e.g. type = \"fs\")"
                )))
            }
        };
        let mut spec = DriverSpec::new(name.clone(), kind, Value::Null, data_dir);
        if let Some(v) = table.remove("timeout") {
            let secs = number(&v).filter(|s| *s > 0.0 && *s <= 86_400.0).ok_or_else(|| {
                err(format!(
                    "[drivers.{name}] timeout must be a number of seconds between 0 and 86400, not {v}"
                ))
            })?;
            spec.timeout = Duration::from_secs_f64(secs);
        }
        if let Some(v) = table.remove("poll_interval") {
            let secs = number(&v).filter(|s| *s >= 1.0 && *s <= 86_400.0).ok_or_else(|| {
                err(format!(
                    "[drivers.{name}] poll_interval must be a number of seconds between 1 and 86400, not {v}"
                ))
            })?;
            spec.poll_interval = Duration::from_secs_f64(secs);
        }
        if let Some(v) = table.remove("max_task_bytes") {
            spec.max_task_bytes = number(&v)
                .filter(|n| *n >= 1024.0 && n.fract() == 0.0 && *n <= (1u64 << 30) as f64)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    err(format!(
                        "[drivers.{name}] max_task_bytes must be a whole number from 1024 to 1073741824, not {v}"
                    ))
                })?;
        }
        spec.options = Value::Object(table);
        spec.config_dir = config_dir;
        Ok(spec)
    }

    /// Sets the directory relative paths are resolved against.
    pub fn with_config_dir(mut self, dir: impl Into<PathBuf>) -> DriverSpec {
        self.config_dir = Some(dir.into());
        self
    }

    /// Sets how drivers that write local files flush them.
    pub fn with_durability(mut self, durability: Durability) -> DriverSpec {
        self.durability = durability;
        self
    }

    /// Sets the namespace, after checking it is a valid one ([`valid_namespace`]).
    pub fn with_namespace(
        mut self,
        namespace: impl Into<String>,
    ) -> Result<DriverSpec, DriverError> {
        let namespace = namespace.into();
        valid_namespace(&namespace).map_err(|why| {
            DriverError::new(
                &self.name,
                ErrorKind::Config,
                format!("'{namespace}' cannot name a namespace: {why}"),
            )
        })?;
        self.namespace = Some(namespace);
        Ok(self)
    }

    /// Sets the per-operation timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> DriverSpec {
        self.timeout = timeout;
        self
    }

    /// Deserialises the options into a driver's config struct; errors name the instance.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, DriverError> {
        serde_json::from_value(self.options.clone()).map_err(|e| {
            DriverError::new(
                &self.name,
                ErrorKind::Config,
                format!(
                    "invalid [drivers.{}] ({} driver): {e}",
                    self.name, self.kind
                ),
            )
        })
    }

    /// A path from the config: `~/` expanded, relative paths taken from the config file's
    /// directory (or the current directory when there is no file).
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = expand_path(p);
        match (&self.config_dir, p.is_relative()) {
            (Some(dir), true) => dir.join(p),
            _ => p,
        }
    }
}

/// A namespace is 1 to 32 characters of `a-z 0-9 _ -`, starting with a letter or digit, so it
/// is a safe file name, MongoDB collection suffix and table name everywhere, and never
/// differs from another only by case (case-insensitive file systems).
pub fn valid_namespace(namespace: &str) -> Result<(), &'static str> {
    if namespace.is_empty() || namespace.len() > 32 {
        return Err("it must be 1 to 32 characters long");
    }
    if !namespace
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("use only lowercase letters, digits, '_' and '-'");
    }
    if !namespace.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("it must start with a letter or a digit");
    }
    Ok(())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // Environment overrides arrive as strings.
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Expands a leading `~/` to the home directory.
pub fn expand_path(p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref();
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join(rest);
        }
    }
    p.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_are_safe_names() {
        for ok in ["alice", "bob-2", "x", "a_b", "0day"] {
            assert_eq!(valid_namespace(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "../x",
            "a/b",
            ".",
            "-x",
            "_x",
            "a b",
            &"a".repeat(33),
        ] {
            assert!(valid_namespace(bad).is_err(), "{bad:?}");
        }
        let spec = DriverSpec::new("s", "fs", json!({}), "/d");
        assert!(spec.clone().with_namespace("../up").is_err());
        assert_eq!(
            spec.with_namespace("alice").unwrap().namespace.as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn core_keys_are_taken_out_of_the_drivers_options() {
        let spec = DriverSpec::from_table(
            "box",
            json!({"type": "fs", "path": "tasks", "timeout": 5, "max_task_bytes": 4096, "poll_interval": 30}),
            "/data",
            Some("/etc/ht".into()),
        )
        .unwrap();
        assert_eq!(spec.kind, "fs");
        assert_eq!(spec.options, json!({"path": "tasks"}));
        assert_eq!(spec.timeout, Duration::from_secs(5));
        assert_eq!(spec.max_task_bytes, 4096);
        assert_eq!(spec.poll_interval, Duration::from_secs(30));
        assert_eq!(spec.path("tasks"), PathBuf::from("/etc/ht/tasks"));
        assert_eq!(spec.path("/abs"), PathBuf::from("/abs"));
    }

    #[test]
    fn bad_core_keys_name_the_driver_and_the_key() {
        for table in [
            json!({"path": "x"}),
            json!({"type": "fs", "timeout": -1}),
            json!({"type": "fs", "timeout": "soon"}),
            json!({"type": "fs", "max_task_bytes": 10}),
            json!({"type": "fs", "poll_interval": 0}),
        ] {
            let e = DriverSpec::from_table("box", table, "/d", None).unwrap_err();
            assert!(e.to_string().contains("[drivers.box]"), "{e}");
        }
    }
}
