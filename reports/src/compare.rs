//! Comparing two runs of the same scenario: per tier p50/p95/p99 latency, error rate and
//! throughput side by side, with a verdict that knows noise. Latency quantiles get a bootstrap
//! interval: each run's statistics windows are resampled with replacement (whole windows, so
//! that a slow stretch stays together, as it happened), merged, and the quantile taken; the
//! candidate/baseline ratio over 1000 such pairs gives a 95% interval. A latency regression needs
//! a ratio above `1 + tolerance` and an interval whose lower end is above `1 + tolerance / 2`:
//! confidence that the slowdown is at least half the tolerance. Resampling windows captures the
//! noise within a run, not between runs (a machine a few percent slower for one whole run), and
//! measured on real same-build pairs, "the interval excludes 1" flagged 2 of 10 (one +11.7%
//! shift of a whole run, one run with a few very slow windows); a tier with fewer than
//! `min_samples` requests in either run is reported as too small to judge, not as a pass or a
//! failure. Error rates use a two-proportion z-test. Pure: two records in, a verdict out.

use crate::record::{RecordError, RunRecord, WindowStats};
use std::collections::BTreeMap;

/// Outcome classes that do not count as errors (blocks are the classifiers' answers; rate limits
/// are the client's).
const NOT_ERRORS: [&str; 4] = ["ok", "blocked_pre", "blocked_post", "rate_limited"];

/// How strict a comparison is.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Relative slowdown of a latency quantile (or drop in throughput) tolerated: 0.1 = 10%.
    pub tolerance: f64,
    /// Absolute rise in error rate tolerated: 0.01 = one point.
    pub error_tolerance: f64,
    /// Fewer requests than this in a tier, in either run: not judged.
    pub min_samples: u64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the resampling (the same records and seed give the same verdict).
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            tolerance: 0.1,
            error_tolerance: 0.01,
            min_samples: 100,
            resamples: 1000,
            seed: 1,
        }
    }
}

/// What one row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Within tolerance, or not distinguishable from noise.
    Same,
    /// Worse beyond tolerance, and not noise.
    Regression,
    /// Better beyond tolerance, and not noise.
    Improvement,
    /// Too few samples to say.
    TooFew,
}

impl Judgement {
    /// `same`, `REGRESSION`, `improvement`, `too few samples`.
    pub fn as_str(self) -> &'static str {
        match self {
            Judgement::Same => "same",
            Judgement::Regression => "REGRESSION",
            Judgement::Improvement => "improvement",
            Judgement::TooFew => "too few samples",
        }
    }
}

/// One metric of one tier, both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The tier, or `all`.
    pub tier: String,
    /// `p50`, `p95`, `p99` (ms), `error rate`, `throughput` (req/s).
    pub metric: String,
    /// The baseline's value.
    pub baseline: Option<f64>,
    /// The candidate's value.
    pub candidate: Option<f64>,
    /// Candidate over baseline for latency and throughput, the difference for error rates.
    pub change: Option<f64>,
    /// The 95% interval of `change`, where one was computed.
    pub interval: Option<(f64, f64)>,
    /// The verdict.
    pub judgement: Judgement,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Every row, tier by tier.
    pub rows: Vec<Row>,
    /// Whether no row is a regression.
    pub passed: bool,
}

/// A small deterministic generator (splitmix64): the resampling must not depend on a crate's
/// stream or the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One tier's windows over a shared, sorted list of distinct latencies (µs): each window is a
/// list of (index into `values`, count), so that a resample is a sum of counts into one array
/// and all quantiles come from one pass over it.
struct Windows {
    values: Vec<u64>,
    windows: Vec<Vec<(usize, u64)>>,
}

/// Each window's recorded latencies of `tier`, as (value µs, count).
fn sparse_windows(
    windows: &[WindowStats],
    tier: &str,
) -> Result<Vec<Vec<(u64, u64)>>, RecordError> {
    let mut out = Vec::new();
    for w in windows {
        let Some(t) = w.per_tier.get(tier) else {
            continue;
        };
        if t.latency.count == 0 {
            continue;
        }
        let h = t.latency.decode()?;
        out.push(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        );
    }
    Ok(out)
}

