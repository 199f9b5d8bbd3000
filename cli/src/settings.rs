//! Configuration (docs/configuration.md): a TOML file loaded with the `config` crate, environment
//! overrides, and a working default when there is no file at all.
//!
//! - The file is `--config PATH`, else `$HYPERTASK_CONFIG`, else `<platform config dir>/
//!   hypertask/config.toml`. A `--config` file that does not exist is an error; a missing
//!   `$HYPERTASK_CONFIG` or platform file means "no file": the default.
//! - `HYPERTASK_DRIVERS__<NAME>__<KEY>`, `HYPERTASK_SERVER__<KEY>`, `HYPERTASK_DATA_DIR` and
//!   `HYPERTASK_MAX_DELETE_PERCENT` override the file. Environment names are upper case, so
//!   `<NAME>` matches a configured driver whatever its case (a new one is lower case) and keys
//!   are lower-cased. A value takes the type the file gives that key (`true`/`false` otherwise
//!   become booleans, everything else stays a string).
//! - `--data-dir` wins over both.
//! - A relative `data_dir` in the file is relative to the file's directory; from the
//!   environment or `--data-dir`, to the current one. Driver tables are handed to their drivers
//!   as written, with the file's directory ([`Settings::config_dir`]): each driver knows which
//!   of its keys are paths and takes relative ones from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use config::{Config, File, FileFormat};
use hypertask_core::files::Durability;
use hypertask_core::manage::attrs::{Schema, Uda};
use hypertask_core::{CacheError, Replica, Secret};
use serde::Deserialize;
use serde_json::Value;

/// The settings a command runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file that was loaded, if any.
    pub file: Option<PathBuf>,
    /// The local cache directory.
    pub data_dir: PathBuf,
    /// The sync's mass-deletion guard, in percent of the live tasks.
    pub max_delete_percent: u32,
    /// The `[drivers.NAME]` tables, sorted by name.
    pub drivers: Vec<DriverEntry>,
    /// The directory relative paths in driver tables are taken from: the config file's, else
    /// the current one.
    pub config_dir: PathBuf,
    /// The `[server]` table, for `hypertask serve`.
    pub server: Option<ServerSettings>,
    /// The attributes `key:value` words may set: the built-ins and the `[uda.NAME]` tables.
    pub schema: Schema,
    /// How the cache and file-writing drivers flush (`HYPERTASK_DURABILITY`: `batch`, the
    /// default, `per-file` or `none`).
    pub durability: Durability,
}

impl Settings {
    /// Opens the local cache with these settings.
    pub fn replica(&self) -> Result<Replica, CacheError> {
        Ok(Replica::open(&self.data_dir)?.with_durability(self.durability))
    }
}

/// One `[drivers.NAME]` table.
#[derive(Debug, Clone)]
pub struct DriverEntry {
    /// `NAME`.
    pub name: String,
    /// `type`.
    pub kind: String,
    /// The other keys, as written.
    pub options: Value,
}

