//! The trousse build pipeline:
//! source → request (solve → lock) → fetch → stage → layer → image → publish.
//!
//! Each stage is a module with typed input and output. Everything after the
//! lock is a pure function of the lock and the build settings. The public
//! surface is what the CLI, the service and the benchmark use.

#![deny(missing_docs)]

mod base;
mod beneath;
mod build_key;
pub mod cache;
pub mod cache_gc;
pub mod channel_url;
mod complete;
mod conda_lock;
pub mod credentials;
mod env_layer;
pub mod error;
mod explicit;
mod fetch;
pub mod fuzzing;
pub mod image;
pub mod inspect;
mod layer;
mod layer_plan;
mod lock;
pub mod mirrors;
mod package_check;
pub mod partial_lock;
mod pipeline;
pub mod post_build;
pub mod progress;
pub mod pypi;
pub mod repo;
mod request;
mod solve;
mod source;
pub mod spec;
mod stage;
pub mod work_limit;
pub mod yaml_guard;

pub use build_key::{BuildKey, SettingsRecord, BUILD_FORMAT};
pub use complete::ArchiveError;
pub use error::BuildError;
pub use layer::Compression;
pub use lock::{settings_of as lock_settings, Lock};
pub use package_check::UnsafePackage;
pub use pipeline::{build, BuildOptions, BuildReport, PlatformImage};
pub use request::{BuildRequest, Overrides, ResolveOptions, Resolved};
pub use source::{Source, SourceKind, DEFAULT_PYTHON};
pub use spec::{EnvSpec, ImageSettings};
