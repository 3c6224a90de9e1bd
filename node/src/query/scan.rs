//! Reading one series over a large time range a part at a time, so an
//! aggregation holds about [`BATCH_POINTS`] points in memory however many
//! the series has.
//!
//! [`Store::read_plan`] tells where the series' parts (chunks, the frozen
//! memtable, the memtable) lie in time and how many points each holds;
//! [`plan`] cuts the range into consecutive sub-ranges of about
//! [`BATCH_POINTS`] points each, along those parts; [`Scan`] reads the
//! sub-ranges one at a time with [`Store::read`], which merges overlapping
//! parts and applies deletions. The sub-ranges partition the range, so a
//! point is read once even if writes land while the scan runs.

use crate::store::{Points, SResult, Store};

/// Points a scan aims to hold at once (a full chunk of the default flush
/// size): about 16 MiB for 8-byte values.
pub const BATCH_POINTS: usize = 1 << 20;

#[cfg(test)]
thread_local! {
    /// A smaller batch for tests on this thread (many batches from a small
    /// series).
    pub static TEST_BATCH_POINTS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn batch_points() -> usize {
    #[cfg(test)]
    if let Some(n) = TEST_BATCH_POINTS.with(std::cell::Cell::get) {
        return n;
    }
    BATCH_POINTS
}

/// Cuts `[lo, hi]` into consecutive inclusive sub-ranges holding about
/// `target` points each, given the parts' `(first, last, points)` (as
/// [`Store::read_plan`] gives them). Overlapping parts are read together;
/// a part (or overlap) of more than `target` points is cut into equal
/// time slices. No parts: no sub-ranges.
pub fn plan(mut parts: Vec<(i64, i64, usize)>, lo: i64, hi: i64, target: usize) -> Vec<(i64, i64)> {
    if parts.is_empty() || lo > hi {
        return Vec::new();
    }
    let target = target.max(1);
    parts.sort_unstable();
    // Clusters of overlapping parts.
    let mut clusters: Vec<(i64, i64, usize)> = Vec::new();
    for (a, b, n) in parts {
        match clusters.last_mut() {
            Some(c) if a <= c.1 => {
                c.1 = c.1.max(b);
                c.2 = c.2.saturating_add(n);
            }
            _ => clusters.push((a, b, n)),
        }
    }
    // Inclusive ends of the sub-ranges, increasing.
    let mut cuts: Vec<i64> = Vec::new();
    let push = |cuts: &mut Vec<i64>, at: i64| {
        if at >= lo && at < hi && cuts.last().is_none_or(|&l| at > l) {
            cuts.push(at);
        }
    };
    let mut held = 0usize;
    for (a, b, n) in clusters {
        if held > 0 && held.saturating_add(n) > target {
            // `a` is above the previous cluster's last time: no underflow.
            push(&mut cuts, a - 1);
            held = 0;
        }
        if n > target {
            let k = n.div_ceil(target);
            let span = i128::from(b) - i128::from(a) + 1;
            for i in 1..k {
                let at = i128::from(a) + span * i as i128 / k as i128 - 1;
                push(&mut cuts, at as i64);
            }
            held = n / k;
        } else {
            held += n;
        }
    }
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut start = lo;
    for c in cuts {
        ranges.push((start, c));
        start = c + 1;
    }
    ranges.push((start, hi));
    ranges
}

/// A series read a sub-range at a time, from either end.
#[derive(Debug)]
pub struct Scan<'a> {
    store: &'a Store,
    path: &'a str,
    ranges: Vec<(i64, i64)>,
    front: usize,
    back: usize,
    /// The latest time any part holds in the range (before deletions).
    latest: Option<i64>,
}

