//! Running one program: starting it on demand, the handshake, one request at a time with its
//! `seq` and timeout, stopping it with its exit status and last stderr lines.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::wire::{Answer, Hello, Level, Op, Request, Welcome, WireError, WireProblem, PROTOCOL};
use super::{read_line, Line, MAX_ANSWER_BYTES};
use crate::driver::{Capabilities, DriverInfo, Problem};
use crate::error::{DriverError, ErrorKind};
use crate::spec::DriverSpec;
use crate::task::{Task, TaskId};

/// How many of a program's last stderr lines an error quotes.
const STDERR_TAIL: usize = 8;
/// Longest stderr line kept (longer lines are split).
const STDERR_LINE_BYTES: usize = 1024;
/// Longest text from a program (an error message, a problem) that is passed on.
const MESSAGE_CHARS: usize = 1000;
/// How long a stopped program gets to exit, and its stderr to drain.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// How much longer than the driver's `timeout` [`crate::Checked`] waits for an external
/// driver: a request's own timeout fires first, so the program is stopped (two [`STOP_WAIT`]s
/// at most) and its exit status and stderr reported.
pub(crate) const CHECKED_GRACE: Duration = Duration::from_secs(5);

/// A running program.
struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_seq: u64,
    /// A request was sent and its answer not read: the call was dropped (timed out outside),
    /// so the stream is out of step and the program must be restarted.
    busy: bool,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: JoinHandle<()>,
}

/// Why a running program had to be stopped.
struct Broken {
    kind: ErrorKind,
    why: String,
}

/// One configured program: started on demand, restarted after a failure.
pub(super) struct Program {
    pub(super) spec: DriverSpec,
    path: PathBuf,
    running: tokio::sync::Mutex<Option<Running>>,
    welcome: Mutex<Option<Welcome>>,
}

impl Program {
    pub(super) fn new(spec: DriverSpec, path: PathBuf) -> Program {
        Program {
            spec,
            path,
            running: tokio::sync::Mutex::new(None),
            welcome: Mutex::new(None),
        }
    }

    /// The program's file name, for messages.
    pub(super) fn display(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    pub(super) fn err(&self, kind: ErrorKind, message: impl Into<String>) -> DriverError {
        DriverError::new(&self.spec.name, kind, message)
    }

    /// A program's error answer as a core error.
    pub(super) fn answered(&self, what: &str, e: WireError) -> DriverError {
        self.err(
            e.error_kind(),
            format!(
                "{} failed {what}: {}",
                self.display(),
                printable(&e.message)
            ),
        )
    }

    fn secs(&self) -> f64 {
        self.spec.timeout.as_secs_f64()
    }

    pub(super) fn info(&self) -> DriverInfo {
        let declared = self
            .welcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|w| w.capabilities.clone())
            .unwrap_or_default();
        let d = Capabilities::default();
        DriverInfo {
            kind: self.spec.kind.clone(),
            name: self.spec.name.clone(),
            capabilities: Capabilities {
                max_batch: declared.max_batch.unwrap_or(d.max_batch).max(1),
                // Protocol 1 has no cheap root check.
                cheap_root: false,
                atomic_writes: declared.atomic_writes.unwrap_or(d.atomic_writes),
                remote: declared.remote.unwrap_or(d.remote),
                // Nor bucketed listings: a program answers whole maps.
                buckets: false,
            },
        }
    }

    /// The handshake's answer, starting the program when it is not running.
    pub(super) async fn welcome(&self) -> Result<Welcome, DriverError> {
        let mut slot = self.running.lock().await;
        self.ensure(&mut slot).await?;
        Ok(self
            .welcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("a running program has handshaken"))
    }

