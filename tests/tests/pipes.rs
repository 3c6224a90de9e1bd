//! Pipes between two real `edgepipe server` processes: history and
//! realtime written by the official Python client, pattern and time-range
//! filters, STOP / START / DROP, connector reuse, and faults (kill -9 of
//! either node, a proxy that cuts and delays the link, retries running
//! out, a receiver that never answers). After each, the cloud holds
//! exactly the edge's data. The fault tests run with the sync connector
//! and again with `iotdb-thrift-async-connector` (`…_async`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{everything, free_port, run_python, sql, wait_until, NodeProc, Proxy};
use node::client::{Rows, Session};
use protocol::tablet::{Column, Tablet};

const WAIT: Duration = Duration::from_secs(60);

fn connector(port: u16) -> String {
    connector_of("iotdb-thrift-connector", port)
}

const ASYNC: &str = "iotdb-thrift-async-connector";

fn connector_of(plugin: &str, port: u16) -> String {
    format!("WITH CONNECTOR ('connector'='{plugin}', 'connector.ip'='127.0.0.1', 'connector.port'='{port}')")
}

/// Waits until the cloud's `select ** from root` equals the edge's.
fn assert_same(edge: &NodeProc, cloud: &NodeProc) -> Rows {
    let mut last = None;
    let same = wait_until(WAIT, || {
        let (e, c) = (everything(&edge.addr()), everything(&cloud.addr()));
        let ok = e.is_some() && e == c;
        last = Some((e, c));
        ok
    });
    let (e, c) = last.expect("polled");
    assert!(
        same,
        "cloud differs from edge after {WAIT:?}:\nedge:  {:?} rows\ncloud: {:?} rows",
        e.as_ref().map(|r| r.rows.len()),
        c.as_ref().map(|r| r.rows.len())
    );
    e.expect("edge rows")
}

fn pipe_row(addr: &str, id: &str) -> Vec<String> {
    let r = sql(addr, &format!("show pipe {id}")).expect("rows");
    assert_eq!(
        r.columns[..7],
        [
            "ID",
            "CreationTime",
            "State",
            "PipeExtractor",
            "PipeProcessor",
            "PipeConnector",
            "ExceptionMessage"
        ]
    );
    r.rows[0]
        .1
        .iter()
        .map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default())
        .collect()
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
fn history_then_realtime_from_the_python_client() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let port = edge.port.to_string();
    run_python("writer.py", &["seed", &port], WAIT);
    run_python(
        "writer.py",
        &["stream", &port, "root.vehicle.d2", "0", "1000"],
        WAIT,
    );
    sql(
        &edge.addr(),
        &format!("create pipe a2b {}", connector(cloud.port)),
    );
    assert_eq!(
        pipe_row(&edge.addr(), "a2b")[2],
        "STOPPED",
        "a new pipe starts STOPPED"
    );
    // Nothing moves before START PIPE: watched for 2 s (a running pipe
    // delivers this seed in well under a second), on the cloud and in the
    // pipe's own count of what is left to send.
    let remaining = pipe_row(&edge.addr(), "a2b")[7].clone();
    assert_ne!(remaining, "0");
    let moved = wait_until(Duration::from_secs(2), || {
        everything(&cloud.addr()).is_some_and(|r| !r.rows.is_empty())
            || pipe_row(&edge.addr(), "a2b")[7] != remaining
    });
    assert!(!moved, "data moved before START PIPE");
    sql(&edge.addr(), "start pipe a2b");
    run_python(
        "writer.py",
        &["stream", &port, "root.vehicle.d3", "5000", "2000"],
        WAIT,
    );
    let rows = assert_same(&edge, &cloud);
    assert!(
        rows.columns.contains(&"root.vehicle.d0.s1".to_string())
            && rows.columns.contains(&"root.vehicle.d3.c".to_string())
    );
    let row = pipe_row(&edge.addr(), "a2b");
    assert_eq!(row[2], "RUNNING");
    assert!(
        wait_until(WAIT, || pipe_row(&edge.addr(), "a2b")[7] == "0"),
        "remaining events drain to 0"
    );
    edge.stop();
    cloud.stop();
}

