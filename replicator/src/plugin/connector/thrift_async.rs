//! `iotdb-thrift-async-connector`: IoTDB 1.2's `pipeTransfer`, several
//! requests in flight over pooled connections, spread over the node URLs.
//!
//! # The pool
//! Each target node (`connector.ip:port`, `connector.node-urls`) has a pool
//! of handshaken clients (`thrift_sync::Client`): at most
//! `pipe_async_connector_max_client_number` (default 16) open at once, of
//! which up to `pipe_async_connector_core_client_number` (default 8) are
//! kept open while idle. Requests go to the nodes in turn (the next node
//! when one cannot be reached). Their socket I/O runs on the node's
//! *selector* threads (`pipe_async_connector_selector_number`, default 1;
//! [`Selectors`]), as IoTDB's selector threads drive its async clients, so
//! a pipe task only hands requests out and collects replies. An idle
//! connection the receiver closed meanwhile is noticed before use and
//! replaced, without a failure (see `Client::closed_by_peer`).
//!
//! # What the pipe task guarantees around it (see `task.rs`)
//! - The committed offset advances only over a contiguous acknowledged
//!   prefix of the log: at-least-once as with the sync connector.
//! - Order: the seed says the async connector does not keep the source's
//!   apply order, and across devices it does not. Within a device it does:
//!   every tablet of a device goes through the same *lane* (chosen by a
//!   hash of the device), and a lane has one request in flight, retried
//!   until acknowledged before the next is sent. Two requests touching the
//!   same series are therefore never in flight together, and the receiver
//!   applies each series' writes in log order, so its final state equals
//!   the edge's.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::debug;

use super::thrift_sync::Client;
use super::transport::LazyTls;
use super::wire::Wire;
use super::{Batching, ConnectorSpec, TransferError};

/// The selector threads: a runtime of their own that drives every async
/// connector's sockets. Shut down (without waiting) when dropped, which is
/// allowed anywhere, also on another runtime's worker thread.
pub struct Selectors {
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Selectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selectors").finish()
    }
}

impl Selectors {
    /// Starts `threads` selector threads (at least one).
    ///
    /// # Errors
    /// The operating system refused the threads.
    pub fn start(threads: usize) -> std::io::Result<Selectors> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("pipe-selector")
            .enable_all()
            .build()?;
        Ok(Selectors { rt: Some(rt) })
    }

    /// Where requests run.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.as_ref().expect("running").handle().clone()
    }
}

impl Drop for Selectors {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The pool of one target node.
struct Endpoint {
    /// The node's host and port.
    host: String,
    port: u16,
    /// Idle, handshaken clients (at most the core number).
    idle: Mutex<Vec<Client>>,
    /// One permit per client in use: at most the max number in flight.
    busy: Arc<Semaphore>,
}

/// A live `iotdb-thrift-async-connector`, shared by the pipes whose
/// connector attributes are identical.
pub struct AsyncConnector {
    spec: ConnectorSpec,
    batching: Batching,
    /// `connector.ssl.*`.
    tls: LazyTls,
    precision: String,
    timeout: Duration,
    selectors: tokio::runtime::Handle,
    endpoints: Vec<Endpoint>,
    /// The node the next request goes to.
    next: AtomicUsize,
    /// Idle clients kept per node.
    core: usize,
    /// Clients in use at most per node.
    max: usize,
    /// Set once a receiver answered a batch with 1801: single tablets from
    /// then on.
    singles: AtomicBool,
    /// Compressors and rate limit, shared by every pooled connection.
    wire: Arc<Wire>,
}

impl std::fmt::Debug for AsyncConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnector")
            .field("spec", &self.spec)
            .field("core", &self.core)
            .field("max", &self.max)
            .finish()
    }
}

/// The pool sizes (node settings).
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// `pipe_async_connector_core_client_number`.
    pub core: usize,
    /// `pipe_async_connector_max_client_number`.
    pub max: usize,
}

impl AsyncConnector {
    /// A connector for `spec` (an `iotdb-thrift-async-connector` one),
    /// running its requests on `selectors`.
    pub fn new(
        spec: ConnectorSpec,
        precision: &str,
        timeout: Duration,
        size: PoolSize,
        selectors: tokio::runtime::Handle,
    ) -> AsyncConnector {
        let (urls, batching, tls, wire) = match &spec {
            ConnectorSpec::ThriftAsync {
                urls,
                batch,
                tls,
                wire,
            }
            | ConnectorSpec::ThriftSync {
                urls,
                batch,
                tls,
                wire,
            } => (urls.clone(), *batch, tls.clone(), Wire::new(wire)),
            // Not pipeTransfer: no endpoints (a request fails, see `run`).
            ConnectorSpec::DoNothing | ConnectorSpec::Legacy(_) => (
                Vec::new(),
                super::Batching::default(),
                None,
                Wire::default(),
            ),
        };
        let max = size.max.max(1);
        AsyncConnector {
            endpoints: urls
                .iter()
                .map(|(h, p)| Endpoint {
                    host: h.clone(),
                    port: *p,
                    idle: Mutex::new(Vec::new()),
                    busy: Arc::new(Semaphore::new(max)),
                })
                .collect(),
            spec,
            batching,
            tls: LazyTls::new(tls),
            precision: precision.into(),
            timeout,
            selectors,
            next: AtomicUsize::new(0),
            core: size.core.clamp(1, max),
            max,
            singles: AtomicBool::new(false),
            wire: Arc::new(wire),
        }
    }

    /// The validated settings.
    pub fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    /// How many requests a pipe may have in flight: the max client number
    /// of each target node.
    pub fn lanes(&self) -> usize {
        (self.max * self.endpoints.len()).max(1)
    }

