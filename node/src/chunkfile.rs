//! Chunk files: what a flush writes. One file per flush, holding for each
//! series its points of that flush, sorted by time, one per timestamp.
//! Files are immutable, memory-mapped for reading, and found by binary
//! search on the times.
//!
//! ```text
//! [8]  magic "EPCHUNK1"
//! per series (8-byte aligned):
//!   count × i64 LE            times, strictly increasing
//!   values                    BOOLEAN u8, INT32 i32, INT64 i64, FLOAT f32,
//!                             DOUBLE f64 (LE); TEXT: (count+1) × u32 offsets
//!                             into the bytes that follow
//! index: per series
//!   u16 path length, path, u8 type, u64 times offset, u32 count,
//!   u64 values offset, u64 values length, i64 min time, i64 max time
//! footer (24 bytes): u64 index offset, u32 index length, u32 crc32 of the
//!   index, [8] magic "EPCHUNKE"
//! ```
//! The file is written under a temporary name, fsynced and renamed, so a
//! reader never sees half a file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use protocol::tablet::Column;
use protocol::types::DataType;

const MAGIC: &[u8; 8] = b"EPCHUNK1";
const END_MAGIC: &[u8; 8] = b"EPCHUNKE";

/// Where one series' points sit in a chunk file.
#[derive(Debug, Clone)]
pub struct ChunkMeta {
    /// The series path.
    pub path: String,
    /// Its type.
    pub data_type: DataType,
    times_off: usize,
    /// Number of points.
    pub count: usize,
    values_off: usize,
    values_len: usize,
    /// Smallest time.
    pub min: i64,
    /// Largest time.
    pub max: i64,
}

/// An open, mapped chunk file.
pub struct ChunkFile {
    /// Flush sequence number (the file name).
    pub seq: u64,
    path: PathBuf,
    map: Mmap,
    /// The series it holds.
    pub chunks: Vec<ChunkMeta>,
}

impl std::fmt::Debug for ChunkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkFile")
            .field("path", &self.path)
            .field("series", &self.chunks.len())
            .finish()
    }
}

/// The file name of flush `seq`.
pub fn file_name(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.chunks"))
}

/// A file being written, with its position (so offsets need no buffer of
/// the whole file).
struct Out {
    w: std::io::BufWriter<File>,
    pos: usize,
}

impl Out {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.pos += b.len();
        self.w.write_all(b)
    }

    /// Writes fixed-width values as little-endian bytes, a block at a time.
    fn put_le<T: Copy, const N: usize>(
        &mut self,
        v: &[T],
        f: impl Fn(T) -> [u8; N],
    ) -> std::io::Result<()> {
        let mut block = [0u8; 8192];
        for chunk in v.chunks(8192 / N) {
            for (i, &x) in chunk.iter().enumerate() {
                block[i * N..(i + 1) * N].copy_from_slice(&f(x));
            }
            self.put(&block[..chunk.len() * N])?;
        }
        Ok(())
    }

    fn pad8(&mut self) -> std::io::Result<()> {
        let n = (8 - self.pos % 8) % 8;
        self.put(&[0u8; 8][..n])
    }
}

