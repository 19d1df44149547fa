//! How the service is served: its routes and their layers (`router.rs`), the
//! OpenAPI document (`openapi.rs`), HTTPS (`tls.rs`), and serving until a
//! signal says stop.

pub(crate) mod openapi;
pub(crate) mod router;
pub mod tls;

use std::sync::Arc;

use axum::{routing::get, Router};

use crate::{error, error::ApiError, routes, AppState};

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
    axum::serve(listener, router::router(state))
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
        .fallback(router::no_route)
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
