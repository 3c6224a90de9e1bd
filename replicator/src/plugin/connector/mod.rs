//! Connectors: their settings ([`ConnectorSpec`], validated at `CREATE
//! PIPE`) and the live connector of each protocol.
//!
//! - [`thrift_sync`]: `iotdb-thrift-sync-connector` (alias
//!   `iotdb-thrift-connector`), IoTDB 1.2's `pipeTransfer`, one request in
//!   flight, in order; and the thrift client both thrift connectors use.
//! - [`thrift_async`]: `iotdb-thrift-async-connector`, the same requests,
//!   several in flight over a pool of connections.
//! - [`wire`]: how both thrift connectors' requests go on the wire,
//!   compressed (`connector.compressor`) and paced
//!   (`connector.rate-limit-bytes-per-second`).
//! - [`legacy`]: `iotdb-legacy-pipe-connector` and the sync tool's
//!   PIPESINK pipes, IoTDB 1.0/1.1's sync protocol, one call in flight, in
//!   order.
//! - [`transport`]: the connection they all open, plain TCP or TLS, and the
//!   key and trust stores TLS reads.
//!
//! The connectors that send one batch after the other on one connection
//! (the sync thrift one, which keeps two requests in flight, the legacy
//! one and `do-nothing-connector`) are the variants of [`Connector`]; a
//! pipe task sends through them in order. The
//! async one is [`AsyncConnector`], which a pipe task feeds through lanes
//! (`task.rs`).
//!
//! # TLS (`connector.ssl.*`, every connector)
//! - `connector.ssl.enable` (default false): connect with TLS, verifying
//!   the receiver's certificate for the host named in `connector.ip` /
//!   `connector.node-urls`. A certificate that does not verify fails the
//!   transfer with the host and the reason (SHOW PIPES shows it); there is
//!   never a fallback to plain TCP.
//! - `connector.ssl.trust-store-path`: the CA certificate(s) that signed
//!   the receivers' certificates: PEM, or a PKCS#12 trust store (see
//!   [`transport`]). Required with TLS; read at the first connect.
//! - `connector.ssl.trust-store-pwd`: the PKCS#12 trust store's password
//!   (IoTDB requires it; for PEM it may be left out).
//! - `'connector'='iotdb-thrift-ssl-sink'` (the preset of later IoTDB
//!   versions; also `iotdb-thrift-ssl-connector`) is the sync thrift
//!   connector with TLS on.
//!
//! Trust-store keys while TLS is off are an error at `CREATE PIPE` rather
//! than a silent plain connection. IoTDB 1.3 spells these keys
//! `sink.ssl.*`: every `sink.*` key (and `sink` itself) is read as its
//! `connector.*` twin, so IoTDB 1.3's `WITH SINK ('sink'=…, 'sink.…'=…)`
//! works as written.
//!
//! # Batching (`connector.batch.*`, both thrift connectors)
//! - `connector.batch.enable` (default true): tablets travel in batches
//!   (`TRANSFER_TABLET_BATCH`, type 6). Off: one tablet per request
//!   (`TRANSFER_TABLET_RAW`, type 3), the only form an IoTDB 1.2.0 receiver
//!   knows. A receiver that answers a batch with 1801 (PIPE_TYPE_ERROR,
//!   unknown type) gets single tablets from then on; that answer is not a
//!   failed attempt (nothing of the batch was applied), so it is not counted
//!   as a retry.
//! - `connector.batch.size-bytes` (default 16 MiB): the most tablet bytes
//!   in one request.
//! - `connector.batch.max-delay-seconds` (default 1): the longest a record
//!   may wait to be batched. edgepipe never holds a batch back to fill it:
//!   a request carries what the log holds when the connector is ready for
//!   it (so batches grow by themselves while the receiver is busy), and an
//!   idle pipe sends a new record at once. Every batch therefore leaves
//!   within the delay, whatever its value (0 included).
//!
//! # On the wire (`connector.*` or `sink.*`, both thrift connectors; [`wire`])
//! - `connector.compressor` (default none): a comma-separated list of
//!   snappy, gzip, lz4, zstd, lzma2, applied in that order to every request
//!   but the handshake, sent as IoTDB 1.3's compressed request (type 300).
//!   The receiver must be IoTDB 1.3 or later, or edgepipe.
//! - `connector.compressor.zstd.level` (default 3, zstd's own): zstd's
//!   level, -131072 (fastest) to 22 (smallest).
//! - `connector.rate-limit-bytes-per-second` (default -1: unlimited): the
//!   most bytes per second the connector writes, compressed bytes as they
//!   go out; zero or negative means unlimited, as in IoTDB.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{check_keys, parse_bool, PipeEvent};
use transport::TlsSpec;

