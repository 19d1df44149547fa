//! Sign-in with JupyterHub's OAuth, when trousse runs as a hub service: a
//! hub user is signed in without a second sign-in, with the course rights of
//! their hub groups (the same prefixes as hub tokens).

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use oauth2::{
    basic::BasicClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    PkceCodeChallenge, PkceCodeVerifier, TokenResponse, TokenUrl,
};

use super::{flow, oidc::Callback, PageContext};
use crate::{
    config::HubOAuthConfig,
    error::ApiError,
    hub::tokens::{ask_hub, principal_of},
    store::SignInRow,
    AppState,
};

/// The hub's OAuth settings, or a 404 when the service has none.
fn settings(ctx: &PageContext) -> Result<&HubOAuthConfig, ApiError> {
    ctx.page
        .hub_oauth
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this service has no JupyterHub sign-in".into()))
}

/// Starts a sign-in at the hub.
pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Query(asked): Query<flow::Start>,
) -> Response {
    let begun = async {
        let hub = settings(&ctx)?;
        // the hub compares `redirect_uri` with what it registered, as text (often a
        // path, which the crate's absolute `RedirectUrl` cannot hold): sent as it is
        let client = BasicClient::new(ClientId::new(hub.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(hub.authorize_url.clone()));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf) = client
            .authorize_url(CsrfToken::new_random)
            .add_extra_param("redirect_uri", hub.callback_url.clone())
            .set_pkce_challenge(challenge)
            .url();
        let row = SignInRow {
            provider: "hub".into(),
            nonce: String::new(),
            verifier: verifier.secret().clone(),
            return_to: flow::return_to(&ctx.prefix, &asked),
        };
        flow::begin(&state, &ctx, csrf.secret(), &row, url.as_str()).await
    };
    begun.await.unwrap_or_else(|e| ctx.error(e))
}

/// Ends a sign-in at the hub: the code exchanged for a token, the token's
/// user and groups asked of the hub.
pub(crate) async fn finish(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let ended = async {
        let (row, code) = flow::answered(&state, &headers, &answer, "hub").await?;
        let token = exchange(settings(&ctx)?, code, row.verifier.clone()).await?;
        let hub =
            state.config.hub.as_ref().ok_or_else(|| {
                ApiError::Internal("JupyterHub sign-in needs --hub-api-url".into())
            })?;
        let user = ask_hub(hub, &token)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the hub does not know its own token".into()))?;
        let principal = principal_of(hub, &user);
        let name = principal.hub_user.clone().unwrap_or_default();
        tracing::info!(
            user = name,
            role = principal.role.name(),
            "signed in by the hub"
        );
        let session = state.start_session(name.clone(), name, principal).await?;
        Ok(flow::signed_in(&ctx, session, &row.return_to))
    };
    ended.await.unwrap_or_else(|e| ctx.error(e))
}

/// The hub's access token for a code.
async fn exchange(
    hub: &HubOAuthConfig,
    code: String,
    verifier: String,
) -> Result<String, ApiError> {
    let client = BasicClient::new(ClientId::new(hub.client_id.clone()))
        .set_client_secret(ClientSecret::new(hub.client_secret.expose().to_string()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::from_url(hub.token_url.clone()));
    let http = flow::http_client()?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .add_extra_param("redirect_uri", hub.callback_url.clone())
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await
        .map_err(|e| {
            ApiError::Unauthorized(format!(
                "the hub did not exchange the sign-in's code: {}",
                flow::error_chain(&e)
            ))
        })?;
    Ok(token.access_token().secret().clone())
}
