//! The source stage: what a build starts from, recognised by its content
//! (never by its file name alone): a conda environment.yml, a rattler lock
//! (read as the canonical lock of its packages), or a conda-lock file or
//! explicit list (a partial lock, completed from the archives when resolved).

pub(crate) mod base;
pub mod repo;
pub mod spec;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    lockfile::conda_lock, lockfile::explicit, lockfile::partial::PartialLock,
    source::spec::MAX_SPEC_BYTES, BuildError, EnvSpec, ImageSettings, Lock,
};

/// The kinds of input trousse reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A conda `environment.yml`.
    EnvironmentYml,
    /// A rattler/pixi lock file (`version:` and `environments:`).
    RattlerLock,
    /// A conda-lock file (`conda-lock.yml`: `version: 1`, `metadata:`, `package:`).
    CondaLock,
    /// An explicit list (`@EXPLICIT`, from `conda list --explicit`).
    ExplicitList,
    /// A pip requirements file: PyPI packages over conda's Python and pip.
    Requirements,
}

impl SourceKind {
    /// What the kind is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::EnvironmentYml => "a conda environment.yml",
            SourceKind::RattlerLock => "a rattler/pixi lock file",
            SourceKind::CondaLock => "a conda-lock file",
            SourceKind::ExplicitList => "an explicit package list (@EXPLICIT)",
            SourceKind::Requirements => "a pip requirements file",
        }
    }

    /// Recognises a kind from a file's text.
    pub fn detect(text: &str) -> Self {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        if first == "@EXPLICIT" {
            return SourceKind::ExplicitList;
        }
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with([' ', '\t', '-', '#']))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim()))
            .filter(|k| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .collect();
        let has = |k: &str| keys.contains(&k);
        if has("version") && has("environments") {
            SourceKind::RattlerLock
        } else if has("version") && has("metadata") && has("package") {
            SourceKind::CondaLock
        } else if keys.is_empty() && !first.is_empty() && !first.starts_with('-')
            || is_option(first)
        {
            // a YAML spec has top-level keys; a requirements file has none
            SourceKind::Requirements
        } else {
            SourceKind::EnvironmentYml
        }
    }
}

/// What a text is when it is a format trousse does not build (a TOML
/// project file, a JSON document), said by name with what to do instead;
/// `None` for everything else. Without this a `pyproject.toml` or a JSON
/// conda-lock file would be read as a requirements file and fail on `{`.
pub fn unsupported_format(text: &str) -> Option<String> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    if first.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let has = |k: &str| value.get(k).is_some();
        let what = if has("metadata") && has("package") {
            "a conda-lock file in JSON: trousse reads conda-lock's YAML form \
             (conda-lock.yml, written by `conda-lock lock`), or an explicit list \
             (`conda-lock render --kind explicit`)"
        } else {
            "a JSON document: trousse builds an environment.yml, a requirements.txt, \
             a pixi/rattler lock, a conda-lock.yml or an explicit list"
        };
        return Some(format!("this is {what}"));
    }
    let toml_table = first.starts_with('[')
        && first.ends_with(']')
        && first[1..first.len() - 1]
            .chars()
            .all(|c| c.is_alphanumeric() || "._-\"' ".contains(c));
    toml_table.then(|| {
        "this is a TOML file (a pyproject.toml or a pixi.toml): trousse does not build a \
         Python project; list its dependencies in an environment.yml (its pip section) or a \
         requirements.txt, or build the pixi.lock"
            .to_string()
    })
}

/// Refuses a format trousse does not build, naming the file.
fn refuse_unsupported(text: &str, name: &Path) -> Result<(), BuildError> {
    match unsupported_format(text) {
        Some(what) => Err(BuildError::Unsupported(format!(
            "{}: {what}",
            name.display()
        ))),
        None => Ok(()),
    }
}

/// Whether a line is a pip option (`-r file`, `--index-url …`), not a YAML list item.
fn is_option(line: &str) -> bool {
    ["-r ", "-c ", "-i ", "-f ", "--"]
        .iter()
        .any(|o| line.starts_with(o))
}

/// The Python of a requirements file's environment when neither `--python` nor `runtime.txt` names one.
pub const DEFAULT_PYTHON: &str = "3.12";

