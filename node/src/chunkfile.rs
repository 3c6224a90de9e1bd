//! Chunk files: what a flush writes. One file per flush, holding for each
//! series its points of that flush, sorted by time, one per timestamp.
//! Files are immutable, memory-mapped for reading, and found by binary
//! search on the times.
//!
//! ```text
//! [8]  magic "EPCHUNK3" ("EPCHUNK2": format 2, every series' times
//!      stored; "EPCHUNK1": format 1, no data checksums either)
//! per series (8-byte aligned):
//!   count × i64 LE            times, strictly increasing; none when the
//!                             index says they are regular (format 3)
//!   values                    BOOLEAN u8, INT32 i32, INT64 i64, FLOAT f32,
//!                             DOUBLE f64 (LE); TEXT: (count+1) × u32 offsets
//!                             into the bytes that follow
//! index: per series
//!   u16 path length, path, u8 type, u64 times offset, u32 count,
//!   u64 values offset, u64 values length, i64 min time, i64 max time,
//!   u32 crc32 of the times bytes, u32 crc32 of the values bytes (format 2),
//!   u8 times: 0 stored, 1 regular (format 3)
//! footer (24 bytes): u64 index offset, u32 index length, u32 crc32 of the
//!   index, [8] magic "EPCHUNKE"
//! ```
//! Regular times (at least two, every step the same: a sensor sampled at
//! a fixed rate) are not stored: point `i` is at `min + i × (max − min) /
//! (count − 1)`. That halves a number series' file, which is half of what
//! a node writes to disk (the change log the other half): with the
//! default fsync a catch-up of 1,000-row tablets is bound by the disk.
//!
//! The file is written under a temporary name, fsynced and renamed, so a
//! reader never sees half a file. With the node's fsync policy off
//! (`wal_mode=DISABLE`) it is not fsynced, like the change log: a process
//! killed still leaves whole files (the page cache keeps them), a power
//! loss may leave the newest ones damaged, which a read reports naming the
//! file. Syncing them anyway halved a catch-up of 1,000-row tablets and
//! made it swing between runs: the flush's fsync took the disk's
//! bandwidth, the flush fell behind and writers waited for it.
//!
//! Do not add, remove, retype or reorder fields: write a new format
//! (magic) and keep reading the old one.
//!
//! # Design constraints
//! - Opening checks the index: its CRC, and every offset, count and length
//!   against the file with checked arithmetic. A file that passes cannot
//!   make a read index outside the mapping, whatever its bytes.
//! - A chunk's data is checked the first time it is read ([`ChunkFile::check`]:
//!   both CRCs, times strictly increasing between its min and max, text
//!   offsets in order and inside the chunk) and the outcome is kept: a
//!   query pays the CRC once per chunk per process, never per point.
//! - Pages a check or a read went through are given back to the kernel
//!   right after (`madvise(MADV_DONTNEED)` on the read-only mapping: the
//!   page-table entries go, the page cache keeps the bytes): a pipe's
//!   history read through every chunk file of a 20 M-point store kept
//!   308 MiB of them resident in the node otherwise, as the change log did
//!   before it gave its pages back (`wal` segment.rs, "Resident memory").
//!   Damage is an error naming the file and the series, never a wrong value.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;
use protocol::tablet::Column;
use protocol::types::DataType;

const MAGIC_V1: &[u8; 8] = b"EPCHUNK1";
const MAGIC_V2: &[u8; 8] = b"EPCHUNK2";
const MAGIC: &[u8; 8] = b"EPCHUNK3";
const END_MAGIC: &[u8; 8] = b"EPCHUNKE";
const FOOTER_LEN: usize = 24;

/// Where one series' points sit in a chunk file.
#[derive(Debug)]
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
    /// CRCs of the times and values bytes (format 2).
    crcs: Option<(u32, u32)>,
    /// The step between times when they are regular and not stored.
    step: Option<i64>,
    /// What [`ChunkFile::check`] found: `None` intact, else why not.
    checked: OnceLock<Option<String>>,
}

