//! Requirements as pip reads them: a requirements file, or the `pip:` list
//! of an environment.yml (one line each), with the options people use
//! (`-r`, `-c`, `--index-url`, `--extra-index-url`, `--find-links`,
//! `--no-index`, `--pre`, `--hash`, `--require-hashes`). What trousse does
//! not install (editable, VCS, local or URL requirements, sdists on purpose)
//! is refused with what to do instead.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
    str::FromStr,
};

use pep508_rs::{PackageName, Requirement, VersionOrUrl};
use url::Url;

use super::{
    index::{FindLinks, IndexConfig},
    PypiError,
};

/// How deep `-r`/`-c` files may include one another.
const MAX_INCLUDE_DEPTH: usize = 8;

/// The largest requirements file read, in bytes.
pub const MAX_REQUIREMENTS_BYTES: usize = 1 << 20;

/// Everything a set of requirement lines asks for.
#[derive(Debug, Clone, Default)]
pub struct PypiRequirements {
    /// The requirements, in the order given.
    pub requirements: Vec<Requirement>,
    /// `-c` constraints: they narrow a package's versions only if it is installed.
    pub constraints: Vec<Requirement>,
    /// `--hash=sha256:…` values per package (lowercase hex).
    pub hashes: BTreeMap<PackageName, BTreeSet<String>>,
    /// `--require-hashes`: every package installed from PyPI needs a hash.
    pub require_hashes: bool,
    /// `--pre`: pre-releases may be chosen.
    pub pre: bool,
    /// Where packages are looked up.
    pub index: IndexConfig,
    /// Whether an option changed the index (for the service's allow-list).
    pub index_named: bool,
    /// Where the first requirement line was read (file, line), for messages.
    pub origin: Option<(PathBuf, Option<usize>)>,
}

impl PypiRequirements {
    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// One line of requirements and where it was read.
#[derive(Debug, Clone)]
pub struct RequirementLine {
    /// The line, comments and continuations already handled.
    pub text: String,
    /// The file it is from.
    pub file: PathBuf,
    /// The 1-based line number.
    pub line: Option<usize>,
}

/// Reads a file that `-r`/`-c` names, by its path relative to the first file's directory.
pub trait RequirementFiles {
    /// The text of `path`, or why it cannot be read.
    fn read(&self, path: &Path) -> Result<String, String>;

    /// The directory, relative to what this reader reads, of a file named `file` in messages.
    fn dir_of(&self, file: &Path) -> PathBuf {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// The directory `path` names on this machine, for `--find-links DIR`.
    fn local_dir(&self, path: &Path) -> Result<PathBuf, String> {
        Err(format!(
            "--find-links {}: a directory of wheels is read only from a requirements file on disk; use an index URL",
            path.display()
        ))
    }
}

/// Requirement lines that may name no other file (the service reads none).
pub struct NoFiles;

impl RequirementFiles for NoFiles {
    fn read(&self, path: &Path) -> Result<String, String> {
        Err(format!(
            "{} is not read here: list its requirements in place",
            path.display()
        ))
    }
}

/// Files read from a directory on disk, never outside it.
pub struct DirFiles(pub PathBuf);

impl RequirementFiles for DirFiles {
    fn read(&self, path: &Path) -> Result<String, String> {
        let full = self.0.join(path);
        let text =
            std::fs::read(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        if text.len() > MAX_REQUIREMENTS_BYTES {
            return Err(format!(
                "{} is larger than {MAX_REQUIREMENTS_BYTES} bytes",
                full.display()
            ));
        }
        String::from_utf8(text).map_err(|_| format!("{} is not UTF-8 text", full.display()))
    }

    fn local_dir(&self, path: &Path) -> Result<PathBuf, String> {
        Ok(self.0.join(path))
    }

    fn dir_of(&self, file: &Path) -> PathBuf {
        let parent = file.parent().unwrap_or(Path::new(""));
        match std::path::absolute(parent) {
            Ok(absolute) => absolute
                .strip_prefix(&self.0)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| parent.to_path_buf()),
            Err(_) => parent.to_path_buf(),
        }
    }
}

/// Files of a repository: path relative to its root → text. Paths are
/// named in messages after `prefix` (`URL@COMMIT:`), which lookups strip.
pub struct MapFiles {
    /// The files.
    pub files: BTreeMap<String, String>,
    /// What file paths start with in messages.
    pub prefix: String,
}

impl RequirementFiles for MapFiles {
    fn read(&self, path: &Path) -> Result<String, String> {
        let shown = path.to_string_lossy();
        let key = shown.strip_prefix(self.prefix.as_str()).unwrap_or(&shown);
        self.files
            .get(key)
            .cloned()
            .ok_or_else(|| format!("{key} is not a text file of the repository"))
    }