/// The `[server]` table (read now so configs holding it load; `hypertask serve` uses it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on, `127.0.0.1:7878`.
    pub listen: Option<String>,
    /// The token clients must send.
    pub token: Option<Secret>,
    /// Where the server stores tasks: an inline driver table (`{ type = "fs", path = "…" }`).
    pub store: Option<Value>,
    /// Serve without a token (only sensible on a trusted network).
    #[serde(default)]
    pub allow_no_auth: bool,
    // The server's limits, each optional: a key left out keeps its default (SECURITY.md).
    /// Most tasks in one `POST /tasks` (default 1000).
    pub max_batch: Option<usize>,
    /// Largest request body in bytes (default 16 MiB).
    pub max_body_bytes: Option<usize>,
    /// Largest task in bytes of JSON (default 1 MiB).
    pub max_task_bytes: Option<usize>,
    /// Most open connections (default 512).
    pub max_connections: Option<usize>,
    /// Most requests handled at once (default 64).
    pub max_concurrent_requests: Option<usize>,
    /// Most request-body bytes held at once by all requests (default 32 MiB).
    pub max_inflight_body_bytes: Option<usize>,
    /// Seconds a connection may take to send a request head (default 10).
    pub header_timeout_secs: Option<f64>,
    /// Seconds a connection may sit idle (default 5).
    pub idle_timeout_secs: Option<f64>,
    /// Seconds a request body may take to arrive (default 30).
    pub body_timeout_secs: Option<f64>,
    /// Seconds one request may take in all (default 120).
    pub request_timeout_secs: Option<f64>,
    /// Longest long poll held, in whole seconds (default 60).
    pub long_poll_max_wait_secs: Option<u64>,
    /// Most long polls held at once; 0 turns them off (default 256).
    pub max_long_polls: Option<usize>,
    /// Seconds between reads of the store's root while long polls are held (default 5).
    pub long_poll_recheck_secs: Option<f64>,
    /// Most requests one user (one token) may make a minute (default: no limit).
    pub max_requests_per_minute: Option<u32>,
    /// Most tasks one user may store (default: no limit).
    pub max_tasks_per_user: Option<usize>,
    /// Origins whose pages may call the server from a browser (default: none).
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// `[server.users.NAME]`: several users, each with a token and tasks of their own.
    #[serde(default)]
    pub users: BTreeMap<String, UserSettings>,
}

/// One `[server.users.NAME]` table: the user's token, or its SHA-256.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// The token this user sends.
    pub token: Option<Secret>,
    /// The lowercase hex SHA-256 of the token, instead of the token itself.
    pub token_sha256: Option<String>,
}

/// The file's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<String>,
    max_delete_percent: Option<u32>,
    #[serde(default)]
    drivers: BTreeMap<String, Value>,
    server: Option<ServerSettings>,
    #[serde(default)]
    uda: BTreeMap<String, Uda>,
}

/// What the command line and the environment say, so loading is testable without touching
/// the process's environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config`.
    pub config_flag: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir_flag: Option<PathBuf>,
    /// The process environment (only `HYPERTASK_*` matter).
    pub env: Vec<(String, String)>,
    /// The current directory, for relative paths given on the command line or environment.
    pub cwd: PathBuf,
}

impl Sources {
    /// The process's own flags and environment.
    pub fn from_process(config_flag: Option<PathBuf>, data_dir_flag: Option<PathBuf>) -> Sources {
        Sources {
            config_flag,
            data_dir_flag,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("HYPERTASK_"))
                .collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
        }
    }

    fn var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Loads the settings.
