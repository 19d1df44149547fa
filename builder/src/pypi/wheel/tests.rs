//! End-to-end tests of wheel installs: layouts, RECORD, launchers, and the wheels refused.

use super::archive::{S_IFDIR, S_IFLNK, S_IFMT};
use super::record::{csv_field, csv_rows, urlsafe_b64};
use super::*;
use std::path::PathBuf;
use std::time::SystemTime;
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

const DIST: &str = "demo_pkg-1.0.dist-info";
const FILE: &str = "demo_pkg-1.0-py3-none-any.whl";
const SITE: &str = "lib/python3.12/site-packages";
const PYTHON: &str = "/opt/conda/bin/python3.12";
const EPOCH: u64 = 1_700_000_000;
const WHEEL: &[u8] =
    b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";

/// An archive entry: path, bytes, unix mode (a symlink to the bytes with `S_IFLNK`).
type E<'a> = (&'a str, &'a [u8], u32);

/// The RECORD pip's wheel builders write for `entries`, in `dist_info`.
fn record_of(entries: &[E], dist_info: &str) -> String {
    let mut text = String::new();
    for (path, bytes, _) in entries {
        let hash = urlsafe_b64(&Sha256::digest(bytes));
        let line = format!("{},sha256={hash},{}\n", csv_field(path), bytes.len());
        text.push_str(&line);
    }
    text + &format!("{dist_info}/RECORD,,\n")
}

/// Writes a wheel of `entries` plus a RECORD (`record`, or the right one).
fn write_wheel(dir: &Path, entries: &[E], record: Option<&str>) -> PathBuf {
    let dist_info = entries
        .iter()
        .find_map(|(p, _, _)| p.split_once('/').filter(|(t, _)| t.ends_with(".dist-info")))
        .map_or(DIST, |(top, _)| top);
    let record = record.map_or_else(|| record_of(entries, dist_info), str::to_string);
    let path = dir.join(FILE);
    let mut zip = ZipWriter::new(File::create(&path).unwrap());
    for (name, bytes, mode) in entries {
        let options = SimpleFileOptions::default().unix_permissions(*mode);
        if mode & S_IFMT == S_IFLNK {
            let target = std::str::from_utf8(bytes).unwrap();
            zip.add_symlink(*name, target, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
    }
    zip.start_file(format!("{dist_info}/RECORD"), SimpleFileOptions::default())
        .unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
    path
}

/// METADATA and WHEEL, then `extra`.
fn basic<'a>(extra: &[E<'a>]) -> Vec<E<'a>> {
    let mut entries: Vec<E<'a>> = vec![
        (
            "demo_pkg-1.0.dist-info/METADATA",
            b"Name: demo-pkg\nVersion: 1.0\n",
            0o644,
        ),
        ("demo_pkg-1.0.dist-info/WHEEL", WHEEL, 0o644),
    ];
    entries.extend_from_slice(extra);
    entries
}

fn target(requested: bool) -> InstallTarget<'static> {
    InstallTarget {
        site_packages: SITE,
        python: PYTHON,
        requested,
        epoch: EPOCH,
    }
}

/// Installs a wheel of `entries` into a fresh directory.
fn install(
    entries: &[E],
    record: Option<&str>,
    requested: bool,
) -> (tempfile::TempDir, Result<InstalledWheel, PypiError>) {
    let work = tempfile::tempdir().unwrap();
    let wheel = write_wheel(work.path(), entries, record);
    let dest = work.path().join("prefix");
    std::fs::create_dir(&dest).unwrap();
    let result = install_wheel(&wheel, FILE, &target(requested), &dest);
    (work, result)
}

