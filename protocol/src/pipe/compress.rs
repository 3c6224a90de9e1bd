//! `TRANSFER_COMPRESSED` (type 300): IoTDB 1.3's compressed request, what a
//! sender with `connector.compressor` sends in place of each request. Read
//! in IoTDB's source as released in 1.3.3 (`PipeTransferCompressedReq`,
//! `PipeCompressor` and its five subclasses, `PipeCompressorFactory`, and
//! TsFile's `ICompressor` under them); both ends here speak it byte for
//! byte.
//!
//! ```text
//! TPipeTransferReq { version 1, type 300, body }, the body:
//!   u8                 n: how many compressors (IoTDB's sender: 1 to 127)
//!   n × { u8 id,       the compressor, in the order applied
//!         i32 length } the length of what that compressor was given
//!   the compressed request: compressor n-1( … compressor 0(
//!       u8 version, i16 type, the original request's body ) … )
//!
//! id  name    what the compressor writes (TsFile's ICompressor)
//! 0   snappy  one raw Snappy block (xerial Snappy.compress, no framing)
//! 1   gzip    one gzip member (java.util.zip.GZIPOutputStream, level 6)
//! 2   lz4     one raw LZ4 block, no frame, no size prefix (lz4-java)
//! 3   zstd    one zstd frame (zstd-jni Zstd.compress at
//!             connector.compressor.zstd.level, default 3)
//! 4   lzma2   an .xz stream (org.tukaani.xz XZOutputStream, LZMA2 preset 6,
//!             CRC-64 check; edgepipe's sender: preset 1, see below)
//! ```
//! Each compressor's output is any valid stream of its format: a sender
//! picks its level. edgepipe's lzma2 uses preset 1 where IoTDB's uses 6:
//! on the bench's machine data preset 6 was 5 % smaller (ratio 9.9 against
//! 9.4) at an eighteenth of the speed (1.5 against 28 MB/s here), so slow
//! that a 10 Mbit/s link went no faster than uncompressed. Every xz
//! decoder, IoTDB's included, reads either.
//! Integers are big-endian. A receiver undoes the compressors last first,
//! each into exactly the length recorded for it, and handles the request
//! it finds inside as if it had come alone. IoTDB's senders compress every
//! request but the handshake; so does edgepipe's.
//!
//! # Bounds (a compressed request arrives before any login)
//! A compressed body can claim far more than it holds. [`decompress`]
//! checks every recorded length before it allocates anything:
//! - at most [`MAX_COMPRESSORS`] compressors;
//! - each length at most the receiver's `thrift_max_frame_size` (by
//!   default [`MAX_INFLATED`]; [`decompress_within`]): a compressed request
//!   never unpacks to more than an uncompressed one could carry (IoTDB
//!   checks the same lengths against
//!   `pipe_receiver_req_decompressed_max_length_in_bytes` since 2.0);
//! - each length at most [`MAX_RATIO`] × the compressed bytes +
//!   [`INFLATE_SLACK`]: what a request makes the receiver hold is bounded
//!   by a fixed multiple of what it sent (DESIGN invariant 11). 1,024 is
//!   above deflate's own limit (1,032 : 1 only for runs of one byte), four
//!   times LZ4's and fifty times Snappy's, and above the densest IoT
//!   batches measured (1,000 devices reporting the same state at the same
//!   seconds: 124× with zstd, 320–623× with lzma2);
//! - each decoder stops at its recorded length and fails on a body that
//!   yields more or less, or leaves bytes over.
//!
//! A sender whose request would break a bound sends it otherwise
//! ([`compressed_body`]): over [`MAX_RATIO`], compressed with lz4 alone
//! (which cannot pass 255 : 1); over [`MAX_INFLATED`], uncompressed.

use std::io::Write;

use crate::tsfile::compress::{decode, Compression};

