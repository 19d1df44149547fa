//! Real conda material from ../shared/conda-data: lock files written by
//! rattler, and a real conda-forge noarch python package.

use std::{path::Path, str::FromStr};

use crate::common::*;
use rattler_conda_types::{MatchSpec, ParseStrictness, Version};
use trousse_builder::Lock;
use trousse_testkit::{write_package, ArchiveFormat, PackageSpec};

#[test]
fn real_rattler_lock_files_are_read() {
    for (file, package) in [
        ("rattler-numpy-lock.yml", "numpy"),
        ("rattler-python-lock.yml", "python"),
    ] {
        let lock = Lock::from_path(&conda_data().join("locks").join(file)).unwrap();
        let linux = lock
            .platform(rattler_conda_types::Subdir::Linux64)
            .expect("the lock has linux-64");
        let record = linux
            .records
            .iter()
            .find(|r| r.package_record.name.as_normalized() == package)
            .unwrap_or_else(|| panic!("{file} locks {package}"));
        assert!(record
            .url
            .as_str()
            .starts_with("https://conda.anaconda.org/conda-forge/"));
        assert!(record.package_record.sha256.is_some());
        assert_eq!(lock.hash().len(), 64);
    }
}

/// A version that satisfies a dependency spec, for stand-in packages.
fn satisfying_version(spec: &MatchSpec) -> String {
    [
        "3.12.0", "99.0", "2.0", "1.10.1", "1.6", "1.3.0.0", "1.0", "0.1",
    ]
    .into_iter()
    .find(|v| {
        spec.version
            .as_ref()
            .is_none_or(|c| c.matches(&Version::from_str(v).unwrap()))
    })
    .expect("a stand-in version")
    .to_string()
}

#[test]
fn a_real_noarch_python_package_is_installed_into_site_packages() {
    let ws = tempfile::tempdir().unwrap();
    let channel = ws.path().join("channel");
    let andes = conda_data().join("packages/andes-1.8.3-pyhd8ed1ab_0.conda");
    std::fs::create_dir_all(channel.join("noarch")).unwrap();
    std::fs::copy(
        &andes,
        channel.join("noarch/andes-1.8.3-pyhd8ed1ab_0.conda"),
    )
    .unwrap();
    // stand-ins for andes's dependencies (the real ones are on conda-forge)
    let depends = [
        "chardet",
        "coloredlogs",
        "dill",
        "kvxopt >=1.3.0.0",
        "matplotlib-base",
        "numba",
        "numpy",
        "openpyxl",
        "pandas",
        "pathos",
        "psutil",
        "python >=3.6",
        "pyyaml",
        "scipy",
        "sympy >=1.6,<=1.10.1,!=1.10.0",
        "texttable",
        "tqdm",
        "xlsxwriter",
    ];
    for dep in depends {
        let spec = MatchSpec::from_str(dep, ParseStrictness::Lenient).unwrap();
        let name = spec.name.as_exact().unwrap().as_normalized().to_string();
        let mut stand_in = PackageSpec::new(&name, &satisfying_version(&spec));
        if name == "python" {
            stand_in = stand_in
                .file("bin/python3.12", "#!/bin/sh\n", 0o755)
                .symlink("bin/python", "python3.12");
        }
        write_package(&channel, &stand_in, ArchiveFormat::Conda).unwrap();
    }
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(trousse_testkit::index_channel(&channel))
        .unwrap();
    let spec = ws.path().join("andes.yml");
    std::fs::write(&spec, "channels: [./channel]\ndependencies: [andes]\n").unwrap();
    let layout = ws.path().join("image");
    run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci:{}", layout.display()),
        "--cache-dir",
        ws.path().join("cache").to_str().unwrap(),
    ]));
    let prefix = umoci_unpack(&layout, "latest", ws.path()).join("opt/conda");
    let site = prefix.join("lib/python3.12/site-packages");
    assert!(site.join("andes/__init__.py").is_file());
    assert!(site.join("andes-1.8.3.dist-info").is_dir() || has_dist_info(&site));
    let entry = std::fs::read_to_string(prefix.join("bin/andes")).unwrap();
    assert!(entry.starts_with("#!/opt/conda/bin/python"), "{entry}");
    assert!(entry.contains("from andes.cli import main"), "{entry}");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prefix.join("conda-meta/andes-1.8.3-pyhd8ed1ab_0.json")).unwrap(),
    )
    .unwrap();
    let files = record["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f == "bin/andes"));
    assert!(files
        .iter()
        .all(|f| !f.as_str().unwrap().starts_with("site-packages/")));
}

fn has_dist_info(site: &Path) -> bool {
    std::fs::read_dir(site).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".dist-info")
    })
}
