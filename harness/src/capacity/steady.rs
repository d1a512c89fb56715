//! Steady state, detected rather than guessed: a step is steady when, over its latest
//! measurement span, neither latency nor the number of requests in flight drifts by more than a
//! tolerance. Drift is the Theil–Sen slope (the median of pairwise slopes, so one slow window
//! cannot fake or hide a trend) times the span's length. An overloaded target shows up as both
//! rising: its queue grows by the excess rate every second, and every request waits longer than
//! the one before. Pure; the sweep feeds it one point per statistics window.

/// One statistics window of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Window start, seconds from the step's start.
    pub t_s: f64,
    /// Mean latency of the requests intended in the window, ms.
    pub latency_ms: f64,
    /// Requests in flight at the window's end.
    pub in_flight: f64,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Not enough windows yet, or a drift that is not (yet) overload: keep going.
    Warming,
    /// The span is steady: its statistics describe the rate.
    Steady,
    /// Latency and the in-flight count both rise over the span: the target cannot keep up.
    Rising,
}

/// A verdict on the latest span, with the figures behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// The verdict.
    pub state: State,
    /// Latency change over the span, relative to its median (0.1: rose 10%).
    pub latency_drift: f64,
    /// In-flight change over the span, in requests.
    pub in_flight_change: f64,
}

/// Smallest in-flight change that counts as a trend: at light load the count jitters between a
/// few requests, and a relative tolerance of a small number is noise.
const IN_FLIGHT_FLOOR: f64 = 2.0;

/// Judges the last `span` points of `points` (oldest first) with relative `tolerance`.
pub fn assess(points: &[Point], span: usize, tolerance: f64) -> Assessment {
    let span = span.max(3);
    if points.len() < span {
        return Assessment {
            state: State::Warming,
            latency_drift: 0.0,
            in_flight_change: 0.0,
        };
    }
    let tail = &points[points.len() - span..];
    let length = tail[span - 1].t_s - tail[0].t_s;
    let lat: Vec<(f64, f64)> = tail.iter().map(|p| (p.t_s, p.latency_ms)).collect();
    let fl: Vec<(f64, f64)> = tail.iter().map(|p| (p.t_s, p.in_flight)).collect();
    let level = median(tail.iter().map(|p| p.latency_ms).collect()).max(1e-9);
    let latency_drift = theil_sen(&lat) * length / level;
    let in_flight_change = theil_sen(&fl) * length;
    let fl_level = median(tail.iter().map(|p| p.in_flight).collect());
    let fl_limit = (tolerance * fl_level).max(IN_FLIGHT_FLOOR);
    let state = if latency_drift.abs() <= tolerance && in_flight_change.abs() <= fl_limit {
        State::Steady
    } else if latency_drift > tolerance && in_flight_change > fl_limit {
        State::Rising
    } else {
        State::Warming
    };
    Assessment {
        state,
        latency_drift,
        in_flight_change,
    }
}

/// The Theil–Sen slope of `(x, y)` points: the median of the slopes of all pairs.
pub fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dx = b.0 - a.0;
            if dx.abs() > 1e-12 {
                slopes.push((b.1 - a.1) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    median(slopes)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> (f64, f64), n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let t = i as f64 * 2.0;
                let (latency_ms, in_flight) = f(t);
                Point {
                    t_s: t,
                    latency_ms,
                    in_flight,
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_noisy_series_is_steady() {
        // +-10% alternating noise and one window three times slower: no trend.
        let mut p = series(
            |t| (if (t as i64 / 2) % 2 == 0 { 110.0 } else { 90.0 }, 1.0),
            10,
        );
        p[4].latency_ms = 300.0;
        let a = assess(&p, 10, 0.15);
        assert_eq!(a.state, State::Steady, "{a:?}");
        assert!(a.latency_drift.abs() < 0.05, "{a:?}");
    }

    #[test]
    fn overload_rises_and_a_warm_up_is_not_steady_until_it_ends() {
        // A queue growing by 2 requests a second: waits grow with it.
        let p = series(|t| (100.0 + 50.0 * t, 2.0 * t), 10);
        let a = assess(&p, 10, 0.15);
        assert_eq!(a.state, State::Rising, "{a:?}");
        // A cold start: slow at first, falling to 100 ms after 10 s.
        let p = series(|t| (100.0 + (10.0 - t).max(0.0) * 40.0, 1.0), 16);
        assert_eq!(assess(&p[..10], 10, 0.15).state, State::Warming);
        assert_eq!(assess(&p, 10, 0.15).state, State::Steady);
        // Too few windows to say.
        assert_eq!(assess(&p[..4], 10, 0.15).state, State::Warming);
    }

    #[test]
    fn in_flight_jitter_at_light_load_is_not_a_trend() {
        let p = series(
            |t| (100.0, if (t as i64 / 2) % 3 == 0 { 2.0 } else { 0.0 }),
            10,
        );
        assert_eq!(assess(&p, 10, 0.15).state, State::Steady);
    }

    #[test]
    fn theil_sen_ignores_an_outlier() {
        let mut pts: Vec<(f64, f64)> = (0..9).map(|i| (i as f64, 2.0 * i as f64)).collect();
        pts[3].1 = 1000.0;
        assert!((theil_sen(&pts) - 2.0).abs() < 1e-9);
    }
}
