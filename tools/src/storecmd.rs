//! `edgepipe store`: offline checks of a node's data directory. Read-only,
//! so safe beside a running node.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::Outcome;

/// The `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Check a whole data directory: the store's checkpoints, every chunk
    /// file byte for byte (index, data checksums, order), and the change
    /// log (as `wal verify`). Exit 1 naming each damaged file (and series)
    /// when something is damaged.
    Verify(VerifyArgs),
}

/// Arguments of `store verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The node's data directory (`data_dir`: it holds `store/` and
    /// `wal/`).
    pub data_dir: PathBuf,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn execute(cmd: StoreCmd, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match cmd {
        StoreCmd::Verify(a) => verify(&a, out),
    }
}

fn verify(a: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let store_dir = a.data_dir.join("store");
    let wal_dir = a.data_dir.join("wal");
    if !store_dir.is_dir() && !wal_dir.is_dir() {
        anyhow::bail!(
            "{}: neither store/ nor wal/ here; is this a node's data directory?",
            a.data_dir.display()
        );
    }
    let store = if store_dir.is_dir() {
        Some(
            node::store::verify::verify(&store_dir)
                .with_context(|| format!("cannot verify {}", store_dir.display()))?,
        )
    } else {
        None
    };
    let log = if wal_dir.is_dir() {
        Some(
            wal::debug::verify(&wal_dir)
                .with_context(|| format!("cannot verify {}", wal_dir.display()))?,
        )
    } else {
        None
    };
    let store_problems = store.as_ref().map_or(0, |s| s.problems.len());
    let log_problems = log.as_ref().map_or(0, |l| l.problems.len());
    if a.json {
        let v = json!({
            "ok": store_problems + log_problems == 0,
            "store": store.as_ref().map(|s| json!({
                "applied_offset": s.applied_offset,
                "files": s.files,
                "chunks": s.chunks,
                "problems": s.problems.iter().map(|p| json!({"path": p.path, "series": p.series, "reason": p.reason})).collect::<Vec<_>>(),
                "notes": s.notes,
            })),
            "wal": log.as_ref().map(|l| json!({
                "segments": l.segments,
                "records": l.records,
                "problems": l.problems.iter().map(|p| json!({"path": p.path, "offset": p.offset, "position": p.position, "reason": p.reason})).collect::<Vec<_>>(),
            })),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        match &store {
            Some(s) => {
                writeln!(
                    out,
                    "store: checked {} chunk file(s), {} series chunk(s); checkpoint at change-log offset {}",
                    s.files,
                    s.chunks,
                    s.applied_offset
                        .map_or_else(|| "- (no checkpoint yet)".to_string(), |o| o.to_string())
                )?;
                for p in &s.problems {
                    match &p.series {
                        Some(series) => writeln!(
                            out,
                            "DAMAGED: {} (series {series}): {}",
                            p.path.display(),
                            p.reason
                        )?,
                        None => writeln!(out, "DAMAGED: {}: {}", p.path.display(), p.reason)?,
                    }
                }
                for n in &s.notes {
                    writeln!(out, "note: {n}")?;
                }
            }
            None => writeln!(out, "store: none yet")?,
        }
        match &log {
            Some(l) => {
                writeln!(
                    out,
                    "change log: checked {} segment(s), {} intact record(s)",
                    l.segments, l.records
                )?;
                for p in &l.problems {
                    writeln!(
                        out,
                        "DAMAGED: {} at offset {}, byte {}: {}",
                        p.path.display(),
                        p.offset,
                        p.position,
                        p.reason
                    )?;
                }
            }
            None => writeln!(out, "change log: none yet")?,
        }
        if store_problems + log_problems == 0 {
            writeln!(out, "ok: every checkpoint, chunk and record is intact")?;
        } else {
            writeln!(
                out,
                "{} problem(s): restore the damaged files from a backup; see the README's table of damage and what a start does with it",
                store_problems + log_problems
            )?;
        }
    }
    Ok(if store_problems + log_problems == 0 {
        Outcome::Ok
    } else {
        Outcome::ProblemFound
    })
}
