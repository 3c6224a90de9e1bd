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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use protocol::tablet::{Column, Tablet};
use protocol::types::{status, DataType, Value};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::chunkfile::{self, ChunkFile, ChunkMeta};
use crate::event::{Event, SchemaOp};
use crate::sql::Path;

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
struct Mem {
    times: Vec<i64>,
    values: Column,
    sorted: bool,
}

impl Mem {
    fn new(t: DataType) -> Mem {
        Mem {
            times: Vec::new(),
            values: Column::with_capacity(t, 0),
            sorted: true,
        }
    }

    /// Sorts by time, keeping the last write of each timestamp.
    fn normalize(&mut self) {
        if self.sorted {
            return;
        }
        let mut idx: Vec<usize> = (0..self.times.len()).collect();
        idx.sort_by_key(|&i| (self.times[i], i));
        let mut keep: Vec<usize> = Vec::with_capacity(idx.len());
        for i in idx {
            if keep.last().is_some_and(|&k| self.times[k] == self.times[i]) {
                *keep.last_mut().expect("non-empty") = i;
            } else {
                keep.push(i);
            }
        }
        self.times = keep.iter().map(|&i| self.times[i]).collect();
        self.values = self.values.gather(&keep);
        self.sorted = true;
    }
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

/// A frozen memtable: sorted, one point per timestamp, immutable.
#[derive(Debug)]
struct Frozen {
    seq: u64,
    times: Vec<i64>,
    values: Column,
}

/// One flush: the frozen memtables and the log offset they cover.
struct FlushJob {
    seq: u64,
    applied: u64,
    series: Vec<(String, Arc<Frozen>)>,
}

/// Whether a background flush runs, and the error of the last one.
#[derive(Debug, Default)]
struct FlushState {
    running: bool,
    error: Option<String>,
    /// The flush thread, while it writes its chunk file in the idle
    /// scheduling class: a writer that finds the memtables filling up
    /// behind it raises it to nice 10 (and clears this).
    idle_tid: Option<i32>,
}

/// A deletion that applies to chunk files up to `upto_seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tombstone {
    path: String,
    min: i64,
    max: i64,
    upto_seq: u64,
}

