//! IoTDB's SQL dialect, the subset edgepipe runs: a tokenizer and a
//! recursive-descent parser into [`Statement`]s. Keywords are
//! case-insensitive; errors say where (`line 1:COL`) and what was expected,
//! as IoTDB's parser does. Names in paths follow IoTDB 1.2's rules
//! ([`protocol::names`]): a node that is not a plain identifier is written
//! in backquotes, and is kept in its canonical written form.
//!
//! Path patterns match in time proportional to pattern × path
//! ([`Path::matches`] runs the pattern as an automaton), and a pattern has
//! at most [`MAX_PATH_NODES`] nodes.

use std::collections::BTreeMap;
use std::fmt;

use protocol::names::{self, Problem};
use protocol::types::{status, DataType};

/// Most nodes a path or pattern in a statement may have. Deep enough for
/// any real tree; bounds what matching one pattern costs.
pub const MAX_PATH_NODES: usize = 64;

/// A path node in a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A node name, in its canonical written form (`` `1` `` keeps its
    /// backquotes, `` `abc` `` is `abc`; see [`protocol::names`]).
    Name(String),
    /// `*`: exactly one level.
    One,
    /// `**`: one or more levels.
    Many,
}

impl Node {
    /// The node as written in a path (`*`, `**`, or the name).
    pub fn text(&self) -> &str {
        match self {
            Node::Name(s) => s,
            Node::One => "*",
            Node::Many => "**",
        }
    }
}

/// A path or path pattern, as a list of nodes (the first is `root` for full
/// paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub Vec<Node>);

impl Path {
    /// `root.**`: everything.
    pub fn everything() -> Path {
        Path(vec![Node::Name("root".into()), Node::Many])
    }

    /// Whether the path has no wildcard.
    pub fn is_plain(&self) -> bool {
        self.0.iter().all(|n| matches!(n, Node::Name(_)))
    }

    /// The nodes of `self` followed by those of `suffix`.
    pub fn join(&self, suffix: &Path) -> Path {
        Path(self.0.iter().chain(&suffix.0).cloned().collect())
    }

    /// Whether the plain path `nodes` (written nodes, as stored) matches
    /// this pattern.
    ///
    /// Runs the pattern as a nondeterministic automaton over the nodes
    /// (state `i`: the first `i` pattern nodes are matched), so the cost is
    /// at most pattern length × path length, however many `*` and `**`
    /// there are.
    pub fn matches(&self, nodes: &[&str]) -> bool {
        self.matches_nodes(nodes.iter().copied())
    }

    /// As [`Path::matches`], for a stored path string (split on dots
    /// outside backquotes).
    pub fn matches_path(&self, path: &str) -> bool {
        match names::split_nodes(path) {
            Ok(nodes) => self.matches(&nodes),
            Err(_) => self.matches_nodes(path.split('.')),
        }
    }

    /// As [`Path::matches`], over any sequence of written nodes.
    pub fn matches_nodes<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) -> bool {
        let p = &self.0;
        if p.len() < 128 {
            // States 0..=len fit one u128.
            let mut active: u128 = 1;
            for node in nodes {
                let mut next: u128 = 0;
                let mut a = active;
                while a != 0 {
                    let i = a.trailing_zeros() as usize;
                    a &= a - 1;
                    match p.get(i) {
                        None => {}
                        Some(Node::Name(x)) if x != node => {}
                        Some(Node::Name(_)) | Some(Node::One) => next |= 1 << (i + 1),
                        Some(Node::Many) => next |= (1 << i) | (1 << (i + 1)),
                    }
                }
                if next == 0 {
                    return false;
                }
                active = next;
            }
            active & (1 << p.len()) != 0
        } else {
            let mut active = vec![false; p.len() + 1];
            active[0] = true;
            for node in nodes {
                let mut next = vec![false; p.len() + 1];
                for i in (0..p.len()).filter(|&i| active[i]) {
                    match &p[i] {
                        Node::Name(x) if x != node => {}
                        Node::Name(_) | Node::One => next[i + 1] = true,
                        Node::Many => {
                            next[i] = true;
                            next[i + 1] = true;
                        }
                    }
                }
                if !next.contains(&true) {
                    return false;
                }
                active = next;
            }
            active[p.len()]
        }
    }

    /// Whether this pattern covers the statement path `other` read as
    /// literal nodes (its `*` and `**` are the texts `*` and `**`): how
    /// IoTDB 1.2 matches a granted privilege path against a statement's
    /// path (`matchFullPath`).
    pub fn covers(&self, other: &Path) -> bool {
        self.matches_nodes(other.0.iter().map(Node::text))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(n.text())?;
        }
        Ok(())
    }
}

/// A literal value in SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent (kept as written for FLOAT).
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A quoted string.
    Text(String),
    /// `null`: no value.
    Null,
}

/// A time in SQL: an integer, `now()`, or an ISO datetime.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeLit {
    /// An integer in the node's precision.
    Int(i64),
    /// `now()`.
    Now,
    /// An ISO 8601 datetime as written.
    DateTime(String),
    /// A datetime or `now()` plus or minus durations (`now() - 1d`), as
    /// IoTDB's `dateExpression`: `(negative, duration)` pairs in order.
    Shifted(Box<TimeLit>, Vec<(bool, Duration)>),
}

/// A unit of a duration literal (`1h30m`, `2ms`), as IoTDB 1.2 spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    /// `y`: 365 days.
    Year,
    /// `mo`: a natural month.
    Month,
    /// `w`: 7 days.
    Week,
    /// `d`.
    Day,
    /// `h`.
    Hour,
    /// `m`.
    Minute,
    /// `s`.
    Second,
    /// `ms`.
    Milli,
    /// `us`.
    Micro,
    /// `ns`.
    Nano,
}

impl DurationUnit {
    fn parse(s: &str) -> Option<DurationUnit> {
        Some(match s.to_ascii_lowercase().as_str() {
            "y" => DurationUnit::Year,
            "mo" => DurationUnit::Month,
            "w" => DurationUnit::Week,
            "d" => DurationUnit::Day,
            "h" => DurationUnit::Hour,
            "m" => DurationUnit::Minute,
            "s" => DurationUnit::Second,
            "ms" => DurationUnit::Milli,
            "us" => DurationUnit::Micro,
            "ns" => DurationUnit::Nano,
            _ => return None,
        })
    }
}

/// A duration literal (IoTDB's `DURATION_LITERAL`): amounts with units,
/// such as `1h30m` or `500ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duration(pub Vec<(u64, DurationUnit)>);

impl Duration {
    /// Parses `1h30m`-style text (amounts each followed by a unit of one
    /// or two letters: y, mo, w, d, h, m, s, ms, us, ns).
    pub fn parse(text: &str) -> Option<Duration> {
        let b = text.as_bytes();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let amount: u64 = text[start..i].parse().ok()?;
            let ustart = i;
            while i < b.len() && b[i].is_ascii_alphabetic() && i - ustart < 2 {
                i += 1;
            }
            // `1m2s`: a one-letter unit is followed by a digit; `1ms`: two.
            let mut unit = DurationUnit::parse(&text[ustart..i]);
            if unit.is_none() && i - ustart == 2 {
                i -= 1;
                unit = DurationUnit::parse(&text[ustart..i]);
            }
            parts.push((amount, unit?));
        }
        (!parts.is_empty()).then_some(Duration(parts))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in &self.0 {
            let unit = match u {
                DurationUnit::Year => "y",
                DurationUnit::Month => "mo",
                DurationUnit::Week => "w",
                DurationUnit::Day => "d",
                DurationUnit::Hour => "h",
                DurationUnit::Minute => "m",
                DurationUnit::Second => "s",
                DurationUnit::Milli => "ms",
                DurationUnit::Micro => "us",
                DurationUnit::Nano => "ns",
            };
            write!(f, "{n}{unit}")?;
        }
        Ok(())
    }
}

/// An aggregation function: the IoTDB 1.2 built-ins edgepipe computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aggregation {
    /// `count`: points (INT64).
    Count,
    /// `sum`: of a numeric series (DOUBLE).
    Sum,
    /// `avg`: of a numeric series (DOUBLE).
    Avg,
    /// `min_value`: of a numeric series (its type).
    MinValue,
    /// `max_value`: of a numeric series (its type).
    MaxValue,
    /// `first_value`: the value at the earliest time (its type).
    FirstValue,
    /// `last_value`: the value at the latest time (its type).
    LastValue,
    /// `min_time`: the earliest time (INT64).
    MinTime,
    /// `max_time`: the latest time (INT64).
    MaxTime,
}

impl Aggregation {
    /// Every aggregation, in the order of the list above.
    pub const ALL: [Aggregation; 9] = [
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::MinValue,
        Aggregation::MaxValue,
        Aggregation::FirstValue,
        Aggregation::LastValue,
        Aggregation::MinTime,
        Aggregation::MaxTime,
    ];

    /// The name as IoTDB prints it in a column header (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::MinValue => "min_value",
            Aggregation::MaxValue => "max_value",
            Aggregation::FirstValue => "first_value",
            Aggregation::LastValue => "last_value",
            Aggregation::MinTime => "min_time",
            Aggregation::MaxTime => "max_time",
        }
    }

    /// The aggregation named `name` (any case).
    pub fn from_name(name: &str) -> Option<Aggregation> {
        Aggregation::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

/// One column of a SELECT: a series pattern, or an aggregation of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultColumn {
    /// A path (suffix of the FROM paths): raw values.
    Path(Path),
    /// `agg(path)`.
    Aggregate(Aggregation, Path),
}

impl ResultColumn {
    /// The path (pattern) the column reads.
    pub fn path(&self) -> &Path {
        match self {
            ResultColumn::Path(p) | ResultColumn::Aggregate(_, p) => p,
        }
    }
}

/// What ORDER BY sorts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// `TIME`.
    Time,
    /// `TIMESERIES` (last queries).
    Timeseries,
    /// `DEVICE` (ALIGN BY DEVICE).
    Device,
}

/// `GROUP BY ([start, end), interval[, step])`, or `(start, end]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupByTime {
    /// The first window's start.
    pub start: TimeLit,
    /// The end of the range.
    pub end: TimeLit,
    /// `[start, end)` (true) or `(start, end]` (false).
    pub left_closed: bool,
    /// Each window's length.
    pub interval: Duration,
    /// The distance between window starts (the interval when absent).
    pub step: Option<Duration>,
}

