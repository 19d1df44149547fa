//! `trousse serve`: the HTTP API a JupyterHub queries, and `/v2/`.

use std::{path::PathBuf, str::FromStr};

use anyhow::Context;
use trousse_api::config::{
    Secret, DEFAULT_ALLOWED_CHANNEL, DEFAULT_BUILD_LEASE_SECONDS, DEFAULT_BUILD_TIMEOUT_SECONDS,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUILDS, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_REPO_FETCHES,
    DEFAULT_MAX_REPO_FETCHES_PER_COURSE, DEFAULT_MAX_SPEC_PACKAGES, DEFAULT_REPO_MAX_BYTES,
    DEFAULT_REPO_MAX_DEPTH, DEFAULT_REPO_MAX_FILES, DEFAULT_REPO_TIMEOUT_SECONDS,
    DEFAULT_SOLVE_TIMEOUT_SECONDS,
};
use trousse_api::config::{
    DEFAULT_MAX_COURSE_BYTES, DEFAULT_MAX_COURSE_ENVIRONMENTS, DEFAULT_MAX_SUBMISSIONS_PER_MINUTE,
};
use trousse_builder::{source::repo::RepoLimits, BuildError};
use trousse_registry_client::ImageRef;

use crate::args::RegistryArgs;

/// The service's configuration, as flags (defaults: `trousse_api::config`).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Where the database, the images and the build cache live.
    #[arg(long, env = "TROUSSE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The database shared by replicas and workers (postgres://USER@HOST/NAME)
    /// [default: SQLite in the data directory]. Prefer the variable: a password
    /// on the command line is seen by every user of the machine.
    #[arg(long, env = "TROUSSE_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// HOST[:PORT] that image references name [default: the listen address].
    #[arg(long)]
    pub public_host: Option<String>,
    /// Builds that may run at once.
    #[arg(long, default_value_t = DEFAULT_MAX_BUILDS)]
    pub max_builds: usize,
    /// Queue builds only: `trousse worker` processes sharing the --database run them.
    #[arg(long)]
    pub no_builds: bool,
    /// How long, in seconds, a build stays its service's without a renewal
    /// (renewed every third of it): a dead worker's build is taken after this.
    #[arg(long, default_value_t = DEFAULT_BUILD_LEASE_SECONDS)]
    pub build_lease: u64,
    /// The longest a build may take, in seconds.
    #[arg(long, default_value_t = DEFAULT_BUILD_TIMEOUT_SECONDS)]
    pub build_timeout: u64,
    /// The most an environment's own layers (base excluded, compressed) may hold, e.g. 8GiB.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_BYTES, value_parser = parse_size)]
    pub max_image_size: u64,
    /// The longest solving one submission (conda and PyPI) may take, in seconds.
    #[arg(long, default_value_t = DEFAULT_SOLVE_TIMEOUT_SECONDS)]
    pub solve_timeout: u64,
    /// The largest request body, e.g. 1MiB or a byte count.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, value_parser = parse_size)]
    pub max_body: u64,
    /// The most packages a spec may request.
    #[arg(long, default_value_t = DEFAULT_MAX_SPEC_PACKAGES)]
    pub max_spec_packages: usize,
    /// A channel specs may use (repeatable).
    #[arg(long = "allow-channel", default_value = DEFAULT_ALLOWED_CHANNEL)]
    pub allowed_channels: Vec<String>,
    /// A base image specs may name besides the default (repeatable).
    #[arg(long = "allow-base")]
    pub allowed_bases: Vec<String>,
    /// Pulls from /v2/ need a token (Basic auth, the token as password).
    #[arg(long)]
    pub require_pull_token: bool,
    /// Serve HTTPS with this PEM certificate chain (read again on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Push images to this registry (HOST/PREFIX) instead of serving them.
    #[arg(long)]
    pub push_to: Option<String>,
    /// Issue the --push-to registry's tokens (its auth.token realm is
    /// /api/v1/registry/token), signed with this PEM private key (RSA or EC P-256).
    #[arg(long, value_name = "FILE", requires = "registry_token_cert")]
    pub registry_token_key: Option<PathBuf>,
    /// The key's certificate (PEM), the one the registry's rootcertbundle holds.
    #[arg(long, value_name = "FILE", requires = "registry_token_key")]
    pub registry_token_cert: Option<PathBuf>,
    /// The registry's auth.token.service: the tokens' audience.
    #[arg(long, default_value = "trousse-registry")]
    pub registry_service: String,
    /// The registry's auth.token.issuer: the tokens' issuer.
    #[arg(long, default_value = "trousse")]
    pub registry_token_issuer: String,
    /// The base image of specs and locks that name none [default: Ubuntu 24.04, pinned].
    #[arg(long, env = trousse_builder::settings::DEFAULT_BASE_ENV)]
    pub default_base: Option<String>,
    /// A git host (HOST or HOST:PORT) repositories may be fetched from (repeatable); none by default.
    #[arg(long = "allow-git-host", value_name = "HOST[:PORT]")]
    pub git_hosts: Vec<String>,
    /// The most one repository may bring over the network and in its files, e.g. 256MiB.
    #[arg(long, default_value_t = DEFAULT_REPO_MAX_BYTES, value_parser = parse_size)]
    pub repo_max_bytes: u64,
    /// The most files one repository may hold.
    #[arg(long, default_value_t = DEFAULT_REPO_MAX_FILES)]
    pub repo_max_files: u64,
    /// How deep a repository's directories may nest (path components, submodules included).
    #[arg(long, default_value_t = DEFAULT_REPO_MAX_DEPTH)]
    pub repo_max_depth: usize,
    /// Repositories fetched and read at once (each is held in memory while read).
    #[arg(long, default_value_t = DEFAULT_MAX_REPO_FETCHES)]
    pub max_repo_fetches: usize,
    /// Repositories one course may have fetched at once.
    #[arg(long, default_value_t = DEFAULT_MAX_REPO_FETCHES_PER_COURSE)]
    pub max_repo_fetches_per_course: usize,
    /// The most submissions and previews one caller (token, hub user, person)
    /// may send a minute, counted across every replica on the database.
    #[arg(long, default_value_t = DEFAULT_MAX_SUBMISSIONS_PER_MINUTE)]
    pub max_submissions_per_minute: i64,
    /// Hours between collections of the image store (0: never; `trousse images gc` by hand).
    #[arg(long, default_value_t = 24)]
    pub gc_interval_hours: u64,
    /// Versions of a course environment kept for roll-backs (exams keep all).
    #[arg(long, default_value_t = trousse_api::config::DEFAULT_KEEP_VERSIONS)]
    pub keep_versions: i64,
    /// The most environments one course may offer (its quota).
    #[arg(long, default_value_t = DEFAULT_MAX_COURSE_ENVIRONMENTS)]
    pub max_course_environments: i64,
    /// The most image bytes one course's environments may hold together, e.g. 100GiB.
    #[arg(long, default_value_t = DEFAULT_MAX_COURSE_BYTES, value_parser = parse_size)]
    pub max_course_size: u64,
    /// The longest fetching one repository may take, in seconds.
    #[arg(long, default_value_t = DEFAULT_REPO_TIMEOUT_SECONDS)]
    pub repo_timeout: u64,
    /// The secret push webhooks (GitHub, GitLab) are checked with; no webhook without it.
    #[arg(long, env = "TROUSSE_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub webhook_secret: Option<Secret>,
    /// The JupyterHub major version of the hub: images get a matching jupyterhub-singleuser.
    #[arg(long, default_value = trousse_builder::settings::DEFAULT_HUB_VERSION, value_parser = parse_hub_version)]
    pub hub_version: String,
    /// The JupyterHub API (e.g. http://hub:8081/hub/api/) whose users' tokens trousse accepts,
    /// with the course rights of their groups.
    #[arg(long, value_name = "URL")]
    pub hub_api_url: Option<url::Url>,
    /// Where users reach the hub (e.g. https://hub.example.org/): servers launched through
    /// BinderHub's API are under it.
    #[arg(long, value_name = "URL")]
    pub hub_public_url: Option<url::Url>,
    /// trousse's own token at the hub (its service's api_token), to launch servers.
    #[arg(long, env = "JUPYTERHUB_API_TOKEN", hide_env_values = true, value_parser = parse_hub_token)]
    pub hub_api_token: Option<Secret>,
    /// The prefix of the hub groups of a course's students.
    #[arg(long, default_value = "course:")]
    pub hub_student_prefix: String,
    /// The prefix of the hub groups of a course's teachers.
    #[arg(long, default_value = "teacher:")]
    pub hub_teacher_prefix: String,
    /// Serve BinderHub's build API (GET /build/PROVIDER/SPEC?build_only=true), building
    /// repositories into environments of this course.
    #[arg(long, value_name = "COURSE")]
    pub binder_course: Option<String>,
    /// The path BinderHub's API is also served under (the hub service's prefix).
    #[arg(long, default_value = "/services/binder/")]
    pub binder_base_url: String,
    /// Images are not for a hub: add no single-user server to environments that lack one.
    #[arg(long)]
    pub no_jupyter: bool,
    /// A PyPI index (simple API URL) requirements may use (repeatable); the first is the
    /// default of requirements that name none.
    #[arg(long = "allow-index", value_name = "URL", default_value = trousse_api::config::DEFAULT_ALLOWED_INDEX)]
    pub allowed_indexes: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Fetch a channel from a mirror: CHANNEL=URL, e.g. conda-forge=https://mirror.example/conda-forge
    /// (repeatable); specs still name, and are allowed by, the channel itself.
    #[arg(long = "channel-mirror", value_name = "CHANNEL=URL", value_parser = crate::args::parse_mirror)]
    pub channel_mirrors: Vec<String>,
    /// A rattler or pixi configuration file (config.toml) whose [mirrors] are used too.
    #[arg(long, value_name = "FILE", env = "TROUSSE_MIRRORS_CONFIG")]
    pub mirrors_config: Option<PathBuf>,
    #[command(flatten)]
    pub page: super::serve_page::PageArgs,
    #[command(flatten)]
    pub traces: super::serve_page::TraceArgs,
}

