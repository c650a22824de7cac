//! Exact parsing of resource quantities ("100m", "1", "128Mi", "1Gi", "1e3", "0.5") into
//! integer milli-units or base units, rounding up like upstream's `MilliValue()`/`Value()`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A parsed quantity: `sign * digits * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    digits: u128,
    exp10: i32,
    exp2: u32,
}

fn parse(s: &str) -> Option<Parsed> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let mut digits: u128 = 0;
    let mut frac_len: i32 = 0;
    let mut after_dot = false;
    for c in number.chars() {
        if c == '.' {
            after_dot = true;
            continue;
        }
        digits = digits
            .checked_mul(10)?
            .checked_add(u128::from(c.to_digit(10)?))?;
        if after_dot {
            frac_len += 1;
        }
    }
    let (exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => (s[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    if !(-40..=40).contains(&exp10) {
        return None;
    }
    Some(Parsed {
        negative,
        digits,
        exp10: exp10 - frac_len,
        exp2,
    })
}

/// `ceil(q * 10^scale)` as an `i64`, or `None` when unparsable or out of range.
fn scaled(s: &str, scale: i32) -> Option<i64> {
    let p = parse(s)?;
    let base = p.digits.checked_mul(1u128.checked_shl(p.exp2)?)?;
    let e = p.exp10 + scale;
    let magnitude = if e >= 0 {
        base.checked_mul(10u128.checked_pow(e.unsigned_abs())?)?
    } else {
        let div = 10u128.checked_pow(e.unsigned_abs()).unwrap_or(u128::MAX);
        // Round away from zero for positives (upstream rounds up), toward zero for negatives.
        if p.negative {
            base / div
        } else {
            base.div_ceil(div)
        }
    };
    let v = i64::try_from(magnitude).ok()?;
    Some(if p.negative { -v } else { v })
}

/// The quantity in thousandths (cpu: millicores), rounded up.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 3)
}

/// The quantity in base units (memory: bytes), rounded up.
pub fn value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn parses_table() {
        let cases: &[(&str, Option<i64>, Option<i64>)] = &[
            // (input, milli, value)
            ("100m", Some(100), Some(1)),
            ("1", Some(1000), Some(1)),
            ("0.5", Some(500), Some(1)),
            ("2.25", Some(2250), Some(3)),
            (
                "128Mi",
                Some(128 * 1024 * 1024 * 1000),
                Some(128 * 1024 * 1024),
            ),
            ("1Gi", Some(1024 * 1024 * 1024 * 1000), Some(1 << 30)),
            ("1e3", Some(1_000_000), Some(1000)),
            ("1E3", Some(1_000_000), Some(1000)),
            ("1k", Some(1_000_000), Some(1000)),
            ("1M", Some(1_000_000_000), Some(1_000_000)),
            ("1Ki", Some(1_024_000), Some(1024)),
            ("1.5Gi", Some(1_610_612_736_000), Some(1_610_612_736)),
            ("1n", Some(1), Some(1)),
            ("0", Some(0), Some(0)),
            ("-1", Some(-1000), Some(-1)),
            ("", None, None),
            ("abc", None, None),
            ("1Qi", None, None),
            ("1.2.3", None, None),
            ("1e999", None, None),
        ];
        for (input, milli, val) in cases {
            assert_eq!(milli_value(&q(input)), *milli, "milli of {input:?}");
            assert_eq!(value(&q(input)), *val, "value of {input:?}");
        }
    }
}
