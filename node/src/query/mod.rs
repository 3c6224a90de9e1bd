//! SELECT: raw rows, aggregations (whole range or GROUP BY time windows),
//! last points; aligned by time or by device. The result is what IoTDB
//! 1.2 returns for the same data: column names, types, nulls, row order
//! and its semantic errors in its words.
//!
//! - [`window`]: durations and GROUP BY windows.
//! - [`scan`]: reading a series a part at a time (aggregations hold about
//!   one chunk in memory, whatever the series' length).
//! - [`aggregate`](mod@aggregate): the aggregation functions and their type rules.
//! - [`format`](mod@format): values as Java prints them (a last query's `Value`).
//! - `raw` and `last`: raw rows and last points.
//!
//! Columns: an aggregation's is `count(root.sg.d1.s1)` (the function in
//! lower case), ALIGN BY DEVICE's are `Device` then `count(s1)` or `s1`,
//! a last query's `Timeseries`, `Value`, `DataType` after `Time`.
//! Series come in path order within each result column (IoTDB 1.2 takes
//! its schema tree's order); a column that repeats an earlier one is
//! given once.

pub mod aggregate;
pub mod format;
mod last;
mod raw;
pub mod scan;
pub mod window;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use protocol::names;
use protocol::tablet::Column;
use protocol::types::{status, DataType, Value};

use crate::exec::{self, Context, ResultSet, MAX_RESULT_VALUES};
use crate::sql::{Aggregation, Node, Path, ResultColumn, Select, SortKey};
use crate::store::{SResult, Store, StoreError};
use aggregate::Acc;
use scan::Scan;
use window::Windows;

/// IoTDB 1.2's message (`QueryStatement.RAW_AGGREGATION_HYBRID_QUERY_ERROR_MSG`).
const RAW_AGGREGATION_HYBRID: &str = "Raw data and aggregation hybrid query is not supported.";

fn semantic(message: impl Into<String>) -> StoreError {
    StoreError::new(status::SEMANTIC_ERROR, message)
}

fn too_many_values(rows: u128, columns: usize) -> StoreError {
    semantic(format!(
        "the query would return {rows} rows × {columns} columns, more than {MAX_RESULT_VALUES} values; add LIMIT, narrow the time range, or use a longer GROUP BY interval"
    ))
}

/// IoTDB 1.2's semantic checks of a SELECT (`QueryStatement.semanticCheck`),
/// in its order and words, plus what edgepipe does not support.
fn check(q: &Select) -> SResult<()> {
    let aggregated = q
        .columns
        .iter()
        .any(|c| matches!(c, ResultColumn::Aggregate(..)));
    let sorts = |k: SortKey| q.order_by.iter().any(|(key, _)| *key == k);
    if aggregated {
        if q.columns.iter().any(|c| matches!(c, ResultColumn::Path(_))) {
            return Err(semantic(RAW_AGGREGATION_HYBRID));
        }
    } else if q.group_by.is_some() {
        return Err(semantic(
            "Common queries and aggregated queries are not allowed to appear at the same time",
        ));
    }
    if q.align_by_device && sorts(SortKey::Timeseries) {
        return Err(semantic(
            "Sorting by timeseries is only supported in last queries.",
        ));
    }
    if q.last {
        if q.align_by_device {
            return Err(semantic("Last query doesn't support align by device."));
        }
        if aggregated {
            return Err(semantic(
                "Last queries can only be applied on raw time series.",
            ));
        }
        if sorts(SortKey::Device) {
            return Err(semantic(
                "Sorting by device is only supported in ALIGN BY DEVICE queries.",
            ));
        }
        if sorts(SortKey::Time) {
            return Err(StoreError::new(
                status::UNSUPPORTED_OPERATION,
                "ORDER BY TIME in a last query is not supported; use ORDER BY TIMESERIES [ASC|DESC]",
            ));
        }
    }
    if !q.align_by_device && !q.last {
        if sorts(SortKey::Timeseries) {
            return Err(semantic(
                "Sorting by timeseries is only supported in last queries.",
            ));
        }
        if sorts(SortKey::Device) {
            return Err(semantic(
                "Sorting by device is only supported in ALIGN BY DEVICE queries.",
            ));
        }
    }
    Ok(())
}

