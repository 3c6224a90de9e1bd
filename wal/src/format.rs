//! File names and byte layouts of everything the log writes.
//!
//! All integers are little-endian. **Do not add, remove, retype or reorder
//! fields**: bump the version of the structure instead, and teach the reader
//! the old one.
//!
//! # Segment file `<base offset, 20 digits>.log`
//!
//! Preallocated to `segment-bytes` and memory-mapped; zero bytes after the
//! last batch mark the end of the written data. A sealed segment keeps its
//! preallocated length (a read-only reader may have mapped all of it).
//! Small batches are copied into the mapping, large ones written with
//! `pwritev`; the bytes are the same.
//!
//! ```text
//! segment header (16 bytes)
//!   0  [8]  magic          "EPWALSEG"
//!   8  u32  version        1
//!   12 u32  reserved       0
//! batch*                   back to back, no padding
//! ```
//!
//! # Batch (one append; one header and one CRC for all its records)
//!
//! ```text
//!   0  u32  length         whole batch in bytes, header included (>= 37)
//!   4  u32  crc32          crc32 (IEEE) of bytes [8, length)
//!   8  u64  base offset    offset of the first record
//!   16 i64  arrival time   µs since the Unix epoch, shared by all records
//!   24 u32  record count   >= 1
//!   28 u8   magic          0xEB (batch format 1)
//!   29 u8   attributes     0
//!   30 u16  reserved       0
//!   32 record*             record count times:
//!        u32  payload length
//!        u8   kind         opaque to the log
//!        [payload length]  payload
//! ```
//!
//! The CRC covers everything after itself, so a torn header, a torn payload
//! and a zeroed length are all caught. A length of zero where a batch is
//! expected is the end of the written data.
//!
//! # Index files `<base>.index` and `<base>.timeindex`
//!
//! Written whole (temporary file, fsync, rename) when a segment is sealed and
//! for the active segment at clean close:
//!
//! ```text
//!   0  [8]  magic          "EPWALIDX" (offset index) / "EPWALTIX" (time index)
//!   8  u32  version        1
//!   12 u32  entry count
//!   16 u64  base offset    of the segment
//!   24 u64  next offset    one past the segment's last record
//!   32 u64  data length    bytes of the segment in use, header included
//!   40 i64  first arrival  µs, i64::MIN when the segment is empty
//!   48 i64  last arrival   µs, i64::MIN when the segment is empty
//!   56 u32  reserved       0
//!   60 u32  crc32          of bytes [0, 60) and all entries
//!   64 entries
//!        offset index: u32 offset - base, u32 byte position of that batch
//!        time index:   i64 arrival time, u32 offset - base of the first batch
//!                      with that arrival time or later
//! ```
//!
//! # Recovery point `recovery-point` (64 bytes, replaced atomically)
//!
//! ```text
//!   0  [8]  magic          "EPWALCKP"
//!   8  u32  version        1
//!   12 u8   clean          1 after a clean close, 0 while a writer runs
//!   13 [3]  reserved       0
//!   16 u64  log start      first offset not deleted by retention
//!   24 u64  recovery offset  every offset below it is durable
//!   32 u64  segment base   segment holding the recovery offset
//!   40 u64  position       byte where the recovery offset's batch begins
//!   48 i64  last arrival   µs of the last durable record (i64::MIN if none)
//!   56 u32  reserved       0
//!   60 u32  crc32          of bytes [0, 60)
//! ```
//!
//! # Consumer ledger `consumers` (replaced atomically, fsynced at commit)
//!
//! ```text
//!   0  [8]  magic          "EPWALCON"
//!   8  u32  version        1
//!   12 u32  consumer count
//!   16 consumer*:
//!        u16  name length, [name length] UTF-8 name
//!        u64  committed offset (the next offset the consumer will read)
//!        u32  lost range count, then (u64 from, u64 to) per range
//!   ... u32 crc32 of every byte before it
//! ```

use std::path::{Path, PathBuf};