/// What a build is asked to start from, before anything is read: the one
/// way the command line, the service's API, its push webhook and BinderHub's
/// build API turn what they were given into a [`Source`].
#[derive(Debug, Clone)]
pub enum Input {
    /// A file: an environment.yml, a requirements file or a lock.
    File {
        /// The file.
        path: PathBuf,
        /// The environment of a pixi lock to build.
        environment: Option<String>,
        /// The Python of a requirements file.
        python: Option<String>,
    },
    /// A spec sent as text (an environment.yml or a requirements.txt over
    /// the default Python), named `name` in messages; credentials in its
    /// URLs are refused.
    Spec {
        /// Its text.
        text: String,
        /// How messages name it.
        name: PathBuf,
    },
    /// A lock sent as text, named `name` in messages: a rattler lock kept as
    /// it was sent (with the image settings its comment carries), a
    /// conda-lock file or an explicit list read as a partial lock.
    Lock {
        /// Its text.
        text: String,
        /// How messages name it.
        name: PathBuf,
    },
    /// A git repository at a ref: fetched into the mirrors, read at its commit.
    Repository(repo::RepoRequest),
}

impl Input {
    /// Reads the input (a repository is fetched into the mirrors under
    /// `cache_dir`); what it leaves out is taken from `defaults`.
    pub async fn into_source(
        self,
        defaults: &ImageSettings,
        cache_dir: &Path,
    ) -> Result<Source, BuildError> {
        match self {
            Input::File {
                path,
                environment,
                python,
            } => Source::read_with(&path, defaults, environment.as_deref(), python.as_deref()),
            Input::Spec { text, name } => {
                crate::net::credentials::refuse(&text, &name)?;
                let spec = spec_text(&text, &name, SourceKind::detect(&text), defaults)?;
                Ok(Source::Spec(Box::new(spec)))
            }
            Input::Lock { text, name } => {
                if SourceKind::detect(&text) != SourceKind::RattlerLock {
                    return Source::from_text(&text, &name, defaults);
                }
                crate::net::credentials::refuse(&text, &name)?;
                let settings = crate::lockfile::settings_of(&text, &name)?;
                Ok(Source::Lock {
                    lock: Lock::from_text(&text, &name)?,
                    path: name,
                    settings: settings.map(Box::new),
                })
            }
            Input::Repository(request) => request.read(cache_dir).await?.source(defaults),
        }
    }
}

/// A spec sent as text, without a file beside it: a requirements file over
/// the default Python, anything else read as an environment.yml.
fn spec_text(
    text: &str,
    name: &Path,
    kind: SourceKind,
    defaults: &ImageSettings,
) -> Result<EnvSpec, BuildError> {
    Ok(match kind {
        SourceKind::Requirements => EnvSpec::from_requirements(
            text,
            name,
            DEFAULT_PYTHON,
            defaults,
            &crate::pypi::requirements::NoFiles,
        ),
        _ => EnvSpec::from_yaml(text, name, Path::new("/nonexistent"), defaults),
    }?)
}

/// What a build starts from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A spec, solved into a lock.
    Spec(Box<EnvSpec>),
    /// A lock, built as it is; `path` names it in messages.
    Lock {
        /// The lock.
        lock: Lock,
        /// Where it was read from.
        path: PathBuf,
        /// The image settings the lock file carries (its spec's), if any.
        settings: Option<Box<ImageSettings>>,
    },
    /// A conda-lock file or an explicit list: packages located and checksummed,
    /// their records completed from the archives when the request is resolved.
    Partial(Box<PartialLock>),
    /// A git repository: its environment, solved as a spec, and its files,
    /// layered above the environment.
    Repository {
        /// The repository's environment (its environment.yml, requirements.txt or repo2docker's default).
        spec: Box<EnvSpec>,
        /// Its files.
        content: Arc<repo::RepoContent>,
        /// System packages its `apt.txt` asks for: refused, naming those the
        /// channels have conda packages of.
        apt: Vec<String>,
    },
}

impl Source {
    /// A repository's content, for a repository.
    pub fn content(&self) -> Option<&repo::RepoContent> {
        match self {
            Source::Repository { content, .. } => Some(content),
            Source::Spec(_) | Source::Lock { .. } | Source::Partial(_) => None,
        }
    }

