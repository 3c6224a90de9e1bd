//! The incoming pipes a node shows in `SHOW PIPES` (role `receiver`).
//!
//! - A **legacy** sender (IoTDB 1.1's sync, `iotdb-legacy-pipe-connector`,
//!   a seed-000 PIPESINK pipe) names its pipe in its handshake: one row per
//!   pipe name, creation time and sender IP, as IoTDB 0.14's receiver kept
//!   them. ID is the pipe's name, CreationTime the sender's creation time.
//! - A **1.2 `pipeTransfer`** sender names nothing: one row per sender IP.
//!   ID is the sender's IP address (as Remote), CreationTime when this node
//!   first heard from it since it started.
//!
//! State is `RUNNING` while at least one connection of the row is open
//! (a legacy pipe: the connection that made its handshake; a 1.2 sender:
//! any connection that sent `pipeTransfer`), `STOP` after, in the seed's
//! words. The message is the last error applying the row's data (empty
//! while there was none).
//!
//! Rows live in memory: a restart forgets them (a sender shows again when
//! it reconnects). At most [`MAX_STOPPED`] stopped rows are kept, the
//! oldest forgotten first, so senders that come and go cannot grow it
//! without bound.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most rows kept for senders that are no longer connected.
pub const MAX_STOPPED: usize = 1000;

/// Which incoming pipe a row is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A legacy sender's pipe, as its handshake names it.
    Legacy {
        /// The sender's pipe name.
        pipe_name: String,
        /// The sender's creation time of the pipe (ms).
        create_time: i64,
        /// The sender's address.
        ip: IpAddr,
    },
    /// A 1.2 `pipeTransfer` sender.
    Transfer {
        /// The sender's address.
        ip: IpAddr,
    },
}

impl Key {
    /// The sender's address.
    pub fn ip(&self) -> IpAddr {
        match self {
            Key::Legacy { ip, .. } | Key::Transfer { ip } => *ip,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// When the row was first seen (ms since the epoch).
    first_seen_ms: i64,
    /// When it last changed (ms), for evicting old stopped rows.
    touched_ms: i64,
    /// Open connections.
    connections: usize,
    /// Of those, connections through the pipe server's port.
    via_pipe_server: usize,
    /// The last error applying its data.
    message: String,
    /// What the sender said of itself (version, precision, database).
    detail: String,
}

/// One row of `SHOW PIPES` for an incoming pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Which pipe.
    pub key: Key,
    /// `ID`: the legacy pipe's name, or the 1.2 sender's IP.
    pub id: String,
    /// `CreationTime` (ms since the epoch).
    pub creation_time_ms: i64,
    /// `RUNNING` or `STOP`.
    pub state: &'static str,
    /// `Remote`: the sender's IP.
    pub remote: String,
    /// `ExceptionMessage`: the last error applying its data.
    pub message: String,
    /// How it arrives, e.g. `{protocol=legacy, version=1.1, database=root.sg}`
    /// (shown as `PipeConnector`).
    pub connector: String,
}

/// The incoming pipes of a node.
#[derive(Debug, Default)]
pub struct Registry {
    rows: Mutex<BTreeMap<Key, Entry>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A connection's hold on a row: the row is `RUNNING` while a guard lives.
#[derive(Debug)]
pub struct Guard {
    registry: Arc<Registry>,
    key: Key,
    via_pipe_server: bool,
}

impl Guard {
    /// The row this guard holds.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Records `message` as the row's last error.
    pub fn error(&self, message: impl Into<String>) {
        self.registry.error(&self.key, message.into());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut rows = self.registry.rows.lock().expect("registry lock");
        if let Some(e) = rows.get_mut(&self.key) {
            e.connections = e.connections.saturating_sub(1);
            if self.via_pipe_server {
                e.via_pipe_server = e.via_pipe_server.saturating_sub(1);
            }
            e.touched_ms = now_ms();
        }
        evict(&mut rows);
    }
}

/// Forgets the oldest stopped rows beyond [`MAX_STOPPED`].
fn evict(rows: &mut BTreeMap<Key, Entry>) {
    let stopped = rows.values().filter(|e| e.connections == 0).count();
    if stopped <= MAX_STOPPED {
        return;
    }
    let mut old: Vec<(i64, Key)> = rows
        .iter()
        .filter(|(_, e)| e.connections == 0)
        .map(|(k, e)| (e.touched_ms, k.clone()))
        .collect();
    old.sort();
    for (_, k) in old.into_iter().take(stopped - MAX_STOPPED) {
        rows.remove(&k);
    }
}

impl Registry {
    /// A connection of `key` opened (`via_pipe_server`: through the pipe
    /// server's port). `detail` describes the sender (shown as
    /// `PipeConnector`); a later connection's replaces it.
    pub fn connect(self: &Arc<Self>, key: Key, via_pipe_server: bool, detail: String) -> Guard {
        let now = now_ms();
        let mut rows = self.rows.lock().expect("registry lock");
        let first_seen_ms = match &key {
            Key::Legacy { create_time, .. } => *create_time,
            Key::Transfer { .. } => now,
        };
        let e = rows.entry(key.clone()).or_insert(Entry {
            first_seen_ms,
            touched_ms: now,
            connections: 0,
            via_pipe_server: 0,
            message: String::new(),
            detail: String::new(),
        });
        e.connections += 1;
        e.via_pipe_server += usize::from(via_pipe_server);
        e.touched_ms = now;
        e.detail = detail;
        Guard {
            registry: self.clone(),
            key,
            via_pipe_server,
        }
    }

