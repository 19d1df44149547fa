//! Explicit lists (`@EXPLICIT`), as `conda list --explicit --md5` and
//! `conda-lock render` write them: one package URL a line, ending in `#MD5`
//! (32 hex digits), `#sha256:HEX` or `#HEX` (64 digits). A `# platform: NAME`
//! comment names the platform; without it, the subdir of the URLs does.
//! The channels are the URLs without `/SUBDIR/FILE`, in first-seen order.

use std::{path::Path, str::FromStr};

use rattler_conda_types::Subdir;
use rattler_digest::{Md5Hash, Sha256Hash};

use crate::{
    error::clip,
    lockfile::partial::{
        channel_of, check_unique, md5_hex, package_url, sha256_hex, FormatError, PartialLock,
        PartialPlatform, PartialRecord,
    },
    BuildError,
};

/// Reads an explicit list; `path` names it in messages.
pub(crate) fn parse(text: &str, path: &Path) -> Result<PartialLock, BuildError> {
    parse_text(text, path).map_err(|e| e.in_file(path))
}

fn parse_text(text: &str, path: &Path) -> Result<PartialLock, FormatError> {
    let mut declared: Option<(Subdir, usize)> = None;
    let mut explicit = false;
    let mut packages = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        if let Some(comment) = entry.strip_prefix('#') {
            if let Some(name) = comment.trim().strip_prefix("platform:") {
                declared = Some((platform(name.trim(), line)?, line));
            }
            continue;
        }
        if entry == "@EXPLICIT" {
            explicit = true;
            continue;
        }
        if !explicit {
            return Err(FormatError::at(
                Some(line),
                "only comments may come before the @EXPLICIT line",
            ));
        }
        packages.push(record(entry, line)?);
    }
    if !explicit {
        return Err(FormatError::at(None, "it has no @EXPLICIT line"));
    }
    let platform = match declared {
        Some((platform, _)) => check_subdirs(&packages, platform)?,
        None => derived_platform(&packages)?,
    };
    let platform = PartialPlatform { platform, packages };
    check_unique(&platform)?;
    Ok(PartialLock {
        path: path.to_path_buf(),
        channels: channels(&platform.packages),
        platforms: vec![platform],
    })
}

fn platform(name: &str, line: usize) -> Result<Subdir, FormatError> {
    Subdir::from_str(name)
        .ok()
        .filter(|p| *p != Subdir::NoArch)
        .ok_or_else(|| {
            FormatError::at(
                Some(line),
                format!(
                    "'{}' is not a platform (linux-64, osx-arm64, …)",
                    clip(name, 80)
                ),
            )
        })
}

/// One `URL#CHECKSUM` line.
fn record(entry: &str, line: usize) -> Result<PartialRecord, FormatError> {
    let Some((url, checksum)) = entry.rsplit_once('#') else {
        return Err(FormatError::at(
            Some(line),
            format!(
                "{} has no checksum: trousse verifies every package it fetches; \
                 write the list with `conda list --explicit --md5` (URL#MD5)",
                clip(entry, 200)
            ),
        ));
    };
    let (md5, sha256) = checksum_of(checksum.trim(), line)?;
    let (url, file_name, subdir) = package_url(url.trim(), Some(line))?;
    Ok(PartialRecord {
        url,
        file_name,
        subdir,
        md5,
        sha256,
        line: Some(line),
    })
}

/// `MD5`, `sha256:HEX` or `HEX` (64 digits).
fn checksum_of(
    text: &str,
    line: usize,
) -> Result<(Option<Md5Hash>, Option<Sha256Hash>), FormatError> {
    let sha256 = text.strip_prefix("sha256:").unwrap_or(text);
    if let Some(md5) = md5_hex(text) {
        Ok((Some(md5), None))
    } else if let Some(sha256) = sha256_hex(sha256) {
        Ok((None, Some(sha256)))
    } else {
        Err(FormatError::at(
            Some(line),
            format!(
                "'#{}' is neither an md5 (32 hex digits) nor a sha256 (sha256:, 64 hex digits)",
                clip(text, 80)
            ),
        ))
    }
}

/// Every package is of `platform` or noarch.
fn check_subdirs(packages: &[PartialRecord], platform: Subdir) -> Result<Subdir, FormatError> {
    match packages
        .iter()
        .find(|p| p.subdir != platform.as_str() && p.subdir != "noarch")
    {
        Some(p) => Err(FormatError::at(
            p.line,
            format!(
                "{} is in subdir {}, but the list is for {platform} (# platform: line)",
                p.file_name, p.subdir
            ),
        )),
        None => Ok(platform),
    }
}