/// One of IoTDB's pipe compressors (`PipeCompressor.PipeCompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    /// 0: a raw Snappy block.
    Snappy,
    /// 1: a gzip member.
    Gzip,
    /// 2: a raw LZ4 block.
    Lz4,
    /// 3: a zstd frame, at this level (`connector.compressor.zstd.level`).
    Zstd(i32),
    /// 4: an .xz stream (LZMA2).
    Lzma2,
}

/// `connector.compressor.zstd.level`'s default: zstd's own
/// (`Zstd.defaultCompressionLevel()`).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The LZMA2 preset of edgepipe's lzma2 compressor (IoTDB's: 6; see the
/// module doc).
pub const LZMA2_PRESET: u32 = 1;

/// The most compressors one request may name. IoTDB's sender takes up to
/// 127; past a few the work only grows, and each one costs the receiver up
/// to the bound on its output, so a receiver takes at most this many.
pub const MAX_COMPRESSORS: usize = 8;

/// The most bytes a compressed request may unpack to: the default
/// `thrift_max_frame_size`, the largest request a node takes uncompressed.
pub const MAX_INFLATED: usize = 512 << 20;

/// The most bytes a compressed request may unpack to per byte it holds
/// (see the module doc).
pub const MAX_RATIO: usize = 1024;

/// What any compressed request may unpack to, whatever its size: a small
/// request's header and a few of its tablets.
pub const INFLATE_SLACK: usize = 64 << 10;

impl Compressor {
    /// Every compressor, by id, with zstd at its default level.
    pub const ALL: [Compressor; 5] = [
        Compressor::Snappy,
        Compressor::Gzip,
        Compressor::Lz4,
        Compressor::Zstd(DEFAULT_ZSTD_LEVEL),
        Compressor::Lzma2,
    ];

    /// The id on the wire.
    pub fn id(self) -> u8 {
        match self {
            Compressor::Snappy => 0,
            Compressor::Gzip => 1,
            Compressor::Lz4 => 2,
            Compressor::Zstd(_) => 3,
            Compressor::Lzma2 => 4,
        }
    }

    /// The compressor of an id (zstd at its default level: a receiver
    /// needs no level).
    pub fn from_id(id: u8) -> Option<Compressor> {
        Compressor::ALL.get(usize::from(id)).copied()
    }

    /// The name `connector.compressor` gives it (IoTDB's, lower case).
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Snappy => "snappy",
            Compressor::Gzip => "gzip",
            Compressor::Lz4 => "lz4",
            Compressor::Zstd(_) => "zstd",
            Compressor::Lzma2 => "lzma2",
        }
    }

    /// The compressor a name of `connector.compressor` means (any case),
    /// zstd at `zstd_level`.
    pub fn from_name(name: &str, zstd_level: i32) -> Option<Compressor> {
        Some(match name.to_ascii_lowercase().as_str() {
            "snappy" => Compressor::Snappy,
            "gzip" => Compressor::Gzip,
            "lz4" => Compressor::Lz4,
            "zstd" => Compressor::Zstd(zstd_level),
            "lzma2" => Compressor::Lzma2,
            _ => return None,
        })
    }

    /// The levels zstd takes (`connector.compressor.zstd.level`).
    pub fn zstd_levels() -> std::ops::RangeInclusive<i32> {
        zstd::compression_level_range()
    }

    /// Compresses `data` as IoTDB's compressor of this kind does (see the
    /// module doc's table).
    ///
    /// # Errors
    /// The codec's refusal (an input past what its format can describe, a
    /// zstd level out of range).
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Compressor::Snappy => snap::raw::Encoder::new()
                .compress_vec(data)
                .map_err(|e| format!("snappy: {e}")),
            Compressor::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 4 + 64),
                    flate2::Compression::new(6),
                );
                e.write_all(data)
                    .and_then(|()| e.finish())
                    .map_err(|e| format!("gzip: {e}"))
            }
            Compressor::Lz4 => Ok(lz4_flex::block::compress(data)),
            Compressor::Zstd(level) => {
                zstd::bulk::compress(data, level).map_err(|e| format!("zstd level {level}: {e}"))
            }
            Compressor::Lzma2 => {
                // Preset 1 (see the module doc), CRC-64 check as IoTDB's.
                let mut o = lzma_rust2::XzOptions::with_preset(LZMA2_PRESET);
                // The preset's window, or the input's size if smaller: the
                // same stream for less of the encoder's memory (about ten
                // times the window).
                let fit = u32::try_from(data.len().next_power_of_two()).unwrap_or(u32::MAX);
                o.lzma_options.dict_size = o.lzma_options.dict_size.min(fit.max(4096));
                let mut w = lzma_rust2::XzWriter::new(Vec::with_capacity(data.len() / 8 + 64), o)
                    .map_err(|e| format!("lzma2: {e}"))?;
                w.write_all(data).map_err(|e| format!("lzma2: {e}"))?;
                w.finish().map_err(|e| format!("lzma2: {e}"))
            }
        }
    }

    /// Decompresses `data` into exactly `len` bytes.
    fn decompress(self, data: &[u8], len: usize) -> Result<Vec<u8>, String> {
        let c = match self {
            Compressor::Snappy => Compression::Snappy,
            Compressor::Gzip => Compression::Gzip,
            Compressor::Lz4 => Compression::Lz4,
            Compressor::Zstd(_) => Compression::Zstd,
            Compressor::Lzma2 => Compression::Lzma2,
        };
        decode(c, data, len)
    }
}

