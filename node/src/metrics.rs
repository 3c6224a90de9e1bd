//! The node's metrics, served in Prometheus' text format when the
//! configuration asks for it as IoTDB's does (`dn_metric_reporter_list=
//! PROMETHEUS`, `dn_metric_prometheus_reporter_port`, default 9091): `GET
//! http://rpc_address:PORT/metrics`.
//!
//! # What is measured, and what it costs
//! - **On the hot paths**, only what must be counted as it happens, with
//!   relaxed atomic adds, never a lock or an allocation, and never per
//!   point or per record:
//!   - an RPC call (the append path's front): a binary search of
//!     [`METHODS`] and a [`LatencyHistogram::record`] (a scan of 16 bucket
//!     bounds, two atomic adds), plus the two `Instant::now()` that time it;
//!   - a connection: one atomic add as it opens, one as it closes;
//!   - a write request: one atomic add of the points the store's apply
//!     just added (counted by the apply itself, under the store lock it
//!     already holds);
//!   - a group commit or a segment's seal in the change log: one histogram
//!     record around the sync; a flush: one atomic add;
//!   - a pipe (the tail and transfer paths): per record read, the tablet's
//!     points are counted from its header and null bitmaps
//!     (`Tablet::points_v12`: a walk of the schema and a popcount, no
//!     decode, no allocation; the values are not read); per acknowledged
//!     request two atomic adds (points, bytes) and a histogram record; per
//!     failed attempt two atomic adds (see [`replicator::Transfers`]).
//! - **At scrape time**, everything that is state rather than events is read
//!   where it lives: the change log's offsets, size and segments, the
//!   memtables (a walk of the series under the store's read lock), the
//!   store's checkpoint, the pipes (their SHOW PIPES figures, worked out as
//!   SHOW PIPES does, and the counters their tasks keep), and the process
//!   (resident memory from `/proc/self/status`, open files from
//!   `/proc/self/fd`, their limit from `/proc/self/limits`).
//!
//! Names follow Prometheus' conventions: an `edgepipe_` prefix, base units
//! in the name (`_seconds`, `_bytes`), `_total` on counters, and the
//! standard `process_*` names for the process. The endpoint speaks
//! Prometheus' text format 0.0.4, or OpenMetrics when the scraper asks for
//! it (`Accept: application/openmetrics-text`), as Prometheus does.
//!
//! The exposition comes from [`prometheus_client`], the Prometheus
//! project's Rust client (its encoders and metric types; the histograms
//! are edgepipe's lock-free [`LatencyHistogram`], encoded as they stand at
//! scrape time); the HTTP side is a minimal `GET /metrics` handler
//! on the node's tokio runtime (bounded: a few scrapes at once, a small
//! request, a timeout), not a web framework.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};
use wal::{HistogramSnapshot, LatencyHistogram};

use crate::config::NodeConfig;
use crate::store::Store;

/// IoTDB's default `dn_metric_prometheus_reporter_port` (IoTDB 1.2's
/// `MetricConfig`).
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9091;
/// Upper bounds (seconds) of the RPC latency buckets: from a cached query
/// answered in well under a millisecond to a large pipe batch.
pub const RPC_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Scrapes answered at once; more connections wait in the listen backlog.
const MAX_SCRAPES: usize = 4;
/// The largest request head read (request line and headers).
const MAX_REQUEST: usize = 8 << 10;
/// How long a scrape may take from connect to the last byte written.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// IoTDB's `dn_metric_level`. edgepipe has one set of metrics (about what
/// IoTDB puts at its IMPORTANT level): `Off` serves none, every other level
/// serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricLevel {
    /// No metrics: the endpoint is not opened.
    Off,
    /// IoTDB's default.
    #[default]
    Core,
    /// IoTDB's recommended level.
    Important,
    /// More detail in IoTDB.
    Normal,
    /// Everything in IoTDB.
    All,
}

impl std::str::FromStr for MetricLevel {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "OFF" => MetricLevel::Off,
            "CORE" => MetricLevel::Core,
            "IMPORTANT" => MetricLevel::Important,
            "NORMAL" => MetricLevel::Normal,
            "ALL" => MetricLevel::All,
            _ => return Err(()),
        })
    }
}

