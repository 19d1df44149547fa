//! Repository addresses as users type them (`https://`, `ssh://`,
//! `git@host:path`, `git://`, `file://`), with the ref that may follow `@`,
//! and the policy that says which of them a build may reach.

use std::time::Duration;

use url::Url;

use super::RepoError;

/// A repository address: the URL git is given (never with a password) and
/// the credentials that were written into it, kept apart.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoAddress {
    /// The URL, without password.
    pub url: Url,
    /// The ref written after `@`, if any.
    pub reference: Option<String>,
    /// A password or token written into the URL, handed to git only on request.
    pub password: Option<String>,
}

impl std::fmt::Debug for RepoAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoAddress")
            .field("url", &self.url.as_str())
            .field("reference", &self.reference)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

const SCHEMES: [&str; 5] = ["https", "http", "ssh", "git", "file"];

/// Whether `input` is written as a repository address rather than a path.
pub fn is_repository_address(input: &str) -> bool {
    SCHEMES
        .iter()
        .any(|s| input.starts_with(&format!("{s}://")))
        || scp_like(input).is_some()
}

/// `user@host:path` (git's scp-like syntax) as `ssh://user@host/path`.
fn scp_like(input: &str) -> Option<String> {
    if input.contains("://") {
        return None;
    }
    let (authority, path) = input.split_once(':')?;
    let (user, host) = authority.split_once('@')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    };
    (plain(user) && plain(host) && !path.is_empty())
        .then(|| format!("ssh://{user}@{host}/{}", path.trim_start_matches('/')))
}

impl RepoAddress {
    /// Parses an address; a ref may follow the last path segment as `@REF`.
    pub fn parse(input: &str) -> Result<Self, RepoError> {
        let bad = |reason: &str| RepoError::Address {
            input: crate::error::clip(input, 200).into_owned(),
            reason: reason.to_string(),
        };
        let text = scp_like(input).unwrap_or_else(|| input.to_string());
        let mut url = Url::parse(&text).map_err(|e| bad(&e.to_string()))?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(bad(
                "use https://, ssh://, git@host:path, git:// or file://",
            ));
        }
        if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
            return Err(bad("it names no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "a repository URL has no query or fragment; give the ref as URL@REF or --ref",
            ));
        }
        let reference = split_reference(&mut url).map_err(|r| bad(&r))?;
        let password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        // the secret never reaches git's URL, nor any message made from it
        let _ = url.set_password(None);
        Ok(Self {
            url,
            reference,
            password,
        })
    }

    /// The URL for messages and labels: no credentials at all.
    pub fn display(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        url.to_string()
    }

    /// The host and port, as the allow-list matches them (`host` or `host:port`).
    pub fn host_port(&self) -> (String, Option<u16>) {
        (
            self.url.host_str().unwrap_or_default().to_ascii_lowercase(),
            self.url.port(),
        )
    }

    /// Resolves a submodule URL (absolute, or relative like `../lib.git`) against this one.
    pub fn join(&self, submodule_url: &str) -> Result<RepoAddress, RepoError> {
        if submodule_url.starts_with("./") || submodule_url.starts_with("../") {
            let mut base = self.url.clone();
            let path = format!("{}/", base.path().trim_end_matches('/'));
            base.set_path(&path);
            let joined = base.join(submodule_url).map_err(|e| RepoError::Address {
                input: submodule_url.into(),
                reason: e.to_string(),
            })?;
            return Ok(RepoAddress {
                url: joined,
                reference: None,
                password: None,
            });
        }
        let mut address = RepoAddress::parse(submodule_url)?;
        address.reference = None;
        Ok(address)
    }
}

