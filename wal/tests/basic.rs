//! Appends, reads, rolls, seeks, tailing, durability, consumers, retention
//! and locking, on real files.

mod util;

use std::future::Future;
use std::time::Duration;

use util::{assert_prefix, fill, payload, read_all, small};
use wal::{Config, Error, FsyncPolicy, Log};

#[test]
fn append_read_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(8192)).unwrap();
    fill(&log, 0, 500);
    assert!(
        log.segments().len() > 5,
        "expected several segments, got {:?}",
        log.segments()
    );
    assert_prefix(&log, 500);
    // Segments are dense and ordered.
    let segs = log.segments();
    for w in segs.windows(2) {
        assert_eq!(w[0].next_offset, w[1].base_offset);
        assert!(w[0].sealed, "all but the last segment are sealed");
    }
    assert!(
        !segs.last().unwrap().sealed,
        "the active segment is not sealed"
    );
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small(8192)).unwrap();
    assert_prefix(&log, 500);
    fill(&log, 500, 600);
    assert_prefix(&log, 600);
}

#[test]
fn batch_appends_are_dense() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    let a = log
        .append_batch(&[(1, b"a"), (2, b"b"), (3, b"c")])
        .unwrap();
    let b = log.append(4, b"d").unwrap();
    assert_eq!((a, b), (0, 3));
    let mut r = log.reader(1).unwrap();
    let batch = r.try_next().unwrap().unwrap();
    let got: Vec<_> = batch
        .iter()
        .map(|x| (x.offset, x.kind, x.payload.to_vec()))
        .collect();
    assert_eq!(got, vec![(1, 2, b"b".to_vec()), (2, 3, b"c".to_vec())]);
    assert_eq!(r.try_next().unwrap().unwrap().first_offset(), 3);
    assert!(r.try_next().unwrap().is_none());
    assert!(matches!(
        log.append_batch(&[]),
        Err(Error::InvalidArgument(_))
    ));
}

/// A large batch is written with pwritev; one of more than 1,024 parts
/// (511 records and up) takes more than one call. Both read back intact,
/// and survive a reopen that verifies them.
#[test]
fn large_batches_written_through_the_file_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = || Config {
        fsync: FsyncPolicy::Never,
        ..Config::default()
    };
    let bytes = |i: usize, n: usize| -> Vec<u8> { (0..n).map(|j| (i * 31 + j) as u8).collect() };
    let log = Log::open(dir.path(), config()).unwrap();
    let small_recs: Vec<Vec<u8>> = (0..700).map(|i| bytes(i, 100)).collect();
    let big = bytes(7, 200_000);
    let batch: Vec<(u8, &[u8])> = small_recs.iter().map(|p| (1, &p[..])).collect();
    assert_eq!(log.append_batch(&batch).unwrap(), 0);
    assert_eq!(log.append(2, &big).unwrap(), 700);
    assert_eq!(log.append(3, b"small: copied").unwrap(), 701);
    let mut want: Vec<(u64, u8, Vec<u8>)> = small_recs
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u64, 1, p.clone()))
        .collect();
    want.push((700, 2, big));
    want.push((701, 3, b"small: copied".to_vec()));
    let (got, err) = read_all(&log);
    assert!(err.is_none());
    assert!(got == want, "read back differs");
    log.abandon();
    let log = Log::open(dir.path(), config()).unwrap();
    let (got, err) = read_all(&log);
    assert!(err.is_none());
    assert!(got == want, "read back after the reopen differs");
}

#[test]
fn oversized_record_is_rejected_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(8192)).unwrap();
    let big = vec![7u8; 8192];
    let e = log.append(1, &big).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    let msg = e.to_string();
    assert!(
        msg.contains("more than a segment holds") && msg.contains("segment-bytes"),
        "{msg}"
    );
    // The largest record that fits is accepted, in a fresh segment.
    let max = log.config().max_payload_bytes() as usize;
    log.append(1, b"x").unwrap();
    assert_eq!(log.append(1, &vec![1u8; max]).unwrap(), 1);
    assert_eq!(read_all(&log).0[1].2.len(), max);
}

