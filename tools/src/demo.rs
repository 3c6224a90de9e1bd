//! `edgepipe demo`: an edge node and a cloud node on free local ports in
//! temporary directories; a larger stream written to the edge first, so the
//! pipe edge → cloud created next has a history to send (shown as a
//! progress bar with rate and time left); then the seed's example data
//! written while the pipe runs, and `select ** from root.vehicle` from both
//! ends side by side. `--keep` keeps both nodes' data and prints the
//! commands to look at it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use node::client::Session;
use protocol::tablet::{Column, Tablet};

/// The seed's verification script (its section "结果验证").
const SEED: [&str; 12] = [
    "SET STORAGE GROUP TO root.vehicle",
    "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN",
    "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN",
    "insert into root.vehicle.d0(timestamp,s0) values(now(),10)",
    "insert into root.vehicle.d0(timestamp,s0,s1) values(now(),12,'12')",
    "insert into root.vehicle.d0(timestamp,s1) values(now(),'14')",
    "insert into root.vehicle.d1(timestamp,s2) values(now(),16.0)",
    "insert into root.vehicle.d1(timestamp,s2,s3) values(now(),18.0,true)",
    "insert into root.vehicle.d1(timestamp,s3) values(now(),false)",
    "flush",
];

/// Rows of the larger stream (4 DOUBLE columns each).
const STREAM_ROWS: i64 = 500_000;

/// Rows a tablet of the stream carries (one change-log record each).
const TABLET_ROWS: i64 = 10_000;

/// Options of `edgepipe demo`.
#[derive(Debug, Args)]
pub struct DemoOpt {
    /// Keep both nodes' data directories (and their logs) instead of
    /// deleting them, and print the commands that inspect them.
    #[arg(long)]
    pub keep: bool,
}

struct Server {
    name: &'static str,
    child: Child,
    addr: String,
}

