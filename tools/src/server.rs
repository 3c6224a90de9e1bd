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

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the node. Prints `edgepipe server listening on ADDR` once the port
/// is bound (scripts and tests read it), and stops gracefully on SIGTERM or
/// Ctrl-C: connections finish, the store flushes, the log is marked clean.
///
/// # Errors
/// Configuration, data directory or bind failures.
pub fn run(opt: ServerOpt) -> anyhow::Result<()> {
    let config = opt.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = format!("{}:{}", config.rpc_address, config.rpc_port);
        let data_dir = config.data_dir.clone();
        let node = node::Node::open(config)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
        let listener = node::server::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        println!("edgepipe server listening on {}", listener.local_addr()?);
        node.serve(listener, shutdown_signal()).await;
        tracing::info!("shutting down");
        node.close().map_err(anyhow::Error::msg)?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}
