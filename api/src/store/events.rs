//! The `build_events` table: the events of each build, in order.

use super::Store;
use crate::error::ApiError;

impl Store {
    /// Appends an event to a build's log: only while `owner` (when given)
    /// still holds the build, so a claimer that lost it to another writes
    /// nothing more; a number already written is kept.
    pub async fn add_event(
        &self,
        build_id: &str,
        seq: i64,
        data: &str,
        owner: Option<&str>,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO build_events (build_id, seq, data)
             SELECT $1, $2, $3 WHERE $4 IS NULL
                OR EXISTS (SELECT 1 FROM builds WHERE id = $1 AND lease_owner = $4)
             ON CONFLICT (build_id, seq) DO NOTHING",
        )
        .bind(build_id)
        .bind(seq)
        .bind(data)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A build's events after `after`, in order.
    pub async fn events(&self, build_id: &str, after: i64) -> Result<Vec<(i64, String)>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT seq, data FROM build_events WHERE build_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(build_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last event number of a build (0 when none).
    pub async fn last_event(&self, build_id: &str) -> Result<i64, ApiError> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(seq) FROM build_events WHERE build_id = $1",
        )
        .bind(build_id)
        .fetch_one(&self.pool)
        .await?
        .unwrap_or(0))
    }
}
