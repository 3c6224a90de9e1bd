//! Small filesystem helpers: atomic replace and directory fsync, and the
//! one place every sync of the log reports to the power-loss model (see
//! [`crate::powerloss`]; dormant unless a test watches the directory).
//!
//! The functions that sync are `#[track_caller]`, and so are the segment
//! and ledger methods that call them: the power-loss model names each sync
//! by the line of the log's code that asked for it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::powerloss;

/// Replaces `path` with `bytes` atomically: write a temporary file, fsync
/// it, rename it over `path`, fsync the directory. A crash leaves either the
/// old or the new content, never a mix; once this returns, the new content
/// is durable. On failure the temporary file is removed (a full disk must
/// not be left fuller), and `path` keeps its old content.
///
/// `what` names the file for the power-loss model.
#[track_caller]
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], what: &'static str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // Straight-line code, no closure: a closure would end the
    // `#[track_caller]` chain that names the sync for the power-loss model.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create", e))?;
    powerloss::created(&tmp, &f);
    let mut written = f.write_all(bytes).map_err(|e| Error::io(&tmp, "write", e));
    if written.is_ok() {
        written = fsync(&f, &tmp, what);
    }
    drop(f);
    if written.is_ok() {
        written = std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename", e));
    }
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")), what)?;
    powerloss::replaced(path, bytes);
    Ok(())
}

/// Forces a file's data and metadata to disk.
#[track_caller]
pub(crate) fn fsync(file: &File, path: &Path, what: &'static str) -> Result<()> {
    file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
    powerloss::file_synced(file, path, what, "fsync");
    Ok(())
}

/// Fsyncs a directory so that creations, renames and unlinks in it last.
/// `what` names the reason for the power-loss model.
#[track_caller]
pub(crate) fn sync_dir(dir: &Path, what: &'static str) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "fsync directory", e))?;
    powerloss::dir_synced(dir, what, "dir fsync");
    Ok(())
}

/// Unlinks `path` (a missing file is fine). Durable once the directory is
/// synced.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, "unlink", e)),
    }
    powerloss::removed(path);
    Ok(())
}
