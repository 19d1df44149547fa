//! The lock stage: the hinge of the pipeline. Everything after it is a pure
//! function of the lock and the build settings.

pub(crate) mod complete;
pub(crate) mod conda_lock;
pub(crate) mod explicit;
pub(crate) mod partial;

use std::path::Path;

use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord, Subdir};
use rattler_lock::{LockFile, PlatformData, PlatformName, DEFAULT_ENVIRONMENT_NAME};
use sha2::{Digest, Sha256};

use crate::{error::clip, pypi::LockedWheel};

use crate::{
    net::channel_url::{check_record, ChannelUrl, UrlError},
    settings::parse_virtual_package,
    BuildError,
};

/// The comment line of a lock file that carries its image settings.
const SETTINGS_COMMENT: &str = "# trousse-settings: ";

/// The image settings a lock file carries (see [`Lock::write_with_settings`]), if any.
pub fn settings_of(text: &str, path: &Path) -> Result<Option<crate::ImageSettings>, BuildError> {
    let Some(json) = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(SETTINGS_COMMENT))
    else {
        return Ok(None);
    };
    let record: crate::SettingsRecord =
        serde_json::from_str(json).map_err(|e| BuildError::Lock {
            path: path.to_path_buf(),
            message: format!("its trousse-settings line: {e}"),
        })?;
    crate::ImageSettings::try_from(record).map(Some)
}

/// The largest lock file read, in bytes (a 2,000-package lock is a few megabytes).
pub(crate) const MAX_LOCK_BYTES: u64 = 64 << 20;

/// One platform of a lock: what a solve returns and a lock records.
#[derive(Debug, Clone)]
pub struct LockedPlatform {
    /// The platform.
    pub platform: Subdir,
    /// The virtual packages the solve assumed the target has.
    pub virtual_packages: Vec<GenericVirtualPackage>,
    /// The packages, sorted by name.
    pub records: Vec<RepoDataRecord>,
    /// The wheels installed over them, sorted by name.
    pub pypi: Vec<crate::pypi::LockedWheel>,
}

/// A locked environment: exact packages per platform.
#[derive(Debug, Clone)]
pub struct Lock {
    /// The lock file's text, as written to disk and into the image.
    pub text: String,
    /// The locked packages per platform, in lock order.
    pub platforms: Vec<LockedPlatform>,
    /// The channels the lock declares, as URLs.
    pub channels: Vec<ChannelUrl>,
}

impl Lock {
    /// The canonical lock of these packages, whatever they were read from (a
    /// solve, a rattler lock, a conda-lock file, an explicit list): one
    /// `default` environment, the channels as URLs, no virtual packages, and
    /// each record as its archive describes it ([`canonical_record`]). It is
    /// rendered, then read back, so that a build from it and a build from the
    /// written file see exactly the same records.
    pub(crate) fn render(
        path: &Path,
        channels: &[String],
        platforms: &[LockedPlatform],
    ) -> Result<Self, BuildError> {
        let lock_err = |message: String| BuildError::Lock {
            path: path.to_path_buf(),
            message,
        };
        let platform_data = platforms
            .iter()
            .map(|s| PlatformData {
                name: PlatformName::from(&s.platform),
                subdir: s.platform,
                virtual_packages: Vec::new(),
            })
            .collect();
        let mut builder = LockFile::builder()
            .with_platforms(platform_data)
            .map_err(|e| lock_err(e.to_string()))?
            .with_channels(
                DEFAULT_ENVIRONMENT_NAME,
                channels
                    .iter()
                    .map(|c| rattler_lock::Channel::from(c.clone())),
            );
        for platform in platforms {
            let name = platform.platform.to_string();
            let mut records: Vec<RepoDataRecord> =
                platform.records.iter().map(canonical_record).collect();
            records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
            for record in records {
                builder
                    .add_conda_package(DEFAULT_ENVIRONMENT_NAME, &name, record.into())
                    .map_err(|e| lock_err(e.to_string()))?;
            }
            for wheel in &platform.pypi {
                builder
                    .add_pypi_package(DEFAULT_ENVIRONMENT_NAME, &name, wheel.to_lock())
                    .map_err(|e| lock_err(e.to_string()))?;
            }
        }
        if let Some(indexes) = pypi_indexes(platforms) {
            builder.set_pypi_indexes(DEFAULT_ENVIRONMENT_NAME, indexes);
        }
        let text = builder
            .finish()
            .render_to_string()
            .map_err(|e| lock_err(format!("cannot render the lock: {e}")))?;
        Ok(Self::parse(&text, path, DEFAULT_ENVIRONMENT_NAME)?.0)
    }

