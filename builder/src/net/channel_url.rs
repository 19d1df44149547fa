//! Channel and package URLs compared as parsed, decoded, normalised URLs:
//! scheme, host, port and path segments after percent-decoding. A `.` or `..`
//! segment (encoded or not), an encoded `/`, a `\` or a NUL is refused outright,
//! so that what is checked is what a channel server will serve.

use percent_encoding::percent_decode_str;
use rattler_conda_types::{Channel, RepoDataRecord};
use url::Url;

use crate::error::clip;

/// A channel URL, parsed and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelUrl {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
    segments: Vec<String>,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{url} is not a valid URL: {reason}")]
    Invalid {
        /// The URL (cut when long).
        url: String,
        /// Why.
        reason: String,
    },
    /// A path segment that is `.` or `..` once decoded.
    #[error("{url} has a '.' or '..' path segment (encoded or not): refused")]
    DotSegment {
        /// The URL (cut when long).
        url: String,
    },
    /// A path segment holding `\`, or `/` or NUL once decoded.
    #[error("{url} has a '\\', an encoded '/' or a NUL in a path segment: refused")]
    Separator {
        /// The URL (cut when long).
        url: String,
    },
    /// A query or a fragment, which no channel or package URL has.
    #[error("{url} has a query or a fragment: a channel or package URL has neither")]
    QueryOrFragment {
        /// The URL (cut when long).
        url: String,
    },
    /// A package outside every allowed channel.
    #[error("package {url} is not from an allowed channel (allowed: {allowed})")]
    NotAllowed {
        /// The URL (cut when long).
        url: String,
        /// The allowed channels.
        allowed: String,
    },
    /// A package URL that is not its record's channel, subdir and file name.
    #[error("package {url} does not match its record: expected {expected}")]
    Mismatch {
        /// The URL (cut when long).
        url: String,
        /// What the record says it should be.
        expected: String,
    },
}

fn shown(url: &str) -> String {
    clip(url, 300).into_owned()
}

impl ChannelUrl {
    /// Parses and checks a URL.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url = Url::parse(text).map_err(|e| UrlError::Invalid {
            url: shown(text),
            reason: e.to_string(),
        })?;
        if text.contains(['?', '#']) || url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::QueryOrFragment { url: shown(text) });
        }
        // the raw path, before the URL parser resolves dot segments away
        let raw_path = text
            .split_once("://")
            .map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
            .unwrap_or_else(|| url.path());
        let segments = decoded_segments(text, raw_path)?;
        let normalised = decoded_segments(text, url.path())?;
        if segments != normalised {
            return Err(UrlError::DotSegment { url: shown(text) });
        }
        Ok(Self {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str().map(str::to_ascii_lowercase),
            port: url.port_or_known_default(),
            segments,
        })
    }

    /// Whether `other` is this URL or lies beneath it.
    pub fn contains(&self, other: &ChannelUrl) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && other.segments.starts_with(&self.segments)
    }

    /// The path segments of `other` below this URL, when it lies beneath it.
    fn rest<'a>(&self, other: &'a ChannelUrl) -> Option<&'a [String]> {
        self.contains(other)
            .then(|| &other.segments[self.segments.len()..])
    }

    /// Whether this is a `file://` URL.
    pub fn is_local(&self) -> bool {
        self.scheme == "file"
    }
}

impl std::fmt::Display for ChannelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(host) = &self.host {
            f.write_str(host)?;
        }
        let default = matches!(
            (self.scheme.as_str(), self.port),
            ("https", Some(443)) | ("http", Some(80))
        );
        if let (Some(port), false) = (self.port, default) {
            write!(f, ":{port}")?;
        }
        for segment in &self.segments {
            write!(f, "/{segment}")?;
        }
        f.write_str("/")
    }
}

/// The non-empty path segments, percent-decoded and checked.
fn decoded_segments(url: &str, path: &str) -> Result<Vec<String>, UrlError> {
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        if raw.contains('\\') {
            return Err(UrlError::Separator { url: shown(url) });
        }
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| UrlError::Invalid {
                url: shown(url),
                reason: "a path segment is not UTF-8 once decoded".into(),
            })?;
        if decoded == "." || decoded == ".." {
            return Err(UrlError::DotSegment { url: shown(url) });
        }
        if decoded.contains(['/', '\\', '\0']) {
            return Err(UrlError::Separator { url: shown(url) });
        }
        segments.push(decoded.into_owned());
    }
    Ok(segments)
}

/// The allowed channel a package URL lies under, with the rest of its path.
fn under<'a>(
    url: &ChannelUrl,
    text: &str,
    channels: &'a [ChannelUrl],
) -> Result<&'a ChannelUrl, UrlError> {
    channels
        .iter()
        .filter(|c| c.contains(url))
        .max_by_key(|c| c.segments.len())
        .ok_or_else(|| UrlError::NotAllowed {
            url: shown(text),
            allowed: list(channels),
        })
}

