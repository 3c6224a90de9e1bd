//! The task of one running pipe: tail the log from the committed offset,
//! extract, process, transfer (with retries), commit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, instrument, warn};

use crate::deletions::DeletionRecord;
use crate::meta::PipeMeta;
use crate::plugin::{self, Connector, Extractor, PipeEvent};
use crate::{consumer_name, Shared, Stats};

pub(crate) struct PipeTask {
    pub shared: Arc<Shared>,
    pub meta: PipeMeta,
    pub stats: Arc<Stats>,
    pub connector: Arc<tokio::sync::Mutex<Connector>>,
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
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).min(16)).min(cap);
    exp.mul_f64(0.75 + fastrand::f64() / 2.0)
}

enum Stop {
    Requested,
    Failed(String),
}

/// Hands `p` to the sender, in the slot reserved for it if there is one;
/// false when the sender is gone.
async fn hand_on(
    slot: &mut Option<tokio::sync::mpsc::Permit<'_, Prepared>>,
    tx: &tokio::sync::mpsc::Sender<Prepared>,
    p: Prepared,
) -> bool {
    match slot.take() {
        Some(s) => {
            s.send(p);
            true
        }
        None => tx.send(p).await.is_ok(),
    }
}

/// A batch ready to send: events, the offset after them, and a failure met
/// after them (the pipe stops once the events are delivered).
struct Prepared {
    events: Vec<PipeEvent>,
    next: u64,
    failure: Option<String>,
}

