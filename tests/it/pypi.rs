//! PyPI packages end to end: wheels written here and real wheels downloaded
//! from PyPI by the setup, served as a PEP 503 index on loopback, resolved
//! over a conda environment whose numpy is conda's, locked, unpacked without
//! Python, and imported by the host's real Python interpreter.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::common::{
    report, run, run_ok, service, tree, trousse, umoci_unpack, ChannelServer, Workspace,
};
use trousse_testkit::{
    wheels::{write_sdist, write_simple_index, write_wheel, WheelSpec},
    PackageSpec,
};

/// The host's Python `X.Y`: the stand-in conda python gets the same, so the
/// host interpreter can import what the image's site-packages holds.
fn host_python() -> String {
    let out = run_ok(
        Command::new("python3").args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
    );
    out.trim().to_string()
}

/// Runs `code` with the host's Python over the image's `site` packages; returns stdout.
fn host_python_run(site: &Path, code: &str) -> String {
    run_ok(
        Command::new("python3")
            .env("PYTHONPATH", site)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["-c", code]),
    )
}

/// A workspace with a conda channel (python, numpy and pip with their
/// `.dist-info`) and a PEP 503 index of test wheels served on loopback.
struct PypiWorld {
    ws: Workspace,
    python: String,
    index: ChannelServer,
}

impl PypiWorld {
    fn new(extra_wheels: &[WheelSpec]) -> Self {
        let ws = Workspace::with_example_channel();
        let python = host_python();
        ws.add_packages(&conda_packages(&python));
        let mut files = Vec::new();
        let dir = ws.path("wheels");
        std::fs::create_dir_all(&dir).unwrap();
        for spec in test_wheels(&python).iter().chain(extra_wheels) {
            files.push(write_wheel(&dir, spec).unwrap());
        }
        files.push(write_sdist(&dir, "sdistonly", "1.0").unwrap());
        write_simple_index(&ws.path("index"), &files).unwrap();
        let index = ChannelServer::start(&ws.path("index"));
        Self { ws, python, index }
    }

    fn index_url(&self) -> String {
        format!("{}simple/", self.index.url())
    }

    /// A spec over the channel with these conda packages and pip lines.
    fn spec(&self, name: &str, conda: &[&str], pip: &[&str]) -> PathBuf {
        let mut pip_lines = vec![format!("--index-url {}", self.index_url())];
        pip_lines.extend(pip.iter().map(|p| p.to_string()));
        let pip_yaml: String = pip_lines
            .iter()
            .map(|p| format!("      - \"{p}\"\n"))
            .collect();
        let mut deps: Vec<String> = vec![format!("python={}", self.python)];
        deps.extend(conda.iter().map(|c| c.to_string()));
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        self.ws.spec(name, &deps, &format!("  - pip:\n{pip_yaml}"))
    }

    fn build(&self, input: &Path, output: &str, cache: &str) -> std::process::Output {
        run(trousse(&[
            "build",
            input.to_str().unwrap(),
            "--output",
            output,
            "--cache-dir",
            cache,
            "--json",
        ]))
    }

    fn site_packages(&self, rootfs: &Path) -> PathBuf {
        rootfs.join(format!("opt/conda/lib/python{}/site-packages", self.python))
    }
}

/// Conda's python stand-in, numpy and pip, each with the `.dist-info` a real one installs.
fn conda_packages(python: &str) -> Vec<PackageSpec> {
    let site = format!("lib/python{python}/site-packages");
    vec![
        PackageSpec::new("python", &format!("{python}.0"))
            .file(
                &format!("bin/python{python}"),
                "#!/bin/sh\necho stand-in\n",
                0o755,
            )
            .symlink("bin/python", &format!("python{python}"))
            .file(&format!("{site}/README.txt"), "site-packages\n", 0o644)
            .timestamp(1_700_000_400),
        PackageSpec::new("numpy", "1.26.4")
            .depends(&format!("python {python}.*"))
            .file(
                &format!("{site}/numpy/__init__.py"),
                "__version__ = '1.26.4'\n",
                0o644,
            )
            .file(
                &format!("{site}/numpy-1.26.4.dist-info/METADATA"),
                "Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.4\n",
                0o644,
            )
            .timestamp(1_700_000_600),
        PackageSpec::new("pip", "24.0")
            .noarch("python")
            .depends("python >=3.8")
            .file("site-packages/pip/__init__.py", "", 0o644)
            .file(
                "site-packages/pip-24.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: pip\nVersion: 24.0\n",
                0o644,
            )
            .timestamp(1_700_000_700),
    ]
}

