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
#[cfg(test)]
mod batch_tests;
mod checkpoint;
mod convert;
mod flush;
mod memtable;
mod query;
mod series_map;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod verify;

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use protocol::tablet::{Column, Tablet, TabletData};
use protocol::types::{status, DataType};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::chunkfile::{self, ChunkFile};
use crate::event::Event;
use crate::sql::Path;

use apply::{apply, apply_tablet, db_of, validate, validate_tablet, Pending};
pub use convert::{coerce, encoding_name, infer, tablet_from_rows};
use flush::FlushState;
use memtable::{Frozen, Mem};

/// The log consumer name of the store's applied offset.
pub const STORE_CONSUMER: &str = "store";
/// Flush when the memtables hold this many points (half of it while they
/// run on a flushed memtable's vectors, see `memtable::Spares`): about
/// 16 B a number point, so a node's memtables, the ones being flushed
/// and the vectors kept for the next ones stay near 32 MiB in all, and a
/// crash replays at most this many points.
pub const DEFAULT_FLUSH_POINTS: usize = 1_000_000;

/// The most bytes of tablets [`Store::write_tablets`] puts in one
/// change-log batch: 4 MiB, so that a 16 MiB request is a handful of
/// appends, while whoever reads the log (a pipe onward, a replay) copies
/// out at most this much at a time.
pub const MAX_TABLET_BATCH_BYTES: usize = 4 << 20;

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
    series: series_map::SeriesMap,
    files: Vec<Arc<ChunkFile>>,
    tombstones: Vec<Tombstone>,
    mem_points: usize,
    next_seq: u64,
    /// Chunk files the checkpoint lists that cannot be read: sequence and
    /// why. Every query answers an error naming them.
    damaged: Vec<(u64, String)>,
    /// The change-log offset of the last checkpoint written or loaded.
    checkpointed: u64,
    /// When that checkpoint was written (the file's time when loaded; the
    /// open's time when there is none).
    checkpointed_at: Option<std::time::SystemTime>,
    /// Chunk files removed at open because the checkpoint in use does not
    /// list them (an unfinished flush, or a fallback to the previous
    /// checkpoint): the lowest removed number and the highest number on
    /// disk then. A pipe's snapshot taken before the open that names a
    /// file in that range lost its points (see `damaged_in`).
    removed_at_open: Option<(u64, u64)>,
    /// Vectors of flushed memtables for the next freeze to reuse.
    spares: memtable::Spares,
    /// Whether the last freeze put memtables on kept vectors: they flush
    /// at half the threshold.
    on_spares: bool,
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
    /// Points ingested and flushes, for the metrics.
    counters: Arc<crate::metrics::StoreCounters>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// A stored path's nodes: split on the dots outside backquotes, so
/// `root.sg.`a.b`.s` is four nodes, as IoTDB reads it.
fn split(path: &str) -> Vec<&str> {
    protocol::names::split_nodes(path).unwrap_or_else(|_| path.split('.').collect())
}

/// A series' points in a time range, sorted, one per timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    /// Times, increasing.
    pub times: Vec<i64>,
    /// Values, one per time.
    pub values: Column,
}

/// Where a write comes from, as the change log records it (see
/// [`crate::event::FROM_PIPE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A client of this node (SQL, the session inserts).
    #[default]
    Local,
    /// A pipe: IoTDB 1.2's `pipeTransfer` (every type), IoTDB 1.1's legacy
    /// sync calls, and the session writes of a legacy sender's connection.
    /// A pipe with `extractor.forwarding-pipe-requests=false` does not
    /// send it on.
    Pipe,
}

/// The record kind of the empty records that fill a gap in the change log
/// ([`wal::Log::fill_gap`]): offsets whose records were lost from the log
/// after the store had applied them. Nothing reads them.
pub const KIND_LOST: u8 = 0;

