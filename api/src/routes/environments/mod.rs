//! `/api/v1/.../environments`: submit a spec or a lock for a course, read environments.

pub(crate) mod cancel;
mod decide;
pub(crate) mod delete;
pub(crate) mod lifecycle;
pub(crate) mod preview;
mod submission;

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path as UrlPath, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use trousse_builder::error::clip;

use decide::decide;
use submission::Submission;

use crate::{
    auth::Principal,
    domain::submission::check_name,
    error::{ApiError, ErrorBody},
    routes::exam_windows::WindowView,
    store::{EnvironmentRow, Status},
    AppState,
};

/// How messages name a submitted spec (it has no file name).
const SUBMITTED_SPEC: &str = "the submitted spec";

/// A request for an environment, as JSON.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvironmentRequest {
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
    pub(crate) fn from_body(
        headers: &HeaderMap,
        query: SubmitQuery,
        body: &[u8],
    ) -> Result<Self, ApiError> {
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
pub(crate) struct SubmitQuery {
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
pub(crate) struct EnvironmentList {
    /// Newest first.
    pub environments: Vec<Environment>,
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
        let repository = format!(
            "{host}/{}",
            crate::domain::repository(&env.course, &env.name)
        );
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
            window: window.map(|w| crate::routes::exam_windows::view(&w)),
            sealed: false,
        };
        let sealed = match (caller, &window) {
            (Some(caller), Some(window)) => crate::domain::window::sealed(
                Some(caller),
                &view.course,
                window,
                crate::store::now(),
            ),
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
                    .get(trousse_builder::settings::DEFAULT_URL_LABEL)
                    .cloned()
            }))
    }

    async fn answer(&self, env: EnvironmentRow, status: StatusCode) -> Result<Response, ApiError> {
        let location = format!("/api/v1/environments/{}", env.id);
        let view = self.view(env).await?;
        Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
    }
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
pub(crate) async fn submit(
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
    let request = EnvironmentRequest::from_body(&headers, query, &body)?;
    let (env, status) = submit_request(&state, &principal, &course, request).await?;
    state.answer(env, status).await
}

/// A request for an environment of a course, carried out for `principal`
/// (the API's and the page's submissions): the environment, and whether a
/// build was started or joined (202) or nothing was needed (200).
pub(crate) async fn submit_request(
    state: &AppState,
    principal: &Principal,
    course: &str,
    request: EnvironmentRequest,
) -> Result<(EnvironmentRow, StatusCode), ApiError> {
    principal.require_write(course)?;
    check_name("course", course)?;
    let (submission, window) = Submission::from_request(state, course, request).await?;
    let (env, status) = decide(state, course, submission, Some(principal)).await?;
    if let Some(window) = window {
        state.store.set_window(course, &env.name, window).await?;
    }
    state
        .traces
        .record(Some(principal), crate::traces::Verb::Created, &env)
        .await;
    Ok((env, status))
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
    decide(state, course, submission, None).await
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
pub(crate) async fn list(
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
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Environment>, ApiError> {
    let env = state.readable_environment(&principal, &id).await?;
    Ok(Json(state.view_for(&principal, env).await?))
}
