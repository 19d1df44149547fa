//! `/api/v1/.../environments`: submit a spec or a lock for a course, read environments.

use std::{path::Path, sync::Arc};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path as UrlPath, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trousse_builder::{
    error::clip,
    progress::silent,
    repo::{RepoAddress, RepoRequest},
    work_limit::WorkLimit,
    BuildError, BuildKey, BuildRequest, Compression, EnvSpec, ImageSettings, Lock, ResolveOptions,
    Resolved, SettingsRecord, Source, SourceKind,
};

use crate::{
    auth::Principal,
    decision::{self, Decision, Facts, Image, Row},
    error::{ApiError, ErrorBody},
    exam_windows::{Window, WindowView},
    store::{now, EnvironmentRow, Status},
    AppState,
};

/// How messages name a submitted spec (it has no file name).
const SUBMITTED_SPEC: &str = "the submitted spec";

/// A request for an environment, as JSON.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRequest {
    /// The environment's name in the course; the spec's `name:` when absent.
    pub name: Option<String>,
    /// An `environment.yml`, as text.
    pub spec: Option<String>,
    /// A lock file (rattler/pixi format), as text; built as it is, not solved.
    pub lock: Option<String>,
    /// A git repository kept the Binder way (`https://HOST/PATH`, from an allowed host).
    pub repo: Option<String>,
    /// The branch, tag or commit of `repo` [default: what its HEAD points at].
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// An exam environment: once ready its image never changes, and a changed
    /// request makes a new environment.
    #[serde(default)]
    pub exam: bool,
    /// When the exam may first be started (RFC 3339); with `exam` only.
    pub opens: Option<String>,
    /// When the exam may no longer be started (RFC 3339); with `exam` only.
    pub closes: Option<String>,
}

impl EnvironmentRequest {
    /// The request a body gives: JSON, or a bare spec as YAML.
    fn from_body(headers: &HeaderMap, query: SubmitQuery, body: &[u8]) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8 text"))?;
        if content_type.starts_with("application/json") {
            serde_json::from_str::<EnvironmentRequest>(text).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("invalid request JSON: {e}"))
            })
        } else if content_type.contains("yaml") || content_type.starts_with("text/plain") {
            Ok(EnvironmentRequest {
                name: query.name,
                spec: Some(text.to_string()),
                lock: None,
                repo: None,
                reference: None,
                exam: query.exam,
                opens: query.opens,
                closes: query.closes,
            })
        } else {
            Err(ApiError::UnsupportedMediaType(format!(
                "send application/json or application/yaml, not {}",
                clip(content_type, 100)
            )))
        }
    }
}

/// Query parameters of a submission whose body is a bare spec.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SubmitQuery {
    /// The environment's name (for a YAML body; else the spec's `name:`).
    pub name: Option<String>,
    /// Whether it is an exam environment.
    #[serde(default)]
    pub exam: bool,
    /// When the exam opens (RFC 3339).
    pub opens: Option<String>,
    /// When the exam closes (RFC 3339).
    pub closes: Option<String>,
}

/// An environment of a course.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Environment {
    /// Its id.
    pub id: String,
    /// Its course.
    pub course: String,
    /// Its name in the course.
    pub name: String,
    /// Whether it is an exam environment.
    pub exam: bool,
    /// Whether the course's name means this environment now.
    pub current: bool,
    /// Where its build stands.
    pub status: Status,
    /// Why the build failed.
    pub error: Option<String>,
    /// The reference to pull: `HOST/COURSE/NAME:latest`, or `@DIGEST` for an exam.
    pub image: String,
    /// The image digest, once ready.
    pub digest: Option<String>,
    /// Every digest it has had, oldest first.
    pub digests: Vec<String>,
    /// The sha256 of its lock.
    pub lock_hash: String,
    /// Its lock file.
    pub lock: String,
    /// The packages in the lock, conda and PyPI (all platforms).
    pub packages: i64,
    /// Total bytes of the image's layers, once ready.
    pub bytes: Option<i64>,
    /// The repository it was built from: URL, ref, commit, submodules.
    #[schema(value_type = Option<Object>)]
    pub source: Option<serde_json::Value>,
    /// The URL the hub opens first (`trousse: default_url:`), if any.
    pub default_url: Option<String>,
    /// An exam's time window, if it has one.
    pub window: Option<WindowView>,
    /// Whether this exam's image, digests, lock, source and error are withheld
    /// from the caller (a student, outside the exam's window): they are empty.
    pub sealed: bool,
    /// Created, seconds since the epoch.
    pub created_at: i64,
    /// Last changed, seconds since the epoch.
    pub updated_at: i64,
}

