//! `edgepipe top`: a live view of a node for the person looking after it.
//!
//! Every interval it samples the node over the client RPC: `SHOW PIPES`,
//! `COUNT TIMESERIES root.**`, and the change log through `SHOW CHANGELOG`
//! (log start and end offsets, segments, bytes) and `SHOW CHANGELOG
//! CONSUMERS` (each pipe's committed offset). Given `--data-dir` (the
//! node's data directory on this machine), it reads the change log there
//! instead, read-only. Rates come from successive samples:
//! - **Sent/s**: records the receiver acknowledged per second (a pipe's
//!   committed offset moving).
//! - **Drain/s**: how fast `RemainingEventCount` shrinks; negative when the
//!   backlog grows (writes arrive faster than the pipe sends).
//! - **ingest**: records and bytes appended to the change log per second.
//!
//! A pipe with a backlog gets a progress bar: how much of the backlog seen
//! at its largest has been sent, the rate since, and the time left at that
//! rate. That is the history backfill of a new pipe, or the catch-up after a
//! link came back.
//!
//! On a terminal the view refreshes in place (alternate screen, `q`, Esc or
//! Ctrl-C leaves) through `crossterm`; otherwise it prints one snapshot, two
//! samples an interval apart so that rates are real, and exits. Both paths
//! render the same text.
//!
//! `SHOW CHANGELOG` needs the SHOW_PIPES privilege; without it (or on a
//! node too old to have it) the view says why the change log is missing.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use node::client::Session;

use crate::table::{width, Table};

/// Options of `edgepipe top`.
#[derive(Debug, Args)]
pub struct TopOpt {
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
    /// TLS (`-usessl true -ts ca.pem`, as the CLI).
    #[command(flatten)]
    pub tls: crate::cli::TlsOpt,
    /// The node's data directory, when the node runs on this machine: the
    /// change log is read there (read-only, safe beside the running node)
    /// instead of through `SHOW CHANGELOG`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds between samples.
    #[arg(short = 'i', long, default_value_t = 1.0)]
    pub interval: f64,
    /// Show this many refreshes, then exit (default: until `q` on a
    /// terminal, one snapshot otherwise).
    #[arg(short = 'n', long)]
    pub iterations: Option<u64>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// One row of `SHOW PIPES`, the columns `top` (and the demo) use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PipeRow {
    /// `ID`.
    pub(crate) id: String,
    /// `State`.
    pub(crate) state: String,
    /// `PipeConnector`, as `{k=v, …}`.
    pub(crate) connector: String,
    /// `ExceptionMessage`.
    pub(crate) exception: String,
    /// `RemainingEventCount`.
    pub(crate) remaining: Option<u64>,
    /// `LagSeconds`.
    pub(crate) lag_seconds: Option<f64>,
}

/// The change log, read through SQL or from the data directory.
#[derive(Debug, Clone, PartialEq)]
struct LogStats {
    /// Where it was read: the directory, or `SHOW CHANGELOG`.
    source: String,
    start: u64,
    end: u64,
    segments: usize,
    disk_bytes: u64,
    record_bytes: u64,
    /// Committed offset of each consumer, by consumer name.
    committed: BTreeMap<String, u64>,
}

/// What one look at the node saw.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    pipes: Vec<PipeRow>,
    series: Option<u64>,
    log: Result<LogStats, String>,
}

/// The ledger's consumer name of a pipe (`replicator::consumer_name`).
fn consumer_of(pipe: &str) -> String {
    format!("pipe/{pipe}")
}

