//! Issue 10: SHOW PIPES tells the truth about a pipe. RemainingEventCount
//! counts what the pipe will still send (not what its pattern leaves out,
//! nothing on a finished realtime-disabled pipe); LagSeconds is the age of
//! the oldest record not acknowledged and grows while the pipe is stuck;
//! ExceptionMessage shows the failure the pipe is retrying after, and both
//! go back to 0 / empty once it delivers.

mod peer;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use peer::{open_log, runtime, wait_for};
use peer::{Mode, Peer};
use protocol::event::KIND_TABLET;
use protocol::tablet::{Column, Tablet};
use replicator::{PipeManager, PipeRow, Settings};

fn append(log: &wal::Log, device: &str, t: i64) {
    let tablet = Tablet {
        device: device.into(),
        measurements: vec!["s".into()],
        columns: vec![Column::Double(vec![t as f64])],
        nulls: vec![None],
        times: vec![t],
        aligned: false,
    };
    log.append(KIND_TABLET, &tablet.serialize_v12()).unwrap();
}

fn connector(name: &str, port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("connector".to_string(), name.to_string()),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
    ])
}

fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn row(mgr: &PipeManager, id: &str) -> PipeRow {
    mgr.show(Some(id), None).unwrap().remove(0)
}

#[test]
fn remaining_events_count_what_the_pipe_will_send() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        Settings::default(),
        rt.handle().clone(),
    )
    .unwrap();
    for t in 0..30 {
        append(&log, if t % 3 == 0 { "root.a.d" } else { "root.b.d" }, t);
    }
    let peer = Peer::start(Mode::Answer);
    // root.a: 10 of the 30 records; history only.
    mgr.create(
        "a",
        attrs(&[
            ("extractor.pattern", "root.a"),
            ("extractor.realtime.enable", "false"),
        ]),
        BTreeMap::new(),
        connector("iotdb-thrift-connector", peer.port),
    )
    .unwrap();
    // Everything, with a history time range keeping t in [10, 19].
    mgr.create(
        "range",
        attrs(&[
            ("extractor.history.start-time", "10"),
            ("extractor.history.end-time", "19"),
        ]),
        BTreeMap::new(),
        connector("iotdb-thrift-async-connector", peer.port),
    )
    .unwrap();
    // Realtime only: nothing of the history.
    mgr.create(
        "rt",
        attrs(&[("extractor.history.enable", "false")]),
        BTreeMap::new(),
        connector("iotdb-thrift-connector", peer.port),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let (a, range, rt_row) = (row(&mgr, "a"), row(&mgr, "range"), row(&mgr, "rt"));
    assert_eq!(a.remaining_events, 10, "{a:?}");
    assert_eq!(range.remaining_events, 10, "{range:?}");
    assert_eq!((rt_row.remaining_events, rt_row.lag_seconds), (0, 0.0));
    // A stopped pipe's data has waited since it arrived, over a second.
    assert!(
        (1.0..60.0).contains(&a.lag_seconds),
        "lag {}",
        a.lag_seconds
    );
    // Asking again reads nothing new and says the same.
    assert_eq!(row(&mgr, "a").remaining_events, 10);
    // Realtime records: counted by the pipes that take them.
    for t in 30..36 {
        append(&log, "root.a.d", t);
    }
    assert_eq!(row(&mgr, "a").remaining_events, 10, "history only");
    assert_eq!(
        row(&mgr, "range").remaining_events,
        16,
        "realtime unbounded"
    );
    assert_eq!(row(&mgr, "rt").remaining_events, 6);
    for id in ["a", "range", "rt"] {
        mgr.start(id).unwrap();
    }
    wait_for(Duration::from_secs(10), "every pipe done", || {
        ["a", "range", "rt"].iter().all(|id| {
            let r = row(&mgr, id);
            r.remaining_events == 0 && r.lag_seconds == 0.0
        })
    });
    // A finished realtime-disabled pipe shows nothing left, whatever
    // arrives after it.
    for t in 36..40 {
        append(&log, "root.a.d", t);
    }
    let a = row(&mgr, "a");
    assert_eq!(
        (a.remaining_events, a.lag_seconds, a.meta.state.name()),
        (0, 0.0, "RUNNING")
    );
    wait_for(Duration::from_secs(10), "the realtime pipes", || {
        row(&mgr, "range").remaining_events == 0 && row(&mgr, "rt").remaining_events == 0
    });
    // What the receiver got: the pipes' own counts of what they sent.
    peer.seen(|s| {
        let sent: usize = s.requests.iter().map(|r| r.ids.len()).sum();
        assert_eq!(
            sent,
            10 + (10 + 10) + 10,
            "a + range (history + realtime) + rt"
        );
    });
    mgr.shutdown();
}

