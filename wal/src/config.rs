//! Configuration of a change log.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Default segment size: 64 MiB, small enough that retention frees space in
/// useful steps and recovery of one segment stays well under a second.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Smallest segment allowed: a page of header plus room for a few records.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment: positions inside a segment are stored as u32.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// Default group-commit interval of [`FsyncPolicy::Interval`]: 10 ms, the
/// latency a client waits at most for its write to be acknowledged.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(10);
/// Default bytes of log between two sparse index entries (Kafka's
/// `index.interval.bytes`): a seek scans at most this much.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Default age after which the active segment rolls even if not full: one
/// week, as Kafka's `segment.ms`.
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default interval between recovery-point checkpoints: an unclean restart
/// verifies at most this much recent writing (and at most one segment).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Default for [`Config::direct_write_bytes`]: 64 KiB.
pub const DEFAULT_DIRECT_WRITE_BYTES: u64 = 64 << 10;

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every append is durable before it returns.
    Always,
    /// Group commit: a background thread syncs at the latest every
    /// interval, and at once when a writer waits for durability with
    /// [`Log::wait_durable`](crate::Log::wait_durable); every writer that
    /// arrives while a sync runs is made durable by the next one.
    Interval(Duration),
    /// The operating system decides; records become durable at segment roll
    /// and close only.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(DEFAULT_FSYNC_INTERVAL)
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = Error;

    /// Parses `always`, `never`, `interval` (10 ms) or `interval:N` (N ms).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            "interval" => Ok(FsyncPolicy::default()),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
                _ => Err(Error::InvalidArgument(format!(
                    "fsync policy {s:?}: expected always, never, interval or interval:<ms>"
                ))),
            },
        }
    }
}

/// What recovery does with damaged bytes, as raft-engine's recovery modes.
///
/// A *torn tail* is damage in the last segment after which no intact batch
/// follows: the remains of a write cut short by a crash. Damage with intact
/// batches after it is *damage before the tail*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open on any damage, except a torn tail past the recovery
    /// point (writes that were never reported durable).
    AbsoluteConsistency,
    /// Truncate a torn tail with a warning; refuse to open on damage before
    /// the tail. The default.
    #[default]
    TolerateTailCorruption,
    /// Truncate at the first damaged byte wherever it is, with a warning
    /// saying how many bytes and records went. Offsets stay dense, so every
    /// record after the damage is dropped too.
    TolerateAnyCorruption,
}

impl std::str::FromStr for RecoveryMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "absolute-consistency" => Ok(RecoveryMode::AbsoluteConsistency),
            "tolerate-tail-corruption" => Ok(RecoveryMode::TolerateTailCorruption),
            "tolerate-any-corruption" => Ok(RecoveryMode::TolerateAnyCorruption),
            _ => Err(Error::InvalidArgument(format!(
                "recovery mode {s:?}: expected absolute-consistency, \
                 tolerate-tail-corruption or tolerate-any-corruption"
            ))),
        }
    }
}

