//! conda-lock files (`conda-lock.yml`, format version 1): `metadata` (platforms,
//! channels) and a `package` list of {name, manager, platform, url, hash}. Only
//! what locates and verifies a package is read; its record is completed from
//! the archive. Optional packages (`optional: true`, categories other than
//! `main`) are left out, as `conda-lock install` does by default.

use std::{path::Path, str::FromStr};

use rattler_conda_types::Subdir;
use serde::Deserialize;

use crate::{
    lockfile::partial::{
        check_unique, md5_hex, package_url, sha256_hex, FormatError, PartialLock, PartialPlatform,
        PartialRecord,
    },
    net::channel_url::{resolve_channel, ChannelConfig},
    BuildError,
};

#[derive(Deserialize)]
struct File {
    version: serde_yaml_ng::Value,
    metadata: Metadata,
    package: Vec<Package>,
}

#[derive(Deserialize)]
struct Metadata {
    platforms: Vec<String>,
    channels: Vec<ChannelEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ChannelEntry {
    Name(String),
    Full {
        url: String,
        #[serde(default)]
        used_env_vars: Vec<String>,
    },
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manager: String,
    platform: String,
    url: String,
    #[serde(default)]
    hash: Hash,
    #[serde(default)]
    optional: bool,
    category: Option<String>,
}

#[derive(Deserialize, Default)]
struct Hash {
    md5: Option<String>,
    sha256: Option<String>,
}

/// Reads a conda-lock file; `path` names it in messages and anchors relative channels.
pub(crate) fn parse(text: &str, path: &Path) -> Result<PartialLock, BuildError> {
    parse_text(text, path).map_err(|e| e.in_file(path))
}

fn parse_text(text: &str, path: &Path) -> Result<PartialLock, FormatError> {
    if let Some(line) = crate::guard::yaml::too_deep(text) {
        return Err(FormatError::at(
            Some(line),
            crate::guard::yaml::refusal(line),
        ));
    }
    let file: File = serde_yaml_ng::from_str(text).map_err(|e| {
        FormatError::at(
            e.location().map(|l| l.line()),
            format!("not a conda-lock file: {e}"),
        )
    })?;
    if file.version.as_u64() != Some(1) {
        return Err(FormatError::at(
            line_of_key(text, "version"),
            "only conda-lock files of version 1 are read (conda-lock writes version 1)",
        ));
    }
    let lines = PackageLines::new(text, file.package.len());
    let channels = channels(&file.metadata.channels, text, path)?;
    let mut platforms = platforms(&file.metadata.platforms, text)?;
    for (index, package) in file.package.iter().enumerate() {
        let Some(record) = record(package, &lines, index)? else {
            continue;
        };
        let platform = Subdir::from_str(&package.platform).ok();
        let Some(entry) = platforms.iter_mut().find(|p| Some(p.platform) == platform) else {
            return Err(FormatError::at(
                lines.field(index, "platform"),
                format!(
                    "package {} is for platform '{}', which metadata.platforms does not list",
                    package.name, package.platform
                ),
            ));
        };
        entry.packages.push(record);
    }
    platforms.iter().try_for_each(check_unique)?;
    Ok(PartialLock {
        path: path.to_path_buf(),
        channels,
        platforms,
    })
}

/// The platforms of `metadata.platforms`, sorted, each with no package yet.
fn platforms(names: &[String], text: &str) -> Result<Vec<PartialPlatform>, FormatError> {
    let mut platforms = Vec::new();
    for name in names {
        let platform = Subdir::from_str(name).map_err(|_| {
            FormatError::at(
                line_of_value(text, name),
                format!("unknown platform '{name}' in metadata.platforms"),
            )
        })?;
        platforms.push(PartialPlatform {
            platform,
            packages: Vec::new(),
        });
    }
    if platforms.is_empty() {
        return Err(FormatError::at(
            line_of_key(text, "metadata"),
            "metadata.platforms lists no platform",
        ));
    }
    platforms.sort_by_key(|p| p.platform.to_string());
    platforms.dedup_by_key(|p| p.platform);
    Ok(platforms)
}

/// The channels of `metadata.channels`, resolved to base URLs as a spec's are.
fn channels(entries: &[ChannelEntry], text: &str, path: &Path) -> Result<Vec<String>, FormatError> {
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("/"), Path::to_path_buf);
    let config = ChannelConfig::default_with_root_dir(root);
    let mut channels = Vec::new();
    for entry in entries {
        let (name, env_vars) = match entry {
            ChannelEntry::Name(name) => (name, &[][..]),
            ChannelEntry::Full { url, used_env_vars } => (url, used_env_vars.as_slice()),
        };
        let line = line_of_value(text, name);
        if !env_vars.is_empty() {
            return Err(FormatError::at(
                line,
                format!(
                    "channel {name} takes credentials from environment variables ({}), which trousse does not read",
                    env_vars.join(", ")
                ),
            ));
        }
        for channel in resolve_channel(name, &config).map_err(|m| FormatError::at(line, m))? {
            channels.push(channel.base_url.to_string());
        }
    }
    Ok(channels)
}

