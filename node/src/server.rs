//! The TCP side of the client RPC: framed thrift over tokio, one task per
//! connection, a connection limit, graceful shutdown, and bounds on what a
//! peer can make the node hold before it logs in (DESIGN invariant 11).
//!
//! - **Buffers grow as bytes arrive.** A frame's buffer starts at 64 KiB
//!   ([`SMALL_FRAME`]) and doubles as the bytes come, never to the claimed
//!   length up front. Buffer bytes beyond each connection's first 64 KiB
//!   come from one budget shared by all connections
//!   (`rpc_max_frame_bytes_in_flight`); a connection short of budget waits
//!   for it within its frame's deadline. A buffer is kept for the next frame
//!   while frames follow each other (a pipe's batches are received without
//!   regrowing) and given back after [`RELEASE_IDLE_BUFFER`] without one.
//! - **Timeouts** (`dn_connection_timeout_ms`, default 60 s): a connection
//!   that has not logged in is closed after that long without a request; a
//!   frame must arrive within the timeout plus one second per
//!   [`MIN_FRAME_RATE`] bytes from its first byte (a sender of one byte a
//!   second is cut after about the timeout, while a 16 MiB batch over a
//!   1 Mbit/s link still arrives); a reply must be taken within the same
//!   allowance.
//! - **The connection limit** (`rpc_max_concurrent_client_num`): at the
//!   limit, a new connection displaces the one that has waited longest
//!   without logging in, an idle one first, else the oldest unfinished
//!   frame. Logged-in connections and requests being handled are never
//!   displaced; when only those remain, new connections wait.
//! - A frame whose length is not positive or exceeds `thrift_max_frame_size`,
//!   or whose payload is not thrift, closes that connection with a logged
//!   reason; other connections are untouched.
//!
//! # TLS
//! With `enable_thrift_ssl=true` both ports serve TLS only ([`Tls`], the
//! certificate and key of `key_store_path`). The handshake runs in the
//! connection's task after it was admitted, so everything above holds over
//! TLS too: it counts against the connection limit (and, as a connection
//! receiving a frame, may be displaced there), and it must finish within
//! the connection timeout, or the connection is closed (a client that
//! stalls mid-handshake is cut). A client that does not start with a TLS
//! handshake (a plaintext IoTDB client) is closed at once with a log line
//! saying so; on a plaintext port, a TLS handshake where the first frame
//! should be is closed the same way, so neither side waits for a frame
//! that never comes. Before login a TLS connection holds rustls' buffers
//! (tens of KiB) besides the frame buffer.
//!
//! # The pipe server
//! [`PipeServer`] is seed 000's `START PIPESERVER` / `STOP PIPESERVER`: a
//! second listener on `pipe_server_port` (default 6670) serving the very
//! same [`Service`] with the same limits, where legacy and 1.2 senders (and
//! the session calls a legacy sender makes) are received. There
//! `ip_white_list` is checked when a connection is accepted: a refused
//! address gets a log line naming it, its first request (up to 4 KiB, read
//! within the connection timeout, nothing decoded but the method name) is
//! answered with the 1108 refusal so the sender learns why, and the
//! connection is closed; it is never served. `STOP PIPESERVER`
//! is refused (328, the seed's message) while a sender's pipe runs into
//! it, and otherwise closes the port and its connections. Whether it runs
//! is kept in `<data_dir>/system/pipe_server` and restored when the node
//! starts, as IoTDB 0.14's receiver restored it from its sync directory.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::config::NodeConfig;
use crate::service::{Connection, Durable, Handled, Service};

/// Bytes a frame may be received with before it draws on the shared
/// budget: every request but large inserts and pipe batches fits, so a
/// client's queries never wait for the budget.
pub const SMALL_FRAME: usize = 64 << 10;
/// The slowest average rate (bytes per second) a frame or reply may move at
/// once the connection timeout has passed.
pub const MIN_FRAME_RATE: u64 = 16 << 10;
/// How long a connection keeps a frame buffer larger than [`SMALL_FRAME`]
/// while no next frame starts.
pub const RELEASE_IDLE_BUFFER: Duration = Duration::from_millis(200);
/// How long the accept loop waits for a displaced connection to close
/// before displacing another.
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// What the server allows a peer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frame accepted (`thrift_max_frame_size`).
    pub max_frame: usize,
    /// Connections served at once (`rpc_max_concurrent_client_num`).
    pub max_connections: usize,
    /// The connection timeout (`dn_connection_timeout_ms`), shared by the
    /// clones of these limits and changeable while they serve (`LOAD
    /// CONFIGURATION`).
    pub timeout: Timeout,
    /// Bytes of frames being received at once, beyond each connection's
    /// first [`SMALL_FRAME`] (`rpc_max_frame_bytes_in_flight`).
    pub max_frame_bytes_in_flight: usize,
}

