//! The 1.0/1.1 sync tool (seed 000, issue 8) between two real nodes on
//! loopback, driven through the official Python client on both sides:
//!
//! - the document's section 7 example end to end (whitelist on the
//!   receiver set to the sender's address only, retry count 10, `FROM
//!   (select ** from root where time>=…)`, `SyncDelOp=false` keeping
//!   deletions at the edge, then `SyncDelOp=true` shipping them);
//! - each FAQ situation reproducing its message;
//! - kill -9 of either side and connection cuts on a PIPESINK pipe.

use std::time::Duration;

use e2e::{config_file, free_port, run_python, sql, wait_until, NodeProc, Proxy};
use node::client::Session;
use protocol::tablet::{Column, Tablet};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// Runs statements through the official Python client
/// (`tests/python/sync_tool.py`); one JSON result per statement.
fn py(node: &NodeProc, statements: &[&str]) -> Vec<Value> {
    let port = node.port.to_string();
    let mut args = vec![port.as_str()];
    args.extend_from_slice(statements);
    run_python("sync_tool.py", &args, WAIT)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// One statement that must succeed; its rows if it is a query.
fn ok(node: &NodeProc, statement: &str) -> Vec<Vec<Value>> {
    let r = py(node, &[statement]).remove(0);
    assert!(r.get("error").is_none(), "{statement}: {r}");
    r.get("rows")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| row.as_array().unwrap().clone())
                .collect()
        })
        .unwrap_or_default()
}

/// One statement that must be refused; the client's message.
fn refused(node: &NodeProc, statement: &str) -> String {
    let r = py(node, &[statement]).remove(0);
    r.get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{statement} was not refused: {r}"))
        .to_string()
}

/// A query's columns and rows through the official client.
fn query(node: &NodeProc, q: &str) -> (Vec<Value>, Vec<Value>) {
    let r = py(node, &[q]).remove(0);
    assert!(r.get("error").is_none(), "{q}: {r}");
    (
        r["columns"].as_array().unwrap().clone(),
        r["rows"].as_array().unwrap().clone(),
    )
}

/// SHOW PIPE `id` on the sender (through the Rust client, cheaply
/// polled): the cells as text.
fn pipe_row(node: &NodeProc, id: &str) -> Vec<String> {
    let r = sql(&node.addr(), &format!("show pipe {id}")).expect("rows");
    let row = r
        .rows
        .iter()
        .find(|(_, v)| v[0].as_ref().is_some_and(|x| x.to_string() == id))
        .unwrap_or_else(|| panic!("no pipe {id}"));
    row.1
        .iter()
        .map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default())
        .collect()
}

/// Waits until `q` gives the same result on both nodes and the sender's
/// pipe `id` has nothing left to send (polled through the Rust client),
/// then compares once more through the official Python client; returns
/// its rows.
fn assert_same(edge: &NodeProc, cloud: &NodeProc, id: &str, q: &str) -> Vec<Value> {
    let rust = |n: &NodeProc| {
        let mut s = Session::open(&n.addr(), "root", "root").ok()?;
        let r = s.execute(q).ok()?;
        let _ = s.close();
        r
    };
    let mut last = None;
    let same = wait_until(WAIT, || {
        let done = pipe_row(edge, id)[7] == "0";
        let (e, c) = (rust(edge), rust(cloud));
        let ok = done && e.is_some() && e == c;
        last = Some((e, c));
        ok
    });
    let (e, c) = last.expect("polled");
    assert!(same, "{q} differs:\nedge:  {e:?}\ncloud: {c:?}");
    let e = py(edge, &[q]).remove(0);
    let c = py(cloud, &[q]).remove(0);
    assert!(
        e.get("error").is_none() && e == c,
        "{q} differs:\nedge:  {e}\ncloud: {c}"
    );
    e["rows"].as_array().unwrap().clone()
}

/// A cloud node with its pipe server on a free port, started through the
/// official client (`START PIPESERVER`), admitting `white_list`.
fn cloud_node(dir: &std::path::Path, white_list: &str) -> (NodeProc, u16) {
    let pipe_port = free_port();
    let cfg = config_file(
        dir,
        &[
            &format!("ip_white_list={white_list}"),
            &format!("pipe_server_port={pipe_port}"),
        ],
    );
    let cloud = NodeProc::start(dir, &[&cfg[0], &cfg[1]]);
    (cloud, pipe_port)
}

