//! A pipe's history when the edge's change log no longer holds it whole,
//! between real `edgepipe server` processes.
//!
//! The edge writes with small change-log segments and frequent flushes,
//! so retention deletes the segments the store has checkpointed (no pipe
//! holds them back): a pipe created afterwards must still send everything
//! that arrived before it (seed 002's "全量历史数据"), read from the
//! store's chunk files, and then the log from there. Before, such a pipe
//! sent only the log's tail and reported success.
//!
//! The history holds non-aligned devices, an aligned one with nulls,
//! overwrites, deletions (a series' time range, a device's, a whole
//! database) and a deletion made after CREATE PIPE but before START.

use std::path::Path;
use std::time::Duration;

use e2e::{config_file, everything, sql, wait_until, NodeProc, Proxy};
use node::client::{Rows, Session};
use protocol::tablet::{Column, Tablet};

const WAIT: Duration = Duration::from_secs(60);

/// Small segments and flushes: the log rolls and retention deletes
/// segments while the history is written.
fn edge_config(dir: &Path) -> [String; 2] {
    config_file(
        dir,
        &[
            "wal_file_size_threshold_in_byte=65536",
            "memtable_flush_points=5000",
        ],
    )
}

fn start_edge(dir: &Path) -> NodeProc {
    let cfg = edge_config(dir);
    NodeProc::start(dir, &[&cfg[0], &cfg[1]])
}

/// The first offset the node's change log still holds: the smallest
/// segment base offset in `DATA/wal`.
fn log_start(data: &Path) -> u64 {
    std::fs::read_dir(data.join("wal"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse::<u64>()
                .ok()
        })
        .min()
        .unwrap_or(0)
}

/// `n` rows of device `device` from `from`: x DOUBLE and y INT64 (`k`
/// scales the values, so a rewrite changes them), 100 rows a tablet.
fn write_rows(s: &mut Session, device: &str, from: i64, n: i64, k: i64) {
    for base in (from..from + n).step_by(100) {
        let end = (base + 100).min(from + n);
        s.insert_tablet(&Tablet {
            device: device.into(),
            measurements: vec!["x".into(), "y".into()],
            columns: vec![
                Column::Double((base..end).map(|i| (i * k) as f64 / 4.0).collect()),
                Column::Int64((base..end).map(|i| i * k).collect()),
            ],
            nulls: vec![None, None],
            times: (base..end).collect(),
            aligned: false,
        })
        .unwrap();
    }
}

/// `n` rows of the aligned device `root.h.al` from `from`: a INT32, b
/// TEXT (null every third row), c BOOLEAN (null every fifth).
fn write_aligned(s: &mut Session, from: i64, n: i64) {
    for base in (from..from + n).step_by(100) {
        let end = (base + 100).min(from + n);
        let rows: Vec<i64> = (base..end).collect();
        s.insert_tablet(&Tablet {
            device: "root.h.al".into(),
            measurements: vec!["a".into(), "b".into(), "c".into()],
            columns: vec![
                Column::Int32(rows.iter().map(|&i| i as i32).collect()),
                Column::Text(rows.iter().map(|i| format!("v{i}").into_bytes()).collect()),
                Column::Boolean(rows.iter().map(|i| i % 2 == 0).collect()),
            ],
            nulls: vec![
                None,
                Some(rows.iter().map(|i| i % 3 == 0).collect()),
                Some(rows.iter().map(|i| i % 5 == 0).collect()),
            ],
            times: rows,
            aligned: true,
        })
        .unwrap();
    }
}

/// The points the edge holds after [`write_history`]: 4 devices × 6,000
/// rows × 2 columns, 6,000 aligned rows of 3 columns with nulls, minus
/// the deletions.
const DEVICES: [&str; 4] = ["root.h.d0", "root.h.d1", "root.h.d2", "root.h.d3"];