impl Limits {
    /// The limits a node's configuration sets.
    pub fn from_config(c: &NodeConfig) -> Limits {
        Limits {
            max_frame: c.max_frame_size,
            max_connections: c.max_connections,
            timeout: Timeout::new(c.connection_timeout),
            max_frame_bytes_in_flight: c.max_frame_bytes_in_flight,
        }
    }

    /// How long `bytes` may take to move: the timeout plus one second per
    /// [`MIN_FRAME_RATE`] bytes.
    fn allowance(&self, bytes: usize) -> Duration {
        self.timeout.get() + Duration::from_secs_f64(bytes as f64 / MIN_FRAME_RATE as f64)
    }
}

/// A duration the server reads at each use, which `LOAD CONFIGURATION`
/// replaces for every connection (clones share it).
#[derive(Debug, Clone)]
pub struct Timeout(Arc<AtomicU64>);

impl Timeout {
    /// A timeout of `d` (at least 1 ms).
    pub fn new(d: Duration) -> Timeout {
        Timeout(Arc::new(AtomicU64::new((d.as_millis() as u64).max(1))))
    }

    /// The timeout now.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    /// Replaces it, for every connection from its next wait on.
    pub fn set(&self, d: Duration) {
        self.0
            .store((d.as_millis() as u64).max(1), Ordering::Relaxed);
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&NodeConfig::default())
    }
}

/// TLS on a port (`enable_thrift_ssl`): the node's certificate chain and
/// key, read from `key_store_path` (see
/// [`replicator::plugin::connector::transport`] for the formats). Cheap to
/// clone.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The TLS a node's configuration asks for: `None` unless
    /// `enable_thrift_ssl` is true.
    ///
    /// # Errors
    /// An unreadable or unusable `key_store_path`, named.
    pub fn from_config(c: &NodeConfig) -> Result<Option<Tls>, String> {
        if !c.enable_thrift_ssl {
            return Ok(None);
        }
        Tls::from_key_store(std::path::Path::new(&c.key_store_path), &c.key_store_pwd)
            .map(Some)
            .map_err(|e| format!("key_store_path: {e}"))
    }

    /// Serves the certificate chain and key of the key store at `path`
    /// (PEM, or PKCS#12 opened with `password`).
    ///
    /// # Errors
    /// An unreadable store, a wrong password, a key that does not match
    /// the certificate or that TLS cannot use; each naming the file.
    pub fn from_key_store(path: &std::path::Path, password: &str) -> Result<Tls, String> {
        let (chain, key) = replicator::plugin::connector::transport::key_store(path, password)?;
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{}: the key and certificate cannot serve TLS: {e}",
                path.display()
            )
        })?;
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    /// The TLS handshake on `socket`, within `timeout`: a peer whose first
    /// byte is not a TLS handshake record is refused at once.
    async fn accept(
        &self,
        socket: TcpStream,
        timeout: Duration,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
        let work = async {
            let mut first = [0u8; 1];
            match socket.peek(&mut first).await {
                Ok(0) => return Err("closed before the TLS handshake".to_string()),
                Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                    return Err(format!(
                        "not a TLS client: its first byte is {:#04x}, not a TLS handshake (this port serves TLS only, enable_thrift_ssl=true; connect with TLS, e.g. the CLI's -usessl true)",
                        first[0]
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(format!("closed before the TLS handshake: {e}")),
            }
            self.0.accept(socket).await.map_err(|e| {
                let alert = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::AlertReceived(_)));
                if alert {
                    format!("TLS handshake failed: the client refused this node's certificate ({e}); does its trust store hold the CA that signed key_store_path?")
                } else {
                    format!("TLS handshake failed: {e}")
                }
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the TLS handshake did not finish within {} ms (dn_connection_timeout_ms)",
                timeout.as_millis()
            )),
        }
    }
}

