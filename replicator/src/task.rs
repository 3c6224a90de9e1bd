//! The task of one running pipe: tail the log from the committed offset,
//! extract, process, transfer (with retries), commit.
//!
//! One producer reads the log, filters tablets by the deletions the log
//! holds (`deletions.rs`, per batch read), extracts and processes; two ways
//! to transfer what it produces, by connector:
//! - **Serial** (`iotdb-thrift-sync-connector`,
//!   `iotdb-legacy-pipe-connector` and PIPESINK pipes,
//!   `do-nothing-connector`): in log order, one batch after the other; the
//!   next batch is read and extracted while the current one is out. The
//!   sync thrift connector keeps two requests in flight on its connection
//!   (the next is written before the current reply is read) and
//!   acknowledges each batch by its own reply, in order
//!   ([`PipeTask::serial_consume`]).
//! - **Lanes** (`iotdb-thrift-async-connector`): the events go into lanes
//!   by a hash of their device, and each lane has one request in flight
//!   (retried until acknowledged before its next request), so up to one
//!   request per lane is out at once. The acknowledged offset is the first
//!   record still queued or in flight in any lane (or the end of what was
//!   handed to the lanes): it covers a contiguous acknowledged prefix of
//!   the log and never passes an unacknowledged request, whatever order
//!   the replies come back in.
//!
//! # Why the receiver ends with the edge's data under lanes
//! A series belongs to one device and a device to one lane. A lane sends a
//! request only after the previous one was acknowledged (retries included),
//! and a request's tablets are applied in order, so the receiver applies
//! each series' writes in log order; the last write of a series and
//! timestamp, which is the edge's value, is applied last. After a fault the
//! pipe resends from the committed offset, again in log order per lane:
//! everything resent is newer in the log than everything below that
//! offset, so the final values are again the log's last ones.
//!
//! # Duplicates
//! At-least-once: a record reaches the receiver more than once only after a
//! fault, and then at most once more per fault: a failed attempt is sent
//! again (its request: up to `connector.batch.size-bytes`), and a stop,
//! crash or exhausted retry sends again everything above the committed
//! offset that had gone out: serial, the batch in flight (up to
//! `connector.batch.size-bytes`, plus one tablet); lanes, the window (what
//! was handed to the lanes from the acknowledged offset on: the lanes take
//! no new batch once it holds `connector.batch.size-bytes`, so it holds
//! less than that plus one batch of a quarter of it); in both cases plus
//! what was acknowledged within the last [`COMMIT_INTERVAL`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, instrument, warn};

use crate::deletions::DeletionRecord;
use crate::history;
use crate::meta::PipeMeta;
use crate::plugin::connector::thrift_async::{lane_of, Request};
use crate::plugin::{self, AsyncConnector, Extractor, PipeEvent};
use crate::{consumer_name, Live, Shared, Stats};

pub(crate) struct PipeTask {
    pub shared: Arc<Shared>,
    pub meta: PipeMeta,
    pub stats: Arc<Stats>,
    pub connector: Live,
    pub generation: u64,
    /// Acknowledged up to here (perhaps not yet committed).
    pub pending: std::sync::atomic::AtomicU64,
    /// Durably committed up to here.
    pub committed: std::sync::atomic::AtomicU64,
    /// When the last commit happened.
    pub last_commit: std::sync::Mutex<std::time::Instant>,
    /// Signalled when `pending` moves past `committed`.
    pub noted: tokio::sync::Notify,
    /// Held while writing the ledger; shared with the pipe's `Running`
    /// handle, which closes it when the task is stopped.
    pub commit_gate: Arc<std::sync::Mutex<CommitGate>>,
    /// The store history phase still to run before the log is tailed
    /// (`history.rs`), if the pipe has one.
    pub history: Option<Arc<history::Phase>>,
}

/// Orders a task's ledger writes. A commit runs on a blocking thread and
/// finishes even when the task that started it is stopped or aborted; the
/// gate keeps such a commit and the final one from reordering (moving the
/// offset back), and once STOP / DROP closed it (after waiting for a write
/// under way), nothing of the stopped task reaches the ledger, not even
/// over a re-created pipe of the same name.
#[derive(Debug, Default)]
pub(crate) struct CommitGate {
    /// The highest offset written to the ledger.
    written: u64,
    /// Set by STOP / DROP once the task is gone.
    closed: bool,
}

impl CommitGate {
    /// No ledger write of the task happens after this returns.
    pub(crate) fn close(gate: &std::sync::Mutex<CommitGate>) {
        gate.lock().expect("commit gate").closed = true;
    }
}

/// Longest time an acknowledged batch waits for its offset commit. Each
/// commit fsyncs the ledger, which can take tens of milliseconds while the
/// file system commits other files' data, so commits are spaced and run
/// beside the transfers, never in their way. A crash replays at most this
/// much acknowledged data (plus the batch in flight).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Capped exponential backoff for retry `attempt` (1-based): `base`
/// doubled each attempt up to `cap`, then spread uniformly over ±25 % so
/// pipes that failed together (one receiver down) do not retry together.
/// Transfer retries and auto-restarts (`lib.rs`) wait so.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).min(16)).min(cap);
    exp.mul_f64(0.75 + fastrand::f64() / 2.0)
}

