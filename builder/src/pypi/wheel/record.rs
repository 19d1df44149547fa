//! RECORD: its CSV read and written as Python's `csv` does, sha256 hashes in
//! urlsafe base64, and the installed RECORD with paths relative to site-packages.

use std::collections::BTreeMap;
use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// A writer that hashes and counts what it writes.
pub(super) struct Hashed<W> {
    /// Where the bytes go.
    pub(super) inner: W,
    /// The sha256 of what was written.
    pub(super) hasher: Sha256,
    /// The bytes written.
    pub(super) size: u64,
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
pub(super) fn urlsafe_b64(bytes: &[u8]) -> String {
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

/// What RECORD says of a file of the archive.
pub(super) struct Listed {
    /// Its path in the archive.
    pub(super) path: String,
    /// Its sha256, urlsafe base64 without padding.
    pub(super) hash: String,
    /// Its size, when RECORD gives one.
    pub(super) size: Option<u64>,
}

impl Listed {
    /// Compares what was read with what RECORD says.
    pub(super) fn check(&self, hash: &str, size: u64) -> Result<(), String> {
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
pub(super) fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
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
pub(super) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// RECORD's rows by path: (hash, size) as written.
pub(super) fn parse_record(text: &str) -> Result<BTreeMap<String, (String, String)>, String> {
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

/// A file written: its urlsafe base64 sha256 and size.
pub(super) struct Written {
    /// The hash, as RECORD writes it.
    pub(super) hash: String,
    /// The size.
    pub(super) size: u64,
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
pub(super) fn record_text(
    written: &BTreeMap<String, Written>,
    site: &str,
    record_path: &str,
) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
