//! Exam time windows: when a course's exam may be started. A window belongs to
//! the exam's name in its course, set with the submission or on its own route;
//! the hub lists an exam first while it is open and refuses it outside.

use std::sync::Arc;

use axum::{
    extract::{Path as UrlPath, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use trousse_builder::error::clip;

use crate::{
    auth::Principal, error::ApiError, routes::environments::Environment, store::now, AppState,
};

#[cfg(test)]
use crate::auth::Role;

/// An exam's window in seconds since the epoch; an absent end is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// When it opens.
    pub opens: Option<i64>,
    /// When it closes.
    pub closes: Option<i64>,
}

impl Window {
    /// The window two RFC 3339 times give (`field_prefix` names where they came from);
    /// `None` when neither is given.
    pub fn parse(
        opens: Option<&str>,
        closes: Option<&str>,
        field_prefix: &str,
    ) -> Result<Option<Self>, ApiError> {
        if opens.is_none() && closes.is_none() {
            return Ok(None);
        }
        let window = Window {
            opens: opens
                .map(|t| instant(t, &format!("{field_prefix}opens")))
                .transpose()?,
            closes: closes
                .map(|t| instant(t, &format!("{field_prefix}closes")))
                .transpose()?,
        };
        if let (Some(opens), Some(closes)) = (window.opens, window.closes) {
            if closes <= opens {
                return Err(ApiError::bad_request(
                    "invalid_window",
                    format!("\"{field_prefix}closes\" must come after \"{field_prefix}opens\""),
                ));
            }
        }
        Ok(Some(window))
    }

    /// Whether it is open at `at` (seconds since the epoch).
    pub fn is_open(&self, at: i64) -> bool {
        self.opens.is_none_or(|o| o <= at) && self.closes.is_none_or(|c| at < c)
    }

    /// When it opens and closes, in words.
    pub fn describe(&self) -> String {
        match (self.opens, self.closes) {
            (Some(o), Some(c)) => {
                format!("it opens at {} and closes at {}", rfc3339(o), rfc3339(c))
            }
            (Some(o), None) => format!("it opens at {}", rfc3339(o)),
            (None, Some(c)) => format!("it closed at {}", rfc3339(c)),
            (None, None) => "it is always open".into(),
        }
    }

    /// How the API shows it, now.
    pub fn view(&self) -> WindowView {
        WindowView {
            opens: self.opens.map(rfc3339),
            closes: self.closes.map(rfc3339),
            open: self.is_open(now()),
        }
    }
}

/// Whether an exam's image, lock, source, events and `/v2/` repository are
/// withheld from `caller` now (`None`: an anonymous puller). The course's
/// teachers, admins and hubs see an exam at any time; students and anonymous
/// callers only while its window is open.
pub fn sealed(caller: Option<&Principal>, course: &str, window: &Window, at: i64) -> bool {
    !caller.is_some_and(|p| p.sees_closed_exams(course)) && !window.is_open(at)
}

/// The first second of the year 10000: RFC 3339 has four-digit years.
const YEAR_10000: i64 = 253_402_300_800;

/// A time as RFC 3339 (years 1970 to 9999), or a 400 naming the field.
fn instant(text: &str, field: &str) -> Result<i64, ApiError> {
    let bad = |reason: String| {
        ApiError::bad_request(
            "invalid_window",
            format!(
                "\"{field}\" is not an RFC 3339 time such as 2026-12-14T09:00:00+01:00 ({reason}): '{}'",
                clip(text, 60)
            ),
        )
    };
    let seconds = DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp())
        .map_err(|e| bad(e.to_string()))?;
    if !(0..YEAR_10000).contains(&seconds) {
        return Err(bad("it must lie between 1970 and 9999".into()));
    }
    Ok(seconds)
}

/// Seconds since the epoch as RFC 3339, in UTC.
fn rfc3339(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A window as set: RFC 3339 times, either may be left out.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// When the exam opens, e.g. `2026-12-14T09:00:00+01:00` [default: open already].
    pub opens: Option<String>,
    /// When it closes [default: never].
    pub closes: Option<String>,
}

/// An exam's window as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    /// When it opens (RFC 3339, UTC), if set.
    pub opens: Option<String>,
    /// When it closes (RFC 3339, UTC), if set.
    pub closes: Option<String>,
    /// Whether it is open now.
    pub open: bool,
}

