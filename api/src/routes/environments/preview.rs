//! `POST /api/v1/courses/{course}/preview`: what a request would install —
//! its packages, versions and download sizes, and what changed since the
//! course's current environment — solved as a submission is, built never.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path as UrlPath, Query, State},
    http::HeaderMap,
    Json,
};
use serde::Serialize;
use trousse_builder::Lock;

use super::{submission::Submission, EnvironmentRequest, SubmitQuery};
use crate::{
    auth::Principal,
    domain::submission::check_name,
    error::{ApiError, ErrorBody},
    AppState,
};

/// One package of a preview.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct PreviewPackage {
    /// The name.
    pub(crate) name: String,
    /// The version.
    pub(crate) version: String,
    /// `conda` or `pypi`.
    pub(crate) kind: &'static str,
    /// The download size in bytes, as the channel gives it (conda packages).
    pub(crate) size: Option<u64>,
    /// The bytes it installs, when the package is in the service's cache.
    pub(crate) installed: Option<u64>,
}

/// A package whose version changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Changed {
    /// The name.
    pub(crate) name: String,
    /// The version before.
    pub(crate) from: String,
    /// The version now.
    pub(crate) to: String,
}

/// What changed since an environment of the course.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Changes {
    /// The environment compared with (the current one of that name, else the
    /// course's newest current one).
    pub(crate) since: String,
    /// Packages it did not have.
    pub(crate) added: Vec<String>,
    /// Packages it had.
    pub(crate) removed: Vec<String>,
    /// Packages in both, at other versions.
    pub(crate) changed: Vec<Changed>,
}

/// What a request would install.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Preview {
    /// The environment's name.
    pub(crate) name: String,
    /// The packages (of the first platform), by name.
    pub(crate) packages: Vec<PreviewPackage>,
    /// The sum of the conda packages' download sizes.
    pub(crate) download_bytes: u64,
    /// The sum of the installed sizes known (packages in the service's cache).
    pub(crate) installed_bytes: u64,
    /// How many packages that sum counts.
    pub(crate) installed_known: usize,
    /// What changed since the course's current environment, if it has one.
    pub(crate) changes: Option<Changes>,
}

/// Solve a request without building it: its packages, sizes and changes.
#[utoipa::path(
    post,
    path = "/api/v1/courses/{course}/preview",
    params(("course" = String, Path, description = "The course"), SubmitQuery),
    request_body(content = EnvironmentRequest, description = "As for a submission"),
    responses(
        (status = 200, description = "What it would install", body = Preview),
        (status = 400, description = "Malformed request, spec or lock", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not a teacher of the course, or a channel not allowed", body = ErrorBody),
        (status = 422, description = "Unknown package, unsolvable, too many packages", body = ErrorBody),
        (status = 502, description = "A channel could not be read", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub(crate) async fn preview(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath(course): UrlPath<String>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Preview>, ApiError> {
    let request = EnvironmentRequest::from_body(&headers, query, &body)?;
    Ok(Json(
        preview_request(&state, &principal, &course, request).await?,
    ))
}

/// What `request` would install in `course`, for a teacher of it.
pub(crate) async fn preview_request(
    state: &AppState,
    principal: &Principal,
    course: &str,
    request: EnvironmentRequest,
) -> Result<Preview, ApiError> {
    principal.require_write(course)?;
    check_name("course", course)?;
    state.charge_submission(principal).await?;
    let (submission, _) = Submission::from_request(state, course, request).await?;
    let (lock, _) = submission.lock(state).await?;
    let cache = trousse_builder::cache::CacheDir::new(state.config.cache_dir()).ok();
    let packages = packages_of(&lock, cache.as_ref());
    let download_bytes = packages.iter().filter_map(|p| p.size).sum();
    let installed_bytes = packages.iter().filter_map(|p| p.installed).sum();
    let installed_known = packages.iter().filter(|p| p.installed.is_some()).count();
    let changes = changes_since(state, course, &submission.name, &packages).await?;
    Ok(Preview {
        name: submission.name,
        packages,
        download_bytes,
        installed_bytes,
        installed_known,
        changes,
    })
}

/// The packages of a lock's first platform, conda then PyPI, by name (with
/// their installed sizes when `cache` holds them).
fn packages_of(
    lock: &Lock,
    cache: Option<&trousse_builder::cache::CacheDir>,
) -> Vec<PreviewPackage> {
    let Some(platform) = lock.platforms.first() else {
        return Vec::new();
    };
    let conda = platform.records.iter().map(|r| PreviewPackage {
        name: r.package_record.name.as_normalized().to_string(),
        version: r.package_record.version.to_string(),
        kind: "conda",
        size: r.package_record.size,
        installed: cache.and_then(|c| c.installed_size(&r.package_record)),
    });
    let pypi = platform.pypi.iter().map(|w| PreviewPackage {
        name: w.name.to_string(),
        version: w.version.to_string(),
        kind: "pypi",
        size: None,
        installed: None,
    });
    conda.chain(pypi).collect()
}

/// The changes since the current environment of that name, else the course's
/// newest current one; none when the course has none.
async fn changes_since(
    state: &AppState,
    course: &str,
    name: &str,
    now: &[PreviewPackage],
) -> Result<Option<Changes>, ApiError> {
    let before = match state.store.current_environment(course, name).await? {
        Some(env) => Some(env),
        None => state
            .store
            .course_environments(course)
            .await?
            .into_iter()
            .find(|e| e.current && !e.exam),
    };
    let Some(before) = before else {
        return Ok(None);
    };
    let Ok(lock) = Lock::from_text(&before.lock, Path::new("environment.lock")) else {
        return Ok(None);
    };
    Ok(Some(compare(before.name, &packages_of(&lock, None), now)))
}

/// What changed from `before` to `now`.
fn compare(since: String, before: &[PreviewPackage], now: &[PreviewPackage]) -> Changes {
    let key = |p: &PreviewPackage| (p.kind, p.name.clone());
    let old: BTreeMap<_, _> = before.iter().map(|p| (key(p), p.version.clone())).collect();
    let new: BTreeMap<_, _> = now.iter().map(|p| (key(p), p.version.clone())).collect();
    Changes {
        since,
        added: new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .map(|k| k.1.clone())
            .collect(),
        removed: old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| k.1.clone())
            .collect(),
        changed: new
            .iter()
            .filter_map(|(k, to)| {
                let from = old.get(k)?;
                (from != to).then(|| Changed {
                    name: k.1.clone(),
                    from: from.clone(),
                    to: to.clone(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> PreviewPackage {
        PreviewPackage {
            name: name.into(),
            version: version.into(),
            kind: "conda",
            size: Some(1),
            installed: None,
        }
    }

    #[test]
    fn changes_name_what_was_added_removed_and_moved() {
        let before = [
            package("numpy", "1.26"),
            package("scipy", "1.0"),
            package("python", "3.11"),
        ];
        let now = [
            package("numpy", "2.0"),
            package("python", "3.11"),
            package("pandas", "2.2"),
        ];
        let changes = compare("week1".into(), &before, &now);
        assert_eq!(changes.added, ["pandas"]);
        assert_eq!(changes.removed, ["scipy"]);
        assert_eq!(changes.changed.len(), 1);
        assert_eq!(
            (
                changes.changed[0].from.as_str(),
                changes.changed[0].to.as_str()
            ),
            ("1.26", "2.0")
        );
    }
}
