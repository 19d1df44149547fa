//! BinderHub's build API, for clients made for BinderHub (jupyterhub-fancy-
//! profiles' "build your own image", binderhub-service): `GET
//! {base}build/{provider}/{spec}?build_only=true` builds a repository into an
//! environment of the configured course and streams BinderHub's events
//! (`phase`: waiting, fetching, building, pushing, built, ready, failed;
//! `message`; `imageName`) as server-sent events.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::Uri,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::{stream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use trousse_builder::progress::{Event, Stage};

use crate::{
    auth::Principal, build_event::BuildEvent, environments, error::ApiError, events, AppState,
};

/// Where BinderHub builds land.
#[derive(Debug, Clone)]
pub struct BinderConfig {
    /// The course whose environments repositories are built into.
    pub course: String,
    /// The path the API is mounted under, e.g. `/services/binder/` (always `/…/`).
    pub base_url: String,
}

/// The query of a build request.
#[derive(Debug, Deserialize)]
pub struct BuildQuery {
    /// `true`: build only, no server is launched.
    #[serde(default)]
    build_only: Option<String>,
}

/// A repository as a BinderHub provider names it: its URL and ref.
pub fn repository_of(provider: &str, spec: &str) -> Result<(String, String), String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| format!("'{s}' is not UTF-8 once decoded"))
    };
    let (repo, reference) = match provider {
        "gh" => {
            let mut parts = spec.splitn(3, '/');
            let (owner, name, reference) = (parts.next(), parts.next(), parts.next());
            match (owner, name, reference) {
                (Some(o), Some(n), Some(r)) if !o.is_empty() && !n.is_empty() && !r.is_empty() => (
                    format!("https://github.com/{o}/{}", n.trim_end_matches(".git")),
                    r.to_string(),
                ),
                _ => return Err("a gh spec is OWNER/REPO/REF".into()),
            }
        }
        "gl" | "git" => {
            let (escaped, reference) = spec
                .split_once('/')
                .filter(|(e, r)| !e.is_empty() && !r.is_empty())
                .ok_or_else(|| {
                    format!(
                        "a {provider} spec is ESCAPED-{}/REF",
                        if provider == "gl" { "PROJECT" } else { "URL" }
                    )
                })?;
            let decoded = decode(escaped)?;
            let url = if provider == "gl" {
                format!("https://gitlab.com/{decoded}")
            } else {
                decoded
            };
            (url, reference.to_string())
        }
        other => {
            return Err(format!(
                "provider '{other}' is not served here: gh, gl or git"
            ))
        }
    };
    Ok((repo, decode(&reference)?))
}

/// An environment name for a repository and ref: readable, unique, valid.
fn environment_name(url: &str, reference: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("repo");
    let slug: String = format!("{}-{reference}", last.trim_end_matches(".git"))
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let hash = hex::encode(Sha256::digest(format!("{url}\n{reference}").as_bytes()));
    format!(
        "{}-{}",
        slug.trim_matches(|c: char| !c.is_ascii_alphanumeric()),
        &hash[..8]
    )
}

/// One BinderHub event.
fn event(phase: &str, message: &str, image: Option<&str>) -> Result<SseEvent, Infallible> {
    let mut data = json!({"phase": phase, "message": format!("{message}\n")});
    if let Some(image) = image {
        data["imageName"] = Value::from(image);
    }
    Ok(SseEvent::default().data(data.to_string()))
}

/// The BinderHub event a trousse build event becomes, if any.
fn translate(data: &str, image: &str) -> Option<Result<SseEvent, Infallible>> {
    match BuildEvent::parse(data)? {
        BuildEvent::Stage(Event::StageStarted { stage, .. }) => Some(match stage {
            Stage::Publish => event("pushing", "Pushing image", None),
            other => event("building", &format!("Step: {}", other.name()), None),
        }),
        BuildEvent::Stage(_) | BuildEvent::Status { .. } => None,
        BuildEvent::Done {
            error: Some(error), ..
        } => Some(event("failed", &error, None)),
        BuildEvent::Done { .. } => Some(event("ready", "Done! Image built", Some(image))),
    }
}

/// `GET {base}build/{provider}/{spec}`: builds a repository, BinderHub's way.
pub async fn build(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    uri: Uri,
    Query(query): Query<BuildQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let binder = state.config.binder.clone().ok_or_else(|| {
        ApiError::NotFound("the BinderHub API is off: trousse serve --binder-course COURSE".into())
    })?;
    principal.require_write(&binder.course)?;
    if query.build_only.as_deref() != Some("true") {
        return Err(ApiError::bad_request(
            "launch_unsupported",
            "trousse builds only: add build_only=true and launch through the hub's spawn page",
        ));
    }
    let raw = uri
        .path()
        .split_once("/build/")
        .map_or("", |(_, rest)| rest);
    let (provider, spec) = raw.split_once('/').unwrap_or((raw, ""));
    let (url, reference) =
        repository_of(provider, spec).map_err(|m| ApiError::bad_request("invalid_spec", m))?;
    let waiting = stream::iter([
        event("waiting", "Waiting for build to start...", None),
        event("fetching", &format!("Fetching {url}@{reference}..."), None),
    ]);
    let rest = build_stream(state, binder.course, url, reference).await;
    Ok(Sse::new(waiting.chain(rest)).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(25))
            .text("keep-alive"),
    ))
}

/// Submits the repository and follows its build, as BinderHub events.
async fn build_stream(
    state: Arc<AppState>,
    course: String,
    url: String,
    reference: String,
) -> stream::BoxStream<'static, Result<SseEvent, Infallible>> {
    let name = environment_name(&url, &reference);
    let env = match environments::submit_repository(&state, &course, &name, &url, &reference).await
    {
        Ok(env) => env,
        Err(e) => return stream::iter([event("failed", &e.to_string(), None)]).boxed(),
    };
    let image = env.image.clone();
    if env.status == crate::store::Status::Ready {
        return stream::iter([event("ready", "Done! Found built image", Some(&image))]).boxed();
    }
    let build_id = match state.store.environment(&env.id).await {
        Ok(Some(row)) => row.build_id,
        _ => None,
    };
    let Some(build_id) = build_id else {
        return stream::iter([event("failed", "the build could not be found", None)]).boxed();
    };
    match events::build_events(&state, &build_id, 0).await {
        Ok(events) => events
            .filter_map(move |(_, data)| std::future::ready(translate(&data, &image)))
            .boxed(),
        Err(e) => stream::iter([event("failed", &e.to_string(), None)]).boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_name_repositories() {
        assert_eq!(
            repository_of("gh", "jupyterhub/binder-example/main").unwrap(),
            (
                "https://github.com/jupyterhub/binder-example".into(),
                "main".into()
            )
        );
        assert_eq!(
            repository_of("gl", "group%2Fcourse/v1").unwrap(),
            ("https://gitlab.com/group/course".into(), "v1".into())
        );
        assert_eq!(
            repository_of("git", "http%3A%2F%2F127.0.0.1%3A8000%2Fcourse.git/HEAD").unwrap(),
            ("http://127.0.0.1:8000/course.git".into(), "HEAD".into())
        );
        assert!(repository_of("zenodo", "10.5281/x").is_err());
        assert!(repository_of("gh", "only-owner").is_err());
    }

    #[test]
    fn names_are_valid_and_distinct() {
        let a = environment_name("https://github.com/org/Course.git", "main");
        let b = environment_name("https://github.com/org/Course.git", "2026");
        assert!(a.starts_with("course-main-"), "{a}");
        assert_ne!(a, b);
        assert!(
            a.len() <= 64
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        );
    }
}
