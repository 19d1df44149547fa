//! URLs of PyPI indexes as they may be requested, shown or locked: without credentials.

/// A URL without user name or password: what may be requested, shown or locked.
pub fn without_credentials(url: &url::Url) -> url::Url {
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare
}

/// A URL as it may be shown: without user name or password.
pub fn redact(url: &url::Url) -> String {
    without_credentials(url).to_string()
}