fn text(v: &Option<protocol::types::Value>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

/// Runs `SHOW PIPES`, finding the columns by name.
pub(crate) fn show_pipes(s: &mut Session) -> anyhow::Result<Vec<PipeRow>> {
    let rows = s
        .execute("SHOW PIPES")
        .map_err(|e| anyhow::anyhow!("SHOW PIPES: {e}"))?
        .context("SHOW PIPES returned no result")?;
    let col = |name: &str| rows.columns.iter().position(|c| c == name);
    let (id, state, conn, exc, rem, lag) = (
        col("ID").context("SHOW PIPES has no ID column")?,
        col("State"),
        col("PipeConnector"),
        col("ExceptionMessage"),
        col("RemainingEventCount"),
        col("LagSeconds"),
    );
    let cell = |vals: &[Option<protocol::types::Value>], i: Option<usize>| {
        i.and_then(|i| vals.get(i)).map(text).unwrap_or_default()
    };
    Ok(rows
        .rows
        .iter()
        .map(|(_, v)| PipeRow {
            id: cell(v, Some(id)),
            state: cell(v, state),
            connector: cell(v, conn),
            exception: cell(v, exc),
            remaining: cell(v, rem).parse().ok(),
            lag_seconds: cell(v, lag).parse().ok(),
        })
        .collect())
}

fn count_series(s: &mut Session) -> Option<u64> {
    let rows = s.execute("COUNT TIMESERIES root.**").ok()??;
    rows.rows
        .first()
        .and_then(|(_, v)| v.first())
        .and_then(|v| text(v).parse().ok())
}

fn log_stats(data_dir: &std::path::Path) -> Result<LogStats, String> {
    let dir = data_dir.join("wal");
    let log = wal::Log::open_read_only(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let segs = log.segments();
    Ok(LogStats {
        start: log.log_start(),
        end: log.end_offset(),
        segments: segs.len(),
        disk_bytes: log.disk_bytes(),
        record_bytes: segs.iter().map(wal::SegmentInfo::record_bytes).sum(),
        committed: log
            .consumers()
            .into_iter()
            .map(|c| (c.name, c.state.committed))
            .collect(),
        source: dir.display().to_string(),
    })
}

/// Runs a statement, finding the columns of its rows by name.
fn text_rows(s: &mut Session, sql: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
    let rows = s
        .execute(sql)
        .map_err(|e| format!("{sql}: {e}"))?
        .ok_or_else(|| format!("{sql} returned no result"))?;
    Ok(rows
        .rows
        .iter()
        .map(|(_, v)| {
            rows.columns
                .iter()
                .cloned()
                .zip(v.iter().map(text))
                .collect()
        })
        .collect())
}

/// The change log through `SHOW CHANGELOG` and `SHOW CHANGELOG CONSUMERS`.
fn log_stats_sql(s: &mut Session) -> Result<LogStats, String> {
    let log = text_rows(s, "SHOW CHANGELOG")?;
    let row = log.first().ok_or("SHOW CHANGELOG returned no row")?;
    let num = |row: &BTreeMap<String, String>, col: &str| -> Result<u64, String> {
        row.get(col)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("SHOW CHANGELOG: no number in column {col}"))
    };
    let committed = text_rows(s, "SHOW CHANGELOG CONSUMERS")?
        .iter()
        .filter_map(|r| {
            let offset = r.get("CommittedOffset")?.parse().ok()?;
            Some((r.get("Consumer")?.clone(), offset))
        })
        .collect();
    Ok(LogStats {
        source: "SHOW CHANGELOG".into(),
        start: num(row, "LogStartOffset")?,
        end: num(row, "LogEndOffset")?,
        segments: num(row, "Segments")? as usize,
        disk_bytes: num(row, "DiskBytes")?,
        record_bytes: num(row, "RecordBytes")?,
        committed,
    })
}

/// Samples the node; reconnects when the session was lost.
struct Sampler {
    addr: String,
    user: String,
    password: String,
    tls: Option<node::client::ClientTls>,
    data_dir: Option<PathBuf>,
    session: Option<Session>,
}

impl Sampler {
    fn sample(&mut self) -> anyhow::Result<Sample> {
        let s = match &mut self.session {
            Some(s) => s,
            None => self.session.insert(
                Session::open_with(&self.addr, &self.user, &self.password, self.tls.as_ref())
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            ),
        };
        let pipes = match show_pipes(s) {
            Ok(p) => p,
            Err(e) => {
                self.session = None;
                return Err(e);
            }
        };
        let series = count_series(s);
        let log = match self.data_dir.as_deref() {
            Some(d) => log_stats(d),
            None => log_stats_sql(s),
        };
        Ok(Sample {
            at: Instant::now(),
            pipes,
            series,
            log,
        })
    }

    fn close(self) {
        if let Some(s) = self.session {
            let _ = s.close();
        }
    }
}

/// A pipe's backlog being worked off.
#[derive(Debug, Clone, PartialEq)]
struct Backfill {
    /// The largest backlog seen since it was last zero.
    peak: u64,
    /// When that was.
    since: Instant,
    /// Remaining now.
    remaining: u64,
}

impl Backfill {
    fn done(&self) -> u64 {
        self.peak - self.remaining
    }

    /// Records per second since the peak.
    fn rate(&self, now: Instant) -> Option<f64> {
        let secs = now.duration_since(self.since).as_secs_f64();
        (secs > 0.0 && self.done() > 0).then(|| self.done() as f64 / secs)
    }

    /// Time left at the rate so far.
    fn eta(&self, now: Instant) -> Option<Duration> {
        let r = self.rate(now)?;
        Duration::try_from_secs_f64(self.remaining as f64 / r).ok()
    }
}

/// Per-pipe state kept across samples.
#[derive(Debug, Default)]
struct Tracker {
    backfills: BTreeMap<String, Backfill>,
}

impl Tracker {
    fn observe(&mut self, s: &Sample) {
        let ids: Vec<&str> = s.pipes.iter().map(|p| p.id.as_str()).collect();
        self.backfills.retain(|id, _| ids.contains(&id.as_str()));
        for p in &s.pipes {
            let remaining = p.remaining.unwrap_or(0);
            if remaining == 0 {
                self.backfills.remove(&p.id);
                continue;
            }
            let b = self.backfills.entry(p.id.clone()).or_insert(Backfill {
                peak: remaining,
                since: s.at,
                remaining,
            });
            if remaining > b.peak {
                // The backlog grew: progress counts from its new top.
                b.peak = remaining;
                b.since = s.at;
            }
            b.remaining = remaining;
        }
    }
}

/// Per second between two samples.
fn per_sec(prev: u64, now: u64, secs: f64) -> Option<f64> {
    (secs > 0.0).then(|| (now as f64 - prev as f64) / secs)
}

/// `1234567` → `1.23M`; small numbers as they are.
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a.fract() == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}s", s.max(1))
    }
}

