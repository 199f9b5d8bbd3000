//! The program side: answering protocol 1 for a Rust [`Store`] or [`Driver`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::wire::{
    Answer, CheckReport, Done, Failure, Fetched, Hashes, Hello, Level, Listed, ListedEntry, Op,
    PutResult, Request, Slot, States, StoredDoc, Welcome, WireCapabilities, WireError, WireProblem,
    WireWrite, Written, PROTOCOL,
};
use super::{read_line, Line};
use crate::driver::{Access, Driver, DriverInfo, Listing, Problem};
use crate::error::DriverError;
use crate::spec::DriverSpec;
use crate::store::{PutOutcome, Store, Write};
use crate::task::{Task, TaskId};

/// The longest request line [`serve`] reads (the host is hypertask itself; the bound only
/// stops a runaway writer).
const MAX_REQUEST_BYTES: usize = 1 << 30;

/// What a program serves: a [`Store`] at the store level, or a [`Driver`] (which merges
/// itself) at the driver level.
#[derive(Debug, Clone)]
pub enum Served {
    /// Store level: hypertask hashes and merges; the store lists, gets and compare-and-swaps.
    Store(Arc<dyn Store>),
    /// Driver level: the driver merges and stores.
    Driver(Arc<dyn Driver>),
}

impl Served {
    fn level(&self) -> Level {
        match self {
            Served::Store(_) => Level::Store,
            Served::Driver(_) => Level::Driver,
        }
    }

    fn info(&self) -> DriverInfo {
        match self {
            Served::Store(s) => s.info(),
            Served::Driver(d) => d.info(),
        }
    }
}

/// Answers protocol 1 on stdin/stdout until stdin closes. `build` makes what is served from
/// the `hello` request's driver table.
///
/// ```no_run
/// use std::sync::Arc;
/// use hypertask_core::external::{serve_stdio, Served};
/// use hypertask_core::MemoryStore;
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> std::io::Result<()> {
///     serve_stdio(|spec| Ok(Served::Store(Arc::new(MemoryStore::new(&spec.name))))).await
/// }
/// ```
pub async fn serve_stdio<F>(build: F) -> std::io::Result<()>
where
    F: FnOnce(&DriverSpec) -> Result<Served, DriverError>,
{
    serve(tokio::io::stdin(), tokio::io::stdout(), build).await
}

/// Answers protocol 1 on any pair of streams until `input` ends (see [`serve_stdio`]).
///
/// # Behavior
/// - Every request is answered with one line repeating its `seq`; a line that is not a
///   request is answered with an `invalid` error (and `seq` when it had one).
/// - The first request must be `hello`: `build` gets the driver table (`type` = the hello's
///   kind; relative paths are taken from its `config_dir`, which is also the spec's data dir).
/// - The served store or driver is begun (for writing) before its first operation and again
///   after each `finish`.
/// - Store-level programs refuse `resolve`, driver-level ones `get` and `put`.
pub async fn serve<R, W, F>(input: R, mut output: W, build: F) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnOnce(&DriverSpec) -> Result<Served, DriverError>,
{
    let mut input = BufReader::new(input);
    let mut server = Server {
        build: Some(build),
        served: None,
        begun: false,
    };
    loop {
        let mut answer = match read_line(&mut input, MAX_REQUEST_BYTES).await? {
            None => return Ok(()),
            Some(Line::TooLong) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a request line is longer than {MAX_REQUEST_BYTES} bytes"),
                ))
            }
            Some(Line::Complete(line)) => server.answer(&line).await,
        };
        answer.push(b'\n');
        output.write_all(&answer).await?;
        output.flush().await?;
    }
}

/// Just the `seq` of a line that is not a valid request, to address the error answer.
#[derive(Deserialize)]
struct Head {
    seq: Option<u64>,
}

struct Server<F> {
    build: Option<F>,
    served: Option<Served>,
    begun: bool,
}

fn reply<T: Serialize>(seq: u64, result: Result<T, WireError>) -> Vec<u8> {
    let answer = match result {
        Ok(v) => Answer::ok(seq, v),
        Err(e) => Answer::error(Some(seq), e),
    };
    serde_json::to_vec(&answer).expect("answers serialise")
}

