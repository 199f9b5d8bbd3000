//! The network: fetch and push are done by the installed `git` program, everything else by
//! libgit2 in-process (as cargo's `net.git-fetch-with-cli`).
//!
//! Why the CLI: it reaches every remote the user's own git reaches, authenticated the same
//! way — local paths, `file://`, `git://`, `http(s)://` with credential helpers and
//! `~/.git-credentials`, `ssh://` and `user@host:path` with `~/.ssh/config`, keys and the
//! agent, private CAs through `http.sslCAInfo`/`GIT_SSL_CAINFO`, proxies from the
//! environment or git's config — with no TLS or ssh library linked into hypertask (libgit2
//! is built without its https and ssh transports, so no OpenSSL or libssh2 is needed).
//! Pushes through receive-pack are compare-and-swap on the server, locally too.
//!
//! git runs non-interactively, bounded in time and output (see `cli`).

mod cli;

use std::path::Path;
use std::time::Duration;

use git2::{Oid, Repository, RepositoryInitOptions};
use hypertask_core::{redact_url, Backoff, DriverError, ErrorKind};

use crate::config::RemoteLocation;
use crate::error;
use crate::repo::Session;
use cli::{GitCli, Pushed, TransportError};

/// How many times a rejected push is retried (fetch, merge, push again) before giving up.
const MAX_PUSH_ATTEMPTS: u32 = 10;

