//! STOP PIPE and DROP PIPE against receivers that do not answer (issue 7,
//! finding 11): they return within 2 s whatever the receiver does, nothing
//! is sent for the pipe after they returned, a pipe sharing the stuck
//! pipe's connector stops as promptly, and what was not acknowledged is
//! sent again at the next START.

mod peer;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use peer::wait_for;
use peer::{open_log, Mode, Peer};
use protocol::event::KIND_TABLET;
use protocol::tablet::{Column, Tablet};
use replicator::{consumer_name, PipeManager, Settings};

/// STOP / DROP must return within this (the bound).
const PROMPT: Duration = Duration::from_secs(2);

/// Appends one tablet of `rows` rows of one DOUBLE to `device`, its first
/// time `t0`.
fn append(log: &wal::Log, device: &str, t0: i64, rows: usize) {
    let t = Tablet {
        device: device.into(),
        measurements: vec!["s".into()],
        columns: vec![Column::Double(vec![0.5; rows])],
        nulls: vec![None],
        times: (t0..t0 + rows as i64).collect(),
        aligned: false,
    };
    log.append(KIND_TABLET, &t.serialize_v12()).unwrap();
}

fn connector(port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("connector".into(), "iotdb-thrift-connector".into()),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
    ])
}

fn pattern(p: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("extractor.pattern".into(), p.into())])
}

/// The default connector timeout (15 min) unless a test says otherwise: a
/// stuck call is stuck for the whole test.
fn settings() -> Settings {
    Settings {
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(100),
        ..Settings::default()
    }
}

/// Runs `f` and returns how long it took, asserting it took under
/// [`PROMPT`].
fn prompt(what: &str, f: impl FnOnce()) -> Instant {
    let t = Instant::now();
    f();
    let took = t.elapsed();
    assert!(took < PROMPT, "{what} took {took:?}");
    Instant::now()
}

/// After `done` (when STOP / DROP returned, counted by `at_return`), the
/// peer gets nothing more within `watch`: no connection, no byte (it may
/// get fewer: a reset connection's queue can be discarded).
fn nothing_after(
    peer: &Peer,
    what: &str,
    done: Instant,
    at_return: peer::Received,
    watch: Duration,
) {
    std::thread::sleep(watch);
    let now = peer.received();
    assert!(
        now.conns == at_return.conns && now.bytes <= at_return.bytes,
        "the peer received more after {what} returned ({now:?}, at return {at_return:?}); \
         reads after it (conn, after, bytes): {:?}",
        peer.reads_after(done)
    );
}

#[test]
fn stop_and_drop_return_promptly_against_a_receiver_that_never_answers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for i in 0..10 {
        append(&log, "root.a.d", i * 10, 10);
    }
    let peer = Peer::start(Mode::Silent);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings(),
        rt.handle().clone(),
    )
    .unwrap();
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector(peer.port))
        .unwrap();
    mgr.start("p").unwrap();
    // The batch is in flight: the peer read it and will never answer.
    wait_for(
        Duration::from_secs(10),
        "the transfer to reach the peer",
        || peer.seen(|s| !s.requests.is_empty()),
    );
    let done = prompt("STOP PIPE", || mgr.stop("p").unwrap());
    let at_stop = peer.received();
    // Nothing was acknowledged: nothing is committed.
    assert_eq!(log.committed(&consumer_name("p")), Some(0));
    nothing_after(&peer, "STOP", done, at_stop, Duration::from_millis(300));

    // Again, and DROP this time.
    let before = peer.seen(|s| s.requests.len());
    mgr.start("p").unwrap();
    wait_for(
        Duration::from_secs(10),
        "the transfer to be sent again",
        || peer.seen(|s| s.requests.len() > before),
    );
    let done = prompt("DROP PIPE", || mgr.drop_pipe("p").unwrap());
    let at_drop = peer.received();
    assert!(mgr.show(None, None).unwrap().is_empty());
    nothing_after(&peer, "DROP", done, at_drop, Duration::from_secs(2));
    mgr.shutdown();
}

