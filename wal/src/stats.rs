//! Read-only views of a log's shape: segments, consumer lag, and which
//! offset the log can vouch is durable.

use std::sync::atomic::Ordering;

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