/// Set the time window of a course's exam; answers the exam environment.
#[utoipa::path(
    put,
    path = "/api/v1/courses/{course}/exams/{name}/window",
    operation_id = "set_exam_window",
    params(("course" = String, Path, description = "The course"), ("name" = String, Path, description = "The exam environment's name")),
    request_body = WindowRequest,
    responses(
        (status = 200, description = "Set", body = Environment),
        (status = 400, description = "A time that is not RFC 3339, or a window that closes before it opens", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
        (status = 404, description = "No exam environment of that name", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub async fn set(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath((course, name)): UrlPath<(String, String)>,
    Json(body): Json<WindowRequest>,
) -> Result<Json<Environment>, ApiError> {
    principal.require_write(&course)?;
    let exam = current_exam(&state, &course, &name).await?;
    let window = Window::parse(body.opens.as_deref(), body.closes.as_deref(), "")?;
    match window {
        Some(window) => state.store.set_window(&course, &name, window).await?,
        None => {
            state.store.delete_window(&course, &name).await?;
        }
    }
    tracing::info!(%course, %name, ?window, "exam window set");
    Ok(Json(state.view(exam).await?))
}

/// Remove the time window of a course's exam: it is open.
#[utoipa::path(
    delete,
    path = "/api/v1/courses/{course}/exams/{name}/window",
    operation_id = "delete_exam_window",
    params(("course" = String, Path, description = "The course"), ("name" = String, Path, description = "The exam environment's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not granted this course", body = crate::error::ErrorBody),
        (status = 404, description = "No exam environment of that name, or it has no window", body = crate::error::ErrorBody),
    ),
    security(("token" = [])),
    tag = "environments"
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    UrlPath((course, name)): UrlPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_write(&course)?;
    current_exam(&state, &course, &name).await?;
    if state.store.delete_window(&course, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "the exam '{}' of course '{}' has no time window",
            clip(&name, 80),
            clip(&course, 80)
        )))
    }
}

/// The exam environment a course's name means, or a 404 that says why not.
async fn current_exam(
    state: &AppState,
    course: &str,
    name: &str,
) -> Result<crate::store::EnvironmentRow, ApiError> {
    match state.store.current_environment(course, name).await? {
        Some(env) if env.exam => Ok(env),
        Some(_) => Err(ApiError::NotFound(format!(
            "'{}' of course '{}' is not an exam: only exams have time windows (submit it with \"exam\": true)",
            clip(name, 80),
            clip(course, 80)
        ))),
        None => Err(ApiError::NotFound(format!(
            "course '{}' has no environment '{}'",
            clip(course, 80),
            clip(name, 80)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_parses_rfc3339_and_is_open_between_its_ends() {
        let w = Window::parse(
            Some("2026-12-14T09:00:00+01:00"),
            Some("2026-12-14T11:00:00+01:00"),
            "",
        )
        .unwrap()
        .unwrap();
        let opens = w.opens.unwrap();
        assert_eq!(rfc3339(opens), "2026-12-14T08:00:00Z");
        assert!(!w.is_open(opens - 1));
        assert!(w.is_open(opens));
        assert!(w.is_open(opens + 7199));
        assert!(!w.is_open(opens + 7200));
    }

    #[test]
    fn open_ends_and_no_window() {
        assert_eq!(Window::parse(None, None, "").unwrap(), None);
        let closes_only = Window::parse(None, Some("2000-01-01T00:00:00Z"), "")
            .unwrap()
            .unwrap();
        assert!(!closes_only.is_open(now()));
        assert!(closes_only.is_open(0));
    }

    #[test]
    fn bad_times_name_their_field() {
        let e = Window::parse(Some("tomorrow at nine"), None, "window.").unwrap_err();
        assert!(e.to_string().contains("\"window.opens\""), "{e}");
        let e = Window::parse(
            Some("2026-12-14T11:00:00Z"),
            Some("2026-12-14T09:00:00Z"),
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("must come after"), "{e}");
        // chrono reads a year past 9999 written with a sign; it would be shown as `+10000-…`
        for far in ["9999-12-31T23:30:00-01:00", "1969-12-31T23:59:59Z"] {
            let e = Window::parse(None, Some(far), "").unwrap_err();
            assert!(
                e.to_string().contains("between 1970 and 9999"),
                "{far}: {e}"
            );
        }
        let last = Window::parse(None, Some("9999-12-31T23:59:59Z"), "")
            .unwrap()
            .unwrap();
        assert_eq!(last.view().closes.as_deref(), Some("9999-12-31T23:59:59Z"));
    }

    fn principal(role: Role, courses: &[&str], reads: &[&str]) -> Principal {
        Principal {
            role,
            courses: courses.iter().map(|c| c.to_string()).collect(),
            reads: reads.iter().map(|c| c.to_string()).collect(),
            hub_user: None,
        }
    }

    #[test]
    fn students_see_an_exam_only_while_it_is_open() {
        let window = Window {
            opens: Some(1000),
            closes: Some(2000),
        };
        let student = principal(Role::Student, &[], &["intro"]);
        let teacher = principal(Role::Teacher, &["intro"], &[]);
        // teaches another course, attends this one
        let both = principal(Role::Teacher, &["algebra"], &["intro"]);
        let other_teacher = principal(Role::Teacher, &["algebra"], &[]);
        for at in [999, 2000] {
            assert!(sealed(Some(&student), "intro", &window, at));
            assert!(sealed(Some(&both), "intro", &window, at));
            assert!(sealed(Some(&other_teacher), "intro", &window, at));
            assert!(sealed(None, "intro", &window, at));
            assert!(!sealed(Some(&teacher), "intro", &window, at));
            assert!(!sealed(
                Some(&principal(Role::Hub, &[], &[])),
                "intro",
                &window,
                at
            ));
            assert!(!sealed(
                Some(&principal(Role::Admin, &[], &[])),
                "intro",
                &window,
                at
            ));
        }
        assert!(!sealed(Some(&student), "intro", &window, 1000));
        assert!(!sealed(None, "intro", &window, 1999));
    }
}
