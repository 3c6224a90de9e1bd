//! `pipeTransfer` wire conformance with Apache's generated Python code:
//! our connector's frames decode with it, and frames it builds are
//! accepted by our receiver.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{python, run_python, sql, wait_timeout, workspace, NodeProc};

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
    edge.stop();
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
            && out.contains("request type 2 (TRANSFER_TABLET_INSERT_NODE) is not supported"),
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
