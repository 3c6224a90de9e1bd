//! Snapshots: the store as it was at a change-log offset, read a bounded
//! part at a time. A pipe whose history the change log no longer holds
//! whole reads it from here (`replicator::history`, `crate::history`).
//!
//! # What a snapshot is
//! [`Store::snapshot`] flushes the store (as `FLUSH` does) and returns
//! [`SnapshotId`]: the change-log offset `offset` its checkpoint applied and
//! the newest chunk file `last_seq` of that flush. The flush runs under the
//! write lock with no other flush beside it, so every record below `offset`
//! is in the chunk files `1..=last_seq`, and no record at or above it is.
//! Nothing more is kept: the id is two numbers, and reading it later (after
//! a restart too) looks at those files only.
//!
//! # Design constraints
//! - Chunk files are immutable and never deleted while the node runs (a
//!   flush only adds one; only a file left by an unfinished flush, which no
//!   checkpoint lists and so no snapshot names, is removed at open; a
//!   damaged one is renamed away only by hand). A snapshot therefore stays
//!   readable for as long as a pipe needs it, across restarts, without
//!   pinning anything. Whoever adds compaction must pin the files of the
//!   snapshots pipes still read.
//! - Deletions: tombstones are never removed either. A read applies the
//!   tombstones the store holds at the time of the read: the snapshot's,
//!   and those of deletions logged since (at offsets `>= offset`). The
//!   latter are also in the pipes' deletion index, which a pipe applies to
//!   what it reads from here as read at `offset - 1` after the read, so
//!   applying them here too changes nothing it sends.
//! - A read holds the store's lock only to collect the chunks and
//!   tombstones it needs; the data is read from the mapped files without
//!   it. Every chunk is checked (CRC) before its first read: damage is an
//!   error naming the file and the series.
//! - Bounded: [`Store::snapshot_read`] returns at most about `max_bytes`
//!   of points of a device's series, cut at one time for all of them, and
//!   says where to go on.

use std::sync::Arc;

use protocol::tablet::Column;
use protocol::types::{status, DataType};
use serde::{Deserialize, Serialize};

use super::query::merge;
use super::{Points, SResult, SeriesInfo, Store, StoreError};
use crate::chunkfile::{self, ChunkFile};

/// The least a read spends on one series, so a device with many series
/// still reads a useful number of points of each.
const MIN_SERIES_BYTES: usize = 4096;

/// A snapshot of the store (see the module doc): every change-log record
/// below `offset` is in the chunk files up to `last_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotId {
    /// The change-log offset the snapshot covers (exclusive).
    pub offset: u64,
    /// The newest chunk file of the snapshot (0: none).
    pub last_seq: u64,
}

/// Part of a device's series, read from a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRead {
    /// Per series asked for, in order: its points with times in `[lo,
    /// last]`, deletions applied.
    pub series: Vec<Points>,
    /// The last time this read covers: every point of the series in `[lo,
    /// last]` is in `series`.
    pub last: i64,
    /// Whether the series hold nothing more in `(last, hi]`.
    pub done: bool,
}

/// Where one series' points lie in a snapshot: its chunks (oldest file
/// first) and the tombstones that may hit them.
struct Source {
    data_type: DataType,
    parts: Vec<(Arc<ChunkFile>, usize)>,
    /// `(min, max, upto_seq)`.
    tombs: Vec<(i64, i64, u64)>,
}

impl Store {
    /// Takes a snapshot: flushes the store (as `FLUSH`; the memtables are
    /// written to a chunk file and checkpointed) and names what the flush
    /// covers.
    ///
    /// # Errors
    /// The flush's (a full disk is 611, naming it); nothing changes then.
    pub fn snapshot(&self) -> SResult<SnapshotId> {
        let (offset, last_seq) = self.flush_covering()?;
        Ok(SnapshotId { offset, last_seq })
    }

