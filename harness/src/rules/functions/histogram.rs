//! `histogram_quantile` over classic (`le`-labelled) buckets, as Prometheus' `quantile.go`.

use crate::rules::eval::annotate::MonotonicityFix;
use crate::rules::value::Sample;
use crate::scrape::{Labels, METRIC_NAME_LABEL};
use std::collections::HashMap;

/// What Prometheus annotates about classic-histogram input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    /// `(metric name, le)` of each sample whose `le` is missing or not a number (left out of
    /// the result).
    pub bad_buckets: Vec<(String, String)>,
    /// Each histogram whose bucket counts decreased somewhere and had to be raised.
    pub forced: Vec<MonotonicityFix>,
}

/// Relative difference below which adjacent bucket counts are treated as equal.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// One cumulative bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The `le` bound.
    pub upper_bound: f64,
    /// Observations at or below it.
    pub count: f64,
}

/// Whether two floats are equal within relative `epsilon` (Prometheus' `almost.Equal`).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// The `q`-quantile of classic buckets: linear interpolation within the bucket the rank falls
/// in; the lowest bucket interpolates from 0 (if its bound is positive); a rank in the `+Inf`
/// bucket gives the second-highest bound. NaN without a `+Inf` bucket or observations.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    bucket_quantile_fixed(q, buckets).0
}

/// [`bucket_quantile`], and where it had to force the counts to be monotonic (Prometheus'
/// `BucketQuantile` reports it for the `histogram_quantile` info annotation).
pub fn bucket_quantile_fixed(q: f64, buckets: &mut Vec<Bucket>) -> (f64, Option<MonotonicityFix>) {
    if q.is_nan() {
        return (f64::NAN, None);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, None);
    }
    if q > 1.0 {
        return (f64::INFINITY, None);
    }
    buckets.sort_by(|a, b| {
        a.upper_bound
            .partial_cmp(&b.upper_bound)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return (f64::NAN, None),
    }
    coalesce(buckets);
    let fix = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return (f64::NAN, fix);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, fix);
    }
    let mut rank = q * observations;
    // The first bucket (the +Inf one excluded) whose count reaches the rank.
    let b = buckets[..buckets.len() - 1].partition_point(|x| x.count < rank);
    if b == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].upper_bound, fix);
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return (buckets[0].upper_bound, fix);
    }
    let mut start = 0.0;
    let end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), fix)
}

/// Merges buckets with the same bound (sorted input), adding their counts.
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

/// Forces counts to be non-decreasing, and silences floating-point noise between neighbours;
/// reports where a real decrease was raised (noise is fixed silently, as in Prometheus).
fn ensure_monotonic(buckets: &mut [Bucket]) -> Option<MonotonicityFix> {
    let first = buckets.first()?;
    let mut prev = first.count;
    let mut fix: Option<MonotonicityFix> = None;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            let f = fix.get_or_insert(MonotonicityFix {
                min_bucket: b.upper_bound,
                max_bucket: b.upper_bound,
                max_diff: 0.0,
            });
            f.min_bucket = f.min_bucket.min(b.upper_bound);
            f.max_bucket = f.max_bucket.max(b.upper_bound);
            f.max_diff = f.max_diff.max(prev - curr);
            continue;
        }
        prev = curr;
    }
    fix
}

/// `histogram_quantile(q, v)`: the buckets of each series (grouped by labels without `le`),
/// reported with `le` and the metric name removed. Samples without a parseable `le` are
/// ignored; they and any monotonicity fix are added to `findings`.
pub fn histogram_quantile(q: f64, v: Vec<Sample>, t: i64, findings: &mut Findings) -> Vec<Sample> {
    quantile_of_groups(q, &bucket_groups(v, findings), t, findings)
}

