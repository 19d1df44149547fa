//! Git repositories as build sources, kept the way Binder repositories are:
//! fetched into a mirror cache, a ref resolved to a commit, the commit's
//! files read from git's objects, Binder's configuration files read from
//! them, and the files themselves layered into the image.

mod address;
mod binder;
mod content;
mod mirror;
mod net;
mod tree;

use std::{path::Path, sync::Arc};

pub use crate::error::repo::RepoError;
pub use address::{is_repository_address, GitPolicy, RepoAddress, RepoLimits, DEFAULT_MAX_DEPTH};
pub use binder::{default_environment, BinderPlan, EnvironmentFile, DEFAULT_ENVIRONMENT};
pub(crate) use content::CONTENT_FORMAT;
pub use content::{RepoContent, SourceRecord, REPO_DIR, SOURCE_RECORD_IN_PREFIX};
pub use net::TOKEN_ENV;
pub use tree::{parse_gitmodules, RepoNode, RepoTree, SubmoduleRecord};

use mirror::Mirror;
use net::Spending;
use tree::TreeReader;

use crate::{BuildError, EnvSpec, ImageSettings, Source};

/// The label naming the repository an image was built from.
pub const SOURCE_LABEL: &str = "org.opencontainers.image.source";
/// The label naming the commit an image was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// The label carrying the sha256 of the repository content layer's input.
pub const CONTENT_LABEL: &str = "io.trousse.repository.sha256";
/// The label naming the ref the commit was resolved from.
pub const REF_LABEL: &str = "io.trousse.repository.ref";

/// A repository to build.
#[derive(Debug, Clone)]
pub struct RepoRequest {
    /// Where it is (and the ref written after `@`).
    pub address: RepoAddress,
    /// The ref to build, over the address's; the remote's HEAD when neither says.
    pub reference: Option<String>,
    /// What may be fetched.
    pub policy: GitPolicy,
    /// Whether a `postBuild` script may run (otherwise it is refused).
    pub allow_post_build: bool,
}

/// A repository read at one commit.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Its files and where they came from.
    pub content: RepoContent,
    /// What its configuration files ask for.
    pub plan: BinderPlan,
}

impl RepoRequest {
    /// Fetches the repository into the mirrors under `cache_dir` and reads the commit.
    pub async fn read(self, cache_dir: &Path) -> Result<Repository, BuildError> {
        let cache = crate::cache::CacheDir::new(cache_dir)?;
        let mirrors = cache_dir.join("git");
        crate::error::blocking("repository", move || {
            // `cache gc` waits while a mirror is read
            let _shared = cache.lock_shared()?;
            self.read_blocking(&mirrors).map_err(BuildError::from)
        })
        .await?
    }

    fn read_blocking(&self, mirrors: &Path) -> Result<Repository, RepoError> {
        let address = &self.address;
        self.policy.check(address, None)?;
        let spending = Arc::new(Spending::new(&self.policy));
        let mirror = Mirror::open(mirrors, address, &self.policy, &spending)?;
        let wanted = self.reference.as_deref().or(address.reference.as_deref());
        let (commit, name) = match mirror.resolve(address, wanted, &self.policy, &spending) {
            Ok(resolved) => resolved,
            Err(e) => {
                mirror.discard_if_fresh();
                return Err(e);
            }
        };
        let time = mirror
            .repo
            .find_commit(commit)
            .map(|c| c.time().seconds())
            .unwrap_or(0);
        let reader = TreeReader {
            mirrors,
            policy: &self.policy,
            spending: &spending,
        };
        let mut tree = reader.read(&mirror.repo, commit, address)?;
        let config = |message: String| RepoError::Config {
            url: address.display(),
            commit: commit.to_string(),
            message,
        };
        check_lfs(&tree).map_err(config)?;
        let plan = binder::plan(&tree).map_err(config)?;
        self.check_scripts(&plan, &mut tree).map_err(config)?;
        let reference = wanted.map_or_else(
            || name.trim_start_matches("refs/heads/").to_string(),
            ToString::to_string,
        );
        let record = SourceRecord {
            url: address.display(),
            reference,
            commit: commit.to_string(),
            submodules: tree.submodules.clone(),
        };
        Ok(Repository {
            content: RepoContent { tree, time, record },
            plan,
        })
    }

    /// `start` and `postBuild` must be scripts (made executable, as repo2docker
    /// does); `postBuild` only runs when allowed.
    fn check_scripts(&self, plan: &BinderPlan, tree: &mut RepoTree) -> Result<(), String> {
        for script in plan.start.iter().chain(&plan.post_build) {
            match tree.nodes.get_mut(script) {
                Some(RepoNode::File { data, executable }) if data.starts_with(b"#!") => {
                    *executable = true;
                }
                _ => {
                    return Err(format!(
                        "{script} must be a file that starts with #! (e.g. #!/bin/bash){}",
                        if Some(script) == plan.start.as_ref() {
                            " and ends with exec \"$@\""
                        } else {
                            ""
                        }
                    ))
                }
            }
        }
        if let (Some(post_build), false) = (&plan.post_build, self.allow_post_build) {
            return Err(format!(
                "{post_build} runs arbitrary code at build time, and its result cannot be reproduced \
                 byte for byte, so it is refused by default: install what it installs through environment.yml, \
                 or allow it (--allow-post-build on the command line, an administrator for a course)"
            ));
        }
        Ok(())
    }
}

