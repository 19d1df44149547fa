//! Push webhooks (GitHub's or GitLab's payload) that rebuild the course
//! environments following the pushed branch: `POST /api/v1/hooks/git`,
//! checked with the service's secret, for every course; and `POST
//! /api/v1/courses/{course}/hooks/git`, checked with the course's own secret
//! (set by its teachers), for that course only. Exam environments never move.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{auth::Principal, error::ApiError, routes::environments::follow_push, AppState};

/// What a push payload says, from either host.
#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    reference: String,
    repository: Option<PushRepository>,
    project: Option<PushRepository>,
}

/// The URLs a payload gives its repository under (GitHub's and GitLab's names).
#[derive(Debug, Deserialize, Default)]
struct PushRepository {
    clone_url: Option<String>,
    git_url: Option<String>,
    ssh_url: Option<String>,
    html_url: Option<String>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
}

impl PushRepository {
    fn urls(&self) -> impl Iterator<Item = &String> {
        [
            &self.clone_url,
            &self.git_url,
            &self.ssh_url,
            &self.html_url,
            &self.git_http_url,
            &self.git_ssh_url,
            &self.web_url,
        ]
        .into_iter()
        .flatten()
    }
}

/// One environment a push asked to follow it, and what happened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Followed {
    /// The course.
    pub course: String,
    /// The environment's name.
    pub name: String,
    /// 200: already at the pushed commit; 202: a build started; else the error's status.
    pub status: u16,
}

/// What a push did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PushOutcome {
    /// The environments that follow the pushed branch.
    pub environments: Vec<Followed>,
}

/// Receive a push from GitHub or GitLab and rebuild the environments that follow its branch.
#[utoipa::path(
    post,
    path = "/api/v1/hooks/git",
    request_body(content = Object, description = "A GitHub or GitLab push payload"),
    responses(
        (status = 200, description = "The environments following the branch, each with its outcome", body = PushOutcome),
        (status = 400, description = "Not a push payload", body = crate::error::ErrorBody),
        (status = 401, description = "No valid signature or token", body = crate::error::ErrorBody),
        (status = 404, description = "No webhook secret is configured", body = crate::error::ErrorBody),
    ),
    tag = "environments"
)]
pub(crate) async fn push(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PushOutcome>, ApiError> {
    let Some(secret) = state.config.webhook_secret.as_ref() else {
        return Err(ApiError::NotFound(
            "no webhook is configured: start the service with TROUSSE_WEBHOOK_SECRET, \
             or use a course's own hook (/api/v1/courses/COURSE/hooks/git)"
                .into(),
        ));
    };
    authenticate(&headers, &body, secret.as_bytes())?;
    follow(&state, &body, None).await
}

/// Receive a push for one course, checked with the course's own secret: only
/// that course's environments that follow the pushed branch are rebuilt.
#[utoipa::path(
    post,
    path = "/api/v1/courses/{course}/hooks/git",
    params(("course" = String, Path, description = "The course")),
    request_body(content = Object, description = "A GitHub or GitLab push payload"),
    responses(
        (status = 200, description = "The course's environments following the branch, each with its outcome", body = PushOutcome),
        (status = 400, description = "Not a push payload", body = crate::error::ErrorBody),
        (status = 401, description = "No valid signature or token", body = crate::error::ErrorBody),
        (status = 404, description = "The course has no webhook secret", body = crate::error::ErrorBody),
    ),
    tag = "environments"
)]
pub(crate) async fn course_push(
    State(state): State<Arc<AppState>>,
    UrlPath(course): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PushOutcome>, ApiError> {
    let Some(secret) = state.store.webhook_secret(&course).await? else {
        return Err(ApiError::NotFound(format!(
            "course '{}' has no webhook secret: its teacher sets one with PUT \
             /api/v1/courses/COURSE/webhook-secret",
            trousse_builder::error::clip(&course, 80)
        )));
    };
    authenticate(&headers, &body, secret.as_bytes())?;
    follow(&state, &body, Some(&course)).await
}

/// Rebuilds the environments (of `course`, or of every course) that follow the pushed branch.
async fn follow(
    state: &Arc<AppState>,
    body: &[u8],
    course: Option<&str>,
) -> Result<Json<PushOutcome>, ApiError> {
    let push: Push = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_push", format!("not a push payload: {e}")))?;
    let Some(branch) = push.reference.strip_prefix("refs/heads/") else {
        return Ok(Json(PushOutcome {
            environments: Vec::new(),
        }));
    };
    let pushed: Vec<String> = push
        .repository
        .iter()
        .chain(push.project.iter())
        .flat_map(PushRepository::urls)
        .map(|u| same_repository(u))
        .collect();
    let mut environments = Vec::new();
    for env in state.store.following_environments().await? {
        if course.is_some_and(|c| c != env.course) {
            continue;
        }
        let Some((url, reference)) = env.source.as_deref().and_then(source_of) else {
            continue;
        };
        if reference != branch || !pushed.contains(&same_repository(&url)) {
            continue;
        }
        let status = match follow_push(state, &env.course, &env.name, &url, branch).await {
            Ok(response) => response.status(),
            Err(e) => e.status_and_code().0,
        };
        tracing::info!(course = %env.course, name = %env.name, %status, "followed a push");
        environments.push(Followed {
            course: env.course,
            name: env.name,
            status: status.as_u16(),
        });
    }
    Ok(Json(PushOutcome { environments }))
}

/// A course's push webhook secret, as set (it is never read back).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSecret {
    /// The secret GitHub signs pushes with, or GitLab sends (16 characters at least).
    pub secret: String,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Set the course's push webhook secret (its hook: `/api/v1/courses/{course}/hooks/git`).
#[utoipa::path(
    put,
    path = "/api/v1/courses/{course}/webhook-secret",
    params(("course" = String, Path, description = "The course")),
    request_body = WebhookSecret,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "A secret shorter than 16 characters, or too long", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn set_secret(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
    Json(body): Json<WebhookSecret>,
) -> Result<StatusCode, ApiError> {
    principal.require_write(&course)?;
    let secret = crate::routes::git_tokens::checked_secret("a webhook secret", &body.secret, 16)?;
    state.store.set_webhook_secret(&course, secret).await?;
    tracing::info!(%course, "webhook secret set");
    Ok(StatusCode::NO_CONTENT)
}

/// Remove the course's push webhook secret (its hook then answers 404).
#[utoipa::path(
    delete,
    path = "/api/v1/courses/{course}/webhook-secret",
    params(("course" = String, Path, description = "The course")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
        (status = 404, description = "The course has no webhook secret", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn delete_secret(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_write(&course)?;
    if state.store.delete_webhook_secret(&course).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "course '{}' has no webhook secret",
            trousse_builder::error::clip(&course, 80)
        )))
    }
}