    /// The series of `snap` whose path `keep` accepts: those with points in
    /// its chunk files (before deletions), sorted by path, with their info.
    /// A series whose database was deleted since is not listed: the
    /// deletion (logged after the snapshot) removes all its points anyway.
    ///
    /// # Errors
    /// A chunk file of the snapshot that cannot be read (naming it).
    pub fn snapshot_series(
        &self,
        snap: SnapshotId,
        keep: impl Fn(&str) -> bool,
    ) -> SResult<Vec<(String, SeriesInfo)>> {
        let inner = self.inner.read().expect("store lock");
        self.damaged_in(&inner, snap)?;
        Ok(inner
            .series
            .iter()
            .filter(|(p, s)| {
                keep(p)
                    && s.chunks
                        .iter()
                        .any(|(f, i)| f.seq <= snap.last_seq && f.chunks[*i].count > 0)
            })
            .map(|(p, s)| (p.clone(), s.info.clone()))
            .collect())
    }

    /// How many points `paths` hold in `snap` with times in `[lo, hi]`,
    /// from the chunk files' index (a chunk partly in the range costs two
    /// binary searches), before deletions and overlaps: what a pipe will
    /// read at most.
    pub fn snapshot_count(&self, snap: SnapshotId, paths: &[String], lo: i64, hi: i64) -> u64 {
        if lo > hi {
            return 0;
        }
        let inner = self.inner.read().expect("store lock");
        let mut n = 0u64;
        for p in paths {
            let Some(s) = inner.series.get(p) else {
                continue;
            };
            for (f, i) in &s.chunks {
                let c = &f.chunks[*i];
                if f.seq > snap.last_seq || c.count == 0 || c.max < lo || c.min > hi {
                    continue;
                }
                n += if lo <= c.min && c.max <= hi {
                    c.count
                } else {
                    f.range(c, lo, hi).len()
                } as u64;
            }
        }
        n
    }

    /// Reads the series `paths` (one device's) of `snap` from time `lo`
    /// on, up to `hi`: about `max_bytes` of points at most (at least the
    /// points at the first time any of them has, so a read always gets on),
    /// cut at one time `last` for all of them. Tombstones applied (see the
    /// module doc); where files overlap, the later one wins, as in queries.
    /// A path the store does not know reads as empty.
    ///
    /// # Errors
    /// Damaged chunk data or a chunk file of the snapshot that cannot be
    /// read, naming the file (and the series).
    pub fn snapshot_read(
        &self,
        snap: SnapshotId,
        paths: &[String],
        lo: i64,
        hi: i64,
        max_bytes: usize,
    ) -> SResult<SnapshotRead> {
        let sources: Vec<Source> = {
            let inner = self.inner.read().expect("store lock");
            self.damaged_in(&inner, snap)?;
            paths
                .iter()
                .map(|p| match inner.series.get(p) {
                    None => Source {
                        data_type: DataType::Double,
                        parts: Vec::new(),
                        tombs: Vec::new(),
                    },
                    Some(s) => Source {
                        data_type: s.info.data_type,
                        parts: s
                            .chunks
                            .iter()
                            .filter(|(f, i)| {
                                let c = &f.chunks[*i];
                                f.seq <= snap.last_seq && c.count > 0 && c.max >= lo && c.min <= hi
                            })
                            .cloned()
                            .collect(),
                        tombs: inner
                            .tombstones
                            .iter()
                            .filter(|t| &t.path == p && t.max >= lo && t.min <= hi)
                            .map(|t| (t.min, t.max, t.upto_seq))
                            .collect(),
                    },
                })
                .collect()
        };
        let damaged = |m: String| StoreError::new(status::INTERNAL_SERVER_ERROR, m);
        if lo > hi {
            return Ok(SnapshotRead {
                series: sources.iter().map(|s| empty(s.data_type)).collect(),
                last: hi,
                done: true,
            });
        }
        let budget = (max_bytes / paths.len().max(1)).max(MIN_SERIES_BYTES);
        let mut last = hi;
        for s in &sources {
            if let Some(cut) = cutoff(s, lo, hi, budget).map_err(damaged)? {
                last = last.min(cut);
            }
        }
        let series = sources
            .iter()
            .map(|s| read(s, lo, last))
            .collect::<Result<_, _>>()
            .map_err(damaged)?;
        // A chunk starting after `last` (and so within `hi`) has more; one
        // read across it was checked by the read.
        let done = last >= hi
            || !sources.iter().any(|s| {
                s.parts.iter().any(|(f, i)| {
                    let c = &f.chunks[*i];
                    c.max > last && (c.min > last || !f.range(c, last + 1, hi).is_empty())
                })
            });
        Ok(SnapshotRead { series, last, done })
    }

