//! The trousse HTTP service: teachers submit environments for their courses,
//! a JupyterHub asks which image to launch, and `/v2/` serves the images.
//!
//! It calls the builder through the same public functions as the CLI.

#![warn(unreachable_pub)]

mod auth;
mod builds;
mod catalog;
pub mod collect;
pub use collect::collect_images;
pub mod config;
mod data_dir;
mod domain;
mod error;
mod hub;
mod names;
mod page;
mod repo_fetches;
mod request_id;
mod routes;
mod store;
pub mod tls;
mod tokens;
mod traces;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::DefaultBodyLimit,
    http::HeaderMap,
    routing::{delete, get, post, put},
    Json, Router,
};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{
    auth::{presented_token, token_hash, Principal},
    builds::BuildQueue,
    config::{RequestPolicy, ServiceConfig},
    error::ApiError,
    routes::distribution::VerifiedBlobs,
    routes::operations::Metrics,
    store::{EnvironmentRow, Store},
};

pub use auth::{registry::RegistryIssuer, Role};
pub use config::ServiceConfig as Config;
pub use data_dir::copy::{copy_data_dir, CopyReport, ImageDestination};
pub use hub::{launch::HubLauncher, tokens::HubAuth};
pub use store::TokenInfo;
pub use store::{CopiedRows, Database};
pub use tokens::{create_token, list_tokens, revoke_token, MadeToken, NewToken};

/// Everything a request handler needs.
pub struct AppState {
    /// The settings.
    pub config: ServiceConfig,
    /// What requests may name.
    pub policy: RequestPolicy,
    /// The database.
    pub store: Store,
    /// The builds.
    pub builds: BuildQueue,
    /// The metrics.
    pub metrics: Metrics,
    /// Blobs already checked against their digest.
    pub verified: VerifiedBlobs,
    submissions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// JupyterHub tokens recently resolved.
    hub_tokens: hub::tokens::HubTokens,
    /// The repository fetches running.
    pub repo_fetches: repo_fetches::RepoFetches,
    /// What the page keeps (the sign-in provider's keys).
    page: page::PageState,
    /// The allowed channels' packages, for search.
    catalog: Arc<catalog::PackageIndex>,
    /// Learning-analytics traces.
    traces: Arc<traces::Traces>,
    /// This service's hold on its data directory.
    _data_dir: data_dir::lock::DataDirLock,
}

impl AppState {
    /// Opens the store and starts again the builds an earlier run left unfinished.
    pub async fn start(config: ServiceConfig) -> Result<Arc<Self>, ApiError> {
        let policy =
            RequestPolicy::new(&config).map_err(|m| ApiError::bad_request("invalid_config", m))?;
        let data_dir = data_dir::lock::DataDirLock::take(&config.data_dir)?;
        let data_dir_instance = &data_dir.instance().to_string();
        let store = Store::open(&config.database).await?;
        data_dir::upgrade::store_build_settings(&store, &config).await?;
        data_dir::upgrade::scrub_credentials(&store, &config).await?;
        let _ = std::fs::remove_dir_all(config.work_dir());
        let traces = traces::Traces::start(config.xapi.clone(), store.clone());
        let state = Arc::new(Self {
            repo_fetches: repo_fetches::RepoFetches::new(
                config.max_repo_fetches,
                config.max_repo_fetches_per_course,
            ),
            builds: BuildQueue::new(
                config.max_builds,
                data_dir.instance().to_string(),
                config.build_lease,
            ),
            config,
            policy,
            store,
            metrics: Metrics::default(),
            verified: VerifiedBlobs::default(),
            submissions: Mutex::new(HashMap::new()),
            hub_tokens: hub::tokens::HubTokens::default(),
            page: page::PageState::default(),
            catalog: Arc::default(),
            traces,
            _data_dir: data_dir,
        });
        if state.config.page.is_some() {
            catalog::keep_fresh(&state.catalog, &state.config, &state.policy);
        }
        // what this service was building when it stopped is taken again at once
        let released = state.store.release_leases(data_dir_instance).await?;
        if released > 0 {
            tracing::info!(builds = released, "taking again the builds left unfinished");
        }
        if state.config.run_builds {
            state.builds.start(&state);
        }
        if state.config.push_to.is_none() {
            collect::every(
                state.store.clone(),
                state.config.data_dir.clone(),
                state.config.gc_interval,
                state.config.keep_versions,
            );
        }
        Ok(state)
    }

