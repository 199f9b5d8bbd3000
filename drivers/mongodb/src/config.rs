//! The `[drivers.NAME]` table of a mongodb driver.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How long finding a reachable server may take before a sync names the driver as
/// unavailable, unless the config or the URI says otherwise.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT_MS: u64 = 3000;

/// How long opening one connection may take, unless the config or the URI says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3000;

/// Configuration of one mongodb driver instance:
///
/// ```toml
/// [drivers.db]
/// type = "mongodb"
/// uri = "mongodb://127.0.0.1:27017"
/// database = "hypertask"        # default "hypertask"
/// collection = "tasks"          # default "tasks"
/// server_selection_timeout_ms = 3000
/// connect_timeout_ms = 3000
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoConfig {
    /// A MongoDB connection string (`mongodb://…` or `mongodb+srv://…`); its options
    /// (`replicaSet`, `tls`, `journal`, credentials, …) apply.
    pub uri: String,
    /// The database holding the collection.
    #[serde(default = "default_database")]
    pub database: String,
    /// The collection with one document per task.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Milliseconds to wait for a usable server before failing. Overrides the URI's
    /// `serverSelectionTimeoutMS`; default 3000.
    #[serde(default)]
    pub server_selection_timeout_ms: Option<u64>,
    /// Milliseconds to wait for one connection to open. Overrides the URI's
    /// `connectTimeoutMS`; default 3000.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
}

fn default_database() -> String {
    "hypertask".into()
}

fn default_collection() -> String {
    "tasks".into()
}

impl MongoConfig {
    /// A config for `uri`, `database` and `collection`, with default timeouts.
    pub fn new(
        uri: impl Into<String>,
        database: impl Into<String>,
        collection: impl Into<String>,
    ) -> Self {
        MongoConfig {
            uri: uri.into(),
            database: database.into(),
            collection: collection.into(),
            server_selection_timeout_ms: None,
            connect_timeout_ms: None,
        }
    }

    /// The server selection timeout set in this config, if any.
    pub(crate) fn server_selection_timeout(&self) -> Option<Duration> {
        self.server_selection_timeout_ms.map(Duration::from_millis)
    }

    /// The connect timeout set in this config, if any.
    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout_ms.map(Duration::from_millis)
    }

    /// The URI with any password and option value replaced by `***`, safe to print.
    pub fn redacted_uri(&self) -> String {
        hypertask_core::redact_url(&self.uri)
    }
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("uri", &self.redacted_uri())
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field(
                "server_selection_timeout_ms",
                &self.server_selection_timeout_ms,
            )
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let c: MongoConfig =
            serde_json::from_value(serde_json::json!({"uri": "mongodb://h:1"})).unwrap();
        assert_eq!(c, MongoConfig::new("mongodb://h:1", "hypertask", "tasks"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_value::<MongoConfig>(
            serde_json::json!({"uri": "mongodb://h:1", "colection": "x"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("colection"), "{e}");
    }

    #[test]
    fn uri_is_required() {
        assert!(serde_json::from_value::<MongoConfig>(serde_json::json!({})).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = MongoConfig::new(
            "mongodb://alice:s3cr3t@db.example:27017/?tls=true",
            "d",
            "c",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("mongodb://alice:***@db.example:27017/?tls=***"),
            "{shown}"
        );
    }
}