#[test]
fn seek_by_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    let mut marks = Vec::new();
    for round in 0..6u64 {
        fill(&log, round * 50, round * 50 + 50);
        marks.push(log.segments().last().unwrap().last_arrival_us.unwrap());
        std::thread::sleep(Duration::from_millis(3));
    }
    let (recs, _) = read_all(&log);
    assert_eq!(recs.len(), 300);
    // Reference: arrival time of every offset, from a full read.
    let mut arrivals = Vec::new();
    let mut r = log.reader(0).unwrap();
    while let Some(b) = r.try_next().unwrap() {
        arrivals.extend(b.iter().map(|x| x.arrival_us));
    }
    assert!(
        arrivals.windows(2).all(|w| w[0] <= w[1]),
        "arrival times never decrease"
    );
    for probe in arrivals
        .iter()
        .copied()
        .chain(marks.iter().map(|m| m + 1))
        .chain([i64::MIN, 0])
    {
        let want = arrivals
            .iter()
            .position(|&a| a >= probe)
            .map_or(300, |p| p as u64);
        assert_eq!(log.offset_for_time(probe).unwrap(), want, "time {probe}");
    }
    for o in [0u64, 1, 49, 50, 123, 299, 300] {
        let mut r = log.reader(o).unwrap();
        let first = r
            .try_next()
            .unwrap()
            .map(|b| b.iter().next().unwrap().offset);
        assert_eq!(first, (o < 300).then_some(o));
    }
    assert!(matches!(
        log.reader(301),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailing_readers_wake_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(Log::open(dir.path(), small(4096)).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut r = log.reader(0).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 400 {
                let b = tokio::time::timeout(Duration::from_secs(10), r.next())
                    .await
                    .expect("woken within 10 s")
                    .unwrap();
                seen.extend(b.iter().map(|x| (x.offset, x.payload.to_vec())));
            }
            seen
        }));
    }
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for o in 0..400 {
                log.append(0, &payload(o)).unwrap();
                if o % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    for t in tasks {
        let seen = t.await.unwrap();
        assert_eq!(seen.len(), 400);
        for (i, (o, p)) in seen.into_iter().enumerate() {
            assert_eq!(o, i as u64);
            assert_eq!(p, payload(o));
        }
    }
    writer.join().unwrap();
    // A reader at the end waits: its first poll is pending (no record, no
    // error); then an append wakes it, and later close releases it.
    let mut r = log.reader(400).unwrap();
    let mut next = Box::pin(r.next());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        next.as_mut().poll(&mut cx).is_pending(),
        "a reader at the log end returned instead of waiting"
    );
    log.append(0, &payload(400)).unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("woken by the append")
        .unwrap();
    assert_eq!(b.first_offset(), 400);
    let mut next = Box::pin(r.next());
    assert!(next.as_mut().poll(&mut cx).is_pending());
    log.close().unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("released by close");
    assert!(matches!(res, Err(Error::Closed(_))), "{res:?}");
}

#[test]
fn durability_policies() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path(),
            Config {
                fsync,
                ..small(1 << 16)
            },
        )
        .unwrap();
        let o = log.append(1, b"x").unwrap();
        if fsync == FsyncPolicy::Always {
            assert!(log.durable_offset() > o, "always: durable on return");
        }
        log.wait_durable(o).unwrap();
        if fsync != FsyncPolicy::Never {
            assert!(log.durable_offset() > o);
        }
        assert!(matches!(
            log.wait_durable(o + 5),
            Err(Error::OffsetOutOfRange { .. })
        ));
        log.sync().unwrap();
        assert_eq!(log.durable_offset(), 1);
    }
}

#[tokio::test]
async fn wait_durable_async_returns_after_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        fsync: FsyncPolicy::Interval(Duration::from_millis(5)),
        ..small(1 << 16)
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    let o = log.append_batch(&[(1, b"a"), (1, b"b")]).unwrap();
    tokio::time::timeout(Duration::from_secs(5), log.wait_durable_async(o + 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.durable_offset(), 2);
}

#[test]
fn one_writer_per_directory_and_read_only_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    fill(&log, 0, 100);
    let e = Log::open(dir.path(), small(4096)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "names the holder: {msg}"
    );
    let ro = Log::open_read_only(dir.path()).unwrap();
    assert_prefix(&ro, 100);
    assert!(matches!(ro.append(0, b"x"), Err(Error::Closed(_))));
    drop(ro);
    log.close().unwrap();
    drop(log);
    // The lock is released with the writer.
    Log::open(dir.path(), small(4096)).unwrap();
}