/// The channels, for a message.
pub fn list(channels: &[ChannelUrl]) -> String {
    if channels.is_empty() {
        return "none".into();
    }
    channels
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a package URL named by a spec (`http://…/SUBDIR/FILE`): it must lie
/// in a subdir of one of `channels`.
pub fn check_package_url(text: &str, channels: &[ChannelUrl]) -> Result<(), UrlError> {
    let url = ChannelUrl::parse(text)?;
    let channel = under(&url, text, channels)?;
    match channel.rest(&url) {
        Some([_subdir, _file]) => Ok(()),
        _ => Err(UrlError::Mismatch {
            url: shown(text),
            expected: format!("{channel}SUBDIR/FILE"),
        }),
    }
}

/// Checks a locked package: its URL lies under one of `channels`, under the
/// record's own channel when it names one, and ends in its subdir and file name.
pub fn check_record(record: &RepoDataRecord, channels: &[ChannelUrl]) -> Result<(), UrlError> {
    let text = record.url.as_str();
    let url = ChannelUrl::parse(text)?;
    let allowed = under(&url, text, channels)?;
    let channel = match &record.channel {
        Some(c) if c.contains("://") => {
            let own = ChannelUrl::parse(c)?;
            if !allowed.contains(&own) {
                return Err(UrlError::NotAllowed {
                    url: shown(c),
                    allowed: list(channels),
                });
            }
            own
        }
        _ => allowed.clone(),
    };
    let subdir = &record.package_record.subdir;
    let file = record.identifier.to_string();
    // older locks give noarch packages the platform's subdir: noarch/ is theirs too
    match channel.rest(&url) {
        Some([s, f]) if (s == subdir || s == "noarch") && *f == file => Ok(()),
        _ => Err(UrlError::Mismatch {
            url: shown(text),
            expected: format!("{channel}{subdir}/{file}"),
        }),
    }
}

/// How channel names resolve to URLs (rattler's).
pub use rattler_conda_types::ChannelConfig;

/// Turns a channel entry of a spec into channels; `nodefaults` yields none.
pub fn resolve_channel(name: &str, config: &ChannelConfig) -> Result<Vec<Channel>, String> {
    let from_url =
        |u: &str| Channel::from_str(u, config).map_err(|e| format!("invalid channel '{u}': {e}"));
    match name {
        "nodefaults" => Ok(vec![]),
        "defaults" => Ok(vec![
            from_url("https://repo.anaconda.com/pkgs/main")?,
            from_url("https://repo.anaconda.com/pkgs/r")?,
        ]),
        _ => {
            let looks_like_path =
                name.starts_with('.') || name.starts_with('/') || name.starts_with('~');
            if looks_like_path {
                let path = config.root_dir.join(name);
                if !path.is_dir() {
                    return Err(format!(
                        "channel directory '{name}' does not exist (looked in {})",
                        path.display()
                    ));
                }
            }
            Ok(vec![from_url(name)?])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(urls: &[&str]) -> Vec<ChannelUrl> {
        urls.iter().map(|u| ChannelUrl::parse(u).unwrap()).collect()
    }

    #[test]
    fn encoded_and_plain_dot_segments_are_refused() {
        for bad in [
            "http://h/good/%2e%2e%2fevil/linux-64/p-1-0.tar.bz2",
            "http://h/good/%2E%2E/evil/linux-64/p-1-0.tar.bz2",
            "http://h/good/../evil/linux-64/p-1-0.tar.bz2",
            "http://h/good/./linux-64/p-1-0.tar.bz2",
            "http://h/good/..%2fevil/linux-64/p-1-0.tar.bz2",
            "http://h/good/.%2e/evil/linux-64/p-1-0.tar.bz2",
            "http://h/good\\..\\evil/linux-64/p-1-0.tar.bz2",
            "http://h/good/linux-64/p-1-0.tar.bz2?x=1",
            "http://h/good/%00/linux-64/p-1-0.tar.bz2",
        ] {
            let allowed = channels(&["http://h/good/"]);
            assert!(check_package_url(bad, &allowed).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_ports_and_schemes_are_compared_parsed() {
        let allowed = channels(&["http://h:8000/good"]);
        check_package_url("http://H:8000/good/linux-64/p-1-0.conda", &allowed).unwrap();
        check_package_url("http://h:8000/good/linux-64/p%2d1-0.conda", &allowed).unwrap();
        for bad in [
            "http://h:8001/good/linux-64/p-1-0.conda",
            "https://h:8000/good/linux-64/p-1-0.conda",
            "http://h:8000/goodness/linux-64/p-1-0.conda",
            "http://h:8000/good/extra/linux-64/p-1-0.conda",
            "http://169.254.169.254/linux-64/x-1-0.tar.bz2",
            "file:///etc/linux-64/x-1-0.tar.bz2",
        ] {
            assert!(check_package_url(bad, &allowed).is_err(), "{bad}");
        }
        let https = channels(&["https://conda.anaconda.org/conda-forge/"]);
        check_package_url(
            "https://conda.anaconda.org:443/conda-forge/noarch/x-1-0.conda",
            &https,
        )
        .unwrap();
    }

    #[test]
    fn long_urls_are_cut_in_messages() {
        let long = format!("http://h/{}", "a".repeat(5000));
        let e = check_package_url(&long, &channels(&["http://g/"])).unwrap_err();
        assert!(e.to_string().len() < 1000, "{e}");
    }
}
