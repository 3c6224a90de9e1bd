//! IoTDB 1.2's `pipeTransfer` request types and bodies
//! (`shared/reference/iotdb-sync-protocols.md` §B). The call is
//! `pipeTransfer(-1: TPipeTransferReq req)`: its argument travels as field
//! id -1.
//!
//! ```text
//! type 1 HANDSHAKE                 String timestampPrecision ("ms", "us", "ns")
//! type 2 TRANSFER_TABLET_INSERT_NODE  an InsertNode (crate::insert_node)
//! type 3 TRANSFER_TABLET_RAW       Tablet.serialize() + u8 isAligned
//! type 4 TRANSFER_FILE_PIECE       String fileName, i64 startWritingOffset,
//!                                  i32 len + len bytes of the file
//!        reply body                i64 the receiver's file length after the
//!                                  call (-1 on an error)
//! type 5 TRANSFER_FILE_SEAL        String fileName, i64 fileLength
//! type 6 TRANSFER_TABLET_BATCH     i32 n, n × (i32 len + type-7 body)
//!                                  i32 n, n × InsertNode
//!                                  i32 n, n × (Tablet.serialize() + u8 isAligned)
//! type 7 TRANSFER_TABLET_BINARY    a raw WAL entry (crate::insert_node)
//! type 300 TRANSFER_COMPRESSED     any other request, compressed (IoTDB 1.3,
//!                                  `connector.compressor`; see [`compress`])
//! ```
//! Strings are i32 length + UTF-8, big-endian; the file name is a bare
//! name (no directory).

pub mod compress;

/// The field id of `pipeTransfer`'s argument: IoTDB's IDL declares it
/// without an id, so its generated code sends (and a Java receiver reads)
/// only -1.
pub const ARG_FIELD_ID: i16 = -1;
/// The only request version (`TPipeTransferReq.version`).
pub const VERSION: i8 = 1;
/// Handshake: the sender's timestamp precision.
pub const HANDSHAKE: i16 = 1;
/// A serialized InsertNode.
pub const TRANSFER_TABLET_INSERT_NODE: i16 = 2;
/// A raw tablet.
pub const TRANSFER_TABLET_RAW: i16 = 3;
/// A piece of a TsFile.
pub const TRANSFER_FILE_PIECE: i16 = 4;
/// The end of a TsFile.
pub const TRANSFER_FILE_SEAL: i16 = 5;
/// A batch of WAL entries, InsertNodes and tablets.
pub const TRANSFER_TABLET_BATCH: i16 = 6;
/// A raw WAL entry.
pub const TRANSFER_TABLET_BINARY: i16 = 7;
/// Another request, compressed (IoTDB 1.3's `PipeRequestType`; [`compress`]).
pub const TRANSFER_COMPRESSED: i16 = 300;

/// Status: unsupported request version.
pub const PIPE_VERSION_ERROR: i32 = 1800;
/// Status: unknown request type.
pub const PIPE_TYPE_ERROR: i32 = 1801;
/// Status: handshake refused (precision mismatch).
pub const PIPE_HANDSHAKE_ERROR: i32 = 1802;
/// Status: a file piece's offset is not where the receiver's file ends;
/// the reply body holds the receiver's length, to resume from there.
pub const PIPE_TRANSFER_FILE_OFFSET_RESET: i32 = 1803;
/// Status: a file piece or seal failed (the reply body, if any, is -1).
pub const PIPE_TRANSFER_FILE_ERROR: i32 = 1804;
/// Status: the statement a request became could not be built.
pub const PIPE_TRANSFER_EXECUTE_STATEMENT_ERROR: i32 = 1805;

