//! The legacy connector's wire (issue 8), checked with Apache's generated
//! Python code: `tests/python/legacy_peer.py` serves `handshake`,
//! `openSession`, `insertTablet(s)` and `sendPipeData` with the official
//! package's `IClientRPCService.Processor` and reports what it decoded.
//!
//! - Everything an `iotdb-legacy-pipe-connector` pipe sends decodes there:
//!   the handshake (field id -1) with the pipe's name, creation time, the
//!   version string and the real database, the login, the rows (aligned
//!   flag included, nulls as bitmaps) and the deletions as legacy
//!   DeletionPipeData, in the order they were written.
//! - Deleted points never travel; a deletion the receiver answers 1108 is
//!   skipped and said in the pipe's message.
//! - The version string is the one the user gives: a receiver comparing
//!   major.minor refuses "0.13"; the pipe stops with the receiver's words.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use e2e::{config_file, python, sql, wait_timeout, wait_until, workspace, NodeProc};
use serde_json::Value;

/// The Python peer, its port, and its stdout.
struct Peer {
    child: Child,
    port: u16,
    out: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    fn start(version: &str, until: &str, refuse: Option<&str>) -> Peer {
        let mut cmd = Command::new(python());
        cmd.arg(workspace().join("tests/python/legacy_peer.py"))
            .args([version, until]);
        if let Some(r) = refuse {
            cmd.arg(r);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start legacy_peer.py");
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = out
            .next()
            .expect("the peer's port")
            .expect("read")
            .trim()
            .parse()
            .expect("a port");
        Peer { child, port, out }
    }

    /// Waits for the peer's summary: every call it served, in order.
    fn calls(mut self) -> Vec<Value> {
        let status = wait_timeout(&mut self.child, Duration::from_secs(90)).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("the Python peer did not finish in 90 s")
        });
        let summary = self.out.next().expect("summary").expect("read");
        assert!(
            status.success(),
            "the peer did not see what it waited for: {summary}"
        );
        serde_json::from_str(&summary).expect("JSON summary")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn show_pipe(addr: &str, id: &str) -> Vec<String> {
    let r = sql(addr, &format!("show pipe {id}")).expect("rows");
    r.rows[0]
        .1
        .iter()
        .map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default())
        .collect()
}

fn fast_retries(dir: &std::path::Path, retries: u32) -> [String; 2] {
    config_file(
        dir,
        &[
            &format!("max_number_of_sync_file_retry={retries}"),
            "pipe_connector_retry_interval_ms=50",
        ],
    )
}

