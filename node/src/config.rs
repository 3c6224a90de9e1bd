//! The node's configuration file: IoTDB's `key=value` properties format and
//! IoTDB's key names where IoTDB has one. Unknown keys are warned about;
//! bad values are rejected naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use crate::exec::Precision;

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `rpc_address`: address the client RPC listens on. Default 0.0.0.0.
    pub rpc_address: String,
    /// `rpc_port`: the client RPC port. Default 6667.
    pub rpc_port: u16,
    /// `data_dir` (edgepipe's own key): where the change log and store
    /// live. Default `data`.
    pub data_dir: PathBuf,
    /// `timestamp_precision`: ms, us or ns. Default ms.
    pub precision: Precision,
    /// `enable_auto_create_schema`. Default true.
    pub auto_create_schema: bool,
    /// `default_storage_group_level` (`default_database_level` also
    /// accepted). Default 1.
    pub default_database_level: usize,
    /// `wal_mode`: SYNC (fsync every write), ASYNC (group commit, the
    /// default), DISABLE (no fsync).
    pub fsync: wal::FsyncPolicy,
    /// `thrift_max_frame_size` (`dn_thrift_max_frame_size`): largest
    /// request frame accepted. Default 512 MiB, as IoTDB.
    pub max_frame_size: usize,
    /// `rpc_max_concurrent_client_num`. Default 65535. At the limit, a new
    /// connection displaces the longest-idle one that has not logged in.
    pub max_connections: usize,
    /// `dn_connection_timeout_ms` (`connection_timeout_ms` also accepted):
    /// a connection that has not logged in is closed after this long
    /// without a request; a request frame must arrive within this long
    /// plus one second per 16 KiB; a reply must be taken within it.
    /// Default 60 s, IoTDB's default. Minimum 1 ms.
    pub connection_timeout: Duration,
    /// `rpc_max_frame_bytes_in_flight` (edgepipe's): the most bytes of
    /// request frames being received at once, across connections (each
    /// connection also receives frames up to 64 KiB on its own). A frame
    /// larger than this can never be received. Default 512 MiB (the frame
    /// size limit). Minimum 1024.
    pub max_frame_bytes_in_flight: usize,
    /// `dn_metric_reporter_list`: IoTDB's metric reporters, comma-separated.
    /// `PROMETHEUS` serves the node's metrics in Prometheus' text format at
    /// `http://rpc_address:dn_metric_prometheus_reporter_port/metrics`;
    /// IoTDB's `JMX` and `IOTDB` reporters are accepted and ignored (with a
    /// warning). Default empty: no metrics endpoint.
    pub metric_prometheus: bool,
    /// `dn_metric_prometheus_reporter_port`: the metrics endpoint's port.
    /// Default 9091 (IoTDB 1.2's default); 0 picks a free port.
    pub metric_prometheus_port: u16,
    /// `dn_metric_level`: OFF, CORE, IMPORTANT, NORMAL or ALL. OFF opens no
    /// endpoint; every other level serves all of edgepipe's metrics (one
    /// set, about IoTDB's IMPORTANT level). Default CORE, as IoTDB.
    pub metric_level: crate::metrics::MetricLevel,
    /// The root user's password. Default `root`.
    pub root_password: String,
    /// `max_number_of_sync_file_retry`: retries of a pipe batch. Default 5.
    pub max_sync_retry: u32,
    /// `pipe_connector_timeout_ms`. Default 15 min as IoTDB.
    pub pipe_connector_timeout: Duration,
    /// `pipe_connector_retry_interval_ms`: first retry delay of a failing
    /// pipe batch, doubled each retry (capped at 30 s). Default 1 s.
    pub pipe_retry_interval: Duration,
    /// `pipe_async_connector_selector_number`: threads that drive the
    /// sockets of every `iotdb-thrift-async-connector` of the node (IoTDB's
    /// selector threads). Default 1. Minimum 1.
    pub pipe_async_selectors: usize,
    /// `pipe_async_connector_core_client_number`: idle connections an
    /// async connector keeps open per target node. Default 8. Minimum 1;
    /// above the max client number it counts as that number.
    pub pipe_async_core_clients: usize,
    /// `pipe_async_connector_max_client_number`: connections (requests in
    /// flight) an async connector opens at most per target node. Default
    /// 16. Minimum 1.
    pub pipe_async_max_clients: usize,
    /// `pipe_auto_restart_enabled` (IoTDB's key): restart a pipe that
    /// stopped on its own after its transfers kept failing (after
    /// `max_number_of_sync_file_retry`), for as long as that lasts. A pipe
    /// stopped by `STOP PIPE` stays stopped. Default true.
    pub pipe_auto_restart: bool,
    /// `pipe_auto_restart_interval_init_ms` (edgepipe's, in the style of
    /// IoTDB's `pipe_connector_retry_interval_ms`): the wait before the
    /// first restart; it doubles for each restart in a row that got nothing
    /// acknowledged, up to the max below, jittered by ±25 %. Default 10 s.
    /// Minimum 1 ms.
    pub pipe_restart_interval: Duration,
    /// `pipe_auto_restart_interval_max_ms` (edgepipe's): the longest wait
    /// between restarts, so a pipe runs again at most about this long after
    /// its link returns. Default 3 min (IoTDB checks for pipes to restart
    /// every `pipe_meta_syncer_sync_interval_minutes` = 3). Minimum 1 ms
    /// and at least the initial wait.
    pub pipe_restart_interval_max: Duration,
    /// `ip_white_list`: comma-separated IPv4/IPv6 CIDR blocks of the
    /// senders allowed to write through a pipe (`pipeTransfer`, the legacy
    /// pipe server), checked on the socket's peer address. Default
    /// `0.0.0.0/0,::/0` (everyone); empty admits nobody.
    pub ip_white_list: receiver::whitelist::IpWhiteList,
    /// `enable_thrift_ssl` (IoTDB's key): the client port and the pipe
    /// server serve TLS only, with the certificate of `key_store_path`.
    /// Default false (plain TCP).
    pub enable_thrift_ssl: bool,
    /// `key_store_path` (IoTDB's key): the node's certificate chain and
    /// private key for `enable_thrift_ssl`: a PEM file holding both (e.g.
    /// `cat node.crt node.key > node.pem`, the key unencrypted), or a
    /// PKCS#12 store (`.p12`, what Java's keytool writes since Java 9)
    /// opened with `key_store_pwd`. Read when the node starts. Default
    /// empty.
    pub key_store_path: String,
    /// `key_store_pwd` (IoTDB's key): the password of a PKCS#12
    /// `key_store_path` (unused for PEM). Default empty.
    pub key_store_pwd: String,
    /// `pipe_server_port`: the legacy pipe server's port. Default 6670.
    pub pipe_server_port: u16,
    /// `legacy_receiver_version` (edgepipe's): the IoTDB version this node
    /// claims to a legacy (1.0/1.1 sync) sender, whose handshake is refused
    /// unless its version has the same `major.minor`. Default `1.1`.
    pub legacy_receiver_version: String,
    /// `pipe_receiver_max_file_size` (edgepipe's): the most bytes one
    /// sender connection may hold in files it is sending (a 1.2 file being
    /// pieced together, a legacy sender's `.tsfile`, `.resource` and
    /// `.mods`). Default 4 GiB (IoTDB 1.2 compacts TsFiles to at most about
    /// 2 GiB). Minimum 1024.
    pub pipe_receiver_max_file_size: u64,
    /// `memtable_flush_points` (edgepipe's): flush after this many points.
    pub flush_points: usize,
    /// `wal_file_size_threshold_in_byte` (IoTDB's key): the size of a
    /// change-log segment file; the log rolls to a new one when full, and
    /// retention deletes whole segments. Default 64 MiB. Minimum 4 KiB.
    pub wal_segment_bytes: u64,
    /// `pipe_max_allowed_pinned_wal_size_in_byte`: the most change log kept
    /// only for pipes (what the store has checkpointed, a stopped or slow
    /// pipe has not sent). Past it the oldest segments are deleted and the
    /// pipes that had not sent them show the lost range in SHOW PIPES.
    /// Default 8 GiB. Minimum one segment.
    pub wal_max_pinned_bytes: u64,
    /// `wal_throttle_threshold_in_byte` (IoTDB 1.2 also reads
    /// `iot_consensus_throttle_threshold_in_byte`): hard bound on the
    /// change log's size on disk. Past it pipes lose their oldest unsent
    /// records even below the pinned bound (recorded and shown), and the
    /// store checkpoints early; what the store has not checkpointed is
    /// never deleted. Writes never wait for a pipe. Default 10 GiB.
    /// Minimum two segments, and at least the pinned bound.
    pub wal_max_disk_bytes: u64,
    /// `wal_recovery_mode` (edgepipe's): what a start does with a damaged
    /// change log past the store's checkpoint: `tolerate-tail-corruption`
    /// (default: a torn tail is cut, other damage refuses the start),
    /// `absolute-consistency`, or `tolerate-any-corruption` (cut at the
    /// first damaged record, dropping what follows). Damage below the
    /// store's checkpoint never stops a start.
    pub wal_recovery_mode: wal::RecoveryMode,
    /// The file this configuration was read from (not a key): what `LOAD
    /// CONFIGURATION` reads again. `None` for the defaults.
    pub file: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            rpc_address: "0.0.0.0".into(),
            rpc_port: 6667,
            data_dir: PathBuf::from("data"),
            precision: Precision::Ms,
            auto_create_schema: true,
            default_database_level: 1,
            fsync: wal::FsyncPolicy::default(),
            max_frame_size: 512 << 20,
            max_connections: 65535,
            connection_timeout: Duration::from_secs(60),
            max_frame_bytes_in_flight: 512 << 20,
            metric_prometheus: false,
            metric_prometheus_port: crate::metrics::DEFAULT_PROMETHEUS_PORT,
            metric_level: crate::metrics::MetricLevel::default(),
            root_password: "root".into(),
            max_sync_retry: 5,
            pipe_connector_timeout: Duration::from_secs(900),
            pipe_retry_interval: Duration::from_secs(1),
            pipe_async_selectors: 1,
            pipe_async_core_clients: 8,
            pipe_async_max_clients: 16,
            pipe_auto_restart: true,
            pipe_restart_interval: replicator::DEFAULT_RESTART_BASE,
            pipe_restart_interval_max: replicator::DEFAULT_RESTART_CAP,
            ip_white_list: receiver::whitelist::IpWhiteList::default(),
            enable_thrift_ssl: false,
            key_store_path: String::new(),
            key_store_pwd: String::new(),
            pipe_server_port: 6670,
            legacy_receiver_version: "1.1".into(),
            pipe_receiver_max_file_size: 4 << 30,
            flush_points: crate::store::DEFAULT_FLUSH_POINTS,
            wal_segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
            wal_max_pinned_bytes: DEFAULT_WAL_MAX_PINNED_BYTES,
            wal_max_disk_bytes: DEFAULT_WAL_MAX_DISK_BYTES,
            wal_recovery_mode: wal::RecoveryMode::default(),
            file: None,
        }
    }
}