pub mod legacy;
pub mod thrift_async;
pub mod thrift_sync;
pub mod transport;
pub mod wire;

pub use legacy::{DatabaseOf, Identity, LegacySpec};
pub use thrift_async::AsyncConnector;
pub use wire::WireSpec;

/// A live connector that sends batches in order on one connection, of the
/// protocol its spec names.
#[derive(Debug)]
pub enum Connector {
    /// `pipeTransfer` (`iotdb-thrift-sync-connector`), and
    /// `do-nothing-connector`.
    ThriftSync(thrift_sync::Connector),
    /// The legacy sync protocol (`iotdb-legacy-pipe-connector`, PIPESINK
    /// pipes).
    Legacy(legacy::Connector),
}

/// What a connector needs from the node and the pipe that creates it.
#[derive(Debug, Clone)]
pub struct ConnectorEnv {
    /// The node's timestamp precision, for `pipeTransfer` handshakes.
    pub precision: String,
    /// Connect and call timeout (`pipe_connector_timeout_ms`).
    pub timeout: Duration,
    /// The pipe, for legacy handshakes.
    pub identity: Identity,
    /// The node's databases, for legacy handshakes.
    pub database_of: DatabaseOf,
}

impl Connector {
    /// The live connector for `spec` (an `iotdb-thrift-async-connector`
    /// spec gets a sync one here: the pipes run it as an
    /// [`AsyncConnector`]).
    pub fn new(spec: ConnectorSpec, env: &ConnectorEnv) -> Connector {
        match spec {
            ConnectorSpec::Legacy(l) => Connector::Legacy(legacy::Connector::new(
                l,
                env.identity.clone(),
                env.timeout,
                env.database_of.clone(),
            )),
            other => Connector::ThriftSync(thrift_sync::Connector::new(
                other,
                &env.precision,
                env.timeout,
            )),
        }
    }

    /// Sends `events[*sent..]` and waits for the receiver's
    /// acknowledgement; `*sent` advances over the events acknowledged (all
    /// of them on success; after a failure, those the receiver is known to
    /// have applied, so a retry goes on after them). Cancel-safe (see each
    /// protocol's `transfer`).
    ///
    /// # Errors
    /// Connection failures, timeouts and refusals, named.
    pub async fn transfer(
        &mut self,
        events: &[PipeEvent],
        sent: &mut usize,
    ) -> Result<(), TransferError> {
        match self {
            Connector::ThriftSync(c) => c.transfer(events, sent).await,
            Connector::Legacy(c) => c.transfer(events, sent).await,
        }
    }

    /// Whether `events` can go pipelined ([`Connector::write_batch`]):
    /// the thrift sync connector only.
    pub fn pipelines(&self, events: &[PipeEvent]) -> bool {
        matches!(self, Connector::ThriftSync(c) if c.pipelines(events))
    }

    /// Writes `events` as one request without waiting for the reply (see
    /// [`thrift_sync::Connector::write_batch`]).
    ///
    /// # Errors
    /// As there; the legacy connector does not pipeline.
    pub async fn write_batch(&mut self, events: &[PipeEvent]) -> Result<(), TransferError> {
        match self {
            Connector::ThriftSync(c) => c.write_batch(events).await,
            Connector::Legacy(_) => Err(TransferError(
                "the legacy connector does not pipeline".into(),
            )),
        }
    }

    /// Until the oldest unanswered reply begins to arrive (see
    /// [`thrift_sync::Connector::reply_arriving`]).
    pub async fn reply_arriving(&mut self) {
        if let Connector::ThriftSync(c) = self {
            c.reply_arriving().await
        }
    }

