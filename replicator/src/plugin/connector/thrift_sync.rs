//! `iotdb-thrift-sync-connector`: IoTDB 1.2's `pipeTransfer` over one
//! connection, one request in flight, in order; and the thrift `Client`
//! that both thrift connectors speak through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protocol::message::read_reply;
use protocol::pipe;
use protocol::rpc::TPipeTransferResp;
use tokio::io::AsyncReadExt;
use tracing::{debug, info};

use super::transport::{self, ClientTls, LazyTls, Stream};
use super::{io_text, timeout_text, Batching, ConnectorSpec, TransferError};
use crate::plugin::PipeEvent;

/// The largest reply frame a client reads: replies carry a status and at
/// most a short body.
const MAX_REPLY_FRAME: i32 = 64 << 20;

/// One handshaken `pipeTransfer` connection.
///
/// A client with a request in flight is *busy*; it becomes idle again only
/// once the reply arrived. A busy client that is dropped (its request
/// abandoned because the pipe stops, timed out or failed) closes with a
/// reset (`SO_LINGER` 0): whatever the kernel still holds of the request
/// is discarded rather than sent after the sender gave up on it, and no
/// reply to it is ever read by a later request.
pub(crate) struct Client {
    /// Plain TCP, or TLS (`connector.ssl.*`).
    stream: Stream,
    /// `ip:port` it is connected to.
    pub(crate) addr: String,
    seq: i32,
    busy: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.busy {
            let _ = self.stream.set_zero_linger();
        }
    }
}

/// What became of the tablets of one [`Client::send_tablets`] call.
pub(crate) type Sent = Result<(), TransferError>;

impl Client {
    /// Connects to `host:port` (with TLS when `tls` is given) and
    /// handshakes with our timestamp `precision`, each within `timeout`.
    ///
    /// # Errors
    /// The address, and why it failed: refused, timed out, a certificate
    /// that does not verify (and why), or the receiver's handshake status.
    pub(crate) async fn connect(
        (host, port): (&str, u16),
        tls: Option<&ClientTls>,
        precision: &str,
        timeout: Duration,
    ) -> Result<Client, TransferError> {
        let addr = format!("{host}:{port}");
        let s = transport::connect(host, port, tls, timeout)
            .await
            .map_err(|e| TransferError(format!("{addr}: {e}")))?;
        let mut c = Client {
            stream: s,
            addr: addr.clone(),
            seq: 0,
            busy: false,
        };
        let hs = pipe::handshake_body(precision);
        match c.call(pipe::HANDSHAKE, &[&hs], timeout).await {
            Ok(r) if r.status.code == 200 => {
                info!(target_addr = %addr, tls = tls.is_some(), "pipe connector connected");
                Ok(c)
            }
            Ok(r) => Err(TransferError(format!(
                "{addr}: handshake refused ({}: {})",
                r.status.code,
                r.status.message.unwrap_or_default()
            ))),
            Err(e) if tls.is_none() && e.0.starts_with("connection failed") => {
                Err(TransferError(format!(
                    "{addr}: {}; if the receiver serves TLS (enable_thrift_ssl=true), set 'connector.ssl.enable'='true' and 'connector.ssl.trust-store-path'",
                    e.0
                )))
            }
            Err(e) => Err(TransferError(format!("{addr}: {}", e.0))),
        }
    }

    /// Whether the last call was answered (the connection can be reused).
    pub(crate) fn is_idle(&self) -> bool {
        !self.busy
    }

