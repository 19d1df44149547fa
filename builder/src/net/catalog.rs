//! A channel's packages for search: each name's newest versions, the newest
//! one's download size, and its summary from `channeldata.json` when the
//! channel has one. `repodata.json` (its `.zst` when the channel has one) is
//! read as it streams, through the mirrors: a name keeps a few versions and
//! no file name is kept, so conda-forge's index fits in a few megabytes.

use std::{collections::HashMap, fmt, io::Read};

use rattler_conda_types::Version;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use url::Url;

use super::mirrors::Mirrors;

/// The versions kept per name.
const VERSIONS_KEPT: usize = 3;
/// The most names one channel may bring.
const MAX_NAMES: usize = 200_000;

/// One package name of a channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CatalogEntry {
    /// The package's name.
    pub name: String,
    /// Its newest versions, newest first.
    pub versions: Vec<String>,
    /// The newest version's download size, in bytes, as the channel gives it.
    pub size: Option<u64>,
    /// Its summary, from the channel's `channeldata.json`.
    pub summary: Option<String>,
    /// The channel (its URL).
    pub channel: String,
}

/// Why a channel's packages could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The index could not be fetched.
    #[error("cannot fetch {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The index is larger than allowed.
    #[error("{url} is over {max} bytes: the catalog leaves this channel out")]
    TooLarge {
        /// What was fetched.
        url: String,
        /// The bound.
        max: u64,
    },
    /// The index is not repodata.
    #[error("{url} is not a channel index: {reason}")]
    Invalid {
        /// What was fetched.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// One record, the fields read.
#[derive(serde::Deserialize)]
struct Record {
    name: String,
    version: String,
    #[serde(default)]
    size: Option<u64>,
}

/// The newest versions of each name, as records stream by.
#[derive(Default)]
struct Names(HashMap<String, Vec<(Version, String, Option<u64>)>>);

impl Names {
    fn add(&mut self, record: Record) -> Result<(), String> {
        let Ok(version) = record.version.parse::<Version>() else {
            return Ok(()); // a record whose version does not parse is not offered
        };
        if !self.0.contains_key(&record.name) && self.0.len() >= MAX_NAMES {
            return Err(format!("over {MAX_NAMES} package names"));
        }
        let kept = self.0.entry(record.name).or_default();
        if kept.iter().any(|(v, _, _)| *v == version) {
            return Ok(());
        }
        kept.push((version, record.version, record.size));
        kept.sort_by(|a, b| b.0.cmp(&a.0));
        kept.truncate(VERSIONS_KEPT);
        Ok(())
    }
}

/// Reads `packages` and `packages.conda` into `Names`, skipping the rest.
struct Index<'a>(&'a mut Names);

