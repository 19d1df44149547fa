//! The HTTP plumbing of the index client: the client, Unreachable errors
//! (credentials removed) and bodies read with a cap.

use std::time::Duration;

use url::Url;

use crate::pypi::{error::redact, PypiError};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may stall.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The user agent of every request.
const USER_AGENT: &str = concat!("trousse/", env!("CARGO_PKG_VERSION"));

/// An Unreachable error for `url`, credentials removed.
pub(super) fn unreachable_error(url: &Url, message: impl Into<String>) -> PypiError {
    PypiError::Unreachable {
        url: redact(url),
        message: message.into(),
    }
}

/// A reqwest error with its causes, without its URL.
pub(super) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The error of a response larger than `cap`.
pub(super) fn too_large(url: &Url, cap: u64) -> PypiError {
    unreachable_error(url, format!("the response is larger than {cap} bytes"))
}

/// A response's body, refused beyond `cap` bytes.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    url: &Url,
) -> Result<Vec<u8>, PypiError> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_large(url, cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unreachable_error(url, describe(e)))?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_large(url, cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Refuses an index or find-links URL trousse cannot read.
pub(super) fn check_scheme(url: &Url) -> Result<(), PypiError> {
    match url.scheme() {
        "http" | "https" | "file" => Ok(()),
        scheme => Err(PypiError::Unsupported {
            package: redact(url),
            message: format!("a {scheme}: index is not supported; use an http(s) or file URL"),
        }),
    }
}

/// The HTTP client of the indexes: redirects followed only to `allowed`
/// hosts when given (and never from https to http).
pub(super) fn http_client(allowed: Option<Vec<String>>) -> Result<reqwest::Client, reqwest::Error> {
    let redirects = match allowed {
        None => reqwest::redirect::Policy::limited(10),
        Some(allowed) => reqwest::redirect::Policy::custom(move |attempt| {
            let downgrade = attempt
                .previous()
                .last()
                .is_some_and(|p| p.scheme() == "https")
                && attempt.url().scheme() != "https";
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if downgrade || super::check_link(Some(&allowed), attempt.url()).is_err() {
                let target = redact(attempt.url());
                attempt.error(format!(
                    "a redirect to {target}, which is not an allowed index's host"
                ))
            } else {
                attempt.follow()
            }
        }),
    };
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(redirects)
        .build()
}