/// The checkpoint file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    applied_offset: u64,
    next_seq: u64,
    files: Vec<u64>,
    databases: Vec<String>,
    series: Vec<(String, SeriesInfo)>,
    tombstones: Vec<Tombstone>,
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
        protocol::names::check_event(&ev).map_err(|e| StoreError::new(e.code(), e.to_string()))?;
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

    /// Freezes the memtables (holding `points`) and writes them in a
    /// background thread, so writers do not wait for the chunk file. If a
    /// flush already runs: at one and a half times the threshold it is
    /// raised out of the idle class, so that it keeps up under load; at
    /// twice the threshold the writer waits for it, which bounds memory.
    fn flush_in_background(&self, points: usize) -> SResult<()> {
        let threshold = self.config.flush_points;
        let (lock, cv) = &*self.flush_state;
        let mut st = lock.lock().expect("flush lock");
        if st.running {
            if points >= threshold + threshold / 2 {
                if let Some(tid) = st.idle_tid.take() {
                    // Under the lock: the thread clears `idle_tid` under it
                    // before it leaves the idle class, so it still runs.
                    wal::background_priority_of(tid);
                }
            }
            if points < 2 * threshold {
                return Ok(());
            }
            st = cv.wait_while(st, |s| s.running).expect("flush lock");
        }
        let job = self.freeze();
        st.running = true;
        drop(st);
        let (dir, log, inner, state) = (
            self.dir.clone(),
            self.log.clone(),
            self.inner.clone(),
            self.flush_state.clone(),
        );
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                wal::background_priority();
                let r = run_flush(&dir, &log, &inner, job, Some(&state));
                let (lock, cv) = &*state;
                let mut st = lock.lock().expect("flush lock");
                st.running = false;
                if let Err(e) = r {
                    tracing::error!(cause = %e, "background flush failed; writes are refused until a restart");
                    st.error = Some(e.to_string());
                }
                cv.notify_all();
            })
            .map_err(|e| internal(format!("cannot start the flush thread: {e}")))?;
        Ok(())
    }

    /// Moves every non-empty memtable into a frozen one for the next flush.
    /// Called with the write lock held, so the log end is what they cover.
    fn freeze(&self) -> FlushJob {
        let applied = self.log.end_offset();
        let mut inner = self.inner.write().expect("store lock");
        let seq = inner.next_seq;
        let mut series = Vec::new();
        for (path, s) in inner.series.iter_mut() {
            if s.mem.times.is_empty() {
                continue;
            }
            s.mem.normalize();
            let n = s.mem.times.len();
            let t = s.info.data_type;
            let f = Arc::new(Frozen {
                seq,
                times: std::mem::replace(&mut s.mem.times, Vec::with_capacity(n)),
                values: std::mem::replace(&mut s.mem.values, Column::with_capacity(t, n)),
            });
            s.frozen = Some(f.clone());
            series.push((path.clone(), f));
        }
        if !series.is_empty() {
            inner.next_seq += 1;
        }
        inner.mem_points = 0;
        FlushJob {
            seq,
            applied,
            series,
        }
    }

    /// Writes every memtable to a new chunk file and checkpoints, after any
    /// background flush.
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush(&self) -> SResult<()> {
        let _w = self.write_lock.lock().expect("write lock");
        let (lock, cv) = &*self.flush_state;
        let st = lock.lock().expect("flush lock");
        let st = cv.wait_while(st, |s| s.running).expect("flush lock");
        if let Some(e) = &st.error {
            return Err(internal(format!(
                "a background flush failed ({e}); restart the node"
            )));
        }
        drop(st);
        let job = self.freeze();
        run_flush(&self.dir, &self.log, &self.inner, job, None)
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

    /// The points of `path` with times in `[lo, hi]`: chunk files, minus
    /// tombstones, overlaid by later files and the memtable.
    pub fn read(&self, path: &str, lo: i64, hi: i64) -> Option<Points> {
        {
            let inner = self.inner.read().expect("store lock");
            let s = inner.series.get(path)?;
            if s.mem.sorted {
                return Some(read_series(&inner, path, s, lo, hi));
            }
        }
        let mut inner = self.inner.write().expect("store lock");
        inner.series.get_mut(path)?.mem.normalize();
        let s = inner.series.get(path)?;
        Some(read_series(&inner, path, s, lo, hi))
    }

    /// Points held in memtables (not yet flushed).
    pub fn memtable_points(&self) -> usize {
        self.inner.read().expect("store lock").mem_points
    }
}

// A read helper for queries that scan a large range a part at a time
// (node/src/query/scan.rs). Belongs with `read` (store/query.rs after the
// store's split).
impl Store {
    /// Where the points of `path` in `[lo, hi]` lie, without reading them:
    /// for each part [`Store::read`] would merge (a chunk, the frozen
    /// memtable, the memtable), its first and last time in the range and
    /// its point count there, before deletions and overlaps are applied.
    /// `None` if there is no such series.
    pub fn read_plan(&self, path: &str, lo: i64, hi: i64) -> Option<Vec<(i64, i64, usize)>> {
        let inner = self.inner.read().expect("store lock");
        let s = inner.series.get(path)?;
        let mut parts = Vec::new();
        for (f, i) in &s.chunks {
            let c = &f.chunks[*i];
            if c.max < lo || c.min > hi {
                continue;
            }
            let r = f.range(c, lo, hi);
            if !r.is_empty() {
                parts.push((f.time(c, r.start), f.time(c, r.end - 1), r.len()));
            }
        }
        let mut sorted_part = |times: &[i64]| {
            let first = times.partition_point(|&x| x < lo);
            let end = times.partition_point(|&x| x <= hi).max(first);
            if end > first {
                parts.push((times[first], times[end - 1], end - first));
            }
        };
        if let Some(f) = &s.frozen {
            sorted_part(&f.times);
        }
        if s.mem.sorted {
            sorted_part(&s.mem.times);
        } else {
            let mut n = 0;
            let (mut a, mut b) = (i64::MAX, i64::MIN);
            for &t in s.mem.times.iter().filter(|&&t| lo <= t && t <= hi) {
                n += 1;
                a = a.min(t);
                b = b.max(t);
            }
            if n > 0 {
                parts.push((a, b, n));
            }
        }
        Some(parts)
    }
}

