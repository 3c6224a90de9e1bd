//! The store: schema and time-series data, made durable by the change log.
//!
//! # Why our own columnar chunk files
//! One key-value entry per point (an embedded KV store) costs a key, a
//! sequence number and a compaction pass per point, which does not reach
//! millions of points per second on two cores, and a time-range read would
//! decode every key. Instead, each series keeps its recent points in a
//! memtable (times and values in two vectors), and a flush writes all
//! memtables to one immutable, memory-mapped chunk file, series by series,
//! sorted by time ([`crate::chunkfile`]). A range query binary-searches the
//! times of each chunk that overlaps it, and copies only what it returns.
//!
//! # Durability and restart
//! Every write reaches the change log before the store applies it (the
//! caller waits for the log to make it durable before answering the
//! client). A flush writes the chunk file, then the checkpoint
//! (`store/checkpoint`: the log offset applied, the schema, the chunk files
//! and deletion tombstones), then commits the log offset for the consumer
//! `store`, so the log's retention never deletes what is not yet in a
//! chunk file. A restart loads the checkpoint and replays the log from its
//! offset only.
//!
//! # Semantics
//! - A later write to the same series and timestamp replaces the earlier
//!   one (IoTDB's overwrite). Chunk files later in sequence win, the
//!   memtable wins over all files.
//! - Deletes remove memtable points and leave a tombstone for the chunk
//!   files written before it.

mod apply;
mod checkpoint;
mod convert;
mod flush;
mod memtable;
mod query;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use protocol::tablet::{Column, Tablet};
use protocol::types::{status, DataType};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::chunkfile::{self, ChunkFile};
use crate::event::Event;
use crate::sql::Path;

use apply::{apply, db_of, validate};
use checkpoint::decode_checkpoint;
pub use convert::{coerce, encoding_name, infer, tablet_from_rows};
use flush::FlushState;
use memtable::{Frozen, Mem};

/// The log consumer name of the store's applied offset.
pub const STORE_CONSUMER: &str = "store";
/// Flush when the memtables hold this many points: about 16 B a number
/// point (up to twice that while vectors grow), so a node's memtables stay
/// near 32 MiB, and a crash replays at most this many points.
pub const DEFAULT_FLUSH_POINTS: usize = 1_000_000;

/// An error with an IoTDB status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// IoTDB status code.
    pub code: i32,
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        StoreError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for StoreError {}

/// Store result.
pub type SResult<T> = Result<T, StoreError>;

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(status::INTERNAL_SERVER_ERROR, e.to_string())
}

/// What the schema knows of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    /// Type.
    pub data_type: DataType,
    /// Encoding name (kept for SHOW TIMESERIES; storage is columnar).
    pub encoding: String,
    /// Compressor name.
    pub compressor: String,
    /// Whether its device is aligned.
    pub aligned: bool,
}

#[derive(Debug)]
struct Series {
    info: SeriesInfo,
    mem: Mem,
    /// A memtable being written to chunk file `seq` in the background:
    /// read as a chunk of that sequence until the file replaces it.
    frozen: Option<Arc<Frozen>>,
    /// Chunks of this series in chunk files, oldest first.
    chunks: Vec<(Arc<ChunkFile>, usize)>,
}

/// A deletion that applies to chunk files up to `upto_seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tombstone {
    path: String,
    min: i64,
    max: i64,
    upto_seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    databases: BTreeSet<String>,
    series: BTreeMap<String, Series>,
    files: Vec<Arc<ChunkFile>>,
    tombstones: Vec<Tombstone>,
    mem_points: usize,
    next_seq: u64,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Create missing databases and series on write (IoTDB's
    /// `enable_auto_create_schema`). Default: true.
    pub auto_create_schema: bool,
    /// Level of the database auto-created for a new series
    /// (`default_storage_group_level`): 1 makes `root.a` for `root.a.b.c`.
    pub default_database_level: usize,
    /// Flush when the memtables hold this many points.
    pub flush_points: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            auto_create_schema: true,
            default_database_level: 1,
            flush_points: DEFAULT_FLUSH_POINTS,
        }
    }
}