/// A SELECT statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// `SELECT LAST ...`.
    pub last: bool,
    /// The result columns, as written.
    pub columns: Vec<ResultColumn>,
    /// Prefix paths.
    pub from: Vec<Path>,
    /// The time filter.
    pub filter: TimeFilter,
    /// `GROUP BY ([t1, t2), interval[, step])`.
    pub group_by: Option<GroupByTime>,
    /// `ORDER BY key [ASC|DESC], ...`: `(key, descending)`.
    pub order_by: Vec<(SortKey, bool)>,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET m`.
    pub offset: u64,
    /// `ALIGN BY DEVICE`.
    pub align_by_device: bool,
}

impl Select {
    /// Whether rows come in descending time order (`ORDER BY TIME DESC`).
    pub fn time_desc(&self) -> bool {
        self.order_by
            .iter()
            .any(|(k, desc)| *k == SortKey::Time && *desc)
    }
}

/// An inclusive time range; `None` bounds are open.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeFilter {
    /// Lower bounds: `(time, inclusive)`.
    pub lower: Vec<(TimeLit, bool)>,
    /// Upper bounds: `(time, inclusive)`.
    pub upper: Vec<(TimeLit, bool)>,
}

/// A measurement declaration in `CREATE ALIGNED TIMESERIES`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// The full path (or measurement name inside an aligned device).
    pub path: Path,
    /// The declared type.
    pub data_type: DataType,
    /// `ENCODING=`, upper-cased.
    pub encoding: Option<String>,
    /// `COMPRESSOR=`, upper-cased.
    pub compressor: Option<String>,
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SET STORAGE GROUP TO p` / `CREATE DATABASE p`.
    CreateDatabase(Path),
    /// `DELETE STORAGE GROUP p[, p]` / `DROP DATABASE p[, p]`.
    DeleteDatabase(Vec<Path>),
    /// `SHOW STORAGE GROUP [p]` / `SHOW DATABASES [p]`.
    ShowDatabases(Option<Path>),
    /// `CREATE TIMESERIES p WITH DATATYPE=...`.
    CreateTimeseries(SeriesSpec),
    /// `CREATE ALIGNED TIMESERIES device(m TYPE ..., ...)`.
    CreateAlignedTimeseries {
        /// The device.
        device: Path,
        /// Its measurements.
        measurements: Vec<SeriesSpec>,
    },
    /// `SHOW TIMESERIES [p]`.
    ShowTimeseries(Option<Path>),
    /// `COUNT TIMESERIES [p]`.
    CountTimeseries(Option<Path>),
    /// `SHOW DEVICES [p]`.
    ShowDevices(Option<Path>),
    /// `INSERT INTO device(time, m...) [ALIGNED] VALUES (...), ...`.
    Insert {
        /// The device.
        device: Path,
        /// Measurement names.
        measurements: Vec<String>,
        /// Whether `ALIGNED` was given.
        aligned: bool,
        /// Rows: time and one literal per measurement.
        rows: Vec<(TimeLit, Vec<Literal>)>,
    },
    /// `DELETE FROM p[, p] [WHERE time ...]`.
    Delete {
        /// Series patterns.
        paths: Vec<Path>,
        /// The time filter.
        filter: TimeFilter,
    },
    /// `SELECT [LAST] ... FROM ... [WHERE time ...] [GROUP BY (...)]
    /// [ORDER BY ...] [LIMIT n] [OFFSET m] [ALIGN BY DEVICE]`.
    Select(Box<Select>),
    /// `FLUSH`.
    Flush,
    /// `CREATE PIPE id [WITH EXTRACTOR (...)] [WITH PROCESSOR (...)] WITH CONNECTOR (...)`.
    CreatePipe {
        /// The pipe id.
        id: String,
        /// Extractor attributes.
        extractor: BTreeMap<String, String>,
        /// Processor attributes.
        processor: BTreeMap<String, String>,
        /// Connector attributes.
        connector: BTreeMap<String, String>,
    },
    /// `START PIPE id`.
    StartPipe(String),
    /// `STOP PIPE id`.
    StopPipe(String),
    /// `DROP PIPE id`.
    DropPipe(String),
    /// `SHOW PIPES`, `SHOW PIPE id` (`id`), `SHOW PIPES WHERE CONNECTOR USED BY id` (`used_by`).
    ShowPipes {
        /// One pipe.
        id: Option<String>,
        /// Pipes sharing this pipe's connector.
        used_by: Option<String>,
    },
    /// `SHOW PIPEPLUGINS`.
    ShowPipePlugins,
    /// `CREATE PIPESINK name AS type [(k=v, …)]` (the 1.0/1.1 sync tool).
    CreatePipeSink {
        /// Its name.
        name: String,
        /// Its type (`IoTDB`).
        sink_type: String,
        /// Attributes as written (`ip`, `port`).
        attributes: Vec<(String, String)>,
    },
    /// `DROP PIPESINK name`.
    DropPipeSink(String),
    /// `SHOW PIPESINKS` (`None`), `SHOW PIPESINK [name]`.
    ShowPipeSinks(Option<String>),
    /// `SHOW PIPESINKTYPE`.
    ShowPipeSinkTypes,
    /// `CREATE PIPE id TO sink [FROM (select ** from root [WHERE time >= t])]
    /// [WITH k=v, …]` (the 1.0/1.1 sync tool).
    CreateSinkPipe {
        /// The pipe's name.
        id: String,
        /// The PipeSink it sends to.
        sink: String,
        /// The `WHERE time > t` (false) or `>= t` (true) bound.
        start: Option<(TimeLit, bool)>,
        /// `WITH` attributes as written (`SyncDelOp`).
        attributes: Vec<(String, String)>,
    },
    /// `START PIPESERVER` (seed 000).
    StartPipeServer,
    /// `STOP PIPESERVER`.
    StopPipeServer,
    /// `SHOW PIPESERVER` (also `SHOW PIPESERVER STATUS`, as IoTDB 0.14's
    /// English document writes it).
    ShowPipeServer,
    /// `SHOW CHANGELOG` (one row: the node's change log, as `edgepipe wal
    /// info` shows it) or `SHOW CHANGELOG CONSUMERS` (`consumers`: each
    /// consumer's committed offset and lag, as `edgepipe wal offsets`).
    ShowChangelog {
        /// `CONSUMERS`.
        consumers: bool,
    },
    /// `LOAD CONFIGURATION [ON LOCAL | ON CLUSTER]`.
    LoadConfiguration,
    /// `CREATE USER name 'password'`.
    CreateUser {
        /// User name.
        name: String,
        /// Password.
        password: String,
    },
    /// `DROP USER name`.
    DropUser(String),
    /// `GRANT USER name PRIVILEGES p[, p] [ON path[, path]]` (`grant`), or
    /// REVOKE.
    Privileges {
        /// True for GRANT, false for REVOKE.
        grant: bool,
        /// User name.
        user: String,
        /// Privilege names, upper-cased.
        privileges: Vec<String>,
        /// The `ON` paths (empty: `root.**`, as IoTDB reads it).
        paths: Vec<Path>,
    },
    /// `LIST USER`.
    ListUser,
    /// `LIST PRIVILEGES USER name [ON path[, path]]`.
    ListPrivileges {
        /// User name (`root` allowed).
        user: String,
        /// The `ON` paths (empty: every privilege).
        paths: Vec<Path>,
    },
}

/// A parse error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character column of the offending token.
    pub col: usize,
    /// What was wrong.
    pub message: String,
    /// IoTDB's status code for it: `SQL_PARSE_ERROR` (700), or
    /// `ILLEGAL_PATH` (509) for an illegal name or an over-long path.
    pub code: i32,
}