    fn dir_of(&self, file: &Path) -> PathBuf {
        let shown = file.to_string_lossy();
        let key = shown.strip_prefix(self.prefix.as_str()).unwrap_or(&shown);
        Path::new(key)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// The logical lines of a requirements file: comments dropped, `\` continuations joined.
pub fn lines_of(text: &str, file: &Path) -> Vec<RequirementLine> {
    let mut lines = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let stripped = strip_comment(raw);
        let (part, continued) = match stripped.strip_suffix('\\') {
            Some(p) => (p, true),
            None => (stripped, false),
        };
        let (mut joined, start) = pending.take().unwrap_or((String::new(), i + 1));
        joined.push_str(part);
        if continued {
            joined.push(' ');
            pending = Some((joined, start));
        } else if !joined.trim().is_empty() {
            lines.push(RequirementLine {
                text: joined.trim().to_string(),
                file: file.to_path_buf(),
                line: Some(start),
            });
        }
    }
    if let Some((joined, start)) = pending.filter(|(j, _)| !j.trim().is_empty()) {
        lines.push(RequirementLine {
            text: joined.trim().to_string(),
            file: file.to_path_buf(),
            line: Some(start),
        });
    }
    lines
}

/// A line without its comment: `#` at the start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Reads requirement lines (and the files they include) into what they ask for.
pub fn parse_requirements(
    lines: &[RequirementLine],
    files: &dyn RequirementFiles,
) -> Result<PypiRequirements, PypiError> {
    let mut parser = Parser {
        files,
        out: PypiRequirements {
            origin: lines.first().map(|l| (l.file.clone(), l.line)),
            ..PypiRequirements::default()
        },
        depth: 0,
        seen: BTreeSet::new(),
    };
    for line in lines {
        parser.line(line, false)?;
    }
    Ok(parser.out)
}

/// The state of a reading.
struct Parser<'a> {
    files: &'a dyn RequirementFiles,
    out: PypiRequirements,
    depth: usize,
    seen: BTreeSet<PathBuf>,
}

/// A located error in a requirement line.
fn line_err(at: &RequirementLine, message: String) -> PypiError {
    PypiError::Requirement {
        file: at.file.clone(),
        line: at.line,
        message,
    }
}

impl Parser<'_> {
    /// One logical line: an option, or a requirement with its `--hash` options.
    fn line(&mut self, at: &RequirementLine, constraint: bool) -> Result<(), PypiError> {
        let text = at.text.trim();
        if text.starts_with('-') {
            return self.option(at, text, constraint);
        }
        let (requirement, hashes) = split_hashes(text).map_err(|m| line_err(at, m))?;
        let requirement = parse_requirement(requirement).map_err(|m| line_err(at, m))?;
        if !hashes.is_empty() {
            self.out
                .hashes
                .entry(requirement.name.clone())
                .or_default()
                .extend(hashes);
        }
        if constraint {
            self.out.constraints.push(requirement);
        } else {
            self.out.requirements.push(requirement);
        }
        Ok(())
    }

    /// An option line.
    fn option(
        &mut self,
        at: &RequirementLine,
        text: &str,
        constraint: bool,
    ) -> Result<(), PypiError> {
        let (name, value) = split_option(text);
        let need = |value: Option<&str>| {
            value
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| line_err(at, format!("{name} needs a value")))
        };
        match name {
            "-r" | "--requirement" => self.include(at, &need(value)?, constraint),
            "-c" | "--constraint" => self.include(at, &need(value)?, true),
            "-i" | "--index-url" => {
                self.out.index.index_url = index_url(at, &need(value)?)?;
                self.out.index_named = true;
                Ok(())
            }
            "--extra-index-url" => {
                let url = index_url(at, &need(value)?)?;
                self.out.index.extra_index_urls.push(url);
                self.out.index_named = true;
                Ok(())
            }
            "-f" | "--find-links" => {
                let links = self.find_links(at, &need(value)?)?;
                self.out.index.find_links.push(links);
                self.out.index_named = true;
                Ok(())
            }
            "--no-index" => {
                self.out.index.no_index = true;
                Ok(())
            }
            "--pre" => {
                self.out.pre = true;
                Ok(())
            }
            "--require-hashes" => {
                self.out.require_hashes = true;
                Ok(())
            }
            // trousse installs wheels only, so these say what it does anyway
            "--only-binary" | "--prefer-binary" | "--trusted-host" | "--use-feature" => Ok(()),
            _ => Err(line_err(at, unsupported_option(name))),
        }
    }

