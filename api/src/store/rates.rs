//! The `rate_windows` table: how many submissions each caller made in each
//! minute, shared by every replica on the store.

use super::{now, Store};
use crate::error::ApiError;

impl Store {
    /// Counts one more call of `caller` in the current minute; returns the
    /// minute's count so far and the seconds left in it.
    pub(crate) async fn count_call(&self, caller: &str) -> Result<(i64, i64), ApiError> {
        let now = now();
        let minute = now / 60;
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO rate_windows (caller, minute, count) VALUES ($1, $2, 1)
             ON CONFLICT (caller, minute) DO UPDATE SET count = rate_windows.count + 1
             RETURNING count",
        )
        .bind(caller)
        .bind(minute)
        .fetch_one(&self.pool)
        .await?;
        if count == 1 {
            // a caller's first call of a minute clears the minutes before
            sqlx::query("DELETE FROM rate_windows WHERE minute < $1")
                .bind(minute - 1)
                .execute(&self.pool)
                .await?;
        }
        Ok((count, 60 - now % 60))
    }
}
