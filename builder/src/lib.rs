//! The trousse build pipeline:
//! spec → solve → lock → fetch → stage → layer → image → publish.
//!
//! Each stage is a module with typed input and output. Everything after the
//! lock is a pure function of the lock and the build settings.

pub mod base;
pub mod beneath;
pub mod build_key;
pub mod cache;
pub mod cache_gc;
pub mod channel_url;
pub mod env_layer;
pub mod error;
pub mod fetch;
pub mod fuzzing;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod layer_plan;
pub mod lock;
pub mod package_check;
pub mod pipeline;
pub mod progress;
pub mod request;
pub mod solve;
pub mod source;
pub mod spec;
pub mod stage;

pub use build_key::{BuildKey, SettingsRecord};
pub use error::BuildError;
pub use layer::Compression;
pub use lock::Lock;
pub use pipeline::{build, BuildOptions, BuildReport};
pub use request::{BuildRequest, Overrides, ResolveOptions, Resolved};
pub use source::{Source, SourceKind};
pub use spec::{EnvSpec, ImageSettings};
