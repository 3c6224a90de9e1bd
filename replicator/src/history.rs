//! A pipe's history from the store, when the change log no longer holds it
//! whole.
//!
//! # What history is, and where it comes from
//! A pipe's history is every point that arrived before the pipe was created
//! (IoTDB's "全量历史数据", seed 002; a PIPESINK pipe's `FROM (select **
//! from root where time >= …)` bounds it by the data's own time). A pipe
//! tails the change log, and the log keeps only what the store has not
//! checkpointed or some existing pipe still needs: once segments were
//! deleted, the records at the start of a new pipe's history are gone
//! from it (the log starts above offset 0). The store still holds all of
//! it. IoTDB reads a pipe's history from its TsFiles, not its WAL; a pipe
//! here reads it from the store's chunk files:
//!
//! - **When**: decided at `CREATE PIPE`. A pipe that extracts history
//!   while the log starts above offset 0 takes a snapshot of the store
//!   ([`HistorySource::snapshot`]: a flush, so the chunk files hold every
//!   record below the log offset `X` it returns). Its history is the
//!   snapshot, its realtime the log from `X` (its `history_end`); its log
//!   consumer is registered at `X`, so the log is kept from there. Any
//!   other pipe reads its history from the log as before (in arrival
//!   order): a pipe created before the data it sends was written, or while
//!   the log still starts at 0. Deciding at CREATE makes the split exact:
//!   what arrived before CREATE is history (time bounds apply), the rest is
//!   realtime, whenever the pipe is first started.
//! - **Reading**: device by device in path order, each device's series a
//!   bounded part at a time ([`SnapshotView::read`], at most about a
//!   batch), cut at one time for all of them: an aligned device's series
//!   go in one tablet, as do a non-aligned device's when they share most
//!   timestamps, else one tablet per series ([`tablets`]). The pattern
//!   (a plain string prefix of the series path) and the history time
//!   bounds are applied by the read. A large history streams: a batch at a
//!   time, never a device or a series whole.
//! - **Deletions**: the read applies the store's tombstones; every tablet
//!   read is then filtered by the deletion index as read at offset `X - 1`
//!   ([`crate::deletions`]), so no deletion logged since the snapshot lets
//!   a point it deleted through (invariant 12).
//! - **Sending**: the batches go through the pipe's connector like the
//!   log's (serial, or lanes by device: a device's history and its later
//!   log records take the same lane), each tablet as if read at `X - 1`.
//!   The committed log offset stays at `X` until the last history batch
//!   was acknowledged (its tablets hold the acknowledged offset below
//!   `X`), so the log is pinned from `X` meanwhile; then the pipe tails the
//!   log from `X`.
//! - **Progress**: which devices are done and up to which time
//!   (`Cursor`) is persisted in `system/history/<pipe>.json` (beside
//!   `pipes.json`) with the pipe's commits, only for batches the receiver
//!   acknowledged, and always before the log offset passes `X`. A crash,
//!   kill -9, cut link or STOP resumes from there (at-least-once: what was
//!   sent after the last commit is sent again), never from scratch; once
//!   the history is done the file says so. A resend never overwrites a
//!   newer value at the receiver: history of a series goes out before any
//!   of its realtime records, and the log offset passes `X` only after the
//!   history's end is persisted.
//! - **Chunk files**: immutable and never deleted while the node runs, so
//!   a snapshot stays readable for as long as a pipe reads it, across
//!   restarts (see the node's `store/snapshot.rs`).
//!
//! `SHOW PIPES` during a store history phase: RemainingEventCount adds the
//! snapshot's points the pipe has not read yet (counted from the chunk
//! files' index, before deletions: an upper bound) to the tablets read and
//! not acknowledged and the log's events past `X`; LagSeconds is at least
//! the snapshot's age (every point in it arrived before it was taken).
//!
//! ```text
//! system/history/<hex of the pipe id>.json:
//!   { "pipe": String, "creation_time_ms": i64, "offset": u64 (X),
//!     "snapshot_ms": i64, "handle": String (the source's),
//!     "cursor": null | { "device": String, "next": null | i64 },
//!     "done": bool }
//! ```
//! `cursor`: every device before `device` is done, and `device` up to
//! `next` (exclusive), or whole when `next` is null.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use protocol::tablet::{Column, Tablet};
use protocol::types::DataType;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::plugin::{ConnectorSpec, Extractor, PipeEvent, Processor};
use crate::progress::HistoryFigures;
use crate::task::{PipeTask, Prepared};

