//! Durations and GROUP BY time windows, as IoTDB 1.2 computes them
//! (`DateTimeUtils.convertDurationStrToLong`, `AggrWindowIterator`).
//!
//! Windows of `GROUP BY ([start, end), interval, step)` start at
//! `start + k × step` for every `k` with a start before `end`; each ends
//! `interval` later, cut at `end`. `[start, end)` windows are closed on
//! the left and open on the right, and a row's time is the window's start;
//! `(start, end]` windows are open on the left and closed on the right,
//! and a row's time is the window's (cut) end.

use protocol::types::status;

use crate::exec::Precision;
use crate::sql::{Duration, DurationUnit};
use crate::store::{SResult, StoreError};

fn semantic(message: impl Into<String>) -> StoreError {
    StoreError::new(status::SEMANTIC_ERROR, message)
}

/// A duration in the node's time unit (IoTDB 1.2's rules: `y` is 365
/// days, `ns` and `us` are truncated to the precision).
///
/// # Errors
/// Natural months (`mo`, which IoTDB counts on the calendar) are not
/// supported; an overflow of 64 bits.
pub fn duration_units(precision: Precision, d: &Duration) -> SResult<i64> {
    let overflow = || semantic(format!("the duration {d} is too long"));
    let mut total: i64 = 0;
    for &(amount, unit) in &d.0 {
        let amount = i64::try_from(amount).map_err(|_| overflow())?;
        let ms_per: i64 = match unit {
            DurationUnit::Year => 365 * 86_400_000,
            DurationUnit::Month => {
                return Err(StoreError::new(
                    status::UNSUPPORTED_OPERATION,
                    format!("the duration {d} is in natural months (mo), which edgepipe does not support; write it in days (d) or weeks (w)"),
                ))
            }
            DurationUnit::Week => 7 * 86_400_000,
            DurationUnit::Day => 86_400_000,
            DurationUnit::Hour => 3_600_000,
            DurationUnit::Minute => 60_000,
            DurationUnit::Second => 1_000,
            DurationUnit::Milli => 1,
            DurationUnit::Micro | DurationUnit::Nano => 0,
        };
        let v = match (unit, precision) {
            (DurationUnit::Nano, Precision::Ms) => amount / 1_000_000,
            (DurationUnit::Nano, Precision::Us) => amount / 1_000,
            (DurationUnit::Nano, Precision::Ns) => amount,
            (DurationUnit::Micro, Precision::Ms) => amount / 1_000,
            (DurationUnit::Micro, Precision::Us) => amount,
            (DurationUnit::Micro, Precision::Ns) => {
                amount.checked_mul(1_000).ok_or_else(overflow)?
            }
            (_, p) => {
                let per_ms = match p {
                    Precision::Ms => 1,
                    Precision::Us => 1_000,
                    Precision::Ns => 1_000_000,
                };
                amount
                    .checked_mul(ms_per)
                    .and_then(|x| x.checked_mul(per_ms))
                    .ok_or_else(overflow)?
            }
        };
        total = total.checked_add(v).ok_or_else(overflow)?;
    }
    Ok(total)
}

/// The windows of a GROUP BY (or the one window of an aggregation without
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Windows {
    /// No GROUP BY: one window, `[lo, hi]`, whose row has no time.
    Single,
    /// `GROUP BY` windows.
    Grouped {
        /// The range's start.
        start: i64,
        /// The range's end.
        end: i64,
        /// Each window's length.
        interval: i64,
        /// Distance between window starts.
        step: i64,
        /// `[start, end)` (true) or `(start, end]`.
        left_closed: bool,
    },
}

impl Windows {
    /// Checks and builds GROUP BY windows.
    ///
    /// # Errors
    /// IoTDB 1.2's semantic errors: an empty range, a non-positive
    /// interval; and a non-positive step.
    pub fn grouped(
        start: i64,
        end: i64,
        interval: i64,
        step: Option<i64>,
        left_closed: bool,
    ) -> SResult<Windows> {
        if start >= end {
            return Err(semantic(
                "Start time should be smaller than endTime in GroupBy",
            ));
        }
        if interval <= 0 {
            return Err(semantic(
                "The second parameter time interval should be a positive integer.",
            ));
        }
        let step = step.unwrap_or(interval);
        if step <= 0 {
            return Err(semantic(
                "The third parameter sliding step should be a positive integer.",
            ));
        }
        Ok(Windows::Grouped {
            start,
            end,
            interval,
            step,
            left_closed,
        })
    }

