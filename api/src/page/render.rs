//! The page's templates and words: one template environment built once,
//! the language of a request (`?lang=`, its cookie, `Accept-Language`), and
//! HTML answers with the page's security headers.

use std::{collections::BTreeMap, sync::OnceLock};

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use minijinja::Environment;

use crate::error::ApiError;

/// The languages of the page; the first is the default.
pub(crate) const LANGUAGES: [&str; 2] = ["fr", "en"];
/// The cookie that keeps a language chosen with the switch.
pub(crate) const LANG_COOKIE: &str = "trousse-lang";

/// What every page may load: its own scripts, styles and images only (no CDN,
/// no inline script), no framing, forms posted to itself.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

type Words = BTreeMap<String, BTreeMap<String, String>>;

/// The words of each language, from `messages.toml`.
pub(crate) fn words() -> &'static Words {
    static WORDS: OnceLock<Words> = OnceLock::new();
    WORDS.get_or_init(|| toml::from_str(include_str!("messages.toml")).unwrap_or_default())
}

/// The templates, compiled once.
fn templates() -> &'static Environment<'static> {
    static TEMPLATES: OnceLock<Environment<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut env = Environment::new();
        env.add_filter("bytes", |n: u64| {
            bytesize::ByteSize(n).display().si().to_string()
        });
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("sign_in.html", include_str!("templates/sign_in.html")),
            ("courses.html", include_str!("templates/courses.html")),
            ("course.html", include_str!("templates/course.html")),
            ("error.html", include_str!("templates/error.html")),
            ("new.html", include_str!("templates/new.html")),
            ("preview.html", include_str!("templates/preview.html")),
            (
                "environment.html",
                include_str!("templates/environment.html"),
            ),
        ] {
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "a page template does not compile");
            }
        }
        env
    })
}

/// The language of a request: `?lang=` (the switch), else its cookie, else
/// the first of `Accept-Language` the page has, else French.
pub(crate) fn language(query_lang: Option<&str>, headers: &HeaderMap) -> &'static str {
    let known = |tag: &str| {
        let primary = tag.split(['-', '_']).next().unwrap_or("").trim();
        LANGUAGES
            .iter()
            .find(|l| l.eq_ignore_ascii_case(primary))
            .copied()
    };
    if let Some(lang) = query_lang.and_then(known) {
        return lang;
    }
    if let Some(lang) = super::session::cookie(headers, LANG_COOKIE).and_then(|c| known(&c)) {
        return lang;
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut ranked: Vec<(f32, &str)> = accepted
        .split(',')
        .take(32)
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .into_iter()
        .find_map(|(_, tag)| known(tag))
        .unwrap_or(LANGUAGES[0])
}

/// A page rendered with `context`, answered with `status` and the page's headers.
pub(crate) fn html(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    match templates()
        .get_template(name)
        .and_then(|t| t.render(context))
    {
        Ok(body) => with_page_headers((status, body).into_response(), "text/html; charset=utf-8"),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a page");
            ApiError::Internal(format!("rendering the page {name}")).into_response()
        }
    }
}

/// Adds the page's security headers and content type.
pub(crate) fn with_page_headers(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_in_both_languages() {
        let words = words();
        let en: Vec<_> = words["en"].keys().collect();
        let fr: Vec<_> = words["fr"].keys().collect();
        assert!(en.len() > 20);
        assert_eq!(en, fr);
    }

    #[test]
    fn every_template_renders() {
        let t = words()["en"].clone();
        let env = minijinja::context! {
            id => "e1", course => "math1", error => (), name => "week1", digest => "sha256:ab", status => "ready", current => true, exam => true, sealed => false,
            packages => 12, bytes => 123_456_789u64, image => "h/c/week1@sha256:ab",
            window => minijinja::context! { opens => "2099-01-01T00:00:00Z", closes => () },
        };
        let user = minijinja::context! { name => "Ada", csrf => "c" };
        let common = minijinja::context! { lang => "en", prefix => "/", t, user };
        for (name, extra) in [
            (
                "sign_in.html",
                minijinja::context! { oidc => "Univ", hub => true },
            ),
            (
                "courses.html",
                minijinja::context! { sections => vec![minijinja::context! { key => "teaching", courses => vec!["math1"] }] },
            ),
            (
                "course.html",
                minijinja::context! { course => "math1", manages => true, environments => vec![env.clone()], hub_url => "https://hub/" },
            ),
            ("error.html", minijinja::context! { message => "no" }),
            (
                "new.html",
                minijinja::context! { course => "math1", form => minijinja::context! { name => "w" }, error => "bad" },
            ),
            (
                "preview.html",
                minijinja::context! {
                    course => "math1",
                    form => minijinja::context! { name => "w", packages => "numpy" },
                    preview => minijinja::context! {
                        name => "w", download_bytes => 1000u64, installed_bytes => 40u64, installed_known => 1,
                        packages => vec![
                            minijinja::context! { name => "numpy", version => "2.0", kind => "conda", size => 10u64, installed => 40u64 },
                            minijinja::context! { name => "rich", version => "13", kind => "pypi", size => (), installed => () },
                        ],
                        changes => minijinja::context! { since => "w", added => vec!["numpy"], removed => Vec::<String>::new(),
                            changed => vec![minijinja::context! { name => "python", from => "3.11", to => "3.12" }] },
                    },
                },
            ),
            (
                "environment.html",
                minijinja::context! { env => env.clone(), manages => true, hub_url => (), status_words => "{}",
                versions => vec![minijinja::context! { digest => "sha256:0123456789abcdef", packages => 3 }] },
            ),
        ] {
            let page = templates()
                .get_template(name)
                .and_then(|t| t.render(minijinja::context! { ..common.clone(), ..extra }))
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(page.contains("</html>"), "{name}");
        }
    }

    #[test]
    fn the_language_follows_the_switch_then_the_browser() {
        let mut headers = HeaderMap::new();
        assert_eq!(language(None, &headers), "fr");
        headers.insert(
            header::ACCEPT_LANGUAGE,
            "de-DE, en-GB;q=0.8, fr;q=0.5".parse().unwrap(),
        );
        assert_eq!(language(None, &headers), "en");
        assert_eq!(language(Some("fr"), &headers), "fr");
        assert_eq!(language(Some("xx"), &headers), "en");
        headers.insert(header::COOKIE, "trousse-lang=fr".parse().unwrap());
        assert_eq!(language(None, &headers), "fr");
    }
}