    /// Whether the receiver closed this idle connection (a node closes a
    /// connection that has not logged in after `dn_connection_timeout_ms`
    /// without a request, and a pipe sender never logs in). Looks without
    /// waiting: an end of stream or a reset already received means closed;
    /// bytes nobody asked for mean the connection is out of step, and it is
    /// not reused either. Nothing was sent on it since its last reply, so
    /// the receiver holds nothing of ours from it.
    pub(crate) fn closed_by_peer(&self) -> bool {
        // On TLS too the TCP socket is what tells: nothing is due on an
        // idle connection, not even TLS records.
        let mut b = [0u8; 1];
        match self.stream.tcp().try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Ok(_) | Err(_) => true,
        }
    }

    /// One `pipeTransfer` call: the frame is written around the body's
    /// parts, not copied with them. The client is busy until the reply
    /// arrived (see the type's doc).
    ///
    /// # Errors
    /// A failed write or read, no reply within `timeout`, a reply that
    /// does not decode. The client must then be dropped.
    pub(crate) async fn call(
        &mut self,
        kind: i16,
        body: &[&[u8]],
        timeout: Duration,
    ) -> Result<TPipeTransferResp, TransferError> {
        self.busy = true;
        self.seq = self.seq.wrapping_add(1);
        let len = body.iter().map(|p| p.len()).sum();
        let head = pipe::call_head(self.seq, kind, len);
        let s = &mut self.stream;
        let mut parts = Vec::with_capacity(body.len() + 2);
        parts.push(&head[..]);
        parts.extend_from_slice(body);
        parts.push(&pipe::TAIL[..]);
        let io = async {
            s.write_parts(&parts).await?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let n = i32::from_be_bytes(len);
            if !(1..=MAX_REPLY_FRAME).contains(&n) {
                return Err(std::io::Error::other(format!("reply frame of {n} bytes")));
            }
            let mut buf = vec![0u8; n as usize];
            s.read_exact(&mut buf).await?;
            Ok(buf)
        };
        let buf = match tokio::time::timeout(timeout, io).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(TransferError(format!("connection failed: {}", io_text(&e)))),
            Err(_) => {
                return Err(TransferError(format!(
                    "no reply within {}",
                    timeout_text(timeout)
                )))
            }
        };
        debug!(bytes = len, "pipeTransfer answered");
        let r = read_reply::<TPipeTransferResp>(&buf)
            .map_err(|e| TransferError(format!("reply does not decode: {e}")))?;
        self.busy = false;
        Ok(r)
    }

    /// Sends `tablets[*sent..]` (each a `Tablet.serialize()` + aligned byte
    /// body) and advances `*sent` over what the receiver acknowledged. In
    /// one batch (type 6) when batching is on and more than one is left;
    /// else one tablet per request (type 3). A batch answered 1801
    /// (PIPE_TYPE_ERROR: the receiver, e.g. IoTDB 1.2.0, does not know the
    /// type) sets `singles` and goes again as single tablets at once: the
    /// receiver applied nothing of it, so this is no failed attempt.
    ///
    /// # Errors
    /// A connection failure (the client must be dropped) or a non-success
    /// status (the client stays usable), naming the address.
    pub(crate) async fn send_tablets(
        &mut self,
        tablets: &[&[u8]],
        sent: &mut usize,
        batching: &Batching,
        singles: &AtomicBool,
        timeout: Duration,
    ) -> Sent {
        let addr = self.addr.clone();
        let refused = |r: TPipeTransferResp| {
            TransferError(format!(
                "receiver {addr} answered {}: {}",
                r.status.code,
                r.status.message.unwrap_or_default()
            ))
        };
        let left = &tablets[*sent..];
        if left.len() > 1 && batching.enable && !singles.load(Ordering::Relaxed) {
            // The body goes out in parts, straight from the events' buffers.
            let head = pipe::batch_head(left.len());
            let mut parts = Vec::with_capacity(left.len() + 1);
            parts.push(&head[..]);
            parts.extend_from_slice(left);
            let r = self
                .call(pipe::TRANSFER_TABLET_BATCH, &parts, timeout)
                .await?;
            match r.status.code {
                200 => {
                    *sent = tablets.len();
                    return Ok(());
                }
                pipe::PIPE_TYPE_ERROR => {
                    if !singles.swap(true, Ordering::Relaxed) {
                        info!(target_addr = %self.addr, "the receiver does not know tablet batches (1801); sending single tablets from now on");
                    }
                }
                _ => return Err(refused(r)),
            }
        }
        while *sent < tablets.len() {
            let r = self
                .call(pipe::TRANSFER_TABLET_RAW, &[tablets[*sent]], timeout)
                .await?;
            if r.status.code != 200 {
                return Err(refused(r));
            }
            *sent += 1;
        }
        Ok(())
    }
}

/// The tablet bodies among `events` (deletions are not sent: IoTDB 1.2's
/// `pipeTransfer` has no request for them, and 1.2 does not propagate
/// deletions either).
pub(crate) fn tablets(events: &[PipeEvent]) -> Vec<&[u8]> {
    events
        .iter()
        .filter_map(|e| match e {
            PipeEvent::Tablet(b) => Some(&b[..]),
            PipeEvent::Delete { .. } => None,
        })
        .collect()
}

