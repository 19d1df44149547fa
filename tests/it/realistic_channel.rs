//! The conda-forge-shaped channel of `trousse_testkit::realistic`: it solves
//! back to the real Binder lock, its course environments solve, its sizes
//! and contents look like real packages, and it is deterministic.

use std::{io::Write, path::Path};

use crate::common::*;
use rattler_conda_types::Subdir;
use trousse_builder::Lock;
use trousse_testkit::{
    placeholder,
    realistic::{
        model_size, realistic_channel, total_size, write_realistic_channel, RealisticChannel,
    },
    write_package, ArchiveFormat, PlaceholderMode,
};

const SEED: u64 = 7;
/// Small, to stay fast: the Binder environment is about 10 MB at this scale.
const SCALE: f64 = 0.02;

/// Locks `dependencies` over `ws/channel` and returns the locked linux-64
/// packages as sorted "name-version-build".
fn lock(ws: &Path, name: &str, dependencies: &[String]) -> Vec<String> {
    let deps: String = dependencies
        .iter()
        .map(|d| format!("  - \"{d}\"\n"))
        .collect();
    let spec = ws.join(format!("{name}.yml"));
    std::fs::write(
        &spec,
        format!("name: {name}\nchannels:\n  - ./channel\ndependencies:\n{deps}"),
    )
    .unwrap();
    let lock_path = ws.join(format!("{name}.lock.yml"));
    run_ok(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock_path.to_str().unwrap(),
        "--cache-dir",
        ws.join("cache").to_str().unwrap(),
    ]));
    let lock = Lock::from_path(&lock_path).unwrap();
    let mut locked: Vec<String> = lock
        .platform(Subdir::Linux64)
        .expect("a linux-64 lock")
        .records
        .iter()
        .map(|r| {
            let p = &r.package_record;
            format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
        })
        .collect();
    locked.sort();
    locked
}

fn write(dir: &Path, channel: &RealisticChannel) {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(write_realistic_channel(dir, channel))
        .unwrap();
}

#[test]
fn the_binder_environment_solves_back_to_its_real_lock_and_the_courses_solve() {
    let channel = realistic_channel(&conda_data(), SEED, SCALE).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    write(&ws.path().join("channel"), &channel);
    eprintln!(
        "wrote {} packages ({} bytes of files) at scale {SCALE} in {:?}",
        channel.packages.len(),
        total_size(&channel),
        started.elapsed()
    );

    assert_eq!(channel.binder_locked.len(), 175);
    let mut expected = channel.binder_locked.clone();
    expected.sort();
    assert_eq!(lock(ws.path(), "binder", &channel.binder), expected);

    let binder_names: Vec<&str> = channel
        .binder_locked
        .iter()
        .map(|l| l.rsplitn(3, '-').nth(2).unwrap())
        .collect();
    assert!(!binder_names.contains(&channel.extra_package.as_str()));
    assert!(channel
        .packages
        .iter()
        .any(|p| p.name == channel.extra_package));

    assert_eq!(channel.courses.len(), 10);
    let mut sizes = Vec::new();
    for course in &channel.courses {
        let locked = lock(ws.path(), &course.name, &course.dependencies);
        for spec in &course.dependencies {
            let name = spec.split(['=', ' ', '<', '>']).next().unwrap();
            assert!(
                locked.iter().any(|l| l.starts_with(&format!("{name}-"))
                    && l.rsplitn(3, '-').nth(2) == Some(name)),
                "{} locks {name}: {locked:?}",
                course.name
            );
        }
        assert!(
            locked
                .iter()
                .any(|l| l.starts_with("jupyterlab-") || l.starts_with("notebook-")),
            "{} has a notebook interface",
            course.name
        );
        sizes.push((course.name.clone(), locked.len()));
    }
    eprintln!("course environments (packages): {sizes:?}");
}

