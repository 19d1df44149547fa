//! xAPI 1.0.3 statements: an actor (the person, by their account at the
//! page, or trousse itself), a verb (ADL's where one fits, trousse's own
//! IRIs otherwise), the environment as the activity, its course as the parent.

use serde_json::{json, Value};

use crate::{auth::Principal, config::XapiConfig};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// A teacher submitted an environment.
    Created,
    /// Its build ended ready.
    Built,
    /// Its build failed.
    Failed,
    /// A teacher made it (or a version of it) current.
    MadeCurrent,
    /// A teacher archived it.
    Archived,
    /// An exam's window opened.
    ExamOpened,
    /// An exam's window closed.
    ExamClosed,
    /// A hub user launched a server from it.
    Launched,
}

/// trousse's own verbs, where ADL's vocabulary has none.
const OWN: &str = "https://w3id.org/xapi/trousse/verbs/";

impl Verb {
    /// Its name, in English.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verb::Created => "created",
            Verb::Built => "built",
            Verb::Failed => "failed",
            Verb::MadeCurrent => "made-current",
            Verb::Archived => "archived",
            Verb::ExamOpened => "opened",
            Verb::ExamClosed => "closed",
            Verb::Launched => "launched",
        }
    }

    /// Its IRI.
    fn iri(self) -> String {
        match self {
            Verb::Created => "http://activitystrea.ms/schema/1.0/create".into(),
            Verb::Failed => "http://adlnet.gov/expapi/verbs/failed".into(),
            Verb::Launched => "http://adlnet.gov/expapi/verbs/launched".into(),
            Verb::Archived => "http://activitystrea.ms/schema/1.0/archive".into(),
            Verb::ExamOpened => "http://activitystrea.ms/schema/1.0/open".into(),
            Verb::ExamClosed => "http://activitystrea.ms/schema/1.0/close".into(),
            other => format!("{OWN}{}", other.name()),
        }
    }
}

/// A new statement id (a random UUID).
fn statement_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The statement that `who` did `verb` to the environment `course/name` (`id`).
pub(crate) fn statement(
    xapi: &XapiConfig,
    who: Option<&Principal>,
    verb: Verb,
    course: &str,
    name: &str,
    id: &str,
) -> Value {
    let home = xapi.home_page.as_str().trim_end_matches('/');
    let account = who
        .and_then(|p| p.subject.clone().or_else(|| p.hub_user.clone()))
        .unwrap_or_else(|| format!("trousse:{}", who.map_or("service", |p| p.role.name())));
    json!({
        "id": statement_id(),
        "actor": {
            "objectType": "Agent",
            "account": { "homePage": home, "name": account },
        },
        "verb": { "id": verb.iri(), "display": { "en-US": verb.name() } },
        "object": {
            "objectType": "Activity",
            "id": format!("{home}/environments/{id}"),
            "definition": {
                "type": "https://w3id.org/xapi/trousse/activities/environment",
                "name": { "en-US": format!("{course}/{name}") },
            },
        },
        "context": {
            "platform": xapi.platform,
            "contextActivities": {
                "parent": [{
                    "objectType": "Activity",
                    "id": format!("{home}/courses/{course}"),
                    "definition": { "type": "http://adlnet.gov/expapi/activities/course" },
                }],
            },
        },
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_names_the_person_the_verb_and_the_course() {
        let xapi = XapiConfig {
            endpoint: "http://lrs/xAPI/".parse().unwrap(),
            auth: None,
            platform: "trousse".into(),
            home_page: "https://trousse.example.fr/".parse().unwrap(),
        };
        let mut alice = crate::auth::rules::principal_from(false, vec!["math1".into()], vec![]);
        alice.subject = Some("alice".into());
        let s = statement(&xapi, Some(&alice), Verb::Launched, "math1", "week1", "e1");
        assert_eq!(s["actor"]["account"]["name"], "alice");
        assert_eq!(s["verb"]["id"], "http://adlnet.gov/expapi/verbs/launched");
        assert_eq!(
            s["object"]["id"],
            "https://trousse.example.fr/environments/e1"
        );
        assert_eq!(
            s["context"]["contextActivities"]["parent"][0]["id"],
            "https://trousse.example.fr/courses/math1"
        );
        let other = statement(&xapi, None, Verb::Built, "math1", "week1", "e1");
        assert_ne!(s["id"], other["id"]);
        assert_eq!(other["actor"]["account"]["name"], "trousse:service");
    }
}