    /// The error of every snapshot read while a chunk file the snapshot
    /// may need cannot be read at all.
    fn damaged_in(&self, inner: &super::Inner, snap: SnapshotId) -> SResult<()> {
        if let Some((lo, hi)) = inner.removed_at_open {
            // Taken before the open (newer snapshots name files past `hi`)
            // and naming a file the open removed: its points are gone.
            if (lo..=hi).contains(&snap.last_seq) {
                return Err(StoreError::new(
                    status::INTERNAL_SERVER_ERROR,
                    format!(
                        "cannot read the store's snapshot at offset {}: its chunk file {} was removed when the store opened from an older checkpoint (the newest was damaged or a flush had not finished); drop and create the pipe again to send its history anew",
                        snap.offset,
                        chunkfile::file_name(&self.dir, lo).display()
                    ),
                ));
            }
        }
        match inner.damaged.iter().find(|d| d.0 <= snap.last_seq) {
            None => Ok(()),
            Some((seq, why)) => {
                let p = chunkfile::file_name(&self.dir, *seq);
                Err(StoreError::new(
                    status::INTERNAL_SERVER_ERROR,
                    format!(
                        "cannot read the store's snapshot at offset {}: its chunk file {} is damaged ({why}); restore it from a backup, or rename it to {} and restart to go on without its points",
                        snap.offset,
                        p.display(),
                        p.with_extension("chunks.damaged").display()
                    ),
                ))
            }
        }
    }
}

fn empty(t: DataType) -> Points {
    Points {
        times: Vec::new(),
        values: Column::with_capacity(t, 0),
    }
}

/// What a point of `s` costs, on average over its chunks: its time and
/// its value.
fn point_bytes(s: &Source) -> usize {
    let (points, bytes) = s.parts.iter().fold((0usize, 0usize), |(n, b), (f, i)| {
        let c = &f.chunks[*i];
        (n + c.count, b + c.values_len())
    });
    8 + bytes.div_ceil(points.max(1)).max(1)
}

/// The last time up to which `s` holds at most about `budget` bytes of
/// points from `lo` (within `hi`), but never before its first point there
/// (so a read gets on); `None` when it holds nothing in `[lo, hi]`.
///
/// Chunks are taken in the order of their first time in the range; each
/// one that would overrun what is left lowers the cut to just before its
/// point that would. Lowering the cut only removes points of the chunks
/// counted before, so the count stays within the budget (plus at most one
/// point per chunk at the first time). A chunk that starts at or after
/// `lo` starts at its indexed min: only the chunks the cut reaches, and
/// those across `lo`, are read (and checked first).
///
/// # Errors
/// Damaged chunk data, naming the file and the series.
fn cutoff(s: &Source, lo: i64, hi: i64, budget: usize) -> Result<Option<i64>, String> {
    let mut parts: Vec<(i64, &ChunkFile, usize)> = Vec::with_capacity(s.parts.len());
    for (f, i) in &s.parts {
        let c = &f.chunks[*i];
        if c.min >= lo {
            parts.push((c.min, f, *i));
        } else {
            f.check(c)?;
            let r = f.range(c, lo, hi);
            if !r.is_empty() {
                parts.push((f.time(c, r.start), f, *i));
            }
        }
    }
    parts.sort_by_key(|p| p.0);
    let Some(&(first, _, _)) = parts.first() else {
        return Ok(None);
    };
    let limit = (budget / point_bytes(s)).max(1);
    let (mut cut, mut used) = (hi, 0usize);
    for &(start_time, f, i) in &parts {
        if start_time > cut {
            break;
        }
        let c = &f.chunks[i];
        f.check(c)?;
        let r = f.range(c, lo, cut);
        let room = limit - used;
        if r.len() > room {
            cut = f.time(c, r.start + room).saturating_sub(1);
            used = limit;
        } else {
            used += r.len();
        }
    }
    Ok(Some(cut.max(first)))
}

