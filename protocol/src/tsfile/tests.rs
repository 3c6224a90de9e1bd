//! The reader on the reference samples (`shared/reference/tsfile-samples`,
//! copied to `protocol/tests/data`): the documented values, nulls included.

use std::collections::BTreeMap;

use super::*;
use crate::types::Value;

pub(crate) fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// (device, measurement) → rows of (time, value or null), in file order.
pub(crate) type Rows = BTreeMap<(String, String), Vec<(i64, Option<Value>)>>;

pub(crate) fn collect<S: Source>(f: &TsFile<S>) -> Rows {
    let mut out = Rows::new();
    for b in f.batches() {
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        for c in &b.columns {
            let rows = out
                .entry((b.device.path(), c.measurement.clone()))
                .or_default();
            for (r, &t) in b.times.iter().enumerate() {
                let null = c.nulls.as_ref().is_some_and(|n| n[r]);
                rows.push((t, (!null).then(|| c.values.get(r))));
            }
        }
    }
    out
}

/// The 10-row tablet of §6: row r at t0 + 1000r.
fn documented(series: &str, r: i64) -> Option<Value> {
    match series {
        "s1" => (r != 3).then(|| Value::Int64(100 + 7 * r)),
        "s2" => (r != 4 && r != 9).then_some(Value::Double(1.5 * r as f64)),
        "s3" => (r != 2).then(|| Value::Text(format!("v{r}").into_bytes())),
        "s4" => (r != 6).then_some(Value::Boolean(r % 3 == 0)),
        "s5" => Some(Value::Int32((r * r - 10) as i32)),
        "s6" => (r != 0).then_some(Value::Float(0.25 * r as f32)),
        _ => unreachable!(),
    }
}

fn check_tablet(rows: &Rows, device: &str, t0: i64, aligned: bool) {
    for s in ["s1", "s2", "s3", "s4", "s5", "s6"] {
        let got = &rows[&(device.to_string(), s.to_string())];
        let want: Vec<(i64, Option<Value>)> = (0..10)
            .map(|r| (t0 + 1000 * r, documented(s, r)))
            .filter(|(_, v)| aligned || v.is_some())
            .collect();
        assert_eq!(got, &want, "{device}.{s}");
    }
}

#[test]
fn v3_nonaligned_lz4_holds_the_documented_values() {
    let f = TsFile::new(sample("v3_nonaligned_lz4.tsfile")).unwrap();
    assert_eq!(f.version(), Version::V3);
    let rows = collect(&f);
    assert_eq!(rows.len(), 6);
    check_tablet(&rows, "root.sg.d1", 1_700_000_000_000, false);
    let s = f.validate().unwrap();
    assert_eq!((s.devices, s.series, s.chunks, s.pages), (1, 6, 6, 6));
    assert_eq!(s.points, 9 + 8 + 9 + 9 + 10 + 9);
    // The index: s1 INT64 with 9 points, one chunk at byte 19.
    let d = f.devices().unwrap();
    assert_eq!(d[0].id.path(), "root.sg.d1");
    let series = f.series(&d[0]).unwrap();
    assert_eq!(series[0].measurement, "s1");
    assert_eq!(series[0].statistics.count, 9);
    assert_eq!(series[0].chunks[0].offset, 19);
}

#[test]
fn v3_aligned_snappy_holds_the_documented_values_and_nulls() {
    let f = TsFile::new(sample("v3_aligned_snappy.tsfile")).unwrap();
    let rows = collect(&f);
    assert_eq!(rows.len(), 6);
    let t0 = rows[&("root.sg.d2".into(), "s1".into())][0].0;
    check_tablet(&rows, "root.sg.d2", t0, true);
    let b: Vec<Batch> = f.batches().map(Result::unwrap).collect();
    assert!(b.iter().all(|b| b.aligned));
    let s = f.validate().unwrap();
    assert_eq!((s.devices, s.series, s.chunks), (1, 6, 7));
    assert_eq!(s.rows, 10);
}

#[test]
fn v3_multipage_holds_every_device_and_page() {
    let f = TsFile::new(sample("v3_multipage_deg3_uncompressed.tsfile")).unwrap();
    let rows = collect(&f);
    check_tablet(&rows, "root.sg.d1", 1000, false);
    check_tablet(&rows, "root.sg.d2", 1000, true);
    for i in 3..=6 {
        let got = &rows[&(format!("root.sg.e{i}"), "x".to_string())];
        assert_eq!(
            got,
            &vec![
                (5, Some(Value::Int64(10 * i))),
                (6, Some(Value::Int64(10 * i + 1)))
            ],
            "e{i}"
        );
    }
    let s = f.validate().unwrap();
    assert_eq!(s.devices, 6);
    assert!(s.pages > s.chunks, "{s:?}");
    let names: Vec<String> = f.devices().unwrap().iter().map(|d| d.id.path()).collect();
    assert_eq!(
        names,
        [
            "root.sg.d1",
            "root.sg.d2",
            "root.sg.e3",
            "root.sg.e4",
            "root.sg.e5",
            "root.sg.e6"
        ]
    );
}