#[test]
fn consumers_commit_durably() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    fill(&log, 0, 10);
    assert_eq!(log.register_consumer("p1", 0).unwrap(), 0);
    assert_eq!(
        log.register_consumer("p2", 100).unwrap(),
        10,
        "clamped to the end"
    );
    log.commit("p1", 7).unwrap();
    assert!(log
        .commit("p1", 11)
        .unwrap_err()
        .to_string()
        .contains("past the log end"));
    assert!(log
        .commit("nobody", 1)
        .unwrap_err()
        .to_string()
        .contains("not registered"));
    assert!(log.register_consumer("", 0).is_err());
    // Crash: committed offsets survive.
    log.abandon();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    assert_eq!(log.committed("p1"), Some(7));
    assert_eq!(log.committed("p2"), Some(10));
    let lag = log.lag(7).unwrap();
    assert_eq!(lag.records, 3);
    assert!(lag.bytes > 0);
    assert!(log.remove_consumer("p2").unwrap());
    assert_eq!(log.consumers().len(), 1);
}

#[test]
fn retention_keeps_what_consumers_need() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        retention_bytes: Some(3 * 4096),
        ..small(4096)
    };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    log.register_consumer("slow", 0).unwrap();
    fill(&log, 0, 400);
    // The consumer at 0 holds everything.
    assert_eq!(log.log_start(), 0);
    assert!(log.enforce_retention().unwrap().is_empty());
    // It moves on: segments wholly below its offset may go, no further.
    log.commit("slow", 200).unwrap();
    let deleted = log.enforce_retention().unwrap();
    assert!(!deleted.is_empty());
    assert!(deleted.iter().all(|d| d.next_offset <= 200 && !d.forced));
    assert!(log.log_start() <= 200);
    assert!(
        log.disk_bytes() > 3 * 4096,
        "kept segments the consumer needs"
    );
    let start = log.log_start();
    let (recs, err) = read_all(&log);
    assert!(err.is_none());
    assert_eq!(recs.first().unwrap().0, start);
    assert!(matches!(log.reader(0), Err(Error::OffsetOutOfRange { .. })));
    // Files are gone from disk and the start survives a reopen.
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_start(), start);
    assert_eq!(log.segments()[0].base_offset, start);
}

#[test]
fn hard_disk_bound_records_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        max_disk_bytes: Some(4 * 4096),
        ..small(4096)
    };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    log.register_consumer("stuck", 0).unwrap();
    fill(&log, 0, 600);
    assert!(
        log.disk_bytes() <= 4 * 4096 + 4096,
        "bounded: {}",
        log.disk_bytes()
    );
    let start = log.log_start();
    assert!(start > 0);
    let c = &log.consumers()[0];
    assert_eq!(c.state.committed, start, "moved to the new log start");
    // The recorded losses are contiguous from 0 to the new start.
    let mut at = 0;
    for &(from, to) in &c.state.lost {
        assert_eq!(from, at);
        at = to;
    }
    assert_eq!(at, start);
    log.abandon();
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.consumers()[0].state.lost.last().unwrap().1, start);
}

#[test]
fn clean_reopen_does_not_scan() {
    // Damage a byte inside the data after a clean close: a reopen that
    // scanned would notice; a clean one trusts the checkpoint and the reader
    // reports the damage when it gets there.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    fill(&log, 0, 50);
    log.close().unwrap();
    drop(log);
    let seg = util::last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let log = Log::open(dir.path(), small(1 << 16)).unwrap();
    assert_eq!(log.end_offset(), 50, "nothing truncated");
    let (recs, err) = read_all(&log);
    // Byte 100 lies in record 1 (record 0 is 37 bytes at byte 16).
    assert_eq!(recs.len(), 1);
    let err = err.expect("corruption reported on read");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("crc mismatch"), "{err}");
}

#[test]
fn arrival_time_persists_as_a_floor() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    fill(&log, 0, 3);
    let t = log.segments()[0].last_arrival_us.unwrap();
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small(4096)).unwrap();
    log.append(0, b"later").unwrap();
    let (_, err) = read_all(&log);
    assert!(err.is_none());
    assert!(log.segments().last().unwrap().last_arrival_us.unwrap() >= t);
}

#[test]
fn read_only_snapshots_while_the_writer_rolls() {
    // Inspection tools open the log read-only while a node appends and
    // rolls; each snapshot must be a readable prefix and nothing may fault.
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(Log::open(dir.path(), small(4096)).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut o = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && o < 20_000 {
                log.append((o % 5) as u8, &payload(o)).unwrap();
                o += 1;
            }
        })
    };
    let mut snapshots = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline && !writer.is_finished() {
        let ro = Log::open_read_only(dir.path()).unwrap();
        let (recs, err) = read_all(&ro);
        assert!(err.is_none(), "snapshot {snapshots}: {err:?}");
        for (i, (o, k, p)) in recs.iter().enumerate() {
            assert_eq!((*o, *k), (i as u64, (i % 5) as u8));
            assert_eq!(p, &payload(*o));
        }
        snapshots += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(snapshots > 5, "took {snapshots} snapshots");
}

