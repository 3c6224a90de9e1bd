//! A pipe's progress and health as `SHOW PIPES` reports them, kept cheap to
//! maintain on the transfer path and cheap to ask for.
//!
//! - **RemainingEventCount**: the events the pipe will still hand to its
//!   connector and that the connector sends (tablets; the thrift
//!   connectors do not send deletions, IoTDB 1.2's `pipeTransfer` having
//!   no request for them): those read from the log and not yet
//!   acknowledged, plus those in the log past what the pipe has read, up
//!   to where it stops reading (the log end; the history end for a pipe
//!   with `extractor.realtime.enable=false`, so a finished one shows 0).
//!   Records its pattern, history time range or history/realtime switches
//!   leave out are not counted.
//!   During a store history phase (`history.rs`) it adds the snapshot's
//!   points the pipe has not read yet, counted from the chunk files' index
//!   before deletions (an upper bound; the tablets read and not yet
//!   acknowledged are among the events above).
//! - **LagSeconds**: the wall-clock age of the oldest record the pipe has
//!   not had acknowledged and will send (its arrival time in the log); 0
//!   when nothing remains. A stalled pipe's lag grows by a second a second.
//!   During a store history phase, at least the snapshot's age: every
//!   point of it arrived before it was taken, and the log no longer says
//!   when.
//! - **ExceptionMessage** ([`message`]): while the pipe runs, the failure
//!   it retries after (`retry 3 of 5: …`), cleared when that transfer
//!   succeeds; once it stopped on its own, why; while it waits to restart
//!   (`pipe_auto_restart_enabled`; State stays STOPPED, as IoTDB keeps a
//!   pipe stopped by a runtime failure), when and why first: `auto-restart
//!   at 2026-05-04T10:15:30.123+02:00 (attempt 3): transfer failed 6
//!   times …` (a pipe a person stopped has no `auto-restart at`). Beside
//!   it, what the pipe
//!   skipped (a deletion the receiver could not apply: kept until START)
//!   and records the change log lost before the pipe sent them. A PIPESINK
//!   pipe (seed 000) shows the same in the sync tool's words: `ERROR: …`
//!   once it stopped on its own, else `WARN: …` while anything went wrong
//!   in this run, a retry it got past included (`WARN: recovered after
//!   retry 2 of 5: …`), as the sync tool keeps a WARN while the pipe runs.
//!
//! # Cost
//! The task publishes its read position, its acknowledged position and
//! event counts once per batch (one uncontended lock). What lies past the
//! read position is classified by `SHOW PIPES` itself, incrementally: each
//! SHOW classifies only the records that arrived (or that the pipe did not
//! read) since the previous one, and at most [`SHOW_SCAN_BYTES`] of them;
//! records it has not classified yet (a backlog larger than that, right
//! after a start) count as one event each until a later SHOW reaches them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use wal::{HistogramSnapshot, LatencyHistogram};

use crate::deletions::{DeletionView, Deletions};
use crate::meta::{PipeMeta, PipeState};
use crate::plugin::{ConnectorSpec, Extractor};

/// The most log bytes one `SHOW PIPES` classifies per pipe (about a tenth
/// of a second of reading): a SHOW stays quick behind any backlog.
pub const SHOW_SCAN_BYTES: u64 = 256 << 20;

/// What the running task published.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Changes whenever a task starts or ends: positions and counts of
    /// different epochs are not comparable.
    epoch: u64,
    /// Whether a task runs (else `acked` = `read` = where the next one
    /// starts, and the counts are 0).
    running: bool,
    /// Everything below was acknowledged by the receiver (or is not sent).
    acked: u64,
    /// The next offset the pipe reads (everything below was read, and its
    /// events counted in `read_events`).
    read: u64,
    /// Events read this epoch that the connector sends.
    read_events: u64,
    /// Of those, the ones acknowledged.
    acked_events: u64,
}

/// What `SHOW PIPES` classified past the read position.
#[derive(Debug, Default)]
struct Ahead {
    epoch: u64,
    /// Where the classified range starts: the read position when last
    /// asked.
    from: u64,
    /// `read_events` when the read position was `from`.
    events_at_from: u64,
    /// Classified up to here.
    to: u64,
    /// Events the pipe will send in `[from, to)`.
    events: u64,
    /// The first offset in `[from, to)` holding such an event.
    first: Option<u64>,
}

