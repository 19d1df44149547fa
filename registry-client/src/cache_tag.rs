//! A build's cache tag in the repository it was pushed to (`build-KEY`).
//! Written after everything else, it marks a complete push: a later build of
//! the same key finds it, moves the requested tag if needed, and does nothing else.

use oci_client::Reference;

use crate::{
    registry::{parse_reference, Registry},
    RegistryError, RegistryOptions,
};

/// `reference` (`HOST/REPO[:TAG]`) with `tag` instead of its own tag.
fn with_tag(reference: &Reference, tag: &str) -> Reference {
    Reference::with_tag(
        reference.registry().into(),
        reference.repository().into(),
        tag.into(),
    )
}

/// If the repository of `output` holds an image tagged `cache_tag`, points
/// `output`'s tag at it and returns its digest.
pub async fn find_published(
    output: &str,
    cache_tag: &str,
    options: &RegistryOptions,
) -> Result<Option<String>, RegistryError> {
    let target = parse_reference(output)?;
    let registry = Registry::for_reference(&target, options)?;
    registry.retag(&with_tag(&target, cache_tag), &target).await
}

/// Tags the image `output` points at with `cache_tag` too: call it last.
pub async fn mark_published(
    output: &str,
    cache_tag: &str,
    options: &RegistryOptions,
) -> Result<(), RegistryError> {
    let target = parse_reference(output)?;
    let key_tag = with_tag(&target, cache_tag);
    Registry::for_reference(&key_tag, options)?
        .retag(&target, &key_tag)
        .await?;
    Ok(())
}
