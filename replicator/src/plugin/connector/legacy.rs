//! `iotdb-legacy-pipe-connector`, and every sync-tool (`CREATE PIPE … TO
//! <pipesink>`) pipe: IoTDB 1.0/1.1's sync protocol, which a real 1.1
//! receiver accepts (`shared/reference/iotdb-sync-protocols.md` §C).
//!
//! On one connection to the receiver, kept until it fails:
//!
//! 1. `handshake(TSyncIdentityInfo{pipeName, createTime, version,
//!    database})`: `version` is `connector.version` (default `1.1`), so a
//!    receiver that compares major.minor versions admits us ("spoofed");
//!    `database` is "" on connecting, then each database we send rows of,
//!    once per connection (the receiver creates it, as a 1.1 sender's
//!    handshake made it), with the edge's real database, not IoTDB 1.2's
//!    hard-coded `root`.
//! 2. `openSession` with `connector.user` / `connector.password` (default
//!    root / root), as IoTDB's SessionPool does.
//! 3. Rows as `insertTablet` (one tablet) or `insertTablets` (consecutive
//!    tablets of the same alignment), with the aligned flag.
//! 4. Deletions as `sendPipeData` carrying a legacy DeletionPipeData
//!    (`protocol::legacy::PipeData`), one per path pattern; a delete
//!    database is `<db>.**` over all time (a 1.1 receiver then drops the
//!    series).
//!
//! Order is kept: rows written before a deletion are sent before it.
//! A non-200 status fails the transfer, which the pipe retries (the
//! whole batch, in order) up to `max_number_of_sync_file_retry` times;
//! except 1108 (PIPESERVER_ERROR) on `sendPipeData`: the receiver could not
//! apply that deletion (typically a pattern matching nothing there), and,
//! as IoTDB 1.1's sender did, the deletion is skipped and noted, which the
//! pipe shows as a WARN in its message.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use protocol::legacy::{PipeData, HANDSHAKE, SEND_PIPE_DATA};
use protocol::message::{call, call_args, describe, read_reply, Call, Proto};
use protocol::rpc::{
    TSCloseSessionReq, TSInsertTabletReq, TSInsertTabletsReq, TSOpenSessionReq, TSOpenSessionResp,
    TSStatus, TSendPipeDataArgs, TSyncIdentityInfo,
};
use protocol::tablet::Tablet;
use thrift::protocol::TSerializable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use super::transport::{self, LazyTls, Stream};
use super::{io_text, timeout_text, TransferError};
use crate::plugin::PipeEvent;

/// IoTDB's PIPESERVER_ERROR: a legacy receiver refused a handshake or
/// could not apply a PipeData.
pub const PIPESERVER_ERROR: i32 = 1108;

/// Largest reply frame read from a receiver.
const MAX_REPLY: i32 = 64 << 20;

/// The default version string sent in the handshake (`connector.version`).
pub const DEFAULT_VERSION: &str = "1.1";

/// The settings of a legacy connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySpec {
    /// `connector.ip`.
    pub ip: String,
    /// `connector.port`.
    pub port: u16,
    /// `connector.user`. Default root.
    pub user: String,
    /// `connector.password`. Default root.
    pub password: String,
    /// `connector.version`: the version string of the handshake. Default 1.1.
    pub version: String,
    /// `connector.ssl.*`: TLS, when on.
    pub tls: Option<super::transport::TlsSpec>,
}

/// A lookup of the database holding a path.
pub type DatabaseLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Finds the database a device or path belongs to on this node (the
/// store's schema); `None` when unknown.
#[derive(Clone)]
pub struct DatabaseOf(pub Arc<DatabaseLookup>);

impl std::fmt::Debug for DatabaseOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseOf")
    }
}

impl Default for DatabaseOf {
    /// Knows no database: handshakes then carry "" and the receiver places
    /// the series by its own default database level.
    fn default() -> Self {
        DatabaseOf(Arc::new(|_| None))
    }
}

/// Who is sending: the pipe's name and creation time, as the handshake
/// carries them (a receiver keys its incoming pipes by them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The pipe's name.
    pub pipe_name: String,
    /// Its creation time, ms since the epoch.
    pub creation_time_ms: i64,
}

/// An open, handshaken, logged-in connection.
struct Conn {
    /// Plain TCP, or TLS (`connector.ssl.*`).
    stream: Stream,
    session: i64,
    /// Databases handshaken on this connection.
    databases: HashSet<String>,
}

/// A connection in use: closed with a reset (nothing unsent goes out
/// later) unless the call finished ([`Busy::done`]).
struct Busy(Option<Conn>);

impl Busy {
    fn get(&mut self) -> &mut Conn {
        self.0.as_mut().expect("in use")
    }

