//! Packages that overwrite each other's files: the image must hold exactly
//! what a direct rattler install of the same lock into the prefix holds.

use std::{collections::BTreeMap, path::Path};

use crate::common::*;
use rattler::{install::Installer, package_cache::PackageCache};
use rattler_conda_types::Subdir;
use trousse_testkit::{write_package, ArchiveFormat, PackageSpec};

/// The clobber packages of the shared conda data, in a channel of their own,
/// with a stand-in python for the noarch python ones.
fn clobber_channel(dir: &Path) {
    let noarch = dir.join("noarch");
    std::fs::create_dir_all(&noarch).unwrap();
    for entry in std::fs::read_dir(conda_data().join("packages")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("clobber-")
        {
            std::fs::copy(&path, noarch.join(path.file_name().unwrap())).unwrap();
        }
    }
    write_package(
        dir,
        &PackageSpec::new("python", "3.11.0")
            .file("bin/python3.11", "#!/bin/sh\n", 0o755)
            .symlink("bin/python", "python3.11"),
        ArchiveFormat::Conda,
    )
    .unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(trousse_testkit::index_channel(dir))
        .unwrap();
}

/// A tree of files and symlinks without what only one side writes:
/// conda-meta records (compared by name), the history and the lock, which
/// trousse adds. Directories are left out: rattler leaves empty ones behind
/// when it moves files between its (concurrent) link order and its final
/// order, so they are artifacts of one install, not content.
fn comparable(root: &Path) -> BTreeMap<String, (String, Vec<u8>, bool)> {
    tree(root)
        .into_iter()
        .map(|(path, value)| {
            if path.starts_with("conda-meta/") && path.ends_with(".json") {
                (path, ("record".to_string(), Vec::new(), false))
            } else {
                (path, value)
            }
        })
        .filter(|(path, (kind, _, _))| {
            kind != "dir" && path != "conda-meta/history" && path != "conda-meta/trousse.lock"
        })
        .collect()
}

/// Locks and builds `packages` from the clobber channel, installs the same
/// lock directly with rattler into a directory with target prefix
/// /opt/conda, and returns (direct install, the image's /opt/conda).
fn image_and_direct_install(
    ws: &Path,
    packages: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let channel = ws.join("channel");
    clobber_channel(&channel);
    let deps: String = packages.iter().map(|p| format!("  - {p}\n")).collect();
    let spec = ws.join("clobber.yml");
    std::fs::write(
        &spec,
        format!("channels: [./channel]\ndependencies:\n{deps}"),
    )
    .unwrap();
    let lock = ws.join("clobber.lock");
    let cache = ws.join("cache");
    run_ok(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]));
    let layout = ws.join("image");
    run_ok(trousse(&[
        "build",
        lock.to_str().unwrap(),
        "--output",
        &format!("oci:{}", layout.display()),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]));
    let rootfs = umoci_unpack(&layout, "latest", ws);

    let lock_file = rattler_lock::LockFile::from_path(&lock).unwrap();
    let environment = lock_file.default_environment().unwrap();
    let platform = environment.platforms().next().unwrap();
    let records = environment
        .conda_repodata_records(platform)
        .unwrap()
        .unwrap();
    assert!(records.len() >= packages.len());
    let direct = ws.join("direct");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        Installer::new()
            .with_target_platform(Subdir::Linux64)
            .with_alternative_target_prefix("/opt/conda")
            .with_package_cache(PackageCache::new(ws.join("direct-cache")))
            .install(&direct, records)
            .await
            .unwrap();
    });
    (direct, rootfs.join("opt/conda"))
}

#[test]
fn clobbering_packages_match_a_direct_rattler_install() {
    let ws = tempfile::tempdir().unwrap();
    let (direct, image) = image_and_direct_install(
        ws.path(),
        &[
            "clobber-1",
            "clobber-2",
            "clobber-3",
            "clobber-nested-2",
            "clobber-with-dir",
            "clobber-without-dir",
            "clobber-with-symlink-b",
            "clobber-pynoarch-1",
            "clobber-pynoarch-2",
            "clobber-directory-upgrade",
            "python",
        ],
    );
    let expected = comparable(&direct);
    let actual = comparable(&image);
    assert!(
        expected.keys().any(|p| p.starts_with("__clobbers__/")),
        "the test packages clobber nothing"
    );
    let only_direct: Vec<_> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let only_image: Vec<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        only_direct.is_empty() && only_image.is_empty(),
        "only in the direct install: {only_direct:?}\nonly in the image: {only_image:?}"
    );
    for (path, value) in &expected {
        assert_eq!(&actual[path], value, "{path} differs");
    }
    // conda-meta records point at the moved files as rattler's do
    for path in expected
        .keys()
        .filter(|p| p.starts_with("conda-meta/") && p.ends_with(".json"))
    {
        let files = |root: &Path| {
            let record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap();
            let mut files: Vec<String> = record["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            files.sort();
            files
        };
        assert_eq!(files(&image), files(&direct), "{path}");
    }
}

/// Where files and directories of six packages compete for one path
/// (`clobber` is a file in two, a directory in four), rattler's result
/// depends on the order its concurrent installer happens to link them. The
/// image follows rattler's final priority (topological order, the last
/// package wins) deterministically; it must lose no file and add none.
#[test]
fn file_and_directory_clobbers_keep_every_file() {
    let ws = tempfile::tempdir().unwrap();
    let (direct, image) = image_and_direct_install(
        ws.path(),
        &[
            "clobber-fd-1",
            "clobber-fd-2",
            "clobber-fd-3",
            "clobber-fd-rev-1",
            "clobber-fd-rev-2",
            "clobber-fd-rev-3",
        ],
    );
    let contents = |root: &Path| {
        let mut all: Vec<(String, Vec<u8>)> = comparable(root)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("conda-meta/"))
            .map(|(p, (_, content, _))| (p.rsplit('/').next().unwrap().to_string(), content))
            .collect();
        all.sort();
        all
    };
    assert_eq!(contents(&image), contents(&direct));
    assert!(image.join("__clobbers__").is_dir());
}