impl Session<'_> {
    /// git, run in this clone against `location`.
    pub(crate) fn cli<'s>(&'s self, url: &'s str) -> GitCli<'s> {
        GitCli {
            dir: self.workdir(),
            url,
            timeout: self.timeout(),
            batch_ssh: !self
                .repo
                .config()
                .and_then(|mut c| c.snapshot())
                .is_ok_and(|c| c.get_string("core.sshCommand").is_ok()),
        }
    }

    pub(crate) fn transport_error(&self, e: TransportError) -> DriverError {
        DriverError::new(self.name(), e.kind(), e.to_string())
    }

    /// Brings the remote's changes in: fetch, then fast-forward or merge per task.
    pub(crate) fn catch_up(&self) -> Result<(), DriverError> {
        if self.clone.settings.remote.is_none() {
            return Ok(());
        }
        self.fetch()?;
        if let Some(remote) = self.tracking() {
            self.integrate(remote)?;
        }
        Ok(())
    }

    /// Fetches the remote branch into `refs/remotes/origin/<branch>`.
    pub(crate) fn fetch(&self) -> Result<(), DriverError> {
        let Some(location) = &self.clone.settings.remote else {
            return Ok(());
        };
        self.check_local(location)?;
        if self.local_remote_unchanged(location) {
            return Ok(());
        }
        let url = location.url();
        let found = self
            .cli(&url)
            .fetch(&self.clone.settings.branch, &self.tracking_ref())
            .map_err(|e| self.transport_error(e))?;
        if !found {
            tracing::debug!(driver = %self.name(), "the remote has no branch '{}' yet", self.clone.settings.branch);
        }
        Ok(())
    }

    /// Whether a remote on this machine still has the branch where the last fetch or push left
    /// it, read straight from its refs: then a fetch would bring nothing, and the `git` and
    /// `upload-pack` processes it costs (most of a sync with nothing to do) are saved. Anything
    /// unexpected (a remote libgit2 cannot open, a symbolic branch) answers `false`, and `git`
    /// fetches as usual.
    fn local_remote_unchanged(&self, location: &RemoteLocation) -> bool {
        let RemoteLocation::Local(path) = location else {
            return false;
        };
        let Ok(remote) = Repository::open_bare(path) else {
            return false;
        };
        let theirs = match remote.find_reference(&self.branch_ref()) {
            Ok(r) => match r.target() {
                Some(id) => Some(id),
                None => return false,
            },
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(_) => return false,
        };
        theirs == self.tracking()
    }

    /// A local remote must exist (or be created, with `create_remote`): a missing one is
    /// reported as such, since an unmounted drive must not look like an empty remote.
    pub(crate) fn check_local(&self, location: &RemoteLocation) -> Result<(), DriverError> {
        let RemoteLocation::Local(p) = location else {
            return Ok(());
        };
        if !p.exists() && self.clone.settings.create_remote {
            self.create_remote(p)?;
        }
        if !p.exists() {
            return Err(DriverError::new(
                self.name(),
                ErrorKind::Unavailable,
                format!(
                    "the local remote {} does not exist (a drive not mounted? set \
                     `create_remote = true` to create it)",
                    p.display()
                ),
            ));
        }
        Ok(())
    }

    /// Creates the configured local remote as an empty bare repository on the branch.
    fn create_remote(&self, path: &Path) -> Result<(), DriverError> {
        let mut opts = RepositoryInitOptions::new();
        opts.bare(true)
            .mkpath(true)
            .no_reinit(true)
            .initial_head(&self.branch_ref());
        match Repository::init_opts(path, &opts) {
            Ok(_) => {
                self.clone
                    .note_created(format!("the bare remote {}", path.display()));
                Ok(())
            }
            Err(e) if e.code() == git2::ErrorCode::Exists => Ok(()),
            Err(e) => Err(error::git(
                self.name(),
                format!("cannot create the remote {}", path.display()),
                e,
            )),
        }
    }

    /// Pushes the branch when the remote lacks commits of it. A rejected push (someone pushed
    /// meanwhile) fetches, merges and pushes again, a bounded number of times.
    pub(crate) fn push(&self) -> Result<(), DriverError> {
        let Some(location) = &self.clone.settings.remote else {
            return Ok(());
        };
        let url = location.url();
        let mut last = String::new();
        // Racing clients spread out before they retry.
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
        for attempt in 0..MAX_PUSH_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(backoff.next_delay());
                self.fetch()?;
            }
            let Some(head) = self.head()?.map(|c| c.id()) else {
                return Ok(());
            };
            let expected = self.tracking();
            if let Some(r) = expected {
                if r == head {
                    return Ok(());
                }
                if !self.is_descendant(head, r)? {
                    self.integrate(r)?;
                    if self.head()?.map(|c| c.id()) == Some(r) {
                        return Ok(());
                    }
                }
            }
            let head: Oid = self.head()?.map(|c| c.id()).expect("a branch to push");
            self.check_local(location)?;
            match self
                .cli(&url)
                .push(&self.clone.settings.branch)
                .map_err(|e| self.transport_error(e))?
            {
                Pushed::Done => {
                    self.repo
                        .reference(&self.tracking_ref(), head, true, "hypertask: push")
                        .map_err(self.git("cannot record the pushed commit"))?;
                    if expected.is_none() {
                        self.point_remote_head(location);
                    }
                    return Ok(());
                }
                Pushed::Rejected(why) => {
                    tracing::debug!(driver = %self.name(), attempt, %why, "push rejected; fetching and merging again");
                    last = why;
                }
            }
        }
        Err(DriverError::new(
            self.name(),
            ErrorKind::Contended,
            format!(
                "the push to {} was rejected {MAX_PUSH_ATTEMPTS} times because others kept \
                 pushing ({last}); the changes are committed in {} and the next sync pushes them",
                redact_url(&url),
                self.workdir().display()
            ),
        ))
    }

    /// After the first push to a fresh local bare repository whose HEAD names no branch yet,
    /// points it at ours, so a plain `git clone` of it checks the tasks out.
    fn point_remote_head(&self, location: &RemoteLocation) {
        let RemoteLocation::Local(path) = location else {
            return;
        };
        if let Ok(remote) = Repository::open_bare(path) {
            if remote.head().is_err() {
                let _ = remote.set_head(&self.branch_ref());
            }
        }
    }

    /// Whether the remote can be reached, by fetching from it.
    pub(crate) fn probe(&self) -> Result<(), DriverError> {
        self.fetch()
    }
}
