//! OCI image storage and transport for trousse: content-addressed blob stores,
//! OCI image layouts, `oci-archive:` and `docker-archive:` files, and image
//! references. This crate knows nothing about conda.

pub mod archive;
pub mod auth;
pub mod blob_sources;
pub mod blob_store;
pub mod cache_tag;
pub mod digest;
pub mod error;
pub mod image_ref;
pub mod layout;
pub mod publish;
pub mod registry;

pub use blob_store::BlobStore;
pub use digest::Digest;
pub use error::RegistryError;
pub use image_ref::ImageRef;
pub use layout::OciLayout;
pub use publish::{open_image, publish, Image, Published};
pub use registry::{PushReport, RegistryOptions};
