//! `ip_white_list` on the receiving path (issue 7 finding 7): senders are
//! admitted by the socket's peer address, IPv4 and IPv6, from distinct
//! loopback addresses (all of 127.0.0.0/8 routes to the loopback
//! interface; the client binds its address before connecting). Also
//! `pipeTransfer`'s argument only at field id -1 (finding 12), and an
//! invalid list stopping the start.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use e2e::{config_file, connect_from, edgepipe_bin, read_frame, sql, wait_until, NodeProc};
use protocol::message::{call, read_reply, Proto};
use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp};
use protocol::tablet::{Column, Tablet};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn transfer(
    s: &mut TcpStream,
    field_id: i16,
    kind: i16,
    body: Vec<u8>,
) -> thrift::Result<TPipeTransferResp> {
    let req = TPipeTransferReq {
        version: Some(pipe::VERSION),
        type_: Some(kind),
        body: Some(body),
    };
    s.write_all(&call(Proto::Binary, "pipeTransfer", 1, field_id, &req))
        .unwrap();
    read_reply(&read_frame(s))
}

fn tablet(device: &str, v: i64) -> Vec<u8> {
    Tablet {
        device: device.into(),
        measurements: vec!["s".into()],
        columns: vec![Column::Int64(vec![v])],
        nulls: vec![None],
        times: vec![1],
        aligned: false,
    }
    .serialize_v12()
}

/// Sends a handshake and a tablet from `from`; returns both status codes
/// and the tablet's message.
fn send(node: &NodeProc, from: &str, device: &str) -> (i32, i32, String) {
    let to = if ip(from).is_ipv4() {
        SocketAddr::new(ip("127.0.0.1"), node.port)
    } else {
        SocketAddr::new(ip("::1"), node.port)
    };
    let mut s = connect_from(ip(from), to);
    let h = transfer(&mut s, -1, pipe::HANDSHAKE, pipe::handshake_body("ms")).unwrap();
    let t = transfer(&mut s, -1, pipe::TRANSFER_TABLET_RAW, tablet(device, 7)).unwrap();
    (
        h.status.code,
        t.status.code,
        t.status.message.unwrap_or_default(),
    )
}

fn devices(node: &NodeProc) -> Vec<String> {
    sql(&node.addr(), "show devices")
        .map(|r| {
            r.rows
                .iter()
                .map(|x| x.1[0].as_ref().map(|v| v.to_string()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn senders_are_admitted_by_their_peer_address_v4_and_v6() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cloud");
    let cfg = config_file(&dir, &["ip_white_list=127.0.0.2/32, ::1/128"]);
    // Listening on :: takes IPv6 and (as IPv4-mapped addresses) IPv4.
    let node = NodeProc::start_on(&dir, "::", &[&cfg[0], &cfg[1]]);

    assert_eq!(send(&node, "127.0.0.2", "root.wl.v4").0, 200);
    assert_eq!(send(&node, "::1", "root.wl.v6").0, 200);
    let (h, t, msg) = send(&node, "127.0.0.1", "root.wl.refused");
    assert_eq!((h, t), (1108, 1108), "{msg}");
    assert_eq!(
        msg,
        "permission is not allowed: the sender IP <127.0.0.1>, the white list of receiver <127.0.0.2/32, ::1/128>"
    );
    let (h, _, _) = send(&node, "127.0.0.3", "root.wl.refused");
    assert_eq!(h, 1108);
    assert_eq!(devices(&node), ["root.wl.v4", "root.wl.v6"]);
    let log = node.log_text();
    for refused in ["sender=127.0.0.1", "sender=127.0.0.3"] {
        assert!(
            log.lines().any(
                |l| l.contains("refused a sender outside ip_white_list") && l.contains(refused)
            ),
            "no log line names {refused}: {log}"
        );
    }
    assert!(!log.contains("sender=127.0.0.2"), "{log}");
    // The list governs pipe writes only: sessions log in from anywhere.
    let s = node::client::Session::open(&node.addr(), "root", "root").unwrap();
    s.close().unwrap();

    // The argument at field id 1 (not IoTDB's wire) is refused by name.
    let mut s = connect_from(ip("127.0.0.2"), SocketAddr::new(ip("127.0.0.1"), node.port));
    match transfer(&mut s, 1, pipe::HANDSHAKE, pipe::handshake_body("ms")) {
        Err(thrift::Error::Application(e)) => {
            assert_eq!(e.kind, thrift::ApplicationErrorKind::ProtocolError);
            assert!(
                e.message.contains("field id 1; it must be field id -1"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    // The connection stays usable.
    let h = transfer(&mut s, -1, pipe::HANDSHAKE, pipe::handshake_body("ms")).unwrap();
    assert_eq!(h.status.code, 200);
    node.stop();
}

#[test]
fn an_empty_list_admits_nobody_and_a_refused_pipe_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cloud");
    let cfg = config_file(&dir, &["ip_white_list="]);
    let cloud = NodeProc::start_on(&dir, "::", &[&cfg[0], &cfg[1]]);
    assert_eq!(send(&cloud, "127.0.0.1", "root.no.a").0, 1108);
    assert_eq!(send(&cloud, "::1", "root.no.b").0, 1108);

    // A real pipe into it: refused with the receiver's words in SHOW PIPES.
    let edir = tmp.path().join("edge");
    let ecfg = config_file(
        &edir,
        &[
            "pipe_connector_retry_interval_ms=50",
            "max_number_of_sync_file_retry=1",
        ],
    );
    let edge = NodeProc::start(&edir, &[&ecfg[0], &ecfg[1]]);
    sql(&edge.addr(), "insert into root.no.d(time, a) values (1, 1)");
    sql(
        &edge.addr(),
        &format!(
            "create pipe p WITH CONNECTOR ('connector'='iotdb-thrift-sync-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{}')",
            cloud.port
        ),
    );
    sql(&edge.addr(), "start pipe p");
    let shown = || {
        sql(&edge.addr(), "show pipes")
            .map(|r| {
                r.rows
                    .iter()
                    .flat_map(|x| x.1.iter().flatten().map(|v| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(30), || shown()
            .contains("permission is not allowed")),
        "SHOW PIPES: {}",
        shown()
    );
    assert!(devices(&cloud).is_empty());
    edge.stop();
    cloud.stop();
}

#[test]
fn an_invalid_list_stops_the_start_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let cfg = config_file(&dir, &["rpc_port=0", "ip_white_list=127.0.0.1/32,notanip"]);
    let out = Command::new(edgepipe_bin())
        .args(["server", &cfg[0], &cfg[1], "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".properties:2: ip_white_list=127.0.0.1/32,notanip: \"notanip\" is not an IPv4 or IPv6 CIDR block"),
        "{err}"
    );
}
