//! A submission read and checked: its body parsed, its spec, lock or
//! repository checked against the service's limits and policy, and solved
//! (or read) into the lock it builds.

use std::path::Path;

use trousse_builder::{
    guard::work_limit::WorkLimit,
    progress::silent,
    source::repo::{RepoAddress, RepoRequest},
    BuildError, BuildRequest, EnvSpec, ImageSettings, Input, Lock, ResolveOptions, Resolved,
    Source, SourceKind,
};

use super::{EnvironmentRequest, SUBMITTED_SPEC};
use crate::{
    domain::submission::{check_name, request_hash, Submitted},
    domain::window::Window,
    error::ApiError,
    AppState,
};

/// What a submission asks for, checked.
pub(super) struct Submission {
    pub(super) name: String,
    pub(super) exam: bool,
    pub(super) request_hash: String,
    pub(super) what: Submitted,
}

/// A spec's size and URLs against the service's limits and policy; the
/// environment's name (the request's, else the spec's, `where_else` says where).
fn check_environment(
    state: &AppState,
    spec: &EnvSpec,
    name: Option<String>,
    where_else: &str,
) -> Result<String, ApiError> {
    let limit = state.config.max_spec_packages;
    let count = spec.dependencies.len() + spec.pip.as_ref().map_or(0, |p| p.requirements.len());
    if count > limit {
        return Err(ApiError::Unprocessable {
            code: "too_many_packages",
            message: format!(
                "the environment requests {count} packages (conda and PyPI); at most {limit} are allowed"
            ),
        });
    }
    state.policy.check_spec(spec)?;
    let name = name.or_else(|| spec.name.clone()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_name",
            format!("name the environment: \"name\" in the request, or {where_else}"),
        )
    })?;
    check_name("environment", &name)?;
    Ok(name)
}

impl Submission {
    /// A request read and checked, with an exam's window.
    pub(super) async fn from_request(
        state: &AppState,
        course: &str,
        mut request: EnvironmentRequest,
    ) -> Result<(Self, Option<Window>), ApiError> {
        let window = Window::parse(
            request.opens.take().as_deref(),
            request.closes.take().as_deref(),
            "",
        )?;
        if window.is_some() && !request.exam {
            return Err(ApiError::bad_request(
                "invalid_window",
                "\"opens\" and \"closes\" go with \"exam\": true (only exams have time windows)",
            ));
        }
        Ok((Self::of_request(state, course, request).await?, window))
    }

