//! Runs parsed statements against the store (SELECT in [`crate::query`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset, TimeZone};
use protocol::names;
use protocol::tablet::{Column, Tablet};
use protocol::types::{status, DataType, Value};

use crate::event::{Event, SchemaOp};
use crate::sql::{self, Node, Path, Statement, TimeFilter, TimeLit};
use crate::store::{self, SResult, Store, StoreError};
use crate::users::{Privilege, UserError, Users};

/// Most path patterns one statement may match against the schema (a
/// SELECT's columns × FROM paths, a DELETE's or DROP DATABASE's paths):
/// each is one pass over every series.
pub const MAX_PATTERNS: usize = 1024;
/// Most points a raw query may read from the store before it is refused
/// (it holds them all in memory at once). Aggregations read a series a
/// part at a time and have no such bound.
pub const MAX_QUERY_POINTS: usize = 8 << 20;
/// Most values (rows × series, after LIMIT/OFFSET) a query may return.
pub const MAX_RESULT_VALUES: usize = 8 << 20;

/// IoTDB 1.2's refusal (AuthorityChecker): NO_PERMISSION (803).
fn no_permission(p: Privilege) -> StoreError {
    StoreError::new(
        status::NO_PERMISSION,
        format!(
            "No permissions for this operation, please add privilege {}",
            p.name()
        ),
    )
}

fn user_err(e: UserError) -> StoreError {
    StoreError::new(e.code, e.message)
}

fn too_many_patterns(n: usize) -> StoreError {
    StoreError::new(
        status::SEMANTIC_ERROR,
        format!("the statement names {n} path patterns, more than the {MAX_PATTERNS} one statement may; split it"),
    )
}

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

