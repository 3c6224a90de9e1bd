//! `edgepipe wal`: offline inspection of a change log directory. Every
//! command here opens the log read-only and changes nothing, so each is safe
//! beside a running node.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::table::Table;
use crate::time::{format_iso, parse_iso};
use crate::Outcome;

/// The `wal` subcommands.
#[derive(Debug, Subcommand)]
pub enum WalCmd {
    /// Segments (base offset, records, record bytes, first and last arrival
    /// time), log start and end offsets, and the offset the log can vouch
    /// is durable: every record after a clean close, else the recovery
    /// point (durable as of the writer's last checkpoint).
    Info(Common),
    /// Print records from an offset or an arrival time on.
    Dump {
        #[command(flatten)]
        common: Common,
        /// First offset to print (default: the log start).
        #[arg(long, conflicts_with = "from_time")]
        from: Option<u64>,
        /// Start at the first record that arrived at or after this ISO 8601
        /// time (e.g. 2024-05-01T08:00:00+08:00; no offset = local time).
        #[arg(long)]
        from_time: Option<String>,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Check the CRC of every record and every index file; exit 1 with the
    /// first bad offset and byte position when something is damaged.
    Verify(Common),
    /// Each consumer (pipe): committed offset, and lag in records, bytes and
    /// seconds of arrival time.
    Offsets(Common),
    /// The offset of the first record that arrived at or after a time.
    Seek {
        #[command(flatten)]
        common: Common,
        /// An ISO 8601 time (e.g. 2024-05-01T08:00:00Z).
        #[arg(long)]
        time: String,
    },
}

/// Arguments every `wal` command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The log directory.
    pub dir: PathBuf,
    /// Print JSON for scripts instead of tables (`dump`: one object a line).
    #[arg(long)]
    pub json: bool,
}

fn open(dir: &std::path::Path) -> anyhow::Result<wal::Log> {
    wal::Log::open_read_only(dir)
        .with_context(|| format!("cannot open the log in {}", dir.display()))
}

fn opt_time(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_string(), format_iso)
}

#[derive(Serialize)]
struct SegmentJson {
    base_offset: u64,
    next_offset: u64,
    records: u64,
    record_bytes: u64,
    file_bytes: u64,
    first_arrival_us: Option<i64>,
    last_arrival_us: Option<i64>,
    sealed: bool,
}

pub(crate) fn execute(cmd: WalCmd, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match cmd {
        WalCmd::Info(c) => info(&c, out),
        WalCmd::Dump {
            common,
            from,
            from_time,
            limit,
        } => dump(&common, from, from_time.as_deref(), limit, out),
        WalCmd::Verify(c) => verify(&c, out),
        WalCmd::Offsets(c) => offsets(&c, out),
        WalCmd::Seek { common, time } => seek(&common, &time, out),
    }
}