/// The wheels of the test index: pure, platform-specific, with `.data`,
/// entry points, extras and markers.
fn test_wheels(python: &str) -> Vec<WheelSpec> {
    let cp = format!("cp{}", python.replace('.', ""));
    vec![
        WheelSpec::new("purelib-a", "1.0")
            .requires("helper-b>=2; python_version >= '3.8'")
            .requires("extra-c; extra == 'fast'")
            .requires("never-installed; sys_platform == 'win32'")
            .extra("fast")
            .file(
                "purelib_a/cli.py",
                "def main():\n    print('purelib-a says hi')\n",
                false,
            )
            .entry_point("console_scripts", "purea = purelib_a.cli:main"),
        WheelSpec::new("helper-b", "1.0"),
        WheelSpec::new("helper-b", "2.0"),
        WheelSpec::new("helper-b", "3.0rc1"),
        WheelSpec::new("extra-c", "1.0"),
        WheelSpec::new("platpkg", "1.0").tag(&format!(
            "{cp}-{cp}-manylinux_2_17_x86_64.manylinux2014_x86_64"
        )),
        WheelSpec::new("platpkg", "1.1").tag(&format!("{cp}-{cp}-musllinux_1_2_x86_64")),
        WheelSpec::new("platpkg", "1.2").tag(&format!("{cp}-{cp}-manylinux_2_99_x86_64")),
        WheelSpec::new("datapkg", "1.0")
            .file(
                "datapkg-1.0.data/scripts/datatool",
                "#!python\nprint('data tool')\n",
                true,
            )
            .file(
                "datapkg-1.0.data/data/share/datapkg/notes.txt",
                "notes\n",
                false,
            ),
        WheelSpec::new("usesnumpy", "1.0").requires("numpy>=1.20"),
        WheelSpec::new("wantsnewnumpy", "1.0").requires("numpy>=2"),
    ]
}

/// Unpacks the image at `oci:DIR:TAG` and returns its rootfs.
fn unpack(ws: &Workspace, layout: &Path, tag: &str) -> PathBuf {
    let into = ws.path(&format!("unpacked-{tag}"));
    std::fs::create_dir_all(&into).unwrap();
    umoci_unpack(layout, tag, &into)
}

