//! Credentials written into URLs (`https://user:password@host/…` in a
//! channel, a package URL, an explicit list, a lock or a pip option) never
//! travel further than the request that needs them.
//!
//! - On the command line, the text of a spec or lock is read once and the
//!   userinfo taken out of every URL in it ([`take`]): the credentials are
//!   kept in this process's memory, by host, and answered to that host's
//!   requests only (rattler's authentication middleware, and PyPI's client),
//!   so no lock, image, cache record, message or log ever holds them.
//! - The service takes no credentials from a request ([`find`] refuses it,
//!   saying where they go): an operator configures them for a host in
//!   rattler's authentication file (`RATTLER_AUTH_FILE`, else
//!   `~/.rattler/credentials.json`) or `~/.netrc`, read by [`storage`].

use std::{
    borrow::Cow,
    sync::{Arc, LazyLock},
};

use rattler_networking::{
    authentication_storage::{
        backends::{file::FileStorage, memory::MemoryStorage},
        StorageBackend,
    },
    Authentication, AuthenticationStorage,
};

/// The credentials taken out of this process's inputs, by host.
static TAKEN: LazyLock<Arc<MemoryStorage>> = LazyLock::new(|| Arc::new(MemoryStorage::new()));

/// Where a URL with credentials was found, for a message that never shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The 1-based line.
    pub line: usize,
    /// The URL, its userinfo replaced by `***`.
    pub shown: String,
}

/// One URL's userinfo in a text: the byte ranges of `userinfo@` and of the host.
struct Userinfo {
    /// `user:password@`, with its `@`.
    span: std::ops::Range<usize>,
    /// The host (and port) after it.
    host: std::ops::Range<usize>,
}

/// Whether `c` ends a URL's authority in running text.
fn ends_authority(c: char) -> bool {
    c.is_whitespace() || "/?#'\"[]<>(),;`\\".contains(c)
}

/// Every `scheme://userinfo@host` in `text`.
fn userinfos(text: &str) -> Vec<Userinfo> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        let end = text[start..]
            .find(ends_authority)
            .map_or(text.len(), |e| start + e);
        let authority = &text[start..end];
        if let Some(at) = authority.rfind('@') {
            found.push(Userinfo {
                span: start..start + at + 1,
                host: start + at + 1..end,
            });
        }
        from = end.max(start);
    }
    found
}

/// The first URL of `text` that carries credentials (the service refuses it).
pub fn find(text: &str) -> Option<Found> {
    let first = userinfos(text).into_iter().next()?;
    let line = text[..first.span.start].matches('\n').count() + 1;
    let url_start = text[..first.span.start]
        .rfind(|c: char| ends_authority(c) && c != '/')
        .map_or(0, |s| s + 1);
    let url_end = text[first.host.end..]
        .find(char::is_whitespace)
        .map_or(text.len(), |e| first.host.end + e);
    let shown = format!(
        "{}***@{}",
        &text[url_start..first.span.start],
        &text[first.host.start..url_end]
    );
    Some(Found {
        line,
        shown: crate::error::clip(&shown, 200).into_owned(),
    })
}

/// Refuses text holding a URL with credentials, saying where they go instead.
pub fn refuse(text: &str, name: &std::path::Path) -> Result<(), crate::BuildError> {
    match find(text) {
        Some(found) => Err(crate::BuildError::Credentials {
            place: format!("{}, line {}", name.display(), found.line),
            url: found.shown,
        }),
        None => Ok(()),
    }
}

/// `text` without the userinfo of its URLs, which are kept in memory for
/// their hosts' requests (the command line).
pub fn take(text: &str) -> Cow<'_, str> {
    without_userinfo(text, remember)
}

/// `text` without the userinfo of its URLs, forgotten (stored text scrubbed).
pub fn scrub(text: &str) -> Cow<'_, str> {
    without_userinfo(text, |_, _| {})
}

/// `text` without the userinfo of its URLs, each handed to `seen` (userinfo, host) first.
fn without_userinfo(text: &str, mut seen: impl FnMut(&str, &str)) -> Cow<'_, str> {
    let found = userinfos(text);
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for userinfo in &found {
        seen(
            &text[userinfo.span.start..userinfo.span.end - 1],
            &text[userinfo.host.clone()],
        );
        out.push_str(&text[copied..userinfo.span.start]);
        copied = userinfo.span.end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Removes the cache's records (small text files: repodata headers, completed
/// package records, index pages) that hold a URL with credentials, as older
/// versions wrote them; they are fetched again without. Returns how many.
pub fn scrub_cache(cache_dir: &std::path::Path) -> usize {
    const LARGEST_RECORD: u64 = 4 << 20;
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(cache_dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let small = entry.metadata().is_ok_and(|m| m.len() <= LARGEST_RECORD);
        let holds = small
            && std::fs::read(entry.path())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .is_some_and(|text| find(&text).is_some());
        if holds && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Keeps `user[:password]` for `host[:port]` (its host is the key, as rattler's storage has it).
fn remember(userinfo: &str, host: &str) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let authentication = Authentication::BasicHTTP {
        username: decode(user),
        password: decode(password),
    };
    if let Err(e) = TAKEN.store(&host, &authentication) {
        tracing::warn!("cannot keep the credentials given for {host}: {e}");
    }
}

/// The credentials of a host taken from this process's inputs, if any: (user, password).
pub fn taken_for(host: &str) -> Option<(String, String)> {
    match TAKEN.get(&host.to_ascii_lowercase()) {
        Ok(Some(Authentication::BasicHTTP { username, password })) => Some((username, password)),
        _ => None,
    }
}

/// The credentials conda requests are answered with: those taken from this
/// process's inputs, then the operator's in rattler's authentication file
/// (`RATTLER_AUTH_FILE`, else `~/.rattler/credentials.json`, the format of
/// `pixi auth login`). The system keyring is not read: a service has none,
/// and it may prompt.
pub fn storage() -> AuthenticationStorage {
    let mut storage = AuthenticationStorage::empty();
    storage.add_backend(TAKEN.clone());
    let path = std::env::var_os("RATTLER_AUTH_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".rattler").join("credentials.json")));
    if let Some(path) = path {
        match FileStorage::from_path(path) {
            Ok(file) => storage.add_backend(Arc::new(file)),
            Err(e) => tracing::warn!("rattler's authentication file cannot be read: {e}"),
        }
    }
    storage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_found_and_taken_out_of_every_url() {
        let text = "channels:\n  - https://ada:s3cr%40t@conda.example.org:8443/main\n\
                    dependencies:\n  - http://tok@mirror.example.org/x::numpy\n\
                    # git+https://github.com/org/repo@main is no userinfo\n";
        let found = find(text).unwrap();
        assert_eq!(found.line, 2);
        assert_eq!(found.shown, "https://***@conda.example.org:8443/main");
        let taken = take(text);
        assert!(!taken.contains("ada") && !taken.contains("s3cr") && !taken.contains("tok@"));
        assert!(taken.contains("https://conda.example.org:8443/main"));
        assert!(taken.contains("github.com/org/repo@main"));
        assert_eq!(
            taken_for("conda.example.org"),
            Some(("ada".into(), "s3cr@t".into()))
        );
        assert_eq!(
            taken_for("mirror.example.org"),
            Some(("tok".into(), String::new()))
        );
        assert!(find("https://conda.anaconda.org/conda-forge/ and a@b.org").is_none());
        assert!(matches!(take("no urls"), Cow::Borrowed(_)));
        assert_eq!(
            scrub("a https://u:p@h/x b http://v@g/y"),
            "a https://h/x b http://g/y"
        );
    }
}
