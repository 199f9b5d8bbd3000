//! hypertask core: the task document, its canonical hash and merge rule, the driver contract,
//! the local cache and the sync engine. See DESIGN.md.
#![deny(missing_docs)]

mod cache;
#[cfg(feature = "conformance")]
pub mod conformance;
mod driver;
mod error;
pub mod external;
pub mod files;
mod hash;
mod merge;
mod registry;
mod store;
mod sync;
mod task;

pub use cache::{CacheError, CacheLock, ConflictRecord, Replica, DEFAULT_LOCK_TIMEOUT};
pub use driver::{Capabilities, Driver, DriverInfo, Health, Inventory, Listing, Problem, Resolved};
pub use error::{DriverError, ErrorKind};
pub use hash::{root_hash, ContentHash, Hashes};
pub use merge::{lost_values, merge, merge_tasks, LostValue};
pub use registry::{expand_path, DriverSpec, Factory, Registry};
pub use store::{MemoryStore, PutOutcome, Store, StoreDriver, Write};
pub use sync::{DriverReport, Engine, NoProgress, Progress, SyncOptions, SyncReport};
pub use task::{
    canonical_json, canonical_timestamp, format_timestamp, parse_timestamp, Change, Task,
    TaskError, TaskId, DEFAULT_MAX_TASK_BYTES, EPOCH, MAX_TASK_DEPTH,
};

/// Re-exported for drivers' `#[async_trait]` impls.
pub use async_trait::async_trait;
