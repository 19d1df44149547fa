//! The `page_sessions` and `page_sign_ins` tables: who is signed in to the
//! page (by a hash of their cookie), and the sign-ins under way.

use super::{now, Store};
use crate::{auth::Principal, error::ApiError};

/// A signed-in session.
#[derive(Debug, Clone)]
pub(crate) struct SessionRow {
    /// The token forms must carry (CSRF).
    pub(crate) csrf: String,
    /// The provider's subject (`sub`, or the hub user's name).
    pub(crate) subject: String,
    /// The name shown.
    pub(crate) name: String,
    /// The rights the identity gave at sign-in.
    pub(crate) principal: Principal,
}

/// A sign-in under way: what its callback checks.
#[derive(Debug, Clone)]
pub(crate) struct SignInRow {
    /// `oidc` or `hub`.
    pub(crate) provider: String,
    /// The ID token's expected `nonce`.
    pub(crate) nonce: String,
    /// The PKCE code verifier.
    pub(crate) verifier: String,
    /// The page to go back to (a path of the page's own).
    pub(crate) return_to: String,
}

impl Store {
    /// Records a session until `expires_at` (seconds since the epoch).
    pub(crate) async fn add_session(
        &self,
        hash: &str,
        row: &SessionRow,
        expires_at: i64,
    ) -> Result<(), ApiError> {
        let principal = serde_json::to_string(&row.principal)
            .map_err(|e| ApiError::Internal(format!("a session's rights: {e}")))?;
        sqlx::query("DELETE FROM page_sessions WHERE expires_at < $1")
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO page_sessions (hash, csrf, subject, name, principal, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(&row.csrf)
        .bind(&row.subject)
        .bind(&row.name)
        .bind(principal)
        .bind(now())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired session with this cookie hash.
    pub(crate) async fn session(&self, hash: &str) -> Result<Option<SessionRow>, ApiError> {
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT csrf, subject, name, principal FROM page_sessions \
             WHERE hash = $1 AND expires_at > $2",
        )
        .bind(hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(csrf, subject, name, principal)| {
            Some(SessionRow {
                csrf,
                subject,
                name,
                principal: serde_json::from_str(&principal).ok()?,
            })
        }))
    }

    /// Ends a session.
    pub(crate) async fn remove_session(&self, hash: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM page_sessions WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a sign-in under way, by its `state`, until `expires_at`.
    pub(crate) async fn add_sign_in(
        &self,
        state: &str,
        row: &SignInRow,
        expires_at: i64,
    ) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM page_sign_ins WHERE expires_at < $1")
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO page_sign_ins (state, provider, nonce, verifier, return_to, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state)
        .bind(&row.provider)
        .bind(&row.nonce)
        .bind(&row.verifier)
        .bind(&row.return_to)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the unexpired sign-in with this `state`: it can be ended once only.
    pub(crate) async fn take_sign_in(&self, state: &str) -> Result<Option<SignInRow>, ApiError> {
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "DELETE FROM page_sign_ins WHERE state = $1 AND expires_at > $2 \
             RETURNING provider, nonce, verifier, return_to",
        )
        .bind(state)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(provider, nonce, verifier, return_to)| SignInRow {
            provider,
            nonce,
            verifier,
            return_to,
        }))
    }
}
