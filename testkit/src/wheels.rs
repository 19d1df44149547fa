//! Wheels and PEP 503 indexes written for tests and benchmarks: real zip
//! archives with METADATA, WHEEL and a RECORD that hashes every file, and a
//! static `simple/` tree any HTTP server (or `file://`) serves.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// A wheel to write.
#[derive(Debug, Clone)]
pub struct WheelSpec {
    /// The distribution name, as written in the file name (`_` for `-`).
    pub name: String,
    /// The version.
    pub version: String,
    /// The tag triple, e.g. `py3-none-any` or `cp311-cp311-manylinux_2_17_x86_64`.
    pub tag: String,
    /// `Requires-Dist` lines.
    pub requires: Vec<String>,
    /// `Provides-Extra` names.
    pub extras: Vec<String>,
    /// `Requires-Python`, if any.
    pub requires_python: Option<String>,
    /// Files at the wheel's root (path, content, executable).
    pub files: Vec<(String, Vec<u8>, bool)>,
    /// `entry_points.txt` lines, by section.
    pub entry_points: BTreeMap<String, Vec<String>>,
}

impl WheelSpec {
    /// A pure wheel with one module `NAME/__init__.py` that knows its version.
    pub fn new(name: &str, version: &str) -> Self {
        let module = name.replace('-', "_");
        Self {
            name: module.clone(),
            version: version.into(),
            tag: "py3-none-any".into(),
            requires: Vec::new(),
            extras: Vec::new(),
            requires_python: None,
            files: vec![(
                format!("{module}/__init__.py"),
                format!("__version__ = \"{version}\"\n").into_bytes(),
                false,
            )],
            entry_points: BTreeMap::new(),
        }
    }

    /// Sets the tag triple.
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = tag.into();
        self
    }

    /// Adds a `Requires-Dist` line.
    pub fn requires(mut self, requirement: &str) -> Self {
        self.requires.push(requirement.into());
        self
    }

    /// Adds an extra.
    pub fn extra(mut self, extra: &str) -> Self {
        self.extras.push(extra.into());
        self
    }

    /// Sets `Requires-Python`.
    pub fn requires_python(mut self, spec: &str) -> Self {
        self.requires_python = Some(spec.into());
        self
    }

    /// Adds a file.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>, executable: bool) -> Self {
        self.files.push((path.into(), content.into(), executable));
        self
    }

    /// Adds an entry point line (`name = module:attr`) to a section.
    pub fn entry_point(mut self, section: &str, line: &str) -> Self {
        self.entry_points
            .entry(section.into())
            .or_default()
            .push(line.into());
        self
    }

    /// The wheel's file name.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.whl", self.name, self.version, self.tag)
    }

    fn dist_info(&self) -> String {
        format!("{}-{}.dist-info", self.name, self.version)
    }

    fn metadata(&self) -> String {
        let mut text = format!(
            "Metadata-Version: 2.1\nName: {}\nVersion: {}\n",
            self.name, self.version
        );
        if let Some(python) = &self.requires_python {
            text.push_str(&format!("Requires-Python: {python}\n"));
        }
        for extra in &self.extras {
            text.push_str(&format!("Provides-Extra: {extra}\n"));
        }
        for requirement in &self.requires {
            text.push_str(&format!("Requires-Dist: {requirement}\n"));
        }
        text.push_str("\nA test distribution.\n");
        text
    }

    /// Every archive member but RECORD, in order.
    fn members(&self) -> Vec<(String, Vec<u8>, bool)> {
        let info = self.dist_info();
        let mut members = self.files.clone();
        members.push((
            format!("{info}/METADATA"),
            self.metadata().into_bytes(),
            false,
        ));
        let wheel = format!(
            "Wheel-Version: 1.0\nGenerator: trousse-testkit\nRoot-Is-Purelib: {}\nTag: {}\n",
            self.tag.ends_with("-any"),
            self.tag
        );
        members.push((format!("{info}/WHEEL"), wheel.into_bytes(), false));
        if !self.entry_points.is_empty() {
            let text: String = self
                .entry_points
                .iter()
                .map(|(section, lines)| format!("[{section}]\n{}\n\n", lines.join("\n")))
                .collect();
            members.push((format!("{info}/entry_points.txt"), text.into_bytes(), false));
        }
        members
    }
}