    /// Number of windows.
    pub fn count(&self) -> u64 {
        match *self {
            Windows::Single => 1,
            Windows::Grouped {
                start, end, step, ..
            } => {
                let span = i128::from(end) - i128::from(start);
                let n = (span + i128::from(step) - 1) / i128::from(step);
                u64::try_from(n).unwrap_or(u64::MAX)
            }
        }
    }

    /// Window `k` (ascending): its inclusive time range (possibly empty:
    /// `lo > hi`) and the time of its row.
    pub fn window(&self, k: u64) -> (i64, i64, i64) {
        match *self {
            Windows::Single => (i64::MIN, i64::MAX, 0),
            Windows::Grouped {
                start,
                end,
                interval,
                step,
                left_closed,
            } => {
                let ws = i128::from(start) + i128::from(k) * i128::from(step);
                let we = (ws + i128::from(interval)).min(i128::from(end));
                // ws < end and we ≤ end: both fit 64 bits.
                let (ws, we) = (ws as i64, we as i64);
                if left_closed {
                    (ws, we - 1, ws)
                } else {
                    (ws + 1, we, we)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        Duration::parse(s).unwrap()
    }

    #[test]
    fn durations_as_iotdb_converts_them() {
        let ms = Precision::Ms;
        assert_eq!(duration_units(ms, &d("1h30m")).unwrap(), 5_400_000);
        assert_eq!(duration_units(ms, &d("1y")).unwrap(), 365 * 86_400_000);
        assert_eq!(duration_units(ms, &d("2w1d")).unwrap(), 15 * 86_400_000);
        assert_eq!(duration_units(ms, &d("1500us")).unwrap(), 1);
        assert_eq!(duration_units(ms, &d("999999ns")).unwrap(), 0);
        assert_eq!(duration_units(Precision::Us, &d("1ms")).unwrap(), 1000);
        assert_eq!(
            duration_units(Precision::Ns, &d("1s")).unwrap(),
            1_000_000_000
        );
        assert_eq!(duration_units(Precision::Ns, &d("7us")).unwrap(), 7000);
        assert!(duration_units(ms, &d("1mo"))
            .unwrap_err()
            .message
            .contains("natural months"));
        assert!(duration_units(Precision::Ns, &d("999999999y"))
            .unwrap_err()
            .message
            .contains("too long"));
        assert_eq!(Duration::parse("10"), None);
        assert_eq!(Duration::parse("1x"), None);
        assert_eq!(Duration::parse("1msx"), None);
    }

    #[test]
    fn windows_as_aggr_window_iterator() {
        // startTime = 0, endTime = 10, interval = 5, slidingStep = 3: [0,5), [3,8), [6,10), [9,10).
        let w = Windows::grouped(0, 10, 5, Some(3), true).unwrap();
        assert_eq!(w.count(), 4);
        let all: Vec<_> = (0..4).map(|k| w.window(k)).collect();
        assert_eq!(all, [(0, 4, 0), (3, 7, 3), (6, 9, 6), (9, 9, 9)]);
        // (0, 10], 3: (0,3] (3,6] (6,9] (9,10], rows at the ends.
        let w = Windows::grouped(0, 10, 3, None, false).unwrap();
        let all: Vec<_> = (0..w.count()).map(|k| w.window(k)).collect();
        assert_eq!(all, [(1, 3, 3), (4, 6, 6), (7, 9, 9), (10, 10, 10)]);
        // A step longer than the interval leaves gaps.
        let w = Windows::grouped(0, 10, 2, Some(5), true).unwrap();
        assert_eq!((w.count(), w.window(1)), (2, (5, 6, 5)));
        // The whole time axis does not overflow.
        let w = Windows::grouped(i64::MIN, i64::MAX, 1 << 62, None, true).unwrap();
        assert_eq!(w.count(), 4);
        assert_eq!(w.window(3).1, i64::MAX - 1);
        assert!(Windows::grouped(5, 5, 1, None, true).is_err());
        assert!(Windows::grouped(0, 5, 0, None, true).is_err());
        assert!(Windows::grouped(0, 5, 1, Some(0), true).is_err());
    }
}
