//! Value encodings of TsFile pages, as IoTDB 1.2's decoders read them
//! (`tsfile/encoding/decoder/*.java` at rel/1.2; facts in
//! `shared/reference/iotdb-insertnode-tsfile.md` §3.8).
//!
//! ```text
//! encoding       BOOLEAN   INT32 (DATE)   INT64 (TIMESTAMP, time)   FLOAT / DOUBLE           TEXT (STRING, BLOB)
//! PLAIN 0        u8        zigzag varint  i64 BE                    f32 / f64 BE             zigzag varint len + bytes
//! RLE 2          int RLE   int RLE        long RLE                  FloatDecoder over RLE    -
//! TS_2DIFF 4     -         int 2-diff     long 2-diff               FloatDecoder over 2-diff -
//! GORILLA 8      -         int Gorilla    long Gorilla              float / double Gorilla   -
//! DICTIONARY 1   -         -              -                         -                        dictionary + int RLE codes
//!
//! TS_2DIFF block (repeated until the bytes end):
//!   i32 n, i32 width, minDelta (i32 | i64), first (i32 | i64), ceil(n*width/8) bytes of
//!   n packed deltas, MSB first; values: first, then prev + minDelta + delta[k] (wrapping)
//! RLE block (repeated until the bytes end):
//!   uvarint L, then L bytes: u8 bitWidth, runs until the L bytes end:
//!     uvarint h; h even: h/2 copies of one value in ceil(bitWidth/8) bytes
//!                        (int: little-endian; long: big-endian, IoTDB's quirk)
//!               h odd:  u8 lastCount, h/2 groups of 8 values packed MSB first in
//!                        bitWidth bytes each; the last group holds lastCount values
//! Gorilla (v2) bit stream, MSB first: the first value raw (32 / 64 bits); then per value
//!   0 = same; 10 = xor with the stored window; 11 = lead (5 / 6 bits), sig-1 (5 / 6 bits),
//!   then sig bits; ends with the end marker (INT32 MIN, INT64 MIN, float / double NaN bits)
//! FloatDecoder: uvarint p, then the int (FLOAT) or long (DOUBLE) stream; value = v / 10^p
//! DICTIONARY: zigzag varint n, n × (zigzag varint len + bytes), then an int RLE stream of codes
//! ```
//! Every decoder here reads one page's stream to its own end and must
//! produce exactly the number of values the page needs; producing more
//! stops at the first extra value, so the output is bounded by that count.

use crate::tablet::Column;

use super::error::{Error, Result};
use super::io::Cur;

/// A TsFile data type (`TSDataType`), including the types TsFile 2.x (v4)
/// added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TsType {
    /// 0.
    Boolean,
    /// 1.
    Int32,
    /// 2.
    Int64,
    /// 3.
    Float,
    /// 4.
    Double,
    /// 5.
    Text,
    /// 6: the time column of an aligned device.
    Vector,
    /// 8 (v4): an INT64 holding a timestamp.
    Timestamp,
    /// 9 (v4): an INT32 holding `year·10000 + month·100 + day`.
    Date,
    /// 10 (v4): bytes.
    Blob,
    /// 11 (v4): UTF-8 text.
    String,
}

impl TsType {
    /// The type for an id.
    ///
    /// # Errors
    /// Unknown ids.
    pub fn from_id(id: u8) -> Result<TsType, String> {
        Ok(match id {
            0 => TsType::Boolean,
            1 => TsType::Int32,
            2 => TsType::Int64,
            3 => TsType::Float,
            4 => TsType::Double,
            5 => TsType::Text,
            6 => TsType::Vector,
            8 => TsType::Timestamp,
            9 => TsType::Date,
            10 => TsType::Blob,
            11 => TsType::String,
            _ => return Err(format!("unknown data type id {id}")),
        })
    }

    /// The id.
    pub fn id(self) -> u8 {
        match self {
            TsType::Boolean => 0,
            TsType::Int32 => 1,
            TsType::Int64 => 2,
            TsType::Float => 3,
            TsType::Double => 4,
            TsType::Text => 5,
            TsType::Vector => 6,
            TsType::Timestamp => 8,
            TsType::Date => 9,
            TsType::Blob => 10,
            TsType::String => 11,
        }
    }