/// The RECORD hash of some bytes: `sha256=` and urlsafe base64 without padding.
pub fn record_hash(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digest = Sha256::digest(data);
    let mut out = String::from("sha256=");
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Writes the wheel into `dir`; returns its path.
pub fn write_wheel(dir: &Path, spec: &WheelSpec) -> Result<PathBuf> {
    let path = dir.join(spec.file_name());
    let file = fs_err::File::create(&path)?;
    let mut zip = zip::ZipWriter::new(file);
    let mut record = String::new();
    for (name, data, executable) in spec.members() {
        let mode = if executable { 0o755 } else { 0o644 };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(mode);
        zip.start_file(name.as_str(), options)?;
        zip.write_all(&data)?;
        record.push_str(&format!("{name},{},{}\n", record_hash(&data), data.len()));
    }
    let record_name = format!("{}/RECORD", spec.dist_info());
    record.push_str(&format!("{record_name},,\n"));
    zip.start_file(
        record_name.as_str(),
        zip::write::SimpleFileOptions::default().last_modified_time(zip::DateTime::default()),
    )?;
    zip.write_all(record.as_bytes())?;
    zip.finish().context("finishing the wheel")?;
    Ok(path)
}

/// Writes a (fake) source distribution, `NAME-VERSION.tar.gz`, into `dir`.
pub fn write_sdist(dir: &Path, name: &str, version: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}-{version}.tar.gz"));
    fs_err::write(&path, b"not really a tarball: nothing builds it")?;
    Ok(path)
}

/// A project name as PEP 503 normalizes it.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Writes a PEP 503 tree `root/simple/` of the files in `files_dir` (wheels
/// and sdists), with `#sha256=` fragments; the files themselves are linked
/// from `../../files/NAME` (the caller puts them in `root/files/`).
pub fn write_simple_index(root: &Path, files: &[PathBuf]) -> Result<()> {
    let mut projects: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    fs_err::create_dir_all(root.join("files"))?;
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .context("a file name")?
            .to_string();
        let target = root.join("files").join(&name);
        if file != &target {
            fs_err::copy(file, &target)?;
        }
        let project = name.split('-').next().unwrap_or_default();
        let sha = hex::encode(Sha256::digest(fs_err::read(&target)?));
        projects
            .entry(normalize(project))
            .or_default()
            .push((name, sha));
    }
    let simple = root.join("simple");
    let mut listing = String::from("<!DOCTYPE html>\n<html><body>\n");
    for (project, files) in &projects {
        listing.push_str(&format!("<a href=\"{project}/\">{project}</a>\n"));
        let dir = simple.join(project);
        fs_err::create_dir_all(&dir)?;
        let mut page = String::from("<!DOCTYPE html>\n<html><body>\n");
        for (name, sha) in files {
            page.push_str(&format!(
                "<a href=\"../../files/{name}#sha256={sha}\">{name}</a><br/>\n"
            ));
        }
        page.push_str("</body></html>\n");
        fs_err::write(dir.join("index.html"), page)?;
    }
    listing.push_str("</body></html>\n");
    fs_err::write(simple.join("index.html"), listing)?;
    Ok(())
}

/// `count` synthetic pure wheels `wheel-000`.. in three versions each (1.0,
/// 1.1, 2.0), each 1.x depending on one to two later ones with ranges, and a
/// module of a few kilobytes: a realistic small dependency graph for
/// resolution and install benchmarks. Deterministic from `seed`.
pub fn synthetic_wheels(count: usize, seed: u64) -> Vec<WheelSpec> {
    let mut rng = crate::Rng::new(seed);
    let mut wheels = Vec::new();
    for i in 0..count {
        for version in ["1.0", "1.1", "2.0"] {
            let name = format!("wheel-{i:03}");
            let len = 2048 + rng.below(8192) as usize;
            let payload = hex::encode(rng.bytes(len));
            let mut spec = WheelSpec::new(&name, version).file(
                &format!("{}/data.py", name.replace('-', "_")),
                format!("DATA = \"{payload}\"\n"),
                false,
            );
            if version != "2.0" {
                for _ in 0..1 + rng.below(2) {
                    if i + 1 < count {
                        let dep = i + 1 + rng.below((count - i - 1).min(5) as u64) as usize;
                        spec = spec.requires(&format!("wheel-{dep:03}>=1.0,<2"));
                    }
                }
            }
            wheels.push(spec);
        }
    }
    wheels
}