#[test]
fn segments_roll_by_age_and_retention_deletes_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        segment_max_age: Duration::from_millis(30),
        retention_age: Some(Duration::from_millis(150)),
        ..small(1 << 16)
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    // Each group is one batch (one arrival time), so a slow machine cannot
    // roll inside a group.
    let group = |from: u64, to: u64| {
        let p: Vec<Vec<u8>> = (from..to).map(payload).collect();
        let recs: Vec<(u8, &[u8])> = (from..to)
            .map(|o| ((o % 5) as u8, &p[(o - from) as usize][..]))
            .collect();
        assert_eq!(log.append_batch(&recs).unwrap(), from);
    };
    group(0, 3);
    std::thread::sleep(Duration::from_millis(40));
    group(3, 6);
    let segs = log.segments();
    assert_eq!(segs.len(), 2, "rolled by age: {segs:?}");
    assert_eq!((segs[0].base_offset, segs[1].base_offset), (0, 3));
    // Nothing is old enough yet.
    assert!(log.enforce_retention().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(160));
    // The sealed first segment aged out; the active one is never deleted.
    let deleted = log.enforce_retention().unwrap();
    let bases: Vec<u64> = deleted.iter().map(|d| d.base_offset).collect();
    assert_eq!(bases, vec![0]);
    assert_eq!(log.log_start(), 3);
    // The next append rolls the aged second segment, and retention at the
    // roll deletes it.
    group(6, 7);
    assert_eq!(log.log_start(), 6);
    assert!(!dir.path().join("00000000000000000000.log").exists());
    assert_prefix_from(&log, 6, 7);
}

fn assert_prefix_from(log: &Log, from: u64, to: u64) {
    let (recs, err) = read_all(log);
    assert!(err.is_none());
    let offsets: Vec<u64> = recs.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (from..to).collect::<Vec<_>>());
}

#[test]
fn a_segment_of_another_format_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(4096)).unwrap();
    fill(&log, 0, 5);
    log.close().unwrap();
    drop(log);
    let seg = util::last_segment(dir.path());
    let mut b = std::fs::read(&seg).unwrap();
    b[8] = 9; // format version 9
    std::fs::write(&seg, &b).unwrap();
    for mode in [
        wal::RecoveryMode::TolerateTailCorruption,
        wal::RecoveryMode::TolerateAnyCorruption,
    ] {
        let e = Log::open(
            dir.path(),
            Config {
                recovery_mode: mode,
                ..small(4096)
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e:?}");
        assert!(e.to_string().contains("segment format version 9"), "{e}");
    }
    assert_eq!(std::fs::read(&seg).unwrap(), b, "left untouched");
}

/// Issue 7, finding 2: retention under load with the node's consumers.
/// The protected consumer (the store) is never passed, whatever the
/// bounds; a stopped pipe pins at most `max_pinned_bytes`, and what it
/// loses is recorded as one contiguous range; past the hard bound with only
/// the store holding the log, the log asks for a checkpoint.
#[test]
fn disk_bounds_spare_the_protected_consumer_and_record_what_a_pipe_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        retention_bytes: Some(0),
        max_pinned_bytes: Some(4 * 4096),
        max_disk_bytes: Some(10 * 4096),
        ..small(4096)
    };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    log.register_consumer("store", 0).unwrap();
    log.set_protected("store", true);
    log.register_consumer("pipe/stopped", 0).unwrap();
    let mut peak = 0;
    for round in 0..40u64 {
        fill(&log, round * 100, (round + 1) * 100);
        // The store checkpoints every round, a little behind the end.
        log.commit("store", round * 100 + 50).unwrap();
        log.enforce_retention().unwrap();
        peak = peak.max(log.disk_bytes());
    }
    assert!(peak <= 10 * 4096, "disk bytes peaked at {peak}");
    // The stopped pipe lost the oldest records, recorded as one range, and
    // was moved to the log start; the store lost nothing.
    let pipe = log
        .consumers()
        .into_iter()
        .find(|c| c.name == "pipe/stopped")
        .unwrap();
    let start = log.log_start();
    assert!(start > 0);
    assert_eq!(pipe.state.lost, vec![(0, start)]);
    assert_eq!(pipe.state.committed, start);
    let store = log
        .consumers()
        .into_iter()
        .find(|c| c.name == "store")
        .unwrap();
    assert!(store.state.lost.is_empty());
    assert!(store.state.committed >= start);
    // Only what is past the store was deleted: the log start never passes it.
    assert!(start <= log.committed("store").unwrap());
    assert!(!log.checkpoint_wanted());

    // The store stops checkpointing: the log grows past the hard bound (it
    // cannot delete what only the store holds) and asks for a checkpoint.
    let held = log.committed("store").unwrap();
    fill(&log, 4000, 5000);
    log.enforce_retention().unwrap();
    assert!(log.log_start() <= held);
    assert!(log.disk_bytes() > 10 * 4096);
    assert!(log.checkpoint_wanted());
    log.commit("store", 5000).unwrap();
    log.enforce_retention().unwrap();
    assert!(log.disk_bytes() <= 10 * 4096, "{}", log.disk_bytes());
    assert!(!log.checkpoint_wanted());
    // The losses survive a restart.
    log.abandon();
    let log = Log::open(dir.path(), cfg).unwrap();
    let pipe = log
        .consumers()
        .into_iter()
        .find(|c| c.name == "pipe/stopped")
        .unwrap();
    assert_eq!(pipe.state.lost.len(), 1);
    assert_eq!(pipe.state.lost[0].0, 0);
}

