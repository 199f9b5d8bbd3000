//! Slow and silent connections cannot lock legitimate clients out. Alone in its binary: it
//! lowers this process's open-file limit to the common 1024, as on the machine where 1,100
//! idle connections once made the server refuse everyone.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{task, TOKEN};
use hypertask_core::{Batch, Driver, Listing, MemoryStore, StoreDriver};
use hypertask_driver_http::{serve, HttpConfig, HttpDriver, ServerOptions};
use serde_json::json;

const HALF_OPEN: usize = 2000;
const ATTACK_ADDR: &str = "HYPERTASK_TEST_ATTACK_ADDR";

/// 2,000 connections that sent half a request line, held open by another process, do not
/// stop a client from syncing with a server limited to 1024 open files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_stop_a_sync() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");

    // The attacker: this test binary again, running `attacker` with its own file limit.
    let mut attacker = Command::new(std::env::current_exe().unwrap())
        .args([
            "attacker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ATTACK_ADDR, addr.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = attacker.stdout.take().unwrap();

    // The server side: 1024 open files at most, default connection cap, short timeouts.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(1024),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let store: std::sync::Arc<dyn Driver> =
        std::sync::Arc::new(StoreDriver::new(MemoryStore::new("s")));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        store,
        ServerOptions {
            token: Some(TOKEN.into()),
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        async {
            let _ = stopped.await;
        },
    ));

    // Wait (bounded by the attacker's own deadline) until every connection was attempted.
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(out).lines();
        lines.find(|l| l.as_deref().is_ok_and(|l| l.contains("attempted 2000")))
    })
    .await
    .unwrap();
    assert!(ready.is_some(), "the attacker did not report");

    let mut config = HttpConfig::new(&url).with_token(TOKEN);
    config.timeout_secs = 60.0;
    config.connect_timeout_secs = 60.0;
    let driver = HttpDriver::new("server", config).unwrap();
    let t = task(json!({"id": "legit", "description": "still served"}));
    let answers = driver
        .resolve(Batch::from([(t.id().clone(), Some(t.clone()))]))
        .await
        .unwrap();
    assert_eq!(answers[t.id()].as_ref().unwrap().as_ref(), Some(&t));
    match driver.hashes(None).await.unwrap() {
        Listing::Changed(inv) => assert_eq!(inv.hashes.len(), 1),
        Listing::Unchanged => panic!("asked without a root"),
    }

    let _ = attacker.kill();
    let _ = attacker.wait();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// The attacking process (run by the test above, never on its own): opens [`HALF_OPEN`]
/// connections, sends half a request line on each and holds them until killed.
#[test]
#[ignore = "the attacker process of half_open_connections_do_not_stop_a_sync"]
fn attacker() {
    let Ok(addr) = std::env::var(ATTACK_ADDR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut held = Vec::new();
        let attempts = (0..HALF_OPEN).map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let connect = tokio::net::TcpStream::connect(&addr);
                let mut s = tokio::time::timeout(Duration::from_secs(30), connect)
                    .await
                    .ok()?
                    .ok()?;
                s.write_all(b"GET /hashes HT").await.ok()?;
                Some(s)
            })
        });
        for a in futures::future::join_all(attempts).await {
            if let Ok(Some(s)) = a {
                held.push(s);
            }
        }
        println!("attempted {HALF_OPEN}, {} connected", held.len());
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(held);
    });
}
