//! A real headless Chromium driven through WebDriver (ChromeDriver), for the web client's
//! tests. Only the few W3C WebDriver commands the tests need, over plain HTTP on 127.0.0.1.
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver`; elsewhere set
//! `HYPERTASK_TEST_CHROMIUM` and `HYPERTASK_TEST_CHROMEDRIVER` to the two programs. Missing
//! programs are a failure, never a skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The element key of the W3C WebDriver protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait for the page lasts before the test fails.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

fn program(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: the web client's tests need a real browser. Run scripts/test, which \
         installs Debian's {package}, or set {var}.",
        path.display()
    );
    path
}

/// A headless Chromium session; the browser and its driver are stopped on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless Chromium session.
    pub fn start() -> Browser {
        let chromium = program("HYPERTASK_TEST_CHROMIUM", "/usr/bin/chromium", "chromium");
        let chromedriver = program(
            "HYPERTASK_TEST_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let port = crate::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + PAGE_WAIT;
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("browser profile dir");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        let mut browser = Browser {
            driver,
            base: format!("http://{addr}"),
            session: String::new(),
            http,
            _profile: profile,
        };
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=900,700",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let answer = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}}),
        );
        browser.session = answer["sessionId"]
            .as_str()
            .expect("a WebDriver session id")
            .to_owned();
        browser
    }

    /// One WebDriver command; panics with the driver's message on an error.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req.send().expect("WebDriver request");
        let status = resp.status();
        let answer: Value = resp.json().expect("WebDriver answers JSON");
        assert!(
            status.is_success(),
            "WebDriver {method} {path} failed ({status}): {}",
            answer["value"]["message"]
        );
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// Waits until `script` returns something truthy, and returns it.
    pub fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let v = self.run(script, args.clone());
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page says: {}",
                self.run(
                    "return document.getElementById('status')?.textContent",
                    json!([])
                )
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first element matching the CSS `selector`, once it is shown.
    pub fn find(&self, selector: &str) -> Element {
        self.wait_for(
            selector,
            "const e = document.querySelector(arguments[0]); \
             return e !== null && e.getClientRects().length > 0",
            json!([selector]),
        );
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": selector}),
        );
        Element(v[ELEMENT].as_str().expect("an element").to_owned())
    }

    /// Types `text` into `el` (WebDriver keys: `"\u{E007}"` is Enter).
    pub fn type_into(&self, el: &Element, text: &str) {
        self.call(
            "POST",
            &format!("/element/{}/value", el.0),
            json!({ "text": text }),
        );
    }

    /// Clears an input.
    pub fn clear(&self, el: &Element) {
        self.call("POST", &format!("/element/{}/clear", el.0), json!({}));
    }

    /// Clicks `el`.
    pub fn click(&self, el: &Element) {
        self.call("POST", &format!("/element/{}/click", el.0), json!({}));
    }

    /// Resizes the window (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.call("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.http.delete(url).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