/// Upper bounds (seconds) of the transfer latency buckets: from a small
/// batch on loopback to one crawling over a thin link (the connector's
/// timeout is 15 minutes).
pub const TRANSFER_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// What a pipe's transfers did since the node started, for the metrics:
/// counted once per request acknowledged or failed, never per point or
/// per record, with relaxed atomic adds only (no lock, no allocation): an
/// acknowledged request costs two adds (points, bytes) and a histogram
/// record (a scan of 16 bounds, two adds); a failed attempt two adds.
#[derive(Debug)]
pub struct Transfers {
    /// Points (non-null cells) in the tablets the receiver acknowledged.
    points: AtomicU64,
    /// Bytes of those tablets as serialized in the requests (framing and
    /// copies sent again not counted).
    bytes: AtomicU64,
    /// Failed transfer attempts that were tried again.
    retries: AtomicU64,
    /// Events (tablets, deletions) sent again by those retries: the failed
    /// attempt may have reached the receiver, so these may arrive twice.
    resent: AtomicU64,
    /// How long each acknowledged request took, from the connector taking
    /// it to the receiver's acknowledgement.
    duration: LatencyHistogram,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            points: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            duration: LatencyHistogram::new(&TRANSFER_BUCKETS),
        }
    }
}

impl Transfers {
    /// The receiver acknowledged tablets holding `points` points in
    /// `bytes`.
    pub(crate) fn acknowledged(&self, points: u64, bytes: u64) {
        self.points.fetch_add(points, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A request was acknowledged `took` after the connector took it.
    pub(crate) fn took(&self, took: Duration) {
        self.duration.record(took);
    }

    /// An attempt failed and `events` of it go out again.
    pub(crate) fn retried(&self, events: u64) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.resent.fetch_add(events, Ordering::Relaxed);
    }

    /// Points acknowledged by the receiver.
    pub fn points(&self) -> u64 {
        self.points.load(Ordering::Relaxed)
    }

    /// Tablet bytes acknowledged by the receiver.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Failed attempts tried again.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Events sent again by retries.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// The latency of acknowledged requests, over [`TRANSFER_BUCKETS`].
    pub fn duration(&self) -> HistogramSnapshot {
        self.duration.snapshot()
    }
}

/// Progress of a pipe, for SHOW PIPES and the metrics.
#[derive(Debug)]
pub struct Stats {
    /// The committed offset.
    pub committed: AtomicU64,
    progress: Mutex<Progress>,
    /// The retries of the running task.
    retries: Mutex<Retries>,
    ahead: Mutex<Ahead>,
    /// What the transfers did, for the metrics.
    pub transfers: Transfers,
    /// The store history phase still to finish, if any: set by the task
    /// while it runs, else by SHOW PIPES from the pipe's history file.
    history: Mutex<Option<HistoryFigures>>,
}

/// What a store history phase (`history.rs`) adds to the figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryFigures {
    /// Snapshot points the pipe has not read yet (before deletions).
    pub ahead: u64,
    /// When the snapshot was taken, ms since the epoch.
    pub snapshot_ms: i64,
}

/// The retries of a running task, for the message column.
#[derive(Debug, Default, Clone, PartialEq)]
struct Retries {
    /// The failure the task retries after (`retry 2 of 5: …`); cleared
    /// when the transfer succeeds.
    current: Option<String>,
    /// The last failure the task retried after and got past, this run.
    recovered: Option<String>,
}

/// The figures of one SHOW PIPES row.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Figures {
    pub remaining: u64,
    pub lag_seconds: f64,
    /// The failure the running task retries after.
    pub retry: Option<String>,
    /// The last failure the running task got past.
    pub recovered: Option<String>,
}

impl Stats {
    /// A pipe without a task, to resume from `committed`.
    pub fn new(committed: u64) -> Stats {
        Stats {
            committed: AtomicU64::new(committed),
            progress: Mutex::new(Progress {
                acked: committed,
                read: committed,
                ..Progress::default()
            }),
            retries: Mutex::new(Retries::default()),
            ahead: Mutex::new(Ahead::default()),
            transfers: Transfers::default(),
            history: Mutex::new(None),
        }
    }