    /// The spec to solve, for a spec or a repository's environment.
    pub fn spec_mut(&mut self) -> Option<&mut EnvSpec> {
        match self {
            Source::Spec(spec) | Source::Repository { spec, .. } => Some(spec),
            Source::Lock { .. } | Source::Partial(_) => None,
        }
    }

    /// Reads a source file; what a spec leaves out is taken from `defaults`.
    pub fn read(path: &Path, defaults: &ImageSettings) -> Result<Self, BuildError> {
        Self::read_environment(path, defaults, None)
    }

    /// Reads a source file, taking environment `environment` of a pixi lock
    /// (`default` when `None`).
    pub fn read_environment(
        path: &Path,
        defaults: &ImageSettings,
        environment: Option<&str>,
    ) -> Result<Self, BuildError> {
        Self::read_with(path, defaults, environment, None)
    }

    /// Reads a source file; `python` (`X.Y`) is the Python of a requirements file's environment.
    pub fn read_with(
        path: &Path,
        defaults: &ImageSettings,
        environment: Option<&str>,
        python: Option<&str>,
    ) -> Result<Self, BuildError> {
        let size = std::fs::metadata(path)
            .map_err(BuildError::io("reading", path))?
            .len();
        let limit = MAX_SPEC_BYTES.max(crate::lockfile::MAX_LOCK_BYTES);
        if size > limit {
            return Err(BuildError::Unsupported(format!(
                "{} has {size} bytes; at most {limit} are read",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(BuildError::io("reading", path))?;
        // credentials in its URLs are kept in memory, never in what is built from it
        let text = crate::net::credentials::take(&text);
        refuse_unsupported(&text, path)?;
        let kind = SourceKind::detect(&text);
        if python.is_some() && kind != SourceKind::Requirements {
            return Err(BuildError::Usage(format!(
                "--python sets the Python of a requirements file; {} is {}",
                path.display(),
                kind.name()
            )));
        }
        match (kind, environment) {
            (SourceKind::EnvironmentYml, None) => {
                // the text read above, not a second reading of the file
                Ok(Source::Spec(Box::new(EnvSpec::from_file_text(
                    &text, path, defaults,
                )?)))
            }
            (SourceKind::RattlerLock, environment) => Self::lock(&text, path, environment),
            (SourceKind::Requirements, None) => {
                let dir = std::path::absolute(path)
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or_else(|| PathBuf::from("/"));
                let files = crate::pypi::requirements::DirFiles(dir);
                let python = python.unwrap_or(DEFAULT_PYTHON);
                let spec = EnvSpec::from_requirements(&text, path, python, defaults, &files)?;
                Ok(Source::Spec(Box::new(spec)))
            }
            (other, None) => Self::partial(&text, path, other),
            (other, Some(_)) => Err(BuildError::Usage(format!(
                "--environment picks an environment of a pixi lock; {} is {}",
                path.display(),
                other.name()
            ))),
        }
    }

    /// A lock, read as the canonical lock of its packages (`Lock::canonical`),
    /// whose packages must come from the channels it declares.
    fn lock(text: &str, path: &Path, environment: Option<&str>) -> Result<Self, BuildError> {
        let environment = environment.unwrap_or(rattler_lock::DEFAULT_ENVIRONMENT_NAME);
        let lock = Lock::canonical(text, path, environment)?;
        lock.check_own_urls(path)?;
        Ok(Source::Lock {
            settings: crate::lockfile::settings_of(text, path)?.map(Box::new),
            lock,
            path: path.to_path_buf(),
        })
    }

    /// A conda-lock file or an explicit list, read and checked; nothing fetched.
    fn partial(text: &str, path: &Path, kind: SourceKind) -> Result<Self, BuildError> {
        let partial = match kind {
            SourceKind::CondaLock => conda_lock::parse(text, path)?,
            SourceKind::ExplicitList => explicit::parse(text, path)?,
            SourceKind::EnvironmentYml | SourceKind::RattlerLock | SourceKind::Requirements => {
                return Err(BuildError::Internal(format!(
                    "{} is not a partial lock",
                    kind.name()
                )))
            }
        };
        Ok(Source::Partial(Box::new(partial)))
    }

    /// Parses a text without a file (a lock the service was sent that is not
    /// a rattler lock, the fuzz targets): a spec or any lock. Packages of a
    /// partial lock are fetched when it is resolved: check its URLs against
    /// the allowed channels first (`PartialLock::check_urls`). A URL with
    /// credentials is refused: the service takes none from a request.
    pub fn from_text(
        text: &str,
        name: &Path,
        defaults: &ImageSettings,
    ) -> Result<Self, BuildError> {
        crate::net::credentials::refuse(text, name)?;
        refuse_unsupported(text, name)?;
        match SourceKind::detect(text) {
            kind @ (SourceKind::EnvironmentYml | SourceKind::Requirements) => Ok(Source::Spec(
                Box::new(spec_text(text, name, kind, defaults)?),
            )),
            SourceKind::RattlerLock => Self::lock(text, name, None),
            other => Self::partial(text, name, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_files_and_json_are_refused_by_name() {
        let pyproject = "# a project\n[project]\nname = \"x\"\ndependencies = [\"numpy\"]\n";
        assert!(unsupported_format(pyproject)
            .unwrap()
            .contains("pyproject.toml"));
        let json_lock = r#"{"version": 1, "metadata": {}, "package": []}"#;
        assert!(unsupported_format(json_lock)
            .unwrap()
            .contains("conda-lock file in JSON"));
        assert!(unsupported_format("numpy\n[extra]\n").is_none());
        assert!(unsupported_format("name: x\ndependencies: [a]\n").is_none());
    }

    #[test]
    fn kinds_are_recognised_by_content() {
        let cases = [
            (
                "name: x\nchannels: [conda-forge]\ndependencies: [python]\n",
                SourceKind::EnvironmentYml,
            ),
            (
                "version: 6\nenvironments:\n  default: {}\npackages: []\n",
                SourceKind::RattlerLock,
            ),
            (
                "version: 1\nmetadata:\n  platforms: [linux-64]\npackage: []\n",
                SourceKind::CondaLock,
            ),
            (
                "# platform: linux-64\n@EXPLICIT\nhttps://x/linux-64/a-1-0.conda#abc\n",
                SourceKind::ExplicitList,
            ),
            ("numpy>=1.26\nnbgitpuller\n", SourceKind::Requirements),
            ("# pins\n-r base.txt\nattrs\n", SourceKind::Requirements),
        ];
        for (text, kind) in cases {
            assert_eq!(SourceKind::detect(text), kind, "{text}");
        }
        for file in ["rattler-numpy-lock.yml", "rattler-python-lock.yml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/conda-data/locks")
                .join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(SourceKind::detect(&text), SourceKind::RattlerLock, "{file}");
        }
    }

    #[test]
    fn conda_lock_files_and_explicit_lists_are_partial_locks() {
        let explicit = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conda-data/locks/repo2docker-base-py3.12-linux-64.lock");
        let Source::Partial(partial) = Source::read(&explicit, &ImageSettings::default()).unwrap()
        else {
            panic!("not a partial lock")
        };
        assert!(partial.len() > 100, "{} packages", partial.len());
        let e = Source::from_text(
            "version: 1\nmetadata: {}\npackage: []\n",
            Path::new("conda-lock.yml"),
            &ImageSettings::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("conda-lock.yml"), "{e}");
        assert_eq!(e.exit_code(), 3);
        let e = Source::read_environment(&explicit, &ImageSettings::default(), Some("dev"))
            .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }

    #[test]
    fn a_rattler_lock_is_read_canonically_and_canonical_text_is_kept() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conda-data/locks/rattler-python-lock.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let once = Lock::canonical(&text, &path, "default").unwrap();
        let twice = Lock::canonical(&once.text, &path, "default").unwrap();
        assert_eq!(once.text, twice.text, "rendering is idempotent");
        let read = Lock::from_text(&text, &path).unwrap();
        assert_eq!(read.platforms.len(), once.platforms.len());
        for (a, b) in read.platforms.iter().zip(&once.platforms) {
            assert_eq!(a.records.len(), b.records.len());
            assert!(b.virtual_packages.is_empty());
        }
        assert!(!once.text.contains("virtual-packages"), "{}", once.text);
    }
}
