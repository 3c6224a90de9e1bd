//! The IoTDB client RPC: sessions, statements with paged results, and the
//! insert calls, as `shared/reference/iotdb-client-rpc.md` lays them out.
//!
//! One [`Connection`] per TCP connection holds the session and its open
//! queries (keyed by query id on this connection: the Python client swaps
//! its session and statement ids in `fetchResultsV2` and `closeOperation`,
//! so those fields are not trusted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use protocol::message::{describe, exception, reply, reply_i64, Call, Proto};
use protocol::rpc::{
    TPipeTransferResp, TSCloseOperationReq, TSExecuteStatementReq, TSExecuteStatementResp,
    TSFetchResultsReq, TSFetchResultsResp, TSGetTimeZoneResp, TSInsertRecordReq,
    TSInsertRecordsOfOneDeviceReq, TSInsertRecordsReq, TSInsertStringRecordReq, TSInsertTabletReq,
    TSInsertTabletsReq, TSOpenSessionReq, TSOpenSessionResp, TSSetTimeZoneReq, TSStatus,
    TSendFileArgs, TSendPipeDataArgs, TSyncIdentityInfo,
};
use protocol::tablet::Tablet;
use protocol::tsblock;
use protocol::types::status;
use thrift::ApplicationErrorKind;
use tracing::debug;

use crate::event::Event;
use crate::exec::{zone_from_name, Context, Executor, Outcome, Precision, ResultSet};
use crate::sql::Literal;
use crate::store::{self, Origin, StoreError};

/// Rows per page when the client asks for none (`fetchSize` ≤ 0).
pub const DEFAULT_FETCH_SIZE: usize = 5000;
/// Largest TsBlock bytes in one reply: the Python client's thrift refuses
/// frames over 16,384,000 bytes, so pages stay well under it.
pub const MAX_REPLY_BYTES: usize = 8 << 20;
/// Open queries kept per connection; the oldest is dropped past this.
pub const MAX_OPEN_QUERIES: usize = 64;
/// The client RPC protocol version served (IOTDB_SERVICE_PROTOCOL_V3).
pub const SERVER_PROTOCOL_VERSION: i32 = 2;

/// Shared state of the RPC service.
pub struct Service {
    exec: Executor,
    precision: Precision,
    root_password: String,
    users: Option<Arc<crate::users::Users>>,
    /// The receiving side: `pipeTransfer`, the legacy sync calls,
    /// `ip_white_list`.
    receiver: Arc<receiver::Receiver>,
    /// `enable_auto_create_schema`, for checking a received TsFile's series
    /// before loading it.
    auto_create_schema: bool,
    next_session: AtomicI64,
    next_query: AtomicI64,
    /// RPC latency by method and open connections, for the metrics.
    rpc_metrics: Arc<crate::metrics::RpcMetrics>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish()
    }
}

struct Session {
    id: i64,
    user: String,
    ctx: Context,
    statement_id: i64,
}

struct Query {
    result: ResultSet,
    pos: usize,
    fetch_size: usize,
}

/// Per-connection state.
#[derive(Default)]
pub struct Connection {
    /// The socket's peer address, set by the server when the connection
    /// starts (`None` for a caller without a socket): what `ip_white_list`
    /// is checked on.
    pub peer: Option<std::net::SocketAddr>,
    session: Option<Session>,
    queries: BTreeMap<i64, Query>,
    receiver: receiver::ReceiverState,
    /// Set once a legacy (IoTDB 1.1 sync) handshake succeeded on this
    /// connection: the rows its session then inserts (edgepipe's legacy
    /// connector sends them so) arrived through a pipe and are logged as
    /// such.
    legacy_sender: bool,
}

impl Connection {
    /// A connection from `peer` (`via_pipe_server`: accepted on the pipe
    /// server's port).
    pub fn new(peer: std::net::SocketAddr, via_pipe_server: bool) -> Connection {
        Connection {
            peer: Some(peer),
            receiver: receiver::ReceiverState::new(Some(peer), via_pipe_server),
            ..Connection::default()
        }
    }

    /// Whether a session is open on this connection (the server lets such a
    /// connection idle; one that has not logged in is closed after the
    /// connection timeout).
    pub fn logged_in(&self) -> bool {
        self.session.is_some()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session", &self.session.as_ref().map(|s| (s.id, &s.user)))
            .field("queries", &self.queries.len())
            .finish()
    }
}

/// What handling a frame gave.
#[derive(Debug)]
pub enum Handled {
    /// Send this frame back.
    Reply(Vec<u8>),
    /// Send a frame back once a write is durable (a `pipeTransfer`): the
    /// connection may read and apply the sender's next request meanwhile,
    /// as long as replies go out in order ([`Durable`]).
    WhenDurable(Durable),
    /// The frame is not thrift: close the connection, logging the reason.
    Close(String),
}

/// A reply that waits for its write to become durable. The wait runs as a
/// task from the start, so the change log's sync is requested at once.
pub struct Durable {
    /// The log sync covering the write; its error names what failed.
    wait: tokio::task::JoinHandle<Result<(), String>>,
    /// The reply once durable.
    reply: Vec<u8>,
    /// The reply when the write cannot be made durable, given why.
    failed: Box<dyn FnOnce(String) -> Vec<u8> + Send>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("reply_bytes", &self.reply.len())
            .finish()
    }
}