/// `connector.compressor` (IoTDB 1.3's compressed requests, type 300):
/// history and realtime replicate identically, with zstd on the sync
/// connector and a chain (snappy, then lzma2) on the async one, each
/// with a rate limit far above what the data needs.
#[test]
fn compressed_pipes_replicate_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let port = edge.port.to_string();
    run_python("writer.py", &["seed", &port], WAIT);
    write_rows(&edge.addr(), "root.zip.d1", 0, 3000);
    for (id, plugin, compressor) in [
        ("z1", "iotdb-thrift-connector", "zstd"),
        ("z2", ASYNC, "snappy,lzma2"),
    ] {
        sql(
            &edge.addr(),
            &format!(
                "create pipe {id} WITH CONNECTOR ('connector'='{plugin}', 'connector.ip'='127.0.0.1', 'connector.port'='{}', 'connector.compressor'='{compressor}', 'connector.rate-limit-bytes-per-second'='100000000')",
                cloud.port
            ),
        );
        sql(&edge.addr(), &format!("start pipe {id}"));
    }
    write_rows(&edge.addr(), "root.zip.d2", 10_000, 3000);
    run_python(
        "writer.py",
        &["stream", &port, "root.vehicle.d3", "5000", "500"],
        WAIT,
    );
    let rows = assert_same(&edge, &cloud);
    assert!(rows.columns.contains(&"root.zip.d2.y".to_string()));
    for id in ["z1", "z2"] {
        let row = pipe_row(&edge.addr(), id);
        assert_eq!(row[2], "RUNNING", "{row:?}");
        assert!(
            row[5].contains("snappy,lzma2") || row[5].contains("zstd"),
            "{row:?}"
        );
        assert_eq!(row[6], "", "{row:?}");
    }
    // A compressor the connector does not know is refused by name.
    let mut s = Session::open(&edge.addr(), "root", "root").unwrap();
    let e = s
        .execute(&format!(
            "create pipe z3 WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{}', 'connector.compressor'='lzo')",
            cloud.port
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'lzo' is not a compressor"), "{e}");
    s.close().unwrap();
    edge.stop();
    cloud.stop();
}

#[test]
fn pattern_and_history_time_range() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    // The seed's pattern table: root.aligned.1 is a string prefix.
    for dev in [
        "root.aligned.1TS",
        "root.aligned.100TS",
        "root.aligned.`1`",
        "root.aligned.`123`",
    ] {
        sql(
            &e,
            &format!("insert into {dev}(time, s) values (1, 1), (100, 2), (200, 3)"),
        );
    }
    sql(&e, "insert into root.aligned.1TS(time, `1`) values (50, 5)");
    sql(
        &e,
        &format!(
            "create pipe p WITH EXTRACTOR ('extractor.pattern'='root.aligned.1', 'extractor.history.start-time'='1970-01-01T00:00:00.050Z', 'extractor.history.end-time'='150') {}",
            connector(cloud.port)
        ),
    );
    sql(&e, "start pipe p");
    // Realtime data is not bounded by the history range.
    sql(
        &e,
        "insert into root.aligned.100TS(time, s) values (1000, 4)",
    );
    sql(&e, "insert into root.other.d(time, s) values (1000, 4)");
    let want = |r: &Rows| {
        let mut cols = r.columns.clone();
        cols.sort();
        let times: Vec<i64> = r.rows.iter().map(|x| x.0).collect();
        (cols, times)
    };
    let ok = wait_until(WAIT, || {
        everything(&cloud.addr()).is_some_and(|r| {
            want(&r)
                == (
                    vec![
                        "root.aligned.100TS.s".to_string(),
                        "root.aligned.1TS.`1`".into(),
                        "root.aligned.1TS.s".into(),
                    ],
                    vec![50, 100, 1000],
                )
        })
    });
    assert!(
        ok,
        "cloud holds {:?}",
        everything(&cloud.addr()).map(|r| want(&r))
    );
    edge.stop();
    cloud.stop();
}