    /// What a request asks for: a repository, a spec or a lock.
    async fn of_request(
        state: &AppState,
        course: &str,
        request: EnvironmentRequest,
    ) -> Result<Self, ApiError> {
        if let Some(url) = request.repo {
            if request.spec.is_some() || request.lock.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "give exactly one of \"spec\", \"lock\" and \"repo\"",
                ));
            }
            return Self::of_repo(
                state,
                course,
                request.name,
                request.exam,
                &url,
                request.reference,
            )
            .await;
        }
        if request.reference.is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "\"ref\" goes with \"repo\"",
            ));
        }
        match (request.spec, request.lock) {
            (Some(spec_text), None) => {
                Self::of_spec(state, request.name, request.exam, spec_text).await
            }
            (None, Some(lock_text)) => {
                let name = request.name.ok_or_else(|| {
                    ApiError::bad_request("missing_name", "a lock needs \"name\" in the request")
                })?;
                check_name("environment", &name)?;
                Ok(Self {
                    request_hash: request_hash("lock", request.exam, &lock_text),
                    name,
                    exam: request.exam,
                    what: Submitted::Lock { text: lock_text },
                })
            }
            _ => Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of \"spec\" and \"lock\"",
            )),
        }
    }

    /// A submitted spec, parsed and checked against the limits and the policy.
    async fn of_spec(
        state: &AppState,
        name: Option<String>,
        exam: bool,
        spec_text: String,
    ) -> Result<Self, ApiError> {
        let config = &state.config;
        if spec_text.len() > config.max_spec_bytes {
            return Err(ApiError::TooLarge(format!(
                "the spec has {} bytes; at most {} are allowed",
                spec_text.len(),
                config.max_spec_bytes
            )));
        }
        // a spec is an environment.yml or a requirements.txt (over the default Python)
        let input = Input::Spec {
            text: spec_text.clone(),
            name: SUBMITTED_SPEC.into(),
        };
        let Source::Spec(mut spec) = input
            .into_source(&config.defaults, &config.cache_dir())
            .await?
        else {
            return Err(ApiError::Internal("a spec is read into a spec".into()));
        };
        state.policy.apply_indexes(&mut spec);
        let name = check_environment(state, &spec, name, "'name:' in the spec")?;
        Ok(Self {
            request_hash: request_hash("spec", exam, &spec_text),
            name,
            exam,
            what: Submitted::Spec {
                text: spec_text,
                spec,
            },
        })
    }

    /// A repository, fetched from an allowed host and read at the ref's commit;
    /// its environment is checked as a submitted spec is.
    pub(super) async fn of_repo(
        state: &AppState,
        course: &str,
        name: Option<String>,
        exam: bool,
        url: &str,
        reference: Option<String>,
    ) -> Result<Self, ApiError> {
        let config = &state.config;
        let mut address = repository_address(url)?;
        address.password = state.store.git_token(course).await?;
        // a repository is held in memory while it is read: at most so many at once
        let _fetching = state.repo_fetches.start(course)?;
        let mut source = Input::Repository(RepoRequest {
            address,
            reference,
            policy: config.git_policy(),
            allow_post_build: false,
        })
        .into_source(&config.defaults, &config.cache_dir())
        .await?;
        let Some(content) = source.content() else {
            return Err(ApiError::Internal(
                "a repository is read into its content".into(),
            ));
        };
        let record = serde_json::to_string(&content.record)
            .map_err(|e| ApiError::Internal(format!("recording the source: {e}")))?;
        // a course follows its ref (the same commit is the same request); an
        // exam stays at the commit its first request resolved
        let identity = if exam {
            format!("{url}\n{}", content.record.reference)
        } else {
            format!("{url}\n{}", content.record.commit)
        };
        let Some(spec) = source.spec_mut() else {
            return Err(ApiError::Internal("a repository resolves to a spec".into()));
        };
        state.policy.apply_indexes(spec);
        // a service that feeds no hub (--no-jupyter) adds no server, even to a repository's
        spec.image.jupyter &= config.defaults.jupyter;
        let name = check_environment(
            state,
            spec,
            name,
            "'name:' in the repository's environment.yml",
        )?;
        Ok(Self {
            request_hash: request_hash("repo", exam, &identity),
            name,
            exam,
            what: Submitted::Repository { source, record },
        })
    }

    /// Solves the spec, or reads the lock, and checks what it would fetch.
    pub(super) async fn lock(&self, state: &AppState) -> Result<(Lock, ImageSettings), ApiError> {
        let config = &state.config;
        let options = ResolveOptions {
            mirrors: config.mirrors.clone(),
            cache_dir: config.cache_dir(),
            registry: config.registry.clone(),
            reporter: silent(),
            limit: WorkLimit::within(config.solve_timeout),
        };
        // the solvers stop when the request is dropped (its client left)
        let _cancel = options.limit.cancel_on_drop();
        let source = match &self.what {
            Submitted::Spec { spec, .. } => Source::Spec(spec.clone()),
            Submitted::Lock { text } => submitted_lock(state, text).await?,
            Submitted::Repository { source, .. } => source.clone(),
        };
        // a spec and a partial lock were checked before; a rattler lock fetches nothing here
        let Resolved { lock, settings, .. } = BuildRequest::new(source)
            .resolve(&config.defaults, &options)
            .await?;
        self.check_lock(state, &lock)?;
        Ok((lock, settings))
    }

    /// Refuses a lock that is too large or fetches what the policy does not allow.
    fn check_lock(&self, state: &AppState, lock: &Lock) -> Result<(), ApiError> {
        let config = &state.config;
        for platform in &lock.platforms {
            let count = platform.records.len() + platform.pypi.len();
            if count > config.max_lock_packages {
                return Err(ApiError::Unprocessable {
                    code: "too_many_packages",
                    message: format!(
                        "the environment holds {count} packages (conda and PyPI) for {}; at most {} are allowed",
                        platform.platform,
                        config.max_lock_packages
                    ),
                });
            }
            for record in &platform.records {
                state.policy.check_record(record)?;
            }
            // the packages' archives: about what their layers will weigh
            let archives: u64 = platform
                .records
                .iter()
                .filter_map(|r| r.package_record.size)
                .sum();
            if archives > config.max_image_bytes {
                return Err(BuildError::TooLarge {
                    what: format!("the packages for {}", platform.platform),
                    bytes: archives,
                    limit: config.max_image_bytes,
                }
                .into());
            }
            for wheel in &platform.pypi {
                state.policy.check_wheel(wheel)?;
            }
        }
        if matches!(self.what, Submitted::Lock { .. }) {
            // as the CLI does: a lock fetches only from the channels it declares
            lock.check_own_urls(Path::new("request.lock"))?;
        }
        Ok(())
    }
}