/// The store. Writes go through [`Store::write`], which logs, applies, and
/// returns the offset to wait on for durability.
pub struct Store {
    dir: PathBuf,
    log: Arc<wal::Log>,
    config: StoreConfig,
    inner: Arc<RwLock<Inner>>,
    /// The background flush: at most one at a time.
    flush_state: Arc<(Mutex<FlushState>, std::sync::Condvar)>,
    /// Serialises validate → log append → apply, so the log order is the
    /// apply order.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn split(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// A series' points in a time range, sorted, one per timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    /// Times, increasing.
    pub times: Vec<i64>,
    /// Values, one per time.
    pub values: Column,
}

impl Store {
    /// Opens the store in `dir` over `log`: loads the checkpoint and chunk
    /// files, and replays the log from the checkpoint's offset.
    ///
    /// # Errors
    /// Unreadable checkpoint or chunk files, or log events that do not
    /// decode.
    pub fn open(dir: &FsPath, log: Arc<wal::Log>, config: StoreConfig) -> SResult<Store> {
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
        for e in std::fs::read_dir(dir).map_err(internal)?.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut inner = Inner {
            next_seq: 1,
            ..Inner::default()
        };
        let mut applied = log.log_start();
        let ck_path = dir.join("checkpoint");
        match std::fs::read(&ck_path) {
            Ok(b) => {
                let ck = decode_checkpoint(&b)
                    .map_err(|m| internal(format!("{}: {m}", ck_path.display())))?;
                applied = ck.applied_offset;
                inner.next_seq = ck.next_seq;
                inner.databases = ck.databases.into_iter().collect();
                for (p, info) in ck.series {
                    let mem = Mem::new(info.data_type);
                    inner.series.insert(
                        p,
                        Series {
                            info,
                            mem,
                            frozen: None,
                            chunks: Vec::new(),
                        },
                    );
                }
                inner.tombstones = ck.tombstones;
                for seq in ck.files {
                    let f =
                        ChunkFile::open(&chunkfile::file_name(dir, seq), seq).map_err(internal)?;
                    for (i, c) in f.chunks.iter().enumerate() {
                        if let Some(s) = inner.series.get_mut(&c.path) {
                            if s.info.data_type == c.data_type {
                                s.chunks.push((f.clone(), i));
                            }
                        }
                    }
                    inner.files.push(f);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(internal(format!("{}: {e}", ck_path.display()))),
        }
        // Chunk files not in the checkpoint were written by a flush that did
        // not finish: the log still holds their events.
        let known: BTreeSet<u64> = inner.files.iter().map(|f| f.seq).collect();
        for e in std::fs::read_dir(dir).map_err(internal)?.flatten() {
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".chunks"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if !known.contains(&seq) {
                warn!(file = %e.path().display(), "removing a chunk file from an unfinished flush");
                let _ = std::fs::remove_file(e.path());
            }
        }
        let store = Store {
            dir: dir.to_path_buf(),
            log,
            config,
            inner: Arc::new(RwLock::new(inner)),
            flush_state: Arc::default(),
            write_lock: Mutex::new(()),
        };
        store
            .log
            .register_consumer(STORE_CONSUMER, applied)
            .map_err(internal)?;
        let replayed = store.replay(applied)?;
        info!(dir = %dir.display(), from_offset = applied, events = replayed, "store opened");
        Ok(store)
    }

    fn replay(&self, from: u64) -> SResult<u64> {
        let from = from.max(self.log.log_start());
        let mut reader = self.log.reader(from).map_err(internal)?;
        let mut inner = self.inner.write().expect("store lock");
        let mut n = 0;
        while let Some(batch) = reader.try_next().map_err(internal)? {
            for rec in batch.iter() {
                let ev = Event::decode(rec.kind, rec.payload)
                    .map_err(|m| internal(format!("change log offset {}: {m}", rec.offset)))?;
                if let Err(e) = apply(&mut inner, &self.config, &ev, true) {
                    // Schema changes after the checkpoint's offset are in the
                    // checkpoint's schema already (it is written after).
                    let known = [
                        status::DATABASE_ALREADY_EXISTS,
                        status::TIMESERIES_ALREADY_EXIST,
                    ]
                    .contains(&e.code);
                    if !known {
                        // It was validated before it was logged; a failure
                        // means the schema moved under it. Skip it, as the
                        // original apply did.
                        warn!(offset = rec.offset, cause = %e, "replayed event no longer applies");
                    }
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// The change log this store writes through.
    pub fn log(&self) -> &Arc<wal::Log> {
        &self.log
    }

    /// Validates `ev` against the schema, appends it to the change log and
    /// applies it. Returns the log offset to wait on before acknowledging.
    ///
    /// # Errors
    /// Schema or type errors (nothing is logged then), or log I/O errors.
    pub fn write(&self, ev: Event) -> SResult<u64> {
        self.write_encoded(ev, None)
    }

    /// As [`Store::write`], for a tablet whose change-log payload is
    /// already at hand (a pipe's tablet as received: `Tablet.serialize()` +
    /// aligned byte), so it is not encoded again.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_tablet_bytes(&self, tablet: Tablet, bytes: &[u8]) -> SResult<u64> {
        self.write_encoded(Event::Tablet(tablet), Some(bytes))
    }

    fn write_encoded(&self, ev: Event, payload: Option<&[u8]>) -> SResult<u64> {
        let _w = self.write_lock.lock().expect("write lock");
        if let Some(e) = &self.flush_state.0.lock().expect("flush lock").error {
            return Err(internal(format!(
                "a background flush failed ({e}); restart the node, it replays the change log"
            )));
        }
        {
            let inner = self.inner.read().expect("store lock");
            validate(&inner, &self.config, &ev)?;
        }
        let encoded;
        let (kind, payload) = match payload {
            Some(p) => (crate::event::KIND_TABLET, p),
            None => {
                encoded = ev.encode();
                (encoded.0, &encoded.1[..])
            }
        };
        let offset = self.log.append(kind, payload).map_err(internal)?;
        let points = {
            let mut inner = self.inner.write().expect("store lock");
            apply(&mut inner, &self.config, &ev, false)?;
            inner.mem_points
        };
        if points >= self.config.flush_points {
            self.flush_in_background(points)?;
        }
        Ok(offset)
    }

    /// Databases, sorted.
    pub fn databases(&self) -> Vec<String> {
        self.inner
            .read()
            .expect("store lock")
            .databases
            .iter()
            .cloned()
            .collect()
    }

    /// The database holding `path`, if any.
    pub fn database_of(&self, path: &str) -> Option<String> {
        db_of(&self.inner.read().expect("store lock"), path)
    }

    /// Series matching any of `patterns`, sorted by path, with their info.
    pub fn series_matching(&self, patterns: &[Path]) -> Vec<(String, SeriesInfo)> {
        let inner = self.inner.read().expect("store lock");
        inner
            .series
            .iter()
            .filter(|(p, _)| {
                let nodes = split(p);
                patterns.iter().any(|pat| pat.matches(&nodes))
            })
            .map(|(p, s)| (p.clone(), s.info.clone()))
            .collect()
    }

    /// The info of one series.
    pub fn series_info(&self, path: &str) -> Option<SeriesInfo> {
        self.inner
            .read()
            .expect("store lock")
            .series
            .get(path)
            .map(|s| s.info.clone())
    }

    /// Points held in memtables (not yet flushed).
    pub fn memtable_points(&self) -> usize {
        self.inner.read().expect("store lock").mem_points
    }
}