#[test]
fn stop_start_drop_and_connector_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    let c = cloud.port;
    sql(&e, &format!("create pipe pa WITH EXTRACTOR ('extractor.pattern'='root.a') WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{c}')"));
    // The same connector, attributes in another order: one instance.
    sql(&e, &format!("create pipe pb WITH EXTRACTOR ('extractor.pattern'='root.b') WITH CONNECTOR ('connector.port'='{c}', 'connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1',)"));
    sql(
        &e,
        "create pipe pc WITH CONNECTOR ('connector'='do-nothing-connector')",
    );
    let used: Vec<String> = sql(&e, "show pipes where connector used by pa")
        .unwrap()
        .rows
        .iter()
        .map(|r| r.1[0].as_ref().unwrap().to_string())
        .collect();
    assert_eq!(used, ["pa", "pb"]);
    // Errors name what is wrong.
    let mut s = Session::open(&e, "root", "root").unwrap();
    for (stmt, needle) in [
        (format!("create pipe pa {}", connector(c)), "already exists"),
        ("create pipe x WITH CONNECTOR ('connector'='nope')".to_string(), "unknown connector plugin 'nope'"),
        ("create pipe x WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='99999')".to_string(), "'connector.port'='99999'"),
        (format!("create pipe x WITH EXTRACTOR ('extractor.history.enable'='false', 'extractor.realtime.enable'='false') {}", connector(c)), "both false"),
        (format!("create pipe x WITH EXTRACTOR ('extractor.colour'='red') {}", connector(c)), "unknown extractor attribute 'extractor.colour'"),
        (format!("create pipe x WITH PROCESSOR ('processor'='magic') {}", connector(c)), "unknown processor plugin 'magic'"),
        ("start pipe nosuch".to_string(), "does not exist"),
    ] {
        let err = s.execute(&stmt).unwrap_err().to_string();
        assert!(err.contains(needle), "{stmt}: {err}");
    }
    s.execute("start pipe pa").unwrap();
    s.execute("start pipe pb").unwrap();
    write_rows(&e, "root.a.d", 0, 100);
    write_rows(&e, "root.b.d", 0, 100);
    assert_same(&edge, &cloud);
    s.execute("stop pipe pa").unwrap();
    assert_eq!(pipe_row(&e, "pa")[2], "STOPPED");
    write_rows(&e, "root.a.d", 100, 100);
    write_rows(&e, "root.b.d", 100, 100);
    assert!(wait_until(WAIT, || everything(&cloud.addr())
        .is_some_and(|r| r.rows.len() == 200)));
    let cloud_rows = everything(&cloud.addr()).unwrap();
    let a = cloud_rows
        .columns
        .iter()
        .position(|c| c == "root.a.d.x")
        .unwrap();
    assert!(
        cloud_rows
            .rows
            .iter()
            .filter(|r| r.0 >= 100)
            .all(|r| r.1[a].is_none()),
        "a stopped pipe sends nothing"
    );
    s.execute("start pipe pa").unwrap();
    assert_same(&edge, &cloud);
    // DROP without STOP; the dropped pipe's data no longer flows.
    s.execute("drop pipe pb").unwrap();
    let ids: Vec<String> = s
        .execute("show pipes")
        .unwrap()
        .unwrap()
        .rows
        .iter()
        .map(|r| r.1[0].as_ref().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["pa", "pc"]);
    write_rows(&e, "root.b.d", 200, 10);
    write_rows(&e, "root.a.d", 200, 10);
    assert!(wait_until(WAIT, || everything(&cloud.addr())
        .is_some_and(|r| r.rows.len() == 210)));
    let r = everything(&cloud.addr()).unwrap();
    let b = r.columns.iter().position(|c| c == "root.b.d.x").unwrap();
    assert!(r
        .rows
        .iter()
        .filter(|x| x.0 >= 200)
        .all(|x| x.1[b].is_none()));
    // The presets edgepipe implements, as IoTDB 1.2 lists them.
    let plugins = s.execute("show pipeplugins").unwrap().unwrap();
    assert_eq!(
        plugins.columns,
        ["PluginName", "PluginType", "ClassName", "PluginJar"]
    );
    let text = |v: &Option<protocol::types::Value>| v.as_ref().map(|v| v.to_string());
    let names: Vec<String> = plugins
        .rows
        .iter()
        .map(|r| {
            assert_eq!(text(&r.1[1]).as_deref(), Some("Builtin"));
            assert_eq!(text(&r.1[3]).as_deref(), Some(""));
            text(&r.1[0]).unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "IOTDB-EXTRACTOR",
            "DO-NOTHING-PROCESSOR",
            "DO-NOTHING-CONNECTOR",
            "IOTDB-THRIFT-CONNECTOR",
            "IOTDB-THRIFT-SYNC-CONNECTOR",
            "IOTDB-THRIFT-ASYNC-CONNECTOR",
            "IOTDB-LEGACY-PIPE-CONNECTOR"
        ]
    );
    let err = s
        .execute("create pipe x WITH CONNECTOR ('connector'='opc-ua-connector')")
        .unwrap_err()
        .to_string();
    assert!(err.contains("edgepipe does not implement"), "{err}");
    s.close().unwrap();
    // Pipes and states survive a restart.
    edge.stop();
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    assert_eq!(pipe_row(&edge.addr(), "pa")[2], "RUNNING");
    assert_eq!(pipe_row(&edge.addr(), "pc")[2], "STOPPED");
    edge.stop();
    cloud.stop();
}

