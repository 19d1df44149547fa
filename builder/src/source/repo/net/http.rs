//! Git's smart HTTP protocol (stateless RPC): `GET info/refs`, then `POST
//! git-upload-pack` for each round of negotiation, over reqwest with no
//! redirects, credentials after a 401 from the repository's own host only.

use std::{
    io::{self, Read, Write},
    sync::{Arc, Mutex},
};

use reqwest::{
    blocking::{Client, Response},
    header, redirect, StatusCode,
};
use url::Url;

use super::{Metered, Session};

/// The largest negotiation request libgit2 may write (they are a few KiB).
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// One request and its response, as libgit2 writes and reads them.
pub(super) struct Exchange {
    session: Arc<Session>,
    url: Url,
    ls: bool,
    base: Arc<Mutex<Option<String>>>,
    request: Vec<u8>,
    response: Option<Metered<Response>>,
}

impl Exchange {
    /// An exchange with the repository at `url`: the refs (`ls`), or a round of upload-pack.
    pub(super) fn new(
        session: Arc<Session>,
        url: Url,
        ls: bool,
        base: Arc<Mutex<Option<String>>>,
    ) -> Self {
        Self {
            session,
            url,
            ls,
            base,
            request: Vec::new(),
            response: None,
        }
    }

    /// The URL of this exchange's request, under the (possibly redirected) base.
    fn endpoint(&self) -> io::Result<Url> {
        let base = self
            .base
            .lock()
            .ok()
            .and_then(|b| b.clone())
            .unwrap_or_else(|| self.url.as_str().trim_end_matches('/').to_string());
        let path = if self.ls {
            "/info/refs?service=git-upload-pack"
        } else {
            "/git-upload-pack"
        };
        Url::parse(&format!("{base}{path}")).map_err(io::Error::other)
    }

    fn client(&self) -> io::Result<Client> {
        let spending = &self.session.spending;
        let wait = spending.wait()?;
        // the command line follows the first request's redirects, as git
        // does by default; a service follows none
        let policy = if self.ls && self.session.follow_first_redirect {
            redirect::Policy::limited(5)
        } else {
            redirect::Policy::none()
        };
        Client::builder()
            .redirect(policy)
            .connect_timeout(wait)
            .timeout(wait)
            .user_agent(concat!("git/2.0 (trousse ", env!("CARGO_PKG_VERSION"), ")"))
            .build()
            .map_err(io::Error::other)
    }

    /// Sends the request, again with credentials after a 401.
    fn send(&mut self) -> io::Result<()> {
        let endpoint = self.endpoint()?;
        let client = self.client()?;
        let mut response = self.attempt(&client, &endpoint, None)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(credentials) = self.session.credentials(response.url()) {
                response = self.attempt(&client, &endpoint, Some(credentials))?;
            }
        }
        self.check(&response)?;
        if self.ls && response.url() != &endpoint {
            self.session.check(response.url())?;
            let base = response.url().as_str();
            let base = base.split("/info/refs").next().unwrap_or(base).to_string();
            if let Ok(mut slot) = self.base.lock() {
                *slot = Some(base);
            }
        }
        self.response = Some(Metered {
            inner: response,
            session: self.session.clone(),
        });
        Ok(())
    }

    fn attempt(
        &self,
        client: &Client,
        endpoint: &Url,
        credentials: Option<(String, String)>,
    ) -> io::Result<Response> {
        let mut request = if self.ls {
            client.get(endpoint.clone())
        } else {
            client
                .post(endpoint.clone())
                .header(
                    header::CONTENT_TYPE,
                    "application/x-git-upload-pack-request",
                )
                .header(header::ACCEPT, "application/x-git-upload-pack-result")
                .body(self.request.clone())
        };
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        request
            .send()
            .map_err(|e| super::silent(&self.session, io::Error::other(without_url(e))))
    }

    /// Refuses any answer but the protocol's: redirects, errors, a dumb server.
    fn check(&self, response: &Response) -> io::Result<()> {
        let status = response.status();
        if status.is_redirection() {
            return Err(self.session.spending.refuse(format!(
                "it answered with a redirect (HTTP {}); trousse does not follow redirects: \
                 give the repository's own URL",
                status.as_u16()
            )));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(io::Error::other(format!(
                "HTTP {}: authentication required or refused",
                status.as_u16()
            )));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(io::Error::other("HTTP 404: repository not found"));
        }
        if !status.is_success() {
            return Err(io::Error::other(format!(
                "the server answered HTTP {}",
                status.as_u16()
            )));
        }
        let expected = if self.ls {
            "application/x-git-upload-pack-advertisement"
        } else {
            "application/x-git-upload-pack-result"
        };
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with(expected) {
            return Err(io::Error::other(format!(
                "not a git smart HTTP server (content type '{}' where {expected} was expected)",
                crate::error::clip(content_type, 60)
            )));
        }
        Ok(())
    }
}

/// reqwest's error without the URL it names (its message is enough).
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

impl Read for Exchange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.send()?;
        }
        match &mut self.response {
            Some(response) => response.read(buf),
            None => Ok(0),
        }
    }
}

impl Write for Exchange {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.response.is_some() || self.request.len() + data.len() > MAX_REQUEST_BYTES {
            return Err(io::Error::other("git wrote an unexpected request"));
        }
        self.request.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
