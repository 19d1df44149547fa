//! The service's API tokens, made, listed and revoked — by the CLI on the
//! store directly (`trousse token …`) and by `/api/v1/tokens` for admins.

use crate::{
    auth::{self, Role},
    error::ApiError,
    store::{now, Database, Store, TokenInfo},
};

/// The longest a token may be made for: ten years.
const MAX_DAYS: u64 = 3650;

/// What a new token is.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its role.
    pub role: Role,
    /// The courses a teacher token is granted.
    pub courses: Vec<String>,
    /// What it is for.
    pub description: Option<String>,
    /// Days until it expires; none: never.
    pub expires_in_days: Option<u64>,
}

/// A token made: shown once, with its id and expiry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MadeToken {
    /// The token itself: only this answer holds it.
    pub token: String,
    /// Its public id (for `revoke`).
    pub id: String,
    /// When it stops working, if ever (seconds since the epoch).
    pub expires_at: Option<i64>,
}

/// Checks a new token and stores its hash; returns it.
pub(crate) async fn make(store: &Store, new: &NewToken) -> Result<MadeToken, ApiError> {
    if new.role == Role::Teacher && new.courses.is_empty() {
        return Err(ApiError::bad_request(
            "missing_course",
            "a teacher token needs at least one course",
        ));
    }
    if new.role == Role::Student {
        return Err(ApiError::bad_request(
            "invalid_role",
            "students are hub users: their hub token is theirs, trousse makes none",
        ));
    }
    if let Some(course) = new.courses.iter().find(|c| !crate::names::is_name(c)) {
        return Err(ApiError::InvalidField {
            field: "courses".into(),
            message: format!(
                "'{}' is not a course name",
                trousse_builder::error::clip(course, 80)
            ),
        });
    }
    let expires_at = match new.expires_in_days {
        Some(days) if days == 0 || days > MAX_DAYS => {
            return Err(ApiError::InvalidField {
                field: "expires_in_days".into(),
                message: format!("a token lasts 1 to {MAX_DAYS} days, or never"),
            })
        }
        Some(days) => Some(now() + (days * 86_400) as i64),
        None => None,
    };
    let (token, hash) = auth::new_token()?;
    store
        .add_token(
            &hash,
            new.role,
            &new.courses,
            new.description.as_deref(),
            expires_at,
        )
        .await?;
    Ok(MadeToken {
        token,
        id: hash[..crate::store::TOKEN_ID_DIGITS].to_string(),
        expires_at,
    })
}

/// Creates a token (the CLI); it is shown once.
pub async fn create_token(database: &Database, new: &NewToken) -> Result<MadeToken, ApiError> {
    make(&Store::open(database).await?, new).await
}

/// Every token's id, role, courses, description and dates (the CLI).
pub async fn list_tokens(database: &Database) -> Result<Vec<TokenInfo>, ApiError> {
    Store::open(database).await?.tokens().await
}

/// Revokes a token by id (the CLI): refused at once by every service on the store.
pub async fn revoke_token(database: &Database, id: &str) -> Result<(), ApiError> {
    if Store::open(database).await?.revoke_token(id).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no token {id}: `trousse token list` shows them"
        )))
    }
}
