//! `/api/v1/courses/{course}/git-token`: a course's deploy token for its
//! private repositories. It can be set and removed, never read back.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
    Json,
};
use serde::Deserialize;

use crate::{auth::Principal, error::ApiError, AppState};

/// The longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// A secret as set (trimmed): `min` to 4096 printable characters, or a 400 saying so.
pub(crate) fn checked_secret<'a>(
    what: &str,
    text: &'a str,
    min: usize,
) -> Result<&'a str, ApiError> {
    let secret = text.trim();
    if secret.len() < min.max(1)
        || secret.len() > MAX_TOKEN_BYTES
        || secret.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_token",
            format!(
                "{what} is {} to {MAX_TOKEN_BYTES} printable characters",
                min.max(1)
            ),
        ));
    }
    Ok(secret)
}

/// A deploy token (GitLab's, GitHub's fine-grained token, Gitea's…).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GitToken {
    /// The token, sent as the password when a course repository asks for credentials.
    pub token: String,
}

impl std::fmt::Debug for GitToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitToken(<redacted>)")
    }
}

/// Set the course's git deploy token (it is never returned).
#[utoipa::path(
    put,
    path = "/api/v1/courses/{course}/git-token",
    params(("course" = String, Path, description = "The course")),
    request_body = GitToken,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "An empty or too long token", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn set(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
    Json(body): Json<GitToken>,
) -> Result<StatusCode, ApiError> {
    principal.require_write(&course)?;
    let token = checked_secret("a git token", &body.token, 1)?;
    state.store.set_git_token(&course, token).await?;
    tracing::info!(%course, "git token set");
    Ok(StatusCode::NO_CONTENT)
}

/// Remove the course's git deploy token.
#[utoipa::path(
    delete,
    path = "/api/v1/courses/{course}/git-token",
    params(("course" = String, Path, description = "The course")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
        (status = 404, description = "The course has no git token", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_write(&course)?;
    if state.store.delete_git_token(&course).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "course '{}' has no git token",
            trousse_builder::error::clip(&course, 80)
        )))
    }
}