/// Both runs' windows of one tier over the same value list.
fn indexed(a: Vec<Vec<(u64, u64)>>, b: Vec<Vec<(u64, u64)>>) -> (Windows, Windows) {
    let mut values: Vec<u64> = a.iter().chain(&b).flatten().map(|e| e.0).collect();
    values.sort_unstable();
    values.dedup();
    let index = |w: Vec<Vec<(u64, u64)>>| -> Vec<Vec<(usize, u64)>> {
        w.into_iter()
            .map(|win| {
                win.into_iter()
                    .map(|(v, c)| (values.binary_search(&v).unwrap_or(0), c))
                    .collect()
            })
            .collect()
    };
    let (wa, wb) = (index(a), index(b));
    (
        Windows {
            values: values.clone(),
            windows: wa,
        },
        Windows {
            values,
            windows: wb,
        },
    )
}

impl Windows {
    /// The quantiles `qs` (ms) of the windows picked by `picks` (indices, repeats allowed), as
    /// HdrHistogram takes them: the smallest value with at least q of the samples at or below.
    fn quantiles(&self, picks: &[usize], qs: &[f64], counts: &mut Vec<u64>) -> Vec<Option<f64>> {
        counts.clear();
        counts.resize(self.values.len(), 0);
        let mut total = 0;
        for &p in picks {
            for &(i, c) in &self.windows[p] {
                counts[i] += c;
                total += c;
            }
        }
        if total == 0 {
            return vec![None; qs.len()];
        }
        let ranks: Vec<u64> = qs
            .iter()
            .map(|q| ((q * total as f64).ceil() as u64).clamp(1, total))
            .collect();
        let mut out = vec![None; qs.len()];
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            for (k, r) in ranks.iter().enumerate() {
                if out[k].is_none() && seen >= *r {
                    out[k] = Some(self.values[i] as f64 / 1000.0);
                }
            }
            if out.iter().all(Option::is_some) {
                break;
            }
        }
        out
    }

    fn all(&self) -> Vec<usize> {
        (0..self.windows.len()).collect()
    }

    fn resample(&self, rng: &mut Rng) -> Vec<usize> {
        let n = self.windows.len();
        (0..n).map(|_| rng.below(n)).collect()
    }
}