fn start_pipe_server(cloud: &NodeProc) {
    ok(cloud, "START PIPESERVER");
    assert_eq!(
        ok(cloud, "SHOW PIPESERVER"),
        [[Value::from(0), Value::from(true)]],
        "SHOW PIPESERVER says true once started"
    );
}

fn edge_node(dir: &std::path::Path, lines: &[&str]) -> NodeProc {
    let cfg = config_file(dir, lines);
    NodeProc::start(dir, &[&cfg[0], &cfg[1]])
}

/// The document's section 7 statements (the sender's writes).
const SEED: [&str; 12] = [
    "SET STORAGE GROUP TO root.vehicle",
    "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN",
    "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN",
    "insert into root.vehicle.d0(timestamp,s0) values(now(),10)",
    "insert into root.vehicle.d0(timestamp,s0,s1) values(now(),12,'12')",
    "insert into root.vehicle.d0(timestamp,s1) values(now(),'14')",
    "insert into root.vehicle.d1(timestamp,s2) values(now(),16.0)",
    "insert into root.vehicle.d1(timestamp,s2,s3) values(now(),18.0,true)",
    "insert into root.vehicle.d1(timestamp,s3) values(now(),false)",
    "flush",
];

#[test]
fn the_documents_example_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    // Receiver: the whitelist admits the sender's address only (on
    // loopback, 127.0.0.1), then START PIPESERVER.
    let (cloud, pipe_port) = cloud_node(&tmp.path().join("cloud"), "127.0.0.1/32");
    start_pipe_server(&cloud);
    // Sender: 10 retries for a weak network.
    let edge = edge_node(
        &tmp.path().join("edge"),
        &["max_number_of_sync_file_retry=10"],
    );
    // Before the pipe: one point before the FROM time, one after.
    ok(
        &edge,
        "insert into root.early.d(time, s) values (2022-03-29T23:59:59, 1), (2022-03-30T00:00:00, 2)",
    );
    let r = py(
        &edge,
        &[
            &format!("CREATE PIPESINK my_iotdb AS IoTDB (ip='127.0.0.1',port={pipe_port})"),
            "CREATE PIPE p TO my_iotdb FROM (select ** from root where time>=2022-03-30 00:00:00) WITH SyncDelOp=false",
            "START PIPE p",
            "SHOW PIPE p",
        ],
    );
    for x in &r[..3] {
        assert!(x.get("error").is_none(), "{x}");
    }
    let cols: Vec<&str> = r[3]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cols, node::exec::PIPE_COLUMNS);
    let row = r[3]["rows"][0].as_array().unwrap();
    assert_eq!(row[1], "p");
    assert_eq!(row[3], "RUNNING");
    assert_eq!(row[10], "sender");
    assert_eq!(row[11], "my_iotdb", "remote is the PipeSink's name");

    for s in SEED {
        ok(&edge, s);
    }
    // The same `select ** from root.vehicle` on both ends.
    let rows = assert_same(&edge, &cloud, "p", "select ** from root.vehicle");
    assert_eq!(rows.len(), 6, "{rows:?}");
    // History before the FROM time stayed at the edge.
    let (_, early) = query(&cloud, "select ** from root.early");
    assert_eq!(early.len(), 1, "{early:?}");
    assert_eq!(early[0][1], 2.0);

    // SyncDelOp=false: a deletion at the edge stays there.
    ok(&edge, "delete from root.vehicle.d0.s0 where time <= now()");
    assert!(
        wait_until(WAIT, || pipe_row(&edge, "p")[7] == "0"),
        "the pipe did not read the deletion"
    );
    let (_, e) = query(&edge, "select s0 from root.vehicle.d0");
    let (_, c) = query(&cloud, "select s0 from root.vehicle.d0");
    assert!(e.iter().all(|r| r[1].is_null()), "{e:?}");
    assert_eq!(
        c.iter().filter(|r| !r[1].is_null()).count(),
        2,
        "the deletion reached the cloud: {c:?}"
    );
    // The receiver lists the incoming pipe.
    let (cols, rows) = query(&cloud, "SHOW PIPES");
    let role = cols.iter().position(|c| c == "Role").unwrap();
    let remote = cols.iter().position(|c| c == "Remote").unwrap();
    assert!(
        rows.iter()
            .any(|r| r[role + 1] == "receiver" && r[remote + 1] == "127.0.0.1"),
        "{rows:?}"
    );

    // SyncDelOp=true: deletions arrive (the earlier one too: the new pipe
    // sends the history again, deletions included).
    let r = py(
        &edge,
        &[
            "DROP PIPE p",
            "CREATE PIPE p2 TO my_iotdb WITH SyncDelOp=true",
            "START PIPE p2",
            "delete from root.vehicle.d1.s2 where time <= now()",
            "delete storage group root.early",
        ],
    );
    for x in &r {
        assert!(x.get("error").is_none(), "{x}");
    }
    assert_same(&edge, &cloud, "p2", "select ** from root.vehicle");
    let (_, c) = query(&cloud, "select s2 from root.vehicle.d1");
    assert!(c.iter().all(|r| r[1].is_null()), "{c:?}");
    assert!(
        wait_until(WAIT, || query(&cloud, "select ** from root.early")
            .1
            .is_empty()),
        "the deleted database is still on the cloud"
    );
    // The dropped pipe stays listed as DROP beside the new one.
    let (_, rows) = query(&edge, "SHOW PIPES");
    let states: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[1].as_str().unwrap().into(), r[3].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        states,
        [
            ("p".to_string(), "DROP".to_string()),
            ("p2".into(), "RUNNING".into())
        ]
    );
    edge.stop();
    cloud.stop();
}

