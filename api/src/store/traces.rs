//! The `xapi_queue` table (statements waiting for the LRS) and the marks of
//! exam windows already traced.

use super::{now, Store};
use crate::error::ApiError;

/// The most statements kept waiting: beyond, the oldest are dropped (an LRS
/// down for weeks must not fill the disk).
const MAX_QUEUED: i64 = 100_000;

impl Store {
    /// Queues a statement.
    pub(crate) async fn queue_statement(&self, statement: &str) -> Result<(), ApiError> {
        sqlx::query("INSERT INTO xapi_queue (statement, created_at) VALUES ($1, $2)")
            .bind(statement)
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM xapi_queue WHERE id <= (SELECT MAX(id) FROM xapi_queue) - $1")
            .bind(MAX_QUEUED)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The oldest `limit` statements waiting: (id, statement).
    pub(crate) async fn queued_statements(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, ApiError> {
        Ok(
            sqlx::query_as("SELECT id, statement FROM xapi_queue ORDER BY id LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Forgets statements the LRS took (or refused for good).
    pub(crate) async fn sent_statements(&self, ids: &[i64]) -> Result<(), ApiError> {
        for id in ids {
            sqlx::query("DELETE FROM xapi_queue WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Exam windows that opened or closed (`mark`) in the last hour and were not marked:
    /// (course, name, time); marks them.
    pub(crate) async fn take_window_marks(
        &self,
        mark: &str,
    ) -> Result<Vec<(String, String, i64)>, ApiError> {
        let column = if mark == "opened" { "opens" } else { "closes" };
        let due: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "SELECT w.course, w.name, w.{column} FROM exam_windows w
             WHERE w.{column} IS NOT NULL AND w.{column} <= $1 AND w.{column} > $2 - 3600
               AND NOT EXISTS (SELECT 1 FROM xapi_exam_marks m
                 WHERE m.course = w.course AND m.name = w.name AND m.mark = $3 AND m.at = w.{column})"
        ))
        .bind(now())
        .bind(now())
        .bind(mark)
        .fetch_all(&self.pool)
        .await?;
        for (course, name, at) in &due {
            sqlx::query(
                "INSERT INTO xapi_exam_marks (course, name, mark, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(course)
            .bind(name)
            .bind(mark)
            .bind(at)
            .execute(&self.pool)
            .await?;
        }
        Ok(due)
    }
}