    /// `-r`/`-c FILE`: the file's lines, read through the file reader.
    fn include(
        &mut self,
        at: &RequirementLine,
        path: &str,
        constraint: bool,
    ) -> Result<(), PypiError> {
        if path.contains("://") {
            return Err(line_err(
                at,
                format!("-r/-c {path}: requirement files are read from the repository or disk, not from URLs"),
            ));
        }
        let dir = self.files.dir_of(&at.file);
        let relative = relative_to(&dir, path).map_err(|m| line_err(at, m))?;
        if self.depth >= MAX_INCLUDE_DEPTH || !self.seen.insert(relative.clone()) {
            return Err(line_err(
                at,
                format!(
                    "{path} is included again or too deeply (at most {MAX_INCLUDE_DEPTH} levels)"
                ),
            ));
        }
        let text = self.files.read(&relative).map_err(|m| line_err(at, m))?;
        self.depth += 1;
        for line in lines_of(&text, &relative) {
            self.line(&line, constraint)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// `--find-links`: a URL, or a directory next to the file.
    fn find_links(&self, at: &RequirementLine, value: &str) -> Result<FindLinks, PypiError> {
        if value.contains("://") {
            return Ok(FindLinks::Url(index_url(at, value)?));
        }
        let relative =
            relative_to(&self.files.dir_of(&at.file), value).map_err(|m| line_err(at, m))?;
        let dir = self
            .files
            .local_dir(&relative)
            .map_err(|m| line_err(at, m))?;
        Ok(FindLinks::Dir(dir))
    }
}

/// `--name=value`, `--name value` or `-x value`.
fn split_option(text: &str) -> (&str, Option<&str>) {
    if let Some((name, value)) = text.split_once('=').filter(|(n, _)| !n.contains(' ')) {
        return (name, Some(value.trim()));
    }
    match text.split_once(char::is_whitespace) {
        Some((name, value)) => (name, Some(value.trim())),
        None => (text, None),
    }
}

/// What to do about an option trousse does not take.
fn unsupported_option(name: &str) -> String {
    match name {
        "-e" | "--editable" => format!(
            "{name}: editable installs are not supported: trousse installs released wheels; publish the package or list its dependencies"
        ),
        "--no-binary" => format!(
            "{name}: trousse installs wheels only and runs no build backends; remove --no-binary"
        ),
        _ => format!("unknown or unsupported option {}", crate::error::clip(name, 60)),
    }
}

/// A requirement line's requirement and its `--hash=sha256:…` values.
fn split_hashes(text: &str) -> Result<(&str, Vec<String>), String> {
    let Some(start) = text.find(" --hash").or_else(|| text.find("\t--hash")) else {
        return Ok((text, Vec::new()));
    };
    let (requirement, options) = text.split_at(start);
    let mut hashes = Vec::new();
    let words: Vec<&str> = options.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let value = match words[i].strip_prefix("--hash") {
            Some(rest) if rest.starts_with('=') => &rest[1..],
            Some("") if i + 1 < words.len() => {
                i += 1;
                words[i]
            }
            _ => {
                return Err(format!(
                    "unexpected '{}' after a requirement",
                    crate::error::clip(words[i], 60)
                ))
            }
        };
        hashes.push(sha256_of(value)?);
        i += 1;
    }
    Ok((requirement.trim(), hashes))
}

/// The lowercase hex digest of a `sha256:HEX` hash option.
fn sha256_of(value: &str) -> Result<String, String> {
    match value.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hex.to_ascii_lowercase())
        }
        Some(("sha256", _)) => Err(format!("--hash={value}: a sha256 is 64 hexadecimal digits")),
        _ => Err(format!(
            "--hash={}: only sha256 hashes are checked",
            crate::error::clip(value, 80)
        )),
    }
}