/// Length of the segment file header.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Length of a batch header.
pub const BATCH_HEADER_LEN: usize = 32;
/// Length of a record header inside a batch.
pub const RECORD_HEADER_LEN: usize = 5;
/// Length of an index file header.
pub const INDEX_HEADER_LEN: usize = 64;
/// Length of the recovery-point file.
pub const CHECKPOINT_LEN: usize = 64;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"EPWALSEG";
pub(crate) const OFFSET_INDEX_MAGIC: &[u8; 8] = b"EPWALIDX";
pub(crate) const TIME_INDEX_MAGIC: &[u8; 8] = b"EPWALTIX";
pub(crate) const CHECKPOINT_MAGIC: &[u8; 8] = b"EPWALCKP";
pub(crate) const LEDGER_MAGIC: &[u8; 8] = b"EPWALCON";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const BATCH_MAGIC: u8 = 0xEB;

/// Name of the recovery-point file.
pub const CHECKPOINT_FILE: &str = "recovery-point";
/// Name of the consumer ledger.
pub const LEDGER_FILE: &str = "consumers";
/// Name of the writer lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The kinds of file that belong to a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.log`: the records.
    Log,
    /// `.index`: offset → byte position.
    OffsetIndex,
    /// `.timeindex`: arrival time → offset.
    TimeIndex,
}

impl FileKind {
    fn extension(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::OffsetIndex => "index",
            FileKind::TimeIndex => "timeindex",
        }
    }
}

/// Builds and parses segment file names: a 20-digit zero-padded base offset
/// plus an extension, so names sort as offsets do.
pub struct FileName;

impl FileName {
    /// The path of a segment's file of `kind` in `dir`.
    pub fn build(dir: &Path, base_offset: u64, kind: FileKind) -> PathBuf {
        dir.join(format!("{base_offset:020}.{}", kind.extension()))
    }

    /// The base offset and kind of a file name, or `None` for other files.
    pub fn parse(name: &str) -> Option<(u64, FileKind)> {
        let (stem, ext) = name.split_once('.')?;
        let kind = match ext {
            "log" => FileKind::Log,
            "index" => FileKind::OffsetIndex,
            "timeindex" => FileKind::TimeIndex,
            _ => return None,
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((stem.parse().ok()?, kind))
    }
}

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks a segment header; returns a reason when it is not ours.
pub(crate) fn check_segment_header(h: &[u8]) -> Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the segment header",
            h.len()
        ));
    }
    if &h[..8] != SEGMENT_MAGIC {
        return Err("bad segment magic (not an edgepipe segment)".into());
    }
    let v = le_u32(h, 8);
    if v != FORMAT_VERSION {
        return Err(format!(
            "segment format version {v}, this build reads {FORMAT_VERSION}"
        ));
    }
    Ok(())
}

#[inline]
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
pub(crate) fn le_i64(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Whole batch length in bytes.
    pub length: u32,
    /// Stored checksum.
    pub crc: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Arrival time of every record in the batch, µs since the epoch.
    pub arrival_us: i64,
    /// Number of records.
    pub record_count: u32,
}

impl BatchHeader {
    /// One past the batch's last offset.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// Why bytes at a position are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// A zero length: the end of the written data.
    End,
    /// Too few bytes left for the header or the length it claims.
    Truncated,
    /// The bytes are not a valid batch; the reason says which check failed.
    Invalid(&'static str),
}

/// Bytes needed to encode a batch of records with these payload lengths.
pub fn batch_len<'a>(payload_lens: impl Iterator<Item = &'a [u8]>) -> usize {
    BATCH_HEADER_LEN
        + payload_lens
            .map(|p| RECORD_HEADER_LEN + p.len())
            .sum::<usize>()
}

