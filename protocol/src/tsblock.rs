//! TsBlocks: how query results travel (`queryResult: list<binary>`).
//!
//! ```text
//! i32 valueColumnCount
//! u8 × count     physical type per value column (BOOLEAN 0, INT32 1, INT64 2,
//!                FLOAT 3, DOUBLE 4, TEXT 5)
//! i32 positionCount
//! u8 × (count+1) column encodings: time first (2 INT64_ARRAY), then values
//!                (0 BYTE_ARRAY, 1 INT32_ARRAY, 2 INT64_ARRAY, 3 BINARY_ARRAY)
//! time column, value columns; each: u8 mayHaveNull, [ceil(n/8) null flags,
//!   MSB first, 1 = null], then the non-null values (BOOLEAN: ceil(n/8)
//!   bytes of value bits for all rows, MSB first; TEXT: i32 len + bytes)
//! ```
//! All big-endian. Null flags here are MSB-first, unlike the tablet bitmap.

use crate::tablet::Column;
use crate::types::{DataType, Value};

fn encoding(t: DataType) -> u8 {
    match t {
        DataType::Boolean => 0,
        DataType::Int32 | DataType::Float => 1,
        DataType::Int64 | DataType::Double => 2,
        DataType::Text => 3,
    }
}

fn msb_bits(out: &mut Vec<u8>, bits: impl Iterator<Item = bool>, n: usize) {
    let start = out.len();
    out.resize(start + n.div_ceil(8), 0);
    for (i, b) in bits.enumerate() {
        if b {
            out[start + i / 8] |= 0x80 >> (i % 8);
        }
    }
}

/// Encodes one TsBlock of `times.len()` rows. `columns[i]` holds a value
/// (a placeholder where null) for every row; `nulls[i]` says which rows are
/// null.
///
/// # Panics
/// If a column's length differs from the row count.
pub fn encode(times: &[i64], columns: &[Column], nulls: &[Option<Vec<bool>>]) -> Vec<u8> {
    let n = times.len();
    let mut out = Vec::with_capacity(16 + n * 8 * (1 + columns.len()));
    out.extend_from_slice(&(columns.len() as i32).to_be_bytes());
    for c in columns {
        assert_eq!(c.len(), n, "column length");
        out.push(c.data_type() as u8);
    }
    out.extend_from_slice(&(n as i32).to_be_bytes());
    out.push(2);
    out.extend(columns.iter().map(|c| encoding(c.data_type())));
    out.push(0);
    for t in times {
        out.extend_from_slice(&t.to_be_bytes());
    }
    for (c, nl) in columns.iter().zip(nulls) {
        let null = |r: usize| nl.as_ref().is_some_and(|v| v[r]);
        match nl {
            Some(v) if v.iter().any(|&x| x) => {
                out.push(1);
                msb_bits(&mut out, v.iter().copied(), n);
            }
            _ => out.push(0),
        }
        match c {
            Column::Boolean(v) => msb_bits(&mut out, v.iter().copied(), n),
            Column::Int32(v) => (0..n)
                .filter(|&r| !null(r))
                .for_each(|r| out.extend_from_slice(&v[r].to_be_bytes())),
            Column::Float(v) => (0..n)
                .filter(|&r| !null(r))
                .for_each(|r| out.extend_from_slice(&v[r].to_bits().to_be_bytes())),
            Column::Int64(v) => (0..n)
                .filter(|&r| !null(r))
                .for_each(|r| out.extend_from_slice(&v[r].to_be_bytes())),
            Column::Double(v) => (0..n)
                .filter(|&r| !null(r))
                .for_each(|r| out.extend_from_slice(&v[r].to_bits().to_be_bytes())),
            Column::Text(v) => (0..n).filter(|&r| !null(r)).for_each(|r| {
                out.extend_from_slice(&(v[r].len() as i32).to_be_bytes());
                out.extend_from_slice(&v[r]);
            }),
        }
    }
    out
}

