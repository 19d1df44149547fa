//! Sends the queued statements to the LRS: in batches, every two seconds.
//! While the LRS does not answer, the whole queue waits (2 s, 4 s, 8 s… at
//! most 30 s between tries) and goes in one batch once it is back, so an LRS
//! down never blocks a request and loses nothing.

use std::{sync::Arc, time::Duration};

use super::Traces;
use crate::config::XapiConfig;

/// Statements sent in one request.
const BATCH: i64 = 50;
/// The longest wait between two tries while the LRS is down, in seconds.
const MAX_DELAY: u64 = 30;

/// Sends statements, and traces exam windows opening and closing, while the service runs.
pub(super) fn keep_sending(traces: &Arc<Traces>) {
    let Some(xapi) = traces.config.clone() else {
        return;
    };
    let weak = Arc::downgrade(traces);
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => return tracing::error!(error = %e, "no HTTP client for the LRS"),
        };
        let mut failures = 0u32;
        loop {
            let Some(state) = weak.upgrade() else { return };
            mark_windows(&state).await;
            let taken = send_due(&state, &client, &xapi).await;
            drop(state);
            failures = if taken { 0 } else { failures + 1 };
            let delay = (2u64 << failures.min(5)).min(MAX_DELAY);
            tokio::time::sleep(Duration::from_secs(if taken { 2 } else { delay })).await;
        }
    });
}

/// Traces the exam windows that opened or closed since the last look.
async fn mark_windows(state: &Traces) {
    for (mark, verb) in [
        ("opened", super::Verb::ExamOpened),
        ("closed", super::Verb::ExamClosed),
    ] {
        match state.store.take_window_marks(mark).await {
            Ok(due) => {
                for (course, name, _) in due {
                    state.record_exam(verb, &course, &name).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "exam windows were not read for traces"),
        }
    }
}

/// One batch of due statements to the LRS. A batch the LRS refuses as
/// invalid (400) is sent again one statement at a time, and a statement it
/// refuses alone is dropped (logged): it would never be taken.
/// Whether the LRS took what was due (or nothing was).
async fn send_due(state: &Traces, client: &reqwest::Client, xapi: &XapiConfig) -> bool {
    let due = match state.store.queued_statements(BATCH).await {
        Ok(due) if !due.is_empty() => due,
        Ok(_) => return true,
        Err(e) => {
            tracing::warn!(error = %e, "queued traces were not read");
            return true;
        }
    };
    let batches: Vec<Vec<&(i64, String)>> =
        match post(client, xapi, &due.iter().collect::<Vec<_>>()).await {
            Answer::Invalid if due.len() > 1 => due.iter().map(|d| vec![d]).collect(),
            answer => return settle(state, &due.iter().collect::<Vec<_>>(), answer).await,
        };
    let mut taken = true;
    for batch in batches {
        let answer = post(client, xapi, &batch).await;
        taken &= settle(state, &batch, answer).await;
    }
    taken
}

/// What the LRS made of a batch.
enum Answer {
    /// Taken (or known already).
    Taken,
    /// Refused as invalid.
    Invalid,
    /// Not taken now: the LRS is down, busy or refuses the credentials.
    Later(String),
}

/// Posts statements to the LRS.
async fn post(client: &reqwest::Client, xapi: &XapiConfig, due: &[&(i64, String)]) -> Answer {
    let body = format!(
        "[{}]",
        due.iter()
            .map(|d| d.1.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut request = client
        .post(xapi.statements_url())
        .header("X-Experience-API-Version", "1.0.3")
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(auth) = &xapi.auth {
        let (user, password) = auth.expose().split_once(':').unwrap_or((auth.expose(), ""));
        request = request.basic_auth(user, Some(password));
    }
    match request.send().await {
        Ok(answer) if answer.status().is_success() || answer.status().as_u16() == 409 => {
            Answer::Taken
        }
        Ok(answer) if answer.status().as_u16() == 400 => Answer::Invalid,
        Ok(answer) => Answer::Later(format!("the LRS answered {}", answer.status())),
        Err(e) => Answer::Later(e.without_url().to_string()),
    }
}

/// Forgets what was taken or refused for good; keeps the rest. Whether the LRS answered.
async fn settle(state: &Traces, due: &[&(i64, String)], answer: Answer) -> bool {
    let ids: Vec<i64> = due.iter().map(|d| d.0).collect();
    match answer {
        Answer::Taken => {}
        Answer::Invalid => tracing::error!(
            statements = ids.len(),
            "the LRS refuses a trace as invalid: dropped"
        ),
        Answer::Later(reason) => {
            tracing::warn!(
                reason,
                statements = ids.len(),
                "the LRS did not take traces: they wait"
            );
            return false;
        }
    }
    if let Err(e) = state.store.sent_statements(&ids).await {
        tracing::warn!(error = %e, "the trace queue was not updated");
    }
    true
}
