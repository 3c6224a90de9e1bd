//! SELECT against the seed's example data (seed document 000, section 7,
//! at times 1..6), with the results IoTDB 1.2 gives for the same data and
//! statements, and over long series against values computed here from
//! the points written.

use std::sync::Arc;

use chrono::FixedOffset;
use protocol::tablet::{Column, Tablet};
use protocol::types::{status, DataType};

use super::format::java_string;
use super::scan::TEST_BATCH_POINTS;
use crate::event::Event;
use crate::exec::{Context, Executor, Outcome, Precision, ResultSet};
use crate::store::{Store, StoreConfig};

fn executor(dir: &std::path::Path, flush_points: usize) -> Executor {
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
    let cfg = StoreConfig {
        flush_points,
        ..StoreConfig::default()
    };
    Executor::new(Arc::new(Store::open(&dir.join("store"), log, cfg).unwrap()))
}

fn utc() -> Context {
    Context {
        precision: Precision::Ms,
        zone: FixedOffset::east_opt(0).unwrap(),
        user: "root".into(),
    }
}

/// Seed 000's section 7 script, with times 1..6 for its `now()`s.
fn seed(dir: &std::path::Path) -> Executor {
    let e = executor(dir, crate::store::DEFAULT_FLUSH_POINTS);
    for sql in [
        "SET STORAGE GROUP TO root.vehicle",
        "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE",
        "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN",
        "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE",
        "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN",
        "insert into root.vehicle.d0(timestamp,s0) values(1,10)",
        "insert into root.vehicle.d0(timestamp,s0,s1) values(2,12,'12')",
        "insert into root.vehicle.d0(timestamp,s1) values(3,'14')",
        "insert into root.vehicle.d1(timestamp,s2) values(4,16.0)",
        "insert into root.vehicle.d1(timestamp,s2,s3) values(5,18.0,true)",
        "insert into root.vehicle.d1(timestamp,s3) values(6,false)",
        "flush",
    ] {
        e.execute(&utc(), sql)
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    e
}

fn query(e: &Executor, sql: &str) -> ResultSet {
    match e.execute(&utc(), sql) {
        Ok(Outcome::Rows(r)) => r,
        Ok(Outcome::Done(_)) => panic!("{sql}: no rows"),
        Err(err) => panic!("{sql}: {err}"),
    }
}

/// A result as IoTDB's CLI lays it out: the header, then one line per
/// row (`Time` first unless the result has none), values as Java prints
/// them, `null` for nulls.
fn table(r: &ResultSet) -> Vec<String> {
    let mut head = Vec::new();
    if !r.ignore_timestamp {
        head.push("Time".to_string());
    }
    head.extend(r.columns.iter().cloned());
    let mut out = vec![head.join("|")];
    for row in 0..r.rows() {
        let mut cells = Vec::new();
        if !r.ignore_timestamp {
            cells.push(r.times[row].to_string());
        }
        for c in 0..r.columns.len() {
            cells.push(r.value(row, c).map_or("null".into(), |v| java_string(&v)));
        }
        out.push(cells.join("|"));
    }
    out
}

fn types(r: &ResultSet) -> Vec<&'static str> {
    r.types.iter().map(|t| t.name()).collect()
}

fn error(e: &Executor, sql: &str) -> crate::store::StoreError {
    match e.execute(&utc(), sql) {
        Err(err) => err,
        Ok(_) => panic!("{sql}: no error"),
    }
}

