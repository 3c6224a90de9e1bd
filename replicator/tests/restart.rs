//! Issue 12: pipes that never give up. A pipe whose transfers keep failing
//! stops (STOPPED, after `max_number_of_sync_file_retry`) and, with
//! `pipe_auto_restart_enabled`, restarts after a capped, jittered wait, for
//! as long as the failures last; SHOW PIPES says when. A pipe a person
//! stopped stays stopped, a failure a restart cannot fix (a record that
//! does not decode) is not restarted, a wait survives the manager's
//! restart, and with auto-restart off the seed's behaviour is unchanged.

mod peer;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use peer::runtime;
use peer::{open_log, Mode, Peer};
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

fn connector(port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "connector".to_string(),
            "iotdb-thrift-connector".to_string(),
        ),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
    ])
}

/// Quick retries and restarts: a failing pipe stops after 2 attempts
/// (about 30 ms) and restarts 100 ms later at first, 400 ms at most.
fn quick() -> Settings {
    Settings {
        max_retry: 1,
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(20),
        restart_base: Duration::from_millis(100),
        restart_cap: Duration::from_millis(400),
        ..Settings::default()
    }
}

fn row(mgr: &PipeManager, id: &str) -> PipeRow {
    mgr.show(Some(id), None).unwrap().remove(0)
}

