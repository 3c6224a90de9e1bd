//! Thrift input protocols (binary and compact) over an in-memory frame, with
//! every length and count checked against the bytes that remain.
//!
//! The `thrift` crate's own readers allocate whatever a length prefix claims
//! before reading it, so a 10-byte frame claiming a 2 GiB string would make
//! the node allocate 2 GiB (or abort). These readers refuse such a frame
//! with a protocol error instead; the generated structs read through them.

use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::{ProtocolError, ProtocolErrorKind};

fn invalid(msg: impl Into<String>) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(
        ProtocolErrorKind::InvalidData,
        msg.into(),
    ))
}

fn too_big(what: &str, n: i64, left: usize) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(
        ProtocolErrorKind::SizeLimit,
        format!("{what} of {n} claimed with only {left} bytes left in the frame"),
    ))
}

/// A cursor over the frame.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize) -> thrift::Result<&'a [u8]> {
        if n > self.left() {
            return Err(invalid(format!(
                "frame ends after {} bytes, {n} more needed",
                self.buf.len()
            )));
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn byte(&mut self) -> thrift::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> thrift::Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// A length that must fit in what remains (each unit at least
    /// `min_unit` bytes).
    fn checked_len(&self, what: &str, n: i64, min_unit: usize) -> thrift::Result<usize> {
        if n < 0 {
            return Err(invalid(format!("negative {what} {n}")));
        }
        let n = n as u64;
        if n.saturating_mul(min_unit as u64) > self.left() as u64 {
            return Err(too_big(what, n as i64, self.left()));
        }
        Ok(n as usize)
    }

    fn varint(&mut self, max_bytes: u32) -> thrift::Result<u64> {
        let mut v: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("varint too long"))
    }
}

fn binary_type(b: u8) -> thrift::Result<TType> {
    Ok(match b {
        0 => TType::Stop,
        1 => TType::Void,
        2 => TType::Bool,
        3 => TType::I08,
        4 => TType::Double,
        6 => TType::I16,
        8 => TType::I32,
        10 => TType::I64,
        11 => TType::String,
        12 => TType::Struct,
        13 => TType::Map,
        14 => TType::Set,
        15 => TType::List,
        other => return Err(invalid(format!("unknown thrift type id {other}"))),
    })
}

fn message_type(b: u8) -> thrift::Result<TMessageType> {
    Ok(match b {
        1 => TMessageType::Call,
        2 => TMessageType::Reply,
        3 => TMessageType::Exception,
        4 => TMessageType::OneWay,
        other => return Err(invalid(format!("unknown message type {other}"))),
    })
}

/// The fewest bytes an element of type `t` takes in TBinaryProtocol.
fn binary_min_size(t: TType) -> usize {
    match t {
        TType::I16 => 2,
        TType::I32 | TType::String => 4,
        TType::I64 | TType::Double => 8,
        TType::List | TType::Set => 5,
        TType::Map => 6,
        _ => 1,
    }
}

/// The fewest bytes an element of type `t` takes in TCompactProtocol.
fn compact_min_size(t: TType) -> usize {
    match t {
        TType::Double => 8,
        _ => 1,
    }
}

fn depth_limit() -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(
        ProtocolErrorKind::DepthLimit,
        format!("structs nested deeper than {MAX_DEPTH}"),
    ))
}

/// TBinaryProtocol (strict or not) reading from a frame.
pub struct BinaryIn<'a> {
    c: Cursor<'a>,
    depth: usize,
}

impl<'a> BinaryIn<'a> {
    /// A reader over `frame` (the bytes after the 4-byte frame length).
    pub fn new(frame: &'a [u8]) -> Self {
        BinaryIn {
            c: Cursor { buf: frame, at: 0 },
            depth: 0,
        }
    }
}

