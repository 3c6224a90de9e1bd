//! An edgepipe node: what an IoTDB application talks to.
//!
//! # Layout
//! - [`sql`]: IoTDB's SQL dialect, parsed into statements.
//! - [`event`]: what the node writes to its change log.
//! - [`store`] and [`chunkfile`]: the durable, queryable time-series store.
//! - [`exec`]: runs statements against the store, producing results.
//! - [`service`]: the IoTDB client RPC (sessions, statements, inserts,
//!   paged results) over framed thrift.
//! - [`server`]: the TCP listener, connection tasks and graceful shutdown.
//! - [`config`]: the node's configuration file (IoTDB key names).
#![deny(missing_docs)]

pub mod chunkfile;
pub mod config;
pub mod event;
pub mod exec;
pub mod server;
pub mod service;
pub mod sql;
pub mod store;
