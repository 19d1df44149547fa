//! Bearer tokens with roles: who may call what.

use std::str::FromStr;

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use trousse_builder::error::clip;

use crate::error::ApiError;

pub(crate) mod registry;
pub(crate) mod rules;

/// What a token allows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Create and read environments of the courses it is granted.
    Teacher,
    /// Read everything, change nothing (the JupyterHub).
    Hub,
    /// Read the environments of the courses one attends (a hub user's token).
    Student,
}

impl Role {
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Teacher => "teacher",
            Role::Hub => "hub",
            Role::Student => "student",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "teacher" => Ok(Role::Teacher),
            "hub" => Ok(Role::Hub),
            other => Err(format!("unknown role '{other}': use admin, teacher or hub")),
        }
    }
}

/// The caller, as its token or its page session says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// The token's role.
    pub role: Role,
    /// The courses a teacher is granted.
    pub courses: Vec<String>,
    /// Courses it may only read (a hub user's, as a student).
    pub reads: Vec<String>,
    /// The JupyterHub user a hub token stands for.
    pub hub_user: Option<String>,
    /// Who it is, when known (a page session's subject, a hub user): named in traces.
    #[serde(default)]
    pub subject: Option<String>,
    /// The id of the trousse token it presented (what its rate limits count).
    #[serde(skip)]
    pub token_id: Option<String>,
}

impl Principal {
    /// Who the caller is for rate limits: a hub user, a signed-in person, a token.
    pub(crate) fn rate_key(&self) -> String {
        match (&self.hub_user, &self.subject, &self.token_id) {
            (Some(user), _, _) => format!("hub:{user}"),
            (_, Some(subject), _) => format!("person:{subject}"),
            (_, _, Some(token)) => format!("token:{token}"),
            _ => format!("role:{}", self.role.name()),
        }
    }

    /// Whether the caller may read environments of `course`.
    pub fn can_read(&self, course: &str) -> bool {
        match self.role {
            Role::Admin | Role::Hub => true,
            Role::Teacher | Role::Student => {
                self.courses.iter().chain(&self.reads).any(|c| c == course)
            }
        }
    }

    /// Whether the caller manages `course` (an admin, or one of its teachers).
    pub fn manages(&self, course: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Teacher => self.courses.iter().any(|c| c == course),
            Role::Hub | Role::Student => false,
        }
    }

    /// Whether the caller sees a course's exams outside their windows: its
    /// teachers, admins, and hubs (whose nodes pre-pull exam images).
    pub fn sees_closed_exams(&self, course: &str) -> bool {
        self.role == Role::Hub || self.manages(course)
    }

    /// Refuses unless the caller may create environments in `course`.
    pub fn require_write(&self, course: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Teacher if self.courses.iter().any(|c| c == course) => Ok(()),
            Role::Teacher => Err(ApiError::Forbidden(format!(
                "this teacher token is not granted course '{}'",
                clip(course, 80)
            ))),
            Role::Hub => Err(ApiError::Forbidden("a hub token can only read".to_string())),
            Role::Student => Err(ApiError::Forbidden(
                "a student reads the environments of their courses; a teacher group grants more"
                    .to_string(),
            )),
        }
    }

    /// Refuses unless the caller may read environments of `course`.
    pub fn require_read(&self, course: &str) -> Result<(), ApiError> {
        if self.can_read(course) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token is not granted course '{}'",
                clip(course, 80)
            )))
        }
    }
}

/// 256 random bits as hex (tokens, page sessions, CSRF tokens); `what` names them in an error.
pub(crate) fn random_hex(what: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for {what}: {e}")))?;
    Ok(hex::encode(bytes))
}

/// A new random token (shown once) and the hash that is stored.
pub(crate) fn new_token() -> Result<(String, String), ApiError> {
    let token = format!("trs_{}", random_hex("a token")?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The stored form of a token.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token a request carries: `Authorization: Bearer TOKEN`, or Basic with
/// the token as password (what `docker login` sends).
pub(crate) fn presented_token(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::Unauthorized("malformed Basic credentials".into()))?;
        let password = decoded.split_once(':').map_or("", |(_, p)| p);
        return Ok(Some(password.to_string()));
    }
    Err(ApiError::Unauthorized(
        "the Authorization header must be 'Bearer TOKEN'".into(),
    ))
}

/// A secret: kept out of `Debug` output, so out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that checks it.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The value, for the one request that presents it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_basic_credentials() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_token(&headers).unwrap(), None);
        headers.insert(header::AUTHORIZATION, "Bearer trs_abc".parse().unwrap());
        assert_eq!(
            presented_token(&headers).unwrap().as_deref(),
            Some("trs_abc")
        );
        // "hub:trs_abc"
        headers.insert(
            header::AUTHORIZATION,
            "Basic aHViOnRyc19hYmM=".parse().unwrap(),
        );
        assert_eq!(
            presented_token(&headers).unwrap().as_deref(),
            Some("trs_abc")
        );
        headers.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
        assert!(presented_token(&headers).is_err());
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, hash_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), hash_a);
        assert!(!hash_a.contains(&a[4..]));
    }
}
