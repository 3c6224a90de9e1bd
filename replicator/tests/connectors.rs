//! The thrift connectors against a receiver whose behaviour the test
//! controls (`tests/peer`): replies that come back out of order (async
//! connector), a receiver that knows no tablet batches (IoTDB 1.2.0: 1801),
//! batching switched off, and an idle connection the receiver closed.

mod peer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use peer::wait_for;
use peer::{open_log, Mode, Peer};
use protocol::event::KIND_TABLET;
use protocol::tablet::{Column, Tablet};
use replicator::{consumer_name, PipeManager, Settings};

const SYNC: &str = "iotdb-thrift-sync-connector";
const ASYNC: &str = "iotdb-thrift-async-connector";

/// Appends record `id`: one row at time `id` on `device`, with an `id`
/// column (the peer's record id).
fn append(log: &wal::Log, device: &str, id: i64) {
    let t = Tablet {
        device: device.into(),
        measurements: vec!["s".into(), "id".into()],
        columns: vec![Column::Double(vec![id as f64]), Column::Int64(vec![id])],
        nulls: vec![None, None],
        times: vec![id],
        aligned: false,
    };
    assert_eq!(
        log.append(KIND_TABLET, &t.serialize_v12()).unwrap(),
        id as u64
    );
}

fn connector(name: &str, port: u16, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut c = BTreeMap::from([
        ("connector".to_string(), name.to_string()),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
    ]);
    c.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    c
}

struct Node {
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    log: Arc<wal::Log>,
    mgr: PipeManager,
}

fn node(settings: Settings) -> Node {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings,
        rt.handle().clone(),
    )
    .unwrap();
    Node {
        _rt: rt,
        _dir: dir,
        log,
        mgr,
    }
}

impl Node {
    fn committed(&self) -> u64 {
        self.log.committed(&consumer_name("p")).unwrap()
    }

    fn row(&self) -> replicator::PipeRow {
        self.mgr.show(Some("p"), None).unwrap().remove(0)
    }
}

/// Issue 9: several requests in flight, their replies released in the
/// reverse order of their records: the committed offset stays below the
/// first record of every request not acknowledged yet, and reaches each
/// new contiguous acknowledged prefix.
#[test]
fn the_committed_offset_never_passes_an_unacknowledged_request() {
    let n = node(Settings {
        async_max_clients: 8,
        ..Settings::default()
    });
    // 24 records over 8 devices, all there before the pipe starts, so they
    // are handed to the lanes together: one request per lane in use.
    for id in 0..24 {
        append(&n.log, &format!("root.o.d{}", id % 8), id);
    }
    let peer = Peer::start(Mode::Hold);
    n.mgr
        .create(
            "p",
            BTreeMap::new(),
            BTreeMap::new(),
            connector(ASYNC, peer.port, &[]),
        )
        .unwrap();
    n.mgr.start("p").unwrap();
    wait_for(Duration::from_secs(10), "every record in flight", || {
        peer.seen(|s| s.requests.iter().map(|r| r.ids.len()).sum::<usize>() == 24)
    });
    let requests: Vec<(usize, Vec<i64>)> = peer.seen(|s| {
        s.requests
            .iter()
            .enumerate()
            .map(|(k, r)| (k, r.ids.clone()))
            .collect()
    });
    assert!(
        requests.len() >= 3,
        "several requests in flight at once: {requests:?}"
    );
    // The one holding record 0 goes last; the others newest first.
    let mut order = requests.clone();
    order.sort_by_key(|(_, ids)| std::cmp::Reverse(ids[0]));
    let mut unreleased: Vec<(usize, Vec<i64>)> = requests;
    for (k, ids) in order {
        // Longer than the commit interval (100 ms): a commit that could
        // happen has happened.
        std::thread::sleep(Duration::from_millis(300));
        let before = n.committed();
        // The first record of a request still held bounds the commit.
        let bound = unreleased.iter().map(|(_, ids)| ids[0]).min().unwrap() as u64;
        assert!(
            before <= bound,
            "committed {before} passes request(s) not acknowledged (first record {bound})"
        );
        peer.release(k);
        unreleased.retain(|(j, _)| *j != k);
        let next = unreleased
            .iter()
            .map(|(_, ids)| ids[0] as u64)
            .min()
            .unwrap_or(24);
        wait_for(Duration::from_secs(10), "the commit to catch up", || {
            peer.seen(|s| ids.iter().all(|i| s.acked.contains(i)))
        });
        // It moves up to the next request held (by its commit interval),
        // never past it.
        wait_for(
            Duration::from_secs(5),
            &format!("committed {next} after releasing {ids:?}"),
            || {
                let c = n.committed();
                assert!(c <= next, "committed {c} passes request held from {next}");
                c == next
            },
        );
    }
    peer.seen(|s| {
        assert_eq!(s.acked, (0..24).collect(), "each record acknowledged");
        assert!(s.held.values().all(|&h| h == 1), "applied once each");
    });
    n.mgr.shutdown();
}