/// The problem of a refused wheel.
fn refused(entries: &[E], record: Option<&str>) -> String {
    match install(entries, record, true).1 {
        Err(PypiError::BadWheel { wheel, problem }) => {
            assert_eq!(wheel, FILE);
            problem
        }
        Err(other) => panic!("not BadWheel: {other}"),
        Ok(installed) => panic!("installed: {installed:?}"),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

const ENTRY_POINTS: &[u8] = b"[console_scripts]\ndemo = demo.cli:main.run [extra]\n\n\
    [gui_scripts]\ndemo-gui=demo:gui\n\n[other]\nx = y:z\n";

fn layout_entries() -> Vec<E<'static>> {
    basic(&[
        ("demo/__init__.py", b"print('hi')\n", 0o644),
        ("demo/_speed.so", b"\x7fELF", 0o755),
        ("demo/a,b.txt", b"comma", 0o600),
        ("demo_pkg-1.0.data/purelib/pure.py", b"pure\n", 0o644),
        ("demo_pkg-1.0.data/platlib/plat.py", b"plat\n", 0o644),
        (
            "demo_pkg-1.0.data/scripts/run",
            b"#!python -u\nprint(1)\n",
            0o644,
        ),
        (
            "demo_pkg-1.0.data/scripts/runw",
            b"#!pythonw\r\nprint(2)\n",
            0o644,
        ),
        (
            "demo_pkg-1.0.data/scripts/tool.sh",
            b"#!/bin/sh\necho\n",
            0o644,
        ),
        ("demo_pkg-1.0.data/data/share/demo/a.txt", b"data\n", 0o644),
        ("demo_pkg-1.0.data/headers/demo.h", b"int x;\n", 0o644),
        (
            "demo_pkg-1.0.dist-info/entry_points.txt",
            ENTRY_POINTS,
            0o644,
        ),
    ])
}

#[test]
fn installs_every_scheme_where_pip_does() {
    let (work, installed) = install(&layout_entries(), None, true);
    let installed = installed.unwrap();
    assert_eq!(installed.files, expected_files());
    assert_eq!(installed.dist_info, format!("{SITE}/{DIST}"));
    let root = work.path().join("prefix");
    let site = root.join(SITE);
    assert_eq!(
        read(&root.join("bin/run")),
        format!("#!{PYTHON} -u\nprint(1)\n")
    );
    assert_eq!(
        read(&root.join("bin/runw")),
        format!("#!{PYTHON}\nprint(2)\n")
    );
    assert_eq!(read(&root.join("bin/tool.sh")), "#!/bin/sh\necho\n");
    assert_eq!(read(&root.join("share/demo/a.txt")), "data\n");
    assert_eq!(
        read(&root.join("include/python3.12/demo_pkg/demo.h")),
        "int x;\n"
    );
    assert_eq!(read(&site.join("pure.py")), "pure\n");
    assert_eq!(read(&site.join("plat.py")), "plat\n");
    for (file, want) in [
        ("bin/run", 0o755),
        ("bin/tool.sh", 0o755),
        ("bin/demo", 0o755),
        ("bin/demo-gui", 0o755),
        ("share/demo/a.txt", 0o644),
    ] {
        assert_eq!(mode(&root.join(file)), want, "{file}");
    }
    assert_eq!(mode(&site.join("demo/_speed.so")), 0o755);
    assert_eq!(mode(&site.join("demo/a,b.txt")), 0o644);
    assert_eq!(read(&site.join(DIST).join("INSTALLER")), "trousse\n");
    assert_eq!(read(&site.join(DIST).join("REQUESTED")), "");
}

/// What installing [`layout_entries`] writes, sorted.
fn expected_files() -> Vec<String> {
    let mut expected: Vec<String> = [
        "bin/demo",
        "bin/demo-gui",
        "bin/run",
        "bin/runw",
        "bin/tool.sh",
        "include/python3.12/demo_pkg/demo.h",
        "share/demo/a.txt",
    ]
    .map(String::from)
    .to_vec();
    let site = [
        "demo/__init__.py",
        "demo/_speed.so",
        "demo/a,b.txt",
        "pure.py",
        "plat.py",
    ];
    expected.extend(site.map(|p| format!("{SITE}/{p}")));
    let dist_info = [
        "INSTALLER",
        "METADATA",
        "RECORD",
        "REQUESTED",
        "WHEEL",
        "entry_points.txt",
    ];
    expected.extend(dist_info.map(|p| format!("{SITE}/{DIST}/{p}")));
    expected.sort();
    expected
}

#[test]
fn launchers_are_pips() {
    let (work, installed) = install(&layout_entries(), None, true);
    installed.unwrap();
    let root = work.path().join("prefix");
    let want = format!(
        "#!{PYTHON}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom demo.cli import main\n\
         if __name__ == \"__main__\":\n    \
         sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    \
         sys.exit(main.run())\n"
    );
    assert_eq!(read(&root.join("bin/demo")), want);
    assert!(read(&root.join("bin/demo-gui")).contains("from demo import gui\n"));
    assert!(read(&root.join("bin/demo-gui")).ends_with("    sys.exit(gui())\n"));
}

#[test]
fn record_is_rewritten_and_matches_the_files() {
    let (work, installed) = install(&layout_entries(), None, true);
    let installed = installed.unwrap();
    let root = work.path().join("prefix");
    let site = root.join(SITE);
    let text = read(&site.join(DIST).join("RECORD"));
    assert!(text.contains("\"demo/a,b.txt\",sha256="), "{text}");
    assert!(text.starts_with("../../../bin/demo,sha256="), "{text}");
    assert!(text.ends_with(&format!("\n{DIST}/RECORD,,\n")), "{text}");
    let rows = csv_rows(&text).unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let mut sorted = paths[..paths.len() - 1].to_vec();
    sorted.sort();
    assert_eq!(sorted, paths[..paths.len() - 1]);
    let mut listed = Vec::new();
    for row in &rows[..rows.len() - 1] {
        let bytes = std::fs::read(site.join(&row[0])).unwrap();
        assert_eq!(
            row[1],
            format!("sha256={}", urlsafe_b64(&Sha256::digest(&bytes)))
        );
        assert_eq!(row[2], bytes.len().to_string());
        let on_disk = std::fs::canonicalize(site.join(&row[0])).unwrap();
        listed.push(
            on_disk
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    listed.push(format!("{SITE}/{DIST}/RECORD"));
    listed.sort();
    assert_eq!(listed, installed.files);
}

/// Every path under `root` with its mode, mtime and bytes.
fn tree(root: &Path) -> Vec<(String, u32, SystemTime, Vec<u8>)> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let bytes = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                vec![]
            };
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            (
                rel,
                meta.permissions().mode(),
                meta.modified().unwrap(),
                bytes,
            )
        })
        .collect()
}