    /// Reads the oldest unanswered reply (see
    /// [`thrift_sync::Connector::read_batch_reply`]).
    ///
    /// # Errors
    /// As there.
    pub async fn read_batch_reply(&mut self) -> Result<(), TransferError> {
        match self {
            Connector::ThriftSync(c) => c.read_batch_reply().await,
            Connector::Legacy(_) => Err(TransferError(
                "the legacy connector does not pipeline".into(),
            )),
        }
    }

    /// Abandons the unanswered requests (see
    /// [`thrift_sync::Connector::abandon`]).
    pub fn abandon(&mut self) {
        if let Connector::ThriftSync(c) = self {
            c.abandon()
        }
    }

    /// What the transfers since the last call skipped (sentences for the
    /// pipe's message), taken.
    pub fn take_notes(&mut self) -> Vec<String> {
        match self {
            Connector::ThriftSync(_) => Vec::new(),
            Connector::Legacy(c) => c.take_notes(),
        }
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

/// An I/O error in the operating system's words, as IoTDB reports it
/// (`Connection refused`), without the ` (os error 111)` that Rust's
/// `Display` appends.
pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" (os error ") {
        Some((words, code))
            if code
                .strip_suffix(')')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            words.to_string()
        }
        _ => text,
    }
}

/// A connector timeout in the words of its setting:
/// `900000 ms (pipe_connector_timeout_ms)`.
pub(crate) fn timeout_text(timeout: Duration) -> String {
    format!("{} ms (pipe_connector_timeout_ms)", timeout.as_millis())
}

/// The `connector.batch.*` settings of a thrift connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// `connector.batch.enable`: tablets in batches (type 6), else one per
    /// request (type 3).
    pub enable: bool,
    /// `connector.batch.max-delay-seconds` (see the module doc: always
    /// met, a batch is never held back).
    pub max_delay: Duration,
    /// `connector.batch.size-bytes`: the most tablet bytes per request.
    pub size_bytes: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            enable: true,
            max_delay: Duration::from_secs(1),
            size_bytes: DEFAULT_BATCH_BYTES,
        }
    }
}

/// A connector's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorSpec {
    /// `iotdb-thrift-sync-connector` (alias `iotdb-thrift-connector`):
    /// node URLs to try in order, two requests in flight on one
    /// connection.
    ThriftSync {
        /// `host:port` targets.
        urls: Vec<(String, u16)>,
        /// `connector.batch.*`.
        batch: Batching,
        /// `connector.ssl.*`: TLS, when on.
        tls: Option<TlsSpec>,
        /// `connector.compressor`, `connector.rate-limit-bytes-per-second`.
        wire: WireSpec,
    },
    /// `iotdb-thrift-async-connector`: requests spread over the node URLs,
    /// several in flight.
    ThriftAsync {
        /// `host:port` targets.
        urls: Vec<(String, u16)>,
        /// `connector.batch.*`.
        batch: Batching,
        /// `connector.ssl.*`: TLS, when on.
        tls: Option<TlsSpec>,
        /// `connector.compressor`, `connector.rate-limit-bytes-per-second`.
        wire: WireSpec,
    },
    /// `iotdb-legacy-pipe-connector` (and sync-tool pipes).
    Legacy(LegacySpec),
    /// `do-nothing-connector`.
    DoNothing,
}

/// Default largest request: IoTDB's `connector.batch.size-bytes` (16 MiB).
pub const DEFAULT_BATCH_BYTES: usize = 16 << 20;

/// The smallest `connector.batch.size-bytes` accepted: below it a request's
/// fixed cost (frame, thrift header, round trip) outweighs its tablets.
pub const MIN_BATCH_BYTES: usize = 1024;

/// Keys both thrift connectors accept.
const THRIFT_KEYS: [&str; 14] = [
    "connector",
    "connector.ip",
    "connector.port",
    "connector.node-urls",
    "connector.batch.enable",
    "connector.batch.max-delay-seconds",
    "connector.batch.size-bytes",
    "connector.parallel.tasks",
    SSL_ENABLE,
    SSL_TRUST_STORE_PATH,
    SSL_TRUST_STORE_PWD,
    "connector.compressor",
    "connector.compressor.zstd.level",
    "connector.rate-limit-bytes-per-second",
];