/// Polls SHOW PIPE `id` until `cond` holds (at most `limit`); the row.
fn wait_row(
    mgr: &PipeManager,
    id: &str,
    limit: Duration,
    what: &str,
    mut cond: impl FnMut(&PipeRow) -> bool,
) -> PipeRow {
    let end = Instant::now() + limit;
    loop {
        let r = row(mgr, id);
        if cond(&r) {
            return r;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {r:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn waiting(r: &PipeRow) -> bool {
    r.meta.state.name() == "STOPPED" && r.meta.restart.is_some()
}

fn delivered(peer: &Peer, n: usize) -> bool {
    peer.seen(|s| s.acked.len()) >= n
}

#[test]
fn a_failing_pipe_restarts_with_growing_waits_until_the_receiver_answers() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for t in 0..20 {
        append(&log, "root.a.d", t);
    }
    let peer = Peer::start(Mode::Refuse);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        quick(),
        rt.handle().clone(),
    )
    .unwrap();
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector(peer.port))
        .unwrap();
    mgr.start("p").unwrap();
    // Stopped on its own, waiting: STOPPED, with when and why.
    let r = wait_row(&mgr, "p", Duration::from_secs(10), "a wait", waiting);
    let m = &r.meta.exception;
    assert!(
        m.starts_with("auto-restart at ")
            && m.contains(
                "(attempt 1): transfer failed 2 times (max_number_of_sync_file_retry = 1)"
            ),
        "{m}"
    );
    // It is restarted (RUNNING again), fails again, and each restart that
    // got nothing through waits longer: the attempts count up.
    let mut seen_running = false;
    let mut attempts = vec![1];
    let end = Instant::now() + Duration::from_secs(20);
    while attempts.last() < Some(&5) {
        assert!(Instant::now() < end, "attempts so far: {attempts:?}");
        let r = row(&mgr, "p");
        seen_running |= r.meta.state.name() == "RUNNING";
        if let Some(x) = r.meta.restart {
            if attempts.last() != Some(&x.attempt) {
                attempts.push(x.attempt);
            }
            // Never longer than the cap (with its jitter) from now.
            let left = x.at_ms - now_ms();
            assert!(left <= 500 + 50, "restart {left} ms away: {x:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(seen_running, "restarted in between");
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    // The receiver answers again: RUNNING within one capped wait (plus the
    // run's own retries), everything delivered, nothing waiting.
    peer.set_mode(Mode::Answer);
    let back = Instant::now();
    wait_row(&mgr, "p", Duration::from_secs(10), "delivery", |r| {
        r.meta.state.name() == "RUNNING" && delivered(&peer, 20)
    });
    assert!(
        back.elapsed() < Duration::from_millis(500 + 2000),
        "took {:?}",
        back.elapsed()
    );
    let r = row(&mgr, "p");
    assert_eq!((r.meta.restart, r.meta.exception.as_str()), (None, ""));
    // A new failure after that progress starts the count again.
    peer.set_mode(Mode::Refuse);
    append(&log, "root.a.d", 20);
    let r = wait_row(&mgr, "p", Duration::from_secs(10), "a new wait", waiting);
    assert_eq!(r.meta.restart.unwrap().attempt, 1, "{r:?}");
    mgr.shutdown();
}

#[test]
fn a_pipe_a_person_stopped_stays_stopped() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    append(&log, "root.a.d", 1);
    let peer = Peer::start(Mode::Refuse);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        quick(),
        rt.handle().clone(),
    )
    .unwrap();
    for id in ["waiting", "running"] {
        mgr.create(id, BTreeMap::new(), BTreeMap::new(), connector(peer.port))
            .unwrap();
        mgr.start(id).unwrap();
    }
    // STOP PIPE on a pipe waiting to restart, and on one running.
    wait_row(&mgr, "waiting", Duration::from_secs(10), "a wait", waiting);
    mgr.stop("waiting").unwrap();
    wait_row(&mgr, "running", Duration::from_secs(10), "a run", |r| {
        r.meta.state.name() == "RUNNING"
    });
    mgr.stop("running").unwrap();
    let stopped = row(&mgr, "waiting");
    assert_eq!(stopped.meta.restart, None);
    assert!(
        stopped
            .meta
            .exception
            .starts_with("transfer failed 2 times"),
        "why it had stopped, without a restart time: {}",
        stopped.meta.exception
    );
    // A request "running" wrote before its STOP may still wait in the
    // peer's socket (a reset does not take back bytes already received):
    // let the peer refuse it before it turns healthy, so that only a
    // restart could get anything acknowledged below.
    assert!(peer.wait_drained(Duration::from_secs(10)));
    peer.set_mode(Mode::Answer);
    // Several longest waits later, both are still stopped.
    std::thread::sleep(Duration::from_millis(1500));
    for id in ["waiting", "running"] {
        let r = row(&mgr, id);
        assert_eq!(
            (r.meta.state.name(), r.meta.restart),
            ("STOPPED", None),
            "{r:?}"
        );
    }
    assert!(!delivered(&peer, 1));
    // And the same after the node restarts.
    mgr.shutdown();
    drop(mgr);
    let mgr = PipeManager::open(
        log,
        &dir.path().join("system"),
        quick(),
        rt.handle().clone(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(row(&mgr, "waiting").meta.state.name(), "STOPPED");
    assert!(!delivered(&peer, 1));
    // START runs it.
    mgr.start("waiting").unwrap();
    wait_row(&mgr, "waiting", Duration::from_secs(10), "delivery", |_| {
        delivered(&peer, 1)
    });
    mgr.shutdown();
}

#[test]
fn a_record_that_does_not_decode_is_not_restarted() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    append(&log, "root.a.d", 1);
    // A device length that does not fit (the extractor reads the device
    // with a pattern).
    log.append(KIND_TABLET, &[0, 0, 0, 100, b'x']).unwrap();
    let peer = Peer::start(Mode::Answer);
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        quick(),
        rt.handle().clone(),
    )
    .unwrap();
    let extractor = BTreeMap::from([("extractor.pattern".to_string(), "root.a".to_string())]);
    mgr.create("p", extractor, BTreeMap::new(), connector(peer.port))
        .unwrap();
    mgr.start("p").unwrap();
    let r = wait_row(&mgr, "p", Duration::from_secs(10), "the stop", |r| {
        r.meta.state.name() == "STOPPED"
    });
    assert!(
        r.meta
            .exception
            .starts_with("change log record 1 does not decode"),
        "{r:?}"
    );
    assert_eq!(r.meta.restart, None);
    // Not restarted in a loop: still STOPPED several longest waits later,
    // and the record before it was sent once.
    std::thread::sleep(Duration::from_millis(1500));
    let r = row(&mgr, "p");
    assert_eq!((r.meta.state.name(), r.meta.restart), ("STOPPED", None));
    assert_eq!(peer.seen(|s| s.held.get(&1).copied()), Some(1));
    mgr.shutdown();
}

#[test]
fn a_pipe_waiting_to_restart_restarts_after_the_node_restarts() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for t in 0..5 {
        append(&log, "root.a.d", t);
    }
    let peer = Peer::start(Mode::Refuse);
    // A wait long enough to shut down in: 2 s.
    let slow = Settings {
        restart_base: Duration::from_secs(2),
        restart_cap: Duration::from_secs(2),
        ..quick()
    };
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        slow.clone(),
        rt.handle().clone(),
    )
    .unwrap();
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector(peer.port))
        .unwrap();
    mgr.start("p").unwrap();
    let r = wait_row(&mgr, "p", Duration::from_secs(10), "a wait", waiting);
    let due = r.meta.restart.unwrap();
    mgr.shutdown();
    drop(mgr);
    peer.set_mode(Mode::Answer);
    // Nothing restarts it while the node is down.
    std::thread::sleep(Duration::from_millis(2600));
    assert!(!delivered(&peer, 1));
    let mgr =
        PipeManager::open(log, &dir.path().join("system"), slow, rt.handle().clone()).unwrap();
    // Overdue: it restarts at once and delivers.
    assert!(due.at_ms < now_ms());
    wait_row(&mgr, "p", Duration::from_secs(5), "delivery", |r| {
        r.meta.state.name() == "RUNNING" && delivered(&peer, 5)
    });
    mgr.shutdown();
}

