//! `SELECT LAST ...`: each series' latest point among those the time
//! filter allows (IoTDB 1.2's last query: a series without such a point
//! gives no row). Columns `Timeseries`, `Value` (as Java prints it) and
//! `DataType`, all TEXT, after `Time`; rows in series order (`ORDER BY
//! TIMESERIES DESC` reverses it), then OFFSET and LIMIT. Each series is
//! read from its end, one part at a time, until a point is found.

use std::collections::BTreeMap;

use protocol::tablet::Column;
use protocol::types::DataType;

use super::format::java_string;
use super::scan::Scan;
use super::{page, series_of};
use crate::exec::ResultSet;
use crate::sql::{Select, SortKey};
use crate::store::{SResult, Store};

/// IoTDB 1.2's last query header (`ColumnHeaderConstant.lastQueryColumnHeaders`).
pub const COLUMNS: [&str; 3] = ["Timeseries", "Value", "DataType"];

/// One series' row.
struct Row {
    time: i64,
    series: String,
    value: String,
    data_type: &'static str,
}

pub(super) fn run(store: &Store, q: &Select, lo: i64, hi: i64) -> SResult<ResultSet> {
    let mut series: BTreeMap<String, DataType> = BTreeMap::new();
    for c in &q.columns {
        series.extend(series_of(store, &q.from, c));
    }
    let mut names: Vec<(String, DataType)> = series.into_iter().collect();
    if q.order_by
        .iter()
        .any(|(k, desc)| *k == SortKey::Timeseries && *desc)
    {
        names.reverse();
    }
    let mut rows: Vec<Row> = Vec::new();
    if lo <= hi {
        for (path, t) in names {
            if let Some((time, p)) = Scan::new(store, &path, lo, hi).last_point()? {
                rows.push(Row {
                    time,
                    series: path,
                    value: java_string(&p.values.get(0)),
                    data_type: t.name(),
                });
            }
        }
    }
    let (r0, r1) = page(q, rows.len() as u128);
    let rows = &rows[r0 as usize..r1 as usize];
    let text = |f: fn(&Row) -> &[u8]| Column::Text(rows.iter().map(|r| f(r).to_vec()).collect());
    Ok(ResultSet {
        columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
        types: vec![DataType::Text; 3],
        ignore_timestamp: false,
        times: rows.iter().map(|r| r.time).collect(),
        data: vec![
            text(|r| r.series.as_bytes()),
            text(|r| r.value.as_bytes()),
            text(|r| r.data_type.as_bytes()),
        ],
        nulls: vec![None; 3],
    })
}
