//! How the service is set up, and what a request may make it do.

use std::{path::PathBuf, time::Duration};

use rattler_conda_types::RepoDataRecord;
use trousse_builder::{
    error::clip,
    net::channel_url::{self, ChannelUrl},
    net::channel_url::{resolve_channel, ChannelConfig},
    source::repo::{GitPolicy, RepoLimits},
    EnvSpec, ImageSettings,
};
use trousse_registry_client::{ImageRef, RegistryOptions};

use trousse_builder::pypi::{
    redact, without_credentials, FindLinks, LockedWheel, PypiError, PypiRequirements,
};
use url::Url;

pub use crate::auth::{rules::RoleRules, Secret};
use crate::error::ApiError;

/// An index URL as compared: parsed, credentials removed, with a trailing slash.
fn index_url(text: &str) -> Result<Url, url::ParseError> {
    Url::parse(text).map(|u| normalized(&u))
}

/// A URL without credentials, query or fragment, its path ending in `/`.
fn normalized(url: &Url) -> Url {
    let mut url = without_credentials(url);
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where the database, the image store and the build cache live.
    pub data_dir: PathBuf,
    /// The database: SQLite in `data_dir` unless a PostgreSQL URL was given.
    pub database: crate::store::Database,
    /// The `HOST[:PORT]` image references name (the pull endpoint as clients reach it).
    pub public_host: String,
    /// Builds that may run at once.
    pub max_builds: usize,
    /// The registry token issuer, when the registry of `push_to` sends its clients here.
    pub registry_issuer: Option<std::sync::Arc<crate::auth::registry::RegistryIssuer>>,
    /// Whether this service runs builds (false: it only queues them, for workers).
    pub run_builds: bool,
    /// How long a claimed build stays this service's without a renewal.
    pub build_lease: Duration,
    /// How long one build may take.
    pub build_timeout: Duration,
    /// How long solving one submission (conda and PyPI) may take.
    pub solve_timeout: Duration,
    /// The most compressed bytes an environment's own layers (base excluded) may hold.
    pub max_image_bytes: u64,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The largest spec, in bytes.
    pub max_spec_bytes: usize,
    /// The most packages a spec may request.
    pub max_spec_packages: usize,
    /// The most packages a solved environment may hold (per platform).
    pub max_lock_packages: usize,
    /// The channels specs may use (names or URLs), e.g. `conda-forge`.
    pub allowed_channels: Vec<String>,
    /// Base images specs may name besides the default one.
    pub allowed_bases: Vec<String>,
    /// What a spec's `trousse:` section leaves out (the default base among them).
    pub defaults: ImageSettings,
    /// Whether pulling from `/v2/` needs a token.
    pub require_pull_token: bool,
    /// Push images to this registry (`HOST/PREFIX`) instead of serving them.
    pub push_to: Option<String>,
    /// How to reach registries.
    pub registry: RegistryOptions,
    /// Git hosts (`host` or `host:port`) repositories may be fetched from; none by default.
    pub git_hosts: Vec<String>,
    /// What one repository may cost: bytes, files, depth, time.
    pub repo_limits: RepoLimits,
    /// Where channels are fetched from instead of their own URLs.
    pub mirrors: trousse_builder::net::mirrors::Mirrors,
    /// Repositories fetched and read at once, overall.
    pub max_repo_fetches: usize,
    /// Repositories fetched and read at once for one course.
    pub max_repo_fetches_per_course: usize,
    /// The most submissions and previews one caller may send a minute (all replicas together).
    pub max_submissions_per_minute: i64,
    /// How often the image store is collected (zero: never).
    pub gc_interval: Duration,
    /// Versions of a course environment the collection keeps.
    pub keep_versions: i64,
    /// The most environments (names offered) one course may have.
    pub max_course_environments: i64,
    /// The most image bytes one course's current environments may hold together.
    pub max_course_bytes: u64,
    /// The secret push webhooks are checked with; no webhook without it.
    pub webhook_secret: Option<Secret>,
    /// The PyPI indexes (simple API URLs) requirements may use; the first is the default.
    pub allowed_indexes: Vec<String>,
    /// The JupyterHub whose users' tokens are accepted, with their groups' course rights.
    pub hub: Option<crate::hub::tokens::HubAuth>,
    /// BinderHub's build API, when on: the course builds land in and the base URL.
    pub binder: Option<BinderConfig>,
    /// The teachers' page, when on: where browsers reach it and how people sign in.
    pub page: Option<PageConfig>,
    /// Learning-analytics traces, when an LRS is configured.
    pub xapi: Option<XapiConfig>,
}

