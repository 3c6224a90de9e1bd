//! Pipes (IoTDB 1.2's pipe framework) over the change log.
//!
//! # Brief overview
//! A pipe is an extractor, a processor and a connector ([`plugin`]). Each
//! running pipe is a task that tails the node's change log from the pipe's
//! committed offset (the log consumer `pipe/<id>`), turns records into
//! events, and ships them; the offset advances only after the receiver
//! acknowledged everything before it. After a crash, restart or network
//! fault the pipe resumes from its committed offset: delivery is
//! at-least-once. Offsets are committed at most every 100 ms (each commit
//! fsyncs), so a fault sends again at most what was above the
//! acknowledged offset (with `iotdb-thrift-sync-connector`, the batch in
//! flight: up to `connector.batch.size-bytes` of tablets; with
//! `iotdb-thrift-async-connector`, its window: up to 1.25 times that, see
//! `task.rs`) plus what was acknowledged in the last 100 ms.
//!
//! - History is what arrived before the pipe was created (log offsets below
//!   the log end at `CREATE PIPE`); realtime is the rest. Reading the log in
//!   order sends history first.
//! - Ingestion never waits for a pipe: pipes only read the log.
//! - Pipes whose connector attributes are identical share one connector
//!   (the sync one: one connection; the async one: its pool), each keeping
//!   its own offset.
//! - `iotdb-thrift-async-connector` keeps several requests in flight (one
//!   per lane; a device's tablets always take the same lane, so the
//!   receiver applies each series' writes in log order and ends with the
//!   edge's values), over pooled connections driven by selector threads.
//! - SHOW PIPES says how a pipe is doing (`progress.rs`): the events it
//!   will still send, the age of the oldest one not acknowledged, and the
//!   failure it is retrying after.
//! - Failures are retried with capped, jittered exponential backoff, up to
//!   `max_number_of_sync_file_retry` times per batch; then the pipe goes
//!   STOPPED with the error as its exception message, and `START PIPE`
//!   resumes from the committed offset.
//! - `STOP PIPE` / `DROP PIPE` return within about half a second whatever
//!   the receiver does: the request in flight is abandoned (its connection
//!   reset, so nothing of it goes out later; sent again at the next START)
//!   and what was acknowledged is committed. Nothing is sent for a pipe
//!   after they returned.
//!
//! # Example
//! ```no_run
//! # async fn f(log: std::sync::Arc<wal::Log>) -> Result<(), replicator::PipeError> {
//! use std::collections::BTreeMap;
//! let pipes = replicator::PipeManager::open(log, "system".as_ref(), replicator::Settings::default(), tokio::runtime::Handle::current())?;
//! let connector: BTreeMap<String, String> = [("connector", "iotdb-thrift-connector"), ("connector.ip", "127.0.0.1"), ("connector.port", "6668")]
//!     .into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
//! pipes.create("a2b", BTreeMap::new(), BTreeMap::new(), connector)?;
//! pipes.start("a2b")?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod meta;
pub mod plugin;
mod progress;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meta::{PipeMeta, PipeState};
use plugin::connector::thrift_async::{PoolSize, Selectors};
use plugin::{AsyncConnector, Connector, ConnectorSpec, Extractor};
pub use progress::{Stats, SHOW_SCAN_BYTES};
use tracing::{info, warn};

/// IoTDB's PIPE_ERROR.
pub const PIPE_ERROR: i32 = 1107;
/// IoTDB's PIPE_NOT_EXIST_ERROR.
pub const PIPE_NOT_EXIST: i32 = 1806;

/// A failed pipe operation, with an IoTDB status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeError {
    /// Status code (1107 PIPE_ERROR, 1806 PIPE_NOT_EXIST_ERROR, ...).
    pub code: i32,
    /// What went wrong, naming the pipe or the attribute.
    pub message: String,
}

impl PipeError {
    fn new(code: i32, message: impl Into<String>) -> PipeError {
        PipeError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for PipeError {}

/// Settings shared by all pipes of a node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node's timestamp precision (`ms`, `us`, `ns`), sent in handshakes.
    pub precision: String,
    /// Units of that precision per second.
    pub units_per_sec: i64,
    /// Retries of a failing batch (`max_number_of_sync_file_retry`).
    pub max_retry: u32,
    /// First retry delay; doubles each retry (`pipe_connector_retry_interval_ms`).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
    /// Connect and call timeout (`pipe_connector_timeout_ms`).
    pub timeout: Duration,
    /// Most records in one batch.
    pub batch_records: usize,
    /// Threads driving the async connectors' sockets
    /// (`pipe_async_connector_selector_number`).
    pub async_selectors: usize,
    /// Idle connections an async connector keeps per target node
    /// (`pipe_async_connector_core_client_number`).
    pub async_core_clients: usize,
    /// Connections (requests in flight) of an async connector per target
    /// node, and so the lanes of a pipe per target node
    /// (`pipe_async_connector_max_client_number`).
    pub async_max_clients: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            precision: "ms".into(),
            units_per_sec: 1000,
            max_retry: 5,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(30),
            timeout: Duration::from_secs(900),
            batch_records: 4096,
            async_selectors: 1,
            async_core_clients: 8,
            async_max_clients: 16,
        }
    }
}

