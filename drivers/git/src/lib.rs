//! The git driver (see docs/storage.md for the layout of the repository it keeps).
//!
//! Tasks live as `tasks/<id>.json` (the fs driver's file format) in a working clone, which is a
//! normal git repository: `git log`, `git clone`, hand edits committed with plain git all work.
//! With a `remote`, every read fetches first and every write is committed and pushed; when the
//! two histories diverged they are joined with a merge commit whose task files are merged per
//! task with the core merge rule — never a textual merge, never a conflict marker. A push that
//! loses a race fetches, merges and pushes again.
//!
//! # Transport: the user's own `git`
//!
//! Fetch and push run the installed `git` program; libgit2 does everything local (objects,
//! trees, commits, the index). The alternative, libgit2's own https and ssh transports, would
//! link OpenSSL and libssh2 into every build and still not reach what the user's git reaches:
//! credential helpers, `~/.ssh/config` (`Host` aliases, `ProxyJump`, identity files), private
//! CAs from `http.sslCAInfo`/`GIT_SSL_CAINFO`, proxies, `insteadOf` rewrites, remote helpers.
//! Running git (as cargo's `net.git-fetch-with-cli` does) gets all of that for free, keeps the
//! build free of system libraries beyond a C compiler, and lets the server's receive-pack make
//! every push a compare-and-swap. git runs non-interactively, within the driver's timeout, its
//! output bounded; its failures are reported in one sentence naming the remote.
//!
//! # A remote is someone else's data
//!
//! Only `tasks/<id>.json` regular files are ever written from a remote's tree, never
//! executable, never through a symlink, never outside the clone or into `.git`; everything
//! else in a tree stays in git's object store (see `worktree`).
//!
//! The driver implements [`hypertask_core::Store`]; [`hypertask_core::StoreDriver`] adds the
//! merge and compare-and-swap retry. All git work runs on tokio's blocking pool.
#![deny(missing_docs)]

mod commit;
mod config;
mod error;
mod integrate;
mod preview;
mod repo;
mod root;
mod status;
mod store;
mod transport;
mod tree;
mod worktree;

use std::sync::Arc;

use hypertask_core::{Registry, StoreDriver};

pub use config::GitConfig;
pub use store::GitStore;

/// The driver kind, as in `type = "git"`.
pub const KIND: &str = "git";

/// The git driver: merge and compare-and-swap from core over a [`GitStore`].
pub type GitDriver = StoreDriver<GitStore>;

/// Registers the git driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        let config: GitConfig = spec.config()?;
        let config = config.relative_to(spec);
        let store = GitStore::new(&spec.name, &config, &spec.data_dir)?
            .with_limits(spec.timeout, spec.max_task_bytes)
            .with_durability(spec.durability);
        Ok(Arc::new(GitDriver::new(store)) as Arc<dyn hypertask_core::Driver>)
    });
}
