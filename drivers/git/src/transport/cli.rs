//! Running the installed `git` for fetch and push: non-interactively (no terminal prompt,
//! ssh in batch mode, stdin closed, in its own process group), with English messages so
//! failures can be told apart, its output read up to a bound, and killed with its children
//! when the driver's timeout runs out.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hypertask_core::ErrorKind;

use hypertask_core::redact_url;

/// How much of git's stdout and stderr is kept; the rest is read and dropped.
const MAX_OUTPUT: usize = 64 * 1024;

/// A fetch or push that failed, in the user's words. Each message is one sentence naming
/// the remote.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// git itself could not be started.
    #[error("cannot run `git` to reach {remote} ({cause}); install git to sync through a remote")]
    NoGit {
        remote: String,
        cause: std::io::Error,
    },
    /// The remote refused the credentials git offered (or git had none to offer).
    #[error("authentication to {remote} failed: {method}")]
    Auth { remote: String, method: String },
    /// ssh does not know, or no longer trusts, the server's host key.
    #[error(
        "the ssh host key of {remote} is {what}; connect once with `ssh` to check and accept it \
         (hypertask never accepts host keys by itself)"
    )]
    HostKey { remote: String, what: &'static str },
    /// The server's TLS certificate is not trusted.
    #[error(
        "the TLS certificate of {remote} is not trusted ({detail}); for a private CA set \
         http.sslCAInfo or GIT_SSL_CAINFO"
    )]
    Certificate { remote: String, detail: String },
    /// The host could not be reached.
    #[error("{remote} is unreachable ({detail})")]
    Unreachable { remote: String, detail: String },
    /// The host answered, but holds no such repository.
    #[error("there is no git repository at {remote} ({detail})")]
    NoRepository { remote: String, detail: String },
    /// git did not finish in time and was stopped.
    #[error("git {op} with {remote} did not finish within {}s and was stopped", timeout.as_secs())]
    Timeout {
        remote: String,
        op: &'static str,
        timeout: Duration,
    },
    /// Anything else git reported.
    #[error("git {op} with {remote} failed: {detail}")]
    Failed {
        remote: String,
        op: &'static str,
        detail: String,
    },
}

impl TransportError {
    /// The core error kind: whether a retry may help (unreachable, timeout) or the user must
    /// act (credentials, host key, certificate, wrong URL).
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            TransportError::Auth { .. }
            | TransportError::HostKey { .. }
            | TransportError::Certificate { .. } => ErrorKind::Unauthorized,
            TransportError::NoGit { .. } | TransportError::NoRepository { .. } => ErrorKind::Config,
            TransportError::Unreachable { .. } | TransportError::Timeout { .. } => {
                ErrorKind::Unavailable
            }
            TransportError::Failed { .. } => ErrorKind::Io,
        }
    }
}

/// The outcome of one push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Done,
    /// The remote branch moved since the commit the push builds on; fetch, merge, retry.
    Rejected(String),
}

/// The git program run against one clone and one remote.
pub(crate) struct GitCli<'a> {
    /// The working clone, where git runs.
    pub(crate) dir: &'a Path,
    /// The remote's URL, for messages (redacted).
    pub(crate) url: &'a str,
    pub(crate) timeout: Duration,
    /// Whether to run ssh in batch mode (unless the user configured an ssh command).
    pub(crate) batch_ssh: bool,
}

