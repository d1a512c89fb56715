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

/// How many statistics windows of `window_s` a sliding window of `len_s` spans.
fn span_len(len_s: f64, window_s: f64) -> usize {
    ((len_s / window_s).round() as usize).max(1)
}

/// The worst observed value over every run of `k` consecutive windows, with the start of that
/// run; `None` when no full run of `k` windows has data.
fn worst_window(
    t: &Threshold,
    limit: &Limit,
    windows: &[WindowStats],
    k: usize,
) -> Option<(f64, f64)> {
    let tier = limit.tier.as_deref();
    let mut worst: Option<(f64, f64)> = None;
    for span in windows.windows(k) {
        let merged: Vec<TierStats> = span
            .iter()
            .filter_map(|w| stats_of(&w.per_tier, tier))
            .collect();
        let stats = TierStats::merge_all(merged.iter()).ok();
        let secs = span.last().map_or(0.0, |w| w.end_s) - span[0].start_s;
        if let Some(v) = observe(t, stats.as_ref(), secs) {
            if worst.is_none_or(|(w, _)| limit.worse(v, w)) {
                worst = Some((v, span[0].start_s));
            }
        }
    }
    worst
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
                    let worst = worst_window(t, &limit, windows, span_len(len.secs(), window_s));
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

/// The first `abort: true` threshold breached so far, with why, judged on the live recorder: a
/// whole-run threshold on the run so far, a windowed one on its latest span of sealed windows
/// (`window_s` long each). Nothing is judged before `min_elapsed`, so a cold start cannot abort.
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
        let (observed, over) = match t.window {
            Some(len) => {
                let window_s = rec.window().as_secs_f64();
                let k = span_len(len.secs(), window_s);
                // A few spans more than one: windows that sealed between two checks count too.
                let (v, from) = worst_window(t, &limit, &rec.sealed_tail(k + 4), k)?;
                (v, format!("in the {} window from {from:.0} s", len))
            }
            None => (run_so_far(t, &limit, rec, elapsed)?, "over the run so far".to_owned()),
        };
        (!limit.passes(observed)).then(|| {
            format!(
                "threshold {:?} breached after {elapsed:.0} s {over}: observed {observed:.3} {}, limit {} {}",
                t.name, limit.unit, limit.value, limit.unit
            )
        })
    })
}

/// A threshold's value over the whole run so far, from the recorder's live totals.
fn run_so_far(
    t: &Threshold,
    limit: &Limit,
    rec: &crate::record::Recorder,
    elapsed: f64,
) -> Option<f64> {
    if let Some(l) = &t.latency {
        return rec.snapshot_quantile_ms(limit.tier.as_deref(), l.percentile / 100.0);
    }
    let outcomes = rec.snapshot_outcomes(None);
    let total: u64 = outcomes.values().sum();
    if let Some(e) = &t.error_rate {
        let bad: u64 = error_classes(e)
            .iter()
            .filter_map(|c| outcomes.get(c))
            .sum();
        return (total > 0).then(|| bad as f64 / total as f64);
    }
    let ok = outcomes
        .get(OutcomeClass::Ok.as_str())
        .copied()
        .unwrap_or(0);
    Some(ok as f64 / elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Recorder, RequestResult};
    use crate::scenario::Scenario;
    use reports::record::HistConfig;
    use std::time::Duration;

    fn thresholds(window: &str) -> Vec<Threshold> {
        let text = format!(
            "version: 1\nname: t\ntarget: {{url: {{base: 'http://127.0.0.1:1'}}}}\nload:\n  stages: [{{hold: 1, for: 1s}}]\nthresholds:\n  - name: p95\n    latency: {{percentile: 95, below: 100ms}}\n    abort: true\n{window}"
        );
        Scenario::parse(&text).unwrap().thresholds
    }

    /// 100 s of 10 ms answers with one 2 s stretch of 1 s answers at 50-52 s, fed up to `until`.
    fn recorder(until: u64) -> Recorder {
        let mut r = Recorder::new(Duration::from_secs(1), ["t"], HistConfig::default())
            .with_settle(Duration::ZERO);
        for i in 0..until * 10 {
            let at = Duration::from_millis(i * 100);
            let took = if (50_000..52_000).contains(&at.as_millis()) {
                1000
            } else {
                10
            };
            r.note_offered(at);
            r.record(&RequestResult {
                tier: "t".into(),
                outcome: "ok".into(),
                intended: at,
                sent: at,
                finished: at + Duration::from_millis(took),
            });
        }
        r
    }

    #[test]
    fn a_windowed_abort_sees_a_bad_stretch_the_whole_run_hides() {
        let run = thresholds("");
        let windowed = thresholds("    window: 2s\n");
        // Before the stretch nothing is breached either way.
        let r = recorder(45);
        assert_eq!(abort_breach(&windowed, &r, 45.0, 5.0), None);
        // Once the stretch's windows seal, the windowed threshold aborts and says where...
        let r = recorder(53);
        let why = abort_breach(&windowed, &r, 53.0, 5.0).expect("windowed breach");
        assert!(
            why.contains("window from 49 s") || why.contains("window from 50 s"),
            "{why}"
        );
        // ...while 2% slow answers leave the whole run's p95 under its limit.
        assert_eq!(abort_breach(&run, &r, 53.0, 5.0), None);
        // Checks that come later still see it, for a while (a check per second suffices).
        assert!(abort_breach(&windowed, &recorder(56), 56.0, 5.0).is_some());
        // Nothing is judged during the warm-up.
        assert_eq!(abort_breach(&windowed, &r, 4.0, 5.0), None);
    }

    #[test]
    fn the_live_windowed_verdict_matches_the_final_one() {
        let windowed = thresholds("    window: 2s\n");
        let r = recorder(53);
        let live = abort_breach(&windowed, &r, 53.0, 5.0).is_some();
        let (windows, totals, ..) = r.finish(Duration::from_secs(53), Duration::from_millis(10));
        let v = &judge(&windowed, &windows, &totals, 1.0)[0];
        assert!(live && !v.passed, "{v:?}");
        assert!(v.observed.unwrap() > 900.0);
    }
}
