//! Installs a wheel into a staging directory without running Python.
//!
//! The wheel is untrusted: every path is checked before anything is written,
//! every file is checked against `RECORD` while it is streamed, and the bytes
//! actually decompressed are capped. What is written depends on the wheel and
//! the [`InstallTarget`] only (modes, times and the rewritten `RECORD` are
//! normalized), so installing the same wheel twice gives identical trees.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, FileTimes, Permissions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use pep440_rs::Version;
use sha2::{Digest, Sha256};
use zip::ZipArchive;

use crate::pypi::PypiError;

/// The most entries a wheel may hold.
const MAX_ENTRIES: usize = 200_000;
/// The most bytes a wheel may decompress to, counted as they are read.
const MAX_BYTES: u64 = 8 << 30;
/// The most bytes of a metadata file (`WHEEL`, `RECORD`, `entry_points.txt`) read into memory.
const MAX_METADATA: u64 = 64 << 20;
/// The longest first line of a script looked at for a `#!python` shebang.
const MAX_SHEBANG: usize = 4096;
/// The file type bits of a unix mode, and the types a wheel may hold.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Where and how a wheel is installed.
pub struct InstallTarget<'a> {
    /// The environment prefix inside the image, e.g. "/opt/conda".
    pub prefix: &'a str,
    /// The site-packages directory relative to the prefix, e.g. "lib/python3.12/site-packages".
    pub site_packages: &'a str,
    /// The interpreter the image runs scripts with, absolute, e.g. "/opt/conda/bin/python3.12".
    pub python: &'a str,
    /// Whether the wheel was asked for directly (writes `REQUESTED`).
    pub requested: bool,
    /// The modification time (seconds since the epoch) of every file and directory written.
    pub epoch: u64,
}

/// What installing a wheel wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledWheel {
    /// Every file written, relative to the staging root (= the prefix), sorted.
    pub files: Vec<String>,
    /// The `.dist-info` directory, relative to the staging root.
    pub dist_info: String,
}

/// Unpacks `wheel` (whose file name is `file_name`) into `dest`, which stands for the prefix.
pub fn install_wheel(
    wheel: &Path,
    file_name: &str,
    target: &InstallTarget<'_>,
    dest: &Path,
) -> Result<InstalledWheel, PypiError> {
    ensure_empty(dest)?;
    let name = WheelName::parse(file_name)?;
    let layout = Layout::new(target, &name.name)?;
    let file = File::open(wheel).map_err(PypiError::io("opening the wheel", wheel))?;
    let zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad(file_name, format!("it is not a zip archive ({e})")))?;
    let mut archive = Archive {
        zip,
        wheel: file_name,
        budget: MAX_BYTES,
    };
    let entries = archive.entries()?;
    let dist_info = find_dist_info(&entries, &name, file_name)?;
    let data_dir = find_data_dir(&entries, &name, file_name)?;
    archive.check_wheel_version(&dist_info)?;
    let mut install = Install {
        archive,
        target,
        layout,
        dest,
        dist_info,
        data_dir,
    };
    install.run(&entries)
}

/// A malformed or unsafe wheel.
fn bad(wheel: &str, problem: impl Into<String>) -> PypiError {
    PypiError::BadWheel {
        wheel: wheel.to_string(),
        problem: problem.into(),
    }
}

/// A target setting trousse cannot install into (a caller's mistake, not the wheel's).
fn bad_target(what: &'static str, value: &str, why: &str) -> PypiError {
    PypiError::Io {
        action: what,
        path: value.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    }
}

/// Refuses a staging directory that holds anything.
fn ensure_empty(dest: &Path) -> Result<(), PypiError> {
    let mut listing =
        std::fs::read_dir(dest).map_err(PypiError::io("reading the staging directory", dest))?;
    match listing.next() {
        None => Ok(()),
        Some(_) => Err(PypiError::Io {
            action: "installing a wheel into",
            path: dest.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                "the staging directory is not empty",
            ),
        }),
    }
}

/// A name as PEP 503 compares it, with `_` for each run of `-_.`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('_');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// The distribution and version of a wheel file name.
struct WheelName {
    /// The distribution, as spelled in the file name.
    name: String,
    /// The version.
    version: Version,
}

impl WheelName {
    /// Reads `NAME-VERSION[-BUILD]-PY-ABI-PLATFORM.whl`.
    fn parse(file_name: &str) -> Result<Self, PypiError> {
        let problem = || {
            bad(
                file_name,
                "its file name is not NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl",
            )
        };
        let stem = file_name.strip_suffix(".whl").ok_or_else(problem)?;
        let parts: Vec<&str> = stem.split('-').collect();
        if !matches!(parts.len(), 5 | 6) || parts.iter().any(|p| p.is_empty()) {
            return Err(problem());
        }
        let version = Version::from_str(parts[1]).map_err(|_| problem())?;
        Ok(WheelName {
            name: parts[0].to_string(),
            version,
        })
    }

    /// Whether `stem` (a `.dist-info` or `.data` directory without its suffix) is this wheel's.
    fn matches(&self, stem: &str) -> bool {
        let name = normalize(&self.name);
        stem.match_indices('-').any(|(at, _)| {
            normalize(&stem[..at]) == name
                && Version::from_str(&stem[at + 1..]).is_ok_and(|v| v == self.version)
        })
    }
}

/// Where the schemes of a wheel land, relative to the prefix.
struct Layout {
    /// site-packages (purelib, platlib and the wheel's root).
    site: String,
    /// `include/pythonX.Y/NAME` (headers), when site-packages names the Python version.
    headers: Option<String>,
}

