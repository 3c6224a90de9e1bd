//! End-to-end replication between two real `edgepipe server` processes,
//! printed as a Markdown table:
//!
//! ```text
//! cargo build --release && cargo bench -p benches --bench replication
//! EDGEPIPE_BENCH_POINTS=20000000 cargo bench -p benches --bench replication   # smaller backfill
//! EDGEPIPE_BENCH_CONNECTOR=async EDGEPIPE_BENCH_ONLY=backfill cargo bench -p benches --bench replication
//! EDGEPIPE_BENCH_SHAPE=devices EDGEPIPE_BENCH_CONNECTOR=both EDGEPIPE_BENCH_ONLY=backfill cargo bench -p benches --bench replication
//! EDGEPIPE_BENCH_TLS=off cargo bench -p benches --bench replication   # plain TCP only
//! ```
//!
//! `EDGEPIPE_BENCH_TLS` = `both` (default: every backfill and lag row over
//! plain TCP, then over TLS), `off` (plain TCP only) or `on` (TLS only).
//! Over TLS the cloud serves TLS with a certificate made at the start
//! (`benches::tls`) and the pipe connects with `connector.ssl.*`; the edge's
//! own clients stay on plain TCP, as an edge box's local writers would.
//! `EDGEPIPE_BENCH_CONNECTOR` = `sync` (default: `iotdb-thrift-connector`),
//! `async` (`iotdb-thrift-async-connector`) or `both`;
//! `EDGEPIPE_BENCH_SHAPE` = `large` (default: 8 devices, 5,000-row tablets)
//! or `devices` (1,000 devices, 10-row tablets; 20 M points unless
//! `EDGEPIPE_BENCH_POINTS` says otherwise).
//!
//! - Backfill: the edge holds N points (10 DOUBLE columns) before the pipe
//!   starts (it is created, STOPPED, before they are written, so its
//!   consumer keeps them in the change log); time from START PIPE until the
//!   cloud acknowledged all of it, with both logs at the default fsync
//!   policy and with fsync off. Plain TCP and TLS read the same fill: one
//!   edge, one pipe per link (each to its own cloud), run one after the
//!   other, plain TCP first, each once the nodes are idle again; with the
//!   CPU time the edge and the cloud spent on it (the cost of TLS, less
//!   sensitive than the rate to the machine's other tenants).
//! - Realtime lag at 1 M points/s: a writer sends a 10,000-point tablet to
//!   the edge every 10 ms; another thread polls the cloud for each tablet;
//!   lag = cloud queryable − edge acknowledged.
//! - The edge's resident memory while the cloud is down and a backlog
//!   builds (anonymous memory, i.e. beyond the mapped log and chunk pages).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use benches::cluster::{exec, Server};
use benches::sys::{cpu_secs, free_port, status_kib, Run};
use benches::tls::Pki;
use node::client::Session;
use protocol::tablet::{Column, Tablet};

/// A real server with the fsync policy `fsync` (and the properties of
/// `EDGEPIPE_BENCH_CONFIG`, if set).
fn start_node(dir: &Path, fsync: &str) -> Server {
    Server::start(dir, 0, &benches::cluster::node_config(fsync))
}

/// The edge → cloud link: plain TCP or TLS.
#[derive(Clone, Copy)]
enum Link<'a> {
    Plain,
    Tls(&'a Pki),
}

impl Link<'_> {
    fn name(self) -> &'static str {
        match self {
            Link::Plain => "plain TCP",
            Link::Tls(_) => "TLS",
        }
    }

    /// A cloud node serving this link.
    fn cloud(self, dir: &Path, fsync: &str) -> Server {
        let config = benches::cluster::node_config(fsync);
        match self {
            Link::Plain => Server::start(dir, 0, &config),
            Link::Tls(pki) => pki.start(dir, 0, &config),
        }
    }

    /// The `CREATE PIPE` of pipe `id` towards `cloud` over this link.
    fn create_pipe(self, edge: &Server, id: &str, plugin: &str, cloud: &Server) {
        let ssl = match self {
            Link::Plain => String::new(),
            Link::Tls(pki) => pki.connector_attrs(),
        };
        edge.exec(&format!("create pipe {id} WITH CONNECTOR ('connector'='{plugin}', 'connector.ip'='127.0.0.1', 'connector.port'='{}'{ssl})", cloud.port));
    }
}