/// Where learning-analytics traces go: an xAPI Learning Record Store.
#[derive(Debug, Clone)]
pub struct XapiConfig {
    /// The LRS's xAPI endpoint, e.g. `https://lrs.example.fr/xAPI/` (ends in `/`).
    pub endpoint: Url,
    /// `USER:PASSWORD` for HTTP Basic authentication at the LRS.
    pub auth: Option<Secret>,
    /// The statements' `context.platform`.
    pub platform: String,
    /// The base of the IRIs of accounts and activities (the page's URL).
    pub home_page: Url,
}

impl XapiConfig {
    /// Where statements are posted.
    pub fn statements_url(&self) -> Url {
        self.endpoint
            .join("statements")
            .unwrap_or_else(|_| self.endpoint.clone())
    }
}

/// The teachers' page: its address, its sign-ins, and what identities give.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// The page as browsers reach it, its path ending in `/`: e.g.
    /// `https://trousse.example.fr/` or `https://hub.example.fr/services/trousse/`.
    pub public_url: Url,
    /// Sign-in with an OpenID Connect provider.
    pub oidc: Option<OidcConfig>,
    /// Sign-in with JupyterHub's OAuth, when trousse runs as a hub service.
    pub hub_oauth: Option<HubOAuthConfig>,
    /// What an OpenID Connect identity's claims give.
    pub rules: RoleRules,
    /// How long a session lasts.
    pub session_lifetime: Duration,
    /// The hub users open environments in (its public URL, ending in `/`).
    pub hub_url: Option<Url>,
}

/// An OpenID Connect provider: an academic federation's gateway, Keycloak…
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, exactly as the provider writes it (`iss` is compared as text);
    /// `/.well-known/openid-configuration` is found under it.
    pub issuer: String,
    /// trousse's client id at the provider.
    pub client_id: String,
    /// trousse's client secret at the provider.
    pub client_secret: Secret,
    /// Scopes asked besides `openid` (those that bring the claims the rules read).
    pub scopes: Vec<String>,
    /// The provider's name on the sign-in button.
    pub display_name: String,
}

/// JupyterHub's OAuth, as a hub service gets it (`JUPYTERHUB_*` variables).
#[derive(Debug, Clone)]
pub struct HubOAuthConfig {
    /// The service's OAuth client id (`JUPYTERHUB_CLIENT_ID`).
    pub client_id: String,
    /// The service's token (`JUPYTERHUB_API_TOKEN`), its client secret.
    pub client_secret: Secret,
    /// Where browsers are sent to authorize (`…/hub/api/oauth2/authorize`).
    pub authorize_url: Url,
    /// Where the code is exchanged (`{hub API}oauth2/token`).
    pub token_url: Url,
    /// The callback the hub registered for the service, as it wrote it
    /// (`JUPYTERHUB_OAUTH_CALLBACK_URL`, often a path): compared as text.
    pub callback_url: String,
}

/// Where BinderHub builds land.
#[derive(Debug, Clone)]
pub struct BinderConfig {
    /// The course whose environments repositories are built into.
    pub course: String,
    /// The path the API is mounted under, e.g. `/services/binder/` (always `/…/`).
    pub base_url: String,
    /// The hub that launches servers (requests without `build_only=true`), if configured.
    pub launcher: Option<crate::hub::launch::HubLauncher>,
}

