//! The task of one running pipe: tail the log from the committed offset,
//! extract, process, transfer (with retries), commit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, instrument, warn};

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
}

/// Longest time an acknowledged batch waits for its offset commit. Each
/// commit fsyncs the ledger, and with fsync off on the log an fsync drags
/// the log's dirty pages along and stalls the pipe, so commits are spaced.
/// A crash replays at most this much acknowledged data (plus the batch in
/// flight).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Capped exponential backoff with ±25 % jitter for retry `attempt` (1-based).
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).min(16)).min(cap);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = 0.75 + f64::from(nanos % 1000) / 2000.0;
    exp.mul_f64(jitter)
}

enum Stop {
    Requested,
    Failed(String),
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

    async fn pump(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Stop {
        let log = &self.shared.log;
        let settings = &self.shared.settings;
        let mut ext_attrs = self.meta.extractor.clone();
        let ext = match Extractor::configure(&mut ext_attrs, settings.units_per_sec) {
            Ok(e) => e,
            Err(m) => return Stop::Failed(m),
        };
        let mut proc_attrs = self.meta.processor.clone();
        let mut processor = match plugin::processor(&mut proc_attrs) {
            Ok(p) => p,
            Err(m) => return Stop::Failed(m),
        };
        let batch_bytes = self.connector.lock().await.spec().batch_bytes();
        let consumer = consumer_name(&self.meta.id);
        let mut offset = log.committed(&consumer).unwrap_or(self.meta.history_end);
        self.pending.store(offset, Ordering::Relaxed);
        self.committed.store(offset, Ordering::Relaxed);
        if !ext.history {
            offset = offset.max(self.meta.history_end);
        }
        if offset < log.log_start() {
            warn!(offset, log_start = log.log_start(), "records before the log start were deleted by the disk bound; continuing at the log start");
            offset = log.log_start();
        }
        let mut reader = match log.reader(offset) {
            Ok(r) => r,
            Err(e) => {
                return Stop::Failed(format!(
                    "cannot read the change log at offset {offset}: {e}"
                ))
            }
        };
        info!(offset, "pipe running");
        loop {
            if !ext.realtime && offset >= self.meta.history_end {
                // History done and realtime disabled: nothing more to do.
                let _ = stop.wait_for(|s| *s).await;
                return Stop::Requested;
            }
            let commit_due = *self.last_commit.lock().expect("commit clock") + COMMIT_INTERVAL;
            let uncommitted =
                self.pending.load(Ordering::Relaxed) > self.committed.load(Ordering::Relaxed);
            enum Woke {
                Batch(wal::Result<wal::RecordBatch>),
                CommitDue,
                Stop,
            }
            let woke = tokio::select! {
                b = reader.next() => Woke::Batch(b),
                _ = tokio::time::sleep_until(commit_due.into()), if uncommitted => Woke::CommitDue,
                _ = stop.wait_for(|s| *s) => Woke::Stop,
            };
            let first = match woke {
                Woke::Batch(b) => b,
                Woke::CommitDue => {
                    if let Err(m) = self.commit_pending().await {
                        return Stop::Failed(m);
                    }
                    continue;
                }
                Woke::Stop => return Stop::Requested,
            };
            let mut batches = match first {
                Ok(b) => vec![b],
                Err(e) => {
                    return Stop::Failed(format!("reading the change log at offset {offset}: {e}"))
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
                    Err(e) => return Stop::Failed(format!("reading the change log: {e}")),
                }
            }
            let mut events = Vec::new();
            let mut next = offset;
            let mut size = 0usize;
            'records: for b in &batches {
                for rec in b.iter() {
                    let history = rec.offset < self.meta.history_end;
                    if !ext.realtime && !history {
                        break 'records;
                    }
                    next = rec.offset + 1;
                    if history && !ext.history {
                        continue;
                    }
                    match ext.extract(rec.kind, rec.payload, history) {
                        Ok(Some(ev)) => {
                            if let PipeEvent::Tablet(b) = &ev {
                                size += b.len();
                            }
                            processor.process(ev, &mut events);
                        }
                        Ok(None) => {}
                        Err(m) => {
                            return Stop::Failed(format!(
                                "change log record {} does not decode: {m}",
                                rec.offset
                            ))
                        }
                    }
                    if size >= batch_bytes {
                        // Send what we have; the reader resumes after `next`.
                        if let Some(stopped) = self.send(&mut events, stop).await {
                            return stopped;
                        }
                        if let Err(m) = self.note(next).await {
                            return Stop::Failed(m);
                        }
                        size = 0;
                    }
                }
            }
            if let Some(stopped) = self.send(&mut events, stop).await {
                return stopped;
            }
            if next > offset {
                if let Err(m) = self.note(next).await {
                    return Stop::Failed(m);
                }
            }
            if next != reader.position() {
                // Realtime disabled: the read went past the history end.
                if let Err(e) = reader.seek(next) {
                    return Stop::Failed(format!("seek to {next}: {e}"));
                }
            }
            offset = next;
        }
    }

    /// Transfers `events` with retries; `None` on success.
    async fn send(
        &self,
        events: &mut Vec<PipeEvent>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Stop> {
        if events.is_empty() {
            return None;
        }
        let settings = &self.shared.settings;
        let mut attempt = 0;
        loop {
            let r = self.connector.lock().await.transfer(events).await;
            match r {
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
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return Some(Stop::Requested),
                    }
                }
            }
        }
    }

    /// Records that everything below `offset` was acknowledged; commits it
    /// durably when the last commit is `COMMIT_INTERVAL` old (a timer in
    /// the read loop commits the rest).
    async fn note(&self, offset: u64) -> Result<(), String> {
        self.pending.store(offset, Ordering::Relaxed);
        if self.last_commit.lock().expect("commit clock").elapsed() >= COMMIT_INTERVAL {
            self.commit_pending().await
        } else {
            Ok(())
        }
    }

    async fn commit_pending(&self) -> Result<(), String> {
        let offset = self.pending.load(Ordering::Relaxed);
        if offset <= self.committed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.commit(offset).await?;
        self.committed.store(offset, Ordering::Relaxed);
        *self.last_commit.lock().expect("commit clock") = std::time::Instant::now();
        Ok(())
    }

    /// Durably records that everything below `offset` was acknowledged.
    async fn commit(&self, offset: u64) -> Result<(), String> {
        let log = self.shared.log.clone();
        let consumer = consumer_name(&self.meta.id);
        let r = tokio::task::spawn_blocking(move || log.commit(&consumer, offset)).await;
        match r {
            Ok(Ok(())) => {
                self.stats.committed.store(offset, Ordering::Relaxed);
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
        for a in 1..10 {
            let d = backoff(b, cap, a);
            let exp = b.saturating_mul(1 << (a - 1)).min(cap);
            assert!(
                d >= exp.mul_f64(0.75) && d <= exp.mul_f64(1.25),
                "attempt {a}: {d:?}"
            );
        }
    }
}
