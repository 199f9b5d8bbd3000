//! The `[drivers.NAME]` table of a git driver.

use std::fmt;
use std::path::{Path, PathBuf};

use hypertask_core::files::Durability;
use hypertask_core::{expand_path, redact_url, DriverError, DriverSpec, ErrorKind};
use serde::Deserialize;

/// The options of a `type = "git"` driver.
///
/// ```toml
/// [drivers.repo]
/// type = "git"
/// path = "~/.local/share/hypertask/git"     # the working clone; created when missing
/// remote = "git@example.org:me/tasks.git"   # optional: a URL or a local path
/// branch = "main"                           # optional, default "main"
/// create_remote = false                     # optional: create a missing local bare remote
/// author_name = "Me"                        # optional commit author
/// author_email = "me@example.org"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// The working clone. Default: `<data_dir>/git/<NAME>`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Where to fetch from and push to: anything the installed `git` reaches — a local path, a
    /// `file://`, `https://`, `http://`, `ssh://` or `git://` URL, or `user@host:path` —
    /// authenticated the way the user's git is (credential helpers, `~/.ssh/config`, keys,
    /// the ssh agent).
    #[serde(default)]
    pub remote: Option<String>,
    /// The branch tasks live on.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Create the remote as an empty bare repository when it is a local path that does not
    /// exist. Off by default, so an unmounted drive is reported rather than shadowed by a new
    /// repository.
    #[serde(default)]
    pub create_remote: bool,
    /// Commit author name; default: git's `user.name`, else `hypertask`.
    #[serde(default)]
    pub author_name: Option<String>,
    /// Commit author email; default: git's `user.email`, else `hypertask@<host>`.
    #[serde(default)]
    pub author_email: Option<String>,
}

fn default_branch() -> String {
    "main".to_owned()
}

/// Where the remote is, decided once from the configured string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteLocation {
    /// A repository on this machine (a path or a `file://` URL): its absence is reported as
    /// such, and `create_remote` may create it.
    Local(PathBuf),
    /// A repository reached over the network (https, ssh, git, …).
    Network(String),
}

impl RemoteLocation {
    /// The URL stored as `origin` in the clone, so plain `git` fetches and pushes the same.
    pub(crate) fn url(&self) -> String {
        match self {
            RemoteLocation::Local(p) => p.to_string_lossy().into_owned(),
            RemoteLocation::Network(u) => u.clone(),
        }
    }
}

/// The settled form of a [`GitConfig`]: absolute paths, a checked branch and remote.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) path: PathBuf,
    pub(crate) remote: Option<RemoteLocation>,
    pub(crate) create_remote: bool,
    pub(crate) branch: String,
    pub(crate) author_name: Option<String>,
    pub(crate) author_email: Option<String>,
    /// How long one fetch or push may take (the driver table's `timeout`).
    pub(crate) timeout: std::time::Duration,
    /// The largest task file read or written (the driver table's `max_task_bytes`).
    pub(crate) max_task_bytes: u64,
    /// How the clone's task files are flushed (the front end's choice).
    pub(crate) durability: Durability,
}

impl GitConfig {
    /// The same config with a relative `path`, and a `remote` that is a relative local path,
    /// taken from the driver table's directory ([`DriverSpec::path`]): what the user wrote in
    /// a config file means the same from whatever directory hypertask runs.
    pub fn relative_to(mut self, spec: &DriverSpec) -> GitConfig {
        // An empty value stays empty, so `settle` reports it.
        self.path = self.path.map(|p| {
            if p.as_os_str().is_empty() {
                p
            } else {
                spec.path(p)
            }
        });
        if let Some(r) = self.remote.as_deref().filter(|r| !r.is_empty()) {
            if matches!(classify_remote(r), Ok(RemoteLocation::Local(_)))
                && !r.starts_with("file://")
            {
                self.remote = Some(spec.path(r).to_string_lossy().into_owned());
            }
        }
        self
    }

    /// Checks the options and settles paths; errors name the instance and the key.
    pub(crate) fn settle(&self, name: &str, data_dir: &Path) -> Result<Settings, DriverError> {
        let bad = |msg: String| {
            DriverError::new(
                name,
                ErrorKind::Config,
                format!("invalid [drivers.{name}] (git driver): {msg}"),
            )
        };
        let path = match &self.path {
            Some(p) if p.as_os_str().is_empty() => return Err(bad("`path` is empty".into())),
            Some(p) => absolute(&expand_path(p)),
            None => absolute(&data_dir.join("git").join(name)),
        };
        if !git2::Reference::is_valid_name(&format!("refs/heads/{}", self.branch)) {
            return Err(bad(format!(
                "`branch` = {:?} is not a valid git branch name",
                self.branch
            )));
        }
        let remote = match self.remote.as_deref() {
            None => None,
            Some("") => return Err(bad("`remote` is empty".into())),
            Some(r) => Some(classify_remote(r).map_err(bad)?),
        };
        if self.create_remote && !matches!(remote, Some(RemoteLocation::Local(_))) {
            return Err(bad(
                "`create_remote` needs `remote` to be a local path or a file:// URL".into(),
            ));
        }
        Ok(Settings {
            path,
            remote,
            create_remote: self.create_remote,
            branch: self.branch.clone(),
            author_name: self.author_name.clone(),
            author_email: self.author_email.clone(),
            timeout: hypertask_core::DEFAULT_TIMEOUT,
            max_task_bytes: hypertask_core::DEFAULT_MAX_TASK_BYTES as u64,
            durability: Durability::default(),
        })
    }
}

