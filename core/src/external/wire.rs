//! The messages of protocol 1, as types: the host ([`super::ExternalDriver`],
//! [`super::ExternalStore`]) writes [`Request`]s and reads [`Answer`]s; [`super::serve`] does
//! the opposite with the same types.
//!
//! Answers carry task documents as plain JSON values, validated one task at a time by the
//! host, so one unreadable entry fails that task alone, never the whole answer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DriverError, ErrorKind};
use crate::hash::ContentHash;
use crate::store::Version;
use crate::task::{Task, TaskId};

/// The protocol version this hypertask speaks.
pub const PROTOCOL: u32 = 1;

/// One request line: `{"seq":n,"op":"…",…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Increases by one with every request the host sends to one running program, from 0.
    pub seq: u64,
    /// The operation and its arguments.
    #[serde(flatten)]
    pub op: Op,
}

/// An operation, tagged by `"op"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// The handshake; always the first request. Answered with [`Welcome`].
    Hello(Hello),
    /// Everything stored. Answered with [`Listed`] (store level) or [`Hashes`] (driver level).
    List,
    /// Store level: fetch tasks. Answered with [`Fetched`].
    Get {
        /// The ids asked, distinct.
        ids: Vec<TaskId>,
    },
    /// Store level: conditional writes. Answered with [`Written`].
    Put {
        /// The writes, one per id.
        writes: Vec<WireWrite>,
    },
    /// Driver level: merge each state with the stored one, store and answer the result.
    /// Answered with [`States`].
    Resolve {
        /// Client states by id; `null` only reads.
        states: BTreeMap<TaskId, Option<Task>>,
    },
    /// The end of a sync that wrote: commit, flush. Answered with [`Done`].
    Finish,
    /// A health check. Answered with [`CheckReport`].
    Check,
}

/// The handshake request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol the host speaks ([`PROTOCOL`]).
    pub protocol: u32,
    /// The instance name, as in `[drivers.NAME]`.
    pub name: String,
    /// The kind, as in `type = "KIND"`.
    pub kind: String,
    /// The driver table without `type`; `timeout` (seconds) and `max_task_bytes` are always
    /// present with the values in effect.
    pub options: Value,
    /// The directory of the config file, which relative paths in `options` are relative to.
    pub config_dir: Option<PathBuf>,
}

/// Whether the program keeps documents or merges them itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The program lists, gets and compare-and-swaps documents; hypertask hashes and merges.
    Store,
    /// The program merges (a bridge to a merging server).
    Driver,
}

/// The answer to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol the program speaks; must equal [`PROTOCOL`].
    pub protocol: u32,
    /// The program's level.
    pub level: Level,
    /// What the program can do; absent entries take their defaults.
    #[serde(default)]
    pub capabilities: WireCapabilities,
}

/// Capabilities a program declares in its [`Welcome`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCapabilities {
    /// The most tasks one `get`, `put` or `resolve` may carry (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<usize>,
    /// Writes are compare-and-swap (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atomic_writes: Option<bool>,
    /// Data lives on another machine (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<bool>,
}

/// Store level: the answer to `list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// Every stored task's entry, by id.
    pub entries: BTreeMap<String, ListedEntry>,
    /// Entries that could not be read.
    #[serde(default)]
    pub problems: Vec<WireProblem>,
}

/// One listed entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedEntry {
    /// The hash written with the task, listed back unchanged.
    pub hash: String,
    /// The program's compare-and-swap token of the stored state.
    pub version: Version,
}

/// An entry that could not be read; it is skipped and left untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireProblem {
    /// The task the entry belongs to, when known.
    pub id: Option<String>,
    /// What is wrong and where.
    pub message: String,
}

/// Store level: the answer to `get`. A missing task is `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fetched {
    /// Every id asked, with its stored task (or `null`, or an error for that task alone).
    pub tasks: BTreeMap<String, Option<Slot<StoredDoc>>>,
}

/// A stored task as `get` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDoc {
    /// The task document exactly as it was written.
    pub task: Value,
    /// Its compare-and-swap token.
    pub version: Version,
}

/// One keyed answer: the value, or an error for this key alone (`{"error":{…}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Slot<T> {
    /// This key failed; the others did not.
    Failed(Failure),
    /// The answer.
    Found(T),
}

/// `{"error":{…}}` in place of one keyed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// What went wrong.
    pub error: WireError,
}