impl Layout {
    /// Checks the target and derives the scheme directories.
    fn new(target: &InstallTarget<'_>, dist: &str) -> Result<Self, PypiError> {
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
    fn map(&self, path: &str, data_dir: Option<&str>) -> Result<(String, bool), String> {
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

/// Why a relative path from an archive (or a target) is unsafe, if it is.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("it is empty");
    }
    if path.contains('\0') {
        return Err("it holds a NUL byte");
    }
    if path.contains('\\') {
        return Err("it holds a backslash");
    }
    if path.starts_with('/') {
        return Err("it is absolute");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("it has an empty component"),
            "." | ".." => return Err("it has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Why an entry's unix mode is refused, if it is.
fn check_type(mode: u32, is_dir: bool) -> Result<(), &'static str> {
    match mode & S_IFMT {
        0 | S_IFREG => Ok(()),
        S_IFDIR if is_dir => Ok(()),
        S_IFLNK => Err("it is a symbolic link"),
        _ => Err("it is not a regular file"),
    }
}

/// A regular file of the archive.
struct Entry {
    /// Its index in the archive.
    index: usize,
    /// Its path in the archive.
    path: String,
    /// Whether its unix mode has an execute bit.
    executable: bool,
}

/// The top-level directories of the archive ending in `suffix`.
fn top_dirs<'e>(entries: &'e [Entry], suffix: &str) -> BTreeSet<&'e str> {
    entries
        .iter()
        .filter_map(|e| e.path.split_once('/').map(|(top, _)| top))
        .filter(|top| top.ends_with(suffix))
        .collect()
}

/// The one `.dist-info` directory, named after the wheel.
fn find_dist_info(entries: &[Entry], name: &WheelName, wheel: &str) -> Result<String, PypiError> {
    let dirs = top_dirs(entries, ".dist-info");
    let mut dirs = dirs.into_iter();
    let (Some(dir), None) = (dirs.next(), dirs.next()) else {
        let all = top_dirs(entries, ".dist-info")
            .into_iter()
            .collect::<Vec<_>>();
        return Err(bad(
            wheel,
            format!("it must have one .dist-info directory, it has {all:?}"),
        ));
    };
    let stem = dir.strip_suffix(".dist-info").unwrap_or(dir);
    if !name.matches(stem) {
        return Err(bad(
            wheel,
            format!("its metadata directory {dir} is not named after the wheel file"),
        ));
    }
    Ok(dir.to_string())
}

/// The wheel's `.data` directory, if it has one (other `*.data` directories are ordinary files).
fn find_data_dir(
    entries: &[Entry],
    name: &WheelName,
    wheel: &str,
) -> Result<Option<String>, PypiError> {
    let dirs: Vec<&str> = top_dirs(entries, ".data")
        .into_iter()
        .filter(|dir| name.matches(dir.strip_suffix(".data").unwrap_or(dir)))
        .collect();
    match dirs.as_slice() {
        [] => Ok(None),
        [dir] => Ok(Some(dir.to_string())),
        several => Err(bad(
            wheel,
            format!("it has several .data directories {several:?}"),
        )),
    }
}

/// The wheel's archive, with the bytes it may still decompress.
struct Archive<'w> {
    /// The zip archive.
    zip: ZipArchive<BufReader<File>>,
    /// The wheel file name, for errors.
    wheel: &'w str,
    /// The bytes that may still be decompressed.
    budget: u64,
}

impl Archive<'_> {
    /// A malformed or unsafe wheel.
    fn bad(&self, problem: impl Into<String>) -> PypiError {
        bad(self.wheel, problem)
    }

    /// The regular files of the archive, every path and type checked.
    fn entries(&self) -> Result<Vec<Entry>, PypiError> {
        if self.zip.len() > MAX_ENTRIES {
            return Err(self.bad(format!("it has more than {MAX_ENTRIES} entries")));
        }
        let mut entries = Vec::new();
        let mut seen = BTreeSet::new();
        for index in 0..self.zip.len() {
            let entry = self.zip.by_index_data(index);
            let entry = entry.map_err(|e| self.bad(format!("entry {index} is unreadable: {e}")))?;
            let name = entry.name();
            let name = name.map_err(|e| self.bad(format!("entry {index} has a bad name: {e}")))?;
            let (path, is_dir) = match name.strip_suffix('/') {
                Some(path) => (path, true),
                None => (name.as_ref(), false),
            };
            let mode = entry.unix_mode().unwrap_or(0);
            check_path(path)
                .and_then(|()| check_type(mode, is_dir))
                .map_err(|why| self.bad(format!("entry {name:?} is refused: {why}")))?;
            if is_dir {
                continue;
            }
            if !seen.insert(path.to_string()) {
                return Err(self.bad(format!("{path} is in the archive twice")));
            }
            entries.push(Entry {
                index,
                path: path.to_string(),
                executable: mode & 0o111 != 0,
            });
        }
        Ok(entries)
    }

    /// A small file of the archive as text, `None` when absent.
    fn read_text(&mut self, path: &str) -> Result<Option<String>, PypiError> {
        let Some(index) = self.zip.index_for_name(path) else {
            return Ok(None);
        };
        let wheel = self.wheel;
        let unreadable =
            |e: &dyn std::fmt::Display| bad(wheel, format!("{path} is unreadable: {e}"));
        let file = self.zip.by_index(index).map_err(|e| unreadable(&e))?;
        let mut bytes = Vec::new();
        Counted::new(file, &mut self.budget)
            .take(MAX_METADATA + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(&e))?;
        if bytes.len() as u64 > MAX_METADATA {
            return Err(self.bad(format!("{path} is larger than {MAX_METADATA} bytes")));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| self.bad(format!("{path} is not UTF-8")))?;
        Ok(Some(text.trim_start_matches('\u{feff}').to_string()))
    }

    /// Refuses a wheel without `WHEEL`, `METADATA`, or of a `Wheel-Version` other than 1.x.
    fn check_wheel_version(&mut self, dist_info: &str) -> Result<(), PypiError> {
        if self
            .zip
            .index_for_name(&format!("{dist_info}/METADATA"))
            .is_none()
        {
            return Err(self.bad(format!("it has no {dist_info}/METADATA")));
        }
        let path = format!("{dist_info}/WHEEL");
        let text = self
            .read_text(&path)?
            .ok_or_else(|| self.bad(format!("it has no {path}")))?;
        let version = text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("Wheel-Version")
                .then(|| value.trim())
        });
        let version = version.ok_or_else(|| self.bad(format!("{path} has no Wheel-Version")))?;
        let major = version.split_once('.').and_then(|(major, minor)| {
            minor.parse::<u64>().ok()?;
            major.parse::<u64>().ok()
        });
        if major != Some(1) {
            return Err(self.bad(format!(
                "it is Wheel-Version {version:?}; trousse installs version 1.x wheels"
            )));
        }
        Ok(())
    }

    /// Streams an entry to `out` (a script's `#!python` rewritten), checking it against `listed`.
    fn copy(
        &mut self,
        index: usize,
        listed: &Listed,
        out: &mut impl Write,
        python: Option<&str>,
        out_path: &Path,
    ) -> Result<(), PypiError> {
        let (wheel, name) = (self.wheel, listed.path.as_str());
        let unreadable =
            |e: &dyn std::fmt::Display| bad(wheel, format!("{name} is unreadable: {e}"));
        let file = self.zip.by_index(index).map_err(|e| unreadable(&e))?;
        let mut reader = Counted::new(file, &mut self.budget);
        if let Some(python) = python {
            let head = read_head(&mut reader).map_err(|e| unreadable(&e))?;
            let head = rewrite_shebang(head, python);
            out.write_all(&head)
                .map_err(PypiError::io("writing", out_path))?;
        }
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|e| unreadable(&e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(PypiError::io("writing", out_path))?;
        }
        let (hash, size) = reader.finish();
        listed
            .check(&hash, size)
            .map_err(|problem| bad(wheel, problem))
    }
}