/// Writes the history until the edge's log has rolled and retention
/// deleted segments; returns the log start then.
fn write_history(edge: &NodeProc) -> u64 {
    let mut s = Session::open(&edge.addr(), "root", "root").unwrap();
    for d in DEVICES {
        write_rows(&mut s, d, 0, 6000, 1);
    }
    write_aligned(&mut s, 0, 6000);
    // A database deleted later: none of it may reach the cloud.
    write_rows(&mut s, "root.gone.d", 0, 3000, 1);
    // Overwrites: the later values win (and are in a later chunk file).
    write_rows(&mut s, "root.h.d0", 1000, 500, 3);
    s.close().unwrap();
    let a = edge.addr();
    sql(
        &a,
        "delete from root.h.d1.x where time >= 1000 and time <= 1999",
    );
    sql(&a, "delete from root.h.d2.* where time < 500");
    sql(
        &a,
        "delete from root.h.al.b where time >= 100 and time <= 299",
    );
    sql(&a, "delete database root.gone");
    // More after the deletions, so they lie in the middle of the history.
    let mut s = Session::open(&a, "root", "root").unwrap();
    write_rows(&mut s, "root.h.d1", 6000, 2000, 1);
    s.close().unwrap();
    let mut start = 0;
    assert!(
        wait_until(Duration::from_secs(20), || {
            start = log_start(&edge.data_dir);
            start > 0
        }),
        "the edge's change log did not roll and drop segments"
    );
    start
}

fn count_all(addr: &str) -> Option<Rows> {
    let mut s = Session::open(addr, "root", "root").ok()?;
    let r = s.execute("select count(*) from root.**").ok()?;
    let _ = s.close();
    r
}

fn query(addr: &str, q: &str) -> Option<Rows> {
    let mut s = Session::open(addr, "root", "root").ok()?;
    let r = s.execute(q).ok()?;
    let _ = s.close();
    r
}

/// Waits until the cloud's `select ** from root` and `count(*)` equal
/// the edge's; the edge's rows.
fn assert_same(edge: &NodeProc, cloud: &NodeProc) -> Rows {
    let mut last = None;
    let same = wait_until(WAIT, || {
        let (e, c) = (everything(&edge.addr()), everything(&cloud.addr()));
        let ok = e.is_some() && e == c && count_all(&edge.addr()) == count_all(&cloud.addr());
        last = Some((e, c));
        ok
    });
    let (e, c) = last.expect("polled");
    assert!(
        same,
        "cloud differs from edge after {WAIT:?}:\nedge:  {:?} rows, count {:?}\ncloud: {:?} rows, count {:?}",
        e.as_ref().map(|r| r.rows.len()),
        count_all(&edge.addr()).map(|r| r.rows),
        c.as_ref().map(|r| r.rows.len()),
        count_all(&cloud.addr()).map(|r| r.rows),
    );
    e.expect("edge rows")
}

fn pipe_row(addr: &str, id: &str) -> Vec<String> {
    let r = sql(addr, &format!("show pipe {id}")).expect("rows");
    r.rows[0]
        .1
        .iter()
        .map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default())
        .collect()
}

fn connector(plugin: &str, port: u16, extra: &str) -> String {
    format!("WITH CONNECTOR ('connector'='{plugin}', 'connector.ip'='127.0.0.1', 'connector.port'='{port}'{extra})")
}

/// The total points of a `count(*)` row.
fn points(r: &Rows) -> i64 {
    r.rows[0]
        .1
        .iter()
        .map(|v| {
            v.as_ref()
                .map_or(0, |v| v.to_string().parse::<i64>().unwrap())
        })
        .sum()
}

/// The pipe's history progress file (`system/history/<hex id>.json`).
fn progress(edge_dir: &Path, id: &str) -> Option<serde_json::Value> {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    let b = std::fs::read(edge_dir.join(format!("system/history/{hex}.json"))).ok()?;
    serde_json::from_slice(&b).ok()
}