/// The 2.5% and 97.5% points of `xs` (sorted in place).
fn interval(xs: &mut [f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let at = |p: f64| xs[((p * (xs.len() - 1) as f64).round() as usize).min(xs.len() - 1)];
    Some((at(0.025), at(0.975)))
}

fn count(windows: &[WindowStats], tier: &str) -> u64 {
    windows
        .iter()
        .filter_map(|w| w.per_tier.get(tier))
        .map(|t| t.latency.count)
        .sum()
}

fn errors_and_total(r: &RunRecord, tier: Option<&str>) -> (u64, u64) {
    let outcomes: BTreeMap<String, u64> = match tier {
        Some(t) => r
            .totals
            .per_tier
            .get(t)
            .map(|s| s.outcomes.clone())
            .unwrap_or_default(),
        None => r.outcomes.clone(),
    };
    let total: u64 = outcomes.values().sum();
    let errors = outcomes
        .iter()
        .filter(|(k, _)| !NOT_ERRORS.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
    (errors, total)
}

/// Compares `candidate` with `baseline`.
pub fn compare(
    baseline: &RunRecord,
    candidate: &RunRecord,
    opts: &CompareOptions,
) -> Result<Comparison, RecordError> {
    let mut rows = Vec::new();
    let mut rng = Rng(opts.seed);
    let tiers: Vec<String> = baseline
        .totals
        .per_tier
        .iter()
        .chain(candidate.totals.per_tier.iter())
        .filter(|(_, t)| t.count > 0)
        .map(|(k, _)| k.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for tier in &tiers {
        let (bw, cw) = indexed(
            sparse_windows(&baseline.windows, tier)?,
            sparse_windows(&candidate.windows, tier)?,
        );
        let enough = count(&baseline.windows, tier) >= opts.min_samples
            && count(&candidate.windows, tier) >= opts.min_samples;
        const QS: [(&str, f64); 3] = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)];
        let qs: Vec<f64> = QS.iter().map(|q| q.1).collect();
        let mut buf = Vec::new();
        let b = bw.quantiles(&bw.all(), &qs, &mut buf);
        let c = cw.quantiles(&cw.all(), &qs, &mut buf);
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); qs.len()];
        if enough && !bw.windows.is_empty() && !cw.windows.is_empty() {
            for _ in 0..opts.resamples {
                let rb = bw.quantiles(&bw.resample(&mut rng), &qs, &mut buf);
                let rc = cw.quantiles(&cw.resample(&mut rng), &qs, &mut buf);
                for k in 0..qs.len() {
                    if let (Some(x), Some(y)) = (rb[k], rc[k]) {
                        if x > 0.0 {
                            ratios[k].push(y / x);
                        }
                    }
                }
            }
        }
        for (k, (name, _)) in QS.iter().enumerate() {
            let change = b[k].zip(c[k]).filter(|(b, _)| *b > 0.0).map(|(b, c)| c / b);
            let ci = interval(&mut ratios[k]);
            let judgement = match (enough, change, ci) {
                (false, _, _) | (_, None, _) | (_, _, None) => Judgement::TooFew,
                (true, Some(r), Some((lo, _)))
                    if r > 1.0 + opts.tolerance && lo > 1.0 + opts.tolerance / 2.0 =>
                {
                    Judgement::Regression
                }
                (true, Some(r), Some((_, hi)))
                    if r < 1.0 / (1.0 + opts.tolerance)
                        && hi < 1.0 / (1.0 + opts.tolerance / 2.0) =>
                {
                    Judgement::Improvement
                }
                _ => Judgement::Same,
            };
            rows.push(Row {
                tier: tier.clone(),
                metric: (*name).into(),
                baseline: b[k],
                candidate: c[k],
                change,
                interval: ci,
                judgement,
            });
        }
        rows.push(error_row(baseline, candidate, Some(tier), opts));
    }
    rows.push(error_row(baseline, candidate, None, opts));
    rows.push(throughput_row(baseline, candidate, opts));
    let passed = rows.iter().all(|r| r.judgement != Judgement::Regression);
    Ok(Comparison { rows, passed })
}

/// Error rates compared by a two-proportion z-test at 95%.
fn error_row(b: &RunRecord, c: &RunRecord, tier: Option<&str>, opts: &CompareOptions) -> Row {
    let (be, bn) = errors_and_total(b, tier);
    let (ce, cn) = errors_and_total(c, tier);
    let rate = |e: u64, n: u64| (n > 0).then(|| e as f64 / n as f64);
    let (pb, pc) = (rate(be, bn), rate(ce, cn));
    let change = pb.zip(pc).map(|(b, c)| c - b);
    let interval = (bn > 0 && cn > 0).then(|| {
        let (pb, pc) = (be as f64 / bn as f64, ce as f64 / cn as f64);
        let se = (pb * (1.0 - pb) / bn as f64 + pc * (1.0 - pc) / cn as f64).sqrt();
        (pc - pb - 1.96 * se, pc - pb + 1.96 * se)
    });
    let judgement = match (change, interval) {
        _ if bn < opts.min_samples || cn < opts.min_samples => Judgement::TooFew,
        (Some(d), Some((lo, _))) if d > opts.error_tolerance && lo > 0.0 => Judgement::Regression,
        (Some(d), Some((_, hi))) if d < -opts.error_tolerance && hi < 0.0 => Judgement::Improvement,
        (Some(_), Some(_)) => Judgement::Same,
        _ => Judgement::TooFew,
    };
    Row {
        tier: tier.unwrap_or("all").into(),
        metric: "error rate".into(),
        baseline: pb,
        candidate: pc,
        change,
        interval,
        judgement,
    }
}