impl ChunkMeta {
    /// The bytes its values take in the file (fixed-width values, or text
    /// offsets and bytes): with `count`, what a point costs on average,
    /// known without reading the data.
    pub fn values_len(&self) -> usize {
        self.values_len
    }
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

/// The size of a memory page.
fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant and touches no memory.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

/// The file name of flush `seq`.
pub fn file_name(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.chunks"))
}

/// A file being written, with its position (so offsets need no buffer of
/// the whole file) and a CRC of the bytes since [`Out::start_crc`].
struct Out {
    w: std::io::BufWriter<File>,
    pos: usize,
    crc: crc32fast::Hasher,
}

impl Out {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.pos += b.len();
        self.crc.update(b);
        self.w.write_all(b)
    }

    /// Starts a CRC at the current position; returns the last one.
    fn start_crc(&mut self) -> u32 {
        std::mem::take(&mut self.crc).finalize()
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
/// file in memory). Durable when this returns if `sync` (the file and the
/// directory fsynced).
///
/// # Errors
/// I/O errors (of the kind the OS gave: a full disk is
/// `ErrorKind::StorageFull`), with messages naming the file. The temporary
/// file is removed on failure: a full disk must not be left fuller.
pub fn write(
    dir: &Path,
    seq: u64,
    series: &[(&str, &[i64], &Column)],
    sync: bool,
) -> Result<PathBuf, std::io::Error> {
    let path = file_name(dir, seq);
    let tmp = path.with_extension("chunks.tmp");
    let r = write_tmp(&tmp, series, sync).and_then(|()| {
        std::fs::rename(&tmp, &path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: rename: {e}", path.display())))
    });
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if sync {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: fsync directory: {e}", dir.display()))
        })?;
    }
    Ok(path)
}

fn write_tmp(
    tmp: &Path,
    series: &[(&str, &[i64], &Column)],
    sync: bool,
) -> Result<(), std::io::Error> {
    let io = |op: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {op}: {e}", tmp.display()))
    };
    let f = File::create(tmp).map_err(|e| io("create", e))?;
    let mut out = Out {
        w: std::io::BufWriter::with_capacity(1 << 20, f),
        pos: 0,
        crc: crc32fast::Hasher::new(),
    };
    let mut index = Vec::new();
    let body = (|| -> std::io::Result<()> {
        out.put(MAGIC)?;
        for &(path, times, values) in series {
            out.pad8()?;
            let times_off = out.pos;
            out.start_crc();
            let step = regular_step(times);
            if step.is_none() {
                out.put_le(times, i64::to_le_bytes)?;
            }
            let times_crc = out.start_crc();
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
            let values_crc = out.start_crc();
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
            index.extend_from_slice(&times_crc.to_le_bytes());
            index.extend_from_slice(&values_crc.to_le_bytes());
            index.push(u8::from(step.is_some()));
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
    if sync {
        f.sync_all().map_err(|e| io("fsync", e))?;
    }
    Ok(())
}

/// The step of `times` (strictly increasing) when there are at least two
/// and every step is the same.
fn regular_step(times: &[i64]) -> Option<i64> {
    let (&first, &second) = (times.first()?, times.get(1)?);
    let step = second.checked_sub(first)?;
    times
        .windows(2)
        .all(|w| w[1].wrapping_sub(w[0]) == step && w[1] > w[0])
        .then_some(step)
}

/// The step of `count` regular times from `min` to `max`, if they can be
/// (checked arithmetic: any index values).
fn step_of(min: i64, max: i64, count: usize) -> Option<i64> {
    let gaps = i128::try_from(count.checked_sub(1)?)
        .ok()
        .filter(|&g| g > 0)?;
    let span = i128::from(max) - i128::from(min);
    (span > 0 && span % gaps == 0)
        .then(|| i64::try_from(span / gaps).ok())
        .flatten()
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8"))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4"))
}

/// Reads the entries of an index whose CRC has been checked, checking
/// every offset, count and length against the data region `[8, data_end)`
/// with checked arithmetic. `format`: 1, 2 (entries carry data CRCs) or 3
/// (and how their times are stored).
fn parse_index(
    index: &[u8],
    data_end: usize,
    format: u8,
    bad: &dyn Fn(&str) -> String,
) -> Result<Vec<ChunkMeta>, String> {
    let v2 = format >= 2;
    let fixed = 1 + 8 + 4 + 8 + 8 + 8 + 8 + if v2 { 8 } else { 0 } + usize::from(format >= 3);
    let mut chunks = Vec::new();
    let mut at = 0usize;
    while at < index.len() {
        let short = || bad("index entry cut short");
        let n = index
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(short)?;
        at += 2;
        let e = index.get(at..at + n + fixed).ok_or_else(short)?;
        let p = String::from_utf8(e[..n].to_vec()).map_err(|_| bad("series path is not UTF-8"))?;
        let e = &e[n..];
        at += n + fixed;
        let data_type = DataType::from_id(i32::from(e[0])).map_err(|m| bad(&m))?;
        let u = |x: u64| usize::try_from(x).ok();
        let times_off = u(le_u64(e, 1));
        let count = le_u32(e, 9) as usize;
        let values_off = u(le_u64(e, 13));
        let values_len = u(le_u64(e, 21));
        let min = le_u64(e, 29) as i64;
        let max = le_u64(e, 37) as i64;
        let crcs = v2.then(|| (le_u32(e, 45), le_u32(e, 49)));
        // Regular times: their step must follow from the index.
        let step = match (format >= 3).then(|| e[53]) {
            None | Some(0) => Ok(None),
            Some(1) => step_of(min, max, count).map(Some).ok_or_else(|| {
                bad(&format!(
                    "index entry of {p} is out of range (regular times: {count} from {min} to {max} cannot be)"
                ))
            }),
            Some(k) => Err(bad(&format!(
                "index entry of {p} is out of range (unknown times encoding {k})"
            ))),
        }?;
        let width = match data_type {
            DataType::Boolean => Some(1usize),
            DataType::Int32 | DataType::Float => Some(4),
            DataType::Int64 | DataType::Double => Some(8),
            DataType::Text => None,
        };
        let ok = (|| {
            let (times_off, values_off, values_len) = (times_off?, values_off?, values_len?);
            let stored = if step.is_some() { 0 } else { count };
            let times_end = times_off.checked_add(stored.checked_mul(8)?)?;
            let values_end = values_off.checked_add(values_len)?;
            let len_ok = match width {
                Some(w) => w.checked_mul(count)? == values_len,
                None => count.checked_add(1)?.checked_mul(4)? <= values_len,
            };
            Some(
                times_off >= MAGIC.len()
                    && times_end == values_off
                    && values_end <= data_end
                    && len_ok
                    && (count == 0 || min <= max),
            )
        })();
        if ok != Some(true) {
            return Err(bad(&format!("index entry of {p} is out of range")));
        }
        chunks.push(ChunkMeta {
            path: p,
            data_type,
            times_off: times_off.expect("checked"),
            count,
            values_off: values_off.expect("checked"),
            values_len: values_len.expect("checked"),
            min,
            max,
            crcs,
            step,
            checked: OnceLock::new(),
        });
    }
    Ok(chunks)
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
        if b.len() < MAGIC.len() + FOOTER_LEN || &b[b.len() - 8..] != END_MAGIC {
            return Err(bad("not a complete chunk file (bad magic; cut short?)"));
        }
        let format = match &b[..8] {
            m if m == MAGIC => 3,
            m if m == MAGIC_V2 => 2,
            m if m == MAGIC_V1 => 1,
            _ => return Err(bad("not a chunk file (bad magic)")),
        };
        let f = b.len() - FOOTER_LEN;
        let index_off = usize::try_from(le_u64(b, f)).unwrap_or(usize::MAX);
        let index_len = le_u32(b, f + 8) as usize;
        let crc = le_u32(b, f + 12);
        if index_off.checked_add(index_len) != Some(f) || index_off < MAGIC.len() {
            return Err(bad("index offsets do not match the file length"));
        }
        let index = &b[index_off..f];
        if crc32fast::hash(index) != crc {
            return Err(bad("index crc mismatch"));
        }
        let chunks = parse_index(index, index_off, format, &bad)?;
        Ok(Arc::new(ChunkFile {
            seq,
            path: path.to_path_buf(),
            map,
            chunks,
        }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file carries data checksums (format 2).
    pub fn has_data_crcs(&self) -> bool {
        self.chunks.iter().all(|c| c.crcs.is_some())
    }

    /// Checks `c`'s data before its first read: the CRCs of its times and
    /// values, times strictly increasing from its min to its max, text
    /// offsets in order and inside the chunk. The outcome is kept, so this
    /// costs one pass per chunk per process.
    ///
    /// # Errors
    /// Damage, naming the file and the series.
    pub fn check(&self, c: &ChunkMeta) -> Result<(), String> {
        match c.checked.get_or_init(|| self.verify(c)) {
            None => Ok(()),
            Some(why) => Err(format!(
                "{}: the data of {} is damaged ({why}); restore the file from a backup (`edgepipe store verify` lists every damaged file)",
                self.path.display(),
                c.path
            )),
        }
    }

    /// Gives back the whole pages of the mapping inside bytes
    /// `from..to` (see the module doc): they stay in the page cache, and
    /// the next access maps them again.
    fn give_back(&self, from: usize, to: usize) {
        let page = page_size();
        let start = from.div_ceil(page) * page;
        let end = (to.min(self.map.len()) / page) * page;
        if end > start {
            // SAFETY: a read-only shared mapping of a file nothing writes
            // (see `open`): dropping its page-table entries discards
            // nothing; a later read faults the same bytes back in. The
            // range lies inside the mapping.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }

    /// What is wrong with `c`'s data, if anything.
    fn verify(&self, c: &ChunkMeta) -> Option<String> {
        let r = self.verify_pages(c);
        self.give_back(c.times_off, c.values_off + c.values_len);
        r
    }

    fn verify_pages(&self, c: &ChunkMeta) -> Option<String> {
        let times = &self.map[c.times_off..c.values_off];
        let values = &self.map[c.values_off..c.values_off + c.values_len];
        if let Some((tc, vc)) = c.crcs {
            if crc32fast::hash(times) != tc {
                return Some("crc mismatch in its times".into());
            }
            if crc32fast::hash(values) != vc {
                return Some("crc mismatch in its values".into());
            }
        }
        // Regular times were checked against the index at open.
        if c.step.is_none() {
            let mut prev: Option<i64> = None;
            for t in times.chunks_exact(8).map(|b| le_u64(b, 0) as i64) {
                if prev.is_some_and(|p| p >= t) {
                    return Some("times out of order".into());
                }
                prev = Some(t);
            }
            if c.count > 0 && (le_u64(times, 0) as i64 != c.min || prev != Some(c.max)) {
                return Some("times disagree with the index".into());
            }
        }
        if c.data_type == DataType::Text {
            let data_len = c.values_len - (c.count + 1) * 4;
            let mut last = 0u32;
            for i in 0..=c.count {
                let o = le_u32(values, i * 4);
                if o < last || o as usize > data_len {
                    return Some("text offsets out of range".into());
                }
                last = o;
            }
            if last as usize != data_len {
                return Some("text offsets do not end with the data".into());
            }
        }
        None
    }

    /// The time of point `i` of `c`.
    pub fn time(&self, c: &ChunkMeta, i: usize) -> i64 {
        match c.step {
            // The time lies between min and max; `i × step` alone may not
            // fit (from i64::MIN to i64::MAX), and wrapping arithmetic
            // still lands on it.
            Some(step) => c.min.wrapping_add((i as i64).wrapping_mul(step)),
            None => le_u64(&self.map, c.times_off + i * 8) as i64,
        }
    }

    /// The index range of `c`'s points with times in `[lo, hi]`. Call
    /// [`ChunkFile::check`] first.
    pub fn range(&self, c: &ChunkMeta, lo: i64, hi: i64) -> std::ops::Range<usize> {
        let first = partition(c.count, |i| self.time(c, i) < lo);
        let end = partition(c.count, |i| self.time(c, i) <= hi);
        first..end.max(first)
    }

    /// Appends points `r` of `c` to `times` and `out`. Call
    /// [`ChunkFile::check`] first.
    pub fn read(
        &self,
        c: &ChunkMeta,
        r: std::ops::Range<usize>,
        times: &mut Vec<i64>,
        out: &mut Column,
    ) {
        let b = &self.map[..];
        let (first, end) = (r.start, r.end);
        for i in r.clone() {
            times.push(self.time(c, i));
        }
        let v = &b[c.values_off..c.values_off + c.values_len];
        match out {
            Column::Boolean(o) => o.extend(v[r].iter().map(|&x| x != 0)),
            Column::Int32(o) => o.extend(r.map(|i| le_u32(v, i * 4) as i32)),
            Column::Int64(o) => o.extend(r.map(|i| le_u64(v, i * 8) as i64)),
            Column::Float(o) => o.extend(r.map(|i| f32::from_bits(le_u32(v, i * 4)))),
            Column::Double(o) => o.extend(r.map(|i| f64::from_bits(le_u64(v, i * 8)))),
            Column::Text(o) => {
                let offs = |i: usize| le_u32(v, i * 4) as usize;
                let data = &v[(c.count + 1) * 4..];
                for i in r {
                    let (s, e) = (offs(i), offs(i + 1));
                    o.push(data.get(s..e).map(<[u8]>::to_vec).unwrap_or_default());
                }
            }
        }
        // What a read went through: its times, and its values (all of a
        // text chunk's values, whose bytes lie after the offsets).
        if c.step.is_none() {
            self.give_back(c.times_off + first * 8, c.times_off + end * 8);
        }
        let width = match out {
            Column::Boolean(_) => 1,
            Column::Int32(_) | Column::Float(_) => 4,
            Column::Int64(_) | Column::Double(_) => 8,
            Column::Text(_) => 0,
        };
        if width == 0 {
            self.give_back(c.values_off, c.values_off + c.values_len);
        } else {
            self.give_back(c.values_off + first * width, c.values_off + end * width);
        }
    }
}

/// One problem [`verify_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// The series whose data is damaged; `None` when the file as a whole
    /// is (its index or footer).
    pub series: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// Checks a chunk file completely: footer, index, and every chunk's data
/// (CRCs, order, text offsets). Returns the series it holds and the
/// problems found.
pub fn verify_file(path: &Path) -> (usize, Vec<Problem>) {
    let f = match ChunkFile::open(path, 0) {
        Ok(f) => f,
        Err(reason) => {
            return (
                0,
                vec![Problem {
                    path: path.to_path_buf(),
                    series: None,
                    reason,
                }],
            )
        }
    };
    let mut problems = Vec::new();
    if !f.has_data_crcs() {
        problems.push(Problem {
            path: path.to_path_buf(),
            series: None,
            reason:
                "format 1 (written before data checksums): only its index and order are checked"
                    .into(),
        });
    }
    for c in &f.chunks {
        if let Some(reason) = f.verify(c) {
            problems.push(Problem {
                path: path.to_path_buf(),
                series: Some(c.path.clone()),
                reason,
            });
        }
    }
    (f.chunks.len(), problems)
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

    fn sample(dir: &Path) -> PathBuf {
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
        write(dir, 3, &refs, true).unwrap()
    }

    #[test]
    fn write_open_read_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let f = ChunkFile::open(&p, 3).unwrap();
        assert!(f.has_data_crcs());
        assert_eq!(f.chunks.len(), 3);
        let c = &f.chunks[0];
        f.check(c).unwrap();
        assert_eq!((c.min, c.max, c.count), (1, 9, 3));
        assert_eq!(f.range(c, 2, 9), 1..3);
        assert_eq!(f.range(c, 10, 20), 3..3);
        assert_eq!(f.range(c, 0, 0), 0..0);
        let (mut t, mut v) = (Vec::new(), Column::Double(vec![]));
        f.read(c, f.range(c, 2, 9), &mut t, &mut v);
        assert_eq!((t, v), (vec![5, 9], Column::Double(vec![5.5, 9.5])));
        let c = &f.chunks[1];
        f.check(c).unwrap();
        let (mut t, mut v) = (Vec::new(), Column::Text(vec![]));
        f.read(c, 0..2, &mut t, &mut v);
        assert_eq!(v, Column::Text(vec![b"hi".to_vec(), vec![]]));
        assert_eq!(verify_file(&p), (3, vec![]));
        // Damage to the index is caught.
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 1;
        let q = dir.path().join("bad.chunks");
        std::fs::write(&q, bytes).unwrap();
        assert!(ChunkFile::open(&q, 4).unwrap_err().contains("crc mismatch"));
    }

    /// Issue 7, finding 3: any flipped byte of a chunk's data is an error
    /// naming the file and the series at its first read, never a value.
    #[test]
    fn every_flipped_data_byte_is_an_error_naming_file_and_series() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let good = std::fs::read(&p).unwrap();
        let f = ChunkFile::open(&p, 3).unwrap();
        let data: Vec<(usize, usize, String)> = f
            .chunks
            .iter()
            .map(|c| (c.times_off, c.values_off + c.values_len, c.path.clone()))
            .collect();
        drop(f);
        for (start, end, series) in data {
            for at in start..end {
                let mut b = good.clone();
                b[at] ^= 0x10;
                let q = dir.path().join("flip.chunks");
                std::fs::write(&q, &b).unwrap();
                let f = ChunkFile::open(&q, 3).unwrap();
                let c = f.chunks.iter().find(|c| c.path == series).unwrap();
                let e = f.check(c).unwrap_err();
                assert!(
                    e.contains("flip.chunks") && e.contains(&series) && e.contains("damaged"),
                    "{e}"
                );
                // It stays an error.
                assert!(f.check(c).is_err());
                let (_, problems) = verify_file(&q);
                assert_eq!(problems.len(), 1, "byte {at}");
                assert_eq!(problems[0].series.as_deref(), Some(series.as_str()));
            }
        }
    }

    /// Issue 13: a file whose index has a valid CRC but absurd values (a
    /// count whose byte size overflows, offsets past the file) is refused
    /// at open, naming the file: no panic at query time.
    #[test]
    fn absurd_index_values_with_a_valid_crc_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let good = std::fs::read(&p).unwrap();
        let n = good.len();
        let index_off = le_u64(&good, n - FOOTER_LEN) as usize;
        // Offsets inside the first index entry ("root.a.d.x": 10 bytes).
        let entry = index_off + 2 + 10;
        // Its times (1, 5, 9) are regular: not stored (format 3).
        let cases: [(usize, Vec<u8>); 9] = [
            (entry + 9, u32::MAX.to_le_bytes().to_vec()), // count
            (entry + 1, (u64::MAX - 7).to_le_bytes().to_vec()), // times offset
            (entry + 13, (u64::MAX / 2).to_le_bytes().to_vec()), // values offset
            (entry + 21, (u64::MAX - 3).to_le_bytes().to_vec()), // values length
            (entry + 1, 0u64.to_le_bytes().to_vec()),     // times over the magic
            (entry + 29, i64::MAX.to_le_bytes().to_vec()), // min > max
            (entry + 37, 10i64.to_le_bytes().to_vec()),   // 3 regular from 1 to 10
            (entry + 53, vec![7]),                        // unknown times encoding
            (entry + 53, vec![0]), // times stored: the values' offset is wrong then
        ];
        for (at, bytes) in cases {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(&bytes);
            let crc = crc32fast::hash(&b[index_off..n - FOOTER_LEN]);
            b[n - 12..n - 8].copy_from_slice(&crc.to_le_bytes());
            let q = dir.path().join("absurd.chunks");
            std::fs::write(&q, &b).unwrap();
            let e = ChunkFile::open(&q, 3).unwrap_err();
            assert!(
                e.contains("absurd.chunks") && e.contains("out of range"),
                "{e}"
            );
        }
        // The footer's own index offset, absurd.
        let mut b = good.clone();
        b[n - FOOTER_LEN..n - FOOTER_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let q = dir.path().join("absurd.chunks");
        std::fs::write(&q, &b).unwrap();
        assert!(ChunkFile::open(&q, 3)
            .unwrap_err()
            .contains("do not match the file length"));
    }

    #[test]
    fn a_truncated_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let good = std::fs::read(&p).unwrap();
        for cut in [0, 8, 31, good.len() / 2, good.len() - 1] {
            std::fs::write(&p, &good[..cut]).unwrap();
            let e = ChunkFile::open(&p, 3).unwrap_err();
            assert!(e.contains("00000000000000000003.chunks"), "{e}");
        }
    }

    /// Resident pages of this process's mappings of `path` (`Rss` in
    /// /proc/self/smaps), in KiB.
    fn mapped_rss_kib(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_str().unwrap();
        let mut inside = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if line.contains('-') && line.split_whitespace().count() >= 5 && !line.ends_with(" kB")
            {
                inside = line.ends_with(name);
            } else if inside && line.starts_with("Rss:") {
                kib += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        kib
    }

    #[test]
    fn reading_a_whole_file_leaves_none_of_it_resident() {
        let dir = tempfile::tempdir().unwrap();
        // 2 M points: 16 MiB of times (irregular, so stored), 16 MiB of
        // values.
        let times: Vec<i64> = (0..2_000_000).map(|i| 2 * i + i % 2).collect();
        let values = Column::Double(times.iter().map(|&t| t as f64 * 0.5).collect());
        let p = write(dir.path(), 1, &[("root.a.d.s", &times, &values)], false).unwrap();
        let f = ChunkFile::open(&p, 1).unwrap();
        let c = &f.chunks[0];
        f.check(c).unwrap();
        let (mut t, mut v) = (Vec::new(), Column::Double(Vec::new()));
        for start in (0..2_000_000).step_by(100_000) {
            f.read(c, start..start + 100_000, &mut t, &mut v);
        }
        assert_eq!(t, times);
        assert_eq!(v, values);
        // The index and the partial pages at the chunk's edges at most.
        let kib = mapped_rss_kib(&p);
        assert!(kib < 256, "{kib} KiB of a 32 MiB file still resident");
    }

    fn write_one(dir: &Path, seq: u64, times: &[i64]) -> PathBuf {
        let values = Column::Int64(times.iter().map(|t| t.wrapping_mul(3)).collect());
        write(dir, seq, &[("root.a.d.s", times, &values)], false).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the times (regular ones not stored, or stored), a file
        /// reads back every point, and a range read agrees with a scan.
        #[test]
        fn times_stored_or_regular_read_back_the_same(
            start in proptest::prop_oneof![
                proptest::prelude::Just(i64::MIN),
                proptest::prelude::Just(i64::MAX - 1000),
                -1_000_000i64..1_000_000,
            ],
            step in proptest::prop_oneof![
                proptest::prelude::Just(1i64),
                1i64..1000,
                proptest::prelude::Just(i64::MAX / 2),
            ],
            count in 1usize..40,
            jitter in proptest::option::of((0usize..40, 1i64..3)),
            lo in -2_000_000i64..2_000_000,
            width in 0i64..100_000,
        ) {
            let mut times: Vec<i64> = Vec::new();
            for i in 0..count {
                match start.checked_add(step.saturating_mul(i as i64)) {
                    Some(t) if times.last().is_none_or(|&p| p < t) => times.push(t),
                    _ => break,
                }
            }
            // Maybe one point moved (still strictly increasing): stored.
            if let Some((at, by)) = jitter {
                if at > 0 && at + 1 < times.len() && times[at] + by < times[at + 1] {
                    times[at] += by;
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let f = ChunkFile::open(&write_one(dir.path(), 1, &times), 1).unwrap();
            let c = &f.chunks[0];
            proptest::prop_assert_eq!(c.step.is_some(), regular_step(&times).is_some());
            f.check(c).unwrap();
            let (mut t, mut v) = (Vec::new(), Column::Int64(vec![]));
            f.read(c, 0..c.count, &mut t, &mut v);
            proptest::prop_assert_eq!(&t, &times);
            let hi = lo.saturating_add(width);
            let r = f.range(c, lo, hi);
            let want: Vec<usize> = (0..times.len())
                .filter(|&i| lo <= times[i] && times[i] <= hi)
                .collect();
            proptest::prop_assert_eq!(r.clone().collect::<Vec<_>>(), want);
            proptest::prop_assert_eq!(verify_file(f.path()), (1, vec![]));
        }
    }

    #[test]
    fn regular_times_across_the_whole_range_read_back() {
        let s = 6_148_914_691_236_517_205i64; // (2^64 - 1) / 3
        let times = vec![i64::MIN, i64::MIN + s, i64::MIN + s + s, i64::MAX];
        assert_eq!(regular_step(&times), Some(s));
        let dir = tempfile::tempdir().unwrap();
        let f = ChunkFile::open(&write_one(dir.path(), 1, &times), 1).unwrap();
        let c = &f.chunks[0];
        f.check(c).unwrap();
        let (mut t, mut v) = (Vec::new(), Column::Int64(vec![]));
        f.read(c, f.range(c, 0, i64::MAX), &mut t, &mut v);
        assert_eq!(t, times[2..]);
    }

    #[test]
    fn regular_times_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let regular: Vec<i64> = (0..10_000).map(|i| 1_000 + i * 10).collect();
        let mut irregular = regular.clone();
        irregular[5_000] += 1;
        let a = std::fs::metadata(write_one(dir.path(), 1, &regular))
            .unwrap()
            .len();
        let b = std::fs::metadata(write_one(dir.path(), 2, &irregular))
            .unwrap()
            .len();
        assert_eq!(b - a, 10_000 * 8, "{a} {b}");
    }

    /// Files of format 2 (every series' times stored, written before
    /// format 3) still read.
    #[test]
    fn format_2_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let times = vec![1, 2, 4, 8];
        let p = write_one(dir.path(), 1, &times);
        // Format 3 → 2: the magic, and each index entry without its last
        // byte (this file's times are stored: that byte is 0).
        let b = std::fs::read(&p).unwrap();
        let n = b.len();
        let index_off = le_u64(&b, n - FOOTER_LEN) as usize;
        let index = &b[index_off..n - FOOTER_LEN];
        assert_eq!(index.last(), Some(&0));
        let old_index = &index[..index.len() - 1];
        let mut old = b[..index_off].to_vec();
        old[..8].copy_from_slice(MAGIC_V2);
        old.extend_from_slice(old_index);
        old.extend_from_slice(&(index_off as u64).to_le_bytes());
        old.extend_from_slice(&(old_index.len() as u32).to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(old_index).to_le_bytes());
        old.extend_from_slice(END_MAGIC);
        let q = dir.path().join("v2.chunks");
        std::fs::write(&q, &old).unwrap();
        let f = ChunkFile::open(&q, 1).unwrap();
        let c = &f.chunks[0];
        assert!(f.has_data_crcs() && c.step.is_none());
        f.check(c).unwrap();
        let (mut t, mut v) = (Vec::new(), Column::Int64(vec![]));
        f.read(c, f.range(c, 2, 8), &mut t, &mut v);
        assert_eq!((t, v), (vec![2, 4, 8], Column::Int64(vec![6, 12, 24])));
    }
}
