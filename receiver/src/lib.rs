//! The receiving side of an edgepipe node: one path for everything a sender
//! pushes into it, on the client port and on the pipe server's port.
//!
//! # Layout
//! - [`Receiver`] (this file): what the node's connections share, and the
//!   dispatch of IoTDB 1.2's `pipeTransfer` by request type.
//! - [`whitelist`]: `ip_white_list`, checked on the socket's peer address
//!   before a request is decoded.
//! - [`mod@file`]: 1.2 file pieces and seals (types 4 and 5), in a directory of
//!   the connection's own.
//! - [`load`]: a sealed TsFile checked whole, then loaded into the store
//!   batch by batch.
//! - [`legacy`]: IoTDB 1.1's `handshake`, `sendPipeData` and `sendFile`.
//! - [`registry`]: the incoming pipes `SHOW PIPES` lists.
//!
//! # pipeTransfer (no login, as in IoTDB 1.2)
//! - Handshake (type 1): the sender's timestamp precision must equal ours,
//!   else 1802 PIPE_HANDSHAKE_ERROR naming both; it opens a fresh directory
//!   for this connection's file pieces.
//! - Rows: raw tablets (type 3) are decoded once and logged as received;
//!   InsertNodes (type 2), raw WAL entries (type 7) and batches of any mix
//!   of the three (type 6) are decoded into tablets. All go through the
//!   node's change log ([`Apply`]), series created as its schema rules say.
//! - Files (types 4 and 5): see [`mod@file`]; a sealed file is loaded by
//!   [`load`].
//! - Unknown types get 1801, other versions 1800; a body that does not
//!   decode 1107 naming what is wrong. The connection stays usable; no
//!   input panics.
//!
//! Applying the same rows twice leaves the same data (a later write of a
//! series and timestamp replaces the earlier one), so a sender's replay
//! after a fault does not change query results.
#![deny(missing_docs)]

mod batch;
pub mod file;
pub mod legacy;
pub mod load;
pub mod registry;
pub mod whitelist;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp, TSStatus};
use protocol::tablet::{Tablet, TabletViews};
use protocol::types::{status, DataType};
use tracing::{debug, warn};

/// A series a loaded file would write, for [`Apply::check_series`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCheck {
    /// The full path, canonical (`root.sg.d.s`).
    pub path: String,
    /// The type its values have.
    pub data_type: DataType,
    /// Whether its device is aligned.
    pub aligned: bool,
}

/// Where received data goes: the node's store, through its change log.
/// Every method returns the log offset to wait on for durability (if it
/// wrote anything), or the failure as `(status code, message)`.
pub trait Apply: Send + Sync {
    /// Applies tablets in order; each comes with its serialized bytes
    /// (`Tablet.serialize()` + aligned byte), which the log stores as they
    /// are.
    ///
    /// # Errors
    /// The failing tablet's status.
    fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)>;

    /// [`Apply::apply`] for tablets read in place (a type-6 batch of
    /// tablets, what edgepipe's connector sends), each logged as its
    /// [`protocol::tablet::TabletView::bytes`]: the store applies them without an owned
    /// tablet each. The default builds the owned tablets.
    ///
    /// # Errors
    /// The failing tablet's status.
    fn apply_views(&self, tablets: &TabletViews<'_>) -> Result<Option<u64>, (i32, String)> {
        self.apply(tablets.iter().map(|t| (t.to_tablet(), t.bytes())).collect())
    }

    /// Checks, writing nothing, that points of these series could be
    /// written: types and alignment agree with existing series, and new
    /// ones may be created. The default refuses (a sink of rows only).
    ///
    /// # Errors
    /// The first series that could not be written.
    fn check_series(&self, series: &[SeriesCheck]) -> Result<(), (i32, String)> {
        let _ = series;
        Err(unsupported("loading files"))
    }

    /// Deletes the points of the series matching `patterns` with a time in
    /// `[min, max]`. The default refuses.
    ///
    /// # Errors
    /// A pattern that does not parse, or a log failure.
    fn delete(
        &self,
        patterns: Vec<String>,
        min: i64,
        max: i64,
    ) -> Result<Option<u64>, (i32, String)> {
        let _ = (patterns, min, max);
        Err(unsupported("deletions"))
    }

    /// Creates `database`; one that exists (or overlaps an existing one)
    /// is not an error. The default refuses.
    ///
    /// # Errors
    /// An invalid path, or a log failure.
    fn create_database(&self, database: &str) -> Result<Option<u64>, (i32, String)> {
        let _ = database;
        Err(unsupported("creating databases"))
    }

    /// Removes every series and point of `database` and keeps the database
    /// (what IoTDB 1.1's `DELETE TIMESERIES <database>.**` leaves). A
    /// database that does not exist is left alone. The default refuses.
    ///
    /// # Errors
    /// A log failure.
    fn clear_database(&self, database: &str) -> Result<Option<u64>, (i32, String)> {
        let _ = database;
        Err(unsupported("deleting databases"))
    }
}