    /// Reads a rattler lock and renders it canonically (see [`Lock::render`]):
    /// what the CLI builds from a lock file, so that the same packages build the
    /// same image whichever format listed them.
    pub fn canonical(text: &str, path: &Path, environment: &str) -> Result<Self, BuildError> {
        let (lock, channels) = Self::parse(text, path, environment)?;
        Self::render(path, &channels, &lock.platforms)
    }

    /// Reads a lock file.
    pub fn from_path(path: &Path) -> Result<Self, BuildError> {
        let size = std::fs::metadata(path)
            .map_err(BuildError::io("reading lock file", path))?
            .len();
        if size > MAX_LOCK_BYTES {
            return Err(BuildError::Lock {
                path: path.to_path_buf(),
                message: format!("it has {size} bytes; at most {MAX_LOCK_BYTES} are read"),
            });
        }
        let text =
            std::fs::read_to_string(path).map_err(BuildError::io("reading lock file", path))?;
        Self::from_text(&text, path)
    }

    /// Parses lock text; `path` is only used in error messages.
    pub fn from_text(text: &str, path: &Path) -> Result<Self, BuildError> {
        Self::from_text_in(text, path, DEFAULT_ENVIRONMENT_NAME)
    }

    /// Parses lock text and takes one of its environments (pixi locks have several).
    pub fn from_text_in(text: &str, path: &Path, environment: &str) -> Result<Self, BuildError> {
        Ok(Self::parse(text, path, environment)?.0)
    }

    /// Parses lock text as it is; also returns its channels as rattler renders them.
    fn parse(
        text: &str,
        path: &Path,
        environment: &str,
    ) -> Result<(Self, Vec<String>), BuildError> {
        let lock_err = |message: String| BuildError::Lock {
            path: path.to_path_buf(),
            message,
        };
        if let Some(line) = crate::guard::yaml::too_deep(text) {
            return Err(lock_err(crate::guard::yaml::refusal(line)));
        }
        let file = LockFile::from_str_with_base_directory(text, path.parent())
            .map_err(|e| lock_err(crate::error::error_chain(&e)))?;
        let env = file.environment(environment).ok_or_else(|| {
            let mut names: Vec<&str> = file.environments().map(|(name, _)| name).collect();
            names.sort_unstable();
            lock_err(format!(
                "it has no environment '{}' (it has: {}); choose one with --environment",
                clip(environment, 80),
                names.join(", ")
            ))
        })?;
        let (names, channels) = declared_channels(env.channels(), path)?;
        let mut platforms = env
            .platforms()
            .map(|platform| read_platform(&env, platform, path))
            .collect::<Result<Vec<_>, _>>()?;
        if platforms.is_empty() {
            return Err(lock_err("it locks no platform".into()));
        }
        platforms.sort_by_key(|p| p.platform.to_string());
        let lock = Self {
            text: text.to_string(),
            platforms,
            channels,
        };
        Ok((lock, names))
    }

    /// Checks that every package URL lies in a channel of `channels` and is its
    /// record's channel, subdir and file name.
    pub fn check_urls(&self, channels: &[ChannelUrl]) -> Result<(), (String, UrlError)> {
        for platform in &self.platforms {
            for record in &platform.records {
                check_record(record, channels).map_err(|e| (record.identifier.to_string(), e))?;
            }
        }
        Ok(())
    }

    /// Checks every package URL against the channels the lock itself declares
    /// (what the CLI does before building a lock it did not solve).
    pub fn check_own_urls(&self, path: &Path) -> Result<(), BuildError> {
        self.check_urls(&self.channels)
            .map_err(|(package, e)| BuildError::Lock {
                path: path.to_path_buf(),
                message: format!(
                    "package {package}: {e}; a lock may only fetch from the channels it declares"
                ),
            })
    }

    /// Writes the lock file atomically.
    pub fn write(&self, path: &Path) -> Result<(), BuildError> {
        trousse_registry_client::layout::write_atomically(path, self.text.as_bytes())?;
        Ok(())
    }

    /// Writes the lock with the image settings it was solved with (base,
    /// command, user, labels…), as a comment after the canonical lock: the
    /// image embeds the lock alone, and `trousse build` of this file makes
    /// the image its spec makes.
    pub fn write_with_settings(
        &self,
        path: &Path,
        settings: &crate::ImageSettings,
    ) -> Result<(), BuildError> {
        let record = serde_json::to_string(&crate::SettingsRecord::from(settings))
            .map_err(|e| BuildError::Internal(format!("the image settings as JSON: {e}")))?;
        let text = format!(
            "{}# The image settings of the spec this lock was solved from (trousse build uses them):\n{SETTINGS_COMMENT}{record}\n",
            self.text
        );
        trousse_registry_client::layout::write_atomically(path, text.as_bytes())?;
        Ok(())
    }