/// A repository's address as submitted: credentials in it are refused (the
/// course's git token is the only one a repository is fetched with).
fn repository_address(url: &str) -> Result<RepoAddress, ApiError> {
    let address = RepoAddress::parse(url).map_err(BuildError::from)?;
    if address.password.is_some() {
        return Err(BuildError::Credentials {
            place: "the repository URL".into(),
            url: trousse_builder::net::credentials::find(url)
                .map_or_else(|| address.display(), |found| found.shown),
        }
        .into());
    }
    Ok(address)
}

/// A submitted lock: a rattler lock, or a conda-lock file or explicit list
/// whose every URL lies in an allowed channel (checked before its archives
/// are fetched to complete it).
async fn submitted_lock(state: &AppState, text: &str) -> Result<Source, ApiError> {
    let config = &state.config;
    let name = Path::new("request.lock");
    trousse_builder::net::credentials::refuse(text, name)?;
    if SourceKind::detect(text) == SourceKind::RattlerLock {
        // a lock written by `trousse lock` carries its spec's image settings:
        // their base is checked before the lock is read
        let settings = trousse_builder::lock_settings(text, name)
            .map_err(|e| ApiError::bad_request("invalid_lock", e.to_string()))?;
        if let Some(settings) = &settings {
            state.policy.check_base(&settings.base)?;
        }
    }
    let input = Input::Lock {
        text: text.to_string(),
        name: name.into(),
    };
    // its URLs are checked against the allowed channels (403) once read
    let source = input
        .into_source(&config.defaults, &config.cache_dir())
        .await
        .map_err(|e| match e {
            e @ BuildError::Credentials { .. } => ApiError::from(e),
            e => ApiError::bad_request("invalid_lock", e.to_string()),
        })?;
    match source {
        Source::Spec(_) | Source::Repository { .. } => Err(ApiError::bad_request(
            "invalid_lock",
            "\"lock\" holds an environment.yml: send it as \"spec\"",
        )),
        Source::Partial(partial) => {
            let limit = state.config.max_lock_packages;
            if partial.len() > limit * partial.platforms.len().max(1) {
                return Err(ApiError::Unprocessable {
                    code: "too_many_packages",
                    message: format!(
                        "the lock lists {} packages; at most {limit} per platform are allowed",
                        partial.len()
                    ),
                });
            }
            partial
                .check_urls(state.policy.channels())
                .map_err(|e| ApiError::Forbidden(e.to_string()))?;
            Ok(Source::Partial(partial))
        }
        lock => Ok(lock),
    }
}