/// A decoded TsBlock, about as compact as its bytes: the times and, per
/// column, the null flags as received and only the non-null values (an
/// all-null column of n rows costs n/8 bytes, as on the wire, not n
/// decoded cells).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Row timestamps.
    pub times: Vec<i64>,
    /// The value columns.
    pub columns: Vec<BlockColumn>,
}

/// One value column of a [`Block`].
#[derive(Debug, Clone, PartialEq)]
pub struct BlockColumn {
    /// Null flags, MSB first, 1 = null (`None`: no row is null).
    nulls: Option<Vec<u8>>,
    /// The non-null values, in row order.
    values: Column,
}

impl BlockColumn {
    /// The column's type.
    pub fn data_type(&self) -> DataType {
        self.values.data_type()
    }

    /// Whether `row` is null.
    pub fn is_null(&self, row: usize) -> bool {
        self.nulls
            .as_ref()
            .is_some_and(|b| b[row / 8] & (0x80 >> (row % 8)) != 0)
    }

    /// The cells of the first `rows` rows in order: a value, or `None`
    /// where null.
    pub fn cells(&self, rows: usize) -> impl Iterator<Item = Option<Value>> + '_ {
        let mut next = 0;
        (0..rows).map(move |r| {
            if self.is_null(r) {
                None
            } else {
                next += 1;
                Some(self.values.get(next - 1))
            }
        })
    }
}

impl Block {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.times.len()
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "tsblock ends at byte {} of {}, {n} more needed",
                self.b.len(),
                self.b.len()
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    /// A count, each unit taking at least `unit` bytes of what remains.
    fn count(&mut self, what: &str, unit: usize) -> Result<usize, String> {
        let n = self.i32()?;
        if n < 0 || (n as usize).saturating_mul(unit) > self.left() {
            return Err(format!(
                "tsblock: {what} {n} does not fit the {} bytes left",
                self.left()
            ));
        }
        Ok(n as usize)
    }
    /// The null flags of `n` rows: `None` when the column says it has
    /// none or none is set.
    fn nulls(&mut self, n: usize) -> Result<Option<&'a [u8]>, String> {
        if self.take(1)?[0] == 0 {
            return Ok(None);
        }
        let bits = self.take(n.div_ceil(8))?;
        Ok((0..n)
            .any(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
            .then_some(bits))
    }
}

fn fixed<const W: usize, T>(
    r: &mut Reader<'_>,
    n: usize,
    f: impl Fn([u8; W]) -> T,
) -> Result<Vec<T>, String> {
    let bytes = r.take(n.checked_mul(W).ok_or("tsblock: size overflow")?)?;
    Ok(bytes
        .chunks_exact(W)
        .map(|c| f(c.try_into().expect("W")))
        .collect())
}