impl Durable {
    /// Waits for the write and gives the frame to send: the reply, or the
    /// error reply naming why the write is not durable.
    pub async fn wait(&mut self) -> Vec<u8> {
        let r = match (&mut self.wait).await {
            Ok(r) => r,
            Err(e) => Err(e.to_string()),
        };
        match r {
            Ok(()) => std::mem::take(&mut self.reply),
            Err(e) => {
                let failed = std::mem::replace(&mut self.failed, Box::new(|_| Vec::new()));
                failed(e)
            }
        }
    }
}

fn ok() -> TSStatus {
    st(status::SUCCESS, None)
}

fn st(code: i32, message: Option<String>) -> TSStatus {
    TSStatus {
        code,
        message,
        sub_status: None,
        redirect_node: None,
        need_retry: None,
    }
}

fn err_status(e: &StoreError) -> TSStatus {
    st(e.code, Some(e.message.clone()))
}

fn exec_resp(status: TSStatus) -> TSExecuteStatementResp {
    TSExecuteStatementResp {
        status,
        query_id: None,
        columns: None,
        operation_type: None,
        ignore_time_stamp: None,
        data_type_list: None,
        column_name_index_map: None,
        sg_columns: None,
        query_result: None,
        more_data: None,
        database: None,
        table_model: None,
    }
}

/// A decoded call.
enum Request {
    OpenSession(TSOpenSessionReq),
    CloseSession,
    StatementId,
    SetTimeZone(TSSetTimeZoneReq),
    GetTimeZone,
    Execute(TSExecuteStatementReq),
    Fetch(TSFetchResultsReq),
    CloseOperation(TSCloseOperationReq),
    InsertTablet(TSInsertTabletReq),
    InsertTablets(TSInsertTabletsReq),
    InsertRecord(TSInsertRecordReq),
    InsertRecords(TSInsertRecordsReq),
    InsertRecordsOfOneDevice(TSInsertRecordsOfOneDeviceReq),
    InsertStringRecord(TSInsertStringRecordReq),
    PipeTransfer(protocol::rpc::TPipeTransferReq),
    PipeTransferInPlace(protocol::pipe::TransferInPlace),
    LegacyHandshake(TSyncIdentityInfo),
    SendPipeData(TSendPipeDataArgs),
    SendFile(TSendFileArgs),
}

/// The calls a pipe sender makes without logging in: checked against
/// `ip_white_list` before they are decoded.
fn is_receiving(name: &str) -> bool {
    matches!(
        name,
        "pipeTransfer"
            | protocol::legacy::HANDSHAKE
            | protocol::legacy::SEND_PIPE_DATA
            | protocol::legacy::SEND_FILE
    )
}

/// Runs `f`, which may block on I/O or a long load, without stalling the
/// runtime's other tasks (`block_in_place` on a multi-thread runtime; a
/// current-thread runtime, as in some tests, runs it in place).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    if tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Reads the arguments of `call` (from `frame`); what cannot be served
/// becomes the reply (an application exception).
fn decode(mut call: Call<'_>, frame: &[u8]) -> Result<(Proto, String, i32, Request), Handled> {
    let (proto, name, seq) = (call.proto, call.name.clone(), call.seq);
    let fail = |kind, msg: String| Handled::Reply(exception(proto, &name, seq, kind, &msg));
    macro_rules! arg {
        ($t:ty) => {
            match call.arg::<$t>() {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return Err(fail(
                        ApplicationErrorKind::ProtocolError,
                        format!("{name}: the request argument is missing"),
                    ))
                }
                Err(e) => {
                    return Err(fail(
                        ApplicationErrorKind::ProtocolError,
                        format!("{name}: arguments do not decode: {}", describe(&e)),
                    ))
                }
            }
        };
    }
    macro_rules! args {
        ($t:ty) => {
            match call.args::<$t>() {
                Ok(a) => a,
                Err(e) => {
                    return Err(fail(
                        ApplicationErrorKind::ProtocolError,
                        format!("{name}: arguments do not decode: {}", describe(&e)),
                    ))
                }
            }
        };
    }
    // `pipeTransfer(-1: TPipeTransferReq)`: IoTDB's generated code sends
    // the request at field id -1 and a Java receiver reads only that.
    macro_rules! arg_at {
        ($t:ty, $id:expr) => {
            match call.arg_at::<$t>($id) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return Err(fail(
                        ApplicationErrorKind::ProtocolError,
                        format!(
                            "{name}: the request argument is missing (expected at field id {})",
                            $id
                        ),
                    ))
                }
                Err(e) => {
                    return Err(fail(
                        ApplicationErrorKind::ProtocolError,
                        format!("{name}: arguments do not decode: {}", describe(&e)),
                    ))
                }
            }
        };
    }
    let req = match name.as_str() {
        "openSession" => Request::OpenSession(arg!(TSOpenSessionReq)),
        "closeSession" => Request::CloseSession,
        "requestStatementId" => Request::StatementId,
        "setTimeZone" => Request::SetTimeZone(arg!(TSSetTimeZoneReq)),
        "getTimeZone" => Request::GetTimeZone,
        "executeStatementV2"
        | "executeQueryStatementV2"
        | "executeUpdateStatementV2"
        | "executeStatement"
        | "executeQueryStatement"
        | "executeUpdateStatement" => Request::Execute(arg!(TSExecuteStatementReq)),
        "fetchResultsV2" | "fetchResults" => Request::Fetch(arg!(TSFetchResultsReq)),
        "closeOperation" => Request::CloseOperation(arg!(TSCloseOperationReq)),
        "insertTablet" => Request::InsertTablet(arg!(TSInsertTabletReq)),
        "insertTablets" => Request::InsertTablets(arg!(TSInsertTabletsReq)),
        "insertRecord" => Request::InsertRecord(arg!(TSInsertRecordReq)),
        "insertRecords" => Request::InsertRecords(arg!(TSInsertRecordsReq)),
        "insertRecordsOfOneDevice" => {
            Request::InsertRecordsOfOneDevice(arg!(TSInsertRecordsOfOneDeviceReq))
        }
        "insertStringRecord" => Request::InsertStringRecord(arg!(TSInsertStringRecordReq)),
        "pipeTransfer" => match call
            .args_at
            .and_then(|at| protocol::pipe::transfer_in_place(frame, at))
        {
            // The usual case: the body is read where it lies in the frame.
            Some(req) => Request::PipeTransferInPlace(req),
            None => Request::PipeTransfer(arg_at!(
                protocol::rpc::TPipeTransferReq,
                protocol::pipe::ARG_FIELD_ID
            )),
        },
        // `handshake(-1: TSyncIdentityInfo)`, like pipeTransfer.
        protocol::legacy::HANDSHAKE => Request::LegacyHandshake(arg_at!(TSyncIdentityInfo, -1)),
        protocol::legacy::SEND_PIPE_DATA => Request::SendPipeData(args!(TSendPipeDataArgs)),
        protocol::legacy::SEND_FILE => Request::SendFile(args!(TSendFileArgs)),
        _ => {
            return Err(fail(
                ApplicationErrorKind::UnknownMethod,
                format!("Invalid method name: '{name}' is not served by edgepipe"),
            ));
        }
    };
    Ok((proto, name, seq, req))
}

