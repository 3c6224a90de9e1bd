//! The yardstick: NATS JetStream (Debian's `nats-server`, 2.9) doing the
//! same job as a pipe — an "edge" server holding a file-storage stream, a
//! "cloud" server joined to it by a leafnode link, and on the cloud a
//! mirror of the stream created after the data is in.
//!
//! No client crate: the NATS text protocol (`CONNECT`, `PUB`, `SUB`, `MSG`,
//! `PING`/`PONG`) and the JetStream API (JSON requests on `$JS.API.>`
//! subjects) are small, and this is all a bench needs. nats-server 2.9 has
//! no fsync option in its configuration (`sync_interval` came with 2.10):
//! its file store syncs on a two-minute timer, so it runs "fsync off" in
//! any bench shorter than that.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server` process.
pub struct NatsServer {
    child: Child,
    /// Its client port.
    pub port: u16,
    /// Its JetStream store directory.
    pub store: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server` with JetStream in domain `domain`, its store in
    /// `dir`, and `extra` appended to its configuration (leafnodes). Its
    /// log goes to `dir.log`. Returns once it accepts clients.
    ///
    /// # Panics
    /// When `nats-server` is not installed (`apt-get install
    /// nats-server`) or does not start.
    pub fn start(dir: &Path, name: &str, domain: &str, extra: &str) -> NatsServer {
        std::fs::create_dir_all(dir).expect("nats dir");
        let port = crate::sys::free_port();
        let store = dir.join("jetstream");
        let conf = dir.with_extension("conf");
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 0\n\
                 jetstream {{\n  store_dir: \"{}\"\n  domain: {domain}\n  max_file_store: 64G\n}}\n{extra}\n",
                store.display()
            ),
        )
        .expect("nats config");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.with_extension("log")).expect("nats log"))
            .spawn()
            .expect("nats-server not found: apt-get install -y nats-server");
        let s = NatsServer { child, port, store };
        let up = crate::sys::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            TcpStream::connect(s.addr()).is_ok()
        });
        assert!(up, "nats-server did not start; see {}.log", dir.display());
        s
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `nats-server --version` line.
    pub fn version() -> String {
        Command::new("nats-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "nats-server not installed".into())
    }

    fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child, which has not been waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// A client connection speaking the NATS text protocol.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
    inbox: String,
    next: u64,
}

/// A message received.
#[derive(Debug)]
pub struct Msg {
    /// Its subject.
    pub subject: String,
    /// Its payload (headers dropped).
    pub payload: Vec<u8>,
}

fn bad(m: impl Into<String>) -> std::io::Error {
    std::io::Error::other(m.into())
}