/// How long STOP / DROP wait for a task to wind down (it abandons its
/// transfer at once and commits what was acknowledged, one fsync) before
/// aborting it. Whatever the receiver does, STOP returns within about this.
const STOP_GRACE: Duration = Duration::from_millis(500);

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    stats: Arc<Stats>,
    handle: tokio::task::JoinHandle<()>,
    generation: u64,
    /// The task's ledger writes; closed once the task is gone.
    gate: Arc<std::sync::Mutex<task::CommitGate>>,
}

struct Entry {
    meta: PipeMeta,
    stats: Arc<Stats>,
    running: Option<Running>,
}

/// A live connector as the pipes using it share it.
#[derive(Clone)]
pub(crate) enum Live {
    /// One request at a time, in order: the sync thrift and do-nothing
    /// connectors (a pipe waits for the connector while another pipe
    /// sharing it transfers).
    Serial(Arc<tokio::sync::Mutex<Connector>>),
    /// Several requests in flight over a pool: the async thrift connector.
    Lanes(Arc<AsyncConnector>),
}

struct Inner {
    pipes: BTreeMap<String, Entry>,
    /// Shared connectors by their attribute key.
    connectors: HashMap<String, Live>,
    generation: u64,
    /// The async connectors' selector threads, started with the first one.
    selectors: Option<Selectors>,
}

pub(crate) struct Shared {
    log: Arc<wal::Log>,
    path: PathBuf,
    settings: Settings,
    handle: tokio::runtime::Handle,
    inner: Mutex<Inner>,
}

/// One row of SHOW PIPES (the figures are explained in the `progress`
/// module: `replicator/src/progress.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct PipeRow {
    /// The definition and state. While the pipe runs and retries a failed
    /// transfer, `exception` is the last failure (`retry 3 of 5: …`),
    /// empty again once a transfer succeeded.
    pub meta: PipeMeta,
    /// Events the pipe will still send: read and not yet acknowledged, or
    /// in the log past what it read, up to where it stops reading; records
    /// its extractor leaves out are not counted.
    pub remaining_events: u64,
    /// Wall-clock age, in seconds, of the oldest record the pipe has not
    /// had acknowledged and will send; 0 when nothing remains.
    pub lag_seconds: f64,
}

/// The consumer name of a pipe in the change log's ledger.
pub fn consumer_name(id: &str) -> String {
    format!("pipe/{id}")
}

fn connector_key(attrs: &BTreeMap<String, String>) -> String {
    attrs.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// All pipes of a node.
pub struct PipeManager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PipeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeManager")
            .field("path", &self.shared.path)
            .finish()
    }
}

