//! `DELETE /api/v1/environments/{id}`: an environment removed for good — its
//! row, its versions, the builds and events only it had, its `latest` tag.
//! Its image's blobs go at the next collection of the image store. Not while
//! it builds, nor an exam whose window is open.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
};

use crate::{
    auth::Principal,
    error::{ApiError, ErrorBody},
    store::{now, Status},
    AppState,
};

/// Delete an environment for good (archive it to keep it).
#[utoipa::path(
    delete,
    path = "/api/v1/environments/{id}",
    operation_id = "delete_environment",
    params(("id" = String, Path, description = "The environment's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a teacher of its course", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "It is building, or an exam whose window is open", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let env = state.readable_environment(&principal, &id).await?;
    principal.require_write(&env.course)?;
    if matches!(env.status, Status::Queued | Status::Building) {
        return Err(ApiError::Conflict(format!(
            "{} is building: cancel its build first (POST /api/v1/environments/{id}/cancel)",
            env.name
        )));
    }
    if env.exam {
        let window = state.store.window(&env.course, &env.name).await?;
        let open = window.is_none_or(|w| {
            w.opens.is_none_or(|o| o <= now()) && w.closes.is_none_or(|c| c > now())
        });
        if open {
            return Err(ApiError::Conflict(format!(
                "the exam {} is open: delete it before its window opens or once it has closed",
                env.name
            )));
        }
    }
    if env.current && !env.exam {
        let repository = crate::domain::repository(&env.course, &env.name);
        state.store.remove_tag(&repository, "latest").await?;
    }
    state.store.delete_environment(&env.id).await?;
    tracing::info!(environment = %env.id, course = %env.course, name = %env.name, "deleted");
    Ok(StatusCode::NO_CONTENT)
}
