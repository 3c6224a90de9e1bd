//! Memtables: a series' recent points in two vectors, and the frozen
//! copy a flush writes.

use protocol::tablet::Column;
use protocol::types::DataType;

/// The smallest times vector worth keeping: one the allocator maps by
/// itself (`edgepipe server` fixes glibc's mmap threshold at 256 KiB), so
/// that freeing it would unmap its pages. Smaller ones come from the
/// heap, which hands freed chunks out again without new pages; keeping
/// those too made 1,000 devices × 10-row tablets 10–15 ns a point slower
/// on the cloud (measured in pairs against the build before; not
/// explained).
const SPARE_MIN_BYTES: usize = 256 << 10;

/// The vectors of flushed memtables, kept for the next memtables.
///
/// A memtable that grows into freshly allocated memory takes a page fault
/// and the kernel's zeroing for every 4 kB it touches: on a backfill of
/// 1,000-row tablets that was over half of the receiving thread's time
/// (perf, seventh session). A flush gives its frozen memtables' vectors
/// here and the next freeze hands them to the memtables that follow, so
/// a steady stream of writes reuses the same pages. A vector is kept only
/// as long as its points (the part of it that was ever touched: what
/// doubling reserved beyond is given back), at most `cap` bytes in all,
/// and whatever the next freeze does not take is freed then; a flush
/// thread frees its spares itself when no freeze came for
/// `flush::SPARES_KEPT`, with what memtables hold beyond their points. A memtable on kept vectors holds its
/// predecessor's pages from the start, where a growing one held only its
/// own points': to keep a node's anonymous memory where it was, kept
/// vectors hold at most half a flush threshold of points, and memtables
/// that run on them flush at half the threshold (see
/// `Store::flush_threshold`). With the whole threshold instead, a
/// catch-up of 1,000-row tablets took 82 MiB of anonymous memory (65 MiB
/// with vectors of a whole threshold flushed at half); half the threshold
/// for every memtable looked slower for large tablets, whose vectors are
/// too small to keep (three pairs, within this machine's noise).
#[derive(Debug, Default)]
pub(super) struct Spares {
    /// Cleared vectors by the type of their column (`DataType as usize`).
    by_type: [Vec<(Vec<i64>, Column)>; 6],
    bytes: usize,
}

impl Spares {
    /// Keeps a flushed memtable's vectors, cleared and shrunk to the
    /// points they held but at most `points`, if they fit in `cap` bytes.
    pub(super) fn give(
        &mut self,
        mut times: Vec<i64>,
        mut values: Column,
        points: usize,
        cap: usize,
    ) {
        let keep = times.len().min(points);
        if 8 * keep < SPARE_MIN_BYTES {
            return;
        }
        times.clear();
        values.clear();
        times.shrink_to(keep);
        values.shrink_to(keep);
        let b = 8 * times.capacity() + column_bytes(&values);
        if self.bytes + b > cap {
            return;
        }
        self.bytes += b;
        self.by_type[values.data_type() as usize].push((times, values));
    }

    /// An empty memtable of type `t` on kept vectors, if there are any.
    pub(super) fn take(&mut self, t: DataType) -> Option<Mem> {
        let (times, values) = self.by_type[t as usize].pop()?;
        self.bytes -= 8 * times.capacity() + column_bytes(&values);
        Some(Mem {
            times,
            values,
            sorted: true,
        })
    }

    /// Frees every kept vector.
    pub(super) fn clear(&mut self) {
        *self = Spares::default();
    }

    /// Bytes kept.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[derive(Debug)]
pub(super) struct Mem {
    pub(super) times: Vec<i64>,
    pub(super) values: Column,
    pub(super) sorted: bool,
}

impl Mem {
    pub(super) fn new(t: DataType) -> Mem {
        Mem {
            times: Vec::new(),
            values: Column::with_capacity(t, 0),
            sorted: true,
        }
    }

    /// Bytes its vectors hold (capacity, not length).
    pub(super) fn heap_bytes(&self) -> usize {
        8 * self.times.capacity() + column_bytes(&self.values)
    }

    /// Sorts by time, keeping the last write of each timestamp.
    pub(super) fn normalize(&mut self) {
        if self.sorted {
            return;
        }
        let mut idx: Vec<usize> = (0..self.times.len()).collect();
        idx.sort_by_key(|&i| (self.times[i], i));
        let mut keep: Vec<usize> = Vec::with_capacity(idx.len());
        for i in idx {
            if keep.last().is_some_and(|&k| self.times[k] == self.times[i]) {
                *keep.last_mut().expect("non-empty") = i;
            } else {
                keep.push(i);
            }
        }
        self.times = keep.iter().map(|&i| self.times[i]).collect();
        self.values = self.values.gather(&keep);
        self.sorted = true;
    }
}

/// A frozen memtable: sorted, one point per timestamp, immutable.
#[derive(Debug)]
pub(super) struct Frozen {
    pub(super) seq: u64,
    pub(super) times: Vec<i64>,
    pub(super) values: Column,
}

/// Bytes a column's vectors hold (capacity; a TEXT value's own bytes
/// counted by length).
pub(super) fn column_bytes(c: &Column) -> usize {
    match c {
        Column::Boolean(v) => v.capacity(),
        Column::Int32(v) => 4 * v.capacity(),
        Column::Int64(v) => 8 * v.capacity(),
        Column::Float(v) => 4 * v.capacity(),
        Column::Double(v) => 8 * v.capacity(),
        Column::Text(v) => {
            std::mem::size_of::<Vec<u8>>() * v.capacity() + v.iter().map(Vec::len).sum::<usize>()
        }
    }
}
