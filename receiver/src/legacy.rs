//! IoTDB 1.0/1.1's sync calls, answered as a 1.1 receiver
//! (`ReceiverManager`) answers them, on the client port and on the pipe
//! server's (`shared/reference/iotdb-sync-protocols.md` §C). They need no
//! login; the rows a legacy sender writes come through the normal session
//! calls (`openSession`, `insertTablet`) on another connection.
//!
//! - `handshake(-1: TSyncIdentityInfo)`: the peer address must be in
//!   `ip_white_list` (1108, 1.1's message); the `major.minor` of the
//!   sender's version must equal this node's claimed version
//!   (`legacy_receiver_version`, default `1.1`), else 1108 "version
//!   mismatch: the sender `<v>`, the receiver `<v>`". The connection gets a
//!   fresh directory for its files and a row in the [`registry`](crate::registry::Registry)
//!   (pipe name, creation time, sender IP). A database other than empty
//!   or `root` is created (one that exists is fine), else 1108 "Auto
//!   register database … error.". A 1.1 receiver would also try `root`
//!   (what the 1.2 legacy connector sends) and fail; edgepipe skips it.
//! - `sendFile(TSyncTransportMetaInfo{fileName, startIndex}, buff)`: the
//!   bytes are written at `startIndex` of `<fileName>.patch` when that is
//!   the index the connection expects for the file (0 for a new one); else
//!   1104 SYNC_FILE_REDIRECTION_ERROR whose message is the expected index,
//!   where the sender resumes. A write failure (a full disk), a name that
//!   is a path, or files past `pipe_receiver_max_file_size` get 1105
//!   SYNC_FILE_ERROR naming the reason.
//! - `sendPipeData(PipeData)`: TSFILE renames the file's `.patch` pieces
//!   (`x.tsfile`, `x.tsfile.resource`, `x.tsfile.mods`) and loads the
//!   TsFile ([`crate::load`]), leaving out the points its `.mods`
//!   deletions cover; the files are deleted whatever the outcome, so a
//!   resend starts from index 0. DELETION deletes the pattern's points in
//!   the time range; over all of time, 1.1 runs `DELETE TIMESERIES` — for
//!   `<database>.**` edgepipe drops the database's series and points and
//!   keeps the database (what 1.1 leaves), for other patterns it deletes
//!   every point and keeps the series (the store has no way to drop a
//!   series alone). Failures are 1108 "Fail to load pipeData because …",
//!   which a 1.1 sender logs and skips.
//! - `sendFile` and `sendPipeData` without a handshake on the connection
//!   fail as in 1.1: an application exception ("Thrift connection is not
//!   alive").
//!
//! Everything of a connection (its files, its directory) is deleted when it
//! closes, and its registry row shows STOP.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use protocol::legacy::{major_minor, PipeData, SYNC_FILE_ERROR, SYNC_FILE_REDIRECTION_ERROR};
use protocol::rpc::{TSStatus, TSyncIdentityInfo, TSyncTransportMetaInfo};
use protocol::types::status;
use tracing::{info, warn};

use crate::load::Deletion;
use crate::{registry, st, Apply, Receiver, ReceiverState};

/// The largest `.mods` file read (its deletions are held in memory).
pub const MAX_MODS_BYTES: u64 = 16 << 20;
/// The suffix of a file being received.
const PATCH: &str = ".patch";

/// `sendFile` or `sendPipeData` on a connection without a handshake: 1.1
/// throws, and the caller answers with an application exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAlive;

impl std::fmt::Display for NotAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Thrift connection is not alive. Call handshake first on this connection")
    }
}

/// One connection's legacy pipe.
#[derive(Debug)]
pub(crate) struct Session {
    /// The pipe's row, RUNNING while this lives.
    guard: registry::Guard,
    /// The connection's directory.
    dir: PathBuf,
    /// The index the next piece of each file must start at.
    index: HashMap<String, u64>,
    /// Bytes on disk of each file being received.
    sizes: HashMap<String, u64>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %self.dir.display(), cause = %e, "cannot delete a legacy connection's files");
            }
        }
    }
}

fn status_of(code: i32, message: impl Into<String>) -> TSStatus {
    st(code, Some(message.into()))
}