#[test]
fn what_a_stop_abandoned_is_sent_again_at_start() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    // Delivered one record per request while the peer answers.
    let settings = Settings {
        batch_records: 1,
        ..settings()
    };
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings,
        rt.handle().clone(),
    )
    .unwrap();
    let peer = Peer::start(Mode::Answer);
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector(peer.port))
        .unwrap();
    mgr.start("p").unwrap();
    for i in 0..3 {
        append(&log, "root.a.d", i, 1);
    }
    wait_for(Duration::from_secs(10), "three acknowledgements", || {
        peer.seen(|s| s.acked.len() == 3)
    });
    // The fourth is read and never answered, then abandoned by STOP.
    peer.set_mode(Mode::Silent);
    append(&log, "root.a.d", 3, 1);
    wait_for(
        Duration::from_secs(10),
        "the fourth to be in flight",
        || peer.seen(|s| s.requests.iter().any(|r| r.ids == [3])),
    );
    prompt("STOP PIPE", || mgr.stop("p").unwrap());
    // What was acknowledged is committed; what was abandoned is not.
    assert_eq!(log.committed(&consumer_name("p")), Some(3));
    assert!(!peer.seen(|s| s.acked.contains(&3)));
    peer.set_mode(Mode::Answer);
    mgr.start("p").unwrap();
    wait_for(
        Duration::from_secs(10),
        "the fourth to be acknowledged",
        || log.committed(&consumer_name("p")) == Some(4),
    );
    peer.seen(|s| {
        assert_eq!(s.acked, (0..4).collect());
        assert_eq!(s.held.values().copied().collect::<Vec<_>>(), [1, 1, 1, 1]);
    });
    mgr.shutdown();
}

#[test]
fn a_pipe_sharing_a_stuck_connector_stops_promptly() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for i in 0..5 {
        append(&log, "root.a.d", i * 10, 10);
        append(&log, "root.b.d", i * 10, 10);
    }
    let peer = Peer::start(Mode::Silent);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings(),
        rt.handle().clone(),
    )
    .unwrap();
    // Identical connector attributes: one connector, one connection.
    mgr.create(
        "pa",
        pattern("root.a"),
        BTreeMap::new(),
        connector(peer.port),
    )
    .unwrap();
    mgr.create(
        "pb",
        pattern("root.b"),
        BTreeMap::new(),
        connector(peer.port),
    )
    .unwrap();
    let used: Vec<String> = mgr
        .show(None, Some("pa"))
        .unwrap()
        .into_iter()
        .map(|r| r.meta.id)
        .collect();
    assert_eq!(used, ["pa", "pb"]);
    mgr.start("pa").unwrap();
    mgr.start("pb").unwrap();
    // One pipe's request is stuck on the silent peer, holding the shared
    // connector; the other waits for the connector.
    wait_for(
        Duration::from_secs(10),
        "a transfer to reach the peer",
        || peer.seen(|s| !s.requests.is_empty()),
    );
    std::thread::sleep(Duration::from_millis(100));
    let (stuck, waiting) = peer.seen(|s| {
        assert_eq!(s.requests.len(), 1, "one request in flight at a time");
        if s.requests[0].devices[0] == "root.a.d" {
            ("pa", "pb")
        } else {
            ("pb", "pa")
        }
    });
    prompt(
        &format!("STOP PIPE {waiting} (waiting for the connector)"),
        || mgr.stop(waiting).unwrap(),
    );
    let done = prompt(
        &format!("STOP PIPE {stuck} (stuck in its transfer)"),
        || mgr.stop(stuck).unwrap(),
    );
    let at_stop = peer.received();
    nothing_after(&peer, "STOP", done, at_stop, Duration::from_millis(300));
    // The connector works again once the peer answers: both deliver all.
    peer.set_mode(Mode::Answer);
    mgr.start("pa").unwrap();
    mgr.start("pb").unwrap();
    wait_for(
        Duration::from_secs(10),
        "both pipes to commit everything",
        || {
            log.committed(&consumer_name("pa")) == Some(10)
                && log.committed(&consumer_name("pb")) == Some(10)
        },
    );
    mgr.shutdown();
}

