//! A model-based test of a pipe: random sequences of appends, receiver
//! behaviours (answer, refuse, lose the reply, stay silent), START, STOP,
//! DROP and re-CREATE, graceful restarts and crashes, run against the real
//! `PipeManager` and task over a real change log in a temporary directory,
//! with the sync or the async thrift connector, sending to the real
//! receiver code behind a loopback port (the test peer in `tests/peer`),
//! and checked against a model of the committed offset and of what the
//! receiver must hold:
//!
//! - the committed offset never passes a record the receiver did not
//!   acknowledge, and never moves back (but for a re-created pipe);
//! - STOP, DROP and shutdown return within 2 s, and nothing is sent for the
//!   pipe after they returned (bytes counted exactly, see `tests/peer`);
//! - a restarted pipe sends nothing below its committed offset, and
//!   delivers everything from it;
//! - in the end the receiver holds every record; each record is applied at
//!   most once plus once per fault (a failed or unanswered request, a stop,
//!   a restart, a crash, a re-created pipe), as the crate doc bounds the
//!   replay after a fault;
//! - in the end the receiver's value of every device and time is the
//!   edge's, the last one written: records rewrite the same few devices and
//!   times, so an older value applied after a newer one (the async
//!   connector's requests out of order) would show.
//!
//! CI runs a few cases; a longer run: `PROPTEST_CASES=300 cargo test
//! --release -p replicator --test model`.

mod peer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peer::{open_log, Mode, Peer, Received};
use proptest::prelude::*;
use protocol::event::KIND_TABLET;
use protocol::tablet::{Column, Tablet};
use replicator::{consumer_name, PipeManager, Settings};

const PIPE: &str = "p";

/// STOP, DROP and shutdown return within this (issue 7).
const PROMPT: Duration = Duration::from_secs(2);

/// Every bounded wait of the test.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Action {
    /// Appends records (each one tablet of one row, to device `root.m.dK`
    /// at time T, for each (K, T); its value and its `id` column are its
    /// offset).
    Append(Vec<(u8, u8)>),
    /// What the receiver does with the next requests.
    Peer(Mode),
    Start,
    Stop,
    /// DROP PIPE, then CREATE PIPE again with the same definition.
    DropAndCreate,
    /// Graceful shutdown of the pipes and the log, and reopen.
    Restart,
    /// The process dies: tasks vanish mid-flight, no final commit, the log
    /// is not closed; then reopen.
    Crash,
    /// Lets the pipe work for this many milliseconds.
    Wait(u16),
}

fn action() -> impl Strategy<Value = Action> {
    let mode = prop_oneof![
        3 => Just(Mode::Answer),
        1 => Just(Mode::Refuse),
        1 => Just(Mode::LoseReply),
        1 => Just(Mode::Silent),
        1 => Just(Mode::Mute),
    ];
    prop_oneof![
        4 => prop::collection::vec((0u8..4, 0u8..6), 1..=8).prop_map(Action::Append),
        3 => mode.prop_map(Action::Peer),
        3 => Just(Action::Start),
        2 => Just(Action::Stop),
        1 => Just(Action::DropAndCreate),
        1 => Just(Action::Restart),
        1 => Just(Action::Crash),
        4 => (0u16..250).prop_map(Action::Wait),
    ]
}

/// A node's lifetime: its runtime, log and pipes.
struct Life {
    rt: tokio::runtime::Runtime,
    log: Arc<wal::Log>,
    mgr: PipeManager,
}

fn settings(timeout: Duration) -> Settings {
    Settings {
        // A few lanes and connections (each a thread on the peer).
        async_max_clients: 3,
        async_core_clients: 2,
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(20),
        // Faults are the test's to end; the pipe never gives up.
        max_retry: u32::MAX,
        timeout,
        // Several requests per append burst.
        batch_records: 4,
        ..Settings::default()
    }
}

fn connector(port: u16, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("connector".into(), name.into()),
        ("connector.ip".into(), "127.0.0.1".into()),
        ("connector.port".into(), port.to_string()),
    ])
}

fn timed(what: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    let took = t.elapsed();
    assert!(took < PROMPT, "{what} took {took:?}");
}

/// The test's state: the system under test and the model.
struct Harness {
    dir: tempfile::TempDir,
    peer: Peer,
    life: Option<Life>,
    /// Records appended: ids `0..end`.
    end: u64,
    /// Whether the model says the pipe runs.
    running: bool,
    /// The committed offset last seen (it never moves back).
    committed: u64,
    /// While the pipe does not run: what the peer had received when it
    /// stopped. It must not grow.
    quiet: Option<Received>,
    /// Faults injected so far (each may cause one more delivery of a
    /// record).
    faults: u32,
    /// The connector's call timeout.
    timeout: Duration,
    /// The connector plugin.
    connector: &'static str,
    /// The edge's value of each device and time: the last one appended.
    edge: BTreeMap<(String, i64), f64>,
}