/// A reader that hashes and counts what it reads, against a shared budget.
struct Counted<'b, R> {
    /// The entry being read.
    inner: R,
    /// The bytes the whole archive may still decompress.
    budget: &'b mut u64,
    /// The sha256 of what was read.
    hasher: Sha256,
    /// The bytes read.
    size: u64,
}

impl<'b, R: Read> Counted<'b, R> {
    /// Starts reading `inner`.
    fn new(inner: R, budget: &'b mut u64) -> Self {
        Counted {
            inner,
            budget,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The urlsafe base64 sha256 and the size of what was read.
    fn finish(self) -> (String, u64) {
        (urlsafe_b64(&self.hasher.finalize()), self.size)
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = n as u64;
        if read > *self.budget {
            return Err(io::Error::other(format!(
                "the wheel decompresses to more than {} GiB",
                MAX_BYTES >> 30
            )));
        }
        *self.budget -= read;
        self.size += read;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes and counts what it writes.
struct Hashed<W> {
    /// Where the bytes go.
    inner: W,
    /// The sha256 of what was written.
    hasher: Sha256,
    /// The bytes written.
    size: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The urlsafe base64 encoding of `bytes`, without padding (as RECORD writes hashes).
fn urlsafe_b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The start of a script: at least its first line, unless that is longer than [`MAX_SHEBANG`].
fn read_head(reader: &mut impl Read) -> io::Result<Vec<u8>> {
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
fn rewrite_shebang(head: Vec<u8>, python: &str) -> Vec<u8> {
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

/// What RECORD says of a file of the archive.
struct Listed {
    /// Its path in the archive.
    path: String,
    /// Its sha256, urlsafe base64 without padding.
    hash: String,
    /// Its size, when RECORD gives one.
    size: Option<u64>,
}

impl Listed {
    /// Compares what was read with what RECORD says.
    fn check(&self, hash: &str, size: u64) -> Result<(), String> {
        if hash != self.hash {
            return Err(format!(
                "{} does not match its sha256 in RECORD (listed {}, read {hash})",
                self.path, self.hash
            ));
        }
        if self.size.is_some_and(|listed| listed != size) {
            return Err(format!("{} is not the size RECORD gives", self.path));
        }
        Ok(())
    }
}

/// The rows of a CSV text, as Python's `csv.reader` reads them (blank lines skipped).
fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoting, mut quoted) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoting {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoting = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => (quoting, quoted) = (true, true),
            ',' => {
                row.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                if !row.is_empty() || !field.is_empty() || quoted {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                quoted = false;
            }
            _ => field.push(c),
        }
    }
    if quoting {
        return Err("RECORD has an unterminated quote".to_string());
    }
    if !row.is_empty() || !field.is_empty() || quoted {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// A CSV field as Python's `csv.writer` writes it (quoted when it must be).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// RECORD's rows by path: (hash, size) as written.
fn parse_record(text: &str) -> Result<BTreeMap<String, (String, String)>, String> {
    let mut listed = BTreeMap::new();
    for (i, row) in csv_rows(text)?.into_iter().enumerate() {
        let fields = row.len();
        let [path, hash, size]: [String; 3] = row
            .try_into()
            .map_err(|_| format!("RECORD row {} has {fields} fields, not 3", i + 1))?;
        let value = (hash, size);
        if listed.get(&path).is_some_and(|previous| *previous != value) {
            return Err(format!("RECORD lists {path} twice"));
        }
        listed.insert(path, value);
    }
    Ok(listed)
}

/// What becomes of an archive file.
#[derive(PartialEq)]
enum Role {
    /// Installed where its scheme says.
    Installed,
    /// Checked against RECORD, then replaced by trousse's (`INSTALLER`, `REQUESTED`).
    Replaced,
    /// RECORD and its signatures: not listed in RECORD, not installed.
    Record,
}

/// Where one installed file's bytes come from.
enum Source {
    /// An archive file (a script when `script`).
    Entry {
        /// Its index in the archive.
        index: usize,
        /// Its path in the archive.
        path: String,
        /// Whether its `#!python` line is rewritten.
        script: bool,
    },
    /// Bytes trousse writes (launchers, `INSTALLER`, `REQUESTED`).
    Generated(Vec<u8>),
}

/// One file to write.
struct Output {
    /// Its bytes.
    source: Source,
    /// Whether it is made 0755 (else 0644).
    executable: bool,
}

/// A file written: its urlsafe base64 sha256 and size.
struct Written {
    /// The hash, as RECORD writes it.
    hash: String,
    /// The size.
    size: u64,
}

/// An installation in progress.
struct Install<'a> {
    /// The wheel's archive.
    archive: Archive<'a>,
    /// Where it is installed.
    target: &'a InstallTarget<'a>,
    /// The scheme directories.
    layout: Layout,
    /// The staging directory (the prefix).
    dest: &'a Path,
    /// The `.dist-info` directory in the archive.
    dist_info: String,
    /// The `.data` directory in the archive, if any.
    data_dir: Option<String>,
}

impl Install<'_> {
    /// Checks RECORD, plans every file, writes them, then RECORD, then the directories' times.
    fn run(&mut self, entries: &[Entry]) -> Result<InstalledWheel, PypiError> {
        let listed = self.listed(entries)?;
        let (outputs, replaced) = self.plan(entries)?;
        let record_path = format!("{}/{}/RECORD", self.layout.site, self.dist_info);
        let mut all: Vec<&str> = outputs.keys().map(String::as_str).collect();
        all.push(&record_path);
        let dirs = self.directories(&all)?;
        for entry in replaced {
            let listed = self.listing(&listed, &entry.path)?;
            let sink_path = self.dest.join(&entry.path);
            self.archive
                .copy(entry.index, listed, &mut io::sink(), None, &sink_path)?;
        }
        let mut written = BTreeMap::new();
        for (path, output) in &outputs {
            written.insert(path.clone(), self.write(path, output, &listed)?);
        }
        let record = record_text(&written, &self.layout.site, &record_path);
        let output = Output {
            source: Source::Generated(record.into_bytes()),
            executable: false,
        };
        self.write(&record_path, &output, &listed)?;
        stamp_directories(self.dest, &dirs, self.target.epoch)?;
        let mut files: Vec<String> = written.into_keys().collect();
        files.push(record_path);
        files.sort();
        Ok(InstalledWheel {
            files,
            dist_info: format!("{}/{}", self.layout.site, self.dist_info),
        })
    }

    /// What becomes of an archive file.
    fn role(&self, path: &str) -> Role {
        let in_dist_info = path
            .strip_prefix(self.dist_info.as_str())
            .and_then(|rest| rest.strip_prefix('/'));
        match in_dist_info {
            Some("RECORD" | "RECORD.jws" | "RECORD.p7s") => Role::Record,
            Some("INSTALLER" | "REQUESTED") => Role::Replaced,
            _ => Role::Installed,
        }
    }

    /// RECORD's hash of every archive file; refuses a file missing from either.
    fn listed(&mut self, entries: &[Entry]) -> Result<BTreeMap<String, Listed>, PypiError> {
        let path = format!("{}/RECORD", self.dist_info);
        let text = self.archive.read_text(&path)?;
        let text = text.ok_or_else(|| self.archive.bad(format!("it has no {path}")))?;
        let rows = parse_record(&text).map_err(|problem| self.archive.bad(problem))?;
        let mut listed = BTreeMap::new();
        for entry in entries
            .iter()
            .filter(|e| self.role(&e.path) != Role::Record)
        {
            let path = entry.path.clone();
            let Some((hash, size)) = rows.get(&path) else {
                return Err(self.archive.bad(format!("{path} is not listed in RECORD")));
            };
            let no_hash = || {
                self.archive
                    .bad(format!("RECORD gives no sha256 for {path}"))
            };
            let hash = hash.strip_prefix("sha256=").ok_or_else(no_hash)?;
            let size = match size.as_str() {
                "" => None,
                size => Some(size.parse::<u64>().map_err(|_| {
                    self.archive
                        .bad(format!("RECORD gives {path} the size {size:?}"))
                })?),
            };
            let hash = hash.trim_end_matches('=').to_string();
            listed.insert(path.clone(), Listed { path, hash, size });
        }
        let files: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        if let Some(missing) = rows
            .keys()
            .find(|p| self.role(p) != Role::Record && !files.contains(p.as_str()))
        {
            return Err(self
                .archive
                .bad(format!("RECORD lists {missing}, which is not in the wheel")));
        }
        Ok(listed)
    }

    /// What RECORD says of `path`.
    fn listing<'l>(
        &self,
        listed: &'l BTreeMap<String, Listed>,
        path: &str,
    ) -> Result<&'l Listed, PypiError> {
        listed
            .get(path)
            .ok_or_else(|| self.archive.bad(format!("{path} is not listed in RECORD")))
    }

    /// Every file to write by path relative to the prefix, and the entries only checked.
    fn plan<'e>(
        &mut self,
        entries: &'e [Entry],
    ) -> Result<(BTreeMap<String, Output>, Vec<&'e Entry>), PypiError> {
        let mut outputs = BTreeMap::new();
        let mut replaced = Vec::new();
        for entry in entries {
            match self.role(&entry.path) {
                Role::Record => {}
                Role::Replaced => replaced.push(entry),
                Role::Installed => self.add_entry(&mut outputs, entry)?,
            }
        }
        for (name, text) in self.launchers()? {
            self.add(
                &mut outputs,
                format!("bin/{name}"),
                Source::Generated(text),
                true,
            )?;
        }
        let dist_info = format!("{}/{}", self.layout.site, self.dist_info);
        let installer = Source::Generated(b"trousse\n".to_vec());
        self.add(
            &mut outputs,
            format!("{dist_info}/INSTALLER"),
            installer,
            false,
        )?;
        if self.target.requested {
            let requested = Source::Generated(Vec::new());
            self.add(
                &mut outputs,
                format!("{dist_info}/REQUESTED"),
                requested,
                false,
            )?;
        }
        Ok((outputs, replaced))
    }

    /// Adds an archive file to write where its scheme says.
    fn add_entry(
        &self,
        outputs: &mut BTreeMap<String, Output>,
        entry: &Entry,
    ) -> Result<(), PypiError> {
        let (dest, script) = self
            .layout
            .map(&entry.path, self.data_dir.as_deref())
            .map_err(|problem| self.archive.bad(problem))?;
        let source = Source::Entry {
            index: entry.index,
            path: entry.path.clone(),
            script,
        };
        self.add(outputs, dest, source, script || entry.executable)
    }

    /// Adds a file to write, refusing a second one at the same path.
    fn add(
        &self,
        outputs: &mut BTreeMap<String, Output>,
        dest: String,
        source: Source,
        executable: bool,
    ) -> Result<(), PypiError> {
        if outputs.contains_key(&dest) {
            return Err(self
                .archive
                .bad(format!("two of its files would install to {dest}")));
        }
        outputs.insert(dest, Output { source, executable });
        Ok(())
    }

    /// The launchers of `entry_points.txt`, by name.
    fn launchers(&mut self) -> Result<BTreeMap<String, Vec<u8>>, PypiError> {
        let path = format!("{}/entry_points.txt", self.dist_info);
        let Some(text) = self.archive.read_text(&path)? else {
            return Ok(BTreeMap::new());
        };
        let mut launchers = BTreeMap::new();
        for (name, module, attr) in parse_entry_points(&text).map_err(|p| self.archive.bad(p))? {
            let text = launcher(self.target.python, &module, &attr);
            if launchers.insert(name.clone(), text.into_bytes()).is_some() {
                let problem = format!("{path} declares the script {name} twice");
                return Err(self.archive.bad(problem));
            }
        }
        Ok(launchers)
    }

    /// Creates the directories the files need (refusing a path both file and directory).
    fn directories(&self, files: &[&str]) -> Result<BTreeSet<String>, PypiError> {
        let mut dirs = BTreeSet::new();
        for file in files {
            dirs.extend(
                file.match_indices('/')
                    .map(|(at, _)| file[..at].to_string()),
            );
        }
        let files: BTreeSet<&str> = files.iter().copied().collect();
        if let Some(both) = dirs.iter().find(|dir| files.contains(dir.as_str())) {
            return Err(self
                .archive
                .bad(format!("{both} would be both a file and a directory")));
        }
        for dir in &dirs {
            let path = self.dest.join(dir);
            std::fs::create_dir(&path).map_err(PypiError::io("creating", &path))?;
        }
        Ok(dirs)
    }

    /// Writes one file with its mode and time.
    fn write(
        &mut self,
        rel: &str,
        output: &Output,
        listed: &BTreeMap<String, Listed>,
    ) -> Result<Written, PypiError> {
        let path = self.dest.join(rel);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(PypiError::io("creating", &path))?;
        let mut out = Hashed {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
            size: 0,
        };
        match &output.source {
            Source::Entry {
                index,
                path: name,
                script,
            } => {
                let python = script.then_some(self.target.python);
                let listed = self.listing(listed, name)?;
                self.archive.copy(*index, listed, &mut out, python, &path)?;
            }
            Source::Generated(bytes) => {
                out.write_all(bytes)
                    .map_err(PypiError::io("writing", &path))?;
            }
        }
        let file = out
            .inner
            .into_inner()
            .map_err(|e| PypiError::io("writing", &path)(e.into_error()))?;
        let mode = if output.executable { 0o755 } else { 0o644 };
        stamp(&file, &path, mode, self.target.epoch)?;
        Ok(Written {
            hash: urlsafe_b64(&out.hasher.finalize()),
            size: out.size,
        })
    }
}

/// Sets the mode and the access and modification times of an open file or directory.
fn stamp(file: &File, path: &Path, mode: u32, epoch: u64) -> Result<(), PypiError> {
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(PypiError::io("setting the mode of", path))?;
    let time = UNIX_EPOCH + Duration::from_secs(epoch);
    file.set_times(FileTimes::new().set_accessed(time).set_modified(time))
        .map_err(PypiError::io("setting the time of", path))
}

/// Gives the staging directory and every directory created mode 0755 and time `epoch`.
fn stamp_directories(dest: &Path, dirs: &BTreeSet<String>, epoch: u64) -> Result<(), PypiError> {
    let paths = dirs.iter().map(|dir| dest.join(dir));
    for path in paths.chain([dest.to_path_buf()]) {
        let dir = File::open(&path).map_err(PypiError::io("opening", &path))?;
        stamp(&dir, &path, 0o755, epoch)?;
    }
    Ok(())
}

/// `path` (relative to the prefix) relative to `base`, as pip writes RECORD.
fn relative_to(path: &str, base: &str) -> String {
    let path: Vec<&str> = path.split('/').collect();
    let base: Vec<&str> = base.split('/').collect();
    let common = path
        .iter()
        .zip(&base)
        .take_while(|(a, b)| a == b)
        .count()
        .min(path.len() - 1);
    let mut parts = vec![".."; base.len() - common];
    parts.extend(&path[common..]);
    parts.join("/")
}

/// The installed RECORD: every file written, sorted by path, then RECORD itself.
fn record_text(written: &BTreeMap<String, Written>, site: &str, record_path: &str) -> String {
    let rows: BTreeMap<String, &Written> = written
        .iter()
        .map(|(path, w)| (relative_to(path, site), w))
        .collect();
    let mut text = String::new();
    for (path, w) in rows {
        text.push_str(&format!(
            "{},sha256={},{}\n",
            csv_field(&path),
            w.hash,
            w.size
        ));
    }
    text.push_str(&format!(
        "{},,\n",
        csv_field(&relative_to(record_path, site))
    ));
    text
}

/// The `(name, module, attribute)` of each console and GUI script of `entry_points.txt`.
fn parse_entry_points(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut section = "";
    let mut scripts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim();
            continue;
        }
        if section != "console_scripts" && section != "gui_scripts" {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("entry_points.txt line {line:?} has no '='"))?;
        scripts.push(parse_entry_point(name.trim(), value.trim())?);
    }
    Ok(scripts)
}

