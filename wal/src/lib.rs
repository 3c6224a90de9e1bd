//! The change log of edgepipe: every write a node accepts is appended here,
//! pipes tail it, and the receiver appends what it applies to its own.
//!
//! # Brief overview
//! A [`Log`] is a directory of *segments*: memory-mapped, preallocated files
//! named by their zero-padded base offset (`00000000000000000000.log`), each
//! with a sparse offset index (`.index`) and arrival-time index
//! (`.timeindex`), like Kafka's log. An append returns a dense, never reused
//! `u64` offset; the log stamps each batch with its arrival time, which never
//! decreases even when the wall clock steps back. Records carry a kind byte
//! and an opaque payload, and a CRC32 covers every batch.
//!
//! - Durability follows an [`FsyncPolicy`]: `Always`, `Interval` (group
//!   commit, the default, every 10 ms) or `Never`; a writer waits for an
//!   offset with [`Log::wait_durable`].
//! - Recovery reads a recovery-point checkpoint: a clean restart scans
//!   nothing, an unclean one verifies only what follows the recovery point,
//!   and damage is handled as the [`RecoveryMode`] says, never silently.
//! - [`Reader`]s start at an offset or an arrival time and tail the end,
//!   woken asynchronously when records arrive.
//! - Named consumers (one per pipe, one for the node's store) commit
//!   offsets durably; retention never deletes what a consumer still needs
//!   unless a disk bound forces it, and then the loss is recorded; never
//!   what a protected consumer (the store) still needs.
//! - A full disk refuses an append with an error
//!   ([`Error::is_disk_full`]) and leaves nothing behind: appends resume
//!   when space returns.
//! - The [`powerloss`] module can record what survives a power cut after
//!   every sync the log makes: dormant (one atomic load per sync) until a
//!   test watches a directory.
//! - One writer process per directory (a lock file); [`Log::open_read_only`]
//!   works beside it.
//!
//! The byte layouts are in the `format` module's documentation (see
//! `wal/src/format.rs`).
//!
//! # Example
//! ```
//! use wal::{Config, FsyncPolicy, Log};
//!
//! let dir = tempfile::tempdir()?;
//! let config = Config { fsync: FsyncPolicy::Never, segment_bytes: 1 << 20, ..Config::default() };
//! let log = Log::open(dir.path(), config.clone())?;
//! let first = log.append(1, b"temperature=21.5")?;
//! log.append_batch(&[(1, b"a"), (2, b"b")])?;
//! log.close()?;
//! drop(log);
//!
//! let log = Log::open(dir.path(), config)?;
//! let mut reader = log.reader(first)?;
//! let mut payloads = Vec::new();
//! while let Some(batch) = reader.try_next()? {
//!     payloads.extend(batch.iter().map(|r| r.payload.to_vec()));
//! }
//! assert_eq!(payloads, [b"temperature=21.5".to_vec(), b"a".to_vec(), b"b".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod config;
mod error;
#[cfg(not(feature = "internals"))]
mod format;
#[cfg(feature = "internals")]
pub mod format;
mod fsutil;
mod ledger;
mod log;
pub mod powerloss;
mod reader;
mod recovery;
mod segment;
mod stats;

#[cfg(feature = "internals")]
pub mod debug;

pub use config::{
    Config, FsyncPolicy, RecoveryMode, DEFAULT_FSYNC_INTERVAL, DEFAULT_INDEX_INTERVAL_BYTES,
    DEFAULT_SEGMENT_BYTES,
};
pub use error::{is_disk_full, Error, Result};
pub use ledger::{ConsumerState, MAX_LOST_RANGES};
pub use log::{ConsumerInfo, Deleted, Log};
pub use reader::{Reader, Record, RecordBatch};
pub use segment::{background_priority, background_priority_of, idle_priority, thread_id};
pub use stats::{Durability, HistogramSnapshot, Lag, LatencyHistogram, SegmentInfo, FSYNC_BUCKETS};
