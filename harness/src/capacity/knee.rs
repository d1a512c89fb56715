//! The knee of latency against throughput: where latency stops being flat and turns up. Found
//! with Kneedle (Satopää et al., 2011): scale both axes to [0, 1] over the measured points and
//! take the point farthest below the chord from the first point to the last, i.e. the largest
//! `x - y`. For a rising, convex curve that is the point of greatest curvature. Pure.
//!
//! Like Kneedle's sensitivity threshold, a bend too slight to matter is no knee: a tier that
//! priority shields rises evenly to the end, and the point "farthest below" its chord is then
//! noise at light load.

/// The least distance below the chord (in the unit square) that counts as a bend: a fifth of the
/// ranges. A hockey stick scores 0.7–0.9; a gently rising line under 0.1.
pub const MIN_BEND: f64 = 0.2;

/// The knee of the curve through `points` (`(throughput, latency)`, any order): the index into
/// `points` of the knee, or None with fewer than three distinct throughputs or no bend (a
/// straight or concave curve has no point below its chord, and one at most [`MIN_BEND`] below
/// it is too slight to call).
pub fn knee(points: &[(f64, f64)]) -> Option<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    if order.len() < 3 {
        return None;
    }
    let (x0, x1) = (points[order[0]].0, points[*order.last()?].0);
    let (lo, hi) = order
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &i| {
            (l.min(points[i].1), h.max(points[i].1))
        });
    if x1 - x0 <= 0.0 || hi - lo <= 0.0 {
        return None;
    }
    let mut best: Option<(usize, f64)> = None;
    for &i in &order {
        let x = (points[i].0 - x0) / (x1 - x0);
        let y = (points[i].1 - lo) / (hi - lo);
        let d = x - y;
        if d > MIN_BEND && best.is_none_or(|(_, b)| d > b) {
            best = Some((i, d));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hockey_stick_bends_where_latency_turns_up() {
        // M/M/1-like: latency 1/(mu - x) with mu = 10; flat until ~7, steep after.
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 9.5]
            .iter()
            .map(|&x| (x, 1000.0 / (10.0 - x)))
            .collect();
        let k = knee(&pts).unwrap();
        assert!((7.0..=9.0).contains(&pts[k].0), "knee at {:?}", pts[k]);
        // Order does not matter.
        let mut rev = pts.clone();
        rev.reverse();
        assert_eq!(rev[knee(&rev).unwrap()], pts[k]);
    }

    #[test]
    fn a_straight_line_or_too_few_points_have_none() {
        assert_eq!(knee(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]), None);
        assert_eq!(knee(&[(1.0, 1.0), (2.0, 5.0)]), None);
        assert_eq!(knee(&[(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]), None);
        // A tier shielded by priority (measured: turbo under an overloaded fast tier) rises
        // evenly; its largest gap below the chord is 0.10, at light load: no knee.
        let turbo = [
            (0.6, 93.0),
            (1.1, 90.0),
            (2.42, 92.0),
            (3.95, 129.0),
            (8.2, 161.0),
            (8.75, 169.0),
            (9.95, 210.0),
            (12.55, 212.0),
            (16.77, 254.0),
        ];
        assert_eq!(knee(&turbo), None);
    }
}