/// The receiver a connector points at (`connector.ip`:`connector.port`,
/// or `connector.node-urls`), from SHOW PIPES' `{k=v, …}` rendering.
fn target(connector: &str) -> String {
    let inner = connector.trim_start_matches('{').trim_end_matches('}');
    let mut kv = BTreeMap::new();
    for part in inner.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            kv.insert(k.trim(), v.trim());
        }
    }
    let get = |k: &str| {
        kv.get(format!("connector.{k}").as_str())
            .or_else(|| kv.get(format!("sink.{k}").as_str()))
            .copied()
    };
    match (get("ip"), get("port"), get("node-urls")) {
        (Some(ip), Some(port), _) => format!("{ip}:{port}"),
        (_, _, Some(urls)) => urls.to_string(),
        _ => kv
            .get("connector")
            .or_else(|| kv.get("sink"))
            .map_or_else(|| "-".to_string(), |c| c.to_string()),
    }
}

/// A text bar `[#####-----]` of `cells` cells.
fn bar(done: u64, total: u64, cells: usize) -> String {
    let filled = if total == 0 {
        cells
    } else {
        ((done as u128 * cells as u128) / total as u128) as usize
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(cells - filled))
}

/// Shortens `s` to `max` columns, ending in `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    for c in s.chars() {
        if width(&out) + width(c.encode_utf8(&mut [0; 4])) + 1 > max {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// Everything needed to draw one frame.
struct Frame<'a> {
    addr: &'a str,
    interval: f64,
    terminal: bool,
    prev: Option<&'a Sample>,
    now: &'a Sample,
    tracker: &'a Tracker,
    /// Columns available (`usize::MAX` when not on a terminal).
    cols: usize,
}

