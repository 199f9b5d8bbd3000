//! `hypertask serve` for several users (`[server.users.NAME]`): each syncs from the CLI and
//! sees only their own tasks, through every endpoint; the per-user rate limit answers 429 and
//! the per-user task cap 507.

use hypertask_core::{bucket_hashes, Bucket, Depth, Hashes, TaskId};
use hypertask_integration_tests::{Machine, Server};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

const ALICE: &str = "alice-token-1";
const BOB: &str = "bob-token-22";

/// SHA-256 of `s`, lowercase hex, as `token_sha256` takes it.
fn sha256(s: &str) -> String {
    hypertask_core::ContentHash::of_bytes(s.as_bytes())
        .as_str()
        .to_owned()
}

/// A server machine whose config has `extra` under `[server]` and the two users: alice by
/// token, bob by the token's SHA-256.
fn server(extra: &str) -> (Machine, Server) {
    let m = Machine::new();
    m.write_config(&format!(
        "[server]\n{extra}\n[server.users.alice]\ntoken = \"{ALICE}\"\n\
         [server.users.bob]\ntoken_sha256 = \"{}\"\n",
        sha256(BOB)
    ));
    let server = Server::start(&m, "");
    (m, server)
}

fn client_of(server: &Server, token: &str) -> Machine {
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.server]\ntype = \"http\"\nurl = \"{}\"\ntoken = \"{token}\"\n",
        server.url
    ));
    m
}