pub fn load(src: &Sources) -> Result<Settings> {
    let file = config_file(src)?;
    let base = match &file {
        Some(path) => Config::builder()
            .add_source(File::from(path.as_path()).format(FileFormat::Toml))
            .build()
            .map_err(|e| {
                anyhow!(
                    "cannot read config file {}: {}",
                    path.display(),
                    one_line(&e)
                )
            })?,
        None => Config::default(),
    };
    let described = |e: config::ConfigError| match &file {
        Some(path) => anyhow!("invalid config file {}: {e}", path.display()),
        None => anyhow!("invalid configuration: {e}"),
    };
    let from_file: FileSettings = base.clone().try_deserialize().map_err(described)?;

    // Environment overrides, layered over the file by the config crate.
    let mut builder = Config::builder().add_source(base);
    for (var, value) in &src.env {
        let Some(path) = override_path(var, &from_file) else {
            continue;
        };
        let existing = lookup(&from_file, &path);
        let typed = typed_value(var, value, existing)?;
        builder = builder
            .set_override(path.join("."), typed)
            .map_err(|e| anyhow!("cannot apply {var}: {e}"))?;
    }
    let merged: FileSettings = builder
        .build()
        .and_then(Config::try_deserialize)
        .map_err(described)?;

    let file_dir = file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_else(|| src.cwd.clone());

    let data_dir = if let Some(d) = &src.data_dir_flag {
        resolve(&src.cwd, &d.to_string_lossy())
    } else if let Some(d) = src.var("HYPERTASK_DATA_DIR") {
        resolve(&src.cwd, d)
    } else if let Some(d) = merged.data_dir.as_deref().filter(|d| !d.is_empty()) {
        resolve(&file_dir, d)
    } else {
        dirs::data_dir()
            .map(|d| d.join("hypertask"))
            .context("cannot find this platform's data directory; set data_dir in the config or HYPERTASK_DATA_DIR")?
    };

    let durability = match src.var("HYPERTASK_DURABILITY") {
        None => Durability::default(),
        Some(d) => d
            .parse()
            .map_err(|e| anyhow!("HYPERTASK_DURABILITY: {e}"))?,
    };

    let max_delete_percent = merged.max_delete_percent.unwrap_or(50);
    if max_delete_percent > 100 {
        bail!("max_delete_percent is {max_delete_percent}, but it is a percentage (0 to 100)");
    }

    let mut drivers = Vec::new();
    for (name, table) in merged.drivers {
        let Value::Object(mut options) = table else {
            bail!("[drivers.{name}] must be a table with a `type` key");
        };
        let kind = match options.remove("type") {
            Some(Value::String(k)) if !k.is_empty() => k,
            Some(_) => bail!("[drivers.{name}] has a `type` that is not a driver kind name"),
            None => {
                bail!("[drivers.{name}] has no `type`; add type = \"fs\" (or git, mongodb, http)")
            }
        };
        drivers.push(DriverEntry {
            name,
            kind,
            options: Value::Object(options),
        });
    }

    let server = merged.server;

    let schema = Schema::new(merged.uda).map_err(|e| match &file {
        Some(path) => anyhow!("invalid config file {}: {e}", path.display()),
        None => anyhow!("invalid configuration: {e}"),
    })?;

    Ok(Settings {
        file,
        data_dir,
        max_delete_percent,
        drivers,
        server,
        schema,
        durability,
        config_dir: file_dir,
    })
}

/// A parse error as one line: TOML errors come with a multi-line source excerpt.
fn one_line(e: &config::ConfigError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        // The excerpt: `1 | x = [`, `|`, `^`.
        .filter(|l| !l.starts_with('|') && !l.starts_with('^'))
        .filter(|l| {
            l.split_once(" |")
                .is_none_or(|(n, _)| n.trim().parse::<u32>().is_err())
        })
        .filter(|l| !l.starts_with("in "))
        .collect();
    lines.join(": ")
}

/// The config file to read, if any.
fn config_file(src: &Sources) -> Result<Option<PathBuf>> {
    if let Some(flag) = &src.config_flag {
        let path = src.cwd.join(hypertask_core::expand_path(flag));
        if !path.is_file() {
            bail!("config file {} does not exist", path.display());
        }
        return Ok(Some(path));
    }
    let candidate = match src.var("HYPERTASK_CONFIG") {
        Some(p) => src.cwd.join(hypertask_core::expand_path(p)),
        None => match dirs::config_dir() {
            Some(d) => d.join("hypertask").join("config.toml"),
            None => return Ok(None),
        },
    };
    Ok(candidate.is_file().then_some(candidate))
}

/// The settings key an environment variable overrides, or `None` when it is not an override.
fn override_path(var: &str, file: &FileSettings) -> Option<Vec<String>> {
    if var == "HYPERTASK_MAX_DELETE_PERCENT" {
        return Some(vec!["max_delete_percent".into()]);
    }
    if let Some(rest) = var.strip_prefix("HYPERTASK_SERVER__") {
        let mut path = vec!["server".to_owned()];
        path.extend(rest.split("__").map(str::to_ascii_lowercase));
        return (path.len() > 1 && path.iter().all(|p| !p.is_empty())).then_some(path);
    }
    let rest = var.strip_prefix("HYPERTASK_DRIVERS__")?;
    let mut parts = rest.split("__");
    let name = parts.next().filter(|n| !n.is_empty())?;
    let keys: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return None;
    }
    // Environment names are upper case: match the configured driver whatever its case.
    let name = file
        .drivers
        .keys()
        .find(|k| k.as_str() == name)
        .or_else(|| file.drivers.keys().find(|k| k.eq_ignore_ascii_case(name)))
        .cloned()
        .unwrap_or_else(|| name.to_ascii_lowercase());
    let mut path = vec!["drivers".to_owned(), name];
    path.extend(keys);
    Some(path)
}