#[test]
fn each_faq_situation_gives_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (cloud, pipe_port) = cloud_node(&tmp.path().join("cloud"), "0.0.0.0/0");
    let edge = edge_node(
        &tmp.path().join("edge"),
        &["max_number_of_sync_file_retry=3"],
    );
    ok(
        &edge,
        &format!("CREATE PIPESINK demo AS IoTDB (ip='127.0.0.1', port={pipe_port})"),
    );
    // The receiver's pipe server is not started.
    let m = refused(&edge, "CREATE PIPE mypipe TO demo");
    assert!(
        m.starts_with(&format!("411: Create transport for pipe mypipe error, because CREATE request connects to receiver 127.0.0.1:{pipe_port} error.")),
        "{m}"
    );
    assert!(ok(&edge, "SHOW PIPES").is_empty(), "no pipe was created");
    start_pipe_server(&cloud);
    ok(&edge, "CREATE PIPE mypipe TO demo");
    ok(&edge, "START PIPE mypipe");
    ok(&edge, "insert into root.f.d(time, s) values (1, 1)");
    // A PipeSink in use.
    assert_eq!(
        refused(&edge, "DROP PIPESINK demo"),
        "411: Can not drop pipeSink demo, because pipe mypipe is using it."
    );
    // A second pipe.
    assert_eq!(
        refused(&edge, "CREATE PIPE p TO demo"),
        "411: Pipe mypipe is RUNNING, please retry after drop it."
    );
    // The receiver's pipe server while a pipe runs into it.
    assert!(
        wait_until(WAIT, || pipe_row(&edge, "mypipe")[7] == "0"),
        "the pipe did not deliver"
    );
    assert_eq!(
        refused(&cloud, "STOP PIPESERVER"),
        "328: Failed to stop pipe server because there is pipe still running."
    );
    // The way out, as the document says: STOP PIPE on the sender first.
    ok(&edge, "STOP PIPE mypipe");
    assert_eq!(
        refused(&edge, "CREATE PIPE p TO demo"),
        "411: Pipe mypipe is STOP, please retry after drop it."
    );
    assert!(
        wait_until(WAIT, || py(&cloud, &["STOP PIPESERVER"])[0]
            .get("error")
            .is_none()),
        "STOP PIPESERVER still refused after the sender stopped"
    );
    assert_eq!(
        ok(&cloud, "SHOW PIPESERVER"),
        [[Value::from(0), Value::from(false)]]
    );
    ok(&edge, "DROP PIPE mypipe");
    ok(&edge, "DROP PIPESINK demo");
    assert!(ok(&edge, "SHOW PIPESINKS").is_empty());

    // A whitelist that does not hold the sender: the same 411, with the
    // receiver's reason, on the pipe server port and on the client port.
    let (strict, strict_port) = cloud_node(&tmp.path().join("strict"), "127.0.0.2/32");
    start_pipe_server(&strict);
    ok(
        &edge,
        &format!("CREATE PIPESINK s AS IoTDB (ip='127.0.0.1', port={strict_port})"),
    );
    let m = refused(&edge, "CREATE PIPE q TO s");
    assert!(
        m.starts_with(&format!("411: Create transport for pipe q error, because CREATE request connects to receiver 127.0.0.1:{strict_port} error."))
            && m.contains("permission is not allowed: the sender IP <127.0.0.1>"),
        "{m}"
    );
    ok(
        &edge,
        &format!(
            "CREATE PIPESINK c AS IoTDB (ip='127.0.0.1', port={})",
            strict.port
        ),
    );
    let m = refused(&edge, "CREATE PIPE q TO c");
    assert!(
        m.starts_with(&format!("411: Create transport for pipe q error, because CREATE request connects to receiver 127.0.0.1:{} error.", strict.port))
            && m.contains("permission is not allowed: the sender IP <127.0.0.1>"),
        "{m}"
    );
    edge.stop();
    cloud.stop();
    strict.stop();
}