/// Where a pipe reads its history when the change log no longer holds it
/// whole: the node's store. Implemented by the node (the replicator cannot
/// call the store) and handed to [`crate::PipeManager::open_with_history`].
pub trait HistorySource: Send + Sync {
    /// Takes a snapshot: makes the store's immutable files cover every
    /// change-log record below an offset `X` (flushing it), and names them.
    ///
    /// # Errors
    /// Why the snapshot could not be taken (a full disk, named).
    fn snapshot(&self) -> Result<Snapshot, String>;

    /// Opens a snapshot by the handle [`HistorySource::snapshot`] returned,
    /// in this run of the node or an earlier one.
    ///
    /// # Errors
    /// A handle that does not decode.
    fn open(&self, handle: &str) -> Result<Arc<dyn SnapshotView>, String>;
}

/// A snapshot just taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The change-log offset it covers: every record below is in it, none
    /// at or above.
    pub offset: u64,
    /// What names it for [`HistorySource::open`] (opaque; persisted with
    /// the pipe).
    pub handle: String,
}

/// One device of a snapshot: its series under a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device path.
    pub device: String,
    /// Whether it is aligned (its series travel in one tablet).
    pub aligned: bool,
    /// Its series under the pattern: measurement and type, in path order.
    pub series: Vec<(String, DataType)>,
}

/// One bounded read of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRead {
    /// Serialized tablets (`Tablet.serialize()` + aligned byte, what the
    /// connectors send) of the device's points from the time asked for.
    pub tablets: Vec<Bytes>,
    /// The points they hold.
    pub points: u64,
    /// Where the next read of this device starts; `None` when the device
    /// has nothing more in the range.
    pub next: Option<i64>,
}

/// A snapshot, opened for reading.
pub trait SnapshotView: Send + Sync {
    /// The devices with series in the snapshot whose path starts with
    /// `pattern` (`extractor.pattern`: a plain string prefix), sorted by
    /// device path, each with those series only.
    ///
    /// # Errors
    /// A snapshot that cannot be read (a damaged file, named).
    fn devices(&self, pattern: &str) -> Result<Vec<Device>, String>;

    /// How many points `device` holds in `[from, to]` (event time), from
    /// the files' index, before deletions: cheap, an upper bound.
    fn count(&self, device: &Device, from: i64, to: i64) -> u64;

    /// Reads `device`'s points in `[from, to]` from `from` on: about
    /// `max_bytes` at most (at least one timestamp's points), cut at one
    /// time for all its series, the snapshot's deletions applied, as
    /// tablets ([`tablets`] groups them).
    ///
    /// # Errors
    /// Damaged data, naming the file and series.
    fn read(
        &self,
        device: &Device,
        from: i64,
        to: i64,
        max_bytes: usize,
    ) -> Result<DeviceRead, String>;
}

/// The tablets of one read of `device`: `series[i]` holds the points
/// (times increasing, one per time) of `device.series[i]`. An aligned
/// device makes one tablet, rows at the union of the times, a series
/// without a point at a row null there; so does a non-aligned device whose
/// series share most timestamps (at least half the cells hold a point).
/// Otherwise each series makes its own tablet: a tablet of series with
/// disjoint times would be mostly nulls. Series without points are left
/// out; no points, no tablet.
pub fn tablets(device: &Device, series: Vec<(Vec<i64>, Column)>) -> Vec<Tablet> {
    let mut cols: Vec<(String, Vec<i64>, Column)> = device
        .series
        .iter()
        .zip(series)
        .filter(|(_, (t, _))| !t.is_empty())
        .map(|((m, _), (t, c))| (m.clone(), t, c))
        .collect();
    if cols.is_empty() {
        return Vec::new();
    }
    let points: usize = cols.iter().map(|c| c.1.len()).sum();
    let mut rows: Vec<i64> = cols.iter().flat_map(|c| c.1.iter().copied()).collect();
    rows.sort_unstable();
    rows.dedup();
    if !device.aligned && rows.len() * cols.len() > 2 * points {
        return cols
            .into_iter()
            .map(|(m, times, values)| Tablet {
                device: device.device.clone(),
                measurements: vec![m],
                columns: vec![values],
                nulls: vec![None],
                times,
                aligned: false,
            })
            .collect();
    }
    let mut measurements = Vec::with_capacity(cols.len());
    let mut columns = Vec::with_capacity(cols.len());
    let mut nulls = Vec::with_capacity(cols.len());
    for (m, times, values) in cols.drain(..) {
        if times.len() == rows.len() {
            measurements.push(m);
            columns.push(values);
            nulls.push(None);
            continue;
        }
        // Row r takes point j of the series, or a placeholder (point 0,
        // hidden by the null bit).
        let (mut idx, mut null) = (Vec::with_capacity(rows.len()), vec![false; rows.len()]);
        let mut j = 0;
        for (r, &t) in rows.iter().enumerate() {
            if times.get(j) == Some(&t) {
                idx.push(j);
                j += 1;
            } else {
                idx.push(0);
                null[r] = true;
            }
        }
        measurements.push(m);
        columns.push(values.gather(&idx));
        nulls.push(Some(null));
    }
    vec![Tablet {
        device: device.device.clone(),
        measurements,
        columns,
        nulls,
        times: rows,
        aligned: device.aligned,
    }]
}

