//! Tablets: the unit of writing. One device, a few measurements, rows of
//! (time, values). Decoded from the client RPC (`insertTablet` bytes, typed
//! record values), and serialized in IoTDB 1.2's `Tablet.serialize()`
//! layout, which is also what the change log stores and what a pipe ships
//! (`pipeTransfer` request type 3) without re-encoding.
//!
//! # The client RPC tablet (`TSInsertTabletReq`, big-endian)
//! `timestamps`: `size` × i64. `values`: column after column; BOOLEAN 1 byte,
//! INT32 4, INT64 8, FLOAT 4, DOUBLE 8, TEXT i32 length + bytes; null cells
//! keep their slot. Then, if bytes remain, per column a flag byte and, when
//! 1, `size/8 + 1` bytes of null bits, LSB first, 1 = null.
//!
//! # The 1.2 serialization (`Tablet.serialize()`, big-endian)
//! ```text
//! String deviceId (i32 len + UTF-8), i32 rowSize
//! u8 1, i32 nSchemas, nSchemas × (u8 1, String id, u8 type, u8 encoding, u8 compressor, i32 0)
//! u8 1, rowSize × i64 times
//! u8 1, nSchemas × (u8 present, [i32 bitmapSize, i32 byteLen, bytes])   null bits, LSB first
//! u8 1, nSchemas × (u8 1, rowSize values)   TEXT: per row u8 notNull, [i32 len + bytes]
//! u8 isAligned                               (appended by pipe request type 3)
//! ```

use crate::types::{DataType, Value};

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// BOOLEAN values.
    Boolean(Vec<bool>),
    /// INT32 values.
    Int32(Vec<i32>),
    /// INT64 values.
    Int64(Vec<i64>),
    /// FLOAT values.
    Float(Vec<f32>),
    /// DOUBLE values.
    Double(Vec<f64>),
    /// TEXT values.
    Text(Vec<Vec<u8>>),
}

impl Column {
    /// An empty column of type `t` with room for `n` rows.
    pub fn with_capacity(t: DataType, n: usize) -> Column {
        match t {
            DataType::Boolean => Column::Boolean(Vec::with_capacity(n)),
            DataType::Int32 => Column::Int32(Vec::with_capacity(n)),
            DataType::Int64 => Column::Int64(Vec::with_capacity(n)),
            DataType::Float => Column::Float(Vec::with_capacity(n)),
            DataType::Double => Column::Double(Vec::with_capacity(n)),
            DataType::Text => Column::Text(Vec::with_capacity(n)),
        }
    }

