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

/// A decoded TsBlock: times and, per column, each row's value or `None`.
pub type Decoded = (Vec<i64>, Vec<Vec<Option<Value>>>);

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("tsblock ends at {} of {}", self.at, self.b.len()))?;
        self.at += n;
        Ok(s)
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn nulls(&mut self, n: usize) -> Result<Vec<bool>, String> {
        if self.take(1)?[0] == 0 {
            return Ok(vec![false; n]);
        }
        let bits = self.take(n.div_ceil(8))?;
        Ok((0..n)
            .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
            .collect())
    }
}

/// Decodes a TsBlock (for tests and tools).
///
/// # Errors
/// A message saying where the block is short or malformed.
pub fn decode(b: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader { b, at: 0 };
    let count = r.i32()?;
    if count < 0 || count as usize > b.len() {
        return Err(format!("bad column count {count}"));
    }
    let count = count as usize;
    let types: Vec<DataType> = r
        .take(count)?
        .iter()
        .map(|&t| DataType::from_id(i32::from(t)))
        .collect::<Result<_, _>>()?;
    let n = r.i32()?;
    if n < 0 || n as usize > b.len() {
        return Err(format!("bad row count {n}"));
    }
    let n = n as usize;
    r.take(count + 1)?;
    if r.nulls(n)?.iter().any(|&x| x) {
        return Err("null in the time column".into());
    }
    let times = (0..n).map(|_| r.i64()).collect::<Result<Vec<_>, _>>()?;
    let mut cols = Vec::new();
    for t in types {
        let nulls = r.nulls(n)?;
        let mut col = Vec::with_capacity(n);
        if t == DataType::Boolean {
            let bits = r.take(n.div_ceil(8))?;
            for (i, &null) in nulls.iter().enumerate() {
                col.push((!null).then(|| Value::Boolean(bits[i / 8] & (0x80 >> (i % 8)) != 0)));
            }
        } else {
            for &null in &nulls {
                if null {
                    col.push(None);
                    continue;
                }
                col.push(Some(match t {
                    DataType::Int32 => Value::Int32(r.i32()?),
                    DataType::Float => Value::Float(f32::from_bits(r.i32()? as u32)),
                    DataType::Int64 => Value::Int64(r.i64()?),
                    DataType::Double => Value::Double(f64::from_bits(r.i64()? as u64)),
                    DataType::Text => {
                        let len = r.i32()?;
                        if len < 0 {
                            return Err(format!("negative text length {len}"));
                        }
                        Value::Text(r.take(len as usize)?.to_vec())
                    }
                    DataType::Boolean => unreachable!("handled above"),
                }));
            }
        }
        cols.push(col);
    }
    if r.at != b.len() {
        return Err(format!("{} bytes after the tsblock", b.len() - r.at));
    }
    Ok((times, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (t, cols) = decode(&b).unwrap();
        assert_eq!(t, vec![1000, 2000]);
        assert_eq!(cols[0], vec![Some(Value::Int32(42)), None]);
        assert_eq!(cols[1], vec![None, Some(Value::Text(b"iotdb".to_vec()))]);
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
        let (_, cols) = decode(&b).unwrap();
        assert_eq!(
            cols[0],
            vec![
                Some(Value::Boolean(true)),
                None,
                Some(Value::Boolean(false))
            ]
        );
    }
}
