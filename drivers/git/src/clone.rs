//! The working clone: opening or creating it, the per-clone process lock, fetch, the per-task
//! merge of diverged histories, commits and pushes. Everything here blocks; the store calls it
//! from `spawn_blocking`.
//!
//! The working tree's `tasks/` directory is the store: reads and compare-and-swap writes go to
//! its files, commits record them, and remote changes are brought into it file by file (never
//! with a textual merge, never with conflict markers). Files this module cannot parse are left
//! exactly as they are.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use git2::{
    AutotagOption, Commit, Cred, CredentialType, FetchOptions, Oid, PushOptions, RemoteCallbacks,
    Repository, RepositoryInitOptions, Tree,
};
use hypertask_core::files::{lock_file, TaskDir};
use hypertask_core::{DriverError, ErrorKind, Task, TaskId};

use crate::config::{redact_url, RemoteLocation, Settings};
use crate::error;

/// The name of the remote in the clone.
pub(crate) const ORIGIN: &str = "origin";
/// How many times a rejected push is retried (fetch, merge, push again) before giving up.
const MAX_PUSH_ATTEMPTS: u32 = 10;
/// How long to wait for another process working on the same clone.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times the credential callback is asked before giving up (libgit2 asks again after
/// each refusal).
const MAX_CREDENTIAL_ATTEMPTS: u32 = 3;

/// One driver instance's fixed facts.
#[derive(Debug)]
pub(crate) struct WorkingClone {
    pub(crate) name: String,
    pub(crate) settings: Settings,
    pub(crate) host: String,
    pub(crate) tasks: TaskDir,
}

impl WorkingClone {
    /// The facts of instance `name`.
    pub(crate) fn new(name: String, settings: Settings) -> WorkingClone {
        let tasks = TaskDir::new(
            settings.path.join(crate::tree::TASKS_DIR),
            Some(settings.path.join(".git").join("hypertask-index.json")),
            hypertask_core::files::Durability::from_env(),
        );
        WorkingClone {
            name,
            settings,
            host: hostname(),
            tasks,
        }
    }

    /// Opens the clone (creating it when missing) and takes its process lock.
    pub(crate) fn session(&self) -> Result<Session<'_>, DriverError> {
        let path = &self.settings.path;
        let git_dir = path.join(".git");
        if !git_dir.exists() {
            self.init()?;
        }
        let lock = self.lock(&git_dir)?;
        let repo = Repository::open(path).map_err(|e| {
            error::git(
                &self.name,
                format!("cannot open the git clone at {}", path.display()),
                e,
            )
        })?;
        if repo.is_bare() || repo.workdir().is_none() {
            return Err(error::config(
                &self.name,
                format!(
                    "{} is a bare repository; `path` must be a working clone (set the bare \
                     repository as `remote`)",
                    path.display()
                ),
            ));
        }
        let session = Session {
            clone: self,
            repo,
            _lock: lock,
        };
        session.setup()?;
        Ok(session)
    }

    /// Creates a fresh repository at `path`, refusing a non-empty directory that is not one.
    fn init(&self) -> Result<(), DriverError> {
        let path = &self.settings.path;
        if let Ok(mut entries) = fs::read_dir(path) {
            if entries.next().is_some() {
                return Err(error::config(
                    &self.name,
                    format!(
                        "{} exists, is not empty and is not a git clone; point `path` at a new \
                         directory or an existing clone",
                        path.display()
                    ),
                ));
            }
        }
        let mut opts = RepositoryInitOptions::new();
        opts.initial_head(&format!("refs/heads/{}", self.settings.branch))
            .mkpath(true)
            .no_reinit(true);
        match Repository::init_opts(path, &opts) {
            Ok(_) => Ok(()),
            // Another process created it first.
            Err(e) if e.code() == git2::ErrorCode::Exists => Ok(()),
            Err(e) => Err(error::git(
                &self.name,
                format!("cannot create a git repository at {}", path.display()),
                e,
            )),
        }
    }

    /// Takes the clone's lock file, waiting (bounded) for another process that holds it.
    fn lock(&self, git_dir: &Path) -> Result<File, DriverError> {
        let path = git_dir.join("hypertask.lock");
        lock_file(&path, LOCK_TIMEOUT)
            .map_err(|e| error::io(&self.name, path.display(), e))?
            .ok_or_else(|| {
                DriverError::new(
                    &self.name,
                    ErrorKind::Contended,
                    format!(
                        "another process kept the git clone at {} locked for {}s",
                        self.settings.path.display(),
                        LOCK_TIMEOUT.as_secs()
                    ),
                )
            })
    }
}