/// Resolves a client's zone name: `UTC`-like names, `+08:00`-style offsets
/// (`±h`, `±hh`, `±hh:mm`, `±hhmm`, optionally after `UTC`/`GMT`), anything
/// else `None` (IANA names other than UTC are not resolved: there is no
/// zone database here). An offset beyond ±18:00 or with minutes ≥ 60 is
/// `None`, never an overflow.
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
    let (h, m) = match rest.split_once(':') {
        Some(hm) => hm,
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let digits = |t: &str| !t.is_empty() && t.len() <= 2 && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 18 || m >= 60 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
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

/// The columns of SHOW PIPES / SHOW PIPE (all TEXT): IoTDB 1.2's first,
/// then the sync tool's role (`sender` / `receiver`) and remote.
pub const PIPE_COLUMNS: [&str; 11] = [
    "ID",
    "CreationTime",
    "State",
    "PipeExtractor",
    "PipeProcessor",
    "PipeConnector",
    "ExceptionMessage",
    "RemainingEventCount",
    "LagSeconds",
    "Role",
    "Remote",
];

/// The columns of SHOW CHANGELOG (all TEXT, one row).
pub const CHANGELOG_COLUMNS: [&str; 8] = [
    "LogStartOffset",
    "LogEndOffset",
    "DurableOffset",
    "Segments",
    "RecordBytes",
    "DiskBytes",
    "FirstArrival",
    "LastArrival",
];

/// The columns of SHOW CHANGELOG CONSUMERS (all TEXT), as `edgepipe wal
/// offsets` prints them.
pub const CHANGELOG_CONSUMER_COLUMNS: [&str; 6] = [
    "Consumer",
    "CommittedOffset",
    "LagRecords",
    "LagBytes",
    "LagSeconds",
    "Lost",
];

/// Runs statements against a store (and the node's pipes and users).
#[derive(Debug, Clone)]
pub struct Executor {
    store: Arc<Store>,
    pipes: Option<Arc<replicator::PipeManager>>,
    users: Option<Arc<Users>>,
    control: Option<Arc<crate::control::Control>>,
}

fn pipe_err(e: replicator::PipeError) -> StoreError {
    StoreError::new(e.code, e.message)
}

/// A time value in the node's precision.
///
/// # Errors
/// A datetime that does not parse; a shift by natural months or one that
/// overflows.
pub(crate) fn to_time(ctx: &Context, t: &TimeLit) -> SResult<i64> {
    match t {
        TimeLit::Int(i) => Ok(*i),
        TimeLit::Now => Ok(ctx.precision.now()),
        TimeLit::DateTime(s) => parse_datetime(ctx, s),
        TimeLit::Shifted(base, shifts) => {
            let mut v = to_time(ctx, base)?;
            for (neg, d) in shifts {
                let by = crate::query::window::duration_units(ctx.precision, d)?;
                v = if *neg {
                    v.checked_sub(by)
                } else {
                    v.checked_add(by)
                }
                .ok_or_else(|| {
                    StoreError::new(
                        status::SEMANTIC_ERROR,
                        format!(
                            "the time {} {d} is out of range",
                            if *neg { "-" } else { "+" }
                        ),
                    )
                })?;
            }
            Ok(v)
        }
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
pub(crate) fn range(ctx: &Context, f: &TimeFilter) -> SResult<(i64, i64)> {
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
    p.clone().unwrap_or_else(Path::everything)
}

impl Executor {
    /// An executor over `store`.
    pub fn new(store: Arc<Store>) -> Executor {
        Executor {
            store,
            pipes: None,
            users: None,
            control: None,
        }
    }

    /// Adds the receiving side's controls: the pipe server, `LOAD
    /// CONFIGURATION`, and the incoming pipes in `SHOW PIPES`.
    pub fn with_receiver(mut self, control: Arc<crate::control::Control>) -> Executor {
        self.control = Some(control);
        self
    }

    /// Refuses a pipe sending to one of `targets` (`host:port`) that is
    /// this node itself (see [`crate::control::Control::self_target`]):
    /// everything it sends would come back into the node's change log, to
    /// be read and sent again, forever (A→A).
    ///
    /// # Errors
    /// The first such target, and why it is this node.
    fn refuse_self_target(&self, targets: &[String]) -> Result<(), String> {
        let Some(control) = &self.control else {
            return Ok(());
        };
        for t in targets {
            let Some((host, port)) = t.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if let Some(why) = control.self_target(host, port) {
                return Err(format!(
                    "points at this node itself: {why}. A pipe to itself would send every record back into this node's own change log, to be read and sent again, forever (IoTDB A -> IoTDB A); point it at another node"
                ));
            }
        }
        Ok(())
    }

    fn control(&self) -> SResult<&Arc<crate::control::Control>> {
        self.control.as_ref().ok_or_else(|| {
            StoreError::new(
                status::UNSUPPORTED_OPERATION,
                "the pipe server is not enabled on this node",
            )
        })
    }

    /// `rs` (SHOW PIPES) with a row per incoming pipe after the node's own
    /// (`id`: only that one; none for `used_by`), in the columns `rs` has:
    /// ID = the legacy pipe's name or the 1.2 sender's IP, Role =
    /// `receiver`, Remote = the sender's IP, State RUNNING / STOP, the
    /// sender's protocol as PipeConnector, the last error as
    /// ExceptionMessage; counts unknown to a receiver are empty.
    fn with_receiver_rows(&self, ctx: &Context, mut rs: ResultSet, id: Option<&str>) -> ResultSet {
        let Some(c) = &self.control else { return rs };
        for r in c.receiver().registry().rows() {
            if id.is_some_and(|id| id != r.id) {
                continue;
            }
            for (col, name) in rs.data.iter_mut().zip(&rs.columns) {
                let v = match name.as_str() {
                    "ID" => r.id.clone(),
                    "CreationTime" => ctx.precision_ms_format(r.creation_time_ms),
                    "State" => r.state.to_string(),
                    "PipeConnector" => r.connector.clone(),
                    "ExceptionMessage" => r.message.clone(),
                    "Role" => "receiver".into(),
                    "Remote" => r.remote.clone(),
                    _ => String::new(),
                };
                col.push(Value::Text(v.into_bytes()));
            }
            rs.times.push(0);
        }
        rs
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

    /// Adds a user registry without pipes (privileges are then enforced).
    pub fn with_users(mut self, users: Arc<Users>) -> Executor {
        self.users = Some(users);
        self
    }

    /// The user registry, if any.
    pub fn users(&self) -> Option<&Arc<Users>> {
        self.users.as_ref()
    }

    /// Refuses unless the session's user holds `privilege` on every path
    /// of `paths` (none: the path-independent `root.**`), with IoTDB 1.2's
    /// NO_PERMISSION message. Without a user registry (a bare executor)
    /// everything is allowed.
    fn need(&self, ctx: &Context, privilege: Privilege, paths: &[Path]) -> SResult<()> {
        match &self.users {
            Some(u) if !u.allowed(&ctx.user, privilege, paths) => Err(no_permission(privilege)),
            _ => Ok(()),
        }
    }

    /// Makes client-RPC tablets ready to write for `user`: each device and
    /// measurement checked by IoTDB's name rules and put in canonical form
    /// (509 ILLEGAL_PATH naming the bad name), then the user's
    /// INSERT_TIMESERIES privilege checked on every series (803). One pass
    /// over the names of each tablet, never over its rows.
    ///
    /// # Errors
    /// The first illegal name, or the missing privilege.
    pub fn admit_tablets(&self, user: &str, tablets: &mut [Tablet]) -> SResult<()> {
        let name_err = |e: names::NameError| StoreError::new(e.code(), e.to_string());
        for t in tablets.iter_mut() {
            let d = names::canonical_device(&t.device).map_err(name_err)?;
            if d != t.device.as_str() {
                t.device = d.into_owned();
            }
            for m in t.measurements.iter_mut() {
                let c = names::canonical_measurement(m).map_err(name_err)?;
                if c != m.as_str() {
                    *m = c.into_owned();
                }
            }
        }
        let Some(users) = &self.users else {
            return Ok(());
        };
        if user == "root" {
            return Ok(());
        }
        for t in tablets.iter() {
            let device =
                sql::parse_path(&t.device).map_err(|e| StoreError::new(e.code, e.message))?;
            let paths: Vec<Path> = t
                .measurements
                .iter()
                .map(|m| {
                    let mut p = device.clone();
                    p.0.push(Node::Name(m.clone()));
                    p
                })
                .collect();
            if !users.allowed(user, Privilege::INSERT_TIMESERIES, &paths) {
                return Err(no_permission(Privilege::INSERT_TIMESERIES));
            }
        }
        Ok(())
    }

    /// Logs a deletion with `append` through the pipes' deletion index
    /// (so no pipe ships a point deleted before it read it; see
    /// `replicator::deletions`). Every path that logs a deletion (a delete,
    /// a delete database) goes through here.
    ///
    /// # Errors
    /// `append`'s.
    pub fn log_deletion(
        &self,
        patterns: Vec<String>,
        min: i64,
        max: i64,
        append: impl FnOnce() -> SResult<u64>,
    ) -> SResult<u64> {
        match &self.pipes {
            Some(p) => p.deletions().record(patterns, min, max, append),
            None => append(),
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

    fn user_admin(&self) -> SResult<&Arc<Users>> {
        self.users.as_ref().ok_or_else(|| {
            StoreError::new(
                status::UNSUPPORTED_OPERATION,
                "users are not enabled on this node",
            )
        })
    }

    /// SHOW PIPES rows of the pipes this node sends: IoTDB 1.2's columns
    /// first, then Role (`sender`) and Remote (the connector's targets, or
    /// a sync-tool pipe's PipeSink). State and ExceptionMessage are in each
    /// pipe's own vocabulary (a sync-tool pipe: RUNNING / STOP / DROP,
    /// `WARN: …` / `ERROR: …`).
    fn pipe_rows(&self, ctx: &Context, rows: Vec<replicator::PipeRow>) -> ResultSet {
        let render =
            |a: &std::collections::BTreeMap<String, String>| replicator::meta::render_attrs(a);
        let body = rows
            .into_iter()
            .map(|r| {
                vec![
                    r.meta.id.clone(),
                    ctx.precision_ms_format(r.meta.creation_time_ms),
                    r.meta.state_name().to_string(),
                    render(&r.meta.extractor),
                    render(&r.meta.processor),
                    render(&r.meta.connector),
                    r.meta.exception.clone(),
                    r.remaining_events.to_string(),
                    format!("{:.3}", r.lag_seconds),
                    "sender".to_string(),
                    r.remote,
                ]
            })
            .collect();
        ResultSet::text(&PIPE_COLUMNS, body)
    }

    /// `SHOW CHANGELOG`: the node's change log in one row (TEXT columns,
    /// as SHOW PIPES): offsets, segments, bytes, and the arrival times of
    /// its first and last record (µs, in the session's zone; empty when
    /// the log holds none). DurableOffset: every record below it is
    /// durable.
    fn changelog_row(&self, ctx: &Context) -> ResultSet {
        let log = self.store.log();
        let segs = log.segments();
        let arrival =
            |t: Option<i64>| t.map_or_else(String::new, |t| Precision::Us.format(t, ctx.zone));
        let row = vec![
            log.log_start().to_string(),
            log.end_offset().to_string(),
            log.durable_offset().to_string(),
            segs.len().to_string(),
            segs.iter()
                .map(wal::SegmentInfo::record_bytes)
                .sum::<u64>()
                .to_string(),
            log.disk_bytes().to_string(),
            arrival(segs.iter().find_map(|s| s.first_arrival_us)),
            arrival(segs.iter().rev().find_map(|s| s.last_arrival_us)),
        ];
        ResultSet::text(&CHANGELOG_COLUMNS, vec![row])
    }

    /// `SHOW CHANGELOG CONSUMERS`: each consumer of the change log (a pipe
    /// `pipe/<id>`, the store `store`) with its committed offset, how far
    /// it is behind the log end (records, log bytes, and arrival-time
    /// seconds, as `edgepipe wal offsets`), and the records a disk bound
    /// deleted before it read them.
    fn changelog_consumers(&self) -> ResultSet {
        let log = self.store.log();
        let rows = log
            .consumers()
            .into_iter()
            .map(|c| {
                let lag = log.lag(c.state.committed).ok();
                let lost = c.state.lost_text();
                vec![
                    c.name,
                    c.state.committed.to_string(),
                    lag.map_or_else(String::new, |l| l.records.to_string()),
                    lag.map_or_else(String::new, |l| l.bytes.to_string()),
                    lag.map_or_else(String::new, |l| format!("{:.3}", l.arrival_us as f64 / 1e6)),
                    lost,
                ]
            })
            .collect();
        ResultSet::text(&CHANGELOG_CONSUMER_COLUMNS, rows)
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Checks the statement's cost bound and that the session's user holds
    /// the privilege it needs on its paths: IoTDB 1.2's table
    /// (`AuthorityChecker.translateToPermissionId`, paths from
    /// `Statement.getPaths`; none means `root.**`).
    fn authorize(&self, ctx: &Context, st: &Statement) -> SResult<()> {
        let series = |device: &Path, ms: &mut dyn Iterator<Item = &String>| -> Vec<Path> {
            ms.map(|m| {
                let mut p = device.clone();
                p.0.push(Node::Name(m.clone()));
                p
            })
            .collect()
        };
        let bounded = |paths: &[Path]| {
            if paths.len() > MAX_PATTERNS {
                Err(too_many_patterns(paths.len()))
            } else {
                Ok(())
            }
        };
        let (privilege, paths): (Privilege, Vec<Path>) = match st {
            Statement::CreateDatabase(p) => (Privilege::CREATE_DATABASE, vec![p.clone()]),
            Statement::DeleteDatabase(ps) => {
                bounded(ps)?;
                (Privilege::DELETE_DATABASE, ps.clone())
            }
            Statement::ShowDatabases(p)
            | Statement::ShowTimeseries(p)
            | Statement::CountTimeseries(p)
            | Statement::ShowDevices(p) => (Privilege::READ_TIMESERIES, vec![database_pattern(p)]),
            Statement::CreateTimeseries(spec) => {
                (Privilege::CREATE_TIMESERIES, vec![spec.path.clone()])
            }
            Statement::CreateAlignedTimeseries {
                device,
                measurements,
            } => {
                let names: Vec<String> = measurements.iter().map(|m| m.path.to_string()).collect();
                (
                    Privilege::CREATE_TIMESERIES,
                    series(device, &mut names.iter()),
                )
            }
            Statement::Insert {
                device,
                measurements,
                ..
            } => (
                Privilege::INSERT_TIMESERIES,
                series(device, &mut measurements.iter()),
            ),
            Statement::Delete { paths, .. } => {
                bounded(paths)?;
                (Privilege::DELETE_TIMESERIES, paths.clone())
            }
            Statement::Select(q) => {
                let n = q.columns.len().saturating_mul(q.from.len());
                if n > MAX_PATTERNS {
                    return Err(too_many_patterns(n));
                }
                let paths = q
                    .from
                    .iter()
                    .flat_map(|f| q.columns.iter().map(move |c| f.join(c.path())))
                    .collect();
                (Privilege::READ_TIMESERIES, paths)
            }
            Statement::Flush => {
                if ctx.user == "root" || self.users.is_none() {
                    return Ok(());
                }
                return Err(StoreError::new(
                    status::NO_PERMISSION,
                    "No permissions for this operation: only root may run FLUSH",
                ));
            }
            Statement::CreatePipe { .. } => (Privilege::CREATE_PIPE, vec![]),
            Statement::StartPipe(_) => (Privilege::START_PIPE, vec![]),
            Statement::StopPipe(_) => (Privilege::STOP_PIPE, vec![]),
            Statement::DropPipe(_) => (Privilege::DROP_PIPE, vec![]),
            Statement::ShowPipes { .. } => (Privilege::SHOW_PIPES, vec![]),
            Statement::ShowPipePlugins => (Privilege::SHOW_PIPEPLUGINS, vec![]),
            Statement::CreatePipeSink { .. } | Statement::CreateSinkPipe { .. } => {
                (Privilege::CREATE_PIPE, vec![])
            }
            Statement::DropPipeSink(_) => (Privilege::DROP_PIPE, vec![]),
            Statement::ShowPipeSinks(_) | Statement::ShowPipeSinkTypes => {
                (Privilege::SHOW_PIPES, vec![])
            }
            Statement::ShowPipeServer | Statement::ShowChangelog { .. } => {
                (Privilege::SHOW_PIPES, vec![])
            }
            Statement::StartPipeServer
            | Statement::StopPipeServer
            | Statement::LoadConfiguration => {
                if ctx.user == "root" || self.users.is_none() {
                    return Ok(());
                }
                return Err(StoreError::new(
                    status::NO_PERMISSION,
                    "No permissions for this operation: only root may start or stop the pipe server or load the configuration",
                ));
            }
            Statement::CreateUser { .. } => (Privilege::CREATE_USER, vec![]),
            Statement::DropUser(_) => (Privilege::DELETE_USER, vec![]),
            Statement::Privileges { grant, paths, .. } => (
                if *grant {
                    Privilege::GRANT_USER_PRIVILEGE
                } else {
                    Privilege::REVOKE_USER_PRIVILEGE
                },
                paths.clone(),
            ),
            Statement::ListUser => (Privilege::LIST_USER, vec![]),
            Statement::ListPrivileges { paths, .. } => (Privilege::LIST_USER, paths.clone()),
        };
        self.need(ctx, privilege, &paths)
    }

    /// Parses and runs one SQL statement.
    ///
    /// # Errors
    /// Parse errors (700), semantic and schema errors with their codes.
    pub fn execute(&self, ctx: &Context, text: &str) -> SResult<Outcome> {
        let st = sql::parse(text).map_err(|e| {
            if e.code == status::SQL_PARSE_ERROR {
                StoreError::new(
                    e.code,
                    format!("Error occurred while parsing SQL to physical plan: {e}"),
                )
            } else {
                StoreError::new(e.code, e.message)
            }
        })?;
        self.run(ctx, st)
    }

    /// Runs a parsed statement.
    ///
    /// # Errors
    /// As [`Executor::execute`].
    pub fn run(&self, ctx: &Context, st: Statement) -> SResult<Outcome> {
        self.authorize(ctx, &st)?;
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
                            .filter(|d| p.matches_path(d))
                            .collect()
                    };
                    if dbs.is_empty() {
                        return Err(StoreError::new(
                            status::DATABASE_NOT_EXIST,
                            format!("no database matches {p}"),
                        ));
                    }
                    for d in dbs {
                        let ev = Event::Schema(SchemaOp::DeleteDatabase(d.clone()));
                        last = Some(self.log_deletion(
                            vec![format!("{d}.**")],
                            i64::MIN,
                            i64::MAX,
                            || s.write(ev),
                        )?);
                    }
                }
                Ok(Outcome::Done(last))
            }
            Statement::ShowDatabases(p) => {
                let pat = database_pattern(&p);
                let rows = s
                    .databases()
                    .into_iter()
                    .filter(|d| pat.matches_path(d))
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
                for (path, info) in s.series_matching(&[Path::everything()]) {
                    // The device is the path less its last node (which may
                    // hold a dot inside backquotes).
                    let last = names::split_nodes(&path)
                        .ok()
                        .and_then(|n| n.last().map(|l| l.len()))
                        .unwrap_or_else(|| path.len() - path.rfind('.').map_or(0, |i| i + 1));
                    let d = path[..path.len().saturating_sub(last + 1)].to_string();
                    devices.entry(d).or_insert(info.aligned);
                }
                let pat = database_pattern(&p);
                let rows = devices
                    .into_iter()
                    .filter(|(d, _)| pat.matches_path(d))
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
                let patterns: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                let ev = Event::Delete {
                    patterns: patterns.clone(),
                    min,
                    max,
                };
                Ok(Outcome::Done(Some(self.log_deletion(
                    patterns,
                    min,
                    max,
                    || s.write(ev),
                )?)))
            }
            Statement::Select(q) => Ok(Outcome::Rows(crate::query::run(s, ctx, &q)?)),
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
                // A connector that does not parse is the replicator's to
                // name.
                if let Ok(spec) = replicator::plugin::ConnectorSpec::parse(&connector) {
                    self.refuse_self_target(&spec.targets()).map_err(|m| {
                        StoreError::new(
                            replicator::PIPE_ERROR,
                            format!("Failed to create pipe {id}: the connector {m}"),
                        )
                    })?;
                }
                self.pipes()?
                    .create(&id, extractor, processor, connector)
                    .map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::StartPipe(id) => {
                self.pipes()?.start(&id).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::StopPipe(id) => {
                self.pipes()?.stop(&id).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::DropPipe(id) => {
                self.pipes()?.drop_pipe(&id).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::ShowPipes { id, used_by } => {
                let incoming = |id: &str| {
                    self.control
                        .as_ref()
                        .is_some_and(|c| c.receiver().registry().rows().iter().any(|r| r.id == id))
                };
                let rows = match self.pipes()?.show(id.as_deref(), used_by.as_deref()) {
                    Ok(rows) => rows,
                    // SHOW PIPE of an incoming pipe only.
                    Err(e) if id.as_deref().is_some_and(incoming) && used_by.is_none() => {
                        drop(e);
                        vec![]
                    }
                    Err(e) => return Err(pipe_err(e)),
                };
                let rs = self.pipe_rows(ctx, rows);
                Ok(Outcome::Rows(match used_by {
                    None => self.with_receiver_rows(ctx, rs, id.as_deref()),
                    Some(_) => rs,
                }))
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
            Statement::CreatePipeSink {
                name,
                sink_type,
                attributes,
            } => {
                self.pipes()?
                    .create_pipesink(&name, &sink_type, &attributes)
                    .map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::DropPipeSink(name) => {
                self.pipes()?.drop_pipesink(&name).map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::ShowPipeSinks(name) => {
                let rows = self
                    .pipes()?
                    .pipesinks(name.as_deref())
                    .into_iter()
                    .map(|k| vec![k.name.clone(), k.sink_type.clone(), k.attributes()])
                    .collect();
                Ok(Outcome::Rows(ResultSet::text(
                    &["name", "type", "attributes"],
                    rows,
                )))
            }
            Statement::ShowPipeSinkTypes => Ok(Outcome::Rows(ResultSet::text(
                &["type"],
                replicator::pipesink::PIPESINK_TYPES
                    .iter()
                    .map(|t| vec![t.to_string()])
                    .collect(),
            ))),
            Statement::CreateSinkPipe {
                id,
                sink,
                start,
                attributes,
            } => {
                let start = match start {
                    Some((t, inclusive)) => {
                        let v = to_time(ctx, &t)?;
                        Some(if inclusive { v } else { v.saturating_add(1) })
                    }
                    None => None,
                };
                let pipes = self.pipes()?;
                if let Some(k) = pipes.pipesinks(Some(&sink)).first() {
                    self.refuse_self_target(&[format!("{}:{}", k.ip, k.port)])
                        .map_err(|m| {
                            StoreError::new(
                                replicator::QUERY_PROCESS_ERROR,
                                format!("Failed to create pipe {id}: pipeSink {sink} {m}"),
                            )
                        })?;
                }
                pipes
                    .create_sink_pipe(&id, &sink, start, &attributes)
                    .map_err(pipe_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::StartPipeServer => {
                self.control()?.start_pipe_server()?;
                Ok(Outcome::Done(None))
            }
            Statement::StopPipeServer => {
                self.control()?.stop_pipe_server()?;
                Ok(Outcome::Done(None))
            }
            Statement::ShowPipeServer => {
                let on = self.control()?.pipe_server().enabled();
                // IoTDB 0.14's column: `enable`, BOOLEAN.
                Ok(Outcome::Rows(ResultSet {
                    columns: vec!["enable".into()],
                    types: vec![DataType::Boolean],
                    ignore_timestamp: true,
                    times: vec![0],
                    data: vec![Column::Boolean(vec![on])],
                    nulls: vec![None],
                }))
            }
            Statement::ShowChangelog { consumers: false } => {
                Ok(Outcome::Rows(self.changelog_row(ctx)))
            }
            Statement::ShowChangelog { consumers: true } => {
                Ok(Outcome::Rows(self.changelog_consumers()))
            }
            Statement::LoadConfiguration => {
                let rows = self.control()?.reload()?;
                let rows = rows.into_iter().map(|r| r.to_vec()).collect();
                Ok(Outcome::Rows(ResultSet::text(
                    &["Key", "Value", "Effect"],
                    rows,
                )))
            }
            Statement::CreateUser { name, password } => {
                self.user_admin()?
                    .create(&name, &password)
                    .map_err(user_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::DropUser(name) => {
                self.user_admin()?.drop_user(&name).map_err(user_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::Privileges {
                grant,
                user,
                privileges,
                paths,
            } => {
                self.user_admin()?
                    .set(&user, &privileges, &paths, grant)
                    .map_err(user_err)?;
                Ok(Outcome::Done(None))
            }
            Statement::ListUser => {
                let rows = self
                    .user_admin()?
                    .list()
                    .into_iter()
                    .map(|u| vec![u])
                    .collect();
                // IoTDB 1.2's column name (IoTDBConstant.COLUMN_USER).
                Ok(Outcome::Rows(ResultSet::text(&["user"], rows)))
            }
            Statement::ListPrivileges { user, paths } => {
                let list = self
                    .user_admin()?
                    .privileges_of(&user, &paths)
                    .map_err(user_err)?;
                // IoTDB 1.2: root gets one column, `privilege`; other users
                // `role` (empty for their own grants) and `privilege`.
                let result = if user == "root" {
                    ResultSet::text(&["privilege"], list.into_iter().map(|p| vec![p]).collect())
                } else {
                    ResultSet::text(
                        &["role", "privilege"],
                        list.into_iter().map(|p| vec![String::new(), p]).collect(),
                    )
                };
                Ok(Outcome::Rows(result))
            }
        }
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
    fn quoted_nodes_with_dots_are_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(dir.path());
        let ctx = utc();
        e.execute(&ctx, "create database root.sg").unwrap();
        e.execute(
            &ctx,
            "create timeseries root.sg.`a.b`.s with datatype=INT32",
        )
        .unwrap();
        e.execute(&ctx, "insert into root.sg.`a.b`(time, s) values (1, 7)")
            .unwrap();
        e.execute(&ctx, "insert into root.sg.a(time, b) values (1, 8)")
            .unwrap();
        let r = rows(e.execute(&ctx, "select s from root.sg.`a.b`").unwrap());
        assert_eq!(r.times, [1]);
        let r = rows(e.execute(&ctx, "select b from root.sg.a").unwrap());
        assert_eq!(r.times, [1]);
        let r = rows(e.execute(&ctx, "show timeseries root.sg.**").unwrap());
        assert_eq!(r.rows(), 2, "{r:?}");
        // The dotted node is one level: root.sg.*.s finds it, root.sg.*.*.s does not.
        let r = rows(e.execute(&ctx, "select s from root.sg.*").unwrap());
        assert_eq!(r.times, [1]);
        let r = rows(e.execute(&ctx, "select s from root.sg.*.*").unwrap());
        assert!(r.times.is_empty(), "{r:?}");
        // Deleting the dotted device's data leaves root.sg.a alone.
        e.execute(&ctx, "delete from root.sg.`a.b`.**").unwrap();
        let r = rows(e.execute(&ctx, "select s from root.sg.`a.b`").unwrap());
        assert!(r.times.is_empty(), "{r:?}");
        let r = rows(e.execute(&ctx, "select b from root.sg.a").unwrap());
        assert_eq!(r.times, [1]);
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
        assert!(
            err.message.contains(
                "data type of root.sg.d.s is not consistent, registered type INT32, inserting type TEXT, timestamp 1, value x"
            ),
            "{err}"
        );
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

    /// Issue 13: `LIMIT 18446744073709551615 OFFSET 1` wrapped `start + l`
    /// (a panic in debug builds).
    #[test]
    fn huge_limits_and_offsets_are_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(dir.path());
        let ctx = utc();
        e.execute(
            &ctx,
            "insert into root.sg.d(time, s) values (1, 1), (2, 2), (3, 3)",
        )
        .unwrap();
        // IoTDB 1.2 takes row counts up to 2⁶³ - 1 and refuses more.
        let err = e
            .execute(&ctx, &format!("select s from root.sg.d limit {}", u64::MAX))
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                status::SEMANTIC_ERROR,
                "Out of range. LIMIT <N>: N should be Int64."
            )
        );
        let max = i64::MAX;
        let r = rows(
            e.execute(
                &ctx,
                &format!("select s from root.sg.d limit {max} offset 1"),
            )
            .unwrap(),
        );
        assert_eq!(r.times, [2, 3]);
        let r = rows(
            e.execute(
                &ctx,
                &format!("select s from root.sg.d limit 1 offset {max}"),
            )
            .unwrap(),
        );
        assert_eq!(r.rows(), 0);
        let r = rows(
            e.execute(
                &ctx,
                &format!("select s from root.sg.d limit {max} offset {max}"),
            )
            .unwrap(),
        );
        assert_eq!(r.rows(), 0);
    }

    /// Issue 13: an `openSession` zone id such as `+999999999` overflowed
    /// `h * 3600` (a panic in debug builds, a wrong zone in release).
    #[test]
    fn zone_ids_never_overflow() {
        for bad in [
            "+999999999",
            "-999999999",
            "+2147483647",
            "UTC+99999:99999",
            "+19:00",
            "+08:60",
            "+",
            "+:",
            "+1:2:3",
            "+08:0x",
            "+-1",
        ] {
            assert_eq!(zone_from_name(bad), None, "{bad}");
        }
        let h = |x: i32| FixedOffset::east_opt(x);
        assert_eq!(zone_from_name("+08:00"), h(8 * 3600));
        assert_eq!(zone_from_name("+0800"), h(8 * 3600));
        assert_eq!(zone_from_name("-05:30"), h(-(5 * 3600 + 30 * 60)));
        assert_eq!(zone_from_name("GMT+8"), h(8 * 3600));
        assert_eq!(zone_from_name("+18:00"), h(18 * 3600));
    }

    /// Issue 13: a statement's cost is bounded, with a clear error.
    #[test]
    fn statement_cost_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(dir.path());
        let ctx = utc();
        let cols: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        let from: Vec<String> = (0..32).map(|i| format!("root.sg.d{i}")).collect();
        let sql = format!("select {} from {}", cols.join(", "), from.join(", "));
        let err = e.execute(&ctx, &sql).unwrap_err();
        assert_eq!(err.code, status::SEMANTIC_ERROR);
        assert!(err.message.contains("1056 path patterns"), "{err}");
        let dels: Vec<String> = (0..1025).map(|i| format!("root.sg.d{i}.s")).collect();
        let err = e
            .execute(&ctx, &format!("delete from {}", dels.join(", ")))
            .unwrap_err();
        assert!(err.message.contains("more than the 1024"), "{err}");
        // Deep patterns with many wildcards run (and are logged) quickly.
        let deep = format!("delete from root{}", ".**".repeat(40));
        e.execute(&ctx, &deep).unwrap();
    }

    fn with_users(dir: &std::path::Path) -> (Executor, Arc<Users>) {
        let users = Arc::new(Users::open(&dir.join("system"), "root").unwrap());
        (exec(dir).with_users(users.clone()), users)
    }

    fn as_user(user: &str) -> Context {
        Context {
            user: user.into(),
            ..utc()
        }
    }

    /// Issue 10: the change log's figures over SQL (what `edgepipe top`
    /// shows without the data directory), readable with SHOW_PIPES.
    #[test]
    fn show_changelog_and_its_consumers() {
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = with_users(dir.path());
        let root = utc();
        let r = rows(e.execute(&root, "show changelog").unwrap());
        assert_eq!(r.columns, CHANGELOG_COLUMNS);
        let cell = |r: &ResultSet, row: usize, col: &str| {
            let i = r.columns.iter().position(|c| c == col).unwrap();
            match r.value(row, i) {
                Some(Value::Text(t)) => String::from_utf8(t).unwrap(),
                other => panic!("{col}: {other:?}"),
            }
        };
        assert_eq!(r.rows(), 1);
        assert_eq!(cell(&r, 0, "LogEndOffset"), "0");
        assert_eq!(cell(&r, 0, "RecordBytes"), "0");
        assert_eq!(cell(&r, 0, "FirstArrival"), "");
        for i in 0..3 {
            e.execute(
                &root,
                &format!("insert into root.sg.d(time, s) values ({i}, {i})"),
            )
            .unwrap();
        }
        let log = e.store().log().clone();
        let r = rows(e.execute(&root, "SHOW CHANGELOG").unwrap());
        assert_eq!(cell(&r, 0, "LogStartOffset"), log.log_start().to_string());
        assert_eq!(cell(&r, 0, "LogEndOffset"), log.end_offset().to_string());
        assert_eq!(cell(&r, 0, "Segments"), "1");
        assert_eq!(cell(&r, 0, "DiskBytes"), log.disk_bytes().to_string());
        let records = log.lag(log.log_start()).unwrap().bytes;
        assert_eq!(cell(&r, 0, "RecordBytes"), records.to_string());
        assert!(cell(&r, 0, "LastArrival").ends_with("+00:00"), "{r:?}");
        assert!(cell(&r, 0, "FirstArrival") <= cell(&r, 0, "LastArrival"));

        let r = rows(e.execute(&root, "show changelog consumers").unwrap());
        assert_eq!(r.columns, CHANGELOG_CONSUMER_COLUMNS);
        assert_eq!(r.rows(), 1, "the store is the one consumer: {r:?}");
        assert_eq!(cell(&r, 0, "Consumer"), crate::store::STORE_CONSUMER);
        let committed: u64 = cell(&r, 0, "CommittedOffset").parse().unwrap();
        let behind: u64 = cell(&r, 0, "LagRecords").parse().unwrap();
        assert_eq!(committed + behind, log.end_offset());
        assert_eq!(cell(&r, 0, "Lost"), "-");

        e.execute(&root, "create user alice 'alice123'").unwrap();
        let alice = as_user("alice");
        for sql in ["show changelog", "show changelog consumers"] {
            let err = e.execute(&alice, sql).unwrap_err();
            assert_eq!(
                err.message, "No permissions for this operation, please add privilege SHOW_PIPES",
                "{sql}"
            );
        }
        e.execute(&root, "grant user alice privileges SHOW_PIPES")
            .unwrap();
        e.execute(&alice, "show changelog").unwrap();
        e.execute(&alice, "show changelog consumers").unwrap();
    }

    /// Issue 7, finding 9: data statements need IoTDB 1.2's privileges.
    #[test]
    fn data_statements_need_privileges() {
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = with_users(dir.path());
        let root = utc();
        e.execute(&root, "create user alice 'alice123'").unwrap();
        e.execute(&root, "insert into root.sg.d(time, s) values (1, 1)")
            .unwrap();
        let alice = as_user("alice");
        let refused = |sql: &str, privilege: &str| {
            let err = e.execute(&alice, sql).unwrap_err();
            assert_eq!(err.code, status::NO_PERMISSION, "{sql}: {err}");
            assert_eq!(
                err.message,
                format!("No permissions for this operation, please add privilege {privilege}"),
                "{sql}"
            );
        };
        refused(
            "insert into root.sg.d(time, s) values (2, 2)",
            "INSERT_TIMESERIES",
        );
        refused("delete from root.sg.d.s", "DELETE_TIMESERIES");
        refused("drop database root.sg", "DELETE_DATABASE");
        refused("create database root.other", "CREATE_DATABASE");
        refused(
            "create timeseries root.sg.d.t with datatype=INT32",
            "CREATE_TIMESERIES",
        );
        refused("select ** from root.sg", "READ_TIMESERIES");
        refused("show timeseries", "READ_TIMESERIES");
        refused("show databases", "READ_TIMESERIES");
        refused("count timeseries root.**", "READ_TIMESERIES");
        refused("show devices", "READ_TIMESERIES");
        refused("create user bobby 'bobby123'", "CREATE_USER");
        refused("grant user alice privileges ALL", "GRANT_USER_PRIVILEGE");
        refused("list user", "LIST_USER");
        refused("list privileges user alice", "LIST_USER");
        refused("show pipeplugins", "SHOW_PIPEPLUGINS");
        assert_eq!(
            e.execute(&alice, "flush").unwrap_err().code,
            status::NO_PERMISSION
        );
        // Granted on a subtree: allowed there only.
        e.execute(
            &root,
            "grant user alice privileges INSERT_TIMESERIES, READ_TIMESERIES on root.sg.**",
        )
        .unwrap();
        e.execute(&alice, "insert into root.sg.d(time, s) values (2, 2)")
            .unwrap();
        refused(
            "insert into root.other.d(time, s) values (2, 2)",
            "INSERT_TIMESERIES",
        );
        assert_eq!(
            rows(e.execute(&alice, "select s from root.sg.d").unwrap()).times,
            [1, 2]
        );
        refused("select ** from root", "READ_TIMESERIES");
        let r = rows(e.execute(&root, "list privileges user alice").unwrap());
        assert_eq!(r.columns, ["role", "privilege"]);
        assert_eq!(
            r.value(0, 1),
            Some(Value::Text(
                b"root.sg.** : INSERT_TIMESERIES READ_TIMESERIES".to_vec()
            ))
        );
        let r = rows(e.execute(&root, "list user").unwrap());
        assert_eq!(r.columns, ["user"]);
        assert_eq!(r.rows(), 2);
        let r = rows(e.execute(&root, "list privileges user root").unwrap());
        assert_eq!(r.columns, ["privilege"]);
        assert_eq!(r.rows(), 47);
        e.execute(
            &root,
            "revoke user alice privileges INSERT_TIMESERIES on root.sg.**",
        )
        .unwrap();
        refused(
            "insert into root.sg.d(time, s) values (3, 3)",
            "INSERT_TIMESERIES",
        );
        // Client-RPC tablets: names made canonical, then the privilege.
        let mut t = vec![Tablet {
            device: "root.sg.`d`".into(),
            measurements: vec!["`s`".into()],
            columns: vec![Column::Double(vec![1.0])],
            nulls: vec![None],
            times: vec![9],
            aligned: false,
        }];
        let err = e.admit_tablets("alice", &mut t).unwrap_err();
        assert_eq!(err.code, status::NO_PERMISSION);
        assert_eq!(
            (t[0].device.as_str(), t[0].measurements[0].as_str()),
            ("root.sg.d", "s")
        );
        e.admit_tablets("root", &mut t).unwrap();
        t[0].measurements[0] = "a.b".into();
        let err = e.admit_tablets("root", &mut t).unwrap_err();
        assert_eq!(err.code, status::ILLEGAL_PATH);
    }

    /// The sync tool's PipeSink statements, SHOW PIPESINKTYPE, and the
    /// refusals of CREATE PIPE … TO that need no receiver (seed 000; the
    /// FAQ's "Create transport … error" included).
    #[test]
    fn sync_tool_statements_and_their_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let open = |dir: &std::path::Path| {
            let e = exec(dir);
            let pipes = Arc::new(
                replicator::PipeManager::open(
                    e.store().log().clone(),
                    &dir.join("system"),
                    replicator::Settings::default(),
                    rt.handle().clone(),
                )
                .unwrap(),
            );
            let users = Arc::new(Users::open(&dir.join("system"), "root").unwrap());
            e.with_pipes(pipes, users)
        };
        let e = open(dir.path());
        let ctx = utc();
        let text = |e: &Executor, q: &str| -> Vec<Vec<String>> {
            let r = rows(e.execute(&ctx, q).unwrap());
            (0..r.rows())
                .map(|i| {
                    (0..r.columns.len())
                        .map(|c| r.value(i, c).map(|v| v.to_string()).unwrap_or_default())
                        .collect()
                })
                .collect()
        };
        let refused = |e: &Executor, q: &str| {
            let err = e.execute(&ctx, q).unwrap_err();
            assert_eq!(err.code, 411, "{q}: {err}");
            err.message
        };
        let r = rows(e.execute(&ctx, "SHOW PIPESINKTYPE").unwrap());
        assert_eq!(r.columns, ["type"]);
        assert_eq!(text(&e, "SHOW PIPESINKTYPE"), [["IoTDB"]]);
        e.execute(&ctx, "CREATE PIPESINK demo AS IoTDB").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        e.execute(
            &ctx,
            &format!("CREATE PIPESINK closed AS IoTDB (IP='127.0.0.1', Port={port})"),
        )
        .unwrap();
        let r = rows(e.execute(&ctx, "SHOW PIPESINKS").unwrap());
        assert_eq!(r.columns, ["name", "type", "attributes"]);
        assert_eq!(
            text(&e, "SHOW PIPESINKS"),
            [
                vec![
                    "closed".to_string(),
                    "IoTDB".into(),
                    format!("ip='127.0.0.1',port={port}")
                ],
                vec![
                    "demo".into(),
                    "IoTDB".into(),
                    "ip='127.0.0.1',port=6670".into()
                ],
            ]
        );
        assert_eq!(text(&e, "SHOW PIPESINK demo").len(), 1);
        assert!(text(&e, "SHOW PIPESINK nothing").is_empty());
        assert!(refused(&e, "CREATE PIPESINK demo AS IoTDB")
            .contains("There is a pipeSink named demo in IoTDB, please drop it."));
        assert!(refused(&e, "CREATE PIPESINK x AS IoTDB (host='h')")
            .starts_with("There is No attribute host in IoTDB pipeSink."));
        assert!(refused(&e, "CREATE PIPESINK x AS IoTDB (port='p')").contains("port=p"));
        assert!(refused(&e, "CREATE PIPESINK x AS Kafka")
            .contains("Do not support pipeSink type Kafka"));
        // CREATE PIPE … TO: the FAQ's message when nothing answers, and no
        // pipe is created.
        let m = refused(&e, "CREATE PIPE mypipe TO closed");
        assert!(
            m.starts_with(&format!("Create transport for pipe mypipe error, because CREATE request connects to receiver 127.0.0.1:{port} error.")),
            "{m}"
        );
        assert!(m.contains("connect"), "the cause is named: {m}");
        assert_eq!(rows(e.execute(&ctx, "SHOW PIPES").unwrap()).rows(), 0);
        assert!(refused(&e, "CREATE PIPE p TO nothing").contains("Can not find pipeSink nothing."));
        assert!(refused(&e, "CREATE PIPE p TO demo WITH Batch=1")
            .starts_with("Can not recognition attribute Batch"));
        assert!(
            refused(&e, "CREATE PIPE p TO demo WITH SyncDelOp=maybe").contains("SyncDelOp=maybe")
        );
        assert!(refused(&e, "DROP PIPESINK nothing").contains("PipeSink nothing is not exist."));
        // SHOW PIPES' columns: 1.2's first, then the sync tool's.
        let r = rows(e.execute(&ctx, "SHOW PIPES").unwrap());
        assert_eq!(r.columns, PIPE_COLUMNS);
        e.execute(&ctx, "DROP PIPESINK closed").unwrap();
        drop(e);
        // PipeSinks persist.
        let e = open(dir.path());
        assert_eq!(
            text(&e, "SHOW PIPESINKS"),
            [[
                "demo".to_string(),
                "IoTDB".into(),
                "ip='127.0.0.1',port=6670".into()
            ]]
        );
    }
}