impl PipeManager {
    /// Loads the pipes from `dir/pipes.json` and starts the RUNNING ones
    /// from their committed offsets, on `handle`'s runtime.
    ///
    /// # Errors
    /// An unreadable definitions file.
    pub fn open(
        log: Arc<wal::Log>,
        dir: &Path,
        settings: Settings,
        handle: tokio::runtime::Handle,
    ) -> Result<PipeManager, PipeError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PipeError::new(PIPE_ERROR, format!("{}: {e}", dir.display())))?;
        let path = dir.join("pipes.json");
        let metas = meta::load(&path).map_err(|e| PipeError::new(PIPE_ERROR, e))?;
        let mut pipes = BTreeMap::new();
        for m in metas {
            let stats = Arc::new(Stats::new(
                log.committed(&consumer_name(&m.id)).unwrap_or(0),
            ));
            pipes.insert(
                m.id.clone(),
                Entry {
                    meta: m,
                    stats,
                    running: None,
                },
            );
        }
        let shared = Arc::new(Shared {
            log,
            path,
            settings,
            handle,
            inner: Mutex::new(Inner {
                pipes,
                connectors: HashMap::new(),
                generation: 0,
                selectors: None,
            }),
        });
        let mgr = PipeManager { shared };
        let running: Vec<String> = {
            let inner = mgr.shared.inner.lock().expect("pipes lock");
            inner
                .pipes
                .values()
                .filter(|e| e.meta.state == PipeState::Running)
                .map(|e| e.meta.id.clone())
                .collect()
        };
        for id in running {
            info!(pipe = %id, "resuming running pipe");
            let mut inner = mgr.shared.inner.lock().expect("pipes lock");
            mgr.shared.spawn(&mut inner, &id);
        }
        Ok(mgr)
    }

    /// `CREATE PIPE`: validates the attributes (filling in defaults) and
    /// registers the pipe STOPPED, with its offset at the log start
    /// (history) or the log end (realtime only).
    ///
    /// # Errors
    /// A duplicate id or a bad attribute, named.
    pub fn create(
        &self,
        id: &str,
        mut extractor: BTreeMap<String, String>,
        mut processor: BTreeMap<String, String>,
        connector: BTreeMap<String, String>,
    ) -> Result<(), PipeError> {
        let bad =
            |m: String| PipeError::new(PIPE_ERROR, format!("Failed to create pipe {id}: {m}"));
        let s = &self.shared;
        let ext = Extractor::configure(&mut extractor, s.settings.units_per_sec).map_err(bad)?;
        plugin::processor(&mut processor).map_err(bad)?;
        ConnectorSpec::parse(&connector).map_err(bad)?;
        let mut inner = s.inner.lock().expect("pipes lock");
        if inner.pipes.contains_key(id) {
            return Err(bad(format!("pipe {id} already exists")));
        }
        let history_end = s.log.end_offset();
        let start = if ext.history {
            s.log.log_start()
        } else {
            history_end
        };
        let consumer = consumer_name(id);
        // A leftover consumer of a dropped pipe with the same id restarts.
        let _ = s.log.remove_consumer(&consumer);
        s.log
            .register_consumer(&consumer, start)
            .map_err(|e| bad(e.to_string()))?;
        let meta = PipeMeta {
            id: id.to_string(),
            creation_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            state: PipeState::Stopped,
            extractor,
            processor,
            connector,
            exception: String::new(),
            history_end,
        };
        let stats = Arc::new(Stats::new(start));
        inner.pipes.insert(
            id.to_string(),
            Entry {
                meta,
                stats,
                running: None,
            },
        );
        if let Err(e) = s.save(&inner) {
            inner.pipes.remove(id);
            let _ = s.log.remove_consumer(&consumer);
            return Err(bad(e));
        }
        info!(pipe = id, history_end, start, "created pipe");
        Ok(())
    }

    /// `START PIPE`: runs the pipe from its committed offset (a no-op if it
    /// runs).
    ///
    /// # Errors
    /// An unknown pipe.
    pub fn start(&self, id: &str) -> Result<(), PipeError> {
        let s = &self.shared;
        let mut inner = s.inner.lock().expect("pipes lock");
        let Some(e) = inner.pipes.get_mut(id) else {
            return Err(PipeError::new(
                PIPE_NOT_EXIST,
                format!("Failed to start pipe {id}, the pipe does not exist"),
            ));
        };
        if e.running.is_some() {
            return Ok(());
        }
        e.meta.state = PipeState::Running;
        e.meta.exception.clear();
        s.save(&inner).map_err(|m| PipeError::new(PIPE_ERROR, m))?;
        s.spawn(&mut inner, id);
        Ok(())
    }

    /// `STOP PIPE`: stops the task, abandoning the batch in flight (it is
    /// sent again at the next START) and committing what the receiver
    /// acknowledged. Returns within about half a second whatever the
    /// receiver does; nothing is sent for the pipe after it returned.
    ///
    /// # Errors
    /// An unknown pipe.
    pub fn stop(&self, id: &str) -> Result<(), PipeError> {
        let s = &self.shared;
        let running = {
            let mut inner = s.inner.lock().expect("pipes lock");
            let Some(e) = inner.pipes.get_mut(id) else {
                return Err(PipeError::new(
                    PIPE_NOT_EXIST,
                    format!("Failed to stop pipe {id}, the pipe does not exist"),
                ));
            };
            e.meta.state = PipeState::Stopped;
            let r = e.running.take();
            s.save(&inner).map_err(|m| PipeError::new(PIPE_ERROR, m))?;
            r
        };
        if let Some(r) = running {
            s.join(r);
        }
        Ok(())
    }

    /// `DROP PIPE`: stops the pipe if it runs (as [`PipeManager::stop`]:
    /// promptly, and nothing is sent for it after this returned) and
    /// forgets it (and its log consumer, so it no longer holds segments
    /// back).
    ///
    /// # Errors
    /// An unknown pipe.
    pub fn drop_pipe(&self, id: &str) -> Result<(), PipeError> {
        let s = &self.shared;
        let running = {
            let mut inner = s.inner.lock().expect("pipes lock");
            let Some(mut e) = inner.pipes.remove(id) else {
                return Err(PipeError::new(
                    PIPE_NOT_EXIST,
                    format!("Failed to drop pipe {id}, the pipe does not exist"),
                ));
            };
            let key = connector_key(&e.meta.connector);
            if !inner
                .pipes
                .values()
                .any(|o| connector_key(&o.meta.connector) == key)
            {
                inner.connectors.remove(&key);
            }
            s.save(&inner).map_err(|m| PipeError::new(PIPE_ERROR, m))?;
            e.running.take()
        };
        if let Some(r) = running {
            s.join(r);
        }
        s.log
            .remove_consumer(&consumer_name(id))
            .map_err(|e| PipeError::new(PIPE_ERROR, e.to_string()))?;
        info!(pipe = id, "dropped pipe");
        Ok(())
    }

    /// `SHOW PIPES` (`None`), `SHOW PIPE id`, or with `used_by`, the pipes
    /// whose connector is the same instance as that pipe's.
    ///
    /// # Errors
    /// An unknown pipe in `SHOW PIPE id` or `USED BY id`.
    pub fn show(&self, id: Option<&str>, used_by: Option<&str>) -> Result<Vec<PipeRow>, PipeError> {
        let s = &self.shared;
        let inner = s.inner.lock().expect("pipes lock");
        let key = match used_by {
            Some(u) => Some(connector_key(
                &inner
                    .pipes
                    .get(u)
                    .ok_or_else(|| {
                        PipeError::new(PIPE_NOT_EXIST, format!("pipe {u} does not exist"))
                    })?
                    .meta
                    .connector,
            )),
            None => None,
        };
        if let Some(i) = id {
            if !inner.pipes.contains_key(i) {
                return Err(PipeError::new(
                    PIPE_NOT_EXIST,
                    format!("pipe {i} does not exist"),
                ));
            }
        }
        // The figures are worked out without the manager's lock: counting
        // what lies ahead may read the log (see `progress`).
        let picked: Vec<(PipeMeta, Arc<Stats>)> = inner
            .pipes
            .values()
            .filter(|e| id.is_none_or(|i| e.meta.id == i))
            .filter(|e| {
                key.as_ref()
                    .is_none_or(|k| &connector_key(&e.meta.connector) == k)
            })
            .map(|e| (e.meta.clone(), e.stats.clone()))
            .collect();
        drop(inner);
        // Records the change log's disk bounds deleted before a pipe sent
        // them: never silent (ExceptionMessage).
        let lost: HashMap<String, wal::ConsumerState> = s
            .log
            .consumers()
            .into_iter()
            .filter(|c| !c.state.lost.is_empty())
            .map(|c| (c.name, c.state))
            .collect();
        Ok(picked
            .into_iter()
            .map(|(mut meta, stats)| {
                let f = stats.figures(&s.log, &meta, s.settings.units_per_sec);
                if meta.exception.is_empty() && meta.state == PipeState::Running {
                    if let Some(m) = f.retry {
                        meta.exception = m;
                    }
                }
                if let Some(c) = lost.get(&consumer_name(&meta.id)) {
                    let ranges: Vec<String> =
                        c.lost.iter().map(|(a, b)| format!("[{a}, {b})")).collect();
                    let note = format!(
                        "{} record(s) lost from the change log before this pipe sent them (deleted by a disk bound, wal_throttle_threshold_in_byte or pipe_max_allowed_pinned_wal_size_in_byte, or damaged): offsets {}",
                        c.lost_records(),
                        ranges.join(" ")
                    );
                    meta.exception = if meta.exception.is_empty() {
                        note
                    } else {
                        format!("{}; {note}", meta.exception)
                    };
                }
                PipeRow {
                    meta,
                    remaining_events: f.remaining,
                    lag_seconds: f.lag_seconds,
                }
            })
            .collect())
    }

    /// Stops every task (the pipes stay RUNNING on disk, to resume at the
    /// next start). Waits for in-flight batches.
    pub fn shutdown(&self) {
        let runs: Vec<Running> = {
            let mut inner = self.shared.inner.lock().expect("pipes lock");
            inner
                .pipes
                .values_mut()
                .filter_map(|e| e.running.take())
                .collect()
        };
        for r in runs {
            self.shared.join(r);
        }
    }
}

