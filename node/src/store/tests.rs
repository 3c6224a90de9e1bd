//! Store tests: overwrite, delete, flush, restart.

use super::*;
use crate::event::SchemaOp;
use protocol::types::status;
use wal::{Config, FsyncPolicy};

/// A change log in `dir/wal`, fsync off.
pub(super) fn open_log(dir: &FsPath) -> Arc<wal::Log> {
    Arc::new(
        wal::Log::open(
            dir.join("wal"),
            Config {
                fsync: FsyncPolicy::Never,
                ..Config::default()
            },
        )
        .unwrap(),
    )
}

fn open(dir: &FsPath) -> Store {
    Store::open(&dir.join("store"), open_log(dir), StoreConfig::default()).unwrap()
}

fn tablet(device: &str, m: &str, times: Vec<i64>, vals: Vec<f64>) -> Event {
    Event::Tablet(Tablet {
        device: device.into(),
        measurements: vec![m.into()],
        nulls: vec![None],
        columns: vec![Column::Double(vals)],
        times,
        aligned: false,
    })
}

#[test]
fn overwrite_delete_flush_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.write(tablet("root.sg.d", "x", vec![3, 1, 2], vec![3.0, 1.0, 2.0]))
        .unwrap();
    s.flush().unwrap();
    s.write(tablet("root.sg.d", "x", vec![2, 4], vec![20.0, 4.0]))
        .unwrap();
    let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap().unwrap();
    assert_eq!(p.times, vec![1, 2, 3, 4]);
    assert_eq!(p.values, Column::Double(vec![1.0, 20.0, 3.0, 4.0]));
    s.write(Event::Delete {
        patterns: vec!["root.sg.**".into()],
        min: 3,
        max: 4,
    })
    .unwrap();
    let p = s.read("root.sg.d.x", 0, 10).unwrap().unwrap();
    assert_eq!(p.times, vec![1, 2]);
    assert_eq!(s.databases(), vec!["root.sg"]);
    // Type mismatch is refused before logging.
    let end = s.log().end_offset();
    let e = s
        .write(Event::Tablet(Tablet {
            device: "root.sg.d".into(),
            measurements: vec!["x".into()],
            nulls: vec![None],
            columns: vec![Column::Int32(vec![1])],
            times: vec![9],
            aligned: false,
        }))
        .unwrap_err();
    assert_eq!(e.code, status::DATA_TYPE_MISMATCH);
    assert!(
        e.message.contains("data type of root.sg.d.x is not consistent, registered type DOUBLE, inserting type INT32"),
        "{e}"
    );
    assert_eq!(s.log().end_offset(), end);
    drop(s);
    // Restart: the checkpoint + replay give the same answer.
    let s = open(dir.path());
    let p = s.read("root.sg.d.x", 0, 10).unwrap().unwrap();
    assert_eq!(p.times, vec![1, 2]);
    assert_eq!(p.values, Column::Double(vec![1.0, 20.0]));
    s.flush().unwrap();
    // Re-inserting a deleted time after the tombstone shows again.
    s.write(tablet("root.sg.d", "x", vec![3], vec![33.0]))
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let s = open(dir.path());
    let p = s.read("root.sg.d.x", 0, 10).unwrap().unwrap();
    assert_eq!(p.times, vec![1, 2, 3]);
    assert_eq!(p.values, Column::Double(vec![1.0, 20.0, 33.0]));
}

#[test]
fn background_flushes_keep_every_point_visible() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let cfg = StoreConfig {
        flush_points: 100,
        ..StoreConfig::default()
    };
    let s = Store::open(&dir.path().join("store"), log.clone(), cfg.clone()).unwrap();
    // 50 tablets of 30 points: flushes start in the background while
    // writes and reads go on; a delete lands in the middle.
    for i in 0..50i64 {
        s.write(tablet(
            "root.sg.d",
            "x",
            (i * 30..i * 30 + 30).collect(),
            (0..30).map(|k| (i * 30 + k) as f64).collect(),
        ))
        .unwrap();
        if i == 25 {
            s.write(Event::Delete {
                patterns: vec!["root.sg.d.x".into()],
                min: 100,
                max: 199,
            })
            .unwrap();
        }
        let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap().unwrap();
        let want: Vec<i64> = (0..(i + 1) * 30)
            .filter(|t| i < 25 || !(100..=199).contains(t))
            .collect();
        assert_eq!(p.times, want, "after tablet {i}");
    }
    s.flush().unwrap();
    drop(s);
    let s = Store::open(&dir.path().join("store"), log, cfg).unwrap();
    let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap().unwrap();
    assert_eq!(p.times.len(), 1500 - 100);
    assert_eq!(p.values.get(200), protocol::types::Value::Double(300.0));
}