impl TInputProtocol for BinaryIn<'_> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        let first = i32::from_be_bytes(self.c.array()?);
        if first < 0 {
            let version = (first as u32) & 0xffff_0000;
            if version != 0x8001_0000 {
                return Err(thrift::Error::Protocol(ProtocolError::new(
                    ProtocolErrorKind::BadVersion,
                    format!("binary protocol version {version:#x}, expected 0x80010000"),
                )));
            }
            let kind = message_type((first & 0xff) as u8)?;
            let name = self.read_string()?;
            let seq = self.read_i32()?;
            Ok(TMessageIdentifier::new(name, kind, seq))
        } else {
            let n = self
                .c
                .checked_len("method name length", i64::from(first), 1)?;
            let name = String::from_utf8(self.c.take(n)?.to_vec())
                .map_err(|_| invalid("method name is not UTF-8"))?;
            let kind = message_type(self.c.byte()?)?;
            let seq = self.read_i32()?;
            Ok(TMessageIdentifier::new(name, kind, seq))
        }
    }
    fn read_message_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        if self.depth >= MAX_DEPTH {
            return Err(depth_limit());
        }
        self.depth += 1;
        Ok(None)
    }
    fn read_struct_end(&mut self) -> thrift::Result<()> {
        self.depth = self
            .depth
            .checked_sub(1)
            .ok_or_else(|| invalid("struct end without begin"))?;
        Ok(())
    }
    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let t = binary_type(self.c.byte()?)?;
        if t == TType::Stop {
            return Ok(
                TFieldIdentifier::new::<Option<String>, String, Option<i16>>(
                    None,
                    TType::Stop,
                    None,
                ),
            );
        }
        let id = self.read_i16()?;
        Ok(TFieldIdentifier::new::<Option<String>, String, i16>(
            None, t, id,
        ))
    }
    fn read_field_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_bool(&mut self) -> thrift::Result<bool> {
        Ok(self.c.byte()? != 0)
    }
    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let n = i32::from_be_bytes(self.c.array()?);
        let n = self.c.checked_len("binary length", i64::from(n), 1)?;
        Ok(self.c.take(n)?.to_vec())
    }
    fn read_i8(&mut self) -> thrift::Result<i8> {
        Ok(self.c.byte()? as i8)
    }
    fn read_i16(&mut self) -> thrift::Result<i16> {
        Ok(i16::from_be_bytes(self.c.array()?))
    }
    fn read_i32(&mut self) -> thrift::Result<i32> {
        Ok(i32::from_be_bytes(self.c.array()?))
    }
    fn read_i64(&mut self) -> thrift::Result<i64> {
        Ok(i64::from_be_bytes(self.c.array()?))
    }
    fn read_double(&mut self) -> thrift::Result<f64> {
        Ok(f64::from_bits(u64::from_be_bytes(self.c.array()?)))
    }
    fn read_string(&mut self) -> thrift::Result<String> {
        String::from_utf8(self.read_bytes()?).map_err(|_| invalid("string is not UTF-8"))
    }
    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let t = binary_type(self.c.byte()?)?;
        let n = i32::from_be_bytes(self.c.array()?);
        self.c
            .checked_len("list size", i64::from(n), binary_min_size(t))?;
        Ok(TListIdentifier::new(t, n))
    }
    fn read_list_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let l = self.read_list_begin()?;
        Ok(TSetIdentifier::new(l.element_type, l.size))
    }
    fn read_set_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let k = binary_type(self.c.byte()?)?;
        let v = binary_type(self.c.byte()?)?;
        let n = i32::from_be_bytes(self.c.array()?);
        self.c.checked_len(
            "map size",
            i64::from(n),
            binary_min_size(k) + binary_min_size(v),
        )?;
        Ok(TMapIdentifier::new(k, v, n))
    }
    fn read_map_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_byte(&mut self) -> thrift::Result<u8> {
        self.c.byte()
    }
}

fn compact_type(b: u8) -> thrift::Result<TType> {
    Ok(match b {
        0x00 => TType::Stop,
        0x01 | 0x02 => TType::Bool,
        0x03 => TType::I08,
        0x04 => TType::I16,
        0x05 => TType::I32,
        0x06 => TType::I64,
        0x07 => TType::Double,
        0x08 => TType::String,
        0x09 => TType::List,
        0x0A => TType::Set,
        0x0B => TType::Map,
        0x0C => TType::Struct,
        other => return Err(invalid(format!("unknown compact type id {other}"))),
    })
}

