//! Each user's request rate (`max_requests_per_minute`): a budget of that many requests that
//! refills evenly over a minute, so a burst up to the budget passes and a steady flood is cut
//! to the rate. Beyond it: `429 Too Many Requests` with `Retry-After`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::{HeaderValue, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiError;

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