    /// The store history phase ahead (`None`: none, or done).
    pub(crate) fn set_history(&self, h: Option<HistoryFigures>) {
        *self.history.lock().expect("history figures") = h;
    }

    /// The store history phase's figures, if it has one to finish.
    pub(crate) fn history(&self) -> Option<HistoryFigures> {
        *self.history.lock().expect("history figures")
    }

    /// The task read `points` more snapshot points.
    pub(crate) fn history_read(&self, points: u64) {
        if let Some(h) = self.history.lock().expect("history figures").as_mut() {
            h.ahead = h.ahead.saturating_sub(points);
        }
    }

    /// Records the running task has read past the committed offset: at
    /// most this many would go out again after a fault now (a crash, STOP,
    /// or retries running out), as the pipe resumes from its committed
    /// offset. Those the receiver had applied arrive twice (it applies
    /// them idempotently). 0 while no task runs.
    pub fn uncommitted_records(&self) -> u64 {
        let p = *self.progress.lock().expect("progress");
        if !p.running {
            return 0;
        }
        p.read
            .saturating_sub(self.committed.load(Ordering::Relaxed))
    }

    /// A task starts reading at `offset`.
    pub(crate) fn started(&self, offset: u64) {
        let mut p = self.progress.lock().expect("progress");
        *p = Progress {
            epoch: p.epoch + 1,
            running: true,
            acked: offset,
            read: offset,
            read_events: 0,
            acked_events: 0,
        };
    }

    /// The task read everything below `next`, holding `events` more events
    /// to send.
    pub(crate) fn read(&self, next: u64, events: u64) {
        let mut p = self.progress.lock().expect("progress");
        p.read = p.read.max(next);
        p.read_events += events;
    }

    /// The receiver acknowledged `events` more events; everything below
    /// `acked` is acknowledged.
    pub(crate) fn acked(&self, acked: u64, events: u64) {
        let mut p = self.progress.lock().expect("progress");
        p.acked = p.acked.max(acked);
        p.acked_events += events;
    }

    /// The task ended; the pipe resumes from `committed`.
    pub(crate) fn stopped(&self, committed: u64) {
        let mut p = self.progress.lock().expect("progress");
        *p = Progress {
            epoch: p.epoch + 1,
            running: false,
            acked: committed,
            read: committed,
            read_events: 0,
            acked_events: 0,
        };
        drop(p);
        *self.retries.lock().expect("retries") = Retries::default();
        // The next run reads again from what was acknowledged; SHOW counts
        // that from the pipe's history file meanwhile.
        self.set_history(None);
    }

    /// The failure the task is retrying after, or `None` once a transfer
    /// succeeded (the failure it got past is kept for a PIPESINK pipe's
    /// WARN, see [`message`]).
    pub(crate) fn set_retry(&self, message: Option<String>) {
        let mut r = self.retries.lock().expect("retries");
        match message {
            Some(m) => r.current = Some(m),
            None => {
                if let Some(m) = r.current.take() {
                    r.recovered = Some(m);
                }
            }
        }
    }

