//! The sqlite [`Store`]: one table in one file, compare-and-swap per task inside one
//! transaction per request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hypertask_core::{
    async_trait, decide, expand_path, Capabilities, ContentHash, Decision, DriverError, DriverInfo,
    Entry, ErrorKind, Gets, Hashes, Health, Problem, PutOutcome, Puts, Store, StoreInventory,
    Stored, Task, TaskId, Version, Write,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::config::SqliteConfig;
use crate::error;
use crate::KIND;

/// How long a writer waits for another connection's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY NOT NULL,
    hash TEXT,
    rev INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID";

/// Runs `op` again while another connection holds the lock it needs, for up to
/// [`BUSY_TIMEOUT`]: for the statements SQLite runs without its busy handler.
fn while_busy(mut op: impl FnMut() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match op() {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Every task in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    path: PathBuf,
    create: bool,
    /// Opened on first use; `None` until then (a read of a missing file opens nothing).
    conn: Mutex<Option<Connection>>,
    /// What is stored, as last listed and kept up to date by this store's own writes.
    known: Mutex<Option<Known>>,
}

/// The map of what is stored, valid while `PRAGMA data_version` (which moves with every
/// commit of another connection, never with our own) is `version`.
#[derive(Debug)]
struct Known {
    version: i64,
    hashes: Hashes,
    /// The root of `hashes`, computed when first asked after a change.
    root: Option<ContentHash>,
}

impl SqliteStore {
    /// The store of driver instance `name`.
    pub fn new(name: &str, config: &SqliteConfig) -> Result<SqliteStore, DriverError> {
        if config.path.as_os_str().is_empty() {
            return Err(DriverError::new(
                name,
                ErrorKind::Config,
                format!("[drivers.{name}] has an empty `path`"),
            ));
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                path: expand_path(&config.path),
                create: config.create,
                conn: Mutex::new(None),
                known: Mutex::new(None),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs blocking database work off the async reactor.
    async fn blocking<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, DriverError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        hypertask_core::run_blocking(&self.inner.name, move || f(&inner)).await
    }
}

/// A stored row as read: its hash when it has a valid one.
struct Row {
    hash: Option<ContentHash>,
    rev: i64,
}

impl Inner {
    fn err(&self, what: &str) -> impl FnOnce(rusqlite::Error) -> DriverError + '_ {
        let what = what.to_owned();
        move |e| error::sqlite(&self.name, &self.path, &what, e)
    }

    /// The open connection; `None` when the file does not exist and `for_write` is false (a
    /// read sees an empty store and creates nothing).
    fn conn(
        &self,
        for_write: bool,
    ) -> Result<Option<MutexGuard<'_, Option<Connection>>>, DriverError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return Ok(Some(guard));
        }
        if !self.path.exists() {
            if !self.create {
                return Err(error::missing(&self.name, &self.path));
            }
            if !for_write {
                return Ok(None);
            }
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DriverError::io(&self.name, dir.display(), e))?;
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(self.err("opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(self.err("setting the busy timeout"))?;
        // The write-ahead log with a full sync at each commit: a committed request is on disk,
        // readers never wait for writers.
        // SQLite does not call the busy handler while it switches the journal mode, so two
        // processes opening a new file at once see "database is locked" here: wait it out.
        while_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))
            .map_err(self.err("switching to the write-ahead log"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(self.err("setting synchronous = FULL"))?;
        while_busy(|| conn.execute(SCHEMA, []).map(drop))
            .map_err(self.err("creating the tasks table"))?;
        *guard = Some(conn);
        Ok(Some(guard))
    }

    /// `PRAGMA data_version`: changes when another connection commits.
    fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        let Some(guard) = self.conn(false)? else {
            return Ok(Some(hypertask_core::root_hash(&Default::default())));
        };
        let conn = guard.as_ref().expect("opened");
        let version = Self::data_version(conn).map_err(self.err("reading data_version"))?;
        let mut known = self.known();
        Ok(known.as_mut().filter(|k| k.version == version).map(|k| {
            k.root
                .get_or_insert_with(|| hypertask_core::root_hash(&k.hashes))
                .clone()
        }))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Option<Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&self) -> Result<StoreInventory, DriverError> {
        let Some(guard) = self.conn(false)? else {
            return Ok(StoreInventory::default());
        };
        let conn = guard.as_ref().expect("opened");
        let what = "listing tasks";
        let version = Self::data_version(conn).map_err(self.err(what))?;
        let mut stmt = conn
            .prepare_cached("SELECT id, hash, rev FROM tasks ORDER BY id")
            .map_err(self.err(what))?;
        let mut rows = stmt.query([]).map_err(self.err(what))?;
        let mut inventory = StoreInventory::default();
        while let Some(row) = rows.next().map_err(self.err(what))? {
            let id: String = row.get(0).map_err(self.err(what))?;
            let hash: Option<String> = row.get(1).map_err(self.err(what))?;
            let rev: i64 = row.get(2).map_err(self.err(what))?;
            let Ok(task_id) = TaskId::new(&id) else {
                inventory.problems.push(Problem {
                    id: None,
                    error: error::invalid(&self.name, &self.path, &id, "has an invalid id"),
                });
                continue;
            };
            match hash.as_deref().and_then(ContentHash::parse) {
                Some(hash) => {
                    inventory.entries.insert(
                        task_id,
                        Entry {
                            hash,
                            version: Version::new(rev.to_string()),
                        },
                    );
                }
                None => inventory.problems.push(Problem {
                    id: Some(task_id),
                    error: error::invalid(&self.name, &self.path, &id, "has no valid hash"),
                }),
            }
        }
        if inventory.problems.is_empty() {
            let hashes: Hashes = inventory
                .entries
                .iter()
                .map(|(id, e)| (id.clone(), e.hash.clone()))
                .collect();
            *self.known() = Some(Known {
                version,
                root: Some(hypertask_core::root_hash(&hashes)),
                hashes,
            });
        }
        Ok(inventory)
    }

    /// One row's task, checked: valid JSON of a valid task filed under its own id.
    fn parse(&self, id: &TaskId, body: &[u8]) -> Result<Task, DriverError> {
        let task = Task::from_json(body).map_err(|e| {
            error::invalid(
                &self.name,
                &self.path,
                id.as_str(),
                &format!("is not a valid task ({e})"),
            )
        })?;
        if task.id() != id {
            return Err(error::invalid(
                &self.name,
                &self.path,
                id.as_str(),
                &format!("holds task '{}'", task.id()),
            ));
        }
        Ok(task)
    }

    fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let Some(mut guard) = self.conn(false)? else {
            return Ok(ids.iter().map(|id| (id.clone(), Ok(None))).collect());
        };
        let conn = guard.as_mut().expect("opened");
        let what = "reading tasks";
        // One read transaction: every answer comes from the same state.
        let tx = conn.transaction().map_err(self.err(what))?;
        let mut gets = Gets::new();
        {
            let mut stmt = tx
                .prepare_cached("SELECT body, rev FROM tasks WHERE id = ?1")
                .map_err(self.err(what))?;
            for id in ids {
                let row: Option<(Vec<u8>, i64)> = stmt
                    .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(self.err(what))?;
                let answer = match row {
                    None => Ok(None),
                    Some((body, rev)) => self.parse(id, &body).map(|task| {
                        Some(Stored {
                            task,
                            version: Version::new(rev.to_string()),
                        })
                    }),
                };
                gets.insert(id.clone(), answer);
            }
        }
        tx.commit().map_err(self.err(what))?;
        Ok(gets)
    }

    fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let mut guard = self.conn(true)?.expect("opened for writing");
        let conn = guard.as_mut().expect("opened");
        let what = "writing tasks";
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err(what))?;
        let mut puts = Puts::new();
        let mut wrote = Vec::new();
        {
            let mut read = tx
                .prepare_cached("SELECT hash, rev FROM tasks WHERE id = ?1")
                .map_err(self.err(what))?;
            let mut write = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, hash, rev, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET hash = ?2, rev = ?3, body = ?4",
                )
                .map_err(self.err(what))?;
            for w in writes {
                let id = w.task.id().clone();
                let row: Option<Row> = read
                    .query_row([id.as_str()], |r| {
                        let hash: Option<String> = r.get(0)?;
                        Ok(Row {
                            hash: hash.as_deref().and_then(ContentHash::parse),
                            rev: r.get(1)?,
                        })
                    })
                    .optional()
                    .map_err(self.err(what))?;
                let current = match &row {
                    Some(Row { hash: None, .. }) => {
                        let e = error::invalid(
                            &self.name,
                            &self.path,
                            id.as_str(),
                            "has no valid hash",
                        );
                        puts.insert(id, Err(e));
                        continue;
                    }
                    Some(Row {
                        hash: Some(hash),
                        rev,
                    }) => Some(Entry {
                        hash: hash.clone(),
                        version: Version::new(rev.to_string()),
                    }),
                    None => None,
                };
                let outcome = match decide(current.as_ref(), &w) {
                    Decision::Unchanged(v) => PutOutcome::Written(v),
                    Decision::Conflict => PutOutcome::Conflict,
                    Decision::Write => {
                        let rev = row.map_or(1, |r| r.rev + 1);
                        let body = w.task.canonical_bytes();
                        write
                            .execute(params![id.as_str(), w.hash.as_str(), rev, body])
                            .map_err(self.err(what))?;
                        wrote.push((id.clone(), w.hash.clone()));
                        PutOutcome::Written(Version::new(rev.to_string()))
                    }
                };
                puts.insert(id, Ok(outcome));
            }
        }
        // Read before the commit: a commit by another connection since the map was listed
        // moves it, and the map is then no longer ours to mend.
        let version = Self::data_version(&tx).map_err(self.err(what))?;
        tx.commit().map_err(self.err(what))?;
        if !wrote.is_empty() {
            // Our own commits leave data_version as it is: the map follows them here.
            let mut known = self.known();
            match known.as_mut().filter(|k| k.version == version) {
                Some(k) => {
                    k.hashes.extend(wrote);
                    k.root = None;
                }
                None => *known = None,
            }
        }
        Ok(puts)
    }

    fn check(&self) -> Result<Health, DriverError> {
        let Some(guard) = self.conn(false)? else {
            return Ok(Health {
                ok: true,
                detail: format!("{} (not created yet)", self.path.display()),
            });
        };
        let conn = guard.as_ref().expect("opened");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
            .map_err(self.err("counting tasks"))?;
        Ok(Health {
            ok: true,
            detail: format!("{} ({count} tasks)", self.path.display()),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.to_owned(),
            name: self.inner.name.clone(),
            capabilities: Capabilities {
                max_batch: 5000,
                cheap_root: true,
                atomic_writes: true,
                remote: false,
                buckets: false,
            },
        }
    }

    async fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        self.blocking(Inner::root).await
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        self.blocking(Inner::list).await
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.get(&ids)).await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.blocking(move |inner| inner.put(writes)).await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.blocking(Inner::check).await
    }
}