/// A reader whose records a disk bound deleted moves on to the log start
/// (the loss is in the ledger), and a late commit below the start is
/// clamped to it.
#[test]
fn readers_and_commits_left_behind_by_a_disk_bound_move_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        max_pinned_bytes: Some(4 * 4096),
        ..small(4096)
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.register_consumer("pipe/slow", 0).unwrap();
    fill(&log, 0, 50);
    let mut r = log.reader(0).unwrap();
    let first = r.try_next().unwrap().unwrap();
    assert_eq!(first.first_offset(), 0);
    fill(&log, 50, 600);
    log.enforce_retention().unwrap();
    let start = log.log_start();
    assert!(start > 100);
    // The reader finishes the segment it holds, then jumps to the start.
    let mut seen = vec![0u64];
    while let Some(b) = r.try_next().unwrap() {
        seen.extend(b.iter().map(|x| x.offset));
    }
    let jump = seen.windows(2).position(|w| w[1] != w[0] + 1).unwrap();
    assert_eq!(seen[jump + 1], start);
    assert_eq!(*seen.last().unwrap(), 599);
    // The pipe acknowledges what it read before the jump: clamped.
    log.commit("pipe/slow", seen[jump] + 1).unwrap();
    assert_eq!(log.committed("pipe/slow"), Some(start));
}

/// Issue 7, finding 1, at the log: on a full disk (a 1 MiB tmpfs) a roll
/// cannot preallocate its segment. The append is refused with a disk-full
/// error, no file is left behind (no half-made segment to block the next
/// roll with "File exists"), everything appended before stays readable,
/// appends succeed again once space returns, without a restart, and the
/// log reopens.
#[test]
fn a_full_disk_refuses_appends_and_they_resume_when_space_returns() {
    let Some(fs) = util::tmpfs(1 << 20) else {
        return;
    };
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let dir = fs.path().join("wal");
    let cfg = Config {
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::Always,
        ..Config::default()
    };
    let log = Log::open(&dir, cfg.clone()).unwrap();
    let rec = |o: u64| -> Vec<u8> { (0..1000).map(|i| (o as usize * 7 + i) as u8).collect() };
    let mut n = 0u64;
    let err = loop {
        match log.append(1, &rec(n)) {
            Ok(o) => {
                assert_eq!(o, n);
                n += 1;
            }
            Err(e) => break e,
        }
        assert!(n < 10_000, "the disk never filled");
    };
    assert!(err.is_disk_full(), "{err}");
    assert!(err.to_string().contains("No space left"), "{err}");
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".tmp") || f == &format!("{n:020}.log"))
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");
    // Refused again while the disk is full, and nothing lost.
    assert!(log.append(1, &rec(n)).unwrap_err().is_disk_full());
    let check = |log: &Log, upto: u64| {
        let (recs, e) = read_all(log);
        assert!(e.is_none());
        assert_eq!(recs.len() as u64, upto);
        for (o, _, p) in recs {
            assert_eq!(p, rec(o), "record {o}");
        }
    };
    check(&log, n);
    // Space returns: appends go on in the same process.
    std::fs::remove_file(&ballast).unwrap();
    for o in n..n + 150 {
        assert_eq!(log.append(1, &rec(o)).unwrap(), o);
    }
    check(&log, n + 150);
    log.close().unwrap();
    drop(log);
    let log = Log::open(&dir, cfg).unwrap();
    check(&log, n + 150);
}