    /// The caller's token, checked: 401 without a valid one.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let token = presented_token(headers)?.ok_or_else(|| {
            ApiError::Unauthorized("this needs a token: Authorization: Bearer TOKEN".into())
        })?;
        let hash = token_hash(&token);
        if let Some(record) = self.store.token(&hash).await? {
            return Ok(Principal {
                role: record.role,
                courses: record.courses,
                reads: Vec::new(),
                hub_user: None,
                subject: None,
                token_id: Some(hash[..store::TOKEN_ID_DIGITS].to_string()),
            });
        }
        // not one of trousse's: a JupyterHub user's token, when a hub is configured
        if let Some(hub) = self
            .config
            .hub
            .as_ref()
            .filter(|_| !token.starts_with("trs_"))
        {
            if let Some(principal) = self.hub_tokens.resolve(hub, &token).await? {
                return Ok(principal);
            }
        }
        Err(ApiError::Unauthorized("the token is not valid".into()))
    }

    /// An environment the caller may read: 404 when there is none, 403 when not granted.
    pub async fn readable_environment(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<EnvironmentRow, ApiError> {
        let env = self
            .store
            .environment(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no environment {id}")))?;
        principal.require_read(&env.course)?;
        Ok(env)
    }

    /// The window of a course's exam that `caller` (`None`: anonymous) may
    /// not see now; `None` when it may (or the name has no window).
    pub async fn sealed_exam(
        &self,
        caller: Option<&Principal>,
        course: &str,
        name: &str,
    ) -> Result<Option<domain::window::Window>, ApiError> {
        let Some(window) = self.store.window(course, name).await? else {
            return Ok(None);
        };
        Ok(domain::window::sealed(caller, course, &window, store::now()).then_some(window))
    }

    /// Counts a solve (a new submission or a preview) of `principal`; a `429`
    /// beyond its rate, which every replica on the store counts together.
    /// Administrators and the hub (the platform's own callers) are not counted.
    pub(crate) async fn charge_submission(&self, principal: &Principal) -> Result<(), ApiError> {
        if matches!(principal.role, Role::Admin | Role::Hub) {
            return Ok(());
        }
        let limit = self.config.max_submissions_per_minute;
        let (count, seconds) = self.store.count_call(&principal.rate_key()).await?;
        if count > limit {
            return Err(ApiError::Busy(format!(
                "at most {limit} submissions a minute from one caller: try again in {seconds} s"
            )));
        }
        Ok(())
    }

    /// The lock that orders submissions for one environment.
    fn submission_slot(&self, course: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut slots = self
            .submissions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        slots.entry(format!("{course}/{name}")).or_default().clone()
    }

    /// Makes a ready environment's image pullable from its repository.
    pub async fn publish_tags(&self, env: &EnvironmentRow, digest: &str) -> Result<(), ApiError> {
        if self.config.push_to.is_some() {
            return Ok(());
        }
        let repository = domain::repository(&env.course, &env.name);
        let tags: &[&str] = if env.exam || !env.current {
            &[]
        } else {
            &["latest"]
        };
        self.store.publish_image(&repository, tags, digest).await
    }
}

/// Handlers that take a `Principal` authenticate the request's token first:
/// no route that needs a role can forget to check it.
impl axum::extract::FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // a token when one is given; else a page session (its CSRF token for changes)
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return state.authenticate(&parts.headers).await;
        }
        match state
            .session_principal(&parts.method, &parts.headers)
            .await?
        {
            Some(principal) => Ok(principal),
            None => state.authenticate(&parts.headers).await,
        }
    }
}

struct TokenSecurity;

impl Modify for TokenSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the service.
#[derive(OpenApi)]
#[openapi(
    info(title = "trousse", description = "Course environments as OCI images, for JupyterHub"),
    paths(
        routes::courses::list,
        routes::packages::search,
        routes::environments::preview::preview,
        routes::environments::lifecycle::versions,
        routes::environments::lifecycle::make_current,
        routes::environments::lifecycle::archive,
        routes::environments::lifecycle::launched,
        routes::environments::cancel::cancel,
        routes::environments::delete::delete,
        routes::environments::submit,
        routes::environments::list,
        routes::environments::get,
        routes::events::follow,
        routes::hooks::push,
        routes::hooks::course_push,
        routes::hooks::set_secret,
        routes::hooks::delete_secret,
        routes::git_tokens::set,
        routes::git_tokens::delete,
        routes::exam_windows::set,
        routes::exam_windows::delete,
        routes::distribution::version,
        routes::distribution::manifest_doc,
        routes::distribution::blob_doc,
        routes::distribution::tags_doc,
        routes::registry_token::issue,
        routes::tokens::list,
        routes::tokens::create,
        routes::tokens::revoke,
        routes::operations::health,
        routes::operations::metrics,
        openapi_document,
    ),
    components(schemas(
        routes::courses::CourseList,
        routes::packages::PackageList,
        routes::environments::preview::Preview,
        routes::environments::lifecycle::RollBack,
        routes::environments::lifecycle::VersionList,
        routes::environments::lifecycle::Launch,
        store::Version,
        routes::environments::preview::PreviewPackage,
        routes::environments::preview::Changes,
        routes::environments::preview::Changed,
        routes::packages::PackageView,
        routes::environments::EnvironmentRequest,
        routes::environments::Environment,
        routes::environments::EnvironmentList,
        routes::hooks::PushOutcome,
        routes::hooks::WebhookSecret,
        routes::git_tokens::GitToken,
        routes::exam_windows::WindowRequest,
        routes::exam_windows::WindowView,
        routes::hooks::Followed,
        store::Status,
        error::ErrorBody,
        routes::operations::Health,
        routes::registry_token::RegistryToken,
        routes::tokens::TokenList,
        routes::tokens::TokenRequest,
        store::TokenInfo,
        tokens::MadeToken,
        auth::Role,
    )),
    modifiers(&TokenSecurity)
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "The OpenAPI document")), tag = "operations")]
pub async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The service's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.max_body_bytes;
    let mut router = Router::new();
    if let Some(binder) = &state.config.binder {
        // BinderHub's build API, at the root and under its base URL (a hub service's)
        router = router.route("/build/{provider}/{*spec}", get(routes::binder::build));
        if binder.base_url != "/" {
            let mounted = format!("{}build/{{provider}}/{{*spec}}", binder.base_url);
            router = router.route(&mounted, get(routes::binder::build));
        }
    }
    let api = api_routes();
    if let Some(page) = &state.config.page {
        // a hub service's page calls the API under its own prefix too
        let prefix = page.public_url.path().trim_end_matches('/');
        if !prefix.is_empty() {
            router = router.nest(prefix, api_routes());
        }
        router = router.merge(page::router(page));
    }
    router
        .merge(api)
        .route("/health", get(routes::operations::health))
        .route("/metrics", get(routes::operations::metrics))
        .route("/v2/", get(routes::distribution::version))
        .route(
            "/v2/{*path}",
            get(routes::distribution::dispatch).head(routes::distribution::dispatch),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            routes::operations::PanicAnswer {
                panics: state.metrics.panics.clone(),
            },
        ))
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::from_fn(request_id::with_request_id))
        .with_state(state)
}