/// IoTDB's name of a request type.
pub fn type_name(t: i16) -> &'static str {
    match t {
        HANDSHAKE => "HANDSHAKE",
        TRANSFER_TABLET_INSERT_NODE => "TRANSFER_TABLET_INSERT_NODE",
        TRANSFER_TABLET_RAW => "TRANSFER_TABLET_RAW",
        TRANSFER_FILE_PIECE => "TRANSFER_FILE_PIECE",
        TRANSFER_FILE_SEAL => "TRANSFER_FILE_SEAL",
        TRANSFER_TABLET_BATCH => "TRANSFER_TABLET_BATCH",
        TRANSFER_TABLET_BINARY => "TRANSFER_TABLET_BINARY",
        TRANSFER_COMPRESSED => "TRANSFER_COMPRESSED",
        _ => "UNKNOWN",
    }
}

/// A `pipeTransfer(-1: TPipeTransferReq)` CALL frame in TBinaryProtocol,
/// split around the body so a large body is written without copying it:
/// send `head`, the body, then `TAIL`. Byte for byte what the thrift
/// encoder writes (see the test).
pub fn call_head(seq: i32, request_type: i16, body_len: usize) -> Vec<u8> {
    const NAME: &[u8] = b"pipeTransfer";
    let payload_len = 4 + 4 + NAME.len() + 4 + 3 + 4 + 5 + 3 + 4 + body_len + TAIL.len();
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&(payload_len as i32).to_be_bytes());
    h.extend_from_slice(&0x8001_0001u32.to_be_bytes());
    h.extend_from_slice(&(NAME.len() as i32).to_be_bytes());
    h.extend_from_slice(NAME);
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&[0x0c, 0xff, 0xff]); // field -1: struct
    h.extend_from_slice(&[0x03, 0x00, 0x01, VERSION as u8]); // 1: version i8
    h.extend_from_slice(&[0x06, 0x00, 0x02]); // 2: type i16
    h.extend_from_slice(&request_type.to_be_bytes());
    h.extend_from_slice(&[0x0b, 0x00, 0x03]); // 3: body binary
    h.extend_from_slice(&(body_len as i32).to_be_bytes());
    h
}

/// What follows the body in a [`call_head`] frame: the ends of the request
/// and argument structs.
pub const TAIL: [u8; 2] = [0, 0];

/// The body of a handshake.
pub fn handshake_body(precision: &str) -> Vec<u8> {
    let mut b = (precision.len() as i32).to_be_bytes().to_vec();
    b.extend_from_slice(precision.as_bytes());
    b
}

/// Reads a handshake body.
///
/// # Errors
/// A body that is not one string.
pub fn read_handshake(body: &[u8]) -> Result<String, String> {
    if body.len() < 4 {
        return Err(format!("handshake body of {} bytes", body.len()));
    }
    let n = i32::from_be_bytes(body[..4].try_into().expect("4"));
    if n < 0 || n as usize != body.len() - 4 {
        return Err(format!(
            "handshake string length {n} in a body of {} bytes",
            body.len()
        ));
    }
    String::from_utf8(body[4..].to_vec()).map_err(|_| "handshake precision is not UTF-8".into())
}

/// A `pipeTransfer` request read in place from a binary-protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferInPlace {
    /// Field 1, `version`.
    pub version: Option<i8>,
    /// Field 2, `type`.
    pub type_: Option<i16>,
    /// Field 3, `body`: where it lies in the frame.
    pub body: std::ops::Range<usize>,
}