#[test]
fn aggregations_over_the_seed_data() {
    let dir = tempfile::tempdir().unwrap();
    let e = seed(dir.path());
    let r = query(&e, "select count(*) from root.**");
    assert!(r.ignore_timestamp);
    assert_eq!(
        table(&r),
        [
            "count(root.vehicle.d0.s0)|count(root.vehicle.d0.s1)|count(root.vehicle.d1.s2)|count(root.vehicle.d1.s3)",
            "2|2|2|2"
        ]
    );
    assert_eq!(types(&r), ["INT64"; 4]);
    let r = query(
        &e,
        "select sum(s0), avg(s0), min_value(s0), max_value(s0), first_value(s1), last_value(s1), min_time(s1), max_time(s1) from root.vehicle.d0",
    );
    assert_eq!(
        table(&r),
        [
            "sum(root.vehicle.d0.s0)|avg(root.vehicle.d0.s0)|min_value(root.vehicle.d0.s0)|max_value(root.vehicle.d0.s0)|first_value(root.vehicle.d0.s1)|last_value(root.vehicle.d0.s1)|min_time(root.vehicle.d0.s1)|max_time(root.vehicle.d0.s1)",
            "22.0|11.0|10|12|12|14|2|3"
        ]
    );
    assert_eq!(
        types(&r),
        ["DOUBLE", "DOUBLE", "INT32", "INT32", "TEXT", "TEXT", "INT64", "INT64"]
    );
    // FLOAT and BOOLEAN keep their types; min/max_time of any type.
    let r = query(
        &e,
        "SELECT MAX_VALUE(s2), AVG(s2), FIRST_VALUE(s3), LAST_VALUE(s3), MAX_TIME(s3) FROM root.vehicle.d1",
    );
    assert_eq!(
        table(&r),
        [
            "max_value(root.vehicle.d1.s2)|avg(root.vehicle.d1.s2)|first_value(root.vehicle.d1.s3)|last_value(root.vehicle.d1.s3)|max_time(root.vehicle.d1.s3)",
            "18.0|17.0|true|false|6"
        ]
    );
    assert_eq!(
        types(&r),
        ["FLOAT", "DOUBLE", "BOOLEAN", "BOOLEAN", "INT64"]
    );
    // A time filter; nothing in range: count 0, the others null.
    assert_eq!(
        table(&query(
            &e,
            "select count(s0), sum(s0) from root.vehicle.d0 where time >= 2 and time < 100"
        )),
        [
            "count(root.vehicle.d0.s0)|sum(root.vehicle.d0.s0)",
            "1|12.0"
        ]
    );
    assert_eq!(
        table(&query(
            &e,
            "select count(s0), sum(s0), first_value(s0), max_time(s0) from root.vehicle.d0 where time > 100"
        ))[1],
        "0|null|null|null"
    );
    // No series matches: no columns, no rows.
    let r = query(&e, "select count(*) from root.nothing");
    assert_eq!((r.columns.len(), r.rows()), (0, 0));
    // A column repeated is given once.
    assert_eq!(
        table(&query(
            &e,
            "select count(s0), count(*) from root.vehicle.d0"
        ))[0],
        "count(root.vehicle.d0.s0)|count(root.vehicle.d0.s1)"
    );
}

#[test]
fn group_by_time_windows() {
    let dir = tempfile::tempdir().unwrap();
    let e = seed(dir.path());
    let r = query(
        &e,
        "select count(*) from root.vehicle.d1 group by ([1, 7), 2ms)",
    );
    assert!(!r.ignore_timestamp);
    assert_eq!(
        table(&r),
        [
            "Time|count(root.vehicle.d1.s2)|count(root.vehicle.d1.s3)",
            "1|0|0",
            "3|1|0",
            "5|1|2"
        ]
    );
    // Empty windows: null for everything but count.
    assert_eq!(
        table(&query(
            &e,
            "select last_value(s2), max_value(s2), min_time(s2) from root.vehicle.d1 group by ([1, 7), 2ms)"
        )),
        [
            "Time|last_value(root.vehicle.d1.s2)|max_value(root.vehicle.d1.s2)|min_time(root.vehicle.d1.s2)",
            "1|null|null|null",
            "3|16.0|16.0|4",
            "5|18.0|18.0|5"
        ]
    );
    // (t1, t2]: windows open on the left, rows at their ends.
    assert_eq!(
        table(&query(
            &e,
            "select count(s0), sum(s0) from root.vehicle.d0 group by ((0, 4], 2ms)"
        )),
        [
            "Time|count(root.vehicle.d0.s0)|sum(root.vehicle.d0.s0)",
            "2|2|22.0",
            "4|0|null"
        ]
    );
    // A sliding step: windows [0,3) [1,4) [2,5) [3,6) [4,7), the last cut at 6.
    assert_eq!(
        table(&query(
            &e,
            "select count(s1) from root.vehicle.d0 group by ([0, 6), 3ms, 1ms)"
        )),
        [
            "Time|count(root.vehicle.d0.s1)",
            "0|1",
            "1|2",
            "2|2",
            "3|1",
            "4|0",
            "5|0"
        ]
    );
    // WHERE narrows each window; ORDER BY TIME DESC, LIMIT and OFFSET.
    assert_eq!(
        table(&query(
            &e,
            "select count(s0) from root.vehicle.d0 where time > 1 group by ([0, 10), 2ms) order by time desc limit 3 offset 2"
        )),
        ["Time|count(root.vehicle.d0.s0)", "4|0", "2|1", "0|0"]
    );
    // Datetimes and durations in the range.
    let r = query(
        &e,
        "select count(s0) from root.vehicle.d0 group by ([1970-01-01T00:00:00Z, 1970-01-01T00:00:00Z + 1s), 500ms)",
    );
    assert_eq!(
        table(&r),
        ["Time|count(root.vehicle.d0.s0)", "0|2", "500|0"]
    );
}

