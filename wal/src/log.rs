//! The log: ordered segments, appends, rolls, durability, consumers and
//! retention.
//!
//! # Concurrency
//! - `writer` (a mutex) serialises appends, rolls, retention and close. Lock
//!   order: `sync` → `writer` → `segments` / `ledger` → `checkpoint`.
//! - Readers take no lock on the hot path: they read the published log end
//!   (`end`, an atomic) and the segment list (an `Arc` snapshot behind a
//!   short read lock).
//! - Tailing readers sleep on `appended`; the writer wakes them only when
//!   `waiting` says someone sleeps (a SeqCst store / load pair, so a wake-up
//!   is never lost).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::config::{Config, FsyncPolicy};
use crate::error::{Error, Result};
use crate::format::{self, batch_len, Checkpoint, CHECKPOINT_FILE};
use crate::ledger::{ConsumerState, Ledger, MAX_CONSUMER_NAME};
use crate::reader::Reader;
use crate::segment::{IndexCursor, Segment};

/// The current time in µs since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// A segment deleted by retention, as reported by
/// [`Log::enforce_retention`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Base offset of the deleted segment.
    pub base_offset: u64,
    /// One past its last offset.
    pub next_offset: u64,
    /// Whether the hard disk bound forced it while a consumer still needed it.
    pub forced: bool,
}

/// One consumer as [`Log::consumers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The consumer's name (one per pipe).
    pub name: String,
    /// Its committed offset and recorded losses.
    pub state: ConsumerState,
}

pub(crate) struct WriterState {
    pub active: Arc<Segment>,
    /// Arrival time of the last appended batch: arrival times never go back.
    pub last_arrival: i64,
    /// Index bookkeeping of the active segment.
    pub cursor: IndexCursor,
    /// Byte of the active segment below which the writer gave its pages
    /// back ([`Segment::release`]).
    pub released: u64,
    pub closed: bool,
}

struct SyncState {
    /// Base offset of the segment `pos` refers to.
    segment: u64,
    /// Bytes of that segment already flushed.
    pos: u64,
    last_checkpoint: Instant,
}

struct CheckpointState {
    /// The checkpoint this process last wrote (none before the first).
    last: Option<Checkpoint>,
    /// Arrival-time floor from recovery, for when every record is gone.
    arrival_floor: i64,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: Config,
    /// Ordered by base offset; the last one is the active segment.
    pub segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    pub log_start: AtomicU64,
    /// One past the last published record.
    pub end: AtomicU64,
    /// Every offset below this is durable.
    pub durable: AtomicU64,
    /// `None` for a read-only log.
    pub writer: Option<Mutex<WriterState>>,
    sync: Mutex<SyncState>,
    checkpoint: Mutex<CheckpointState>,
    pub ledger: Mutex<Ledger>,
    /// Consumers retention never deletes past, whatever the disk bounds
    /// say (the node's store: what it has not checkpointed exists only
    /// here). In memory: each run protects its consumers again.
    protected: Mutex<std::collections::BTreeSet<String>>,
    /// One past the last offset a forced deletion (a disk bound) removed:
    /// a reader left below the log start by one moves on (the loss is in
    /// the ledger).
    pub forced_upto: AtomicU64,
    /// The log is past `max-disk-bytes` and only protected consumers hold
    /// it: they should checkpoint (see [`Log::checkpoint_wanted`]).
    checkpoint_wanted: AtomicBool,
    /// Wakes tailing readers.
    pub appended: tokio::sync::Notify,
    /// How many readers are about to sleep on `appended`.
    pub waiting: AtomicUsize,
    /// Wakes blocking and async durability waiters.
    durable_cv: Condvar,
    durable_mx: Mutex<()>,
    durable_notify: tokio::sync::Notify,
    pub closed: AtomicBool,
    /// Tells the flusher thread to stop.
    stop: Mutex<bool>,
    /// A writer waits for durability: the flusher syncs now instead of at
    /// the end of its interval (set and cleared under `stop`).
    sync_wanted: AtomicBool,
    stop_cv: Condvar,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Sealed segments not yet flushed (`never` policy), oldest first.
    unflushed: Mutex<Vec<Arc<Segment>>>,
    /// Held while sealed segments are flushed: the flusher thread and a
    /// writer's `sync` must not write the same index files at once (they
    /// share a temporary file name).
    sealing: Mutex<()>,
    /// Held for the writer's life: the exclusive lock on `LOCK`.
    _lock: Option<std::fs::File>,
    /// How long data syncs take ([`Log::fsync_stats`]).
    pub fsyncs: crate::stats::LatencyHistogram,
}

/// A change log. Appends are serialised; any number of [`Reader`]s read and
/// tail it concurrently.
///
/// Dropping the log closes it cleanly (errors are logged); call
/// [`Log::close`] to see them.
pub struct Log {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("log_start", &self.log_start())
            .field("end", &self.end_offset())
            .finish()
    }
}

