//! The SQL people check sync with, timed through the client RPC on an
//! in-process node, printed as Markdown rows for BENCHMARKS.md:
//!
//! ```text
//! cargo run --release -p benches --example aggregate
//! ```
//!
//! Data: one series of 10 M DOUBLE points one second apart, and 1,000
//! series of 10,000 points each (another 10 M), written as tablets and
//! flushed into chunk files. Each figure is the median of 5 runs.

use std::time::{Duration, Instant};

use benches::BenchNode;
use node::client::Session;
use node::config::NodeConfig;
use protocol::tablet::{Column, Tablet};

const BASE: i64 = 1_600_000_000_000;
const LONG: i64 = 10_000_000;

fn median(s: &mut Session, sql: &str) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = s.execute(sql).unwrap().unwrap();
        times.push(t0.elapsed());
        rows = r.rows.len();
    }
    times.sort();
    (times[2], rows)
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("bench-aggregate")
        .tempdir()
        .unwrap();
    let cfg = NodeConfig {
        fsync: wal::FsyncPolicy::Never,
        ..NodeConfig::default()
    };
    let node = BenchNode::start(dir.path(), cfg);
    let mut s = Session::open(&node.addr(), "root", "root").unwrap();
    for chunk in (0..LONG).step_by(10_000) {
        s.insert_tablet(&Tablet {
            device: "root.q.d".into(),
            measurements: vec!["v".into()],
            columns: vec![Column::Double(
                (chunk..chunk + 10_000)
                    .map(|i| (i % 1000) as f64 * 0.5)
                    .collect(),
            )],
            nulls: vec![None],
            times: (chunk..chunk + 10_000).map(|i| BASE + i * 1000).collect(),
            aligned: false,
        })
        .unwrap();
    }
    for d in 0..1000 {
        s.insert_tablet(&Tablet {
            device: format!("root.m.d{d}"),
            measurements: vec!["s".into()],
            columns: vec![Column::Int64((0..10_000).collect())],
            nulls: vec![None],
            times: (0..10_000).map(|i| BASE + i * 1000).collect(),
            aligned: false,
        })
        .unwrap();
    }
    s.execute("flush").unwrap();
    let end = BASE + LONG * 1000;
    println!("| query (through the client RPC) | points read | median of 5 | rate |");
    println!("|---|---|---|---|");
    for (sql, points, label) in [
        (
            "select count(*) from root.**".to_string(),
            2 * LONG,
            "`select count(*) from root.**` (1,001 series)",
        ),
        (
            format!("select count(v), avg(v), max_value(v) from root.q.d group by ([{BASE}, {end}), 1h)"),
            LONG,
            "`count, avg, max_value` GROUP BY 1 h over the 10 M-point series (2,778 windows)",
        ),
        (
            format!("select count(v), sum(v), min_value(v), max_value(v), first_value(v), last_value(v) from root.q.d where time >= {BASE} and time < {end}"),
            LONG,
            "six aggregations over the 10 M-point series",
        ),
        (
            "select last * from root.**".to_string(),
            1001,
            "`select last * from root.**` (1,001 series; one point read each)",
        ),
    ] {
        let (t, rows) = median(&mut s, &sql);
        let rate = if sql.starts_with("select last") {
            "-".to_string()
        } else {
            format!("{:.0} M points/s", points as f64 / t.as_secs_f64() / 1e6)
        };
        println!(
            "| {label} | {points} | {:.1} ms ({rows} rows) | {rate} |",
            t.as_secs_f64() * 1e3,
        );
    }
    let _ = s.close();
}
