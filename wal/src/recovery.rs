//! Opening a log: the writer lock, loading or rebuilding indexes, and crash
//! recovery.
//!
//! # What recovery trusts and what it checks
//! - The recovery point (`recovery-point`) says up to which offset, segment
//!   and byte the log was durable when last checkpointed, and whether the
//!   writer closed cleanly.
//! - After a clean close nothing is scanned: every segment's index files are
//!   loaded and checked against the checkpoint.
//! - After an unclean stop, segments wholly before the recovery point load
//!   their index files (rebuilt by a full CRC scan when missing or damaged).
//!   The segment holding the recovery point is walked header by header up to
//!   the recovery point, and every batch past it is CRC-checked, as are all
//!   later segments.
//!
//! # What recovery may drop
//! Damage ends the log at the first damaged byte: offsets are dense, so
//! nothing after it can be kept. Whether recovery may truncate there is the
//! [`RecoveryMode`]'s call:
//!
//! | damage | AbsoluteConsistency | TolerateTailCorruption | TolerateAnyCorruption |
//! |---|---|---|---|
//! | torn tail past the recovery point | truncate | truncate | truncate |
//! | torn tail before the recovery point | refuse | truncate | truncate |
//! | damage before the tail | refuse | refuse | truncate |
//!
//! Every truncation logs a `warn!` with the segment, offset, byte position,
//! and how many bytes and records went.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{Config, RecoveryMode, DEFAULT_INDEX_INTERVAL_BYTES};
use crate::error::{Error, Result};
use crate::format::{
    self, BatchError, Checkpoint, FileKind, FileName, SegmentMeta, BATCH_HEADER_LEN, BATCH_MAGIC,
    CHECKPOINT_FILE, LOCK_FILE, SEGMENT_HEADER_LEN,
};
use crate::ledger::Ledger;
use crate::log::Recovered;
use crate::segment::{Segment, SparseIndex};

/// Damage found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Byte position of the first damaged batch.
    pub position: u64,
    /// The offset that batch should hold.
    pub offset: u64,
    /// What check failed.
    pub reason: String,
}

/// What a scan of one segment found.
pub(crate) struct Scan {
    pub meta: SegmentMeta,
    pub index: SparseIndex,
    pub damage: Option<Damage>,
}

/// Walks the batches of `seg`: headers only below byte `walk_until` (for
/// batches wholly below offset `check_from`), full checks for the rest.
/// Stops at the end of the data or the first damage.
pub(crate) fn scan(
    seg: &Segment,
    walk_until: u64,
    check_from: u64,
    interval: u32,
    prev_arrival: i64,
) -> Scan {
    let raw = seg.raw();
    let mut index = SparseIndex::default();
    let mut meta = SegmentMeta {
        base_offset: seg.base_offset,
        next_offset: seg.base_offset,
        data_len: SEGMENT_HEADER_LEN as u64,
        first_arrival_us: i64::MIN,
        last_arrival_us: i64::MIN,
    };
    let damage = |position: u64, offset: u64, reason: String| Damage {
        position,
        offset,
        reason,
    };
    if let Err(reason) = format::check_segment_header(raw) {
        meta.data_len = 0;
        return Scan {
            meta,
            index,
            damage: Some(damage(0, seg.base_offset, reason)),
        };
    }
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut last_arrival = prev_arrival;
    let found = loop {
        let b = &raw[pos as usize..];
        let res = if pos < walk_until {
            match format::parse_batch_header(b) {
                Ok(h) if h.next_offset() > check_from => format::check_batch(b),
                other => other,
            }
        } else {
            format::check_batch(b)
        };
        let h = match res {
            Ok(h) => h,
            Err(BatchError::End) if b.iter().take(BATCH_HEADER_LEN).all(|&x| x == 0) => break None,
            Err(BatchError::End) => {
                break Some(damage(
                    pos,
                    meta.next_offset,
                    "zero batch length followed by data".into(),
                ))
            }
            Err(BatchError::Truncated) => {
                break Some(damage(pos, meta.next_offset, "batch cut short".into()))
            }
            Err(BatchError::Invalid(r)) => break Some(damage(pos, meta.next_offset, r.into())),
        };
        if h.base_offset != meta.next_offset {
            break Some(damage(
                pos,
                meta.next_offset,
                format!(
                    "batch holds offset {} where {} was expected",
                    h.base_offset, meta.next_offset
                ),
            ));
        }
        if h.arrival_us < last_arrival {
            break Some(damage(
                pos,
                meta.next_offset,
                "arrival time goes back".into(),
            ));
        }
        index.on_batch(
            (h.base_offset - seg.base_offset) as u32,
            pos as u32,
            h.arrival_us,
            u64::from(h.length),
            interval,
        );
        if meta.first_arrival_us == i64::MIN {
            meta.first_arrival_us = h.arrival_us;
        }
        meta.last_arrival_us = h.arrival_us;
        last_arrival = h.arrival_us;
        meta.next_offset = h.next_offset();
        pos += u64::from(h.length);
        meta.data_len = pos;
        if pos >= raw.len() as u64 {
            break None;
        }
    };
    Scan {
        meta,
        index,
        damage: found,
    }
}

