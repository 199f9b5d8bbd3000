//! External drivers: a `type` with no built-in factory runs the program `hypertask-driver-KIND`
//! from `PATH`, which speaks the driver protocol as JSON lines on stdin/stdout.
//!
//! One request per line, one response per line, in order:
//!
//! | request | response |
//! |---|---|
//! | `{"op":"init","name":N,"kind":K,"config":{…},"data_dir":D}` | `{"capabilities":{…}}` (optional fields) |
//! | `{"op":"hashes","known_root":H\|null}` | `{"unchanged":true}` or `{"hashes":{id:hash},"problems":[{"id":id\|null,"error":msg}]}` |
//! | `{"op":"resolve","batch":[[id, task\|null], …]}` | `{"results":[{"id":id,"state":task\|null} or {"id":id,"error":msg}, …]}` |
//! | `{"op":"finish"}` | `{}` |
//! | `{"op":"check"}` | `{"ok":bool,"detail":msg}` |
//!
//! Any response may instead be `{"error":msg,"retryable":bool}`. [`serve_stdio`] implements the
//! program side over any [`Driver`], so a driver written in Rust becomes a program in one line.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use crate::driver::{
    Answers, Batch, Capabilities, Driver, DriverInfo, Health, Inventory, Listing, Problem,
};
use crate::error::{DriverError, ErrorKind};
use crate::hash::{ContentHash, Hashes};
use crate::spec::DriverSpec;
use crate::task::{Task, TaskId};

/// The program name for a driver kind.
pub fn program_name(kind: &str) -> String {
    format!("hypertask-driver-{kind}")
}