impl GitCli<'_> {
    /// Fetches `branch` of `origin` into `tracking`. `Ok(false)`: the remote has no such
    /// branch yet (an empty repository).
    pub(crate) fn fetch(&self, branch: &str, tracking: &str) -> Result<bool, TransportError> {
        let refspec = format!("+refs/heads/{branch}:{tracking}");
        let out = self.run(
            "fetch",
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "origin",
                &refspec,
            ],
            &[],
        )?;
        if out.success {
            return Ok(true);
        }
        if out.stderr.contains("couldn't find remote ref") {
            return Ok(false);
        }
        Err(self.classify("fetch", &out.stderr))
    }

    /// The commit `branch` of `origin` points at, `None` when there is no such branch.
    pub(crate) fn ls_remote(&self, branch: &str) -> Result<Option<git2::Oid>, TransportError> {
        let refname = format!("refs/heads/{branch}");
        let out = self.run("ls-remote", &["ls-remote", "origin", &refname], &[])?;
        if !out.success {
            return Err(self.classify("ls-remote", &out.stderr));
        }
        Ok(out.stdout.lines().find_map(|l| {
            let (oid, name) = l.split_once('\t')?;
            (name == refname).then(|| git2::Oid::from_str(oid).ok())?
        }))
    }

    /// Fetches `branch` of `origin` into the object directory `objects` (with `own`, the
    /// clone's objects, as an alternate), writing no ref, no FETCH_HEAD and nothing else into
    /// the clone.
    pub(crate) fn fetch_into(
        &self,
        branch: &str,
        objects: &Path,
        own: &Path,
    ) -> Result<(), TransportError> {
        let refspec = format!("refs/heads/{branch}");
        let out = self.run(
            "fetch",
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--no-auto-maintenance",
                // No opportunistic update of refs/remotes/origin/<branch>.
                "--refmap=",
                "origin",
                &refspec,
            ],
            &[
                ("GIT_OBJECT_DIRECTORY", objects),
                ("GIT_ALTERNATE_OBJECT_DIRECTORIES", own),
            ],
        )?;
        if out.success {
            Ok(())
        } else {
            Err(self.classify("fetch", &out.stderr))
        }
    }

    /// Pushes `branch` to `origin`; the remote refuses it unless it fast-forwards the remote
    /// branch, which is then reported as [`Pushed::Rejected`].
    pub(crate) fn push(&self, branch: &str) -> Result<Pushed, TransportError> {
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let out = self.run(
            "push",
            &["push", "--porcelain", "--quiet", "origin", &spec],
            &[],
        )?;
        // Porcelain lines: "<flag>\t<from>:<to>\t<summary>"; "!" is a refused ref.
        let refused = out.stdout.lines().find_map(|l| {
            let mut parts = l.splitn(3, '\t');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("!"), Some(_), Some(summary)) => Some(summary.to_owned()),
                _ => None,
            }
        });
        match refused {
            Some(why) if is_race(&why) => Ok(Pushed::Rejected(why)),
            Some(why) => Err(TransportError::Failed {
                remote: redact_url(self.url),
                op: "push",
                detail: format!("the remote refused the update: {}", printable(&why)),
            }),
            None if out.success => Ok(Pushed::Done),
            None => Err(self.classify("push", &out.stderr)),
        }
    }

    /// Runs git in the clone and collects its bounded output.
    fn run(
        &self,
        op: &'static str,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Output, TransportError> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Never ask: a sync must fail with a message rather than wait for a person.
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C");
        // ssh never asks for a password or a host key; a user's own ssh command (from the
        // environment or core.sshCommand) is theirs to make non-interactive.
        if self.batch_ssh
            && std::env::var_os("GIT_SSH_COMMAND").is_none()
            && std::env::var_os("GIT_SSH").is_none()
        {
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        // The clone is named by the working directory only.
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_NAMESPACE",
            "GIT_COMMON_DIR",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: no terminal signals, and a timeout kills ssh too.
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|cause| TransportError::NoGit {
            remote: redact_url(self.url),
            cause,
        })?;
        self.wait(child, op)
    }

    fn wait(&self, mut child: Child, op: &'static str) -> Result<Output, TransportError> {
        let stdout = child.stdout.take().map(bounded_reader);
        let stderr = child.stderr.take().map(bounded_reader);
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            status
        });
        if rx.recv_timeout(self.timeout).is_err() {
            kill_group(pid);
            let _ = waiter.join();
            return Err(TransportError::Timeout {
                remote: redact_url(self.url),
                op,
                timeout: self.timeout,
            });
        }
        let success = waiter
            .join()
            .ok()
            .and_then(Result::ok)
            .is_some_and(|s| s.success());
        let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Ok(Output {
            success,
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }

    /// Turns git's complaint into the error a user can act on.
    fn classify(&self, op: &'static str, stderr: &str) -> TransportError {
        let remote = redact_url(self.url);
        let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
        let detail = summary(stderr);
        if has(&[
            "Host key verification failed",
            "No RSA host key is known",
            "host key is known",
        ]) {
            return TransportError::HostKey {
                remote,
                what: if has(&["HOST IDENTIFICATION HAS CHANGED"]) {
                    "not the one recorded in known_hosts (it changed)"
                } else {
                    "unknown (not in known_hosts)"
                },
            };
        }
        if has(&[
            "Permission denied (",
            "Permission denied, please try again",
            "Too many authentication failures",
        ]) {
            return TransportError::Auth {
                remote,
                method:
                    "the server refused every ssh key offered (the ssh agent, ~/.ssh/config and \
                         the default keys)"
                        .into(),
            };
        }
        if has(&["could not read Username", "could not read Password"]) {
            return TransportError::Auth {
                remote,
                method: "git's credential helpers and ~/.git-credentials supplied no user name \
                         and password, and hypertask never prompts"
                    .into(),
            };
        }
        if has(&[
            "Authentication failed",
            "HTTP Basic: Access denied",
            "returned error: 401",
            "returned error: 403",
        ]) {
            return TransportError::Auth {
                remote,
                method: "the server refused the user name and password from git's credential \
                         helpers"
                    .into(),
            };
        }
        if has(&[
            "SSL certificate problem",
            "server certificate verification failed",
            "certificate verify failed",
            "unable to get local issuer certificate",
            "self-signed certificate",
            "self signed certificate",
        ]) {
            return TransportError::Certificate { remote, detail };
        }
        if has(&[
            "Could not resolve host",
            "Could not resolve hostname",
            "Connection refused",
            "Connection timed out",
            "Failed to connect",
            "Couldn't connect to server",
            "No route to host",
            "Network is unreachable",
            "Connection reset",
            "Connection closed by",
            "unable to connect",
            "Operation timed out",
            "Temporary failure in name resolution",
            "Name or service not known",
            "the remote end hung up unexpectedly",
        ]) {
            return TransportError::Unreachable { remote, detail };
        }
        if has(&[
            "does not appear to be a git repository",
            "Repository not found",
            "returned error: 404",
            "not found",
        ]) {
            return TransportError::NoRepository { remote, detail };
        }
        TransportError::Failed { remote, op, detail }
    }
}

