//! The 1.0/1.1 sync tool's receiving side (issue 8, seed 000): the legacy
//! calls driven by Apache's generated Python code (`handshake` with its
//! version check, `sendFile` resumed with 1104, `sendPipeData` loading a
//! file and deleting), `ip_white_list` on both ports (127.0.0.2 as a second
//! sender address), `START` / `STOP` / `SHOW PIPESERVER` with the 328
//! refusal and the state kept across a restart, the incoming pipes in
//! `SHOW PIPES`, and `LOAD CONFIGURATION` changing the white list live.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use e2e::{
    config_file, connect_from, free_port, read_frame, run_python, sql, wait_until, NodeProc,
};
use protocol::message::{call, read_reply, Proto};
use protocol::rpc::{TSStatus, TSyncIdentityInfo};
use protocol::types::Value;

const LIMIT: Duration = Duration::from_secs(180);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sample(name: &str) -> String {
    e2e::workspace()
        .join("protocol/tests/data")
        .join(name)
        .display()
        .to_string()
}

/// A legacy handshake on `s`.
fn handshake(s: &mut TcpStream, pipe: &str, version: &str) -> TSStatus {
    let info = TSyncIdentityInfo {
        pipe_name: Some(pipe.into()),
        create_time: Some(1_650_000_000_000),
        version: Some(version.into()),
        database: Some("root.edge".into()),
    };
    s.write_all(&call(Proto::Binary, "handshake", 1, -1, &info))
        .unwrap();
    read_reply(&read_frame(s)).unwrap()
}

fn text(v: &Option<Value>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

/// SHOW PIPES as name → value maps, one per row.
fn pipes(addr: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let r = sql(addr, "show pipes").unwrap();
    r.rows
        .iter()
        .map(|(_, vals)| {
            r.columns
                .iter()
                .cloned()
                .zip(vals.iter().map(text))
                .collect()
        })
        .collect()
}

/// Runs `statement`; the error's (code, message) if it fails.
fn try_sql(addr: &str, statement: &str) -> Result<Option<node::client::Rows>, (i32, String)> {
    let mut s = node::client::Session::open(addr, "root", "root").unwrap();
    let r = s.execute(statement).map_err(|e| match e {
        node::client::ClientError::Status { code, message } => (code, message),
        other => panic!("{statement}: {other}"),
    });
    let _ = s.close();
    r
}

fn pipe_server_enabled(addr: &str) -> bool {
    let r = sql(addr, "SHOW PIPESERVER").unwrap();
    assert_eq!(r.columns, ["enable"]);
    assert_eq!(r.types, ["BOOLEAN"]);
    match &r.rows[0].1[0] {
        Some(Value::Boolean(b)) => *b,
        other => panic!("SHOW PIPESERVER gave {other:?}"),
    }
}

#[test]
fn legacy_calls_through_apaches_stubs_on_both_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cloud");
    let pipe_port = free_port();
    let line = format!("pipe_server_port={pipe_port}");
    let cfg = config_file(&data, &[&line]);
    let node = NodeProc::start(&data, &[&cfg[0], &cfg[1]]);
    sql(&node.addr(), "START PIPESERVER");
    let file = sample("v3_nonaligned_lz4.tsfile");
    for port in [node.port, pipe_port] {
        let r = run_python("receive.py", &["legacy", &port.to_string(), &file], LIMIT);
        assert_eq!(r.trim(), "ok", "port {port}");
    }
    // The legacy pipe is a receiver row of SHOW PIPES, stopped once its
    // connection closed.
    let addr = node.addr();
    assert!(wait_until(Duration::from_secs(10), || pipes(&addr)
        .iter()
        .any(|p| p["ID"] == "lp" && p["State"] == "STOP")));
    node.stop();
}

