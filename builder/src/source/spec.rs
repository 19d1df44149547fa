//! The spec stage: a conda `environment.yml`, plus trousse's optional `trousse:`
//! section of image settings, parsed and checked.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use rattler_conda_types::{Channel, MatchSpec, ParseStrictness};
use serde::Deserialize;

pub use crate::error::spec::SpecError;
use crate::{
    error::clip,
    net::channel_url::{resolve_channel, ChannelConfig},
    pypi::{
        requirements::{parse_requirements, DirFiles, NoFiles, RequirementFiles, RequirementLine},
        PypiError, PypiRequirements,
    },
    settings::{
        parse_platform, parse_virtual_package, ImageSettings, NotebookUser, DEFAULT_URL_LABEL,
    },
};

/// The largest spec file read, in bytes: a conda environment.yml is a few
/// kilobytes, and parsing a huge one costs memory out of all proportion.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// A parsed, checked environment spec.
#[derive(Debug, Clone)]
pub struct EnvSpec {
    /// The file it was read from.
    pub path: PathBuf,
    /// The environment's name, if the file gives one.
    pub name: Option<String>,
    /// The channels to solve against, in priority order.
    pub channels: Vec<Channel>,
    /// The requested packages.
    pub dependencies: Vec<MatchSpec>,
    /// The image settings.
    pub image: ImageSettings,
    /// What was ignored, for the user to see (e.g. a misspelled key).
    pub warnings: Vec<String>,
    /// The PyPI requirements of its `pip:` list (or of a requirements file).
    pub pip: Option<PypiRequirements>,
}

#[derive(Deserialize)]
struct RawSpec {
    name: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    dependencies: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    trousse: Option<RawImageSettings>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawImageSettings {
    #[serde(default)]
    platforms: Vec<String>,
    base: Option<String>,
    prefix: Option<String>,
    user: Option<NotebookUser>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    virtual_packages: Vec<String>,
    jupyter: Option<bool>,
    default_url: Option<String>,
}

/// Top-level keys conda itself knows; anything else is ignored with a warning.
const CONDA_KEYS: &[&str] = &["prefix", "channel_priority", "category", "description"];

impl EnvSpec {
    /// Reads and checks a spec file; what its `trousse:` section leaves out is taken from `defaults`.
    pub fn from_path(path: &Path, defaults: &ImageSettings) -> Result<Self, SpecError> {
        let read_err = |message: String| SpecError {
            file: path.to_path_buf(),
            line: None,
            field: None,
            message,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| read_err(format!("cannot read the spec: {e}")))?
            .len();
        if size > MAX_SPEC_BYTES {
            return Err(read_err(format!(
                "the spec has {size} bytes; at most {MAX_SPEC_BYTES} are read (an environment.yml is a few kilobytes)"
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| read_err(format!("cannot read the spec: {e}")))?;
        Self::from_file_text(&text, path, defaults)
    }

    /// Parses the text read from the spec file `path`; relative channel paths
    /// are resolved against its directory.
    pub fn from_file_text(
        text: &str,
        path: &Path,
        defaults: &ImageSettings,
    ) -> Result<Self, SpecError> {
        if text.len() as u64 > MAX_SPEC_BYTES {
            return Err(SpecError {
                file: path.to_path_buf(),
                line: None,
                field: None,
                message: format!(
                    "the spec has {} bytes; at most {MAX_SPEC_BYTES} are read (an environment.yml is a few kilobytes)",
                    text.len()
                ),
            });
        }
        let base_dir = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/"));
        let files = DirFiles(base_dir.clone());
        Self::from_yaml_with(text, path, &base_dir, defaults, &files)
    }

    /// Parses spec text; relative channel paths are resolved against
    /// `base_dir`; a `pip:` list may name no other file.
    pub fn from_yaml(
        text: &str,
        path: &Path,
        base_dir: &Path,
        defaults: &ImageSettings,
    ) -> Result<Self, SpecError> {
        Self::from_yaml_with(text, path, base_dir, defaults, &NoFiles)
    }

    /// The spec of a pip requirements file: conda's Python `python` (`X.Y`)
    /// and pip from conda-forge, and the file's requirements from PyPI.
    pub fn from_requirements(
        text: &str,
        path: &Path,
        python: &str,
        defaults: &ImageSettings,
        files: &dyn RequirementFiles,
    ) -> Result<Self, SpecError> {
        let err = |line: Option<usize>, message: String| SpecError {
            file: path.to_path_buf(),
            line,
            field: None,
            message,
        };
        let valid =
            python.split('.').count() == 2 && python.split('.').all(|p| p.parse::<u32>().is_ok());
        if !valid {
            return Err(err(
                None,
                format!(
                    "the Python version '{}' must be X.Y, e.g. 3.12",
                    clip(python, 20)
                ),
            ));
        }
        let yaml = format!("channels: [conda-forge]\ndependencies:\n- python={python}.*\n- pip\n");
        let mut spec = Self::from_yaml(&yaml, path, Path::new("/"), defaults)?;
        let lines = crate::pypi::requirements::lines_of(text, path);
        if lines.is_empty() {
            return Err(err(
                None,
                "the requirements file lists no requirements".into(),
            ));
        }
        spec.pip = Some(parse_requirements(&lines, files).map_err(|e| match e {
            PypiError::Requirement {
                file,
                line,
                message,
            } => SpecError {
                file,
                line,
                field: None,
                message,
            },
            other => err(None, other.to_string()),
        })?);
        Ok(spec)
    }

    /// Parses spec text; `-r` files of a `pip:` list are read through `files`.
    pub fn from_yaml_with(
        text: &str,
        path: &Path,
        base_dir: &Path,
        defaults: &ImageSettings,
        files: &dyn RequirementFiles,
    ) -> Result<Self, SpecError> {
        let at = SpecText { text, path };
        if let Some(line) = crate::guard::yaml::too_deep(text) {
            return Err(at.err(Some(line), crate::guard::yaml::refusal(line)));
        }
        let raw: RawSpec = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            // serde names the Rust type it wanted: say what the file should be
            let message = e.to_string().replace(
                "struct RawSpec",
                "an environment.yml mapping (name, channels, dependencies)",
            );
            at.err(line, format!("invalid YAML: {message}"))
        })?;
        let warnings = at.unknown_keys(&raw);
        let channels = at.channels(&raw, base_dir)?;
        let (dependencies, pip_lines) = at.dependencies(&raw)?;
        let pip = at.pip(&pip_lines, files)?;
        let mut image = parse_image_settings(raw.trousse.unwrap_or_default(), text, defaults)
            .map_err(|(line, m)| at.err(line, m))?;
        for (key, value) in raw.variables {
            image.env.entry(key).or_insert(value);
        }
        Ok(Self {
            path: path.to_path_buf(),
            name: raw.name,
            channels,
            dependencies,
            image,
            warnings,
            pip,
        })
    }
}

/// A spec's text and file, to locate what is wrong in it.
struct SpecText<'a> {
    text: &'a str,
    path: &'a Path,
}

impl SpecText<'_> {
    fn err(&self, line: Option<usize>, message: String) -> SpecError {
        SpecError {
            file: self.path.to_path_buf(),
            line,
            field: None,
            message,
        }
    }

