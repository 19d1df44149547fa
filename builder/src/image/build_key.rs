//! The identity of a build: everything that changes the image's bytes (the
//! lock, the image settings, the layer compression and the builder's output
//! format), serialized canonically and hashed. Equal keys give equal images.

use std::{collections::BTreeMap, str::FromStr};

use rattler_conda_types::Subdir;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trousse_registry_client::ImageRef;

use crate::{
    image::layer::Compression,
    settings::{parse_virtual_package, ImageSettings, NotebookUser},
    BuildError,
};

/// The builder's output format. Bump it whenever the same lock, settings and
/// compression would give other image bytes, or the key's serialization changes.
/// 3: the key is computed from [`SettingsRecord`] JSON (2 hashed `Debug` output).
pub const BUILD_FORMAT: u32 = 3;

/// A build's key: 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuildKey(String);

/// What the key hashes, in a fixed field order.
#[derive(Serialize)]
struct KeyInput<'a> {
    format: u32,
    lock_sha256: &'a str,
    settings: SettingsRecord,
    compression: Compression,
}

impl BuildKey {
    /// The key of a build of the lock whose sha256 is `lock_hash`.
    pub fn new(lock_hash: &str, settings: &ImageSettings, compression: Compression) -> Self {
        let input = KeyInput {
            format: BUILD_FORMAT,
            lock_sha256: lock_hash,
            settings: SettingsRecord::from(settings),
            compression,
        };
        // serializing plain strings, numbers, vectors and ordered maps cannot fail
        let canonical = serde_json::to_vec(&input).unwrap_or_default();
        Self(hex::encode(&Sha256::digest(&canonical)[..16]))
    }

    /// The key as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The registry tag that marks a complete push of this build.
    pub fn tag(&self) -> String {
        format!("build-{}", self.0)
    }
}

impl std::fmt::Display for BuildKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Image settings as plain data: the key's canonical form, and how the
/// service stores the settings a build was resolved with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsRecord {
    /// Conda platforms, e.g. `linux-64`.
    pub platforms: Vec<String>,
    /// The base image reference.
    pub base: String,
    /// The in-image prefix.
    pub prefix: String,
    /// The notebook user.
    pub user: UserRecord,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// The command, when set.
    pub command: Option<Vec<String>>,
    /// The entrypoint, when set (absent from the key when not, as before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Virtual packages, `name=version=build`.
    pub virtual_packages: Vec<String>,
}

/// The notebook user as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Group name.
    pub group: String,
    /// Home directory.
    pub home: String,
}

impl From<&ImageSettings> for SettingsRecord {
    fn from(s: &ImageSettings) -> Self {
        Self {
            platforms: s.platforms.iter().map(ToString::to_string).collect(),
            base: s.base.to_string(),
            prefix: s.prefix.clone(),
            user: UserRecord {
                name: s.user.name.clone(),
                uid: s.user.uid,
                gid: s.user.gid,
                group: s.user.group.clone(),
                home: s.user.home(),
            },
            env: s.env.clone(),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            labels: s.labels.clone(),
            virtual_packages: s
                .virtual_packages
                .iter()
                .map(|v| {
                    format!(
                        "{}={}={}",
                        v.name.as_normalized(),
                        v.version,
                        v.build_string
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<SettingsRecord> for ImageSettings {
    type Error = BuildError;

    fn try_from(r: SettingsRecord) -> Result<Self, Self::Error> {
        let platforms = r
            .platforms
            .iter()
            .map(|p| {
                Subdir::from_str(p)
                    .map_err(|_| BuildError::Unsupported(format!("unknown platform '{p}'")))
            })
            .collect::<Result<Vec<Subdir>, _>>()?;
        let virtual_packages = r
            .virtual_packages
            .iter()
            .map(|v| parse_virtual_package(v).map_err(BuildError::Unsupported))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            platforms,
            base: ImageRef::from_str(&r.base)?,
            prefix: r.prefix,
            user: NotebookUser {
                name: r.user.name,
                uid: r.user.uid,
                gid: r.user.gid,
                group: r.user.group,
                home: Some(r.user.home),
            },
            env: r.env,
            command: r.command,
            entrypoint: r.entrypoint,
            labels: r.labels,
            virtual_packages,
            // what the hub needs is in the lock by now
            ..ImageSettings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ImageSettings {
        let mut s = ImageSettings {
            base: ImageRef::Scratch,
            ..ImageSettings::default()
        };
        s.env.insert("COURSE".into(), "intro".into());
        s.virtual_packages
            .push(parse_virtual_package("__glibc=2.39").unwrap());
        s
    }

    #[test]
    fn the_key_of_a_fixed_request_is_pinned() {
        // moving this value means every registry cache tag and service row
        // misses: bump BUILD_FORMAT on purpose, and say so in the changelog
        let key = BuildKey::new(&"ab".repeat(32), &settings(), Compression::Gzip);
        assert_eq!(key.as_str(), "0e15cdd87310294afea85ac74f10bef9");
    }

    #[test]
    fn every_setting_and_the_compression_move_the_key() {
        let base = BuildKey::new("00", &settings(), Compression::Gzip);
        assert_ne!(base, BuildKey::new("01", &settings(), Compression::Gzip));
        assert_ne!(base, BuildKey::new("00", &settings(), Compression::Zstd));
        let mut other = settings();
        other.labels.insert("a".into(), "b".into());
        assert_ne!(base, BuildKey::new("00", &other, Compression::Gzip));
        let mut other = settings();
        other.user.uid = 1001;
        assert_ne!(base, BuildKey::new("00", &other, Compression::Gzip));
    }

    #[test]
    fn settings_survive_their_record() {
        let s = settings();
        let record = SettingsRecord::from(&s);
        let text = serde_json::to_string(&record).unwrap();
        let back: SettingsRecord = serde_json::from_str(&text).unwrap();
        let again = ImageSettings::try_from(back).unwrap();
        assert_eq!(
            BuildKey::new("00", &s, Compression::Gzip),
            BuildKey::new("00", &again, Compression::Gzip)
        );
    }
}
