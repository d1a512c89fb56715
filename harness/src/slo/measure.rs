//! An SLO measured over a run, on the scraped series: good and total events over the whole run,
//! the error budget that spent, and the highest burn rate over each workbook window pair (scaled
//! by the run's time scale) at any second of the run.

use super::budget::{report, scaled, BURN_WINDOWS};
use super::rules::promql_duration;
use super::spec::Slo;
use crate::rules::{Engine, Value};
use crate::scrape::SeriesStore;
use reports::record::{BurnRecord, ExpectationVerdict, SloRecord};
use std::time::Duration;

fn max_over_run(engine: &Engine, store: &SeriesStore, q: &str, end_ms: i64) -> Option<f64> {
    let step = 1_000;
    match engine
        .range_query(store, q, step, end_ms.max(step), step)
        .ok()?
    {
        Value::Matrix(m) => m
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            }),
        _ => None,
    }
}

/// `slo` over a run that lasted `end_ms` (the store's clock), windows divided by `time_scale`.
pub fn measure(
    engine: &Engine,
    store: &SeriesStore,
    slo: &Slo,
    end_ms: i64,
    time_scale: f64,
) -> SloRecord {
    let (good_sel, total_sel) = slo.selectors();
    // The whole run, a little more so the first scrape is inside the window.
    let run = promql_duration(Duration::from_millis(end_ms.max(1_000) as u64 + 60_000));
    let good = engine
        .scalar_at(store, &format!("sum(increase({good_sel}[{run}]))"), end_ms)
        .unwrap_or(0.0);
    let total = engine
        .scalar_at(store, &format!("sum(increase({total_sel}[{run}]))"), end_ms)
        .unwrap_or(0.0);
    let budget = slo.error_budget();
    let r = report(good, total, budget);
    let burn_q = |w: Duration| {
        let w = promql_duration(scaled(w, time_scale));
        format!("(1 - (sum(rate({good_sel}[{w}])) / sum(rate({total_sel}[{w}])))) / {budget}")
    };
    let burn = BURN_WINDOWS
        .iter()
        .map(|b| BurnRecord {
            long_s: scaled(b.long, time_scale).as_secs_f64(),
            short_s: scaled(b.short, time_scale).as_secs_f64(),
            factor: b.factor,
            severity: b.severity.into(),
            max_long: max_over_run(engine, store, &burn_q(b.long), end_ms),
            max_short: max_over_run(engine, store, &burn_q(b.short), end_ms),
        })
        .collect();
    SloRecord {
        name: slo.name.clone(),
        objective: slo.objective,
        good,
        total,
        sli: r.sli,
        budget_consumed: r.budget_consumed,
        budget_remaining: r.budget_remaining,
        burn,
    }
}

/// Judges `budget_remaining: {at_least}` for the SLO `name` against its measurement (`None`:
/// the spec has no such SLO).
pub fn judge_budget(name: &str, at_least: f64, rec: Option<&SloRecord>) -> ExpectationVerdict {
    let (passed, detail) = match rec.map(|r| (r.budget_remaining, r.total)) {
        None => (false, format!("no SLO named {name:?} in the spec")),
        Some((None, total)) => (
            false,
            format!("no budget to judge: {total} events over the run"),
        ),
        Some((Some(left), _)) => (
            left >= at_least - 1e-12,
            format!("{:.1}% of the budget left", left * 100.0),
        ),
    };
    ExpectationVerdict {
        alert: format!("SLO {name}"),
        description: format!(
            "keeps at least {:.1}% of its error budget",
            at_least * 100.0
        ),
        passed,
        detail,
        latency_s: None,
        explanation: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Labels;
    use crate::slo::SloFile;

    #[test]
    fn a_run_with_one_bad_request_in_a_thousand_spends_the_whole_99_9_budget() {
        // Counters scraped every second for 100 s: 10 good requests a second, and from 50 s on
        // one failure every 10 s (5 in all: 5 of 1000 events bad).
        let mut s = SeriesStore::new();
        for i in 0..=100i64 {
            let t = i * 1_000;
            s.append(
                Labels::new([("__name__", "req_total"), ("status", "success")]),
                t,
                (i * 10) as f64,
            )
            .unwrap();
            let bad = if i >= 50 {
                ((i - 50) / 10 + 1).min(5)
            } else {
                0
            } as f64;
            s.append(
                Labels::new([("__name__", "req_total"), ("status", "failed")]),
                t,
                bad,
            )
            .unwrap();
        }
        let f = SloFile::parse("version: 1\nservice: s\nslos:\n  - name: avail\n    objective: 99.9\n    window: 720h\n    sli:\n      events: {good: 'req_total{status=\"success\"}', total: req_total}\n").unwrap();
        let r = measure(&Engine::default(), &s, &f.slos[0], 100_000, 3600.0);
        // increase() over a window wider than the data extrapolates nothing: exact counts.
        assert!((r.good - 1000.0).abs() < 1e-6, "{r:?}");
        assert!((r.total - 1005.0).abs() < 1e-6, "{r:?}");
        let err = 5.0 / 1005.0;
        assert!(
            (r.budget_consumed.unwrap() - err / 0.001).abs() < 1e-6,
            "{r:?}"
        );
        // At 3600x the 1h/5m pair is 1 s/83 ms long; the 6h pair 6 s/0.5 s: the 6 s window holds
        // one failure among about 60 requests at its worst: a burn near 16x.
        let six = &r.burn[1];
        assert_eq!(six.long_s, 6.0);
        let worst = six.max_long.unwrap();
        assert!(worst > 10.0 && worst < 25.0, "{six:?}");
    }

    #[test]
    fn a_budget_expectation_compares_the_remaining_share_by_hand() {
        // 99.5% objective: budget 0.5% of events. 2 bad of 1000 is 0.2%: 40% spent, 60% left.
        let r = report(998.0, 1000.0, 0.005);
        let rec = SloRecord {
            name: "availability".into(),
            objective: 99.5,
            good: r.good,
            total: r.total,
            sli: r.sli,
            budget_consumed: r.budget_consumed,
            budget_remaining: r.budget_remaining,
            burn: Vec::new(),
        };
        assert!((rec.budget_remaining.unwrap() - 0.6).abs() < 1e-9);
        let v = judge_budget("availability", 0.6, Some(&rec));
        assert!(v.passed, "{v:?}");
        assert_eq!(v.detail, "60.0% of the budget left");
        assert!(!judge_budget("availability", 0.61, Some(&rec)).passed);
        let none = SloRecord {
            total: 0.0,
            sli: None,
            budget_consumed: None,
            budget_remaining: None,
            ..rec.clone()
        };
        assert!(!judge_budget("availability", 0.0, Some(&none)).passed);
        let v = judge_budget("latency", 0.5, None);
        assert!(!v.passed && v.detail.contains("no SLO named"), "{v:?}");
    }
}
