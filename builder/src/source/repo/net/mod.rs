//! One network policy for every git operation (listing refs, fetching,
//! submodules): trousse's own smart transports for `http(s)://` and
//! `git://`, registered with libgit2 in place of its built-in ones.
//!
//! libgit2's own transports follow redirects while listing refs, send
//! credentials to wherever they were redirected, and block in calls that no
//! timer can interrupt. Here every connection goes to the repository's own
//! host only (redirects are refused, the command line's first request
//! excepted), credentials go only to that host, and every read is bounded by
//! an idle timeout and by the deadline of the whole repository: a server
//! that accepts and says nothing, or trickles, is cut off in time.

mod git;
mod http;

use std::{
    cell::RefCell,
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Once,
    },
    time::{Duration, Instant},
};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use url::Url;

use super::{GitPolicy, RepoAddress};

/// The longest a connection may stay silent (capped by what is left of the deadline).
const IDLE: Duration = Duration::from_secs(60);

/// The environment variable holding a token for private repositories over HTTPS.
pub const TOKEN_ENV: &str = "TROUSSE_GIT_TOKEN";

/// The token `address` is fetched with: the password written in it, else
/// (where the user's own credentials may answer) [`TOKEN_ENV`].
pub(super) fn token_for(address: &RepoAddress, user_credentials: bool) -> Option<String> {
    address.password.clone().or_else(|| {
        user_credentials
            .then(|| std::env::var(TOKEN_ENV).ok())
            .flatten()
            .filter(|t| !t.is_empty())
    })
}

/// What fetching one repository (its submodules included) may still spend.
pub(super) struct Spending {
    deadline: Instant,
    timeout: Duration,
    max_bytes: u64,
    received: AtomicU64,
    refusal: Mutex<Option<String>>,
}

impl Spending {
    /// The budget of a policy, starting now.
    pub(super) fn new(policy: &GitPolicy) -> Self {
        let timeout = policy.limits.timeout;
        Self {
            deadline: Instant::now() + timeout,
            timeout,
            max_bytes: policy.limits.max_bytes,
            received: AtomicU64::new(0),
            refusal: Mutex::new(None),
        }
    }

