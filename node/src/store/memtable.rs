//! Memtables: a series' recent points in two vectors, and the frozen
//! copy a flush writes.

use protocol::tablet::Column;
use protocol::types::DataType;

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
