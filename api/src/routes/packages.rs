//! `GET /api/v1/packages?q=`: the allowed channels' packages whose name
//! matches, answered from the catalog kept in memory.

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    Json,
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::Principal,
    error::{ApiError, ErrorBody},
    AppState,
};

/// The most packages one search answers.
const MAX_LIMIT: usize = 50;

/// A search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct SearchQuery {
    /// Part of a package name.
    q: String,
    /// The most packages answered (20; at most 50).
    #[serde(default)]
    limit: Option<usize>,
}

/// A package found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PackageView {
    /// The name.
    name: String,
    /// The newest versions, newest first.
    versions: Vec<String>,
    /// The newest version's download size, in bytes.
    size: Option<u64>,
    /// The channel's summary, when it has one.
    summary: Option<String>,
    /// The channel.
    channel: String,
}

/// What a search answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PackageList {
    /// The packages, the exact name first.
    packages: Vec<PackageView>,
    /// When the catalog was last read (seconds since the epoch); none before the first read.
    refreshed_at: Option<i64>,
}

/// Search the allowed channels' packages by name.
#[utoipa::path(
    get,
    path = "/api/v1/packages",
    params(SearchQuery),
    responses(
        (status = 200, description = "The packages found", body = PackageList),
        (status = 401, description = "No valid token or session", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "packages"
)]
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    _caller: Principal,
    Query(query): Query<SearchQuery>,
) -> Result<Json<PackageList>, ApiError> {
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_LIMIT);
    let packages = state
        .catalog
        .search(&query.q, limit)
        .into_iter()
        .map(|e| PackageView {
            name: e.name,
            versions: e.versions,
            size: e.size,
            summary: e.summary,
            channel: e.channel,
        })
        .collect();
    Ok(Json(PackageList {
        packages,
        refreshed_at: state.catalog.refreshed_at(),
    }))
}