impl<'a> Scan<'a> {
    /// A scan of `path` over `[lo, hi]`.
    pub fn new(store: &'a Store, path: &'a str, lo: i64, hi: i64) -> Scan<'a> {
        let parts = if lo > hi {
            Vec::new()
        } else {
            store.read_plan(path, lo, hi).unwrap_or_default()
        };
        let latest = parts.iter().map(|p| p.1).max();
        let ranges = plan(parts, lo, hi, batch_points());
        let back = ranges.len();
        Scan {
            store,
            path,
            ranges,
            front: 0,
            back,
            latest,
        }
    }

    fn read(&self, i: usize) -> SResult<(i64, i64, Points)> {
        let (a, b) = self.ranges[i];
        let pts = self.store.read(self.path, a, b)?.unwrap_or_else(|| Points {
            times: Vec::new(),
            values: protocol::tablet::Column::Boolean(Vec::new()),
        });
        Ok((a, b, pts))
    }

    /// The next sub-range from the start, with its points (possibly none).
    pub fn next_front(&mut self) -> SResult<Option<(i64, i64, Points)>> {
        if self.front >= self.back {
            return Ok(None);
        }
        self.front += 1;
        self.read(self.front - 1).map(Some)
    }

    /// Skips the unread sub-ranges that end before `t`.
    pub fn skip_before(&mut self, t: i64) {
        while self.front < self.back && self.ranges[self.front].1 < t {
            self.front += 1;
        }
    }

    /// The next sub-range from the end, with its points (possibly none).
    pub fn next_back(&mut self) -> SResult<Option<(i64, i64, Points)>> {
        if self.front >= self.back {
            return Ok(None);
        }
        self.back -= 1;
        self.read(self.back).map(Some)
    }

    /// The latest point in the range: `(time, index 0 of a one-point
    /// batch)`, reading from the end until a sub-range has points.
    pub fn last_point(&mut self) -> SResult<Option<(i64, Points)>> {
        // Most often the latest time a part holds is the answer: read that
        // one time; if it was deleted, read back from the end.
        if let Some(t) = self.latest.take() {
            if let Some(p) = self.store.read(self.path, t, t)? {
                if p.times == [t] {
                    return Ok(Some((t, p)));
                }
            }
        }
        while let Some((_, _, p)) = self.next_back()? {
            if let Some(&t) = p.times.last() {
                let i = p.times.len() - 1;
                let mut values = protocol::tablet::Column::with_capacity(p.values.data_type(), 1);
                values.extend_rows(&p.values, std::iter::once(i));
                return Ok(Some((
                    t,
                    Points {
                        times: vec![t],
                        values,
                    },
                )));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cut_along_parts_and_cover_the_range() {
        // Three disjoint chunks of 10 points: target 15 keeps them apart.
        let parts = vec![(20, 29, 10), (0, 9, 10), (40, 49, 10)];
        assert_eq!(
            plan(parts.clone(), -5, 100, 15),
            [(-5, 19), (20, 39), (40, 100)]
        );
        // Target 25: two chunks per read.
        assert_eq!(plan(parts.clone(), 0, 49, 25), [(0, 39), (40, 49)]);
        // Overlapping parts are read together.
        let parts = vec![(0, 10, 5), (5, 20, 5), (30, 40, 5)];
        assert_eq!(plan(parts.clone(), 0, 40, 12), [(0, 29), (30, 40)]);
        // ... and cut like one part when together they exceed the target.
        assert_eq!(plan(parts, 0, 40, 9), [(0, 9), (10, 29), (30, 40)]);
        // A part larger than the target is cut into equal time slices.
        assert_eq!(
            plan(vec![(0, 99, 100)], 0, 99, 25),
            [(0, 24), (25, 49), (50, 74), (75, 99)]
        );
        // Nothing to read.
        assert!(plan(vec![], 0, 10, 5).is_empty());
        // The extremes of the time axis.
        let r = plan(vec![(i64::MIN, i64::MAX, 10)], i64::MIN, i64::MAX, 3);
        assert_eq!(r.first().unwrap().0, i64::MIN);
        assert_eq!(r.last().unwrap().1, i64::MAX);
        assert!(r.windows(2).all(|w| w[0].1 + 1 == w[1].0), "{r:?}");
    }
}
