//! The driver contract (docs/architecture.md): what the sync engine asks of any upstream.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use async_trait::async_trait;
use serde::Serialize;

use crate::bucket::{bucket_hashes, in_any, in_buckets, Bucket, BucketHashes, Depth};
use crate::error::{DriverError, ErrorKind};
use crate::hash::{root_hash, ContentHash, Hashes};
use crate::task::{Task, TaskId};

/// What a driver can do, declared by the driver itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Largest batch `resolve` accepts at once.
    pub max_batch: usize,
    /// Answers `hashes(Some(root))` with [`Listing::Unchanged`] without sending the map.
    pub cheap_root: bool,
    /// Writes are compare-and-swap: concurrent clients never lose an update.
    pub atomic_writes: bool,
    /// Data lives on another machine (network, remote repository).
    pub remote: bool,
    /// Answers [`Driver::buckets`] and [`Driver::hashes_in`] more cheaply than its full
    /// listing: the engine then compares bucket hashes and fetches only the differing
    /// buckets' entries instead of the whole map.
    pub buckets: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            max_batch: crate::sync::DEFAULT_BATCH,
            cheap_root: false,
            atomic_writes: true,
            remote: false,
            buckets: false,
        }
    }
}

/// A driver instance's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverInfo {
    /// The kind (`fs`, `git`, …), as in `type = "…"`.
    pub kind: String,
    /// The instance name, as in `[drivers.NAME]`.
    pub name: String,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// The outcome of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Reachable and writable.
    pub ok: bool,
    /// Human-readable detail: location, server version, task count.
    pub detail: String,
}

/// The upstream's map of task id → content hash, plus entries it could not read.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Every valid task's hash.
    pub hashes: Hashes,
    /// Entries skipped as invalid, each naming what and where. They are left untouched.
    pub problems: Vec<Problem>,
}

/// An upstream entry that could not be read; it is skipped and left untouched.
#[derive(Debug)]
pub struct Problem {
    /// The task the entry belongs to, when that is known.
    pub id: Option<TaskId>,
    /// What is wrong and where.
    pub error: DriverError,
}

impl Problem {
    /// Whether a listing restricted to `buckets` reports it: its id is in one of them, or it
    /// names no id (and so belongs to no bucket).
    pub fn belongs_to(&self, buckets: &BTreeSet<Bucket>) -> bool {
        self.id.as_ref().is_none_or(|id| in_any(buckets, id))
    }
}

impl Inventory {
    /// The root hash of `hashes`.
    pub fn root(&self) -> ContentHash {
        root_hash(&self.hashes)
    }

    /// The entries whose id falls in one of `buckets`, with the problems of those ids and
    /// those that name no id: what [`Driver::hashes_in`] answers.
    pub fn restricted(self, buckets: &BTreeSet<Bucket>) -> Inventory {
        Inventory {
            hashes: in_buckets(&self.hashes, buckets),
            problems: self
                .problems
                .into_iter()
                .filter(|p| p.belongs_to(buckets))
                .collect(),
        }
    }
}

/// The answer to [`Driver::hashes`].
#[derive(Debug)]
pub enum Listing {
    /// The upstream's root hash equals the one the caller knows: nothing to do.
    Unchanged,
    /// The upstream's full inventory.
    Changed(Inventory),
}

/// An upstream's bucket hashes at the depth it chose (see [`bucket_hashes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    /// How many hex digits name a bucket.
    pub depth: Depth,
    /// The hash of every non-empty bucket.
    pub hashes: BucketHashes,
}

/// The answer to [`Driver::buckets`].
#[derive(Debug)]
pub enum BucketListing {
    /// The upstream's root hash equals the one the caller knows: nothing to do.
    Unchanged,
    /// The upstream's bucket hashes.
    Changed(Buckets),
    /// The whole inventory, as [`Driver::hashes`] answers it: from a driver that found out on
    /// the way that its upstream cannot answer by bucket (an older server), so that finding
    /// out costs no second listing.
    Full(Inventory),
}

/// A listing as [`Driver::buckets`] answers it by default: its bucket hashes at the depth
/// [`Depth::for_tasks`] chooses for its size.
pub(crate) fn grouped(listing: Listing) -> BucketListing {
    match listing {
        Listing::Unchanged => BucketListing::Unchanged,
        Listing::Changed(inventory) => {
            let depth = Depth::for_tasks(inventory.hashes.len());
            BucketListing::Changed(Buckets {
                depth,
                hashes: bucket_hashes(&inventory.hashes, depth),
            })
        }
    }
}

/// The answer to [`Driver::wait_for_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The driver cannot tell when its upstream changes: the caller polls instead.
    Unsupported,
    /// The upstream may have changed: the caller syncs.
    Changed,
}

/// What a sync may do with an upstream, declared by [`Driver::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// List and read only (`sync --dry-run`): the upstream must be left exactly as it was.
    Read,
    /// List, read and write.
    Write,
}

/// Client states to resolve, keyed by task id: `None` reads, `Some` merges and stores.
pub type Batch = BTreeMap<TaskId, Option<Task>>;

/// Each task's outcome in a resolved batch, keyed by task id; a task that failed fails alone.
pub type Answers = BTreeMap<TaskId, Result<Option<Task>, DriverError>>;

