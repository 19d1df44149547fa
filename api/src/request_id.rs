//! Each request's id: the client's `X-Request-Id` when it is a short token,
//! else one the service makes. It is in every log line of the request (a
//! span), in the answer's `X-Request-Id`, and stored with a build the request
//! queued, so that the build's log lines carry it wherever it runs.

use axum::http::{HeaderName, HeaderValue};

/// The header, both ways.
pub(crate) static HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being answered, if any.
pub(crate) fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The client's id when acceptable (1 to 64 of `A-Za-z0-9._-`), else a new one.
fn choose(given: Option<&HeaderValue>) -> String {
    given
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            crate::auth::random_hex("a request id").map_or_else(|_| "-".into(), |h| h[..16].into())
        })
}

/// Runs a request under its id: a span on its logs, the task-local, the answer's header.
pub(crate) async fn with_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = choose(request.headers().get(&HEADER));
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = CURRENT
        .scope(id.clone(), next.run(request))
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_when_it_is_a_short_token() {
        let given = HeaderValue::from_static("lb-42.a_b");
        assert_eq!(choose(Some(&given)), "lb-42.a_b");
        let hostile = HeaderValue::from_static("a b\"c");
        let made = choose(Some(&hostile));
        assert_eq!(made.len(), 16);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(choose(None), choose(None));
    }
}