impl Conn {
    /// Connects, sends `CONNECT`, and subscribes to its own reply inbox.
    ///
    /// # Errors
    /// Connection failures or a refusal.
    pub fn connect(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Conn {
            r: BufReader::with_capacity(1 << 20, s.try_clone()?),
            w: BufWriter::with_capacity(1 << 20, s),
            inbox: format!("_INBOX.bench{}", fastrand::u64(..)),
            next: 0,
        };
        let mut info = String::new();
        c.r.read_line(&mut info)?;
        if !info.starts_with("INFO ") {
            return Err(bad(format!("not a NATS server: {info:?}")));
        }
        write!(
            c.w,
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"name\":\"edgepipe-bench\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}}\r\nSUB {}.* 1\r\nPING\r\n",
            c.inbox
        )?;
        c.w.flush()?;
        loop {
            let line = c.line()?;
            match line.as_str() {
                "PONG" => return Ok(c),
                l if l.starts_with("-ERR") => return Err(bad(l.to_string())),
                _ => {}
            }
        }
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(bad("connection closed by the server"));
        }
        Ok(l.trim_end().to_string())
    }

    /// Queues a `PUB` (sent at the next flush); `reply` asks for an answer
    /// (a JetStream publish acknowledgement, an API response).
    ///
    /// # Errors
    /// Write failures.
    pub fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> std::io::Result<()> {
        match reply {
            Some(r) => write!(self.w, "PUB {subject} {r} {}\r\n", payload.len())?,
            None => write!(self.w, "PUB {subject} {}\r\n", payload.len())?,
        }
        self.w.write_all(payload)?;
        self.w.write_all(b"\r\n")
    }

    /// A fresh reply subject under this connection's inbox.
    pub fn reply_subject(&mut self) -> String {
        self.next += 1;
        format!("{}.{}", self.inbox, self.next)
    }

    /// Sends what is queued.
    ///
    /// # Errors
    /// Write failures.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }

    /// The next message, answering the server's `PING`s on the way.
    ///
    /// # Errors
    /// Read failures, the timeout (30 s), `-ERR` from the server.
    pub fn next_msg(&mut self) -> std::io::Result<Msg> {
        loop {
            let line = self.line()?;
            let mut f = line.split_ascii_whitespace();
            match f.next() {
                Some("PING") => {
                    self.w.write_all(b"PONG\r\n")?;
                    self.w.flush()?;
                }
                Some("MSG") => {
                    // MSG <subject> <sid> [reply] <bytes>
                    let parts: Vec<&str> = f.collect();
                    let subject = parts.first().ok_or_else(|| bad(&line))?.to_string();
                    let n: usize = parts
                        .last()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| bad(&line))?;
                    let payload = self.payload(n)?;
                    return Ok(Msg { subject, payload });
                }
                Some("HMSG") => {
                    // HMSG <subject> <sid> [reply] <header bytes> <total bytes>
                    let parts: Vec<&str> = f.collect();
                    let subject = parts.first().ok_or_else(|| bad(&line))?.to_string();
                    let num = |i: usize| -> std::io::Result<usize> {
                        parts
                            .get(parts.len().wrapping_sub(i))
                            .and_then(|n| n.parse().ok())
                            .ok_or_else(|| bad(&line))
                    };
                    let (h, total) = (num(2)?, num(1)?);
                    let all = self.payload(total)?;
                    let head = String::from_utf8_lossy(&all[..h.min(all.len())]).to_string();
                    // A no-responders status: nobody serves the subject.
                    if head.contains(" 503") {
                        return Err(bad(format!("no responders on {subject}")));
                    }
                    return Ok(Msg {
                        subject,
                        payload: all[h.min(all.len())..].to_vec(),
                    });
                }
                Some(l) if l.starts_with("-ERR") => return Err(bad(line)),
                _ => {} // +OK, PONG, INFO updates
            }
        }
    }

    fn payload(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut p = vec![0u8; n + 2];
        self.r.read_exact(&mut p)?;
        p.truncate(n);
        Ok(p)
    }

    /// A request and its answer (JSON for the JetStream API).
    ///
    /// # Errors
    /// Transport failures, no answer within 30 s, nobody serving `subject`.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> std::io::Result<serde_json::Value> {
        let reply = self.reply_subject();
        self.publish(subject, Some(&reply), payload)?;
        self.flush()?;
        loop {
            let m = self.next_msg()?;
            if m.subject == reply {
                return serde_json::from_slice(&m.payload)
                    .map_err(|e| bad(format!("{subject}: answer is not JSON: {e}")));
            }
        }
    }

    /// A JetStream API call (`api` is `$JS.API` or a domain's
    /// `$JS.<domain>.API`); an error answer becomes `Err`.
    ///
    /// # Errors
    /// As [`Conn::request`], and the API's `error`.
    pub fn js(
        &mut self,
        api: &str,
        call: &str,
        body: serde_json::Value,
    ) -> std::io::Result<serde_json::Value> {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let v = self.request(&format!("{api}.{call}"), &body)?;
        if let Some(e) = v.get("error") {
            return Err(bad(format!("{call}: {e}")));
        }
        Ok(v)
    }

    /// Publishes every message of `msgs` to JetStream subject `subject`,
    /// at most `window` unacknowledged at a time; returns when all are
    /// acknowledged (stored).
    ///
    /// # Errors
    /// Transport failures or a refused publish.
    pub fn js_publish_all(
        &mut self,
        subject: &str,
        msgs: impl Iterator<Item = Vec<u8>>,
        window: usize,
    ) -> std::io::Result<u64> {
        let mut outstanding = 0usize;
        let mut sent = 0u64;
        let ack = |c: &mut Conn| -> std::io::Result<()> {
            let m = c.next_msg()?;
            if !m.subject.starts_with(&c.inbox) {
                return Ok(());
            }
            if m.payload.windows(7).any(|w| w == b"\"error\"") {
                return Err(bad(format!(
                    "publish refused: {}",
                    String::from_utf8_lossy(&m.payload)
                )));
            }
            Ok(())
        };
        for m in msgs {
            let reply = self.reply_subject();
            self.publish(subject, Some(&reply), &m)?;
            outstanding += 1;
            sent += 1;
            if outstanding >= window {
                self.flush()?;
                while outstanding > window / 2 {
                    ack(self)?;
                    outstanding -= 1;
                }
            }
        }
        self.flush()?;
        while outstanding > 0 {
            ack(self)?;
            outstanding -= 1;
        }
        Ok(sent)
    }
}