/// Writes a flush job's chunk file, swaps it in for the frozen memtables,
/// checkpoints and commits the store's log offset. `background`: the
/// flush state, when the calling thread is the background flush thread,
/// whose priority this lowers while it writes the chunk file.
fn run_flush(
    dir: &FsPath,
    log: &wal::Log,
    inner_lock: &RwLock<Inner>,
    job: FlushJob,
    background: Option<&(Mutex<FlushState>, std::sync::Condvar)>,
) -> SResult<()> {
    let FlushJob {
        seq,
        applied,
        series,
    } = job;
    if !series.is_empty() {
        let data: Vec<(&str, &[i64], &Column)> = series
            .iter()
            .map(|(p, f)| (p.as_str(), &f.times[..], &f.values))
            .collect();
        // Encoding and writing the chunk file holds no lock: in the
        // background it runs only when nothing else wants the CPU, unless
        // writers find the memtables filling up behind it (see
        // `flush_in_background`).
        if let Some((lock, _)) = background {
            let mut st = lock.lock().expect("flush lock");
            wal::idle_priority();
            st.idle_tid = Some(wal::thread_id());
        }
        let written = chunkfile::write(dir, seq, &data);
        if let Some((lock, _)) = background {
            let mut st = lock.lock().expect("flush lock");
            st.idle_tid = None;
            wal::background_priority();
        }
        let path = written.map_err(internal)?;
        let file = ChunkFile::open(&path, seq).map_err(internal)?;
        let mut inner = inner_lock.write().expect("store lock");
        for (i, c) in file.chunks.iter().enumerate() {
            if let Some(s) = inner.series.get_mut(&c.path) {
                // A series dropped and re-created meanwhile holds no frozen
                // memtable of this flush; the drop's tombstone hides the rest.
                if s.frozen.as_ref().is_some_and(|f| f.seq == seq) {
                    s.chunks.push((file.clone(), i));
                    s.frozen = None;
                }
            }
        }
        inner.files.push(file);
    }
    let ck = {
        let inner = inner_lock.read().expect("store lock");
        Checkpoint {
            applied_offset: applied,
            next_seq: inner.next_seq,
            files: inner.files.iter().map(|f| f.seq).collect(),
            databases: inner.databases.iter().cloned().collect(),
            series: inner
                .series
                .iter()
                .map(|(p, s)| (p.clone(), s.info.clone()))
                .collect(),
            tombstones: inner.tombstones.clone(),
        }
    };
    write_atomic(&dir.join("checkpoint"), &encode_checkpoint(&ck)).map_err(internal)?;
    log.commit(STORE_CONSUMER, applied).map_err(internal)?;
    if series.is_empty() {
        info!(applied_offset = applied, "checkpointed (memtables empty)");
    } else {
        info!(
            seq,
            series = series.len(),
            applied_offset = applied,
            "flushed memtables"
        );
    }
    Ok(())
}

/// The database of `path`: the one of the databases that prefixes it.
fn db_of(inner: &Inner, path: &str) -> Option<String> {
    inner
        .databases
        .iter()
        .find(|d| {
            path == d.as_str()
                || (path.starts_with(d.as_str()) && path.as_bytes().get(d.len()) == Some(&b'.'))
        })
        .cloned()
}

fn read_series(inner: &Inner, path: &str, s: &Series, lo: i64, hi: i64) -> Points {
    let t = s.info.data_type;
    let tombs: Vec<&Tombstone> = inner
        .tombstones
        .iter()
        .filter(|x| x.path == path && x.max >= lo && x.min <= hi)
        .collect();
    let mut parts: Vec<(Vec<i64>, Column)> = Vec::new();
    for (f, i) in &s.chunks {
        let c: &ChunkMeta = &f.chunks[*i];
        if c.max < lo || c.min > hi {
            continue;
        }
        let r = f.range(c, lo, hi);
        if r.is_empty() {
            continue;
        }
        let (mut times, mut vals) = (
            Vec::with_capacity(r.len()),
            Column::with_capacity(t, r.len()),
        );
        f.read(c, r, &mut times, &mut vals);
        let dead: Vec<&&Tombstone> = tombs.iter().filter(|x| x.upto_seq >= f.seq).collect();
        if !dead.is_empty() {
            let keep: Vec<usize> = (0..times.len())
                .filter(|&k| !dead.iter().any(|d| d.min <= times[k] && times[k] <= d.max))
                .collect();
            times = keep.iter().map(|&k| times[k]).collect();
            vals = vals.gather(&keep);
        }
        parts.push((times, vals));
    }
    if let Some(f) = &s.frozen {
        let first = f.times.partition_point(|&x| x < lo);
        let end = f.times.partition_point(|&x| x <= hi).max(first);
        let dead: Vec<&&Tombstone> = tombs.iter().filter(|x| x.upto_seq >= f.seq).collect();
        let keep: Vec<usize> = (first..end)
            .filter(|&k| {
                !dead
                    .iter()
                    .any(|d| d.min <= f.times[k] && f.times[k] <= d.max)
            })
            .collect();
        if !keep.is_empty() {
            parts.push((
                keep.iter().map(|&k| f.times[k]).collect(),
                f.values.gather(&keep),
            ));
        }
    }
    let m = &s.mem;
    let first = m.times.partition_point(|&x| x < lo);
    let end = m.times.partition_point(|&x| x <= hi).max(first);
    if end > first {
        let mut vals = Column::with_capacity(t, end - first);
        vals.extend_rows(&m.values, first..end);
        parts.push((m.times[first..end].to_vec(), vals));
    }
    merge(t, parts)
}

