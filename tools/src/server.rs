//! `edgepipe server`: runs a node until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use node::config::NodeConfig;

/// Options of `edgepipe server`.
#[derive(Debug, Args)]
pub struct ServerOpt {
    /// A configuration file in IoTDB's properties format (rpc_port=6667 ...);
    /// `LOAD CONFIGURATION` reads it again.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the change log and the store live (overrides data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The client RPC port (overrides rpc_port; 0 picks a free port).
    #[arg(long)]
    pub rpc_port: Option<u16>,
    /// The address to listen on (overrides rpc_address).
    #[arg(long)]
    pub rpc_address: Option<String>,
}

impl ServerOpt {
    /// The configuration: file, then command-line overrides.
    ///
    /// # Errors
    /// An unreadable or invalid configuration file.
    pub fn config(&self) -> anyhow::Result<NodeConfig> {
        let mut c = match &self.config {
            // Absolute, so that LOAD CONFIGURATION reads the same file.
            Some(p) => NodeConfig::load(&std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .map_err(anyhow::Error::msg)?,
            None => NodeConfig::default(),
        };
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(p) = self.rpc_port {
            c.rpc_port = p;
        }
        if let Some(a) = &self.rpc_address {
            c.rpc_address = a.clone();
        }
        Ok(c)
    }
}

/// The shutdown signal: SIGTERM or Ctrl-C. The handlers are installed when
/// this is called, not when the future is first polled, so a signal that
/// arrives after the node announced it listens is never lost (the default
/// action would kill the process without a clean close).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Runs the node. Prints `edgepipe server listening on ADDR` once the port
/// is bound (scripts and tests read it), after `edgepipe metrics listening
/// on ADDR` when the metrics endpoint is on, and stops gracefully on SIGTERM or
/// Ctrl-C: connections finish, the store flushes, the log is marked clean.
///
/// # Errors
/// Configuration, data directory or bind failures.
pub fn run(opt: ServerOpt) -> anyhow::Result<()> {
    let config = opt.config()?;
    // Before the runtime's threads: they allocate from the first request on.
    let heap = crate::malloc::bound_heap();
    if !heap.is_empty() {
        tracing::debug!(set = ?heap, "allocator bounds");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = format!("{}:{}", config.rpc_address, config.rpc_port);
        let data_dir = config.data_dir.clone();
        // Bind first: a node that cannot listen (the port is taken) must not
        // leave a new data directory behind. Connections that arrive before
        // the node is open wait in the listen backlog.
        let listener = node::server::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let metrics = node::metrics::bind(&config)
            .await
            .map_err(anyhow::Error::msg)?;
        // A key store that cannot be used is named as such, before any
        // data directory is made (the node reads it again when it opens).
        node::server::Tls::from_config(&config).map_err(anyhow::Error::msg)?;
        let existed = data_dir.exists();
        let node = match node::Node::open(config) {
            Ok(n) => n,
            Err(e) => {
                if !existed {
                    let _ = std::fs::remove_dir_all(&data_dir);
                }
                return Err(anyhow::Error::msg(e))
                    .with_context(|| format!("cannot open data directory {}", data_dir.display()));
            }
        };
        let shutdown = shutdown_signal().context("cannot install the SIGTERM/SIGINT handlers")?;
        node.restore_pipe_server();
        if let Some(m) = metrics {
            println!("edgepipe metrics listening on {}", m.local_addr()?);
            node.serve_metrics(m);
        }
        println!("edgepipe server listening on {}", listener.local_addr()?);
        node.serve(listener, shutdown).await;
        tracing::info!("shutting down");
        node.close().map_err(anyhow::Error::msg)?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}
