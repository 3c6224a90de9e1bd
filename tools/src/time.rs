//! Arrival times: µs since the Unix epoch in the log, ISO 8601 for people.

use anyhow::{bail, Context};
use chrono::{DateTime, Local, NaiveDateTime, TimeZone};

/// Parses an ISO 8601 time: with an offset (`2024-05-01T08:00:00+08:00`,
/// `...Z`), or without one in the local time zone, as IoTDB reads it
/// (`2024-05-01T08:00:00`, `2024-05-01 08:00:00.250`). Returns µs since the
/// epoch.
pub(crate) fn parse_iso(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d",
    ] {
        let parsed = if fmt == "%Y-%m-%d" {
            chrono::NaiveDate::parse_from_str(s, fmt)
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        } else {
            NaiveDateTime::parse_from_str(s, fmt)
        };
        if let Ok(naive) = parsed {
            let local = Local
                .from_local_datetime(&naive)
                .earliest()
                .with_context(|| format!("{s:?} does not exist in the local time zone"))?;
            return Ok(local.timestamp_micros());
        }
    }
    bail!("{s:?} is not an ISO 8601 time; write e.g. 2024-05-01T08:00:00+08:00, 2024-05-01T08:00:00Z or 2024-05-01 08:00:00")
}

/// Formats µs since the epoch as local ISO 8601 with milliseconds.
pub(crate) fn format_iso(us: i64) -> String {
    match Local.timestamp_micros(us).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        None => format!("@{us}µs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_with_offsets() {
        assert_eq!(parse_iso("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        assert_eq!(parse_iso("1970-01-01T08:00:01.5+08:00").unwrap(), 1_500_000);
        assert!(parse_iso("yesterday")
            .unwrap_err()
            .to_string()
            .contains("not an ISO 8601 time"));
        let t = parse_iso("2024-05-01 08:00:00").unwrap();
        assert_eq!(parse_iso("2024-05-01T08:00:00").unwrap(), t);
        assert_eq!(parse_iso(&format_iso(t)).unwrap(), t);
    }
}
