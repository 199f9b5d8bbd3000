//! The web client served by `hypertask serve`, in a real headless Chromium (Debian's, through
//! ChromeDriver; `scripts/test` installs both), next to a CLI replica syncing with the same
//! server: sign in, add in the page, see CLI edits live, edit different fields on both sides.
//!
//! `HYPERTASK_SCREENSHOT=PATH` also saves a picture of the page (docs/web-client.png is made
//! this way).

use std::time::{Duration, Instant};

use hypertask_integration_tests::browser::{Browser, PAGE_WAIT};
use hypertask_integration_tests::{Machine, Server};
use serde_json::{json, Value};

const TOKEN: &str = "web-test-token";

/// A server machine and a CLI client of it.
fn server_and_client() -> (Machine, Server, Machine) {
    let srv = Machine::new();
    // The default store: the embedded database under the server's data dir.
    srv.write_config(&format!("[server]\ntoken = \"{TOKEN}\"\n"));
    let server = Server::start(&srv, TOKEN);
    let cli = Machine::new();
    cli.write_config(&server.driver_table("server"));
    (srv, server, cli)
}

/// Whether the page shows task `arguments[0]` with the description `arguments[1]`.
const SHOWS_DESCRIPTION: &str =
    "const li = document.querySelector(`li.task[data-id=\"${arguments[0]}\"]`); \
     return li !== null && li.querySelector('.description').textContent === arguments[1]";

fn sign_in(browser: &Browser, server: &Server, token: &str) {
    browser.open(&format!("{}/", server.url));
    let field = browser.find("#token");
    browser.clear(&field);
    browser.type_into(&field, &format!("{token}\u{E007}"));
}

/// The one task of `cli` whose description is `description`.
fn cli_task(cli: &Machine, description: &str) -> Value {
    cli.tasks()
        .into_iter()
        .find(|t| t["description"] == description)
        .unwrap_or_else(|| panic!("the CLI replica has no task '{description}'"))
}

/// Syncs `cli` until `check` holds for its tasks (the page's write may land a moment after
/// the page shows it).
fn sync_until(cli: &Machine, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        cli.ok(&["sync"]);
        let tasks = cli.tasks();
        if check(&tasks) {
            return tasks;
        }
        assert!(
            Instant::now() < deadline,
            "the CLI replica never saw {what}: {tasks:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_wrong_token_is_refused_with_a_message() {
    let (_srv, server, _cli) = server_and_client();
    let browser = Browser::start();
    sign_in(&browser, &server, "not-the-token");
    let message = browser.wait_for(
        "the refusal",
        "const s = document.getElementById('status'); \
         return s.classList.contains('error') && s.textContent",
        json!([]),
    );
    assert_eq!(message, "The server refused this token.");
    let shown = browser.run(
        "return !document.getElementById('tasks-view').hidden",
        json!([]),
    );
    assert_eq!(shown, false, "no task list without the right token");
    let stored = browser.run("return localStorage.getItem('hypertask.token')", json!([]));
    assert_eq!(stored, Value::Null, "a refused token is not kept");
}

#[test]
fn the_page_and_a_cli_replica_share_tasks_and_edits_live() {
    let (_srv, server, cli) = server_and_client();
    let browser = Browser::start();
    sign_in(&browser, &server, TOKEN);
    browser.wait_for(
        "the task list",
        "return !document.getElementById('tasks-view').hidden",
        json!([]),
    );

    // Added in the page, seen by the CLI.
    let add = browser.find("#add-description");
    browser.type_into(&add, "buy milk +errands project:home\u{E007}");
    browser.wait_for(
        "the new task in the list",
        "return [...document.querySelectorAll('li.task .description')] \
           .some(d => d.textContent === 'buy milk')",
        json!([]),
    );
    sync_until(&cli, "the page's task", |ts| {
        ts.iter().any(|t| t["description"] == "buy milk")
    });
    let task = cli_task(&cli, "buy milk");
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["tags"], json!(["errands"]));
    assert_eq!(task["project"], "home");

    // Edited with the CLI, shown in the page without a reload.
    let marker = browser.run("window.__same_page = true; return true", json!([]));
    assert_eq!(marker, true);
    cli.ok(&["modify", &id, "buy", "oat", "milk"]);
    cli.ok(&["sync"]);
    browser.wait_for(
        "the CLI's edit in the page",
        SHOWS_DESCRIPTION,
        json!([id, "buy oat milk"]),
    );
    assert_eq!(
        browser.run("return window.__same_page === true", json!([])),
        true,
        "the page was not reloaded"
    );

    // Different fields edited on both sides at once: both survive.
    cli.ok(&["modify", &id, "priority:H"]);
    let edit = browser.find(&format!(
        "li.task[data-id=\"{id}\"] .actions button[title^=\"Edit\"]"
    ));
    browser.click(&edit);
    let project = browser.find("#edit-project");
    browser.clear(&project);
    browser.type_into(&project, "garden");
    browser.click(&browser.find("#edit-save"));
    browser.wait_for(
        "the page's edit to be saved",
        "return document.getElementById('status').textContent === 'Saved.'",
        json!([]),
    );
    let tasks = sync_until(&cli, "both edits", |ts| {
        ts.iter()
            .any(|t| t["id"] == id.as_str() && t["project"] == "garden")
    });
    let task = tasks.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(task["priority"], "H", "the CLI's edit survived: {task:#}");
    assert_eq!(
        task["project"], "garden",
        "the page's edit survived: {task:#}"
    );
    assert_eq!(task["description"], "buy oat milk");
    browser.wait_for(
        "the CLI's priority in the page",
        "const li = document.querySelector(`li.task[data-id=\"${arguments[0]}\"]`); \
         return li && li.querySelector('.priority')?.textContent === 'priority H'",
        json!([id]),
    );

    // Completed in the page: the CLI sees it done.
    let done = browser.find(&format!(
        "li.task[data-id=\"{id}\"] .actions button[title^=\"Done\"]"
    ));
    browser.click(&done);
    let tasks = sync_until(&cli, "the task completed", |ts| {
        ts.iter()
            .any(|t| t["id"] == id.as_str() && t.get("done").is_some())
    });
    assert!(tasks.iter().any(|t| t["id"] == id.as_str()));

    // On a phone-sized screen nothing needs sideways scrolling.
    browser.resize(390, 800);
    browser.wait_for(
        "the narrow layout",
        "return window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth",
        json!([]),
    );
    browser.resize(900, 700);

    if let Some(path) = std::env::var_os("HYPERTASK_SCREENSHOT") {
        screenshot(&browser, &cli, path.as_ref());
    }
}

/// A picture of the page with a few tasks in it, for the docs.
fn screenshot(browser: &Browser, cli: &Machine, path: &std::path::Path) {
    for words in [
        &[
            "pay",
            "rent",
            "+bills",
            "project:home",
            "due:tomorrow",
            "priority:H",
        ][..],
        &["call", "the", "plumber", "project:home.kitchen", "+phone"],
        &["book", "train", "tickets", "+travel", "due:friday"],
        &["read", "chapter", "3", "project:study"],
    ] {
        cli.add(words);
    }
    cli.ok(&["sync"]);
    browser.wait_for(
        "the CLI's tasks",
        "return document.querySelectorAll('li.task').length >= 4",
        json!([]),
    );
    std::fs::write(path, browser.screenshot()).expect("write the screenshot");
}