/// Why a task ended.
enum Stop {
    /// STOP / DROP / shutdown.
    Requested,
    /// A failure a restart cannot fix: a change-log record that does not
    /// decode, a definition that no longer configures, a change log that
    /// cannot be read (damage). The pipe stays STOPPED until START.
    Failed(String),
    /// Transfers failed `max_number_of_sync_file_retry` times over (the
    /// link, the receiver), or the offset could not be committed (the
    /// ledger's disk): a later run may succeed, so the pipe is restarted
    /// when `pipe_auto_restart_enabled` (see `Shared::fail`).
    Interrupted(String),
}

/// A batch ready to send: events (each with the offset of the record it
/// came from), the offset after them, how many of them the connector sends,
/// and a failure met after them (the pipe stops once the events are
/// delivered); a batch of a store history phase carries the progress its
/// acknowledgement makes (`history.rs`).
pub(crate) struct Prepared {
    pub(crate) events: Vec<PipeEvent>,
    pub(crate) offsets: Vec<u64>,
    pub(crate) next: u64,
    pub(crate) sends: u64,
    pub(crate) failure: Option<String>,
    pub(crate) history: Option<history::Mark>,
}

impl Prepared {
    pub(crate) fn failed(m: String) -> Prepared {
        Prepared {
            events: Vec::new(),
            offsets: Vec::new(),
            next: 0,
            sends: 0,
            failure: Some(m),
            history: None,
        }
    }
}

/// The points in a tablet the connector sends (0 for what does not decode:
/// the receiver refuses it, and the pipe says so).
pub(crate) fn points_of(tablet: &[u8]) -> u64 {
    protocol::tablet::Tablet::points_v12(tablet).unwrap_or(0)
}

/// How many of `events` are tablets (what a thrift connector sends).
fn tablet_count(events: &[PipeEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, PipeEvent::Tablet(_)))
        .count()
}

/// The points and bytes of the tablets among `events` (a history batch,
/// whose events are all sent), for the metrics.
pub(crate) fn tablet_figures(events: &[PipeEvent]) -> (u64, u64) {
    events.iter().fold((0, 0), |(points, bytes), e| match e {
        PipeEvent::Tablet(t) => (points + points_of(t), bytes + t.len() as u64),
        _ => (points, bytes),
    })
}

/// A tablet waiting in a lane or in flight, with its record's offset, the
/// sequence number of the batch it came in, and its points.
struct Item {
    offset: u64,
    batch: u64,
    tablet: Bytes,
    points: u64,
}

/// A batch handed to the lanes that is not wholly acknowledged yet (or a
/// batch before it is not): its sequence number, its tablet bytes and the
/// history progress it makes.
struct Handed {
    batch: u64,
    bytes: usize,
    history: Option<history::Mark>,
}

/// A lane's request: its tablets, how many were acknowledged, its
/// attempts so far, and whether it is out or waiting to be sent again.
struct Flight {
    items: Vec<Item>,
    sent: usize,
    attempt: u32,
    state: FlightState,
    /// When the request (or its last attempt) went out.
    since: Instant,
}

enum FlightState {
    Out(Request),
    Backoff(Pin<Box<tokio::time::Sleep>>),
}

/// One lane of the async transfer (see the module doc).
#[derive(Default)]
struct Lane {
    queue: VecDeque<Item>,
    flight: Option<Flight>,
    /// The failure its request is retrying after, and when it happened.
    error: Option<(Instant, String)>,
}

impl Lane {
    /// Its first tablet not acknowledged.
    fn first_unacked(&self) -> Option<&Item> {
        match &self.flight {
            Some(f) => f.items.get(f.sent),
            None => None,
        }
        .or_else(|| self.queue.front())
    }
}

/// What woke a lane.
enum LaneWoke {
    /// Its request ended: tablets acknowledged (if known) and outcome.
    Ended(Option<usize>, Result<(), plugin::TransferError>),
    /// Its backoff is over: send again.
    Resend,
}

/// The first lane whose request ended or whose backoff is over.
fn poll_lanes(lanes: &mut [Lane]) -> impl std::future::Future<Output = (usize, LaneWoke)> + '_ {
    std::future::poll_fn(move |cx| {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let Some(f) = &mut lane.flight else { continue };
            match &mut f.state {
                FlightState::Out(r) => {
                    if let Poll::Ready((sent, res)) = Pin::new(r).poll(cx) {
                        return Poll::Ready((i, LaneWoke::Ended(sent, res)));
                    }
                }
                FlightState::Backoff(sleep) => {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready((i, LaneWoke::Resend));
                    }
                }
            }
        }
        Poll::Pending
    })
}

/// Abandons every lane's request and waits until they are gone (their
/// connections reset): nothing more of them is sent after this returns.
async fn cancel_all(lanes: &mut [Lane]) {
    let mut out = Vec::new();
    for lane in lanes.iter_mut() {
        if let Some(Flight {
            state: FlightState::Out(r),
            ..
        }) = lane.flight.take()
        {
            r.abort();
            out.push(r);
        }
    }
    for r in out {
        r.cancel().await;
    }
}