/// An edge and a cloud `nats-server`, the edge connected to the cloud as a
/// leafnode (the edge dials out, as an edge box does), JetStream domains
/// `edge` and `cloud`.
pub struct NatsPair {
    /// The edge server (holds the stream).
    pub edge: NatsServer,
    /// The cloud server (holds the mirror).
    pub cloud: NatsServer,
    /// The directory both live under.
    pub dir: std::path::PathBuf,
}

impl NatsPair {
    /// Starts both under `dir` and waits until the cloud reaches the edge's
    /// JetStream API through the link.
    ///
    /// # Panics
    /// When they do not start or do not link within 20 s.
    pub fn start(dir: &Path) -> NatsPair {
        let leaf = crate::sys::free_port();
        let cloud = NatsServer::start(
            &dir.join("cloud"),
            "cloud",
            "cloud",
            &format!("leafnodes {{\n  listen: 127.0.0.1:{leaf}\n}}"),
        );
        let edge = NatsServer::start(
            &dir.join("edge"),
            "edge",
            "edge",
            &format!(
                "leafnodes {{\n  remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf}\" }} ]\n}}"
            ),
        );
        let mut c = Conn::connect(&cloud.addr()).expect("connect to the cloud nats-server");
        let linked =
            crate::sys::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
                c.js("$JS.edge.API", "INFO", serde_json::Value::Null)
                    .is_ok()
            });
        assert!(
            linked,
            "the leafnode link did not come up; see {}",
            dir.display()
        );
        NatsPair {
            edge,
            cloud,
            dir: dir.to_path_buf(),
        }
    }
}

/// The figures of one yardstick run.
#[derive(Debug, Clone, Copy)]
pub struct MirrorRun {
    /// Messages written to the edge stream per second (publish acknowledged).
    pub publish_per_sec: f64,
    /// Seconds from creating the mirror until it holds every message.
    pub catch_up_secs: f64,
    /// CPU seconds the cloud server spent during the catch-up.
    pub cloud_cpu: f64,
    /// CPU seconds the edge server spent during the catch-up.
    pub edge_cpu: f64,
    /// Bytes of the edge stream (`state.bytes`).
    pub stream_bytes: u64,
}