fn wire(e: DriverError) -> WireError {
    WireError::from_driver_error(&e)
}

fn problem(p: Problem) -> WireProblem {
    WireProblem {
        id: p.id.map(|i| i.to_string()),
        message: p.error.message().to_owned(),
    }
}

impl<F> Server<F>
where
    F: FnOnce(&DriverSpec) -> Result<Served, DriverError>,
{
    async fn answer(&mut self, line: &[u8]) -> Vec<u8> {
        let request: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                let seq = serde_json::from_slice::<Head>(line)
                    .ok()
                    .and_then(|h| h.seq);
                let error = WireError::invalid(format!("not a protocol {PROTOCOL} request: {e}"));
                return serde_json::to_vec(&Answer::<Done>::error(seq, error))
                    .expect("answers serialise");
            }
        };
        let seq = request.seq;
        match request.op {
            Op::Hello(hello) => reply(seq, self.hello(hello)),
            Op::List => reply(seq, self.list().await),
            Op::Get { ids } => reply(seq, self.get(ids).await),
            Op::Put { writes } => reply(seq, self.put(writes).await),
            Op::Resolve { states } => reply(seq, self.resolve(states).await),
            Op::Finish => reply(seq, self.finish().await),
            Op::Check => reply(seq, self.check().await),
        }
    }

    fn hello(&mut self, hello: Hello) -> Result<Welcome, WireError> {
        if hello.protocol != PROTOCOL {
            return Err(WireError {
                kind: "config".into(),
                message: format!(
                    "this program speaks protocol {PROTOCOL}, not protocol {}",
                    hello.protocol
                ),
                retryable: false,
            });
        }
        let Some(build) = self.build.take() else {
            return Err(WireError::invalid("hello was already answered"));
        };
        let mut table = match hello.options {
            Value::Object(o) => o,
            _ => return Err(WireError::invalid("options must be an object")),
        };
        table.insert("type".into(), hello.kind.into());
        let data_dir = hello
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let spec =
            DriverSpec::from_table(hello.name, Value::Object(table), data_dir, hello.config_dir)
                .map_err(wire)?;
        let served = build(&spec).map_err(wire)?;
        let caps = served.info().capabilities;
        let welcome = Welcome {
            protocol: PROTOCOL,
            level: served.level(),
            capabilities: WireCapabilities {
                max_batch: Some(caps.max_batch),
                atomic_writes: Some(caps.atomic_writes),
                remote: Some(caps.remote),
            },
        };
        self.served = Some(served);
        Ok(welcome)
    }

    /// What is served, begun for writing if it is not.
    async fn served(&mut self) -> Result<Served, WireError> {
        let Some(served) = self.served.clone() else {
            return Err(WireError::invalid("the first request must be hello"));
        };
        if !self.begun {
            match &served {
                Served::Store(s) => s.begin(Access::Write).await,
                Served::Driver(d) => d.begin(Access::Write).await,
            }
            .map_err(wire)?;
            self.begun = true;
        }
        Ok(served)
    }

    async fn list(&mut self) -> Result<ListAnswer, WireError> {
        match self.served().await? {
            Served::Store(s) => {
                let inventory = s.list().await.map_err(wire)?;
                Ok(ListAnswer::Store(Listed {
                    entries: inventory
                        .entries
                        .into_iter()
                        .map(|(id, e)| {
                            let entry = ListedEntry {
                                hash: e.hash.to_string(),
                                version: e.version,
                            };
                            (id.to_string(), entry)
                        })
                        .collect(),
                    problems: inventory.problems.into_iter().map(problem).collect(),
                }))
            }
            Served::Driver(d) => match d.hashes(None).await.map_err(wire)? {
                Listing::Changed(inventory) => Ok(ListAnswer::Driver(Hashes {
                    hashes: inventory
                        .hashes
                        .into_iter()
                        .map(|(id, h)| (id.to_string(), h.to_string()))
                        .collect(),
                    problems: inventory.problems.into_iter().map(problem).collect(),
                })),
                Listing::Unchanged => Err(WireError {
                    kind: "internal".into(),
                    message: "the driver answered a listing without a known root with \
                              'unchanged'"
                        .into(),
                    retryable: false,
                }),
            },
        }
    }

    async fn store(&mut self, op: &str) -> Result<Arc<dyn Store>, WireError> {
        match self.served().await? {
            Served::Store(s) => Ok(s),
            Served::Driver(_) => Err(WireError::invalid(format!(
                "this program is driver level: it answers resolve, not {op}"
            ))),
        }
    }

    async fn get(&mut self, ids: Vec<TaskId>) -> Result<Fetched, WireError> {
        let store = self.store("get").await?;
        let gets = store.get(&ids).await.map_err(wire)?;
        Ok(Fetched {
            tasks: gets
                .into_iter()
                .map(|(id, got)| {
                    let slot = match got {
                        Ok(None) => None,
                        Ok(Some(stored)) => Some(Slot::Found(StoredDoc {
                            task: stored.task.to_value(),
                            version: stored.version,
                        })),
                        Err(e) => Some(Slot::Failed(Failure { error: wire(e) })),
                    };
                    (id.to_string(), slot)
                })
                .collect(),
        })
    }

    async fn put(&mut self, writes: Vec<WireWrite>) -> Result<Written, WireError> {
        let store = self.store("put").await?;
        let mut results = std::collections::BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut valid = Vec::with_capacity(writes.len());
        for w in writes {
            let refusal = if w.task.id() != &w.id {
                Some(format!(
                    "task '{}' was sent under the id '{}'",
                    w.task.id(),
                    w.id
                ))
            } else if w.hash != w.task.hash() {
                Some(format!(
                    "the hash sent with task '{}' is not its content hash",
                    w.id
                ))
            } else if !seen.insert(w.id.clone()) {
                Some(format!("task '{}' was written twice in one put", w.id))
            } else {
                None
            };
            match refusal {
                Some(message) => {
                    results.insert(
                        w.id.to_string(),
                        PutResult::Error(WireError::invalid(message)),
                    );
                }
                None => valid.push(Write {
                    task: w.task,
                    hash: w.hash,
                    expected: w.expected,
                }),
            }
        }
        if !valid.is_empty() {
            for (id, outcome) in store.put(valid).await.map_err(wire)? {
                let result = match outcome {
                    Ok(PutOutcome::Written(v)) => PutResult::Written(v),
                    Ok(PutOutcome::Conflict) => PutResult::Conflict(true),
                    Err(e) => PutResult::Error(wire(e)),
                };
                results.insert(id.to_string(), result);
            }
        }
        Ok(Written { results })
    }

    async fn resolve(
        &mut self,
        states: std::collections::BTreeMap<TaskId, Option<Task>>,
    ) -> Result<States, WireError> {
        let driver = match self.served().await? {
            Served::Driver(d) => d,
            Served::Store(_) => {
                return Err(WireError::invalid(
                    "this program is store level: it answers get and put, not resolve",
                ))
            }
        };
        let answers = driver.resolve(states).await.map_err(wire)?;
        Ok(States {
            states: answers
                .into_iter()
                .map(|(id, answer)| {
                    let slot = match answer {
                        Ok(None) => None,
                        Ok(Some(task)) => Some(Slot::Found(task.to_value())),
                        Err(e) => Some(Slot::Failed(Failure { error: wire(e) })),
                    };
                    (id.to_string(), slot)
                })
                .collect(),
        })
    }

    async fn finish(&mut self) -> Result<Done, WireError> {
        match &self.served().await? {
            Served::Store(s) => s.finish().await,
            Served::Driver(d) => d.finish().await,
        }
        .map_err(wire)?;
        self.begun = false;
        Ok(Done {})
    }

    async fn check(&mut self) -> Result<CheckReport, WireError> {
        let health = match &self.served().await? {
            Served::Store(s) => s.check().await,
            Served::Driver(d) => d.check().await,
        }
        .map_err(wire)?;
        if !health.ok {
            return Err(WireError {
                kind: "unavailable".into(),
                message: health.detail,
                retryable: true,
            });
        }
        Ok(CheckReport {
            detail: health.detail,
        })
    }
}