/// A live connector: for the thrift one, a connection to the first node
/// URL that answers, handshaken, reused until it fails (a `Client`).
pub struct Connector {
    spec: ConnectorSpec,
    precision: String,
    timeout: Duration,
    /// `connector.ssl.*`.
    tls: LazyTls,
    /// The idle, handshaken connection (`None` while a request is in
    /// flight, or before the first one).
    conn: Option<Client>,
    /// Index of the URL to try next.
    next_url: usize,
    /// Set once a receiver answered a batch with 1801: single tablets from
    /// then on.
    singles: AtomicBool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("spec", &self.spec)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Connector {
    /// A connector for `spec`, sending our timestamp `precision` in the
    /// handshake and giving up on an unanswered call after `timeout`.
    pub fn new(spec: ConnectorSpec, precision: &str, timeout: Duration) -> Connector {
        let tls = match &spec {
            ConnectorSpec::ThriftSync { tls, .. } | ConnectorSpec::ThriftAsync { tls, .. } => {
                tls.clone()
            }
            ConnectorSpec::Legacy(_) | ConnectorSpec::DoNothing => None,
        };
        Connector {
            tls: LazyTls::new(tls),
            spec,
            precision: precision.into(),
            timeout,
            conn: None,
            next_url: 0,
            singles: AtomicBool::new(false),
        }
    }

    /// The validated settings.
    pub fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    /// Sends `events[*sent..]` and waits for the receiver's
    /// acknowledgement; `*sent` advances over the events acknowledged (all
    /// of them on success; with single-tablet requests, those answered
    /// before a failure, so a retry does not send them again). Deletions
    /// are not sent (IoTDB 1.2's `pipeTransfer` has no request for them).
    ///
    /// An idle connection that the receiver closed meanwhile (it closes
    /// connections that never log in after `dn_connection_timeout_ms`) is
    /// noticed before anything is written on it and replaced at once: no
    /// failure, no retry. Nothing of the transfer went out on it, so
    /// nothing is sent twice for it.
    ///
    /// Cancel-safe: dropping the returned future abandons the request; its
    /// connection is reset (nothing more of it goes out, and no reply to it
    /// is ever read), and the next transfer connects afresh.
    ///
    /// # Errors
    /// Connection failures, timeouts and non-success statuses; after a
    /// connection failure the next attempt reconnects (to the next URL).
    pub async fn transfer(
        &mut self,
        events: &[PipeEvent],
        sent: &mut usize,
    ) -> Result<(), TransferError> {
        let (urls, batching) = match &self.spec {
            ConnectorSpec::ThriftSync { urls, batch, .. }
            | ConnectorSpec::ThriftAsync { urls, batch, .. } => (urls.clone(), *batch),
            ConnectorSpec::DoNothing => {
                *sent = events.len();
                return Ok(());
            }
            ConnectorSpec::Legacy(_) => {
                return Err(TransferError(
                    "the legacy protocol is not pipeTransfer: a legacy connector sends it".into(),
                ))
            }
        };
        let all: Vec<&[u8]> = tablets(events);
        // `sent` counts events; the tablets are what goes out.
        let mut done = events[..*sent]
            .iter()
            .filter(|e| matches!(e, PipeEvent::Tablet(_)))
            .count();
        if done == all.len() {
            *sent = events.len();
            return Ok(());
        }
        let mut client = match self.conn.take() {
            Some(c) if c.closed_by_peer() => {
                debug!(target_addr = %c.addr, "the receiver closed the idle connection; reconnecting");
                drop(c);
                self.connect(&urls).await?
            }
            Some(c) => c,
            None => self.connect(&urls).await?,
        };
        let r = client
            .send_tablets(&all, &mut done, &batching, &self.singles, self.timeout)
            .await;
        // Back to events: the first `done` tablets, and the deletions
        // among and right after them, are done.
        let mut n = 0;
        *sent = events
            .iter()
            .position(|e| {
                if matches!(e, PipeEvent::Tablet(_)) {
                    n += 1;
                    n > done
                } else {
                    false
                }
            })
            .unwrap_or(events.len());
        if client.is_idle() {
            // Answered (with success or a status): reusable.
            self.conn = Some(client);
        }
        r
    }

    /// Connects to the URLs in turn, starting at the next one, and
    /// handshakes.
    async fn connect(&mut self, urls: &[(String, u16)]) -> Result<Client, TransferError> {
        let tls = self.tls.get().map_err(TransferError)?;
        let mut errors = Vec::new();
        for k in 0..urls.len() {
            let i = (self.next_url + k) % urls.len();
            let (h, p) = &urls[i];
            match Client::connect((h, *p), tls.as_ref(), &self.precision, self.timeout).await {
                Ok(c) => {
                    self.next_url = i;
                    return Ok(c);
                }
                Err(e) => errors.push(e.0),
            }
        }
        self.next_url = (self.next_url + 1) % urls.len();
        Err(TransferError(format!(
            "all target servers are unavailable: {}",
            errors.join("; ")
        )))
    }
}
