//! The TsFile reader against files written by Apache's own code: the PyPI
//! `tsfile` package (TsFile 2.x, format v4) writes them in the test
//! (`tests/python/write_tsfiles.py`: every compression, every encoding it
//! offers for the types IoTDB 1.2 has, tree and table model, nulls, pages
//! of 100 rows) with a JSON record of what it wrote; our reader must give
//! back exactly that. And `edgepipe tsfile dump` on the reference samples
//! and on damaged copies.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{edgepipe_bin, python, run_python, workspace};
use protocol::tsfile::{Source, TsFile};
use protocol::types::Value;
use serde_json::Value as Json;

type Rows = BTreeMap<String, Vec<(i64, Option<Value>)>>;

fn collect<S: Source>(f: &TsFile<S>) -> Rows {
    let mut out = Rows::new();
    for b in f.batches() {
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        for c in &b.columns {
            let rows = out
                .entry(format!("{}|{}", b.device.path(), c.measurement))
                .or_default();
            for (r, &t) in b.times.iter().enumerate() {
                let null = c.nulls.as_ref().is_some_and(|n| n[r]);
                rows.push((t, (!null).then(|| c.values.get(r))));
            }
        }
    }
    out
}

/// Whether `v` is what the script recorded as `want`.
fn same(v: &Option<Value>, want: &Json) -> bool {
    match (v, want) {
        (None, Json::Null) => true,
        (Some(Value::Boolean(b)), Json::Bool(w)) => b == w,
        (Some(Value::Int32(x)), Json::Number(n)) => n.as_i64() == Some(i64::from(*x)),
        (Some(Value::Int64(x)), Json::Number(n)) => n.as_i64() == Some(*x),
        // The script recorded the f32 a FLOAT holds, as a double.
        (Some(Value::Float(x)), Json::Number(n)) => n.as_f64() == Some(f64::from(*x)),
        (Some(Value::Double(x)), Json::Number(n)) => n.as_f64() == Some(*x),
        (Some(Value::Text(t)), Json::String(s)) => t == s.as_bytes(),
        _ => false,
    }
}

fn ensure_tsfile_package() {
    let ok = Command::new(python())
        .args(["-c", "import tsfile"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the PyPI tsfile package is missing from the test venv: \
         pip install -r tests/python/requirements.txt (tsfile==2.5.0)"
    );
}

#[test]
fn files_written_by_the_pypi_tsfile_package_read_back_value_for_value() {
    ensure_tsfile_package();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    run_python(
        "write_tsfiles.py",
        &[d, "--rows", "1000"],
        Duration::from_secs(120),
    );
    let expected: Json =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    let files = expected["files"].as_object().unwrap();
    assert_eq!(files.len(), 8, "tree, 6 table files, v4 types");
    let mut points = 0usize;
    let mut nulls = 0usize;
    for (name, spec) in files {
        let f = TsFile::open(&dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.version().byte(), 4, "{name}");
        let summary = f.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(summary.pages >= 10 * summary.devices, "{name}: {summary:?}");
        let got = collect(&f);
        let want = spec["series"].as_object().unwrap();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: series"
        );
        for (key, rows) in want {
            let rows = rows.as_array().unwrap();
            let have = &got[key];
            assert_eq!(have.len(), rows.len(), "{name} {key}: rows");
            for (i, (h, w)) in have.iter().zip(rows).enumerate() {
                assert_eq!(Some(h.0), w[0].as_i64(), "{name} {key} row {i}: time");
                assert!(
                    same(&h.1, &w[1]),
                    "{name} {key} row {i}: {:?}, the script wrote {}",
                    h.1,
                    w[1]
                );
                if h.1.is_some() {
                    points += 1;
                } else {
                    nulls += 1;
                }
            }
        }
        if spec["kind"] == "table" {
            assert!(f.batches().all(|b| b.unwrap().aligned), "{name}");
        }
    }
    assert!(
        points > 150_000 && nulls > 1000,
        "{points} points, {nulls} nulls"
    );
}

#[test]
fn what_the_reader_does_not_decode_is_named() {
    ensure_tsfile_package();
    let dir = tempfile::tempdir().unwrap();
    run_python(
        "write_tsfiles.py",
        &[dir.path().to_str().unwrap(), "--rows", "20"],
        Duration::from_secs(120),
    );
    for (file, what) in [
        ("lzo.tsfile", "unsupported compression LZO (3)"),
        ("sprintz.tsfile", "unsupported encoding SPRINTZ (12)"),
    ] {
        let f = TsFile::open(&dir.path().join(file)).unwrap();
        let e = f.validate().unwrap_err();
        assert!(e.is_unsupported(), "{file}: {e}");
        assert_eq!(e.reason(), what);
        assert_eq!((e.device(), e.series()), (Some("root.sg.d"), Some("s")));
        // The tool gives up with exit code 2 and the same words.
        let o = dump(&dir.path().join(file), &[]);
        assert_eq!(o.status.code(), Some(2), "{file}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(what));
    }
}

fn dump(file: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(edgepipe_bin())
        .args(["tsfile", "dump"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap()
}

fn sample(name: &str) -> std::path::PathBuf {
    workspace().join("protocol/tests/data").join(name)
}

#[test]
fn tsfile_dump_prints_series_and_points_and_exits_1_on_damage() {
    let o = dump(&sample("v3_nonaligned_lz4.tsfile"), &["--limit", "3"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("version:    3 (IoTDB 1.x)"), "{text}");
    assert!(
        text.contains("1 device(s), 6 series, 6 chunk(s), 6 page(s), 54 row(s), 54 point(s)"),
        "{text}"
    );
    assert!(
        text.contains("| root.sg.d1 |          s2 |  DOUBLE |  GORILLA |         LZ4 |   false |      1 |      8 | 1700000000000 | 1700000008000 |"),
        "{text}"
    );
    assert!(
        text.contains("root.sg.d1\ts1\t1700000002000\t114\n"),
        "{text}"
    );
    assert!(text.contains("Total points printed = 3"), "{text}");

    let o = dump(&sample("v3_aligned_snappy.tsfile"), &["--json"]);
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<Json> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kind"], "file");
    assert_eq!(lines[0]["points"], 54);
    assert_eq!(lines.iter().filter(|l| l["kind"] == "series").count(), 6);
    let s3: Vec<&Json> = lines
        .iter()
        .filter(|l| l["kind"] == "point" && l["measurement"] == "s3")
        .collect();
    assert_eq!(s3.len(), 9, "one null of 10");
    assert_eq!(s3[2]["value"], "v3");

    // A flipped byte inside a compressed page: exit 1, the place named,
    // no values printed.
    let tmp = tempfile::tempdir().unwrap();
    let mut b = std::fs::read(sample("v3_nonaligned_lz4.tsfile")).unwrap();
    b[40] ^= 0xff;
    let bad = tmp.path().join("bad.tsfile");
    std::fs::write(&bad, &b).unwrap();
    let o = dump(&bad, &[]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("DAMAGED: "), "{text}");
    assert!(
        text.contains("(device root.sg.d1, series \"s1\")"),
        "{text}"
    );
    assert!(!text.contains("Device\tMeasurement"), "{text}");
    // Truncated: the tail is missing.
    std::fs::write(&bad, &b[..500]).unwrap();
    let o = dump(&bad, &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "problem");
    assert!(v["reason"].as_str().unwrap().contains("incomplete"), "{v}");
    // Not there: exit 2.
    assert_eq!(dump(&tmp.path().join("none"), &[]).status.code(), Some(2));
}