/// Default of `pipe_max_allowed_pinned_wal_size_in_byte`: 8 GiB, days of a
/// typical edge box's data for a pipe whose link is down.
pub const DEFAULT_WAL_MAX_PINNED_BYTES: u64 = 8 << 30;
/// Default of `wal_throttle_threshold_in_byte`: 10 GiB, the pinned bound
/// plus room for what the store has not checkpointed.
pub const DEFAULT_WAL_MAX_DISK_BYTES: u64 = 10 << 30;

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{key}={v}: not a valid number"))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key}={v}: expected true or false")),
    }
}

impl NodeConfig {
    /// Applies one `key=value` setting.
    ///
    /// # Errors
    /// A bad value, naming the key. Unknown keys are not errors: the
    /// returned `Ok(false)` says the key was not recognised.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let v = value.trim();
        match key {
            "rpc_address" | "dn_rpc_address" => self.rpc_address = v.to_string(),
            "rpc_port" | "dn_rpc_port" => self.rpc_port = parse_num(key, v)?,
            "data_dir" => self.data_dir = PathBuf::from(v),
            "timestamp_precision" => {
                self.precision = Precision::parse(v)
                    .ok_or_else(|| format!("{key}={v}: expected ms, us or ns"))?
            }
            "enable_auto_create_schema" => self.auto_create_schema = parse_bool(key, v)?,
            "default_storage_group_level" | "default_database_level" => {
                let n: usize = parse_num(key, v)?;
                if n == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
                self.default_database_level = n;
            }
            "wal_mode" => {
                self.fsync = match v.to_ascii_uppercase().as_str() {
                    "SYNC" => wal::FsyncPolicy::Always,
                    "ASYNC" => match self.fsync {
                        wal::FsyncPolicy::Interval(d) => wal::FsyncPolicy::Interval(d),
                        _ => wal::FsyncPolicy::default(),
                    },
                    "DISABLE" => wal::FsyncPolicy::Never,
                    _ => return Err(format!("{key}={v}: expected SYNC, ASYNC or DISABLE")),
                }
            }
            "wal_async_mode_fsync_delay_in_ms" => {
                let ms: u64 = parse_num(key, v)?;
                if ms == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
                if !matches!(
                    self.fsync,
                    wal::FsyncPolicy::Always | wal::FsyncPolicy::Never
                ) {
                    self.fsync = wal::FsyncPolicy::Interval(Duration::from_millis(ms));
                }
            }
            "thrift_max_frame_size" | "dn_thrift_max_frame_size" => {
                let n: usize = parse_num(key, v)?;
                if n < 1024 {
                    return Err(format!("{key}={v}: must be at least 1024"));
                }
                self.max_frame_size = n;
            }
            "rpc_max_concurrent_client_num" | "dn_rpc_max_concurrent_client_num" => {
                self.max_connections = parse_num(key, v)?;
                if self.max_connections == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
            }
            "dn_connection_timeout_ms" | "connection_timeout_ms" => {
                let ms: u64 = parse_num(key, v)?;
                if ms == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
                self.connection_timeout = Duration::from_millis(ms);
            }
            "rpc_max_frame_bytes_in_flight" => {
                let n: usize = parse_num(key, v)?;
                if n < 1024 {
                    return Err(format!("{key}={v}: must be at least 1024"));
                }
                self.max_frame_bytes_in_flight = n;
            }
            "dn_metric_reporter_list" => {
                let mut prometheus = false;
                for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    match r.to_ascii_uppercase().as_str() {
                        "PROMETHEUS" => prometheus = true,
                        "JMX" | "IOTDB" => {
                            warn!(key, reporter = r, "this IoTDB metric reporter is not available in edgepipe; ignored (PROMETHEUS is)")
                        }
                        _ => {
                            return Err(format!(
                                "{key}={v}: unknown reporter {r:?}; expected PROMETHEUS (or IoTDB's JMX, IOTDB, which edgepipe ignores)"
                            ))
                        }
                    }
                }
                self.metric_prometheus = prometheus;
            }
            "dn_metric_prometheus_reporter_port" => {
                self.metric_prometheus_port = parse_num(key, v)?
            }
            "dn_metric_level" => {
                self.metric_level = v.parse().map_err(|()| {
                    format!("{key}={v}: expected OFF, CORE, IMPORTANT, NORMAL or ALL")
                })?
            }
            "root_password" => self.root_password = v.to_string(),
            "max_number_of_sync_file_retry" => self.max_sync_retry = parse_num(key, v)?,
            "pipe_connector_timeout_ms" => {
                self.pipe_connector_timeout = Duration::from_millis(parse_num(key, v)?)
            }
            "pipe_connector_retry_interval_ms" => {
                let ms: u64 = parse_num(key, v)?;
                if ms == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
                self.pipe_retry_interval = Duration::from_millis(ms);
            }
            "pipe_async_connector_selector_number" => {
                self.pipe_async_selectors = parse_num(key, v)?;
                if !(1..=64).contains(&self.pipe_async_selectors) {
                    return Err(format!("{key}={v}: must be between 1 and 64"));
                }
            }
            "pipe_async_connector_core_client_number" => {
                self.pipe_async_core_clients = parse_num(key, v)?;
                if !(1..=1024).contains(&self.pipe_async_core_clients) {
                    return Err(format!("{key}={v}: must be between 1 and 1024"));
                }
            }
            "pipe_async_connector_max_client_number" => {
                self.pipe_async_max_clients = parse_num(key, v)?;
                if !(1..=1024).contains(&self.pipe_async_max_clients) {
                    return Err(format!("{key}={v}: must be between 1 and 1024"));
                }
            }
            "pipe_auto_restart_enabled" => self.pipe_auto_restart = parse_bool(key, v)?,
            "pipe_auto_restart_interval_init_ms" | "pipe_auto_restart_interval_max_ms" => {
                let ms: u64 = parse_num(key, v)?;
                if ms == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
                if key.ends_with("init_ms") {
                    self.pipe_restart_interval = Duration::from_millis(ms);
                } else {
                    self.pipe_restart_interval_max = Duration::from_millis(ms);
                }
            }
            "ip_white_list" => {
                self.ip_white_list = v.parse().map_err(|e| format!("{key}={v}: {e}"))?
            }
            "enable_thrift_ssl" => self.enable_thrift_ssl = parse_bool(key, v)?,
            "key_store_path" => self.key_store_path = v.to_string(),
            "key_store_pwd" => self.key_store_pwd = v.to_string(),
            "pipe_server_port" => self.pipe_server_port = parse_num(key, v)?,
            "legacy_receiver_version" => {
                if protocol::legacy::major_minor(v).is_none() {
                    return Err(format!(
                        "{key}={v}: expected an IoTDB version such as 1.1 (major.minor)"
                    ));
                }
                self.legacy_receiver_version = v.to_string();
            }
            "pipe_receiver_max_file_size" => {
                let n: u64 = parse_num(key, v)?;
                if n < 1024 {
                    return Err(format!("{key}={v}: must be at least 1024"));
                }
                self.pipe_receiver_max_file_size = n;
            }
            "memtable_flush_points" => {
                self.flush_points = parse_num(key, v)?;
                if self.flush_points == 0 {
                    return Err(format!("{key}={v}: must be at least 1"));
                }
            }
            "wal_file_size_threshold_in_byte" => {
                let n: u64 = parse_num(key, v)?;
                if !(4096..=u64::from(u32::MAX)).contains(&n) {
                    return Err(format!("{key}={v}: must be between 4096 and {}", u32::MAX));
                }
                self.wal_segment_bytes = n;
            }
            "pipe_max_allowed_pinned_wal_size_in_byte" => {
                self.wal_max_pinned_bytes = parse_num(key, v)?;
            }
            "wal_throttle_threshold_in_byte" | "iot_consensus_throttle_threshold_in_byte" => {
                self.wal_max_disk_bytes = parse_num(key, v)?;
            }
            "wal_recovery_mode" => {
                self.wal_recovery_mode = v.to_ascii_lowercase().parse().map_err(|_| {
                    format!("{key}={v}: expected tolerate-tail-corruption, absolute-consistency or tolerate-any-corruption")
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks settings against each other (each key alone is checked by
    /// [`NodeConfig::set`]).
    ///
    /// # Errors
    /// A contradiction, naming the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.pipe_restart_interval_max < self.pipe_restart_interval {
            return Err(format!(
                "pipe_auto_restart_interval_max_ms={} must be at least pipe_auto_restart_interval_init_ms={}",
                self.pipe_restart_interval_max.as_millis(),
                self.pipe_restart_interval.as_millis()
            ));
        }
        if self.enable_thrift_ssl && self.key_store_path.is_empty() {
            return Err("enable_thrift_ssl=true needs key_store_path: a PEM file with the node's certificate chain and private key, or a PKCS#12 key store (with key_store_pwd)".into());
        }
        let seg = self.wal_segment_bytes;
        if self.wal_max_pinned_bytes < seg {
            return Err(format!(
                "pipe_max_allowed_pinned_wal_size_in_byte={} must hold at least one segment (wal_file_size_threshold_in_byte={seg})",
                self.wal_max_pinned_bytes
            ));
        }
        if self.wal_max_disk_bytes < 2 * seg || self.wal_max_disk_bytes < self.wal_max_pinned_bytes
        {
            return Err(format!(
                "wal_throttle_threshold_in_byte={} must hold at least two segments (wal_file_size_threshold_in_byte={seg}) and the pinned bound (pipe_max_allowed_pinned_wal_size_in_byte={})",
                self.wal_max_disk_bytes, self.wal_max_pinned_bytes
            ));
        }
        Ok(())
    }

    /// Reads a properties file over the defaults. Lines are `key=value`;
    /// `#` and `!` start comments.
    ///
    /// # Errors
    /// An unreadable file, a line without `=`, or a bad value (naming the
    /// file, line and key).
    pub fn load(path: &Path) -> Result<NodeConfig, String> {
        Ok(NodeConfig::load_entries(path)?.0)
    }

    /// [`NodeConfig::load`], also returning the keys the file sets (each
    /// under its first name in [`ALIASES`]) with their values as written:
    /// what `LOAD CONFIGURATION` compares to tell what changed.
    ///
    /// # Errors
    /// As [`NodeConfig::load`].
    pub fn load_entries(path: &Path) -> Result<(NodeConfig, BTreeMap<String, String>), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut c = NodeConfig::default();
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!(
                    "{}:{}: expected key=value, found '{line}'",
                    path.display(),
                    i + 1
                ));
            };
            let k = k.trim();
            match c.set(k, v) {
                Ok(true) => {
                    entries.insert(canonical_key(k).to_string(), v.trim().to_string());
                }
                Ok(false) => {
                    warn!(file = %path.display(), line = i + 1, key = k, "unknown configuration key; ignored")
                }
                Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
            }
        }
        c.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        c.file = Some(path.to_path_buf());
        Ok((c, entries))
    }
}

