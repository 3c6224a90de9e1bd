//! The metrics endpoint of a real `edgepipe server` (issue 10): turned on
//! with IoTDB's keys, scraped while two pipes (the serial and the async
//! connector) run to a second real node, and parsed by the Prometheus
//! project's own Python parsers (Prometheus text 0.0.4 and OpenMetrics).
//! Between two scrapes the node's and each pipe's counters move with the
//! data written; with the cloud down, retries and resent events count up and
//! the lag grows, and everything returns to 0 once the cloud is back.
//!
//! Needs the pinned Python venv (`EDGEPIPE_PYTHON`, or `.venv` built from
//! `tests/python/requirements.txt`, which pins `prometheus_client`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use e2e::{everything, run_python, sql, wait_until, write_config, NodeProc};
use node::client::Session;
use protocol::tablet::{Column, Tablet};

const WAIT: Duration = Duration::from_secs(60);

/// One scrape, as `tests/python/metrics.py` parsed it.
struct Scrape {
    /// Family name → type, from the Prometheus text parser.
    families: BTreeMap<String, String>,
    /// Family name → type, from the OpenMetrics parser.
    openmetrics: BTreeMap<String, String>,
    /// `(sample name, labels, value)`.
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    content_types: Vec<String>,
}

impl Scrape {
    fn take(port: u16) -> Scrape {
        let out = run_python(
            "metrics.py",
            &[&format!("http://127.0.0.1:{port}/metrics")],
            Duration::from_secs(60),
        );
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("metrics.py printed no JSON ({e}): {out}"));
        let types = |k: &str| {
            v[k].as_object()
                .expect("families")
                .iter()
                .map(|(n, t)| (n.clone(), t.as_str().expect("type").to_string()))
                .collect()
        };
        Scrape {
            families: types("families"),
            openmetrics: types("openmetrics"),
            samples: v["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| {
                    let labels = s[1]
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
                        .collect();
                    (
                        s[0].as_str().expect("name").to_string(),
                        labels,
                        s[2].as_f64().expect("value"),
                    )
                })
                .collect(),
            content_types: v["content_types"]
                .as_array()
                .expect("content types")
                .iter()
                .map(|t| t.as_str().unwrap_or_default().to_string())
                .collect(),
        }
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {name}{labels:?}; the scrape has: {:?}",
                self.samples.iter().map(|s| &s.0).collect::<Vec<_>>()
            )
        })
    }
}

/// Writes `n` rows of two DOUBLE columns to `device` from time `from`, as
/// tablets of 100 rows.
fn write_rows(addr: &str, device: &str, from: i64, n: i64) {
    let mut s = Session::open(addr, "root", "root").unwrap();
    for base in (from..from + n).step_by(100) {
        let end = (base + 100).min(from + n);
        let t = Tablet {
            device: device.into(),
            measurements: vec!["x".into(), "y".into()],
            columns: vec![
                Column::Double((base..end).map(|i| i as f64).collect()),
                Column::Double((base..end).map(|i| i as f64 * 2.0).collect()),
            ],
            nulls: vec![None, None],
            times: (base..end).collect(),
            aligned: false,
        };
        s.insert_tablet(&t).unwrap();
    }
    s.close().unwrap();
}

/// Waits until the cloud holds what the edge holds.
fn synced(edge: &NodeProc, cloud: &NodeProc) {
    assert!(
        wait_until(WAIT, || {
            let e = everything(&edge.addr());
            e.is_some() && e == everything(&cloud.addr())
        }),
        "the cloud did not catch up within {WAIT:?}"
    );
}