#[test]
fn pipe_privileges() {
    let tmp = tempfile::tempdir().unwrap();
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    sql(&e, "create user alice 'alice123'");
    let mut a = Session::open(&e, "alice", "alice123").unwrap();
    let err = a
        .execute("create pipe p WITH CONNECTOR ('connector'='do-nothing-connector')")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("803") && err.contains("CREATE_PIPE"),
        "{err}"
    );
    sql(
        &e,
        "grant user alice privileges CREATE_PIPE, SHOW_PIPES on root.**",
    );
    a.execute("create pipe p WITH CONNECTOR ('connector'='do-nothing-connector')")
        .unwrap();
    assert_eq!(a.execute("show pipes").unwrap().unwrap().rows.len(), 1);
    let err = a.execute("start pipe p").unwrap_err().to_string();
    assert!(err.contains("START_PIPE"), "{err}");
    sql(&e, "revoke user alice privileges SHOW_PIPES");
    assert!(a
        .execute("show pipes")
        .unwrap_err()
        .to_string()
        .contains("SHOW_PIPES"));
    a.close().unwrap();
    edge.stop();
}

#[test]
fn kill9_of_cloud_and_edge_mid_stream() {
    kill9_mid_stream("iotdb-thrift-connector");
}

#[test]
fn kill9_of_cloud_and_edge_mid_stream_async() {
    kill9_mid_stream(ASYNC);
}

fn kill9_mid_stream(plugin: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cport = free_port();
    let cport_s = cport.to_string();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &["--rpc-port", &cport_s]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let cfg = connector_of(plugin, cport);
    sql(&edge.addr(), &format!("create pipe p {cfg}"));
    sql(&edge.addr(), "start pipe p");
    write_rows(&edge.addr(), "root.f.d", 0, 2000);
    // Kill the cloud mid-stream; the edge keeps accepting writes.
    cloud.kill9();
    write_rows(&edge.addr(), "root.f.d", 2000, 2000);
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &["--rpc-port", &cport_s]);
    write_rows(&edge.addr(), "root.f.d", 4000, 1000);
    assert_same(&edge, &cloud);
    // Kill the edge mid-stream; it resumes from its committed offset.
    let edge_dir = edge.data_dir.clone();
    let progress = Arc::new(std::sync::atomic::AtomicI64::new(5000));
    let writer = {
        let addr = edge.addr();
        let progress = progress.clone();
        // Writes until the kill stops it (or 2 M rows, far more than it
        // gets to); returns the rows acknowledged and whether it was cut
        // off.
        std::thread::spawn(move || {
            let mut s = Session::open(&addr, "root", "root").unwrap();
            let mut acked = 5000;
            for base in (5000..2_000_000).step_by(50) {
                let t = Tablet {
                    device: "root.f.d".into(),
                    measurements: vec!["x".into(), "y".into()],
                    columns: vec![
                        Column::Double((base..base + 50).map(|i| i as f64).collect()),
                        Column::Double((base..base + 50).map(|i| i as f64 * 2.0).collect()),
                    ],
                    nulls: vec![None, None],
                    times: (base..base + 50).collect(),
                    aligned: false,
                };
                if s.insert_tablet(&t).is_err() {
                    return (acked, true);
                }
                acked = base + 50;
                progress.store(acked, std::sync::atomic::Ordering::Relaxed);
            }
            (acked, false)
        })
    };
    // Kill once the writer is well under way (and the pipe behind it).
    assert!(
        wait_until(WAIT, || progress.load(std::sync::atomic::Ordering::Relaxed)
            >= 8000),
        "the writer made no progress"
    );
    edge.kill9();
    let (acked, cut_off) = writer.join().unwrap();
    assert!(
        cut_off,
        "the writer finished ({acked} rows) before the kill: it must hit mid-stream"
    );
    let edge = NodeProc::start(&edge_dir, &[]);
    let rows = assert_same(&edge, &cloud);
    // Every acknowledged row survived the edge's crash and reached the cloud.
    assert!(
        rows.rows.len() as i64 >= acked,
        "{} rows, {acked} acknowledged",
        rows.rows.len()
    );
    assert_eq!(pipe_row(&edge.addr(), "p")[2], "RUNNING");
    edge.stop();
    cloud.stop();
}

