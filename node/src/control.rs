//! What the receiving side's statements act on: `START` / `STOP` / `SHOW
//! PIPESERVER`, `LOAD CONFIGURATION`, and the incoming pipes `SHOW PIPES`
//! lists (seed 000); and where the node listens, so that `CREATE PIPE`
//! refuses a connector aimed at the node itself ([`Control::self_target`]).
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
    /// Where the node listens, once it serves ([`Control::set_listening`]).
    listening: Mutex<Option<Listening>>,
}

/// Where a node listens: what a pipe of its own must not point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listening {
    /// The client port's address (`rpc_address`, which the pipe server
    /// listens on too): an unspecified one (0.0.0.0, ::) is every address
    /// of the machine (of its family; :: both).
    ip: IpAddr,
    /// The client port as bound.
    client_port: u16,
    /// `pipe_server_port` (the next START PIPESERVER's).
    pipe_server_port: u16,
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
            listening: Mutex::new(None),
        }
    }

    /// Records where the node serves: its client port's bound address
    /// `client` (on `rpc_address`) and `pipe_server_port`. Until then no
    /// target counts as the node itself.
    pub fn set_listening(&self, client: SocketAddr, pipe_server_port: u16) {
        *self.listening.lock().expect("listening lock") = Some(Listening {
            ip: client.ip(),
            client_port: client.port(),
            pipe_server_port,
        });
    }

    /// Why a pipe sending to `host:port` would send to this node itself
    /// (A→A), or `None`: `port` is the node's client port, its
    /// `pipe_server_port` or the port its pipe server listens on, and
    /// `host` one of the addresses it listens on there: with `rpc_address`
    /// 0.0.0.0 or ::, any address of the machine (127.0.0.0/8, ::1, its
    /// interfaces' addresses, 0.0.0.0 itself, `localhost`, its host name);
    /// else that address. Other host names are not resolved here (a name
    /// lookup can hang an edge box without DNS).
    pub fn self_target(&self, host: &str, port: u16) -> Option<String> {
        let l = (*self.listening.lock().expect("listening lock"))?;
        let mut ports = vec![
            (l.client_port, "client port (rpc_port)"),
            (l.pipe_server_port, "pipe server port (pipe_server_port)"),
        ];
        if let Some(a) = self.pipe_server.local_addr() {
            ports.push((a.port(), "pipe server port (START PIPESERVER)"));
        }
        let own = if l.ip.is_unspecified() {
            interface_addresses()
        } else {
            Vec::new()
        };
        reaches_self(&l, &ports, &own, host_name().as_deref(), host, port)
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
                    if let Some(l) = self.listening.lock().expect("listening lock").as_mut() {
                        l.pipe_server_port = c.pipe_server_port;
                    }
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

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 one.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why `host:port` reaches a node listening as `l` (its ports named in
/// `ports`), on a machine whose interfaces have the addresses `own` and
/// whose host name is `hostname` (see [`Control::self_target`]).
fn reaches_self(
    l: &Listening,
    ports: &[(u16, &str)],
    own: &[IpAddr],
    hostname: Option<&str>,
    host: &str,
    port: u16,
) -> Option<String> {
    let (_, what) = ports.iter().find(|(p, _)| *p == port)?;
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    let listen = plain(l.ip);
    let candidates: Vec<IpAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![plain(ip)]
    } else if bare.eq_ignore_ascii_case("localhost") {
        // Loopback by name: only a node listening on loopback (or on every
        // address) is reached; one on a LAN address alone is not.
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
    } else if hostname.is_some_and(|h| h.eq_ignore_ascii_case(bare)) {
        // This machine by its host name: any address it listens on will do.
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            listen,
        ]
    } else {
        return None;
    };
    let on = |ip: IpAddr| -> bool {
        if !listen.is_unspecified() {
            return ip == listen;
        }
        // 0.0.0.0 serves the machine's IPv4 addresses; :: (dual stack)
        // both families.
        let family = listen.is_ipv6() || ip.is_ipv4();
        family && (ip.is_loopback() || ip.is_unspecified() || own.contains(&ip))
    };
    let ip = candidates.into_iter().find(|ip| on(*ip))?;
    let listens = if listen.is_unspecified() {
        format!("every address of this machine ({listen})")
    } else {
        listen.to_string()
    };
    Some(format!(
        "{host}:{port} is this node's {what}, listening on {listens}{}",
        if ip.to_string() == bare {
            String::new()
        } else {
            format!("; {host} is {ip}")
        }
    ))
}

