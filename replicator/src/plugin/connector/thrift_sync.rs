//! `iotdb-thrift-sync-connector`: IoTDB 1.2's `pipeTransfer` over one
//! blocking-style connection, one request in flight, in order.

use std::time::Duration;

use protocol::message::read_reply;
use protocol::pipe;
use protocol::rpc::TPipeTransferResp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::{ConnectorSpec, TransferError};
use crate::plugin::PipeEvent;

/// A live connector: for the thrift one, a connection to the first node
/// URL that answers, handshaken, reused until it fails.
///
/// A request in flight owns its connection (an `InFlight`): the
/// connection goes back to the connector only once the reply arrived. If
/// the transfer is abandoned instead (its future dropped because the pipe
/// stops) or fails, the connection is reset and its unsent bytes are
/// discarded, so an abandoned request never goes out late and never leaves
/// a reply behind for the next one.
pub struct Connector {
    spec: ConnectorSpec,
    precision: String,
    timeout: Duration,
    /// The idle, handshaken connection (`None` while a request is in
    /// flight, or before the first one).
    conn: Option<TcpStream>,
    /// Index of the URL to try next.
    next_url: usize,
    seq: i32,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("spec", &self.spec)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// A connection with a request in flight. Dropped without [`InFlight::done`]
/// (the request abandoned or failed), it is closed with a reset
/// (`SO_LINGER` 0): whatever the kernel still holds of the request is
/// discarded rather than sent after the sender gave up on it.
struct InFlight(Option<TcpStream>);

impl InFlight {
    fn stream(&mut self) -> &mut TcpStream {
        self.0.as_mut().expect("in flight")
    }

    /// The request was answered: the connection is idle and reusable.
    fn done(mut self) -> TcpStream {
        self.0.take().expect("in flight")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            // Every path but an answered request: abandoned, timed out,
            // failed, or refused by status (then nothing is pending and
            // the reset costs nothing).
            let _ = s.set_zero_linger();
        }
    }
}

impl Connector {
    /// A connector for `spec`, sending our timestamp `precision` in the
    /// handshake and giving up on an unanswered call after `timeout`.
    pub fn new(spec: ConnectorSpec, precision: &str, timeout: Duration) -> Connector {
        Connector {
            spec,
            precision: precision.into(),
            timeout,
            conn: None,
            next_url: 0,
            seq: 0,
        }
    }

    /// The validated settings.
    pub fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    /// Sends `events` and waits for the receiver's acknowledgement.
    /// Deletions are not sent: IoTDB 1.2's `pipeTransfer` has no request for
    /// them (1.2 does not propagate deletions either).
    ///
    /// Cancel-safe: dropping the returned future abandons the request; its
    /// connection is reset (nothing more of it goes out, and no reply to it
    /// is ever read), and the next transfer connects afresh.
    ///
    /// # Errors
    /// Connection failures, timeouts and non-success statuses; the
    /// connection is dropped so the next attempt reconnects (to the next
    /// URL).
    pub async fn transfer(&mut self, events: &[PipeEvent]) -> Result<(), TransferError> {
        let tablets: Vec<&[u8]> = events
            .iter()
            .filter_map(|e| match e {
                PipeEvent::Tablet(b) => Some(&b[..]),
                PipeEvent::Delete { .. } => None,
            })
            .collect();
        let ConnectorSpec::ThriftSync { urls, .. } = &self.spec else {
            return Ok(());
        };
        if tablets.is_empty() {
            return Ok(());
        }
        // The body goes out in parts, straight from the events' buffers.
        let head;
        let (kind, parts): (i16, Vec<&[u8]>) = if tablets.len() == 1 {
            (pipe::TRANSFER_TABLET_RAW, tablets)
        } else {
            head = pipe::batch_head(tablets.len());
            let mut parts = Vec::with_capacity(tablets.len() + 1);
            parts.push(&head[..]);
            parts.extend(tablets);
            (pipe::TRANSFER_TABLET_BATCH, parts)
        };
        // The connection is taken out for the call and put back only when
        // the call succeeded (see `InFlight`).
        let mut conn = match self.conn.take() {
            Some(s) => InFlight(Some(s)),
            None => {
                let urls = urls.clone();
                self.connect(&urls).await?
            }
        };
        let resp = self.rpc(conn.stream(), kind, &parts).await?;
        if resp.status.code != 200 {
            return Err(TransferError(format!(
                "receiver answered {}: {}",
                resp.status.code,
                resp.status.message.unwrap_or_default()
            )));
        }
        self.conn = Some(conn.done());
        Ok(())
    }

    /// Connects to the URLs in turn, starting at the next one, and
    /// handshakes. The connection is the caller's only once handshaken.
    async fn connect(&mut self, urls: &[(String, u16)]) -> Result<InFlight, TransferError> {
        let mut errors = Vec::new();
        for k in 0..urls.len() {
            let i = (self.next_url + k) % urls.len();
            let (h, p) = &urls[i];
            let addr = format!("{h}:{p}");
            match tokio::time::timeout(self.timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let mut conn = InFlight(Some(s));
                    let hs = pipe::handshake_body(&self.precision);
                    match self.rpc(conn.stream(), pipe::HANDSHAKE, &[&hs]).await {
                        Ok(r) if r.status.code == 200 => {
                            self.next_url = i;
                            info!(target_addr = %addr, "pipe connector connected");
                            return Ok(conn);
                        }
                        Ok(r) => errors.push(format!(
                            "{addr}: handshake refused ({}: {})",
                            r.status.code,
                            r.status.message.unwrap_or_default()
                        )),
                        Err(e) => errors.push(format!("{addr}: {e}")),
                    }
                }
                Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
                Err(_) => errors.push(format!(
                    "{addr}: connect timed out after {:?}",
                    self.timeout
                )),
            }
        }
        self.next_url = (self.next_url + 1) % urls.len();
        Err(TransferError(format!(
            "all target servers are unavailable: {}",
            errors.join("; ")
        )))
    }

    /// One `pipeTransfer` call on `s`: the frame is written around the
    /// body's parts, not copied with them.
    async fn rpc(
        &mut self,
        s: &mut TcpStream,
        kind: i16,
        body: &[&[u8]],
    ) -> Result<TPipeTransferResp, TransferError> {
        self.seq = self.seq.wrapping_add(1);
        let len = body.iter().map(|p| p.len()).sum();
        let head = pipe::call_head(self.seq, kind, len);
        let timeout = self.timeout;
        let io = async {
            s.write_all(&head).await?;
            for part in body {
                s.write_all(part).await?;
            }
            s.write_all(&pipe::TAIL).await?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let n = i32::from_be_bytes(len);
            if !(1..=64 << 20).contains(&n) {
                return Err(std::io::Error::other(format!("reply frame of {n} bytes")));
            }
            let mut buf = vec![0u8; n as usize];
            s.read_exact(&mut buf).await?;
            Ok(buf)
        };
        let buf = match tokio::time::timeout(timeout, io).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(TransferError(format!("connection failed: {e}"))),
            Err(_) => {
                return Err(TransferError(format!(
                    "no reply within {timeout:?} (pipe_connector_timeout_ms)"
                )))
            }
        };
        debug!(bytes = len, "pipeTransfer answered");
        read_reply::<TPipeTransferResp>(&buf)
            .map_err(|e| TransferError(format!("reply does not decode: {e}")))
    }
}
