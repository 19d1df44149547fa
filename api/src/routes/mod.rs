//! The HTTP routes: each module takes a request, checks its caller's role,
//! and calls the domain, the store and the builder.

pub(crate) mod binder;
pub(crate) mod courses;
pub(crate) mod distribution;
pub(crate) mod environments;
pub(crate) mod events;
pub(crate) mod exam_windows;
pub(crate) mod git_tokens;
pub(crate) mod hooks;
pub(crate) mod operations;
pub(crate) mod packages;
pub(crate) mod registry_token;
pub(crate) mod tokens;
