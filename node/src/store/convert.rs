//! Conversions from SQL literals and IoTDB ids: value coercion, type
//! inference, encoding names, tablets from literal rows.

use protocol::tablet::{Column, Tablet};
use protocol::types::{status, DataType, Value};

use super::{SResult, Store, StoreError};

/// IoTDB's name of a `TSEncoding` id.
pub fn encoding_name(id: u8) -> &'static str {
    match id {
        0 => "PLAIN",
        1 => "DICTIONARY",
        2 => "RLE",
        3 => "DIFF",
        4 => "TS_2DIFF",
        5 => "BITMAP",
        6 => "GORILLA_V1",
        7 => "REGULAR",
        8 => "GORILLA",
        9 => "ZIGZAG",
        11 => "CHIMP",
        12 => "SPRINTZ",
        13 => "RLBE",
        _ => "PLAIN",
    }
}

/// Converts a SQL-side value at time `time` for a series of type `t`.
///
/// # Errors
/// A type mismatch naming the series, in IoTDB's words.
pub fn coerce(path: &str, t: DataType, time: i64, v: &crate::sql::Literal) -> SResult<Value> {
    use crate::sql::Literal as L;
    let mismatch = || {
        let (written, text) = match v {
            L::Int(i) => ("INT64", i.to_string()),
            L::Float(f) => ("DOUBLE", f.to_string()),
            L::Bool(b) => ("BOOLEAN", b.to_string()),
            L::Text(s) => ("TEXT", s.clone()),
            L::Null => ("NULL", "null".to_string()),
        };
        StoreError::new(
            status::DATA_TYPE_MISMATCH,
            format!("data type of {path} is not consistent, registered type {t}, inserting type {written}, timestamp {time}, value {text}"),
        )
    };
    Ok(match (t, v) {
        (DataType::Boolean, L::Bool(b)) => Value::Boolean(*b),
        (DataType::Int32, L::Int(i)) => Value::Int32(i32::try_from(*i).map_err(|_| {
            StoreError::new(
                status::DATA_TYPE_MISMATCH,
                format!("{i} is out of range for {path} (INT32)"),
            )
        })?),
        (DataType::Int64, L::Int(i)) => Value::Int64(*i),
        (DataType::Float, L::Int(i)) => Value::Float(*i as f32),
        (DataType::Float, L::Float(f)) => Value::Float(*f as f32),
        (DataType::Double, L::Int(i)) => Value::Double(*i as f64),
        (DataType::Double, L::Float(f)) => Value::Double(*f),
        (DataType::Text, L::Text(s)) => Value::Text(s.as_bytes().to_vec()),
        (DataType::Text, L::Int(i)) => Value::Text(i.to_string().into_bytes()),
        (DataType::Text, L::Float(f)) => Value::Text(f.to_string().into_bytes()),
        (DataType::Text, L::Bool(b)) => Value::Text(b.to_string().into_bytes()),
        _ => return Err(mismatch()),
    })
}

/// The type a new series gets from a SQL literal (IoTDB's defaults: numbers
/// become DOUBLE, `true`/`false` BOOLEAN, strings TEXT).
pub fn infer(v: &crate::sql::Literal) -> Option<DataType> {
    use crate::sql::Literal as L;
    match v {
        L::Bool(_) => Some(DataType::Boolean),
        L::Int(_) | L::Float(_) => Some(DataType::Double),
        L::Text(_) => Some(DataType::Text),
        L::Null => None,
    }
}

/// A tablet for `device` from literal rows, typed by the schema (or by
/// inference for new series).
///
/// # Errors
/// Type mismatches.
pub fn tablet_from_rows(
    store: &Store,
    device: &str,
    measurements: &[String],
    aligned: bool,
    rows: &[(i64, Vec<crate::sql::Literal>)],
) -> SResult<Tablet> {
    let mut columns = Vec::with_capacity(measurements.len());
    let mut nulls = Vec::with_capacity(measurements.len());
    for (ci, m) in measurements.iter().enumerate() {
        let path = format!("{device}.{m}");
        let t = match store.series_info(&path) {
            Some(i) => i.data_type,
            None => match rows.iter().find_map(|r| infer(&r.1[ci])) {
                Some(t) => t,
                None => DataType::Double,
            },
        };
        let mut col = Column::with_capacity(t, rows.len());
        let mut nl = vec![false; rows.len()];
        for (ri, (time, vals)) in rows.iter().enumerate() {
            if vals[ci] == crate::sql::Literal::Null {
                nl[ri] = true;
                col.push(Value::placeholder(t));
            } else {
                col.push(coerce(&path, t, *time, &vals[ci])?);
            }
        }
        columns.push(col);
        nulls.push(nl.iter().any(|&x| x).then_some(nl));
    }
    Ok(Tablet {
        device: device.to_string(),
        measurements: measurements.to_vec(),
        columns,
        nulls,
        times: rows.iter().map(|r| r.0).collect(),
        aligned,
    })
}
