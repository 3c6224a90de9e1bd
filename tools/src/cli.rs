//! `edgepipe cli`: an interactive SQL shell, or statements given with `-e`,
//! printing what IoTDB 1.2's CLI prints (`AbstractCli`, `Cli`, `IoTPrinter`
//! in IoTDB's `iotdb-client/cli`).
//!
//! What it shares with IoTDB's CLI, so that people and scripts used to it
//! feel at home: the `IoTDB> ` prompt; results as a bordered table (cells
//! right-aligned, no padding), then `Total line number = N` (or `Empty set.`
//! for a result without rows, header still printed) and `It costs X.XXXs`;
//! at most 1,000 rows a table, asking before the next 1,000 when
//! interactive; `Msg: The statement is executed successfully.` for a
//! statement without a result; `Msg: <code>: <message>` for an error; times
//! in ISO 8601 in the local time zone (`Z` for UTC) with the server's
//! precision, or as numbers (`-disableISO8601`, `set time_display_type=long`);
//! FLOAT and DOUBLE values as Java prints them (`1.0E7`); `quit` / `exit`;
//! Ctrl-C twice or Ctrl-D to leave; history in the home directory, one file
//! per server and user (`~/.edgepipe_history-HOST-PORT-USER`, as IoTDB keeps
//! `~/.iotdb_history-…`).
//!
//! Where it differs, on purpose: a statement ends at `;` (outside quotes and
//! backquotes) and may span lines, so a pasted multi-line `CREATE PIPE`
//! runs as one statement and comes back whole with the up arrow (IoTDB 1.2
//! runs each line as it comes and splits at every `;`, even in a quoted
//! string).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{Local, Offset, TimeZone};
use clap::Args;
use node::client::{ClientError, Rows, Session};
use node::exec::Precision;
use protocol::types::Value;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};

use crate::table::{Style, Table};

/// Options of `edgepipe cli` (IoTDB's CLI flags: `-h -p -u -pw -e`,
/// `-usessl -ts -tpw`, and `-disableISO8601`).
#[derive(Debug, Args)]
pub struct CliOpt {
    /// Host of the node.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Client RPC port.
    #[arg(short = 'p', long = "port", default_value_t = 6667)]
    pub port: u16,
    /// User name.
    #[arg(short = 'u', long = "user", default_value = "root")]
    pub user: String,
    /// Password (`-pw` as in IoTDB's CLI).
    #[arg(long = "pw", visible_alias = "password", default_value = "root")]
    pub password: String,
    /// Run these statements (separated by `;`) and exit: 0 if all
    /// succeeded, 1 if one failed.
    #[arg(short = 'e', long = "execute")]
    pub execute: Option<String>,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsOpt,
    /// Print times as numbers, not ISO 8601 (`-disableISO8601` as in IoTDB).
    #[arg(long = "disable-iso8601")]
    pub disable_iso8601: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// TLS flags of `edgepipe cli` and `edgepipe top`, as IoTDB's CLI spells
/// them: `-usessl true -ts ca.pem [-tpw PASSWORD]`.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsOpt {
    /// Connect with TLS (`-usessl true`), verifying the node's certificate
    /// for the host given with -h against the trust store of -ts. A
    /// certificate that does not verify is an error; there is no fallback
    /// to plain TCP.
    #[arg(
        long = "usessl",
        visible_alias = "use_ssl",
        value_name = "true|false",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub use_ssl: bool,
    /// The trust store (`-ts`): the CA certificate(s) that signed the
    /// node's certificate, in PEM, or a PKCS#12 trust store (with -tpw).
    #[arg(long = "ts", visible_alias = "trust_store", value_name = "FILE")]
    pub trust_store: Option<PathBuf>,
    /// The password of a PKCS#12 trust store (`-tpw`).
    #[arg(
        long = "tpw",
        visible_alias = "trust_store_password",
        value_name = "PASSWORD",
        default_value = ""
    )]
    pub trust_store_pwd: String,
}