/// `connector.ssl.enable` (IoTDB 1.3: `sink.ssl.enable`).
const SSL_ENABLE: &str = "connector.ssl.enable";
/// `connector.ssl.trust-store-path` (IoTDB 1.3: `sink.ssl.trust-store-path`).
const SSL_TRUST_STORE_PATH: &str = "connector.ssl.trust-store-path";
/// `connector.ssl.trust-store-pwd` (IoTDB 1.3: `sink.ssl.trust-store-pwd`).
const SSL_TRUST_STORE_PWD: &str = "connector.ssl.trust-store-pwd";

/// The thrift presets with TLS always on (`iotdb-thrift-ssl-sink` of
/// later IoTDB versions, and its `-connector` spelling).
const SSL_PRESETS: [&str; 2] = ["iotdb-thrift-ssl-sink", "iotdb-thrift-ssl-connector"];

/// The attributes with every `sink` / `sink.*` key read as its `connector`
/// twin (IoTDB 1.3 spells its connector keys both ways).
///
/// # Errors
/// A key given both ways.
fn connector_keys(attrs: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in attrs {
        let key = match k.strip_prefix("sink") {
            Some("") => "connector".to_string(),
            Some(rest) if rest.starts_with('.') => format!("connector{rest}"),
            _ => k.clone(),
        };
        if out.insert(key.clone(), v.clone()).is_some() {
            return Err(format!(
                "'{k}' and '{key}' are the same attribute; give it once"
            ));
        }
    }
    Ok(out)
}

/// The `connector.ssl.*` keys: TLS when `connector.ssl.enable` is true or
/// the plugin is a TLS preset (`preset`).
fn parse_tls(attrs: &BTreeMap<String, String>, preset: bool) -> Result<Option<TlsSpec>, String> {
    let enable = parse_bool(attrs, SSL_ENABLE, false)? || preset;
    let path = attrs.get(SSL_TRUST_STORE_PATH);
    if !enable {
        for key in [SSL_TRUST_STORE_PATH, SSL_TRUST_STORE_PWD] {
            if attrs.contains_key(key) {
                return Err(format!(
                    "'{key}' is given but TLS is off: add '{SSL_ENABLE}'='true' to connect with TLS (or leave the trust store out)"
                ));
            }
        }
        return Ok(None);
    }
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        return Err(format!(
            "with TLS on, '{SSL_TRUST_STORE_PATH}' must name the trust store: the CA certificate that signed the receiver's, in PEM, or a PKCS#12 trust store with '{SSL_TRUST_STORE_PWD}'"
        ));
    };
    Ok(Some(TlsSpec {
        trust_store_path: path.trim().to_string(),
        trust_store_pwd: attrs.get(SSL_TRUST_STORE_PWD).cloned().unwrap_or_default(),
    }))
}

/// The value of `connector.<key>` (a `sink.<key>` was read as it by
/// [`connector_keys`]), with the key.
fn wire_key<'a>(attrs: &'a BTreeMap<String, String>, key: &str) -> Option<(String, &'a str)> {
    let k = format!("connector.{key}");
    attrs.get(&k).map(|v| (k, v.as_str()))
}

/// The `connector.compressor*` and `connector.rate-limit-bytes-per-second`
/// keys (see the module doc).
fn parse_wire(attrs: &BTreeMap<String, String>) -> Result<WireSpec, String> {
    use protocol::pipe::compress::{Compressor, DEFAULT_ZSTD_LEVEL, MAX_COMPRESSORS};
    let level = match wire_key(attrs, "compressor.zstd.level") {
        Some((k, v)) => {
            let range = Compressor::zstd_levels();
            v.trim()
                .parse::<i32>()
                .ok()
                .filter(|l| range.contains(l))
                .ok_or_else(|| {
                    format!(
                        "'{k}'='{v}': a zstd level from {} to {}",
                        range.start(),
                        range.end()
                    )
                })?
        }
        None => DEFAULT_ZSTD_LEVEL,
    };
    let mut compressors = Vec::new();
    if let Some((k, v)) = wire_key(attrs, "compressor") {
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            compressors.push(Compressor::from_name(name, level).ok_or_else(|| {
                format!("'{k}'='{v}': '{name}' is not a compressor; use snappy, gzip, lz4, zstd or lzma2, comma-separated")
            })?);
        }
        if compressors.len() > MAX_COMPRESSORS {
            return Err(format!(
                "'{k}'='{v}': {} compressors; at most {MAX_COMPRESSORS} (a receiver refuses more)",
                compressors.len()
            ));
        }
    }
    let rate_limit = match wire_key(attrs, "rate-limit-bytes-per-second") {
        Some((k, v)) => {
            let r = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite())
                .ok_or_else(|| {
                    format!("'{k}'='{v}': a number of bytes per second (-1: unlimited)")
                })?;
            // As IoTDB: zero or negative is unlimited.
            (r > 0.0).then(|| (r.ceil() as u64).max(1))
        }
        None => None,
    };
    Ok(WireSpec {
        compressors,
        rate_limit,
    })
}

