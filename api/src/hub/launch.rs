//! Starting a user's server through JupyterHub's REST API, as BinderHub's
//! launcher does: `POST users/{name}/server` with the image, the hub's
//! progress events followed until the server is ready, then a token that
//! opens that server only.

use std::time::Duration;

use futures::TryStreamExt;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use url::Url;

use crate::auth::Secret;

/// How long a server may take to start.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the token handed out with a launched server lasts.
const SERVER_TOKEN_SECONDS: u64 = 6 * 3600;

/// What launching needs: the hub's API, trousse's own token there, the hub's public URL.
#[derive(Debug, Clone)]
pub struct HubLauncher {
    /// The hub's API, e.g. `http://hub:8081/hub/api/`.
    pub api_url: Url,
    /// Where users reach the hub, e.g. `https://hub.example.org/`.
    pub public_url: Url,
    /// trousse's service token at the hub (scopes: servers, tokens, read:users).
    pub token: Secret,
}

/// Why a launch did not end with a running server.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The user already runs their server.
    #[error(
        "{user} already has a running server: stop it from the hub's home page, then launch again"
    )]
    AlreadyRunning {
        /// The hub user.
        user: String,
    },
    /// The hub refused a call or could not be reached.
    #[error("the hub {0}")]
    Hub(String),
    /// The spawn failed; the hub's message says why.
    #[error("the server failed to start: {0}")]
    Failed(String),
}

/// A launched server: its URL and a token that opens it.
#[derive(Debug)]
pub struct Launched {
    /// The server's URL under the hub's public URL.
    pub url: String,
    /// A hub token of the user, for that server only.
    pub token: String,
}

/// One event of the hub's progress stream (the fields read).
#[derive(Debug, Deserialize)]
struct Progress {
    #[serde(default)]
    message: String,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    failed: bool,
}

impl HubLauncher {
    /// Starts `user`'s server with `options` (the spawner's user options),
    /// calling `progress` with each of the hub's messages until it is ready.
    pub async fn launch(
        &self,
        user: &str,
        options: Value,
        mut progress: impl FnMut(String),
    ) -> Result<Launched, LaunchError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LaunchError::Hub(format!("client: {e}")))?;
        let name = utf8_percent_encode(user, NON_ALPHANUMERIC).to_string();
        let status: Value = self
            .call(&client, Method::GET, &format!("users/{name}"), None)
            .await?;
        if status["servers"].get("").is_some() {
            return Err(LaunchError::AlreadyRunning { user: user.into() });
        }
        self.call(
            &client,
            Method::POST,
            &format!("users/{name}/server"),
            Some(options),
        )
        .await?;
        self.follow(
            &client,
            &format!("users/{name}/server/progress"),
            &mut progress,
        )
        .await?;
        let scopes = [format!("access:servers!server={user}/")];
        let body = json!({
            "note": "trousse: a BinderHub launch",
            "expires_in": SERVER_TOKEN_SECONDS,
            "scopes": scopes,
        });
        let token: Value = self
            .call(
                &client,
                Method::POST,
                &format!("users/{name}/tokens"),
                Some(body),
            )
            .await?;
        let token = token["token"]
            .as_str()
            .ok_or_else(|| LaunchError::Hub("answered a token request without a token".into()))?;
        Ok(Launched {
            url: format!("{}user/{name}/", self.public_url),
            token: token.to_string(),
        })
    }

    /// One call of the hub's API; its JSON answer (`null` when empty).
    async fn call(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, LaunchError> {
        let url = self.url(path)?;
        let mut request = client
            .request(method.clone(), url.clone())
            .timeout(Duration::from_secs(30))
            .header("Authorization", format!("token {}", self.token.expose()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            LaunchError::Hub(format!("at {url} cannot be reached: {}", e.without_url()))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_default();
            return Err(LaunchError::Hub(format!(
                "answered {status} to {method} {}: {message}",
                url.path()
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Follows the hub's progress events of a spawn until it is ready or failed.
    async fn follow(
        &self,
        client: &reqwest::Client,
        path: &str,
        progress: &mut impl FnMut(String),
    ) -> Result<(), LaunchError> {
        let url = self.url(path)?;
        let response = client
            .get(url.clone())
            .timeout(LAUNCH_TIMEOUT)
            .header("Authorization", format!("token {}", self.token.expose()))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                LaunchError::Hub(format!("progress at {}: {}", url.path(), e.without_url()))
            })?;
        let body = response.bytes_stream().map_err(std::io::Error::other);
        let mut lines = tokio_util::io::StreamReader::new(body).lines();
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| LaunchError::Hub(format!("progress stream: {e}")))?
        {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Progress>(data.trim()) else {
                continue;
            };
            if event.failed {
                return Err(LaunchError::Failed(event.message));
            }
            if !event.message.is_empty() {
                progress(event.message);
            }
            if event.ready {
                return Ok(());
            }
        }
        Err(LaunchError::Failed(
            "the hub's progress stream ended before the server was ready".into(),
        ))
    }

    fn url(&self, path: &str) -> Result<Url, LaunchError> {
        self.api_url
            .join(path)
            .map_err(|e| LaunchError::Hub(format!("API URL: {e}")))
    }
}
