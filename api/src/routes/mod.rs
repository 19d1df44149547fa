//! The HTTP routes: each module takes a request, checks its caller's role,
//! and calls the domain, the store and the builder.

pub mod binder;
pub mod distribution;
pub mod environments;
pub mod events;
pub mod exam_windows;
pub mod git_tokens;
pub mod hooks;
pub mod operations;
