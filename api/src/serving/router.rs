//! The service's routes and the layers every request goes through.

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    routing::{delete, get, post, put},
    Router,
};

use super::openapi::openapi_document;
use crate::{error, error::ApiError, page, request_id, routes, AppState};

/// The service's routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
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
pub(super) async fn no_route(uri: axum::http::Uri) -> ApiError {
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
