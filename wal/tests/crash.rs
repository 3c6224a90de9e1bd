//! Kill -9 a real process while it appends with `fsync = always`: every
//! offset it reported appended before the kill is there after reopen, byte
//! for byte.
//!
//! This tests recovery after a *process* crash, not durability: SIGKILL
//! keeps the page cache, so what the process wrote reaches the disk synced
//! or not, and this test passes with every sync removed. Durability (what
//! survives a power cut) is `power_loss.rs`.
//!
//! The writer is this test binary itself, re-run with `--ignored` on
//! `crash_writer` and the log directory in an environment variable.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::payload;
use wal::{Config, FsyncPolicy, Log};

const DIR_ENV: &str = "EDGEPIPE_CRASH_WRITER_DIR";

fn config() -> Config {
    Config {
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::Always,
        ..Config::default()
    }
}

/// The writer: appends forever, printing `durable N` after offset N's
/// append returned (and so is durable).
#[test]
#[ignore = "run by kill9_recovers_every_append_reported as a child process"]
fn crash_writer() {
    let dir = std::env::var(DIR_ENV).expect("run by the crash test");
    let log = Log::open(&dir, config()).unwrap();
    let mut o = log.end_offset();
    loop {
        let last = if o.is_multiple_of(10) {
            let recs: Vec<Vec<u8>> = (o..o + 3).map(payload).collect();
            let refs: Vec<(u8, &[u8])> = recs.iter().map(|p| (7u8, &p[..])).collect();
            assert_eq!(log.append_batch(&refs).unwrap(), o);
            o + 2
        } else {
            assert_eq!(log.append(7, &payload(o)).unwrap(), o);
            o
        };
        println!("durable {last}");
        o = last + 1;
    }
}

#[test]
fn kill9_recovers_every_append_reported() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut reported: u64 = 0;
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let target = 300 + round * 137;
        let mut seen_this_round = 0;
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("durable ") {
                reported = reported.max(n.parse::<u64>().unwrap() + 1);
                seen_this_round += 1;
                if seen_this_round >= target {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "writer too slow"
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            seen_this_round >= target,
            "round {round}: the writer reported {seen_this_round} appends"
        );

        let log = Log::open(dir.path(), config()).unwrap();
        assert!(
            log.end_offset() >= reported,
            "round {round}: {} records after reopen, {reported} were reported durable",
            log.end_offset()
        );
        let mut r = log.reader(0).unwrap();
        let mut o = 0;
        while let Some(b) = r.try_next().unwrap() {
            for rec in b.iter() {
                assert_eq!(rec.offset, o);
                assert_eq!(rec.payload, &payload(o)[..], "offset {o} byte for byte");
                o += 1;
            }
        }
        assert_eq!(o, log.end_offset());
        log.close().unwrap();
    }
}
