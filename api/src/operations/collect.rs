//! Garbage collection of the service's image store (`DATA/images`): versions
//! of course environments beyond the newest kept, the images nothing refers
//! to any more, and the blob files no recorded image holds. A dry run by
//! default (`trousse images gc`), and periodic in `serve`. Never races a
//! build: a blob file younger than `min_age` is kept (a build imports its
//! blobs before it records its image).

use std::{path::Path, time::Duration};

use trousse_registry_client::BlobStore;

use crate::{error::ApiError, store::Store};

/// What a collection found, and removed unless it was a dry run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Collected {
    /// Versions beyond those kept (no longer restorable once removed).
    pub versions: usize,
    /// Images nothing refers to.
    pub images: usize,
    /// Blob files no recorded image holds.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Whether it only looked.
    pub dry_run: bool,
}

/// How a collection runs.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    /// Versions of a course environment kept (its current one always is; exams keep all).
    pub keep_versions: i64,
    /// Blob files younger than this are kept whatever they are.
    pub min_age: Duration,
    /// Remove, or only report.
    pub delete: bool,
}

/// Collects the image store of `data_dir` against `store`'s rows.
pub async fn collect(
    store: &Store,
    data_dir: &Path,
    how: Collection,
) -> Result<Collected, ApiError> {
    let mut collected = Collected {
        dry_run: !how.delete,
        ..Collected::default()
    };
    let versions = store.versions_beyond(how.keep_versions.max(1)).await?;
    collected.versions = versions.len();
    if how.delete {
        store.forget_versions(&versions).await?;
    }
    let blobs = BlobStore::new(data_dir.join("images"));
    // an image recorded a moment ago may be a build's whose environment is not
    // marked ready yet: only images whose manifest is older than min_age go
    let mut images = store.unreferenced_images().await?;
    images.retain(|digest| {
        digest
            .parse()
            .map(|d| !is_young(&blobs.path(&d), how.min_age))
            .unwrap_or(false)
    });
    collected.images = images.len();
    if how.delete {
        store.forget_images(&images).await?;
    }
    // in a dry run, what the forgotten images alone held counts too
    let mut kept = store.kept_blobs().await?;
    if !how.delete {
        kept = without_images(store, kept, &images).await?;
    }
    let (count, bytes) = sweep(&blobs, &kept, how.min_age, how.delete)?;
    (collected.blobs, collected.bytes) = (count, bytes);
    Ok(collected)
}

/// The kept blobs once `images` are gone (for a dry run's count).
async fn without_images(
    store: &Store,
    kept: std::collections::HashSet<String>,
    images: &[String],
) -> Result<std::collections::HashSet<String>, ApiError> {
    if images.is_empty() {
        return Ok(kept);
    }
    let remaining = store.blobs_without(images).await?;
    Ok(kept.into_iter().filter(|b| remaining.contains(b)).collect())
}

/// Whether a file was written less than `min_age` ago (or cannot be told).
fn is_young(path: &Path, min_age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_none_or(|age| age < min_age)
}

/// Removes (or counts) the blob files not in `kept` and older than `min_age`.
fn sweep(
    blobs: &BlobStore,
    kept: &std::collections::HashSet<String>,
    min_age: Duration,
    delete: bool,
) -> Result<(usize, u64), ApiError> {
    let dir = blobs.root().join("blobs").join("sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok((0, 0));
    };
    let (mut count, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        let young = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age < min_age);
        if !meta.is_file() || young || kept.contains(&format!("sha256:{name}")) {
            continue;
        }
        if delete {
            std::fs::remove_file(entry.path()).map_err(|e| {
                ApiError::Internal(format!("removing {}: {e}", entry.path().display()))
            })?;
        }
        count += 1;
        bytes += meta.len();
    }
    Ok((count, bytes))
}

/// Collects the image store of `data_dir` (the CLI), the rows in `database`.
pub async fn collect_images(
    database: &crate::store::Database,
    data_dir: &Path,
    how: Collection,
) -> Result<Collected, ApiError> {
    collect(&Store::open(database).await?, data_dir, how).await
}

/// Collects every `interval` in the background, for real (`serve --gc-interval`).
pub(crate) fn every(
    store: Store,
    data_dir: std::path::PathBuf,
    interval: Duration,
    keep_versions: i64,
) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let how = Collection {
                keep_versions,
                min_age: Duration::from_secs(3600),
                delete: true,
            };
            match collect(&store, &data_dir, how).await {
                Ok(done) => tracing::info!(?done, "image store collected"),
                Err(e) => tracing::warn!("collecting the image store: {e}"),
            }
        }
    });
}
