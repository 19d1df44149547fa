//! Exam time windows: when a course's exam may be started. A window belongs to
//! the exam's name in its course, set with the submission or on its own route;
//! the hub lists an exam first while it is open and refuses it outside.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
    Json,
};
use serde::{Deserialize, Serialize};
use trousse_builder::error::clip;

use crate::{
    auth::Principal,
    domain::window::{rfc3339, Window},
    error::ApiError,
    routes::environments::Environment,
    store::now,
    AppState,
};

/// A window as set: RFC 3339 times, either may be left out.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowRequest {
    /// When the exam opens, e.g. `2026-12-14T09:00:00+01:00` [default: open already].
    pub opens: Option<String>,
    /// When it closes [default: never].
    pub closes: Option<String>,
}

/// How the API shows a window, now.
pub(crate) fn view(window: &Window) -> WindowView {
    WindowView {
        opens: window.opens.map(rfc3339),
        closes: window.closes.map(rfc3339),
        open: window.is_open(now()),
    }
}

/// An exam's window as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    /// When it opens (RFC 3339, UTC), if set.
    pub opens: Option<String>,
    /// When it closes (RFC 3339, UTC), if set.
    pub closes: Option<String>,
    /// Whether it is open now.
    pub open: bool,
}

/// Set the time window of a course's exam; answers the exam environment.
#[utoipa::path(
    put,
    path = "/api/v1/courses/{course}/exams/{name}/window",
    operation_id = "set_exam_window",
    params(("course" = String, Path, description = "The course"), ("name" = String, Path, description = "The exam environment's name")),
    request_body = WindowRequest,
    responses(
        (status = 200, description = "Set", body = Environment),
        (status = 400, description = "A time that is not RFC 3339, or a window that closes before it opens", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
        (status = 404, description = "No exam environment of that name", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn set(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath((course, name)): UrlPath<(String, String)>,
    Json(body): Json<WindowRequest>,
) -> Result<Json<Environment>, ApiError> {
    principal.require_write(&course)?;
    let exam = current_exam(&state, &course, &name).await?;
    let window = Window::parse(body.opens.as_deref(), body.closes.as_deref(), "")?;
    match window {
        Some(window) => state.store.set_window(&course, &name, window).await?,
        None => {
            state.store.delete_window(&course, &name).await?;
        }
    }
    tracing::info!(%course, %name, ?window, "exam window set");
    Ok(Json(state.view(exam).await?))
}

/// Remove the time window of a course's exam: it is open.
#[utoipa::path(
    delete,
    path = "/api/v1/courses/{course}/exams/{name}/window",
    operation_id = "delete_exam_window",
    params(("course" = String, Path, description = "The course"), ("name" = String, Path, description = "The exam environment's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
        (status = 404, description = "No exam environment of that name, or it has no window", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath((course, name)): UrlPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_write(&course)?;
    current_exam(&state, &course, &name).await?;
    if state.store.delete_window(&course, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "the exam '{}' of course '{}' has no time window",
            clip(&name, 80),
            clip(&course, 80)
        )))
    }
}

/// The exam environment a course's name means, or a 404 that says why not.
async fn current_exam(
    state: &AppState,
    course: &str,
    name: &str,
) -> Result<crate::store::EnvironmentRow, ApiError> {
    match state.store.current_environment(course, name).await? {
        Some(env) if env.exam => Ok(env),
        Some(_) => Err(ApiError::NotFound(format!(
            "'{}' of course '{}' is not an exam: only exams have time windows (submit it with \"exam\": true)",
            clip(name, 80),
            clip(course, 80)
        ))),
        None => Err(ApiError::NotFound(format!(
            "course '{}' has no environment '{}'",
            clip(course, 80),
            clip(name, 80)
        ))),
    }
}