/// Takes `@REF` off the end of the URL's path.
fn split_reference(url: &mut Url) -> Result<Option<String>, String> {
    let path = url.path().to_string();
    let last = path.rsplit('/').next().unwrap_or_default();
    let Some((_, reference)) = last.rsplit_once('@') else {
        return Ok(None);
    };
    let reference = percent_encoding::percent_decode_str(reference)
        .decode_utf8()
        .map_err(|_| "the ref after @ is not UTF-8".to_string())?
        .into_owned();
    check_reference(&reference)?;
    url.set_path(&path[..path.len() - reference.len() - 1]);
    Ok(Some(reference))
}

/// Refuses what git itself refuses in a ref name (and anything that could be an option).
pub(super) fn check_reference(reference: &str) -> Result<(), String> {
    let bad = reference.is_empty()
        || reference.len() > 255
        || reference.starts_with(['-', '/', '.'])
        || reference.ends_with(['/', '.'])
        || reference.contains("..")
        || reference.contains("//")
        || reference.contains("@{")
        || reference
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        return Err(format!(
            "'{}' is not a valid branch, tag or commit name",
            crate::error::clip(reference, 80)
        ));
    }
    Ok(())
}

/// How deep a repository's directories may nest unless configured: far
/// beyond any real repository, far below what a stack or a path can hold.
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// The longest path of a file in a repository, in bytes (Linux's `PATH_MAX`).
pub(super) const MAX_PATH_BYTES: usize = 4096;

/// Bounds on what one repository may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoLimits {
    /// Bytes received over the network, and bytes of files read (each).
    pub max_bytes: u64,
    /// Files, directories and links in the tree, submodules included.
    pub max_files: u64,
    /// How deep directories may nest (path components), submodules included.
    pub max_depth: usize,
    /// Time for all fetches of one repository.
    pub timeout: Duration,
}

impl Default for RepoLimits {
    fn default() -> Self {
        Self {
            max_bytes: 2 << 30,
            max_files: 100_000,
            max_depth: DEFAULT_MAX_DEPTH,
            timeout: Duration::from_secs(1800),
        }
    }
}

/// Which repositories a build may fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPolicy {
    /// Hosts (`host` or `host:port`) that may be fetched from; `None`: any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// Whether `file://` addresses (local paths) may be read.
    pub allow_local: bool,
    /// Whether the user's own git credential helpers, ssh agent and
    /// `TROUSSE_GIT_TOKEN` may answer a repository's request for credentials.
    pub use_user_credentials: bool,
    /// The limits.
    pub limits: RepoLimits,
}

impl GitPolicy {
    /// The command line's policy: any host, local repositories too, generous limits.
    pub fn command_line() -> Self {
        Self {
            allowed_hosts: None,
            allow_local: true,
            use_user_credentials: true,
            limits: RepoLimits::default(),
        }
    }

    /// A service's policy: only these hosts, never a local path.
    pub fn hosts(allowed_hosts: Vec<String>, limits: RepoLimits) -> Self {
        Self {
            allowed_hosts: Some(allowed_hosts),
            allow_local: false,
            use_user_credentials: false,
            limits,
        }
    }