    /// The figures of the pipe `meta` for SHOW PIPES: remaining events, lag
    /// and the retries (see the module doc). Records ahead are classified
    /// as the pipe will extract them, with the `deletions` the log holds.
    pub(crate) fn figures(
        &self,
        log: &wal::Log,
        meta: &PipeMeta,
        units_per_sec: i64,
        deletions: &Deletions,
    ) -> Figures {
        let p = *self.progress.lock().expect("progress");
        let Retries {
            current: retry,
            recovered,
        } = if p.running {
            self.retries.lock().expect("retries").clone()
        } else {
            Retries::default()
        };
        let mut ext_attrs = meta.extractor.clone();
        let (Ok(mut ext), Ok(spec)) = (
            Extractor::configure(&mut ext_attrs, units_per_sec),
            ConnectorSpec::parse(&meta.connector),
        ) else {
            return Figures {
                remaining: 0,
                lag_seconds: 0.0,
                retry,
                recovered,
            };
        };
        ext.deletions = meta.sync_deletions();
        let end = log.end_offset();
        let horizon = if ext.realtime {
            end
        } else {
            meta.history_end.min(end)
        };
        let held = p.read_events.saturating_sub(p.acked_events);
        let read = p.read.max(log.log_start());
        let mut a = self.ahead.lock().expect("ahead");
        let consumed = p.read_events.wrapping_sub(a.events_at_from);
        if a.epoch == p.epoch
            && a.from <= read
            && read <= a.to
            && p.read_events >= a.events_at_from
            && consumed <= a.events
        {
            // The task read on from where the last SHOW looked: what it
            // read of the classified range is counted in `held` now.
            a.events -= consumed;
            a.from = read;
            a.events_at_from = p.read_events;
            if a.first.is_some_and(|f| f < read) {
                a.first = None;
            }
        } else {
            *a = Ahead {
                epoch: p.epoch,
                from: read,
                events_at_from: p.read_events,
                to: read,
                events: 0,
                first: None,
            };
        }
        let class = Class {
            ext: &ext,
            spec: &spec,
            history_end: meta.history_end,
            deletions: deletions.view(),
        };
        if a.first.is_none() && a.events > 0 {
            // The first event past the read position was read meanwhile:
            // find the next one (near the read position, within `to`).
            let (_, first, _) = class.scan(log, read, a.to, SHOW_SCAN_BYTES, true);
            a.first = first;
        }
        if a.to < horizon {
            let (events, first, to) = class.scan(log, a.to, horizon, SHOW_SCAN_BYTES, false);
            a.events += events;
            a.first = a.first.or(first);
            a.to = to;
        }
        // Records not classified yet count as one event each.
        let unclassified = horizon.saturating_sub(a.to);
        let remaining = held + a.events + unclassified;
        let oldest = if held > 0 {
            Some(p.acked)
        } else if let Some(f) = a.first {
            Some(f)
        } else if unclassified > 0 {
            Some(a.to)
        } else {
            None
        };
        let mut lag_seconds = match oldest {
            Some(o) if remaining > 0 => age_seconds(log, o),
            _ => 0.0,
        };
        let mut remaining = remaining;
        if let Some(h) = self.history() {
            remaining += h.ahead;
            if remaining > 0 {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                lag_seconds = lag_seconds.max((now - h.snapshot_ms).max(0) as f64 / 1e3);
            }
        }
        Figures {
            remaining,
            lag_seconds,
            retry,
            recovered,
        }
    }
}

/// The ExceptionMessage column of the pipe `meta` (see the module doc),
/// from its figures `f` and what the change log `lost` before it sent it.
pub(crate) fn message(meta: &PipeMeta, f: &Figures, lost: Option<String>) -> String {
    let text = |s: &String| (!s.is_empty()).then(|| s.clone());
    // A pipe waiting to restart says when, then why it stopped.
    let failure = match (&meta.restart, meta.state) {
        (Some(r), PipeState::Stopped) => Some(format!(
            "auto-restart at {} (attempt {}): {}",
            local_time(r.at_ms),
            r.attempt,
            meta.exception
        )),
        _ => text(&meta.exception),
    };
    let warning = text(&meta.warning);
    let join = |parts: [Option<String>; 3]| -> String {
        parts.into_iter().flatten().collect::<Vec<_>>().join("; ")
    };
    if meta.sink.is_none() {
        // IoTDB 1.2's ExceptionMessage: what is wrong now first.
        let now = if meta.state == PipeState::Running {
            f.retry.clone()
        } else {
            failure
        };
        return join([now, warning, lost]);
    }
    // The sync tool's message column.
    if meta.state != PipeState::Running && failure.is_some() {
        return format!("ERROR: {}", join([failure, warning, lost]));
    }
    let retry = f
        .retry
        .clone()
        .or_else(|| f.recovered.as_ref().map(|m| format!("recovered after {m}")));
    let m = join([retry, warning, lost]);
    if m.is_empty() {
        m
    } else {
        format!("WARN: {m}")
    }
}

/// `at_ms` (ms since the epoch) as the node's local time with its offset,
/// to the millisecond: `2026-05-04T10:15:30.123+02:00`.
fn local_time(at_ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(at_ms).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        None => format!("{at_ms} ms since the epoch"),
    }
}

