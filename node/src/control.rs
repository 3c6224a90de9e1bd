//! What the receiving side's statements act on: `START` / `STOP` / `SHOW
//! PIPESERVER`, `LOAD CONFIGURATION`, and the incoming pipes `SHOW PIPES`
//! lists (seed 000).
//!
//! `LOAD CONFIGURATION` reads the node's configuration file again (the
//! `--config` it started with) and compares it with what the file said
//! before, key by key (command-line overrides are not in the file, so they
//! never look changed). The whole file must be valid, else nothing
//! changes. Keys that take effect at once:
//!
//! | key | effect |
//! |---|---|
//! | `ip_white_list` | every connection's next request (and the pipe server's next accept) |
//! | `legacy_receiver_version` | the next legacy handshake |
//! | `pipe_receiver_max_file_size` | the next file piece |
//! | `dn_connection_timeout_ms` | every connection's next wait |
//! | `max_number_of_sync_file_retry`, `pipe_connector_retry_interval_ms` | each pipe's next failure |
//! | `pipe_auto_restart_enabled` | at once: off, the pipes waiting to restart stay STOPPED; on, pipes that stop from then on restart |
//! | `pipe_auto_restart_interval_init_ms` | each pipe's next stop |
//! | `pipe_auto_restart_interval_max_ms` | each pipe's next stop, and a waiting pipe due later than the new maximum from now restarts within it |
//! | `pipe_connector_timeout_ms` | connectors made from now on (a pipe's, at its next START when no running pipe shares it) |
//! | `pipe_server_port` | the next `START PIPESERVER` |
//!
//! Every other changed key is reported as needing a restart. The answer is
//! one row per changed key: `Key`, `Value` (as the file now says; empty when
//! the key was removed and its default applies), `Effect`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use protocol::types::status;
use tracing::info;

use crate::config::NodeConfig;
use crate::server::{Limits, PipeServer};
use crate::store::StoreError;

/// The effect of a changed key applied at once.
pub const APPLIED: &str = "applied";
/// The effect of a changed key that needs a restart.
pub const NEEDS_RESTART: &str = "needs a restart";
/// The effect of a changed `pipe_server_port`.
pub const AT_NEXT_START: &str = "applied at the next START PIPESERVER";

/// The receiving side's controls (see the module doc).
pub struct Control {
    receiver: Arc<receiver::Receiver>,
    pipe_server: Arc<PipeServer>,
    pipes: Arc<replicator::PipeManager>,
    limits: Limits,
    /// The pipes' settings as last given to them.
    settings: Mutex<replicator::Settings>,
    /// The configuration file and the keys it set when last read.
    file: Mutex<(Option<PathBuf>, BTreeMap<String, String>)>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("pipe_server", &self.pipe_server)
            .finish()
    }
}

impl Control {
    /// The controls of a node: its receiving side, pipe server, pipes (with
    /// the settings they were given) and connection limits; `entries` are
    /// the keys its configuration file set (see
    /// [`NodeConfig::load_entries`]).
    pub fn new(
        receiver: Arc<receiver::Receiver>,
        pipe_server: Arc<PipeServer>,
        pipes: Arc<replicator::PipeManager>,
        settings: replicator::Settings,
        limits: Limits,
        file: Option<PathBuf>,
        entries: BTreeMap<String, String>,
    ) -> Control {
        Control {
            receiver,
            pipe_server,
            pipes,
            limits,
            settings: Mutex::new(settings),
            file: Mutex::new((file, entries)),
        }
    }

    /// The receiving side.
    pub fn receiver(&self) -> &Arc<receiver::Receiver> {
        &self.receiver
    }

    /// The pipe server.
    pub fn pipe_server(&self) -> &Arc<PipeServer> {
        &self.pipe_server
    }