/// Writes `n` rows of two DOUBLE columns to `device` from time `from`, as
/// tablets of 50 rows, through the Rust client.
fn write_rows(addr: &str, device: &str, from: i64, n: i64) {
    let mut s = Session::open(addr, "root", "root").unwrap();
    for base in (from..from + n).step_by(50) {
        let end = (base + 50).min(from + n);
        let t = Tablet {
            device: device.into(),
            measurements: vec!["x".into(), "y".into()],
            columns: vec![
                Column::Double((base..end).map(|i| i as f64).collect()),
                Column::Double((base..end).map(|i| i as f64 * 2.0).collect()),
            ],
            nulls: vec![None, None],
            times: (base..end).collect(),
            aligned: false,
        };
        s.insert_tablet(&t).unwrap();
    }
    s.close().unwrap();
}

#[test]
fn a_pipesink_pipe_survives_cuts_and_kill_9_of_either_side() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud_dir = tmp.path().join("cloud");
    let (cloud, pipe_port) = cloud_node(&cloud_dir, "127.0.0.1/32");
    start_pipe_server(&cloud);
    let proxy = Proxy::start(format!("127.0.0.1:{pipe_port}"), Duration::from_millis(1));
    let edge_dir = tmp.path().join("edge");
    let edge_cfg = [
        "max_number_of_sync_file_retry=1000",
        "pipe_connector_retry_interval_ms=20",
        "pipe_connector_timeout_ms=2000",
    ];
    let edge = edge_node(&edge_dir, &edge_cfg);
    ok(
        &edge,
        &format!(
            "CREATE PIPESINK far AS IoTDB (ip='127.0.0.1', port={})",
            proxy.port
        ),
    );
    ok(&edge, "CREATE PIPE p TO far");
    ok(&edge, "START PIPE p");
    // Cuts while the pipe ships.
    for round in 0..10 {
        write_rows(&edge.addr(), "root.k.d", round * 500, 500);
        proxy.cut();
        std::thread::sleep(Duration::from_millis(30));
    }
    // kill -9 of the sender, mid-stream.
    write_rows(&edge.addr(), "root.k.d", 5000, 2000);
    edge.kill9();
    let edge = edge_node(&edge_dir, &edge_cfg);
    assert_eq!(
        pipe_row(&edge, "p")[2],
        "RUNNING",
        "resumed after the restart"
    );
    // kill -9 of the receiver; it comes back on the same pipe server port.
    write_rows(&edge.addr(), "root.k.d", 7000, 2000);
    cloud.kill9();
    write_rows(&edge.addr(), "root.k.d", 9000, 1000);
    let cloud = NodeProc::start(
        &cloud_dir,
        &[
            "--config",
            cloud_dir.with_extension("properties").to_str().unwrap(),
        ],
    );
    if ok(&cloud, "SHOW PIPESERVER") != [[Value::from(0), Value::from(true)]] {
        start_pipe_server(&cloud);
    }
    let rows = assert_same(&edge, &cloud, "p", "select ** from root.k");
    assert_eq!(rows.len(), 10_000);
    let row = pipe_row(&edge, "p");
    assert_eq!(row[2], "RUNNING");
    assert!(
        row[6].starts_with("WARN:") && row[6].contains("retry"),
        "retries show as WARN: {row:?}"
    );
    edge.stop();
    cloud.stop();
}