/// Whether an intact batch with an offset at or after `offset` starts
/// anywhere after `from` in `raw`: if so, damage at `from` is not a torn
/// tail.
pub(crate) fn intact_batch_after(raw: &[u8], from: u64, offset: u64) -> bool {
    let start = from as usize + 1;
    if raw.len() < BATCH_HEADER_LEN || start + BATCH_HEADER_LEN > raw.len() {
        return false;
    }
    let max_records = raw.len() as u64;
    (start..=raw.len() - BATCH_HEADER_LEN).any(|q| {
        raw[q + 28] == BATCH_MAGIC && {
            let base = format::le_u64(raw, q + 8);
            base >= offset && base - offset <= max_records && format::check_batch(&raw[q..]).is_ok()
        }
    })
}

/// Bytes in use from `from` on (up to the last non-zero byte), and how many
/// records the batch headers there still claim (a lower bound when the
/// damage hides some).
fn dropped(raw: &[u8], from: u64) -> (u64, u64) {
    let tail = &raw[(from as usize).min(raw.len())..];
    let bytes = tail
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p as u64 + 1);
    let mut records = 0u64;
    let mut at = 0usize;
    while let Ok(h) = format::parse_batch_header(&tail[at..]) {
        records += u64::from(h.record_count);
        at += h.length as usize;
    }
    (bytes, records.max(u64::from(bytes > 0)))
}

/// Refuses a segment of another format version: recovery must not take it
/// for damage and truncate it.
fn check_version(seg: &Segment) -> Result<()> {
    let raw = seg.raw();
    if raw.len() >= SEGMENT_HEADER_LEN && &raw[..8] == format::SEGMENT_MAGIC {
        let v = format::le_u32(raw, 8);
        if v != format::FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: seg.path().to_path_buf(),
                reason: format!(
                    "segment format version {v}; this build reads version {}",
                    format::FORMAT_VERSION
                ),
            });
        }
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, "open lock file", e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(Error::Locked {
                path,
                holder: if holder.is_empty() {
                    "unknown process".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, "lock", e)),
    }
    f.set_len(0)
        .map_err(|e| Error::io(&path, "truncate lock file", e))?;
    writeln!(f, "pid {}", std::process::id())
        .map_err(|e| Error::io(&path, "write lock file", e))?;
    Ok(f)
}

/// The segment base offsets in `dir`, sorted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "list directory", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, "list directory", e))?;
        if let Some((base, FileKind::Log)) = entry.file_name().to_str().and_then(FileName::parse) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

pub(crate) fn read_checkpoint(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(b) => match Checkpoint::decode(&b) {
            Ok(c) => Ok(Some(c)),
            Err(reason) => {
                warn!(path = %path.display(), reason, "recovery point unreadable; verifying the whole log");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, "read", e)),
    }
}

fn remove_temporaries(dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "list directory", e))?;
    for entry in rd.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn mode_name(m: RecoveryMode) -> &'static str {
    match m {
        RecoveryMode::AbsoluteConsistency => "absolute-consistency",
        RecoveryMode::TolerateTailCorruption => "tolerate-tail-corruption",
        RecoveryMode::TolerateAnyCorruption => "tolerate-any-corruption",
    }
}

/// Whether any intact batch of this segment's offsets lies anywhere in it.
fn holds_intact_records(seg: &Segment) -> bool {
    let raw = seg.raw();
    let base = seg.base_offset;
    raw.len() >= SEGMENT_HEADER_LEN + BATCH_HEADER_LEN
        && (format::check_batch(&raw[SEGMENT_HEADER_LEN..]).is_ok_and(|h| h.base_offset >= base)
            || intact_batch_after(raw, SEGMENT_HEADER_LEN as u64, base))
}

