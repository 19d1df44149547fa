//! Completing a partial lock (conda-lock file, explicit list): each archive is
//! downloaded once, checked against the md5 and/or sha256 the list gives,
//! extracted into the package cache the fetch stage reads, and its record
//! built from its own `info/index.json` with its URL, size, md5 and sha256.
//! The records are then rendered as the canonical lock (`Lock::render`).
//!
//! A completed record is kept in `repodata/trousse-record-KEY.json`, KEY the
//! hash of (URL, checksums given): the same list resolves again without a
//! download, and a list with another checksum is checked afresh.

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
    str::FromStr,
};

use futures::{StreamExt, TryStreamExt};
use rattler_conda_types::{
    package::{IndexJson, PackageFile},
    PackageName, PackageRecord, RepoDataRecord, VersionWithSource,
};
use rattler_digest::{digest::Digest, Md5, Md5Hash, Sha256, Sha256Hash};
use rattler_networking::LazyClient;

use crate::{
    cache::fetch::{PackageCaches, CONCURRENT_DOWNLOADS},
    cache::{mark_used, CacheDir},
    error::error_chain,
    error::ArchiveError,
    guard::beneath::Beneath,
    lockfile::partial::{channel_of, PartialLock, PartialRecord},
    lockfile::LockedPlatform,
    net::{http_client, mirrors::Mirrors},
    progress::timed,
    progress::{Event, Reporter, Stage},
    BuildError, Lock,
};

/// Changes when completed records would differ: older ones are not read.
const RECORD_FORMAT: u32 = 1;

/// The largest `info/index.json` read, in bytes.
const MAX_INDEX_JSON_BYTES: u64 = 4 << 20;

/// A downloaded (or local) archive with its digests.
struct Archive {
    path: PathBuf,
    md5: Md5Hash,
    sha256: Sha256Hash,
    size: u64,
}

/// What completing the records of one lock shares.
struct Completion<'a> {
    cache: &'a CacheDir,
    caches: &'a PackageCaches,
    client: LazyClient,
    file: &'a Path,
    reporter: &'a Reporter,
}