/// The change-log offset the store's checkpoint has applied (what the store
/// starts from), read without opening anything: the node opens its log with
/// it as the recovery floor. `None` for a new store.
///
/// # Errors
/// A store directory whose checkpoints are both damaged.
pub fn recovery_floor(dir: &FsPath) -> SResult<Option<u64>> {
    match checkpoint::read_checkpoint(dir) {
        checkpoint::Loaded::None => Ok(None),
        checkpoint::Loaded::Some(ck, _) => Ok(Some(ck.applied_offset)),
        checkpoint::Loaded::Damaged(why) => Err(internal(why)),
    }
}

/// Store errors from I/O: status 611 `DISK_SPACE_INSUFFICIENT` when the
/// disk is full, else 305.
fn io_error(what: &str, e: &std::io::Error) -> StoreError {
    if wal::is_disk_full(e) {
        StoreError::new(
            status::DISK_SPACE_INSUFFICIENT,
            format!("the disk is full: cannot {what} ({e}); free disk space, then the write can be retried"),
        )
    } else {
        internal(format!("cannot {what}: {e}"))
    }
}

/// Change-log errors on the write path, the disk named when it is full.
fn log_error(e: wal::Error) -> StoreError {
    if e.is_disk_full() {
        StoreError::new(
            status::DISK_SPACE_INSUFFICIENT,
            format!("the disk is full: the change log cannot grow ({e}); the write was refused and nothing was logged; free disk space and retry"),
        )
    } else {
        internal(e)
    }
}