    fn field_err(&self, line: Option<usize>, field: String, message: String) -> SpecError {
        SpecError {
            field: Some(field),
            ..self.err(line, message)
        }
    }

    /// A warning for each top-level key neither conda nor trousse knows.
    fn unknown_keys(&self, raw: &RawSpec) -> Vec<String> {
        raw.other
            .keys()
            .filter(|key| !CONDA_KEYS.contains(&key.as_str()))
            .map(|key| {
                let line = line_of(self.text, &format!("{key}:"));
                let at = line.map(|l| format!(":{l}")).unwrap_or_default();
                format!(
                    "{}{at}: unknown top-level key '{}' is ignored{}",
                    self.path.display(),
                    clip(key, 80),
                    did_you_mean(key)
                )
            })
            .collect()
    }

    fn channels(&self, raw: &RawSpec, base_dir: &Path) -> Result<Vec<Channel>, SpecError> {
        let channel_config = ChannelConfig::default_with_root_dir(base_dir.to_path_buf());
        let mut channels = Vec::new();
        for name in &raw.channels {
            let line = line_of(self.text, name);
            channels.extend(resolve_channel(name, &channel_config).map_err(|m| self.err(line, m))?);
        }
        Ok(channels)
    }

    /// The conda dependencies, and the lines of the `pip:` list.
    fn dependencies(
        &self,
        raw: &RawSpec,
    ) -> Result<(Vec<MatchSpec>, Vec<RequirementLine>), SpecError> {
        let mut pip = Vec::new();
        let mut dependencies = Vec::new();
        for (i, value) in raw.dependencies.iter().enumerate() {
            match value {
                serde_yaml_ng::Value::Mapping(m) if m.contains_key("pip") => {
                    pip.extend(self.pip_lines(i, m)?);
                }
                value => dependencies.push(self.dependency(i, value)?),
            }
        }
        if dependencies.is_empty() {
            let hint = raw
                .other
                .keys()
                .map(|k| did_you_mean(k))
                .find(|h| h.contains("'dependencies'"))
                .unwrap_or_default();
            return Err(self.err(
                line_of(self.text, "dependencies"),
                format!("the spec lists no dependencies{hint}"),
            ));
        }
        Ok((dependencies, pip))
    }

