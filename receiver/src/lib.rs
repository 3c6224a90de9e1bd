//! The receiving side of IoTDB 1.2's `pipeTransfer`, as any edgepipe node
//! serves it on its client port (no login, as in IoTDB 1.2).
//!
//! - Handshake (type 1): the sender's timestamp precision must equal ours,
//!   else 1802 PIPE_HANDSHAKE_ERROR naming both.
//! - Tablets (type 3) and tablet batches (type 6) are applied through the
//!   node's own change log ([`Apply`]); series are created as the node's
//!   schema rules say.
//! - Types not handled yet (2 InsertNode, 4/5 file pieces, 7 WAL entries,
//!   and batches carrying InsertNodes or WAL entries) get 1107 PIPE_ERROR
//!   naming the type; unknown types 1801, other versions 1800. The
//!   connection stays usable.
//! - Decode errors are statuses (1107), never panics.
//!
//! Applying the same tablet twice leaves the same data (a later write of a
//! series and timestamp replaces the earlier one), so a sender's replay
//! after a fault does not change query results.
//! - Who may send: [`whitelist::IpWhiteList`] (`ip_white_list`), checked on
//!   the socket's peer address by the server before a request is decoded.
#![deny(missing_docs)]

pub mod whitelist;

use protocol::pipe::{self, Batch};
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp, TSStatus};
use protocol::tablet::Tablet;
use protocol::types::status;
use tracing::debug;

/// Where received tablets go.
pub trait Apply: Send + Sync {
    /// Applies tablets in order through the change log; each comes with its
    /// serialized bytes as received (`Tablet.serialize()` + aligned byte),
    /// which the log can store as they are. Returns the log offset to wait
    /// on for durability, or the first failure as `(status code, message)`.
    ///
    /// # Errors
    /// The failing tablet's status.
    fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)>;
}

/// Per-connection receiver state.
#[derive(Debug, Default)]
pub struct ReceiverState {
    /// The precision of the last successful handshake.
    pub handshake: Option<String>,
}

fn resp(code: i32, message: Option<String>) -> TPipeTransferResp {
    TPipeTransferResp {
        status: TSStatus {
            code,
            message,
            sub_status: None,
            redirect_node: None,
            need_retry: None,
        },
        body: None,
    }
}

/// Handles one `pipeTransfer` request. Returns the reply and, when data was
/// applied, the log offset to wait on before sending it.
pub fn handle(
    req: TPipeTransferReq,
    state: &mut ReceiverState,
    precision: &str,
    apply: &dyn Apply,
) -> (TPipeTransferResp, Option<u64>) {
    let body = req.body.unwrap_or_default();
    handle_parts(req.version, req.type_, &body, state, precision, apply)
}

/// [`handle`] for a request whose fields were read in place: `body` can be
/// a slice of the received frame (no copy of a 16 MiB body).
pub fn handle_parts(
    version: Option<i8>,
    type_: Option<i16>,
    body: &[u8],
    state: &mut ReceiverState,
    precision: &str,
    apply: &dyn Apply,
) -> (TPipeTransferResp, Option<u64>) {
    let version = version.unwrap_or(-1);
    if version != pipe::VERSION {
        return (
            resp(
                pipe::PIPE_VERSION_ERROR,
                Some(format!("Unsupported pipe version {version}")),
            ),
            None,
        );
    }
    let Some(t) = type_ else {
        return (
            resp(
                pipe::PIPE_TYPE_ERROR,
                Some("pipeTransfer request without a type".into()),
            ),
            None,
        );
    };
    debug!(
        r#type = pipe::type_name(t),
        bytes = body.len(),
        "pipeTransfer"
    );
    match t {
        pipe::HANDSHAKE => match pipe::read_handshake(body) {
            Ok(p) if p == precision => {
                state.handshake = Some(p);
                (resp(status::SUCCESS, None), None)
            }
            Ok(p) => (
                resp(
                    pipe::PIPE_HANDSHAKE_ERROR,
                    Some(format!("IoTDB receiver's timestamp precision {precision}, connector's timestamp precision {p}. Validation fails.")),
                ),
                None,
            ),
            Err(e) => (resp(status::PIPE_ERROR, Some(format!("handshake body does not decode: {e}"))), None),
        },
        // Decoded once. The usual body ends with the aligned byte and is
        // logged as received; one without it is logged re-encoded with it.
        pipe::TRANSFER_TABLET_RAW => match Tablet::deserialize_v12_body(body) {
            Ok((tablet, true)) => applied(apply, vec![(tablet, body)]),
            Ok((tablet, false)) => {
                let bytes = tablet.serialize_v12();
                applied(apply, vec![(tablet, &bytes[..])])
            }
            Err(e) => (resp(status::PIPE_ERROR, Some(format!("TRANSFER_TABLET_RAW body does not decode: {e}"))), None),
        },
        pipe::TRANSFER_TABLET_BATCH => match pipe::read_batch(body) {
            Ok(Batch { binaries, insert_nodes, tablets }) if binaries == 0 && insert_nodes == 0 => {
                applied(apply, tablets.into_iter().map(|(t, r)| (t, &body[r])).collect())
            }
            Ok(b) => (
                resp(
                    status::PIPE_ERROR,
                    Some(format!(
                        "TRANSFER_TABLET_BATCH with {} WAL entries and {} InsertNodes: only tablets are supported by edgepipe; send tablets (type 3 or tablet-only batches)",
                        b.binaries, b.insert_nodes
                    )),
                ),
                None,
            ),
            Err(e) => (resp(status::PIPE_ERROR, Some(format!("TRANSFER_TABLET_BATCH body does not decode: {e}"))), None),
        },
        pipe::TRANSFER_TABLET_INSERT_NODE | pipe::TRANSFER_FILE_PIECE | pipe::TRANSFER_FILE_SEAL | pipe::TRANSFER_TABLET_BINARY => (
            resp(
                status::PIPE_ERROR,
                Some(format!(
                    "pipeTransfer request type {t} ({}) is not supported by edgepipe yet; send tablets (type 3 or 6)",
                    pipe::type_name(t)
                )),
            ),
            None,
        ),
        other => (resp(pipe::PIPE_TYPE_ERROR, Some(format!("Unknown PipeRequestType {other}."))), None),
    }
}