/// Builds that may run at once, unless configured.
pub const DEFAULT_MAX_BUILDS: usize = 2;
/// The longest a build may take, in seconds, unless configured.
pub const DEFAULT_BUILD_TIMEOUT_SECONDS: u64 = 3600;
/// The most compressed bytes of an environment's own layers, unless configured:
/// far above a course stack (a full Binder scientific stack is about 1.5 GB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 16 << 30;
/// The longest solving one submission may take, in seconds, unless configured.
pub const DEFAULT_SOLVE_TIMEOUT_SECONDS: u64 = 120;
/// The largest request body, in bytes, unless configured.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// The most packages a spec may request, unless configured.
pub const DEFAULT_MAX_SPEC_PACKAGES: usize = 200;
/// The most bytes one repository may bring (fetched, and in its files), unless configured.
pub const DEFAULT_REPO_MAX_BYTES: u64 = 256 << 20;
/// The most files one repository may hold, unless configured.
pub const DEFAULT_REPO_MAX_FILES: u64 = 20_000;
/// Repositories fetched at once, overall, unless configured.
pub const DEFAULT_MAX_REPO_FETCHES: usize = 4;
/// Repositories fetched at once for one course, unless configured.
pub const DEFAULT_MAX_REPO_FETCHES_PER_COURSE: usize = 2;
/// The most submissions (and previews) one caller may send a minute.
pub const DEFAULT_MAX_SUBMISSIONS_PER_MINUTE: i64 = 30;
/// Versions of a course environment the image store keeps (roll-backs).
pub const DEFAULT_KEEP_VERSIONS: i64 = 10;
/// The most environments one course may offer.
pub const DEFAULT_MAX_COURSE_ENVIRONMENTS: i64 = 100;
/// The most image bytes (compressed layers) one course's environments may hold: 100 GiB.
pub const DEFAULT_MAX_COURSE_BYTES: u64 = 100 << 30;
/// How deep a repository's directories may nest, unless configured.
pub const DEFAULT_REPO_MAX_DEPTH: usize = trousse_builder::source::repo::DEFAULT_MAX_DEPTH;
/// The longest fetching one repository may take, in seconds, unless configured.
pub const DEFAULT_REPO_TIMEOUT_SECONDS: u64 = 300;
/// The channel specs may use, unless others are allowed.
pub const DEFAULT_ALLOWED_CHANNEL: &str = "conda-forge";
/// The PyPI index requirements may use, unless others are allowed.
pub const DEFAULT_ALLOWED_INDEX: &str = "https://pypi.org/simple/";
/// How long a claimed build stays its claimer's without a renewal, in seconds.
pub const DEFAULT_BUILD_LEASE_SECONDS: u64 = 30;
/// Where the public PyPI index keeps its files.
const PYPI_FILES_HOST: &str = "files.pythonhosted.org";

impl ServiceConfig {
    /// Settings with the documented defaults for a data directory.
    pub fn new(data_dir: PathBuf, public_host: String) -> Self {
        Self {
            database: crate::store::Database::Sqlite(data_dir.clone()),
            data_dir,
            public_host,
            max_builds: DEFAULT_MAX_BUILDS,
            run_builds: true,
            registry_issuer: None,
            build_lease: Duration::from_secs(DEFAULT_BUILD_LEASE_SECONDS),
            build_timeout: Duration::from_secs(DEFAULT_BUILD_TIMEOUT_SECONDS),
            solve_timeout: Duration::from_secs(DEFAULT_SOLVE_TIMEOUT_SECONDS),
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES as usize,
            max_spec_bytes: 64 << 10,
            max_spec_packages: DEFAULT_MAX_SPEC_PACKAGES,
            max_lock_packages: 2000,
            allowed_channels: vec![DEFAULT_ALLOWED_CHANNEL.into()],
            allowed_bases: Vec::new(),
            defaults: ImageSettings::default(),
            require_pull_token: false,
            push_to: None,
            registry: RegistryOptions::default(),
            git_hosts: Vec::new(),
            webhook_secret: None,
            allowed_indexes: vec![DEFAULT_ALLOWED_INDEX.into()],
            hub: None,
            binder: None,
            page: None,
            xapi: None,
            mirrors: Default::default(),
            max_repo_fetches: DEFAULT_MAX_REPO_FETCHES,
            max_repo_fetches_per_course: DEFAULT_MAX_REPO_FETCHES_PER_COURSE,
            max_course_environments: DEFAULT_MAX_COURSE_ENVIRONMENTS,
            gc_interval: Duration::from_secs(24 * 3600),
            keep_versions: DEFAULT_KEEP_VERSIONS,
            max_submissions_per_minute: DEFAULT_MAX_SUBMISSIONS_PER_MINUTE,
            max_course_bytes: DEFAULT_MAX_COURSE_BYTES,
            repo_limits: RepoLimits {
                max_bytes: DEFAULT_REPO_MAX_BYTES,
                max_files: DEFAULT_REPO_MAX_FILES,
                max_depth: DEFAULT_REPO_MAX_DEPTH,
                timeout: Duration::from_secs(DEFAULT_REPO_TIMEOUT_SECONDS),
            },
        }
    }

    /// What repositories a request may name: the allowed hosts only, never a
    /// local path, never the service's own git credentials.
    pub fn git_policy(&self) -> GitPolicy {
        GitPolicy::hosts(self.git_hosts.clone(), self.repo_limits)
    }

