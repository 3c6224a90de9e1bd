//! Bad input on the client port: garbage, a 2 GiB frame length, a
//! truncated frame, a wrong protocol byte, an unknown method, a hostile
//! length inside a frame. Each gets the right reaction, and the node keeps
//! serving the next client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use e2e::{config_file, NodeProc};
use node::client::Session;
use protocol::message::{call, read_reply, Proto};
use protocol::rpc::{
    TSCloseSessionReq, TSExecuteStatementReq, TSExecuteStatementResp, TSFetchResultsReq,
    TSFetchResultsResp, TSInsertRecordReq, TSOpenSessionReq, TSOpenSessionResp, TSStatus,
};
use thrift::ApplicationErrorKind;

fn connect(node: &NodeProc) -> TcpStream {
    let s = TcpStream::connect(node.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until EOF (the server closed) and returns what came.
fn read_to_close(mut s: TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => buf,
        // Closing with unread bytes in the socket resets it: closed too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => buf,
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a reply");
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn still_serves(node: &NodeProc) {
    let mut s = Session::open(&node.addr(), "root", "root").expect("the next client is served");
    let rows = s.execute("show databases").unwrap().unwrap();
    assert!(rows.columns == ["Database"]);
    s.close().unwrap();
}

#[test]
fn bad_frames_close_only_their_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    // A short connection timeout, so the stalled frame below is cut soon.
    let cfg = config_file(&dir, &["dn_connection_timeout_ms=2000"]);
    let node = NodeProc::start(&dir, &[&cfg[0], &cfg[1]]);
    // A healthy connection open through all of it.
    let mut healthy = Session::open(&node.addr(), "root", "root").unwrap();

    // Garbage: an HTTP request is a frame length of 0x47455420 (1.2 GB).
    let mut s = connect(&node);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_to_close(s).is_empty());
    still_serves(&node);

    // A 2 GiB frame length.
    let mut s = connect(&node);
    s.write_all(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    s.write_all(&[0x80, 1, 0, 1]).unwrap();
    assert!(read_to_close(s).is_empty());
    still_serves(&node);

    // A negative frame length.
    let mut s = connect(&node);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(read_to_close(s).is_empty());
    still_serves(&node);

    // A length just under the frame cap (512 MiB) whose bytes never come:
    // nothing is allocated for it (the server's resident memory does not
    // move), other clients are served meanwhile, and the connection is
    // closed once the connection timeout (2 s here) has passed.
    let rss_before = node.status_kib("VmRSS");
    let mut stalled = connect(&node);
    stalled
        .write_all(&((512u32 << 20) - 1).to_be_bytes())
        .unwrap();
    stalled.write_all(&[0x80, 1, 0, 1]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    still_serves(&node);
    let rss_during = node.status_kib("VmRSS");
    assert!(
        rss_during < rss_before + 32 * 1024,
        "a 512 MiB claim with 4 bytes sent grew the server from {rss_before} KiB to {rss_during} KiB"
    );
    let t = std::time::Instant::now();
    assert!(read_to_close(stalled).is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "the stalled frame was not cut: {:?}",
        t.elapsed()
    );
    still_serves(&node);

    // A truncated frame: 100 bytes announced, 10 sent, then EOF.
    let mut s = connect(&node);
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(&[0x80; 10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_close(s).is_empty());
    still_serves(&node);

    // A wrong protocol byte in a well-framed message.
    let mut s = connect(&node);
    s.write_all(&8u32.to_be_bytes()).unwrap();
    s.write_all(&[0x12, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert!(read_to_close(s).is_empty());
    still_serves(&node);

    let log = node.log_text();
    assert!(log.contains("frame length out of range"), "logged: {log}");
    assert!(
        log.contains("neither binary (0x80) nor compact (0x82)"),
        "logged: {log}"
    );
    assert!(log.contains("frame cut short"), "logged: {log}");
    assert!(
        log.contains("frame arriving too slowly: 4 of 536870911 bytes"),
        "logged: {log}"
    );

    // An unknown method: an application exception, and the connection stays.
    for proto in [Proto::Binary, Proto::Compact] {
        let mut s = connect(&node);
        s.write_all(&call(
            proto,
            "dropEverything",
            7,
            1,
            &TSCloseSessionReq {
                session_id: Some(1),
            },
        ))
        .unwrap();
        match read_reply::<TSStatus>(&read_frame(&mut s)) {
            Err(thrift::Error::Application(e)) => {
                assert_eq!(e.kind, ApplicationErrorKind::UnknownMethod);
                assert!(e.message.contains("dropEverything"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        s.write_all(&call(
            proto,
            "closeSession",
            8,
            1,
            &TSCloseSessionReq {
                session_id: Some(1),
            },
        ))
        .unwrap();
        let st: TSStatus = read_reply(&read_frame(&mut s)).unwrap();
        assert_eq!(st.code, 200);
    }

    // A well-framed call whose argument claims a 2 GiB string: refused as a
    // protocol error, nothing allocated, the connection stays.
    let mut s = connect(&node);
    let mut payload = vec![0x80, 1, 0, 1, 0, 0, 0, 18];
    payload.extend_from_slice(b"executeStatementV2");
    payload.extend_from_slice(&[0, 0, 0, 0]); // seq
    payload.extend_from_slice(&[12, 0, 1]); // field 1: struct
    payload.extend_from_slice(&[11, 0, 2, 0x7f, 0xff, 0xff, 0xff, b'x']); // statement: 2 GiB string
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    s.write_all(&frame).unwrap();
    match read_reply::<TSStatus>(&read_frame(&mut s)) {
        Err(thrift::Error::Application(e)) => {
            assert_eq!(e.kind, ApplicationErrorKind::ProtocolError);
            assert!(e.message.contains("do not decode"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    s.write_all(&call(
        Proto::Binary,
        "closeSession",
        9,
        1,
        &TSCloseSessionReq {
            session_id: Some(1),
        },
    ))
    .unwrap();
    assert_eq!(
        read_reply::<TSStatus>(&read_frame(&mut s)).unwrap().code,
        200
    );

    // The healthy connection was never disturbed.
    healthy.execute("create database root.still").unwrap();
    healthy.close().unwrap();
    node.stop();
}

fn rpc<T: thrift::protocol::TSerializable, R: thrift::protocol::TSerializable>(
    s: &mut TcpStream,
    name: &str,
    arg: &T,
) -> R {
    s.write_all(&call(Proto::Binary, name, 1, 1, arg)).unwrap();
    read_reply(&read_frame(s)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn statements_before_login_and_wrong_passwords_get_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n"), &[]);
    let e = Session::open(&node.addr(), "root", "nope").unwrap_err();
    assert!(e.to_string().starts_with("801:"), "{e}");
    let e = Session::open(&node.addr(), "admin", "root").unwrap_err();
    assert!(e.to_string().starts_with("801:"), "{e}");

    // Statements, inserts and fetches on a connection that never logged
    // in (a made-up session id): 802 NOT_LOGIN each, nothing written, and
    // the connection stays usable.
    let mut s = connect(&node);
    let exec = |sql: &str| TSExecuteStatementReq {
        session_id: Some(1),
        statement: Some(sql.into()),
        statement_id: Some(1),
        fetch_size: None,
        timeout: None,
        enable_redirect_query: None,
        jdbc_query: None,
    };
    for sql in [
        "create database root.sneak",
        "insert into root.sneak.d(time, a) values (1, 1)",
        "select ** from root",
    ] {
        for method in ["executeStatementV2", "executeUpdateStatementV2"] {
            let r: TSExecuteStatementResp = rpc(&mut s, method, &exec(sql));
            assert_eq!(r.status.code, 802, "{method} {sql}: {:?}", r.status);
            assert!(
                r.status
                    .message
                    .as_deref()
                    .unwrap_or("")
                    .contains("not logged in"),
                "{:?}",
                r.status
            );
        }
    }
    let st: TSStatus = rpc(
        &mut s,
        "insertRecord",
        &TSInsertRecordReq {
            session_id: Some(1),
            prefix_path: Some("root.sneak.d".into()),
            measurements: Some(vec!["a".into()]),
            values: Some(vec![1, 0, 0, 0, 7]),
            timestamp: Some(1),
            is_aligned: None,
            is_write_to_table: None,
        },
    );
    assert_eq!(st.code, 802, "{st:?}");
    let r: TSFetchResultsResp = rpc(
        &mut s,
        "fetchResultsV2",
        &TSFetchResultsReq {
            session_id: Some(1),
            statement: Some("select ** from root".into()),
            fetch_size: Some(10),
            query_id: Some(1),
            is_align: Some(true),
            timeout: None,
            statement_id: Some(1),
        },
    );
    assert_eq!(r.status.code, 802, "{:?}", r.status);
    // The same connection logs in and is served.
    let r: TSOpenSessionResp = rpc(
        &mut s,
        "openSession",
        &TSOpenSessionReq {
            client_protocol: Some(2),
            zone_id: Some("+00:00".into()),
            username: Some("root".into()),
            password: Some("root".into()),
            configuration: None,
        },
    );
    assert_eq!(r.status.code, 200, "{:?}", r.status);
    let r: TSExecuteStatementResp = rpc(&mut s, "executeStatementV2", &exec("show databases"));
    assert_eq!(r.status.code, 200, "{:?}", r.status);
    // Nothing the statements before login asked for happened.
    let mut admin = Session::open(&node.addr(), "root", "root").unwrap();
    for q in ["show databases", "select ** from root"] {
        let rows = admin
            .execute(q)
            .unwrap()
            .map(|r| r.rows)
            .unwrap_or_default();
        assert!(rows.is_empty(), "{q}: {rows:?}");
    }
    admin.execute("create database root.sneak").unwrap();
    admin.close().unwrap();
    still_serves(&node);
    node.stop();
}