/// A package entry as a partial record; `None` for what is not installed
/// (optional packages, virtual packages).
fn record(
    package: &Package,
    lines: &PackageLines,
    index: usize,
) -> Result<Option<PartialRecord>, FormatError> {
    let optional = package.optional || package.category.as_deref().is_some_and(|c| c != "main");
    if optional || package.name.starts_with("__") {
        return Ok(None);
    }
    match package.manager.as_str() {
        "conda" => {}
        "pip" => {
            return Err(FormatError::at(
                lines.field(index, "manager"),
                format!(
                    "package {} is a PyPI package (manager: pip): PyPI packages are not installed yet; \
                     lock it from conda-forge instead, or remove it",
                    package.name
                ),
            ))
        }
        other => {
            return Err(FormatError::at(
                lines.field(index, "manager"),
                format!("package {}: unknown manager '{other}' (conda or pip)", package.name),
            ))
        }
    }
    let (url, file_name, subdir) = package_url(&package.url, lines.field(index, "url"))?;
    if subdir != package.platform && subdir != "noarch" {
        return Err(FormatError::at(
            lines.field(index, "url"),
            format!(
                "package {} is for {}, but its URL is in subdir {subdir}",
                package.name, package.platform
            ),
        ));
    }
    let (md5, sha256) = hashes(package, lines, index)?;
    Ok(Some(PartialRecord {
        url,
        file_name,
        subdir,
        md5,
        sha256,
        line: lines.item(index),
    }))
}

/// The checksums of a package: at least one, each exact hex.
fn hashes(
    package: &Package,
    lines: &PackageLines,
    index: usize,
) -> Result<
    (
        Option<rattler_digest::Md5Hash>,
        Option<rattler_digest::Sha256Hash>,
    ),
    FormatError,
> {
    let bad = |field: &str, what: &str| {
        FormatError::at(
            lines.field(index, field).or(lines.field(index, "hash")),
            format!("package {}: hash.{field} is not {what}", package.name),
        )
    };
    let md5 = match &package.hash.md5 {
        Some(text) => Some(md5_hex(text).ok_or_else(|| bad("md5", "32 hex digits"))?),
        None => None,
    };
    let sha256 = match &package.hash.sha256 {
        Some(text) => Some(sha256_hex(text).ok_or_else(|| bad("sha256", "64 hex digits"))?),
        None => None,
    };
    if md5.is_none() && sha256.is_none() {
        return Err(FormatError::at(
            lines.item(index),
            format!(
                "package {} has no hash (md5 or sha256): trousse verifies every package it fetches",
                package.name
            ),
        ));
    }
    Ok((md5, sha256))
}

/// Where each entry of the `package:` list starts, for messages: block-style
/// YAML as conda-lock writes it. Flow-style lists fall back to `package:`.
struct PackageLines {
    starts: Vec<usize>,
    lines: Vec<String>,
    fallback: Option<usize>,
}

impl PackageLines {
    fn new(text: &str, count: usize) -> Self {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let fallback = line_of_key(text, "package");
        let starts = fallback.map_or_else(Vec::new, |at| item_starts(&lines, at));
        let starts = if starts.len() == count {
            starts
        } else {
            Vec::new()
        };
        Self {
            starts,
            lines,
            fallback,
        }
    }

    /// The 1-based line where entry `index` starts.
    fn item(&self, index: usize) -> Option<usize> {
        self.starts.get(index).copied().or(self.fallback)
    }

    /// The 1-based line of `field:` within entry `index` (nested ones too).
    fn field(&self, index: usize, field: &str) -> Option<usize> {
        let Some(&start) = self.starts.get(index) else {
            return self.fallback;
        };
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.lines.len(), |n| n - 1);
        let key = format!("{field}:");
        (start - 1..end)
            .find(|&i| {
                let line = self.lines[i].trim_start().trim_start_matches("- ");
                line.starts_with(&key)
            })
            .map(|i| i + 1)
            .or(Some(start))
    }
}

/// The 1-based lines that start list items after the `package:` line `at`.
fn item_starts(lines: &[String], at: usize) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(at) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let width = line.len() - trimmed.len();
        let item = trimmed == "-" || trimmed.starts_with("- ");
        if width == 0 && !item {
            break;
        }
        if item && *indent.get_or_insert(width) == width {
            starts.push(i + 1);
        }
    }
    starts
}

/// The 1-based line of a top-level `key:`.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let key = format!("{key}:");
    text.lines()
        .position(|l| l.starts_with(&key))
        .map(|i| i + 1)
}

