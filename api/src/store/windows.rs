//! The `exam_windows` table: when an exam's environment may be seen and pulled.

use super::{now, Store};
use crate::error::ApiError;

impl Store {
    /// Sets (or replaces) the time window of a course's exam.
    pub async fn set_window(
        &self,
        course: &str,
        name: &str,
        window: crate::domain::window::Window,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO exam_windows (course, name, opens, closes, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (course, name) DO UPDATE SET opens = excluded.opens,
             closes = excluded.closes, updated_at = excluded.updated_at",
        )
        .bind(course)
        .bind(name)
        .bind(window.opens)
        .bind(window.closes)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the time window of a course's exam; whether it had one.
    pub async fn delete_window(&self, course: &str, name: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM exam_windows WHERE course = $1 AND name = $2")
            .bind(course)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The time window of a course's exam, if it has one.
    pub async fn window(
        &self,
        course: &str,
        name: &str,
    ) -> Result<Option<crate::domain::window::Window>, ApiError> {
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT opens, closes FROM exam_windows WHERE course = $1 AND name = $2",
        )
        .bind(course)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(opens, closes)| crate::domain::window::Window { opens, closes }))
    }
}
