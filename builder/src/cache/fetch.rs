//! The fetch stage: packages downloaded, sha256-checked and extracted into
//! rattler's package cache, concurrently.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Instant};

use futures::{StreamExt, TryStreamExt};
use rattler_cache::package_cache::{CacheGlobalLock, PackageCache};
use rattler_conda_types::RepoDataRecord;
use rattler_networking::LazyClient;

use crate::{
    error::error_chain,
    progress::{Event, Reporter, Stage},
    BuildError,
};

/// How many packages are downloaded at once.
pub(crate) const CONCURRENT_DOWNLOADS: usize = 8;

/// Where a fetched package was extracted.
#[derive(Debug, Clone)]
pub(crate) struct FetchedPackage {
    /// The package's record.
    pub record: RepoDataRecord,
    /// The extracted package directory in the package cache.
    pub dir: PathBuf,
}

/// The package caches of one build: one per subdir, so that a package of the
/// same name, version and build on two platforms (`_openmp_mutex-4.5-2_gnu`)
/// is kept twice instead of replacing the other on every alternation.
pub(crate) struct PackageCaches {
    root: PathBuf,
    caches: std::sync::Mutex<HashMap<String, PackageCache>>,
}

impl PackageCaches {
    /// The caches under `root` (`CACHE/packages`).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            caches: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cache of a subdir.
    pub(crate) fn of(&self, subdir: &str) -> PackageCache {
        let mut caches = self
            .caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        caches
            .entry(subdir.to_string())
            .or_insert_with(|| PackageCache::new(self.root.join(subdir)))
            .clone()
    }
}

impl PackageCaches {
    /// Takes the global locks of the caches of `subdirs`, with which rattler
    /// coordinates processes that fill one package cache; held until dropped.
    pub(crate) async fn lock_subdirs<'a>(
        &self,
        subdirs: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<CacheGlobalLock>, BuildError> {
        let subdirs: std::collections::BTreeSet<&str> = subdirs.into_iter().collect();
        let mut locks = Vec::new();
        for subdir in subdirs {
            locks.push(self.of(subdir).acquire_global_lock().await.map_err(|e| {
                BuildError::Io {
                    action: "locking the package cache",
                    path: self.root.join(subdir).join(".cache.lock"),
                    source: std::io::Error::other(error_chain(&e)),
                }
            })?);
        }
        Ok(locks)
    }
}

/// Fetches the packages (in order); already cached packages cost a lookup.
pub(crate) async fn fetch(
    records: Vec<RepoDataRecord>,
    caches: &PackageCaches,
    client: &LazyClient,
    reporter: &Reporter,
) -> Result<Vec<FetchedPackage>, BuildError> {
    let started = Instant::now();
    reporter(&Event::StageStarted {
        stage: Stage::Fetch,
        total: records.len() as u64,
    });
    let _populating = caches
        .lock_subdirs(records.iter().map(|r| r.package_record.subdir.as_str()))
        .await?;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS));
    let fetched = futures::stream::iter(records)
        .map(|record| {
            let cache = caches.of(&record.package_record.subdir);
            fetch_one(record, cache, client, semaphore.clone(), reporter)
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

/// Downloads, checks and extracts one package (or finds it extracted).
async fn fetch_one(
    record: RepoDataRecord,
    cache: PackageCache,
    client: &LazyClient,
    semaphore: Arc<tokio::sync::Semaphore>,
    reporter: &Reporter,
) -> Result<FetchedPackage, BuildError> {
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
            let package = record.identifier.to_string();
            let url = record.url.to_string();
            let corrupt = is_checksum_mismatch(&e) || checksum_differs(&record).await;
            let source = Box::new(e);
            return Err(if corrupt {
                BuildError::Integrity {
                    package,
                    url,
                    source,
                }
            } else {
                BuildError::Fetch {
                    package,
                    url,
                    source,
                }
            });
        }
    };
    reporter(&Event::Progress {
        stage: Stage::Fetch,
        item: record.identifier.to_string(),
        cached: false,
    });
    Ok(FetchedPackage {
        dir: metadata.path().to_path_buf(),
        record,
    })
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