/// The first byte of a TLS handshake record (a ClientHello starts with it).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A connection's state, as the accept loop sees it when choosing one to
/// displace.
const IDLE: u8 = 0;
const RECEIVING: u8 = 1;
const HANDLING: u8 = 2;
const DISPLACED: u8 = 3;

/// One connection's entry in the [`Registry`].
struct Slot {
    /// IDLE (waiting for a frame), RECEIVING, HANDLING or DISPLACED.
    state: AtomicU8,
    /// When the current state began (ms since the registry's epoch).
    since_ms: AtomicU64,
    /// Whether a session is open: such a connection is never displaced.
    logged_in: AtomicBool,
    /// Tells the connection to close.
    kick: Notify,
}

/// The open connections, for choosing one to displace at the limit.
struct Registry {
    epoch: Instant,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn set(&self, slot: &Slot, state: u8) {
        // A displaced connection stays displaced.
        if slot
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != DISPLACED).then_some(state)
            })
            .is_ok()
        {
            slot.since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// Tells the connection that has waited longest without logging in to
    /// close: an idle one first, else the one whose frame started first.
    /// Returns whether there was one.
    fn displace(&self) -> bool {
        let slots = self.slots.lock().expect("registry lock");
        let pick = |want: u8| {
            slots
                .values()
                .filter(|s| {
                    !s.logged_in.load(Ordering::Acquire) && s.state.load(Ordering::Acquire) == want
                })
                .min_by_key(|s| s.since_ms.load(Ordering::Acquire))
                .cloned()
        };
        match pick(IDLE).or_else(|| pick(RECEIVING)) {
            Some(s) => {
                s.state.store(DISPLACED, Ordering::Release);
                s.kick.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection's slot when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut s) = self.registry.slots.lock() {
            s.remove(&self.id);
        }
    }
}

/// Serves `listener` (with TLS when `tls` is given) until `shutdown`
/// completes, then waits (up to 10 s) for connections to finish their
/// current call.
pub async fn run(
    listener: TcpListener,
    service: Arc<Service>,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl Future,
) {
    serve(listener, service, limits, tls, shutdown, false).await;
}

/// [`run`] for the client port (`pipe_server` false) or the pipe server's
/// port, where `ip_white_list` is checked at accept. The listener is closed
/// as soon as `shutdown` completes.
async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl Future,
    pipe_server: bool,
) {
    let mut limits = limits;
    let most = limits.max_frame_bytes_in_flight.saturating_add(SMALL_FRAME);
    if limits.max_frame > most {
        warn!(
            thrift_max_frame_size = limits.max_frame,
            rpc_max_frame_bytes_in_flight = limits.max_frame_bytes_in_flight,
            "frames larger than rpc_max_frame_bytes_in_flight + 64 KiB can never be received; that is the frame limit now"
        );
        limits.max_frame = most;
    }
    let limits = Arc::new(limits);
    let budget = Arc::new(Semaphore::new(limits.max_frame_bytes_in_flight));
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        slots: Mutex::new(HashMap::new()),
    });
    let (notify_tx, _) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let limit = Arc::new(Semaphore::new(limits.max_connections));
    // Refused connections being answered at once (the rest are closed
    // without an answer).
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    'accept: loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(cause = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if pipe_server {
            let list = service.receiver().ip_white_list();
            if let Err(status) = list.check(peer.ip()) {
                warn!(sender = %peer.ip().to_canonical(), ip_white_list = %list, "pipe server: refused a connection from outside ip_white_list (its first request is answered with the refusal, then it is closed)");
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    let timeout = limits.timeout.get();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        refuse(socket, tls, status, timeout).await;
                        drop(permit);
                    });
                }
                continue;
            }
        }
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => loop {
                if registry.displace() {
                    info!(
                        %peer,
                        max_connections = limits.max_connections,
                        "connection limit reached: closing the connection that has waited longest without logging in"
                    );
                }
                tokio::select! {
                    p = limit.clone().acquire_owned() => break p.expect("semaphore open"),
                    _ = tokio::time::sleep(EVICT_WAIT) => {}
                    _ = &mut shutdown => break 'accept,
                }
            },
        };
        let _ = socket.set_nodelay(true);
        next_id += 1;
        let slot = Arc::new(Slot {
            state: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(registry.now_ms()),
            logged_in: AtomicBool::new(false),
            kick: Notify::new(),
        });
        registry
            .slots
            .lock()
            .expect("registry lock")
            .insert(next_id, slot.clone());
        let registered = Registered {
            registry: registry.clone(),
            id: next_id,
        };
        let service = service.clone();
        let mut stop = notify_tx.subscribe();
        let done = done_tx.clone();
        let (limits, budget) = (limits.clone(), budget.clone());
        let tls = tls.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let _done = done;
                let _counted = service.rpc_metrics().connection();
                let registry = registered.registry.clone();
                let _registered = registered;
                let c = Conn {
                    socket,
                    peer,
                    pipe_server,
                    limits: &limits,
                    budget: &budget,
                    registry: &registry,
                    slot: &slot,
                    buf: Vec::new(),
                    lease: None,
                    charged: 0,
                    first: true,
                    tls: tls.is_some(),
                };
                match tls {
                    None => {
                        let mut c = c;
                        c.serve(&service, &mut stop).await
                    }
                    Some(tls) => {
                        if let Some(mut c) = c.handshake(&tls, &mut stop).await {
                            c.serve(&service, &mut stop).await;
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("conn", %peer)),
        );
    }
    // The port is free as soon as the loop ends (a STOP PIPESERVER can be
    // followed by a START at once).
    drop(listener);
    drop(notify_tx);
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await;
}

