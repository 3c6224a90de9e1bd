//! Issue 11: a sender may write its next `pipeTransfer` before the reply to
//! the one before (edgepipe's sync connector keeps two in flight). The node
//! reads and applies the next request while the previous write is being
//! made durable, and answers every request in order, each once its own
//! write is durable — a refused one, answered at once, after the replies
//! before it.

use std::io::Write;
use std::time::Duration;

use e2e::{read_frame, sql, NodeProc};
use protocol::message::{call, read_reply, Proto};
use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp};
use protocol::tablet::{Column, Tablet};

fn request(seq: i32, kind: i16, body: Vec<u8>) -> Vec<u8> {
    call(
        Proto::Binary,
        "pipeTransfer",
        seq,
        pipe::ARG_FIELD_ID,
        &TPipeTransferReq {
            version: Some(pipe::VERSION),
            type_: Some(kind),
            body: Some(body),
        },
    )
}

/// The sequence number of a binary-protocol reply frame.
fn seq_of(frame: &[u8]) -> i32 {
    let n = i32::from_be_bytes(frame[4..8].try_into().unwrap()) as usize;
    i32::from_be_bytes(frame[8 + n..12 + n].try_into().unwrap())
}

/// 100 rows of `root.p.d.s` from `k * 100`; INT32 instead of DOUBLE when
/// `wrong_type` (the node refuses it: the series is DOUBLE).
fn tablet(k: i64, wrong_type: bool) -> Vec<u8> {
    let times: Vec<i64> = (k * 100..k * 100 + 100).collect();
    Tablet {
        device: "root.p.d".into(),
        measurements: vec!["s".into()],
        columns: vec![if wrong_type {
            Column::Int32(times.iter().map(|&t| t as i32).collect())
        } else {
            Column::Double(times.iter().map(|&t| t as f64 / 4.0).collect())
        }],
        nulls: vec![None],
        times,
        aligned: false,
    }
    .serialize_v12()
}

#[test]
fn pipelined_transfers_are_answered_in_order_each_once_durable() {
    let tmp = tempfile::tempdir().unwrap();
    // The default fsync policy: every reply waits for a log sync.
    let node = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let mut s = std::net::TcpStream::connect(node.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&request(1, pipe::HANDSHAKE, pipe::handshake_body("ms")))
        .unwrap();
    let hs: TPipeTransferResp = read_reply(&read_frame(&mut s)).unwrap();
    assert_eq!(hs.status.code, 200);

    // Eight requests back to back, none answered yet; the fourth refused.
    let mut out = Vec::new();
    for k in 0..8 {
        let body = if k == 5 {
            // A batch of two tablets.
            pipe::batch_body([&tablet(100, false)[..], &tablet(101, false)[..]].into_iter())
        } else {
            tablet(k, k == 3)
        };
        let kind = if k == 5 {
            pipe::TRANSFER_TABLET_BATCH
        } else {
            pipe::TRANSFER_TABLET_RAW
        };
        out.extend(request(10 + k as i32, kind, body));
    }
    s.write_all(&out).unwrap();
    for k in 0..8 {
        let frame = read_frame(&mut s);
        assert_eq!(seq_of(&frame), 10 + k, "replies in request order");
        let r: TPipeTransferResp = read_reply(&frame).unwrap();
        if k == 3 {
            assert_ne!(r.status.code, 200, "{:?}", r.status);
        } else {
            assert_eq!(r.status.code, 200, "request {k}: {:?}", r.status);
        }
    }
    // Every accepted row is there: 6 single tablets and a batch of two.
    let rows = sql(&node.addr(), "select count(s) from root.p.d").unwrap();
    assert_eq!(
        rows.rows[0].1[0].as_ref().map(|v| v.to_string()),
        Some("800".to_string())
    );
    drop(s);
    node.stop();
}
