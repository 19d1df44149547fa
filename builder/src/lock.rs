//! The lock stage: the hinge of the pipeline. Everything after it is a pure
//! function of the lock and the build settings.

use std::path::Path;

use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord, Subdir};
use rattler_lock::{LockFile, PlatformData, PlatformName, DEFAULT_ENVIRONMENT_NAME};
use sha2::{Digest, Sha256};

use crate::error::clip;

use crate::{
    channel_url::{check_record, ChannelUrl, UrlError},
    solve::SolvedPlatform,
    spec::{parse_virtual_package, EnvSpec},
    BuildError,
};

/// The largest lock file read, in bytes (a 2,000-package lock is a few megabytes).
pub const MAX_LOCK_BYTES: u64 = 64 << 20;

/// A locked environment: exact packages per platform.
#[derive(Debug, Clone)]
pub struct Lock {
    /// The lock file's text, as written to disk and into the image.
    pub text: String,
    /// The locked packages per platform, in lock order.
    pub platforms: Vec<SolvedPlatform>,
    /// The channels the lock declares, as URLs.
    pub channels: Vec<ChannelUrl>,
}

impl Lock {
    /// Builds a lock from solved platforms.
    pub fn from_solved(spec: &EnvSpec, solved: Vec<SolvedPlatform>) -> Result<Self, BuildError> {
        let lock_err = |message: String| BuildError::Lock {
            path: spec.path.clone(),
            message,
        };
        let platform_data = solved
            .iter()
            .map(|s| PlatformData {
                name: PlatformName::from(&s.platform),
                subdir: s.platform,
                virtual_packages: s
                    .virtual_packages
                    .iter()
                    .map(format_virtual_package)
                    .collect(),
            })
            .collect();
        let mut builder = LockFile::builder()
            .with_platforms(platform_data)
            .map_err(|e| lock_err(e.to_string()))?
            .with_channels(
                DEFAULT_ENVIRONMENT_NAME,
                spec.channels
                    .iter()
                    .map(|c| rattler_lock::Channel::from(c.base_url.to_string())),
            );
        for platform in &solved {
            let name = platform.platform.to_string();
            for record in &platform.records {
                builder
                    .add_conda_package(DEFAULT_ENVIRONMENT_NAME, &name, record.clone().into())
                    .map_err(|e| lock_err(e.to_string()))?;
            }
        }
        let file = builder.finish();
        let text = file
            .render_to_string()
            .map_err(|e| lock_err(format!("cannot render the lock: {e}")))?;
        // Read back what was written, so that a build from the spec and a
        // build from the written lock see exactly the same records.
        Self::from_text(&text, &spec.path)
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
        let lock_err = |message: String| BuildError::Lock {
            path: path.to_path_buf(),
            message,
        };
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
        let channels = declared_channels(env.channels(), path)?;
        let mut platforms = Vec::new();
        for platform in env.platforms() {
            let virtual_packages = platform
                .virtual_packages()
                .iter()
                .map(|v| parse_virtual_package(v).map_err(&lock_err))
                .collect::<Result<Vec<_>, _>>()?;
            let mut records = env
                .conda_repodata_records(platform)
                .map_err(|e| lock_err(e.to_string()))?
                .unwrap_or_default();
            if env
                .pypi_packages(platform)
                .is_some_and(|mut p| p.next().is_some())
            {
                return Err(lock_err(
                    "it has PyPI packages, which trousse does not install yet".into(),
                ));
            }
            records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
            for record in &records {
                if record.package_record.sha256.is_none() {
                    return Err(lock_err(format!(
                        "package {} has no sha256: trousse needs one to verify and cache it",
                        record.identifier
                    )));
                }
            }
            platforms.push(SolvedPlatform {
                platform: platform.subdir(),
                virtual_packages,
                records,
            });
        }
        if platforms.is_empty() {
            return Err(lock_err("it locks no platform".into()));
        }
        platforms.sort_by_key(|p| p.platform.to_string());
        Ok(Self {
            text: text.to_string(),
            platforms,
            channels,
        })
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

    /// The sha256 of the lock text: the identity of the environment.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }

    /// The locked packages of one platform.
    pub fn platform(&self, platform: Subdir) -> Option<&SolvedPlatform> {
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

/// A record's build time in seconds since the epoch.
pub fn record_timestamp(record: &RepoDataRecord) -> Option<i64> {
    record
        .package_record
        .timestamp
        .as_ref()
        .map(|t| t.timestamp())
}

fn format_virtual_package(p: &GenericVirtualPackage) -> String {
    format!(
        "{}={}={}",
        p.name.as_normalized(),
        p.version,
        p.build_string
    )
}

/// The channels a lock declares, as checked URLs (names resolved as conda does).
fn declared_channels(
    declared: &[rattler_lock::Channel],
    path: &Path,
) -> Result<Vec<ChannelUrl>, BuildError> {
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("/"), Path::to_path_buf);
    let config = crate::spec::ChannelConfig::default_with_root_dir(root);
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
    }
    Ok(channels)
}