/// Merges sorted parts, later parts winning on equal times.
fn merge(t: DataType, mut parts: Vec<(Vec<i64>, Column)>) -> Points {
    parts.retain(|p| !p.0.is_empty());
    match parts.len() {
        0 => {
            return Points {
                times: vec![],
                values: Column::with_capacity(t, 0),
            }
        }
        1 => {
            let (times, values) = parts.pop().expect("one part");
            return Points { times, values };
        }
        _ => {}
    }
    let mut idx: Vec<(i64, usize, usize)> = Vec::new();
    for (pi, (times, _)) in parts.iter().enumerate() {
        idx.extend(times.iter().enumerate().map(|(i, &t)| (t, pi, i)));
    }
    idx.sort_unstable();
    let mut times = Vec::with_capacity(idx.len());
    let mut values = Column::with_capacity(t, idx.len());
    let mut k = 0;
    while k < idx.len() {
        let mut last = k;
        while last + 1 < idx.len() && idx[last + 1].0 == idx[k].0 {
            last += 1;
        }
        let (tm, pi, i) = idx[last];
        times.push(tm);
        values.extend_rows(&parts[pi].1, std::iter::once(i));
        k = last + 1;
    }
    Points { times, values }
}

fn auto_database(config: &StoreConfig, path: &str) -> Option<String> {
    let nodes = split(path);
    let level = config.default_database_level.max(1);
    (nodes.len() > level + 1).then(|| nodes[..=level].join("."))
}

fn check_series_path(path: &str) -> SResult<()> {
    let nodes = split(path);
    if nodes.len() < 3 || nodes[0] != "root" || nodes.iter().any(|n| n.is_empty()) {
        return Err(StoreError::new(status::ILLEGAL_PATH, format!("{path} is not a valid series path: a series needs root, a database and a measurement, e.g. root.sg.d.s")));
    }
    Ok(())
}