/// A name that is a bare file name (no directory, not `.` or `..`).
fn bare_name(name: &str) -> Result<&str, String> {
    if name.is_empty()
        || name.len() > protocol::pipe::MAX_FILE_NAME
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
    {
        return Err(format!(
            "{name:?} is not a bare file name (no directories, not . or .., 1 to {} bytes)",
            protocol::pipe::MAX_FILE_NAME
        ));
    }
    Ok(name)
}

/// Reads a `.mods` file (IoTDB's text form, one deletion a line:
/// `DELETION,<path>,<fileOffset>,<startTime>,<endTime>`; the path may hold
/// commas; the old `DELETION,<path>,<version>,<endTime>` form deletes up to
/// `endTime` in every chunk). A line that does not parse (a torn last
/// line) is skipped with a warning.
fn read_mods(path: &Path) -> Result<Vec<Deletion>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_MODS_BYTES {
        return Err(format!(
            "{}: {len} bytes of deletions, more than the {MAX_MODS_BYTES} edgepipe reads",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let parsed = match f.as_slice() {
            ["DELETION", .., a, b, c] if f.len() >= 5 => {
                let pattern = f[1..f.len() - 3].join(",");
                match (a.parse::<i64>(), b.parse::<i64>(), c.parse::<i64>()) {
                    (Ok(off), Ok(start), Ok(end)) => Some(Deletion {
                        pattern,
                        file_offset: u64::try_from(off).unwrap_or(0),
                        start,
                        end,
                    }),
                    _ => None,
                }
            }
            ["DELETION", p, _, end] => end.parse::<i64>().ok().map(|end| Deletion {
                pattern: p.to_string(),
                file_offset: u64::MAX,
                start: i64::MIN,
                end,
            }),
            _ => None,
        };
        match parsed {
            Some(d) => out.push(d),
            None => {
                warn!(file = %path.display(), line, "a .mods line that does not parse; skipped")
            }
        }
    }
    Ok(out)
}

impl Receiver {
    /// `handshake(-1: TSyncIdentityInfo)`. Returns the status and the log
    /// offset of a database it created.
    pub fn legacy_handshake(
        &self,
        state: &mut ReceiverState,
        info: &TSyncIdentityInfo,
        apply: &dyn Apply,
    ) -> (TSStatus, Option<u64>) {
        if let Err(s) = self.admit(state) {
            return (s, None);
        }
        let ours = self.version();
        let theirs = info.version.clone().unwrap_or_default();
        if major_minor(&theirs).is_none() || major_minor(&theirs) != major_minor(&ours) {
            warn!(sender = ?state.peer, sender_version = %theirs, version = %ours, "legacy handshake refused: version mismatch");
            return (
                status_of(
                    status::PIPESERVER_ERROR,
                    format!("version mismatch: the sender <{theirs}>, the receiver <{ours}>"),
                ),
                None,
            );
        }
        let pipe_name = info.pipe_name.clone().unwrap_or_default();
        let create_time = info.create_time.unwrap_or(0);
        let database = info.database.clone().unwrap_or_default();
        let dir = match self.new_dir() {
            Ok(d) => d,
            Err(e) => {
                return (
                    status_of(
                        status::PIPESERVER_ERROR,
                        format!(
                            "the receiver cannot make a directory for received files under {}: {}",
                            self.dir.display(),
                            crate::file::io_reason(&e)
                        ),
                    ),
                    None,
                )
            }
        };
        let ip = state
            .peer
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| {
                p.ip().to_canonical()
            });
        let key = registry::Key::Legacy {
            pipe_name: pipe_name.clone(),
            create_time,
            ip,
        };
        let detail = if database.is_empty() {
            format!("{{protocol=legacy, version={theirs}}}")
        } else {
            format!("{{protocol=legacy, version={theirs}, database={database}}}")
        };
        // A second handshake on the connection replaces the first pipe.
        state.legacy = None;
        let session = Session {
            guard: self.registry.connect(key, state.via_pipe_server, detail),
            dir,
            index: HashMap::new(),
            sizes: HashMap::new(),
        };
        let mut offset = None;
        if !database.is_empty() && database != "root" {
            match apply.create_database(&database) {
                Ok(o) => offset = o,
                Err((code, m)) => {
                    let message = format!("Auto register database {database} error. {code}: {m}");
                    session.guard.error(message.clone());
                    return (status_of(status::PIPESERVER_ERROR, message), None);
                }
            }
        }
        info!(pipe = %pipe_name, create_time, sender = %ip, version = %theirs, database = %database, "legacy sender connected");
        state.legacy = Some(session);
        (status_of(status::SUCCESS, ""), offset)
    }

    /// `sendFile(TSyncTransportMetaInfo, buff)`.
    ///
    /// # Errors
    /// [`NotAlive`] without a handshake on this connection.
    pub fn send_file(
        &self,
        state: &mut ReceiverState,
        meta: &TSyncTransportMetaInfo,
        buff: &[u8],
    ) -> Result<TSStatus, NotAlive> {
        let max = self.max_file_size();
        let s = state.legacy.as_mut().ok_or(NotAlive)?;
        let name = meta.file_name.clone().unwrap_or_default();
        let start = meta.start_index.unwrap_or(-1);
        let name = match bare_name(&name) {
            Ok(n) => n.to_string(),
            Err(e) => {
                let m = format!("sendFile: {e}");
                s.guard.error(m.clone());
                return Ok(status_of(SYNC_FILE_ERROR, m));
            }
        };
        let expected = s.index.get(&name).copied();
        let at_expected = match expected {
            None => start == 0,
            Some(e) => start >= 0 && start as u64 == e,
        };
        if !at_expected {
            let at = expected.unwrap_or(0);
            info!(file = %name, start, expected = at, "sendFile at the wrong index: the sender resumes at the expected one");
            return Ok(status_of(SYNC_FILE_REDIRECTION_ERROR, at.to_string()));
        }
        let start = start as u64;
        let size = s.sizes.get(&name).copied().unwrap_or(0);
        let new_size = size.max(start + buff.len() as u64);
        let total: u64 = s.sizes.values().sum::<u64>() - size + new_size;
        if total > max {
            let m = format!(
                "{name}: the connection's received files would hold {total} bytes, more than the receiver's pipe_receiver_max_file_size ({max} bytes) allows: raise it on the receiver"
            );
            warn!(message = %m, "sendFile refused");
            s.guard.error(m.clone());
            return Ok(status_of(SYNC_FILE_ERROR, m));
        }
        let path = s.dir.join(format!("{name}{PATCH}"));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(start))?;
                f.write_all(buff)
            });
        if let Err(e) = written {
            let m = format!(
                "{}: cannot write {} bytes at {start}: {}",
                path.display(),
                buff.len(),
                crate::file::io_reason(&e)
            );
            warn!(message = %m, "sendFile failed");
            s.guard.error(m.clone());
            // The file may have grown: count what is on disk.
            if let Ok(md) = std::fs::metadata(&path) {
                s.sizes.insert(name, md.len());
            }
            return Ok(status_of(SYNC_FILE_ERROR, m));
        }
        s.index.insert(name.clone(), start + buff.len() as u64);
        s.sizes.insert(name, new_size);
        Ok(status_of(status::SUCCESS, ""))
    }

    /// `sendPipeData(buff)`: a serialized PipeData. Returns the status and
    /// the log offset to wait on.
    ///
    /// # Errors
    /// [`NotAlive`] without a handshake on this connection.
    pub fn send_pipe_data(
        &self,
        state: &mut ReceiverState,
        buff: &[u8],
        apply: &dyn Apply,
    ) -> Result<(TSStatus, Option<u64>), NotAlive> {
        let s = state.legacy.as_mut().ok_or(NotAlive)?;
        let data = match PipeData::deserialize(buff) {
            Ok(d) => d,
            Err(e) => {
                let m = format!("Pipe data transport error, {e}");
                s.guard.error(m.clone());
                return Ok((status_of(status::PIPESERVER_ERROR, m), None));
            }
        };
        let r = match &data {
            PipeData::TsFile { file_name, .. } => load_sent(s, file_name, apply),
            PipeData::Deletion {
                database,
                start,
                end,
                path_pattern,
                ..
            } => delete(apply, database, *start, *end, path_pattern),
        };
        Ok(match r {
            Ok(offset) => {
                info!(?data, "legacy pipe data applied");
                (status_of(status::SUCCESS, ""), offset)
            }
            Err((code, m)) => {
                let m = format!("Fail to load pipeData because {code}: {m}");
                warn!(message = %m, "legacy pipe data not applied");
                s.guard.error(m.clone());
                (status_of(status::PIPESERVER_ERROR, m), None)
            }
        })
    }
}

