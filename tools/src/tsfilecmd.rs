//! `edgepipe tsfile`: offline inspection of a TsFile (IoTDB 1.x format
//! version 3, Apache TsFile 2.x version 4) with the reader the receiver
//! loads files with. Read-only.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use protocol::tsfile::{ChunkKind, Error, TsFile, TsType, Version};
use protocol::types::Value;
use serde_json::json;

use crate::table::Table;
use crate::Outcome;

/// The `tsfile` subcommands.
#[derive(Debug, Subcommand)]
pub enum TsFileCmd {
    /// Check the whole file (every page decoded, the index matched against
    /// the data), then print its version, devices, series (type, encoding,
    /// compression, chunks, points, time range) and points. Exit 1 with
    /// the byte, device and series of the first problem when the file is
    /// damaged; nothing of a damaged file's values is printed.
    Dump(DumpArgs),
}

/// Arguments of `tsfile dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The .tsfile.
    pub file: PathBuf,
    /// Print at most this many points (0: only the summary and series).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Print JSON for scripts, one object a line: the file, then each
    /// series, then each point (`"kind"` tells which), or a problem.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn execute(cmd: TsFileCmd, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match cmd {
        TsFileCmd::Dump(a) => dump(&a, out),
    }
}

/// A series row of the summary.
struct SeriesRow {
    device: String,
    measurement: String,
    data_type: TsType,
    encoding: String,
    compression: String,
    aligned: bool,
    chunks: usize,
    points: u64,
    start: i64,
    end: i64,
}

fn version_text(v: Version) -> &'static str {
    match v {
        Version::V3 => "3 (IoTDB 1.x)",
        Version::V4 => "4 (Apache TsFile 2.x)",
    }
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Boolean(b) => json!(b),
        Value::Int32(x) => json!(x),
        Value::Int64(x) => json!(x),
        Value::Float(x) if x.is_finite() => json!(x),
        Value::Double(x) if x.is_finite() => json!(x),
        Value::Float(x) => json!(x.to_string()),
        Value::Double(x) => json!(x.to_string()),
        Value::Text(t) => json!(String::from_utf8_lossy(t)),
    }
}

/// Reports damage (exit 1) or gives up (exit 2) for anything else.
fn problem(
    e: Error,
    file: &std::path::Path,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    if !e.is_corruption() {
        return Err(anyhow::Error::new(e).context(format!("cannot read {}", file.display())));
    }
    if json {
        writeln!(
            out,
            "{}",
            json!({
                "kind": "problem",
                "file": file,
                "offset": e.offset(),
                "device": e.device(),
                "series": e.series(),
                "reason": e.reason(),
                "message": e.to_string(),
            })
        )?;
    } else {
        writeln!(out, "DAMAGED: {}: {e}", file.display())?;
    }
    Ok(Outcome::ProblemFound)
}

