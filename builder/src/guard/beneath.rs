//! Files read beneath a directory and never through a symlink, so that what a
//! package or a staging directory holds cannot make trousse read a host file.
//!
//! Each lookup is one `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`;
//! where the kernel lacks it (before 5.6, or a seccomp filter that refuses it),
//! the path is walked one component at a time with `O_NOFOLLOW`.

use std::{
    fs::File,
    io,
    os::fd::OwnedFd,
    path::{Component, Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// A directory whose entries are looked up without following any symlink.
#[derive(Debug)]
pub(crate) struct Beneath {
    dir: OwnedFd,
    path: PathBuf,
}

/// What an entry is, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, fifo or socket.
    Other,
}

/// An entry's kind, permission bits, size and modification time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryMeta {
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch (`None` when before it).
    pub mtime: Option<u64>,
}

/// Whether `openat2` worked so far; cleared on the first `ENOSYS`/`EPERM`.
static OPENAT2: AtomicBool = AtomicBool::new(true);

impl Beneath {
    /// Opens `path` (which the caller trusts) as the root of later lookups.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The root's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a regular file for reading; fails on a symlink anywhere on the way.
    pub(crate) fn open_file(&self, relative: &Path) -> io::Result<File> {
        let fd = self.resolve(relative, OFlags::RDONLY)?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Reads an entry's metadata without following it if it is a symlink.
    pub(crate) fn metadata(&self, relative: &Path) -> io::Result<EntryMeta> {
        let (parent, name) = self.parent_of(relative)?;
        let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Directory,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        Ok(EntryMeta {
            kind,
            mode: stat.st_mode & 0o7777,
            mtime: u64::try_from(stat.st_mtime).ok(),
        })
    }

    /// Reads a symlink's target (the link itself must lie beneath the root).
    pub(crate) fn read_link(&self, relative: &Path) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        let (parent, name) = self.parent_of(relative)?;
        let target = rustix::fs::readlinkat(&parent, name, Vec::new())?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(
            target.into_bytes(),
        )))
    }

    /// The directory holding `relative`, opened beneath the root, and the last component.
    fn parent_of<'a>(&self, relative: &'a Path) -> io::Result<(OwnedFd, &'a std::ffi::OsStr)> {
        check_relative(relative)?;
        let name = relative
            .file_name()
            .ok_or_else(|| invalid("the path has no file name"))?;
        let parent = match relative.parent() {
            Some(p) if !p.as_os_str().is_empty() => {
                self.resolve(p, OFlags::PATH | OFlags::DIRECTORY)?
            }
            _ => rustix::fs::openat(
                &self.dir,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
        };
        Ok((parent, name))
    }

    /// Opens `relative` with `flags`, refusing symlinks and anything outside the root.
    fn resolve(&self, relative: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        check_relative(relative)?;
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if OPENAT2.load(Ordering::Relaxed) {
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.dir, relative, flags, Mode::empty(), resolve) {
                Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
                    OPENAT2.store(false, Ordering::Relaxed);
                }
                other => return other.map_err(io::Error::from),
            }
        }
        self.walk(relative, flags)
    }

    /// The fallback: one `openat` per component, none of them following a symlink.
    fn walk(&self, relative: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let components: Vec<_> = relative.components().collect();
        let mut current: Option<OwnedFd> = None;
        for (i, component) in components.iter().enumerate() {
            let last = i + 1 == components.len();
            let step_flags = if last {
                flags
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            let at = current.as_ref().unwrap_or(&self.dir);
            let next = rustix::fs::openat(at, component.as_os_str(), step_flags, Mode::empty())?;
            if !last {
                // O_PATH|O_NOFOLLOW opens a symlink itself: refuse it as openat2 would
                let stat = rustix::fs::fstat(&next)?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::LOOP.raw_os_error(),
                    ));
                }
            }
            current = Some(next);
        }
        current.ok_or_else(|| invalid("empty path"))
    }
}

/// Refuses paths that are empty, absolute or hold `.` or `..` components.
pub(crate) fn check_relative(relative: &Path) -> io::Result<()> {
    if relative.as_os_str().is_empty() {
        return Err(invalid("empty path"));
    }
    if relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        Ok(())
    } else {
        Err(invalid("the path is not relative and normalised"))
    }
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"host secret").unwrap();
        std::fs::create_dir(root.path().join("lib")).unwrap();
        std::fs::write(root.path().join("lib/ok.txt"), b"fine").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("x")).unwrap();
        std::os::unix::fs::symlink("ok.txt", root.path().join("lib/link")).unwrap();
        (root, outside)
    }

    fn check_all(root: &Beneath) {
        use std::io::Read;
        let mut text = String::new();
        root.open_file(Path::new("lib/ok.txt"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "fine");
        assert!(root.open_file(Path::new("x/secret.txt")).is_err());
        assert!(root.metadata(Path::new("x/secret.txt")).is_err());
        assert!(root.open_file(Path::new("lib/link")).is_err());
        assert!(root.open_file(Path::new("../etc/passwd")).is_err());
        assert!(root.open_file(Path::new("/etc/passwd")).is_err());
        assert_eq!(root.metadata(Path::new("x")).unwrap().kind, Kind::Symlink);
        assert_eq!(
            root.metadata(Path::new("lib")).unwrap().kind,
            Kind::Directory
        );
        assert_eq!(
            root.read_link(Path::new("lib/link")).unwrap(),
            Path::new("ok.txt")
        );
    }

    #[test]
    fn nothing_is_read_through_a_symlink() {
        let (root, _outside) = tree();
        check_all(&Beneath::open(root.path()).unwrap());
    }

    #[test]
    fn the_fallback_walk_refuses_symlinks_too() {
        let (root, _outside) = tree();
        let beneath = Beneath::open(root.path()).unwrap();
        assert!(beneath
            .walk(Path::new("x/secret.txt"), OFlags::RDONLY | OFlags::NOFOLLOW)
            .is_err());
        assert!(beneath
            .walk(Path::new("lib/link"), OFlags::RDONLY | OFlags::NOFOLLOW)
            .is_err());
        assert!(beneath
            .walk(Path::new("lib/ok.txt"), OFlags::RDONLY | OFlags::NOFOLLOW)
            .is_ok());
    }
}
