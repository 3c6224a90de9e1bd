//! Readers: sequential reads from an offset, seeks by offset and arrival
//! time, and tailing the log end.
//!
//! Every batch a reader returns has passed its CRC check; a reader never
//! sees a partially written batch because it reads only below the published
//! data length of a segment, which the writer raises after the batch and its
//! index entry are complete.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, BatchError, BatchHeader, RecordIter};
use crate::log::Shared;
use crate::segment::Segment;

/// One record as a reader returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's offset.
    pub offset: u64,
    /// When the log accepted it, µs since the Unix epoch.
    pub arrival_us: i64,
    /// The kind byte given at append.
    pub kind: u8,
    /// The payload given at append.
    pub payload: &'a [u8],
}

/// The records of one batch from `first_offset` on, copied out of the log
/// once (after the CRC check) into a shared buffer: payloads can be handed
/// on without another copy ([`RecordBatch::share`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    base_offset: u64,
    first_offset: u64,
    arrival_us: i64,
    bytes: bytes::Bytes,
}

impl RecordBatch {
    /// Offset of the first record returned by [`RecordBatch::iter`].
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// One past the last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(format::le_u32(&self.bytes, 24))
    }

    /// Arrival time shared by the batch's records (µs since the epoch).
    pub fn arrival_us(&self) -> i64 {
        self.arrival_us
    }

    /// Number of records [`RecordBatch::iter`] yields.
    pub fn len(&self) -> usize {
        (self.next_offset() - self.first_offset) as usize
    }

    /// Never true: a batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch's size in the log, header included.
    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// A record's payload (from [`RecordBatch::iter`] on this batch) as a
    /// handle on this batch's buffer: no copy, and the buffer lives as long
    /// as any handle does.
    ///
    /// # Panics
    /// If `payload` does not lie inside this batch.
    pub fn share(&self, payload: &[u8]) -> bytes::Bytes {
        self.bytes.slice_ref(payload)
    }

    /// The records, in offset order.
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        let skip = (self.first_offset - self.base_offset) as usize;
        RecordIter::new(&self.bytes)
            .enumerate()
            .skip(skip)
            .map(move |(i, (kind, payload))| Record {
                offset: self.base_offset + i as u64,
                arrival_us: self.arrival_us,
                kind,
                payload,
            })
    }
}

/// Reads the log in offset order from a start offset, and tails its end.
///
/// A reader holds its segment alive: retention may unlink the files, but
/// the reader keeps reading its mapping and then reports
/// [`Error::OffsetOutOfRange`] for what is gone.
///
/// What it has read it gives back to the kernel as it goes (the pages of
/// the mapping behind it, in steps; a segment it leaves, whole; what it
/// holds when dropped): a reader going through a long backlog does not
/// grow the process's resident set (see `segment.rs`, "Resident memory").
pub struct Reader {
    shared: Arc<Shared>,
    /// The next offset to return.
    next: u64,
    /// The segment and byte position `next` lies at, once located.
    at: Option<(Arc<Segment>, u64)>,
    /// The segment this reader last read and the bytes `[from, to)` of it
    /// whose pages it has not given back yet.
    held: Option<Held>,
}