impl Environment {
    /// The environment without what a closed exam withholds.
    fn sealed(self) -> Self {
        Self {
            image: String::new(),
            digest: None,
            digests: Vec::new(),
            lock_hash: String::new(),
            lock: String::new(),
            packages: 0,
            bytes: None,
            source: None,
            default_url: None,
            error: None,
            sealed: true,
            ..self
        }
    }
}

/// The environments of a course.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentList {
    /// Newest first.
    pub environments: Vec<Environment>,
}

/// What a submission asks for, checked.
struct Submission {
    name: String,
    exam: bool,
    spec: Option<(String, EnvSpec)>,
    lock_text: Option<String>,
    request_hash: String,
    /// A repository's request (its environment and files) and its source record.
    repository: Option<(BuildRequest, String)>,
}

/// Names of courses and environments: one OCI repository path component each.
fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{kind} name '{}' must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit", clip(name, 80)),
        ))
    }
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

fn request_hash(kind: &str, exam: bool, text: &str) -> String {
    hex::encode(Sha256::digest(format!("{kind}\n{exam}\n{text}").as_bytes()))
}

impl Submission {
    async fn parse(
        state: &AppState,
        course: &str,
        headers: &HeaderMap,
        query: SubmitQuery,
        body: Bytes,
    ) -> Result<(Self, Option<Window>), ApiError> {
        let mut request = EnvironmentRequest::from_body(headers, query, &body)?;
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
            (Some(spec_text), None) => Self::of_spec(state, request.name, request.exam, spec_text),
            (None, Some(lock_text)) => {
                let name = request.name.ok_or_else(|| {
                    ApiError::bad_request("missing_name", "a lock needs \"name\" in the request")
                })?;
                check_name("environment", &name)?;
                Ok(Self {
                    request_hash: request_hash("lock", request.exam, &lock_text),
                    name,
                    exam: request.exam,
                    spec: None,
                    lock_text: Some(lock_text),
                    repository: None,
                })
            }
            _ => Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of \"spec\" and \"lock\"",
            )),
        }
    }

    /// A submitted spec, parsed and checked against the limits and the policy.
    fn of_spec(
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
        trousse_builder::credentials::refuse(&spec_text, Path::new(SUBMITTED_SPEC))?;
        let name_of = Path::new(SUBMITTED_SPEC);
        // a spec is an environment.yml or a requirements.txt (over the default Python)
        let mut spec = match SourceKind::detect(&spec_text) {
            SourceKind::Requirements => EnvSpec::from_requirements(
                &spec_text,
                name_of,
                trousse_builder::DEFAULT_PYTHON,
                &config.defaults,
                &trousse_builder::pypi::requirements::NoFiles,
            ),
            _ => EnvSpec::from_yaml(
                &spec_text,
                name_of,
                Path::new("/nonexistent"),
                &config.defaults,
            ),
        }
        .map_err(|e| ApiError::from(trousse_builder::BuildError::from(e)))?;
        state.policy.apply_indexes(&mut spec);
        let name = check_environment(state, &spec, name, "'name:' in the spec")?;
        Ok(Self {
            request_hash: request_hash("spec", exam, &spec_text),
            name,
            exam,
            spec: Some((spec_text, spec)),
            lock_text: None,
            repository: None,
        })
    }

    /// A repository, fetched from an allowed host and read at the ref's commit;
    /// its environment is checked as a submitted spec is.
    async fn of_repo(
        state: &AppState,
        course: &str,
        name: Option<String>,
        exam: bool,
        url: &str,
        reference: Option<String>,
    ) -> Result<Self, ApiError> {
        let config = &state.config;
        let mut address = RepoAddress::parse(url).map_err(BuildError::from)?;
        if address.password.is_some() {
            return Err(BuildError::Credentials {
                place: "the repository URL".into(),
                url: trousse_builder::credentials::find(url)
                    .map_or_else(|| address.display(), |found| found.shown),
            }
            .into());
        }
        address.password = state.store.git_token(course).await?;
        // a repository is held in memory while it is read: at most so many at once
        let _fetching = state.repo_fetches.start(course)?;
        let read = RepoRequest {
            address,
            reference,
            policy: config.git_policy(),
            allow_post_build: false,
        }
        .read(&config.cache_dir())
        .await?;
        let record = serde_json::to_string(&read.content.record)
            .map_err(|e| ApiError::Internal(format!("recording the source: {e}")))?;
        // a course follows its ref (the same commit is the same request); an
        // exam stays at the commit its first request resolved
        let identity = if exam {
            format!("{url}\n{}", read.content.record.reference)
        } else {
            format!("{url}\n{}", read.content.record.commit)
        };
        let mut request = read.request(&config.defaults)?;
        let Source::Spec(spec) = &mut request.source else {
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
            spec: None,
            lock_text: None,
            repository: Some((request, record)),
        })
    }

    /// Solves the spec, or reads the lock, and checks what it would fetch.
    async fn lock(&self, state: &AppState) -> Result<(Lock, ImageSettings), ApiError> {
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
        if let Some((request, _)) = &self.repository {
            let resolved = request.clone().resolve(&config.defaults, &options).await?;
            self.check_lock(state, &resolved.lock)?;
            return Ok((resolved.lock, resolved.settings));
        }
        let source = match (&self.spec, &self.lock_text) {
            (Some((_, spec)), _) => Source::Spec(Box::new(spec.clone())),
            (None, Some(text)) => submitted_lock(state, text)?,
            (None, None) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "give exactly one of \"spec\" and \"lock\"",
                ))
            }
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
        if self.lock_text.is_some() {
            // as the CLI does: a lock fetches only from the channels it declares
            lock.check_own_urls(Path::new("request.lock"))?;
        }
        Ok(())
    }
}

