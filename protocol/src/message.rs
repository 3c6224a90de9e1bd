//! Thrift messages inside frames: decoding a call, encoding its reply or an
//! application exception. Pure: no I/O.
//!
//! A frame is a 4-byte big-endian length and that many bytes of protocol
//! payload. The protocol is told apart by the payload's first byte: 0x80 is
//! strict TBinaryProtocol, 0x82 TCompactProtocol, 0x00 non-strict binary.

use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TFieldIdentifier, TInputProtocol,
    TMessageIdentifier, TMessageType, TOutputProtocol, TSerializable, TStructIdentifier, TType,
};
use thrift::{ApplicationError, ApplicationErrorKind};

use crate::thrift_in::{BinaryIn, CompactIn};

/// The thrift protocol a peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TBinaryProtocol.
    Binary,
    /// TCompactProtocol.
    Compact,
}

/// Why a frame could not be taken as a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first byte is no thrift protocol's: the peer is not speaking
    /// thrift (or not framed thrift). The connection should close.
    UnknownProtocol(u8),
    /// The message header does not decode.
    BadHeader(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::UnknownProtocol(b) => write!(
                f,
                "first byte {b:#04x} is neither binary (0x80) nor compact (0x82) thrift; is the client using framed thrift?"
            ),
            FrameError::BadHeader(m) => write!(f, "bad thrift message header: {m}"),
        }
    }
}

/// A call read from a frame; its arguments are read on demand.
pub struct Call<'a> {
    /// The protocol the caller speaks (replies use the same).
    pub proto: Proto,
    /// The method name.
    pub name: String,
    /// The caller's sequence id, echoed in the reply.
    pub seq: i32,
    /// The message type (CALL or ONEWAY for calls).
    pub kind: TMessageType,
    /// Binary protocol only: where the argument struct starts in the frame,
    /// for callers that read a large argument in place.
    pub args_at: Option<usize>,
    input: Box<dyn TInputProtocol + 'a>,
}