    fn done(mut self) -> Conn {
        self.0.take().expect("in use")
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = c.stream.set_zero_linger();
        }
    }
}

/// A live legacy connector.
pub struct Connector {
    spec: LegacySpec,
    identity: Identity,
    timeout: Duration,
    /// `connector.ssl.*`.
    tls: LazyTls,
    database_of: DatabaseOf,
    conn: Option<Conn>,
    seq: i32,
    notes: Vec<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyConnector")
            .field(
                "target",
                &format_args!("{}:{}", self.spec.ip, self.spec.port),
            )
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

fn status_text(s: &TSStatus) -> String {
    let mut m = format!("{}", s.code);
    if let Some(msg) = s.message.as_deref().filter(|m| !m.is_empty()) {
        m.push_str(": ");
        m.push_str(msg);
    }
    for sub in s.sub_status.iter().flatten().filter(|x| x.code != 200) {
        m.push_str(&format!(" [{}]", status_text(sub)));
    }
    m
}

impl Connector {
    /// A connector for `spec`, sending as `identity`, giving up on an
    /// unanswered call after `timeout`.
    pub fn new(
        spec: LegacySpec,
        identity: Identity,
        timeout: Duration,
        database_of: DatabaseOf,
    ) -> Connector {
        Connector {
            tls: LazyTls::new(spec.tls.clone()),
            spec,
            identity,
            timeout,
            database_of,
            conn: None,
            seq: 0,
            notes: Vec::new(),
        }
    }

    /// What the last transfers skipped (each a sentence), taken.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn target(&self) -> String {
        format!("{}:{}", self.spec.ip, self.spec.port)
    }

    /// Checks that the receiver answers, admits us (whitelist, version)
    /// and accepts our login: what `CREATE PIPE … TO` requires. Closes the
    /// connection after.
    ///
    /// # Errors
    /// What failed, in a sentence.
    pub async fn check(&mut self) -> Result<(), String> {
        let mut c = self.connect().await.map_err(|e| e.0)?;
        let req = TSCloseSessionReq {
            session_id: Some(c.get().session),
        };
        let _ = self
            .call::<_, TSStatus>(&mut c.get().stream, "closeSession", Some(1), &req)
            .await;
        let conn = c.done();
        drop(conn);
        Ok(())
    }

    /// Sends `events[*sent..]` in order and waits for each acknowledgement
    /// (see the module doc); `*sent` advances over the events the receiver
    /// acknowledged (all of them on success; after a failure, those before
    /// the failed call, so a retry goes on after them).
    ///
    /// Cancel-safe: dropping the future abandons the call in flight; its
    /// connection is reset and the next transfer connects afresh.
    ///
    /// # Errors
    /// Connection failures, timeouts and non-success statuses (but 1108 on
    /// a deletion, which is skipped and noted).
    pub async fn transfer(
        &mut self,
        events: &[PipeEvent],
        sent: &mut usize,
    ) -> Result<(), TransferError> {
        if *sent >= events.len() {
            *sent = events.len();
            return Ok(());
        }
        let mut c = match self.conn.take() {
            Some(c) => Busy(Some(c)),
            None => self.connect().await?,
        };
        // The tablets gathered for one insert call.
        let mut run: Vec<Tablet> = Vec::new();
        for (i, ev) in events.iter().enumerate().skip(*sent) {
            match ev {
                PipeEvent::Tablet(bytes) => {
                    let t = Tablet::deserialize_v12(bytes).map_err(|e| {
                        TransferError(format!("a tablet to send does not decode: {e}"))
                    })?;
                    let db = (self.database_of.0)(&t.device).unwrap_or_default();
                    if !db.is_empty() && !c.get().databases.contains(&db) {
                        self.flush(&mut c, &mut run, sent, i).await?;
                        self.handshake(&mut c.get().stream, &db).await?;
                        c.get().databases.insert(db);
                    }
                    if run.last().is_some_and(|l| l.aligned != t.aligned) {
                        self.flush(&mut c, &mut run, sent, i).await?;
                    }
                    run.push(t);
                }
                PipeEvent::Delete { patterns, min, max } => {
                    self.flush(&mut c, &mut run, sent, i).await?;
                    for p in patterns {
                        self.delete(&mut c, p, *min, *max).await?;
                    }
                    *sent = i + 1;
                }
            }
        }
        self.flush(&mut c, &mut run, sent, events.len()).await?;
        self.conn = Some(c.done());
        Ok(())
    }