    /// The build cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }

    /// Where finished image blobs are kept and served from.
    pub fn image_store(&self) -> trousse_registry_client::BlobStore {
        trousse_registry_client::BlobStore::new(self.data_dir.join("images"))
    }

    /// Where builds write their image before it joins the store.
    pub fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }
}

/// What channels and bases a request may name: nothing else is ever read or reached.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    channels: Vec<ChannelUrl>,
    bases: Vec<ImageRef>,
    indexes: Vec<Url>,
}

impl RequestPolicy {
    /// The policy of a configuration.
    pub fn new(config: &ServiceConfig) -> Result<Self, String> {
        for url in config
            .allowed_channels
            .iter()
            .chain(&config.allowed_indexes)
        {
            if let Some(found) = trousse_builder::net::credentials::find(url) {
                return Err(format!(
                    "{} carries credentials: an allowed channel or index is named without them, \
                     and the credentials go in rattler's authentication file (RATTLER_AUTH_FILE) \
                     for channels, netrc or TROUSSE_PYPI_USERNAME/_PASSWORD for indexes",
                    found.shown
                ));
            }
        }
        let channel_config = ChannelConfig::default_with_root_dir(PathBuf::from("/"));
        let mut channels = Vec::new();
        for name in &config.allowed_channels {
            for channel in resolve_channel(name, &channel_config)? {
                channels.push(
                    ChannelUrl::parse(channel.base_url.as_str())
                        .map_err(|e| format!("invalid allowed channel '{name}': {e}"))?,
                );
            }
        }
        let mut bases = vec![config.defaults.base.clone()];
        for base in &config.allowed_bases {
            bases.push(
                base.parse()
                    .map_err(|e| format!("invalid allowed base '{base}': {e}"))?,
            );
        }
        let indexes = config
            .allowed_indexes
            .iter()
            .map(|i| index_url(i).map_err(|e| format!("invalid allowed index '{i}': {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            channels,
            bases,
            indexes,
        })
    }

    /// A spec's PyPI requirements use the first allowed index unless they
    /// name one, and follow links and redirects to the allowed indexes' hosts only.
    pub fn apply_indexes(&self, spec: &mut EnvSpec) {
        let Some(pip) = spec.pip.as_mut() else {
            return;
        };
        if let (false, Some(first)) = (pip.index_named, self.indexes.first()) {
            pip.index.index_url = first.clone();
        }
        pip.index.allowed_hosts = Some(self.index_hosts());
    }

    /// The hosts (`host`, or `host:port` when the URL names a port) pages,
    /// metadata and wheels may come from: the allowed indexes', and PyPI's
    /// file host when PyPI is allowed.
    fn index_hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        for index in &self.indexes {
            let host = index.host_str().unwrap_or_default().to_ascii_lowercase();
            if host == "pypi.org" {
                hosts.push(PYPI_FILES_HOST.to_string());
            }
            hosts.push(match index.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            });
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Refuses an index, extra index or find-links URL that is not allowed
    /// (a directory of wheels on the service's disk never is).
    pub fn check_indexes(&self, pip: &PypiRequirements) -> Result<(), ApiError> {
        let refuse = |url: String| {
            ApiError::Forbidden(
                PypiError::IndexRefused {
                    url,
                    allowed: self.allowed_indexes(),
                }
                .to_string(),
            )
        };
        let mut named = vec![&pip.index.index_url];
        named.extend(&pip.index.extra_index_urls);
        for link in &pip.index.find_links {
            match link {
                FindLinks::Url(url) => named.push(url),
                FindLinks::Dir(dir) => return Err(refuse(dir.display().to_string())),
            }
        }
        match named
            .iter()
            .find(|u| !self.indexes.contains(&normalized(u)))
        {
            Some(url) => Err(refuse(redact(url))),
            None => Ok(()),
        }
    }

    /// Refuses a locked wheel found on an index that is not allowed, or
    /// downloaded from a host that is not an allowed index's.
    pub fn check_wheel(&self, wheel: &LockedWheel) -> Result<(), ApiError> {
        let index_ok = wheel
            .index
            .as_ref()
            .is_some_and(|i| self.indexes.contains(&normalized(i)));
        let host = wheel.url.host_str().unwrap_or_default();
        let host_ok = self.indexes.iter().any(|i| {
            i.host_str() == Some(host)
                || (i.host_str() == Some("pypi.org") && host == PYPI_FILES_HOST)
        });
        if index_ok && host_ok && matches!(wheel.url.scheme(), "https" | "http") {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "PyPI package {} {} comes from {} (index {}), which is not allowed here (allowed indexes: {})",
            wheel.name,
            wheel.version,
            clip(&redact(&wheel.url), 300),
            wheel.index.as_ref().map_or("none".into(), redact),
            self.allowed_indexes()
        )))
    }

    fn allowed_indexes(&self) -> String {
        self.indexes
            .iter()
            .map(redact)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The allowed channels.
    pub fn channels(&self) -> &[ChannelUrl] {
        &self.channels
    }

    /// Refuses a channel that is not allowed.
    pub fn check_channel(&self, url: &str) -> Result<(), ApiError> {
        let channel = ChannelUrl::parse(url).map_err(|e| ApiError::Forbidden(e.to_string()))?;
        if self.channels.contains(&channel) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "channel {} is not allowed here (allowed: {})",
                clip(url, 300),
                channel_url::list(&self.channels)
            )))
        }
    }

    /// Refuses a package URL (a spec's URL dependency) outside the allowed channels.
    pub fn check_package_url(&self, url: &str) -> Result<(), ApiError> {
        channel_url::check_package_url(url, &self.channels)
            .map_err(|e| ApiError::Forbidden(e.to_string()))
    }

    /// Refuses a locked package whose URL is not in an allowed channel, or not
    /// its record's channel, subdir and file name.
    pub fn check_record(&self, record: &RepoDataRecord) -> Result<(), ApiError> {
        channel_url::check_record(record, &self.channels)
            .map_err(|e| ApiError::Forbidden(format!("package {}: {e}", record.identifier)))
    }

    /// Checks every URL a spec names (channels, `channel::package`, URL
    /// dependencies) and its base image, before anything is fetched.
    pub fn check_spec(&self, spec: &EnvSpec) -> Result<(), ApiError> {
        for channel in &spec.channels {
            self.check_channel(channel.base_url.as_str())?;
        }
        for dependency in &spec.dependencies {
            if let Some(channel) = &dependency.channel {
                self.check_channel(channel.base_url.as_str())?;
            }
            if let Some(url) = &dependency.url {
                self.check_package_url(url.as_str())?;
            }
        }
        if let Some(pip) = &spec.pip {
            self.check_indexes(pip)?;
        }
        self.check_base(&spec.image.base)
    }

    /// Refuses a base image that is not allowed.
    pub fn check_base(&self, base: &ImageRef) -> Result<(), ApiError> {
        if self.bases.contains(base) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "base image {} is not allowed here (allowed: {})",
                clip(&base.to_string(), 300),
                self.bases
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(channels: &[&str]) -> RequestPolicy {
        let mut config = ServiceConfig::new("/tmp/x".into(), "localhost".into());
        config.allowed_channels = channels.iter().map(|c| c.to_string()).collect();
        config.defaults.base = ImageRef::Scratch;
        RequestPolicy::new(&config).unwrap()
    }

    #[test]
    fn only_allowed_channels_and_their_packages_pass() {
        let p = policy(&["conda-forge", "http://127.0.0.1:8000/chan"]);
        p.check_channel("https://conda.anaconda.org/conda-forge/")
            .unwrap();
        p.check_channel("http://127.0.0.1:8000/chan").unwrap();
        assert!(p.check_channel("file:///etc/").is_err());
        assert!(p.check_channel("http://127.0.0.1:8001/chan").is_err());
        p.check_package_url("https://conda.anaconda.org/conda-forge/noarch/x-1-0.conda")
            .unwrap();
        assert!(p
            .check_package_url("https://conda.anaconda.org/conda-forge/../../x.conda")
            .is_err());
        assert!(p
            .check_package_url("http://127.0.0.1:8000/chan/%2e%2e%2fevil/linux-64/x-1-0.conda")
            .is_err());
        assert!(p.check_package_url("file:///etc/shadow").is_err());
        assert!(p
            .check_package_url("http://169.254.169.254/latest/meta-data")
            .is_err());
    }

    #[test]
    fn only_allowed_bases_pass() {
        let p = policy(&["conda-forge"]);
        p.check_base(&ImageRef::Scratch).unwrap();
        assert!(p.check_base(&"oci:/etc:x".parse().unwrap()).is_err());
        assert!(p
            .check_base(&"docker://127.0.0.1:5000/internal:1".parse().unwrap())
            .is_err());
    }
}
