//! Course rights from an identity's claims: each rule matches the values of
//! one claim (`groups`, `entitlements`, `eduPersonAffiliation`…) against a
//! regular expression, and gives `admin`, or `teacher` / `student` of the
//! course its `course` capture names (or of each value of another claim,
//! `courses_from`). The rules come from an operator's TOML file.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Principal, Role};

/// The most values of one claim that are looked at (a hostile provider's list is cut there).
const MAX_VALUES: usize = 1000;
/// The longest claim value looked at, in bytes.
const MAX_VALUE_BYTES: usize = 1024;

/// What a rule gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Gives {
    Admin,
    Teacher,
    Student,
}

/// One rule, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    claim: String,
    #[serde(rename = "match")]
    pattern: String,
    role: Gives,
    #[serde(default)]
    courses_from: Option<String>,
}

/// The file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleText>,
}

#[derive(Debug, Clone)]
struct Rule {
    claim: String,
    pattern: Regex,
    gives: Gives,
    courses_from: Option<String>,
}

/// The rules that turn an identity's claims into course rights.
#[derive(Debug, Clone, Default)]
pub struct RoleRules(Vec<Rule>);

impl RoleRules {
    /// Reads rules from TOML text; the error names the rule and what is wrong.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for (i, rule) in file.rule.into_iter().enumerate() {
            let number = i + 1;
            // the whole value must match: `teachers` does not match `not-teachers`
            let pattern = Regex::new(&format!("^(?:{})$", rule.pattern))
                .map_err(|e| format!("rule {number}: `match` is not a regular expression: {e}"))?;
            let names_course = pattern.capture_names().flatten().any(|n| n == "course")
                || rule.courses_from.is_some();
            if rule.role != Gives::Admin && !names_course {
                return Err(format!(
                    "rule {number}: a {} rule names its course: put a (?P<course>…) group in \
                     `match`, or give `courses_from = \"CLAIM\"`",
                    if rule.role == Gives::Teacher {
                        "teacher"
                    } else {
                        "student"
                    }
                ));
            }
            rules.push(Rule {
                claim: rule.claim,
                pattern,
                gives: rule.role,
                courses_from: rule.courses_from,
            });
        }
        Ok(Self(rules))
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rights these claims give: admin if an admin rule matches; else
    /// teacher of the courses teacher rules name (and student of the others).
    pub(crate) fn principal(&self, claims: &Map<String, Value>) -> Principal {
        let mut admin = false;
        let mut teaches = Vec::new();
        let mut attends = Vec::new();
        for rule in &self.0 {
            for value in values(claims, &rule.claim) {
                let Some(found) = rule.pattern.captures(&value) else {
                    continue;
                };
                let courses: Vec<String> = match (&rule.courses_from, found.name("course")) {
                    (Some(other), _) => values(claims, other),
                    (None, Some(course)) => vec![course.as_str().to_string()],
                    (None, None) => Vec::new(),
                };
                match rule.gives {
                    Gives::Admin => admin = true,
                    Gives::Teacher => teaches.extend(courses.into_iter().filter_map(course_name)),
                    Gives::Student => attends.extend(courses.into_iter().filter_map(course_name)),
                }
            }
        }
        principal_from(admin, teaches, attends)
    }
}

/// The rights of someone who teaches and attends these courses.
pub(crate) fn principal_from(
    admin: bool,
    mut teaches: Vec<String>,
    mut attends: Vec<String>,
) -> Principal {
    teaches.sort();
    teaches.dedup();
    attends.retain(|c| !teaches.contains(c));
    attends.sort();
    attends.dedup();
    let role = if admin {
        Role::Admin
    } else if teaches.is_empty() {
        Role::Student
    } else {
        Role::Teacher
    };
    Principal {
        role,
        courses: teaches,
        reads: attends,
        hub_user: None,
        subject: None,
        token_id: None,
    }
}

/// A course name from a claim, lowercased; `None` unless it is a valid name.
fn course_name(text: String) -> Option<String> {
    let name = text.to_ascii_lowercase();
    crate::names::is_name(&name).then_some(name)
}

/// The values of a claim (`a.b` reaches into objects) as text: a string, each
/// string of a list, a number or boolean written out; bounded in count and size.
fn values(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let mut parts = claim.split('.');
    let first = parts.next().unwrap_or_default();
    let mut value = claims.get(first);
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    let scalar = |v: &Value| match v {
        Value::String(s) if s.len() <= MAX_VALUE_BYTES => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Some(Value::Array(items)) => items.iter().take(MAX_VALUES).filter_map(scalar).collect(),
        Some(v) => scalar(v).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    const RULES: &str = r#"
[[rule]]
claim = "groups"
match = "(?P<course>[a-z0-9-]+)-teachers"
role = "teacher"

[[rule]]
claim = "groups"
match = "(?P<course>[a-z0-9-]+)-students"
role = "student"

[[rule]]
claim = "eduPersonAffiliation"
match = "faculty"
role = "teacher"
courses_from = "courses"

[[rule]]
claim = "entitlements"
match = "urn:mace:example.fr:trousse:admin"
role = "admin"
"#;

    #[test]
    fn one_person_teaches_one_course_and_takes_another() {
        let rules = RoleRules::from_toml(RULES).unwrap();
        let p = rules.principal(&claims(
            r#"{"groups": ["math1-teachers", "phys2-students", "math1-students", "x-teachers-y"]}"#,
        ));
        assert_eq!(p.role, Role::Teacher);
        assert_eq!(p.courses, ["math1"]);
        assert_eq!(p.reads, ["phys2"]);
        assert!(p.manages("math1") && !p.manages("phys2") && p.can_read("phys2"));
        assert!(!p.can_read("x"), "the whole value must match");
    }

    #[test]
    fn courses_can_come_from_another_claim_and_admins_from_entitlements() {
        let rules = RoleRules::from_toml(RULES).unwrap();
        let p = rules.principal(&claims(
            r#"{"eduPersonAffiliation": ["member", "faculty"], "courses": ["CHEM3", "bad name"]}"#,
        ));
        assert_eq!(
            (p.role, p.courses.as_slice()),
            (Role::Teacher, &["chem3".to_string()][..])
        );
        let admin = rules.principal(&claims(
            r#"{"entitlements": "urn:mace:example.fr:trousse:admin"}"#,
        ));
        assert_eq!(admin.role, Role::Admin);
        let nobody = rules.principal(&claims(r#"{"groups": "staff"}"#));
        assert_eq!(
            (nobody.role, nobody.courses.len(), nobody.reads.len()),
            (Role::Student, 0, 0)
        );
    }

    #[test]
    fn a_rule_that_names_no_course_is_refused_with_its_number() {
        let error = RoleRules::from_toml(
            "[[rule]]\nclaim = \"groups\"\nmatch = \"teachers\"\nrole = \"teacher\"\n",
        )
        .unwrap_err();
        assert!(
            error.contains("rule 1") && error.contains("(?P<course>"),
            "{error}"
        );
        let error =
            RoleRules::from_toml("[[rule]]\nclaim = \"g\"\nmatch = \"(\"\nrole = \"admin\"\n")
                .unwrap_err();
        assert!(
            error.contains("rule 1") && error.contains("regular expression"),
            "{error}"
        );
        let error =
            RoleRules::from_toml("[[rule]]\nclaim = \"g\"\nmatch = \"a\"\nrole = \"owner\"\n")
                .unwrap_err();
        assert!(error.contains("owner"), "{error}");
    }
}
