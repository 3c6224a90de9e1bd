//! A pipe over a real change log, sending to the real `pipeTransfer`
//! receiver behind a TCP listener in the test: what reaches the receiver,
//! and where the committed offset stops, when a record in the log does not
//! decode.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::event::KIND_TABLET;
use protocol::message::{reply, Call};
use protocol::rpc::TPipeTransferReq;
use protocol::tablet::{Column, Tablet};
use receiver::{Apply, ReceiverState};
use replicator::{consumer_name, PipeManager, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tablet(device: &str, t0: i64) -> Tablet {
    Tablet {
        device: device.into(),
        measurements: vec!["s".into()],
        columns: vec![Column::Double(vec![1.5, 2.5])],
        nulls: vec![None],
        times: vec![t0, t0 + 1],
        aligned: false,
    }
}

/// Records what the receiver applied (device, first time).
struct Recorder(Mutex<Vec<(String, i64)>>);

impl Apply for Recorder {
    fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)> {
        let mut got = self.0.lock().unwrap();
        for (t, _) in tablets {
            got.push((t.device.clone(), t.times[0]));
        }
        Ok(None)
    }
}

/// Serves `pipeTransfer` with the receiver crate on a loopback port.
async fn serve(rec: Arc<Recorder>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let rx = Arc::new(
        receiver::Receiver::open(receiver::ReceiverConfig {
            precision: "ms".into(),
            dir: dir.path().join("receiver"),
            ip_white_list: Default::default(),
            version: "1.1".into(),
            max_file_size: 1 << 30,
        })
        .unwrap(),
    );
    tokio::spawn(async move {
        let _dir = dir;
        while let Ok((mut s, _)) = l.accept().await {
            let rec = rec.clone();
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut state = ReceiverState::default();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
                    s.read_exact(&mut frame).await.unwrap();
                    let out = {
                        let mut call = Call::parse(&frame).unwrap();
                        assert_eq!(call.name, "pipeTransfer");
                        let req: TPipeTransferReq = call.arg().unwrap().unwrap();
                        let (resp, _) = rx.transfer(&mut state, req, &*rec);
                        reply(call.proto, &call.name, call.seq, &resp)
                    };
                    s.write_all(&out).await.unwrap(); // a whole frame
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_decode_stops_the_pipe_after_the_records_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        wal::Log::open(
            dir.path().join("wal"),
            wal::Config {
                fsync: wal::FsyncPolicy::Never,
                ..wal::Config::default()
            },
        )
        .unwrap(),
    );
    // Offsets 0 and 1 are good tablets, 2 does not decode, 3 is good.
    log.append(KIND_TABLET, &tablet("root.a.d", 10).serialize_v12())
        .unwrap();
    log.append(KIND_TABLET, &tablet("root.a.d", 20).serialize_v12())
        .unwrap();
    // A device length that does not fit: an extractor with a pattern
    // reads the device of every tablet. (With pattern `root` the stored
    // bytes go out unread, and the receiver refuses the whole request
    // with 1107 naming the tablet.)
    log.append(KIND_TABLET, &[0, 0, 0, 100, b'x']).unwrap();
    log.append(KIND_TABLET, &tablet("root.a.d", 40).serialize_v12())
        .unwrap();

    let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
    let port = serve(rec.clone()).await;
    let settings = Settings {
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(50),
        ..Settings::default()
    };
    let mgr = PipeManager::open(
        log.clone(),
        &dir.path().join("system"),
        settings,
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    let connector = BTreeMap::from([
        (
            "connector".to_string(),
            "iotdb-thrift-connector".to_string(),
        ),
        ("connector.ip".to_string(), "127.0.0.1".to_string()),
        ("connector.port".to_string(), port.to_string()),
    ]);
    // Created after the appends: all four records are history.
    let extractor = BTreeMap::from([("extractor.pattern".to_string(), "root.a".to_string())]);
    mgr.create("p", extractor, BTreeMap::new(), connector)
        .unwrap();
    mgr.start("p").unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let row = mgr.show(Some("p"), None).unwrap().remove(0);
        if !row.meta.exception.is_empty() {
            break row;
        }
        assert!(Instant::now() < deadline, "the pipe did not stop: {row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.meta.state.name(), "STOPPED", "{row:?}");
    assert!(
        row.meta
            .exception
            .contains("change log record 2 does not decode"),
        "{}",
        row.meta.exception
    );
    // Everything before the bad record was delivered, nothing after it.
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec![("root.a.d".to_string(), 10), ("root.a.d".to_string(), 20)]
    );
    // The committed offset stops at the bad record: a START retries it.
    assert_eq!(log.committed(&consumer_name("p")), Some(2));
    mgr.shutdown();
}
