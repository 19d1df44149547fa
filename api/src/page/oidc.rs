//! Sign-in with an OpenID Connect provider: authorization code with PKCE,
//! discovery, and the ID token checked by `openidconnect` (signature against
//! the provider's JWKS, issuer, audience, expiry, `nonce`). The `state`,
//! `nonce` and PKCE verifier wait in the store, so any replica can end a
//! sign-in; a cookie ties the callback to the browser that started it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Map, Value};

use super::{flow, PageContext};
use crate::{config::OidcConfig, error::ApiError, store::SignInRow, AppState};

/// How long the provider's discovery document and keys are kept.
const DISCOVERY_KEPT: Duration = Duration::from_secs(600);

/// The provider's metadata (with its keys), discovered at most every ten minutes.
#[derive(Debug, Default)]
pub(crate) struct Discovered(tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>);

impl Discovered {
    async fn metadata(&self, oidc: &OidcConfig) -> Result<CoreProviderMetadata, ApiError> {
        let mut kept = self.0.lock().await;
        if let Some((metadata, at)) = kept.as_ref() {
            if at.elapsed() < DISCOVERY_KEPT {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(oidc.issuer.clone())
            .map_err(|e| ApiError::Internal(format!("the issuer URL: {e}")))?;
        let client = flow::http_client()?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &client)
            .await
            .map_err(|e| {
                ApiError::Upstream(format!(
                    "the sign-in provider {} cannot be discovered: {}",
                    oidc.issuer,
                    flow::error_chain(&e)
                ))
            })?;
        *kept = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }
}

/// Where the provider sends browsers back.
fn callback(ctx: &PageContext) -> Result<RedirectUrl, ApiError> {
    let url = ctx
        .page
        .public_url
        .join("sign-in/oidc/callback")
        .map_err(|e| ApiError::Internal(format!("the page's callback URL: {e}")))?;
    Ok(RedirectUrl::from_url(url))
}

/// The OpenID Connect settings, or a 404 when the service has none.
fn settings(ctx: &PageContext) -> Result<&OidcConfig, ApiError> {
    ctx.page
        .oidc
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this service has no OpenID Connect sign-in".into()))
}

/// Starts a sign-in: to the provider, with `state`, `nonce` and a PKCE challenge.
pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Query(asked): Query<flow::Start>,
) -> Response {
    let begun = async {
        let oidc = settings(&ctx)?;
        let metadata = state.page.oidc.metadata(oidc).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(oidc.client_id.clone()),
            Some(ClientSecret::new(oidc.client_secret.expose().to_string())),
        )
        .set_redirect_uri(callback(&ctx)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &oidc.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
        let row = SignInRow {
            provider: "oidc".into(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            return_to: flow::return_to(&ctx.prefix, &asked),
        };
        flow::begin(&state, &ctx, csrf.secret(), &row, url.as_str()).await
    };
    begun.await.unwrap_or_else(|e| ctx.error(e))
}

/// What the provider sends back.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Callback {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
}

/// Ends a sign-in: checks `state`, exchanges the code with the PKCE verifier,
/// checks the ID token, and starts a session with the rights the rules give.
pub(crate) async fn finish(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let ended = async {
        let (row, code) = flow::answered(&state, &headers, &answer, "oidc").await?;
        let (subject, name, claims) = identity(&state, &ctx, code, row.verifier, row.nonce).await?;
        let principal = ctx.page.rules.principal(&claims);
        tracing::info!(subject, role = principal.role.name(), "signed in");
        let session = state.start_session(subject, name, principal).await?;
        Ok(flow::signed_in(&ctx, session, &row.return_to))
    };
    ended.await.unwrap_or_else(|e| ctx.error(e))
}

/// The code exchanged and the ID token checked: the subject, the name shown,
/// and all claims (the ID token's, then the user info's for those it lacks).
async fn identity(
    state: &AppState,
    ctx: &PageContext,
    code: String,
    verifier: String,
    nonce: String,
) -> Result<(String, String, Map<String, Value>), ApiError> {
    let oidc = settings(ctx)?;
    let metadata = state.page.oidc.metadata(oidc).await?;
    let userinfo = metadata.userinfo_endpoint().map(|u| u.url().clone());
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(oidc.client_id.clone()),
        Some(ClientSecret::new(oidc.client_secret.expose().to_string())),
    )
    .set_redirect_uri(callback(ctx)?);
    let http = flow::http_client()?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| ApiError::Upstream(format!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await
        .map_err(|e| {
            ApiError::Unauthorized(format!(
                "the provider did not exchange the sign-in's code: {}",
                flow::error_chain(&e)
            ))
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| ApiError::Unauthorized("the provider sent no ID token".into()))?;
    let checked = id_token
        .claims(&client.id_token_verifier(), &Nonce::new(nonce))
        .map_err(|e| ApiError::Unauthorized(format!("the provider's ID token is refused: {e}")))?;
    let subject = checked.subject().to_string();
    // the payload of the token whose signature was just checked: every claim, not only the standard ones
    let mut claims = flow::jwt_payload(&id_token.to_string())?;
    if let Some(url) = userinfo {
        let info = flow::user_info(&http, url, tokens.access_token().secret()).await?;
        if info.get("sub").and_then(Value::as_str) == Some(subject.as_str()) {
            for (key, value) in info {
                claims.entry(key).or_insert(value);
            }
        }
    }
    let name = ["name", "preferred_username", "email"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .unwrap_or(&subject)
        .to_string();
    Ok((
        subject,
        trousse_builder::error::clip(&name, 100).into_owned(),
        claims,
    ))
}
