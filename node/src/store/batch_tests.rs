//! [`Store::write_tablets`]: a request's tablets as a few log batches, the
//! same as writing them one by one.

use super::*;
use protocol::types::status;
use wal::{Config, FsyncPolicy};

fn open_with(dir: &FsPath, segment_bytes: u64) -> Store {
    let log = Arc::new(
        wal::Log::open(
            dir.join("wal"),
            Config {
                fsync: FsyncPolicy::Never,
                segment_bytes,
                ..Config::default()
            },
        )
        .unwrap(),
    );
    Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap()
}

fn open(dir: &FsPath) -> Store {
    open_with(dir, wal::DEFAULT_SEGMENT_BYTES)
}

fn tablet(device: &str, m: &str, times: Vec<i64>, col: Column) -> Tablet {
    Tablet {
        device: device.into(),
        measurements: vec![m.into()],
        nulls: vec![None],
        columns: vec![col],
        times,
        aligned: false,
    }
}

fn doubles(device: &str, m: &str, from: i64, n: i64) -> Tablet {
    tablet(
        device,
        m,
        (from..from + n).collect(),
        Column::Double((from..from + n).map(|t| t as f64).collect()),
    )
}

fn serialized(ts: &[Tablet]) -> Vec<Vec<u8>> {
    ts.iter().map(Tablet::serialize_v12).collect()
}

fn with_bytes<'a>(ts: &[Tablet], bytes: &'a [Vec<u8>]) -> Vec<(Tablet, &'a [u8])> {
    ts.iter()
        .cloned()
        .zip(bytes.iter().map(|b| &b[..]))
        .collect()
}

/// Every record of the log: (offset, kind, payload), and the number of
/// batches they came in.
fn log_records(s: &Store) -> (Vec<(u64, u8, Vec<u8>)>, usize) {
    let mut r = s.log().reader(s.log().log_start()).unwrap();
    let (mut out, mut batches) = (Vec::new(), 0);
    while let Some(b) = r.try_next().unwrap() {
        batches += 1;
        out.extend(b.iter().map(|x| (x.offset, x.kind, x.payload.to_vec())));
    }
    (out, batches)
}

fn points(s: &Store, path: &str) -> Option<Points> {
    s.read(path, i64::MIN, i64::MAX).unwrap()
}

/// A bad tablet in the middle: the ones before it are logged (as one
/// batch) and applied, it and the ones after are not, and the error is
/// its own, word for word as when written alone.
#[test]
fn a_bad_tablet_in_the_middle_fails_the_request_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ts = vec![
        doubles("root.sg.a", "x", 0, 10),
        doubles("root.sg.b", "x", 0, 10),
        tablet("root.sg.a", "x", vec![50], Column::Int32(vec![1])),
        doubles("root.sg.c", "x", 0, 10),
    ];
    let bytes = serialized(&ts);
    let end = s.log().end_offset();
    let e = s
        .write_tablets(with_bytes(&ts, &bytes), Origin::Pipe)
        .unwrap_err();
    assert_eq!(e.code, status::DATA_TYPE_MISMATCH);
    assert_eq!(
        e.message,
        "data type of root.sg.a.x is not consistent, registered type DOUBLE, inserting type INT32"
    );
    let (records, batches) = log_records(&s);
    assert_eq!(s.log().end_offset(), end + 2);
    assert_eq!(batches, 1, "the two good tablets are one batch");
    assert_eq!(records[0].2, bytes[0]);
    assert_eq!(records[1].2, bytes[1]);
    assert_eq!(points(&s, "root.sg.a.x").unwrap().times.len(), 10);
    assert_eq!(points(&s, "root.sg.b.x").unwrap().times.len(), 10);
    assert!(points(&s, "root.sg.c.x").is_none());
    assert!(s.series_info("root.sg.c.x").is_none());
    // The same error as the tablet written alone.
    let alone = s
        .write_tablet_bytes(ts[2].clone(), &bytes[2], Origin::Pipe)
        .unwrap_err();
    assert_eq!(alone, e);
    // A restart replays the same.
    drop(s);
    let s = open(dir.path());
    assert_eq!(points(&s, "root.sg.b.x").unwrap().times.len(), 10);
    assert!(s.series_info("root.sg.c.x").is_none());
}

