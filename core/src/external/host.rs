//! The host side: the store- and driver-level adapters over a running [`Program`]. Every
//! request goes through one [`Session`]: the program's round trip (`Program::call`) and, for
//! the requests about many tasks, the chunking and the keyed answers, once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::program::Program;
use super::wire::{
    CheckReport, Done, Fetched, Hashes, Level, Listed, Op, PutResult, Slot, States, StoredDoc,
    WireProblem, WireWrite, Written,
};
use crate::driver::{
    Access, Answers, Batch, Driver, DriverInfo, Health, Inventory, Listing, Problem,
};
use crate::error::{DriverError, ErrorKind};
use crate::hash::{root_hash, ContentHash};
use crate::spec::DriverSpec;
use crate::store::{
    Entry, Gets, PutOutcome, Puts, Store, StoreDriver, StoreInventory, Stored, Write,
};
use crate::task::{Task, TaskId};

/// One sync's conversation with a program, at either level: the requests every level makes
/// alike, and whether anything was sent to be written (so `finish` is sent only then).
#[derive(Debug)]
struct Session {
    program: Arc<Program>,
    wrote: AtomicBool,
}

impl Session {
    fn new(program: Arc<Program>) -> Session {
        Session {
            program,
            wrote: AtomicBool::new(false),
        }
    }

    /// Starts a sync: nothing written yet, and the program must be of `level`.
    async fn begin(&self, level: Level) -> Result<(), DriverError> {
        self.wrote.store(false, Ordering::SeqCst);
        self.program.expect_level(level).await
    }

    /// Notes that the request about to be sent writes.
    fn writes(&self) {
        self.wrote.store(true, Ordering::SeqCst);
    }

