//! Errors the service answers with: a status and a JSON body that names the problem.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use trousse_builder::BuildError;

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code, e.g. `invalid_spec`, `package_not_found`, `forbidden`.
    pub error: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No valid token was given (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that name (404).
    #[error("{0}")]
    NotFound(String),
    /// The body or spec exceeds a limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The request is well-formed but cannot be built (422).
    #[error("{message}")]
    Unprocessable {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A channel or registry the service depends on failed (502).
    #[error("{0}")]
    Upstream(String),
    /// Something failed inside the service (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with this code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        let message = e.to_string();
        match e {
            BuildError::Spec(_) => ApiError::bad_request("invalid_spec", message),
            BuildError::Lock { .. } => ApiError::bad_request("invalid_lock", message),
            BuildError::Unsupported(_) => ApiError::bad_request("unsupported", message),
            BuildError::PackageNotFound { .. } => ApiError::Unprocessable {
                code: "package_not_found",
                message,
            },
            BuildError::Unsolvable { .. } => ApiError::Unprocessable {
                code: "unsolvable",
                message,
            },
            BuildError::Channel { .. }
            | BuildError::Fetch { .. }
            | BuildError::Integrity { .. }
            | BuildError::Registry(_) => ApiError::Upstream(message),
            BuildError::Stage { .. } | BuildError::Io { .. } => ApiError::Internal(message),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(format!("the store failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(%status, code, "{self}");
        } else {
            tracing::info!(%status, code, "{self}");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: code.to_string(),
                message: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"trousse\""),
            );
        }
        response
    }
}
