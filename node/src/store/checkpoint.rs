//! The store's checkpoint file: the log offset applied, the schema, the
//! chunk files and the deletion tombstones, as JSON with a CRC trailer.
//!
//! A new checkpoint is written under a temporary name and fsynced; the
//! current one becomes `checkpoint.prev`, the new one `checkpoint`, and the
//! directory is fsynced. The store commits the *previous* checkpoint's
//! offset to the change log, so the log still holds everything since it: a
//! damaged `checkpoint` falls back to `checkpoint.prev` and the log replays
//! the difference. A crash between the two renames leaves only
//! `checkpoint.prev`, which is read the same way.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SeriesInfo, Tombstone};

/// The checkpoint file's name in the store directory.
pub(super) const CHECKPOINT: &str = "checkpoint";
/// The previous checkpoint's name.
pub(super) const PREVIOUS: &str = "checkpoint.prev";

/// The checkpoint file's contents.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) applied_offset: u64,
    pub(super) next_seq: u64,
    pub(super) files: Vec<u64>,
    pub(super) databases: Vec<String>,
    pub(super) series: Vec<(String, SeriesInfo)>,
    pub(super) tombstones: Vec<Tombstone>,
}

pub(super) fn encode_checkpoint(ck: &Checkpoint) -> Vec<u8> {
    let mut b = serde_json::to_vec(ck).expect("serialize checkpoint");
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    b
}

pub(super) fn decode_checkpoint(b: &[u8]) -> Result<Checkpoint, String> {
    if b.len() < 10 {
        return Err("checkpoint too short".into());
    }
    let (body, tail) = b.split_at(b.len() - 10);
    let tail = std::str::from_utf8(tail).map_err(|_| "checkpoint trailer is not text")?;
    let crc =
        u32::from_str_radix(tail.trim(), 16).map_err(|_| "checkpoint trailer is not a crc")?;
    if crc32fast::hash(body) != crc {
        return Err("checkpoint crc mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("checkpoint does not decode: {e}"))
}

/// How reading the checkpoint went.
pub(super) enum Loaded {
    /// No checkpoint at all: a new store.
    None,
    /// A checkpoint, and a warning when it is the previous one because the
    /// current one is missing or damaged.
    Some(Checkpoint, Option<String>),
    /// Neither `checkpoint` nor `checkpoint.prev` can be read: why.
    Damaged(String),
}

/// Reads `checkpoint`, falling back to `checkpoint.prev`.
pub(super) fn read_checkpoint(dir: &FsPath) -> Loaded {
    let read = |name: &str| -> Result<Option<Checkpoint>, String> {
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(b) => decode_checkpoint(&b)
                .map(Some)
                .map_err(|m| format!("{}: {m}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    };
    match (read(CHECKPOINT), read(PREVIOUS)) {
        (Ok(Some(ck)), _) => Loaded::Some(ck, None),
        (Ok(None), Ok(None)) => Loaded::None,
        (Ok(None), Ok(Some(prev))) => Loaded::Some(
            prev,
            Some(format!(
                "{} is missing (a crash while it was replaced); starting from {}",
                dir.join(CHECKPOINT).display(),
                dir.join(PREVIOUS).display()
            )),
        ),
        (Err(why), Ok(Some(prev))) => Loaded::Some(
            prev,
            Some(format!(
                "{why}; starting from the previous checkpoint ({}) and replaying the change log from its offset",
                dir.join(PREVIOUS).display()
            )),
        ),
        (Err(why), Ok(None)) => Loaded::Damaged(format!("{why}, and there is no previous checkpoint")),
        (Err(why), Err(prev)) => Loaded::Damaged(format!("{why}, and {prev}")),
        (Ok(None), Err(prev)) => Loaded::Damaged(format!(
            "{} is missing, and {prev}",
            dir.join(CHECKPOINT).display()
        )),
    }
}

/// Writes a new checkpoint: temporary file, fsync, current one to
/// `checkpoint.prev`, new one in place, directory fsync. On failure the
/// temporary file is removed and the current checkpoint stands.
pub(super) fn write_checkpoint(dir: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(CHECKPOINT);
    let tmp: PathBuf = dir.join("checkpoint.tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        match std::fs::rename(&path, dir.join(PREVIOUS)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: fsync: {e}", dir.display())))
}