/// How far a pipe's history has been acknowledged (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// Every device before it is done.
    pub device: String,
    /// This device is done below this time; whole when `None`.
    pub next: Option<i64>,
}

/// A pipe's store history, as persisted (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// The pipe's id.
    pub pipe: String,
    /// Its creation time: a file left by a dropped pipe of the same name is
    /// not taken for a new one's.
    pub creation_time_ms: i64,
    /// The log offset the snapshot covers (the pipe's history end).
    pub offset: u64,
    /// When the snapshot was taken, ms since the epoch.
    pub snapshot_ms: i64,
    /// The source's name for the snapshot.
    pub handle: String,
    /// What was acknowledged; `None`: nothing yet.
    pub cursor: Option<Cursor>,
    /// Whether the whole history was acknowledged.
    pub done: bool,
}

/// The history files of a node's pipes: `system/history/`.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    dir: PathBuf,
}

impl Files {
    /// The files under the pipes' directory `system`.
    pub fn new(system: &Path) -> Files {
        Files {
            dir: system.join("history"),
        }
    }

    /// The file of pipe `id` (its id in hex: any id makes a file name).
    pub fn path(&self, id: &str) -> PathBuf {
        let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// The store history of pipe `id` created at `creation_time_ms`, if it
    /// has one.
    ///
    /// # Errors
    /// An unreadable or damaged file, named.
    pub fn load(&self, id: &str, creation_time_ms: i64) -> Result<Option<State>, String> {
        let p = self.path(id);
        match std::fs::read(&p) {
            Ok(b) => {
                let st: State = serde_json::from_slice(&b).map_err(|e| {
                    format!(
                        "{}: the pipe's history progress does not decode ({e}); drop and create the pipe again to send its history anew",
                        p.display()
                    )
                })?;
                Ok((st.pipe == id && st.creation_time_ms == creation_time_ms).then_some(st))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "{}: {}",
                p.display(),
                crate::plugin::connector::io_text(&e)
            )),
        }
    }

    /// Writes `st` (atomically, durably).
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn save(&self, st: &State) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            format!(
                "{}: {}",
                self.dir.display(),
                crate::plugin::connector::io_text(&e)
            )
        })?;
        crate::meta::write_atomically(&self.path(&st.pipe), &encode(st))
    }

    /// Removes pipe `id`'s file, if any.
    pub fn remove(&self, id: &str) {
        let p = self.path(id);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(file = %p.display(), cause = %e, "could not remove a dropped pipe's history progress")
            }
        }
    }

    /// Removes the files of pipes `keep` does not know (a crash between
    /// writing one and saving the pipe, or after a drop saved but before
    /// the file went).
    pub fn retain(&self, keep: impl Fn(&str, i64) -> bool) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let known = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<State>(&b).ok())
                .is_some_and(|st| keep(&st.pipe, st.creation_time_ms));
            if !known && p.extension().is_some_and(|x| x == "json") {
                info!(file = %p.display(), "removing the history progress of a pipe that does not exist");
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

fn encode(st: &State) -> Vec<u8> {
    serde_json::to_vec_pretty(st).expect("serialize history state")
}

/// What the acknowledgement of a history batch moves the progress to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Acknowledged up to here.
    pub cursor: Option<Cursor>,
    /// The last batch: the history is done once it is acknowledged.
    pub done: bool,
}

