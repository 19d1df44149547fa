//! The fetch stage: packages downloaded, sha256-checked and extracted into
//! rattler's package cache, concurrently.

use std::{path::PathBuf, sync::Arc, time::Instant};

use futures::{StreamExt, TryStreamExt};
use rattler_cache::package_cache::PackageCache;
use rattler_conda_types::RepoDataRecord;
use rattler_networking::LazyClient;

use crate::{
    error::error_chain,
    progress::{Event, Reporter, Stage},
    BuildError,
};

/// How many packages are downloaded at once.
pub const CONCURRENT_DOWNLOADS: usize = 8;

/// Where a fetched package was extracted.
#[derive(Debug, Clone)]
pub struct FetchedPackage {
    /// The package's record.
    pub record: RepoDataRecord,
    /// The extracted package directory in the package cache.
    pub dir: PathBuf,
}

/// Fetches the packages (in order); already cached packages cost a lookup.
pub async fn fetch(
    records: Vec<RepoDataRecord>,
    cache: &PackageCache,
    client: &LazyClient,
    reporter: &Reporter,
) -> Result<Vec<FetchedPackage>, BuildError> {
    let started = Instant::now();
    reporter(&Event::StageStarted {
        stage: Stage::Fetch,
        total: records.len() as u64,
    });
    // rattler coordinates processes that fill one package cache with its global lock
    let _populating = if records.is_empty() {
        None
    } else {
        Some(
            cache
                .acquire_global_lock()
                .await
                .map_err(|e| BuildError::Io {
                    action: "locking the package cache",
                    path: PathBuf::from("packages/.cache.lock"),
                    source: std::io::Error::other(error_chain(&e)),
                })?,
        )
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS));
    let fetched = futures::stream::iter(records)
        .map(|record| {
            let semaphore = semaphore.clone();
            async move {
                let metadata = cache
                    .get_or_fetch_from_url(
                        &record.package_record,
                        record.url.clone(),
                        client.clone(),
                        None,
                        Some(semaphore),
                    )
                    .await;
                let metadata = match metadata {
                    Ok(m) => m,
                    Err(e) => {
                        let message = error_chain(&e);
                        let package = record.identifier.to_string();
                        let url = record.url.to_string();
                        let corrupt = is_checksum_mismatch(&e) || checksum_differs(&record).await;
                        return Err(if corrupt {
                            BuildError::Integrity {
                                package,
                                url,
                                message,
                            }
                        } else {
                            BuildError::Fetch {
                                package,
                                url,
                                message,
                            }
                        });
                    }
                };
                reporter(&Event::Progress {
                    stage: Stage::Fetch,
                    item: record.identifier.to_string(),
                    cached: false,
                });
                Ok::<_, BuildError>(FetchedPackage {
                    dir: metadata.path().to_path_buf(),
                    record,
                })
            }
        })
        .buffered(CONCURRENT_DOWNLOADS)
        .try_collect()
        .await?;
    reporter(&Event::StageFinished {
        stage: Stage::Fetch,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(fetched)
}

/// Whether rattler refused the package because its sha256 is not the record's.
fn is_checksum_mismatch(error: &(dyn std::error::Error + 'static)) -> bool {
    use rattler_package_streaming::ExtractError;
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(ExtractError::HashMismatch { .. }) = e.downcast_ref::<ExtractError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether the package at the record's URL is readable and hashes to
/// something other than the record's sha256.
async fn checksum_differs(record: &RepoDataRecord) -> bool {
    use sha2::{Digest, Sha256};
    let Some(expected) = record.package_record.sha256 else {
        return false;
    };
    let bytes = if record.url.scheme() == "file" {
        match record.url.to_file_path() {
            Ok(path) => tokio::fs::read(path).await.ok(),
            Err(()) => None,
        }
    } else {
        match reqwest::get(record.url.clone()).await {
            Ok(r) if r.status().is_success() => r.bytes().await.ok().map(|b| b.to_vec()),
            _ => None,
        }
    };
    bytes.is_some_and(|b| Sha256::digest(&b).as_slice() != expected.as_slice())
}