/// One `name = module:attr.sub [extras]` script, checked.
fn parse_entry_point(name: &str, value: &str) -> Result<(String, String, String), String> {
    let unsafe_name = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if unsafe_name {
        return Err(format!(
            "the entry point name {name:?} is not a safe file name"
        ));
    }
    let spec = match value.split_once('[') {
        Some((spec, extras)) if extras.trim_end().ends_with(']') => spec.trim_end(),
        Some(_) => return Err(format!("the entry point {name} = {value:?} has bad extras")),
        None => value,
    };
    let (module, attr) = spec
        .split_once(':')
        .map(|(module, attr)| (module.trim(), attr.trim()))
        .filter(|(module, attr)| dotted_identifier(module) && dotted_identifier(attr))
        .ok_or_else(|| format!("the entry point {name} = {value:?} is not module:attribute"))?;
    Ok((name.to_string(), module.to_string(), attr.to_string()))
}

/// Whether `s` is Python identifiers joined by dots.
fn dotted_identifier(s: &str) -> bool {
    s.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    })
}

/// The launcher of an entry point, as pip (installer) writes it.
fn launcher(python: &str, module: &str, attr: &str) -> String {
    let import = attr.split('.').next().unwrap_or(attr);
    format!(
        "#!{python}\n\
         # -*- coding: utf-8 -*-\n\
         import re\n\
         import sys\n\
         from {module} import {import}\n\
         if __name__ == \"__main__\":\n    \
         sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    \
         sys.exit({attr}())\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::SystemTime;
    use zip::write::SimpleFileOptions;
    use zip::ZipWriter;

    const DIST: &str = "demo_pkg-1.0.dist-info";
    const FILE: &str = "demo_pkg-1.0-py3-none-any.whl";
    const SITE: &str = "lib/python3.12/site-packages";
    const PYTHON: &str = "/opt/conda/bin/python3.12";
    const EPOCH: u64 = 1_700_000_000;
    const WHEEL: &[u8] =
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";

    /// An archive entry: path, bytes, unix mode (a symlink to the bytes with `S_IFLNK`).
    type E<'a> = (&'a str, &'a [u8], u32);

    /// The RECORD pip's wheel builders write for `entries`, in `dist_info`.
    fn record_of(entries: &[E], dist_info: &str) -> String {
        let mut text = String::new();
        for (path, bytes, _) in entries {
            let hash = urlsafe_b64(&Sha256::digest(bytes));
            let line = format!("{},sha256={hash},{}\n", csv_field(path), bytes.len());
            text.push_str(&line);
        }
        text + &format!("{dist_info}/RECORD,,\n")
    }

    /// Writes a wheel of `entries` plus a RECORD (`record`, or the right one).
    fn write_wheel(dir: &Path, entries: &[E], record: Option<&str>) -> PathBuf {
        let dist_info = entries
            .iter()
            .find_map(|(p, _, _)| p.split_once('/').filter(|(t, _)| t.ends_with(".dist-info")))
            .map_or(DIST, |(top, _)| top);
        let record = record.map_or_else(|| record_of(entries, dist_info), str::to_string);
        let path = dir.join(FILE);
        let mut zip = ZipWriter::new(File::create(&path).unwrap());
        for (name, bytes, mode) in entries {
            let options = SimpleFileOptions::default().unix_permissions(*mode);
            if mode & S_IFMT == S_IFLNK {
                let target = std::str::from_utf8(bytes).unwrap();
                zip.add_symlink(*name, target, options).unwrap();
            } else {
                zip.start_file(*name, options).unwrap();
                zip.write_all(bytes).unwrap();
            }
        }
        zip.start_file(format!("{dist_info}/RECORD"), SimpleFileOptions::default())
            .unwrap();
        zip.write_all(record.as_bytes()).unwrap();
        zip.finish().unwrap();
        path
    }

    /// METADATA and WHEEL, then `extra`.
    fn basic<'a>(extra: &[E<'a>]) -> Vec<E<'a>> {
        let mut entries: Vec<E<'a>> = vec![
            (
                "demo_pkg-1.0.dist-info/METADATA",
                b"Name: demo-pkg\nVersion: 1.0\n",
                0o644,
            ),
            ("demo_pkg-1.0.dist-info/WHEEL", WHEEL, 0o644),
        ];
        entries.extend_from_slice(extra);
        entries
    }

    fn target(requested: bool) -> InstallTarget<'static> {
        InstallTarget {
            prefix: "/opt/conda",
            site_packages: SITE,
            python: PYTHON,
            requested,
            epoch: EPOCH,
        }
    }

    /// Installs a wheel of `entries` into a fresh directory.
    fn install(
        entries: &[E],
        record: Option<&str>,
        requested: bool,
    ) -> (tempfile::TempDir, Result<InstalledWheel, PypiError>) {
        let work = tempfile::tempdir().unwrap();
        let wheel = write_wheel(work.path(), entries, record);
        let dest = work.path().join("prefix");
        std::fs::create_dir(&dest).unwrap();
        let result = install_wheel(&wheel, FILE, &target(requested), &dest);
        (work, result)
    }

    /// The problem of a refused wheel.
    fn refused(entries: &[E], record: Option<&str>) -> String {
        match install(entries, record, true).1 {
            Err(PypiError::BadWheel { wheel, problem }) => {
                assert_eq!(wheel, FILE);
                problem
            }
            Err(other) => panic!("not BadWheel: {other}"),
            Ok(installed) => panic!("installed: {installed:?}"),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    const ENTRY_POINTS: &[u8] = b"[console_scripts]\ndemo = demo.cli:main.run [extra]\n\n\
        [gui_scripts]\ndemo-gui=demo:gui\n\n[other]\nx = y:z\n";

    fn layout_entries() -> Vec<E<'static>> {
        basic(&[
            ("demo/__init__.py", b"print('hi')\n", 0o644),
            ("demo/_speed.so", b"\x7fELF", 0o755),
            ("demo/a,b.txt", b"comma", 0o600),
            ("demo_pkg-1.0.data/purelib/pure.py", b"pure\n", 0o644),
            ("demo_pkg-1.0.data/platlib/plat.py", b"plat\n", 0o644),
            (
                "demo_pkg-1.0.data/scripts/run",
                b"#!python -u\nprint(1)\n",
                0o644,
            ),
            (
                "demo_pkg-1.0.data/scripts/runw",
                b"#!pythonw\r\nprint(2)\n",
                0o644,
            ),
            (
                "demo_pkg-1.0.data/scripts/tool.sh",
                b"#!/bin/sh\necho\n",
                0o644,
            ),
            ("demo_pkg-1.0.data/data/share/demo/a.txt", b"data\n", 0o644),
            ("demo_pkg-1.0.data/headers/demo.h", b"int x;\n", 0o644),
            (
                "demo_pkg-1.0.dist-info/entry_points.txt",
                ENTRY_POINTS,
                0o644,
            ),
        ])
    }

    #[test]
    fn installs_every_scheme_where_pip_does() {
        let (work, installed) = install(&layout_entries(), None, true);
        let installed = installed.unwrap();
        assert_eq!(installed.files, expected_files());
        assert_eq!(installed.dist_info, format!("{SITE}/{DIST}"));
        let root = work.path().join("prefix");
        let site = root.join(SITE);
        assert_eq!(
            read(&root.join("bin/run")),
            format!("#!{PYTHON} -u\nprint(1)\n")
        );
        assert_eq!(
            read(&root.join("bin/runw")),
            format!("#!{PYTHON}\nprint(2)\n")
        );
        assert_eq!(read(&root.join("bin/tool.sh")), "#!/bin/sh\necho\n");
        assert_eq!(read(&root.join("share/demo/a.txt")), "data\n");
        assert_eq!(
            read(&root.join("include/python3.12/demo_pkg/demo.h")),
            "int x;\n"
        );
        assert_eq!(read(&site.join("pure.py")), "pure\n");
        assert_eq!(read(&site.join("plat.py")), "plat\n");
        for (file, want) in [
            ("bin/run", 0o755),
            ("bin/tool.sh", 0o755),
            ("bin/demo", 0o755),
            ("bin/demo-gui", 0o755),
            ("share/demo/a.txt", 0o644),
        ] {
            assert_eq!(mode(&root.join(file)), want, "{file}");
        }
        assert_eq!(mode(&site.join("demo/_speed.so")), 0o755);
        assert_eq!(mode(&site.join("demo/a,b.txt")), 0o644);
        assert_eq!(read(&site.join(DIST).join("INSTALLER")), "trousse\n");
        assert_eq!(read(&site.join(DIST).join("REQUESTED")), "");
    }

    /// What installing [`layout_entries`] writes, sorted.
    fn expected_files() -> Vec<String> {
        let mut expected: Vec<String> = [
            "bin/demo",
            "bin/demo-gui",
            "bin/run",
            "bin/runw",
            "bin/tool.sh",
            "include/python3.12/demo_pkg/demo.h",
            "share/demo/a.txt",
        ]
        .map(String::from)
        .to_vec();
        let site = [
            "demo/__init__.py",
            "demo/_speed.so",
            "demo/a,b.txt",
            "pure.py",
            "plat.py",
        ];
        expected.extend(site.map(|p| format!("{SITE}/{p}")));
        let dist_info = [
            "INSTALLER",
            "METADATA",
            "RECORD",
            "REQUESTED",
            "WHEEL",
            "entry_points.txt",
        ];
        expected.extend(dist_info.map(|p| format!("{SITE}/{DIST}/{p}")));
        expected.sort();
        expected
    }

    #[test]
    fn launchers_are_pips() {
        let (work, installed) = install(&layout_entries(), None, true);
        installed.unwrap();
        let root = work.path().join("prefix");
        let want = format!(
            "#!{PYTHON}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom demo.cli import main\n\
             if __name__ == \"__main__\":\n    \
             sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    \
             sys.exit(main.run())\n"
        );
        assert_eq!(read(&root.join("bin/demo")), want);
        assert!(read(&root.join("bin/demo-gui")).contains("from demo import gui\n"));
        assert!(read(&root.join("bin/demo-gui")).ends_with("    sys.exit(gui())\n"));
    }

    #[test]
    fn record_is_rewritten_and_matches_the_files() {
        let (work, installed) = install(&layout_entries(), None, true);
        let installed = installed.unwrap();
        let root = work.path().join("prefix");
        let site = root.join(SITE);
        let text = read(&site.join(DIST).join("RECORD"));
        assert!(text.contains("\"demo/a,b.txt\",sha256="), "{text}");
        assert!(text.starts_with("../../../bin/demo,sha256="), "{text}");
        assert!(text.ends_with(&format!("\n{DIST}/RECORD,,\n")), "{text}");
        let rows = csv_rows(&text).unwrap();
        let paths: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        let mut sorted = paths[..paths.len() - 1].to_vec();
        sorted.sort();
        assert_eq!(sorted, paths[..paths.len() - 1]);
        let mut listed = Vec::new();
        for row in &rows[..rows.len() - 1] {
            let bytes = std::fs::read(site.join(&row[0])).unwrap();
            assert_eq!(
                row[1],
                format!("sha256={}", urlsafe_b64(&Sha256::digest(&bytes)))
            );
            assert_eq!(row[2], bytes.len().to_string());
            let on_disk = std::fs::canonicalize(site.join(&row[0])).unwrap();
            listed.push(
                on_disk
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        }
        listed.push(format!("{SITE}/{DIST}/RECORD"));
        listed.sort();
        assert_eq!(listed, installed.files);
    }

    /// Every path under `root` with its mode, mtime and bytes.
    fn tree(root: &Path) -> Vec<(String, u32, SystemTime, Vec<u8>)> {
        walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                let bytes = if meta.is_file() {
                    std::fs::read(e.path()).unwrap()
                } else {
                    vec![]
                };
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                (
                    rel,
                    meta.permissions().mode(),
                    meta.modified().unwrap(),
                    bytes,
                )
            })
            .collect()
    }

    #[test]
    fn installs_are_identical_and_stamped() {
        let (first, installed) = install(&layout_entries(), None, false);
        let installed = installed.unwrap();
        assert!(!installed.files.iter().any(|f| f.ends_with("/REQUESTED")));
        let (second, again) = install(&layout_entries(), None, false);
        assert_eq!(again.unwrap(), installed);
        let (one, two) = (
            tree(&first.path().join("prefix")),
            tree(&second.path().join("prefix")),
        );
        assert_eq!(one, two);
        let epoch = UNIX_EPOCH + Duration::from_secs(EPOCH);
        for (path, mode, mtime, _) in &one {
            assert_eq!(*mtime, epoch, "{path}");
            if mode & S_IFMT == S_IFDIR {
                assert_eq!(mode & 0o7777, 0o755, "{path}");
            }
        }
        assert!(!one.iter().any(|(p, ..)| p.ends_with(".pyc")));
    }

    #[test]
    fn the_wheels_installer_is_checked_then_replaced() {
        let entries = basic(&[("demo_pkg-1.0.dist-info/INSTALLER", b"pip\n", 0o644)]);
        let (work, installed) = install(&entries, None, false);
        let installed = installed.unwrap();
        let installer = work
            .path()
            .join("prefix")
            .join(SITE)
            .join(DIST)
            .join("INSTALLER");
        assert_eq!(read(&installer), "trousse\n");
        assert_eq!(installed.files.len(), 4);
    }

    #[test]
    fn refuses_unsafe_paths_and_types() {
        let problem = refused(&basic(&[("../evil", b"x", 0o644)]), None);
        assert!(problem.contains("\"../evil\""), "{problem}");
        let problem = refused(&basic(&[("/tmp/evil", b"x", 0o644)]), None);
        assert!(problem.contains("absolute"), "{problem}");
        let problem = refused(&basic(&[("demo\\x.py", b"x", 0o644)]), None);
        assert!(problem.contains("backslash"), "{problem}");
        let problem = refused(&basic(&[("demo//x.py", b"x", 0o644)]), None);
        assert!(problem.contains("empty component"), "{problem}");
        let problem = refused(
            &basic(&[("demo/link", b"/etc/passwd", S_IFLNK | 0o777)]),
            None,
        );
        assert!(
            problem.contains("demo/link") && problem.contains("symbolic link"),
            "{problem}"
        );
    }

    #[test]
    fn refuses_what_maps_badly() {
        let entries = basic(&[
            ("demo/x.py", b"1", 0o644),
            ("demo_pkg-1.0.data/purelib/demo/x.py", b"2", 0o644),
        ]);
        let problem = refused(&entries, None);
        assert!(problem.contains("two of its files"), "{problem}");
        let problem = refused(&basic(&[("demo_pkg-1.0.data/etc/x", b"1", 0o644)]), None);
        assert!(problem.contains("unknown .data scheme"), "{problem}");
        let entries = basic(&[
            ("demo", b"1", 0o644),
            ("demo_pkg-1.0.data/purelib/demo/x", b"2", 0o644),
        ]);
        let problem = refused(&entries, None);
        assert!(problem.contains("both a file and a directory"), "{problem}");
    }

    #[test]
    fn refuses_a_record_that_does_not_match() {
        let entries = basic(&[("demo/__init__.py", b"print('hi')\n", 0o644)]);
        let mut wrong = entries.clone();
        wrong[2].1 = b"print('bye')\n";
        let problem = refused(&entries, Some(&record_of(&wrong, DIST)));
        assert!(
            problem.contains("demo/__init__.py does not match its sha256"),
            "{problem}"
        );
        let problem = refused(&entries, Some(&record_of(&entries[..2], DIST)));
        assert!(
            problem.contains("demo/__init__.py is not listed in RECORD"),
            "{problem}"
        );
        let mut more = entries.clone();
        more.push(("demo/gone.py", b"", 0o644));
        let problem = refused(&entries, Some(&record_of(&more, DIST)));
        assert!(problem.contains("RECORD lists demo/gone.py"), "{problem}");
        let unhashed = format!("{}demo/__init__.py,,\n", record_of(&entries[..2], DIST));
        let problem = refused(&entries, Some(&unhashed));
        assert!(
            problem.contains("no sha256 for demo/__init__.py"),
            "{problem}"
        );
    }

    #[test]
    fn refuses_bad_metadata() {
        let entries = vec![
            ("other-1.0.dist-info/METADATA", &b"Name: other\n"[..], 0o644),
            ("other-1.0.dist-info/WHEEL", WHEEL, 0o644),
        ];
        let problem = refused(&entries, None);
        assert!(
            problem.contains("other-1.0.dist-info is not named after"),
            "{problem}"
        );
        let v2 = &b"Wheel-Version: 2.0\n"[..];
        let entries = vec![
            (
                "demo_pkg-1.0.dist-info/METADATA",
                &b"Name: demo-pkg\n"[..],
                0o644,
            ),
            ("demo_pkg-1.0.dist-info/WHEEL", v2, 0o644),
        ];
        let problem = refused(&entries, None);
        assert!(problem.contains("Wheel-Version \"2.0\""), "{problem}");
        let problem = refused(&entries[..1], None);
        assert!(
            problem.contains("no demo_pkg-1.0.dist-info/WHEEL"),
            "{problem}"
        );
    }

    #[test]
    fn accepts_a_dist_info_spelled_differently() {
        let entries = vec![
            (
                "Demo.Pkg-1.0.0.dist-info/METADATA",
                &b"Name: demo-pkg\n"[..],
                0o644,
            ),
            ("Demo.Pkg-1.0.0.dist-info/WHEEL", WHEEL, 0o644),
        ];
        let (_work, installed) = install(&entries, None, false);
        assert_eq!(
            installed.unwrap().dist_info,
            format!("{SITE}/Demo.Pkg-1.0.0.dist-info")
        );
    }

    #[test]
    fn refuses_bad_entry_points() {
        for (text, want) in [
            (
                &b"[console_scripts]\n../x = demo:main\n"[..],
                "not a safe file name",
            ),
            (
                b"[console_scripts]\na/b = demo:main\n",
                "not a safe file name",
            ),
            (b"[gui_scripts]\n.. = demo:main\n", "not a safe file name"),
            (
                b"[console_scripts]\nx = demo-x:main\n",
                "not module:attribute",
            ),
            (b"[console_scripts]\nx = demo\n", "not module:attribute"),
            (
                b"[console_scripts]\nx = demo:main()\n",
                "not module:attribute",
            ),
            (
                b"[console_scripts]\nx = demo:main\n[gui_scripts]\nx = demo:gui\n",
                "twice",
            ),
        ] {
            let entries = basic(&[("demo_pkg-1.0.dist-info/entry_points.txt", text, 0o644)]);
            let problem = refused(&entries, None);
            assert!(problem.contains(want), "{problem}");
        }
    }

    #[test]
    fn refuses_a_non_empty_destination() {
        let work = tempfile::tempdir().unwrap();
        let wheel = write_wheel(work.path(), &basic(&[]), None);
        let result = install_wheel(&wheel, FILE, &target(false), work.path());
        assert!(matches!(result, Err(PypiError::Io { .. })));
    }

    #[test]
    fn counts_the_bytes_read() {
        let mut budget = 10;
        let mut bytes = Vec::new();
        let read = Counted::new(&[7u8; 11][..], &mut budget).read_to_end(&mut bytes);
        assert!(read.unwrap_err().to_string().contains("more than 8 GiB"));
        let mut budget = 11;
        let mut reader = Counted::new(&b"hello world"[..], &mut budget);
        reader.read_to_end(&mut bytes).unwrap();
        assert_eq!(reader.finish().1, 11);
        assert_eq!(budget, 0);
    }

    #[test]
    fn encodes_urlsafe_base64_without_padding() {
        let empty = urlsafe_b64(&Sha256::digest(b""));
        assert_eq!(empty, "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        assert_eq!(urlsafe_b64(b"f"), "Zg");
        assert_eq!(urlsafe_b64(b"fo"), "Zm8");
        assert_eq!(urlsafe_b64(b"foo"), "Zm9v");
        assert_eq!(urlsafe_b64(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn reads_csv_as_python_does() {
        let rows = csv_rows("\"a,\"\"b\",sha256=x,3\r\n\nc,,\n").unwrap();
        assert_eq!(
            rows,
            vec![vec!["a,\"b", "sha256=x", "3"], vec!["c", "", ""]]
        );
        assert!(csv_rows("\"a,b").is_err());
        assert_eq!(csv_field("a,\"b"), "\"a,\"\"b\"");
    }

    #[test]
    fn rewrites_only_python_shebangs() {
        let rewrite = |s: &str| String::from_utf8(rewrite_shebang(s.into(), "/p")).unwrap();
        assert_eq!(rewrite("#!python\nx"), "#!/p\nx");
        assert_eq!(rewrite("#!python3.12 -E -s\nx"), "#!/p -E -s\nx");
        assert_eq!(rewrite("#!python"), "#!/p\n");
        assert_eq!(rewrite("#!pythonic\nx"), "#!pythonic\nx");
        assert_eq!(rewrite("#!/usr/bin/python\nx"), "#!/usr/bin/python\nx");
    }

    #[test]
    fn checks_wheel_file_names() {
        assert!(WheelName::parse("demo-1.0-py3-none-any.whl").is_ok());
        assert!(WheelName::parse("demo-1.0-1-py3-none-any.whl").is_ok());
        assert!(WheelName::parse("demo-1.0-py3-none.whl").is_err());
        assert!(WheelName::parse("demo-1.0.tar.gz").is_err());
        assert!(WheelName::parse("demo-x!y-py3-none-any.whl").is_err());
    }
}
