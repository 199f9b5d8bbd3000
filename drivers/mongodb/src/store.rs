//! [`MongoStore`]: the [`Store`] of one MongoDB collection.
//!
//! Longer than most modules (~680 lines) because every operation shares the root-document
//! bookkeeping (generation, stored root) that keeps a no-op sync to one round trip; the
//! document layout is in `document`, the change stream in `watch`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hypertask_core::{
    async_trait, root_hash, Access, Capabilities, ContentHash, DriverError, DriverInfo, Entry,
    ErrorKind, Gets, Health, Problem, PutOutcome, Puts, Store, StoreInventory, Stored, TaskId,
    Version, Watch, Write,
};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::InsertManyError;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use tokio::sync::OnceCell;

use crate::config::{MongoConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SERVER_SELECTION_TIMEOUT_MS};
use crate::document::{from_document, to_document, HASH_FIELD};
use crate::error::{convert, is_duplicate_key};
use crate::watch::{follow, wait, WatchState};
use crate::KIND;

/// Most ids fetched with one `$in` query.
const MAX_IN: usize = 1000;

/// The driver's `max_batch`: reads of many ids come in one call, so [`Store::get`] can tell a
/// pull of most of the collection (one unfiltered `find`) from a few ids (`$in` lists). Writes
/// are batched by the sync's own batch size, which the driver splits as the server needs.
const MAX_BATCH: usize = 100_000;

/// The id of the document, in the side collection `<collection>.hypertask-meta`, that holds
/// the collection's root hash while no write has happened since it was computed.
const ROOT_DOC: &str = "root";

/// Conditional writes of one batch in flight at once.
const WRITE_CONCURRENCY: usize = 8;

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

    /// The side collection holding the root document.
    async fn meta(&self) -> Result<Collection<Document>, DriverError> {
        Ok(self
            .client()
            .await?
            .database(&self.config.database)
            .collection(&format!("{}.hypertask-meta", self.config.collection)))
    }

    /// The root document's generation (bumped around every batch of writes), if it exists.
    async fn root_generation(&self) -> Result<Option<i64>, DriverError> {
        let what = self.doing("reading the root document");
        let doc = self
            .meta()
            .await?
            .find_one(doc! { "_id": ROOT_DOC })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        Ok(doc.and_then(|d| generation(&d)))
    }

    /// Stores `root` as the collection's, unless a writer bumped the generation since `seen`
    /// was read before the listing. Best effort: a failure only costs the next no-op a listing.
    async fn store_root(&self, seen: Option<i64>, root: &ContentHash) {
        if !self.writable.load(Ordering::Relaxed) {
            return;
        }
        let Ok(meta) = self.meta().await else { return };
        let result = match seen {
            Some(generation) => {
                meta.update_one(
                    doc! { "_id": ROOT_DOC, "gen": generation },
                    doc! { "$set": { "root": root.as_str() } },
                )
                .await
            }
            None => {
                meta.update_one(
                    doc! { "_id": ROOT_DOC },
                    doc! { "$setOnInsert": { "gen": 0_i64, "root": root.as_str() } },
                )
                .upsert(true)
                .await
            }
        };
        // Not stored (no write permission, a lost race): the next no-op lists instead.
        let _ = result;
    }

    /// Drops the stored root and bumps its generation: before a batch of writes (so a failure
    /// after them never leaves a stale root) and after it (so a listing that overlapped the
    /// writes does not store its root).
    async fn forget_root(&self) -> Result<(), DriverError> {
        let what = self.doing("updating the root document");
        self.meta()
            .await?
            .update_one(
                doc! { "_id": ROOT_DOC },
                doc! { "$inc": { "gen": 1_i64 }, "$unset": { "root": "" } },
            )
            .upsert(true)
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        Ok(())
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

    async fn put_one(
        &self,
        coll: &Collection<Document>,
        write: Write,
    ) -> Result<PutOutcome, DriverError> {
        let id = write.task.id().clone();
        let new_hash = write.hash.clone();
        let doc = to_document(&write.task).map_err(|m| {
            DriverError::new(
                &self.name,
                ErrorKind::InvalidRequest,
                format!("task '{id}': {m}"),
            )
        })?;
        let what = self.doing(&format!("writing task '{id}'"));
        let outcome = match &write.expected {
            // Insert if absent; an equal document already there is a no-op, any other one a
            // duplicate key.
            None => {
                let filter = doc! { "_id": id.as_str(), HASH_FIELD: new_hash.as_str() };
                match coll.replace_one(filter, doc).upsert(true).await {
                    Ok(_) => PutOutcome::Written(Version::of_hash(&new_hash)),
                    Err(e) if is_duplicate_key(&e) => PutOutcome::Conflict,
                    Err(e) => return Err(convert(&self.name, &what, e)),
                }
            }
            // Replace only the version that was read (or an equal document, which changes
            // nothing).
            Some(expected) => {
                let filter = doc! {
                    "_id": id.as_str(),
                    "$or": [cas_filter(expected), { HASH_FIELD: new_hash.as_str() }],
                };
                let result = coll
                    .replace_one(filter, doc)
                    .await
                    .map_err(|e| convert(&self.name, &what, e))?;
                if result.matched_count == 1 {
                    PutOutcome::Written(Version::of_hash(&new_hash))
                } else {
                    PutOutcome::Conflict
                }
            }
        };
        Ok(outcome)
    }
}