    /// The most tablet bytes of one request.
    pub fn request_bytes(&self) -> usize {
        self.batching.size_bytes
    }

    /// Sends `tablets[sent..]` (tablet bodies) as one request (one batch,
    /// or one tablet per call on the same connection when batching is off)
    /// on a pooled connection, on the selector threads. The returned
    /// [`Request`] resolves to how many tablets were acknowledged and the
    /// outcome.
    pub fn send(self: &Arc<Self>, tablets: Vec<Bytes>, sent: usize) -> Request {
        let me = self.clone();
        let handle = self.selectors.spawn(async move {
            let mut sent = sent;
            let r = me.run(&tablets, &mut sent).await;
            (sent, r)
        });
        Request {
            handle: Some(handle),
        }
    }

    /// One request: a client of the next reachable node, the tablets, the
    /// client back to the pool.
    async fn run(&self, tablets: &[Bytes], sent: &mut usize) -> Result<(), TransferError> {
        if self.endpoints.is_empty() {
            if self.spec == ConnectorSpec::DoNothing {
                *sent = tablets.len();
                return Ok(());
            }
            return Err(TransferError(
                "the legacy protocol is not pipeTransfer: a legacy connector sends it".into(),
            ));
        }
        let n = self.endpoints.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for k in 0..n {
            let ep = &self.endpoints[(first + k) % n];
            let _permit = ep
                .busy
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let mut client = match self.idle_client(ep) {
                Some(c) => c,
                None => {
                    // The trust store only matters for a new connection.
                    let tls = self.tls.get().map_err(TransferError)?;
                    match Client::connect(
                        (&ep.host, ep.port),
                        tls.as_ref(),
                        &self.precision,
                        self.timeout,
                        self.wire.clone(),
                    )
                    .await
                    {
                        Ok(c) => c,
                        Err(e) => {
                            errors.push(e.0);
                            continue;
                        }
                    }
                }
            };
            let bodies: Vec<&[u8]> = tablets.iter().map(|b| &b[..]).collect();
            let r = client
                .send_tablets(&bodies, sent, &self.batching, &self.singles, self.timeout)
                .await;
            self.put_back(ep, client);
            return r;
        }
        Err(TransferError(format!(
            "all target servers are unavailable: {}",
            errors.join("; ")
        )))
    }

    /// An idle client of `ep` that the receiver has not closed, if any.
    fn idle_client(&self, ep: &Endpoint) -> Option<Client> {
        let mut idle = ep.idle.lock().expect("pool");
        while let Some(c) = idle.pop() {
            if c.closed_by_peer() {
                debug!(target_addr = %c.addr, "the receiver closed an idle connection; replacing it");
                continue;
            }
            return Some(c);
        }
        None
    }

    /// Keeps `client` for the next request (up to the core number idle),
    /// unless its request failed on the connection (then it is dropped,
    /// with a reset).
    fn put_back(&self, ep: &Endpoint, client: Client) {
        if client.is_idle() {
            let mut idle = ep.idle.lock().expect("pool");
            if idle.len() < self.core {
                idle.push(client);
            }
        }
    }
}

/// The lane of a tablet body: a hash of its device (the string it starts
/// with), so every tablet of a device takes the same lane.
pub fn lane_of(tablet: &[u8], lanes: usize) -> usize {
    let device = tablet
        .get(..4)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4")).max(0) as usize)
        .and_then(|n| tablet.get(4..4 + n))
        .unwrap_or(tablet);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    device.hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
}

/// A request in flight on the selector threads. Dropping it abandons the
/// request (the task is aborted: its connection is reset, see `thrift_sync::Client`);
/// [`Request::cancel`] also waits until that happened.
pub struct Request {
    handle: Option<tokio::task::JoinHandle<(usize, Result<(), TransferError>)>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").finish()
    }
}

impl Request {
    /// Abandons the request without waiting (see [`Request::cancel`]).
    pub fn abort(&self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }

    /// Abandons the request and waits until its task is gone (its
    /// connection reset): nothing more of it is sent after this returns.
    pub async fn cancel(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

impl std::future::Future for Request {
    type Output = (Option<usize>, Result<(), TransferError>);

    /// How many tablets were acknowledged (`None` if the request's task
    /// ended without saying: then nothing more than before is known) and
    /// the outcome.
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let h = self.handle.as_mut().expect("polled after completion");
        match std::pin::Pin::new(h).poll(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                self.handle = None;
                std::task::Poll::Ready(match r {
                    Ok((sent, r)) => (Some(sent), r),
                    Err(e) => (
                        None,
                        Err(TransferError(format!("the request's task ended: {e}"))),
                    ),
                })
            }
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::tablet::{Column, Tablet};

    #[test]
    fn a_device_always_takes_the_same_lane() {
        let t = |device: &str, t0: i64| {
            Tablet {
                device: device.into(),
                measurements: vec!["s".into()],
                columns: vec![Column::Int64(vec![t0])],
                nulls: vec![None],
                times: vec![t0],
                aligned: false,
            }
            .serialize_v12()
        };
        for lanes in [1, 3, 16] {
            let mut used = std::collections::BTreeSet::new();
            for d in 0..64 {
                let dev = format!("root.sg.d{d}");
                let l = lane_of(&t(&dev, 1), lanes);
                assert!(l < lanes);
                assert_eq!(l, lane_of(&t(&dev, 99), lanes), "{dev}");
                used.insert(l);
            }
            assert_eq!(used.len(), lanes, "64 devices spread over {lanes} lanes");
        }
        // A body too short to hold its device still gets a lane.
        assert!(lane_of(&[0, 0, 0, 9], 4) < 4);
    }
}