/// Store level: one conditional write of `put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireWrite {
    /// The task's id.
    pub id: TaskId,
    /// The new state.
    pub task: Task,
    /// Its content hash, computed by hypertask: store it next to the task and list it back.
    pub hash: ContentHash,
    /// Write only if the stored version is still this one; `null`: only if absent.
    pub expected: Option<Version>,
}

/// Store level: the answer to `put`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Written {
    /// Every write's outcome, by id.
    pub results: BTreeMap<String, PutResult>,
}

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PutResult {
    /// `{"written":"<new version>"}`: stored (or already stored).
    Written(Version),
    /// `{"conflict":true}`: the stored version was not the expected one; nothing written.
    Conflict(bool),
    /// `{"error":{…}}`: this write failed alone.
    Error(WireError),
}

/// Driver level: the answer to `list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hashes {
    /// Every task's content hash, by id.
    pub hashes: BTreeMap<String, String>,
    /// Entries that could not be read.
    #[serde(default)]
    pub problems: Vec<WireProblem>,
}

/// Driver level: the answer to `resolve`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct States {
    /// Every id asked, with the merged, stored state (or `null`, or an error for it alone).
    pub states: BTreeMap<String, Option<Slot<Value>>>,
}

/// The answer to `finish`: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Done {}

/// The answer to `check`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// What the program is and where its data lives.
    pub detail: String,
}

/// An error answer: `{"kind":"…","message":"…","retryable":bool}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// `unavailable`, `contended`, `invalid`, `config`, `denied` or `internal`.
    pub kind: String,
    /// One sentence saying what and where.
    pub message: String,
    /// Whether trying again later may help.
    #[serde(default)]
    pub retryable: bool,
}

impl WireError {
    /// The wire form of a core error (its message without the driver name, which the host
    /// adds itself).
    pub fn from_driver_error(e: &DriverError) -> WireError {
        let kind = match e.kind() {
            ErrorKind::Unavailable | ErrorKind::Timeout => "unavailable",
            ErrorKind::Contended => "contended",
            ErrorKind::InvalidData
            | ErrorKind::InvalidRequest
            | ErrorKind::Protocol
            | ErrorKind::Unsupported => "invalid",
            ErrorKind::Config => "config",
            ErrorKind::Unauthorized => "denied",
            _ => "internal",
        };
        WireError {
            kind: kind.into(),
            message: e.message().to_owned(),
            retryable: e.is_retryable(),
        }
    }