impl Server {
    fn start(name: &'static str, dir: &Path) -> anyhow::Result<Server> {
        let log = std::fs::File::create(dir.with_extension("log"))?;
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "server",
                "--rpc-address",
                "127.0.0.1",
                "--rpc-port",
                "0",
                "--data-dir",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the {name} node"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("edgepipe server listening on ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).with_context(|| {
            format!(
                "the {name} node did not start; see {}",
                dir.with_extension("log").display()
            )
        })?;
        Ok(Server { name, child, addr })
    }

    /// SIGTERM, then wait for the clean exit.
    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait()? {
                if !st.success() {
                    bail!("the {} node exited with {st}", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("the {} node did not stop within 30 s", self.name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn session(addr: &str) -> anyhow::Result<Session> {
    Session::open(addr, "root", "root").map_err(|e| anyhow::anyhow!("{addr}: {e}"))
}

fn query(addr: &str, sql: &str) -> anyhow::Result<node::client::Rows> {
    let mut s = session(addr)?;
    let r = s
        .execute(sql)
        .map_err(|e| anyhow::anyhow!("{sql}: {e}"))?
        .context("no rows")?;
    let _ = s.close();
    Ok(r)
}

/// The command that runs this binary, as the user can type it: relative to
/// the working directory when the binary sits below it
/// (`target/release/edgepipe`), else its full path.
fn self_command() -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| "edgepipe".into());
    let rel = std::env::current_dir()
        .ok()
        .and_then(|d| exe.strip_prefix(d).ok().map(Path::to_path_buf));
    rel.unwrap_or(exe).display().to_string()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}

/// Starts the pipe and shows its history backfill: a bar of the records it
/// still had to send when it started, with rate and time left (on a
/// terminal), and a line with what it sent and how fast (always).
fn backfill(addr: &str, pipe: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let remaining = |s: &mut Session| -> anyhow::Result<u64> {
        let pipes = crate::top::show_pipes(s)?;
        let p = pipes
            .iter()
            .find(|p| p.id == pipe)
            .with_context(|| format!("SHOW PIPES has no pipe {pipe}"))?;
        if !p.exception.is_empty() {
            bail!("pipe {pipe}: {}", p.exception);
        }
        p.remaining
            .with_context(|| format!("pipe {pipe}: RemainingEventCount is not a number"))
    };
    let mut s = session(addr)?;
    let total = remaining(&mut s)?;
    let sql = format!("START PIPE {pipe}");
    writeln!(out, "edge> {sql}")?;
    out.flush()?;
    let start = Instant::now();
    s.execute(&sql).map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "history {bar:40} {pos}/{len} records {per_sec} ETA {eta}",
        )
        .expect("template"),
    );
    let deadline = start + Duration::from_secs(120);
    loop {
        let left = remaining(&mut s)?;
        bar.set_position(total.saturating_sub(left));
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("pipe {pipe} still has {left} of {total} records of history to send after 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        out,
        "edge> pipe {pipe} sent its history: {total} records ({} points) in {secs:.2}s, {:.1} M points/s",
        STREAM_ROWS * 4,
        (STREAM_ROWS * 4) as f64 / secs / 1e6
    )?;
    let _ = s.close();
    Ok(())
}

/// Runs the demo.
///
/// # Errors
/// A node that does not start, a statement that fails, or ends that do not
/// match in time.
pub fn run(opt: DemoOpt, out: &mut dyn Write) -> anyhow::Result<crate::Outcome> {
    let tmp = tempfile::Builder::new().prefix("edgepipe-demo").tempdir()?;
    // Without --keep the directory goes when `_cleanup` drops, at the end.
    let (root, _cleanup) = if opt.keep {
        (tmp.keep(), None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    let (edge_dir, cloud_dir) = (root.join("edge"), root.join("cloud"));
    let edge = Server::start("edge", &edge_dir)?;
    let cloud = Server::start("cloud", &cloud_dir)?;
    let fate = if opt.keep {
        "kept"
    } else {
        "deleted at the end; --keep keeps it"
    };
    writeln!(
        out,
        "edge node  on {} (data in {}, {fate})",
        edge.addr,
        edge_dir.display()
    )?;
    writeln!(
        out,
        "cloud node on {} (data in {}, {fate})",
        cloud.addr,
        cloud_dir.display()
    )?;

    // History: written before the pipe exists.
    let mut s = session(&edge.addr)?;
    writeln!(
        out,
        "edge> writing {STREAM_ROWS} rows x 4 DOUBLE columns into root.demo.stream (before the pipe exists: its history)"
    )?;
    out.flush()?;
    let bar = indicatif::ProgressBar::new(STREAM_ROWS as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("write {bar:40} {pos}/{len} rows {per_sec}")
            .expect("template"),
    );
    let start = Instant::now();
    for base in (0..STREAM_ROWS).step_by(TABLET_ROWS as usize) {
        let n = TABLET_ROWS.min(STREAM_ROWS - base);
        let t = Tablet {
            device: "root.demo.stream".into(),
            measurements: ["t", "p", "h", "v"].map(String::from).to_vec(),
            columns: (0..4)
                .map(|c| {
                    Column::Double(
                        (base..base + n)
                            .map(|i| (i as f64) * 0.01 + f64::from(c))
                            .collect(),
                    )
                })
                .collect(),
            nulls: vec![None; 4],
            times: (base..base + n).collect(),
            aligned: false,
        };
        s.insert_tablet(&t)
            .map_err(|e| anyhow::anyhow!("insertTablet: {e}"))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    writeln!(
        out,
        "edge> wrote {} points in {:.2}s",
        STREAM_ROWS * 4,
        start.elapsed().as_secs_f64()
    )?;

    let cport = port_of(&cloud.addr).to_string();
    let create = format!(
        "CREATE PIPE edge2cloud WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{cport}')"
    );
    writeln!(out, "edge> {create}")?;
    s.execute(&create)
        .map_err(|e| anyhow::anyhow!("{create}: {e}"))?;
    backfill(&edge.addr, "edge2cloud", out)?;

    // Realtime: the seed's script, written while the pipe runs.
    for sql in SEED {
        writeln!(out, "edge> {sql}")?;
        s.execute(sql).map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
        // now() at millisecond precision: keep the six rows apart.
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = s.close();

    // Wait for the pipe to drain.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut s = session(&edge.addr)?;
    loop {
        let pipes = crate::top::show_pipes(&mut s)?;
        let left = pipes
            .iter()
            .find(|p| p.id == "edge2cloud")
            .and_then(|p| p.remaining);
        if left == Some(0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the pipe still has {left:?} events to send after 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = s.close();

    let e = query(&edge.addr, "select ** from root.vehicle")?;
    let c = query(&cloud.addr, "select ** from root.vehicle")?;
    let (mut left, mut right) = (Vec::new(), Vec::new());
    crate::cli::render(&e, "ms", &mut left)?;
    crate::cli::render(&c, "ms", &mut right)?;
    let (left, right) = (String::from_utf8(left)?, String::from_utf8(right)?);
    let width = left.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let title = "edge: select ** from root.vehicle";
    writeln!(
        out,
        "\n{title:<width$}   cloud: select ** from root.vehicle"
    )?;
    let (ll, rl): (Vec<&str>, Vec<&str>) = (left.lines().collect(), right.lines().collect());
    for i in 0..ll.len().max(rl.len()) {
        writeln!(
            out,
            "{:<width$}   {}",
            ll.get(i).copied().unwrap_or(""),
            rl.get(i).copied().unwrap_or("")
        )?;
    }
    let es = query(&edge.addr, "select ** from root.demo.stream")?;
    let cs = query(&cloud.addr, "select ** from root.demo.stream")?;
    writeln!(
        out,
        "\nroot.demo.stream: {} rows on the edge, {} rows on the cloud",
        es.rows.len(),
        cs.rows.len()
    )?;
    let same = e == c && es == cs;
    writeln!(
        out,
        "{}",
        if same {
            "MATCH: the cloud holds exactly the edge's data"
        } else {
            "MISMATCH: the ends differ"
        }
    )?;
    let (eport, cport) = (port_of(&edge.addr).to_string(), cport);
    edge.stop()?;
    cloud.stop()?;
    writeln!(out, "both nodes stopped cleanly")?;
    if opt.keep {
        let exe = self_command();
        let (ed, cd) = (edge_dir.display(), cloud_dir.display());
        writeln!(
            out,
            "\nData kept in {} (each node's log beside its directory: edge.log, cloud.log; rm -r it when done).",
            root.display()
        )?;
        writeln!(out, "Inspect the change logs (read-only):")?;
        writeln!(out, "  {exe} wal info    {ed}/wal")?;
        writeln!(
            out,
            "  {exe} wal offsets {ed}/wal    # pipe/edge2cloud: committed offset, nothing left to send"
        )?;
        writeln!(out, "  {exe} wal dump    {ed}/wal --limit 5")?;
        writeln!(out, "  {exe} wal offsets {cd}/wal")?;
        writeln!(
            out,
            "Query them again (the cloud on its old port, so the edge's pipe finds it):"
        )?;
        writeln!(
            out,
            "  {exe} server --data-dir {cd} --rpc-address 127.0.0.1 --rpc-port {cport} &"
        )?;
        writeln!(
            out,
            "  {exe} server --data-dir {ed} --rpc-address 127.0.0.1 --rpc-port {eport} &"
        )?;
        for port in [&eport, &cport] {
            writeln!(
                out,
                "  {exe} cli -h 127.0.0.1 -p {port} -u root -pw root -e \"select ** from root.vehicle\""
            )?;
        }
        writeln!(out, "  {exe} top -h 127.0.0.1 -p {eport} --data-dir {ed}")?;
    }
    Ok(if same {
        crate::Outcome::Ok
    } else {
        crate::Outcome::ProblemFound
    })
}