fn applied(apply: &dyn Apply, tablets: Vec<(Tablet, &[u8])>) -> (TPipeTransferResp, Option<u64>) {
    if tablets.is_empty() {
        return (resp(status::SUCCESS, None), None);
    }
    match apply.apply(tablets) {
        Ok(offset) => (resp(status::SUCCESS, None), offset),
        Err((code, message)) => (
            resp(
                status::EXECUTE_STATEMENT_ERROR,
                Some(format!("{code}: {message}")),
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::tablet::Column;
    use std::sync::Mutex;

    /// What was applied: each tablet with the bytes handed to the log.
    #[derive(Default)]
    struct Sink(Mutex<Vec<(Tablet, Vec<u8>)>>);

    impl Apply for Sink {
        fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)> {
            if tablets.iter().any(|t| t.0.device == "root.bad") {
                return Err((507, "type mismatch".into()));
            }
            let mut v = self.0.lock().unwrap();
            v.extend(tablets.into_iter().map(|(t, b)| (t, b.to_vec())));
            Ok(Some(v.len() as u64))
        }
    }

    impl Sink {
        fn tablets(&self) -> Vec<Tablet> {
            self.0.lock().unwrap().iter().map(|t| t.0.clone()).collect()
        }
    }

    fn req(t: i16, body: Vec<u8>) -> TPipeTransferReq {
        TPipeTransferReq {
            version: Some(1),
            type_: Some(t),
            body: Some(body),
        }
    }

    fn tablet(device: &str) -> Tablet {
        Tablet {
            device: device.into(),
            measurements: vec!["m".into()],
            columns: vec![Column::Int64(vec![1])],
            nulls: vec![None],
            times: vec![5],
            aligned: false,
        }
    }

    #[test]
    fn handshake_tablets_and_refusals() {
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        let (r, _) = handle(req(1, pipe::handshake_body("us")), &mut st, "ms", &sink);
        assert_eq!(r.status.code, 1802);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("receiver's timestamp precision ms, connector's timestamp precision us"));
        let (r, _) = handle(req(1, pipe::handshake_body("ms")), &mut st, "ms", &sink);
        assert_eq!(r.status.code, 200);
        let (r, off) = handle(
            req(3, tablet("root.a.d").serialize_v12()),
            &mut st,
            "ms",
            &sink,
        );
        assert_eq!((r.status.code, off), (200, Some(1)));
        // A body without the trailing aligned byte is accepted too: what is
        // applied is the tablet it holds (not aligned), and the log gets it
        // in its own form, with the aligned byte.
        let mut g = tablet("root.a.g");
        g.aligned = true;
        let mut short = g.serialize_v12();
        short.pop();
        let (r, _) = handle(req(3, short), &mut st, "ms", &sink);
        assert_eq!(r.status.code, 200);
        let (applied, logged) = sink.0.lock().unwrap().pop().unwrap();
        g.aligned = false;
        assert_eq!(applied, g);
        assert_eq!(logged, g.serialize_v12());
        // With the aligned byte, the body is logged as received.
        let mut h = tablet("root.a.h");
        h.aligned = true;
        let (r, _) = handle(req(3, h.serialize_v12()), &mut st, "ms", &sink);
        assert_eq!(r.status.code, 200);
        let (applied, logged) = sink.0.lock().unwrap().pop().unwrap();
        assert_eq!(applied, h);
        assert_eq!(logged, h.serialize_v12());
        let bytes = [
            tablet("root.a.e").serialize_v12(),
            tablet("root.a.f").serialize_v12(),
        ];
        let (r, off) = handle(
            req(6, pipe::batch_body(bytes.iter().map(|b| &b[..]))),
            &mut st,
            "ms",
            &sink,
        );
        assert_eq!((r.status.code, off), (200, Some(3)));
        let (r, _) = handle(
            req(3, tablet("root.bad").serialize_v12()),
            &mut st,
            "ms",
            &sink,
        );
        assert_eq!(r.status.code, 301);
        for t in [2, 4, 5, 7] {
            let (r, _) = handle(req(t, vec![1, 2, 3]), &mut st, "ms", &sink);
            assert_eq!(r.status.code, 1107);
            assert!(r
                .status
                .message
                .unwrap()
                .contains(&format!("request type {t} (")));
        }
        let (r, _) = handle(req(99, vec![]), &mut st, "ms", &sink);
        assert_eq!(r.status.code, 1801);
        let (r, _) = handle(
            TPipeTransferReq {
                version: Some(2),
                type_: Some(3),
                body: None,
            },
            &mut st,
            "ms",
            &sink,
        );
        assert_eq!(r.status.code, 1800);
        let (r, _) = handle(req(3, vec![0, 0, 0, 50, 1]), &mut st, "ms", &sink);
        assert_eq!(r.status.code, 1107);
        assert!(r.status.message.unwrap().contains("does not decode"));
        assert_eq!(
            sink.tablets(),
            vec![tablet("root.a.d"), tablet("root.a.e"), tablet("root.a.f")]
        );
        for (t, b) in sink.0.lock().unwrap().iter() {
            assert_eq!(&t.serialize_v12(), b);
        }
    }

    #[test]
    fn absent_value_columns_cost_nothing_and_hold_no_points() {
        // Issue 7 finding 5: a body claiming many rows and hundreds of
        // absent columns (one byte each) was expanded into a placeholder
        // per row and column. An absent column holds no points: it is left
        // out, and the present one is applied.
        let rows = 20_000usize;
        let mut body = Vec::new();
        let put = |b: &mut Vec<u8>, s: &[u8]| {
            b.extend_from_slice(&(s.len() as i32).to_be_bytes());
            b.extend_from_slice(s);
        };
        put(&mut body, b"root.amp.d");
        body.extend_from_slice(&(rows as i32).to_be_bytes());
        let columns = 500;
        body.push(1);
        body.extend_from_slice(&(columns as i32).to_be_bytes());
        for c in 0..columns {
            body.push(1);
            put(&mut body, format!("m{c}").as_bytes());
            body.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0]); // INT64, props 0
        }
        body.push(1);
        for r in 0..rows {
            body.extend_from_slice(&(r as i64).to_be_bytes());
        }
        body.push(0); // no bitmaps
        body.push(1);
        body.push(1); // m0 present
        for r in 0..rows {
            body.extend_from_slice(&(r as i64 * 10).to_be_bytes());
        }
        body.extend(std::iter::repeat_n(0u8, columns - 1)); // the rest absent
        body.push(0); // aligned
        let sink = Sink::default();
        let (r, _) = handle(
            req(3, body.clone()),
            &mut ReceiverState::default(),
            "ms",
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let (t, logged) = sink.0.lock().unwrap().pop().unwrap();
        assert_eq!(t.measurements, vec!["m0"]);
        assert_eq!(t.rows(), rows);
        assert_eq!(t.columns.len(), 1);
        assert_eq!(logged, body);
        // Rows without timestamps are refused, not invented.
        let mut no_times = Vec::new();
        put(&mut no_times, b"root.amp.d");
        no_times.extend_from_slice(&1000i32.to_be_bytes());
        no_times.extend_from_slice(&[0, 0]);
        no_times.extend(std::iter::repeat_n(0u8, 1000));
        let (r, _) = handle(req(3, no_times), &mut ReceiverState::default(), "ms", &sink);
        assert_eq!(r.status.code, 1107);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("1000 rows but no timestamps"));
    }
}