/// Checks an event against the schema without changing anything.
fn validate(inner: &Inner, config: &StoreConfig, ev: &Event) -> SResult<()> {
    match ev {
        Event::Tablet(t) => {
            if t.measurements.is_empty() {
                return Err(StoreError::new(
                    status::ILLEGAL_PARAMETER,
                    format!("insert into {}: no measurements", t.device),
                ));
            }
            let mut seen = BTreeSet::new();
            for (m, c) in t.measurements.iter().zip(&t.columns) {
                if !seen.insert(m) {
                    return Err(StoreError::new(
                        status::ILLEGAL_PARAMETER,
                        format!("insert into {}: measurement {m} appears twice", t.device),
                    ));
                }
                let path = format!("{}.{m}", t.device);
                check_series_path(&path)?;
                match inner.series.get(&path) {
                    Some(s) if s.info.data_type != c.data_type() => {
                        return Err(StoreError::new(
                            status::DATA_TYPE_MISMATCH,
                            format!(
                                "data type of {path} is {}, but the value written is {}",
                                s.info.data_type,
                                c.data_type()
                            ),
                        ))
                    }
                    Some(s) if s.info.aligned != t.aligned => {
                        return Err(StoreError::new(
                            status::METADATA_ERROR,
                            format!(
                                "device {} is {}aligned, but this insert is {}aligned",
                                t.device,
                                if s.info.aligned { "" } else { "not " },
                                if t.aligned { "" } else { "not " }
                            ),
                        ))
                    }
                    Some(_) => {}
                    None if !config.auto_create_schema => {
                        return Err(StoreError::new(status::PATH_NOT_EXIST, format!("series {path} does not exist and automatic schema creation is off (enable_auto_create_schema=false); create it first")));
                    }
                    None => {
                        if db_of(inner, &path).is_none() && auto_database(config, &path).is_none() {
                            return Err(StoreError::new(status::DATABASE_NOT_EXIST, format!("no database for {path} and it is too short to make one at level {}", config.default_database_level)));
                        }
                    }
                }
            }
            Ok(())
        }
        Event::Delete { .. } => Ok(()),
        Event::Schema(SchemaOp::CreateDatabase(p)) => {
            let nodes = split(p);
            if nodes.len() < 2 || nodes[0] != "root" {
                return Err(StoreError::new(
                    status::ILLEGAL_PATH,
                    format!("{p} is not a valid database path, e.g. root.sg"),
                ));
            }
            if inner.databases.contains(p) {
                return Err(StoreError::new(
                    status::DATABASE_ALREADY_EXISTS,
                    format!("{p} has already been created as database"),
                ));
            }
            if let Some(d) = inner
                .databases
                .iter()
                .find(|d| p.starts_with(&format!("{d}.")) || d.starts_with(&format!("{p}.")))
            {
                return Err(StoreError::new(
                    status::DATABASE_ALREADY_EXISTS,
                    format!("{p} overlaps the existing database {d}"),
                ));
            }
            Ok(())
        }
        Event::Schema(SchemaOp::DeleteDatabase(p)) => {
            if !inner.databases.contains(p) {
                return Err(StoreError::new(
                    status::DATABASE_NOT_EXIST,
                    format!("database {p} does not exist"),
                ));
            }
            Ok(())
        }
        Event::Schema(SchemaOp::CreateTimeseries { path, aligned, .. }) => {
            check_series_path(path)?;
            if inner.series.contains_key(path) {
                return Err(StoreError::new(
                    status::TIMESERIES_ALREADY_EXIST,
                    format!("timeseries {path} already exists"),
                ));
            }
            let device = &path[..path.rfind('.').expect("checked path")];
            if let Some((_, s)) =
                inner
                    .series
                    .range(format!("{device}.")..)
                    .next()
                    .filter(|(p, _)| {
                        p.starts_with(&format!("{device}.")) && !p[device.len() + 1..].contains('.')
                    })
            {
                if s.info.aligned != *aligned {
                    return Err(StoreError::new(
                        status::METADATA_ERROR,
                        format!(
                            "device {device} already has {}aligned series",
                            if s.info.aligned { "" } else { "non-" }
                        ),
                    ));
                }
            }
            if db_of(inner, path).is_none() && auto_database(config, path).is_none() {
                return Err(StoreError::new(
                    status::DATABASE_NOT_EXIST,
                    format!("no database for {path}"),
                ));
            }
            Ok(())
        }
    }
}

fn ensure_database(inner: &mut Inner, config: &StoreConfig, path: &str) {
    if db_of(inner, path).is_none() {
        if let Some(db) = auto_database(config, path) {
            inner.databases.insert(db);
        }
    }
}