#[test]
fn last_query_as_iotdb() {
    let dir = tempfile::tempdir().unwrap();
    let e = seed(dir.path());
    let r = query(&e, "select last * from root.vehicle.*");
    assert_eq!(
        table(&r),
        [
            "Time|Timeseries|Value|DataType",
            "2|root.vehicle.d0.s0|12|INT32",
            "3|root.vehicle.d0.s1|14|TEXT",
            "5|root.vehicle.d1.s2|18.0|FLOAT",
            "6|root.vehicle.d1.s3|false|BOOLEAN"
        ]
    );
    assert_eq!(types(&r), ["TEXT"; 3]);
    assert_eq!(
        table(&query(&e, "select last ** from root where time >= 5")),
        [
            "Time|Timeseries|Value|DataType",
            "5|root.vehicle.d1.s2|18.0|FLOAT",
            "6|root.vehicle.d1.s3|false|BOOLEAN"
        ]
    );
    // The latest point the filter allows, not the series' latest.
    assert_eq!(
        table(&query(
            &e,
            "select last s0, s1 from root.vehicle.d0 where time < 3"
        ))[1..],
        [
            "2|root.vehicle.d0.s0|12|INT32",
            "2|root.vehicle.d0.s1|12|TEXT"
        ]
    );
    assert_eq!(
        table(&query(
            &e,
            "select last * from root.vehicle.* order by timeseries desc limit 2 offset 1"
        ))[1..],
        [
            "5|root.vehicle.d1.s2|18.0|FLOAT",
            "3|root.vehicle.d0.s1|14|TEXT"
        ]
    );
    // Deleted points are not last.
    e.execute(&utc(), "delete from root.vehicle.d1.s3 where time >= 6")
        .unwrap();
    assert_eq!(
        table(&query(&e, "select last s3 from root.vehicle.d1"))[1],
        "5|root.vehicle.d1.s3|true|BOOLEAN"
    );
    assert_eq!(
        query(&e, "select last s0 from root.vehicle.d0 where time > 9").rows(),
        0
    );
}