/// Keys with several names (IoTDB's over the versions): the first of each
/// group is the one `LOAD CONFIGURATION` reports.
pub const ALIASES: &[&[&str]] = &[
    &["rpc_address", "dn_rpc_address"],
    &["rpc_port", "dn_rpc_port"],
    &["default_storage_group_level", "default_database_level"],
    &["thrift_max_frame_size", "dn_thrift_max_frame_size"],
    &[
        "rpc_max_concurrent_client_num",
        "dn_rpc_max_concurrent_client_num",
    ],
    &["dn_connection_timeout_ms", "connection_timeout_ms"],
    &[
        "wal_throttle_threshold_in_byte",
        "iot_consensus_throttle_threshold_in_byte",
    ],
];

/// The name `key` is reported under (see [`ALIASES`]).
pub fn canonical_key(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|g| g.contains(&key))
        .map_or(key, |g| g[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iotdb_keys_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iotdb.properties");
        std::fs::write(&p, "# comment\nrpc_port=7777\ntimestamp_precision=us\nwal_mode=SYNC\nsomething_else=1\nip_white_list=127.0.0.1/32\n").unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.rpc_port, 7777);
        assert_eq!(c.precision, Precision::Us);
        assert_eq!(c.fsync, wal::FsyncPolicy::Always);
        assert_eq!(c.ip_white_list.to_string(), "127.0.0.1/32");
        assert!(c.ip_white_list.admits("127.0.0.1".parse().unwrap()));
        assert!(!c.ip_white_list.admits("127.0.0.2".parse().unwrap()));
        assert!(NodeConfig::default()
            .ip_white_list
            .admits("::1".parse().unwrap()));
        std::fs::write(&p, "rpc_port=7777\nip_white_list=notanip\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(
            e.ends_with(":2: ip_white_list=notanip: \"notanip\" is not an IPv4 or IPv6 CIDR block (e.g. 192.168.0.0/16 or fd00::/8)"),
            "{e}"
        );
        std::fs::write(
            &p,
            "ip_white_list=\ndn_connection_timeout_ms=1500\nrpc_max_frame_bytes_in_flight=65536\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert!(!c.ip_white_list.admits("127.0.0.1".parse().unwrap()));
        assert_eq!(c.connection_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_frame_bytes_in_flight, 65536);
        std::fs::write(&p, "dn_connection_timeout_ms=0\n").unwrap();
        assert!(NodeConfig::load(&p)
            .unwrap_err()
            .contains("dn_connection_timeout_ms=0: must be at least 1"));
        std::fs::write(&p, "rpc_port=seventy\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(
            e.contains(":1: rpc_port=seventy: not a valid number"),
            "{e}"
        );
        std::fs::write(&p, "timestamp_precision=s\n").unwrap();
        assert!(NodeConfig::load(&p)
            .unwrap_err()
            .contains("timestamp_precision=s: expected ms, us or ns"));
        std::fs::write(
            &p,
            "pipe_async_connector_selector_number=2\npipe_async_connector_core_client_number=3\npipe_async_connector_max_client_number=4\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(
            (
                c.pipe_async_selectors,
                c.pipe_async_core_clients,
                c.pipe_async_max_clients
            ),
            (2, 3, 4)
        );
        let d = NodeConfig::default();
        assert_eq!(
            (
                d.pipe_async_selectors,
                d.pipe_async_core_clients,
                d.pipe_async_max_clients
            ),
            (1, 8, 16),
            "seed 002's defaults"
        );
        std::fs::write(&p, "pipe_async_connector_max_client_number=0\n").unwrap();
        assert!(NodeConfig::load(&p)
            .unwrap_err()
            .contains("pipe_async_connector_max_client_number=0: must be between 1 and 1024"));
        std::fs::write(
            &p,
            "legacy_receiver_version=1.1.2\npipe_receiver_max_file_size=2048\nconnection_timeout_ms=5\n",
        )
        .unwrap();
        let (c, entries) = NodeConfig::load_entries(&p).unwrap();
        assert_eq!(c.legacy_receiver_version, "1.1.2");
        assert_eq!(c.pipe_receiver_max_file_size, 2048);
        assert_eq!(c.file.as_deref(), Some(p.as_path()));
        assert_eq!(
            entries.get("dn_connection_timeout_ms").map(String::as_str),
            Some("5")
        );
        for (bad, want) in [
            ("legacy_receiver_version=1", "expected an IoTDB version"),
            ("pipe_receiver_max_file_size=10", "must be at least 1024"),
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(NodeConfig::load(&p).unwrap_err().contains(want), "{bad}");
        }
        std::fs::write(&p, "just words\n").unwrap();
        assert!(NodeConfig::load(&p)
            .unwrap_err()
            .contains("expected key=value"));
    }

    #[test]
    fn metric_keys_as_iotdb_names_them() {
        let c = NodeConfig::default();
        assert!(!c.metric_prometheus, "no endpoint unless asked for");
        assert_eq!(c.metric_prometheus_port, 9091);
        assert_eq!(c.metric_level, crate::metrics::MetricLevel::Core);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iotdb-datanode.properties");
        std::fs::write(
            &p,
            "dn_metric_reporter_list=JMX, prometheus\ndn_metric_prometheus_reporter_port=9092\ndn_metric_level=IMPORTANT\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert!(c.metric_prometheus);
        assert_eq!(c.metric_prometheus_port, 9092);
        assert_eq!(c.metric_level, crate::metrics::MetricLevel::Important);
        std::fs::write(&p, "dn_metric_reporter_list=JMX\n").unwrap();
        assert!(!NodeConfig::load(&p).unwrap().metric_prometheus);
        for (bad, want) in [
            (
                "dn_metric_reporter_list=GRAPHITE",
                "unknown reporter \"GRAPHITE\"",
            ),
            (
                "dn_metric_prometheus_reporter_port=70000",
                "not a valid number",
            ),
            (
                "dn_metric_level=LOUD",
                "expected OFF, CORE, IMPORTANT, NORMAL or ALL",
            ),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = NodeConfig::load(&p).unwrap_err();
            assert!(e.contains(bad) && e.contains(want), "{e}");
        }
    }

    #[test]
    fn auto_restart_keys() {
        let d = NodeConfig::default();
        assert_eq!(
            (
                d.pipe_auto_restart,
                d.pipe_restart_interval,
                d.pipe_restart_interval_max
            ),
            (true, Duration::from_secs(10), Duration::from_secs(180)),
            "IoTDB's default (on), and a 3-minute longest wait as IoTDB's check round"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iotdb.properties");
        std::fs::write(&p, "pipe_auto_restart_enabled=false\npipe_auto_restart_interval_init_ms=200\npipe_auto_restart_interval_max_ms=2000\n").unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(
            (
                c.pipe_auto_restart,
                c.pipe_restart_interval,
                c.pipe_restart_interval_max
            ),
            (false, Duration::from_millis(200), Duration::from_secs(2))
        );
        for (bad, want) in [
            (
                "pipe_auto_restart_enabled=sometimes",
                "pipe_auto_restart_enabled=sometimes: expected true or false",
            ),
            (
                "pipe_auto_restart_interval_init_ms=0",
                "pipe_auto_restart_interval_init_ms=0: must be at least 1",
            ),
            (
                "pipe_auto_restart_interval_max_ms=soon",
                "pipe_auto_restart_interval_max_ms=soon: not a valid number",
            ),
            (
                "pipe_auto_restart_interval_init_ms=5000\npipe_auto_restart_interval_max_ms=1000",
                "pipe_auto_restart_interval_max_ms=1000 must be at least pipe_auto_restart_interval_init_ms=5000",
            ),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = NodeConfig::load(&p).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iotdb.properties");
        let c = NodeConfig::default();
        assert!(!c.enable_thrift_ssl);
        assert!(c.key_store_path.is_empty() && c.key_store_pwd.is_empty());
        std::fs::write(
            &p,
            "enable_thrift_ssl=true\nkey_store_path=/etc/edgepipe/node.p12\nkey_store_pwd=s3cret\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert!(c.enable_thrift_ssl);
        assert_eq!(c.key_store_path, "/etc/edgepipe/node.p12");
        assert_eq!(c.key_store_pwd, "s3cret");
        std::fs::write(&p, "enable_thrift_ssl=true\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(
            e.contains("enable_thrift_ssl=true needs key_store_path"),
            "{e}"
        );
        std::fs::write(&p, "enable_thrift_ssl=yes\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(
            e.contains("enable_thrift_ssl=yes: expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn change_log_bounds_and_recovery_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iotdb.properties");
        std::fs::write(&p, "wal_file_size_threshold_in_byte=1048576\npipe_max_allowed_pinned_wal_size_in_byte=4194304\niot_consensus_throttle_threshold_in_byte=8388608\nwal_recovery_mode=tolerate-any-corruption\n").unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.wal_segment_bytes, 1 << 20);
        assert_eq!(c.wal_max_pinned_bytes, 4 << 20);
        assert_eq!(c.wal_max_disk_bytes, 8 << 20);
        assert_eq!(
            c.wal_recovery_mode,
            wal::RecoveryMode::TolerateAnyCorruption
        );
        std::fs::write(
            &p,
            "wal_file_size_threshold_in_byte=1048576\nwal_throttle_threshold_in_byte=1048576\n",
        )
        .unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(
            e.contains("wal_throttle_threshold_in_byte=1048576 must hold at least two segments"),
            "{e}"
        );
        std::fs::write(&p, "wal_recovery_mode=sometimes\n").unwrap();
        assert!(NodeConfig::load(&p)
            .unwrap_err()
            .contains("wal_recovery_mode=sometimes: expected"));
        std::fs::write(&p, "wal_file_size_threshold_in_byte=10\n").unwrap();
        assert!(NodeConfig::load(&p)
            .unwrap_err()
            .contains("wal_file_size_threshold_in_byte=10: must be between"));
    }
}
