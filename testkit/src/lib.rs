//! Synthetic conda packages and channels, written with rattler's own archive
//! writer and indexer, for trousse's tests, example and benchmarks.

pub mod postgres;
pub mod realistic;
pub mod wheels;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use rattler_conda_types::compression_level::CompressionLevel;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A placeholder prefix as long as conda-build's (255 characters), so that
/// binary replacement has room for any real prefix.
pub fn placeholder() -> String {
    let mut p = String::from(
        "/home/conda/feedstock_root/build_artifacts/trousse_test_1700000000000/_h_env",
    );
    while p.len() < 255 {
        p.push_str("_placehold");
    }
    p.truncate(255);
    p
}

/// How a file's prefix placeholder is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceholderMode {
    /// Replaced as text, any length.
    Text,
    /// Replaced in place, padded with NULs.
    Binary,
}

/// One file of a package.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Path relative to the prefix.
    pub path: String,
    /// Content (for a symlink: the link target).
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Whether the content holds the placeholder, and how to replace it.
    pub placeholder: Option<PlaceholderMode>,
    /// Whether this is a symlink to `content`.
    pub symlink: bool,
    /// Whether `info/paths.json` leaves it out (it is still in the archive).
    pub unlisted: bool,
    /// The content `info/paths.json` describes (size, sha256) when not `content`.
    pub listed_as: Option<Vec<u8>>,
}

/// The archive format of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.conda` (zip of zstd tars).
    Conda,
    /// `.tar.bz2`.
    TarBz2,
}

/// A package to write.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Build string.
    pub build: String,
    /// `linux-64`, `noarch`, ...
    pub subdir: String,
    /// `generic` or `python` for noarch packages.
    pub noarch: Option<String>,
    /// Run dependencies (match specs).
    pub depends: Vec<String>,
    /// The files.
    pub files: Vec<FileSpec>,
    /// Entry points of a noarch python package (`name = module:func`).
    pub entry_points: Vec<String>,
    /// Build time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Raw `info/paths.json` entries added as they are (no file behind them).
    pub extra_paths: Vec<serde_json::Value>,
}

impl PackageSpec {
    /// A linux-64 package with no files.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            build: "h0_0".into(),
            subdir: "linux-64".into(),
            noarch: None,
            depends: Vec::new(),
            files: Vec::new(),
            entry_points: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
            extra_paths: Vec::new(),
        }
    }

    /// Makes it a noarch package (`generic` or `python`).
    pub fn noarch(mut self, kind: &str) -> Self {
        self.noarch = Some(kind.into());
        self.subdir = "noarch".into();
        self.build = if kind == "python" {
            "pyh0_0".into()
        } else {
            "0".into()
        };
        self
    }

    /// Adds a run dependency.
    pub fn depends(mut self, spec: &str) -> Self {
        self.depends.push(spec.into());
        self
    }

    /// Adds a plain file.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push(FileSpec {
            path: path.into(),
            content: content.into(),
            mode,
            placeholder: None,
            symlink: false,
            unlisted: false,
            listed_as: None,
        });
        self
    }

    /// Adds a file that `info/paths.json` describes with another content.
    pub fn tampered_file(mut self, path: &str, content: &[u8], listed_as: &[u8]) -> Self {
        self = self.file(path, content.to_vec(), 0o644);
        if let Some(f) = self.files.last_mut() {
            f.listed_as = Some(listed_as.to_vec());
        }
        self
    }

    /// Adds a symlink that is in the archive but not in `info/paths.json`.
    pub fn unlisted_symlink(mut self, path: &str, target: &str) -> Self {
        self = self.symlink(path, target);
        if let Some(f) = self.files.last_mut() {
            f.unlisted = true;
        }
        self
    }

    /// Adds a raw `info/paths.json` entry, e.g. one whose `_path` leaves the prefix.
    pub fn raw_path_entry(mut self, entry: serde_json::Value) -> Self {
        self.extra_paths.push(entry);
        self
    }

    /// Adds a file whose content holds the placeholder prefix.
    pub fn prefix_file(
        mut self,
        path: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
        how: PlaceholderMode,
    ) -> Self {
        self.files.push(FileSpec {
            path: path.into(),
            content: content.into(),
            mode,
            placeholder: Some(how),
            symlink: false,
            unlisted: false,
            listed_as: None,
        });
        self
    }

    /// Adds a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.files.push(FileSpec {
            path: path.into(),
            content: target.as_bytes().to_vec(),
            mode: 0o777,
            placeholder: None,
            symlink: true,
            unlisted: false,
            listed_as: None,
        });
        self
    }

    /// Adds an entry point (noarch python).
    pub fn entry_point(mut self, spec: &str) -> Self {
        self.entry_points.push(spec.into());
        self
    }

    /// Sets the build time (seconds since the epoch).
    pub fn timestamp(mut self, seconds: i64) -> Self {
        self.timestamp_ms = seconds * 1000;
        self
    }

    /// The archive's file name.
    pub fn file_name(&self, format: ArchiveFormat) -> String {
        let ext = match format {
            ArchiveFormat::Conda => "conda",
            ArchiveFormat::TarBz2 => "tar.bz2",
        };
        format!("{}-{}-{}.{ext}", self.name, self.version, self.build)
    }
}