/// What recovery hands to the log it opened.
pub(crate) struct Recovered {
    /// The recovery point on disk, if it could be read.
    pub checkpoint: Option<Checkpoint>,
    /// Whether that recovery point must be replaced before appending.
    pub checkpoint_stale: bool,
    pub segments: Vec<Arc<Segment>>,
    pub log_start: u64,
    pub durable: u64,
    pub last_arrival: i64,
    pub ledger: Ledger,
    pub lock: Option<std::fs::File>,
}

impl Log {
    /// Bytes a batch takes in a segment besides its records (its header):
    /// a batch of payloads `p` takes `BATCH_OVERHEAD + Σ (RECORD_OVERHEAD +
    /// p.len())`, which must fit [`Config::max_batch_bytes`].
    pub const BATCH_OVERHEAD: usize = format::BATCH_HEADER_LEN;
    /// Bytes a record takes in a batch besides its payload.
    pub const RECORD_OVERHEAD: usize = format::RECORD_HEADER_LEN;

    /// Opens (creating if needed) the log in `dir` for writing, recovering
    /// from an unclean stop as `config.recovery_mode` says.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process writes this log;
    /// [`Error::Corruption`] for damage the recovery mode does not tolerate;
    /// [`Error::InvalidArgument`] for a bad config; I/O errors.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Log> {
        config.validate()?;
        let rec = crate::recovery::recover(dir.as_ref(), &config)?;
        let stale = rec.checkpoint_stale;
        let log = Log::from_recovered(dir.as_ref(), config, rec, false);
        // From now on a crash is an unclean stop: the recovery point on disk
        // stops saying "clean", so a kill before the first periodic
        // checkpoint is recovered (and reported) as one. When it is stale
        // (missing, or claiming records or a log start that recovery did not
        // keep: a lossy recovery), new records must not be taken for those.
        let active = log.shared.snapshot().last().expect("a segment").clone();
        let rp = (active.next_offset(), active.base_offset, active.data_len());
        log.shared.write_checkpoint(false, Some(rp), stale)?;
        if let FsyncPolicy::Interval(every) = log.shared.config.fsync {
            log.spawn_flusher(every);
        } else {
            log.spawn_flusher(log.shared.config.checkpoint_interval);
        }
        Ok(log)
    }

    /// Opens the log read-only: a snapshot of what is on disk now, beside a
    /// running writer if there is one. Takes no lock and changes nothing.
    /// Damage is reported when read, not repaired.
    ///
    /// # Errors
    /// I/O errors, or a directory that holds no log.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Log> {
        let rec = crate::recovery::open_read_only(dir.as_ref())?;
        Ok(Log::from_recovered(
            dir.as_ref(),
            Config::default(),
            rec,
            true,
        ))
    }

    fn from_recovered(dir: &Path, config: Config, rec: Recovered, read_only: bool) -> Log {
        let active = rec
            .segments
            .last()
            .expect("recovery yields a segment")
            .clone();
        let end = active.next_offset();
        // Recovery read what it checked through the mappings: give those
        // pages back before anyone shares the segments.
        for s in &rec.segments {
            s.release(0, u64::MAX);
        }
        let writer = (!read_only).then(|| {
            Mutex::new(WriterState {
                active: active.clone(),
                last_arrival: rec.last_arrival,
                cursor: active.cursor(),
                released: 0,
                closed: false,
            })
        });
        let shared = Shared {
            dir: dir.to_path_buf(),
            config,
            segments: RwLock::new(Arc::new(rec.segments)),
            log_start: AtomicU64::new(rec.log_start),
            end: AtomicU64::new(end),
            durable: AtomicU64::new(rec.durable),
            writer,
            sync: Mutex::new(SyncState {
                segment: active.base_offset,
                pos: active.data_len(),
                last_checkpoint: Instant::now(),
            }),
            // Recovery decides the recovery point: the one on disk when it
            // still holds, else none (and `open` writes a new one).
            checkpoint: Mutex::new(CheckpointState {
                last: if rec.checkpoint_stale {
                    None
                } else {
                    rec.checkpoint
                },
                arrival_floor: rec.last_arrival,
            }),
            ledger: Mutex::new(rec.ledger),
            protected: Mutex::default(),
            forced_upto: AtomicU64::new(0),
            checkpoint_wanted: AtomicBool::new(false),
            appended: tokio::sync::Notify::new(),
            waiting: AtomicUsize::new(0),
            durable_cv: Condvar::new(),
            durable_mx: Mutex::new(()),
            durable_notify: tokio::sync::Notify::new(),
            closed: AtomicBool::new(read_only),
            stop: Mutex::new(false),
            sync_wanted: AtomicBool::new(false),
            stop_cv: Condvar::new(),
            flusher: Mutex::new(None),
            unflushed: Mutex::new(Vec::new()),
            sealing: Mutex::new(()),
            _lock: rec.lock,
            fsyncs: crate::stats::LatencyHistogram::new(&crate::stats::FSYNC_BUCKETS),
        };
        Log {
            shared: Arc::new(shared),
        }
    }

    fn spawn_flusher(&self, every: Duration) {
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("wal-flusher".into())
            .spawn(move || shared.flusher_loop(every))
            .expect("spawn the flusher thread");
        *self.shared.flusher.lock().expect("flusher lock") = Some(handle);
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Appends one record; returns its offset.
    ///
    /// # Errors
    /// As [`Log::append_batch`].
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<u64> {
        self.append_batch(&[(kind, payload)])
    }

    /// Appends records as one batch (one header, one CRC, one arrival time);
    /// returns the offset of the first. Offsets are dense: the batch holds
    /// `first .. first + records.len()`. Under [`FsyncPolicy::Always`] the
    /// batch is durable when this returns; otherwise see
    /// [`Log::wait_durable`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty batch or one larger than a
    /// segment; [`Error::Closed`] after close; I/O errors from a roll or
    /// fsync.
    pub fn append_batch(&self, records: &[(u8, &[u8])]) -> Result<u64> {
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "empty batch: append at least one record".into(),
            ));
        }
        let len = batch_len(records.iter().map(|r| r.1)) as u64;
        let max = self.shared.config.max_batch_bytes();
        if len > max {
            return Err(Error::InvalidArgument(format!(
                "batch of {} record(s) needs {len} bytes, more than a segment holds ({max} bytes); \
                 split it or raise segment-bytes",
                records.len()
            )));
        }
        let shared = &*self.shared;
        let mut w = shared.writer()?;
        let now = now_us();
        let arrival = now.max(w.last_arrival);
        let active = &w.active;
        let full = active.data_len() + len > active.capacity();
        let aged = !active.is_empty()
            && arrival.saturating_sub(active.first_arrival())
                >= shared.config.segment_max_age.as_micros() as i64;
        if full || aged {
            shared.roll(&mut w)?;
        }
        let active = &w.active;
        let pos = active.data_len();
        let base = active.next_offset();
        let header = if len >= shared.config.direct_write_bytes {
            let (header, head, heads) =
                format::encode_batch_heads(len as usize, base, arrival, records);
            let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * records.len());
            parts.push(&head);
            for (h, (_, payload)) in heads.iter().zip(records) {
                parts.push(h);
                parts.push(payload);
            }
            active.write_parts_at(pos, &parts)?;
            header
        } else {
            active.with_slice_mut(pos, len as usize, |buf| {
                format::encode_batch(buf, base, arrival, records)
            })
        };
        let interval = shared.config.index_interval_bytes;
        let ws = &mut *w;
        ws.active.publish_batch(&header, interval, &mut ws.cursor);
        w.last_arrival = arrival;
        shared.end.store(header.next_offset(), Ordering::SeqCst);
        // Pages the writer copied small batches into stay resident until
        // given back: keep one step behind the end for tailing readers,
        // give back the rest, outside the lock.
        let step = w.active.release_step();
        let behind = (pos + len).saturating_sub(step);
        let release = (behind >= w.released + step).then(|| {
            let from = std::mem::replace(&mut w.released, behind);
            (w.active.clone(), from, behind)
        });
        drop(w);
        shared.wake_readers();
        if let Some((seg, from, to)) = release {
            seg.release(from, to);
        }
        if shared.config.fsync == FsyncPolicy::Always {
            shared.sync_to(header.next_offset())?;
        }
        Ok(base)
    }

    /// Makes everything appended so far durable now, whatever the policy.
    ///
    /// # Errors
    /// I/O errors from msync.
    pub fn sync(&self) -> Result<()> {
        let end = self.end_offset();
        self.shared.sync_to(end)
    }

    /// Blocks until `offset` is durable (under [`FsyncPolicy::Never`] it is
    /// as durable as the policy makes it once appended, so this returns at
    /// once).
    ///
    /// # Errors
    /// [`Error::Closed`] if the log closes first; [`Error::OffsetOutOfRange`]
    /// for an offset not yet appended.
    pub fn wait_durable(&self, offset: u64) -> Result<()> {
        let s = &*self.shared;
        s.check_appended(offset)?;
        if s.config.fsync == FsyncPolicy::Never {
            return Ok(());
        }
        if s.durable.load(Ordering::Acquire) <= offset {
            s.want_sync();
        }
        let mut g = s.durable_mx.lock().expect("durable lock");
        while s.durable.load(Ordering::Acquire) <= offset {
            if s.closed.load(Ordering::Acquire) && s.durable.load(Ordering::Acquire) <= offset {
                return Err(Error::Closed("closed before the offset became durable"));
            }
            g = s
                .durable_cv
                .wait_timeout(g, Duration::from_millis(100))
                .expect("durable lock")
                .0;
        }
        Ok(())
    }

    /// Waits, without blocking a thread, until `offset` is durable. See
    /// [`Log::wait_durable`].
    ///
    /// # Errors
    /// As [`Log::wait_durable`].
    pub async fn wait_durable_async(&self, offset: u64) -> Result<()> {
        let s = &*self.shared;
        s.check_appended(offset)?;
        if s.config.fsync == FsyncPolicy::Never {
            return Ok(());
        }
        loop {
            let notified = s.durable_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if s.durable.load(Ordering::Acquire) > offset {
                return Ok(());
            }
            if s.closed.load(Ordering::Acquire) {
                return Err(Error::Closed("closed before the offset became durable"));
            }
            s.want_sync();
            notified.await;
        }
    }

    /// First offset still in the log.
    pub fn log_start(&self) -> u64 {
        self.shared.log_start.load(Ordering::Acquire)
    }

    /// One past the last appended record (the log end offset).
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// Every offset below this one is durable. For a read-only log, what
    /// the checkpoint on disk vouches for (see [`Log::durability`]).
    pub fn durable_offset(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// A reader positioned at `offset`.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside `[log_start, end]`.
    pub fn reader(&self, offset: u64) -> Result<Reader> {
        self.shared.check_range(offset)?;
        Ok(Reader::new(self.shared.clone(), offset))
    }

    /// A reader positioned at the first record whose arrival time is at or
    /// after `arrival_us` (µs since the epoch), or at the log end.
    ///
    /// # Errors
    /// Corruption met while seeking.
    pub fn reader_at_time(&self, arrival_us: i64) -> Result<Reader> {
        let offset = self.offset_for_time(arrival_us)?;
        Ok(Reader::new(self.shared.clone(), offset))
    }

    /// The first offset whose arrival time is at or after `arrival_us`, or
    /// the log end when there is none. Uses the time indexes: reads at most
    /// one index interval of the log.
    ///
    /// # Errors
    /// Corruption met while seeking.
    pub fn offset_for_time(&self, arrival_us: i64) -> Result<u64> {
        crate::reader::offset_for_time(&self.shared, arrival_us)
    }

    /// Registers a consumer starting at `offset` (clamped to the log), or
    /// returns the committed offset of an existing one.
    ///
    /// # Errors
    /// A bad name, a read-only log, or I/O errors writing the ledger.
    pub fn register_consumer(&self, name: &str, offset: u64) -> Result<u64> {
        check_consumer_name(name)?;
        let s = &*self.shared;
        let _w = s.writer()?;
        let mut ledger = s.ledger.lock().expect("ledger lock");
        if let Some(c) = ledger.consumers.get(name) {
            return Ok(c.committed);
        }
        let committed = offset.clamp(self.log_start(), self.end_offset());
        ledger.consumers.insert(
            name.to_string(),
            ConsumerState {
                committed,
                lost: vec![],
            },
        );
        if let Err(e) = ledger.save() {
            ledger.consumers.remove(name);
            return Err(e);
        }
        info!(consumer = name, committed, "registered consumer");
        Ok(committed)
    }

    /// Durably records that `name` has handled every offset below `offset`.
    /// Returns once the ledger is fsynced.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown consumer or an offset past
    /// the log end; I/O errors writing the ledger.
    pub fn commit(&self, name: &str, offset: u64) -> Result<()> {
        let s = &*self.shared;
        if s.writer.is_none() {
            return Err(Error::Closed("read-only"));
        }
        let end = self.end_offset();
        if offset > end {
            return Err(Error::InvalidArgument(format!(
                "consumer {name:?}: commit of offset {offset} past the log end {end}"
            )));
        }
        let mut ledger = s.ledger.lock().expect("ledger lock");
        let Some(c) = ledger.consumers.get_mut(name) else {
            return Err(Error::InvalidArgument(format!(
                "consumer {name:?} is not registered; register it first"
            )));
        };
        let old = c.committed;
        // Below the log start nothing is left to read: a consumer that
        // lost records to a disk bound may still acknowledge older ones.
        c.committed = offset.max(self.log_start());
        if let Err(e) = ledger.save() {
            if let Some(c) = ledger.consumers.get_mut(name) {
                c.committed = old;
            }
            return Err(e);
        }
        Ok(())
    }

    /// The committed offset of `name`, if registered.
    pub fn committed(&self, name: &str) -> Option<u64> {
        let ledger = self.shared.ledger.lock().expect("ledger lock");
        ledger.consumers.get(name).map(|c| c.committed)
    }

    /// Forgets a consumer (a dropped pipe); its offset no longer holds
    /// segments back. Returns whether it existed.
    ///
    /// # Errors
    /// I/O errors writing the ledger.
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        let s = &*self.shared;
        let _w = s.writer()?;
        let mut ledger = s.ledger.lock().expect("ledger lock");
        let Some(old) = ledger.consumers.remove(name) else {
            return Ok(false);
        };
        if let Err(e) = ledger.save() {
            ledger.consumers.insert(name.to_string(), old);
            return Err(e);
        }
        Ok(true)
    }

    /// Protects consumer `name` (or lifts the protection): retention never
    /// deletes a segment it still needs, not even when `max-disk-bytes` or
    /// `max-pinned-bytes` would force it. For a consumer whose unread
    /// records exist nowhere else (the node's store before it
    /// checkpoints). In memory only: protect it again after each open.
    pub fn set_protected(&self, name: &str, protected: bool) {
        let mut p = self.shared.protected.lock().expect("protected lock");
        if protected {
            p.insert(name.to_string());
        } else {
            p.remove(name);
        }
    }

    /// True when the log is past `max-disk-bytes` and only protected
    /// consumers keep it there: they should checkpoint and commit, so that
    /// retention can free space. Set by retention.
    pub fn checkpoint_wanted(&self) -> bool {
        self.shared.checkpoint_wanted.load(Ordering::Acquire)
    }

    /// Moves the log end up to `to` with empty records of `kind`: records
    /// `[end, to)` were lost from the log (recovery dropped them), but
    /// consumer `holder` had handled them already and holds their effect
    /// (the node's store, whose checkpoint is past the log end). Offsets
    /// stay dense and are never handed out twice. `holder` is committed at
    /// `to`; every other consumer gets the range recorded as lost. Does
    /// nothing when the log already reaches `to`.
    ///
    /// # Errors
    /// As [`Log::append_batch`]; an unknown `holder`; I/O errors writing
    /// the ledger.
    pub fn fill_gap(&self, to: u64, kind: u8, holder: &str) -> Result<()> {
        let from = self.end_offset();
        if to <= from {
            return Ok(());
        }
        if self.committed(holder).is_none() {
            return Err(Error::InvalidArgument(format!(
                "consumer {holder:?} is not registered; register it first"
            )));
        }
        let per = ((self.shared.config.max_batch_bytes() as usize - format::BATCH_HEADER_LEN)
            / format::RECORD_HEADER_LEN)
            .clamp(1, 1 << 16);
        let empty: Vec<(u8, &[u8])> = vec![(kind, &[][..]); per];
        let mut at = from;
        while at < to {
            let n = (to - at).min(per as u64) as usize;
            self.append_batch(&empty[..n])?;
            at += n as u64;
        }
        let mut ledger = self.shared.ledger.lock().expect("ledger lock");
        for (name, c) in ledger.consumers.iter_mut() {
            if name == holder {
                c.committed = c.committed.max(to);
            } else {
                warn!(consumer = %name, from, to, "records lost from the change log; this consumer will not see them");
                c.record_loss(from, to);
            }
        }
        ledger.save()?;
        warn!(
            from,
            to, holder, "filled a gap in the change log with empty records"
        );
        Ok(())
    }

    /// Every consumer with its committed offset and losses.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        let ledger = self.shared.ledger.lock().expect("ledger lock");
        ledger
            .consumers
            .iter()
            .map(|(name, state)| ConsumerInfo {
                name: name.clone(),
                state: state.clone(),
            })
            .collect()
    }

    /// Deletes old sealed segments as the retention settings say, never one
    /// a registered consumer still needs unless `max-disk-bytes` or
    /// `max-pinned-bytes` forces it (then the loss is recorded in the ledger
    /// first, and the consumer moves to the new log start), and never one a
    /// protected consumer still needs. Runs at every roll and every
    /// checkpoint interval; call it to run it now.
    ///
    /// # Errors
    /// I/O errors writing the ledger or checkpoint, or unlinking.
    pub fn enforce_retention(&self) -> Result<Vec<Deleted>> {
        let mut w = self.shared.writer()?;
        self.shared.enforce_retention(&mut w)
    }

    /// Total bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.snapshot().iter().map(|s| s.capacity()).sum()
    }

    /// Flushes, writes index files and a clean-shutdown checkpoint, and stops
    /// the background flusher. Further appends fail with [`Error::Closed`];
    /// readers keep reading what is there. Idempotent.
    ///
    /// # Errors
    /// I/O errors while flushing; the log is closed regardless, and the next
    /// open recovers as after a crash.
    pub fn close(&self) -> Result<()> {
        let s = &*self.shared;
        s.stop_flusher();
        let Some(writer) = &s.writer else {
            return Ok(());
        };
        let mut w = writer.lock().expect("writer lock");
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        s.closed.store(true, Ordering::Release);
        let result = (|| {
            s.flush_sealed()?;
            w.active.persist(s.needs_sync(&w.active))?;
            let end = s.end.load(Ordering::Acquire);
            s.set_durable(end);
            let rp = (end, w.active.base_offset, w.active.data_len());
            drop(w);
            s.write_checkpoint(true, Some(rp), false)
        })();
        s.appended.notify_waiters();
        s.durable_notify.notify_waiters();
        if result.is_ok() {
            debug!(dir = %s.dir.display(), end = s.end.load(Ordering::Acquire), "closed cleanly");
        }
        result
    }

    /// Simulates a crash for tests: stops the flusher and drops the log
    /// without flushing or writing the clean-shutdown checkpoint.
    #[doc(hidden)]
    pub fn abandon(self) {
        self.shared.stop_flusher();
        if let Some(w) = &self.shared.writer {
            w.lock().expect("writer lock").closed = true;
        }
        self.shared.closed.store(true, Ordering::Release);
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(dir = %self.shared.dir.display(), cause = %e, "closing the log failed");
        }
    }
}

