//! Capacity planning (`firedrill sweep`): the scenario's load at a series of rates, each step run
//! until it is steady, judged by the scenario's thresholds; the highest rate at which they all
//! held, the knee of latency against throughput, the workers' service times, and how many workers
//! a target rate needs, checked by running that many.
//!
//! - `search` chooses the rates (given, or double-then-bisect), `steady` decides when a step's
//!   latest span is steady (or overloaded), `step` turns a step's requests into statistics,
//!   `knee` finds the knee, `queueing` is the queue model (M/G/c formulas and a simulation of the
//!   server's tiered queue), `sizing` turns it into a table and a recommendation. All pure.
//! - `sweep` is the I/O: the target, the load, the scraper, the cool-downs, the check runs.

pub mod knee;
pub mod queueing;
pub mod search;
pub mod sizing;
pub mod steady;
pub mod step;
pub mod sweep;

use queueing::JobSample;
use reports::capacity::{AnswerRecord, KneeRecord, ServiceRecord, StepRecord};
use reports::record::{ThresholdVerdict, ThresholdWindow};
use std::collections::BTreeMap;

/// The knee of p95 latency against throughput, per tier and for all requests (`all`), over the
/// steps that measured anything.
pub fn knees(steps: &[StepRecord]) -> BTreeMap<String, KneeRecord> {
    let mut tiers: Vec<String> = steps
        .iter()
        .flat_map(|s| s.per_tier.keys().cloned())
        .collect();
    tiers.sort();
    tiers.dedup();
    tiers.push("all".into());
    let mut out = BTreeMap::new();
    for tier in tiers {
        let rows: Vec<(&StepRecord, f64, f64)> = steps
            .iter()
            .filter_map(|s| {
                let stats = if tier == "all" {
                    &s.overall
                } else {
                    s.per_tier.get(&tier)?
                };
                let share = stats.count as f64 / s.overall.count.max(1) as f64;
                (stats.count > 0).then_some((s, s.throughput * share, stats.latency.p95_ms))
            })
            .collect();
        let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.1, r.2)).collect();
        if let Some(i) = knee::knee(&pts) {
            out.insert(
                tier,
                KneeRecord {
                    throughput: rows[i].1,
                    p95_ms: rows[i].2,
                    rate: rows[i].0.rate,
                },
            );
        }
    }
    out
}

/// Worker time per model and tier, from measured samples.
pub fn service_records(samples: &BTreeMap<(String, String), Vec<JobSample>>) -> Vec<ServiceRecord> {
    samples
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|((model, tier), v)| {
            let ms: Vec<f64> = v.iter().map(|s| s.service_ms).collect();
            let q = step::quantiles(&ms);
            let var = ms.iter().map(|x| (x - q.mean).powi(2)).sum::<f64>() / ms.len() as f64;
            ServiceRecord {
                model: if model.is_empty() {
                    "(unnamed)".into()
                } else {
                    model.clone()
                },
                tier: tier.clone(),
                scv: if q.mean > 0.0 {
                    var / (q.mean * q.mean)
                } else {
                    0.0
                },
                rate_per_worker: if q.mean > 0.0 { 1000.0 / q.mean } else { 0.0 },
                service_ms: q,
            }
        })
        .collect()
}

/// The answer in the record's terms, with a sentence for people.
pub fn answer_record(a: search::Answer, highest_tried: Option<f64>) -> AnswerRecord {
    let statement = match (a.max_passing, a.min_failing) {
        (Some(p), Some(f)) => format!(
            "every threshold held up to {p} req/s and broke at {f} req/s: the capacity is between them ({p} req/s, +{} req/s at most)",
            ((f - p) * 1000.0).round() / 1000.0
        ),
        (Some(p), None) => format!(
            "every threshold held at every rate tried, up to {p} req/s: the capacity is at least that (raise capacity.search.max to find it)"
        ),
        (None, Some(f)) => format!(
            "a threshold broke at every rate tried, down to {f} req/s: the capacity is below that"
        ),
        (None, None) => format!(
            "no step was run{}",
            highest_tried.map_or(String::new(), |r| format!(" (highest tried {r} req/s)"))
        ),
    };
    AnswerRecord {
        max_passing_rate: a.max_passing,
        min_failing_rate: a.min_failing,
        uncertainty: a.uncertainty(),
        statement,
    }
}

/// A prediction this far from the measured p95 queue wait (relative) fails its check.
pub const CHECK_TOLERANCE: f64 = 0.25;

/// Judges a predicted p95 queue wait against the measured one: the relative error, and whether
/// it is within [`CHECK_TOLERANCE`] or within a tenth of the mean service time `service_ms`
/// (waits that short are the dispatcher's jitter, where a relative error means nothing).
pub fn check_prediction(predicted_ms: f64, measured_ms: f64, service_ms: f64) -> (f64, bool) {
    let relative = if measured_ms > 0.0 {
        (predicted_ms - measured_ms) / measured_ms
    } else if predicted_ms == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let passed =
        relative.abs() <= CHECK_TOLERANCE || (predicted_ms - measured_ms).abs() <= 0.1 * service_ms;
    (relative, passed)
}