/// The one platform subdir the URLs name, besides noarch.
fn derived_platform(packages: &[PartialRecord]) -> Result<Subdir, FormatError> {
    let Some(first) = packages.iter().find(|p| p.subdir != "noarch") else {
        return Err(FormatError::at(
            None,
            "it names no platform and has only noarch packages: add a line \
             '# platform: linux-64' (or the platform it is for) above @EXPLICIT",
        ));
    };
    let platform = platform(&first.subdir, first.line.unwrap_or_default())
        .map_err(|e| FormatError::at(first.line, e.message))?;
    check_subdirs(packages, platform).map_err(|e| FormatError {
        message: format!("{}; a list is for one platform", e.message),
        ..e
    })
}

/// The channels of the packages, in first-seen order.
fn channels(packages: &[PartialRecord]) -> Vec<String> {
    let mut channels: Vec<String> = Vec::new();
    for p in packages {
        let channel = channel_of(&p.url);
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    channels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceKind;

    const MD5: &str = "d7c89558ba9fa0495403155b64376d81";

    fn parse_err(text: &str) -> FormatError {
        parse_text(text, Path::new("env.lock")).unwrap_err()
    }

    #[test]
    fn the_real_repo2docker_list_is_read() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conda-data/locks/repo2docker-base-py3.12-linux-64.lock");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(SourceKind::detect(&text), SourceKind::ExplicitList);
        let partial = parse_text(&text, &path).unwrap();
        assert_eq!(partial.platforms.len(), 1);
        assert_eq!(partial.platforms[0].platform, Subdir::Linux64);
        let urls = text.lines().filter(|l| l.starts_with("https://")).count();
        assert_eq!(partial.len(), urls);
        assert!(urls > 150, "{urls}");
        assert_eq!(
            partial.channels,
            ["https://conda.anaconda.org/conda-forge/"]
        );
        let first = &partial.platforms[0].packages[0];
        assert_eq!(
            first.file_name.to_string(),
            "_libgcc_mutex-0.1-conda_forge.tar.bz2"
        );
        assert_eq!(first.line, Some(7));
        assert!(first.md5.is_some() && first.sha256.is_none());
        partial
            .check_urls(&partial.channel_urls().unwrap())
            .unwrap();
    }

    #[test]
    fn checksums_platforms_and_channels() {
        let sha = "ab".repeat(32);
        let text = format!(
            "@EXPLICIT\n\nhttp://h:8000/a/linux-64/x-1-0.conda#{MD5}\nhttp://h:8000/b/noarch/y-1-0.tar.bz2#sha256:{sha}\nhttp://h:8000/a/noarch/z-1-0.conda#{sha}\n"
        );
        let partial = parse_text(&text, Path::new("env.lock")).unwrap();
        assert_eq!(
            partial.platforms[0].platform,
            Subdir::Linux64,
            "from the URLs"
        );
        assert_eq!(partial.channels, ["http://h:8000/a/", "http://h:8000/b/"]);
        let p = &partial.platforms[0].packages;
        assert!(p[0].md5.is_some() && p[1].sha256.is_some() && p[2].sha256.is_some());
        assert_eq!(p[2].line, Some(5));
    }

    #[test]
    fn each_bad_line_is_named() {
        let good = format!("https://c/x/linux-64/a-1-0.conda#{MD5}");
        let cases = [
            (
                format!(
                    "# platform: linux-64\n@EXPLICIT\n{good}\nhttps://c/x/linux-64/b-1-0.conda\n"
                ),
                Some(4),
                "no checksum",
            ),
            (
                format!("@EXPLICIT\n{good}\nhttps://c/x/linux-64/b-1-0.conda#123\n"),
                Some(3),
                "neither an md5",
            ),
            (
                format!("@EXPLICIT\n{good}\nhttps://c/x/linux-64/b-1-0.zip#{MD5}\n"),
                Some(3),
                "NAME-VERSION-BUILD",
            ),
            (
                format!("@EXPLICIT\n{good}\nnot a url#{MD5}\n"),
                Some(3),
                "not a URL",
            ),
            (
                format!("# platform: osx-64\n@EXPLICIT\n{good}\n"),
                Some(3),
                "list is for osx-64",
            ),
            (
                format!("# platform: amiga\n@EXPLICIT\n{good}\n"),
                Some(1),
                "not a platform",
            ),
            (
                format!("@EXPLICIT\n{good}\nhttps://c/x/win-64/b-1-0.conda#{MD5}\n"),
                Some(3),
                "one platform",
            ),
            (
                format!("@EXPLICIT\n{good}\n{good}\n"),
                Some(3),
                "listed twice",
            ),
            (
                format!("{good}\n@EXPLICIT\n"),
                Some(1),
                "before the @EXPLICIT",
            ),
            (
                format!("@EXPLICIT\nhttps://c/x/noarch/a-1-0.conda#{MD5}\n"),
                None,
                "# platform: linux-64",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse_err(&text);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
            assert_eq!(e.line, line, "{needle}: {e}");
        }
        let e = parse("@EXPLICIT\nx\n", Path::new("env.lock")).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("env.lock: line 2:"), "{e}");
    }
}
