//! `/health` and `/metrics`.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use serde::Serialize;

use crate::AppState;

/// The label of the builds counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ready` or `failed`.
    pub result: String,
}

/// The service's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    /// Builds finished, by result.
    pub builds: Family<ResultLabel, Counter>,
    /// Builds started (a retry counts again).
    pub builds_started: Counter,
    /// Seconds per build.
    pub build_seconds: Histogram,
    /// Requests answered from what was built already.
    pub cache_hits: Counter,
    /// Builds waiting for a slot.
    pub queue_length: Gauge,
    /// Bytes served by the pull endpoint.
    pub bytes_served: Counter,
    /// Panics caught in a request handler or a build.
    pub panics: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trousse");
        let builds = Family::<ResultLabel, Counter>::default();
        let builds_started = Counter::default();
        let build_seconds = Histogram::new([0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]);
        let cache_hits = Counter::default();
        let queue_length = Gauge::default();
        let bytes_served = Counter::default();
        let panics = Counter::default();
        registry.register("builds", "Builds finished, by result", builds.clone());
        registry.register(
            "builds_started",
            "Builds started, retries included",
            builds_started.clone(),
        );
        registry.register("build_seconds", "Seconds per build", build_seconds.clone());
        registry.register(
            "cache_hits",
            "Environment requests answered without a build",
            cache_hits.clone(),
        );
        registry.register(
            "queue_length",
            "Builds waiting for a build slot",
            queue_length.clone(),
        );
        registry.register(
            "served_bytes",
            "Bytes served by the pull endpoint",
            bytes_served.clone(),
        );
        registry.register(
            "panics",
            "Panics caught in request handlers and builds (each one is a bug)",
            panics.clone(),
        );
        Self {
            registry,
            panics,
            builds,
            builds_started,
            build_seconds,
            cache_hits,
            queue_length,
            bytes_served,
        }
    }
}

impl Metrics {
    /// Counts a finished build.
    pub fn record_build(&self, result: &str) {
        self.builds
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }
}

/// Answers a panicked request with a `500` JSON error, and counts it.
#[derive(Clone)]
pub(crate) struct PanicAnswer {
    /// The panics counter.
    pub panics: Counter,
}

impl tower_http::catch_panic::ResponseForPanic for PanicAnswer {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(
        &mut self,
        panic: Box<dyn std::any::Any + Send + 'static>,
    ) -> axum::http::Response<Self::ResponseBody> {
        self.panics.inc();
        tracing::error!(
            "a request handler panicked: {}",
            crate::error::panic_message(&*panic)
        );
        crate::error::ApiError::Internal(
            "the service failed on this request (a bug, logged and counted); the request changed nothing that was not saved atomically".into(),
        )
        .into_response()
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")), tag = "operations")]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // the queue is the store's (every replica's): read when scraped
    if let Ok(waiting) = state.store.queue_length().await {
        state.metrics.queue_length.set(waiting);
    }
    let mut text = String::new();
    match encode(&mut text, &state.metrics.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The free space below which `/health` fails: a build writes its layers, and
/// SQLite needs room for its journal.
pub(crate) const MIN_FREE_BYTES: u64 = 256 << 20;

/// What `/health` checked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok` or `failing`.
    pub status: String,
    /// Each check and what it found: `ok` or the problem.
    pub checks: std::collections::BTreeMap<String, String>,
}

/// Whether the data directory is writable with free space, the database file
/// the one opened and writable, and the registry (when one is configured) reachable.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health), (status = 503, body = Health)), tag = "operations")]
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    checks.insert("store_writable".to_string(), store_writable(&state).await);
    checks.insert("free_space".to_string(), free_space(&state).await);
    checks.insert(
        "database".to_string(),
        // a writer holding the lock longer than this is itself a health problem
        match tokio::time::timeout(Duration::from_secs(5), state.store.ping()).await {
            Ok(Ok(())) => "ok".into(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the database took more than 5 s to grant a write lock".into(),
        },
    );
    if let Some(prefix) = &state.config.push_to {
        checks.insert("registry".to_string(), registry_reached(prefix).await);
    }
    let healthy = checks.values().all(|v| v == "ok");
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if healthy { "ok" } else { "failing" }.into(),
            checks,
        }),
    )
        .into_response()
}

/// Whether a file can be created in the data directory ("ok", or why not).
async fn store_writable(state: &AppState) -> String {
    let data_dir = state.config.data_dir.clone();
    let writable =
        tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(&data_dir).map(|_| ()))
            .await;
    match writable {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Whether the data directory's disk has room for builds ("ok", or what it has).
async fn free_space(state: &AppState) -> String {
    let data_dir = state.config.data_dir.clone();
    let free = tokio::task::spawn_blocking(move || fs4::available_space(&data_dir)).await;
    match free {
        Ok(Ok(bytes)) if bytes >= MIN_FREE_BYTES => "ok".to_string(),
        Ok(Ok(bytes)) => format!(
            "{bytes} bytes free in the data directory; builds need at least {MIN_FREE_BYTES}"
        ),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Whether the registry images are pushed to answers a TCP connection within 3 s.
async fn registry_reached(prefix: &str) -> String {
    let host = prefix.split('/').next().unwrap_or_default().to_string();
    let address = if host.contains(':') {
        host.clone()
    } else {
        format!("{host}:443")
    };
    let reached = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(&address),
    )
    .await;
    match reached {
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(e)) => format!("{host}: {e}"),
        Err(_) => format!("{host}: no answer within 3 s"),
    }
}