#[test]
fn pip_section_is_resolved_locked_unpacked_and_importable() {
    let world = PypiWorld::new(&[]);
    let spec = world.spec(
        "course",
        &["numpy", "pip"],
        &["purelib-a[fast]", "platpkg", "datapkg", "usesnumpy"],
    );
    let lock = world.ws.lock(&spec, "course");
    let text = std::fs::read_to_string(&lock).unwrap();
    for wheel in [
        "purelib_a-1.0",
        "helper_b-2.0",
        "extra_c-1.0",
        "platpkg-1.0-",
        "datapkg-1.0",
        "usesnumpy-1.0",
    ] {
        assert!(text.contains(wheel), "{wheel} is locked:\n{text}");
    }
    assert!(
        !text.contains("never_installed") && !text.contains("3.0rc1"),
        "{text}"
    );
    assert!(!text.contains("files/numpy"), "numpy is conda's:\n{text}");

    let layout = world.ws.path("image");
    let out = world.build(
        &lock,
        &format!("oci:{}:course", layout.display()),
        &world.ws.cache(),
    );
    assert!(out.status.success());
    let rootfs = unpack(&world.ws, &layout, "course");
    let site = world.site_packages(&rootfs);
    let files = tree(&site);
    assert!(
        files.contains_key("numpy-1.26.4.dist-info/METADATA"),
        "conda's numpy"
    );
    assert!(
        !files
            .keys()
            .any(|k| k.starts_with("numpy-") && k.contains("INSTALLER")),
        "numpy not installed again"
    );
    let installer =
        std::fs::read_to_string(site.join("purelib_a-1.0.dist-info/INSTALLER")).unwrap();
    assert_eq!(installer, "trousse\n");
    assert!(site.join("purelib_a-1.0.dist-info/REQUESTED").exists());
    assert!(
        !site.join("helper_b-2.0.dist-info/REQUESTED").exists(),
        "a dependency only"
    );
    assert!(!files.keys().any(|k| k.ends_with(".pyc")), "no bytecode");

    let launcher = std::fs::read_to_string(rootfs.join("opt/conda/bin/purea")).unwrap();
    assert!(
        launcher.starts_with(&format!("#!/opt/conda/bin/python{}\n", world.python)),
        "{launcher}"
    );
    assert!(
        launcher.contains("from purelib_a.cli import main"),
        "{launcher}"
    );
    let script = std::fs::read_to_string(rootfs.join("opt/conda/bin/datatool")).unwrap();
    assert!(script.starts_with("#!/opt/conda/bin/python"), "{script}");
    assert!(rootfs.join("opt/conda/share/datapkg/notes.txt").exists());

    // the host's real Python imports what the image's site-packages holds
    let imported = host_python_run(&site, "import purelib_a, helper_b, extra_c, platpkg, datapkg, usesnumpy, numpy; print(helper_b.__version__, platpkg.__version__, numpy.__version__)");
    assert_eq!(imported.trim(), "2.0 1.0 1.26.4");
}

#[test]
fn builds_from_different_caches_are_identical_and_a_lock_needs_no_index_pages() {
    let world = PypiWorld::new(&[]);
    let spec = world.spec("same", &["numpy"], &["purelib-a", "usesnumpy"]);
    let lock = world.ws.lock(&spec, "same");
    let first = world.build(
        &lock,
        &format!("oci:{}:a", world.ws.path("one").display()),
        &world.ws.path("cache-one").display().to_string(),
    );
    assert!(first.status.success());
    // the index pages are gone: a lock names its wheels, nothing is resolved
    std::fs::remove_dir_all(world.ws.path("index/simple")).unwrap();
    let second = world.build(
        &lock,
        &format!("oci:{}:a", world.ws.path("two").display()),
        &world.ws.path("cache-two").display().to_string(),
    );
    assert!(second.status.success());
    let digest =
        |o: &std::process::Output| report(&String::from_utf8_lossy(&o.stdout))["digest"].clone();
    assert_eq!(digest(&first), digest(&second));
    // wheels and index pages are cache entries like packages: gc evicts them
    let cache_one = world.ws.path("cache-one");
    let wheels = || std::fs::read_dir(cache_one.join("pypi/wheels")).map_or(0, |d| d.count());
    assert!(wheels() > 0, "the wheels were cached");
    run_ok(trousse(&[
        "cache",
        "gc",
        "--max-size",
        "0",
        "--cache-dir",
        cache_one.to_str().unwrap(),
    ]));
    assert_eq!(wheels(), 0, "cache gc evicts wheels");
}

#[test]
fn a_requirement_conda_satisfies_is_not_installed_and_a_conflict_is_explained() {
    let world = PypiWorld::new(&[]);
    let spec = world.spec("conflict", &["numpy"], &["wantsnewnumpy"]);
    let out = run(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        world.ws.path("c.lock").to_str().unwrap(),
        "--cache-dir",
        &world.ws.cache(),
    ]));
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("numpy") && stderr.contains("wantsnewnumpy"),
        "{stderr}"
    );
    assert!(stderr.contains("conda"), "says numpy is conda's: {stderr}");
    assert!(!world.ws.path("c.lock").exists(), "no lock half-written");
}

