//! A pipe's store history phase over a fake [`HistorySource`] (an
//! in-memory store written beside a real change log whose retention
//! deleted its first segments), sending to the test peer through the sync
//! and the async connector:
//!
//! - a pipe created before the log rolled keeps reading its history from
//!   the log; one created after reads the snapshot, then the log from the
//!   snapshot's offset;
//! - a deletion logged after CREATE removes snapshot points (the deletion
//!   index, read at `X - 1`);
//! - STOP mid-history returns promptly, nothing is sent after it, the
//!   acknowledged progress is persisted, and START resumes from it (what
//!   was acknowledged is not sent again);
//! - the peer ends with exactly the edge's data, and SHOW PIPES counts the
//!   history before START and 0 at the end;
//! - a pipe with `extractor.history.enable=false` takes no snapshot and
//!   sends only what was written after CREATE.
//!
//! The log runs with `retention_bytes: Some(0)` (as the node's does):
//! every sealed segment no consumer needs is deleted. The real store as
//! the source is covered end to end in `tests/tests/history.rs`.

mod peer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peer::wait_for;
use peer::{Mode, Peer};
use protocol::event::{Event, KIND_TABLET};
use protocol::tablet::{Column, Tablet};
use protocol::types::DataType;
use replicator::history::{Device, DeviceRead, HistorySource, Snapshot, SnapshotView};
use replicator::{consumer_name, PipeManager, Settings};

/// device → (aligned, measurement → time → value).
type Data = BTreeMap<String, (bool, BTreeMap<String, BTreeMap<i64, f64>>)>;

/// The node's store, in memory: what was written, and the snapshots taken.
struct Fake {
    log: Arc<wal::Log>,
    data: Mutex<Data>,
    snapshots: Mutex<Vec<Arc<Data>>>,
    /// Reads served, to see a resumed phase skip what was acknowledged.
    reads: Arc<Mutex<Vec<(String, i64)>>>,
}

impl HistorySource for Fake {
    fn snapshot(&self) -> Result<Snapshot, String> {
        let data = self.data.lock().unwrap();
        let mut s = self.snapshots.lock().unwrap();
        s.push(Arc::new(data.clone()));
        Ok(Snapshot {
            offset: self.log.end_offset(),
            handle: (s.len() - 1).to_string(),
        })
    }

    fn open(&self, handle: &str) -> Result<Arc<dyn SnapshotView>, String> {
        let i: usize = handle.parse().map_err(|_| format!("bad handle {handle}"))?;
        Ok(Arc::new(View {
            data: self.snapshots.lock().unwrap()[i].clone(),
            reads: self.reads.clone(),
        }))
    }
}

struct View {
    data: Arc<Data>,
    reads: Arc<Mutex<Vec<(String, i64)>>>,
}

impl SnapshotView for View {
    fn devices(&self, pattern: &str) -> Result<Vec<Device>, String> {
        Ok(self
            .data
            .iter()
            .filter_map(|(d, (aligned, series))| {
                let series: Vec<(String, DataType)> = series
                    .keys()
                    .filter(|m| format!("{d}.{m}").starts_with(pattern))
                    .map(|m| (m.clone(), DataType::Double))
                    .collect();
                (!series.is_empty()).then(|| Device {
                    device: d.clone(),
                    aligned: *aligned,
                    series,
                })
            })
            .collect())
    }

    fn count(&self, device: &Device, from: i64, to: i64) -> u64 {
        let series = &self.data[&device.device].1;
        device
            .series
            .iter()
            .map(|(m, _)| series[m].range(from..=to).count() as u64)
            .sum()
    }

    fn read(
        &self,
        device: &Device,
        from: i64,
        to: i64,
        max_bytes: usize,
    ) -> Result<DeviceRead, String> {
        self.reads
            .lock()
            .unwrap()
            .push((device.device.clone(), from));
        let series = &self.data[&device.device].1;
        let limit = (max_bytes / 16 / device.series.len()).max(1);
        let mut cut = to;
        for (m, _) in &device.series {
            if let Some((&t, _)) = series[m].range(from..=to).nth(limit) {
                cut = cut.min(t - 1);
            }
        }
        let mut points = 0;
        let mut more = false;
        let cols: Vec<(Vec<i64>, Column)> = device
            .series
            .iter()
            .map(|(m, _)| {
                let r: Vec<(i64, f64)> =
                    series[m].range(from..=cut).map(|(&t, &v)| (t, v)).collect();
                more |= cut < to && series[m].range(cut + 1..=to).next().is_some();
                points += r.len() as u64;
                (
                    r.iter().map(|p| p.0).collect(),
                    Column::Double(r.iter().map(|p| p.1).collect()),
                )
            })
            .collect();
        Ok(DeviceRead {
            tablets: replicator::history::tablets(device, cols)
                .iter()
                .map(|t| Bytes::from(t.serialize_v12()))
                .collect(),
            points,
            next: more.then(|| cut + 1),
        })
    }
}