#[test]
fn align_by_device_as_iotdb() {
    let dir = tempfile::tempdir().unwrap();
    let e = seed(dir.path());
    let r = query(&e, "select * from root.vehicle.* align by device");
    assert_eq!(
        table(&r),
        [
            "Time|Device|s0|s1|s2|s3",
            "1|root.vehicle.d0|10|null|null|null",
            "2|root.vehicle.d0|12|12|null|null",
            "3|root.vehicle.d0|null|14|null|null",
            "4|root.vehicle.d1|null|null|16.0|null",
            "5|root.vehicle.d1|null|null|18.0|true",
            "6|root.vehicle.d1|null|null|null|false"
        ]
    );
    assert_eq!(types(&r), ["TEXT", "INT32", "TEXT", "FLOAT", "BOOLEAN"]);
    let r = query(&e, "select count(*) from root.vehicle.* align by device");
    assert!(r.ignore_timestamp);
    assert_eq!(
        table(&r),
        [
            "Device|count(s0)|count(s1)|count(s2)|count(s3)",
            "root.vehicle.d0|2|2|null|null",
            "root.vehicle.d1|null|null|2|2"
        ]
    );
    assert_eq!(
        table(&query(
            &e,
            "select count(s2), last_value(s3) from root.vehicle.* group by ([0, 6), 3ms) order by device desc align by device"
        )),
        [
            "Time|Device|count(s2)|last_value(s3)",
            "0|root.vehicle.d1|0|null",
            "3|root.vehicle.d1|2|true"
        ]
    );
    // ORDER BY TIME first: windows by time across devices.
    assert_eq!(
        table(&query(
            &e,
            "select count(s0), count(s2) from root.vehicle.* group by ([0, 6), 3ms) order by time align by device"
        )),
        [
            "Time|Device|count(s0)|count(s2)",
            "0|root.vehicle.d0|2|null",
            "0|root.vehicle.d1|null|0",
            "3|root.vehicle.d0|0|null",
            "3|root.vehicle.d1|null|2"
        ]
    );
    // ORDER BY TIME first: rows by time across devices.
    assert_eq!(
        table(&query(
            &e,
            "select s0, s2 from root.vehicle.* order by time desc limit 3 align by device"
        ))[1..],
        [
            "5|root.vehicle.d1|null|18.0",
            "4|root.vehicle.d1|null|16.0",
            "2|root.vehicle.d0|12|null"
        ]
    );
    // A measurement whose types differ across devices.
    e.execute(
        &utc(),
        "insert into root.vehicle.d1(time, s0) values (7, 'x')",
    )
    .unwrap();
    let err = error(&e, "select s0 from root.vehicle.* align by device");
    assert_eq!(err.code, status::SEMANTIC_ERROR);
    assert_eq!(err.message, "ALIGN BY DEVICE: the data types of the same measurement column should be the same across devices.");
    // ... is fine where the aggregation's type is the same (count: INT64).
    assert_eq!(
        table(&query(
            &e,
            "select count(s0) from root.vehicle.* align by device"
        ))[1..],
        ["root.vehicle.d0|2", "root.vehicle.d1|1"]
    );
}

#[test]
fn iotdb_semantic_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = seed(dir.path());
    for (sql, message) in [
        ("select sum(*) from root.vehicle.d0", "Aggregate functions [AVG, SUM, EXTREME, MIN_VALUE, MAX_VALUE] only support numeric data types [INT32, INT64, FLOAT, DOUBLE]"),
        ("select avg(s3) from root.vehicle.d1", "Aggregate functions [AVG, SUM, EXTREME, MIN_VALUE, MAX_VALUE] only support numeric data types [INT32, INT64, FLOAT, DOUBLE]"),
        ("select max_value(s1) from root.vehicle.d0 align by device", "Aggregate functions [AVG, SUM, EXTREME, MIN_VALUE, MAX_VALUE] only support numeric data types [INT32, INT64, FLOAT, DOUBLE]"),
        ("select count(s0), s1 from root.vehicle.d0", "Raw data and aggregation hybrid query is not supported."),
        ("select s0 from root.vehicle.d0 group by ([0, 10), 1ms)", "Common queries and aggregated queries are not allowed to appear at the same time"),
        ("select last count(s0) from root.vehicle.d0", "Last queries can only be applied on raw time series."),
        ("select last s0 from root.vehicle.d0 align by device", "Last query doesn't support align by device."),
        ("select s0 from root.vehicle.d0 order by timeseries", "Sorting by timeseries is only supported in last queries."),
        ("select s0 from root.vehicle.d0 order by device", "Sorting by device is only supported in ALIGN BY DEVICE queries."),
        ("select count(s0) from root.vehicle.d0 group by ([10, 0), 1ms)", "Start time should be smaller than endTime in GroupBy"),
        ("select count(s0) from root.vehicle.d0 group by ([0, 10), 0ms)", "The second parameter time interval should be a positive integer."),
    ] {
        let err = error(&e, sql);
        assert_eq!((err.code, err.message.as_str()), (status::SEMANTIC_ERROR, message), "{sql}");
    }
    let err = error(
        &e,
        "select count(s0) from root.vehicle.d0 group by ([0, 10), 1mo)",
    );
    assert!(err.message.contains("natural months"), "{err}");
    // Windows beyond the result bound are refused, unless LIMIT pages them.
    let err = error(
        &e,
        "select count(s0) from root.vehicle.d0 group by ([-9223372036854775808, 9223372036854775807), 1ms)",
    );
    assert!(err.message.contains("more than"), "{err}");
    let r = query(
        &e,
        "select count(s0) from root.vehicle.d0 group by ([-9223372036854775808, 9223372036854775807), 1ms) order by time desc limit 2",
    );
    assert_eq!(r.times, [9223372036854775806, 9223372036854775805]);
}