/// Writes flush `seq` holding `series`: `(path, times, values)`, times
/// strictly increasing. Streams through a small buffer (no copy of the whole
/// file in memory). Durable when this returns.
///
/// # Errors
/// I/O errors, as strings naming the file.
pub fn write(dir: &Path, seq: u64, series: &[(&str, &[i64], &Column)]) -> Result<PathBuf, String> {
    let path = file_name(dir, seq);
    let tmp = path.with_extension("chunks.tmp");
    let io = |op: &str, e: std::io::Error| format!("{}: {op}: {e}", tmp.display());
    let f = File::create(&tmp).map_err(|e| io("create", e))?;
    let mut out = Out {
        w: std::io::BufWriter::with_capacity(1 << 20, f),
        pos: 0,
    };
    let mut index = Vec::new();
    let body = (|| -> std::io::Result<()> {
        out.put(MAGIC)?;
        for &(path, times, values) in series {
            out.pad8()?;
            let times_off = out.pos;
            out.put_le(times, i64::to_le_bytes)?;
            let values_off = out.pos;
            match values {
                Column::Boolean(v) => out.put_le(v, |b| [u8::from(b)])?,
                Column::Int32(v) => out.put_le(v, i32::to_le_bytes)?,
                Column::Int64(v) => out.put_le(v, i64::to_le_bytes)?,
                Column::Float(v) => out.put_le(v, f32::to_le_bytes)?,
                Column::Double(v) => out.put_le(v, f64::to_le_bytes)?,
                Column::Text(v) => {
                    let mut offs = Vec::with_capacity(v.len() + 1);
                    let mut off = 0u32;
                    offs.push(off);
                    for s in v {
                        off += s.len() as u32;
                        offs.push(off);
                    }
                    out.put_le(&offs, u32::to_le_bytes)?;
                    for s in v {
                        out.put(s)?;
                    }
                }
            }
            let values_len = out.pos - values_off;
            index.extend_from_slice(&(path.len() as u16).to_le_bytes());
            index.extend_from_slice(path.as_bytes());
            index.push(values.data_type() as u8);
            index.extend_from_slice(&(times_off as u64).to_le_bytes());
            index.extend_from_slice(&(times.len() as u32).to_le_bytes());
            index.extend_from_slice(&(values_off as u64).to_le_bytes());
            index.extend_from_slice(&(values_len as u64).to_le_bytes());
            index.extend_from_slice(&times.first().copied().unwrap_or(0).to_le_bytes());
            index.extend_from_slice(&times.last().copied().unwrap_or(0).to_le_bytes());
        }
        let index_off = out.pos;
        out.put(&index)?;
        out.put(&(index_off as u64).to_le_bytes())?;
        out.put(&(index.len() as u32).to_le_bytes())?;
        out.put(&crc32fast::hash(&index).to_le_bytes())?;
        out.put(END_MAGIC)
    })();
    body.map_err(|e| io("write", e))?;
    let f = out
        .w
        .into_inner()
        .map_err(|e| io("write", e.into_error()))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: rename: {e}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: fsync directory: {e}", dir.display()))?;
    Ok(path)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8"))
}

impl ChunkFile {
    /// Maps and indexes a chunk file.
    ///
    /// # Errors
    /// I/O errors and damage (bad magic, index CRC, out-of-range offsets),
    /// naming the file.
    pub fn open(path: &Path, seq: u64) -> Result<Arc<ChunkFile>, String> {
        let bad = |m: &str| format!("{}: {m}", path.display());
        let file = File::open(path).map_err(|e| bad(&format!("open: {e}")))?;
        // SAFETY: chunk files are immutable once renamed into place, and
        // only this process writes the directory (the node holds the
        // change log's writer lock); nothing truncates a mapped file.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| bad(&format!("mmap: {e}")))?;
        let b = &map[..];
        if b.len() < 32 || &b[..8] != MAGIC || &b[b.len() - 8..] != END_MAGIC {
            return Err(bad("not a complete chunk file (bad magic)"));
        }
        let f = b.len() - 24;
        let index_off = le_u64(b, f) as usize;
        let index_len = u32::from_le_bytes(b[f + 8..f + 12].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(b[f + 12..f + 16].try_into().expect("4"));
        if index_off.checked_add(index_len) != Some(f) {
            return Err(bad("index offsets do not match the file length"));
        }
        let index = &b[index_off..f];
        if crc32fast::hash(index) != crc {
            return Err(bad("index crc mismatch"));
        }
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < index.len() {
            let need = |at: usize, n: usize| {
                if at + n <= index.len() {
                    Ok(())
                } else {
                    Err(bad("index entry cut short"))
                }
            };
            need(at, 2)?;
            let n = u16::from_le_bytes(index[at..at + 2].try_into().expect("2")) as usize;
            at += 2;
            need(at, n + 1 + 8 + 4 + 8 + 8 + 16)?;
            let p = String::from_utf8(index[at..at + n].to_vec())
                .map_err(|_| bad("series path is not UTF-8"))?;
            at += n;
            let data_type = DataType::from_id(i32::from(index[at])).map_err(|e| bad(&e))?;
            at += 1;
            let times_off = le_u64(index, at) as usize;
            let count = u32::from_le_bytes(index[at + 8..at + 12].try_into().expect("4")) as usize;
            let values_off = le_u64(index, at + 12) as usize;
            let values_len = le_u64(index, at + 20) as usize;
            let min = le_u64(index, at + 28) as i64;
            let max = le_u64(index, at + 36) as i64;
            at += 44;
            let width = match data_type {
                DataType::Boolean => Some(1),
                DataType::Int32 | DataType::Float => Some(4),
                DataType::Int64 | DataType::Double => Some(8),
                DataType::Text => None,
            };
            let ok = times_off + count * 8 == values_off
                && values_off + values_len <= index_off
                && width.is_none_or(|w| w * count == values_len)
                && (width.is_some() || values_len >= (count + 1) * 4);
            if !ok {
                return Err(bad(&format!("index entry of {p} is out of range")));
            }
            chunks.push(ChunkMeta {
                path: p,
                data_type,
                times_off,
                count,
                values_off,
                values_len,
                min,
                max,
            });
        }
        Ok(Arc::new(ChunkFile {
            seq,
            path: path.to_path_buf(),
            map,
            chunks,
        }))
    }

    /// The time of point `i` of `c`.
    pub fn time(&self, c: &ChunkMeta, i: usize) -> i64 {
        le_u64(&self.map, c.times_off + i * 8) as i64
    }

    /// The index range of `c`'s points with times in `[lo, hi]`.
    pub fn range(&self, c: &ChunkMeta, lo: i64, hi: i64) -> std::ops::Range<usize> {
        let first = partition(c.count, |i| self.time(c, i) < lo);
        let end = partition(c.count, |i| self.time(c, i) <= hi);
        first..end.max(first)
    }

    /// Appends points `r` of `c` to `times` and `out`.
    pub fn read(
        &self,
        c: &ChunkMeta,
        r: std::ops::Range<usize>,
        times: &mut Vec<i64>,
        out: &mut Column,
    ) {
        let b = &self.map[..];
        for i in r.clone() {
            times.push(self.time(c, i));
        }
        let v = &b[c.values_off..c.values_off + c.values_len];
        match out {
            Column::Boolean(o) => o.extend(v[r].iter().map(|&x| x != 0)),
            Column::Int32(o) => {
                o.extend(r.map(|i| i32::from_le_bytes(v[i * 4..i * 4 + 4].try_into().expect("4"))))
            }
            Column::Int64(o) => {
                o.extend(r.map(|i| i64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().expect("8"))))
            }
            Column::Float(o) => {
                o.extend(r.map(|i| f32::from_le_bytes(v[i * 4..i * 4 + 4].try_into().expect("4"))))
            }
            Column::Double(o) => {
                o.extend(r.map(|i| f64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().expect("8"))))
            }
            Column::Text(o) => {
                let offs = |i: usize| {
                    u32::from_le_bytes(v[i * 4..i * 4 + 4].try_into().expect("4")) as usize
                };
                let data = &v[(c.count + 1) * 4..];
                for i in r {
                    let (s, e) = (offs(i), offs(i + 1));
                    o.push(data.get(s..e).map(<[u8]>::to_vec).unwrap_or_default());
                }
            }
        }
    }
}