fn unsupported(what: &str) -> (i32, String) {
    (
        status::UNSUPPORTED_OPERATION,
        format!("this receiver does not support {what}"),
    )
}

/// The settings of a node's receiving side.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The node's timestamp precision (`ms`, `us`, `ns`).
    pub precision: String,
    /// Where connections keep the files they receive (each in a directory
    /// of its own): `<data_dir>/system/pipe/receiver`.
    pub dir: PathBuf,
    /// `ip_white_list`.
    pub ip_white_list: whitelist::IpWhiteList,
    /// The IoTDB version a legacy handshake is compared with
    /// (`legacy_receiver_version`).
    pub version: String,
    /// The most bytes one connection may hold in received files at once
    /// (`pipe_receiver_max_file_size`).
    pub max_file_size: u64,
}

/// What a node's connections share on the receiving side.
#[derive(Debug)]
pub struct Receiver {
    precision: String,
    dir: PathBuf,
    whitelist: whitelist::SharedWhiteList,
    version: RwLock<String>,
    max_file_size: AtomicU64,
    /// The most bytes a compressed request may unpack to
    /// (`thrift_max_frame_size`: no more than an uncompressed one carries).
    max_request: AtomicUsize,
    next_dir: AtomicU64,
    registry: Arc<registry::Registry>,
}