/// Decodes a TsBlock (the client side of a query). Every count is checked
/// against the bytes that remain before anything is allocated for it, and
/// nulls stay as compact as on the wire, so the result takes at most a few
/// times the block's length.
///
/// # Errors
/// A message saying where the block is short or malformed.
pub fn decode(b: &[u8]) -> Result<Block, String> {
    let mut r = Reader { b, at: 0 };
    let count = r.count("column count", 1)?;
    let types: Vec<DataType> = r
        .take(count)?
        .iter()
        .map(|&t| DataType::from_id(i32::from(t)))
        .collect::<Result<_, _>>()?;
    // Each row takes 8 bytes of the time column.
    let n = r.i32()?;
    if n < 0 {
        return Err(format!("tsblock: negative row count {n}"));
    }
    let n = n as usize;
    r.take(count + 1)?;
    if r.nulls(n)?.is_some() {
        return Err("tsblock: null in the time column".into());
    }
    let times = fixed(&mut r, n, i64::from_be_bytes)?;
    let mut columns = Vec::with_capacity(count);
    for t in types {
        let nulls = r.nulls(n)?;
        let set = |row: usize| nulls.is_some_and(|b| b[row / 8] & (0x80 >> (row % 8)) != 0);
        let non_null = match nulls {
            None => n,
            Some(bits) => {
                n - (0..n)
                    .filter(|&i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                    .count()
            }
        };
        let values = match t {
            DataType::Boolean => {
                let bits = r.take(n.div_ceil(8))?;
                Column::Boolean(
                    (0..n)
                        .filter(|&i| !set(i))
                        .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                        .collect(),
                )
            }
            DataType::Int32 => Column::Int32(fixed(&mut r, non_null, i32::from_be_bytes)?),
            DataType::Float => Column::Float(fixed(&mut r, non_null, |x| {
                f32::from_bits(u32::from_be_bytes(x))
            })?),
            DataType::Int64 => Column::Int64(fixed(&mut r, non_null, i64::from_be_bytes)?),
            DataType::Double => Column::Double(fixed(&mut r, non_null, |x| {
                f64::from_bits(u64::from_be_bytes(x))
            })?),
            DataType::Text => {
                if non_null.saturating_mul(4) > r.left() {
                    return Err(format!(
                        "tsblock: {non_null} TEXT values do not fit the {} bytes left",
                        r.left()
                    ));
                }
                let mut v = Vec::with_capacity(non_null);
                for _ in 0..non_null {
                    let len = r.i32()?;
                    if len < 0 {
                        return Err(format!("tsblock: negative text length {len}"));
                    }
                    v.push(r.take(len as usize)?.to_vec());
                }
                Column::Text(v)
            }
        };
        columns.push(BlockColumn {
            nulls: nulls.map(<[u8]>::to_vec),
            values,
        });
    }
    if r.at != b.len() {
        return Err(format!("{} bytes after the tsblock", b.len() - r.at));
    }
    Ok(Block { times, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(d: &Block, c: usize) -> Vec<Option<Value>> {
        d.columns[c].cells(d.rows()).collect()
    }

    #[test]
    fn matches_the_reference_examples() {
        // iotdb-client-rpc.md §4: 2 rows × (INT32, TEXT), 55 bytes.
        let b = encode(
            &[1000, 2000],
            &[
                Column::Int32(vec![42, -7]),
                Column::Text(vec![b"hi".to_vec(), b"iotdb".to_vec()]),
            ],
            &[None, None],
        );
        let want: String = "00000002 0105 00000002 020103
            00 00000000000003e8 00000000000007d0
            00 0000002a fffffff9
            00 00000002 6869 00000005 696f746462"
            .split_whitespace()
            .collect();
        let got: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(got, want);
        assert_eq!(b.len(), 55);
        // With nulls: INT32 (42, null), TEXT (null, "iotdb"): 47 bytes.
        let b = encode(
            &[1000, 2000],
            &[
                Column::Int32(vec![42, 0]),
                Column::Text(vec![vec![], b"iotdb".to_vec()]),
            ],
            &[Some(vec![false, true]), Some(vec![true, false])],
        );
        let got: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let want: String = "00000002 0105 00000002 020103
            00 00000000000003e8 00000000000007d0
            01 40 0000002a
            01 80 00000005 696f746462"
            .split_whitespace()
            .collect();
        assert_eq!(got, want);
        assert_eq!(b.len(), 47);
        let d = decode(&b).unwrap();
        assert_eq!(d.times, vec![1000, 2000]);
        assert_eq!(cells(&d, 0), vec![Some(Value::Int32(42)), None]);
        assert_eq!(
            cells(&d, 1),
            vec![None, Some(Value::Text(b"iotdb".to_vec()))]
        );
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn booleans_pack_msb_first() {
        let b = encode(
            &[1, 2, 3],
            &[Column::Boolean(vec![true, false, false])],
            &[Some(vec![false, true, false])],
        );
        // mayHaveNull, null flags 0b0100_0000, value bits 0b1000_0000.
        assert_eq!(&b[b.len() - 3..], &[0x01, 0x40, 0x80]);
        let d = decode(&b).unwrap();
        assert_eq!(
            cells(&d, 0),
            vec![
                Some(Value::Boolean(true)),
                None,
                Some(Value::Boolean(false))
            ]
        );
    }
}
