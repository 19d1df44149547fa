//! The source stage: what a build starts from, recognised by its content
//! (never by its file name alone): a conda environment.yml, or a lock file.

use std::path::{Path, PathBuf};

use crate::{spec::MAX_SPEC_BYTES, BuildError, EnvSpec, ImageSettings, Lock};

/// The kinds of input trousse knows, supported or not yet.
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
}

impl SourceKind {
    /// What the kind is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::EnvironmentYml => "a conda environment.yml",
            SourceKind::RattlerLock => "a rattler/pixi lock file",
            SourceKind::CondaLock => "a conda-lock file",
            SourceKind::ExplicitList => "an explicit package list (@EXPLICIT)",
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
            .collect();
        let has = |k: &str| keys.contains(&k);
        if has("version") && has("environments") {
            SourceKind::RattlerLock
        } else if has("version") && has("metadata") && has("package") {
            SourceKind::CondaLock
        } else {
            SourceKind::EnvironmentYml
        }
    }
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
    },
}

impl Source {
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
        let size = std::fs::metadata(path)
            .map_err(BuildError::io("reading", path))?
            .len();
        let limit = MAX_SPEC_BYTES.max(crate::lock::MAX_LOCK_BYTES);
        if size > limit {
            return Err(BuildError::Unsupported(format!(
                "{} has {size} bytes; at most {limit} are read",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(BuildError::io("reading", path))?;
        match (SourceKind::detect(&text), environment) {
            (SourceKind::EnvironmentYml, None) => {
                // the text read above, not a second reading of the file
                Ok(Source::Spec(Box::new(EnvSpec::from_file_text(
                    &text, path, defaults,
                )?)))
            }
            (SourceKind::EnvironmentYml, Some(_)) => Err(BuildError::Usage(format!(
                "--environment picks an environment of a pixi lock; {} is an environment.yml",
                path.display()
            ))),
            (SourceKind::RattlerLock, environment) => Self::lock(&text, path, environment),
            (other, _) => Err(unsupported(path, other)),
        }
    }

    /// A lock, whose packages must come from the channels it declares.
    fn lock(text: &str, path: &Path, environment: Option<&str>) -> Result<Self, BuildError> {
        let environment = environment.unwrap_or(rattler_lock::DEFAULT_ENVIRONMENT_NAME);
        let lock = Lock::from_text_in(text, path, environment)?;
        lock.check_own_urls(path)?;
        Ok(Source::Lock {
            lock,
            path: path.to_path_buf(),
        })
    }

    /// Parses submitted text (the service): a spec or a rattler lock.
    pub fn from_text(
        text: &str,
        name: &Path,
        defaults: &ImageSettings,
    ) -> Result<Self, BuildError> {
        match SourceKind::detect(text) {
            SourceKind::EnvironmentYml => Ok(Source::Spec(Box::new(EnvSpec::from_yaml(
                text,
                name,
                Path::new("/nonexistent"),
                defaults,
            )?))),
            SourceKind::RattlerLock => Self::lock(text, name, None),
            other => Err(unsupported(name, other)),
        }
    }
}

fn unsupported(path: &Path, kind: SourceKind) -> BuildError {
    BuildError::Unsupported(format!(
        "{} is {}, which trousse does not read yet; give {} or {}",
        path.display(),
        kind.name(),
        SourceKind::EnvironmentYml.name(),
        SourceKind::RattlerLock.name(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_unsupported_kind_says_which_kinds_exist() {
        let e = Source::from_text(
            "version: 1\nmetadata: {}\npackage: []\n",
            Path::new("conda-lock.yml"),
            &ImageSettings::default(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("conda-lock file"), "{text}");
        assert!(text.contains("environment.yml"), "{text}");
        assert_eq!(e.exit_code(), 3);
    }
}
