//! What teachers do on the page: a new environment from searched packages,
//! PyPI packages, a pasted file or a repository; its preview; its build,
//! followed live; an exam made from it. Each form carries the session's CSRF
//! token and goes through the same code as the API's routes.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    Form,
};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::PageContext;
use crate::{
    auth::Principal,
    error::ApiError,
    routes::environments::{
        lifecycle::{archive_environment, roll_back},
        preview::preview_request,
        submit_request, EnvironmentRequest,
    },
    AppState,
};

/// The new-environment form, as posted.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct EnvironmentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    packages: String,
    #[serde(default)]
    pypi: String,
    #[serde(default)]
    spec: String,
    #[serde(default)]
    repo: String,
    #[serde(default, rename = "ref")]
    reference: String,
}

impl EnvironmentForm {
    /// The API request the form means: a repository, a pasted file, or the
    /// packages listed (an environment.yml written as JSON, which YAML reads).
    fn request(&self, channels: &[String]) -> EnvironmentRequest {
        let name = Some(self.name.trim().to_string()).filter(|n| !n.is_empty());
        let mut request = EnvironmentRequest {
            name,
            spec: None,
            lock: None,
            repo: None,
            reference: None,
            exam: false,
            opens: None,
            closes: None,
        };
        if !self.repo.trim().is_empty() {
            request.repo = Some(self.repo.trim().to_string());
            request.reference = Some(self.reference.trim().to_string()).filter(|r| !r.is_empty());
        } else if !self.spec.trim().is_empty() {
            request.spec = Some(self.spec.clone());
        } else {
            request.spec = Some(spec_of(&self.packages, &self.pypi, channels));
        }
        request
    }

    /// The form's fields, to carry into the next form.
    fn fields(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("name", self.name.clone()),
            ("packages", self.packages.clone()),
            ("pypi", self.pypi.clone()),
            ("spec", self.spec.clone()),
            ("repo", self.repo.clone()),
            ("ref", self.reference.clone()),
        ])
    }
}

/// An environment.yml of these conda and PyPI packages (one per line);
/// every value written as a JSON string, which YAML reads as it is.
fn spec_of(conda: &str, pypi: &str, channels: &[String]) -> String {
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| serde_json::Value::from(l).to_string())
            .collect()
    };
    let mut yaml = String::from("channels:\n");
    for channel in channels {
        yaml.push_str(&format!(
            "  - {}\n",
            serde_json::Value::from(channel.as_str())
        ));
    }
    yaml.push_str("dependencies:\n");
    let conda = lines(conda);
    for package in &conda {
        yaml.push_str(&format!("  - {package}\n"));
    }
    let pypi = lines(pypi);
    if !pypi.is_empty() {
        if !conda.iter().any(|p| p == "\"pip\"") {
            yaml.push_str("  - \"pip\"\n");
        }
        yaml.push_str("  - pip:\n");
        for package in &pypi {
            yaml.push_str(&format!("      - {package}\n"));
        }
    }
    yaml
}

/// The new-environment form (empty, or filled in again to change it).
pub(crate) async fn new(
    ctx: PageContext,
    Path(course): Path<String>,
    form: Result<Form<EnvironmentForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let allowed = ctx
        .principal("to change the environments of your courses")
        .and_then(|p| p.require_write(&course));
    if let Err(e) = allowed {
        return ctx.error(e);
    }
    let form = form.map(|f| f.0).unwrap_or_default();
    ctx.render(
        StatusCode::OK,
        "new.html",
        context! { course, form => form.fields(), error => () },
    )
}

/// The solved environment a form asks for, with its changes and the build button.
pub(crate) async fn preview(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(course): Path<String>,
    Form(form): Form<EnvironmentForm>,
) -> Response {
    let solved = async {
        let (principal, request) = asked(&state, &ctx, &course, &form)?;
        preview_request(&state, principal, &course, request).await
    };
    match solved.await {
        Ok(preview) => ctx.render(
            StatusCode::OK,
            "preview.html",
            context! { course, preview, form => form.fields() },
        ),
        Err(e @ (ApiError::Unauthorized(_) | ApiError::Forbidden(_))) => ctx.error(e),
        // the form again, filled in, with what is wrong
        Err(e) => {
            let (status, _) = e.status_and_code();
            let error = e.to_string();
            ctx.render(
                status,
                "new.html",
                context! { course, form => form.fields(), error },
            )
        }
    }
}

/// Builds what a form asks for; to the environment's page, where the build shows live.
pub(crate) async fn build(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(course): Path<String>,
    Form(form): Form<EnvironmentForm>,
) -> Response {
    let built = async {
        let (principal, request) = asked(&state, &ctx, &course, &form)?;
        submit_request(&state, principal, &course, request).await
    };
    shown(&ctx, built.await.map(|(env, _)| env))
}

