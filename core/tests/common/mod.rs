//! What the engine tests share: a replica in a temporary directory, in-memory drivers, a
//! deterministic generator.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hypertask_core::{
    Change, Checked, Engine, MemoryStore, Replica, StoreDriver, SyncOptions, Task, TaskId,
};

pub struct Node {
    _dir: tempfile::TempDir,
    pub replica: Replica,
}

impl Node {
    pub fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path().join("data")).unwrap();
        Node { _dir: dir, replica }
    }

    pub fn put(&self, task: &Task) {
        let lock = self
            .replica
            .lock(std::time::Duration::from_secs(5))
            .unwrap();
        self.replica.put(&lock, std::slice::from_ref(task)).unwrap();
    }

    pub fn edit(&self, id: &TaskId, changes: &[Change], now: DateTime<Utc>) -> Task {
        let lock = self
            .replica
            .lock(std::time::Duration::from_secs(5))
            .unwrap();
        let mut t = self.replica.get(id).unwrap().expect("task exists");
        t.edit(changes, now).unwrap();
        self.replica.put(&lock, std::slice::from_ref(&t)).unwrap();
        t
    }

    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.replica.task_dir().dir())
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    pub async fn sync(
        &self,
        drivers: &[Checked],
        options: SyncOptions,
    ) -> hypertask_core::SyncReport {
        Engine::new(self.replica.clone(), drivers.to_vec(), options)
            .sync()
            .await
            .unwrap()
    }
}

pub fn mem(name: &str) -> (Arc<MemoryStore>, Checked) {
    let store = Arc::new(MemoryStore::new(name));
    (
        store.clone(),
        Checked::new(Arc::new(StoreDriver::new(store))),
    )
}

/// A seeded generator, so a failing seed replays exactly.
pub struct Rng(rand::rngs::StdRng);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        use rand::SeedableRng;
        Rng(rand::rngs::StdRng::seed_from_u64(seed))
    }

    pub fn below(&mut self, n: usize) -> usize {
        use rand::Rng as _;
        self.0.random_range(0..n)
    }
}
