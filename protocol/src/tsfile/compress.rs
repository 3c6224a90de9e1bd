//! Page compression, as IoTDB's `ICompressor` writes each codec (read at
//! rel/1.2, `tsfile/compress/ICompressor.java`).
//!
//! ```text
//! id  codec        container (what the page body holds)                      checks
//! 0   UNCOMPRESSED the bytes                                                  sizes equal
//! 1   SNAPPY       one raw Snappy block (xerial Snappy.compress, no framing)  declared length
//! 2   GZIP         one gzip member (java.util.zip.GZIPOutputStream)           CRC-32, ISIZE
//! 7   LZ4          one raw LZ4 block, no frame, no size prefix (lz4-java)     exact length
//! 8   ZSTD         one zstd frame (zstd-jni Zstd.compress, max level)         content checksum if any
//! 9   LZMA2        an .xz stream (org.tukaani.xz XZOutputStream, preset 6)    block check (CRC-64)
//! ```
//! The page header gives the uncompressed size; every codec must produce
//! exactly that many bytes and consume all of its input. All five decoders
//! are pure Rust (snap, lz4_flex, flate2 on miniz_oxide, ruzstd,
//! lzma-rust2), so the build needs no C library.

use std::io::Read;

/// A TsFile compression type (`CompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// 0: none.
    Uncompressed,
    /// 1: raw Snappy block.
    Snappy,
    /// 2: gzip member.
    Gzip,
    /// 7: raw LZ4 block.
    Lz4,
    /// 8: zstd frame.
    Zstd,
    /// 9: xz stream.
    Lzma2,
}

impl Compression {
    /// The type for an id.
    ///
    /// # Errors
    /// The name of an id this reader does not decompress (LZO 3, SDT 4,
    /// PAA 5, PLA 6) or an unknown id.
    pub fn from_id(id: u8) -> Result<Compression, String> {
        Ok(match id {
            0 => Compression::Uncompressed,
            1 => Compression::Snappy,
            2 => Compression::Gzip,
            7 => Compression::Lz4,
            8 => Compression::Zstd,
            9 => Compression::Lzma2,
            3 => return Err("unsupported compression LZO (3)".into()),
            4 => return Err("unsupported compression SDT (4)".into()),
            5 => return Err("unsupported compression PAA (5)".into()),
            6 => return Err("unsupported compression PLA (6)".into()),
            _ => return Err(format!("unknown compression id {id}")),
        })
    }

    /// The id.
    pub fn id(self) -> u8 {
        match self {
            Compression::Uncompressed => 0,
            Compression::Snappy => 1,
            Compression::Gzip => 2,
            Compression::Lz4 => 7,
            Compression::Zstd => 8,
            Compression::Lzma2 => 9,
        }
    }

