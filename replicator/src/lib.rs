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
//!   the log end at `CREATE PIPE`); realtime is the rest. History is sent
//!   first: read from the log in order, or, when the log no longer holds it
//!   whole (retention deleted its start), from a snapshot of the node's
//!   store taken at CREATE, then the log from the snapshot's offset
//!   ([`history`]).
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
//!   failure it is retrying after (cleared once it got past it), what it
//!   skipped or lost, or why it stopped. One mechanism for every pipe: the
//!   task reports retries to the pipe's progress stats, skips and failures
//!   to its definition, and SHOW PIPES words them; a PIPESINK pipe's in the
//!   sync tool's terms (below).
//! - Failures are retried with capped, jittered exponential backoff, up to
//!   `max_number_of_sync_file_retry` times per batch; then the pipe goes
//!   STOPPED with the error as its exception message, and `START PIPE`
//!   resumes from the committed offset.
//! - Auto-restart (`pipe_auto_restart_enabled`, default true, as IoTDB):
//!   a pipe that stopped on its own for a reason a restart may fix (its
//!   transfers kept failing: the link, the receiver; or its offset could
//!   not be committed) stays STOPPED and waits, then runs again from its
//!   committed offset. The wait starts at
//!   `pipe_auto_restart_interval_init_ms` and doubles for each restart in a
//!   row that got nothing more acknowledged, up to
//!   `pipe_auto_restart_interval_max_ms`, jittered by ±25 %; it never gives
//!   up, so a pipe is RUNNING again at most about one longest wait after
//!   its link returns, however long the outage. SHOW PIPES says
//!   `auto-restart at <time> (attempt n): <why it stopped>`. Not restarted:
//!   a pipe a person stopped (STOP PIPE), and one that stopped for a reason
//!   a restart cannot fix (a change-log record that does not decode, a
//!   definition that does not configure, a damaged change log): those wait
//!   for START PIPE. The wait is persisted: a node stopped meanwhile
//!   restarts the pipe after it starts (at once when it is overdue). With
//!   auto-restart off, a pipe stays STOPPED as the seed says.
//! - Loop guards: records that arrived through a pipe are marked in the
//!   change log (`protocol::event::FROM_PIPE`); a pipe with
//!   `extractor.forwarding-pipe-requests=false` leaves them out, so A→B and
//!   B→A pipes can run side by side.
//! - `STOP PIPE` / `DROP PIPE` return within about half a second whatever
//!   the receiver does: the request in flight is abandoned (its connection
//!   reset, so nothing of it goes out later; sent again at the next START)
//!   and what was acknowledged is committed. Nothing is sent for a pipe
//!   after they returned.
//! - A pipe never ships a point that the edge had deleted before the pipe
//!   read it: tablets are filtered by the later deletions the log holds
//!   ([`deletions`]).
//! - IoTDB 1.0/1.1's sync tool lives here too: PipeSinks ([`pipesink`])
//!   and its pipes (`CREATE PIPE p TO sink`, [`meta::SinkPipe`]), which run
//!   as pipes with the legacy connector, at most one not dropped at a time,
//!   with the tool's states (RUNNING / STOP / DROP) and messages (`WARN:
//!   …` while running after a retry (kept once it got past it), a skip or
//!   a loss; `ERROR: …` once it stopped on its own).
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

pub mod deletions;
pub mod history;
pub mod meta;
pub mod pipesink;
pub mod plugin;
mod progress;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deletions::Deletions;
use meta::{PipeMeta, PipeState, SinkPipe};
use pipesink::PipeSink;
use plugin::connector::thrift_async::{PoolSize, Selectors};
use plugin::{
    AsyncConnector, Connector, ConnectorEnv, ConnectorSpec, DatabaseOf, Extractor, Identity,
};
pub use progress::{Stats, Transfers, SHOW_SCAN_BYTES, TRANSFER_BUCKETS};
use tracing::{info, warn};

/// IoTDB's PIPE_ERROR.
pub const PIPE_ERROR: i32 = 1107;
/// IoTDB 0.13/0.14's QUERY_PROCESS_ERROR: the code of every sync-tool
/// statement's refusal in the seed document ("Msg: 411: …").
pub const QUERY_PROCESS_ERROR: i32 = 411;
/// Longest a `CREATE PIPE … TO` waits for the receiver to answer its check.
const CREATE_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// The node's databases (legacy handshakes carry a tablet's database).
    pub database_of: DatabaseOf,
    /// Restart pipes that stopped on their own after transfer failures
    /// (`pipe_auto_restart_enabled`). Default true.
    pub auto_restart: bool,
    /// The wait before the first restart of a pipe that stopped on its
    /// own; doubled for each restart in a row that got nothing
    /// acknowledged (`pipe_auto_restart_interval_init_ms`). Default 10 s.
    pub restart_base: Duration,
    /// The longest wait between restarts
    /// (`pipe_auto_restart_interval_max_ms`). Default 3 min.
    pub restart_cap: Duration,
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
            database_of: DatabaseOf::default(),
            auto_restart: true,
            restart_base: DEFAULT_RESTART_BASE,
            restart_cap: DEFAULT_RESTART_CAP,
        }
    }
}

/// Default `pipe_auto_restart_interval_init_ms`: 10 s, a short wait for a
/// blip (the retries before the stop took about half a minute already).
pub const DEFAULT_RESTART_BASE: Duration = Duration::from_secs(10);
/// Default `pipe_auto_restart_interval_max_ms`: 3 min, the round of IoTDB's
/// own restart check (`pipe_meta_syncer_sync_interval_minutes` = 3 times
/// `pipe_meta_syncer_auto_restart_pipe_check_interval_round` = 1): a pipe
/// is RUNNING again at most about this long after its link returns.
pub const DEFAULT_RESTART_CAP: Duration = Duration::from_secs(180);

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
    /// Set while the run was started by an auto-restart: its attempt, and
    /// where it started from: the committed offset and the tablet bytes
    /// acknowledged so far (a run that moved neither, history from a store
    /// snapshot included, counts as a failed attempt when it stops again).
    restarted: Option<(u32, (u64, u64))>,
}