impl<'a> Call<'a> {
    /// Reads the message header of `frame` (the payload after the length).
    ///
    /// # Errors
    /// [`FrameError`] when the frame is not a thrift message.
    pub fn parse(frame: &'a [u8]) -> Result<Call<'a>, FrameError> {
        let first = *frame
            .first()
            .ok_or(FrameError::BadHeader("empty frame".into()))?;
        let (proto, mut input): (Proto, Box<dyn TInputProtocol + 'a>) = match first {
            0x80 | 0x00 => (Proto::Binary, Box::new(BinaryIn::new(frame))),
            0x82 => (Proto::Compact, Box::new(CompactIn::new(frame))),
            b => return Err(FrameError::UnknownProtocol(b)),
        };
        let id = input
            .read_message_begin()
            .map_err(|e| FrameError::BadHeader(e.to_string()))?;
        // Strict binary: version+type, name length, name, seq; old style:
        // name length, name, type byte, seq.
        let args_at = match (proto, first) {
            (Proto::Binary, 0x80) => Some(12 + id.name.len()),
            (Proto::Binary, _) => Some(9 + id.name.len()),
            _ => None,
        };
        Ok(Call {
            proto,
            name: id.name,
            seq: id.sequence_number,
            kind: id.message_type,
            args_at,
            input,
        })
    }

    /// Reads the argument struct and returns its first field of struct
    /// type, decoded as `T` (IoTDB calls take one request struct, as field
    /// 1, or -1 where the IDL declares it without an id). `None` when the
    /// call carries no struct argument.
    ///
    /// # Errors
    /// Decode errors of the argument.
    pub fn arg<T: TSerializable>(&mut self) -> thrift::Result<Option<T>> {
        let mut found = None;
        self.read_args(|p, f| {
            if f.field_type == TType::Struct && found.is_none() {
                found = Some(T::read_from_in_protocol(p)?);
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        Ok(found)
    }

    /// Reads the argument struct and returns its struct field with id
    /// `field_id`, decoded as `T`; `None` when the call carries no struct
    /// argument. For calls whose argument IoTDB's IDL declares without an
    /// id (`pipeTransfer`, `handshake`): their generated code sends field
    /// -1 and a Java server reads only that, so this one does too.
    ///
    /// # Errors
    /// Decode errors of the argument, or a struct argument at another
    /// field id (the message names both ids).
    pub fn arg_at<T: TSerializable>(&mut self, field_id: i16) -> thrift::Result<Option<T>> {
        let mut found = None;
        let mut elsewhere = None;
        self.read_args(|p, f| {
            if f.field_type == TType::Struct && found.is_none() {
                if f.id == Some(field_id) {
                    found = Some(T::read_from_in_protocol(p)?);
                    return Ok(true);
                }
                elsewhere.get_or_insert(f.id.unwrap_or(0));
            }
            Ok(false)
        })?;
        match (found, elsewhere) {
            (Some(t), _) => Ok(Some(t)),
            (None, Some(other)) => Err(thrift::Error::Protocol(thrift::ProtocolError::new(
                thrift::ProtocolErrorKind::InvalidData,
                format!(
                    "the request struct is field id {other}; it must be field id {field_id}, as IoTDB's generated code sends it"
                ),
            ))),
            (None, None) => Ok(None),
        }
    }

    /// Reads the whole argument struct as `T`: for calls whose arguments are
    /// not one request struct (`sendPipeData(1: binary buff)`,
    /// `sendFile(1: TSyncTransportMetaInfo, 2: binary)`), with `T` an IDL
    /// struct holding the same field ids.
    ///
    /// # Errors
    /// Decode errors of the arguments.
    pub fn args<T: TSerializable>(&mut self) -> thrift::Result<T> {
        let p = &mut *self.input;
        let t = T::read_from_in_protocol(p)?;
        p.read_message_end()?;
        Ok(t)
    }

    /// Reads the argument struct and returns its first i64 field (calls such
    /// as `requestStatementId(sessionId)`).
    ///
    /// # Errors
    /// Decode errors.
    pub fn arg_i64(&mut self) -> thrift::Result<Option<i64>> {
        let mut found = None;
        self.read_args(|p, f| {
            if f.field_type == TType::I64 && found.is_none() {
                found = Some(p.read_i64()?);
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        Ok(found)
    }

    fn read_args(
        &mut self,
        mut take: impl FnMut(&mut dyn TInputProtocol, &TFieldIdentifier) -> thrift::Result<bool>,
    ) -> thrift::Result<()> {
        let p = &mut *self.input;
        p.read_struct_begin()?;
        loop {
            let f = p.read_field_begin()?;
            if f.field_type == TType::Stop {
                break;
            }
            if !take(p, &f)? {
                p.skip(f.field_type)?;
            }
            p.read_field_end()?;
        }
        p.read_struct_end()?;
        p.read_message_end()
    }
}

/// A thrift error as a sentence: the `thrift` crate's `Display` of a
/// protocol error gives only its kind ("bad data"), dropping the message
/// that says what was wrong.
pub fn describe(e: &thrift::Error) -> String {
    match e {
        thrift::Error::Protocol(p) if !p.message.is_empty() => format!("{e}: {}", p.message),
        thrift::Error::Transport(t) if !t.message.is_empty() => format!("{e}: {}", t.message),
        thrift::Error::Application(a) => a.message.clone(),
        other => other.to_string(),
    }
}

fn with_output(
    proto: Proto,
    write: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(256);
    {
        let result = match proto {
            Proto::Binary => {
                let mut o = TBinaryOutputProtocol::new(&mut payload, true);
                write(&mut o).and_then(|_| o.flush())
            }
            Proto::Compact => {
                let mut o = TCompactOutputProtocol::new(&mut payload);
                write(&mut o).and_then(|_| o.flush())
            }
        };
        // Writing into a Vec cannot fail.
        result.expect("encode into memory");
    }
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// A REPLY frame whose result struct carries `write_success` as field 0.
pub fn reply_with(
    proto: Proto,
    name: &str,
    seq: i32,
    field_type: TType,
    write_success: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
) -> Vec<u8> {
    with_output(proto, |o| {
        o.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Reply, seq))?;
        o.write_struct_begin(&TStructIdentifier::new("result"))?;
        o.write_field_begin(&TFieldIdentifier::new("success", field_type, 0))?;
        write_success(o)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()?;
        o.write_message_end()
    })
}

/// A REPLY frame carrying a struct result.
pub fn reply<T: TSerializable>(proto: Proto, name: &str, seq: i32, value: &T) -> Vec<u8> {
    reply_with(proto, name, seq, TType::Struct, |o| {
        value.write_to_out_protocol(o)
    })
}

/// A REPLY frame carrying an i64 result.
pub fn reply_i64(proto: Proto, name: &str, seq: i32, value: i64) -> Vec<u8> {
    reply_with(proto, name, seq, TType::I64, |o| o.write_i64(value))
}

/// An EXCEPTION frame with a `TApplicationException`.
pub fn exception(
    proto: Proto,
    name: &str,
    seq: i32,
    kind: ApplicationErrorKind,
    message: &str,
) -> Vec<u8> {
    with_output(proto, |o| {
        o.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Exception, seq))?;
        thrift::Error::write_application_error_to_out_protocol(
            &ApplicationError::new(kind, message),
            o,
        )?;
        o.write_message_end()
    })
}

/// A CALL frame (for clients and tests): `arg` as field `field_id` of the
/// argument struct.
pub fn call<T: TSerializable>(
    proto: Proto,
    name: &str,
    seq: i32,
    field_id: i16,
    arg: &T,
) -> Vec<u8> {
    with_output(proto, |o| {
        o.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, seq))?;
        o.write_struct_begin(&TStructIdentifier::new("args"))?;
        o.write_field_begin(&TFieldIdentifier::new("req", TType::Struct, field_id))?;
        arg.write_to_out_protocol(o)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()?;
        o.write_message_end()
    })
}

/// A CALL frame whose argument struct is `args` itself (see
/// [`Call::args`]): `sendPipeData`, `sendFile`.
pub fn call_args<T: TSerializable>(proto: Proto, name: &str, seq: i32, args: &T) -> Vec<u8> {
    with_output(proto, |o| {
        o.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, seq))?;
        args.write_to_out_protocol(o)?;
        o.write_message_end()
    })
}