    /// The lines of a `pip:` list: strings, each a requirements-file line.
    fn pip_lines(
        &self,
        i: usize,
        mapping: &serde_yaml_ng::Mapping,
    ) -> Result<Vec<RequirementLine>, SpecError> {
        let field = format!("dependencies[{i}].pip");
        let line = line_of(self.text, "pip:");
        let items = match mapping.get("pip") {
            Some(serde_yaml_ng::Value::Sequence(items)) if mapping.len() == 1 => items,
            _ => {
                let message = "a pip entry is 'pip:' followed by a list of requirements, e.g. '- pip: [nbgitpuller]'".to_string();
                return Err(self.field_err(line, field, message));
            }
        };
        items
            .iter()
            .map(|item| match item {
                serde_yaml_ng::Value::String(text) => Ok(RequirementLine {
                    text: text.trim().to_string(),
                    file: self.path.to_path_buf(),
                    line: line_of(self.text, text).or(line),
                }),
                other => Err(self.field_err(
                    line,
                    field.clone(),
                    format!(
                        "pip requirements are strings like 'nbgitpuller>=1.2', found {}",
                        serde_yaml_ng::to_string(other).unwrap_or_default().trim()
                    ),
                )),
            })
            .collect()
    }

    /// The requirements of the `pip:` lines, if there are any.
    fn pip(
        &self,
        lines: &[RequirementLine],
        files: &dyn RequirementFiles,
    ) -> Result<Option<PypiRequirements>, SpecError> {
        if lines.is_empty() {
            return Ok(None);
        }
        match parse_requirements(lines, files) {
            Ok(requirements) => Ok(Some(requirements)),
            Err(PypiError::Requirement {
                file,
                line,
                message,
            }) => Err(SpecError {
                file,
                line,
                field: Some("pip".into()),
                message,
            }),
            Err(other) => Err(self.err(line_of(self.text, "pip:"), other.to_string())),
        }
    }

    fn dependency(&self, i: usize, value: &serde_yaml_ng::Value) -> Result<MatchSpec, SpecError> {
        match value {
            serde_yaml_ng::Value::String(s) => {
                let field = format!("dependencies[{i}]");
                let line = line_of(self.text, s);
                let spec = parse_match_spec(s).map_err(|e| {
                    let message = format!("invalid package spec '{}': {e}", clip(s, 200));
                    self.field_err(line, field.clone(), message)
                })?;
                if spec.name.as_exact().is_none() {
                    let message = format!(
                        "package spec '{}' must name one package, not a pattern",
                        clip(s, 200)
                    );
                    return Err(self.field_err(line, field, message));
                }
                Ok(spec)
            }
            other => Err(self.err(
                None,
                format!(
                    "dependency entries must be package specs like 'numpy>=1.26', found {}",
                    serde_yaml_ng::to_string(other).unwrap_or_default().trim()
                ),
            )),
        }
    }
}

fn parse_image_settings(
    raw: RawImageSettings,
    text: &str,
    defaults: &ImageSettings,
) -> Result<ImageSettings, (Option<usize>, String)> {
    let mut settings = defaults.clone();
    if !raw.platforms.is_empty() {
        settings.platforms = raw
            .platforms
            .iter()
            .map(|p| parse_platform(p).map_err(|m| (line_of(text, p), m)))
            .collect::<Result<_, _>>()?;
    }
    if let Some(base) = raw.base {
        settings.base = base
            .parse()
            .map_err(|e| (line_of(text, &base), format!("invalid base image: {e}")))?;
    }
    if let Some(prefix) = raw.prefix {
        settings.prefix = checked_prefix(&prefix).map_err(|m| (line_of(text, &prefix), m))?;
    }
    if let Some(user) = raw.user {
        check_user(&user).map_err(|m| (line_of(text, "user"), m))?;
        settings.user = user;
    }
    settings.env.extend(raw.env);
    if raw.command.is_some() {
        settings.command = raw.command;
    }
    settings.labels.extend(raw.labels);
    if let Some(jupyter) = raw.jupyter {
        settings.jupyter = jupyter;
    }
    if let Some(url) = raw.default_url {
        check_default_url(&url).map_err(|m| (line_of(text, "default_url"), m))?;
        settings.labels.insert(DEFAULT_URL_LABEL.into(), url);
    }
    for v in &raw.virtual_packages {
        let package = parse_virtual_package(v).map_err(|m| (line_of(text, v), m))?;
        settings.virtual_packages.retain(|p| p.name != package.name);
        settings.virtual_packages.push(package);
    }
    Ok(settings)
}