/// The exam form, as posted.
#[derive(Debug, Deserialize)]
pub(crate) struct ExamForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    opens: String,
    #[serde(default)]
    closes: String,
}

/// An exam made from an environment: its very lock, submitted as a new exam
/// environment with a time window.
pub(crate) async fn exam(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(id): Path<String>,
    Form(form): Form<ExamForm>,
) -> Response {
    let made = async {
        let principal = ctx.form_principal(&form.csrf)?;
        let env = state.readable_environment(principal, &id).await?;
        principal.require_write(&env.course)?;
        let given = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
        let request = EnvironmentRequest {
            name: given(&form.name),
            spec: None,
            lock: Some(env.lock.clone()),
            repo: None,
            reference: None,
            exam: true,
            opens: given(&form.opens),
            closes: given(&form.closes),
        };
        submit_request(&state, principal, &env.course, request).await
    };
    shown(&ctx, made.await.map(|(env, _)| env))
}

/// A form that makes an environment (or one of its versions) current, or archives it.
#[derive(Debug, Deserialize)]
pub(crate) struct VersionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    digest: Option<String>,
}

/// Rolls an environment back (to a version, or to itself) and shows it.
pub(crate) async fn make_current(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(id): Path<String>,
    Form(form): Form<VersionForm>,
) -> Response {
    let done = async {
        let principal = ctx.form_principal(&form.csrf)?;
        let digest = form.digest.as_deref().filter(|d| !d.is_empty());
        roll_back(&state, principal, &id, digest).await
    };
    shown(&ctx, done.await)
}

/// Archives an environment and shows it.
pub(crate) async fn archive(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(id): Path<String>,
    Form(form): Form<VersionForm>,
) -> Response {
    let done = async {
        let principal = ctx.form_principal(&form.csrf)?;
        archive_environment(&state, principal, &id).await
    };
    shown(&ctx, done.await)
}

/// One environment: its status, image and build log, live while it builds.
pub(crate) async fn environment(
    State(state): State<Arc<AppState>>,
    ctx: PageContext,
    Path(id): Path<String>,
) -> Response {
    let shown = async {
        let principal = ctx.principal("to see this environment")?;
        let row = state.readable_environment(principal, &id).await?;
        let manages = principal.manages(&row.course);
        let env = state.view_for(principal, row).await?;
        if env.sealed && !manages {
            return Err(ApiError::Forbidden("this exam is not open yet".into()));
        }
        let words = super::render::words()
            .get(ctx.lang)
            .cloned()
            .unwrap_or_default();
        let status_words: BTreeMap<&str, String> = ["queued", "building", "ready", "failed"]
            .into_iter()
            .map(|s| {
                (
                    s,
                    words
                        .get(&format!("status_{s}"))
                        .cloned()
                        .unwrap_or_else(|| s.to_string()),
                )
            })
            .collect();
        let status_words = serde_json::to_string(&status_words).unwrap_or_default();
        let hub_url = ctx.page.hub_url.as_ref().map(|u| u.to_string());
        let versions = match manages && !env.exam {
            true => state.store.versions(&env.id).await?,
            false => Vec::new(),
        };
        Ok::<_, ApiError>(context! { env, manages, hub_url, status_words, versions })
    };
    match shown.await {
        Ok(extra) => ctx.render(StatusCode::OK, "environment.html", extra),
        Err(e) => ctx.error(e),
    }
}

/// The form's teacher and the API request it means, once its CSRF token is checked.
fn asked<'a>(
    state: &AppState,
    ctx: &'a PageContext,
    course: &str,
    form: &EnvironmentForm,
) -> Result<(&'a Principal, EnvironmentRequest), ApiError> {
    let principal = ctx.form_principal(&form.csrf)?;
    principal.require_write(course)?;
    Ok((principal, form.request(&state.config.allowed_channels)))
}

/// To the environment's page once an action on it is done; else the error's page.
fn shown(ctx: &PageContext, done: Result<crate::store::EnvironmentRow, ApiError>) -> Response {
    match done {
        Ok(env) => super::see_other(&format!("{}environments/{}", ctx.prefix, env.id)),
        Err(e) => ctx.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_packages_make_a_spec_yaml_reads() {
        let spec = spec_of(
            "numpy\n  pandas >=2 \n# a comment\n\n",
            "rich\n",
            &["conda-forge".into()],
        );
        let parsed = trousse_builder::EnvSpec::from_yaml(
            &spec,
            std::path::Path::new("environment.yml"),
            std::path::Path::new("/"),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(parsed.dependencies.len(), 3, "{spec}");
        assert_eq!(parsed.pip.map(|p| p.requirements.len()), Some(1), "{spec}");
        let hostile = spec_of("x\"\n  - y: [", "", &[]);
        assert!(hostile.contains(r#"  - "x\"""#), "{hostile}");
    }
}
