//! The wheel's zip archive: its entries checked (count, paths, types), and every
//! read hashed and counted against a decompression budget.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use super::bad;
use super::record::{urlsafe_b64, Listed};
use super::schemes::{read_head, rewrite_shebang};
use crate::pypi::PypiError;

/// The most entries a wheel may hold.
const MAX_ENTRIES: usize = 200_000;
/// The most bytes a wheel may decompress to, counted as they are read.
pub(super) const MAX_BYTES: u64 = 8 << 30;
/// The most bytes of a metadata file (`WHEEL`, `RECORD`, `entry_points.txt`) read into memory.
const MAX_METADATA: u64 = 64 << 20;
/// The file type bits of a unix mode, and the types a wheel may hold.
pub(super) const S_IFMT: u32 = 0o170_000;
/// A regular file.
const S_IFREG: u32 = 0o100_000;
/// A directory.
pub(super) const S_IFDIR: u32 = 0o040_000;
/// A symbolic link.
pub(super) const S_IFLNK: u32 = 0o120_000;

/// Why a relative path from an archive (or a target) is unsafe, if it is.
pub(super) fn check_path(path: &str) -> Result<(), &'static str> {
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
pub(super) struct Entry {
    /// Its index in the archive.
    pub(super) index: usize,
    /// Its path in the archive.
    pub(super) path: String,
    /// Whether its unix mode has an execute bit.
    pub(super) executable: bool,
}

/// The wheel's archive, with the bytes it may still decompress.
pub(super) struct Archive<'w> {
    /// The zip archive.
    pub(super) zip: ZipArchive<BufReader<File>>,
    /// The wheel file name, for errors.
    pub(super) wheel: &'w str,
    /// The bytes that may still be decompressed.
    pub(super) budget: u64,
}

impl Archive<'_> {
    /// A malformed or unsafe wheel.
    pub(super) fn bad(&self, problem: impl Into<String>) -> PypiError {
        bad(self.wheel, problem)
    }

    /// The regular files of the archive, every path and type checked.
    pub(super) fn entries(&self) -> Result<Vec<Entry>, PypiError> {
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
    pub(super) fn read_text(&mut self, path: &str) -> Result<Option<String>, PypiError> {
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
    pub(super) fn check_wheel_version(&mut self, dist_info: &str) -> Result<(), PypiError> {
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
    pub(super) fn copy(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
