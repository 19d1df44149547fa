//! The parsers and checks that take untrusted text, as the fuzz targets in
//! `fuzz/` call them: each takes arbitrary bytes and must return, never panic
//! nor allocate without bound. `tests/fuzz_corpus.rs` replays every corpus
//! file and every crash found through these same functions on stable Rust.

use std::{path::Path, str::FromStr};

use rattler::install::PythonInfo;
use rattler_conda_types::{package::PathsJson, Subdir, Version};

use crate::{
    net::channel_url, source::repo, source::spec, stage::package_check, EnvSpec, ImageSettings,
    Lock,
};

/// A spec (environment.yml with its `trousse:` section).
pub fn spec(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EnvSpec::from_yaml(
            text,
            Path::new("fuzz.yml"),
            Path::new("/nonexistent"),
            &ImageSettings::default(),
        );
    }
}

/// A lock file, then its URLs against the channels it declares.
pub fn lock(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(lock) = Lock::from_text(text, Path::new("fuzz.lock")) {
            let _ = lock.check_own_urls(Path::new("fuzz.lock"));
        }
    }
}

/// One dependency of a spec.
pub fn match_spec(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = spec::parse_match_spec(text);
    }
}

/// A package's `info/paths.json`, checked as a noarch python package's would be.
pub fn paths_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(paths) = serde_json::from_str::<PathsJson>(text) else {
        return;
    };
    let _ = package_check::check_listing(&paths, None, None, false);
    let python = Version::from_str("3.12")
        .ok()
        .and_then(|v| PythonInfo::from_version(&v, None, Subdir::Linux64).ok());
    if let Some(python) = python {
        let _ = package_check::check_listing(&paths, None, Some(&python), true);
    }
}

/// A channel or package URL against an allow-list.
pub fn url(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(allowed) =
            channel_url::ChannelUrl::parse("https://conda.anaconda.org/conda-forge/")
        {
            let _ = channel_url::check_package_url(text, &[allowed]);
        }
    }
}

/// A conda-lock file or an explicit list (parsed only: completing it fetches).
pub fn partial_lock(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::Source::from_text(text, Path::new("fuzz.lock"), &ImageSettings::default());
    }
}

/// A repository address (with its `@REF`), checked against a service's
/// policy, a submodule URL joined to it, and a `.gitmodules` file.
pub fn repository(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = repo::GitPolicy::hosts(vec!["gitlab.example.org".into()], Default::default());
    if let Ok(address) = repo::RepoAddress::parse(text) {
        let _ = policy.check(&address, None);
        let _ = address.display();
        if let Ok(parent) = repo::RepoAddress::parse("https://gitlab.example.org/intro/course.git")
        {
            if let Ok(joined) = parent.join(text) {
                let _ = policy.check(&joined, Some(&parent));
            }
        }
    }
    let _ = repo::parse_gitmodules(text);
}

/// A requirements file (pip's lines and options), and the same text read as
/// a wheel's METADATA.
pub fn requirements(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = crate::pypi::requirements::lines_of(text, Path::new("requirements.txt"));
    let _ =
        crate::pypi::requirements::parse_requirements(&lines, &crate::pypi::requirements::NoFiles);
    let _ = crate::pypi::index::CoreMetadata::parse(text);
}

/// A wheel (zip bytes), unpacked into a temporary directory as a build would.
pub fn wheel(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("fuzz-1.0-py3-none-any.whl");
    let dest = dir.path().join("prefix");
    if std::fs::write(&path, data).is_err() || std::fs::create_dir(&dest).is_err() {
        return;
    }
    let target = crate::pypi::wheel::InstallTarget {
        site_packages: "lib/python3.12/site-packages",
        python: "/opt/conda/bin/python3.12",
        requested: true,
        epoch: crate::stage::wheels::WHEEL_EPOCH,
    };
    let _ = crate::pypi::wheel::install_wheel(&path, "fuzz-1.0-py3-none-any.whl", &target, &dest);
}

/// A fuzz entry point: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/NAME.rs` calls them.
pub const TARGETS: &[(&str, Target)] = &[
    ("spec", spec),
    ("lock", lock),
    ("match_spec", match_spec),
    ("paths_json", paths_json),
    ("url", url),
    ("partial_lock", partial_lock),
    ("repository", repository),
    ("requirements", requirements),
    ("wheel", wheel),
];
