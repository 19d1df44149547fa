//! The queries of the upgrade steps a new version runs once over an older data directory.

use super::Store;
use crate::error::ApiError;

impl Store {
    /// The builds stored before their settings were (`id`, environment's spec, lock).
    pub async fn builds_without_settings(
        &self,
    ) -> Result<Vec<(String, Option<String>, String)>, ApiError> {
        Ok(sqlx::query_as::<_, (String, Option<String>, String)>(
            "SELECT b.id, e.spec, e.lock FROM builds b JOIN environments e ON e.id = b.environment_id
             WHERE b.settings IS NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Gives an older build its settings and the key they make now.
    pub async fn set_build_settings(
        &self,
        id: &str,
        build_key: &str,
        settings: &str,
    ) -> Result<(), ApiError> {
        sqlx::query("UPDATE builds SET build_key = $1, settings = $2 WHERE id = $3")
            .bind(build_key)
            .bind(settings)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Rewrites every stored text cell that may hold a URL with `scrub`'s
    /// answer where it has one; the ids of environments whose lock changed.
    pub async fn scrub_urls(
        &self,
        scrub: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ApiError> {
        // (table, its key as one text, column): the key finds the row again in either store
        const CELLS: [(&str, &str, &str); 7] = [
            ("environments", "id", "spec"),
            ("environments", "id", "lock"),
            ("environments", "id", "source"),
            ("environments", "id", "error"),
            ("builds", "id", "error"),
            ("builds", "id", "settings"),
            ("build_events", "build_id || ':' || seq", "data"),
        ];
        let mut locks = Vec::new();
        for (table, key, column) in CELLS {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT {key}, {column} FROM {table} WHERE {column} LIKE '%://%@%'"
            ))
            .fetch_all(&self.pool)
            .await?;
            for (row, text) in rows {
                let Some(clean) = scrub(&text) else { continue };
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = $1 WHERE {key} = $2"
                ))
                .bind(&clean)
                .bind(&row)
                .execute(&self.pool)
                .await?;
                if (table, column) == ("environments", "lock") {
                    locks.push(row);
                }
            }
        }
        Ok(locks)
    }

    /// Sets an environment's lock hash (after its lock was scrubbed).
    pub async fn set_lock_hash(&self, id: &str, lock_hash: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE environments SET lock_hash = $1 WHERE id = $2")
            .bind(lock_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
