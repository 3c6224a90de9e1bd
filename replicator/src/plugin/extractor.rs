//! `iotdb-extractor`: turns change-log records into pipe events.

use std::collections::BTreeMap;

use bytes::Bytes;

use protocol::event::{self, Event, SchemaOp, KIND_DELETE, KIND_SCHEMA, KIND_TABLET};
use protocol::tablet::{Column, Tablet};

use super::{check_keys, parse_bool, PipeEvent};
use crate::deletions::DeletionView;

/// Parses a history bound: an ISO datetime (`2011-12-03T10:15:30`,
/// `2011-12-03T10:15:30+01:00`, also `2011.12.03T...` as the seed writes
/// it) or an integer in the node's precision.
fn parse_time(key: &str, v: &str, precision_per_sec: i64) -> Result<i64, String> {
    if let Ok(n) = v.trim().parse::<i64>() {
        return Ok(n);
    }
    let norm: String = {
        let (date, rest) = v
            .trim()
            .split_at(v.trim().find(['T', ' ']).unwrap_or(v.trim().len()));
        format!(
            "{}{}",
            date.replace(['.', '/'], "-"),
            rest.replacen(' ', "T", 1)
        )
    };
    let to_units = |secs: i64, nanos: u32| {
        secs * precision_per_sec + i64::from(nanos) * precision_per_sec / 1_000_000_000
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&norm) {
        return Ok(to_units(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d"] {
        let parsed = if f == "%Y-%m-%d" {
            chrono::NaiveDate::parse_from_str(&norm, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        } else {
            chrono::NaiveDateTime::parse_from_str(&norm, f).ok()
        };
        if let Some(n) = parsed {
            use chrono::TimeZone;
            if let Some(t) = chrono::Local.from_local_datetime(&n).earliest() {
                return Ok(to_units(t.timestamp(), t.timestamp_subsec_nanos()));
            }
        }
    }
    Err(format!(
        "'{key}'='{v}': not an ISO time (e.g. 2011-12-03T10:15:30+01:00) or an integer"
    ))
}

/// `iotdb-extractor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Extractor {
    /// Path prefix (a plain string prefix of the full series path).
    pub pattern: String,
    /// Whether history (arrived before the pipe was created) is extracted.
    pub history: bool,
    /// Whether realtime data is extracted.
    pub realtime: bool,
    /// Inclusive event-time bounds of history.
    pub start: i64,
    /// See `start`.
    pub end: i64,
    /// Whether deletions (delete database included) are handed on as
    /// events: false for a sync-tool pipe with `SyncDelOp=false`. Not an
    /// attribute; set from the pipe's definition.
    pub deletions: bool,
    /// `extractor.forwarding-pipe-requests` (IoTDB 1.2's key, default
    /// true): whether what arrived through a pipe (records marked
    /// [`event::FROM_PIPE`]) is extracted too. False lets two nodes
    /// replicate to each other (A→B beside B→A) without sending each
    /// other's data back.
    pub forwarding: bool,
}

impl Extractor {
    /// Validates `attrs` and fills in the defaults.
    ///
    /// # Errors
    /// The first bad key or value, named.
    pub fn configure(
        attrs: &mut BTreeMap<String, String>,
        precision_per_sec: i64,
    ) -> Result<Extractor, String> {
        let name = attrs
            .entry("extractor".into())
            .or_insert_with(|| "iotdb-extractor".into())
            .to_ascii_lowercase();
        if name != "iotdb-extractor" {
            return Err(format!(
                "unknown extractor plugin '{name}'; the built-in one is iotdb-extractor"
            ));
        }
        check_keys(
            "extractor",
            attrs,
            &[
                "extractor",
                "extractor.pattern",
                "extractor.history.enable",
                "extractor.history.start-time",
                "extractor.history.end-time",
                "extractor.realtime.enable",
                "extractor.realtime.mode",
                "extractor.forwarding-pipe-requests",
            ],
        )?;
        let pattern = attrs
            .get("extractor.pattern")
            .cloned()
            .unwrap_or_else(|| "root".into());
        if !(pattern == "root" || pattern.starts_with("root.")) {
            return Err(format!(
                "'extractor.pattern'='{pattern}': a pattern is a path prefix starting with root"
            ));
        }
        let history = parse_bool(attrs, "extractor.history.enable", true)?;
        let realtime = parse_bool(attrs, "extractor.realtime.enable", true)?;
        let forwarding = parse_bool(attrs, "extractor.forwarding-pipe-requests", true)?;
        if !history && !realtime {
            return Err("'extractor.history.enable' and 'extractor.realtime.enable' are both false: the pipe would extract nothing".into());
        }
        if let Some(m) = attrs.get("extractor.realtime.mode") {
            if !["hybrid", "file", "log", "forced-log"].contains(&m.as_str()) {
                return Err(format!(
                    "'extractor.realtime.mode'='{m}': expected hybrid, file, log or forced-log"
                ));
            }
        }
        let start = match attrs.get("extractor.history.start-time") {
            Some(v) => parse_time("extractor.history.start-time", v, precision_per_sec)?,
            None => i64::MIN,
        };
        let end = match attrs.get("extractor.history.end-time") {
            Some(v) => parse_time("extractor.history.end-time", v, precision_per_sec)?,
            None => i64::MAX,
        };
        if start > end {
            return Err(format!("'extractor.history.start-time' is after 'extractor.history.end-time' ({start} > {end})"));
        }
        Ok(Extractor {
            pattern,
            history,
            realtime,
            start,
            end,
            deletions: true,
            forwarding,
        })
    }

    /// Turns the change-log record at `offset` into an event for the pipe,
    /// or nothing (filtered out, arrived through a pipe while forwarding is
    /// off, or a schema change other than delete database: DDL is not
    /// synced). A tablet loses the points that a
    /// deletion in `deletions` (the deletions the log held when the record
    /// was read) logged after it removed. A delete database is the deletion
    /// of `db.**` over all time.
    ///
    /// # Errors
    /// A record that does not decode.
    pub fn extract(
        &self,
        offset: u64,
        kind: u8,
        payload: Bytes,
        is_history: bool,
        deletions: &DeletionView,
    ) -> Result<Option<PipeEvent>, String> {
        if !self.forwarding && event::from_pipe(kind) {
            return Ok(None);
        }
        match event::base_kind(kind) {
            KIND_TABLET => {
                let bounded = is_history && (self.start != i64::MIN || self.end != i64::MAX);
                let mut device = None;
                let whole = self.pattern == "root" || {
                    let d = device_of(&payload)?;
                    if !d.starts_with(&self.pattern) && !self.pattern.starts_with(&d) {
                        return Ok(None);
                    }
                    let whole = d.starts_with(&self.pattern);
                    device = Some(d);
                    whole
                };
                let deleted = deletions.may_apply_to(offset, || match &device {
                    Some(d) => Ok(d.clone()),
                    None => device_of(&payload),
                })?;
                if whole && !bounded && !deleted {
                    // The fast path: ship the stored bytes as they are.
                    return Ok(Some(PipeEvent::Tablet(payload)));
                }
                let t = Tablet::deserialize_v12(&payload)?;
                let t = match self.filter(t, bounded) {
                    Some(t) if deleted => deletions.apply(offset, t),
                    other => other,
                };
                Ok(t.map(|t| PipeEvent::Tablet(t.serialize_v12().into())))
            }
            KIND_DELETE | KIND_SCHEMA if self.deletions => {
                let (patterns, min, max) = match Event::decode(kind, &payload)? {
                    Event::Delete { patterns, min, max } => (patterns, min, max),
                    Event::Schema(SchemaOp::DeleteDatabase(db)) => {
                        (vec![format!("{db}.**")], i64::MIN, i64::MAX)
                    }
                    _ => return Ok(None),
                };
                let keep = self.pattern == "root"
                    || patterns.iter().any(|p| {
                        p.starts_with(&self.pattern)
                            || self.pattern.starts_with(p.trim_end_matches(".**"))
                    });
                Ok(keep.then_some(PipeEvent::Delete { patterns, min, max }))
            }
            _ => Ok(None),
        }
    }

    /// Keeps the columns under the pattern and, for bounded history, the
    /// rows in the time range.
    fn filter(&self, t: Tablet, bounded: bool) -> Option<Tablet> {
        let cols: Vec<usize> = (0..t.columns.len())
            .filter(|&c| format!("{}.{}", t.device, t.measurements[c]).starts_with(&self.pattern))
            .collect();
        let rows: Vec<usize> = (0..t.rows())
            .filter(|&r| !bounded || (self.start <= t.times[r] && t.times[r] <= self.end))
            .collect();
        if cols.is_empty() || rows.is_empty() {
            return None;
        }
        let pick = |c: &Column| {
            let mut out = Column::with_capacity(c.data_type(), rows.len());
            for &r in &rows {
                out.push(c.get(r));
            }
            out
        };
        Some(Tablet {
            device: t.device.clone(),
            measurements: cols.iter().map(|&c| t.measurements[c].clone()).collect(),
            columns: cols.iter().map(|&c| pick(&t.columns[c])).collect(),
            nulls: cols
                .iter()
                .map(|&c| {
                    t.nulls[c]
                        .as_ref()
                        .map(|n| rows.iter().map(|&r| n[r]).collect())
                })
                .collect(),
            times: rows.iter().map(|&r| t.times[r]).collect(),
            aligned: t.aligned,
        })
    }
}

/// The device string at the start of a serialized tablet.
fn device_of(payload: &[u8]) -> Result<String, String> {
    let n = payload
        .get(..4)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4")))
        .ok_or("tablet record too short")?;
    if n < 0 || 4 + n as usize > payload.len() {
        return Err(format!("tablet record: device length {n} does not fit"));
    }
    String::from_utf8(payload[4..4 + n as usize].to_vec())
        .map_err(|_| "tablet device is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::event::FROM_PIPE;

    fn extractor(attrs: &[(&str, &str)]) -> Result<Extractor, String> {
        let mut a: BTreeMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Extractor::configure(&mut a, 1000)
    }

    /// `extractor.forwarding-pipe-requests`: true (the default) extracts
    /// what arrived through a pipe as any record (a tablet's bytes as
    /// stored); false leaves every marked record out and nothing else.
    #[test]
    fn forwarding_pipe_requests() {
        let t = Tablet {
            device: "root.sg.d".into(),
            measurements: vec!["s".into()],
            columns: vec![Column::Int64(vec![7])],
            nulls: vec![None],
            times: vec![1],
            aligned: false,
        };
        let tablet = Bytes::from(t.serialize_v12());
        let (dk, delete) = Event::Delete {
            patterns: vec!["root.sg.**".into()],
            min: 0,
            max: 9,
        }
        .encode();
        let (sk, drop_db) = Event::Schema(SchemaOp::DeleteDatabase("root.sg".into())).encode();
        let records = [
            (KIND_TABLET, tablet.clone()),
            (dk, Bytes::from(delete)),
            (sk, Bytes::from(drop_db)),
        ];
        let none = DeletionView::of(vec![]);
        let on = extractor(&[]).unwrap();
        assert!(on.forwarding, "IoTDB's default");
        let off = extractor(&[("extractor.forwarding-pipe-requests", "false")]).unwrap();
        let patterned = extractor(&[
            ("extractor.forwarding-pipe-requests", "FALSE"),
            ("extractor.pattern", "root.sg.d.s"),
        ])
        .unwrap();
        for (kind, payload) in records {
            for e in [&on, &off, &patterned] {
                let local = e.extract(1, kind, payload.clone(), false, &none).unwrap();
                assert!(local.is_some(), "a local record of kind {kind}");
                let received = e
                    .extract(1, kind | FROM_PIPE, payload.clone(), false, &none)
                    .unwrap();
                if e.forwarding {
                    assert_eq!(received, local, "forwarded as a local one");
                } else {
                    assert_eq!(received, None, "kind {kind} received: not sent on");
                }
            }
        }
        // The fast path: a received tablet forwarded is the bytes stored.
        match on
            .extract(1, KIND_TABLET | FROM_PIPE, tablet.clone(), true, &none)
            .unwrap()
        {
            Some(PipeEvent::Tablet(b)) => {
                assert_eq!(b, tablet);
                assert_eq!(b.as_ptr(), tablet.as_ptr(), "not copied");
            }
            other => panic!("{other:?}"),
        }
        let e = extractor(&[("extractor.forwarding-pipe-requests", "sometimes")]).unwrap_err();
        assert!(
            e.contains("'extractor.forwarding-pipe-requests'='sometimes': expected true or false"),
            "{e}"
        );
    }
}