impl Harness {
    fn new(timeout: Duration, connector: &'static str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let peer = Peer::start(Mode::Answer);
        let mut h = Harness {
            dir,
            peer,
            life: None,
            end: 0,
            running: false,
            committed: 0,
            quiet: None,
            faults: 0,
            timeout,
            connector,
            edge: BTreeMap::new(),
        };
        h.open();
        let port = h.peer.port;
        h.mgr()
            .create(
                PIPE,
                BTreeMap::new(),
                BTreeMap::new(),
                self::connector(port, connector),
            )
            .unwrap();
        h
    }

    fn life(&self) -> &Life {
        self.life.as_ref().expect("open")
    }

    fn mgr(&self) -> &PipeManager {
        &self.life().mgr
    }

    fn committed_now(&self) -> u64 {
        self.life()
            .log
            .committed(&consumer_name(PIPE))
            .expect("the pipe's consumer")
    }

    /// Opens the log and the pipes (which resume a RUNNING pipe).
    fn open(&mut self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let log = open_log(self.dir.path());
        assert_eq!(log.end_offset(), self.end, "the log lost records");
        // Whatever it sends now starts at the committed offset.
        if let Some(c) = log.committed(&consumer_name(PIPE)) {
            assert!(c >= self.committed, "committed offset moved back");
            self.committed = c;
            self.peer.set_floor(c as i64);
        }
        let mgr = PipeManager::open(
            log.clone(),
            &self.dir.path().join("system"),
            settings(self.timeout),
            rt.handle().clone(),
        )
        .unwrap();
        self.life = Some(Life { rt, log, mgr });
    }

    /// After the pipe stopped: records what the peer had, and waits until
    /// it handled all of it.
    fn stopped(&mut self) {
        self.running = false;
        self.quiet = Some(self.peer.received());
        assert!(
            self.peer.wait_drained(LIMIT),
            "the peer did not read what it was sent"
        );
    }

    fn apply(&mut self, a: &Action) {
        match *a {
            Action::Append(ref records) => {
                let log = self.life().log.clone();
                for &(k, time) in records {
                    let id = self.end as i64;
                    let device = format!("root.m.d{k}");
                    self.edge
                        .insert((device.clone(), i64::from(time)), id as f64);
                    let t = Tablet {
                        device,
                        measurements: vec!["s".into(), "id".into()],
                        columns: vec![Column::Double(vec![id as f64]), Column::Int64(vec![id])],
                        nulls: vec![None, None],
                        times: vec![i64::from(time)],
                        aligned: false,
                    };
                    let offset = log.append(KIND_TABLET, &t.serialize_v12()).unwrap();
                    assert_eq!(offset, self.end);
                    self.end += 1;
                }
            }
            Action::Peer(m) => self.peer.set_mode(m),
            Action::Start => {
                self.mgr().start(PIPE).unwrap();
                self.running = true;
                self.quiet = None;
            }
            Action::Stop => {
                if self.running {
                    self.faults += 1;
                }
                timed("STOP PIPE", || self.mgr().stop(PIPE).unwrap());
                self.stopped();
                let c = self.committed_now();
                self.peer.set_floor(c as i64);
            }
            Action::DropAndCreate => {
                self.faults += 1;
                timed("DROP PIPE", || self.mgr().drop_pipe(PIPE).unwrap());
                self.stopped();
                // A new pipe: history from the log start, owing nothing
                // to the old one.
                self.peer.set_floor(i64::MIN);
                self.peer.clear_acked();
                self.committed = 0;
                let port = self.peer.port;
                self.mgr()
                    .create(
                        PIPE,
                        BTreeMap::new(),
                        BTreeMap::new(),
                        connector(port, self.connector),
                    )
                    .unwrap();
                assert_eq!(self.committed_now(), 0);
            }
            Action::Restart => {
                self.faults += 1;
                let life = self.life.take().expect("open");
                timed("shutdown", || life.mgr.shutdown());
                drop(life.mgr);
                life.rt.shutdown_timeout(LIMIT);
                let log = Arc::try_unwrap(life.log)
                    .unwrap_or_else(|_| panic!("the log is still in use after shutdown"));
                log.close().unwrap();
                drop(log); // and its lock
                let running = self.running;
                self.stopped();
                self.open();
                self.running = running;
                if running {
                    self.quiet = None;
                }
            }
            Action::Crash => {
                self.faults += 1;
                let life = self.life.take().expect("open");
                drop(life.mgr);
                // Every task is dropped where it stands.
                life.rt.shutdown_timeout(LIMIT);
                let log = Arc::try_unwrap(life.log)
                    .unwrap_or_else(|_| panic!("the log is still in use after the crash"));
                log.abandon();
                let running = self.running;
                self.stopped();
                self.open();
                self.running = running;
                if running {
                    self.quiet = None;
                }
            }
            Action::Wait(ms) => std::thread::sleep(Duration::from_millis(u64::from(ms))),
        }
        self.check(a);
    }

