//! Aggregations over one series and one window, with IoTDB 1.2's rules
//! (`TypeInferenceUtils.getAggrDataType`, the `*Accumulator` classes):
//!
//! | aggregation | input | result | no points |
//! | --- | --- | --- | --- |
//! | `count` | any | INT64 | 0 |
//! | `sum`, `avg` | INT32, INT64, FLOAT, DOUBLE | DOUBLE | null |
//! | `min_value`, `max_value` | INT32, INT64, FLOAT, DOUBLE | the input's | null |
//! | `first_value`, `last_value` | any | the input's | null |
//! | `min_time`, `max_time` | any | INT64 | null |
//!
//! `sum` and `avg` of a non-numeric series are refused with IoTDB's
//! message. Sums add up in time order in 64-bit floating point, as
//! IoTDB's raw-data path does (INT32 sums exactly, as its statistics do);
//! `min_value`/`max_value` keep the first value unless a later one is
//! strictly smaller/larger (so a leading NaN stays, as in Java).

use std::ops::Range;

use protocol::tablet::Column;
use protocol::types::{status, DataType, Value};

use crate::sql::Aggregation;
use crate::store::{SResult, StoreError};

/// IoTDB 1.2's result type of `agg` over a series of type `t`.
///
/// # Errors
/// `sum`, `avg`, `min_value` and `max_value` of a BOOLEAN or TEXT series:
/// IoTDB's semantic error (701) in its words.
pub fn result_type(agg: Aggregation, t: DataType) -> SResult<DataType> {
    let numeric = !matches!(t, DataType::Boolean | DataType::Text);
    match agg {
        Aggregation::Sum | Aggregation::Avg | Aggregation::MinValue | Aggregation::MaxValue
            if !numeric =>
        {
            Err(StoreError::new(
                status::SEMANTIC_ERROR,
                "Aggregate functions [AVG, SUM, EXTREME, MIN_VALUE, MAX_VALUE] only support numeric data types [INT32, INT64, FLOAT, DOUBLE]",
            ))
        }
        Aggregation::Count | Aggregation::MinTime | Aggregation::MaxTime => Ok(DataType::Int64),
        Aggregation::Sum | Aggregation::Avg => Ok(DataType::Double),
        Aggregation::MinValue
        | Aggregation::MaxValue
        | Aggregation::FirstValue
        | Aggregation::LastValue => Ok(t),
    }
}

/// Whether `agg` is settled by a window's first point (reading ends
/// early) ...
pub fn needs_first_only(agg: Aggregation) -> bool {
    matches!(agg, Aggregation::FirstValue | Aggregation::MinTime)
}

/// ... or by its last point.
pub fn needs_last_only(agg: Aggregation) -> bool {
    matches!(agg, Aggregation::LastValue | Aggregation::MaxTime)
}

/// One aggregation's state over one window.
#[derive(Debug, Clone)]
pub struct Acc {
    agg: Aggregation,
    input: DataType,
    count: u64,
    /// INT32 sums, exactly.
    int_sum: i128,
    /// Other sums, in time order.
    float_sum: f64,
    /// min/max/first/last value.
    value: Option<Value>,
    /// min/max time.
    time: Option<i64>,
}

/// The extreme of a slice: the first value, replaced by each later one
/// that `better` prefers.
fn extreme<T: Copy>(v: &[T], better: impl Fn(T, T) -> bool) -> Option<T> {
    let (&first, rest) = v.split_first()?;
    Some(
        rest.iter()
            .fold(first, |m, &x| if better(x, m) { x } else { m }),
    )
}

impl Acc {
    /// An empty accumulator of `agg` over a series of type `input` (whose
    /// type [`result_type`] accepted).
    pub fn new(agg: Aggregation, input: DataType) -> Acc {
        Acc {
            agg,
            input,
            count: 0,
            int_sum: 0,
            float_sum: 0.0,
            value: None,
            time: None,
        }
    }

