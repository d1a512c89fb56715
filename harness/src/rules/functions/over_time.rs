//! The `*_over_time` family and `double_exponential_smoothing`.

use super::math::{kahan_sum_inc, quantile};
use crate::rules::eval::aggregate::avg;
use crate::rules::value::QueryError;

/// The value of `<name>_over_time` over one series' points (non-empty), if `name` is one of
/// the single-argument ones.
pub fn over_time(name: &str, points: &[(i64, f64)]) -> Option<f64> {
    let (first_t, first_v) = *points.first()?;
    let (last_t, last_v) = *points.last()?;
    let values = || points.iter().map(|&(_, v)| v);
    Some(match name {
        "avg_over_time" => avg(&values().collect::<Vec<_>>()),
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for v in values() {
                (s, c) = kahan_sum_inc(v, s, c);
            }
            s + c
        }
        "count_over_time" => points.len() as f64,
        "min_over_time" => values()
            .skip(1)
            .fold(first_v, |m, v| if m > v || m.is_nan() { v } else { m }),
        "max_over_time" => values()
            .skip(1)
            .fold(first_v, |m, v| if m < v || m.is_nan() { v } else { m }),
        "last_over_time" => last_v,
        "first_over_time" => first_v,
        "present_over_time" => 1.0,
        "stddev_over_time" => stdvar_over_time(points).sqrt(),
        "stdvar_over_time" => stdvar_over_time(points),
        "mad_over_time" => {
            let vs: Vec<f64> = values().collect();
            if vs.iter().any(|v| v.is_nan()) {
                return Some(f64::NAN);
            }
            let median = quantile(0.5, &vs);
            let dev: Vec<f64> = vs.iter().map(|v| (v - median).abs()).collect();
            quantile(0.5, &dev)
        }
        "ts_of_first_over_time" => first_t as f64 / 1000.0,
        "ts_of_last_over_time" => last_t as f64 / 1000.0,
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            let want_max = name == "ts_of_max_over_time";
            let (mut best_t, mut best) = (first_t, first_v);
            for &(t, v) in &points[1..] {
                // The latest of equal extremes, as Prometheus reports it.
                let better = if want_max {
                    v >= best || best.is_nan()
                } else {
                    v <= best || best.is_nan()
                };
                if better && !v.is_nan() {
                    best_t = t;
                    best = v;
                }
            }
            best_t as f64 / 1000.0
        }
        _ => return None,
    })
}

/// Population variance with Kahan-compensated Welford updates (`stdvar_over_time`).
fn stdvar_over_time(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `double_exponential_smoothing(v, sf, tf)` (formerly `holt_winters`) over one series.
pub fn double_exponential_smoothing(
    points: &[(i64, f64)],
    sf: f64,
    tf: f64,
) -> Result<Option<f64>, QueryError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(QueryError::exec(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(QueryError::exec(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if points.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, &(_, v)) in points.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(vs: &[f64]) -> Vec<(i64, f64)> {
        vs.iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000, v))
            .collect()
    }

    #[test]
    fn stddev_and_stdvar() {
        // Values 2,4,4,4,5,5,7,9: mean 5, population variance 4.
        let p = pts(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((over_time("stdvar_over_time", &p).unwrap_or(0.0) - 4.0).abs() < 1e-12);
        assert!((over_time("stddev_over_time", &p).unwrap_or(0.0) - 2.0).abs() < 1e-12);
        assert_eq!(over_time("avg_over_time", &p), Some(5.0));
        assert_eq!(over_time("mad_over_time", &p), Some(0.5));
    }

    #[test]
    fn smoothing_by_hand() {
        // s1=1, b=1; i=1: s=0.5*2 + 0.5*(1+1) = 2; i=2: b=0.5*(2-1)+0.5*1 = 1,
        // s = 0.5*3 + 0.5*(2+1) = 3.
        let p = pts(&[1.0, 2.0, 3.0]);
        assert_eq!(
            double_exponential_smoothing(&p, 0.5, 0.5).ok().flatten(),
            Some(3.0)
        );
        assert!(double_exponential_smoothing(&p, 1.0, 0.5).is_err());
    }
}
