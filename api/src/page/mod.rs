//! The teachers' page: server-rendered HTML under the page's public URL
//! (`/` or a hub service's `/services/NAME/`), signed in with OpenID Connect
//! or JupyterHub's OAuth. A session's rights are a [`Principal`], checked by
//! the same code as a token's on every page and API call.
//!
//! [`Principal`]: crate::auth::Principal

mod authoring;
mod flow;
mod hub_oauth;
mod oidc;
mod render;
pub(crate) mod session;
mod views;

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use minijinja::context;

use crate::{auth::Principal, config::PageConfig, error::ApiError, AppState};
use session::SignedIn;

/// What the page keeps while the service runs.
#[derive(Debug, Default)]
pub(crate) struct PageState {
    /// The OpenID Connect provider's metadata and keys.
    oidc: oidc::Discovered,
}

/// The page's routes, under its public URL's path.
pub(crate) fn router(page: &PageConfig) -> Router<Arc<AppState>> {
    let prefix = page.public_url.path().to_string();
    let at = |path: &str| format!("{prefix}{path}");
    Router::new()
        .route(&prefix, get(views::home))
        .route(&at("courses/{course}"), get(views::course))
        .route(
            &at("courses/{course}/new"),
            get(authoring::new).post(authoring::new),
        )
        .route(&at("courses/{course}/preview"), post(authoring::preview))
        .route(&at("courses/{course}/build"), post(authoring::build))
        .route(&at("environments/{id}"), get(authoring::environment))
        .route(&at("environments/{id}/exam"), post(authoring::exam))
        .route(
            &at("environments/{id}/current"),
            post(authoring::make_current),
        )
        .route(&at("environments/{id}/archive"), post(authoring::archive))
        .route(&at("sign-in/oidc"), get(oidc::start))
        .route(&at("sign-in/oidc/callback"), get(oidc::finish))
        .route(&at("sign-in/hub"), get(hub_oauth::start))
        // the callback JupyterHub registers for a service: `{prefix}oauth_callback`
        .route(&at("oauth_callback"), get(hub_oauth::finish))
        .route(&at("sign-out"), post(views::sign_out))
        .route(&at("static/{file}"), get(views::asset))
}

/// A page request: the page's settings, its language, and who is signed in.
pub(crate) struct PageContext {
    /// The page's settings.
    pub(crate) page: PageConfig,
    /// The page's path, ending in `/`.
    pub(crate) prefix: String,
    /// The language pages are in.
    pub(crate) lang: &'static str,
    /// Whether the switch chose it now (its cookie is then set).
    chosen: bool,
    /// Who is signed in.
    pub(crate) user: Option<SignedIn>,
}

impl FromRequestParts<Arc<AppState>> for PageContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let page = state.page_config()?.clone();
        let query_lang = parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "lang")
                .map(|(_, v)| v.into_owned())
        });
        Ok(Self {
            prefix: page.public_url.path().to_string(),
            lang: render::language(query_lang.as_deref(), &parts.headers),
            chosen: query_lang.is_some(),
            user: state.signed_in(&parts.headers).await?,
            page,
        })
    }
}

impl PageContext {
    /// A page: the template with `extra` and what every page shows.
    pub(crate) fn render(
        &self,
        status: StatusCode,
        name: &str,
        extra: minijinja::Value,
    ) -> Response {
        let user = self.user.as_ref().map(|u| {
            context! { name => u.row.name.clone(), csrf => u.row.csrf.clone() }
        });
        let words = render::words().get(self.lang).cloned().unwrap_or_default();
        let context = context! {
            lang => self.lang,
            prefix => self.prefix.clone(),
            t => words,
            user => user,
            ..extra
        };
        let mut response = render::html(status, name, context);
        if self.chosen {
            response.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(render::LANG_COOKIE, self.lang, &self.prefix, 365 * 86400),
            );
        }
        response
    }

    /// The rights of whoever is signed in; `why` says what signing in is for.
    pub(crate) fn principal(&self, why: &str) -> Result<&Principal, ApiError> {
        self.user
            .as_ref()
            .map(|u| &u.row.principal)
            .ok_or_else(|| ApiError::Unauthorized(format!("sign in {why}")))
    }

    /// The rights of whoever posted a form, once its CSRF token is the session's.
    pub(crate) fn form_principal(&self, csrf: &str) -> Result<&Principal, ApiError> {
        let user = self
            .user
            .as_ref()
            .ok_or_else(|| ApiError::Unauthorized("sign in first".into()))?;
        session::check_csrf(&user.row, Some(csrf))?;
        Ok(&user.row.principal)
    }

    /// An error, as a page that says what went wrong (the status is the API's).
    pub(crate) fn error(&self, error: ApiError) -> Response {
        let (status, _) = error.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %error, "a page failed");
        }
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "the service failed; its log says why".to_string()
        } else {
            error.to_string()
        };
        self.render(status, "error.html", context! { message })
    }
}

/// A 303 to `location` (a page of the page's own).
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