/// The first index in `0..n` where `pred` is false (`pred` true then false).
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_open_read_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let series = [
            (
                "root.a.d.x".to_string(),
                vec![1, 5, 9],
                Column::Double(vec![1.5, 5.5, 9.5]),
            ),
            (
                "root.a.d.t".to_string(),
                vec![2, 3],
                Column::Text(vec![b"hi".to_vec(), b"".to_vec()]),
            ),
            (
                "root.a.d.b".to_string(),
                vec![7],
                Column::Boolean(vec![true]),
            ),
        ];
        let refs: Vec<(&str, &[i64], &Column)> = series
            .iter()
            .map(|(p, t, v)| (p.as_str(), &t[..], v))
            .collect();
        let p = write(dir.path(), 3, &refs).unwrap();
        let f = ChunkFile::open(&p, 3).unwrap();
        assert_eq!(f.chunks.len(), 3);
        let c = &f.chunks[0];
        assert_eq!((c.min, c.max, c.count), (1, 9, 3));
        assert_eq!(f.range(c, 2, 9), 1..3);
        assert_eq!(f.range(c, 10, 20), 3..3);
        assert_eq!(f.range(c, 0, 0), 0..0);
        let (mut t, mut v) = (Vec::new(), Column::Double(vec![]));
        f.read(c, f.range(c, 2, 9), &mut t, &mut v);
        assert_eq!((t, v), (vec![5, 9], Column::Double(vec![5.5, 9.5])));
        let c = &f.chunks[1];
        let (mut t, mut v) = (Vec::new(), Column::Text(vec![]));
        f.read(c, 0..2, &mut t, &mut v);
        assert_eq!(v, Column::Text(vec![b"hi".to_vec(), vec![]]));
        // Damage to the index is caught.
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 1;
        let q = dir.path().join("bad.chunks");
        std::fs::write(&q, bytes).unwrap();
        assert!(ChunkFile::open(&q, 4).unwrap_err().contains("crc mismatch"));
    }
}