/// Runs a SELECT against `store`.
///
/// # Errors
/// IoTDB's semantic errors, unsupported forms, and the result bounds.
pub fn run(store: &Store, ctx: &Context, q: &Select) -> SResult<ResultSet> {
    check(q)?;
    let (lo, hi) = exec::range(ctx, &q.filter)?;
    if q.last {
        return last::run(store, q, lo, hi);
    }
    let aggregated = q
        .columns
        .iter()
        .any(|c| matches!(c, ResultColumn::Aggregate(..)));
    if !aggregated {
        return if q.align_by_device {
            raw::by_device(store, q, lo, hi)
        } else {
            raw::by_time(store, q, lo, hi)
        };
    }
    let windows = match &q.group_by {
        None => Windows::Single,
        Some(g) => {
            let p = ctx.precision;
            Windows::grouped(
                exec::to_time(ctx, &g.start)?,
                exec::to_time(ctx, &g.end)?,
                window::duration_units(p, &g.interval)?,
                g.step
                    .as_ref()
                    .map(|s| window::duration_units(p, s))
                    .transpose()?,
                g.left_closed,
            )?
        }
    };
    let plan = if q.align_by_device {
        plan_by_device(store, q)?
    } else {
        plan_by_time(store, q)?
    };
    aggregate(store, q, &plan, &windows, lo, hi)
}

/// One output column: its header and type.
#[derive(Debug, Clone)]
struct OutColumn {
    name: String,
    data_type: DataType,
}

/// What one output column reads in one block: a series, and the
/// aggregation (none: raw values).
#[derive(Debug, Clone)]
struct Source {
    column: usize,
    series: String,
    series_type: DataType,
    aggregation: Option<Aggregation>,
}

/// Rows sharing a device (or all rows, aligned by time).
#[derive(Debug, Clone)]
struct Block {
    device: Option<String>,
    sources: Vec<Source>,
}

/// Output columns and blocks of a query.
#[derive(Debug, Clone)]
struct Plan {
    columns: Vec<OutColumn>,
    blocks: Vec<Block>,
}

/// Series matching `column` under any of `from`, in path order, each once.
fn series_of(store: &Store, from: &[Path], column: &ResultColumn) -> Vec<(String, DataType)> {
    let patterns: Vec<Path> = from.iter().map(|f| f.join(column.path())).collect();
    store
        .series_matching(&patterns)
        .into_iter()
        .map(|(p, info)| (p, info.data_type))
        .collect()
}

/// Columns aligned by time: one per (result column, matching series).
fn plan_by_time(store: &Store, q: &Select) -> SResult<Plan> {
    let mut columns = Vec::new();
    let mut sources = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &q.columns {
        for (series, t) in series_of(store, &q.from, c) {
            let (name, data_type, aggregation) = match c {
                ResultColumn::Path(_) => (series.clone(), t, None),
                ResultColumn::Aggregate(a, _) => (
                    format!("{}({series})", a.name()),
                    aggregate::result_type(*a, t)?,
                    Some(*a),
                ),
            };
            if !seen.insert(name.clone()) {
                continue;
            }
            sources.push(Source {
                column: columns.len(),
                series,
                series_type: t,
                aggregation,
            });
            columns.push(OutColumn { name, data_type });
        }
    }
    Ok(Plan {
        columns,
        blocks: vec![Block {
            device: None,
            sources,
        }],
    })
}

/// The last node of a stored series path (which may hold a dot inside
/// backquotes) and the device before it.
fn split_series(path: &str) -> (&str, &str) {
    let last = names::split_nodes(path)
        .ok()
        .and_then(|n| n.last().map(|l| l.len()))
        .unwrap_or_else(|| path.len() - path.rfind('.').map_or(0, |i| i + 1));
    let device = &path[..path.len().saturating_sub(last + 1)];
    (device, &path[path.len() - last..])
}