#[test]
fn bad_requirements_get_clear_errors() {
    let world = PypiWorld::new(&[]);
    let cases: [(&[&str], i32, &str); 4] = [
        (&["no-such-package"], 4, "no PyPI package named 'no-such-package'"),
        (&["sdistonly"], 3, "sdist"),
        (&["helper-b --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000"], 6, "--hash"),
        (&["helper-b; sys_platform == 'win32'"], 3, "markers"),
    ];
    for (i, (pip, code, words)) in cases.iter().enumerate() {
        let spec = world.spec(&format!("bad{i}"), &[], pip);
        let out = run(trousse(&[
            "lock",
            spec.to_str().unwrap(),
            "-o",
            world.ws.path("bad.lock").to_str().unwrap(),
            "--cache-dir",
            &world.ws.cache(),
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{pip:?}: {stderr}");
        assert!(stderr.contains(words), "{pip:?}: {stderr}");
    }
}

#[test]
fn a_tampered_wheel_in_a_lock_is_refused() {
    let world = PypiWorld::new(&[]);
    let spec = world.spec("tamper", &[], &["helper-b==1.0"]);
    let lock = world.ws.lock(&spec, "tamper");
    // the index now serves other bytes under the locked file name
    let file = world.ws.path("index/files/helper_b-1.0-py3-none-any.whl");
    let other = write_wheel(
        &world.ws.path("wheels"),
        &WheelSpec::new("helper-b", "1.0").file("x.py", "evil = 1\n", false),
    )
    .unwrap();
    std::fs::copy(other, &file).unwrap();
    let out = world.build(
        &lock,
        &format!("oci:{}:t", world.ws.path("t").display()),
        &world.ws.path("cache-t").display().to_string(),
    );
    assert_eq!(out.status.code(), Some(6), "checksum mismatch");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
}

/// Real wheels from PyPI (downloaded by this setup, then served from a local
/// index): a requirements file built on its own with `--python`, and one
/// included by an environment.yml whose numpy (a dependency of patsy) conda provides.
#[test]
fn real_requirements_files_resolve_offline_from_a_local_index() {
    let world = PypiWorld::new(&[]);
    let real = world.ws.path("real");
    std::fs::create_dir_all(&real).unwrap();
    let download = run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
        ])
        .arg(&real)
        .args([
            "six==1.16.0",
            "attrs==23.2.0",
            "patsy==0.5.6",
            "tabulate==0.9.0",
            // its METADATA has a License with whitespace-only continuation lines
            "jupyter_core==5.7.2",
            "platformdirs==4.2.2",
            "traitlets==5.14.3",
        ]));
    assert!(
        download.status.success(),
        "PyPI is reachable from this machine; pip downloads the wheels"
    );
    let wheels: Vec<PathBuf> = std::fs::read_dir(&real)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    write_simple_index(&world.ws.path("real-index"), &wheels).unwrap();
    let index = ChannelServer::start(&world.ws.path("real-index"));

    // a requirements file alone: python and pip from the channel, the rest from the index
    let requirements = world.ws.path("requirements.txt");
    std::fs::write(
        &requirements,
        format!(
            "--index-url {}simple/
attrs
tabulate  # a comment
jupyter_core==5.7.2  # needs platformdirs and traitlets
",
            index.url()
        ),
    )
    .unwrap();
    let layout = world.ws.path("real-image");
    let out = run(trousse(&[
        "build",
        requirements.to_str().unwrap(),
        "--python",
        &world.python,
        "-c",
        world.ws.channel().to_str().unwrap(),
        "--output",
        &format!("oci:{}:plain", layout.display()),
        "--cache-dir",
        &world.ws.cache(),
    ]));
    assert!(out.status.success());
    let site = world.site_packages(&unpack(&world.ws, &layout, "plain"));
    let imported = host_python_run(
        &site,
        "import attrs, tabulate; print(attrs.__version__, tabulate.__version__)",
    );
    assert_eq!(imported.trim(), "23.2.0 0.9.0");
    for dependency in ["platformdirs-4.2.2", "traitlets-5.14.3"] {
        assert!(
            site.join(format!("{dependency}.dist-info/RECORD")).exists(),
            "jupyter_core's Requires-Dist, after its multi-line License, is installed: {dependency}"
        );
    }

    // patsy needs numpy and six: numpy is conda's, six comes from the index
    std::fs::write(
        world.ws.path("science.txt"),
        "patsy==0.5.6  # needs numpy and six\n",
    )
    .unwrap();
    let spec = world.ws.spec(
        "science",
        &[&format!("python={}", world.python), "numpy", "pip"],
        &format!(
            "  - pip:\n    - --index-url {}simple/\n    - -r science.txt\n",
            index.url()
        ),
    );
    let out = run(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci:{}:science", layout.display()),
        "--cache-dir",
        &world.ws.cache(),
    ]));
    assert!(out.status.success());
    let site = world.site_packages(&unpack(&world.ws, &layout, "science"));
    assert!(site.join("patsy-0.5.6.dist-info/RECORD").exists());
    assert!(site.join("patsy-0.5.6.dist-info/REQUESTED").exists());
    assert!(
        !site.join("six-1.16.0.dist-info/REQUESTED").exists(),
        "six came as a dependency"
    );
    let numpy: Vec<String> = tree(&site)
        .into_keys()
        .filter(|k| k.starts_with("numpy") && k.contains(".dist-info"))
        .collect();
    assert!(
        numpy
            .iter()
            .all(|k| k.starts_with("numpy-1.26.4.dist-info")),
        "numpy is conda's: {numpy:?}"
    );
    let imported = host_python_run(&site, "import six; print(six.__version__)");
    assert_eq!(imported.trim(), "1.16.0");
}

