//! Connectors: their settings ([`ConnectorSpec`], validated at `CREATE
//! PIPE`) and the live connector of each protocol.
//!
//! - [`thrift_sync`]: `iotdb-thrift-sync-connector` (alias
//!   `iotdb-thrift-connector`), IoTDB 1.2's `pipeTransfer`, one request in
//!   flight.
//! - [`legacy`]: `iotdb-legacy-pipe-connector` and the sync tool's
//!   PIPESINK pipes, IoTDB 1.0/1.1's sync protocol.
//! - [`transport`]: the connection they open, plain TCP or TLS, and the
//!   key and trust stores TLS reads.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{check_keys, parse_bool, PipeEvent};

pub mod legacy;
pub mod thrift_sync;
pub mod transport;

pub use legacy::{DatabaseOf, Identity, LegacySpec};

/// A live connector, of the protocol its spec names.
#[derive(Debug)]
pub enum Connector {
    /// `pipeTransfer` (and `do-nothing-connector`).
    ThriftSync(thrift_sync::Connector),
    /// The legacy sync protocol.
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
    /// The live connector for `spec`.
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

    /// Sends `events` and waits for the receiver's acknowledgement.
    /// Cancel-safe (see each protocol's `transfer`).
    ///
    /// # Errors
    /// Connection failures, timeouts and refusals, named.
    pub async fn transfer(&mut self, events: &[PipeEvent]) -> Result<(), TransferError> {
        match self {
            Connector::ThriftSync(c) => c.transfer(events).await,
            Connector::Legacy(c) => c.transfer(events).await,
        }
    }

    /// What the transfers since the last call skipped (sentences for the
    /// pipe's WARN message), taken.
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
    /// `iotdb-legacy-pipe-connector` (and sync-tool pipes).
    Legacy(LegacySpec),
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
                    ],
                )?;
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
                }))
            }
            "iotdb-thrift-async-connector" | "websocket-connector" | "opc-ua-connector" => {
                Err(format!("connector plugin '{name}' is not supported by edgepipe yet; use iotdb-thrift-sync-connector"))
            }
            other => Err(format!("unknown connector plugin '{other}'; built-in: iotdb-thrift-connector, iotdb-thrift-sync-connector, iotdb-legacy-pipe-connector, do-nothing-connector")),
        }
    }

    /// The most payload bytes a request may carry.
    pub fn batch_bytes(&self) -> usize {
        match self {
            ConnectorSpec::ThriftSync { batch_bytes, .. } => *batch_bytes,
            ConnectorSpec::Legacy(_) | ConnectorSpec::DoNothing => DEFAULT_BATCH_BYTES,
        }
    }

    /// The receivers it sends to, `ip:port` (SHOW PIPES' Remote column).
    pub fn targets(&self) -> Vec<String> {
        match self {
            ConnectorSpec::ThriftSync { urls, .. } => {
                urls.iter().map(|(h, p)| format!("{h}:{p}")).collect()
            }
            ConnectorSpec::Legacy(l) => vec![format!("{}:{}", l.ip, l.port)],
            ConnectorSpec::DoNothing => Vec::new(),
        }
    }
}
