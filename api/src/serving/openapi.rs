//! The OpenAPI document: every route and schema of the API, listed once.

use axum::Json;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{auth, error, operations::tokens, routes, store};

struct TokenSecurity;

impl Modify for TokenSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the service.
#[derive(OpenApi)]
#[openapi(
    info(title = "trousse", description = "Course environments as OCI images, for JupyterHub"),
    paths(
        routes::courses::list,
        routes::packages::search,
        routes::environments::preview::preview,
        routes::environments::lifecycle::versions,
        routes::environments::lifecycle::make_current,
        routes::environments::lifecycle::archive,
        routes::environments::lifecycle::launched,
        routes::environments::cancel::cancel,
        routes::environments::delete::delete,
        routes::environments::submit,
        routes::environments::list,
        routes::environments::get,
        routes::events::follow,
        routes::hooks::push,
        routes::hooks::course_push,
        routes::hooks::set_secret,
        routes::hooks::delete_secret,
        routes::git_tokens::set,
        routes::git_tokens::delete,
        routes::exam_windows::set,
        routes::exam_windows::delete,
        routes::distribution::version,
        routes::distribution::manifest_doc,
        routes::distribution::blob_doc,
        routes::distribution::tags_doc,
        routes::registry_token::issue,
        routes::tokens::list,
        routes::tokens::create,
        routes::tokens::revoke,
        routes::operations::health,
        routes::operations::metrics,
        openapi_document,
    ),
    components(schemas(
        routes::courses::CourseList,
        routes::packages::PackageList,
        routes::environments::preview::Preview,
        routes::environments::lifecycle::RollBack,
        routes::environments::lifecycle::VersionList,
        routes::environments::lifecycle::Launch,
        store::Version,
        routes::environments::preview::PreviewPackage,
        routes::environments::preview::Changes,
        routes::environments::preview::Changed,
        routes::packages::PackageView,
        routes::environments::EnvironmentRequest,
        routes::environments::Environment,
        routes::environments::EnvironmentList,
        routes::hooks::PushOutcome,
        routes::hooks::WebhookSecret,
        routes::git_tokens::GitToken,
        routes::exam_windows::WindowRequest,
        routes::exam_windows::WindowView,
        routes::hooks::Followed,
        store::Status,
        error::ErrorBody,
        routes::operations::Health,
        routes::registry_token::RegistryToken,
        routes::tokens::TokenList,
        routes::tokens::TokenRequest,
        store::TokenInfo,
        tokens::MadeToken,
        auth::Role,
    )),
    modifiers(&TokenSecurity)
)]
pub(crate) struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "The OpenAPI document")), tag = "operations")]
pub(crate) async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