/// Applies an event to the in-memory state.
fn apply(inner: &mut Inner, config: &StoreConfig, ev: &Event, check: bool) -> SResult<()> {
    match ev {
        Event::Tablet(t) => {
            if check {
                validate(inner, config, ev)?;
            }
            for (ci, (m, c)) in t.measurements.iter().zip(&t.columns).enumerate() {
                let path = format!("{}.{m}", t.device);
                if !inner.series.contains_key(&path) {
                    ensure_database(inner, config, &path);
                    let info = SeriesInfo {
                        data_type: c.data_type(),
                        encoding: encoding_name(c.data_type().default_encoding()).to_string(),
                        compressor: "LZ4".into(),
                        aligned: t.aligned,
                    };
                    inner.series.insert(
                        path.clone(),
                        Series {
                            mem: Mem::new(info.data_type),
                            info,
                            frozen: None,
                            chunks: Vec::new(),
                        },
                    );
                }
                let s = inner.series.get_mut(&path).expect("just ensured");
                let before = s.mem.times.len();
                let last = s.mem.times.last().copied();
                let added = match &t.nulls[ci] {
                    // No nulls: whole slices.
                    None => {
                        s.mem.times.extend_from_slice(&t.times);
                        s.mem.values.extend_from(c);
                        t.rows()
                    }
                    Some(nulls) => {
                        let rows: Vec<usize> = (0..t.rows()).filter(|&r| !nulls[r]).collect();
                        s.mem.times.extend(rows.iter().map(|&r| t.times[r]));
                        s.mem.values.extend_rows(c, rows.iter().copied());
                        rows.len()
                    }
                };
                let new = &s.mem.times[before..];
                let in_order = new.windows(2).all(|w| w[0] < w[1])
                    && match (last, new.first()) {
                        (Some(l), Some(&f)) => l < f,
                        _ => true,
                    };
                if !in_order {
                    s.mem.sorted = false;
                }
                inner.mem_points += added;
            }
            Ok(())
        }
        Event::Delete { patterns, min, max } => {
            let pats: Vec<Path> = patterns
                .iter()
                .filter_map(|p| crate::sql::parse_path(p).ok())
                .collect();
            let upto = inner.next_seq.saturating_sub(1);
            let mut tombs = Vec::new();
            for (path, s) in inner.series.iter_mut() {
                if !pats.iter().any(|p| p.matches(&split(path))) {
                    continue;
                }
                let keep: Vec<usize> = (0..s.mem.times.len())
                    .filter(|&i| s.mem.times[i] < *min || s.mem.times[i] > *max)
                    .collect();
                if keep.len() != s.mem.times.len() {
                    inner.mem_points -= s.mem.times.len() - keep.len();
                    s.mem.times = keep.iter().map(|&i| s.mem.times[i]).collect();
                    s.mem.values = s.mem.values.gather(&keep);
                }
                if !s.chunks.is_empty() || s.frozen.is_some() {
                    tombs.push(Tombstone {
                        path: path.clone(),
                        min: *min,
                        max: *max,
                        upto_seq: upto,
                    });
                }
            }
            inner.tombstones.extend(tombs);
            Ok(())
        }
        Event::Schema(op) => {
            if check {
                validate(inner, config, ev)?;
            }
            match op {
                SchemaOp::CreateDatabase(p) => {
                    inner.databases.insert(p.clone());
                }
                SchemaOp::DeleteDatabase(p) => {
                    inner.databases.remove(p);
                    let prefix = format!("{p}.");
                    let gone: Vec<String> = inner
                        .series
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    let upto = inner.next_seq.saturating_sub(1);
                    for k in gone {
                        if let Some(s) = inner.series.remove(&k) {
                            inner.mem_points -= s.mem.times.len();
                            if !s.chunks.is_empty() || s.frozen.is_some() {
                                inner.tombstones.push(Tombstone {
                                    path: k,
                                    min: i64::MIN,
                                    max: i64::MAX,
                                    upto_seq: upto,
                                });
                            }
                        }
                    }
                }
                SchemaOp::CreateTimeseries {
                    path,
                    data_type,
                    encoding,
                    compressor,
                    aligned,
                } => {
                    ensure_database(inner, config, path);
                    let info = SeriesInfo {
                        data_type: *data_type,
                        encoding: encoding.clone(),
                        compressor: compressor.clone(),
                        aligned: *aligned,
                    };
                    inner.series.insert(
                        path.clone(),
                        Series {
                            mem: Mem::new(*data_type),
                            info,
                            frozen: None,
                            chunks: Vec::new(),
                        },
                    );
                }
            }
            Ok(())
        }
    }
}

/// IoTDB's name of a `TSEncoding` id.
pub fn encoding_name(id: u8) -> &'static str {
    match id {
        0 => "PLAIN",
        1 => "DICTIONARY",
        2 => "RLE",
        3 => "DIFF",
        4 => "TS_2DIFF",
        5 => "BITMAP",
        6 => "GORILLA_V1",
        7 => "REGULAR",
        8 => "GORILLA",
        9 => "ZIGZAG",
        11 => "CHIMP",
        12 => "SPRINTZ",
        13 => "RLBE",
        _ => "PLAIN",
    }
}

fn encode_checkpoint(ck: &Checkpoint) -> Vec<u8> {
    let mut b = serde_json::to_vec(ck).expect("serialize checkpoint");
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    b
}