    /// Connects, handshakes (database "") and logs in.
    async fn connect(&mut self) -> Result<Busy, TransferError> {
        let target = self.target();
        let tls = self.tls.get().map_err(TransferError)?;
        let stream = transport::connect(&self.spec.ip, self.spec.port, tls.as_ref(), self.timeout)
            .await
            .map_err(|e| TransferError(format!("cannot connect to {target}: {e}")))?;
        let mut c = Busy(Some(Conn {
            stream,
            session: 0,
            databases: HashSet::new(),
        }));
        if let Err(e) = self.handshake(&mut c.get().stream, "").await {
            if e.0.contains("connection failed") {
                return Err(TransferError(format!(
                    "{}; the receiver closed the connection: is its pipe server started, and does its ip_white_list admit this node's address?{}",
                    e.0,
                    if tls.is_none() {
                        " Does it serve TLS (enable_thrift_ssl=true; then set 'connector.ssl.enable'='true')?"
                    } else {
                        ""
                    }
                )));
            }
            return Err(e);
        }
        let req = TSOpenSessionReq {
            client_protocol: Some(2),
            zone_id: Some("+00:00".into()),
            username: Some(self.spec.user.clone()),
            password: Some(self.spec.password.clone()),
            configuration: Some(
                [("version".to_string(), "V_1_0".to_string())]
                    .into_iter()
                    .collect(),
            ),
        };
        let resp: TSOpenSessionResp = self
            .call(&mut c.get().stream, "openSession", Some(1), &req)
            .await?;
        if resp.status.code != 200 {
            return Err(TransferError(format!(
                "{target} refused the login of user {} ({})",
                self.spec.user,
                status_text(&resp.status)
            )));
        }
        c.get().session = resp.session_id.unwrap_or_default();
        info!(target_addr = %target, pipe = %self.identity.pipe_name, version = %self.spec.version, "legacy connector connected");
        Ok(c)
    }

    async fn handshake(&mut self, s: &mut Stream, database: &str) -> Result<(), TransferError> {
        let info = TSyncIdentityInfo {
            pipe_name: Some(self.identity.pipe_name.clone()),
            create_time: Some(self.identity.creation_time_ms),
            version: Some(self.spec.version.clone()),
            database: Some(database.to_string()),
        };
        let st: TSStatus = self.call(s, HANDSHAKE, Some(-1), &info).await?;
        if st.code != 200 {
            return Err(TransferError(format!(
                "{} refused the handshake (pipe {}, version {}{}): {}",
                self.target(),
                self.identity.pipe_name,
                self.spec.version,
                if database.is_empty() {
                    String::new()
                } else {
                    format!(", database {database}")
                },
                status_text(&st)
            )));
        }
        debug!(database, "legacy handshake accepted");
        Ok(())
    }

    /// Sends the tablets of `run` (all of one alignment) and empties it;
    /// then everything before event `upto` is acknowledged (`*sent`).
    async fn flush(
        &mut self,
        c: &mut Busy,
        run: &mut Vec<Tablet>,
        sent: &mut usize,
        upto: usize,
    ) -> Result<(), TransferError> {
        if run.is_empty() {
            *sent = (*sent).max(upto);
            return Ok(());
        }
        let session = c.get().session;
        let st: TSStatus = if run.len() == 1 {
            let req = insert_tablet_req(session, &run[0]);
            self.call(&mut c.get().stream, "insertTablet", Some(1), &req)
                .await?
        } else {
            let req = insert_tablets_req(session, run);
            self.call(&mut c.get().stream, "insertTablets", Some(1), &req)
                .await?
        };
        // 400 (REDIRECTION_RECOMMEND): written; a cluster suggests another
        // node, which the official clients treat as success too.
        if st.code != 200 && st.code != 400 {
            return Err(TransferError(format!(
                "{} refused {} tablet(s) of {}: {}",
                self.target(),
                run.len(),
                run[0].device,
                status_text(&st)
            )));
        }
        run.clear();
        *sent = (*sent).max(upto);
        Ok(())
    }