/// The client RPC methods the node serves, sorted: the values of the
/// `method` label of `edgepipe_rpc_duration_seconds` (a fixed set, so a
/// client cannot grow the label's cardinality).
pub const METHODS: [&str; 24] = [
    "closeOperation",
    "closeSession",
    "executeQueryStatement",
    "executeQueryStatementV2",
    "executeStatement",
    "executeStatementV2",
    "executeUpdateStatement",
    "executeUpdateStatementV2",
    "fetchResults",
    "fetchResultsV2",
    "getTimeZone",
    "handshake",
    "insertRecord",
    "insertRecords",
    "insertRecordsOfOneDevice",
    "insertStringRecord",
    "insertTablet",
    "insertTablets",
    "openSession",
    "pipeTransfer",
    "requestStatementId",
    "sendFile",
    "sendPipeData",
    "setTimeZone",
];

/// What the RPC front counts as it serves: the latency of each call, by
/// method, and the connections open. Shared by the client port and the
/// pipe server. Lock-free: a call costs a binary search of [`METHODS`]
/// (five string compares) and a [`LatencyHistogram::record`] (a scan of 16
/// bounds, two relaxed atomic adds); a connection one atomic add as it
/// opens and one as it closes.
#[derive(Debug)]
pub struct RpcMetrics {
    /// One histogram per method, in [`METHODS`]' order.
    by_method: [LatencyHistogram; METHODS.len()],
    connections: AtomicI64,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            by_method: std::array::from_fn(|_| LatencyHistogram::new(&RPC_BUCKETS)),
            connections: AtomicI64::new(0),
        }
    }
}

impl RpcMetrics {
    /// Records one call of `method` that took `took` (from its frame read
    /// to its reply ready). Names outside [`METHODS`] are not recorded.
    pub fn observe(&self, method: &str, took: Duration) {
        if let Ok(i) = METHODS.binary_search(&method) {
            self.by_method[i].record(took);
        }
    }

    /// Counts a connection as open until the returned guard drops.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// Connections open now.
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Encodes `edgepipe_rpc_duration_seconds` (the methods called at
    /// least once) and `edgepipe_rpc_connections`.
    fn encode(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let called: Vec<(&str, HistogramSnapshot)> = METHODS
            .iter()
            .zip(&self.by_method)
            .map(|(method, h)| (*method, h.snapshot()))
            .filter(|(_, s)| s.count > 0)
            .collect();
        if !called.is_empty() {
            let mut m = e.encode_descriptor(
                "edgepipe_rpc_duration",
                "Client RPC calls, from the request read to the reply ready, by method.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (method, s) in &called {
                ConstHistogram::of(s).encode(m.encode_family(&[("method", *method)])?)?;
            }
        }
        one(
            e,
            "edgepipe_rpc_connections",
            "Connections open on the client port and the pipe server.",
            None,
            &ConstGauge::new(self.connections()),
        )
    }
}

/// An open connection, counted in `edgepipe_rpc_connections` while it
/// lives.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<RpcMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of the store's write path and flushes, bumped once per write
/// request and per flush.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Points (non-null values) written to the store: client inserts and
    /// what pipes delivered, once each, when accepted (replay at start not
    /// counted).
    pub points_ingested: AtomicU64,
    /// Flushes that wrote their chunk file and checkpoint.
    pub flushes: AtomicU64,
    /// Flushes that failed (retried by themselves).
    pub flush_failures: AtomicU64,
}

/// A histogram whose buckets were counted elsewhere (a
/// [`LatencyHistogram`]: the change log's fsyncs, the RPC front, a pipe's
/// transfers), encoded as it is.
struct ConstHistogram<'a> {
    sum: f64,
    count: u64,
    /// Per bucket, not cumulative.
    buckets: &'a [(f64, u64)],
}

impl<'a> ConstHistogram<'a> {
    fn of(s: &'a HistogramSnapshot) -> ConstHistogram<'a> {
        ConstHistogram {
            sum: s.sum_seconds,
            count: s.count,
            buckets: &s.buckets,
        }
    }
}

impl TypedMetric for ConstHistogram<'_> {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ConstHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Encodes one unlabelled metric.
fn one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &dyn EncodeMetricDyn,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, unit, metric.kind())?;
    metric.encode_into(m)
}

