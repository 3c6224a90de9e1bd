//! Read-only views of a log's shape: segments, consumer lag, which offset
//! the log can vouch is durable, and how long its fsyncs take.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::format::SEGMENT_HEADER_LEN;
use crate::log::Log;

/// One segment as [`Log::segments`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of its first record.
    pub base_offset: u64,
    /// One past its last record.
    pub next_offset: u64,
    /// Size of the file on disk (preallocated for the active segment).
    pub file_bytes: u64,
    /// Bytes in use, segment header included: the byte position where the
    /// next batch goes. See [`SegmentInfo::record_bytes`] for the count
    /// the tools report.
    pub data_bytes: u64,
    /// Arrival time of the first record (µs), `None` if empty.
    pub first_arrival_us: Option<i64>,
    /// Arrival time of the last record (µs), `None` if empty.
    pub last_arrival_us: Option<i64>,
    /// Whether appends have moved on to a newer segment.
    pub sealed: bool,
}

impl SegmentInfo {
    /// Number of records.
    pub fn records(&self) -> u64 {
        self.next_offset - self.base_offset
    }

    /// Bytes of record batches (batch headers included, the segment header
    /// not): the same count as `wal verify`'s and [`Lag::bytes`].
    pub fn record_bytes(&self) -> u64 {
        self.data_bytes.saturating_sub(SEGMENT_HEADER_LEN as u64)
    }
}

/// Which offset a log can vouch is durable (every record below it survives
/// a crash or power cut), and on what grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// This process writes the log: every offset below is fsynced.
    Writer(u64),
    /// Opened read-only after the writer closed cleanly: every record is
    /// durable.
    ClosedCleanly(u64),
    /// Opened read-only while a writer runs, or after one stopped without a
    /// clean close: durable as of the writer's last recovery-point
    /// checkpoint (written about once a second while it writes). Records
    /// after it may be durable too; a read-only look cannot tell. 0 when
    /// there is no checkpoint.
    RecoveryPoint(u64),
}

impl Durability {
    /// The offset vouched for.
    pub fn offset(&self) -> u64 {
        match *self {
            Durability::Writer(o) | Durability::ClosedCleanly(o) | Durability::RecoveryPoint(o) => {
                o
            }
        }
    }
}

/// How far a consumer is behind the log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Records between the offset and the log end.
    pub records: u64,
    /// Log bytes between the offset and the log end (batch headers included).
    pub bytes: u64,
    /// Arrival time of the newest record minus that of the record at the
    /// offset, in µs; 0 when nothing is behind.
    pub arrival_us: i64,
}

impl Log {
    /// Which offset this log can vouch is durable: the writer's own durable
    /// offset, or for a read-only log what the checkpoint on disk says.
    pub fn durability(&self) -> Durability {
        let shared = self.shared();
        let durable = shared.durable.load(Ordering::Acquire);
        if shared.writer.is_some() {
            return Durability::Writer(durable);
        }
        match shared.last_checkpoint() {
            Some(c) if c.clean => Durability::ClosedCleanly(durable),
            _ => Durability::RecoveryPoint(durable),
        }
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let some = |t: i64| (t != i64::MIN).then_some(t);
        self.shared()
            .snapshot()
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset(),
                file_bytes: s.capacity(),
                data_bytes: s.data_len(),
                first_arrival_us: some(s.first_arrival()),
                last_arrival_us: some(s.last_arrival()),
                sealed: s.is_sealed(),
            })
            .collect()
    }

    /// How far `offset` is behind the log end. Reads at most one index
    /// interval of one segment.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange) outside
    /// the log; corruption met while locating the offset.
    pub fn lag(&self, offset: u64) -> Result<Lag> {
        let shared = self.shared();
        shared.check_range(offset)?;
        let end = shared.end.load(Ordering::Acquire);
        if offset == end {
            return Ok(Lag {
                records: 0,
                bytes: 0,
                arrival_us: 0,
            });
        }
        let segs = shared.snapshot();
        let i = segs.partition_point(|s| s.base_offset <= offset) - 1;
        let seg = &segs[i];
        let (pos, arrival) = crate::reader::locate_batch(seg, offset)?;
        let bytes = (seg.data_len() - pos)
            + segs[i + 1..]
                .iter()
                .map(|s| s.data_len() - SEGMENT_HEADER_LEN as u64)
                .sum::<u64>();
        let newest = segs
            .iter()
            .rev()
            .map(|s| s.last_arrival())
            .find(|&t| t != i64::MIN)
            .unwrap_or(arrival);
        Ok(Lag {
            records: end - offset,
            bytes,
            arrival_us: (newest - arrival).max(0),
        })
    }
}

