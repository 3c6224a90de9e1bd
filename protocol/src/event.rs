//! What a node writes to its change log (and pipes read from it): one record per accepted write,
//! delete or schema change. The kind byte says which; payloads are
//! big-endian.
//!
//! ```text
//! kind 1 TABLET   IoTDB 1.2 Tablet.serialize() + u8 aligned (see crate::tablet);
//!                 a pipe ships it as pipeTransfer type 3 without re-encoding
//! kind 2 DELETE   u32 n, n × String pattern, i64 min time, i64 max time (inclusive)
//! kind 3 SCHEMA   u8 op:
//!                 1 create database    String path
//!                 2 delete database    String path
//!                 3 create timeseries  String path, u8 type, String encoding,
//!                                      String compressor, u8 aligned
//! String = u32 length + UTF-8
//!
//! kind | 0x80        the same record, arrived through a pipe (FROM_PIPE):
//!                     0x81 TABLET, 0x82 DELETE, 0x83 SCHEMA, payloads as
//!                     above (a received tablet is logged as it came)
//! ```
//!
//! # Records that arrived through a pipe
//! What a node's receiving side writes (IoTDB 1.2's `pipeTransfer` of any
//! type, IoTDB 1.1's legacy `handshake` / `sendPipeData` / `sendFile`, and
//! the session writes on a connection that made a legacy handshake) is
//! logged with the [`FROM_PIPE`] bit set, so a pipe with
//! `extractor.forwarding-pipe-requests=false` can leave it out: two nodes
//! can then replicate to each other without sending each other's data
//! back. The bit changes nothing else: every reader takes a record's
//! [`base_kind`] and decodes the same payload. (An edgepipe before this
//! bit existed refuses such a log with "unknown change-log record kind
//! 129".)
//!
//! Do not renumber kinds or ops: logs on disk and pipes depend on them.

use crate::tablet::Tablet;
use crate::types::DataType;

/// Record kind of a tablet.
pub const KIND_TABLET: u8 = 1;
/// Record kind of a delete.
pub const KIND_DELETE: u8 = 2;
/// Record kind of a schema change.
pub const KIND_SCHEMA: u8 = 3;
/// Set in the kind of a record that arrived through a pipe (see the module
/// doc): `KIND_TABLET | FROM_PIPE` is a received tablet.
pub const FROM_PIPE: u8 = 0x80;

/// The kind of a record without its [`FROM_PIPE`] mark: what its payload
/// is.
pub const fn base_kind(kind: u8) -> u8 {
    kind & !FROM_PIPE
}

/// Whether a record of this kind arrived through a pipe.
pub const fn from_pipe(kind: u8) -> bool {
    kind & FROM_PIPE != 0
}

/// A schema change.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaOp {
    /// A database was created.
    CreateDatabase(String),
    /// A database and everything under it was deleted.
    DeleteDatabase(String),
    /// A series was declared.
    CreateTimeseries {
        /// Full path.
        path: String,
        /// Type.
        data_type: DataType,
        /// Encoding name.
        encoding: String,
        /// Compressor name.
        compressor: String,
        /// Whether its device is aligned.
        aligned: bool,
    },
}

/// A decoded change-log event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Rows written.
    Tablet(Tablet),
    /// Points deleted from series matching the patterns, in `[min, max]`.
    Delete {
        /// Path patterns as written (`root.sg.**`).
        patterns: Vec<String>,
        /// Smallest time deleted.
        min: i64,
        /// Largest time deleted.
        max: i64,
    },
    /// A schema change.
    Schema(SchemaOp),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Buf<'a> {
    b: &'a [u8],
    at: usize,
}

impl Buf<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or_else(|| {
            format!(
                "event ends at byte {} where {n} more are needed",
                self.b.len()
            )
        })?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| "event string is not UTF-8".to_string())
    }
}