    /// Whether later points can no longer change the result (the window's
    /// points are added in time order).
    pub fn settled(&self) -> bool {
        needs_first_only(self.agg) && self.count > 0
    }

    /// Adds points `r` of a batch (times increasing, later batches later).
    pub fn add(&mut self, times: &[i64], values: &Column, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        let (first, last) = (r.start, r.end - 1);
        let was_empty = self.count == 0;
        self.count += r.len() as u64;
        match self.agg {
            Aggregation::Count => {}
            Aggregation::MinTime => {
                if was_empty {
                    self.time = Some(times[first]);
                }
            }
            Aggregation::MaxTime => self.time = Some(times[last]),
            Aggregation::FirstValue => {
                if was_empty {
                    self.value = Some(values.get(first));
                }
            }
            Aggregation::LastValue => self.value = Some(values.get(last)),
            Aggregation::Sum | Aggregation::Avg => match values {
                Column::Int32(v) => {
                    self.int_sum += v[r].iter().map(|&x| i128::from(x)).sum::<i128>();
                }
                Column::Int64(v) => {
                    for &x in &v[r] {
                        self.float_sum += x as f64;
                    }
                }
                Column::Float(v) => {
                    for &x in &v[r] {
                        self.float_sum += f64::from(x);
                    }
                }
                Column::Double(v) => {
                    for &x in &v[r] {
                        self.float_sum += x;
                    }
                }
                Column::Boolean(_) | Column::Text(_) => {}
            },
            Aggregation::MinValue | Aggregation::MaxValue => {
                let min = self.agg == Aggregation::MinValue;
                let found = match values {
                    Column::Int32(v) => {
                        extreme(&v[r], |a, b| if min { a < b } else { a > b }).map(Value::Int32)
                    }
                    Column::Int64(v) => {
                        extreme(&v[r], |a, b| if min { a < b } else { a > b }).map(Value::Int64)
                    }
                    Column::Float(v) => {
                        extreme(&v[r], |a, b| if min { a < b } else { a > b }).map(Value::Float)
                    }
                    Column::Double(v) => {
                        extreme(&v[r], |a, b| if min { a < b } else { a > b }).map(Value::Double)
                    }
                    Column::Boolean(_) | Column::Text(_) => None,
                };
                let better = |new: &Value, old: &Value| match (new, old) {
                    (Value::Int32(a), Value::Int32(b)) => {
                        if min {
                            a < b
                        } else {
                            a > b
                        }
                    }
                    (Value::Int64(a), Value::Int64(b)) => {
                        if min {
                            a < b
                        } else {
                            a > b
                        }
                    }
                    (Value::Float(a), Value::Float(b)) => {
                        if min {
                            a < b
                        } else {
                            a > b
                        }
                    }
                    (Value::Double(a), Value::Double(b)) => {
                        if min {
                            a < b
                        } else {
                            a > b
                        }
                    }
                    _ => false,
                };
                if let Some(f) = found {
                    match &self.value {
                        Some(old) if !better(&f, old) => {}
                        _ => self.value = Some(f),
                    }
                }
            }
        }
    }