fn check_consumer_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_CONSUMER_NAME || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "consumer name {name:?}: must be 1 to {MAX_CONSUMER_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

impl Shared {
    fn writer(&self) -> Result<MutexGuard<'_, WriterState>> {
        let Some(w) = &self.writer else {
            return Err(Error::Closed("read-only"));
        };
        let g = w.lock().expect("writer lock");
        if g.closed {
            return Err(Error::Closed("closed"));
        }
        Ok(g)
    }

    /// The recovery-point checkpoint this process last wrote or, for a
    /// read-only log, read.
    pub(crate) fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.lock().expect("checkpoint lock").last
    }

    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().expect("segments lock").clone()
    }

    pub(crate) fn check_range(&self, offset: u64) -> Result<()> {
        let log_start = self.log_start.load(Ordering::Acquire);
        let log_end = self.end.load(Ordering::Acquire);
        if offset < log_start || offset > log_end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        Ok(())
    }

    fn check_appended(&self, offset: u64) -> Result<()> {
        let log_end = self.end.load(Ordering::Acquire);
        if offset >= log_end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start.load(Ordering::Acquire),
                log_end,
            });
        }
        Ok(())
    }

    fn wake_readers(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.appended.notify_waiters();
        }
    }

    /// Whether `seg` holds bytes not yet synced: records past the durable
    /// offset, or (empty) a header no sync has covered yet.
    fn needs_sync(&self, seg: &Segment) -> bool {
        seg.is_empty() || self.durable.load(Ordering::Acquire) < seg.next_offset()
    }

    /// Asks the flusher for a group commit now: the waiting writer and every
    /// writer arriving while it runs are made durable by one sync.
    fn want_sync(&self) {
        if let FsyncPolicy::Interval(_) = self.config.fsync {
            let _g = self.stop.lock().expect("stop lock");
            self.sync_wanted.store(true, Ordering::Release);
            self.stop_cv.notify_all();
        }
    }

    fn set_durable(&self, offset: u64) {
        let prev = self.durable.fetch_max(offset, Ordering::AcqRel);
        if offset > prev {
            let _g = self.durable_mx.lock().expect("durable lock");
            self.durable_cv.notify_all();
            self.durable_notify.notify_waiters();
        }
    }

    /// Flushes the active segment up to the current end, so that every
    /// offset below `target` is durable. Concurrent callers group: one
    /// flushes, the others find their data flushed.
    fn sync_to(&self, target: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        if self.config.fsync == FsyncPolicy::Never {
            self.flush_sealed()?;
        }
        let mut st = self.sync.lock().expect("sync lock");
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let (seg, to, end) = {
            let Some(w) = &self.writer else {
                return Ok(());
            };
            let w = w.lock().expect("writer lock");
            (
                w.active.clone(),
                w.active.data_len(),
                self.end.load(Ordering::Acquire),
            )
        };
        if st.segment != seg.base_offset {
            // A roll persisted every older segment in full.
            st.segment = seg.base_offset;
            st.pos = 0;
        }
        self.fsyncs.time(|| seg.flush(st.pos, to))?;
        st.pos = to;
        self.set_durable(end);
        if st.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
            st.last_checkpoint = Instant::now();
            drop(st);
            self.write_checkpoint(false, Some((end, seg.base_offset, to)), false)?;
        }
        Ok(())
    }

    /// Writes the recovery-point checkpoint. `rp` is `(offset, segment base,
    /// byte position)` of a durable point; `None` keeps the previous one (a
    /// change of log start). The recovery point never moves back. An
    /// unchanged checkpoint is not written again, unless `names`: the
    /// caller created segments whose names this write (its directory sync)
    /// must make durable.
    #[track_caller]
    pub(crate) fn write_checkpoint(
        &self,
        clean: bool,
        rp: Option<(u64, u64, u64)>,
        names: bool,
    ) -> Result<()> {
        let mut ck = self.checkpoint.lock().expect("checkpoint lock");
        let prev = ck.last;
        let keep = prev.map(|c| (c.recovery_offset, c.segment_base, c.position));
        let (recovery_offset, segment_base, position) = match (rp, keep) {
            (Some(new), Some(old)) if new.0 < old.0 => old,
            (Some(new), _) => new,
            (None, Some(old)) => old,
            (None, None) => return Ok(()),
        };
        // A floor for arrival times after a restart, even if every record
        // goes to retention.
        let last_arrival_us = self
            .snapshot()
            .iter()
            .rev()
            .map(|s| s.last_arrival())
            .find(|&t| t != i64::MIN)
            .unwrap_or(ck.arrival_floor);
        let c = Checkpoint {
            clean,
            log_start: self.log_start.load(Ordering::Acquire),
            recovery_offset,
            segment_base,
            position,
            last_arrival_us,
        };
        if prev == Some(c) && !names {
            return Ok(());
        }
        crate::fsutil::write_atomic(
            &self.dir.join(CHECKPOINT_FILE),
            &c.encode(),
            "recovery point",
        )?;
        ck.last = Some(c);
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end.
    ///
    /// Nothing is published until the roll is on disk: the sealed
    /// segment's data and index files, the new segment, and a recovery
    /// point at the end of the sealed segment (writing it syncs the
    /// directory, which makes the new segment's name durable too). If any
    /// step fails (a full disk), the new file is removed, the old segment
    /// stays active, and the next append tries again.
    fn roll(&self, w: &mut WriterState) -> Result<()> {
        let old = w.active.clone();
        if old.is_empty() {
            // Too small for the batch and empty (a segment from a run with a
            // smaller segment size): replace it with a full-size one.
            let base = old.base_offset;
            let fresh = {
                let mut segs = self.segments.write().expect("segments lock");
                Segment::remove_files(&self.dir, base)?;
                let fresh = Arc::new(Segment::create(&self.dir, base, self.config.segment_bytes)?);
                let mut v = (**segs).clone();
                *v.last_mut().expect("a segment") = fresh.clone();
                *segs = Arc::new(v);
                fresh
            };
            crate::fsutil::sync_dir(&self.dir, "replaced segment")?;
            w.active = fresh;
            w.cursor = IndexCursor::default();
            w.released = 0;
            return Ok(());
        }
        // Under `never` the sealed data is flushed later by the flusher
        // thread, and only then does the recovery point move past it; its
        // index files and the new segment's directory entry are written
        // then too (five fsyncs that would stall this append).
        let defer = self.config.fsync == FsyncPolicy::Never;
        if !defer {
            if self.needs_sync(&old) {
                self.fsyncs.time(|| old.sync_data())?;
            }
            old.write_index_files()?;
        }
        let next = old.next_offset();
        let new = Arc::new(Segment::create(&self.dir, next, self.config.segment_bytes)?);
        if !defer {
            let rp = (next, old.base_offset, old.data_len());
            if let Err(e) = self.write_checkpoint(false, Some(rp), true) {
                drop(new);
                let _ = Segment::remove_files(&self.dir, next);
                return Err(e);
            }
        }
        {
            let mut segs = self.segments.write().expect("segments lock");
            let mut v = (**segs).clone();
            v.push(new.clone());
            *segs = Arc::new(v);
        }
        old.mark_sealed();
        w.active = new;
        w.cursor = IndexCursor::default();
        // Sealed: nothing writes it again, every page of it can go (its
        // dirty pages are still written back by the flush that seals it,
        // now or, under `never`, by the flusher).
        old.release(std::mem::take(&mut w.released), u64::MAX);
        self.appended.notify_waiters();
        debug!(
            segment = old.base_offset,
            next_offset = next,
            deferred_flush = defer,
            "rolled segment"
        );
        if defer {
            self.unflushed.lock().expect("unflushed lock").push(old);
        } else {
            self.set_durable(next);
        }
        // Retention frees space; its failure must not refuse the append.
        if let Err(e) = self.enforce_retention(w) {
            warn!(cause = %e, "retention failed; retrying at the next roll");
        }
        Ok(())
    }

    /// Flushes sealed segments whose flush the `never` policy deferred, then
    /// moves the durable offset and the recovery point past them (writing
    /// the recovery point syncs the directory: the names of the segments
    /// created by those rolls become durable with it).
    fn flush_sealed(&self) -> Result<()> {
        let _sealing = self.sealing.lock().expect("sealing lock");
        let pending = self.unflushed.lock().expect("unflushed lock").clone();
        let Some(last) = pending.last() else {
            return Ok(());
        };
        for s in &pending {
            self.fsyncs.time(|| s.sync_data())?;
            s.write_index_files()?;
        }
        let next = last.next_offset();
        self.write_checkpoint(false, Some((next, last.base_offset, last.data_len())), true)?;
        self.unflushed
            .lock()
            .expect("unflushed lock")
            .retain(|s| s.base_offset > last.base_offset);
        self.set_durable(next);
        Ok(())
    }

    /// Deletes what retention allows, oldest sealed segment first; see
    /// [`Log::enforce_retention`].
    fn enforce_retention(&self, _w: &mut WriterState) -> Result<Vec<Deleted>> {
        let c = &self.config;
        if c.retention_bytes.is_none()
            && c.retention_age.is_none()
            && c.max_disk_bytes.is_none()
            && c.max_pinned_bytes.is_none()
        {
            return Ok(vec![]);
        }
        let segs = self.snapshot();
        let mut ledger = self.ledger.lock().expect("ledger lock");
        let protected = self.protected.lock().expect("protected lock").clone();
        let min_committed = ledger.min_committed();
        let min_protected = ledger
            .consumers
            .iter()
            .filter(|(n, _)| protected.contains(*n))
            .map(|(_, s)| s.committed)
            .min();
        let sealed = &segs[..segs.len() - 1];
        let mut total: u64 = segs.iter().map(|s| s.capacity()).sum();
        // Bytes held only for unprotected consumers (pipes): sealed
        // segments every protected consumer (the store) is past.
        let behind_protected = |s: &Segment| min_protected.is_none_or(|m| s.next_offset() <= m);
        let mut pinned: u64 = sealed
            .iter()
            .take_while(|s| behind_protected(s))
            .map(|s| s.capacity())
            .sum();
        let cutoff = c
            .retention_age
            .map(|a| now_us().saturating_sub(a.as_micros() as i64));
        let mut deleted = Vec::new();
        for seg in sealed {
            if !behind_protected(seg) {
                // Never past what a protected consumer still needs.
                break;
            }
            let over_size = c.retention_bytes.is_some_and(|b| total > b);
            let too_old = cutoff.is_some_and(|t| seg.last_arrival() < t);
            let consumed = min_committed.is_none_or(|m| seg.next_offset() <= m);
            let forced = c.max_disk_bytes.is_some_and(|m| total > m)
                || c.max_pinned_bytes.is_some_and(|m| pinned > m);
            if (over_size || too_old) && consumed {
                deleted.push(Deleted {
                    base_offset: seg.base_offset,
                    next_offset: seg.next_offset(),
                    forced: false,
                });
            } else if forced {
                deleted.push(Deleted {
                    base_offset: seg.base_offset,
                    next_offset: seg.next_offset(),
                    forced: true,
                });
            } else {
                break;
            }
            total -= seg.capacity();
            pinned -= seg.capacity();
        }
        // Past the hard bound with nothing more to delete: a protected
        // consumer holds the log; it should checkpoint.
        self.checkpoint_wanted.store(
            c.max_disk_bytes.is_some_and(|m| total > m),
            Ordering::Release,
        );
        let Some(last) = deleted.last() else {
            return Ok(deleted);
        };
        let new_start = last.next_offset;
        // Record losses and move lagging consumers to the new log start, and
        // make that durable before any file goes.
        let mut changed = false;
        for (name, cs) in ledger.consumers.iter_mut() {
            if cs.committed < new_start {
                let from = cs.committed;
                warn!(
                    consumer = %name,
                    from,
                    to = new_start,
                    "the disk bound forced deletion of records this consumer had not read"
                );
                cs.record_loss(from, new_start);
                cs.committed = new_start;
                changed = true;
            }
        }
        if changed {
            ledger.save()?;
        }
        drop(ledger);
        if deleted.iter().any(|d| d.forced) {
            self.forced_upto.fetch_max(new_start, Ordering::AcqRel);
        }
        self.log_start.store(new_start, Ordering::Release);
        self.write_checkpoint(false, None, false)?;
        {
            let mut s = self.segments.write().expect("segments lock");
            *s = Arc::new(segs[deleted.len()..].to_vec());
        }
        // The unlinks need no directory sync: if a power cut undoes one,
        // recovery deletes the segment again (it lies below the log start
        // just recorded).
        for d in &deleted {
            Segment::remove_files(&self.dir, d.base_offset)?;
            info!(
                segment = d.base_offset,
                next_offset = d.next_offset,
                forced = d.forced,
                "retention deleted segment"
            );
        }
        Ok(deleted)
    }

    fn flusher_loop(&self, every: Duration) {
        if !matches!(self.config.fsync, FsyncPolicy::Interval(_)) {
            // Writers never wait for this thread: it only flushes sealed
            // segments and enforces retention.
            crate::segment::background_priority();
        }
        let mut last_retention = Instant::now();
        loop {
            {
                let stop = self.stop.lock().expect("stop lock");
                let (stop, _) = self
                    .stop_cv
                    .wait_timeout_while(stop, every, |s| {
                        !*s && !self.sync_wanted.load(Ordering::Acquire)
                    })
                    .expect("stop lock");
                if *stop {
                    return;
                }
                self.sync_wanted.store(false, Ordering::Release);
            }
            let flushed = match self.config.fsync {
                FsyncPolicy::Interval(_) => self.sync_to(self.end.load(Ordering::Acquire)),
                _ => self.flush_sealed(),
            };
            if let Err(e) = flushed {
                warn!(cause = %e, "flush failed; retrying next interval");
            }
            if last_retention.elapsed() >= self.config.checkpoint_interval {
                last_retention = Instant::now();
                let r = self
                    .writer()
                    .and_then(|mut w| self.enforce_retention(&mut w));
                if let Err(e) = r {
                    if !matches!(e, Error::Closed(_)) {
                        warn!(cause = %e, "retention failed; retrying next interval");
                    }
                }
            }
        }
    }

    fn stop_flusher(&self) {
        *self.stop.lock().expect("stop lock") = true;
        self.stop_cv.notify_all();
        let handle = self.flusher.lock().expect("flusher lock").take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}