impl std::fmt::Display for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The most bytes a compressed request holding `compressed` bytes of
/// compressed data may unpack to (each step and in the end), for a
/// receiver taking requests of at most `max` bytes.
pub fn inflate_bound(compressed: usize, max: usize) -> usize {
    compressed
        .saturating_mul(MAX_RATIO)
        .saturating_add(INFLATE_SLACK)
        .min(max)
}

/// A request as a compressor takes it: version, type, then the body's
/// `parts` in order, gathered into one buffer (a copy at memory speed,
/// against compression at a tenth of it).
pub fn inner_request(type_: i16, parts: &[&[u8]]) -> Vec<u8> {
    let len = 3 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut inner = Vec::with_capacity(len);
    inner.push(super::VERSION as u8);
    inner.extend_from_slice(&type_.to_be_bytes());
    for p in parts {
        inner.extend_from_slice(p);
    }
    inner
}

/// The body of a type-300 request carrying `inner` (an
/// [`inner_request`]), compressed by `chain` in order. `None` when the
/// request is best sent as it is: larger than [`MAX_INFLATED`] (a receiver
/// refuses to unpack it), or `chain` empty, too long or failing. A request
/// `chain` compresses past [`MAX_RATIO`] goes compressed with lz4 alone
/// instead, which every receiver takes (see the module doc).
pub fn compress_request(chain: &[Compressor], inner: &[u8]) -> Option<Vec<u8>> {
    if chain.is_empty() || chain.len() > MAX_COMPRESSORS || inner.len() > MAX_INFLATED {
        return None;
    }
    let wrap = |chain: &[Compressor]| -> Option<Vec<u8>> {
        let mut lengths = Vec::with_capacity(chain.len());
        let mut data: Option<Vec<u8>> = None;
        for c in chain {
            let input = data.as_deref().unwrap_or(inner);
            lengths.push((c.id(), input.len()));
            data = Some(c.compress(input).ok()?);
        }
        let data = data?;
        let bound = inflate_bound(data.len(), MAX_INFLATED);
        if lengths.iter().any(|&(_, n)| n > bound) {
            return None;
        }
        let mut body = Vec::with_capacity(1 + 5 * lengths.len() + data.len());
        body.push(lengths.len() as u8);
        for (id, n) in lengths {
            body.push(id);
            body.extend_from_slice(&(n as i32).to_be_bytes());
        }
        body.extend_from_slice(&data);
        Some(body)
    };
    wrap(chain).or_else(|| wrap(&[Compressor::Lz4]))
}