/// A DELETION PipeData.
fn delete(
    apply: &dyn Apply,
    database: &str,
    start: i64,
    end: i64,
    pattern: &str,
) -> Result<Option<u64>, (i32, String)> {
    if start > end {
        return Ok(None);
    }
    let all_time = start == i64::MIN && end == i64::MAX;
    if all_time && !database.is_empty() && database != "root" && pattern == format!("{database}.**")
    {
        // 1.1: DELETE TIMESERIES <database>.** — no series left, the
        // database kept.
        return apply.clear_database(database);
    }
    apply.delete(vec![pattern.to_string()], start, end)
}

/// A TSFILE PipeData: the sent pieces renamed, the TsFile loaded (without
/// what its `.mods` deletes), every file of it deleted.
fn load_sent(
    s: &mut Session,
    file_name: &str,
    apply: &dyn Apply,
) -> Result<Option<u64>, (i32, String)> {
    let name = bare_name(file_name)
        .map_err(|e| (status::PIPESERVER_ERROR, e))?
        .to_string();
    let mut renamed = Vec::new();
    let entries = std::fs::read_dir(&s.dir)
        .map_err(|e| (status::LOAD_FILE_ERROR, format!("{}: {e}", s.dir.display())))?;
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(done) = f.strip_suffix(PATCH).filter(|d| d.starts_with(&name)) {
            let to = s.dir.join(done);
            std::fs::rename(e.path(), &to)
                .map_err(|e| (status::LOAD_FILE_ERROR, format!("{}: {e}", to.display())))?;
            renamed.push(done.to_string());
        }
    }
    let path = s.dir.join(&name);
    let r = if !renamed.contains(&name) {
        Err((
            status::LOAD_FILE_ERROR,
            format!("{name} was not received: send it with sendFile first"),
        ))
    } else {
        let mods = s.dir.join(format!("{name}.mods"));
        let deletions = if renamed.contains(&format!("{name}.mods")) {
            read_mods(&mods).map_err(|m| (status::LOAD_FILE_ERROR, m))
        } else {
            Ok(Vec::new())
        };
        deletions.and_then(|d| crate::load::load_without(&path, &name, apply, &d).map(|l| l.offset))
    };
    for f in renamed {
        let p = s.dir.join(&f);
        if let Err(e) = std::fs::remove_file(&p) {
            warn!(file = %p.display(), cause = %e, "cannot delete a loaded file");
        }
        s.index.remove(&f);
        s.sizes.remove(&f);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{receiver, Sink};

    fn info(version: &str, database: &str) -> TSyncIdentityInfo {
        TSyncIdentityInfo {
            pipe_name: Some("p".into()),
            create_time: Some(1_650_000_000_000),
            version: Some(version.into()),
            database: Some(database.into()),
        }
    }

    fn meta(name: &str, at: i64) -> TSyncTransportMetaInfo {
        TSyncTransportMetaInfo {
            file_name: Some(name.into()),
            start_index: Some(at),
        }
    }

    #[test]
    fn handshake_checks_whitelist_version_and_makes_the_database() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let peer = "127.0.0.2:4000".parse().unwrap();
        let mut st = ReceiverState::new(Some(peer), false);
        let (s, _) = rx.legacy_handshake(&mut st, &info("0.13", "root.sg"), &sink);
        assert_eq!(s.code, 1108);
        assert_eq!(
            s.message.unwrap(),
            "version mismatch: the sender <0.13>, the receiver <1.1>"
        );
        let (s, _) = rx.legacy_handshake(&mut st, &info("1", "root.sg"), &sink);
        assert_eq!(s.code, 1108);
        assert!(rx.registry().rows().is_empty());
        let (s, off) = rx.legacy_handshake(&mut st, &info("1.1.2", "root.sg"), &sink);
        assert_eq!((s.code, s.message.as_deref()), (200, Some("")));
        assert_eq!(off, Some(1));
        assert_eq!(sink.calls(), ["create root.sg"]);
        // "root" (the 1.2 legacy connector's) and "" make nothing.
        for db in ["root", ""] {
            let (s, _) = rx.legacy_handshake(&mut st, &info("1.1", db), &sink);
            assert_eq!(s.code, 200);
        }
        assert_eq!(sink.calls().len(), 1);
        let (s, _) = rx.legacy_handshake(&mut st, &info("1.1", "nonsense"), &sink);
        assert_eq!(s.code, 1108);
        assert!(s
            .message
            .unwrap()
            .starts_with("Auto register database nonsense error."));
        let rows = rx.registry().rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].id.as_str(), rows[0].state, rows[0].remote.as_str()),
            ("p", "STOP", "127.0.0.2")
        );
        // Outside the white list.
        rx.set_ip_white_list("10.0.0.0/8".parse().unwrap());
        let (s, _) = rx.legacy_handshake(&mut st, &info("1.1", "root.sg"), &sink);
        assert_eq!(s.code, 1108);
        assert!(s
            .message
            .unwrap()
            .starts_with("permission is not allowed: the sender IP <127.0.0.2>"));
        // The claimed version is the node's to set.
        rx.set_ip_white_list("0.0.0.0/0".parse().unwrap());
        rx.set_version("0.13".into());
        assert_eq!(
            rx.legacy_handshake(&mut st, &info("0.13.4", ""), &sink)
                .0
                .code,
            200
        );
    }

    #[test]
    fn send_file_resumes_with_1104_and_pipe_data_loads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        let file = std::fs::read(format!(
            "{}/../protocol/tests/data/v3_aligned_snappy.tsfile",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let name = "1-1-0-0.tsfile";
        assert_eq!(
            rx.send_file(&mut st, &meta(name, 0), &file[..10]),
            Err(NotAlive)
        );
        assert_eq!(
            rx.send_pipe_data(&mut st, &[0], &sink).unwrap_err(),
            NotAlive
        );
        assert_eq!(
            rx.legacy_handshake(&mut st, &info("1.1", "root.sg"), &sink)
                .0
                .code,
            200
        );
        // A new file must start at 0.
        let s = rx
            .send_file(&mut st, &meta(name, 100), &file[100..200])
            .unwrap();
        assert_eq!((s.code, s.message.as_deref()), (1104, Some("0")));
        assert_eq!(
            rx.send_file(&mut st, &meta(name, 0), &file[..100])
                .unwrap()
                .code,
            200
        );
        for wrong in [0, 50, 300] {
            let s = rx
                .send_file(&mut st, &meta(name, wrong), &file[..10])
                .unwrap();
            assert_eq!((s.code, s.message.as_deref()), (1104, Some("100")));
        }
        assert_eq!(
            rx.send_file(&mut st, &meta(name, 100), &file[100..])
                .unwrap()
                .code,
            200
        );
        let s = rx.send_file(&mut st, &meta("../x", 0), b"x").unwrap();
        assert_eq!(s.code, 1105);
        let data = PipeData::TsFile {
            serial: -1,
            parent_dir: String::new(),
            file_name: name.into(),
        };
        let (s, off) = rx
            .send_pipe_data(&mut st, &data.serialize(), &sink)
            .unwrap();
        assert_eq!(s.code, 200, "{:?}", s.message);
        assert!(off.is_some());
        assert_eq!(sink.tablets().iter().map(|t| t.points()).sum::<usize>(), 54);
        // Consumed: loading it again finds nothing, and a resend starts at 0.
        let (s, _) = rx
            .send_pipe_data(&mut st, &data.serialize(), &sink)
            .unwrap();
        assert_eq!(s.code, 1108);
        assert!(s
            .message
            .unwrap()
            .contains("was not received: send it with sendFile first"));
        assert_eq!(
            rx.send_file(&mut st, &meta(name, 0), &file[..10])
                .unwrap()
                .code,
            200
        );
        let (s, _) = rx.send_pipe_data(&mut st, &[9, 9], &sink).unwrap();
        assert_eq!(s.code, 1108);
        assert!(s
            .message
            .unwrap()
            .starts_with("Pipe data transport error, "));
        // A damaged file: refused with its reason, nothing applied.
        let mut bad = file.clone();
        let n = sink.tablets().len();
        bad[60] ^= 0x55;
        assert_eq!(
            rx.send_file(&mut st, &meta("bad.tsfile", 0), &bad)
                .unwrap()
                .code,
            200
        );
        let d = PipeData::TsFile {
            serial: 1,
            parent_dir: "/x".into(),
            file_name: "bad.tsfile".into(),
        };
        let (s, _) = rx.send_pipe_data(&mut st, &d.serialize(), &sink).unwrap();
        assert_eq!(s.code, 1108);
        assert!(s.message.unwrap().contains("bad.tsfile"));
        assert_eq!(sink.tablets().len(), n);
        let row = &rx.registry().rows()[0];
        assert!(row.message.contains("bad.tsfile"), "{}", row.message);
        // Over the bound (1 MiB here): 1105.
        let big = vec![0u8; 600 << 10];
        assert_eq!(
            rx.send_file(&mut st, &meta("b1", 0), &big).unwrap().code,
            200
        );
        let s = rx.send_file(&mut st, &meta("b2", 0), &big).unwrap();
        assert_eq!(s.code, 1105);
        assert!(s.message.unwrap().contains("pipe_receiver_max_file_size"));
        // The connection's files go with it.
        let dir = rx.dir().to_path_buf();
        drop(st);
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    }

    #[test]
    fn deletions_and_mods() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        rx.legacy_handshake(&mut st, &info("1.1", ""), &sink);
        let del = |db: &str, a: i64, b: i64, p: &str| PipeData::Deletion {
            serial: 0,
            database: db.into(),
            start: a,
            end: b,
            path_pattern: p.into(),
        };
        for d in [
            del("root.sg", 1, 5, "root.sg.d.s"),
            del("root.sg", i64::MIN, i64::MAX, "root.sg.**"),
            del("root.sg", i64::MIN, i64::MAX, "root.sg.d.**"),
            del("root.sg", 9, 1, "root.sg.d.**"),
        ] {
            assert_eq!(
                rx.send_pipe_data(&mut st, &d.serialize(), &sink)
                    .unwrap()
                    .0
                    .code,
                200
            );
        }
        assert_eq!(
            sink.calls(),
            [
                "delete [\"root.sg.d.s\"] 1 5".to_string(),
                "clear root.sg".into(),
                format!("delete [\"root.sg.d.**\"] {} {}", i64::MIN, i64::MAX),
            ]
        );
        // A file with its .mods: the deleted points are left out.
        let file = std::fs::read(format!(
            "{}/../protocol/tests/data/v3_nonaligned_lz4.tsfile",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mods = "DELETION,root.sg.d1.s1,9223372036854775807,1700000001000,1700000002000\nDELETION,root.sg.d1.s5,100,0\nDELET";
        assert_eq!(
            rx.send_file(&mut st, &meta("f.tsfile", 0), &file)
                .unwrap()
                .code,
            200
        );
        assert_eq!(
            rx.send_file(&mut st, &meta("f.tsfile.mods", 0), mods.as_bytes())
                .unwrap()
                .code,
            200
        );
        assert_eq!(
            rx.send_file(&mut st, &meta("f.tsfile.resource", 0), b"ignored")
                .unwrap()
                .code,
            200
        );
        let d = PipeData::TsFile {
            serial: 1,
            parent_dir: String::new(),
            file_name: "f.tsfile".into(),
        };
        let (s, _) = rx.send_pipe_data(&mut st, &d.serialize(), &sink).unwrap();
        assert_eq!(s.code, 200, "{:?}", s.message);
        // 54 points; s1 loses 2; s5's old-form deletion (up to t=0) none.
        assert_eq!(sink.tablets().iter().map(|t| t.points()).sum::<usize>(), 52);
    }
}
