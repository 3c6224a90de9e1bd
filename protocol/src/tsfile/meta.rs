//! The structures of a TsFile's data and index sections, parsed from bytes:
//! chunk group, chunk and page headers, statistics, timeseries metadata,
//! index nodes and the file metadata (v3 and v4).

use super::compress::Compression;
use super::encoding::{Encoding, TsType};
use super::error::{Error, Result};
use super::io::Cur;
use crate::types::Value;

/// The TsFile format version (the byte after the head magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3: IoTDB 1.x.
    V3,
    /// 4: Apache TsFile 2.x (IoTDB 2.x, the PyPI `tsfile` package).
    V4,
}

impl Version {
    /// The version byte.
    pub fn byte(self) -> u8 {
        match self {
            Version::V3 => 3,
            Version::V4 => 4,
        }
    }
}

/// A device: its path in a v3 file; in a v4 file its id segments (tree
/// model: the path split as `["root.sg", "d1"]`; table model:
/// `[table, tag values...]`, a tag value may be null).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    /// The segments (one for a v3 path).
    pub segments: Vec<Option<String>>,
}

impl DeviceId {
    /// The device as one path: the segments joined with `.` (a null
    /// segment as `null`). For tree-model devices this is the IoTDB path.
    pub fn path(&self) -> String {
        let mut s = String::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(seg.as_deref().unwrap_or("null"));
        }
        s
    }

    fn read(c: &mut Cur<'_>, v: Version) -> Result<DeviceId> {
        match v {
            Version::V3 => Ok(DeviceId {
                segments: vec![Some(c.name("device path")?)],
            }),
            Version::V4 => {
                let n = c.ulen("device id segment count", c.left())?;
                let mut segments = Vec::with_capacity(n);
                for _ in 0..n {
                    segments.push(c.varstring("device id segment")?);
                }
                if segments.is_empty() {
                    return Err(c.bad("device id with no segments"));
                }
                Ok(DeviceId { segments })
            }
        }
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

/// Reads a chunk group header's device after its 0x00 marker.
pub(crate) fn chunk_group_device(c: &mut Cur<'_>, v: Version) -> Result<DeviceId> {
    DeviceId::read(c, v)
}

/// Marker bytes of the data section.
pub(crate) mod marker {
    pub const CHUNK_GROUP_HEADER: u8 = 0x00;
    pub const CHUNK_HEADER: u8 = 0x01;
    pub const SEPARATOR: u8 = 0x02;
    pub const OPERATION_INDEX_RANGE: u8 = 0x04;
    pub const ONLY_ONE_PAGE_CHUNK_HEADER: u8 = 0x05;
    pub const TIME_COLUMN_MASK: u8 = 0x80;
    pub const VALUE_COLUMN_MASK: u8 = 0x40;
}

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// A series of a non-aligned device: times and values in each page.
    Plain,
    /// The time column of an aligned device.
    AlignedTime,
    /// A value column of an aligned device: a null bitmap and values.
    AlignedValue,
}

/// A chunk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    /// File offset of the marker byte.
    pub offset: u64,
    /// The marker byte.
    pub marker: u8,
    /// The measurement (`""` for an aligned time column).
    pub measurement: String,
    /// Bytes of page headers and bodies after the header.
    pub data_size: u64,
    /// Data type.
    pub data_type: TsType,
    /// Compression of every page.
    pub compression: Compression,
    /// Encoding of the values (of the times, for an aligned time column).
    pub encoding: Encoding,
    /// Length of the header itself.
    pub header_len: u64,
}

impl ChunkHeader {
    /// Whether the chunk holds a single page (whose header then carries no
    /// statistics).
    pub fn single_page(&self) -> bool {
        self.marker & 0x3f == marker::ONLY_ONE_PAGE_CHUNK_HEADER
    }

    /// What the chunk holds.
    pub fn kind(&self) -> ChunkKind {
        if self.marker & marker::TIME_COLUMN_MASK != 0 {
            ChunkKind::AlignedTime
        } else if self.marker & marker::VALUE_COLUMN_MASK != 0 {
            ChunkKind::AlignedValue
        } else {
            ChunkKind::Plain
        }
    }

    /// The file offset just past the chunk's pages.
    pub fn end(&self) -> u64 {
        self.offset + self.header_len + self.data_size
    }

    /// Whether `m` is a chunk header marker.
    pub(crate) fn is_marker(m: u8) -> bool {
        matches!(
            m & 0x3f,
            marker::CHUNK_HEADER | marker::ONLY_ONE_PAGE_CHUNK_HEADER
        ) && m & 0xc0 != 0xc0
    }

