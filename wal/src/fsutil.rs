//! Small filesystem helpers: atomic replace and directory fsync.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes` atomically: write a temporary file, fsync
/// it, rename it over `path`, fsync the directory. A crash leaves either the
/// old or the new content, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create", e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io(&tmp, "write", e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory so that creations, renames and unlinks in it last.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "fsync directory", e))
}