#[test]
fn the_realistic_channel_is_deterministic() {
    let a = realistic_channel(&conda_data(), SEED, SCALE).unwrap();
    let b = realistic_channel(&conda_data(), SEED, SCALE).unwrap();
    assert_eq!(a.packages.len(), b.packages.len());
    for (p, q) in a.packages.iter().zip(&b.packages) {
        assert_eq!(
            (&p.name, &p.version, &p.build, &p.depends, p.timestamp_ms),
            (&q.name, &q.version, &q.build, &q.depends, q.timestamp_ms)
        );
        assert_eq!(p.files.len(), q.files.len(), "{}", p.name);
        for (f, g) in p.files.iter().zip(&q.files) {
            assert_eq!((&f.path, f.mode, &f.content), (&g.path, g.mode, &g.content));
        }
    }
    assert_eq!(a.courses.len(), b.courses.len());

    // the same archives, byte for byte
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for name in ["libsqlite", "traitlets", "markupsafe", "python"] {
        let p = a.packages.iter().find(|p| p.name == name).unwrap();
        let q = b.packages.iter().find(|p| p.name == name).unwrap();
        let x =
            std::fs::read(write_package(dirs[0].path(), p, ArchiveFormat::Conda).unwrap()).unwrap();
        let y =
            std::fs::read(write_package(dirs[1].path(), q, ArchiveFormat::Conda).unwrap()).unwrap();
        assert!(x == y, "{name} is written the same twice");
    }

    // another seed, other contents
    let c = realistic_channel(&conda_data(), SEED + 1, SCALE).unwrap();
    let python = |ch: &RealisticChannel| {
        ch.packages
            .iter()
            .find(|p| p.name == "python")
            .unwrap()
            .files
            .iter()
            .find(|f| !f.symlink && f.content.len() > 1000)
            .unwrap()
            .content
            .clone()
    };
    assert_ne!(python(&a), python(&c));
}

#[test]
fn packages_look_like_conda_forge_ones() {
    let channel = realistic_channel(&conda_data(), SEED, SCALE).unwrap();
    let model = model_size(&conda_data(), SEED, SCALE).unwrap();
    assert_eq!(total_size(&channel), model.total_bytes);

    let full = model_size(&conda_data(), SEED, 1.0).unwrap();
    eprintln!(
        "scale 1.0: Binder environment {:.1} MB in {} files; whole channel {:.1} MB in {} files",
        full.binder_bytes as f64 / 1e6,
        full.binder_files,
        full.total_bytes as f64 / 1e6,
        full.total_files
    );
    assert!(
        (300_000_000..800_000_000).contains(&full.binder_bytes),
        "{full:?}"
    );

    let mut timestamps = std::collections::BTreeSet::new();
    let (mut with_placeholder, mut links) = (0, 0);
    for p in &channel.packages {
        let t = p.timestamp_ms / 1000;
        assert!(
            (1_704_067_200..1_767_225_600).contains(&t),
            "{} {t}",
            p.name
        );
        assert!(
            timestamps.insert(t),
            "{} has a timestamp of its own",
            p.name
        );
        let py_ext = p.subdir == "linux-64" && p.build.starts_with("py3");
        let noarch_python = p.noarch.as_deref() == Some("python");
        assert_eq!(noarch_python, p.build.starts_with("pyh"), "{}", p.name);
        if py_ext || noarch_python {
            assert!(
                p.depends.iter().any(|d| d.starts_with("python ")),
                "{} depends on python: {:?}",
                p.name,
                p.depends
            );
        }
        for f in &p.files {
            if noarch_python {
                assert!(f.path.starts_with("site-packages/"), "{}", f.path);
            }
            if f.symlink {
                links += 1;
                continue;
            }
            if f.path.starts_with("bin/") {
                assert_eq!(f.mode, 0o755, "{}", f.path);
            }
            let Some(how) = f.placeholder else { continue };
            with_placeholder += 1;
            let ph = placeholder();
            let at = f
                .content
                .windows(ph.len())
                .position(|w| w == ph.as_bytes())
                .unwrap_or_else(|| panic!("{} holds the placeholder", f.path));
            if how == PlaceholderMode::Binary {
                let end = at + ph.len();
                let nul = f.content[end..].iter().position(|b| *b == 0).unwrap();
                assert!(f.content[end + nul..].starts_with(&[0; 8]), "{}", f.path);
            }
        }
    }
    assert!(
        with_placeholder > 100 && links > 100,
        "{with_placeholder} {links}"
    );

    // contents compress like real files
    let mut raw = 0;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    for name in ["python", "numpy", "jupyterlab", "nodejs", "babel"] {
        let p = channel.packages.iter().find(|p| p.name == name).unwrap();
        for f in p.files.iter().filter(|f| !f.symlink) {
            raw += f.content.len();
            gz.write_all(&f.content).unwrap();
        }
    }
    let ratio = raw as f64 / gz.finish().unwrap().len() as f64;
    eprintln!(
        "gzip ratio of python, numpy, jupyterlab, nodejs, babel at scale {SCALE}: {ratio:.2}"
    );
    assert!((1.8..=4.5).contains(&ratio), "{ratio}");
}