/// A running task's store history (see the module doc).
pub(crate) struct Phase {
    /// Where it reads.
    pub source: Arc<dyn HistorySource>,
    path: PathBuf,
    /// What the file holds.
    state: Mutex<State>,
    /// The newest acknowledged mark not yet persisted.
    acked: Mutex<Option<Mark>>,
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phase").field("path", &self.path).finish()
    }
}

/// A progress update to persist: the file and its new contents.
pub(crate) struct Update {
    phase: Arc<Phase>,
    state: State,
}

impl Update {
    /// Writes it (atomically, durably), then takes it as the phase's state.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn write(self) -> Result<(), String> {
        crate::meta::write_atomically(&self.phase.path, &encode(&self.state))
            .map_err(|e| format!("cannot persist the pipe's history progress: {e}"))?;
        *self.phase.state.lock().expect("history state") = self.state;
        Ok(())
    }
}

impl Phase {
    /// The history phase of a pipe whose file is `path` and holds `state`.
    pub fn new(source: Arc<dyn HistorySource>, path: PathBuf, state: State) -> Phase {
        Phase {
            source,
            path,
            state: Mutex::new(state),
            acked: Mutex::new(None),
        }
    }

    /// What the file holds.
    pub fn state(&self) -> State {
        self.state.lock().expect("history state").clone()
    }

    /// The receiver acknowledged every history batch up to the one `m`
    /// came with.
    pub fn acked(&self, m: Mark) {
        *self.acked.lock().expect("history acked") = Some(m);
    }

    /// The update the newest acknowledged mark makes, if one is waiting.
    pub fn update(self: &Arc<Self>) -> Option<Update> {
        let m = self.acked.lock().expect("history acked").take()?;
        let mut state = self.state();
        state.cursor = m.cursor;
        state.done = m.done;
        Some(Update {
            phase: self.clone(),
            state,
        })
    }
}

/// Where reading resumes after `cursor` in `devices`: the device's index
/// and the time to read it from (`start`: from the history's start).
fn resume_at(devices: &[Device], cursor: Option<&Cursor>, start: i64) -> (usize, i64) {
    let Some(c) = cursor else {
        return (0, start);
    };
    match devices.binary_search_by(|d| d.device.as_str().cmp(&c.device)) {
        Ok(i) => match c.next {
            Some(t) => (i, t.max(start)),
            None => (i + 1, start),
        },
        Err(i) => (i, start),
    }
}

/// The points ahead of a reader at device `i` from time `from`, to `to`.
fn ahead(
    view: &dyn SnapshotView,
    devices: &[Device],
    i: usize,
    from: i64,
    start: i64,
    to: i64,
) -> u64 {
    devices
        .iter()
        .enumerate()
        .skip(i)
        .map(|(k, d)| view.count(d, if k == i { from } else { start }, to))
        .sum()
}

/// The history figures of a pipe with no running task: the points its
/// extractor `ext` has still to read from `state`'s snapshot.
///
/// # Errors
/// A snapshot that cannot be opened or listed.
pub(crate) fn figures(
    source: &dyn HistorySource,
    state: &State,
    ext: &Extractor,
) -> Result<HistoryFigures, String> {
    let view = source.open(&state.handle)?;
    let devices = view.devices(&ext.pattern)?;
    let (i, from) = resume_at(&devices, state.cursor.as_ref(), ext.start);
    Ok(HistoryFigures {
        ahead: ahead(&*view, &devices, i, from, ext.start, ext.end),
        snapshot_ms: state.snapshot_ms,
    })
}