fn info(c: &Common, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let log = open(&c.dir)?;
    let segs = log.segments();
    let durability = log.durability();
    let record_bytes: u64 = segs.iter().map(wal::SegmentInfo::record_bytes).sum();
    if c.json {
        let segments: Vec<SegmentJson> = segs
            .iter()
            .map(|s| SegmentJson {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                records: s.records(),
                record_bytes: s.record_bytes(),
                file_bytes: s.file_bytes,
                first_arrival_us: s.first_arrival_us,
                last_arrival_us: s.last_arrival_us,
                sealed: s.sealed,
            })
            .collect();
        let (durable_offset, recovery_point) = match durability {
            wal::Durability::RecoveryPoint(o) => (None, Some(o)),
            d => (Some(d.offset()), None),
        };
        let v = json!({
            "dir": c.dir,
            "log_start_offset": log.log_start(),
            "log_end_offset": log.end_offset(),
            "durable_offset": durable_offset,
            "recovery_point": recovery_point,
            "record_bytes": record_bytes,
            "disk_bytes": log.disk_bytes(),
            "consumers": log.consumers().len(),
            "segments": segments,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Outcome::Ok);
    }
    writeln!(out, "log directory:     {}", c.dir.display())?;
    writeln!(out, "log start offset:  {}", log.log_start())?;
    writeln!(out, "log end offset:    {}", log.end_offset())?;
    match durability {
        wal::Durability::RecoveryPoint(o) => writeln!(
            out,
            "recovery point:    {o} (durable as of the writer's last checkpoint; a running node may have made later records durable since)"
        )?,
        wal::Durability::ClosedCleanly(o) => writeln!(
            out,
            "durable offset:    {o} (closed cleanly: every record is durable)"
        )?,
        d => writeln!(out, "durable offset:    {}", d.offset())?,
    }
    writeln!(
        out,
        "records:           {}",
        log.end_offset() - log.log_start()
    )?;
    writeln!(out, "record bytes:      {record_bytes}")?;
    writeln!(out, "disk bytes:        {}", log.disk_bytes())?;
    writeln!(out, "consumers:         {}", log.consumers().len())?;
    let mut t = Table::new(&[
        "BaseOffset",
        "Records",
        "RecordBytes",
        "FileBytes",
        "FirstArrival",
        "LastArrival",
        "State",
    ]);
    for s in &segs {
        t.row(vec![
            s.base_offset.to_string(),
            s.records().to_string(),
            s.record_bytes().to_string(),
            s.file_bytes.to_string(),
            opt_time(s.first_arrival_us),
            opt_time(s.last_arrival_us),
            if s.sealed { "sealed" } else { "active" }.to_string(),
        ]);
    }
    t.write(out)?;
    writeln!(out, "Total segments = {}", segs.len())?;
    Ok(Outcome::Ok)
}

/// A payload shown to a person: text when it is printable UTF-8, hex
/// otherwise; long ones shortened.
fn preview(p: &[u8]) -> String {
    const MAX: usize = 48;
    match std::str::from_utf8(p) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => {
            let mut t: String = s.chars().take(MAX).collect();
            if s.chars().count() > MAX {
                t.push('…');
            }
            format!("{t:?}")
        }
        _ => {
            let mut t = hex(&p[..p.len().min(MAX / 2)]);
            if p.len() > MAX / 2 {
                t.push('…');
            }
            format!("0x{t}")
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dump(
    c: &Common,
    from: Option<u64>,
    from_time: Option<&str>,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let log = open(&c.dir)?;
    let start = match (from, from_time) {
        (Some(o), _) => o,
        (None, Some(t)) => log.offset_for_time(parse_iso(t)?)?,
        (None, None) => log.log_start(),
    };
    let mut reader = log
        .reader(start)
        .with_context(|| format!("cannot read from offset {start}"))?;
    let limit = limit.unwrap_or(u64::MAX);
    let mut t = Table::new(&["Offset", "Arrival", "Kind", "Bytes", "Payload"]);
    let mut n = 0u64;
    let mut stopped: Option<wal::Error> = None;
    'outer: while n < limit {
        let batch = match reader.try_next() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        };
        for r in batch.iter() {
            if n >= limit {
                break 'outer;
            }
            n += 1;
            if c.json {
                let v = json!({
                    "offset": r.offset,
                    "arrival_us": r.arrival_us,
                    "kind": r.kind,
                    "bytes": r.payload.len(),
                    "payload_hex": hex(r.payload),
                });
                writeln!(out, "{v}")?;
            } else {
                t.row(vec![
                    r.offset.to_string(),
                    format_iso(r.arrival_us),
                    r.kind.to_string(),
                    r.payload.len().to_string(),
                    preview(r.payload),
                ]);
            }
        }
    }
    if !c.json {
        t.write(out)?;
        writeln!(out, "Total line number = {n}")?;
    }
    match stopped {
        Some(e) => Err(anyhow::Error::new(e).context(format!("dump stopped after {n} records"))),
        None => Ok(Outcome::Ok),
    }
}

fn verify(c: &Common, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    if !c.dir.is_dir() {
        anyhow::bail!("{}: not a directory", c.dir.display());
    }
    let r =
        wal::debug::verify(&c.dir).with_context(|| format!("cannot verify {}", c.dir.display()))?;
    if r.segments == 0 {
        anyhow::bail!(
            "{}: no segment files (*.log) here; is this an edgepipe log directory?",
            c.dir.display()
        );
    }
    let first = r.problems.first();
    if c.json {
        let problems: Vec<_> = r
            .problems
            .iter()
            .map(|p| json!({"path": p.path, "offset": p.offset, "position": p.position, "reason": p.reason}))
            .collect();
        let v = json!({
            "ok": first.is_none(),
            "segments": r.segments,
            "records": r.records,
            "record_bytes": r.record_bytes,
            "problems": problems,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(
            out,
            "checked {} segment(s), {} intact record(s), {} record bytes",
            r.segments, r.records, r.record_bytes
        )?;
        match first {
            None => writeln!(out, "ok: every record and index is intact")?,
            Some(p) => {
                writeln!(
                    out,
                    "DAMAGED: first bad offset {} at byte {} of {}: {}",
                    p.offset,
                    p.position,
                    p.path.display(),
                    p.reason
                )?;
                for p in &r.problems[1..] {
                    writeln!(
                        out,
                        "also: offset {} at byte {} of {}: {}",
                        p.offset,
                        p.position,
                        p.path.display(),
                        p.reason
                    )?;
                }
                writeln!(
                    out,
                    "a node opening this log keeps the records before offset {}; see the recovery modes in the README",
                    p.offset
                )?;
            }
        }
    }
    Ok(if first.is_none() {
        Outcome::Ok
    } else {
        Outcome::ProblemFound
    })
}

fn offsets(c: &Common, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let log = open(&c.dir)?;
    let consumers = log.consumers();
    let mut rows = Vec::new();
    for ci in &consumers {
        let lag = log
            .lag(ci.state.committed)
            .with_context(|| format!("consumer {:?} at offset {}", ci.name, ci.state.committed))?;
        rows.push((ci, lag));
    }
    if c.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(ci, lag)| {
                json!({
                    "consumer": ci.name,
                    "committed_offset": ci.state.committed,
                    "lag_records": lag.records,
                    "lag_bytes": lag.bytes,
                    "lag_seconds": lag.arrival_us as f64 / 1e6,
                    "lost": ci.state.lost.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = json!({"log_start_offset": log.log_start(), "log_end_offset": log.end_offset(), "consumers": v});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Outcome::Ok);
    }
    let mut t = Table::new(&[
        "Consumer",
        "CommittedOffset",
        "LagRecords",
        "LagBytes",
        "LagSeconds",
        "Lost",
    ]);
    for (ci, lag) in &rows {
        let lost = ci.state.lost_text();
        t.row(vec![
            ci.name.clone(),
            ci.state.committed.to_string(),
            lag.records.to_string(),
            lag.bytes.to_string(),
            format!("{:.3}", lag.arrival_us as f64 / 1e6),
            lost,
        ]);
    }
    writeln!(
        out,
        "log start offset {}, log end offset {}",
        log.log_start(),
        log.end_offset()
    )?;
    t.write(out)?;
    writeln!(out, "Total line number = {}", rows.len())?;
    Ok(Outcome::Ok)
}

fn seek(c: &Common, time: &str, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let log = open(&c.dir)?;
    let t = parse_iso(time)?;
    let offset = log.offset_for_time(t)?;
    let at_end = offset == log.end_offset();
    if c.json {
        writeln!(
            out,
            "{}",
            json!({"time_us": t, "offset": offset, "at_end": at_end})
        )?;
    } else if at_end {
        writeln!(
            out,
            "{offset} (the log end: nothing arrived at or after {})",
            format_iso(t)
        )?;
    } else {
        writeln!(out, "{offset}")?;
    }
    Ok(Outcome::Ok)
}
