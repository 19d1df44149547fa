//! What garbage collection of the image store reads and forgets: versions
//! beyond those kept, the images nothing refers to, the blobs still needed.

use std::collections::HashSet;

use super::Store;
use crate::error::ApiError;

/// The image digests something still refers to: an environment's current
/// image, any version it keeps (roll-backs), a tag.
const REFERENCED_IMAGES: &str = "SELECT digest FROM environment_digests
     UNION SELECT digest FROM environments WHERE digest IS NOT NULL
     UNION SELECT digest FROM tags";

impl Store {
    /// The versions of course environments beyond the newest `keep` (never an
    /// exam's, never one in use): (environment id, digest).
    pub(crate) async fn versions_beyond(
        &self,
        keep: i64,
    ) -> Result<Vec<(String, String)>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT v.environment_id, v.digest FROM (
               SELECT environment_id, digest, ROW_NUMBER() OVER (
                 PARTITION BY environment_id ORDER BY created_at DESC, seq DESC) AS n
               FROM environment_digests) v
             JOIN environments e ON e.id = v.environment_id
             WHERE v.n > $1 AND e.exam = 0 AND (e.digest IS NULL OR e.digest <> v.digest)",
        )
        .bind(keep)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets versions (they can no longer be rolled back to).
    pub(crate) async fn forget_versions(
        &self,
        versions: &[(String, String)],
    ) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        for (environment, digest) in versions {
            sqlx::query(
                "DELETE FROM environment_digests WHERE environment_id = $1 AND digest = $2",
            )
            .bind(environment)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Images recorded in the image store that nothing refers to.
    pub(crate) async fn unreferenced_images(&self) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT DISTINCT image_digest FROM image_blobs
             WHERE image_digest NOT IN ({REFERENCED_IMAGES})"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets images, and the repositories' blobs no remaining image holds.
    pub(crate) async fn forget_images(&self, images: &[String]) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        for image in images {
            sqlx::query("DELETE FROM image_blobs WHERE image_digest = $1")
                .bind(image)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM repository_blobs WHERE digest NOT IN (SELECT digest FROM image_blobs)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The blobs that images other than `images` hold.
    pub(crate) async fn blobs_without(
        &self,
        images: &[String],
    ) -> Result<HashSet<String>, ApiError> {
        let all: Vec<(String, String)> =
            sqlx::query_as("SELECT image_digest, digest FROM image_blobs")
                .fetch_all(&self.pool)
                .await?;
        let gone: HashSet<&String> = images.iter().collect();
        Ok(all
            .into_iter()
            .filter(|(image, _)| !gone.contains(image))
            .map(|(_, blob)| blob)
            .collect())
    }

    /// Every blob a recorded image holds (what the image store must keep).
    pub(crate) async fn kept_blobs(&self) -> Result<HashSet<String>, ApiError> {
        let blobs: Vec<String> = sqlx::query_scalar("SELECT DISTINCT digest FROM image_blobs")
            .fetch_all(&self.pool)
            .await?;
        Ok(blobs.into_iter().collect())
    }
}
