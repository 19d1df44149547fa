//! `trousse serve`'s flags for the teachers' page: its address, its sign-in
//! (an OpenID Connect provider, JupyterHub's OAuth), and the role rules.

use std::{path::PathBuf, time::Duration};

use trousse_api::config::{HubOAuthConfig, OidcConfig, PageConfig, RoleRules, Secret};
use trousse_builder::BuildError;

/// The page's flags.
#[derive(clap::Args, Debug, Default)]
pub struct PageArgs {
    /// Serve the teachers' page at this address, as browsers reach it (e.g.
    /// https://trousse.example.fr/ or https://hub.example.fr/services/trousse/).
    #[arg(long, value_name = "URL", env = "TROUSSE_PAGE_URL")]
    pub page_url: Option<url::Url>,
    /// The OpenID Connect provider people sign in with (its issuer URL).
    #[arg(long, value_name = "URL", env = "TROUSSE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// trousse's client id at the provider.
    #[arg(long, value_name = "ID", env = "TROUSSE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// trousse's client secret at the provider.
    #[arg(
        long,
        value_name = "SECRET",
        env = "TROUSSE_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oidc_client_secret: Option<String>,
    /// A scope asked besides `openid` (repeatable): those that bring the claims the rules read.
    #[arg(long = "oidc-scope", value_name = "SCOPE", default_values = ["profile", "email"])]
    pub oidc_scopes: Vec<String>,
    /// The provider's name on the sign-in button.
    #[arg(long, value_name = "NAME", default_value = "your institution")]
    pub oidc_name: String,
    /// The TOML file of rules that give course roles from an identity's claims (docs/page.md).
    #[arg(long, value_name = "FILE", env = "TROUSSE_ROLE_RULES")]
    pub role_rules: Option<PathBuf>,
    /// Sign hub users in with JupyterHub's OAuth (trousse runs as a hub service: it reads
    /// JUPYTERHUB_CLIENT_ID, JUPYTERHUB_API_TOKEN, JUPYTERHUB_OAUTH_CALLBACK_URL, JUPYTERHUB_BASE_URL).
    #[arg(long)]
    pub hub_oauth: bool,
    /// How long a page session lasts, in hours.
    #[arg(long, value_name = "HOURS", default_value_t = 8)]
    pub session_hours: u64,
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    BuildError::Usage(message.into()).into()
}

