//! Where a wheel's files land: site-packages and the `.data` schemes mapped
//! under the prefix, and the `#!python` line of scripts rewritten.

use std::io::{self, Read};

use super::archive::check_path;
use super::InstallTarget;
use crate::pypi::PypiError;

/// The longest first line of a script looked at for a `#!python` shebang.
const MAX_SHEBANG: usize = 4096;

/// A target setting trousse cannot install into (a caller's mistake, not the wheel's).
fn bad_target(what: &'static str, value: &str, why: &str) -> PypiError {
    PypiError::Io {
        action: what,
        path: value.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    }
}

/// Where the schemes of a wheel land, relative to the prefix.
pub(super) struct Layout {
    /// site-packages (purelib, platlib and the wheel's root).
    pub(super) site: String,
    /// `include/pythonX.Y/NAME` (headers), when site-packages names the Python version.
    headers: Option<String>,
}

impl Layout {
    /// Checks the target and derives the scheme directories.
    pub(super) fn new(target: &InstallTarget<'_>, dist: &str) -> Result<Self, PypiError> {
        let site = target.site_packages.trim_end_matches('/');
        check_path(site)
            .map_err(|why| bad_target("installing a wheel into site-packages", site, why))?;
        let python = target.python;
        if !python.starts_with('/') || python.contains(['\n', '\r', '\0']) {
            return Err(bad_target(
                "installing a wheel for the interpreter",
                python,
                "not an absolute path on one line",
            ));
        }
        let headers = site
            .split('/')
            .find(|c| python_version(c).is_some())
            .map(|c| format!("include/{c}/{dist}"));
        Ok(Layout {
            site: site.to_string(),
            headers,
        })
    }

    /// Where an archive file goes and whether it is a script, `data_dir` being the wheel's `.data`.
    pub(super) fn map(&self, path: &str, data_dir: Option<&str>) -> Result<(String, bool), String> {
        let inside = data_dir
            .and_then(|d| path.strip_prefix(d))
            .and_then(|rest| rest.strip_prefix('/'));
        let Some(inside) = inside else {
            return Ok((format!("{}/{path}", self.site), false));
        };
        let (scheme, rest) = inside
            .split_once('/')
            .ok_or_else(|| format!("{path} is not in a scheme directory of the .data directory"))?;
        let (base, script) = match scheme {
            "purelib" | "platlib" => (self.site.as_str(), false),
            "scripts" => ("bin", true),
            "data" => ("", false),
            "headers" => (
                self.headers.as_deref().ok_or_else(|| {
                    format!("{path} is a header but site-packages names no Python version")
                })?,
                false,
            ),
            other => return Err(format!("{path} is in the unknown .data scheme {other:?}")),
        };
        let dest = if base.is_empty() {
            rest.to_string()
        } else {
            format!("{base}/{rest}")
        };
        Ok((dest, script))
    }
}

/// `Some` when `component` is `pythonX.Y`.
fn python_version(component: &str) -> Option<&str> {
    let version = component.strip_prefix("python")?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then_some(version)
}

/// The start of a script: at least its first line, unless that is longer than [`MAX_SHEBANG`].
pub(super) fn read_head(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0; 512];
    while head.len() < MAX_SHEBANG && !head.contains(&b'\n') {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// `head` with a first line `#!python[w][X.Y] [ARGS]` made `#!{python} [ARGS]`.
pub(super) fn rewrite_shebang(head: Vec<u8>, python: &str) -> Vec<u8> {
    let (line, rest) = match head.iter().position(|&b| b == b'\n') {
        Some(end) => (&head[..end], &head[end + 1..]),
        None if head.len() < MAX_SHEBANG => (&head[..], &[][..]),
        None => return head,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(after) = line.strip_prefix(b"#!python") else {
        return head;
    };
    let after = after.strip_prefix(b"w").unwrap_or(after);
    let args_at = after
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(after.len());
    let args = &after[args_at..];
    if !(args.is_empty() || args.starts_with(b" ") || args.starts_with(b"\t")) {
        return head;
    }
    let mut out = format!("#!{python}").into_bytes();
    out.extend_from_slice(args);
    out.push(b'\n');
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_python_shebangs() {
        let rewrite = |s: &str| String::from_utf8(rewrite_shebang(s.into(), "/p")).unwrap();
        assert_eq!(rewrite("#!python\nx"), "#!/p\nx");
        assert_eq!(rewrite("#!python3.12 -E -s\nx"), "#!/p -E -s\nx");
        assert_eq!(rewrite("#!python"), "#!/p\n");
        assert_eq!(rewrite("#!pythonic\nx"), "#!pythonic\nx");
        assert_eq!(rewrite("#!/usr/bin/python\nx"), "#!/usr/bin/python\nx");
    }
}
