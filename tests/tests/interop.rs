//! The official IoTDB Python client against a real `edgepipe server`:
//! the seed's verification script, tablets with nulls and all six types,
//! records, a paged result, error statuses; then a graceful restart and a
//! kill -9 after acknowledged writes, with identical query results.

use std::time::Duration;

use e2e::{run_python, NodeProc};

const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn python_client_interop_survives_restart_and_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let node = NodeProc::start(&data, &[]);
    let port = node.port.to_string();
    let digest = run_python("interop.py", &["write", &port], LIMIT)
        .trim()
        .to_string();
    assert_eq!(digest.len(), 16, "digest {digest:?}");
    assert_eq!(
        run_python("interop.py", &["errors", &port], LIMIT).trim(),
        "ok"
    );

    // Graceful restart: identical results.
    node.stop();
    let node = NodeProc::start(&data, &[]);
    let port = node.port.to_string();
    assert_eq!(
        run_python("interop.py", &["verify", &port, &digest], LIMIT).trim(),
        digest
    );

    // More acknowledged writes (and a delete), then kill -9: identical.
    let digest2 = run_python("interop.py", &["more", &port], LIMIT)
        .trim()
        .to_string();
    assert_ne!(digest2, digest);
    node.kill9();
    let node = NodeProc::start(&data, &[]);
    let port = node.port.to_string();
    assert_eq!(
        run_python("interop.py", &["verify", &port, &digest2], LIMIT).trim(),
        digest2
    );
    let log = node.log_text();
    assert!(log.contains("store opened"), "{log}");
    node.stop();
}