/// The file's value at a key path, to give an override the same type.
fn lookup(file: &FileSettings, path: &[String]) -> Option<Value> {
    let root: Value = match path.first().map(String::as_str) {
        Some("drivers") => Value::Object(file.drivers.clone().into_iter().collect()),
        Some("server") => {
            let s = file.server.as_ref()?;
            serde_json::json!({
                "listen": s.listen, "token": s.token.as_ref().map(Secret::expose), "store": s.store,
                "allow_no_auth": s.allow_no_auth,
            })
        }
        _ => return file.max_delete_percent.map(Value::from),
    };
    let mut v = &root;
    for key in &path[1..] {
        v = v.get(key)?;
    }
    Some(v.clone()).filter(|v| !v.is_null())
}

/// An environment value with the type the file gives the key.
fn typed_value(var: &str, value: &str, existing: Option<Value>) -> Result<config::Value> {
    let as_bool = || match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(anyhow!("{var} must be true or false, not '{value}'")),
    };
    Ok(match existing {
        Some(Value::Bool(_)) => as_bool()?.into(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => value
            .trim()
            .parse::<i64>()
            .map_err(|_| anyhow!("{var} must be a whole number, not '{value}'"))?
            .into(),
        Some(Value::Number(_)) => value
            .trim()
            .parse::<f64>()
            .map_err(|_| anyhow!("{var} must be a number, not '{value}'"))?
            .into(),
        None if matches!(value, "true" | "false") => (value == "true").into(),
        _ => value.into(),
    })
}