impl Event {
    /// The kind byte and payload to append.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            Event::Tablet(t) => (KIND_TABLET, t.serialize_v12()),
            Event::Delete { patterns, min, max } => {
                let mut out = Vec::new();
                out.extend_from_slice(&(patterns.len() as u32).to_be_bytes());
                for p in patterns {
                    put_str(&mut out, p);
                }
                out.extend_from_slice(&min.to_be_bytes());
                out.extend_from_slice(&max.to_be_bytes());
                (KIND_DELETE, out)
            }
            Event::Schema(op) => {
                let mut out = Vec::new();
                match op {
                    SchemaOp::CreateDatabase(p) => {
                        out.push(1);
                        put_str(&mut out, p);
                    }
                    SchemaOp::DeleteDatabase(p) => {
                        out.push(2);
                        put_str(&mut out, p);
                    }
                    SchemaOp::CreateTimeseries {
                        path,
                        data_type,
                        encoding,
                        compressor,
                        aligned,
                    } => {
                        out.push(3);
                        put_str(&mut out, path);
                        out.push(*data_type as u8);
                        put_str(&mut out, encoding);
                        put_str(&mut out, compressor);
                        out.push(u8::from(*aligned));
                    }
                }
                (KIND_SCHEMA, out)
            }
        }
    }

    /// Decodes a change-log record, marked ([`FROM_PIPE`]) or not.
    ///
    /// # Errors
    /// A message naming what does not decode (an unknown kind included).
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Event, String> {
        match base_kind(kind) {
            KIND_TABLET => Ok(Event::Tablet(Tablet::deserialize_v12(payload)?)),
            KIND_DELETE => {
                let mut b = Buf { b: payload, at: 0 };
                let n = b.u32()? as usize;
                if n > payload.len() {
                    return Err(format!("delete event claims {n} patterns"));
                }
                let patterns = (0..n).map(|_| b.string()).collect::<Result<Vec<_>, _>>()?;
                let min = b.i64()?;
                let max = b.i64()?;
                Ok(Event::Delete { patterns, min, max })
            }
            KIND_SCHEMA => {
                let mut b = Buf { b: payload, at: 0 };
                let op = match b.u8()? {
                    1 => SchemaOp::CreateDatabase(b.string()?),
                    2 => SchemaOp::DeleteDatabase(b.string()?),
                    3 => {
                        let path = b.string()?;
                        let data_type = DataType::from_id(i32::from(b.u8()?))?;
                        let encoding = b.string()?;
                        let compressor = b.string()?;
                        let aligned = b.u8()? != 0;
                        SchemaOp::CreateTimeseries {
                            path,
                            data_type,
                            encoding,
                            compressor,
                            aligned,
                        }
                    }
                    other => return Err(format!("unknown schema op {other}")),
                };
                Ok(Event::Schema(op))
            }
            _ => Err(format!("unknown change-log record kind {kind}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let evs = vec![
            Event::Delete {
                patterns: vec!["root.sg.**".into(), "root.a.b".into()],
                min: -5,
                max: i64::MAX,
            },
            Event::Schema(SchemaOp::CreateDatabase("root.sg".into())),
            Event::Schema(SchemaOp::DeleteDatabase("root.sg".into())),
            Event::Schema(SchemaOp::CreateTimeseries {
                path: "root.sg.d.s".into(),
                data_type: DataType::Float,
                encoding: "RLE".into(),
                compressor: "SNAPPY".into(),
                aligned: true,
            }),
        ];
        for e in evs {
            let (k, p) = e.encode();
            assert!(!from_pipe(k));
            assert_eq!(Event::decode(k, &p).unwrap(), e);
            // The same payload, received through a pipe.
            let received = k | FROM_PIPE;
            assert!(from_pipe(received));
            assert_eq!(base_kind(received), k);
            assert_eq!(Event::decode(received, &p).unwrap(), e);
            for cut in 0..p.len() {
                assert!(Event::decode(k, &p[..cut]).is_err());
                assert!(Event::decode(received, &p[..cut]).is_err());
            }
        }
        assert!(Event::decode(9, &[])
            .unwrap_err()
            .contains("unknown change-log record kind 9"));
        assert!(Event::decode(9 | FROM_PIPE, &[])
            .unwrap_err()
            .contains("unknown change-log record kind 137"));
    }
}