/// Renders a frame as lines of text.
fn render(f: &Frame) -> String {
    let mut o = String::new();
    let now = f.now;
    let clock = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%:z");
    let quit = if f.terminal { "; q quits" } else { "" };
    o.push_str(&format!(
        "edgepipe top  {}  {clock}  (every {:.1}s{quit})\n",
        f.addr, f.interval
    ));
    let secs = f
        .prev
        .map_or(0.0, |p| now.at.duration_since(p.at).as_secs_f64());
    let series = now
        .series
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    o.push_str(&format!("node: {series} series\n"));
    match &now.log {
        Err(e) => o.push_str(&format!("change log: cannot read it: {e}\n")),
        Ok(l) => {
            let ingest = match f.prev.and_then(|p| p.log.as_ref().ok()) {
                Some(pl) => format!(
                    "ingest {} records/s, {}/s",
                    per_sec(pl.end, l.end, secs).map_or("-".into(), human),
                    per_sec(pl.record_bytes, l.record_bytes, secs)
                        .map_or("-".into(), |b| bytes(b.max(0.0)))
                ),
                None => "ingest -".to_string(),
            };
            o.push_str(&format!(
                "change log ({}): offsets {}..{} ({} records), {} segment(s), {} on disk; {ingest}\n",
                l.source,
                l.start,
                l.end,
                l.end - l.start,
                l.segments,
                bytes(l.disk_bytes as f64),
            ));
        }
    }
    let running = now.pipes.iter().filter(|p| p.state == "RUNNING").count();
    o.push_str(&format!(
        "pipes: {} ({running} RUNNING, {} other)\n",
        now.pipes.len(),
        now.pipes.len() - running
    ));
    let committed = |s: &Sample, id: &str| -> Option<u64> {
        s.log
            .as_ref()
            .ok()?
            .committed
            .get(&consumer_of(id))
            .copied()
    };
    let mut t = Table::new(&[
        "Pipe",
        "State",
        "Target",
        "Sent/s",
        "Drain/s",
        "Remaining",
        "LagSeconds",
        "ETA",
        "LastError",
    ]);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in &now.pipes {
        let before = f.prev.and_then(|s| s.pipes.iter().find(|q| q.id == p.id));
        let sent = f
            .prev
            .and_then(|pv| Some((committed(pv, &p.id)?, committed(now, &p.id)?)))
            .and_then(|(a, b)| per_sec(a, b, secs));
        let drain = before
            .and_then(|b| Some((p.remaining?, b.remaining?)))
            .and_then(|(r, br)| per_sec(r, br, secs));
        let eta = f
            .tracker
            .backfills
            .get(&p.id)
            .and_then(|b| b.eta(now.at))
            .map_or_else(|| "-".to_string(), duration);
        rows.push(vec![
            p.id.clone(),
            p.state.clone(),
            target(&p.connector),
            sent.map_or_else(|| "-".to_string(), human),
            drain.map_or_else(|| "-".to_string(), human),
            p.remaining
                .map_or_else(|| "?".to_string(), |r| r.to_string()),
            p.lag_seconds
                .map_or_else(|| "?".to_string(), |l| format!("{l:.3}")),
            eta,
            if p.exception.is_empty() {
                "-".to_string()
            } else {
                p.exception.replace('\n', " ")
            },
        ]);
    }
    // The error column gets what the others leave of the screen.
    if f.cols != usize::MAX {
        let others: usize = (0..8)
            .map(|i| {
                rows.iter()
                    .map(|r| width(&r[i]))
                    .chain([10])
                    .max()
                    .unwrap_or(0)
                    + 3
            })
            .sum();
        let room = f.cols.saturating_sub(others + 4).max(12);
        for r in &mut rows {
            r[8] = clip(&r[8], room);
        }
    }
    for r in rows {
        t.row(r);
    }
    let mut table = Vec::new();
    t.write(&mut table).expect("write to memory");
    o.push_str(&String::from_utf8_lossy(&table));
    // Bars for the pipes working a backlog off (a stopped pipe's stays).
    let running_ids: Vec<&str> = now
        .pipes
        .iter()
        .filter(|p| p.state == "RUNNING")
        .map(|p| p.id.as_str())
        .collect();
    for (id, b) in &f.tracker.backfills {
        if !running_ids.contains(&id.as_str()) {
            continue;
        }
        let pct = b.done() as f64 * 100.0 / b.peak as f64;
        let rate = b.rate(now.at).map_or_else(
            || "- records/s".to_string(),
            |r| format!("{} records/s", human(r)),
        );
        let eta = b.eta(now.at).map_or_else(|| "-".to_string(), duration);
        o.push_str(&format!(
            "{id} backlog {} {pct:3.0}% {}/{} records, {rate}, ETA {eta}\n",
            bar(b.done(), b.peak, 30),
            b.done(),
            b.peak
        ));
    }
    o.push_str(
        "Sent/s: records acknowledged per second (committed offsets). \
         Drain/s: how fast Remaining shrinks; negative while the backlog grows.\n",
    );
    o
}

/// Runs `top`.
///
/// # Errors
/// The node cannot be reached (a snapshot), or the terminal fails.
pub fn run(opt: TopOpt, out: &mut dyn Write) -> anyhow::Result<crate::Outcome> {
    anyhow::ensure!(
        opt.interval.is_finite() && opt.interval >= 0.05,
        "--interval must be at least 0.05 seconds, not {}",
        opt.interval
    );
    let interval = Duration::from_secs_f64(opt.interval);
    let addr = format!("{}:{}", opt.host, opt.port);
    let mut sampler = Sampler {
        addr: addr.clone(),
        user: opt.user.clone(),
        password: opt.password.clone(),
        tls: opt.tls.client_tls()?,
        data_dir: opt.data_dir.clone(),
        session: None,
    };
    let r = if std::io::stdout().is_terminal() {
        live(&opt, &addr, interval, &mut sampler)
    } else {
        snapshots(&opt, &addr, interval, &mut sampler, out)
    };
    sampler.close();
    r.map(|_| crate::Outcome::Ok)
}

