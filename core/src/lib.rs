//! hypertask core: the task document, its canonical hash and merge rule, the driver contract,
//! the local cache and the sync engine. The repository's `docs/` describes each piece.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod blocking;
mod bucket;
mod cache;
mod checked;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
pub mod daemon;
mod driver;
mod error;
pub mod external;
pub mod files;
mod hash;
mod head;
mod id;
pub mod manage;
mod memory;
mod merge;
mod redact;
mod registry;
mod secret;
mod spec;
mod store;
mod sync;
mod task;
mod watch;

pub use backoff::Backoff;
pub use blocking::{run_blocking, Blocking, BlockingStore};
pub use bucket::{bucket_hashes, in_any, in_buckets, Bucket, BucketHashes, Depth};
pub use cache::{
    CacheError, CacheLock, ConflictRecord, Quarantined, Replica, Side, DEFAULT_LOCK_TIMEOUT,
};
pub use checked::{Checked, DEFAULT_TIMEOUT};
pub use driver::{
    Access, Answers, Batch, BucketListing, Buckets, Capabilities, Driver, DriverInfo, Health,
    Inventory, Listing, Problem, Watch,
};
pub use error::{DriverError, ErrorKind};
pub use hash::{root_hash, ContentHash, Hashes};
pub use memory::MemoryStore;
pub use merge::{lost_values, merge, merge_tasks, LostValue};
pub use redact::redact_url;
pub use registry::{Factory, Registry};
pub use secret::Secret;
pub use spec::{expand_path, valid_namespace, DriverSpec, CORE_KEYS, DEFAULT_POLL_INTERVAL};
pub use store::{
    decide, Decision, Entry, Gets, PutOutcome, Puts, Store, StoreDriver, StoreInventory, Stored,
    Summary, Version, Write,
};
pub use sync::{
    DriverReport, DriverStatus, Engine, NoProgress, Progress, SyncOptions, SyncReport,
    DEFAULT_BATCH,
};
pub use task::{
    canonical_json, canonical_timestamp, format_timestamp, parse_timestamp, Change, ClockKey, Task,
    TaskError, TaskId, DEFAULT_MAX_TASK_BYTES, EPOCH, MAX_CLOCK_SKEW, MAX_TASK_DEPTH,
    TAG_CLOCK_PREFIX,
};
pub use watch::DirWatch;

/// Re-exported for drivers' `#[async_trait]` impls.
pub use async_trait::async_trait;