/// Reads the `pipeTransfer` arguments of a binary-protocol frame whose
/// argument struct starts at `args_at`, without copying the body. `None`
/// for anything but the plain shape our connector and Apache's send (the
/// request as field -1, holding only fields 1 to 3 with their declared
/// types); the caller then decodes the frame the general way, which also
/// reports what is wrong with it.
pub fn transfer_in_place(frame: &[u8], args_at: usize) -> Option<TransferInPlace> {
    struct Cursor<'a> {
        b: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let b = self.b.get(self.at..self.at.checked_add(n)?)?;
            self.at += n;
            Some(b)
        }
    }
    let mut c = Cursor {
        b: frame,
        at: args_at,
    };
    // The argument struct: one struct field, id -1 (IoTDB's IDL declares
    // the argument without an id).
    let h = c.take(3)?;
    if h[0] != 12 || i16::from_be_bytes([h[1], h[2]]) != ARG_FIELD_ID {
        return None;
    }
    let mut req = TransferInPlace {
        version: None,
        type_: None,
        body: 0..0,
    };
    loop {
        let t = c.take(1)?[0];
        if t == 0 {
            break;
        }
        let id = c.take(2)?;
        match (i16::from_be_bytes([id[0], id[1]]), t) {
            (1, 3) => req.version = Some(c.take(1)?[0] as i8),
            (2, 6) => {
                let v = c.take(2)?;
                req.type_ = Some(i16::from_be_bytes([v[0], v[1]]));
            }
            (3, 11) => {
                let n = c.take(4)?;
                let n = usize::try_from(i32::from_be_bytes([n[0], n[1], n[2], n[3]])).ok()?;
                let start = c.at;
                c.take(n)?;
                req.body = start..start + n;
            }
            _ => return None,
        }
    }
    // The end of the argument struct, and of the frame.
    (c.take(1)? == [0] && c.at == frame.len()).then_some(req)
}

/// The start of a type-6 body holding `tablets` tablets and nothing else:
/// the counts of WAL entries (0) and InsertNodes (0), then of tablets. The
/// tablets follow it, each in `Tablet.serialize()` + aligned-byte form.
pub fn batch_head(tablets: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[8..].copy_from_slice(&(tablets as i32).to_be_bytes());
    h
}

/// A type-6 body holding only tablets, each already in `Tablet.serialize()`
/// + aligned-byte form (what the change log stores).
pub fn batch_body<'a>(tablets: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut b = batch_head(tablets.len()).to_vec();
    for t in tablets {
        b.extend_from_slice(t);
    }
    b
}

/// The fewest bytes a serialized tablet with its aligned byte takes: an
/// empty device string (4), the row count (4), four section flags and the
/// aligned byte.
const MIN_TABLET_BYTES: usize = 4 + 4 + 4 + 1;

/// A batch's tablet count `nt`, checked against the `left` bytes that
/// follow it: each tablet takes at least `MIN_TABLET_BYTES`, so a count the
/// body cannot hold is refused, and room is reserved only for what fits.
///
/// # Errors
/// A negative count, or one the bytes left cannot hold.
pub fn batch_tablet_count(nt: i32, left: usize) -> Result<usize, String> {
    if nt < 0 || nt as usize > left / MIN_TABLET_BYTES {
        return Err(format!(
            "tablet count {nt} does not fit the {left} bytes left of the batch"
        ));
    }
    Ok(nt as usize)
}

/// The parts of a type-6 body.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Raw WAL entries (type-7 bodies).
    pub binaries: usize,
    /// InsertNodes.
    pub insert_nodes: usize,
    /// The tablets, decoded, each with where its bytes (`Tablet.serialize()`
    /// + aligned byte) sit in the body.
    pub tablets: Vec<(crate::tablet::Tablet, std::ops::Range<usize>)>,
}

/// Decodes a type-6 body. Tablets are found by decoding each in turn, as
/// the body carries no per-tablet length; InsertNodes cannot be skipped
/// without decoding them, so a body with InsertNodes reports their count
/// and no tablets.
///
/// # Errors
/// A body that does not decode.
pub fn read_batch(body: &[u8]) -> Result<Batch, String> {
    let i32_at = |at: usize| -> Result<i32, String> {
        body.get(at..at.saturating_add(4))
            .map(|s| i32::from_be_bytes(s.try_into().expect("4")))
            .ok_or_else(|| format!("batch body ends at byte {} of {}", at, body.len()))
    };
    let mut at = 0;
    let nb = i32_at(at)?;
    if nb < 0 {
        return Err(format!("negative binary count {nb}"));
    }
    at += 4;
    for _ in 0..nb {
        let len = i32_at(at)?;
        if len < 0 || len as usize > body.len() - (at + 4) {
            return Err(format!("binary entry of {len} bytes does not fit"));
        }
        at += 4 + len as usize;
    }
    let ni = i32_at(at)?;
    at += 4;
    if ni != 0 {
        return Ok(Batch {
            binaries: nb as usize,
            insert_nodes: ni.max(0) as usize,
            tablets: vec![],
        });
    }
    let nt = batch_tablet_count(i32_at(at)?, body.len() - (at + 4))?;
    at += 4;
    let mut tablets = Vec::with_capacity(nt);
    for i in 0..nt {
        let (t, len) = crate::tablet::Tablet::deserialize_v12_prefix(&body[at..])
            .map_err(|e| format!("tablet {i} of the batch: {e}"))?;
        tablets.push((t, at..at + len));
        at += len;
    }
    if at != body.len() {
        return Err(format!(
            "{} bytes after the last tablet of the batch",
            body.len() - at
        ));
    }
    Ok(Batch {
        binaries: nb as usize,
        insert_nodes: 0,
        tablets,
    })
}