    /// The sha256 of the lock text: the identity of the environment.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }

    /// The locked packages of one platform.
    pub fn platform(&self, platform: Subdir) -> Option<&LockedPlatform> {
        self.platforms.iter().find(|p| p.platform == platform)
    }

    /// The newest package build time in the lock, in seconds since the epoch.
    pub fn newest_timestamp(&self) -> i64 {
        self.platforms
            .iter()
            .flat_map(|p| p.records.iter())
            .filter_map(record_timestamp)
            .max()
            .unwrap_or(0)
    }
}

/// The indexes the locked wheels were found on, when there are wheels.
fn pypi_indexes(platforms: &[LockedPlatform]) -> Option<rattler_lock::PypiIndexes> {
    let wheels: Vec<&LockedWheel> = platforms.iter().flat_map(|p| &p.pypi).collect();
    if wheels.is_empty() {
        return None;
    }
    let indexes: std::collections::BTreeSet<url::Url> =
        wheels.iter().filter_map(|w| w.index.clone()).collect();
    Some(rattler_lock::PypiIndexes {
        indexes: indexes.into_iter().collect(),
        find_links: Vec::new(),
    })
}

/// A record's build time in seconds since the epoch.
pub(crate) fn record_timestamp(record: &RepoDataRecord) -> Option<i64> {
    record
        .package_record
        .timestamp
        .as_ref()
        .map(|t| t.timestamp())
}

/// The locked packages of one platform of a lock's environment.
fn read_platform(
    env: &rattler_lock::Environment<'_>,
    platform: rattler_lock::Platform<'_>,
    path: &Path,
) -> Result<LockedPlatform, BuildError> {
    let lock_err = |message: String| BuildError::Lock {
        path: path.to_path_buf(),
        message,
    };
    let virtual_packages = platform
        .virtual_packages()
        .iter()
        .map(|v| parse_virtual_package(v).map_err(&lock_err))
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = env
        .conda_repodata_records(platform)
        .map_err(|e| lock_err(e.to_string()))?
        .unwrap_or_default();
    let mut pypi = env
        .pypi_packages(platform)
        .into_iter()
        .flatten()
        .map(|p| LockedWheel::from_lock(p).map_err(|m| lock_err(format!("PyPI package {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    pypi.sort_by(|a, b| a.name.cmp(&b.name));
    records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
    if let Some(record) = records.iter().find(|r| r.package_record.sha256.is_none()) {
        return Err(lock_err(format!(
            "package {} has no sha256: trousse needs one to verify and cache it",
            record.identifier
        )));
    }
    Ok(LockedPlatform {
        platform: platform.subdir(),
        virtual_packages,
        records,
        pypi,
    })
}

/// A record as its archive describes it: what the channel's indexer adds
/// (`indexed_timestamp`, and `run_exports`, which only some indexes copy from
/// the archive) is dropped, so that a record read from repodata and one
/// completed from the archive's `info/index.json` are the same.
pub(crate) fn canonical_record(record: &RepoDataRecord) -> RepoDataRecord {
    let mut record = record.clone();
    record.package_record.indexed_timestamp = None;
    record.package_record.run_exports = None;
    record
}

/// The channels a lock declares, as rattler renders them and as checked URLs
/// (names resolved as conda does).
fn declared_channels(
    declared: &[rattler_lock::Channel],
    path: &Path,
) -> Result<(Vec<String>, Vec<ChannelUrl>), BuildError> {
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("/"), Path::to_path_buf);
    let config = crate::net::channel_url::ChannelConfig::default_with_root_dir(root);
    let mut names = Vec::new();
    let mut channels = Vec::new();
    for channel in declared {
        let resolved =
            rattler_conda_types::Channel::from_str(&channel.url, &config).map_err(|e| {
                BuildError::Lock {
                    path: path.to_path_buf(),
                    message: format!("invalid channel '{}': {e}", clip(&channel.url, 200)),
                }
            })?;
        channels.push(ChannelUrl::parse(resolved.base_url.as_str()).map_err(|e| {
            BuildError::Lock {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?);
        names.push(resolved.base_url.to_string());
    }
    Ok((names, channels))
}
