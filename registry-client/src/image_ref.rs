//! Image references in the transport syntax skopeo and podman use
//! (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`).

use std::{fmt, path::PathBuf, str::FromStr};

use crate::RegistryError;

/// Where an image is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// The empty image: no layers.
    Scratch,
    /// An OCI image layout directory, with an optional tag.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`), `latest` when absent.
        tag: Option<String>,
    },
    /// A tar file of an OCI image layout, with an optional tag.
    OciArchive {
        /// The archive file.
        file: PathBuf,
        /// The tag, `latest` when absent.
        tag: Option<String>,
    },
    /// An image in a registry: `docker://HOST/REPO[:TAG]`.
    Registry {
        /// `HOST/REPO[:TAG][@DIGEST]`.
        reference: String,
    },
    /// A tar file in the format of `docker save`, loadable by `docker load`.
    DockerArchive {
        /// The archive file.
        file: PathBuf,
        /// The `name:tag` docker gives the image when loading it.
        reference: Option<String>,
    },
}

impl ImageRef {
    /// The tag to use for layouts when the reference names none.
    pub const DEFAULT_TAG: &'static str = "latest";

    /// The tag (or docker reference) named by this reference, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            ImageRef::Scratch => None,
            ImageRef::Oci { tag, .. } | ImageRef::OciArchive { tag, .. } => tag.as_deref(),
            ImageRef::DockerArchive { reference, .. } => reference.as_deref(),
            ImageRef::Registry { .. } => None,
        }
    }
}

fn split_location(rest: &str) -> (PathBuf, Option<String>) {
    match rest.split_once(':') {
        Some((path, tag)) if !tag.is_empty() => (PathBuf::from(path), Some(tag.to_string())),
        Some((path, _)) => (PathBuf::from(path), None),
        None => (PathBuf::from(rest), None),
    }
}

impl FromStr for ImageRef {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "scratch" {
            return Ok(ImageRef::Scratch);
        }
        if let Some(reference) = s.strip_prefix("docker://") {
            crate::registry::parse_reference(reference)?;
            return Ok(ImageRef::Registry {
                reference: reference.to_string(),
            });
        }
        let (transport, rest) = s.split_once(':').ok_or_else(|| {
            invalid("expected TRANSPORT:LOCATION: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker://HOST/REPO[:TAG][@DIGEST] or scratch")
        })?;
        if rest.is_empty() {
            return Err(invalid("the location after the transport is empty"));
        }
        let (path, tag) = split_location(rest);
        if path.as_os_str().is_empty() {
            return Err(invalid("the path is empty"));
        }
        if let Some(tag) = &tag {
            if tag.chars().any(|c| c.is_whitespace()) {
                return Err(invalid("the tag contains white space"));
            }
        }
        match transport {
            "oci" => Ok(ImageRef::Oci { dir: path, tag }),
            "oci-archive" => Ok(ImageRef::OciArchive { file: path, tag }),
            "docker-archive" => Ok(ImageRef::DockerArchive {
                file: path,
                reference: tag,
            }),
            "docker" => Err(invalid(
                "registry references take two slashes: docker://HOST/REPO[:TAG]",
            )),
            other => Err(invalid(&format!(
                "unknown transport '{other}': use oci:, oci-archive:, docker-archive: or docker://"
            ))),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (transport, path, tag) = match self {
            ImageRef::Scratch => return f.write_str("scratch"),
            ImageRef::Registry { reference } => return write!(f, "docker://{reference}"),
            ImageRef::Oci { dir, tag } => ("oci", dir, tag),
            ImageRef::OciArchive { file, tag } => ("oci-archive", file, tag),
            ImageRef::DockerArchive { file, reference } => ("docker-archive", file, reference),
        };
        write!(f, "{transport}:{}", path.display())?;
        if let Some(tag) = tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_style_references() {
        assert_eq!(
            "oci:out/course:v1".parse::<ImageRef>().unwrap(),
            ImageRef::Oci {
                dir: "out/course".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci-archive:course.tar".parse::<ImageRef>().unwrap(),
            ImageRef::OciArchive {
                file: "course.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:c.tar:intro:2026"
                .parse::<ImageRef>()
                .unwrap(),
            ImageRef::DockerArchive {
                file: "c.tar".into(),
                reference: Some("intro:2026".into())
            }
        );
        assert_eq!("scratch".parse::<ImageRef>().unwrap(), ImageRef::Scratch);
        assert!("course.tar".parse::<ImageRef>().is_err());
        assert!("zip:course.tar".parse::<ImageRef>().is_err());
        assert!("oci:".parse::<ImageRef>().is_err());
        assert_eq!(
            "docker://localhost:5000/courses/intro:2026"
                .parse::<ImageRef>()
                .unwrap(),
            ImageRef::Registry {
                reference: "localhost:5000/courses/intro:2026".into()
            }
        );
        assert!("docker://Bad Name".parse::<ImageRef>().is_err());
    }
}
