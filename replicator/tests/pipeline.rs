//! A pipe over a real change log, sending to the real `pipeTransfer`
//! receiver behind a TCP listener in the test: what reaches the receiver,
//! and where the committed offset stops, when a record in the log does not
//! decode; compressed requests (`connector.compressor`, IoTDB 1.3's type
//! 300) deliver the same as plain ones; a rate limit paces the pipe.

mod peer;

use peer::open_log;

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

/// Records what the receiver applied (device, first time), and the type
/// of every request it got.
struct Recorder(Mutex<Vec<(String, i64)>>, Mutex<Vec<i16>>);

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
                        rec.1.lock().unwrap().push(req.type_.unwrap_or(-1));
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
    let log = open_log(dir.path());
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

    let rec = Arc::new(Recorder(Mutex::new(Vec::new()), Mutex::new(Vec::new())));
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

/// A log of `n` single-device tablets of `rows` rows each: sensor-like
/// values (regular times, a slowly varying double).
fn sensor_log(dir: &std::path::Path, n: i64, rows: i64) -> (Arc<wal::Log>, usize) {
    let log = open_log(dir);
    let mut bytes = 0;
    for k in 0..n {
        let times: Vec<i64> = (0..rows).map(|i| (k * rows + i) * 1000).collect();
        let t = Tablet {
            device: format!("root.w.d{}", k % 7),
            measurements: vec!["s".into()],
            columns: vec![Column::Double(
                times
                    .iter()
                    .map(|&t| 20.0 + (t / 1000 % 97) as f64 / 8.0)
                    .collect(),
            )],
            nulls: vec![None],
            times,
            aligned: false,
        };
        let b = t.serialize_v12();
        bytes += b.len();
        log.append(KIND_TABLET, &b).unwrap();
    }
    (log, bytes)
}

/// Runs a pipe with `extra` connector attributes over `log` (all history)
/// to an in-test receiver until it applied `n` tablets; what it applied,
/// the request types it got, and how long the pipe took.
async fn deliver(
    dir: &std::path::Path,
    log: Arc<wal::Log>,
    n: usize,
    extra: &[(&str, &str)],
) -> (Vec<(String, i64)>, Vec<i16>, Duration) {
    let rec = Arc::new(Recorder(Mutex::new(Vec::new()), Mutex::new(Vec::new())));
    let port = serve(rec.clone()).await;
    let mgr = PipeManager::open(
        log,
        &dir.join("system"),
        Settings::default(),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    let mut connector = BTreeMap::from([
        ("connector.ip".to_string(), "127.0.0.1".to_string()),
        ("connector.port".to_string(), port.to_string()),
    ]);
    for (k, v) in extra {
        connector.insert(k.to_string(), v.to_string());
    }
    mgr.create("p", BTreeMap::new(), BTreeMap::new(), connector)
        .unwrap();
    let t0 = Instant::now();
    mgr.start("p").unwrap();
    let deadline = t0 + Duration::from_secs(60);
    while rec.0.lock().unwrap().len() < n {
        let row = mgr.show(Some("p"), None).unwrap().remove(0);
        assert!(
            Instant::now() < deadline,
            "{extra:?}: {} of {n} tablets after 60 s: {row:?}",
            rec.0.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t0.elapsed();
    mgr.shutdown();
    let mut got = rec.0.lock().unwrap().clone();
    got.sort();
    let types = rec.1.lock().unwrap().clone();
    (got, types, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_pipes_deliver_what_plain_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sensor_log(dir.path(), 60, 500);
    let (want, types, _) = deliver(
        &dir.path().join("plain"),
        log.clone(),
        60,
        &[("connector", "iotdb-thrift-connector")],
    )
    .await;
    assert_eq!(want.len(), 60);
    assert!(!types.contains(&300), "{types:?}");
    for (plugin, compressor) in [
        ("iotdb-thrift-connector", "zstd"),
        ("iotdb-thrift-async-connector", "snappy, lzma2"),
        ("iotdb-thrift-connector", "gzip"),
        ("iotdb-thrift-async-connector", "lz4"),
    ] {
        let (got, types, _) = deliver(
            &dir.path().join(compressor.replace([',', ' '], "")),
            log.clone(),
            60,
            &[
                ("connector", plugin),
                ("connector.compressor", compressor),
                // Several requests, so the async one has several in flight.
                ("connector.batch.size-bytes", "20000"),
            ],
        )
        .await;
        assert_eq!(got, want, "{plugin} with {compressor}");
        // The handshake goes plain, everything else compressed.
        assert_eq!(types[0], 1, "{plugin} with {compressor}: {types:?}");
        assert!(
            types.iter().all(|&t| t == 1 || t == 300),
            "{plugin} with {compressor}: {types:?}"
        );
        assert!(types.len() > 2, "{types:?}");
    }
}

/// `connector.rate-limit-bytes-per-second`: the pipe's rate over a few
/// seconds is within 2x of the limit (loosely: the bucket holds a second's
/// worth, and the payload counted here is a little less than the frames).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_paces_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    // About 8 kB per tablet, 32 tablets: 256 kB, five seconds at 50 kB/s
    // (four after the first second's burst).
    let (log, bytes) = sensor_log(dir.path(), 32, 500);
    let limit = 50_000.0;
    for plugin in ["iotdb-thrift-connector", "iotdb-thrift-async-connector"] {
        let (got, _, took) = deliver(
            &dir.path().join(plugin),
            log.clone(),
            32,
            &[
                ("connector", plugin),
                ("connector.rate-limit-bytes-per-second", "50000"),
                ("connector.batch.size-bytes", "20000"),
            ],
        )
        .await;
        assert_eq!(got.len(), 32);
        let rate = bytes as f64 / took.as_secs_f64();
        assert!(
            rate <= 2.0 * limit && rate >= limit / 2.0,
            "{plugin}: {bytes} bytes in {took:?}: {rate:.0} B/s against a limit of {limit} B/s"
        );
    }
}
