//! One service per data directory: `DATA/serve.pid`, locked exclusively for
//! the service's life and holding its PID. A second `trousse serve` on the
//! same directory stops at once, naming the PID that holds it (two services
//! would both clear `DATA/work` and run the same queued builds). The
//! database is not what is locked: `trousse token create` keeps working
//! beside a running service.

use std::{fs::File, io::Write, path::Path};

use fs4::fs_std::FileExt;

use crate::error::ApiError;

/// The lock, held until dropped.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir`, or says which process holds it.
    pub(crate) fn take(data_dir: &Path) -> Result<Self, ApiError> {
        let path = data_dir.join("serve.pid");
        let failed =
            |e: std::io::Error| ApiError::Internal(format!("cannot lock {}: {e}", path.display()));
        std::fs::create_dir_all(data_dir).map_err(failed)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(failed)?;
        if !FileExt::try_lock_exclusive(&file).map_err(failed)? {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(ApiError::Conflict(format!(
                "another trousse serve (PID {}) uses the data directory {}: stop it first, \
                 or give this one its own --data-dir",
                holder.trim(),
                data_dir.display()
            )));
        }
        file.set_len(0).map_err(failed)?;
        writeln!(file, "{}", std::process::id()).map_err(failed)?;
        Ok(Self { _file: file })
    }
}
