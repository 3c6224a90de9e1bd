//! Opening a TsFile, walking its index, and streaming its data section
//! chunk by chunk, page by page.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::tablet::{Column, Tablet};
use crate::types::Value;

use super::compress::{decompress, Compression};
use super::encoding::{decode_times, decode_values, Encoding, TsType};
use super::error::{Error, Result};
use super::io::{read_range, Cur, Source};
use super::meta::{
    chunk_group_device, marker, ChunkHeader, ChunkKind, DeviceId, FileMeta, IndexNode, Key,
    NodeType, PageHeader, SeriesMeta, Statistics, TableColumn, Version,
};

/// The head and tail magic.
pub const MAGIC: &[u8; 6] = b"TsFile";

/// Bounds on what one page may make the reader allocate. A page beyond
/// them is refused as [`ErrorKind::Unsupported`](super::ErrorKind) naming
/// the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest decompressed page, in bytes. Default: 64 MiB (IoTDB
    /// 1.2 closes pages at `page_size_in_byte` = 64 KiB, the PyPI writer at
    /// 128 KiB).
    pub max_page_bytes: usize,
    /// The most rows one page may hold. Default: 1,048,576 (IoTDB's
    /// `max_number_of_points_in_page` defaults to 10,000). Run-length and
    /// delta encodings can hold many rows in few bytes; this bounds what
    /// such a page expands to.
    pub max_page_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_page_bytes: 64 << 20,
            max_page_points: 1 << 20,
        }
    }
}

/// An open TsFile: its head, tail and file metadata checked.
pub struct TsFile<S: Source> {
    src: S,
    len: u64,
    version: Version,
    meta: FileMeta,
    meta_start: u64,
    limits: Limits,
}

impl<S: Source> std::fmt::Debug for TsFile<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsFile")
            .field("len", &self.len)
            .field("version", &self.version)
            .finish()
    }
}

/// A device as the index lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceIndex {
    /// The device.
    pub id: DeviceId,
    /// Byte range of its measurement index.
    region: (u64, u64),
}

/// One piece of the data section: rows of one device from one page of one
/// chunk (non-aligned: a single series; aligned: the time page and the
/// matching page of every value column).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The device.
    pub device: DeviceId,
    /// Whether the device is aligned.
    pub aligned: bool,
    /// Row times, in file order.
    pub times: Vec<i64>,
    /// The columns, each `times.len()` rows.
    pub columns: Vec<BatchColumn>,
    /// File offset of the chunk (the time chunk when aligned).
    pub chunk_offset: u64,
}

/// One column of a [`Batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchColumn {
    /// Measurement name.
    pub measurement: String,
    /// The type the file declares (the values are of its
    /// [`TsType::column_type`]).
    pub data_type: TsType,
    /// One value per row; a placeholder in null rows.
    pub values: Column,
    /// Which rows are null (`None`: none are). Only aligned columns have
    /// nulls.
    pub nulls: Option<Vec<bool>>,
}

impl Batch {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.times.len()
    }

    /// Non-null values.
    pub fn points(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match &c.nulls {
                None => self.rows(),
                Some(n) => n.iter().filter(|&&x| !x).count(),
            })
            .sum()
    }

    /// The batch as a tablet: the device path, measurement names, columns
    /// (TIMESTAMP as INT64, DATE as INT32, STRING and BLOB as TEXT), null
    /// bits and times.
    pub fn into_tablet(self) -> Tablet {
        let mut measurements = Vec::with_capacity(self.columns.len());
        let mut columns = Vec::with_capacity(self.columns.len());
        let mut nulls = Vec::with_capacity(self.columns.len());
        for c in self.columns {
            measurements.push(c.measurement);
            columns.push(c.values);
            nulls.push(c.nulls);
        }
        Tablet {
            device: self.device.path(),
            measurements,
            columns,
            nulls,
            times: self.times,
            aligned: self.aligned,
        }
    }
}

/// What [`TsFile::validate`] found in a whole, intact file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Devices in the index.
    pub devices: usize,
    /// Series in the index (aligned time columns not counted).
    pub series: usize,
    /// Chunks in the data section.
    pub chunks: usize,
    /// Pages (an aligned time page and its value pages count once).
    pub pages: usize,
    /// Rows of all batches.
    pub rows: u64,
    /// Non-null values.
    pub points: u64,
    /// The smallest and largest time.
    pub time_range: Option<(i64, i64)>,
}

impl TsFile<File> {
    /// Opens the file at `path` with the default [`Limits`].
    ///
    /// # Errors
    /// I/O errors, and everything [`TsFile::new`] checks.
    pub fn open(path: &Path) -> Result<TsFile<File>> {
        let f = File::open(path).map_err(|e| Error::io(0, 0, e))?;
        TsFile::new(f)
    }
}

