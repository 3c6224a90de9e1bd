//! Flushes: freezing the memtables, writing a chunk file (in the
//! background or at once), swapping it in, checkpointing and committing the
//! store's log offset.
//!
//! # A flush that fails
//! A full disk (or any I/O error) can stop a flush at any step. Nothing it
//! did may stand in the way of the next one, and nothing acknowledged may
//! go missing:
//! - the chunk file is written under a temporary name, removed on failure;
//! - a file that was written but could not be opened is removed;
//! - the frozen memtables go back into the memtables (under the writes
//!   that came since, and minus what deletes since removed), so queries
//!   keep seeing them and the next flush writes them;
//! - a checkpoint that could not be written leaves the previous one, and
//!   the log keeps everything since: a restart replays it.
//!
//! The store then keeps taking writes (the log holds them) and retries the
//! flush with a growing delay (1 s, doubling to 30 s); once the memtables
//! hold twice the flush threshold it refuses writes, with the disk named
//! when the disk is full, until a flush succeeds. No restart is needed.

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protocol::tablet::Column;
use protocol::types::status;
use tracing::{info, warn};

use super::checkpoint::{encode_checkpoint, write_checkpoint, Checkpoint};
use super::{internal, io_error, Frozen, Inner, Mem, SResult, Store, StoreError, STORE_CONSUMER};
use crate::chunkfile::{self, ChunkFile};

/// First delay before a failed flush is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between tries of a failing flush.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long the vectors a background flush gave back wait for the next
/// freeze before they are freed: a node that stops writing gives its
/// memtables' memory back.
pub(super) const SPARES_KEPT: Duration = Duration::from_secs(5);

/// One flush: the frozen memtables and the log offset they cover.
pub(super) struct FlushJob {
    seq: u64,
    applied: u64,
    series: Vec<(String, Arc<Frozen>)>,
    /// The most bytes of its memtables' vectors the flush keeps as spares
    /// for the next freeze (0: none), and the most points a kept vector
    /// holds.
    spare_cap: usize,
    spare_points: usize,
}

/// Whether a background flush runs, and how the last one ended.
#[derive(Debug, Default)]
pub(super) struct FlushState {
    pub(super) running: bool,
    /// The last flush's error, until one succeeds.
    pub(super) failed: Option<StoreError>,
    /// When a failed flush may be tried again, and the delay after that.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// The flush thread, while it writes its chunk file in the idle
    /// scheduling class: a writer that finds the memtables filling up
    /// behind it raises it to nice 10 (and clears this).
    idle_tid: Option<i32>,
    /// Freezes so far: the flush thread keeps its spare vectors until the
    /// next one, or frees them after [`SPARES_KEPT`] without one.
    freezes: u64,
}

impl FlushState {
    fn record(&mut self, r: &SResult<()>) {
        match r {
            Ok(()) => {
                if self.failed.take().is_some() {
                    info!("a flush succeeded again; writes resume");
                }
                self.retry_at = None;
                self.retry_delay = Duration::ZERO;
            }
            Err(e) => {
                self.retry_delay = (self.retry_delay * 2).clamp(RETRY_FIRST, RETRY_MAX);
                self.retry_at = Some(Instant::now() + self.retry_delay);
                warn!(cause = %e, retry_in_s = self.retry_delay.as_secs(), "flush failed; the memtables keep the points, the change log keeps them durable");
                self.failed = Some(e.clone());
            }
        }
    }

    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }
}