/// Issue 9: an IoTDB 1.2.0 receiver answers a tablet batch with 1801
/// (unknown type); it gets single tablets from then on, and that answer is
/// no failed attempt: with no retries allowed the pipe still delivers.
#[test]
fn a_receiver_that_answers_batches_1801_gets_single_tablets() {
    for name in [SYNC, ASYNC] {
        let n = node(Settings {
            max_retry: 0,
            async_max_clients: 2,
            ..Settings::default()
        });
        for id in 0..20 {
            append(&n.log, &format!("root.v.d{}", id % 2), id);
        }
        let peer = Peer::start(Mode::Answer);
        peer.refuse_batches();
        n.mgr
            .create(
                "p",
                BTreeMap::new(),
                BTreeMap::new(),
                connector(name, peer.port, &[]),
            )
            .unwrap();
        n.mgr.start("p").unwrap();
        wait_for(Duration::from_secs(10), "everything committed", || {
            n.committed() == 20
        });
        // Realtime after the switch: singles from the start.
        let before = peer.seen(|s| s.requests.len());
        for id in 20..30 {
            append(&n.log, &format!("root.v.d{}", id % 2), id);
        }
        wait_for(Duration::from_secs(10), "the realtime records", || {
            n.committed() == 30
        });
        let row = n.row();
        assert_eq!(row.meta.state.name(), "RUNNING", "{name}: {row:?}");
        assert_eq!(row.meta.exception, "", "{name}");
        peer.seen(|s| {
            let refused: Vec<_> = s.requests.iter().filter(|r| r.code == 1801).collect();
            assert!(!refused.is_empty(), "{name}: a batch was tried first");
            assert!(refused.iter().all(|r| r.kind == 6), "{name}");
            for r in s.requests.iter().filter(|r| r.code != 1801) {
                assert_eq!((r.kind, r.ids.len(), r.code), (3, 1, 200), "{name}: {r:?}");
            }
            assert!(s.requests[before..].iter().all(|r| r.kind == 3), "{name}");
            assert_eq!(s.acked, (0..30).collect(), "{name}");
            assert!(
                s.held.values().all(|&h| h == 1),
                "{name}: nothing of a refused batch applied, nothing sent twice"
            );
        });
        n.mgr.shutdown();
    }
}

/// `'connector.batch.enable'='false'`: one tablet per request (type 3),
/// the only form an IoTDB 1.2.0 receiver knows.
#[test]
fn batching_off_sends_one_tablet_per_request() {
    for name in [SYNC, ASYNC] {
        let n = node(Settings {
            async_max_clients: 2,
            ..Settings::default()
        });
        for id in 0..12 {
            append(&n.log, &format!("root.w.d{}", id % 3), id);
        }
        let peer = Peer::start(Mode::Answer);
        n.mgr
            .create(
                "p",
                BTreeMap::new(),
                BTreeMap::new(),
                connector(name, peer.port, &[("connector.batch.enable", "false")]),
            )
            .unwrap();
        n.mgr.start("p").unwrap();
        wait_for(Duration::from_secs(10), "everything committed", || {
            n.committed() == 12
        });
        peer.seen(|s| {
            assert_eq!(s.requests.len(), 12, "{name}");
            assert!(
                s.requests.iter().all(|r| r.kind == 3 && r.ids.len() == 1),
                "{name}: {:?}",
                s.requests
            );
        });
        n.mgr.shutdown();
    }
}