    /// The invariants that hold after every action.
    fn check(&mut self, after: &Action) {
        let c = self.committed_now();
        assert!(
            c <= self.end,
            "after {after:?}: committed {c} past the log end"
        );
        assert!(
            c >= self.committed,
            "after {after:?}: committed offset moved back from {} to {c}",
            self.committed
        );
        self.committed = c;
        self.peer.seen(|s| {
            let unacked: Vec<i64> = (0..c as i64).filter(|i| !s.acked.contains(i)).collect();
            assert!(
                unacked.is_empty(),
                "after {after:?}: committed {c} passes records never acknowledged: {unacked:?}"
            );
            assert!(
                s.below_floor.is_empty(),
                "after {after:?}: records below the committed offset sent after a restart: (record, committed) {:?}",
                s.below_floor
            );
        });
        if let Some(q) = self.quiet {
            let now = self.peer.received();
            assert!(
                now.conns == q.conns && now.bytes <= q.bytes,
                "after {after:?}: the peer received {now:?} while the pipe was stopped, {q:?} when it stopped"
            );
        }
    }

    /// Ends the run: a healthy receiver and a restarted pipe deliver
    /// everything from the committed offset.
    fn finish(&mut self) {
        if self.running {
            timed("STOP PIPE", || self.mgr().stop(PIPE).unwrap());
            self.faults += 1;
        }
        self.stopped();
        let c0 = self.committed_now();
        self.peer.set_floor(c0 as i64);
        let before = self.peer.seen(|s| s.requests.len());
        self.peer.set_mode(Mode::Answer);
        self.mgr().start(PIPE).unwrap();
        self.running = true;
        self.quiet = None;
        let end = Instant::now() + LIMIT;
        while self.committed_now() < self.end {
            assert!(
                Instant::now() < end,
                "the pipe did not commit everything: committed {}, end {}",
                self.committed_now(),
                self.end
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let finish = Action::Wait(0);
        self.check(&finish);
        let faults = self.faults
            + self
                .peer
                .seen(|s| s.requests.iter().filter(|r| r.mode != Mode::Answer).count() as u32);
        self.peer.seen(|s| {
            let after: std::collections::BTreeSet<i64> = s.requests[before..]
                .iter()
                .filter(|r| r.mode == Mode::Answer)
                .flat_map(|r| r.ids.iter().copied())
                .collect();
            for id in c0 as i64..self.end as i64 {
                assert!(
                    after.contains(&id),
                    "record {id} (at or after the committed offset {c0}) was not sent after the restart"
                );
            }
            for id in 0..self.end as i64 {
                let n = s.held.get(&id).copied().unwrap_or(0);
                assert!(n >= 1, "the receiver does not hold record {id}");
                assert!(
                    n <= 1 + faults,
                    "record {id} applied {n} times with {faults} faults"
                );
            }
            assert_eq!(
                s.state, self.edge,
                "the receiver's values differ from the edge's (device, time) → value"
            );
        });
        let life = self.life.take().expect("open");
        timed("shutdown", || life.mgr.shutdown());
        drop(life.mgr);
        life.rt.shutdown_timeout(LIMIT);
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    /// With a short connector timeout a silent receiver makes the pipe
    /// time out and retry; with a long one it stays stuck until STOP, a
    /// restart or a crash abandons the request.
    #[test]
    fn a_pipe_delivers_at_least_once_through_faults(
        timeout_ms in prop_oneof![Just(200u64), Just(5_000)],
        connector in prop_oneof![
            Just("iotdb-thrift-connector"),
            Just("iotdb-thrift-async-connector"),
        ],
        actions in prop::collection::vec(action(), 1..30),
    ) {
        let mut h = Harness::new(Duration::from_millis(timeout_ms), connector);
        for a in &actions {
            h.apply(a);
        }
        h.finish();
    }
}