/// Decides whether a remote string is a local repository or a network URL, git's way: a URL
/// has `scheme://`; `host:path` is scp-like ssh when no `/` comes before the first `:`;
/// anything else is a path.
fn classify_remote(r: &str) -> Result<RemoteLocation, String> {
    if let Some(rest) = r.strip_prefix("file://") {
        if rest.is_empty() {
            return Err("`remote` = \"file://\" names no repository".into());
        }
        let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
        return Ok(RemoteLocation::Local(absolute(Path::new(decoded.as_ref()))));
    }
    if let Some((scheme, _)) = r.split_once("://") {
        let plain = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !plain {
            return Err(format!("`remote` = {:?} is not a valid URL", redact_url(r)));
        }
        // http(s), ssh, git and any scheme a git remote helper handles: git itself decides.
        return Ok(RemoteLocation::Network(r.to_owned()));
    }
    let scp_like = match (r.find(':'), r.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    };
    // A Windows drive letter (`C:\…`) is a path, not a host.
    let drive = r.len() >= 2 && r.as_bytes()[1] == b':' && r.as_bytes()[0].is_ascii_alphabetic();
    if scp_like && !drive {
        return Ok(RemoteLocation::Network(r.to_owned()));
    }
    Ok(RemoteLocation::Local(absolute(&expand_path(r))))
}

/// An absolute form of `p` (relative to the current directory), without touching the disk.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

impl fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitConfig")
            .field("path", &self.path)
            .field("remote", &self.remote.as_deref().map(redact_url))
            .field("branch", &self.branch)
            .field("create_remote", &self.create_remote)
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> Result<GitConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn relative_paths_and_local_remotes_are_taken_from_the_config_directory() {
        let spec = DriverSpec::new("repo", "git", serde_json::Value::Null, "/data")
            .with_config_dir("/home/ann/.config/hypertask");
        let c = cfg(serde_json::json!({"path": "clone", "remote": "../a:b/tasks.git"}))
            .unwrap()
            .relative_to(&spec);
        assert_eq!(
            c.path,
            Some(PathBuf::from("/home/ann/.config/hypertask/clone"))
        );
        assert_eq!(
            c.remote.as_deref(),
            Some("/home/ann/.config/hypertask/../a:b/tasks.git")
        );
        for url in ["git@host:me/t.git", "https://h/t.git", "file:///srv/t.git"] {
            let c = cfg(serde_json::json!({"remote": url}))
                .unwrap()
                .relative_to(&spec);
            assert_eq!(c.remote.as_deref(), Some(url));
        }
    }

    #[test]
    fn remotes_are_classified_like_git_does() {
        let local = |s: &str| matches!(classify_remote(s), Ok(RemoteLocation::Local(_)));
        let net = |s: &str| matches!(classify_remote(s), Ok(RemoteLocation::Network(_)));
        assert!(local("/srv/tasks.git"));
        assert!(local("./tasks.git"));
        assert!(local("../a:b/tasks.git"));
        assert!(local("file:///srv/tasks.git"));
        assert!(net("git@example.org:me/tasks.git"));
        assert!(net("ssh://git@example.org/me/tasks.git"));
        assert!(net("git://example.org/tasks.git"));
        assert!(net("https://u:secret@example.org/t.git"));
        assert!(net("http://127.0.0.1:8080/t.git"));
        let err = classify_remote("ht tp://u:secret@example.org/t.git").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(
            classify_remote("file:///srv/my%20tasks.git"),
            Ok(RemoteLocation::Local(PathBuf::from("/srv/my tasks.git")))
        );
    }

    #[test]
    fn unknown_keys_and_bad_branches_are_rejected() {
        assert!(cfg(serde_json::json!({"path": "/x", "brnach": "main"})).is_err());
        let c = cfg(serde_json::json!({"path": "/x", "branch": "a..b"})).unwrap();
        let e = c.settle("repo", Path::new("/data")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("drivers.repo") && e.to_string().contains("a..b"));
    }

    #[test]
    fn defaults_and_debug_redaction() {
        let c = cfg(serde_json::json!({"remote": "ssh://me:pw@host/x.git"})).unwrap();
        assert_eq!(c.branch, "main");
        let s = c.settle("repo", Path::new("/data")).unwrap();
        assert_eq!(s.path, PathBuf::from("/data/git/repo"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pw") && dbg.contains("me:***@host"), "{dbg}");
    }
}
