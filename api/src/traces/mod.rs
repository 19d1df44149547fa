//! Learning-analytics traces, off unless a Learning Record Store is
//! configured: teacher actions and environment events as xAPI statements
//! (created, built, failed, made current, archived, exam opened and closed,
//! launched), as French higher education's platforms collect them. A
//! statement is queued in the store by what causes it — never waiting on the
//! LRS — and sent by a background task that retries while the LRS is down.

mod sender;
mod statement;

pub(crate) use sender::keep_sending;
pub(crate) use statement::Verb;

use crate::{auth::Principal, store::EnvironmentRow, AppState};

impl AppState {
    /// Queues the statement that `who` (`None`: trousse itself) did `verb` to `env`;
    /// nothing when traces are off. A failure is logged, never returned.
    pub(crate) async fn trace(&self, who: Option<&Principal>, verb: Verb, env: &EnvironmentRow) {
        let Some(xapi) = &self.config.xapi else {
            return;
        };
        let statement = statement::statement(xapi, who, verb, &env.course, &env.name, &env.id);
        if let Err(e) = self.store.queue_statement(&statement.to_string()).await {
            tracing::warn!(error = %e, verb = verb.name(), "a trace was not queued");
        }
    }

    /// Queues a statement about an exam by course and name (its window opening or closing).
    pub(crate) async fn trace_exam(&self, verb: Verb, course: &str, name: &str) {
        let Some(xapi) = &self.config.xapi else {
            return;
        };
        let id = match self.store.current_environment(course, name).await {
            Ok(Some(env)) => env.id,
            _ => return,
        };
        let statement = statement::statement(xapi, None, verb, course, name, &id);
        if let Err(e) = self.store.queue_statement(&statement.to_string()).await {
            tracing::warn!(error = %e, verb = verb.name(), "a trace was not queued");
        }
    }
}
