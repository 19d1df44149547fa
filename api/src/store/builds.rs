//! The `builds` table: one row per build, queued, running or finished.

use super::{now, record_digest, EnvironmentRow, Status, Store};
use crate::error::ApiError;

/// A build as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    /// Its id.
    pub id: String,
    /// The environment that asked for it first.
    pub environment_id: String,
    /// Its status name.
    pub status: Status,
    /// How often it was started.
    pub attempts: i64,
    /// The image settings it builds (`SettingsRecord` JSON).
    pub settings: Option<String>,
}

impl Store {
    /// An unfinished build with this key, to share.
    pub async fn unfinished_build(&self, build_key: &str) -> Result<Option<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE build_key = $1 AND status IN ('queued', 'building') LIMIT 1",
        )
        .bind(build_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Saves a new build.
    pub async fn insert_build(
        &self,
        id: &str,
        environment_id: &str,
        build_key: &str,
        settings: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO builds (id, environment_id, build_key, settings, status, attempts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6)",
        )
        .bind(id)
        .bind(environment_id)
        .bind(build_key)
        .bind(settings)
        .bind(now())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A build by id.
    pub async fn build(&self, id: &str) -> Result<Option<BuildRow>, ApiError> {
        Ok(sqlx::query_as::<_, BuildRow>(
            "SELECT id, environment_id, status, attempts, settings FROM builds WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Builds that were queued or running when the service stopped.
    pub async fn unfinished_builds(&self) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE status IN ('queued', 'building') ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many builds wait or run.
    pub async fn queue_length(&self) -> Result<i64, ApiError> {
        Ok(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM builds WHERE status IN ('queued', 'building')",
            )
            .fetch_one(&self.pool)
            .await?,
        )
    }

    /// Marks a build (and the environments waiting on it) as started once more.
    pub async fn start_build(&self, id: &str) -> Result<i64, ApiError> {
        let mut tx = self.pool.begin().await?;
        let attempts: i64 = sqlx::query_scalar(
            "UPDATE builds SET status = 'building', attempts = attempts + 1, updated_at = $1
             WHERE id = $2 RETURNING attempts",
        )
        .bind(now())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE environments SET status = 'building', updated_at = $1 WHERE build_id = $2",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attempts)
    }

    /// Ends a build and the environments waiting on it.
    pub async fn finish_build(
        &self,
        id: &str,
        outcome: Result<(&str, i64), &str>,
        seconds: f64,
    ) -> Result<Vec<EnvironmentRow>, ApiError> {
        let mut tx = self.pool.begin().await?;
        let (status, digest, bytes, error) = match outcome {
            Ok((digest, bytes)) => (Status::Ready, Some(digest), Some(bytes), None),
            Err(error) => (Status::Failed, None, None, Some(error)),
        };
        sqlx::query(
            "UPDATE builds SET status = $1, digest = $2, error = $3, seconds = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(status)
        .bind(digest)
        .bind(error)
        .bind(seconds)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE environments SET status = $1, digest = $2, bytes = $3, error = $4, updated_at = $5
             WHERE build_id = $6",
        )
        .bind(status)
        .bind(digest)
        .bind(bytes)
        .bind(error)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let envs =
            sqlx::query_as::<_, EnvironmentRow>("SELECT * FROM environments WHERE build_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if let Some(digest) = digest {
            for env in &envs {
                record_digest(&mut tx, env, digest).await?;
            }
        }
        tx.commit().await?;
        Ok(envs)
    }
}
