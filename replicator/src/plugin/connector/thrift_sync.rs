//! `iotdb-thrift-sync-connector`: IoTDB 1.2's `pipeTransfer` over one
//! connection, in order, two requests in flight ([`Connector::write_batch`]);
//! and the thrift `Client`
//! that both thrift connectors speak through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protocol::message::read_reply;
use protocol::pipe;
use protocol::rpc::TPipeTransferResp;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info};

use super::transport::{self, ClientTls, LazyTls, Stream};
use super::wire::Wire;
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
    /// The requests written and not yet answered, oldest first: whether
    /// each went compressed (type 300), and when its last byte went out
    /// (`None` while it is being written). At most two, and two only on
    /// the pipelined path ([`Connector::write_batch`]).
    unanswered: std::collections::VecDeque<(bool, Option<tokio::time::Instant>)>,
    /// Reply bytes read and not yet taken: a read may bring more than one
    /// reply, or part of one ([`Client::reply_arriving`] reads without
    /// waiting for a whole frame, so that it can be abandoned).
    inbox: Vec<u8>,
    /// The connector's compressors and rate limit.
    wire: Arc<Wire>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.unanswered.is_empty() {
            let _ = self.stream.set_zero_linger();
        }
    }
}

/// What became of the tablets of one [`Client::send_tablets`] call.
pub(crate) type Sent = Result<(), TransferError>;

impl Client {
    /// Connects to `host:port` (with TLS when `tls` is given) and
    /// handshakes with our timestamp `precision`, each within `timeout`;
    /// its requests go through `wire`.
    ///
    /// # Errors
    /// The address, and why it failed: refused, timed out, a certificate
    /// that does not verify (and why), or the receiver's handshake status.
    pub(crate) async fn connect(
        (host, port): (&str, u16),
        tls: Option<&ClientTls>,
        precision: &str,
        timeout: Duration,
        wire: Arc<Wire>,
    ) -> Result<Client, TransferError> {
        let addr = format!("{host}:{port}");
        let s = transport::connect(host, port, tls, timeout)
            .await
            .map_err(|e| TransferError(format!("{addr}: {e}")))?;
        let mut c = Client {
            stream: s,
            addr: addr.clone(),
            seq: 0,
            unanswered: std::collections::VecDeque::new(),
            inbox: Vec::new(),
            wire,
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
        self.unanswered.is_empty()
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
        if !self.inbox.is_empty() {
            return true;
        }
        let mut b = [0u8; 1];
        match self.stream.tcp().try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Ok(_) | Err(_) => true,
        }
    }

    /// One `pipeTransfer` call: the frame is written around the body's
    /// parts, not copied with them, in vectored writes ([`write_parts`]);
    /// with `connector.compressor`, every request but the handshake goes
    /// compressed (type 300), and with a rate limit its frame is written in
    /// slices paced by the connector's bucket (`wire`; the pacing time is
    /// added to `timeout`). The client is busy until the reply arrived (see
    /// the type's doc).
    ///
    /// # Errors
    /// A failed write or read, no reply within `timeout`, a reply that
    /// does not decode, a receiver that does not take compressed requests.
    /// The client must then be dropped.
    pub(crate) async fn call(
        &mut self,
        kind: i16,
        body: &[&[u8]],
        timeout: Duration,
    ) -> Result<TPipeTransferResp, TransferError> {
        let by = tokio::time::Instant::now() + timeout;
        self.write_call(kind, body, timeout).await?;
        // With a rate limit the reply is due `timeout` after the last byte
        // went out (the pacing waits are not the receiver's); else the
        // whole call has `timeout`.
        let by = if self.wire.is_paced() {
            tokio::time::Instant::now() + timeout
        } else {
            by
        };
        self.read_reply(by, timeout).await
    }