/// Two tablets of one request create the same new series: it is created
/// once, with both tablets' points; a second that disagrees with the
/// first's type or alignment is refused as if the first were already
/// written.
#[test]
fn tablets_of_one_request_creating_the_same_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ts = vec![
        doubles("root.new.d", "x", 0, 5),
        doubles("root.new.d", "x", 5, 5),
        doubles("root.new.e", "y", 0, 3),
    ];
    let bytes = serialized(&ts);
    let last = s
        .write_tablets(with_bytes(&ts, &bytes), Origin::Pipe)
        .unwrap();
    assert_eq!(last, Some(s.log().end_offset() - 1));
    assert_eq!(
        points(&s, "root.new.d.x").unwrap().times,
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(s.databases(), vec!["root.new"]);
    assert_eq!(
        s.series_matching(&[crate::sql::parse_path("root.**").unwrap()])
            .len(),
        2
    );

    // New series, then the same series with another type: refused.
    let ts = vec![
        doubles("root.new.f", "z", 0, 5),
        tablet("root.new.f", "z", vec![9], Column::Int64(vec![9])),
    ];
    let bytes = serialized(&ts);
    let e = s
        .write_tablets(with_bytes(&ts, &bytes), Origin::Pipe)
        .unwrap_err();
    assert_eq!(e.code, status::DATA_TYPE_MISMATCH);
    assert!(
        e.message
            .contains("data type of root.new.f.z is not consistent, registered type DOUBLE, inserting type INT64"),
        "{e}"
    );
    assert_eq!(points(&s, "root.new.f.z").unwrap().times.len(), 5);

    // New series, then the same device aligned: refused.
    let mut aligned = doubles("root.new.g", "w", 5, 1);
    aligned.aligned = true;
    let ts = vec![doubles("root.new.g", "w", 0, 5), aligned];
    let bytes = serialized(&ts);
    let e = s
        .write_tablets(with_bytes(&ts, &bytes), Origin::Pipe)
        .unwrap_err();
    assert_eq!(e.code, status::METADATA_ERROR);
    assert_eq!(
        e.message,
        "device root.new.g is not aligned, but this insert is aligned"
    );
}

/// With automatic schema creation off, a request that needs a new series
/// is refused at that tablet, the ones before it written.
#[test]
fn schema_creation_off_refuses_at_the_first_new_series() {
    let dir = tempfile::tempdir().unwrap();
    let log = super::tests::open_log(dir.path());
    let cfg = StoreConfig {
        auto_create_schema: false,
        ..StoreConfig::default()
    };
    let s = Store::open(&dir.path().join("store"), log, cfg).unwrap();
    s.write(Event::Schema(crate::event::SchemaOp::CreateTimeseries {
        path: "root.sg.d.x".into(),
        data_type: protocol::types::DataType::Double,
        encoding: "GORILLA".into(),
        compressor: "LZ4".into(),
        aligned: false,
    }))
    .unwrap();
    let ts = vec![
        doubles("root.sg.d", "x", 0, 3),
        doubles("root.sg.d", "y", 0, 3),
    ];
    let bytes = serialized(&ts);
    let e = s
        .write_tablets(with_bytes(&ts, &bytes), Origin::Pipe)
        .unwrap_err();
    assert_eq!(e.code, status::PATH_NOT_EXIST);
    assert_eq!(points(&s, "root.sg.d.x").unwrap().times, vec![0, 1, 2]);
}