impl Fake {
    /// Writes rows `times` of `device` (measurement `s` = value(t), and on
    /// an aligned device `t` every third row) to the log and the store.
    fn write(&self, device: &str, aligned: bool, times: std::ops::Range<i64>, k: f64) {
        let times: Vec<i64> = times.collect();
        let s: Vec<f64> = times.iter().map(|&t| t as f64 * k).collect();
        let mut t = Tablet {
            device: device.into(),
            measurements: vec!["s".into()],
            columns: vec![Column::Double(s.clone())],
            nulls: vec![None],
            times: times.clone(),
            aligned,
        };
        let mut data = self.data.lock().unwrap();
        let d = data
            .entry(device.into())
            .or_insert((aligned, BTreeMap::new()));
        let ds = d.1.entry("s".into()).or_default();
        for (&tm, &v) in times.iter().zip(&s) {
            ds.insert(tm, v);
        }
        if aligned {
            let nulls: Vec<bool> = times.iter().map(|x| x % 3 != 0).collect();
            t.measurements.push("t".into());
            t.columns
                .push(Column::Double(s.iter().map(|v| v + 0.5).collect()));
            t.nulls.push(Some(nulls.clone()));
            let dt = d.1.entry("t".into()).or_default();
            for ((&tm, &v), null) in times.iter().zip(&s).zip(nulls) {
                if !null {
                    dt.insert(tm, v + 0.5);
                }
            }
        }
        self.log.append(KIND_TABLET, &t.serialize_v12()).unwrap();
    }

    /// The measurement `s` of every device: what the peer must end with.
    fn state(&self) -> BTreeMap<(String, i64), f64> {
        let data = self.data.lock().unwrap();
        let mut out = BTreeMap::new();
        for (d, (_, series)) in data.iter() {
            for (&t, &v) in &series["s"] {
                out.insert((d.clone(), t), v);
            }
        }
        out
    }
}

fn connector(plugin: &str, port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("connector".into(), plugin.into()),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
        // Small requests: the history takes many.
        ("connector.batch.size-bytes".into(), "4096".into()),
    ])
}

fn progress(dir: &std::path::Path, id: &str) -> Option<serde_json::Value> {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    let b = std::fs::read(dir.join("system/history").join(format!("{hex}.json"))).ok()?;
    serde_json::from_slice(&b).ok()
}