#[test]
fn drop_database_forgets_data_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.write(tablet("root.sg.d", "x", vec![1], vec![1.0]))
        .unwrap();
    s.flush().unwrap();
    s.write(Event::Schema(SchemaOp::DeleteDatabase("root.sg".into())))
        .unwrap();
    assert!(s.read("root.sg.d.x", 0, 10).unwrap().is_none());
    s.write(tablet("root.sg.d", "x", vec![2], vec![2.0]))
        .unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        s.read("root.sg.d.x", 0, 10).unwrap().unwrap().times,
        vec![2]
    );
}

fn times(s: &Store, path: &str) -> Vec<i64> {
    s.read(path, i64::MIN, i64::MAX)
        .unwrap()
        .map(|p| p.times)
        .unwrap_or_default()
}

/// Makes the next flush fail to create its chunk file: a directory where
/// its temporary file goes.
fn block_flush(s: &Store) -> PathBuf {
    let seq = s.inner.read().unwrap().next_seq;
    let p = chunkfile::file_name(&s.dir, seq).with_extension("chunks.tmp");
    std::fs::create_dir(&p).unwrap();
    p
}

/// Issue 7, finding 1 (the "1 row" result): a flush that fails keeps its
/// points; a later flush writes them with the points since; nothing is
/// lost to queries or to a restart, and no restart is needed.
#[test]
fn a_failed_flush_loses_nothing_and_the_next_one_writes_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.write(tablet("root.sg.d", "x", (0..100).collect(), vec![1.0; 100]))
        .unwrap();
    let obstacle = block_flush(&s);
    let e = s.flush().unwrap_err();
    assert!(e.message.contains("chunk"), "{e}");
    assert_eq!(times(&s, "root.sg.d.x"), (0..100).collect::<Vec<_>>());
    // Writes go on; a delete lands on points of the failed flush; a newer
    // write overwrites one of them.
    s.write(tablet(
        "root.sg.d",
        "x",
        (100..150).collect(),
        vec![2.0; 50],
    ))
    .unwrap();
    s.write(Event::Delete {
        patterns: vec!["root.sg.d.x".into()],
        min: 10,
        max: 19,
    })
    .unwrap();
    s.write(tablet("root.sg.d", "x", vec![5], vec![55.0]))
        .unwrap();
    std::fs::remove_dir(&obstacle).unwrap();
    s.flush().unwrap();
    let want: Vec<i64> = (0..150).filter(|t| !(10..=19).contains(t)).collect();
    assert_eq!(times(&s, "root.sg.d.x"), want);
    let p = s.read("root.sg.d.x", 5, 5).unwrap().unwrap();
    assert_eq!(p.values, Column::Double(vec![55.0]));
    assert!(std::fs::read_dir(&s.dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    drop(s);
    let s = open(dir.path());
    assert_eq!(times(&s, "root.sg.d.x"), want);
    let p = s.read("root.sg.d.x", 5, 5).unwrap().unwrap();
    assert_eq!(p.values, Column::Double(vec![55.0]));
}

/// A background flush that fails is retried by itself, writes go on (the
/// log holds them), and past twice the threshold writes are refused with
/// the reason, until a flush succeeds: no restart.
#[test]
fn failed_background_flushes_are_retried_and_writes_resume() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let cfg = StoreConfig {
        flush_points: 100,
        ..StoreConfig::default()
    };
    let s = Store::open(&dir.path().join("store"), log.clone(), cfg.clone()).unwrap();
    let obstacle = block_flush(&s);
    let mut written = 0i64;
    let refused = loop {
        match s.write(tablet(
            "root.sg.d",
            "x",
            (written..written + 30).collect(),
            vec![0.5; 30],
        )) {
            Ok(_) => written += 30,
            Err(e) => break e,
        }
        assert!(written < 10_000, "writes were never refused");
    };
    assert!(
        written >= 200,
        "refused only at twice the threshold: {written}"
    );
    assert!(refused.message.contains("cannot flush"), "{refused}");
    assert_eq!(times(&s, "root.sg.d.x"), (0..written).collect::<Vec<_>>());
    std::fs::remove_dir(&obstacle).unwrap();
    // The retry comes by itself (within its 1 s delay).
    let t0 = std::time::Instant::now();
    loop {
        match s.write(tablet("root.sg.d", "x", vec![written], vec![1.0])) {
            Ok(_) => break,
            Err(_) => {
                assert!(
                    t0.elapsed() < std::time::Duration::from_secs(10),
                    "writes never resumed"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    written += 1;
    s.flush().unwrap();
    drop(s);
    let s = Store::open(&dir.path().join("store"), log, cfg).unwrap();
    assert_eq!(times(&s, "root.sg.d.x"), (0..written).collect::<Vec<_>>());
}

/// A damaged checkpoint falls back to the previous one, and the log
/// (which the store keeps back to it) replays the rest.
#[test]
fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..3 {
        s.write(tablet("root.sg.d", "x", vec![i], vec![i as f64]))
            .unwrap();
        s.flush().unwrap();
    }
    drop(s);
    let ck = dir.path().join("store/checkpoint");
    let mut b = std::fs::read(&ck).unwrap();
    b[5] ^= 0x01;
    std::fs::write(&ck, b).unwrap();
    let s = open(dir.path());
    assert_eq!(times(&s, "root.sg.d.x"), vec![0, 1, 2]);
    // The previous checkpoint named files 1 and 2; file 3, removed as an
    // unfinished flush, keeps its number: the next flush takes 4, so a
    // history snapshot that named file 3 never reads other data under it.
    assert_eq!(s.inner.read().unwrap().next_seq, 4);
    // Both damaged: the log still starts at 0 here, so it rebuilds.
    s.flush().unwrap();
    drop(s);
    // (Added to, not flipped: the damaged checkpoint became checkpoint.prev
    // at the flush, and a second flip would mend it.)
    for f in ["checkpoint", "checkpoint.prev"] {
        let p = dir.path().join("store").join(f);
        let mut b = std::fs::read(&p).unwrap();
        b[5] = b[5].wrapping_add(1);
        std::fs::write(&p, b).unwrap();
    }
    let s = open(dir.path());
    assert_eq!(times(&s, "root.sg.d.x"), vec![0, 1, 2]);
}

/// Issue 7, finding 4, at the store: the log lost records the store had
/// checkpointed (a truncated segment). The store starts, fills the log's
/// gap so offsets stay dense, new writes go after its checkpoint, and a
/// second restart replays nothing twice.
#[test]
fn a_log_that_ends_before_the_checkpoint_is_filled_up_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..50 {
        s.write(tablet("root.sg.d", "x", vec![i], vec![i as f64]))
            .unwrap();
    }
    s.flush().unwrap();
    let applied = s.log().end_offset();
    s.log().close().unwrap();
    drop(s);
    // Cut the segment after its 20th record; drop the index files so the
    // cut is found.
    let wal = dir.path().join("wal");
    for e in std::fs::read_dir(&wal).unwrap() {
        let p = e.unwrap().path();
        if p.extension()
            .is_some_and(|x| x == "index" || x == "timeindex")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let seg = wal.join("00000000000000000000.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    let b = std::fs::read(&seg).unwrap();
    let used = b.iter().rposition(|&x| x != 0).unwrap() as u64;
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(used * 2 / 5).unwrap();
    drop(f);
    assert!(len > used);
    let open_floor = |dir: &FsPath| {
        let floor = recovery_floor(&dir.join("store")).unwrap();
        assert_eq!(floor, Some(applied));
        let log = Arc::new(
            wal::Log::open(
                dir.join("wal"),
                Config {
                    fsync: FsyncPolicy::Never,
                    recovery_floor: floor,
                    ..Config::default()
                },
            )
            .unwrap(),
        );
        Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap()
    };
    let s = open_floor(dir.path());
    assert_eq!(s.log().end_offset(), applied);
    assert_eq!(times(&s, "root.sg.d.x"), (0..50).collect::<Vec<_>>());
    let o = s
        .write(tablet("root.sg.d", "x", vec![50], vec![50.0]))
        .unwrap();
    assert_eq!(o, applied);
    s.log().close().unwrap();
    drop(s);
    let s = open_floor(dir.path());
    assert_eq!(times(&s, "root.sg.d.x"), (0..51).collect::<Vec<_>>());
}

/// Issue 7, finding 3: flipped chunk data is an error naming the file and
/// the series on every read of that series (never a value); other series
/// read fine. A chunk file cut short makes every read an error naming it
/// until it is quarantined; then the node goes on without its points.
#[test]
fn damaged_chunk_files_give_errors_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.write(tablet(
        "root.sg.a",
        "x",
        (0..1000).collect(),
        vec![1.0; 1000],
    ))
    .unwrap();
    s.write(tablet(
        "root.sg.b",
        "y",
        (0..1000).collect(),
        vec![2.0; 1000],
    ))
    .unwrap();
    s.flush().unwrap();
    s.write(tablet("root.sg.b", "y", vec![5000], vec![3.0]))
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let file = dir.path().join("store").join("00000000000000000001.chunks");
    let good = std::fs::read(&file).unwrap();
    // 16 bytes in the middle of root.sg.a.x's values (bytes 8..8008: its
    // regular times are not stored).
    let mut b = good.clone();
    for x in &mut b[4_000..4_016] {
        *x ^= 0x5a;
    }
    std::fs::write(&file, &b).unwrap();
    let s = open(dir.path());
    for _ in 0..2 {
        let e = s.read("root.sg.a.x", 0, 10).unwrap_err();
        assert!(
            e.message.contains("00000000000000000001.chunks") && e.message.contains("root.sg.a.x"),
            "{e}"
        );
    }
    assert_eq!(times(&s, "root.sg.b.y").len(), 1001);
    drop(s);
    // Cut short: every read names it, until quarantined.
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let s = open(dir.path());
    let e = s.read("root.sg.b.y", 0, 10).unwrap_err();
    assert!(
        e.message.contains("00000000000000000001.chunks") && e.message.contains(".damaged"),
        "{e}"
    );
    drop(s);
    std::fs::rename(&file, file.with_extension("chunks.damaged")).unwrap();
    let s = open(dir.path());
    assert_eq!(times(&s, "root.sg.a.x"), Vec::<i64>::new());
    assert_eq!(times(&s, "root.sg.b.y"), vec![5000]);
}

/// What arrived through a pipe is logged with the FROM_PIPE mark (a
/// received tablet's bytes as they came), applied like a local write, and
/// replayed so after a restart.
#[test]
fn received_writes_are_marked_in_the_log_and_replay() {
    use crate::event::{FROM_PIPE, KIND_DELETE, KIND_SCHEMA, KIND_TABLET};
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = Tablet {
        device: "root.sg.d".into(),
        measurements: vec!["x".into()],
        nulls: vec![None],
        columns: vec![Column::Double(vec![1.0, 2.0, 3.0])],
        times: vec![1, 2, 3],
        aligned: false,
    };
    let bytes = t.serialize_v12();
    s.write(tablet("root.sg.d", "x", vec![10], vec![10.0]))
        .unwrap();
    s.write_tablet_bytes(t.clone(), &bytes, Origin::Pipe)
        .unwrap();
    s.write_from(
        Event::Delete {
            patterns: vec!["root.sg.d.x".into()],
            min: 2,
            max: 2,
        },
        Origin::Pipe,
    )
    .unwrap();
    s.write_from(
        Event::Schema(SchemaOp::CreateDatabase("root.other".into())),
        Origin::Pipe,
    )
    .unwrap();
    s.write(tablet("root.sg.e", "x", vec![5], vec![5.0]))
        .unwrap();
    let log = s.log().clone();
    let mut r = log.reader(log.log_start()).unwrap();
    let mut recs = Vec::new();
    while let Ok(Some(b)) = r.try_next() {
        recs.extend(b.iter().map(|x| (x.kind, x.payload.to_vec())));
    }
    let kinds: Vec<u8> = recs.iter().map(|r| r.0).collect();
    // The store's own records (database creation) are local.
    let want_tail = [
        KIND_TABLET,
        KIND_TABLET | FROM_PIPE,
        KIND_DELETE | FROM_PIPE,
        KIND_SCHEMA | FROM_PIPE,
        KIND_TABLET,
    ];
    assert_eq!(&kinds[kinds.len() - 5..], &want_tail, "{kinds:?}");
    // The tablet fast path: the received bytes, as they came.
    assert_eq!(recs[recs.len() - 4].1, bytes);
    let expect = |s: &Store| {
        assert_eq!(times(s, "root.sg.d.x"), vec![1, 3, 10]);
        assert_eq!(times(s, "root.sg.e.x"), vec![5]);
        assert!(s.databases().contains(&"root.other".to_string()));
    };
    expect(&s);
    drop((s, r, log));
    // Replayed from the log (nothing was flushed).
    let s = open(dir.path());
    expect(&s);
}

/// Waits (bounded) until no background flush runs.
fn wait_flushed(s: &Store) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.flush_state.0.lock().unwrap().running {
        assert!(std::time::Instant::now() < deadline, "flush still running");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn memtables_after_a_flush_reuse_the_flushed_ones_vectors() {
    // Big enough for the allocator to map each vector by itself.
    const N: i64 = 80_000;
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let cfg = StoreConfig {
        flush_points: N as usize,
        ..StoreConfig::default()
    };
    let s = Store::open(&dir.path().join("store"), log, cfg).unwrap();
    // A small series' vectors come from the heap and are not kept.
    s.write(tablet("root.sg.small", "x", vec![1, 2], vec![1.0, 2.0]))
        .unwrap();
    s.flush_in_background(N as usize).unwrap();
    wait_flushed(&s);
    assert_eq!(s.inner.read().unwrap().spares.bytes(), 0);
    let write = |i: i64| {
        s.write(tablet(
            "root.sg.d",
            "x",
            (i * N..i * N + N).collect(),
            (0..N).map(|k| k as f64).collect(),
        ))
        .unwrap();
    };
    let vectors = |s: &Store| {
        let inner = s.inner.read().unwrap();
        let m = &inner.series.get("root.sg.d.x").unwrap().mem;
        (m.times.as_ptr() as usize, m.times.capacity(), m.times.len())
    };
    // Each write fills the memtable: it freezes, and a flush runs.
    write(0);
    wait_flushed(&s);
    let flushed = s.inner.read().unwrap().spares.bytes();
    assert_eq!(
        flushed,
        N as usize / 2 * 16,
        "the flush kept its memtable's vectors, up to half a threshold"
    );
    write(1);
    // The new memtable holds the first one's vectors, empty.
    let (_, cap, len) = vectors(&s);
    assert_eq!((cap, len), (N as usize / 2, 0));
    assert_eq!(s.inner.read().unwrap().spares.bytes(), 0);
    // Memtables on kept vectors flush at half the threshold.
    assert_eq!(s.flush_threshold(), N as usize / 2);
    wait_flushed(&s);
    write(2);
    wait_flushed(&s);
    // Writes without a flush fill the kept vectors in place.
    let before = vectors(&s).0;
    s.write(tablet("root.sg.d", "x", vec![10 * N], vec![1.0]))
        .unwrap();
    assert_eq!(vectors(&s).0, before);
    let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap().unwrap();
    assert_eq!(p.times.len(), 3 * N as usize + 1);
    // With no freeze to take them, the spares are freed after a while,
    // and what the memtable holds beyond its one point.
    assert!(s.memtable_bytes() >= 16 * N as u64);
    let deadline = std::time::Instant::now() + flush::SPARES_KEPT * 3;
    while s.inner.read().unwrap().spares.bytes() > 0 {
        assert!(std::time::Instant::now() < deadline, "spares never freed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(vectors(&s).1, 1);
    assert_eq!(s.flush_threshold(), N as usize);
    assert!(s.memtable_bytes() < 1024, "{}", s.memtable_bytes());
    assert_eq!(times(&s, "root.sg.d.x").len(), 3 * N as usize + 1);
}
