//! The one retry delay of the project: exponential, capped, with jitter so that clients that
//! failed together do not retry together.

use std::time::Duration;

use rand::Rng;

/// Jittered exponential backoff: each delay is drawn from `[d/2, d]` where `d` doubles from
/// `base` up to `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays doubling from `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// For a compare-and-swap lost to a concurrent writer: 2 ms doubling to 200 ms.
    pub fn contention() -> Backoff {
        Backoff::new(Duration::from_millis(2), Duration::from_millis(200))
    }

    /// The next delay, and counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let full = self.base.saturating_mul(factor).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        let jitter_ns = rand::rng().random_range(0..=(full - half).as_nanos() as u64);
        half + Duration::from_nanos(jitter_ns)
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stay_under_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(70));
        let bounds = [10, 20, 40, 70, 70, 70];
        for full in bounds {
            let d = b.next_delay();
            let full = Duration::from_millis(full);
            assert!(
                d >= full / 2 && d <= full,
                "{d:?} not within [{:?}, {full:?}]",
                full / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
