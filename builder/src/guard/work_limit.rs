//! How long one request's solving may run, and a token that stops it sooner
//! (its caller left): rattler's solver and the PyPI resolver both check it,
//! so a spec built to be slow costs at most the limit, and nothing once its
//! requester is gone.

use std::time::{Duration, Instant};

use rattler_solve::CancellationToken;

use crate::BuildError;

/// A time limit and a cancellation token, shared by one request's work.
#[derive(Debug, Clone, Default)]
pub struct WorkLimit {
    limit: Option<(Instant, Duration)>,
    token: CancellationToken,
}

impl WorkLimit {
    /// A limit of `limit` from now.
    pub fn within(limit: Duration) -> Self {
        Self {
            limit: Some((Instant::now() + limit, limit)),
            token: CancellationToken::new(),
        }
    }

    /// What is left of the time; `None` without a limit.
    pub fn remaining(&self) -> Option<Duration> {
        self.limit
            .map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()))
    }

    /// The token the solvers watch.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the work must stop: cancelled, or out of time.
    pub fn stopped(&self) -> bool {
        self.token.is_cancelled() || self.remaining().is_some_and(|r| r.is_zero())
    }

    /// The error of work stopped by this limit.
    pub fn error(&self, what: &str) -> BuildError {
        BuildError::TimeLimit {
            what: what.to_string(),
            seconds: self.limit.map_or(0, |(_, limit)| limit.as_secs()),
        }
    }

    /// A guard that cancels the work when dropped (the request's future, when its client leaves).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.token.clone())
    }
}

/// Cancels a [`WorkLimit`]'s work when dropped.
#[derive(Debug)]
pub struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_stops_at_its_deadline_or_when_its_guard_goes() {
        let limit = WorkLimit::within(Duration::from_secs(60));
        assert!(!limit.stopped());
        drop(limit.cancel_on_drop());
        assert!(limit.stopped());
        let past = WorkLimit::within(Duration::ZERO);
        assert!(past.stopped());
        assert!(past.error("solving").to_string().contains("solving"));
        assert!(!WorkLimit::default().stopped());
    }
}