/// Part of a segment a reader read and has not given back yet.
struct Held {
    seg: Arc<Segment>,
    from: u64,
    to: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("next", &self.next).finish()
    }
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, offset: u64) -> Reader {
        Reader {
            shared,
            next: offset,
            at: None,
            held: None,
        }
    }

    /// Notes that `[from, to)` of `seg` was read through the mapping, and
    /// gives back what lies behind: in steps of the segment's release step
    /// while the reader stays in a segment, the rest of a segment it
    /// leaves.
    fn read_through(&mut self, seg: &Arc<Segment>, from: u64, to: u64) {
        if let Some(h) = &mut self.held {
            if Arc::ptr_eq(&h.seg, seg) {
                h.from = h.from.min(from);
                h.to = h.to.max(to);
                if to >= h.from + seg.release_step() {
                    // The page holding `to` (where the next batch starts)
                    // stays: `release` rounds down.
                    seg.release(h.from, to);
                    h.from = to;
                }
                return;
            }
        }
        if let Some(old) = self.held.take() {
            old.seg.release(old.from, u64::MAX);
        }
        self.held = Some(Held {
            seg: seg.clone(),
            from,
            to,
        });
    }

    /// The offset the next record returned will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Moves the reader to `offset`.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside `[log_start, end]`.
    pub fn seek(&mut self, offset: u64) -> Result<()> {
        self.shared.check_range(offset)?;
        self.next = offset;
        self.at = None;
        Ok(())
    }

    /// Returns the next batch (from the reader's position on), or `None` at
    /// the log end. Never blocks.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the offset and byte of a damaged batch
    /// (the reader stays before it); [`Error::OffsetOutOfRange`] when
    /// retention deleted the reader's position.
    pub fn try_next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.next >= self.shared.end.load(Ordering::Acquire) {
                return Ok(None);
            }
            let (seg, pos) = match self.at.take() {
                Some(at) => at,
                None => {
                    self.skip_forced_loss();
                    self.locate()?
                }
            };
            let len = seg.data_len();
            if pos >= len {
                // This segment is exhausted: move on if a newer one exists.
                if seg.next_offset() <= self.next && seg.is_sealed() {
                    self.at = None;
                    continue;
                }
                self.at = Some((seg, pos));
                return Ok(None);
            }
            let bytes = seg.bytes(pos, len);
            let h = match format::check_batch(bytes) {
                Ok(h) => h,
                Err(e) => {
                    let err = corruption(&seg, self.next, pos, &e);
                    self.at = Some((seg, pos));
                    return Err(err);
                }
            };
            let end = pos + u64::from(h.length);
            if h.next_offset() <= self.next {
                self.read_through(&seg, pos, end);
                self.at = Some((seg, end));
                continue;
            }
            if h.base_offset > self.next {
                let err = Error::Corruption {
                    path: seg.path().to_path_buf(),
                    offset: self.next,
                    position: pos,
                    reason: format!(
                        "expected offset {} but found batch at {}",
                        self.next, h.base_offset
                    ),
                };
                self.at = Some((seg, pos));
                return Err(err);
            }
            let batch = RecordBatch {
                base_offset: h.base_offset,
                first_offset: self.next,
                arrival_us: h.arrival_us,
                bytes: bytes::Bytes::copy_from_slice(&bytes[..h.length as usize]),
            };
            self.next = h.next_offset();
            self.read_through(&seg, pos, end);
            self.at = Some((seg, end));
            return Ok(Some(batch));
        }
    }

    /// Returns the next batch, waiting (asynchronously) for the writer when
    /// the reader is at the log end.
    ///
    /// # Errors
    /// As [`Reader::try_next`], and [`Error::Closed`] when the log closes
    /// while the reader waits at its end.
    pub async fn next(&mut self) -> Result<RecordBatch> {
        loop {
            if let Some(b) = self.try_next()? {
                return Ok(b);
            }
            let shared = self.shared.clone();
            let notified = shared.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Counts this reader as sleeping until the guard drops, also when
            // the future is cancelled (a `select!` on a stop signal).
            let _waiting = Waiting::new(&shared);
            let ready = self.next < shared.end.load(Ordering::SeqCst);
            if !ready {
                if shared.closed.load(Ordering::Acquire) {
                    return Err(Error::Closed("closed"));
                }
                notified.await;
            }
        }
    }

    /// Moves the reader to the log start when a disk bound deleted the
    /// records at its position (`max-disk-bytes`, `max-pinned-bytes`): the
    /// loss is recorded in the ledger for the consumers that had not read
    /// them, and the reader goes on with what is left.
    fn skip_forced_loss(&mut self) {
        let start = self.shared.log_start.load(Ordering::Acquire);
        if self.next < start && self.next < self.shared.forced_upto.load(Ordering::Acquire) {
            tracing::warn!(
                from = self.next,
                to = start,
                "a disk bound deleted records before this reader read them; moving on to the log start"
            );
            self.next = start;
        }
    }

    /// Finds the segment and a byte position at or before `self.next`.
    fn locate(&self) -> Result<(Arc<Segment>, u64)> {
        self.shared.check_range(self.next)?;
        let segs = self.shared.snapshot();
        let i = segs.partition_point(|s| s.base_offset <= self.next);
        let Some(seg) = i.checked_sub(1).map(|i| segs[i].clone()) else {
            return Err(Error::OffsetOutOfRange {
                offset: self.next,
                log_start: self.shared.log_start.load(Ordering::Acquire),
                log_end: self.shared.end.load(Ordering::Acquire),
            });
        };
        let rel = (self.next - seg.base_offset).min(u64::from(u32::MAX)) as u32;
        let pos = seg
            .index
            .read()
            .expect("index lock poisoned")
            .floor_offset(rel)
            .map_or(format::SEGMENT_HEADER_LEN as u64, |(_, p)| u64::from(p));
        Ok((seg, pos))
    }
}

