//! The end-to-end tests of the `trousse` binary against real components
//! (registries, Docker, git servers, the service, PyPI indexes, all on
//! loopback): one test binary, so the workspace is linked once, with one
//! module per area. `cargo test --test it AREA::` runs one area.

mod common;

mod bad_input;
mod base_image;
mod binder_api;
mod build_image;
mod cache;
mod clobber;
mod deploy;
mod git_sources;
mod http_channel;
mod hub_images;
mod lock_formats;
mod pypi;
mod real_data;
mod realistic_channel;
mod registry;
mod registry_issuer;
mod registry_token_auth;
mod scale;
mod security;
mod service;
mod tls;
