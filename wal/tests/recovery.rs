//! Crash recovery and corruption: damage real files, reopen, and check
//! exactly which records survive.

mod util;

use std::path::Path;
use std::time::Duration;

use util::{assert_prefix, fill, read_all, small};
use wal::{Config, Error, Log, RecoveryMode};

const SEG: u64 = 1 << 16;

fn cfg(mode: RecoveryMode) -> Config {
    Config {
        recovery_mode: mode,
        ..small(SEG)
    }
}

/// Byte ranges `[start, end)` of each batch in a single-segment log written
/// by `fill` (one record per batch).
fn batch_ranges(n: u64) -> Vec<(u64, u64)> {
    let mut at = 16;
    (0..n)
        .map(|o| {
            let len = 32 + 5 + util::payload(o).len() as u64;
            at += len;
            (at - len, at)
        })
        .collect()
}

/// A log of `n` records in one segment, stopped uncleanly with its
/// recovery point at the start: recovery verifies all of it.
fn crashed_log(dir: &Path, n: u64) {
    let log = Log::open(dir, cfg(RecoveryMode::TolerateTailCorruption)).unwrap();
    fill(&log, 0, n);
    log.abandon();
}

fn records_kept(dir: &Path, mode: RecoveryMode) -> Result<u64, Error> {
    let log = Log::open(dir, cfg(mode))?;
    let (recs, err) = read_all(&log);
    assert!(err.is_none(), "reads after recovery are clean: {err:?}");
    for (i, (o, _, p)) in recs.iter().enumerate() {
        assert_eq!(*o, i as u64);
        assert_eq!(p, &util::payload(*o));
    }
    Ok(recs.len() as u64)
}

