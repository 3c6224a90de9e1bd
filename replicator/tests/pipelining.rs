//! Issue 11: the sync connector keeps two requests in flight on its one
//! connection. The next batch's request goes out while the receiver works
//! on the current one; each batch is acknowledged (and its offset
//! committed) only by its own reply, in order; when a reply is lost with a
//! second request behind it, both are sent again, and nothing is skipped.

mod peer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use peer::{open_log, runtime, wait_for};
use peer::{Mode, Peer};
use protocol::event::KIND_TABLET;
use protocol::tablet::{Column, Tablet};
use replicator::{consumer_name, PipeManager, Settings};

/// Records of 20 rows each (about 400 bytes): a 1 KiB batch holds two or
/// three of them. The record's id (its first time) is its offset.
const RECORDS: i64 = 30;

/// A log holding [`RECORDS`] records.
fn filled_log(dir: &std::path::Path) -> Arc<wal::Log> {
    let log = open_log(dir);
    for k in 0..RECORDS {
        let tablet = Tablet {
            device: "root.s.d".into(),
            measurements: vec!["s".into()],
            columns: vec![Column::Double(
                (0..20).map(|i| (k * 20 + i) as f64).collect(),
            )],
            nulls: vec![None],
            times: (0..20).map(|i| k + i * 1_000).collect(),
            aligned: false,
        };
        assert_eq!(
            log.append(KIND_TABLET, &tablet.serialize_v12()).unwrap(),
            k as u64
        );
    }
    log
}

fn start_pipe(
    dir: &std::path::Path,
    log: &Arc<wal::Log>,
    port: u16,
    rt: &tokio::runtime::Runtime,
) -> PipeManager {
    let mgr = PipeManager::open(
        log.clone(),
        &dir.join("system"),
        Settings {
            retry_base: Duration::from_millis(10),
            retry_cap: Duration::from_millis(50),
            ..Settings::default()
        },
        rt.handle().clone(),
    )
    .unwrap();
    let connector = BTreeMap::from([
        (
            "connector".to_string(),
            "iotdb-thrift-connector".to_string(),
        ),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
        ("connector.batch.size-bytes".into(), "1024".into()),
    ]);
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector)
        .unwrap();
    mgr.start("p").unwrap();
    mgr
}

fn committed(log: &wal::Log) -> u64 {
    log.committed(&consumer_name("p")).unwrap_or(0)
}

/// A pipe over [`filled_log`] towards a peer that holds its replies,
/// once the first request is applied (its reply held) and a second one is
/// already on its way behind it.
struct Held {
    // Dropped in this order: the pipes, then their runtime.
    mgr: PipeManager,
    peer: Peer,
    log: Arc<wal::Log>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn one_held_one_behind() -> Held {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let log = filled_log(dir.path());
    let peer = Peer::start(Mode::Hold);
    let mgr = start_pipe(dir.path(), &log, peer.port, &rt);
    wait_for(Duration::from_secs(10), "the first request", || {
        peer.seen(|s| s.requests.len() == 1)
    });
    wait_for(
        Duration::from_secs(5),
        "a second request written before the first reply",
        || peer.queued_now() > 0,
    );
    Held {
        mgr,
        peer,
        log,
        _rt: rt,
        _dir: dir,
    }
}

#[test]
fn the_next_request_goes_out_before_the_reply_and_acknowledgements_stay_in_order() {
    let Held { mgr, peer, log, .. } = &one_held_one_behind();
    let first: Vec<i64> = peer.seen(|s| s.requests[0].ids.clone());
    assert!(
        first.len() >= 2 && first.len() < RECORDS as usize,
        "{first:?}"
    );
    // Unanswered, nothing of it is acknowledged (the commit loop runs
    // every few hundred ms).
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(committed(log), 0);

    // The first reply goes: its batch, and only its batch, is committed;
    // the second request (read now) is held, and a third goes out behind it.
    peer.release(0);
    wait_for(Duration::from_secs(5), "the second request read", || {
        peer.seen(|s| s.requests.len() == 2)
    });
    let first_end = *first.last().unwrap() as u64 + 1;
    wait_for(Duration::from_secs(5), "the first batch committed", || {
        committed(log) == first_end
    });
    wait_for(
        Duration::from_secs(5),
        "a third request behind the second",
        || peer.queued_now() > 0,
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(committed(log), first_end, "past an unanswered request");

    // Let everything through.
    peer.set_mode(Mode::Answer);
    peer.release(1);
    wait_for(Duration::from_secs(10), "everything committed", || {
        committed(log) == RECORDS as u64
    });
    peer.seen(|s| {
        // In order, each record once: the healthy path sends nothing twice.
        let ids: Vec<i64> = s.requests.iter().flat_map(|r| r.ids.clone()).collect();
        assert_eq!(ids, (0..RECORDS).collect::<Vec<_>>());
        assert!(s.held.values().all(|&n| n == 1), "{:?}", s.held);
        assert!(s.requests.iter().all(|r| r.code == 200 && r.conn == 0));
    });
    mgr.shutdown();
}

#[test]
fn a_lost_reply_with_a_request_behind_it_sends_both_again() {
    let Held { mgr, peer, log, .. } = &one_held_one_behind();
    // The first batch was applied; its reply is lost with the connection,
    // and the second request (unread) with it.
    peer.set_mode(Mode::Answer);
    peer.close_connections();
    peer.release(0);
    wait_for(Duration::from_secs(10), "everything committed", || {
        committed(log) == RECORDS as u64
    });
    peer.seen(|s| {
        let first = &s.requests[0].ids;
        // Sent again from the first unacknowledged record, on a new
        // connection, and nothing is missing.
        assert_eq!(s.requests[1].ids[0], first[0], "{:?}", s.requests);
        assert_eq!(s.requests[1].conn, 1);
        assert_eq!(
            s.held.keys().copied().collect::<Vec<_>>(),
            (0..RECORDS).collect::<Vec<_>>()
        );
        for id in first {
            assert_eq!(s.held[id], 2, "record {id}: applied, lost, applied again");
        }
    });
    mgr.shutdown();
}