    /// Parses a chunk header starting at its marker.
    pub(crate) fn read(c: &mut Cur<'_>) -> Result<ChunkHeader> {
        let offset = c.offset();
        let start = c.pos();
        let marker = c.u8("chunk marker")?;
        let measurement = c.name("chunk measurement id")?;
        let data_size = u64::from(c.uvarint("chunk data size")?);
        let at = c.offset();
        let data_type = TsType::from_id(c.u8("chunk data type")?).map_err(|e| c.bad(e))?;
        let compression = Compression::from_id(c.u8("chunk compression")?)
            .map_err(|e| Error::unsupported(at + 1, e).in_series(&measurement))?;
        let encoding = Encoding::from_id(c.u8("chunk encoding")?);
        Ok(ChunkHeader {
            offset,
            marker,
            measurement,
            data_size,
            data_type,
            compression,
            encoding,
            header_len: (c.pos() - start) as u64,
        })
    }
}

/// Statistics of a page, chunk or series (`Statistics.serialize`).
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    /// Points (non-null values; rows for an aligned time column).
    pub count: u64,
    /// The smallest time.
    pub start: i64,
    /// The largest time.
    pub end: i64,
    /// The value at the smallest time (not for BLOB, VECTOR).
    pub first: Option<Value>,
    /// The value at the largest time (not for BLOB, VECTOR).
    pub last: Option<Value>,
}

impl Statistics {
    /// Parses statistics of type `t`.
    pub(crate) fn read(c: &mut Cur<'_>, t: TsType) -> Result<Statistics> {
        let count = u64::from(c.uvarint("statistics count")?);
        let start = c.i64("statistics start time")?;
        let end = c.i64("statistics end time")?;
        let (first, last) = match t {
            TsType::Boolean => {
                let f = c.u8("first")? != 0;
                let l = c.u8("last")? != 0;
                c.i64("sum")?;
                (Some(Value::Boolean(f)), Some(Value::Boolean(l)))
            }
            TsType::Int32 | TsType::Date => {
                c.i32("min")?;
                c.i32("max")?;
                let f = c.i32("first")?;
                let l = c.i32("last")?;
                c.i64("sum")?;
                (Some(Value::Int32(f)), Some(Value::Int32(l)))
            }
            TsType::Int64 | TsType::Timestamp => {
                c.i64("min")?;
                c.i64("max")?;
                let f = c.i64("first")?;
                let l = c.i64("last")?;
                c.f64("sum")?;
                (Some(Value::Int64(f)), Some(Value::Int64(l)))
            }
            TsType::Float => {
                c.f32("min")?;
                c.f32("max")?;
                let f = c.f32("first")?;
                let l = c.f32("last")?;
                c.f64("sum")?;
                (Some(Value::Float(f)), Some(Value::Float(l)))
            }
            TsType::Double => {
                c.f64("min")?;
                c.f64("max")?;
                let f = c.f64("first")?;
                let l = c.f64("last")?;
                c.f64("sum")?;
                (Some(Value::Double(f)), Some(Value::Double(l)))
            }
            TsType::Text => {
                let f = c.binary("first")?.to_vec();
                let l = c.binary("last")?.to_vec();
                (Some(Value::Text(f)), Some(Value::Text(l)))
            }
            TsType::String => {
                let f = c.binary("first")?.to_vec();
                let l = c.binary("last")?.to_vec();
                c.binary("min")?;
                c.binary("max")?;
                (Some(Value::Text(f)), Some(Value::Text(l)))
            }
            TsType::Blob | TsType::Vector => (None, None),
        };
        Ok(Statistics {
            count,
            start,
            end,
            first,
            last,
        })
    }
}

/// A page header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PageHeader {
    pub uncompressed: usize,
    pub compressed: usize,
    pub statistics: Option<Statistics>,
}

impl PageHeader {
    /// Parses a page header; `with_stats` for multi-page chunks. An empty
    /// page (uncompressed size 0, aligned value chunks only) is the one
    /// byte `00`.
    pub(crate) fn read(c: &mut Cur<'_>, t: TsType, with_stats: bool) -> Result<PageHeader> {
        let uncompressed = c.uvarint("page uncompressed size")? as usize;
        if uncompressed == 0 {
            return Ok(PageHeader {
                uncompressed: 0,
                compressed: 0,
                statistics: None,
            });
        }
        let compressed = c.uvarint("page compressed size")? as usize;
        let statistics = if with_stats {
            Some(Statistics::read(c, t)?)
        } else {
            None
        };
        Ok(PageHeader {
            uncompressed,
            compressed,
            statistics,
        })
    }
}

