//! Connectors: their settings ([`ConnectorSpec`], validated at `CREATE
//! PIPE`) and the live connector of each protocol.
//!
//! - [`thrift_sync`]: `iotdb-thrift-sync-connector` (alias
//!   `iotdb-thrift-connector`), IoTDB 1.2's `pipeTransfer`, one request in
//!   flight.

use std::collections::BTreeMap;

use super::{check_keys, parse_bool};

pub mod thrift_sync;

pub use thrift_sync::Connector;

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