/// The largest first request a refused connection's answer is read for:
/// a handshake or a login is far smaller.
const REFUSAL_FRAME: usize = 4 << 10;
/// The most refused connections the pipe server answers at once; more are
/// closed without an answer, so refused peers cannot hold many sockets.
const MAX_REFUSALS: usize = 64;

/// Answers the first request of a connection the pipe server refused with
/// `status` (1108, naming the address and the list), so the sender learns
/// why, then closes it. Nothing of the request is decoded beyond its
/// method name; a first frame over [`REFUSAL_FRAME`] bytes, or none within
/// `timeout` (the TLS handshake included), just closes it.
async fn refuse(
    socket: TcpStream,
    tls: Option<Tls>,
    status: protocol::rpc::TSStatus,
    timeout: Duration,
) {
    let answer = async {
        match tls {
            None => answer_refusal(socket, status).await,
            Some(tls) => {
                let s = tls.accept(socket, timeout).await.ok()?;
                answer_refusal(s, status).await
            }
        }
    };
    let _ = tokio::time::timeout(timeout, answer).await;
}

/// [`refuse`]'s answer on a plain or TLS stream.
async fn answer_refusal<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    status: protocol::rpc::TSStatus,
) -> Option<()> {
    use protocol::message::{exception, reply, Call};
    let mut len = [0u8; 4];
    socket.read_exact(&mut len).await.ok()?;
    let n = i32::from_be_bytes(len);
    if n <= 0 || n as usize > REFUSAL_FRAME {
        return None;
    }
    let mut buf = vec![0u8; n as usize];
    socket.read_exact(&mut buf).await.ok()?;
    let (p, name, seq) = {
        let call = Call::parse(&buf).ok()?;
        (call.proto, call.name, call.seq)
    };
    let name = name.as_str();
    let frame = match name {
        "pipeTransfer" => reply(
            p,
            name,
            seq,
            &protocol::rpc::TPipeTransferResp { status, body: None },
        ),
        "handshake" | "sendFile" | "sendPipeData" => reply(p, name, seq, &status),
        _ => exception(
            p,
            name,
            seq,
            thrift::ApplicationErrorKind::InternalError,
            status.message.as_deref().unwrap_or_default(),
        ),
    };
    socket.write_all(&frame).await.ok()?;
    socket.flush().await.ok()
}

/// What [`Conn::read_frame`] got.
enum Woke {
    /// A frame, in the connection's buffer.
    Frame,
    /// The oldest reply waiting for durability is due: this frame.
    Durable(Vec<u8>),
}

/// Why a connection stops reading.
enum Stop {
    /// The peer closed between frames.
    Eof,
    /// Shutdown.
    Shutdown,
    /// Displaced at the connection limit.
    Displaced,
    /// Closed with a reason worth a warning.
    Warn(String),
    /// Closed with a reason worth a note.
    Info(String),
}

