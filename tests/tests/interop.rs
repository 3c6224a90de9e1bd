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
    // The restart after kill -9 recovered the log and replayed the writes
    // of `more` (20 records, an insert and a delete) into the store; the
    // graceful restart before had nothing to replay (stopping flushes).
    let log = node.log_text();
    let replayed: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("store opened"))
        .map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("events="))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no event count in {l:?}"))
        })
        .collect();
    assert_eq!(replayed.len(), 3, "three starts: {log}");
    assert_eq!(replayed[1], 0, "the graceful restart replayed: {log}");
    assert!(
        replayed[2] >= 22,
        "the start after kill -9 replayed {} events, not the 22 written since the last flush: {log}",
        replayed[2]
    );
    assert_eq!(
        log.matches("recovering after an unclean stop").count(),
        1,
        "only the start after kill -9 recovers an unclean stop: {log}"
    );
    node.stop();
}