/// A submitted lock: a rattler lock, or a conda-lock file or explicit list
/// whose every URL lies in an allowed channel (checked before its archives
/// are fetched to complete it).
fn submitted_lock(state: &AppState, text: &str) -> Result<Source, ApiError> {
    let name = Path::new("request.lock");
    trousse_builder::credentials::refuse(text, name)?;
    let invalid = |e: BuildError| ApiError::bad_request("invalid_lock", e.to_string());
    if SourceKind::detect(text) == SourceKind::RattlerLock {
        // its URLs are checked against the allowed channels (403) once read
        // a lock written by `trousse lock` carries its spec's image settings
        let settings = trousse_builder::lock_settings(text, name).map_err(invalid)?;
        if let Some(settings) = &settings {
            state.policy.check_base(&settings.base)?;
        }
        return Ok(Source::Lock {
            lock: Lock::from_text(text, name).map_err(invalid)?,
            path: name.into(),
            settings: settings.map(Box::new),
        });
    }
    match Source::from_text(text, name, &state.config.defaults).map_err(invalid)? {
        Source::Spec(_) => Err(ApiError::bad_request(
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

/// The layer compression of the service's images.
pub const COMPRESSION: Compression = Compression::Gzip;

/// The repository an environment's image is served from.
pub fn repository(course: &str, name: &str) -> String {
    format!("{course}/{name}")
}

impl AppState {
    /// An environment as the API shows it.
    pub async fn view(&self, env: EnvironmentRow) -> Result<Environment, ApiError> {
        self.render(env, None).await
    }

    /// An environment as `caller` may see it: an exam outside its window,
    /// for a student, without its contents.
    pub async fn view_for(
        &self,
        caller: &Principal,
        env: EnvironmentRow,
    ) -> Result<Environment, ApiError> {
        self.render(env, Some(caller)).await
    }

    /// The environment as shown; sealed when `caller` is given and may not
    /// see the exam now (the window is read once, for both).
    async fn render(
        &self,
        env: EnvironmentRow,
        caller: Option<&Principal>,
    ) -> Result<Environment, ApiError> {
        let digests = self.store.digests(&env.id).await?;
        let host = match &self.config.push_to {
            Some(prefix) => prefix.trim_end_matches('/').to_string(),
            None => self.config.public_host.clone(),
        };
        let repository = format!("{host}/{}", repository(&env.course, &env.name));
        let default_url = self.default_url(env.build_id.as_deref()).await?;
        let window = match env.exam {
            true => self.store.window(&env.course, &env.name).await?,
            false => None,
        };
        let image = match (&env.digest, env.exam) {
            (Some(digest), true) => format!("{repository}@{digest}"),
            _ => format!("{repository}:latest"),
        };
        let view = Environment {
            image,
            digests,
            status: env.status,
            id: env.id,
            course: env.course,
            name: env.name,
            exam: env.exam,
            current: env.current,
            error: env.error,
            digest: env.digest,
            lock_hash: env.lock_hash,
            lock: env.lock,
            packages: env.packages,
            bytes: env.bytes,
            source: env
                .source
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            created_at: env.created_at,
            updated_at: env.updated_at,
            default_url,
            window: window.map(|w| w.view()),
            sealed: false,
        };
        let sealed = match (caller, &window) {
            (Some(caller), Some(window)) => {
                crate::exam_windows::sealed(Some(caller), &view.course, window, crate::store::now())
            }
            _ => false,
        };
        Ok(if sealed { view.sealed() } else { view })
    }

    /// The `default_url` label of a build's settings.
    async fn default_url(&self, build_id: Option<&str>) -> Result<Option<String>, ApiError> {
        let Some(id) = build_id else {
            return Ok(None);
        };
        let settings = self.store.build(id).await?.and_then(|b| b.settings);
        Ok(settings
            .and_then(|s| serde_json::from_str::<trousse_builder::SettingsRecord>(&s).ok())
            .and_then(|r| {
                r.labels
                    .get(trousse_builder::spec::DEFAULT_URL_LABEL)
                    .cloned()
            }))
    }

    async fn answer(&self, env: EnvironmentRow, status: StatusCode) -> Result<Response, ApiError> {
        let location = format!("/api/v1/environments/{}", env.id);
        let view = self.view(env).await?;
        Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
    }
}

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for an id: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Submit a spec or a lock for an environment of a course.
///
/// Answers `200` when the same request or the same lock is already built (no
/// build), `202` when a build was started or joined, with the environment either way.
#[utoipa::path(
    post,
    path = "/api/v1/courses/{course}/environments",
    params(("course" = String, Path, description = "The course"), SubmitQuery),
    request_body(content = EnvironmentRequest, description = "JSON, or an environment.yml sent as application/yaml"),
    responses(
        (status = 200, description = "Already built: nothing to do", body = Environment),
        (status = 202, description = "A build was started or joined", body = Environment),
        (status = 400, description = "Malformed request, spec or lock", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not allowed: role, course, channel or base image", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Neither JSON nor YAML", body = ErrorBody),
        (status = 422, description = "An invalid value (its `field` named), unknown package, unsolvable, or too many packages", body = ErrorBody),
        (status = 502, description = "A channel could not be read", body = ErrorBody),
        (status = 507, description = "The service's disk is full", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require_write(&course)?;
    check_name("course", &course)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body exceeds {} bytes",
                state.config.max_body_bytes
            ))
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })?;
    let (submission, window) = Submission::parse(&state, &course, &headers, query, body).await?;
    carry_out(&state, &course, submission, window).await
}

/// Asks the environment named by a repository's push to follow it (the webhook).
pub(crate) async fn follow_push(
    state: &AppState,
    course: &str,
    name: &str,
    url: &str,
    reference: &str,
) -> Result<Response, ApiError> {
    let (env, status) = repository_submission(state, course, name, url, reference).await?;
    state.answer(env, status).await
}

/// Decides what a checked submission needs (nothing, a reused image, a
/// build), stores it with an exam's window and answers with the environment.
async fn carry_out(
    state: &AppState,
    course: &str,
    submission: Submission,
    window: Option<Window>,
) -> Result<Response, ApiError> {
    let (env, status) = decide(state, course, submission).await?;
    if let Some(window) = window {
        state.store.set_window(course, &env.name, window).await?;
    }
    state.answer(env, status).await
}

/// Submits a repository for an environment of a course (BinderHub's build
/// API); returns the environment's row, built already or building.
pub(crate) async fn submit_repository(
    state: &AppState,
    course: &str,
    name: &str,
    url: &str,
    reference: &str,
) -> Result<EnvironmentRow, ApiError> {
    let (env, _) = repository_submission(state, course, name, url, reference).await?;
    Ok(env)
}

/// A repository at a ref submitted for the environment `name` of a course.
async fn repository_submission(
    state: &AppState,
    course: &str,
    name: &str,
    url: &str,
    reference: &str,
) -> Result<(EnvironmentRow, StatusCode), ApiError> {
    let reference = Some(reference.to_string());
    let submission =
        Submission::of_repo(state, course, Some(name.into()), false, url, reference).await?;
    decide(state, course, submission).await
}

/// What a submission makes of its environment's row, stored, with the HTTP status it answers.
async fn decide(
    state: &AppState,
    course: &str,
    submission: Submission,
) -> Result<(EnvironmentRow, StatusCode), ApiError> {
    let course = course.to_string();
    // one submission per environment at a time: identical requests share one answer
    let slot = state.submission_slot(&course, &submission.name);
    let _turn = slot.lock().await;
    let current = state
        .store
        .current_environment(&course, &submission.name)
        .await?;
    if let Some(status) = decision::same_request(current.as_ref(), &submission.request_hash) {
        if status == StatusCode::OK {
            state.metrics.cache_hits.inc();
        }
        if let Some(env) = current {
            return Ok((env, status));
        }
    }

    let (lock, settings) = submission.lock(state).await?;
    let key = BuildKey::new(&lock.hash(), &settings, COMPRESSION);
    let ready = state
        .store
        .ready_with_build_key(key.as_str())
        .await?
        .filter(|b| {
            // a registry holds the image in the repository it was pushed to only
            state.config.push_to.is_none() || (b.course == course && b.name == submission.name)
        });
    let unfinished = match state.store.unfinished_build(key.as_str()).await? {
        Some(id) => {
            let status = state
                .store
                .build(&id)
                .await?
                .map_or(Status::Queued, |b| b.status);
            Some((id, status))
        }
        None => None,
    };
    let decision = decision::decide(Facts {
        current: current.as_ref(),
        ready: ready.as_ref(),
        unfinished,
    });
    let env = apply(&course, &submission, current, &lock, &decision)?;
    store_decision(state, &env, &decision, &key, &settings).await?;
    if matches!(decision.image, Image::Reuse { .. }) {
        state.metrics.cache_hits.inc();
    }
    Ok((env, decision.http_status()))
}

/// The environment's row as the decision makes it.
fn apply(
    course: &str,
    submission: &Submission,
    current: Option<EnvironmentRow>,
    lock: &Lock,
    decision: &Decision,
) -> Result<EnvironmentRow, ApiError> {
    let mut env = match (current, &decision.row) {
        (Some(e), Row::Update) => e,
        _ => EnvironmentRow {
            id: new_id()?,
            course: course.to_string(),
            name: submission.name.clone(),
            exam: submission.exam,
            current: true,
            request_hash: String::new(),
            spec: None,
            source: None,
            lock: String::new(),
            lock_hash: String::new(),
            packages: 0,
            status: Status::Queued,
            error: None,
            digest: None,
            bytes: None,
            build_id: None,
            created_at: now(),
            updated_at: now(),
        },
    };
    env.exam = submission.exam;
    env.request_hash = submission.request_hash.clone();
    env.spec = submission.spec.as_ref().map(|(text, _)| text.clone());
    env.source = submission
        .repository
        .as_ref()
        .map(|(_, record)| record.clone());
    env.lock = lock.text.clone();
    env.lock_hash = lock.hash();
    env.packages = lock
        .platforms
        .iter()
        .map(|p| p.records.len() + p.pypi.len())
        .sum::<usize>() as i64;
    env.error = None;
    env.status = decision.status();
    (env.digest, env.bytes, env.build_id) = match &decision.image {
        Image::Reuse {
            digest,
            bytes,
            build_id,
        } => (digest.clone(), *bytes, build_id.clone()),
        Image::Join { build_id, .. } => (None, None, Some(build_id.clone())),
        Image::Start => (None, None, Some(new_id()?)),
    };
    Ok(env)
}

/// Writes the decision: the row, then a new build or the tags of a reused image.
async fn store_decision(
    state: &AppState,
    env: &EnvironmentRow,
    decision: &Decision,
    key: &BuildKey,
    settings: &ImageSettings,
) -> Result<(), ApiError> {
    match &decision.row {
        Row::Insert { replaces } => {
            state
                .store
                .insert_environment(env, replaces.as_deref())
                .await?
        }
        Row::Update => state.store.update_environment(env).await?,
    }
    match (&decision.image, &env.build_id, &env.digest) {
        (Image::Start, Some(build_id), _) => {
            let record = serde_json::to_string(&SettingsRecord::from(settings))
                .map_err(|e| ApiError::Internal(format!("storing the settings: {e}")))?;
            state
                .store
                .insert_build(build_id, &env.id, key.as_str(), &record)
                .await?;
            state.builds.submit(build_id.clone());
        }
        (Image::Reuse { .. }, _, Some(digest)) => state.publish_tags(env, digest).await?,
        _ => {}
    }
    Ok(())
}

/// List the environments of a course, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/courses/{course}/environments",
    params(("course" = String, Path, description = "The course")),
    responses(
        (status = 200, description = "The course's environments", body = EnvironmentList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not granted this course", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
) -> Result<Json<EnvironmentList>, ApiError> {
    principal.require_read(&course)?;
    let mut environments = Vec::new();
    for env in state.store.course_environments(&course).await? {
        environments.push(state.view_for(&principal, env).await?);
    }
    Ok(Json(EnvironmentList { environments }))
}

/// Read one environment: status, image reference and digest, lock, sizes.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{id}",
    params(("id" = String, Path, description = "The environment's id")),
    responses(
        (status = 200, description = "The environment", body = Environment),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not granted its course", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Environment>, ApiError> {
    let env = state.readable_environment(&principal, &id).await?;
    Ok(Json(state.view_for(&principal, env).await?))
}
