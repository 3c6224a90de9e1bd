//! The built-in pipe plugins: `iotdb-extractor`, `do-nothing-processor`,
//! and the connectors `iotdb-thrift-sync-connector` (alias
//! `iotdb-thrift-connector`) and `do-nothing-connector`.
//!
//! Attributes are validated at `CREATE PIPE`: unknown plugin names, unknown
//! keys and bad values are errors naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use protocol::event::{Event, KIND_DELETE, KIND_TABLET};
use protocol::message::read_reply;
use protocol::pipe;
use protocol::rpc::TPipeTransferResp;
use protocol::tablet::{Column, Tablet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

/// What flows from extractor to processor to connector.
#[derive(Debug, Clone, PartialEq)]
pub enum PipeEvent {
    /// Rows, as a serialized tablet (`Tablet.serialize()` + aligned byte):
    /// exactly a `pipeTransfer` type-3 body. Usually a handle on the bytes
    /// read from the change log, not a copy.
    Tablet(Bytes),
    /// A deletion from the source's log.
    Delete {
        /// Path patterns.
        patterns: Vec<String>,
        /// Smallest time deleted.
        min: i64,
        /// Largest time deleted.
        max: i64,
    },
}

/// Built-in plugins, as `SHOW PIPEPLUGINS` lists them: name and the Rust
/// type that implements it.
pub const PLUGINS: [(&str, &str); 5] = [
    ("IOTDB-EXTRACTOR", "replicator::plugin::Extractor"),
    (
        "DO-NOTHING-PROCESSOR",
        "replicator::plugin::DoNothingProcessor",
    ),
    ("DO-NOTHING-CONNECTOR", "replicator::plugin::Connector"),
    ("IOTDB-THRIFT-CONNECTOR", "replicator::plugin::Connector"),
    (
        "IOTDB-THRIFT-SYNC-CONNECTOR",
        "replicator::plugin::Connector",
    ),
];

fn check_keys(
    section: &str,
    attrs: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<(), String> {
    for k in attrs.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "unknown {section} attribute '{k}'; allowed: {}",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

fn parse_bool(attrs: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool, String> {
    match attrs.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(format!("'{key}'='{v}': expected true or false")),
    }
}

/// Parses a history bound: an ISO datetime (`2011-12-03T10:15:30`,
/// `2011-12-03T10:15:30+01:00`, also `2011.12.03T...` as the seed writes
/// it) or an integer in the node's precision.
fn parse_time(key: &str, v: &str, precision_per_sec: i64) -> Result<i64, String> {
    if let Ok(n) = v.trim().parse::<i64>() {
        return Ok(n);
    }
    let norm: String = {
        let (date, rest) = v
            .trim()
            .split_at(v.trim().find(['T', ' ']).unwrap_or(v.trim().len()));
        format!(
            "{}{}",
            date.replace(['.', '/'], "-"),
            rest.replacen(' ', "T", 1)
        )
    };
    let to_units = |secs: i64, nanos: u32| {
        secs * precision_per_sec + i64::from(nanos) * precision_per_sec / 1_000_000_000
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&norm) {
        return Ok(to_units(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d"] {
        let parsed = if f == "%Y-%m-%d" {
            chrono::NaiveDate::parse_from_str(&norm, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        } else {
            chrono::NaiveDateTime::parse_from_str(&norm, f).ok()
        };
        if let Some(n) = parsed {
            use chrono::TimeZone;
            if let Some(t) = chrono::Local.from_local_datetime(&n).earliest() {
                return Ok(to_units(t.timestamp(), t.timestamp_subsec_nanos()));
            }
        }
    }
    Err(format!(
        "'{key}'='{v}': not an ISO time (e.g. 2011-12-03T10:15:30+01:00) or an integer"
    ))
}

/// `iotdb-extractor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Extractor {
    /// Path prefix (a plain string prefix of the full series path).
    pub pattern: String,
    /// Whether history (arrived before the pipe was created) is extracted.
    pub history: bool,
    /// Whether realtime data is extracted.
    pub realtime: bool,
    /// Inclusive event-time bounds of history.
    pub start: i64,
    /// See `start`.
    pub end: i64,
}

impl Extractor {
    /// Validates `attrs` and fills in the defaults.
    ///
    /// # Errors
    /// The first bad key or value, named.
    pub fn configure(
        attrs: &mut BTreeMap<String, String>,
        precision_per_sec: i64,
    ) -> Result<Extractor, String> {
        let name = attrs
            .entry("extractor".into())
            .or_insert_with(|| "iotdb-extractor".into())
            .to_ascii_lowercase();
        if name != "iotdb-extractor" {
            return Err(format!(
                "unknown extractor plugin '{name}'; the built-in one is iotdb-extractor"
            ));
        }
        check_keys(
            "extractor",
            attrs,
            &[
                "extractor",
                "extractor.pattern",
                "extractor.history.enable",
                "extractor.history.start-time",
                "extractor.history.end-time",
                "extractor.realtime.enable",
                "extractor.realtime.mode",
            ],
        )?;
        let pattern = attrs
            .get("extractor.pattern")
            .cloned()
            .unwrap_or_else(|| "root".into());
        if !(pattern == "root" || pattern.starts_with("root.")) {
            return Err(format!(
                "'extractor.pattern'='{pattern}': a pattern is a path prefix starting with root"
            ));
        }
        let history = parse_bool(attrs, "extractor.history.enable", true)?;
        let realtime = parse_bool(attrs, "extractor.realtime.enable", true)?;
        if !history && !realtime {
            return Err("'extractor.history.enable' and 'extractor.realtime.enable' are both false: the pipe would extract nothing".into());
        }
        if let Some(m) = attrs.get("extractor.realtime.mode") {
            if !["hybrid", "file", "log", "forced-log"].contains(&m.as_str()) {
                return Err(format!(
                    "'extractor.realtime.mode'='{m}': expected hybrid, file, log or forced-log"
                ));
            }
        }
        let start = match attrs.get("extractor.history.start-time") {
            Some(v) => parse_time("extractor.history.start-time", v, precision_per_sec)?,
            None => i64::MIN,
        };
        let end = match attrs.get("extractor.history.end-time") {
            Some(v) => parse_time("extractor.history.end-time", v, precision_per_sec)?,
            None => i64::MAX,
        };
        if start > end {
            return Err(format!("'extractor.history.start-time' is after 'extractor.history.end-time' ({start} > {end})"));
        }
        Ok(Extractor {
            pattern,
            history,
            realtime,
            start,
            end,
        })
    }

    /// Turns one change-log record into an event for the pipe, or nothing
    /// (filtered out, or a schema change: DDL is not synced).
    ///
    /// # Errors
    /// A record that does not decode.
    pub fn extract(
        &self,
        kind: u8,
        payload: Bytes,
        is_history: bool,
    ) -> Result<Option<PipeEvent>, String> {
        match kind {
            KIND_TABLET => {
                let bounded = is_history && (self.start != i64::MIN || self.end != i64::MAX);
                let whole = self.pattern == "root" || {
                    let device = device_of(&payload)?;
                    if !device.starts_with(&self.pattern) && !self.pattern.starts_with(&device) {
                        return Ok(None);
                    }
                    device.starts_with(&self.pattern)
                };
                if whole && !bounded {
                    // The fast path: ship the stored bytes as they are.
                    return Ok(Some(PipeEvent::Tablet(payload)));
                }
                let t = Tablet::deserialize_v12(&payload)?;
                Ok(self
                    .filter(t, bounded)
                    .map(|t| PipeEvent::Tablet(t.serialize_v12().into())))
            }
            KIND_DELETE => match Event::decode(kind, &payload)? {
                Event::Delete { patterns, min, max } => {
                    let keep = self.pattern == "root"
                        || patterns.iter().any(|p| {
                            p.starts_with(&self.pattern)
                                || self.pattern.starts_with(p.trim_end_matches(".**"))
                        });
                    Ok(keep.then_some(PipeEvent::Delete { patterns, min, max }))
                }
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Keeps the columns under the pattern and, for bounded history, the
    /// rows in the time range.
    fn filter(&self, t: Tablet, bounded: bool) -> Option<Tablet> {
        let cols: Vec<usize> = (0..t.columns.len())
            .filter(|&c| format!("{}.{}", t.device, t.measurements[c]).starts_with(&self.pattern))
            .collect();
        let rows: Vec<usize> = (0..t.rows())
            .filter(|&r| !bounded || (self.start <= t.times[r] && t.times[r] <= self.end))
            .collect();
        if cols.is_empty() || rows.is_empty() {
            return None;
        }
        let pick = |c: &Column| {
            let mut out = Column::with_capacity(c.data_type(), rows.len());
            for &r in &rows {
                out.push(c.get(r));
            }
            out
        };
        Some(Tablet {
            device: t.device.clone(),
            measurements: cols.iter().map(|&c| t.measurements[c].clone()).collect(),
            columns: cols.iter().map(|&c| pick(&t.columns[c])).collect(),
            nulls: cols
                .iter()
                .map(|&c| {
                    t.nulls[c]
                        .as_ref()
                        .map(|n| rows.iter().map(|&r| n[r]).collect())
                })
                .collect(),
            times: rows.iter().map(|&r| t.times[r]).collect(),
            aligned: t.aligned,
        })
    }
}

/// The device string at the start of a serialized tablet.
fn device_of(payload: &[u8]) -> Result<String, String> {
    let n = payload
        .get(..4)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4")))
        .ok_or("tablet record too short")?;
    if n < 0 || 4 + n as usize > payload.len() {
        return Err(format!("tablet record: device length {n} does not fit"));
    }
    String::from_utf8(payload[4..4 + n as usize].to_vec())
        .map_err(|_| "tablet device is not UTF-8".into())
}

/// A processor: turns events into events.
pub trait Processor: Send {
    /// Processes one event, appending what goes on to `out`.
    fn process(&mut self, event: PipeEvent, out: &mut Vec<PipeEvent>);
}

/// `do-nothing-processor`: passes every event on unchanged.
#[derive(Debug, Default)]
pub struct DoNothingProcessor;

impl Processor for DoNothingProcessor {
    fn process(&mut self, event: PipeEvent, out: &mut Vec<PipeEvent>) {
        out.push(event);
    }
}

/// Builds the processor named in `attrs`, filling in the default.
///
/// # Errors
/// An unknown plugin or key.
pub fn processor(attrs: &mut BTreeMap<String, String>) -> Result<Box<dyn Processor>, String> {
    let name = attrs
        .entry("processor".into())
        .or_insert_with(|| "do-nothing-processor".into())
        .to_ascii_lowercase();
    check_keys("processor", attrs, &["processor"])?;
    match name.as_str() {
        "do-nothing-processor" => Ok(Box::new(DoNothingProcessor)),
        other => Err(format!(
            "unknown processor plugin '{other}'; the built-in one is do-nothing-processor"
        )),
    }
}

/// Why a transfer failed. Every failure is retried; the pipe stops after
/// the retries run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferError(pub String);

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connector's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorSpec {
    /// `iotdb-thrift-sync-connector`: node URLs to try in order.
    ThriftSync {
        /// `host:port` targets.
        urls: Vec<(String, u16)>,
        /// Most payload bytes per request.
        batch_bytes: usize,
    },
    /// `do-nothing-connector`.
    DoNothing,
}

/// Default largest request: IoTDB's `connector.batch.size-bytes` (16 MiB).
pub const DEFAULT_BATCH_BYTES: usize = 16 << 20;

impl ConnectorSpec {
    /// Validates connector attributes.
    ///
    /// # Errors
    /// A missing or unknown plugin, an unknown key, a bad value.
    pub fn parse(attrs: &BTreeMap<String, String>) -> Result<ConnectorSpec, String> {
        let Some(name) = attrs.get("connector") else {
            return Err(
                "WITH CONNECTOR needs 'connector', e.g. 'connector'='iotdb-thrift-connector'"
                    .into(),
            );
        };
        match name.to_ascii_lowercase().as_str() {
            "iotdb-thrift-connector" | "iotdb-thrift-sync-connector" => {
                check_keys(
                    "connector",
                    attrs,
                    &[
                        "connector",
                        "connector.ip",
                        "connector.port",
                        "connector.node-urls",
                        "connector.batch.enable",
                        "connector.batch.max-delay-seconds",
                        "connector.batch.size-bytes",
                        "connector.parallel.tasks",
                    ],
                )?;
                let mut urls = Vec::new();
                match (attrs.get("connector.ip"), attrs.get("connector.port")) {
                    (Some(ip), Some(port)) => {
                        let p: u16 = port.parse().ok().filter(|&p| p > 0).ok_or_else(|| format!("'connector.port'='{port}': not a port number"))?;
                        urls.push((ip.clone(), p));
                    }
                    (Some(_), None) => return Err("'connector.ip' needs 'connector.port'".into()),
                    (None, Some(_)) => return Err("'connector.port' needs 'connector.ip'".into()),
                    (None, None) => {}
                }
                if let Some(list) = attrs.get("connector.node-urls") {
                    for u in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                        let (h, p) = u.rsplit_once(':').ok_or_else(|| format!("'connector.node-urls': '{u}' is not host:port"))?;
                        let p: u16 = p.parse().ok().filter(|&p| p > 0).ok_or_else(|| format!("'connector.node-urls': '{u}' has no valid port"))?;
                        if !urls.contains(&(h.to_string(), p)) {
                            urls.push((h.to_string(), p));
                        }
                    }
                }
                if urls.is_empty() {
                    return Err("the thrift connector needs 'connector.ip' and 'connector.port', or 'connector.node-urls'".into());
                }
                parse_bool(attrs, "connector.batch.enable", true)?;
                if let Some(v) = attrs.get("connector.batch.max-delay-seconds") {
                    v.parse::<u64>().map_err(|_| format!("'connector.batch.max-delay-seconds'='{v}': not a number"))?;
                }
                if let Some(v) = attrs.get("connector.parallel.tasks") {
                    v.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| format!("'connector.parallel.tasks'='{v}': not a positive number"))?;
                }
                let batch_bytes = match attrs.get("connector.batch.size-bytes") {
                    Some(v) => v.parse::<usize>().ok().filter(|&n| n >= 1024).ok_or_else(|| format!("'connector.batch.size-bytes'='{v}': a number of at least 1024"))?,
                    None => DEFAULT_BATCH_BYTES,
                };
                Ok(ConnectorSpec::ThriftSync { urls, batch_bytes })
            }
            "do-nothing-connector" => {
                check_keys("connector", attrs, &["connector"])?;
                Ok(ConnectorSpec::DoNothing)
            }
            "iotdb-thrift-async-connector" | "iotdb-legacy-pipe-connector" | "websocket-connector" | "opc-ua-connector" => {
                Err(format!("connector plugin '{name}' is not supported by edgepipe yet; use iotdb-thrift-sync-connector"))
            }
            other => Err(format!("unknown connector plugin '{other}'; built-in: iotdb-thrift-connector, iotdb-thrift-sync-connector, do-nothing-connector")),
        }
    }

    /// The most payload bytes a request may carry.
    pub fn batch_bytes(&self) -> usize {
        match self {
            ConnectorSpec::ThriftSync { batch_bytes, .. } => *batch_bytes,
            ConnectorSpec::DoNothing => DEFAULT_BATCH_BYTES,
        }
    }
}

/// A live connector: for the thrift one, a connection to the first node
/// URL that answers, handshaken, reused until it fails.
///
/// A request in flight owns its connection (an `InFlight`): the
/// connection goes back to the connector only once the reply arrived. If
/// the transfer is abandoned instead (its future dropped because the pipe
/// stops) or fails, the connection is reset and its unsent bytes are
/// discarded, so an abandoned request never goes out late and never leaves
/// a reply behind for the next one.
pub struct Connector {
    spec: ConnectorSpec,
    precision: String,
    timeout: Duration,
    /// The idle, handshaken connection (`None` while a request is in
    /// flight, or before the first one).
    conn: Option<TcpStream>,
    /// Index of the URL to try next.
    next_url: usize,
    seq: i32,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("spec", &self.spec)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// A connection with a request in flight. Dropped without [`InFlight::done`]
/// (the request abandoned or failed), it is closed with a reset
/// (`SO_LINGER` 0): whatever the kernel still holds of the request is
/// discarded rather than sent after the sender gave up on it.
struct InFlight(Option<TcpStream>);

impl InFlight {
    fn stream(&mut self) -> &mut TcpStream {
        self.0.as_mut().expect("in flight")
    }

    /// The request was answered: the connection is idle and reusable.
    fn done(mut self) -> TcpStream {
        self.0.take().expect("in flight")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            // Every path but an answered request: abandoned, timed out,
            // failed, or refused by status (then nothing is pending and
            // the reset costs nothing).
            let _ = s.set_zero_linger();
        }
    }
}

impl Connector {
    /// A connector for `spec`, sending our timestamp `precision` in the
    /// handshake and giving up on an unanswered call after `timeout`.
    pub fn new(spec: ConnectorSpec, precision: &str, timeout: Duration) -> Connector {
        Connector {
            spec,
            precision: precision.into(),
            timeout,
            conn: None,
            next_url: 0,
            seq: 0,
        }
    }

    /// The validated settings.
    pub fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    /// Sends `events` and waits for the receiver's acknowledgement.
    /// Deletions are not sent: IoTDB 1.2's `pipeTransfer` has no request for
    /// them (1.2 does not propagate deletions either).
    ///
    /// Cancel-safe: dropping the returned future abandons the request; its
    /// connection is reset (nothing more of it goes out, and no reply to it
    /// is ever read), and the next transfer connects afresh.
    ///
    /// # Errors
    /// Connection failures, timeouts and non-success statuses; the
    /// connection is dropped so the next attempt reconnects (to the next
    /// URL).
    pub async fn transfer(&mut self, events: &[PipeEvent]) -> Result<(), TransferError> {
        let tablets: Vec<&[u8]> = events
            .iter()
            .filter_map(|e| match e {
                PipeEvent::Tablet(b) => Some(&b[..]),
                PipeEvent::Delete { .. } => None,
            })
            .collect();
        let ConnectorSpec::ThriftSync { urls, .. } = &self.spec else {
            return Ok(());
        };
        if tablets.is_empty() {
            return Ok(());
        }
        // The body goes out in parts, straight from the events' buffers.
        let head;
        let (kind, parts): (i16, Vec<&[u8]>) = if tablets.len() == 1 {
            (pipe::TRANSFER_TABLET_RAW, tablets)
        } else {
            head = pipe::batch_head(tablets.len());
            let mut parts = Vec::with_capacity(tablets.len() + 1);
            parts.push(&head[..]);
            parts.extend(tablets);
            (pipe::TRANSFER_TABLET_BATCH, parts)
        };
        // The connection is taken out for the call and put back only when
        // the call succeeded (see `InFlight`).
        let mut conn = match self.conn.take() {
            Some(s) => InFlight(Some(s)),
            None => {
                let urls = urls.clone();
                self.connect(&urls).await?
            }
        };
        let resp = self.rpc(conn.stream(), kind, &parts).await?;
        if resp.status.code != 200 {
            return Err(TransferError(format!(
                "receiver answered {}: {}",
                resp.status.code,
                resp.status.message.unwrap_or_default()
            )));
        }
        self.conn = Some(conn.done());
        Ok(())
    }

    /// Connects to the URLs in turn, starting at the next one, and
    /// handshakes. The connection is the caller's only once handshaken.
    async fn connect(&mut self, urls: &[(String, u16)]) -> Result<InFlight, TransferError> {
        let mut errors = Vec::new();
        for k in 0..urls.len() {
            let i = (self.next_url + k) % urls.len();
            let (h, p) = &urls[i];
            let addr = format!("{h}:{p}");
            match tokio::time::timeout(self.timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let mut conn = InFlight(Some(s));
                    let hs = pipe::handshake_body(&self.precision);
                    match self.rpc(conn.stream(), pipe::HANDSHAKE, &[&hs]).await {
                        Ok(r) if r.status.code == 200 => {
                            self.next_url = i;
                            info!(target_addr = %addr, "pipe connector connected");
                            return Ok(conn);
                        }
                        Ok(r) => errors.push(format!(
                            "{addr}: handshake refused ({}: {})",
                            r.status.code,
                            r.status.message.unwrap_or_default()
                        )),
                        Err(e) => errors.push(format!("{addr}: {e}")),
                    }
                }
                Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
                Err(_) => errors.push(format!(
                    "{addr}: connect timed out after {:?}",
                    self.timeout
                )),
            }
        }
        self.next_url = (self.next_url + 1) % urls.len();
        Err(TransferError(format!(
            "all target servers are unavailable: {}",
            errors.join("; ")
        )))
    }

    /// One `pipeTransfer` call on `s`: the frame is written around the
    /// body's parts, not copied with them.
    async fn rpc(
        &mut self,
        s: &mut TcpStream,
        kind: i16,
        body: &[&[u8]],
    ) -> Result<TPipeTransferResp, TransferError> {
        self.seq = self.seq.wrapping_add(1);
        let len = body.iter().map(|p| p.len()).sum();
        let head = pipe::call_head(self.seq, kind, len);
        let timeout = self.timeout;
        let io = async {
            s.write_all(&head).await?;
            for part in body {
                s.write_all(part).await?;
            }
            s.write_all(&pipe::TAIL).await?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let n = i32::from_be_bytes(len);
            if !(1..=64 << 20).contains(&n) {
                return Err(std::io::Error::other(format!("reply frame of {n} bytes")));
            }
            let mut buf = vec![0u8; n as usize];
            s.read_exact(&mut buf).await?;
            Ok(buf)
        };
        let buf = match tokio::time::timeout(timeout, io).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(TransferError(format!("connection failed: {e}"))),
            Err(_) => {
                return Err(TransferError(format!(
                    "no reply within {timeout:?} (pipe_connector_timeout_ms)"
                )))
            }
        };
        debug!(bytes = len, "pipeTransfer answered");
        read_reply::<TPipeTransferResp>(&buf)
            .map_err(|e| TransferError(format!("reply does not decode: {e}")))
    }
}