/// [`compress_request`] of the request of `type_` whose body is `parts`.
pub fn compressed_body(chain: &[Compressor], type_: i16, parts: &[&[u8]]) -> Option<Vec<u8>> {
    if chain.is_empty() || chain.len() > MAX_COMPRESSORS {
        return None;
    }
    compress_request(chain, &inner_request(type_, parts))
}

/// The request a type-300 body carries, unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inner {
    /// Its `version`.
    pub version: i8,
    /// Its `type`.
    pub type_: i16,
    /// The compressors it came through, in the order applied.
    pub chain: Vec<Compressor>,
    /// Version, type and body, as decompressed.
    bytes: Vec<u8>,
}

impl Inner {
    /// Its body.
    pub fn body(&self) -> &[u8] {
        &self.bytes[3..]
    }
}

/// [`decompress_within`] with the default request limit, [`MAX_INFLATED`].
///
/// # Errors
/// As [`decompress_within`].
pub fn decompress(body: &[u8]) -> Result<Inner, String> {
    decompress_within(body, MAX_INFLATED)
}

/// Unpacks a type-300 body for a receiver taking requests of at most `max`
/// bytes (its `thrift_max_frame_size`), within the bounds of the module
/// doc: the lengths are checked before anything is allocated, and each
/// step allocates only its own output (and a codec's window of the same
/// order).
///
/// # Errors
/// What is wrong, in words: a body too short for its header, an unknown
/// compressor id, a length past a bound, data that does not decompress
/// to its recorded length.
pub fn decompress_within(body: &[u8], max: usize) -> Result<Inner, String> {
    let Some((&n, rest)) = body.split_first() else {
        return Err("empty body".into());
    };
    let n = usize::from(n);
    if n == 0 || n > MAX_COMPRESSORS {
        return Err(format!(
            "{n} compressors (1 to {MAX_COMPRESSORS} are accepted)"
        ));
    }
    if rest.len() < 5 * n {
        return Err(format!(
            "the body ends within its {n} compressor headers ({} bytes)",
            body.len()
        ));
    }
    let (heads, mut data) = rest.split_at(5 * n);
    let bound = inflate_bound(data.len(), max);
    let mut chain = Vec::with_capacity(n);
    let mut lengths = Vec::with_capacity(n);
    for h in heads.chunks_exact(5) {
        let c = Compressor::from_id(h[0]).ok_or_else(|| {
            format!(
                "unknown compressor id {} (0 snappy, 1 gzip, 2 lz4, 3 zstd, 4 lzma2)",
                h[0]
            )
        })?;
        let len = i32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        let Ok(len) = usize::try_from(len) else {
            return Err(format!("{c}: negative length {len}"));
        };
        if len > bound {
            return Err(format!(
                "{c}: says it unpacks to {len} bytes from {} compressed bytes; at most {bound} are accepted ({MAX_RATIO} : 1 plus {INFLATE_SLACK} bytes, at most {max}: thrift_max_frame_size)",
                data.len()
            ));
        }
        chain.push(c);
        lengths.push(len);
    }
    let mut out: Option<Vec<u8>> = None;
    for (c, &len) in chain.iter().zip(&lengths).rev() {
        let next = c.decompress(data, len)?;
        out = Some(next);
        data = out.as_deref().expect("just set");
    }
    let bytes = out.expect("at least one compressor");
    if bytes.len() < 3 {
        return Err(format!(
            "the request inside is {} bytes, short of its version and type",
            bytes.len()
        ));
    }
    Ok(Inner {
        version: bytes[0] as i8,
        type_: i16::from_be_bytes([bytes[1], bytes[2]]),
        chain,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::{TRANSFER_TABLET_BATCH, TRANSFER_TABLET_RAW};

    use crate::test_util::hex;

    /// Bytes shaped like a batch of sensor rows: regular times, slowly
    /// varying values.
    fn rows(n: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(n * 16);
        for i in 0..n as i64 {
            b.extend_from_slice(&(1_700_000_000_000 + i * 1000).to_be_bytes());
            b.extend_from_slice(&(20.0 + (i % 37) as f64 / 10.0).to_be_bytes());
        }
        b
    }

    #[test]
    fn every_compressor_and_chains_round_trip() {
        let body = rows(5000);
        let parts: Vec<&[u8]> = body.chunks(333).collect();
        let mut chains: Vec<Vec<Compressor>> = Compressor::ALL.iter().map(|&c| vec![c]).collect();
        chains.push(vec![Compressor::Lz4, Compressor::Zstd(3)]);
        chains.push(vec![
            Compressor::Zstd(-5),
            Compressor::Gzip,
            Compressor::Snappy,
        ]);
        chains.push(vec![Compressor::Zstd(19)]);
        for chain in chains {
            let z = compressed_body(&chain, TRANSFER_TABLET_BATCH, &parts).unwrap();
            assert!(z.len() < body.len() / 2, "{chain:?}: {} bytes", z.len());
            // The header: count, then id and input length of each step.
            assert_eq!(usize::from(z[0]), chain.len());
            assert_eq!(z[1], chain[0].id());
            assert_eq!(
                i32::from_be_bytes(z[2..6].try_into().unwrap()),
                body.len() as i32 + 3
            );
            let inner = decompress(&z).unwrap();
            assert_eq!((inner.version, inner.type_), (1, TRANSFER_TABLET_BATCH));
            assert_eq!(inner.body(), &body[..], "{chain:?}");
            let ids: Vec<u8> = inner.chain.iter().map(|c| c.id()).collect();
            assert_eq!(ids, chain.iter().map(|c| c.id()).collect::<Vec<_>>());
            // Cut anywhere, or a recorded length off by one: refused.
            for cut in [0, 1, 5, 6, z.len() / 2, z.len() - 1] {
                assert!(decompress(&z[..cut]).is_err(), "{chain:?} cut at {cut}");
            }
            for delta in [1i32, -1] {
                let mut bad = z.clone();
                let at = 2 + 5 * (chain.len() - 1);
                let n = i32::from_be_bytes(bad[at..at + 4].try_into().unwrap()) + delta;
                bad[at..at + 4].copy_from_slice(&n.to_be_bytes());
                assert!(decompress(&bad).is_err(), "{chain:?} length {delta:+}");
            }
        }
    }

    /// A request built by hand from IoTDB's layout, the payload compressed
    /// by the codec alone: byte for byte what `toTPipeTransferReq` writes
    /// around it.
    #[test]
    fn the_layout_is_iotdbs() {
        let body = b"abc";
        let inner = hex("01 0003 616263");
        for c in Compressor::ALL {
            let payload = c.compress(&inner).unwrap();
            let mut want = vec![1, c.id(), 0, 0, 0, 6];
            want.extend_from_slice(&payload);
            assert_eq!(
                compressed_body(&[c], TRANSFER_TABLET_RAW, &[body]).unwrap(),
                want,
                "{c}"
            );
            let got = decompress(&want).unwrap();
            assert_eq!((got.type_, got.body()), (TRANSFER_TABLET_RAW, &body[..]));
        }
        // Snappy of "\x01\x00\x03abc" as xerial writes it: the varint
        // length, then one literal.
        assert_eq!(
            Compressor::Snappy.compress(&inner).unwrap(),
            hex("06 14 010003616263")
        );
        // Gzip: a member with the deflate method; lz4: one literal run.
        assert_eq!(
            &Compressor::Gzip.compress(&inner).unwrap()[..3],
            &[0x1f, 0x8b, 8]
        );
        assert_eq!(
            Compressor::Lz4.compress(&inner).unwrap(),
            hex("60 010003616263")
        );
        // zstd: a frame; xz: a stream with the CRC-64 check.
        assert_eq!(
            &Compressor::Zstd(3).compress(&inner).unwrap()[..4],
            &[0x28, 0xb5, 0x2f, 0xfd]
        );
        let xz = Compressor::Lzma2.compress(&inner).unwrap();
        assert_eq!(&xz[..8], &hex("fd377a585a00 0004"));
        assert_eq!(Compressor::from_name("ZSTD", 7), Some(Compressor::Zstd(7)));
        assert_eq!(Compressor::from_name("lzo", 3), None);
        assert_eq!(Compressor::from_id(5), None);
    }

    #[test]
    fn claims_past_the_bounds_are_refused_before_anything_is_allocated() {
        // One zstd step claiming 1 GiB from 9 bytes, and from 1 MiB.
        for (data, len) in [(9usize, 1i32 << 30), (1 << 20, 1 << 30), (100, 200_000)] {
            let mut b = vec![1, 3];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend(std::iter::repeat_n(0u8, data));
            let e = decompress(&b).unwrap_err();
            assert!(e.contains("at most"), "{e}");
        }
        for (b, needle) in [
            (vec![], "empty body"),
            (vec![0], "0 compressors"),
            (vec![9, 0, 0, 0, 0, 1], "9 compressors"),
            (vec![1, 7, 0, 0, 0, 1, 0], "unknown compressor id 7"),
            (vec![1, 0, 0xff, 0xff, 0xff, 0xff, 0], "negative length"),
            (
                vec![2, 0, 0, 0, 0, 1],
                "ends within its 2 compressor headers",
            ),
        ] {
            let e = decompress(&b).unwrap_err();
            assert!(e.contains(needle), "{b:?}: {e}");
        }
        // A stream that unpacks to more than it says is cut off there.
        let zeros = vec![0u8; 100_000];
        let z = Compressor::Zstd(3).compress(&zeros).unwrap();
        let mut b = vec![1, 3];
        b.extend_from_slice(&1000i32.to_be_bytes());
        b.extend_from_slice(&z);
        assert!(decompress(&b).is_err());
        // The request inside must hold its version and type.
        let z = Compressor::Lz4.compress(&[1, 0]).unwrap();
        let mut b = vec![1, 2, 0, 0, 0, 2];
        b.extend_from_slice(&z);
        assert!(decompress(&b).unwrap_err().contains("short of its version"));
    }

    #[test]
    fn a_sender_never_makes_what_a_receiver_refuses() {
        // 64 MiB of zeros: zstd packs it past MAX_RATIO, so it goes as lz4
        // (at most 255 : 1), which a receiver takes.
        let zeros = vec![0u8; 64 << 20];
        let z = compressed_body(&[Compressor::Zstd(3)], TRANSFER_TABLET_RAW, &[&zeros]).unwrap();
        assert_eq!(z[1], Compressor::Lz4.id());
        let inner = decompress(&z).unwrap();
        assert_eq!(inner.body().len(), zeros.len());
        // A chain the receiver would refuse (more than MAX_COMPRESSORS), and
        // no chain, send uncompressed.
        assert_eq!(compressed_body(&[Compressor::Lz4; 9], 3, &[b"x"]), None);
        assert_eq!(compressed_body(&[], 3, &[b"x"]), None);
        assert_eq!(inflate_bound(0, MAX_INFLATED), INFLATE_SLACK);
        assert_eq!(inflate_bound(usize::MAX, MAX_INFLATED), MAX_INFLATED);
        // A receiver with a smaller frame limit takes no more unpacked.
        let z = compressed_body(
            &[Compressor::Zstd(3)],
            TRANSFER_TABLET_RAW,
            &[&zeros[..1 << 20]],
        )
        .unwrap();
        assert!(decompress_within(&z, 1 << 20)
            .unwrap_err()
            .contains("at most 1048576"));
        assert_eq!(
            decompress_within(&z, (1 << 20) + 3).unwrap().body().len(),
            1 << 20
        );
    }
}