/// Version spoofing against a real receiver: a node claiming 1.1 (the
/// default `legacy_receiver_version`) refuses a legacy connector sending
/// "0.13", which stops after its retries with the receiver's words, and
/// admits `connector.version`='1.1'; the data then arrives.
#[test]
fn a_receiver_claiming_1_1_refuses_0_13_and_admits_a_spoofed_1_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (cloud, pipe_port) = cloud_node(&tmp.path().join("cloud"), "0.0.0.0/0");
    start_pipe_server(&cloud);
    let edge = edge_node(
        &tmp.path().join("edge"),
        &[
            "max_number_of_sync_file_retry=2",
            "pipe_connector_retry_interval_ms=20",
        ],
    );
    ok(&edge, "insert into root.v.d(time, s) values (1, 1), (2, 2)");
    let legacy = |version: &str| {
        format!("WITH CONNECTOR ('connector'='iotdb-legacy-pipe-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{pipe_port}', 'connector.version'='{version}')")
    };
    ok(&edge, &format!("CREATE PIPE old {}", legacy("0.13")));
    ok(&edge, "START PIPE old");
    let mut row = Vec::new();
    assert!(
        wait_until(WAIT, || {
            row = pipe_row(&edge, "old");
            row[2] == "STOPPED"
        }),
        "{row:?}"
    );
    assert!(
        row[6].contains("version mismatch: the sender <0.13>, the receiver <1.1>"),
        "{row:?}"
    );
    assert!(query(&cloud, "select ** from root.v").1.is_empty());
    ok(&edge, "DROP PIPE old");
    ok(&edge, &format!("CREATE PIPE new {}", legacy("1.1")));
    ok(&edge, "START PIPE new");
    let rows = assert_same(&edge, &cloud, "new", "select ** from root.v");
    assert_eq!(rows.len(), 2);
    edge.stop();
    cloud.stop();
}

/// The message column: a PIPESINK pipe whose receiver is gone retries
/// (`WARN: …` while it runs), gives up after `max_number_of_sync_file_retry`
/// and shows `ERROR: …` in state STOP; `START PIPE` clears it and resumes
/// from where it stopped.
#[test]
fn a_pipesink_pipe_that_gives_up_shows_error_then_resumes_on_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud_dir = tmp.path().join("cloud");
    let (cloud, pipe_port) = cloud_node(&cloud_dir, "127.0.0.1/32");
    start_pipe_server(&cloud);
    let edge = edge_node(
        &tmp.path().join("edge"),
        &[
            "max_number_of_sync_file_retry=3",
            "pipe_connector_retry_interval_ms=20",
            "pipe_connector_timeout_ms=2000",
            // The seed's behaviour: the pipe stays STOP until START PIPE.
            "pipe_auto_restart_enabled=false",
        ],
    );
    ok(
        &edge,
        &format!("CREATE PIPESINK far AS IoTDB (ip='127.0.0.1', port={pipe_port})"),
    );
    ok(&edge, "CREATE PIPE p TO far");
    ok(&edge, "START PIPE p");
    write_rows(&edge.addr(), "root.e.d", 0, 500);
    assert_same(&edge, &cloud, "p", "select ** from root.e");
    cloud.kill9();
    write_rows(&edge.addr(), "root.e.d", 500, 500);
    let mut row = Vec::new();
    assert!(
        wait_until(WAIT, || {
            row = pipe_row(&edge, "p");
            row[2] == "STOP"
        }),
        "the pipe did not give up: {row:?}"
    );
    assert!(
        row[6].starts_with("ERROR: transfer failed 4 times (max_number_of_sync_file_retry = 3)"),
        "{row:?}"
    );
    // Writes went on meanwhile; the receiver comes back (its pipe server
    // too) and START PIPE resumes.
    write_rows(&edge.addr(), "root.e.d", 1000, 500);
    let cloud = NodeProc::start(
        &cloud_dir,
        &[
            "--config",
            cloud_dir.with_extension("properties").to_str().unwrap(),
        ],
    );
    assert_eq!(
        ok(&cloud, "SHOW PIPESERVER"),
        [[Value::from(0), Value::from(true)]]
    );
    ok(&edge, "START PIPE p");
    let rows = assert_same(&edge, &cloud, "p", "select ** from root.e");
    assert_eq!(rows.len(), 1500);
    let row = pipe_row(&edge, "p");
    assert_eq!((row[2].as_str(), row[6].as_str()), ("RUNNING", ""));
    edge.stop();
    cloud.stop();
}