    /// What is left of the time, or the refusal once none is.
    pub(super) fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.refuse(format!(
                "fetching took longer than the limit of {} s",
                self.timeout.as_secs()
            )));
        }
        Ok(left)
    }

    /// How long one read or connection may wait: the idle timeout, within the deadline.
    fn wait(&self) -> io::Result<Duration> {
        Ok(self.remaining()?.min(IDLE))
    }

    /// Counts bytes received, refusing past the limit.
    fn received(&self, bytes: usize) -> io::Result<()> {
        let total = self.received.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if total > self.max_bytes {
            return Err(self.refuse(format!(
                "the clone is larger than the limit of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Records why the repository is refused (the first reason wins) and
    /// returns the error that stops the transfer.
    fn refuse(&self, reason: String) -> io::Error {
        if let Ok(mut refusal) = self.refusal.lock() {
            refusal.get_or_insert(reason.clone());
        }
        io::Error::other(reason)
    }

    /// Why a limit or the policy stopped the last transfer, if one did.
    pub(super) fn refusal(&self) -> Option<String> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }
}

/// One network operation on one repository: where it may go, with what.
pub(super) struct Session {
    origin: Origin,
    token: Option<String>,
    user_credentials: bool,
    follow_first_redirect: bool,
    spending: Arc<Spending>,
}

/// The scheme, host and port a repository is at: all that may be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Self {
        Self {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }
}

impl Session {
    /// The session of an operation on `address` under `policy`.
    pub(super) fn new(address: &RepoAddress, policy: &GitPolicy, spending: Arc<Spending>) -> Self {
        Self {
            origin: Origin::of(&address.url),
            token: token_for(address, policy.use_user_credentials),
            user_credentials: policy.use_user_credentials,
            follow_first_redirect: policy.allowed_hosts.is_none(),
            spending,
        }
    }

    /// Runs `operation` (a libgit2 call) with this session's policy on every connection it makes.
    pub(super) fn run<T>(self, operation: impl FnOnce() -> T) -> T {
        register();
        let previous = CURRENT.with(|c| c.replace(Some(Arc::new(self))));
        let result = operation();
        CURRENT.with(|c| *c.borrow_mut() = previous);
        result
    }

    /// Refuses a URL that is not the repository's own host.
    fn check(&self, url: &Url) -> io::Result<()> {
        if Origin::of(url) == self.origin {
            return Ok(());
        }
        Err(self.spending.refuse(format!(
            "git was asked to reach {}, which is not the repository's host",
            url.host_str().unwrap_or("?")
        )))
    }

    /// The credentials for `url`: only ever the repository's own host.
    fn credentials(&self, url: &Url) -> Option<(String, String)> {
        if Origin::of(url) != self.origin {
            return None;
        }
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        if let Some(token) = &self.token {
            return Some((user.unwrap_or_else(|| "oauth2".into()), token.clone()));
        }
        if !self.user_credentials {
            return None;
        }
        let config = git2::Config::open_default().ok()?;
        let mut helper = git2::CredentialHelper::new(url.as_str());
        helper.config(&config).username(user.as_deref());
        helper.execute()
    }
}

thread_local! {
    /// The session of the libgit2 call running on this thread (libgit2 runs
    /// its transports on the calling thread).
    static CURRENT: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

/// The session of the running operation; none refuses the connection.
fn current() -> Result<Arc<Session>, git2::Error> {
    CURRENT
        .with(|c| c.borrow().clone())
        .ok_or_else(|| git2::Error::from_str("git network access outside trousse's policy"))
}

/// Registers the transports once per process (libgit2's registry is global).
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let registered = [("http", true), ("https", true), ("git", false)]
            .into_iter()
            .map(|(scheme, rpc)| {
                // SAFETY: called once, before any transport of these schemes is created
                unsafe {
                    git2::transport::register(scheme, move |remote| {
                        Transport::smart(remote, rpc, Subtransport::default())
                    })
                }
            })
            .collect::<Result<Vec<()>, git2::Error>>();
        if let Err(e) = registered {
            tracing::error!("cannot register trousse's git transports: {e}");
        }
        // libgit2's own ssh transport (the command line's) gets timeouts too
        // SAFETY: process-wide settings of libgit2, set once
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(30_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(IDLE.as_millis() as i32);
        }
    });
}

/// A subtransport: connections made under the running session.
#[derive(Default)]
struct Subtransport {
    /// Where the command line's first request was redirected to (HTTP only).
    base: Arc<Mutex<Option<String>>>,
}

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let session = current()?;
        let parsed = Url::parse(url).map_err(|e| git2::Error::from_str(&e.to_string()))?;
        session
            .check(&parsed)
            .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        let ls = match action {
            Service::UploadPackLs => true,
            Service::UploadPack => false,
            _ => return Err(git2::Error::from_str("trousse only fetches repositories")),
        };
        match parsed.scheme() {
            "git" => git::connect(session, &parsed),
            _ => Ok(Box::new(http::Exchange::new(
                session,
                parsed,
                ls,
                self.base.clone(),
            ))),
        }
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Counts what a response brings against the session's budget.
struct Metered<R> {
    inner: R,
    session: Arc<Session>,
}

impl<R: io::Read> io::Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.session.spending.remaining()?;
        let n = self.inner.read(buf).map_err(|e| silent(&self.session, e))?;
        self.session.spending.received(n)?;
        Ok(n)
    }
}

/// A read that timed out is the server's silence: say so.
fn silent(session: &Session, error: io::Error) -> io::Error {
    let timed_out = matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) || error.to_string().contains("timed out");
    if !timed_out {
        return error;
    }
    if let Err(deadline) = session.spending.remaining() {
        return deadline;
    }
    session
        .spending
        .refuse(format!("the server sent nothing for {} s", IDLE.as_secs()))
}
