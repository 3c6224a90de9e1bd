//! Runs parsed statements against the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset, TimeZone};
use protocol::tablet::Column;
use protocol::types::{status, DataType, Value};

use crate::event::{Event, SchemaOp};
use crate::sql::{self, Node, Path, Statement, TimeFilter, TimeLit};
use crate::store::{self, SResult, Store, StoreError};
use crate::users::Users;

/// Timestamp precision of the node (`timestamp_precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Milliseconds (IoTDB's default).
    #[default]
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl Precision {
    /// The name IoTDB uses (`ms`, `us`, `ns`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Ms => "ms",
            Precision::Us => "us",
            Precision::Ns => "ns",
        }
    }

    /// Parses `ms`, `us` or `ns`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "ms" => Some(Precision::Ms),
            "us" => Some(Precision::Us),
            "ns" => Some(Precision::Ns),
            _ => None,
        }
    }

    fn of_datetime(self, dt: DateTime<FixedOffset>) -> i64 {
        match self {
            Precision::Ms => dt.timestamp_millis(),
            Precision::Us => dt.timestamp_micros(),
            Precision::Ns => dt.timestamp_nanos_opt().unwrap_or(i64::MAX),
        }
    }

    /// Now, in this precision.
    pub fn now(self) -> i64 {
        self.of_datetime(Local::now().fixed_offset())
    }

    /// Formats a time as ISO 8601 in `zone` (the CLI's rendering).
    pub fn format(self, t: i64, zone: FixedOffset) -> String {
        let (secs, sub_ns) = match self {
            Precision::Ms => (t.div_euclid(1000), t.rem_euclid(1000) * 1_000_000),
            Precision::Us => (t.div_euclid(1_000_000), t.rem_euclid(1_000_000) * 1000),
            Precision::Ns => (t.div_euclid(1_000_000_000), t.rem_euclid(1_000_000_000)),
        };
        let Some(dt) = zone.timestamp_opt(secs, sub_ns as u32).single() else {
            return t.to_string();
        };
        let frac = match self {
            Precision::Ms => "%.3f",
            Precision::Us => "%.6f",
            Precision::Ns => "%.9f",
        };
        dt.format(&format!("%Y-%m-%dT%H:%M:%S{frac}%:z"))
            .to_string()
    }
}

/// What a session contributes to running a statement.
#[derive(Debug, Clone)]
pub struct Context {
    /// The node's timestamp precision.
    pub precision: Precision,
    /// The zone for datetimes written without an offset.
    pub zone: FixedOffset,
    /// The session's user.
    pub user: String,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            precision: Precision::Ms,
            zone: *Local::now().offset(),
            user: "root".into(),
        }
    }
}

impl Context {
    /// Formats a creation time in ms in this context's zone.
    fn precision_ms_format(&self, ms: i64) -> String {
        Precision::Ms.format(ms, self.zone)
    }
}

