//! Replication where IoT data really is (issue 11): small tablets, many
//! devices, realtime lag at a sensor's pace, memory through a backlog, a
//! thin link — and the yardstick, a NATS JetStream mirror catching up on
//! the same data in the same run. Two real `edgepipe server` processes
//! (release build) on loopback; every row prints the CPU steal and the
//! load average of its run.
//!
//! ```text
//! cargo build --release && cargo bench -p benches --bench iot
//! EDGEPIPE_BENCH_ONLY=nats cargo bench -p benches --bench iot     # one shape (a list: nats,devices)
//! EDGEPIPE_BENCH_POINTS=2M cargo bench -p benches --bench iot     # quick: smaller backlogs
//! ```
//!
//! Shapes (`EDGEPIPE_BENCH_ONLY`):
//! - `nats`: one series in 1,000-row single-column tablets (16 kB of
//!   points each), `EDGEPIPE_BENCH_POINTS` points (20 M). NATS: a
//!   file-storage stream on an "edge" nats-server, a mirror on a "cloud"
//!   nats-server joined by a leafnode link, created after the data is in;
//!   catch-up rate and the cloud server's CPU seconds. edgepipe: the same
//!   points, the pipe created after the data is in, fsync off on both
//!   nodes and the default policy; rate and the cloud node's CPU seconds.
//!   Needs Debian's nats-server (`apt-get install nats-server`, 2.9: it
//!   has no fsync option; its file store syncs every two minutes, so it
//!   runs without fsync here). The clocks: NATS until the mirror holds
//!   every message; edgepipe until the cloud answers a query for the
//!   last point ("committed": until SHOW PIPE shows nothing remaining).
//! - `small`: the edgepipe half of `nats` alone (for profiling).
//! - `devices`: 1,000 devices × 10-row single-column tablets, backfill.
//! - `lag`: fsync off, 1,000-row tablets at 100/s for
//!   `EDGEPIPE_BENCH_SECONDS` (10): edge acknowledgement → queryable on
//!   the cloud.
//! - `memory`: VmRSS / VmHWM / RssAnon / RssFile of both nodes sampled
//!   through a backlog of `EDGEPIPE_BENCH_POINTS` (small tablets) and its
//!   backfill, default fsync; `smaps_rollup` at the end.
//! - `thin`: the pipe through a proxy capped at `EDGEPIPE_BENCH_LINK_BPS`
//!   bytes/s (1,250,000 = 10 Mbit/s), machine data (10 devices × 1,000-row
//!   tablets of two readings, a counter and a state),
//!   `EDGEPIPE_BENCH_THIN_POINTS` points (2 M).
//!
//! Other knobs: `EDGEPIPE_BENCH_FSYNC=DISABLE|ASYNC` (one policy),
//! `EDGEPIPE_BENCH_ROUNDS=N` (repeat `nats` N times, alternating),
//! `EDGEPIPE_BENCH_PERF=DIR` (`perf record` both nodes while the pipe
//! runs: `DIR/<shape>-<fsync>-edge.data`, `...-cloud.data`),
//! `EDGEPIPE_BENCH_CONNECTOR="'connector.compressor'='zstd'"` (extra
//! connector attributes), `EDGEPIPE_BENCH_CONFIG="memtable_flush_points=250000"`
//! (extra node properties, `;`-separated), `EDGEPIPE_BENCH_BIN=PATH` (another
//! `edgepipe` build, to compare two), `EDGEPIPE_BENCH_PIPE_FIRST=1` (the
//! backfill's pipe is created, STOPPED, before the fill, so it reads the
//! backlog from the change log instead of a store snapshot),
//! `EDGEPIPE_BENCH_KEEP=1` (keep data,
//! logs and both nodes' `/proc/PID/smaps` at the end).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use benches::cluster::{create_pipe, Profile, Server, TabletWriter};
use benches::nats::{mirror_catch_up, NatsPair, NatsServer};
use benches::sensor::{self, EPOCH_MS, PERIOD_MS};
use benches::sys::{self, env_count, mib, Memory, Run};
use node::client::Session;

