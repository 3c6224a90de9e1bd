//! `ip_white_list`: which senders may write into this node, by the socket's
//! peer address. Every receiving path asks the same [`IpWhiteList`]:
//! `pipeTransfer` on the client port, and the legacy pipe server.
//!
//! The syntax is IoTDB's: comma-separated CIDR blocks, IPv4 or IPv6
//! (`192.168.0.0/16,10.1.2.3/32,fd00::/8`). A bare address is taken as a
//! single host (`/32` or `/128`). The default admits everyone
//! (`0.0.0.0/0,::/0`); an empty list admits nobody. An IPv4-mapped IPv6
//! peer (`::ffff:127.0.0.1`, what a dual-stack listener reports for an
//! IPv4 client) is checked as the IPv4 address it carries.
//!
//! A refused sender gets 1108 PIPESERVER_ERROR with IoTDB 1.1's message,
//! and the node logs the address.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use ipnet::IpNet;
use protocol::rpc::TSStatus;
use protocol::types::status;
use tracing::warn;

/// The default list: every IPv4 and every IPv6 address.
pub const DEFAULT: &str = "0.0.0.0/0,::/0";

/// A parsed `ip_white_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpWhiteList {
    nets: Vec<IpNet>,
    /// The list as configured, for messages.
    text: String,
}

impl Default for IpWhiteList {
    fn default() -> Self {
        DEFAULT.parse().expect("the default list parses")
    }
}

impl FromStr for IpWhiteList {
    type Err = String;

    /// Parses IoTDB's syntax. Blanks around entries are ignored; an empty
    /// string (or one of only commas and blanks) is the empty list.
    ///
    /// # Errors
    /// The first entry that is not an address or CIDR block, named.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{entry:?} is not an IPv4 or IPv6 CIDR block (e.g. 192.168.0.0/16 or fd00::/8)"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(IpWhiteList {
            nets,
            text: s.trim().to_string(),
        })
    }
}

impl fmt::Display for IpWhiteList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl IpWhiteList {
    /// Whether `ip` is inside one of the blocks.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Admits `ip`, or refuses it with 1108 PIPESERVER_ERROR in IoTDB
    /// 1.1's words and a log line naming the address.
    ///
    /// # Errors
    /// The status to send back to a refused sender.
    pub fn check(&self, ip: IpAddr) -> Result<(), TSStatus> {
        if self.admits(ip) {
            return Ok(());
        }
        let ip = ip.to_canonical();
        warn!(sender = %ip, ip_white_list = %self, "refused a sender outside ip_white_list");
        Err(TSStatus {
            code: status::PIPESERVER_ERROR,
            message: Some(format!(
                "permission is not allowed: the sender IP <{ip}>, the white list of receiver <{self}>"
            )),
            sub_status: None,
            redirect_node: None,
            need_retry: None,
        })
    }
}

/// The node's list, replaceable while it serves (`LOAD CONFIGURATION`).
///
/// A connection remembers that it was admitted under the list's current
/// generation, so the requests that follow cost one atomic load, no lock;
/// a new list (a new generation) makes every connection ask again.
#[derive(Debug)]
pub struct SharedWhiteList {
    generation: AtomicU64,
    list: RwLock<IpWhiteList>,
}

/// What a connection remembers of its last admission: the generation of
/// the list that admitted it.
pub type Admitted = Option<u64>;

impl SharedWhiteList {
    /// A shared `list`.
    pub fn new(list: IpWhiteList) -> SharedWhiteList {
        SharedWhiteList {
            generation: AtomicU64::new(1),
            list: RwLock::new(list),
        }
    }

    /// The current list.
    pub fn get(&self) -> IpWhiteList {
        self.list.read().expect("white list lock").clone()
    }

    /// Replaces the list: connections admitted before are checked again at
    /// their next request.
    pub fn set(&self, list: IpWhiteList) {
        let mut l = self.list.write().expect("white list lock");
        *l = list;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// [`IpWhiteList::check`] against the current list, answered from
    /// `admitted` while the list is unchanged.
    ///
    /// # Errors
    /// The 1108 status for a refused sender.
    pub fn check(&self, ip: IpAddr, admitted: &mut Admitted) -> Result<(), TSStatus> {
        let generation = self.generation.load(Ordering::Acquire);
        if *admitted == Some(generation) {
            return Ok(());
        }
        let l = self.list.read().expect("white list lock");
        let generation = self.generation.load(Ordering::Acquire);
        let r = l.check(ip);
        *admitted = r.is_ok().then_some(generation);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn iotdb_syntax_defaults_and_mapped_addresses() {
        let all = IpWhiteList::default();
        for a in [
            "127.0.0.1",
            "10.9.8.7",
            "::1",
            "fd00::2",
            "::ffff:192.0.2.1",
        ] {
            assert!(all.admits(ip(a)), "{a}");
        }
        let none: IpWhiteList = "".parse().unwrap();
        assert!(!none.admits(ip("127.0.0.1")) && !none.admits(ip("::1")));
        let l: IpWhiteList = " 127.0.0.2/32 , 192.168.0.0/16,::1/128".parse().unwrap();
        assert!(l.admits(ip("127.0.0.2")));
        assert!(!l.admits(ip("127.0.0.1")));
        assert!(l.admits(ip("192.168.44.1")));
        assert!(l.admits(ip("::1")));
        assert!(!l.admits(ip("::2")));
        // A dual-stack listener reports IPv4 peers as mapped addresses.
        assert!(l.admits(ip("::ffff:127.0.0.2")));
        assert!(!l.admits(ip("::ffff:127.0.0.1")));
        // IPv4 blocks do not admit IPv6 peers, nor the reverse.
        let v4: IpWhiteList = "0.0.0.0/0".parse().unwrap();
        assert!(!v4.admits(ip("::1")));
        let host: IpWhiteList = "10.0.0.1".parse().unwrap();
        assert!(host.admits(ip("10.0.0.1")) && !host.admits(ip("10.0.0.2")));
        for bad in ["notanip", "127.0.0.1/33", "1.2.3.4/8,x", "::1/129"] {
            let e = bad.parse::<IpWhiteList>().unwrap_err();
            assert!(
                e.contains("is not an IPv4 or IPv6 CIDR block"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_shared_list_is_asked_again_once_replaced() {
        let shared = SharedWhiteList::new("127.0.0.2/32".parse().unwrap());
        let mut seen = None;
        assert!(shared.check(ip("127.0.0.2"), &mut seen).is_ok());
        assert!(seen.is_some());
        assert!(shared.check(ip("127.0.0.2"), &mut seen).is_ok());
        shared.set("127.0.0.3/32".parse().unwrap());
        let st = shared.check(ip("127.0.0.2"), &mut seen).unwrap_err();
        assert_eq!(st.code, 1108);
        assert_eq!(seen, None);
        assert_eq!(shared.get().to_string(), "127.0.0.3/32");
    }

    #[test]
    fn a_refusal_is_1108_in_iotdb_words() {
        let l: IpWhiteList = "127.0.0.2/32".parse().unwrap();
        assert!(l.check(ip("127.0.0.2")).is_ok());
        let st = l.check(ip("::ffff:127.0.0.3")).unwrap_err();
        assert_eq!(st.code, 1108);
        assert_eq!(
            st.message.unwrap(),
            "permission is not allowed: the sender IP <127.0.0.3>, the white list of receiver <127.0.0.2/32>"
        );
    }
}
