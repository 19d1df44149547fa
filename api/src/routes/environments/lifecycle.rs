//! What a course's teachers do with an environment once it exists: list its
//! versions, make it (or one of its versions) current again — roll back —
//! and archive it. A course environment rolls back to any version it had; an
//! exam only before its window opens, so students never see it change.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    Json,
};
use serde::{Deserialize, Serialize};

use super::Environment;
use crate::{
    auth::Principal,
    error::{ApiError, ErrorBody},
    store::{now, EnvironmentRow, Status, Version},
    traces::Verb,
    AppState,
};

/// A roll-back: to an earlier version of a course environment, or (no
/// digest) to this environment as it is.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollBack {
    /// The version's image digest (one of `versions`).
    #[serde(default)]
    pub(crate) digest: Option<String>,
}

/// An environment's versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionList {
    /// Newest first.
    versions: Vec<Version>,
}

/// The versions an environment had (those a roll-back can restore).
#[utoipa::path(
    get,
    path = "/api/v1/environments/{id}/versions",
    params(("id" = String, Path, description = "The environment's id")),
    responses(
        (status = 200, description = "Its versions", body = VersionList),
        (status = 403, description = "Not a teacher of its course", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn versions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<VersionList>, ApiError> {
    let env = managed(&state, &principal, &id).await?;
    Ok(Json(VersionList {
        versions: state.store.versions(&env.id).await?,
    }))
}

/// Make an environment current again, or one of its earlier versions (roll back).
#[utoipa::path(
    post,
    path = "/api/v1/environments/{id}/current",
    params(("id" = String, Path, description = "The environment's id")),
    request_body = RollBack,
    responses(
        (status = 200, description = "It is current", body = Environment),
        (status = 403, description = "Not a teacher of its course", body = ErrorBody),
        (status = 404, description = "No such environment or version", body = ErrorBody),
        (status = 409, description = "Building, not ready, or an exam whose window opened", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn make_current(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
    body: Option<Json<RollBack>>,
) -> Result<Json<Environment>, ApiError> {
    let rollback = body.map(|b| b.0).unwrap_or_default();
    let env = roll_back(&state, &principal, &id, rollback.digest.as_deref()).await?;
    Ok(Json(state.view_for(&principal, env).await?))
}

/// Archive an environment: no longer current, its name no longer offered.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{id}/archive",
    params(("id" = String, Path, description = "The environment's id")),
    responses(
        (status = 200, description = "It is archived", body = Environment),
        (status = 403, description = "Not a teacher of its course", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn archive(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Environment>, ApiError> {
    let env = archive_environment(&state, &principal, &id).await?;
    Ok(Json(state.view_for(&principal, env).await?))
}

/// An environment of a course `principal` teaches.
async fn managed(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<EnvironmentRow, ApiError> {
    let env = state.readable_environment(principal, id).await?;
    principal.require_write(&env.course)?;
    Ok(env)
}

/// Refuses to change an environment that is building, or an exam whose window opened.
async fn may_change(state: &AppState, env: &EnvironmentRow) -> Result<(), ApiError> {
    if matches!(env.status, Status::Queued | Status::Building) {
        return Err(ApiError::Conflict(format!(
            "{} is building: wait for its build to end, then roll back",
            env.name
        )));
    }
    if env.exam {
        if let Some(window) = state.store.window(&env.course, &env.name).await? {
            if window.opens.is_none_or(|opens| opens <= now()) {
                return Err(ApiError::Conflict(format!(
                    "the exam {}'s window has opened: its environment no longer changes",
                    env.name
                )));
            }
        }
    }
    Ok(())
}

/// Makes `id` current again, at `digest` when given (a course environment's earlier version).
pub(crate) async fn roll_back(
    state: &AppState,
    principal: &Principal,
    id: &str,
    digest: Option<&str>,
) -> Result<EnvironmentRow, ApiError> {
    let env = managed(state, principal, id).await?;
    may_change(state, &env).await?;
    match digest {
        Some(digest) if env.exam => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("an exam's versions are environments of their own: make that one current, not {digest}"),
            ))
        }
        Some(digest) => {
            let version = state
                .store
                .versions(&env.id)
                .await?
                .into_iter()
                .find(|v| v.digest == digest)
                .ok_or_else(|| ApiError::NotFound(format!("{} has no version {digest} to restore", env.name)))?;
            state.store.restore_version(&env, &version).await?;
        }
        None if env.status != Status::Ready => {
            return Err(ApiError::Conflict(format!(
                "{} failed to build: only a ready environment can be made current",
                env.name
            )))
        }
        None => {}
    }
    state.store.set_current(&env, true).await?;
    let env = state
        .store
        .environment(&env.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no environment {id}")))?;
    if let Some(digest) = &env.digest {
        state.publish_tags(&env, digest).await?;
    }
    state
        .traces
        .record(Some(principal), Verb::MadeCurrent, &env)
        .await;
    Ok(env)
}

/// Archives `id`: not current, its `latest` tag removed.
pub(crate) async fn archive_environment(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<EnvironmentRow, ApiError> {
    let env = managed(state, principal, id).await?;
    state.store.set_current(&env, false).await?;
    if env.current && !env.exam {
        let repository = crate::domain::repository(&env.course, &env.name);
        state.store.remove_tag(&repository, "latest").await?;
    }
    state
        .traces
        .record(Some(principal), Verb::Archived, &env)
        .await;
    state
        .store
        .environment(&env.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no environment {id}")))
}

/// A launch, as the hub reports it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Launch {
    /// The hub user whose server started from the environment.
    pub(crate) user: String,
}

/// Report that a hub user's server started from an environment (a trace, when traces are on).
#[utoipa::path(
    post,
    path = "/api/v1/environments/{id}/launches",
    params(("id" = String, Path, description = "The environment's id")),
    request_body = Launch,
    responses(
        (status = 204, description = "Recorded (queued for the LRS when traces are on)"),
        (status = 403, description = "Not the hub, nor that user", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn launched(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
    Json(launch): Json<Launch>,
) -> Result<axum::http::StatusCode, ApiError> {
    let for_itself = principal.hub_user.as_deref() == Some(launch.user.as_str());
    if !(for_itself
        || matches!(
            principal.role,
            crate::auth::Role::Hub | crate::auth::Role::Admin
        ))
    {
        return Err(ApiError::Forbidden(
            "a launch is reported by the hub (its token), or by the user who launched".into(),
        ));
    }
    let env = state.readable_environment(&principal, &id).await?;
    let user = Principal {
        subject: Some(trousse_builder::error::clip(&launch.user, 200).into_owned()),
        token_id: None,
        ..crate::auth::rules::principal_from(false, Vec::new(), Vec::new())
    };
    state.traces.record(Some(&user), Verb::Launched, &env).await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