/// [`EncodeMetric`] as a trait object without the `Box` the crate's
/// blanket impl asks for.
trait EncodeMetricDyn {
    fn kind(&self) -> MetricType;
    fn encode_into(&self, m: MetricEncoder) -> Result<(), std::fmt::Error>;
}

impl<T: EncodeMetric> EncodeMetricDyn for T {
    fn kind(&self) -> MetricType {
        self.metric_type()
    }

    fn encode_into(&self, m: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.encode(m)
    }
}

/// Reads state at scrape time: the change log, the store, the pipes, the
/// process.
#[derive(Debug)]
struct NodeCollector {
    store: Arc<Store>,
    pipes: Option<Arc<replicator::PipeManager>>,
    rpc: Arc<RpcMetrics>,
}

/// Encodes one metric per pipe, labelled `pipe`.
fn per_pipe<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    pipes: &[(replicator::PipeRow, Arc<replicator::Stats>)],
    metric: impl Fn(&replicator::PipeRow, &replicator::Stats) -> M,
) -> Result<(), std::fmt::Error> {
    if pipes.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    for (row, stats) in pipes {
        let labels = [("pipe", row.meta.id.as_str())];
        metric(row, stats).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The pipes' metrics: state, progress, what their transfers did.
fn encode_pipes(
    e: &mut DescriptorEncoder,
    pipes: &[(replicator::PipeRow, Arc<replicator::Stats>)],
) -> Result<(), std::fmt::Error> {
    if !pipes.is_empty() {
        // A state set: one series per state of the pipe's own vocabulary
        // (IoTDB 1.2's, or the sync tool's for a PIPESINK pipe), 1 for the
        // state it is in.
        let mut m = e.encode_descriptor(
            "edgepipe_pipe_state",
            "The pipe's state as SHOW PIPES names it: 1 for the state it is in, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for (row, _) in pipes {
            let states: [&str; 3] = if row.meta.sink.is_some() {
                ["RUNNING", "STOP", "DROP"]
            } else {
                ["RUNNING", "STOPPED", "DROPPED"]
            };
            let now = row.meta.state_name();
            for state in states {
                let labels = [("pipe", row.meta.id.as_str()), ("state", state)];
                ConstGauge::new(i64::from(state == now)).encode(m.encode_family(&labels)?)?;
            }
        }
    }
    per_pipe(
        e,
        "edgepipe_pipe_committed_offset",
        "Change-log offset below which the receiver acknowledged everything and the pipe committed it durably: where it resumes.",
        None,
        MetricType::Gauge,
        pipes,
        |_, s| ConstGauge::new(s.committed.load(Ordering::Relaxed)),
    )?;
    per_pipe(
        e,
        "edgepipe_pipe_remaining_events",
        "Events the pipe will still send (SHOW PIPES' RemainingEventCount).",
        None,
        MetricType::Gauge,
        pipes,
        |r, _| ConstGauge::new(r.remaining_events),
    )?;
    per_pipe(
        e,
        "edgepipe_pipe_lag",
        "Wall-clock age of the oldest record the pipe has not had acknowledged and will send; 0 when caught up (SHOW PIPES' LagSeconds).",
        Some(&Unit::Seconds),
        MetricType::Gauge,
        pipes,
        |r, _| ConstGauge::new(r.lag_seconds),
    )?;
    per_pipe(
        e,
        "edgepipe_pipe_sent_points",
        "Points (non-null values) in the tablets the receiver acknowledged.",
        None,
        MetricType::Counter,
        pipes,
        |_, s| ConstCounter::new(s.transfers.points()),
    )?;
    per_pipe(
        e,
        "edgepipe_pipe_sent",
        "Bytes of the tablets the receiver acknowledged, as serialized in the requests (framing and copies sent again not counted).",
        Some(&Unit::Bytes),
        MetricType::Counter,
        pipes,
        |_, s| ConstCounter::new(s.transfers.bytes()),
    )?;
    if !pipes.is_empty() {
        let mut m = e.encode_descriptor(
            "edgepipe_pipe_transfer_duration",
            "Acknowledged transfers: from the connector taking a batch (or an async lane's request) to the receiver's acknowledgement.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (row, stats) in pipes {
            let labels = [("pipe", row.meta.id.as_str())];
            ConstHistogram::of(&stats.transfers.duration()).encode(m.encode_family(&labels)?)?;
        }
    }
    per_pipe(
        e,
        "edgepipe_pipe_retries",
        "Failed transfer attempts that were tried again.",
        None,
        MetricType::Counter,
        pipes,
        |_, s| ConstCounter::new(s.transfers.retries()),
    )?;
    per_pipe(
        e,
        "edgepipe_pipe_resent_events",
        "Events sent again by retries: the failed attempt may have reached the receiver, so these may have arrived twice (applied idempotently).",
        None,
        MetricType::Counter,
        pipes,
        |_, s| ConstCounter::new(s.transfers.resent()),
    )?;
    per_pipe(
        e,
        "edgepipe_pipe_uncommitted_records",
        "Change-log records the pipe has read past its committed offset: at most these go out again after a fault now (a crash, STOP, retries running out); those the receiver had applied arrive twice.",
        None,
        MetricType::Gauge,
        pipes,
        |_, s| ConstGauge::new(s.uncommitted_records()),
    )
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut enc;
        let log = self.store.log();
        let segments = log.segments();
        one(
            e,
            "edgepipe_log_start_offset",
            "First offset still in the node's change log (older ones went to retention).",
            None,
            &ConstGauge::new(log.log_start()),
        )?;
        one(
            e,
            "edgepipe_log_end_offset",
            "One past the last record appended to the change log (the log end offset).",
            None,
            &ConstGauge::new(log.end_offset()),
        )?;
        one(
            e,
            "edgepipe_log_durable_offset",
            "Every change-log offset below this is durable (fsynced).",
            None,
            &ConstGauge::new(log.durable_offset()),
        )?;
        one(
            e,
            "edgepipe_log_disk",
            "Bytes of change-log segment files on disk (preallocated).",
            Some(&Unit::Bytes),
            &ConstGauge::new(log.disk_bytes()),
        )?;
        one(
            e,
            "edgepipe_log_segments",
            "Change-log segment files.",
            None,
            &ConstGauge::new(segments.len() as u64),
        )?;
        let fsync = log.fsync_stats();
        one(
            e,
            "edgepipe_log_fsync_duration",
            "Data syncs of the change log: group commits and segments sealed.",
            Some(&Unit::Seconds),
            &ConstHistogram::of(&fsync),
        )?;
        let c = self.store.counters();
        one(
            e,
            "edgepipe_points_ingested",
            "Points (non-null values) the node accepted: client writes and what pipes delivered.",
            None,
            &ConstCounter::new(c.points_ingested.load(Ordering::Relaxed)),
        )?;
        one(
            e,
            "edgepipe_store_flushes",
            "Memtable flushes that wrote a chunk file and a checkpoint.",
            None,
            &ConstCounter::new(c.flushes.load(Ordering::Relaxed)),
        )?;
        one(
            e,
            "edgepipe_store_flush_failures",
            "Flushes that failed (the memtables and the change log keep the points; retried).",
            None,
            &ConstCounter::new(c.flush_failures.load(Ordering::Relaxed)),
        )?;
        one(
            e,
            "edgepipe_store_memtable",
            "Bytes held by the store's memtables, frozen ones being flushed included.",
            Some(&Unit::Bytes),
            &ConstGauge::new(self.store.memtable_bytes()),
        )?;
        let age = SystemTime::now()
            .duration_since(self.store.checkpointed_at())
            .unwrap_or_default();
        one(
            e,
            "edgepipe_store_checkpoint_age",
            "Time since the store's last checkpoint (what a restart replays the change log from).",
            Some(&Unit::Seconds),
            &ConstGauge::new(age.as_secs_f64()),
        )?;
        self.rpc.encode(e)?;
        if let Some(pipes) = &self.pipes {
            encode_pipes(e, &pipes.metrics())?;
        }
        if let Some(rss) = process::resident_bytes() {
            one(
                e,
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&Unit::Bytes),
                &ConstGauge::new(rss),
            )?;
        }
        if let Some(fds) = process::open_fds() {
            one(
                e,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                &ConstGauge::new(fds),
            )?;
        }
        if let Some(max) = process::max_fds() {
            one(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                &ConstGauge::new(max),
            )?;
        }
        Ok(())
    }
}