/// Writes a package archive into `channel/<subdir>/` and returns its path.
pub fn write_package(channel: &Path, spec: &PackageSpec, format: ArchiveFormat) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir()?;
    let root = work.path();
    let mut paths = Vec::new();
    let mut entries = Vec::new();
    for f in &spec.files {
        let target = root.join(&f.path);
        fs_err::create_dir_all(target.parent().context("file at root")?)?;
        let listed = f.listed_as.as_ref().unwrap_or(&f.content);
        if f.symlink {
            std::os::unix::fs::symlink(String::from_utf8(f.content.clone())?, &target)?;
            if !f.unlisted {
                entries.push(json!({"_path": f.path, "path_type": "softlink", "sha256": hex::encode(Sha256::digest(listed)), "size_in_bytes": listed.len()}));
            }
        } else {
            fs_err::write(&target, &f.content)?;
            fs_err::set_permissions(&target, std::fs::Permissions::from_mode(f.mode))?;
            let mut entry = json!({
                "_path": f.path,
                "path_type": "hardlink",
                "sha256": hex::encode(Sha256::digest(listed)),
                "size_in_bytes": listed.len(),
            });
            if let Some(how) = f.placeholder {
                entry["prefix_placeholder"] = json!(placeholder());
                entry["file_mode"] = json!(match how {
                    PlaceholderMode::Text => "text",
                    PlaceholderMode::Binary => "binary",
                });
            }
            entries.push(entry);
        }
        paths.push(target);
    }
    entries.extend(spec.extra_paths.iter().cloned());
    let info = root.join("info");
    fs_err::create_dir_all(&info)?;
    let mut index = json!({
        "name": spec.name,
        "version": spec.version,
        "build": spec.build,
        "build_number": 0,
        "subdir": spec.subdir,
        "depends": spec.depends,
        "license": "BSD-3-Clause",
        "timestamp": spec.timestamp_ms,
    });
    if let Some(kind) = &spec.noarch {
        index["noarch"] = json!(kind);
    }
    let mut info_files = vec![
        ("index.json", index.to_string()),
        (
            "paths.json",
            json!({"paths": entries, "paths_version": 1}).to_string(),
        ),
        (
            "about.json",
            json!({"summary": format!("synthetic {}", spec.name)}).to_string(),
        ),
    ];
    if spec.noarch.as_deref() == Some("python") {
        info_files.push((
            "link.json",
            json!({"noarch": {"type": "python", "entry_points": spec.entry_points}, "package_metadata_version": 1}).to_string(),
        ));
    }
    for (name, content) in info_files {
        fs_err::write(info.join(name), content)?;
        paths.push(info.join(name));
    }

    let subdir = channel.join(&spec.subdir);
    fs_err::create_dir_all(&subdir)?;
    let out_path = subdir.join(spec.file_name(format));
    let timestamp = jiff::Timestamp::from_millisecond(spec.timestamp_ms)?;
    let out = fs_err::File::create(&out_path)?;
    match format {
        ArchiveFormat::Conda => rattler_package_streaming::write::write_conda_package(
            out,
            root,
            &paths,
            CompressionLevel::Default,
            Some(1),
            spec.file_name(format).trim_end_matches(".conda"),
            Some(&timestamp),
            None,
        )?,
        ArchiveFormat::TarBz2 => rattler_package_streaming::write::write_tar_bz2_package(
            out,
            root,
            &paths,
            CompressionLevel::Default,
            Some(&timestamp),
            None,
        )?,
    }
    Ok(out_path)
}

/// Writes `repodata.json` for every subdir of a channel (and an empty noarch one).
pub async fn index_channel(channel: &Path) -> Result<()> {
    fs_err::create_dir_all(channel.join("noarch"))?;
    rattler_index::index_fs(rattler_index::IndexFsConfig {
        channel: channel.to_path_buf(),
        target_platform: None,
        repodata_patch: None,
        write_zst: false,
        write_shards: false,
        repodata_revisions: Vec::new(),
        package_revision_assignment: Default::default(),
        force: true,
        max_parallel: 4,
        multi_progress: None,
    })
    .await
}

