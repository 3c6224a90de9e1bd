//! IoTDB's data types, values and status codes.

use std::fmt;

/// The series data types edgepipe stores (IoTDB's `TSDataType` ids).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum DataType {
    /// `BOOLEAN` (0).
    Boolean = 0,
    /// `INT32` (1).
    Int32 = 1,
    /// `INT64` (2).
    Int64 = 2,
    /// `FLOAT` (3).
    Float = 3,
    /// `DOUBLE` (4).
    Double = 4,
    /// `TEXT` (5).
    Text = 5,
}

impl DataType {
    /// All types, in id order.
    pub const ALL: [DataType; 6] = [
        DataType::Boolean,
        DataType::Int32,
        DataType::Int64,
        DataType::Float,
        DataType::Double,
        DataType::Text,
    ];

    /// The type for an IoTDB `TSDataType` id, or an error naming the id.
    ///
    /// # Errors
    /// Ids of types edgepipe does not store (TIMESTAMP, DATE, BLOB, STRING,
    /// VECTOR) and unknown ids.
    pub fn from_id(id: i32) -> Result<DataType, String> {
        Ok(match id {
            0 => DataType::Boolean,
            1 => DataType::Int32,
            2 => DataType::Int64,
            3 => DataType::Float,
            4 => DataType::Double,
            5 => DataType::Text,
            8 => return Err("data type TIMESTAMP (8) is not supported; use INT64".into()),
            9 => return Err("data type DATE (9) is not supported; use INT32".into()),
            10 => return Err("data type BLOB (10) is not supported; use TEXT".into()),
            11 => return Err("data type STRING (11) is not supported; use TEXT".into()),
            other => return Err(format!("unknown data type id {other}")),
        })
    }

    /// IoTDB's name of the type (`dataTypeList` in query replies).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Boolean => "BOOLEAN",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Float => "FLOAT",
            DataType::Double => "DOUBLE",
            DataType::Text => "TEXT",
        }
    }

    /// The type named `s` (case-insensitive), as in `WITH DATATYPE=...`.
    pub fn from_name(s: &str) -> Option<DataType> {
        DataType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// The default encoding IoTDB picks for the type (its `TSEncoding` id).
    pub fn default_encoding(self) -> u8 {
        match self {
            DataType::Boolean => 2,                  // RLE
            DataType::Int32 | DataType::Int64 => 4,  // TS_2DIFF
            DataType::Float | DataType::Double => 8, // GORILLA
            DataType::Text => 0,                     // PLAIN
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// BOOLEAN.
    Boolean(bool),
    /// INT32.
    Int32(i32),
    /// INT64.
    Int64(i64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// TEXT (UTF-8 by convention, stored as bytes).
    Text(Vec<u8>),
}

impl Value {
    /// The filler stored in a null cell of type `t` (zero, false, empty).
    pub fn placeholder(t: DataType) -> Value {
        match t {
            DataType::Boolean => Value::Boolean(false),
            DataType::Int32 => Value::Int32(0),
            DataType::Int64 => Value::Int64(0),
            DataType::Float => Value::Float(0.0),
            DataType::Double => Value::Double(0.0),
            DataType::Text => Value::Text(Vec::new()),
        }
    }

    /// The value's type.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Boolean(_) => DataType::Boolean,
            Value::Int32(_) => DataType::Int32,
            Value::Int64(_) => DataType::Int64,
            Value::Float(_) => DataType::Float,
            Value::Double(_) => DataType::Double,
            Value::Text(_) => DataType::Text,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            // As Java prints them: a whole number keeps its `.0`.
            Value::Float(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 => {
                write!(f, "{v:.1}")
            }
            Value::Double(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 => {
                write!(f, "{v:.1}")
            }
            Value::Float(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v}"),
            Value::Text(t) => f.write_str(&String::from_utf8_lossy(t)),
        }
    }
}

/// IoTDB status codes (`TSStatusCode`) edgepipe answers with.
pub mod status {
    /// Success.
    pub const SUCCESS: i32 = 200;
    /// The statement or request is not supported.
    pub const UNSUPPORTED_OPERATION: i32 = 300;
    /// A statement failed while executing.
    pub const EXECUTE_STATEMENT_ERROR: i32 = 301;
    /// A request parameter is invalid.
    pub const ILLEGAL_PARAMETER: i32 = 303;
    /// An internal error (I/O, corruption).
    pub const INTERNAL_SERVER_ERROR: i32 = 305;
    /// The database does not exist.
    pub const DATABASE_NOT_EXIST: i32 = 500;
    /// The database already exists.
    pub const DATABASE_ALREADY_EXISTS: i32 = 501;
    /// The series already exists.
    pub const TIMESERIES_ALREADY_EXIST: i32 = 503;
    /// Schema trouble (type mismatch, series missing in strict mode).
    pub const METADATA_ERROR: i32 = 507;
    /// The path does not exist.
    pub const PATH_NOT_EXIST: i32 = 508;
    /// The path is not a valid path.
    pub const ILLEGAL_PATH: i32 = 509;
    /// The disk is full: a write could not be made durable and was refused
    /// (IoTDB's `DISK_SPACE_INSUFFICIENT`, "Disk space is insufficient").
    pub const DISK_SPACE_INSUFFICIENT: i32 = 611;
    /// A value does not match its series' type.
    pub const DATA_TYPE_MISMATCH: i32 = 614;
    /// The SQL does not parse.
    pub const SQL_PARSE_ERROR: i32 = 700;
    /// The SQL parses but means nothing valid.
    pub const SEMANTIC_ERROR: i32 = 701;
    /// The time zone is unknown.
    pub const SET_TIME_ZONE_ERROR: i32 = 703;
    /// The query id is unknown.
    pub const NO_SUCH_QUERY: i32 = 714;
    /// Wrong user name or password.
    pub const WRONG_LOGIN_PASSWORD: i32 = 801;
    /// No session on this connection.
    pub const NOT_LOGIN: i32 = 802;
    /// The user lacks a privilege.
    pub const NO_PERMISSION: i32 = 803;
    /// A TsFile could not be loaded (damaged, unsupported, or its points
    /// could not be written).
    pub const LOAD_FILE_ERROR: i32 = 1100;
    /// A pipe operation failed.
    pub const PIPE_ERROR: i32 = 1107;
    /// The pipe server refused the request (a sender outside
    /// `ip_white_list`, a version mismatch).
    pub const PIPESERVER_ERROR: i32 = 1108;
    /// A loaded file's series disagree with the schema (types, alignment,
    /// series that may not be created).
    pub const VERIFY_METADATA_ERROR: i32 = 1109;
    /// The pipe server refused to stop (IoTDB 0.14's sync tool numbering,
    /// `PIPESINK_ERROR` = 328, as the seed document quotes it).
    pub const PIPESINK_ERROR: i32 = 328;
    /// The pipe does not exist.
    pub const PIPE_NOT_EXIST_ERROR: i32 = 1806;
}