/// The longest file name a piece or seal may carry (bytes), as most file
/// systems allow.
pub const MAX_FILE_NAME: usize = 255;

/// A `TRANSFER_FILE_PIECE` body, its bytes borrowed from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePiece<'a> {
    /// The file's bare name.
    pub file_name: String,
    /// Where the piece starts in the file.
    pub offset: i64,
    /// The piece.
    pub bytes: &'a [u8],
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads a file name: a non-null string of 1 to [`MAX_FILE_NAME`] bytes
/// that names a file, not a path (no `/`, `\`, NUL, not `.` or `..`).
/// Returns the name and the bytes after it.
fn read_file_name<'a>(body: &'a [u8], what: &str) -> Result<(String, &'a [u8]), String> {
    if body.len() < 4 {
        return Err(format!("{what}: body of {} bytes", body.len()));
    }
    let n = i32::from_be_bytes(body[..4].try_into().expect("4"));
    if n <= 0 || n as usize > MAX_FILE_NAME || n as usize > body.len() - 4 {
        return Err(format!(
            "{what}: file name length {n} (1 to {MAX_FILE_NAME} bytes, within a body of {})",
            body.len()
        ));
    }
    let (name, rest) = body[4..].split_at(n as usize);
    let name =
        std::str::from_utf8(name).map_err(|_| format!("{what}: the file name is not UTF-8"))?;
    if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "{what}: {name:?} is not a bare file name (no directories, not . or ..)"
        ));
    }
    Ok((name.to_string(), rest))
}

fn i64_at(b: &[u8], what: &str) -> Result<i64, String> {
    b.get(..8)
        .map(|s| i64::from_be_bytes(s.try_into().expect("8")))
        .ok_or_else(|| format!("{what}: the body ends before its 8-byte number"))
}

/// A `TRANSFER_FILE_PIECE` body.
pub fn file_piece_body(file_name: &str, offset: i64, bytes: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + file_name.len() + 12 + bytes.len());
    put_string(&mut b, file_name);
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    b.extend_from_slice(bytes);
    b
}

/// Reads a `TRANSFER_FILE_PIECE` body without copying the piece.
///
/// # Errors
/// A body that is not a file name, an offset and one length-prefixed
/// piece, exactly; a name that is a path.
pub fn read_file_piece(body: &[u8]) -> Result<FilePiece<'_>, String> {
    let what = "TRANSFER_FILE_PIECE";
    let (file_name, rest) = read_file_name(body, what)?;
    let offset = i64_at(rest, what)?;
    let rest = &rest[8..];
    let n = rest
        .get(..4)
        .map(|s| i32::from_be_bytes(s.try_into().expect("4")))
        .ok_or_else(|| format!("{what}: the body ends before the piece length"))?;
    if n < 0 || n as usize != rest.len() - 4 {
        return Err(format!(
            "{what}: piece length {n}, but {} bytes follow",
            rest.len() - 4
        ));
    }
    if offset < 0 {
        return Err(format!("{what}: negative offset {offset}"));
    }
    Ok(FilePiece {
        file_name,
        offset,
        bytes: &rest[4..],
    })
}