/// The clone opened and locked for one operation.
pub(crate) struct Session<'a> {
    pub(crate) clone: &'a WorkingClone,
    pub(crate) repo: Repository,
    _lock: File,
}

/// The outcome of one push attempt.
enum Pushed {
    Done,
    /// Someone else moved the remote branch first.
    Rejected(String),
}

impl Session<'_> {
    pub(crate) fn name(&self) -> &str {
        &self.clone.name
    }

    pub(crate) fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.clone.settings.branch)
    }

    pub(crate) fn tracking_ref(&self) -> String {
        format!("refs/remotes/{ORIGIN}/{}", self.clone.settings.branch)
    }

    pub(crate) fn git(
        &self,
        context: impl std::fmt::Display,
    ) -> impl FnOnce(git2::Error) -> DriverError + '_ {
        let context = context.to_string();
        move |e| error::git(self.name(), context, e)
    }

    pub(crate) fn workdir(&self) -> &Path {
        &self.clone.settings.path
    }

    /// The largest task file the driver reads or writes.
    pub(crate) fn max_task_bytes(&self) -> u64 {
        hypertask_core::DEFAULT_MAX_TASK_BYTES as u64
    }

    /// Checks the checked-out branch, points `origin` at the configured remote and makes the
    /// branch track it, so plain `git pull` and `git push` work in the clone.
    fn setup(&self) -> Result<(), DriverError> {
        let head = self
            .repo
            .find_reference("HEAD")
            .map_err(self.git("cannot read HEAD"))?;
        let branch = self.branch_ref();
        if head.symbolic_target() != Some(branch.as_str()) {
            return Err(error::config(
                self.name(),
                format!(
                    "the git clone at {} has {} checked out, not the configured branch '{}'; \
                     check out '{}' there or change `branch`",
                    self.workdir().display(),
                    head.symbolic_target().unwrap_or("a detached HEAD"),
                    self.clone.settings.branch,
                    self.clone.settings.branch
                ),
            ));
        }
        if let Some(remote) = &self.clone.settings.remote {
            let url = remote.url();
            match self.repo.find_remote(ORIGIN) {
                Ok(r) if r.url() == Some(url.as_str()) => {}
                Ok(_) => {
                    tracing::info!(driver = %self.name(), url = %redact_url(&url), "pointing origin at the configured remote");
                    self.repo
                        .remote_set_url(ORIGIN, &url)
                        .map_err(self.git("cannot set the remote URL"))?;
                }
                Err(_) => {
                    self.repo
                        .remote(ORIGIN, &url)
                        .map_err(self.git("cannot add the remote"))?;
                }
            }
            let mut cfg = self
                .repo
                .config()
                .map_err(self.git("cannot open the clone's config"))?;
            let b = &self.clone.settings.branch;
            if cfg
                .get_string(&format!("branch.{b}.remote"))
                .ok()
                .as_deref()
                != Some(ORIGIN)
            {
                cfg.set_str(&format!("branch.{b}.remote"), ORIGIN)
                    .and_then(|()| cfg.set_str(&format!("branch.{b}.merge"), &branch))
                    .map_err(self.git("cannot set the branch's upstream"))?;
            }
        }
        self.tasks_dir().map(|_| ())
    }

    /// The branch's commit, `None` before the first commit.
    pub(crate) fn head(&self) -> Result<Option<Commit<'_>>, DriverError> {
        match self.repo.find_reference(&self.branch_ref()) {
            Ok(r) => {
                let c = r
                    .peel_to_commit()
                    .map_err(self.git("the branch does not point at a commit"))?;
                Ok(Some(c))
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.git("cannot read the branch")(e)),
        }
    }

    /// The remote branch as last fetched, `None` when the remote has no such branch yet.
    fn tracking(&self) -> Option<Oid> {
        self.repo.refname_to_id(&self.tracking_ref()).ok()
    }

    pub(crate) fn is_descendant(&self, commit: Oid, ancestor: Oid) -> Result<bool, DriverError> {
        self.repo
            .graph_descendant_of(commit, ancestor)
            .map_err(self.git("cannot compare histories"))
    }

    pub(crate) fn empty_tree(&self) -> Result<Tree<'_>, DriverError> {
        let id = self
            .repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .map_err(self.git("cannot write the empty tree"))?;
        self.repo
            .find_tree(id)
            .map_err(self.git("cannot read the empty tree"))
    }

    /// Brings the remote's changes in: fetch, then fast-forward or merge per task, then push
    /// whatever local commits the remote lacks (left by an earlier failed push or made by hand).
    pub(crate) fn refresh(&self) -> Result<(), DriverError> {
        if self.clone.settings.remote.is_none() {
            return Ok(());
        }
        self.fetch()?;
        if let Some(remote) = self.tracking() {
            self.integrate(remote)?;
        }
        if self.is_ahead()? {
            self.push()?;
        }
        Ok(())
    }

    /// Whether the branch has commits the remote (as last fetched) lacks.
    fn is_ahead(&self) -> Result<bool, DriverError> {
        let Some(head) = self.head()? else {
            return Ok(false);
        };
        Ok(match self.tracking() {
            None => true,
            Some(r) => head.id() != r,
        })
    }

    /// Fetches the remote branch into `refs/remotes/origin/<branch>`.
    fn fetch(&self) -> Result<(), DriverError> {
        let Some(location) = &self.clone.settings.remote else {
            return Ok(());
        };
        if let RemoteLocation::Local(p) = location {
            if !p.exists() && self.clone.settings.create_remote {
                self.create_remote(p)?;
            }
            if !p.exists() {
                return Err(DriverError::new(
                    self.name(),
                    ErrorKind::Unavailable,
                    format!("the remote {} does not exist (not mounted?)", p.display()),
                ));
            }
        }
        let url = redact_url(&location.url());
        let mut remote = self
            .repo
            .find_remote(ORIGIN)
            .map_err(self.git("cannot find the remote"))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks())
            .download_tags(AutotagOption::None);
        let b = &self.clone.settings.branch;
        let refspec = format!("+refs/heads/{b}:{}", self.tracking_ref());
        remote
            .fetch(
                &[refspec.as_str()],
                Some(&mut opts),
                Some("hypertask: fetch"),
            )
            .map_err(self.git(format!("cannot fetch from {url}")))
    }

    /// Creates the configured local remote as an empty bare repository on the branch.
    fn create_remote(&self, path: &Path) -> Result<(), DriverError> {
        let mut opts = RepositoryInitOptions::new();
        opts.bare(true)
            .mkpath(true)
            .no_reinit(true)
            .initial_head(&self.branch_ref());
        match Repository::init_opts(path, &opts) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == git2::ErrorCode::Exists => Ok(()),
            Err(e) => Err(error::git(
                self.name(),
                format!("cannot create the remote {}", path.display()),
                e,
            )),
        }
    }

    /// Credentials for network remotes: the ssh agent for ssh, git's credential helpers else.
    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let config = self.repo.config().ok();
        let mut attempts = 0;
        let mut cbs = RemoteCallbacks::new();
        cbs.credentials(move |url, username, allowed| {
            attempts += 1;
            if attempts > MAX_CREDENTIAL_ATTEMPTS {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Ssh,
                    "authentication failed: the ssh agent and credential helpers offered no accepted credentials",
                ));
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(username.unwrap_or("git"));
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                return Cred::ssh_key_from_agent(username.unwrap_or("git"));
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(cfg) = &config {
                    return Cred::credential_helper(cfg, url, username);
                }
            }
            Cred::default()
        });
        cbs
    }

    /// Pushes the branch when the remote lacks commits of it. A rejected push (someone pushed
    /// meanwhile) fetches, merges and pushes again, a bounded number of times.
    pub(crate) fn push(&self) -> Result<(), DriverError> {
        let Some(location) = &self.clone.settings.remote else {
            return Ok(());
        };
        let mut last = String::new();
        for attempt in 0..MAX_PUSH_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt);
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
            let head = self.head()?.map(|c| c.id()).expect("a branch to push");
            let outcome = match location {
                RemoteLocation::Local(path) => self.push_local(path, head, expected)?,
                RemoteLocation::Network(_) => self.push_network()?,
            };
            match outcome {
                Pushed::Done => {
                    self.repo
                        .reference(&self.tracking_ref(), head, true, "hypertask: push")
                        .map_err(self.git("cannot record the pushed commit"))?;
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
                redact_url(&location.url()),
                self.workdir().display()
            ),
        ))
    }

    /// Pushes to a repository on this machine: copies the missing objects into it, then moves
    /// its branch with an atomic compare-and-swap against the commit last fetched (libgit2's
    /// local transport would overwrite a concurrent push instead of rejecting it).
    fn push_local(
        &self,
        path: &Path,
        head: Oid,
        expected: Option<Oid>,
    ) -> Result<Pushed, DriverError> {
        let shown = path.display();
        let remote = Repository::open(path)
            .map_err(|e| error::git(self.name(), format!("cannot open the remote {shown}"), e))?;
        if !remote.is_bare() {
            return Err(error::config(
                self.name(),
                format!(
                    "the remote {shown} is not a bare repository; create one with \
                     `git init --bare` (git refuses pushes to a checked-out branch too)"
                ),
            ));
        }
        let mut walk = self
            .repo
            .revwalk()
            .map_err(self.git("cannot walk history"))?;
        walk.push(head).map_err(self.git("cannot walk history"))?;
        if let Some(e) = expected {
            walk.hide(e).map_err(self.git("cannot walk history"))?;
        }
        let mut pack = self
            .repo
            .packbuilder()
            .map_err(self.git("cannot pack objects"))?;
        pack.insert_walk(&mut walk)
            .map_err(self.git("cannot pack objects"))?;
        if pack.object_count() > 0 {
            let mut buf = git2::Buf::new();
            pack.write_buf(&mut buf)
                .map_err(self.git("cannot pack objects"))?;
            let odb = remote
                .odb()
                .map_err(|e| error::git(self.name(), format!("cannot open {shown}"), e))?;
            let mut writer = odb
                .packwriter()
                .map_err(|e| error::git(self.name(), format!("cannot write to {shown}"), e))?;
            writer
                .write_all(&buf)
                .map_err(|e| error::io(self.name(), format!("writing objects to {shown}"), e))?;
            writer
                .commit()
                .map_err(|e| error::git(self.name(), format!("cannot write to {shown}"), e))?;
        }
        let name = self.branch_ref();
        let msg = format!("push from hypertask on {}", self.clone.host);
        let result = match expected {
            Some(old) => remote.reference_matching(&name, head, true, old, &msg),
            None => remote.reference(&name, head, false, &msg),
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
                ) =>
            {
                return Ok(Pushed::Rejected(e.message().to_owned()))
            }
            Err(e) => return Err(error::git(self.name(), format!("cannot update {shown}"), e)),
        }
        if expected.is_none() && remote.head().is_err() {
            // A fresh bare repository: let `git clone` check out this branch.
            let _ = remote.set_head(&name);
        }
        Ok(Pushed::Done)
    }

    /// Pushes over the network; the server rejects the update when its branch moved since
    /// the commit our push builds on.
    fn push_network(&self) -> Result<Pushed, DriverError> {
        let mut remote = self
            .repo
            .find_remote(ORIGIN)
            .map_err(self.git("cannot find the remote"))?;
        let url = redact_url(remote.url().unwrap_or_default());
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        let result = {
            let mut cbs = self.callbacks();
            cbs.push_update_reference(|refname, status| {
                if let Some(s) = status {
                    *rejected.borrow_mut() = Some(format!("{refname}: {s}"));
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(cbs);
            let b = self.branch_ref();
            remote.push(&[format!("{b}:{b}").as_str()], Some(&mut opts))
        };
        match result {
            Ok(()) => match rejected.into_inner() {
                Some(why) => Ok(Pushed::Rejected(why)),
                None => Ok(Pushed::Done),
            },
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
                Ok(Pushed::Rejected(e.message().to_owned()))
            }
            Err(e) => Err(error::git(self.name(), format!("cannot push to {url}"), e)),
        }
    }

    /// Whether the remote can be reached, by fetching from it.
    pub(crate) fn probe(&self) -> Result<(), DriverError> {
        self.fetch()
    }

    /// Whether the clone's git directory is writable.
    pub(crate) fn probe_writable(&self) -> Result<(), DriverError> {
        let probe = self.workdir().join(".git").join("hypertask-check");
        fs::write(&probe, b"ok")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| error::io(self.name(), probe.display(), e))
    }
}

/// Parses a task file's bytes; it must hold the task it is named for.
pub(crate) fn parse_task(id: &TaskId, bytes: &[u8]) -> Result<Task, ()> {
    match Task::from_json(bytes) {
        Ok(t) if t.id() == id => Ok(t),
        _ => Err(()),
    }
}

/// Jittered pause before retrying a rejected push, so racing clients spread out.
fn backoff(attempt: u32) {
    use rand::Rng;
    let base = 5u64 * u64::from(attempt.min(6));
    let jitter = rand::rng().random_range(0..=base);
    std::thread::sleep(Duration::from_millis(base + jitter));
}

/// This machine's name, for commit messages.
fn hostname() -> String {
    let from_env = ["HOSTNAME", "COMPUTERNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|h| !h.trim().is_empty());
    let from_file = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .map(|h| h.trim().to_owned())
            .find(|h| !h.is_empty())
    };
    from_env
        .map(|h| h.trim().to_owned())
        .or_else(from_file)
        .unwrap_or_else(|| "an unknown host".to_owned())
}
