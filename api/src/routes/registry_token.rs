//! `GET /api/v1/registry/token`: the token realm of the institution's
//! registry. The registry (CNCF distribution with `auth.token`) sends pulls
//! and pushes here; each requested action on `PREFIX/COURSE/NAME` is granted
//! by the rules of trousse's own `/v2/`: a course's members pull it, students
//! an exam only while its window is open, teachers and the hub always, and
//! only administrators (workers) push.

use std::sync::Arc;

use axum::{
    extract::{RawQuery, State},
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{
    auth::{
        registry::{parse_scopes, Access},
        Principal, Role,
    },
    error::{ApiError, ErrorBody},
    AppState,
};

/// The most query parameters a token request may carry.
const MAX_PARAMETERS: usize = 64;

/// A registry token, as distribution's clients read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RegistryToken {
    /// The JWT to present to the registry.
    token: String,
    /// The same (OAuth 2's name for it).
    access_token: String,
    /// Seconds it stays valid.
    expires_in: u64,
}

/// A token for the institution's registry, granting of the requested scopes
/// what the caller may do (Basic auth: any user name, a trousse or hub token
/// as password; none for anonymous pulls when pulls need no token).
#[utoipa::path(
    get,
    path = "/api/v1/registry/token",
    params(
        ("service" = String, Query, description = "The registry's service name (its auth.token.service)"),
        ("scope" = Option<String>, Query, description = "repository:PREFIX/COURSE/NAME:pull[,push] (repeatable)")
    ),
    responses(
        (status = 200, description = "A signed token; actions not granted are left out", body = RegistryToken),
        (status = 400, description = "Another service, or a malformed scope", body = ErrorBody),
        (status = 401, description = "Credentials needed, or not valid", body = ErrorBody),
        (status = 404, description = "This service issues no registry tokens", body = ErrorBody),
    ),
    tag = "pull"
)]
pub(crate) async fn issue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let issuer = state.config.registry_issuer.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "this service issues no registry tokens: start it with --registry-token-key".into(),
        )
    })?;
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .take(MAX_PARAMETERS)
            .collect();
    let service = pairs.iter().find(|(k, _)| k == "service").map(|(_, v)| v);
    if service != Some(&issuer.service) {
        return Err(ApiError::bad_request(
            "wrong_service",
            format!(
                "this realm issues tokens for the registry service '{}' only",
                issuer.service
            ),
        ));
    }
    let scopes = parse_scopes(
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )?;
    let caller = caller(&state, &headers).await?;
    let mut granted = Vec::with_capacity(scopes.len());
    for scope in scopes {
        granted.push(grant(&state, caller.as_ref(), scope).await?);
    }
    let subject = caller
        .as_ref()
        .and_then(|c| c.hub_user.clone().or_else(|| c.subject.clone()))
        .or_else(|| caller.as_ref().map(|c| c.role.name().to_string()))
        .unwrap_or_else(|| "anonymous".into());
    let (token, expires_in) = issuer.sign(&subject, &granted)?;
    let answer = RegistryToken {
        access_token: token.clone(),
        token,
        expires_in,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// The caller: its token when it sends one, anonymous only when pulls need none.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Ok(Some(state.authenticate(headers).await?));
    }
    if state.config.require_pull_token {
        return Err(ApiError::Unauthorized(
            "the registry needs credentials: docker login with a trousse or hub token as password"
                .into(),
        ));
    }
    Ok(None)
}

/// The scope with only the actions the caller may take.
async fn grant(
    state: &AppState,
    caller: Option<&Principal>,
    mut access: Access,
) -> Result<Access, ApiError> {
    let allowed = allowed_actions(state, caller, &access).await?;
    access.actions.retain(|a| allowed.contains(&a.as_str()));
    Ok(access)
}

/// What the caller may do on a scope's repository.
async fn allowed_actions(
    state: &AppState,
    caller: Option<&Principal>,
    access: &Access,
) -> Result<&'static [&'static str], ApiError> {
    let admin = caller.is_some_and(|c| c.role == Role::Admin);
    if access.kind != "repository" {
        // the catalog lists every course's repositories
        return Ok(if admin { &["*"] } else { &[] });
    }
    let Some((course, name)) = course_repository(state, &access.name) else {
        return Ok(&[]);
    };
    if admin {
        return Ok(&["pull", "push", "delete", "*"]);
    }
    let reads = match caller {
        Some(caller) => caller.can_read(course),
        None => !state.config.require_pull_token,
    };
    if !reads || state.sealed_exam(caller, course, name).await?.is_some() {
        return Ok(&[]);
    }
    Ok(&["pull"])
}

/// `(COURSE, NAME)` of a registry path under `--push-to`'s prefix; none for other paths.
fn course_repository<'a>(state: &AppState, path: &'a str) -> Option<(&'a str, &'a str)> {
    let push_to = state.config.push_to.as_deref()?;
    let prefix = push_to
        .split_once('/')
        .map_or("", |(_, p)| p.trim_matches('/'));
    let rest = if prefix.is_empty() {
        path
    } else {
        path.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let (course, name) = rest.split_once('/')?;
    (crate::names::is_name(course) && crate::names::is_name(name)).then_some((course, name))
}
