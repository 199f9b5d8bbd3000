//! The working clone: opening or creating it, the per-clone process lock, fetch, the per-task
//! merge of diverged histories, commits and pushes. Everything here blocks; the store calls it
//! from `spawn_blocking`.
//!
//! The working tree's `tasks/` directory is the store: reads and compare-and-swap writes go to
//! its files, commits record them, and remote changes are brought into it file by file (never
//! with a textual merge, never with conflict markers). Files this module cannot parse are left
//! exactly as they are.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{
    AutotagOption, Commit, Cred, CredentialType, FetchOptions, FileMode, IndexEntry, IndexTime,
    MergeOptions, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository, RepositoryInitOptions,
    Signature, Status, StatusOptions, Tree,
};
use hypertask_core::files::{lock_file, write_atomic, TaskDir};
use hypertask_core::{merge, DriverError, ErrorKind, Task, TaskId};

use crate::config::{redact_url, RemoteLocation, Settings};
use crate::error;

/// The name of the remote in the clone.
const ORIGIN: &str = "origin";
/// The directory of task files inside the repository.
pub(crate) const TASKS_DIR: &str = "tasks";
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
            settings.path.join(TASKS_DIR),
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
    clone: &'a WorkingClone,
    repo: Repository,
    _lock: File,
}

/// The outcome of one push attempt.
enum Pushed {
    Done,
    /// Someone else moved the remote branch first.
    Rejected(String),
}

