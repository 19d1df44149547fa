//! Resolution of PyPI requirements with pubgrub, for one target (its Python,
//! platform and glibc), on top of the conda packages already solved: a
//! distribution a conda package installs is a fixed version the resolver
//! must accept, and is never fetched from an index.

use std::{
    cell::RefCell,
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use pep440_rs::Version;
use pep508_rs::{ExtraName, MarkerEnvironment, PackageName, Requirement, VersionOrUrl};
use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyConstraints, DependencyProvider,
    PackageResolutionStatistics, PubGrubError, Ranges, Reporter,
};

use super::{
    error::without_credentials,
    index::{CoreMetadata, DistFile, DistKind, Index},
    installed::CondaDist,
    locked::LockedWheel,
    requirements::PypiRequirements,
    tags::{CompatibleTags, WheelTarget},
    PypiError,
};

/// A node of the resolution: the requirements, a distribution, or a distribution with an extra.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Node {
    Root,
    Dist(PackageName),
    Extra(PackageName, ExtraName),
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Root => f.write_str("the requirements"),
            Node::Dist(name) => write!(f, "{name}"),
            Node::Extra(name, extra) => write!(f, "{name}[{extra}]"),
        }
    }
}

/// One installable version of a project: its best wheel for the target.
#[derive(Debug, Clone)]
struct Candidate {
    version: Version,
    file: DistFile,
}

/// What the resolver asks of indexes and the conda environment.
struct Provider<'a> {
    index: &'a Index,
    runtime: tokio::runtime::Handle,
    target: &'a WheelTarget,
    tags: CompatibleTags,
    markers: MarkerEnvironment,
    python: Version,
    conda: &'a BTreeMap<PackageName, CondaDist>,
    requirements: &'a PypiRequirements,
    constraints: HashMap<PackageName, Ranges<Version>>,
    candidates: RefCell<HashMap<PackageName, Arc<Vec<Candidate>>>>,
    metadata: RefCell<HashMap<(PackageName, Version), Arc<CoreMetadata>>>,
    limit: crate::guard::work_limit::WorkLimit,
}

/// Resolves `requirements` for `target` on top of the conda distributions
/// `conda`; returns the wheels to install, sorted by name. Runs on a blocking
/// thread: pubgrub is synchronous, index reads are done on `runtime`.
pub(crate) fn resolve(
    requirements: &PypiRequirements,
    index: &Index,
    target: &WheelTarget,
    conda: &BTreeMap<PackageName, CondaDist>,
    runtime: tokio::runtime::Handle,
    limit: &crate::guard::work_limit::WorkLimit,
) -> Result<Vec<LockedWheel>, PypiError> {
    let mut provider = Provider::new(requirements, index, target, conda, runtime);
    provider.limit = limit.clone();
    provider.check_some_apply()?;
    let solution = match pubgrub::resolve(&provider, Node::Root, Version::new([0])) {
        Ok(solution) => solution,
        Err(PubGrubError::NoSolution(tree)) => {
            let explanation = DefaultStringReporter::report(&tree);
            return Err(PypiError::Unsolvable {
                platform: target.platform.to_string(),
                explanation: with_conda_notes(explanation, conda),
            });
        }
        Err(PubGrubError::ErrorChoosingVersion { source, .. })
        | Err(PubGrubError::ErrorRetrievingDependencies { source, .. })
        | Err(PubGrubError::ErrorInShouldCancel(source)) => return Err(source),
    };
    let mut wheels = Vec::new();
    for (node, version) in solution {
        let Node::Dist(name) = node else { continue };
        if conda.contains_key(&name) {
            continue;
        }
        wheels.push(provider.locked(&name, &version)?);
    }
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    provider.check_hashes(&wheels)?;
    Ok(wheels)
}