/// A `TRANSFER_FILE_SEAL` body.
pub fn file_seal_body(file_name: &str, length: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + file_name.len() + 8);
    put_string(&mut b, file_name);
    b.extend_from_slice(&length.to_be_bytes());
    b
}

/// Reads a `TRANSFER_FILE_SEAL` body: the file name and its length.
///
/// # Errors
/// A body that is not a file name and a length, exactly.
pub fn read_file_seal(body: &[u8]) -> Result<(String, i64), String> {
    let what = "TRANSFER_FILE_SEAL";
    let (name, rest) = read_file_name(body, what)?;
    let len = i64_at(rest, what)?;
    if rest.len() != 8 {
        return Err(format!("{what}: {} bytes after the length", rest.len() - 8));
    }
    Ok((name, len))
}

/// The body of a reply to a file piece: the receiver's file length.
pub fn file_piece_reply_body(length: i64) -> Vec<u8> {
    length.to_be_bytes().to_vec()
}

/// Reads the body of a reply to a file piece.
///
/// # Errors
/// A body that is not 8 bytes.
pub fn read_file_piece_reply(body: &[u8]) -> Result<i64, String> {
    if body.len() != 8 {
        return Err(format!("file piece reply body of {} bytes", body.len()));
    }
    i64_at(body, "file piece reply")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tablet::{Column, Tablet};

    use crate::test_util::hex;

    #[test]
    fn file_pieces_and_seals_match_the_reference() {
        // iotdb-sync-protocols.md §B.5.
        let piece = hex("0000000e 312d312d302d302e747366696c65 0000000000000000 00000003 616263");
        assert_eq!(file_piece_body("1-1-0-0.tsfile", 0, b"abc"), piece);
        let p = read_file_piece(&piece).unwrap();
        assert_eq!(
            (p.file_name.as_str(), p.offset, p.bytes),
            ("1-1-0-0.tsfile", 0, &b"abc"[..])
        );
        let seal = hex("0000000e 312d312d302d302e747366696c65 0000000000000003");
        assert_eq!(file_seal_body("1-1-0-0.tsfile", 3), seal);
        assert_eq!(read_file_seal(&seal).unwrap(), ("1-1-0-0.tsfile".into(), 3));
        for cut in 0..piece.len() {
            assert!(read_file_piece(&piece[..cut]).is_err(), "cut {cut}");
        }
        for cut in 0..seal.len() {
            assert!(read_file_seal(&seal[..cut]).is_err(), "cut {cut}");
        }
        let mut long = seal.clone();
        long.push(0);
        assert!(read_file_seal(&long).is_err());
        for bad in ["../x", "a/b", "..", ".", "a\\b", "a\0b", ""] {
            let e = read_file_piece(&file_piece_body(bad, 0, b"x")).unwrap_err();
            assert!(
                e.contains("bare file name") || e.contains("length 0"),
                "{bad}: {e}"
            );
        }
        assert!(read_file_piece(&file_piece_body("f", -1, b"x"))
            .unwrap_err()
            .contains("negative offset"));
        let mut huge = file_piece_body("f", 0, b"x");
        huge[13..17].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(read_file_piece(&huge).unwrap_err().contains("piece length"));
        assert_eq!(
            read_file_piece_reply(&file_piece_reply_body(77)).unwrap(),
            77
        );
        assert!(read_file_piece_reply(&[0; 7]).is_err());
    }

    #[test]
    fn transfer_read_in_place_matches_the_thrift_decoding() {
        use crate::message::{call, Call, Proto};
        use crate::rpc::TPipeTransferReq;
        let body: Vec<u8> = (0..1000).map(|i| i as u8).collect();
        // Our connector's hand-built frame, and the generic thrift encoder's
        // with the request as field -1.
        let mut ours = call_head(7, TRANSFER_TABLET_BATCH, body.len());
        ours.extend_from_slice(&body);
        ours.extend_from_slice(&TAIL);
        let req = TPipeTransferReq {
            version: Some(VERSION),
            type_: Some(TRANSFER_TABLET_BATCH),
            body: Some(body.clone()),
        };
        // The request at field 1 is not IoTDB's wire: not read in place.
        let at1 = call(Proto::Binary, "pipeTransfer", 7, 1, &req);
        let c = Call::parse(&at1[4..]).unwrap();
        assert_eq!(transfer_in_place(&at1[4..], c.args_at.unwrap()), None);
        for frame in [ours, call(Proto::Binary, "pipeTransfer", 7, -1, &req)] {
            let payload = &frame[4..];
            let mut c = Call::parse(payload).unwrap();
            let got = transfer_in_place(payload, c.args_at.unwrap()).expect("read in place");
            assert_eq!(c.arg::<TPipeTransferReq>().unwrap().unwrap(), req);
            assert_eq!(got.version, Some(VERSION));
            assert_eq!(got.type_, Some(TRANSFER_TABLET_BATCH));
            assert_eq!(&payload[got.body.clone()], &body[..]);
            // Cut anywhere, it is not read in place (the general decoding
            // then reports the damage).
            for cut in [payload.len() - 1, got.body.start + 10, 30] {
                assert_eq!(transfer_in_place(&payload[..cut], c.args_at.unwrap()), None);
            }
        }
        // The compact protocol is left to the general decoding.
        let compact = call(Proto::Compact, "pipeTransfer", 7, 1, &req);
        assert_eq!(Call::parse(&compact[4..]).unwrap().args_at, None);
    }

    #[test]
    fn hand_written_call_frame_matches_the_thrift_encoder() {
        use crate::message::{call, Proto};
        use crate::rpc::TPipeTransferReq;
        for (t, body) in [
            (HANDSHAKE, handshake_body("ms")),
            (TRANSFER_TABLET_RAW, vec![7u8; 1000]),
        ] {
            let req = TPipeTransferReq {
                version: Some(VERSION),
                type_: Some(t),
                body: Some(body.clone()),
            };
            let want = call(Proto::Binary, "pipeTransfer", 42, -1, &req);
            let mut got = call_head(42, t, body.len());
            got.extend_from_slice(&body);
            got.extend_from_slice(&TAIL);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn batch_round_trip() {
        let t = Tablet {
            device: "root.sg.d".into(),
            measurements: vec!["a".into(), "b".into()],
            columns: vec![
                Column::Int64(vec![1, 2]),
                Column::Text(vec![b"x".to_vec(), vec![]]),
            ],
            nulls: vec![None, Some(vec![false, true])],
            times: vec![10, 20],
            aligned: true,
        };
        let bytes = t.serialize_v12();
        let body = batch_body([&bytes[..], &bytes[..]].into_iter());
        let b = read_batch(&body).unwrap();
        assert_eq!(b.tablets.len(), 2);
        assert_eq!(b.tablets[1].0, t);
        assert_eq!(&body[b.tablets[1].1.clone()], &bytes[..]);
        for cut in 0..body.len() {
            assert!(read_batch(&body[..cut]).is_err(), "cut {cut}");
        }
        // A count the body cannot hold is refused before anything is
        // reserved for it (issue 13: about 144 bytes were reserved per byte
        // of body).
        let mut huge = batch_head(0).to_vec();
        huge[8..].copy_from_slice(&i32::MAX.to_be_bytes());
        huge.extend_from_slice(&[0u8; 1000]);
        let e = read_batch(&huge).unwrap_err();
        assert!(e.contains("tablet count 2147483647 does not fit"), "{e}");
        let mut many = batch_head(0).to_vec();
        many[8..].copy_from_slice(&100i32.to_be_bytes());
        many.extend_from_slice(&bytes);
        many.extend_from_slice(&bytes);
        assert!(read_batch(&many).unwrap_err().contains("tablet count 100"));
        assert_eq!(read_handshake(&handshake_body("ms")).unwrap(), "ms");
        assert!(read_handshake(&[0, 0, 0, 9, b'm']).is_err());
    }
}
