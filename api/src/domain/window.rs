//! Exam windows: when a course's exam may be seen and pulled, and by whom.

use chrono::{DateTime, SecondsFormat, Utc};
use trousse_builder::error::clip;

use crate::{auth::Principal, error::ApiError};

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
}

/// Whether an exam's image, lock, source, events and `/v2/` repository are
/// withheld from `caller` now (`None`: an anonymous puller). The course's
/// teachers, admins and hubs see an exam at any time; students and anonymous
/// callers only while its window is open.
pub(crate) fn sealed(caller: Option<&Principal>, course: &str, window: &Window, at: i64) -> bool {
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
pub(crate) fn rfc3339(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

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
        assert!(!closes_only.is_open(946_684_800));
        assert!(closes_only.is_open(946_684_799));
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
        assert_eq!(rfc3339(last.closes.unwrap()), "9999-12-31T23:59:59Z");
    }

    fn principal(role: Role, courses: &[&str], reads: &[&str]) -> Principal {
        Principal {
            role,
            courses: courses.iter().map(|c| c.to_string()).collect(),
            reads: reads.iter().map(|c| c.to_string()).collect(),
            hub_user: None,
            subject: None,
            token_id: None,
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
