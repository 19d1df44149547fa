//! The `tokens` table: hashes of the service's API tokens, their roles and
//! when they expire. A token's public id is the start of its hash.

use super::{now, Store};
use crate::{auth::Role, error::ApiError};

/// How many hex digits of a token's hash name it (48 bits).
pub(crate) const TOKEN_ID_DIGITS: usize = 12;

/// A stored token.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The role.
    pub role: Role,
    /// The courses granted (teachers).
    pub courses: Vec<String>,
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Its public id: the first digits of its hash.
    pub id: String,
    /// Its role.
    pub role: String,
    /// The courses it is granted.
    pub courses: Vec<String>,
    /// What it is for.
    pub description: Option<String>,
    /// When it was made (seconds since the epoch).
    pub created_at: i64,
    /// When it stops working, if ever.
    pub expires_at: Option<i64>,
}

/// A row of the table, as read for a listing.
#[derive(sqlx::FromRow)]
struct TokenRow {
    hash: String,
    role: String,
    courses: String,
    description: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
}

impl Store {
    /// Stores a token's hash, valid until `expires_at` (seconds since the epoch) if given.
    pub async fn add_token(
        &self,
        hash: &str,
        role: Role,
        courses: &[String],
        description: Option<&str>,
        expires_at: Option<i64>,
    ) -> Result<(), ApiError> {
        let courses = serde_json::to_string(courses)
            .map_err(|e| ApiError::Internal(format!("a token's courses: {e}")))?;
        sqlx::query(
            "INSERT INTO tokens (hash, role, courses, description, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash)
        .bind(role.name())
        .bind(courses)
        .bind(description)
        .bind(now())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired token with this hash.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, ApiError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT role, courses FROM tokens
             WHERE hash = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(role, courses)| {
            Some(TokenRecord {
                role: role.parse().ok()?,
                courses: serde_json::from_str(&courses).unwrap_or_default(),
            })
        }))
    }

    /// Every token, oldest first (expired ones too, until revoked).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT hash, role, courses, description, created_at, expires_at FROM tokens
             ORDER BY created_at, hash LIMIT 10000",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| TokenInfo {
                id: row.hash.chars().take(TOKEN_ID_DIGITS).collect(),
                role: row.role,
                courses: serde_json::from_str(&row.courses).unwrap_or_default(),
                description: row.description,
                created_at: row.created_at,
                expires_at: row.expires_at,
            })
            .collect())
    }

    /// Removes the token with this id; whether there was one. It is refused
    /// at once by every service sharing the store (nothing caches it).
    pub async fn revoke_token(&self, id: &str) -> Result<bool, ApiError> {
        if id.len() != TOKEN_ID_DIGITS || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request(
                "invalid_token_id",
                format!(
                    "a token id is the {TOKEN_ID_DIGITS} hex digits `trousse token list` shows"
                ),
            ));
        }
        let done = sqlx::query("DELETE FROM tokens WHERE substr(hash, 1, 12) = $1")
            .bind(id.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
