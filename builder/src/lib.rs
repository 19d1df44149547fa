//! The trousse build pipeline:
//! source → resolve (solve → lock) → fetch → stage → layer → image → publish.
//!
//! Each stage is a module with typed input and output. Everything after the
//! lock is a pure function of the lock and the build settings. The public
//! surface is what the CLI, the service and the benchmark use.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod cache;
pub mod error;
pub mod fuzzing;
pub mod guard;
pub mod image;
mod lockfile;
pub mod net;
mod pipeline;
pub mod progress;
pub mod pypi;
mod resolve;
pub mod settings;
pub mod source;
mod stage;

pub use error::BuildError;
pub use error::{ArchiveError, Class, UnsafePackage};
pub use image::build_key::{BuildKey, BUILD_FORMAT};
pub use image::layer::Compression;
pub use lockfile::{settings_of as lock_settings, Lock};
pub use pipeline::{build, BuildOptions, BuildReport, PlatformImage};
pub use resolve::{BuildRequest, Overrides, ResolveOptions, Resolved};
pub use settings::{ImageSettings, SettingsRecord};
pub use source::spec::EnvSpec;
pub use source::{Input, Source, SourceKind, DEFAULT_PYTHON};