impl PageArgs {
    /// The page's settings, if it is served; `hub_api_url` is the hub's API (for its OAuth).
    pub fn config(
        self,
        hub_api_url: Option<&url::Url>,
        hub_url: Option<url::Url>,
    ) -> anyhow::Result<Option<PageConfig>> {
        let Some(page_url) = self.page_url.clone() else {
            if self.oidc_issuer.is_some() || self.hub_oauth {
                return Err(usage(
                    "a sign-in is for the page: give --page-url, the page's address as browsers reach it",
                ));
            }
            return Ok(None);
        };
        let public_url = super::serve::with_slash(page_url);
        let rules = match &self.role_rules {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    usage(format!("cannot read --role-rules {}: {e}", path.display()))
                })?;
                RoleRules::from_toml(&text)
                    .map_err(|e| usage(format!("--role-rules {}: {e}", path.display())))?
            }
            None => RoleRules::default(),
        };
        let hub_oauth = self.hub_oauth(&public_url, hub_api_url)?;
        Ok(Some(PageConfig {
            oidc: self.oidc()?,
            hub_oauth,
            rules,
            session_lifetime: Duration::from_secs(self.session_hours.clamp(1, 24 * 30) * 3600),
            hub_url: hub_url.map(super::serve::with_slash),
            public_url,
        }))
    }

    /// The OpenID Connect provider: all three settings, or none.
    fn oidc(&self) -> anyhow::Result<Option<OidcConfig>> {
        match (
            &self.oidc_issuer,
            &self.oidc_client_id,
            &self.oidc_client_secret,
        ) {
            (None, None, None) => Ok(None),
            (Some(issuer), Some(client_id), Some(secret)) => Ok(Some(OidcConfig {
                issuer: checked_issuer(issuer)?,
                client_id: client_id.clone(),
                client_secret: Secret::new(secret.clone()),
                scopes: self.oidc_scopes.clone(),
                display_name: self.oidc_name.clone(),
            })),
            _ => Err(usage(
                "OpenID Connect sign-in needs --oidc-issuer, --oidc-client-id and \
                 --oidc-client-secret (or TROUSSE_OIDC_CLIENT_SECRET)",
            )),
        }
    }

    /// JupyterHub's OAuth, from the variables the hub gives its services.
    fn hub_oauth(
        &self,
        page_url: &url::Url,
        hub_api_url: Option<&url::Url>,
    ) -> anyhow::Result<Option<HubOAuthConfig>> {
        if !self.hub_oauth {
            return Ok(None);
        }
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    usage(format!(
                        "--hub-oauth needs {name}: run trousse as a hub service"
                    ))
                })
        };
        let api = hub_api_url.ok_or_else(|| usage("--hub-oauth needs --hub-api-url"))?;
        let callback = var("JUPYTERHUB_OAUTH_CALLBACK_URL")?;
        let expected = format!("{}oauth_callback", page_url.path());
        if !callback.ends_with(&expected) {
            return Err(usage(format!(
                "JUPYTERHUB_OAUTH_CALLBACK_URL is {callback}: trousse answers at {expected} \
                 (the hub's default for a service at --page-url {page_url})"
            )));
        }
        let base = std::env::var("JUPYTERHUB_BASE_URL").unwrap_or_else(|_| "/".into());
        let join = |base: &url::Url, path: &str| {
            base.join(path)
                .map_err(|e| usage(format!("--hub-oauth: the URL {path}: {e}")))
        };
        Ok(Some(HubOAuthConfig {
            client_id: var("JUPYTERHUB_CLIENT_ID")?,
            client_secret: Secret::new(var("JUPYTERHUB_API_TOKEN")?),
            authorize_url: join(
                page_url,
                &format!("{}/hub/api/oauth2/authorize", base.trim_end_matches('/')),
            )?,
            token_url: join(api, "oauth2/token")?,
            callback_url: callback,
        }))
    }
}

/// The issuer as given (the provider's `iss` is compared as text), if it is an http(s) URL.
fn checked_issuer(issuer: &str) -> anyhow::Result<String> {
    match url::Url::parse(issuer) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(issuer.to_string()),
        _ => Err(usage(format!(
            "--oidc-issuer '{issuer}' is not an http(s) URL: give the provider's issuer, e.g. \
             https://idp.example.fr/realms/univ"
        ))),
    }
}

/// The learning-analytics traces' flags.
#[derive(clap::Args, Debug, Default)]
pub struct TraceArgs {
    /// Send learning-analytics traces (xAPI statements) to this Learning Record Store
    /// endpoint, e.g. https://lrs.example.fr/xAPI/ [default: no traces].
    #[arg(long, value_name = "URL", env = "TROUSSE_XAPI_ENDPOINT")]
    pub xapi_endpoint: Option<url::Url>,
    /// USER:PASSWORD for the LRS (HTTP Basic), from the environment only.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "TROUSSE_XAPI_AUTH",
        hide_env_values = true
    )]
    pub xapi_auth: Option<String>,
    /// The statements' `context.platform`.
    #[arg(long, value_name = "NAME", default_value = "trousse")]
    pub xapi_platform: String,
}

impl TraceArgs {
    /// The traces' settings; IRIs are under `home_page` (the page's URL, else the service's).
    pub fn config(
        self,
        home_page: url::Url,
    ) -> anyhow::Result<Option<trousse_api::config::XapiConfig>> {
        let Some(endpoint) = self.xapi_endpoint else {
            return Ok(None);
        };
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(usage(format!(
                "--xapi-endpoint {endpoint} is not an http(s) URL"
            )));
        }
        Ok(Some(trousse_api::config::XapiConfig {
            endpoint: super::serve::with_slash(endpoint),
            auth: self.xapi_auth.map(Secret::new),
            platform: self.xapi_platform,
            home_page,
        }))
    }
}
