//! Credentials by host: a configured URL's userinfo (its host and port, or
//! what the command line took out of its input for that host: see
//! `crate::net::credentials`), else netrc, else `TROUSSE_PYPI_USERNAME`/`_PASSWORD`
//! for configured hosts; never in an error, log or `Debug`.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    path::PathBuf,
};

use url::Url;

pub(super) use crate::pypi::error::without_credentials;

/// A user name and password, never shown.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Basic {
    /// The user name.
    pub(super) username: String,
    /// The password, if any.
    pub(super) password: Option<String>,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Basic(<redacted>)")
    }
}

impl Basic {
    /// The credentials in a URL's userinfo, percent-decoded.
    fn from_url(url: &Url) -> Option<Self> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        if url.username().is_empty() && url.password().is_none() {
            return None;
        }
        Some(Basic {
            username: decode(url.username()),
            password: url.password().map(decode),
        })
    }
}

/// The entries of a netrc file.
#[derive(Debug, Default)]
struct Netrc {
    /// `machine HOST login … password …`, by host.
    machines: HashMap<String, Basic>,
    /// `default login … password …`.
    default: Option<Basic>,
}

impl Netrc {
    /// Parses a netrc file (`macdef` bodies skipped, comments ignored).
    fn parse(text: &str) -> Self {
        let mut netrc = Netrc::default();
        let mut host: Option<Option<String>> = None; // Some(None): default
        let mut current = Basic {
            username: String::new(),
            password: None,
        };
        let mut tokens = netrc_tokens(text).into_iter();
        while let Some(token) = tokens.next() {
            match token.as_str() {
                "machine" | "default" => {
                    netrc.finish(host.take(), std::mem::replace(&mut current, Basic::empty()));
                    host = Some(if token == "machine" {
                        tokens.next()
                    } else {
                        None
                    });
                }
                "login" => current.username = tokens.next().unwrap_or_default(),
                "password" => current.password = tokens.next(),
                "account" => {
                    tokens.next();
                }
                _ => {}
            }
        }
        netrc.finish(host, current);
        netrc
    }

    /// Records the entry just read.
    fn finish(&mut self, host: Option<Option<String>>, basic: Basic) {
        if basic.username.is_empty() && basic.password.is_none() {
            return;
        }
        match host {
            Some(Some(host)) => {
                self.machines
                    .entry(host.to_ascii_lowercase())
                    .or_insert(basic);
            }
            Some(None) => self.default = self.default.take().or(Some(basic)),
            None => {}
        }
    }
}

impl Basic {
    /// No credentials yet.
    fn empty() -> Self {
        Basic {
            username: String::new(),
            password: None,
        }
    }
}

/// The tokens of a netrc file: words, `"quoted words"`, no comments or `macdef` bodies.
fn netrc_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut in_macdef = false;
    for line in text.lines() {
        if in_macdef {
            in_macdef = !line.trim().is_empty();
            continue;
        }
        if line.trim_start().starts_with('#') {
            continue;
        }
        for word in line.split_whitespace() {
            let word = word.trim_matches('"');
            in_macdef |= word == "macdef";
            tokens.push(word.to_string());
        }
    }
    tokens
}

/// A host and port, as credentials are scoped.
type HostKey = (String, u16);

/// The host and port of a URL.
fn host_key(url: &Url) -> Option<HostKey> {
    Some((
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

/// The credentials of each host, from the configured URLs, netrc and the environment.
#[derive(Debug, Default)]
pub(super) struct Credentials {
    /// From the userinfo of configured URLs.
    by_host: HashMap<HostKey, Basic>,
    /// The netrc file.
    netrc: Netrc,
    /// `TROUSSE_PYPI_USERNAME` and `TROUSSE_PYPI_PASSWORD`.
    env: Option<Basic>,
    /// The hosts of the configured indexes and find-links.
    configured: HashSet<HostKey>,
}

impl Credentials {
    /// Credentials for the configured URLs, with netrc and the environment of this process.
    pub(super) fn from_environment(urls: &[&Url]) -> Self {
        let netrc_path = std::env::var_os("NETRC")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|home| home.join(".netrc")));
        let netrc = match netrc_path.map(std::fs::read_to_string) {
            Some(Ok(text)) => Netrc::parse(&text),
            _ => Netrc::default(),
        };
        let env = match (
            std::env::var("TROUSSE_PYPI_USERNAME"),
            std::env::var("TROUSSE_PYPI_PASSWORD"),
        ) {
            (Ok(username), Ok(password)) => Some(Basic {
                username,
                password: Some(password),
            }),
            _ => None,
        };
        Self::new(urls, netrc, env)
    }

    /// Credentials for the configured URLs, given netrc's entries and the environment's.
    fn new(urls: &[&Url], netrc: Netrc, env: Option<Basic>) -> Self {
        let mut by_host = HashMap::new();
        let mut configured = HashSet::new();
        for url in urls {
            let Some(key) = host_key(url) else { continue };
            // the userinfo the command line took out of its input's URLs
            let taken =
                crate::net::credentials::taken_for(&key.0).map(|(username, password)| Basic {
                    username,
                    password: Some(password).filter(|p| !p.is_empty()),
                });
            if let Some(basic) = Basic::from_url(url).or(taken) {
                by_host.entry(key.clone()).or_insert(basic);
            }
            configured.insert(key);
        }
        Credentials {
            by_host,
            netrc,
            env,
            configured,
        }
    }

    /// The credentials sent to `url`, if any.
    pub(super) fn for_url(&self, url: &Url) -> Option<&Basic> {
        let key = host_key(url)?;
        if let Some(basic) = self.by_host.get(&key) {
            return Some(basic);
        }
        if let Some(basic) = self.netrc.machines.get(&key.0) {
            return Some(basic);
        }
        if !self.configured.contains(&key) {
            return None;
        }
        self.env.as_ref().or(self.netrc.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::index::{FindLinks, IndexConfig};

    #[test]
    fn credentials_are_scoped_and_never_shown() {
        let netrc = Netrc::parse(
            "# comment\nmachine netrc.example login alice password \"p1\"\n\
             macdef init\n  machine evil.example login x password y\n\n\
             default login dflt password p3\n",
        );
        assert!(!netrc.machines.contains_key("evil.example"));
        let index = Url::parse("https://bob:s%40cret@private.example/simple/").unwrap();
        let other = Url::parse("https://configured.example/simple/").unwrap();
        let env = Some(Basic {
            username: "env".into(),
            password: Some("p2".into()),
        });
        let credentials = Credentials::new(&[&index, &other], netrc, env);
        let user = |u: &str| {
            let url = Url::parse(u).unwrap();
            credentials.for_url(&url).map(|b| b.username.clone())
        };
        let private = credentials.for_url(&index).unwrap();
        assert_eq!(private.password.as_deref(), Some("s@cret"));
        assert_eq!(
            user("https://private.example/files/x.whl").as_deref(),
            Some("bob")
        );
        assert_eq!(user("http://private.example/simple/"), None);
        assert_eq!(user("https://netrc.example/x").as_deref(), Some("alice"));
        assert_eq!(user("https://configured.example/x").as_deref(), Some("env"));
        assert_eq!(user("https://elsewhere.example/x"), None);
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("s@cret") && !shown.contains("p1") && !shown.contains("p2"));
        let config = IndexConfig {
            index_url: index.clone(),
            extra_index_urls: vec![index.clone()],
            find_links: vec![FindLinks::Url(index)],
            no_index: false,
            allowed_hosts: None,
        };
        assert!(!format!("{config:?}").contains("cret"), "{config:?}");
    }
}