/// A live connector as the pipes using it share it.
#[derive(Clone)]
pub(crate) enum Live {
    /// One batch after the other, in order (the sync thrift connector
    /// keeps two requests in flight): the sync thrift, legacy and do-nothing
    /// connectors (a pipe waits for the connector while another pipe
    /// sharing it transfers).
    Serial(Arc<tokio::sync::Mutex<Connector>>),
    /// Several requests in flight over a pool: the async thrift connector.
    Lanes(Arc<AsyncConnector>),
}

impl Live {
    /// Whether a pipe task holds it (besides the manager's table).
    fn in_use(&self) -> bool {
        match self {
            Live::Serial(c) => Arc::strong_count(c) > 1,
            Live::Lanes(c) => Arc::strong_count(c) > 1,
        }
    }
}

struct Inner {
    pipes: BTreeMap<String, Entry>,
    /// The sync tool's PipeSinks, by name.
    sinks: BTreeMap<String, PipeSink>,
    /// Shared connectors by their attribute key.
    connectors: HashMap<String, Live>,
    generation: u64,
    /// The async connectors' selector threads, started with the first one.
    selectors: Option<Selectors>,
    /// Set by [`PipeManager::shutdown`]: no pipe is restarted after it.
    closed: bool,
}

pub(crate) struct Shared {
    log: Arc<wal::Log>,
    /// Where history the log no longer holds is read (the node's store).
    history: Option<Arc<dyn history::HistorySource>>,
    /// The pipes' store history progress (`system/history/`).
    history_files: history::Files,
    path: PathBuf,
    sinks_path: PathBuf,
    deletions: Arc<Deletions>,
    /// Replaced by `LOAD CONFIGURATION` ([`PipeManager::update_settings`]).
    settings: std::sync::RwLock<Settings>,
    handle: tokio::runtime::Handle,
    inner: Mutex<Inner>,
}

/// One row of SHOW PIPES (the figures are explained in the `progress`
/// module: `replicator/src/progress.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct PipeRow {
    /// The definition and state, with `exception` as SHOW PIPES shows it
    /// (ExceptionMessage; a PIPESINK pipe's message column): while the
    /// pipe runs and retries a failed transfer, the last failure (`retry 3
    /// of 5: …`), empty again once a transfer succeeded; once it stopped on
    /// its own, why; beside it what it skipped or lost. A PIPESINK pipe's
    /// carries the sync tool's `WARN: ` / `ERROR: ` (see `progress.rs`).
    pub meta: PipeMeta,
    /// Events the pipe will still send: read and not yet acknowledged, or
    /// in the log past what it read, up to where it stops reading; records
    /// its extractor leaves out are not counted.
    pub remaining_events: u64,
    /// Wall-clock age, in seconds, of the oldest record the pipe has not
    /// had acknowledged and will send; 0 when nothing remains.
    pub lag_seconds: f64,
    /// Where it sends: the PipeSink's name for a sync-tool pipe, else the
    /// connector's targets (`ip:port`, comma-separated).
    pub remote: String,
}

/// How far a pipe got: its committed offset and the tablet bytes its
/// receiver acknowledged (the second moves while history from a store
/// snapshot is sent and the offset stays put).
fn progress_mark(stats: &Stats) -> (u64, u64) {
    (
        stats.committed.load(Ordering::Relaxed),
        stats.transfers.bytes(),
    )
}

/// The consumer name of a pipe in the change log's ledger.
pub fn consumer_name(id: &str) -> String {
    format!("pipe/{id}")
}