impl Shared {
    fn save(&self, inner: &Inner) -> Result<(), String> {
        let metas: Vec<PipeMeta> = inner.pipes.values().map(|e| e.meta.clone()).collect();
        meta::save(&self.path, &metas)
    }

    /// Signals a task to stop and waits for it: it abandons its transfer
    /// and commits what was acknowledged. A task not gone within
    /// [`STOP_GRACE`] is aborted (dropped at its next await: its sockets
    /// close, nothing more is sent). Then its ledger writes are fenced off.
    /// Called off the runtime's worker threads (statement execution runs in
    /// blocking threads), or from them via `block_in_place`.
    fn join(&self, r: Running) {
        let _ = r.stop.send(true);
        let mut handle = r.handle;
        async fn wind_down(handle: &mut tokio::task::JoinHandle<()>) {
            if tokio::time::timeout(STOP_GRACE, &mut *handle)
                .await
                .is_err()
            {
                warn!(grace = ?STOP_GRACE, "pipe task did not stop in time; aborting it");
                handle.abort();
                let _ = handle.await;
            }
        }
        let stats = r.stats.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(wind_down(&mut handle)))
            }
            Ok(_) => {
                // Cannot block here: abort, so the task is dropped before it
                // runs again.
                warn!("pipe task aborted, not awaited: no multi-thread runtime");
                handle.abort();
            }
            Err(_) => self.handle.block_on(wind_down(&mut handle)),
        }
        task::CommitGate::close(&r.gate);
        // A task that ended on its own said so already; an aborted one did
        // not.
        stats.stopped(stats.committed.load(Ordering::Relaxed));
    }

    fn connector_for(
        &self,
        inner: &mut Inner,
        attrs: &BTreeMap<String, String>,
    ) -> Result<Live, String> {
        let key = connector_key(attrs);
        if let Some(c) = inner.connectors.get(&key) {
            return Ok(c.clone());
        }
        let spec = ConnectorSpec::parse(attrs)?;
        let st = &self.settings;
        let live = match spec {
            ConnectorSpec::ThriftAsync { .. } => {
                let selectors = match &inner.selectors {
                    Some(s) => s.handle(),
                    None => {
                        let s = Selectors::start(st.async_selectors).map_err(|e| {
                            format!("cannot start the async connector's selector threads: {e}")
                        })?;
                        let h = s.handle();
                        inner.selectors = Some(s);
                        h
                    }
                };
                Live::Lanes(Arc::new(AsyncConnector::new(
                    spec,
                    &st.precision,
                    st.timeout,
                    PoolSize {
                        core: st.async_core_clients,
                        max: st.async_max_clients,
                    },
                    selectors,
                )))
            }
            spec => Live::Serial(Arc::new(tokio::sync::Mutex::new(Connector::new(
                spec,
                &st.precision,
                st.timeout,
            )))),
        };
        inner.connectors.insert(key, live.clone());
        Ok(live)
    }

    fn spawn(self: &Arc<Self>, inner: &mut Inner, id: &str) {
        inner.generation += 1;
        let generation = inner.generation;
        let connector = match inner.pipes.get(id).map(|e| e.meta.connector.clone()) {
            Some(attrs) => self.connector_for(inner, &attrs),
            None => return,
        };
        let e = inner.pipes.get_mut(id).expect("pipe exists");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let gate = Arc::<std::sync::Mutex<task::CommitGate>>::default();
        let handle = match connector {
            Ok(conn) => {
                let job = task::PipeTask {
                    shared: self.clone(),
                    meta: e.meta.clone(),
                    stats: e.stats.clone(),
                    connector: conn,
                    generation,
                    pending: Default::default(),
                    committed: Default::default(),
                    last_commit: std::sync::Mutex::new(std::time::Instant::now()),
                    noted: tokio::sync::Notify::new(),
                    commit_gate: gate.clone(),
                };
                self.handle.spawn(job.run(stop_rx))
            }
            Err(m) => {
                e.meta.state = PipeState::Stopped;
                e.meta.exception = m;
                return;
            }
        };
        e.running = Some(Running {
            stop,
            stats: e.stats.clone(),
            handle,
            generation,
            gate,
        });
    }

    /// Called by a task that gave up: the pipe goes STOPPED with `message`.
    fn fail(&self, id: &str, generation: u64, message: String) {
        let mut inner = self.inner.lock().expect("pipes lock");
        let Some(e) = inner.pipes.get_mut(id) else {
            return;
        };
        if e.running
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            e.running = None;
            e.meta.state = PipeState::Stopped;
            e.meta.exception = message.clone();
            warn!(pipe = id, exception = %message, "pipe stopped by an unrecoverable error");
            if let Err(err) = self.save(&inner) {
                warn!(pipe = id, cause = %err, "could not persist the pipe's state");
            }
        }
    }
}
