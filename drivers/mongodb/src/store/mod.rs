//! [`MongoStore`]: the [`Store`] of one MongoDB collection. The store and its connection are
//! here, with the [`Store`] impl that ties the parts together: the root-document bookkeeping
//! that keeps a no-op sync to one round trip (`root`), the `bucket` field and the bucket
//! hashes that keep a small change to a few buckets' entries (`buckets`), listing and reading
//! (`read`), the
//! conditional writes (`write`) and a document's compare-and-swap version (`version`). The
//! document layout is in `document`, the change stream in `watch`.

mod buckets;
mod read;
mod root;
mod version;
mod write;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hypertask_core::{
    async_trait, Access, Bucket, Capabilities, ContentHash, DriverError, DriverInfo, ErrorKind,
    Gets, Health, PutOutcome, Puts, Store, StoreInventory, Summary, TaskId, Watch, Write,
};
use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use tokio::sync::OnceCell;

use crate::config::{MongoConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SERVER_SELECTION_TIMEOUT_MS};
use crate::error::convert;
use crate::watch::{follow, wait, WatchState};
use crate::KIND;

/// The driver's `max_batch`: reads of many ids come in one call, so [`Store::get`] can tell a
/// pull of most of the collection (one unfiltered `find`) from a few ids (`$in` lists). Writes
/// are batched by the sync's own batch size, which the driver splits as the server needs.
const MAX_BATCH: usize = 100_000;