/// The process' figures, read from `/proc/self` (Linux).
mod process {
    /// `VmRSS` of `/proc/self/status`, in bytes.
    pub(super) fn resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_rss(&status)
    }

    /// Entries of `/proc/self/fd` (the listing's own descriptor included,
    /// as Prometheus' clients count it).
    pub(super) fn open_fds() -> Option<u64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
    }

    /// The soft limit on open files (`Max open files` of
    /// `/proc/self/limits`); `None` when unlimited.
    pub(super) fn max_fds() -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        parse_max_fds(&limits)
    }

    pub(super) fn parse_max_fds(limits: &str) -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub(super) fn parse_rss(status: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let mut parts = line["VmRSS:".len()..].split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n * 1024),
            _ => None,
        }
    }
}

/// Everything a scrape shows: the registry of the node's metrics.
pub struct Exporter {
    registry: Registry,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// The metrics of a node: its store (and change log), its pipes, its
    /// RPC front.
    pub fn new(
        store: Arc<Store>,
        pipes: Option<Arc<replicator::PipeManager>>,
        rpc: &Arc<RpcMetrics>,
    ) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(NodeCollector {
            store,
            pipes,
            rpc: rpc.clone(),
        }));
        Exporter { registry }
    }

    /// One scrape: OpenMetrics text (`openmetrics`) or Prometheus' text
    /// format 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(16 << 10);
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = r {
            // Writing to a String does not fail; a metric that cannot be
            // encoded is a bug, reported rather than served half.
            out.clear();
            let _ = writeln!(out, "# encoding the metrics failed: {e}");
        }
        out
    }
}