/// Encodes a batch into `out`, which must be exactly the batch's length.
/// Returns the header.
pub(crate) fn encode_batch(
    out: &mut [u8],
    base_offset: u64,
    arrival_us: i64,
    records: &[(u8, &[u8])],
) -> BatchHeader {
    let length = out.len();
    out[8..16].copy_from_slice(&base_offset.to_le_bytes());
    out[16..24].copy_from_slice(&arrival_us.to_le_bytes());
    out[24..28].copy_from_slice(&(records.len() as u32).to_le_bytes());
    out[28] = BATCH_MAGIC;
    out[29] = 0;
    out[30..32].copy_from_slice(&[0, 0]);
    let mut at = BATCH_HEADER_LEN;
    for (kind, payload) in records {
        out[at..at + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        out[at + 4] = *kind;
        at += RECORD_HEADER_LEN;
        out[at..at + payload.len()].copy_from_slice(payload);
        at += payload.len();
    }
    debug_assert_eq!(at, length);
    let crc = crc32fast::hash(&out[8..length]);
    out[0..4].copy_from_slice(&(length as u32).to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    BatchHeader {
        length: length as u32,
        crc,
        base_offset,
        arrival_us,
        record_count: records.len() as u32,
    }
}

/// The same batch as [`encode_batch`], as the parts that go around the
/// payloads: the batch header and one header per record, so that the
/// payloads can be written from where they are (`pwritev`). `length` is
/// [`batch_len`] of the records.
pub(crate) fn encode_batch_heads(
    length: usize,
    base_offset: u64,
    arrival_us: i64,
    records: &[(u8, &[u8])],
) -> (
    BatchHeader,
    [u8; BATCH_HEADER_LEN],
    Vec<[u8; RECORD_HEADER_LEN]>,
) {
    let mut head = [0u8; BATCH_HEADER_LEN];
    head[8..16].copy_from_slice(&base_offset.to_le_bytes());
    head[16..24].copy_from_slice(&arrival_us.to_le_bytes());
    head[24..28].copy_from_slice(&(records.len() as u32).to_le_bytes());
    head[28] = BATCH_MAGIC;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[8..]);
    let mut heads = Vec::with_capacity(records.len());
    for (kind, payload) in records {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[4] = *kind;
        crc.update(&h);
        crc.update(payload);
        heads.push(h);
    }
    let crc = crc.finalize();
    head[0..4].copy_from_slice(&(length as u32).to_le_bytes());
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    let header = BatchHeader {
        length: length as u32,
        crc,
        base_offset,
        arrival_us,
        record_count: records.len() as u32,
    };
    (header, head, heads)
}

/// Parses the header at the start of `b` without checking the CRC.
/// Cheap: used to walk batches whose contents are already trusted.
pub fn parse_batch_header(b: &[u8]) -> Result<BatchHeader, BatchError> {
    if b.len() < 4 {
        return Err(if b.iter().all(|&x| x == 0) {
            BatchError::End
        } else {
            BatchError::Truncated
        });
    }
    let length = le_u32(b, 0);
    if length == 0 {
        return Err(BatchError::End);
    }
    if b.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    if b[28] != BATCH_MAGIC {
        return Err(BatchError::Invalid("bad batch magic"));
    }
    let record_count = le_u32(b, 24);
    if record_count == 0 {
        return Err(BatchError::Invalid("batch with zero records"));
    }
    let min = BATCH_HEADER_LEN as u64 + u64::from(record_count) * RECORD_HEADER_LEN as u64;
    if u64::from(length) < min {
        return Err(BatchError::Invalid(
            "batch length too small for its record count",
        ));
    }
    if length as usize > b.len() {
        return Err(BatchError::Truncated);
    }
    Ok(BatchHeader {
        length,
        crc: le_u32(b, 4),
        base_offset: le_u64(b, 8),
        arrival_us: le_i64(b, 16),
        record_count,
    })
}

/// Parses and fully checks the batch at the start of `b`: header, CRC and
/// record framing.
pub fn check_batch(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_batch_header(b)?;
    let body = &b[..h.length as usize];
    if crc32fast::hash(&body[8..]) != h.crc {
        return Err(BatchError::Invalid("crc mismatch"));
    }
    let mut at = BATCH_HEADER_LEN;
    for _ in 0..h.record_count {
        if at + RECORD_HEADER_LEN > body.len() {
            return Err(BatchError::Invalid("record header past the batch end"));
        }
        let len = le_u32(body, at) as usize;
        at += RECORD_HEADER_LEN;
        if len > body.len() - at {
            return Err(BatchError::Invalid("record payload past the batch end"));
        }
        at += len;
    }
    if at != body.len() {
        return Err(BatchError::Invalid("bytes left over after the last record"));
    }
    Ok(h)
}

/// Iterates `(kind, payload)` over the records of a checked batch.
pub(crate) struct RecordIter<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> RecordIter<'a> {
    pub(crate) fn new(batch: &'a [u8]) -> Self {
        RecordIter {
            body: batch,
            at: BATCH_HEADER_LEN,
        }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.body.len() {
            return None;
        }
        let len = le_u32(self.body, self.at) as usize;
        let kind = self.body[self.at + 4];
        let start = self.at + RECORD_HEADER_LEN;
        self.at = start + len;
        Some((kind, &self.body[start..start + len]))
    }
}