    /// `START PIPESERVER`.
    ///
    /// # Errors
    /// 1108 PIPESERVER_ERROR naming why the port cannot be listened on.
    pub fn start_pipe_server(&self) -> Result<(), StoreError> {
        self.pipe_server
            .start()
            .map(|_| ())
            .map_err(|m| StoreError::new(status::PIPESERVER_ERROR, m))
    }

    /// `STOP PIPESERVER`.
    ///
    /// # Errors
    /// 328 while a sender's pipe runs into the pipe server.
    pub fn stop_pipe_server(&self) -> Result<(), StoreError> {
        let running = self.receiver.registry().running_via_pipe_server();
        self.pipe_server
            .stop(running)
            .map_err(|(code, m)| StoreError::new(code, m))
    }

    /// `LOAD CONFIGURATION`: one `[key, value, effect]` per changed key.
    ///
    /// # Errors
    /// No configuration file, or one that is unreadable or invalid (naming
    /// the line and key): nothing is changed then.
    pub fn reload(&self) -> Result<Vec<[String; 3]>, StoreError> {
        let mut file = self.file.lock().expect("config lock");
        let Some(path) = file.0.clone() else {
            return Err(StoreError::new(
                status::EXECUTE_STATEMENT_ERROR,
                "this node was started without a configuration file (edgepipe server --config FILE): there is nothing to load",
            ));
        };
        let (c, entries) = NodeConfig::load_entries(&path).map_err(|m| {
            StoreError::new(
                status::EXECUTE_STATEMENT_ERROR,
                format!("nothing was changed: {m}"),
            )
        })?;
        let old = &file.1;
        let changed: Vec<&String> = old
            .keys()
            .chain(entries.keys())
            .filter(|k| old.get(*k) != entries.get(*k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = Vec::new();
        let mut settings = self.settings.lock().expect("settings lock").clone();
        let mut pipes_changed = false;
        for key in changed {
            let effect = match key.as_str() {
                "ip_white_list" => {
                    self.receiver.set_ip_white_list(c.ip_white_list.clone());
                    APPLIED
                }
                "legacy_receiver_version" => {
                    self.receiver.set_version(c.legacy_receiver_version.clone());
                    APPLIED
                }
                "pipe_receiver_max_file_size" => {
                    self.receiver
                        .set_max_file_size(c.pipe_receiver_max_file_size);
                    APPLIED
                }
                "dn_connection_timeout_ms" => {
                    self.limits.timeout.set(c.connection_timeout);
                    APPLIED
                }
                "max_number_of_sync_file_retry" => {
                    settings.max_retry = c.max_sync_retry;
                    pipes_changed = true;
                    APPLIED
                }
                "pipe_connector_retry_interval_ms" => {
                    settings.retry_base = c.pipe_retry_interval;
                    pipes_changed = true;
                    APPLIED
                }
                "pipe_connector_timeout_ms" => {
                    settings.timeout = c.pipe_connector_timeout;
                    pipes_changed = true;
                    APPLIED
                }
                "pipe_auto_restart_enabled" => {
                    settings.auto_restart = c.pipe_auto_restart;
                    pipes_changed = true;
                    APPLIED
                }
                "pipe_auto_restart_interval_init_ms" => {
                    settings.restart_base = c.pipe_restart_interval;
                    pipes_changed = true;
                    APPLIED
                }
                "pipe_auto_restart_interval_max_ms" => {
                    settings.restart_cap = c.pipe_restart_interval_max;
                    pipes_changed = true;
                    APPLIED
                }
                "pipe_server_port" => {
                    self.pipe_server.set_port(c.pipe_server_port);
                    AT_NEXT_START
                }
                _ => NEEDS_RESTART,
            };
            let value = entries.get(key).cloned().unwrap_or_default();
            info!(key = %key, value = %value, effect, "LOAD CONFIGURATION");
            out.push([key.clone(), value, effect.to_string()]);
        }
        if pipes_changed {
            self.pipes.update_settings(settings.clone());
            *self.settings.lock().expect("settings lock") = settings;
        }
        file.1 = entries;
        Ok(out)
    }
}