impl<'a> Provider<'a> {
    fn new(
        requirements: &'a PypiRequirements,
        index: &'a Index,
        target: &'a WheelTarget,
        conda: &'a BTreeMap<PackageName, CondaDist>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let markers = target.markers();
        let mut constraints: HashMap<PackageName, Ranges<Version>> = HashMap::new();
        for c in &requirements.constraints {
            if c.evaluate_markers(&markers, &[]) {
                let range = constraints
                    .entry(c.name.clone())
                    .or_insert_with(Ranges::full);
                *range = range.intersection(&range_of(c));
            }
        }
        Self {
            index,
            runtime,
            tags: target.tags(),
            python: Version::new([u64::from(target.python.0), u64::from(target.python.1), 0]),
            markers,
            target,
            conda,
            requirements,
            limit: crate::guard::work_limit::WorkLimit::default(),
            constraints,
            candidates: RefCell::default(),
            metadata: RefCell::default(),
        }
    }

    /// A marker that excludes every requirement leaves nothing to install: say so.
    fn check_some_apply(&self) -> Result<(), PypiError> {
        let reqs = &self.requirements.requirements;
        if reqs.is_empty() || reqs.iter().any(|r| r.evaluate_markers(&self.markers, &[])) {
            return Ok(());
        }
        Err(PypiError::Unsupported {
            package: reqs.iter().map(|r| r.name.to_string()).collect::<Vec<_>>().join(", "),
            message: format!(
                "the environment markers of every requirement exclude the target (Python {}.{}, {}): nothing would be installed; check the markers (python_version, sys_platform, platform_machine)",
                self.target.python.0, self.target.python.1, self.target.platform
            ),
        })
    }