/// A pipelined request written and not yet answered: its batch, and the
/// connector held for it.
struct InFlight {
    p: Prepared,
    conn: tokio::sync::OwnedMutexGuard<plugin::Connector>,
    since: Instant,
}

/// How a pipelined request ended.
enum Landed {
    /// Acknowledged; the connector is still held.
    Acked(tokio::sync::OwnedMutexGuard<plugin::Connector>),
    /// Failed: the request and the error.
    Failed(InFlight, plugin::TransferError),
    /// The pipe stops.
    Stop(Stop),
}

impl PipeTask {
    #[instrument(skip_all, fields(pipe = %self.meta.id))]
    pub(crate) async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let end = self.pump(&mut stop).await;
        // What was acknowledged stays acknowledged.
        if let Err(m) = self.commit_pending().await {
            warn!(cause = %m, "could not commit the acknowledged offset; it will be sent again");
        }
        self.stats.stopped(self.committed.load(Ordering::Relaxed));
        match end {
            Stop::Requested => debug!("pipe task stopped"),
            Stop::Failed(m) => self.shared.fail(&self.meta.id, self.generation, m, false),
            Stop::Interrupted(m) => self.shared.fail(&self.meta.id, self.generation, m, true),
        }
    }

    /// Runs the pipe: the sender loop, and beside it the offset commits.
    async fn pump(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Stop {
        tokio::select! {
            s = self.transfer_loop(stop) => s,
            m = self.commit_loop() => Stop::Interrupted(m),
        }
    }

    /// Commits the acknowledged offset at most every [`COMMIT_INTERVAL`],
    /// while the transfers go on. Returns only on a failed commit.
    async fn commit_loop(&self) -> String {
        loop {
            self.noted.notified().await;
            let due = *self.last_commit.lock().expect("commit clock") + COMMIT_INTERVAL;
            tokio::time::sleep_until(due.into()).await;
            if let Err(m) = self.commit_pending().await {
                return m;
            }
        }
    }

    async fn transfer_loop(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Stop {
        match &self.connector {
            Live::Serial(_) => self.serial_loop(stop).await,
            Live::Lanes(c) => self.lanes_loop(c, stop).await,
        }
    }

    /// The serial transfer: a producer reads the log, extracts and
    /// processes events into batches, beside the consumer that transfers
    /// them ([`PipeTask::serial_consume`]). Both run in this task, polled
    /// together, so reading the next batch overlaps the transfer of the
    /// current one; a one-slot channel joins them, so the producer holds
    /// at most one batch besides the consumer's.
    async fn serial_loop(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Stop {
        let (tx, rx) = tokio::sync::mpsc::channel::<Prepared>(1);
        // The thrift sync connector keeps two requests in flight: each
        // carries at most half of `connector.batch.size-bytes`, so what is
        // in flight stays within it (as the async connector's window
        // does), and so do the receiver's frame and decoded tablets.
        let divisor = match plugin::ConnectorSpec::parse(&self.meta.connector) {
            Ok(plugin::ConnectorSpec::ThriftSync { .. }) => 2,
            _ => 1,
        };
        let producer = async {
            // Returning drops `tx`: the consumer sees the channel close
            // once it took every batch.
            self.produce(tx, divisor).await;
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            s = self.serial_consume(rx, stop) => s,
            never = producer => match never {},
        }
    }

    /// Transfers the producer's batches in order. A batch whose tablets
    /// fit one request is written without waiting for its reply
    /// ([`plugin::Connector::write_batch`]); when the next batch is ready
    /// before that reply begins to arrive, its request is written too, and
    /// only then is the older reply read — at most two requests in flight
    /// on the one connection, answered in order. A batch is acknowledged
    /// (and its offset noted for the commit) only when its own reply said
    /// success, after every batch before it. On any failure both
    /// unanswered requests are abandoned (the connection is reset) and
    /// sent again, one at a time, with the retries of
    /// [`PipeTask::send`]. The connector stays held while a request is
    /// unanswered; another pipe sharing it waits.
    async fn serial_consume(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<Prepared>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Stop {
        let Live::Serial(connector) = &self.connector else {
            unreachable!("serial transfer on a serial connector")
        };
        // A batch written and not yet answered, on the connector held for
        // it; and a batch taken from the producer that goes after it.
        let mut flight: Option<InFlight> = None;
        let mut next: Option<Prepared> = None;
        let mut closed = false;
        loop {
            let Some(f) = flight.as_mut() else {
                let p = match next.take() {
                    Some(p) => p,
                    None => {
                        let p = tokio::select! {
                            // A stop wins over a ready batch: nothing new
                            // starts.
                            biased;
                            _ = stop.wait_for(|s| *s) => return Stop::Requested,
                            p = rx.recv(), if !closed => p,
                        };
                        match p {
                            Some(p) => p,
                            None => {
                                // History done and realtime disabled:
                                // nothing more to do.
                                let _ = stop.wait_for(|s| *s).await;
                                return Stop::Requested;
                            }
                        }
                    }
                };
                if p.failure.is_none() {
                    let c = tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => return Stop::Requested,
                        c = connector.clone().lock_owned() => c,
                    };
                    if c.pipelines(&p.events) {
                        flight = Some(InFlight {
                            p,
                            conn: c,
                            since: Instant::now(),
                        });
                        let f = flight.as_mut().expect("just set");
                        let wrote = tokio::select! {
                            biased;
                            _ = stop.wait_for(|s| *s) => {
                                f.conn.abandon();
                                return Stop::Requested;
                            }
                            r = f.conn.write_batch(&f.p.events) => r,
                        };
                        if let Err(e) = wrote {
                            let f = flight.take().expect("in flight");
                            if let Some(s) = self.resend(f, None, &e, stop).await {
                                return s;
                            }
                        }
                        continue;
                    }
                }
                if let Some(s) = self.send(&p.events, stop).await {
                    return s;
                }
                if let Some(s) = self.acked(p) {
                    return s;
                }
                continue;
            };
            // A request in flight: the next batch goes out before its reply
            // is read, if it is ready first.
            enum Woke {
                Stop,
                Next(Option<Prepared>),
                Reply,
            }
            let woke = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => Woke::Stop,
                () = f.conn.reply_arriving() => Woke::Reply,
                p = rx.recv(), if next.is_none() && !closed => Woke::Next(p),
            };
            match woke {
                Woke::Stop => {
                    f.conn.abandon();
                    return Stop::Requested;
                }
                Woke::Next(None) => closed = true,
                Woke::Next(Some(p)) if p.failure.is_none() && f.conn.pipelines(&p.events) => {
                    let wrote = tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => {
                            f.conn.abandon();
                            return Stop::Requested;
                        }
                        r = f.conn.write_batch(&p.events) => r,
                    };
                    let f = flight.take().expect("in flight");
                    if let Err(e) = wrote {
                        if let Some(s) = self.resend(f, Some(p), &e, stop).await {
                            return s;
                        }
                        continue;
                    }
                    let since = Instant::now();
                    match self.land(f, stop).await {
                        Landed::Acked(conn) => {
                            flight = Some(InFlight { p, conn, since });
                        }
                        Landed::Failed(f, e) => {
                            if let Some(s) = self.resend(f, Some(p), &e, stop).await {
                                return s;
                            }
                        }
                        Landed::Stop(s) => return s,
                    }
                }
                Woke::Next(Some(p))
                    if p.failure.is_none()
                        && p.history.is_none()
                        && tablet_count(&p.events) == 0 =>
                {
                    // Nothing to send (records the pattern leaves out,
                    // deletions): acknowledged with the request in flight.
                    f.p.events.extend(p.events);
                    f.p.offsets.extend(p.offsets);
                    f.p.next = f.p.next.max(p.next);
                    f.p.sends += p.sends;
                }
                Woke::Next(Some(p)) => next = Some(p),
                Woke::Reply => {
                    let f = flight.take().expect("in flight");
                    match self.land(f, stop).await {
                        // The connector is free again.
                        Landed::Acked(_) => {}
                        Landed::Failed(f, e) => {
                            if let Some(s) = self.resend(f, None, &e, stop).await {
                                return s;
                            }
                        }
                        Landed::Stop(s) => return s,
                    }
                }
            }
        }
    }

    /// Reads the reply to `f`'s request and acknowledges its batch.
    async fn land(&self, mut f: InFlight, stop: &mut tokio::sync::watch::Receiver<bool>) -> Landed {
        let r = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                f.conn.abandon();
                return Landed::Stop(Stop::Requested);
            }
            r = f.conn.read_batch_reply() => r,
        };
        match r {
            Ok(()) => {
                self.stats.transfers.took(f.since.elapsed());
                let InFlight { p, conn, .. } = f;
                match self.acked(p) {
                    Some(s) => Landed::Stop(s),
                    None => Landed::Acked(conn),
                }
            }
            Err(e) => Landed::Failed(f, e),
        }
    }

    /// After a pipelined request failed with `e`: abandons what is
    /// unanswered and sends `f`'s batch, then `after` (written behind it,
    /// or not yet written), one request at a time with the retries of
    /// [`PipeTask::send`]. The first of those retries starts at once.
    async fn resend(
        &self,
        mut f: InFlight,
        after: Option<Prepared>,
        e: &plugin::TransferError,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Stop> {
        f.conn.abandon();
        drop(f.conn);
        debug!(cause = %e, "pipelined transfer failed; sending again one request at a time");
        for p in std::iter::once(f.p).chain(after) {
            if let Some(s) = self.send(&p.events, stop).await {
                return Some(s);
            }
            if let Some(s) = self.acked(p) {
                return Some(s);
            }
        }
        None
    }

    /// Counts `p` as acknowledged (once, here; the lanes of the async
    /// connector count per tablet as they are answered) and notes its
    /// offset for the commit. `Some` when the batch ended the pipe (the
    /// producer's failure after its events).
    fn acked(&self, p: Prepared) -> Option<Stop> {
        let (points, bytes) = tablet_figures(&p.events);
        self.stats.transfers.acknowledged(points, bytes);
        self.stats.acked(p.next, p.sends);
        if let Some(m) = p.history {
            self.history_acked(m);
        }
        if p.next > self.pending.load(Ordering::Relaxed) {
            self.note(p.next);
        }
        p.failure.map(Stop::Failed)
    }

    /// The async transfer over lanes (see the module doc).
    ///
    /// The *window* is what was handed to the lanes from the acknowledged
    /// offset on, acknowledged or not. The lanes take a new batch from the
    /// producer (a quarter of `connector.batch.size-bytes`) only while the
    /// window holds less than `connector.batch.size-bytes`, so a lane stuck
    /// on its request holds the others back once the window is full: what
    /// a fault sends again is bounded by the window, and memory by the
    /// window plus the producer's batch (1.5 times the size, less than the
    /// serial transfer's two batches).
    async fn lanes_loop(
        &self,
        conn: &Arc<AsyncConnector>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Stop {
        let budget = conn.request_bytes();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(1);
        let mut producer = std::pin::pin!(self.produce(tx, 4));
        let mut lanes: Vec<Lane> = (0..conn.lanes()).map(|_| Lane::default()).collect();
        // The batches handed to the lanes not wholly acknowledged with all
        // before them, and the sum of their tablet bytes.
        let mut window: VecDeque<Handed> = VecDeque::new();
        let mut window_bytes = 0usize;
        // The sequence number of the next batch handed to the lanes.
        let mut batches = 0u64;
        // The offset after the last batch handed to the lanes.
        let mut handed: Option<u64> = None;
        let mut failure: Option<String> = None;
        let mut producer_done = false;
        loop {
            // Idle lanes with tablets waiting send them.
            for lane in lanes.iter_mut().filter(|l| l.flight.is_none()) {
                let mut items = Vec::new();
                let mut bytes = 0;
                while let Some(i) = lane.queue.front() {
                    if !items.is_empty() && bytes + i.tablet.len() > budget {
                        break;
                    }
                    bytes += i.tablet.len();
                    items.push(lane.queue.pop_front().expect("front"));
                }
                if !items.is_empty() {
                    let bodies = items.iter().map(|i| i.tablet.clone()).collect();
                    lane.flight = Some(Flight {
                        items,
                        sent: 0,
                        attempt: 0,
                        state: FlightState::Out(conn.send(bodies, 0)),
                        since: Instant::now(),
                    });
                }
            }
            let idle = lanes.iter().all(|l| l.flight.is_none());
            if idle && (failure.is_some() || producer_done) {
                return match failure {
                    Some(m) => Stop::Failed(m),
                    None => {
                        // History done and realtime disabled.
                        let _ = stop.wait_for(|s| *s).await;
                        Stop::Requested
                    }
                };
            }
            let admit = failure.is_none() && !producer_done && window_bytes < budget;
            enum Woke {
                Stop,
                Lane(usize, LaneWoke),
                Batch(Option<Prepared>),
                ProducerDone,
            }
            let woke = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => Woke::Stop,
                (i, w) = poll_lanes(&mut lanes) => Woke::Lane(i, w),
                p = rx.recv(), if admit => Woke::Batch(p),
                () = &mut producer, if !rx.is_closed() => Woke::ProducerDone,
            };
            let mut acked_events = 0;
            match woke {
                Woke::Stop => {
                    cancel_all(&mut lanes).await;
                    return Stop::Requested;
                }
                Woke::ProducerDone => continue,
                Woke::Batch(None) => producer_done = true,
                Woke::Batch(Some(p)) => {
                    let n = lanes.len();
                    let mut bytes = 0;
                    let batch = batches;
                    batches += 1;
                    for (ev, offset) in p.events.into_iter().zip(p.offsets) {
                        // The thrift connectors send tablets only.
                        if let PipeEvent::Tablet(tablet) = ev {
                            bytes += tablet.len();
                            let lane = &mut lanes[lane_of(&tablet, n)];
                            let points = points_of(&tablet);
                            lane.queue.push_back(Item {
                                offset,
                                batch,
                                tablet,
                                points,
                            });
                        }
                    }
                    window.push_back(Handed {
                        batch,
                        bytes,
                        history: p.history,
                    });
                    window_bytes += bytes;
                    handed = Some(p.next);
                    failure = p.failure;
                }
                Woke::Lane(i, LaneWoke::Resend) => {
                    let f = lanes[i].flight.as_mut().expect("in flight");
                    let bodies = f.items.iter().map(|i| i.tablet.clone()).collect();
                    f.state = FlightState::Out(conn.send(bodies, f.sent));
                    f.since = Instant::now();
                }
                Woke::Lane(i, LaneWoke::Ended(sent, result)) => {
                    let lane = &mut lanes[i];
                    let f = lane.flight.as_mut().expect("in flight");
                    let sent = sent.unwrap_or(f.sent).clamp(f.sent, f.items.len());
                    acked_events = (sent - f.sent) as u64;
                    let done = &f.items[f.sent..sent];
                    self.stats.transfers.acknowledged(
                        done.iter().map(|i| i.points).sum(),
                        done.iter().map(|i| i.tablet.len() as u64).sum(),
                    );
                    f.sent = sent;
                    match result {
                        Ok(()) => {
                            self.stats.transfers.took(f.since.elapsed());
                            lane.flight = None;
                            if lane.error.take().is_some() {
                                self.publish_retry(&lanes);
                            }
                        }
                        Err(e) => {
                            // Read at each failure: LOAD CONFIGURATION
                            // applies to the next one.
                            let settings = self.shared.settings();
                            f.attempt += 1;
                            if f.attempt > settings.max_retry {
                                let m = format!(
                                    "transfer failed {} times (max_number_of_sync_file_retry = {}): {e}",
                                    f.attempt, settings.max_retry
                                );
                                cancel_all(&mut lanes).await;
                                return Stop::Interrupted(m);
                            }
                            let wait = backoff(settings.retry_base, settings.retry_cap, f.attempt);
                            warn!(attempt = f.attempt, lane = i, retry_in_ms = wait.as_millis() as u64, cause = %e, "transfer failed; retrying");
                            self.stats
                                .transfers
                                .retried((f.items.len() - f.sent) as u64);
                            f.state = FlightState::Backoff(Box::pin(tokio::time::sleep(wait)));
                            lane.error = Some((
                                Instant::now(),
                                format!("retry {} of {}: {e}", f.attempt, settings.max_retry),
                            ));
                            self.publish_retry(&lanes);
                        }
                    }
                }
            }
            // The batches wholly acknowledged with every one before them:
            // those before the first batch with a tablet still in a lane.
            let unacked = lanes
                .iter()
                .filter_map(|l| l.first_unacked().map(|i| i.batch))
                .min()
                .unwrap_or(batches);
            while window.front().is_some_and(|w| w.batch < unacked) {
                let w = window.pop_front().expect("front");
                window_bytes -= w.bytes;
                if let Some(m) = w.history {
                    self.history_acked(m);
                }
            }
            // Acknowledged: everything below the first record still in a
            // lane, and below the end of what the lanes were handed.
            let pending = lanes
                .iter()
                .filter_map(|l| l.first_unacked().map(|i| i.offset))
                .chain(handed)
                .min();
            if let Some(pending) = pending {
                self.stats.acked(pending, acked_events);
                if pending > self.pending.load(Ordering::Relaxed) {
                    self.note(pending);
                }
            }
        }
    }

    /// Publishes the most recent failure of the lanes that retry, or none.
    fn publish_retry(&self, lanes: &[Lane]) {
        let last = lanes
            .iter()
            .filter_map(|l| l.error.as_ref())
            .max_by_key(|e| e.0)
            .map(|e| e.1.clone());
        self.stats.set_retry(last);
    }

    /// Hands `p` to the sender, in the slot reserved for it if there is
    /// one, publishing what was read; false when the sender is gone.
    pub(crate) async fn hand_on(
        &self,
        slot: &mut Option<tokio::sync::mpsc::Permit<'_, Prepared>>,
        tx: &tokio::sync::mpsc::Sender<Prepared>,
        p: Prepared,
    ) -> bool {
        if p.failure.is_none() || p.next > 0 {
            self.stats.read(p.next, p.sends);
        }
        match slot.take() {
            Some(s) => {
                s.send(p);
                true
            }
            None => tx.send(p).await.is_ok(),
        }
    }

    /// Reads the log from the committed offset, extracts and processes, and
    /// hands batches of at most `connector.batch.size-bytes / divisor` to
    /// the sender. A failure is handed on after the events before it, so
    /// they are still delivered.
    async fn produce(&self, tx: tokio::sync::mpsc::Sender<Prepared>, divisor: usize) {
        let Ok(slot) = tx.reserve().await else { return };
        let log = &self.shared.log;
        let settings = self.shared.settings();
        let mut ext_attrs = self.meta.extractor.clone();
        let mut ext = match Extractor::configure(&mut ext_attrs, settings.units_per_sec) {
            Ok(e) => e,
            Err(m) => return slot.send(Prepared::failed(m)),
        };
        ext.deletions = self.meta.sync_deletions();
        let mut proc_attrs = self.meta.processor.clone();
        let mut processor = match plugin::processor(&mut proc_attrs) {
            Ok(p) => p,
            Err(m) => return slot.send(Prepared::failed(m)),
        };
        // Not from the connector: another pipe sharing it may hold it for
        // as long as its transfer takes.
        let spec = match plugin::ConnectorSpec::parse(&self.meta.connector) {
            Ok(spec) => spec,
            Err(m) => return slot.send(Prepared::failed(m)),
        };
        let batch_bytes =
            (spec.batch_bytes() / divisor.max(1)).max(plugin::connector::MIN_BATCH_BYTES);
        let consumer = consumer_name(&self.meta.id);
        let mut offset = log.committed(&consumer).unwrap_or(self.meta.history_end);
        self.pending.store(offset, Ordering::Relaxed);
        self.committed.store(offset, Ordering::Relaxed);
        self.stats.started(offset);
        if !ext.history {
            offset = offset.max(self.meta.history_end);
        }
        if offset < log.log_start() {
            // The change log recorded the loss for this pipe's consumer:
            // SHOW PIPES names the lost offsets.
            let start = log.log_start();
            warn!(offset, log_start = start, "records before the log start were deleted by the disk bound; continuing at the log start");
            offset = start;
        }
        let mut reader = match log.reader(offset) {
            Ok(r) => r,
            Err(e) => {
                return slot.send(Prepared::failed(format!(
                    "cannot read the change log at offset {offset}: {e}"
                )))
            }
        };
        info!(offset, "pipe running");
        drop(slot);
        if let Some(phase) = &self.history {
            // History from the store's snapshot first (`history.rs`); the
            // log from its offset after.
            if !self
                .produce_history(phase, &tx, &ext, processor.as_mut(), &spec, batch_bytes)
                .await
            {
                return;
            }
        }
        let mut events = Vec::new();
        let mut offsets = Vec::new();
        let mut sends = 0u64;
        let mut size = 0usize;
        loop {
            if !ext.realtime && offset >= self.meta.history_end {
                return; // closes the channel: nothing more to send
            }
            let first = reader.next().await;
            // Wait for room before holding a second batch.
            let Ok(slot) = tx.reserve().await else { return };
            let mut batches = match first {
                Ok(b) => vec![b],
                Err(e) => {
                    return slot.send(Prepared::failed(format!(
                        "reading the change log at offset {offset}: {e}"
                    )))
                }
            };
            let mut bytes: usize = batches[0].size_bytes();
            let mut records = batches[0].len();
            while bytes < batch_bytes && records < settings.batch_records {
                match reader.try_next() {
                    Ok(Some(b)) => {
                        bytes += b.size_bytes();
                        records += b.len();
                        batches.push(b);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let p = Prepared {
                            events,
                            offsets,
                            next: offset,
                            sends,
                            failure: Some(format!("reading the change log: {e}")),
                            history: None,
                        };
                        self.hand_on(&mut Some(slot), &tx, p).await;
                        return;
                    }
                }
            }
            // The deletions the log holds now that the batch is read (and
            // any in the batch that a writer logged around the index).
            let mut deletions = self.shared.deletions.view();
            let mut unindexed = false;
            for rec in batches.iter().flat_map(|b| b.iter()) {
                if protocol::event::base_kind(rec.kind) != protocol::event::KIND_TABLET
                    && !deletions.has(rec.offset)
                {
                    if let Ok(Some(d)) =
                        DeletionRecord::of_record(rec.offset, rec.kind, rec.payload)
                    {
                        self.shared.deletions.observe(d);
                        unindexed = true;
                    }
                }
            }
            if unindexed {
                deletions = self.shared.deletions.view();
            }
            let mut next = offset;
            // Where the last batch handed on ended.
            let mut handed = offset;
            let mut slot = Some(slot);
            'records: for b in &batches {
                for rec in b.iter() {
                    let history = rec.offset < self.meta.history_end;
                    if !ext.realtime && !history {
                        break 'records;
                    }
                    if history && !ext.history {
                        next = rec.offset + 1;
                        continue;
                    }
                    match ext.extract(
                        rec.offset,
                        rec.kind,
                        b.share(rec.payload),
                        history,
                        &deletions,
                    ) {
                        Ok(Some(ev)) => {
                            if let PipeEvent::Tablet(b) = &ev {
                                size += b.len();
                            }
                            let before = events.len();
                            processor.process(ev, &mut events);
                            sends +=
                                events[before..].iter().filter(|e| spec.sends(e)).count() as u64;
                            offsets.resize(events.len(), rec.offset);
                        }
                        Ok(None) => {}
                        Err(m) => {
                            let m =
                                format!("change log record {} does not decode: {m}", rec.offset);
                            let p = Prepared {
                                events,
                                offsets,
                                next,
                                sends,
                                failure: Some(m),
                                history: None,
                            };
                            self.hand_on(&mut slot, &tx, p).await;
                            return;
                        }
                    }
                    next = rec.offset + 1;
                    if size >= batch_bytes {
                        // Full: hand it on; the rest of these batches goes
                        // in the next one.
                        let p = Prepared {
                            events: std::mem::take(&mut events),
                            offsets: std::mem::take(&mut offsets),
                            next,
                            sends: std::mem::take(&mut sends),
                            failure: None,
                            history: None,
                        };
                        if !self.hand_on(&mut slot, &tx, p).await {
                            return;
                        }
                        size = 0;
                        handed = next;
                    }
                }
            }
            if !events.is_empty() || next > handed {
                let p = Prepared {
                    events: std::mem::take(&mut events),
                    offsets: std::mem::take(&mut offsets),
                    next,
                    sends: std::mem::take(&mut sends),
                    failure: None,
                    history: None,
                };
                size = 0;
                if !self.hand_on(&mut slot, &tx, p).await {
                    return;
                }
            }
            if next != reader.position() {
                // Realtime disabled: the read went past the history end.
                if let Err(e) = reader.seek(next) {
                    let _ = tx
                        .send(Prepared::failed(format!("seek to {next}: {e}")))
                        .await;
                    return;
                }
            }
            offset = next;
        }
    }

    /// Transfers `events` with retries, one request at a time; `None` on
    /// success. While it retries, SHOW PIPES shows the last failure
    /// (`retry 2 of 5: …`); a success clears it.
    ///
    /// A stop abandons the transfer wherever it is: waiting for the
    /// connector (another pipe sharing it may be stuck on a silent
    /// receiver), connecting, writing or awaiting the reply. The abandoned
    /// request is never acknowledged (its events stay above the pending
    /// offset, to be sent again after START) and its connection is reset
    /// (see [`plugin::Connector::transfer`]).
    async fn send(
        &self,
        events: &[PipeEvent],
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Stop> {
        if events.is_empty() {
            return None;
        }
        let Live::Serial(connector) = &self.connector else {
            unreachable!("serial transfer on a serial connector")
        };
        let mut attempt = 0;
        // Events acknowledged so far (single-tablet requests: a retry goes
        // on after them).
        let mut sent = 0;
        loop {
            let r = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Some(Stop::Requested),
                r = async {
                    let mut c = connector.lock().await;
                    let since = Instant::now();
                    let r = c.transfer(events, &mut sent).await;
                    (r, c.take_notes(), since.elapsed())
                } => r,
            };
            // What the connector skipped and went on after (the legacy
            // connector's deletions the receiver could not apply).
            for note in &r.1 {
                self.shared.warn(&self.meta.id, self.generation, note);
            }
            match r.0 {
                Ok(()) => {
                    self.stats.transfers.took(r.2);
                    if attempt > 0 {
                        self.stats.set_retry(None);
                    }
                    return None;
                }
                Err(e) => {
                    // Read at each failure: LOAD CONFIGURATION applies to
                    // the next one.
                    let settings = self.shared.settings();
                    attempt += 1;
                    if attempt > settings.max_retry {
                        return Some(Stop::Interrupted(format!(
                            "transfer failed {attempt} times (max_number_of_sync_file_retry = {}): {e}",
                            settings.max_retry
                        )));
                    }
                    let wait = backoff(settings.retry_base, settings.retry_cap, attempt);
                    warn!(attempt, retry_in_ms = wait.as_millis() as u64, cause = %e, "transfer failed; retrying");
                    self.stats
                        .transfers
                        .retried(events.len().saturating_sub(sent) as u64);
                    self.stats.set_retry(Some(format!(
                        "retry {attempt} of {}: {e}",
                        settings.max_retry
                    )));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return Some(Stop::Requested),
                    }
                }
            }
        }
    }

    /// Records that everything below `offset` was acknowledged; the commit
    /// loop makes it durable within [`COMMIT_INTERVAL`].
    fn note(&self, offset: u64) {
        self.pending.store(offset, Ordering::Relaxed);
        self.noted.notify_one();
    }

    async fn commit_pending(&self) -> Result<(), String> {
        let offset = self.pending.load(Ordering::Relaxed);
        // Taken after the offset: the history progress acknowledged before
        // the offset moved is in it, and is persisted first, so the log
        // offset never passes the snapshot before the history's end is
        // durable (`history.rs`).
        let history = self.history.as_ref().and_then(history::Phase::update);
        if offset <= self.committed.load(Ordering::Relaxed) && history.is_none() {
            return Ok(());
        }
        self.commit(offset, history).await?;
        self.committed.fetch_max(offset, Ordering::Relaxed);
        *self.last_commit.lock().expect("commit clock") = std::time::Instant::now();
        Ok(())
    }

    /// Durably records that everything below `offset` was acknowledged,
    /// after the store history progress `history`, if any.
    async fn commit(&self, offset: u64, history: Option<history::Update>) -> Result<(), String> {
        let log = self.shared.log.clone();
        let gate = self.commit_gate.clone();
        let consumer = consumer_name(&self.meta.id);
        let r = tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let mut gate = gate.lock().expect("commit gate");
            if gate.closed {
                return Ok(false);
            }
            if let Some(h) = history {
                h.write()?;
            }
            if offset > gate.written {
                log.commit(&consumer, offset)
                    .map_err(|e| format!("cannot commit offset {offset}: {e}"))?;
                gate.written = offset;
            }
            Ok(true)
        })
        .await;
        match r {
            Ok(Ok(open)) => {
                if open {
                    self.stats.committed.fetch_max(offset, Ordering::Relaxed);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("cannot commit offset {offset}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for a in 1..12 {
            let exp = b.saturating_mul(1 << (a - 1)).min(cap);
            let mut d: Vec<Duration> = (0..400).map(|_| backoff(b, cap, a)).collect();
            // Doubling up to the cap, within ±25 %.
            for x in &d {
                assert!(
                    *x >= exp.mul_f64(0.75) && *x <= exp.mul_f64(1.25),
                    "attempt {a}: {x:?} outside {exp:?} ± 25 %"
                );
            }
            // Spread over the whole band, not a point: a uniform draw puts
            // the least of 400 below -20 % and the greatest above +20 %
            // but for odds of 1 in 10^18.
            d.sort();
            assert!(
                d[0] < exp.mul_f64(0.8) && d[399] > exp.mul_f64(1.2),
                "attempt {a}: no jitter ({:?} ..= {:?} around {exp:?})",
                d[0],
                d[399]
            );
            // And not a few values repeated: each retry draws its own.
            d.dedup();
            assert!(
                d.len() > 390,
                "attempt {a}: {} distinct delays of 400",
                d.len()
            );
        }
    }
}