impl<'de> Visitor<'de> for Index<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a repodata.json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "packages" || key == "packages.conda" {
                map.next_value_seed(Records(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads one map of file name → record.
struct Records<'a>(&'a mut Names);

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of package records")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            let record: Record = map.next_value()?;
            self.0.add(record).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

/// The names of one `repodata.json`, read from `reader`.
fn read_names(reader: impl Read, names: &mut Names) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    serde::Deserializer::deserialize_map(&mut de, Index(names)).map_err(|e| e.to_string())
}

/// The catalog of `channel` (a URL) for `subdirs`: every name with its newest
/// versions, sorted by name. Each download, and each decompressed index, is
/// at most `max_bytes`.
pub async fn fetch_catalog(
    channel: &Url,
    subdirs: &[String],
    mirrors: &Mirrors,
    max_bytes: u64,
) -> Result<Vec<CatalogEntry>, CatalogError> {
    let client = super::http_client(mirrors);
    let mut names = Names::default();
    for subdir in subdirs {
        let base = join(channel, &format!("{subdir}/"))?;
        let zst = join(&base, "repodata.json.zst")?;
        let (url, bytes, compressed) = match fetch(client.client(), &zst, max_bytes).await? {
            Some(bytes) => (zst, bytes, true),
            None => {
                let plain = join(&base, "repodata.json")?;
                match fetch(client.client(), &plain, max_bytes).await? {
                    Some(bytes) => (plain, bytes, false),
                    None => continue, // a channel without this subdir
                }
            }
        };
        names = parse(url, bytes, compressed, max_bytes, names).await?;
    }
    let summaries = match fetch(
        client.client(),
        &join(channel, "channeldata.json")?,
        max_bytes,
    )
    .await
    {
        Ok(Some(bytes)) => summaries(&bytes),
        _ => HashMap::new(),
    };
    let mut entries: Vec<CatalogEntry> = names
        .0
        .into_iter()
        .map(|(name, kept)| CatalogEntry {
            summary: summaries.get(&name).cloned(),
            size: kept.first().and_then(|k| k.2),
            versions: kept.into_iter().map(|k| k.1).collect(),
            channel: channel.to_string(),
            name,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn join(base: &Url, path: &str) -> Result<Url, CatalogError> {
    base.join(path).map_err(|e| CatalogError::Invalid {
        url: base.to_string(),
        reason: e.to_string(),
    })
}

/// The names of one downloaded index, read off the async threads.
async fn parse(
    url: Url,
    bytes: Vec<u8>,
    compressed: bool,
    max_bytes: u64,
    mut names: Names,
) -> Result<Names, CatalogError> {
    let invalid = |reason: String| CatalogError::Invalid {
        url: url.to_string(),
        reason,
    };
    let read = tokio::task::spawn_blocking(move || {
        let result = if compressed {
            zstd::Decoder::new(bytes.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|d| read_names(d.take(max_bytes), &mut names))
        } else {
            read_names(bytes.as_slice(), &mut names)
        };
        result.map(|()| names)
    })
    .await
    .map_err(|e| invalid(e.to_string()))?;
    read.map_err(invalid)
}

/// A file's bytes; `None` when the channel has no such file (404, 403).
async fn fetch(
    client: &reqwest_middleware::ClientWithMiddleware,
    url: &Url,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, CatalogError> {
    let failed = |reason: String| CatalogError::Fetch {
        url: url.to_string(),
        reason,
    };
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if matches!(response.status().as_u16(), 404 | 403) {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(failed(format!("the server answered {}", response.status())));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(CatalogError::TooLarge {
                url: url.to_string(),
                max: max_bytes,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// The summaries of `channeldata.json`, by name (none when it does not parse).
fn summaries(bytes: &[u8]) -> HashMap<String, String> {
    #[derive(serde::Deserialize)]
    struct ChannelData {
        #[serde(default)]
        packages: HashMap<String, PackageData>,
    }
    #[derive(serde::Deserialize)]
    struct PackageData {
        #[serde(default)]
        summary: Option<String>,
    }
    serde_json::from_slice::<ChannelData>(bytes)
        .map(|data| {
            data.packages
                .into_iter()
                .filter_map(|(name, p)| Some((name, p.summary?.chars().take(300).collect())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_versions_of_each_name_and_no_file_name() {
        let repodata = r#"{
            "info": {"subdir": "linux-64"},
            "packages": {
                "numpy-1.26.4-0.tar.bz2": {"name": "numpy", "version": "1.26.4", "size": 10, "depends": []},
                "numpy-2.0.0-0.tar.bz2": {"name": "numpy", "version": "2.0.0", "size": 20}
            },
            "packages.conda": {
                "numpy-2.1.0-0.conda": {"name": "numpy", "version": "2.1.0", "size": 30},
                "numpy-1.9.0-0.conda": {"name": "numpy", "version": "1.9.0", "size": 5},
                "numpy-2.1.0-1.conda": {"name": "numpy", "version": "2.1.0", "size": 31},
                "bad-x-0.conda": {"name": "bad", "version": "not a version!"}
            },
            "removed": ["x"]
        }"#;
        let mut names = Names::default();
        read_names(repodata.as_bytes(), &mut names).unwrap();
        let numpy = &names.0["numpy"];
        let versions: Vec<&str> = numpy.iter().map(|k| k.1.as_str()).collect();
        assert_eq!(versions, ["2.1.0", "2.0.0", "1.26.4"]);
        assert_eq!(numpy[0].2, Some(30));
        assert!(!names.0.contains_key("bad"));
    }

    #[test]
    fn a_broken_index_is_an_error() {
        let mut names = Names::default();
        assert!(read_names(&b"{\"packages\": [1, 2]}"[..], &mut names).is_err());
        assert!(read_names(&b"{\"packages\": {\"a\": {\"name\": 3}}}"[..], &mut names).is_err());
    }

    #[test]
    fn summaries_come_from_channeldata() {
        let data = br#"{"packages": {"numpy": {"summary": "Arrays"}, "x": {}}, "subdirs": []}"#;
        let got = summaries(data);
        assert_eq!(got.get("numpy").map(String::as_str), Some("Arrays"));
        assert!(!got.contains_key("x"));
    }
}
