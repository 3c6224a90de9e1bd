//! The one error type of the TsFile reader: what is wrong, and where (file
//! offset, device, series).

use std::fmt;

/// What kind of problem stopped the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading the file failed (the operating system said so). Retrying may
    /// help; the file itself may be fine.
    Io,
    /// The bytes are not a well-formed TsFile: damaged, truncated or not a
    /// TsFile at all. Nothing of such a file should be applied; the sender
    /// has to send it again.
    Corrupt,
    /// A well-formed file uses something this reader does not decode (an
    /// encoding, a compression, a data type, a format version, encryption),
    /// or exceeds one of the reader's [`Limits`](super::Limits).
    Unsupported,
}

/// A TsFile that could not be read, with the place of the problem.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    offset: Option<u64>,
    device: Option<String>,
    series: Option<String>,
    reason: String,
    source: Option<std::io::Error>,
}

impl Error {
    /// A damaged or malformed file, at `offset`.
    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Corrupt,
            offset: Some(offset),
            device: None,
            series: None,
            reason: reason.into(),
            source: None,
        }
    }

    /// Something this reader does not decode, at `offset`.
    pub(crate) fn unsupported(offset: u64, reason: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Unsupported,
            ..Error::corrupt(offset, reason)
        }
    }

    /// A failed read of `len` bytes at `offset`.
    pub(crate) fn io(offset: u64, len: usize, e: std::io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            offset: Some(offset),
            device: None,
            series: None,
            reason: format!("cannot read {len} bytes"),
            source: Some(e),
        }
    }

    /// Moves the error to `offset`, prefixing its reason.
    pub(crate) fn rebase(mut self, offset: u64, prefix: &str) -> Error {
        self.offset = Some(offset);
        if !prefix.is_empty() {
            self.reason = format!("{prefix}{}", self.reason);
        }
        self
    }

    /// Names the device, unless a device is named already.
    pub(crate) fn in_device(mut self, device: &str) -> Error {
        if self.device.is_none() {
            self.device = Some(device.to_string());
        }
        self
    }

    /// Names the series, unless a series is named already.
    pub(crate) fn in_series(mut self, series: &str) -> Error {
        if self.series.is_none() {
            self.series = Some(series.to_string());
        }
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the file is damaged or malformed (as opposed to unreadable
    /// or using an unsupported feature).
    pub fn is_corruption(&self) -> bool {
        self.kind == ErrorKind::Corrupt
    }

    /// Whether the file uses something this reader does not support.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ErrorKind::Unsupported
    }

    /// The file offset of the problem, when known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The device the problem is in, when known.
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// The series (measurement) the problem is in, when known.
    pub fn series(&self) -> Option<&str> {
        self.series.as_deref()
    }

    /// What is wrong, without the place.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// A short stable name of the kind, for metrics and status messages.
    pub fn error_code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Io => "tsfile_io",
            ErrorKind::Corrupt => "tsfile_corrupt",
            ErrorKind::Unsupported => "tsfile_unsupported",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Io => f.write_str("cannot read the tsfile")?,
            ErrorKind::Corrupt => f.write_str("damaged tsfile")?,
            ErrorKind::Unsupported => f.write_str("unsupported tsfile")?,
        }
        if let Some(o) = self.offset {
            write!(f, " at byte {o}")?;
        }
        match (&self.device, &self.series) {
            (Some(d), Some(s)) => write!(f, " (device {d}, series {s:?})")?,
            (Some(d), None) => write!(f, " (device {d})")?,
            (None, Some(s)) => write!(f, " (series {s:?})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.reason)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The reader's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_place() {
        let e = Error::corrupt(86, "page runs past the chunk end")
            .in_series("s2")
            .in_device("root.sg.d1")
            .in_device("other");
        assert_eq!(
            e.to_string(),
            "damaged tsfile at byte 86 (device root.sg.d1, series \"s2\"): page runs past the chunk end"
        );
        assert!(e.is_corruption());
        assert_eq!(e.error_code(), "tsfile_corrupt");
        let u = Error::unsupported(7, "unsupported encoding SPRINTZ");
        assert_eq!(
            u.to_string(),
            "unsupported tsfile at byte 7: unsupported encoding SPRINTZ"
        );
    }
}