/// One MongoDB collection holding one document per task (see the crate docs for the layout).
///
/// The client is created on first use, so building the store never connects.
pub struct MongoStore {
    name: String,
    config: MongoConfig,
    client: OnceCell<Client>,
    /// How many tasks the last listing found: how a `get` tells "most of the collection".
    listed: AtomicUsize,
    /// Whether this sync may write (a dry run leaves even the root document alone).
    writable: AtomicBool,
    /// Whether every document was last seen carrying its `bucket` (valid bucket hashes, or a
    /// listing that found or backfilled them all): a bucket's entries are then a range query.
    bucketed: AtomicBool,
    /// Set once the index on `bucket` is known to exist.
    indexed: OnceCell<()>,
    /// How long one operation may take (the driver table's `timeout`): bounds opening the
    /// change stream, which core's per-operation guard leaves unbounded.
    timeout: Duration,
    /// The change stream behind [`Store::wait_for_change`]; a lock so that one call opens it.
    watch: tokio::sync::Mutex<WatchState>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl MongoStore {
    /// A store for driver instance `name`. Fails only on a config that can never work.
    pub fn new(name: impl Into<String>, config: MongoConfig) -> Result<Self, DriverError> {
        let name = name.into();
        for (key, value) in [
            ("database", &config.database),
            ("collection", &config.collection),
        ] {
            if value.is_empty() || value.contains(['\0', '$']) {
                return Err(DriverError::new(
                    &name,
                    ErrorKind::Config,
                    format!("invalid {key} name {value:?} for the mongodb driver"),
                ));
            }
        }
        Ok(MongoStore {
            name,
            config,
            client: OnceCell::new(),
            listed: AtomicUsize::new(0),
            writable: AtomicBool::new(true),
            bucketed: AtomicBool::new(false),
            indexed: OnceCell::new(),
            timeout: hypertask_core::DEFAULT_TIMEOUT,
            watch: tokio::sync::Mutex::new(WatchState::Closed),
        })
    }

    /// The same store with `timeout` for opening its change stream (a driver table's
    /// `timeout`; 60 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same store on `client`, a client its caller built (to share its connection pool,
    /// or to observe its commands with the driver's command monitoring), instead of one built
    /// from the configuration's `uri` on first use. The database and collection still come
    /// from the configuration.
    pub fn with_client(self, client: Client) -> Self {
        MongoStore {
            client: OnceCell::new_with(Some(client)),
            ..self
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MongoConfig {
        &self.config
    }

    /// `database.collection`, for messages.
    fn namespace(&self) -> String {
        format!("{}.{}", self.config.database, self.config.collection)
    }

    /// What a failed operation was doing, for messages: the operation, the collection and the
    /// server (password redacted).
    fn doing(&self, what: &str) -> String {
        format!(
            "{what} in {} at {}",
            self.namespace(),
            self.config.redacted_uri()
        )
    }

    async fn client(&self) -> Result<&Client, DriverError> {
        self.client
            .get_or_try_init(|| async {
                let what = format!("`uri` {} cannot be used", self.config.redacted_uri());
                let mut options = ClientOptions::parse(&self.config.uri)
                    .await
                    .map_err(|e| convert(&self.name, &what, e))?;
                options.server_selection_timeout = self
                    .config
                    .server_selection_timeout()
                    .or(options.server_selection_timeout)
                    .or(Some(Duration::from_millis(
                        DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
                    )));
                options.connect_timeout = self
                    .config
                    .connect_timeout()
                    .or(options.connect_timeout)
                    .or(Some(Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)));
                options.app_name.get_or_insert_with(|| "hypertask".into());
                Client::with_options(options).map_err(|e| convert(&self.name, &what, e))
            })
            .await
    }

    async fn collection(&self) -> Result<Collection<Document>, DriverError> {
        Ok(self
            .client()
            .await?
            .database(&self.config.database)
            .collection(&self.config.collection))
    }

    /// Opens a change stream on the tasks collection and spawns the task that reads it:
    /// `None` when the server refuses change streams.
    async fn open_stream(&self) -> Result<Option<WatchState>, DriverError> {
        let coll = self.collection().await?;
        let what = self.doing("opening a change stream");
        // Only the fact of a change is wanted: keep the event's `_id` (its resume token, which
        // the stream needs), drop the rest (an insert's whole document).
        let opening = coll.watch().pipeline([doc! { "$project": { "_id": 1 } }]);
        let stream = match tokio::time::timeout(self.timeout, opening).await {
            Err(_) => {
                return Err(DriverError::new(
                    &self.name,
                    ErrorKind::Timeout,
                    format!(
                        "{what}: no answer within {:.1} s (the driver's `timeout`)",
                        self.timeout.as_secs_f64()
                    ),
                ))
            }
            Ok(Err(e)) => {
                let refused = matches!(*e.kind, mongodb::error::ErrorKind::Command(_));
                let error = convert(&self.name, &what, e);
                // A command error a retry cannot help: a standalone server ("The $changeStream
                // stage is only supported on replica sets"), or a user without the privilege.
                if refused && !error.is_retryable() {
                    return Ok(None);
                }
                return Err(error);
            }
            Ok(Ok(stream)) => stream.with_type::<Document>(),
        };
        Ok(Some(follow(
            stream,
            self.name.clone(),
            self.doing("following the change stream"),
        )))
    }

    fn invalid(&self, id: &str, message: impl fmt::Display) -> DriverError {
        DriverError::new(
            &self.name,
            ErrorKind::InvalidData,
            format!("document '{id}' in {}: {message}", self.namespace()),
        )
    }

    async fn check_server(&self) -> Result<Health, DriverError> {
        let client = self.client().await?;
        let db = client.database(&self.config.database);
        let what = self.doing("checking the server");
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        let version = db
            .run_command(doc! { "buildInfo": 1 })
            .await
            .ok()
            .and_then(|info| info.get_str("version").ok().map(str::to_owned))
            .unwrap_or_else(|| "unknown version".into());
        let tasks = self
            .collection()
            .await?
            .estimated_document_count()
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        let location = format!(
            "MongoDB {version} at {}, {} ({tasks} documents)",
            self.config.redacted_uri(),
            self.namespace()
        );
        // The write probe: one small document in a side collection, never among the tasks.
        let probe =
            db.collection::<Document>(&format!("{}.hypertask-check", self.config.collection));
        let stamp = hypertask_core::format_timestamp(chrono::Utc::now()).unwrap_or_default();
        match probe
            .replace_one(
                doc! { "_id": "probe" },
                doc! { "_id": "probe", "checked_at": stamp, "by": &self.name },
            )
            .upsert(true)
            .await
        {
            Ok(_) => Ok(Health {
                ok: true,
                detail: location,
            }),
            Err(e) => {
                let e = convert(&self.name, &self.doing("writing the check probe"), e);
                if e.is_retryable() {
                    Err(e)
                } else {
                    Ok(Health {
                        ok: false,
                        detail: format!("{location}, but not writable: {}", e.message()),
                    })
                }
            }
        }
    }
}

#[async_trait]
impl Store for MongoStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.into(),
            name: self.name.clone(),
            capabilities: Capabilities {
                max_batch: MAX_BATCH,
                cheap_root: true,
                atomic_writes: true,
                remote: true,
                buckets: true,
            },
        }
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        self.writable
            .store(access == Access::Write, Ordering::Relaxed);
        Ok(())
    }

    /// The root document's `root`, kept by every writer of this driver: one round trip.
    async fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        self.stored_root().await
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        self.list_all().await
    }

    /// The root document's `root` and, while valid, its bucket hashes: one round trip.
    async fn summary(&self) -> Result<Summary, DriverError> {
        self.stored_summary().await
    }

    /// One indexed query when every document carries its `bucket`, else a listing filtered.
    async fn list_in(&self, buckets: &BTreeSet<Bucket>) -> Result<StoreInventory, DriverError> {
        self.list_buckets(buckets).await
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        self.get_many(ids).await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let coll = self.collection().await?;
        if writes.is_empty() {
            return Ok(Puts::new());
        }
        let bumped = self.bump_before_writes().await?;
        let ids: Vec<TaskId> = writes.iter().map(|w| w.task.id().clone()).collect();
        let new: BTreeSet<TaskId> = writes
            .iter()
            .filter(|w| w.expected.is_none())
            .map(|w| w.task.id().clone())
            .collect();
        let puts = self.put_all(&coll, writes).await;
        // Whatever happened, a listing that overlapped these writes must not store what it
        // saw: the generation moves on, with the bucket hashes kept current or left behind.
        match &puts {
            Ok(answers) => {
                let inserted = answers
                    .iter()
                    .filter(|(id, a)| new.contains(*id) && matches!(a, Ok(PutOutcome::Written(_))))
                    .count();
                self.after_writes(&bumped, &ids, inserted).await?;
            }
            Err(_) => self.forget_root().await?,
        }
        puts
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.check_server().await
    }

    /// Follows a change stream on the tasks collection (changes by any client), where the
    /// server offers change streams (a replica set or sharded cluster; not a standalone
    /// server, which is polled).
    ///
    /// # Behavior
    /// - The first call opens the stream (giving up after the driver's `timeout`) and answers
    ///   [`Watch::Changed`]; a server that refuses it answers [`Watch::Unsupported`], then and
    ///   on every later call.
    /// - A background task reads the stream and keeps only the fact that something changed,
    ///   so a dropped wait loses nothing and a burst is one answer.
    /// - A stream that ends or fails makes the next call return a retryable error; the call
    ///   after it opens a new stream.
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        wait(&self.watch, self.open_stream()).await
    }
}
