//! BinderHub's build API, for clients made for BinderHub (jupyterhub-fancy-
//! profiles' "build your own image", binderhub-service, mybinder's page): `GET
//! {base}build/{provider}/{spec}` builds a repository into an environment of
//! the configured course and streams BinderHub's events (`phase`: waiting,
//! fetching, building, pushing, built, launching, ready, failed; `message`;
//! `imageName`) as server-sent events. With `build_only=true` it ends at
//! `ready`; without, it starts the caller's server through the hub and ends
//! with `ready`, `url` and `token`, as BinderHub does.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::Uri,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use trousse_builder::progress::{Event, Stage};

use crate::{
    auth::Principal, builds::event::BuildEvent, config::BinderConfig, error::ApiError,
    hub::launch::HubLauncher, routes::environments, routes::events, AppState,
};

/// The query of a build request.
#[derive(Debug, Deserialize)]
pub(crate) struct BuildQuery {
    /// `true`: build only, no server is launched.
    #[serde(default)]
    build_only: Option<String>,
}

/// A repository as a BinderHub provider names it: its URL and ref.
pub(crate) fn repository_of(provider: &str, spec: &str) -> Result<(String, String), String> {
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
fn event(phase: &str, message: &str, image: Option<&str>) -> SseEvent {
    let mut data = json!({"phase": phase, "message": format!("{message}\n")});
    if let Some(image) = image {
        data["imageName"] = Value::from(image);
    }
    SseEvent::default().data(data.to_string())
}

/// Who a launch is for, and the hub that starts it.
struct LaunchTarget {
    launcher: HubLauncher,
    user: String,
}

/// The launch a request without `build_only=true` asks for, if it can be made.
fn launch_target(binder: &BinderConfig, principal: &Principal) -> Result<LaunchTarget, ApiError> {
    let launcher = binder.launcher.clone().ok_or_else(|| {
        ApiError::bad_request(
            "launch_unsupported",
            "launching needs the hub: trousse serve --hub-api-url URL --hub-public-url URL with \
             JUPYTERHUB_API_TOKEN set; or add build_only=true and start the image from the spawn page",
        )
    })?;
    let user = principal.hub_user.clone().ok_or_else(|| {
        ApiError::bad_request(
            "launch_needs_hub_user",
            "a launch starts a JupyterHub user's server: present that user's hub token, \
             or add build_only=true to build only",
        )
    })?;
    Ok(LaunchTarget { launcher, user })
}

/// `GET {base}build/{provider}/{spec}`: builds a repository, BinderHub's way,
/// and without `build_only=true` starts the caller's server with it.
pub(crate) async fn build(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    uri: Uri,
    Query(query): Query<BuildQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let binder = state.config.binder.clone().ok_or_else(|| {
        ApiError::NotFound("the BinderHub API is off: trousse serve --binder-course COURSE".into())
    })?;
    principal.require_write(&binder.course)?;
    let build_only = query
        .build_only
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("true"));
    let launch = match build_only {
        true => None,
        false => Some(launch_target(&binder, &principal)?),
    };
    let raw = uri
        .path()
        .split_once("/build/")
        .map_or("", |(_, rest)| rest);
    let (provider, spec) = raw.split_once('/').unwrap_or((raw, ""));
    let (url, reference) =
        repository_of(provider, spec).map_err(|m| ApiError::bad_request("invalid_spec", m))?;
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let repository = Repository {
        course: binder.course,
        url,
        reference,
    };
    tokio::spawn(run(state, repository, launch, events));
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(received).map(Ok);
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(25))
            .text("keep-alive"),
    ))
}

/// A repository at a ref, built into an environment of a course.
struct Repository {
    course: String,
    url: String,
    reference: String,
}

type Events = tokio::sync::mpsc::UnboundedSender<SseEvent>;

/// Builds the repository, then launches it or says it is ready, as BinderHub events.
async fn run(
    state: Arc<AppState>,
    repository: Repository,
    launch: Option<LaunchTarget>,
    events: Events,
) {
    let send = |e: SseEvent| {
        // the client may have gone: the build goes on for the next one
        let _ = events.send(e);
    };
    send(event("waiting", "Waiting for build to start...", None));
    // what is shown and sent on: never the credentials a URL may carry
    let url = trousse_builder::net::credentials::scrub(&repository.url).into_owned();
    let (url, reference) = (&url, &repository.reference);
    send(event(
        "fetching",
        &format!("Fetching {url}@{reference}..."),
        None,
    ));
    let Some((image, found)) = built(&state, &repository, &events).await else {
        return;
    };
    let Some(target) = launch else {
        let message = if found {
            "Done! Found built image"
        } else {
            "Done! Image built"
        };
        send(event("ready", message, Some(&image)));
        return;
    };
    send(event("built", "Built image, launching...", Some(&image)));
    send(event("launching", "Launching server...", None));
    let options = json!({"image": image, "repo_url": url, "binder_ref_url": format!("{url}/tree/{reference}")});
    let progress = |message: String| send(event("launching", &message, None));
    match target
        .launcher
        .launch(&target.user, options, progress)
        .await
    {
        Ok(server) => {
            let data = json!({
                "phase": "ready",
                "message": format!("server running at {}\n", server.url),
                "url": server.url,
                "token": server.token,
                "image": image,
                "imageName": image,
                "repo_url": url,
            });
            send(SseEvent::default().data(data.to_string()));
        }
        Err(e) => send(event("failed", &e.to_string(), None)),
    }
}

/// Submits the repository and follows its build, sending BinderHub's events;
/// the image once built (and whether it was found built), `None` once failed.
async fn built(
    state: &AppState,
    repository: &Repository,
    events: &Events,
) -> Option<(String, bool)> {
    let send = |e: SseEvent| {
        let _ = events.send(e);
    };
    let failed = |message: &str| {
        let _ = events.send(event("failed", message, None));
        None
    };
    let Repository {
        course,
        url,
        reference,
    } = repository;
    let name = environment_name(url, reference);
    let row = match environments::submit_repository(state, course, &name, url, reference).await {
        Ok(row) => row,
        Err(e) => return failed(&e.to_string()),
    };
    let (status, build_id) = (row.status, row.build_id.clone());
    let image = match state.view(row).await {
        Ok(env) => env.image,
        Err(e) => return failed(&e.to_string()),
    };
    if status == crate::domain::Status::Ready {
        return Some((image, true));
    }
    let Some(build_id) = build_id else {
        return failed("the build could not be found");
    };
    let mut stream = match events::build_events(state, &build_id, 0).await {
        Ok(stream) => stream,
        Err(e) => return failed(&e.to_string()),
    };
    while let Some((_, data)) = stream.next().await {
        match BuildEvent::parse(&data) {
            Some(BuildEvent::Stage(Event::StageStarted { stage, .. })) => send(match stage {
                Stage::Publish => event("pushing", "Pushing image", None),
                other => event("building", &format!("Step: {}", other.name()), None),
            }),
            Some(BuildEvent::Done {
                error: Some(error), ..
            }) => return failed(&error),
            Some(BuildEvent::Done { .. }) => return Some((image, false)),
            _ => {}
        }
    }
    failed("the build's events ended before it did")
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