    /// The column's type.
    pub fn data_type(&self) -> DataType {
        match self {
            Column::Boolean(_) => DataType::Boolean,
            Column::Int32(_) => DataType::Int32,
            Column::Int64(_) => DataType::Int64,
            Column::Float(_) => DataType::Float,
            Column::Double(_) => DataType::Double,
            Column::Text(_) => DataType::Text,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Boolean(v) => v.len(),
            Column::Int32(v) => v.len(),
            Column::Int64(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Double(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row`.
    pub fn get(&self, row: usize) -> Value {
        match self {
            Column::Boolean(v) => Value::Boolean(v[row]),
            Column::Int32(v) => Value::Int32(v[row]),
            Column::Int64(v) => Value::Int64(v[row]),
            Column::Float(v) => Value::Float(v[row]),
            Column::Double(v) => Value::Double(v[row]),
            Column::Text(v) => Value::Text(v[row].clone()),
        }
    }

    /// The rows `idx` of this column, in that order.
    pub fn gather(&self, idx: &[usize]) -> Column {
        match self {
            Column::Boolean(v) => Column::Boolean(idx.iter().map(|&i| v[i]).collect()),
            Column::Int32(v) => Column::Int32(idx.iter().map(|&i| v[i]).collect()),
            Column::Int64(v) => Column::Int64(idx.iter().map(|&i| v[i]).collect()),
            Column::Float(v) => Column::Float(idx.iter().map(|&i| v[i]).collect()),
            Column::Double(v) => Column::Double(idx.iter().map(|&i| v[i]).collect()),
            Column::Text(v) => Column::Text(idx.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// Appends rows `rows` of `src`.
    ///
    /// # Panics
    /// If the types differ.
    pub fn extend_rows(&mut self, src: &Column, rows: impl Iterator<Item = usize>) {
        match (self, src) {
            (Column::Boolean(d), Column::Boolean(s)) => d.extend(rows.map(|i| s[i])),
            (Column::Int32(d), Column::Int32(s)) => d.extend(rows.map(|i| s[i])),
            (Column::Int64(d), Column::Int64(s)) => d.extend(rows.map(|i| s[i])),
            (Column::Float(d), Column::Float(s)) => d.extend(rows.map(|i| s[i])),
            (Column::Double(d), Column::Double(s)) => d.extend(rows.map(|i| s[i])),
            (Column::Text(d), Column::Text(s)) => d.extend(rows.map(|i| s[i].clone())),
            (d, s) => panic!("extend a {} column with {}", d.data_type(), s.data_type()),
        }
    }

    /// Appends all of `src` (whole slices: the fast path of a column
    /// without nulls).
    ///
    /// # Panics
    /// If the types differ.
    pub fn extend_from(&mut self, src: &Column) {
        match (self, src) {
            (Column::Boolean(d), Column::Boolean(s)) => d.extend_from_slice(s),
            (Column::Int32(d), Column::Int32(s)) => d.extend_from_slice(s),
            (Column::Int64(d), Column::Int64(s)) => d.extend_from_slice(s),
            (Column::Float(d), Column::Float(s)) => d.extend_from_slice(s),
            (Column::Double(d), Column::Double(s)) => d.extend_from_slice(s),
            (Column::Text(d), Column::Text(s)) => d.extend_from_slice(s),
            (d, s) => panic!("extend a {} column with {}", d.data_type(), s.data_type()),
        }
    }

    /// Shrinks the capacity to at least `n` rows (and the length).
    pub fn shrink_to(&mut self, n: usize) {
        match self {
            Column::Boolean(v) => v.shrink_to(n),
            Column::Int32(v) => v.shrink_to(n),
            Column::Int64(v) => v.shrink_to(n),
            Column::Float(v) => v.shrink_to(n),
            Column::Double(v) => v.shrink_to(n),
            Column::Text(v) => v.shrink_to(n),
        }
    }

    /// Removes every row, keeping the capacity.
    pub fn clear(&mut self) {
        match self {
            Column::Boolean(v) => v.clear(),
            Column::Int32(v) => v.clear(),
            Column::Int64(v) => v.clear(),
            Column::Float(v) => v.clear(),
            Column::Double(v) => v.clear(),
            Column::Text(v) => v.clear(),
        }
    }

    /// Appends a value of the column's type.
    ///
    /// # Panics
    /// If the value's type differs.
    pub fn push(&mut self, v: Value) {
        match (self, v) {
            (Column::Boolean(c), Value::Boolean(x)) => c.push(x),
            (Column::Int32(c), Value::Int32(x)) => c.push(x),
            (Column::Int64(c), Value::Int64(x)) => c.push(x),
            (Column::Float(c), Value::Float(x)) => c.push(x),
            (Column::Double(c), Value::Double(x)) => c.push(x),
            (Column::Text(c), Value::Text(x)) => c.push(x),
            (c, v) => panic!("push {} into a {} column", v.data_type(), c.data_type()),
        }
    }
}

/// A tablet: rows of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Tablet {
    /// The device path, e.g. `root.vehicle.d0`.
    pub device: String,
    /// Measurement names, one per column.
    pub measurements: Vec<String>,
    /// The columns, each `times.len()` rows.
    pub columns: Vec<Column>,
    /// Per column, which rows are null (`None`: none are).
    pub nulls: Vec<Option<Vec<bool>>>,
    /// Row timestamps.
    pub times: Vec<i64>,
    /// Whether the device is aligned.
    pub aligned: bool,
}

/// A bounds-checked big-endian reader.
struct Buf<'a> {
    b: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Buf<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Buf { b, at: 0, what }
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "{}: ends at byte {} where {n} more bytes are needed",
                self.what,
                self.b.len()
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.i32()?;
        if n < 0 || n as usize > self.left() {
            return Err(format!(
                "{}: {what} {n} does not fit the {} bytes left",
                self.what,
                self.left()
            ));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        Ok(self.slice()?.to_vec())
    }
    /// A length-prefixed byte string, borrowed.
    fn slice(&mut self) -> Result<&'a [u8], String> {
        let n = self.len("length")?;
        self.take(n)
    }
    /// A length-prefixed UTF-8 string, borrowed.
    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.slice()?)
            .map_err(|_| format!("{}: a string is not UTF-8", self.what))
    }
    /// The bytes of `n` values of the fixed-width type `t` (TEXT: `n`
    /// length prefixes at least), checked before anything is taken.
    fn fixed(&mut self, t: DataType, n: usize) -> Result<&'a [u8], String> {
        let width = match t {
            DataType::Boolean => 1,
            DataType::Int32 | DataType::Float => 4,
            DataType::Int64 | DataType::Double => 8,
            DataType::Text => 4,
        };
        if n.saturating_mul(width) > self.left() {
            return Err(format!(
                "{}: {n} rows of {t} do not fit the {} bytes left",
                self.what,
                self.left()
            ));
        }
        if t == DataType::Text {
            return Ok(&[]);
        }
        self.take(n * width)
    }
    fn value(&mut self, t: DataType) -> Result<Value, String> {
        Ok(match t {
            DataType::Boolean => Value::Boolean(self.u8()? != 0),
            DataType::Int32 => Value::Int32(self.i32()?),
            DataType::Int64 => Value::Int64(self.i64()?),
            DataType::Float => Value::Float(f32::from_bits(self.i32()? as u32)),
            DataType::Double => Value::Double(f64::from_bits(self.i64()? as u64)),
            DataType::Text => Value::Text(self.bytes()?),
        })
    }
    fn column(&mut self, t: DataType, n: usize) -> Result<Column, String> {
        // Fixed-width columns are checked up front so that a huge row count
        // fails before allocating.
        let raw = self.fixed(t, n)?;
        Ok(match t {
            DataType::Text => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bytes()?);
                }
                Column::Text(v)
            }
            t => {
                let mut c = Column::with_capacity(t, n);
                append_fixed(&mut c, raw);
                c
            }
        })
    }
    fn done(&self) -> Result<(), String> {
        if self.left() != 0 {
            return Err(format!(
                "{}: {} unexpected bytes after the end",
                self.what,
                self.left()
            ));
        }
        Ok(())
    }
}

fn types_of(ids: &[i32]) -> Result<Vec<DataType>, String> {
    ids.iter().map(|&t| DataType::from_id(t)).collect()
}

/// LSB-first null bits of `n` rows from `bytes`.
fn bits_lsb(bytes: &[u8], n: usize) -> Vec<bool> {
    (0..n).map(|r| bytes[r / 8] & (1 << (r % 8)) != 0).collect()
}

/// How many of the first `n` bits of an LSB-first bitmap are set.
fn bits_lsb_count(bytes: &[u8], n: usize) -> u64 {
    let whole = (n / 8).min(bytes.len());
    // Eight bytes at a time: a bitmap of 1,000 rows is 16 word counts.
    let words = bytes[..whole].chunks_exact(8);
    let tail = words.remainder();
    let mut set: u64 = words
        .map(|w| u64::from(u64::from_le_bytes(w.try_into().expect("8 bytes")).count_ones()))
        .sum::<u64>()
        + tail.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
    if !n.is_multiple_of(8) {
        if let Some(last) = bytes.get(whole) {
            set += u64::from((last & ((1u8 << (n % 8)) - 1)).count_ones());
        }
    }
    set
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Appends the big-endian values `raw` (whole values of the column's
/// fixed-width type) to `c`. A TEXT column is left alone.
fn append_fixed(c: &mut Column, raw: &[u8]) {
    match c {
        Column::Boolean(v) => v.extend(raw.iter().map(|&b| b != 0)),
        Column::Int32(v) => v.extend(
            raw.chunks_exact(4)
                .map(|c| i32::from_be_bytes(c.try_into().expect("4"))),
        ),
        Column::Int64(v) => v.extend(
            raw.chunks_exact(8)
                .map(|c| i64::from_be_bytes(c.try_into().expect("8"))),
        ),
        Column::Float(v) => v.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_bits(u32::from_be_bytes(c.try_into().expect("4")))),
        ),
        Column::Double(v) => v.extend(
            raw.chunks_exact(8)
                .map(|c| f64::from_bits(u64::from_be_bytes(c.try_into().expect("8")))),
        ),
        Column::Text(_) => {}
    }
}

/// Appends the rows of `raw` (big-endian values of the column's
/// fixed-width type) for which `keep` holds to `c`.
fn append_fixed_rows(c: &mut Column, raw: &[u8], keep: impl Fn(usize) -> bool) {
    fn be<const W: usize>(raw: &[u8], r: usize) -> [u8; W] {
        raw[r * W..r * W + W].try_into().expect("width")
    }
    let rows = |w: usize| (0..raw.len() / w).filter(|&r| keep(r));
    match c {
        Column::Boolean(v) => v.extend(rows(1).map(|r| raw[r] != 0)),
        Column::Int32(v) => v.extend(rows(4).map(|r| i32::from_be_bytes(be(raw, r)))),
        Column::Int64(v) => v.extend(rows(8).map(|r| i64::from_be_bytes(be(raw, r)))),
        Column::Float(v) => {
            v.extend(rows(4).map(|r| f32::from_bits(u32::from_be_bytes(be(raw, r)))))
        }
        Column::Double(v) => {
            v.extend(rows(8).map(|r| f64::from_bits(u64::from_be_bytes(be(raw, r)))))
        }
        Column::Text(_) => {}
    }
}

/// The cells of a TEXT column as sent (per row a notNull byte and, when 1,
/// an i32 length and the bytes; already checked): `None` for a null cell.
fn text_cells(raw: &[u8], n: usize) -> impl Iterator<Item = Option<&[u8]>> {
    let mut b = Buf::new(raw, "TEXT cells");
    (0..n).map_while(move |_| match b.u8() {
        Ok(1) => b.slice().ok().map(Some),
        Ok(_) => Some(None),
        Err(_) => None,
    })
}

/// Whether bit `r` of an LSB-first null bitmap is set.
fn bit(bitmap: &[u8], r: usize) -> bool {
    bitmap.get(r / 8).is_some_and(|b| b & (1 << (r % 8)) != 0)
}

/// What the store reads of a tablet to check and apply it: an owned
/// [`Tablet`] or a [`TabletView`] over its serialized bytes.
pub trait TabletData {
    /// The device path.
    fn device(&self) -> &str;
    /// Whether the device is aligned.
    fn aligned(&self) -> bool;
    /// The number of value columns.
    fn width(&self) -> usize;
    /// The measurement of column `c`.
    fn measurement(&self, c: usize) -> &str;
    /// The type of column `c`.
    fn data_type(&self, c: usize) -> DataType;
    /// The number of rows.
    fn rows(&self) -> usize;
    /// Appends the non-null cells of column `c` to `values` (a column of
    /// its type; one of another type is left alone) and their rows' times
    /// to `times`; returns how many.
    fn append_column(&self, c: usize, times: &mut Vec<i64>, values: &mut Column) -> usize;
}

impl TabletData for Tablet {
    fn device(&self) -> &str {
        &self.device
    }
    fn aligned(&self) -> bool {
        self.aligned
    }
    fn width(&self) -> usize {
        self.columns.len()
    }
    fn measurement(&self, c: usize) -> &str {
        &self.measurements[c]
    }
    fn data_type(&self, c: usize) -> DataType {
        self.columns[c].data_type()
    }
    fn rows(&self) -> usize {
        self.times.len()
    }
    fn append_column(&self, c: usize, times: &mut Vec<i64>, values: &mut Column) -> usize {
        let col = &self.columns[c];
        if values.data_type() != col.data_type() {
            return 0;
        }
        match &self.nulls[c] {
            // No nulls: whole slices.
            None => {
                times.extend_from_slice(&self.times);
                values.extend_from(col);
                self.times.len()
            }
            Some(nulls) => {
                let before = times.len();
                let rows = || (0..self.times.len()).filter(|&r| !nulls[r]);
                times.extend(rows().map(|r| self.times[r]));
                values.extend_rows(col, rows());
                times.len() - before
            }
        }
    }
}

/// One value column of a [`TabletView`]: borrowed from the serialized
/// tablet, checked, not converted.
#[derive(Debug, Clone, Copy)]
pub struct ColumnView<'a> {
    /// The measurement.
    pub measurement: &'a str,
    /// The values' type.
    pub data_type: DataType,
    /// The values as sent: `rows` big-endian values; TEXT: per row a
    /// notNull byte and, when 1, an i32 length and the bytes.
    values: &'a [u8],
    /// The null bitmap (LSB first, a set bit is null), when it marks any
    /// of the rows.
    nulls: Option<&'a [u8]>,
    /// Whether the values were sent (an absent column is dropped).
    present: bool,
}

/// A serialized tablet ([`Tablet::serialize_v12`]'s layout, as a 1.2
/// sender writes it) read in place: checked as [`Tablet::deserialize_v12`]
/// checks it, nothing copied or allocated for it (its columns live in the
/// [`TabletViews`] that read it). The cloud's receiving path applies a
/// request's tablets from these: building an owned tablet (device,
/// measurement names, columns, times) per 10-row tablet cost a fifth of
/// its CPU in allocating and freeing them.
#[derive(Debug, Clone, Copy)]
pub struct TabletView<'a> {
    /// The device path as sent.
    pub device: &'a str,
    /// Whether the device is aligned.
    pub aligned: bool,
    /// The value columns that were sent (absent ones left out, as
    /// [`Tablet::deserialize_v12`] leaves them out).
    pub columns: &'a [ColumnView<'a>],
    rows: usize,
    /// `rows` big-endian i64s.
    times: &'a [u8],
    /// The whole serialized tablet, aligned byte included.
    bytes: &'a [u8],
}

impl<'a> TabletView<'a> {
    /// The serialized tablet this was read from (aligned byte included):
    /// what the change log stores.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The row timestamps.
    pub fn times(&self) -> impl ExactSizeIterator<Item = i64> + 'a {
        self.times
            .chunks_exact(8)
            .map(|c| i64::from_be_bytes(c.try_into().expect("8")))
    }

    /// The owned tablet: what [`Tablet::deserialize_v12`] gives for the
    /// same bytes.
    pub fn to_tablet(&self) -> Tablet {
        let n = self.rows;
        let mut measurements = Vec::with_capacity(self.columns.len());
        let mut columns = Vec::with_capacity(self.columns.len());
        let mut nulls = Vec::with_capacity(self.columns.len());
        for c in self.columns {
            measurements.push(c.measurement.to_string());
            let mut null = c.nulls.map(|b| bits_lsb(b, n));
            columns.push(if c.data_type == DataType::Text {
                let mut v = Vec::with_capacity(n);
                for (r, cell) in text_cells(c.values, n).enumerate() {
                    match cell {
                        Some(s) => v.push(s.to_vec()),
                        None => {
                            v.push(Vec::new());
                            null.get_or_insert_with(|| vec![false; n])[r] = true;
                        }
                    }
                }
                Column::Text(v)
            } else {
                let mut col = Column::with_capacity(c.data_type, n);
                append_fixed(&mut col, c.values);
                col
            });
            nulls.push(null);
        }
        Tablet {
            device: self.device.to_string(),
            measurements,
            columns,
            nulls,
            times: self.times().collect(),
            aligned: self.aligned,
        }
    }
}

impl TabletData for TabletView<'_> {
    fn device(&self) -> &str {
        self.device
    }
    fn aligned(&self) -> bool {
        self.aligned
    }
    fn width(&self) -> usize {
        self.columns.len()
    }
    fn measurement(&self, c: usize) -> &str {
        self.columns[c].measurement
    }
    fn data_type(&self, c: usize) -> DataType {
        self.columns[c].data_type
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn append_column(&self, c: usize, times: &mut Vec<i64>, values: &mut Column) -> usize {
        let col = &self.columns[c];
        if values.data_type() != col.data_type {
            return 0;
        }
        let before = times.len();
        match (values, col.nulls) {
            (Column::Text(v), nulls) => {
                let null = |r: usize| nulls.is_some_and(|b| bit(b, r));
                for ((r, cell), t) in text_cells(col.values, self.rows)
                    .enumerate()
                    .zip(self.times())
                {
                    if let Some(s) = cell.filter(|_| !null(r)) {
                        v.push(s.to_vec());
                        times.push(t);
                    }
                }
            }
            // No nulls: every row.
            (values, None) => {
                times.extend(self.times());
                append_fixed(values, col.values);
            }
            (values, Some(bitmap)) => {
                times.extend(
                    self.times()
                        .enumerate()
                        .filter(|&(r, _)| !bit(bitmap, r))
                        .map(|(_, t)| t),
                );
                append_fixed_rows(values, col.values, |r| !bit(bitmap, r));
            }
        }
        times.len() - before
    }
}

/// One tablet read by [`TabletViews`]: its columns are a range of the
/// shared list.
#[derive(Debug, Clone)]
struct Head<'a> {
    device: &'a str,
    aligned: bool,
    rows: usize,
    times: &'a [u8],
    bytes: &'a [u8],
    columns: std::ops::Range<usize>,
}

/// Serialized tablets read in place ([`TabletView`]s), their columns kept
/// in one list: reading a request's tablets allocates two growing lists,
/// not a tablet's worth of vectors and strings per tablet.
#[derive(Debug, Default)]
pub struct TabletViews<'a> {
    heads: Vec<Head<'a>>,
    columns: Vec<ColumnView<'a>>,
}

impl<'a> TabletViews<'a> {
    /// Room for `tablets` tablets of one column (more grow the lists).
    pub fn with_capacity(tablets: usize) -> Self {
        TabletViews {
            heads: Vec::with_capacity(tablets),
            columns: Vec::with_capacity(tablets),
        }
    }

    /// Reads a serialized tablet that must end with its aligned byte from
    /// the start of `bytes` (tablets in a batch body carry no length), as
    /// [`Tablet::deserialize_v12_prefix`] does, and returns the bytes it
    /// took. A tablet that does not decode adds nothing.
    ///
    /// # Errors
    /// A message naming the part that does not decode (the same as
    /// [`Tablet::deserialize_v12_prefix`]'s).
    pub fn read_v12_prefix(&mut self, bytes: &'a [u8]) -> Result<usize, String> {
        let mut b = Buf::new(bytes, "serialized tablet");
        let start = self.columns.len();
        let read = read_view(&mut b, &mut self.columns).and_then(|mut head| {
            head.aligned = b.u8()? != 0;
            head.bytes = &bytes[..b.at];
            Ok(head)
        });
        match read {
            Ok(head) => {
                self.heads.push(head);
                Ok(b.at)
            }
            Err(e) => {
                self.columns.truncate(start);
                Err(e)
            }
        }
    }

    /// The number of tablets.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The tablets, in the order they were read.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = TabletView<'_>> + '_ {
        self.heads.iter().map(|h| h.view(&self.columns))
    }
}

impl<'a> Head<'a> {
    fn view<'s>(&'s self, columns: &'s [ColumnView<'a>]) -> TabletView<'s> {
        TabletView {
            device: self.device,
            aligned: self.aligned,
            columns: &columns[self.columns.clone()],
            rows: self.rows,
            times: self.times,
            bytes: self.bytes,
        }
    }
}

/// Reads a serialized tablet up to its aligned byte, its columns pushed on
/// `columns` (on an error, some may have been pushed). Every count is
/// checked against the bytes that remain before anything is allocated
/// for it, so what a body costs in memory is a small multiple of its
/// length: timestamps must be present for a tablet with rows (8 bytes a
/// row), and a value column sent as absent (one byte, `0`) holds no
/// points, so it is left out of the tablet rather than filled with a
/// placeholder per row. (IoTDB 1.2 reads such a column as a null array
/// and cannot insert it either; here its series is simply not written.)
fn read_view<'a>(b: &mut Buf<'a>, columns: &mut Vec<ColumnView<'a>>) -> Result<Head<'a>, String> {
    let start = columns.len();
    let device = b.str()?;
    let rows = b.i32()?;
    if rows < 0 || rows as usize > b.left() {
        return Err(format!(
            "serialized tablet: row count {rows} does not fit the {} bytes left",
            b.left()
        ));
    }
    let n = rows as usize;
    if b.u8()? == 1 {
        let count = b.len("schema count")?;
        for _ in 0..count {
            if b.u8()? == 0 {
                continue;
            }
            let id = b.str()?;
            let t = DataType::from_id(i32::from(b.u8()?))
                .map_err(|e| format!("measurement {id}: {e}"))?;
            b.take(2)?; // encoding, compressor
            let props = b.len("property count")?;
            for _ in 0..props {
                b.slice()?;
                b.slice()?;
            }
            columns.push(ColumnView {
                measurement: id,
                data_type: t,
                values: &[],
                nulls: None,
                present: true,
            });
        }
    }
    let times: &'a [u8] = if b.u8()? == 1 {
        if n.saturating_mul(8) > b.left() {
            return Err(format!(
                "serialized tablet: {n} timestamps do not fit the {} bytes left",
                b.left()
            ));
        }
        b.take(n * 8)?
    } else if n == 0 {
        &[]
    } else {
        return Err(format!("serialized tablet: {n} rows but no timestamps"));
    };
    let mut head = Head {
        device,
        aligned: false,
        rows: n,
        times,
        bytes: &[],
        columns: start..start,
    };
    if b.u8()? == 1 {
        for c in columns[start..].iter_mut() {
            if b.u8()? == 1 {
                let _capacity = b.i32()?;
                let bytes = b.slice()?;
                if bytes.len() * 8 < n {
                    return Err(format!(
                        "serialized tablet: bitmap of {} bytes for {n} rows",
                        bytes.len()
                    ));
                }
                if bits_lsb_count(bytes, n) > 0 {
                    c.nulls = Some(bytes);
                }
            }
        }
    }
    if b.u8()? != 1 {
        if columns.len() == start {
            return Ok(head);
        }
        return Err("serialized tablet: values section missing".into());
    }
    for c in columns[start..].iter_mut() {
        if b.u8()? == 0 {
            c.present = false;
            continue;
        }
        if c.data_type == DataType::Text {
            // At least one byte (notNull) per row.
            if n > b.left() {
                return Err(format!(
                    "serialized tablet: {n} TEXT cells do not fit the {} bytes left",
                    b.left()
                ));
            }
            let from = b.at;
            for _ in 0..n {
                if b.u8()? == 1 {
                    b.slice()?;
                }
            }
            c.values = &b.b[from..b.at];
        } else {
            c.values = b.fixed(c.data_type, n)?;
        }
    }
    // Absent columns hold no points: left out.
    let mut kept = start;
    for i in start..columns.len() {
        if columns[i].present {
            columns.swap(kept, i);
            kept += 1;
        }
    }
    columns.truncate(kept);
    head.columns = start..kept;
    Ok(head)
}

impl Tablet {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.times.len()
    }

    /// Whether `row` of column `col` is null.
    pub fn is_null(&self, col: usize, row: usize) -> bool {
        self.nulls[col].as_ref().is_some_and(|n| n[row])
    }

    /// The number of non-null cells: IoTDB's "points".
    pub fn points(&self) -> usize {
        (0..self.columns.len())
            .map(|c| match &self.nulls[c] {
                None => self.rows(),
                Some(n) => n.iter().filter(|&&x| !x).count(),
            })
            .sum()
    }

    /// The big-endian value bytes of the client RPC layout: the columns one
    /// after another (TEXT as i32 length + bytes), then, when any column has
    /// nulls, per column a flag and its null bitmap (`rows/8 + 1` bytes, LSB
    /// first, a set bit is null).
    pub fn rpc_values(&self) -> Vec<u8> {
        let n = self.rows();
        let mut values = Vec::with_capacity(n * 8 * self.columns.len());
        for c in &self.columns {
            match c {
                Column::Boolean(v) => values.extend(v.iter().map(|&b| u8::from(b))),
                Column::Int32(v) => v
                    .iter()
                    .for_each(|x| values.extend_from_slice(&x.to_be_bytes())),
                Column::Int64(v) => v
                    .iter()
                    .for_each(|x| values.extend_from_slice(&x.to_be_bytes())),
                Column::Float(v) => v
                    .iter()
                    .for_each(|x| values.extend_from_slice(&x.to_bits().to_be_bytes())),
                Column::Double(v) => v
                    .iter()
                    .for_each(|x| values.extend_from_slice(&x.to_bits().to_be_bytes())),
                Column::Text(v) => v.iter().for_each(|s| {
                    values.extend_from_slice(&(s.len() as i32).to_be_bytes());
                    values.extend_from_slice(s);
                }),
            }
        }
        if self.nulls.iter().any(Option::is_some) {
            for nl in &self.nulls {
                match nl {
                    None => values.push(0),
                    Some(bits) => {
                        values.push(1);
                        let mut bytes = vec![0u8; n / 8 + 1];
                        for (r, &b) in bits.iter().enumerate() {
                            if b {
                                bytes[r / 8] |= 1 << (r % 8);
                            }
                        }
                        values.extend_from_slice(&bytes);
                    }
                }
            }
        }
        values
    }

    /// Decodes the byte fields of a `TSInsertTabletReq`.
    ///
    /// # Errors
    /// A message naming what does not fit: counts that disagree, unknown or
    /// unsupported types, short or over-long buffers.
    pub fn from_rpc(
        device: String,
        measurements: Vec<String>,
        type_ids: &[i32],
        values: &[u8],
        timestamps: &[u8],
        size: i32,
        aligned: bool,
    ) -> Result<Tablet, String> {
        if measurements.len() != type_ids.len() {
            return Err(format!(
                "{} measurements but {} types",
                measurements.len(),
                type_ids.len()
            ));
        }
        let types = types_of(type_ids)?;
        if size < 0 || timestamps.len() != size as usize * 8 {
            return Err(format!(
                "size {size} but {} bytes of timestamps",
                timestamps.len()
            ));
        }
        let n = size as usize;
        let times: Vec<i64> = timestamps
            .chunks_exact(8)
            .map(|c| i64::from_be_bytes(c.try_into().expect("8")))
            .collect();
        let mut b = Buf::new(values, "tablet values");
        let mut columns = Vec::with_capacity(types.len());
        for &t in &types {
            columns.push(b.column(t, n)?);
        }
        let mut nulls = vec![None; types.len()];
        if b.left() > 0 {
            for slot in nulls.iter_mut() {
                if b.u8()? == 1 {
                    let bytes = b.take(n / 8 + 1)?;
                    let bits = bits_lsb(bytes, n);
                    if bits.iter().any(|&x| x) {
                        *slot = Some(bits);
                    }
                }
            }
        }
        b.done()?;
        Ok(Tablet {
            device,
            measurements,
            columns,
            nulls,
            times,
            aligned,
        })
    }

    /// Decodes one record (`TSInsertRecordReq.values`: per measurement a
    /// type byte and the value) into a one-row tablet.
    ///
    /// # Errors
    /// Unknown types, count mismatches, short or over-long buffers.
    pub fn from_record(
        device: String,
        measurements: Vec<String>,
        values: &[u8],
        time: i64,
        aligned: bool,
    ) -> Result<Tablet, String> {
        let mut b = Buf::new(values, "record values");
        let mut columns = Vec::with_capacity(measurements.len());
        for m in &measurements {
            let t = DataType::from_id(i32::from(b.u8()?))
                .map_err(|e| format!("measurement {m}: {e}"))?;
            let mut c = Column::with_capacity(t, 1);
            c.push(b.value(t)?);
            columns.push(c);
        }
        b.done()?;
        Ok(Tablet {
            device,
            nulls: vec![None; measurements.len()],
            measurements,
            columns,
            times: vec![time],
            aligned,
        })
    }

    /// Serializes in IoTDB 1.2's `Tablet.serialize()` layout followed by
    /// the aligned byte (the body of `pipeTransfer` request type 3).
    pub fn serialize_v12(&self) -> Vec<u8> {
        let n = self.rows();
        let mut out = Vec::with_capacity(64 + n * 8 * (1 + self.columns.len()));
        put_str(&mut out, self.device.as_bytes());
        out.extend_from_slice(&(n as i32).to_be_bytes());
        out.push(1);
        out.extend_from_slice(&(self.columns.len() as i32).to_be_bytes());
        for (m, c) in self.measurements.iter().zip(&self.columns) {
            out.push(1);
            put_str(&mut out, m.as_bytes());
            let t = c.data_type();
            out.extend_from_slice(&[t as u8, t.default_encoding(), 0]);
            out.extend_from_slice(&0i32.to_be_bytes());
        }
        out.push(1);
        for t in &self.times {
            out.extend_from_slice(&t.to_be_bytes());
        }
        out.push(1);
        for nulls in &self.nulls {
            match nulls {
                None => out.push(0),
                Some(bits) => {
                    out.push(1);
                    let len = n / 8 + 1;
                    out.extend_from_slice(&(n as i32).to_be_bytes());
                    out.extend_from_slice(&(len as i32).to_be_bytes());
                    let mut bytes = vec![0u8; len];
                    for (r, &null) in bits.iter().enumerate() {
                        if null {
                            bytes[r / 8] |= 1 << (r % 8);
                        }
                    }
                    out.extend_from_slice(&bytes);
                }
            }
        }
        out.push(1);
        for c in &self.columns {
            out.push(1);
            match c {
                Column::Boolean(v) => out.extend(v.iter().map(|&b| u8::from(b))),
                Column::Int32(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
                Column::Int64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
                Column::Float(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_bits().to_be_bytes())),
                Column::Double(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_bits().to_be_bytes())),
                Column::Text(v) => {
                    for s in v {
                        out.push(1);
                        put_str(&mut out, s);
                    }
                }
            }
        }
        out.push(u8::from(self.aligned));
        out
    }

    /// The points (non-null cells) of a serialized tablet
    /// ([`Tablet::serialize_v12`]'s layout), read from its header and null
    /// bitmaps only: rows times columns, less the cells its bitmaps mark
    /// null. Exact for every tablet [`Tablet::serialize_v12`] writes; for a
    /// body from another sender, a column sent absent or a TEXT cell sent
    /// `notNull = 0` (which carry no point) are counted too. Costs a walk of
    /// the schema and a bit count of the bitmaps, not a decode: for
    /// counting what a pipe ships.
    ///
    /// # Errors
    /// A message naming the part that does not decode.
    pub fn points_v12(bytes: &[u8]) -> Result<u64, String> {
        let mut b = Buf::new(bytes, "serialized tablet");
        b.slice()?; // device
        let rows = b.i32()?;
        if rows < 0 {
            return Err(format!("serialized tablet: row count {rows}"));
        }
        let n = rows as usize;
        let mut columns = 0u64;
        if b.u8()? == 1 {
            let count = b.len("schema count")?;
            for _ in 0..count {
                if b.u8()? == 0 {
                    continue;
                }
                b.slice()?; // measurement
                b.take(3)?; // type, encoding, compressor
                let props = b.len("property count")?;
                for _ in 0..props {
                    b.slice()?;
                    b.slice()?;
                }
                columns += 1;
            }
        }
        if b.u8()? == 1 {
            b.take(n.saturating_mul(8))?;
        }
        let mut nulls = 0u64;
        if b.u8()? == 1 {
            for _ in 0..columns {
                if b.u8()? == 1 {
                    b.i32()?; // capacity
                    let bitmap = b.slice()?;
                    nulls += bits_lsb_count(bitmap, n);
                }
            }
        }
        Ok((n as u64 * columns).saturating_sub(nulls))
    }

    /// Decodes a serialized tablet that must end with its aligned byte,
    /// returning the tablet and the bytes it took (tablets in a batch body
    /// carry no length).
    ///
    /// # Errors
    /// A message naming the part that does not decode.
    pub fn deserialize_v12_prefix(bytes: &[u8]) -> Result<(Tablet, usize), String> {
        let mut b = Buf::new(bytes, "serialized tablet");
        let mut t = Self::read_v12(&mut b)?;
        t.aligned = b.u8()? != 0;
        Ok((t, b.at))
    }

    /// Decodes [`Tablet::serialize_v12`]'s layout as a real 1.2 sender
    /// writes it: absent schemas, value columns and bitmaps are allowed, a
    /// TEXT cell written `notNull = 0` is null, and the trailing aligned
    /// byte is optional (false when absent).
    ///
    /// # Errors
    /// A message naming the part that does not decode.
    pub fn deserialize_v12(bytes: &[u8]) -> Result<Tablet, String> {
        Self::deserialize_v12_body(bytes).map(|(t, _)| t)
    }

    /// [`Tablet::deserialize_v12`], also telling whether the trailing
    /// aligned byte was there (a body with it can be logged as received; one
    /// without it is not in the change log's form). The body is read once.
    ///
    /// # Errors
    /// A message naming the part that does not decode.
    pub fn deserialize_v12_body(bytes: &[u8]) -> Result<(Tablet, bool), String> {
        let mut b = Buf::new(bytes, "serialized tablet");
        let mut t = Self::read_v12(&mut b)?;
        let had_aligned_byte = b.left() > 0;
        if had_aligned_byte {
            t.aligned = b.u8()? != 0;
        }
        b.done()?;
        Ok((t, had_aligned_byte))
    }

    /// Reads everything up to the aligned byte (see [`read_view`]) into an
    /// owned tablet.
    fn read_v12(b: &mut Buf<'_>) -> Result<Tablet, String> {
        let mut columns = Vec::new();
        let head = read_view(b, &mut columns)?;
        Ok(head.view(&columns).to_tablet())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::hex;

    /// What the store appends for column `c` of `t`.
    /// (Values as bits: a NaN equals itself.)
    fn cells(t: &impl TabletData, c: usize) -> (Vec<i64>, Vec<Vec<u8>>, usize) {
        let mut times = Vec::new();
        let mut values = Column::with_capacity(t.data_type(c), 0);
        let n = t.append_column(c, &mut times, &mut values);
        let bits = (0..values.len())
            .map(|r| match values.get(r) {
                Value::Float(f) => f.to_bits().to_be_bytes().to_vec(),
                Value::Double(d) => d.to_bits().to_be_bytes().to_vec(),
                v => format!("{v:?}").into_bytes(),
            })
            .collect();
        (times, bits, n)
    }

    /// Tablets of every type, with nulls in bitmaps (across byte
    /// boundaries) and none, and a body from another sender: a TEXT cell
    /// sent `notNull = 0` and a column sent absent.
    fn view_samples() -> Vec<Vec<u8>> {
        let rows = 19;
        let nulls = |k: usize| {
            Some(
                (0..rows)
                    .map(|r| (r + k).is_multiple_of(3))
                    .collect::<Vec<bool>>(),
            )
        };
        let t = Tablet {
            device: "root.sg.d1".into(),
            measurements: ["b", "i", "l", "f", "d", "t", "d2"]
                .map(String::from)
                .to_vec(),
            columns: vec![
                Column::Boolean((0..rows).map(|r| r % 2 == 0).collect()),
                Column::Int32((0..rows as i32).map(|r| r * -7).collect()),
                Column::Int64((0..rows as i64).map(|r| r << 40).collect()),
                Column::Float((0..rows).map(|r| r as f32 / 3.0).collect()),
                Column::Double((0..rows).map(|r| r as f64 * 1.5e300).collect()),
                Column::Text((0..rows).map(|r| vec![b'x'; r]).collect()),
                Column::Double((0..rows).map(|r| -(r as f64)).collect()),
            ],
            nulls: vec![nulls(0), None, nulls(1), None, nulls(2), nulls(1), None],
            times: (0..rows as i64).map(|r| 1000 - r * r).collect(),
            aligned: true,
        };
        let mut other = Vec::new();
        let put = |b: &mut Vec<u8>, s: &[u8]| {
            b.extend_from_slice(&(s.len() as i32).to_be_bytes());
            b.extend_from_slice(s);
        };
        put(&mut other, b"root.sg.d2");
        other.extend_from_slice(&3i32.to_be_bytes());
        other.push(1);
        other.extend_from_slice(&3i32.to_be_bytes());
        for (m, ty) in [(&b"gone"[..], 2u8), (b"t", 5), (b"v", 4)] {
            other.push(1);
            put(&mut other, m);
            other.extend_from_slice(&[ty, 0, 0, 0, 0, 0, 0]);
        }
        other.push(1);
        for r in 0..3i64 {
            other.extend_from_slice(&(r * 10).to_be_bytes());
        }
        other.push(0); // no bitmaps
        other.push(1);
        other.push(0); // "gone" absent
        other.push(1); // t: "a", null, "ccc"
        other.push(1);
        put(&mut other, b"a");
        other.push(0);
        other.push(1);
        put(&mut other, b"ccc");
        other.push(1); // v
        for r in 0..3 {
            other.extend_from_slice(&(r as f64).to_bits().to_be_bytes());
        }
        other.push(0); // aligned
        vec![
            t.serialize_v12(),
            Tablet {
                nulls: vec![None; 7],
                ..t.clone()
            }
            .serialize_v12(),
            other,
        ]
    }

    /// A tablet read in place holds what the owned decoder reads, and the
    /// store appends the same cells from either; the same holds for every
    /// damaged copy that still decodes, and one that does not is refused
    /// with the decoder's message and adds nothing.
    #[test]
    fn views_read_and_append_what_the_owned_decoder_does() {
        let check = |bytes: &[u8]| {
            let mut views = TabletViews::default();
            let read = views.read_v12_prefix(bytes);
            let owned = Tablet::deserialize_v12_prefix(bytes);
            match (read, owned) {
                (Ok(n), Ok((t, m))) => {
                    assert_eq!(n, m);
                    let v = views.iter().next().unwrap();
                    assert_eq!(v.to_tablet().serialize_v12(), t.serialize_v12());
                    assert_eq!(v.bytes(), &bytes[..n]);
                    assert_eq!(
                        (v.device(), v.aligned(), v.width(), v.rows()),
                        (t.device(), t.aligned(), t.width(), t.rows())
                    );
                    for c in 0..t.width() {
                        assert_eq!(v.measurement(c), t.measurement(c));
                        assert_eq!(v.data_type(c), t.data_type(c));
                        assert_eq!(cells(&v, c), cells(&t, c), "column {c}");
                    }
                    true
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a, b);
                    assert!(views.is_empty() && views.columns.is_empty());
                    false
                }
                (a, b) => panic!("views {a:?}, decoder {:?}", b.map(|x| x.1)),
            }
        };
        let samples = view_samples();
        let other = Tablet::deserialize_v12(&samples[2]).unwrap();
        assert_eq!(other.measurements, ["t", "v"]);
        assert_eq!(
            cells(&other, 0).2,
            2,
            "the TEXT cell sent notNull = 0 is null"
        );
        let mut decoded = 0;
        for s in &samples {
            assert!(check(s));
            let (_, _, nulls) = cells(&Tablet::deserialize_v12(s).unwrap(), 0);
            assert!(nulls > 0);
            for at in 0..s.len() {
                assert!(!check(&s[..at]) || at == s.len(), "cut {at}");
                for x in [0u8, 1, 0x80, 0xff] {
                    let mut m = s.clone();
                    m[at] ^= x;
                    decoded += usize::from(check(&m));
                }
            }
        }
        assert!(decoded > 1000, "{decoded} damaged copies decoded");
        // Many tablets share one column list; each sees its own.
        let mut views = TabletViews::with_capacity(1);
        let mut at = 0;
        let body: Vec<u8> = samples.concat();
        while at < body.len() {
            at += views.read_v12_prefix(&body[at..]).unwrap();
        }
        assert!(views.read_v12_prefix(&[0, 0]).is_err());
        let widths: Vec<usize> = views.iter().map(|v| v.columns.len()).collect();
        assert_eq!(widths, [7, 7, 2]);
        let back: Vec<Vec<u8>> = views
            .iter()
            .map(|v| v.to_tablet().serialize_v12())
            .collect();
        let want: Vec<Vec<u8>> = samples
            .iter()
            .map(|s| Tablet::deserialize_v12(s).unwrap().serialize_v12())
            .collect();
        assert_eq!(back, want);
    }

    /// The client RPC layout written by `rpc_values` reads back through
    /// `from_rpc`, nulls included.
    #[test]
    fn rpc_values_read_back_through_from_rpc() {
        let t = Tablet {
            device: "root.sg.d".into(),
            measurements: vec!["b".into(), "i".into(), "t".into(), "f".into()],
            columns: vec![
                Column::Boolean(vec![true, false, true]),
                Column::Int64(vec![1, -2, 3]),
                Column::Text(vec![b"x".to_vec(), Vec::new(), b"zz".to_vec()]),
                Column::Float(vec![1.5, 0.0, -2.25]),
            ],
            nulls: vec![None, Some(vec![false, true, false]), None, None],
            times: vec![10, 20, 30],
            aligned: false,
        };
        let types: Vec<i32> = t.columns.iter().map(|c| c.data_type() as i32).collect();
        let times: Vec<u8> = t.times.iter().flat_map(|x| x.to_be_bytes()).collect();
        let back = Tablet::from_rpc(
            t.device.clone(),
            t.measurements.clone(),
            &types,
            &t.rpc_values(),
            &times,
            3,
            false,
        )
        .unwrap();
        assert_eq!(back.columns, t.columns);
        assert_eq!(back.times, t.times);
        assert!(back.is_null(1, 1) && !back.is_null(1, 0) && !back.is_null(0, 1));
    }

    /// The points of a serialized tablet, counted from its header and
    /// bitmaps, are those of the tablet (nulls, rows across the bitmap's
    /// byte and 8-byte word boundaries, TEXT).
    #[test]
    fn points_of_a_serialized_tablet_match_the_tablet() {
        for rows in [0usize, 1, 8, 9, 17, 64, 71, 72, 1000] {
            let t = Tablet {
                device: "root.sg.d".into(),
                measurements: vec!["a".into(), "b".into(), "c".into()],
                columns: vec![
                    Column::Double((0..rows).map(|r| r as f64).collect()),
                    Column::Int32((0..rows).map(|r| r as i32).collect()),
                    Column::Text((0..rows).map(|r| vec![b'x'; r]).collect()),
                ],
                nulls: vec![
                    None,
                    Some((0..rows).map(|r| r % 3 == 0).collect()),
                    Some((0..rows).map(|r| r == rows - 1).collect()),
                ],
                times: (0..rows as i64).collect(),
                aligned: false,
            };
            let bytes = t.serialize_v12();
            assert_eq!(
                Tablet::points_v12(&bytes),
                Ok(t.points() as u64),
                "{rows} rows"
            );
        }
        assert!(Tablet::points_v12(&[0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn rpc_tablet_with_a_null_matches_the_reference() {
        // shared/reference/iotdb-client-rpc.md §3.1 worked example.
        let values = hex("00000001 00000000 00000001 61 00000002 6263 01 00 01 02 00 00");
        let times = hex("0000000000000001 0000000000000002");
        let t = Tablet::from_rpc(
            "root.vehicle.d0".into(),
            vec!["s0".into(), "s1".into(), "s2".into()],
            &[1, 5, 0],
            &values,
            &times,
            2,
            false,
        )
        .unwrap();
        assert_eq!(t.times, vec![1, 2]);
        assert_eq!(t.columns[0], Column::Int32(vec![1, 0]));
        assert_eq!(
            t.columns[1],
            Column::Text(vec![b"a".to_vec(), b"bc".to_vec()])
        );
        assert_eq!(t.columns[2], Column::Boolean(vec![true, false]));
        assert_eq!(t.nulls[0], Some(vec![false, true]));
        assert_eq!(t.nulls[1], None);
        assert_eq!(t.points(), 5);
        // Damaged inputs get messages, not panics.
        assert!(Tablet::from_rpc(
            "d".into(),
            vec!["a".into()],
            &[1, 2],
            &values,
            &times,
            2,
            false
        )
        .unwrap_err()
        .contains("1 measurements but 2 types"));
        assert!(
            Tablet::from_rpc("d".into(), vec!["a".into()], &[9], &[], &[], 0, false)
                .unwrap_err()
                .contains("DATE")
        );
        for cut in 0..values.len() - 6 {
            assert!(Tablet::from_rpc(
                "d".into(),
                vec!["s0".into(), "s1".into(), "s2".into()],
                &[1, 5, 0],
                &values[..cut],
                &times,
                2,
                false
            )
            .is_err());
        }
        assert!(Tablet::from_rpc(
            "d".into(),
            vec!["a".into()],
            &[4],
            &[],
            &[],
            i32::MAX,
            false
        )
        .is_err());
    }

    #[test]
    fn record_values_match_the_reference() {
        // §3.2: INT32 7, TEXT "hey", BOOLEAN true, DOUBLE 0.5.
        let v = hex("01 00000007 05 00000003 686579 00 01 04 3fe0000000000000");
        let t = Tablet::from_record(
            "root.sg.d".into(),
            ["s0", "s1", "s2", "s3"].map(String::from).to_vec(),
            &v,
            9,
            false,
        )
        .unwrap();
        assert_eq!(t.columns[0].get(0), Value::Int32(7));
        assert_eq!(t.columns[1].get(0), Value::Text(b"hey".to_vec()));
        assert_eq!(t.columns[2].get(0), Value::Boolean(true));
        assert_eq!(t.columns[3].get(0), Value::Double(0.5));
        assert!(
            Tablet::from_record("d".into(), vec!["a".into()], &v, 1, false)
                .unwrap_err()
                .contains("unexpected bytes")
        );
    }

    #[test]
    fn v12_serialization_reads_the_reference_sample() {
        // shared/reference/tsfile-samples/tablet_serialize_v1.2.bin, as
        // annotated in iotdb-insertnode-tsfile.md §1.1.
        let sample = hex("0000000a 726f6f742e73672e6431 00000002
             01 00000003
               01 00000002 7331 02 04 01 00000000
               01 00000002 7332 05 00 01 00000000
               01 00000002 7333 00 02 01 00000000
             01 0000000000000001 0000000000000002
             01 00 01 00000002 00000001 02 00
             01 01 000000000000000a 0000000000000014
                01 01 00000001 61 01 00000000
                01 01 00");
        let t = Tablet::deserialize_v12(&sample).unwrap();
        assert_eq!(t.device, "root.sg.d1");
        assert_eq!(t.measurements, vec!["s1", "s2", "s3"]);
        assert_eq!(t.times, vec![1, 2]);
        assert_eq!(t.columns[0], Column::Int64(vec![10, 20]));
        assert_eq!(t.columns[1].get(0), Value::Text(b"a".to_vec()));
        assert!(t.is_null(1, 1) && !t.is_null(1, 0));
        assert_eq!(t.columns[2], Column::Boolean(vec![true, false]));
        assert!(!t.aligned);
        // Our serialization reads back the same.
        let again = Tablet::deserialize_v12(&t.serialize_v12()).unwrap();
        assert_eq!(again, t);
        for cut in 0..sample.len() {
            assert!(
                Tablet::deserialize_v12(&sample[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }
}
