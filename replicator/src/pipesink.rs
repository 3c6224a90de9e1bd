//! PipeSinks of the 1.0/1.1 sync tool (`CREATE PIPESINK <name> AS IoTDB
//! (ip='…', port=…)`): where a sync-tool pipe sends. Persisted in
//! `pipesinks.json` beside `pipes.json`, replaced atomically at every
//! change.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The PipeSink types (`SHOW PIPESINKTYPE`): only IoTDB.
pub const PIPESINK_TYPES: [&str; 1] = ["IoTDB"];

/// The default receiver address of an IoTDB PipeSink.
pub const DEFAULT_IP: &str = "127.0.0.1";
/// The default receiver port: IoTDB's `pipe_server_port`.
pub const DEFAULT_PORT: u16 = 6670;

/// One PipeSink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeSink {
    /// Its name.
    pub name: String,
    /// Its type, as SHOW PIPESINKS prints it (`IoTDB`).
    pub sink_type: String,
    /// The receiver's address. Default 127.0.0.1.
    pub ip: String,
    /// The receiver's pipe server port. Default 6670.
    pub port: u16,
}

impl PipeSink {
    /// A PipeSink from `CREATE PIPESINK name AS sink_type (k=v, …)`: the type
    /// and the keys are case-insensitive; `ip` and `port` default to
    /// 127.0.0.1 and 6670.
    ///
    /// # Errors
    /// An unknown type, an unknown attribute ("There is No attribute X in
    /// IoTDB pipeSink.", IoTDB's words), or a port that is not one.
    pub fn parse(
        name: &str,
        sink_type: &str,
        attributes: &[(String, String)],
    ) -> Result<PipeSink, String> {
        let Some(t) = PIPESINK_TYPES
            .iter()
            .find(|t| t.eq_ignore_ascii_case(sink_type))
        else {
            return Err(format!(
                "Do not support pipeSink type {sink_type}; the supported type is {}",
                PIPESINK_TYPES.join(", ")
            ));
        };
        let mut sink = PipeSink {
            name: name.to_string(),
            sink_type: t.to_string(),
            ip: DEFAULT_IP.into(),
            port: DEFAULT_PORT,
        };
        for (k, v) in attributes {
            match k.to_ascii_lowercase().as_str() {
                "ip" => {
                    if v.trim().is_empty() {
                        return Err("the ip attribute of an IoTDB pipeSink is empty".into());
                    }
                    sink.ip = v.trim().to_string()
                }
                "port" => {
                    sink.port = v.trim().parse().ok().filter(|&p| p > 0).ok_or_else(|| {
                        format!("port={v}: the port of an IoTDB pipeSink is a number from 1 to 65535")
                    })?
                }
                other => {
                    return Err(format!(
                        "There is No attribute {other} in IoTDB pipeSink. Its attributes are ip and port."
                    ))
                }
            }
        }
        Ok(sink)
    }

    /// The attributes as SHOW PIPESINKS prints them: `ip='127.0.0.1',port=6670`.
    pub fn attributes(&self) -> String {
        format!("ip='{}',port={}", self.ip, self.port)
    }
}

/// Loads the PipeSinks of `path` (none when the file is absent).
///
/// # Errors
/// An unreadable or damaged file, naming it.
pub fn load(path: &Path) -> Result<Vec<PipeSink>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            format!(
                "{}: pipeSink definitions do not decode: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Saves the PipeSinks to `path` atomically.
///
/// # Errors
/// I/O errors, naming the file.
pub fn save(path: &Path, sinks: &[PipeSink]) -> Result<(), String> {
    crate::meta::write_atomically(
        path,
        &serde_json::to_vec_pretty(sinks).expect("serialize pipeSinks"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn defaults_case_and_errors() {
        let s = PipeSink::parse("my_iotdb", "iotdb", &[]).unwrap();
        assert_eq!((s.ip.as_str(), s.port), ("127.0.0.1", 6670));
        assert_eq!(s.sink_type, "IoTDB");
        assert_eq!(s.attributes(), "ip='127.0.0.1',port=6670");
        let s =
            PipeSink::parse("a", "IoTDB", &[kv("IP", "192.168.0.1"), kv("Port", "6671")]).unwrap();
        assert_eq!(s.attributes(), "ip='192.168.0.1',port=6671");
        let e = PipeSink::parse("a", "IoTDB", &[kv("host", "x")]).unwrap_err();
        assert!(
            e.starts_with("There is No attribute host in IoTDB pipeSink."),
            "{e}"
        );
        let e = PipeSink::parse("a", "IoTDB", &[kv("port", "sixty")]).unwrap_err();
        assert!(e.contains("port=sixty"), "{e}");
        let e = PipeSink::parse("a", "Kafka", &[]).unwrap_err();
        assert!(e.contains("Do not support pipeSink type Kafka"), "{e}");
    }
}
