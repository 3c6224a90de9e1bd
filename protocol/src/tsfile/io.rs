//! Where the bytes come from ([`Source`]: a file read at offsets, or bytes
//! in memory) and a bounds-checked cursor over a piece of them ([`Cur`]).
//!
//! Every read names its file offset, and every length read from the file is
//! checked against the bytes present before anything is allocated.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::error::{Error, Result};

/// Random access to the bytes of a TsFile.
///
/// Implemented for a [`File`] (positional reads, so several readers can
/// share one) and for bytes in memory.
pub trait Source {
    /// The number of bytes.
    ///
    /// # Errors
    /// The operating system's, for a file.
    fn size(&self) -> std::io::Result<u64>;

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// The operating system's; `UnexpectedEof` past the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl Source for [u8] {
    fn size(&self) -> std::io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl Source for Vec<u8> {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.as_slice().len() as u64)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

impl<S: Source + ?Sized> Source for &S {
    fn size(&self) -> std::io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

/// Reads `len` bytes at `offset` of `src`, whose length is `file_len`; the
/// range is checked against the file before anything is allocated.
pub(crate) fn read_range<S: Source + ?Sized>(
    src: &S,
    file_len: u64,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let end = offset.checked_add(len).filter(|&e| e <= file_len);
    let Some(_) = end else {
        return Err(Error::corrupt(
            offset,
            format!("{what} of {len} bytes runs past the end of the file ({file_len} bytes)"),
        ));
    };
    let n = usize::try_from(len)
        .map_err(|_| Error::unsupported(offset, format!("{what} of {len} bytes")))?;
    let mut buf = vec![0u8; n];
    src.read_exact_at(offset, &mut buf)
        .map_err(|e| Error::io(offset, n, e))?;
    Ok(buf)
}

/// A bounds-checked big-endian cursor over bytes that lie at file offset
/// `base`.
pub(crate) struct Cur<'a> {
    b: &'a [u8],
    at: usize,
    base: u64,
    /// Set when a read ran past the end (as opposed to a bad value): the
    /// caller may retry with more bytes.
    pub(crate) short: bool,
}

impl<'a> Cur<'a> {
    /// A cursor over `b`, whose first byte is at file offset `base`.
    pub(crate) fn new(b: &'a [u8], base: u64) -> Cur<'a> {
        Cur {
            b,
            at: 0,
            base,
            short: false,
        }
    }

    /// The file offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.at as u64
    }

    /// Bytes consumed.
    pub(crate) fn pos(&self) -> usize {
        self.at
    }

    /// Bytes left.
    pub(crate) fn left(&self) -> usize {
        self.b.len() - self.at
    }

    /// The bytes not yet read.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.b[self.at..]
    }

    /// A corruption error at the cursor.
    pub(crate) fn bad(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.offset(), reason)
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            self.short = true;
            return Err(self.bad(format!(
                "{what} needs {n} bytes but only {} are left (ends at byte {})",
                self.left(),
                self.base + self.b.len() as u64
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }

    pub(crate) fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }

    pub(crate) fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_bits(self.i32(what)? as u32))
    }

    pub(crate) fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_bits(self.i64(what)? as u64))
    }

    /// An unsigned LEB128 varint of at most 5 bytes (32 bits), as IoTDB's
    /// `readUnsignedVarInt` writes it.
    pub(crate) fn uvarint(&mut self, what: &str) -> Result<u32> {
        let start = self.offset();
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.u8(what)?;
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 4 && b > 0x0f {
                    break;
                }
                return Ok(v);
            }
        }
        Err(Error::corrupt(
            start,
            format!("{what}: varint longer than 32 bits"),
        ))
    }

    /// A uvarint used as a count or length: checked to be at most `max`.
    pub(crate) fn ulen(&mut self, what: &str, max: usize) -> Result<usize> {
        let at = self.offset();
        let n = self.uvarint(what)? as usize;
        if n > max {
            return Err(Error::corrupt(
                at,
                format!("{what} {n} is more than the {max} that fit"),
            ));
        }
        Ok(n)
    }

    /// A zigzag varint.
    pub(crate) fn varint(&mut self, what: &str) -> Result<i32> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    /// A varstring: zigzag varint length (−1 = null), then UTF-8 bytes.
    pub(crate) fn varstring(&mut self, what: &str) -> Result<Option<String>> {
        let at = self.offset();
        let n = self.varint(what)?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(Error::corrupt(at, format!("{what}: length {n}")));
        }
        let b = self.take(n as usize, what)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| Error::corrupt(at, format!("{what} is not UTF-8")))
    }

    /// A varstring that must not be null.
    pub(crate) fn name(&mut self, what: &str) -> Result<String> {
        let at = self.offset();
        self.varstring(what)?
            .ok_or_else(|| Error::corrupt(at, format!("{what} is null")))
    }

    /// An i32 length, checked against the bytes left.
    pub(crate) fn i32_len(&mut self, what: &str) -> Result<usize> {
        let at = self.offset();
        let n = self.i32(what)?;
        if n < 0 {
            return Err(Error::corrupt(at, format!("{what}: length {n}")));
        }
        if n as usize > self.left() {
            self.short = true;
            return Err(Error::corrupt(
                at,
                format!("{what}: length {n} but only {} bytes are left", self.left()),
            ));
        }
        Ok(n as usize)
    }

    /// i32 length + bytes.
    pub(crate) fn binary(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.i32_len(what)?;
        self.take(n, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_iotdb_writes_them() {
        let b = [0x14, 0xac, 0x02, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let mut c = Cur::new(&b, 100);
        assert_eq!(c.varint("a").unwrap(), 10);
        assert_eq!(c.uvarint("b").unwrap(), 300);
        assert_eq!(c.varint("c").unwrap(), -1);
        assert_eq!(c.uvarint("d").unwrap(), u32::MAX);
        assert_eq!(c.offset(), 109);
        let e = Cur::new(&[0xff; 6], 7).uvarint("len").unwrap_err();
        assert!(e.to_string().contains("varint longer than 32 bits"), "{e}");
        let mut short = Cur::new(&[0x80], 0);
        assert!(short.uvarint("x").is_err() && short.short);
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let mut c = Cur::new(&[0x7f, 0xff, 0xff, 0xff, 1, 2], 0);
        let e = c.binary("text").unwrap_err();
        assert!(e.to_string().contains("only 2 bytes are left"), "{e}");
        let src: Vec<u8> = vec![1, 2, 3];
        let e = read_range(&src, 3, 2, u64::MAX, "chunk").unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
        assert_eq!(read_range(&src, 3, 1, 2, "x").unwrap(), vec![2, 3]);
    }
}