/// Completes every record of `partial` from its archive (platforms already
/// selected) and renders the canonical lock; returns it with the seconds taken.
pub(crate) async fn complete(
    partial: &PartialLock,
    cache_dir: &Path,
    reporter: &Reporter,
    mirrors: &Mirrors,
) -> Result<(Lock, f64), BuildError> {
    partial.check_urls(&partial.channel_urls()?)?;
    let cache = CacheDir::new(cache_dir)?;
    let _shared = cache.lock_shared()?;
    let caches = PackageCaches::new(cache.packages());
    let records = unique_records(partial);
    let _populating = caches
        .lock_subdirs(records.values().map(|r| r.subdir.as_str()))
        .await?;
    let completion = Completion {
        cache: &cache,
        caches: &caches,
        client: http_client(mirrors),
        file: &partial.path,
        reporter,
    };
    let total = records.len() as u64;
    let (completed, seconds) = timed(
        reporter,
        Stage::Fetch,
        total,
        completion.complete_all(records),
    )
    .await?;
    let platforms = partial
        .platforms
        .iter()
        .map(|p| {
            let records = p
                .packages
                .iter()
                .map(|r| completed.get(&record_key(r)).cloned())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| BuildError::Internal("a package was not completed".into()))?;
            Ok(LockedPlatform {
                platform: p.platform,
                virtual_packages: Vec::new(),
                records,
                pypi: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    let lock = Lock::render(&partial.path, &partial.channels, &platforms)?;
    lock.check_own_urls(&partial.path)?;
    Ok((lock, seconds))
}

/// Each package once (a noarch package may be listed for several platforms), by key.
fn unique_records(partial: &PartialLock) -> HashMap<String, PartialRecord> {
    partial
        .platforms
        .iter()
        .flat_map(|p| &p.packages)
        .map(|r| (record_key(r), r.clone()))
        .collect()
}

/// The key of a completed record: the URL and the checksums the lock gives.
fn record_key(record: &PartialRecord) -> String {
    let text = format!(
        "{RECORD_FORMAT}\n{}\n{}\n{}",
        record.url,
        record.md5.map(hex::encode).unwrap_or_default(),
        record.sha256.map(hex::encode).unwrap_or_default()
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Completion<'_> {
    /// Completes the records, 8 at a time.
    async fn complete_all(
        &self,
        records: HashMap<String, PartialRecord>,
    ) -> Result<HashMap<String, RepoDataRecord>, BuildError> {
        futures::stream::iter(records)
            .map(|(key, record)| async move {
                let completed = self.complete_one(&key, &record).await?;
                Ok::<_, BuildError>((key, completed))
            })
            .buffer_unordered(CONCURRENT_DOWNLOADS)
            .try_collect()
            .await
    }

    /// One record: from the cache of completed records, or from its archive.
    async fn complete_one(
        &self,
        key: &str,
        record: &PartialRecord,
    ) -> Result<RepoDataRecord, BuildError> {
        let path = self.record_path(key);
        let cached = read_record(&path);
        let done = match cached.clone() {
            Some(done) => done,
            None => {
                let done = self.read_archive(record).await?;
                write_record(&path, &done)?;
                done
            }
        };
        (self.reporter)(&Event::Progress {
            stage: Stage::Fetch,
            item: record.file_name.to_string(),
            cached: cached.is_some(),
        });
        Ok(done)
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.cache
            .repodata()
            .join(format!("trousse-record-{key}.json"))
    }

    /// Downloads, checks and extracts the archive, then reads its record.
    async fn read_archive(&self, record: &PartialRecord) -> Result<RepoDataRecord, BuildError> {
        let download = self.cache.temp_dir("archive")?;
        let archive = self.download(record, download.path()).await?;
        verify(record, &archive, self.file)?;
        let dir = self.extract(record, &archive).await?;
        completed_record(record, &archive, &dir)
    }

    /// The archive, downloaded into `dir` (a `file://` one is read in place).
    async fn download(&self, record: &PartialRecord, dir: &Path) -> Result<Archive, BuildError> {
        let failed = |reason: String| {
            BuildError::from(ArchiveError::Download {
                package: record.file_name.to_string(),
                url: record.url.to_string(),
                reason,
            })
        };
        let path = if record.url.scheme() == "file" {
            record
                .url
                .to_file_path()
                .map_err(|()| failed("not a local file path".into()))?
        } else {
            let path = dir.join(record.file_name.to_string());
            save(&self.client, &record.url, &path)
                .await
                .map_err(failed)?;
            path
        };
        tokio::task::spawn_blocking(move || digests(path))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))
    }

    /// Extracts the archive into the package cache of its subdir (or finds it there).
    async fn extract(
        &self,
        record: &PartialRecord,
        archive: &Archive,
    ) -> Result<PathBuf, BuildError> {
        let id = &record.file_name.identifier;
        let invalid = |problem: String| invalid(record, problem);
        let name = PackageName::from_str(&id.name).map_err(|e| invalid(e.to_string()))?;
        let version =
            VersionWithSource::from_str(&id.version).map_err(|e| invalid(e.to_string()))?;
        let build = id
            .build_string
            .parse()
            .map_err(|e: _| invalid(format!("{e:?}")))?;
        let mut key = PackageRecord::new(name, version, build);
        key.md5 = Some(archive.md5);
        key.sha256 = Some(archive.sha256);
        let metadata = self
            .caches
            .of(&record.subdir)
            .get_or_fetch_from_path(&archive.path, Some(&key), None)
            .await
            .map_err(|e| BuildError::Fetch {
                package: record.file_name.to_string(),
                url: record.url.to_string(),
                source: Box::new(e),
            })?;
        Ok(metadata.path().to_path_buf())
    }
}

/// Streams `url` into the file `path`.
async fn save(client: &LazyClient, url: &url::Url, path: &Path) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut response = client
        .client()
        .get(url.clone())
        .send()
        .await
        .map_err(|e| error_chain(&e))?
        .error_for_status()
        .map_err(|e| error_chain(&e))?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The md5, sha256 and size of a file, read once.
fn digests(path: PathBuf) -> std::io::Result<Archive> {
    let mut file = std::fs::File::open(&path)?;
    let (mut md5, mut sha256, mut size) = (Md5::new(), Sha256::new(), 0u64);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        md5.update(&buffer[..read]);
        sha256.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(Archive {
        path,
        md5: md5.finalize(),
        sha256: sha256.finalize(),
        size,
    })
}

/// The archive has the checksums the lock gives.
fn verify(record: &PartialRecord, archive: &Archive, file: &Path) -> Result<(), BuildError> {
    let mismatch = |algorithm, expected: String, actual: String| {
        BuildError::from(ArchiveError::Checksum {
            package: record.file_name.to_string(),
            url: record.url.to_string(),
            file: file.to_path_buf(),
            line: record.line,
            algorithm,
            expected,
            actual,
        })
    };
    if let Some(md5) = record.md5.filter(|m| *m != archive.md5) {
        return Err(mismatch("md5", hex::encode(md5), hex::encode(archive.md5)));
    }
    if let Some(sha256) = record.sha256.filter(|s| *s != archive.sha256) {
        return Err(mismatch(
            "sha256",
            hex::encode(sha256),
            hex::encode(archive.sha256),
        ));
    }
    Ok(())
}

fn invalid(record: &PartialRecord, problem: String) -> BuildError {
    BuildError::from(ArchiveError::Invalid {
        package: record.file_name.to_string(),
        url: record.url.to_string(),
        problem,
    })
}

/// The record of an extracted archive: its `info/index.json` (read beneath
/// the package directory), its URL, size and checksums.
fn completed_record(
    record: &PartialRecord,
    archive: &Archive,
    dir: &Path,
) -> Result<RepoDataRecord, BuildError> {
    let index = read_index_json(dir)
        .map_err(|e| invalid(record, format!("its info/index.json cannot be read: {e}")))?;
    let package_record = PackageRecord::from_index_json(
        index,
        Some(archive.size),
        Some(archive.sha256),
        Some(archive.md5),
    )
    .map_err(|e| invalid(record, format!("its info/index.json: {e}")))?;
    let id = &record.file_name.identifier;
    let named = format!(
        "{}-{}-{}",
        package_record.name.as_source(),
        package_record.version,
        package_record.build
    );
    if named != format!("{}-{}-{}", id.name, id.version, id.build_string) {
        return Err(invalid(
            record,
            format!("its info/index.json names {named}"),
        ));
    }
    if package_record.subdir != record.subdir {
        return Err(invalid(
            record,
            format!(
                "its info/index.json gives subdir {}, its URL {}",
                package_record.subdir, record.subdir
            ),
        ));
    }
    Ok(RepoDataRecord {
        package_record,
        identifier: record.file_name.clone(),
        url: record.url.clone(),
        channel: Some(channel_of(&record.url)),
    })
}

fn read_index_json(dir: &Path) -> std::io::Result<IndexJson> {
    let file = Beneath::open(dir)?.open_file(IndexJson::package_path())?;
    let mut text = String::new();
    file.take(MAX_INDEX_JSON_BYTES).read_to_string(&mut text)?;
    <IndexJson as PackageFile>::from_str(&text)
}

fn read_record(path: &Path) -> Option<RepoDataRecord> {
    let record = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    mark_used(path);
    Some(record)
}

fn write_record(path: &Path, record: &RepoDataRecord) -> Result<(), BuildError> {
    let bytes = serde_json::to_vec(record).map_err(|e| BuildError::Io {
        action: "encoding a completed record",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    trousse_registry_client::layout::write_atomically(path, &bytes)?;
    Ok(())
}
