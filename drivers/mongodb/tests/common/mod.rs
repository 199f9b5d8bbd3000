//! The MongoDB server the tests run against, and fresh collections on it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hypertask_core::{Driver, DriverSpec, Registry};
use hypertask_driver_mongodb::{MongoConfig, MongoStore};

/// The test server's URI from `HYPERTASK_TEST_MONGODB_URI`. Without it the test fails: a
/// driver test that silently passes without its server proves nothing.
pub fn uri() -> String {
    match std::env::var("HYPERTASK_TEST_MONGODB_URI") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => {
            panic!(
            "HYPERTASK_TEST_MONGODB_URI is not set{}. Run scripts/test, which installs and starts \
             a MongoDB-protocol test server (SecantusDB) and sets it, or set it to a MongoDB \
             server you run (e.g. mongodb://127.0.0.1:27017).",
            if std::env::var_os("CI").is_some() { " in CI" } else { "" }
        )
        }
    }
}

/// The database every test collection lives in.
pub const DATABASE: &str = "hypertask_driver_tests";

/// A collection name no other test (or earlier run) uses.
pub fn fresh_collection(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The spec of driver instance `name` on `collection`.
pub fn spec(name: &str, uri: &str, collection: &str) -> DriverSpec {
    DriverSpec::new(
        name,
        hypertask_driver_mongodb::KIND,
        serde_json::json!({
            "uri": uri,
            "database": DATABASE,
            "collection": collection,
        }),
        std::env::temp_dir(),
    )
}

/// A driver instance (with its own client) built through the registry, as the CLI does.
pub fn driver(name: &str, collection: &str) -> Arc<dyn Driver> {
    let mut registry = Registry::new();
    hypertask_driver_mongodb::register(&mut registry);
    Arc::new(
        registry
            .build(&spec(name, &uri(), collection))
            .expect("mongodb driver builds"),
    )
}

/// A bare store on `collection`.
pub fn store(name: &str, collection: &str) -> MongoStore {
    MongoStore::new(name, MongoConfig::new(uri(), DATABASE, collection)).expect("valid config")
}

/// A raw client of the test server, as another MongoDB application would use.
pub async fn raw_collection(collection: &str) -> mongodb::Collection<mongodb::bson::Document> {
    let client = mongodb::Client::with_uri_str(uri())
        .await
        .expect("test server URI parses");
    client.database(DATABASE).collection(collection)
}

/// A fresh collection for the conformance suite: driver- and store-level clients with their
/// own MongoDB clients, and raw documents planted by a plain MongoDB client.
pub struct Collection(pub String);

#[hypertask_core::async_trait]
impl hypertask_core::conformance::Upstream for Collection {
    async fn client(&self) -> Arc<dyn Driver> {
        driver("db", &self.0)
    }

    async fn store(&self) -> Option<Arc<dyn hypertask_core::Store>> {
        Some(Arc::new(store("db", &self.0)))
    }

    async fn plant(&self, id: &hypertask_core::TaskId, _raw: &[u8]) -> bool {
        // A document is not bytes: plant the MongoDB equivalent of a corrupt file, a document
        // whose fields are not a valid task.
        raw_collection(&self.0)
            .await
            .insert_one(mongodb::bson::doc! { "_id": id.as_str(), "due": "not a date" })
            .await
            .expect("plant a corrupt document");
        true
    }
}
