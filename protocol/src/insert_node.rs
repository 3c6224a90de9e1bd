//! What a real IoTDB 1.2 pipe sender puts in `pipeTransfer` bodies besides
//! raw tablets: serialized InsertNodes (request type 2, and inside type 6
//! batches) and raw WAL entries (type 7, and inside type 6), decoded into
//! [`Tablet`]s; and encoders for the same bytes (for tests and tools).
//!
//! Facts: `shared/reference/iotdb-insertnode-tsfile.md` §2, checked in
//! IoTDB's source at rel/1.2 (`InsertRowNode`, `InsertTabletNode`,
//! `InsertNode`, `PlanNode`, `WALEntry`, `WALWriteUtils`; the WAL writes a
//! full `MeasurementSchema` per measurement because every 1.2 DataNode runs
//! with `isClusterMode` set, in `DataNode.prepareDataNode`; the receiver's
//! type-7 path reads a full schema unconditionally).
//!
//! # Layouts (big-endian; String = i32 length + UTF-8; Schema =
//! `MeasurementSchema`: String id, u8 type, u8 encoding, u8 compressor,
//! i32 nProps, nProps × (String, String))
//! ```text
//! type 2 InsertRowNode     i16 14, i64 time, String device, i32 n, u8 hasSchemas,
//!                          n × (Schema | String name), n × value, u8 needInferType,
//!                          u8 isAligned, String planNodeId, [i32 childCount = 0]
//!        value             u8 typeCode + value: 0 BOOLEAN u8, 1 INT32 i32, 2 INT64 i64,
//!                          3 FLOAT f32, 4 DOUBLE f64, 5 TEXT i32 len + bytes,
//!                          0xFE null (nothing follows), 0xFF raw string: String
//! type 2 InsertTabletNode  i16 13, String device, i32 n, u8 hasSchemas,
//!                          n × (Schema | String name), n × u8 type, i32 rows,
//!                          rows × i64 time, u8 hasBitmaps,
//!                          [n × (u8 present, [rows/8 + 1 bytes, LSB first, 1 = null])],
//!                          n columns × rows values (BOOLEAN u8, TEXT i32 len + bytes),
//!                          u8 isAligned, String planNodeId, [i32 childCount = 0]
//! type 7 WAL entry         u8 entryType (4 row, 5 tablet), i64 memTableId,
//!                          i16 nodeType (14, 13), i64 searchIndex, then
//!          row:            i64 time, String device, i32 n, n × Schema, n × value
//!                          (no 0xFF), u8 isAligned
//!          tablet:         String device, i32 n, n × Schema, i32 rows, rows × i64,
//!                          u8 hasBitmaps, [bitmaps as above], values as above, u8 isAligned
//! type 6 batch             i32 k, k × (i32 len, type-7 body);
//!                          i32 k, k × (type-2 node with its i32 childCount);
//!                          i32 k, k × (Tablet.serialize() + u8 isAligned)
//! ```
//! Null bits are the tablet's convention (bit r = `byte[r/8] & 1 << r%8`,
//! set = null), unlike a TsFile value page's. Measurement ids, node ids,
//! memtable ids and search indexes are read and dropped: the rows are what
//! a receiver applies. Every count is checked against the bytes left
//! before anything is allocated.

use crate::tablet::{Column, Tablet};
use crate::types::{DataType, Value};

/// `PlanNodeType` of an InsertTabletNode.
pub const INSERT_TABLET: i16 = 13;
/// `PlanNodeType` of an InsertRowNode.
pub const INSERT_ROW: i16 = 14;
/// WAL entry type of an InsertRowNode.
pub const WAL_INSERT_ROW: u8 = 4;
/// WAL entry type of an InsertTabletNode.
pub const WAL_INSERT_TABLET: u8 = 5;

const TYPE_NULL: u8 = 0xfe;
const TYPE_RAW_STRING: u8 = 0xff;

/// A bounds-checked big-endian cursor whose errors name the byte.
struct Buf<'a> {
    b: &'a [u8],
    at: usize,
    what: &'static str,
}