/// One requirement, refusing what trousse cannot install.
pub fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let looks_like_path = text.starts_with('.') || text.starts_with('/') || text.starts_with('~');
    if looks_like_path || text.starts_with("file:") {
        return Err(format!(
            "'{}': local paths are not installed (no build backends run at image build time); publish a wheel to an index, or list the project's dependencies",
            crate::error::clip(text, 100)
        ));
    }
    let vcs = ["git+", "hg+", "svn+", "bzr+"];
    if vcs.iter().any(|p| text.contains(p)) {
        return Err(format!(
            "'{}': VCS requirements are not supported yet: they would need a build at image build time; require a released version from an index",
            crate::error::clip(text, 100)
        ));
    }
    let requirement = Requirement::from_str(text).map_err(|e| {
        format!(
            "invalid requirement '{}': {e}",
            crate::error::clip(text, 100)
        )
    })?;
    if let Some(VersionOrUrl::Url(url)) = &requirement.version_or_url {
        return Err(format!(
            "'{}': direct URL requirements ({url}) are not supported yet: require the package by name and version from an index",
            requirement.name
        ));
    }
    Ok(requirement)
}

/// An index URL from an option, checked to be http(s) or file.
fn index_url(at: &RequirementLine, value: &str) -> Result<Url, PypiError> {
    let url = Url::parse(value).map_err(|e| {
        line_err(
            at,
            format!(
                "invalid index URL '{}': {e}",
                crate::error::clip(value, 100)
            ),
        )
    })?;
    match url.scheme() {
        "http" | "https" | "file" => Ok(url),
        other => Err(line_err(
            at,
            format!("index URLs are http, https or file, not {other}"),
        )),
    }
}

/// `path` relative to `dir` (itself relative to the reader's root), lexically, never above the root.
fn relative_to(dir: &Path, path: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    if Path::new(path).is_absolute() {
        return Err(format!(
            "{path}: name files relative to the requirements file"
        ));
    }
    let joined = dir.join(path);
    for component in joined.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir if out.pop() => {}
            _ => {
                return Err(format!(
                    "{path} lies outside the directory of the requirements"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, files: &[(&str, &str)]) -> Result<PypiRequirements, PypiError> {
        let files = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let map = MapFiles {
            files,
            prefix: String::new(),
        };
        parse_requirements(&lines_of(text, Path::new("requirements.txt")), &map)
    }

    #[test]
    fn reads_requirements_options_and_includes() {
        let text = "# course\nnumpy>=1.26  # conda's\n-r more.txt\n-c pins.txt\n--index-url https://u:p@example.org/simple\n--extra-index-url http://127.0.0.1:1/simple\n-f https://example.org/links/\n--pre\nrequests[socks] ==2.* ; python_version >= '3.8' \\\n   --hash=sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
        let got = parse(text, &[("more.txt", "attrs\n"), ("pins.txt", "attrs<24\n")]).unwrap();
        let names: Vec<String> = got
            .requirements
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(names, ["numpy", "attrs", "requests"]);
        assert_eq!(got.constraints.len(), 1);
        assert!(got.pre && got.index_named);
        assert_eq!(got.index.index_url.host_str(), Some("example.org"));
        assert_eq!(got.index.extra_index_urls.len(), 1);
        assert_eq!(got.index.find_links.len(), 1);
        let hashes = &got.hashes[&PackageName::from_str("requests").unwrap()];
        assert_eq!(hashes.iter().next().unwrap(), &"a".repeat(64));
    }

    #[test]
    fn refuses_what_is_not_installed_with_its_line() {
        for (text, word) in [
            ("-e .", "editable"),
            ("git+https://example.org/x.git", "VCS"),
            ("./local", "local paths"),
            (
                "pkg @ https://example.org/pkg-1.0-py3-none-any.whl",
                "direct URL",
            ),
            ("--no-binary :all:", "wheels only"),
            ("numpy --hash=md5:abc", "sha256"),
            ("-r ../../etc/passwd", "outside"),
            ("-f wheels", "directory of wheels"),
            ("numpy >= = 2", "invalid requirement"),
        ] {
            let e = parse(&format!("attrs\n{text}\n"), &[]).unwrap_err();
            assert!(e.to_string().contains(word), "{text}: {e}");
            assert!(e.to_string().contains("requirements.txt:2"), "{text}: {e}");
            assert_eq!(e.class().exit_code(), 3);
        }
    }

    #[test]
    fn includes_cannot_loop() {
        let e = parse("-r a.txt\n", &[("a.txt", "-r a.txt\n")]).unwrap_err();
        assert!(e.to_string().contains("again"), "{e}");
    }
}
