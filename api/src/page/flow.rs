//! What both sign-ins share: the HTTP client that talks to providers (no
//! redirects, bounded answers and time), the sign-in row and its browser
//! cookie, and the answers that end a sign-in.

use std::time::Duration;

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use trousse_builder::error::clip;

use super::{
    session::{cookie, same_secret, set_cookie, SIGN_IN_COOKIE},
    PageContext,
};
use crate::{error::ApiError, store::SignInRow, AppState};

/// The largest answer read from a provider.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long a sign-in may take, from the button to the callback.
const SIGN_IN_SECONDS: u64 = 600;

/// Why talking to a provider failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderHttpError {
    /// The request did not get an answer.
    #[error("{0}")]
    Request(String),
    /// The answer was larger than allowed.
    #[error("the provider's answer is over {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

/// The client providers are reached with: no redirects followed, 10 s per
/// request, answers bounded; the OAuth and OpenID Connect crates send with it.
pub(crate) struct ProviderHttp(pub(crate) reqwest::Client);

/// The client providers are reached with.
pub(crate) fn http_client() -> Result<ProviderHttp, ApiError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map(ProviderHttp)
        .map_err(|e| ApiError::Internal(format!("an HTTP client: {e}")))
}

impl<'c> oauth2::AsyncHttpClient<'c> for ProviderHttp {
    type Error = ProviderHttpError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, ProviderHttpError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// One request of the OAuth and OpenID Connect crates, sent with `client`.
async fn send(
    client: &reqwest::Client,
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, ProviderHttpError> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| ProviderHttpError::Request(e.without_url().to_string()))?;
    let mut answer = http::Response::builder().status(response.status());
    if let Some(headers) = answer.headers_mut() {
        *headers = response.headers().clone();
    }
    let body = bounded_body(response).await?;
    answer
        .body(body)
        .map_err(|e| ProviderHttpError::Request(e.to_string()))
}

/// An answer's body, refused beyond the bound.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderHttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderHttpError::Request(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ProviderHttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, on one line, clipped.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    clip(&trousse_builder::error::error_chain(error), 400).into_owned()
}

/// Records a sign-in under `state` and sends the browser to `url`, with the
/// cookie that ties the callback to this browser.
pub(crate) async fn begin(
    state: &AppState,
    ctx: &PageContext,
    sign_in_state: &str,
    row: &SignInRow,
    url: &str,
) -> Result<Response, ApiError> {
    let expires = crate::store::now() + SIGN_IN_SECONDS as i64;
    state.store.add_sign_in(sign_in_state, row, expires).await?;
    let location = HeaderValue::from_str(url)
        .map_err(|_| ApiError::Internal("the provider's address is not a header".into()))?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, sign_in_state, &ctx.prefix, SIGN_IN_SECONDS),
    );
    Ok(response)
}

/// The sign-in a callback ends: its `state` must be the one this browser's
/// cookie holds, known, unexpired, unused, and of this provider.
async fn take(
    state: &AppState,
    headers: &HeaderMap,
    answered: Option<&str>,
    provider: &str,
) -> Result<SignInRow, ApiError> {
    let refused = || ApiError::BadRequest {
        code: "invalid_sign_in",
        message: "this sign-in's state is not the one this browser started (or it expired): \
                      sign in again from the page"
            .into(),
    };
    let answered = answered.ok_or_else(refused)?;
    let started = cookie(headers, SIGN_IN_COOKIE).ok_or_else(refused)?;
    if !same_secret(&started, answered) {
        return Err(refused());
    }
    let row = state
        .store
        .take_sign_in(answered)
        .await?
        .ok_or_else(refused)?;
    if row.provider != provider {
        return Err(refused());
    }
    Ok(row)
}

/// A provider's answer at the callback, checked: the sign-in it ends (see
/// [`take`]) and the code to exchange; the provider's own refusal as an error.
pub(crate) async fn answered(
    state: &AppState,
    headers: &HeaderMap,
    answer: &super::oidc::Callback,
    provider: &str,
) -> Result<(SignInRow, String), ApiError> {
    if let Some(error) = &answer.error {
        return Err(refused_by_provider(
            error,
            answer.error_description.as_deref(),
        ));
    }
    let row = take(state, headers, answer.state.as_deref(), provider).await?;
    let code = answer
        .code
        .clone()
        .ok_or_else(|| ApiError::Unauthorized("the provider sent no code back".into()))?;
    Ok((row, code))
}

/// The provider said no (the person refused, or the client is not allowed).
fn refused_by_provider(error: &str, description: Option<&str>) -> ApiError {
    ApiError::Unauthorized(format!(
        "the sign-in provider refused: {}{}",
        clip(error, 100),
        description
            .map(|d| format!(" ({})", clip(d, 200)))
            .unwrap_or_default()
    ))
}

/// What a sign-in's start may ask: the course to show once signed in (where
/// an LMS launch sends a teacher: `sign-in/hub?course=intro`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Start {
    /// The course's name.
    course: Option<String>,
}

/// Where a sign-in returns: the course asked for, when it is a name trousse
/// accepts (no other path: nothing to redirect elsewhere), else the home page.
pub(crate) fn return_to(prefix: &str, start: &Start) -> String {
    match start.course.as_deref() {
        Some(course) if crate::names::is_name(course) => format!("{prefix}courses/{course}"),
        _ => prefix.to_string(),
    }
}

/// Signed in: to the page asked for, with the session cookie, the sign-in's removed.
pub(crate) fn signed_in(ctx: &PageContext, session: HeaderValue, return_to: &str) -> Response {
    let target = if return_to.starts_with(&ctx.prefix) {
        return_to
    } else {
        &ctx.prefix
    };
    let mut response = super::see_other(target);
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session);
    headers.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", &ctx.prefix, 0),
    );
    response
}

/// The claims of a JWT whose signature was checked already.
pub(crate) fn jwt_payload(jwt: &str) -> Result<Map<String, Value>, ApiError> {
    use base64::Engine;
    let refused = || ApiError::Unauthorized("the ID token's claims cannot be read".into());
    let payload = jwt.split('.').nth(1).ok_or_else(refused)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| refused())?;
    serde_json::from_slice(&bytes).map_err(|_| refused())
}

/// The provider's user info for an access token (its claims), if it answers.
pub(crate) async fn user_info(
    client: &ProviderHttp,
    url: url::Url,
    access_token: &str,
) -> Result<Map<String, Value>, ApiError> {
    let response = client
        .0
        .get(url)
        .bearer_auth(access_token)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            ApiError::Upstream(format!("the provider's user info: {}", e.without_url()))
        })?;
    if !response.status().is_success() {
        return Ok(Map::new());
    }
    let body = bounded_body(response)
        .await
        .map_err(|e| ApiError::Upstream(format!("the provider's user info: {e}")))?;
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::{return_to, Start};

    #[test]
    fn a_sign_in_returns_to_the_course_asked_for_and_nowhere_else() {
        let at = |course: Option<&str>| {
            let start = Start {
                course: course.map(String::from),
            };
            return_to("/page/", &start)
        };
        assert_eq!(at(Some("intro")), "/page/courses/intro");
        assert_eq!(at(None), "/page/");
        for hostile in ["../admin", "//evil.example", "Intro", "a/b", "", "x?y=1"] {
            assert_eq!(at(Some(hostile)), "/page/", "{hostile}");
        }
    }
}
