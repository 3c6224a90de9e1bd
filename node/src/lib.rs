//! An edgepipe node: what an IoTDB application talks to.
//!
//! # Layout
//! - [`sql`]: IoTDB's SQL dialect, parsed into statements.
//! - [`event`]: what the node writes to its change log.
//! - [`store`] and [`chunkfile`]: the durable, queryable time-series store.
//! - [`history`]: the store as the source of a pipe's history when the
//!   change log no longer holds it whole.
//! - [`exec`]: runs statements against the store, producing results.
//! - [`query`]: SELECT: raw rows, aggregations with GROUP BY time
//!   windows, last points, ALIGN BY DEVICE.
//! - [`service`]: the IoTDB client RPC (sessions, statements, inserts,
//!   paged results) over framed thrift.
//! - [`server`]: the TCP listener, connection tasks and graceful shutdown;
//!   the pipe server (`START PIPESERVER`).
//! - [`control`]: what `START`/`STOP`/`SHOW PIPESERVER` and `LOAD
//!   CONFIGURATION` act on.
//! - [`config`]: the node's configuration file (IoTDB key names).
//! - [`metrics`]: what the node counts and the Prometheus endpoint
//!   (`dn_metric_reporter_list=PROMETHEUS`).
//! - [`client`]: a synchronous client of the same RPC (the CLI, tests).
#![deny(missing_docs)]

pub mod chunkfile;
pub mod client;
pub mod config;
pub mod control;
pub use protocol::event;
pub mod exec;
pub mod history;
pub mod metrics;
pub mod query;
pub mod server;
pub mod service;
pub mod sql;
pub mod store;
pub mod users;

use std::sync::Arc;

/// A node's storage and service, opened from a configuration.
pub struct Node {
    /// The configuration it runs with.
    pub config: config::NodeConfig,
    /// The store (and through it the change log).
    pub store: Arc<store::Store>,
    /// The client RPC service.
    pub service: Arc<service::Service>,
    /// The pipes.
    pub pipes: Arc<replicator::PipeManager>,
    /// The receiving side's controls (pipe server, `LOAD CONFIGURATION`).
    pub control: Arc<control::Control>,
    /// The connection limits, shared by the client port and the pipe
    /// server (its timeout changes with `LOAD CONFIGURATION`).
    pub limits: server::Limits,
    /// What a metrics scrape shows.
    pub exporter: Arc<metrics::Exporter>,
    /// The metrics endpoint's task, while it serves (ended by `close`).
    metrics_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// TLS on the client port and the pipe server (`enable_thrift_ssl`).
    pub tls: Option<server::Tls>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("data_dir", &self.config.data_dir)
            .finish()
    }
}

/// A change-log error at start, with the node's way out.
fn change_log_error(e: wal::Error) -> String {
    match &e {
        wal::Error::Corruption { path, offset, .. } => format!(
            "change log: {e}. The damage is past what the store has checkpointed: records from offset {offset} on were acknowledged but exist only there. To start anyway without them, set wal_recovery_mode=tolerate-any-corruption in the configuration file; or restore {} from a backup",
            path.display()
        ),
        _ => format!("change log: {e}"),
    }
}