/// The 1-based line of the first line that ends with `value` (a scalar).
fn line_of_value(text: &str, value: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_end();
            l.ends_with(value)
                || l.ends_with(&format!("'{value}'"))
                || l.ends_with(&format!("\"{value}\""))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "d7c89558ba9fa0495403155b64376d81";

    fn package(name: &str, platform: &str, subdir: &str, extra: &str) -> String {
        format!(
            "- name: {name}\n  version: '1.0'\n  manager: conda\n  platform: {platform}\n  dependencies:\n    python: '>=3.8'\n  url: https://conda.anaconda.org/conda-forge/{subdir}/{name}-1.0-h0_0.conda\n  hash:\n    md5: {MD5}\n    sha256: {}\n  category: main\n  optional: false\n{extra}",
            "ab".repeat(32)
        )
    }

    fn lock(packages: &str) -> String {
        format!(
            "version: 1\nmetadata:\n  content_hash:\n    linux-64: abc\n  channels:\n  - url: conda-forge\n    used_env_vars: []\n  platforms:\n  - linux-64\n  - osx-arm64\n  sources:\n  - environment.yml\npackage:\n{packages}"
        )
    }

    fn parse_err(text: &str) -> FormatError {
        parse_text(text, Path::new("/work/conda-lock.yml")).unwrap_err()
    }

    #[test]
    fn a_conda_lock_file_gives_its_platforms_channels_and_packages() {
        let text = lock(
            &[
                package("zlib", "linux-64", "linux-64", ""),
                package("tzdata", "linux-64", "noarch", ""),
                package("zlib", "osx-arm64", "osx-arm64", ""),
                package("pytest", "linux-64", "noarch", "").replace(
                    "category: main\n  optional: false",
                    "category: dev\n  optional: true",
                ),
            ]
            .concat(),
        );
        let partial = parse_text(&text, Path::new("/work/conda-lock.yml")).unwrap();
        assert_eq!(
            partial.channels,
            ["https://conda.anaconda.org/conda-forge/"]
        );
        let platforms: Vec<String> = partial
            .platforms
            .iter()
            .map(|p| p.platform.to_string())
            .collect();
        assert_eq!(platforms, ["linux-64", "osx-arm64"]);
        let linux = &partial.platforms[0].packages;
        assert_eq!(linux.len(), 2, "the optional pytest is left out");
        assert_eq!(linux[0].file_name.to_string(), "zlib-1.0-h0_0.conda");
        assert_eq!(linux[0].line, Some(14));
        assert_eq!(linux[1].subdir, "noarch");
        assert!(linux[0].md5.is_some() && linux[0].sha256.is_some());
        assert_eq!(partial.len(), 3);
    }

    #[test]
    fn each_bad_entry_is_named_with_its_line() {
        let good = package("zlib", "linux-64", "linux-64", "");
        let cases: Vec<(String, usize, &str)> = vec![
            (
                lock(&format!(
                    "{good}{}",
                    package("six", "linux-64", "noarch", "")
                        .replace("manager: conda", "manager: pip")
                )),
                28,
                "PyPI packages are not installed yet",
            ),
            (
                lock(&format!("{good}{}", package("six", "win-64", "win-64", ""))),
                29,
                "metadata.platforms",
            ),
            (
                lock(&format!(
                    "{good}{}",
                    package("six", "linux-64", "osx-arm64", "")
                )),
                32,
                "subdir osx-arm64",
            ),
            (
                lock(&format!(
                    "{good}{}",
                    package("six", "linux-64", "noarch", "").replace(MD5, "123")
                )),
                34,
                "hash.md5",
            ),
            (
                lock(&format!(
                    "{good}{}",
                    package("zlib", "linux-64", "linux-64", "")
                )),
                26,
                "listed twice",
            ),
            (
                lock(&good.replace(
                    "https://conda.anaconda.org/conda-forge/linux-64/",
                    "https://x/",
                )),
                20,
                "package URL",
            ),
            (
                lock(&good.replace("manager: conda", "manager: cargo")),
                16,
                "unknown manager",
            ),
            (lock("- name: [unclosed\n"), 14, "not a conda-lock file"),
            (
                lock(&good).replace("  - osx-arm64\n", "  - amiga-68k\n"),
                10,
                "unknown platform",
            ),
            (
                lock(&good).replace("version: 1", "version: 2"),
                1,
                "version 1",
            ),
            (
                lock(&good).replace("used_env_vars: []", "used_env_vars: [TOKEN]"),
                6,
                "environment variables",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse_err(&text);
            assert!(e.message.contains(needle), "{needle}: {e}\n{text}");
            assert_eq!(e.line, Some(line), "{needle}: {e}\n{text}");
        }
        let mut no_hash = lock(&good);
        no_hash = no_hash.replace(
            &format!("    md5: {MD5}\n    sha256: {}\n", "ab".repeat(32)),
            "    {}\n",
        );
        let e = parse_err(&no_hash.replace("  hash:\n    {}\n", "  hash: {}\n"));
        assert!(e.message.contains("no hash"), "{e}");
        assert_eq!(e.line, Some(14));
    }

    #[test]
    fn errors_become_lock_errors_of_the_file() {
        let e = parse("version: 1\n", Path::new("conda-lock.yml")).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("conda-lock.yml"), "{e}");
    }
}