/// Binds the metrics endpoint when the configuration enables it
/// (`dn_metric_reporter_list` names PROMETHEUS and `dn_metric_level` is not
/// OFF): `rpc_address:dn_metric_prometheus_reporter_port`. `None` when it
/// is off.
///
/// # Errors
/// The port cannot be bound, naming the address and the key.
pub async fn bind(config: &NodeConfig) -> Result<Option<TcpListener>, String> {
    if !config.metric_prometheus || config.metric_level == MetricLevel::Off {
        return Ok(None);
    }
    let addr = format!("{}:{}", config.rpc_address, config.metric_prometheus_port);
    let l = TcpListener::bind(&addr).await.map_err(|e| {
        format!(
            "cannot serve metrics on {addr}: {} (dn_metric_prometheus_reporter_port)",
            replicator::plugin::connector::io_text(&e)
        )
    })?;
    if let Ok(a) = l.local_addr() {
        info!(addr = %a, "metrics endpoint listening (GET /metrics)");
    }
    Ok(Some(l))
}

/// Answers scrapes on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(cause = %e, "metrics endpoint: accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(SCRAPE_TIMEOUT, answer(socket, &exporter)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, cause = %e, "metrics endpoint: scrape failed"),
                Err(_) => debug!(%peer, "metrics endpoint: scrape timed out"),
            }
        });
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    /// `GET /metrics` (or `HEAD`), OpenMetrics wanted or not.
    Metrics { openmetrics: bool, head: bool },
    /// Anything else: the status line and a message.
    Refuse(&'static str, &'static str),
}

/// Reads an HTTP/1.x request head (request line and headers).
fn parse_request(head: &str) -> Ask {
    let mut lines = head.split("\r\n").flat_map(|l| l.split('\n'));
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ask::Refuse("400 Bad Request", "not an HTTP request\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Ask::Refuse("400 Bad Request", "only HTTP/1.x is served\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Ask::Refuse("405 Method Not Allowed", "only GET /metrics is served\n"),
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path != "/metrics" {
        return Ask::Refuse("404 Not Found", "edgepipe serves its metrics at /metrics\n");
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept")
                && v.to_ascii_lowercase()
                    .contains("application/openmetrics-text")
        })
    });
    Ask::Metrics {
        openmetrics,
        head: head_only,
    }
}