fn tablet(device: &str, from: i64, rows: i64, cols: usize) -> Tablet {
    Tablet {
        device: device.into(),
        measurements: (0..cols).map(|c| format!("s{c}")).collect(),
        columns: (0..cols)
            .map(|c| Column::Double((from..from + rows).map(|i| i as f64 + c as f64).collect()))
            .collect(),
        nulls: vec![None; cols],
        times: (from..from + rows).collect(),
        aligned: false,
    }
}

fn remaining(addr: &str) -> u64 {
    exec(addr, "show pipe p").unwrap().rows[0].1[7]
        .as_ref()
        .unwrap()
        .to_string()
        .parse()
        .unwrap()
}

/// One backfill's figures.
struct Backfill {
    /// Points per second.
    points: f64,
    /// Edge-log bytes per second.
    log_bytes: f64,
    /// CPU seconds the edge and the cloud spent while the pipe ran.
    cpu: (f64, f64),
    /// CPU steal and load while the pipe ran.
    machine: String,
}

/// Writes `points` points (10 columns) with 8 concurrent clients: each to
/// its own device in 5,000-row tablets, or (`devices`) each to 125 devices
/// in turn in 10-row tablets.
fn fill(addr: &str, points: u64, devices: bool) {
    let rows = points / 10;
    let per = rows / 8;
    let hs: Vec<_> = (0..8)
        .map(|c| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut s = Session::open(&addr, "root", "root").unwrap();
                if devices {
                    let per_dev = per as i64 / 125;
                    for from in (0..per_dev).step_by(10) {
                        for d in 0..125 {
                            let dev = format!("root.bf.d{}", c * 125 + d);
                            s.insert_tablet(&tablet(&dev, from, 10.min(per_dev - from), 10))
                                .unwrap();
                        }
                    }
                    return;
                }
                let dev = format!("root.bf.d{c}");
                for from in (0..per as i64).step_by(5000) {
                    s.insert_tablet(&tablet(&dev, from, 5000.min(per as i64 - from), 10))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// Backfills `points` from one edge, filled once, over each of `links` in
/// turn (a pipe and a cloud per link): their figures, in order.
fn backfill(
    points: u64,
    fsync: &str,
    plugin: &str,
    devices: bool,
    links: &[Link],
) -> Vec<Backfill> {
    let tmp = tempfile::Builder::new()
        .prefix("bench-repl")
        .tempdir()
        .unwrap();
    let edge = start_node(&tmp.path().join("edge"), fsync);
    let clouds: Vec<Server> = links
        .iter()
        .enumerate()
        .map(|(i, link)| link.cloud(&tmp.path().join(format!("cloud{i}")), fsync))
        .collect();
    // Created (STOPPED) before the fill, so their consumers keep the whole
    // backlog in the change log: the node drops segments the store has
    // checkpointed and no pipe needs, so a pipe created after the fill
    // would find only the tail of it there.
    for (i, (link, cloud)) in links.iter().zip(&clouds).enumerate() {
        link.create_pipe(&edge, &format!("p{i}"), plugin, cloud);
    }
    fill(&edge.addr(), points, devices);
    let log_bytes: u64 = walkdir_size(&tmp.path().join("edge/wal"));
    let mut out = Vec::new();
    for (i, cloud) in clouds.iter().enumerate() {
        let pipe = format!("p{i}");
        // The fill's (or the previous pipe's) flushes are done first: each
        // link gets the machine as quiet as the other tenants leave it.
        settle(edge.pid());
        clouds.iter().for_each(|c| settle(c.pid()));
        let cpu = (cpu_secs(edge.pid()), cpu_secs(cloud.pid()));
        let run = Run::start();
        edge.exec(&format!("start pipe {pipe}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(3600);
        while edge.remaining(&pipe) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "pipe {pipe} did not finish its backfill within an hour"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let secs = run.elapsed().as_secs_f64();
        let machine = run.finish();
        let cpu = (cpu_secs(edge.pid()) - cpu.0, cpu_secs(cloud.pid()) - cpu.1);
        let got = cloud.exec("count timeseries").unwrap();
        let series = if devices { "10000" } else { "80" };
        assert_eq!(got.rows[0].1[0].as_ref().unwrap().to_string(), series);
        let count = |s: &Server| s.exec("select count(s0) from root.bf.d0").map(|r| r.rows);
        assert_eq!(count(cloud), count(&edge), "the cloud got all of it");
        out.push(Backfill {
            points: points as f64 / secs,
            log_bytes: log_bytes as f64 / secs,
            cpu,
            machine,
        });
    }
    edge.stop();
    for c in clouds {
        c.stop();
    }
    out
}

/// Waits (up to 10 s) until process `pid` is idle: under 5 % of a core
/// over 200 ms.
fn settle(pid: u32) {
    for _ in 0..50 {
        let before = cpu_secs(pid);
        std::thread::sleep(Duration::from_millis(200));
        if cpu_secs(pid) - before < 0.01 {
            return;
        }
    }
}

fn walkdir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

fn realtime_lag(
    fsync: &str,
    seconds: u64,
    plugin: &str,
    link: Link,
) -> (Duration, Duration, usize) {
    let tmp = tempfile::Builder::new()
        .prefix("bench-lag")
        .tempdir()
        .unwrap();
    let edge = start_node(&tmp.path().join("edge"), fsync);
    let cloud = link.cloud(&tmp.path().join("cloud"), fsync);
    link.create_pipe(&edge, "p", plugin, &cloud);
    exec(&edge.addr(), "start pipe p");
    let pending: Arc<Mutex<VecDeque<(i64, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (addr, pending, done) = (edge.addr(), pending.clone(), done.clone());
        std::thread::spawn(move || {
            let mut s = Session::open(&addr, "root", "root").unwrap();
            let start = Instant::now();
            let mut k = 0i64;
            while start.elapsed() < Duration::from_secs(seconds) {
                let due = start + Duration::from_millis(10 * k as u64);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                // 1,000 rows × 10 columns = 10,000 points every 10 ms.
                s.insert_tablet(&tablet("root.lag.d", k * 1000, 1000, 10))
                    .unwrap();
                pending
                    .lock()
                    .unwrap()
                    .push_back((k * 1000, Instant::now()));
                k += 1;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut lags = Vec::new();
    let mut s = Session::open_with(&cloud.addr(), "root", "root", cloud.tls.as_ref()).unwrap();
    loop {
        let next = pending.lock().unwrap().front().copied();
        let Some((t, acked)) = next else {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
            continue;
        };
        // The tablet is queryable when its last row is.
        let last = t + 999;
        let present = s
            .execute(&format!(
                "select s9 from root.lag.d where time >= {last} and time <= {last}"
            ))
            .ok()
            .flatten()
            .is_some_and(|r| !r.rows.is_empty());
        if present {
            lags.push(acked.elapsed());
            if std::env::var_os("EDGEPIPE_BENCH_TRACE").is_some()
                && acked.elapsed() > Duration::from_millis(3)
            {
                eprintln!(
                    "tablet {} at {:.3}s: lag {:.1} ms",
                    t / 1000,
                    t as f64 / 1e5,
                    acked.elapsed().as_secs_f64() * 1e3
                );
            }
            pending.lock().unwrap().pop_front();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    writer.join().unwrap();
    lags.sort();
    let n = lags.len();
    edge.stop();
    cloud.stop();
    if std::env::var_os("EDGEPIPE_BENCH_TRACE").is_some() {
        eprintln!("server logs kept in {}", tmp.keep().display());
    }
    (lags[n / 2], lags[n * 99 / 100], n)
}

/// Returns idle and peak anonymous RSS (KiB), the backlog (events) and the
/// write rate (points/s) reached by one client writing as fast as it can.
fn outage_rss(seconds: u64) -> (u64, u64, u64, u64) {
    let tmp = tempfile::Builder::new()
        .prefix("bench-rss")
        .tempdir()
        .unwrap();
    let edge = start_node(&tmp.path().join("edge"), "ASYNC");
    let dead = free_port();
    exec(&edge.addr(), &format!("create pipe p WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{dead}')"));
    exec(&edge.addr(), "start pipe p");
    let idle = status_kib(edge.pid(), "RssAnon");
    let mut s = Session::open(&edge.addr(), "root", "root").unwrap();
    let start = Instant::now();
    let mut k = 0i64;
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        s.insert_tablet(&tablet("root.out.d", k * 1000, 1000, 10))
            .unwrap();
        k += 1;
        if k % 50 == 0 {
            peak = peak.max(status_kib(edge.pid(), "RssAnon"));
        }
    }
    let backlog = remaining(&edge.addr());
    edge.stop();
    (idle, peak, backlog, k as u64 * 10_000 / seconds)
}

fn main() {
    let devices = std::env::var("EDGEPIPE_BENCH_SHAPE").is_ok_and(|s| s == "devices");
    let points: u64 = std::env::var("EDGEPIPE_BENCH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if devices { 20_000_000 } else { 100_000_000 });
    let plugins: &[&str] = match std::env::var("EDGEPIPE_BENCH_CONNECTOR").as_deref() {
        Ok("async") => &["iotdb-thrift-async-connector"],
        Ok("both") => &["iotdb-thrift-connector", "iotdb-thrift-async-connector"],
        _ => &["iotdb-thrift-connector"],
    };
    let shape = if devices {
        "1,000 devices × 10-row tablets"
    } else {
        "8 devices × 5,000-row tablets"
    };
    // EDGEPIPE_BENCH_ONLY=backfill|lag|rss runs one part.
    let only = std::env::var("EDGEPIPE_BENCH_ONLY").unwrap_or_default();
    // EDGEPIPE_BENCH_TLS=both|off|on: the links each row runs over.
    let pki = Pki::new();
    let links: &[Link] = match std::env::var("EDGEPIPE_BENCH_TLS").as_deref() {
        Ok("off") => &[Link::Plain],
        Ok("on") => &[Link::Tls(&pki)],
        Ok("both") | Err(_) => &[Link::Plain, Link::Tls(&pki)],
        Ok(other) => panic!("EDGEPIPE_BENCH_TLS={other}: expected both, off or on"),
    };
    let run = |part: &str| only.is_empty() || only == part;
    // EDGEPIPE_BENCH_FSYNC=ASYNC|DISABLE runs one fsync policy.
    let policy = std::env::var("EDGEPIPE_BENCH_FSYNC").unwrap_or_default();
    let with = |fsync: &str| policy.is_empty() || policy == fsync;
    println!("| measurement | figure | target |");
    println!("|---|---|---|");
    for (fsync, name, target) in [
        (
            "ASYNC",
            "default fsync (10 ms group commit)",
            "≥ 15 M points/s",
        ),
        ("DISABLE", "fsync off", "≥ 27 M points/s"),
    ] {
        if !run("backfill") {
            break;
        }
        if !with(fsync) {
            continue;
        }
        for plugin in plugins {
            let target = if devices { "≥ 10 M points/s" } else { target };
            let runs = backfill(points, fsync, plugin, devices, links);
            for (link, b) in links.iter().zip(&runs) {
                // Over TLS: its share of the plain TCP figure of the same fill.
                let share = match (link, &runs[..]) {
                    (Link::Tls(_), [plain, _]) => {
                        format!("; {:.0} % of plain TCP", 100.0 * b.points / plain.points)
                    }
                    _ => String::new(),
                };
                println!("| backfill {}M points edge → cloud, {shape}, {plugin}, {}, {name} ({}) | {:.2} M points/s ({:.0} MB/s of edge log{share}); CPU edge {:.2} s, cloud {:.2} s | {target} |", points / 1_000_000, link.name(), b.machine, b.points / 1e6, b.log_bytes / 1e6, b.cpu.0, b.cpu.1);
            }
        }
    }
    for (fsync, name, target) in [
        ("ASYNC", "default fsync (10 ms group commit)", "p99 ≤ 15 ms"),
        ("DISABLE", "fsync off", "p99 ≤ 3 ms"),
    ] {
        if !run("lag") {
            break;
        }
        if !with(fsync) {
            continue;
        }
        for plugin in plugins {
            for &link in links {
                let run = Run::start();
                let (p50, p99, n) = realtime_lag(fsync, 10, plugin, link);
                println!(
                    "| realtime lag at 1 M points/s (10,000-point tablets every 10 ms), {plugin}, {}, {name}, {n} tablets ({}) | p50 {:.1} ms, p99 {:.1} ms | {target} |",
                    link.name(),
                    run.finish(),
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                );
            }
        }
    }
    if !run("rss") {
        return;
    }
    let (idle, peak, backlog, rate) = outage_rss(30);
    println!(
        "| edge anonymous RSS while the cloud is down 30 s, one client writing flat out ({:.1} M points/s, backlog {backlog} events) | idle {:.1} MiB, peak {:.1} MiB | ≤ 64 MiB |",
        rate as f64 / 1e6,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
