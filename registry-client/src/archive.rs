//! `oci-archive:` and `docker-archive:` files: deterministic tars of an image layout.

use std::{io::Write, path::Path};

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType, ANNOTATION_REF_NAME};

use crate::{layout::OCI_LAYOUT_FILE, publish::descriptor_digest, Digest, Image, RegistryError};

/// Writes an OCI image layout, holding `image` under `tag`, as one tar file.
pub fn write_oci_archive(image: &Image, file: &Path, tag: &str) -> Result<(), RegistryError> {
    let index = single_entry_index(&image.root, tag)?;
    write_archive(image, file, &index, None)
}

/// Writes a `docker save` style tar (manifest.json) that is also an OCI layout.
pub fn write_docker_archive(
    image: &Image,
    file: &Path,
    reference: Option<&str>,
) -> Result<(), RegistryError> {
    let manifests = image.manifests()?;
    let [(descriptor, manifest)] = manifests.as_slice() else {
        return Err(RegistryError::Unsupported(format!(
            "a docker archive holds one platform, this image has {}: build with one --platform or write oci-archive:",
            manifests.len()
        )));
    };
    let blob_path = |d: &Descriptor| -> Result<String, RegistryError> {
        Ok(format!("blobs/sha256/{}", descriptor_digest(d)?.hex()))
    };
    let docker_manifest = serde_json::json!([{
        "Config": blob_path(manifest.config())?,
        "RepoTags": reference.map(|r| vec![normalize_docker_reference(r)]).unwrap_or_default(),
        "Layers": manifest.layers().iter().map(blob_path).collect::<Result<Vec<_>, _>>()?,
    }]);
    let tag = reference.unwrap_or(crate::ImageRef::DEFAULT_TAG);
    let index = single_entry_index(descriptor, tag)?;
    let manifest_json = crate::digest::canonical_json(&docker_manifest).map_err(|source| {
        RegistryError::InvalidJson {
            what: "manifest.json",
            location: file.to_path_buf(),
            source,
        }
    })?;
    write_archive(image, file, &index, Some(&manifest_json))
}

/// `name` becomes `name:latest`, as docker does for untagged references.
fn normalize_docker_reference(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

fn single_entry_index(root: &Descriptor, tag: &str) -> Result<Vec<u8>, RegistryError> {
    let mut tagged = root.clone();
    let mut annotations = tagged.annotations().clone().unwrap_or_default();
    annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
    tagged.set_annotations(Some(annotations));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![tagged])
        .build()
        .map_err(|e| RegistryError::Unsupported(format!("building index.json: {e}")))?;
    crate::digest::canonical_json(&index).map_err(|source| RegistryError::InvalidJson {
        what: "index.json",
        location: Default::default(),
        source,
    })
}

/// Writes the image as a layout in one tar at `file` (`index_json`, and
/// `docker_manifest` as manifest.json when given): into a temporary file
/// beside it, renamed over it once complete.
fn write_archive(
    image: &Image,
    file: &Path,
    index_json: &[u8],
    docker_manifest: Option<&[u8]>,
) -> Result<(), RegistryError> {
    let tmp = partial_file_beside(file)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(tmp));
    let mut digests = image.blob_digests()?;
    digests.sort();
    digests.dedup();
    append_layout(&mut builder, image, &digests, index_json, docker_manifest)
        .map_err(RegistryError::io("writing archive", file))?;
    publish_archive(builder, file)
}

/// A new temporary file in the directory of `file` (created if need be), to be renamed over it.
fn partial_file_beside(file: &Path) -> Result<tempfile::NamedTempFile, RegistryError> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs_err::create_dir_all(dir).map_err(|e| RegistryError::Io {
        action: "creating",
        path: dir.to_path_buf(),
        source: e,
    })?;
    tempfile::Builder::new()
        .prefix(".partial-")
        // 0666 less the umask, as any file the user writes (tempfile's default is 0600)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(RegistryError::io("creating temporary archive in", dir))
}

/// Appends the layout's entries in order: `oci-layout`, `index.json`,
/// `manifest.json` when given, the blob directories, then each blob; ends the tar.
fn append_layout<W: Write>(
    builder: &mut tar::Builder<W>,
    image: &Image,
    digests: &[Digest],
    index_json: &[u8],
    docker_manifest: Option<&[u8]>,
) -> std::io::Result<()> {
    append_bytes(builder, "oci-layout", OCI_LAYOUT_FILE.as_bytes())?;
    append_bytes(builder, "index.json", index_json)?;
    if let Some(manifest) = docker_manifest {
        append_bytes(builder, "manifest.json", manifest)?;
    }
    append_dir(builder, "blobs/")?;
    append_dir(builder, "blobs/sha256/")?;
    for digest in digests {
        append_blob(builder, image, digest)?;
    }
    builder.finish()
}

/// Appends one blob of the image's store as `blobs/sha256/HEX`.
fn append_blob<W: Write>(
    builder: &mut tar::Builder<W>,
    image: &Image,
    digest: &Digest,
) -> std::io::Result<()> {
    let mut blob = image.blobs.open(digest).map_err(std::io::Error::other)?;
    let size = blob.metadata()?.len();
    let mut header = fixed_header(tar::EntryType::Regular, 0o644, size);
    builder.append_data(
        &mut header,
        format!("blobs/sha256/{}", digest.hex()),
        &mut blob,
    )
}

/// Flushes the finished archive's temporary file and renames it to `file`.
fn publish_archive(
    builder: tar::Builder<std::io::BufWriter<tempfile::NamedTempFile>>,
    file: &Path,
) -> Result<(), RegistryError> {
    let mut writer = builder
        .into_inner()
        .map_err(RegistryError::io("writing archive", file))?;
    writer
        .flush()
        .map_err(RegistryError::io("writing archive", file))?;
    let tmp = writer.into_inner().map_err(|e| RegistryError::Io {
        action: "writing archive",
        path: file.to_path_buf(),
        source: e.into_error(),
    })?;
    tmp.persist(file).map_err(|e| RegistryError::Io {
        action: "publishing archive",
        path: file.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn fixed_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = fixed_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    b.append_data(&mut header, path, bytes)
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let mut header = fixed_header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut header, path, std::io::empty())
}

/// Unpacks an archive into a temporary directory.
pub fn unpack(file: &Path) -> Result<tempfile::TempDir, RegistryError> {
    let tmp = tempfile::tempdir().map_err(RegistryError::io(
        "creating a temporary directory for",
        file,
    ))?;
    let reader = std::fs::File::open(file).map_err(RegistryError::io("opening", file))?;
    tar::Archive::new(std::io::BufReader::new(reader))
        .unpack(tmp.path())
        .map_err(RegistryError::io("unpacking", file))?;
    Ok(tmp)
}