#[test]
fn installs_are_identical_and_stamped() {
    let (first, installed) = install(&layout_entries(), None, false);
    let installed = installed.unwrap();
    assert!(!installed.files.iter().any(|f| f.ends_with("/REQUESTED")));
    let (second, again) = install(&layout_entries(), None, false);
    assert_eq!(again.unwrap(), installed);
    let (one, two) = (
        tree(&first.path().join("prefix")),
        tree(&second.path().join("prefix")),
    );
    assert_eq!(one, two);
    let epoch = UNIX_EPOCH + Duration::from_secs(EPOCH);
    for (path, mode, mtime, _) in &one {
        assert_eq!(*mtime, epoch, "{path}");
        if mode & S_IFMT == S_IFDIR {
            assert_eq!(mode & 0o7777, 0o755, "{path}");
        }
    }
    assert!(!one.iter().any(|(p, ..)| p.ends_with(".pyc")));
}

#[test]
fn the_wheels_installer_is_checked_then_replaced() {
    let entries = basic(&[("demo_pkg-1.0.dist-info/INSTALLER", b"pip\n", 0o644)]);
    let (work, installed) = install(&entries, None, false);
    let installed = installed.unwrap();
    let installer = work
        .path()
        .join("prefix")
        .join(SITE)
        .join(DIST)
        .join("INSTALLER");
    assert_eq!(read(&installer), "trousse\n");
    assert_eq!(installed.files.len(), 4);
}

#[test]
fn refuses_unsafe_paths_and_types() {
    let problem = refused(&basic(&[("../evil", b"x", 0o644)]), None);
    assert!(problem.contains("\"../evil\""), "{problem}");
    let problem = refused(&basic(&[("/tmp/evil", b"x", 0o644)]), None);
    assert!(problem.contains("absolute"), "{problem}");
    let problem = refused(&basic(&[("demo\\x.py", b"x", 0o644)]), None);
    assert!(problem.contains("backslash"), "{problem}");
    let problem = refused(&basic(&[("demo//x.py", b"x", 0o644)]), None);
    assert!(problem.contains("empty component"), "{problem}");
    let problem = refused(
        &basic(&[("demo/link", b"/etc/passwd", S_IFLNK | 0o777)]),
        None,
    );
    assert!(
        problem.contains("demo/link") && problem.contains("symbolic link"),
        "{problem}"
    );
}

#[test]
fn refuses_what_maps_badly() {
    let entries = basic(&[
        ("demo/x.py", b"1", 0o644),
        ("demo_pkg-1.0.data/purelib/demo/x.py", b"2", 0o644),
    ]);
    let problem = refused(&entries, None);
    assert!(problem.contains("two of its files"), "{problem}");
    let problem = refused(&basic(&[("demo_pkg-1.0.data/etc/x", b"1", 0o644)]), None);
    assert!(problem.contains("unknown .data scheme"), "{problem}");
    let entries = basic(&[
        ("demo", b"1", 0o644),
        ("demo_pkg-1.0.data/purelib/demo/x", b"2", 0o644),
    ]);
    let problem = refused(&entries, None);
    assert!(problem.contains("both a file and a directory"), "{problem}");
}

