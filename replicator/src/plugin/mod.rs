//! The built-in pipe plugins: `iotdb-extractor`, `do-nothing-processor`,
//! and the connectors `iotdb-thrift-sync-connector` (alias
//! `iotdb-thrift-connector`), `iotdb-thrift-async-connector`,
//! `iotdb-legacy-pipe-connector` and `do-nothing-connector`.
//!
//! Attributes are validated at `CREATE PIPE`: unknown plugin names, unknown
//! keys and bad values are errors naming the key.
//!
//! # Layout
//! - [`extractor`]: `iotdb-extractor` (pattern, history / realtime, time
//!   bounds).
//! - [`processor`](mod@processor): `do-nothing-processor`.
//! - [`connector`]: the connectors' settings and the live connectors, one
//!   file per protocol.

use std::collections::BTreeMap;

use bytes::Bytes;

pub mod connector;
pub mod extractor;
pub mod processor;

pub use connector::{
    AsyncConnector, Batching, Connector, ConnectorEnv, ConnectorSpec, DatabaseOf, Identity,
    TransferError, DEFAULT_BATCH_BYTES,
};
pub use extractor::Extractor;
pub use processor::{processor, DoNothingProcessor, Processor};

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
/// type that implements it. These are the IoTDB 1.2 presets edgepipe
/// implements (IoTDB's list also has WEBSOCKET-CONNECTOR and
/// OPC-UA-CONNECTOR, which edgepipe does not: CREATE PIPE names them in a
/// clear error instead of listing what cannot be used).
pub const PLUGINS: [(&str, &str); 7] = [
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
    (
        "IOTDB-THRIFT-ASYNC-CONNECTOR",
        "replicator::plugin::AsyncConnector",
    ),
    (
        "IOTDB-LEGACY-PIPE-CONNECTOR",
        "replicator::plugin::Connector",
    ),
];

pub(crate) fn check_keys(
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

pub(crate) fn parse_bool(
    attrs: &BTreeMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, String> {
    match attrs.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(format!("'{key}'='{v}': expected true or false")),
    }
}
