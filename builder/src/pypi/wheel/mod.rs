//! Installs a wheel into a staging directory without running Python.
//!
//! The wheel is untrusted: every path is checked before anything is written,
//! every file is checked against `RECORD` while it is streamed, and the bytes
//! actually decompressed are capped. What is written depends on the wheel and
//! the [`InstallTarget`] only (modes, times and the rewritten `RECORD` are
//! normalized), so installing the same wheel twice gives identical trees.

mod archive;
mod launchers;
mod names;
mod record;
mod schemes;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, FileTimes, Permissions};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use self::archive::{Archive, Entry, MAX_BYTES};
use self::launchers::{launcher, parse_entry_points};
use self::names::{find_data_dir, find_dist_info, WheelName};
use self::record::{parse_record, record_text, urlsafe_b64, Hashed, Listed, Written};
use self::schemes::Layout;
use crate::pypi::PypiError;

/// Where and how a wheel is installed.
pub(crate) struct InstallTarget<'a> {
    /// The site-packages directory relative to the prefix, e.g. "lib/python3.12/site-packages".
    pub site_packages: &'a str,
    /// The interpreter the image runs scripts with, absolute, e.g. "/opt/conda/bin/python3.12".
    pub python: &'a str,
    /// Whether the wheel was asked for directly (writes `REQUESTED`).
    pub requested: bool,
    /// The modification time (seconds since the epoch) of every file and directory written.
    pub epoch: u64,
}

/// What installing a wheel wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstalledWheel {
    /// Every file written, relative to the staging root (= the prefix), sorted.
    pub files: Vec<String>,
    /// The `.dist-info` directory, relative to the staging root.
    pub dist_info: String,
}

/// Unpacks `wheel` (whose file name is `file_name`) into `dest`, which stands for the prefix.
pub(crate) fn install_wheel(
    wheel: &Path,
    file_name: &str,
    target: &InstallTarget<'_>,
    dest: &Path,
) -> Result<InstalledWheel, PypiError> {
    ensure_empty(dest)?;
    let name = WheelName::parse(file_name)?;
    let layout = Layout::new(target, &name.name)?;
    let file = File::open(wheel).map_err(PypiError::io("opening the wheel", wheel))?;
    let zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad(file_name, format!("it is not a zip archive ({e})")))?;
    let mut archive = Archive {
        zip,
        wheel: file_name,
        budget: MAX_BYTES,
    };
    let entries = archive.entries()?;
    let dist_info = find_dist_info(&entries, &name, file_name)?;
    let data_dir = find_data_dir(&entries, &name, file_name)?;
    archive.check_wheel_version(&dist_info)?;
    let mut install = Install {
        archive,
        target,
        layout,
        dest,
        dist_info,
        data_dir,
    };
    install.run(&entries)
}

/// A malformed or unsafe wheel.
fn bad(wheel: &str, problem: impl Into<String>) -> PypiError {
    PypiError::BadWheel {
        wheel: wheel.to_string(),
        problem: problem.into(),
    }
}

/// Refuses a staging directory that holds anything.
fn ensure_empty(dest: &Path) -> Result<(), PypiError> {
    let mut listing =
        std::fs::read_dir(dest).map_err(PypiError::io("reading the staging directory", dest))?;
    match listing.next() {
        None => Ok(()),
        Some(_) => Err(PypiError::Io {
            action: "installing a wheel into",
            path: dest.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                "the staging directory is not empty",
            ),
        }),
    }
}

/// What becomes of an archive file.
#[derive(PartialEq)]
enum Role {
    /// Installed where its scheme says.
    Installed,
    /// Checked against RECORD, then replaced by trousse's (`INSTALLER`, `REQUESTED`).
    Replaced,
    /// RECORD and its signatures: not listed in RECORD, not installed.
    Record,
}

/// Where one installed file's bytes come from.
enum Source {
    /// An archive file (a script when `script`).
    Entry {
        /// Its index in the archive.
        index: usize,
        /// Its path in the archive.
        path: String,
        /// Whether its `#!python` line is rewritten.
        script: bool,
    },
    /// Bytes trousse writes (launchers, `INSTALLER`, `REQUESTED`).
    Generated(Vec<u8>),
}

/// One file to write.
struct Output {
    /// Its bytes.
    source: Source,
    /// Whether it is made 0755 (else 0644).
    executable: bool,
}

/// An installation in progress.
struct Install<'a> {
    /// The wheel's archive.
    archive: Archive<'a>,
    /// Where it is installed.
    target: &'a InstallTarget<'a>,
    /// The scheme directories.
    layout: Layout,
    /// The staging directory (the prefix).
    dest: &'a Path,
    /// The `.dist-info` directory in the archive.
    dist_info: String,
    /// The `.data` directory in the archive, if any.
    data_dir: Option<String>,
}