/// Encodes the next page of `q` as TsBlocks, halving the page until it fits
/// the reply budget. Returns the blocks and whether rows remain.
fn next_page(q: &mut Query) -> (Vec<Vec<u8>>, bool) {
    let total = q.result.rows();
    let mut n = q.fetch_size.min(total - q.pos);
    loop {
        let page = q.result.slice(q.pos..q.pos + n);
        let block = tsblock::encode(&page.times, &page.data, &page.nulls);
        if block.len() <= MAX_REPLY_BYTES || n <= 1 {
            q.pos += n;
            let blocks = if n == 0 { vec![] } else { vec![block] };
            return (blocks, q.pos < total);
        }
        n /= 2;
    }
}

impl Service {
    /// A service running statements with `exec` and receiving pipes with
    /// `receiver`.
    pub fn new(
        exec: Executor,
        precision: Precision,
        root_password: String,
        receiver: Arc<receiver::Receiver>,
    ) -> Service {
        let users = exec.users().cloned();
        Service {
            exec,
            precision,
            root_password,
            users,
            receiver,
            auto_create_schema: true,
            next_session: AtomicI64::new(1),
            next_query: AtomicI64::new(1),
            rpc_metrics: Arc::default(),
        }
    }

    /// What the RPC front counts (latency by method, connections).
    pub fn rpc_metrics(&self) -> &Arc<crate::metrics::RpcMetrics> {
        &self.rpc_metrics
    }

    /// Whether received files may create series (`enable_auto_create_schema`,
    /// default true); the store enforces it for rows either way.
    pub fn with_auto_create_schema(mut self, on: bool) -> Service {
        self.auto_create_schema = on;
        self
    }

    /// The receiving side.
    pub fn receiver(&self) -> &Arc<receiver::Receiver> {
        &self.receiver
    }

    fn apply(&self) -> StoreApply<'_> {
        StoreApply {
            exec: &self.exec,
            store: self.exec.store(),
            auto_create_schema: self.auto_create_schema,
        }
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// Reads the call in `frame`. A sender outside `ip_white_list` is
    /// answered before its request is decoded.
    fn read_call(
        &self,
        conn: &mut Connection,
        frame: &[u8],
    ) -> Result<(Proto, String, i32, Request), Handled> {
        let call = Call::parse(frame).map_err(|e| Handled::Close(e.to_string()))?;
        if is_receiving(&call.name) {
            if let Err(status) = self.receiver.admit(&mut conn.receiver) {
                let (p, n, s) = (call.proto, &call.name, call.seq);
                return Err(Handled::Reply(if call.name == "pipeTransfer" {
                    reply(p, n, s, &TPipeTransferResp { status, body: None })
                } else {
                    reply(p, n, s, &status)
                }));
            }
        }
        decode(call, frame)
    }

    /// Handles one frame's payload (after the length).
    pub async fn handle(self: &Arc<Self>, conn: &mut Connection, frame: &[u8]) -> Handled {
        let start = std::time::Instant::now();
        let (proto, name, seq, req) = match self.read_call(conn, frame) {
            Ok(x) => x,
            Err(h) => return h,
        };
        debug!(method = %name, "call");
        let handled = self.dispatch(conn, frame, proto, &name, seq, req).await;
        self.rpc_metrics.observe(&name, start.elapsed());
        handled
    }