/// The addresses of this machine's network interfaces, loopback included
/// (`getifaddrs`); none when they cannot be listed.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs stores the head of a list it allocated in `head`
    // (which we own and free below with freeifaddrs), or fails and stores
    // nothing.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid
        // until freeifaddrs; nothing writes to it meanwhile.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null `ifa_addr` points to a sockaddr, whose
            // family field every sockaddr layout starts with.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once;
    // no reference into the list outlives this call.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// This machine's host name (`gethostname`), if it has one.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer
    // we own.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end])
        .ok()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: [(u16, &str); 2] = [
        (6667, "client port (rpc_port)"),
        (6670, "pipe server port (pipe_server_port)"),
    ];

    fn on(ip: &str) -> Listening {
        Listening {
            ip: ip.parse().unwrap(),
            client_port: 6667,
            pipe_server_port: 6670,
        }
    }

    fn me(l: &Listening, host: &str, port: u16) -> bool {
        let own: Vec<IpAddr> = ["127.0.0.1", "::1", "192.168.7.9", "fd00::9"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        reaches_self(l, &PORTS, &own, Some("edge-7"), host, port).is_some()
    }

    #[test]
    fn a_target_is_the_node_itself_on_its_ports_and_addresses() {
        // Every address of the machine, IPv4 (0.0.0.0).
        let all4 = on("0.0.0.0");
        for host in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.0.9",
            "0.0.0.0",
            "localhost",
            "LOCALHOST",
            "edge-7",
            "192.168.7.9",
            "::ffff:127.0.0.1",
            "[::ffff:192.168.7.9]",
        ] {
            for port in [6667, 6670] {
                assert!(me(&all4, host, port), "{host}:{port}");
            }
        }
        for (host, port) in [
            ("127.0.0.1", 6668),
            ("192.168.7.10", 6667),
            ("10.0.0.1", 6670),
            ("::1", 6667),
            ("cloud.example", 6667),
        ] {
            assert!(!me(&all4, host, port), "{host}:{port}");
        }
        // Dual stack (::): both families.
        let all = on("::");
        for host in ["::1", "[::1]", "fd00::9", "127.0.0.3", "192.168.7.9", "::"] {
            assert!(me(&all, host, 6667), "{host}");
        }
        assert!(!me(&all, "fd00::10", 6667));
        // One address: that one only (by number or, for loopback, by
        // name).
        let lo = on("127.0.0.1");
        assert!(me(&lo, "127.0.0.1", 6667));
        assert!(me(&lo, "localhost", 6670));
        assert!(!me(&lo, "127.0.0.2", 6667));
        assert!(!me(&lo, "192.168.7.9", 6667));
        let lan = on("192.168.7.9");
        assert!(me(&lan, "192.168.7.9", 6667));
        assert!(me(&lan, "edge-7", 6667));
        assert!(!me(&lan, "127.0.0.1", 6667));
        // localhost is loopback: a node on a LAN address alone is not there.
        assert!(!me(&lan, "localhost", 6667));
        // The message names the port's role and where the node listens.
        let m = reaches_self(&all4, &PORTS, &[], None, "localhost", 6670).unwrap();
        assert_eq!(
            m,
            "localhost:6670 is this node's pipe server port (pipe_server_port), listening on every address of this machine (0.0.0.0); localhost is 127.0.0.1"
        );
    }

    #[test]
    fn the_machine_lists_its_own_addresses() {
        let own = interface_addresses();
        assert!(
            own.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "loopback among {own:?}"
        );
        assert!(host_name().is_some());
    }
}