impl Install<'_> {
    /// Checks RECORD, plans every file, writes them, then RECORD, then the directories' times.
    fn run(&mut self, entries: &[Entry]) -> Result<InstalledWheel, PypiError> {
        let listed = self.listed(entries)?;
        let (outputs, replaced) = self.plan(entries)?;
        let record_path = format!("{}/{}/RECORD", self.layout.site, self.dist_info);
        let mut all: Vec<&str> = outputs.keys().map(String::as_str).collect();
        all.push(&record_path);
        let dirs = self.directories(&all)?;
        for entry in replaced {
            let listed = self.listing(&listed, &entry.path)?;
            let sink_path = self.dest.join(&entry.path);
            self.archive
                .copy(entry.index, listed, &mut io::sink(), None, &sink_path)?;
        }
        let mut written = BTreeMap::new();
        for (path, output) in &outputs {
            written.insert(path.clone(), self.write(path, output, &listed)?);
        }
        let record = record_text(&written, &self.layout.site, &record_path);
        let output = Output {
            source: Source::Generated(record.into_bytes()),
            executable: false,
        };
        self.write(&record_path, &output, &listed)?;
        stamp_directories(self.dest, &dirs, self.target.epoch)?;
        let mut files: Vec<String> = written.into_keys().collect();
        files.push(record_path);
        files.sort();
        Ok(InstalledWheel {
            files,
            dist_info: format!("{}/{}", self.layout.site, self.dist_info),
        })
    }

    /// What becomes of an archive file.
    fn role(&self, path: &str) -> Role {
        let in_dist_info = path
            .strip_prefix(self.dist_info.as_str())
            .and_then(|rest| rest.strip_prefix('/'));
        match in_dist_info {
            Some("RECORD" | "RECORD.jws" | "RECORD.p7s") => Role::Record,
            Some("INSTALLER" | "REQUESTED") => Role::Replaced,
            _ => Role::Installed,
        }
    }

    /// RECORD's hash of every archive file; refuses a file missing from either.
    fn listed(&mut self, entries: &[Entry]) -> Result<BTreeMap<String, Listed>, PypiError> {
        let path = format!("{}/RECORD", self.dist_info);
        let text = self.archive.read_text(&path)?;
        let text = text.ok_or_else(|| self.archive.bad(format!("it has no {path}")))?;
        let rows = parse_record(&text).map_err(|problem| self.archive.bad(problem))?;
        let mut listed = BTreeMap::new();
        for entry in entries
            .iter()
            .filter(|e| self.role(&e.path) != Role::Record)
        {
            let path = entry.path.clone();
            let Some((hash, size)) = rows.get(&path) else {
                return Err(self.archive.bad(format!("{path} is not listed in RECORD")));
            };
            let no_hash = || {
                self.archive
                    .bad(format!("RECORD gives no sha256 for {path}"))
            };
            let hash = hash.strip_prefix("sha256=").ok_or_else(no_hash)?;
            let size = match size.as_str() {
                "" => None,
                size => Some(size.parse::<u64>().map_err(|_| {
                    self.archive
                        .bad(format!("RECORD gives {path} the size {size:?}"))
                })?),
            };
            let hash = hash.trim_end_matches('=').to_string();
            listed.insert(path.clone(), Listed { path, hash, size });
        }
        let files: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        if let Some(missing) = rows
            .keys()
            .find(|p| self.role(p) != Role::Record && !files.contains(p.as_str()))
        {
            return Err(self
                .archive
                .bad(format!("RECORD lists {missing}, which is not in the wheel")));
        }
        Ok(listed)
    }

    /// What RECORD says of `path`.
    fn listing<'l>(
        &self,
        listed: &'l BTreeMap<String, Listed>,
        path: &str,
    ) -> Result<&'l Listed, PypiError> {
        listed
            .get(path)
            .ok_or_else(|| self.archive.bad(format!("{path} is not listed in RECORD")))
    }

    /// Every file to write by path relative to the prefix, and the entries only checked.
    fn plan<'e>(
        &mut self,
        entries: &'e [Entry],
    ) -> Result<(BTreeMap<String, Output>, Vec<&'e Entry>), PypiError> {
        let mut outputs = BTreeMap::new();
        let mut replaced = Vec::new();
        for entry in entries {
            match self.role(&entry.path) {
                Role::Record => {}
                Role::Replaced => replaced.push(entry),
                Role::Installed => self.add_entry(&mut outputs, entry)?,
            }
        }
        for (name, text) in self.launchers()? {
            self.add(
                &mut outputs,
                format!("bin/{name}"),
                Source::Generated(text),
                true,
            )?;
        }
        let dist_info = format!("{}/{}", self.layout.site, self.dist_info);
        let installer = Source::Generated(b"trousse\n".to_vec());
        self.add(
            &mut outputs,
            format!("{dist_info}/INSTALLER"),
            installer,
            false,
        )?;
        if self.target.requested {
            let requested = Source::Generated(Vec::new());
            self.add(
                &mut outputs,
                format!("{dist_info}/REQUESTED"),
                requested,
                false,
            )?;
        }
        Ok((outputs, replaced))
    }

    /// Adds an archive file to write where its scheme says.
    fn add_entry(
        &self,
        outputs: &mut BTreeMap<String, Output>,
        entry: &Entry,
    ) -> Result<(), PypiError> {
        let (dest, script) = self
            .layout
            .map(&entry.path, self.data_dir.as_deref())
            .map_err(|problem| self.archive.bad(problem))?;
        let source = Source::Entry {
            index: entry.index,
            path: entry.path.clone(),
            script,
        };
        self.add(outputs, dest, source, script || entry.executable)
    }

    /// Adds a file to write, refusing a second one at the same path.
    fn add(
        &self,
        outputs: &mut BTreeMap<String, Output>,
        dest: String,
        source: Source,
        executable: bool,
    ) -> Result<(), PypiError> {
        if outputs.contains_key(&dest) {
            return Err(self
                .archive
                .bad(format!("two of its files would install to {dest}")));
        }
        outputs.insert(dest, Output { source, executable });
        Ok(())
    }

    /// The launchers of `entry_points.txt`, by name.
    fn launchers(&mut self) -> Result<BTreeMap<String, Vec<u8>>, PypiError> {
        let path = format!("{}/entry_points.txt", self.dist_info);
        let Some(text) = self.archive.read_text(&path)? else {
            return Ok(BTreeMap::new());
        };
        let mut launchers = BTreeMap::new();
        for (name, module, attr) in parse_entry_points(&text).map_err(|p| self.archive.bad(p))? {
            let text = launcher(self.target.python, &module, &attr);
            if launchers.insert(name.clone(), text.into_bytes()).is_some() {
                let problem = format!("{path} declares the script {name} twice");
                return Err(self.archive.bad(problem));
            }
        }
        Ok(launchers)
    }

    /// Creates the directories the files need (refusing a path both file and directory).
    fn directories(&self, files: &[&str]) -> Result<BTreeSet<String>, PypiError> {
        let mut dirs = BTreeSet::new();
        for file in files {
            dirs.extend(
                file.match_indices('/')
                    .map(|(at, _)| file[..at].to_string()),
            );
        }
        let files: BTreeSet<&str> = files.iter().copied().collect();
        if let Some(both) = dirs.iter().find(|dir| files.contains(dir.as_str())) {
            return Err(self
                .archive
                .bad(format!("{both} would be both a file and a directory")));
        }
        for dir in &dirs {
            let path = self.dest.join(dir);
            std::fs::create_dir(&path).map_err(PypiError::io("creating", &path))?;
        }
        Ok(dirs)
    }

    /// Writes one file with its mode and time.
    fn write(
        &mut self,
        rel: &str,
        output: &Output,
        listed: &BTreeMap<String, Listed>,
    ) -> Result<Written, PypiError> {
        let path = self.dest.join(rel);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(PypiError::io("creating", &path))?;
        let mut out = Hashed {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
            size: 0,
        };
        match &output.source {
            Source::Entry {
                index,
                path: name,
                script,
            } => {
                let python = script.then_some(self.target.python);
                let listed = self.listing(listed, name)?;
                self.archive.copy(*index, listed, &mut out, python, &path)?;
            }
            Source::Generated(bytes) => {
                out.write_all(bytes)
                    .map_err(PypiError::io("writing", &path))?;
            }
        }
        let file = out
            .inner
            .into_inner()
            .map_err(|e| PypiError::io("writing", &path)(e.into_error()))?;
        let mode = if output.executable { 0o755 } else { 0o644 };
        stamp(&file, &path, mode, self.target.epoch)?;
        Ok(Written {
            hash: urlsafe_b64(&out.hasher.finalize()),
            size: out.size,
        })
    }
}

/// Sets the mode and the access and modification times of an open file or directory.
fn stamp(file: &File, path: &Path, mode: u32, epoch: u64) -> Result<(), PypiError> {
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(PypiError::io("setting the mode of", path))?;
    let time = UNIX_EPOCH + Duration::from_secs(epoch);
    file.set_times(FileTimes::new().set_accessed(time).set_modified(time))
        .map_err(PypiError::io("setting the time of", path))
}

/// Gives the staging directory and every directory created mode 0755 and time `epoch`.
fn stamp_directories(dest: &Path, dirs: &BTreeSet<String>, epoch: u64) -> Result<(), PypiError> {
    let paths = dirs.iter().map(|dir| dest.join(dir));
    for path in paths.chain([dest.to_path_buf()]) {
        let dir = File::open(&path).map_err(PypiError::io("opening", &path))?;
        stamp(&dir, &path, 0o755, epoch)?;
    }
    Ok(())
}
