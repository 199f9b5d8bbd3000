//! The working clone: opening or creating it, the per-clone process lock, and pointing it at
//! the configured branch and remote. Everything here blocks; the store calls it from
//! `spawn_blocking`. Fetch and push are in `transport`, merging in `integrate`, the working
//! tree in `worktree`, commits in `commit`.
//!
//! The working tree's `tasks/` directory is the store: reads and compare-and-swap writes go to
//! its files, commits record them, and remote changes are brought into it file by file (never
//! with a textual merge, never with conflict markers). Files the driver cannot parse are left
//! exactly as they are.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use git2::{Commit, Oid, Repository, RepositoryInitOptions, Tree};
use hypertask_core::files::{lock_file, TaskDir};
use hypertask_core::{redact_url, DriverError, ErrorKind, Task, TaskId};

use crate::config::Settings;
use crate::error;

/// The name of the remote in the clone.
pub(crate) const ORIGIN: &str = "origin";
/// How long to wait for another process working on the same clone.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// One driver instance's fixed facts.
#[derive(Debug)]
pub(crate) struct WorkingClone {
    pub(crate) name: String,
    pub(crate) settings: Settings,
    pub(crate) host: String,
    pub(crate) tasks: TaskDir,
    /// What this instance created (the clone, a local bare remote), told once by
    /// `take_created`.
    created: std::sync::Mutex<Vec<String>>,
}

impl WorkingClone {
    /// The facts of instance `name`.
    pub(crate) fn new(name: String, settings: Settings) -> WorkingClone {
        let tasks = TaskDir::new(
            settings.path.join(crate::tree::TASKS_DIR),
            Some(settings.path.join(".git").join("hypertask-index.json")),
            settings.durability,
        );
        WorkingClone {
            name,
            settings,
            host: hostname(),
            tasks,
            created: Default::default(),
        }
    }

    /// Records that this instance created `what` (a few words naming it).
    pub(crate) fn note_created(&self, what: String) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// What was created since the last call.
    pub(crate) fn take_created(&self) -> Vec<String> {
        std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()))
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
            Ok(_) => {
                self.note_created(format!("a git repository at {}", path.display()));
                Ok(())
            }
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

    /// How long one fetch or push may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.clone.settings.timeout
    }

    /// The largest task file the driver reads or writes.
    pub(crate) fn max_task_bytes(&self) -> u64 {
        self.clone.settings.max_task_bytes
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
    pub(crate) fn tracking(&self) -> Option<Oid> {
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
