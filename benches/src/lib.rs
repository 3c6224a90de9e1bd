//! Shared pieces of the end-to-end benchmarks: an in-process node serving
//! the client RPC on a loopback port ([`BenchNode`]), real server
//! processes ([`cluster`]), the NATS JetStream yardstick ([`nats`]), a
//! rate-limited link ([`proxy`]), sensor-like data ([`sensor`]), what
//! `/proc` says about the machine and a process ([`sys`]), and TLS between
//! the nodes ([`tls`]).
#![deny(missing_docs)]

pub mod cluster;
pub mod nats;
pub mod proxy;
pub mod sensor;
pub mod sys;
pub mod tls;

use std::path::Path;
use std::sync::Arc;

use node::config::NodeConfig;

/// A node running in this process on 127.0.0.1.
pub struct BenchNode {
    /// Its client RPC port.
    pub port: u16,
    /// The node (store, service).
    pub node: Arc<node::Node>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BenchNode {
    /// Starts a node with `config` (its data directory under `dir`).
    pub fn start(dir: &Path, mut config: NodeConfig) -> BenchNode {
        config.data_dir = dir.to_path_buf();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                // The node's pipes run on this runtime.
                let node = Arc::new(node::Node::open(config).expect("open node"));
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                port_tx
                    .send((l.local_addr().expect("addr").port(), node.clone()))
                    .expect("send port");
                node.serve(l, async {
                    let _ = stop_rx.await;
                })
                .await;
                let _ = node.close();
            });
        });
        let (port, node) = port_rx.recv().expect("port");
        BenchNode {
            port,
            node,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
