//! Rates and slopes over a range: `rate`/`increase`/`delta` (extrapolated), `irate`/`idelta`,
//! `deriv`, `predict_linear`, `changes`, `resets`.

use super::math::kahan_sum_inc;

/// Seconds from `from` to `to` (ms), without overflow at extreme timestamps.
pub fn seconds_between(from: i64, to: i64) -> f64 {
    (i128::from(to) - i128::from(from)) as f64 / 1000.0
}

/// `rate` (counter, per second), `increase` (counter) and `delta` (gauge) over the points of
/// one series in the window `(range_start, range_end]` (ms), extrapolated toward the window's
/// edges as Prometheus does. `None` with fewer than two points.
pub fn extrapolated_rate(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        // Add back what each counter reset lost.
        let mut prev = 0.0;
        for &(_, v) in points {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = seconds_between(range_start, first_t);
    let mut to_end = seconds_between(last_t, range_end);
    let sampled = seconds_between(first_t, last_t);
    let avg_step = sampled / (points.len() - 1) as f64;
    // Extrapolate to an edge only if a sample could be expected there (within 110% of the
    // average step); else assume the series starts or ends half a step beyond its samples.
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // A counter does not go below zero: don't extrapolate past where it would be zero.
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= seconds_between(range_start, range_end);
    }
    Some(result * factor)
}

/// `irate` (per-second, counter resets honoured) or `idelta` from the last two points.
pub fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = points[points.len() - 2];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = if is_rate && last_v < prev_v {
        last_v
    } else {
        last_v - prev_v
    };
    let interval = seconds_between(prev_t, last_t);
    if interval == 0.0 {
        return None;
    }
    if is_rate {
        result /= interval;
    }
    Some(result)
}

/// Least-squares slope and intercept (at `intercept_t` ms) of the points, x in seconds.
pub fn linear_regression(points: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let Some(&(_, init_y)) = points.first() else {
        return (f64::NAN, f64::NAN);
    };
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = seconds_between(intercept_t, t);
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `deriv`: the regression slope per second.
pub fn deriv(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    Some(linear_regression(points, points[0].0).0)
}

/// `predict_linear`: the regression's value `seconds` after `t` (ms).
pub fn predict_linear(points: &[(i64, f64)], t: i64, seconds: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(points, t);
    Some(slope * seconds + intercept)
}

/// `changes`: how many times the value changed (NaN to NaN is no change).
pub fn changes(points: &[(i64, f64)]) -> f64 {
    points
        .windows(2)
        .filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
        .count() as f64
}

/// `resets`: how many times the value decreased.
pub fn resets(points: &[(i64, f64)]) -> f64 {
    points.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn increase_extrapolates_to_window_edges() {
        // Samples every 60 s from t=60 s to t=240 s rising by 10; window (0, 300 s].
        let pts: Vec<(i64, f64)> = (1..=4)
            .map(|i| (i * 60_000, 100.0 + 10.0 * i as f64))
            .collect();
        // 30 increase over 180 s; each edge is 60 s away (< 66 s threshold): extrapolated
        // over 300 s -> 50.
        let inc = extrapolated_rate(&pts, 0, 300_000, true, false);
        assert!(close(inc.unwrap_or(0.0), 50.0));
        let rate = extrapolated_rate(&pts, 0, 300_000, true, true);
        assert!(close(rate.unwrap_or(0.0), 50.0 / 300.0));
    }

    #[test]
    fn increase_stops_at_zero_point_and_handles_resets() {
        // 0+10 at 60 s, 20 at 120 s: increase 10 over 60 s; to start is 60 s but the zero
        // point is 60 s away as well; at 150 s window end: 30 s to end.
        let pts = [(60_000, 10.0), (120_000, 20.0)];
        let v = extrapolated_rate(&pts, 0, 150_000, true, false).unwrap_or(0.0);
        assert!(close(v, 10.0 * (60.0 + 60.0 + 30.0) / 60.0));
        // A reset from 20 to 5: the increase is 20 - 10 + 5 = 15.
        let pts = [(0, 10.0), (60_000, 20.0), (120_000, 5.0)];
        let v = extrapolated_rate(&pts, 0, 120_000, true, false).unwrap_or(0.0);
        assert!(close(v, 15.0));
    }

    #[test]
    fn delta_extrapolates_by_half_a_step_when_far_from_edges() {
        // Two samples 60 s apart in a 600 s window, far from both edges: half a step each.
        let pts = [(200_000, 1.0), (260_000, 4.0)];
        let v = extrapolated_rate(&pts, 0, 600_000, false, false).unwrap_or(0.0);
        assert!(close(v, 3.0 * 120.0 / 60.0));
    }

    #[test]
    fn irate_and_idelta() {
        let pts = [(0, 1.0), (10_000, 5.0), (20_000, 2.0)];
        assert_eq!(instant_value(&pts, true), Some(0.2));
        assert_eq!(instant_value(&pts, false), Some(-3.0));
    }

    #[test]
    fn regression_slope_and_prediction() {
        // y = 2x + 1 with x in seconds.
        let pts: Vec<(i64, f64)> = (0..5).map(|i| (i * 1000, 2.0 * i as f64 + 1.0)).collect();
        assert!(close(deriv(&pts).unwrap_or(0.0), 2.0));
        // At t = 4 s the line is 9; 10 s later 29.
        assert!(close(predict_linear(&pts, 4000, 10.0).unwrap_or(0.0), 29.0));
        let flat = [(0, 3.0), (1000, 3.0)];
        assert_eq!(predict_linear(&flat, 0, 100.0), Some(3.0));
    }
}
