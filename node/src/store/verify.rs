//! The offline check of a store directory (`edgepipe store verify`):
//! both checkpoints, and every chunk file they list, byte for byte.

use std::path::{Path as FsPath, PathBuf};

use super::checkpoint::{decode_checkpoint, CHECKPOINT, PREVIOUS};
use crate::chunkfile;

/// One problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The damaged or missing file.
    pub path: PathBuf,
    /// The series whose data is damaged, when the damage is in one chunk.
    pub series: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// What [`verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The change-log offset the checkpoint in use has applied.
    pub applied_offset: Option<u64>,
    /// Chunk files checked.
    pub files: usize,
    /// Series chunks checked.
    pub chunks: usize,
    /// Problems found, in file order.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not damage (a quarantined file, one
    /// left by an unfinished flush, the previous checkpoint in use).
    pub notes: Vec<String>,
}

/// Checks the store directory `dir` (a node's `DATA/store`) completely:
/// the checkpoint and the previous one, and every chunk file the
/// checkpoint in use lists (index, data CRCs, order, text offsets).
/// Read-only; safe beside a running node.
///
/// # Errors
/// A directory that cannot be listed.
pub fn verify(dir: &FsPath) -> std::io::Result<Report> {
    let mut r = Report::default();
    let mut listed = None;
    for name in [CHECKPOINT, PREVIOUS] {
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(b) => match decode_checkpoint(&b) {
                Ok(ck) => {
                    if listed.is_none() {
                        if name == PREVIOUS {
                            r.notes.push(format!(
                                "{} is in use (the current checkpoint is not readable)",
                                p.display()
                            ));
                        }
                        r.applied_offset = Some(ck.applied_offset);
                        listed = Some(ck.files);
                    }
                }
                Err(reason) => r.problems.push(Problem {
                    path: p,
                    series: None,
                    reason,
                }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => r.problems.push(Problem {
                path: p,
                series: None,
                reason: e.to_string(),
            }),
        }
    }
    let listed = listed.unwrap_or_default();
    for &seq in &listed {
        let p = chunkfile::file_name(dir, seq);
        let quarantined = p.with_extension("chunks.damaged");
        if !p.exists() && quarantined.exists() {
            r.notes.push(format!(
                "{} is quarantined: the node runs without its points",
                quarantined.display()
            ));
            continue;
        }
        r.files += 1;
        let (chunks, problems) = chunkfile::verify_file(&p);
        r.chunks += chunks;
        r.problems.extend(problems.into_iter().map(|p| Problem {
            path: p.path,
            series: p.series,
            reason: p.reason,
        }));
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_suffix(".chunks")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if !listed.contains(&seq) {
                r.notes.push(format!(
                    "{} is not in the checkpoint (an unfinished flush): the next start removes it",
                    e.path().display()
                ));
            }
        }
    }
    Ok(r)
}