/// How far (relative) a step's worker time may stray from what the steps before it predict before
/// its verdict is taken as the host's (a noisy neighbour, throttling) rather than the rate's.
pub const OFF_PACE: f64 = 0.10;

/// How the target worked in a step against the steps before it: the step's mean worker time over
/// the mean of what the contention fitted on `before` gives for each of its jobs (with as many
/// others busy beside it as it had); above 1 slower. `None` with under 30 jobs either side.
pub fn pace(before: &[JobSample], step: &[JobSample]) -> Option<f64> {
    if before.len() < 30 || step.len() < 30 {
        return None;
    }
    let c = queueing::fit_contention(before);
    let n = step.len() as f64;
    let expected = step
        .iter()
        .map(|j| c.alone_ms + c.per_other_ms * j.others)
        .sum::<f64>()
        / n;
    let measured = step.iter().map(|j| j.service_ms).sum::<f64>() / n;
    (expected > 0.0 && measured > 0.0).then(|| measured / expected)
}

/// Whether a step's verdict leans on the host: it broke on a target more than [`OFF_PACE`]
/// slower than its pace, or held on one as much faster.
pub fn off_pace(pace: f64, passed: bool) -> bool {
    if passed {
        pace < 1.0 / (1.0 + OFF_PACE)
    } else {
        pace > 1.0 + OFF_PACE
    }
}

/// `12% slower than the steps before it predict`.
pub fn pace_words(pace: f64) -> String {
    format!(
        "{:.0}% {} than the steps before it predict",
        (pace - 1.0).abs() * 100.0,
        if pace > 1.0 { "slower" } else { "faster" }
    )
}

/// An SLO judged over a step's span: it held when the span's SLI met the objective, i.e. the
/// step burned error budget no faster than the compliance window allows (burn rate at most 1),
/// so the rate is sustainable. `good` and `total` are the span's events; a span without events
/// has nothing to judge and holds.
pub fn slo_verdict(slo: &crate::slo::Slo, good: f64, total: f64) -> ThresholdVerdict {
    let r = crate::slo::budget::report(good, total, slo.error_budget());
    let passed = r.burn_rate.is_none_or(|b| b <= 1.0 + 1e-9);
    let detail = match (r.sli, r.burn_rate) {
        (Some(sli), Some(burn)) => format!(
            "{}{good:.0} of {total:.0} events good ({:.2}%), burning the error budget at {burn:.2}x the sustainable rate",
            if passed { "" } else { "breached: " },
            sli * 100.0
        ),
        _ => "no events in the span".to_owned(),
    };
    ThresholdVerdict {
        name: format!("SLO {}", slo.name),
        description: format!(
            "SLO {}: at least {}% of events good over the span (burn rate at most 1)",
            slo.name, slo.objective
        ),
        passed,
        observed: r.sli,
        limit: slo.objective / 100.0,
        unit: "ratio".into(),
        window: ThresholdWindow::Run,
        detail,
    }
}