#[test]
fn the_service_builds_from_allowed_indexes_only() {
    let world = PypiWorld::new(&[]);
    let channel = ChannelServer::start(&world.ws.channel());
    let spec = |index: &str| {
        format!(
            "name: mine\nchannels: [\"{}\"]\ndependencies:\n  - python={}\n  - numpy\n  - pip:\n    - --index-url {index}\n    - usesnumpy\n    - helper-b\n",
            channel.url(),
            world.python
        )
    };
    let rt = service::runtime();
    // the default allow-list is the public PyPI only
    let refusing = service::Service::start(&world.ws.path("refusing"), &channel, &[]);
    let admin = refusing.token("admin", &[]);
    rt.block_on(async {
        let (status, body) =
            service::submit_yaml(&refusing, &admin, "maths", &spec(&world.index_url())).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    });
    drop(refusing);
    let allowing = service::Service::start(
        &world.ws.path("allowing"),
        &channel,
        &[
            "--allow-index",
            &world.index_url(),
            "--max-spec-packages",
            "4",
        ],
    );
    let admin = allowing.token("admin", &[]);
    rt.block_on(async {
        let (status, created) =
            service::submit_yaml(&allowing, &admin, "maths", &spec(&world.index_url())).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let env = service::wait_until(&allowing, &admin, &id, &["ready", "failed"]).await;
        assert_eq!(env["status"], "ready", "{env}");
        // an environment's packages are its conda and its PyPI packages
        let lock = env["lock"].as_str().unwrap();
        let listed = lock.split("\npackages:\n").nth(1).unwrap();
        let count = listed
            .lines()
            .filter(|l| l.starts_with("- conda:") || l.starts_with("- pypi:"))
            .count();
        assert!(listed.contains("- pypi:"), "{lock}");
        assert_eq!(env["packages"], count, "{env}");
        // a requirements.txt posted as text is read as one, never as YAML
        let (status, body) = service::send(
            service::client()
                .post(allowing.url("/api/v1/courses/maths/environments?name=reqs"))
                .bearer_auth(&admin)
                .header("content-type", "text/plain")
                .body(format!("--index-url {}\nhelper-b\n", world.index_url())),
        )
        .await;
        assert!(!body.to_string().contains("RawSpec"), "{status}: {body}");
        assert_ne!(body["error"], "invalid_spec", "{status}: {body}");
        // PyPI requirements count toward the package cap: 2 conda + 3 PyPI > 4
        let more =
            spec(&world.index_url()).replace("    - helper-b\n", "    - helper-b\n    - extra-c\n");
        let (status, body) = service::submit_yaml(&allowing, &admin, "maths", &more).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"], "too_many_packages", "{body}");
    });
}