impl TlsOpt {
    /// The TLS to connect with: `None` without `-usessl true`.
    ///
    /// # Errors
    /// `-usessl true` without `-ts`, `-ts` without `-usessl true`, or a
    /// trust store that cannot be read.
    pub fn client_tls(&self) -> anyhow::Result<Option<node::client::ClientTls>> {
        match (&self.trust_store, self.use_ssl) {
            (None, false) => Ok(None),
            (Some(ts), false) => anyhow::bail!(
                "-ts {} is given but not -usessl true: add -usessl true to connect with TLS",
                ts.display()
            ),
            (None, true) => anyhow::bail!(
                "-usessl true needs the trust store: -ts FILE (the CA certificate that signed the node's, in PEM; or a PKCS#12 trust store with -tpw)"
            ),
            (Some(ts), true) => node::client::ClientTls::from_trust_store(ts, &self.trust_store_pwd)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("-ts: {e}")),
        }
    }
}

/// Rewrites IoTDB's single-dash long flags (`-pw`, `-usessl`, `-ts`,
/// `-tpw`, `-disableISO8601`), which clap cannot express, into their `--`
/// forms.
pub fn fix_args(args: Vec<String>) -> Vec<String> {
    args.into_iter()
        .map(|a| match a.as_str() {
            "-pw" => "--pw".to_string(),
            "-usessl" => "--usessl".to_string(),
            "-ts" => "--ts".to_string(),
            "-tpw" => "--tpw".to_string(),
            "-disableISO8601" => "--disable-iso8601".to_string(),
            _ => a,
        })
        .collect()
}

/// Rows a table holds before the CLI asks whether to go on (IoTDB's
/// `maxPrintRowCount`).
const MAX_PRINT_ROWS: usize = 1000;

/// Entries the history file keeps (IoTDB's CLI keeps 1,000 too).
const HISTORY_SIZE: usize = 1000;

/// IoTDB's message for a statement without a result.
const SUCCESS_MESSAGE: &str = "The statement is executed successfully.";

/// The prompt, as IoTDB's CLI shows it.
const PROMPT: &str = "IoTDB> ";

/// Input cut into statements at each `;` outside quotes (`'…'`, `"…"`) and
/// backquotes (`` `…` ``); a doubled quote inside a quoted string is the
/// quote itself, as IoTDB's lexer reads it, and needs no special case here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Statements that ended with `;`, trimmed, empty ones dropped.
    pub complete: Vec<String>,
    /// What follows the last `;`, untrimmed (a statement still being typed).
    pub rest: String,
    /// The quote still open at the end, if any.
    pub open_quote: Option<char>,
}