/// Expands `~/` and makes a relative path relative to `base`.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let expanded = hypertask_core::expand_path(p);
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, config: &str, env: &[(&str, &str)]) -> Sources {
        let path = dir.join("conf").join("config.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, config).unwrap();
        Sources {
            config_flag: Some(path),
            data_dir_flag: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: dir.join("cwd"),
        }
    }

    #[test]
    fn durability_comes_from_the_environment_and_a_typo_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let config = "data_dir = \"data\"\n";
        let s = load(&sources(tmp.path(), config, &[])).unwrap();
        assert_eq!(s.durability, Durability::Batch);
        let s = load(&sources(
            tmp.path(),
            config,
            &[("HYPERTASK_DURABILITY", "per-file")],
        ))
        .unwrap();
        assert_eq!(s.durability, Durability::PerFile);
        let e = load(&sources(
            tmp.path(),
            config,
            &[("HYPERTASK_DURABILITY", "perfile")],
        ))
        .unwrap_err();
        assert!(e.to_string().contains("HYPERTASK_DURABILITY"), "{e}");
    }

    #[test]
    fn no_file_is_a_working_default() {
        let dir = tempfile::tempdir().unwrap();
        let src = Sources {
            env: vec![
                (
                    "HYPERTASK_CONFIG".into(),
                    dir.path().join("absent.toml").display().to_string(),
                ),
                ("HYPERTASK_DATA_DIR".into(), "data".into()),
            ],
            cwd: dir.path().to_owned(),
            ..Default::default()
        };
        let s = load(&src).unwrap();
        assert!(s.file.is_none() && s.drivers.is_empty() && s.server.is_none());
        assert_eq!(s.data_dir, dir.path().join("data"));
        assert_eq!(s.max_delete_percent, 50);
    }

    #[test]
    fn driver_tables_come_as_written_with_the_file_directory_and_env_overrides_apply() {
        let dir = tempfile::tempdir().unwrap();
        let toml = r#"
            data_dir = "cache"
            max_delete_percent = 20
            [drivers.MyBox]
            type = "fs"
            path = "shared"
            create = false
            [drivers.web]
            type = "http"
            url = "http://127.0.0.1:7878"
            [server]
            listen = "127.0.0.1:7878"
            token = "secret"
            store = { type = "fs", path = "srv" }
        "#;
        let src = sources(
            dir.path(),
            toml,
            &[
                ("HYPERTASK_DRIVERS__MYBOX__CREATE", "true"),
                ("HYPERTASK_DRIVERS__WEB__TOKEN", "12345"),
                ("HYPERTASK_DRIVERS__NEW__TYPE", "fs"),
                ("HYPERTASK_DRIVERS__NEW__PATH", "here"),
                ("HYPERTASK_MAX_DELETE_PERCENT", "30"),
                ("HYPERTASK_OTHER", "ignored"),
            ],
        );
        let s = load(&src).unwrap();
        let conf = dir.path().join("conf");
        assert_eq!(s.data_dir, conf.join("cache"));
        assert_eq!(s.max_delete_percent, 30);
        let names: Vec<&str> = s.drivers.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["MyBox", "new", "web"]);
        let mybox = &s.drivers[0];
        assert_eq!(mybox.kind, "fs");
        // Paths are the driver's to resolve, from `config_dir`.
        assert_eq!(mybox.options["path"], "shared");
        assert_eq!(s.config_dir, conf);
        assert_eq!(mybox.options["create"], true);
        assert!(mybox.options.get("type").is_none());
        assert_eq!(s.drivers[1].options["path"], "here");
        assert_eq!(s.drivers[2].options["token"], "12345");
        assert_eq!(s.drivers[2].options["url"], "http://127.0.0.1:7878");
        let server = s.server.unwrap();
        assert_eq!(server.store.as_ref().unwrap()["path"], "srv");
        assert!(!format!("{:?}", s.drivers).is_empty());
        assert!(!format!("{server:?}").contains("secret"));

        // --data-dir wins over the environment, which wins over the file.
        let mut src = sources(dir.path(), toml, &[("HYPERTASK_DATA_DIR", "/env/data")]);
        assert_eq!(load(&src).unwrap().data_dir, PathBuf::from("/env/data"));
        src.data_dir_flag = Some("flag".into());
        assert_eq!(load(&src).unwrap().data_dir, dir.path().join("cwd/flag"));
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let err = |toml: &str, env: &[(&str, &str)]| {
            format!("{:#}", load(&sources(dir.path(), toml, env)).unwrap_err())
        };
        let e = err("dat_dir = \"x\"", &[]);
        assert!(e.contains("config.toml") && e.contains("dat_dir"), "{e}");
        let e = err("[drivers.box]\npath = \"x\"", &[]);
        assert!(e.contains("[drivers.box]") && e.contains("type"), "{e}");
        let e = err("data_dir = [", &[]);
        assert!(e.contains("config.toml") && e.contains("line 1"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let e = err("max_delete_percent = 150", &[]);
        assert!(e.contains("max_delete_percent"), "{e}");
        let e = err(
            "[drivers.box]\ntype = \"fs\"\ncreate = false",
            &[("HYPERTASK_DRIVERS__BOX__CREATE", "maybe")],
        );
        assert!(e.contains("HYPERTASK_DRIVERS__BOX__CREATE"), "{e}");
        let e = err("[server]\nlisten = \"x\"\nport = 1", &[]);
        assert!(e.contains("port"), "{e}");
        let e = err("[uda.due]\ntype = \"date\"", &[]);
        assert!(e.contains("config.toml") && e.contains("[uda.due]"), "{e}");
        let e = err("[uda.size]\ntype = \"colour\"", &[]);
        assert!(e.contains("config.toml") && e.contains("colour"), "{e}");

        let missing = Sources {
            config_flag: Some(dir.path().join("nope.toml")),
            ..Default::default()
        };
        let e = format!("{:#}", load(&missing).unwrap_err());
        assert!(
            e.contains("nope.toml") && e.contains("does not exist"),
            "{e}"
        );
    }
}