/// Device paths compared node by node, as IoTDB's `PartialPath` sorts.
fn device_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (names::split_nodes(a), names::split_nodes(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Columns aligned by device: `Device`, then one per (result column,
/// measurement) over the devices the FROM paths match, in device order.
fn plan_by_device(store: &Store, q: &Select) -> SResult<Plan> {
    // Devices matching a FROM path: the series one level below them.
    let one_below: Vec<Path> = q
        .from
        .iter()
        .map(|f| f.join(&Path(vec![Node::One])))
        .collect();
    // Device → its (measurement, series, type).
    type Measurements = Vec<(String, String, DataType)>;
    let mut devices: BTreeMap<String, Measurements> = BTreeMap::new();
    for (series, info) in store.series_matching(&one_below) {
        let (device, measurement) = split_series(&series);
        let (device, measurement) = (device.to_string(), measurement.to_string());
        devices
            .entry(device)
            .or_default()
            .push((measurement, series, info.data_type));
    }
    let mut devices: Vec<(String, Measurements)> = devices.into_iter().collect();
    devices.sort_by(|a, b| device_order(&a.0, &b.0));
    if q.order_by
        .iter()
        .any(|(k, desc)| *k == SortKey::Device && *desc)
    {
        devices.reverse();
    }
    let mut columns: Vec<OutColumn> = vec![OutColumn {
        name: "Device".into(),
        data_type: DataType::Text,
    }];
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut blocks: Vec<Block> = devices
        .iter()
        .map(|(d, _)| Block {
            device: Some(d.clone()),
            sources: Vec::new(),
        })
        .collect();
    for c in &q.columns {
        // The columns this result column adds, and their sources.
        let mut added: Vec<(String, Vec<(usize, Source)>)> = Vec::new();
        for (bi, (_, series)) in devices.iter().enumerate() {
            for (m, full, t) in series {
                if !c.path().matches(&[m.as_str()]) {
                    continue;
                }
                let (name, aggregation) = match c {
                    ResultColumn::Path(_) => (m.clone(), None),
                    ResultColumn::Aggregate(a, _) => (format!("{}({m})", a.name()), Some(*a)),
                };
                let src = Source {
                    column: 0,
                    series: full.clone(),
                    series_type: *t,
                    aggregation,
                };
                match added.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.push((bi, src)),
                    None => added.push((name, vec![(bi, src)])),
                }
            }
        }
        for (name, srcs) in added {
            if by_name.contains_key(&name) {
                continue;
            }
            let mut data_type = None;
            for (_, s) in &srcs {
                let t = match s.aggregation {
                    Some(a) => aggregate::result_type(a, s.series_type)?,
                    None => s.series_type,
                };
                if data_type.is_some_and(|d| d != t) {
                    return Err(semantic("ALIGN BY DEVICE: the data types of the same measurement column should be the same across devices."));
                }
                data_type = Some(t);
            }
            let column = columns.len();
            by_name.insert(name.clone(), column);
            columns.push(OutColumn {
                name,
                data_type: data_type.expect("a column has a source"),
            });
            for (bi, mut s) in srcs {
                s.column = column;
                blocks[bi].sources.push(s);
            }
        }
    }
    // Devices none of whose measurements were selected give no rows.
    blocks.retain(|b| !b.sources.is_empty());
    Ok(Plan { columns, blocks })
}

/// Values of one column over some rows, with nulls.
#[derive(Debug, Clone)]
struct Values {
    data: Column,
    nulls: Vec<bool>,
}

impl Values {
    fn get(&self, i: usize) -> Option<Value> {
        (!self.nulls[i]).then(|| self.data.get(i))
    }
}

/// Aggregates `block`'s sources over windows `k0..=k1` (each intersected
/// with `[lo, hi]`): per output column, one value per window. Each series
/// is scanned once for all of its aggregations.
fn aggregate_block(
    store: &Store,
    block: &Block,
    ncolumns: usize,
    windows: &Windows,
    (k0, k1): (u64, u64),
    (lo, hi): (i64, i64),
) -> SResult<Vec<Option<Values>>> {
    let n = usize::try_from(k1 - k0 + 1).unwrap_or(usize::MAX);
    let mut out: Vec<Option<Values>> = vec![None; ncolumns];
    let mut by_series: BTreeMap<&str, Vec<&Source>> = BTreeMap::new();
    for s in &block.sources {
        by_series.entry(s.series.as_str()).or_default().push(s);
    }
    for (series, sources) in by_series {
        let t = sources[0].series_type;
        let aggs: Vec<Aggregation> = sources
            .iter()
            .map(|s| s.aggregation.expect("an aggregation's source"))
            .collect();
        let mut accs: Vec<Acc> = aggs.iter().map(|&a| Acc::new(a, t)).collect();
        let mut results: Vec<Values> = aggs
            .iter()
            .map(|&a| Values {
                data: Column::with_capacity(
                    aggregate::result_type(a, t).expect("checked when planned"),
                    n,
                ),
                nulls: Vec::with_capacity(n),
            })
            .collect();
        let (slo, shi) = (windows.window(k0).0.max(lo), windows.window(k1).1.min(hi));
        let mut scan = Scan::new(store, series, slo, shi);
        if k0 == k1 && aggs.iter().all(|&a| aggregate::needs_last_only(a)) {
            // The latest point settles every aggregation: read from the end.
            if let Some((_, p)) = scan.last_point()? {
                for a in &mut accs {
                    a.add(&p.times, &p.values, 0..1);
                }
            }
            for (a, r) in accs.iter_mut().zip(&mut results) {
                a.finish(&mut r.data, &mut r.nulls);
            }
        } else {
            run_windows(&mut scan, &accs, &mut results, windows, (k0, k1), (lo, hi))?;
        }
        for (r, s) in results.into_iter().zip(&sources) {
            out[s.column] = Some(r);
        }
    }
    Ok(out)
}

/// Adds the points of `p` in `[a, b]` to every accumulator.
fn feed(accs: &mut [Acc], p: &crate::store::Points, a: i64, b: i64) {
    let i = p.times.partition_point(|&t| t < a);
    let j = p.times.partition_point(|&t| t <= b);
    if i < j {
        for acc in accs {
            acc.add(&p.times, &p.values, i..j);
        }
    }
}

/// Feeds windows `k0..=k1` from `scan`, one batch at a time, and
/// finishes each window's accumulators into `results` in window order.
///
/// A batch is given to every window it overlaps; a window stays open
/// until the scan has passed its end (at most a few are open: one, or
/// interval ÷ step for sliding windows). So one batch is held at a time,
/// however the store's parts fall against the windows.
fn run_windows(
    scan: &mut Scan<'_>,
    accs: &[Acc],
    results: &mut [Values],
    windows: &Windows,
    (k0, k1): (u64, u64),
    (lo, hi): (i64, i64),
) -> SResult<()> {
    // Window k's time range within [lo, hi] (empty when start > end).
    let range = |k: u64| {
        let (a, b, _) = windows.window(k);
        (a.max(lo), b.min(hi))
    };
    let finish = |accs: &mut Vec<Acc>, results: &mut [Values]| {
        for (acc, r) in accs.iter_mut().zip(results.iter_mut()) {
            acc.finish(&mut r.data, &mut r.nulls);
        }
    };
    let mut open: std::collections::VecDeque<(u64, Vec<Acc>)> = Default::default();
    let mut next = k0;
    while let Some((_, end, p)) = scan.next_front()? {
        while next <= k1 && range(next).0 <= end {
            open.push_back((next, accs.to_vec()));
            next += 1;
        }
        for (k, a) in open.iter_mut() {
            let (ws, we) = range(*k);
            feed(a, &p, ws, we);
        }
        drop(p);
        while open.front().is_some_and(|(k, _)| range(*k).1 <= end) {
            let (_, mut a) = open.pop_front().expect("non-empty");
            finish(&mut a, results);
        }
        // Windows settled by their first point need no more of it.
        if open.iter().all(|(_, a)| a.iter().all(Acc::settled)) {
            if next > k1 {
                break;
            }
            scan.skip_before(range(next).0);
        }
    }
    for (_, mut a) in open.drain(..) {
        finish(&mut a, results);
    }
    for _ in next..=k1 {
        finish(&mut accs.to_vec(), results);
    }
    Ok(())
}

/// An empty result: no columns, no rows (what IoTDB answers when no
/// series matches).
fn empty() -> ResultSet {
    ResultSet {
        columns: Vec::new(),
        types: Vec::new(),
        ignore_timestamp: false,
        times: Vec::new(),
        data: Vec::new(),
        nulls: Vec::new(),
    }
}

/// Rows `[r0, r1)` of `total`, from OFFSET and LIMIT (as large as u64
/// allows: clamped, never wrapped).
fn page(q: &Select, total: u128) -> (u128, u128) {
    let r0 = u128::from(q.offset).min(total);
    let r1 = q
        .limit
        .map_or(total, |l| r0.saturating_add(u128::from(l)).min(total));
    (r0, r1)
}

/// Aggregation rows: per block, one per window; ordered as ORDER BY says
/// and paged, computing only the windows of the rows returned.
fn aggregate(
    store: &Store,
    q: &Select,
    plan: &Plan,
    windows: &Windows,
    lo: i64,
    hi: i64,
) -> SResult<ResultSet> {
    let ncols = plan.columns.len();
    let value_columns = ncols - usize::from(q.align_by_device);
    if value_columns == 0 || plan.blocks.is_empty() {
        return Ok(empty());
    }
    let nb = plan.blocks.len() as u128;
    let n = u128::from(windows.count());
    let (r0, r1) = page(q, nb * n);
    let rows = r1 - r0;
    if rows.saturating_mul(ncols as u128) > MAX_RESULT_VALUES as u128 {
        return Err(too_many_values(rows, ncols));
    }
    // Device by device (each in time order), or time by time across
    // devices when ORDER BY starts with TIME.
    let time_major =
        q.align_by_device && q.order_by.first().is_some_and(|(k, _)| *k == SortKey::Time);
    let desc = q.time_desc();
    let locate = |r: u128| -> (usize, u64) {
        let (b, k) = if time_major {
            (r % nb, r / nb)
        } else {
            (r / n, r % n)
        };
        let k = if desc { n - 1 - k } else { k };
        (b as usize, k as u64)
    };
    let mut need: Vec<Option<(u64, u64)>> = vec![None; plan.blocks.len()];
    for r in r0..r1 {
        let (b, k) = locate(r);
        need[b] = Some(need[b].map_or((k, k), |(x, y)| (x.min(k), y.max(k))));
    }
    let computed: Vec<Option<(u64, Vec<Option<Values>>)>> = need
        .iter()
        .zip(&plan.blocks)
        .map(|(nd, block)| {
            nd.map(|(k0, k1)| {
                aggregate_block(store, block, ncols, windows, (k0, k1), (lo, hi)).map(|v| (k0, v))
            })
            .transpose()
        })
        .collect::<SResult<_>>()?;
    let rows = rows as usize;
    let mut times = Vec::with_capacity(rows);
    let mut data: Vec<Column> = plan
        .columns
        .iter()
        .map(|c| Column::with_capacity(c.data_type, rows))
        .collect();
    let mut nulls = vec![vec![false; rows]; ncols];
    for (i, r) in (r0..r1).enumerate() {
        let (b, k) = locate(r);
        let (k0, values) = computed[b].as_ref().expect("computed for its rows");
        times.push(windows.window(k).2);
        let at = (k - k0) as usize;
        for (c, col) in data.iter_mut().enumerate() {
            let v = match (&plan.blocks[b].device, &values[c]) {
                (Some(d), _) if c == 0 => Some(Value::Text(d.clone().into_bytes())),
                (_, Some(v)) => v.get(at),
                (_, None) => None,
            };
            match v {
                Some(v) => col.push(v),
                None => {
                    nulls[c][i] = true;
                    col.push(Value::placeholder(plan.columns[c].data_type));
                }
            }
        }
    }
    Ok(ResultSet {
        columns: plan.columns.iter().map(|c| c.name.clone()).collect(),
        types: plan.columns.iter().map(|c| c.data_type).collect(),
        ignore_timestamp: *windows == Windows::Single,
        times,
        data,
        nulls: nulls
            .into_iter()
            .map(|n| n.contains(&true).then_some(n))
            .collect(),
    })
}