impl PipeTask {
    /// The store history phase (see the module doc): reads the snapshot
    /// from the acknowledged cursor on and hands its batches (each at most
    /// about `batch_bytes`) to the sender, the last one marked done. False
    /// when the pipe is stopping (the sender is gone) or a failure was
    /// handed on.
    pub(crate) async fn produce_history(
        &self,
        phase: &Arc<Phase>,
        tx: &tokio::sync::mpsc::Sender<Prepared>,
        ext: &Extractor,
        processor: &mut dyn Processor,
        spec: &ConnectorSpec,
        batch_bytes: usize,
    ) -> bool {
        let st = phase.state();
        if st.done {
            return true;
        }
        let x = st.offset;
        // Every tablet of the snapshot counts as read just below X: the
        // deletion index filters it by every deletion logged from X on,
        // and it holds the acknowledged offset below X until it is
        // acknowledged.
        let at = x.saturating_sub(1);
        let fail = |m: String| {
            Prepared::failed(format!("cannot read the pipe's history from the store's snapshot at change-log offset {x}: {m}"))
        };
        let opened = {
            let (source, handle, pattern) =
                (phase.source.clone(), st.handle.clone(), ext.pattern.clone());
            let (cursor, start, end) = (st.cursor.clone(), ext.start, ext.end);
            tokio::task::spawn_blocking(move || -> Result<_, String> {
                let view = source.open(&handle)?;
                let devices = view.devices(&pattern)?;
                let (i, from) = resume_at(&devices, cursor.as_ref(), start);
                let n = ahead(&*view, &devices, i, from, start, end);
                Ok((view, Arc::new(devices), i, from, n))
            })
            .await
            .unwrap_or_else(|e| Err(format!("the snapshot reader failed: {e}")))
        };
        let (view, devices, mut i, mut from, points) = match opened {
            Ok(o) => o,
            Err(m) => {
                let _ = tx.send(fail(m)).await;
                return false;
            }
        };
        self.stats.set_history(Some(HistoryFigures {
            ahead: points,
            snapshot_ms: st.snapshot_ms,
        }));
        info!(
            offset = x,
            devices = devices.len() - i.min(devices.len()),
            points,
            resumed = st.cursor.is_some(),
            "sending the pipe's history from the store"
        );
        let mut events: Vec<PipeEvent> = Vec::new();
        let mut sends = 0u64;
        let mut size = 0usize;
        let mut cursor = st.cursor.clone();
        let batch = |events: &mut Vec<PipeEvent>, sends: &mut u64, mark: Mark| Prepared {
            offsets: vec![at; events.len()],
            events: std::mem::take(events),
            next: x,
            sends: std::mem::take(sends),
            failure: None,
            history: Some(mark),
        };
        while i < devices.len() {
            // Wait for room before reading more than the batch held.
            let Ok(slot) = tx.reserve().await else {
                return false;
            };
            let budget = batch_bytes.saturating_sub(size).max(batch_bytes / 4);
            let read = {
                let (view, devices) = (view.clone(), devices.clone());
                let end = ext.end;
                tokio::task::spawn_blocking(move || view.read(&devices[i], from, end, budget))
                    .await
                    .unwrap_or_else(|e| Err(format!("the snapshot reader failed: {e}")))
            };
            let device = &devices[i].device;
            let read = match read {
                Ok(r) => r,
                Err(m) => {
                    let mut p = batch(
                        &mut events,
                        &mut sends,
                        Mark {
                            cursor,
                            done: false,
                        },
                    );
                    p.failure = Some(format!(
                        "cannot read the pipe's history of {device} from the store: {m}"
                    ));
                    self.hand_on(&mut Some(slot), tx, p).await;
                    return false;
                }
            };
            // The deletions the log holds now that the read is done.
            let deletions = self.shared.deletions.view();
            let filter = deletions.may_apply(at, device);
            for t in read.tablets {
                let t = if filter {
                    match Tablet::deserialize_v12(&t) {
                        Ok(tab) => match deletions.apply(at, tab) {
                            Some(tab) => Bytes::from(tab.serialize_v12()),
                            None => continue,
                        },
                        Err(m) => {
                            let mut p = batch(
                                &mut events,
                                &mut sends,
                                Mark {
                                    cursor,
                                    done: false,
                                },
                            );
                            p.failure = Some(format!("a history tablet of {device} read from the store does not decode: {m}"));
                            self.hand_on(&mut Some(slot), tx, p).await;
                            return false;
                        }
                    }
                } else {
                    t
                };
                size += t.len();
                let before = events.len();
                processor.process(PipeEvent::Tablet(t), &mut events);
                sends += events[before..].iter().filter(|e| spec.sends(e)).count() as u64;
            }
            self.stats.history_read(read.points);
            cursor = Some(Cursor {
                device: device.clone(),
                next: read.next,
            });
            match read.next {
                Some(t) => from = t,
                None => {
                    i += 1;
                    from = ext.start;
                }
            }
            if size >= batch_bytes {
                let p = batch(
                    &mut events,
                    &mut sends,
                    Mark {
                        cursor: cursor.clone(),
                        done: false,
                    },
                );
                size = 0;
                if !self.hand_on(&mut Some(slot), tx, p).await {
                    return false;
                }
            }
        }
        // The rest, marked done: once it is acknowledged, the history is.
        let p = batch(&mut events, &mut sends, Mark { cursor, done: true });
        self.hand_on(&mut None, tx, p).await
    }

