//! A small synchronous client of the IoTDB client RPC, for `edgepipe cli`,
//! tests and benchmarks. It speaks exactly what the official clients send,
//! over plain TCP or TLS ([`Session::open_with`]).

use std::io::{Read, Write};
use std::time::Duration;

pub use replicator::plugin::connector::transport::ClientTls;
use replicator::plugin::connector::transport::{connect_blocking, BlockingStream};

use protocol::message::{call, read_reply, Proto};
use protocol::rpc::{
    TSCloseOperationReq, TSCloseSessionReq, TSExecuteStatementReq, TSExecuteStatementResp,
    TSFetchResultsReq, TSFetchResultsResp, TSInsertTabletReq, TSOpenSessionReq, TSOpenSessionResp,
    TSStatus,
};
use protocol::tablet::Tablet;
use protocol::tsblock;
use protocol::types::{DataType, Value};
use thrift::protocol::TSerializable;

/// A client error: a status from the server, or a transport failure.
#[derive(Debug)]
pub enum ClientError {
    /// The server answered with a non-success status.
    Status {
        /// IoTDB status code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// The connection or the protocol failed.
    Transport(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Status { code, message } => write!(f, "{code}: {message}"),
            ClientError::Transport(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Client result.
pub type CResult<T> = Result<T, ClientError>;

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

fn check(s: &TSStatus) -> CResult<()> {
    if s.code == 200 || s.code == 400 {
        Ok(())
    } else {
        Err(ClientError::Status {
            code: s.code,
            message: s.message.clone().unwrap_or_default(),
        })
    }
}

/// A query's result, all pages fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Column names, without `Time`.
    pub columns: Vec<String>,
    /// Type names as the server sent them.
    pub types: Vec<String>,
    /// True when rows have no time (SHOW statements).
    pub ignore_timestamp: bool,
    /// Rows: time and one value per column (`None` = null).
    pub rows: Vec<(i64, Vec<Option<Value>>)>,
}

/// How long a connect (and TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// An open session.
pub struct Session {
    stream: BlockingStream,
    session_id: i64,
    statement_id: i64,
    /// The server's timestamp precision (`ms`, `us`, `ns`).
    pub precision: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl Session {
    /// Connects over plain TCP and opens a session.
    ///
    /// # Errors
    /// Connection failures and a refused login (801).
    pub fn open(addr: &str, user: &str, password: &str) -> CResult<Session> {
        Session::open_with(addr, user, password, None)
    }

    /// Connects, with TLS when `tls` is given (the server's certificate
    /// verified for the host of `addr`), and opens a session.
    ///
    /// # Errors
    /// Connection failures (a certificate that does not verify names the
    /// reason; a server that closes a plaintext connection at once is
    /// probably serving TLS, and the error says so), and a refused login
    /// (801).
    pub fn open_with(
        addr: &str,
        user: &str,
        password: &str,
        tls: Option<&ClientTls>,
    ) -> CResult<Session> {
        let stream = connect_blocking(addr, tls, CONNECT_TIMEOUT)
            .map_err(|e| ClientError::Transport(format!("cannot connect to {addr}: {e}")))?;
        stream
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(600)))
            .map_err(transport)?;
        let mut s = Session {
            stream,
            session_id: 0,
            statement_id: 0,
            precision: "ms".into(),
        };
        let req = TSOpenSessionReq {
            client_protocol: Some(2),
            // The local zone, as IoTDB's clients send it: SQL times written
            // without an offset are read in it.
            zone_id: Some(chrono::Local::now().offset().to_string()),
            username: Some(user.into()),
            password: Some(password.into()),
            configuration: Some(
                [
                    ("version".to_string(), "V_1_0".to_string()),
                    ("sql_dialect".to_string(), "tree".to_string()),
                ]
                .into_iter()
                .collect(),
            ),
        };
        let resp: TSOpenSessionResp = match s.call("openSession", &req) {
            Err(ClientError::Transport(m)) if tls.is_none() => {
                return Err(ClientError::Transport(format!(
                    "{addr}: {m}; if the node serves TLS (enable_thrift_ssl=true), connect with TLS (edgepipe cli -usessl true -ts CA.pem)"
                )))
            }
            r => r?,
        };
        check(&resp.status)?;
        s.session_id = resp.session_id.unwrap_or_default();
        if let Some(p) = resp
            .configuration
            .and_then(|c| c.get("timestamp_precision").cloned())
        {
            s.precision = p;
        }
        s.statement_id = 1;
        Ok(s)
    }

    fn call<A: TSerializable, R: TSerializable>(&mut self, name: &str, arg: &A) -> CResult<R> {
        let frame = call(Proto::Binary, name, 0, 1, arg);
        self.stream.write_all(&frame).map_err(transport)?;
        self.stream.flush().map_err(transport)?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| ClientError::Transport(format!("{name}: no reply: {e}")))?;
        let n = i32::from_be_bytes(len);
        if n <= 0 || n > 1 << 30 {
            return Err(ClientError::Transport(format!(
                "{name}: reply frame of {n} bytes"
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.stream.read_exact(&mut buf).map_err(transport)?;
        read_reply(&buf).map_err(|e| ClientError::Transport(format!("{name}: {e}")))
    }

    /// Runs a statement; returns its rows when it has any.
    ///
    /// # Errors
    /// The server's status, or transport failures.
    pub fn execute(&mut self, sql: &str) -> CResult<Option<Rows>> {
        let req = TSExecuteStatementReq {
            session_id: Some(self.session_id),
            statement: Some(sql.into()),
            statement_id: Some(self.statement_id),
            fetch_size: Some(5000),
            timeout: None,
            enable_redirect_query: None,
            jdbc_query: None,
        };
        let resp: TSExecuteStatementResp = self.call("executeStatementV2", &req)?;
        check(&resp.status)?;
        let columns = resp.columns.unwrap_or_default();
        // A statement without rows has no query id; a query that matched
        // no series has one (and prints as an empty table).
        if columns.is_empty() && resp.query_id.is_none() {
            return Ok(None);
        }
        let mut rows = Vec::new();
        decode_blocks(resp.query_result.unwrap_or_default(), &mut rows)?;
        let mut more = resp.more_data.unwrap_or(false);
        while more {
            let req = TSFetchResultsReq {
                session_id: Some(self.session_id),
                statement: Some(sql.into()),
                fetch_size: Some(5000),
                query_id: resp.query_id,
                is_align: Some(true),
                timeout: None,
                statement_id: Some(self.statement_id),
            };
            let f: TSFetchResultsResp = self.call("fetchResultsV2", &req)?;
            check(&f.status)?;
            if !f.has_result_set {
                break;
            }
            decode_blocks(f.query_result.unwrap_or_default(), &mut rows)?;
            more = f.more_data.unwrap_or(false);
        }
        if resp.query_id.is_some() {
            let req = TSCloseOperationReq {
                session_id: Some(self.session_id),
                query_id: resp.query_id,
                statement_id: Some(self.statement_id),
                prepared_statement_name: None,
            };
            let s: TSStatus = self.call("closeOperation", &req)?;
            check(&s)?;
        }
        Ok(Some(Rows {
            columns,
            types: resp.data_type_list.unwrap_or_default(),
            ignore_timestamp: resp.ignore_time_stamp.unwrap_or(false),
            rows,
        }))
    }

    /// Inserts a tablet with `insertTablet`.
    ///
    /// # Errors
    /// The server's status, or transport failures.
    pub fn insert_tablet(&mut self, t: &Tablet) -> CResult<()> {
        let req = tablet_request(self.session_id, t);
        let s: TSStatus = self.call("insertTablet", &req)?;
        check(&s)
    }

    /// Closes the session.
    ///
    /// # Errors
    /// Transport failures.
    pub fn close(mut self) -> CResult<()> {
        let s: TSStatus = self.call(
            "closeSession",
            &TSCloseSessionReq {
                session_id: Some(self.session_id),
            },
        )?;
        check(&s)
    }
}

fn decode_blocks(blocks: Vec<Vec<u8>>, rows: &mut Vec<(i64, Vec<Option<Value>>)>) -> CResult<()> {
    for b in blocks {
        let block = tsblock::decode(&b).map_err(ClientError::Transport)?;
        let mut cols: Vec<_> = block
            .columns
            .iter()
            .map(|c| c.cells(block.rows()))
            .collect();
        for &t in &block.times {
            rows.push((t, cols.iter_mut().map(|c| c.next().flatten()).collect()));
        }
    }
    Ok(())
}

/// The `insertTablet` request for a tablet, encoded as the official
/// clients encode it (big-endian columns, then the null bitmaps).
pub fn tablet_request(session_id: i64, t: &Tablet) -> TSInsertTabletReq {
    let n = t.rows();
    let values = t.rpc_values();
    TSInsertTabletReq {
        session_id: Some(session_id),
        prefix_path: Some(t.device.clone()),
        measurements: Some(t.measurements.clone()),
        values: Some(values),
        timestamps: Some(t.times.iter().flat_map(|x| x.to_be_bytes()).collect()),
        types: Some(t.columns.iter().map(|c| c.data_type() as i32).collect()),
        size: Some(n as i32),
        is_aligned: Some(t.aligned),
        write_to_table: None,
    }
}

/// The type named by a `dataTypeList` entry.
pub fn type_of(name: &str) -> Option<DataType> {
    DataType::from_name(name)
}