    /// IoTDB's name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "UNCOMPRESSED",
            Compression::Snappy => "SNAPPY",
            Compression::Gzip => "GZIP",
            Compression::Lz4 => "LZ4",
            Compression::Zstd => "ZSTD",
            Compression::Lzma2 => "LZMA2",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decompresses one page body into exactly `size` bytes. `size` must have
/// been checked against the reader's limits: it is allocated.
///
/// # Errors
/// A message saying what does not decompress.
pub(crate) fn decompress(c: Compression, body: Vec<u8>, size: usize) -> Result<Vec<u8>, String> {
    if c == Compression::Uncompressed {
        if body.len() != size {
            return Err(format!(
                "uncompressed page of {} bytes says it holds {size}",
                body.len()
            ));
        }
        return Ok(body);
    }
    decode(c, &body, size)
}

/// [`decompress`] from a borrowed body (`pipe::compress` too: IoTDB's
/// pipe compressors write the same containers). Allocates `size` and at
/// most a window of the same order; never more, whatever the body claims.
///
/// # Errors
/// A message saying what does not decompress.
pub(crate) fn decode(c: Compression, body: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let out = match c {
        Compression::Uncompressed => {
            if body.len() != size {
                return Err(format!(
                    "uncompressed page of {} bytes says it holds {size}",
                    body.len()
                ));
            }
            body.to_vec()
        }
        Compression::Snappy => {
            let n = snap::raw::decompress_len(body).map_err(|e| format!("snappy: {e}"))?;
            if n != size {
                return Err(format!(
                    "snappy block holds {n} bytes, the page header says {size}"
                ));
            }
            let mut out = vec![0u8; size];
            let got = snap::raw::Decoder::new()
                .decompress(body, &mut out)
                .map_err(|e| format!("snappy: {e}"))?;
            out.truncate(got);
            out
        }
        Compression::Lz4 => {
            let mut out = vec![0u8; size];
            let got = lz4_flex::block::decompress_into(body, &mut out)
                .map_err(|e| format!("lz4: {e}"))?;
            out.truncate(got);
            out
        }
        Compression::Gzip => {
            let mut d = flate2::read::GzDecoder::new(body);
            let out = read_limited(&mut d, size).map_err(|e| format!("gzip: {e}"))?;
            // Reading to the end checked the CRC-32 and length trailer.
            let rest = d.into_inner();
            if !rest.is_empty() {
                return Err(format!("gzip: {} bytes after the gzip member", rest.len()));
            }
            out
        }
        Compression::Zstd => {
            // The window is allocated up front: bound it by the page (a
            // single-segment frame, as zstd-jni writes, has window = content).
            let window = (size as u64).max(128 << 10);
            let mut d = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(body, window)
                .map_err(|e| format!("zstd: {e}"))?;
            let out = read_limited(&mut d, size).map_err(|e| format!("zstd: {e}"))?;
            let (rest, frame) = d.into_parts();
            if !rest.is_empty() {
                return Err(format!("zstd: {} bytes after the frame", rest.len()));
            }
            if let (Some(want), Some(got)) = (
                frame.get_checksum_from_data(),
                frame.get_calculated_checksum(),
            ) {
                if want != got {
                    return Err(format!(
                        "zstd: content checksum {got:08x} does not match {want:08x}"
                    ));
                }
            }
            out
        }
        Compression::Lzma2 => {
            let mut input = body;
            // The dictionary is allocated at the size the stream's block
            // header names (up to 4 GiB from a few bytes): allow what
            // IoTDB's encoder writes (preset 6, 8 MiB whatever the input)
            // or twice the output, never more.
            let dict = size.saturating_mul(2).max(XZ_PRESET_6_DICT);
            let limit_kb = u32::try_from(dict / 1024 + XZ_DECODER_KB).unwrap_or(u32::MAX);
            let mut d = lzma_rust2::XzReader::new_mem_limit(&mut input, false, limit_kb);
            let out = read_limited(&mut d, size).map_err(|e| {
                if e.kind() == std::io::ErrorKind::OutOfMemory {
                    format!("xz: the stream's dictionary is larger than the {} KiB allowed for {size} bytes of output", limit_kb)
                } else {
                    format!("xz: {e}")
                }
            })?;
            drop(d);
            if !input.is_empty() {
                return Err(format!("xz: {} bytes after the stream", input.len()));
            }
            out
        }
    };
    if out.len() != size {
        return Err(format!(
            "{c} page decompresses to {} bytes, the page header says {size}",
            out.len()
        ));
    }
    Ok(out)
}

/// The dictionary of an .xz stream from `XZOutputStream` at preset 6 (what
/// IoTDB's LZMA2 compressors write), whatever the input's size.
const XZ_PRESET_6_DICT: usize = 8 << 20;

/// An LZMA2 decoder's memory besides its dictionary, in KiB (lzma-rust2's
/// `get_memory_usage`: 40 KiB of state and a 64 KiB input buffer), with
/// room for rounding.
const XZ_DECODER_KB: usize = 128;

/// Reads `r` to its end, failing once it yields more than `size` bytes.
fn read_limited(r: &mut impl Read, size: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size);
    r.take(size as u64 + 1).read_to_end(&mut out)?;
    if out.len() > size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than the {size} bytes the page header says"),
        ));
    }
    // One more read to reach the end of the stream, where the trailer and
    // checksum are checked (the take above may have stopped exactly at size).
    let mut one = [0u8; 1];
    if r.read(&mut one)? != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than the {size} bytes the page header says"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Compresses as IoTDB's compressor for `c` does (test-only encoders).
    pub(crate) fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::Uncompressed => data.to_vec(),
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            Compression::Lz4 => lz4_flex::block::compress(data),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
            Compression::Lzma2 => {
                let mut w =
                    lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6))
                        .unwrap();
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
        }
    }

    pub(crate) const ALL: [Compression; 6] = [
        Compression::Uncompressed,
        Compression::Snappy,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Lzma2,
    ];

    #[test]
    fn every_codec_round_trips_and_checks_its_size() {
        let data: Vec<u8> = (0..5000u32).flat_map(|i| (i / 7).to_be_bytes()).collect();
        for c in ALL {
            let z = compress(c, &data);
            assert_eq!(Compression::from_id(c.id()).unwrap(), c);
            assert_eq!(decompress(c, z.clone(), data.len()).unwrap(), data, "{c}");
            assert!(
                decompress(c, z.clone(), data.len() + 1).is_err(),
                "{c} longer"
            );
            assert!(
                decompress(c, z.clone(), data.len() - 1).is_err(),
                "{c} shorter"
            );
            // Truncated bodies fail.
            if c != Compression::Uncompressed {
                assert!(
                    decompress(c, z[..z.len() - 1].to_vec(), data.len()).is_err(),
                    "{c} cut"
                );
            }
        }
    }

    #[test]
    fn checksums_catch_flipped_bytes() {
        let data: Vec<u8> = (0..3000u32).flat_map(|i| (i * 31).to_le_bytes()).collect();
        for c in [Compression::Gzip, Compression::Lzma2] {
            let mut z = compress(c, &data);
            let n = z.len();
            // The stored CRC of the data (gzip: 8 bytes from the end; xz: the
            // block check sits before the index and footer).
            let at = if c == Compression::Gzip {
                n - 8
            } else {
                n - 30
            };
            z[at] ^= 0x55;
            assert!(decompress(c, z, data.len()).is_err(), "{c}");
        }
    }

    #[test]
    fn unsupported_ids_are_named() {
        assert_eq!(
            Compression::from_id(3).unwrap_err(),
            "unsupported compression LZO (3)"
        );
        assert!(Compression::from_id(42).unwrap_err().contains("42"));
    }
}