impl Store {
    /// Refuses a write while the memtables are full because flushes fail:
    /// once they hold twice the flush threshold after a failed flush. The
    /// status names the disk when it is full.
    pub(super) fn refuse_if_cannot_flush(&self, points: usize) -> SResult<()> {
        if points < 2 * self.config.flush_points {
            return Ok(());
        }
        let st = self.flush_state.0.lock().expect("flush lock");
        match &st.failed {
            Some(e) if !st.running => Err(StoreError::new(
                e.code,
                format!(
                    "write refused: the memtables are full and the store cannot flush them ({}); {}",
                    e.message,
                    if e.code == status::DISK_SPACE_INSUFFICIENT {
                        format!(
                            "free disk space on {}; writes resume once a flush succeeds (it is retried by itself)",
                            self.dir.display()
                        )
                    } else {
                        "writes resume once a flush succeeds (it is retried by itself)".into()
                    }
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The memtables' flush threshold: `flush_points`, or half of it
    /// while they run on kept vectors, which hold their pages from the
    /// start (see `memtable::Spares`).
    pub(super) fn flush_threshold(&self) -> usize {
        self.threshold_in(&self.inner.read().expect("store lock"))
    }

    /// [`Store::flush_threshold`], with the store lock held.
    pub(super) fn threshold_in(&self, inner: &Inner) -> usize {
        if inner.on_spares {
            (self.config.flush_points / 2).max(1)
        } else {
            self.config.flush_points
        }
    }

    /// Freezes the memtables (holding `points`) and writes them in a
    /// background thread, so writers do not wait for the chunk file. If a
    /// flush already runs: at one and a half times the threshold it is
    /// raised out of the idle class, so that it keeps up under load; at
    /// twice the threshold the writer waits for it, which bounds memory.
    /// After a failed flush, the next waits out its retry delay.
    pub(super) fn flush_in_background(&self, points: usize) -> SResult<()> {
        let threshold = self.flush_threshold();
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
        if !st.may_try() {
            return Ok(());
        }
        let job = self.freeze();
        st.running = true;
        st.freezes += 1;
        // Wakes the previous flush thread, which waits to free its spares.
        cv.notify_all();
        drop(st);
        let (dir, log, inner, state, counters) = (
            self.dir.clone(),
            self.log.clone(),
            self.inner.clone(),
            self.flush_state.clone(),
            self.counters.clone(),
        );
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                wal::background_priority();
                let r = run_flush(&dir, &log, &inner, job, Some(&state));
                count(&counters, &r);
                drop((log, counters));
                let inner = Arc::downgrade(&inner);
                let (lock, cv) = &*state;
                let mut st = lock.lock().expect("flush lock");
                st.running = false;
                st.record(&r);
                cv.notify_all();
                // The flush gave its memtables' vectors to the spares; if no
                // freeze takes them in a while, free them. Holds no more
                // than the store's state: a store dropped meanwhile is gone.
                let freezes = st.freezes;
                let (st, waited) = cv
                    .wait_timeout_while(st, SPARES_KEPT, |s| s.freezes == freezes)
                    .expect("flush lock");
                drop(st);
                if waited.timed_out() {
                    if let Some(inner) = inner.upgrade() {
                        release_spares(&mut inner.write().expect("store lock"));
                    }
                }
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
        let mut on_spares = false;
        let Inner {
            series: map,
            spares,
            ..
        } = &mut *inner;
        for (path, s) in map.iter_mut() {
            if s.mem.times.is_empty() {
                continue;
            }
            s.mem.normalize();
            // The new memtable starts on a flushed one's vectors, or empty:
            // sized like the frozen one, every series written once (a loaded
            // file, a backfill) kept a buffer of its flush's size forever
            // (230 MiB after a 100 M-point file).
            let next = match spares.take(s.info.data_type) {
                Some(m) => {
                    on_spares = true;
                    m
                }
                None => Mem::new(s.info.data_type),
            };
            let mem = std::mem::replace(&mut s.mem, next);
            let f = Arc::new(Frozen {
                seq,
                times: mem.times,
                values: mem.values,
            });
            s.frozen = Some(f.clone());
            series.push((path.clone(), f));
        }
        spares.clear();
        inner.on_spares = on_spares;
        if !series.is_empty() {
            inner.next_seq += 1;
        }
        inner.mem_points = 0;
        FlushJob {
            seq,
            applied,
            series,
            // Memtables on kept vectors flush at half the threshold.
            spare_points: (self.config.flush_points / 2).max(1),
            // A threshold of number points (16 B each), in vectors of at
            // most half of it.
            spare_cap: 16 * self.config.flush_points,
        }
    }

    /// Writes every memtable to a new chunk file and checkpoints, after any
    /// background flush.
    ///
    /// # Errors
    /// I/O errors (status 611 `DISK_SPACE_INSUFFICIENT` for a full disk,
    /// naming it); the points stay in the memtables and the change log.
    pub fn flush(&self) -> SResult<()> {
        self.flush_covering().map(|_| ())
    }

    /// As [`Store::flush`], returning what the flush covers: the change-log
    /// offset its checkpoint applied (every record below it is in a chunk
    /// file) and the sequence of the newest chunk file holding any of
    /// those records (0 when there is none). Nothing else can flush in
    /// between, so the pair is exact (see `snapshot.rs`).
    ///
    /// # Errors
    /// As [`Store::flush`].
    pub(super) fn flush_covering(&self) -> SResult<(u64, u64)> {
        let _w = self.write_lock.lock().expect("write lock");
        let (lock, cv) = &*self.flush_state;
        let st = lock.lock().expect("flush lock");
        // No background flush can start meanwhile: they start under the
        // write lock, which this holds.
        drop(cv.wait_while(st, |s| s.running).expect("flush lock"));
        let mut job = self.freeze();
        // Nothing frees spares after a flush in the foreground (a FLUSH, a
        // pipe's snapshot, the shutdown): it keeps none.
        job.spare_cap = 0;
        // The job writes file `seq` when it holds anything; otherwise the
        // newest file is the one before.
        let covered = (
            job.applied,
            if job.series.is_empty() {
                job.seq - 1
            } else {
                job.seq
            },
        );
        let r = run_flush(&self.dir, &self.log, &self.inner, job, None);
        count(&self.counters, &r);
        lock.lock().expect("flush lock").record(&r);
        r.map(|()| covered)
    }
}

/// Frees what the memtables hold beyond their points once writes stopped:
/// the spares, and the kept vectors of memtables that got few points or
/// none since (a series written once would hold one for good).
fn release_spares(inner: &mut Inner) {
    inner.spares.clear();
    inner.on_spares = false;
    for (_, s) in inner.series.iter_mut() {
        if s.mem.times.is_empty() {
            s.mem = Mem::new(s.info.data_type);
        } else {
            s.mem.times.shrink_to_fit();
            s.mem.values.shrink_to(0);
        }
    }
}

/// Counts a flush that ended.
fn count(counters: &crate::metrics::StoreCounters, r: &SResult<()>) {
    let c = match r {
        Ok(()) => &counters.flushes,
        Err(_) => &counters.flush_failures,
    };
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Puts a failed job's frozen memtables back under the memtables: newer
/// points (in the memtable) win on equal times, and points that deletes
/// since the freeze removed (their tombstones reach this job's sequence)
/// stay removed.
fn unfreeze(inner: &mut Inner, job: &FlushJob) {
    let mut returned = 0;
    for (path, frozen) in &job.series {
        let tombs: Vec<(i64, i64)> = inner
            .tombstones
            .iter()
            .filter(|t| &t.path == path && t.upto_seq >= job.seq)
            .map(|t| (t.min, t.max))
            .collect();
        let Some(s) = inner.series.get_mut(path) else {
            continue;
        };
        // A series dropped and re-created meanwhile holds no frozen
        // memtable of this job.
        if !s.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, frozen)) {
            continue;
        }
        s.frozen = None;
        let keep: Vec<usize> = (0..frozen.times.len())
            .filter(|&i| {
                let t = frozen.times[i];
                !tombs.iter().any(|&(lo, hi)| lo <= t && t <= hi)
            })
            .collect();
        let mut times: Vec<i64> = keep.iter().map(|&i| frozen.times[i]).collect();
        let mut values = frozen.values.gather(&keep);
        times.append(&mut s.mem.times);
        values.extend_from(&s.mem.values);
        s.mem.times = times;
        s.mem.values = values;
        s.mem.sorted = false;
        returned += keep.len();
    }
    inner.mem_points += returned;
}

/// Writes a flush job's chunk file, swaps it in for the frozen memtables,
/// checkpoints and commits the store's log offset. `background`: the
/// flush state, when the calling thread is the background flush thread,
/// whose priority this lowers while it writes the chunk file. On failure
/// nothing is left behind (see the module documentation).
fn run_flush(
    dir: &FsPath,
    log: &wal::Log,
    inner_lock: &RwLock<Inner>,
    mut job: FlushJob,
    background: Option<&(Mutex<FlushState>, std::sync::Condvar)>,
) -> SResult<()> {
    let (seq, applied, flushed) = (job.seq, job.applied, job.series.len());
    if flushed > 0 {
        let data: Vec<(&str, &[i64], &Column)> = job
            .series
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
        // Synced unless the node syncs nothing (see `chunkfile`).
        let sync = log.config().fsync != wal::FsyncPolicy::Never;
        let written = chunkfile::write(dir, seq, &data, sync);
        if let Some((lock, _)) = background {
            let mut st = lock.lock().expect("flush lock");
            st.idle_tid = None;
            wal::background_priority();
        }
        let opened = written
            .map_err(|e| io_error("write a chunk file", &e))
            .and_then(|path| {
                ChunkFile::open(&path, seq).map_err(|m| {
                    let _ = std::fs::remove_file(&path);
                    internal(m)
                })
            });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                unfreeze(&mut inner_lock.write().expect("store lock"), &job);
                return Err(e);
            }
        };
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
        // The file now answers for the frozen memtables; their vectors
        // (those no query still reads) serve the next memtables.
        for (_, f) in job.series.drain(..) {
            if let Ok(f) = Arc::try_unwrap(f) {
                inner
                    .spares
                    .give(f.times, f.values, job.spare_points, job.spare_cap);
            }
        }
    }
    // From here the points are in a chunk file the store reads; if the
    // checkpoint cannot be written, the previous one stands and a restart
    // replays the log from its offset (the file, not in it, is removed).
    let (ck, previous) = {
        let inner = inner_lock.read().expect("store lock");
        let mut files: Vec<u64> = inner.files.iter().map(|f| f.seq).collect();
        files.extend(inner.damaged.iter().map(|d| d.0));
        files.sort_unstable();
        (
            Checkpoint {
                applied_offset: applied,
                next_seq: inner.next_seq,
                files,
                databases: inner.databases.iter().cloned().collect(),
                series: inner
                    .series
                    .iter()
                    .map(|(p, s)| (p.clone(), s.info.clone()))
                    .collect(),
                tombstones: inner.tombstones.clone(),
            },
            inner.checkpointed,
        )
    };
    write_checkpoint(dir, &encode_checkpoint(&ck))
        .map_err(|e| io_error("write the store's checkpoint", &e))?;
    {
        let mut inner = inner_lock.write().expect("store lock");
        inner.checkpointed = applied;
        inner.checkpointed_at = Some(std::time::SystemTime::now());
    }
    // The log keeps what the previous checkpoint needs too: if this one is
    // ever damaged, the store starts from that one and replays.
    if let Err(e) = log.commit(STORE_CONSUMER, previous) {
        warn!(cause = %e, "could not commit the store's offset; the log keeps more until the next flush");
    }
    if flushed == 0 {
        info!(applied_offset = applied, "checkpointed (memtables empty)");
    } else {
        info!(
            seq,
            series = flushed,
            applied_offset = applied,
            "flushed memtables"
        );
    }
    Ok(())
}
