//! The image settings: everything about an image that is not its package
//! list (platforms, base, prefix, user, environment, command, labels,
//! virtual packages), with their defaults. A spec's `trousse:` section sets
//! them, a lock file carries them, the image applies them.

use std::{collections::BTreeMap, str::FromStr};

use rattler_conda_types::{GenericVirtualPackage, PackageName, Subdir, Version};
use serde::{Deserialize, Serialize};

use crate::BuildError;
use trousse_registry_client::ImageRef;

/// The notebook user the image runs as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotebookUser {
    /// The user name written into `/etc/passwd`.
    #[serde(default = "NotebookUser::default_name")]
    pub name: String,
    /// The numeric user id.
    #[serde(default = "NotebookUser::default_uid")]
    pub uid: u32,
    /// The numeric group id.
    #[serde(default = "NotebookUser::default_gid")]
    pub gid: u32,
    /// The group name written into `/etc/group`.
    #[serde(default = "NotebookUser::default_group")]
    pub group: String,
    /// The home directory, also the working directory.
    #[serde(default)]
    pub home: Option<String>,
}

impl NotebookUser {
    fn default_name() -> String {
        "jovyan".into()
    }
    fn default_uid() -> u32 {
        1000
    }
    fn default_gid() -> u32 {
        100
    }
    fn default_group() -> String {
        "users".into()
    }

    /// The home directory (`/home/NAME` unless set).
    pub fn home(&self) -> String {
        self.home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", self.name))
    }
}

impl Default for NotebookUser {
    fn default() -> Self {
        Self {
            name: Self::default_name(),
            uid: Self::default_uid(),
            gid: Self::default_gid(),
            group: Self::default_group(),
            home: None,
        }
    }
}

/// Everything about the image that is not the package list.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSettings {
    /// The conda platforms to build for, one image manifest each.
    pub platforms: Vec<Subdir>,
    /// The image the environment is layered on.
    pub base: ImageRef,
    /// Where the environment lives inside the image.
    pub prefix: String,
    /// The notebook user.
    pub user: NotebookUser,
    /// Extra environment variables of the image.
    pub env: BTreeMap<String, String>,
    /// The command the image runs; chosen from the environment when absent.
    pub command: Option<Vec<String>>,
    /// What runs the command (a repository's `start` script); none by default.
    pub entrypoint: Option<Vec<String>>,
    /// Extra labels of the image.
    pub labels: BTreeMap<String, String>,
    /// Virtual packages the target provides, overriding the defaults by name.
    pub virtual_packages: Vec<GenericVirtualPackage>,
    /// Whether the image is for a JupyterHub: the single-user server is added
    /// to the solve when the spec lacks it (and the base provides none).
    pub jupyter: bool,
    /// The hub's major version, which the added `jupyterhub-singleuser` matches.
    pub hub_version: String,
}

impl ImageSettings {
    /// The repository's postBuild script this image runs at build time (its
    /// path in the repository, which is `/srv/repo` in the image), when the
    /// repository has one and it is allowed.
    pub fn post_build(&self) -> Option<&str> {
        self.labels.get(POST_BUILD_LABEL).map(String::as_str)
    }
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            platforms: vec![Subdir::Linux64],
            base: default_base(),
            prefix: DEFAULT_PREFIX.into(),
            user: NotebookUser::default(),
            env: BTreeMap::new(),
            command: None,
            entrypoint: None,
            labels: BTreeMap::new(),
            virtual_packages: Vec::new(),
            jupyter: false,
            hub_version: DEFAULT_HUB_VERSION.into(),
        }
    }
}

/// The label naming the `postBuild` script an image ran (its presence says
/// the image is not byte-reproducible).
pub const POST_BUILD_LABEL: &str = "io.trousse.post-build";

/// The JupyterHub major version images are made for unless a service says otherwise.
pub const DEFAULT_HUB_VERSION: &str = "5";

/// The label that carries `trousse: default_url:` (the hub opens it, e.g. a Voilà dashboard).
pub const DEFAULT_URL_LABEL: &str = "io.trousse.default-url";

/// The base image unless a spec, `--base` or `TROUSSE_DEFAULT_BASE` says otherwise:
/// Ubuntu 24.04, pinned by the digest of its multi-platform index (see docs/base-image.md).
pub const DEFAULT_BASE: &str = "docker://docker.io/library/ubuntu:noble-20250529@sha256:b59d21599a2b151e23eea5f6602f4af4d7d31c4e236d22bf0b62b86d2e386b8f";

