//! Harness for edgepipe's end-to-end tests: starts real `edgepipe server`
//! processes on free loopback ports in temporary directories, stops them
//! gracefully (SIGTERM) or kills them (SIGKILL), and runs the official
//! IoTDB Python client from a pinned virtual environment.
//!
//! Every wait is bounded; every process started is stopped on drop.
#![deny(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The `edgepipe` binary built alongside these tests.
pub fn edgepipe_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/edgepipe
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("edgepipe");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A running `edgepipe server`.
pub struct NodeProc {
    child: Option<Child>,
    /// Its client RPC port on 127.0.0.1.
    pub port: u16,
    /// Its metrics endpoint's port, when its configuration turns it on
    /// (`dn_metric_reporter_list=PROMETHEUS`).
    pub metrics_port: Option<u16>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its stderr log file.
    pub log: PathBuf,
}

impl NodeProc {
    /// Starts a server on a free port with `data_dir`, and waits (up to
    /// 30 s) until it listens. `extra` are more `edgepipe server` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProc {
        NodeProc::start_on(data_dir, "127.0.0.1", extra)
    }

    /// Starts a server listening on `rpc_address` (e.g. `::`, for IPv6 and
    /// IPv4 at once); otherwise as [`NodeProc::start`]. [`NodeProc::addr`]
    /// still names 127.0.0.1.
    pub fn start_on(data_dir: &Path, rpc_address: &str, extra: &[&str]) -> NodeProc {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = data_dir.with_extension("log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = Command::new(edgepipe_bin());
        cmd.args(["server", "--rpc-address", rpc_address, "--data-dir"])
            .arg(data_dir);
        if !extra.contains(&"--rpc-port") {
            cmd.args(["--rpc-port", "0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn edgepipe server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let port = |addr: &str| addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            let mut metrics = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("edgepipe metrics listening on ") {
                    metrics = port(addr);
                }
                if let Some(addr) = line.strip_prefix("edgepipe server listening on ") {
                    let _ = tx.send(port(addr).map(|p| (p, metrics)));
                }
            }
        });
        let (port, metrics_port) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(p)) => p,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not start ({other:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        NodeProc {
            child: Some(child),
            port,
            metrics_port,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends SIGTERM and waits (up to 30 s) for a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = wait_timeout(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("server did not stop within 30 s after SIGTERM");
        });
        assert!(
            status.success(),
            "server exited with {status}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The Python interpreter of the pinned virtual environment: `EDGEPIPE_PYTHON`
/// if set, else `.venv/bin/python` at the workspace root, created (with
/// `tests/python/requirements.txt`) when missing.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGEPIPE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv");
    let py = venv.join("bin").join("python");
    let lock_path = workspace().join("target").join("venv.lock");
    let _ = std::fs::create_dir_all(lock_path.parent().expect("target"));
    let lock = std::fs::File::create(&lock_path).expect("venv lock");
    lock.lock().expect("lock the venv");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import iotdb, numpy, pandas, prometheus_client"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let st = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "cannot create {}", venv.display());
        let st = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(workspace().join("tests/python/requirements.txt"))
            .status()
            .expect("pip install");
        assert!(
            st.success(),
            "pip install -r tests/python/requirements.txt failed"
        );
    }
    py
}

/// Runs `tests/python/SCRIPT args` with a time limit; returns its stdout,
/// panicking with its stderr when it fails.
pub fn run_python(script: &str, args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(python())
        .arg(workspace().join("tests/python").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let status = wait_timeout(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (o, e) = (
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    );
    match status {
        Some(s) if s.success() => o,
        Some(s) => panic!("python {script} {args:?} failed ({s}):\n{e}\n{o}"),
        None => panic!("python {script} {args:?} did not finish within {limit:?}:\n{e}"),
    }
}

/// A free loopback port (bound and released), below the kernel's
/// ephemeral range and not handed out before in this process (see
/// `low_listener`).
pub fn free_port() -> u16 {
    low_listener().local_addr().expect("addr").port()
}

/// A loopback listener on a port below the kernel's ephemeral range that
/// this process has not handed out before: a node started with port 0
/// (the kernel's choice) cannot take it while the test holds it closed,
/// nor can a test running beside this one. A port from the ephemeral
/// range once went to another node between `free_port` and its use: a
/// pipe meant to find nothing there shipped its data instead.
fn low_listener() -> std::net::TcpListener {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(low > 11000, "ephemeral ports start at {low}");
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    let span = u64::from(low - 10000);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..span {
        let port = 10000 + ((seed.wrapping_mul(2654435761) + i * 7919) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            given.push(port);
            return l;
        }
    }
    panic!("no free loopback port below {low}");
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns
/// whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs SQL on a node as root; panics on failure.
pub fn sql(addr: &str, statement: &str) -> Option<node::client::Rows> {
    let mut s = node::client::Session::open(addr, "root", "root")
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let r = s
        .execute(statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let _ = s.close();
    r
}

/// The full result of `select ** from root` (rows and column names), or
/// `None` if the node cannot be queried right now.
pub fn everything(addr: &str) -> Option<node::client::Rows> {
    let mut s = node::client::Session::open(addr, "root", "root").ok()?;
    let r = s.execute("select ** from root").ok()?;
    let _ = s.close();
    r
}

/// A TCP proxy on a loopback port in front of `target`, whose connections
/// can be cut on demand, and which delays every chunk it forwards. It can
/// also refuse connections for a while, as a link that is down does
/// ([`Proxy::refuse`]).
///
/// It follows the framed requests (client to target) and replies (back)
/// of each connection, so it can tell whether a cut hit a request in
/// flight: read from the client, its reply not yet wholly passed back.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    /// The listening socket; `None` while it refuses connections.
    listener: std::sync::Arc<std::sync::Mutex<Option<std::net::TcpListener>>>,
    cut: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<ProxyConn>>>>,
    hits: std::sync::Mutex<Vec<usize>>,
}

/// One proxied connection's progress. Each forwarder holds the lock while
/// it checks for a cut and forwards a chunk, so a cut sees the final state:
/// nothing is forwarded on the connection after it.
struct ProxyConn {
    generation: u64,
    state: std::sync::Mutex<ProxyConnState>,
}

#[derive(Default)]
struct ProxyConnState {
    cut: bool,
    /// Requests begun by the client (read by the proxy).
    requests: u64,
    /// Replies wholly passed back to the client.
    replies: u64,
    /// Length of the last request begun.
    request_len: usize,
    up: Frames,
    down: Frames,
}

/// Follows the 4-byte length-prefixed frames of one direction.
#[derive(Default)]
struct Frames {
    head: Vec<u8>,
    /// Bytes left of the current frame's body.
    left: usize,
}

impl Frames {
    /// Feeds `bytes`; calls `begun(len)` at each frame start and returns
    /// the frames completed.
    fn feed(&mut self, mut bytes: &[u8], mut begun: impl FnMut(usize)) -> u64 {
        let mut done = 0;
        while !bytes.is_empty() {
            if self.left == 0 {
                let take = (4 - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.head.len() == 4 {
                    let len = u32::from_be_bytes(self.head[..].try_into().expect("4")) as usize;
                    self.head.clear();
                    begun(len);
                    if len == 0 {
                        done += 1;
                    }
                    self.left = len;
                }
            } else {
                let take = self.left.min(bytes.len());
                self.left -= take;
                bytes = &bytes[take..];
                if self.left == 0 {
                    done += 1;
                }
            }
        }
        done
    }
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:port` to `target`, sleeping `delay`
    /// before each forwarded chunk.
    pub fn start(target: String, delay: Duration) -> Proxy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        Proxy::serve(l, target, delay)
    }

    /// Starts a proxy as [`Proxy::start`] does (no delay), on a loopback
    /// port below the kernel's ephemeral range, so that no other socket
    /// takes the port while [`Proxy::refuse`] has it closed.
    pub fn start_refusable(target: String) -> Proxy {
        Proxy::serve(low_listener(), target, Duration::ZERO)
    }

    fn serve(l: std::net::TcpListener, target: String, delay: Duration) -> Proxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let listener = Arc::new(Mutex::new(Some(l)));
        let cut = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<Arc<ProxyConn>>>> = Arc::default();
        let (cut2, stop2, conns2, listener2) =
            (cut.clone(), stop.clone(), conns.clone(), listener.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let accepted = match listener2.lock().expect("proxy listener").as_ref() {
                    Some(l) => l.accept().ok(),
                    None => None,
                };
                let Some((client, _)) = accepted else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let conn = Arc::new(ProxyConn {
                    generation: cut2.load(Ordering::SeqCst),
                    state: Mutex::default(),
                });
                conns2.lock().expect("proxy conns").push(conn.clone());
                for (up, mut from, mut to) in [
                    (
                        true,
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (false, server, client),
                ] {
                    let (cut3, stop3, conn) = (cut2.clone(), stop2.clone(), conn.clone());
                    from.set_read_timeout(Some(Duration::from_millis(20)))
                        .expect("timeout");
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let close = |from: &std::net::TcpStream, to: &std::net::TcpStream| {
                            let _ = from.shutdown(std::net::Shutdown::Both);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        };
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            if stop3.load(Ordering::Relaxed) {
                                close(&from, &to);
                                return;
                            }
                            let n = match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = to.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                                Ok(n) => n,
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) =>
                                {
                                    0
                                }
                                Err(_) => {
                                    let _ = to.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                            };
                            if up && n > 0 {
                                let mut st = conn.state.lock().expect("proxy conn");
                                let st = &mut *st;
                                let (mut requests, mut request_len) = (st.requests, st.request_len);
                                st.up.feed(&buf[..n], |len| {
                                    requests += 1;
                                    request_len = len;
                                });
                                (st.requests, st.request_len) = (requests, request_len);
                            }
                            if n > 0 {
                                std::thread::sleep(delay);
                            }
                            let mut st = conn.state.lock().expect("proxy conn");
                            if st.cut || cut3.load(Ordering::SeqCst) != conn.generation {
                                st.cut = true;
                                close(&from, &to);
                                return;
                            }
                            if n == 0 {
                                continue;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                            if !up {
                                let st = &mut *st;
                                st.replies += st.down.feed(&buf[..n], |_| {});
                            }
                        }
                    });
                }
            }
        });
        Proxy {
            port,
            listener,
            cut,
            stop,
            conns,
            hits: std::sync::Mutex::default(),
        }
    }

    /// `true`: the link goes down. The proxy closes its port, so every
    /// connection attempt is refused (`Connection refused`, as from a host
    /// whose service is down), and cuts the open connections. `false`: the
    /// link returns; the port listens again (waiting up to 10 s for it to
    /// bind).
    ///
    /// # Panics
    /// When the port cannot be bound again within 10 s.
    pub fn refuse(&self, refuse: bool) {
        let mut l = self.listener.lock().expect("proxy listener");
        if refuse {
            *l = None;
            drop(l);
            self.cut();
            return;
        }
        if l.is_some() {
            return;
        }
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(n) => {
                    n.set_nonblocking(true).expect("nonblocking");
                    *l = Some(n);
                    return;
                }
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the proxy cannot listen on port {} again: {e}", self.port),
            }
        }
    }

    /// Cuts every open connection (new ones are accepted). Nothing more is
    /// forwarded on them; a request in flight on one is recorded (see
    /// [`Proxy::cuts_in_flight`]).
    pub fn cut(&self) {
        self.cut.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let conns = std::mem::take(&mut *self.conns.lock().expect("proxy conns"));
        for c in conns {
            let mut st = c.state.lock().expect("proxy conn");
            if !st.cut && st.requests > st.replies {
                self.hits.lock().expect("hits").push(st.request_len);
            }
            st.cut = true;
        }
    }

    /// The length of each request a cut caught in flight (read from the
    /// client, its reply not wholly passed back).
    pub fn cuts_in_flight(&self) -> Vec<usize> {
        self.hits.lock().expect("hits").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sends `openSession` on `stream` (a connection of the caller's making,
/// e.g. from [`connect_from`]) and returns the status code and message.
///
/// # Panics
/// When the node does not answer with a reply frame.
pub fn open_session_on(
    stream: &mut std::net::TcpStream,
    user: &str,
    password: &str,
) -> (i32, String) {
    use protocol::message::{call, read_reply, Proto};
    use protocol::rpc::{TSOpenSessionReq, TSOpenSessionResp};
    use std::io::{Read, Write};
    let req = TSOpenSessionReq {
        client_protocol: Some(2),
        zone_id: Some("+00:00".into()),
        username: Some(user.into()),
        password: Some(password.into()),
        configuration: None,
    };
    stream
        .write_all(&call(Proto::Binary, "openSession", 0, 1, &req))
        .expect("send openSession");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("openSession reply");
    let mut buf = vec![0u8; i32::from_be_bytes(len).clamp(0, 1 << 20) as usize];
    stream.read_exact(&mut buf).expect("openSession reply");
    let resp: TSOpenSessionResp = read_reply(&buf).expect("an openSession reply");
    (resp.status.code, resp.status.message.unwrap_or_default())
}

/// Sends one `pipeTransfer` request (type and body as given) on `stream`
/// and returns the status code and message of the reply.
///
/// # Panics
/// When the node does not answer with a reply frame.
pub fn pipe_transfer_on(
    stream: &mut std::net::TcpStream,
    request_type: i16,
    body: Vec<u8>,
) -> (i32, String) {
    use protocol::message::{call, read_reply, Proto};
    use protocol::rpc::{TPipeTransferReq, TPipeTransferResp};
    use std::io::{Read, Write};
    let req = TPipeTransferReq {
        version: Some(protocol::pipe::VERSION),
        type_: Some(request_type),
        body: Some(body),
    };
    stream
        .write_all(&call(Proto::Binary, "pipeTransfer", 0, -1, &req))
        .expect("send pipeTransfer");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("pipeTransfer reply");
    let mut buf = vec![0u8; i32::from_be_bytes(len).clamp(0, 1 << 20) as usize];
    stream.read_exact(&mut buf).expect("pipeTransfer reply");
    let resp: TPipeTransferResp = read_reply(&buf).expect("a pipeTransfer reply");
    (resp.status.code, resp.status.message.unwrap_or_default())
}

impl NodeProc {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A `/proc/PID/status` figure of the server in KiB (`VmRSS`, `VmHWM`,
    /// `RssAnon`), or 0 when it cannot be read.
    pub fn status_kib(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// Writes `lines` to a properties file beside `data_dir` and returns the
/// `--config` flag pair for [`NodeProc::start`].
pub fn config_file(data_dir: &Path, lines: &[&str]) -> [String; 2] {
    let p = data_dir.with_extension("properties");
    std::fs::write(&p, lines.join("\n") + "\n").expect("write config");
    ["--config".to_string(), p.display().to_string()]
}

/// A TCP connection to `to` from the local address `from` (e.g.
/// 127.0.0.2: all of 127.0.0.0/8 routes to the loopback interface), with
/// a 10 s read timeout.
pub fn connect_from(from: std::net::IpAddr, to: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let s = rt.block_on(async {
        let sock = if from.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .expect("socket");
        sock.bind(std::net::SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        let s = sock
            .connect(to)
            .await
            .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
        s.into_std().expect("into std")
    });
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one reply frame's payload from `s`.
pub fn read_frame(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a reply frame");
    let n = i32::from_be_bytes(len);
    assert!((1..=64 << 20).contains(&n), "reply frame of {n} bytes");
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf).expect("the reply's bytes");
    buf
}

impl NodeProc {
    /// Starts a server like [`NodeProc::start`], but returns its log instead
    /// of panicking when it does not start: it exits (a refused data
    /// directory), or does not listen within 30 s.
    pub fn try_start(data_dir: &Path, extra: &[&str]) -> Result<NodeProc, String> {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = data_dir.with_extension("log");
        let _ = std::fs::remove_file(&log);
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(edgepipe_bin());
        cmd.args(["server", "--rpc-address", "127.0.0.1", "--data-dir"])
            .arg(data_dir);
        if !extra.contains(&"--rpc-port") {
            cmd.args(["--rpc-port", "0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn edgepipe server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("edgepipe server listening on ") {
                    let _ = tx.send(addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => Ok(NodeProc {
                child: Some(child),
                port,
                metrics_port: None,
                data_dir: data_dir.to_path_buf(),
                log,
            }),
            _ => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!(
                    "server did not start ({status:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        }
    }
}

/// Writes a configuration file of `key=value` lines; returns its path, for
/// `edgepipe server --config`.
pub fn write_config(path: &Path, settings: &[(&str, &str)]) -> PathBuf {
    let text: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(path, text).expect("write config");
    path.to_path_buf()
}

/// Whether tests that need root must run (CI sets
/// `EDGEPIPE_REQUIRE_ROOT_TESTS=1`; `CI=1` or `CI=true` too): then a test
/// that cannot mount fails instead of saying it did not run.
pub fn root_tests_required() -> bool {
    std::env::var("EDGEPIPE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "1" || v == "true")
}

/// A small tmpfs mounted for one test (a real full disk), unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on a fresh directory. Without the right
    /// to mount (not root) it prints that the test did not run and returns
    /// `None`, unless [`root_tests_required`], where it panics.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        let msg = format!(
            "could not mount a {bytes}-byte tmpfs on {} ({why}): this test needs root",
            dir.path().display()
        );
        if root_tests_required() {
            panic!("{msg}, and EDGEPIPE_REQUIRE_ROOT_TESTS=1 (or CI=1) says it must run");
        }
        eprintln!("NOT RUN: {msg}");
        None
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Bytes free on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statvfs writes into the zeroed struct we own and reads the
    // NUL-terminated path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return 0;
        }
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

/// Bytes the files directly in `dir` take on disk (allocated blocks).
pub fn disk_use(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}