#[test]
fn a_pipe_created_after_the_log_rolled_sends_the_whole_history() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let cloud2 = NodeProc::start(&tmp.path().join("cloud2"), &[]);
    let edge = start_edge(&tmp.path().join("edge"));
    let e = edge.addr();
    write_history(&edge);
    let total = points(&count_all(&e).unwrap());
    assert!(total > 40_000, "{total}");

    // The whole history, sync connector.
    sql(
        &e,
        &format!(
            "create pipe all {}",
            connector("iotdb-thrift-connector", cloud.port, "")
        ),
    );
    // A deletion after CREATE and before START: the pipe reads its history
    // after it, so none of the points it deleted may go.
    sql(&e, "delete from root.h.d3.y where time <= 99");
    // SHOW PIPES counts the history ahead (from the chunk files' index)
    // before START: far more than the log's tail.
    let remaining: u64 = pipe_row(&e, "all")[7].parse().unwrap();
    assert!(
        remaining >= total as u64,
        "remaining {remaining} < {total} points"
    );
    sql(&e, "start pipe all");
    // Realtime after START: the log from the snapshot's offset.
    let mut s = Session::open(&e, "root", "root").unwrap();
    write_rows(&mut s, "root.h.d0", 100_000, 300, 1);
    s.close().unwrap();
    let rows = assert_same(&edge, &cloud);
    assert!(rows.rows.iter().any(|r| r.0 == 100_299));
    assert_eq!(
        points(&count_all(&cloud.addr()).unwrap()),
        total - 100 + 600,
        "the cloud's points: the history, less the deletion after CREATE, plus the realtime rows"
    );
    // The aligned device arrived aligned; the deleted database not at all.
    assert_eq!(
        query(&e, "show devices"),
        query(&cloud.addr(), "show devices")
    );
    assert!(
        query(&cloud.addr(), "show devices root.h.al").unwrap().rows[0].1[1]
            .as_ref()
            .is_some_and(|v| v.to_string() == "true")
    );
    assert!(
        wait_until(WAIT, || pipe_row(&e, "all")[7] == "0"),
        "remaining events drain to 0: {:?}",
        pipe_row(&e, "all")
    );
    assert_eq!(progress(&edge.data_dir, "all").unwrap()["done"], true);

    // A second pipe, async connector: a pattern (a plain string prefix)
    // and history time bounds get exactly their subset; realtime is not
    // bounded by them.
    sql(
        &e,
        &format!(
            "create pipe sub WITH EXTRACTOR ('extractor.pattern'='root.h.d1', 'extractor.history.start-time'='1500', 'extractor.history.end-time'='6999') {}",
            connector("iotdb-thrift-async-connector", cloud2.port, "")
        ),
    );
    sql(&e, "start pipe sub");
    let mut s = Session::open(&e, "root", "root").unwrap();
    write_rows(&mut s, "root.h.d1", 200_000, 100, 1);
    write_rows(&mut s, "root.h.d2", 200_000, 100, 1);
    s.close().unwrap();
    let same = |edge_q: &str, cloud_q: &str| {
        let (a, b) = (query(&e, edge_q), query(&cloud2.addr(), cloud_q));
        a.is_some() && a == b
    };
    let ok = wait_until(WAIT, || {
        same(
            "select ** from root.h.d1 where time >= 1500 and time <= 6999",
            "select ** from root where time <= 6999",
        ) && same(
            "select ** from root.h.d1 where time >= 200000",
            "select ** from root where time >= 200000",
        )
    });
    let got = everything(&cloud2.addr()).unwrap();
    assert!(
        ok,
        "the subset differs: the cloud has {} rows",
        got.rows.len()
    );
    assert_eq!(got.columns, ["root.h.d1.x", "root.h.d1.y"]);
    assert_eq!(got.rows.len(), 6999 - 1500 + 1 + 100);

    // DROP PIPE removes the pipe's history progress file.
    assert!(progress(&edge.data_dir, "sub").is_some());
    sql(&e, "drop pipe all");
    sql(&e, "drop pipe sub");
    assert!(progress(&edge.data_dir, "all").is_none());
    assert!(progress(&edge.data_dir, "sub").is_none());

    edge.stop();
    cloud.stop();
    cloud2.stop();
}

