//! `edgepipe demo`: an edge node and a cloud node on free local ports in
//! temporary directories, a pipe edge → cloud, the seed's example data and
//! a larger stream written to the edge, and `select ** from root.vehicle`
//! from both ends side by side.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
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

/// Runs the demo.
///
/// # Errors
/// A node that does not start, a statement that fails, or ends that do not
/// match in time.
pub fn run(out: &mut dyn Write) -> anyhow::Result<crate::Outcome> {
    let tmp = tempfile::Builder::new().prefix("edgepipe-demo").tempdir()?;
    let edge = Server::start("edge", &tmp.path().join("edge"))?;
    let cloud = Server::start("cloud", &tmp.path().join("cloud"))?;
    writeln!(
        out,
        "edge node  on {} (data in {})",
        edge.addr,
        tmp.path().join("edge").display()
    )?;
    writeln!(
        out,
        "cloud node on {} (data in {})",
        cloud.addr,
        tmp.path().join("cloud").display()
    )?;
    let cport = cloud
        .addr
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();

    let mut s = session(&edge.addr)?;
    let create = format!(
        "CREATE PIPE edge2cloud WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{cport}')"
    );
    for sql in [create.as_str(), "START PIPE edge2cloud"] {
        writeln!(out, "edge> {sql}")?;
        s.execute(sql).map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
    }
    for sql in SEED {
        writeln!(out, "edge> {sql}")?;
        s.execute(sql).map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
        // now() at millisecond precision: keep the six rows apart.
        std::thread::sleep(Duration::from_millis(2));
    }

    writeln!(
        out,
        "edge> streaming {STREAM_ROWS} rows x 4 DOUBLE columns into root.demo.stream"
    )?;
    out.flush()?;
    let bar = indicatif::ProgressBar::new(STREAM_ROWS as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec}")
            .expect("template"),
    );
    let start = Instant::now();
    for base in (0..STREAM_ROWS).step_by(10_000) {
        let n = 10_000.min(STREAM_ROWS - base);
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
    let _ = s.close();

    // Wait for the pipe to drain.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = query(&edge.addr, "SHOW PIPE edge2cloud")?;
        let remaining = r.rows[0].1[7]
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        if remaining == "0" {
            break;
        }
        if Instant::now() > deadline {
            bail!("the pipe still has {remaining} events to send after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

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
    edge.stop()?;
    cloud.stop()?;
    writeln!(out, "both nodes stopped cleanly")?;
    Ok(if same {
        crate::Outcome::Ok
    } else {
        crate::Outcome::ProblemFound
    })
}
