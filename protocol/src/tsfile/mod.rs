//! A TsFile reader: IoTDB 1.x files (format version 3) and Apache TsFile
//! 2.x files (version 4, tree and table model), streamed page by page.
//!
//! Facts: `shared/reference/iotdb-insertnode-tsfile.md` §3 and §5, checked
//! against IoTDB's tsfile module at rel/1.2.
//!
//! # Layout
//! ```text
//! 0          "TsFile" (6 bytes), u8 version (3 or 4)
//! 7          data section, until the separator:
//!              0x00 chunk group header: device (v3: varstring path;
//!                   v4: uvarint n + n varstrings, a segment may be null)
//!              chunk: u8 marker (0x01 multi-page, 0x05 single page; | 0x80 aligned
//!                   time column, | 0x40 aligned value column), varstring measurement,
//!                   uvarint dataSize, u8 type, u8 compression, u8 encoding,
//!                   then dataSize bytes of pages:
//!                     uvarint uncompressed (0 = empty page: nothing follows),
//!                     uvarint compressed, [statistics: multi-page chunks only],
//!                     compressed body:
//!                       plain chunk: uvarint timeLen, times (TS_2DIFF), values
//!                       time column: times in the chunk's encoding
//!                       value column: i32 rows, ceil(rows/8) bitmap bytes (MSB
//!                         first, set = present), the present values
//!              0x04 operation index range: i64, i64
//! metaOffset 0x02 separator, then the index: per device its TimeseriesMetadata
//!            and measurement index nodes, then the device index nodes
//! len-10-n   file metadata (n bytes): v3: root node, i64 metaOffset, bloom
//!            filter; v4: tables × root node, table schemas, i64 metaOffset,
//!            bloom filter, properties
//! len-10     i32 n
//! len-6      "TsFile"
//! ```
//! Varints are LEB128 (zigzag for the signed ones); everything else is
//! big-endian. There are no checksums in the format itself: the reader
//! checks what there is (both magics, the version, the metadata size, the
//! separator at the meta offset, every length against the bytes present,
//! every chunk's size against its pages, the codecs' own checksums, every
//! page's row count and time range and first/last values against its
//! statistics) and, in [`TsFile::validate`], the whole index against the
//! data section. What no reader can see: a changed byte inside a value of
//! a page whose codec has no checksum of its own (UNCOMPRESSED, SNAPPY,
//! LZ4), unless it is the page's first or last value (which the statistics
//! hold); GZIP, LZMA2 and checksummed ZSTD pages are covered whole.
//!
//! # Design constraints
//! - Memory is bounded by a page per open column (one aligned chunk group
//!   has one per value column), never by the file: [`TsFile::batches`]
//!   reads each page with one positional read when it is needed.
//! - Every allocation is bounded by bytes present in the file, or by the
//!   [`Limits`] on a page's decompressed size and row count.
//! - No input makes the reader panic; every error names the file offset
//!   and, where known, the device and series ([`Error`]).
//! - The time column of a non-aligned chunk is read as TS_2DIFF, as IoTDB
//!   does (its `time_encoder`, not stored in the file).
//!
//! # Example
//! ```
//! use protocol::tsfile::TsFile;
//!
//! let bytes = std::fs::read(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/tests/data/v4_tree_pypi_tsfile_2.5.0.tsfile"
//! ))?;
//! let file = TsFile::new(bytes)?;
//! file.validate()?; // everything checked before anything is applied
//! for batch in file.batches() {
//!     let tablet = batch?.into_tablet();
//!     assert_eq!(tablet.device, "root.sg.d1");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod compress;
mod encoding;
mod error;
mod io;
mod meta;
mod reader;

pub use compress::Compression;
pub use encoding::{Encoding, TsType};
pub use error::{Error, ErrorKind, Result};
pub use io::Source;
pub use meta::{
    ChunkHeader, ChunkKind, ChunkMeta, DeviceId, SeriesMeta, Statistics, TableColumn, Version,
};
pub use reader::{Batch, BatchColumn, Batches, DeviceIndex, Limits, Summary, TsFile, MAGIC};

#[cfg(test)]
mod tests;