/// GitHub signs the body (`X-Hub-Signature-256`); GitLab sends the secret (`X-Gitlab-Token`).
fn authenticate(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let refused = || ApiError::Unauthorized("the push's signature or token is not valid".into());
    let mac = || Hmac::<Sha256>::new_from_slice(secret).map_err(|_| refused());
    if let Some(signature) = header("x-hub-signature-256") {
        let hex = signature.strip_prefix("sha256=").ok_or_else(refused)?;
        let expected = hex::decode(hex).map_err(|_| refused())?;
        let mut mac = mac()?;
        mac.update(body);
        return mac.verify_slice(&expected).map_err(|_| refused());
    }
    if let Some(token) = header("x-gitlab-token") {
        // compared as MACs of both, in constant time
        let mut theirs = mac()?;
        theirs.update(token.as_bytes());
        let mut ours = mac()?;
        ours.update(secret);
        return theirs
            .verify_slice(&ours.finalize().into_bytes())
            .map_err(|_| refused());
    }
    Err(refused())
}

/// A stored source record's URL and ref.
fn source_of(record: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(record).ok()?;
    Some((
        value["url"].as_str()?.to_string(),
        value["reference"].as_str()?.to_string(),
    ))
}

/// A URL as compared with a payload's: no scheme, user, `.git` or trailing slash; host lower-cased.
fn same_repository(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    match rest.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
        None => rest.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_one_repository_compare_equal() {
        let a = same_repository("https://GitLab.example.org/intro/course.git");
        assert_eq!(
            a,
            same_repository("http://gitlab.example.org/intro/course/")
        );
        assert_eq!(
            a,
            same_repository("https://oauth2@gitlab.example.org/intro/course")
        );
        assert_ne!(a, same_repository("https://gitlab.example.org/intro/other"));
    }

    #[test]
    fn signatures_and_tokens_are_checked() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let headers = |name: &'static str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            h
        };
        authenticate(&headers("x-hub-signature-256", &good), body, b"s3cret").unwrap();
        assert!(authenticate(&headers("x-hub-signature-256", &good), b"{}", b"s3cret").is_err());
        authenticate(&headers("x-gitlab-token", "s3cret"), body, b"s3cret").unwrap();
        assert!(authenticate(&headers("x-gitlab-token", "guess"), body, b"s3cret").is_err());
        assert!(authenticate(&HeaderMap::new(), body, b"s3cret").is_err());
    }
}
