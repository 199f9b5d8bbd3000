//! Each user's quotas. The request rate (`max_requests_per_minute`): a budget of that many
//! requests that refills evenly over a minute, so a burst up to the budget passes and a steady
//! flood is cut to the rate; beyond it `429 Too Many Requests` with `Retry-After`. The task
//! cap (`max_tasks_per_user`): new tasks beyond it fail with `507 Insufficient Storage`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::{HeaderValue, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use hypertask_core::{Batch, Listing, TaskId};

use super::{ApiError, AppState};

/// One user's request budget.
pub(super) struct RateLimit {
    /// Requests allowed in a minute: the budget's size.
    per_minute: f64,
    /// The budget left, and when it was last refilled.
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A full budget of `n` requests a minute.
    pub(super) fn per_minute(n: u32) -> RateLimit {
        let per_minute = f64::from(n.max(1));
        RateLimit {
            per_minute,
            state: Mutex::new((per_minute, Instant::now())),
        }
    }

    /// Takes one request from the budget, or says how long until one is back.
    pub(super) fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (left, last) = &mut *state;
        let now = Instant::now();
        let refill = now.duration_since(*last).as_secs_f64() * self.per_minute / 60.0;
        *left = (*left + refill).min(self.per_minute);
        *last = now;
        if *left >= 1.0 {
            *left -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - *left) * 60.0 / self.per_minute,
            ))
        }
    }
}

/// The `429` answer: retry after `wait` (whole seconds, at least 1).
pub(super) fn too_many_requests(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests for this account; retry in {secs} s"),
    )
    .into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// The new tasks of `batch` that do not fit under `max_tasks` (tombstones count: they are
/// stored): every new task beyond the room left, in id order. Tasks already stored always fit,
/// so a user at the cap can still edit, complete and delete. Concurrent requests may pass the
/// check together, so the cap can be overshot by what they carry.
pub(super) async fn over_cap(st: &AppState, batch: &Batch) -> Result<Vec<TaskId>, ApiError> {
    let Some(max) = st.opts.max_tasks else {
        return Ok(Vec::new());
    };
    if batch.values().all(Option::is_none) {
        return Ok(Vec::new());
    }
    let stored = match st.store.hashes(None).await {
        Ok(Listing::Changed(inventory)) => inventory.hashes,
        Ok(Listing::Unchanged) => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::store(&e)),
    };
    let room = max.saturating_sub(stored.len());
    Ok(batch
        .iter()
        .filter(|(id, state)| state.is_some() && !stored.contains_key(*id))
        .skip(room)
        .map(|(id, _)| id.clone())
        .collect())
}

/// Why a task was refused by the cap: `507`, naming the cap.
pub(super) fn cap_error(st: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        format!(
            "this account may store at most {} tasks; delete (`hypertask purge`) or ask for more room",
            st.opts.max_tasks.unwrap_or_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_up_to_the_budget_passes_and_the_next_waits() {
        let rate = RateLimit::per_minute(3);
        for _ in 0..3 {
            assert_eq!(rate.take(), Ok(()));
        }
        let wait = rate.take().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }
}
