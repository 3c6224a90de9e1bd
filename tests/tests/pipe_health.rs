//! Issue 10: a pipe's health in SHOW PIPES between real `edgepipe server`
//! processes, with both thrift connectors.
//!
//! - A stall: a proxy in the link stops forwarding without closing
//!   anything (a blackhole). Within 5 s SHOW PIPES shows a growing
//!   LagSeconds and the failure the pipe is retrying after; once the link
//!   is back, 0 and empty again.
//! - A stale connection: the cloud closes connections that never logged in
//!   after `dn_connection_timeout_ms` without a request, the pipe's idle
//!   one included. The next record goes out on a new connection without a
//!   failed attempt (with no retries allowed, the pipe would stop) and
//!   without a warning in the edge's log.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{config_file, everything, sql, wait_until, NodeProc};
use node::client::Session;
use protocol::tablet::{Column, Tablet};

const WAIT: Duration = Duration::from_secs(60);
const CONNECTORS: [&str; 2] = ["iotdb-thrift-connector", "iotdb-thrift-async-connector"];

/// SHOW PIPE `id` as column name → value.
fn pipe(addr: &str, id: &str) -> std::collections::BTreeMap<String, String> {
    let r = sql(addr, &format!("show pipe {id}")).expect("rows");
    r.columns
        .iter()
        .cloned()
        .zip(
            r.rows[0]
                .1
                .iter()
                .map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default()),
        )
        .collect()
}

fn lag(addr: &str) -> f64 {
    pipe(addr, "p")["LagSeconds"].parse().expect("a number")
}

fn write_rows(addr: &str, device: &str, from: i64, n: i64) {
    let mut s = Session::open(addr, "root", "root").unwrap();
    let t = Tablet {
        device: device.into(),
        measurements: vec!["x".into()],
        columns: vec![Column::Double((from..from + n).map(|i| i as f64).collect())],
        nulls: vec![None],
        times: (from..from + n).collect(),
        aligned: false,
    };
    s.insert_tablet(&t).unwrap();
    s.close().unwrap();
}

fn assert_same(edge: &NodeProc, cloud: &NodeProc) {
    assert!(
        wait_until(WAIT, || {
            let e = everything(&edge.addr());
            e.is_some() && e == everything(&cloud.addr())
        }),
        "the cloud does not hold the edge's data"
    );
}

/// A proxied connection: client side, target side, and whether it was
/// swallowed.
type Conn = (TcpStream, TcpStream, Arc<AtomicBool>);

/// A proxy that forwards until [`Blackhole::swallow`], then forwards
/// nothing more and closes nothing, on its open connections and on new
/// ones, until [`Blackhole::restore`]: then the swallowed connections are
/// closed and new ones forwarded again.
struct Blackhole {
    port: u16,
    /// Swallowing now.
    on: Arc<AtomicBool>,
    /// Connections (client side, target side) and whether each was
    /// swallowed.
    conns: Arc<Mutex<Vec<Conn>>>,
    stop: Arc<AtomicBool>,
}