fn parse_secret(text: &str) -> Result<Secret, String> {
    if text.len() < 16 {
        return Err("a webhook secret has at least 16 characters".into());
    }
    Ok(Secret::new(text.to_string()))
}

fn parse_hub_token(text: &str) -> Result<Secret, String> {
    if text.trim().is_empty() {
        return Err("the hub API token is empty".into());
    }
    Ok(Secret::new(text.trim().to_string()))
}

fn parse_hub_version(text: &str) -> Result<String, String> {
    match text.parse::<u32>() {
        Ok(major) if (1..=99).contains(&major) => Ok(major.to_string()),
        _ => Err("the hub version is JupyterHub's major version, e.g. 5".into()),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    trousse_builder::cache::gc::parse_size(text)
}

impl ServeArgs {
    /// The service configuration these flags give, for the bound address.
    fn config(mut self, address: std::net::SocketAddr) -> anyhow::Result<trousse_api::Config> {
        if self.public_host.is_none() && address.ip().is_unspecified() {
            return Err(BuildError::Usage(format!(
                "listening on every address ({address}): give --public-host HOST:PORT, the name \
                 hubs and docker pull images from (an image named {address}/… cannot be pulled)"
            ))
            .into());
        }
        let mut config = trousse_api::Config::new(
            std::mem::take(&mut self.data_dir),
            self.public_host
                .take()
                .unwrap_or_else(|| address.to_string()),
        );
        config.database =
            trousse_api::Database::new(self.database.as_deref(), config.data_dir.clone())
                .map_err(|e| BuildError::Usage(e.to_string()))?;
        config.registry_issuer = self.registry_issuer()?;
        self.limits(&mut config)?;
        self.repositories(&mut config);
        self.hub(&mut config)?;
        config.allowed_channels = self.allowed_channels;
        config.allowed_bases = self.allowed_bases;
        config.require_pull_token = self.require_pull_token;
        config.push_to = self.push_to;
        config.registry = self.registry.options(None);
        config.allowed_indexes = self.allowed_indexes;
        config.defaults.jupyter = !self.no_jupyter;
        config.defaults.hub_version = self.hub_version;
        if let Some(base) = self.default_base.filter(|b| !b.is_empty()) {
            config.defaults.base = ImageRef::from_str(&base).map_err(|e| {
                BuildError::Usage(format!(
                    "invalid --default-base / TROUSSE_DEFAULT_BASE: {e}"
                ))
            })?;
        }
        Ok(config)
    }

    /// The registry token issuer the flags configure, if any.
    fn registry_issuer(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<trousse_api::RegistryIssuer>>> {
        let (Some(key), Some(cert)) = (&self.registry_token_key, &self.registry_token_cert) else {
            return Ok(None);
        };
        if self.push_to.is_none() {
            return Err(BuildError::Usage(
                "--registry-token-key issues the tokens of the --push-to registry: give --push-to"
                    .into(),
            )
            .into());
        }
        let issuer = trousse_api::RegistryIssuer::from_files(
            key,
            cert,
            self.registry_service.clone(),
            self.registry_token_issuer.clone(),
        )
        .map_err(|e| BuildError::Usage(format!("--registry-token-key: {e}")))?;
        Ok(Some(std::sync::Arc::new(issuer)))
    }

    /// What one request may cost: builds, time, bodies, sizes.
    fn limits(&self, config: &mut trousse_api::Config) -> anyhow::Result<()> {
        config.max_builds = self.max_builds;
        config.run_builds = !self.no_builds;
        config.build_lease = std::time::Duration::from_secs(self.build_lease);
        config.build_timeout = std::time::Duration::from_secs(self.build_timeout);
        config.solve_timeout = std::time::Duration::from_secs(self.solve_timeout);
        config.max_image_bytes = self.max_image_size;
        config.max_body_bytes = usize::try_from(self.max_body)
            .map_err(|_| BuildError::Usage("--max-body is too large".into()))?;
        config.max_spec_packages = self.max_spec_packages;
        config.mirrors =
            crate::args::mirrors(&self.channel_mirrors, self.mirrors_config.as_deref())?;
        Ok(())
    }

    /// Which repositories may be fetched, and what each may cost.
    fn repositories(&mut self, config: &mut trousse_api::Config) {
        config.git_hosts = std::mem::take(&mut self.git_hosts);
        config.webhook_secret = self.webhook_secret.take();
        config.max_repo_fetches = self.max_repo_fetches;
        config.max_repo_fetches_per_course = self.max_repo_fetches_per_course;
        config.max_course_environments = self.max_course_environments;
        config.gc_interval = std::time::Duration::from_secs(self.gc_interval_hours * 3600);
        config.keep_versions = self.keep_versions;
        config.max_submissions_per_minute = self.max_submissions_per_minute;
        config.max_course_bytes = self.max_course_size;
        config.repo_limits = RepoLimits {
            max_bytes: self.repo_max_bytes,
            max_files: self.repo_max_files,
            max_depth: self.repo_max_depth,
            timeout: std::time::Duration::from_secs(self.repo_timeout),
        };
    }

    /// The JupyterHub whose users' tokens are accepted, and BinderHub's API.
    fn hub(&mut self, config: &mut trousse_api::Config) -> anyhow::Result<()> {
        let hub_api_url = self.hub_api_url.take().map(with_slash);
        let page = std::mem::take(&mut self.page);
        config.page = page.config(hub_api_url.as_ref(), self.hub_public_url.clone())?;
        let home_page = match &config.page {
            Some(page) => page.public_url.clone(),
            None => url::Url::parse(&format!("http://{}/", config.public_host))
                .map_err(|e| BuildError::Usage(format!("--public-host: {e}")))?,
        };
        config.xapi = std::mem::take(&mut self.traces).config(home_page)?;
        let launcher = launcher(
            hub_api_url.as_ref(),
            self.hub_public_url.take(),
            self.hub_api_token.take(),
        )?;
        config.binder = self
            .binder_course
            .take()
            .map(|course| trousse_api::config::BinderConfig {
                course,
                base_url: format!("/{}/", self.binder_base_url.trim_matches('/'))
                    .replace("//", "/"),
                launcher,
            });
        config.hub = hub_api_url.map(|api_url| trousse_api::HubAuth {
            api_url,
            student_prefix: std::mem::take(&mut self.hub_student_prefix),
            teacher_prefix: std::mem::take(&mut self.hub_teacher_prefix),
        });
        Ok(())
    }
}

/// A URL whose path ends with `/`, so that relative paths join under it.
pub(crate) fn with_slash(mut url: url::Url) -> url::Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// The hub launcher BinderHub's launch mode uses: all of its settings, or none.
fn launcher(
    api_url: Option<&url::Url>,
    public_url: Option<url::Url>,
    token: Option<Secret>,
) -> anyhow::Result<Option<trousse_api::HubLauncher>> {
    match (api_url, public_url, token) {
        (Some(api_url), Some(public_url), Some(token)) => Ok(Some(trousse_api::HubLauncher {
            api_url: api_url.clone(),
            public_url: with_slash(public_url),
            token,
        })),
        (_, Some(_), _) => Err(BuildError::Usage(
            "--hub-public-url launches servers: it needs --hub-api-url and JUPYTERHUB_API_TOKEN \
             (the trousse service's token at the hub)"
                .into(),
        )
        .into()),
        _ => Ok(None),
    }
}

/// Runs `trousse serve`: says where it serves only once it can.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let tls = match (args.tls_cert.clone(), args.tls_key.clone()) {
        (Some(cert), Some(key)) => {
            let files = trousse_api::tls::TlsFiles { cert, key };
            trousse_api::tls::check(&files)
                .map_err(|e| BuildError::Usage(format!("--tls-cert/--tls-key: {e}")))?;
            Some(files)
        }
        _ => None,
    };
    let state = trousse_api::AppState::start(args.config(address)?).await?;
    match tls {
        Some(files) => {
            eprintln!("trousse serving on https://{address}");
            trousse_api::tls::serve_tls(listener.into_std()?, state, files).await?;
        }
        None => {
            eprintln!("trousse serving on http://{address}");
            trousse_api::serve(listener, state).await?;
        }
    }
    Ok(())
}

/// Runs `trousse worker`: builds from the shared queue; `--listen` answers
/// `/health` and `/metrics` only.
pub async fn run_worker(mut args: ServeArgs) -> anyhow::Result<()> {
    if args.database.is_none() {
        return Err(BuildError::Usage(
            "a worker takes builds from a shared database: give --database postgres://… \
             (or TROUSSE_DATABASE_URL), the one the services queue them in"
                .into(),
        )
        .into());
    }
    if args.no_builds {
        return Err(BuildError::Usage("a worker with --no-builds would do nothing".into()).into());
    }
    if args.push_to.is_none() {
        return Err(BuildError::Usage(
            "a worker pushes what it builds to the registry the services name images in: \
             give --push-to HOST/PREFIX (its data directory is its own, no service serves from it)"
                .into(),
        )
        .into());
    }
    args.page = Default::default();
    // a worker names no image by its own address: --push-to's registry does
    args.public_host
        .get_or_insert_with(|| "worker.invalid".into());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let state = trousse_api::AppState::start(args.config(address)?).await?;
    eprintln!("trousse worker building; health and metrics on http://{address}");
    trousse_api::serve_worker(listener, state).await?;
    Ok(())
}