#[test]
fn truncation_at_every_byte_keeps_exactly_the_whole_batches() {
    let n = 6;
    let ranges = batch_ranges(n);
    let (first, end) = (ranges[n as usize - 3].0, ranges[n as usize - 1].1);
    for cut in first..=end {
        let dir = tempfile::tempdir().unwrap();
        crashed_log(dir.path(), n);
        let seg = util::last_segment(dir.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let want = ranges.iter().filter(|r| r.1 <= cut).count() as u64;
        assert_eq!(
            records_kept(dir.path(), RecoveryMode::TolerateTailCorruption).unwrap(),
            want,
            "cut at {cut}"
        );
        // The log goes on from there, and a second reopen is stable.
        let log = Log::open(dir.path(), cfg(RecoveryMode::TolerateTailCorruption)).unwrap();
        fill(&log, want, want + 2);
        log.close().unwrap();
        drop(log);
        assert_eq!(
            records_kept(dir.path(), RecoveryMode::TolerateTailCorruption).unwrap(),
            want + 2
        );
    }
}

#[test]
fn zeroing_the_tail_at_every_byte_keeps_exactly_the_whole_batches() {
    // A crash with a preallocated file leaves zeros, not a short file.
    let n = 4;
    let ranges = batch_ranges(n);
    let (first, end) = (ranges[n as usize - 1].0, ranges[n as usize - 1].1);
    for cut in first..end {
        let dir = tempfile::tempdir().unwrap();
        crashed_log(dir.path(), n);
        let seg = util::last_segment(dir.path());
        let mut b = std::fs::read(&seg).unwrap();
        b[cut as usize..end as usize].fill(0);
        std::fs::write(&seg, &b).unwrap();
        assert_eq!(
            records_kept(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap(),
            n - 1,
            "zeroed from {cut}"
        );
    }
}

#[test]
fn torn_tail_inside_durable_data_depends_on_the_mode() {
    let n = 5;
    let ranges = batch_ranges(n);
    let make = |dir: &Path| {
        let log = Log::open(dir, cfg(RecoveryMode::TolerateTailCorruption)).unwrap();
        fill(&log, 0, n);
        log.close().unwrap(); // clean: all of it is recorded durable
        drop(log);
        let seg = util::last_segment(dir);
        std::fs::OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(ranges[3].0 + 10)
            .unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let e = records_kept(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("offset 3") && msg.contains("tolerate-tail-corruption"),
        "{msg}"
    );
    assert_eq!(
        records_kept(dir.path(), RecoveryMode::TolerateTailCorruption).unwrap(),
        3
    );
}

#[test]
fn bit_flips_before_the_tail_are_refused_or_truncated_never_skipped() {
    let n = 8;
    let ranges = batch_ranges(n);
    for victim in [1usize, 4, 6] {
        let (s, e) = ranges[victim];
        for pos in [s, s + 4, s + 9, s + 20, s + 29, s + 33, e - 1] {
            let dir = tempfile::tempdir().unwrap();
            crashed_log(dir.path(), n);
            let seg = util::last_segment(dir.path());
            let mut b = std::fs::read(&seg).unwrap();
            b[pos as usize] ^= 0x08;
            std::fs::write(&seg, &b).unwrap();
            // Default mode: intact records follow, so this is not a torn tail.
            let err = records_kept(dir.path(), RecoveryMode::TolerateTailCorruption).unwrap_err();
            let msg = err.to_string();
            assert!(err.is_corruption(), "{msg}");
            assert!(
                msg.contains(&format!("offset {victim}")),
                "names the offset: {msg}"
            );
            assert!(
                msg.contains(&format!("byte {s}")),
                "names the position: {msg}"
            );
            assert!(
                msg.contains("tolerate-any-corruption"),
                "says what to do: {msg}"
            );
            // Tolerating any corruption keeps exactly the records before it.
            assert_eq!(
                records_kept(dir.path(), RecoveryMode::TolerateAnyCorruption).unwrap(),
                victim as u64
            );
        }
    }
}

#[test]
fn bit_flip_in_the_last_record_is_a_torn_tail() {
    let n = 5;
    let ranges = batch_ranges(n);
    let (s, e) = ranges[4];
    for pos in s..e {
        let dir = tempfile::tempdir().unwrap();
        crashed_log(dir.path(), n);
        let seg = util::last_segment(dir.path());
        let mut b = std::fs::read(&seg).unwrap();
        b[pos as usize] ^= 0x01;
        std::fs::write(&seg, &b).unwrap();
        assert_eq!(
            records_kept(dir.path(), RecoveryMode::TolerateTailCorruption).unwrap(),
            4,
            "flip at {pos}"
        );
    }
}

#[test]
fn unclean_reopen_verifies_only_past_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config {
        checkpoint_interval: Duration::from_millis(1),
        ..cfg(RecoveryMode::TolerateTailCorruption)
    };
    let log = Log::open(dir.path(), c.clone()).unwrap();
    fill(&log, 0, 5);
    std::thread::sleep(Duration::from_millis(5));
    log.sync().unwrap(); // durable and checkpointed at offset 5
    fill(&log, 5, 8);
    log.abandon();
    let ranges = batch_ranges(8);
    let seg = util::last_segment(dir.path());
    let mut b = std::fs::read(&seg).unwrap();
    b[ranges[2].0 as usize + 40] ^= 0x10; // payload byte before the recovery point
    b[ranges[7].0 as usize + 40] ^= 0x10; // payload byte of the last record, after it
    std::fs::write(&seg, &b).unwrap();
    let log = Log::open(dir.path(), c).unwrap();
    // The flip past the recovery point was found (torn tail, truncated);
    // the one before it was not scanned and is reported when read.
    assert_eq!(log.end_offset(), 7);
    let (recs, err) = read_all(&log);
    assert_eq!(recs.len(), 2);
    let err = err.unwrap();
    assert!(
        err.is_corruption() && err.to_string().contains("offset 2"),
        "{err}"
    );
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt() {
    for damage in [
        "delete-index",
        "delete-timeindex",
        "flip-index",
        "truncate-timeindex",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = small(4096);
        let log = Log::open(dir.path(), c.clone()).unwrap();
        fill(&log, 0, 300);
        let probes: Vec<i64> = log
            .segments()
            .iter()
            .filter_map(|s| s.last_arrival_us)
            .collect();
        let want: Vec<u64> = probes
            .iter()
            .map(|&t| log.offset_for_time(t).unwrap())
            .collect();
        log.close().unwrap();
        drop(log);
        let ix = dir.path().join("00000000000000000000.index");
        let tix = dir.path().join("00000000000000000000.timeindex");
        match damage {
            "delete-index" => std::fs::remove_file(&ix).unwrap(),
            "delete-timeindex" => std::fs::remove_file(&tix).unwrap(),
            "flip-index" => {
                let mut b = std::fs::read(&ix).unwrap();
                let last = b.len() - 1;
                b[last] ^= 1;
                std::fs::write(&ix, b).unwrap();
            }
            _ => {
                let b = std::fs::read(&tix).unwrap();
                std::fs::write(&tix, &b[..b.len() - 3]).unwrap();
            }
        }
        let log = Log::open(dir.path(), c.clone()).unwrap();
        assert_prefix(&log, 300);
        let got: Vec<u64> = probes
            .iter()
            .map(|&t| log.offset_for_time(t).unwrap())
            .collect();
        assert_eq!(got, want, "{damage}");
        log.close().unwrap();
        drop(log);
        assert!(ix.exists() && tix.exists(), "{damage}: rewritten");
    }
}

#[test]
fn damage_in_a_sealed_segment_with_intact_index_is_found_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    fill(&log, 0, 100);
    log.close().unwrap();
    drop(log);
    let first = dir.path().join("00000000000000000000.log");
    let mut b = std::fs::read(&first).unwrap();
    b[200] ^= 0xff;
    std::fs::write(&first, b).unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    let (recs, err) = read_all(&log);
    assert!(err.unwrap().is_corruption());
    assert!(recs.len() < 10);
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    fill(&log, 0, 200);
    let segs = log.segments();
    assert!(segs.len() >= 4);
    log.close().unwrap();
    drop(log);
    let victim = segs[1].base_offset;
    std::fs::remove_file(dir.path().join(format!("{victim:020}.log"))).unwrap();
    let e = Log::open(dir.path(), small(4096)).unwrap_err();
    assert!(
        e.is_corruption() && e.to_string().contains("previous one ends at"),
        "{e}"
    );
    let log = Log::open(
        dir.path(),
        Config {
            recovery_mode: RecoveryMode::TolerateAnyCorruption,
            ..small(4096)
        },
    )
    .unwrap();
    assert_prefix(&log, victim);
}

fn floor_cfg(floor: u64) -> Config {
    Config {
        recovery_floor: Some(floor),
        ..small(4096)
    }
}

fn seg_path(dir: &Path, base: u64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Issue 7, finding 4: a segment cut short below the recovery floor (what
/// the store has checkpointed) no longer stops an open; the caller fills
/// the gap, keeping offsets dense, and the loss is recorded for the other
/// consumers.
#[test]
fn a_truncated_segment_below_the_floor_opens_and_the_gap_is_filled() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    log.register_consumer("store", 0).unwrap();
    log.register_consumer("pipe/p", 0).unwrap();
    fill(&log, 0, 200);
    log.commit("store", 200).unwrap();
    let last = log.segments().last().unwrap().clone();
    log.close().unwrap();
    drop(log);
    // Cut the last segment in the middle of its data.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), last.base_offset))
        .unwrap();
    f.set_len(last.data_bytes / 2).unwrap();
    drop(f);
    // Without the floor: the tail that was durable is truncated (the default
    // tolerates a torn tail) and the log ends below 200.
    let log = Log::open(dir.path(), floor_cfg(200)).unwrap();
    let end = log.end_offset();
    assert!(end < 200 && end > last.base_offset, "end {end}");
    log.fill_gap(200, 0, "store").unwrap();
    assert_eq!(log.end_offset(), 200);
    assert_eq!(log.committed("store"), Some(200));
    let pipe = log
        .consumers()
        .into_iter()
        .find(|c| c.name == "pipe/p")
        .unwrap();
    assert_eq!(pipe.state.lost, vec![(end, 200)]);
    let (recs, err) = read_all(&log);
    assert!(err.is_none());
    assert_eq!(recs.len(), 200);
    assert!(recs[end as usize..]
        .iter()
        .all(|(_, k, p)| *k == 0 && p.is_empty()));
    assert_eq!(log.append(1, b"after").unwrap(), 200);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), floor_cfg(200)).unwrap();
    assert_eq!(log.end_offset(), 201);
}

/// Damage before the tail, in a segment wholly below the floor: the open
/// drops it and every segment before it, and goes on; at or past the
/// floor the same damage is refused with the way out named.
#[test]
fn damage_below_the_floor_never_refuses_an_open() {
    let setup = || {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small(4096)).unwrap();
        log.register_consumer("pipe/p", 0).unwrap();
        fill(&log, 0, 300);
        let segs = log.segments();
        assert!(segs.len() >= 5);
        log.abandon();
        // No recovery point: the open verifies every segment.
        std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
        let p = seg_path(dir.path(), segs[1].base_offset);
        let mut b = std::fs::read(&p).unwrap();
        b[100] ^= 0x40;
        std::fs::write(&p, b).unwrap();
        (dir, segs)
    };
    let (dir, segs) = setup();
    let e = Log::open(dir.path(), small(4096)).unwrap_err();
    assert!(
        e.to_string().contains("tolerate-any-corruption"),
        "names the way out: {e}"
    );
    let e = Log::open(dir.path(), floor_cfg(segs[2].base_offset - 1)).unwrap_err();
    assert!(e.is_corruption(), "past the floor it is refused: {e}");
    let log = Log::open(dir.path(), floor_cfg(segs[2].base_offset)).unwrap();
    assert_eq!(log.log_start(), segs[2].base_offset);
    assert_eq!(log.end_offset(), 300);
    let (recs, err) = read_all(&log);
    assert!(err.is_none());
    assert_eq!(recs.first().unwrap().0, segs[2].base_offset);
    assert!(recs.iter().all(|(o, _, p)| *p == util::payload(*o)));
    // The pipe that had not read them knows.
    let pipe = &log.consumers()[0];
    assert_eq!(pipe.state.committed, segs[2].base_offset);
    assert_eq!(pipe.state.lost, vec![(0, segs[2].base_offset)]);
}