impl ParseError {
    fn at(col: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            col,
            message: message.into(),
            code: status::SQL_PARSE_ERROR,
        }
    }

    fn name(col: usize, e: &names::NameError) -> ParseError {
        ParseError {
            col,
            message: e.to_string(),
            code: e.code(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line 1:{} {}", self.col, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Backquoted(String),
    Number(String),
    DateTime(String),
    Sym(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(s) | Tok::Number(s) | Tok::DateTime(s) => f.write_str(s),
            Tok::Quoted(s) => write!(f, "'{s}'"),
            Tok::Backquoted(s) => write!(f, "`{}`", s.replace('`', "``")),
            Tok::Sym(s) => f.write_str(s),
        }
    }
}

/// Length of an ISO datetime at the start of `s` (`2022-03-30`,
/// `2022-03-30 00:00:00`, `2022-03-30T00:00:00.123+08:00`), if any.
fn datetime_len(s: &[char]) -> Option<usize> {
    let digits =
        |at: usize, n: usize| (at..at + n).all(|i| s.get(i).is_some_and(|c| c.is_ascii_digit()));
    let is = |at: usize, c: char| s.get(at) == Some(&c);
    if !(digits(0, 4)
        && (is(4, '-') || is(4, '/'))
        && digits(5, 2)
        && (is(7, '-') || is(7, '/'))
        && digits(8, 2))
    {
        return None;
    }
    let mut n = 10;
    if (is(n, 'T') || is(n, ' ')) && digits(n + 1, 2) && is(n + 3, ':') && digits(n + 4, 2) {
        n += 6;
        if is(n, ':') && digits(n + 1, 2) {
            n += 3;
            if is(n, '.') && digits(n + 1, 1) {
                n += 1;
                while s.get(n).is_some_and(|c| c.is_ascii_digit()) {
                    n += 1;
                }
            }
        }
        if is(n, 'Z') {
            n += 1;
        } else if (is(n, '+') || is(n, '-'))
            && digits(n + 1, 2)
            && is(n + 3, ':')
            && digits(n + 4, 2)
        {
            n += 6;
        }
    }
    Some(n)
}

fn tokenize(sql: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let s: Vec<char> = sql.chars().collect();
    let mut out: Vec<(Tok, usize)> = Vec::new();
    let mut i = 0;
    let err = ParseError::at;
    while i < s.len() {
        let c = s[i];
        let start = i;
        let after_dot = matches!(out.last(), Some((Tok::Sym("."), _)));
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && s.get(i + 1) == Some(&'-') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            let mut v = String::new();
            i += 1;
            loop {
                match s.get(i) {
                    None => {
                        return Err(err(start, format!("unterminated string starting with {c}")))
                    }
                    Some(&q) if q == c && s.get(i + 1) == Some(&c) => {
                        v.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Quoted(v), start));
            continue;
        }
        if c == '`' {
            let mut v = String::new();
            i += 1;
            loop {
                match s.get(i) {
                    None => {
                        return Err(err(
                            start,
                            "unterminated `quoted` name (a backquote inside a quoted name is written twice: ``)".to_string(),
                        ))
                    }
                    Some('`') if s.get(i + 1) == Some(&'`') => {
                        v.push('`');
                        i += 2;
                    }
                    Some('`') => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Backquoted(v), start));
            continue;
        }
        if !after_dot {
            if let Some(n) = datetime_len(&s[i..]) {
                out.push((Tok::DateTime(s[i..i + n].iter().collect()), start));
                i += n;
                continue;
            }
            // `.5` is a number only where a value may start (after `(`,
            // `,`, `=` or an operator), never inside a path.
            let value_start =
                matches!(out.last(), Some((Tok::Sym(x), _)) if !matches!(*x, ")" | "*" | "**"));
            if c.is_ascii_digit()
                || (c == '.' && value_start && s.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
            {
                let mut j = i;
                while j < s.len() && (s[j].is_ascii_digit() || s[j] == '.') {
                    j += 1;
                }
                if j < s.len() && (s[j] == 'e' || s[j] == 'E') {
                    let k = j + 1 + usize::from(matches!(s.get(j + 1), Some('+') | Some('-')));
                    if s.get(k).is_some_and(|d| d.is_ascii_digit()) {
                        j = k;
                        while j < s.len() && s[j].is_ascii_digit() {
                            j += 1;
                        }
                    }
                }
                // A node name such as `1TS` continues with letters.
                if j < s.len() && (s[j].is_alphanumeric() || s[j] == '_') {
                    while j < s.len() && (s[j].is_alphanumeric() || s[j] == '_') {
                        j += 1;
                    }
                    out.push((Tok::Word(s[i..j].iter().collect()), start));
                } else {
                    out.push((Tok::Number(s[i..j].iter().collect()), start));
                }
                i = j;
                continue;
            }
        }
        if c.is_alphanumeric() || c == '_' {
            let mut j = i;
            while j < s.len() && (s[j].is_alphanumeric() || s[j] == '_') {
                j += 1;
            }
            out.push((Tok::Word(s[i..j].iter().collect()), start));
            i = j;
            continue;
        }
        let two: String = s[i..(i + 2).min(s.len())].iter().collect();
        let (sym, used): (&'static str, usize) = match two.as_str() {
            "**" => ("**", 2),
            ">=" => (">=", 2),
            "<=" => ("<=", 2),
            "!=" | "<>" => ("!=", 2),
            "==" => ("=", 2),
            _ => (
                match c {
                    '*' => "*",
                    '.' => ".",
                    ',' => ",",
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    '=' => "=",
                    '>' => ">",
                    '<' => "<",
                    ';' => ";",
                    '-' => "-",
                    '+' => "+",
                    _ => return Err(err(start, format!("token recognition error at: '{c}' (a name with such a character is written in backquotes, e.g. `a{c}b`)"))),
                },
                1,
            ),
        };
        i += used;
        out.push((Tok::Sym(sym), start));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end_col: usize,
    /// Token index just after the last path parsed (for a hint when a
    /// name with a space was written without backquotes).
    path_end: usize,
}

type PResult<T> = Result<T, ParseError>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.0)
    }

    fn col(&self) -> usize {
        self.toks.get(self.at).map_or(self.end_col, |t| t.1)
    }

    fn fail<T>(&self, expected: &str) -> PResult<T> {
        let found = match self.peek() {
            Some(t) => format!("'{t}'"),
            None => "<EOF>".to_string(),
        };
        let mut message = format!("mismatched input {found} expecting {expected}");
        if self.at == self.path_end && matches!(self.peek(), Some(Tok::Word(_) | Tok::Number(_))) {
            message.push_str(
                " (a name with a space or other special characters is written in backquotes, e.g. root.sg.`a b`)",
            );
        }
        Err(ParseError::at(self.col(), message))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.fail(&kw.to_uppercase())
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> PResult<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            self.fail(&format!("'{s}'"))
        }
    }

    /// A node of a path or pattern: a name (bare or backquoted, checked
    /// by IoTDB's rules and kept in canonical form), `*` or `**`.
    fn node(&mut self) -> PResult<Node> {
        let col = self.col();
        let n = match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Number(w)) => {
                let w = w.clone();
                names::check_bare(&w).map_err(|p| Self::bad_name(col, &w, p))?;
                Node::Name(w)
            }
            Some(Tok::Backquoted(raw)) => {
                let raw = raw.clone();
                let canon = names::name_to_node(&raw)
                    .map_err(|p| Self::bad_name(col, &names::quote(&raw), p))?;
                Node::Name(canon.into_owned())
            }
            Some(Tok::Sym("*")) => Node::One,
            Some(Tok::Sym("**")) => Node::Many,
            _ => return self.fail("a path node"),
        };
        self.at += 1;
        Ok(n)
    }

    fn bad_name(col: usize, written: &str, p: Problem) -> ParseError {
        ParseError::name(
            col,
            &names::NameError {
                given: written.to_string(),
                node: written.to_string(),
                problem: p,
            },
        )
    }

    /// A measurement name in a column list: one node, no wildcard.
    fn measurement(&mut self) -> PResult<String> {
        let col = self.col();
        match self.node()? {
            Node::Name(n) => Ok(n),
            w => Err(Self::bad_name(col, w.text(), Problem::Wildcard)),
        }
    }

    /// A path: node ('.' node)*, at most [`MAX_PATH_NODES`] nodes.
    fn path(&mut self) -> PResult<Path> {
        let col = self.col();
        let mut nodes = vec![self.node()?];
        while self.eat_sym(".") {
            nodes.push(self.node()?);
        }
        self.check_len(col, nodes)
    }

    fn check_len(&mut self, col: usize, nodes: Vec<Node>) -> PResult<Path> {
        if nodes.len() > MAX_PATH_NODES {
            return Err(ParseError {
                col,
                message: format!(
                    "a path may have at most {MAX_PATH_NODES} nodes; this one has {}",
                    nodes.len()
                ),
                code: status::ILLEGAL_PATH,
            });
        }
        Ok(Path(nodes))
    }

    /// A full path starting at `root`.
    fn full_path(&mut self) -> PResult<Path> {
        let col = self.col();
        let root = matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("root"));
        if !root {
            let p = self.path()?;
            return Err(ParseError::at(
                col,
                format!("path {p} must start with root"),
            ));
        }
        self.at += 1;
        let mut nodes = vec![Node::Name("root".into())];
        while self.eat_sym(".") {
            nodes.push(self.node()?);
        }
        self.path_end = self.at;
        self.check_len(col, nodes)
    }

    fn plain_full_path(&mut self, what: &str) -> PResult<Path> {
        let col = self.col();
        let p = self.full_path()?;
        if !p.is_plain() {
            return Err(ParseError {
                col,
                message: format!("{what} {p} may not contain wildcards (a name made of * is written in backquotes: `*`)"),
                code: status::ILLEGAL_PATH,
            });
        }
        if p.0.len() < 2 {
            return Err(ParseError {
                col,
                message: format!("{what} {p} needs at least one node after root, e.g. root.sg"),
                code: status::ILLEGAL_PATH,
            });
        }
        Ok(p)
    }

    fn paths(&mut self) -> PResult<Vec<Path>> {
        let mut v = vec![self.full_path()?];
        while self.eat_sym(",") {
            v.push(self.full_path()?);
        }
        Ok(v)
    }

    fn word(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Backquoted(w)) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => self.fail(what),
        }
    }

    fn literal(&mut self) -> PResult<Literal> {
        let neg = if self.eat_sym("-") {
            true
        } else {
            self.eat_sym("+");
            false
        };
        let col = self.col();
        let lit = match self.peek().cloned() {
            Some(Tok::Number(n)) => {
                self.at += 1;
                let text = if neg { format!("-{n}") } else { n };
                if let Ok(i) = text.parse::<i64>() {
                    Literal::Int(i)
                } else {
                    Literal::Float(text.parse::<f64>().map_err(|_| ParseError {
                        code: status::SQL_PARSE_ERROR,
                        col,
                        message: format!("bad number {text}"),
                    })?)
                }
            }
            Some(Tok::Quoted(s)) if !neg => {
                self.at += 1;
                Literal::Text(s)
            }
            Some(Tok::Word(w)) if !neg && w.eq_ignore_ascii_case("true") => {
                self.at += 1;
                Literal::Bool(true)
            }
            Some(Tok::Word(w)) if !neg && w.eq_ignore_ascii_case("false") => {
                self.at += 1;
                Literal::Bool(false)
            }
            Some(Tok::Word(w)) if !neg && w.eq_ignore_ascii_case("null") => {
                self.at += 1;
                Literal::Null
            }
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("nan") || w.eq_ignore_ascii_case("infinity") =>
            {
                self.at += 1;
                let v = if w.eq_ignore_ascii_case("nan") {
                    f64::NAN
                } else {
                    f64::INFINITY
                };
                Literal::Float(if neg { -v } else { v })
            }
            _ => return self.fail("a constant (number, 'string', true, false or null)"),
        };
        Ok(lit)
    }

    /// A time value: an integer, or a datetime or `now()` optionally
    /// shifted by durations (`now() - 1d`, IoTDB's `dateExpression`).
    fn time_lit(&mut self) -> PResult<TimeLit> {
        let base = self.time_base()?;
        if matches!(base, TimeLit::Int(_)) {
            return Ok(base);
        }
        let mut shifts = Vec::new();
        loop {
            let neg = match self.peek() {
                Some(Tok::Sym("+")) => false,
                Some(Tok::Sym("-")) => true,
                _ => break,
            };
            // Only a duration makes it a date expression.
            let Some((Tok::Word(w), _)) = self.toks.get(self.at + 1) else {
                break;
            };
            let Some(d) = Duration::parse(w) else {
                break;
            };
            self.at += 2;
            shifts.push((neg, d));
        }
        Ok(if shifts.is_empty() {
            base
        } else {
            TimeLit::Shifted(Box::new(base), shifts)
        })
    }

    /// A duration literal such as `1h30m`.
    fn duration(&mut self) -> PResult<Duration> {
        let d = match self.peek() {
            Some(Tok::Word(w)) => Duration::parse(w),
            _ => None,
        };
        match d {
            Some(d) => {
                self.at += 1;
                Ok(d)
            }
            None => {
                self.fail("a duration such as 1ms, 10s, 1h30m (units y, w, d, h, m, s, ms, us, ns)")
            }
        }
    }

    fn time_base(&mut self) -> PResult<TimeLit> {
        let neg = self.eat_sym("-");
        match self.peek().cloned() {
            Some(Tok::Number(n)) => {
                let col = self.col();
                self.at += 1;
                // The sign is part of the number: -9223372036854775808 fits.
                let text = if neg { format!("-{n}") } else { n };
                let v: i64 = text.parse().map_err(|_| ParseError {
                    code: status::SQL_PARSE_ERROR,
                    col,
                    message: format!("time {text} is not a 64-bit integer"),
                })?;
                Ok(TimeLit::Int(v))
            }
            Some(Tok::DateTime(d)) | Some(Tok::Quoted(d)) if !neg => {
                self.at += 1;
                Ok(TimeLit::DateTime(d))
            }
            Some(Tok::Word(w)) if !neg && w.eq_ignore_ascii_case("now") => {
                self.at += 1;
                self.sym("(")?;
                self.sym(")")?;
                Ok(TimeLit::Now)
            }
            _ => self.fail("a time (integer, now() or a datetime such as 2022-03-30T00:00:00)"),
        }
    }

    fn where_time(&mut self) -> PResult<TimeFilter> {
        let mut f = TimeFilter::default();
        if !self.eat_kw("where") {
            return Ok(f);
        }
        loop {
            if !(self.eat_kw("time") || self.eat_kw("timestamp")) {
                return self.fail("TIME (only filters on time are supported)");
            }
            if self.eat_kw("between") {
                let lo = self.time_lit()?;
                self.kw("and")?;
                let hi = self.time_lit()?;
                f.lower.push((lo, true));
                f.upper.push((hi, true));
            } else {
                let op = match self.peek() {
                    Some(Tok::Sym(s)) if [">", ">=", "<", "<=", "="].contains(s) => *s,
                    _ => return self.fail("a comparison (>, >=, <, <=, =)"),
                };
                self.at += 1;
                let t = self.time_lit()?;
                match op {
                    ">" => f.lower.push((t, false)),
                    ">=" => f.lower.push((t, true)),
                    "<" => f.upper.push((t, false)),
                    "<=" => f.upper.push((t, true)),
                    _ => {
                        f.lower.push((t.clone(), true));
                        f.upper.push((t, true));
                    }
                }
            }
            if self.eat_kw("and") {
                continue;
            }
            if self.is_kw("or") {
                return Err(ParseError {
                    code: status::SQL_PARSE_ERROR,
                    col: self.col(),
                    message: "OR in a time filter is not supported; use AND or BETWEEN".into(),
                });
            }
            return Ok(f);
        }
    }

    /// Series attributes: `WITH DATATYPE=T, ENCODING=E, COMPRESSOR=C`, or
    /// the short form `T ENCODING=E` (spaces or commas between).
    fn series_attrs(
        &mut self,
        t: &mut Option<DataType>,
        e: &mut Option<String>,
        c: &mut Option<String>,
    ) -> PResult<()> {
        self.eat_kw("with");
        loop {
            let before = self.at;
            self.series_attr(t, e, c)?;
            self.eat_sym(",");
            if self.at == before {
                return Ok(());
            }
        }
    }

    /// `( 'k' = 'v' [, 'k' = 'v']* [,] )`: quoted keys and values.
    fn attributes(&mut self) -> PResult<BTreeMap<String, String>> {
        self.sym("(")?;
        let mut m = BTreeMap::new();
        loop {
            if self.eat_sym(")") {
                return Ok(m);
            }
            let col = self.col();
            let Some(Tok::Quoted(k)) = self.peek().cloned() else {
                return self.fail("a quoted attribute key such as 'connector'");
            };
            self.at += 1;
            self.sym("=")?;
            let Some(Tok::Quoted(v)) = self.peek().cloned() else {
                return self.fail("a quoted attribute value");
            };
            self.at += 1;
            if m.insert(k.clone(), v).is_some() {
                return Err(ParseError {
                    code: status::SQL_PARSE_ERROR,
                    col,
                    message: format!("attribute '{k}' is given twice"),
                });
            }
            if !self.eat_sym(",") {
                self.sym(")")?;
                return Ok(m);
            }
        }
    }

    fn ident(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Backquoted(w)) | Some(Tok::Number(w)) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => self.fail(what),
        }
    }

    /// A name if one follows (`SHOW PIPE [name]`).
    fn opt_ident(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Backquoted(w)) | Some(Tok::Number(w)) => {
                let w = w.clone();
                self.at += 1;
                Some(w)
            }
            _ => None,
        }
    }

    /// `k = v (, k = v)*` of the sync tool: keys and values bare, quoted,
    /// backquoted or numbers (`ip='127.0.0.1', port=6670`).
    fn attribute_pairs(&mut self) -> PResult<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        loop {
            let col = self.col();
            let k = match self.peek().cloned() {
                Some(Tok::Word(w) | Tok::Quoted(w) | Tok::Backquoted(w) | Tok::Number(w)) => w,
                _ => return self.fail("an attribute such as ip='127.0.0.1' or SyncDelOp=false"),
            };
            self.at += 1;
            self.sym("=")?;
            let neg = self.eat_sym("-");
            let v = match self.peek().cloned() {
                Some(Tok::Number(n)) => {
                    if neg {
                        format!("-{n}")
                    } else {
                        n
                    }
                }
                Some(Tok::Word(w) | Tok::Quoted(w) | Tok::Backquoted(w) | Tok::DateTime(w))
                    if !neg =>
                {
                    w
                }
                _ => return self.fail("an attribute value"),
            };
            self.at += 1;
            if out.iter().any(|(x, _)| x.eq_ignore_ascii_case(&k)) {
                return Err(ParseError {
                    code: status::SQL_PARSE_ERROR,
                    col,
                    message: format!("attribute {k} is given twice"),
                });
            }
            out.push((k, v));
            if !self.eat_sym(",") {
                return Ok(out);
            }
        }
    }

    /// The rest of `CREATE PIPE id TO sink [FROM (select ** from root
    /// [WHERE time >= t])] [WITH k=v, …]`, after `TO`.
    fn sink_pipe(&mut self, id: String) -> PResult<Statement> {
        let sink = self.ident("a pipeSink name")?;
        let mut start = None;
        if self.eat_kw("from") {
            let col = self.col();
            let only = |found: &str| {
                ParseError {
                code: status::SQL_PARSE_ERROR,
                col,
                message: format!(
                    "CREATE PIPE … TO … FROM supports only (select ** from root [where time >= T]), with > or >= on time and T an integer or a datetime such as 2022-03-30 00:00:00; {found}"
                ),
            }
            };
            if !self.eat_sym("(") {
                return Err(only("the select statement must be in parentheses"));
            }
            if !self.eat_kw("select") {
                return Err(only("a SELECT statement is expected"));
            }
            if !self.eat_sym("**") || !self.is_kw("from") {
                return Err(only("only ** may be selected"));
            }
            self.at += 1;
            if !self.eat_kw("root") || matches!(self.peek(), Some(Tok::Sym("." | ","))) {
                return Err(only("only FROM root is allowed"));
            }
            if self.eat_kw("where") {
                if !(self.eat_kw("time") || self.eat_kw("timestamp")) {
                    return Err(only("the WHERE clause may filter on time only"));
                }
                let inclusive = if self.eat_sym(">=") {
                    true
                } else if self.eat_sym(">") {
                    false
                } else {
                    return Err(only("only > or >= may compare time"));
                };
                let t = self.time_lit()?;
                if t == TimeLit::Now {
                    return Err(only("now() is not a start time"));
                }
                start = Some((t, inclusive));
                if !matches!(self.peek(), Some(Tok::Sym(")"))) {
                    return Err(only("only one condition on time is allowed"));
                }
            }
            if !self.eat_sym(")") {
                return Err(only("expected ')' after the select statement"));
            }
        }
        let attributes = if self.eat_kw("with") {
            self.attribute_pairs()?
        } else {
            Vec::new()
        };
        Ok(Statement::CreateSinkPipe {
            id,
            sink,
            start,
            attributes,
        })
    }

    fn privileges(&mut self, grant: bool) -> PResult<Statement> {
        self.kw("user")?;
        let user = self.ident("a user name")?;
        self.kw("privileges")?;
        let mut privileges = vec![self
            .ident("a privilege such as CREATE_PIPE")?
            .to_ascii_uppercase()];
        while self.eat_sym(",") {
            privileges.push(self.ident("a privilege")?.to_ascii_uppercase());
        }
        let paths = self.on_paths()?;
        Ok(Statement::Privileges {
            grant,
            user,
            privileges,
            paths,
        })
    }

    /// `[ON path[, path]]`.
    fn on_paths(&mut self) -> PResult<Vec<Path>> {
        if self.eat_kw("on") {
            self.paths()
        } else {
            Ok(Vec::new())
        }
    }

    /// The row count of LIMIT (`limit`) or OFFSET, with IoTDB 1.2's checks
    /// and words (`ASTVisitor.parseLimitClause`, `parseOffsetClause`): a
    /// 64-bit signed integer, LIMIT above 0.
    fn row_count(&mut self, limit: bool) -> PResult<u64> {
        let col = self.col();
        let semantic = |message: &str| ParseError {
            code: status::SEMANTIC_ERROR,
            col,
            message: message.into(),
        };
        let Some(Tok::Number(n)) = self.peek().cloned() else {
            return self.fail("a row count");
        };
        self.at += 1;
        let Ok(v) = n.parse::<i64>() else {
            return Err(if n.bytes().all(|b| b.is_ascii_digit()) {
                semantic(if limit {
                    "Out of range. LIMIT <N>: N should be Int64."
                } else {
                    "Out of range. OFFSET <OFFSETValue>: OFFSETValue should be Int64."
                })
            } else {
                ParseError::at(col, format!("{n} is not a row count"))
            });
        };
        if limit && v == 0 {
            return Err(semantic("LIMIT <N>: N should be greater than 0."));
        }
        Ok(v as u64)
    }

    /// One result column: a path, or `function(path)`.
    fn result_column(&mut self) -> PResult<ResultColumn> {
        let col = self.col();
        let call = matches!(
            (self.peek(), self.toks.get(self.at + 1)),
            (Some(Tok::Word(_)), Some((Tok::Sym("("), _)))
        );
        if !call {
            return Ok(ResultColumn::Path(self.path()?));
        }
        let Some(Tok::Word(name)) = self.peek().cloned() else {
            return self.fail("a function name");
        };
        let Some(agg) = Aggregation::from_name(&name) else {
            let supported: Vec<&str> = Aggregation::ALL.iter().map(|a| a.name()).collect();
            return Err(ParseError {
                code: status::SEMANTIC_ERROR,
                col,
                message: format!(
                    "function {name} is not supported; the aggregations are {}",
                    supported.join(", ")
                ),
            });
        };
        self.at += 2;
        let path = self.path()?;
        self.sym(")")?;
        Ok(ResultColumn::Aggregate(agg, path))
    }

    /// `[` or `(` time `,` time `)` or `]` of GROUP BY: `[t1, t2)` or
    /// `(t1, t2]`.
    fn group_by_range(&mut self) -> PResult<(TimeLit, TimeLit, bool)> {
        let left_closed = if self.eat_sym("[") {
            true
        } else {
            self.sym("(")?;
            false
        };
        let start = self.time_lit()?;
        self.sym(",")?;
        let end = self.time_lit()?;
        self.sym(if left_closed { ")" } else { "]" })?;
        Ok((start, end, left_closed))
    }

    /// `GROUP BY [TIME] ([t1, t2), interval[, step])`, after GROUP BY.
    fn group_by(&mut self) -> PResult<GroupByTime> {
        let col = self.col();
        for other in [
            "level",
            "tags",
            "variation",
            "condition",
            "session",
            "count",
        ] {
            if self.is_kw(other) {
                return Err(ParseError {
                    code: status::SEMANTIC_ERROR,
                    col,
                    message: format!(
                        "GROUP BY {} is not supported; group by time windows: GROUP BY ([t1, t2), interval[, step])",
                        other.to_uppercase()
                    ),
                });
            }
        }
        self.eat_kw("time");
        self.sym("(")?;
        let range = if matches!(self.peek(), Some(Tok::Sym("[" | "("))) {
            let r = self.group_by_range()?;
            self.sym(",")?;
            Some(r)
        } else {
            None
        };
        let interval = self.duration()?;
        let step = if self.eat_sym(",") {
            Some(self.duration()?)
        } else {
            None
        };
        self.sym(")")?;
        let Some((start, end, left_closed)) = range else {
            // IoTDB 1.2's words (AnalyzeVisitor.analyzeGroupByTime).
            return Err(ParseError {
                code: status::SEMANTIC_ERROR,
                col,
                message: "The query time range should be specified in the GROUP BY TIME clause."
                    .into(),
            });
        };
        Ok(GroupByTime {
            start,
            end,
            left_closed,
            interval,
            step,
        })
    }

    /// The rest of a SELECT, after the SELECT keyword.
    fn select(&mut self) -> PResult<Select> {
        // LAST is the keyword unless it is the selected path itself.
        let last = self.is_kw("last")
            && !matches!(self.toks.get(self.at + 1), Some((Tok::Sym("." | ","), _)))
            && !matches!(self.toks.get(self.at + 1), Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("from"));
        if last {
            self.at += 1;
        }
        let mut columns = vec![self.result_column()?];
        while self.eat_sym(",") {
            columns.push(self.result_column()?);
        }
        self.kw("from")?;
        let from = self.paths()?;
        let filter = self.where_time()?;
        let group_by = if self.eat_kw("group") {
            self.kw("by")?;
            Some(self.group_by()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_kw("order") {
            self.kw("by")?;
            loop {
                let key = if self.eat_kw("time") || self.eat_kw("timestamp") {
                    SortKey::Time
                } else if self.eat_kw("timeseries") {
                    SortKey::Timeseries
                } else if self.eat_kw("device") {
                    SortKey::Device
                } else {
                    return self
                        .fail("TIME, TIMESERIES or DEVICE (ordering by values is not supported)");
                };
                let desc = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                if order_by.iter().any(|(k, _)| *k == key) {
                    return Err(ParseError::at(self.col(), "a sort key is given twice"));
                }
                order_by.push((key, desc));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let (mut limit, mut offset) = (None, None);
        loop {
            if limit.is_none() && self.eat_kw("limit") {
                limit = Some(self.row_count(true)?);
            } else if offset.is_none() && self.eat_kw("offset") {
                offset = Some(self.row_count(false)?);
            } else {
                break;
            }
        }
        let mut align_by_device = false;
        if self.eat_kw("align") {
            self.kw("by")?;
            if self.eat_kw("device") {
                align_by_device = true;
            } else if !self.eat_kw("time") {
                return self.fail("DEVICE or TIME");
            }
        }
        Ok(Select {
            last,
            columns,
            from,
            filter,
            group_by,
            order_by,
            limit,
            offset: offset.unwrap_or(0),
            align_by_device,
        })
    }

    fn statement(&mut self) -> PResult<Statement> {
        let col = self.col();
        let Some(Tok::Word(first)) = self.peek().cloned() else {
            return self.fail("a statement (SELECT, INSERT, CREATE, SHOW, ...)");
        };
        self.at += 1;
        match first.to_ascii_lowercase().as_str() {
            "set" => {
                self.kw("storage")?;
                self.kw("group")?;
                self.kw("to")?;
                Ok(Statement::CreateDatabase(self.plain_full_path("database")?))
            }
            "create" => {
                if self.eat_kw("pipesink") {
                    let name = self.ident("a pipeSink name")?;
                    self.kw("as")?;
                    let sink_type = self.ident("a pipeSink type such as IoTDB")?;
                    let attributes = if self.eat_sym("(") {
                        let a = self.attribute_pairs()?;
                        self.sym(")")?;
                        a
                    } else {
                        Vec::new()
                    };
                    return Ok(Statement::CreatePipeSink {
                        name,
                        sink_type,
                        attributes,
                    });
                }
                if self.eat_kw("pipe") {
                    let id = self.ident("a pipe id")?;
                    if self.eat_kw("to") {
                        return self.sink_pipe(id);
                    }
                    let (mut extractor, mut processor, mut connector) = (None, None, None);
                    while self.eat_kw("with") {
                        let slot = if self.eat_kw("extractor") || self.eat_kw("source") {
                            &mut extractor
                        } else if self.eat_kw("processor") {
                            &mut processor
                        } else if self.eat_kw("connector") || self.eat_kw("sink") {
                            &mut connector
                        } else {
                            return self.fail("EXTRACTOR, PROCESSOR or CONNECTOR");
                        };
                        if slot.is_some() {
                            return Err(ParseError {
                                code: status::SQL_PARSE_ERROR,
                                col: self.col(),
                                message: "a WITH clause is given twice".into(),
                            });
                        }
                        *slot = Some(self.attributes()?);
                    }
                    let Some(connector) = connector else {
                        return self.fail("WITH CONNECTOR (...): the connector clause is required");
                    };
                    return Ok(Statement::CreatePipe {
                        id,
                        extractor: extractor.unwrap_or_default(),
                        processor: processor.unwrap_or_default(),
                        connector,
                    });
                }
                if self.eat_kw("user") {
                    let name = self.ident("a user name")?;
                    let Some(Tok::Quoted(password)) = self.peek().cloned() else {
                        return self.fail("a quoted password");
                    };
                    self.at += 1;
                    return Ok(Statement::CreateUser { name, password });
                }
                if self.eat_kw("database") {
                    return Ok(Statement::CreateDatabase(self.plain_full_path("database")?));
                }
                if self.eat_kw("aligned") {
                    self.kw("timeseries")?;
                    let device = self.plain_full_path("device")?;
                    self.sym("(")?;
                    let mut measurements = Vec::new();
                    loop {
                        let name = self.measurement()?;
                        let (mut t, mut e, mut c) = (None, None, None);
                        let tcol = self.col();
                        // `s1 FLOAT encoding=PLAIN compressor=SNAPPY`: attributes
                        // separated by spaces, not commas.
                        loop {
                            let before = self.at;
                            self.series_attr(&mut t, &mut e, &mut c)?;
                            if self.at == before {
                                break;
                            }
                        }
                        let data_type = t.ok_or_else(|| ParseError {
                            code: status::SQL_PARSE_ERROR,
                            col: tcol,
                            message: format!("measurement {name}: data type missing"),
                        })?;
                        measurements.push(SeriesSpec {
                            path: Path(vec![Node::Name(name)]),
                            data_type,
                            encoding: e,
                            compressor: c,
                        });
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.sym(")")?;
                    return Ok(Statement::CreateAlignedTimeseries {
                        device,
                        measurements,
                    });
                }
                if self.eat_kw("timeseries") {
                    let path = self.plain_full_path("timeseries")?;
                    let (mut t, mut e, mut c) = (None, None, None);
                    let tcol = self.col();
                    self.series_attrs(&mut t, &mut e, &mut c)?;
                    let data_type = t.ok_or_else(|| ParseError {
                        code: status::SQL_PARSE_ERROR,
                        col: tcol,
                        message: "DATATYPE is required, e.g. WITH DATATYPE=INT32, ENCODING=RLE"
                            .into(),
                    })?;
                    return Ok(Statement::CreateTimeseries(SeriesSpec {
                        path,
                        data_type,
                        encoding: e,
                        compressor: c,
                    }));
                }
                self.fail("DATABASE, TIMESERIES, ALIGNED TIMESERIES, PIPE, PIPESINK or USER")
            }
            "start" | "stop" => {
                if self.eat_kw("pipeserver") {
                    return Ok(if first.eq_ignore_ascii_case("start") {
                        Statement::StartPipeServer
                    } else {
                        Statement::StopPipeServer
                    });
                }
                self.kw("pipe")?;
                let id = self.ident("a pipe id")?;
                Ok(if first.eq_ignore_ascii_case("start") {
                    Statement::StartPipe(id)
                } else {
                    Statement::StopPipe(id)
                })
            }
            "grant" => self.privileges(true),
            "revoke" => self.privileges(false),
            "list" => {
                if self.eat_kw("privileges") {
                    self.kw("user")?;
                    let user = self.ident("a user name")?;
                    let paths = self.on_paths()?;
                    return Ok(Statement::ListPrivileges { user, paths });
                }
                self.kw("user")?;
                Ok(Statement::ListUser)
            }
            "delete" | "drop" => {
                if first.eq_ignore_ascii_case("drop") && self.eat_kw("pipesink") {
                    return Ok(Statement::DropPipeSink(self.ident("a pipeSink name")?));
                }
                if first.eq_ignore_ascii_case("drop") && self.eat_kw("pipe") {
                    return Ok(Statement::DropPipe(self.ident("a pipe id")?));
                }
                if first.eq_ignore_ascii_case("drop") && self.eat_kw("user") {
                    return Ok(Statement::DropUser(self.ident("a user name")?));
                }
                if self.eat_kw("storage") {
                    self.kw("group")?;
                    return Ok(Statement::DeleteDatabase(self.paths()?));
                }
                if self.eat_kw("database") || self.eat_kw("databases") {
                    return Ok(Statement::DeleteDatabase(self.paths()?));
                }
                if first.eq_ignore_ascii_case("delete") && self.eat_kw("from") {
                    let paths = self.paths()?;
                    let filter = self.where_time()?;
                    return Ok(Statement::Delete { paths, filter });
                }
                self.fail("FROM, DATABASE, STORAGE GROUP, PIPE, PIPESINK or USER")
            }
            "show" => {
                let opt_path = |p: &mut Parser| -> PResult<Option<Path>> {
                    if matches!(p.peek(), Some(Tok::Word(_)) | Some(Tok::Backquoted(_))) {
                        Ok(Some(p.full_path()?))
                    } else {
                        Ok(None)
                    }
                };
                if self.eat_kw("storage") {
                    self.kw("group")?;
                    return Ok(Statement::ShowDatabases(opt_path(self)?));
                }
                if self.eat_kw("pipeplugins") {
                    return Ok(Statement::ShowPipePlugins);
                }
                if self.eat_kw("pipesinktype") {
                    return Ok(Statement::ShowPipeSinkTypes);
                }
                if self.eat_kw("pipesinks") {
                    return Ok(Statement::ShowPipeSinks(None));
                }
                if self.eat_kw("pipesink") {
                    let name = self.opt_ident();
                    return Ok(Statement::ShowPipeSinks(name));
                }
                if self.eat_kw("pipeserver") {
                    self.eat_kw("status");
                    return Ok(Statement::ShowPipeServer);
                }
                if self.eat_kw("changelog") {
                    let consumers = self.eat_kw("consumers");
                    return Ok(Statement::ShowChangelog { consumers });
                }
                if self.eat_kw("pipes") {
                    let mut used_by = None;
                    if self.eat_kw("where") {
                        self.kw("connector")?;
                        self.kw("used")?;
                        self.kw("by")?;
                        used_by = Some(self.ident("a pipe id")?);
                    }
                    return Ok(Statement::ShowPipes { id: None, used_by });
                }
                if self.eat_kw("pipe") {
                    // SHOW PIPE without a name is SHOW PIPES (the sync tool).
                    return Ok(Statement::ShowPipes {
                        id: self.opt_ident(),
                        used_by: None,
                    });
                }
                if self.eat_kw("databases") {
                    return Ok(Statement::ShowDatabases(opt_path(self)?));
                }
                if self.eat_kw("timeseries") {
                    return Ok(Statement::ShowTimeseries(opt_path(self)?));
                }
                if self.eat_kw("devices") {
                    return Ok(Statement::ShowDevices(opt_path(self)?));
                }
                self.fail(
                    "DATABASES, STORAGE GROUP, TIMESERIES, DEVICES, PIPES, PIPE, PIPEPLUGINS, PIPESINKS, PIPESINK, PIPESINKTYPE, PIPESERVER or CHANGELOG",
                )
            }
            "count" => {
                self.kw("timeseries")?;
                let p = if matches!(self.peek(), Some(Tok::Word(_))) {
                    Some(self.full_path()?)
                } else {
                    None
                };
                Ok(Statement::CountTimeseries(p))
            }
            "insert" => {
                self.kw("into")?;
                let device = self.plain_full_path("device")?;
                self.sym("(")?;
                if !(self.eat_kw("time") || self.eat_kw("timestamp")) {
                    return self.fail("TIME or TIMESTAMP as the first column");
                }
                let mut measurements = Vec::new();
                while self.eat_sym(",") {
                    measurements.push(self.measurement()?);
                }
                self.sym(")")?;
                let aligned = self.eat_kw("aligned");
                self.kw("values")?;
                let mut rows = Vec::new();
                loop {
                    let rcol = self.col();
                    self.sym("(")?;
                    let t = self.time_lit()?;
                    let mut vals = Vec::new();
                    while self.eat_sym(",") {
                        vals.push(self.literal()?);
                    }
                    self.sym(")")?;
                    if vals.len() != measurements.len() {
                        return Err(ParseError {
                            code: status::SQL_PARSE_ERROR,
                            col: rcol,
                            message: format!(
                                "{} values for {} measurements",
                                vals.len(),
                                measurements.len()
                            ),
                        });
                    }
                    rows.push((t, vals));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Ok(Statement::Insert {
                    device,
                    measurements,
                    aligned,
                    rows,
                })
            }
            "select" => Ok(Statement::Select(Box::new(self.select()?))),
            "flush" => Ok(Statement::Flush),
            "load" => {
                self.kw("configuration")?;
                if self.eat_kw("on") && !(self.eat_kw("local") || self.eat_kw("cluster")) {
                    return self.fail("LOCAL or CLUSTER");
                }
                Ok(Statement::LoadConfiguration)
            }
            _ => Err(ParseError {
                code: status::SQL_PARSE_ERROR,
                col,
                message: format!(
                    "no viable alternative at input '{first}': unknown or unsupported statement"
                ),
            }),
        }
    }

    /// One attribute of an aligned measurement: a bare type name or
    /// `key=value`; consumes nothing at the end of the attributes.
    fn series_attr(
        &mut self,
        t: &mut Option<DataType>,
        e: &mut Option<String>,
        c: &mut Option<String>,
    ) -> PResult<()> {
        let col = self.col();
        let Some(Tok::Word(w)) = self.peek().cloned() else {
            return Ok(());
        };
        let followed_by_eq = matches!(self.toks.get(self.at + 1), Some((Tok::Sym("="), _)));
        if !followed_by_eq {
            if t.is_none() {
                if let Some(dt) = DataType::from_name(&w) {
                    self.at += 1;
                    *t = Some(dt);
                    return Ok(());
                }
                return Err(ParseError { code: status::SQL_PARSE_ERROR, col, message: format!("unsupported data type {w}; use BOOLEAN, INT32, INT64, FLOAT, DOUBLE or TEXT") });
            }
            return Ok(());
        }
        self.at += 2;
        let v = self.word("a value")?.to_ascii_uppercase();
        match w.to_ascii_lowercase().as_str() {
            "datatype" => {
                *t = Some(DataType::from_name(&v).ok_or_else(|| ParseError {
                    code: status::SQL_PARSE_ERROR,
                    col,
                    message: format!("unsupported data type {v}"),
                })?)
            }
            "encoding" => *e = Some(v),
            "compressor" | "compression" => *c = Some(v),
            other => {
                return Err(ParseError {
                    code: status::SQL_PARSE_ERROR,
                    col,
                    message: format!("unknown timeseries attribute {other}"),
                })
            }
        }
        Ok(())
    }
}

/// Parses one statement (a trailing `;` is allowed).
///
/// # Errors
/// A [`ParseError`] with the column and what was expected.
pub fn parse(sql: &str) -> Result<Statement, ParseError> {
    let toks = tokenize(sql)?;
    let end_col = sql.chars().count();
    let mut p = Parser {
        toks,
        at: 0,
        end_col,
        path_end: usize::MAX,
    };
    let st = p.statement()?;
    p.eat_sym(";");
    if p.at < p.toks.len() {
        return p.fail("<EOF>");
    }
    Ok(st)
}

/// Parses a path or pattern such as `root.sg.**` (as stored in delete
/// events).
///
/// # Errors
/// A [`ParseError`] when it is not a full path.
pub fn parse_path(s: &str) -> Result<Path, ParseError> {
    let toks = tokenize(s)?;
    let mut p = Parser {
        toks,
        at: 0,
        end_col: s.chars().count(),
        path_end: usize::MAX,
    };
    let path = p.full_path()?;
    if p.at < p.toks.len() {
        return p.fail("<EOF>");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Path {
        Path(
            s.split('.')
                .map(|n| match n {
                    "*" => Node::One,
                    "**" => Node::Many,
                    x => Node::Name(x.to_string()),
                })
                .collect(),
        )
    }

    #[test]
    fn the_seed_script_parses() {
        assert_eq!(
            parse("SET STORAGE GROUP TO root.vehicle;").unwrap(),
            Statement::CreateDatabase(path("root.vehicle"))
        );
        assert_eq!(
            parse("CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE;")
                .unwrap(),
            Statement::CreateTimeseries(SeriesSpec {
                path: path("root.vehicle.d0.s0"),
                data_type: DataType::Int32,
                encoding: Some("RLE".into()),
                compressor: None
            })
        );
        assert_eq!(
            parse("insert into root.vehicle.d0(timestamp,s0,s1) values(now(),12,'12');").unwrap(),
            Statement::Insert {
                device: path("root.vehicle.d0"),
                measurements: vec!["s0".into(), "s1".into()],
                aligned: false,
                rows: vec![(
                    TimeLit::Now,
                    vec![Literal::Int(12), Literal::Text("12".into())]
                )],
            }
        );
        assert!(
            matches!(parse("insert into root.vehicle.d1(timestamp,s2,s3) values(now(),18.0,true);").unwrap(),
            Statement::Insert { rows, .. } if rows[0].1 == vec![Literal::Float(18.0), Literal::Bool(true)])
        );
        assert_eq!(parse("flush;").unwrap(), Statement::Flush);
        assert!(
            matches!(parse("select ** from root.vehicle").unwrap(), Statement::Select(q) if q.columns == vec![ResultColumn::Path(path("**"))] && q.from == vec![path("root.vehicle")])
        );
    }

    #[test]
    fn every_statement_form() {
        assert_eq!(
            parse("create database root.db").unwrap(),
            Statement::CreateDatabase(path("root.db"))
        );
        assert_eq!(
            parse("DROP DATABASE root.a, root.b").unwrap(),
            Statement::DeleteDatabase(vec![path("root.a"), path("root.b")])
        );
        assert_eq!(
            parse("delete storage group root.a").unwrap(),
            Statement::DeleteDatabase(vec![path("root.a")])
        );
        assert_eq!(
            parse("show databases").unwrap(),
            Statement::ShowDatabases(None)
        );
        assert_eq!(
            parse("SHOW STORAGE GROUP root.**").unwrap(),
            Statement::ShowDatabases(Some(path("root.**")))
        );
        assert_eq!(
            parse("show timeseries root.vehicle.**").unwrap(),
            Statement::ShowTimeseries(Some(path("root.vehicle.**")))
        );
        assert_eq!(
            parse("COUNT TIMESERIES").unwrap(),
            Statement::CountTimeseries(None)
        );
        assert_eq!(parse("show devices").unwrap(), Statement::ShowDevices(None));
        assert_eq!(
            parse("CREATE TIMESERIES root.ln.d.status BOOLEAN encoding=PLAIN").unwrap(),
            Statement::CreateTimeseries(SeriesSpec {
                path: path("root.ln.d.status"),
                data_type: DataType::Boolean,
                encoding: Some("PLAIN".into()),
                compressor: None
            })
        );
        match parse("CREATE ALIGNED TIMESERIES root.ln.GPS(lat FLOAT encoding=PLAIN compressor=SNAPPY, lon DOUBLE)").unwrap() {
            Statement::CreateAlignedTimeseries { device, measurements } => {
                assert_eq!(device, path("root.ln.GPS"));
                assert_eq!(measurements.len(), 2);
                assert_eq!(measurements[0].data_type, DataType::Float);
                assert_eq!(measurements[0].compressor.as_deref(), Some("SNAPPY"));
                assert_eq!(measurements[1].data_type, DataType::Double);
            }
            other => panic!("{other:?}"),
        }
        match parse("INSERT INTO root.sg.d(time, a, b) ALIGNED VALUES (1, -2.5e3, null), (2022-03-30T00:00:00.5+08:00, 3, 'x''y')").unwrap() {
            Statement::Insert { aligned, rows, .. } => {
                assert!(aligned);
                assert_eq!(rows[0], (TimeLit::Int(1), vec![Literal::Float(-2500.0), Literal::Null]));
                assert_eq!(rows[1], (TimeLit::DateTime("2022-03-30T00:00:00.5+08:00".into()), vec![Literal::Int(3), Literal::Text("x'y".into())]));
            }
            other => panic!("{other:?}"),
        }
        match parse("delete from root.vehicle.d0.s0, root.vehicle.** where time >= 10 and time < 2022-03-30 00:00:00").unwrap() {
            Statement::Delete { paths, filter } => {
                assert_eq!(paths, vec![path("root.vehicle.d0.s0"), path("root.vehicle.**")]);
                assert_eq!(filter.lower, vec![(TimeLit::Int(10), true)]);
                assert_eq!(filter.upper, vec![(TimeLit::DateTime("2022-03-30 00:00:00".into()), false)]);
            }
            other => panic!("{other:?}"),
        }
        match parse("SELECT s0, * FROM root.vehicle.d0, root.aligned.1TS WHERE time > 5 ORDER BY TIME DESC LIMIT 10 OFFSET 2").unwrap() {
            Statement::Select(q) => {
                assert_eq!(q.columns, vec![ResultColumn::Path(path("s0")), ResultColumn::Path(path("*"))]);
                assert_eq!(q.from, vec![path("root.vehicle.d0"), path("root.aligned.1TS")]);
                assert_eq!(q.filter.lower, vec![(TimeLit::Int(5), false)]);
                assert!(q.time_desc());
                assert_eq!((q.limit, q.offset), (Some(10), 2));
                assert!(!q.last && !q.align_by_device && q.group_by.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse("select ** from root where time between 1 and 2").unwrap(), Statement::Select(q) if q.filter.lower.len() == 1 && q.filter.upper.len() == 1)
        );
    }

    fn select(sql: &str) -> Select {
        match parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
            Statement::Select(q) => *q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aggregations_group_by_last_and_align_by_device() {
        use Aggregation as A;
        let q = select("SELECT COUNT(*), sum(s0), Min_Value(d0.s0), count(**) FROM root.vehicle");
        assert_eq!(
            q.columns,
            [
                ResultColumn::Aggregate(A::Count, path("*")),
                ResultColumn::Aggregate(A::Sum, path("s0")),
                ResultColumn::Aggregate(A::MinValue, path("d0.s0")),
                ResultColumn::Aggregate(A::Count, path("**")),
            ]
        );
        for a in Aggregation::ALL {
            let q = select(&format!(
                "select {}(s) from root.sg.d",
                a.name().to_uppercase()
            ));
            assert_eq!(q.columns, [ResultColumn::Aggregate(a, path("s"))]);
        }
        // GROUP BY ([t1, t2), interval[, step]) and (t1, t2].
        let q = select("select count(s) from root.sg.d where time >= 10 group by ([0, 100), 10ms) order by time desc limit 3 offset 1");
        let g = q.group_by.clone().unwrap();
        assert_eq!(
            (g.start, g.end, g.left_closed),
            (TimeLit::Int(0), TimeLit::Int(100), true)
        );
        assert_eq!(g.interval, Duration(vec![(10, DurationUnit::Milli)]));
        assert_eq!(g.step, None);
        assert!(q.time_desc());
        assert_eq!((q.limit, q.offset), (Some(3), 1));
        let g = select("select avg(s) from root.sg.d group by time((2022-01-01T00:00:00, 2022-01-02T00:00:00], 1h30m, 1d)").group_by.unwrap();
        assert!(!g.left_closed);
        assert_eq!(g.start, TimeLit::DateTime("2022-01-01T00:00:00".into()));
        assert_eq!(
            g.interval,
            Duration(vec![(1, DurationUnit::Hour), (30, DurationUnit::Minute)])
        );
        assert_eq!(g.step, Some(Duration(vec![(1, DurationUnit::Day)])));
        let e = parse("select count(s) from root.sg.d group by (1ms)").unwrap_err();
        assert_eq!(e.code, status::SEMANTIC_ERROR);
        assert_eq!(
            e.message,
            "The query time range should be specified in the GROUP BY TIME clause."
        );
        assert!(parse("select count(s) from root.sg.d group by ([0, 10], 1ms)").is_err());
        assert!(
            parse("select count(s) from root.sg.d group by ([0, 10), 10)")
                .unwrap_err()
                .message
                .contains("a duration")
        );
        assert!(parse("select count(s) from root.sg.d group by level = 1")
            .unwrap_err()
            .message
            .contains("GROUP BY LEVEL is not supported"));
        // LIMIT and OFFSET as IoTDB checks them.
        let e = parse("select s from root.sg.d limit 0").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                status::SEMANTIC_ERROR,
                "LIMIT <N>: N should be greater than 0."
            )
        );
        let e = parse("select s from root.sg.d limit 9223372036854775808").unwrap_err();
        assert_eq!(e.message, "Out of range. LIMIT <N>: N should be Int64.");
        let e = parse("select s from root.sg.d offset 18446744073709551615").unwrap_err();
        assert_eq!(
            e.message,
            "Out of range. OFFSET <OFFSETValue>: OFFSETValue should be Int64."
        );
        assert!(parse("select s from root.sg.d limit 1.5").is_err());
        // Offset before limit, as IoTDB's grammar allows.
        let q = select("select s from root.sg.d offset 2 limit 5");
        assert_eq!((q.limit, q.offset), (Some(5), 2));
        // LAST; `last` as a measurement is still a path.
        let q = select(
            "select last s0, * from root.sg.d where time >= now() - 1d order by timeseries desc",
        );
        assert!(q.last);
        assert_eq!(q.order_by, [(SortKey::Timeseries, true)]);
        assert!(
            matches!(&q.filter.lower[0].0, TimeLit::Shifted(b, s) if **b == TimeLit::Now && s == &[(true, Duration(vec![(1, DurationUnit::Day)]))])
        );
        assert!(select("select last * from root.**").last);
        let q = select("select last from root.sg.d");
        assert!(!q.last && q.columns == [ResultColumn::Path(path("last"))]);
        assert!(!select("select last, s from root.sg.d").last);
        // ALIGN BY DEVICE / TIME.
        let q = select(
            "select count(s0), * from root.** order by device desc, time asc align by device",
        );
        assert!(q.align_by_device);
        assert_eq!(
            q.order_by,
            [(SortKey::Device, true), (SortKey::Time, false)]
        );
        assert!(!select("select * from root.sg.d align by time").align_by_device);
        assert!(parse("select * from root.sg.d align by value").is_err());
        assert!(parse("select * from root.sg.d order by time, time").is_err());
        assert!(parse("select * from root.sg.d order by s1").is_err());
        // The whole 64-bit range is writable (−2⁶³ was "not an integer").
        let q = select("select count(s) from root.sg.d where time >= -9223372036854775808 and time <= 9223372036854775807");
        assert_eq!(q.filter.lower[0].0, TimeLit::Int(i64::MIN));
        assert_eq!(q.filter.upper[0].0, TimeLit::Int(i64::MAX));
        assert!(parse("select s from root.sg.d where time > -9223372036854775809").is_err());
        // Date expressions in WHERE and in GROUP BY ranges.
        let q =
            select("select count(s) from root.sg.d where time > 2022-01-01T00:00:00 + 1h - 30m");
        assert!(matches!(&q.filter.lower[0].0, TimeLit::Shifted(_, s) if s.len() == 2));
    }

    #[test]
    fn pipe_and_user_statements() {
        let sql = "CREATE PIPE p1 WITH EXTRACTOR ('extractor'='iotdb-extractor', 'extractor.pattern'='root.timecho',) \
                   WITH PROCESSOR ('processor'='do-nothing-processor') \
                   WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='6667',)";
        match parse(sql).unwrap() {
            Statement::CreatePipe {
                id,
                extractor,
                processor,
                connector,
            } => {
                assert_eq!(id, "p1");
                assert_eq!(extractor["extractor.pattern"], "root.timecho");
                assert_eq!(processor.len(), 1);
                assert_eq!(connector["connector.port"], "6667");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse("create pipe a2b with connector ( 'connector'='do-nothing-connector' )").unwrap(), Statement::CreatePipe { extractor, .. } if extractor.is_empty())
        );
        assert_eq!(
            parse("start pipe a2b").unwrap(),
            Statement::StartPipe("a2b".into())
        );
        assert_eq!(
            parse("STOP PIPE a2b").unwrap(),
            Statement::StopPipe("a2b".into())
        );
        assert_eq!(
            parse("drop pipe a2b").unwrap(),
            Statement::DropPipe("a2b".into())
        );
        assert_eq!(
            parse("show pipes").unwrap(),
            Statement::ShowPipes {
                id: None,
                used_by: None
            }
        );
        // Seed 000: SHOW PIPE without a name is SHOW PIPES.
        for sql in ["show pipe", "SHOW PIPE;"] {
            assert_eq!(
                parse(sql).unwrap(),
                Statement::ShowPipes {
                    id: None,
                    used_by: None
                }
            );
        }
        assert_eq!(
            parse("show pipe p").unwrap(),
            Statement::ShowPipes {
                id: Some("p".into()),
                used_by: None
            }
        );
        assert_eq!(
            parse("SHOW PIPES WHERE CONNECTOR USED BY p").unwrap(),
            Statement::ShowPipes {
                id: None,
                used_by: Some("p".into())
            }
        );
        assert_eq!(
            parse("show pipeplugins").unwrap(),
            Statement::ShowPipePlugins
        );
        assert_eq!(
            parse("create user alice 'secret'").unwrap(),
            Statement::CreateUser {
                name: "alice".into(),
                password: "secret".into()
            }
        );
        assert_eq!(
            parse("GRANT USER alice PRIVILEGES CREATE_PIPE, start_pipe ON root.**").unwrap(),
            Statement::Privileges {
                grant: true,
                user: "alice".into(),
                privileges: vec!["CREATE_PIPE".into(), "START_PIPE".into()],
                paths: vec![path("root.**")],
            }
        );
        assert!(parse("create pipe p with extractor ('a'='b')")
            .unwrap_err()
            .message
            .contains("connector clause is required"));
        assert!(parse("create pipe p with connector (connector='x')")
            .unwrap_err()
            .message
            .contains("quoted attribute key"));
        assert!(parse("create pipe p with connector ('a'='b', 'a'='c')")
            .unwrap_err()
            .message
            .contains("given twice"));
    }

    #[test]
    fn pipe_server_and_load_configuration() {
        for (sql, want) in [
            ("START PIPESERVER", Statement::StartPipeServer),
            ("stop pipeserver;", Statement::StopPipeServer),
            ("SHOW PIPESERVER", Statement::ShowPipeServer),
            ("show pipeserver status", Statement::ShowPipeServer),
            ("load configuration", Statement::LoadConfiguration),
            (
                "SHOW CHANGELOG",
                Statement::ShowChangelog { consumers: false },
            ),
            (
                "show changelog consumers;",
                Statement::ShowChangelog { consumers: true },
            ),
            ("LOAD CONFIGURATION ON LOCAL", Statement::LoadConfiguration),
        ] {
            assert_eq!(parse(sql).unwrap(), want, "{sql}");
        }
        assert!(parse("load configuration on mars").is_err());
        assert!(parse("start pipeserver now").is_err());
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("selec ** from root").unwrap_err();
        assert_eq!(e.col, 0);
        assert!(
            e.message.contains("no viable alternative at input 'selec'"),
            "{e}"
        );
        let e = parse("select ** frm root").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1:10 mismatched input 'frm' expecting FROM"
        );
        let e = parse("insert into root.sg.d(time, a) values (1, 2, 3)").unwrap_err();
        assert!(e.message.contains("2 values for 1 measurements"), "{e}");
        let e = parse("create timeseries root.sg.d.s with datatype=DATE").unwrap_err();
        assert!(e.message.contains("unsupported data type DATE"), "{e}");
        let e = parse("create timeseries sg.d.s with datatype=INT32").unwrap_err();
        assert!(e.message.contains("must start with root"), "{e}");
        let e = parse("select ** from root where time > 1 or time < 0").unwrap_err();
        assert!(e.message.contains("OR in a time filter"), "{e}");
        let e = parse("select ** from root where s1 > 1").unwrap_err();
        assert!(e.message.contains("only filters on time"), "{e}");
        let e = parse("insert into root.sg.d(time, a) values (1, 'x)").unwrap_err();
        assert!(e.message.contains("unterminated string"), "{e}");
        let e = parse("select extreme(s0) from root.sg.d").unwrap_err();
        assert_eq!(e.code, status::SEMANTIC_ERROR);
        assert!(e.message.contains("function extreme is not supported; the aggregations are count, sum, avg, min_value, max_value, first_value, last_value, min_time, max_time"), "{e}");
        assert!(parse("flush extra")
            .unwrap_err()
            .message
            .contains("expecting <EOF>"));
        assert!(parse("").is_err());
        assert!(parse("select ** from root #")
            .unwrap_err()
            .message
            .contains("token recognition error"));
    }

    #[test]
    fn quoted_nodes_keep_their_backquotes() {
        match parse("insert into root.aligned.`1`(time, s) values (1, 1)").unwrap() {
            Statement::Insert { device, .. } => assert_eq!(device.to_string(), "root.aligned.`1`"),
            other => panic!("{other:?}"),
        }
        match parse("insert into root.aligned.1TS(time, s) values (1, 1)").unwrap() {
            Statement::Insert { device, .. } => assert_eq!(device.to_string(), "root.aligned.1TS"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patterns_match_as_iotdb_reads_them() {
        let p = path("root.vehicle.**");
        assert!(p.matches(&["root", "vehicle", "d0", "s0"]));
        assert!(!p.matches(&["root", "vehicle"]));
        let p = path("root.vehicle.d0.*");
        assert!(p.matches(&["root", "vehicle", "d0", "s0"]));
        assert!(!p.matches(&["root", "vehicle", "d0", "x", "s0"]));
        let p = path("root.**.s0");
        assert!(
            p.matches(&["root", "a", "b", "s0"])
                && p.matches(&["root", "a", "s0"])
                && !p.matches(&["root", "s0"])
        );
    }

    #[test]
    fn names_follow_iotdb_rules_in_sql() {
        let err = |sql: &str| parse(sql).unwrap_err();
        // Issue 7, finding 10, through SQL.
        let e = err("insert into root.a b(time, s) values (1, 1)");
        assert_eq!(e.code, status::SQL_PARSE_ERROR);
        assert!(e.message.contains("backquotes"), "{e}");
        let e = err("insert into root.sg.d(time, time) values (1, 1)");
        assert_eq!(e.code, status::ILLEGAL_PATH);
        assert!(
            e.message.contains("reserved") && e.message.contains("`time`"),
            "{e}"
        );
        let e = err("insert into root.sg.d(time, *) values (1, 1)");
        assert_eq!(e.code, status::ILLEGAL_PATH);
        assert!(e.message.contains("wildcard"), "{e}");
        let e = err("insert into root.sg.1(time, s) values (1, 1)");
        assert_eq!(e.code, status::ILLEGAL_PATH);
        assert!(e.message.contains("write `1`"), "{e}");
        let e = err("insert into root.sg.`a(time, s) values (1, 1)");
        assert!(e.message.contains("unterminated"), "{e}");
        let e = err("insert into root.sg.d(time, `a\u{0}b`) values (1, 1)");
        assert_eq!(e.code, status::ILLEGAL_PATH);
        assert!(e.message.contains("U+0000"), "{e}");
        let e = err("create timeseries root.sg.é.s with datatype=INT32");
        assert!(e.message.contains("`é`"), "{e}");
        let e = err("insert into root.sg.d(time, ``) values (1, 1)");
        assert!(e.message.contains("empty"), "{e}");
        // Backquotes make anything a name, kept in canonical form.
        match parse("insert into root.sg.`d`(time, `x y`, `time`, `a.b`, `a``b`, `s1`, `1`) values (1, 1, 2, 3, 4, 5, 6)").unwrap() {
            Statement::Insert { device, measurements, .. } => {
                assert_eq!(device.to_string(), "root.sg.d");
                assert_eq!(measurements, ["`x y`", "`time`", "`a.b`", "`a``b`", "s1", "`1`"]);
            }
            other => panic!("{other:?}"),
        }
        match parse("select `a.b` from root.sg.`x.y`").unwrap() {
            Statement::Select(q) => {
                assert_eq!(q.columns[0].path().0, [Node::Name("`a.b`".into())]);
                assert_eq!(q.from[0].to_string(), "root.sg.`x.y`");
                assert!(q.from[0]
                    .join(q.columns[0].path())
                    .matches_path("root.sg.`x.y`.`a.b`"));
            }
            other => panic!("{other:?}"),
        }
        // ROOT in any case is root; `root` elsewhere is reserved.
        assert_eq!(parse_path("ROOT.sg.d").unwrap().to_string(), "root.sg.d");
        assert_eq!(err("select ** from root.root").code, status::ILLEGAL_PATH);
        let deep = format!("select ** from root{}", ".a".repeat(MAX_PATH_NODES));
        let e = err(&deep);
        assert_eq!(e.code, status::ILLEGAL_PATH);
        assert!(e.message.contains("at most 64 nodes"), "{e}");
        parse(&format!(
            "select ** from root{}",
            ".a".repeat(MAX_PATH_NODES - 2)
        ))
        .unwrap();
    }

    #[test]
    fn privilege_statements_as_in_iotdb_12() {
        assert_eq!(
            parse("grant user alice privileges INSERT_TIMESERIES, read_timeseries on root.sg.**, root.x.d").unwrap(),
            Statement::Privileges {
                grant: true,
                user: "alice".into(),
                privileges: vec!["INSERT_TIMESERIES".into(), "READ_TIMESERIES".into()],
                paths: vec![path("root.sg.**"), path("root.x.d")],
            }
        );
        assert_eq!(
            parse("REVOKE USER alice PRIVILEGES ALL").unwrap(),
            Statement::Privileges {
                grant: false,
                user: "alice".into(),
                privileges: vec!["ALL".into()],
                paths: vec![],
            }
        );
        assert_eq!(
            parse("LIST PRIVILEGES USER root").unwrap(),
            Statement::ListPrivileges {
                user: "root".into(),
                paths: vec![]
            }
        );
        assert_eq!(
            parse("list privileges user alice on root.sg.**").unwrap(),
            Statement::ListPrivileges {
                user: "alice".into(),
                paths: vec![path("root.sg.**")]
            }
        );
        assert_eq!(parse("list user").unwrap(), Statement::ListUser);
    }

    /// Reference semantics, straight from the definition (exponential:
    /// for small cases only).
    fn naive(p: &[Node], n: &[&str]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((Node::Name(x), rest)) => n.first() == Some(&x.as_str()) && naive(rest, &n[1..]),
            Some((Node::One, rest)) => !n.is_empty() && naive(rest, &n[1..]),
            Some((Node::Many, rest)) => (1..=n.len()).any(|k| naive(rest, &n[k..])),
        }
    }

    #[test]
    fn the_matcher_agrees_with_the_definition() {
        let alphabet = ["a", "b"];
        let nodes = [
            Node::Name("a".into()),
            Node::Name("b".into()),
            Node::One,
            Node::Many,
        ];
        // Every pattern of up to 4 nodes against every path of up to 5.
        let mut patterns = vec![vec![]];
        for _ in 0..4 {
            let longer: Vec<Vec<Node>> = patterns
                .iter()
                .filter(|p: &&Vec<Node>| p.len() == patterns.last().unwrap().len())
                .flat_map(|p| {
                    nodes
                        .iter()
                        .map(move |n| [p.clone(), vec![n.clone()]].concat())
                })
                .collect();
            patterns.extend(longer);
        }
        let mut paths: Vec<Vec<&str>> = vec![vec![]];
        for len in 1..=5 {
            for i in 0..(1 << len) {
                paths.push((0..len).map(|b| alphabet[(i >> b) & 1]).collect());
            }
        }
        for p in &patterns {
            let pat = Path(p.clone());
            for n in &paths {
                assert_eq!(pat.matches(n), naive(p, n), "{pat} vs {n:?}");
            }
        }
        // The wide fallback (≥ 128 pattern nodes) agrees too.
        let mut wide = vec![Node::Many; 130];
        wide.push(Node::Name("x".into()));
        let deep: Vec<&str> = (0..140).map(|i| if i == 139 { "x" } else { "y" }).collect();
        assert!(Path(wide.clone()).matches(&deep));
        assert!(!Path(wide).matches(&deep[..130]));
    }

    /// Issue 13: `**` after `**` against deep series took exponential time
    /// (14.5 s at 11 levels). Now linear: 40 `**` against 80 levels, which
    /// the old recursion could not finish in any time, within 2 s.
    #[test]
    fn many_wildcards_match_in_linear_time() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut p = vec![Node::Name("root".into())];
            p.extend(std::iter::repeat_n(Node::Many, 40));
            p.push(Node::Name("nope".into()));
            let pat = Path(p);
            let mut n = vec!["root"];
            n.extend(std::iter::repeat_n("d", 80));
            let mut hits = 0;
            for _ in 0..100 {
                hits += usize::from(pat.matches(&n));
            }
            let _ = tx.send(hits);
        });
        let hits = rx
            .recv_timeout(std::time::Duration::from_secs(2))
            .expect("matching 40 `**` against 80 levels did not finish within 2 s");
        assert_eq!(hits, 0);
    }

    #[test]
    fn granted_paths_cover_statement_paths_literally() {
        assert!(path("root.sg.**").covers(&path("root.sg.d.s")));
        assert!(path("root.sg.**").covers(&path("root.sg.**")));
        assert!(!path("root.sg.**").covers(&path("root.**")));
        assert!(path("root.**").covers(&path("root.*.d")));
        assert!(!path("root.sg.d").covers(&path("root.sg.*")));
    }

    /// Every statement of the 1.0/1.1 sync tool's document (seed 000) that
    /// the sender runs parses, as written there.
    #[test]
    fn the_sync_tool_documents_statements_parse() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            parse("CREATE PIPESINK my_iotdb AS IoTDB (ip='输入你的IP')").unwrap(),
            Statement::CreatePipeSink {
                name: "my_iotdb".into(),
                sink_type: "IoTDB".into(),
                attributes: vec![kv("ip", "输入你的IP")],
            }
        );
        assert_eq!(
            parse("CREATE PIPESINK my_pipesink AS IoTDB (ip='127.0.0.1',port=6670);").unwrap(),
            Statement::CreatePipeSink {
                name: "my_pipesink".into(),
                sink_type: "IoTDB".into(),
                attributes: vec![kv("ip", "127.0.0.1"), kv("port", "6670")],
            }
        );
        assert_eq!(
            parse("CREATE PIPESINK my_iotdb AS IoTDB (ip='192.168.0.1',port=6670)").unwrap(),
            Statement::CreatePipeSink {
                name: "my_iotdb".into(),
                sink_type: "IoTDB".into(),
                attributes: vec![kv("ip", "192.168.0.1"), kv("port", "6670")],
            }
        );
        // Bare, double-quoted and == forms (0.14's attributePair).
        assert_eq!(
            parse("create pipesink s as iotdb (IP == \"10.0.0.1\", PORT = 7000)").unwrap(),
            Statement::CreatePipeSink {
                name: "s".into(),
                sink_type: "iotdb".into(),
                attributes: vec![kv("IP", "10.0.0.1"), kv("PORT", "7000")],
            }
        );
        assert_eq!(
            parse("create pipesink s as IoTDB").unwrap(),
            Statement::CreatePipeSink {
                name: "s".into(),
                sink_type: "IoTDB".into(),
                attributes: vec![],
            }
        );
        assert_eq!(
            parse("SHOW PIPESINKTYPE").unwrap(),
            Statement::ShowPipeSinkTypes
        );
        assert_eq!(
            parse("SHOW PIPESINKS").unwrap(),
            Statement::ShowPipeSinks(None)
        );
        assert_eq!(
            parse("SHOW PIPESINK").unwrap(),
            Statement::ShowPipeSinks(None)
        );
        assert_eq!(
            parse("SHOW PIPESINK my_pipesink").unwrap(),
            Statement::ShowPipeSinks(Some("my_pipesink".into()))
        );
        assert_eq!(
            parse("DROP PIPESINK my_iotdb").unwrap(),
            Statement::DropPipeSink("my_iotdb".into())
        );
        assert_eq!(
            parse("CREATE PIPE my_pipe TO my_iotdb").unwrap(),
            Statement::CreateSinkPipe {
                id: "my_pipe".into(),
                sink: "my_iotdb".into(),
                start: None,
                attributes: vec![],
            }
        );
        assert_eq!(
            parse("CREATE PIPE my_pipe TO my_iotdb FROM (select ** from root WHERE time>=2022-03-30 00:00:00) WITH SyncDelOp=true").unwrap(),
            Statement::CreateSinkPipe {
                id: "my_pipe".into(),
                sink: "my_iotdb".into(),
                start: Some((TimeLit::DateTime("2022-03-30 00:00:00".into()), true)),
                attributes: vec![kv("SyncDelOp", "true")],
            }
        );
        assert_eq!(
            parse("CREATE PIPE p TO my_iotdb FROM (select ** from root where time>=2022-03-30 00:00:00) WITH SyncDelOp=false").unwrap(),
            Statement::CreateSinkPipe {
                id: "p".into(),
                sink: "my_iotdb".into(),
                start: Some((TimeLit::DateTime("2022-03-30 00:00:00".into()), true)),
                attributes: vec![kv("SyncDelOp", "false")],
            }
        );
        assert_eq!(
            parse("create pipe p to s from (select ** from root where time > 1648569600000)")
                .unwrap(),
            Statement::CreateSinkPipe {
                id: "p".into(),
                sink: "s".into(),
                start: Some((TimeLit::Int(1648569600000), false)),
                attributes: vec![],
            }
        );
        for (sql, want) in [
            ("START PIPE my_pipe", Statement::StartPipe("my_pipe".into())),
            ("STOP PIPE my_pipe", Statement::StopPipe("my_pipe".into())),
            ("DROP PIPE my_pipe", Statement::DropPipe("my_pipe".into())),
            (
                "SHOW PIPES",
                Statement::ShowPipes {
                    id: None,
                    used_by: None,
                },
            ),
            (
                "SHOW PIPE",
                Statement::ShowPipes {
                    id: None,
                    used_by: None,
                },
            ),
            (
                "SHOW PIPE p",
                Statement::ShowPipes {
                    id: Some("p".into()),
                    used_by: None,
                },
            ),
        ] {
            assert_eq!(parse(sql).unwrap(), want, "{sql}");
        }
        // Section 7's writes.
        for sql in [
            "SET STORAGE GROUP TO root.vehicle;",
            "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE;",
            "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN;",
            "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE;",
            "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;",
            "insert into root.vehicle.d0(timestamp,s0) values(now(),10);",
            "insert into root.vehicle.d0(timestamp,s0,s1) values(now(),12,'12');",
            "insert into root.vehicle.d0(timestamp,s1) values(now(),'14');",
            "insert into root.vehicle.d1(timestamp,s2) values(now(),16.0);",
            "insert into root.vehicle.d1(timestamp,s2,s3) values(now(),18.0,true);",
            "insert into root.vehicle.d1(timestamp,s3) values(now(),false);",
            "flush;",
            "select ** from root.vehicle",
        ] {
            parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// What `CREATE PIPE … TO … FROM` does not support is named, with what
    /// is allowed.
    #[test]
    fn sync_tool_from_clauses_outside_the_supported_form_are_refused_clearly() {
        for (sql, what) in [
            (
                "create pipe p to s from (select s1 from root)",
                "only ** may be selected",
            ),
            (
                "create pipe p to s from (select **, s from root)",
                "only ** may be selected",
            ),
            (
                "create pipe p to s from (select ** from root.sg)",
                "only FROM root",
            ),
            (
                "create pipe p to s from (select ** from root where time < 5)",
                "only > or >=",
            ),
            (
                "create pipe p to s from (select ** from root where time = 5)",
                "only > or >=",
            ),
            (
                "create pipe p to s from (select ** from root where s1 > 5)",
                "on time only",
            ),
            (
                "create pipe p to s from (select ** from root where time > 5 and time < 9)",
                "only one condition",
            ),
            (
                "create pipe p to s from select ** from root",
                "in parentheses",
            ),
            (
                "create pipe p to s from (select ** from root where time > now())",
                "now()",
            ),
        ] {
            let e = parse(sql).unwrap_err();
            assert!(
                e.message.contains(what)
                    && e.message
                        .contains("supports only (select ** from root [where time >= T])"),
                "{sql}: {e}"
            );
        }
        let e = parse("create pipe p to s with SyncDelOp=true, SyncDelOp=false").unwrap_err();
        assert!(e.message.contains("given twice"), "{e}");
    }
}