#[test]
fn white_list_on_both_ports_and_load_configuration_changes_it_live() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cloud");
    let pipe_port = free_port();
    let pipe_port_line = format!("pipe_server_port={pipe_port}");
    let cfg = config_file(&data, &["ip_white_list=127.0.0.1/32", &pipe_port_line]);
    let node = NodeProc::start(&data, &[&cfg[0], &cfg[1]]);
    let addr = node.addr();
    let port = node.port.to_string();
    // A sender at 127.0.0.2, on the client port: refused by the legacy
    // handshake and by pipeTransfer, in IoTDB 1.1's words.
    let out = run_python("receive.py", &["refused", &port, "127.0.0.2"], LIMIT);
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let want = "permission is not allowed: the sender IP <127.0.0.2>, the white list of receiver <127.0.0.1/32>";
    assert_eq!(got["handshake"], serde_json::json!([1108, want]));
    assert_eq!(got["pipeTransfer"], serde_json::json!([1108, want]));
    // On the pipe server's port it is refused when it connects: its first
    // request gets the same answer, then it is closed; a log line names it.
    sql(&addr, "START PIPESERVER");
    let pport = pipe_port.to_string();
    let out = run_python("receive.py", &["refused", &pport, "127.0.0.2"], LIMIT);
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["handshake"], serde_json::json!([1108, want]));
    assert_eq!(got["pipeTransfer"], serde_json::json!([1108, want]));
    assert!(
        node.log_text().lines().any(|l| l
            .contains("pipe server: refused a connection from outside ip_white_list")
            && l.contains("sender=127.0.0.2")),
        "{}",
        node.log_text()
    );
    let pipe_addr: SocketAddr = format!("127.0.0.1:{pipe_port}").parse().unwrap();
    let mut refused = connect_from(ip("127.0.0.2"), pipe_addr);
    assert_eq!(handshake(&mut refused, "x", "1.1").code, 1108);
    let mut rest = Vec::new();
    use std::io::Read;
    assert_eq!(
        refused.read_to_end(&mut rest).unwrap(),
        0,
        "closed after its answer"
    );

    // LOAD CONFIGURATION: the new list applies at once; a key that needs a
    // restart is named.
    let lines = [
        "ip_white_list=127.0.0.0/8",
        &pipe_port_line,
        "rpc_port=7",
        "dn_connection_timeout_ms=30000",
    ];
    std::fs::write(&cfg[1], lines.join("\n")).unwrap();
    let r = sql(&addr, "LOAD CONFIGURATION").unwrap();
    assert_eq!(r.columns, ["Key", "Value", "Effect"]);
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|(_, v)| v.iter().map(text).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["dn_connection_timeout_ms", "30000", "applied"],
            ["ip_white_list", "127.0.0.0/8", "applied"],
            ["rpc_port", "7", "needs a restart"],
        ]
    );
    for p in [&port, &pport] {
        let out = run_python("receive.py", &["refused", p, "127.0.0.2"], LIMIT);
        let got: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
        assert_eq!(got["handshake"], serde_json::json!([200, ""]), "port {p}");
        assert_eq!(got["pipeTransfer"][0], 200, "port {p}");
    }
    // Nothing changed: no rows.
    assert!(sql(&addr, "LOAD CONFIGURATION").unwrap().rows.is_empty());
    // The claimed legacy version and the pipes' retries change live too.
    let more = [
        &lines[..],
        &[
            "legacy_receiver_version=0.13",
            "max_number_of_sync_file_retry=10",
        ],
    ]
    .concat();
    std::fs::write(&cfg[1], more.join("\n")).unwrap();
    let r = sql(&addr, "load configuration").unwrap();
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|(_, v)| v.iter().map(text).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["legacy_receiver_version", "0.13", "applied"],
            ["max_number_of_sync_file_retry", "10", "applied"],
        ]
    );
    let client: SocketAddr = addr.parse().unwrap();
    let mut s = connect_from(ip("127.0.0.2"), client);
    let st = handshake(&mut s, "v", "1.1");
    assert_eq!(
        (st.code, st.message.unwrap()),
        (
            1108,
            "version mismatch: the sender <1.1>, the receiver <0.13>".into()
        )
    );
    assert_eq!(handshake(&mut s, "v", "0.13.5").code, 200);
    // A broken file changes nothing.
    std::fs::write(&cfg[1], "ip_white_list=not-an-address\n").unwrap();
    let (code, m) = try_sql(&addr, "LOAD CONFIGURATION").unwrap_err();
    assert_eq!(code, 301);
    assert!(
        m.contains("nothing was changed") && m.contains("not-an-address"),
        "{m}"
    );
    let mut s = connect_from(ip("127.0.0.2"), client);
    assert_eq!(handshake(&mut s, "v", "0.13").code, 200);
    node.stop();
}