/// Writes `n` points to `root.big.d.{i,f}` (INT32 and DOUBLE) at times
/// `start + 3k`, in tablets of `per` rows.
fn write_long(e: &Executor, n: usize, start: i64, per: usize) -> (Vec<i64>, Vec<i32>, Vec<f64>) {
    let times: Vec<i64> = (0..n as i64).map(|k| start + 3 * k).collect();
    let ints: Vec<i32> = (0..n as i64)
        .map(|k| ((k * 7919) % 20011 - 10000) as i32)
        .collect();
    let doubles: Vec<f64> = (0..n).map(|k| (k % 977) as f64 * 0.25 - 100.0).collect();
    for at in (0..n).step_by(per) {
        let end = (at + per).min(n);
        let t = Tablet {
            device: "root.big.d".into(),
            measurements: vec!["i".into(), "f".into()],
            columns: vec![
                Column::Int32(ints[at..end].to_vec()),
                Column::Double(doubles[at..end].to_vec()),
            ],
            nulls: vec![None, None],
            times: times[at..end].to_vec(),
            aligned: false,
        };
        e.store().write(Event::Tablet(t)).unwrap();
    }
    (times, ints, doubles)
}

/// count, sum, avg, min/max, first/last and min/max time of a slice,
/// computed directly (in time order, as IoTDB adds them).
fn expected_row(times: &[i64], ints: &[i32], doubles: &[f64]) -> String {
    if times.is_empty() {
        return "0|null|null|null|null|null|null|null|null|0|null".into();
    }
    let isum: i64 = ints.iter().map(|&x| i64::from(x)).sum();
    let dsum = doubles.iter().fold(0.0, |a, &x| a + x);
    let n = times.len();
    [
        n.to_string(),
        java_string(&protocol::types::Value::Double(isum as f64)),
        java_string(&protocol::types::Value::Double(isum as f64 / n as f64)),
        ints.iter().min().unwrap().to_string(),
        ints.iter().max().unwrap().to_string(),
        ints[0].to_string(),
        ints[n - 1].to_string(),
        times[0].to_string(),
        times[n - 1].to_string(),
        n.to_string(),
        java_string(&protocol::types::Value::Double(dsum)),
    ]
    .join("|")
}

const ALL_AGGREGATIONS: &str = "count(i), sum(i), avg(i), min_value(i), max_value(i), first_value(i), last_value(i), min_time(i), max_time(i), count(f), sum(f)";