fn history_phase_over(plugin: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        wal::Log::open(
            dir.path().join("wal"),
            wal::Config {
                fsync: wal::FsyncPolicy::Never,
                segment_bytes: 16 << 10,
                retention_bytes: Some(0),
                ..wal::Config::default()
            },
        )
        .unwrap(),
    );
    let fake = Arc::new(Fake {
        log: log.clone(),
        data: Mutex::new(BTreeMap::new()),
        snapshots: Mutex::new(Vec::new()),
        reads: Arc::default(),
    });
    let settings = Settings {
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(100),
        ..Settings::default()
    };
    let system = dir.path().join("system");
    let mgr = PipeManager::open_with_history(
        log.clone(),
        &system,
        settings,
        rt.handle().clone(),
        Some(fake.clone()),
    )
    .unwrap();
    let peer = Peer::start(Mode::Answer);
    let early_peer = Peer::start(Mode::Answer);
    // Created before anything was written: it reads its history from the
    // log (which it pins).
    mgr.create(
        "early",
        BTreeMap::new(),
        BTreeMap::new(),
        connector(plugin, early_peer.port),
    )
    .unwrap();
    assert!(progress(dir.path(), "early").is_none());
    // The history: four devices and an aligned one, with an overwrite.
    for d in 0..4 {
        for base in (0..2000).step_by(100) {
            fake.write(&format!("root.a.d{d}"), false, base..base + 100, 1.0);
        }
    }
    for base in (0..1000).step_by(100) {
        fake.write("root.a.al", true, base..base + 100, 1.0);
    }
    fake.write("root.a.d0", false, 500..600, 3.0);
    // The early pipe holds every segment; drop it, and retention deletes
    // the segments (no other consumer needs them).
    mgr.drop_pipe("early").unwrap();
    log.enforce_retention().unwrap();
    assert!(log.log_start() > 0, "the log did not drop segments");
    let history = fake.state();

    mgr.create(
        "p",
        BTreeMap::new(),
        BTreeMap::new(),
        connector(plugin, peer.port),
    )
    .unwrap();
    let x = log.end_offset();
    // Realtime only (`extractor.history.enable=false`): no snapshot, no
    // progress file, only what is written after CREATE.
    let rt_peer = Peer::start(Mode::Answer);
    mgr.create(
        "rt",
        BTreeMap::from([("extractor.history.enable".into(), "false".into())]),
        BTreeMap::new(),
        connector(plugin, rt_peer.port),
    )
    .unwrap();
    assert!(progress(dir.path(), "rt").is_none());
    assert_eq!(log.committed(&consumer_name("rt")), Some(x));
    mgr.start("rt").unwrap();
    let st = progress(dir.path(), "p").expect("a store history phase");
    assert_eq!(
        (st["offset"].as_u64(), &st["done"]),
        (Some(x), &false.into())
    );
    assert_eq!(log.committed(&consumer_name("p")), Some(x));
    // A deletion after CREATE (logged through the deletion index): the
    // snapshot still holds these points, the pipe must not send them.
    let (k, payload) = Event::Delete {
        patterns: vec!["root.a.d1.s".into()],
        min: 0,
        max: 99,
    }
    .encode();
    mgr.deletions()
        .record(vec!["root.a.d1.s".into()], 0, 99, || {
            log.append(k, &payload).map_err(|e| e.to_string())
        })
        .unwrap();
    // SHOW PIPES counts the history ahead before START.
    let points: u64 = history.len() as u64 + 1000 / 3 + 1;
    let row = &mgr.show(Some("p"), None).unwrap()[0];
    assert!(
        row.remaining_events >= points - 1,
        "remaining {} of {points}",
        row.remaining_events
    );
    assert!(row.lag_seconds >= 0.0);

    // Hold root.a.d2's history: the pipe stops mid-history.
    peer.hold_device("root.a.d2");
    mgr.start("p").unwrap();
    wait_for(Duration::from_secs(20), "root.a.d2 to be in flight", || {
        peer.seen(|s| {
            s.requests
                .iter()
                .any(|r| r.devices.iter().any(|d| d == "root.a.d2"))
        })
    });
    // What came before it is acknowledged and its progress persisted.
    wait_for(Duration::from_secs(20), "progress past root.a.d1", || {
        progress(dir.path(), "p").is_some_and(|p| {
            p["cursor"]["device"]
                .as_str()
                .is_some_and(|d| d >= "root.a.d1")
        })
    });
    let t = Instant::now();
    mgr.stop("p").unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "STOP took {:?}",
        t.elapsed()
    );
    // Let the abandoned held requests go (a held request blocks its
    // connection's reader), then count exactly what the peer received.
    peer.stop_holding();
    let held: Vec<usize> = peer.seen(|s| {
        (0..s.requests.len())
            .filter(|&k| s.requests[k].mode == Mode::Hold)
            .collect()
    });
    for k in held {
        peer.release(k);
    }
    let at_stop = peer.received();
    let st = progress(dir.path(), "p").unwrap();
    assert_eq!(st["done"], false, "{st}");
    // The log offset stays at the snapshot's until the history is done.
    assert_eq!(log.committed(&consumer_name("p")), Some(x));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(peer.received(), at_stop, "sent after STOP returned");

    // START resumes from the acknowledged progress: root.a.al and
    // root.a.d0 are not read again.
    peer.set_mode(Mode::Answer);
    let reads_before = fake.reads.lock().unwrap().len();
    let requests_before = peer.seen(|s| s.requests.len());
    mgr.start("p").unwrap();
    // Realtime after START: the log from X.
    for base in (5000..5300).step_by(100) {
        fake.write("root.a.d0", false, base..base + 100, 1.0);
    }
    let mut want = fake.state();
    want.retain(|(d, t), _| !(d == "root.a.d1" && *t <= 99));
    let mut got = BTreeMap::new();
    let same = (0..2000).any(|_| {
        got = peer.seen(|s| s.state.clone());
        if got == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
        false
    });
    assert!(
        same,
        "the peer differs: {} points, want {}; missing e.g. {:?}",
        got.len(),
        want.len(),
        want.keys().find(|k| !got.contains_key(*k))
    );
    let reread: Vec<(String, i64)> = fake.reads.lock().unwrap()[reads_before..].to_vec();
    assert!(
        reread.iter().all(|(d, _)| d.as_str() >= "root.a.d1"),
        "read again after START: {reread:?}"
    );
    peer.seen(|s| {
        assert!(
            s.requests[requests_before..]
                .iter()
                .all(|r| r.devices.iter().all(|d| d != "root.a.al")),
            "root.a.al sent again"
        );
    });
    wait_for(Duration::from_secs(20), "the history to be done", || {
        progress(dir.path(), "p").is_some_and(|p| p["done"] == true)
    });
    wait_for(Duration::from_secs(20), "the log offset to pass X", || {
        log.committed(&consumer_name("p")) == Some(log.end_offset())
    });
    wait_for(Duration::from_secs(20), "nothing remaining", || {
        mgr.show(Some("p"), None).unwrap()[0].remaining_events == 0
    });
    // The realtime-only pipe got the rows written after CREATE only.
    let mut rt_want = fake.state();
    rt_want.retain(|(d, t), _| d == "root.a.d0" && *t >= 5000);
    wait_for(Duration::from_secs(20), "the realtime-only pipe", || {
        rt_peer.seen(|s| s.state == rt_want)
    });
    mgr.drop_pipe("rt").unwrap();
    // DROP forgets the progress file.
    mgr.drop_pipe("p").unwrap();
    assert!(progress(dir.path(), "p").is_none());
    mgr.shutdown();
}

#[test]
fn the_history_phase_with_the_sync_connector() {
    history_phase_over("iotdb-thrift-sync-connector");
}

#[test]
fn the_history_phase_with_the_async_connector() {
    history_phase_over("iotdb-thrift-async-connector");
}
