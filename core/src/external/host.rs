//! The host side: the store- and driver-level adapters over a running [`Program`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::program::Program;
use super::wire::{
    CheckReport, Done, Fetched, Hashes, Level, Listed, Op, PutResult, Slot, States, WireWrite,
    Written,
};
use crate::driver::{Access, Answers, Batch, Driver, DriverInfo, Health, Inventory, Listing};
use crate::error::{DriverError, ErrorKind};
use crate::hash::{root_hash, ContentHash};
use crate::spec::DriverSpec;
use crate::store::{
    Entry, Gets, PutOutcome, Puts, Store, StoreDriver, StoreInventory, Stored, Write,
};
use crate::task::{Task, TaskId};

/// A store-level program as a [`Store`]: it lists, gets and compare-and-swaps documents;
/// [`StoreDriver`] around it hashes, merges and retries.
///
/// Requests carry at most the program's declared `max_batch` tasks. `finish` is sent only at
/// the end of a sync that wrote.
#[derive(Debug)]
pub struct ExternalStore {
    program: Arc<Program>,
    wrote: AtomicBool,
}

impl ExternalStore {
    /// The program at `program` for the driver table `spec`; it starts on first use.
    pub fn new(spec: DriverSpec, program: PathBuf) -> ExternalStore {
        ExternalStore::over(Arc::new(Program::new(spec, program)))
    }

    fn over(program: Arc<Program>) -> ExternalStore {
        ExternalStore {
            program,
            wrote: AtomicBool::new(false),
        }
    }

    /// The level the program declares, starting it and handshaking when needed.
    pub async fn level(&self) -> Result<Level, DriverError> {
        Ok(self.program.welcome().await?.level)
    }
}

#[async_trait]
impl Store for ExternalStore {
    fn info(&self) -> DriverInfo {
        self.program.info()
    }

    /// Handshakes (so [`Store::info`] holds the declared capabilities) and checks the level.
    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        self.wrote.store(false, Ordering::SeqCst);
        self.program.expect_level(Level::Store).await
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        let p = &self.program;
        let listed: Listed = p.call(Op::List, "list").await?;
        let mut inventory = StoreInventory {
            problems: listed.problems.into_iter().map(|x| p.problem(x)).collect(),
            ..StoreInventory::default()
        };
        for (key, entry) in listed.entries {
            let Ok(id) = TaskId::new(key.as_str()) else {
                inventory.problems.push(p.bad_id(&key));
                continue;
            };
            match ContentHash::parse(&entry.hash) {
                Some(hash) => {
                    let version = entry.version;
                    inventory.entries.insert(id, Entry { hash, version });
                }
                None => inventory.problems.push(p.bad_hash(id, &entry.hash)),
            }
        }
        Ok(inventory)
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let p = &self.program;
        let mut gets = Gets::new();
        for chunk in ids.chunks(p.max_batch()) {
            let op = Op::Get {
                ids: chunk.to_vec(),
            };
            let fetched: Fetched = p.call(op, "get").await?;
            for (key, slot) in fetched.tasks {
                let Ok(id) = TaskId::new(key.as_str()) else {
                    tracing::warn!(driver = %p.spec.name, "{} answered get for {key:?}, which is not a task id; ignored", p.display());
                    continue;
                };
                let answer = match slot {
                    None => Ok(None),
                    Some(Slot::Failed(f)) => {
                        Err(p.answered(&format!("get of task '{id}'"), f.error))
                    }
                    Some(Slot::Found(doc)) => p.task(&id, doc.task).map(|task| {
                        Some(Stored {
                            task,
                            version: doc.version,
                        })
                    }),
                };
                gets.insert(id, answer);
            }
        }
        Ok(gets)
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let p = &self.program;
        let max = p.max_batch();
        let mut puts = Puts::new();
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let chunk: Vec<WireWrite> = writes
                .by_ref()
                .take(max)
                .map(|w| WireWrite {
                    id: w.task.id().clone(),
                    task: w.task,
                    hash: w.hash,
                    expected: w.expected,
                })
                .collect();
            self.wrote.store(true, Ordering::SeqCst);
            let written: Written = p.call(Op::Put { writes: chunk }, "put").await?;
            for (key, result) in written.results {
                let Ok(id) = TaskId::new(key.as_str()) else {
                    tracing::warn!(driver = %p.spec.name, "{} answered put for {key:?}, which is not a task id; ignored", p.display());
                    continue;
                };
                let outcome = match result {
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
                puts.insert(id, outcome);
            }
        }
        Ok(puts)
    }

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

// ---------------------------------------------------------------------------------------------
// Driver level.

/// A driver-level program: it lists hashes and resolves (merges) itself.
#[derive(Debug)]
struct ProgramDriver {
    program: Arc<Program>,
    wrote: AtomicBool,
}

#[async_trait]
impl Driver for ProgramDriver {
    fn info(&self) -> DriverInfo {
        self.program.info()
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        self.wrote.store(false, Ordering::SeqCst);
        self.program.expect_level(Level::Driver).await
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let p = &self.program;
        let listed: Hashes = p.call(Op::List, "list").await?;
        let mut inventory = Inventory {
            problems: listed.problems.into_iter().map(|x| p.problem(x)).collect(),
            ..Inventory::default()
        };
        for (key, hash) in listed.hashes {
            let Ok(id) = TaskId::new(key.as_str()) else {
                inventory.problems.push(p.bad_id(&key));
                continue;
            };
            match ContentHash::parse(&hash) {
                Some(h) => {
                    inventory.hashes.insert(id, h);
                }
                None => inventory.problems.push(p.bad_hash(id, &hash)),
            }
        }
        if inventory.problems.is_empty() && known_root == Some(&root_hash(&inventory.hashes)) {
            return Ok(Listing::Unchanged);
        }
        Ok(Listing::Changed(inventory))
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let p = &self.program;
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
        let mut states = states.into_iter().peekable();
        while states.peek().is_some() {
            let chunk: std::collections::BTreeMap<TaskId, Option<Task>> =
                states.by_ref().take(p.max_batch()).collect();
            if chunk.values().any(Option::is_some) {
                self.wrote.store(true, Ordering::SeqCst);
            }
            let resolved: States = p.call(Op::Resolve { states: chunk }, "resolve").await?;
            for (key, slot) in resolved.states {
                let Ok(id) = TaskId::new(key.as_str()) else {
                    tracing::warn!(driver = %p.spec.name, "{} answered resolve for {key:?}, which is not a task id; ignored", p.display());
                    continue;
                };
                let answer = match slot {
                    None => Ok(None),
                    Some(Slot::Failed(f)) => Err(p.answered(&format!("task '{id}'"), f.error)),
                    Some(Slot::Found(doc)) => p.task(&id, doc).map(Some),
                };
                answers.insert(id, answer);
            }
        }
        Ok(answers)
    }

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
                program: program.clone(),
                wrote: AtomicBool::new(false),
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