/// The method, in words, for the report.
pub fn describe_method(m: &reports::capacity::Method) -> String {
    let rates = match m.resolution {
        Some(r) => format!(
            "Rates were found by search: doubling from the first rate until a threshold broke, then bisecting between the highest rate that held and the lowest that broke until they were {r} req/s apart."
        ),
        None => "Rates were the scenario's list, in order.".to_owned(),
    };
    format!(
        "{rates} Each step sent the scenario's traffic (its mix and arrival process) at a constant rate and was run until it was steady: over the latest {measure} s of answers, in {window} s windows, neither the mean latency nor the requests in flight drifted by more than {tol:.0}% (Theil–Sen slope over the span; in flight, at least 2 requests). The step's statistics and verdicts are over that span only (the scenario's thresholds, and each SLO of `rules.slos`: its SLI over the span must meet the objective, a burn rate of at most 1); the warm-up before it is discarded. A step whose latency and queue both kept rising (for half a span more) was stopped as overloaded, and one not steady after {max} s failed. A step whose verdict leaned on the host was run once more and the try nearer the target's pace kept: one that broke while the target worked more than {off:.0}% slower than the steps before it predict (its worker time against the contention fitted on them), or held while it worked as much faster (a noisy neighbour, throttling). Between steps the load stopped, the target's queue drained and the sweep waited {cool} s. The knee is Kneedle's: the point farthest below the chord of p95 latency against throughput (both scaled to [0, 1]), if at least a fifth below it; a tier that rises evenly (one that priority shields) has none. Sizing: worker time is fitted against the number of other jobs in service at the same time (least squares over every measured request; workers on separate GPUs show no slope, workers sharing a host do; the jobs the model draws come from the steps that held), and each worker count's queue wait and latency are predicted by a seeded simulation of the server's queue (c workers each slowed by that fitted contention while others are busy, non-preemptive tier priority, the scenario's arrival process, each job's work and overhead drawn from the measured requests of its tier), with M/G/c (Erlang C, Allen–Cunneen, at the worker time the contention implies) beside it; the recommendation is the fewest workers whose predicted latencies meet every latency threshold. A check starts the reference server with the recommended worker count, runs the target rate until steady (a longer span) and compares the measured p95 queue wait with the model replaying the check's own schedule (seeded, so known in advance: a minute of a random process waits up to a quarter more or less than the long run) with the sweep's jobs, at the worker time the check measured; the prediction at the sweep's worker time is shown beside it, so the host's drift between runs and the queueing model's error are told apart.",
        measure = m.measure_s,
        window = m.window_s,
        tol = m.tolerance * 100.0,
        max = m.max_step_s,
        cool = m.cooldown_s,
        off = OFF_PACE * 100.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_passes_within_a_quarter_or_within_dispatch_jitter() {
        assert_eq!(check_prediction(120.0, 100.0, 50.0), (0.2, true));
        let (e, ok) = check_prediction(130.0, 100.0, 50.0);
        assert!((e - 0.3).abs() < 1e-12 && !ok);
        // 0 predicted, 3 ms measured, 100 ms jobs: jitter, not a miss.
        let (e, ok) = check_prediction(0.0, 3.0, 100.0);
        assert_eq!((e, ok), (-1.0, true));
        assert!(!check_prediction(0.0, 30.0, 100.0).1);
        assert_eq!(check_prediction(0.0, 0.0, 100.0), (0.0, true));
    }

    #[test]
    fn a_step_off_the_targets_pace_is_told_from_one_with_more_busy_workers() {
        // 80 ms alone, +10 ms per other busy job.
        let job = |others: f64, pace: f64| JobSample {
            service_ms: (80.0 + 10.0 * others) * pace,
            overhead_ms: 0.0,
            others,
        };
        let before: Vec<JobSample> = (0..200).map(|i| job((i % 5) as f64 / 10.0, 1.0)).collect();
        let step = |p: f64| (0..100).map(|_| job(0.95, p)).collect::<Vec<_>>();
        // Busier (others near 1) on the same target: on pace.
        let same = pace(&before, &step(1.0)).unwrap();
        assert!((same - 1.0).abs() < 1e-9);
        assert!(!off_pace(same, false) && !off_pace(same, true));
        // The same load on a target 15% slower: a break there is the host's; a pass is not.
        let slow = pace(&before, &step(1.15)).unwrap();
        assert!((slow - 1.15).abs() < 1e-9, "{slow}");
        assert!(off_pace(slow, false) && !off_pace(slow, true));
        assert_eq!(
            pace_words(slow),
            "15% slower than the steps before it predict"
        );
        // On a target 15% faster a pass is the host's.
        let fast = pace(&before, &step(0.85)).unwrap();
        assert!(off_pace(fast, true) && !off_pace(fast, false));
        assert!(pace_words(fast).starts_with("15% faster"));
        assert_eq!(pace(&before[..10], &step(1.15)), None);
    }

    #[test]
    fn an_slo_holds_over_a_step_while_it_burns_no_faster_than_sustainable() {
        let spec = crate::slo::SloFile::parse(
            "version: 1\nservice: s\nslos:\n  - name: availability\n    objective: 99.5\n    window: 720h\n    sli: {events: {good: 'ok_total', total: 'all_total'}}\n",
        )
        .unwrap();
        let slo = &spec.slos[0];
        // 4 bad of 1000 is 0.8x the budget's pace; 6 bad is 1.2x.
        let held = slo_verdict(slo, 996.0, 1000.0);
        assert!(held.passed && held.name == "SLO availability", "{held:?}");
        assert!(held.detail.contains("0.80x"), "{}", held.detail);
        assert_eq!(held.limit, 0.995);
        let broke = slo_verdict(slo, 994.0, 1000.0);
        assert!(
            !broke.passed && broke.detail.starts_with("breached"),
            "{broke:?}"
        );
        assert!((broke.observed.unwrap() - 0.994).abs() < 1e-12);
        // Exactly on budget holds; no events holds with nothing observed.
        assert!(slo_verdict(slo, 995.0, 1000.0).passed);
        let none = slo_verdict(slo, 0.0, 0.0);
        assert!(none.passed && none.observed.is_none());
    }

    #[test]
    fn the_answer_says_what_was_found() {
        let a = answer_record(
            search::Answer {
                max_passing: Some(8.0),
                min_failing: Some(9.0),
            },
            Some(16.0),
        );
        assert_eq!(a.uncertainty, Some(1.0));
        assert!(
            a.statement.contains("up to 8 req/s and broke at 9 req/s"),
            "{}",
            a.statement
        );
        let none = answer_record(
            search::Answer {
                max_passing: None,
                min_failing: Some(1.0),
            },
            Some(1.0),
        );
        assert!(none.statement.contains("below"));
    }
}