/// How a pipe treats each record of the log.
struct Class<'a> {
    ext: &'a Extractor,
    spec: &'a ConnectorSpec,
    history_end: u64,
    deletions: DeletionView,
}

impl Class<'_> {
    /// Classifies `[from, to)`, reading at most `budget` bytes (and
    /// stopping at the first event if `first_only`): events the pipe will
    /// send, the first offset holding one, and where it stopped.
    fn scan(
        &self,
        log: &wal::Log,
        from: u64,
        to: u64,
        budget: u64,
        first_only: bool,
    ) -> (u64, Option<u64>, u64) {
        let from = from.max(log.log_start());
        let Ok(mut reader) = log.reader(from) else {
            return (0, None, from);
        };
        let (mut events, mut first, mut at, mut bytes) = (0, None, from, 0u64);
        while at < to && bytes < budget {
            let Ok(Some(b)) = reader.try_next() else {
                break;
            };
            bytes += b.size_bytes() as u64;
            for rec in b.iter() {
                if rec.offset >= to {
                    break;
                }
                at = rec.offset + 1;
                let history = rec.offset < self.history_end;
                if (history && !self.ext.history) || (!history && !self.ext.realtime) {
                    continue;
                }
                let sends = matches!(
                    self.ext.extract(
                        rec.offset,
                        rec.kind,
                        b.share(rec.payload),
                        history,
                        &self.deletions
                    ),
                    Ok(Some(ev)) if self.spec.sends(&ev)
                );
                if sends {
                    events += 1;
                    first = first.or(Some(rec.offset));
                    if first_only {
                        return (events, first, at);
                    }
                }
            }
        }
        (events, first, at)
    }
}