/// Publishes `msgs` (`count` of them) to a file-storage stream `S` on the
/// edge, then creates mirror `M` on the cloud and times its catch-up.
///
/// # Panics
/// On any failure of the servers.
pub fn mirror_catch_up(
    pair: &NatsPair,
    count: u64,
    msgs: impl Iterator<Item = Vec<u8>>,
) -> MirrorRun {
    let mut e = Conn::connect(&pair.edge.addr()).expect("connect edge");
    e.js(
        "$JS.API",
        "STREAM.CREATE.S",
        serde_json::json!({
            "name": "S", "subjects": ["iot.>"], "storage": "file", "retention": "limits",
            "max_msgs": -1, "max_bytes": -1, "max_age": 0, "max_msg_size": -1,
            "discard": "old", "num_replicas": 1, "duplicate_window": 0
        }),
    )
    .expect("create stream S");
    let t = Instant::now();
    let sent = e.js_publish_all("iot.d0.s0", msgs, 256).expect("publish");
    assert_eq!(sent, count);
    let publish_per_sec = sent as f64 / t.elapsed().as_secs_f64();
    let info = e
        .js("$JS.API", "STREAM.INFO.S", serde_json::Value::Null)
        .expect("stream info");
    assert_eq!(info["state"]["messages"].as_u64(), Some(count), "{info}");
    let stream_bytes = info["state"]["bytes"].as_u64().unwrap_or(0);
    let mut c = Conn::connect(&pair.cloud.addr()).expect("connect cloud");
    crate::sys::warm_page_cache(&pair.dir);
    let (cpu_c, cpu_e) = (
        crate::sys::cpu_secs(pair.cloud.pid()),
        crate::sys::cpu_secs(pair.edge.pid()),
    );
    let t = Instant::now();
    c.js(
        "$JS.API",
        "STREAM.CREATE.M",
        serde_json::json!({
            "name": "M", "storage": "file", "retention": "limits", "max_msgs": -1,
            "max_bytes": -1, "max_age": 0, "max_msg_size": -1, "discard": "old", "num_replicas": 1,
            "mirror": { "name": "S", "external": { "api": "$JS.edge.API", "deliver": "" } }
        }),
    )
    .expect("create mirror M");
    let done = crate::sys::wait_until(Duration::from_secs(1800), Duration::from_millis(10), || {
        c.js("$JS.API", "STREAM.INFO.M", serde_json::Value::Null)
            .ok()
            .and_then(|v| v["state"]["messages"].as_u64())
            == Some(count)
    });
    let catch_up_secs = t.elapsed().as_secs_f64();
    assert!(done, "the mirror did not catch up");
    MirrorRun {
        publish_per_sec,
        catch_up_secs,
        cloud_cpu: crate::sys::cpu_secs(pair.cloud.pid()) - cpu_c,
        edge_cpu: crate::sys::cpu_secs(pair.edge.pid()) - cpu_e,
        stream_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A scripted peer speaking the server's side of the text protocol:
    /// the client's framing of PUB, its answers to PING and its parsing
    /// of MSG and HMSG are checked byte for byte.
    #[test]
    fn speaks_the_text_protocol() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            w.write_all(b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n")
                .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("CONNECT {"), "{line}");
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(
                line.starts_with("SUB _INBOX.bench") && line.ends_with(".* 1\r\n"),
                "{line}"
            );
            let inbox = line[4..line.find(".* ").unwrap()].to_string();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "PING\r\n");
            w.write_all(b"+OK\r\nPONG\r\n").unwrap();
            // A request: PUB subject reply len, payload.
            line.clear();
            r.read_line(&mut line).unwrap();
            let reply = format!("{inbox}.1");
            assert_eq!(line, format!("PUB $JS.API.INFO {reply} 0\r\n"));
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "\r\n");
            // A PING first (must be answered), an unrelated message, then
            // the answer with headers.
            w.write_all(b"PING\r\nMSG other 1 3\r\nabc\r\n").unwrap();
            let body = b"{\"memory\":0}";
            let head = b"NATS/1.0\r\n\r\n";
            write!(
                w,
                "HMSG {reply} 1 {} {}\r\n",
                head.len(),
                head.len() + body.len()
            )
            .unwrap();
            w.write_all(head).unwrap();
            w.write_all(body).unwrap();
            w.write_all(b"\r\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "PONG\r\n");
            // An API error becomes Err.
            line.clear();
            r.read_line(&mut line).unwrap();
            let reply = format!("{inbox}.2");
            assert!(
                line.starts_with(&format!("PUB $JS.API.STREAM.INFO.S {reply} ")),
                "{line}"
            );
            line.clear();
            r.read_line(&mut line).unwrap();
            let e = b"{\"error\":{\"code\":404,\"description\":\"stream not found\"}}";
            write!(w, "MSG {reply} 1 {}\r\n", e.len()).unwrap();
            w.write_all(e).unwrap();
            w.write_all(b"\r\n").unwrap();
        });
        let mut c = Conn::connect(&addr).unwrap();
        let v = c.js("$JS.API", "INFO", serde_json::Value::Null).unwrap();
        assert_eq!(v["memory"], 0);
        let e = c
            .js("$JS.API", "STREAM.INFO.S", serde_json::json!({}))
            .unwrap_err();
        assert!(e.to_string().contains("stream not found"), "{e}");
        peer.join().unwrap();
    }
}