fn descriptions(m: &Machine) -> Vec<String> {
    let mut out: Vec<String> = m
        .tasks()
        .iter()
        .map(|t| t["description"].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

/// One request of `token`, answered with its status and JSON body (`null` for none).
fn request(
    http: &Client,
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", server.url);
    let req = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    }
    .bearer_auth(token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.send().expect("request");
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn two_users_on_one_server_never_see_each_others_tasks() {
    let (_srv, server) = server("");
    let alice = client_of(&server, ALICE);
    let bob = client_of(&server, BOB);
    let a1 = alice.add(&["alice's", "first"]);
    alice.add(&["alice's", "second"]);
    let b1 = bob.add(&["bob's", "only"]);
    alice.ok(&["sync"]);
    bob.ok(&["sync"]);
    alice.ok(&["sync"]);
    assert_eq!(descriptions(&alice), ["alice's first", "alice's second"]);
    assert_eq!(descriptions(&bob), ["bob's only"]);

    // A third replica of alice's pulls exactly her tasks.
    let alice2 = client_of(&server, ALICE);
    alice2.ok(&["sync"]);
    assert_eq!(descriptions(&alice2), ["alice's first", "alice's second"]);

    let http = Client::new();
    // v1.0 `GET /hashes`: each lists only their own ids.
    let (status, listed) = request(&http, &server, ALICE, "GET", "/hashes", None);
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&String> = listed.as_object().unwrap().keys().collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(
        listed.get(&a1).is_some() && listed.get(&b1).is_none(),
        "{listed}"
    );
    let (_, listed) = request(&http, &server, BOB, "GET", "/hashes", None);
    assert_eq!(listed.as_object().unwrap().len(), 1, "{listed}");
    let bob_hash = listed[&b1].clone();

    // v1.0 `POST /task/:id` and v1.1 `POST /tasks` reading bob's id as alice: as if it did
    // not exist, exactly like an id nobody ever used.
    for id in [b1.as_str(), "neverusedid0001"] {
        let (status, answer) = request(
            &http,
            &server,
            ALICE,
            "POST",
            &format!("/task/{id}"),
            Some(json!({"client_state": null})),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({"server_state": null}), "{id}");
        let (status, answer) = request(
            &http,
            &server,
            ALICE,
            "POST",
            "/tasks",
            Some(json!({"client_states": {id: null}})),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["server_states"], json!({id: null}), "{id}");
    }

    // Alice writing under bob's id writes into her own namespace; bob's task is untouched.
    let intruder = json!({"id": b1, "description": "written by alice"});
    let (status, answer) = request(
        &http,
        &server,
        ALICE,
        "POST",
        &format!("/task/{b1}"),
        Some(json!({"client_state": intruder})),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["server_state"]["description"], "written by alice");
    let (_, listed) = request(&http, &server, BOB, "GET", "/hashes", None);
    assert_eq!(listed[&b1], bob_hash, "bob's task did not change");
    bob.ok(&["sync"]);
    assert_eq!(descriptions(&bob), ["bob's only"]);

    // The bucketed listing (protocol 1.2): alice's buckets are those of her own tasks, and
    // asking for the bucket of bob's task lists only what alice has there.
    let (status, buckets) = request(&http, &server, ALICE, "GET", "/buckets", None);
    assert_eq!(status, StatusCode::OK, "{buckets}");
    let depth = Depth::new(buckets["depth"].as_u64().unwrap() as u8).unwrap();
    let (_, listed) = request(&http, &server, ALICE, "GET", "/hashes", None);
    let alices: Hashes = serde_json::from_value(listed).unwrap();
    let expected: serde_json::Map<String, Value> = bucket_hashes(&alices, depth)
        .into_iter()
        .map(|(b, h)| (b.as_str().to_owned(), json!(h.as_str())))
        .collect();
    assert_eq!(buckets["buckets"], Value::Object(expected));
    let bobs_bucket = Bucket::of(&TaskId::new(b1.as_str()).unwrap(), depth);
    let (status, listed) = request(
        &http,
        &server,
        ALICE,
        "GET",
        &format!("/hashes?buckets={}", bobs_bucket.as_str()),
        None,
    );
    assert_eq!(status, StatusCode::OK);
    let alices_there: Hashes = serde_json::from_value(listed).unwrap();
    assert!(alices_there.keys().all(|id| alices.contains_key(id)));

    // `GET /capabilities` answers each of them, and the same to both.
    let (s1, c1) = request(&http, &server, ALICE, "GET", "/capabilities", None);
    let (s2, c2) = request(&http, &server, BOB, "GET", "/capabilities", None);
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(c1, c2);

    // Unknown tokens, and bob's SHA-256 presented as a token, get nothing.
    for token in ["nobody", sha256(BOB).as_str()] {
        let (status, body) = request(&http, &server, token, "GET", "/hashes", None);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(body["error"], "wrong token");
    }
    // The web client's page is public, and names no user.
    let page = http.get(format!("{}/", server.url)).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(!page.text().unwrap().contains("alice"));
}

#[test]
fn a_user_over_the_request_rate_gets_429_and_the_other_user_does_not() {
    let (_srv, server) = server("max_requests_per_minute = 5");
    let http = Client::new();
    for i in 0..5 {
        let (status, _) = request(&http, &server, ALICE, "GET", "/hashes", None);
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    let resp = http
        .get(format!("{}/hashes", server.url))
        .bearer_auth(ALICE)
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry), "Retry-After: {retry}");
    let body: Value = resp.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{body}"
    );
    // Bob's budget is his own.
    let (status, _) = request(&http, &server, BOB, "GET", "/hashes", None);
    assert_eq!(status, StatusCode::OK);
    // A wrong token costs alice nothing and gets 401, not 429.
    let (status, _) = request(&http, &server, "nobody", "GET", "/hashes", None);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_user_over_the_task_cap_gets_507_and_keeps_what_fits() {
    let (_srv, server) = server("max_tasks_per_user = 3");
    let alice = client_of(&server, ALICE);
    for i in 0..3 {
        alice.add(&["task", &i.to_string()]);
    }
    alice.ok(&["sync"]);
    alice.add(&["one", "too", "many"]);
    let out = alice.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "the sync fails");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at most 3"), "{stderr}");

    let http = Client::new();
    let (status, listed) = request(&http, &server, ALICE, "GET", "/hashes", None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed.as_object().unwrap().len(),
        3,
        "nothing beyond the cap"
    );
    let (status, body) = request(
        &http,
        &server,
        ALICE,
        "POST",
        "/tasks",
        Some(
            json!({"client_states": {"extraextra0001": {"id": "extraextra0001", "description": "x"}}}),
        ),
    );
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert!(
        body["error"].as_str().unwrap().contains("at most 3"),
        "{body}"
    );
    // Editing a task already stored still works at the cap.
    let id = alice.tasks()[0]["id"].as_str().unwrap().to_owned();
    alice.ok(&["modify", &id, "edited", "at", "the", "cap"]);
    let out = alice.run(&["sync"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (_, listed) = request(&http, &server, ALICE, "GET", "/hashes", None);
    assert_eq!(listed.as_object().unwrap().len(), 3, "{stdout}{stderr}");
    let (_, answer) = request(
        &http,
        &server,
        ALICE,
        "POST",
        &format!("/task/{id}"),
        Some(json!({"client_state": null})),
    );
    assert_eq!(answer["server_state"]["description"], "edited at the cap");
    // Bob can still store tasks.
    let bob = client_of(&server, BOB);
    bob.add(&["bob", "fits"]);
    bob.ok(&["sync"]);
}

#[test]
fn a_store_kind_that_cannot_keep_users_apart_is_refused() {
    let m = Machine::new();
    let remote = hypertask_integration_tests::bare_remote(m.dir.path());
    m.write_config(&format!(
        "[server]\nstore = {{ type = \"git\", path = {}, remote = {} }}\n\
         [server.users.alice]\ntoken = \"{ALICE}\"\n",
        hypertask_integration_tests::toml_path(&m.dir.path().join("clone")),
        hypertask_integration_tests::toml_path(&remote),
    ));
    let out = m.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot keep several users' tasks apart"),
        "{stderr}"
    );
}