impl Split {
    /// Splits `text`.
    pub fn new(text: &str) -> Split {
        let mut s = Split::default();
        let mut cur = String::new();
        for c in text.chars() {
            match (s.open_quote, c) {
                (None, '\'' | '"' | '`') => s.open_quote = Some(c),
                (Some(q), c) if c == q => s.open_quote = None,
                (None, ';') => {
                    let t = cur.trim();
                    if !t.is_empty() {
                        s.complete.push(t.to_string());
                    }
                    cur.clear();
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        s.rest = cur;
        s
    }

    /// True when nothing but whitespace follows the last `;` and no quote
    /// is open: the input can run.
    pub fn is_finished(&self) -> bool {
        self.open_quote.is_none() && self.rest.trim().is_empty()
    }
}

/// Splits a script into statements at `;` outside quotes; the text after
/// the last `;` counts as a statement too (`-e "show pipes"`).
pub fn split_statements(text: &str) -> Vec<String> {
    let s = Split::new(text);
    let mut out = s.complete;
    if !s.rest.trim().is_empty() {
        out.push(s.rest.trim().to_string());
    }
    out
}

/// The CLI's own commands, which run without a `;` (as in IoTDB's CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Special {
    /// `quit` or `exit`.
    Quit,
    /// `help`.
    Help,
    /// `set time_display_type=…` with what follows `=`.
    SetTimeDisplay(String),
    /// `show time_display_type`.
    ShowTimeDisplay,
    /// `show time_zone`.
    ShowTimeZone,
}

impl Special {
    fn parse(line: &str) -> Option<Special> {
        let t = line.trim().trim_end_matches(';').trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "quit" | "exit" => return Some(Special::Quit),
            "help" => return Some(Special::Help),
            "show time_display_type" => return Some(Special::ShowTimeDisplay),
            "show time_zone" => return Some(Special::ShowTimeZone),
            _ => {}
        }
        if lower.starts_with("set time_display_type") {
            let v = t.split_once('=').map(|(_, v)| v.trim().to_string());
            return Some(Special::SetTimeDisplay(v.unwrap_or_default()));
        }
        None
    }
}

/// Decides, when Enter is pressed, whether the input runs or a new line
/// starts: it runs once it ends with `;` outside quotes, or is one of the
/// CLI's own commands. This is what makes pasted multi-line statements and
/// whole-statement history work.
struct StatementValidator {
    /// Off while the CLI asks something else (the pager's question).
    statements: bool,
}

impl Validator for StatementValidator {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if !self.statements || input.trim().is_empty() || Special::parse(input).is_some() {
            return Ok(ValidationResult::Valid(None));
        }
        Ok(if Split::new(input).is_finished() {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

impl rustyline::completion::Completer for StatementValidator {
    type Candidate = String;
}
impl rustyline::hint::Hinter for StatementValidator {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for StatementValidator {}
impl rustyline::Helper for StatementValidator {}

/// How times are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeDisplay {
    /// ISO 8601 with the server's precision (IoTDB's `default`).
    Iso8601,
    /// The number itself (`long`).
    Long,
}

/// Formats a time as IoTDB's CLI does by default: ISO 8601 in the local
/// time zone, with as many fraction digits as the precision has, and `Z`
/// for a zero offset (Java's `ISO_OFFSET_DATE_TIME`).
fn format_time(t: i64, precision: Precision, display: TimeDisplay) -> String {
    if display == TimeDisplay::Long {
        return t.to_string();
    }
    let (per_sec, digits) = match precision {
        Precision::Ms => (1_000, 3),
        Precision::Us => (1_000_000, 6),
        Precision::Ns => (1_000_000_000, 9),
    };
    let (secs, frac) = (t.div_euclid(per_sec), t.rem_euclid(per_sec));
    let Some(dt) = Local.timestamp_opt(secs, 0).single() else {
        return t.to_string();
    };
    let zone = if dt.offset().fix().local_minus_utc() == 0 {
        "Z".to_string()
    } else {
        dt.format("%:z").to_string()
    };
    format!("{}.{frac:0digits$}{zone}", dt.format("%Y-%m-%dT%H:%M:%S"))
}

/// A DOUBLE as Java's `Double.toString` prints it: plain between 10^-3 and
/// 10^7 (always with a fraction), else `d.dddE±n`; `NaN`, `Infinity`.
pub fn java_double(v: f64) -> String {
    java_number(
        v.is_nan(),
        v.is_infinite(),
        v.is_sign_negative(),
        v == 0.0,
        (1e-3..1e7).contains(&v.abs()),
        || format!("{v}"),
        || format!("{v:e}"),
    )
}

/// A FLOAT as Java's `Float.toString` prints it (see [`java_double`]).
pub fn java_float(v: f32) -> String {
    java_number(
        v.is_nan(),
        v.is_infinite(),
        v.is_sign_negative(),
        v == 0.0,
        (1e-3..1e7).contains(&v.abs()),
        || format!("{v}"),
        || format!("{v:e}"),
    )
}

fn java_number(
    nan: bool,
    infinite: bool,
    negative: bool,
    zero: bool,
    plain: bool,
    display: impl Fn() -> String,
    exp: impl Fn() -> String,
) -> String {
    if nan {
        return "NaN".into();
    }
    let sign = if negative { "-" } else { "" };
    if infinite {
        return format!("{sign}Infinity");
    }
    if zero {
        return format!("{sign}0.0");
    }
    if plain {
        let s = display();
        return if s.contains('.') { s } else { s + ".0" };
    }
    // Rust's `{:e}` has the same shortest digits: `1.5e-5`, `1e10`.
    let s = exp();
    let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
    if mantissa.contains('.') {
        format!("{mantissa}E{e}")
    } else {
        format!("{mantissa}.0E{e}")
    }
}

/// A cell as IoTDB's CLI prints it (`null` for no value).
fn render_value(v: &Option<Value>) -> String {
    match v {
        None => "null".into(),
        Some(Value::Float(f)) => java_float(*f),
        Some(Value::Double(d)) => java_double(*d),
        Some(v) => v.to_string(),
    }
}

/// Prints `rows[range]` as one IoTDB table.
fn write_table(
    rows: &Rows,
    range: std::ops::Range<usize>,
    precision: Precision,
    display: TimeDisplay,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut header: Vec<String> = Vec::with_capacity(rows.columns.len() + 1);
    if !rows.ignore_timestamp {
        header.push("Time".into());
    }
    header.extend(rows.columns.iter().cloned());
    let mut t = Table::with_style(header, Style::Cli);
    for (time, vals) in &rows.rows[range] {
        let mut r = Vec::with_capacity(vals.len() + 1);
        if !rows.ignore_timestamp {
            r.push(format_time(*time, precision, display));
        }
        r.extend(vals.iter().map(render_value));
        t.row(r);
    }
    t.write(out)
}

/// The line after a finished result: `Total line number = N`, or
/// `Empty set.` when there are no rows (IoTDB's `printCount`).
fn count_line(n: usize) -> String {
    if n == 0 {
        "Empty set.".into()
    } else {
        format!("Total line number = {n}")
    }
}

/// Renders rows as IoTDB's CLI does, in one table: `Time` first unless the
/// result has none, then the count line. `p` is the server's precision
/// (`ms`, `us`, `ns`).
///
/// # Errors
/// Write failures.
pub fn render(rows: &Rows, p: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let precision = Precision::parse(p).unwrap_or_default();
    write_table(
        rows,
        0..rows.rows.len(),
        precision,
        TimeDisplay::Iso8601,
        out,
    )?;
    writeln!(out, "{}", count_line(rows.rows.len()))
}

/// A session that reopens itself after the connection dropped.
struct Conn {
    addr: String,
    user: String,
    password: String,
    tls: Option<node::client::ClientTls>,
    session: Option<Session>,
}

impl Conn {
    fn open(
        addr: String,
        user: String,
        password: String,
        tls: Option<node::client::ClientTls>,
    ) -> anyhow::Result<Conn> {
        let session = Session::open_with(&addr, &user, &password, tls.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Conn {
            addr,
            user,
            password,
            tls,
            session: Some(session),
        })
    }

    /// Runs a statement, reconnecting first if the last one lost the
    /// connection. A lost connection drops the session, so the next
    /// statement tries again.
    fn execute(&mut self, sql: &str) -> Result<(Option<Rows>, Precision), ClientError> {
        let s = match &mut self.session {
            Some(s) => s,
            None => self.session.insert(Session::open_with(
                &self.addr,
                &self.user,
                &self.password,
                self.tls.as_ref(),
            )?),
        };
        let precision = Precision::parse(&s.precision).unwrap_or_default();
        match s.execute(sql) {
            Ok(r) => Ok((r, precision)),
            Err(e) => {
                if matches!(e, ClientError::Transport(_)) {
                    self.session = None;
                }
                Err(e)
            }
        }
    }

    fn close(self) {
        if let Some(s) = self.session {
            let _ = s.close();
        }
    }
}

/// What runs statements and prints their results; shared by `-e` and the
/// interactive shell.
struct Shell {
    conn: Conn,
    display: TimeDisplay,
}

impl Shell {
    /// Runs one statement and prints what IoTDB's CLI prints. `more` is
    /// asked before each further 1,000 rows (`-e` always goes on). Returns
    /// false if the statement failed.
    fn run(
        &mut self,
        sql: &str,
        out: &mut dyn Write,
        more: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<bool>,
    ) -> std::io::Result<bool> {
        if let Some(sp) = Special::parse(sql) {
            return self.special(sp, out);
        }
        let start = Instant::now();
        match self.conn.execute(sql) {
            Ok((Some(rows), precision)) => {
                let n = rows.rows.len();
                let mut from = 0;
                loop {
                    let to = n.min(from + MAX_PRINT_ROWS);
                    write_table(&rows, from..to, precision, self.display, out)?;
                    if to == n {
                        writeln!(out, "{}", count_line(n))?;
                    }
                    if from == 0 {
                        let secs = start.elapsed().as_secs_f64();
                        writeln!(out, "It costs {secs:.3}s")?;
                    }
                    if to == n || !more(out)? {
                        break;
                    }
                    from = to;
                }
                Ok(true)
            }
            Ok((None, _)) => {
                writeln!(out, "Msg: {SUCCESS_MESSAGE}")?;
                Ok(true)
            }
            Err(e) => {
                // IoTDB's JDBC message for a status is "code: message".
                writeln!(out, "Msg: {e}")?;
                Ok(false)
            }
        }
    }

    fn special(&mut self, sp: Special, out: &mut dyn Write) -> std::io::Result<bool> {
        match sp {
            Special::Quit => Ok(true),
            Special::Help => {
                writeln!(out, "    <your-sql>;\t\t\t execute your sql statement (end it with ';'; it may span lines)")?;
                writeln!(
                    out,
                    "    show timeseries;\t\t show the timeseries of the node"
                )?;
                writeln!(
                    out,
                    "    set time_display_type=xxx\t long, or default (ISO8601)"
                )?;
                writeln!(out, "    show time_display_type\t show time display type")?;
                writeln!(out, "    show time_zone\t\t show cli time zone")?;
                writeln!(out, "    quit, exit\t\t\t leave the cli")?;
                Ok(true)
            }
            Special::SetTimeDisplay(v) => {
                let d = match v.to_ascii_lowercase().as_str() {
                    "long" | "number" => TimeDisplay::Long,
                    "default" | "iso8601" => TimeDisplay::Iso8601,
                    "" => {
                        writeln!(out, "Time display format error, please input like set time_display_type=ISO8601")?;
                        return Ok(false);
                    }
                    _ => {
                        writeln!(out, "time display format error, {v} is not one of long, number, default, ISO8601")?;
                        return Ok(false);
                    }
                };
                self.display = d;
                writeln!(out, "Time display type has set to {v}")?;
                Ok(true)
            }
            Special::ShowTimeDisplay => {
                let d = match self.display {
                    TimeDisplay::Iso8601 => "default",
                    TimeDisplay::Long => "long",
                };
                writeln!(out, "Current time format: {d}")?;
                Ok(true)
            }
            Special::ShowTimeZone => {
                let off = Local::now().offset().fix();
                writeln!(out, "Current time zone: {off}")?;
                Ok(true)
            }
        }
    }
}

/// `~/.edgepipe_history-HOST-PORT-USER`: one history a server and user, as
/// IoTDB's CLI keeps them.
fn history_path(host: &str, port: u16, user: &str) -> Option<PathBuf> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    std::env::var_os("HOME").map(|h| {
        PathBuf::from(h).join(format!(
            ".edgepipe_history-{}-{port}-{}",
            clean(host),
            clean(user)
        ))
    })
}

/// Keeps the history file private: statements such as `CREATE USER` carry
/// passwords.
fn restrict(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// Runs the CLI.
///
/// # Errors
/// The first connection failing (address, login), or the terminal failing.
pub fn run(opt: CliOpt, out: &mut dyn Write) -> anyhow::Result<crate::Outcome> {
    let addr = format!("{}:{}", opt.host, opt.port);
    let tls = opt.tls.client_tls()?;
    let conn = Conn::open(addr.clone(), opt.user.clone(), opt.password.clone(), tls)?;
    let mut shell = Shell {
        conn,
        display: if opt.disable_iso8601 {
            TimeDisplay::Long
        } else {
            TimeDisplay::Iso8601
        },
    };
    if let Some(script) = &opt.execute {
        let mut ok = true;
        for st in split_statements(script) {
            if Special::parse(&st) == Some(Special::Quit) {
                break;
            }
            ok &= shell.run(&st, out, &mut |_| Ok(true))?;
        }
        shell.conn.close();
        return Ok(if ok {
            crate::Outcome::Ok
        } else {
            crate::Outcome::ProblemFound
        });
    }
    interactive(&opt, shell, out)?;
    Ok(crate::Outcome::Ok)
}

fn interactive(opt: &CliOpt, mut shell: Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_SIZE)?
        .history_ignore_dups(true)?
        .auto_add_history(false)
        .build();
    let mut rl = rustyline::Editor::<StatementValidator, FileHistory>::with_config(config)?;
    // Without a terminal (a script piped in) there is nobody to page for,
    // and the script's lines do not belong in the history. Lines are then
    // gathered into statements below rather than by the validator, which
    // would drop an unfinished last statement at the end of the input.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    rl.set_helper(Some(StatementValidator {
        statements: terminal,
    }));
    let history = history_path(&opt.host, opt.port, &opt.user).filter(|_| terminal);
    if let Some(h) = &history {
        // A missing file is the first run; a damaged one starts afresh.
        let _ = rl.load_history(h);
    }
    writeln!(out, "---------------------")?;
    writeln!(out, "Starting edgepipe Cli")?;
    writeln!(out, "---------------------")?;
    writeln!(
        out,
        "edgepipe version {} (IoTDB 1.2 client RPC)",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        out,
        "A statement ends with ';' and may span lines; type help for the cli's own commands, quit or exit to leave.\n"
    )?;
    writeln!(out, "Successfully login at {}:{}", opt.host, opt.port)?;
    out.flush()?;
    // Statements typed without a terminal (a pipe, a file) arrive a line at
    // a time; what follows the last `;` waits here for the rest.
    let mut pending = String::new();
    loop {
        let line = match rl.readline(PROMPT) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                if !pending.is_empty() {
                    pending.clear();
                    continue;
                }
                // As IoTDB's CLI: a second Ctrl-C leaves.
                set_statements(&mut rl, false);
                let again = rl.readline("Press CTRL+C again to exit, or press ENTER to continue");
                set_statements(&mut rl, terminal);
                match again {
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if pending.is_empty() {
            if let Some(sp) = Special::parse(&line) {
                remember(&mut rl, history.as_deref(), line.trim());
                if sp == Special::Quit {
                    break;
                }
                shell.run(&line, out, &mut |_| Ok(true))?;
                out.flush()?;
                continue;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        remember(&mut rl, history.as_deref(), line.trim());
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        let split = Split::new(&pending);
        for st in &split.complete {
            if terminal {
                shell.run(st, out, &mut |out| ask_more(&mut rl, out))?;
            } else {
                shell.run(st, out, &mut |_| Ok(true))?;
            }
            out.flush()?;
        }
        pending = if split.rest.trim().is_empty() {
            String::new()
        } else {
            split.rest
        };
    }
    // Input ended inside a statement: run it, as `-e` would.
    if !pending.trim().is_empty() {
        shell.run(pending.trim(), out, &mut |_| Ok(true))?;
    }
    out.flush()?;
    shell.conn.close();
    Ok(())
}

/// Adds an entry to the history and appends it to the file at once (when
/// there is one), so a CLI that is killed keeps what was typed.
fn remember(
    rl: &mut rustyline::Editor<StatementValidator, FileHistory>,
    path: Option<&std::path::Path>,
    entry: &str,
) {
    if matches!(rl.add_history_entry(entry), Ok(true)) {
        if let Some(p) = path {
            if rl.append_history(p).is_ok() {
                restrict(p);
            }
        }
    }
}

fn set_statements(rl: &mut rustyline::Editor<StatementValidator, FileHistory>, on: bool) {
    if let Some(h) = rl.helper_mut() {
        h.statements = on;
    }
}

/// IoTDB's pager question after 1,000 rows: Enter shows more, anything else
/// stops.
fn ask_more(
    rl: &mut rustyline::Editor<StatementValidator, FileHistory>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    writeln!(
        out,
        "This display {MAX_PRINT_ROWS} rows. Press ENTER to show more, input 'q' to quit."
    )?;
    out.flush()?;
    // The answer is not a statement: no validation, no history.
    set_statements(rl, false);
    let answer = rl.readline("");
    set_statements(rl, true);
    Ok(matches!(answer, Ok(a) if a.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_backquotes() {
        assert_eq!(
            split_statements("a; b 'x;y';; c"),
            vec!["a", "b 'x;y'", "c"]
        );
        assert_eq!(
            split_statements("insert into root.sg.`d;1`(time, s) values(1, \"a;b\"); x"),
            vec!["insert into root.sg.`d;1`(time, s) values(1, \"a;b\")", "x"]
        );
        // A doubled quote stays inside the string.
        assert_eq!(
            split_statements("values('it''s;ok'); y"),
            vec!["values('it''s;ok')", "y"]
        );
        assert_eq!(
            fix_args(vec!["-pw".into(), "root".into(), "-disableISO8601".into()]),
            vec!["--pw", "root", "--disable-iso8601"]
        );
    }

    #[test]
    fn iotdb_tls_flags() {
        use clap::Parser;
        #[derive(Parser)]
        #[command(disable_help_flag = true)]
        struct T {
            #[command(flatten)]
            cli: CliOpt,
        }
        let parse = |args: &[&str]| {
            let mut v = vec!["cli".to_string()];
            v.extend(args.iter().map(|a| a.to_string()));
            T::try_parse_from(fix_args(v)).map(|t| t.cli)
        };
        let o = parse(&[
            "-h", "node", "-usessl", "true", "-ts", "ca.pem", "-tpw", "pw",
        ])
        .unwrap();
        assert!(o.tls.use_ssl);
        assert_eq!(
            o.tls.trust_store.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(o.tls.trust_store_pwd, "pw");
        // A bare -usessl means true; no flag means false.
        assert!(parse(&["-usessl", "-ts", "ca.pem"]).unwrap().tls.use_ssl);
        let o = parse(&[]).unwrap();
        assert!(!o.tls.use_ssl);
        assert!(o.tls.client_tls().unwrap().is_none());
        // Half the settings is an error, never a silent plain connection.
        let e = parse(&["-ts", "ca.pem"])
            .unwrap()
            .tls
            .client_tls()
            .unwrap_err();
        assert!(e.to_string().contains("add -usessl true"), "{e}");
        let e = parse(&["-usessl", "true"])
            .unwrap()
            .tls
            .client_tls()
            .unwrap_err();
        assert!(
            e.to_string().contains("needs the trust store: -ts FILE"),
            "{e}"
        );
        let e = parse(&["-usessl", "true", "-ts", "/nonexistent/ca.pem"])
            .unwrap()
            .tls
            .client_tls()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_statement_is_finished_by_a_semicolon_outside_quotes() {
        let multi = "CREATE PIPE a2b\n  WITH CONNECTOR ('connector'='iotdb-thrift-connector',\n  'connector.ip'='127.0.0.1');";
        assert!(Split::new(multi).is_finished());
        assert_eq!(Split::new(multi).complete.len(), 1);
        assert!(!Split::new("CREATE PIPE a2b\n WITH CONNECTOR (").is_finished());
        assert!(!Split::new("insert into root.sg.d(time,s) values(1,'a;").is_finished());
        assert_eq!(Split::new("select ** from root.sg.d").complete.len(), 0);
        let s = Split::new("show pipes; select");
        assert_eq!(s.complete, vec!["show pipes"]);
        assert_eq!(s.rest, " select");
        assert!(!s.is_finished());
    }

    #[test]
    fn cli_commands_need_no_semicolon() {
        assert_eq!(Special::parse(" QUIT "), Some(Special::Quit));
        assert_eq!(Special::parse("exit;"), Some(Special::Quit));
        assert_eq!(
            Special::parse("set time_display_type=long"),
            Some(Special::SetTimeDisplay("long".into()))
        );
        assert_eq!(Special::parse("show timeseries"), None);
    }

    #[test]
    fn floats_print_as_java_prints_them() {
        assert_eq!(java_float(16.0), "16.0");
        assert_eq!(java_float(18.5), "18.5");
        assert_eq!(java_float(1e7), "1.0E7");
        assert_eq!(java_float(0.1), "0.1");
        assert_eq!(java_float(-0.0), "-0.0");
        assert_eq!(java_double(1.0e-4), "1.0E-4");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(123456789.5), "1.234567895E8");
        assert_eq!(java_double(9999999.0), "9999999.0");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(java_double(2.5), "2.5");
    }

    #[test]
    fn renders_like_iotdb() {
        let rows = Rows {
            columns: vec!["root.sg.d.s".into()],
            types: vec!["INT32".into()],
            ignore_timestamp: true,
            rows: vec![(0, vec![Some(Value::Int32(10))]), (0, vec![None])],
        };
        let mut out = Vec::new();
        render(&rows, "ms", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+-----------+\n|root.sg.d.s|\n+-----------+\n|         10|\n|       null|\n+-----------+\nTotal line number = 2\n"
        );
        let empty = Rows {
            columns: vec!["root.sg.d.s".into()],
            types: vec!["INT32".into()],
            ignore_timestamp: false,
            rows: vec![],
        };
        let mut out = Vec::new();
        render(&empty, "ms", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+----+-----------+\n|Time|root.sg.d.s|\n+----+-----------+\n+----+-----------+\nEmpty set.\n"
        );
    }

    #[test]
    fn times_are_iso8601_with_the_precision() {
        // The process's zone is whatever TZ says; check the shape and the
        // fraction, which do not depend on it.
        let s = format_time(1_648_569_600_123, Precision::Ms, TimeDisplay::Iso8601);
        assert!(s.contains(".123"), "{s}");
        assert!(
            s.ends_with('Z') || s[s.len() - 6..].starts_with(['+', '-']),
            "{s}"
        );
        let s = format_time(-1, Precision::Us, TimeDisplay::Iso8601);
        assert!(s.contains(".999999"), "{s}");
        assert_eq!(
            format_time(42, Precision::Ns, TimeDisplay::Long),
            "42".to_string()
        );
    }
}
