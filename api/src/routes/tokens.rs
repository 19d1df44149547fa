//! `/api/v1/tokens`: the service's API tokens, for administrators — made
//! (shown once), listed (never the token itself), revoked at once.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
    Json,
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Principal, Role},
    error::{ApiError, ErrorBody},
    operations::tokens::{MadeToken, NewToken},
    store::TokenInfo,
    AppState,
};

/// Days a token made without `expires_in_days` lasts.
const DEFAULT_DAYS: u64 = 365;

/// The tokens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenList {
    /// Oldest first.
    tokens: Vec<TokenInfo>,
}

/// A token to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    /// `admin`, `teacher` or `hub`.
    role: String,
    /// The courses of a teacher token.
    #[serde(default)]
    courses: Vec<String>,
    /// What it is for.
    description: Option<String>,
    /// Days it lasts (1 to 3650) [default: 365]; `null` with `never: true` for none.
    expires_in_days: Option<u64>,
    /// A token that never expires (an admin's choice, e.g. a hub's).
    #[serde(default)]
    never: bool,
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only an administrator manages the service's tokens".into(),
        ))
    }
}

/// List the service's tokens (ids, roles, courses, dates; never a token).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "list_tokens",
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "operations"
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<TokenList>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(TokenList {
        tokens: state.store.tokens().await?,
    }))
}

/// Make a token; the answer is the only place it is ever shown.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "create_token",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Made", body = MadeToken),
        (status = 400, description = "A role or courses that do not go together", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 422, description = "An invalid course or duration", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "operations"
)]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Json(request): Json<TokenRequest>,
) -> Result<(StatusCode, Json<MadeToken>), ApiError> {
    require_admin(&principal)?;
    let role = match request.role.parse::<Role>() {
        Ok(role) => role,
        Err(message) => return Err(ApiError::bad_request("invalid_role", message)),
    };
    let expires_in_days = match (request.never, request.expires_in_days) {
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                "give expires_in_days or never, not both",
            ))
        }
        (true, None) => None,
        (false, days) => Some(days.unwrap_or(DEFAULT_DAYS)),
    };
    let new = NewToken {
        role,
        courses: request.courses,
        description: request.description,
        expires_in_days,
    };
    let made = crate::operations::tokens::make(&state.store, &new).await?;
    tracing::info!(id = %made.id, role = role.name(), "token made");
    Ok((StatusCode::CREATED, Json(made)))
}

/// Revoke a token: every replica refuses it from now on.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revoke_token",
    params(("id" = String, Path, description = "The token's id, as listed")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Not a token id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "operations"
)]
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&principal)?;
    if state.store.revoke_token(&id).await? {
        tracing::info!(%id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no token {}",
            trousse_builder::error::clip(&id, 40)
        )))
    }
}