/// A million points over many chunks, with rewrites and a deletion, read
/// in small batches: every aggregation and GROUP BY window agrees with the
/// values computed from the points written.
#[test]
fn a_million_points_aggregate_one_part_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    // Chunks of about 100k points; the scan reads 64k at a time.
    let e = executor(dir.path(), 100_000);
    TEST_BATCH_POINTS.with(|b| b.set(Some(64 << 10)));
    let n = 1_000_000;
    let (mut times, mut ints, mut doubles) = write_long(&e, n, 1_000, 50_000);
    // Rewrite a stretch (a later chunk overlapping earlier ones) and
    // delete another: the scan must merge and drop as a read does.
    e.execute(
        &utc(),
        "insert into root.big.d(time, i, f) values (1000, 5, 0.5), (1300000, -7, 1.5)",
    )
    .unwrap();
    ints[0] = 5;
    doubles[0] = 0.5;
    let k = times.binary_search(&1_300_000).unwrap();
    ints[k] = -7;
    doubles[k] = 1.5;
    e.execute(
        &utc(),
        "delete from root.big.d.* where time >= 2000000 and time <= 2100000",
    )
    .unwrap();
    let keep: Vec<usize> = (0..times.len())
        .filter(|&k| !(2_000_000..=2_100_000).contains(&times[k]))
        .collect();
    times = keep.iter().map(|&k| times[k]).collect();
    ints = keep.iter().map(|&k| ints[k]).collect();
    doubles = keep.iter().map(|&k| doubles[k]).collect();
    e.execute(&utc(), "flush").unwrap();
    // Some points still in the memtable.
    e.execute(
        &utc(),
        "insert into root.big.d(time, i, f) values (3001000, 1, 2.0)",
    )
    .unwrap();
    times.push(3_001_000);
    ints.push(1);
    doubles.push(2.0);

    let whole = table(&query(
        &e,
        &format!("select {ALL_AGGREGATIONS} from root.big.d"),
    ));
    assert_eq!(whole[1], expected_row(&times, &ints, &doubles));
    // A time filter cutting chunks.
    let (lo, hi) = (123_457, 2_345_679);
    let a = times.partition_point(|&t| t < lo);
    let b = times.partition_point(|&t| t < hi);
    let r = table(&query(
        &e,
        &format!("select {ALL_AGGREGATIONS} from root.big.d where time >= {lo} and time < {hi}"),
    ));
    assert_eq!(
        r[1],
        expected_row(&times[a..b], &ints[a..b], &doubles[a..b])
    );
    // GROUP BY windows, including empty ones past the end.
    let (start, end, step) = (0i64, 3_200_000i64, 250_000i64);
    let r = table(&query(
        &e,
        &format!("select {ALL_AGGREGATIONS} from root.big.d group by ([{start}, {end}), {step}ms)"),
    ));
    assert_eq!(
        r.len() - 1,
        ((end - start) as u64).div_ceil(step as u64) as usize
    );
    for (w, line) in r[1..].iter().enumerate() {
        let ws = start + w as i64 * step;
        let a = times.partition_point(|&t| t < ws);
        let b = times.partition_point(|&t| t < (ws + step).min(end));
        assert_eq!(
            *line,
            format!(
                "{ws}|{}",
                expected_row(&times[a..b], &ints[a..b], &doubles[a..b])
            ),
            "window {w}"
        );
    }
    // Sliding windows, right-closed.
    let r = table(&query(
        &e,
        "select count(i), sum(f), last_value(i) from root.big.d group by ((1000000, 2000000], 300000ms, 100000ms)",
    ));
    for (w, line) in r[1..].iter().enumerate() {
        let ws = 1_000_000 + w as i64 * 100_000;
        let we = (ws + 300_000).min(2_000_000);
        let a = times.partition_point(|&t| t <= ws);
        let b = times.partition_point(|&t| t <= we);
        let sum = doubles[a..b].iter().fold(0.0, |x, &y| x + y);
        let last = if a < b {
            ints[b - 1].to_string()
        } else {
            "null".into()
        };
        assert_eq!(
            *line,
            format!(
                "{we}|{}|{}|{last}",
                b - a,
                if a < b {
                    java_string(&protocol::types::Value::Double(sum))
                } else {
                    "null".into()
                }
            ),
            "window {w}"
        );
    }
    // The last point, and the latest one a filter allows.
    let r = table(&query(&e, "select last i from root.big.d"));
    assert_eq!(r[1], "3001000|root.big.d.i|1|INT32");
    let r = table(&query(
        &e,
        "select last f from root.big.d where time < 2050000",
    ));
    let k = times.partition_point(|&t| t < 2_050_000) - 1;
    assert_eq!(
        r[1],
        format!(
            "{}|root.big.d.f|{}|DOUBLE",
            times[k],
            java_string(&protocol::types::Value::Double(doubles[k]))
        )
    );
    assert_eq!(
        types(&query(
            &e,
            "select min_value(i), min_value(f) from root.big.d"
        )),
        [DataType::Int32.name(), DataType::Double.name()]
    );
    TEST_BATCH_POINTS.with(|b| b.set(None));
}
