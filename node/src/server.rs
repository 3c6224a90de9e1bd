//! The TCP side of the client RPC: framed thrift over tokio, one task per
//! connection, a connection limit, and graceful shutdown.
//!
//! A frame whose length is not positive or exceeds the configured maximum,
//! or whose payload is not thrift, closes that connection with a logged
//! reason; other connections are untouched.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::service::{Connection, Handled, Service};

/// Serves `listener` until `shutdown` completes, then waits (up to 10 s)
/// for connections to finish their current call.
pub async fn run(
    listener: TcpListener,
    service: Arc<Service>,
    max_frame: usize,
    max_connections: usize,
    shutdown: impl Future,
) {
    let (notify_tx, _) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let limit = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore open"),
            _ = &mut shutdown => break,
        };
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
        let _ = socket.set_nodelay(true);
        let service = service.clone();
        let mut stop = notify_tx.subscribe();
        let done = done_tx.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let _done = done;
                serve(socket, peer, &service, max_frame, &mut stop).await;
            }
            .instrument(tracing::info_span!("conn", %peer)),
        );
    }
    drop(notify_tx);
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await;
}

async fn serve(
    mut socket: TcpStream,
    peer: SocketAddr,
    service: &Arc<Service>,
    max_frame: usize,
    stop: &mut broadcast::Receiver<()>,
) {
    debug!("connected");
    let mut conn = Connection::default();
    conn.peer = Some(peer);
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        tokio::select! {
            r = socket.read_exact(&mut len) => {
                if let Err(e) = r {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        debug!(cause = %e, "read failed");
                    }
                    break;
                }
            }
            _ = stop.recv() => break,
        }
        let n = i32::from_be_bytes(len);
        if n <= 0 || n as usize > max_frame {
            warn!(%peer, frame_length = n, max_frame, "closing connection: frame length out of range (is the client speaking framed thrift?)");
            break;
        }
        buf.resize(n as usize, 0);
        if let Err(e) = socket.read_exact(&mut buf).await {
            warn!(%peer, cause = %e, frame_length = n, "closing connection: frame cut short");
            break;
        }
        match service.handle(&mut conn, &buf).await {
            Handled::Reply(frame) => {
                if let Err(e) = socket.write_all(&frame).await {
                    debug!(cause = %e, "write failed");
                    break;
                }
            }
            Handled::Close(reason) => {
                warn!(%peer, reason, "closing connection");
                break;
            }
        }
    }
    debug!("disconnected");
}

/// Binds `addr` and logs where.
///
/// # Errors
/// Bind errors.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    info!(addr = %l.local_addr()?, "client RPC listening");
    Ok(l)
}