#[test]
fn refuses_a_record_that_does_not_match() {
    let entries = basic(&[("demo/__init__.py", b"print('hi')\n", 0o644)]);
    let mut wrong = entries.clone();
    wrong[2].1 = b"print('bye')\n";
    let problem = refused(&entries, Some(&record_of(&wrong, DIST)));
    assert!(
        problem.contains("demo/__init__.py does not match its sha256"),
        "{problem}"
    );
    let problem = refused(&entries, Some(&record_of(&entries[..2], DIST)));
    assert!(
        problem.contains("demo/__init__.py is not listed in RECORD"),
        "{problem}"
    );
    let mut more = entries.clone();
    more.push(("demo/gone.py", b"", 0o644));
    let problem = refused(&entries, Some(&record_of(&more, DIST)));
    assert!(problem.contains("RECORD lists demo/gone.py"), "{problem}");
    let unhashed = format!("{}demo/__init__.py,,\n", record_of(&entries[..2], DIST));
    let problem = refused(&entries, Some(&unhashed));
    assert!(
        problem.contains("no sha256 for demo/__init__.py"),
        "{problem}"
    );
}

#[test]
fn refuses_bad_metadata() {
    let entries = vec![
        ("other-1.0.dist-info/METADATA", &b"Name: other\n"[..], 0o644),
        ("other-1.0.dist-info/WHEEL", WHEEL, 0o644),
    ];
    let problem = refused(&entries, None);
    assert!(
        problem.contains("other-1.0.dist-info is not named after"),
        "{problem}"
    );
    let v2 = &b"Wheel-Version: 2.0\n"[..];
    let entries = vec![
        (
            "demo_pkg-1.0.dist-info/METADATA",
            &b"Name: demo-pkg\n"[..],
            0o644,
        ),
        ("demo_pkg-1.0.dist-info/WHEEL", v2, 0o644),
    ];
    let problem = refused(&entries, None);
    assert!(problem.contains("Wheel-Version \"2.0\""), "{problem}");
    let problem = refused(&entries[..1], None);
    assert!(
        problem.contains("no demo_pkg-1.0.dist-info/WHEEL"),
        "{problem}"
    );
}

#[test]
fn accepts_a_dist_info_spelled_differently() {
    let entries = vec![
        (
            "Demo.Pkg-1.0.0.dist-info/METADATA",
            &b"Name: demo-pkg\n"[..],
            0o644,
        ),
        ("Demo.Pkg-1.0.0.dist-info/WHEEL", WHEEL, 0o644),
    ];
    let (_work, installed) = install(&entries, None, false);
    assert_eq!(
        installed.unwrap().dist_info,
        format!("{SITE}/Demo.Pkg-1.0.0.dist-info")
    );
}

#[test]
fn refuses_bad_entry_points() {
    for (text, want) in [
        (
            &b"[console_scripts]\n../x = demo:main\n"[..],
            "not a safe file name",
        ),
        (
            b"[console_scripts]\na/b = demo:main\n",
            "not a safe file name",
        ),
        (b"[gui_scripts]\n.. = demo:main\n", "not a safe file name"),
        (
            b"[console_scripts]\nx = demo-x:main\n",
            "not module:attribute",
        ),
        (b"[console_scripts]\nx = demo\n", "not module:attribute"),
        (
            b"[console_scripts]\nx = demo:main()\n",
            "not module:attribute",
        ),
        (
            b"[console_scripts]\nx = demo:main\n[gui_scripts]\nx = demo:gui\n",
            "twice",
        ),
    ] {
        let entries = basic(&[("demo_pkg-1.0.dist-info/entry_points.txt", text, 0o644)]);
        let problem = refused(&entries, None);
        assert!(problem.contains(want), "{problem}");
    }
}

#[test]
fn refuses_a_non_empty_destination() {
    let work = tempfile::tempdir().unwrap();
    let wheel = write_wheel(work.path(), &basic(&[]), None);
    let result = install_wheel(&wheel, FILE, &target(false), work.path());
    assert!(matches!(result, Err(PypiError::Io { .. })));
}
