//! `GET /api/v1/courses`: the courses of the caller — those it teaches, those
//! it takes, and for an administrator every course that has environments.

use std::sync::Arc;

use axum::{extract::State, Json};
use serde::Serialize;

use crate::{
    auth::{Principal, Role},
    error::{ApiError, ErrorBody},
    AppState,
};

/// The caller's courses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CourseList {
    /// The caller's role.
    pub(crate) role: Role,
    /// Courses it teaches (manages).
    pub(crate) teaching: Vec<String>,
    /// Courses it takes (reads).
    pub(crate) taking: Vec<String>,
    /// Other courses it sees: every course, for an administrator or a hub.
    pub(crate) others: Vec<String>,
}

/// The courses `principal` teaches, takes, or sees besides.
pub(crate) async fn courses_of(
    state: &AppState,
    principal: &Principal,
) -> Result<CourseList, ApiError> {
    let teaching = principal.courses.clone();
    let taking = principal.reads.clone();
    let others = match principal.role {
        Role::Admin | Role::Hub => state
            .store
            .courses()
            .await?
            .into_iter()
            .filter(|c| !teaching.contains(c) && !taking.contains(c))
            .collect(),
        Role::Teacher | Role::Student => Vec::new(),
    };
    Ok(CourseList {
        role: principal.role,
        teaching,
        taking,
        others,
    })
}

/// The caller's courses (a token's, or a page session's).
#[utoipa::path(
    get,
    path = "/api/v1/courses",
    operation_id = "list_courses",
    responses(
        (status = 200, description = "The caller's courses", body = CourseList),
        (status = 401, description = "No valid token or session", body = ErrorBody),
    ),
    security(("token" = [])),
    tag = "courses"
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<CourseList>, ApiError> {
    Ok(Json(courses_of(&state, &principal).await?))
}
