//! Pipe definitions and states, persisted in `pipes.json` (replaced
//! atomically at every change).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A pipe's state (IoTDB's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipeState {
    /// Not processing data: new, stopped by the user, or stopped by an
    /// unrecoverable error (see the exception message).
    #[serde(rename = "STOPPED")]
    Stopped,
    /// Processing data.
    #[serde(rename = "RUNNING")]
    Running,
    /// Dropped for good (only seen by a task that outlived its pipe).
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
    /// Why the pipe stopped on its own ("" when it did not).
    pub exception: String,
    /// The change log offset at creation: records below it arrived before
    /// the pipe was created (history), the rest are realtime.
    pub history_end: u64,
}

/// Renders attributes as IoTDB does: `{k=v, k=v}`, sorted.
pub fn render_attrs(a: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(pipes).expect("serialize pipes");
    let tmp = path.with_extension("json.tmp");
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io)
}