fn connector_key(attrs: &BTreeMap<String, String>) -> String {
    attrs.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// The key of a pipe's connector instance: its attributes, and for a
/// legacy connector the pipe too (its handshake names the pipe).
fn instance_key(m: &PipeMeta) -> String {
    let mut k = connector_key(&m.connector);
    if matches!(
        ConnectorSpec::parse(&m.connector),
        Ok(ConnectorSpec::Legacy(_))
    ) {
        k.push_str(&format!("\0pipe={}@{}", m.id, m.creation_time_ms));
    }
    k
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn sink_err(m: impl Into<String>) -> PipeError {
    PipeError::new(QUERY_PROCESS_ERROR, m)
}

/// The refusal of an operation on a dropped sync-tool pipe.
fn dropped(id: &str) -> PipeError {
    sink_err(format!(
        "There is no existing pipe {id}: it was dropped (state DROP). Create a new one with CREATE PIPE {id} TO <pipesink>."
    ))
}

/// How often the deletion index is persisted while the log grows: after a
/// crash, open reads at most this much of the log's tail for deletions.
const DELETIONS_SAVE_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Loads the pipes from `dir/pipes.json` (the PipeSinks from
    /// `dir/pipesinks.json`, the deletion index from `dir/deletions.json`,
    /// caught up with the log) and starts the RUNNING ones from their
    /// committed offsets, on `handle`'s runtime.
    ///
    /// # Errors
    /// An unreadable definitions or index file.
    pub fn open(
        log: Arc<wal::Log>,
        dir: &Path,
        settings: Settings,
        handle: tokio::runtime::Handle,
    ) -> Result<PipeManager, PipeError> {
        Self::open_with_history(log, dir, settings, handle, None)
    }

    /// As [`PipeManager::open`], with `history`: where a pipe created once
    /// the log no longer holds its whole history reads it (the node's
    /// store; see [`history`]). Without one, such a pipe sends only what
    /// the log still holds (a warning says so at CREATE).
    ///
    /// # Errors
    /// As [`PipeManager::open`].
    pub fn open_with_history(
        log: Arc<wal::Log>,
        dir: &Path,
        settings: Settings,
        handle: tokio::runtime::Handle,
        history: Option<Arc<dyn history::HistorySource>>,
    ) -> Result<PipeManager, PipeError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PipeError::new(PIPE_ERROR, format!("{}: {e}", dir.display())))?;
        let path = dir.join("pipes.json");
        let metas = meta::load(&path).map_err(|e| PipeError::new(PIPE_ERROR, e))?;
        let sinks_path = dir.join("pipesinks.json");
        let sinks = pipesink::load(&sinks_path)
            .map_err(|e| PipeError::new(PIPE_ERROR, e))?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let deletions =
            Arc::new(Deletions::open(log.clone(), dir).map_err(|e| PipeError::new(PIPE_ERROR, e))?);
        let weak = Arc::downgrade(&deletions);
        let _ = std::thread::Builder::new()
            .name("deletion-index".into())
            .spawn(move || loop {
                std::thread::sleep(DELETIONS_SAVE_INTERVAL);
                let Some(d) = weak.upgrade() else { return };
                if let Err(e) = d.save() {
                    warn!(cause = %e, "could not persist the deletion index; retrying");
                }
            });
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
                    restarted: None,
                },
            );
        }
        let history_files = history::Files::new(dir);
        history_files.retain(|id, created| {
            pipes.get(id).is_some_and(|e: &Entry| {
                e.meta.creation_time_ms == created && e.meta.state != PipeState::Dropped
            })
        });
        let shared = Arc::new(Shared {
            log,
            history,
            history_files,
            path,
            sinks_path,
            deletions,
            settings: std::sync::RwLock::new(settings),
            handle,
            inner: Mutex::new(Inner {
                pipes,
                sinks,
                connectors: HashMap::new(),
                generation: 0,
                selectors: None,
                closed: false,
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
        // Pipes that were waiting to restart when the node stopped.
        mgr.shared.rearm_restarts();
        Ok(mgr)
    }

    /// Replaces the settings (`LOAD CONFIGURATION`): retries read them at
    /// each failure (serial and lane transfers alike); a new connector
    /// timeout applies to connectors made from now on (a pipe's connector,
    /// sync, async or legacy, is remade when it is started and no running
    /// pipe shares it). The selector threads are started once, with the
    /// first async connector.
    ///
    /// Auto-restart (`pipe_auto_restart_enabled` and its intervals) applies
    /// at once: turned off, the pipes waiting to restart stay STOPPED (as
    /// with it off all along); a shorter longest wait brings forward the
    /// restarts due later than it. Turned on, it applies to pipes that stop
    /// from then on.
    pub fn update_settings(&self, settings: Settings) {
        let s = &self.shared;
        let (timeout_changed, restarts_changed) = {
            let mut cur = s.settings.write().expect("settings lock");
            let changed = cur.timeout != settings.timeout;
            let restarts = cur.auto_restart != settings.auto_restart
                || cur.restart_cap != settings.restart_cap;
            *cur = settings;
            (changed, restarts)
        };
        if timeout_changed {
            let mut inner = s.inner.lock().expect("pipes lock");
            inner.connectors.retain(|_, c| c.in_use());
        }
        if restarts_changed {
            s.rearm_restarts();
        }
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
        extractor: BTreeMap<String, String>,
        processor: BTreeMap<String, String>,
        connector: BTreeMap<String, String>,
    ) -> Result<(), PipeError> {
        self.insert(id, extractor, processor, connector, None, now_ms())
    }

    /// Validates and registers a pipe (see [`PipeManager::create`]).
    fn insert(
        &self,
        id: &str,
        mut extractor: BTreeMap<String, String>,
        mut processor: BTreeMap<String, String>,
        connector: BTreeMap<String, String>,
        sink: Option<SinkPipe>,
        creation_time_ms: i64,
    ) -> Result<(), PipeError> {
        let code = if sink.is_some() {
            QUERY_PROCESS_ERROR
        } else {
            PIPE_ERROR
        };
        let bad = |m: String| PipeError::new(code, format!("Failed to create pipe {id}: {m}"));
        let s = &self.shared;
        let ext = Extractor::configure(&mut extractor, s.settings().units_per_sec).map_err(bad)?;
        plugin::processor(&mut processor).map_err(bad)?;
        ConnectorSpec::parse(&connector).map_err(bad)?;
        {
            // Refused before a snapshot costs a flush (checked again below,
            // under the same lock as the registration).
            let inner = s.inner.lock().expect("pipes lock");
            if inner
                .pipes
                .get(id)
                .is_some_and(|e| e.meta.state != PipeState::Dropped)
            {
                return Err(bad(format!("pipe {id} already exists")));
            }
            if sink.is_some() {
                Self::one_sink_pipe(&inner)?;
            }
        }
        let mut snapshot = self.history_snapshot(id, ext.history).map_err(bad)?;
        let consumer = consumer_name(id);
        let (mut inner, history_end, start) = loop {
            let inner = s.inner.lock().expect("pipes lock");
            if let Some(e) = inner.pipes.get(id) {
                if e.meta.state != PipeState::Dropped {
                    return Err(bad(format!("pipe {id} already exists")));
                }
            }
            if sink.is_some() {
                Self::one_sink_pipe(&inner)?;
            }
            let (history_end, start) = match &snapshot {
                // History from the store's snapshot, realtime from its offset.
                Some(snap) => (snap.offset, snap.offset),
                None => {
                    let end = s.log.end_offset();
                    (end, if ext.history { s.log.log_start() } else { end })
                }
            };
            // A leftover consumer of a dropped pipe with the same id restarts.
            let _ = s.log.remove_consumer(&consumer);
            let registered = s
                .log
                .register_consumer(&consumer, start)
                .map_err(|e| bad(e.to_string()))?;
            if snapshot.is_some() && registered != start {
                // The log no longer holds the snapshot's offset: records after
                // the snapshot would be lost. Retention keeps what the store's
                // previous checkpoint needs, so only a disk bound gets here.
                let _ = s.log.remove_consumer(&consumer);
                return Err(bad(format!(
                    "the change log was cut past the store's snapshot (offset {start}, the log starts at {registered}) while the pipe was created; try again"
                )));
            }
            if snapshot.is_none() && ext.history && registered > 0 && s.history.is_some() {
                // Retention deleted the log's first segment after the log
                // was found whole: the history comes from the store after
                // all (the log start only grows, so this happens once).
                let _ = s.log.remove_consumer(&consumer);
                drop(inner);
                snapshot = self.history_snapshot(id, true).map_err(bad)?;
                if snapshot.is_none() {
                    // The log start only grows: a snapshot was taken.
                    return Err(bad(
                        "the change log's start moved while the pipe was created; try again".into(),
                    ));
                }
                continue;
            }
            break (inner, history_end, start);
        };
        if let Some(snap) = &snapshot {
            let st = history::State {
                pipe: id.to_string(),
                creation_time_ms,
                offset: snap.offset,
                snapshot_ms: now_ms(),
                handle: snap.handle.clone(),
                cursor: None,
                done: false,
            };
            if let Err(m) = s.history_files.save(&st) {
                let _ = s.log.remove_consumer(&consumer);
                return Err(bad(m));
            }
        }
        let meta = PipeMeta {
            id: id.to_string(),
            creation_time_ms,
            state: PipeState::Stopped,
            extractor,
            processor,
            connector,
            exception: String::new(),
            warning: String::new(),
            history_end,
            sink,
            restart: None,
        };
        let stats = Arc::new(Stats::new(start));
        let replaced = inner.pipes.insert(
            id.to_string(),
            Entry {
                meta,
                stats,
                running: None,
                restarted: None,
            },
        );
        if let Err(e) = s.save(&inner) {
            match replaced {
                Some(old) => inner.pipes.insert(id.to_string(), old),
                None => inner.pipes.remove(id),
            };
            let _ = s.log.remove_consumer(&consumer);
            if snapshot.is_some() {
                s.history_files.remove(id);
            }
            return Err(bad(e));
        }
        info!(
            pipe = id,
            history_end,
            start,
            history_from_store = snapshot.is_some(),
            "created pipe"
        );
        Ok(())
    }

    /// The store snapshot a new pipe `id` reads its history from: when it
    /// extracts history (`wants`) and the log no longer holds all of it
    /// (it starts above offset 0), taken now (see [`history`]); else none,
    /// and the pipe reads its history from the log.
    fn history_snapshot(&self, id: &str, wants: bool) -> Result<Option<history::Snapshot>, String> {
        let s = &self.shared;
        let log_start = s.log.log_start();
        if !wants || log_start == 0 {
            return Ok(None);
        }
        let Some(source) = &s.history else {
            warn!(
                pipe = id,
                log_start,
                "the change log no longer holds this pipe's whole history and there is no store to read it from: it sends what the log holds"
            );
            return Ok(None);
        };
        let snap = source.snapshot().map_err(|m| {
            format!(
                "the change log no longer holds its whole history (it starts at offset {log_start}), and the store could not be snapshotted to read it from there: {m}"
            )
        })?;
        info!(
            pipe = id,
            log_start,
            offset = snap.offset,
            "the pipe's history comes from a snapshot of the store"
        );
        Ok(Some(snap))
    }

    /// At most one sync-tool pipe that is not dropped (the seed's 411).
    fn one_sink_pipe(inner: &Inner) -> Result<(), PipeError> {
        match inner
            .pipes
            .values()
            .find(|e| e.meta.sink.is_some() && e.meta.state != PipeState::Dropped)
        {
            Some(e) => Err(sink_err(format!(
                "Pipe {} is {}, please retry after drop it.",
                e.meta.id,
                e.meta.state_name()
            ))),
            None => Ok(()),
        }
    }

    /// `CREATE PIPESINK name AS type (k=v, …)` (see [`PipeSink::parse`]).
    ///
    /// # Errors
    /// A PipeSink of that name exists, or a bad type or attribute (411).
    pub fn create_pipesink(
        &self,
        name: &str,
        sink_type: &str,
        attributes: &[(String, String)],
    ) -> Result<(), PipeError> {
        let sink = PipeSink::parse(name, sink_type, attributes).map_err(sink_err)?;
        let s = &self.shared;
        let mut inner = s.inner.lock().expect("pipes lock");
        if inner.sinks.contains_key(name) {
            return Err(sink_err(format!(
                "There is a pipeSink named {name} in IoTDB, please drop it."
            )));
        }
        inner.sinks.insert(name.to_string(), sink);
        if let Err(e) = s.save_sinks(&inner) {
            inner.sinks.remove(name);
            return Err(PipeError::new(PIPE_ERROR, e));
        }
        Ok(())
    }

    /// `DROP PIPESINK name`: refused while a pipe that is not dropped uses
    /// it.
    ///
    /// # Errors
    /// An unknown PipeSink, or one in use (411, the seed's message).
    pub fn drop_pipesink(&self, name: &str) -> Result<(), PipeError> {
        let s = &self.shared;
        let mut inner = s.inner.lock().expect("pipes lock");
        if !inner.sinks.contains_key(name) {
            return Err(sink_err(format!("PipeSink {name} is not exist.")));
        }
        if let Some(e) = inner.pipes.values().find(|e| {
            e.meta.state != PipeState::Dropped
                && e.meta.sink.as_ref().is_some_and(|k| k.pipesink == name)
        }) {
            return Err(sink_err(format!(
                "Can not drop pipeSink {name}, because pipe {} is using it.",
                e.meta.id
            )));
        }
        let old = inner.sinks.remove(name);
        if let Err(e) = s.save_sinks(&inner) {
            if let Some(o) = old {
                inner.sinks.insert(name.to_string(), o);
            }
            return Err(PipeError::new(PIPE_ERROR, e));
        }
        Ok(())
    }

    /// `SHOW PIPESINKS` (`None`) or `SHOW PIPESINK name` (none when there
    /// is no such PipeSink).
    pub fn pipesinks(&self, name: Option<&str>) -> Vec<PipeSink> {
        let inner = self.shared.inner.lock().expect("pipes lock");
        inner
            .sinks
            .values()
            .filter(|s| name.is_none_or(|n| s.name == n))
            .cloned()
            .collect()
    }

    /// `CREATE PIPE id TO sink [FROM (select ** from root where time >=
    /// start)] [WITH SyncDelOp=…]`: a sync-tool pipe, sending with the
    /// legacy connector to the PipeSink, history from `start` (the data's
    /// own time, in the node's precision). Before it is registered, the
    /// receiver must answer a handshake (its whitelist and version check
    /// admit us) and accept the login.
    ///
    /// # Errors
    /// 411 with the seed's messages: another sync-tool pipe not dropped,
    /// an unknown PipeSink, an unknown attribute, a receiver that does not
    /// answer or refuses us ("Create transport for pipe … error, because
    /// CREATE request connects to receiver ip:port error.", and why).
    pub fn create_sink_pipe(
        &self,
        id: &str,
        sink: &str,
        start: Option<i64>,
        attributes: &[(String, String)],
    ) -> Result<(), PipeError> {
        let mut sync_del_op = true;
        for (k, v) in attributes {
            if k.eq_ignore_ascii_case("syncdelop") {
                sync_del_op = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(sink_err(format!("SyncDelOp={v}: expected true or false"))),
                };
            } else {
                return Err(sink_err(format!(
                    "Can not recognition attribute {k}; the attribute of CREATE PIPE … TO is SyncDelOp (true or false)"
                )));
            }
        }
        let target = {
            let inner = self.shared.inner.lock().expect("pipes lock");
            Self::one_sink_pipe(&inner)?;
            if inner
                .pipes
                .get(id)
                .is_some_and(|e| e.meta.state != PipeState::Dropped)
            {
                return Err(sink_err(format!(
                    "Failed to create pipe {id}: pipe {id} already exists"
                )));
            }
            inner.sinks.get(sink).cloned().ok_or_else(|| {
                sink_err(format!(
                    "Can not find pipeSink {sink}. Create it first: CREATE PIPESINK {sink} AS IoTDB (ip='…', port=6670)"
                ))
            })?
        };
        let mut extractor = BTreeMap::new();
        if let Some(t) = start {
            extractor.insert("extractor.history.start-time".to_string(), t.to_string());
        }
        let connector: BTreeMap<String, String> = [
            ("connector", "iotdb-legacy-pipe-connector".to_string()),
            ("connector.ip", target.ip.clone()),
            ("connector.port", target.port.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let Ok(ConnectorSpec::Legacy(spec)) = ConnectorSpec::parse(&connector) else {
            return Err(sink_err(format!(
                "pipeSink {sink} ({}) is not a valid receiver address",
                target.attributes()
            )));
        };
        let creation_time_ms = now_ms();
        let settings = self.shared.settings();
        let env = ConnectorEnv {
            precision: settings.precision.clone(),
            timeout: settings.timeout.min(CREATE_CHECK_TIMEOUT),
            identity: Identity {
                pipe_name: id.to_string(),
                creation_time_ms,
            },
            database_of: settings.database_of.clone(),
        };
        let checked = std::thread::scope(|sc| {
            sc.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime for the check: {e}"))?;
                let mut c = plugin::connector::legacy::Connector::new(
                    spec,
                    env.identity.clone(),
                    env.timeout,
                    env.database_of.clone(),
                );
                rt.block_on(c.check())
            })
            .join()
            .unwrap_or_else(|_| Err("the check panicked".into()))
        });
        if let Err(cause) = checked {
            return Err(sink_err(format!(
                "Create transport for pipe {id} error, because CREATE request connects to receiver {}:{} error. Cause: {cause}",
                target.ip, target.port
            )));
        }
        self.insert(
            id,
            extractor,
            BTreeMap::new(),
            connector,
            Some(SinkPipe {
                pipesink: sink.to_string(),
                sync_del_op,
            }),
            creation_time_ms,
        )
    }

    /// `START PIPE`: runs the pipe from its committed offset (a no-op if it
    /// runs).
    ///
    /// # Errors
    /// An unknown or dropped pipe.
    pub fn start(&self, id: &str) -> Result<(), PipeError> {
        let s = &self.shared;
        let mut inner = s.inner.lock().expect("pipes lock");
        let Some(e) = inner.pipes.get_mut(id) else {
            return Err(PipeError::new(
                PIPE_NOT_EXIST,
                format!("Failed to start pipe {id}, the pipe does not exist"),
            ));
        };
        if e.meta.state == PipeState::Dropped {
            return Err(dropped(id));
        }
        if e.running.is_some() {
            return Ok(());
        }
        e.meta.state = PipeState::Running;
        e.meta.exception.clear();
        e.meta.warning.clear();
        // Started by a person: not waiting to restart any more.
        e.meta.restart = None;
        e.restarted = None;
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
    /// An unknown or dropped pipe.
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
            if e.meta.state == PipeState::Dropped {
                return Err(dropped(id));
            }
            e.meta.state = PipeState::Stopped;
            // Stopped by a person: it stays stopped, even if it was waiting
            // to restart.
            e.meta.restart = None;
            e.restarted = None;
            let r = e.running.take();
            s.save(&inner).map_err(|m| PipeError::new(PIPE_ERROR, m))?;
            r
        };
        if let Some(r) = running {
            s.join(r);
        }
        s.close_idle_connectors();
        Ok(())
    }

    /// `DROP PIPE`: stops the pipe if it runs (as [`PipeManager::stop`]:
    /// promptly, and nothing is sent for it after this returned) and
    /// removes its log consumer (so it no longer holds segments back). A
    /// 1.2 pipe is forgotten; a sync-tool pipe stays listed with state
    /// DROP, as IoTDB's sync tool keeps it.
    ///
    /// # Errors
    /// An unknown or already dropped pipe.
    pub fn drop_pipe(&self, id: &str) -> Result<(), PipeError> {
        let s = &self.shared;
        let running = {
            let mut inner = s.inner.lock().expect("pipes lock");
            let Some(e) = inner.pipes.get_mut(id) else {
                return Err(PipeError::new(
                    PIPE_NOT_EXIST,
                    format!("Failed to drop pipe {id}, the pipe does not exist"),
                ));
            };
            if e.meta.state == PipeState::Dropped {
                return Err(dropped(id));
            }
            let running = e.running.take();
            let key = instance_key(&e.meta);
            let old = e.meta.clone();
            let removed = if e.meta.sink.is_some() {
                e.meta.state = PipeState::Dropped;
                e.meta.restart = None;
                None
            } else {
                inner.pipes.remove(id)
            };
            if !inner
                .pipes
                .values()
                .any(|o| o.meta.state != PipeState::Dropped && instance_key(&o.meta) == key)
            {
                inner.connectors.remove(&key);
            }
            if let Err(m) = s.save(&inner) {
                // As it was on disk (stopped, since its task is stopped).
                match removed {
                    Some(e) => {
                        inner.pipes.insert(id.to_string(), e);
                    }
                    None => {
                        if let Some(e) = inner.pipes.get_mut(id) {
                            e.meta = old;
                        }
                    }
                }
                // The task (if any) is stopped either way.
                drop(inner);
                if let Some(r) = running {
                    s.join(r);
                }
                return Err(PipeError::new(PIPE_ERROR, m));
            }
            running
        };
        if let Some(r) = running {
            s.join(r);
        }
        s.close_idle_connectors();
        // After the task is gone: nothing of it writes the file again.
        s.history_files.remove(id);
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
        Ok(self
            .rows(id, used_by)?
            .into_iter()
            .map(|(row, _)| row)
            .collect())
    }

    /// Every pipe's SHOW PIPES row with its [`Stats`] (what its transfers
    /// did), for the metrics. Works the figures out as SHOW PIPES does.
    pub fn metrics(&self) -> Vec<(PipeRow, Arc<Stats>)> {
        self.rows(None, None).unwrap_or_default()
    }

    fn rows(
        &self,
        id: Option<&str>,
        used_by: Option<&str>,
    ) -> Result<Vec<(PipeRow, Arc<Stats>)>, PipeError> {
        let s = &self.shared;
        let inner = s.inner.lock().expect("pipes lock");
        let key = match used_by {
            Some(u) => Some(instance_key(
                &inner
                    .pipes
                    .get(u)
                    .ok_or_else(|| {
                        PipeError::new(PIPE_NOT_EXIST, format!("pipe {u} does not exist"))
                    })?
                    .meta,
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
        let picked: Vec<(PipeMeta, Arc<Stats>, bool)> = inner
            .pipes
            .values()
            .filter(|e| id.is_none_or(|i| e.meta.id == i))
            .filter(|e| key.as_ref().is_none_or(|k| &instance_key(&e.meta) == k))
            .map(|e| (e.meta.clone(), e.stats.clone(), e.running.is_some()))
            .collect();
        drop(inner);
        // A pipe without a task that has a store history phase to finish:
        // what it has still to read, from its progress file (a running
        // task publishes its own).
        for (meta, stats, running) in &picked {
            if !running && meta.state != PipeState::Dropped && stats.history().is_none() {
                let figures = s.history_figures(meta);
                // Published only while the pipe still has no task (checked
                // under the lock START takes): a task started meanwhile
                // publishes its own, and these would be stale.
                let inner = s.inner.lock().expect("pipes lock");
                if inner
                    .pipes
                    .get(&meta.id)
                    .is_some_and(|e| e.running.is_none())
                {
                    stats.set_history(figures);
                }
            }
        }
        // Records the change log's disk bounds deleted before a pipe sent
        // them: never silent (ExceptionMessage).
        let lost: HashMap<String, wal::ConsumerState> = s
            .log
            .consumers()
            .into_iter()
            .filter(|c| !c.state.lost.is_empty())
            .map(|c| (c.name, c.state))
            .collect();
        let units_per_sec = s.settings().units_per_sec;
        Ok(picked
            .into_iter()
            .map(|(mut meta, stats, _)| {
                let remote = match &meta.sink {
                    Some(k) => k.pipesink.clone(),
                    None => ConnectorSpec::parse(&meta.connector)
                        .map(|c| c.targets().join(","))
                        .unwrap_or_default(),
                };
                let f = if meta.state == PipeState::Dropped {
                    progress::Figures::default()
                } else {
                    stats.figures(&s.log, &meta, units_per_sec, &s.deletions)
                };
                let lost = lost.get(&consumer_name(&meta.id)).map(|c| {
                    let ranges: Vec<String> =
                        c.lost.iter().map(|(a, b)| format!("[{a}, {b})")).collect();
                    format!(
                        "{} record(s) lost from the change log before this pipe sent them (deleted by a disk bound, wal_throttle_threshold_in_byte or pipe_max_allowed_pinned_wal_size_in_byte, or damaged): offsets {}",
                        c.lost_records(),
                        ranges.join(" ")
                    )
                });
                meta.exception = progress::message(&meta, &f, lost);
                let row = PipeRow {
                    meta,
                    remaining_events: f.remaining,
                    lag_seconds: f.lag_seconds,
                    remote,
                };
                (row, stats)
            })
            .collect())
    }

    /// The node's deletion index: every writer of deletions to the change
    /// log records them through [`Deletions::record`].
    pub fn deletions(&self) -> &Arc<Deletions> {
        &self.shared.deletions
    }

    /// Stops every task (the pipes stay RUNNING on disk, to resume at the
    /// next start) and persists the deletion index. Waits for in-flight
    /// batches.
    ///
    /// Pipes waiting to restart stay so on disk: they restart after the
    /// next start, when due.
    pub fn shutdown(&self) {
        let runs: Vec<Running> = {
            let mut inner = self.shared.inner.lock().expect("pipes lock");
            inner.closed = true;
            inner
                .pipes
                .values_mut()
                .filter_map(|e| e.running.take())
                .collect()
        };
        for r in runs {
            self.shared.join(r);
        }
        if let Err(e) = self.shared.deletions.save() {
            warn!(cause = %e, "could not persist the deletion index; the next start reads the log's tail for deletions");
        }
    }
}

impl Shared {
    fn save(&self, inner: &Inner) -> Result<(), String> {
        let metas: Vec<PipeMeta> = inner.pipes.values().map(|e| e.meta.clone()).collect();
        meta::save(&self.path, &metas)
    }

    /// Drops the connectors no running pipe holds: their connections
    /// close, so a receiver sees a stopped pipe's sender go (IoTDB's
    /// `STOP PIPESERVER` waits for that). START connects afresh.
    fn close_idle_connectors(&self) {
        let mut inner = self.inner.lock().expect("pipes lock");
        inner.connectors.retain(|_, c| c.in_use());
    }

    fn save_sinks(&self, inner: &Inner) -> Result<(), String> {
        let sinks: Vec<PipeSink> = inner.sinks.values().cloned().collect();
        pipesink::save(&self.sinks_path, &sinks)
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

    fn connector_for(&self, inner: &mut Inner, meta: &PipeMeta) -> Result<Live, String> {
        let key = instance_key(meta);
        if let Some(c) = inner.connectors.get(&key) {
            return Ok(c.clone());
        }
        let spec = ConnectorSpec::parse(&meta.connector)?;
        let st = self.settings();
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
            spec => {
                let env = ConnectorEnv {
                    precision: st.precision.clone(),
                    timeout: st.timeout,
                    identity: Identity {
                        pipe_name: meta.id.clone(),
                        creation_time_ms: meta.creation_time_ms,
                    },
                    database_of: st.database_of.clone(),
                };
                Live::Serial(Arc::new(tokio::sync::Mutex::new(Connector::new(
                    spec, &env,
                ))))
            }
        };
        inner.connectors.insert(key, live.clone());
        Ok(live)
    }

    /// The settings now.
    pub(crate) fn settings(&self) -> Settings {
        self.settings.read().expect("settings lock").clone()
    }

    fn spawn(self: &Arc<Self>, inner: &mut Inner, id: &str) {
        inner.generation += 1;
        let generation = inner.generation;
        let (connector, history) = match inner.pipes.get(id).map(|e| e.meta.clone()) {
            Some(meta) => (self.connector_for(inner, &meta), self.history_phase(&meta)),
            None => return,
        };
        let connector = connector.and_then(|c| history.map(|h| (c, h)));
        let e = inner.pipes.get_mut(id).expect("pipe exists");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let gate = Arc::<std::sync::Mutex<task::CommitGate>>::default();
        let handle = match connector {
            Ok((conn, history)) => {
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
                    history,
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

    /// The store history phase pipe `meta` has still to run, if any.
    ///
    /// # Errors
    /// A damaged progress file, or no store to read from (both named).
    fn history_phase(&self, meta: &PipeMeta) -> Result<Option<Arc<history::Phase>>, String> {
        let Some(st) = self.history_files.load(&meta.id, meta.creation_time_ms)? else {
            return Ok(None);
        };
        if st.done {
            return Ok(None);
        }
        let Some(source) = &self.history else {
            return Err(format!(
                "the pipe's history is to be read from the store's snapshot at offset {}, and this node has no store to read it from",
                st.offset
            ));
        };
        Ok(Some(Arc::new(history::Phase::new(
            source.clone(),
            self.history_files.path(&meta.id),
            st,
        ))))
    }

    /// The store history figures of pipe `meta` when no task runs it: what
    /// it has still to read from its snapshot; `None` when it has no store
    /// history phase to finish (or it cannot be read: a START says why).
    fn history_figures(&self, meta: &PipeMeta) -> Option<progress::HistoryFigures> {
        let st = self
            .history_files
            .load(&meta.id, meta.creation_time_ms)
            .ok()
            .flatten()
            .filter(|st| !st.done)?;
        let source = self.history.as_ref()?;
        let mut attrs = meta.extractor.clone();
        let ext = Extractor::configure(&mut attrs, self.settings().units_per_sec).ok()?;
        history::figures(&**source, &st, &ext).ok()
    }

    /// Called by a task that gave up: the pipe goes STOPPED with `message`
    /// as its exception (shown as `ERROR: message` for a sync-tool pipe,
    /// see `progress::message`). When the failure is one a restart may fix
    /// (`restartable`: transfers that kept failing, an offset commit that
    /// failed) and `pipe_auto_restart_enabled`, the pipe waits to restart
    /// (see [`Shared::arm`]).
    fn fail(self: &Arc<Self>, id: &str, generation: u64, message: String, restartable: bool) {
        let mut inner = self.inner.lock().expect("pipes lock");
        let closed = inner.closed;
        let Some(e) = inner.pipes.get_mut(id) else {
            return;
        };
        // Only the run that failed may stop the pipe (not a later one).
        if e.running
            .as_ref()
            .is_none_or(|r| r.generation != generation)
        {
            return;
        }
        e.running = None;
        e.meta.state = PipeState::Stopped;
        e.meta.exception = message.clone();
        let restarted = e.restarted.take();
        let settings = self.settings();
        let restart = if restartable && settings.auto_restart {
            // A restart that got nothing more acknowledged waits longer
            // before the next one; one that did starts the count again.
            let now = progress_mark(&e.stats);
            let attempt = match restarted {
                Some((a, from)) if now.0 <= from.0 && now.1 <= from.1 => a.saturating_add(1),
                _ => 1,
            };
            let wait = task::backoff(settings.restart_base, settings.restart_cap, attempt);
            let r = meta::Restart {
                at_ms: now_ms().saturating_add(wait.as_millis() as i64),
                attempt,
            };
            warn!(pipe = id, exception = %message, attempt, restart_in_ms = wait.as_millis() as u64, "pipe stopped; it restarts then (pipe_auto_restart_enabled)");
            Some(r)
        } else {
            warn!(pipe = id, exception = %message, restartable, "pipe stopped by an unrecoverable error");
            None
        };
        e.meta.restart = restart;
        if let Err(err) = self.save(&inner) {
            warn!(pipe = id, cause = %err, "could not persist the pipe's state");
        }
        if let (Some(r), false) = (restart, closed) {
            self.arm(id, r);
        }
    }

    /// Arms the timer of the restart `r` of pipe `id` (waiting to
    /// restart): when it is due, the pipe runs again, unless something
    /// changed meanwhile (START, STOP, DROP, another failure, auto-restart
    /// turned off, the node shutting down). A wait is never longer than
    /// `pipe_auto_restart_interval_max_ms` (with its jitter), whatever the
    /// clock did.
    fn arm(self: &Arc<Self>, id: &str, r: meta::Restart) {
        let cap = self.settings().restart_cap.mul_f64(1.25);
        let delay = Duration::from_millis(r.at_ms.saturating_sub(now_ms()).max(0) as u64).min(cap);
        let weak = Arc::downgrade(self);
        let id = id.to_string();
        self.handle.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(s) = weak.upgrade() {
                s.auto_restart(&id, r);
            }
        });
    }

    /// The restart `r` of pipe `id` is due: it runs again if it still
    /// waits for exactly that restart.
    fn auto_restart(self: &Arc<Self>, id: &str, r: meta::Restart) {
        let mut inner = self.inner.lock().expect("pipes lock");
        if inner.closed || !self.settings().auto_restart {
            return;
        }
        let Some(e) = inner.pipes.get_mut(id) else {
            return;
        };
        if e.meta.restart != Some(r) || e.running.is_some() || e.meta.state != PipeState::Stopped {
            return;
        }
        e.meta.restart = None;
        e.meta.state = PipeState::Running;
        e.meta.exception.clear();
        e.restarted = Some((r.attempt, progress_mark(&e.stats)));
        info!(
            pipe = id,
            attempt = r.attempt,
            "restarting a pipe that stopped on its own (pipe_auto_restart_enabled)"
        );
        if let Err(err) = self.save(&inner) {
            // It runs; on disk it still waits, so a node restart restarts
            // it again.
            warn!(pipe = id, cause = %err, "could not persist the pipe's state");
        }
        self.spawn(&mut inner, id);
    }

    /// Re-arms the pipes waiting to restart after the settings changed (or
    /// the node started): with auto-restart off they stay STOPPED (their
    /// waits are dropped); a restart due later than the longest wait from
    /// now comes forward to it.
    fn rearm_restarts(self: &Arc<Self>) {
        let settings = self.settings();
        let mut inner = self.inner.lock().expect("pipes lock");
        if inner.closed {
            return;
        }
        let latest = now_ms().saturating_add(settings.restart_cap.as_millis() as i64);
        let mut arm = Vec::new();
        let mut changed = false;
        for e in inner.pipes.values_mut() {
            let Some(mut r) = e.meta.restart else {
                continue;
            };
            if !settings.auto_restart || e.meta.state != PipeState::Stopped {
                e.meta.restart = None;
                changed = true;
                continue;
            }
            if r.at_ms > latest {
                r.at_ms = latest;
                e.meta.restart = Some(r);
                changed = true;
            }
            arm.push((e.meta.id.clone(), r));
        }
        if changed {
            if let Err(err) = self.save(&inner) {
                warn!(cause = %err, "could not persist the pipes' restart times");
            }
        }
        drop(inner);
        for (id, r) in arm {
            self.arm(&id, r);
        }
    }

    /// Called by a running task that skipped something and goes on (the
    /// legacy connector's deletion the receiver could not apply): the
    /// pipe's warning becomes `message`, persisted, shown in SHOW PIPES
    /// until the next START (as `WARN: message` for a sync-tool pipe). A
    /// retry is not a warning of this kind: the task reports it through
    /// its [`Stats`].
    pub(crate) fn warn(&self, id: &str, generation: u64, message: &str) {
        let mut inner = self.inner.lock().expect("pipes lock");
        let Some(e) = inner.pipes.get_mut(id) else {
            return;
        };
        if e.running
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            e.meta.warning = message.to_string();
            if let Err(err) = self.save(&inner) {
                warn!(pipe = id, cause = %err, "could not persist the pipe's warning");
            }
        }
    }
}
