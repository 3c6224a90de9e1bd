//! IoTDB's SQL dialect, the subset edgepipe runs: a tokenizer and a
//! recursive-descent parser into [`Statement`]s. Keywords are
//! case-insensitive; errors say where (`line 1:COL`) and what was expected,
//! as IoTDB's parser does.

use std::collections::BTreeMap;
use std::fmt;

use protocol::types::DataType;

/// A path node in a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A literal node name.
    Name(String),
    /// `*`: exactly one level.
    One,
    /// `**`: one or more levels.
    Many,
}

/// A path or path pattern, as a list of nodes (the first is `root` for full
/// paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub Vec<Node>);

impl Path {
    /// Whether the path has no wildcard.
    pub fn is_plain(&self) -> bool {
        self.0.iter().all(|n| matches!(n, Node::Name(_)))
    }

    /// The nodes of `self` followed by those of `suffix`.
    pub fn join(&self, suffix: &Path) -> Path {
        Path(self.0.iter().chain(&suffix.0).cloned().collect())
    }

    /// Whether the plain path `nodes` matches this pattern.
    pub fn matches(&self, nodes: &[&str]) -> bool {
        fn m(p: &[Node], n: &[&str]) -> bool {
            match p.split_first() {
                None => n.is_empty(),
                Some((Node::Name(x), rest)) => {
                    n.first().is_some_and(|f| name_eq(f, x)) && m(rest, &n[1..])
                }
                Some((Node::One, rest)) => !n.is_empty() && m(rest, &n[1..]),
                Some((Node::Many, rest)) => (1..=n.len()).any(|k| m(rest, &n[k..])),
            }
        }
        m(&self.0, nodes)
    }
}

/// Whether a stored node (`` `1` `` keeps its backquotes) is the name `x`.
fn name_eq(stored: &str, x: &str) -> bool {
    stored == x
        || (stored.len() == x.len() + 2
            && stored.starts_with('`')
            && stored.ends_with('`')
            && &stored[1..stored.len() - 1] == x)
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.bytes().all(|b| b.is_ascii_digit())
        || !s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match n {
                // IoTDB keeps the backquotes of a node that is not a plain
                // identifier (all digits, or other characters) in the path.
                Node::Name(s) if needs_quotes(s) => write!(f, "`{s}`")?,
                Node::Name(s) => f.write_str(s)?,
                Node::One => f.write_str("*")?,
                Node::Many => f.write_str("**")?,
            }
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
    /// `SELECT ... FROM ... [WHERE time ...] [ORDER BY time DESC] [LIMIT n [OFFSET m]]`.
    Select {
        /// Suffix paths (`**`, `*`, `s0`, ...).
        select: Vec<Path>,
        /// Prefix paths.
        from: Vec<Path>,
        /// The time filter.
        filter: TimeFilter,
        /// `ORDER BY time DESC`.
        desc: bool,
        /// `LIMIT n`.
        limit: Option<u64>,
        /// `OFFSET m`.
        offset: u64,
    },
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
    /// `CREATE USER name 'password'`.
    CreateUser {
        /// User name.
        name: String,
        /// Password.
        password: String,
    },
    /// `DROP USER name`.
    DropUser(String),
    /// `GRANT USER name PRIVILEGES p[, p] [ON path]` (`grant`), or REVOKE.
    Privileges {
        /// True for GRANT, false for REVOKE.
        grant: bool,
        /// User name.
        user: String,
        /// Privilege names, upper-cased.
        privileges: Vec<String>,
    },
    /// `LIST USER`.
    ListUser,
}