    /// Sends one request (`what` names it in errors) and decodes its answer.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        op: Op,
        what: &str,
    ) -> Result<T, DriverError> {
        let mut slot = self.running.lock().await;
        self.ensure(&mut slot).await?;
        let running = slot.as_mut().expect("ensured");
        match self.exchange(running, op, what).await {
            Err(broken) => {
                let running = slot.take().expect("ensured");
                Err(self.fail(running, broken).await)
            }
            Ok(Err(e)) => Err(e),
            Ok(Ok(raw)) => serde_json::from_str(raw.get()).map_err(|e| {
                self.err(
                    ErrorKind::Protocol,
                    format!(
                        "{} answered {what} with something else: {e}",
                        self.display()
                    ),
                )
            }),
        }
    }

    /// Makes sure a program that has handshaken runs in `slot`: one whose previous call was
    /// abandoned mid-answer is stopped first.
    async fn ensure(&self, slot: &mut Option<Running>) -> Result<(), DriverError> {
        if slot.as_ref().is_some_and(|r| r.busy) {
            let running = slot.take().expect("checked");
            stop(running, true).await;
            tracing::warn!(driver = %self.spec.name, "a call to {} was abandoned before its answer; the program was stopped and is started again", self.display());
        }
        if slot.is_none() {
            self.start(slot).await?;
        }
        Ok(())
    }

    /// Starts the program in `slot` and handshakes.
    async fn start(&self, slot: &mut Option<Running>) -> Result<(), DriverError> {
        let running = slot.insert(self.spawn().await?);
        let what = "the handshake (hello)";
        let hello = Op::Hello(Hello {
            protocol: PROTOCOL,
            name: self.spec.name.clone(),
            kind: self.spec.kind.clone(),
            options: self.hello_options(),
            config_dir: self.spec.config_dir.clone(),
        });
        let refused = match self.exchange(running, hello, what).await {
            Err(broken) => {
                let running = slot.take().expect("started");
                return Err(self.fail(running, broken).await);
            }
            Ok(Err(e)) => e,
            Ok(Ok(raw)) => match serde_json::from_str::<Welcome>(raw.get()) {
                Ok(w) if w.protocol == PROTOCOL => {
                    *self.welcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
                    return Ok(());
                }
                Ok(w) => self.err(
                    ErrorKind::Config,
                    format!(
                        "{} speaks protocol {}; this hypertask speaks protocol {PROTOCOL}",
                        self.display(),
                        w.protocol
                    ),
                ),
                Err(e) => self.err(
                    ErrorKind::Protocol,
                    format!(
                        "{} answered {what} with something else: {e}",
                        self.display()
                    ),
                ),
            },
        };
        // A program that refuses the handshake is of no use: stop it, report why.
        stop(slot.take().expect("started"), true).await;
        Err(refused)
    }

    /// Spawns the program with its three streams piped; stderr goes to the log.
    async fn spawn(&self) -> Result<Running, DriverError> {
        let mut attempt = 0;
        let mut child = loop {
            let spawned = Command::new(&self.path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Ok(child) => break child,
                // The file is still open for writing somewhere (being installed, or inherited
                // by a process forked meanwhile): that passes.
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) => {
                    let kind = match e.kind() {
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                            ErrorKind::Config
                        }
                        _ => ErrorKind::Unavailable,
                    };
                    let msg = format!("cannot start {}: {e}", self.path.display());
                    return Err(self.err(kind, msg).with_source(e));
                }
            }
        };
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams are piped");
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = tokio::spawn(log_stderr(
            BufReader::new(stderr),
            self.spec.name.clone(),
            tail.clone(),
        ));
        Ok(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            next_seq: 0,
            busy: false,
            stderr: tail,
            stderr_reader,
        })
    }

    /// The driver table without `type`, with the core keys in effect.
    fn hello_options(&self) -> Value {
        let mut options = match &self.spec.options {
            Value::Object(o) => o.clone(),
            _ => serde_json::Map::new(),
        };
        options.insert("timeout".into(), self.secs().into());
        options.insert("max_task_bytes".into(), self.spec.max_task_bytes.into());
        Value::Object(options)
    }

    /// Writes one request and reads its answer, within the timeout. `Err` means the stream
    /// can no longer be trusted and the program must be stopped.
    async fn exchange(
        &self,
        running: &mut Running,
        op: Op,
        what: &str,
    ) -> Result<Result<Box<RawValue>, DriverError>, Broken> {
        let seq = running.next_seq;
        running.next_seq += 1;
        let mut line = serde_json::to_vec(&Request { seq, op }).expect("requests serialise");
        line.push(b'\n');
        running.busy = true;
        let io = async {
            running.stdin.write_all(&line).await?;
            running.stdin.flush().await?;
            read_line(&mut running.stdout, MAX_ANSWER_BYTES).await
        };
        let line = match tokio::time::timeout(self.spec.timeout, io).await {
            Err(_) => {
                return Err(Broken {
                    kind: ErrorKind::Timeout,
                    why: format!("did not answer {what} within {} s", self.secs()),
                })
            }
            Ok(Ok(Some(Line::Complete(line)))) => line,
            Ok(Ok(Some(Line::TooLong))) => {
                return Err(Broken {
                    kind: ErrorKind::Protocol,
                    why: format!(
                        "answered {what} with a line longer than {MAX_ANSWER_BYTES} bytes"
                    ),
                })
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                return Err(Broken {
                    kind: ErrorKind::Unavailable,
                    why: format!("exited before answering {what}"),
                })
            }
        };
        running.busy = false;
        let answer: Answer<Box<RawValue>> = serde_json::from_slice(&line).map_err(|e| Broken {
            kind: ErrorKind::Protocol,
            why: format!("answered {what} with a line that is not a JSON answer ({e})"),
        })?;
        if answer.seq != Some(seq) {
            return Err(Broken {
                kind: ErrorKind::Protocol,
                why: format!(
                    "answered request {seq} ({what}) with seq {}",
                    answer.seq.map_or("null".to_owned(), |s| s.to_string())
                ),
            });
        }
        Ok(match (answer.ok, answer.error) {
            (Some(ok), None) => Ok(ok),
            (None, Some(e)) => Err(self.answered(what, e)),
            _ => Err(self.err(
                ErrorKind::Protocol,
                format!(
                    "{} answered {what} with neither or both of ok and error",
                    self.display()
                ),
            )),
        })
    }

    /// Stops a program whose stream broke, and says why with its exit status and stderr.
    async fn fail(&self, running: Running, broken: Broken) -> DriverError {
        let exited = broken.kind == ErrorKind::Unavailable;
        let (status, stderr) = stop(running, !exited).await;
        let mut message = format!("{} {}", self.display(), broken.why);
        match status {
            Some(s) if exited => message.push_str(&format!(" ({s})")),
            Some(s) => message.push_str(&format!(" and was stopped ({s})")),
            None => message.push_str(" and could not be stopped"),
        }
        if stderr.is_empty() {
            message.push_str("; it wrote nothing on stderr");
        } else {
            let quoted: Vec<String> = stderr.iter().map(|l| format!("{l:?}")).collect();
            message.push_str(&format!("; its last stderr lines: {}", quoted.join(" / ")));
        }
        self.err(broken.kind, message)
    }

    pub(super) fn max_batch(&self) -> usize {
        self.info().capabilities.max_batch
    }

    /// The level declared in the handshake, which must be `expected`.
    pub(super) async fn expect_level(&self, expected: Level) -> Result<(), DriverError> {
        let level = self.welcome().await?.level;
        if level == expected {
            return Ok(());
        }
        Err(self.err(
            ErrorKind::Config,
            format!(
                "{} declared level {}, but it is used at level {}",
                self.display(),
                level_name(level),
                level_name(expected)
            ),
        ))
    }

    pub(super) fn problem(&self, p: WireProblem) -> Problem {
        let id = p.id.and_then(|i| TaskId::new(i).ok());
        Problem {
            id,
            error: self.err(ErrorKind::InvalidData, printable(&p.message)),
        }
    }

    pub(super) fn bad_id(&self, key: &str) -> Problem {
        Problem {
            id: None,
            error: self.err(
                ErrorKind::Protocol,
                format!(
                    "{} listed an entry under {key:?}, which is not a task id",
                    self.display()
                ),
            ),
        }
    }

    pub(super) fn bad_hash(&self, id: TaskId, hash: &str) -> Problem {
        let error = self.err(
            ErrorKind::Protocol,
            format!(
                "{} listed task '{id}' with {hash:?}, which is not a content hash",
                self.display()
            ),
        );
        Problem {
            id: Some(id),
            error,
        }
    }

    /// A task document from an answer, checked on its own.
    pub(super) fn task(&self, id: &TaskId, doc: Value) -> Result<Task, DriverError> {
        Task::from_value(doc).map_err(|e| {
            self.err(
                ErrorKind::InvalidData,
                format!(
                    "{} answered task '{id}' with a document that is not a valid task: {e}",
                    self.display()
                ),
            )
        })
    }
}