    /// Appends the window's result to `out` (null: a placeholder, and
    /// `true` in `nulls`) and empties the accumulator for the next window.
    pub fn finish(&mut self, out: &mut Column, nulls: &mut Vec<bool>) {
        let sum = || {
            if self.input == DataType::Int32 {
                self.int_sum as f64
            } else {
                self.float_sum
            }
        };
        let v = match self.agg {
            Aggregation::Count => Some(Value::Int64(self.count as i64)),
            _ if self.count == 0 => None,
            Aggregation::Sum => Some(Value::Double(sum())),
            Aggregation::Avg => Some(Value::Double(sum() / self.count as f64)),
            Aggregation::MinTime | Aggregation::MaxTime => self.time.map(Value::Int64),
            Aggregation::MinValue
            | Aggregation::MaxValue
            | Aggregation::FirstValue
            | Aggregation::LastValue => self.value.take(),
        };
        nulls.push(v.is_none());
        out.push(v.unwrap_or_else(|| Value::placeholder(out.data_type())));
        *self = Acc::new(self.agg, self.input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(agg: Aggregation, values: Column) -> Option<Value> {
        let t = values.data_type();
        let times: Vec<i64> = (0..values.len() as i64).collect();
        let mut a = Acc::new(agg, t);
        // In two batches, as a scan would add them.
        let mid = values.len() / 2;
        a.add(&times, &values, 0..mid);
        a.add(&times, &values, mid..values.len());
        let mut out = Column::with_capacity(result_type(agg, t).unwrap(), 1);
        let mut nulls = Vec::new();
        a.finish(&mut out, &mut nulls);
        (!nulls[0]).then(|| out.get(0))
    }

    #[test]
    fn each_aggregation_as_iotdb() {
        let ints = || Column::Int32(vec![5, -3, 9, 9, 1]);
        assert_eq!(run(Aggregation::Count, ints()), Some(Value::Int64(5)));
        assert_eq!(run(Aggregation::Sum, ints()), Some(Value::Double(21.0)));
        assert_eq!(run(Aggregation::Avg, ints()), Some(Value::Double(4.2)));
        assert_eq!(run(Aggregation::MinValue, ints()), Some(Value::Int32(-3)));
        assert_eq!(run(Aggregation::MaxValue, ints()), Some(Value::Int32(9)));
        assert_eq!(run(Aggregation::FirstValue, ints()), Some(Value::Int32(5)));
        assert_eq!(run(Aggregation::LastValue, ints()), Some(Value::Int32(1)));
        assert_eq!(run(Aggregation::MinTime, ints()), Some(Value::Int64(0)));
        assert_eq!(run(Aggregation::MaxTime, ints()), Some(Value::Int64(4)));
        let text = || Column::Text(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            run(Aggregation::LastValue, text()),
            Some(Value::Text(b"b".to_vec()))
        );
        assert_eq!(run(Aggregation::Count, text()), Some(Value::Int64(2)));
        // Empty: count 0, the rest null.
        for agg in Aggregation::ALL {
            let got = run(agg, Column::Double(vec![]));
            if agg == Aggregation::Count {
                assert_eq!(got, Some(Value::Int64(0)));
            } else {
                assert_eq!(got, None, "{agg:?}");
            }
        }
        // A leading NaN stays, as Java's `<` leaves it.
        let nan = Column::Double(vec![f64::NAN, 1.0]);
        assert!(matches!(run(Aggregation::MinValue, nan), Some(Value::Double(x)) if x.is_nan()));
        let f = Column::Float(vec![1.5, -2.25]);
        assert_eq!(run(Aggregation::MinValue, f), Some(Value::Float(-2.25)));
    }

    #[test]
    fn types_as_iotdb_infers_them() {
        use Aggregation as A;
        assert_eq!(
            result_type(A::Count, DataType::Text).unwrap(),
            DataType::Int64
        );
        assert_eq!(
            result_type(A::Avg, DataType::Int32).unwrap(),
            DataType::Double
        );
        assert_eq!(
            result_type(A::MinValue, DataType::Int32).unwrap(),
            DataType::Int32
        );
        assert_eq!(
            result_type(A::FirstValue, DataType::Text).unwrap(),
            DataType::Text
        );
        assert_eq!(
            result_type(A::MaxTime, DataType::Boolean).unwrap(),
            DataType::Int64
        );
        for agg in [A::Sum, A::Avg, A::MinValue, A::MaxValue] {
            for t in [DataType::Text, DataType::Boolean] {
                let e = result_type(agg, t).unwrap_err();
                assert_eq!(e.code, status::SEMANTIC_ERROR);
                assert_eq!(e.message, "Aggregate functions [AVG, SUM, EXTREME, MIN_VALUE, MAX_VALUE] only support numeric data types [INT32, INT64, FLOAT, DOUBLE]");
            }
        }
    }
}