impl<S: Source> TsFile<S> {
    /// Checks the head (magic and version), the tail magic, and the file
    /// metadata, with the default [`Limits`].
    ///
    /// # Errors
    /// Not a TsFile, a truncated one (no tail magic: incomplete or still
    /// being written), an unsupported version, encrypted, damaged metadata.
    pub fn new(src: S) -> Result<TsFile<S>> {
        Self::with_limits(src, Limits::default())
    }

    /// [`TsFile::new`] with explicit limits.
    ///
    /// # Errors
    /// As [`TsFile::new`].
    pub fn with_limits(src: S, limits: Limits) -> Result<TsFile<S>> {
        let len = src.size().map_err(|e| Error::io(0, 0, e))?;
        if len < 7 {
            return Err(Error::corrupt(
                0,
                format!("{len} bytes: too short to be a TsFile"),
            ));
        }
        let head = read_range(&src, len, 0, 7, "file head")?;
        if &head[..6] != MAGIC {
            return Err(Error::corrupt(
                0,
                "no TsFile magic at the start: not a TsFile",
            ));
        }
        let version = match head[6] {
            3 => Version::V3,
            4 => Version::V4,
            1 | 2 => {
                return Err(Error::unsupported(
                    6,
                    format!(
                        "TsFile format version {} (IoTDB 0.x): load it into IoTDB 1.x and export it again",
                        head[6]
                    ),
                ))
            }
            v => return Err(Error::corrupt(6, format!("unknown TsFile format version {v}"))),
        };
        // Head (7) + separator (1) + metadata size (4) + tail (6).
        if len < 18 {
            return Err(Error::corrupt(
                len,
                format!("{len} bytes: truncated (no index, no tail)"),
            ));
        }
        let tail = read_range(&src, len, len - 10, 10, "file tail")?;
        if &tail[4..] != MAGIC {
            return Err(Error::corrupt(
                len - 6,
                "no TsFile magic at the end: the file is incomplete (truncated, or not sealed by its writer)",
            ));
        }
        let size = i32::from_be_bytes(tail[..4].try_into().expect("4"));
        if size <= 0 || size as u64 > len - 18 {
            return Err(Error::corrupt(
                len - 10,
                format!("file metadata size {size} in a file of {len} bytes"),
            ));
        }
        let meta_start = len - 10 - size as u64;
        let bytes = read_range(&src, len, meta_start, size as u64, "file metadata")?;
        let meta = FileMeta::read(&mut Cur::new(&bytes, meta_start), version)?;
        if meta.meta_offset < 7 || meta.meta_offset >= meta_start {
            return Err(Error::corrupt(
                meta_start,
                format!(
                    "meta offset {} outside the data section 7..{meta_start}",
                    meta.meta_offset
                ),
            ));
        }
        let sep = read_range(&src, len, meta.meta_offset, 1, "separator")?;
        if sep[0] != marker::SEPARATOR {
            return Err(Error::corrupt(
                meta.meta_offset,
                format!(
                    "the meta offset points at byte 0x{:02x}, not the separator 0x02",
                    sep[0]
                ),
            ));
        }
        for (k, v) in &meta.properties {
            if k == "encryptLevel" && v.as_deref().is_some_and(|l| l != "0") {
                return Err(Error::unsupported(
                    meta_start,
                    format!(
                        "encrypted TsFile (encryptLevel {})",
                        v.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(TsFile {
            src,
            len,
            version,
            meta,
            meta_start,
            limits,
        })
    }

    /// The format version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never, once open).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The v4 file properties (key, value).
    pub fn properties(&self) -> &[(String, Option<String>)] {
        &self.meta.properties
    }

    /// The v4 table schemas (table name, columns); empty for v3 and for
    /// tree-model files.
    pub fn tables(&self) -> &[(String, Vec<TableColumn>)] {
        &self.meta.tables
    }

    /// Reads a header of unknown length at `pos` (not past `end`): a small
    /// window first, a larger one when the header runs past it.
    fn read_header<T>(
        &self,
        pos: u64,
        end: u64,
        what: &str,
        f: impl Fn(&mut Cur<'_>) -> Result<T>,
    ) -> Result<(T, u64)> {
        let mut win = 64u64;
        loop {
            let n = win.min(end.saturating_sub(pos));
            let buf = read_range(&self.src, self.len, pos, n, what)?;
            let mut c = Cur::new(&buf, pos);
            match f(&mut c) {
                Ok(t) => return Ok((t, c.pos() as u64)),
                Err(_) if c.short && n < end.saturating_sub(pos) => win = win.saturating_mul(8),
                Err(e) => return Err(e),
            }
        }
    }

    /// The chunk header at `offset` (from a [`ChunkMeta`](super::ChunkMeta)):
    /// a series' encoding and compression are there, not in the index.
    ///
    /// # Errors
    /// No well-formed chunk header at `offset` in the data section.
    pub fn chunk_header(&self, offset: u64) -> Result<ChunkHeader> {
        let end = self.meta.meta_offset;
        if offset < 7 || offset >= end {
            return Err(Error::corrupt(
                offset,
                format!("no chunk here: the data section is bytes 7..{end}"),
            ));
        }
        let (h, _) = self.read_header(offset, end, "chunk header", ChunkHeader::read)?;
        if !ChunkHeader::is_marker(h.marker) {
            return Err(Error::corrupt(
                offset,
                format!("marker 0x{:02x} is not a chunk header", h.marker),
            ));
        }
        Ok(h)
    }

    /// The devices of the index, in index order.
    ///
    /// # Errors
    /// A damaged index.
    pub fn devices(&self) -> Result<Vec<DeviceIndex>> {
        let mut out = Vec::new();
        for root in &self.meta.roots {
            self.walk_devices(root, &mut out, 0)?;
        }
        Ok(out)
    }

    fn child_node(
        &self,
        start: u64,
        end: u64,
        limit: u64,
        device_level: bool,
    ) -> Result<IndexNode> {
        if start <= self.meta.meta_offset || end > limit {
            return Err(Error::corrupt(
                start,
                format!(
                    "index child at bytes {start}..{end} outside the index region {}..{limit}",
                    self.meta.meta_offset + 1
                ),
            ));
        }
        let b = read_range(&self.src, self.len, start, end - start, "index node")?;
        let mut c = Cur::new(&b, start);
        let node = IndexNode::read(&mut c, self.version, device_level)?;
        if c.left() != 0 {
            return Err(c.bad(format!("{} unexpected bytes after an index node", c.left())));
        }
        Ok(node)
    }

    fn walk_devices(
        &self,
        node: &IndexNode,
        out: &mut Vec<DeviceIndex>,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 {
            return Err(Error::corrupt(
                node.offset,
                "device index deeper than 32 levels",
            ));
        }
        for (key, start, end) in node.children()? {
            let Key::Device(id) = key else {
                return Err(Error::corrupt(
                    node.offset,
                    "device index entry without a device",
                ));
            };
            match node.node_type {
                NodeType::InternalDevice => {
                    let child =
                        self.child_node(start, end, node.offset.min(self.meta_start), true)?;
                    self.walk_devices(&child, out, depth + 1)?;
                }
                NodeType::LeafDevice => {
                    if start <= self.meta.meta_offset || end > node.offset.min(self.meta_start) {
                        return Err(Error::corrupt(
                            start,
                            format!("measurement index of {id} at bytes {start}..{end} outside the index"),
                        )
                        .in_device(&id.path()));
                    }
                    out.push(DeviceIndex {
                        id: id.clone(),
                        region: (start, end),
                    });
                }
                _ => unreachable!("device-level nodes are checked when read"),
            }
        }
        Ok(())
    }

    /// The series of a device, as its index lists them (the aligned time
    /// column first, as `""` VECTOR).
    ///
    /// # Errors
    /// A damaged index.
    pub fn series(&self, d: &DeviceIndex) -> Result<Vec<SeriesMeta>> {
        let path = d.id.path();
        let (start, end) = d.region;
        let root = self
            .child_node(start, end, self.meta_start, false)
            .map_err(|e| e.in_device(&path))?;
        let mut out = Vec::new();
        self.walk_series(&root, &mut out, 0)
            .map_err(|e| e.in_device(&path))?;
        Ok(out)
    }

    fn walk_series(&self, node: &IndexNode, out: &mut Vec<SeriesMeta>, depth: usize) -> Result<()> {
        if depth > 32 {
            return Err(Error::corrupt(
                node.offset,
                "series index deeper than 32 levels",
            ));
        }
        for (_, start, end) in node.children()? {
            match node.node_type {
                NodeType::InternalMeasurement => {
                    let child = self.child_node(start, end, node.offset, false)?;
                    self.walk_series(&child, out, depth + 1)?;
                }
                NodeType::LeafMeasurement => {
                    if start <= self.meta.meta_offset || end > node.offset {
                        return Err(Error::corrupt(
                            start,
                            format!(
                                "timeseries metadata at bytes {start}..{end} outside the index"
                            ),
                        ));
                    }
                    let b = read_range(
                        &self.src,
                        self.len,
                        start,
                        end - start,
                        "timeseries metadata",
                    )?;
                    let mut c = Cur::new(&b, start);
                    while c.left() > 0 {
                        out.push(SeriesMeta::read(&mut c)?);
                    }
                }
                _ => unreachable!("measurement-level nodes are checked when read"),
            }
        }
        Ok(())
    }

    /// Streams the data section from its start: one [`Batch`] per page
    /// (aligned: per time page, with every value column). Memory holds one
    /// page per column in flight, never the file.
    ///
    /// Every page is decompressed and decoded, its row count and time
    /// range checked against its statistics; the first error ends the
    /// iteration. Use [`TsFile::validate`] first when nothing of a damaged
    /// file may be applied.
    pub fn batches(&self) -> Batches<'_, S> {
        Batches {
            f: self,
            pos: 7,
            device: None,
            open: None,
            done: false,
            log: None,
            pages: 0,
        }
    }

    /// Reads the whole file without keeping its values: every page decoded
    /// and checked, the index walked, and every chunk the index lists
    /// matched against what the data section holds (device, series, type,
    /// counts, time ranges), so that a file that passes can be applied
    /// with [`TsFile::batches`] without failing half-way on damage.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<Summary> {
        let mut sum = Summary::default();
        let mut scan = self.batches();
        scan.log = Some(Vec::new());
        let mut range: Option<(i64, i64)> = None;
        for b in &mut scan {
            let b = b?;
            sum.rows += b.rows() as u64;
            sum.points += b.points() as u64;
            if let (Some(&lo), Some(&hi)) = (b.times.iter().min(), b.times.iter().max()) {
                range = Some(range.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))));
            }
        }
        sum.time_range = range;
        sum.pages = scan.pages;
        let log = scan.log.take().unwrap_or_default();
        sum.chunks = log.len();
        let mut chunks: HashMap<u64, (Seen, bool)> =
            log.into_iter().map(|s| (s.offset, (s, false))).collect();
        let devices = self.devices()?;
        sum.devices = devices.len();
        for d in &devices {
            let path = d.id.path();
            for s in self.series(d)? {
                if s.data_type != TsType::Vector {
                    sum.series += 1;
                }
                self.check_series(d, &s, &mut chunks)
                    .map_err(|e| e.in_device(&path).in_series(&s.measurement))?;
            }
        }
        if let Some((off, (s, _))) = chunks.iter().find(|(_, (_, used))| !used) {
            return Err(Error::corrupt(
                *off,
                "a chunk in the data section that the index does not list",
            )
            .in_device(&s.device.path())
            .in_series(&s.measurement));
        }
        Ok(sum)
    }

    fn check_series(
        &self,
        d: &DeviceIndex,
        s: &SeriesMeta,
        chunks: &mut HashMap<u64, (Seen, bool)>,
    ) -> Result<()> {
        let mut count = 0u64;
        let mut range: Option<(i64, i64)> = None;
        for cm in &s.chunks {
            let Some((seen, used)) = chunks.get_mut(&cm.offset) else {
                return Err(Error::corrupt(
                    s.offset,
                    format!(
                        "the index lists a chunk at byte {} where the data section has none",
                        cm.offset
                    ),
                ));
            };
            if *used {
                return Err(Error::corrupt(
                    s.offset,
                    format!("the chunk at byte {} is listed twice", cm.offset),
                ));
            }
            *used = true;
            if seen.device != d.id
                || seen.measurement != s.measurement
                || seen.data_type != s.data_type
            {
                return Err(Error::corrupt(
                    cm.offset,
                    format!(
                        "the index lists {}.{} ({}) here, the chunk is {}.{} ({})",
                        d.id,
                        s.measurement,
                        s.data_type,
                        seen.device,
                        seen.measurement,
                        seen.data_type
                    ),
                ));
            }
            if let Some(st) = &cm.statistics {
                seen.check(st, cm.offset, "chunk")?;
            }
            count += seen.count;
            if let Some(r) = seen.range {
                range = Some(range.map_or(r, |(a, z)| (a.min(r.0), z.max(r.1))));
            }
        }
        if s.chunks.len() == 1 {
            let (seen, _) = &chunks[&s.chunks[0].offset];
            seen.check(&s.statistics, s.offset, "series")?;
        } else {
            let st = &s.statistics;
            let want = if count == 0 { None } else { range };
            let have = if st.count == 0 {
                None
            } else {
                Some((st.start, st.end))
            };
            if st.count != count || want != have {
                return Err(Error::corrupt(
                    s.offset,
                    format!(
                        "series statistics say {} points in {:?}, its chunks hold {count} in {want:?}",
                        st.count, have
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What the scan saw of one chunk (for [`TsFile::validate`]).
#[derive(Debug, Clone)]
struct Seen {
    offset: u64,
    device: DeviceId,
    measurement: String,
    data_type: TsType,
    count: u64,
    range: Option<(i64, i64)>,
    first: Option<Value>,
    last: Option<Value>,
    sorted: bool,
}

impl Seen {
    fn new(h: &ChunkHeader, device: &DeviceId) -> Seen {
        Seen {
            offset: h.offset,
            device: device.clone(),
            measurement: h.measurement.clone(),
            data_type: h.data_type,
            count: 0,
            range: None,
            first: None,
            last: None,
            sorted: true,
        }
    }

    /// Adds the non-null rows of a page.
    fn add(&mut self, p: &Seen) {
        self.count += p.count;
        if let Some((lo, hi)) = p.range {
            if let Some((_, prev_hi)) = self.range {
                if lo <= prev_hi {
                    self.sorted = false;
                }
            }
            self.range = Some(self.range.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))));
        }
        self.sorted &= p.sorted;
        if self.first.is_none() {
            self.first = p.first.clone();
        }
        if p.last.is_some() {
            self.last = p.last.clone();
        }
    }

    /// Compares with statistics from the file.
    fn check(&self, st: &Statistics, at: u64, what: &str) -> Result<()> {
        let have = if st.count == 0 {
            None
        } else {
            Some((st.start, st.end))
        };
        if st.count != self.count || (self.count > 0 && have != self.range) {
            return Err(Error::corrupt(
                at,
                format!(
                    "{what} statistics say {} points in {have:?}, the pages hold {} in {:?}",
                    st.count, self.count, self.range
                ),
            ));
        }
        if self.sorted && self.count > 0 {
            for (name, want, got) in [
                ("first", &st.first, &self.first),
                ("last", &st.last, &self.last),
            ] {
                if let (Some(w), Some(g)) = (want, got) {
                    if !same(w, g) {
                        return Err(Error::corrupt(
                            at,
                            format!(
                                "{what} statistics say the {name} value is {w}, the pages hold {g}"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Value equality with floats compared by bits (NaN equals NaN).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        // Statistics of TIMESTAMP/DATE are read as INT64/INT32 already.
        _ => a == b,
    }
}

/// A decompressed page, or an empty one (all rows null).
enum Page {
    Empty,
    Data {
        header: PageHeader,
        bytes: Vec<u8>,
        /// File offset of the page header.
        offset: u64,
        /// File offset of the page body.
        body_at: u64,
    },
}

/// A chunk being read page by page.
struct ChunkCursor {
    h: ChunkHeader,
    pos: u64,
    pages: usize,
    seen: Seen,
}

impl ChunkCursor {
    fn new(h: ChunkHeader, device: &DeviceId) -> ChunkCursor {
        let seen = Seen::new(&h, device);
        ChunkCursor {
            pos: h.offset + h.header_len,
            h,
            pages: 0,
            seen,
        }
    }

    fn next_page<S: Source>(&mut self, f: &TsFile<S>) -> Result<Option<Page>> {
        let end = self.h.end();
        if self.pos == end {
            return Ok(None);
        }
        if self.h.single_page() && self.pages == 1 {
            return Err(Error::corrupt(
                self.pos,
                format!(
                    "{} bytes after the page of a single-page chunk",
                    end - self.pos
                ),
            ));
        }
        let at = self.pos;
        let t = self.h.data_type;
        let stats = !self.h.single_page();
        let (header, hl) =
            f.read_header(at, end, "page header", |c| PageHeader::read(c, t, stats))?;
        self.pages += 1;
        if header.uncompressed == 0 {
            if self.h.kind() != ChunkKind::AlignedValue {
                return Err(Error::corrupt(
                    at,
                    "empty page outside an aligned value chunk",
                ));
            }
            self.pos = at + hl;
            return Ok(Some(Page::Empty));
        }
        if header.uncompressed > f.limits.max_page_bytes {
            return Err(Error::unsupported(
                at,
                format!(
                    "page of {} bytes decompressed, over the reader's limit of {}",
                    header.uncompressed, f.limits.max_page_bytes
                ),
            ));
        }
        let body_at = at + hl;
        if header.compressed as u64 > end - body_at {
            return Err(Error::corrupt(
                at,
                format!(
                    "page of {} bytes runs past the chunk's end at byte {end}",
                    header.compressed
                ),
            ));
        }
        let body = read_range(&f.src, f.len, body_at, header.compressed as u64, "page")?;
        let bytes = decompress(self.h.compression, body, header.uncompressed)
            .map_err(|e| Error::corrupt(at, e))?;
        self.pos = body_at + header.compressed as u64;
        Ok(Some(Page::Data {
            header,
            bytes,
            offset: at,
            body_at,
        }))
    }

    /// Checks a page's statistics against its decoded rows and adds them
    /// to the chunk's.
    fn account(&mut self, page: &Seen, stats: Option<&Statistics>, at: u64) -> Result<()> {
        if let Some(st) = stats {
            page.check(st, at, "page")?;
        }
        self.seen.add(page);
        Ok(())
    }
}

/// Rebases an error inside a page body (decoded from offset 0) onto the
/// file: the exact byte for an uncompressed page, the page header and the
/// position in the decompressed bytes otherwise.
fn in_page(e: Error, c: Compression, page_at: u64, body_at: u64) -> Error {
    let k = e.offset().unwrap_or(0);
    if c == Compression::Uncompressed {
        e.rebase(body_at + k, "")
    } else {
        e.rebase(
            page_at,
            &format!("in the {c} page, at byte {k} of its decompressed bytes: "),
        )
    }
}

/// What a page's rows say, for its statistics.
fn page_seen(times: &[i64], values: &Column, nulls: Option<&[bool]>) -> Seen {
    let mut s = Seen {
        offset: 0,
        device: DeviceId { segments: vec![] },
        measurement: String::new(),
        data_type: TsType::Vector,
        count: 0,
        range: None,
        first: None,
        last: None,
        sorted: true,
    };
    let mut prev: Option<i64> = None;
    let mut first_row = None;
    let mut last_row = None;
    for (r, &t) in times.iter().enumerate() {
        if nulls.is_some_and(|n| n[r]) {
            continue;
        }
        s.count += 1;
        if prev.is_some_and(|p| t <= p) {
            s.sorted = false;
        }
        prev = Some(t);
        s.range = Some(s.range.map_or((t, t), |(a, z)| (a.min(t), z.max(t))));
        first_row.get_or_insert(r);
        last_row = Some(r);
    }
    if values.len() == times.len() {
        s.first = first_row.map(|r| values.get(r));
        s.last = last_row.map(|r| values.get(r));
    }
    s
}

/// The open chunk(s) of the scan.
enum Open {
    Plain(ChunkCursor),
    Aligned {
        time: ChunkCursor,
        values: Vec<ChunkCursor>,
        end: u64,
    },
}

/// The iterator of [`TsFile::batches`].
pub struct Batches<'f, S: Source> {
    f: &'f TsFile<S>,
    pos: u64,
    device: Option<DeviceId>,
    open: Option<Open>,
    done: bool,
    /// Chunks seen, for validation.
    log: Option<Vec<Seen>>,
    pages: usize,
}

impl<S: Source> Iterator for Batches<'_, S> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                let e = match &self.device {
                    Some(d) => e.in_device(&d.path()),
                    None => e,
                };
                Some(Err(e))
            }
        }
    }
}

impl<S: Source> Batches<'_, S> {
    fn step(&mut self) -> Result<Option<Batch>> {
        let f = self.f;
        let meta_offset = f.meta.meta_offset;
        loop {
            if let Some(open) = &mut self.open {
                let r = match open {
                    Open::Plain(c) => Self::plain_page(f, c, self.device.as_ref().expect("device")),
                    Open::Aligned { time, values, .. } => {
                        Self::aligned_page(f, time, values, self.device.as_ref().expect("device"))
                    }
                };
                match r? {
                    Some(b) => {
                        self.pages += 1;
                        return Ok(Some(b));
                    }
                    None => {
                        let open = self.open.take().expect("open");
                        self.pos = match open {
                            Open::Plain(c) => {
                                if let Some(log) = &mut self.log {
                                    log.push(c.seen);
                                }
                                c.h.end()
                            }
                            Open::Aligned { time, values, end } => {
                                if let Some(log) = &mut self.log {
                                    log.push(time.seen);
                                    log.extend(values.into_iter().map(|v| v.seen));
                                }
                                end
                            }
                        };
                        continue;
                    }
                }
            }
            if self.pos >= meta_offset {
                if self.pos > meta_offset {
                    return Err(Error::corrupt(
                        self.pos,
                        format!("the data section runs past the meta offset {meta_offset}"),
                    ));
                }
                return Ok(None);
            }
            let at = self.pos;
            let m = read_range(&f.src, f.len, at, 1, "marker")?[0];
            match m {
                marker::CHUNK_GROUP_HEADER => {
                    let (d, n) = f.read_header(at + 1, meta_offset, "chunk group header", |c| {
                        chunk_group_device(c, f.version)
                    })?;
                    self.device = Some(d);
                    self.pos = at + 1 + n;
                }
                marker::OPERATION_INDEX_RANGE => {
                    if meta_offset - at < 17 {
                        return Err(Error::corrupt(
                            at,
                            "operation index range runs into the index",
                        ));
                    }
                    self.pos = at + 17;
                }
                marker::SEPARATOR => {
                    return Err(Error::corrupt(
                        at,
                        format!("a separator before the meta offset {meta_offset}"),
                    ))
                }
                m if ChunkHeader::is_marker(m) => {
                    let Some(device) = self.device.clone() else {
                        return Err(Error::corrupt(at, "a chunk before any chunk group header"));
                    };
                    let h = self.chunk_header(at)?;
                    match h.kind() {
                        ChunkKind::Plain => {
                            self.open = Some(Open::Plain(ChunkCursor::new(h, &device)))
                        }
                        ChunkKind::AlignedValue => {
                            return Err(Error::corrupt(at, "a value chunk without its time chunk")
                                .in_series(&h.measurement))
                        }
                        ChunkKind::AlignedTime => {
                            let mut end = h.end();
                            let time = ChunkCursor::new(h, &device);
                            let mut values = Vec::new();
                            while end < meta_offset {
                                let m = read_range(&f.src, f.len, end, 1, "marker")?[0];
                                if !(ChunkHeader::is_marker(m)
                                    && m & marker::VALUE_COLUMN_MASK != 0)
                                {
                                    break;
                                }
                                let v = self.chunk_header(end)?;
                                end = v.end();
                                values.push(ChunkCursor::new(v, &device));
                            }
                            self.open = Some(Open::Aligned { time, values, end });
                        }
                    }
                }
                m => return Err(Error::corrupt(at, format!("unknown marker 0x{m:02x}"))),
            }
        }
    }

    fn chunk_header(&self, at: u64) -> Result<ChunkHeader> {
        let meta_offset = self.f.meta.meta_offset;
        let (h, _) = self
            .f
            .read_header(at, meta_offset, "chunk header", ChunkHeader::read)?;
        if h.end() > meta_offset {
            return Err(Error::corrupt(
                at,
                format!(
                    "chunk of {} bytes runs past the data section's end at byte {meta_offset}",
                    h.data_size
                ),
            )
            .in_series(&h.measurement));
        }
        if h.kind() != ChunkKind::AlignedValue && h.data_size == 0 {
            return Err(Error::corrupt(at, "chunk with no pages").in_series(&h.measurement));
        }
        if h.kind() == ChunkKind::AlignedTime
            && h.data_type != TsType::Vector
            && h.data_type != TsType::Int64
        {
            return Err(Error::corrupt(
                at,
                format!("time chunk of type {}", h.data_type),
            ));
        }
        if h.kind() != ChunkKind::AlignedTime && !h.encoding.supports(h.data_type) {
            return Err(
                Error::unsupported(at + 1, h.encoding.unsupported(h.data_type))
                    .in_series(&h.measurement),
            );
        }
        Ok(h)
    }

    fn plain_page<T: Source>(
        f: &TsFile<T>,
        c: &mut ChunkCursor,
        device: &DeviceId,
    ) -> Result<Option<Batch>> {
        let name = c.h.measurement.clone();
        let r: Result<Option<Batch>> = (|| {
            let Some(page) = c.next_page(f)? else {
                return Ok(None);
            };
            let Page::Data {
                header,
                bytes,
                offset,
                body_at,
            } = page
            else {
                unreachable!("empty pages are refused outside value chunks")
            };
            let comp = c.h.compression;
            let (times, values) = (|| {
                let mut cur = Cur::new(&bytes, 0);
                let tl = cur.ulen("page time length", cur.left())?;
                let tb = cur.take(tl, "page times")?;
                let times = decode_times(
                    Encoding::Ts2Diff,
                    tb,
                    f.limits.max_page_points,
                    cur.offset() - tl as u64,
                )
                .map_err(|e| limit_error(e, f.limits.max_page_points))?;
                let base = cur.offset();
                let values =
                    decode_values(c.h.data_type, c.h.encoding, cur.rest(), times.len(), base)?;
                Ok((times, values))
            })()
            .map_err(|e| in_page(e, comp, offset, body_at))?;
            let seen = page_seen(&times, &values, None);
            c.account(&seen, header.statistics.as_ref(), offset)?;
            Ok(Some(Batch {
                device: device.clone(),
                aligned: false,
                times,
                columns: vec![BatchColumn {
                    measurement: c.h.measurement.clone(),
                    data_type: c.h.data_type,
                    values,
                    nulls: None,
                }],
                chunk_offset: c.h.offset,
            }))
        })();
        r.map_err(|e| e.in_series(&name))
    }

    fn aligned_page<T: Source>(
        f: &TsFile<T>,
        time: &mut ChunkCursor,
        values: &mut [ChunkCursor],
        device: &DeviceId,
    ) -> Result<Option<Batch>> {
        let Some(page) = time.next_page(f).map_err(|e| e.in_series(""))? else {
            for v in values.iter_mut() {
                if v.h.data_size > 0
                    && v.next_page(f)
                        .map_err(|e| e.in_series(&v.h.measurement))?
                        .is_some()
                {
                    return Err(Error::corrupt(
                        v.pos,
                        format!(
                            "value chunk has more pages than its time chunk's {}",
                            time.pages
                        ),
                    )
                    .in_series(&v.h.measurement));
                }
            }
            return Ok(None);
        };
        let Page::Data {
            header,
            bytes,
            offset,
            body_at,
        } = page
        else {
            unreachable!("empty pages are refused outside value chunks")
        };
        let times = decode_times(time.h.encoding, &bytes, f.limits.max_page_points, 0)
            .map_err(|e| limit_error(e, f.limits.max_page_points))
            .map_err(|e| in_page(e, time.h.compression, offset, body_at).in_series(""))?;
        let n = times.len();
        let none = Column::Int64(Vec::new());
        let seen = page_seen(&times, &none, None);
        time.account(&seen, header.statistics.as_ref(), offset)
            .map_err(|e| e.in_series(""))?;
        let mut columns = Vec::with_capacity(values.len());
        for v in values.iter_mut() {
            let col = Self::value_page(f, v, &times, time.pages)
                .map_err(|e| e.in_series(&v.h.measurement))?;
            columns.push(col);
        }
        let _ = n;
        Ok(Some(Batch {
            device: device.clone(),
            aligned: true,
            times,
            columns,
            chunk_offset: time.h.offset,
        }))
    }

    fn value_page<T: Source>(
        f: &TsFile<T>,
        v: &mut ChunkCursor,
        times: &[i64],
        page_no: usize,
    ) -> Result<BatchColumn> {
        let n = times.len();
        let t = v.h.data_type;
        let ct = t
            .column_type()
            .ok_or_else(|| Error::corrupt(v.h.offset, "value chunk of type VECTOR"))?;
        let all_null = |ct| {
            let mut c = Column::with_capacity(ct, n);
            for _ in 0..n {
                c.push(Value::placeholder(ct));
            }
            c
        };
        let page = if v.h.data_size == 0 {
            Page::Empty
        } else {
            match v.next_page(f)? {
                Some(p) => p,
                None => {
                    return Err(Error::corrupt(
                        v.pos,
                        format!("value chunk ends before page {page_no} of its time chunk"),
                    ))
                }
            }
        };
        let (header, bytes, offset, body_at) = match page {
            Page::Empty => {
                return Ok(BatchColumn {
                    measurement: v.h.measurement.clone(),
                    data_type: t,
                    values: all_null(ct),
                    nulls: Some(vec![true; n]),
                })
            }
            Page::Data {
                header,
                bytes,
                offset,
                body_at,
            } => (header, bytes, offset, body_at),
        };
        let (values, nulls) = (|| {
            let mut c = Cur::new(&bytes, 0);
            let at = c.offset();
            let rows = c.i32("value page row count")?;
            if rows < 0 || rows as usize != n {
                return Err(Error::corrupt(
                    at,
                    format!("value page of {rows} rows, its time page has {n}"),
                ));
            }
            let bitmap = c.take(n.div_ceil(8), "value page bitmap")?;
            let nulls: Vec<bool> = (0..n)
                .map(|r| bitmap[r / 8] & (0x80 >> (r % 8)) == 0)
                .collect();
            let k = nulls.iter().filter(|&&x| !x).count();
            let base = c.offset();
            let dense = decode_values(t, v.h.encoding, c.rest(), k, base)?;
            // Spread the non-null values over the rows.
            let values = if k == n {
                dense
            } else {
                let mut full = Column::with_capacity(ct, n);
                let mut i = 0;
                for &null in &nulls {
                    if null {
                        full.push(Value::placeholder(ct));
                    } else {
                        full.push(dense.get(i));
                        i += 1;
                    }
                }
                full
            };
            Ok((values, nulls))
        })()
        .map_err(|e| in_page(e, v.h.compression, offset, body_at))?;
        let seen = page_seen(times, &values, Some(&nulls));
        v.account(&seen, header.statistics.as_ref(), offset)?;
        let any_null = nulls.iter().any(|&x| x);
        Ok(BatchColumn {
            measurement: v.h.measurement.clone(),
            data_type: t,
            values,
            nulls: any_null.then_some(nulls),
        })
    }
}

/// Turns a "more than N values" error from a time decoder into the
/// limit's name.
fn limit_error(e: Error, max: usize) -> Error {
    if e.reason().contains(&format!("more than the {max}")) {
        Error::unsupported(
            e.offset().unwrap_or(0),
            format!(
                "a page of more than {max} rows, over the reader's max_page_points limit ({})",
                e.reason()
            ),
        )
    } else {
        e
    }
}
