//! TsFile load rate: a file written by the PyPI `tsfile` package (table
//! model, 10 columns, LZ4, TS_2DIFF / GORILLA) read with our reader, as the
//! receiver loads it: `validate()` (every page decoded, the index checked),
//! then `batches()` turned into tablets. Prints a Markdown table.
//!
//! ```text
//! cargo bench -p benches --bench tsfile                                   # 100 M points (~3 minutes)
//! EDGEPIPE_BENCH_TSFILE_POINTS=10000000 cargo bench -p benches --bench tsfile   # quicker
//! ```
//! Needs the venv with `tsfile` (`EDGEPIPE_PYTHON`, or `.venv` as
//! `.ci/run` makes it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use protocol::tsfile::TsFile;

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("EDGEPIPE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    p.exists().then_some(p)
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful either way: run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let points: u64 = std::env::var("EDGEPIPE_BENCH_TSFILE_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    let rows = points.div_ceil(10);
    let Some(py) = python() else {
        println!("tsfile load: skipped: no venv with the tsfile package (run .ci/run once)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.tsfile");
    let t = Instant::now();
    let st = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/write_tsfile.py"))
        .arg(rows.to_string())
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success(), "write_tsfile.py failed");
    let write_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&file).unwrap().len();
    let mb = bytes as f64 / 1e6;
    let rss0 = peak_rss_mib();

    let f = TsFile::open(&file).unwrap();
    let t = Instant::now();
    let s = f.validate().unwrap();
    let validate_s = t.elapsed().as_secs_f64();
    assert_eq!(s.points, rows * 10);

    let t = Instant::now();
    let mut n = 0u64;
    let mut tablets = 0u64;
    for b in f.batches() {
        let tab = b.unwrap().into_tablet();
        n += tab.points() as u64;
        tablets += 1;
    }
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(n, rows * 10);
    let rss = peak_rss_mib();

    println!();
    println!(
        "TsFile load, {} points ({} rows x 10 columns), {:.1} MB file written by PyPI tsfile 2.5.0 in {:.1} s",
        n, rows, mb, write_s
    );
    println!();
    println!("| pass | time | points/s | MB/s (file) |");
    println!("|---|---|---|---|");
    for (name, secs) in [
        ("validate (decode every page, check the index)", validate_s),
        ("load (batches into tablets)", load_s),
        ("both (what a receiver does)", validate_s + load_s),
    ] {
        println!(
            "| {name} | {secs:.2} s | {:.1} M | {:.0} |",
            n as f64 / secs / 1e6,
            mb / secs
        );
    }
    println!();
    println!(
        "peak resident set: {rss:.0} MiB (before reading: {rss0:.0} MiB); {tablets} tablets of up to {} rows",
        n / tablets.max(1) / 10
    );
}