/// The node URLs of a thrift connector: `connector.ip` + `connector.port`
/// first, then `connector.node-urls`, duplicates removed.
fn parse_urls(attrs: &BTreeMap<String, String>) -> Result<Vec<(String, u16)>, String> {
    let mut urls = Vec::new();
    match (attrs.get("connector.ip"), attrs.get("connector.port")) {
        (Some(ip), Some(port)) => {
            let p: u16 = port
                .parse()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("'connector.port'='{port}': not a port number"))?;
            urls.push((ip.clone(), p));
        }
        (Some(_), None) => return Err("'connector.ip' needs 'connector.port'".into()),
        (None, Some(_)) => return Err("'connector.port' needs 'connector.ip'".into()),
        (None, None) => {}
    }
    if let Some(list) = attrs.get("connector.node-urls") {
        for u in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let (h, p) = u
                .rsplit_once(':')
                .ok_or_else(|| format!("'connector.node-urls': '{u}' is not host:port"))?;
            let p: u16 = p
                .parse()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("'connector.node-urls': '{u}' has no valid port"))?;
            if !urls.contains(&(h.to_string(), p)) {
                urls.push((h.to_string(), p));
            }
        }
    }
    if urls.is_empty() {
        return Err("the thrift connector needs 'connector.ip' and 'connector.port', or 'connector.node-urls'".into());
    }
    Ok(urls)
}

/// The `connector.batch.*` keys.
fn parse_batching(attrs: &BTreeMap<String, String>) -> Result<Batching, String> {
    let enable = parse_bool(attrs, "connector.batch.enable", true)?;
    let max_delay = match attrs.get("connector.batch.max-delay-seconds") {
        Some(v) => Duration::from_secs(v.parse::<u64>().map_err(|_| {
            format!("'connector.batch.max-delay-seconds'='{v}': not a number of seconds")
        })?),
        None => Duration::from_secs(1),
    };
    let size_bytes = match attrs.get("connector.batch.size-bytes") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= MIN_BATCH_BYTES)
            .ok_or_else(|| {
                format!(
                    "'connector.batch.size-bytes'='{v}': a number of at least {MIN_BATCH_BYTES}"
                )
            })?,
        None => DEFAULT_BATCH_BYTES,
    };
    Ok(Batching {
        enable,
        max_delay,
        size_bytes,
    })
}