/// A pipe stuck on a receiver that never answers: within a few seconds
/// its lag grows and its exception message says what it retries after;
/// once the receiver answers, both return to 0 / empty.
#[test]
fn a_stalled_pipe_shows_a_growing_lag_and_the_retry() {
    for name in ["iotdb-thrift-connector", "iotdb-thrift-async-connector"] {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let mgr = PipeManager::open(
            log.clone(),
            &dir.path().join("system"),
            Settings {
                timeout: Duration::from_millis(300),
                retry_base: Duration::from_millis(50),
                retry_cap: Duration::from_millis(200),
                max_retry: 1000,
                ..Settings::default()
            },
            rt.handle().clone(),
        )
        .unwrap();
        let peer = Peer::start(Mode::Answer);
        mgr.create(
            "p",
            BTreeMap::new(),
            BTreeMap::new(),
            connector(name, peer.port),
        )
        .unwrap();
        mgr.start("p").unwrap();
        append(&log, "root.s.d", 0);
        wait_for(Duration::from_secs(10), "the first record", || {
            let r = row(&mgr, "p");
            r.remaining_events == 0 && peer.seen(|s| s.acked.contains(&0))
        });
        peer.set_mode(Mode::Silent);
        append(&log, "root.s.d", 1);
        append(&log, "root.s.d", 2);
        let t0 = Instant::now();
        wait_for(Duration::from_secs(5), "the retry message", || {
            row(&mgr, "p").meta.exception.starts_with("retry ")
        });
        let first = row(&mgr, "p");
        assert!(
            first.meta.exception.contains(" of 1000: ")
                && first.meta.exception.contains("no reply within"),
            "{name}: {}",
            first.meta.exception
        );
        assert_eq!(first.meta.state.name(), "RUNNING");
        assert_eq!(first.remaining_events, 2, "{name}");
        std::thread::sleep(Duration::from_millis(1000));
        let later = row(&mgr, "p");
        assert!(
            later.lag_seconds >= first.lag_seconds + 0.9
                && later.lag_seconds >= t0.elapsed().as_secs_f64() - 0.1,
            "{name}: lag {} then {} ({:?} since the records arrived)",
            first.lag_seconds,
            later.lag_seconds,
            t0.elapsed()
        );
        peer.set_mode(Mode::Answer);
        wait_for(Duration::from_secs(10), "recovery", || {
            let r = row(&mgr, "p");
            r.remaining_events == 0 && r.lag_seconds == 0.0 && r.meta.exception.is_empty()
        });
        mgr.shutdown();
    }
}

/// The failure in a retry message reads like IoTDB's, for every
/// connector: the operating system's words without Rust's `(os error N)`,
/// and a timeout in milliseconds with the key that sets it, not Rust's
/// `Duration` debug form.
#[test]
fn retry_messages_read_like_iotdbs() {
    for name in [
        "iotdb-thrift-sync-connector",
        "iotdb-thrift-async-connector",
        "iotdb-legacy-pipe-connector",
    ] {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let mgr = PipeManager::open(
            log.clone(),
            &dir.path().join("system"),
            Settings {
                timeout: Duration::from_millis(300),
                retry_base: Duration::from_millis(20),
                retry_cap: Duration::from_millis(50),
                max_retry: 1000,
                ..Settings::default()
            },
            rt.handle().clone(),
        )
        .unwrap();
        append(&log, "root.s.d", 0);
        // Nothing listens: refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        mgr.create(
            "refused",
            BTreeMap::new(),
            BTreeMap::new(),
            connector(name, port),
        )
        .unwrap();
        mgr.start("refused").unwrap();
        let mut m = String::new();
        wait_for(Duration::from_secs(5), "the refusal", || {
            m = row(&mgr, "refused").meta.exception;
            m.starts_with("retry ")
        });
        assert!(m.contains("Connection refused"), "{name}: {m}");
        assert!(!m.contains("os error"), "{name}: {m}");
        // Accepted but never answered: the call times out.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        mgr.create(
            "silent",
            BTreeMap::new(),
            BTreeMap::new(),
            connector(name, port),
        )
        .unwrap();
        mgr.start("silent").unwrap();
        wait_for(Duration::from_secs(5), "the timeout", || {
            m = row(&mgr, "silent").meta.exception;
            m.starts_with("retry ")
        });
        assert!(
            m.contains("no reply within 300 ms (pipe_connector_timeout_ms)"),
            "{name}: {m}"
        );
        mgr.shutdown();
        drop(silent);
    }
}