impl Receiver {
    /// The receiving side, with its file directory emptied: files left by
    /// a crash or a kill are deleted.
    ///
    /// # Errors
    /// The directory cannot be emptied or created.
    pub fn open(config: ReceiverConfig) -> Result<Receiver, String> {
        match std::fs::remove_dir_all(&config.dir) {
            Ok(()) => debug!(dir = %config.dir.display(), "removed files left by an earlier run"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "{}: cannot remove leftover received files: {e}",
                    config.dir.display()
                ))
            }
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| format!("{}: {e}", config.dir.display()))?;
        Ok(Receiver {
            precision: config.precision,
            dir: config.dir,
            whitelist: whitelist::SharedWhiteList::new(config.ip_white_list),
            version: RwLock::new(config.version),
            max_file_size: AtomicU64::new(config.max_file_size),
            max_request: AtomicUsize::new(pipe::compress::MAX_INFLATED),
            next_dir: AtomicU64::new(1),
            registry: Arc::new(registry::Registry::default()),
        })
    }

    /// The incoming pipes.
    pub fn registry(&self) -> &Arc<registry::Registry> {
        &self.registry
    }

    /// The directory under which connections keep received files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current `ip_white_list`.
    pub fn ip_white_list(&self) -> whitelist::IpWhiteList {
        self.whitelist.get()
    }

    /// Replaces `ip_white_list` (for every connection's next request).
    pub fn set_ip_white_list(&self, list: whitelist::IpWhiteList) {
        self.whitelist.set(list);
    }

    /// The IoTDB version legacy handshakes are compared with.
    pub fn version(&self) -> String {
        self.version.read().expect("version lock").clone()
    }

    /// Replaces the version legacy handshakes are compared with.
    pub fn set_version(&self, version: String) {
        *self.version.write().expect("version lock") = version;
    }

    /// The most bytes one connection may hold in received files.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size.load(Ordering::Relaxed)
    }

    /// Replaces the bound on a connection's received files.
    pub fn set_max_file_size(&self, bytes: u64) {
        self.max_file_size.store(bytes, Ordering::Relaxed);
    }

    /// Sets the most bytes a compressed request (type 300) may unpack to:
    /// the node's `thrift_max_frame_size` (default
    /// [`pipe::compress::MAX_INFLATED`], the default frame limit).
    pub fn set_max_request(&self, bytes: usize) {
        self.max_request.store(bytes, Ordering::Relaxed);
    }

    /// Whether the connection's peer may send: `ip_white_list`, remembered
    /// per connection while the list is unchanged. A connection without a
    /// peer address (in-process callers) is admitted.
    ///
    /// # Errors
    /// The 1108 status for a refused sender (logged with its address).
    pub fn admit(&self, state: &mut ReceiverState) -> Result<(), TSStatus> {
        match state.peer {
            Some(peer) => self.whitelist.check(peer.ip(), &mut state.admitted),
            None => Ok(()),
        }
    }

    /// A fresh, empty directory for one connection's files.
    fn new_dir(&self) -> std::io::Result<PathBuf> {
        let id = self.next_dir.fetch_add(1, Ordering::Relaxed);
        let d = self.dir.join(format!("{id:010}"));
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Handles one `pipeTransfer` request. Returns the reply and, when data
    /// was applied, the log offset to wait on before sending it.
    pub fn transfer(
        &self,
        state: &mut ReceiverState,
        req: TPipeTransferReq,
        apply: &dyn Apply,
    ) -> (TPipeTransferResp, Option<u64>) {
        let body = req.body.unwrap_or_default();
        self.transfer_parts(state, req.version, req.type_, &body, apply)
    }

    /// [`Receiver::transfer`] for a request whose fields were read in
    /// place: `body` can be a slice of the received frame (no copy of a
    /// 16 MiB body).
    pub fn transfer_parts(
        &self,
        state: &mut ReceiverState,
        version: Option<i8>,
        type_: Option<i16>,
        body: &[u8],
        apply: &dyn Apply,
    ) -> (TPipeTransferResp, Option<u64>) {
        if state.transfer.is_none() {
            if let Some(peer) = state.peer {
                state.transfer = Some(self.registry.connect(
                    registry::Key::Transfer {
                        ip: peer.ip().to_canonical(),
                    },
                    state.via_pipe_server,
                    format!("{{protocol=pipeTransfer, precision={}}}", self.precision),
                ));
            }
        }
        let (resp, offset) = self.dispatch(state, version, type_, body, apply);
        let code = resp.status.code;
        if code != status::SUCCESS && code != pipe::PIPE_TRANSFER_FILE_OFFSET_RESET {
            let message = format!(
                "{code}: {}",
                resp.status.message.as_deref().unwrap_or_default()
            );
            warn!(r#type = type_.map(pipe::type_name), %message, "pipeTransfer request refused");
            if let Some(g) = &state.transfer {
                g.error(message);
            }
        }
        (resp, offset)
    }

    fn dispatch(
        &self,
        state: &mut ReceiverState,
        version: Option<i8>,
        type_: Option<i16>,
        body: &[u8],
        apply: &dyn Apply,
    ) -> (TPipeTransferResp, Option<u64>) {
        let version = version.unwrap_or(-1);
        if version != pipe::VERSION {
            return (
                resp(
                    pipe::PIPE_VERSION_ERROR,
                    Some(format!("Unsupported pipe version {version}")),
                ),
                None,
            );
        }
        let Some(t) = type_ else {
            return (
                resp(
                    pipe::PIPE_TYPE_ERROR,
                    Some("pipeTransfer request without a type".into()),
                ),
                None,
            );
        };
        debug!(
            r#type = pipe::type_name(t),
            bytes = body.len(),
            "pipeTransfer"
        );
        let undecodable = |e: String| {
            (
                resp(
                    status::PIPE_ERROR,
                    Some(format!("{} body does not decode: {e}", pipe::type_name(t))),
                ),
                None,
            )
        };
        match t {
            pipe::HANDSHAKE => match pipe::read_handshake(body) {
                Ok(p) if p == self.precision => match state.files.handshake(self) {
                    Ok(()) => {
                        state.handshake = Some(p);
                        (resp(status::SUCCESS, None), None)
                    }
                    Err(e) => (
                        resp(pipe::PIPE_HANDSHAKE_ERROR, Some(format!("the receiver cannot make a directory for received files under {}: {e}", self.dir.display()))),
                        None,
                    ),
                },
                Ok(p) => (
                    resp(
                        pipe::PIPE_HANDSHAKE_ERROR,
                        Some(format!("IoTDB receiver's timestamp precision {}, connector's timestamp precision {p}. Validation fails.", self.precision)),
                    ),
                    None,
                ),
                Err(e) => undecodable(e),
            },
            // Decoded once. The usual body ends with the aligned byte and is
            // logged as received; one without it is logged re-encoded with it.
            pipe::TRANSFER_TABLET_RAW => match Tablet::deserialize_v12_body(body) {
                Ok((tablet, true)) => applied(apply, vec![(tablet, body)]),
                Ok((tablet, false)) => {
                    let bytes = tablet.serialize_v12();
                    applied(apply, vec![(tablet, &bytes[..])])
                }
                Err(e) => undecodable(e),
            },
            // Tablets only (what edgepipe's connector sends): read in place
            // and logged as received, no copy; any other batch is decoded.
            pipe::TRANSFER_TABLET_BATCH => match batch::read_tablets(body) {
                Some(Ok(views)) => applied_views(apply, &views),
                Some(Err(e)) => undecodable(e),
                None => match pipe::read_batch(body) {
                    Ok(pipe::Batch { binaries: 0, insert_nodes: 0, tablets }) => {
                        applied(apply, tablets.into_iter().map(|(t, r)| (t, &body[r])).collect())
                    }
                    Ok(_) => match protocol::insert_node::decode_batch(body) {
                        Ok(tablets) => apply_decoded(apply, tablets),
                        Err(e) => undecodable(e),
                    },
                    Err(e) => undecodable(e),
                },
            },
            pipe::TRANSFER_TABLET_INSERT_NODE => match protocol::insert_node::decode_insert_node(body) {
                Ok(t) => apply_decoded(apply, vec![t]),
                Err(e) => undecodable(e),
            },
            pipe::TRANSFER_TABLET_BINARY => match protocol::insert_node::decode_wal_entry(body) {
                Ok(t) => apply_decoded(apply, vec![t]),
                Err(e) => undecodable(e),
            },
            pipe::TRANSFER_FILE_PIECE => match pipe::read_file_piece(body) {
                Ok(p) => (state.files.piece(self, p), None),
                Err(e) => (file_error(format!("TRANSFER_FILE_PIECE body does not decode: {e}")), None),
            },
            pipe::TRANSFER_FILE_SEAL => match pipe::read_file_seal(body) {
                Ok((name, len)) => state.files.seal(&name, len, apply),
                Err(e) => (file_error(format!("TRANSFER_FILE_SEAL body does not decode: {e}")), None),
            },
            // IoTDB 1.3's compressed request: unpacked within the bounds of
            // `pipe::compress`, then handled as if it had come alone. One
            // level only: no sender nests them, and each level would
            // multiply what a request can make the receiver hold.
            pipe::TRANSFER_COMPRESSED => {
                match pipe::compress::decompress_within(body, self.max_request.load(Ordering::Relaxed)) {
                    Ok(inner) if inner.type_ == pipe::TRANSFER_COMPRESSED => undecodable(
                        "a compressed request inside a compressed request (one level is accepted)".into(),
                    ),
                    Ok(inner) => {
                        debug!(
                            r#type = pipe::type_name(inner.type_),
                            compressed = body.len(),
                            bytes = inner.body().len(),
                            "pipeTransfer unpacked"
                        );
                        self.dispatch(state, Some(inner.version), Some(inner.type_), inner.body(), apply)
                    }
                    Err(e) => undecodable(e),
                }
            }
            other => (resp(pipe::PIPE_TYPE_ERROR, Some(format!("Unknown PipeRequestType {other}."))), None),
        }
    }
}

/// One connection's receiving state: its peer, its handshakes, the files it
/// is sending, its row in the [`registry`]. Dropped when the connection
/// closes, which deletes its partial files and marks its pipes stopped.
#[derive(Debug, Default)]
pub struct ReceiverState {
    /// The socket's peer address (`None` for in-process callers).
    pub peer: Option<SocketAddr>,
    /// Whether the connection came through the pipe server's port.
    pub via_pipe_server: bool,
    /// The precision of the last successful 1.2 handshake.
    pub handshake: Option<String>,
    /// The generation of `ip_white_list` that admitted the peer.
    admitted: whitelist::Admitted,
    /// 1.2 file pieces.
    files: file::Pieces,
    /// The legacy pipe of the last legacy handshake.
    legacy: Option<legacy::Session>,
    /// This connection's row as a 1.2 sender.
    transfer: Option<registry::Guard>,
}

impl ReceiverState {
    /// The state of a connection from `peer`.
    pub fn new(peer: Option<SocketAddr>, via_pipe_server: bool) -> ReceiverState {
        ReceiverState {
            peer,
            via_pipe_server,
            ..ReceiverState::default()
        }
    }
}

/// A `TPipeTransferResp` without a body.
fn resp(code: i32, message: Option<String>) -> TPipeTransferResp {
    TPipeTransferResp {
        status: st(code, message),
        body: None,
    }
}

/// A 1804 reply with body -1, as the Java receiver gives for any failed
/// piece.
fn file_error(message: String) -> TPipeTransferResp {
    TPipeTransferResp {
        status: st(pipe::PIPE_TRANSFER_FILE_ERROR, Some(message)),
        body: Some(pipe::file_piece_reply_body(-1)),
    }
}

/// A status.
pub fn st(code: i32, message: Option<String>) -> TSStatus {
    TSStatus {
        code,
        message,
        sub_status: None,
        redirect_node: None,
        need_retry: None,
    }
}

fn applied(apply: &dyn Apply, tablets: Vec<(Tablet, &[u8])>) -> (TPipeTransferResp, Option<u64>) {
    if tablets.is_empty() {
        return (resp(status::SUCCESS, None), None);
    }
    answer(apply.apply(tablets))
}

fn applied_views(apply: &dyn Apply, tablets: &TabletViews<'_>) -> (TPipeTransferResp, Option<u64>) {
    if tablets.is_empty() {
        return (resp(status::SUCCESS, None), None);
    }
    answer(apply.apply_views(tablets))
}

/// The reply to an apply's outcome, with the log offset to wait for.
fn answer(r: Result<Option<u64>, (i32, String)>) -> (TPipeTransferResp, Option<u64>) {
    match r {
        Ok(offset) => (resp(status::SUCCESS, None), offset),
        Err((code, message)) => (
            resp(
                status::EXECUTE_STATEMENT_ERROR,
                Some(format!("{code}: {message}")),
            ),
            None,
        ),
    }
}

/// Applies tablets decoded from InsertNodes or WAL entries: names put in
/// their stored form, each serialized once for the log. Empty ones (every
/// cell failed on the sender) are skipped.
fn apply_decoded(apply: &dyn Apply, tablets: Vec<Tablet>) -> (TPipeTransferResp, Option<u64>) {
    let mut ready = Vec::with_capacity(tablets.len());
    let mut bytes = Vec::with_capacity(tablets.len());
    for mut t in tablets {
        if t.rows() == 0 || t.columns.is_empty() {
            continue;
        }
        if let Err(e) = canonical_names(&mut t) {
            return (
                resp(
                    status::EXECUTE_STATEMENT_ERROR,
                    Some(format!("{}: {e}", e.code())),
                ),
                None,
            );
        }
        bytes.push(t.serialize_v12());
        ready.push(t);
    }
    applied(
        apply,
        ready
            .into_iter()
            .zip(bytes.iter().map(|b| &b[..]))
            .collect(),
    )
}

/// Puts a tablet's device and measurement names in the form the store
/// keeps (IoTDB's rules; `` `abc` `` becomes `abc`).
///
/// # Errors
/// The first illegal name.
pub fn canonical_names(t: &mut Tablet) -> Result<(), protocol::names::NameError> {
    use protocol::names;
    let d = names::canonical_device(&t.device)?;
    if d != t.device.as_str() {
        t.device = d.into_owned();
    }
    for m in t.measurements.iter_mut() {
        let c = names::canonical_measurement(m)?;
        if c != m.as_str() {
            *m = c.into_owned();
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protocol::insert_node;
    use protocol::tablet::Column;
    use std::sync::Mutex;

    /// What was applied: each tablet with the bytes handed to the log, and
    /// every other call, in order.
    #[derive(Default)]
    pub(crate) struct Sink {
        pub tablets: Mutex<Vec<(Tablet, Vec<u8>)>>,
        pub calls: Mutex<Vec<String>>,
        /// A series type the sink says exists (`path`, type).
        pub schema: Mutex<Vec<(String, DataType)>>,
    }

    impl Apply for Sink {
        fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)> {
            if tablets.iter().any(|t| t.0.device == "root.bad") {
                return Err((507, "type mismatch".into()));
            }
            let mut v = self.tablets.lock().unwrap();
            v.extend(tablets.into_iter().map(|(t, b)| (t, b.to_vec())));
            Ok(Some(v.len() as u64))
        }
        fn check_series(&self, series: &[SeriesCheck]) -> Result<(), (i32, String)> {
            let schema = self.schema.lock().unwrap();
            for s in series {
                if let Some((_, t)) = schema.iter().find(|(p, _)| *p == s.path) {
                    if *t != s.data_type {
                        return Err((614, format!("data type of {} is {t}", s.path)));
                    }
                }
            }
            Ok(())
        }
        fn delete(
            &self,
            patterns: Vec<String>,
            min: i64,
            max: i64,
        ) -> Result<Option<u64>, (i32, String)> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("delete {patterns:?} {min} {max}"));
            Ok(Some(1))
        }
        fn create_database(&self, database: &str) -> Result<Option<u64>, (i32, String)> {
            if !database.starts_with("root.") {
                return Err((509, format!("{database} is not a valid database path")));
            }
            self.calls
                .lock()
                .unwrap()
                .push(format!("create {database}"));
            Ok(Some(1))
        }
        fn clear_database(&self, database: &str) -> Result<Option<u64>, (i32, String)> {
            self.calls.lock().unwrap().push(format!("clear {database}"));
            Ok(Some(1))
        }
    }

    impl Sink {
        pub(crate) fn tablets(&self) -> Vec<Tablet> {
            self.tablets
                .lock()
                .unwrap()
                .iter()
                .map(|t| t.0.clone())
                .collect()
        }
        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    pub(crate) fn receiver(dir: &Path) -> Receiver {
        Receiver::open(ReceiverConfig {
            precision: "ms".into(),
            dir: dir.join("receiver"),
            ip_white_list: whitelist::IpWhiteList::default(),
            version: "1.1".into(),
            max_file_size: 1 << 20,
        })
        .unwrap()
    }

    pub(crate) fn req(t: i16, body: Vec<u8>) -> TPipeTransferReq {
        TPipeTransferReq {
            version: Some(1),
            type_: Some(t),
            body: Some(body),
        }
    }

    fn tablet(device: &str) -> Tablet {
        Tablet {
            device: device.into(),
            measurements: vec!["m".into()],
            columns: vec![Column::Int64(vec![1])],
            nulls: vec![None],
            times: vec![5],
            aligned: false,
        }
    }

    #[test]
    fn handshake_tablets_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        let (r, _) = rx.transfer(&mut st, req(1, pipe::handshake_body("us")), &sink);
        assert_eq!(r.status.code, 1802);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("receiver's timestamp precision ms, connector's timestamp precision us"));
        let (r, _) = rx.transfer(&mut st, req(1, pipe::handshake_body("ms")), &sink);
        assert_eq!(r.status.code, 200);
        let (r, off) = rx.transfer(&mut st, req(3, tablet("root.a.d").serialize_v12()), &sink);
        assert_eq!((r.status.code, off), (200, Some(1)));
        // A body without the trailing aligned byte is accepted too: what is
        // applied is the tablet it holds (not aligned), and the log gets it
        // in its own form, with the aligned byte.
        let mut g = tablet("root.a.g");
        g.aligned = true;
        let mut short = g.serialize_v12();
        short.pop();
        let (r, _) = rx.transfer(&mut st, req(3, short), &sink);
        assert_eq!(r.status.code, 200);
        let (applied, logged) = sink.tablets.lock().unwrap().pop().unwrap();
        g.aligned = false;
        assert_eq!(applied, g);
        assert_eq!(logged, g.serialize_v12());
        // With the aligned byte, the body is logged as received.
        let mut h = tablet("root.a.h");
        h.aligned = true;
        let (r, _) = rx.transfer(&mut st, req(3, h.serialize_v12()), &sink);
        assert_eq!(r.status.code, 200);
        let (applied, logged) = sink.tablets.lock().unwrap().pop().unwrap();
        assert_eq!(applied, h);
        assert_eq!(logged, h.serialize_v12());
        let bytes = [
            tablet("root.a.e").serialize_v12(),
            tablet("root.a.f").serialize_v12(),
        ];
        let (r, off) = rx.transfer(
            &mut st,
            req(6, pipe::batch_body(bytes.iter().map(|b| &b[..]))),
            &sink,
        );
        assert_eq!((r.status.code, off), (200, Some(3)));
        let (r, _) = rx.transfer(&mut st, req(3, tablet("root.bad").serialize_v12()), &sink);
        assert_eq!(r.status.code, 301);
        for t in [2, 7] {
            let (r, _) = rx.transfer(&mut st, req(t, vec![1, 2, 3]), &sink);
            assert_eq!(r.status.code, 1107);
            assert!(r.status.message.unwrap().contains("body does not decode"));
        }
        for t in [4, 5] {
            let (r, _) = rx.transfer(&mut st, req(t, vec![1, 2, 3]), &sink);
            assert_eq!(r.status.code, 1804);
            assert_eq!(r.body, Some(pipe::file_piece_reply_body(-1)));
        }
        let (r, _) = rx.transfer(&mut st, req(99, vec![]), &sink);
        assert_eq!(r.status.code, 1801);
        let (r, _) = rx.transfer(
            &mut st,
            TPipeTransferReq {
                version: Some(2),
                type_: Some(3),
                body: None,
            },
            &sink,
        );
        assert_eq!(r.status.code, 1800);
        let (r, _) = rx.transfer(&mut st, req(3, vec![0, 0, 0, 50, 1]), &sink);
        assert_eq!(r.status.code, 1107);
        assert!(r.status.message.unwrap().contains("does not decode"));
        assert_eq!(
            sink.tablets(),
            vec![tablet("root.a.d"), tablet("root.a.e"), tablet("root.a.f")]
        );
        for (t, b) in sink.tablets.lock().unwrap().iter() {
            assert_eq!(&t.serialize_v12(), b);
        }
    }

    /// IoTDB 1.3's compressed request, built by hand from its layout
    /// (`PipeTransferCompressedReq.toTPipeTransferReq`: u8 count, then
    /// per compressor its id and the i32 length it was given, then the
    /// compressed version + type + body), with every compressor: applied
    /// as the request inside, logged as received uncompressed.
    #[test]
    fn compressed_requests_are_unpacked_and_bombs_refused() {
        use protocol::pipe::compress::Compressor;
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        let by_hand = |c: Compressor, t: i16, body: &[u8]| {
            let mut inner = vec![1u8];
            inner.extend_from_slice(&t.to_be_bytes());
            inner.extend_from_slice(body);
            let mut b = vec![1, c.id()];
            b.extend_from_slice(&(inner.len() as i32).to_be_bytes());
            b.extend_from_slice(&c.compress(&inner).unwrap());
            req(pipe::TRANSFER_COMPRESSED, b)
        };
        // Even the handshake may come compressed.
        let (r, _) = rx.transfer(
            &mut st,
            by_hand(
                Compressor::Gzip,
                pipe::HANDSHAKE,
                &pipe::handshake_body("ms"),
            ),
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        for (i, c) in Compressor::ALL.into_iter().enumerate() {
            let bytes: Vec<Vec<u8>> = (0..50)
                .map(|k| tablet(&format!("root.z.d{i}_{k}")).serialize_v12())
                .collect();
            let batch = pipe::batch_body(bytes.iter().map(|b| &b[..]));
            let (r, off) = rx.transfer(
                &mut st,
                by_hand(c, pipe::TRANSFER_TABLET_BATCH, &batch),
                &sink,
            );
            assert_eq!(r.status.code, 200, "{c}: {:?}", r.status.message);
            assert!(off.is_some());
            let got = sink.tablets.lock().unwrap().split_off(0);
            assert_eq!(got.len(), 50, "{c}");
            for (k, (t, logged)) in got.into_iter().enumerate() {
                assert_eq!(t, tablet(&format!("root.z.d{i}_{k}")));
                assert_eq!(logged, bytes[k]);
            }
        }
        // A chain, as edgepipe's sender makes it: the same.
        let one = tablet("root.z.chain").serialize_v12();
        let z = pipe::compress::compressed_body(
            &[Compressor::Snappy, Compressor::Zstd(3)],
            pipe::TRANSFER_TABLET_RAW,
            &[&one],
        )
        .unwrap();
        let (r, _) = rx.transfer(&mut st, req(pipe::TRANSFER_COMPRESSED, z.clone()), &sink);
        assert_eq!(r.status.code, 200);
        assert_eq!(sink.tablets(), vec![tablet("root.z.chain")]);
        // Refused, with what was wrong: a claimed length past the bounds
        // (nothing allocated for it), past this receiver's frame limit, a
        // request nested in another, an unknown compressor.
        let mut bomb = vec![1, 3];
        bomb.extend_from_slice(&(1i32 << 30).to_be_bytes());
        bomb.extend_from_slice(&[0; 64]);
        let (r, _) = rx.transfer(&mut st, req(300, bomb), &sink);
        assert_eq!(r.status.code, status::PIPE_ERROR);
        let m = r.status.message.unwrap();
        assert!(m.contains("TRANSFER_COMPRESSED body does not decode: zstd: says it unpacks to 1073741824 bytes"), "{m}");
        rx.set_max_request(16);
        let (r, _) = rx.transfer(&mut st, req(300, z.clone()), &sink);
        let m = r.status.message.unwrap();
        assert!(m.contains("at most 16: thrift_max_frame_size"), "{m}");
        rx.set_max_request(pipe::compress::MAX_INFLATED);
        let nested = by_hand(Compressor::Lz4, pipe::TRANSFER_COMPRESSED, &z);
        let (r, _) = rx.transfer(&mut st, nested, &sink);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("inside a compressed request"));
        let (r, _) = rx.transfer(&mut st, req(300, vec![1, 9, 0, 0, 0, 1, 0]), &sink);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("unknown compressor id 9"));
        assert_eq!(sink.tablets().len(), 1);
    }

    #[test]
    fn insert_nodes_wal_entries_and_mixed_batches_are_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let mut st = ReceiverState::default();
        let t = Tablet {
            device: "root.sg.`d1`".into(),
            measurements: vec!["s1".into(), "`s2`".into(), "b".into()],
            columns: vec![
                Column::Int64(vec![10, 20, 30]),
                Column::Text(vec![b"a".to_vec(), vec![], b"c".to_vec()]),
                Column::Boolean(vec![true, false, true]),
            ],
            nulls: vec![
                None,
                Some(vec![false, true, false]),
                Some(vec![false, false, true]),
            ],
            times: vec![1, 2, 3],
            aligned: true,
        };
        let mut want = t.clone();
        want.device = "root.sg.d1".into();
        want.measurements[1] = "s2".into();
        let row = |r: usize| {
            let mut w = Tablet {
                device: want.device.clone(),
                measurements: want.measurements.clone(),
                columns: want.columns.iter().map(|c| c.gather(&[r])).collect(),
                nulls: want
                    .nulls
                    .iter()
                    .map(|n| n.as_ref().map(|n| vec![n[r]]))
                    .collect(),
                times: vec![want.times[r]],
                aligned: true,
            };
            // A row node carries no cell for a null: the decoder marks it.
            for (c, n) in w.nulls.iter_mut().enumerate() {
                if n.is_none() && want.is_null(c, r) {
                    *n = Some(vec![true]);
                }
            }
            w
        };
        let (r, _) = rx.transfer(
            &mut st,
            req(2, insert_node::encode_insert_tablet_node(&t, "1")),
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let (r, _) = rx.transfer(
            &mut st,
            req(2, insert_node::encode_insert_row_node(&t, 1, "2")),
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let (r, _) = rx.transfer(
            &mut st,
            req(7, insert_node::encode_wal_entry(&t, None, 3, -1)),
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let (r, _) = rx.transfer(
            &mut st,
            req(7, insert_node::encode_wal_entry(&t, Some(2), 3, 9)),
            &sink,
        );
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let batch = insert_node::encode_batch(
            &[insert_node::encode_wal_entry(&t, Some(0), 1, 1)],
            &[insert_node::encode_insert_row_node(&t, 2, "x")],
            &[want.clone()],
        );
        let (r, _) = rx.transfer(&mut st, req(6, batch), &sink);
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let got = sink.tablets();
        assert_eq!(got.len(), 7);
        assert_eq!(got[0], want);
        assert_eq!(got[2], want);
        assert_eq!(got[6], want);
        for (g, r) in [(&got[1], 1), (&got[3], 2), (&got[4], 0), (&got[5], 2)] {
            let w = row(r);
            assert_eq!(
                (g.times.clone(), g.device.clone()),
                (w.times.clone(), w.device.clone())
            );
            for c in 0..3 {
                assert_eq!(g.is_null(c, 0), w.is_null(c, 0), "row {r} column {c}");
                if !w.is_null(c, 0) {
                    assert_eq!(g.columns[c].get(0), w.columns[c].get(0));
                }
            }
        }
        for (t, b) in sink.tablets.lock().unwrap().iter() {
            assert_eq!(&t.serialize_v12(), b);
        }
        // An illegal name is refused with its reason, nothing applied.
        let mut bad = t.clone();
        bad.measurements[0] = "a b".into();
        let (r, _) = rx.transfer(
            &mut st,
            req(2, insert_node::encode_insert_tablet_node(&bad, "1")),
            &sink,
        );
        assert_eq!(r.status.code, 301);
        assert!(r.status.message.unwrap().starts_with("509"));
        assert_eq!(sink.tablets().len(), 7);
    }

    #[test]
    fn absent_value_columns_cost_nothing_and_hold_no_points() {
        // Issue 7 finding 5: a body claiming many rows and hundreds of
        // absent columns (one byte each) was expanded into a placeholder
        // per row and column. An absent column holds no points: it is left
        // out, and the present one is applied.
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let rows = 20_000usize;
        let mut body = Vec::new();
        let put = |b: &mut Vec<u8>, s: &[u8]| {
            b.extend_from_slice(&(s.len() as i32).to_be_bytes());
            b.extend_from_slice(s);
        };
        put(&mut body, b"root.amp.d");
        body.extend_from_slice(&(rows as i32).to_be_bytes());
        let columns = 500;
        body.push(1);
        body.extend_from_slice(&(columns as i32).to_be_bytes());
        for c in 0..columns {
            body.push(1);
            put(&mut body, format!("m{c}").as_bytes());
            body.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0]); // INT64, props 0
        }
        body.push(1);
        for r in 0..rows {
            body.extend_from_slice(&(r as i64).to_be_bytes());
        }
        body.push(0); // no bitmaps
        body.push(1);
        body.push(1); // m0 present
        for r in 0..rows {
            body.extend_from_slice(&(r as i64 * 10).to_be_bytes());
        }
        body.extend(std::iter::repeat_n(0u8, columns - 1)); // the rest absent
        body.push(0); // aligned
        let sink = Sink::default();
        let (r, _) = rx.transfer(&mut ReceiverState::default(), req(3, body.clone()), &sink);
        assert_eq!(r.status.code, 200, "{:?}", r.status.message);
        let (t, logged) = sink.tablets.lock().unwrap().pop().unwrap();
        assert_eq!(t.measurements, vec!["m0"]);
        assert_eq!(t.rows(), rows);
        assert_eq!(t.columns.len(), 1);
        assert_eq!(logged, body);
        // Rows without timestamps are refused, not invented.
        let mut no_times = Vec::new();
        put(&mut no_times, b"root.amp.d");
        no_times.extend_from_slice(&1000i32.to_be_bytes());
        no_times.extend_from_slice(&[0, 0]);
        no_times.extend(std::iter::repeat_n(0u8, 1000));
        let (r, _) = rx.transfer(&mut ReceiverState::default(), req(3, no_times), &sink);
        assert_eq!(r.status.code, 1107);
        assert!(r
            .status
            .message
            .unwrap()
            .contains("1000 rows but no timestamps"));
    }

    #[test]
    fn senders_show_as_rows_with_their_last_error() {
        let tmp = tempfile::tempdir().unwrap();
        let rx = receiver(tmp.path());
        let sink = Sink::default();
        let peer: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let mut st = ReceiverState::new(Some(peer), true);
        let (r, _) = rx.transfer(&mut st, req(3, tablet("root.bad").serialize_v12()), &sink);
        assert_eq!(r.status.code, 301);
        let rows = rx.registry().rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].id.as_str(), rows[0].state),
            ("127.0.0.2", "RUNNING")
        );
        assert_eq!(rows[0].message, "301: 507: type mismatch");
        assert_eq!(rx.registry().running_via_pipe_server(), 1);
        drop(st);
        assert_eq!(rx.registry().rows()[0].state, "STOP");
        assert_eq!(rx.registry().running_via_pipe_server(), 0);
    }
}
