//! End-to-end node benchmarks, printed as a Markdown table:
//!
//! ```text
//! cargo bench -p benches --bench node
//! ```
//!
//! - Ingest through `insertTablet` (1,000-row tablets, 10 DOUBLE columns)
//!   from Rust clients on loopback, default fsync policy (10 ms group
//!   commit); the client waits for each acknowledgement.
//! - Ingest from the official Python client (`benches/python/ingest.py`,
//!   when `EDGEPIPE_PYTHON` or `.venv/bin/python` is there).
//! - A one-hour range query out of 10 M points of one series (1 s apart),
//!   through the client RPC and in the store directly.

use std::time::{Duration, Instant};

use benches::BenchNode;
use node::client::Session;
use node::config::NodeConfig;
use protocol::tablet::{Column, Tablet};

fn tablet(device: &str, start: i64, rows: usize, cols: usize) -> Tablet {
    Tablet {
        device: device.into(),
        measurements: (0..cols).map(|c| format!("s{c}")).collect(),
        columns: (0..cols)
            .map(|c| {
                Column::Double(
                    (0..rows)
                        .map(|r| (start + r as i64) as f64 * 0.5 + c as f64)
                        .collect(),
                )
            })
            .collect(),
        nulls: vec![None; cols],
        times: (start..start + rows as i64).collect(),
        aligned: false,
    }
}

fn ingest_rust(clients: usize, tablets_per_client: usize) -> (f64, Duration) {
    let dir = tempfile::Builder::new()
        .prefix("bench-ingest")
        .tempdir()
        .unwrap();
    let node = BenchNode::start(dir.path(), NodeConfig::default());
    let addr = node.addr();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = Session::open(&addr, "root", "root").unwrap();
                let device = format!("root.bench.d{c}");
                let mut lat = Vec::with_capacity(tablets_per_client);
                for i in 0..tablets_per_client {
                    let t = tablet(&device, (i * 1000) as i64, 1000, 10);
                    let t0 = Instant::now();
                    s.insert_tablet(&t).unwrap();
                    lat.push(t0.elapsed());
                }
                s.close().unwrap();
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let points = (clients * tablets_per_client * 10_000) as f64;
    // Spot check: everything arrived.
    let got = node
        .node
        .store
        .read("root.bench.d0.s9", i64::MIN, i64::MAX)
        .unwrap()
        .unwrap()
        .times
        .len();
    assert_eq!(got, tablets_per_client * 1000);
    (points / secs, lat[lat.len() / 2])
}

fn ingest_python(fsync: wal::FsyncPolicy) -> Option<String> {
    let py = std::env::var_os("EDGEPIPE_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
            p.exists().then_some(p)
        })?;
    let dir = tempfile::Builder::new()
        .prefix("bench-py")
        .tempdir()
        .unwrap();
    let node = BenchNode::start(
        dir.path(),
        NodeConfig {
            fsync,
            ..NodeConfig::default()
        },
    );
    let out = std::process::Command::new(py)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/ingest.py"))
        .arg(node.port.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        return Some(format!("failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn query_bench() -> (Duration, Duration, Duration, usize) {
    let dir = tempfile::Builder::new()
        .prefix("bench-query")
        .tempdir()
        .unwrap();
    let cfg = NodeConfig {
        fsync: wal::FsyncPolicy::Never,
        ..NodeConfig::default()
    };
    let node = BenchNode::start(dir.path(), cfg);
    let mut s = Session::open(&node.addr(), "root", "root").unwrap();
    // 10 M points, one per second, written as 10,000-row tablets.
    let total = 10_000_000i64;
    let base = 1_600_000_000_000i64;
    for chunk in (0..total).step_by(10_000) {
        let t = Tablet {
            device: "root.q.d".into(),
            measurements: vec!["v".into()],
            columns: vec![Column::Double(
                (chunk..chunk + 10_000).map(|i| i as f64).collect(),
            )],
            nulls: vec![None],
            times: (chunk..chunk + 10_000).map(|i| base + i * 1000).collect(),
            aligned: false,
        };
        s.insert_tablet(&t).unwrap();
    }
    s.execute("flush").unwrap();
    let mut rpc = Vec::new();
    let mut direct = Vec::new();
    let mut rows = 0;
    for k in 0..200i64 {
        let from = base + (k * 37_000 % (total - 3600)) * 1000;
        let to = from + 3_600_000;
        let t0 = Instant::now();
        let r = s
            .execute(&format!(
                "select v from root.q.d where time >= {from} and time < {to}"
            ))
            .unwrap()
            .unwrap();
        rpc.push(t0.elapsed());
        rows = r.rows.len();
        let t0 = Instant::now();
        let p = node
            .node
            .store
            .read("root.q.d.v", from, to - 1)
            .unwrap()
            .unwrap();
        direct.push(t0.elapsed());
        assert_eq!(p.times.len(), 3600);
    }
    rpc.sort();
    direct.sort();
    (
        rpc[rpc.len() / 2],
        rpc[rpc.len() * 99 / 100],
        direct[direct.len() / 2],
        rows,
    )
}

fn main() {
    println!("| measurement | figure | target |");
    println!("|---|---|---|");
    for clients in [1usize, 4, 16] {
        let (pps, p50) = ingest_rust(
            clients,
            if clients == 1 {
                200
            } else {
                2000 / clients.min(8)
            },
        );
        println!(
            "| insertTablet 1,000 rows × 10 DOUBLE, Rust client × {clients}, fsync interval 10 ms | {:.2} M points/s (p50 ack {:.1} ms) | ≥ 5 M points/s |",
            pps / 1e6,
            p50.as_secs_f64() * 1e3
        );
    }
    for (fsync, name) in [
        (wal::FsyncPolicy::default(), "fsync interval 10 ms"),
        (wal::FsyncPolicy::Never, "fsync never (client-side bound)"),
    ] {
        match ingest_python(fsync) {
            Some(r) => println!("| insertTablet 1,000 rows × 10 DOUBLE, official Python client × 1, {name} | {r} | client-side bound |"),
            None => println!("| insertTablet from the Python client | skipped: no venv (run .ci/run once) | - |"),
        }
    }
    let (p50, p99, direct, rows) = query_bench();
    println!(
        "| 1-hour range ({rows} points) out of 10 M points of one series, through the client RPC | p50 {:.2} ms, p99 {:.2} ms | < 50 ms |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "| the same range read in the store (no RPC) | p50 {:.3} ms | - |",
        direct.as_secs_f64() * 1e3
    );
}