/// An upstream the sync engine reconciles the local cache with.
///
/// Storage backends usually implement [`crate::Store`] and get this trait from
/// [`crate::StoreDriver`]; drivers that talk to a merging server implement it directly.
#[async_trait]
pub trait Driver: Send + Sync + Debug {
    /// Kind, instance name and capabilities.
    fn info(&self) -> DriverInfo;

    /// Starts a sync with this upstream.
    ///
    /// # Behavior
    /// - Called once per sync, before any other call of that sync.
    /// - With [`Access::Read`] the sync only lists and reads: the driver writes nothing anywhere
    ///   (no file, no commit, no push, no ref) until the next `begin`.
    /// - Calling it again starts a new sync; an unfinished one is abandoned.
    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        Ok(())
    }

    /// The upstream's id → hash map.
    ///
    /// # Behavior
    /// - With `known_root` equal to the upstream's root hash, returns [`Listing::Unchanged`]
    ///   when the driver can tell cheaply, else the full inventory (which the caller compares).
    /// - An empty upstream lists nothing (its root is the hash of `{}`).
    /// - Entries that cannot be read are reported in `problems`, never guessed at, never fixed.
    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError>;

    /// The upstream's bucket hashes, so a caller can find what differs without the whole map.
    ///
    /// # Behavior
    /// - With `known_root` equal to the upstream's root hash, [`BucketListing::Unchanged`]
    ///   when the driver can tell cheaply, as [`Driver::hashes`] does.
    /// - Otherwise [`BucketListing::Changed`]: the hash of every non-empty bucket, at a depth
    ///   the driver chooses ([`Depth::for_tasks`] of its task count by default), equal to
    ///   [`bucket_hashes`] of the map `hashes` would list. Entries that cannot be read are in
    ///   no bucket (as they are in no listing) and are reported by [`Driver::hashes_in`].
    /// - Or [`BucketListing::Full`] with what `hashes` answers, from a driver that learns only
    ///   now that it cannot answer by bucket.
    /// - The default lists with `hashes` and computes the buckets: correct for any driver, and
    ///   no cheaper than `hashes`. A driver that can answer more cheaply overrides this and
    ///   [`Driver::hashes_in`], and declares [`Capabilities::buckets`].
    async fn buckets(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<BucketListing, DriverError> {
        Ok(grouped(self.hashes(known_root).await?))
    }

    /// The upstream's inventory restricted to the ids in `buckets`.
    ///
    /// # Behavior
    /// - Exactly the entries of the map `hashes` would list whose id falls in one of
    ///   `buckets`, and the entries that cannot be read among those ids (plus any that name no
    ///   id, which belong to no bucket).
    /// - `buckets` may mix depths; an empty set lists nothing.
    /// - The default lists with `hashes` and filters.
    async fn hashes_in(&self, buckets: &BTreeSet<Bucket>) -> Result<Inventory, DriverError> {
        match self.hashes(None).await? {
            Listing::Changed(inventory) => Ok(inventory.restricted(buckets)),
            Listing::Unchanged => Err(DriverError::new(
                self.info().name,
                ErrorKind::Protocol,
                "answered an unconditional listing with `unchanged`",
            )),
        }
    }

    /// Merges each client state with the upstream's, stores the result and returns it.
    ///
    /// # Behavior
    /// - Answers every id of the batch exactly once, keyed by that id, and no other id; the
    ///   task in an answer has the id it is filed under. Order means nothing.
    /// - `id → None` reads: the answer is the upstream's state (or `None` when it has none)
    ///   and nothing is written.
    /// - The answer is `merge(client, upstream)` as of the write; resolving the same state
    ///   twice writes nothing the second time.
    /// - A task that cannot be resolved (corrupt upstream entry, a state filed under another
    ///   id) fails alone; the rest of the batch still resolves.
    /// - Concurrent resolves from several clients never lose an update.
    /// - In a sync begun with [`Access::Read`], a batch with any `Some` state is refused.
    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError>;

    /// Ends a sync begun with [`Access::Write`]: commit, push, flush.
    ///
    /// # Behavior
    /// - Called once, at the end of every writing sync, after its last `resolve`.
    /// - With nothing written since `begin` it does nothing (no empty commit, no push).
    async fn finish(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Whether the upstream is reachable and writable, and what it is.
    async fn check(&self) -> Result<Health, DriverError>;

    /// What this instance created on its way since the last call (a directory, a repository,
    /// a remote), each in a few words naming it, so a front end can say so once. Nothing by
    /// default.
    fn take_created(&self) -> Vec<String> {
        Vec::new()
    }

    /// Waits until the upstream may have changed, for drivers that can be told (a watched
    /// directory) rather than polled.
    ///
    /// # Behavior
    /// - The default answers [`Watch::Unsupported`] at once: the caller polls this driver.
    /// - The first call starts watching and answers [`Watch::Changed`] as soon as the watch is
    ///   in place (what changed before it is unknown). Each later call answers when something
    ///   changed since the previous call returned; changes in between are never lost, and
    ///   several coalesce into one answer. Spurious answers are allowed.
    /// - Dropping the future cancels the wait, never the watch.
    /// - An error (the watch cannot be set up) leaves polling to the caller, who may try again.
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        Ok(Watch::Unsupported)
    }
}
