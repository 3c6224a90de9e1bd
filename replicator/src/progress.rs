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
//! - **LagSeconds**: the wall-clock age of the oldest record the pipe has
//!   not had acknowledged and will send (its arrival time in the log); 0
//!   when nothing remains. A stalled pipe's lag grows by a second a second.
//! - **ExceptionMessage** while the pipe runs: the last failure while it
//!   retries (`retry 3 of 5: …`), cleared when that transfer succeeds.
//!
//! # Cost
//! The task publishes its read position, its acknowledged position and
//! event counts once per batch (one uncontended lock). What lies past the
//! read position is classified by `SHOW PIPES` itself, incrementally: each
//! SHOW classifies only the records that arrived (or that the pipe did not
//! read) since the previous one, and at most [`SHOW_SCAN_BYTES`] of them;
//! records it has not classified yet (a backlog larger than that, right
//! after a start) count as one event each until a later SHOW reaches them.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use crate::meta::PipeMeta;
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

/// Progress of a pipe, for SHOW PIPES.
#[derive(Debug)]
pub struct Stats {
    /// The committed offset.
    pub committed: AtomicU64,
    progress: Mutex<Progress>,
    /// The last failure while the task retries.
    retry: Mutex<Option<String>>,
    ahead: Mutex<Ahead>,
}

/// The figures of one SHOW PIPES row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Figures {
    pub remaining: u64,
    pub lag_seconds: f64,
    pub retry: Option<String>,
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
            retry: Mutex::new(None),
            ahead: Mutex::new(Ahead::default()),
        }
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
        self.set_retry(None);
    }

    /// The failure the task is retrying after, or `None` once a transfer
    /// succeeded.
    pub(crate) fn set_retry(&self, message: Option<String>) {
        *self.retry.lock().expect("retry") = message;
    }

    /// The figures of the pipe `meta` for SHOW PIPES: remaining events, lag
    /// and the retry message (see the module doc).
    pub(crate) fn figures(&self, log: &wal::Log, meta: &PipeMeta, units_per_sec: i64) -> Figures {
        let p = *self.progress.lock().expect("progress");
        let retry = if p.running {
            self.retry.lock().expect("retry").clone()
        } else {
            None
        };
        let mut ext_attrs = meta.extractor.clone();
        let (Ok(ext), Ok(spec)) = (
            Extractor::configure(&mut ext_attrs, units_per_sec),
            ConnectorSpec::parse(&meta.connector),
        ) else {
            return Figures {
                remaining: 0,
                lag_seconds: 0.0,
                retry,
            };
        };
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
        let lag_seconds = match oldest {
            Some(o) if remaining > 0 => age_seconds(log, o),
            _ => 0.0,
        };
        Figures {
            remaining,
            lag_seconds,
            retry,
        }
    }
}

/// How a pipe treats each record of the log.
struct Class<'a> {
    ext: &'a Extractor,
    spec: &'a ConnectorSpec,
    history_end: u64,
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
                    self.ext.extract(rec.kind, b.share(rec.payload), history),
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