    /// An `invalid` error.
    pub fn invalid(message: impl Into<String>) -> WireError {
        WireError {
            kind: "invalid".into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// The core error kind: `retryable: true` makes any kind retryable (as `unavailable`).
    pub fn error_kind(&self) -> ErrorKind {
        let kind = match self.kind.as_str() {
            "unavailable" => ErrorKind::Unavailable,
            "contended" => ErrorKind::Contended,
            "invalid" => ErrorKind::InvalidRequest,
            "config" => ErrorKind::Config,
            "denied" => ErrorKind::Unauthorized,
            _ => ErrorKind::Internal,
        };
        if self.retryable && !kind.is_retryable() {
            ErrorKind::Unavailable
        } else {
            kind
        }
    }
}

/// One answer line: `{"seq":n,"ok":…}` or `{"seq":n,"error":{…}}`.
///
/// `seq` repeats the request's; it is `null` only in the answer to a line that was not a
/// request at all. The host reads `ok` as a [`serde_json::value::RawValue`] and decodes it as
/// the operation's answer type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer<T> {
    /// The `seq` of the request answered.
    pub seq: Option<u64>,
    /// The operation's answer, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<T>,
    /// The error, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl<T> Answer<T> {
    /// A successful answer to request `seq`.
    pub fn ok(seq: u64, value: T) -> Answer<T> {
        Answer {
            seq: Some(seq),
            ok: Some(value),
            error: None,
        }
    }

    /// An error answer to request `seq` (`None`: the line was not a request).
    pub fn error(seq: Option<u64>, error: WireError) -> Answer<T> {
        Answer {
            seq,
            ok: None,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(req: Request, line: Value) {
        assert_eq!(serde_json::to_value(&req).unwrap(), line);
        assert_eq!(serde_json::from_value::<Request>(line).unwrap(), req);
    }

    #[test]
    fn requests_have_the_documented_shape() {
        round_trip(
            Request {
                seq: 0,
                op: Op::Hello(Hello {
                    protocol: 1,
                    name: "work".into(),
                    kind: "py".into(),
                    options: json!({"path": "x", "timeout": 60.0}),
                    config_dir: Some("/home/ann/.config/hypertask".into()),
                }),
            },
            json!({"seq":0,"op":"hello","protocol":1,"name":"work","kind":"py",
                   "options":{"path":"x","timeout":60.0},"config_dir":"/home/ann/.config/hypertask"}),
        );
        round_trip(
            Request {
                seq: 1,
                op: Op::List,
            },
            json!({"seq":1,"op":"list"}),
        );
        round_trip(
            Request {
                seq: 2,
                op: Op::Get {
                    ids: vec![TaskId::new("a").unwrap()],
                },
            },
            json!({"seq":2,"op":"get","ids":["a"]}),
        );
        let task = Task::from_value(json!({"id": "a", "description": "x"})).unwrap();
        round_trip(
            Request {
                seq: 3,
                op: Op::Put {
                    writes: vec![WireWrite {
                        id: task.id().clone(),
                        task: task.clone(),
                        hash: task.hash(),
                        expected: None,
                    }],
                },
            },
            json!({"seq":3,"op":"put","writes":[{"id":"a","task":task,"hash":task.hash(),"expected":null}]}),
        );
        round_trip(
            Request {
                seq: 4,
                op: Op::Resolve {
                    states: BTreeMap::from([(task.id().clone(), None)]),
                },
            },
            json!({"seq":4,"op":"resolve","states":{"a":null}}),
        );
        round_trip(
            Request {
                seq: 5,
                op: Op::Finish,
            },
            json!({"seq":5,"op":"finish"}),
        );
        round_trip(
            Request {
                seq: 6,
                op: Op::Check,
            },
            json!({"seq":6,"op":"check"}),
        );
    }

    #[test]
    fn answers_have_the_documented_shape() {
        let welcome: Answer<Welcome> = serde_json::from_value(
            json!({"seq":0,"ok":{"protocol":1,"level":"store","capabilities":{"max_batch":500}}}),
        )
        .unwrap();
        let w = welcome.ok.unwrap();
        assert_eq!(w.level, Level::Store);
        assert_eq!(w.capabilities.max_batch, Some(500));

        let fetched: Fetched = serde_json::from_value(json!({"tasks":{
            "a": {"task": {"id": "a"}, "version": "v1"},
            "b": null,
            "c": {"error": {"kind": "invalid", "message": "corrupt", "retryable": false}},
        }}))
        .unwrap();
        assert!(matches!(fetched.tasks["a"], Some(Slot::Found(_))));
        assert_eq!(fetched.tasks["b"], None);
        assert!(matches!(fetched.tasks["c"], Some(Slot::Failed(_))));

        // A task document with a field named `error` is a task, not an error.
        let states: States = serde_json::from_value(
            json!({"states":{"a":{"id":"a","error":{"kind":"x","message":"y"}}}}),
        )
        .unwrap();
        assert!(matches!(states.states["a"], Some(Slot::Found(_))));

        let written: Written = serde_json::from_value(json!({"results":{
            "a": {"written": "v2"}, "b": {"conflict": true},
            "c": {"error": {"kind": "denied", "message": "read-only", "retryable": false}},
        }}))
        .unwrap();
        assert_eq!(written.results["a"], PutResult::Written(Version::new("v2")));
        assert_eq!(written.results["b"], PutResult::Conflict(true));
        assert!(matches!(written.results["c"], PutResult::Error(_)));

        let e =
            serde_json::to_value(Answer::<Done>::error(Some(7), WireError::invalid("no"))).unwrap();
        assert_eq!(
            e,
            json!({"seq":7,"error":{"kind":"invalid","message":"no","retryable":false}})
        );
        assert_eq!(
            serde_json::to_value(Answer::ok(8, Done {})).unwrap(),
            json!({"seq":8,"ok":{}})
        );
    }

    #[test]
    fn error_kinds_map_both_ways() {
        for (kind, core, retryable) in [
            ("unavailable", ErrorKind::Unavailable, true),
            ("contended", ErrorKind::Contended, true),
            ("invalid", ErrorKind::InvalidRequest, false),
            ("config", ErrorKind::Config, false),
            ("denied", ErrorKind::Unauthorized, false),
            ("internal", ErrorKind::Internal, false),
        ] {
            let wire = WireError {
                kind: kind.into(),
                message: "m".into(),
                retryable,
            };
            assert_eq!(wire.error_kind(), core);
            let back = WireError::from_driver_error(&DriverError::new("d", core, "m"));
            assert_eq!(back, wire);
        }
        let odd = WireError {
            kind: "exploded".into(),
            message: "m".into(),
            retryable: true,
        };
        assert_eq!(odd.error_kind(), ErrorKind::Unavailable);
    }
}
