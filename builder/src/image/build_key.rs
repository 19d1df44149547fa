//! The identity of a build: everything that changes the image's bytes (the
//! lock, the image settings, the layer compression and the builder's output
//! format), serialized canonically and hashed. Equal keys give equal images.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    image::layer::Compression,
    settings::{ImageSettings, SettingsRecord},
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse_virtual_package;
    use trousse_registry_client::ImageRef;

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
