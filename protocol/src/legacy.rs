//! IoTDB 1.0/1.1's sync protocol ("legacy"), as `iotdb-legacy-pipe-connector`
//! and 1.1 receivers speak it on the client RPC port
//! (`shared/reference/iotdb-sync-protocols.md` §C):
//!
//! ```text
//! handshake(-1: TSyncIdentityInfo{pipeName, createTime, version, database}) -> TSStatus
//! sendPipeData(1: binary buff)                                              -> TSStatus
//! sendFile(1: TSyncTransportMetaInfo{fileName, startIndex}, 2: binary buff) -> TSStatus
//! ```
//!
//! `sendPipeData` carries a serialized PipeData (big-endian; strings are an
//! i32 length and UTF-8, -1 for null):
//!
//! ```text
//! u8  type            0 TSFILE, 1 DELETION
//! i64 serialNumber    (the 1.2 legacy connector sends -1)
//! TSFILE:   String parentDirPath, String tsFileName
//! DELETION: String database, i64 startTime, i64 endTime, String pathPattern
//! ```
//!
//! The thrift structs are [`crate::rpc::TSyncIdentityInfo`],
//! [`crate::rpc::TSyncTransportMetaInfo`], and the argument structs
//! [`crate::rpc::TSendPipeDataArgs`] / [`crate::rpc::TSendFileArgs`].

/// The legacy calls' method names.
pub const HANDSHAKE: &str = "handshake";
/// See [`HANDSHAKE`].
pub const SEND_PIPE_DATA: &str = "sendPipeData";
/// See [`HANDSHAKE`].
pub const SEND_FILE: &str = "sendFile";

/// Status: "resend from the index in the message" (sendFile).
pub const SYNC_FILE_REDIRECTION_ERROR: i32 = 1104;
/// Status: a sendFile piece could not be written.
pub const SYNC_FILE_ERROR: i32 = 1105;

/// One serialized PipeData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeData {
    /// A TsFile sent before with `sendFile`, now to be loaded.
    TsFile {
        /// Sender-side serial number (-1 from a 1.2 legacy connector).
        serial: i64,
        /// The sender's directory of the file ("" from 1.2).
        parent_dir: String,
        /// The file's name, as sent with `sendFile`.
        file_name: String,
    },
    /// A deletion: every point of `path_pattern` with a time in
    /// `[start, end]`; the whole series when the range is all of time.
    Deletion {
        /// Sender-side serial number.
        serial: i64,
        /// The database the deletion was made in.
        database: String,
        /// Smallest time deleted.
        start: i64,
        /// Largest time deleted.
        end: i64,
        /// The path pattern (`root.sg.d.s`, `root.sg.**`).
        path_pattern: String,
    },
}

const TSFILE: u8 = 0;
const DELETION: u8 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(format!(
                "PipeData: {what} needs {n} bytes at byte {} of {}",
                self.at,
                self.b.len()
            ));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }

    /// A string; a negative length is Java's null, read as "".
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = i32::from_be_bytes(self.take(4, what)?.try_into().expect("4"));
        if n < 0 {
            return Ok(String::new());
        }
        let b = self.take(n as usize, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("PipeData: {what} is not UTF-8"))
    }
}

impl PipeData {
    /// The serialized bytes (what `sendPipeData` carries).
    pub fn serialize(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        match self {
            PipeData::TsFile {
                serial,
                parent_dir,
                file_name,
            } => {
                b.push(TSFILE);
                b.extend_from_slice(&serial.to_be_bytes());
                put_str(&mut b, parent_dir);
                put_str(&mut b, file_name);
            }
            PipeData::Deletion {
                serial,
                database,
                start,
                end,
                path_pattern,
            } => {
                b.push(DELETION);
                b.extend_from_slice(&serial.to_be_bytes());
                put_str(&mut b, database);
                b.extend_from_slice(&start.to_be_bytes());
                b.extend_from_slice(&end.to_be_bytes());
                put_str(&mut b, path_pattern);
            }
        }
        b
    }

    /// Reads serialized PipeData. Bytes after it are an error (a sender of
    /// another version).
    ///
    /// # Errors
    /// An unknown type (IoTDB 0.14's SCHEMA type 2 included), a truncated
    /// body or trailing bytes, named.
    pub fn deserialize(bytes: &[u8]) -> Result<PipeData, String> {
        let mut c = Cursor { b: bytes, at: 0 };
        let kind = c.take(1, "the type")?[0];
        let serial = c.i64("the serial number")?;
        let d = match kind {
            TSFILE => PipeData::TsFile {
                serial,
                parent_dir: c.string("the parent directory")?,
                file_name: c.string("the file name")?,
            },
            DELETION => PipeData::Deletion {
                serial,
                database: c.string("the database")?,
                start: c.i64("the start time")?,
                end: c.i64("the end time")?,
                path_pattern: c.string("the path pattern")?,
            },
            other => {
                return Err(format!(
                    "PipeData type {other} is not one of 0 (TSFILE) and 1 (DELETION): a sender of another IoTDB version?"
                ))
            }
        };
        if c.at != bytes.len() {
            return Err(format!(
                "PipeData: {} unexpected bytes after the end",
                bytes.len() - c.at
            ));
        }
        Ok(d)
    }
}

