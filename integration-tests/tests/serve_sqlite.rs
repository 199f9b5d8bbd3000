//! `hypertask serve` with no `[server] store`: one SQLite file in the server's data dir, kept
//! across restarts.

use hypertask_integration_tests::{Machine, Server};

const TOKEN: &str = "integration-token-sqlite";

fn client(server: &Server) -> Machine {
    let m = Machine::new();
    m.write_config(&server.driver_table("server"));
    m
}

fn descriptions(m: &Machine) -> Vec<String> {
    let mut d: Vec<String> = m
        .tasks()
        .iter()
        .map(|t| t["description"].as_str().unwrap().to_owned())
        .collect();
    d.sort();
    d
}

#[test]
fn the_default_server_store_is_one_sqlite_file_that_outlives_the_server() {
    let host = Machine::new();
    host.write_config(&format!("[server]\ntoken = \"{TOKEN}\"\n"));
    let server = Server::start(&host, TOKEN);
    let a = client(&server);
    a.ok(&["add", "water", "the", "plants"]);
    a.ok(&["add", "call", "mum"]);
    a.ok(&["sync"]);
    let file = host.data_dir().join("server.sqlite3");
    assert!(
        file.is_file(),
        "{} holds the server's tasks",
        file.display()
    );
    assert!(
        !host.data_dir().join("server").exists(),
        "no directory store"
    );
    drop(server);

    // A new server process over the same file serves what the first one stored.
    let server = Server::start(&host, TOKEN);
    let b = client(&server);
    b.ok(&["sync"]);
    assert_eq!(descriptions(&b), ["call mum", "water the plants"]);
    assert_eq!(descriptions(&b), descriptions(&a));
}