/// The points of `s` in `[lo, hi]`: each chunk's, minus what its
/// tombstones cover, merged with later files winning on equal times.
///
/// # Errors
/// Damaged chunk data, naming the file and the series.
fn read(s: &Source, lo: i64, hi: i64) -> Result<Points, String> {
    let mut parts = Vec::new();
    for (f, i) in &s.parts {
        let c = &f.chunks[*i];
        if c.max < lo || c.min > hi {
            continue;
        }
        f.check(c)?;
        let r = f.range(c, lo, hi);
        if r.is_empty() {
            continue;
        }
        let (mut times, mut vals) = (
            Vec::with_capacity(r.len()),
            Column::with_capacity(s.data_type, r.len()),
        );
        f.read(c, r, &mut times, &mut vals);
        let dead: Vec<(i64, i64)> = s
            .tombs
            .iter()
            .filter(|t| t.2 >= f.seq)
            .map(|t| (t.0, t.1))
            .collect();
        if !dead.is_empty() {
            let keep: Vec<usize> = (0..times.len())
                .filter(|&k| !dead.iter().any(|&(a, b)| a <= times[k] && times[k] <= b))
                .collect();
            if keep.len() != times.len() {
                times = keep.iter().map(|&k| times[k]).collect();
                vals = vals.gather(&keep);
            }
        }
        parts.push((times, vals));
    }
    Ok(merge(s.data_type, parts))
}

#[cfg(test)]
mod tests {
    use super::super::{StoreConfig, Tablet};
    use super::*;
    use crate::event::Event;

    fn open(dir: &std::path::Path) -> Store {
        let log = Arc::new(
            wal::Log::open(
                dir.join("wal"),
                wal::Config {
                    fsync: wal::FsyncPolicy::Never,
                    ..wal::Config::default()
                },
            )
            .unwrap(),
        );
        Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap()
    }

    fn write(s: &Store, device: &str, ms: &[&str], times: std::ops::Range<i64>, k: f64) {
        s.write(Event::Tablet(Tablet {
            device: device.into(),
            measurements: ms.iter().map(|m| m.to_string()).collect(),
            columns: ms
                .iter()
                .map(|_| Column::Double(times.clone().map(|t| t as f64 * k).collect()))
                .collect(),
            nulls: vec![None; ms.len()],
            times: times.collect(),
            aligned: false,
        }))
        .unwrap();
    }

    /// Reads everything of `paths` from `lo` in reads of `max_bytes`.
    fn read_all(
        s: &Store,
        snap: SnapshotId,
        paths: &[String],
        max_bytes: usize,
    ) -> (Vec<Vec<(i64, f64)>>, usize) {
        let mut out = vec![Vec::new(); paths.len()];
        let (mut lo, mut reads) = (i64::MIN, 0);
        loop {
            let r = s
                .snapshot_read(snap, paths, lo, i64::MAX, max_bytes)
                .unwrap();
            reads += 1;
            for (o, p) in out.iter_mut().zip(&r.series) {
                let Column::Double(v) = &p.values else {
                    panic!()
                };
                assert!(p.times.iter().all(|&t| lo <= t && t <= r.last));
                o.extend(p.times.iter().copied().zip(v.iter().copied()));
            }
            if r.done {
                return (out, reads);
            }
            lo = r.last + 1;
        }
    }