/// Opens `dir` for writing and recovers it.
pub(crate) fn recover(dir: &Path, config: &Config) -> Result<Recovered> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    let lock = lock_dir(dir)?;
    remove_temporaries(dir)?;
    let mut ledger = Ledger::load(dir)?;
    let ckpt = read_checkpoint(dir)?;
    let mode = config.recovery_mode;
    let floor = config.recovery_floor;
    // Offsets below the floor are held elsewhere: a range ending at or
    // below it, or damage starting below it, never refuses an open.
    let ends_below = |end: u64| floor.is_some_and(|f| end <= f);
    let damaged_below = |offset: u64| floor.is_some_and(|f| offset < f);
    let mut bases = list_segments(dir)?;
    let ck_start = ckpt.map_or(0, |c| c.log_start);

    // Segments wholly below the log start: retention stopped between
    // recording the new start and unlinking.
    while bases.len() >= 2 && bases[1] <= ck_start {
        Segment::remove_files(dir, bases.remove(0))?;
    }
    let refuse = |path: &Path, offset: u64, position: u64, reason: String| Error::Corruption {
        path: path.to_path_buf(),
        offset,
        position,
        reason,
    };

    if bases.is_empty() {
        let start = ckpt.map_or(0, |c| c.recovery_offset.max(c.log_start));
        if ckpt.is_some_and(|c| c.recovery_offset > c.log_start) {
            let msg = format!(
                "every segment file is missing, but the recovery point says offsets [{ck_start}, {start}) were durable"
            );
            if mode != RecoveryMode::TolerateAnyCorruption && !ends_below(start) {
                return Err(refuse(dir, ck_start, 0, format!("{msg}; open with recovery mode tolerate-any-corruption to start empty at {start}")));
            }
            warn!(dir = %dir.display(), "{msg}; starting empty");
        }
        let seg = Segment::create(dir, start, config.segment_bytes)?;
        // The recovery point `Log::open` writes next names this segment's
        // header; writing it syncs the directory, which makes the
        // segment's name durable too.
        seg.flush(0, SEGMENT_HEADER_LEN as u64)?;
        return Ok(Recovered {
            checkpoint: ckpt,
            checkpoint_stale: true,
            segments: vec![Arc::new(seg)],
            log_start: start,
            durable: start,
            last_arrival: ckpt.map_or(i64::MIN, |c| c.last_arrival_us),
            ledger,
            lock: Some(lock),
        });
    }
    if bases[0] > ck_start && ckpt.is_some() {
        let msg = format!(
            "segments holding offsets [{ck_start}, {}) are missing",
            bases[0]
        );
        if ends_below(bases[0]) {
            warn!(dir = %dir.display(), "{msg}; they are below the recovery floor (held elsewhere); the log now starts at {}", bases[0]);
        } else if mode != RecoveryMode::TolerateAnyCorruption {
            return Err(refuse(dir, ck_start, 0, format!("{msg}; restore them, or open with recovery mode tolerate-any-corruption to start at {}", bases[0])));
        } else {
            warn!(dir = %dir.display(), "{msg}; the log now starts at {}", bases[0]);
        }
    }

    let clean = ckpt.is_some_and(|c| c.clean);
    let (rp_seg, rp_pos) = match ckpt {
        Some(c) => (c.segment_base, c.position),
        None => {
            if !bases.is_empty() {
                warn!(dir = %dir.display(), "no recovery point; verifying every segment");
            }
            // Nothing is recorded as durable: verify it all.
            (bases[0], 0)
        }
    };
    if !clean {
        info!(dir = %dir.display(), recovery_segment = rp_seg, recovery_position = rp_pos, "recovering after an unclean stop");
    }

    let n = bases.len();
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(n);
    let mut prev_arrival = i64::MIN;
    let check_from = floor.unwrap_or(u64::MAX);
    // Drops `segments` and their files: they lie below the recovery floor
    // and are damaged, or do not lead to the segment at `to`.
    let drop_front = |segments: &mut Vec<Arc<Segment>>,
                      more: &[u64],
                      to: u64,
                      why: &str|
     -> Result<()> {
        let gone: Vec<u64> = segments
            .drain(..)
            .map(|s| s.base_offset)
            .chain(more.iter().copied())
            .collect();
        warn!(dir = %dir.display(), segments = ?gone, log_start = to, "{why}: below the recovery floor (held elsewhere), so the log now starts at {to}");
        for b in gone {
            Segment::remove_files(dir, b)?;
        }
        Ok(())
    };
    // Whether any segment from `bases[j]` on holds an intact record.
    let tail_holds_records = |j: usize| -> Result<bool> {
        for &b in &bases[j.min(n)..] {
            let p = FileName::build(dir, b, FileKind::Log);
            if holds_intact_records(&Segment::open(&p, b, false)?) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let mut files_changed = false;
    let mut i = 0;
    while i < n {
        let base = bases[i];
        let path = FileName::build(dir, base, FileKind::Log);
        let is_last = i + 1 == n;
        if let Some(prev) = segments.last() {
            if prev.next_offset() != base {
                let reason = format!(
                    "segment starts at {base} but the previous one ends at {}",
                    prev.next_offset()
                );
                if !tail_holds_records(i)? {
                    // Segments whose names were synced but not their data
                    // (a crash, or a roll a full disk cut short): nothing
                    // in them was durable.
                    drop_segments(
                        dir,
                        &bases[i..],
                        &format!("{reason}, and no intact record is in it or after it"),
                    )?;
                    break;
                }
                if ends_below(base) {
                    drop_front(&mut segments, &[], base, &reason)?;
                } else if mode != RecoveryMode::TolerateAnyCorruption {
                    // A gap or overlap: the later segments cannot be kept
                    // without breaking density.
                    return Err(refuse(&path, prev.next_offset(), 0, format!("{reason}; open with recovery mode tolerate-any-corruption to drop it and what follows")));
                } else {
                    drop_segments(dir, &bases[i..], &reason)?;
                    break;
                }
            }
        }
        let seg = Segment::open(&path, base, true)?;
        check_version(&seg)?;
        let durable_until = match base.cmp(&rp_seg) {
            std::cmp::Ordering::Less => u64::MAX,
            std::cmp::Ordering::Equal => rp_pos,
            std::cmp::Ordering::Greater => 0,
        };
        let trust_index = base < rp_seg || (clean && base == rp_seg);
        let mut walk_until = if base == rp_seg { rp_pos } else { 0 };
        let mut index_ok = false;
        if trust_index {
            match seg.load_index_files() {
                Ok((meta, ix))
                    if !(clean && base == rp_seg)
                        || ckpt.is_some_and(|c| {
                            c.recovery_offset == meta.next_offset && c.position == meta.data_len
                        }) =>
                {
                    if meta.next_offset <= check_from {
                        seg.restore(&meta, ix);
                        prev_arrival = prev_arrival.max(meta.last_arrival_us);
                        segments.push(Arc::new(seg));
                        i += 1;
                        continue;
                    }
                    // It holds records at or past the floor, which the
                    // caller reads next: check those.
                    index_ok = true;
                    walk_until = u64::MAX;
                }
                Ok(_) => {
                    warn!(
                        segment = base,
                        "index files disagree with the recovery point; rebuilding"
                    );
                    walk_until = 0;
                }
                Err(reason) => {
                    warn!(
                        segment = base,
                        reason, "index files missing or damaged; rebuilding by a full scan"
                    );
                    walk_until = 0;
                }
            }
        }
        let s = scan(
            &seg,
            walk_until,
            check_from,
            config.index_interval_bytes,
            prev_arrival,
        );
        let damage = s.damage.clone().or_else(|| {
            (s.meta.data_len < durable_until && durable_until != u64::MAX).then(|| Damage {
                position: s.meta.data_len,
                offset: s.meta.next_offset,
                reason: format!(
                    "data ends at byte {} before the recovery point at byte {durable_until}",
                    s.meta.data_len
                ),
            })
        });
        let Some(d) = damage else {
            // A sealed segment that was scanned: its index files may be
            // bad, or never written (under `never` they are written by the
            // flusher, after the roll). Replace them unless they match.
            let rewrite = !is_last
                && !index_ok
                && seg.load_index_files().map_or(true, |(meta, ix)| {
                    meta != s.meta || ix.offsets != s.index.offsets || ix.times != s.index.times
                });
            seg.restore(&s.meta, s.index);
            if rewrite {
                seg.write_index_files()?;
            }
            prev_arrival = prev_arrival.max(s.meta.last_arrival_us);
            segments.push(Arc::new(seg));
            i += 1;
            continue;
        };
        if !is_last && ends_below(bases[i + 1]) {
            // Damage in a segment the caller no longer needs: drop it and
            // everything before it; the log goes on from the next one.
            drop(seg);
            drop_front(
                &mut segments,
                &[base],
                bases[i + 1],
                &format!(
                    "{}: {} at offset {}, byte {}",
                    path.display(),
                    d.reason,
                    d.offset,
                    d.position
                ),
            )?;
            i += 1;
            continue;
        }
        // A torn tail: no intact batch after the damage, in this segment or
        // a later one (under `never` a crash can leave later segments
        // whose names were synced but not their data).
        let torn =
            !intact_batch_after(seg.raw(), d.position, d.offset) && !tail_holds_records(i + 1)?;
        let floor_tail = is_last
            && damaged_below(d.offset)
            && !intact_batch_after(seg.raw(), d.position, check_from);
        let durable_lost = d.position < durable_until;
        let allowed = floor_tail
            || match mode {
                RecoveryMode::AbsoluteConsistency => torn && !durable_lost,
                RecoveryMode::TolerateTailCorruption => torn,
                RecoveryMode::TolerateAnyCorruption => true,
            };
        let what = match (torn || floor_tail, durable_lost) {
            _ if floor_tail => "damage below the recovery floor (held elsewhere)",
            (true, false) => "torn tail",
            (true, true) => "torn tail inside data recorded as durable",
            (false, _) => "damage before the tail (intact records follow)",
        };
        if !allowed {
            let hint = if torn {
                "open with recovery mode tolerate-tail-corruption to truncate it"
            } else {
                "open with recovery mode tolerate-any-corruption to truncate there and drop what follows"
            };
            return Err(refuse(
                &path,
                d.offset,
                d.position,
                format!("{}: {what} under recovery mode {}; {hint}, or inspect it with `edgepipe wal verify`", d.reason, mode_name(mode)),
            ));
        }
        let (bytes, records) = dropped(seg.raw(), d.position);
        let seg = if d.position == 0 {
            // Not even a segment header: start the segment afresh (and
            // make its name durable: appends to it will be).
            drop(seg);
            Segment::remove_files(dir, base)?;
            // Its name becomes durable with the recovery point `Log::open`
            // writes next.
            files_changed = true;
            Segment::create(dir, base, config.segment_bytes)?
        } else {
            seg.zero_range(d.position, d.position + bytes)?;
            seg
        };
        warn!(
            segment = base,
            offset = d.offset,
            position = d.position,
            bytes,
            records,
            reason = %d.reason,
            "truncated {what}: dropped {bytes} bytes and {records} record(s) from offset {} on",
            d.offset
        );
        let meta = SegmentMeta {
            data_len: s.meta.data_len.max(SEGMENT_HEADER_LEN as u64),
            ..s.meta
        };
        seg.restore(&meta, s.index);
        segments.push(Arc::new(seg));
        if !is_last {
            drop_segments(
                dir,
                &bases[i + 1..],
                "they follow damage that was truncated",
            )?;
        }
        break;
    }

    // A last segment shorter than a full one (sealed and shrunk, or cut
    // short by a crash) is sealed, or made afresh when empty.
    let last = segments.last().expect("at least one segment").clone();
    if last.capacity() < config.segment_bytes {
        if last.is_empty() {
            // An empty segment file cut short: make it afresh.
            segments.pop();
            drop(last);
            Segment::remove_files(dir, base_of_fresh(&segments, &bases))?;
        } else {
            last.persist(true)?;
        }
        let seg = Segment::create(dir, base_of_fresh(&segments, &bases), config.segment_bytes)?;
        files_changed = true;
        segments.push(Arc::new(seg));
    }
    for s in &segments[..segments.len() - 1] {
        s.mark_sealed();
    }
    let active = segments.last().expect("a segment");
    // What recovery read came from the page cache; make it durable so the
    // recovery point can move to the end: the active segment, and sealed
    // ones past the recovery point (under `never` their flush was still
    // pending when the writer stopped).
    for s in &segments[..segments.len() - 1] {
        if s.base_offset >= rp_seg {
            s.sync_data()?;
        }
    }
    active.flush(0, active.data_len())?;
    let log_start = segments[0].base_offset.max(ck_start);
    let end = active.next_offset();
    clamp_consumers(&mut ledger, log_start, end)?;
    // A new recovery point also syncs the directory: segments recovery
    // made afresh get durable names with it.
    let checkpoint_stale =
        files_changed || ckpt.is_none_or(|c| c.recovery_offset > end || c.log_start != log_start);
    Ok(Recovered {
        checkpoint: ckpt,
        checkpoint_stale,
        log_start,
        durable: end,
        last_arrival: prev_arrival.max(ckpt.map_or(i64::MIN, |c| c.last_arrival_us)),
        segments,
        ledger,
        lock: Some(lock),
    })
}

/// Consumers whose committed offset is past the recovered end read records
/// that were lost before they became durable; those offsets will be handed
/// out again, so the consumers must read from the end, or they would skip
/// the new records. Consumers behind the log start lost what recovery
/// dropped below the floor: that is recorded, and they move to the start.
fn clamp_consumers(ledger: &mut Ledger, log_start: u64, end: u64) -> Result<()> {
    let mut changed = false;
    for (name, c) in ledger.consumers.iter_mut() {
        if c.committed < log_start {
            warn!(
                consumer = %name,
                from = c.committed,
                to = log_start,
                "recovery dropped records this consumer had not read"
            );
            c.record_loss(c.committed, log_start);
            c.committed = log_start;
            changed = true;
        }
        if c.committed > end {
            warn!(
                consumer = %name,
                committed = c.committed,
                end,
                "consumer had read records lost in the crash before they were durable; it resumes at the new end"
            );
            c.committed = end;
            changed = true;
        }
    }
    if changed {
        ledger.save()?;
    }
    Ok(())
}

/// The base offset of the segment that follows `segments` (the first of
/// `bases` when there are none).
fn base_of_fresh(segments: &[Arc<Segment>], bases: &[u64]) -> u64 {
    segments.last().map_or(bases[0], |s| s.next_offset())
}

/// Deletes segments recovery will not keep. No directory sync: if a power
/// cut undoes an unlink, the next recovery deletes the segment again.
fn drop_segments(dir: &Path, bases: &[u64], why: &str) -> Result<()> {
    for &b in bases {
        let len = std::fs::metadata(FileName::build(dir, b, FileKind::Log)).map_or(0, |m| m.len());
        warn!(segment = b, bytes = len, "deleting segment: {why}");
        Segment::remove_files(dir, b)?;
    }
    Ok(())
}

/// Opens `dir` read-only: no lock, no repair. Segments load their index
/// files when intact; the last segment (which a live writer may be
/// appending to) is CRC-checked up to its end. Damage ends the snapshot.
pub(crate) fn open_read_only(dir: &Path) -> Result<Recovered> {
    let bases = list_segments(dir)?;
    if bases.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no segment files (*.log) here; is this an edgepipe log directory?",
            dir.display()
        )));
    }
    let ledger = Ledger::load(dir)?;
    let ckpt = read_checkpoint(dir)?;
    let mut segments: Vec<Arc<Segment>> = Vec::new();
    let mut prev_arrival = i64::MIN;
    for (i, &base) in bases.iter().enumerate() {
        if segments.last().is_some_and(|p| p.next_offset() != base) {
            warn!(
                segment = base,
                "segment does not follow the previous one; stopping the snapshot there"
            );
            break;
        }
        let seg = Segment::open(&FileName::build(dir, base, FileKind::Log), base, false)?;
        check_version(&seg)?;
        let is_last = i + 1 == bases.len();
        if !is_last {
            if let Ok((meta, ix)) = seg.load_index_files() {
                seg.restore(&meta, ix);
                prev_arrival = prev_arrival.max(meta.last_arrival_us);
                seg.mark_sealed();
                segments.push(Arc::new(seg));
                continue;
            }
        }
        let s = scan(&seg, 0, 0, DEFAULT_INDEX_INTERVAL_BYTES, prev_arrival);
        seg.restore(&s.meta, s.index);
        prev_arrival = prev_arrival.max(s.meta.last_arrival_us);
        let damaged = s.damage.is_some();
        if let Some(d) = s.damage {
            if !is_last || intact_batch_after(seg.raw(), d.position, d.offset) {
                warn!(segment = base, offset = d.offset, position = d.position, reason = %d.reason, "damage; the snapshot ends there");
            }
        }
        if !is_last {
            seg.mark_sealed();
        }
        segments.push(Arc::new(seg));
        if damaged {
            break;
        }
    }
    let end = segments.last().map_or(0, |s| s.next_offset());
    let durable = match ckpt {
        Some(c) if c.clean => end,
        Some(c) => c.recovery_offset.min(end),
        None => 0,
    };
    Ok(Recovered {
        checkpoint: ckpt,
        checkpoint_stale: false,
        log_start: segments[0].base_offset.max(ckpt.map_or(0, |c| c.log_start)),
        durable,
        last_arrival: prev_arrival,
        segments,
        ledger,
        lock: None,
    })
}
