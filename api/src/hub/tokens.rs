//! JupyterHub tokens: a token trousse does not know is asked of the hub
//! (`GET {hub_api}/user`), and the user's groups give their course rights —
//! a student reads their courses, a teacher manages theirs. Answers are kept
//! a minute, by the token's hash.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;
use url::Url;

use crate::{
    auth::{rules::principal_from, token_hash, Principal},
    error::ApiError,
};

/// How long a hub's answer about a token is trusted.
const TRUSTED_FOR: Duration = Duration::from_secs(60);
/// The most answers remembered (a fresh random token per request cannot grow it further).
const MAX_REMEMBERED: usize = 10_000;
/// Hub look-ups of tokens not remembered: this many at once, refilled this many per second.
const LOOKUP_BURST: f64 = 50.0;
const LOOKUPS_PER_SECOND: f64 = 10.0;

/// Where the hub is, and how its groups name courses.
#[derive(Debug, Clone)]
pub struct HubAuth {
    /// The hub's API, e.g. `http://hub:8081/hub/api/`.
    pub api_url: Url,
    /// The prefix of the groups of a course's students (`course:`).
    pub student_prefix: String,
    /// The prefix of the groups of a course's teachers (`teacher:`).
    pub teacher_prefix: String,
}

/// What `GET /hub/api/user` answers (the fields read).
#[derive(Debug, Deserialize)]
pub(crate) struct HubUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// Resolves JupyterHub tokens, remembering recent answers (a bounded number)
/// and asking the hub about new ones at a bounded rate.
#[derive(Debug)]
pub(crate) struct HubTokens {
    known: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
    /// The look-ups left, and when they were last counted.
    lookups: Mutex<(f64, Instant)>,
}

impl Default for HubTokens {
    fn default() -> Self {
        Self {
            known: Mutex::new(HashMap::new()),
            lookups: Mutex::new((LOOKUP_BURST, Instant::now())),
        }
    }
}

impl HubTokens {
    /// The principal a JupyterHub token stands for, or `None` if the hub does not know it.
    pub(crate) async fn resolve(
        &self,
        hub: &HubAuth,
        token: &str,
    ) -> Result<Option<Principal>, ApiError> {
        let key = token_hash(token);
        if let Some(found) = self.remembered(&key) {
            return Ok(found);
        }
        self.take_lookup()?;
        let answer = ask_hub(hub, token).await?;
        let principal = answer.map(|user| principal_of(hub, &user));
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.retain(|_, (_, at)| at.elapsed() < TRUSTED_FOR);
        if known.len() >= MAX_REMEMBERED {
            // full of fresh answers: forget the oldest
            if let Some(oldest) = known
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                known.remove(&oldest);
            }
        }
        known.insert(key, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    /// Counts one look-up at the hub, refusing beyond the rate (a token bucket).
    fn take_lookup(&self) -> Result<(), ApiError> {
        let mut lookups = self
            .lookups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (left, at) = *lookups;
        let now = Instant::now();
        let refilled = (left + at.elapsed().as_secs_f64() * LOOKUPS_PER_SECOND).min(LOOKUP_BURST);
        if refilled < 1.0 {
            *lookups = (refilled, now);
            return Err(ApiError::Busy(
                "too many new tokens to check with the hub at once; try again in a few seconds"
                    .into(),
            ));
        }
        *lookups = (refilled - 1.0, now);
        Ok(())
    }

    fn remembered(&self, key: &str) -> Option<Option<Principal>> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(key)
            .filter(|(_, at)| at.elapsed() < TRUSTED_FOR)
            .map(|(p, _)| p.clone())
    }
}

/// Asks the hub who a token belongs to; `None` for a token it refuses.
pub(crate) async fn ask_hub(hub: &HubAuth, token: &str) -> Result<Option<HubUser>, ApiError> {
    let url = hub
        .api_url
        .join("user")
        .map_err(|e| ApiError::Internal(format!("the hub API URL: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::Internal(format!("an HTTP client: {e}")))?;
    let response = client
        .get(url.clone())
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .map_err(|e| {
            ApiError::Upstream(format!(
                "the hub at {url} cannot be reached: {}",
                e.without_url()
            ))
        })?;
    match response.status().as_u16() {
        200 => response.json::<HubUser>().await.map(Some).map_err(|e| {
            ApiError::Upstream(format!(
                "the hub's answer about a token: {}",
                e.without_url()
            ))
        }),
        401 | 403 | 404 => Ok(None),
        other => Err(ApiError::Upstream(format!(
            "the hub answered {other} about a token"
        ))),
    }
}

/// The course rights of a hub user: teacher where a teacher group says so,
/// student (read only) where a student group does; a service reads nothing.
pub(crate) fn principal_of(hub: &HubAuth, user: &HubUser) -> Principal {
    let mut teaches = Vec::new();
    let mut attends = Vec::new();
    if user.kind.as_deref().is_none_or(|k| k == "user") {
        for group in &user.groups {
            if let Some(course) = group.strip_prefix(&hub.teacher_prefix) {
                teaches.push(course.to_string());
            } else if let Some(course) = group.strip_prefix(&hub.student_prefix) {
                attends.push(course.to_string());
            }
        }
    }
    Principal {
        hub_user: user.name.clone(),
        subject: user.name.clone(),
        token_id: None,
        ..principal_from(false, teaches, attends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn groups_give_course_rights() {
        let hub = HubAuth {
            api_url: Url::parse("http://hub:8081/hub/api/").unwrap(),
            student_prefix: "course:".into(),
            teacher_prefix: "teacher:".into(),
        };
        let user = |groups: &[&str], kind: Option<&str>| HubUser {
            name: Some("ada".into()),
            kind: kind.map(String::from),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let teacher = principal_of(
            &hub,
            &user(
                &["teacher:stats", "course:stats", "course:intro"],
                Some("user"),
            ),
        );
        assert_eq!(teacher.role, Role::Teacher);
        assert!(teacher.require_write("stats").is_ok() && teacher.require_write("intro").is_err());
        assert!(teacher.can_read("intro") && !teacher.can_read("other"));
        let student = principal_of(&hub, &user(&["course:intro", "staff"], None));
        assert_eq!(student.role, Role::Student);
        assert!(student.can_read("intro") && !student.can_read("stats"));
        assert!(student.require_write("intro").is_err());
        let service = principal_of(&hub, &user(&["course:intro"], Some("service")));
        assert!(!service.can_read("intro"));
    }
}