    /// Serves one decoded call.
    async fn dispatch(
        self: &Arc<Self>,
        conn: &mut Connection,
        frame: &[u8],
        proto: Proto,
        name: &str,
        seq: i32,
        req: Request,
    ) -> Handled {
        let r = |v: &dyn Fn(Proto, &str, i32) -> Vec<u8>| Handled::Reply(v(proto, name, seq));
        match req {
            Request::OpenSession(req) => {
                let resp = self.open_session(conn, req);
                r(&|p, n, s| reply(p, n, s, &resp))
            }
            Request::CloseSession => {
                conn.session = None;
                conn.queries.clear();
                r(&|p, n, s| reply(p, n, s, &ok()))
            }
            Request::StatementId => match conn.session.as_mut() {
                Some(s) => {
                    s.statement_id += 1;
                    let id = s.statement_id;
                    r(&|p, n, sq| reply_i64(p, n, sq, id))
                }
                None => Handled::Reply(exception(
                    proto,
                    name,
                    seq,
                    ApplicationErrorKind::InternalError,
                    "not logged in: call openSession first",
                )),
            },
            Request::SetTimeZone(req) => {
                let status = match (conn.session.as_mut(), req.time_zone) {
                    (Some(s), Some(z)) => {
                        if let Some(off) = zone_from_name(&z) {
                            s.ctx.zone = off;
                        }
                        ok()
                    }
                    (None, _) => st(status::NOT_LOGIN, Some("not logged in".into())),
                    (Some(_), None) => st(
                        status::ILLEGAL_PARAMETER,
                        Some("timeZone is missing".into()),
                    ),
                };
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::GetTimeZone => {
                let zone = conn
                    .session
                    .as_ref()
                    .map(|s| s.ctx.zone.to_string())
                    .unwrap_or_else(|| "+00:00".into());
                let resp = TSGetTimeZoneResp {
                    status: ok(),
                    time_zone: zone,
                };
                r(&|p, n, s| reply(p, n, s, &resp))
            }
            Request::Execute(req) => {
                let resp = self.execute(conn, req).await;
                r(&|p, n, s| reply(p, n, s, &resp))
            }
            Request::Fetch(req) => {
                let resp = self.fetch(conn, req);
                r(&|p, n, s| reply(p, n, s, &resp))
            }
            Request::CloseOperation(req) => {
                if let Some(q) = req.query_id {
                    conn.queries.remove(&q);
                }
                r(&|p, n, s| reply(p, n, s, &ok()))
            }
            Request::InsertTablet(req) => {
                let status = self.insert(conn, || tablet_of(req).map(|t| vec![t])).await;
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::InsertTablets(req) => {
                let status = self.insert(conn, || tablets_of(req)).await;
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::InsertRecord(req) => {
                let status = self.insert(conn, || record_of(req).map(|t| vec![t])).await;
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::InsertRecords(req) => {
                let status = self.insert(conn, || records_of(req)).await;
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::InsertRecordsOfOneDevice(req) => {
                let status = self.insert(conn, || records_of_one_device(req)).await;
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::PipeTransfer(req) => {
                let (resp, offset) = self.pipe_transfer(conn, req);
                self.when_durable(proto, name, seq, resp, offset)
            }
            Request::PipeTransferInPlace(req) => {
                let (resp, offset) = self.pipe_transfer_in_place(conn, frame, req);
                self.when_durable(proto, name, seq, resp, offset)
            }
            Request::InsertStringRecord(req) => {
                let svc = self.clone();
                let status = self
                    .insert(conn, move || string_record_of(&svc, req).map(|t| vec![t]))
                    .await;
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::LegacyHandshake(info) => {
                let apply = self.apply();
                let (status, offset) = blocking(|| {
                    self.receiver
                        .legacy_handshake(&mut conn.receiver, &info, &apply)
                });
                let status = self.durable_status(status, offset).await;
                if status.code == status::SUCCESS {
                    conn.legacy_sender = true;
                }
                r(&|p, n, s| reply(p, n, s, &status))
            }
            Request::SendPipeData(args) => {
                let apply = self.apply();
                let buff = args.buff.unwrap_or_default();
                let done = blocking(|| {
                    self.receiver
                        .send_pipe_data(&mut conn.receiver, &buff, &apply)
                });
                match done {
                    Ok((status, offset)) => {
                        let status = self.durable_status(status, offset).await;
                        r(&|p, n, s| reply(p, n, s, &status))
                    }
                    Err(e) => not_alive(proto, name, seq, e),
                }
            }
            Request::SendFile(args) => {
                let meta = args.meta_info.unwrap_or_default();
                let buff = args.buff.unwrap_or_default();
                match blocking(|| self.receiver.send_file(&mut conn.receiver, &meta, &buff)) {
                    Ok(status) => r(&|p, n, s| reply(p, n, s, &status)),
                    Err(e) => not_alive(proto, name, seq, e),
                }
            }
        }
    }

    /// `status`, once log offset `offset` (if any) is durable.
    async fn durable_status(&self, status: TSStatus, offset: Option<u64>) -> TSStatus {
        if let Some(o) = offset {
            if let Err(e) = self.exec.store().log().wait_durable_async(o).await {
                return st(
                    status::INTERNAL_SERVER_ERROR,
                    Some(format!("write not durable: {e}")),
                );
            }
        }
        status
    }

    /// `pipeTransfer`: no login needed (as in IoTDB 1.2); applied through
    /// the change log (to be answered once durable: the log offset of the
    /// last write, if any).
    fn pipe_transfer(
        self: &Arc<Self>,
        conn: &mut Connection,
        req: protocol::rpc::TPipeTransferReq,
    ) -> (TPipeTransferResp, Option<u64>) {
        let apply = self.apply();
        blocking(|| self.receiver.transfer(&mut conn.receiver, req, &apply))
    }

    /// `pipeTransfer` with the body read in place from `frame`: applied on
    /// this worker thread (`block_in_place`), so the body is never copied.
    fn pipe_transfer_in_place(
        self: &Arc<Self>,
        conn: &mut Connection,
        frame: &[u8],
        req: protocol::pipe::TransferInPlace,
    ) -> (TPipeTransferResp, Option<u64>) {
        let body = &frame[req.body.clone()];
        let apply = self.apply();
        blocking(|| {
            self.receiver
                .transfer_parts(&mut conn.receiver, req.version, req.type_, body, &apply)
        })
    }

    /// The reply `resp`, to go once log offset `offset` (if any) is
    /// durable: at once without a write, else as a [`Durable`] whose sync
    /// is requested now.
    fn when_durable(
        &self,
        proto: Proto,
        name: &str,
        seq: i32,
        resp: TPipeTransferResp,
        offset: Option<u64>,
    ) -> Handled {
        let ok = reply(proto, name, seq, &resp);
        let Some(o) = offset else {
            return Handled::Reply(ok);
        };
        let log = self.exec.store().log().clone();
        let name = name.to_string();
        Handled::WhenDurable(Durable {
            wait: tokio::spawn(async move {
                log.wait_durable_async(o).await.map_err(|e| e.to_string())
            }),
            reply: ok,
            failed: Box::new(move |e| {
                let resp = TPipeTransferResp {
                    status: st(
                        status::INTERNAL_SERVER_ERROR,
                        Some(format!("write not durable: {e}")),
                    ),
                    body: None,
                };
                reply(proto, &name, seq, &resp)
            }),
        })
    }

    fn open_session(&self, conn: &mut Connection, req: TSOpenSessionReq) -> TSOpenSessionResp {
        let user = req.username.unwrap_or_default();
        let pass = req.password.unwrap_or_default();
        let mut configuration = BTreeMap::new();
        configuration.insert(
            "timestamp_precision".to_string(),
            self.precision.name().to_string(),
        );
        let peer = conn.peer.map(|a| a.ip());
        let login = match &self.users {
            // Checking a password hash takes tens of milliseconds: off the
            // async worker when the runtime allows it.
            Some(u) => {
                let check = || u.login(&user, &pass, peer);
                if tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
                {
                    tokio::task::block_in_place(check)
                } else {
                    check()
                }
            }
            None if user == "root" && pass == self.root_password => Ok(()),
            None => Err(crate::users::LoginError::Wrong),
        };
        if let Err(e) = login {
            let message = match e {
                crate::users::LoginError::Wrong => {
                    format!("Authentication failed: wrong user name or password for user {user:?}")
                }
                crate::users::LoginError::Throttled(wait) => {
                    let from = peer.map_or_else(|| "this client".to_string(), |p| p.to_string());
                    format!(
                        "Authentication failed: too many failed logins from {from}; wait {:.1} s before the next attempt",
                        wait.as_secs_f64()
                    )
                }
            };
            return TSOpenSessionResp {
                status: st(status::WRONG_LOGIN_PASSWORD, Some(message)),
                server_protocol_version: SERVER_PROTOCOL_VERSION,
                session_id: None,
                configuration: Some(configuration),
            };
        }
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut ctx = Context {
            precision: self.precision,
            user: user.clone(),
            ..Context::default()
        };
        if let Some(off) = req.zone_id.as_deref().and_then(zone_from_name) {
            ctx.zone = off;
        }
        conn.session = Some(Session {
            id,
            user,
            ctx,
            statement_id: 0,
        });
        conn.queries.clear();
        TSOpenSessionResp {
            status: ok(),
            server_protocol_version: SERVER_PROTOCOL_VERSION,
            session_id: Some(id),
            configuration: Some(configuration),
        }
    }

    async fn execute(
        self: &Arc<Self>,
        conn: &mut Connection,
        req: TSExecuteStatementReq,
    ) -> TSExecuteStatementResp {
        let Some(session) = conn.session.as_ref() else {
            return exec_resp(st(
                status::NOT_LOGIN,
                Some("not logged in: call openSession first".into()),
            ));
        };
        let Some(sql) = req.statement else {
            return exec_resp(st(
                status::ILLEGAL_PARAMETER,
                Some("statement is missing".into()),
            ));
        };
        let ctx = session.ctx.clone();
        let svc = self.clone();
        let outcome = tokio::task::spawn_blocking(move || svc.exec.execute(&ctx, &sql)).await;
        let outcome = match outcome {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return exec_resp(err_status(&e)),
            Err(e) => {
                return exec_resp(st(
                    status::INTERNAL_SERVER_ERROR,
                    Some(format!("statement failed: {e}")),
                ))
            }
        };
        match outcome {
            Outcome::Done(offset) => {
                if let Some(o) = offset {
                    if let Err(e) = self.exec.store().log().wait_durable_async(o).await {
                        return exec_resp(st(
                            status::INTERNAL_SERVER_ERROR,
                            Some(format!("write not durable: {e}")),
                        ));
                    }
                }
                let mut r = exec_resp(ok());
                // A query call on a statement without rows: an empty result.
                r.columns = Some(vec![]);
                r.data_type_list = Some(vec![]);
                r.ignore_time_stamp = Some(true);
                r
            }
            Outcome::Rows(result) => {
                let fetch_size = req
                    .fetch_size
                    .filter(|&f| f > 0)
                    .map_or(DEFAULT_FETCH_SIZE, |f| f as usize);
                let query_id = self.next_query.fetch_add(1, Ordering::Relaxed);
                let mut q = Query {
                    result,
                    pos: 0,
                    fetch_size,
                };
                let (blocks, more) = next_page(&mut q);
                let columns = q.result.columns.clone();
                let mut r = exec_resp(ok());
                r.query_id = Some(query_id);
                r.column_name_index_map = Some(
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.clone(), i as i32))
                        .collect::<BTreeMap<_, _>>(),
                );
                r.data_type_list = Some(
                    q.result
                        .types
                        .iter()
                        .map(|t| t.name().to_string())
                        .collect(),
                );
                r.columns = Some(columns);
                r.ignore_time_stamp = Some(q.result.ignore_timestamp);
                r.sg_columns = Some(vec![]);
                r.query_result = Some(blocks);
                r.more_data = Some(more);
                r.table_model = Some(false);
                if more {
                    if conn.queries.len() >= MAX_OPEN_QUERIES {
                        let oldest = *conn.queries.keys().next().expect("non-empty");
                        conn.queries.remove(&oldest);
                    }
                    conn.queries.insert(query_id, q);
                }
                r
            }
        }
    }

    fn fetch(&self, conn: &mut Connection, req: TSFetchResultsReq) -> TSFetchResultsResp {
        let empty = |status| TSFetchResultsResp {
            status,
            has_result_set: false,
            is_align: true,
            query_result: None,
            more_data: Some(false),
        };
        if conn.session.is_none() {
            return empty(st(status::NOT_LOGIN, Some("not logged in".into())));
        }
        let Some(id) = req.query_id else {
            return empty(st(
                status::ILLEGAL_PARAMETER,
                Some("queryId is missing".into()),
            ));
        };
        let Some(q) = conn.queries.get_mut(&id) else {
            // Finished (its last page was sent) or closed: no more rows.
            return empty(ok());
        };
        if let Some(f) = req.fetch_size.filter(|&f| f > 0) {
            q.fetch_size = f as usize;
        }
        let (blocks, more) = next_page(q);
        if !more {
            conn.queries.remove(&id);
        }
        TSFetchResultsResp {
            status: ok(),
            has_result_set: !blocks.is_empty(),
            is_align: true,
            query_result: Some(blocks),
            more_data: Some(more),
        }
    }

    /// Decodes (off the async threads), writes and waits for durability.
    /// Several tablets: each is written; failures make a 302 with one
    /// sub-status per tablet. On a legacy sender's connection the rows are
    /// logged as arrived through a pipe.
    async fn insert<F>(self: &Arc<Self>, conn: &Connection, decode: F) -> TSStatus
    where
        F: FnOnce() -> Result<Vec<Tablet>, StoreError> + Send + 'static,
    {
        let Some(session) = conn.session.as_ref() else {
            return st(
                status::NOT_LOGIN,
                Some("not logged in: call openSession first".into()),
            );
        };
        let user = session.user.clone();
        let origin = if conn.legacy_sender {
            Origin::Pipe
        } else {
            Origin::Local
        };
        let svc = self.clone();
        let done = tokio::task::spawn_blocking(
            move || -> Result<(Vec<Result<u64, StoreError>>, usize), StoreError> {
                let mut tablets = decode()?;
                // Names checked and made canonical, INSERT_TIMESERIES checked.
                svc.exec.admit_tablets(&user, &mut tablets)?;
                let n = tablets.len();
                Ok((
                    tablets
                        .into_iter()
                        .map(|t| svc.exec.store().write_from(Event::Tablet(t), origin))
                        .collect(),
                    n,
                ))
            },
        )
        .await;
        let results = match done {
            Ok(Ok((r, _))) => r,
            Ok(Err(e)) => return err_status(&e),
            Err(e) => {
                return st(
                    status::INTERNAL_SERVER_ERROR,
                    Some(format!("insert failed: {e}")),
                )
            }
        };
        if let Some(last) = results.iter().filter_map(|r| r.as_ref().ok()).max() {
            if let Err(e) = self.exec.store().log().wait_durable_async(*last).await {
                return st(
                    status::INTERNAL_SERVER_ERROR,
                    Some(format!("write not durable: {e}")),
                );
            }
        }
        match results.as_slice() {
            [Ok(_)] => ok(),
            [Err(e)] => err_status(e),
            many if many.iter().all(Result::is_ok) => ok(),
            many => {
                let subs: Vec<Box<TSStatus>> = many
                    .iter()
                    .map(|r| Box::new(r.as_ref().map_or_else(err_status, |_| ok())))
                    .collect();
                let msg = many
                    .iter()
                    .filter_map(|r| r.as_ref().err())
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                TSStatus {
                    code: 302,
                    message: Some(msg),
                    sub_status: Some(subs),
                    redirect_node: None,
                    need_retry: None,
                }
            }
        }
    }
}

/// A legacy call without a handshake on the connection: as IoTDB 1.1, an
/// application exception (its handler throws), with the reason.
fn not_alive(proto: Proto, name: &str, seq: i32, e: receiver::legacy::NotAlive) -> Handled {
    Handled::Reply(exception(
        proto,
        name,
        seq,
        ApplicationErrorKind::InternalError,
        &format!("Internal error processing {name}: {e}"),
    ))
}

/// What received data does to the store: every write through the change
/// log, in order, marked as arrived through a pipe ([`Origin::Pipe`]) so
/// that a pipe with `extractor.forwarding-pipe-requests=false` does not
/// send it on.
struct StoreApply<'a> {
    /// Deletions go through the executor, so they reach the pipes'
    /// deletion index (no pipe ships a point deleted before it read it).
    exec: &'a Executor,
    store: &'a Arc<crate::store::Store>,
    auto_create_schema: bool,
}

fn code_of(e: StoreError) -> (i32, String) {
    (e.code, e.message)
}

impl receiver::Apply for StoreApply<'_> {
    /// One request's tablets as a few change-log batches
    /// ([`crate::store::Store::write_tablets`]): in order, the tablets
    /// before a bad one written, the request failing with the bad one's
    /// status.
    fn apply(&self, tablets: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)> {
        self.store
            .write_tablets(tablets, Origin::Pipe)
            .map_err(code_of)
    }

    /// [`receiver::Apply::apply`] for tablets read in place: validated and
    /// applied from the request's bytes, no owned tablet built.
    fn apply_views(
        &self,
        tablets: &protocol::tablet::TabletViews<'_>,
    ) -> Result<Option<u64>, (i32, String)> {
        self.store
            .write_tablets(tablets.iter().map(|t| (t, t.bytes())), Origin::Pipe)
            .map_err(code_of)
    }

    fn check_series(&self, series: &[receiver::SeriesCheck]) -> Result<(), (i32, String)> {
        for s in series {
            match self.store.series_info(&s.path) {
                Some(i) if i.data_type != s.data_type => {
                    return Err((
                        status::DATA_TYPE_MISMATCH,
                        format!(
                            "data type of {} is {}, but the file holds {}",
                            s.path, i.data_type, s.data_type
                        ),
                    ))
                }
                Some(i) if i.aligned != s.aligned => {
                    return Err((
                        status::METADATA_ERROR,
                        format!(
                            "{} is {}aligned, but the file holds it {}aligned",
                            s.path,
                            if i.aligned { "" } else { "not " },
                            if s.aligned { "" } else { "not " }
                        ),
                    ))
                }
                Some(_) => {}
                None if !self.auto_create_schema => {
                    return Err((
                        status::PATH_NOT_EXIST,
                        format!("series {} does not exist and automatic schema creation is off (enable_auto_create_schema=false); create it first", s.path),
                    ))
                }
                None => {}
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
        for p in &patterns {
            crate::sql::parse_path(p).map_err(|e| {
                (
                    status::ILLEGAL_PATH,
                    format!("{p} is not a path pattern: {}", e.message),
                )
            })?;
        }
        let ev = Event::Delete {
            patterns: patterns.clone(),
            min,
            max,
        };
        self.exec
            .log_deletion(patterns, min, max, || {
                self.store.write_from(ev, Origin::Pipe)
            })
            .map(Some)
            .map_err(code_of)
    }

    fn create_database(&self, database: &str) -> Result<Option<u64>, (i32, String)> {
        let ev = Event::Schema(crate::event::SchemaOp::CreateDatabase(database.to_string()));
        match self.store.write_from(ev, Origin::Pipe) {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.code == status::DATABASE_ALREADY_EXISTS => Ok(None),
            Err(e) => Err(code_of(e)),
        }
    }

    fn clear_database(&self, database: &str) -> Result<Option<u64>, (i32, String)> {
        use crate::event::SchemaOp;
        if !self.store.databases().iter().any(|d| d == database) {
            return Ok(None);
        }
        let name = database.to_string();
        let ev = Event::Schema(SchemaOp::DeleteDatabase(name.clone()));
        self.exec
            .log_deletion(vec![format!("{name}.**")], i64::MIN, i64::MAX, || {
                self.store.write_from(ev, Origin::Pipe)
            })
            .map_err(code_of)?;
        self.store
            .write_from(Event::Schema(SchemaOp::CreateDatabase(name)), Origin::Pipe)
            .map(Some)
            .map_err(code_of)
    }
}

fn missing(what: &str) -> StoreError {
    StoreError::new(status::ILLEGAL_PARAMETER, format!("{what} is missing"))
}

fn bad(e: String) -> StoreError {
    StoreError::new(status::ILLEGAL_PARAMETER, e)
}

fn tablet_of(r: TSInsertTabletReq) -> Result<Tablet, StoreError> {
    Tablet::from_rpc(
        r.prefix_path.ok_or_else(|| missing("prefixPath"))?,
        r.measurements.ok_or_else(|| missing("measurements"))?,
        &r.types.ok_or_else(|| missing("types"))?,
        &r.values.ok_or_else(|| missing("values"))?,
        &r.timestamps.ok_or_else(|| missing("timestamps"))?,
        r.size.ok_or_else(|| missing("size"))?,
        r.is_aligned.unwrap_or(false),
    )
    .map_err(bad)
}

fn tablets_of(r: TSInsertTabletsReq) -> Result<Vec<Tablet>, StoreError> {
    let paths = r.prefix_paths.ok_or_else(|| missing("prefixPaths"))?;
    let ms = r
        .measurements_list
        .ok_or_else(|| missing("measurementsList"))?;
    let vs = r.values_list.ok_or_else(|| missing("valuesList"))?;
    let ts = r.timestamps_list.ok_or_else(|| missing("timestampsList"))?;
    let types = r.types_list.ok_or_else(|| missing("typesList"))?;
    let sizes = r.size_list.ok_or_else(|| missing("sizeList"))?;
    let n = paths.len();
    if [ms.len(), vs.len(), ts.len(), types.len(), sizes.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err(bad(format!(
            "insertTablets: {n} prefixPaths but lists of other lengths"
        )));
    }
    let aligned = r.is_aligned.unwrap_or(false);
    paths
        .into_iter()
        .zip(ms)
        .zip(vs.iter().zip(&ts).zip(types.iter().zip(&sizes)))
        .map(|((p, m), ((v, t), (ty, s)))| {
            Tablet::from_rpc(p, m, ty, v, t, *s, aligned).map_err(bad)
        })
        .collect()
}

fn record_of(r: TSInsertRecordReq) -> Result<Tablet, StoreError> {
    Tablet::from_record(
        r.prefix_path.ok_or_else(|| missing("prefixPath"))?,
        r.measurements.ok_or_else(|| missing("measurements"))?,
        &r.values.ok_or_else(|| missing("values"))?,
        r.timestamp.ok_or_else(|| missing("timestamp"))?,
        r.is_aligned.unwrap_or(false),
    )
    .map_err(bad)
}

fn records_of(r: TSInsertRecordsReq) -> Result<Vec<Tablet>, StoreError> {
    let paths = r.prefix_paths.ok_or_else(|| missing("prefixPaths"))?;
    let ms = r
        .measurements_list
        .ok_or_else(|| missing("measurementsList"))?;
    let vs = r.values_list.ok_or_else(|| missing("valuesList"))?;
    let ts = r.timestamps.ok_or_else(|| missing("timestamps"))?;
    if ms.len() != paths.len() || vs.len() != paths.len() || ts.len() != paths.len() {
        return Err(bad(format!(
            "insertRecords: {} prefixPaths but lists of other lengths",
            paths.len()
        )));
    }
    let aligned = r.is_aligned.unwrap_or(false);
    paths
        .into_iter()
        .zip(ms)
        .zip(vs.iter().zip(&ts))
        .map(|((p, m), (v, t))| Tablet::from_record(p, m, v, *t, aligned).map_err(bad))
        .collect()
}

fn records_of_one_device(r: TSInsertRecordsOfOneDeviceReq) -> Result<Vec<Tablet>, StoreError> {
    let device = r.prefix_path.ok_or_else(|| missing("prefixPath"))?;
    let ms = r
        .measurements_list
        .ok_or_else(|| missing("measurementsList"))?;
    let vs = r.values_list.ok_or_else(|| missing("valuesList"))?;
    let ts = r.timestamps.ok_or_else(|| missing("timestamps"))?;
    if ms.len() != vs.len() || ms.len() != ts.len() {
        return Err(bad("insertRecordsOfOneDevice: list lengths differ".into()));
    }
    let aligned = r.is_aligned.unwrap_or(false);
    ms.into_iter()
        .zip(vs.iter().zip(&ts))
        .map(|(m, (v, t))| Tablet::from_record(device.clone(), m, v, *t, aligned).map_err(bad))
        .collect()
}

/// A string record: values are typed by the schema, or inferred for new
/// series (numbers DOUBLE, true/false BOOLEAN, anything else TEXT).
fn string_record_of(svc: &Service, r: TSInsertStringRecordReq) -> Result<Tablet, StoreError> {
    let device = r.prefix_path.ok_or_else(|| missing("prefixPath"))?;
    let ms = r.measurements.ok_or_else(|| missing("measurements"))?;
    let vs = r.values.ok_or_else(|| missing("values"))?;
    let t = r.timestamp.ok_or_else(|| missing("timestamp"))?;
    if ms.len() != vs.len() {
        return Err(bad(format!(
            "{} measurements but {} values",
            ms.len(),
            vs.len()
        )));
    }
    let lits: Vec<Literal> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let known = svc.exec.store().series_info(&format!("{device}.{}", ms[i]));
            let as_text = known
                .as_ref()
                .is_some_and(|k| k.data_type == protocol::types::DataType::Text);
            if as_text {
                Literal::Text(v.clone())
            } else if let Ok(n) = v.parse::<i64>() {
                Literal::Int(n)
            } else if let Ok(f) = v.parse::<f64>() {
                Literal::Float(f)
            } else if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
                Literal::Bool(v.eq_ignore_ascii_case("true"))
            } else {
                Literal::Text(v.clone())
            }
        })
        .collect();
    store::tablet_from_rows(
        svc.exec.store(),
        &device,
        &ms,
        r.is_aligned.unwrap_or(false),
        &[(t, lits)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method the metrics label (`crate::metrics::METHODS`) is one
    /// this service serves, so the list and `decode` agree.
    #[test]
    fn every_method_the_metrics_name_is_served() {
        let args = ok();
        let unknown = "is not served by edgepipe";
        for name in crate::metrics::METHODS {
            let framed = protocol::message::call(Proto::Binary, name, 1, 1, &args);
            let frame = &framed[4..];
            let call = Call::parse(frame).unwrap();
            if let Err(Handled::Reply(r)) = decode(call, frame) {
                let text = String::from_utf8_lossy(&r);
                assert!(!text.contains(unknown), "{name}: {text}");
            }
        }
        let framed = protocol::message::call(Proto::Binary, "noSuchMethod", 1, 1, &args);
        let frame = &framed[4..];
        match decode(Call::parse(frame).unwrap(), frame) {
            Err(Handled::Reply(r)) => assert!(String::from_utf8_lossy(&r).contains(unknown)),
            _ => panic!("an unknown method is refused"),
        }
    }
}
