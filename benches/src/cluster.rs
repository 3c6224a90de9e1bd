//! Real `edgepipe server` processes (the release build) on loopback, the
//! statements a bench runs on them, a raw `insertTablets` writer, and
//! `perf record` attached to a process for the phase being measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use node::client::Session;
use protocol::message::{call, read_reply, Proto};
use protocol::rpc::{TSInsertTabletsReq, TSOpenSessionReq, TSOpenSessionResp, TSStatus};
use protocol::tablet::Tablet;

/// The `edgepipe` binary: `EDGEPIPE_BENCH_BIN` if set (to compare two
/// builds), else the one next to the running bench (`target/release`).
///
/// # Panics
/// When it was not built (`cargo build --release`).
pub fn edgepipe_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("EDGEPIPE_BENCH_BIN") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("edgepipe");
    assert!(bin.exists(), "build it first: cargo build --release");
    bin
}

/// One `edgepipe server` process.
pub struct Server {
    child: Child,
    /// Its client RPC port.
    pub port: u16,
    /// Its data directory.
    pub dir: PathBuf,
    /// The TLS its clients need: set for a server serving TLS (see
    /// [`crate::tls::Pki::start`]), used by [`Server::exec`].
    pub tls: Option<node::client::ClientTls>,
}

impl Server {
    /// Starts a server with its data in `dir`, on `port` (0: any), with
    /// `config` lines (`key=value`) in its properties file; its log goes to
    /// `dir.log`. Returns once it listens.
    ///
    /// # Panics
    /// When the server does not start.
    pub fn start(dir: &Path, port: u16, config: &[String]) -> Server {
        let cfg = dir.with_extension("properties");
        std::fs::write(&cfg, config.join("\n") + "\n").expect("write config");
        let mut child = Command::new(edgepipe_bin())
            .args(["server", "--rpc-address", "127.0.0.1", "--rpc-port"])
            .arg(port.to_string())
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.with_extension("log")).expect("server log"))
            .spawn()
            .expect("spawn edgepipe server");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read port");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server did not start: {line:?}; see {}.log", dir.display()));
        Server {
            child,
            port,
            dir: dir.to_path_buf(),
            tls: None,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `sql` (over TLS when it serves TLS).
    ///
    /// # Panics
    /// When it fails.
    pub fn exec(&self, sql: &str) -> Option<node::client::Rows> {
        let addr = self.addr();
        let mut s = Session::open_with(&addr, "root", "root", self.tls.as_ref())
            .unwrap_or_else(|e| panic!("open a session to {addr}: {e}"));
        let r = s.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = s.close();
        r
    }

    /// Events pipe `pipe` has still to transfer (`SHOW PIPE`'s
    /// RemainingEventCount).
    pub fn remaining(&self, pipe: &str) -> u64 {
        self.exec(&format!("show pipe {pipe}"))
            .expect("show pipe rows")
            .rows[0]
            .1[7]
            .as_ref()
            .expect("remaining events")
            .to_string()
            .parse()
            .expect("a count")
    }

    /// Stops it (SIGTERM) and waits.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child, which has not been waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// A node's properties: the fsync policy (`wal_mode`), then the lines of
/// `EDGEPIPE_BENCH_CONFIG` (`key=value;key=value`), for experiments such
/// as `memtable_flush_points=250000`.
pub fn node_config(fsync: &str) -> Vec<String> {
    let mut c = vec![format!("wal_mode={fsync}")];
    if let Ok(extra) = std::env::var("EDGEPIPE_BENCH_CONFIG") {
        c.extend(extra.split(';').map(|l| l.trim().to_string()));
    }
    c
}

/// `CREATE PIPE name` on the edge towards `target` (`ip:port`), with extra
/// connector attributes (`'k'='v', ...`) from `EDGEPIPE_BENCH_CONNECTOR`
/// (e.g. a compressor, once connectors speak one).
pub fn create_pipe(edge: &Server, name: &str, target: &str) {
    let (ip, port) = target.rsplit_once(':').expect("ip:port");
    let extra = std::env::var("EDGEPIPE_BENCH_CONNECTOR")
        .map(|a| format!(", {a}"))
        .unwrap_or_default();
    // EDGEPIPE_BENCH_CONNECTOR may name the connector itself
    // ("'connector'='iotdb-thrift-async-connector'").
    let kind = if extra.contains("'connector'=") {
        ""
    } else {
        "'connector'='iotdb-thrift-connector', "
    };
    edge.exec(&format!(
        "create pipe {name} WITH CONNECTOR ({kind}'connector.ip'='{ip}', 'connector.port'='{port}'{extra})"
    ));
}

/// Runs `sql` on the node at `addr` in a fresh session.
///
/// # Panics
/// When it fails.
pub fn exec(addr: &str, sql: &str) -> Option<node::client::Rows> {
    let mut s = Session::open(addr, "root", "root").expect("open session");
    let r = s.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = s.close();
    r
}

/// A session that writes many tablets per call (`insertTablets`), as the
/// official clients' `insertTablets` does: each tablet becomes one record
/// of the node's change log, so the pipe sees them one by one.
pub struct TabletWriter {
    stream: TcpStream,
    session_id: i64,
    seq: i32,
}

impl TabletWriter {
    /// Connects and logs in as root.
    ///
    /// # Panics
    /// When the node refuses.
    pub fn open(addr: &str) -> TabletWriter {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(600)))
            .expect("timeout");
        let mut w = TabletWriter {
            stream,
            session_id: 0,
            seq: 0,
        };
        let req = TSOpenSessionReq {
            client_protocol: Some(2),
            zone_id: Some("+00:00".into()),
            username: Some("root".into()),
            password: Some("root".into()),
            configuration: Some(
                [("version".to_string(), "V_1_0".to_string())]
                    .into_iter()
                    .collect(),
            ),
        };
        let resp: TSOpenSessionResp = w.call("openSession", &req);
        assert_eq!(resp.status.code, 200, "login: {:?}", resp.status.message);
        w.session_id = resp.session_id.unwrap_or_default();
        w
    }

    fn call<A: thrift::protocol::TSerializable, R: thrift::protocol::TSerializable>(
        &mut self,
        name: &str,
        arg: &A,
    ) -> R {
        self.seq += 1;
        let frame = call(Proto::Binary, name, self.seq, 1, arg);
        self.stream.write_all(&frame).expect("send");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("reply length");
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).expect("reply");
        read_reply(&buf).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Writes `tablets` in one `insertTablets` call (acknowledged once
    /// durable under the node's fsync policy).
    ///
    /// # Panics
    /// When the node refuses them.
    pub fn insert_tablets(&mut self, tablets: &[Tablet]) {
        let mut req = TSInsertTabletsReq {
            session_id: Some(self.session_id),
            prefix_paths: Some(Vec::with_capacity(tablets.len())),
            measurements_list: Some(Vec::with_capacity(tablets.len())),
            values_list: Some(Vec::with_capacity(tablets.len())),
            timestamps_list: Some(Vec::with_capacity(tablets.len())),
            types_list: Some(Vec::with_capacity(tablets.len())),
            size_list: Some(Vec::with_capacity(tablets.len())),
            is_aligned: Some(false),
        };
        for t in tablets {
            let one = node::client::tablet_request(self.session_id, t);
            macro_rules! put {
                ($to:ident, $from:ident) => {
                    req.$to
                        .as_mut()
                        .expect("list")
                        .push(one.$from.expect("field"))
                };
            }
            put!(prefix_paths, prefix_path);
            put!(measurements_list, measurements);
            put!(values_list, values);
            put!(timestamps_list, timestamps);
            put!(types_list, types);
            put!(size_list, size);
        }
        let s: TSStatus = self.call("insertTablets", &req);
        assert_eq!(s.code, 200, "insertTablets: {:?}", s.message);
    }
}

/// `perf record` of one process, from now until [`Profile::stop`], when
/// `EDGEPIPE_BENCH_PERF` names a directory (the data goes to
/// `DIR/NAME.data`; read it with `perf report -i`).
pub struct Profile(Option<Child>);

impl Profile {
    /// Starts recording `pid` (DWARF call graphs, 499 Hz, the `cpu-clock`
    /// software event: this VM has no hardware counters), or nothing when
    /// `EDGEPIPE_BENCH_PERF` is unset.
    pub fn start(name: &str, pid: u32) -> Profile {
        let Some(dir) = std::env::var_os("EDGEPIPE_BENCH_PERF") else {
            return Profile(None);
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("perf dir");
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf,32768",
                "-p",
            ])
            .arg(pid.to_string())
            .arg("-o")
            .arg(dir.join(format!("{name}.data")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        // Let it attach before the phase starts.
        std::thread::sleep(Duration::from_millis(300));
        Profile(child)
    }

    /// Stops recording (SIGINT: perf writes its data and exits).
    pub fn stop(self) {
        if let Some(mut c) = self.0 {
            // SAFETY: kill(2) on our own child, which has not been waited for.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
            let _ = c.wait();
        }
    }
}
