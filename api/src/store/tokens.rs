//! The `tokens` table: hashes of the service's API tokens and their roles.

use super::{now, Store};
use crate::{auth::Role, error::ApiError};

/// A stored token.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The role.
    pub role: Role,
    /// The courses granted (teachers).
    pub courses: Vec<String>,
}

impl Store {
    /// Stores a token's hash.
    pub async fn add_token(
        &self,
        hash: &str,
        role: Role,
        courses: &[String],
        description: Option<&str>,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO tokens (hash, role, courses, description, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(role.name())
        .bind(serde_json::to_string(courses).unwrap_or_default())
        .bind(description)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, ApiError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT role, courses FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(role, courses)| {
            Some(TokenRecord {
                role: role.parse().ok()?,
                courses: serde_json::from_str(&courses).unwrap_or_default(),
            })
        }))
    }
}