/// Real requirement sets, pinned at the top: the issue's, a Binder example's
/// (`binder-examples/python-conda_pip`) and a hub's.
const ORACLE_SETS: [&[&str]; 3] = [
    &["matplotlib==3.9.4", "nbconvert==7.16.4"],
    &[
        "nbgitpuller==1.2.1",
        "sphinx-gallery==0.16.0",
        "pandas==2.2.2",
        "matplotlib==3.9.4",
    ],
    &["jupyterhub==5.3.0"],
];

/// The real wheels of every set for CPython `python` on manylinux x86_64,
/// downloaded by pip once per machine into a cache outside the clone.
fn oracle_wheels(python: &str) -> PathBuf {
    let all: Vec<&str> = ORACLE_SETS.iter().flat_map(|s| s.iter().copied()).collect();
    let key = hex::encode(
        &<sha2::Sha256 as sha2::Digest>::digest(format!("{python}\n{}", all.join("\n")).as_bytes())
            [..8],
    );
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = PathBuf::from(home)
        .join(".cache/trousse-tests/pypi-oracle")
        .join(key);
    if dir.join("complete").exists() {
        return dir;
    }
    let abi = format!("cp{}", python.replace('.', ""));
    let out = run(Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--only-binary=:all:"])
        .args([
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            &abi,
        ])
        .args([
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
        ])
        .args([
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "linux_x86_64",
        ])
        .arg("--dest")
        .arg(dir.join("wheels"))
        .args(&all));
    assert!(
        out.status.success(),
        "PyPI is reachable from this machine; pip downloads the wheels"
    );
    std::fs::write(dir.join("complete"), "").unwrap();
    dir
}

/// The distributions and versions uv (the reference) resolves for the
/// requirements from `index`, for CPython `python` on manylinux x86_64, with
/// numpy fixed at conda's; conda's own distributions left out.
fn reference_resolution(ws: &Workspace, index: &str, python: &str, set: &[&str]) -> Vec<String> {
    let input = ws.path("reference.in");
    std::fs::write(&input, set.join("\n")).unwrap();
    let constraints = ws.path("conda.txt");
    std::fs::write(&constraints, "numpy==1.26.4\n").unwrap();
    let out = run_ok(
        Command::new("python3")
            .args([
                "-m",
                "uv",
                "pip",
                "compile",
                "--quiet",
                "--no-header",
                "--no-annotate",
            ])
            .args([
                "--python-version",
                python,
                "--python-platform",
                "x86_64-manylinux_2_28",
            ])
            .args(["--index-url", index, "--no-cache"])
            .arg("-c")
            .arg(&constraints)
            .arg(&input),
    );
    out.lines()
        .map(|l| l.trim().to_ascii_lowercase().replace('_', "-"))
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("numpy=="))
        .collect()
}

/// The PyPI distributions and versions of a lock, as `name==version`.
fn locked_pypi(lock: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(lock).unwrap();
    let packages = text.split("\npackages:\n").nth(1).unwrap();
    let mut found = Vec::new();
    let mut in_pypi = false;
    let mut name = String::new();
    for line in packages.lines() {
        if let Some(rest) = line.strip_prefix("- ") {
            in_pypi = rest.starts_with("pypi:");
        } else if let (true, Some(n)) = (in_pypi, line.trim().strip_prefix("name: ")) {
            name = n.to_ascii_lowercase().replace('_', "-");
        } else if let (true, Some(v)) = (in_pypi, line.trim().strip_prefix("version: ")) {
            found.push(format!("{name}=={}", v.trim_matches('\'')));
        }
    }
    found.sort();
    found
}

