//! Property test: the log against an in-memory model, through random
//! appends, batch appends, rolls, reads by offset and time, consumer
//! commits, retention, clean reopens and crashes that cut the last segment
//! file at a random byte.

mod util;

use proptest::prelude::*;
use wal::{Config, FsyncPolicy, Log};

#[derive(Debug, Clone)]
enum Op {
    /// One record per entry, each its own batch.
    Append(Vec<u16>),
    /// One batch of records.
    Batch(Vec<u16>),
    /// Read everything from a point (fraction of the log, per mille).
    ReadFrom(u16),
    /// Seek by the arrival time of a record (per mille), check the answer.
    SeekTime(u16),
    Commit(usize, u16),
    Retain,
    Sync,
    Reopen,
    /// Crash, then cut the last segment at a fraction (per mille) of its
    /// length, or leave it whole (> 1000).
    Crash(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let sizes = prop::collection::vec(0u16..900, 1..8);
    prop_oneof![
        4 => sizes.prop_map(Op::Append),
        // A batch must fit a 4 KiB segment: 7 × (500 + 5) + 32 bytes at most.
        3 => prop::collection::vec(0u16..500, 1..8).prop_map(Op::Batch),
        2 => (0u16..=1000).prop_map(Op::ReadFrom),
        1 => (0u16..=1000).prop_map(Op::SeekTime),
        2 => (0usize..2, 0u16..=1000).prop_map(|(c, f)| Op::Commit(c, f)),
        1 => Just(Op::Retain),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => (0u16..1400).prop_map(Op::Crash),
    ]
}

struct Model {
    /// `records[o - start]` is offset `o`'s `(kind, payload)`.
    records: Vec<(u8, Vec<u8>)>,
    start: u64,
    committed: [u64; 2],
}

impl Model {
    fn end(&self) -> u64 {
        self.start + self.records.len() as u64
    }
}

const NAMES: [&str; 2] = ["c0", "c1"];

fn config() -> Config {
    Config {
        segment_bytes: 4096,
        fsync: FsyncPolicy::Never,
        index_interval_bytes: 512,
        retention_bytes: Some(4 * 4096),
        checkpoint_interval: std::time::Duration::from_secs(3600),
        // Both append paths: batches from 600 bytes up are written with
        // pwritev, smaller ones copied into the mapping.
        direct_write_bytes: 600,
        ..Config::default()
    }
}

fn payload_of(n: u64, size: u16) -> Vec<u8> {
    (0..size)
        .map(|i| (n as u16).wrapping_mul(7).wrapping_add(i) as u8)
        .collect()
}

/// Reads `[from, end)` and checks it against the model.
fn check_from(log: &Log, m: &Model, from: u64) -> Vec<i64> {
    let mut r = log.reader(from).unwrap();
    let mut o = from;
    let mut arrivals = Vec::new();
    while let Some(b) = r.try_next().unwrap() {
        for rec in b.iter() {
            assert_eq!(rec.offset, o);
            let (k, p) = &m.records[(o - m.start) as usize];
            assert_eq!((rec.kind, rec.payload), (*k, &p[..]), "offset {o}");
            arrivals.push(rec.arrival_us);
            o += 1;
        }
    }
    assert_eq!(o, m.end(), "read to the end");
    assert!(
        arrivals.windows(2).all(|w| w[0] <= w[1]),
        "arrival times never decrease"
    );
    arrivals
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    for n in NAMES {
        log.register_consumer(n, 0).unwrap();
    }
    let mut m = Model {
        records: vec![],
        start: 0,
        committed: [0, 0],
    };
    let mut counter = 0u64;
    for op in ops {
        match op {
            Op::Append(sizes) => {
                for s in sizes {
                    counter += 1;
                    let rec = ((counter % 7) as u8, payload_of(counter, s));
                    assert_eq!(log.append(rec.0, &rec.1).unwrap(), m.end());
                    m.records.push(rec);
                }
            }
            Op::Batch(sizes) => {
                let recs: Vec<(u8, Vec<u8>)> = sizes
                    .iter()
                    .map(|&s| {
                        counter += 1;
                        ((counter % 7) as u8, payload_of(counter, s))
                    })
                    .collect();
                let refs: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
                assert_eq!(log.append_batch(&refs).unwrap(), m.end());
                m.records.extend(recs);
            }
            Op::ReadFrom(f) => {
                let from = m.start + (m.records.len() as u64 * u64::from(f)) / 1000;
                check_from(&log, &m, from);
            }
            Op::SeekTime(f) => {
                let arrivals = check_from(&log, &m, m.start);
                if arrivals.is_empty() {
                    assert_eq!(log.offset_for_time(0).unwrap(), m.end());
                    continue;
                }
                let i = (arrivals.len() - 1) * usize::from(f) / 1000;
                for t in [arrivals[i], arrivals[i] + 1, arrivals[i] - 1] {
                    let want = m.start
                        + arrivals
                            .iter()
                            .position(|&a| a >= t)
                            .unwrap_or(arrivals.len()) as u64;
                    assert_eq!(log.offset_for_time(t).unwrap(), want, "seek time {t}");
                }
            }
            Op::Commit(c, f) => {
                let at = m.start + (m.records.len() as u64 * u64::from(f)) / 1000;
                let at = at.max(m.committed[c]);
                log.commit(NAMES[c], at).unwrap();
                m.committed[c] = at;
            }
            Op::Retain => {
                log.enforce_retention().unwrap();
            }
            Op::Sync => log.sync().unwrap(),
            Op::Reopen => {
                log.close().unwrap();
                drop(log);
                log = Log::open(dir.path(), config()).unwrap();
            }
            Op::Crash(cut) => {
                let durable = log.durable_offset();
                log.abandon();
                let seg = util::last_segment(dir.path());
                let len = std::fs::metadata(&seg).unwrap().len();
                if cut <= 1000 {
                    let at = len * u64::from(cut) / 1000;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&seg)
                        .unwrap()
                        .set_len(at)
                        .unwrap();
                }
                log = Log::open(dir.path(), config()).unwrap();
                let end = log.end_offset();
                assert!(end <= m.end(), "no records appear from nowhere");
                if cut > 1000 {
                    assert_eq!(end, m.end(), "an uncut crash loses nothing");
                }
                // Offsets below the last roll were durable and in earlier,
                // uncut segments.
                let base: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
                assert!(
                    end >= base.min(durable).max(m.start),
                    "sealed segments survive"
                );
                assert!(log.log_start() >= m.start);
                m.records.truncate((end - m.start) as usize);
                for (c, n) in NAMES.iter().enumerate() {
                    m.committed[c] = m.committed[c].min(end);
                    assert_eq!(log.committed(n), Some(m.committed[c]), "consumer {n}");
                }
            }
        }
        // Retention runs at every roll too: follow the log start.
        let start = log.log_start();
        assert!(start >= m.start, "log start never goes back");
        assert!(
            start <= *m.committed.iter().min().unwrap(),
            "retention kept what consumers need"
        );
        m.records.drain(..(start - m.start) as usize);
        m.start = start;
        assert_eq!(log.end_offset(), m.end());
    }
    check_from(&log, &m, m.start);
    for (c, n) in NAMES.iter().enumerate() {
        assert_eq!(log.committed(n), Some(m.committed[c]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..48)) {
        run(ops);
    }
}

/// Found by the property test: a crash cut the only segment to 49 bytes
/// (header intact, first batch torn); the next append had to roll an empty,
/// cut-short segment onto a file name that already existed.
#[test]
fn regression_roll_from_an_empty_cut_short_segment() {
    run(vec![
        Op::Append(vec![197]),
        Op::Crash(12),
        Op::Append(vec![0]),
    ]);
}

/// Found by the property test: after a crash that lost records, the writer
/// kept the old recovery point (claiming the lost records durable), so the
/// next crash refused to open with "data ends before the recovery point".
#[test]
fn regression_recovery_point_after_a_lossy_crash() {
    let big: Vec<u16> = vec![800; 7];
    run(vec![
        Op::Append(big.clone()),
        Op::Append(big.clone()),
        Op::Append(big.clone()),
        Op::Sync,
        Op::Crash(300),
        Op::Append(big),
        Op::Crash(2000),
    ]);
}

/// Found by the property test when, under `never`, writing a sealed
/// segment's index files moved from the roll to the flusher: index files
/// from a clean close (when the segment was active and empty) survived a
/// crash before the flusher ran, and the next clean open trusted them.
#[test]
fn regression_crash_before_sealed_segments_are_flushed() {
    run(vec![
        Op::Reopen,
        Op::Append(vec![513, 664, 737]),
        Op::Batch(vec![245, 103, 53, 84, 485]),
        Op::Append(vec![183, 312, 423]),
        Op::Crash(0),
        Op::Reopen,
    ]);
}