/// One connection: its socket (plain TCP or TLS) and its frame buffer.
struct Conn<'a, S> {
    socket: S,
    peer: SocketAddr,
    /// Accepted on the pipe server's port.
    pipe_server: bool,
    limits: &'a Limits,
    budget: &'a Arc<Semaphore>,
    registry: &'a Registry,
    slot: &'a Slot,
    /// The frame buffer, kept between frames while they follow each other.
    buf: Vec<u8>,
    /// Budget held for `buf`'s capacity beyond [`SMALL_FRAME`].
    lease: Option<OwnedSemaphorePermit>,
    /// How many bytes `lease` holds.
    charged: usize,
    /// No frame has started yet.
    first: bool,
    /// The port serves TLS.
    tls: bool,
}

impl<'a> Conn<'a, TcpStream> {
    /// The TLS handshake, within the connection timeout; while it runs the
    /// connection counts as receiving a frame (it may be displaced at the
    /// connection limit). `None` (logged) when it failed, timed out, or the
    /// connection was displaced or the server stopped meanwhile.
    async fn handshake(
        self,
        tls: &Tls,
        stop: &mut broadcast::Receiver<()>,
    ) -> Option<Conn<'a, tokio_rustls::server::TlsStream<TcpStream>>> {
        self.registry.set(self.slot, RECEIVING);
        let peer = self.peer;
        let accepted = tokio::select! {
            r = tls.accept(self.socket, self.limits.timeout.get()) => r,
            _ = stop.recv() => return None,
            _ = self.slot.kick.notified() => {
                info!(%peer, "closing connection: displaced at the connection limit (during the TLS handshake)");
                return None;
            }
        };
        match accepted {
            Ok(socket) => Some(Conn {
                socket,
                peer,
                pipe_server: self.pipe_server,
                limits: self.limits,
                budget: self.budget,
                registry: self.registry,
                slot: self.slot,
                buf: self.buf,
                lease: self.lease,
                charged: self.charged,
                first: self.first,
                tls: self.tls,
            }),
            Err(reason) => {
                warn!(%peer, "closing connection: {reason}");
                None
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    async fn serve(&mut self, service: &Arc<Service>, stop: &mut broadcast::Receiver<()>) {
        debug!("connected");
        let mut conn = Connection::new(self.peer, self.pipe_server);
        // Replies waiting for their writes to become durable, oldest first
        // (at most two: see `Handled::WhenDurable` below); one that becomes
        // due while the next frame has not started goes out at once.
        let mut durable: VecDeque<Durable> = VecDeque::new();
        loop {
            let woke = self
                .read_frame(conn.logged_in(), stop, durable.front_mut())
                .await;
            if let Ok(Woke::Durable(frame)) = woke {
                durable.pop_front();
                if !self.write_reply(&frame).await {
                    break;
                }
                continue;
            }
            if let Err(why) = woke {
                let peer = self.peer;
                match why {
                    Stop::Eof | Stop::Shutdown => {}
                    Stop::Displaced => {
                        info!(%peer, "closing connection: displaced at the connection limit")
                    }
                    Stop::Info(reason) => info!(%peer, "closing connection: {reason}"),
                    Stop::Warn(reason) => warn!(%peer, "closing connection: {reason}"),
                }
                break;
            }
            self.registry.set(self.slot, HANDLING);
            match service.handle(&mut conn, &self.buf).await {
                Handled::Reply(frame) => {
                    // In order: the replies before it first.
                    if !self.write_durable(&mut durable).await || !self.write_reply(&frame).await {
                        break;
                    }
                }
                Handled::WhenDurable(d) => {
                    durable.push_back(d);
                    // A sender keeps at most two requests in flight: with
                    // two replies waiting, no third request comes before
                    // one goes out. The oldest goes; the younger's sync
                    // then runs while the next request is read and applied.
                    if durable.len() >= 2 && !self.write_oldest(&mut durable).await {
                        break;
                    }
                }
                Handled::Close(reason) => {
                    warn!(peer = %self.peer, reason, "closing connection");
                    break;
                }
            }
            self.slot
                .logged_in
                .store(conn.logged_in(), Ordering::Release);
        }
        debug!("disconnected");
    }

    /// Writes one reply frame within its allowance; false when the
    /// connection must close.
    async fn write_reply(&mut self, frame: &[u8]) -> bool {
        let allowance = self.limits.allowance(frame.len());
        let socket = &mut self.socket;
        let write = async {
            socket.write_all(frame).await?;
            socket.flush().await
        };
        match tokio::time::timeout(allowance, write).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(cause = %e, "write failed");
                false
            }
            Err(_) => {
                warn!(peer = %self.peer, bytes = frame.len(), "closing connection: the reply was not taken within {allowance:?}");
                false
            }
        }
    }