/// Compiles a static C program that prints the prefix written into it.
pub fn prefix_printer_binary() -> Result<Vec<u8>> {
    let work = tempfile::tempdir()?;
    let source = work.path().join("hello.c");
    fs_err::write(
        &source,
        format!(
            "#include <stdio.h>\nconst char prefix[] = \"{}\";\nint main(void) {{ printf(\"hello from %s\\n\", prefix); return 0; }}\n",
            placeholder()
        ),
    )?;
    let out = work.path().join("hello");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-static", "-O1", "-s", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .context("running the C compiler (cc)")?;
    if !status.success() {
        bail!("cc failed to build the static test program (is libc6-dev installed?)");
    }
    Ok(fs_err::read(out)?)
}

/// The packages of the example channel: a static program and a shell script
/// that print their relocated prefix, a noarch data package they depend on,
/// a stand-in python, and a noarch python package with an entry point.
pub fn example_packages() -> Result<Vec<PackageSpec>> {
    let binary = prefix_printer_binary()?;
    Ok(vec![
        PackageSpec::new("hello-prefix", "1.0")
            .prefix_file("bin/hello-prefix", binary, 0o755, PlaceholderMode::Binary)
            .depends("greeting-data")
            .timestamp(1_700_000_100),
        PackageSpec::new("greet", "1.0")
            .prefix_file(
                "bin/greet",
                format!("#!/bin/sh\necho \"greetings from {}\"\ncat {}/share/greeting-data/message.txt\n", placeholder(), placeholder()),
                0o755,
                PlaceholderMode::Text,
            )
            .depends("greeting-data >=1")
            .timestamp(1_700_000_200),
        PackageSpec::new("greeting-data", "1.2")
            .noarch("generic")
            .file("share/greeting-data/message.txt", "shared data\n", 0o644)
            .symlink("share/greeting-data/latest.txt", "message.txt")
            .timestamp(1_700_000_300),
        PackageSpec::new("python", "3.12.0")
            .file("bin/python3.12", "#!/bin/sh\necho stand-in python\n", 0o755)
            .symlink("bin/python", "python3.12")
            .symlink("bin/python3", "python3.12")
            .file("lib/python3.12/site-packages/README.txt", "site-packages\n", 0o644)
            .timestamp(1_700_000_400),
        PackageSpec::new("pyhello", "0.1")
            .noarch("python")
            .depends("python >=3.8")
            .file("site-packages/pyhello/__init__.py", "def main():\n    print('hello')\n", 0o644)
            .entry_point("pyhello = pyhello:main")
            .timestamp(1_700_000_500),
    ])
}

/// Writes and indexes the example channel into `dir`.
pub async fn write_example_channel(dir: &Path) -> Result<()> {
    for (i, spec) in example_packages()?.iter().enumerate() {
        let format = if i % 2 == 0 {
            ArchiveFormat::Conda
        } else {
            ArchiveFormat::TarBz2
        };
        write_package(dir, spec, format)?;
    }
    index_channel(dir).await
}

/// A small deterministic random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` bytes that compress about as well as compiled code (about 2:1).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next_u64();
            // half random bytes, half a small alphabet
            out.extend_from_slice(&word.to_le_bytes()[..4]);
            out.extend(
                word.to_le_bytes()[4..]
                    .iter()
                    .map(|b| b"abcdefgh"[(*b % 8) as usize]),
            );
        }
        out.truncate(len);
        out
    }
}

/// `count` synthetic linux-64 packages `pkg-000`..: sizes spread like real
/// packages (most small, a few large), each with a text prefix placeholder
/// in a script, some depending on earlier ones. Deterministic from `seed`.
pub fn synthetic_packages(count: usize, seed: u64) -> Vec<PackageSpec> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let name = format!("pkg-{i:03}");
            // log-uniform total size between 4 KiB and 4 MiB
            let size = 4096u64 << rng.below(11);
            let files = 1 + rng.below(20);
            let mut spec = PackageSpec::new(&name, "1.0").timestamp(1_700_000_000 + i as i64);
            for f in 0..files {
                let len = (size / files) as usize;
                spec = spec.file(&format!("lib/{name}/data-{f}.bin"), rng.bytes(len), 0o644);
            }
            spec = spec.prefix_file(
                &format!("bin/{name}"),
                format!(
                    "#!/bin/sh\nexec {}/lib/{name}/data-0.bin \"$@\"\n",
                    placeholder()
                ),
                0o755,
                PlaceholderMode::Text,
            );
            if i > 0 && rng.below(3) == 0 {
                spec = spec.depends(&format!("pkg-{:03}", rng.below(i as u64)));
            }
            spec
        })
        .collect()
}