/// The `gen` field of the root document.
fn generation(doc: &Document) -> Option<i64> {
    match doc.get("gen") {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

/// The version of a document: its stored `hash` field as written, so a compare-and-swap can
/// match it exactly even when another client wrote it without a hash (or with another one).
fn version_of(stored: Option<&Bson>) -> Version {
    match stored {
        Some(Bson::String(s)) => Version::new(s.as_str()),
        None => Version::new(ABSENT),
        Some(_) => Version::new(NOT_A_STRING),
    }
}

/// The filter matching documents whose version is `version`. Once hypertask writes a
/// document its `hash` is a string, so the two special versions match at most until then.
fn cas_filter(version: &Version) -> Document {
    match version.as_str() {
        ABSENT => doc! { HASH_FIELD: { "$exists": false } },
        NOT_A_STRING => doc! { HASH_FIELD: { "$exists": true, "$not": { "$type": "string" } } },
        v => doc! { HASH_FIELD: v },
    }
}

/// The version of a document without a `hash` field.
const ABSENT: &str = "absent";
/// The version of a document whose `hash` field is not a string.
const NOT_A_STRING: &str = "not-a-string";

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
        let what = self.doing("reading the root document");
        let doc = self
            .meta()
            .await?
            .find_one(doc! { "_id": ROOT_DOC })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        Ok(doc
            .as_ref()
            .and_then(|d| d.get_str("root").ok())
            .and_then(ContentHash::parse))
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        let seen = self.root_generation().await?;
        let coll = self.collection().await?;
        let what = self.doing("listing task hashes");
        let mut cursor = coll
            .find(doc! {})
            .projection(doc! { "_id": 1, HASH_FIELD: 1 })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        let mut inventory = StoreInventory::default();
        let mut unhashed = Vec::new();
        while let Some(doc) = cursor
            .try_next()
            .await
            .map_err(|e| convert(&self.name, &what, e))?
        {
            let id = match doc.get("_id") {
                Some(Bson::String(s)) if TaskId::is_valid(s) => {
                    TaskId::new(s.as_str()).expect("validated just above")
                }
                other => {
                    let shown = other.map_or_else(|| "none".to_owned(), Bson::to_string);
                    inventory.problems.push(Problem {
                        id: None,
                        error: self.invalid(
                            &shown,
                            "_id is not a task id (1 to 64 of A-Z a-z 0-9 _ -); left untouched",
                        ),
                    });
                    continue;
                }
            };
            match doc.get_str(HASH_FIELD).ok().and_then(ContentHash::parse) {
                Some(hash) => {
                    let version = Version::of_hash(&hash);
                    inventory.entries.insert(id, Entry { hash, version });
                }
                // Written by another client without a hash: read it whole and hash it.
                None => unhashed.push(id),
            }
        }
        let clean = inventory.problems.is_empty() && unhashed.is_empty();
        for chunk in unhashed.chunks(MAX_IN) {
            for (id, got) in self.get(chunk).await? {
                match got {
                    Ok(Some(stored)) => {
                        let hash = stored.task.hash();
                        let version = stored.version;
                        inventory.entries.insert(id, Entry { hash, version });
                    }
                    Ok(None) => {}
                    Err(error) => inventory.problems.push(Problem {
                        id: Some(id),
                        error,
                    }),
                }
            }
        }
        self.listed
            .store(inventory.entries.len(), Ordering::Relaxed);
        if clean {
            let hashes = inventory
                .entries
                .iter()
                .map(|(id, e)| (id.clone(), e.hash.clone()))
                .collect();
            self.store_root(seen, &root_hash(&hashes)).await;
        }
        Ok(inventory)
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let coll = self.collection().await?;
        let what = self.doing("reading tasks");
        let mut found: HashMap<String, Document> = HashMap::with_capacity(ids.len());
        let listed = self.listed.load(Ordering::Relaxed);
        let scan_all = ids.len() > MAX_IN && ids.len() * 2 >= listed;
        if scan_all {
            // Most of the collection: one unfiltered scan beats many `$in` lists.
            let wanted: std::collections::HashSet<&str> = ids.iter().map(TaskId::as_str).collect();
            let mut cursor = coll
                .find(doc! {})
                .await
                .map_err(|e| convert(&self.name, &what, e))?;
            while let Some(doc) = cursor
                .try_next()
                .await
                .map_err(|e| convert(&self.name, &what, e))?
            {
                if let Ok(id) = doc.get_str("_id") {
                    if wanted.contains(id) {
                        found.insert(id.to_owned(), doc);
                    }
                }
            }
        }
        for chunk in ids.chunks(MAX_IN).filter(|_| !scan_all) {
            let wanted: Vec<&str> = chunk.iter().map(TaskId::as_str).collect();
            let mut cursor = coll
                .find(doc! { "_id": { "$in": wanted } })
                .await
                .map_err(|e| convert(&self.name, &what, e))?;
            while let Some(doc) = cursor
                .try_next()
                .await
                .map_err(|e| convert(&self.name, &what, e))?
            {
                if let Ok(id) = doc.get_str("_id") {
                    found.insert(id.to_owned(), doc);
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let state = match found.remove(id.as_str()) {
                    None => Ok(None),
                    Some(doc) => {
                        let version = version_of(doc.get(HASH_FIELD));
                        from_document(doc)
                            .map(|task| Some(Stored { task, version }))
                            .map_err(|m| self.invalid(id.as_str(), m))
                    }
                };
                (id.clone(), state)
            })
            .collect())
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let coll = self.collection().await?;
        if writes.is_empty() {
            return Ok(Puts::new());
        }
        self.forget_root().await?;
        let puts = self.put_all(&coll, writes).await;
        // Whatever happened, a listing that overlapped these writes must not store its root.
        self.forget_root().await?;
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

impl MongoStore {
    /// The writes of [`Store::put`], between the two updates of the root document.
    async fn put_all(
        &self,
        coll: &Collection<Document>,
        writes: Vec<Write>,
    ) -> Result<Puts, DriverError> {
        let mut outcomes: Vec<Option<Result<PutOutcome, DriverError>>> =
            (0..writes.len()).map(|_| None).collect();
        // New tasks go in one unordered insert_many: one round trip for an initial push.
        let mut inserts: Vec<(usize, Document)> = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            if w.expected.is_none() {
                match to_document(&w.task) {
                    Ok(doc) => inserts.push((i, doc)),
                    Err(m) => {
                        outcomes[i] = Some(Err(DriverError::new(
                            &self.name,
                            ErrorKind::InvalidRequest,
                            format!("task '{}': {m}", w.task.id()),
                        )))
                    }
                }
            }
        }
        if !inserts.is_empty() {
            let what = self.doing(&format!("inserting {} new tasks", inserts.len()));
            let docs: Vec<&Document> = inserts.iter().map(|(_, d)| d).collect();
            // Inserts that failed alone (an id that exists by now) are settled one by one
            // below, which tells an equal document (a no-op) from a conflict.
            let failed: BTreeSet<usize> = match coll.insert_many(docs).ordered(false).await {
                Ok(_) => BTreeSet::new(),
                Err(e) => match *e.kind {
                    mongodb::error::ErrorKind::InsertMany(InsertManyError {
                        write_errors: Some(ref errors),
                        write_concern_error: None,
                        ..
                    }) => errors.iter().map(|w| w.index).collect(),
                    _ => return Err(convert(&self.name, &what, e)),
                },
            };
            for (k, (i, _)) in inserts.iter().enumerate() {
                if !failed.contains(&k) {
                    let version = Version::of_hash(&writes[*i].hash);
                    outcomes[*i] = Some(Ok(PutOutcome::Written(version)));
                }
            }
        }
        // Replacements (and inserts that clashed) are conditional on the stored hash, each on
        // its own, several at a time.
        let ids: Vec<TaskId> = writes.iter().map(|w| w.task.id().clone()).collect();
        let rest: Vec<(usize, Write)> = writes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_none())
            .collect();
        let settled: Vec<(usize, Result<PutOutcome, DriverError>)> = futures::stream::iter(rest)
            .map(|(i, w)| async move { (i, self.put_one(coll, w).await) })
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (i, r) in settled {
            outcomes[i] = Some(r);
        }
        let mut puts = Puts::new();
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            let outcome = outcome.expect("every write was settled");
            // A server that went away fails the whole batch once, not every task on its own.
            if outcome.as_ref().is_err_and(DriverError::is_retryable) {
                return outcome.map(|_| puts);
            }
            puts.insert(id, outcome);
        }
        Ok(puts)
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
