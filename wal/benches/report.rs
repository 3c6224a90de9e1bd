//! Headline figures of the change log, measured in one run on this machine
//! and printed as a Markdown table for BENCHMARKS.md:
//!
//! ```text
//! cargo bench -p wal --bench report            # full: 1 GiB logs
//! EDGEPIPE_BENCH_GIB=0.25 cargo bench -p wal --bench report   # quicker
//! ```
//!
//! - `dd if=/dev/zero of=FILE bs=1M count=1024 conv=fdatasync`: the disk's
//!   flushed bandwidth, the yardstick.
//! - Batched 1 KiB appends under `interval` (10 ms group commit) until the
//!   last offset is durable, as a ratio of dd (target ≥ 50 %).
//! - 100 B appends without fsync, single and batched (target ≥ 5 M/s).
//! - `always`: batched and single appends.
//! - Tailing read throughput, seek-by-time latency.
//! - Reopen of a 1 GiB log after a clean close (target < 100 ms) and after a
//!   crash (target < 1 s), and with the recovery point lost (full scan).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wal::{Config, FsyncPolicy, Log};

fn gib() -> f64 {
    std::env::var("EDGEPIPE_BENCH_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

struct Row {
    what: String,
    figure: String,
    target: &'static str,
}

fn dd(dir: &Path, mib: u64) -> f64 {
    let file = dir.join("dd.bin");
    let t = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fdatasync"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run dd");
    assert!(status.success());
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(file).unwrap();
    (mib << 20) as f64 / secs
}

fn cfg(fsync: FsyncPolicy) -> Config {
    Config {
        fsync,
        ..Config::default()
    }
}

/// Appends `total` bytes of `size`-byte records in batches of `per_batch`;
/// returns (seconds until the last offset is durable, records).
fn append_run(log: &Log, size: usize, per_batch: usize, total: u64) -> (f64, u64) {
    let payload = vec![0x5au8; size];
    let batch: Vec<(u8, &[u8])> = (0..per_batch).map(|_| (1u8, &payload[..])).collect();
    let n_batches = total / (size * per_batch) as u64;
    let t = Instant::now();
    let mut last = 0;
    for _ in 0..n_batches {
        last = log.append_batch(&batch).unwrap() + per_batch as u64 - 1;
    }
    log.wait_durable(last).unwrap();
    (t.elapsed().as_secs_f64(), n_batches * per_batch as u64)
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.0} MB/s", bytes_per_s / 1e6)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let total = (gib() * (1u64 << 30) as f64) as u64;
    let base = tempfile::Builder::new()
        .prefix("wal-report")
        .tempdir_in(".")
        .unwrap();
    let mut rows = Vec::new();

    let dd_bw = dd(base.path(), total >> 20);
    rows.push(Row {
        what: format!("dd bs=1M count={} conv=fdatasync", total >> 20),
        figure: mb(dd_bw),
        target: "yardstick",
    });

    // Batched 1 KiB under the default interval policy, until durable.
    let dir = base.path().join("interval");
    let log = Log::open(&dir, cfg(FsyncPolicy::default())).unwrap();
    let (secs, n) = append_run(&log, 1024, 64, total);
    let bw = (n * 1024) as f64 / secs;
    rows.push(Row {
        what: "append 1 KiB × 64/batch, interval 10 ms, until durable".into(),
        figure: format!(
            "{} = {:.0} % of dd ({:.2} M rec/s)",
            mb(bw),
            100.0 * bw / dd_bw,
            n as f64 / secs / 1e6
        ),
        target: "≥ 50 % of dd",
    });
    log.close().unwrap();
    drop(log);

    // Tailing read of that log.
    let log = Log::open_read_only(&dir).unwrap();
    let t = Instant::now();
    let mut r = log.reader(0).unwrap();
    let (mut recs, mut bytes) = (0u64, 0u64);
    while let Some(b) = r.try_next().unwrap() {
        recs += b.len() as u64;
        bytes += b.iter().map(|x| x.payload.len() as u64).sum::<u64>();
    }
    let secs = t.elapsed().as_secs_f64();
    rows.push(Row {
        what: "read 1 KiB records (64/batch) from offset 0, CRC checked".into(),
        figure: format!(
            "{} ({:.2} M rec/s)",
            mb(bytes as f64 / secs),
            recs as f64 / secs / 1e6
        ),
        target: "-",
    });

    // Seek by time: random times across the log.
    let segs = log.segments();
    let (t0, t1) = (
        segs[0].first_arrival_us.unwrap(),
        segs.last().unwrap().last_arrival_us.unwrap(),
    );
    let probes = 10_000;
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let t = Instant::now();
    for _ in 0..probes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = t0 + (x % (t1 - t0 + 1) as u64) as i64;
        std::hint::black_box(log.offset_for_time(at).unwrap());
    }
    rows.push(Row {
        what: format!("seek by arrival time ({} segments)", segs.len()),
        figure: format!("{:.1} µs", t.elapsed().as_secs_f64() * 1e6 / probes as f64),
        target: "-",
    });
    drop(log);

    // Clean reopen of the 1 GiB log.
    let t = Instant::now();
    let log = Log::open(&dir, cfg(FsyncPolicy::default())).unwrap();
    let clean = t.elapsed();
    assert_eq!(log.end_offset(), total / 1024);
    rows.push(Row {
        what: format!("reopen {:.2} GiB log after clean close", gib()),
        figure: format!("{:.1} ms", clean.as_secs_f64() * 1e3),
        target: "< 100 ms",
    });
    // Unclean: append the last segment's worth again past the last
    // checkpoint, then crash.
    append_run(&log, 1024, 64, 48 << 20);
    log.abandon();
    let t = Instant::now();
    let log = Log::open(&dir, cfg(FsyncPolicy::default())).unwrap();
    let unclean = t.elapsed();
    rows.push(Row {
        what: format!(
            "reopen {:.2} GiB log after a crash (verifies past the recovery point)",
            gib() + 48.0 / 1024.0
        ),
        figure: format!("{:.1} ms", unclean.as_secs_f64() * 1e3),
        target: "< 1 s",
    });
    log.abandon();
    std::fs::remove_file(dir.join("recovery-point")).unwrap();
    let t = Instant::now();
    let log = Log::open(&dir, cfg(FsyncPolicy::default())).unwrap();
    rows.push(Row {
        what: "reopen after a crash with the recovery point lost (CRC of every batch)".into(),
        figure: format!("{:.1} ms", t.elapsed().as_secs_f64() * 1e3),
        target: "-",
    });
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();

    // 100 B without fsync.
    for per_batch in [1usize, 100] {
        let dir = base.path().join(format!("never-{per_batch}"));
        let log = Log::open(&dir, cfg(FsyncPolicy::Never)).unwrap();
        let n_total = (total / 2).min(2 << 30);
        let (secs, n) = append_run(&log, 100, per_batch, n_total);
        rows.push(Row {
            what: format!("append 100 B × {per_batch}/batch, fsync never"),
            figure: format!(
                "{:.2} M rec/s ({})",
                n as f64 / secs / 1e6,
                mb((n * 100) as f64 / secs)
            ),
            target: "≥ 5 M rec/s",
        });
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // 1 KiB without fsync, and under always.
    for (policy, name, bytes) in [
        (FsyncPolicy::Never, "never", total / 2),
        (FsyncPolicy::Always, "always", 256 << 20),
    ] {
        let dir = base.path().join(name);
        let log = Log::open(&dir, cfg(policy)).unwrap();
        let (secs, n) = append_run(&log, 1024, 64, bytes);
        rows.push(Row {
            what: format!("append 1 KiB × 64/batch, fsync {name}"),
            figure: format!(
                "{} ({:.2} M rec/s)",
                mb((n * 1024) as f64 / secs),
                n as f64 / secs / 1e6
            ),
            target: "-",
        });
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    {
        let dir = base.path().join("always-single");
        let log = Log::open(&dir, cfg(FsyncPolicy::Always)).unwrap();
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(2) {
            log.append(1, &[0u8; 100]).unwrap();
            n += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        rows.push(Row {
            what: "append 100 B single, fsync always (one msync each)".into(),
            figure: format!(
                "{:.0} rec/s, {:.0} µs each",
                n as f64 / secs,
                secs * 1e6 / n as f64
            ),
            target: "-",
        });
    }

    println!("| measurement | figure | target |");
    println!("|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.figure, r.target);
    }
}