/// Many tablets, bad ones among them: the request writes exactly what the
/// same tablets written one by one write, up to the first bad one, with
/// the same error, the same log records (in fewer batches) and the same
/// data.
#[test]
fn a_request_writes_what_one_by_one_writes() {
    let mut ts = Vec::new();
    for i in 0..300i64 {
        let dev = format!("root.eq.d{}", i % 37);
        ts.push(match i {
            // A measurement that is not a single node: a name error.
            250 => tablet(&dev, "a.b", vec![i], Column::Double(vec![0.0])),
            _ if i % 37 == 5 && i > 100 => {
                // A second series of an existing device, new in this request.
                tablet(&dev, "t", vec![i], Column::Text(vec![b"v".to_vec()]))
            }
            _ => doubles(&dev, "x", i * 10, 1 + i % 9),
        });
    }
    let bytes = serialized(&ts);
    // Small segments: the request takes several batches and rolls.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let batched = open_with(a.path(), 16 << 10);
    let single = open_with(b.path(), 16 << 10);
    let e1 = batched
        .write_tablets(with_bytes(&ts, &bytes), Origin::Pipe)
        .unwrap_err();
    let e2 = ts
        .iter()
        .zip(&bytes)
        .map(|(t, b)| single.write_tablet_bytes(t.clone(), b, Origin::Pipe))
        .find_map(Result::err)
        .unwrap();
    assert_eq!(e1, e2);
    assert_eq!(e1.code, status::ILLEGAL_PATH, "{e1}");
    let (r1, n1) = log_records(&batched);
    let (r2, n2) = log_records(&single);
    assert_eq!(r1.len(), 250);
    assert!(
        r1.iter()
            .all(|r| r.1 == crate::event::KIND_TABLET | crate::event::FROM_PIPE),
        "marked as arrived through a pipe"
    );
    assert!(r1 == r2, "the same records");
    assert!(n1 > 1 && n1 < n2 / 10, "{n1} batches against {n2}");
    let all = [crate::sql::parse_path("root.**").unwrap()];
    let series = batched.series_matching(&all);
    assert_eq!(series, single.series_matching(&all));
    for (p, _) in series {
        assert_eq!(points(&batched, &p), points(&single, &p), "{p}");
    }
    // And after a restart (replay of the batches).
    drop(batched);
    let batched = open_with(a.path(), 16 << 10);
    assert_eq!(
        points(&batched, "root.eq.d3.x"),
        points(&single, "root.eq.d3.x")
    );
}

/// The receiving path's tablets read in place (a type-6 batch's
/// [`protocol::tablet::TabletViews`]): the same records, errors, series
/// and points as the owned tablets written one by one, nulls (in bitmaps
/// and TEXT) included.
#[test]
fn tablets_read_in_place_write_what_owned_ones_write() {
    let mut ts = Vec::new();
    for i in 0..200i64 {
        let dev = format!("root.v.d{}", i % 23);
        let rows = 1 + i % 11;
        let mut t = match i % 4 {
            0 => tablet(
                &dev,
                "t",
                (i * 100..i * 100 + rows).collect(),
                Column::Text((0..rows).map(|r| vec![b'a'; r as usize]).collect()),
            ),
            1 => tablet(
                &dev,
                "n",
                (i * 100..i * 100 + rows).rev().collect(),
                Column::Int64((0..rows).collect()),
            ),
            _ => doubles(&dev, "x", i * 10, rows),
        };
        if i % 3 == 0 {
            t.nulls = vec![Some((0..rows).map(|r| r % 2 == 1).collect())];
        }
        if i == 170 {
            // A type that disagrees with the series' own: the error.
            t = tablet(&dev, "x", vec![1], Column::Boolean(vec![true]));
        }
        ts.push(t);
    }
    let bytes = serialized(&ts);
    let body: Vec<u8> = bytes.concat();
    let mut views = protocol::tablet::TabletViews::default();
    let mut at = 0;
    while at < body.len() {
        at += views.read_v12_prefix(&body[at..]).unwrap();
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let viewed = open_with(a.path(), 16 << 10);
    let single = open_with(b.path(), 16 << 10);
    let e1 = viewed
        .write_tablets(views.iter().map(|v| (v, v.bytes())), Origin::Pipe)
        .unwrap_err();
    let e2 = ts
        .iter()
        .zip(&bytes)
        .map(|(t, b)| single.write_tablet_bytes(t.clone(), b, Origin::Pipe))
        .find_map(Result::err)
        .unwrap();
    assert_eq!(e1, e2);
    assert_eq!(e1.code, status::DATA_TYPE_MISMATCH, "{e1}");
    let (r1, _) = log_records(&viewed);
    assert_eq!(r1.len(), 170);
    assert!(r1 == log_records(&single).0, "the same records");
    let all = [crate::sql::parse_path("root.**").unwrap()];
    let series = viewed.series_matching(&all);
    assert_eq!(series.len(), 23 * 3);
    assert_eq!(series, single.series_matching(&all));
    for (p, _) in &series {
        assert_eq!(points(&viewed, p), points(&single, p), "{p}");
    }
    assert_eq!(viewed.memtable_points(), single.memtable_points());
}