impl PipeTask {
    #[instrument(skip_all, fields(pipe = %self.meta.id))]
    pub(crate) async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let end = self.pump(&mut stop).await;
        // What was acknowledged stays acknowledged.
        if let Err(m) = self.commit_pending().await {
            warn!(cause = %m, "could not commit the acknowledged offset; it will be sent again");
        }
        match end {
            Stop::Requested => debug!("pipe task stopped"),
            Stop::Failed(m) => self.shared.fail(&self.meta.id, self.generation, m),
        }
    }

    /// Runs the pipe: the sender loop, and beside it the offset commits.
    async fn pump(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Stop {
        tokio::select! {
            s = self.transfer_loop(stop) => s,
            m = self.commit_loop() => Stop::Failed(m),
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

    /// A producer reads the log, extracts and processes events into
    /// batches, while this loop transfers the batch before. A one-slot
    /// channel joins them, so reading the next batch overlaps the
    /// receiver's work on the current one, while only one request is ever
    /// in flight and at most two batches are held.
    async fn transfer_loop(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Stop {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(1);
        let mut producer = std::pin::pin!(self.produce(tx));
        loop {
            enum Woke {
                Batch(Option<Prepared>),
                ProducerDone,
                Stop,
            }
            let woke = tokio::select! {
                // A stop wins over a ready batch: nothing new starts.
                biased;
                _ = stop.wait_for(|s| *s) => Woke::Stop,
                p = rx.recv() => Woke::Batch(p),
                // The producer returns (closing the channel) only when it
                // has nothing more to send: realtime disabled and history
                // done, or after handing on a failure.
                () = &mut producer, if !rx.is_closed() => Woke::ProducerDone,
            };
            let prepared = match woke {
                Woke::Batch(p) => p,
                Woke::ProducerDone => continue,
                Woke::Stop => return Stop::Requested,
            };
            let Some(mut p) = prepared else {
                // History done and realtime disabled: nothing more to do.
                let _ = stop.wait_for(|s| *s).await;
                return Stop::Requested;
            };
            if let Some(stopped) = self.send(&mut p.events, stop).await {
                return stopped;
            }
            if p.next > self.pending.load(Ordering::Relaxed) {
                self.note(p.next);
            }
            if let Some(m) = p.failure {
                return Stop::Failed(m);
            }
        }
    }

    /// Reads the log from the committed offset, extracts and processes, and
    /// hands batches of at most `batch_bytes` to the sender. A failure is
    /// handed on after the events before it, so they are still delivered.
    async fn produce(&self, tx: tokio::sync::mpsc::Sender<Prepared>) {
        let fail = |m: String| Prepared {
            events: Vec::new(),
            next: 0,
            failure: Some(m),
        };
        let Ok(slot) = tx.reserve().await else { return };
        let log = &self.shared.log;
        let settings = self.shared.settings();
        let mut ext_attrs = self.meta.extractor.clone();
        let mut ext = match Extractor::configure(&mut ext_attrs, settings.units_per_sec) {
            Ok(e) => e,
            Err(m) => return slot.send(fail(m)),
        };
        ext.deletions = self.meta.sync_deletions();
        let mut proc_attrs = self.meta.processor.clone();
        let mut processor = match plugin::processor(&mut proc_attrs) {
            Ok(p) => p,
            Err(m) => return slot.send(fail(m)),
        };
        // Not from the connector: another pipe sharing it may hold it for
        // as long as its transfer takes.
        let batch_bytes = match plugin::ConnectorSpec::parse(&self.meta.connector) {
            Ok(spec) => spec.batch_bytes(),
            Err(m) => return slot.send(fail(m)),
        };
        let consumer = consumer_name(&self.meta.id);
        let mut offset = log.committed(&consumer).unwrap_or(self.meta.history_end);
        self.pending.store(offset, Ordering::Relaxed);
        self.committed.store(offset, Ordering::Relaxed);
        if !ext.history {
            offset = offset.max(self.meta.history_end);
        }
        if offset < log.log_start() {
            let start = log.log_start();
            warn!(offset, log_start = start, "records before the log start were deleted by the disk bound; continuing at the log start");
            self.shared.warn(&self.meta.id, self.generation, &format!("change log records {offset}..{start} were deleted by the disk bound before this pipe sent them; they are lost"), true);
            offset = start;
        }
        let mut reader = match log.reader(offset) {
            Ok(r) => r,
            Err(e) => {
                return slot.send(fail(format!(
                    "cannot read the change log at offset {offset}: {e}"
                )))
            }
        };
        info!(offset, "pipe running");
        drop(slot);
        let mut events = Vec::new();
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
                    return slot.send(fail(format!(
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
                        return slot.send(Prepared {
                            events,
                            next: offset,
                            failure: Some(format!("reading the change log: {e}")),
                        })
                    }
                }
            }
            // The deletions the log holds now that the batch is read (and
            // any in the batch that a writer logged around the index).
            let mut deletions = self.shared.deletions.view();
            let mut unindexed = false;
            for rec in batches.iter().flat_map(|b| b.iter()) {
                if rec.kind != protocol::event::KIND_TABLET && !deletions.has(rec.offset) {
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
                            processor.process(ev, &mut events);
                        }
                        Ok(None) => {}
                        Err(m) => {
                            let m =
                                format!("change log record {} does not decode: {m}", rec.offset);
                            let p = Prepared {
                                events,
                                next,
                                failure: Some(m),
                            };
                            hand_on(&mut slot, &tx, p).await;
                            return;
                        }
                    }
                    next = rec.offset + 1;
                    if size >= batch_bytes {
                        // Full: hand it on; the rest of these batches goes
                        // in the next one.
                        let p = Prepared {
                            events: std::mem::take(&mut events),
                            next,
                            failure: None,
                        };
                        if !hand_on(&mut slot, &tx, p).await {
                            return;
                        }
                        size = 0;
                    }
                }
            }
            if !events.is_empty() || next > offset {
                let p = Prepared {
                    events: std::mem::take(&mut events),
                    next,
                    failure: None,
                };
                size = 0;
                if !hand_on(&mut slot, &tx, p).await {
                    return;
                }
            }
            if next != reader.position() {
                // Realtime disabled: the read went past the history end.
                if let Err(e) = reader.seek(next) {
                    let _ = tx.send(fail(format!("seek to {next}: {e}"))).await;
                    return;
                }
            }
            offset = next;
        }
    }

    /// Transfers `events` with retries; `None` on success.
    ///
    /// A stop abandons the transfer wherever it is: waiting for the
    /// connector (another pipe sharing it may be stuck on a silent
    /// receiver), connecting, writing or awaiting the reply. The abandoned
    /// request is never acknowledged (its events stay above the pending
    /// offset, to be sent again after START) and its connection is reset
    /// (see [`Connector::transfer`]).
    async fn send(
        &self,
        events: &mut Vec<PipeEvent>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Stop> {
        if events.is_empty() {
            return None;
        }
        let settings = self.shared.settings();
        let mut attempt = 0;
        loop {
            let r = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Some(Stop::Requested),
                r = async {
                    let mut c = self.connector.lock().await;
                    let r = c.transfer(events).await;
                    (r, c.take_notes())
                } => r,
            };
            for note in &r.1 {
                self.shared.warn(&self.meta.id, self.generation, note, true);
            }
            match r.0 {
                Ok(()) => {
                    events.clear();
                    return None;
                }
                Err(e) => {
                    attempt += 1;
                    if attempt > settings.max_retry {
                        return Some(Stop::Failed(format!(
                            "transfer failed {attempt} times (max_number_of_sync_file_retry = {}): {e}",
                            settings.max_retry
                        )));
                    }
                    let wait = backoff(settings.retry_base, settings.retry_cap, attempt);
                    warn!(attempt, retry_in_ms = wait.as_millis() as u64, cause = %e, "transfer failed; retrying");
                    self.shared.warn(&self.meta.id, self.generation, &format!("transfer failed, retry {attempt} of {} (max_number_of_sync_file_retry): {e}", settings.max_retry), false);
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
        if offset <= self.committed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.commit(offset).await?;
        self.committed.fetch_max(offset, Ordering::Relaxed);
        *self.last_commit.lock().expect("commit clock") = std::time::Instant::now();
        Ok(())
    }

    /// Durably records that everything below `offset` was acknowledged.
    async fn commit(&self, offset: u64) -> Result<(), String> {
        let log = self.shared.log.clone();
        let gate = self.commit_gate.clone();
        let consumer = consumer_name(&self.meta.id);
        let r = tokio::task::spawn_blocking(move || -> wal::Result<bool> {
            let mut gate = gate.lock().expect("commit gate");
            if gate.closed {
                return Ok(false);
            }
            if offset > gate.written {
                log.commit(&consumer, offset)?;
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
            Ok(Err(e)) => Err(format!("cannot commit offset {offset}: {e}")),
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
