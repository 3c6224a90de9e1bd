//! Store tests: overwrite, delete, flush, restart.

use super::*;
use crate::event::SchemaOp;
use protocol::types::status;
use wal::{Config, FsyncPolicy};

fn open(dir: &FsPath) -> Store {
    let log = Arc::new(
        wal::Log::open(
            dir.join("wal"),
            Config {
                fsync: FsyncPolicy::Never,
                ..Config::default()
            },
        )
        .unwrap(),
    );
    Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap()
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
    let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap();
    assert_eq!(p.times, vec![1, 2, 3, 4]);
    assert_eq!(p.values, Column::Double(vec![1.0, 20.0, 3.0, 4.0]));
    s.write(Event::Delete {
        patterns: vec!["root.sg.**".into()],
        min: 3,
        max: 4,
    })
    .unwrap();
    let p = s.read("root.sg.d.x", 0, 10).unwrap();
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
        e.message.contains("data type of root.sg.d.x is DOUBLE"),
        "{e}"
    );
    assert_eq!(s.log().end_offset(), end);
    drop(s);
    // Restart: the checkpoint + replay give the same answer.
    let s = open(dir.path());
    let p = s.read("root.sg.d.x", 0, 10).unwrap();
    assert_eq!(p.times, vec![1, 2]);
    assert_eq!(p.values, Column::Double(vec![1.0, 20.0]));
    s.flush().unwrap();
    // Re-inserting a deleted time after the tombstone shows again.
    s.write(tablet("root.sg.d", "x", vec![3], vec![33.0]))
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let s = open(dir.path());
    let p = s.read("root.sg.d.x", 0, 10).unwrap();
    assert_eq!(p.times, vec![1, 2, 3]);
    assert_eq!(p.values, Column::Double(vec![1.0, 20.0, 33.0]));
}

#[test]
fn background_flushes_keep_every_point_visible() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        wal::Log::open(
            dir.path().join("wal"),
            Config {
                fsync: FsyncPolicy::Never,
                ..Config::default()
            },
        )
        .unwrap(),
    );
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
        let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap();
        let want: Vec<i64> = (0..(i + 1) * 30)
            .filter(|t| i < 25 || !(100..=199).contains(t))
            .collect();
        assert_eq!(p.times, want, "after tablet {i}");
    }
    s.flush().unwrap();
    drop(s);
    let s = Store::open(&dir.path().join("store"), log, cfg).unwrap();
    let p = s.read("root.sg.d.x", i64::MIN, i64::MAX).unwrap();
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
    assert!(s.read("root.sg.d.x", 0, 10).is_none());
    s.write(tablet("root.sg.d", "x", vec![2], vec![2.0]))
        .unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.read("root.sg.d.x", 0, 10).unwrap().times, vec![2]);
}
