//! The client's `resolve`: `POST /tasks` batches (protocol 1.1) split on `413`/`400` so only
//! the task at fault fails, or one v1.0 `POST /task/:id` per task; every answered state is
//! checked against what was asked.

use std::collections::{HashSet, VecDeque};

use futures::StreamExt;
use hypertask_core::{Answers, Batch, DriverError, ErrorKind, Task, TaskId};
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde_json::value::RawValue;

use crate::driver::{HttpDriver, ENVELOPE_BYTES};
use crate::transport::Answer;
use crate::wire::{BatchAnswer, BatchRequest, SingleAnswer, SingleRequest};

/// How many v1.0 single-task requests are in flight at once.
const SINGLE_CONCURRENCY: usize = 4;
/// Room per task in a batch answer besides its state: its id and any error message.
const PER_TASK_BYTES: usize = 1024;

/// One task's outcome (inner) or a failure of the whole exchange (outer).
type Slot = Option<Result<Option<Task>, DriverError>>;

impl HttpDriver {
    /// [`hypertask_core::Driver::resolve`]: batches when the server offers them, else one
    /// request per task.
    pub(crate) async fn resolve_all(&self, batch: Batch) -> Result<Answers, DriverError> {
        let batch: Vec<(TaskId, Option<Task>)> = batch.into_iter().collect();
        let mut results: Vec<Slot> = (0..batch.len()).map(|_| None).collect();
        let mut to_send = Vec::with_capacity(batch.len());
        for (i, (id, state)) in batch.iter().enumerate() {
            match state {
                Some(t) if t.id() != id => {
                    results[i] = Some(Err(self.t.origin.error(
                        ErrorKind::InvalidRequest,
                        format!("task '{}' was sent under the id '{id}'", t.id()),
                    )))
                }
                _ => to_send.push(i),
            }
        }
        if !to_send.is_empty() {
            let caps = self.capabilities().await?;
            match caps.max_batch {
                Some(max) => {
                    self.resolve_batched(&batch, to_send, max, caps.max_body, &mut results)
                        .await?
                }
                None => self.resolve_singly(&batch, to_send, &mut results).await?,
            }
        }
        let o = &self.t.origin;
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|((id, _), r)| {
                let r = r.unwrap_or_else(|| {
                    Err(o.error(
                        ErrorKind::Protocol,
                        format!("task '{id}': no answer from {}", o.url),
                    ))
                });
                (id, r)
            })
            .collect())
    }

    /// `POST url` with a JSON `body`, its answer read up to `limit` bytes.
    async fn post(
        &self,
        what: &str,
        url: &Url,
        limit: usize,
        body: &[u8],
    ) -> Result<Answer, DriverError> {
        self.t
            .send(what, limit, || {
                self.t
                    .client()
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_vec())
            })
            .await
    }

    /// One `POST /tasks` per chunk of `indexes`. A chunk the server refuses as a whole (`413`
    /// too large, `400` one invalid task) is split in halves and sent again, so only the task
    /// at fault fails. Per-task failures land in `results`; a failure of the whole exchange
    /// (unreachable, unauthorized) is returned.
    async fn resolve_batched(
        &self,
        batch: &[(TaskId, Option<Task>)],
        indexes: Vec<usize>,
        max_batch: usize,
        max_body: Option<usize>,
        results: &mut [Slot],
    ) -> Result<(), DriverError> {
        let what = "POST /tasks";
        let url = self.t.endpoint("tasks");
        let o = &self.t.origin;
        let mut queue: VecDeque<Vec<usize>> = chunks(batch, indexes, max_batch).into();
        while let Some(chunk) = queue.pop_front() {
            let request = BatchRequest {
                client_states: chunk
                    .iter()
                    .map(|&i| (batch[i].0.to_string(), batch[i].1.as_ref()))
                    .collect(),
            };
            let body = serde_json::to_vec(&request).expect("tasks serialise");
            if let Some(limit) = max_body.filter(|&l| body.len() > l) {
                // Split before sending what the server said it would refuse.
                if chunk.len() > 1 {
                    split(&mut queue, &chunk);
                } else {
                    results[chunk[0]] = Some(Err(o.error(
                        ErrorKind::InvalidRequest,
                        format!(
                            "task '{}' takes {} bytes, more than the {limit} the server at {} accepts",
                            batch[chunk[0]].0,
                            body.len(),
                            o.url
                        ),
                    )));
                }
                continue;
            }
            let limit = chunk
                .len()
                .saturating_mul(self.max_task_bytes.saturating_add(PER_TASK_BYTES))
                .saturating_add(ENVELOPE_BYTES);
            let answer = self.post(what, &url, limit, &body).await?;
            match answer.status {
                StatusCode::OK => {}
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST if chunk.len() > 1 => {
                    tracing::debug!(driver = %o.name, status = %answer.status, tasks = chunk.len(), "splitting a refused batch");
                    split(&mut queue, &chunk);
                    continue;
                }
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => {
                    let e = o.status(what, answer.status, &answer.body);
                    let id = &batch[chunk[0]].0;
                    results[chunk[0]] = Some(Err(
                        o.error(e.kind(), format!("task '{id}': {}", e.message()))
                    ));
                    continue;
                }
                _ => return Err(o.unexpected(what, &answer)),
            }
            let doc: BatchAnswer<Box<RawValue>> =
                serde_json::from_slice(&answer.body).map_err(|e| {
                    o.protocol(
                        what,
                        format_args!("a body without valid `server_states`: {e}"),
                    )
                })?;
            for &i in &chunk {
                let id = &batch[i].0;
                results[i] = Some(match doc.server_states.get(id.as_str()) {
                    Some(state) => self.server_state(what, id, state.as_deref()),
                    None => Err(match doc.errors.get(id.as_str()) {
                        Some(e) => o.error(
                            if e.retryable {
                                ErrorKind::Contended
                            } else {
                                ErrorKind::InvalidData
                            },
                            format!(
                                "the server at {} could not resolve task '{id}': {}",
                                o.url, e.error
                            ),
                        ),
                        None => {
                            o.protocol(what, format_args!("no state and no error for task '{id}'"))
                        }
                    }),
                });
            }
        }
        Ok(())
    }

    /// One v1.0 `POST /task/:id` per task, a few at a time.
    async fn resolve_singly(
        &self,
        batch: &[(TaskId, Option<Task>)],
        indexes: Vec<usize>,
        results: &mut [Slot],
    ) -> Result<(), DriverError> {
        let mut answers = futures::stream::iter(indexes)
            .map(|i| async move { (i, self.resolve_one(&batch[i].0, batch[i].1.as_ref()).await) })
            .buffer_unordered(SINGLE_CONCURRENCY);
        while let Some((i, answer)) = answers.next().await {
            // Returning drops the stream, which cancels the requests still in flight.
            results[i] = Some(answer?);
        }
        Ok(())
    }

    /// `POST /task/:id`. The outer error fails the whole exchange, the inner one this task.
    async fn resolve_one(
        &self,
        id: &TaskId,
        state: Option<&Task>,
    ) -> Result<Result<Option<Task>, DriverError>, DriverError> {
        let what = format!("POST /task/{id}");
        let url = self.t.endpoint(&format!("task/{id}"));
        let o = &self.t.origin;
        let body = serde_json::to_vec(&SingleRequest {
            client_state: state,
        })
        .expect("tasks serialise");
        let limit = self.max_task_bytes.saturating_add(ENVELOPE_BYTES);
        let answer = self.post(&what, &url, limit, &body).await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                return Ok(Err(o.status(&what, answer.status, &answer.body)))
            }
            StatusCode::CONFLICT => {
                return Ok(Err(o.error(
                    ErrorKind::InvalidData,
                    format!(
                        "the server at {} could not resolve task '{id}': {}",
                        o.url,
                        crate::error::server_message(&answer.body)
                    ),
                )))
            }
            _ => return Err(o.unexpected(&what, &answer)),
        }
        let doc: SingleAnswer<Box<RawValue>> =
            serde_json::from_slice(&answer.body).map_err(|e| {
                o.protocol(
                    &what,
                    format_args!("a body without a valid `server_state`: {e}"),
                )
            })?;
        Ok(self.server_state(&what, id, doc.server_state.as_deref()))
    }

    /// Reads one answered state: `null` or a valid task with the asked id, no larger than the
    /// task size limit.
    fn server_state(
        &self,
        what: &str,
        id: &TaskId,
        state: Option<&RawValue>,
    ) -> Result<Option<Task>, DriverError> {
        let Some(state) = state else {
            return Ok(None);
        };
        let o = &self.t.origin;
        let text = state.get();
        if text.len() > self.max_task_bytes {
            return Err(o.error(
                ErrorKind::InvalidData,
                format!(
                    "the server at {} answered task '{id}' with {} bytes, more than the task size \
                     limit of {} bytes",
                    o.url,
                    text.len(),
                    self.max_task_bytes
                ),
            ));
        }
        let task = Task::from_json(text.as_bytes())
            .map_err(|e| o.protocol(what, format_args!("an invalid state of task '{id}': {e}")))?;
        if task.id() != id {
            return Err(o.protocol(
                what,
                format_args!("task '{}' where task '{id}' was asked", task.id()),
            ));
        }
        Ok(Some(task))
    }
}

/// Puts the two halves of `chunk` at the front of `queue`.
fn split(queue: &mut VecDeque<Vec<usize>>, chunk: &[usize]) {
    let (a, b) = chunk.split_at(chunk.len() / 2);
    queue.push_front(b.to_vec());
    queue.push_front(a.to_vec());
}

/// Splits `indexes` into chunks of at most `max` entries with distinct ids (a JSON object
/// cannot hold one id twice).
fn chunks(batch: &[(TaskId, Option<Task>)], indexes: Vec<usize>, max: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut ids: HashSet<&TaskId> = HashSet::new();
    for i in indexes {
        if cur.len() >= max.max(1) || ids.contains(&batch[i].0) {
            out.push(std::mem::take(&mut cur));
            ids.clear();
        }
        ids.insert(&batch[i].0);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    #[test]
    fn chunks_respect_size_and_distinct_ids() {
        let batch: Vec<(TaskId, Option<Task>)> = ["a", "b", "c", "a", "d", "e", "f"]
            .iter()
            .map(|s| (id(s), None))
            .collect();
        let got = chunks(&batch, (0..batch.len()).collect(), 3);
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        let got = chunks(&batch, (0..batch.len()).collect(), 10);
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5, 6]]);
    }
}