/// The API's routes (`/api/v1/…`).
fn api_routes() -> Router<Arc<AppState>> {
    environment_routes()
        .merge(course_routes())
        .route("/api/v1/courses", get(routes::courses::list))
        .route("/api/v1/packages", get(routes::packages::search))
        .route("/api/v1/hooks/git", post(routes::hooks::push))
        .route("/api/v1/registry/token", get(routes::registry_token::issue))
        .route(
            "/api/v1/tokens",
            get(routes::tokens::list).post(routes::tokens::create),
        )
        .route("/api/v1/tokens/{id}", delete(routes::tokens::revoke))
        .route("/api/v1/openapi.json", get(openapi_document))
}

/// What is done to one environment (`/api/v1/environments/{id}…`).
fn environment_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/environments/{id}/versions",
            get(routes::environments::lifecycle::versions),
        )
        .route(
            "/api/v1/environments/{id}/current",
            post(routes::environments::lifecycle::make_current),
        )
        .route(
            "/api/v1/environments/{id}/launches",
            post(routes::environments::lifecycle::launched),
        )
        .route(
            "/api/v1/environments/{id}/cancel",
            post(routes::environments::cancel::cancel),
        )
        .route(
            "/api/v1/environments/{id}/archive",
            post(routes::environments::lifecycle::archive),
        )
        .route(
            "/api/v1/environments/{id}/events",
            get(routes::events::follow),
        )
        .route(
            "/api/v1/environments/{id}",
            get(routes::environments::get).delete(routes::environments::delete::delete),
        )
}

/// A course's routes (`/api/v1/courses/{course}/…`).
fn course_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/courses/{course}/preview",
            post(routes::environments::preview::preview),
        )
        .route(
            "/api/v1/courses/{course}/environments",
            post(routes::environments::submit).get(routes::environments::list),
        )
        .route(
            "/api/v1/courses/{course}/hooks/git",
            post(routes::hooks::course_push),
        )
        .route(
            "/api/v1/courses/{course}/webhook-secret",
            put(routes::hooks::set_secret).delete(routes::hooks::delete_secret),
        )
        .route(
            "/api/v1/courses/{course}/git-token",
            put(routes::git_tokens::set).delete(routes::git_tokens::delete),
        )
        .route(
            "/api/v1/courses/{course}/exams/{name}/window",
            put(routes::exam_windows::set).delete(routes::exam_windows::delete),
        )
}

/// Unknown routes: a 404 with the JSON error every route answers with.
async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route {}: see /api/v1/openapi.json",
        trousse_builder::error::clip(uri.path(), 200)
    ))
}

async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    // a BinderHub spec in the path may be a URL with credentials: logged without them
    let decoded = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8_lossy();
    let path = trousse_builder::net::credentials::scrub(&decoded).into_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Serves a started service until SIGINT or SIGTERM, then stops taking
/// requests and returns (running builds are started again by the next run).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
) -> Result<(), ApiError> {
    let address = listener
        .local_addr()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(%address, "serving");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| ApiError::Internal(format!("serving: {e}")))
}

/// Serves a worker's `/health` and `/metrics` until SIGINT or SIGTERM; its builds run meanwhile.
pub async fn serve_worker(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
) -> Result<(), ApiError> {
    let router = Router::new()
        .route("/health", get(routes::operations::health))
        .route("/metrics", get(routes::operations::metrics))
        .fallback(no_route)
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| ApiError::Internal(format!("serving: {e}")))
}

pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