/// The answer to `list`, whichever the level.
#[derive(Serialize)]
#[serde(untagged)]
enum ListAnswer {
    Store(Listed),
    Driver(Hashes),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::external::wire::{Answer, Fetched, Listed, Written};
    use crate::MemoryStore;
    use serde_json::json;

    /// Runs `serve` over a memory store on `requests` (one per line) and returns the answers.
    async fn session(requests: &[Value]) -> Vec<Value> {
        let mut input = Vec::new();
        for r in requests {
            input.extend(serde_json::to_vec(r).unwrap());
            input.push(b'\n');
        }
        let mut output = Vec::new();
        serve(&input[..], &mut output, |spec| {
            assert_eq!(
                spec.options,
                json!({"path": "x"}),
                "core keys are not the store's"
            );
            Ok(Served::Store(Arc::new(MemoryStore::new(&spec.name))))
        })
        .await
        .unwrap();
        output
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn hello() -> Value {
        json!({"seq":0,"op":"hello","protocol":1,"name":"mem","kind":"memory",
               "options":{"path":"x","timeout":60,"max_task_bytes":1048576},"config_dir":null})
    }

    #[tokio::test]
    async fn a_store_is_served_at_the_store_level() {
        let task = Task::from_value(json!({"id": "a", "description": "x"})).unwrap();
        let answers = session(&[
            hello(),
            json!({"seq":1,"op":"put","writes":[{"id":"a","task":task,"hash":task.hash(),"expected":null}]}),
            json!({"seq":2,"op":"list"}),
            json!({"seq":3,"op":"get","ids":["b","a"]}),
            json!({"seq":4,"op":"finish"}),
            json!({"seq":5,"op":"check"}),
        ])
        .await;
        assert_eq!(
            answers[0],
            json!({"seq":0,"ok":{"protocol":1,"level":"store",
                   "capabilities":{"max_batch":1000,"atomic_writes":true,"remote":false}}})
        );
        let written: Answer<Written> = serde_json::from_value(answers[1].clone()).unwrap();
        let PutResult::Written(version) = &written.ok.unwrap().results["a"] else {
            panic!("{:?}", answers[1]);
        };
        let listed: Answer<Listed> = serde_json::from_value(answers[2].clone()).unwrap();
        let entry = &listed.ok.unwrap().entries["a"];
        assert_eq!(
            (entry.hash.as_str(), &entry.version),
            (task.hash().as_str(), version)
        );
        let fetched: Answer<Fetched> = serde_json::from_value(answers[3].clone()).unwrap();
        let tasks = fetched.ok.unwrap().tasks;
        assert_eq!(tasks["b"], None);
        assert!(matches!(&tasks["a"], Some(Slot::Found(d)) if d.task == task.to_value()));
        assert_eq!(answers[4], json!({"seq":4,"ok":{}}));
        assert_eq!(answers[5]["seq"], json!(5));
        assert!(answers[5]["ok"]["detail"].is_string());
    }

    #[tokio::test]
    async fn bad_requests_are_answered_with_typed_errors() {
        let task = Task::from_value(json!({"id": "a", "description": "x"})).unwrap();
        let answers = session(&[
            json!({"seq":0,"op":"list"}),
            hello(),
            hello(),
            json!({"seq":3,"op":"resolve","states":{"a":null}}),
            json!({"seq":4,"op":"explode"}),
            json!({"seq":5,"op":"put","writes":[{"id":"b","task":task,"hash":task.hash(),"expected":null}]}),
            json!("not an object"),
        ])
        .await;
        let kind = |i: usize| answers[i]["error"]["kind"].as_str().unwrap().to_owned();
        assert_eq!(kind(0), "invalid", "{}", answers[0]);
        assert!(answers[1]["ok"].is_object());
        assert_eq!(kind(2), "invalid");
        assert_eq!(kind(3), "invalid");
        assert_eq!(
            (answers[4]["seq"].clone(), kind(4)),
            (json!(4), "invalid".into())
        );
        assert_eq!(answers[5]["ok"]["results"]["b"]["error"]["kind"], "invalid");
        assert_eq!(
            (answers[6]["seq"].clone(), kind(6)),
            (Value::Null, "invalid".into())
        );
    }
}