/// Reads a REPLY frame's payload (after the length) as `T`, for clients and
/// tests.
///
/// # Errors
/// An application exception from the server, or decode errors.
pub fn read_reply<T: TSerializable>(payload: &[u8]) -> thrift::Result<T> {
    let mut call = Call::parse(payload).map_err(|e| {
        thrift::Error::Protocol(thrift::ProtocolError::new(
            thrift::ProtocolErrorKind::InvalidData,
            e.to_string(),
        ))
    })?;
    if call.kind == TMessageType::Exception {
        let e = thrift::Error::read_application_error_from_in_protocol(&mut *call.input)?;
        return Err(thrift::Error::Application(e));
    }
    let p = &mut *call.input;
    p.read_struct_begin()?;
    let mut found = None;
    loop {
        let f = p.read_field_begin()?;
        if f.field_type == TType::Stop {
            break;
        }
        if f.id == Some(0) && f.field_type == TType::Struct {
            found = Some(T::read_from_in_protocol(p)?);
        } else {
            p.skip(f.field_type)?;
        }
        p.read_field_end()?;
    }
    found.ok_or_else(|| {
        thrift::Error::Application(ApplicationError::new(
            ApplicationErrorKind::MissingResult,
            "no result",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{TSCloseSessionReq, TSStatus};

    #[test]
    fn request_statement_id_matches_the_reference_bytes() {
        // iotdb-client-rpc.md §1 worked example.
        let req: Vec<u8> = [
            &[0x80, 0x01, 0x00, 0x01, 0, 0, 0, 0x12][..],
            b"requestStatementId",
            &[
                0, 0, 0, 0, 0x0a, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x10, 0x92, 0x00,
            ],
        ]
        .concat();
        let mut call = Call::parse(&req).unwrap();
        assert_eq!(
            (call.proto, call.name.as_str(), call.seq),
            (Proto::Binary, "requestStatementId", 0)
        );
        assert_eq!(call.arg_i64().unwrap(), Some(4242));
        let reply = reply_i64(Proto::Binary, "requestStatementId", 0, 7);
        let want: Vec<u8> = [
            &[0, 0, 0, 0x2a, 0x80, 0x01, 0x00, 0x02, 0, 0, 0, 0x12][..],
            b"requestStatementId",
            &[
                0, 0, 0, 0, 0x0a, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x07, 0x00,
            ],
        ]
        .concat();
        assert_eq!(reply, want);
    }

    #[test]
    fn struct_args_and_replies_round_trip_in_both_protocols() {
        for proto in [Proto::Binary, Proto::Compact] {
            let frame = call(
                proto,
                "closeSession",
                3,
                1,
                &TSCloseSessionReq {
                    session_id: Some(9),
                },
            );
            let mut c = Call::parse(&frame[4..]).unwrap();
            assert_eq!(c.proto, proto);
            assert_eq!(
                c.arg::<TSCloseSessionReq>().unwrap().unwrap().session_id,
                Some(9)
            );
            // Field -1 (an argument declared without an id) is taken too,
            // and `arg_at` takes only the id it is given.
            let frame = call(
                proto,
                "x",
                1,
                -1,
                &TSCloseSessionReq {
                    session_id: Some(5),
                },
            );
            let got = Call::parse(&frame[4..])
                .unwrap()
                .arg::<TSCloseSessionReq>()
                .unwrap()
                .unwrap();
            assert_eq!(got.session_id, Some(5));
            let mut c = Call::parse(&frame[4..]).unwrap();
            assert_eq!(
                c.arg_at::<TSCloseSessionReq>(-1)
                    .unwrap()
                    .unwrap()
                    .session_id,
                Some(5)
            );
            let at1 = call(
                proto,
                "x",
                1,
                1,
                &TSCloseSessionReq {
                    session_id: Some(5),
                },
            );
            let e = describe(
                &Call::parse(&at1[4..])
                    .unwrap()
                    .arg_at::<TSCloseSessionReq>(-1)
                    .unwrap_err(),
            );
            assert!(e.contains("field id 1; it must be field id -1"), "{e}");
            let st = TSStatus {
                code: 200,
                message: Some("ok".into()),
                sub_status: None,
                redirect_node: None,
                need_retry: None,
            };
            let r = reply(proto, "closeSession", 3, &st);
            assert_eq!(read_reply::<TSStatus>(&r[4..]).unwrap(), st);
            let e = exception(
                proto,
                "nope",
                1,
                ApplicationErrorKind::UnknownMethod,
                "unknown method nope",
            );
            match read_reply::<TSStatus>(&e[4..]) {
                Err(thrift::Error::Application(a)) => {
                    assert_eq!(a.kind, ApplicationErrorKind::UnknownMethod);
                    assert_eq!(a.message, "unknown method nope");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            Call::parse(b"GET / HTTP/1.1"),
            Err(FrameError::UnknownProtocol(b'G'))
        ));
    }
}