/// The environment variable that replaces [`DEFAULT_BASE`] (a site's mirror of it, or `scratch`).
pub const DEFAULT_BASE_ENV: &str = "TROUSSE_DEFAULT_BASE";

/// [`DEFAULT_BASE`] as a reference.
pub fn default_base() -> ImageRef {
    ImageRef::from_str(DEFAULT_BASE).unwrap_or(ImageRef::Scratch)
}

/// The in-image prefix of the environment unless a spec says otherwise.
pub const DEFAULT_PREFIX: &str = "/opt/conda";

/// Parses a conda platform name such as `linux-64`.
pub fn parse_platform(name: &str) -> Result<Subdir, String> {
    let subdir = Subdir::from_str(name).map_err(|_| {
        format!("unknown platform '{name}': use a conda subdir such as linux-64 or linux-aarch64")
    })?;
    if !subdir.is_linux() {
        return Err(format!(
            "platform '{name}' cannot run in a Linux container: use linux-64, linux-aarch64 or another linux-* subdir"
        ));
    }
    Ok(subdir)
}

/// Parses `__name[=version[=build]]`.
pub fn parse_virtual_package(text: &str) -> Result<GenericVirtualPackage, String> {
    let mut parts = text.splitn(3, '=');
    let name = parts.next().unwrap_or_default();
    if !name.starts_with("__") {
        return Err(format!(
            "virtual package '{text}' must start with '__', e.g. __glibc=2.28 or __cuda=12.4"
        ));
    }
    let name = PackageName::from_str(name)
        .map_err(|e| format!("invalid virtual package '{text}': {e}"))?;
    let version = Version::from_str(parts.next().unwrap_or("0"))
        .map_err(|e| format!("invalid version in virtual package '{text}': {e}"))?;
    Ok(GenericVirtualPackage {
        name,
        version,
        build_string: rattler_conda_types::package::BuildString::new_unchecked(
            parts.next().unwrap_or("0"),
        ),
    })
}

/// Image settings as plain data: the key's canonical form, and how the
/// service stores the settings a build was resolved with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsRecord {
    /// Conda platforms, e.g. `linux-64`.
    pub platforms: Vec<String>,
    /// The base image reference.
    pub base: String,
    /// The in-image prefix.
    pub prefix: String,
    /// The notebook user.
    pub user: UserRecord,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// The command, when set.
    pub command: Option<Vec<String>>,
    /// The entrypoint, when set (absent from the key when not, as before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Virtual packages, `name=version=build`.
    pub virtual_packages: Vec<String>,
}

/// The notebook user as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Group name.
    pub group: String,
    /// Home directory.
    pub home: String,
}

impl From<&ImageSettings> for SettingsRecord {
    fn from(s: &ImageSettings) -> Self {
        Self {
            platforms: s.platforms.iter().map(ToString::to_string).collect(),
            base: s.base.to_string(),
            prefix: s.prefix.clone(),
            user: UserRecord {
                name: s.user.name.clone(),
                uid: s.user.uid,
                gid: s.user.gid,
                group: s.user.group.clone(),
                home: s.user.home(),
            },
            env: s.env.clone(),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            labels: s.labels.clone(),
            virtual_packages: s
                .virtual_packages
                .iter()
                .map(|v| {
                    format!(
                        "{}={}={}",
                        v.name.as_normalized(),
                        v.version,
                        v.build_string
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<SettingsRecord> for ImageSettings {
    type Error = BuildError;

    fn try_from(r: SettingsRecord) -> Result<Self, Self::Error> {
        let platforms = r
            .platforms
            .iter()
            .map(|p| {
                Subdir::from_str(p)
                    .map_err(|_| BuildError::Unsupported(format!("unknown platform '{p}'")))
            })
            .collect::<Result<Vec<Subdir>, _>>()?;
        let virtual_packages = r
            .virtual_packages
            .iter()
            .map(|v| parse_virtual_package(v).map_err(BuildError::Unsupported))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            platforms,
            base: ImageRef::from_str(&r.base)?,
            prefix: r.prefix,
            user: NotebookUser {
                name: r.user.name,
                uid: r.user.uid,
                gid: r.user.gid,
                group: r.user.group,
                home: Some(r.user.home),
            },
            env: r.env,
            command: r.command,
            entrypoint: r.entrypoint,
            labels: r.labels,
            virtual_packages,
            // what the hub needs is in the lock by now
            ..ImageSettings::default()
        })
    }
}