#[test]
fn legacy_connector_frames_decode_with_apache_generated_code() {
    let peer = Peer::start("1.1", "sendPipeData=2", Some("root.sg2.**"));
    let tmp = tempfile::tempdir().unwrap();
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    for s in [
        "create database root.sg1",
        "create database root.sg2",
        "insert into root.sg1.d1(time, a, b) values (1, 1, 'x')",
        "insert into root.sg1.d1(time, a, b) values (2, 2, 'y')",
        "insert into root.sg1.al(time, x, y) aligned values (3, 3.5, true)",
        "insert into root.sg2.d(time, s) values (4, 4)",
        "delete from root.sg1.d1.a where time = 2",
        "delete database root.sg2",
    ] {
        sql(&e, s);
    }
    let port = peer.port;
    let before = now_ms();
    sql(&e, &format!("create pipe p WITH CONNECTOR ('connector'='iotdb-legacy-pipe-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{port}')"));
    let after = now_ms();
    let row = show_pipe(&e, "p");
    assert_eq!(row[9], "sender");
    assert_eq!(row[10], format!("127.0.0.1:{port}"));
    sql(&e, "start pipe p");
    let calls = peer.calls();
    let names: Vec<&str> = calls.iter().map(|c| c["call"].as_str().unwrap()).collect();

    // Connect: handshake (database ""), then the login, as SessionPool.
    assert_eq!(names[..2], ["handshake", "openSession"], "{calls:#?}");
    let hs = &calls[0];
    assert_eq!(hs["pipeName"], "p");
    assert_eq!(hs["version"], "1.1", "the default connector.version");
    assert_eq!(hs["database"], "");
    assert_eq!(hs["accepted"], true);
    let created = hs["createTime"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&created),
        "createTime {created} is the pipe's creation time, within [{before}, {after}]"
    );
    assert_eq!(calls[1]["username"], "root");
    assert_eq!(calls[1]["password"], "root");
    // Before the rows of a database, a handshake naming it (not "root").
    let dbs: Vec<&str> = calls
        .iter()
        .filter(|c| c["call"] == "handshake")
        .map(|c| c["database"].as_str().unwrap())
        .collect();
    assert_eq!(dbs, ["", "root.sg1"], "{calls:#?}");

    // The rows, in order, as Apache's code decoded them. The point deleted
    // before the pipe read it (d1.a at 2) and the deleted database are
    // gone; the rest is there.
    let mut tablets = Vec::new();
    for c in &calls {
        match c["call"].as_str().unwrap() {
            "insertTablet" => tablets.push(c.clone()),
            "insertTablets" => tablets.extend(c["tablets"].as_array().unwrap().iter().cloned()),
            _ => {}
        }
    }
    let rows: Vec<(String, bool, Vec<i64>, Value)> = tablets
        .iter()
        .map(|t| {
            (
                t["device"].as_str().unwrap().to_string(),
                t["aligned"].as_bool().unwrap(),
                t["times"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect(),
                t["columns"].clone(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, &rows[0].2[..]),
        ("root.sg1.d1", false, &[1][..])
    );
    // Integer literals become DOUBLE series, as in IoTDB.
    assert_eq!(rows[0].3["a"]["type"], "DOUBLE");
    assert_eq!(rows[0].3["a"]["values"][0].as_f64(), Some(1.0));
    assert_eq!(rows[0].3["b"]["values"][0], "x");
    assert_eq!(
        (rows[1].0.as_str(), &rows[1].2[..]),
        ("root.sg1.d1", &[2][..])
    );
    assert!(
        rows[1].3.get("a").is_none(),
        "the deleted point travelled: {:?}",
        rows[1].3
    );
    assert_eq!(rows[1].3["b"]["values"][0], "y");
    assert_eq!(
        (rows[2].0.as_str(), rows[2].1, &rows[2].2[..]),
        ("root.sg1.al", true, &[3][..])
    );
    assert_eq!(rows[2].3["x"]["values"][0], 3.5);
    assert_eq!(rows[2].3["y"]["values"][0], true);

    // The deletions, after the rows, as legacy DeletionPipeData.
    let dels: Vec<&Value> = calls
        .iter()
        .filter(|c| c["call"] == "sendPipeData")
        .collect();
    assert_eq!(dels[0]["type"], "DELETION");
    assert_eq!(dels[0]["serial"], -1);
    assert_eq!(dels[0]["pattern"], "root.sg1.d1.a");
    assert_eq!(dels[0]["database"], "root.sg1");
    assert_eq!(
        (dels[0]["start"].as_i64(), dels[0]["end"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(dels[1]["pattern"], "root.sg2.**");
    assert_eq!(dels[1]["database"], "root.sg2");
    assert_eq!(
        (dels[1]["start"].as_i64(), dels[1]["end"].as_i64()),
        (Some(i64::MIN), Some(i64::MAX))
    );
    let last_row = names
        .iter()
        .rposition(|n| n.starts_with("insertTablet"))
        .unwrap();
    let first_del = names.iter().position(|n| *n == "sendPipeData").unwrap();
    assert!(last_row < first_del, "rows before the deletions: {names:?}");

    // The peer answered the delete database 1108: skipped, said in the
    // pipe's ExceptionMessage (a 1.2 pipe's: no sync-tool WARN prefix),
    // and the pipe runs on.
    let mut row = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            row = show_pipe(&e, "p");
            row[6].contains("skipped")
        }),
        "no message for the skipped deletion: {row:?}"
    );
    assert!(!row[6].starts_with("WARN:"), "{row:?}");
    assert!(
        row[6].contains("root.sg2.**") && row[6].contains("skipped"),
        "{row:?}"
    );
    assert!(row[6].contains("1108"), "{row:?}");
    assert_eq!(row[2], "RUNNING");
    edge.stop();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn the_version_string_is_the_users_and_a_mismatch_stops_the_pipe() {
    // A receiver claiming 1.1 (major.minor checked as a 1.1 receiver does).
    let peer = Peer::start("1.1.2", "handshake=3", None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("edge");
    let cfg = fast_retries(&dir, 2);
    let edge = NodeProc::start(&dir, &[&cfg[0], &cfg[1]]);
    let e = edge.addr();
    sql(&e, "insert into root.v.d(time, s) values (1, 1)");
    let port = peer.port;
    sql(&e, &format!("create pipe old WITH CONNECTOR ('connector'='iotdb-legacy-pipe-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{port}', 'connector.version'='0.13')"));
    sql(&e, "start pipe old");
    let calls = peer.calls();
    for c in &calls {
        assert_eq!(
            c["call"], "handshake",
            "nothing but refused handshakes: {calls:#?}"
        );
        assert_eq!(c["version"], "0.13");
        assert_eq!(c["accepted"], false);
    }
    // Retries run out: STOPPED, with the receiver's words.
    let mut row = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            row = show_pipe(&e, "old");
            row[2] == "STOPPED"
        }),
        "{row:?}"
    );
    assert!(
        row[6].contains("version mismatch: the sender <0.13>, the receiver <1.1.2>")
            && row[6].contains("max_number_of_sync_file_retry = 2"),
        "{row:?}"
    );
    // The same receiver admits the version it claims.
    let peer = Peer::start("1.1.2", "insertTablet=1", None);
    let port = peer.port;
    sql(&e, &format!("create pipe new WITH CONNECTOR ('connector'='iotdb-legacy-pipe-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{port}', 'connector.version'='1.1')"));
    sql(&e, "start pipe new");
    let calls = peer.calls();
    assert_eq!(calls[0]["call"], "handshake");
    assert_eq!(calls[0]["version"], "1.1");
    assert_eq!(calls[0]["accepted"], true);
    assert!(calls
        .iter()
        .any(|c| c["call"] == "insertTablet" && c["device"] == "root.v.d"));
    edge.stop();
}
