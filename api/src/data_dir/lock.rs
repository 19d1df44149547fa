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
    instance: String,
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
        let instance = instance_id(data_dir)?;
        Ok(Self {
            _file: file,
            instance,
        })
    }

    /// The data directory's own id (`DATA/instance-id`, made once): whose
    /// leases on builds are this service's, across its restarts.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }
}

/// Reads `DATA/instance-id`, writing a new random one first when there is none.
fn instance_id(data_dir: &Path) -> Result<String, ApiError> {
    let path = data_dir.join("instance-id");
    let failed = |e: std::io::Error| ApiError::Internal(format!("{}: {e}", path.display()));
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Ok(id.to_string());
        }
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let id = format!(
        "{}-{}",
        if host.is_empty() { "trousse" } else { &host },
        &crate::auth::random_hex("an instance id")?[..12]
    );
    // written whole or not at all: a crash between leaves no half id
    let temporary = data_dir.join("instance-id.new");
    std::fs::write(&temporary, format!("{id}\n")).map_err(failed)?;
    std::fs::rename(&temporary, &path).map_err(failed)?;
    Ok(id)
}