    /// The dependencies `requirements` give, evaluated for the target with `extras` active.
    fn constraints_of<'r>(
        &self,
        requirements: impl Iterator<Item = &'r Requirement>,
        extras: &[ExtraName],
    ) -> DependencyConstraints<Node, Ranges<Version>> {
        // ordered: the same requirements always resolve the same way
        let mut out: BTreeMap<Node, Ranges<Version>> = BTreeMap::new();
        for requirement in requirements {
            if !requirement.evaluate_markers(&self.markers, extras) {
                continue;
            }
            let mut range = range_of(requirement);
            if let Some(constraint) = self.constraints.get(&requirement.name) {
                range = range.intersection(constraint);
            }
            let mut add = |node: Node| {
                let entry = out.entry(node).or_insert_with(Ranges::full);
                *entry = entry.intersection(&range);
            };
            add(Node::Dist(requirement.name.clone()));
            for extra in &requirement.extras {
                add(Node::Extra(requirement.name.clone(), extra.clone()));
            }
        }
        out.into_iter().collect()
    }

    /// The installable versions of a project, best first (cached per resolution).
    fn candidates(&self, name: &PackageName) -> Result<Arc<Vec<Candidate>>, PypiError> {
        if let Some(found) = self.candidates.borrow().get(name) {
            return Ok(found.clone());
        }
        let files = self.runtime.block_on(self.index.files(name))?;
        let candidates = Arc::new(self.installable(name, &files)?);
        self.candidates
            .borrow_mut()
            .insert(name.clone(), candidates.clone());
        Ok(candidates)
    }

    /// The best wheel of each version that the target can install, newest first.
    fn installable(
        &self,
        name: &PackageName,
        files: &[DistFile],
    ) -> Result<Vec<Candidate>, PypiError> {
        let mut compatible: Vec<(usize, &DistFile, &Version)> = Vec::new();
        for file in files.iter().filter(|f| !f.yanked) {
            let DistKind::Wheel(wheel) = &file.kind else {
                continue;
            };
            let Some(rank) = self.tags.rank(wheel) else {
                continue;
            };
            if file
                .requires_python
                .as_ref()
                .is_some_and(|r| !r.contains(&self.python))
            {
                continue;
            }
            compatible.push((rank, file, &wheel.version));
        }
        if let Some(hashes) = self.requirements.hashes.get(name) {
            let matching = |f: &DistFile| f.sha256.as_ref().is_some_and(|s| hashes.contains(s));
            if !compatible.is_empty() && !compatible.iter().any(|(_, f, _)| matching(f)) {
                return Err(PypiError::HashNotGiven {
                    package: name.to_string(),
                    expected: hashes.iter().cloned().collect::<Vec<_>>().join(" or "),
                    found: compatible
                        .iter()
                        .filter_map(|(_, f, _)| f.sha256.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            compatible.retain(|(_, f, _)| matching(f));
        }
        let mut best: BTreeMap<Reverse<Version>, (usize, DistFile)> = BTreeMap::new();
        for (rank, file, version) in compatible {
            let slot = best.entry(Reverse(version.clone()));
            let better = |(r, _): &(usize, DistFile)| rank < *r;
            match slot {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((rank, file.clone()));
                }
                std::collections::btree_map::Entry::Occupied(mut o) if better(o.get()) => {
                    o.insert((rank, file.clone()));
                }
                _ => {}
            }
        }
        Ok(best
            .into_iter()
            .map(|(Reverse(version), (_, file))| Candidate { version, file })
            .collect())
    }

    /// The core metadata of a chosen version (cached per resolution).
    fn metadata(
        &self,
        name: &PackageName,
        version: &Version,
    ) -> Result<Arc<CoreMetadata>, PypiError> {
        let key = (name.clone(), version.clone());
        if let Some(found) = self.metadata.borrow().get(&key) {
            return Ok(found.clone());
        }
        let metadata = if let Some(conda) = self.conda.get(name) {
            conda.metadata()?
        } else {
            let candidate = self.candidate(name, version)?;
            self.runtime
                .block_on(self.index.metadata(&candidate.file))?
        };
        let metadata = Arc::new(metadata);
        self.metadata.borrow_mut().insert(key, metadata.clone());
        Ok(metadata)
    }

    /// The candidate of a version chosen earlier.
    fn candidate(&self, name: &PackageName, version: &Version) -> Result<Candidate, PypiError> {
        self.candidates(name)?
            .iter()
            .find(|c| &c.version == version)
            .cloned()
            .ok_or_else(|| PypiError::Unsolvable {
                platform: self.target.platform.to_string(),
                explanation: format!("{name} {version} was chosen but has no wheel"),
            })
    }

    /// A version range none of whose wheels fit, when sdists or other wheels do: say why.
    fn no_wheel(&self, name: &PackageName, range: &Ranges<Version>) -> Result<(), PypiError> {
        let files = self.runtime.block_on(self.index.files(name))?;
        let in_range: Vec<&DistFile> = files
            .iter()
            .filter(|f| version_of(f).is_some_and(|v| range.contains(v)))
            .collect();
        if in_range.is_empty()
            || in_range
                .iter()
                .any(|f| matches!(f.kind, DistKind::Wheel(_)))
        {
            return Ok(());
        }
        let versions: BTreeSet<String> = in_range
            .iter()
            .filter_map(|f| version_of(f))
            .map(|v| v.to_string())
            .collect();
        Err(PypiError::Unsupported {
            package: format!("{name} {}", versions.into_iter().collect::<Vec<_>>().join(", ")),
            message: "only a source distribution (sdist) exists, and trousse runs no build backends at image build time: require a version that has a wheel, or add the conda package instead".into(),
        })
    }

    /// The lock entry of a resolved distribution: its wheel, with a sha256.
    fn locked(&self, name: &PackageName, version: &Version) -> Result<LockedWheel, PypiError> {
        let candidate = self.candidate(name, version)?;
        let metadata = self.metadata(name, version)?;
        let sha256 = match &candidate.file.sha256 {
            Some(sha) => sha.clone(),
            None => {
                let file = &candidate.file;
                let path =
                    self.runtime
                        .block_on(self.index.download(&file.url, &file.filename, None))?;
                super::locked::sha256_file(&path)?
            }
        };
        Ok(LockedWheel {
            name: name.clone(),
            version: version.clone(),
            url: without_credentials(&candidate.file.url),
            index: candidate.file.index.as_ref().map(without_credentials),
            sha256,
            requires_dist: metadata.requires_dist.clone(),
            requires_python: metadata.requires_python.clone(),
        })
    }

    /// `--require-hashes`: every wheel from PyPI must have been given a hash.
    fn check_hashes(&self, wheels: &[LockedWheel]) -> Result<(), PypiError> {
        if !self.requirements.require_hashes {
            return Ok(());
        }
        match wheels
            .iter()
            .find(|w| !self.requirements.hashes.contains_key(&w.name))
        {
            None => Ok(()),
            Some(w) => Err(PypiError::Unsupported {
                package: format!("{} {}", w.name, w.version),
                message: format!(
                    "--require-hashes is set but it has no --hash: add '{}=={} --hash=sha256:{}'",
                    w.name, w.version, w.sha256
                ),
            }),
        }
    }
}

/// The explanation, with a note for each distribution in it that a conda package installs.
fn with_conda_notes(mut explanation: String, conda: &BTreeMap<PackageName, CondaDist>) -> String {
    for (name, dist) in conda {
        let named = explanation
            .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .any(|word| word == name.as_ref());
        if named {
            explanation.push_str(&format!(
                "\nnote: {name} {} is installed by the conda package {}: PyPI cannot replace it; change the conda dependency instead",
                dist.version, dist.package
            ));
        }
    }
    explanation
}

/// The version of a file, wheel or sdist.
fn version_of(file: &DistFile) -> Option<&Version> {
    match &file.kind {
        DistKind::Wheel(w) => Some(&w.version),
        DistKind::Sdist { version } => version.as_ref(),
    }
}

/// The versions a requirement accepts.
fn range_of(requirement: &Requirement) -> Ranges<Version> {
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => Ranges::from(specifiers.clone()),
        _ => Ranges::full(),
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Node;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    type Priority = (u32, Reverse<usize>);

    fn should_cancel(&self) -> Result<(), PypiError> {
        match self.limit.stopped() {
            true => Err(PypiError::Stopped),
            false => Ok(()),
        }
    }
    type Err = PypiError;

    fn prioritize(
        &self,
        package: &Node,
        _range: &Ranges<Version>,
        statistics: &PackageResolutionStatistics,
    ) -> Self::Priority {
        // the fewer the choices, the sooner decided; conflicts first
        let choices = match package {
            Node::Root => 0,
            Node::Dist(name) | Node::Extra(name, _) if self.conda.contains_key(name) => 1,
            Node::Dist(name) | Node::Extra(name, _) => self
                .candidates
                .borrow()
                .get(name)
                .map_or(usize::MAX, |c| c.len()),
        };
        (statistics.conflict_count(), Reverse(choices))
    }

    fn choose_version(
        &self,
        package: &Node,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, PypiError> {
        let name = match package {
            Node::Root => return Ok(Some(Version::new([0]))),
            Node::Dist(name) | Node::Extra(name, _) => name,
        };
        if let Some(conda) = self.conda.get(name) {
            return Ok(range
                .contains(&conda.version)
                .then(|| conda.version.clone()));
        }
        let candidates = self.candidates(name)?;
        let allow_pre =
            self.requirements.pre || candidates.iter().all(|c| c.version.any_prerelease());
        let chosen = candidates
            .iter()
            .filter(|c| allow_pre || !c.version.any_prerelease())
            .find(|c| range.contains(&c.version))
            .map(|c| c.version.clone());
        if chosen.is_none() {
            self.no_wheel(name, range)?;
        }
        Ok(chosen)
    }

    fn get_dependencies(
        &self,
        package: &Node,
        version: &Version,
    ) -> Result<Dependencies<Node, Ranges<Version>, String>, PypiError> {
        match package {
            Node::Root => Ok(Dependencies::Available(
                self.constraints_of(self.requirements.requirements.iter(), &[]),
            )),
            // conda installed this distribution and its dependencies
            Node::Dist(name) if self.conda.contains_key(name) => {
                Ok(Dependencies::Available(DependencyConstraints::default()))
            }
            Node::Dist(name) => {
                let metadata = self.metadata(name, version)?;
                Ok(Dependencies::Available(
                    self.constraints_of(metadata.requires_dist.iter(), &[]),
                ))
            }
            Node::Extra(name, extra) => {
                let metadata = self.metadata(name, version)?;
                let deps =
                    self.constraints_of(metadata.requires_dist.iter(), std::slice::from_ref(extra));
                let dist = (Node::Dist(name.clone()), Ranges::singleton(version.clone()));
                Ok(Dependencies::Available(
                    deps.into_iter().chain([dist]).collect(),
                ))
            }
        }
    }
}