/// Deepest struct nesting accepted: far beyond any IoTDB message, far below
/// what would exhaust the stack.
const MAX_DEPTH: usize = 64;

/// TCompactProtocol reading from a frame.
pub struct CompactIn<'a> {
    c: Cursor<'a>,
    last_field_id: i16,
    stack: Vec<i16>,
    pending_bool: Option<bool>,
}

impl<'a> CompactIn<'a> {
    /// A reader over `frame` (the bytes after the 4-byte frame length).
    pub fn new(frame: &'a [u8]) -> Self {
        CompactIn {
            c: Cursor { buf: frame, at: 0 },
            last_field_id: 0,
            stack: Vec::new(),
            pending_bool: None,
        }
    }

    fn zigzag32(&mut self) -> thrift::Result<i32> {
        let v = self.c.varint(5)? as u32;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    fn size(&mut self, what: &str, min_unit: usize) -> thrift::Result<i32> {
        let n = self.c.varint(5)?;
        let n = i64::try_from(n).map_err(|_| invalid("size overflow"))?;
        self.c.checked_len(what, n, min_unit)?;
        i32::try_from(n).map_err(|_| invalid(format!("{what} {n} too large")))
    }
}

impl TInputProtocol for CompactIn<'_> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        let id = self.c.byte()?;
        if id != 0x82 {
            return Err(thrift::Error::Protocol(ProtocolError::new(
                ProtocolErrorKind::BadVersion,
                format!("compact protocol id {id:#x}, expected 0x82"),
            )));
        }
        let vt = self.c.byte()?;
        if vt & 0x1f != 1 {
            return Err(thrift::Error::Protocol(ProtocolError::new(
                ProtocolErrorKind::BadVersion,
                format!("compact protocol version {}, expected 1", vt & 0x1f),
            )));
        }
        let kind = message_type(vt >> 5)?;
        let seq = self.c.varint(5)? as u32 as i32;
        let name = self.read_string()?;
        Ok(TMessageIdentifier::new(name, kind, seq))
    }
    fn read_message_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(depth_limit());
        }
        self.stack.push(self.last_field_id);
        self.last_field_id = 0;
        Ok(None)
    }
    fn read_struct_end(&mut self) -> thrift::Result<()> {
        self.last_field_id = self
            .stack
            .pop()
            .ok_or_else(|| invalid("struct end without begin"))?;
        Ok(())
    }
    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let b = self.c.byte()?;
        let t = compact_type(b & 0x0f)?;
        if t == TType::Stop {
            return Ok(
                TFieldIdentifier::new::<Option<String>, String, Option<i16>>(
                    None,
                    TType::Stop,
                    None,
                ),
            );
        }
        if t == TType::Bool {
            self.pending_bool = Some(b & 0x0f == 0x01);
        }
        let delta = (b >> 4) as i16;
        self.last_field_id = if delta != 0 {
            self.last_field_id.wrapping_add(delta)
        } else {
            self.read_i16()?
        };
        Ok(TFieldIdentifier::new::<Option<String>, String, i16>(
            None,
            t,
            self.last_field_id,
        ))
    }
    fn read_field_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_bool(&mut self) -> thrift::Result<bool> {
        match self.pending_bool.take() {
            Some(b) => Ok(b),
            None => match self.c.byte()? {
                0x01 => Ok(true),
                0x00 | 0x02 => Ok(false),
                other => Err(invalid(format!("bad compact bool byte {other:#x}"))),
            },
        }
    }
    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let n = self.size("binary length", 1)? as usize;
        Ok(self.c.take(n)?.to_vec())
    }
    fn read_i8(&mut self) -> thrift::Result<i8> {
        Ok(self.c.byte()? as i8)
    }
    fn read_i16(&mut self) -> thrift::Result<i16> {
        let v = self.zigzag32()?;
        i16::try_from(v).map_err(|_| invalid(format!("i16 out of range: {v}")))
    }
    fn read_i32(&mut self) -> thrift::Result<i32> {
        self.zigzag32()
    }
    fn read_i64(&mut self) -> thrift::Result<i64> {
        let v = self.c.varint(10)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    fn read_double(&mut self) -> thrift::Result<f64> {
        Ok(f64::from_bits(u64::from_le_bytes(self.c.array()?)))
    }
    fn read_string(&mut self) -> thrift::Result<String> {
        String::from_utf8(self.read_bytes()?).map_err(|_| invalid("string is not UTF-8"))
    }
    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let h = self.c.byte()?;
        let t = compact_type(h & 0x0f)?;
        let short = (h >> 4) as i32;
        let n = if short == 15 {
            self.size("list size", 1)?
        } else {
            short
        };
        self.c
            .checked_len("list size", i64::from(n), compact_min_size(t))?;
        Ok(TListIdentifier::new(t, n))
    }
    fn read_list_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let l = self.read_list_begin()?;
        Ok(TSetIdentifier::new(l.element_type, l.size))
    }
    fn read_set_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let n = self.size("map size", 2)?;
        if n == 0 {
            return Ok(TMapIdentifier::new(None, None, 0));
        }
        let kv = self.c.byte()?;
        Ok(TMapIdentifier::new(
            compact_type(kv >> 4)?,
            compact_type(kv & 0x0f)?,
            n,
        ))
    }
    fn read_map_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }
    fn read_byte(&mut self) -> thrift::Result<u8> {
        self.c.byte()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::protocol::{
        TBinaryOutputProtocol, TCompactOutputProtocol, TOutputProtocol, TSerializable,
    };

    use crate::rpc::{TSExecuteStatementReq, TSOpenSessionReq};

    fn sample() -> TSOpenSessionReq {
        TSOpenSessionReq {
            client_protocol: Some(2),
            zone_id: Some("Etc/UTC".into()),
            username: Some("root".into()),
            password: Some("root".into()),
            configuration: Some(
                [("version".to_string(), "V_1_0".to_string())]
                    .into_iter()
                    .collect(),
            ),
        }
    }

    #[test]
    fn round_trips_through_the_crate_writers() {
        let mut buf = Vec::new();
        {
            let mut o = TBinaryOutputProtocol::new(&mut buf, true);
            sample().write_to_out_protocol(&mut o).unwrap();
            o.flush().unwrap();
        }
        assert_eq!(
            TSOpenSessionReq::read_from_in_protocol(&mut BinaryIn::new(&buf)).unwrap(),
            sample()
        );
        let mut buf = Vec::new();
        {
            let mut o = TCompactOutputProtocol::new(&mut buf);
            sample().write_to_out_protocol(&mut o).unwrap();
            o.flush().unwrap();
        }
        assert_eq!(
            TSOpenSessionReq::read_from_in_protocol(&mut CompactIn::new(&buf)).unwrap(),
            sample()
        );
    }

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        // Field 2 (statement, string) claiming 2 GiB in a 12-byte frame.
        let frame = [
            0x0b, 0x00, 0x02, 0x7f, 0xff, 0xff, 0xff, b'x', b'y', 0, 0, 0,
        ];
        match TSExecuteStatementReq::read_from_in_protocol(&mut BinaryIn::new(&frame)) {
            Err(thrift::Error::Protocol(e)) => {
                assert_eq!(e.kind, ProtocolErrorKind::SizeLimit);
                assert!(e.message.contains("2147483647"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        // A negative list size.
        let frame = [0x0f, 0x00, 0x03, 0x0b, 0xff, 0xff, 0xff, 0xff, 0];
        assert!(
            crate::rpc::TSInsertTabletReq::read_from_in_protocol(&mut BinaryIn::new(&frame))
                .is_err()
        );
        // Every truncation of a valid message fails cleanly.
        let mut buf = Vec::new();
        {
            let mut o = TCompactOutputProtocol::new(&mut buf);
            sample().write_to_out_protocol(&mut o).unwrap();
        }
        for cut in 0..buf.len() {
            assert!(
                TSOpenSessionReq::read_from_in_protocol(&mut CompactIn::new(&buf[..cut])).is_err()
            );
        }
    }
}