/// Records at or past the floor are CRC-checked at every open, even below
/// the recovery point and after a clean close: the caller reads them next,
/// and must hear of damage before it starts.
#[test]
fn the_floor_is_verified_even_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    fill(&log, 0, 100);
    log.close().unwrap();
    drop(log);
    let p = seg_path(dir.path(), 0);
    let mut b = std::fs::read(&p).unwrap();
    let (start, _) = batch_ranges(100)[90];
    b[start as usize + 40] ^= 1;
    std::fs::write(&p, b).unwrap();
    // A clean open trusts the index files and finds nothing.
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    assert_eq!(log.end_offset(), 100);
    log.close().unwrap();
    drop(log);
    let e = Log::open(dir.path(), floor_cfg(50)).unwrap_err();
    assert!(
        e.is_corruption() && e.to_string().contains("offset 90"),
        "{e}"
    );
}

/// A roll that a full disk or a crash cut short left an empty segment
/// file behind while appends went on in the segment before it ("segment
/// starts at 60 but the previous one ends at 61"): it holds no record, so
/// the open deletes it.
#[test]
fn an_empty_segment_left_by_a_failed_roll_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    fill(&log, 0, 60);
    log.close().unwrap();
    drop(log);
    std::fs::write(seg_path(dir.path(), 58), b"").unwrap();
    std::fs::write(seg_path(dir.path(), 70), vec![0u8; 4096]).unwrap();
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    assert_prefix(&log, 60);
    assert!(!seg_path(dir.path(), 58).exists());
    assert!(!seg_path(dir.path(), 70).exists());
    fill(&log, 60, 80);
    assert_prefix(&log, 80);
}