/// Not on a terminal: `iterations` snapshots (default one), each from two
/// samples an interval apart.
fn snapshots(
    opt: &TopOpt,
    addr: &str,
    interval: Duration,
    sampler: &mut Sampler,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut tracker = Tracker::default();
    let mut prev = sampler.sample()?;
    tracker.observe(&prev);
    for i in 0..opt.iterations.unwrap_or(1).max(1) {
        std::thread::sleep(interval);
        let now = sampler.sample()?;
        tracker.observe(&now);
        if i > 0 {
            writeln!(out)?;
        }
        out.write_all(
            render(&Frame {
                addr,
                interval: opt.interval,
                terminal: false,
                prev: Some(&prev),
                now: &now,
                tracker: &tracker,
                cols: usize::MAX,
            })
            .as_bytes(),
        )?;
        out.flush()?;
        prev = now;
    }
    Ok(())
}

/// The terminal in raw mode on its alternate screen; restored however
/// `live` ends (return, error or panic).
struct Screen {
    out: std::io::Stdout,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        let mut out = std::io::stdout();
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            out,
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(Screen { out })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            self.out,
            crossterm::cursor::Show,
            crossterm::terminal::LeaveAlternateScreen
        );
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// On a terminal: redraw in place every interval until `q`, Esc or Ctrl-C
/// (or `iterations` frames). A node that cannot be reached is shown, and
/// tried again at the next refresh.
fn live(opt: &TopOpt, addr: &str, interval: Duration, sampler: &mut Sampler) -> anyhow::Result<()> {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use crossterm::{cursor, queue, style, terminal};

    let mut screen = Screen::enter()?;
    let mut tracker = Tracker::default();
    let mut prev: Option<Sample> = None;
    let mut frames = 0u64;
    loop {
        let text = match sampler.sample() {
            Ok(now) => {
                tracker.observe(&now);
                let (cols, _) = terminal::size().unwrap_or((120, 40));
                let t = render(&Frame {
                    addr,
                    interval: opt.interval,
                    terminal: true,
                    prev: prev.as_ref(),
                    now: &now,
                    tracker: &tracker,
                    cols: usize::from(cols),
                });
                prev = Some(now);
                t
            }
            Err(e) => format!(
                "edgepipe top  {addr}\ncannot reach the node: {e:#}\ntrying again every {:.1}s; q quits\n",
                opt.interval
            ),
        };
        let (cols, rows) = terminal::size().unwrap_or((120, 40));
        queue!(
            screen.out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        for (i, line) in text.lines().take(usize::from(rows)).enumerate() {
            queue!(
                screen.out,
                cursor::MoveTo(0, i as u16),
                style::Print(clip(line, usize::from(cols)))
            )?;
        }
        screen.out.flush()?;
        frames += 1;
        if opt.iterations.is_some_and(|n| frames >= n) {
            return Ok(());
        }
        let next = Instant::now() + interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() || !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                // Redraw at the new size now.
                Event::Resize(..) => break,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(id: &str, remaining: u64) -> PipeRow {
        PipeRow {
            id: id.into(),
            state: "RUNNING".into(),
            connector:
                "{connector=iotdb-thrift-connector, connector.ip=127.0.0.1, connector.port=6668}"
                    .into(),
            exception: String::new(),
            remaining: Some(remaining),
            lag_seconds: Some(0.0),
        }
    }

    #[test]
    fn a_backlog_is_tracked_from_its_peak() {
        let t0 = Instant::now();
        let mut tr = Tracker::default();
        let s = |at: Instant, r: u64| Sample {
            at,
            pipes: vec![pipe("a", r)],
            series: None,
            log: Err("not read".into()),
        };
        tr.observe(&s(t0, 100));
        tr.observe(&s(t0 + Duration::from_secs(1), 150));
        tr.observe(&s(t0 + Duration::from_secs(3), 50));
        let b = &tr.backfills["a"];
        assert_eq!((b.peak, b.done()), (150, 100));
        // 100 records in the 2 s since the peak: 50/s, 1 s left.
        assert_eq!(b.rate(t0 + Duration::from_secs(3)), Some(50.0));
        assert_eq!(
            b.eta(t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(1))
        );
        tr.observe(&s(t0 + Duration::from_secs(4), 0));
        assert!(tr.backfills.is_empty());
    }

    #[test]
    fn targets_bars_and_numbers() {
        assert_eq!(target(&pipe("a", 0).connector), "127.0.0.1:6668");
        assert_eq!(
            target("{connector=iotdb-thrift-connector, connector.node-urls=a:1,b:2}"),
            "a:1,b:2"
        );
        assert_eq!(
            target("{connector=do-nothing-connector}"),
            "do-nothing-connector"
        );
        assert_eq!(bar(1, 4, 8), "[##------]");
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(human(-25.0), "-25");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