/// Upper bounds (seconds) of the fsync latency buckets of
/// [`Log::fsync_stats`]: from well under one `fdatasync` of this machine
/// (~0.2 ms) to a disk in trouble; anything slower falls in the last,
/// unbounded bucket.
pub const FSYNC_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// What a [`LatencyHistogram`] recorded so far, for a metrics scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Durations recorded.
    pub count: u64,
    /// Their total, seconds.
    pub sum_seconds: f64,
    /// Durations per bucket, not cumulative: `(upper bound in seconds,
    /// count)`, one per bound of the histogram, then `(f64::INFINITY,
    /// slower ones)`.
    pub buckets: Vec<(f64, u64)>,
}

/// A histogram of durations over fixed bucket bounds, recorded without a
/// lock or an allocation: [`LatencyHistogram::record`] costs a scan of the
/// bounds (at most a few dozen compares) and two relaxed atomic adds (the
/// bucket and the sum in nanoseconds). A scrape reads the atomics one by
/// one, so a snapshot taken while durations are recorded may see a bucket
/// count and a sum off by the few records in between; the next one catches
/// up (counters never go back). For the change log's syncs, and for the
/// node's RPC and pipe transfer latencies (shared here, the lowest crate
/// both use).
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Upper bounds, seconds, ascending.
    bounds: &'static [f64],
    /// One per bound, then one for slower durations.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// An empty histogram over `bounds` (upper bounds in seconds,
    /// ascending; a duration equal to a bound falls in that bound's bucket,
    /// as Prometheus' `le` says).
    pub fn new(bounds: &'static [f64]) -> LatencyHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        LatencyHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Runs `f`, recording how long it took (whether it failed or not).
    pub fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let r = f();
        self.record(start.elapsed());
        r
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Durations recorded so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// What was recorded so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter())
            .map(|(b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|b| b.1).sum(),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

impl Log {
    /// How long this process's data syncs of the log took so far: the
    /// group commits that make appends durable (`msync` of the new bytes),
    /// and the `fdatasync` of a segment as it is sealed, over
    /// [`FSYNC_BUCKETS`]. Nothing for a read-only log, or under the `never`
    /// policy until a sealed segment is flushed.
    pub fn fsync_stats(&self) -> HistogramSnapshot {
        self.shared().fsyncs.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_durations_fall_in_their_buckets() {
        let t = LatencyHistogram::new(&FSYNC_BUCKETS);
        t.record(Duration::from_micros(30));
        t.record(Duration::from_micros(200));
        t.record(Duration::from_millis(1));
        t.record(Duration::from_secs(10));
        let s = t.snapshot();
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 10.00123).abs() < 1e-9, "{}", s.sum_seconds);
        let count = |bound: f64| s.buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!(count(0.00005), 1);
        assert_eq!(count(0.00025), 1);
        assert_eq!(count(0.001), 1, "a bound is inclusive (le)");
        assert_eq!(count(f64::INFINITY), 1);
        assert_eq!(s.buckets.len(), FSYNC_BUCKETS.len() + 1);
        assert_eq!(t.count(), 4);
        assert_eq!(t.time(|| 7), 7);
        assert_eq!(t.count(), 5);
    }
}