#[test]
fn v4_tree_and_table_samples() {
    let f = TsFile::new(sample("v4_tree_pypi_tsfile_2.5.0.tsfile")).unwrap();
    assert_eq!(f.version(), Version::V4);
    let rows = collect(&f);
    assert_eq!(
        rows[&("root.sg.d1".into(), "s1".into())],
        vec![
            (1, Some(Value::Int64(10))),
            (2, Some(Value::Int64(20))),
            (3, Some(Value::Int64(30)))
        ]
    );
    let d = f.devices().unwrap();
    assert_eq!(
        d[0].id.segments,
        vec![Some("root.sg".to_string()), Some("d1".to_string())]
    );
    f.validate().unwrap();

    let f = TsFile::new(sample("v4_table_pypi_tsfile_2.5.0.tsfile")).unwrap();
    let rows = collect(&f);
    assert_eq!(
        rows[&("t1.r1".into(), "temp".into())],
        vec![
            (100, Some(Value::Double(20.5))),
            (101, Some(Value::Double(21.5))),
            (102, Some(Value::Double(22.5)))
        ]
    );
    assert_eq!(f.tables()[0].0, "t1");
    assert_eq!(f.tables()[0].1[0].name, "region");
    assert_eq!(f.tables()[0].1[0].category, 0);
    let b = f.batches().next().unwrap().unwrap();
    assert!(b.aligned);
    assert_eq!(
        b.device.segments,
        vec![Some("t1".to_string()), Some("r1".to_string())]
    );
    f.validate().unwrap();
}

#[test]
fn every_truncation_of_every_sample_is_an_error() {
    for name in [
        "v3_nonaligned_lz4.tsfile",
        "v3_aligned_snappy.tsfile",
        "v3_multipage_deg3_uncompressed.tsfile",
        "v4_tree_pypi_tsfile_2.5.0.tsfile",
        "v4_table_pypi_tsfile_2.5.0.tsfile",
    ] {
        let b = sample(name);
        for cut in 0..b.len() {
            let e = TsFile::new(b[..cut].to_vec()).unwrap_err();
            assert!(e.is_corruption(), "{name} cut {cut}: {e}");
        }
    }
}

#[test]
fn flipped_bytes_are_found_or_only_touch_values() {
    // Every single-byte change of the uncompressed multi-page sample is
    // reported by validate(), or leaves every device, series and time as
    // it was: the format has no checksum over values, so a changed byte
    // inside a value of an uncompressed page (not its first or last, which
    // the statistics hold) cannot be seen by any reader.
    let b = sample("v3_multipage_deg3_uncompressed.tsfile");
    let want = collect(&TsFile::new(b.clone()).unwrap());
    let mut found = 0;
    let mut unseen = 0;
    for at in 0..b.len() {
        let mut m = b.clone();
        m[at] ^= 0x10;
        let Ok(f) = TsFile::new(m) else {
            found += 1;
            continue;
        };
        if f.validate().is_err() {
            found += 1;
            continue;
        }
        let mut got = Rows::new();
        let mut ok = true;
        for batch in f.batches() {
            let Ok(batch) = batch else {
                ok = false;
                break;
            };
            for c in &batch.columns {
                let rows = got
                    .entry((batch.device.path(), c.measurement.clone()))
                    .or_default();
                for (r, &t) in batch.times.iter().enumerate() {
                    let null = c.nulls.as_ref().is_some_and(|n| n[r]);
                    rows.push((t, (!null).then(|| c.values.get(r))));
                }
            }
        }
        assert!(ok, "validate passed but the load failed at byte {at}");
        let shape = |r: &Rows| -> Vec<_> {
            r.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.iter().map(|(t, x)| (*t, x.is_some())).collect::<Vec<_>>(),
                    )
                })
                .collect()
        };
        assert_eq!(
            shape(&got),
            shape(&want),
            "byte {at}: validate passed, rows changed"
        );
        if got != want {
            unseen += 1;
        }
    }
    assert!(found > b.len() / 2, "{found} of {}", b.len());
    // Only bytes inside values go unseen: few of them.
    assert!(unseen < b.len() / 10, "{unseen} of {}", b.len());
}
