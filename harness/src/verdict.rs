//! Judging thresholds against a run's measurements. Pure: windows and totals in, verdicts out,
//! so the same code judges a finished record, a live run (for `abort`), and tests.

use crate::outcome::OutcomeClass;
use crate::scenario::Threshold;
use reports::record::{
    Hist, PhaseStats, ThresholdVerdict, ThresholdWindow, TierStats, WindowStats,
};

/// Windows merged into one `TierStats` for a tier (`None`: every tier).
fn stats_of(
    per_tier: &std::collections::BTreeMap<String, TierStats>,
    tier: Option<&str>,
) -> Option<TierStats> {
    match tier {
        Some(t) => per_tier.get(t).cloned(),
        None => TierStats::merge_all(per_tier.values()).ok(),
    }
}

fn error_classes(t: &crate::scenario::ErrorRateThreshold) -> Vec<String> {
    if t.classes.is_empty() {
        OutcomeClass::ALL
            .iter()
            .filter(|c| c.is_error())
            .map(|c| c.as_str().to_owned())
            .collect()
    } else {
        t.classes.clone()
    }
}

/// The observed value of a threshold over some stats lasting `seconds`; `None` without data.
fn observe(t: &Threshold, stats: Option<&TierStats>, seconds: f64) -> Option<f64> {
    if let Some(lat) = &t.latency {
        let s = stats?;
        return latency_ms(&s.latency, lat.percentile);
    }
    let s = stats?;
    if let Some(e) = &t.error_rate {
        if s.count == 0 {
            return None;
        }
        let bad: u64 = error_classes(e)
            .iter()
            .filter_map(|c| s.outcomes.get(c))
            .sum();
        return Some(bad as f64 / s.count as f64);
    }
    if t.throughput.is_some() {
        let ok = s
            .outcomes
            .get(OutcomeClass::Ok.as_str())
            .copied()
            .unwrap_or(0);
        return (seconds > 0.0).then(|| ok as f64 / seconds);
    }
    None
}

fn latency_ms(h: &Hist, percentile: f64) -> Option<f64> {
    h.quantile_ms(percentile / 100.0).ok().flatten()
}

/// A threshold's limit: a ceiling (latency, error share) or a floor (throughput).
struct Limit {
    value: f64,
    unit: &'static str,
    floor: bool,
    tier: Option<String>,
}

impl Limit {
    fn of(t: &Threshold) -> Limit {
        if let Some(l) = &t.latency {
            let ms = l.below.0.as_secs_f64() * 1e3;
            return Limit {
                value: ms,
                unit: "ms",
                floor: false,
                tier: l.tier.clone(),
            };
        }
        if let Some(e) = &t.error_rate {
            return Limit {
                value: e.below,
                unit: "ratio",
                floor: false,
                tier: None,
            };
        }
        let a = t.throughput.as_ref().map_or(0.0, |t| t.above);
        Limit {
            value: a,
            unit: "req/s",
            floor: true,
            tier: None,
        }
    }

    fn passes(&self, v: f64) -> bool {
        if self.floor {
            v >= self.value
        } else {
            v <= self.value
        }
    }

    /// Whether `v` is worse than `w`.
    fn worse(&self, v: f64, w: f64) -> bool {
        if self.floor {
            v < w
        } else {
            v > w
        }
    }
}

fn describe(t: &Threshold) -> String {
    if let Some(l) = &t.latency {
        let tier = l
            .tier
            .as_deref()
            .map_or(String::new(), |t| format!(" of {t}"));
        return format!(
            "p{}{tier} latency from intended send time <= {}",
            l.percentile, l.below
        );
    }
    if let Some(e) = &t.error_rate {
        return format!("share of {} <= {}", error_classes(e).join("|"), e.below);
    }
    format!(
        "successful requests per second >= {}",
        t.throughput.as_ref().map_or(0.0, |t| t.above)
    )
}