    /// Records `message` as `key`'s last error.
    pub fn error(&self, key: &Key, message: String) {
        if let Some(e) = self.rows.lock().expect("registry lock").get_mut(key) {
            e.message = message;
            e.touched_ms = now_ms();
        }
    }

    /// How many rows have a connection open through the pipe server: while
    /// there is one, `STOP PIPESERVER` is refused.
    pub fn running_via_pipe_server(&self) -> usize {
        self.rows
            .lock()
            .expect("registry lock")
            .values()
            .filter(|e| e.via_pipe_server > 0)
            .count()
    }

    /// The rows, legacy pipes first (by name), then 1.2 senders (by IP).
    pub fn rows(&self) -> Vec<Row> {
        self.rows
            .lock()
            .expect("registry lock")
            .iter()
            .map(|(k, e)| Row {
                key: k.clone(),
                id: match k {
                    Key::Legacy { pipe_name, .. } => pipe_name.clone(),
                    Key::Transfer { ip } => ip.to_string(),
                },
                creation_time_ms: e.first_seen_ms,
                state: if e.connections > 0 { "RUNNING" } else { "STOP" },
                remote: k.ip().to_string(),
                message: e.message.clone(),
                connector: e.detail.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rows_run_while_connected_and_keep_their_last_error() {
        let r = Arc::new(Registry::default());
        let legacy = Key::Legacy {
            pipe_name: "p".into(),
            create_time: 1_650_000_000_000,
            ip: ip("127.0.0.2"),
        };
        let g1 = r.connect(legacy.clone(), true, "{protocol=legacy}".into());
        let g2 = r.connect(Key::Transfer { ip: ip("::1") }, false, String::new());
        let g3 = r.connect(Key::Transfer { ip: ip("::1") }, false, String::new());
        assert_eq!(r.running_via_pipe_server(), 1);
        let rows = r.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].id.as_str(), rows[0].state, rows[0].remote.as_str()),
            ("p", "RUNNING", "127.0.0.2")
        );
        assert_eq!(rows[0].creation_time_ms, 1_650_000_000_000);
        assert_eq!((rows[1].id.as_str(), rows[1].state), ("::1", "RUNNING"));
        g1.error("1108: no");
        drop(g1);
        assert_eq!(r.running_via_pipe_server(), 0);
        drop(g2);
        let rows = r.rows();
        assert_eq!(
            (rows[0].state, rows[0].message.as_str()),
            ("STOP", "1108: no")
        );
        assert_eq!(rows[1].state, "RUNNING");
        drop(g3);
        assert_eq!(r.rows()[1].state, "STOP");
    }

    #[test]
    fn stopped_rows_are_bounded() {
        let r = Arc::new(Registry::default());
        let live = r.connect(Key::Transfer { ip: ip("10.0.0.1") }, false, String::new());
        for i in 0..(MAX_STOPPED + 50) {
            let k = Key::Legacy {
                pipe_name: format!("p{i}"),
                create_time: 0,
                ip: ip("127.0.0.1"),
            };
            drop(r.connect(k, false, String::new()));
        }
        let rows = r.rows();
        assert_eq!(rows.len(), MAX_STOPPED + 1);
        assert!(rows.iter().any(|x| x.key == *live.key()));
    }
}