/// trousse resolves real requirement sets to exactly what a reference
/// resolver (uv) does for the same target, from the same local index of
/// real wheels, but for what conda provides.
#[test]
fn pypi_resolution_matches_the_reference_resolver() {
    let world = PypiWorld::new(&[]);
    let wheels_dir = oracle_wheels(&world.python).join("wheels");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&wheels_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("numpy-")
        })
        .collect();
    // conda's numpy, for the reference: the version the world's conda package installs
    let stand_in = world.ws.path("stand-in");
    std::fs::create_dir_all(&stand_in).unwrap();
    files.push(write_wheel(&stand_in, &WheelSpec::new("numpy", "1.26.4")).unwrap());
    write_simple_index(&world.ws.path("oracle-index"), &files).unwrap();
    let server = ChannelServer::start(&world.ws.path("oracle-index"));
    let index = format!("{}simple/", server.url());
    for (i, set) in ORACLE_SETS.iter().enumerate() {
        let pip: String = set.iter().map(|r| format!("    - {r}\n")).collect();
        let spec = world.ws.spec(
            &format!("oracle{i}"),
            &[&format!("python={}", world.python), "numpy", "pip"],
            &format!("  - pip:\n    - --index-url {index}\n{pip}"),
        );
        let lock = world.ws.lock(&spec, &format!("oracle{i}"));
        let ours = locked_pypi(&lock);
        let mut reference = reference_resolution(&world.ws, &index, &world.python, set);
        reference.sort();
        println!(
            "{set:?}: trousse {} distributions, uv {}",
            ours.len(),
            reference.len()
        );
        assert_eq!(ours, reference, "{set:?}");
    }
}

/// A hostile index on loopback: its page of `offhost` links a wheel (and its
/// PEP 658 metadata) on another host, `localfile`'s a file of the service's
/// own disk (`local`, named as a wheel), and `moved` redirects to another host.
fn hostile_index(elsewhere: u16, local: &Path) -> ChannelServer {
    const SERVER: &str = r#"
import http.server, sys
port, elsewhere, local = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pages = {
    "/simple/offhost/": '<a href="http://127.0.0.1:%d/offhost-1.0-py3-none-any.whl" data-dist-info-metadata="true">offhost-1.0-py3-none-any.whl</a>' % elsewhere,
    "/simple/localfile/": '<a href="file://%s">localfile-1.0-py3-none-any.whl</a>' % local,
}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/simple/moved/":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/simple/moved/" % elsewhere)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = pages.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = ("<html><body>%s</body></html>" % body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;
    ChannelServer::start_script(SERVER, &[&elsewhere.to_string(), local.to_str().unwrap()])
}

/// A listener that counts the connections it is offered.
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

#[test]
fn an_allowed_index_leads_the_service_nowhere_else() {
    let world = PypiWorld::new(&[]);
    let channel = ChannelServer::start(&world.ws.channel());
    let (elsewhere, connections) = counting_listener();
    // a file of the service's host, named as the wheel the page links
    let secret = world.ws.path("secret/localfile-1.0-py3-none-any.whl");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    let canary = "CANARY-host-file-never-read";
    std::fs::write(&secret, canary).unwrap();
    let index = hostile_index(elsewhere, &secret);
    let index_url = format!("{}simple/", index.url());
    let service = service::Service::start(
        &world.ws.path("data"),
        &channel,
        &["--allow-index", &index_url],
    );
    let admin = service.token("admin", &[]);
    service::runtime().block_on(async {
        for (package, says) in [
            ("offhost", "not one of the allowed indexes'"),
            ("localfile", "only http(s) links"),
            ("moved", "redirect to"),
        ] {
            let spec = format!(
                "name: x\nchannels: [\"{}\"]\ndependencies:\n  - python={}\n  - pip\n  - pip:\n    - {package}\n",
                channel.url(),
                world.python
            );
            let (status, body) = service::submit_yaml(&service, &admin, "maths", &spec).await;
            assert_eq!(status, 403, "{package}: {body}");
            assert_eq!(body["error"], "forbidden", "{package}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(says), "{package}: {message}");
            assert!(!message.contains(canary), "{message}");
        }
        assert!(service.healthy());
    });
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a link or redirect off the allowed index was followed"
    );
}

