//! Package search: the allowed channels' catalogs (read through their
//! mirrors), kept in memory and refreshed in the background, so a search
//! never waits on a channel. A failed refresh keeps the last good catalog.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use trousse_builder::net::catalog::{fetch_catalog, CatalogEntry};

use crate::config::{RequestPolicy, ServiceConfig};

/// How often the catalogs are read again.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// The largest index downloaded (compressed), and decompressed.
const MAX_INDEX_BYTES: u64 = 1 << 30;
/// The longest query looked at.
const MAX_QUERY_CHARS: usize = 100;

/// The packages of the allowed channels, sorted by name.
#[derive(Debug, Default)]
pub(crate) struct PackageIndex {
    entries: RwLock<Arc<Vec<CatalogEntry>>>,
    /// When the catalogs were last read (seconds since the epoch), if ever.
    refreshed_at: RwLock<Option<i64>>,
}

impl PackageIndex {
    /// The packages whose name matches `query`: the name itself, then names
    /// that start with it (shortest first), then names that contain it.
    pub(crate) fn search(&self, query: &str, limit: usize) -> Vec<CatalogEntry> {
        let query: String = query
            .trim()
            .to_ascii_lowercase()
            .chars()
            .take(MAX_QUERY_CHARS)
            .collect();
        if query.is_empty() {
            return Vec::new();
        }
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let start = entries.partition_point(|e| e.name.as_str() < query.as_str());
        let mut prefixed: Vec<&CatalogEntry> = entries[start..]
            .iter()
            .take_while(|e| e.name.starts_with(&query))
            .collect();
        prefixed.sort_by(|a, b| (a.name.len(), &a.name).cmp(&(b.name.len(), &b.name)));
        let mut found: Vec<CatalogEntry> = prefixed.into_iter().take(limit).cloned().collect();
        if found.len() < limit {
            found.extend(
                entries
                    .iter()
                    .filter(|e| !e.name.starts_with(&query) && e.name.contains(&query))
                    .take(limit - found.len())
                    .cloned(),
            );
        }
        found
    }

    /// When the catalogs were last read, if ever.
    pub(crate) fn refreshed_at(&self) -> Option<i64> {
        *self
            .refreshed_at
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the allowed channels' catalogs again; keeps the old one for a channel that fails.
    pub(crate) async fn refresh(&self, config: &ServiceConfig, policy: &RequestPolicy) {
        let mut subdirs: Vec<String> = config
            .defaults
            .platforms
            .iter()
            .map(|p| p.to_string())
            .collect();
        subdirs.push("noarch".into());
        let old = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut entries = Vec::new();
        for channel in policy.channels().iter().filter(|c| !c.is_local()) {
            let Ok(url) = url::Url::parse(&channel.to_string()) else {
                continue;
            };
            match fetch_catalog(&url, &subdirs, &config.mirrors, MAX_INDEX_BYTES).await {
                Ok(found) => entries.extend(found),
                Err(e) => {
                    tracing::warn!(channel = %url, error = %e, "the package search keeps this channel's last catalog");
                    entries.extend(old.iter().filter(|e| e.channel == url.as_str()).cloned());
                }
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.channel.cmp(&b.channel)));
        tracing::info!(names = entries.len(), "package search catalog read");
        *self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(entries);
        *self
            .refreshed_at
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(crate::store::now());
    }
}

/// Reads the catalogs now and then every hour, while the service runs.
pub(crate) fn keep_fresh(
    index: &Arc<PackageIndex>,
    config: &ServiceConfig,
    policy: &RequestPolicy,
) {
    let weak = Arc::downgrade(index);
    let (config, policy) = (config.clone(), policy.clone());
    tokio::spawn(async move {
        loop {
            let Some(index) = weak.upgrade() else { return };
            index.refresh(&config, &policy).await;
            drop(index);
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            versions: vec!["1.0".into()],
            size: None,
            summary: None,
            channel: "https://c/".into(),
        }
    }

    #[test]
    fn the_name_comes_first_then_its_prefixes_then_the_rest() {
        let index = PackageIndex::default();
        let mut names: Vec<_> = ["numpydoc", "numpy", "numpy-base", "pynumpy", "scipy", "num"]
            .into_iter()
            .map(entry)
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        *index.entries.write().unwrap() = Arc::new(names);
        let found: Vec<String> = index
            .search(" NumPy ", 10)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(found, ["numpy", "numpydoc", "numpy-base", "pynumpy"]);
        assert_eq!(index.search("numpy", 2).len(), 2);
        assert!(index.search("", 10).is_empty());
        assert!(index.search("zzz", 10).is_empty());
    }
}