/// Text a program sent, fit for a terminal and a log: control characters (escape sequences
/// included) replaced, length bounded.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MESSAGE_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Store => "store",
        Level::Driver => "driver",
    }
}

/// Sends the program's stderr to the log, keeping its last lines.
async fn log_stderr(
    mut stderr: BufReader<tokio::process::ChildStderr>,
    driver: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut stderr)
            .take(STDERR_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = printable(String::from_utf8_lossy(&buf).trim_end());
        if line.is_empty() {
            continue;
        }
        tracing::info!(driver = %driver, "{line}");
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Stops a program (at once, or after giving it time to exit by itself) and returns its exit
/// status and last stderr lines.
async fn stop(mut running: Running, kill_now: bool) -> (Option<ExitStatus>, Vec<String>) {
    drop(running.stdin);
    let mut status = None;
    if !kill_now {
        status = tokio::time::timeout(STOP_WAIT, running.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    if status.is_none() {
        let _ = running.child.start_kill();
        status = tokio::time::timeout(STOP_WAIT, running.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    if tokio::time::timeout(STOP_WAIT, &mut running.stderr_reader)
        .await
        .is_err()
    {
        // A grandchild may hold stderr open: stop listening.
        running.stderr_reader.abort();
    }
    let tail = running
        .stderr
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    (status, tail)
}

// ---------------------------------------------------------------------------------------------
// Store level.

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.spec.name)
            .field("path", &self.path)
            .finish()
    }
}
