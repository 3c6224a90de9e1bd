//! Raw access for the offline inspection tool (`edgepipe wal verify`).
//! Enabled by the `internals` feature; not a stable API.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{self, FileKind, FileName, SEGMENT_HEADER_LEN};
use crate::recovery;
use crate::segment::Segment;
use crate::DEFAULT_INDEX_INTERVAL_BYTES;

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The damaged file.
    pub path: PathBuf,
    /// The first offset affected.
    pub offset: u64,
    /// The byte position in `path`.
    pub position: u64,
    /// What check failed.
    pub reason: String,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: u64,
    /// Records whose batch passed its CRC.
    pub records: u64,
    /// Bytes of the record batches checked (batch headers included, segment
    /// headers not): the sum of the segments'
    /// [`SegmentInfo::record_bytes`](crate::SegmentInfo::record_bytes).
    pub record_bytes: u64,
    /// Problems, in log order; the first is where the intact log ends.
    pub problems: Vec<Problem>,
}

/// Checks every batch of every segment in `dir` (CRC, framing, offset
/// continuity, arrival order) and every index file present against the
/// segment. Read-only; safe beside a running writer (whose in-flight tail
/// may then show as a torn batch).
///
/// # Errors
/// I/O errors listing or mapping files.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let bases = recovery::list_segments(dir)?;
    let mut expected: Option<u64> = None;
    let mut prev_arrival = i64::MIN;
    for &base in &bases {
        let path = FileName::build(dir, base, FileKind::Log);
        report.segments += 1;
        if let Some(e) = expected {
            if e != base {
                report.problems.push(Problem {
                    path: path.clone(),
                    offset: e,
                    position: 0,
                    reason: format!(
                        "segment starts at offset {base}, the previous one ends at {e}"
                    ),
                });
            }
        }
        let seg = Segment::open(&path, base, false)?;
        let scan = recovery::scan(&seg, 0, 0, DEFAULT_INDEX_INTERVAL_BYTES, prev_arrival);
        report.records += scan.meta.next_offset - base;
        report.record_bytes += scan.meta.data_len.saturating_sub(SEGMENT_HEADER_LEN as u64);
        if let Some(d) = &scan.damage {
            report.problems.push(Problem {
                path: path.clone(),
                offset: d.offset,
                position: d.position,
                reason: d.reason.clone(),
            });
        }
        let has_index = FileName::build(dir, base, FileKind::OffsetIndex).exists()
            || FileName::build(dir, base, FileKind::TimeIndex).exists();
        if has_index {
            if let Some(reason) = check_index(&seg, &scan) {
                report.problems.push(Problem {
                    path: FileName::build(dir, base, FileKind::OffsetIndex),
                    offset: base,
                    position: 0,
                    reason,
                });
            }
        }
        prev_arrival = prev_arrival.max(scan.meta.last_arrival_us);
        expected = Some(scan.meta.next_offset);
    }
    Ok(report)
}

/// Compares a segment's index files with what a scan found. Index files of
/// the active segment describe it as of the last clean close, so they may
/// cover a prefix of the data; their entries must still point at batches.
fn check_index(seg: &Segment, scan: &recovery::Scan) -> Option<String> {
    let (meta, index) = match seg.load_index_files() {
        Ok(x) => x,
        Err(reason) => return Some(reason),
    };
    if meta.data_len > scan.meta.data_len || meta.next_offset > scan.meta.next_offset {
        return Some(format!(
            "index covers offsets up to {} and {} bytes; the segment holds {} and {}",
            meta.next_offset, meta.data_len, scan.meta.next_offset, scan.meta.data_len
        ));
    }
    let raw = seg.raw();
    for &(rel, pos) in &index.offsets {
        match format::parse_batch_header(&raw[pos as usize..]) {
            Ok(h) if h.base_offset == seg.base_offset + u64::from(rel) => {}
            _ => {
                return Some(format!(
                    "offset index entry ({rel}, {pos}) does not point at the batch of offset {}",
                    seg.base_offset + u64::from(rel)
                ))
            }
        }
    }
    let starts: Vec<(u64, i64, u64)> = batches(raw, meta.data_len);
    for &(t, rel) in &index.times {
        let off = seg.base_offset + u64::from(rel);
        // The entry's offset must start a batch with arrival `t`, and every
        // earlier batch must have arrived strictly before `t`.
        let ok = starts.iter().any(|&(b, a, _)| b == off && a == t)
            && starts
                .iter()
                .filter(|&&(b, _, _)| b < off)
                .all(|&(_, a, _)| a < t);
        if !ok {
            return Some(format!(
                "time index entry ({t}, {rel}) is not the first offset at or after its time"
            ));
        }
    }
    None
}

/// `(base offset, arrival, position)` of every batch header in `raw` below
/// `data_len`.
fn batches(raw: &[u8], data_len: u64) -> Vec<(u64, i64, u64)> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as u64;
    while pos < data_len {
        match format::parse_batch_header(&raw[pos as usize..data_len as usize]) {
            Ok(h) => {
                out.push((h.base_offset, h.arrival_us, pos));
                pos += u64::from(h.length);
            }
            Err(_) => break,
        }
    }
    out
}