impl Session<'_> {
    fn name(&self) -> &str {
        &self.clone.name
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.clone.settings.branch)
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/{ORIGIN}/{}", self.clone.settings.branch)
    }

    fn git(&self, context: impl std::fmt::Display) -> impl FnOnce(git2::Error) -> DriverError + '_ {
        let context = context.to_string();
        move |e| error::git(self.name(), context, e)
    }

    fn workdir(&self) -> &Path {
        &self.clone.settings.path
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
        fs::create_dir_all(self.clone.tasks.dir())
            .map_err(|e| error::io(self.name(), self.clone.tasks.dir().display(), e))
    }

    /// The branch's commit, `None` before the first commit.
    fn head(&self) -> Result<Option<Commit<'_>>, DriverError> {
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

    fn is_descendant(&self, commit: Oid, ancestor: Oid) -> Result<bool, DriverError> {
        self.repo
            .graph_descendant_of(commit, ancestor)
            .map_err(self.git("cannot compare histories"))
    }

    fn empty_tree(&self) -> Result<Tree<'_>, DriverError> {
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

    /// Moves the branch to include `remote`: nothing when it already does, a fast-forward when
    /// the branch is behind, else a merge commit (both parents) whose task files are merged
    /// with the core rule. Uncommitted task edits in the working tree are kept on top.
    fn integrate(&self, remote: Oid) -> Result<(), DriverError> {
        let head = self.head()?;
        if let Some(h) = &head {
            if h.id() == remote || self.is_descendant(h.id(), remote)? {
                return Ok(());
            }
        }
        let theirs = self
            .repo
            .find_commit(remote)
            .map_err(self.git("cannot read the fetched commit"))?;
        let their_tree = theirs
            .tree()
            .map_err(self.git("cannot read the fetched tree"))?;
        let our_tree = match &head {
            Some(h) => h
                .tree()
                .map_err(self.git("cannot read the branch's tree"))?,
            None => self.empty_tree()?,
        };
        let fast_forward = match &head {
            None => true,
            Some(h) => self.is_descendant(remote, h.id())?,
        };
        let (target, target_tree) = if fast_forward {
            (remote, their_tree)
        } else {
            let h = head.as_ref().expect("a merge has a local side");
            let base_tree = match self.repo.merge_base(h.id(), remote) {
                Ok(b) => self
                    .repo
                    .find_commit(b)
                    .and_then(|c| c.tree())
                    .map_err(self.git("cannot read the merge base"))?,
                // Unrelated histories (two clients that both started on an empty remote).
                Err(_) => self.empty_tree()?,
            };
            let (tree, merged) = self.merge_trees(&base_tree, &our_tree, &their_tree)?;
            let message = format!(
                "hypertask: merge {ORIGIN}/{} on {} ({})",
                self.clone.settings.branch,
                self.clone.host,
                count_tasks(merged)
            );
            let sig = self.signature()?;
            let id = self
                .repo
                .commit(None, &sig, &sig, &message, &tree, &[h, &theirs])
                .map_err(self.git("cannot write the merge commit"))?;
            (id, tree)
        };
        self.update_worktree(&our_tree, &target_tree)?;
        self.move_branch(head.as_ref().map(Commit::id), target)
    }

    /// Merges three trees: task files per task (the side that changed wins; both changed →
    /// the core merge rule; an unparsable side is kept as is), other files with git's own
    /// merge, their conflicts resolved in favour of the local side. Returns the tree and how
    /// many task files differ from ours.
    fn merge_trees(
        &self,
        base: &Tree<'_>,
        ours: &Tree<'_>,
        theirs: &Tree<'_>,
    ) -> Result<(Tree<'_>, usize), DriverError> {
        let mut opts = MergeOptions::new();
        opts.find_renames(false);
        let mut index = self
            .repo
            .merge_trees(base, ours, theirs, Some(&opts))
            .map_err(self.git("cannot merge trees"))?;
        let mut names = BTreeSet::new();
        for tree in [base, ours, theirs] {
            names.extend(self.task_entries(tree)?);
        }
        let mut changed = 0;
        for id in names {
            let rel = task_rel_path(&id);
            let (b, o, t) = (
                entry_id(base, &rel),
                entry_id(ours, &rel),
                entry_id(theirs, &rel),
            );
            let result = if o == t || t == b {
                o
            } else if o == b {
                t
            } else {
                self.merge_blobs(&id, o, t)?
            };
            if result != o {
                changed += 1;
            }
            set_entry(&mut index, &rel, result, FileMode::Blob)
                .map_err(self.git(format!("cannot stage {rel}")))?;
        }
        // Conflicts left are in foreign files (a README edited on both sides): keep ours.
        let conflicts: Vec<git2::IndexConflict> = index
            .conflicts()
            .and_then(|c| c.collect::<Result<_, _>>())
            .map_err(self.git("cannot read merge conflicts"))?;
        for c in conflicts {
            let Some(entry) = c.our.as_ref().or(c.their.as_ref()).or(c.ancestor.as_ref()) else {
                continue;
            };
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            tracing::warn!(driver = %self.name(), path = %path, "both sides changed a non-task file; keeping the local version");
            let keep = c.our.as_ref().map(|e| (e.id, e.mode));
            index
                .remove_path(Path::new(&path))
                .map_err(self.git(format!("cannot resolve {path}")))?;
            if let Some((id, mode)) = keep {
                index
                    .add(&index_entry(&path, id, mode))
                    .map_err(self.git(format!("cannot resolve {path}")))?;
            }
        }
        let id = index
            .write_tree_to(&self.repo)
            .map_err(self.git("cannot write the merged tree"))?;
        let tree = self
            .repo
            .find_tree(id)
            .map_err(self.git("cannot read the merged tree"))?;
        Ok((tree, changed))
    }

    /// Both sides changed one task file: merge the two states with the core rule. A side
    /// that is not a valid task is kept as it is (reported by the next listing) rather than
    /// guessed at; the valid state stays in history and in every cache that synced it.
    fn merge_blobs(
        &self,
        id: &TaskId,
        ours: Option<Oid>,
        theirs: Option<Oid>,
    ) -> Result<Option<Oid>, DriverError> {
        let parse = |oid: Option<Oid>| -> Result<Result<Option<Task>, ()>, DriverError> {
            let Some(oid) = oid else { return Ok(Ok(None)) };
            let blob = self
                .repo
                .find_blob(oid)
                .map_err(self.git(format!("cannot read {}", task_rel_path(id))))?;
            Ok(parse_task(id, blob.content()).map(Some).map_err(|_| ()))
        };
        let (a, b) = match (parse(ours)?, parse(theirs)?) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(()), _) => return Ok(ours),
            (_, Err(())) => return Ok(theirs),
        };
        match merge(a.as_ref(), b.as_ref()) {
            Ok(Some(task)) => self
                .repo
                .blob(&task.to_pretty_json())
                .map(Some)
                .map_err(self.git("cannot write a merged task")),
            Ok(None) => Ok(None),
            Err(e) => Err(DriverError::new(
                self.name(),
                ErrorKind::InvalidData,
                e.to_string(),
            )),
        }
    }

    /// The valid task ids with a file directly in `tasks/` of `tree`.
    fn task_entries(&self, tree: &Tree<'_>) -> Result<Vec<TaskId>, DriverError> {
        let Ok(entry) = tree.get_path(Path::new(TASKS_DIR)) else {
            return Ok(Vec::new());
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(Vec::new());
        }
        let sub = self
            .repo
            .find_tree(entry.id())
            .map_err(self.git("cannot read the tasks directory"))?;
        Ok(sub
            .iter()
            .filter(|e| e.kind() == Some(ObjectType::Blob))
            .filter_map(|e| task_id_of_name(e.name()?))
            .collect())
    }

    /// Makes the working tree and the index follow the branch from `from` to `to`. Files the
    /// user changed and did not commit are never overwritten: a valid task edit is merged with
    /// the incoming state and stays uncommitted; anything else is left exactly as it is.
    fn update_worktree(&self, from: &Tree<'_>, to: &Tree<'_>) -> Result<(), DriverError> {
        let diff = self
            .repo
            .diff_tree_to_tree(Some(from), Some(to), None)
            .map_err(self.git("cannot compare trees"))?;
        let mut index = self
            .repo
            .index()
            .map_err(self.git("cannot open the index"))?;
        for delta in diff.deltas() {
            let (old, new) = (delta.old_file(), delta.new_file());
            let Some(rel) = new.path().or(old.path()).map(Path::to_owned) else {
                continue;
            };
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            let old_id = (!old.id().is_zero()).then(|| old.id());
            let new_id = (!new.id().is_zero()).then(|| new.id());
            let new_mode = new.mode();
            let full = self.workdir().join(&rel);
            if !matches!(
                new_mode,
                FileMode::Blob | FileMode::BlobExecutable | FileMode::Unreadable
            ) || !matches!(
                old.mode(),
                FileMode::Blob | FileMode::BlobExecutable | FileMode::Unreadable
            ) {
                // Symlinks and submodules: record them, leave the working tree to plain git.
                set_entry(&mut index, &rel_str, new_id, new_mode)
                    .map_err(self.git(format!("cannot stage {rel_str}")))?;
                continue;
            }
            let current = match fs::read(&full) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(_) => {
                    // A directory or an unreadable file in the way: leave it.
                    set_entry(&mut index, &rel_str, new_id, new_mode)
                        .map_err(self.git(format!("cannot stage {rel_str}")))?;
                    continue;
                }
            };
            let current_id = match &current {
                Some(b) => Some(
                    Oid::hash_object(ObjectType::Blob, b)
                        .map_err(self.git(format!("cannot hash {rel_str}")))?,
                ),
                None => None,
            };
            let new_bytes = match new_id {
                Some(id) => Some(
                    self.repo
                        .find_blob(id)
                        .map_err(self.git(format!("cannot read {rel_str}")))?
                        .content()
                        .to_vec(),
                ),
                None => None,
            };
            let wanted: Option<Vec<u8>> = if current_id == old_id {
                new_bytes
            } else if let (Some(id), true) = (task_id_of_path(&rel_str), current.is_some()) {
                // An uncommitted edit of a task: merge it with the incoming state.
                let mine = parse_task(&id, current.as_deref().unwrap_or_default());
                let theirs = match &new_bytes {
                    Some(b) => parse_task(&id, b).map(Some),
                    None => Ok(None),
                };
                match (mine, theirs) {
                    (Ok(mine), Ok(theirs)) => match merge(Some(&mine), theirs.as_ref()) {
                        Ok(Some(m)) if Some(&m) != Some(&mine) => Some(m.to_pretty_json()),
                        _ => current.clone(),
                    },
                    _ => current.clone(),
                }
            } else {
                current.clone()
            };
            if wanted != current {
                match &wanted {
                    Some(bytes) => {
                        write_atomic(&full, bytes, false)
                            .map_err(|e| error::io(self.name(), full.display(), e))?;
                        set_executable(&full, new_mode == FileMode::BlobExecutable);
                    }
                    None => {
                        remove_file(&full, self.workdir())
                            .map_err(|e| error::io(self.name(), full.display(), e))?;
                    }
                }
            }
            let wanted_id = match &wanted {
                Some(b) => Some(
                    Oid::hash_object(ObjectType::Blob, b)
                        .map_err(self.git(format!("cannot hash {rel_str}")))?,
                ),
                None => None,
            };
            if wanted_id == new_id && wanted.is_some() {
                // Clean: let the index record the file's fresh metadata.
                index
                    .add_path(&rel)
                    .map_err(self.git(format!("cannot stage {rel_str}")))?;
            } else {
                set_entry(&mut index, &rel_str, new_id, new_mode)
                    .map_err(self.git(format!("cannot stage {rel_str}")))?;
            }
        }
        index.write().map_err(self.git("cannot write the index"))
    }

    /// Moves the branch from `old` to `new`, failing if someone moved it meanwhile.
    fn move_branch(&self, old: Option<Oid>, new: Oid) -> Result<(), DriverError> {
        let name = self.branch_ref();
        let msg = "hypertask: update from remote";
        let r = match old {
            Some(old) => self.repo.reference_matching(&name, new, true, old, msg),
            None => self.repo.reference(&name, new, false, msg),
        };
        r.map(|_| ()).map_err(self.git("cannot move the branch"))
    }

    fn signature(&self) -> Result<Signature<'static>, DriverError> {
        let s = &self.clone.settings;
        let from_git = self.repo.signature().ok();
        let name = s
            .author_name
            .clone()
            .or_else(|| from_git.as_ref().and_then(|g| g.name().map(str::to_owned)))
            .unwrap_or_else(|| "hypertask".to_owned());
        let email = s
            .author_email
            .clone()
            .or_else(|| from_git.as_ref().and_then(|g| g.email().map(str::to_owned)))
            .unwrap_or_else(|| format!("hypertask@{}", self.clone.host));
        Signature::now(&name, &email).map_err(|e| {
            error::config(
                self.name(),
                format!("invalid commit author {name:?} <{email}>: {}", e.message()),
            )
        })
    }

    /// Commits the task files in `written` plus any other valid task file edited in the
    /// working tree and not yet committed. Files that are not valid tasks are never staged.
    /// Returns whether a commit was made.
    pub(crate) fn commit(&self, written: &[TaskId]) -> Result<bool, DriverError> {
        let mut paths: BTreeSet<String> = written.iter().map(task_rel_path).collect();
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(false)
            .exclude_submodules(true)
            .pathspec(format!("{TASKS_DIR}/"));
        let statuses = self
            .repo
            .statuses(Some(&mut opts))
            .map_err(self.git("cannot read the working tree's status"))?;
        for entry in statuses.iter() {
            let Some(path) = entry.path() else { continue };
            let Some(id) = task_id_of_path(path) else {
                continue;
            };
            if !entry
                .status()
                .intersects(Status::WT_NEW | Status::WT_MODIFIED | Status::WT_TYPECHANGE)
            {
                continue;
            }
            if self.clone.tasks.read(&id).is_ok_and(|t| t.is_some()) {
                paths.insert(path.to_owned());
            }
        }
        drop(statuses);
        let mut index = self
            .repo
            .index()
            .map_err(self.git("cannot open the index"))?;
        for p in &paths {
            index
                .add_path(Path::new(p))
                .map_err(self.git(format!("cannot stage {p}")))?;
        }
        index.write().map_err(self.git("cannot write the index"))?;
        let tree_id = index
            .write_tree()
            .map_err(self.git("cannot write the tree"))?;
        let head = self.head()?;
        let old_tree = match &head {
            Some(h) => h
                .tree()
                .map_err(self.git("cannot read the branch's tree"))?,
            None => self.empty_tree()?,
        };
        if old_tree.id() == tree_id {
            return Ok(false);
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(self.git("cannot read the tree"))?;
        let changed = self.count_task_changes(&old_tree, &tree)?;
        let message = format!("hypertask: {} on {}", count_tasks(changed), self.clone.host);
        let sig = self.signature()?;
        let parents: Vec<&Commit<'_>> = head.iter().collect();
        self.repo
            .commit(
                Some(&self.branch_ref()),
                &sig,
                &sig,
                &message,
                &tree,
                &parents,
            )
            .map_err(self.git("cannot commit"))?;
        Ok(true)
    }

    fn count_task_changes(&self, from: &Tree<'_>, to: &Tree<'_>) -> Result<usize, DriverError> {
        let diff = self
            .repo
            .diff_tree_to_tree(Some(from), Some(to), None)
            .map_err(self.git("cannot compare trees"))?;
        Ok(diff
            .deltas()
            .filter(|d| {
                d.new_file()
                    .path()
                    .or(d.old_file().path())
                    .and_then(Path::to_str)
                    .is_some_and(|p| task_id_of_path(p).is_some())
            })
            .count())
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

/// "1 task changed" / "3 tasks changed".
fn count_tasks(n: usize) -> String {
    if n == 1 {
        "1 task changed".to_owned()
    } else {
        format!("{n} tasks changed")
    }
}

/// `tasks/<id>.json`.
pub(crate) fn task_rel_path(id: &TaskId) -> String {
    format!("{TASKS_DIR}/{id}.json")
}

/// The task id of a repository path `tasks/<id>.json`.
fn task_id_of_path(path: &str) -> Option<TaskId> {
    let name = path.strip_prefix(TASKS_DIR)?.strip_prefix('/')?;
    task_id_of_name(name)
}

fn task_id_of_name(name: &str) -> Option<TaskId> {
    let stem = name.strip_suffix(".json")?;
    TaskId::new(stem).ok()
}

/// Parses a task file's bytes; it must hold the task it is named for.
fn parse_task(id: &TaskId, bytes: &[u8]) -> Result<Task, ()> {
    match Task::from_json(bytes) {
        Ok(t) if t.id() == id => Ok(t),
        _ => Err(()),
    }
}

fn entry_id(tree: &Tree<'_>, rel: &str) -> Option<Oid> {
    tree.get_path(Path::new(rel))
        .ok()
        .filter(|e| e.kind() == Some(ObjectType::Blob))
        .map(|e| e.id())
}

/// An index entry for `path` without file metadata: plain git re-hashes the file to compare.
fn index_entry(path: &str, id: Oid, mode: u32) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Sets (or, with `None`, removes) the index entry of `path`, clearing any conflict on it.
fn set_entry(
    index: &mut git2::Index,
    path: &str,
    id: Option<Oid>,
    mode: FileMode,
) -> Result<(), git2::Error> {
    match index.remove_path(Path::new(path)) {
        Ok(()) => {}
        Err(e) if e.code() == git2::ErrorCode::NotFound => {}
        Err(e) => return Err(e),
    }
    match id {
        Some(id) => index.add(&index_entry(path, id, u32::from(mode))),
        None => Ok(()),
    }
}

fn set_executable(path: &Path, executable: bool) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if executable {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, executable);
}

/// Removes a file and the directories it leaves empty, up to (not including) `root`.
fn remove_file(path: &Path, root: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut dir: Option<PathBuf> = path.parent().map(Path::to_owned);
    while let Some(d) = dir {
        if d == root
            || !d.starts_with(root)
            || d.ends_with(TASKS_DIR)
            || fs::remove_dir(&d).is_err()
        {
            break;
        }
        dir = d.parent().map(Path::to_owned);
    }
    Ok(())
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
