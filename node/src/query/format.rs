//! Values as IoTDB 1.2 renders them in text: a last query's `Value` column
//! is Java's `String.valueOf` of the value (`TsPrimitiveType.getStringValue`).

use protocol::types::Value;

/// Java's `Double.toString` / `Float.toString` layout of a finite,
/// non-zero magnitude given as Rust's shortest `{:e}` text
/// (`1.2345e-5`): plain decimals from 10⁻³ up to 10⁷, with at least one
/// digit after the point, computerized scientific notation (`1.0E7`)
/// outside.
fn java_layout(sci: &str) -> String {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let (int, frac) = padded.split_at(int_len);
            format!("{int}.{}", if frac.is_empty() { "0" } else { frac })
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let (first, rest) = digits.split_at(1);
        format!("{first}.{}E{exp}", if rest.is_empty() { "0" } else { rest })
    }
}

fn java_float_text(
    neg: bool,
    nan: bool,
    inf: bool,
    zero: bool,
    sci: impl FnOnce() -> String,
) -> String {
    let sign = if neg { "-" } else { "" };
    if nan {
        "NaN".into()
    } else if inf {
        format!("{sign}Infinity")
    } else if zero {
        format!("{sign}0.0")
    } else {
        format!("{sign}{}", java_layout(&sci()))
    }
}

/// Java's `String.valueOf(double)`.
pub fn java_double(v: f64) -> String {
    java_float_text(
        v.is_sign_negative() && !v.is_nan(),
        v.is_nan(),
        v.is_infinite(),
        v == 0.0,
        || format!("{:e}", v.abs()),
    )
}

/// Java's `String.valueOf(float)`.
pub fn java_float(v: f32) -> String {
    java_float_text(
        v.is_sign_negative() && !v.is_nan(),
        v.is_nan(),
        v.is_infinite(),
        v == 0.0,
        || format!("{:e}", v.abs()),
    )
}

/// A value as IoTDB writes it in text (`TsPrimitiveType.getStringValue`).
pub fn java_string(v: &Value) -> String {
    match v {
        Value::Boolean(b) => b.to_string(),
        Value::Int32(x) => x.to_string(),
        Value::Int64(x) => x.to_string(),
        Value::Float(x) => java_float(*x),
        Value::Double(x) => java_double(*x),
        Value::Text(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_java_prints_them() {
        for (v, java) in [
            (16.0, "16.0"),
            (18.5, "18.5"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1234567.0, "1234567.0"),
            (10_000_000.0, "1.0E7"),
            (12_345_678.9, "1.23456789E7"),
            (-2.5e-7, "-2.5E-7"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1e300, "1.0E300"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(java_double(v), java, "{v}");
        }
        assert_eq!(java_float(16.0), "16.0");
        assert_eq!(java_float(0.1), "0.1");
        assert_eq!(java_float(3.4e38), "3.4E38");
        assert_eq!(java_float(1.1), "1.1");
        assert_eq!(java_string(&Value::Text(b"14".to_vec())), "14");
        assert_eq!(java_string(&Value::Boolean(false)), "false");
    }
}