    /// Sends `items` in requests of at most the program's `max_batch` (`op` makes each request
    /// from its chunk, just before it is sent; `what` names it), takes the entries keyed by
    /// task id out of each answer (`entries`) and turns each into its task's result
    /// (`settle`). A key that is not a task id is logged and ignored.
    async fn per_task<I, A: DeserializeOwned, E, O>(
        &self,
        items: impl IntoIterator<Item = I>,
        what: &str,
        op: impl Fn(Vec<I>) -> Op,
        entries: impl Fn(A) -> BTreeMap<String, E>,
        settle: impl Fn(&Program, &TaskId, E) -> Result<O, DriverError>,
    ) -> Result<BTreeMap<TaskId, Result<O, DriverError>>, DriverError> {
        let p = &*self.program;
        let mut results = BTreeMap::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<I> = items.by_ref().take(p.max_batch()).collect();
            let answer: A = p.call(op(chunk), what).await?;
            for (key, entry) in entries(answer) {
                let Ok(id) = TaskId::new(key.as_str()) else {
                    tracing::warn!(driver = %p.spec.name, "{} answered {what} for {key:?}, which is not a task id; ignored", p.display());
                    continue;
                };
                let result = settle(p, &id, entry);
                results.insert(id, result);
            }
        }
        Ok(results)
    }

    /// The listed entries whose key is a task id and whose hash (`hash` finds it) is a content
    /// hash; every other entry, and the problems the program listed, as problems.
    fn listed<V>(
        &self,
        problems: Vec<WireProblem>,
        entries: BTreeMap<String, V>,
        hash: impl Fn(&V) -> &str,
    ) -> (Vec<(TaskId, ContentHash, V)>, Vec<Problem>) {
        let p = &self.program;
        let mut problems: Vec<Problem> = problems.into_iter().map(|x| p.problem(x)).collect();
        let mut valid = Vec::with_capacity(entries.len());
        for (key, entry) in entries {
            let Ok(id) = TaskId::new(key.as_str()) else {
                problems.push(p.bad_id(&key));
                continue;
            };
            match ContentHash::parse(hash(&entry)) {
                Some(h) => valid.push((id, h, entry)),
                None => problems.push(p.bad_hash(id, hash(&entry))),
            }
        }
        (valid, problems)
    }

    /// Ends a sync: `finish` when anything was sent to be written since [`begin`](Self::begin).
    async fn finish(&self) -> Result<(), DriverError> {
        if self.wrote.swap(false, Ordering::SeqCst) {
            let _: Done = self.program.call(Op::Finish, "finish").await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<Health, DriverError> {
        let report: CheckReport = self.program.call(Op::Check, "check").await?;
        Ok(Health {
            ok: true,
            detail: report.detail,
        })
    }
}

/// A store-level program as a [`Store`]: it lists, gets and compare-and-swaps documents;
/// [`StoreDriver`] around it hashes, merges and retries.
///
/// Requests carry at most the program's declared `max_batch` tasks. `finish` is sent only at
/// the end of a sync that wrote.
#[derive(Debug)]
pub struct ExternalStore {
    session: Session,
}

impl ExternalStore {
    /// The program at `program` for the driver table `spec`; it starts on first use.
    pub fn new(spec: DriverSpec, program: PathBuf) -> ExternalStore {
        ExternalStore::over(Arc::new(Program::new(spec, program)))
    }

    fn over(program: Arc<Program>) -> ExternalStore {
        ExternalStore {
            session: Session::new(program),
        }
    }

    /// The level the program declares, starting it and handshaking when needed.
    pub async fn level(&self) -> Result<Level, DriverError> {
        Ok(self.session.program.welcome().await?.level)
    }
}

#[async_trait]
impl Store for ExternalStore {
    fn info(&self) -> DriverInfo {
        self.session.program.info()
    }

    /// Handshakes (so [`Store::info`] holds the declared capabilities) and checks the level.
    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        self.session.begin(Level::Store).await
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        let listed: Listed = self.session.program.call(Op::List, "list").await?;
        let (valid, problems) = self
            .session
            .listed(listed.problems, listed.entries, |e| &e.hash);
        let entries = valid
            .into_iter()
            .map(|(id, hash, e)| {
                let version = e.version;
                (id, Entry { hash, version })
            })
            .collect();
        Ok(StoreInventory { entries, problems })
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let op = |ids| Op::Get { ids };
        let settle = |p: &Program, id: &TaskId, slot: Option<Slot<StoredDoc>>| match slot {
            None => Ok(None),
            Some(Slot::Failed(f)) => Err(p.answered(&format!("get of task '{id}'"), f.error)),
            Some(Slot::Found(doc)) => p.task(id, doc.task).map(|task| {
                Some(Stored {
                    task,
                    version: doc.version,
                })
            }),
        };
        let entries = |f: Fetched| f.tasks;
        self.session
            .per_task(ids.iter().cloned(), "get", op, entries, settle)
            .await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let writes = writes.into_iter().map(|w| WireWrite {
            id: w.task.id().clone(),
            task: w.task,
            hash: w.hash,
            expected: w.expected,
        });
        let op = |writes| {
            self.session.writes();
            Op::Put { writes }
        };
        let settle = |p: &Program, id: &TaskId, result| match result {
            PutResult::Written(v) => Ok(PutOutcome::Written(v)),
            PutResult::Conflict(true) => Ok(PutOutcome::Conflict),
            PutResult::Conflict(false) => Err(p.err(
                ErrorKind::Protocol,
                format!(
                    "{} answered the write of task '{id}' with conflict: false",
                    p.display()
                ),
            )),
            PutResult::Error(e) => Err(p.answered(&format!("the write of task '{id}'"), e)),
        };
        let entries = |w: Written| w.results;
        self.session
            .per_task(writes, "put", op, entries, settle)
            .await
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.session.finish().await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.session.check().await
    }
}

// ---------------------------------------------------------------------------------------------
// Driver level.

/// A driver-level program: it lists hashes and resolves (merges) itself.
#[derive(Debug)]
struct ProgramDriver {
    session: Session,
}

