//! A [`Store`] over a synchronous backend (files, an embedded database, a C library): the
//! backend implements [`BlockingStore`] with plain functions and [`Blocking`] runs each call
//! on tokio's blocking thread pool, never on the async reactor.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::driver::{Access, DriverInfo, Health};
use crate::error::{DriverError, ErrorKind};
use crate::hash::ContentHash;
use crate::store::{Gets, Puts, Store, StoreInventory, Write};
use crate::task::TaskId;

/// [`Store`] with blocking methods. Wrap it in [`Blocking`] to get a [`Store`]:
///
/// ```ignore
/// let driver = StoreDriver::new(Blocking::new(MySqliteStore::open(&path)?));
/// ```
///
/// Each method has the contract of the [`Store`] method of the same name; it may block (it
/// runs on a thread of its own), and it must make its own decision and write atomic with
/// respect to other processes (a lock file, a transaction) — [`crate::decide`] is the rule.
pub trait BlockingStore: Send + Sync + Debug + 'static {
    /// Kind, instance name and capabilities.
    fn info(&self) -> DriverInfo;

    /// Starts a sync.
    ///
    /// # Behavior
    /// As [`Store::begin`]: with [`Access::Read`] nothing is written until the next `begin`.
    fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        Ok(())
    }

    /// The root hash of everything stored, when it is cheap to tell.
    ///
    /// # Behavior
    /// As [`Store::root`]: `Ok(None)` when the store cannot tell without listing.
    fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        Ok(None)
    }

    /// Every stored task's hash and version.
    ///
    /// # Behavior
    /// As [`Store::list`]: unreadable entries are problems, left untouched.
    fn list(&self) -> Result<StoreInventory, DriverError>;

    /// Fetches tasks by id.
    ///
    /// # Behavior
    /// As [`Store::get`]: every id answered once, keyed by id; missing is `Ok(None)`.
    fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError>;

    /// Writes tasks conditionally.
    ///
    /// # Behavior
    /// As [`Store::put`]: compare-and-swap per write ([`crate::decide`]), never a torn entry,
    /// never over an entry that could not be parsed.
    fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError>;

    /// Makes what `put` wrote durable and visible upstream.
    ///
    /// # Behavior
    /// As [`Store::finish`]: with nothing written since `begin`, does nothing.
    fn finish(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Whether the store is reachable and writable.
    ///
    /// # Behavior
    /// As [`Store::check`].
    fn check(&self) -> Result<Health, DriverError>;

    /// As [`Store::take_created`].
    fn take_created(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The [`Store`] of a [`BlockingStore`]: every call runs in [`tokio::task::spawn_blocking`].
/// A panic in the backend resumes in the caller, where [`crate::Checked`] reports it.
#[derive(Debug)]
pub struct Blocking<S> {
    inner: Arc<S>,
}

impl<S: BlockingStore> Blocking<S> {
    /// Wraps a blocking store.
    pub fn new(store: S) -> Blocking<S> {
        Blocking {
            inner: Arc::new(store),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let store = self.inner.clone();
        run_blocking(&self.inner.info().name, move || f(&store)).await
    }
}

/// Runs blocking work of driver instance `name` (file I/O, an embedded database, a C
/// library) on tokio's blocking thread pool, never on the async reactor. A panic resumes in
/// the caller, where [`crate::Checked`] reports it as the driver's; a call cancelled by a
/// runtime shutting down is an [`ErrorKind::Internal`] error naming the driver.
pub async fn run_blocking<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(DriverError::new(
            name,
            ErrorKind::Internal,
            "the driver's blocking call was cancelled (the runtime is shutting down)",
        )),
    }
}

#[async_trait]
impl<S: BlockingStore> Store for Blocking<S> {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        self.run(move |s| s.begin(access)).await
    }

    async fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        self.run(|s| s.root()).await
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        self.run(|s| s.list()).await
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let ids = ids.to_vec();
        self.run(move |s| s.get(&ids)).await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.run(move |s| s.put(writes)).await
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.run(|s| s.finish()).await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.run(|s| s.check()).await
    }

    fn take_created(&self) -> Vec<String> {
        self.inner.take_created()
    }
}