impl Node {
    /// Opens the change log (`DATA/wal`) and the store (`DATA/store`),
    /// recovering both. The store's checkpoint is the truth up to its
    /// offset: damage to the log below it never stops the start.
    ///
    /// # Errors
    /// A locked, damaged or unreadable data directory, with the reason and
    /// what to do about it.
    pub fn open(config: config::NodeConfig) -> Result<Node, String> {
        config.validate()?;
        // Read before anything is opened: a key store that cannot serve
        // stops the start with its reason.
        let tls = server::Tls::from_config(&config)?;
        let dir = &config.data_dir;
        // Read before the log opens: damage to what the store has applied
        // must not keep the log from opening. (A store whose checkpoints
        // are both damaged is the store's to report, below.)
        let floor = store::recovery_floor(&dir.join("store")).unwrap_or(None);
        let wal_config = wal::Config {
            fsync: config.fsync,
            segment_bytes: config.wal_segment_bytes,
            recovery_mode: config.wal_recovery_mode,
            recovery_floor: floor,
            // Segments go once the store has checkpointed them and every
            // pipe has committed past them, or when a bound forces it.
            retention_bytes: Some(0),
            max_pinned_bytes: Some(config.wal_max_pinned_bytes),
            max_disk_bytes: Some(config.wal_max_disk_bytes),
            ..wal::Config::default()
        };
        let log = wal::Log::open(dir.join("wal"), wal_config).map_err(change_log_error)?;
        let store_config = store::StoreConfig {
            auto_create_schema: config.auto_create_schema,
            default_database_level: config.default_database_level,
            flush_points: config.flush_points,
        };
        let store = Arc::new(
            store::Store::open(&dir.join("store"), Arc::new(log), store_config)
                .map_err(|e| format!("store: {e}"))?,
        );
        let system = dir.join("system");
        let users = Arc::new(users::Users::open(&system, &config.root_password)?);
        let settings = replicator::Settings {
            precision: config.precision.name().to_string(),
            units_per_sec: match config.precision {
                exec::Precision::Ms => 1_000,
                exec::Precision::Us => 1_000_000,
                exec::Precision::Ns => 1_000_000_000,
            },
            max_retry: config.max_sync_retry,
            retry_base: config.pipe_retry_interval,
            timeout: config.pipe_connector_timeout,
            async_selectors: config.pipe_async_selectors,
            async_core_clients: config.pipe_async_core_clients,
            async_max_clients: config.pipe_async_max_clients,
            auto_restart: config.pipe_auto_restart,
            restart_base: config.pipe_restart_interval,
            restart_cap: config.pipe_restart_interval_max,
            database_of: {
                let st = store.clone();
                replicator::plugin::DatabaseOf(Arc::new(move |path| st.database_of(path)))
            },
            ..replicator::Settings::default()
        };
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "Node::open must run inside a tokio runtime".to_string())?;
        // A pipe whose history the change log no longer holds whole (its
        // segments went once the store had checkpointed them) reads it
        // from a snapshot of the store.
        let history: Arc<dyn replicator::history::HistorySource> =
            Arc::new(history::StoreHistory::new(store.clone()));
        let pipes = Arc::new(
            replicator::PipeManager::open_with_history(
                store.log().clone(),
                &system,
                settings.clone(),
                handle.clone(),
                Some(history),
            )
            .map_err(|e| format!("pipes: {e}"))?,
        );
        // Files a crash left half-received are deleted here.
        let receiver = Arc::new(receiver::Receiver::open(receiver::ReceiverConfig {
            precision: config.precision.name().to_string(),
            dir: system.join("pipe").join("receiver"),
            ip_white_list: config.ip_white_list.clone(),
            version: config.legacy_receiver_version.clone(),
            max_file_size: config.pipe_receiver_max_file_size,
        })?);
        // A compressed pipeTransfer unpacks to no more than a frame carries.
        receiver.set_max_request(config.max_frame_size);
        let limits = server::Limits::from_config(&config);
        let pipe_server = Arc::new(server::PipeServer::new(
            &config,
            limits.clone(),
            tls.clone(),
            &system,
            handle,
        ));
        // What the file set, to tell what LOAD CONFIGURATION changes.
        let entries = match &config.file {
            Some(p) => config::NodeConfig::load_entries(p)?.1,
            None => Default::default(),
        };
        let control = Arc::new(control::Control::new(
            receiver.clone(),
            pipe_server.clone(),
            pipes.clone(),
            settings,
            limits.clone(),
            config.file.clone(),
            entries,
        ));
        let exec = exec::Executor::new(store.clone())
            .with_pipes(pipes.clone(), users)
            .with_receiver(control.clone());
        let service = Arc::new(
            service::Service::new(
                exec,
                config.precision,
                config.root_password.clone(),
                receiver,
            )
            .with_auto_create_schema(config.auto_create_schema),
        );
        pipe_server.set_service(&service);
        let exporter = Arc::new(metrics::Exporter::new(
            store.clone(),
            Some(pipes.clone()),
            service.rpc_metrics(),
        ));
        Ok(Node {
            config,
            store,
            service,
            pipes,
            control,
            limits,
            exporter,
            metrics_task: std::sync::Mutex::new(None),
            tls,
        })
    }

    /// Serves the metrics endpoint on `listener` (see [`metrics::bind`])
    /// until [`Node::close`]. Call it inside the node's runtime.
    pub fn serve_metrics(&self, listener: tokio::net::TcpListener) {
        let task = tokio::spawn(metrics::serve(listener, self.exporter.clone()));
        let old = self
            .metrics_task
            .lock()
            .expect("metrics task lock")
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Serves the client RPC on `listener` (with TLS when
    /// `enable_thrift_ssl`) until `shutdown` completes, and the pipe server
    /// if it ran when the node last stopped (a port that cannot be bound is
    /// logged, and the node serves without it).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future,
    ) {
        if let Ok(client) = listener.local_addr() {
            // What a pipe of this node must not point at (A→A).
            self.control
                .set_listening(client, self.config.pipe_server_port);
        }
        self.restore_pipe_server();
        let pipe_server = self.control.pipe_server();
        server::run(
            listener,
            self.service.clone(),
            self.limits.clone(),
            self.tls.clone(),
            shutdown,
        )
        .await;
        let ps = pipe_server.clone();
        let _ = tokio::task::spawn_blocking(move || ps.shutdown()).await;
    }

    /// Starts the pipe server if it ran when the node last stopped (as IoTDB
    /// 0.14's receiver did); a port that cannot be bound is logged, and the
    /// node serves without it. Nothing happens when it runs already.
    pub fn restore_pipe_server(&self) {
        let pipe_server = self.control.pipe_server();
        if pipe_server.was_enabled() && !pipe_server.enabled() {
            match pipe_server.start() {
                Ok(addr) => {
                    tracing::info!(%addr, "pipe server restored: it ran when the node stopped")
                }
                Err(e) => {
                    tracing::error!(cause = %e, "the pipe server ran when the node stopped but cannot start now; START PIPESERVER once the port is free")
                }
            }
        }
    }

    /// Flushes the store and closes the change log cleanly.
    ///
    /// # Errors
    /// Flush or close failures; the next start recovers as after a crash.
    pub fn close(&self) -> Result<(), String> {
        if let Some(t) = self.metrics_task.lock().expect("metrics task lock").take() {
            t.abort();
        }
        self.control.pipe_server().shutdown();
        self.pipes.shutdown();
        self.store.flush().map_err(|e| format!("flush: {e}"))?;
        self.store
            .log()
            .close()
            .map_err(|e| format!("close the change log: {e}"))
    }
}
