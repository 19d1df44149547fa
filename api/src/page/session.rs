//! Page sessions: a random cookie (`Secure`, `HttpOnly`, `SameSite=Lax`,
//! scoped to the page's path) whose hash finds the session in the store; its
//! CSRF token, which every form and every cookie-authenticated API call that
//! changes something must carry.

use axum::http::{header, HeaderMap, HeaderValue, Method};

use crate::{
    auth::{random_hex, token_hash, Principal},
    error::ApiError,
    store::SessionRow,
    AppState,
};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "trousse-session";
/// The cookie that ties a sign-in's callback to the browser that started it.
pub(crate) const SIGN_IN_COOKIE: &str = "trousse-sign-in";
/// The header a script's API call carries the CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Someone signed in to the page.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    /// The stored session.
    pub(crate) row: SessionRow,
    /// The hash of its cookie (to end it).
    pub(crate) hash: String,
}

/// The value of one cookie a request carries.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// A `Set-Cookie` value: `Secure; HttpOnly; SameSite=Lax`, on the page's path,
/// kept `max_age` seconds (0 removes it).
pub(crate) fn set_cookie(name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let text =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// Compares two secrets in constant time.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a form or call whose CSRF token is not the session's.
pub(crate) fn check_csrf(session: &SessionRow, presented: Option<&str>) -> Result<(), ApiError> {
    match presented {
        Some(token) if same_secret(&session.csrf, token) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "this form has no valid CSRF token: reload the page and try again".into(),
        )),
    }
}

impl AppState {
    /// The session the request's cookie names, if it is signed in.
    pub(crate) async fn signed_in(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<SignedIn>, ApiError> {
        if self.config.page.is_none() {
            return Ok(None);
        }
        let Some(value) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let hash = token_hash(&value);
        Ok(self
            .store
            .session(&hash)
            .await?
            .map(|row| SignedIn { row, hash }))
    }

    /// The rights of a request that carries a page session instead of a token:
    /// reads need the session; changes also need its CSRF token in a header.
    pub(crate) async fn session_principal(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(session) = self.signed_in(headers).await? else {
            return Ok(None);
        };
        if !matches!(*method, Method::GET | Method::HEAD) {
            let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            check_csrf(&session.row, presented)?;
        }
        Ok(Some(session.row.principal))
    }

    /// Starts a session for someone just signed in; the cookie that carries it.
    pub(crate) async fn start_session(
        &self,
        subject: String,
        name: String,
        principal: Principal,
    ) -> Result<HeaderValue, ApiError> {
        let page = self.page_config()?;
        let value = random_hex("a session")?;
        let principal = Principal {
            subject: Some(subject.clone()),
            token_id: None,
            ..principal
        };
        let row = SessionRow {
            csrf: random_hex("a CSRF token")?,
            subject,
            name,
            principal,
        };
        let lifetime = page.session_lifetime.as_secs();
        let expires = crate::store::now().saturating_add(lifetime as i64);
        self.store
            .add_session(&token_hash(&value), &row, expires)
            .await?;
        Ok(set_cookie(
            SESSION_COOKIE,
            &value,
            page.public_url.path(),
            lifetime,
        ))
    }

    /// The page's settings: a 404 when the service has no page.
    pub(crate) fn page_config(&self) -> Result<&crate::config::PageConfig, ApiError> {
        self.config
            .page
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("this service has no page".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_set_with_their_attributes() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; trousse-session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "v", "/services/trousse/", 60);
        let set = set.to_str().unwrap();
        for attribute in [
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/services/trousse/",
            "Max-Age=60",
        ] {
            assert!(set.contains(attribute), "{set}");
        }
    }

    #[test]
    fn secrets_are_compared_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
