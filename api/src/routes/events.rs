//! `GET /api/v1/environments/{id}/events`: a build's events as server-sent
//! events; a late client gets the events so far, then the live ones.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Path as UrlPath, State},
    http::HeaderMap,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::{stream, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use crate::{
    auth::Principal, builds::event::BuildEvent, builds::NumberedEvent, error::ApiError, AppState,
};

fn is_last(data: &str) -> bool {
    BuildEvent::parse(data).is_some_and(|e| e.is_done())
}

fn to_sse((seq, data): NumberedEvent) -> Result<SseEvent, Infallible> {
    let kind = BuildEvent::parse(&data).map_or("message", |e| e.kind());
    Ok(SseEvent::default()
        .id(seq.to_string())
        .event(kind)
        .data(data))
}

/// Follow an environment's build: solve, fetch, stage, layer, image, publish
/// and a last `done` event with the status.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{id}/events",
    params(
        ("id" = String, Path, description = "The environment's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")
    ),
    responses(
        (status = 200, description = "A text/event-stream of build events, with keep-alive comments", content_type = "text/event-stream"),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted its course, or an exam outside its window for a student", body = crate::error::ErrorBody),
        (status = 404, description = "No such environment", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn follow(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let env = state.readable_environment(&principal, &id).await?;
    if env.exam {
        if let Some(window) = state
            .sealed_exam(Some(&principal), &env.course, &env.name)
            .await?
        {
            return Err(ApiError::Forbidden(format!(
                "the exam '{}' of course '{}' is not open ({}): its build is shown to students while it is",
                env.name,
                env.course,
                window.describe()
            )));
        }
    }
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let events = match env.build_id {
        Some(build_id) => build_events(&state, &build_id, after).await?,
        None => stream::empty().boxed(),
    };
    Ok(Sse::new(events.map(to_sse).boxed()).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(10))
            .text("keep-alive"),
    ))
}

/// The stored events of a build after `after`, then (while it runs) the live ones until `done`.
pub(crate) async fn build_events(
    state: &AppState,
    build_id: &str,
    after: i64,
) -> Result<futures::stream::BoxStream<'static, NumberedEvent>, ApiError> {
    // subscribe before reading what is stored, so that nothing falls between
    let live = state.builds.subscribe(build_id);
    let past = state.store.events(build_id, after).await?;
    let seen = past.last().map_or(after, |(seq, _)| *seq);
    let finished = past.iter().any(|(_, data)| is_last(data));
    let past_stream = stream::iter(past);
    Ok(match live {
        Some(receiver) if !finished => past_stream
            .chain(
                BroadcastStream::new(receiver)
                    .filter_map(|r| async move { r.ok() })
                    .filter(move |(seq, _)| std::future::ready(*seq > seen))
                    .scan(false, |ended, event| {
                        let out = (!*ended).then(|| {
                            *ended = is_last(&event.1);
                            event
                        });
                        std::future::ready(out)
                    }),
            )
            .boxed(),
        _ if finished => past_stream.boxed(),
        // queued, or running in another replica or worker: its events are read from the store
        _ => past_stream
            .chain(stored_events(
                state.store.clone(),
                build_id.to_string(),
                seen,
            ))
            .boxed(),
    })
}

/// How often a follower reads the store for the events of a build that runs elsewhere.
const STORE_POLL: Duration = Duration::from_millis(250);

/// How long a finished build's follower waits for its last event (written just after its row).
const LAST_EVENT_GRACE: Duration = Duration::from_secs(5);

/// The events of a build after `seen`, read from the store as they are written, until its last.
fn stored_events(
    store: crate::store::Store,
    build_id: String,
    seen: i64,
) -> impl Stream<Item = NumberedEvent> {
    let start = (store, build_id, seen, None::<std::time::Instant>, false);
    stream::unfold(
        start,
        |(store, build_id, seen, idle_since, ended)| async move {
            if ended {
                return None;
            }
            tokio::time::sleep(STORE_POLL).await;
            // the store down a moment reads as nothing new: the client keeps its place
            let events = store.events(&build_id, seen).await.unwrap_or_default();
            if let Some((last, _)) = events.last() {
                let ended = events.iter().any(|(_, data)| is_last(data));
                let seen = *last;
                return Some((events, (store, build_id, seen, None, ended)));
            }
            let finished = store
                .build(&build_id)
                .await
                .ok()
                .map(|b| b.is_none_or(|b| b.status.is_final()));
            let idle_since = match finished {
                Some(true) => Some(idle_since.unwrap_or_else(std::time::Instant::now)),
                _ => None,
            };
            let gave_up = idle_since.is_some_and(|t| t.elapsed() > LAST_EVENT_GRACE);
            Some((Vec::new(), (store, build_id, seen, idle_since, gave_up)))
        },
    )
    .flat_map(stream::iter)
}
