//! The mirror cache: one bare repository per URL and credentials under the
//! cache directory, updated by fetch. A ref is resolved to a commit against
//! what the remote advertises, then only that ref is fetched, shallow where
//! the server allows. Every connection goes through [`super::net`]'s policy.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use fs4::fs_std::FileExt;
use git2::{
    AutotagOption, Cred, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};

use super::{
    address::check_reference,
    net::{token_for, Session, Spending, TOKEN_ENV},
    GitPolicy, RepoAddress, RepoError,
};

/// A bare mirror of one repository, locked for this process while it is used.
pub(super) struct Mirror {
    /// The bare repository.
    pub repo: Repository,
    path: PathBuf,
    /// Whether this open made it (so that a failed first fetch leaves nothing).
    fresh: bool,
    _lock: File,
}

/// A ref the remote advertises.
struct Advertised {
    name: String,
    symref: Option<String>,
    oid: Oid,
}

impl Mirror {
    /// Opens (creating it on first use) the mirror of `address` under `root`:
    /// one per URL and credentials, so that what one course fetched with its
    /// token is never answered to another without it.
    pub(super) fn open(
        root: &Path,
        address: &RepoAddress,
        policy: &GitPolicy,
        spending: &Spending,
    ) -> Result<Self, RepoError> {
        let name = mirror_name(address, policy);
        let path = root.join(format!("{name}.git"));
        let failed = |message: String| RepoError::Mirror {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(root).map_err(|e| failed(e.to_string()))?;
        let lock = File::create(root.join(format!("{name}.lock")))
            .map_err(|e| failed(format!("locking: {e}")))?;
        wait_for_lock(&lock, spending).map_err(|reason| RepoError::Refused {
            url: address.display(),
            reason,
        })?;
        let fresh = !path.exists();
        if fresh {
            // made aside and renamed, so that a half-made mirror is never found
            let fresh = tempfile::Builder::new()
                .prefix(".new-")
                .tempdir_in(root)
                .map_err(|e| failed(e.to_string()))?;
            Repository::init_bare(fresh.path()).map_err(|e| failed(e.message().into()))?;
            std::fs::rename(fresh.keep(), &path).map_err(|e| failed(e.to_string()))?;
        }
        let repo = Repository::open_bare(&path).map_err(|e| failed(e.message().into()))?;
        Ok(Self {
            repo,
            path,
            fresh,
            _lock: lock,
        })
    }

    /// Removes a mirror this open made, after its first fetch failed.
    pub(super) fn discard_if_fresh(self) {
        if self.fresh {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    /// Resolves `reference` (default: the remote's HEAD) to a commit, fetching what is missing.
    pub(super) fn resolve(
        &self,
        address: &RepoAddress,
        reference: Option<&str>,
        policy: &GitPolicy,
        spending: &Arc<Spending>,
    ) -> Result<(Oid, String), RepoError> {
        if let Some(r) = reference {
            check_reference(r).map_err(|reason| RepoError::Address {
                input: address.display(),
                reason,
            })?;
            if let Some(oid) = self.known_commit(r) {
                return Ok((oid, r.to_string()));
            }
        }
        let advertised = self.list(address, policy, spending)?;
        match pick(&advertised, reference, address)? {
            Some(name) => {
                self.fetch(
                    address,
                    &[format!("+{name}:{name}")],
                    true,
                    policy,
                    spending,
                )?;
                let commit = self.peel(&name, address)?;
                Ok((commit, name))
            }
            None => {
                // a commit no ref points at: the whole history is needed to find it
                let all = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
                let all: Vec<String> = all.iter().map(ToString::to_string).collect();
                self.fetch(address, &all, false, policy, spending)?;
                let wanted = reference.unwrap_or_default();
                let commit = self
                    .known_commit(wanted)
                    .ok_or_else(|| not_found(address, wanted, &advertised))?;
                Ok((commit, wanted.to_string()))
            }
        }
    }

    /// A commit the mirror holds already, named by its full or abbreviated hex id.
    fn known_commit(&self, reference: &str) -> Option<Oid> {
        if reference.len() < 7 || !reference.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let object = self.repo.revparse_single(reference).ok()?;
        object.peel_to_commit().ok().map(|c| c.id())
    }

    /// The commit a fetched ref points at (tags peeled).
    fn peel(&self, name: &str, address: &RepoAddress) -> Result<Oid, RepoError> {
        self.repo
            .find_reference(name)
            .and_then(|r| r.peel_to_commit())
            .map(|c| c.id())
            .map_err(|e| RepoError::NotFound {
                url: address.display(),
                what: format!("a commit for {name} ({})", e.message()),
                hint: String::new(),
            })
    }

    /// The refs the remote advertises.
    fn list(
        &self,
        address: &RepoAddress,
        policy: &GitPolicy,
        spending: &Arc<Spending>,
    ) -> Result<Vec<Advertised>, RepoError> {
        let listed = Session::new(address, policy, spending.clone()).run(|| {
            let mut remote = self.repo.remote_anonymous(address.url.as_str())?;
            let connection =
                remote.connect_auth(Direction::Fetch, Some(callbacks(address, policy)), None)?;
            let heads = connection.list()?;
            if heads.len() > MAX_REFS {
                return Err(git2::Error::from_str(&format!(
                    "the repository advertises more than {MAX_REFS} refs"
                )));
            }
            Ok(heads
                .iter()
                .map(|h| Advertised {
                    name: h.name().to_string(),
                    symref: h.symref_target().map(ToString::to_string),
                    oid: h.oid(),
                })
                .collect())
        });
        listed.map_err(|e| classify(e, address, spending))
    }

    /// Fetches `refspecs`, at depth 1 when `shallow` and the server allows it.
    fn fetch(
        &self,
        address: &RepoAddress,
        refspecs: &[String],
        shallow: bool,
        policy: &GitPolicy,
        spending: &Arc<Spending>,
    ) -> Result<(), RepoError> {
        let attempt = |depth: Option<i32>| {
            Session::new(address, policy, spending.clone()).run(|| {
                let mut remote = self.repo.remote_anonymous(address.url.as_str())?;
                let mut options = FetchOptions::new();
                options
                    .remote_callbacks(callbacks(address, policy))
                    .download_tags(AutotagOption::None);
                if let Some(depth) = depth {
                    options.depth(depth);
                }
                remote.fetch(refspecs, Some(&mut options), None)
            })
        };
        let result = match attempt(shallow.then_some(1)) {
            // servers (and the local transport) that cannot fetch shallow: fetch it all
            Err(e) if shallow && spending.refusal().is_none() && is_shallow_refusal(&e) => {
                attempt(None)
            }
            other => other,
        };
        result.map_err(|e| classify(e, address, spending))?;
        tracing::debug!(mirror = %self.path.display(), "fetched");
        Ok(())
    }
}

fn is_shallow_refusal(e: &git2::Error) -> bool {
    let m = e.message().to_ascii_lowercase();
    m.contains("shallow") || m.contains("depth")
}

/// The ref to fetch for `reference` (default: what HEAD points at), or
/// `None` for a commit id no ref advertises.
fn pick(
    advertised: &[Advertised],
    reference: Option<&str>,
    address: &RepoAddress,
) -> Result<Option<String>, RepoError> {
    let Some(reference) = reference else {
        let head = advertised.iter().find(|a| a.name == "HEAD");
        let branch = head.and_then(|h| {
            h.symref.clone().or_else(|| {
                advertised
                    .iter()
                    .find(|a| a.oid == h.oid && a.name.starts_with("refs/heads/"))
                    .map(|a| a.name.clone())
            })
        });
        return branch
            .map(Some)
            .ok_or_else(|| not_found(address, "HEAD", advertised));
    };
    let candidates = [
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}"),
        reference.to_string(),
    ];
    if let Some(a) = candidates
        .iter()
        .find_map(|c| advertised.iter().find(|a| &a.name == c))
    {
        return Ok(Some(a.name.clone()));
    }
    let hex = reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit());
    if !hex {
        return Err(not_found(address, reference, advertised));
    }
    let lower = reference.to_ascii_lowercase();
    Ok(advertised
        .iter()
        .find(|a| a.name.starts_with("refs/") && a.oid.to_string().starts_with(&lower))
        .map(|a| a.name.trim_end_matches("^{}").to_string()))
}

/// The ref does not exist: say which branches and tags do.
fn not_found(address: &RepoAddress, reference: &str, advertised: &[Advertised]) -> RepoError {
    let mut names: Vec<&str> = advertised
        .iter()
        .filter_map(|a| {
            a.name
                .strip_prefix("refs/heads/")
                .or_else(|| a.name.strip_prefix("refs/tags/"))
        })
        .filter(|n| !n.ends_with("^{}"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let shown: Vec<&str> = names.iter().take(20).copied().collect();
    RepoError::NotFound {
        url: address.display(),
        what: format!("ref '{}'", crate::error::clip(reference, 80)),
        hint: if shown.is_empty() {
            "; the repository has no branch or tag".into()
        } else {
            format!(
                "; its branches and tags: {}{}",
                shown.join(", "),
                if names.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )
        },
    }
}

/// What libgit2's own transports (ssh, on the command line) ask while they fetch.
fn callbacks<'a>(address: &RepoAddress, policy: &'a GitPolicy) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(credentials(address, policy.use_user_credentials));
    callbacks
}

/// Answers git's credential requests: the token given (in the URL or
/// [`TOKEN_ENV`]), then, when allowed, the user's own git credential helpers and ssh agent.
fn credentials(
    address: &RepoAddress,
    user_credentials: bool,
) -> impl FnMut(&str, Option<&str>, CredentialType) -> Result<Cred, git2::Error> {
    let token = token_for(address, user_credentials);
    let mut attempts = 0;
    move |url, username, allowed| {
        attempts += 1;
        let user = username.filter(|u| !u.is_empty());
        if attempts > 3 {
            return Err(git2::Error::from_str(
                "authentication failed: the credentials were refused",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let (1, Some(token)) = (attempts, &token) {
                return Cred::userpass_plaintext(user.unwrap_or("oauth2"), token);
            }
            if user_credentials {
                if let Ok(config) = git2::Config::open_default() {
                    if let Ok(cred) = Cred::credential_helper(&config, url, user) {
                        return Ok(cred);
                    }
                }
            }
        }
        if user_credentials && allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(user.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user.unwrap_or("git"));
        }
        Err(git2::Error::from_str(&format!(
            "the repository asks for credentials: set {TOKEN_ENV}, configure a git credential helper or load an ssh key into ssh-agent"
        )))
    }
}

/// git's error as one of ours: a limit, a missing repository, or the network.
fn classify(error: git2::Error, address: &RepoAddress, spending: &Spending) -> RepoError {
    if let Some(reason) = spending.refusal() {
        return RepoError::Refused {
            url: address.display(),
            reason,
        };
    }
    let mut message = error.message().to_string();
    if let Some(secret) = &address.password {
        message = message.replace(secret.as_str(), "<redacted>");
    }
    let lower = message.to_ascii_lowercase();
    if ["credentials", "authentication", "401", "403"]
        .iter()
        .any(|m| lower.contains(m))
    {
        return RepoError::Refused {
            url: address.display(),
            reason: format!(
                "it needs credentials that were not given or not accepted ({message}): \
                 on the command line set {TOKEN_ENV}, a git credential helper or an ssh key; \
                 in the service, set the course's git token (PUT /api/v1/courses/COURSE/git-token)"
            ),
        };
    }
    let missing = [
        "404",
        "not found",
        "could not find repository",
        "does not appear to be a git repository",
        "not exported",
        "failed to resolve path",
        "no such file",
    ];
    if missing.iter().any(|m| lower.contains(m)) {
        return RepoError::NotFound {
            url: address.display(),
            what: "the repository".into(),
            hint: format!(" ({message}); check the URL, and that you may read it"),
        };
    }
    RepoError::Unreachable {
        url: address.display(),
        source: error,
    }
}

/// The most refs a repository may advertise.
const MAX_REFS: usize = 100_000;

/// The mirror's file name: a hash of the URL and of the credentials it is fetched with.
fn mirror_name(address: &RepoAddress, policy: &GitPolicy) -> String {
    let mut hash = Sha256::new();
    hash.update(address.url.as_str().as_bytes());
    let token = token_for(address, policy.use_user_credentials);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        hash.update(b"\0credentials\0");
        hash.update(Sha256::digest(token.as_bytes()));
    }
    hex::encode(&hash.finalize()[..12])
}

/// Takes the mirror's lock, waiting at most until the repository's deadline.
fn wait_for_lock(lock: &File, spending: &Spending) -> Result<(), String> {
    loop {
        match FileExt::try_lock_exclusive(lock) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(format!("cannot lock its mirror: {e}")),
        }
        spending.remaining().map_err(|_| {
            "its mirror stayed busy with another fetch until the deadline".to_string()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
}