fn decode_checkpoint(b: &[u8]) -> Result<Checkpoint, String> {
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

fn write_atomic(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(path.parent().unwrap_or(FsPath::new(".")))?.sync_all()
}

/// Converts a SQL-side value for a series of type `t`.
///
/// # Errors
/// A type mismatch naming the series.
pub fn coerce(path: &str, t: DataType, v: &crate::sql::Literal) -> SResult<Value> {
    use crate::sql::Literal as L;
    let mismatch = || {
        StoreError::new(
            status::DATA_TYPE_MISMATCH,
            format!("data type of {path} is {t}, but the value {v:?} is not a {t}"),
        )
    };
    Ok(match (t, v) {
        (DataType::Boolean, L::Bool(b)) => Value::Boolean(*b),
        (DataType::Int32, L::Int(i)) => Value::Int32(i32::try_from(*i).map_err(|_| {
            StoreError::new(
                status::DATA_TYPE_MISMATCH,
                format!("{i} is out of range for {path} (INT32)"),
            )
        })?),
        (DataType::Int64, L::Int(i)) => Value::Int64(*i),
        (DataType::Float, L::Int(i)) => Value::Float(*i as f32),
        (DataType::Float, L::Float(f)) => Value::Float(*f as f32),
        (DataType::Double, L::Int(i)) => Value::Double(*i as f64),
        (DataType::Double, L::Float(f)) => Value::Double(*f),
        (DataType::Text, L::Text(s)) => Value::Text(s.as_bytes().to_vec()),
        (DataType::Text, L::Int(i)) => Value::Text(i.to_string().into_bytes()),
        (DataType::Text, L::Float(f)) => Value::Text(f.to_string().into_bytes()),
        (DataType::Text, L::Bool(b)) => Value::Text(b.to_string().into_bytes()),
        _ => return Err(mismatch()),
    })
}

/// The type a new series gets from a SQL literal (IoTDB's defaults: numbers
/// become DOUBLE, `true`/`false` BOOLEAN, strings TEXT).
pub fn infer(v: &crate::sql::Literal) -> Option<DataType> {
    use crate::sql::Literal as L;
    match v {
        L::Bool(_) => Some(DataType::Boolean),
        L::Int(_) | L::Float(_) => Some(DataType::Double),
        L::Text(_) => Some(DataType::Text),
        L::Null => None,
    }
}

/// A tablet for `device` from literal rows, typed by the schema (or by
/// inference for new series).
///
/// # Errors
/// Type mismatches.
pub fn tablet_from_rows(
    store: &Store,
    device: &str,
    measurements: &[String],
    aligned: bool,
    rows: &[(i64, Vec<crate::sql::Literal>)],
) -> SResult<Tablet> {
    let mut columns = Vec::with_capacity(measurements.len());
    let mut nulls = Vec::with_capacity(measurements.len());
    for (ci, m) in measurements.iter().enumerate() {
        let path = format!("{device}.{m}");
        let t = match store.series_info(&path) {
            Some(i) => i.data_type,
            None => match rows.iter().find_map(|r| infer(&r.1[ci])) {
                Some(t) => t,
                None => DataType::Double,
            },
        };
        let mut col = Column::with_capacity(t, rows.len());
        let mut nl = vec![false; rows.len()];
        for (ri, (_, vals)) in rows.iter().enumerate() {
            if vals[ci] == crate::sql::Literal::Null {
                nl[ri] = true;
                col.push(Value::placeholder(t));
            } else {
                col.push(coerce(&path, t, &vals[ci])?);
            }
        }
        columns.push(col);
        nulls.push(nl.iter().any(|&x| x).then_some(nl));
    }
    Ok(Tablet {
        device: device.to_string(),
        measurements: measurements.to_vec(),
        columns,
        nulls,
        times: rows.iter().map(|r| r.0).collect(),
        aligned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wal::{Config, FsyncPolicy};

    fn open(dir: &FsPath) -> Store {
        let log = Arc::new(
            wal::Log::open(
                dir.join("wal"),
                Config {
                    fsync: FsyncPolicy::Never,
                    ..Config::default()
                },
            )
            .unwrap(),
        );
        Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap()
    }

    fn tablet(device: &str, m: &str, times: Vec<i64>, vals: Vec<f64>) -> Event {
        Event::Tablet(Tablet {
            device: device.into(),
            measurements: vec![m.into()],
            nulls: vec![None],
            columns: vec![Column::Double(vals)],
            times,
            aligned: false,
        })
    }

    #[test]
    fn overwrite_delete_flush_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.write(tablet("root.sg.d", "x", vec![3, 1, 2], vec![3.0, 1.0, 2.0]))
            .unwrap();
        s.flush().unwrap();
        s.write(tablet("root.sg.d", "x", vec![2, 4], vec![20.0, 4.0]))
            .unwrap();
        let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap();
        assert_eq!(p.times, vec![1, 2, 3, 4]);
        assert_eq!(p.values, Column::Double(vec![1.0, 20.0, 3.0, 4.0]));
        s.write(Event::Delete {
            patterns: vec!["root.sg.**".into()],
            min: 3,
            max: 4,
        })
        .unwrap();
        let p = s.read("root.sg.d.x", 0, 10).unwrap();
        assert_eq!(p.times, vec![1, 2]);
        assert_eq!(s.databases(), vec!["root.sg"]);
        // Type mismatch is refused before logging.
        let end = s.log().end_offset();
        let e = s
            .write(Event::Tablet(Tablet {
                device: "root.sg.d".into(),
                measurements: vec!["x".into()],
                nulls: vec![None],
                columns: vec![Column::Int32(vec![1])],
                times: vec![9],
                aligned: false,
            }))
            .unwrap_err();
        assert_eq!(e.code, status::DATA_TYPE_MISMATCH);
        assert!(
            e.message.contains("data type of root.sg.d.x is DOUBLE"),
            "{e}"
        );
        assert_eq!(s.log().end_offset(), end);
        drop(s);
        // Restart: the checkpoint + replay give the same answer.
        let s = open(dir.path());
        let p = s.read("root.sg.d.x", 0, 10).unwrap();
        assert_eq!(p.times, vec![1, 2]);
        assert_eq!(p.values, Column::Double(vec![1.0, 20.0]));
        s.flush().unwrap();
        // Re-inserting a deleted time after the tombstone shows again.
        s.write(tablet("root.sg.d", "x", vec![3], vec![33.0]))
            .unwrap();
        s.flush().unwrap();
        drop(s);
        let s = open(dir.path());
        let p = s.read("root.sg.d.x", 0, 10).unwrap();
        assert_eq!(p.times, vec![1, 2, 3]);
        assert_eq!(p.values, Column::Double(vec![1.0, 20.0, 33.0]));
    }

    #[test]
    fn background_flushes_keep_every_point_visible() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            wal::Log::open(
                dir.path().join("wal"),
                Config {
                    fsync: FsyncPolicy::Never,
                    ..Config::default()
                },
            )
            .unwrap(),
        );
        let cfg = StoreConfig {
            flush_points: 100,
            ..StoreConfig::default()
        };
        let s = Store::open(&dir.path().join("store"), log.clone(), cfg.clone()).unwrap();
        // 50 tablets of 30 points: flushes start in the background while
        // writes and reads go on; a delete lands in the middle.
        for i in 0..50i64 {
            s.write(tablet(
                "root.sg.d",
                "x",
                (i * 30..i * 30 + 30).collect(),
                (0..30).map(|k| (i * 30 + k) as f64).collect(),
            ))
            .unwrap();
            if i == 25 {
                s.write(Event::Delete {
                    patterns: vec!["root.sg.d.x".into()],
                    min: 100,
                    max: 199,
                })
                .unwrap();
            }
            let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap();
            let want: Vec<i64> = (0..(i + 1) * 30)
                .filter(|t| i < 25 || !(100..=199).contains(t))
                .collect();
            assert_eq!(p.times, want, "after tablet {i}");
        }
        s.flush().unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("store"), log, cfg).unwrap();
        let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap();
        assert_eq!(p.times.len(), 1500 - 100);
        assert_eq!(p.values.get(200), protocol::types::Value::Double(300.0));
    }

    #[test]
    fn drop_database_forgets_data_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.write(tablet("root.sg.d", "x", vec![1], vec![1.0]))
            .unwrap();
        s.flush().unwrap();
        s.write(Event::Schema(SchemaOp::DeleteDatabase("root.sg".into())))
            .unwrap();
        assert!(s.read("root.sg.d.x", 0, 10).is_none());
        s.write(tablet("root.sg.d", "x", vec![2], vec![2.0]))
            .unwrap();
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.read("root.sg.d.x", 0, 10).unwrap().times, vec![2]);
    }
}