/// How a backlog is written: `devices` series, tablets of `rows` rows
/// (one column), `points` in all.
#[derive(Debug, Clone, Copy)]
struct Shape {
    name: &'static str,
    devices: u64,
    rows: u64,
    points: u64,
}

impl Shape {
    fn device(&self, d: u64) -> String {
        format!("root.{}.d{d}", self.name)
    }

    fn tablets(&self) -> u64 {
        self.points / self.rows
    }

    /// The last point written: its device and time.
    fn last(&self) -> (String, i64) {
        let per_device = self.tablets() / self.devices;
        (
            self.device(self.devices - 1),
            EPOCH_MS + (per_device * self.rows - 1) as i64 * PERIOD_MS,
        )
    }

    /// Writes the backlog: round-robin over the devices, each device's
    /// rows in time order, about 1.6 MB per `insertTablets` call. Returns
    /// points/s and the tablets' bytes (as the log stores them).
    fn fill(&self, addr: &str) -> (f64, u64) {
        let per_call = (100_000 / self.rows).max(1) as usize;
        let mut w = TabletWriter::open(addr);
        let t = Instant::now();
        let per_device = self.tablets() / self.devices;
        let mut batch = Vec::with_capacity(per_call);
        let mut bytes = 0;
        for k in 0..per_device {
            for d in 0..self.devices {
                let from = (k * self.rows) as i64;
                let t = sensor::series_tablet(&self.device(d), d, from, self.rows as usize);
                bytes += t.serialize_v12().len() as u64;
                batch.push(t);
                if batch.len() == per_call {
                    w.insert_tablets(&batch);
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            w.insert_tablets(&batch);
        }
        (self.points as f64 / t.elapsed().as_secs_f64(), bytes)
    }
}

/// Both nodes' memory, sampled every 100 ms by a thread, kept per phase.
struct Sampler {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<[[Memory; 2]; 3]>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const IDLE: u8 = 0;
const FILL: u8 = 1;
const PIPE: u8 = 2;

impl Sampler {
    fn start(edge: u32, cloud: u32) -> Sampler {
        let phase = Arc::new(AtomicU8::new(IDLE));
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new([[Memory::default(); 2]; 3]));
        let (p, s, k) = (phase.clone(), stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let ph = p.load(Ordering::Relaxed) as usize;
                let (e, c) = (Memory::of(edge), Memory::of(cloud));
                {
                    let mut k = k.lock().expect("peaks");
                    k[ph][0] = k[ph][0].max(e);
                    k[ph][1] = k[ph][1].max(c);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler {
            phase,
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    fn phase(&self, p: u8) {
        self.phase.store(p, Ordering::Relaxed);
    }

    fn finish(mut self) -> [[Memory; 2]; 3] {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.peaks.lock().expect("peaks")
    }
}

/// What one backfill run measured.
struct Backfill {
    fill_pps: f64,
    /// START PIPE → the last point queryable on the cloud.
    data_secs: f64,
    /// START PIPE → SHOW PIPE shows 0 remaining (committed).
    commit_secs: f64,
    edge_cpu: f64,
    cloud_cpu: f64,
    /// Bytes of tablets in the edge log (record payloads).
    log_bytes: u64,
    run: String,
    /// Peaks per phase (idle, fill, pipe) for edge and cloud.
    memory: [[Memory; 2]; 3],
    /// `smaps_rollup` of edge and cloud at the end.
    smaps: [String; 2],
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

fn finish_dir(tmp: tempfile::TempDir) {
    if std::env::var_os("EDGEPIPE_BENCH_KEEP").is_some() {
        eprintln!("kept {}", tmp.keep().display());
    }
}

fn config(fsync: &str) -> Vec<String> {
    benches::cluster::node_config(fsync)
}

/// Is the point (`device`.s0, `time`) queryable at `s`?
fn present(s: &mut Session, device: &str, time: i64) -> bool {
    s.execute(&format!(
        "select s0 from {device} where time >= {time} and time <= {time}"
    ))
    .ok()
    .flatten()
    .is_some_and(|r| !r.rows.is_empty())
}

fn smaps(pid: u32) -> String {
    let f = |k| mib(sys::smaps_kib(pid, k));
    format!(
        "Rss {:.0}, Anonymous {:.1}, Shared_Clean {:.0}, Private_Clean {:.0}, Private_Dirty {:.0}, Shared_Dirty {:.0} MiB",
        f("Rss"),
        f("Anonymous"),
        f("Shared_Clean"),
        f("Private_Clean"),
        f("Private_Dirty"),
        f("Shared_Dirty")
    )
}

/// Fills the edge with `shape`, then creates and starts the pipe and times
/// it until the cloud holds the last point and until it is committed.
fn backfill(shape: Shape, fsync: &str) -> Backfill {
    let tmp = tempdir("bench-iot");
    let edge = Server::start(&tmp.path().join("edge"), 0, &config(fsync));
    let cloud = Server::start(&tmp.path().join("cloud"), 0, &config(fsync));
    let sampler = Sampler::start(edge.pid(), cloud.pid());
    // With EDGEPIPE_BENCH_PIPE_FIRST=1 the pipe exists (STOPPED) before the
    // fill, so the change log keeps the backlog and the pipe reads it from
    // there; otherwise the node drops checkpointed segments during the fill
    // and the pipe reads its history from a store snapshot.
    let pipe_first =
        std::env::var("EDGEPIPE_BENCH_PIPE_FIRST").is_ok_and(|v| !v.is_empty() && v != "0");
    if pipe_first {
        create_pipe(&edge, "p", &cloud.addr());
    }
    sampler.phase(FILL);
    let (fill_pps, log_bytes) = shape.fill(&edge.addr());
    sampler.phase(PIPE);
    if !pipe_first {
        create_pipe(&edge, "p", &cloud.addr());
    }
    let (last_dev, last_t) = shape.last();
    let mut edge_s = Session::open(&edge.addr(), "root", "root").expect("edge session");
    let mut cloud_s = Session::open(&cloud.addr(), "root", "root").expect("cloud session");
    let tag = format!("{}-{}", shape.name, fsync.to_lowercase());
    let profiles = [
        Profile::start(&format!("{tag}-edge"), edge.pid()),
        Profile::start(&format!("{tag}-cloud"), cloud.pid()),
    ];
    sys::warm_page_cache(tmp.path());
    let (e0, c0) = (sys::cpu_secs(edge.pid()), sys::cpu_secs(cloud.pid()));
    let run = Run::start();
    edge_s.execute("start pipe p").expect("start pipe");
    let t = Instant::now();
    assert!(
        sys::wait_until(Duration::from_secs(3600), Duration::from_millis(5), || {
            present(&mut cloud_s, &last_dev, last_t)
        }),
        "the cloud never got the last point"
    );
    let data_secs = t.elapsed().as_secs_f64();
    assert!(
        sys::wait_until(Duration::from_secs(600), Duration::from_millis(5), || {
            edge_s
                .execute("show pipe p")
                .ok()
                .flatten()
                .is_some_and(|r| {
                    r.rows[0].1[7].as_ref().map(|v| v.to_string()).as_deref() == Some("0")
                })
        }),
        "the pipe never committed everything"
    );
    let commit_secs = t.elapsed().as_secs_f64();
    let run = run.finish();
    let (edge_cpu, cloud_cpu) = (
        sys::cpu_secs(edge.pid()) - e0,
        sys::cpu_secs(cloud.pid()) - c0,
    );
    for p in profiles {
        p.stop();
    }
    let smaps = [smaps(edge.pid()), smaps(cloud.pid())];
    if std::env::var_os("EDGEPIPE_BENCH_KEEP").is_some() {
        // Every mapping's resident pages, for a closer look.
        for (name, pid) in [("edge", edge.pid()), ("cloud", cloud.pid())] {
            let _ = std::fs::copy(
                format!("/proc/{pid}/smaps"),
                tmp.path().join(format!("{name}.smaps")),
            );
        }
    }
    let memory = sampler.finish();
    let got = cloud.exec("count timeseries").expect("count");
    assert_eq!(
        got.rows[0].1[0].as_ref().map(|v| v.to_string()),
        Some(shape.devices.to_string())
    );
    // Every point arrived, not just the last one.
    let counted: u64 = cloud
        .exec(&format!("select count(s0) from root.{}.**", shape.name))
        .expect("count points")
        .rows[0]
        .1
        .iter()
        .map(|v| {
            v.as_ref()
                .map_or(0, |v| v.to_string().parse::<u64>().unwrap_or(0))
        })
        .sum();
    let written = shape.tablets() / shape.devices * shape.devices * shape.rows;
    assert_eq!(counted, written, "points on the cloud");
    drop(edge_s);
    drop(cloud_s);
    edge.stop();
    cloud.stop();
    finish_dir(tmp);
    Backfill {
        fill_pps,
        data_secs,
        commit_secs,
        edge_cpu,
        cloud_cpu,
        log_bytes,
        run,
        memory,
        smaps,
    }
}

fn fsync_name(fsync: &str) -> &'static str {
    if fsync == "DISABLE" {
        "fsync off"
    } else {
        "default fsync (ASYNC)"
    }
}

fn policies() -> Vec<&'static str> {
    let only = std::env::var("EDGEPIPE_BENCH_FSYNC").unwrap_or_default();
    ["DISABLE", "ASYNC"]
        .into_iter()
        .filter(|p| only.is_empty() || only.eq_ignore_ascii_case(p))
        .collect()
}

fn backfill_row(
    what: &str,
    shape: Shape,
    fsync: &str,
    b: &Backfill,
    versus: Option<f64>,
    target: &str,
) {
    let pps = shape.points as f64 / b.data_secs;
    let ratio = versus.map_or(String::new(), |n| format!(" = {:.2}× NATS", pps / n));
    println!(
        "| {what}, {} ({}) | {:.2} M points/s{ratio} ({:.0} k tablets/s; committed: {:.2} M points/s); cloud CPU {:.2} s ({:.0} ns/point), edge CPU {:.2} s, the two nodes busy {:.0} % of 2 cores; fill {:.2} M points/s, tablets {:.0} MB | {target} |",
        fsync_name(fsync),
        b.run,
        pps / 1e6,
        shape.tablets() as f64 / b.data_secs / 1e3,
        shape.points as f64 / b.commit_secs / 1e6,
        b.cloud_cpu,
        b.cloud_cpu * 1e9 / shape.points as f64,
        b.edge_cpu,
        (b.edge_cpu + b.cloud_cpu) * 100.0 / (2.0 * b.data_secs),
        b.fill_pps / 1e6,
        b.log_bytes as f64 / 1e6,
    );
}

/// The yardstick and edgepipe on the same data, in the same run.
fn nats(points: u64) {
    let shape = Shape {
        name: "yard",
        devices: 1,
        rows: 1000,
        points,
    };
    let rounds = env_count("EDGEPIPE_BENCH_ROUNDS", 1);
    for round in 0..rounds {
        let tmp = tempdir("bench-nats");
        let pair = NatsPair::start(tmp.path());
        let run = Run::start();
        let n = shape.tablets();
        let m = mirror_catch_up(
            &pair,
            n,
            (0..n).map(|k| sensor::series_bytes(0, (k * shape.rows) as i64, shape.rows as usize)),
        );
        let nats_pps = points as f64 / m.catch_up_secs;
        println!(
            "| NATS JetStream mirror catch-up over a leafnode, {} M points in {} messages of 16 kB, round {} ({}) | {:.2} M points/s; cloud CPU {:.2} s ({:.0} ns/point), edge CPU {:.2} s; publish {:.2} M points/s, stream {:.0} MB | yardstick |",
            points / 1_000_000,
            n,
            round + 1,
            run.finish(),
            nats_pps / 1e6,
            m.cloud_cpu,
            m.cloud_cpu * 1e9 / points as f64,
            m.edge_cpu,
            m.publish_per_sec * shape.rows as f64 / 1e6,
            m.stream_bytes as f64 / 1e6,
        );
        drop(pair);
        finish_dir(tmp);
        for fsync in policies() {
            let b = backfill(shape, fsync);
            backfill_row(
                &format!(
                    "edgepipe backfill, one series in 1,000-row tablets, {} M points, round {}",
                    points / 1_000_000,
                    round + 1
                ),
                shape,
                fsync,
                &b,
                Some(nats_pps),
                if fsync == "DISABLE" {
                    "≥ 1.5× NATS; cloud CPU/point ≤ NATS"
                } else {
                    "≥ 1× NATS"
                },
            );
        }
    }
}

fn small(points: u64) {
    let shape = Shape {
        name: "yard",
        devices: 1,
        rows: 1000,
        points,
    };
    for fsync in policies() {
        let b = backfill(shape, fsync);
        backfill_row(
            &format!(
                "edgepipe backfill, one series in 1,000-row tablets, {} M points",
                points / 1_000_000
            ),
            shape,
            fsync,
            &b,
            None,
            "-",
        );
    }
}

fn devices(points: u64) {
    let shape = Shape {
        name: "many",
        devices: 1000,
        rows: 10,
        points,
    };
    for fsync in policies() {
        let b = backfill(shape, fsync);
        backfill_row(
            &format!(
                "edgepipe backfill, 1,000 devices × 10-row tablets, {} M points",
                points / 1_000_000
            ),
            shape,
            fsync,
            &b,
            None,
            "≥ 10 M points/s",
        );
    }
}

fn memory(points: u64) {
    let shape = Shape {
        name: "mem",
        devices: 1,
        rows: 1000,
        points,
    };
    let b = backfill(shape, "ASYNC");
    let names = ["edge", "cloud"];
    let phases = ["idle", "backlog written (pipe not yet created)", "backfill"];
    for (ph, what) in phases.iter().enumerate().skip(1) {
        for (n, name) in names.iter().enumerate() {
            println!(
                "| {name} memory, {} M-point backlog in 1,000-row tablets, default fsync: {what} ({}) | peak {} | RSS ≤ 128 MiB, anon ≤ 64 MiB |",
                points / 1_000_000,
                b.run,
                b.memory[ph][n].describe()
            );
        }
    }
    for (n, name) in names.iter().enumerate() {
        println!(
            "| {name} smaps_rollup after the backfill | {} | - |",
            b.smaps[n]
        );
    }
}

fn lag(seconds: u64) {
    let tmp = tempdir("bench-iot-lag");
    let edge = Server::start(&tmp.path().join("edge"), 0, &config("DISABLE"));
    let cloud = Server::start(&tmp.path().join("cloud"), 0, &config("DISABLE"));
    create_pipe(&edge, "p", &cloud.addr());
    edge.exec("start pipe p");
    let pending: Arc<Mutex<std::collections::VecDeque<(i64, Instant)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let run = Run::start();
    let writer = {
        let (addr, pending, done) = (edge.addr(), pending.clone(), done.clone());
        std::thread::spawn(move || {
            let mut s = Session::open(&addr, "root", "root").expect("session");
            let start = Instant::now();
            let mut k = 0i64;
            while start.elapsed() < Duration::from_secs(seconds) {
                let due = start + Duration::from_millis(10 * k as u64);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                let t = sensor::series_tablet("root.lag.d0", 0, k * 1000, 1000);
                s.insert_tablet(&t).expect("insert");
                let last = EPOCH_MS + (k * 1000 + 999) * PERIOD_MS;
                pending
                    .lock()
                    .expect("pending")
                    .push_back((last, Instant::now()));
                k += 1;
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut lags = Vec::new();
    let mut s = Session::open(&cloud.addr(), "root", "root").expect("session");
    loop {
        let next = pending.lock().expect("pending").front().copied();
        let Some((last, acked)) = next else {
            if done.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
            continue;
        };
        if present(&mut s, "root.lag.d0", last) {
            lags.push(acked.elapsed());
            pending.lock().expect("pending").pop_front();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    writer.join().expect("writer");
    let run = run.finish();
    lags.sort();
    let n = lags.len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| realtime lag, fsync off, 1,000-row single-column tablets at 100/s, {n} tablets ({run}) | p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.1} ms | p99 ≤ 3 ms |",
        ms(lags[n / 2]),
        ms(lags[n * 9 / 10]),
        ms(lags[n * 99 / 100]),
        ms(lags[n - 1])
    );
    edge.stop();
    cloud.stop();
    finish_dir(tmp);
}

fn thin(points: u64) {
    let rate = env_count("EDGEPIPE_BENCH_LINK_BPS", 1_250_000);
    let (devices, rows) = (10u64, 1000u64);
    let tablets = points / 4 / rows;
    let tmp = tempdir("bench-iot-thin");
    let edge = Server::start(&tmp.path().join("edge"), 0, &config("ASYNC"));
    let cloud = Server::start(&tmp.path().join("cloud"), 0, &config("ASYNC"));
    let mut w = TabletWriter::open(&edge.addr());
    let mut raw = 0u64;
    for k in 0..tablets / devices {
        let batch: Vec<_> = (0..devices)
            .map(|d| {
                sensor::machine_tablet(
                    &format!("root.thin.d{d}"),
                    d,
                    (k * rows) as i64,
                    rows as usize,
                )
            })
            .collect();
        raw += batch
            .iter()
            .map(|t| t.serialize_v12().len() as u64)
            .sum::<u64>();
        w.insert_tablets(&batch);
    }
    drop(w);
    let proxy = benches::proxy::Throttle::start(cloud.addr(), rate);
    create_pipe(&edge, "p", &proxy.addr());
    let last_t = EPOCH_MS + ((tablets / devices) * rows - 1) as i64 * PERIOD_MS;
    let last_dev = format!("root.thin.d{}", devices - 1);
    let mut cloud_s = Session::open(&cloud.addr(), "root", "root").expect("session");
    let run = Run::start();
    edge.exec("start pipe p");
    let t = Instant::now();
    let query = |s: &mut Session| {
        s.execute(&format!(
            "select energy from {last_dev} where time >= {last_t} and time <= {last_t}"
        ))
        .ok()
        .flatten()
        .is_some_and(|r| !r.rows.is_empty())
    };
    assert!(
        sys::wait_until(Duration::from_secs(3600), Duration::from_millis(20), || {
            query(&mut cloud_s)
        }),
        "the cloud never got the last point"
    );
    let secs = t.elapsed().as_secs_f64();
    let run = run.finish();
    let pts = tablets * rows * 4;
    let wire = proxy.forwarded.load(Ordering::Relaxed);
    let attrs = std::env::var("EDGEPIPE_BENCH_CONNECTOR").unwrap_or_else(|_| "none".into());
    println!(
        "| thin link {:.1} Mbit/s, machine data ({devices} devices × 1,000-row tablets: 2 DOUBLE readings, an INT64 counter, a BOOLEAN), {:.1} M points, extra connector attributes: {attrs} ({run}) | {:.0} k points/s; {:.2} wire bytes/point ({:.2} tablet bytes/point) | ≥ 5× uncompressed |",
        rate as f64 * 8.0 / 1e6,
        pts as f64 / 1e6,
        pts as f64 / secs / 1e3,
        wire as f64 / pts as f64,
        raw as f64 / pts as f64,
    );
    drop(cloud_s);
    drop(proxy);
    edge.stop();
    cloud.stop();
    finish_dir(tmp);
}

fn main() {
    let only = std::env::var("EDGEPIPE_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|o| o.trim() == part);
    let points = env_count("EDGEPIPE_BENCH_POINTS", 20_000_000);
    println!(
        "<!-- {}; {} cores; load {:.1} at the start -->",
        NatsServer::version(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sys::loadavg()
    );
    println!("| measurement (CPU steal and load average of the run) | figure | target |");
    println!("|---|---|---|");
    if run("nats") {
        nats(points);
    }
    if run("small") {
        small(points);
    }
    if run("devices") {
        devices(points);
    }
    if run("lag") {
        lag(env_count("EDGEPIPE_BENCH_SECONDS", 10));
    }
    if run("memory") {
        memory(points);
    }
    if run("thin") {
        thin(env_count("EDGEPIPE_BENCH_THIN_POINTS", 2_000_000));
    }
}
