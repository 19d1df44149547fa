//! Timing: a figure is the median of several runs, with their minimum and maximum.

use std::time::Instant;

use serde::Serialize;

/// The runs of one measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Median seconds.
    pub median: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
}

impl Figure {
    /// The figure of these run times.
    pub fn of(runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            runs,
        }
    }

    /// `median (min, max)` in seconds.
    pub fn text(&self) -> String {
        format!("{:.3} ({:.3}, {:.3})", self.median, self.min, self.max)
    }
}

/// Seconds an async piece of work takes, with its result.
pub async fn timed<T>(work: impl std::future::Future<Output = T>) -> (f64, T) {
    let started = Instant::now();
    let value = work.await;
    (started.elapsed().as_secs_f64(), value)
}

/// Seconds a blocking piece of work takes, with its result.
pub fn timed_blocking<T>(work: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let value = work();
    (started.elapsed().as_secs_f64(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_runs() {
        let f = Figure::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((f.median, f.min, f.max), (2.0, 1.0, 3.0));
        assert_eq!(Figure::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }
}