/// Achieved throughput: the mean of the windows' rates, bootstrapped over windows.
fn throughput_row(b: &RunRecord, c: &RunRecord, opts: &CompareOptions) -> Row {
    let rates = |r: &RunRecord| -> Vec<f64> { r.windows.iter().map(|w| w.achieved_rate).collect() };
    let (rb, rc) = (rates(b), rates(c));
    let mean = |x: &[f64]| (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64);
    let (mb, mc) = (mean(&rb), mean(&rc));
    let change = mb.zip(mc).filter(|(b, _)| *b > 0.0).map(|(b, c)| c / b);
    let mut rng = Rng(opts.seed ^ 0x5EED);
    let mut ratios = Vec::new();
    if !rb.is_empty() && !rc.is_empty() {
        for _ in 0..opts.resamples {
            let pick = |x: &[f64], rng: &mut Rng| {
                (0..x.len()).map(|_| x[rng.below(x.len())]).sum::<f64>() / x.len() as f64
            };
            let (sb, sc) = (pick(&rb, &mut rng), pick(&rc, &mut rng));
            if sb > 0.0 {
                ratios.push(sc / sb);
            }
        }
    }
    let ci = interval(&mut ratios);
    let judgement = match (change, ci) {
        (Some(r), Some((_, hi))) if r < 1.0 - opts.tolerance && hi < 1.0 => Judgement::Regression,
        (Some(r), Some((lo, _))) if r > 1.0 + opts.tolerance && lo > 1.0 => Judgement::Improvement,
        (Some(_), Some(_)) => Judgement::Same,
        _ => Judgement::TooFew,
    };
    Row {
        tier: "all".into(),
        metric: "throughput".into(),
        baseline: mb,
        candidate: mc,
        change,
        interval: ci,
        judgement,
    }
}