#[test]
fn kill_9_of_the_edge_mid_history_resumes_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge_dir = tmp.path().join("edge");
    let edge = start_edge(&edge_dir);
    write_history(&edge);
    let total = points(&count_all(&edge.addr()).unwrap());
    // A slow link, and small requests: the history takes seconds.
    let proxy = Proxy::start(cloud.addr(), Duration::from_millis(40));
    sql(
        &edge.addr(),
        &format!(
            "create pipe p {}",
            connector(
                "iotdb-thrift-async-connector",
                proxy.port,
                ", 'connector.batch.size-bytes'='16384'"
            )
        ),
    );
    sql(&edge.addr(), "start pipe p");
    // Mid-history: the receiver acknowledged part of it, committed, two
    // devices at least (root.h.al and root.h.d0 come first).
    assert!(
        wait_until(WAIT, || progress(&edge_dir, "p").is_some_and(|p| {
            p["cursor"]["device"]
                .as_str()
                .is_some_and(|d| d > "root.h.d0")
        })),
        "no history progress committed past root.h.d0: {:?}",
        progress(&edge_dir, "p")
    );
    edge.kill9();
    let p = progress(&edge_dir, "p").unwrap();
    assert_eq!(
        p["done"], false,
        "the history was over before the kill: {p}"
    );
    let acked = p["cursor"].clone();
    assert!(!acked.is_null());
    let got = points(&count_all(&cloud.addr()).unwrap());
    assert!(
        got < total,
        "the cloud had it all before the kill ({got} of {total})"
    );

    // The pipe resumes (RUNNING) from what was acknowledged, not from
    // scratch, and the cloud ends with the edge's data.
    let edge = start_edge(&edge_dir);
    // The log says how many points each run had ahead (from the chunk
    // files' index).
    let runs = |edge: &NodeProc| -> Vec<(u64, String)> {
        edge.log_text()
            .lines()
            .filter(|l| l.contains("sending the pipe's history from the store"))
            .map(|l| {
                let n = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("points="))
                    .unwrap()
                    .parse()
                    .unwrap();
                (n, l.to_string())
            })
            .collect()
    };
    assert!(
        wait_until(WAIT, || runs(&edge).len() == 2),
        "the restarted pipe did not resume its history"
    );
    let r = runs(&edge);
    let (first, again) = (&r[0], &r[1]);
    assert!(again.1.contains("resumed=true"), "{}", again.1);
    // Past root.h.al (14,800 points in the index) and root.h.d0 (13,000).
    assert!(
        again.0 + 27_800 <= first.0,
        "resumed with {} points ahead, the first run had {}: {}",
        again.0,
        first.0,
        again.1
    );
    assert_same(&edge, &cloud);
    assert!(wait_until(WAIT, || progress(&edge_dir, "p")
        .is_some_and(|p| p["done"] == true)));
    edge.stop();
    cloud.stop();
}

#[test]
fn a_pipesink_pipe_created_after_the_log_rolled_sends_the_whole_history() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge = start_edge(&tmp.path().join("edge"));
    let e = edge.addr();
    write_history(&edge);
    sql(
        &e,
        &format!(
            "CREATE PIPESINK far AS IoTDB (ip='127.0.0.1', port={})",
            cloud.port
        ),
    );
    // FROM bounds the history by the data's own time.
    sql(
        &e,
        "CREATE PIPE ps TO far FROM (select ** from root where time >= 1000)",
    );
    sql(&e, "START PIPE ps");
    let mut s = Session::open(&e, "root", "root").unwrap();
    write_rows(&mut s, "root.h.d0", 0, 10, 7);
    s.close().unwrap();
    let same = |q: &str| {
        let (a, b) = (query(&e, q), query(&cloud.addr(), q));
        a.is_some() && a == b
    };
    let ok = wait_until(WAIT, || {
        same("select ** from root where time >= 1000")
            && same("select ** from root.h.d0 where time < 10")
    });
    let (edge_rows, cloud_rows) = (
        everything(&e).map(|r| r.rows.len()),
        everything(&cloud.addr()).map(|r| r.rows.len()),
    );
    assert!(
        ok,
        "the cloud differs: {cloud_rows:?} rows, the edge {edge_rows:?}"
    );
    // Before the FROM time, only what came after CREATE PIPE.
    assert_eq!(
        query(&cloud.addr(), "select ** from root where time < 1000")
            .unwrap()
            .rows
            .len(),
        10
    );
    edge.stop();
    cloud.stop();
}
