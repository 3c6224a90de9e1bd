//! Reads: a series' points in a time range, merged from chunk files,
//! the frozen memtable and the memtable. Every chunk read from a file is
//! checked first ([`crate::chunkfile::ChunkFile::check`]): damage is an
//! error naming the file and the series, never a wrong value.

use protocol::tablet::Column;
use protocol::types::{status, DataType};

use super::{Inner, Points, SResult, Series, Store, StoreError, Tombstone};
use crate::chunkfile::{self, ChunkMeta};

impl Store {
    /// The points of `path` with times in `[lo, hi]`: chunk files, minus
    /// tombstones, overlaid by later files and the memtable. `None` for an
    /// unknown series.
    ///
    /// # Errors
    /// Damaged chunk data (naming the file and the series), and, while a
    /// chunk file listed by the checkpoint cannot be read at all, every
    /// read (naming the file: it may hold any series).
    pub fn read(&self, path: &str, lo: i64, hi: i64) -> SResult<Option<Points>> {
        {
            let inner = self.inner.read().expect("store lock");
            let Some(s) = inner.series.get(path) else {
                return Ok(None);
            };
            if s.mem.sorted {
                return read_series(&self.dir, &inner, path, s, lo, hi).map(Some);
            }
        }
        let mut inner = self.inner.write().expect("store lock");
        let Some(s) = inner.series.get_mut(path) else {
            return Ok(None);
        };
        s.mem.normalize();
        let s = inner.series.get(path).expect("just found");
        read_series(&self.dir, &inner, path, s, lo, hi).map(Some)
    }

    /// Where the points of `path` in `[lo, hi]` lie, without reading them
    /// (for queries that scan a large range a part at a time,
    /// node/src/query/scan.rs): for each part [`Store::read`] would merge
    /// (a chunk, the frozen memtable, the memtable), its first and last time
    /// in the range and its point count there, before deletions and
    /// overlaps are applied. `None` if there is no such series.
    pub fn read_plan(&self, path: &str, lo: i64, hi: i64) -> Option<Vec<(i64, i64, usize)>> {
        let inner = self.inner.read().expect("store lock");
        let s = inner.series.get(path)?;
        let mut parts = Vec::new();
        for (f, i) in &s.chunks {
            let c = &f.chunks[*i];
            if c.max < lo || c.min > hi {
                continue;
            }
            let r = f.range(c, lo, hi);
            if !r.is_empty() {
                parts.push((f.time(c, r.start), f.time(c, r.end - 1), r.len()));
            }
        }
        let mut sorted_part = |times: &[i64]| {
            let first = times.partition_point(|&x| x < lo);
            let end = times.partition_point(|&x| x <= hi).max(first);
            if end > first {
                parts.push((times[first], times[end - 1], end - first));
            }
        };
        if let Some(f) = &s.frozen {
            sorted_part(&f.times);
        }
        if s.mem.sorted {
            sorted_part(&s.mem.times);
        } else {
            let mut n = 0;
            let (mut a, mut b) = (i64::MAX, i64::MIN);
            for &t in s.mem.times.iter().filter(|&&t| lo <= t && t <= hi) {
                n += 1;
                a = a.min(t);
                b = b.max(t);
            }
            if n > 0 {
                parts.push((a, b, n));
            }
        }
        Some(parts)
    }
}

fn read_series(
    dir: &std::path::Path,
    inner: &Inner,
    path: &str,
    s: &Series,
    lo: i64,
    hi: i64,
) -> SResult<Points> {
    if let Some((seq, why)) = inner.damaged.first() {
        let p = chunkfile::file_name(dir, *seq);
        return Err(StoreError::new(
            status::INTERNAL_SERVER_ERROR,
            format!(
                "cannot read {path}: the store's chunk file {} is damaged ({why}) and may hold any series; restore it from a backup, or rename it to {} and restart to go on without its points",
                p.display(),
                p.with_extension("chunks.damaged").display()
            ),
        ));
    }
    let t = s.info.data_type;
    let tombs: Vec<&Tombstone> = inner
        .tombstones
        .iter()
        .filter(|x| x.path == path && x.max >= lo && x.min <= hi)
        .collect();
    let mut parts: Vec<(Vec<i64>, Column)> = Vec::new();
    for (f, i) in &s.chunks {
        let c: &ChunkMeta = &f.chunks[*i];
        if c.max < lo || c.min > hi {
            continue;
        }
        f.check(c)
            .map_err(|m| StoreError::new(status::INTERNAL_SERVER_ERROR, m))?;
        let r = f.range(c, lo, hi);
        if r.is_empty() {
            continue;
        }
        let (mut times, mut vals) = (
            Vec::with_capacity(r.len()),
            Column::with_capacity(t, r.len()),
        );
        f.read(c, r, &mut times, &mut vals);
        let dead: Vec<&&Tombstone> = tombs.iter().filter(|x| x.upto_seq >= f.seq).collect();
        if !dead.is_empty() {
            let keep: Vec<usize> = (0..times.len())
                .filter(|&k| !dead.iter().any(|d| d.min <= times[k] && times[k] <= d.max))
                .collect();
            times = keep.iter().map(|&k| times[k]).collect();
            vals = vals.gather(&keep);
        }
        parts.push((times, vals));
    }
    if let Some(f) = &s.frozen {
        let first = f.times.partition_point(|&x| x < lo);
        let end = f.times.partition_point(|&x| x <= hi).max(first);
        let dead: Vec<&&Tombstone> = tombs.iter().filter(|x| x.upto_seq >= f.seq).collect();
        let keep: Vec<usize> = (first..end)
            .filter(|&k| {
                !dead
                    .iter()
                    .any(|d| d.min <= f.times[k] && f.times[k] <= d.max)
            })
            .collect();
        if !keep.is_empty() {
            parts.push((
                keep.iter().map(|&k| f.times[k]).collect(),
                f.values.gather(&keep),
            ));
        }
    }
    let m = &s.mem;
    let first = m.times.partition_point(|&x| x < lo);
    let end = m.times.partition_point(|&x| x <= hi).max(first);
    if end > first {
        let mut vals = Column::with_capacity(t, end - first);
        vals.extend_rows(&m.values, first..end);
        parts.push((m.times[first..end].to_vec(), vals));
    }
    Ok(merge(t, parts))
}

/// Merges sorted parts, later parts winning on equal times.
pub(super) fn merge(t: DataType, mut parts: Vec<(Vec<i64>, Column)>) -> Points {
    parts.retain(|p| !p.0.is_empty());
    match parts.len() {
        0 => {
            return Points {
                times: vec![],
                values: Column::with_capacity(t, 0),
            }
        }
        1 => {
            let (times, values) = parts.pop().expect("one part");
            return Points { times, values };
        }
        _ => {}
    }
    let mut idx: Vec<(i64, usize, usize)> = Vec::new();
    for (pi, (times, _)) in parts.iter().enumerate() {
        idx.extend(times.iter().enumerate().map(|(i, &t)| (t, pi, i)));
    }
    idx.sort_unstable();
    let mut times = Vec::with_capacity(idx.len());
    let mut values = Column::with_capacity(t, idx.len());
    let mut k = 0;
    while k < idx.len() {
        let mut last = k;
        while last + 1 < idx.len() && idx[last + 1].0 == idx[k].0 {
            last += 1;
        }
        let (tm, pi, i) = idx[last];
        times.push(tm);
        values.extend_rows(&parts[pi].1, std::iter::once(i));
        k = last + 1;
    }
    Points { times, values }
}