impl Store {
    /// Opens the store in `dir` over `log`: loads the checkpoint (or the
    /// previous one, when it is damaged) and the chunk files, and replays
    /// the log from the checkpoint's offset. A chunk file that cannot be
    /// read does not stop the start: it is reported, and every query
    /// answers an error naming it until it is restored or quarantined
    /// (renamed to `<name>.damaged`, which accepts the loss of its points).
    /// When the log ends before the checkpoint's offset (it lost records
    /// the store had applied), its offsets are filled up to it.
    ///
    /// # Errors
    /// A damaged checkpoint with no usable previous one (unless the log
    /// still holds everything from offset 0), chunk files without a
    /// checkpoint, log events that do not decode, I/O errors; each naming
    /// the file and what to do.
    pub fn open(dir: &FsPath, log: Arc<wal::Log>, config: StoreConfig) -> SResult<Store> {
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
        for e in std::fs::read_dir(dir).map_err(internal)?.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let chunk_files: BTreeSet<u64> = std::fs::read_dir(dir)
            .map_err(internal)?
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".chunks"))
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .collect();
        let mut inner = Inner {
            next_seq: 1,
            ..Inner::default()
        };
        let mut applied = log.log_start();
        let loaded = match checkpoint::read_checkpoint(dir) {
            checkpoint::Loaded::Some(ck, warning) => {
                if let Some(w) = warning {
                    warn!("{w}");
                }
                Some(ck)
            }
            checkpoint::Loaded::None if chunk_files.is_empty() || log.log_start() == 0 => None,
            checkpoint::Loaded::None => {
                return Err(internal(format!(
                    "{}: chunk files but no checkpoint, and the change log no longer holds every record (it starts at offset {}); restore {} from a backup",
                    dir.display(),
                    log.log_start(),
                    dir.join(checkpoint::CHECKPOINT).display()
                )))
            }
            checkpoint::Loaded::Damaged(why) if log.log_start() == 0 => {
                warn!("{why}; the change log holds every record from offset 0: rebuilding the store from it");
                None
            }
            checkpoint::Loaded::Damaged(why) => {
                return Err(internal(format!(
                    "{why}; the change log no longer holds every record (it starts at offset {}), so the store cannot be rebuilt from it: restore {} from a backup",
                    log.log_start(),
                    dir.join(checkpoint::CHECKPOINT).display()
                )))
            }
        };
        if let Some(ck) = loaded {
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
                let path = chunkfile::file_name(dir, seq);
                let quarantined = path.with_extension("chunks.damaged");
                if !path.exists() && quarantined.exists() {
                    warn!(file = %quarantined.display(), "a quarantined chunk file: starting without its points");
                    continue;
                }
                match ChunkFile::open(&path, seq) {
                    Ok(f) => {
                        if !f.has_data_crcs() {
                            warn!(file = %path.display(), "a chunk file of format 1 has no data checksums: its damage cannot be told from data");
                        }
                        for (i, c) in f.chunks.iter().enumerate() {
                            if let Some(s) = inner.series.get_mut(&c.path) {
                                if s.info.data_type == c.data_type {
                                    s.chunks.push((f.clone(), i));
                                }
                            }
                        }
                        inner.files.push(f);
                    }
                    Err(reason) => {
                        tracing::error!(file = %path.display(), %reason, "a chunk file cannot be read: queries report it until it is restored, or renamed to {} (which accepts losing its points)", quarantined.display());
                        inner.damaged.push((seq, reason));
                    }
                }
            }
        }
        inner.checkpointed = applied;
        inner.checkpointed_at = Some(
            std::fs::metadata(dir.join(checkpoint::CHECKPOINT))
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| std::time::SystemTime::now()),
        );
        // A file number is never used twice, even when an older checkpoint
        // is in use and newer files are removed below: a pipe's history
        // snapshot names files by number.
        if let Some(highest) = chunk_files.iter().next_back() {
            inner.next_seq = inner.next_seq.max(highest + 1);
        }
        // Chunk files not in the checkpoint were written by a flush that did
        // not finish: the log still holds their events.
        let known: BTreeSet<u64> = inner
            .files
            .iter()
            .map(|f| f.seq)
            .chain(inner.damaged.iter().map(|d| d.0))
            .collect();
        let removed: Vec<u64> = chunk_files.difference(&known).copied().collect();
        if let (Some(lo), Some(hi)) = (removed.first(), chunk_files.iter().next_back()) {
            inner.removed_at_open = Some((*lo, *hi));
        }
        for seq in &removed {
            let p = chunkfile::file_name(dir, *seq);
            warn!(file = %p.display(), "removing a chunk file from an unfinished flush");
            let _ = std::fs::remove_file(p);
        }
        let store = Store {
            dir: dir.to_path_buf(),
            log,
            config,
            inner: Arc::new(RwLock::new(inner)),
            flush_state: Arc::default(),
            write_lock: Mutex::new(()),
            counters: Arc::default(),
        };
        store
            .log
            .register_consumer(STORE_CONSUMER, applied)
            .map_err(internal)?;
        // What the store has not checkpointed exists only in the log: no
        // disk bound may delete it.
        store.log.set_protected(STORE_CONSUMER, true);
        if store.log.end_offset() < applied {
            warn!(
                log_end = store.log.end_offset(),
                checkpoint = applied,
                "the change log ends before the store's checkpoint (it lost records the store holds); filling the gap so offsets stay dense"
            );
            store
                .log
                .fill_gap(applied, KIND_LOST, STORE_CONSUMER)
                .map_err(log_error)?;
        }
        if store.log.log_start() > applied {
            tracing::error!(
                checkpoint = applied,
                log_start = store.log.log_start(),
                "the change log no longer holds records the store had not checkpointed: they are lost"
            );
        }
        let replayed = store.replay(applied)?;
        info!(dir = %dir.display(), from_offset = applied, events = replayed, "store opened");
        Ok(store)
    }

    fn replay(&self, from: u64) -> SResult<u64> {
        let from = from.max(self.log.log_start());
        let mut reader = self.log.reader(from).map_err(internal)?;
        let mut inner = self.inner.write().expect("store lock");
        let mut n = 0;
        loop {
            let batch = match reader.try_next() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    return Err(internal(format!(
                        "replaying the change log from offset {from}: {e}; records from offset {} on were acknowledged but are not in the store: restore the damaged file, or set wal_recovery_mode=tolerate-any-corruption to start without them",
                        reader.position()
                    )))
                }
            };
            for rec in batch.iter() {
                if rec.kind == KIND_LOST {
                    continue;
                }
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
        self.write_encoded(ev, None, Origin::Local)
    }

    /// As [`Store::write`], for a write from `origin`: one that arrived
    /// through a pipe is logged marked as such
    /// ([`crate::event::FROM_PIPE`]), and applied the same.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_from(&self, ev: Event, origin: Origin) -> SResult<u64> {
        self.write_encoded(ev, None, origin)
    }

    /// As [`Store::write_from`], for a tablet whose change-log payload is
    /// already at hand (a pipe's tablet as received: `Tablet.serialize()` +
    /// aligned byte), so it is not encoded again: the log holds the bytes
    /// as they came.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_tablet_bytes(&self, tablet: Tablet, bytes: &[u8], origin: Origin) -> SResult<u64> {
        self.write_encoded(Event::Tablet(tablet), Some(bytes), origin)
    }

    /// Writes the tablets of one request from `origin`, each with its
    /// change-log payload as received, as a few change-log batches (up
    /// to [`MAX_TABLET_BATCH_BYTES`] each; written with `pwritev` by the
    /// log) instead of one append per tablet. Returns the offset of the
    /// last record, to wait on before acknowledging (`None` for no
    /// tablets).
    ///
    /// The same as writing them one by one with
    /// [`Store::write_tablet_bytes`], in order: each tablet is checked
    /// against the schema as the tablets before it leave it (two tablets
    /// that create the same new series create it once; the second must
    /// agree with the first's type); the tablets before the first bad one
    /// are logged and applied, the bad one and those after it are not, and
    /// the error is the bad tablet's.
    ///
    /// # Errors
    /// The first bad tablet's (names, schema, type), or a log error (the
    /// tablets of earlier batches stay written).
    pub fn write_tablets<'b, T: TabletData>(
        &self,
        tablets: impl IntoIterator<Item = (T, &'b [u8])>,
        origin: Origin,
    ) -> SResult<Option<u64>> {
        let mut tablets = tablets.into_iter().peekable();
        if tablets.peek().is_none() {
            return Ok(None);
        }
        let limit = MAX_TABLET_BATCH_BYTES.min(self.log.config().max_batch_bytes() as usize);
        let kind = match origin {
            Origin::Local => crate::event::KIND_TABLET,
            Origin::Pipe => crate::event::KIND_TABLET | crate::event::FROM_PIPE,
        };
        let _w = self.write_lock.lock().expect("write lock");
        {
            let inner = self.inner.read().expect("store lock");
            if let Err(e) = self.refuse_if_cannot_flush(inner.mem_points) {
                drop(inner);
                self.flush_in_background(self.config.flush_points)?;
                return Err(e);
            }
        }
        let mut buf = String::new();
        let mut pending = Pending::default();
        let mut last = None;
        let mut chunk: Vec<(T, &[u8])> = Vec::new();
        while tablets.peek().is_some() {
            // Check tablets until the batch is full or one is bad.
            let mut failed = None;
            {
                let inner = self.inner.read().expect("store lock");
                pending.removals = inner.series.removals();
                let mut bytes = wal::Log::BATCH_OVERHEAD;
                while let Some((t, b)) = tablets.next_if(|(_, b)| {
                    chunk.is_empty() || bytes + wal::Log::RECORD_OVERHEAD + b.len() <= limit
                }) {
                    let checked = protocol::names::check_tablet_names(
                        t.device(),
                        (0..t.width()).map(|c| t.measurement(c)),
                    )
                    .map_err(|e| StoreError::new(e.code(), e.to_string()))
                    .and_then(|()| {
                        validate_tablet(&inner, &self.config, &t, Some(&mut pending), &mut buf)
                    });
                    if let Err(e) = checked {
                        failed = Some(e);
                        break;
                    }
                    bytes += wal::Log::RECORD_OVERHEAD + b.len();
                    chunk.push((t, b));
                }
            }
            if !chunk.is_empty() {
                let records: Vec<(u8, &[u8])> = chunk.iter().map(|(_, b)| (kind, *b)).collect();
                let first = self.log.append_batch(&records).map_err(log_error)?;
                last = Some(first + records.len() as u64 - 1);
                let (points, added, threshold) = {
                    let mut inner = self.inner.write().expect("store lock");
                    let before = inner.mem_points;
                    // The slots validation found, while they hold (the write
                    // lock keeps series from being removed meanwhile).
                    let slots: &[Option<series_map::Slot>] =
                        if pending.removals == inner.series.removals() {
                            &pending.slots
                        } else {
                            &[]
                        };
                    let mut at = 0;
                    for (t, _) in &chunk {
                        let next = at + t.width();
                        let s = slots.get(at..next).unwrap_or_default();
                        apply_tablet(&mut inner, &self.config, t, s, &mut buf);
                        at = next;
                    }
                    (
                        inner.mem_points,
                        inner.mem_points.saturating_sub(before),
                        self.threshold_in(&inner),
                    )
                };
                // Received points count as ingested too (one add per batch).
                self.counters
                    .points_ingested
                    .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
                chunk.clear();
                pending.clear();
                if points >= threshold || (points > 0 && self.log.checkpoint_wanted()) {
                    self.flush_in_background(points)?;
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(last)
    }

    fn write_encoded(&self, ev: Event, payload: Option<&[u8]>, origin: Origin) -> SResult<u64> {
        // Names are checked here, where every write passes and replay does
        // not (a replayed record was accepted once and must stay so).
        protocol::names::check_event(&ev).map_err(|e| StoreError::new(e.code(), e.to_string()))?;
        let _w = self.write_lock.lock().expect("write lock");
        {
            let inner = self.inner.read().expect("store lock");
            if !matches!(ev, Event::Delete { .. } | Event::Schema(_)) {
                if let Err(e) = self.refuse_if_cannot_flush(inner.mem_points) {
                    drop(inner);
                    // Try again now if its delay is over: space may be back.
                    self.flush_in_background(self.config.flush_points)?;
                    return Err(e);
                }
            }
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
        let kind = match origin {
            Origin::Local => kind,
            Origin::Pipe => kind | crate::event::FROM_PIPE,
        };
        let offset = self.log.append(kind, payload).map_err(log_error)?;
        let (points, added, threshold) = {
            let mut inner = self.inner.write().expect("store lock");
            let before = inner.mem_points;
            apply(&mut inner, &self.config, &ev, false)?;
            (
                inner.mem_points,
                inner.mem_points.saturating_sub(before),
                self.threshold_in(&inner),
            )
        };
        if matches!(ev, Event::Tablet(_)) {
            // The points the apply just added to the memtables (no flush
            // can run under the store lock): one relaxed add per write
            // request, no second pass over the tablet.
            self.counters
                .points_ingested
                .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // Past the log's hard bound only the store's checkpoint can free
        // space: flush early.
        if points >= threshold || (points > 0 && self.log.checkpoint_wanted()) {
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

    /// Bytes the memtables hold (their vectors' capacity), frozen ones
    /// being flushed and vectors kept for the next memtables included. Walks every series: for a scrape, not for a
    /// hot path.
    pub fn memtable_bytes(&self) -> u64 {
        let inner = self.inner.read().expect("store lock");
        inner
            .series
            .values()
            .map(|s| {
                s.mem.heap_bytes()
                    + s.frozen.as_ref().map_or(0, |f| {
                        memtable::column_bytes(&f.values) + 8 * f.times.capacity()
                    })
            })
            .sum::<usize>() as u64
            + inner.spares.bytes() as u64
    }

    /// When the last checkpoint was written (or, before the first, when the
    /// store opened).
    pub fn checkpointed_at(&self) -> std::time::SystemTime {
        self.inner
            .read()
            .expect("store lock")
            .checkpointed_at
            .unwrap_or(std::time::UNIX_EPOCH)
    }

    /// Points ingested and flushes, counted as they happen.
    pub fn counters(&self) -> &crate::metrics::StoreCounters {
        &self.counters
    }
}