    /// The first half of [`Client::call`]: writes one request (compressed
    /// and paced as the connector says) within `timeout`, without waiting
    /// for its reply. The client is busy until [`Client::read_reply`] has
    /// read the reply of every request written.
    ///
    /// # Errors
    /// A failed or timed-out write; the client must then be dropped.
    pub(crate) async fn write_call(
        &mut self,
        kind: i16,
        body: &[&[u8]],
        timeout: Duration,
    ) -> Result<(), TransferError> {
        self.seq = self.seq.wrapping_add(1);
        let packed = if kind == pipe::HANDSHAKE {
            None
        } else {
            self.wire.pack(kind, body).await
        };
        self.unanswered.push_back((packed.is_some(), None));
        let one;
        let (kind, body): (i16, &[&[u8]]) = match &packed {
            Some(p) => {
                one = [&p[..]];
                (pipe::TRANSFER_COMPRESSED, &one)
            }
            None => (kind, body),
        };
        let len = body.iter().map(|p| p.len()).sum();
        let head = pipe::call_head(self.seq, kind, len);
        let wire = self.wire.clone();
        let s = &mut self.stream;
        let mut parts = Vec::with_capacity(body.len() + 2);
        parts.push(&head[..]);
        parts.extend_from_slice(body);
        parts.push(&pipe::TAIL[..]);
        let r = if wire.is_paced() {
            // With a rate limit the frame goes out in paced slices; the
            // waits for the bucket (shared with the connector's other
            // requests) are not the receiver's, so the write's own time
            // limit is `timeout` past the pacing.
            wire.write_paced(s, &parts, timeout).await
        } else {
            match tokio::time::timeout(timeout, write_parts(s, &parts)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            }
        };
        match r {
            Ok(()) => {
                debug!(bytes = len, "pipeTransfer written");
                if let Some(w) = self.unanswered.back_mut() {
                    w.1 = Some(tokio::time::Instant::now());
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(TransferError(format!(
                "no reply within {}",
                timeout_text(timeout)
            ))),
            Err(e) => Err(TransferError(format!("connection failed: {}", io_text(&e)))),
        }
    }

    /// Waits until reply bytes are at hand: in the inbox, or read into it
    /// now (from the socket, or what TLS already decrypted) — or the
    /// connection ended, or the oldest reply is overdue (`timeout` after
    /// its request went out). Cancel-safe: a read either completes into the
    /// inbox or takes nothing.
    pub(crate) async fn reply_arriving(&mut self, timeout: Duration) {
        let Some(&(_, Some(written))) = self.unanswered.front() else {
            return;
        };
        if !self.inbox.is_empty() {
            return;
        }
        self.inbox.reserve(64);
        let _ =
            tokio::time::timeout_at(written + timeout, self.stream.read_buf(&mut self.inbox)).await;
    }

    /// The second half of [`Client::call`]: reads the reply to the oldest
    /// request written, due by `by` (`timeout` names the limit in the
    /// error).
    ///
    /// # Errors
    /// A failed read, no reply within `timeout`, a reply that does not
    /// decode, a receiver that does not take compressed requests. The
    /// client must then be dropped.
    pub(crate) async fn read_reply(
        &mut self,
        by: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<TPipeTransferResp, TransferError> {
        let Some(&(packed, _)) = self.unanswered.front() else {
            return Err(TransferError("no request to answer".into()));
        };
        let (s, inbox) = (&mut self.stream, &mut self.inbox);
        let io = tokio::time::timeout_at(by, async {
            // Whole frames only leave the inbox; what a read brings beyond
            // this reply stays for the next.
            let mut need = 4;
            loop {
                if inbox.len() >= 4 {
                    let n = i32::from_be_bytes(inbox[..4].try_into().expect("4"));
                    if !(1..=MAX_REPLY_FRAME).contains(&n) {
                        return Err(std::io::Error::other(format!("reply frame of {n} bytes")));
                    }
                    need = 4 + n as usize;
                }
                if inbox.len() >= need && need > 4 {
                    let buf = inbox[4..need].to_vec();
                    inbox.drain(..need);
                    return Ok(buf);
                }
                inbox.reserve(need - inbox.len());
                if s.read_buf(inbox).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        });
        let buf = match io.await {
            Ok(Ok(b)) => b,
            Err(_) => {
                return Err(TransferError(format!(
                    "no reply within {}",
                    timeout_text(timeout)
                )))
            }
            Ok(Err(e)) => return Err(TransferError(format!("connection failed: {}", io_text(&e)))),
        };
        let r = read_reply::<TPipeTransferResp>(&buf)
            .map_err(|e| TransferError(format!("reply does not decode: {e}")))?;
        if packed && r.status.code == pipe::PIPE_TYPE_ERROR {
            // Not a batch the receiver does not know (the caller would fall
            // back to single tablets): the compressed request itself.
            return Err(TransferError(format!(
                "the receiver does not take compressed requests (it answered {}: {}); it predates IoTDB 1.3: remove 'connector.compressor'",
                r.status.code,
                r.status.message.unwrap_or_default()
            )));
        }
        self.unanswered.pop_front();
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

/// Writes `parts` in order, then flushes: one request's frame in as few
/// system calls as the kernel allows. Each `writev` takes up to 1,024
/// slices (`IOV_MAX`), so a request of 4,096 tablets goes out in about five
/// calls where a write per part took about 4,100 (the many-devices profile
/// of issue 11 spent 91 % of the sender's time there). The parts are
/// written from where they lie (the log reader's buffers), never gathered
/// into one buffer. Generic over the stream: plain TCP and TLS alike (a
/// stream without vectored writes gets one part per call, still correct).
///
/// Dropping the future part-way leaves part of the frame written: the
/// caller's connection is then out of step and must not be reused (see
/// [`Client`], which resets it).
///
/// # Errors
/// The stream's write error; `WriteZero` if it accepts nothing.
pub(crate) async fn write_parts<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| std::io::IoSlice::new(p))
        .collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        let n = w.write_vectored(left).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut left, n);
    }
    w.flush().await
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
    /// Compressors and rate limit, shared by its connections.
    wire: Arc<Wire>,
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
        let wire = match &spec {
            ConnectorSpec::ThriftSync { wire, .. } | ConnectorSpec::ThriftAsync { wire, .. } => {
                Wire::new(wire)
            }
            ConnectorSpec::Legacy(_) | ConnectorSpec::DoNothing => Wire::default(),
        };
        Connector {
            tls: LazyTls::new(tls),
            wire: Arc::new(wire),
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
        // A pipelined request left unanswered is abandoned first (its
        // caller sends it again): replies are read in order.
        self.abandon();
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

    /// Whether [`Connector::write_batch`] can send `events`: a thrift sync
    /// connector, and their tablets fit one request (a batch, or a single
    /// tablet). Not when there is no tablet to send, nor once the receiver
    /// asked for single tablets (1801): those go one request each, through
    /// [`Connector::transfer`].
    pub fn pipelines(&self, events: &[PipeEvent]) -> bool {
        let ConnectorSpec::ThriftSync { batch, .. } = &self.spec else {
            return false;
        };
        let n = events
            .iter()
            .filter(|e| matches!(e, PipeEvent::Tablet(_)))
            .count();
        n == 1 || (n > 1 && batch.enable && !self.singles.load(Ordering::Relaxed))
    }

    /// The first half of a pipelined transfer: writes the tablets of
    /// `events` (which [`Connector::pipelines`] took) as one request,
    /// without waiting for its reply, on the connection — connecting first
    /// when there is none, or when the receiver closed the idle one. At
    /// most two requests are ever unanswered: the caller reads the older
    /// reply ([`Connector::read_batch_reply`]) before writing a third.
    ///
    /// Pipelining keeps the receiver busy: the next request is on its way
    /// while the receiver applies the current one, where one request in
    /// flight leaves each side idle while the other works. The receiver
    /// reads requests one after the other on the connection and answers
    /// them in order, as every thrift server does.
    ///
    /// # Errors
    /// Connection failures and timeouts. Whatever is unanswered must then
    /// be abandoned ([`Connector::abandon`]) and sent again.
    pub async fn write_batch(&mut self, events: &[PipeEvent]) -> Result<(), TransferError> {
        let ConnectorSpec::ThriftSync { urls, .. } = &self.spec else {
            return Err(TransferError("not a thrift sync connector".into()));
        };
        let urls = urls.clone();
        let mut client = match self.conn.take() {
            Some(c) if c.is_idle() && c.closed_by_peer() => {
                debug!(target_addr = %c.addr, "the receiver closed the idle connection; reconnecting");
                drop(c);
                self.connect(&urls).await?
            }
            Some(c) => c,
            None => self.connect(&urls).await?,
        };
        let all = tablets(events);
        let head;
        let mut parts = Vec::with_capacity(all.len() + 1);
        let kind = if all.len() == 1 {
            parts.push(all[0]);
            pipe::TRANSFER_TABLET_RAW
        } else {
            head = pipe::batch_head(all.len());
            parts.push(&head[..]);
            parts.extend_from_slice(&all);
            pipe::TRANSFER_TABLET_BATCH
        };
        let r = client.write_call(kind, &parts, self.timeout).await;
        // Kept even when the write failed: dropping it (abandon) resets it.
        self.conn = Some(client);
        r
    }

    /// Waits, without reading anything, until the reply to the oldest
    /// unanswered request has begun to arrive, the connection ended, or
    /// the reply is overdue (the connector's timeout after the request
    /// went out). Cancel-safe. Returns at once when nothing is unanswered.
    pub async fn reply_arriving(&mut self) {
        let timeout = self.timeout;
        let Some(c) = self.conn.as_mut() else { return };
        c.reply_arriving(timeout).await;
    }

    /// The second half of a pipelined transfer: reads the reply to the
    /// oldest request [`Connector::write_batch`] wrote.
    ///
    /// # Errors
    /// Connection failures, timeouts, and any status but success — 1801
    /// (the receiver does not know batches) too, after which
    /// [`Connector::pipelines`] takes single tablets only. Whatever is
    /// unanswered must then be abandoned ([`Connector::abandon`]) and sent
    /// again.
    pub async fn read_batch_reply(&mut self) -> Result<(), TransferError> {
        let timeout = self.timeout;
        let Some(client) = self.conn.as_mut() else {
            return Err(TransferError("no request to answer".into()));
        };
        // Due `timeout` after the request went out.
        let by = match client.unanswered.front() {
            Some(&(_, Some(written))) => written + timeout,
            _ => tokio::time::Instant::now() + timeout,
        };
        let r = client.read_reply(by, timeout).await?;
        match r.status.code {
            200 => Ok(()),
            code => {
                if code == pipe::PIPE_TYPE_ERROR && !self.singles.swap(true, Ordering::Relaxed) {
                    info!(target_addr = %client.addr, "the receiver does not know tablet batches (1801); sending single tablets from now on");
                }
                Err(TransferError(format!(
                    "receiver {} answered {code}: {}",
                    client.addr,
                    r.status.message.unwrap_or_default()
                )))
            }
        }
    }

    /// Abandons every unanswered request: the connection is reset
    /// (nothing more of them goes out, no reply to them is ever read) and
    /// the next request connects afresh. Keeps an idle connection.
    pub fn abandon(&mut self) {
        if self.conn.as_ref().is_some_and(|c| !c.is_idle()) {
            self.conn = None;
        }
    }

    /// Connects to the URLs in turn, starting at the next one, and
    /// handshakes.
    async fn connect(&mut self, urls: &[(String, u16)]) -> Result<Client, TransferError> {
        let tls = self.tls.get().map_err(TransferError)?;
        let mut errors = Vec::new();
        for k in 0..urls.len() {
            let i = (self.next_url + k) % urls.len();
            let (h, p) = &urls[i];
            match Client::connect(
                (h, *p),
                tls.as_ref(),
                &self.precision,
                self.timeout,
                self.wire.clone(),
            )
            .await
            {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Parts of every size (empty ones too), far more than one `writev`
    /// takes.
    fn parts() -> Vec<Vec<u8>> {
        (0..5000u32)
            .map(|i| (0..(i * 7919) % 301).map(|j| (i + j) as u8).collect())
            .collect()
    }

    /// A stream that takes at most `max` bytes a call, across slices, and
    /// counts its calls.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn parts_go_out_whole_and_in_order_through_partial_writes() {
        let parts = parts();
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let want: Vec<u8> = parts.concat();
        for max in [1, 7, 300, 4096, usize::MAX] {
            let mut w = Trickle {
                got: Vec::new(),
                max,
                calls: 0,
            };
            write_parts(&mut w, &refs).await.unwrap();
            assert_eq!(w.got, want, "at most {max} bytes a call");
            if max == usize::MAX {
                // Everything in one call when the stream takes it.
                assert_eq!(w.calls, 1);
            }
        }
    }

    #[tokio::test]
    async fn parts_go_out_whole_over_tcp() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let parts = parts();
        let want: Vec<u8> = parts.concat();
        let n = want.len();
        let reader = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = vec![0u8; n];
            s.read_exact(&mut got).await.unwrap();
            got
        });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        write_parts(&mut s, &refs).await.unwrap();
        assert_eq!(reader.await.unwrap(), want);
    }

    /// A reply frame answering `seq` with `code`.
    fn reply_frame(seq: i32, code: i32) -> Vec<u8> {
        let resp = TPipeTransferResp {
            status: protocol::rpc::TSStatus {
                code,
                message: None,
                sub_status: None,
                redirect_node: None,
                need_retry: None,
            },
            body: None,
        };
        // Framed: `reply` writes the length first.
        protocol::message::reply(protocol::message::Proto::Binary, "pipeTransfer", seq, &resp)
    }

    /// Reads one framed request from `s`.
    async fn read_request(s: &mut tokio::net::TcpStream) {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut f = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut f).await.unwrap();
    }

    /// Two replies that arrive in one segment: the read that brings the
    /// first brings the second too, and the second is then at hand without
    /// another byte from the socket (a wait on the socket alone would sit
    /// there until the timeout, as it would on bytes TLS has decrypted).
    #[tokio::test]
    async fn a_reply_read_with_the_one_before_is_at_hand() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            read_request(&mut s).await; // handshake
            s.write_all(&reply_frame(1, 200)).await.unwrap();
            read_request(&mut s).await;
            read_request(&mut s).await;
            let mut both = reply_frame(2, 200);
            both.extend(reply_frame(3, 1107));
            s.write_all(&both).await.unwrap();
            // Nothing more until the client closes.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let timeout = Duration::from_secs(60);
        let mut c = Client::connect(
            ("127.0.0.1", port),
            None,
            "ms",
            timeout,
            Arc::new(Wire::default()),
        )
        .await
        .unwrap();
        c.write_call(pipe::TRANSFER_TABLET_RAW, &[b"x"], timeout)
            .await
            .unwrap();
        c.write_call(pipe::TRANSFER_TABLET_RAW, &[b"y"], timeout)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), c.reply_arriving(timeout))
            .await
            .expect("the first reply arrives");
        let by = tokio::time::Instant::now() + timeout;
        assert_eq!(c.read_reply(by, timeout).await.unwrap().status.code, 200);
        tokio::time::timeout(Duration::from_secs(2), c.reply_arriving(timeout))
            .await
            .expect("the second reply is at hand");
        assert_eq!(c.read_reply(by, timeout).await.unwrap().status.code, 1107);
        assert!(c.is_idle());
        drop(c);
        peer.await.unwrap();
    }
}