/// Where a chunk of a series is, from the index.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMeta {
    /// File offset of the chunk header's marker.
    pub offset: u64,
    /// The chunk's statistics (absent when the series has one chunk: the
    /// series statistics are the chunk's).
    pub statistics: Option<Statistics>,
}

/// A series as the index describes it (`TimeseriesMetadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesMeta {
    /// The measurement (`""` for an aligned time column).
    pub measurement: String,
    /// Data type (VECTOR for an aligned time column).
    pub data_type: TsType,
    /// The series' statistics over the whole file.
    pub statistics: Statistics,
    /// Its chunks, in file order.
    pub chunks: Vec<ChunkMeta>,
    /// File offset of the record.
    pub offset: u64,
}

impl SeriesMeta {
    pub(crate) fn read(c: &mut Cur<'_>) -> Result<SeriesMeta> {
        let offset = c.offset();
        let kind = c.u8("timeseries metadata type")?;
        let measurement = c.name("timeseries measurement id")?;
        let data_type = TsType::from_id(c.u8("timeseries data type")?).map_err(|e| c.bad(e))?;
        let list_len = c.ulen("chunk metadata list size", c.left())?;
        let statistics = Statistics::read(c, data_type).map_err(|e| e.in_series(&measurement))?;
        let list_at = c.offset();
        let mut l = Cur::new(c.take(list_len, "chunk metadata list")?, list_at);
        let mut chunks = Vec::new();
        while l.left() > 0 {
            let at = l.offset();
            let off = l.i64("chunk offset")?;
            let off = u64::try_from(off)
                .map_err(|_| Error::corrupt(at, format!("chunk offset {off}")))?;
            let statistics = if kind & 0x3f != 0 {
                Some(Statistics::read(&mut l, data_type).map_err(|e| e.in_series(&measurement))?)
            } else {
                None
            };
            chunks.push(ChunkMeta {
                offset: off,
                statistics,
            });
        }
        if chunks.is_empty() {
            return Err(Error::corrupt(offset, "series with no chunks").in_series(&measurement));
        }
        if kind & 0x3f == 0 && chunks.len() != 1 {
            return Err(Error::corrupt(
                offset,
                format!("series marked single-chunk lists {} chunks", chunks.len()),
            )
            .in_series(&measurement));
        }
        Ok(SeriesMeta {
            measurement,
            data_type,
            statistics,
            chunks,
            offset,
        })
    }
}

/// Index node types (`MetadataIndexNodeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeType {
    InternalDevice,
    LeafDevice,
    InternalMeasurement,
    LeafMeasurement,
}

/// An index entry: a key (device or measurement) and a child offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    Device(DeviceId),
    Measurement(String),
}

/// A metadata index node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexNode {
    pub entries: Vec<(Key, u64)>,
    pub end_offset: u64,
    pub node_type: NodeType,
    /// File offset of the node itself.
    pub offset: u64,
}

impl IndexNode {
    /// Parses a node whose entries are device ids (`device_level`) or
    /// measurement names.
    pub(crate) fn read(c: &mut Cur<'_>, v: Version, device_level: bool) -> Result<IndexNode> {
        let offset = c.offset();
        // An entry takes at least 9 bytes.
        let n = c.ulen("index node entry count", c.left() / 9)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let key = if device_level {
                Key::Device(DeviceId::read(c, v)?)
            } else {
                Key::Measurement(c.name("index entry measurement")?)
            };
            let at = c.offset();
            let off = c.i64("index entry offset")?;
            let off = u64::try_from(off)
                .map_err(|_| Error::corrupt(at, format!("index offset {off}")))?;
            entries.push((key, off));
        }
        let at = c.offset();
        let end = c.i64("index node end offset")?;
        let end_offset = u64::try_from(end)
            .map_err(|_| Error::corrupt(at, format!("index end offset {end}")))?;
        let at = c.offset();
        let node_type = match c.u8("index node type")? {
            0 => NodeType::InternalDevice,
            1 => NodeType::LeafDevice,
            2 => NodeType::InternalMeasurement,
            3 => NodeType::LeafMeasurement,
            x => return Err(Error::corrupt(at, format!("index node type {x}"))),
        };
        let is_device = matches!(node_type, NodeType::InternalDevice | NodeType::LeafDevice);
        if is_device != device_level {
            return Err(Error::corrupt(
                at,
                format!(
                    "index node of type {node_type:?} where a {} node belongs",
                    if device_level {
                        "device"
                    } else {
                        "measurement"
                    }
                ),
            ));
        }
        if entries.is_empty() {
            return Err(Error::corrupt(offset, "index node with no entries"));
        }
        Ok(IndexNode {
            entries,
            end_offset,
            node_type,
            offset,
        })
    }

    /// The byte range of each child: from its offset to the next entry's,
    /// the last to `end_offset`.
    pub(crate) fn children(&self) -> Result<Vec<(&Key, u64, u64)>> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (i, (k, start)) in self.entries.iter().enumerate() {
            let end = self
                .entries
                .get(i + 1)
                .map_or(self.end_offset, |(_, next)| *next);
            if end <= *start {
                return Err(Error::corrupt(
                    self.offset,
                    format!("index entry {i} covers bytes {start}..{end}"),
                ));
            }
            out.push((k, *start, end));
        }
        Ok(out)
    }
}

