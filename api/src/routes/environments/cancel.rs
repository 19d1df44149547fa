//! `POST /api/v1/environments/{id}/cancel`: stops an environment's build,
//! queued or running, wherever it runs. A build shared with other courses'
//! environments is cancelled only by someone who manages all of them.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    Json,
};

use super::Environment;
use crate::{
    auth::Principal,
    builds::event::BuildEvent,
    error::{ApiError, ErrorBody},
    AppState,
};

/// Cancel the environment's build: it and every environment waiting on it fail.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{id}/cancel",
    params(("id" = String, Path, description = "The environment's id")),
    responses(
        (status = 200, description = "Cancelled: the environment, failed", body = Environment),
        (status = 403, description = "Not a teacher of its course, or of a course sharing the build", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "Its build has ended", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Environment>, ApiError> {
    let env = state.readable_environment(&principal, &id).await?;
    principal.require_write(&env.course)?;
    let ended = || {
        ApiError::Conflict(format!(
            "the build of {} has ended: nothing to cancel",
            env.name
        ))
    };
    let build_id = env.build_id.clone().ok_or_else(ended)?;
    let who = principal
        .subject
        .as_deref()
        .or(principal.hub_user.as_deref());
    let reason = match who {
        Some(who) => format!("cancelled by {}", trousse_builder::error::clip(who, 80)),
        None => format!("cancelled with a token of role {}", principal.role.name()),
    };
    let cancelled = state
        .store
        .cancel_build(&build_id, &reason, |course| principal.manages(course))
        .await?
        .ok_or_else(ended)?;
    if !cancelled.was_running {
        // nobody writes this build's events: its last one is written here
        let seq = state.store.last_event(&build_id).await? + 1;
        let event = serde_json::to_string(&BuildEvent::failed(reason.clone()))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        state.store.add_event(&build_id, seq, &event, None).await?;
    }
    tracing::info!(build = %build_id, environments = cancelled.environments.len(), "{reason}");
    let env = state
        .store
        .environment(&env.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no environment {id}")))?;
    Ok(Json(state.view_for(&principal, env).await?))
}