#[async_trait]
impl Driver for ProgramDriver {
    fn info(&self) -> DriverInfo {
        self.session.program.info()
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        self.session.begin(Level::Driver).await
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let listed: Hashes = self.session.program.call(Op::List, "list").await?;
        let (valid, problems) = self
            .session
            .listed(listed.problems, listed.hashes, String::as_str);
        let hashes = valid.into_iter().map(|(id, hash, _)| (id, hash)).collect();
        let inventory = Inventory { hashes, problems };
        if inventory.problems.is_empty() && known_root == Some(&root_hash(&inventory.hashes)) {
            return Ok(Listing::Unchanged);
        }
        Ok(Listing::Changed(inventory))
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let p = &self.session.program;
        let mut answers = Answers::new();
        let mut states = Vec::with_capacity(batch.len());
        for (id, state) in batch {
            match &state {
                Some(t) if t.id() != &id => {
                    let e = p.err(
                        ErrorKind::InvalidRequest,
                        format!("task '{}' was sent under the id '{id}'", t.id()),
                    );
                    answers.insert(id, Err(e));
                }
                _ => states.push((id, state)),
            }
        }
        let op = |chunk: Vec<(TaskId, Option<Task>)>| {
            if chunk.iter().any(|(_, state)| state.is_some()) {
                self.session.writes();
            }
            Op::Resolve {
                states: chunk.into_iter().collect(),
            }
        };
        let settle = |p: &Program, id: &TaskId, slot: Option<Slot<Value>>| match slot {
            None => Ok(None),
            Some(Slot::Failed(f)) => Err(p.answered(&format!("task '{id}'"), f.error)),
            Some(Slot::Found(doc)) => p.task(id, doc).map(Some),
        };
        let entries = |s: States| s.states;
        let resolved = self
            .session
            .per_task(states, "resolve", op, entries, settle)
            .await?;
        answers.extend(resolved);
        Ok(answers)
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.session.finish().await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.session.check().await
    }
}

// ---------------------------------------------------------------------------------------------
// Either level.

/// An external program as a [`Driver`], whatever its level: the registry builds this for a
/// kind with no factory.
///
/// The level is known only after the handshake, which happens on first use ([`Driver::begin`]
/// at the latest, so [`Driver::info`] holds the declared capabilities before the engine
/// chunks). Every request is bounded by the driver's `timeout`; a program that overruns it is
/// stopped and the error carries its exit status and last stderr lines. A call dropped before
/// its answer (by an outer timeout) leaves the program owing an answer, so the next call starts
/// it anew rather than read a stale line.
#[derive(Debug)]
pub struct ExternalDriver {
    program: Arc<Program>,
    store: StoreDriver<ExternalStore>,
    driver: ProgramDriver,
}

impl ExternalDriver {
    /// The program at `program` for the driver table `spec`; it starts on first use.
    pub fn new(spec: DriverSpec, program: PathBuf) -> ExternalDriver {
        let program = Arc::new(Program::new(spec, program));
        ExternalDriver {
            store: StoreDriver::new(ExternalStore::over(program.clone())),
            driver: ProgramDriver {
                session: Session::new(program.clone()),
            },
            program,
        }
    }

    /// The level the program declares, starting it and handshaking when needed.
    pub async fn level(&self) -> Result<Level, DriverError> {
        Ok(self.program.welcome().await?.level)
    }

    /// The driver of the program's level.
    async fn level_driver(&self) -> Result<&dyn Driver, DriverError> {
        Ok(match self.level().await? {
            Level::Store => &self.store,
            Level::Driver => &self.driver,
        })
    }
}

#[async_trait]
impl Driver for ExternalDriver {
    fn info(&self) -> DriverInfo {
        self.program.info()
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        self.level_driver().await?.begin(access).await
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        self.level_driver().await?.hashes(known_root).await
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        self.level_driver().await?.resolve(batch).await
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.level_driver().await?.finish().await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.level_driver().await?.check().await
    }
}