    /// IoTDB's name.
    pub fn name(self) -> &'static str {
        match self {
            TsType::Boolean => "BOOLEAN",
            TsType::Int32 => "INT32",
            TsType::Int64 => "INT64",
            TsType::Float => "FLOAT",
            TsType::Double => "DOUBLE",
            TsType::Text => "TEXT",
            TsType::Vector => "VECTOR",
            TsType::Timestamp => "TIMESTAMP",
            TsType::Date => "DATE",
            TsType::Blob => "BLOB",
            TsType::String => "STRING",
        }
    }

    /// The edgepipe column type its values decode into: TIMESTAMP as
    /// INT64, DATE as INT32, BLOB and STRING as TEXT. `None` for VECTOR.
    pub fn column_type(self) -> Option<crate::types::DataType> {
        use crate::types::DataType as D;
        Some(match self {
            TsType::Boolean => D::Boolean,
            TsType::Int32 | TsType::Date => D::Int32,
            TsType::Int64 | TsType::Timestamp => D::Int64,
            TsType::Float => D::Float,
            TsType::Double => D::Double,
            TsType::Text | TsType::Blob | TsType::String => D::Text,
            TsType::Vector => return None,
        })
    }
}

impl std::fmt::Display for TsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A TsFile encoding (`TSEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// 0.
    Plain,
    /// 1 (TEXT).
    Dictionary,
    /// 2.
    Rle,
    /// 4.
    Ts2Diff,
    /// 8 (Gorilla v2).
    Gorilla,
    /// Any other id: named in errors, never decoded (DIFF 3, BITMAP 5,
    /// GORILLA_V1 6, REGULAR 7, ZIGZAG 9, FREQ 10, CHIMP 11, SPRINTZ 12,
    /// RLBE 13, CAMEL 14, ...).
    Other(u8),
}

impl Encoding {
    /// The encoding for an id (never fails: unknown ids are kept to be
    /// named in the error when a page needs them).
    pub fn from_id(id: u8) -> Encoding {
        match id {
            0 => Encoding::Plain,
            1 => Encoding::Dictionary,
            2 => Encoding::Rle,
            4 => Encoding::Ts2Diff,
            8 => Encoding::Gorilla,
            x => Encoding::Other(x),
        }
    }

    /// The id.
    pub fn id(self) -> u8 {
        match self {
            Encoding::Plain => 0,
            Encoding::Dictionary => 1,
            Encoding::Rle => 2,
            Encoding::Ts2Diff => 4,
            Encoding::Gorilla => 8,
            Encoding::Other(x) => x,
        }
    }

    /// IoTDB's name.
    pub fn name(self) -> &'static str {
        match self.id() {
            0 => "PLAIN",
            1 => "DICTIONARY",
            2 => "RLE",
            3 => "DIFF",
            4 => "TS_2DIFF",
            5 => "BITMAP",
            6 => "GORILLA_V1",
            7 => "REGULAR",
            8 => "GORILLA",
            9 => "ZIGZAG",
            10 => "FREQ",
            11 => "CHIMP",
            12 => "SPRINTZ",
            13 => "RLBE",
            14 => "CAMEL",
            _ => "UNKNOWN",
        }
    }

    /// Whether this reader decodes `t` in this encoding.
    pub fn supports(self, t: TsType) -> bool {
        use TsType as T;
        match self {
            Encoding::Plain => t != T::Vector,
            Encoding::Rle | Encoding::Ts2Diff => {
                matches!(
                    t,
                    T::Int32 | T::Date | T::Int64 | T::Timestamp | T::Vector | T::Float | T::Double
                ) || (self == Encoding::Rle && t == T::Boolean)
            }
            Encoding::Gorilla => matches!(
                t,
                T::Int32 | T::Date | T::Int64 | T::Timestamp | T::Vector | T::Float | T::Double
            ),
            Encoding::Dictionary => matches!(t, T::Text | T::String | T::Blob),
            Encoding::Other(_) => false,
        }
    }

    /// The message for an encoding this reader does not decode for `t`.
    pub(crate) fn unsupported(self, t: TsType) -> String {
        match self {
            Encoding::Other(id) => format!("unsupported encoding {} ({id})", self.name()),
            _ => format!("unsupported encoding {} for {t}", self.name()),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes a page's value stream `b` (at file offset `base`) of type `t`
/// in encoding `e`: exactly `n` values.
///
/// # Errors
/// Unsupported combinations; streams that hold fewer or more values than
/// `n`, or that do not decode.
pub(crate) fn decode_values(
    t: TsType,
    e: Encoding,
    b: &[u8],
    n: usize,
    base: u64,
) -> Result<Column> {
    if !e.supports(t) || t == TsType::Vector {
        return Err(Error::unsupported(base, e.unsupported(t)));
    }
    let mut c = Cur::new(b, base);
    let col = match (e, t) {
        (Encoding::Plain, TsType::Boolean) => {
            let v = c.take(b.len(), "values")?;
            Column::Boolean(v.iter().map(|&x| x != 0).collect())
        }
        (Encoding::Plain, TsType::Int32 | TsType::Date) => {
            let mut v = Vec::with_capacity(n.min(b.len()));
            while c.left() > 0 {
                more(&c, v.len(), n)?;
                v.push(c.varint("INT32 value")?);
            }
            Column::Int32(v)
        }
        (Encoding::Plain, TsType::Int64 | TsType::Timestamp) => {
            Column::Int64(fixed(&mut c, 8, n, |x| {
                i64::from_be_bytes(x.try_into().expect("8"))
            })?)
        }
        (Encoding::Plain, TsType::Float) => Column::Float(fixed(&mut c, 4, n, |x| {
            f32::from_bits(u32::from_be_bytes(x.try_into().expect("4")))
        })?),
        (Encoding::Plain, TsType::Double) => Column::Double(fixed(&mut c, 8, n, |x| {
            f64::from_bits(u64::from_be_bytes(x.try_into().expect("8")))
        })?),
        (Encoding::Plain, TsType::Text | TsType::String | TsType::Blob) => {
            let mut v = Vec::with_capacity(n.min(b.len()));
            while c.left() > 0 {
                more(&c, v.len(), n)?;
                let at = c.offset();
                let len = c.varint("TEXT length")?;
                if len < 0 {
                    return Err(Error::corrupt(at, format!("TEXT length {len}")));
                }
                v.push(c.take(len as usize, "TEXT value")?.to_vec());
            }
            Column::Text(v)
        }
        (Encoding::Dictionary, _) => {
            let at = c.offset();
            let size = c.varint("dictionary size")?;
            if size < 0 || size as usize > c.left() {
                return Err(Error::corrupt(
                    at,
                    format!("dictionary of {size} entries in {} bytes", c.left()),
                ));
            }
            let mut dict = Vec::with_capacity(size as usize);
            for _ in 0..size {
                let at = c.offset();
                let len = c.varint("dictionary entry length")?;
                if len < 0 {
                    return Err(Error::corrupt(at, format!("dictionary entry length {len}")));
                }
                dict.push(c.take(len as usize, "dictionary entry")?);
            }
            let codes = rle(&mut c, n, 32)?;
            let mut v = Vec::with_capacity(codes.len());
            for code in codes {
                let entry = usize::try_from(code)
                    .ok()
                    .and_then(|i| dict.get(i))
                    .ok_or_else(|| {
                        c.bad(format!("dictionary code {code} of {} entries", dict.len()))
                    })?;
                v.push(entry.to_vec());
            }
            Column::Text(v)
        }
        (Encoding::Rle, TsType::Boolean) => {
            Column::Boolean(rle(&mut c, n, 32)?.into_iter().map(|x| x != 0).collect())
        }
        (Encoding::Rle, TsType::Int32 | TsType::Date) => {
            Column::Int32(rle(&mut c, n, 32)?.into_iter().map(|x| x as i32).collect())
        }
        (Encoding::Rle, TsType::Int64 | TsType::Timestamp) => Column::Int64(rle(&mut c, n, 64)?),
        (Encoding::Ts2Diff, TsType::Int32 | TsType::Date) => Column::Int32(ts2diff_i32(&mut c, n)?),
        (Encoding::Ts2Diff, TsType::Int64 | TsType::Timestamp) => {
            Column::Int64(ts2diff_i64(&mut c, n)?)
        }
        (Encoding::Rle | Encoding::Ts2Diff, TsType::Float) => {
            let div = precision(&mut c)?;
            let ints = if e == Encoding::Rle {
                rle(&mut c, n, 32)?.into_iter().map(|x| x as i32).collect()
            } else {
                ts2diff_i32(&mut c, n)?
            };
            Column::Float(
                ints.into_iter()
                    .map(|x| (f64::from(x) / div) as f32)
                    .collect(),
            )
        }
        (Encoding::Rle | Encoding::Ts2Diff, TsType::Double) => {
            let div = precision(&mut c)?;
            let longs = if e == Encoding::Rle {
                rle(&mut c, n, 64)?
            } else {
                ts2diff_i64(&mut c, n)?
            };
            Column::Double(longs.into_iter().map(|x| x as f64 / div).collect())
        }
        (Encoding::Gorilla, TsType::Int32 | TsType::Date) => Column::Int32(
            gorilla(&mut c, n, 32, i32::MIN as u32 as u64)?
                .into_iter()
                .map(|x| x as u32 as i32)
                .collect(),
        ),
        (Encoding::Gorilla, TsType::Int64 | TsType::Timestamp) => Column::Int64(
            gorilla(&mut c, n, 64, i64::MIN as u64)?
                .into_iter()
                .map(|x| x as i64)
                .collect(),
        ),
        (Encoding::Gorilla, TsType::Float) => Column::Float(
            gorilla(&mut c, n, 32, u64::from(f32::NAN.to_bits()))?
                .into_iter()
                .map(|x| f32::from_bits(x as u32))
                .collect(),
        ),
        (Encoding::Gorilla, TsType::Double) => Column::Double(
            gorilla(&mut c, n, 64, f64::NAN.to_bits())?
                .into_iter()
                .map(f64::from_bits)
                .collect(),
        ),
        _ => return Err(Error::unsupported(base, e.unsupported(t))),
    };
    if col.len() != n {
        return Err(Error::corrupt(
            base,
            format!(
                "{e} {t} values hold {} values where the page has {n}",
                col.len()
            ),
        ));
    }
    Ok(col)
}

/// Decodes a time column (INT64 in `e`) to the end of `b`: at most `max`
/// times.
///
/// # Errors
/// Unsupported encodings, streams that do not decode, more than `max`
/// times.
pub(crate) fn decode_times(e: Encoding, b: &[u8], max: usize, base: u64) -> Result<Vec<i64>> {
    let mut c = Cur::new(b, base);
    match e {
        Encoding::Ts2Diff => ts2diff_i64(&mut c, max),
        Encoding::Plain => fixed(&mut c, 8, max, |x| {
            i64::from_be_bytes(x.try_into().expect("8"))
        }),
        Encoding::Rle => rle(&mut c, max, 64),
        Encoding::Gorilla => Ok(gorilla(&mut c, max, 64, i64::MIN as u64)?
            .into_iter()
            .map(|x| x as i64)
            .collect()),
        _ => Err(Error::unsupported(
            base,
            format!("unsupported time encoding {}", e.name()),
        )),
    }
}

/// Fails when a stream yields more than `n` values.
fn more(c: &Cur<'_>, have: usize, n: usize) -> Result<()> {
    if have >= n {
        return Err(c.bad(format!("more than the {n} values the page has")));
    }
    Ok(())
}

fn fixed<T>(c: &mut Cur<'_>, w: usize, n: usize, f: impl Fn(&[u8]) -> T) -> Result<Vec<T>> {
    if !c.left().is_multiple_of(w) {
        return Err(c.bad(format!("{} bytes of {w}-byte values", c.left())));
    }
    if c.left() / w > n {
        return Err(c.bad(format!("{} values where the page has {n}", c.left() / w)));
    }
    Ok(c.take(c.left(), "values")?.chunks_exact(w).map(f).collect())
}

/// FloatDecoder's divisor: uvarint p, 10^p (1 when p is 0).
fn precision(c: &mut Cur<'_>) -> Result<f64> {
    let at = c.offset();
    let p = c.uvarint("float precision")?;
    if p > 64 {
        return Err(Error::corrupt(at, format!("float precision {p} digits")));
    }
    Ok(if p == 0 { 1.0 } else { 10f64.powi(p as i32) })
}

/// `w` bits (≤ 64) at bit `pos` of `b`, most significant bit first. The
/// caller has checked that they lie inside `b`.
#[inline]
fn bits(b: &[u8], pos: usize, w: u32) -> u64 {
    if w == 0 {
        return 0;
    }
    let first = pos / 8;
    let skip = (pos % 8) as u32;
    let need = (skip + w).div_ceil(8) as usize;
    let mut acc: u128 = 0;
    for &x in &b[first..first + need] {
        acc = (acc << 8) | u128::from(x);
    }
    let shift = need as u32 * 8 - skip - w;
    ((acc >> shift) & ((1u128 << w) - 1)) as u64
}

/// TS_2DIFF blocks of INT32 to the end of the stream, at most `n` values.
fn ts2diff_i32(c: &mut Cur<'_>, n: usize) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    while c.left() > 0 {
        let at = c.offset();
        let count = c.i32("TS_2DIFF block count")?;
        let width = c.i32("TS_2DIFF bit width")?;
        let min = c.i32("TS_2DIFF min delta")?;
        let first = c.i32("TS_2DIFF first value")?;
        if count < 0 || !(0..=32).contains(&width) {
            return Err(Error::corrupt(
                at,
                format!("TS_2DIFF block of {count} INT32 deltas {width} bits wide"),
            ));
        }
        let count = count as usize;
        if out.len() + 1 + count > n {
            return Err(Error::corrupt(
                at,
                format!(
                    "TS_2DIFF block of {} values: more than the {n} the page has",
                    count + 1
                ),
            ));
        }
        let len = (count * width as usize).div_ceil(8);
        let packed = c.take(len, "TS_2DIFF packed deltas")?;
        out.reserve(count + 1);
        out.push(first);
        let mut prev = first;
        for k in 0..count {
            let d = bits(packed, k * width as usize, width as u32) as u32 as i32;
            prev = prev.wrapping_add(min).wrapping_add(d);
            out.push(prev);
        }
    }
    Ok(out)
}

/// TS_2DIFF blocks of INT64 to the end of the stream, at most `n` values.
fn ts2diff_i64(c: &mut Cur<'_>, n: usize) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    while c.left() > 0 {
        let at = c.offset();
        let count = c.i32("TS_2DIFF block count")?;
        let width = c.i32("TS_2DIFF bit width")?;
        let min = c.i64("TS_2DIFF min delta")?;
        let first = c.i64("TS_2DIFF first value")?;
        if count < 0 || !(0..=64).contains(&width) {
            return Err(Error::corrupt(
                at,
                format!("TS_2DIFF block of {count} INT64 deltas {width} bits wide"),
            ));
        }
        let count = count as usize;
        if out.len() + 1 + count > n {
            return Err(Error::corrupt(
                at,
                format!(
                    "TS_2DIFF block of {} values: more than the {n} the page has",
                    count + 1
                ),
            ));
        }
        let len = (count * width as usize).div_ceil(8);
        let packed = c.take(len, "TS_2DIFF packed deltas")?;
        out.reserve(count + 1);
        out.push(first);
        let mut prev = first;
        for k in 0..count {
            let d = bits(packed, k * width as usize, width as u32) as i64;
            prev = prev.wrapping_add(min).wrapping_add(d);
            out.push(prev);
        }
    }
    Ok(out)
}

/// RLE / bit-packing hybrid blocks to the end of the stream, at most `n`
/// values, each at most `max_width` bits (32 for ints, 64 for longs;
/// values come back sign-extended from their full width by the caller's
/// cast).
fn rle(c: &mut Cur<'_>, n: usize, max_width: u32) -> Result<Vec<i64>> {
    let mut out: Vec<i64> = Vec::new();
    while c.left() > 0 {
        let len = c.ulen("RLE block length", c.left())?;
        let block_at = c.offset();
        let mut b = Cur::new(c.take(len, "RLE block")?, block_at);
        let width = u32::from(b.u8("RLE bit width")?);
        if width > max_width {
            return Err(b.bad(format!("RLE bit width {width} over {max_width}")));
        }
        let vbytes = width.div_ceil(8) as usize;
        while b.left() > 0 {
            let at = b.offset();
            let h = b.uvarint("RLE run header")?;
            if h & 1 == 0 {
                let count = (h >> 1) as usize;
                if count == 0 {
                    return Err(Error::corrupt(at, "RLE run of 0 values"));
                }
                let raw = b.take(vbytes, "RLE run value")?;
                let v: u64 = if max_width == 64 {
                    raw.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
                } else {
                    raw.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x))
                };
                if out.len() + count > n {
                    return Err(Error::corrupt(
                        at,
                        format!("RLE run of {count} values: more than the {n} the page has"),
                    ));
                }
                let v = if max_width == 32 {
                    v as u32 as i32 as i64
                } else {
                    v as i64
                };
                out.resize(out.len() + count, v);
            } else {
                let groups = (h >> 1) as usize;
                let last = usize::from(b.u8("RLE bit-packed last count")?);
                if groups == 0 || last > 8 {
                    return Err(Error::corrupt(
                        at,
                        format!("RLE bit-packed run of {groups} groups, {last} in the last"),
                    ));
                }
                let count = (groups - 1) * 8 + last;
                if out.len() + count > n {
                    return Err(Error::corrupt(
                        at,
                        format!(
                            "RLE bit-packed run of {count} values: more than the {n} the page has"
                        ),
                    ));
                }
                let packed = b.take(groups * width as usize, "RLE bit-packed values")?;
                out.reserve(count);
                for k in 0..count {
                    let v = bits(packed, k * width as usize, width);
                    out.push(if max_width == 32 {
                        v as u32 as i32 as i64
                    } else {
                        v as i64
                    });
                }
            }
        }
    }
    Ok(out)
}

/// An MSB-first bit reader for Gorilla streams.
struct BitReader<'a, 'b> {
    c: &'b mut Cur<'a>,
    byte: u8,
    left: u32,
}

impl BitReader<'_, '_> {
    fn bit(&mut self) -> Result<bool> {
        if self.left == 0 {
            self.byte = self.c.u8("GORILLA bits")?;
            self.left = 8;
        }
        self.left -= 1;
        Ok((self.byte >> self.left) & 1 == 1)
    }
    fn bits(&mut self, mut w: u32) -> Result<u64> {
        let mut v: u64 = 0;
        while w > 0 {
            if self.left == 0 {
                self.byte = self.c.u8("GORILLA bits")?;
                self.left = 8;
            }
            let take = w.min(self.left);
            let part = (u64::from(self.byte) >> (self.left - take)) & ((1u64 << take) - 1);
            v = if take == 64 { part } else { (v << take) | part };
            self.left -= take;
            w -= take;
        }
        Ok(v)
    }
}

/// A Gorilla v2 stream of `w`-bit patterns (32 or 64) up to its end
/// marker `end`: at most `n` values.
fn gorilla(c: &mut Cur<'_>, n: usize, w: u32, end: u64) -> Result<Vec<u64>> {
    let (lead_bits, sig_bits) = if w == 32 { (5, 5) } else { (6, 6) };
    let start = c.offset();
    let mut r = BitReader {
        c,
        byte: 0,
        left: 0,
    };
    let mut out = Vec::new();
    if n == 0 && r.c.left() == 0 {
        return Ok(out);
    }
    let mut v = r.bits(w)?;
    let mut window: Option<(u32, u32)> = None;
    loop {
        if out.len() >= n {
            return Err(Error::corrupt(
                start,
                format!("GORILLA stream holds more than the {n} values the page has"),
            ));
        }
        out.push(v);
        // The next value, or the end marker.
        if r.bit()? {
            if r.bit()? {
                let lead = r.bits(lead_bits)? as u32;
                let sig = r.bits(sig_bits)? as u32 + 1;
                if lead + sig > w {
                    return Err(r.c.bad(format!(
                        "GORILLA window of {lead} leading zeros and {sig} bits in a {w}-bit value"
                    )));
                }
                window = Some((lead, w - sig - lead));
            }
            let Some((lead, trail)) = window else {
                return Err(r.c.bad("GORILLA value reuses a window before any was set"));
            };
            let xor = r.bits(w - lead - trail)? << trail;
            v ^= xor;
        }
        if v == end {
            return Ok(out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Test-only encoders, written from the same layout, so that every
    //! encoding can be checked on values no sample holds.
    use super::*;

    fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
        put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32);
    }

    fn pack(vals: &[u64], w: u32) -> Vec<u8> {
        let mut out = vec![0u8; (vals.len() * w as usize).div_ceil(8)];
        for (k, &v) in vals.iter().enumerate() {
            for i in 0..w {
                if (v >> (w - 1 - i)) & 1 == 1 {
                    let pos = k * w as usize + i as usize;
                    out[pos / 8] |= 0x80 >> (pos % 8);
                }
            }
        }
        out
    }

    /// TS_2DIFF of longs (or ints when `int`), blocks of up to 128 deltas.
    pub(crate) fn enc_ts2diff(vals: &[i64], int: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for block in vals.chunks(129) {
            let deltas: Vec<i64> = block
                .windows(2)
                .map(|p| {
                    if int {
                        (p[1] as i32).wrapping_sub(p[0] as i32) as i64
                    } else {
                        p[1].wrapping_sub(p[0])
                    }
                })
                .collect();
            let min = deltas.iter().copied().min().unwrap_or(if int {
                i32::MAX as i64
            } else {
                i64::MAX
            });
            let adj: Vec<u64> = deltas
                .iter()
                .map(|&d| {
                    if int {
                        (d as i32).wrapping_sub(min as i32) as u32 as u64
                    } else {
                        d.wrapping_sub(min) as u64
                    }
                })
                .collect();
            let w = adj
                .iter()
                .map(|&a| 64 - a.leading_zeros())
                .max()
                .unwrap_or(0);
            out.extend_from_slice(&(adj.len() as i32).to_be_bytes());
            out.extend_from_slice(&(w as i32).to_be_bytes());
            if int {
                out.extend_from_slice(&(min as i32).to_be_bytes());
                out.extend_from_slice(&(block[0] as i32).to_be_bytes());
            } else {
                out.extend_from_slice(&min.to_be_bytes());
                out.extend_from_slice(&block[0].to_be_bytes());
            }
            out.extend_from_slice(&pack(&adj, w));
        }
        out
    }

    /// RLE of ints (`long == false`) or longs: runs of 8+ equal values as
    /// RLE runs, the rest bit-packed, one block.
    pub(crate) fn enc_rle(vals: &[i64], long: bool) -> Vec<u8> {
        let raw: Vec<u64> = vals
            .iter()
            .map(|&v| {
                if long {
                    v as u64
                } else {
                    v as i32 as u32 as u64
                }
            })
            .collect();
        let w = raw
            .iter()
            .map(|&a| 64 - a.leading_zeros())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut body = vec![w as u8];
        let mut i = 0;
        while i < raw.len() {
            let mut j = i;
            while j < raw.len() && raw[j] == raw[i] {
                j += 1;
            }
            if j - i >= 8 {
                put_uvarint(&mut body, ((j - i) as u32) << 1);
                let nb = w.div_ceil(8) as usize;
                let bytes = raw[i].to_le_bytes();
                if long {
                    body.extend(bytes[..nb].iter().rev());
                } else {
                    body.extend_from_slice(&bytes[..nb]);
                }
                i = j;
            } else {
                let end = (i + 8).min(raw.len());
                let mut group = raw[i..end].to_vec();
                let last = group.len();
                group.resize(8, 0);
                put_uvarint(&mut body, (1 << 1) | 1);
                body.push(last as u8);
                body.extend_from_slice(&pack(&group, w));
                i = end;
            }
        }
        let mut out = Vec::new();
        put_uvarint(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
        out
    }

    /// Gorilla v2 of `w`-bit patterns with end marker `end`.
    pub(crate) fn enc_gorilla(vals: &[u64], w: u32, end: u64) -> Vec<u8> {
        let (lb, sb) = if w == 32 { (5, 5) } else { (6, 6) };
        let mut bits: Vec<bool> = Vec::new();
        let put = |bits: &mut Vec<bool>, v: u64, n: u32| {
            for i in (0..n).rev() {
                bits.push((v >> i) & 1 == 1);
            }
        };
        let mut prev: Option<u64> = None;
        let mut window: Option<(u32, u32)> = None;
        for v in vals.iter().copied().chain(std::iter::once(end)) {
            match prev {
                None => put(&mut bits, v, w),
                Some(p) => {
                    let x = p ^ v;
                    if x == 0 {
                        bits.push(false);
                    } else {
                        bits.push(true);
                        let lead = (x.leading_zeros() - (64 - w)).min((1 << lb) - 1);
                        let trail = x.trailing_zeros();
                        match window {
                            Some((l, t)) if lead >= l && trail >= t => {
                                bits.push(false);
                                put(&mut bits, x >> t, w - l - t);
                            }
                            _ => {
                                bits.push(true);
                                let sig = w - lead - trail;
                                put(&mut bits, lead as u64, lb);
                                put(&mut bits, (sig - 1) as u64, sb);
                                put(&mut bits, x >> trail, sig);
                                window = Some((lead, trail));
                            }
                        }
                    }
                }
            }
            prev = Some(v);
        }
        let mut out = vec![0u8; bits.len().div_ceil(8)];
        for (i, b) in bits.iter().enumerate() {
            if *b {
                out[i / 8] |= 0x80 >> (i % 8);
            }
        }
        out
    }

    /// PLAIN of a column.
    pub(crate) fn enc_plain(c: &Column) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Column::Boolean(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            Column::Int32(v) => v.iter().for_each(|&x| put_varint(&mut out, x)),
            Column::Int64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
            Column::Float(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
            Column::Double(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
            Column::Text(v) => v.iter().for_each(|x| {
                put_varint(&mut out, x.len() as i32);
                out.extend_from_slice(x);
            }),
        }
        out
    }

    /// Encodes `c` in `e` as IoTDB's encoders would (float precision 2 for
    /// the FloatEncoder forms). `None` where `e` does not apply.
    pub(crate) fn encode(c: &Column, e: Encoding) -> Option<Vec<u8>> {
        Some(match (e, c) {
            (Encoding::Plain, _) => enc_plain(c),
            (Encoding::Rle, Column::Boolean(v)) => {
                enc_rle(&v.iter().map(|&b| i64::from(b)).collect::<Vec<_>>(), false)
            }
            (Encoding::Rle, Column::Int32(v)) => {
                enc_rle(&v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(), false)
            }
            (Encoding::Rle, Column::Int64(v)) => enc_rle(v, true),
            (Encoding::Ts2Diff, Column::Int32(v)) => {
                enc_ts2diff(&v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(), true)
            }
            (Encoding::Ts2Diff, Column::Int64(v)) => enc_ts2diff(v, false),
            (Encoding::Rle | Encoding::Ts2Diff, Column::Float(v)) => {
                let ints: Vec<i64> = v
                    .iter()
                    .map(|&x| (f64::from(x) * 100.0).round() as i32 as i64)
                    .collect();
                let mut out = vec![2];
                out.extend(if e == Encoding::Rle {
                    enc_rle(&ints, false)
                } else {
                    enc_ts2diff(&ints, true)
                });
                out
            }
            (Encoding::Rle | Encoding::Ts2Diff, Column::Double(v)) => {
                let longs: Vec<i64> = v.iter().map(|&x| (x * 100.0).round() as i64).collect();
                let mut out = vec![2];
                out.extend(if e == Encoding::Rle {
                    enc_rle(&longs, true)
                } else {
                    enc_ts2diff(&longs, false)
                });
                out
            }
            (Encoding::Gorilla, Column::Int32(v)) => enc_gorilla(
                &v.iter().map(|&x| x as u32 as u64).collect::<Vec<_>>(),
                32,
                i32::MIN as u32 as u64,
            ),
            (Encoding::Gorilla, Column::Int64(v)) => enc_gorilla(
                &v.iter().map(|&x| x as u64).collect::<Vec<_>>(),
                64,
                i64::MIN as u64,
            ),
            (Encoding::Gorilla, Column::Float(v)) => enc_gorilla(
                &v.iter()
                    .map(|&x| u64::from(x.to_bits()))
                    .collect::<Vec<_>>(),
                32,
                u64::from(f32::NAN.to_bits()),
            ),
            (Encoding::Gorilla, Column::Double(v)) => enc_gorilla(
                &v.iter().map(|&x| x.to_bits()).collect::<Vec<_>>(),
                64,
                f64::NAN.to_bits(),
            ),
            (Encoding::Dictionary, Column::Text(v)) => {
                let mut dict: Vec<&Vec<u8>> = Vec::new();
                let mut codes = Vec::new();
                for s in v {
                    let i = dict.iter().position(|d| *d == s).unwrap_or_else(|| {
                        dict.push(s);
                        dict.len() - 1
                    });
                    codes.push(i as i64);
                }
                let mut out = Vec::new();
                put_varint(&mut out, dict.len() as i32);
                for d in dict {
                    put_varint(&mut out, d.len() as i32);
                    out.extend_from_slice(d);
                }
                out.extend(enc_rle(&codes, false));
                out
            }
            _ => return None,
        })
    }

    use crate::test_util::hex;

    #[test]
    fn ts2diff_reads_the_v4_sample_times() {
        // v4_tree sample: times 1, 2, 3 (n=2, width 0, minDelta 1, first 1).
        let b = hex("00000002 00000000 0000000000000001 0000000000000001");
        assert_eq!(
            decode_times(Encoding::Ts2Diff, &b, 10, 0).unwrap(),
            vec![1, 2, 3]
        );
        // More times than allowed: an error, not an allocation.
        let huge = hex("7fffffff 00000000 0000000000000001 0000000000000001");
        let e = decode_times(Encoding::Ts2Diff, &huge, 1000, 50).unwrap_err();
        assert!(e.to_string().contains("more than the 1000"), "{e}");
    }

    #[test]
    fn every_encoding_round_trips_every_type_it_applies_to() {
        let n = 300;
        let cols = [
            Column::Boolean((0..n).map(|i| i % 3 == 0 || i > 200).collect()),
            Column::Int32(
                (0..n)
                    .map(|i| if i < 50 { 7 } else { (i * i) as i32 - 5000 })
                    .collect(),
            ),
            Column::Int64(
                (0..n)
                    .map(|i| {
                        if i % 17 == 0 {
                            i64::MAX - i as i64
                        } else {
                            -(i as i64) * 1_000_003
                        }
                    })
                    .collect(),
            ),
            Column::Float((0..n).map(|i| i as f32 * 0.25 - 3.5).collect()),
            Column::Double((0..n).map(|i| (i as f64) * 1.5 - 10.0).collect()),
            Column::Text(
                (0..n)
                    .map(|i| format!("v{}", i % 13).into_bytes())
                    .collect(),
            ),
        ];
        let types = [
            TsType::Boolean,
            TsType::Int32,
            TsType::Int64,
            TsType::Float,
            TsType::Double,
            TsType::Text,
        ];
        let encs = [
            Encoding::Plain,
            Encoding::Rle,
            Encoding::Ts2Diff,
            Encoding::Gorilla,
            Encoding::Dictionary,
        ];
        let mut checked = 0;
        for (c, t) in cols.iter().zip(types) {
            for e in encs {
                let Some(b) = encode(c, e) else {
                    assert!(
                        !e.supports(t) || t == TsType::Boolean && e != Encoding::Plain,
                        "{e} {t}"
                    );
                    continue;
                };
                let got =
                    decode_values(t, e, &b, n, 0).unwrap_or_else(|err| panic!("{e} {t}: {err}"));
                assert_eq!(&got, c, "{e} {t}");
                // Wrong counts are errors.
                assert!(decode_values(t, e, &b, n - 1, 0).is_err(), "{e} {t} n-1");
                assert!(decode_values(t, e, &b, n + 1, 0).is_err(), "{e} {t} n+1");
                // Every truncation is an error or a short count, never a panic.
                for cut in 0..b.len() {
                    assert!(
                        decode_values(t, e, &b[..cut], n, 0).is_err(),
                        "{e} {t} cut {cut}"
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 20);
    }

    #[test]
    fn unsupported_encodings_are_named() {
        let e = decode_values(TsType::Int32, Encoding::from_id(12), &[1, 2], 1, 9).unwrap_err();
        assert_eq!(e.reason(), "unsupported encoding SPRINTZ (12)");
        assert!(e.is_unsupported());
        let e = decode_values(TsType::Boolean, Encoding::Gorilla, &[1], 1, 9).unwrap_err();
        assert_eq!(e.reason(), "unsupported encoding GORILLA for BOOLEAN");
    }

    #[test]
    fn gorilla_value_equal_to_the_end_marker_ends_the_page() {
        // IoTDB's quirk: a later value equal to the marker truncates.
        let b = enc_gorilla(&[5, i32::MIN as u32 as u64, 6], 32, i32::MIN as u32 as u64);
        let e = decode_values(TsType::Int32, Encoding::Gorilla, &b, 3, 0).unwrap_err();
        assert!(
            e.to_string().contains("hold 1 values where the page has 3"),
            "{e}"
        );
    }
}