/// An image prefix: absolute and normalised, without its trailing slash.
fn checked_prefix(prefix: &str) -> Result<String, String> {
    if !is_image_path(prefix) {
        return Err(format!(
            "the prefix '{}' must be an absolute, normalised path such as /opt/conda",
            clip(prefix, 200)
        ));
    }
    Ok(prefix.trim_end_matches('/').to_string())
}

/// A `default_url`: a path on the server, without spaces, at most 1 KiB.
fn check_default_url(url: &str) -> Result<(), String> {
    if !url.starts_with('/') || url.contains(char::is_whitespace) || url.len() > 1024 {
        return Err(format!(
            "default_url '{}' must be a path on the server, such as /voila/render/app.ipynb",
            clip(url, 100)
        ));
    }
    Ok(())
}

/// The keys an environment.yml may have, conda's and trousse's.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "channels",
    "dependencies",
    "variables",
    "trousse",
    "prefix",
    "channel_priority",
    "category",
    "description",
];

/// ` (did you mean 'KEY'?)` for a key close to a known one, else nothing.
fn did_you_mean(key: &str) -> String {
    KNOWN_KEYS
        .iter()
        .map(|k| (strsim::levenshtein(key, k), k))
        .filter(|(d, k)| *d > 0 && *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

/// Whether `path` is absolute and normalised (no `.`, `..` or empty
/// components), short, and free of control characters: a path in the image.
fn is_image_path(path: &str) -> bool {
    path.len() >= 2
        && path.len() <= 200
        && path.starts_with('/')
        && !path.chars().any(char::is_control)
        && path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The notebook user's names go into `/etc/passwd` and `/etc/group`: POSIX
/// portable names only, and a home that is an absolute, normalised path.
fn check_user(user: &NotebookUser) -> Result<(), String> {
    let portable = |name: &str| {
        !name.is_empty()
            && name.len() <= 32
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    for (what, name) in [("user name", &user.name), ("group", &user.group)] {
        if !portable(name) {
            return Err(format!(
                "the {what} '{}' must be 1 to 32 of a-z, A-Z, 0-9, '.', '_', '-'",
                clip(name, 80)
            ));
        }
    }
    if !is_image_path(&user.home()) {
        return Err(format!(
            "the home '{}' must be an absolute, normalised path such as /home/jovyan",
            clip(&user.home(), 200)
        ));
    }
    Ok(())
}

/// The most digits a build number may have: rattler parses it as a u64 and
/// panics on overflow, so longer ones are refused before it sees them.
const MAX_BUILD_NUMBER_DIGITS: usize = 18;

/// Parses one dependency as conda does, refusing what would panic rattler's parser.
pub fn parse_match_spec(text: &str) -> Result<MatchSpec, String> {
    if let Some((_, rest)) = text.split_once("build_number") {
        let value = rest.split([',', ']']).next().unwrap_or_default();
        let longest = value
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest > MAX_BUILD_NUMBER_DIGITS {
            return Err(format!(
                "build_number has a {longest}-digit number; at most {MAX_BUILD_NUMBER_DIGITS} digits"
            ));
        }
    }
    match std::panic::catch_unwind(|| MatchSpec::from_str(text, ParseStrictness::Lenient)) {
        Ok(Ok(spec)) => Ok(spec),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("it cannot be parsed (a value in it is out of range)".into()),
    }
}

/// The 1-based line of the first line that mentions `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{default_base, DEFAULT_BASE};
    use rattler_conda_types::Subdir;
    use trousse_registry_client::ImageRef;

    fn parse(text: &str) -> Result<EnvSpec, SpecError> {
        EnvSpec::from_yaml(
            text,
            Path::new("course.yml"),
            Path::new("/"),
            &ImageSettings::default(),
        )
    }

    #[test]
    fn the_default_base_is_pinned_by_digest() {
        let ImageRef::Registry { reference } = default_base() else {
            panic!("{DEFAULT_BASE} is not a registry reference");
        };
        assert!(reference.contains("@sha256:"), "{reference}");
    }

    #[test]
    fn every_prebuilt_stack_parses_and_pins_its_base() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../env-specs");
        let mut count = 0;
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let spec = EnvSpec::from_path(&path, &ImageSettings::default()).unwrap();
            assert_eq!(spec.image.base, default_base(), "{}", path.display());
            count += 1;
        }
        assert!(count >= 2);
    }

    #[test]
    fn reads_a_plain_environment_yml() {
        let spec = parse(
            "name: intro\nchannels:\n  - conda-forge\n  - nodefaults\ndependencies:\n  - python=3.12\n  - numpy >=1.26,<2\n  - conda-forge::matplotlib-base\n  - \"scipy[version='>=1.11']\"\n",
        )
        .unwrap();
        assert_eq!(spec.name.as_deref(), Some("intro"));
        assert_eq!(spec.channels.len(), 1);
        assert_eq!(spec.dependencies.len(), 4);
        assert_eq!(spec.image, ImageSettings::default());
    }

    #[test]
    fn reads_image_settings() {
        let spec = parse(
            "dependencies: [python]\nvariables: {COURSE: intro}\ntrousse:\n  platforms: [linux-64, linux-aarch64]\n  prefix: /srv/env/\n  user: {name: student, uid: 1001}\n  virtual_packages: ['__cuda=12.4']\n",
        )
        .unwrap();
        assert_eq!(
            spec.image.platforms,
            vec![Subdir::Linux64, Subdir::LinuxAarch64]
        );
        assert_eq!(spec.image.prefix, "/srv/env");
        assert_eq!(spec.image.user.name, "student");
        assert_eq!(spec.image.user.gid, 100);
        assert_eq!(spec.image.user.home(), "/home/student");
        assert_eq!(spec.image.env["COURSE"], "intro");
        assert_eq!(
            spec.image.virtual_packages[0].name.as_normalized(),
            "__cuda"
        );
    }

    #[test]
    fn locates_errors() {
        let e = parse("dependencies:\n  - python\n  - numpy>>=1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("course.yml:3: "), "{e}");

        let spec =
            parse("dependencies:\n  - python\n  - pip:\n    - requests>=2\n    - --pre\n").unwrap();
        let pip = spec.pip.unwrap();
        assert_eq!(pip.requirements[0].name.to_string(), "requests");
        assert!(pip.pre);
        let e = parse("dependencies:\n  - python\n  - pip:\n    - -e .\n").unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("editable"), "{e}");
        let e = parse("dependencies:\n  - python\n  - pip:\n    - -r more.txt\n").unwrap_err();
        assert!(e.message.contains("more.txt"), "{e}");

        let e = parse("dependencies:\n  - python\n  bad: [\n").unwrap_err();
        assert!(e.line.is_some());
        assert!(e.message.contains("invalid YAML"));

        let e = parse("dependencies: [python]\ntrousse:\n  platform: linux-64\n").unwrap_err();
        assert!(e.message.contains("platform"), "{e}");

        let e = parse("dependencies: [python]\ntrousse:\n  platforms: [win-64]\n").unwrap_err();
        assert_eq!(e.line, Some(3));

        assert!(parse("name: empty\n")
            .unwrap_err()
            .message
            .contains("no dependencies"));
        assert!(parse("channels: [./nowhere]\ndependencies: [python]\n")
            .unwrap_err()
            .message
            .contains("does not exist"));
    }

    #[test]
    fn a_misspelled_key_is_named_with_what_was_meant() {
        let e = parse("name: x\ndependecies: [python]\n").unwrap_err();
        assert!(e.message.contains("did you mean 'dependencies'"), "{e}");
        let spec = parse("dependencies: [python]\nchanels: [conda-forge]\n").unwrap();
        assert_eq!(spec.warnings.len(), 1);
        assert!(
            spec.warnings[0].contains("course.yml:2"),
            "{:?}",
            spec.warnings
        );
        assert!(
            spec.warnings[0].contains("did you mean 'channels'"),
            "{:?}",
            spec.warnings
        );
    }

    #[test]
    fn image_paths_and_user_names_are_checked() {
        for bad in [
            "trousse:\n  prefix: /opt/../etc\n",
            "trousse:\n  prefix: opt/conda\n",
            "trousse:\n  prefix: /opt//conda\n",
            "trousse:\n  user: {name: 'x:0:0'}\n",
            "trousse:\n  user: {home: /home/../root}\n",
        ] {
            let text = format!("dependencies: [python]\n{bad}");
            assert!(parse(&text).is_err(), "{bad}");
        }
        let ok = parse("dependencies: [python]\ntrousse:\n  prefix: /srv/conda/\n").unwrap();
        assert_eq!(ok.image.prefix, "/srv/conda");
    }

    #[test]
    fn a_build_number_that_overflows_is_an_error_with_its_field() {
        let e = parse("dependencies:\n  - \"greet[build_number='>99999999999999999999']\"\n")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("dependencies[0]"), "{e}");
        assert!(e.message.contains("build_number"), "{e}");
    }
}
