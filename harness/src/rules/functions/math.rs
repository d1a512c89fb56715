//! Numeric helpers (Kahan summation, quantiles, float formatting) and the element-wise math
//! functions.

use crate::rules::value::{QueryError, Sample};
use crate::scrape::METRIC_NAME_LABEL;

/// One step of Kahan-Neumaier summation: `(sum + inc, compensation)`.
pub fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The `q`-quantile of `values` by linear interpolation between the closest ranks
/// (Prometheus' `quantile`): NaN for no values or NaN `q`, -Inf/+Inf for `q` below 0/above 1.
pub fn quantile(q: f64, values: &[f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut v = values.to_vec();
    // NaN sorts first, as Go's vectorByValueHeap has it.
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    v[lower as usize] * (1.0 - weight) + v[upper as usize] * weight
}

/// A float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` writes it (`+Inf`, `-Inf`, `NaN`).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f == f64::INFINITY {
        "+Inf".to_string()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{f}")
    }
}

/// The element-wise function `name`, if it is one.
pub fn unary_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                // 0 stays 0 and NaN stays NaN.
                v
            }
        },
        _ => return None,
    })
}

/// Applies `f` to every sample, dropping the metric name.
pub fn map_values(mut v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    for s in &mut v {
        s.v = f(s.v);
        s.labels.remove(METRIC_NAME_LABEL);
    }
    v
}

/// `round(v, to_nearest)`: half rounds up, as Prometheus does.
pub fn round(v: f64, to_nearest: f64) -> f64 {
    let inv = 1.0 / to_nearest;
    (v * inv + 0.5).floor() / inv
}

/// `clamp(v, min, max)`: empty when `max < min`.
pub fn clamp(v: Vec<Sample>, min: f64, max: f64) -> Result<Vec<Sample>, QueryError> {
    if max < min {
        return Ok(Vec::new());
    }
    Ok(map_values(v, |x| x.max(min).min(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_between_ranks() {
        // rank = 0.9 * 3 = 2.7: 3 + 0.7 * (4 - 3).
        assert!((quantile(0.9, &[4.0, 1.0, 3.0, 2.0]) - 3.7).abs() < 1e-12);
        assert_eq!(quantile(0.5, &[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(quantile(-0.1, &[1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(1.1, &[1.0]), f64::INFINITY);
        assert!(quantile(0.5, &[]).is_nan());
    }

    #[test]
    fn kahan_recovers_lost_precision() {
        let (mut s, mut c) = (1.0, 0.0);
        for _ in 0..10 {
            (s, c) = kahan_sum_inc(1e-16, s, c);
        }
        assert_eq!(s + c, 1.000_000_000_000_001);
    }

    #[test]
    fn format_float_like_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(1e21), "1000000000000000000000");
    }

    #[test]
    fn round_half_up() {
        assert_eq!(round(2.5, 1.0), 3.0);
        assert_eq!(round(-2.5, 1.0), -2.0);
        assert_eq!(round(17.0, 5.0), 15.0);
    }
}