/// Scrapes until `cond` holds of a scrape (within [`WAIT`]); returns it.
fn scrape_until(port: u16, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let s = Scrape::take(port);
        if cond(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < end,
            "{what} did not happen within {WAIT:?}; last scrape: {:?}",
            s.samples
                .iter()
                .filter(|x| x.0.starts_with("edgepipe_pipe"))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pipes the test runs side by side: one per connector kind.
const PIPES: [(&str, &str); 2] = [
    ("p", "iotdb-thrift-connector"),
    ("pa", "iotdb-thrift-async-connector"),
];

/// Whether `cond` holds for each pipe's `pipe` label.
fn every_pipe(cond: impl Fn(&[(&str, &str)]) -> bool) -> bool {
    PIPES.iter().all(|(id, _)| cond(&[("pipe", id)]))
}

/// A raw HTTP request to the endpoint; returns the whole answer.
fn http(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_are_scraped_while_a_pipe_runs_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&dir.path().join("cloud"), &[]);
    assert_eq!(cloud.metrics_port, None, "no endpoint unless configured");
    let cfg = write_config(
        &dir.path().join("edge.properties"),
        &[
            ("dn_metric_reporter_list", "PROMETHEUS"),
            ("dn_metric_prometheus_reporter_port", "0"),
            ("dn_metric_level", "IMPORTANT"),
            // Retries while the cloud is down below, quick and many.
            ("pipe_connector_retry_interval_ms", "100"),
            ("max_number_of_sync_file_retry", "1000"),
        ],
    );
    let edge = NodeProc::start(
        &dir.path().join("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    let port = edge
        .metrics_port
        .expect("the edge prints its metrics address");

    write_rows(&edge.addr(), "root.m.d", 0, 1000);
    // The same data through both connectors: each counts its own
    // transfers (the serial one per batch, the async one per lane request).
    for (id, connector) in PIPES {
        sql(
            &edge.addr(),
            &format!("CREATE PIPE {id} WITH CONNECTOR ('connector'='{connector}', 'connector.ip'='127.0.0.1', 'connector.port'='{}')", cloud.port),
        );
        sql(&edge.addr(), &format!("START PIPE {id}"));
    }
    synced(&edge, &cloud);

    // A session stays open across the scrape: one connection at least.
    let held = Session::open(&edge.addr(), "root", "root").unwrap();
    // The receiver's acknowledgements reach the edge after the cloud
    // applied the rows; the offset commit follows within 100 ms.
    let first = scrape_until(port, "the pipes' first 2000 points acknowledged", |s| {
        every_pipe(|pipe| {
            s.get("edgepipe_pipe_sent_points_total", pipe) == Some(2000.0)
                && s.get("edgepipe_pipe_committed_offset", pipe)
                    == s.get("edgepipe_log_end_offset", &[])
        })
    });
    assert!(
        first.content_types[0].starts_with("text/plain; version=0.0.4"),
        "{:?}",
        first.content_types
    );
    assert!(
        first.content_types[1].starts_with("application/openmetrics-text"),
        "{:?}",
        first.content_types
    );
    for (family, kind) in [
        ("edgepipe_log_start_offset", "gauge"),
        ("edgepipe_log_end_offset", "gauge"),
        ("edgepipe_log_durable_offset", "gauge"),
        ("edgepipe_log_disk_bytes", "gauge"),
        ("edgepipe_log_segments", "gauge"),
        ("edgepipe_log_fsync_duration_seconds", "histogram"),
        ("edgepipe_points_ingested", "counter"),
        ("edgepipe_rpc_duration_seconds", "histogram"),
        ("edgepipe_rpc_connections", "gauge"),
        ("edgepipe_store_memtable_bytes", "gauge"),
        ("edgepipe_store_flushes", "counter"),
        ("edgepipe_store_flush_failures", "counter"),
        ("edgepipe_store_checkpoint_age_seconds", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("edgepipe_pipe_state", "gauge"),
        ("edgepipe_pipe_committed_offset", "gauge"),
        ("edgepipe_pipe_remaining_events", "gauge"),
        ("edgepipe_pipe_lag_seconds", "gauge"),
        ("edgepipe_pipe_sent_points", "counter"),
        ("edgepipe_pipe_sent_bytes", "counter"),
        ("edgepipe_pipe_transfer_duration_seconds", "histogram"),
        ("edgepipe_pipe_retries", "counter"),
        ("edgepipe_pipe_resent_events", "counter"),
        ("edgepipe_pipe_uncommitted_records", "gauge"),
    ] {
        assert_eq!(
            first.families.get(family).map(String::as_str),
            Some(kind),
            "{family} in {:?}",
            first.families
        );
        assert_eq!(
            first.openmetrics.get(family).map(String::as_str),
            Some(kind),
            "{family} (OpenMetrics) in {:?}",
            first.openmetrics
        );
    }
    assert_eq!(first.value("edgepipe_points_ingested_total", &[]), 2000.0);
    assert!(first.value("edgepipe_rpc_connections", &[]) >= 1.0);
    assert!(first.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(first.value("process_open_fds", &[]) >= 3.0);
    assert!(first.value("edgepipe_log_segments", &[]) >= 1.0);
    assert!(first.value("edgepipe_log_fsync_duration_seconds_count", &[]) >= 1.0);
    assert!(
        first.value("edgepipe_log_end_offset", &[])
            >= first.value("edgepipe_log_durable_offset", &[])
    );
    assert_eq!(
        first.value(
            "edgepipe_rpc_duration_seconds_count",
            &[("method", "insertTablet")]
        ),
        10.0,
        "one observation per insertTablet call"
    );
    for (id, _) in PIPES {
        let pipe = &[("pipe", id)][..];
        assert_eq!(
            first.value("edgepipe_pipe_state", &[("pipe", id), ("state", "RUNNING")]),
            1.0
        );
        assert_eq!(
            first.value("edgepipe_pipe_state", &[("pipe", id), ("state", "STOPPED")]),
            0.0
        );
        assert_eq!(first.value("edgepipe_pipe_remaining_events", pipe), 0.0);
        assert_eq!(first.value("edgepipe_pipe_lag_seconds", pipe), 0.0);
        assert_eq!(first.value("edgepipe_pipe_uncommitted_records", pipe), 0.0);
        assert_eq!(first.value("edgepipe_pipe_retries_total", pipe), 0.0);
        // 10 tablets of 100 rows × 2 DOUBLE columns, each at least 24
        // bytes a row (time and two values).
        assert!(first.value("edgepipe_pipe_sent_bytes_total", pipe) > 1000.0 * 24.0);
        assert!(first.value("edgepipe_pipe_transfer_duration_seconds_count", pipe) >= 1.0);
    }
    // A histogram's +Inf bucket holds every observation.
    for (h, labels) in [
        (
            "edgepipe_pipe_transfer_duration_seconds",
            &[("pipe", "p")][..],
        ),
        ("edgepipe_pipe_transfer_duration_seconds", &[("pipe", "pa")]),
        ("edgepipe_log_fsync_duration_seconds", &[]),
        (
            "edgepipe_rpc_duration_seconds",
            &[("method", "insertTablet")],
        ),
    ] {
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(
            first.value(&format!("{h}_bucket"), &inf),
            first.value(&format!("{h}_count"), labels),
            "{h}"
        );
    }
    assert!(first.value("process_max_fds", &[]) >= first.value("process_open_fds", &[]));
    drop(held);

    // More writes: the node's and the pipe's counters move with them.
    write_rows(&edge.addr(), "root.m.d", 1000, 500);
    synced(&edge, &cloud);
    let second = scrape_until(port, "3000 points acknowledged", |s| {
        every_pipe(|pipe| s.get("edgepipe_pipe_sent_points_total", pipe) == Some(3000.0))
    });
    assert_eq!(second.value("edgepipe_points_ingested_total", &[]), 3000.0);
    assert_eq!(
        second.value(
            "edgepipe_rpc_duration_seconds_count",
            &[("method", "insertTablet")]
        ),
        15.0
    );
    for (moved, labels) in [
        ("edgepipe_log_end_offset", &[][..]),
        ("edgepipe_log_durable_offset", &[]),
        ("edgepipe_log_fsync_duration_seconds_count", &[]),
    ] {
        assert!(
            second.value(moved, labels) > first.value(moved, labels),
            "{moved}: {} then {}",
            first.value(moved, labels),
            second.value(moved, labels)
        );
    }
    for (id, _) in PIPES {
        let pipe = &[("pipe", id)][..];
        assert_eq!(
            second.value("edgepipe_pipe_state", &[("pipe", id), ("state", "RUNNING")]),
            1.0,
            "{id} ran between the scrapes"
        );
        for moved in [
            "edgepipe_pipe_committed_offset",
            "edgepipe_pipe_sent_bytes_total",
            "edgepipe_pipe_transfer_duration_seconds_count",
        ] {
            assert!(
                second.value(moved, pipe) > first.value(moved, pipe),
                "{id} {moved}: {} then {}",
                first.value(moved, pipe),
                second.value(moved, pipe)
            );
        }
    }

    // The cloud goes away: the pipes retry, and what they send again is
    // counted; they deliver everything once the cloud is back.
    let cloud_port = cloud.port;
    cloud.stop();
    write_rows(&edge.addr(), "root.m.d", 1500, 500);
    let retrying = scrape_until(port, "a retry of each pipe", |s| {
        every_pipe(|pipe| {
            s.get("edgepipe_pipe_retries_total", pipe)
                .is_some_and(|r| r > 0.0)
        })
    });
    for (id, _) in PIPES {
        let pipe = &[("pipe", id)][..];
        assert!(
            retrying.value("edgepipe_pipe_remaining_events", pipe) > 0.0,
            "{id}"
        );
        assert!(
            retrying.value("edgepipe_pipe_resent_events_total", pipe) > 0.0,
            "{id}"
        );
        assert!(
            retrying.value("edgepipe_pipe_lag_seconds", pipe) > 0.0,
            "{id}"
        );
        assert_eq!(
            retrying.value("edgepipe_pipe_sent_points_total", pipe),
            3000.0,
            "{id}: nothing new acknowledged while the cloud is down"
        );
    }
    let cloud = NodeProc::start(
        &dir.path().join("cloud"),
        &["--rpc-port", &cloud_port.to_string()],
    );
    synced(&edge, &cloud);
    let third = scrape_until(port, "4000 points acknowledged", |s| {
        every_pipe(|pipe| {
            s.get("edgepipe_pipe_sent_points_total", pipe) == Some(4000.0)
                && s.get("edgepipe_pipe_remaining_events", pipe) == Some(0.0)
        })
    });
    for (id, _) in PIPES {
        let pipe = &[("pipe", id)][..];
        assert!(
            third.value("edgepipe_pipe_retries_total", pipe)
                >= retrying.value("edgepipe_pipe_retries_total", pipe)
        );
        assert_eq!(third.value("edgepipe_pipe_lag_seconds", pipe), 0.0, "{id}");
    }

    // Only GET /metrics is served; anything else gets a clear answer.
    let other = http(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    assert!(other.contains("/metrics"), "{other}");
    let junk = http(port, "\u{16}\u{3}\u{1}\u{2}\r\n\r\n");
    assert!(junk.starts_with("HTTP/1.1 400"), "{junk}");

    edge.stop();
    cloud.stop();
}

/// A metrics port that is taken stops the start with an error naming the
/// address and the key, before the node opens its data directory (so none
/// is left behind); `dn_metric_level=OFF` opens no endpoint even with the
/// reporter listed.
#[test]
fn a_taken_metrics_port_is_named_and_leaves_no_data_directory() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &tmp.path().join("edge.properties"),
        &[
            ("dn_metric_reporter_list", "PROMETHEUS"),
            ("dn_metric_prometheus_reporter_port", &port),
        ],
    );
    let dir = tmp.path().join("never");
    let mut child = std::process::Command::new(e2e::edgepipe_bin())
        .args(["server", "--rpc-address", "127.0.0.1", "--rpc-port", "0"])
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server neither started nor failed within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on 127.0.0.1:{port}"))
            && stderr.contains("dn_metric_prometheus_reporter_port"),
        "{stderr}"
    );
    assert!(
        !dir.exists(),
        "a failed start left {} behind",
        dir.display()
    );
    drop(taken);

    let cfg = write_config(
        &tmp.path().join("off.properties"),
        &[
            ("dn_metric_reporter_list", "PROMETHEUS"),
            ("dn_metric_prometheus_reporter_port", "0"),
            ("dn_metric_level", "OFF"),
        ],
    );
    let node = NodeProc::start(
        &tmp.path().join("off"),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(node.metrics_port, None, "OFF opens no endpoint");
    node.stop();
}

/// A receiving node counts what pipes deliver as ingested points (and
/// `SHOW PIPES`-free: the cloud's own counters).
#[test]
fn a_cloud_counts_received_points_as_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir.path().join("cloud.properties"),
        &[
            ("dn_metric_reporter_list", "PROMETHEUS"),
            ("dn_metric_prometheus_reporter_port", "0"),
        ],
    );
    let cloud = NodeProc::start(
        &dir.path().join("cloud"),
        &["--config", cfg.to_str().unwrap()],
    );
    let port = cloud
        .metrics_port
        .expect("the cloud prints its metrics address");
    let edge = NodeProc::start(&dir.path().join("edge"), &[]);
    write_rows(&edge.addr(), "root.m.d", 0, 1000);
    sql(
        &edge.addr(),
        &format!("CREATE PIPE p WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{}')", cloud.port),
    );
    sql(&edge.addr(), "START PIPE p");
    synced(&edge, &cloud);
    let s = scrape_until(port, "2000 points ingested on the cloud", |s| {
        s.get("edgepipe_points_ingested_total", &[]) == Some(2000.0)
    });
    assert!(s.value("edgepipe_log_end_offset", &[]) > 0.0);
    edge.stop();
    cloud.stop();
}