    async fn delete(
        &mut self,
        c: &mut Busy,
        pattern: &str,
        min: i64,
        max: i64,
    ) -> Result<(), TransferError> {
        let prefix: Vec<&str> = pattern
            .split('.')
            .take_while(|n| *n != "*" && *n != "**")
            .collect();
        let prefix = prefix.join(".");
        let database = (self.database_of.0)(&prefix)
            .or_else(|| {
                pattern
                    .strip_suffix(".**")
                    .filter(|p| !p.contains('*') && p.contains('.'))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let data = PipeData::Deletion {
            serial: -1,
            database,
            start: min,
            end: max,
            path_pattern: pattern.to_string(),
        };
        let args = TSendPipeDataArgs {
            buff: Some(data.serialize()),
        };
        let st: TSStatus = self
            .call(&mut c.get().stream, SEND_PIPE_DATA, None, &args)
            .await?;
        let range = if min == i64::MIN && max == i64::MAX {
            "over all time".to_string()
        } else {
            format!("in [{min}, {max}]")
        };
        match st.code {
            200 => Ok(()),
            PIPESERVER_ERROR => {
                let note = format!(
                    "the deletion of {pattern} {range} was skipped: the receiver could not apply it ({})",
                    status_text(&st)
                );
                info!(%note, "legacy connector skipped a deletion");
                self.notes.push(note);
                Ok(())
            }
            _ => Err(TransferError(format!(
                "{} refused the deletion of {pattern} {range}: {}",
                self.target(),
                status_text(&st)
            ))),
        }
    }

    /// One call on `s`: the argument as field `field_id` of the argument
    /// struct, or (`None`) the argument struct itself; the reply's result.
    async fn call<A: TSerializable, R: TSerializable>(
        &mut self,
        s: &mut Stream,
        name: &str,
        field_id: Option<i16>,
        arg: &A,
    ) -> Result<R, TransferError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let frame = match field_id {
            Some(id) => call(Proto::Binary, name, seq, id, arg),
            None => call_args(Proto::Binary, name, seq, arg),
        };
        let io = async {
            s.write_all(&frame).await?;
            s.flush().await?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let n = i32::from_be_bytes(len);
            if !(1..=MAX_REPLY).contains(&n) {
                return Err(std::io::Error::other(format!("reply frame of {n} bytes")));
            }
            let mut buf = vec![0u8; n as usize];
            s.read_exact(&mut buf).await?;
            Ok(buf)
        };
        let target = self.target();
        let buf = match tokio::time::timeout(self.timeout, io).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return Err(TransferError(format!(
                    "{name} to {target}: connection failed: {}",
                    io_text(&e)
                )))
            }
            Err(_) => {
                return Err(TransferError(format!(
                    "{name} to {target}: no reply within {}",
                    timeout_text(self.timeout)
                )))
            }
        };
        match Call::parse(&buf) {
            Ok(c) if c.seq != seq => {
                return Err(TransferError(format!(
                    "{name} to {target}: the reply carries sequence number {} instead of {seq}",
                    c.seq
                )))
            }
            _ => {}
        }
        read_reply::<R>(&buf)
            .map_err(|e| TransferError(format!("{name} to {target}: {}", describe(&e))))
    }
}

fn timestamps(t: &Tablet) -> Vec<u8> {
    t.times.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn types(t: &Tablet) -> Vec<i32> {
    t.columns.iter().map(|c| c.data_type() as i32).collect()
}

/// `insertTablet` (or, with the aligned flag, `insertAlignedTablet`) as
/// the official clients send it.
pub fn insert_tablet_req(session: i64, t: &Tablet) -> TSInsertTabletReq {
    TSInsertTabletReq {
        session_id: Some(session),
        prefix_path: Some(t.device.clone()),
        measurements: Some(t.measurements.clone()),
        values: Some(t.rpc_values()),
        timestamps: Some(timestamps(t)),
        types: Some(types(t)),
        size: Some(t.rows() as i32),
        is_aligned: Some(t.aligned),
        write_to_table: None,
    }
}

/// `insertTablets` for tablets of one alignment.
pub fn insert_tablets_req(session: i64, ts: &[Tablet]) -> TSInsertTabletsReq {
    TSInsertTabletsReq {
        session_id: Some(session),
        prefix_paths: Some(ts.iter().map(|t| t.device.clone()).collect()),
        measurements_list: Some(ts.iter().map(|t| t.measurements.clone()).collect()),
        values_list: Some(ts.iter().map(Tablet::rpc_values).collect()),
        timestamps_list: Some(ts.iter().map(timestamps).collect()),
        types_list: Some(ts.iter().map(types).collect()),
        size_list: Some(ts.iter().map(|t| t.rows() as i32).collect()),
        is_aligned: Some(ts.first().is_some_and(|t| t.aligned)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::tablet::Column;

    #[test]
    fn rows_travel_in_the_client_layout() {
        let t = Tablet {
            device: "root.sg.d".into(),
            measurements: vec!["a".into(), "b".into()],
            columns: vec![
                Column::Int32(vec![7, 0]),
                Column::Text(vec![b"x".to_vec(), Vec::new()]),
            ],
            nulls: vec![Some(vec![false, true]), None],
            times: vec![1, 2],
            aligned: true,
        };
        let r = insert_tablet_req(9, &t);
        assert_eq!(r.size, Some(2));
        assert_eq!(r.is_aligned, Some(true));
        assert_eq!(r.types, Some(vec![1, 5]));
        let back = Tablet::from_rpc(
            r.prefix_path.unwrap(),
            r.measurements.unwrap(),
            &r.types.unwrap(),
            &r.values.unwrap(),
            &r.timestamps.unwrap(),
            2,
            true,
        )
        .unwrap();
        assert_eq!(back.times, t.times);
        assert!(back.is_null(0, 1) && !back.is_null(0, 0));
        assert_eq!(back.columns[1], t.columns[1]);
    }
}