/// A Binder repository with `requirements.txt` and `runtime.txt` (no
/// environment.yml): repo2docker's default environment with runtime.txt's
/// Python, and the requirements from the index (including one with `-r`).
#[test]
fn a_repository_requirements_txt_goes_over_the_default_environment() {
    let world = PypiWorld::new(&[]);
    // stand-ins of what repo2docker's default environment lists
    let stand_ins = [
        ("nodejs", "20.0"),
        ("ipywidgets", "8.0"),
        ("jupyter-offlinenotebook", "0.3.0"),
        ("jupyter-resource-usage", "1.0"),
        ("jupyter_server", "2.0"),
        ("jupyterhub-singleuser", "5.0"),
        ("jupyterlab", "4.0"),
        ("notebook", "7.0"),
    ];
    world.ws.add_packages(
        &stand_ins
            .iter()
            .map(|(name, version)| {
                PackageSpec::new(name, version).noarch("generic").file(
                    &format!("share/{name}/stand-in.txt"),
                    "stand-in\n",
                    0o644,
                )
            })
            .collect::<Vec<_>>(),
    );
    let repo = world.ws.path("course");
    std::fs::create_dir_all(repo.join("binder")).unwrap();
    std::fs::write(
        repo.join("binder/runtime.txt"),
        format!("python-{}\n", world.python),
    )
    .unwrap();
    std::fs::write(
        repo.join("binder/requirements.txt"),
        format!(
            "--index-url {}\n-r base-requirements.txt\nplatpkg\n",
            world.index_url()
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("binder/base-requirements.txt"),
        "purelib-a[fast]\n",
    )
    .unwrap();
    std::fs::write(repo.join("notebook.ipynb"), "{}\n").unwrap();
    crate::common::git::git(&repo, &["init", "-q", "-b", "main"]);
    crate::common::git::git(&repo, &["add", "-A"]);
    crate::common::git::git(&repo, &["commit", "-q", "-m", "course"]);

    let layout = world.ws.path("repo-image");
    let out = run(trousse(&[
        "build",
        repo.to_str().unwrap(),
        "-c",
        world.ws.channel().to_str().unwrap(),
        "--output",
        &format!("oci:{}:repo", layout.display()),
        "--cache-dir",
        &world.ws.cache(),
    ]));
    assert!(out.status.success());
    let rootfs = unpack(&world.ws, &layout, "repo");
    assert!(
        rootfs
            .join("opt/conda/share/jupyterlab/stand-in.txt")
            .exists(),
        "the default environment"
    );
    let site = world.site_packages(&rootfs);
    for dist in ["purelib_a-1.0", "extra_c-1.0", "platpkg-1.0"] {
        assert!(
            site.join(format!("{dist}.dist-info/RECORD")).exists(),
            "{dist}"
        );
    }
    let imported = host_python_run(&site, "import purelib_a, extra_c, platpkg; print('ok')");
    assert_eq!(imported.trim(), "ok");
}

/// A requirements file locks with no base pulled (the pinned default base
/// declares nothing the solve needs; this machine reaches no registry), and
/// the lock records that base for its build.
#[test]
fn a_requirements_file_locks_without_pulling_the_default_base() {
    let world = PypiWorld::new(&[]);
    let requirements = world.ws.path("requirements.txt");
    std::fs::write(
        &requirements,
        format!("--index-url {}\nhelper-b\n", world.index_url()),
    )
    .unwrap();
    let lock = world.ws.path("requirements.lock");
    let mut command = trousse(&[
        "lock",
        requirements.to_str().unwrap(),
        "--python",
        &world.python,
        "-c",
        world.ws.channel().to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &world.ws.cache(),
    ]);
    command.env_remove("TROUSSE_DEFAULT_BASE");
    let out = run(command);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("helper-b"), "{text}");
    assert!(
        text.contains("docker.io/library/ubuntu:noble"),
        "the base is recorded: {text}"
    );
}