/// The comparison as a Markdown table with the verdict first.
pub fn render_markdown(c: &Comparison, baseline: &str, candidate: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let regressions = c
        .rows
        .iter()
        .filter(|r| r.judgement == Judgement::Regression)
        .count();
    let _ = writeln!(
        out,
        "## {}: {candidate} against {baseline}\n",
        if c.passed {
            "PASS".to_owned()
        } else {
            format!("FAIL ({regressions} regression(s))")
        }
    );
    let _ = writeln!(
        out,
        "| tier | metric | baseline | candidate | change | 95% interval | verdict |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|---|");
    for r in &c.rows {
        let latency = r.metric.starts_with('p');
        let value = |v: Option<f64>| match v {
            None => "-".to_owned(),
            Some(v) if latency => format!("{v:.1} ms"),
            Some(v) if r.metric == "error rate" => format!("{:.2}%", v * 100.0),
            Some(v) => format!("{v:.2}/s"),
        };
        let change = |v: f64| {
            if r.metric == "error rate" {
                format!("{:+.2} pt", v * 100.0)
            } else {
                format!("{:+.1}%", (v - 1.0) * 100.0)
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.tier,
            r.metric,
            value(r.baseline),
            value(r.candidate),
            r.change.map_or("-".to_owned(), change),
            r.interval.map_or("-".to_owned(), |(lo, hi)| format!(
                "{} … {}",
                change(lo),
                change(hi)
            )),
            r.judgement.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Hist, HistConfig, TierStats};
    use hdrhistogram::Histogram;

    /// A record of `windows` one-second windows of `per_window` turbo requests whose latencies
    /// spread around `base_ms` (deterministic), `errors` of them failed.
    fn record(windows: usize, per_window: u64, base_ms: f64, seed: u64, errors: u64) -> RunRecord {
        let cfg = HistConfig::default();
        let mut rng = Rng(seed);
        let mut r = crate::record::tests::sample_record();
        let template = r.windows[0].clone();
        r.windows.clear();
        let mut all = Histogram::<u64>::new_with_bounds(
            cfg.lowest_us,
            cfg.highest_us,
            cfg.significant_digits,
        )
        .unwrap();
        for i in 0..windows {
            let mut h = Histogram::<u64>::new_with_bounds(
                cfg.lowest_us,
                cfg.highest_us,
                cfg.significant_digits,
            )
            .unwrap();
            for _ in 0..per_window {
                // A long-tailed spread: base times 1 + an exponential-ish factor.
                let u = (rng.next() % 10_000) as f64 / 10_000.0;
                let v = base_ms * (1.0 + (-(1.0 - u).ln()) * 0.3);
                h.record((v * 1000.0) as u64).unwrap();
            }
            all.add(&h).unwrap();
            let hist = Hist::from_histogram(&h).unwrap();
            let t = TierStats {
                count: per_window,
                outcomes: BTreeMap::from([("ok".into(), per_window)]),
                latency: hist.clone(),
                service_time: hist.clone(),
                send_delay: Hist::empty(&cfg).unwrap(),
            };
            let mut w = template.clone();
            w.start_s = i as f64;
            w.end_s = i as f64 + 1.0;
            w.completed = per_window;
            w.achieved_rate = per_window as f64;
            w.per_tier = BTreeMap::from([("turbo".into(), t)]);
            r.windows.push(w);
        }
        let n = windows as u64 * per_window;
        let hist = Hist::from_histogram(&all).unwrap();
        r.totals.per_tier = BTreeMap::from([(
            "turbo".into(),
            TierStats {
                count: n,
                outcomes: BTreeMap::from([
                    ("ok".into(), n - errors),
                    ("http_error".into(), errors),
                ]),
                latency: hist.clone(),
                service_time: hist,
                send_delay: Hist::empty(&cfg).unwrap(),
            },
        )]);
        r.outcomes = BTreeMap::from([("ok".into(), n - errors), ("http_error".into(), errors)]);
        r
    }

    fn row<'a>(c: &'a Comparison, metric: &str) -> &'a Row {
        c.rows
            .iter()
            .find(|r| r.tier == "turbo" && r.metric == metric)
            .unwrap()
    }

    #[test]
    fn a_thirty_percent_slower_build_is_a_regression() {
        let base = record(30, 20, 100.0, 1, 0);
        let slow = record(30, 20, 130.0, 2, 0);
        let c = compare(&base, &slow, &CompareOptions::default()).unwrap();
        let p95 = row(&c, "p95");
        assert_eq!(p95.judgement, Judgement::Regression, "{p95:?}");
        assert!((p95.change.unwrap() - 1.3).abs() < 0.1, "{p95:?}");
        assert!(!c.passed);
        let md = render_markdown(&c, "base.json", "slow.json");
        assert!(md.starts_with("## FAIL"), "{md}");
        assert!(md.contains("| turbo | p95 |"), "{md}");
    }

    #[test]
    fn two_runs_of_the_same_build_are_the_same() {
        let mut alarms = 0;
        for seed in 0..10 {
            let a = record(30, 20, 100.0, seed * 2 + 10, 0);
            let b = record(30, 20, 100.0, seed * 2 + 11, 0);
            let c = compare(&a, &b, &CompareOptions::default()).unwrap();
            alarms += usize::from(!c.passed);
        }
        assert_eq!(alarms, 0);
    }

    #[test]
    fn few_samples_are_not_judged_and_errors_are_compared_as_proportions() {
        let a = record(5, 10, 100.0, 3, 0);
        let b = record(5, 10, 200.0, 4, 0);
        let c = compare(&a, &b, &CompareOptions::default()).unwrap();
        assert_eq!(row(&c, "p95").judgement, Judgement::TooFew);
        assert!(c.passed);
        let clean = record(30, 20, 100.0, 5, 0);
        let failing = record(30, 20, 100.0, 6, 60);
        let c = compare(&clean, &failing, &CompareOptions::default()).unwrap();
        let e = row(&c, "error rate");
        assert_eq!(e.judgement, Judgement::Regression, "{e:?}");
        assert!((e.change.unwrap() - 0.1).abs() < 1e-9);
        // The same record against itself: every row the same, bit for bit.
        let c = compare(&clean, &clean, &CompareOptions::default()).unwrap();
        assert!(
            c.rows.iter().all(|r| r.judgement == Judgement::Same),
            "{c:?}"
        );
    }
}