    /// The receiver acknowledged the history batch that carried `m` and
    /// every one before it: the commit loop persists it (before it commits
    /// a log offset past the snapshot).
    pub(crate) fn history_acked(&self, m: Mark) {
        let Some(h) = &self.history else { return };
        if m.done {
            self.stats.set_history(None);
            info!("the pipe's history from the store was acknowledged; tailing the change log");
        }
        h.acked(m);
        self.noted.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(aligned: bool, ms: &[&str]) -> Device {
        Device {
            device: "root.sg.d".into(),
            aligned,
            series: ms
                .iter()
                .map(|m| (m.to_string(), DataType::Int64))
                .collect(),
        }
    }

    #[test]
    fn tablets_group_aligned_and_dense_devices_and_split_sparse_ones() {
        let s = |t: &[i64]| {
            (
                t.to_vec(),
                Column::Int64(t.iter().map(|x| x * 10).collect()),
            )
        };
        // Aligned: one tablet however sparse, nulls where a series has no
        // point; empty series left out.
        let t = tablets(
            &dev(true, &["a", "b", "c"]),
            vec![s(&[1, 5]), s(&[]), s(&[3])],
        );
        assert_eq!(t.len(), 1);
        let t = &t[0];
        assert!(t.aligned);
        assert_eq!(t.measurements, ["a", "c"]);
        assert_eq!(t.times, [1, 3, 5]);
        assert_eq!(
            t.nulls,
            [
                Some(vec![false, true, false]),
                Some(vec![true, false, true])
            ]
        );
        assert_eq!(t.columns[0].get(2), protocol::types::Value::Int64(50));
        assert_eq!(t.columns[1].get(1), protocol::types::Value::Int64(30));
        assert_eq!(t.points(), 3);
        // Non-aligned, dense: one tablet.
        let t = tablets(&dev(false, &["a", "b"]), vec![s(&[1, 2, 3]), s(&[1, 2, 3])]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].nulls, [None, None]);
        // Non-aligned, disjoint (a third of the cells would hold a point):
        // one tablet per series.
        let t = tablets(
            &dev(false, &["a", "b", "c"]),
            vec![s(&[1, 2]), s(&[3, 4]), s(&[5, 6])],
        );
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[1].measurements.clone(), t[1].times.clone()),
            (vec!["b".to_string()], vec![3, 4])
        );
        assert!(tablets(&dev(false, &["a"]), vec![s(&[])]).is_empty());
    }

    #[test]
    fn resuming_after_a_cursor() {
        let ds: Vec<Device> = ["root.a", "root.b", "root.d"]
            .iter()
            .map(|d| Device {
                device: d.to_string(),
                aligned: false,
                series: vec![],
            })
            .collect();
        let c = |d: &str, next| {
            Some(Cursor {
                device: d.into(),
                next,
            })
        };
        assert_eq!(resume_at(&ds, None, 7), (0, 7));
        assert_eq!(resume_at(&ds, c("root.b", Some(50)).as_ref(), 7), (1, 50));
        assert_eq!(resume_at(&ds, c("root.b", None).as_ref(), 7), (2, 7));
        // A device gone meanwhile (its database deleted): the next one.
        assert_eq!(resume_at(&ds, c("root.c", Some(5)).as_ref(), 7), (2, 7));
        assert_eq!(resume_at(&ds, c("root.d", None).as_ref(), 7), (3, 7));
    }

    #[test]
    fn file_names_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = Files::new(dir.path());
        assert!(f.path("a/b").ends_with("history/612f62.json"));
        let st = State {
            pipe: "p".into(),
            creation_time_ms: 5,
            offset: 9,
            snapshot_ms: 1,
            handle: "h".into(),
            cursor: None,
            done: false,
        };
        f.save(&st).unwrap();
        assert_eq!(f.load("p", 5).unwrap(), Some(st.clone()));
        // A re-created pipe of the same name does not take it.
        assert_eq!(f.load("p", 6).unwrap(), None);
        f.retain(|p, c| p == "p" && c == 6);
        assert_eq!(f.load("p", 5).unwrap(), None);
        f.save(&st).unwrap();
        std::fs::write(f.path("p"), b"{").unwrap();
        assert!(f.load("p", 5).unwrap_err().contains("does not decode"));
    }
}
