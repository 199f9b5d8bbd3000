//! The git driver for hypertask (DESIGN.md §4, git).
//!
//! Tasks live as `tasks/<id>.json` (the fs driver's file format) in a working clone, which is a
//! normal git repository: `git log`, `git clone`, hand edits committed with plain git all work.
//! With a `remote`, every read fetches first and every write is committed and pushed; when the
//! two histories diverged they are joined with a merge commit whose task files are merged per
//! task with the core merge rule — never a textual merge, never a conflict marker. A push that
//! loses a race fetches, merges and pushes again.
//!
//! The driver implements [`hypertask_core::Store`]; [`hypertask_core::StoreDriver`] adds the
//! merge and compare-and-swap retry. All git work runs on tokio's blocking pool.
#![deny(missing_docs)]

mod clone;
mod commit;
mod config;
mod error;
mod integrate;
mod store;
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
        let store = GitStore::new(&spec.name, &config, &spec.data_dir)?;
        Ok(Arc::new(GitDriver::new(store)) as Arc<dyn hypertask_core::Driver>)
    });
}
