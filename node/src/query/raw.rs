//! Raw rows: each series' points in the range, one row per time (per
//! device, aligned by device), nulls where a series has no point.
//!
//! A raw query holds what it reads in memory, so it may read at most
//! [`MAX_QUERY_POINTS`] points and return at most [`MAX_RESULT_VALUES`]
//! values.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use protocol::tablet::Column;
use protocol::types::{status, Value};

use super::{page, plan_by_device, plan_by_time, Block, Plan};
use crate::exec::{ResultSet, MAX_QUERY_POINTS, MAX_RESULT_VALUES};
use crate::sql::{Select, SortKey};
use crate::store::{Points, SResult, Store, StoreError};

/// One block's points: per source, in the block's source order, and the
/// union of their times.
struct Read {
    times: Vec<i64>,
    parts: Vec<Points>,
}

fn read_block(store: &Store, block: &Block, lo: i64, hi: i64, read: &mut usize) -> SResult<Read> {
    let mut parts = Vec::with_capacity(block.sources.len());
    for s in &block.sources {
        let pts = if lo <= hi {
            store.read(&s.series, lo, hi)?
        } else {
            None
        }
        .unwrap_or(Points {
            times: vec![],
            values: Column::with_capacity(s.series_type, 0),
        });
        *read = read.saturating_add(pts.times.len());
        if *read > MAX_QUERY_POINTS {
            return Err(StoreError::new(
                status::SEMANTIC_ERROR,
                format!("the query reads more than {MAX_QUERY_POINTS} points; narrow the time range or select fewer series (aggregations such as count(*) have no such bound)"),
            ));
        }
        parts.push(pts);
    }
    let mut times: Vec<i64> = parts.iter().flat_map(|p| p.times.iter().copied()).collect();
    times.sort_unstable();
    times.dedup();
    Ok(Read { times, parts })
}

fn read_all(store: &Store, plan: &Plan, lo: i64, hi: i64) -> SResult<Vec<Read>> {
    let mut read = 0;
    plan.blocks
        .iter()
        .map(|b| read_block(store, b, lo, hi, &mut read))
        .collect()
}

/// Rows `[r0, r1)` in order: `(block, row)` pairs. Device by device, each
/// in time order, or by time across devices when ORDER BY starts with
/// TIME (ties in device order).
fn ordered_rows(q: &Select, reads: &[Read], r0: usize, r1: usize) -> Vec<(usize, usize)> {
    let desc = q.time_desc();
    let time_major =
        reads.len() > 1 && q.order_by.first().is_some_and(|(k, _)| *k == SortKey::Time);
    let at = |b: usize, i: usize| {
        if desc {
            reads[b].times.len() - 1 - i
        } else {
            i
        }
    };
    let mut out = Vec::with_capacity(r1 - r0);
    if time_major {
        // k-way merge of the blocks' times, up to row r1.
        let mut heap = BinaryHeap::new();
        let key = |b: usize, i: usize| {
            let t = reads[b].times[at(b, i)];
            (
                if desc {
                    Reverse(-(t as i128))
                } else {
                    Reverse(t as i128)
                },
                Reverse(b),
                i,
            )
        };
        for (b, r) in reads.iter().enumerate() {
            if !r.times.is_empty() {
                heap.push(key(b, 0));
            }
        }
        let mut r = 0;
        while let Some((_, Reverse(b), i)) = heap.pop() {
            if r >= r1 {
                break;
            }
            if r >= r0 {
                out.push((b, at(b, i)));
            }
            r += 1;
            if i + 1 < reads[b].times.len() {
                heap.push(key(b, i + 1));
            }
        }
    } else {
        let mut r = 0;
        for (b, read) in reads.iter().enumerate() {
            let n = read.times.len();
            if r + n > r0 {
                let from = r0.saturating_sub(r);
                let to = n.min(r1 - r);
                out.extend((from..to).map(|i| (b, at(b, i))));
            }
            r += n;
            if r >= r1 {
                break;
            }
        }
    }
    out
}

fn assemble(q: &Select, plan: &Plan, reads: &[Read]) -> SResult<ResultSet> {
    let total: usize = reads.iter().map(|r| r.times.len()).sum();
    let (r0, r1) = page(q, total as u128);
    let (r0, r1) = (r0 as usize, r1 as usize);
    let ncols = plan.columns.len();
    if (r1 - r0).saturating_mul(ncols) > MAX_RESULT_VALUES {
        return Err(StoreError::new(
            status::SEMANTIC_ERROR,
            format!(
                "the query would return {} rows × {ncols} columns, more than {MAX_RESULT_VALUES} values; add LIMIT, narrow the time range or select fewer series",
                r1 - r0
            ),
        ));
    }
    let rows = ordered_rows(q, reads, r0, r1);
    let mut times = Vec::with_capacity(rows.len());
    let mut data: Vec<Column> = plan
        .columns
        .iter()
        .map(|c| Column::with_capacity(c.data_type, rows.len()))
        .collect();
    let mut nulls = vec![vec![false; rows.len()]; ncols];
    let mut filled = vec![false; ncols];
    for (row, &(b, i)) in rows.iter().enumerate() {
        let block = &plan.blocks[b];
        let read = &reads[b];
        let t = read.times[i];
        times.push(t);
        filled.iter_mut().for_each(|f| *f = false);
        if let Some(d) = &block.device {
            data[0].push(Value::Text(d.clone().into_bytes()));
            filled[0] = true;
        }
        for (s, pts) in block.sources.iter().zip(&read.parts) {
            if let Ok(k) = pts.times.binary_search(&t) {
                data[s.column].push(pts.values.get(k));
                filled[s.column] = true;
            }
        }
        for (c, col) in data.iter_mut().enumerate() {
            if !filled[c] {
                nulls[c][row] = true;
                col.push(Value::placeholder(plan.columns[c].data_type));
            }
        }
    }
    Ok(ResultSet {
        columns: plan.columns.iter().map(|c| c.name.clone()).collect(),
        types: plan.columns.iter().map(|c| c.data_type).collect(),
        ignore_timestamp: false,
        times,
        data,
        nulls: nulls
            .into_iter()
            .map(|n| n.contains(&true).then_some(n))
            .collect(),
    })
}

/// `SELECT paths FROM ...`: a column per series, a row per time.
///
/// # Errors
/// Planning errors and the read and result bounds.
pub(super) fn by_time(store: &Store, q: &Select, lo: i64, hi: i64) -> SResult<ResultSet> {
    let plan = plan_by_time(store, q)?;
    let reads = read_all(store, &plan, lo, hi)?;
    assemble(q, &plan, &reads)
}

/// `SELECT measurements FROM devices ... ALIGN BY DEVICE`: `Device`, then
/// a column per measurement; a row per device and time.
///
/// # Errors
/// Planning errors (types differing across devices) and the bounds.
pub(super) fn by_device(store: &Store, q: &Select, lo: i64, hi: i64) -> SResult<ResultSet> {
    let plan = plan_by_device(store, q)?;
    if plan.columns.len() <= 1 {
        return Ok(super::empty());
    }
    let reads = read_all(store, &plan, lo, hi)?;
    assemble(q, &plan, &reads)
}
