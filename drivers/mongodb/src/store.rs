//! [`MongoStore`]: the [`Store`] of one MongoDB collection.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hypertask_core::{
    async_trait, Capabilities, ContentHash, DriverError, DriverInfo, ErrorKind, Health, Inventory,
    Problem, PutOutcome, Store, Task, TaskId, Write,
};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::InsertManyError;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use tokio::sync::OnceCell;

use crate::config::{MongoConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SERVER_SELECTION_TIMEOUT_MS};
use crate::document::{from_document, to_document, HASH_FIELD};
use crate::error::{convert, is_duplicate_key};
use crate::KIND;

/// Most ids fetched with one `$in` query, and the driver's `max_batch`.
const MAX_BATCH: usize = 1000;

/// Conditional writes of one batch in flight at once.
const WRITE_CONCURRENCY: usize = 8;

/// One MongoDB collection holding one document per task (see the crate docs for the layout).
///
/// The client is created on first use, so building the store never connects.
pub struct MongoStore {
    name: String,
    config: MongoConfig,
    client: OnceCell<Client>,
    /// Tasks whose stored `hash` field is missing or stale (a document written by another
    /// client): the computed hash `get` answered, and the field value a compare-and-swap must
    /// match instead.
    aliases: Mutex<HashMap<TaskId, (ContentHash, Bson)>>,
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
            aliases: Mutex::new(HashMap::new()),
        })
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
                let what = format!("invalid uri {}", self.config.redacted_uri());
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

    fn invalid(&self, id: &str, message: impl fmt::Display) -> DriverError {
        DriverError::new(
            &self.name,
            ErrorKind::InvalidData,
            format!("document '{id}' in {}: {message}", self.namespace()),
        )
    }

    /// The `hash` field value a write expecting `expected` must find.
    fn stored_hash(&self, id: &TaskId, expected: &ContentHash) -> Bson {
        let aliases = self.aliases.lock().expect("alias map poisoned");
        match aliases.get(id) {
            Some((computed, stored)) if computed == expected => stored.clone(),
            _ => Bson::String(expected.as_str().to_owned()),
        }
    }

    fn set_alias(&self, id: &TaskId, computed: ContentHash, stored: Option<&Bson>) {
        let mut aliases = self.aliases.lock().expect("alias map poisoned");
        match stored {
            Some(Bson::String(s)) if s == computed.as_str() => {
                aliases.remove(id);
            }
            other => {
                aliases.insert(id.clone(), (computed, other.cloned().unwrap_or(Bson::Null)));
            }
        }
    }

    async fn put_one(
        &self,
        coll: &Collection<Document>,
        write: Write,
    ) -> Result<PutOutcome, DriverError> {
        let id = write.task.id().clone();
        let new_hash = write.task.hash();
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
                    Ok(_) => PutOutcome::Written,
                    Err(e) if is_duplicate_key(&e) => PutOutcome::Conflict,
                    Err(e) => return Err(convert(&self.name, &what, e)),
                }
            }
            // Replace only what was read (or an equal document, which changes nothing).
            Some(expected) => {
                let stored = self.stored_hash(&id, expected);
                let filter = doc! {
                    "_id": id.as_str(),
                    HASH_FIELD: { "$in": [stored, new_hash.as_str()] },
                };
                let result = coll
                    .replace_one(filter, doc)
                    .await
                    .map_err(|e| convert(&self.name, &what, e))?;
                if result.matched_count == 1 {
                    PutOutcome::Written
                } else {
                    PutOutcome::Conflict
                }
            }
        };
        if outcome == PutOutcome::Written {
            self.aliases.lock().expect("alias map poisoned").remove(&id);
        }
        Ok(outcome)
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
                cheap_root: false,
                atomic_writes: true,
                remote: true,
            },
        }
    }

    async fn list(&self) -> Result<Inventory, DriverError> {
        let coll = self.collection().await?;
        let what = self.doing("listing task hashes");
        let mut cursor = coll
            .find(doc! {})
            .projection(doc! { "_id": 1, HASH_FIELD: 1 })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        let mut inventory = Inventory::default();
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
                    inventory.hashes.insert(id, hash);
                }
                // Written by another client without a hash: read it whole and hash it.
                None => unhashed.push(id),
            }
        }
        for chunk in unhashed.chunks(MAX_BATCH) {
            for (id, got) in chunk.iter().zip(self.get(chunk).await?) {
                match got {
                    Ok(Some(task)) => {
                        inventory.hashes.insert(id.clone(), task.hash());
                    }
                    Ok(None) => {}
                    Err(error) => inventory.problems.push(Problem {
                        id: Some(id.clone()),
                        error,
                    }),
                }
            }
        }
        Ok(inventory)
    }

    async fn get(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<Result<Option<Task>, DriverError>>, DriverError> {
        let coll = self.collection().await?;
        let what = self.doing("reading tasks");
        let mut found: HashMap<String, Document> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH) {
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
                let Some(doc) = found.remove(id.as_str()) else {
                    return Ok(None);
                };
                let stored = doc.get(HASH_FIELD).cloned();
                let task = from_document(doc).map_err(|m| self.invalid(id.as_str(), m))?;
                self.set_alias(id, task.hash(), stored.as_ref());
                Ok(Some(task))
            })
            .collect())
    }

    async fn put(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<PutOutcome, DriverError>>, DriverError> {
        let coll = self.collection().await?;
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
                    outcomes[*i] = Some(Ok(PutOutcome::Written));
                }
            }
        }
        // Replacements (and inserts that clashed) are conditional on the stored hash, each on
        // its own, several at a time.
        let rest: Vec<(usize, Write)> = writes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_none())
            .collect();
        let settled: Vec<(usize, Result<PutOutcome, DriverError>)> = futures::stream::iter(rest)
            .map(|(i, w)| {
                let coll = &coll;
                async move { (i, self.put_one(coll, w).await) }
            })
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (i, r) in settled {
            outcomes[i] = Some(r);
        }
        let outcomes: Vec<Result<PutOutcome, DriverError>> = outcomes
            .into_iter()
            .map(|o| o.expect("every write was settled"))
            .collect();
        // A server that went away fails the whole batch once, not every task on its own.
        if let Some(pos) = outcomes
            .iter()
            .position(|r| r.as_ref().is_err_and(DriverError::is_retryable))
        {
            let mut outcomes = outcomes;
            return Err(outcomes.swap_remove(pos).expect_err("found an error"));
        }
        Ok(outcomes)
    }

    async fn check(&self) -> Result<Health, DriverError> {
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