/// Settings of a change log. Build one with [`Config::default`] and field
/// updates, then [`Config::validate`] (called by `Log::open`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Size a segment file is preallocated to; the active segment rolls when
    /// the next batch would not fit. Default: 64 MiB. Minimum: 4 KiB.
    pub segment_bytes: u64,
    /// Roll the active segment once its first record is this old.
    /// Default: 7 days.
    pub segment_max_age: Duration,
    /// When appends become durable. Default: `Interval(10 ms)`.
    pub fsync: FsyncPolicy,
    /// Bytes between sparse index entries. Default: 4096.
    pub index_interval_bytes: u32,
    /// What recovery does with damage. Default: `TolerateTailCorruption`.
    pub recovery_mode: RecoveryMode,
    /// How often the recovery point is checkpointed. Default: 1 s.
    pub checkpoint_interval: Duration,
    /// Delete consumed sealed segments while the log is larger than this.
    /// Default: none.
    pub retention_bytes: Option<u64>,
    /// Delete consumed sealed segments whose newest record is older than
    /// this. Default: none.
    pub retention_age: Option<Duration>,
    /// Hard bound on the log's size on disk: past it, the oldest sealed
    /// segments go even if a consumer still needs them, and the loss is
    /// recorded per consumer. Never past a protected consumer
    /// ([`Log::set_protected`](crate::Log::set_protected)): then the log
    /// asks for a checkpoint instead
    /// ([`Log::checkpoint_wanted`](crate::Log::checkpoint_wanted)).
    /// Default: none. Minimum: two segments.
    pub max_disk_bytes: Option<u64>,
    /// Bound on the bytes of sealed segments kept only for unprotected
    /// consumers (pipes), once every protected consumer is past them: past
    /// it, the oldest go and the loss is recorded per consumer, as under
    /// `max_disk_bytes`. Bounds what a stopped or slow consumer pins.
    /// Default: none. Minimum: one segment.
    pub max_pinned_bytes: Option<u64>,
    /// Offsets below this are held elsewhere (the node's store has
    /// checkpointed them): damage to them never makes recovery refuse. A
    /// damaged segment wholly below it goes, with every segment before it;
    /// damage in the last segment below it ends the log there (the caller
    /// fills the rest, [`Log::fill_gap`](crate::Log::fill_gap)). Batches at
    /// or past it are CRC-checked at every open, even below the recovery
    /// point: they are what the caller is about to read. Default: none.
    pub recovery_floor: Option<u64>,
    /// Batches at least this long are written into the segment file with
    /// `pwritev` instead of being copied into the mapping: a copy into the
    /// mapping faults every fresh page in, and the kernel zero-fills each
    /// preallocated page before the copy overwrites it; a write into the
    /// page cache skips both. Smaller batches are cheaper to copy than a
    /// system call. Readers see both the same way. Default: 64 KiB.
    pub direct_write_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_max_age: DEFAULT_SEGMENT_MAX_AGE,
            fsync: FsyncPolicy::default(),
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            recovery_mode: RecoveryMode::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            retention_bytes: None,
            retention_age: None,
            max_disk_bytes: None,
            max_pinned_bytes: None,
            recovery_floor: None,
            direct_write_bytes: DEFAULT_DIRECT_WRITE_BYTES,
        }
    }
}

impl Config {
    /// Rejects contradictory or out-of-range settings, naming the setting.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(format!(
                "segment-bytes {} is outside [{MIN_SEGMENT_BYTES}, {MAX_SEGMENT_BYTES}]",
                self.segment_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return bad("index-interval-bytes must be at least 1".into());
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d.is_zero() {
                return bad("fsync interval must be at least 1 ms".into());
            }
        }
        if self.checkpoint_interval.is_zero() {
            return bad("checkpoint-interval must be at least 1 ms".into());
        }
        if self.segment_max_age.is_zero() {
            return bad("segment-max-age must be at least 1 ms".into());
        }
        if let Some(max) = self.max_disk_bytes {
            if max < 2 * self.segment_bytes {
                return bad(format!(
                    "max-disk-bytes {max} must hold at least two segments of {} bytes",
                    self.segment_bytes
                ));
            }
        }
        if let Some(max) = self.max_pinned_bytes {
            if max < self.segment_bytes {
                return bad(format!(
                    "max-pinned-bytes {max} must hold at least one segment of {} bytes",
                    self.segment_bytes
                ));
            }
        }
        Ok(())
    }

    /// The largest batch a segment can take, header included.
    pub fn max_batch_bytes(&self) -> u64 {
        self.segment_bytes - SEGMENT_HEADER_LEN as u64
    }

    /// The largest payload a single record can carry.
    pub fn max_payload_bytes(&self) -> u64 {
        self.max_batch_bytes() - (BATCH_HEADER_LEN + RECORD_HEADER_LEN) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_policies() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!(
            "interval:5".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(5))
        );
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert_eq!(
            "tolerate-any-corruption".parse::<RecoveryMode>().unwrap(),
            RecoveryMode::TolerateAnyCorruption
        );
    }

    #[test]
    fn validate_names_the_setting() {
        let c = Config {
            segment_bytes: 10,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("segment-bytes"), "{e}");
        let c = Config {
            max_disk_bytes: Some(1),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max-disk-bytes"));
        Config::default().validate().unwrap();
    }
}