/// Whether a refused push lost a race (the remote moved, or its ref was locked by another
/// push) rather than being refused for good (a hook, a protected branch).
fn is_race(summary: &str) -> bool {
    let s = summary.to_ascii_lowercase();
    s.contains("fetch first")
        || s.contains("non-fast-forward")
        || s.contains("stale info")
        || s.contains("cannot lock ref")
        || s.contains("failed to update ref")
        || s.contains("failed to lock")
}

/// What git printed, bounded.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Reads a pipe to its end on a thread, keeping at most [`MAX_OUTPUT`] bytes.
fn bounded_reader<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    })
}

/// Kills git and everything it started (ssh, helpers): they share its process group.
fn kill_group(pid: u32) {
    #[cfg(unix)]
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// The lines of git's stderr that say what went wrong, printable and short.
fn summary(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("hint:"))
        .collect();
    let text = lines
        .iter()
        .map(|l| {
            l.strip_prefix("fatal: ")
                .or_else(|| l.strip_prefix("error: "))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let text = printable(&text);
    let text = if text.is_empty() {
        "git gave no reason".to_owned()
    } else {
        text
    };
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// `s` without control characters (a server's message may carry terminal escapes).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> GitCli<'static> {
        GitCli {
            dir: Path::new("/nonexistent"),
            url: "https://me:secret@example.org/t.git",
            timeout: Duration::from_secs(60),
            batch_ssh: true,
        }
    }

    #[test]
    fn git_complaints_become_one_sentence_naming_the_remote() {
        let cases: &[(&str, ErrorKind, &str)] = &[
            (
                "fatal: Authentication failed for 'https://example.org/t.git/'\n",
                ErrorKind::Unauthorized,
                "authentication to https://me:***@example.org/t.git failed",
            ),
            (
                "git@example.org: Permission denied (publickey).\nfatal: Could not read from remote repository.\n",
                ErrorKind::Unauthorized,
                "ssh key",
            ),
            (
                "Host key verification failed.\nfatal: Could not read from remote repository.\n",
                ErrorKind::Unauthorized,
                "unknown (not in known_hosts)",
            ),
            (
                "fatal: unable to access 'https://example.org/t.git/': SSL certificate problem: self-signed certificate\n",
                ErrorKind::Unauthorized,
                "http.sslCAInfo",
            ),
            (
                "fatal: unable to access 'https://example.org/t.git/': Failed to connect to example.org port 443\n",
                ErrorKind::Unavailable,
                "is unreachable",
            ),
            (
                "fatal: '/srv/x.git' does not appear to be a git repository\n",
                ErrorKind::Config,
                "there is no git repository at",
            ),
            ("fatal: \x1b[31mboom\x1b[0m\n", ErrorKind::Io, "failed: [31mboom[0m"),
        ];
        for (stderr, kind, needle) in cases {
            let e = cli().classify("fetch", stderr);
            let msg = e.to_string();
            assert_eq!(e.kind(), *kind, "{msg}");
            assert!(msg.contains(needle), "{msg}");
            assert!(!msg.contains("secret") && !msg.contains('\x1b'), "{msg}");
            assert_eq!(msg.lines().count(), 1, "{msg}");
        }
    }

    #[test]
    fn lost_races_are_told_from_refusals() {
        assert!(is_race("[rejected] (fetch first)"));
        assert!(is_race("[rejected] (non-fast-forward)"));
        assert!(is_race("[remote rejected] (failed to update ref)"));
        assert!(!is_race("[remote rejected] (pre-receive hook declined)"));
    }
}
