//! The terminal-facing commands against real `edgepipe server` processes:
//! `edgepipe cli` driven through a pseudo-terminal as a person types and
//! pastes, and `edgepipe top` printing its snapshot without a terminal.
//!
//! Every wait is bounded; every process started is stopped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `edgepipe server` on a free loopback port.
struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Node {
    fn start(data_dir: &Path) -> Node {
        let log = data_dir.with_extension("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
            .args(["server", "--rpc-address", "127.0.0.1", "--rpc-port", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn edgepipe server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("edgepipe server listening on ") {
                    let _ = tx.send(a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => Node { child, port, log },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not start ({other:?}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    /// `edgepipe cli -e SQL` against this node (times in UTC).
    fn sql(&self, sql: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_edgepipe"))
            .args(["cli", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-u", "root", "-pw", "root", "-e", sql])
            .env("TZ", "UTC")
            .env_remove("RUST_LOG")
            .output()
            .expect("run edgepipe cli")
    }

    /// SIGTERM and a clean exit within 30 s.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                assert!(
                    st.success(),
                    "server exited with {st}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not stop within 30 s");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The CLI in a pseudo-terminal of 160 x 50, with HOME in `home`.
fn cli_pty(port: u16, home: &Path) -> rexpect::session::PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgepipe"));
    cmd.args(["cli", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-u", "root", "-pw", "root"])
        .env("HOME", home)
        .env("TERM", "xterm")
        .env("TZ", "UTC")
        .env_remove("RUST_LOG");
    let p = rexpect::session::spawn_command(cmd, Some(20_000)).expect("spawn the cli in a pty");
    let fd = p.process().get_file_handle().expect("pty handle");
    let size = libc::winsize {
        ws_row: 50,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize from the pointer; the fd is
    // the pty master we own.
    unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::TIOCSWINSZ,
            &size,
        )
    };
    p
}

/// Issue 10: the interactive CLI took each line on its own, so the
/// README's multi-line CREATE PIPE failed when pasted; an empty result
/// printed "executed successfully"; history is kept and recalled with the
/// up arrow; errors come as IoTDB prints them.
#[test]
fn cli_in_a_terminal_takes_pasted_statements_history_and_prints_as_iotdb() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"));
    let o = node.sql("CREATE TIMESERIES root.sg.d.s WITH DATATYPE=INT32, ENCODING=RLE");
    assert!(o.status.success(), "{}", text(&o.stdout));
    // -e: statements split at `;` outside quotes; exit 1 when one failed.
    let o =
        node.sql("insert into root.sg.d(time, s) values(1, 1); selec x; select s from root.sg.d");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let out = text(&o.stdout);
    assert!(
        out.starts_with("Msg: The statement is executed successfully.\nMsg: 700: "),
        "{out}"
    );
    assert!(
        out.contains("|1970-01-01T00:00:00.001Z|          1|\n+------------------------+-----------+\nTotal line number = 1\nIt costs "),
        "{out}"
    );
    let o = node.sql(
        "select s from root.sg.d where time > 100; insert into root.sg.d(time, t) values(2, 'a;b'); select t from root.sg.d",
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("+----+-----------+\nEmpty set.\nIt costs "),
        "{out}"
    );
    assert!(
        out.contains("|1970-01-01T00:00:00.002Z|        a;b|"),
        "{out}"
    );

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let sink = closed_port();

    let mut p = cli_pty(node.port, &home);
    p.exp_string("Successfully login at 127.0.0.1:").unwrap();
    p.exp_string("IoTDB> ").unwrap();

    // A multi-line statement pasted by a terminal (bracketed paste), with
    // a `;` inside a quoted string, then Enter.
    let create = format!(
        "CREATE PIPE a2b\n  WITH EXTRACTOR ('extractor.pattern'='root.sg;x')\n  WITH CONNECTOR ('connector'='iotdb-thrift-connector',\n    'connector.ip'='127.0.0.1', 'connector.port'='{sink}');"
    );
    p.send(&format!("\x1b[200~{create}\x1b[201~")).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Msg: The statement is executed successfully.")
        .unwrap();
    p.exp_string("IoTDB> ").unwrap();

    // Up arrow: the whole multi-line CREATE PIPE comes back and runs
    // again, which now fails with IoTDB's code and words.
    p.send("\x1b[A").unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    let (_, err) = p.exp_regex(r"Msg: \d+: [^\r\n]*a2b[^\r\n]*").unwrap();
    assert!(
        err.contains("already exist"),
        "a repeated CREATE PIPE should fail as IoTDB's does: {err}"
    );
    p.exp_string("IoTDB> ").unwrap();

    // The same pasted where the terminal does not mark pastes: each line
    // arrives with its Enter; before the `;` Enter only starts a new line.
    let create2 = create.replace("a2b", "b2c");
    p.send(&create2.replace('\n', "\r")).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Msg: The statement is executed successfully.")
        .unwrap();
    p.exp_string("IoTDB> ").unwrap();

    p.send("SHOW PIPES;\r").unwrap();
    p.flush().unwrap();
    p.exp_string("|RemainingEventCount|LagSeconds|").unwrap();
    p.exp_string("extractor.pattern=root.sg;x").unwrap();
    p.exp_string(&format!("connector.port={sink}")).unwrap();
    p.exp_string("Total line number = 2").unwrap();
    p.exp_string("It costs ").unwrap();
    p.exp_string("IoTDB> ").unwrap();

    // An empty result, typed over three lines, is a table with its header
    // and no rows.
    p.send("select s\r  from root.sg.d\r  where time > 100;\r")
        .unwrap();
    p.flush().unwrap();
    p.exp_string("+----+-----------+").unwrap();
    p.exp_string("|Time|root.sg.d.s|").unwrap();
    p.exp_string("+----+-----------+\r\n+----+-----------+\r\nEmpty set.")
        .unwrap();
    p.exp_string("It costs ").unwrap();

    // Errors as IoTDB's CLI prints them: "Msg: <code>: <message>".
    p.send("selec * from root.sg;\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Msg: 700: Error occurred while parsing SQL to physical plan")
        .unwrap();
    p.exp_string("IoTDB> ").unwrap();

    // More than 1,000 rows: IoTDB's pager. Enter shows the rest and the
    // total; `q` stops.
    let rows: Vec<String> = (1..=1500).map(|t| format!("({t}, {t})")).collect();
    let o = node.sql(&format!(
        "insert into root.sg.p(time, v) values{}",
        rows.join(",")
    ));
    assert!(o.status.success(), "{}", text(&o.stdout));
    p.send("select v from root.sg.p;\r").unwrap();
    p.flush().unwrap();
    p.exp_string("It costs ").unwrap();
    p.exp_string("This display 1000 rows. Press ENTER to show more, input 'q' to quit.")
        .unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("|1970-01-01T00:00:01.500Z|").unwrap();
    p.exp_string("Total line number = 1500").unwrap();
    p.exp_string("IoTDB> ").unwrap();
    p.send("select v from root.sg.p;\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Press ENTER to show more").unwrap();
    p.send("q\r").unwrap();
    p.flush().unwrap();
    let (before, _) = p.exp_regex("IoTDB> ").unwrap();
    assert!(!before.contains("Total line number"), "{before}");

    p.send("quit\r").unwrap();
    p.flush().unwrap();
    p.exp_eof().unwrap();

    // The history file keeps the multi-line statement whole.
    let hist = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".edgepipe_history-127.0.0.1-")
        })
        .expect("a history file in HOME");
    let h = std::fs::read_to_string(&hist).unwrap();
    assert!(
        h.contains(r"CREATE PIPE a2b\n  WITH EXTRACTOR"),
        "history: {h}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&hist).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "history file mode {mode:o}");
    }

    // A script piped in: statements over several lines, no pager (all
    // 1,500 rows), nothing added to the history.
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "select v\n  from root.sg.p;\nshow\n  devices;\nselect s from root.sg.d where time > 100",
    )
    .unwrap();
    let before = std::fs::read_to_string(&hist).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(["cli", "-p", &node.port.to_string()])
        .env("HOME", &home)
        .env_remove("RUST_LOG")
        .stdin(std::fs::File::open(&script).unwrap())
        .output()
        .expect("run edgepipe cli");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("Total line number = 1500"), "{out}");
    assert!(!out.contains("Press ENTER"), "{out}");
    assert!(out.contains("|root.sg.p|"), "{out}");
    // The last statement has no `;`: it runs when the input ends.
    assert!(out.trim_end().ends_with('s'), "{out}");
    assert_eq!(out.matches("Empty set.").count(), 1, "{out}");
    assert_eq!(std::fs::read_to_string(&hist).unwrap(), before);

    // A new session recalls the last statement of the previous one.
    let mut p = cli_pty(node.port, &home);
    p.exp_string("IoTDB> ").unwrap();
    p.send("\x1b[A\r").unwrap();
    p.flush().unwrap();
    p.exp_string("quit").unwrap();
    p.exp_eof().unwrap();
    node.stop();
}

/// Without a terminal, `top` prints one snapshot holding every pipe.
#[test]
fn top_without_a_terminal_prints_a_snapshot_of_each_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Node::start(&data);
    let sink = closed_port();
    let o = node.sql(&format!(
        "insert into root.sg.d(time, s) values(1, 1); insert into root.sg.d(time, s) values(2, 2); \
         CREATE PIPE first WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{sink}'); \
         CREATE PIPE second WITH CONNECTOR ('connector'='do-nothing-connector'); START PIPE second"
    ));
    assert!(o.status.success(), "{}", text(&o.stdout));

    let o = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(["top", "-h", "127.0.0.1", "-p", &node.port.to_string()])
        .args(["-u", "root", "-pw", "root", "--interval", "0.2"])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run edgepipe top");
    let s = text(&o.stdout);
    assert!(o.status.success(), "{s}{}", text(&o.stderr));
    assert!(s.contains(" Pipe | "), "{s}");
    let first = s
        .lines()
        .find(|l| l.starts_with("| ") && l.contains(" first "))
        .unwrap_or_else(|| panic!("no row for pipe first: {s}"));
    assert!(first.contains("STOPPED"), "{first}");
    assert!(first.contains(&format!("127.0.0.1:{sink}")), "{first}");
    // Two records were written before `first` existed: its backlog.
    assert!(first.contains(" 2 |"), "{first}");
    let second = s
        .lines()
        .find(|l| l.starts_with("| ") && l.contains(" second "))
        .unwrap_or_else(|| panic!("no row for pipe second: {s}"));
    assert!(second.contains("RUNNING"), "{second}");
    assert!(s.contains("pipes: 2 (1 RUNNING, 1 other)"), "{s}");
    assert!(s.contains("node: 1 series"), "{s}");
    assert!(s.contains("change log "), "{s}");
    assert!(s.contains("ingest "), "{s}");
    // Not a terminal: no escape sequences.
    assert!(!s.contains('\x1b'), "{s:?}");

    // Without --data-dir the change log comes over SQL (SHOW CHANGELOG),
    // with the same figures (issue 10).
    let o = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(["top", "-h", "127.0.0.1", "-p", &node.port.to_string()])
        .args(["--interval", "0.2"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run edgepipe top");
    let over_sql = text(&o.stdout);
    assert!(o.status.success(), "{over_sql}{}", text(&o.stderr));
    let log_line = |s: &str| {
        let l = s
            .lines()
            .find(|l| l.starts_with("change log "))
            .unwrap_or_else(|| panic!("no change log line: {s}"))
            .to_string();
        l[l.find("): ").expect("source") + 3..l.find("; ingest").expect("ingest")].to_string()
    };
    assert!(
        over_sql.contains("change log (SHOW CHANGELOG): offsets "),
        "{over_sql}"
    );
    assert_eq!(log_line(&over_sql), log_line(&s), "{over_sql}\n{s}");
    assert!(over_sql.contains("ingest "), "{over_sql}");
    assert!(
        over_sql.lines().any(|l| l.contains(" first ")),
        "{over_sql}"
    );

    // A node that is not there: a clear error and exit code 2.
    let o = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(["top", "-p", &closed_port().to_string()])
        .env_remove("RUST_LOG")
        .output()
        .expect("run edgepipe top");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("cannot connect to 127.0.0.1:"),
        "{}",
        text(&o.stderr)
    );
    node.stop();
}