/// The `q`-quantile of each histogram of [`bucket_groups`]; monotonicity fixes go to
/// `findings`.
pub fn quantile_of_groups(
    q: f64,
    groups: &[(Labels, Vec<Bucket>)],
    t: i64,
    findings: &mut Findings,
) -> Vec<Sample> {
    groups
        .iter()
        .map(|(labels, buckets)| {
            let (v, fix) = bucket_quantile_fixed(q, &mut buckets.clone());
            findings.forced.extend(fix);
            Sample {
                labels: labels.clone(),
                t,
                v,
            }
        })
        .collect()
}

/// The fraction of observations between `lower` and `upper`, interpolating linearly inside
/// buckets; the lowest bucket spans from 0 when its bound is positive, else from -Inf (and then
/// contributes nothing to a partial overlap).
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    buckets.sort_by(|a, b| {
        a.upper_bound
            .partial_cmp(&b.upper_bound)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, b) in buckets.iter().enumerate() {
        let lower_bound = if i > 0 {
            buckets[i - 1].upper_bound
        } else if b.upper_bound > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let upper_bound = b.upper_bound;
        // An infinitely wide bucket cannot be interpolated: all of the lowest one lies below
        // any value in it, none of the +Inf one does.
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else if upper_bound == f64::INFINITY {
                rank
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Buckets grouped per histogram (labels without `le`), with the output labels (no `le`, no
/// metric name). Samples without a parseable `le` are left out and listed in `findings`.
pub fn bucket_groups(v: Vec<Sample>, findings: &mut Findings) -> Vec<(Labels, Vec<Bucket>)> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    for s in v {
        let le = s.labels.get("le");
        let Some(upper_bound) = le.and_then(parse_go_float) else {
            findings.bad_buckets.push((
                s.labels.get(METRIC_NAME_LABEL).unwrap_or("").to_string(),
                le.unwrap_or("").to_string(),
            ));
            continue;
        };
        let mut key = s.labels.clone();
        key.remove("le");
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                let mut out = key.clone();
                out.remove(METRIC_NAME_LABEL);
                index.insert(key, groups.len());
                groups.push((out, Vec::new()));
                groups.len() - 1
            }
        };
        groups[i].1.push(Bucket {
            upper_bound,
            count: s.v,
        });
    }
    groups
}

/// `histogram_fraction(lower, upper, v)` over classic buckets; samples without a usable `le`
/// are listed in `findings`.
pub fn histogram_fraction(
    lower: f64,
    upper: f64,
    v: Vec<Sample>,
    t: i64,
    findings: &mut Findings,
) -> Vec<Sample> {
    bucket_groups(v, findings)
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels,
            t,
            v: bucket_fraction(lower, upper, &mut buckets),
        })
        .collect()
}