/// The `major.minor` of a version string (`1.1.2` → `1.1`), as a 1.1
/// receiver compares them; `None` when there is no dot. "UNKNOWN" stays
/// itself.
pub fn major_minor(version: &str) -> Option<&str> {
    if version == "UNKNOWN" {
        return Some(version);
    }
    version.find('.')?;
    Some(match version.match_indices('.').nth(1) {
        Some((second, _)) => &version[..second],
        None => version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::hex;

    #[test]
    fn tsfile_pipe_data_matches_the_reference() {
        let d = PipeData::TsFile {
            serial: -1,
            parent_dir: String::new(),
            file_name: "1-1-0-0.tsfile".into(),
        };
        let want = hex("00 ffffffffffffffff 00000000 0000000e 312d312d302d302e747366696c65");
        assert_eq!(d.serialize(), want);
        assert_eq!(PipeData::deserialize(&want).unwrap(), d);
    }

    #[test]
    fn deletions_round_trip_and_damage_is_named() {
        let d = PipeData::Deletion {
            serial: 7,
            database: "root.sg".into(),
            start: i64::MIN,
            end: 100,
            path_pattern: "root.sg.d.**".into(),
        };
        let b = d.serialize();
        assert_eq!(PipeData::deserialize(&b).unwrap(), d);
        for cut in 0..b.len() {
            assert!(PipeData::deserialize(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(PipeData::deserialize(&long)
            .unwrap_err()
            .contains("unexpected bytes"));
        let mut schema = b;
        schema[0] = 2;
        assert!(PipeData::deserialize(&schema)
            .unwrap_err()
            .contains("type 2"));
        // A hostile length costs nothing.
        let mut huge = vec![1u8];
        huge.extend_from_slice(&0i64.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(PipeData::deserialize(&huge).is_err());
        // Java's null string.
        let mut null = vec![0u8];
        null.extend_from_slice(&(-1i64).to_be_bytes());
        null.extend_from_slice(&(-1i32).to_be_bytes());
        null.extend_from_slice(&1i32.to_be_bytes());
        null.push(b'f');
        assert_eq!(
            PipeData::deserialize(&null).unwrap(),
            PipeData::TsFile {
                serial: -1,
                parent_dir: String::new(),
                file_name: "f".into()
            }
        );
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(major_minor("1.1"), Some("1.1"));
        assert_eq!(major_minor("1.1.2"), Some("1.1"));
        assert_eq!(major_minor("1.1.2-SNAPSHOT"), Some("1.1"));
        assert_eq!(major_minor("0.13"), Some("0.13"));
        assert_eq!(major_minor("UNKNOWN"), Some("UNKNOWN"));
        assert_eq!(major_minor("1"), None);
    }

    #[test]
    fn legacy_calls_travel_with_iotdb_field_ids() {
        use crate::message::{call, call_args, Call, Proto};
        use crate::rpc::{TSendFileArgs, TSyncIdentityInfo, TSyncTransportMetaInfo};
        for proto in [Proto::Binary, Proto::Compact] {
            let info = TSyncIdentityInfo {
                pipe_name: Some("p".into()),
                create_time: Some(5),
                version: Some("1.1".into()),
                database: Some("root.sg".into()),
            };
            let f = call(proto, HANDSHAKE, 3, -1, &info);
            if proto == Proto::Binary {
                // The argument struct opens with field -1: 0c ffff.
                let at = 4 + 12 + HANDSHAKE.len();
                assert_eq!(&f[at..at + 3], &[0x0c, 0xff, 0xff]);
            }
            let mut c = Call::parse(&f[4..]).unwrap();
            assert_eq!(c.arg_at::<TSyncIdentityInfo>(-1).unwrap(), Some(info));
            let args = TSendFileArgs {
                meta_info: Some(TSyncTransportMetaInfo {
                    file_name: Some("1-1-0-0.tsfile".into()),
                    start_index: Some(8),
                }),
                buff: Some(b"abc".to_vec()),
            };
            let f = call_args(proto, SEND_FILE, 4, &args);
            let mut c = Call::parse(&f[4..]).unwrap();
            assert_eq!((c.name.as_str(), c.seq), (SEND_FILE, 4));
            assert_eq!(c.args::<TSendFileArgs>().unwrap(), args);
        }
    }
}
