//! Learning-analytics traces, off unless a Learning Record Store is
//! configured: teacher actions and environment events as xAPI statements
//! (created, built, failed, made current, archived, exam opened and closed,
//! launched), as French higher education's platforms collect them. A
//! statement is queued in the store by what causes it — never waiting on the
//! LRS — and sent by a background task that retries while the LRS is down.

mod sender;
mod statement;

pub(crate) use statement::Verb;

use std::sync::Arc;

use crate::{auth::Principal, config::XapiConfig, store::EnvironmentRow, store::Store};

/// Where traces go (none: traces are off), and the queue they wait in.
#[derive(Debug)]
pub(crate) struct Traces {
    config: Option<XapiConfig>,
    store: Store,
}

impl Traces {
    /// Traces to `config`'s LRS (none: off), queued in `store`; the sender started.
    pub(crate) fn start(config: Option<XapiConfig>, store: Store) -> Arc<Self> {
        let traces = Arc::new(Self { config, store });
        sender::keep_sending(&traces);
        traces
    }

    /// Queues the statement that `who` (`None`: trousse itself) did `verb` to `env`;
    /// nothing when traces are off. A failure is logged, never returned.
    pub(crate) async fn record(&self, who: Option<&Principal>, verb: Verb, env: &EnvironmentRow) {
        self.queue(who, verb, &env.course, &env.name, &env.id).await;
    }

    /// Queues a statement about an exam by course and name (its window opening or closing).
    async fn record_exam(&self, verb: Verb, course: &str, name: &str) {
        if let Ok(Some(env)) = self.store.current_environment(course, name).await {
            self.queue(None, verb, course, name, &env.id).await;
        }
    }

    async fn queue(&self, who: Option<&Principal>, verb: Verb, course: &str, name: &str, id: &str) {
        let Some(xapi) = &self.config else {
            return;
        };
        let statement = statement::statement(xapi, who, verb, course, name, id);
        if let Err(e) = self.store.queue_statement(&statement.to_string()).await {
            tracing::warn!(error = %e, verb = verb.name(), "a trace was not queued");
        }
    }
}
