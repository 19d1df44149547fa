//! The pages: home (sign-in, or the courses of whoever is signed in), a
//! course's environments, sign-out, and the page's own stylesheet and script.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Form,
};
use minijinja::context;

use super::{render, session, PageContext};
use crate::{error::ApiError, routes::courses::courses_of, AppState};

/// `/`: the sign-in buttons, or the courses of whoever is signed in.
pub(crate) async fn home(State(state): State<Arc<AppState>>, ctx: PageContext) -> Response {
    let Some(user) = &ctx.user else {
        let oidc = ctx.page.oidc.as_ref().map(|o| o.display_name.clone());
        let hub = ctx.page.hub_oauth.is_some();
        return ctx.render(StatusCode::OK, "sign_in.html", context! { oidc, hub });
    };
    match courses_of(&state, &user.row.principal).await {
        Ok(list) => {
            let sections: Vec<_> = [
                ("teaching", list.teaching),
                ("taking", list.taking),
                ("all_courses", list.others),
            ]
            .into_iter()
            .filter(|(_, courses)| !courses.is_empty())
            .map(|(key, courses)| context! { key, courses })
            .collect();
            ctx.render(StatusCode::OK, "courses.html", context! { sections })
        }
        Err(e) => ctx.error(e),
    }
}

/// `/courses/{course}`: its environments as the caller may see them — a
/// teacher all of them; a student the current ones, and no exam before its window.
pub(crate) async fn course(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(course): Path<String>,
) -> Response {
    let shown = async {
        let principal = ctx.principal("to see the environments of your courses")?;
        principal.require_read(&course)?;
        let manages = principal.manages(&course);
        let mut environments = Vec::new();
        for env in state.store.course_environments(&course).await? {
            let view = state.view_for(principal, env).await?;
            if manages || (view.current && !view.sealed) {
                environments.push(view);
            }
        }
        let hub_url = ctx.page.hub_url.as_ref().map(|u| u.to_string());
        Ok::<_, ApiError>(context! { course, manages, environments, hub_url })
    };
    match shown.await {
        Ok(extra) => ctx.render(StatusCode::OK, "course.html", extra),
        Err(e) => ctx.error(e),
    }
}

/// A form that only carries its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// Ends the session (a form post, with its CSRF token).
pub(crate) async fn sign_out(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Form(form): Form<CsrfForm>,
) -> Response {
    let ended = async {
        if let Some(user) = &ctx.user {
            session::check_csrf(&user.row, form.csrf.as_deref())?;
            state.store.remove_session(&user.hash).await?;
        }
        let mut response = super::see_other(&ctx.prefix);
        response.headers_mut().insert(
            header::SET_COOKIE,
            session::set_cookie(session::SESSION_COOKIE, "", &ctx.prefix, 0),
        );
        Ok::<_, ApiError>(response)
    };
    ended.await.unwrap_or_else(|e| ctx.error(e))
}

/// The page's stylesheet and script (no other origin is ever loaded).
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "trousse.css" => (
            include_str!("static/trousse.css"),
            "text/css; charset=utf-8",
        ),
        "trousse.js" => (
            include_str!("static/trousse.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => {
            return ApiError::NotFound(format!(
                "no page asset '{}'",
                trousse_builder::error::clip(&file, 80)
            ))
            .into_response()
        }
    };
    render::with_page_headers(body.into_response(), content_type)
}