    /// Checks that `address` may be fetched; `parent` is the repository a submodule belongs to.
    pub fn check(
        &self,
        address: &RepoAddress,
        parent: Option<&RepoAddress>,
    ) -> Result<(), RepoError> {
        let refuse = |reason: String| RepoError::Refused {
            url: address.display(),
            reason,
        };
        if address.url.scheme() == "file" {
            let parent_local = parent.is_none_or(|p| p.url.scheme() == "file");
            if !self.allow_local || !parent_local {
                return Err(refuse(
                    "a local path (file://) is not read here: give a network URL".into(),
                ));
            }
            return Ok(());
        }
        let Some(allowed) = &self.allowed_hosts else {
            return Ok(());
        };
        if address.url.scheme() == "ssh" {
            // ssh needs keys a service does not hold, and libgit2's ssh cannot be bounded in time
            return Err(refuse(
                "the service fetches over https:// or git:// only; give the repository's https:// URL (a private one with the course's git token)".into(),
            ));
        }
        let (host, port) = address.host_port();
        let with_port = port.map(|p| format!("{host}:{p}"));
        // `host` allows every port of it, `host:port` that port only
        let listed = allowed
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .any(|a| a == host || Some(&a) == with_port.as_ref());
        if allowed.is_empty() {
            return Err(refuse(
                "no git host is allowed here; an administrator allows hosts with --allow-git-host"
                    .into(),
            ));
        }
        if !listed {
            return Err(refuse(format!(
                "host {} is not among the allowed git hosts ({}); ask an administrator to add it",
                with_port.as_deref().unwrap_or(&host),
                allowed.join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_their_refs() {
        let a = RepoAddress::parse("https://gitlab.example.org/intro/course@2026").unwrap();
        assert_eq!(a.url.as_str(), "https://gitlab.example.org/intro/course");
        assert_eq!(a.reference.as_deref(), Some("2026"));
        let s = RepoAddress::parse("git@github.com:org/repo.git@main").unwrap();
        assert_eq!(s.url.as_str(), "ssh://git@github.com/org/repo.git");
        assert_eq!(s.reference.as_deref(), Some("main"));
        let g = RepoAddress::parse("git://127.0.0.1:9418/course.git").unwrap();
        assert_eq!(g.reference, None);
        assert!(RepoAddress::parse("file:///srv/course").is_ok());
        assert!(is_repository_address("git@host:x"));
        assert!(!is_repository_address("environment.yml"));
        assert!(!is_repository_address("./dir"));
    }

    #[test]
    fn passwords_never_reach_the_url() {
        let a = RepoAddress::parse("https://teacher:s3cr%40t@git.example.org/c.git").unwrap();
        assert_eq!(a.password.as_deref(), Some("s3cr@t"));
        assert!(!a.url.as_str().contains("s3cr"));
        assert!(!a.display().contains("teacher"));
        assert!(!format!("{a:?}").contains("s3cr"));
    }

    #[test]
    fn bad_addresses_and_refs_are_refused() {
        for bad in [
            "ftp://host/x",
            "https://",
            "https://host/x?ref=main",
            "https://host/x@--upload-pack=evil",
            "https://host/x@a..b",
        ] {
            let e = RepoAddress::parse(bad).unwrap_err();
            assert_eq!(e.class().exit_code(), 2, "{bad}: {e}");
        }
    }

    #[test]
    fn the_policy_checks_hosts_and_local_paths() {
        let service = GitPolicy::hosts(
            vec!["gitlab.example.org".into(), "127.0.0.1:9418".into()],
            RepoLimits::default(),
        );
        let ok = RepoAddress::parse("https://gitlab.example.org/a/b").unwrap();
        service.check(&ok, None).unwrap();
        service
            .check(&RepoAddress::parse("git://127.0.0.1:9418/x").unwrap(), None)
            .unwrap();
        for refused in [
            "ssh://git@gitlab.example.org/a/b",
            "https://evil.example/a",
            "git://127.0.0.1:9419/x",
            "file:///etc",
        ] {
            let e = service
                .check(&RepoAddress::parse(refused).unwrap(), None)
                .unwrap_err();
            assert_eq!(e.class().exit_code(), 10, "{refused}: {e}");
        }
        let cli = GitPolicy::command_line();
        let local = RepoAddress::parse("file:///srv/course").unwrap();
        cli.check(&local, None).unwrap();
        let e = cli.check(&local, Some(&ok)).unwrap_err();
        assert!(e.to_string().contains("file://"), "{e}");
    }

    #[test]
    fn submodule_urls_resolve_against_their_parent() {
        let parent = RepoAddress::parse("https://host/org/course.git").unwrap();
        let sub = parent.join("../lib.git").unwrap();
        assert_eq!(sub.url.as_str(), "https://host/org/lib.git");
        let abs = parent.join("git://other/x.git").unwrap();
        assert_eq!(abs.url.host_str(), Some("other"));
    }
}