/// A column of a v4 table schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// Column name.
    pub name: String,
    /// Data type.
    pub data_type: TsType,
    /// Category: 0 TAG, 1 FIELD, 2 ATTRIBUTE, 3 TIME.
    pub category: i32,
}

/// The file metadata at the end of the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileMeta {
    /// Device-level root nodes (v3: one; v4: one per table).
    pub roots: Vec<IndexNode>,
    /// v4 table schemas (table name, columns).
    pub tables: Vec<(String, Vec<TableColumn>)>,
    /// Offset of the separator byte: the end of the data section.
    pub meta_offset: u64,
    /// v4 properties.
    pub properties: Vec<(String, Option<String>)>,
}

impl FileMeta {
    pub(crate) fn read(c: &mut Cur<'_>, v: Version) -> Result<FileMeta> {
        let mut roots = Vec::new();
        let mut tables = Vec::new();
        let mut properties = Vec::new();
        match v {
            Version::V3 => roots.push(IndexNode::read(c, v, true)?),
            Version::V4 => {
                let n = c.ulen("table count", c.left() / 10)?;
                for _ in 0..n {
                    c.name("table name")?;
                    roots.push(IndexNode::read(c, v, true)?);
                }
                let n = c.ulen("table schema count", c.left() / 2)?;
                for _ in 0..n {
                    let name = c.name("table schema name")?;
                    let k = c.ulen("table column count", c.left() / 15)?;
                    let mut cols = Vec::with_capacity(k);
                    for _ in 0..k {
                        let col = String::from_utf8(c.binary("column name")?.to_vec())
                            .map_err(|_| c.bad("column name is not UTF-8"))?;
                        let t = TsType::from_id(c.u8("column type")?).map_err(|e| c.bad(e))?;
                        c.take(2, "column encoding and compression")?;
                        let at = c.offset();
                        let props = c.i32("column property count")?;
                        if props < 0 || props as usize > c.left() / 8 {
                            return Err(Error::corrupt(at, format!("{props} column properties")));
                        }
                        for _ in 0..props {
                            c.binary("property key")?;
                            c.binary("property value")?;
                        }
                        let category = c.i32("column category")?;
                        cols.push(TableColumn {
                            name: col,
                            data_type: t,
                            category,
                        });
                    }
                    tables.push((name, cols));
                }
            }
        }
        let at = c.offset();
        let mo = c.i64("meta offset")?;
        let meta_offset =
            u64::try_from(mo).map_err(|_| Error::corrupt(at, format!("meta offset {mo}")))?;
        // The bloom filter: bytes, bit count, hash count.
        let n = c.ulen("bloom filter length", c.left())?;
        c.take(n, "bloom filter")?;
        c.uvarint("bloom filter bits")?;
        c.uvarint("bloom filter hash count")?;
        if v == Version::V4 {
            let at = c.offset();
            let n = c.varint("property count")?;
            if n < 0 || n as usize > c.left() {
                return Err(Error::corrupt(at, format!("{n} properties")));
            }
            for _ in 0..n {
                let k = c.name("property key")?;
                let val = c.varstring("property value")?;
                properties.push((k, val));
            }
        }
        if c.left() != 0 {
            return Err(c.bad(format!(
                "{} unexpected bytes after the file metadata",
                c.left()
            )));
        }
        Ok(FileMeta {
            roots,
            tables,
            meta_offset,
            properties,
        })
    }
}