#[test]
fn a_request_stuck_in_a_full_socket_is_reset_not_sent_after_drop() {
    stuck_in_a_full_socket("iotdb-thrift-connector");
}

/// The same with the async connector: its request is written on a selector
/// thread, and DROP aborts it there (and waits for that) before it returns.
#[test]
fn an_async_request_stuck_in_a_full_socket_is_reset_not_sent_after_drop() {
    stuck_in_a_full_socket("iotdb-thrift-async-connector");
}

fn stuck_in_a_full_socket(plugin: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    // 16 MiB of tablets: one request, far more than the socket buffers of
    // both ends hold, so the sender blocks writing it.
    for i in 0..64 {
        append(&log, "root.a.d", i * 32_768, 32_768);
    }
    let peer = Peer::start(Mode::Deaf);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings(),
        rt.handle().clone(),
    )
    .unwrap();
    let mut c = connector(peer.port);
    c.insert("connector".into(), plugin.into());
    // The async connector hands its lanes a quarter of the size at a time:
    // its first request is then 16 MiB too.
    c.insert("connector.batch.size-bytes".into(), (64 << 20).to_string());
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), c)
        .unwrap();
    // The peer answers the handshake, then stops reading.
    peer.set_mode(Mode::DeafAfterHandshake);
    mgr.start("p").unwrap();
    wait_for(Duration::from_secs(10), "the handshake", || {
        peer.received().bytes > 0
    });
    // Wait until the request fills the peer's receive queue and stops
    // growing: the sender is blocked in its write.
    let mut last = 0;
    wait_for(Duration::from_secs(20), "the sender to block", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = peer.received().bytes;
        let stalled = now > 64 << 10 && now == last;
        last = now;
        stalled
    });
    let done = prompt("DROP PIPE", || mgr.drop_pipe("p").unwrap());
    let at_drop = peer.received();
    // Now the peer reads everything it can: what the sender's kernel still
    // held of the abandoned request must not arrive.
    peer.set_mode(Mode::Silent);
    nothing_after(&peer, "DROP", done, at_drop, Duration::from_secs(1));
    mgr.shutdown();
}

/// The async connector with several requests in flight on a receiver that
/// never answers: STOP and DROP still return promptly and nothing is sent
/// after they returned (every request's connection reset, none left on the
/// selector threads).
#[test]
fn stop_and_drop_are_prompt_with_several_async_requests_in_flight() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for i in 0..64 {
        append(&log, &format!("root.m.d{}", i % 16), i * 10, 10);
    }
    let peer = Peer::start(Mode::Silent);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings(),
        rt.handle().clone(),
    )
    .unwrap();
    let mut c = connector(peer.port);
    c.insert("connector".into(), "iotdb-thrift-async-connector".into());
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), c)
        .unwrap();
    for round in 0..2 {
        let before = peer.seen(|s| s.requests.len());
        mgr.start("p").unwrap();
        wait_for(
            Duration::from_secs(10),
            "several requests in flight",
            || peer.seen(|s| s.requests.len() >= before + 4),
        );
        let done = if round == 0 {
            prompt("STOP PIPE", || mgr.stop("p").unwrap())
        } else {
            prompt("DROP PIPE", || mgr.drop_pipe("p").unwrap())
        };
        let at_return = peer.received();
        if round == 0 {
            assert_eq!(log.committed(&consumer_name("p")), Some(0));
        }
        nothing_after(
            &peer,
            "STOP / DROP",
            done,
            at_return,
            Duration::from_millis(500),
        );
    }
    mgr.shutdown();
}