/// The repository content that stored settings name (by their labels), read
/// again at that commit (from the mirror, which holds it); `None` without a repository.
pub async fn stored_content(
    settings: &ImageSettings,
    policy: &GitPolicy,
    token: Option<String>,
    cache_dir: &Path,
) -> Result<Option<RepoContent>, BuildError> {
    let label = |name: &str| settings.labels.get(name).cloned();
    let Some(url) = label(SOURCE_LABEL) else {
        return Ok(None);
    };
    // an image never silently lacks its repository's files
    let (Some(commit), Some(reference), Some(digest)) = (
        label(REVISION_LABEL),
        label(REF_LABEL),
        label(CONTENT_LABEL),
    ) else {
        return Err(BuildError::Internal(format!(
            "the build of {url} lacks its commit, ref or content label: submit the repository again"
        )));
    };
    let mut address = RepoAddress::parse(&url)?;
    address.password = token;
    let mut content = RepoRequest {
        address,
        reference: Some(commit),
        policy: policy.clone(),
        allow_post_build: false,
    }
    .read(cache_dir)
    .await?
    .content;
    content.record.reference = reference;
    if content.digest() != digest {
        return Err(BuildError::Internal(format!(
            "the files of {url} read now differ from those the build was resolved with"
        )));
    }
    Ok(Some(content))
}

/// The settings without what a repository's files bring (its labels, its
/// `start` entrypoint, its postBuild): what a lock of the repository
/// carries, since the lock does not hold the files.
pub fn without_repository(settings: &ImageSettings) -> ImageSettings {
    let mut settings = settings.clone();
    for label in [
        SOURCE_LABEL,
        REVISION_LABEL,
        CONTENT_LABEL,
        REF_LABEL,
        crate::settings::POST_BUILD_LABEL,
    ] {
        settings.labels.remove(label);
    }
    if settings
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.iter().any(|part| part.starts_with(REPO_DIR)))
    {
        settings.entrypoint = None;
    }
    settings
}

/// Git LFS pointers are never shipped in place of the files they stand for.
fn check_lfs(tree: &RepoTree) -> Result<(), String> {
    let pointers: Vec<&str> = tree
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n, RepoNode::File { data, .. } if data.len() < 1024 && data.starts_with(b"version https://git-lfs.github.com/spec/")))
        .map(|(p, _)| p.as_str())
        .collect();
    match pointers.as_slice() {
        [] => Ok(()),
        [first, ..] => Err(format!(
            "{} file(s) are Git LFS pointers (e.g. {first}); trousse does not fetch LFS objects yet: \
             commit the files themselves, or build from a release archive",
            pointers.len()
        )),
    }
}

use crate::pypi::requirements::{lines_of, parse_requirements, MapFiles};

impl Repository {
    /// The source of this repository: its environment, its files, and the
    /// labels and entrypoint they bring.
    pub fn source(mut self, defaults: &ImageSettings) -> Result<Source, BuildError> {
        let record = &self.content.record;
        let short = record.commit.get(..12).unwrap_or(&record.commit);
        let (name, text) = match &self.plan.environment {
            EnvironmentFile::Spec { path, text } => (path.clone(), text.clone()),
            EnvironmentFile::Default { python } => (
                "repo2docker's default environment".to_string(),
                default_environment(python.as_deref()),
            ),
        };
        let prefix = format!("{}@{short}:", record.url);
        let name = Path::new(&format!("{prefix}{name}")).to_path_buf();
        // a repository's files land in its image: credentials in them are refused
        crate::net::credentials::refuse(&text, &name)?;
        let files = MapFiles {
            files: std::mem::take(&mut self.plan.text_files),
            prefix: prefix.clone(),
        };
        // a repository is made for a hub unless its spec says `jupyter: false`
        let defaults = ImageSettings {
            jupyter: true,
            ..defaults.clone()
        };
        let mut spec =
            EnvSpec::from_yaml_with(&text, &name, Path::new("/nonexistent"), &defaults, &files)?;
        if let Some((path, text)) = &self.plan.requirements {
            let path = Path::new(&format!("{prefix}{path}")).to_path_buf();
            crate::net::credentials::refuse(text, &path)?;
            let lines = lines_of(text, &path);
            spec.pip = Some(parse_requirements(&lines, &files)?).filter(|p| !p.is_empty());
        }
        let image = &mut spec.image;
        image.labels.insert(SOURCE_LABEL.into(), record.url.clone());
        image
            .labels
            .insert(REVISION_LABEL.into(), record.commit.clone());
        image
            .labels
            .insert(CONTENT_LABEL.into(), self.content.digest());
        // what a later build (the service's) reads the files again with
        image
            .labels
            .insert(REF_LABEL.into(), record.reference.clone());
        if let Some(start) = &self.plan.start {
            image.entrypoint = Some(vec![format!("{REPO_DIR}/{start}")]);
        }
        if let Some(post_build) = &self.plan.post_build {
            image
                .labels
                .insert(crate::settings::POST_BUILD_LABEL.into(), post_build.clone());
        }
        Ok(Source::Repository {
            spec: Box::new(spec),
            content: Arc::new(self.content),
            apt: self.plan.apt,
        })
    }
}