/// Issue 10 (stale connection): a node closes a connection that never
/// logged in after `dn_connection_timeout_ms` without a request, a pipe's
/// idle one included. The next transfer notices before sending, connects
/// again and delivers: no failed attempt (with no retries allowed the pipe
/// still runs), no retry message.
#[test]
fn an_idle_connection_the_receiver_closed_is_replaced_without_a_retry() {
    for name in [SYNC, ASYNC] {
        let n = node(Settings {
            max_retry: 0,
            async_max_clients: 2,
            ..Settings::default()
        });
        let peer = Peer::start(Mode::Answer);
        n.mgr
            .create(
                "p",
                BTreeMap::new(),
                BTreeMap::new(),
                connector(name, peer.port, &[]),
            )
            .unwrap();
        n.mgr.start("p").unwrap();
        for round in 0..3 {
            let base = round * 4;
            for id in base..base + 4 {
                append(&n.log, &format!("root.i.d{}", id % 2), id);
            }
            wait_for(Duration::from_secs(10), "the records committed", || {
                n.committed() == (base + 4) as u64
            });
            // The receiver closes every connection, idle now.
            peer.close_connections();
            std::thread::sleep(Duration::from_millis(100));
        }
        let row = n.row();
        assert_eq!(row.meta.state.name(), "RUNNING", "{name}: {row:?}");
        assert_eq!(row.meta.exception, "", "{name}");
        peer.seen(|s| {
            assert_eq!(s.acked, (0..12).collect(), "{name}");
            assert!(s.held.values().all(|&h| h == 1), "{name}: nothing resent");
        });
        assert!(
            peer.received().conns >= 3,
            "{name}: a new connection after each close"
        );
        n.mgr.shutdown();
    }
}

/// Duplicates stay bounded with requests out of order: a lane stuck on its
/// request holds the others back once the window (what was handed to the
/// lanes from the acknowledged offset on) reaches
/// `connector.batch.size-bytes`, so a fault then sends again at most that
/// window, not everything the other lanes delivered meanwhile.
#[test]
fn a_stuck_lane_holds_the_others_back_so_a_fault_resends_a_bounded_window() {
    let n = node(Settings {
        async_max_clients: 8,
        ..Settings::default()
    });
    let peer = Peer::start(Mode::Answer);
    // The first record's device is held; the others are answered.
    peer.hold_device("root.k.d0");
    let size = 4096;
    n.mgr
        .create(
            "p",
            BTreeMap::new(),
            BTreeMap::new(),
            connector(
                ASYNC,
                peer.port,
                &[("connector.batch.size-bytes", &size.to_string())],
            ),
        )
        .unwrap();
    n.mgr.start("p").unwrap();
    append(&n.log, "root.k.d0", 0);
    for id in 1..400 {
        append(&n.log, &format!("root.k.d{}", 1 + id % 7), id);
    }
    let tablet = {
        let t = Tablet {
            device: "root.k.d1".into(),
            measurements: vec!["s".into(), "id".into()],
            columns: vec![Column::Double(vec![1.0]), Column::Int64(vec![1])],
            nulls: vec![None, None],
            times: vec![1],
            aligned: false,
        };
        t.serialize_v12().len()
    };
    // The window: the size, plus the batch that crossed it (a quarter of
    // the size, rounded up to 1 KiB, plus one tablet).
    let bound = (size + size / 4 + 2 * tablet) / tablet;
    std::thread::sleep(Duration::from_millis(500));
    let ahead = peer.seen(|s| s.acked.len());
    assert!(ahead > 0, "the other lanes went on");
    assert!(
        ahead <= bound,
        "{ahead} records delivered past the stuck one (window bound {bound})"
    );
    assert_eq!(n.committed(), 0, "nothing passes the stuck record");
    // A fault: STOP abandons the stuck request; START resends from 0.
    n.mgr.stop("p").unwrap();
    peer.stop_holding();
    n.mgr.start("p").unwrap();
    wait_for(Duration::from_secs(10), "everything committed", || {
        n.committed() == 400
    });
    peer.seen(|s| {
        let twice = s.held.values().filter(|&&h| h > 1).count();
        assert!(
            twice <= bound + 1,
            "{twice} records applied twice (window bound {bound} + the stuck one)"
        );
        assert_eq!(s.held.len(), 400);
    });
    n.mgr.shutdown();
}