/// A quantile as `histogram_quantiles` labels it: always with a decimal point (`0.0`, `0.25`).
pub fn format_quantile_label(q: f64) -> String {
    let s = crate::rules::functions::math::format_float(q);
    if s.contains(['.', 'e', 'I', 'N']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// Parses a float as Go's `strconv.ParseFloat` does for label values (`+Inf`, `NaN`, ...).
pub fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t != s || t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(upper_bound: f64, count: f64) -> Bucket {
        Bucket { upper_bound, count }
    }

    #[test]
    fn interpolates_within_the_bucket() {
        // 100 observations: 10 <= 0.1, 50 <= 0.5, 90 <= 1. Median rank 50 is the top of
        // (0.1, 0.5]: 0.5. The 0.7 rank (70) is 20/40 into (0.5, 1]: 0.75.
        let mut bs = vec![
            b(0.1, 10.0),
            b(0.5, 50.0),
            b(1.0, 90.0),
            b(f64::INFINITY, 100.0),
        ];
        assert!((bucket_quantile(0.5, &mut bs.clone()) - 0.5).abs() < 1e-12);
        assert!((bucket_quantile(0.7, &mut bs) - 0.75).abs() < 1e-12);
        // The lowest bucket interpolates from 0: rank 5 of 10 in (0, 0.1].
        let mut bs = vec![b(0.1, 10.0), b(f64::INFINITY, 20.0)];
        assert!((bucket_quantile(0.25, &mut bs) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn fraction_interpolates_and_handles_infinite_buckets() {
        let bs = vec![
            b(1.0, 1.0),
            b(2.0, 3.0),
            b(3.0, 6.0),
            b(f64::INFINITY, 100.0),
        ];
        // [0, 1] whole (1) + half of (1, 2] (1) = 2 of 100.
        assert!((bucket_fraction(0.0, 1.5, &mut bs.clone()) - 0.02).abs() < 1e-12);
        assert_eq!(bucket_fraction(2.0, 2.0, &mut bs.clone()), 0.0);
        assert!(bucket_fraction(f64::NAN, 1.0, &mut bs.clone()).is_nan());
        assert_eq!(
            bucket_fraction(f64::NEG_INFINITY, f64::INFINITY, &mut bs.clone()),
            1.0
        );
        // A lowest bucket reaching -Inf is never split: (-4, -2] counts only (-3, -2].
        let mut neg = vec![b(-3.0, 10.0), b(-2.0, 12.0), b(f64::INFINITY, 100.0)];
        assert!((bucket_fraction(-4.0, -2.0, &mut neg) - 0.02).abs() < 1e-12);
        assert_eq!(format_quantile_label(0.0), "0.0");
        assert_eq!(format_quantile_label(0.25), "0.25");
    }

    #[test]
    fn findings_report_bad_buckets_and_monotonicity_fixes() {
        let sample = |le: Option<&str>, v: f64| {
            let mut labels = Labels::new([("__name__", "x_bucket"), ("job", "a")]);
            if let Some(le) = le {
                labels.set("le", le);
            }
            Sample { labels, t: 0, v }
        };
        let mut f = Findings::default();
        let v = vec![
            sample(Some("1"), 5.0),
            sample(Some("2"), 3.0),
            sample(Some("4"), 2.0),
            sample(Some("+Inf"), 10.0),
            sample(Some("x"), 1.0),
            sample(None, 1.0),
        ];
        let out = histogram_quantile(0.5, v, 0, &mut f);
        assert_eq!(out.len(), 1);
        assert_eq!(
            f.bad_buckets,
            vec![
                ("x_bucket".to_string(), "x".to_string()),
                ("x_bucket".to_string(), String::new())
            ]
        );
        // 3 and 2 raised to 5: buckets 2 to 4, by at most 3.
        assert_eq!(
            f.forced,
            vec![MonotonicityFix {
                min_bucket: 2.0,
                max_bucket: 4.0,
                max_diff: 3.0
            }]
        );
        // Floating-point noise is fixed silently; an invalid quantile never gets that far.
        let mut noise = vec![b(1.0, 5.0), b(2.0, 5.0 - 1e-14), b(f64::INFINITY, 6.0)];
        assert_eq!(bucket_quantile_fixed(0.5, &mut noise).1, None);
        let mut bs = vec![b(1.0, 5.0), b(2.0, 3.0), b(f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile_fixed(2.0, &mut bs).1, None);
    }

    #[test]
    fn edge_cases() {
        // Rank in the +Inf bucket: the highest finite bound.
        let mut bs = vec![b(1.0, 1.0), b(f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.99, &mut bs), 1.0);
        // No +Inf bucket, or no observations: NaN.
        assert!(bucket_quantile(0.5, &mut vec![b(1.0, 1.0)]).is_nan());
        assert!(bucket_quantile(0.5, &mut vec![b(1.0, 0.0), b(f64::INFINITY, 0.0)]).is_nan());
        assert_eq!(bucket_quantile(-1.0, &mut vec![]), f64::NEG_INFINITY);
        // A non-monotonic count is raised to its predecessor: (1, 5), (2, 5), (+Inf, 10).
        let mut bs = vec![b(1.0, 5.0), b(2.0, 3.0), b(f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.4, &mut bs), 0.8);
    }
}
