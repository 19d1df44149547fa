//! The images the `/v2/` endpoint serves: their tags and the blobs each repository holds.

use super::Store;
use crate::error::ApiError;

impl Store {
    /// Remembers the manifests and blobs of a built image.
    pub async fn record_image(
        &self,
        digest: &str,
        blobs: &[(String, Option<String>)],
    ) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        for (blob, media_type) in blobs {
            sqlx::query(
                "INSERT INTO image_blobs (image_digest, digest, media_type) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(digest)
            .bind(blob)
            .bind(media_type)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes a built image servable from `repository`, under the tags given.
    pub async fn publish_image(
        &self,
        repository: &str,
        tags: &[&str],
        digest: &str,
    ) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository, digest, media_type)
             SELECT $1, digest, media_type FROM image_blobs WHERE image_digest = $2
             ON CONFLICT DO NOTHING",
        )
        .bind(repository)
        .bind(digest)
        .execute(&mut *tx)
        .await?;
        for tag in tags {
            sqlx::query(
                "INSERT INTO tags (repository, tag, digest) VALUES ($1, $2, $3)
                 ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest",
            )
            .bind(repository)
            .bind(tag)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes a tag: the image is no longer pulled by it.
    pub(crate) async fn remove_tag(&self, repository: &str, tag: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM tags WHERE repository = $1 AND tag = $2")
            .bind(repository)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every tag of every repository: (repository, tag, digest).
    pub(crate) async fn all_tags(&self) -> Result<Vec<(String, String, String)>, ApiError> {
        Ok(
            sqlx::query_as("SELECT repository, tag, digest FROM tags ORDER BY repository, tag")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The tags of a repository, sorted.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT tag FROM tags WHERE repository = $1 ORDER BY tag")
                .bind(repository)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Whether the service serves anything from a repository.
    pub async fn repository_exists(&self, repository: &str) -> Result<bool, ApiError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM repository_blobs WHERE repository = $1",
        )
        .bind(repository)
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    /// The digest a tag points to.
    pub async fn tag(&self, repository: &str, tag: &str) -> Result<Option<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM tags WHERE repository = $1 AND tag = $2")
                .bind(repository)
                .bind(tag)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Whether `repository` serves the blob or manifest `digest`, with its media type if known.
    pub async fn repository_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Option<String>>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT media_type FROM repository_blobs WHERE repository = $1 AND digest = $2",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }
}
