//! The store's checkpoint file: the log offset applied, the schema, the
//! chunk files and the deletion tombstones, as JSON with a CRC trailer,
//! replaced atomically.

use std::path::Path as FsPath;

use serde::{Deserialize, Serialize};

use super::{SeriesInfo, Tombstone};

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
        return Err("checkpoint crc mismatch; restore it from a backup".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("checkpoint does not decode: {e}"))
}

pub(super) fn write_atomic(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(path.parent().unwrap_or(FsPath::new(".")))?.sync_all()
}