/// The metadata kept in both index file headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// First offset of the segment.
    pub base_offset: u64,
    /// One past the last offset.
    pub next_offset: u64,
    /// Bytes in use, segment header included.
    pub data_len: u64,
    /// Arrival time of the first record (µs), `i64::MIN` if empty.
    pub first_arrival_us: i64,
    /// Arrival time of the last record (µs), `i64::MIN` if empty.
    pub last_arrival_us: i64,
}

pub(crate) fn encode_index_file(
    magic: &[u8; 8],
    meta: &SegmentMeta,
    count: usize,
    entries: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&meta.base_offset.to_le_bytes());
    out.extend_from_slice(&meta.next_offset.to_le_bytes());
    out.extend_from_slice(&meta.data_len.to_le_bytes());
    out.extend_from_slice(&meta.first_arrival_us.to_le_bytes());
    out.extend_from_slice(&meta.last_arrival_us.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out);
    h.update(entries);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(entries);
    out
}

/// Decodes an index file; returns the metadata and the entry bytes.
pub(crate) fn decode_index_file<'a>(
    magic: &[u8; 8],
    entry_len: usize,
    b: &'a [u8],
) -> Result<(SegmentMeta, &'a [u8]), String> {
    if b.len() < INDEX_HEADER_LEN {
        return Err(format!("{} bytes, shorter than the index header", b.len()));
    }
    if &b[..8] != magic {
        return Err("bad index magic".into());
    }
    let v = le_u32(b, 8);
    if v != FORMAT_VERSION {
        return Err(format!(
            "index format version {v}, this build reads {FORMAT_VERSION}"
        ));
    }
    let count = le_u32(b, 12) as usize;
    let entries = &b[INDEX_HEADER_LEN..];
    if entries.len() != count * entry_len {
        return Err(format!(
            "{} entry bytes for {count} entries of {entry_len} bytes",
            entries.len()
        ));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..60]);
    h.update(entries);
    if h.finalize() != le_u32(b, 60) {
        return Err("index crc mismatch".into());
    }
    let meta = SegmentMeta {
        base_offset: le_u64(b, 16),
        next_offset: le_u64(b, 24),
        data_len: le_u64(b, 32),
        first_arrival_us: le_i64(b, 40),
        last_arrival_us: le_i64(b, 48),
    };
    Ok((meta, entries))
}