/// Seconds since the record at `offset` arrived (0 past the log end).
fn age_seconds(log: &wal::Log, offset: u64) -> f64 {
    let Ok(lag) = log.lag(offset) else {
        return 0.0;
    };
    if lag.records == 0 {
        return 0.0;
    }
    let Some(newest) = log.segments().iter().rev().find_map(|s| s.last_arrival_us) else {
        return 0.0;
    };
    let arrival = newest - lag.arrival_us;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    (now - arrival).max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::SinkPipe;

    fn meta(sink: bool, state: PipeState, exception: &str, warning: &str) -> PipeMeta {
        PipeMeta {
            id: "p".into(),
            creation_time_ms: 0,
            state,
            extractor: Default::default(),
            processor: Default::default(),
            connector: Default::default(),
            exception: exception.into(),
            warning: warning.into(),
            history_end: 0,
            sink: sink.then(|| SinkPipe {
                pipesink: "far".into(),
                sync_del_op: true,
            }),
            restart: None,
        }
    }

    fn retries(current: Option<&str>, recovered: Option<&str>) -> Figures {
        Figures {
            retry: current.map(String::from),
            recovered: recovered.map(String::from),
            ..Figures::default()
        }
    }

    /// One set of facts, worded for a 1.2 pipe and for a PIPESINK pipe.
    #[test]
    fn the_message_column_of_both_kinds_of_pipe() {
        use PipeState::{Running, Stopped};
        let none = Figures::default();
        let retrying = retries(Some("retry 2 of 5: refused"), None);
        let recovered = retries(None, Some("retry 2 of 5: refused"));
        let skip = "the deletion of root.sg.** over all time was skipped";
        let lost = || Some("3 record(s) lost".to_string());
        for (sink, state, exception, warning, f, lost, want) in [
            // 1.2: the retry while it lasts, then nothing.
            (
                false,
                Running,
                "",
                "",
                &retrying,
                None,
                "retry 2 of 5: refused",
            ),
            (false, Running, "", "", &recovered, None, ""),
            (false, Running, "", skip, &none, None, skip),
            (
                false,
                Stopped,
                "gave up",
                "",
                &none,
                lost(),
                "gave up; 3 record(s) lost",
            ),
            (false, Running, "", "", &none, None, ""),
            // The sync tool: WARN while running (a retry got past
            // included), ERROR once it stopped on its own.
            (
                true,
                Running,
                "",
                "",
                &retrying,
                None,
                "WARN: retry 2 of 5: refused",
            ),
            (
                true,
                Running,
                "",
                "",
                &recovered,
                None,
                "WARN: recovered after retry 2 of 5: refused",
            ),
            (
                true,
                Running,
                "",
                skip,
                &none,
                lost(),
                &format!("WARN: {skip}; 3 record(s) lost"),
            ),
            (true, Stopped, "gave up", "", &none, None, "ERROR: gave up"),
            (
                true,
                Stopped,
                "",
                skip,
                &none,
                None,
                &format!("WARN: {skip}"),
            ),
            (true, Running, "", "", &none, None, ""),
            (
                true,
                PipeState::Dropped,
                "gave up",
                "",
                &none,
                None,
                "ERROR: gave up",
            ),
        ] {
            let m = meta(sink, state, exception, warning);
            assert_eq!(message(&m, f, lost), want, "{m:?} {f:?}");
        }
    }

    /// What a fault would send again: what the task read past the
    /// committed offset, nothing once it stopped.
    #[test]
    fn uncommitted_records_are_read_and_not_committed() {
        let s = Stats::new(3);
        assert_eq!(s.uncommitted_records(), 0);
        s.started(3);
        s.read(10, 4);
        assert_eq!(s.uncommitted_records(), 7);
        s.acked(8, 3);
        s.committed.store(8, Ordering::Relaxed);
        assert_eq!(s.uncommitted_records(), 2);
        s.stopped(8);
        assert_eq!(s.uncommitted_records(), 0);
        s.transfers.acknowledged(20, 300);
        s.transfers.retried(2);
        s.transfers.took(Duration::from_millis(3));
        assert_eq!(
            (
                s.transfers.points(),
                s.transfers.bytes(),
                s.transfers.retries(),
                s.transfers.resent()
            ),
            (20, 300, 1, 2)
        );
        let d = s.transfers.duration();
        assert_eq!(d.count, 1);
        assert!((d.sum_seconds - 0.003).abs() < 1e-9);
        assert_eq!(
            d.buckets.iter().find(|b| b.0 == 0.005).map(|b| b.1),
            Some(1)
        );
    }

    /// A pipe waiting to restart: STOPPED (STOP) with when it restarts and
    /// why it stopped; one a person stopped (no restart) as before.
    #[test]
    fn a_pipe_waiting_to_restart_says_when() {
        use crate::meta::Restart;
        let at_ms = 1_777_000_000_123;
        let when = local_time(at_ms);
        assert!(when.contains(".123") && when.len() == 29, "{when}");
        let why = "transfer failed 6 times (max_number_of_sync_file_retry = 5): Connection refused";
        for sink in [false, true] {
            let mut m = meta(sink, PipeState::Stopped, why, "");
            m.restart = Some(Restart { at_ms, attempt: 3 });
            let want = format!("auto-restart at {when} (attempt 3): {why}");
            let got = message(&m, &Figures::default(), Some("2 record(s) lost".into()));
            if sink {
                assert_eq!(got, format!("ERROR: {want}; 2 record(s) lost"));
            } else {
                assert_eq!(got, format!("{want}; 2 record(s) lost"));
            }
            // Stopped by a person (or auto-restart off): the seed's words.
            m.restart = None;
            let got = message(&m, &Figures::default(), None);
            assert_eq!(
                got,
                if sink {
                    format!("ERROR: {why}")
                } else {
                    why.to_string()
                }
            );
        }
    }

    #[test]
    fn a_success_clears_the_retry_and_keeps_what_it_got_past() {
        let s = Stats::new(0);
        s.started(0);
        s.set_retry(Some("retry 1 of 5: a".into()));
        s.set_retry(Some("retry 2 of 5: b".into()));
        assert_eq!(
            *s.retries.lock().unwrap(),
            Retries {
                current: Some("retry 2 of 5: b".into()),
                recovered: None
            }
        );
        s.set_retry(None);
        assert_eq!(
            *s.retries.lock().unwrap(),
            Retries {
                current: None,
                recovered: Some("retry 2 of 5: b".into())
            }
        );
        // A new run starts clean.
        s.stopped(0);
        assert_eq!(*s.retries.lock().unwrap(), Retries::default());
    }
}
