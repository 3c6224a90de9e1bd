//! A pipe over a real change log never ships a point deleted before it
//! read it (DESIGN invariant 12), whether the deletion went through the
//! deletion index or was logged around it; the index survives a reopen.
//! The receiver is a minimal `pipeTransfer` server in the test that
//! decodes what it gets with the protocol crate.

mod peer;

use peer::open_log;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::event::Event;
use protocol::message::{reply, Call};
use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp, TSStatus};
use protocol::tablet::{Column, Tablet};
use replicator::{PipeManager, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tablet(device: &str, times: &[i64]) -> Tablet {
    Tablet {
        device: device.into(),
        measurements: vec!["s".into(), "t".into()],
        columns: vec![
            Column::Double(times.iter().map(|&t| t as f64).collect()),
            Column::Double(times.iter().map(|&t| t as f64).collect()),
        ],
        nulls: vec![None, None],
        times: times.to_vec(),
        aligned: false,
    }
}

/// Every (device, measurement, time) point the server received.
type Points = Arc<Mutex<Vec<(String, String, i64)>>>;

async fn serve(points: Points) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let points = points.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
                    s.read_exact(&mut frame).await.unwrap();
                    let out = {
                        let mut call = Call::parse(&frame).unwrap();
                        let req: TPipeTransferReq = call.arg_at(-1).unwrap().unwrap();
                        let body = req.body.unwrap_or_default();
                        let tablets = match req.type_ {
                            Some(pipe::TRANSFER_TABLET_RAW) => {
                                vec![Tablet::deserialize_v12(&body).unwrap()]
                            }
                            Some(pipe::TRANSFER_TABLET_BATCH) => pipe::read_batch(&body)
                                .unwrap()
                                .tablets
                                .into_iter()
                                .map(|t| t.0)
                                .collect(),
                            _ => vec![],
                        };
                        let mut p = points.lock().unwrap();
                        for t in tablets {
                            for (c, m) in t.measurements.iter().enumerate() {
                                for (r, &time) in t.times.iter().enumerate() {
                                    if !t.is_null(c, r) {
                                        p.push((t.device.clone(), m.clone(), time));
                                    }
                                }
                            }
                        }
                        let resp = TPipeTransferResp {
                            status: TSStatus {
                                code: 200,
                                message: None,
                                sub_status: None,
                                redirect_node: None,
                                need_retry: None,
                            },
                            body: None,
                        };
                        reply(call.proto, &call.name, call.seq, &resp)
                    };
                    s.write_all(&out).await.unwrap();
                }
            });
        }
    });
    port
}

fn append(log: &wal::Log, ev: Event) -> u64 {
    let (k, p) = ev.encode();
    log.append(k, &p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_points_never_travel_indexed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let sys = dir.path().join("system");
    let settings = Settings {
        retry_base: Duration::from_millis(10),
        ..Settings::default()
    };
    let mgr = PipeManager::open(
        log.clone(),
        &sys,
        settings.clone(),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    append(&log, Event::Tablet(tablet("root.a.d", &[1, 2, 3])));
    append(&log, Event::Tablet(tablet("root.b.d", &[1, 2])));
    // Through the index: d.s at 2.
    let ev = Event::Delete {
        patterns: vec!["root.a.d.s".into()],
        min: 2,
        max: 2,
    };
    mgr.deletions()
        .record(vec!["root.a.d.s".into()], 2, 2, || {
            let (k, p) = ev.encode();
            log.append(k, &p)
        })
        .unwrap();
    // Around the index (a writer that bypassed it), in the same batch: a
    // whole database.
    append(
        &log,
        Event::Schema(protocol::event::SchemaOp::DeleteDatabase("root.b".into())),
    );
    append(&log, Event::Tablet(tablet("root.a.d", &[2])));
    drop(mgr);
    // Reopened: the index holds both.
    let mgr = PipeManager::open(
        log.clone(),
        &sys,
        settings,
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    let points: Points = Arc::default();
    let port = serve(points.clone()).await;
    let connector = BTreeMap::from([
        (
            "connector".to_string(),
            "iotdb-thrift-connector".to_string(),
        ),
        ("connector.ip".to_string(), "127.0.0.1".to_string()),
        ("connector.port".to_string(), port.to_string()),
    ]);
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector)
        .unwrap();
    mgr.start("p").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while mgr.show(Some("p"), None).unwrap()[0].remaining_events > 0 {
        assert!(Instant::now() < deadline, "the pipe did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = points.lock().unwrap().clone();
    got.sort();
    let p = |d: &str, m: &str, t: i64| (d.to_string(), m.to_string(), t);
    assert_eq!(
        got,
        vec![
            p("root.a.d", "s", 1),
            // Written again after the deletion.
            p("root.a.d", "s", 2),
            p("root.a.d", "s", 3),
            p("root.a.d", "t", 1),
            p("root.a.d", "t", 2),
            p("root.a.d", "t", 2),
            p("root.a.d", "t", 3),
        ]
    );
    mgr.shutdown();
}