    #[test]
    fn a_snapshot_holds_what_came_before_it_read_a_bounded_part_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // Three flushes of root.sg.d, the middle one overlapping the first
        // (its values win), and a delete of [100, 109].
        write(&s, "root.sg.d", &["a", "b"], 0..1000, 1.0);
        s.flush().unwrap();
        write(&s, "root.sg.d", &["a"], 500..1500, 2.0);
        s.flush().unwrap();
        s.write(Event::Delete {
            patterns: vec!["root.sg.d.*".into()],
            min: 100,
            max: 109,
        })
        .unwrap();
        write(&s, "root.sg.d", &["b"], 2000..2100, 1.0);
        let snap = s.snapshot().unwrap();
        assert_eq!(snap.offset, s.log().end_offset());
        assert_eq!(s.memtable_points(), 0);
        // After the snapshot: points and a series that are not in it, and
        // a delete that applies to it as well (see the module doc).
        write(&s, "root.sg.d", &["a", "b"], 5000..5010, 1.0);
        write(&s, "root.sg.e", &["c"], 0..10, 1.0);
        s.write(Event::Delete {
            patterns: vec!["root.sg.d.a".into()],
            min: 0,
            max: 9,
        })
        .unwrap();
        s.flush().unwrap();
        let series = s
            .snapshot_series(snap, |p| p.starts_with("root.sg"))
            .unwrap();
        let names: Vec<&str> = series.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["root.sg.d.a", "root.sg.d.b"]);
        let paths: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let want_a: Vec<(i64, f64)> = (10..1500)
            .filter(|t| !(100..=109).contains(t))
            .map(|t| (t, if t >= 500 { t as f64 * 2.0 } else { t as f64 }))
            .collect();
        let want_b: Vec<(i64, f64)> = (0..1000)
            .chain(2000..2100)
            .filter(|t| !(100..=109).contains(t))
            .map(|t| (t, t as f64))
            .collect();
        for max_bytes in [1, 4096, 10_000, 1 << 20] {
            let (got, reads) = read_all(&s, snap, &paths, max_bytes);
            assert_eq!(got[0], want_a, "max_bytes {max_bytes}");
            assert_eq!(got[1], want_b, "max_bytes {max_bytes}");
            if max_bytes >= 1 << 20 {
                assert_eq!(reads, 1);
            } else {
                // 16 bytes a point, at least 4 KiB a series a read.
                assert!(reads > 5, "{reads} reads of {max_bytes}");
            }
        }
        // The count from the index: before deletions and overlaps.
        assert_eq!(
            s.snapshot_count(snap, &paths, i64::MIN, i64::MAX),
            1000 + 1000 + 1000 + 100
        );
        assert_eq!(s.snapshot_count(snap, &paths[..1], 0, 99), 100);
        // A bounded range.
        let r = s.snapshot_read(snap, &paths, 990, 1010, 1 << 20).unwrap();
        assert!(r.done && r.last == 1010);
        assert_eq!(r.series[0].times, (990..=1010).collect::<Vec<i64>>());
        assert_eq!(r.series[1].times, (990..1000).collect::<Vec<_>>());
        // Reopened (a restart): the same snapshot reads the same.
        drop(s);
        let s = open(dir.path());
        let (got, _) = read_all(&s, snap, &paths, 4096);
        assert_eq!((&got[0], &got[1]), (&want_a, &want_b));
    }

    /// A snapshot whose newest file the open removed (the newest
    /// checkpoint was damaged, so the store opened from the previous one)
    /// says so instead of reading less; a snapshot taken after that open
    /// reads fine.
    #[test]
    fn a_snapshot_whose_files_an_open_removed_is_an_error_not_less_data() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        write(&s, "root.sg.d", &["a"], 0..100, 1.0);
        s.flush().unwrap();
        write(&s, "root.sg.d", &["a"], 100..200, 1.0);
        let snap = s.snapshot().unwrap();
        assert_eq!(snap.last_seq, 2);
        drop(s);
        let ck = dir.path().join("store/checkpoint");
        let mut b = std::fs::read(&ck).unwrap();
        b[5] = b[5].wrapping_add(1);
        std::fs::write(&ck, b).unwrap();
        let s = open(dir.path());
        let paths = ["root.sg.d.a".to_string()];
        let e = s
            .snapshot_read(snap, &paths, i64::MIN, i64::MAX, 1 << 20)
            .unwrap_err();
        assert!(
            e.message
                .contains("was removed when the store opened from an older checkpoint"),
            "{e:?}"
        );
        assert!(s.snapshot_series(snap, |_| true).is_err());
        // The log replayed what the removed file held: a new snapshot has
        // every point.
        let again = s.snapshot().unwrap();
        let (got, _) = read_all(&s, again, &paths, 1 << 20);
        assert_eq!(got[0].len(), 200);
    }

    /// The snapshot names chunk files and pins nothing: it relies on
    /// files never being deleted or rewritten. Flushes, deletions (of a
    /// time range, of another database), a failed-flush cleanup at open
    /// and a restart leave every file of the snapshot byte for byte, and
    /// the snapshot reads the same. Whoever adds compaction must make
    /// this hold (by pinning the files pipes still read).
    #[test]
    fn a_snapshots_chunk_files_outlive_flushes_deletions_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let store = dir.path().join("store");
        for k in 0..3 {
            write(&s, "root.sg.d", &["a"], k * 100..k * 100 + 100, 1.0);
            write(&s, "root.other.d", &["a"], 0..100, 1.0);
            s.flush().unwrap();
        }
        let snap = s.snapshot().unwrap();
        let files = |upto: u64| -> Vec<(u64, Vec<u8>)> {
            (1..=upto)
                .filter_map(|q| {
                    std::fs::read(chunkfile::file_name(&store, q))
                        .ok()
                        .map(|b| (q, b))
                })
                .collect()
        };
        let before = files(snap.last_seq);
        assert_eq!(before.len() as u64, snap.last_seq);
        let paths = ["root.sg.d.a".to_string()];
        let (want, _) = read_all(&s, snap, &paths, 1 << 20);
        assert_eq!(want[0].len(), 300);
        // Everything that could touch files after the snapshot.
        for k in 0..5 {
            write(&s, "root.sg.d", &["a"], 1000 + k * 10..1010 + k * 10, 2.0);
            write(&s, "root.sg.d", &["a"], 0..50, 9.0);
            s.flush().unwrap();
        }
        s.write(Event::Schema(crate::event::SchemaOp::DeleteDatabase(
            "root.other".into(),
        )))
        .unwrap();
        s.write(Event::Delete {
            patterns: vec!["root.sg.d.a".into()],
            min: 5000,
            max: 6000,
        })
        .unwrap();
        s.flush().unwrap();
        drop(s);
        let s = open(dir.path());
        s.flush().unwrap();
        assert_eq!(
            files(snap.last_seq),
            before,
            "a snapshot's chunk file changed"
        );
        let (got, _) = read_all(&s, snap, &paths, 4096);
        assert_eq!(got, want);
    }

    #[test]
    fn a_damaged_chunk_is_an_error_naming_the_file_and_series() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        write(&s, "root.sg.d", &["a"], 0..100, 1.0);
        let snap = s.snapshot().unwrap();
        let file = chunkfile::file_name(&dir.path().join("store"), snap.last_seq);
        drop(s);
        let mut b = std::fs::read(&file).unwrap();
        b[20] ^= 1;
        std::fs::write(&file, b).unwrap();
        let s = open(dir.path());
        let e = s
            .snapshot_read(snap, &["root.sg.d.a".into()], i64::MIN, i64::MAX, 1 << 20)
            .unwrap_err();
        assert!(
            e.message.contains(&file.display().to_string()) && e.message.contains("root.sg.d.a"),
            "{e}"
        );
    }
}
