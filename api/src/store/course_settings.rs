//! A course's settings: its git token and its webhook secret.

use super::{now, Store};
use crate::error::ApiError;

impl Store {
    /// Sets (or replaces) a course's git deploy token.
    pub async fn set_git_token(&self, course: &str, token: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO course_git_tokens (course, token, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (course) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at",
        )
        .bind(course)
        .bind(token)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a course's git deploy token; whether it had one.
    pub async fn delete_git_token(&self, course: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM course_git_tokens WHERE course = $1")
            .bind(course)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A course's git deploy token, for the fetch that needs it (never for an answer).
    pub async fn git_token(&self, course: &str) -> Result<Option<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT token FROM course_git_tokens WHERE course = $1")
                .bind(course)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets (or replaces) a course's push webhook secret.
    pub async fn set_webhook_secret(&self, course: &str, secret: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO course_webhook_secrets (course, secret, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (course) DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
        )
        .bind(course)
        .bind(secret)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a course's push webhook secret; whether it had one.
    pub async fn delete_webhook_secret(&self, course: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM course_webhook_secrets WHERE course = $1")
            .bind(course)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A course's push webhook secret, if set.
    pub async fn webhook_secret(&self, course: &str) -> Result<Option<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT secret FROM course_webhook_secrets WHERE course = $1")
                .bind(course)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