    /// Waits for every reply in `durable` in turn and writes it; false
    /// when the connection must close.
    async fn write_durable(&mut self, durable: &mut VecDeque<Durable>) -> bool {
        while !durable.is_empty() {
            if !self.write_oldest(durable).await {
                return false;
            }
        }
        true
    }

    /// Waits for the oldest reply in `durable` and writes it; false when
    /// the connection must close.
    async fn write_oldest(&mut self, durable: &mut VecDeque<Durable>) -> bool {
        match durable.pop_front() {
            Some(mut d) => {
                let frame = d.wait().await;
                self.write_reply(&frame).await
            }
            None => true,
        }
    }

    /// Gives back a buffer beyond [`SMALL_FRAME`] and its budget.
    fn release(&mut self) {
        if self.buf.capacity() > SMALL_FRAME {
            self.buf = Vec::new();
        }
        self.lease = None;
        self.charged = 0;
    }

    /// Reads the next frame's payload into `self.buf` — unless the write of
    /// `durable` (the oldest reply waiting) becomes durable before the
    /// frame starts: then its reply frame, to be written first.
    async fn read_frame(
        &mut self,
        logged_in: bool,
        stop: &mut broadcast::Receiver<()>,
        mut durable: Option<&mut Durable>,
    ) -> Result<Woke, Stop> {
        let limits = self.limits;
        // Wait for a frame to start: as long as it takes on a logged-in
        // connection, at most the timeout on one that has not logged in.
        self.registry.set(self.slot, IDLE);
        let timeout = limits.timeout.get();
        let idle_until = Instant::now() + timeout;
        let mut len = [0u8; 4];
        let mut got = loop {
            tokio::select! {
                r = self.socket.read(&mut len) => match r {
                    Ok(0) => return Err(Stop::Eof),
                    Ok(k) => break k,
                    Err(e) => {
                        debug!(cause = %e, "read failed");
                        return Err(Stop::Eof);
                    }
                },
                _ = tokio::time::sleep(RELEASE_IDLE_BUFFER), if self.buf.capacity() > SMALL_FRAME || self.lease.is_some() => self.release(),
                _ = tokio::time::sleep_until(idle_until), if !logged_in => {
                    return Err(Stop::Info(format!("no request for {timeout:?} before login (dn_connection_timeout_ms)")));
                }
                _ = stop.recv() => return Err(Stop::Shutdown),
                _ = self.slot.kick.notified() => return Err(Stop::Displaced),
                frame = async {
                    match durable.as_mut() {
                        Some(d) => d.wait().await,
                        None => std::future::pending().await,
                    }
                }, if durable.is_some() => return Ok(Woke::Durable(frame)),
            }
        };
        // The frame has started: it must arrive within its allowance.
        self.registry.set(self.slot, RECEIVING);
        let start = Instant::now();
        while got < 4 {
            tokio::select! {
                r = self.socket.read(&mut len[got..]) => match r {
                    Ok(0) => return Err(Stop::Warn("frame cut short in its length".into())),
                    Ok(k) => got += k,
                    Err(e) => return Err(Stop::Warn(format!("frame cut short in its length: {e}"))),
                },
                _ = tokio::time::sleep_until(start + timeout) => {
                    return Err(Stop::Warn(format!("a frame length took more than {timeout:?} to arrive")));
                }
                _ = stop.recv() => return Err(Stop::Shutdown),
                _ = self.slot.kick.notified() => return Err(Stop::Displaced),
            }
        }
        if std::mem::take(&mut self.first)
            && !self.tls
            && len[0] == TLS_HANDSHAKE_RECORD
            && len[1] == 3
            && len[2] <= 4
        {
            return Err(Stop::Warn(
                "a TLS handshake on a plaintext port: this port does not serve TLS (enable_thrift_ssl=false); connect without TLS, or set enable_thrift_ssl=true and key_store_path".into(),
            ));
        }
        let n = i32::from_be_bytes(len);
        if n <= 0 || n as usize > limits.max_frame {
            return Err(Stop::Warn(format!(
                "frame length out of range: {n} (1 to {}, thrift_max_frame_size; is the client speaking framed thrift?)",
                limits.max_frame
            )));
        }
        let n = n as usize;
        self.buf.clear();
        while self.buf.len() < n {
            let deadline = start + limits.allowance(self.buf.len());
            if self.buf.len() == self.buf.capacity() {
                let want = (self.buf.capacity() * 2).max(SMALL_FRAME).min(n);
                self.charge(want, deadline, n, stop).await?;
                self.buf.reserve_exact(want - self.buf.len());
            }
            let have = self.buf.len();
            let mut into = (&mut self.buf).limit(n - have);
            let read = tokio::select! {
                r = self.socket.read_buf(&mut into) => r,
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Stop::Warn(format!(
                        "frame arriving too slowly: {have} of {n} bytes in {:?} (dn_connection_timeout_ms, then at least {MIN_FRAME_RATE} bytes/s)",
                        start.elapsed()
                    )));
                }
                _ = stop.recv() => return Err(Stop::Shutdown),
                _ = self.slot.kick.notified() => return Err(Stop::Displaced),
            };
            match read {
                Ok(0) => {
                    return Err(Stop::Warn(format!(
                        "frame cut short: {have} of {n} bytes came"
                    )))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Stop::Warn(format!(
                        "frame cut short: {have} of {n} bytes came: {e}"
                    )))
                }
            }
        }
        Ok(Woke::Frame)
    }

    /// Holds budget for a buffer of `capacity` bytes, waiting for it until
    /// `deadline`.
    async fn charge(
        &mut self,
        capacity: usize,
        deadline: Instant,
        frame: usize,
        stop: &mut broadcast::Receiver<()>,
    ) -> Result<(), Stop> {
        let need = capacity
            .saturating_sub(SMALL_FRAME)
            .saturating_sub(self.charged);
        if need == 0 {
            return Ok(());
        }
        // Frames are below 2 GiB, so `need` fits a u32.
        let permits = u32::try_from(need).expect("frame below 2 GiB");
        let got = tokio::select! {
            p = self.budget.clone().acquire_many_owned(permits) => p.expect("budget open"),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Stop::Warn(format!(
                    "no room to receive a frame of {frame} bytes: rpc_max_frame_bytes_in_flight ({} bytes) is held by other connections",
                    self.limits.max_frame_bytes_in_flight
                )));
            }
            _ = stop.recv() => return Err(Stop::Shutdown),
            _ = self.slot.kick.notified() => return Err(Stop::Displaced),
        };
        match &mut self.lease {
            Some(l) => l.merge(got),
            None => self.lease = Some(got),
        }
        self.charged += need;
        Ok(())
    }
}