#[test]
fn pipe_server_start_stop_show_328_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cloud");
    let pipe_port = free_port();
    let line = format!("pipe_server_port={pipe_port}");
    let cfg = config_file(&data, &[&line]);
    let node = NodeProc::start(&data, &[&cfg[0], &cfg[1]]);
    let addr = node.addr();
    let pipe_addr: SocketAddr = format!("127.0.0.1:{pipe_port}").parse().unwrap();
    assert!(!pipe_server_enabled(&addr));
    assert!(
        TcpStream::connect(pipe_addr).is_err(),
        "nothing listens before START"
    );
    sql(&addr, "START PIPESERVER");
    sql(&addr, "start pipeserver"); // again: no error, as IoTDB
    assert!(pipe_server_enabled(&addr));
    // A legacy sender runs into it: its row is RUNNING, and STOP is refused
    // with the seed's message.
    let mut s = connect_from(ip("127.0.0.1"), pipe_addr);
    assert_eq!(handshake(&mut s, "edge_pipe", "1.1.0").code, 200);
    let rows = pipes(&addr);
    let row = rows
        .iter()
        .find(|p| p["ID"] == "edge_pipe")
        .expect("a receiver row");
    assert_eq!(row["State"], "RUNNING");
    assert_eq!(row["CreationTime"], "2022-04-15T05:20:00.000+00:00");
    assert!(row["PipeConnector"].contains("protocol=legacy"), "{row:?}");
    for (k, v) in [("Role", "receiver"), ("Remote", "127.0.0.1")] {
        if let Some(got) = row.get(k) {
            assert_eq!(got, v);
        }
    }
    assert_eq!(
        try_sql(&addr, "STOP PIPESERVER").unwrap_err(),
        (
            328,
            "Failed to stop pipe server because there is pipe still running.".into()
        )
    );
    // SHOW PIPE of an incoming pipe.
    let one = sql(&addr, "show pipe edge_pipe").unwrap();
    assert_eq!(one.rows.len(), 1);
    // A 1.2 sender on the client port is a row too, keyed by its address.
    let mut t = connect_from(ip("127.0.0.2"), addr.parse().unwrap());
    let body = protocol::pipe::handshake_body("ms");
    let req = protocol::rpc::TPipeTransferReq {
        version: Some(1),
        type_: Some(1),
        body: Some(body),
    };
    t.write_all(&call(Proto::Binary, "pipeTransfer", 1, -1, &req))
        .unwrap();
    let _ = read_frame(&mut t);
    assert!(pipes(&addr)
        .iter()
        .any(|p| p["ID"] == "127.0.0.2" && p["State"] == "RUNNING"));
    drop(t);
    // Once the legacy sender is gone: STOP; the port is closed.
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || pipes(&addr)
        .iter()
        .all(|p| p["State"] == "STOP")));
    sql(&addr, "STOP PIPESERVER");
    assert!(!pipe_server_enabled(&addr));
    assert!(TcpStream::connect(pipe_addr).is_err(), "closed by STOP");
    // Started again, it runs again after a restart (as 0.14's did).
    sql(&addr, "START PIPESERVER");
    node.stop();
    let node = NodeProc::start(&data, &[&cfg[0], &cfg[1]]);
    assert!(pipe_server_enabled(&node.addr()));
    let mut s = connect_from(ip("127.0.0.1"), pipe_addr);
    assert_eq!(handshake(&mut s, "p2", "0.13").code, 1108);
    drop(s);
    sql(&node.addr(), "STOP PIPESERVER");
    node.stop();
    let node = NodeProc::start(&data, &[&cfg[0], &cfg[1]]);
    assert!(!pipe_server_enabled(&node.addr()));
    node.stop();
}