type R<T> = Result<T, String>;

impl<'a> Buf<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Buf { b, at: 0, what }
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn err(&self, msg: impl std::fmt::Display) -> String {
        format!("{}: at byte {}: {msg}", self.what, self.at)
    }
    fn take(&mut self, n: usize, what: &str) -> R<&'a [u8]> {
        if n > self.left() {
            return Err(self.err(format!(
                "{what} needs {n} bytes but the body ends {} bytes on",
                self.left()
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn i16(&mut self, what: &str) -> R<i16> {
        Ok(i16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    fn i32(&mut self, what: &str) -> R<i32> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn i64(&mut self, what: &str) -> R<i64> {
        Ok(i64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    /// An i32 count of items of at least `min` bytes each, checked against
    /// the bytes left.
    fn count(&mut self, what: &str, min: usize) -> R<usize> {
        let at = self.at;
        let n = self.i32(what)?;
        if n < 0 || (n as usize).saturating_mul(min) > self.left() {
            self.at = at;
            return Err(self.err(format!(
                "{what} {n} does not fit the {} bytes left",
                self.left() - 4
            )));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self, what: &str) -> R<&'a [u8]> {
        let n = self.count(what, 1)?;
        self.take(n, what)
    }
    fn string(&mut self, what: &str) -> R<String> {
        let at = self.at;
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("{}: at byte {at}: {what} is not UTF-8", self.what))
    }
    fn data_type(&mut self, what: &str) -> R<DataType> {
        let at = self.at;
        let t = self.u8(what)?;
        DataType::from_id(i32::from(t)).map_err(|e| format!("{}: at byte {at}: {e}", self.what))
    }
    /// A `MeasurementSchema`: (id, type).
    fn schema(&mut self) -> R<(String, DataType)> {
        let id = self.string("measurement id")?;
        let t = self.data_type("measurement type")?;
        self.take(2, "encoding and compressor")?;
        let at = self.at;
        let props = self.i32("property count")?;
        if props > 0 {
            if props as usize > self.left() / 8 {
                self.at = at;
                return Err(self.err(format!("{props} schema properties do not fit")));
            }
            for _ in 0..props {
                self.bytes("property key")?;
                self.bytes("property value")?;
            }
        }
        Ok((id, t))
    }
    fn value(&mut self, t: DataType) -> R<Value> {
        Ok(match t {
            DataType::Boolean => Value::Boolean(self.u8("BOOLEAN value")? == 1),
            DataType::Int32 => Value::Int32(self.i32("INT32 value")?),
            DataType::Int64 => Value::Int64(self.i64("INT64 value")?),
            DataType::Float => Value::Float(f32::from_bits(self.i32("FLOAT value")? as u32)),
            DataType::Double => Value::Double(f64::from_bits(self.i64("DOUBLE value")? as u64)),
            DataType::Text => Value::Text(self.bytes("TEXT value")?.to_vec()),
        })
    }
    fn done(&self) -> R<()> {
        if self.left() != 0 {
            return Err(self.err(format!("{} unexpected bytes after the end", self.left())));
        }
        Ok(())
    }
}

/// The type IoTDB 1.2 infers for an untyped string value with its default
/// settings (`TypeInferenceUtils`): true/false BOOLEAN, integers FLOAT (or
/// DOUBLE past 2^24), decimals FLOAT, NaN DOUBLE, anything else TEXT.
fn infer(s: &str) -> Value {
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return Value::Boolean(s.eq_ignore_ascii_case("true"));
    }
    if s == "NaN" {
        return Value::Double(f64::NAN);
    }
    if let Ok(d) = s.trim().parse::<f64>() {
        if !s.contains('.') && s.trim().parse::<i64>().map_or(true, |l| l > 1 << 24) {
            return Value::Double(d);
        }
        return Value::Float(d as f32);
    }
    Value::Text(s.as_bytes().to_vec())
}

/// An untyped string value as type `t`.
fn parse_as(s: &str, t: DataType) -> Result<Value, String> {
    let bad = || format!("raw string value {s:?} is not a {t}");
    Ok(match t {
        DataType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(bad()),
        },
        DataType::Int32 => Value::Int32(s.trim().parse().map_err(|_| bad())?),
        DataType::Int64 => Value::Int64(s.trim().parse().map_err(|_| bad())?),
        DataType::Float => Value::Float(s.trim().parse().map_err(|_| bad())?),
        DataType::Double => Value::Double(s.trim().parse().map_err(|_| bad())?),
        DataType::Text => Value::Text(s.as_bytes().to_vec()),
    })
}

/// Reads the row part of an InsertRowNode from `n` on (`wal`: the WAL
/// form, schemas always present, no needInferType byte).
fn read_row(b: &mut Buf<'_>, time: i64, device: String, wal: bool) -> R<Tablet> {
    let n = b.count("measurement count", 5)?;
    let has_schemas = if wal { true } else { b.u8("hasSchemas")? == 1 };
    let mut names = Vec::with_capacity(n);
    let mut types: Vec<Option<DataType>> = Vec::with_capacity(n);
    for _ in 0..n {
        if has_schemas {
            let (id, t) = b.schema()?;
            names.push(id);
            types.push(Some(t));
        } else {
            names.push(b.string("measurement")?);
            types.push(None);
        }
    }
    let mut cells: Vec<Option<Value>> = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let at = b.at;
        let code = b.u8("value type")?;
        cells.push(match code {
            TYPE_NULL => None,
            TYPE_RAW_STRING if !wal => {
                let s = b.string("raw string value")?;
                Some(match types[i] {
                    Some(t) => parse_as(&s, t)
                        .map_err(|e| format!("{}: at byte {at}: {name}: {e}", b.what))?,
                    None => infer(&s),
                })
            }
            c => {
                let t = DataType::from_id(i32::from(c))
                    .map_err(|e| format!("{}: at byte {at}: {name}: {e}", b.what))?;
                Some(b.value(t)?)
            }
        });
    }
    if !wal {
        b.u8("needInferType")?;
    }
    let aligned = b.u8("isAligned")? == 1;
    let mut measurements = Vec::with_capacity(n);
    let mut columns = Vec::with_capacity(n);
    let mut nulls = Vec::with_capacity(n);
    for ((name, t), cell) in names.into_iter().zip(types).zip(cells) {
        // A null cell without a schema has no type: nothing to write.
        let t = match (&cell, t) {
            (Some(v), _) => v.data_type(),
            (None, Some(t)) => t,
            (None, None) => continue,
        };
        let mut c = Column::with_capacity(t, 1);
        let null = cell.is_none();
        c.push(cell.unwrap_or_else(|| Value::placeholder(t)));
        measurements.push(name);
        columns.push(c);
        nulls.push(null.then(|| vec![true]));
    }
    Ok(Tablet {
        device,
        measurements,
        columns,
        nulls,
        times: vec![time],
        aligned,
    })
}

/// Reads the rows, bitmaps, values and aligned byte of an
/// InsertTabletNode.
fn read_tablet_rows(
    b: &mut Buf<'_>,
    device: String,
    names: Vec<String>,
    types: Vec<DataType>,
) -> R<Tablet> {
    let rows = b.count("row count", 8)?;
    let times = b
        .take(rows * 8, "times")?
        .chunks_exact(8)
        .map(|c| i64::from_be_bytes(c.try_into().expect("8")))
        .collect::<Vec<_>>();
    let mut nulls: Vec<Option<Vec<bool>>> = vec![None; types.len()];
    if b.u8("hasBitmaps")? == 1 {
        for slot in nulls.iter_mut() {
            if b.u8("bitmap present")? == 1 {
                let bits = b.take(rows / 8 + 1, "bitmap")?;
                let v: Vec<bool> = (0..rows)
                    .map(|r| bits[r / 8] & (1 << (r % 8)) != 0)
                    .collect();
                if v.iter().any(|&x| x) {
                    *slot = Some(v);
                }
            }
        }
    }
    let mut columns = Vec::with_capacity(types.len());
    for &t in &types {
        let width = match t {
            DataType::Boolean => 1,
            DataType::Int32 | DataType::Float | DataType::Text => 4,
            DataType::Int64 | DataType::Double => 8,
        };
        if rows.saturating_mul(width) > b.left() {
            return Err(b.err(format!(
                "{rows} {t} values do not fit the {} bytes left",
                b.left()
            )));
        }
        let mut c = Column::with_capacity(t, rows);
        for _ in 0..rows {
            c.push(b.value(t)?);
        }
        columns.push(c);
    }
    let aligned = b.u8("isAligned")? == 1;
    Ok(Tablet {
        device,
        measurements: names,
        columns,
        nulls,
        times,
        aligned,
    })
}

/// Reads an InsertRowNode or InsertTabletNode as `PlanNode.serialize`
/// writes it, up to and including its planNodeId.
fn read_plan_node(b: &mut Buf<'_>) -> R<Tablet> {
    let at = b.at;
    let t = b.i16("plan node type")?;
    let tablet = match t {
        INSERT_ROW => {
            let time = b.i64("time")?;
            let device = b.string("device")?;
            read_row(b, time, device, false)?
        }
        INSERT_TABLET => {
            let device = b.string("device")?;
            let n = b.count("measurement count", 5)?;
            let has_schemas = b.u8("hasSchemas")? == 1;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(if has_schemas { b.schema()?.0 } else { b.string("measurement")? });
            }
            let mut types = Vec::with_capacity(n);
            for _ in 0..n {
                types.push(b.data_type("data type")?);
            }
            read_tablet_rows(b, device, names, types)?
        }
        15..=17 => {
            return Err(format!(
                "{}: at byte {at}: plan node type {t} ({}) is not sent by IoTDB 1.2 senders and is not supported",
                b.what,
                match t {
                    15 => "INSERT_ROWS",
                    16 => "INSERT_ROWS_OF_ONE_DEVICE",
                    _ => "INSERT_MULTI_TABLET",
                }
            ))
        }
        _ => return Err(format!("{}: at byte {at}: plan node type {t} is not an InsertRowNode (14) or InsertTabletNode (13)", b.what)),
    };
    b.string("plan node id")?;
    Ok(tablet)
}

/// Decodes a `TRANSFER_TABLET_INSERT_NODE` (type 2) body: one
/// InsertRowNode (a one-row tablet) or InsertTabletNode. The trailing i32
/// childCount is optional (the Java receiver stops before it) and must be 0.
///
/// # Errors
/// A message naming the byte and what is wrong there.
pub fn decode_insert_node(body: &[u8]) -> Result<Tablet, String> {
    let mut b = Buf::new(body, "InsertNode");
    let t = read_plan_node(&mut b)?;
    if b.left() == 4 {
        let c = b.i32("child count")?;
        if c != 0 {
            return Err(b.err(format!("an insert node with {c} children")));
        }
    }
    b.done()?;
    Ok(t)
}

/// Decodes a `TRANSFER_TABLET_BINARY` (type 7) body: one raw WAL entry of
/// an InsertRowNode (entry type 4) or InsertTabletNode (type 5).
///
/// # Errors
/// A message naming the byte and what is wrong there.
pub fn decode_wal_entry(body: &[u8]) -> Result<Tablet, String> {
    let mut b = Buf::new(body, "WAL entry");
    let entry = b.u8("WAL entry type")?;
    b.i64("memtable id")?;
    let at = b.at;
    let node = b.i16("plan node type")?;
    let t = match (entry, node) {
        (WAL_INSERT_ROW, INSERT_ROW) => {
            b.i64("search index")?;
            let time = b.i64("time")?;
            let device = b.string("device")?;
            read_row(&mut b, time, device, true)?
        }
        (WAL_INSERT_TABLET, INSERT_TABLET) => {
            b.i64("search index")?;
            let device = b.string("device")?;
            let n = b.count("measurement count", 11)?;
            let mut names = Vec::with_capacity(n);
            let mut types = Vec::with_capacity(n);
            for _ in 0..n {
                let (id, t) = b.schema()?;
                names.push(id);
                types.push(t);
            }
            read_tablet_rows(&mut b, device, names, types)?
        }
        (WAL_INSERT_ROW | WAL_INSERT_TABLET, _) => {
            return Err(format!(
                "WAL entry: at byte {at}: entry type {entry} holds plan node type {node}"
            ))
        }
        _ => {
            return Err(format!(
                "WAL entry: at byte 0: entry type {entry} is not an insert row (4) or insert tablet (5) entry"
            ))
        }
    };
    b.done()?;
    Ok(t)
}

/// Decodes a `TRANSFER_TABLET_BATCH` (type 6) body: its WAL entries, then
/// its InsertNodes, then its tablets, in that order.
///
/// # Errors
/// A message naming the part and the byte that do not decode.
pub fn decode_batch(body: &[u8]) -> Result<Vec<Tablet>, String> {
    let mut b = Buf::new(body, "tablet batch");
    let mut out = Vec::new();
    let n = b.count("WAL entry count", 4)?;
    for i in 0..n {
        let at = b.at;
        let e = b.bytes("WAL entry")?;
        out.push(
            decode_wal_entry(e)
                .map_err(|m| format!("tablet batch: WAL entry {i} at byte {at}: {m}"))?,
        );
    }
    let n = b.count("insert node count", 10)?;
    for i in 0..n {
        let at = b.at;
        let mut nb = Buf::new(&b.b[b.at..], "InsertNode");
        let t = read_plan_node(&mut nb)
            .map_err(|m| format!("tablet batch: insert node {i} at byte {at}: {m}"))?;
        let c = nb
            .i32("child count")
            .map_err(|m| format!("tablet batch: insert node {i} at byte {at}: {m}"))?;
        if c != 0 {
            return Err(format!(
                "tablet batch: insert node {i} at byte {at}: {c} children"
            ));
        }
        b.at += nb.at;
        out.push(t);
    }
    let n = b.count("tablet count", 10)?;
    for i in 0..n {
        let at = b.at;
        let (t, used) = Tablet::deserialize_v12_prefix(&b.b[b.at..])
            .map_err(|m| format!("tablet batch: tablet {i} at byte {at}: {m}"))?;
        b.at += used;
        out.push(t);
    }
    b.done()?;
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s);
}

fn put_schema(out: &mut Vec<u8>, name: &str, t: DataType) {
    put_str(out, name.as_bytes());
    // IoTDB 1.2's defaults: the type's encoding, LZ4, no properties.
    out.extend_from_slice(&[t as u8, t.default_encoding(), 7]);
    out.extend_from_slice(&0i32.to_be_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Boolean(x) => out.push(u8::from(*x)),
        Value::Int32(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Int64(x) => out.extend_from_slice(&x.to_be_bytes()),
        Value::Float(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Double(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Text(x) => put_str(out, x),
    }
}

fn put_row_cells(out: &mut Vec<u8>, t: &Tablet, row: usize) {
    for (c, col) in t.columns.iter().enumerate() {
        if t.is_null(c, row) {
            out.push(TYPE_NULL);
        } else {
            out.push(col.data_type() as u8);
            put_value(out, &col.get(row));
        }
    }
}

fn put_tablet_rows(out: &mut Vec<u8>, t: &Tablet) {
    let rows = t.rows();
    out.extend_from_slice(&(rows as i32).to_be_bytes());
    for x in &t.times {
        out.extend_from_slice(&x.to_be_bytes());
    }
    let any = t.nulls.iter().any(Option::is_some);
    out.push(u8::from(any));
    if any {
        for n in &t.nulls {
            match n {
                None => out.push(0),
                Some(bits) => {
                    out.push(1);
                    let mut bytes = vec![0u8; rows / 8 + 1];
                    for (r, &null) in bits.iter().enumerate() {
                        if null {
                            bytes[r / 8] |= 1 << (r % 8);
                        }
                    }
                    out.extend_from_slice(&bytes);
                }
            }
        }
    }
    for col in &t.columns {
        for r in 0..rows {
            put_value(out, &col.get(r));
        }
    }
    out.push(u8::from(t.aligned));
}

/// Encodes row `row` of `t` as an InsertRowNode the way `PlanNode.serialize`
/// does (schemas present, typed values, null cells as 0xFE), with
/// planNodeId `id` and childCount 0: a type-2 body.
///
/// # Panics
/// If `row` is out of range.
pub fn encode_insert_row_node(t: &Tablet, row: usize, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + t.columns.len() * 24);
    out.extend_from_slice(&INSERT_ROW.to_be_bytes());
    out.extend_from_slice(&t.times[row].to_be_bytes());
    put_str(&mut out, t.device.as_bytes());
    out.extend_from_slice(&(t.columns.len() as i32).to_be_bytes());
    out.push(1);
    for (m, c) in t.measurements.iter().zip(&t.columns) {
        put_schema(&mut out, m, c.data_type());
    }
    put_row_cells(&mut out, t, row);
    out.push(0); // needInferType
    out.push(u8::from(t.aligned));
    put_str(&mut out, id.as_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

/// Encodes `t` as an InsertTabletNode the way `PlanNode.serialize` does
/// (schemas present), with planNodeId `id` and childCount 0: a type-2
/// body.
pub fn encode_insert_tablet_node(t: &Tablet, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + t.rows() * 8 * (1 + t.columns.len()));
    out.extend_from_slice(&INSERT_TABLET.to_be_bytes());
    put_str(&mut out, t.device.as_bytes());
    out.extend_from_slice(&(t.columns.len() as i32).to_be_bytes());
    out.push(1);
    for (m, c) in t.measurements.iter().zip(&t.columns) {
        put_schema(&mut out, m, c.data_type());
    }
    for c in &t.columns {
        out.push(c.data_type() as u8);
    }
    put_tablet_rows(&mut out, t);
    put_str(&mut out, id.as_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

/// Encodes a WAL entry as IoTDB 1.2's WAL holds it: row `row` of `t` as an
/// InsertRowNode entry, or (`row` = `None`) all of `t` as an
/// InsertTabletNode entry; a type-7 body.
///
/// # Panics
/// If `row` is out of range.
pub fn encode_wal_entry(
    t: &Tablet,
    row: Option<usize>,
    mem_table_id: i64,
    search_index: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + t.rows() * 8 * (1 + t.columns.len()));
    out.push(if row.is_some() {
        WAL_INSERT_ROW
    } else {
        WAL_INSERT_TABLET
    });
    out.extend_from_slice(&mem_table_id.to_be_bytes());
    out.extend_from_slice(
        &(if row.is_some() {
            INSERT_ROW
        } else {
            INSERT_TABLET
        })
        .to_be_bytes(),
    );
    out.extend_from_slice(&search_index.to_be_bytes());
    if let Some(r) = row {
        out.extend_from_slice(&t.times[r].to_be_bytes());
    }
    put_str(&mut out, t.device.as_bytes());
    out.extend_from_slice(&(t.columns.len() as i32).to_be_bytes());
    for (m, c) in t.measurements.iter().zip(&t.columns) {
        put_schema(&mut out, m, c.data_type());
    }
    match row {
        Some(r) => {
            put_row_cells(&mut out, t, r);
            out.push(u8::from(t.aligned));
        }
        None => put_tablet_rows(&mut out, t),
    }
    out
}

/// Encodes a type-6 batch body from WAL entries (type-7 bodies), insert
/// nodes (type-2 bodies with their childCount) and tablets.
pub fn encode_batch(
    wal_entries: &[Vec<u8>],
    insert_nodes: &[Vec<u8>],
    tablets: &[Tablet],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(wal_entries.len() as i32).to_be_bytes());
    for e in wal_entries {
        put_str(&mut out, e);
    }
    out.extend_from_slice(&(insert_nodes.len() as i32).to_be_bytes());
    for n in insert_nodes {
        out.extend_from_slice(n);
    }
    out.extend_from_slice(&(tablets.len() as i32).to_be_bytes());
    for t in tablets {
        out.extend_from_slice(&t.serialize_v12());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::hex;

    /// The reference's worked row (§2.7): root.sg.d1 at 1700000000000,
    /// s1 INT64 = 42, s2 TEXT = "hi".
    fn worked_row() -> Tablet {
        Tablet {
            device: "root.sg.d1".into(),
            measurements: vec!["s1".into(), "s2".into()],
            columns: vec![Column::Int64(vec![42]), Column::Text(vec![b"hi".to_vec()])],
            nulls: vec![None, None],
            times: vec![1_700_000_000_000],
            aligned: false,
        }
    }

    const ROW_NODE: &str = "000e0000018bcfe568000000000a726f6f742e73672e64310000000201000000027331020407000000000000000273320500070000000002000000000000002a050000000268690000000000013100000000";
    const ROW_WAL: &str = "040000000000000005000effffffffffffffff0000018bcfe568000000000a726f6f742e73672e643100000002000000027331020407000000000000000273320500070000000002000000000000002a0500000002686900";
    const TABLET_NODE: &str = "000d0000000a726f6f742e73672e64310000000100000000027331010000000200000000000000010000000000000002010102000000070000000000000000013100000000";

    #[test]
    fn worked_examples_decode_and_encode_byte_for_byte() {
        let row = hex(ROW_NODE);
        assert_eq!(row.len(), 82);
        assert_eq!(decode_insert_node(&row).unwrap(), worked_row());
        assert_eq!(encode_insert_row_node(&worked_row(), 0, "1"), row);
        // Without the trailing childCount, as the Java receiver reads it.
        assert_eq!(
            decode_insert_node(&row[..row.len() - 4]).unwrap(),
            worked_row()
        );

        let wal = hex(ROW_WAL);
        assert_eq!(wal.len(), 88);
        assert_eq!(decode_wal_entry(&wal).unwrap(), worked_row());
        assert_eq!(encode_wal_entry(&worked_row(), Some(0), 5, -1), wal);

        let tab = hex(TABLET_NODE);
        assert_eq!(tab.len(), 69);
        let t = decode_insert_node(&tab).unwrap();
        assert_eq!(t.device, "root.sg.d1");
        assert_eq!(t.measurements, vec!["s1"]);
        assert_eq!(t.times, vec![1, 2]);
        assert_eq!(t.columns[0].get(0), Value::Int32(7));
        assert!(!t.is_null(0, 0) && t.is_null(0, 1));
        assert!(!t.aligned);
    }

    fn every_type(aligned: bool) -> Tablet {
        let n = 19;
        let nulls = |k: usize| Some((0..n).map(|r| r % k == 1).collect::<Vec<bool>>());
        let mut t = Tablet {
            device: "root.sg.all".into(),
            measurements: ["b", "i", "l", "f", "d", "t"].map(String::from).to_vec(),
            columns: vec![
                Column::Boolean((0..n).map(|r| r % 2 == 0).collect()),
                Column::Int32((0..n).map(|r| r as i32 * -3).collect()),
                Column::Int64((0..n).map(|r| (r as i64) << 40).collect()),
                Column::Float((0..n).map(|r| r as f32 / 3.0).collect()),
                Column::Double((0..n).map(|r| r as f64 * 1e-3).collect()),
                Column::Text((0..n).map(|r| format!("ü{r}").into_bytes()).collect()),
            ],
            nulls: vec![nulls(3), None, nulls(5), None, nulls(2), nulls(4)],
            times: (0..n as i64).map(|r| 1000 + r).collect(),
            aligned,
        };
        // Null cells carry placeholders (what the decoder gives back).
        for c in 0..t.columns.len() {
            if let Some(bits) = t.nulls[c].clone() {
                let ty = t.columns[c].data_type();
                let mut col = Column::with_capacity(ty, n);
                for (r, null) in bits.iter().enumerate() {
                    col.push(if *null {
                        Value::placeholder(ty)
                    } else {
                        t.columns[c].get(r)
                    });
                }
                t.columns[c] = col;
            }
        }
        t
    }

    fn row_of(t: &Tablet, r: usize) -> Tablet {
        let cols: Vec<usize> = (0..t.columns.len()).collect();
        Tablet {
            device: t.device.clone(),
            measurements: t.measurements.clone(),
            columns: cols.iter().map(|&c| t.columns[c].gather(&[r])).collect(),
            nulls: cols
                .iter()
                .map(|&c| t.is_null(c, r).then(|| vec![true]))
                .collect(),
            times: vec![t.times[r]],
            aligned: t.aligned,
        }
    }

    #[test]
    fn every_type_round_trips_aligned_and_not() {
        for aligned in [false, true] {
            let t = every_type(aligned);
            assert_eq!(
                decode_insert_node(&encode_insert_tablet_node(&t, "p")).unwrap(),
                t
            );
            assert_eq!(
                decode_wal_entry(&encode_wal_entry(&t, None, 1, 9)).unwrap(),
                t
            );
            for r in 0..t.rows() {
                let one = row_of(&t, r);
                assert_eq!(
                    decode_insert_node(&encode_insert_row_node(&t, r, "x")).unwrap(),
                    one,
                    "row {r}"
                );
                assert_eq!(
                    decode_wal_entry(&encode_wal_entry(&t, Some(r), 1, 9)).unwrap(),
                    one,
                    "row {r}"
                );
            }
            let batch = encode_batch(
                &[
                    encode_wal_entry(&t, Some(2), 0, -1),
                    encode_wal_entry(&t, None, 0, -1),
                ],
                &[
                    encode_insert_row_node(&t, 3, "a"),
                    encode_insert_tablet_node(&t, "b"),
                ],
                std::slice::from_ref(&t),
            );
            let got = decode_batch(&batch).unwrap();
            assert_eq!(
                got,
                vec![
                    row_of(&t, 2),
                    t.clone(),
                    row_of(&t, 3),
                    t.clone(),
                    t.clone()
                ]
            );
            // Every truncation is an error, never a panic.
            for cut in 0..batch.len() {
                assert!(decode_batch(&batch[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn raw_strings_and_bare_names() {
        // hasSchemas 0, needInferType 1: values as 0xFF strings.
        let mut b = Vec::new();
        b.extend_from_slice(&INSERT_ROW.to_be_bytes());
        b.extend_from_slice(&5i64.to_be_bytes());
        put_str(&mut b, b"root.sg.d");
        b.extend_from_slice(&4i32.to_be_bytes());
        b.push(0);
        for m in ["a", "b", "c", "d"] {
            put_str(&mut b, m.as_bytes());
        }
        for v in ["true", "12", "1.5", "hello"] {
            b.push(TYPE_RAW_STRING);
            put_str(&mut b, v.as_bytes());
        }
        b.extend_from_slice(&[1, 0]);
        put_str(&mut b, b"id");
        let t = decode_insert_node(&b).unwrap();
        assert_eq!(t.columns[0].get(0), Value::Boolean(true));
        assert_eq!(t.columns[1].get(0), Value::Float(12.0));
        assert_eq!(t.columns[2].get(0), Value::Float(1.5));
        assert_eq!(t.columns[3].get(0), Value::Text(b"hello".to_vec()));
    }

    #[test]
    fn hostile_counts_fail_before_allocating() {
        let mut b = hex(TABLET_NODE);
        // The row count (after device, n, hasSchemas, name, type) set huge.
        let at = 2 + 14 + 4 + 1 + 6 + 1;
        b[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        let e = decode_insert_node(&b).unwrap_err();
        assert!(e.contains("row count 2147483647 does not fit"), "{e}");
        let e = decode_wal_entry(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13]).unwrap_err();
        assert!(e.contains("entry type 9"), "{e}");
        let e = decode_insert_node(&hex("0011")).unwrap_err();
        assert!(e.contains("INSERT_MULTI_TABLET"), "{e}");
    }
}