/// Binds `addr` and logs where. `[::]:PORT` (or `rpc_address=::`) listens
/// on IPv6 and, where the system allows, IPv4 too.
///
/// # Errors
/// Bind errors.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    info!(addr = %l.local_addr()?, "client RPC listening");
    Ok(l)
}

/// Whether the pipe server runs, kept across restarts.
const PIPE_SERVER_STATE: &str = "pipe_server";

/// A running pipe server.
struct Listening {
    /// Ends the accept loop.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Told when the listener is closed.
    closed: std::sync::mpsc::Receiver<()>,
    /// Where it listens.
    addr: SocketAddr,
}

/// Seed 000's pipe server: `pipe_server_port` serving the node's
/// [`Service`] (see the module doc).
pub struct PipeServer {
    handle: tokio::runtime::Handle,
    /// `rpc_address`: the pipe server listens on the same address.
    address: String,
    /// `pipe_server_port`, for the next start.
    port: std::sync::atomic::AtomicU16,
    limits: Limits,
    /// TLS (`enable_thrift_ssl`), as on the client port.
    tls: Option<Tls>,
    /// The file that says whether it runs.
    state_file: std::path::PathBuf,
    /// The service it serves (set once the node has built it).
    service: std::sync::OnceLock<std::sync::Weak<Service>>,
    running: Mutex<Option<Listening>>,
}

impl std::fmt::Debug for PipeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeServer")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("listening", &self.local_addr())
            .finish()
    }
}

