//! `pipeTransfer` wire conformance with Apache's generated Python code:
//! our connector's frames decode with it, and frames it builds are
//! accepted by our receiver.
//!
//! The tablet bodies: the pinned official package (`apache-iotdb`) has no
//! deserializer of `Tablet.serialize()` (the 1.2 body) and no serializer of
//! it. What it has is the client RPC layout (`Tablet` / `NumpyTablet`
//! `get_binary_timestamps`, `get_binary_values`), which carries the same
//! bytes as the body's timestamps, values and null bitmaps (TEXT cells
//! there lack the body's per-cell `notNull` byte). So the bodies our
//! connector sends, as Apache's generated code extracts them, are compared
//! section by section with Apache's serializers for the same data; and our
//! serialization of the Java-written sample (`Tablet.serialize()` of IoTDB
//! 1.2, `tests/data/tablet_serialize_v1.2.bin`) is compared with it byte
//! for byte, save the per-series encoding and compressor bytes that our
//! tablets do not carry.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{python, run_python, sql, wait_timeout, workspace, NodeProc};
use protocol::tablet::{Column, Tablet};
use protocol::types::Value;

#[test]
fn our_connector_frames_decode_with_apache_generated_code() {
    let mut receiver = Command::new(python())
        .arg(workspace().join("tests/python/conformance.py"))
        .args(["receive", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port: u16 = out
        .next()
        .expect("port line")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    sql(&e, "insert into root.c.d1(time, a, b) values (1, 1, 'x')");
    sql(&e, &format!("create pipe p WITH CONNECTOR ('connector'='iotdb-thrift-sync-connector', 'connector.node-urls'='127.0.0.1:{port}')"));
    sql(&e, "start pipe p");
    sql(&e, "insert into root.c.d2(time, a) values (2, 2)");
    sql(&e, "insert into root.c.d3(time, a) values (3, 3)");
    let status = wait_timeout(&mut receiver, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = receiver.kill();
        panic!("the Python receiver did not see 3 data requests in 60 s")
    });
    let summary = out.next().expect("summary").unwrap();
    assert!(status.success(), "{summary}");
    // First a handshake with our precision, then tablets, each decoded by
    // the generated pipeTransfer_args (field id -1).
    assert!(
        summary.starts_with(r#"[{"version": 1, "type": 1, "bytes": 6, "precision": "ms"}"#),
        "{summary}"
    );
    for dev in ["root.c.d1", "root.c.d2", "root.c.d3"] {
        assert!(summary.contains(dev), "{dev} missing from {summary}");
    }
    // The tablet bodies as Apache's generated code extracted them: each
    // decodes with ours to the rows inserted, and its sections are the
    // bytes Apache's own Tablet and NumpyTablet serializers give for them.
    let entries: Vec<serde_json::Value> = serde_json::from_str(&summary).unwrap();
    let mut tablets = Vec::new();
    for e in &entries {
        let Some(hex) = e["body"].as_str() else {
            continue;
        };
        let body = unhex(hex);
        match e["type"].as_i64() {
            Some(3) => tablets.push(Tablet::deserialize_v12(&body).unwrap()),
            Some(6) => tablets.extend(
                protocol::pipe::read_batch(&body)
                    .unwrap()
                    .tablets
                    .into_iter()
                    .map(|t| t.0),
            ),
            other => panic!("body of type {other:?}"),
        }
    }
    let mut devices: Vec<&str> = tablets.iter().map(|t| t.device.as_str()).collect();
    devices.sort();
    assert_eq!(devices, ["root.c.d1", "root.c.d2", "root.c.d3"]);
    let d1 = tablets.iter().find(|t| t.device == "root.c.d1").unwrap();
    assert_eq!(d1.times, [1]);
    assert_eq!(d1.measurements, ["a", "b"]);
    assert_eq!(d1.columns[1].get(0), Value::Text(b"x".to_vec()));
    same_sections_as_apache(&tablets);
    edge.stop();
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The sections of a `Tablet.serialize()` body that the client RPC layout
/// carries too, in that layout: the timestamps, and the value columns
/// followed (when a column has nulls) by a flag and the null bitmap per
/// column. Also where the schema's encoding and compressor bytes are.
struct Sections {
    times: Vec<u8>,
    values: Vec<u8>,
    schema_settings: Vec<usize>,
}

fn sections(b: &[u8]) -> Sections {
    let mut at = 0;
    let i32_at = |at: &mut usize| {
        let v = i32::from_be_bytes(b[*at..*at + 4].try_into().unwrap());
        *at += 4;
        v as usize
    };
    let s = i32_at(&mut at);
    at += s;
    let n = i32_at(&mut at);
    assert_eq!(b[at], 1, "schemas present");
    at += 1;
    let cols = i32_at(&mut at);
    let mut types = Vec::new();
    let mut schema_settings = Vec::new();
    for _ in 0..cols {
        assert_eq!(b[at], 1);
        at += 1;
        let s = i32_at(&mut at);
        at += s;
        types.push(b[at]);
        schema_settings.extend([at + 1, at + 2]);
        at += 3;
        assert_eq!(i32_at(&mut at), 0, "no properties");
    }
    assert_eq!(b[at], 1, "times present");
    let times = b[at + 1..at + 1 + 8 * n].to_vec();
    at += 1 + 8 * n;
    let mut bitmaps = vec![None; cols];
    if b[at] == 1 {
        at += 1;
        for bm in bitmaps.iter_mut() {
            at += 1;
            if b[at - 1] == 1 {
                let _size = i32_at(&mut at);
                let len = i32_at(&mut at);
                *bm = Some(b[at..at + len].to_vec());
                at += len;
            }
        }
    } else {
        at += 1;
    }
    assert_eq!(b[at], 1, "values present");
    at += 1;
    let mut values = Vec::new();
    for &t in &types {
        assert_eq!(b[at], 1, "column present");
        at += 1;
        let width = match t {
            0 => 1,
            1 | 3 => 4,
            2 | 4 => 8,
            _ => 0,
        };
        if width > 0 {
            values.extend_from_slice(&b[at..at + width * n]);
            at += width * n;
        } else {
            for _ in 0..n {
                assert_eq!(b[at], 1, "TEXT notNull");
                at += 1;
                let len = i32_at(&mut at);
                values.extend_from_slice(&b[at - 4..at + len]);
                at += len;
            }
        }
    }
    if bitmaps.iter().any(Option::is_some) {
        for bm in &bitmaps {
            match bm {
                Some(bytes) => {
                    values.push(1);
                    values.extend_from_slice(bytes);
                }
                None => values.push(0),
            }
        }
    }
    assert!(b.len() - at <= 1, "only the aligned byte is left");
    Sections {
        times,
        values,
        schema_settings,
    }
}

/// Each tablet's serialized sections equal Apache's Tablet and NumpyTablet
/// serializers' bytes for the same data.
fn same_sections_as_apache(tablets: &[Tablet]) {
    let described: Vec<serde_json::Value> = tablets
        .iter()
        .map(|t| {
            let rows: Vec<Vec<serde_json::Value>> = (0..t.rows())
                .map(|r| {
                    (0..t.columns.len())
                        .map(|c| {
                            if t.is_null(c, r) {
                                return serde_json::Value::Null;
                            }
                            match t.columns[c].get(r) {
                                Value::Boolean(v) => v.into(),
                                Value::Int32(v) => v.into(),
                                Value::Int64(v) => v.into(),
                                Value::Float(v) => f64::from(v).into(),
                                Value::Double(v) => v.into(),
                                Value::Text(v) => String::from_utf8(v).unwrap().into(),
                            }
                        })
                        .collect()
                })
                .collect();
            serde_json::json!({
                "device": t.device,
                "measurements": t.measurements,
                "types": t.columns.iter().map(|c| c.data_type() as i32).collect::<Vec<_>>(),
                "timestamps": t.times,
                "rows": rows,
            })
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tablets.json");
    std::fs::write(&path, serde_json::to_string(&described).unwrap()).unwrap();
    let out = run_python(
        "conformance.py",
        &["sections", path.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let apache: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(apache.len(), tablets.len());
    for (t, a) in tablets.iter().zip(&apache) {
        let ours = sections(&t.serialize_v12());
        for key in ["times", "np_times"] {
            assert_eq!(
                hex(&ours.times),
                a[key].as_str().unwrap(),
                "{key} of {}",
                t.device
            );
        }
        for key in ["values", "np_values"] {
            assert_eq!(
                hex(&ours.values),
                a[key].as_str().unwrap(),
                "{key} of {}",
                t.device
            );
        }
    }
}

#[test]
fn our_tablet_serialization_matches_apaches_serializers_and_the_java_sample() {
    // Every type, nulls in three columns (a bitmap byte boundary crossed).
    let rows: i32 = 11;
    let t = Tablet {
        device: "root.sg.all".into(),
        measurements: ["b", "i", "l", "f", "d", "t"].map(String::from).to_vec(),
        columns: vec![
            Column::Boolean((0..rows).map(|r| r % 2 == 0).collect()),
            Column::Int32(
                (0..rows)
                    .map(|r| if r % 3 == 0 { 0 } else { r - 5 })
                    .collect(),
            ),
            Column::Int64((0..rows as i64).map(|r| r << 40).collect()),
            Column::Float((0..rows).map(|r| r as f32 * 0.5).collect()),
            Column::Double(
                (0..rows)
                    .map(|r| if r % 5 == 0 { 0.0 } else { r as f64 / 3.0 })
                    .collect(),
            ),
            Column::Text(
                (0..rows)
                    .map(|r| {
                        if r % 4 == 1 {
                            vec![]
                        } else {
                            format!("v{r}").into_bytes()
                        }
                    })
                    .collect(),
            ),
        ],
        nulls: vec![
            None,
            Some((0..rows).map(|r| r % 3 == 0).collect()),
            None,
            None,
            Some((0..rows).map(|r| r % 5 == 0).collect()),
            Some((0..rows).map(|r| r % 4 == 1).collect()),
        ],
        times: (0..rows as i64).map(|r| 1_700_000_000_000 + r).collect(),
        aligned: false,
    };
    same_sections_as_apache(std::slice::from_ref(&t));

    // The Java-written sample: ours is the same bytes (plus the aligned
    // byte a pipe body carries), save each schema's encoding and
    // compressor, which are series settings our tablets do not keep.
    let sample = include_bytes!("../data/tablet_serialize_v1.2.bin");
    let decoded = Tablet::deserialize_v12(sample).unwrap();
    let mut ours = decoded.serialize_v12();
    assert_eq!(ours.pop(), Some(0), "the aligned byte");
    let mut theirs = sample.to_vec();
    assert_eq!(ours.len(), theirs.len());
    let settings = sections(&theirs).schema_settings;
    assert_eq!(settings, sections(&ours).schema_settings);
    for &i in &settings {
        ours[i] = 0;
        theirs[i] = 0;
    }
    assert_eq!(hex(&ours), hex(&theirs));
}

#[test]
fn frames_built_by_apache_generated_code_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n"), &[]);
    let out = run_python(
        "conformance.py",
        &["send", &node.port.to_string()],
        Duration::from_secs(60),
    );
    let get = |k: &str| {
        out.split(&format!("\"{k}\": "))
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert!(get("handshake").starts_with("200"), "{out}");
    assert!(
        get("handshake_ns").starts_with("[1802")
            && out.contains("connector's timestamp precision ns"),
        "{out}"
    );
    assert!(get("tablet").starts_with("[200"), "{out}");
    assert!(get("batch").starts_with("[200"), "{out}");
    assert!(
        get("insert_node").starts_with("[1107")
            && out.contains("TRANSFER_TABLET_INSERT_NODE body does not decode"),
        "{out}"
    );
    assert!(get("unknown").starts_with("[1801"), "{out}");
    assert!(get("version").starts_with("[1800"), "{out}");
    assert!(
        get("garbage").starts_with("[1107") && out.contains("does not decode"),
        "{out}"
    );
    // The sample tablet landed: s1 INT64 10, 20; s2 TEXT "a", null; s3 BOOLEAN.
    let r = sql(&node.addr(), "select s1, s2, s3 from root.sg.d1").unwrap();
    assert_eq!(r.types, ["INT64", "TEXT", "BOOLEAN"]);
    let rows: Vec<String> = r.rows.iter().map(|(t, v)| format!("{t} {:?}", v)).collect();
    assert_eq!(
        rows,
        [
            r#"1 [Some(Int64(10)), Some(Text([97])), Some(Boolean(true))]"#,
            r#"2 [Some(Int64(20)), None, Some(Boolean(false))]"#
        ]
    );
    let r = sql(&node.addr(), "show devices").unwrap();
    let devices: Vec<String> = r
        .rows
        .iter()
        .map(|x| {
            x.1.iter()
                .map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        devices,
        ["root.sg.d1 false", "root.sg.d2 true"],
        "the batch's tablet was aligned"
    );
    node.stop();
}
