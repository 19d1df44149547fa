//! `trousse store copy`: a stopped SQLite deployment moved to PostgreSQL —
//! its rows, and the images its `/v2/` served pushed to the registry the
//! new deployment names them in (`--push-to`).

use std::path::Path;

use oci_spec::image::{DescriptorBuilder, MediaType};
use trousse_registry_client::{publish, Image, ImageRef, RegistryOptions};

use crate::{
    error::ApiError,
    store::{CopiedRows, Database, Store},
};

/// Where a copy pushes the data directory's images.
#[derive(Debug, Clone)]
pub struct ImageDestination {
    /// `HOST/PREFIX`, as the new deployment's `--push-to`.
    pub prefix: String,
    /// How the registry is reached.
    pub registry: RegistryOptions,
}

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// The rows, per table.
    pub rows: CopiedRows,
    /// The images pushed (`HOST/PREFIX/COURSE/NAME:TAG`).
    pub images: Vec<String>,
}

/// Copies the rows of `data_dir`'s SQLite store into `to`, then pushes each
/// tagged image of its `/v2/` to `images` (when given). The service must be
/// stopped: the data directory's lock is taken for the copy.
pub async fn copy_data_dir(
    data_dir: &Path,
    to: &Database,
    images: Option<&ImageDestination>,
) -> Result<CopyReport, ApiError> {
    let _held = super::lock::DataDirLock::take(data_dir)?;
    if !data_dir.join("trousse.db").is_file() {
        return Err(ApiError::bad_request(
            "no_database",
            format!(
                "{} holds no trousse.db: give the --data-dir of the service to copy",
                data_dir.display()
            ),
        ));
    }
    let from = Store::open(&Database::Sqlite(data_dir.to_path_buf())).await?;
    let destination = Store::open(to).await?;
    destination.ensure_empty().await?;
    let mut report = CopyReport::default();
    if let Some(images) = images {
        // pushed first: the rows that name them land only once every image is there
        report.images = push_images(&from, data_dir, images).await?;
    }
    report.rows = from.copy_rows_to(&destination).await?;
    Ok(report)
}

/// Pushes every tag the store serves, from the data directory's blobs.
async fn push_images(
    from: &Store,
    data_dir: &Path,
    to: &ImageDestination,
) -> Result<Vec<String>, ApiError> {
    let blobs = trousse_registry_client::BlobStore::new(data_dir.join("images"));
    let mut pushed = Vec::new();
    for (repository, tag, digest) in from.all_tags().await? {
        let media_type = from
            .repository_blob(&repository, &digest)
            .await?
            .flatten()
            .unwrap_or_else(|| MediaType::ImageManifest.to_string());
        let parsed: trousse_registry_client::Digest = digest
            .parse()
            .map_err(|e| ApiError::Internal(format!("the stored digest {digest}: {e}")))?;
        let size = blobs.size(&parsed).map_err(|e| {
            ApiError::Internal(format!(
                "{repository}:{tag} is not whole in {} ({e}): nothing was copied",
                blobs.root().display()
            ))
        })?;
        let root = DescriptorBuilder::default()
            .media_type(MediaType::from(media_type.as_str()))
            .digest(
                digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| ApiError::Internal(format!("the stored digest {digest}: {e}")))?,
            )
            .size(size)
            .build()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let image = Image {
            blobs: blobs.clone(),
            root,
        };
        let target = format!("{}/{repository}:{tag}", to.prefix.trim_end_matches('/'));
        let reference = ImageRef::Registry {
            reference: target.clone(),
        };
        publish(&image, &reference, &to.registry, &[])
            .await
            .map_err(|e| ApiError::Upstream(format!("pushing {target}: {e}")))?;
        pushed.push(target);
    }
    Ok(pushed)
}