fn dump(a: &DumpArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let f = std::fs::File::open(&a.file)
        .with_context(|| format!("cannot open {}", a.file.display()))?;
    let file = match TsFile::new(f) {
        Ok(t) => t,
        Err(e) => return problem(e, &a.file, a.json, out),
    };
    let summary = match file.validate() {
        Ok(s) => s,
        Err(e) => return problem(e, &a.file, a.json, out),
    };
    // The series, from the index (encoding and compression from each
    // series' first chunk header).
    let mut rows = Vec::new();
    let mut series_of = || -> Result<(), Error> {
        for d in file.devices()? {
            let path = d.id.path();
            let series = file.series(&d)?;
            let aligned = series.iter().any(|s| s.data_type == TsType::Vector);
            for s in series {
                if s.data_type == TsType::Vector {
                    continue;
                }
                let h = file.chunk_header(s.chunks[0].offset)?;
                rows.push(SeriesRow {
                    device: path.clone(),
                    measurement: s.measurement.clone(),
                    data_type: s.data_type,
                    encoding: h.encoding.name().to_string(),
                    compression: h.compression.name().to_string(),
                    aligned: aligned || h.kind() == ChunkKind::AlignedValue,
                    chunks: s.chunks.len(),
                    points: s.statistics.count,
                    start: s.statistics.start,
                    end: s.statistics.end,
                });
            }
        }
        Ok(())
    };
    if let Err(e) = series_of() {
        return problem(e, &a.file, a.json, out);
    }
    let limit = a.limit.unwrap_or(u64::MAX);
    if a.json {
        writeln!(
            out,
            "{}",
            json!({
                "kind": "file",
                "file": a.file,
                "version": file.version().byte(),
                "bytes": file.len(),
                "devices": summary.devices,
                "series": summary.series,
                "chunks": summary.chunks,
                "pages": summary.pages,
                "rows": summary.rows,
                "points": summary.points,
                "start_time": summary.time_range.map(|r| r.0),
                "end_time": summary.time_range.map(|r| r.1),
            })
        )?;
        for r in &rows {
            writeln!(
                out,
                "{}",
                json!({
                    "kind": "series",
                    "device": r.device,
                    "measurement": r.measurement,
                    "type": r.data_type.name(),
                    "encoding": r.encoding,
                    "compression": r.compression,
                    "aligned": r.aligned,
                    "chunks": r.chunks,
                    "points": r.points,
                    "start_time": r.start,
                    "end_time": r.end,
                })
            )?;
        }
    } else {
        writeln!(out, "file:       {}", a.file.display())?;
        writeln!(out, "version:    {}", version_text(file.version()))?;
        writeln!(out, "bytes:      {}", file.len())?;
        writeln!(
            out,
            "contents:   {} device(s), {} series, {} chunk(s), {} page(s), {} row(s), {} point(s)",
            summary.devices,
            summary.series,
            summary.chunks,
            summary.pages,
            summary.rows,
            summary.points
        )?;
        match summary.time_range {
            Some((lo, hi)) => writeln!(out, "time range: {lo} .. {hi}")?,
            None => writeln!(out, "time range: -")?,
        }
        writeln!(
            out,
            "check:      ok (every page decoded, the index matches the data)"
        )?;
        let mut t = Table::new(&[
            "Device",
            "Measurement",
            "Type",
            "Encoding",
            "Compression",
            "Aligned",
            "Chunks",
            "Points",
            "StartTime",
            "EndTime",
        ]);
        for r in &rows {
            t.row(vec![
                r.device.clone(),
                r.measurement.clone(),
                r.data_type.name().to_string(),
                r.encoding.clone(),
                r.compression.clone(),
                r.aligned.to_string(),
                r.chunks.to_string(),
                r.points.to_string(),
                r.start.to_string(),
                r.end.to_string(),
            ]);
        }
        t.write(out)?;
        writeln!(out, "Total series = {}", rows.len())?;
    }
    if limit == 0 {
        return Ok(Outcome::Ok);
    }
    // The points, streamed page by page.
    if !a.json {
        writeln!(out, "Device\tMeasurement\tTime\tValue")?;
    }
    let mut n = 0u64;
    'pages: for b in file.batches() {
        let b = match b {
            Ok(b) => b,
            // validate() passed, so this is the file changing under us.
            Err(e) => return problem(e, &a.file, a.json, out),
        };
        let device = b.device.path();
        for c in &b.columns {
            for (r, &t) in b.times.iter().enumerate() {
                if c.nulls.as_ref().is_some_and(|x| x[r]) {
                    continue;
                }
                if n >= limit {
                    break 'pages;
                }
                n += 1;
                let v = c.values.get(r);
                // BLOB values as hex, the way IoTDB prints them.
                let v = match (&v, c.data_type) {
                    (Value::Text(b), TsType::Blob) => Value::Text(
                        format!(
                            "0x{}",
                            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                        )
                        .into_bytes(),
                    ),
                    _ => v,
                };
                if a.json {
                    writeln!(
                        out,
                        "{}",
                        json!({"kind": "point", "device": device, "measurement": c.measurement, "time": t, "value": json_value(&v)})
                    )?;
                } else {
                    writeln!(out, "{device}\t{}\t{t}\t{v}", c.measurement)?;
                }
            }
        }
    }
    if !a.json {
        writeln!(out, "Total points printed = {n}")?;
    }
    Ok(Outcome::Ok)
}