/// Resolves a client's zone name: `UTC`-like names, `+08:00`-style offsets,
/// anything else the server's local zone (IANA names other than UTC are not
/// resolved: there is no zone database here).
pub fn zone_from_name(name: &str) -> Option<FixedOffset> {
    let n = name.trim();
    if ["UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "Universal", "Zulu"]
        .iter()
        .any(|u| u.eq_ignore_ascii_case(n))
    {
        return FixedOffset::east_opt(0);
    }
    let s = n
        .strip_prefix("UTC")
        .or_else(|| n.strip_prefix("GMT"))
        .unwrap_or(n);
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

/// A query result: columns, and rows of one time each.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSet {
    /// Column names (without `Time`).
    pub columns: Vec<String>,
    /// Column types.
    pub types: Vec<DataType>,
    /// True when rows have no meaningful time (SHOW statements).
    pub ignore_timestamp: bool,
    /// Row times.
    pub times: Vec<i64>,
    /// Column values (placeholders where null).
    pub data: Vec<Column>,
    /// Per column, null rows.
    pub nulls: Vec<Option<Vec<bool>>>,
}

impl ResultSet {
    fn text(columns: &[&str], rows: Vec<Vec<String>>) -> ResultSet {
        let n = rows.len();
        let data = (0..columns.len())
            .map(|c| Column::Text(rows.iter().map(|r| r[c].clone().into_bytes()).collect()))
            .collect();
        ResultSet {
            columns: columns.iter().map(|s| s.to_string()).collect(),
            types: vec![DataType::Text; columns.len()],
            ignore_timestamp: true,
            times: vec![0; n],
            data,
            nulls: vec![None; columns.len()],
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.times.len()
    }

    /// The value at (`row`, `col`), or `None` if null.
    pub fn value(&self, row: usize, col: usize) -> Option<Value> {
        if self.nulls[col].as_ref().is_some_and(|n| n[row]) {
            return None;
        }
        Some(self.data[col].get(row))
    }

    /// Rows `range` as a new result set (paging).
    pub fn slice(&self, range: std::ops::Range<usize>) -> ResultSet {
        let idx: Vec<usize> = range.collect();
        ResultSet {
            columns: self.columns.clone(),
            types: self.types.clone(),
            ignore_timestamp: self.ignore_timestamp,
            times: idx.iter().map(|&i| self.times[i]).collect(),
            data: self.data.iter().map(|c| c.gather(&idx)).collect(),
            nulls: self
                .nulls
                .iter()
                .map(|n| n.as_ref().map(|v| idx.iter().map(|&i| v[i]).collect()))
                .collect(),
        }
    }
}

/// What running a statement gave.
#[derive(Debug)]
pub enum Outcome {
    /// A statement without rows succeeded; wait for this log offset (if
    /// any) to be durable before answering.
    Done(Option<u64>),
    /// A query's rows.
    Rows(ResultSet),
}

/// Runs statements against a store (and the node's pipes and users).
#[derive(Debug, Clone)]
pub struct Executor {
    store: Arc<Store>,
    pipes: Option<Arc<replicator::PipeManager>>,
    users: Option<Arc<Users>>,
}

fn pipe_err(e: replicator::PipeError) -> StoreError {
    StoreError::new(e.code, e.message)
}

fn to_time(ctx: &Context, t: &TimeLit) -> SResult<i64> {
    match t {
        TimeLit::Int(i) => Ok(*i),
        TimeLit::Now => Ok(ctx.precision.now()),
        TimeLit::DateTime(s) => parse_datetime(ctx, s),
    }
}

/// Parses an ISO datetime (with or without an offset; without, in the
/// session's zone) into the node's precision.
///
/// # Errors
/// A semantic error naming the text.
pub fn parse_datetime(ctx: &Context, s: &str) -> SResult<i64> {
    let bad = || {
        StoreError::new(status::SEMANTIC_ERROR, format!("{s} is not a datetime; write e.g. 2022-03-30T00:00:00+08:00 or 2022-03-30 00:00:00"))
    };
    let norm = s.replace('/', "-");
    if let Ok(dt) = DateTime::parse_from_rfc3339(&norm.replacen(' ', "T", 1)) {
        return Ok(ctx.precision.of_datetime(dt));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(&norm, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(&norm, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(bad)?;
    let dt = ctx
        .zone
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(bad)?;
    Ok(ctx
        .precision
        .of_datetime(dt.with_timezone(&dt.offset().fix())))
}

/// The inclusive range `[lo, hi]` a filter allows.
fn range(ctx: &Context, f: &TimeFilter) -> SResult<(i64, i64)> {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    for (t, inc) in &f.lower {
        let v = to_time(ctx, t)?;
        lo = lo.max(if *inc { v } else { v.saturating_add(1) });
    }
    for (t, inc) in &f.upper {
        let v = to_time(ctx, t)?;
        hi = hi.min(if *inc { v } else { v.saturating_sub(1) });
    }
    Ok((lo, hi))
}

fn database_pattern(p: &Option<Path>) -> Path {
    p.clone()
        .unwrap_or_else(|| Path(vec![Node::Name("root".into()), Node::Many]))
}

impl Executor {
    /// An executor over `store`.
    pub fn new(store: Arc<Store>) -> Executor {
        Executor {
            store,
            pipes: None,
            users: None,
        }
    }

    /// Adds the node's pipes and users (pipe and user statements need them).
    pub fn with_pipes(
        mut self,
        pipes: Arc<replicator::PipeManager>,
        users: Arc<Users>,
    ) -> Executor {
        self.pipes = Some(pipes);
        self.users = Some(users);
        self
    }

    /// The user registry, if any.
    pub fn users(&self) -> Option<&Arc<Users>> {
        self.users.as_ref()
    }

    fn need(&self, ctx: &Context, privilege: &str) -> SResult<()> {
        match &self.users {
            Some(u) if !u.has(&ctx.user, privilege) => Err(StoreError::new(
                status::NO_PERMISSION,
                format!("No permissions for this operation, please add privilege {privilege} to user {}", ctx.user),
            )),
            _ => Ok(()),
        }
    }

    fn pipes(&self) -> SResult<&Arc<replicator::PipeManager>> {
        self.pipes.as_ref().ok_or_else(|| {
            StoreError::new(
                status::UNSUPPORTED_OPERATION,
                "pipes are not enabled on this node",
            )
        })
    }

    fn user_admin(&self, ctx: &Context) -> SResult<&Arc<Users>> {
        if ctx.user != "root" {
            return Err(StoreError::new(
                status::NO_PERMISSION,
                "only root manages users",
            ));
        }
        self.users.as_ref().ok_or_else(|| {
            StoreError::new(
                status::UNSUPPORTED_OPERATION,
                "users are not enabled on this node",
            )
        })
    }

    fn pipe_rows(&self, ctx: &Context, rows: Vec<replicator::PipeRow>) -> ResultSet {
        let render =
            |a: &std::collections::BTreeMap<String, String>| replicator::meta::render_attrs(a);
        let body = rows
            .into_iter()
            .map(|r| {
                vec![
                    r.meta.id.clone(),
                    ctx.precision_ms_format(r.meta.creation_time_ms),
                    r.meta.state.name().to_string(),
                    render(&r.meta.extractor),
                    render(&r.meta.processor),
                    render(&r.meta.connector),
                    r.meta.exception.clone(),
                    r.remaining_events.to_string(),
                    format!("{:.3}", r.lag_seconds),
                ]
            })
            .collect();
        ResultSet::text(
            &[
                "ID",
                "CreationTime",
                "State",
                "PipeExtractor",
                "PipeProcessor",
                "PipeConnector",
                "ExceptionMessage",
                "RemainingEventCount",
                "LagSeconds",
            ],
            body,
        )
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Parses and runs one SQL statement.
    ///
    /// # Errors
    /// Parse errors (700), semantic and schema errors with their codes.
    pub fn execute(&self, ctx: &Context, text: &str) -> SResult<Outcome> {
        let st = sql::parse(text).map_err(|e| {
            StoreError::new(
                status::SQL_PARSE_ERROR,
                format!("Error occurred while parsing SQL to physical plan: {e}"),
            )
        })?;
        self.run(ctx, st)
    }

    /// Runs a parsed statement.
    ///
    /// # Errors
    /// As [`Executor::execute`].
    pub fn run(&self, ctx: &Context, st: Statement) -> SResult<Outcome> {
        let s = &self.store;
        match st {
            Statement::CreateDatabase(p) => Ok(Outcome::Done(Some(
                s.write(Event::Schema(SchemaOp::CreateDatabase(p.to_string())))?,
            ))),
            Statement::DeleteDatabase(paths) => {
                let mut last = None;
                for p in paths {
                    let dbs: Vec<String> = if p.is_plain() {
                        vec![p.to_string()]
                    } else {
                        s.databases()
                            .into_iter()
                            .filter(|d| p.matches(&d.split('.').collect::<Vec<_>>()))
                            .collect()
                    };
                    if dbs.is_empty() {
                        return Err(StoreError::new(
                            status::DATABASE_NOT_EXIST,
                            format!("no database matches {p}"),
                        ));
                    }
                    for d in dbs {
                        last = Some(s.write(Event::Schema(SchemaOp::DeleteDatabase(d)))?);
                    }
                }
                Ok(Outcome::Done(last))
            }
            Statement::ShowDatabases(p) => {
                let pat = database_pattern(&p);
                let rows = s
                    .databases()
                    .into_iter()
                    .filter(|d| pat.matches(&d.split('.').collect::<Vec<_>>()))
                    .map(|d| vec![d])
                    .collect();
                Ok(Outcome::Rows(ResultSet::text(&["Database"], rows)))
            }
            Statement::CreateTimeseries(spec) => {
                let path = spec.path.to_string();
                let ev = Event::Schema(SchemaOp::CreateTimeseries {
                    path,
                    data_type: spec.data_type,
                    encoding: spec.encoding.unwrap_or_else(|| {
                        store::encoding_name(spec.data_type.default_encoding()).into()
                    }),
                    compressor: spec.compressor.unwrap_or_else(|| "LZ4".into()),
                    aligned: false,
                });
                Ok(Outcome::Done(Some(s.write(ev)?)))
            }
            Statement::CreateAlignedTimeseries {
                device,
                measurements,
            } => {
                let mut last = None;
                let names: BTreeSet<String> =
                    measurements.iter().map(|m| m.path.to_string()).collect();
                if names.len() != measurements.len() {
                    return Err(StoreError::new(
                        status::ILLEGAL_PARAMETER,
                        format!("a measurement of {device} is declared twice"),
                    ));
                }
                for m in measurements {
                    let ev = Event::Schema(SchemaOp::CreateTimeseries {
                        path: format!("{device}.{}", m.path),
                        data_type: m.data_type,
                        encoding: m.encoding.unwrap_or_else(|| {
                            store::encoding_name(m.data_type.default_encoding()).into()
                        }),
                        compressor: m.compressor.unwrap_or_else(|| "LZ4".into()),
                        aligned: true,
                    });
                    last = Some(s.write(ev)?);
                }
                Ok(Outcome::Done(last))
            }
            Statement::ShowTimeseries(p) => {
                let rows = s
                    .series_matching(&[database_pattern(&p)])
                    .into_iter()
                    .map(|(path, info)| {
                        vec![
                            path.clone(),
                            "null".into(),
                            s.database_of(&path).unwrap_or_default(),
                            info.data_type.name().into(),
                            info.encoding,
                            info.compressor,
                            "null".into(),
                            "null".into(),
                            "null".into(),
                            "null".into(),
                        ]
                    })
                    .collect();
                Ok(Outcome::Rows(ResultSet::text(
                    &[
                        "Timeseries",
                        "Alias",
                        "Database",
                        "DataType",
                        "Encoding",
                        "Compression",
                        "Tags",
                        "Attributes",
                        "Deadband",
                        "DeadbandParameters",
                    ],
                    rows,
                )))
            }
            Statement::CountTimeseries(p) => {
                let n = s.series_matching(&[database_pattern(&p)]).len() as i64;
                Ok(Outcome::Rows(ResultSet {
                    columns: vec!["count(timeseries)".into()],
                    types: vec![DataType::Int64],
                    ignore_timestamp: true,
                    times: vec![0],
                    data: vec![Column::Int64(vec![n])],
                    nulls: vec![None],
                }))
            }
            Statement::ShowDevices(p) => {
                // Series come sorted by path; a device is the path less its
                // last node (aligned is a device-wide property).
                let mut devices: std::collections::BTreeMap<String, bool> = Default::default();
                for (path, info) in
                    s.series_matching(&[Path(vec![Node::Name("root".into()), Node::Many])])
                {
                    let d = path[..path.rfind('.').expect("series path")].to_string();
                    devices.entry(d).or_insert(info.aligned);
                }
                let pat = database_pattern(&p);
                let rows = devices
                    .into_iter()
                    .filter(|(d, _)| pat.matches(&d.split('.').collect::<Vec<_>>()))
                    .map(|(d, a)| vec![d, a.to_string()])
                    .collect();
                Ok(Outcome::Rows(ResultSet::text(
                    &["Device", "IsAligned"],
                    rows,
                )))
            }
            Statement::Insert {
                device,
                measurements,
                aligned,
                rows,
            } => {
                let rows = rows
                    .into_iter()
                    .map(|(t, v)| Ok((to_time(ctx, &t)?, v)))
                    .collect::<SResult<Vec<_>>>()?;
                let tablet =
                    store::tablet_from_rows(s, &device.to_string(), &measurements, aligned, &rows)?;
                Ok(Outcome::Done(Some(s.write(Event::Tablet(tablet))?)))
            }
            Statement::Delete { paths, filter } => {
                let (min, max) = range(ctx, &filter)?;
                if min > max {
                    return Ok(Outcome::Done(None));
                }
                let patterns = paths.iter().map(|p| p.to_string()).collect();
                Ok(Outcome::Done(Some(s.write(Event::Delete {
                    patterns,
                    min,
                    max,
                })?)))
            }
            Statement::Select {
                select,
                from,
                filter,
                desc,
                limit,
                offset,
            } => Ok(Outcome::Rows(
                self.select(ctx, &select, &from, &filter, desc, limit, offset)?,
            )),
            Statement::Flush => {
                s.flush()?;
                Ok(Outcome::Done(None))
            }
            Statement::CreatePipe {
                id,
                extractor,
                processor,
                connector,
            } => {
                self.need(ctx, "CREATE_PIPE")?;
                self.pipes()?
                    .create(&id, extractor, processor, connector)
                    .map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::StartPipe(id) => {
                self.need(ctx, "START_PIPE")?;
                self.pipes()?.start(&id).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::StopPipe(id) => {
                self.need(ctx, "STOP_PIPE")?;
                self.pipes()?.stop(&id).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::DropPipe(id) => {
                self.need(ctx, "DROP_PIPE")?;
                self.pipes()?.drop_pipe(&id).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::ShowPipes { id, used_by } => {
                self.need(ctx, "SHOW_PIPES")?;
                let rows = self
                    .pipes()?
                    .show(id.as_deref(), used_by.as_deref())
                    .map_err(pipe_err)?;
                Ok(Outcome::Rows(self.pipe_rows(ctx, rows)))
            }
            Statement::ShowPipePlugins => {
                let rows = replicator::plugin::PLUGINS
                    .iter()
                    .map(|(n, c)| {
                        vec![
                            n.to_string(),
                            "Builtin".into(),
                            c.to_string(),
                            String::new(),
                        ]
                    })
                    .collect();
                Ok(Outcome::Rows(ResultSet::text(
                    &["PluginName", "PluginType", "ClassName", "PluginJar"],
                    rows,
                )))
            }
            Statement::CreateUser { name, password } => {
                self.user_admin(ctx)?
                    .create(&name, &password)
                    .map_err(|m| StoreError::new(status::ILLEGAL_PARAMETER, m))?;
                Ok(Outcome::Done(None))
            }
            Statement::DropUser(name) => {
                self.user_admin(ctx)?
                    .drop_user(&name)
                    .map_err(|m| StoreError::new(status::ILLEGAL_PARAMETER, m))?;
                Ok(Outcome::Done(None))
            }
            Statement::Privileges {
                grant,
                user,
                privileges,
            } => {
                self.user_admin(ctx)?
                    .set(&user, &privileges, grant)
                    .map_err(|m| StoreError::new(status::ILLEGAL_PARAMETER, m))?;
                Ok(Outcome::Done(None))
            }
            Statement::ListUser => {
                let rows = self
                    .user_admin(ctx)?
                    .list()
                    .into_iter()
                    .map(|u| vec![u])
                    .collect();
                Ok(Outcome::Rows(ResultSet::text(&["User"], rows)))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn select(
        &self,
        ctx: &Context,
        select: &[Path],
        from: &[Path],
        filter: &TimeFilter,
        desc: bool,
        limit: Option<u64>,
        offset: u64,
    ) -> SResult<ResultSet> {
        let (lo, hi) = range(ctx, filter)?;
        let mut series: Vec<(String, DataType)> = Vec::new();
        let mut seen = BTreeSet::new();
        for sel in select {
            for f in from {
                let pat = f.join(sel);
                for (p, info) in self.store.series_matching(&[pat]) {
                    if seen.insert(p.clone()) {
                        series.push((p, info.data_type));
                    }
                }
            }
        }
        let mut parts = Vec::with_capacity(series.len());
        if lo <= hi {
            for (p, t) in &series {
                let pts = self.store.read(p, lo, hi)?.unwrap_or(store::Points {
                    times: vec![],
                    values: Column::with_capacity(*t, 0),
                });
                parts.push(pts);
            }
        } else {
            for (_, t) in &series {
                parts.push(store::Points {
                    times: vec![],
                    values: Column::with_capacity(*t, 0),
                });
            }
        }
        let mut times: Vec<i64> = parts.iter().flat_map(|p| p.times.iter().copied()).collect();
        times.sort_unstable();
        times.dedup();
        if desc {
            times.reverse();
        }
        let start = (offset as usize).min(times.len());
        let end = limit.map_or(times.len(), |l| (start + l as usize).min(times.len()));
        let times = times[start..end].to_vec();
        let mut data = Vec::with_capacity(parts.len());
        let mut nulls = Vec::with_capacity(parts.len());
        for (pts, (_, t)) in parts.iter().zip(&series) {
            let mut col = Column::with_capacity(*t, times.len());
            let mut nl = vec![false; times.len()];
            for (r, tm) in times.iter().enumerate() {
                match pts.times.binary_search(tm) {
                    Ok(i) => col.push(pts.values.get(i)),
                    Err(_) => {
                        nl[r] = true;
                        col.push(Value::placeholder(*t));
                    }
                }
            }
            data.push(col);
            nulls.push(nl.iter().any(|&x| x).then_some(nl));
        }
        Ok(ResultSet {
            columns: series.iter().map(|s| s.0.clone()).collect(),
            types: series.iter().map(|s| s.1).collect(),
            ignore_timestamp: false,
            times,
            data,
            nulls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn exec(dir: &std::path::Path) -> Executor {
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
        Executor::new(Arc::new(
            Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap(),
        ))
    }

    fn utc() -> Context {
        Context {
            precision: Precision::Ms,
            zone: FixedOffset::east_opt(0).unwrap(),
            user: "root".into(),
        }
    }

    fn rows(o: Outcome) -> ResultSet {
        match o {
            Outcome::Rows(r) => r,
            Outcome::Done(_) => panic!("expected rows"),
        }
    }

    #[test]
    fn the_seed_script_and_its_query() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(dir.path());
        let ctx = utc();
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
            e.execute(&ctx, sql)
                .unwrap_or_else(|err| panic!("{sql}: {err}"));
        }
        let r = rows(e.execute(&ctx, "select ** from root.vehicle").unwrap());
        assert_eq!(
            r.columns,
            [
                "root.vehicle.d0.s0",
                "root.vehicle.d0.s1",
                "root.vehicle.d1.s2",
                "root.vehicle.d1.s3"
            ]
        );
        assert_eq!(
            r.types,
            [
                DataType::Int32,
                DataType::Text,
                DataType::Float,
                DataType::Boolean
            ]
        );
        assert_eq!(r.times, [1, 2, 3, 4, 5, 6]);
        assert_eq!(r.value(0, 0), Some(Value::Int32(10)));
        assert_eq!(r.value(1, 1), Some(Value::Text(b"12".to_vec())));
        assert_eq!(r.value(2, 0), None);
        assert_eq!(r.value(4, 2), Some(Value::Float(18.0)));
        assert_eq!(r.value(5, 3), Some(Value::Boolean(false)));
        let r = rows(
            e.execute(
                &ctx,
                "select s0 from root.vehicle.d0 where time >= 2 order by time desc limit 1",
            )
            .unwrap(),
        );
        assert_eq!(
            (r.times.clone(), r.value(0, 0)),
            (vec![2], Some(Value::Int32(12)))
        );
        let r = rows(
            e.execute(&ctx, "select * from root.vehicle.* where time < 2")
                .unwrap(),
        );
        assert_eq!(r.rows(), 1);
        let r = rows(
            e.execute(&ctx, "count timeseries root.vehicle.d1.*")
                .unwrap(),
        );
        assert_eq!(r.value(0, 0), Some(Value::Int64(2)));
        let r = rows(e.execute(&ctx, "show timeseries").unwrap());
        assert_eq!(r.rows(), 4);
        assert_eq!(r.value(0, 3), Some(Value::Text(b"INT32".to_vec())));
        assert_eq!(r.value(0, 4), Some(Value::Text(b"RLE".to_vec())));
        let r = rows(e.execute(&ctx, "show databases").unwrap());
        assert_eq!(r.value(0, 0), Some(Value::Text(b"root.vehicle".to_vec())));
        assert_eq!(
            rows(e.execute(&ctx, "show databases root.vehicle").unwrap()).rows(),
            1
        );
        assert_eq!(
            rows(e.execute(&ctx, "show databases root.other.**").unwrap()).rows(),
            0
        );
        let r = rows(e.execute(&ctx, "show devices").unwrap());
        assert_eq!(r.rows(), 2);
        assert_eq!(
            r.value(1, 0),
            Some(Value::Text(b"root.vehicle.d1".to_vec()))
        );
        assert_eq!(r.value(1, 1), Some(Value::Text(b"false".to_vec())));
        e.execute(&ctx, "delete from root.vehicle.d0.s0 where time <= 1")
            .unwrap();
        let r = rows(e.execute(&ctx, "select s0 from root.vehicle.d0").unwrap());
        assert_eq!(r.times, [2]);
    }

    #[test]
    fn errors_carry_iotdb_codes() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(dir.path());
        let ctx = utc();
        let err = e.execute(&ctx, "selct 1").unwrap_err();
        assert_eq!(err.code, status::SQL_PARSE_ERROR);
        e.execute(&ctx, "create timeseries root.sg.d.s with datatype=INT32")
            .unwrap();
        let err = e
            .execute(&ctx, "insert into root.sg.d(time, s) values (1, 'x')")
            .unwrap_err();
        assert_eq!(err.code, status::DATA_TYPE_MISMATCH);
        assert!(err.message.contains("root.sg.d.s is INT32"), "{err}");
        let err = e
            .execute(&ctx, "create timeseries root.sg.d.s with datatype=INT32")
            .unwrap_err();
        assert_eq!(err.code, status::TIMESERIES_ALREADY_EXIST);
        let err = e.execute(&ctx, "set storage group to root.sg").unwrap_err();
        assert_eq!(err.code, status::DATABASE_ALREADY_EXISTS);
        let err = e.execute(&ctx, "drop database root.nothing").unwrap_err();
        assert_eq!(err.code, status::DATABASE_NOT_EXIST);
        let err = e
            .execute(
                &ctx,
                "insert into root.sg.d(time, s) values (1, 99999999999)",
            )
            .unwrap_err();
        assert!(err.message.contains("out of range"), "{err}");
        // Auto-creation infers DOUBLE for numbers, TEXT, BOOLEAN.
        e.execute(
            &ctx,
            "insert into root.auto.d(time, a, b, c) values (2022-03-30T00:00:00Z, 1, 'x', true)",
        )
        .unwrap();
        let r = rows(e.execute(&ctx, "select ** from root.auto").unwrap());
        assert_eq!(
            r.types,
            [DataType::Double, DataType::Text, DataType::Boolean]
        );
        assert_eq!(r.times, [1_648_598_400_000]);
    }

    #[test]
    fn strict_schema_refuses_unknown_series() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            wal::Log::open(
                dir.path().join("wal"),
                wal::Config {
                    fsync: wal::FsyncPolicy::Never,
                    ..wal::Config::default()
                },
            )
            .unwrap(),
        );
        let cfg = StoreConfig {
            auto_create_schema: false,
            ..StoreConfig::default()
        };
        let e = Executor::new(Arc::new(
            Store::open(&dir.path().join("store"), log, cfg).unwrap(),
        ));
        let err = e
            .execute(&utc(), "insert into root.sg.d(time, s) values (1, 1)")
            .unwrap_err();
        assert_eq!(err.code, status::PATH_NOT_EXIST);
        assert!(
            err.message.contains("enable_auto_create_schema=false"),
            "{err}"
        );
        e.execute(&utc(), "create timeseries root.sg.d.s with datatype=INT64")
            .unwrap();
        e.execute(&utc(), "insert into root.sg.d(time, s) values (1, 1)")
            .unwrap();
    }

    #[test]
    fn datetimes_and_zones() {
        let ctx = Context {
            precision: Precision::Ms,
            zone: zone_from_name("+08:00").unwrap(),
            user: "root".into(),
        };
        assert_eq!(
            parse_datetime(&ctx, "2022-03-30 08:00:00").unwrap(),
            1_648_598_400_000
        );
        assert_eq!(
            parse_datetime(&ctx, "2022-03-30T00:00:00Z").unwrap(),
            1_648_598_400_000
        );
        assert_eq!(zone_from_name("Etc/UTC"), FixedOffset::east_opt(0));
        assert_eq!(zone_from_name("Asia/Shanghai"), None);
        assert_eq!(
            Precision::Ms.format(1_648_598_400_123, zone_from_name("+08:00").unwrap()),
            "2022-03-30T08:00:00.123+08:00"
        );
    }
}
