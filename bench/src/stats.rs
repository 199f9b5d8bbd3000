//! Samples, their summary, and how figures are printed.

use serde::{Deserialize, Serialize};

/// What one measured row produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Wall times in seconds, one per run.
    Samples(Vec<f64>),
    /// Not measured, and why (a stub driver, a missing tool or server).
    Skipped(String),
    /// Measured but the command failed; the first line of its error.
    Failed(String),
}

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The median (mean of the two middle samples for an even count).
    pub median: f64,
    /// The fastest run.
    pub min: f64,
    /// The slowest run.
    pub max: f64,
}

/// The summary of `samples`; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    let median = if !s.len().is_multiple_of(2) {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    };
    Some(Summary {
        median,
        min: s[0],
        max: s[s.len() - 1],
    })
}

/// A duration for people: `6.2 ms`, `0.441 s`, `19.5 s`.
pub fn fmt_secs(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 0.1 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 10.0 {
        format!("{s:.3} s")
    } else {
        format!("{s:.1} s")
    }
}

/// A ratio for people: `1.32×`, `240×`.
pub fn fmt_ratio(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.2}×")
    } else if r < 100.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.0}×")
    }
}

/// A size label: `1k`, `10k`, `100k`, or the number.
pub fn fmt_n(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle_sample() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn even_count_averages_the_middle_pair() {
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!((s.min, s.max), (1.0, 4.0));
    }

    #[test]
    fn no_samples_no_summary() {
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn figures_print_in_readable_units() {
        assert_eq!(fmt_secs(0.0062), "6.2 ms");
        assert_eq!(fmt_secs(0.441), "0.441 s");
        assert_eq!(fmt_secs(19.5), "19.5 s");
        assert_eq!(fmt_secs(0.000_5), "500 µs");
        assert_eq!(fmt_ratio(1.3219), "1.32×");
        assert_eq!(fmt_ratio(240.4), "240×");
        assert_eq!(fmt_n(10_000), "10k");
        assert_eq!(fmt_n(1_500), "1500");
    }
}