impl PipeServer {
    /// A stopped pipe server for a node configured with `c`, serving TLS
    /// when `tls` is given, on the runtime of `handle`; `system` is the
    /// node's system directory.
    pub fn new(
        c: &NodeConfig,
        limits: Limits,
        tls: Option<Tls>,
        system: &std::path::Path,
        handle: tokio::runtime::Handle,
    ) -> PipeServer {
        PipeServer {
            handle,
            address: c.rpc_address.clone(),
            port: std::sync::atomic::AtomicU16::new(c.pipe_server_port),
            limits,
            tls,
            state_file: system.join(PIPE_SERVER_STATE),
            service: std::sync::OnceLock::new(),
            running: Mutex::new(None),
        }
    }

    /// Gives the pipe server the service to serve.
    pub fn set_service(&self, service: &Arc<Service>) {
        let _ = self.service.set(Arc::downgrade(service));
    }

    /// Sets `pipe_server_port` for the next start.
    pub fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
    }

    /// Where it listens, while it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running
            .lock()
            .expect("pipe server lock")
            .as_ref()
            .map(|l| l.addr)
    }

    /// `SHOW PIPESERVER`.
    pub fn enabled(&self) -> bool {
        self.local_addr().is_some()
    }

    /// Whether the last start or stop said it runs.
    pub fn was_enabled(&self) -> bool {
        std::fs::read_to_string(&self.state_file).is_ok_and(|s| s.trim() == "enable=true")
    }

    fn save(&self, enabled: bool) -> Result<(), String> {
        let tmp = self.state_file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, format!("enable={enabled}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.state_file)
        };
        write().map_err(|e| {
            format!(
                "{}: cannot record the pipe server's state: {e}",
                self.state_file.display()
            )
        })
    }

    /// `START PIPESERVER`: listens on `rpc_address:pipe_server_port` (a
    /// running server stays as it is). Returns where it listens.
    ///
    /// # Errors
    /// The port cannot be bound (in use, not allowed), named.
    pub fn start(&self) -> Result<SocketAddr, String> {
        let mut running = self.running.lock().expect("pipe server lock");
        if let Some(l) = running.as_ref() {
            return Ok(l.addr);
        }
        let service = self
            .service
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or("the node is shutting down")?;
        let addr = format!("{}:{}", self.address, self.port.load(Ordering::Relaxed));
        let std_listener = std::net::TcpListener::bind(&addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("Failed to start pipe server because {addr} cannot be listened on: {e} (pipe_server_port)"))?;
        let local = std_listener.local_addr().map_err(|e| e.to_string())?;
        let listener = {
            let _rt = self.handle.enter();
            TcpListener::from_std(std_listener).map_err(|e| e.to_string())?
        };
        self.save(true)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        let limits = self.limits.clone();
        let tls = self.tls.clone();
        self.handle.spawn(async move {
            serve(
                listener,
                service,
                limits,
                tls,
                async {
                    let _ = stop_rx.await;
                },
                true,
            )
            .await;
            let _ = closed_tx.send(());
        });
        info!(addr = %local, tls = self.tls.is_some(), "pipe server listening");
        *running = Some(Listening {
            stop: Some(stop_tx),
            closed: closed_rx,
            addr: local,
        });
        Ok(local)
    }

    /// Closes the port and its connections (waiting up to 12 s for them to
    /// finish their current call); `remember` records that it is off.
    fn close(&self, remember: bool) -> Result<(), String> {
        let l = self.running.lock().expect("pipe server lock").take();
        if remember {
            self.save(false)?;
        }
        if let Some(mut l) = l {
            if let Some(s) = l.stop.take() {
                let _ = s.send(());
            }
            let _ = l.closed.recv_timeout(Duration::from_secs(12));
            info!(addr = %l.addr, "pipe server stopped");
        }
        Ok(())
    }

    /// `STOP PIPESERVER`: refused while a sender's pipe runs into the pipe
    /// server (`running` > 0: connections of incoming pipes on its port).
    ///
    /// # Errors
    /// `(328, the seed's message)` while a pipe runs; a state file that
    /// cannot be written.
    pub fn stop(&self, running: usize) -> Result<(), (i32, String)> {
        if running > 0 {
            return Err((
                protocol::types::status::PIPESINK_ERROR,
                "Failed to stop pipe server because there is pipe still running.".into(),
            ));
        }
        self.close(true)
            .map_err(|m| (protocol::types::status::INTERNAL_SERVER_ERROR, m))
    }

    /// Stops it for the node's shutdown, keeping its state for the next
    /// start.
    pub fn shutdown(&self) {
        let _ = self.close(false);
    }
}