#[test]
fn with_auto_restart_off_a_failed_pipe_stays_stopped_as_the_seed_says() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    append(&log, "root.a.d", 1);
    let peer = Peer::start(Mode::Refuse);
    let off = Settings {
        auto_restart: false,
        ..quick()
    };
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        off,
        rt.handle().clone(),
    )
    .unwrap();
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector(peer.port))
        .unwrap();
    mgr.start("p").unwrap();
    let r = wait_row(&mgr, "p", Duration::from_secs(10), "the stop", |r| {
        r.meta.state.name() == "STOPPED"
    });
    assert_eq!(r.meta.restart, None);
    assert!(
        r.meta
            .exception
            .starts_with("transfer failed 2 times (max_number_of_sync_file_retry = 1): "),
        "{r:?}"
    );
    peer.set_mode(Mode::Answer);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(row(&mgr, "p").meta.state.name(), "STOPPED");
    assert!(!delivered(&peer, 1));

    // Turned on (LOAD CONFIGURATION): pipes that fail from then on wait to
    // restart; turned off again, the waits are dropped at once.
    peer.set_mode(Mode::Refuse);
    mgr.update_settings(Settings {
        restart_base: Duration::from_secs(30),
        restart_cap: Duration::from_secs(30),
        ..quick()
    });
    mgr.start("p").unwrap();
    let r = wait_row(&mgr, "p", Duration::from_secs(10), "a wait", waiting);
    assert!(r.meta.restart.unwrap().at_ms > now_ms() + 20_000, "{r:?}");
    // A shorter longest wait brings the restart forward.
    mgr.update_settings(Settings {
        restart_base: Duration::from_secs(30),
        restart_cap: Duration::from_secs(1),
        ..quick()
    });
    let r = row(&mgr, "p");
    assert!(
        r.meta.restart.is_some_and(|x| x.at_ms <= now_ms() + 1000),
        "{r:?}"
    );
    mgr.update_settings(Settings {
        auto_restart: false,
        ..quick()
    });
    let r = row(&mgr, "p");
    assert_eq!((r.meta.state.name(), r.meta.restart), ("STOPPED", None));
    assert!(!r.meta.exception.contains("auto-restart"), "{r:?}");
    peer.set_mode(Mode::Answer);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(row(&mgr, "p").meta.state.name(), "STOPPED");
    mgr.shutdown();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