async fn answer(mut socket: TcpStream, exporter: &Arc<Exporter>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_end_of_head(&buf) {
            break String::from_utf8_lossy(&buf[..end]).into_owned();
        }
        if buf.len() > MAX_REQUEST {
            return respond(
                &mut socket,
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
                b"request head over 8 KiB\n",
                false,
            )
            .await;
        }
    };
    match parse_request(&head) {
        Ask::Refuse(status, message) => {
            respond(
                &mut socket,
                status,
                "text/plain; charset=utf-8",
                message.as_bytes(),
                false,
            )
            .await
        }
        Ask::Metrics { openmetrics, head } => {
            let ex = exporter.clone();
            let body = tokio::task::spawn_blocking(move || ex.render(openmetrics))
                .await
                .map_err(std::io::Error::other)?;
            let content_type = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            respond(&mut socket, "200 OK", content_type, body.as_bytes(), head).await
        }
    }
}

fn find_end_of_head(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

async fn respond(
    socket: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(header.as_bytes()).await?;
    if !head_only {
        socket.write_all(body).await?;
    }
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_http() {
        assert_eq!(
            parse_request("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n"),
            Ask::Metrics { openmetrics: true, head: false }
        );
        assert_eq!(
            parse_request("GET /metrics?x=1 HTTP/1.0\r\n"),
            Ask::Metrics {
                openmetrics: false,
                head: false
            }
        );
        assert!(
            matches!(parse_request("GET / HTTP/1.1\r\n"), Ask::Refuse(s, _) if s.starts_with("404"))
        );
        assert!(
            matches!(parse_request("POST /metrics HTTP/1.1\r\n"), Ask::Refuse(s, _) if s.starts_with("405"))
        );
        assert!(
            matches!(parse_request("\u{16}\u{3}\u{1}"), Ask::Refuse(s, _) if s.starts_with("400"))
        );
        assert!(
            matches!(parse_request("GET /metrics SPDY/3\r\n"), Ask::Refuse(s, _) if s.starts_with("400"))
        );
    }

    #[test]
    fn resident_memory_is_read_in_bytes() {
        let status = "Name:\tedgepipe\nVmPeak:\t  10 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(process::parse_rss(status), Some(2048 * 1024));
        assert_eq!(process::parse_rss("Name: x\n"), None);
        assert!(process::resident_bytes().is_some_and(|b| b > 0));
        assert!(process::open_fds().is_some_and(|n| n >= 3));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax processes             63459                63459                processes \nMax open files            1024                 524288               files     \n";
        assert_eq!(process::parse_max_fds(limits), Some(1024));
        assert_eq!(
            process::parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert!(process::max_fds().is_some_and(|n| n >= 3));
    }

    #[test]
    fn methods_are_sorted_and_recorded_once_each() {
        assert!(METHODS.windows(2).all(|w| w[0] < w[1]));
        let m = RpcMetrics::default();
        let mut r = Registry::default();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        m.observe("insertTablet", Duration::from_millis(2));
        m.observe("insertTablet", Duration::from_millis(3));
        m.observe("noSuchMethod", Duration::from_millis(3));
        struct Rpc(RpcMetrics);
        impl std::fmt::Debug for Rpc {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Rpc")
            }
        }
        impl Collector for Rpc {
            fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                self.0.encode(&mut e)
            }
        }
        r.register_collector(Box::new(Rpc(m)));
        out.clear();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("edgepipe_rpc_duration_seconds_count{method=\"insertTablet\"} 2"),
            "{out}"
        );
        assert!(
            out.contains(
                "edgepipe_rpc_duration_seconds_bucket{le=\"0.0025\",method=\"insertTablet\"} 1"
            ) || out.contains(
                "edgepipe_rpc_duration_seconds_bucket{method=\"insertTablet\",le=\"0.0025\"} 1"
            ),
            "{out}"
        );
        assert!(!out.contains("noSuchMethod"), "{out}");
        assert!(
            !out.contains("openSession"),
            "methods never called are left out: {out}"
        );
        assert!(out.contains("edgepipe_rpc_connections 0"), "{out}");
        let m = RpcMetrics::default();
        let m = Arc::new(m);
        let g = m.connection();
        assert_eq!(m.connections(), 1);
        drop(g);
        assert_eq!(m.connections(), 0);
    }
}