impl Drop for Reader {
    /// Gives back the pages this reader still holds.
    fn drop(&mut self) {
        if let Some(h) = self.held.take() {
            h.seg.release(h.from, h.to);
        }
    }
}

/// Marks a reader as about to sleep on `appended` while alive.
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

fn corruption(seg: &Segment, offset: u64, position: u64, e: &BatchError) -> Error {
    let reason = match e {
        BatchError::End => "batch length is zero inside the published data".to_string(),
        BatchError::Truncated => "batch runs past the end of the data".to_string(),
        BatchError::Invalid(r) => (*r).to_string(),
    };
    Error::Corruption {
        path: seg.path().to_path_buf(),
        offset,
        position,
        reason,
    }
}

/// Walks batch headers of `seg` from `pos`, calling `stop` on each until it
/// says so; returns the header and position where it stopped. Headers only,
/// for seeks: whoever reads the batch then checks its CRC.
fn walk(
    seg: &Segment,
    mut pos: u64,
    mut stop: impl FnMut(&BatchHeader) -> bool,
) -> Result<Option<(BatchHeader, u64)>> {
    let len = seg.data_len();
    while pos < len {
        let bytes = seg.bytes(pos, len);
        let h = format::parse_batch_header(bytes)
            .map_err(|e| corruption(seg, seg.base_offset, pos, &e))?;
        if stop(&h) {
            return Ok(Some((h, pos)));
        }
        pos += u64::from(h.length);
    }
    Ok(None)
}

pub(crate) fn offset_for_time(shared: &Shared, t: i64) -> Result<u64> {
    let segs = shared.snapshot();
    let log_start = shared.log_start.load(Ordering::Acquire);
    // The first segment holding a record at or after `t`.
    let Some(seg) = segs
        .iter()
        .find(|s| !s.is_empty() && s.last_arrival() >= t && s.next_offset() > log_start)
    else {
        return Ok(shared.end.load(Ordering::Acquire));
    };
    if seg.first_arrival() >= t {
        return Ok(seg.base_offset.max(log_start));
    }
    let pos = {
        let ix = seg.index.read().expect("index lock poisoned");
        ix.floor_offset(ix.floor_time(t))
            .map_or(format::SEGMENT_HEADER_LEN as u64, |(_, p)| u64::from(p))
    };
    match walk(seg, pos, |h| h.arrival_us >= t)? {
        Some((h, _)) => Ok(h.base_offset.max(log_start)),
        None => Ok(seg.next_offset()),
    }
}

/// The byte position and arrival time of the batch holding `offset` in
/// `seg`, found through the sparse index.
pub(crate) fn locate_batch(seg: &Segment, offset: u64) -> Result<(u64, i64)> {
    let rel = (offset - seg.base_offset).min(u64::from(u32::MAX)) as u32;
    let pos = seg
        .index
        .read()
        .expect("index lock poisoned")
        .floor_offset(rel)
        .map_or(format::SEGMENT_HEADER_LEN as u64, |(_, p)| u64::from(p));
    match walk(seg, pos, |h| h.next_offset() > offset)? {
        Some((h, pos)) => Ok((pos, h.arrival_us)),
        None => Err(Error::Corruption {
            path: seg.path().to_path_buf(),
            offset,
            position: seg.data_len(),
            reason: "offset not found in its segment".into(),
        }),
    }
}