/// Judges every threshold over the whole run or over sliding windows of the record's windows.
pub fn judge(
    thresholds: &[Threshold],
    windows: &[WindowStats],
    totals: &PhaseStats,
    window_s: f64,
) -> Vec<ThresholdVerdict> {
    thresholds
        .iter()
        .map(|t| {
            let limit = Limit::of(t);
            let (lim, unit, tier) = (limit.value, limit.unit, limit.tier.clone());
            let (observed, window) = match t.window {
                None => {
                    let stats = if tier.is_some() {
                        stats_of(&totals.per_tier, tier.as_deref())
                    } else {
                        Some(totals.overall.clone())
                    };
                    (
                        observe(t, stats.as_ref(), totals.end_s - totals.start_s),
                        ThresholdWindow::Run,
                    )
                }
                Some(len) => {
                    let k = ((len.secs() / window_s).round() as usize).max(1);
                    let mut worst: Option<(f64, f64)> = None;
                    for i in 0..windows.len().saturating_sub(k - 1) {
                        let span = &windows[i..i + k];
                        let merged: Vec<TierStats> = span
                            .iter()
                            .filter_map(|w| stats_of(&w.per_tier, tier.as_deref()))
                            .collect();
                        let stats = TierStats::merge_all(merged.iter()).ok();
                        let secs = span.last().map_or(0.0, |w| w.end_s) - span[0].start_s;
                        if let Some(v) = observe(t, stats.as_ref(), secs) {
                            let worse = worst.is_none_or(|(w, _)| limit.worse(v, w));
                            if worse {
                                worst = Some((v, span[0].start_s));
                            }
                        }
                    }
                    (
                        worst.map(|w| w.0),
                        ThresholdWindow::Sliding {
                            length_s: len.secs(),
                            worst_start_s: worst.map(|w| w.1),
                        },
                    )
                }
            };
            let passed = observed.is_some_and(|v| limit.passes(v));
            let detail = match observed {
                None => "no requests to judge".to_owned(),
                Some(v) if passed => format!("observed {v:.3} {unit}, limit {lim} {unit}"),
                Some(v) => format!("breached: observed {v:.3} {unit}, limit {lim} {unit}"),
            };
            ThresholdVerdict {
                name: t.name.clone(),
                description: describe(t),
                passed,
                observed,
                limit: lim,
                unit: unit.to_owned(),
                window,
                detail,
            }
        })
        .collect()
}

/// The first `abort: true` threshold breached by the whole run so far, with why; judged on the
/// live recorder (windowed thresholds are judged on the run so far too: the record judges them
/// properly at the end). Nothing is judged before `min_elapsed`, so a cold start cannot abort.
pub fn abort_breach(
    thresholds: &[Threshold],
    rec: &crate::record::Recorder,
    elapsed: f64,
    min_elapsed: f64,
) -> Option<String> {
    if elapsed < min_elapsed {
        return None;
    }
    thresholds.iter().filter(|t| t.abort).find_map(|t| {
        let limit = Limit::of(t);
        let observed = if let Some(l) = &t.latency {
            rec.snapshot_quantile_ms(l.tier.as_deref(), l.percentile / 100.0)
        } else {
            let outcomes = rec.snapshot_outcomes(None);
            let total: u64 = outcomes.values().sum();
            if let Some(e) = &t.error_rate {
                let bad: u64 = error_classes(e).iter().filter_map(|c| outcomes.get(c)).sum();
                (total > 0).then(|| bad as f64 / total as f64)
            } else {
                let ok = outcomes.get(OutcomeClass::Ok.as_str()).copied().unwrap_or(0);
                Some(ok as f64 / elapsed)
            }
        }?;
        (!limit.passes(observed)).then(|| format!("threshold {:?} breached after {elapsed:.0} s: observed {observed:.3} {}, limit {} {}", t.name, limit.unit, limit.value, limit.unit))
    })
}
