//! Pipe definitions and states, persisted in `pipes.json` (replaced
//! atomically at every change).
//!
//! Two kinds of pipe live here: IoTDB 1.2's (`CREATE PIPE … WITH
//! CONNECTOR`) and the 1.0/1.1 sync tool's (`CREATE PIPE … TO <pipesink>`,
//! [`SinkPipe`]), which speaks the legacy protocol and uses that tool's
//! state names RUNNING / STOP / DROP. A dropped sync-tool pipe stays listed
//! with state DROP (as IoTDB 0.14's sender keeps it) until a pipe of the
//! same name is created.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A pipe's state (IoTDB's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipeState {
    /// Not processing data: new, stopped by the user, or stopped on its own
    /// (see the exception message), perhaps waiting to restart
    /// ([`PipeMeta::restart`]).
    #[serde(rename = "STOPPED")]
    Stopped,
    /// Processing data.
    #[serde(rename = "RUNNING")]
    Running,
    /// Dropped for good: a sync-tool pipe after DROP PIPE (still listed,
    /// as STATE DROP), or what a task that outlived its pipe sees.
    #[serde(rename = "DROPPED")]
    Dropped,
}

impl PipeState {
    /// The name SHOW PIPES prints.
    pub fn name(self) -> &'static str {
        match self {
            PipeState::Stopped => "STOPPED",
            PipeState::Running => "RUNNING",
            PipeState::Dropped => "DROPPED",
        }
    }
}

/// A pipe as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipeMeta {
    /// The pipe id.
    pub id: String,
    /// Creation time, ms since the epoch.
    pub creation_time_ms: i64,
    /// Current state.
    pub state: PipeState,
    /// `WITH EXTRACTOR` attributes, defaults filled in.
    pub extractor: BTreeMap<String, String>,
    /// `WITH PROCESSOR` attributes, defaults filled in.
    pub processor: BTreeMap<String, String>,
    /// `WITH CONNECTOR` attributes, as given.
    pub connector: BTreeMap<String, String>,
    /// Why the pipe stopped on its own ("" when it did not). Cleared by
    /// START.
    pub exception: String,
    /// The last thing the pipe skipped while it ran on (a deletion the
    /// receiver could not apply; "" when nothing was). Cleared by START.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub warning: String,
    /// The change log offset at creation: records below it arrived before
    /// the pipe was created (history), the rest are realtime.
    pub history_end: u64,
    /// Set for a sync-tool pipe (`CREATE PIPE … TO <pipesink>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkPipe>,
    /// Set while the pipe waits to be restarted (`pipe_auto_restart_enabled`):
    /// it stopped on its own for a reason a restart may fix (its transfers
    /// kept failing), so it is STOPPED with `exception` saying why, and
    /// restarts at the time given. Persisted: a node stopped meanwhile
    /// restarts it after it starts. Cleared by START, STOP and DROP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
}

/// When a pipe that stopped on its own restarts (see [`PipeMeta::restart`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// The restart's time, ms since the epoch.
    pub at_ms: i64,
    /// Restarts in a row without progress, this one included (1 for the
    /// first after a run that got something acknowledged): what the wait
    /// before it grew from.
    pub attempt: u32,
}

/// What a sync-tool pipe adds to a pipe: its PipeSink and `SyncDelOp`.
/// Its `FROM … WHERE time >= T` is the extractor's history start time, its
/// connector the legacy one aimed at the PipeSink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkPipe {
    /// The PipeSink's name (SHOW PIPES' Remote column).
    pub pipesink: String,
    /// `SyncDelOp`: whether deletions (delete database included) are sent.
    /// Default true.
    pub sync_del_op: bool,
}

impl PipeMeta {
    /// The state as SHOW PIPES prints it: 1.2's names, or the sync tool's
    /// RUNNING / STOP / DROP for a sync-tool pipe.
    pub fn state_name(&self) -> &'static str {
        match (self.sink.is_some(), self.state) {
            (false, s) => s.name(),
            (true, PipeState::Running) => "RUNNING",
            (true, PipeState::Stopped) => "STOP",
            (true, PipeState::Dropped) => "DROP",
        }
    }

    /// Whether the pipe sends deletions (where its connector can: the
    /// legacy one). Only a sync-tool pipe with `SyncDelOp=false` does not.
    pub fn sync_deletions(&self) -> bool {
        self.sink.as_ref().is_none_or(|s| s.sync_del_op)
    }
}

/// Renders attributes as IoTDB does: `{k=v, k=v}`, sorted. Passwords are
/// shown as `******`.
pub fn render_attrs(a: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = a
        .iter()
        .map(|(k, v)| {
            if k.ends_with("password") {
                format!("{k}=******")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Loads the pipes of `path` (none when the file is absent).
///
/// # Errors
/// An unreadable or damaged file, naming it.
pub fn load(path: &Path) -> Result<Vec<PipeMeta>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| format!("{}: pipe definitions do not decode: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Saves the pipes to `path` atomically.
///
/// # Errors
/// I/O errors, naming the file.
pub fn save(path: &Path, pipes: &[PipeMeta]) -> Result<(), String> {
    write_atomically(
        path,
        &serde_json::to_vec_pretty(pipes).expect("serialize pipes"),
    )
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file
/// beside it, fsynced, renamed over it, and the directory fsynced.
///
/// # Errors
/// I/O errors, naming the file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io)
}