/// Finds `hypertask-driver-KIND` on `PATH`.
pub fn find_program(kind: &str) -> Option<PathBuf> {
    if !kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let name = format!("{}{}", program_name(kind), std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
}

struct Process {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A driver that is an external program speaking the JSON-lines protocol.
pub struct ExternalDriver {
    spec: DriverSpec,
    program: PathBuf,
    process: Mutex<Option<Process>>,
    capabilities: std::sync::Mutex<Capabilities>,
}

impl std::fmt::Debug for ExternalDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalDriver")
            .field("name", &self.spec.name)
            .field("program", &self.program)
            .finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireCapabilities {
    max_batch: Option<usize>,
    cheap_root: Option<bool>,
    atomic_writes: Option<bool>,
    remote: Option<bool>,
}

impl ExternalDriver {
    /// A driver running `program` for `spec`; the program starts on first use.
    pub fn new(spec: DriverSpec, program: PathBuf) -> Self {
        ExternalDriver {
            spec,
            program,
            process: Mutex::new(None),
            capabilities: std::sync::Mutex::new(Capabilities::default()),
        }
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> DriverError {
        DriverError::new(&self.spec.name, kind, msg)
    }

    async fn start(&self) -> Result<Process, DriverError> {
        let mut child = Command::new(&self.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                self.err(
                    ErrorKind::Unavailable,
                    format!("cannot start {}: {e}", self.program.display()),
                )
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut process = Process {
            _child: child,
            stdin,
            stdout,
        };
        let init = json!({
            "op": "init",
            "name": self.spec.name,
            "kind": self.spec.kind,
            "config": self.spec.options,
            "data_dir": self.spec.data_dir,
        });
        let answer = self.exchange(&mut process, &init).await?;
        let caps: WireCapabilities =
            serde_json::from_value(answer.get("capabilities").cloned().unwrap_or(json!({})))
                .map_err(|e| self.err(ErrorKind::Protocol, format!("bad capabilities: {e}")))?;
        let mut c = self.capabilities.lock().expect("capabilities lock");
        let d = Capabilities::default();
        *c = Capabilities {
            max_batch: caps.max_batch.unwrap_or(d.max_batch).max(1),
            cheap_root: caps.cheap_root.unwrap_or(d.cheap_root),
            atomic_writes: caps.atomic_writes.unwrap_or(d.atomic_writes),
            remote: caps.remote.unwrap_or(d.remote),
        };
        drop(c);
        Ok(process)
    }

    async fn exchange(&self, p: &mut Process, request: &Value) -> Result<Value, DriverError> {
        let mut line = serde_json::to_vec(request).expect("requests serialise");
        line.push(b'\n');
        let gone = |e: std::io::Error| {
            self.err(
                ErrorKind::Unavailable,
                format!("{} stopped answering: {e}", self.program.display()),
            )
        };
        p.stdin.write_all(&line).await.map_err(gone)?;
        p.stdin.flush().await.map_err(gone)?;
        let answer = p.stdout.next_line().await.map_err(gone)?.ok_or_else(|| {
            self.err(
                ErrorKind::Unavailable,
                format!("{} exited", self.program.display()),
            )
        })?;
        let value: Value = serde_json::from_str(&answer).map_err(|e| {
            self.err(
                ErrorKind::Protocol,
                format!(
                    "{} answered a line that is not JSON: {e}",
                    self.program.display()
                ),
            )
        })?;
        if let Some(msg) = value.get("error").and_then(Value::as_str) {
            let retryable = value.get("retryable").and_then(Value::as_bool) == Some(true);
            let kind = if retryable {
                ErrorKind::Unavailable
            } else {
                ErrorKind::InvalidRequest
            };
            return Err(self.err(kind, msg));
        }
        Ok(value)
    }

    async fn call(&self, request: Value) -> Result<Value, DriverError> {
        let mut guard = self.process.lock().await;
        if guard.is_none() {
            *guard = Some(self.start().await?);
        }
        let p = guard.as_mut().expect("started");
        let result = self.exchange(p, &request).await;
        if matches!(&result, Err(e) if e.kind() != ErrorKind::InvalidRequest) {
            // The process may be gone or out of step: start afresh next time.
            *guard = None;
        }
        result
    }

    fn protocol(&self, what: &str, e: impl std::fmt::Display) -> DriverError {
        self.err(ErrorKind::Protocol, format!("bad {what} answer: {e}"))
    }
}

#[async_trait]
impl Driver for ExternalDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: self.spec.kind.clone(),
            name: self.spec.name.clone(),
            capabilities: self.capabilities.lock().expect("capabilities lock").clone(),
        }
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let v = self
            .call(json!({"op": "hashes", "known_root": known_root}))
            .await?;
        if v.get("unchanged").and_then(Value::as_bool) == Some(true) {
            return Ok(Listing::Unchanged);
        }
        let hashes: Hashes = serde_json::from_value(v.get("hashes").cloned().unwrap_or(json!({})))
            .map_err(|e| self.protocol("hashes", e))?;
        let problems = v
            .get("problems")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| Problem {
                        id: p
                            .get("id")
                            .and_then(Value::as_str)
                            .and_then(|s| TaskId::new(s).ok()),
                        error: self.err(
                            ErrorKind::InvalidData,
                            p.get("error")
                                .and_then(Value::as_str)
                                .unwrap_or("invalid entry"),
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Listing::Changed(Inventory { hashes, problems }))
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let pairs: Vec<(&TaskId, &Option<Task>)> = batch.iter().collect();
        let v = self.call(json!({"op": "resolve", "batch": pairs})).await?;
        let results = v
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| self.protocol("resolve", "no results"))?;
        let mut answers = Answers::new();
        for r in results {
            let id = r
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| TaskId::new(s).ok())
                .ok_or_else(|| self.protocol("resolve", "a result without a valid id"))?;
            let state = if let Some(msg) = r.get("error").and_then(Value::as_str) {
                Err(self.err(ErrorKind::InvalidData, format!("task '{id}': {msg}")))
            } else {
                match r.get("state").cloned().unwrap_or(Value::Null) {
                    Value::Null => Ok(None),
                    doc => Task::from_value(doc)
                        .map(Some)
                        .map_err(|e| self.err(ErrorKind::Protocol, e.to_string())),
                }
            };
            answers.insert(id, state);
        }
        Ok(answers)
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.call(json!({"op": "finish"})).await.map(drop)
    }

    async fn check(&self) -> Result<Health, DriverError> {
        let v = self.call(json!({"op": "check"})).await?;
        Ok(Health {
            ok: v.get("ok").and_then(Value::as_bool).unwrap_or(false),
            detail: v
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// Runs the program side of the protocol on stdin/stdout. `build` makes the driver from the
/// `init` request's spec.
pub async fn serve_stdio<F>(build: F) -> std::io::Result<()>
where
    F: FnOnce(&DriverSpec) -> Result<Arc<dyn Driver>, DriverError>,
{
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut build = Some(build);
    let mut driver: Option<Arc<dyn Driver>> = None;
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(req) => answer(&req, &mut build, &mut driver).await,
            Err(e) => json!({"error": format!("request is not JSON: {e}")}),
        };
        let mut bytes = serde_json::to_vec(&answer).expect("answers serialise");
        bytes.push(b'\n');
        out.write_all(&bytes).await?;
        out.flush().await?;
    }
    Ok(())
}

fn error_json(e: &DriverError) -> Value {
    json!({"error": e.to_string(), "retryable": e.is_retryable()})
}

async fn answer<F>(
    req: &Value,
    build: &mut Option<F>,
    driver: &mut Option<Arc<dyn Driver>>,
) -> Value
where
    F: FnOnce(&DriverSpec) -> Result<Arc<dyn Driver>, DriverError>,
{
    let op = req.get("op").and_then(Value::as_str).unwrap_or("");
    if op == "init" {
        let spec = DriverSpec::new(
            req["name"].as_str().unwrap_or("external"),
            req["kind"].as_str().unwrap_or("external"),
            req.get("config").cloned().unwrap_or(json!({})),
            req["data_dir"]
                .as_str()
                .map(PathBuf::from)
                .unwrap_or_default(),
        );
        let Some(build) = build.take() else {
            return json!({"error": "already initialised"});
        };
        return match build(&spec) {
            Ok(d) => {
                let caps = d.info().capabilities;
                *driver = Some(d);
                json!({ "capabilities": caps })
            }
            Err(e) => error_json(&e),
        };
    }
    let Some(d) = driver.as_ref() else {
        return json!({"error": "the first request must be init"});
    };
    match op {
        "hashes" => {
            let known = req
                .get("known_root")
                .and_then(Value::as_str)
                .and_then(ContentHash::parse);
            match d.hashes(known.as_ref()).await {
                Ok(Listing::Unchanged) => json!({"unchanged": true}),
                Ok(Listing::Changed(inv)) => json!({
                    "hashes": inv.hashes,
                    "problems": inv.problems.iter().map(|p| json!({
                        "id": p.id, "error": p.error.to_string()
                    })).collect::<Vec<_>>(),
                }),
                Err(e) => error_json(&e),
            }
        }
        "resolve" => {
            let batch: Result<Vec<(TaskId, Option<Task>)>, _> =
                serde_json::from_value(req.get("batch").cloned().unwrap_or(Value::Null));
            let batch: Batch = match batch {
                Ok(b) => b.into_iter().collect(),
                Err(e) => return json!({"error": format!("bad batch: {e}")}),
            };
            match d.resolve(batch).await {
                Ok(results) => json!({"results": results.into_iter().map(|(id, r)| match r {
                    Ok(state) => json!({"id": id, "state": state}),
                    Err(e) => json!({"id": id, "error": e.to_string()}),
                }).collect::<Vec<_>>()}),
                Err(e) => error_json(&e),
            }
        }
        "finish" => match d.finish().await {
            Ok(()) => json!({}),
            Err(e) => error_json(&e),
        },
        "check" => match d.check().await {
            Ok(h) => json!({"ok": h.ok, "detail": h.detail}),
            Err(e) => error_json(&e),
        },
        other => json!({"error": format!("unknown op {other:?}")}),
    }
}