impl Blackhole {
    fn start(target: String) -> Blackhole {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let on = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let (on2, stop2, conns2) = (on.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).expect("blocking");
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let swallowed = Arc::new(AtomicBool::new(on2.load(Ordering::SeqCst)));
                conns2.lock().unwrap().push((
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    swallowed.clone(),
                ));
                for (from, to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let (swallowed, stop) = (swallowed.clone(), stop2.clone());
                    std::thread::spawn(move || forward(from, to, &swallowed, &stop));
                }
            }
        });
        Blackhole {
            port,
            on,
            conns,
            stop,
        }
    }

    /// Stops forwarding, closing nothing.
    fn swallow(&self) {
        self.on.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().iter() {
            c.2.store(true, Ordering::SeqCst);
        }
    }

    /// Closes what was swallowed; new connections are forwarded again.
    fn restore(&self) {
        self.on.store(false, Ordering::SeqCst);
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|(c, s, swallowed)| {
            if swallowed.load(Ordering::SeqCst) {
                let _ = c.shutdown(Shutdown::Both);
                let _ = s.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (c, s, _) in self.conns.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either closes; once `swallowed`, reads and
/// forwards nothing more (the bytes already read are dropped) but keeps
/// both open.
fn forward(mut from: TcpStream, mut to: TcpStream, swallowed: &AtomicBool, stop: &AtomicBool) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        if swallowed.load(Ordering::SeqCst) {
            // Held open, silent; `restore` closes the sockets.
            std::thread::sleep(Duration::from_millis(20));
            let mut probe = [0u8; 1];
            if matches!(from.peek(&mut probe), Ok(0)) && !swallowed.load(Ordering::SeqCst) {
                return;
            }
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Ok(n) => {
                if swallowed.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

#[test]
fn a_stalled_link_shows_a_growing_lag_and_the_retry_then_recovers() {
    for plugin in CONNECTORS {
        let tmp = tempfile::tempdir().unwrap();
        let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
        let hole = Blackhole::start(cloud.addr());
        let edge_dir = tmp.path().join("edge");
        let cfg = config_file(
            &edge_dir,
            &[
                "pipe_connector_timeout_ms=1000",
                "pipe_connector_retry_interval_ms=100",
                "max_number_of_sync_file_retry=1000",
            ],
        );
        let edge = NodeProc::start(&edge_dir, &[&cfg[0], &cfg[1]]);
        let e = edge.addr();
        sql(
            &e,
            &format!(
                "create pipe p WITH CONNECTOR ('connector'='{plugin}', 'connector.ip'='127.0.0.1', 'connector.port'='{}')",
                hole.port
            ),
        );
        sql(&e, "start pipe p");
        write_rows(&e, "root.st.d", 0, 100);
        assert_same(&edge, &cloud);
        assert!(
            wait_until(WAIT, || {
                let r = pipe(&e, "p");
                r["RemainingEventCount"] == "0" && r["LagSeconds"] == "0.000"
            }),
            "{plugin}: caught up: {:?}",
            pipe(&e, "p")
        );
        assert_eq!(pipe(&e, "p")["ExceptionMessage"], "");

        hole.swallow();
        write_rows(&e, "root.st.d", 100, 100);
        let t0 = Instant::now();
        assert!(
            wait_until(Duration::from_secs(5), || pipe(&e, "p")["ExceptionMessage"]
                .starts_with("retry ")),
            "{plugin}: no retry message within 5 s: {:?}",
            pipe(&e, "p")
        );
        let first = lag(&e);
        std::thread::sleep(Duration::from_millis(1200));
        let r = pipe(&e, "p");
        let second: f64 = r["LagSeconds"].parse().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{plugin}: took {:?}",
            t0.elapsed()
        );
        assert!(
            second >= first + 1.0 && first > 0.0,
            "{plugin}: LagSeconds {first} then {second}"
        );
        assert_eq!(r["State"], "RUNNING", "{plugin}");
        assert_eq!(r["RemainingEventCount"], "1", "{plugin}: one tablet waits");
        assert!(
            r["ExceptionMessage"].contains(" of 1000: "),
            "{plugin}: {}",
            r["ExceptionMessage"]
        );

        hole.restore();
        assert_same(&edge, &cloud);
        assert!(
            wait_until(WAIT, || {
                let r = pipe(&e, "p");
                r["RemainingEventCount"] == "0"
                    && r["LagSeconds"] == "0.000"
                    && r["ExceptionMessage"].is_empty()
            }),
            "{plugin}: after recovery: {:?}",
            pipe(&e, "p")
        );
        edge.stop();
        cloud.stop();
    }
}

#[test]
fn an_idle_pipe_connection_closed_by_the_cloud_is_replaced_without_a_retry() {
    for plugin in CONNECTORS {
        let tmp = tempfile::tempdir().unwrap();
        let cloud_dir = tmp.path().join("cloud");
        let ccfg = config_file(&cloud_dir, &["dn_connection_timeout_ms=500"]);
        let cloud = NodeProc::start(&cloud_dir, &[&ccfg[0], &ccfg[1]]);
        let edge_dir = tmp.path().join("edge");
        // No retries: a failed attempt stops the pipe.
        let ecfg = config_file(&edge_dir, &["max_number_of_sync_file_retry=0"]);
        let edge = NodeProc::start(&edge_dir, &[&ecfg[0], &ecfg[1]]);
        let e = edge.addr();
        sql(
            &e,
            &format!(
                "create pipe p WITH CONNECTOR ('connector'='{plugin}', 'connector.ip'='127.0.0.1', 'connector.port'='{}')",
                cloud.port
            ),
        );
        sql(&e, "start pipe p");
        for round in 0..3 {
            write_rows(&e, "root.idle.d", round * 10, 10);
            assert_same(&edge, &cloud);
            // Longer than the cloud's timeout: it closes the idle
            // connection.
            std::thread::sleep(Duration::from_millis(1200));
        }
        let r = pipe(&e, "p");
        assert_eq!(r["State"], "RUNNING", "{plugin}: {r:?}");
        assert_eq!(r["ExceptionMessage"], "", "{plugin}");
        assert!(
            cloud.log_text().contains("dn_connection_timeout_ms"),
            "{plugin}: the cloud closed the idle connection"
        );
        let log = edge.log_text();
        assert!(!log.contains("WARN"), "{plugin}: the edge warned:\n{log}");
        edge.stop();
        cloud.stop();
    }
}