/// The recovery-point checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Whether the writer closed cleanly.
    pub clean: bool,
    /// First offset not deleted by retention.
    pub log_start: u64,
    /// Every offset below this is durable.
    pub recovery_offset: u64,
    /// Segment holding the recovery offset.
    pub segment_base: u64,
    /// Byte position in that segment where the recovery offset begins.
    pub position: u64,
    /// Arrival time of the last durable record, `i64::MIN` if none.
    pub last_arrival_us: i64,
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[..8].copy_from_slice(CHECKPOINT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12] = u8::from(self.clean);
        b[16..24].copy_from_slice(&self.log_start.to_le_bytes());
        b[24..32].copy_from_slice(&self.recovery_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.segment_base.to_le_bytes());
        b[40..48].copy_from_slice(&self.position.to_le_bytes());
        b[48..56].copy_from_slice(&self.last_arrival_us.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Checkpoint, String> {
        if b.len() != CHECKPOINT_LEN {
            return Err(format!("{} bytes, expected {CHECKPOINT_LEN}", b.len()));
        }
        if &b[..8] != CHECKPOINT_MAGIC {
            return Err("bad checkpoint magic".into());
        }
        if crc32fast::hash(&b[..60]) != le_u32(b, 60) {
            return Err("checkpoint crc mismatch".into());
        }
        let v = le_u32(b, 8);
        if v != FORMAT_VERSION {
            return Err(format!(
                "checkpoint format version {v}, this build reads {FORMAT_VERSION}"
            ));
        }
        Ok(Checkpoint {
            clean: b[12] == 1,
            log_start: le_u64(b, 16),
            recovery_offset: le_u64(b, 24),
            segment_base: le_u64(b, 32),
            position: le_u64(b, 40),
            last_arrival_us: le_i64(b, 48),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_heads_and_payloads_are_the_encoded_batch() {
        let records: Vec<(u8, &[u8])> = vec![(1, b"abc"), (7, b""), (3, &[9u8; 300])];
        let len = batch_len(records.iter().map(|r| r.1));
        let mut whole = vec![0u8; len];
        let h1 = encode_batch(&mut whole, 42, 1_700_000_000_000_000, &records);
        let (h2, head, heads) = encode_batch_heads(len, 42, 1_700_000_000_000_000, &records);
        let mut parts = head.to_vec();
        for (h, (_, p)) in heads.iter().zip(&records) {
            parts.extend_from_slice(h);
            parts.extend_from_slice(p);
        }
        assert_eq!(parts, whole);
        assert_eq!(h1, h2);
        assert_eq!(check_batch(&parts).unwrap(), h1);
    }

    #[test]
    fn file_name_round_trip() {
        let p = FileName::build(Path::new("/d"), 921, FileKind::Log);
        assert_eq!(p, Path::new("/d/00000000000000000921.log"));
        for kind in [FileKind::Log, FileKind::OffsetIndex, FileKind::TimeIndex] {
            for base in [0, 1, 921, u64::MAX] {
                let p = FileName::build(Path::new("x"), base, kind);
                let name = p.file_name().unwrap().to_str().unwrap();
                assert_eq!(FileName::parse(name), Some((base, kind)));
            }
        }
        assert_eq!(FileName::parse("LOCK"), None);
        assert_eq!(FileName::parse("0001.log"), None);
        assert_eq!(FileName::parse("0000000000000000000a.log"), None);
        assert_eq!(FileName::parse("00000000000000000001.log.tmp"), None);
    }

    #[test]
    fn batch_round_trip_and_every_byte_checked() {
        let recs: Vec<(u8, &[u8])> = vec![(1, b"hello"), (2, b""), (7, b"world!")];
        let len = batch_len(recs.iter().map(|r| r.1));
        let mut buf = vec![0u8; len];
        let h = encode_batch(&mut buf, 42, 1_000, &recs);
        assert_eq!(check_batch(&buf), Ok(h));
        assert_eq!(h.next_offset(), 45);
        let got: Vec<_> = RecordIter::new(&buf).collect();
        assert_eq!(got, recs);
        // Any single bit flip anywhere is caught.
        for i in 0..len {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                assert!(
                    check_batch(&b).is_err(),
                    "flip at byte {i} bit {bit} not caught"
                );
            }
        }
        // Any truncation is caught.
        for cut in 0..len {
            assert!(check_batch(&buf[..cut]).is_err());
        }
        assert_eq!(check_batch(&[0u8; 64]), Err(BatchError::End));
    }

    #[test]
    fn checkpoint_round_trip() {
        let c = Checkpoint {
            clean: true,
            log_start: 5,
            recovery_offset: 99,
            segment_base: 64,
            position: 4096,
            last_arrival_us: -3,
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Ok(c));
        let mut d = b;
        d[30] ^= 4;
        assert!(Checkpoint::decode(&d).is_err());
    }

    #[test]
    fn index_file_round_trip() {
        let meta = SegmentMeta {
            base_offset: 10,
            next_offset: 20,
            data_len: 999,
            first_arrival_us: 1,
            last_arrival_us: 2,
        };
        let entries = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let f = encode_index_file(OFFSET_INDEX_MAGIC, &meta, 1, &entries);
        let (m, e) = decode_index_file(OFFSET_INDEX_MAGIC, 8, &f).unwrap();
        assert_eq!((m, e), (meta, &entries[..]));
        assert!(decode_index_file(TIME_INDEX_MAGIC, 8, &f).is_err());
        let mut g = f.clone();
        g[70] ^= 1;
        assert!(decode_index_file(OFFSET_INDEX_MAGIC, 8, &g).is_err());
    }
}