#[test]
fn a_flaky_link_cut_and_delayed_by_a_proxy() {
    flaky_link("iotdb-thrift-connector");
}

#[test]
fn a_flaky_link_cut_and_delayed_by_a_proxy_async() {
    flaky_link(ASYNC);
}

fn flaky_link(plugin: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let proxy = Proxy::start(cloud.addr(), Duration::from_millis(2));
    let cfg = tmp.path().join("edge.properties");
    std::fs::write(&cfg, "pipe_connector_retry_interval_ms=20\nmax_number_of_sync_file_retry=1000\npipe_connector_timeout_ms=2000\n").unwrap();
    let edge = NodeProc::start(
        &tmp.path().join("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    sql(
        &edge.addr(),
        &format!("create pipe p {}", connector_of(plugin, proxy.port)),
    );
    sql(&edge.addr(), "start pipe p");
    // Cut right after each write, while the pipe ships it; go on (up to 40
    // rounds) until cuts have caught a few data transfers in flight (a
    // handshake is some 30 bytes; 50 rows of two DOUBLEs are 1 KB).
    let data_hits = |p: &Proxy| p.cuts_in_flight().iter().filter(|&&n| n > 500).count();
    let mut rounds = 0;
    while rounds < 10 || (rounds < 40 && data_hits(&proxy) < 3) {
        write_rows(&edge.addr(), "root.g.d", rounds * 500, 500);
        proxy.cut();
        std::thread::sleep(Duration::from_millis(30));
        rounds += 1;
    }
    assert!(
        data_hits(&proxy) > 0,
        "no cut in {rounds} rounds hit a transfer in flight (requests caught: {:?})",
        proxy.cuts_in_flight()
    );
    let rows = assert_same(&edge, &cloud);
    assert_eq!(rows.rows.len() as i64, rounds * 500);
    assert_eq!(pipe_row(&edge.addr(), "p")[2], "RUNNING");
    edge.stop();
    cloud.stop();
}

#[test]
fn retries_run_out_then_start_pipe_resumes() {
    retries_run_out("iotdb-thrift-connector");
}

#[test]
fn retries_run_out_then_start_pipe_resumes_async() {
    retries_run_out(ASYNC);
}

fn retries_run_out(plugin: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cport = free_port();
    let cfg = tmp.path().join("edge.properties");
    // The seed's behaviour (auto-restart off): only START PIPE resumes.
    std::fs::write(&cfg, "pipe_connector_retry_interval_ms=20\nmax_number_of_sync_file_retry=3\npipe_connector_timeout_ms=1000\npipe_auto_restart_enabled=false\n").unwrap();
    let edge = NodeProc::start(
        &tmp.path().join("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    sql(
        &edge.addr(),
        &format!("create pipe p {}", connector_of(plugin, cport)),
    );
    sql(&edge.addr(), "start pipe p");
    write_rows(&edge.addr(), "root.h.d", 0, 300);
    // The cloud is down: the pipe gives up and says why.
    assert!(
        wait_until(WAIT, || pipe_row(&edge.addr(), "p")[2] == "STOPPED"),
        "pipe never stopped"
    );
    let row = pipe_row(&edge.addr(), "p");
    assert!(
        row[6].contains("max_number_of_sync_file_retry = 3") && row[6].contains("unavailable"),
        "exception message: {}",
        row[6]
    );
    // Ingestion did not wait for the pipe.
    write_rows(&edge.addr(), "root.h.d", 300, 300);
    let cloud = NodeProc::start(
        &tmp.path().join("cloud"),
        &["--rpc-port", &cport.to_string()],
    );
    sql(&edge.addr(), "start pipe p");
    let rows = assert_same(&edge, &cloud);
    assert_eq!(rows.rows.len(), 600);
    assert_eq!(
        pipe_row(&edge.addr(), "p")[6],
        "",
        "START clears the exception"
    );
    edge.stop();
    cloud.stop();
}

/// A receiver that accepts connections, reads and records every byte with
/// the time it arrived, and never answers.
struct SilentPeer {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<SilentConn>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

struct SilentConn {
    stream: std::net::TcpStream,
    /// Every read: when, and how many bytes; held across each read so a
    /// count never misses bytes between the kernel and this list.
    reads: Mutex<Vec<(Instant, usize)>>,
}

/// Connections and bytes a [`SilentPeer`] received: read, or still queued
/// in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Received {
    conns: usize,
    bytes: u64,
}

impl SilentPeer {
    fn start() -> SilentPeer {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let conns: Arc<Mutex<Vec<Arc<SilentConn>>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c2, s2) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                // The list is locked while accepting, so a count sees
                // every connection made.
                let mut list = c2.lock().unwrap();
                let Ok((stream, _)) = l.accept() else {
                    drop(list);
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_millis(5)))
                    .expect("timeout");
                let c = Arc::new(SilentConn {
                    stream,
                    reads: Mutex::new(Vec::new()),
                });
                list.push(c.clone());
                drop(list);
                let s3 = s2.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut buf = vec![0u8; 64 << 10];
                    while !s3.load(Ordering::Relaxed) {
                        let mut reads = c.reads.lock().unwrap();
                        match (&c.stream).read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => reads.push((Instant::now(), n)),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => return,
                        }
                        drop(reads);
                        std::thread::yield_now();
                    }
                });
            }
        });
        SilentPeer { port, conns, stop }
    }

    /// Exactly what arrived so far: a byte the sender wrote before this is
    /// called is counted (on loopback it is read or queued by then).
    fn received(&self) -> Received {
        use std::os::fd::AsRawFd;
        let list = self.conns.lock().unwrap();
        let mut bytes = 0;
        for c in list.iter() {
            let reads = c.reads.lock().unwrap();
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD writes one c_int through a pointer to a live
            // local; the descriptor is owned by `c.stream` for the call.
            let r = unsafe { libc::ioctl(c.stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
            if r == 0 {
                bytes += queued.max(0) as u64;
            }
            bytes += reads.iter().map(|r| r.1 as u64).sum::<u64>();
        }
        Received {
            conns: list.len(),
            bytes,
        }
    }

    /// Every read after `t`: connection, how long after `t`, bytes.
    fn reads_after(&self, t: Instant) -> Vec<(usize, Duration, usize)> {
        let list = self.conns.lock().unwrap();
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            for &(at, n) in c.reads.lock().unwrap().iter() {
                if at > t {
                    out.push((i, at - t, n));
                }
            }
        }
        out
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Issue 7, finding 11: STOP / DROP PIPE used to wait 60 s for a transfer
/// stuck on a silent receiver, and the task went on after DROP returned.
#[test]
fn stop_and_drop_are_prompt_against_a_receiver_that_never_answers() {
    prompt_against_silence("iotdb-thrift-connector");
}

#[test]
fn stop_and_drop_are_prompt_against_a_receiver_that_never_answers_async() {
    prompt_against_silence(ASYNC);
}

fn prompt_against_silence(plugin: &str) {
    let tmp = tempfile::tempdir().unwrap();
    // A connector timeout longer than the 2 s bound (a STOP that waits for
    // the call fails the bound), short enough that a task left running
    // after DROP would time out, reconnect and show within the watch.
    let cfg = tmp.path().join("edge.properties");
    std::fs::write(
        &cfg,
        "pipe_connector_timeout_ms=3000\npipe_connector_retry_interval_ms=20\nmax_number_of_sync_file_retry=1000\n",
    )
    .unwrap();
    let edge = NodeProc::start(
        &tmp.path().join("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    let e = edge.addr();
    let peer = SilentPeer::start();
    write_rows(&e, "root.s.d", 0, 500);
    sql(
        &e,
        &format!("create pipe p {}", connector_of(plugin, peer.port)),
    );
    sql(&e, "start pipe p");
    // The pipe's call is out (its handshake) and will never be answered.
    assert!(
        wait_until(WAIT, || peer.received().bytes > 0),
        "the pipe never reached the peer"
    );
    let t = Instant::now();
    sql(&e, "stop pipe p");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "STOP PIPE took {took:?}");
    assert_eq!(pipe_row(&e, "p")[2], "STOPPED");

    let before = peer.received();
    sql(&e, "start pipe p");
    assert!(
        wait_until(WAIT, || peer.received().conns > before.conns),
        "the restarted pipe never reached the peer"
    );
    let t = Instant::now();
    sql(&e, "drop pipe p");
    let dropped = Instant::now();
    let took = dropped - t;
    assert!(took < Duration::from_secs(2), "DROP PIPE took {took:?}");
    let at_drop = peer.received();
    // Longer than the connector timeout plus a retry.
    std::thread::sleep(Duration::from_secs(4));
    let now = peer.received();
    assert!(
        now.conns == at_drop.conns && now.bytes <= at_drop.bytes,
        "the peer received {now:?} after DROP returned ({at_drop:?} then); reads after (conn, after, bytes): {:?}",
        peer.reads_after(dropped)
    );
    assert!(sql(&e, "show pipes").unwrap().rows.is_empty());
    edge.stop();
}

/// `iotdb-thrift-async-connector` spreads its requests over
/// `connector.node-urls`: with two independent cloud nodes each gets a
/// share, and together they hold exactly the edge's data. Batching off
/// (`connector.batch.enable`), as an IoTDB 1.2.0 receiver needs.
#[test]
fn the_async_connector_spreads_over_node_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let c1 = NodeProc::start(&tmp.path().join("c1"), &[]);
    let c2 = NodeProc::start(&tmp.path().join("c2"), &[]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    sql(
        &e,
        &format!(
            "create pipe p WITH CONNECTOR ('connector'='{ASYNC}', 'connector.node-urls'='127.0.0.1:{},127.0.0.1:{}', 'connector.batch.enable'='false')",
            c1.port, c2.port
        ),
    );
    sql(&e, "start pipe p");
    for d in 0..20 {
        write_rows(&e, &format!("root.spread.d{d}"), 0, 100);
    }
    let want = everything(&e).unwrap();
    let points = |r: &Rows| {
        r.rows
            .iter()
            .map(|x| x.1.iter().flatten().count())
            .sum::<usize>()
    };
    let ok = wait_until(WAIT, || {
        let (a, b) = (everything(&c1.addr()), everything(&c2.addr()));
        a.zip(b)
            .is_some_and(|(a, b)| points(&a) + points(&b) == points(&want))
    });
    assert!(ok, "the clouds together do not hold the edge's points");
    let (a, b) = (
        everything(&c1.addr()).unwrap(),
        everything(&c2.addr()).unwrap(),
    );
    assert!(
        points(&a) > 0 && points(&b) > 0,
        "both nodes got requests: {} and {} points",
        points(&a),
        points(&b)
    );
    // Every value on a cloud node is the edge's.
    for cloud in [&a, &b] {
        for (t, vals) in &cloud.rows {
            let row = want
                .rows
                .iter()
                .find(|r| r.0 == *t)
                .expect("time on the edge");
            for (c, v) in cloud.columns.iter().zip(vals) {
                if v.is_some() {
                    let k = want
                        .columns
                        .iter()
                        .position(|x| x == c)
                        .expect("column on the edge");
                    assert_eq!(v, &row.1[k], "{c} at {t}");
                }
            }
        }
    }
    assert!(
        wait_until(WAIT, || pipe_row(&e, "p")[7] == "0"),
        "remaining events drain to 0"
    );
    edge.stop();
    c1.stop();
    c2.stop();
}