impl ConnectorSpec {
    /// Validates connector attributes.
    ///
    /// # Errors
    /// A missing or unknown plugin, an unknown key, a bad value.
    pub fn parse(attrs: &BTreeMap<String, String>) -> Result<ConnectorSpec, String> {
        let attrs = &connector_keys(attrs)?;
        let Some(name) = attrs.get("connector") else {
            return Err(
                "WITH CONNECTOR needs 'connector', e.g. 'connector'='iotdb-thrift-connector'"
                    .into(),
            );
        };
        match name.to_ascii_lowercase().as_str() {
            name @ ("iotdb-thrift-connector"
            | "iotdb-thrift-sync-connector"
            | "iotdb-thrift-async-connector"
            | "iotdb-thrift-ssl-sink"
            | "iotdb-thrift-ssl-connector") => {
                check_keys("connector", attrs, &THRIFT_KEYS)?;
                let urls = parse_urls(attrs)?;
                let batch = parse_batching(attrs)?;
                let tls = parse_tls(attrs, SSL_PRESETS.contains(&name))?;
                let wire = parse_wire(attrs)?;
                if let Some(v) = attrs.get("connector.parallel.tasks") {
                    v.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("'connector.parallel.tasks'='{v}': not a positive number")
                    })?;
                }
                Ok(if name == "iotdb-thrift-async-connector" {
                    ConnectorSpec::ThriftAsync {
                        urls,
                        batch,
                        tls,
                        wire,
                    }
                } else {
                    ConnectorSpec::ThriftSync {
                        urls,
                        batch,
                        tls,
                        wire,
                    }
                })
            }
            "do-nothing-connector" => {
                check_keys("connector", attrs, &["connector"])?;
                Ok(ConnectorSpec::DoNothing)
            }
            "iotdb-legacy-pipe-connector" => {
                check_keys(
                    "connector",
                    attrs,
                    &[
                        "connector",
                        "connector.ip",
                        "connector.port",
                        "connector.user",
                        "connector.password",
                        "connector.version",
                        SSL_ENABLE,
                        SSL_TRUST_STORE_PATH,
                        SSL_TRUST_STORE_PWD,
                    ],
                )?;
                let tls = parse_tls(attrs, false)?;
                let (Some(ip), Some(port)) = (attrs.get("connector.ip"), attrs.get("connector.port")) else {
                    return Err("iotdb-legacy-pipe-connector needs 'connector.ip' and 'connector.port' (the receiver's client or pipe server port)".into());
                };
                let port: u16 = port.parse().ok().filter(|&p| p > 0).ok_or_else(|| format!("'connector.port'='{port}': not a port number"))?;
                let version = attrs.get("connector.version").cloned().unwrap_or_else(|| legacy::DEFAULT_VERSION.into());
                if version.trim().is_empty() {
                    return Err("'connector.version' is empty; a receiver compares its major.minor (default 1.1)".into());
                }
                Ok(ConnectorSpec::Legacy(LegacySpec {
                    ip: ip.clone(),
                    port,
                    user: attrs.get("connector.user").cloned().unwrap_or_else(|| "root".into()),
                    password: attrs.get("connector.password").cloned().unwrap_or_else(|| "root".into()),
                    version,
                    tls,
                }))
            }
            "websocket-connector" | "opc-ua-connector" => Err(format!(
                "connector plugin '{name}' is an IoTDB 1.2 plugin that edgepipe does not implement; SHOW PIPEPLUGINS lists the ones it does"
            )),
            other => Err(format!(
                "unknown connector plugin '{other}'; built-in: iotdb-thrift-connector, iotdb-thrift-sync-connector, iotdb-thrift-async-connector, iotdb-thrift-ssl-sink, iotdb-legacy-pipe-connector, do-nothing-connector"
            )),
        }
    }

    /// The most payload bytes a request may carry.
    pub fn batch_bytes(&self) -> usize {
        match self {
            ConnectorSpec::ThriftSync { batch, .. } | ConnectorSpec::ThriftAsync { batch, .. } => {
                batch.size_bytes
            }
            ConnectorSpec::Legacy(_) | ConnectorSpec::DoNothing => DEFAULT_BATCH_BYTES,
        }
    }

    /// The receivers it sends to, `ip:port` (SHOW PIPES' Remote column).
    pub fn targets(&self) -> Vec<String> {
        match self {
            ConnectorSpec::ThriftSync { urls, .. } | ConnectorSpec::ThriftAsync { urls, .. } => {
                urls.iter().map(|(h, p)| format!("{h}:{p}")).collect()
            }
            ConnectorSpec::Legacy(l) => vec![format!("{}:{}", l.ip, l.port)],
            ConnectorSpec::DoNothing => Vec::new(),
        }
    }

    /// Whether the connector sends `event` (the thrift connectors send
    /// tablets: IoTDB 1.2's `pipeTransfer` has no request for deletions;
    /// the legacy one sends deletions too, as `sendPipeData`). What a pipe
    /// counts as remaining is what its connector sends.
    pub fn sends(&self, event: &PipeEvent) -> bool {
        match self {
            ConnectorSpec::ThriftSync { .. } | ConnectorSpec::ThriftAsync { .. } => {
                matches!(event, PipeEvent::Tablet(_))
            }
            ConnectorSpec::Legacy(_) => true,
            // Takes every event (and drops it at once).
            ConnectorSpec::DoNothing => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn thrift_specs_and_batching_keys() {
        let s = ConnectorSpec::parse(&attrs(&[
            ("connector", "iotdb-thrift-async-connector"),
            (
                "connector.node-urls",
                "127.0.0.1:6667, 127.0.0.1:6668,127.0.0.1:6667",
            ),
            ("connector.batch.enable", "false"),
            ("connector.batch.max-delay-seconds", "3"),
            ("connector.batch.size-bytes", "2048"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            ConnectorSpec::ThriftAsync {
                urls: vec![("127.0.0.1".into(), 6667), ("127.0.0.1".into(), 6668)],
                batch: Batching {
                    enable: false,
                    max_delay: Duration::from_secs(3),
                    size_bytes: 2048
                },
                tls: None,
                wire: WireSpec::default(),
            }
        );
        let s = ConnectorSpec::parse(&attrs(&[
            ("connector", "IoTDB-Thrift-Connector"),
            ("connector.ip", "h"),
            ("connector.port", "1"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            ConnectorSpec::ThriftSync {
                urls: vec![("h".into(), 1)],
                batch: Batching::default(),
                tls: None,
                wire: WireSpec::default(),
            }
        );
        for (kv, needle) in [
            (
                vec![("connector.batch.size-bytes", "10")],
                "'connector.batch.size-bytes'='10': a number of at least 1024",
            ),
            (
                vec![("connector.batch.enable", "yes")],
                "'connector.batch.enable'='yes': expected true or false",
            ),
            (
                vec![("connector.batch.max-delay-seconds", "-1")],
                "'connector.batch.max-delay-seconds'='-1': not a number of seconds",
            ),
            (
                vec![("connector.user", "root")],
                "unknown connector attribute 'connector.user'",
            ),
        ] {
            let mut a = attrs(&[
                ("connector", "iotdb-thrift-async-connector"),
                ("connector.ip", "h"),
                ("connector.port", "1"),
            ]);
            a.extend(attrs(&kv));
            let e = ConnectorSpec::parse(&a).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        let e = ConnectorSpec::parse(&attrs(&[("connector", "opc-ua-connector")])).unwrap_err();
        assert!(e.contains("does not implement"), "{e}");
    }

    #[test]
    fn tls_keys_presets_and_sink_spellings() {
        let tls = Some(TlsSpec {
            trust_store_path: "/etc/ca.pem".into(),
            trust_store_pwd: String::new(),
        });
        // connector.ssl.* on each connector.
        for (plugin, extra) in [
            ("iotdb-thrift-sync-connector", vec![]),
            ("iotdb-thrift-async-connector", vec![]),
            ("iotdb-legacy-pipe-connector", vec![("connector.user", "u")]),
        ] {
            let mut a = attrs(&[
                ("connector", plugin),
                ("connector.ip", "cloud"),
                ("connector.port", "6667"),
                ("connector.ssl.enable", "true"),
                ("connector.ssl.trust-store-path", "/etc/ca.pem"),
            ]);
            a.extend(attrs(&extra));
            let got = match ConnectorSpec::parse(&a).unwrap() {
                ConnectorSpec::ThriftSync { tls, .. } | ConnectorSpec::ThriftAsync { tls, .. } => {
                    tls
                }
                ConnectorSpec::Legacy(l) => l.tls,
                ConnectorSpec::DoNothing => unreachable!(),
            };
            assert_eq!(got, tls, "{plugin}");
        }
        // IoTDB 1.3's spelling, and the preset that turns TLS on.
        let s = ConnectorSpec::parse(&attrs(&[
            ("sink", "iotdb-thrift-ssl-sink"),
            ("sink.node-urls", "cloud:6667"),
            ("sink.ssl.trust-store-path", "/etc/ca.p12"),
            ("sink.ssl.trust-store-pwd", "pw"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            ConnectorSpec::ThriftSync {
                urls: vec![("cloud".into(), 6667)],
                batch: Batching::default(),
                tls: Some(TlsSpec {
                    trust_store_path: "/etc/ca.p12".into(),
                    trust_store_pwd: "pw".into(),
                }),
                wire: WireSpec::default(),
            }
        );
        // Half a TLS setting is an error, never a plain connection.
        for (kv, needle) in [
            (
                vec![("connector.ssl.enable", "true")],
                "'connector.ssl.trust-store-path' must name the trust store",
            ),
            (
                vec![("connector.ssl.trust-store-path", "/etc/ca.pem")],
                "TLS is off: add 'connector.ssl.enable'='true'",
            ),
            (
                vec![("connector.ssl.enable", "maybe")],
                "'connector.ssl.enable'='maybe': expected true or false",
            ),
            (
                vec![
                    ("sink.ssl.enable", "true"),
                    ("connector.ssl.enable", "true"),
                ],
                "'sink.ssl.enable' and 'connector.ssl.enable' are the same attribute",
            ),
        ] {
            let mut a = attrs(&[
                ("connector", "iotdb-thrift-connector"),
                ("connector.ip", "h"),
                ("connector.port", "1"),
            ]);
            a.extend(attrs(&kv));
            let e = ConnectorSpec::parse(&a).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        let e = ConnectorSpec::parse(&attrs(&[
            ("connector", "iotdb-thrift-ssl-sink"),
            ("connector.ip", "h"),
            ("connector.port", "1"),
        ]))
        .unwrap_err();
        assert!(e.contains("must name the trust store"), "{e}");
    }

    #[test]
    fn compressor_and_rate_limit_keys() {
        use protocol::pipe::compress::Compressor;
        let base = [
            ("connector", "iotdb-thrift-connector"),
            ("connector.ip", "h"),
            ("connector.port", "1"),
        ];
        let wire = |kv: &[(&str, &str)]| {
            let mut a = attrs(&base);
            a.extend(attrs(kv));
            ConnectorSpec::parse(&a).map(|s| match s {
                ConnectorSpec::ThriftSync { wire, .. } => wire,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(wire(&[]).unwrap(), WireSpec::default());
        assert_eq!(
            wire(&[
                ("connector.compressor", " Snappy, zstd ,,LZMA2"),
                ("connector.compressor.zstd.level", "19"),
                ("connector.rate-limit-bytes-per-second", "1250000.5"),
            ])
            .unwrap(),
            WireSpec {
                compressors: vec![Compressor::Snappy, Compressor::Zstd(19), Compressor::Lzma2],
                rate_limit: Some(1_250_001),
            }
        );
        // IoTDB's sink.* spellings; both spellings at once are refused.
        assert_eq!(
            wire(&[
                ("sink.compressor", "gzip"),
                ("sink.rate-limit-bytes-per-second", "-1"),
            ])
            .unwrap(),
            WireSpec {
                compressors: vec![Compressor::Gzip],
                rate_limit: None,
            }
        );
        let e = wire(&[("sink.compressor", "gzip"), ("connector.compressor", "lz4")]).unwrap_err();
        assert!(
            e.contains("'sink.compressor' and 'connector.compressor' are the same attribute"),
            "{e}"
        );
        assert_eq!(
            wire(&[("connector.rate-limit-bytes-per-second", "0")])
                .unwrap()
                .rate_limit,
            None
        );
        for (kv, needle) in [
            (
                ("connector.compressor", "zstd,lzo"),
                "'connector.compressor'='zstd,lzo': 'lzo' is not a compressor; use snappy, gzip, lz4, zstd or lzma2",
            ),
            (
                ("sink.compressor", "lz4,lz4,lz4,lz4,lz4,lz4,lz4,lz4,lz4"),
                "9 compressors; at most 8",
            ),
            (
                ("connector.compressor.zstd.level", "23"),
                "'connector.compressor.zstd.level'='23': a zstd level from",
            ),
            (
                ("connector.rate-limit-bytes-per-second", "fast"),
                "'connector.rate-limit-bytes-per-second'='fast': a number of bytes per second",
            ),
            (
                ("sink.rate-limit-bytes-per-second", "NaN"),
                "'connector.rate-limit-bytes-per-second'='NaN'",
            ),
        ] {
            let e = wire(&[kv]).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn errors_read_like_iotdbs() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert!(refused.to_string().ends_with("(os error 111)"));
        assert_eq!(io_text(&refused), "Connection refused");
        // Only Rust's suffix goes.
        let other = std::io::Error::other("reply frame of 0 bytes (os error x)");
        assert_eq!(io_text(&other), "reply frame of 0 bytes (os error x)");
        assert_eq!(
            timeout_text(Duration::from_secs(900)),
            "900000 ms (pipe_connector_timeout_ms)"
        );
        assert_eq!(
            timeout_text(Duration::from_millis(100)),
            "100 ms (pipe_connector_timeout_ms)"
        );
    }
}