/// A parse error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character column of the offending token.
    pub col: usize,
    /// What was wrong.
    pub message: String,
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
            Tok::Backquoted(s) => write!(f, "`{s}`"),
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
    let err = |col: usize, m: String| ParseError { col, message: m };
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
                    None => return Err(err(start, "unterminated `quoted` name".into())),
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
                    '=' => "=",
                    '>' => ">",
                    '<' => "<",
                    ';' => ";",
                    '-' => "-",
                    '+' => "+",
                    _ => return Err(err(start, format!("token recognition error at: '{c}'"))),
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
        Err(ParseError {
            col: self.col(),
            message: format!("mismatched input {found} expecting {expected}"),
        })
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

    fn node(&mut self) -> PResult<Node> {
        let n = match self.peek() {
            Some(Tok::Word(w)) => Node::Name(w.clone()),
            Some(Tok::Number(w)) => Node::Name(w.clone()),
            Some(Tok::Backquoted(w)) => Node::Name(w.clone()),
            Some(Tok::Sym("*")) => Node::One,
            Some(Tok::Sym("**")) => Node::Many,
            _ => return self.fail("a path node"),
        };
        self.at += 1;
        Ok(n)
    }

    /// A path: node ('.' node)*.
    fn path(&mut self) -> PResult<Path> {
        let mut nodes = vec![self.node()?];
        while self.eat_sym(".") {
            nodes.push(self.node()?);
        }
        Ok(Path(nodes))
    }

    /// A full path starting at `root`.
    fn full_path(&mut self) -> PResult<Path> {
        let col = self.col();
        let p = self.path()?;
        if p.0.first() != Some(&Node::Name("root".into()))
            && p.0.first() != Some(&Node::Name("ROOT".into()))
        {
            return Err(ParseError {
                col,
                message: format!("path {p} must start with root"),
            });
        }
        let mut p = p;
        p.0[0] = Node::Name("root".into());
        Ok(p)
    }

    fn plain_full_path(&mut self, what: &str) -> PResult<Path> {
        let col = self.col();
        let p = self.full_path()?;
        if !p.is_plain() {
            return Err(ParseError {
                col,
                message: format!("{what} {p} may not contain wildcards"),
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

    fn time_lit(&mut self) -> PResult<TimeLit> {
        let neg = self.eat_sym("-");
        match self.peek().cloned() {
            Some(Tok::Number(n)) => {
                let col = self.col();
                self.at += 1;
                let v: i64 = n.parse().map_err(|_| ParseError {
                    col,
                    message: format!("time {n} is not an integer"),
                })?;
                Ok(TimeLit::Int(if neg { -v } else { v }))
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
        if self.eat_kw("on") {
            // Pipe privileges are path-independent; the path is accepted.
            self.paths()?;
        }
        Ok(Statement::Privileges {
            grant,
            user,
            privileges,
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
                if self.eat_kw("pipe") {
                    let id = self.ident("a pipe id")?;
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
                        let name = self.word("a measurement name")?;
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
                self.fail("DATABASE, TIMESERIES, ALIGNED TIMESERIES, PIPE or USER")
            }
            "start" | "stop" => {
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
                self.kw("user")?;
                Ok(Statement::ListUser)
            }
            "delete" | "drop" => {
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
                self.fail("FROM, DATABASE, STORAGE GROUP, PIPE or USER")
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
                    return Ok(Statement::ShowPipes {
                        id: Some(self.ident("a pipe id")?),
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
                    "DATABASES, STORAGE GROUP, TIMESERIES, DEVICES, PIPES, PIPE or PIPEPLUGINS",
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
                    let m = self.word("a measurement name")?;
                    measurements.push(if needs_quotes(&m) {
                        format!("`{m}`")
                    } else {
                        m
                    });
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
            "select" => {
                let mut select = Vec::new();
                loop {
                    let scol = self.col();
                    if matches!(self.peek(), Some(Tok::Word(w)) if self.toks.get(self.at + 1).is_some_and(|t| t.0 == Tok::Sym("(")) && !w.is_empty())
                    {
                        return Err(ParseError {
                            col: scol,
                            message: "functions and aggregations in SELECT are not supported"
                                .into(),
                        });
                    }
                    select.push(self.path()?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.kw("from")?;
                let from = self.paths()?;
                let filter = self.where_time()?;
                let mut desc = false;
                if self.eat_kw("order") {
                    self.kw("by")?;
                    if !(self.eat_kw("time") || self.eat_kw("timestamp")) {
                        return self.fail("TIME (only ORDER BY TIME is supported)");
                    }
                    if self.eat_kw("desc") {
                        desc = true;
                    } else {
                        self.eat_kw("asc");
                    }
                }
                let mut limit = None;
                let mut offset = 0;
                let count = |p: &mut Parser| -> PResult<u64> {
                    let c = p.col();
                    match p.peek().cloned() {
                        Some(Tok::Number(n)) => {
                            p.at += 1;
                            n.parse().map_err(|_| ParseError {
                                col: c,
                                message: format!("{n} is not a row count"),
                            })
                        }
                        _ => p.fail("a row count"),
                    }
                };
                if self.eat_kw("limit") {
                    limit = Some(count(self)?);
                }
                if self.eat_kw("offset") {
                    offset = count(self)?;
                }
                Ok(Statement::Select {
                    select,
                    from,
                    filter,
                    desc,
                    limit,
                    offset,
                })
            }
            "flush" => Ok(Statement::Flush),
            _ => Err(ParseError {
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
                return Err(ParseError { col, message: format!("unsupported data type {w}; use BOOLEAN, INT32, INT64, FLOAT, DOUBLE or TEXT") });
            }
            return Ok(());
        }
        self.at += 2;
        let v = self.word("a value")?.to_ascii_uppercase();
        match w.to_ascii_lowercase().as_str() {
            "datatype" => {
                *t = Some(DataType::from_name(&v).ok_or_else(|| ParseError {
                    col,
                    message: format!("unsupported data type {v}"),
                })?)
            }
            "encoding" => *e = Some(v),
            "compressor" | "compression" => *c = Some(v),
            other => {
                return Err(ParseError {
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
            matches!(parse("select ** from root.vehicle").unwrap(), Statement::Select { select, from, .. } if select == vec![path("**")] && from == vec![path("root.vehicle")])
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
            Statement::Select { select, from, filter, desc, limit, offset } => {
                assert_eq!(select, vec![path("s0"), path("*")]);
                assert_eq!(from, vec![path("root.vehicle.d0"), path("root.aligned.1TS")]);
                assert_eq!(filter.lower, vec![(TimeLit::Int(5), false)]);
                assert!(desc);
                assert_eq!((limit, offset), (Some(10), 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse("select ** from root where time between 1 and 2").unwrap(), Statement::Select { filter, .. } if filter.lower.len() == 1 && filter.upper.len() == 1)
        );
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
                privileges: vec!["CREATE_PIPE".into(), "START_PIPE".into()]
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
        assert!(parse("select count(s0) from root.sg.d")
            .unwrap_err()
            .message
            .contains("not supported"));
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
}
