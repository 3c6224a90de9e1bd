//! The one error type of the change log.

use std::path::PathBuf;

/// What went wrong in the change log.
///
/// Messages follow `path: what failed: cause` and name the segment, offset
/// and byte position where one is known. Callers classify errors with
/// [`Error::is_corruption`], [`Error::is_retryable`] and
/// [`Error::error_code`], never by matching message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed on `path`. Usually retryable after
    /// the cause (disk full, permissions) is fixed.
    #[error("{}: {op}: {cause}", path.display())]
    Io {
        /// The file or directory the call touched.
        path: PathBuf,
        /// The operation that failed (`open`, `fsync`, `mmap`, ...).
        op: &'static str,
        /// The operating system's error. It is part of the message, so it
        /// is not also exposed as `source()`: a printed chain would repeat it.
        cause: std::io::Error,
    },
    /// Bytes on disk fail their checksum or structural checks. The records
    /// before `offset` are intact; the caller should stop reading there and
    /// run `edgepipe wal verify` or reopen with a more tolerant
    /// [`RecoveryMode`](crate::RecoveryMode).
    #[error("{}: corrupt at offset {offset}, byte {position}: {reason}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// The first log offset that could not be read intact.
        offset: u64,
        /// The byte position of the damage inside `path`.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// The caller passed something the log cannot accept (a record larger
    /// than a segment, an empty batch, a bad configuration value). Fix the
    /// argument; retrying unchanged fails again.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A read asked for an offset that is not in the log: below the log start
    /// (deleted by retention) or above the log end.
    #[error("offset {offset} is out of range: the log holds [{log_start}, {log_end})")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: u64,
        /// The first offset still in the log.
        log_start: u64,
        /// The next offset to be written.
        log_end: u64,
    },
    /// Another process holds the writer lock on this log directory.
    #[error("{}: the log is locked by another writer ({holder}); stop it or open read-only", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder (pid and start time).
        holder: String,
    },
    /// A segment was written by another format version of edgepipe. The
    /// log is left untouched; open it with the version that wrote it.
    #[error("{}: unsupported format: {reason}", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The log was closed (or opened read-only) and cannot take this call.
    #[error("the log is {0}")]
    Closed(&'static str),
}

impl Error {
    /// True when bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// True when the same call may succeed later without a change by the
    /// caller (a transient I/O failure, a full log that consumers drain).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { cause, .. } => !matches!(
                cause.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
            ),
            Error::Locked { .. } => true,
            _ => false,
        }
    }

    /// True when the disk (or the user's quota) is full: the call may
    /// succeed once space is freed. Callers report it as such (IoTDB's
    /// `DISK_SPACE_INSUFFICIENT`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { cause, .. } if is_disk_full(cause))
    }

    /// A stable short code for metrics and scripts.
    pub fn error_code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Corruption { .. } => "corruption",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::OffsetOutOfRange { .. } => "offset_out_of_range",
            Error::Locked { .. } => "locked",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::Closed(_) => "closed",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            cause,
        }
    }
}

/// True for the I/O errors of a full disk or quota (`ENOSPC`, `EDQUOT`).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// The change log's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifiers() {
        let c = Error::Corruption {
            path: "a".into(),
            offset: 3,
            position: 7,
            reason: "crc".into(),
        };
        assert!(c.is_corruption());
        assert!(!c.is_retryable());
        assert_eq!(c.to_string(), "a: corrupt at offset 3, byte 7: crc");
        let io = Error::io("b", "fsync", std::io::Error::other("x"));
        assert!(io.is_retryable());
        assert_eq!(io.error_code(), "io");
        assert!(!Error::InvalidArgument("x".into()).is_retryable());
    }
}
