//! Channel mirrors: a channel a spec names (`conda-forge`) fetched from a
//! site's own mirror. What is named, allowed, locked and written into the
//! image stays the channel's own URL; only the requests go to the mirror
//! (rattler's mirror middleware rewrites them), so an image built through a
//! mirror is byte-identical to one built from the origin.

use std::{collections::BTreeMap, path::Path};

use rattler_networking::{mirror_middleware::Mirror, MirrorMiddleware};
use url::Url;

use crate::net::channel_url::{resolve_channel, ChannelConfig};

/// Mirrors by channel URL (each with a trailing slash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors(BTreeMap<Url, Vec<Url>>);

/// `url` with a trailing slash: a prefix that joins below it.
fn with_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

impl Mirrors {
    /// Adds a mirror given as `NAME_OR_URL=URL` (`conda-forge=https://mirror.example/conda-forge`).
    pub fn add_flag(&mut self, text: &str) -> Result<(), String> {
        let (channel, mirror) = text.split_once('=').ok_or_else(|| {
            format!("'{text}' is not CHANNEL=MIRROR_URL (e.g. conda-forge=https://mirror.example/conda-forge)")
        })?;
        let config = ChannelConfig::default_with_root_dir(std::path::PathBuf::from("/"));
        let channel = resolve_channel(channel.trim(), &config)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("'{channel}' names no channel"))?;
        let mirror = Url::parse(mirror.trim())
            .map_err(|e| format!("mirror '{mirror}' of {channel:?} is not a URL: {e}"))?;
        if crate::net::credentials::find(mirror.as_str()).is_some() {
            return Err(format!(
                "mirror {} carries credentials: put them in rattler's authentication file (RATTLER_AUTH_FILE)",
                crate::net::credentials::scrub(mirror.as_str())
            ));
        }
        self.add(Url::from(channel.base_url.clone()), mirror);
        Ok(())
    }

    /// Adds the `[mirrors]` of a rattler or pixi configuration file (`config.toml`).
    pub fn add_config_file(&mut self, path: &Path) -> Result<(), String> {
        let config = rattler_config::config::ConfigBase::<rattler_config::config::NoExtension>::load_from_files([path])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for (channel, mirrors) in &config.mirrors {
            for mirror in mirrors {
                self.add(channel.clone(), mirror.clone());
            }
        }
        Ok(())
    }

    fn add(&mut self, channel: Url, mirror: Url) {
        self.0
            .entry(with_slash(channel))
            .or_default()
            .push(with_slash(mirror));
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The middleware that sends a channel's requests to its mirrors.
    pub(crate) fn middleware(&self) -> MirrorMiddleware {
        MirrorMiddleware::from_map(
            self.0
                .iter()
                .map(|(channel, mirrors)| {
                    let mirrors = mirrors
                        .iter()
                        .map(|url| Mirror {
                            url: url.clone(),
                            no_zstd: false,
                            no_bz2: false,
                            max_failures: None,
                        })
                        .collect();
                    (channel.clone(), mirrors)
                })
                .collect(),
        )
    }

    /// The mirrors, as `channel -> mirror, …` lines (for messages and logs).
    pub fn describe(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(channel, mirrors)| {
                let shown: Vec<&str> = mirrors.iter().map(Url::as_str).collect();
                format!("{channel} -> {}", shown.join(", "))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_resolve_and_mirrors_end_with_a_slash() {
        let mut mirrors = Mirrors::default();
        mirrors
            .add_flag("conda-forge=http://127.0.0.1:8000/cf")
            .unwrap();
        assert_eq!(
            mirrors.describe(),
            ["https://conda.anaconda.org/conda-forge/ -> http://127.0.0.1:8000/cf/"]
        );
        assert!(mirrors.add_flag("conda-forge").is_err());
        assert!(mirrors
            .add_flag("conda-forge=https://u:p@m.example/cf")
            .unwrap_err()
            .contains("credentials"));
    }
}
