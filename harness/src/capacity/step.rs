//! One step's requests turned into what the sweep decides on and records: the steady-state
//! points (one per window of answers), and the statistics of the measured span in the record's
//! shapes, so the scenario's thresholds are judged on a step exactly as on a run. Pure.

use super::queueing::{quantile, JobSample};
use super::steady::Point;
use crate::load::ServerTimings;
use crate::outcome::OutcomeClass;
use reports::capacity::Quantiles;
use reports::record::{Hist, HistConfig, PhaseStats, TierStats, WindowStats};
use std::collections::BTreeMap;

/// One finished request of a step; times in seconds from the step's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Req {
    /// Tier label.
    pub tier: String,
    /// Outcome.
    pub outcome: OutcomeClass,
    /// Intended send time.
    pub intended_s: f64,
    /// Actual send time.
    pub sent_s: f64,
    /// Answer time.
    pub finished_s: f64,
    /// What the target said it cost.
    pub server: Option<ServerTimings>,
}

impl Req {
    /// Latency from the intended send time, ms.
    pub fn latency_ms(&self) -> f64 {
        (self.finished_s - self.intended_s) * 1000.0
    }
}

/// The steady-state points of a step at `now_s`: one per whole window of answers (windows with
/// no answers are skipped), with the mean latency of the answers in it and the requests in flight
/// at its end. `offered_s` are the intended send times of every request offered so far.
pub fn points(reqs: &[Req], offered_s: &[f64], window_s: f64, now_s: f64) -> Vec<Point> {
    let n = (now_s / window_s).floor() as usize;
    let mut sum = vec![0.0; n];
    let mut count = vec![0usize; n];
    for r in reqs {
        let k = (r.finished_s / window_s).floor() as usize;
        if k < n {
            sum[k] += r.latency_ms();
            count[k] += 1;
        }
    }
    let mut offered: Vec<f64> = offered_s.to_vec();
    offered.sort_by(f64::total_cmp);
    let mut finished: Vec<f64> = reqs.iter().map(|r| r.finished_s).collect();
    finished.sort_by(f64::total_cmp);
    (0..n)
        .filter(|&k| count[k] > 0)
        .map(|k| {
            let end = (k + 1) as f64 * window_s;
            let sent = offered.partition_point(|&t| t < end);
            let done = finished.partition_point(|&t| t < end);
            Point {
                t_s: k as f64 * window_s,
                latency_ms: sum[k] / count[k] as f64,
                in_flight: sent.saturating_sub(done) as f64,
            }
        })
        .collect()
}

fn us(ms: f64) -> u64 {
    (ms * 1000.0).round().max(0.0) as u64
}

/// The statistics of `reqs` (all of one tier, or all tiers).
pub fn tier_stats(reqs: &[&Req], hist: &HistConfig) -> Result<TierStats, String> {
    let e = |e: reports::record::RecordError| e.to_string();
    let mut lat = hist.new_histogram().map_err(e)?;
    let mut svc = hist.new_histogram().map_err(e)?;
    let mut del = hist.new_histogram().map_err(e)?;
    let mut outcomes = BTreeMap::new();
    for r in reqs {
        lat.saturating_record(us(r.latency_ms()));
        svc.saturating_record(us((r.finished_s - r.sent_s) * 1000.0));
        del.saturating_record(us((r.sent_s - r.intended_s) * 1000.0));
        *outcomes.entry(r.outcome.as_str().to_owned()).or_insert(0) += 1;
    }
    Ok(TierStats {
        count: reqs.len() as u64,
        outcomes,
        latency: Hist::from_histogram(&lat).map_err(e)?,
        service_time: Hist::from_histogram(&svc).map_err(e)?,
        send_delay: Hist::from_histogram(&del).map_err(e)?,
    })
}

fn per_tier(reqs: &[&Req], hist: &HistConfig) -> Result<BTreeMap<String, TierStats>, String> {
    let mut by: BTreeMap<&str, Vec<&Req>> = BTreeMap::new();
    for r in reqs {
        by.entry(r.tier.as_str()).or_default().push(r);
    }
    by.into_iter()
        .map(|(t, rs)| Ok((t.to_owned(), tier_stats(&rs, hist)?)))
        .collect()
}

/// The measured span `[from_s, to_s)` of a step, by answer time: its windows and its totals, as
/// a run's record has them (so `verdict::judge` applies). `offered` counts requests offered in
/// the span.
pub fn span_stats(
    reqs: &[Req],
    offered: u64,
    from_s: f64,
    to_s: f64,
    window_s: f64,
) -> Result<(Vec<WindowStats>, PhaseStats), String> {
    let hist = HistConfig::default();
    let inside: Vec<&Req> = reqs
        .iter()
        .filter(|r| r.finished_s >= from_s && r.finished_s < to_s)
        .collect();
    let len = (to_s - from_s).max(1e-9);
    let mut windows = Vec::new();
    let mut start = from_s;
    while start < to_s - 1e-9 {
        let end = (start + window_s).min(to_s);
        let w: Vec<&Req> = inside
            .iter()
            .copied()
            .filter(|r| r.finished_s >= start && r.finished_s < end)
            .collect();
        let sent = w.len() as u64;
        windows.push(WindowStats {
            start_s: start,
            end_s: end,
            offered: sent,
            sent,
            completed: sent,
            offered_rate: sent as f64 / (end - start),
            achieved_rate: sent as f64 / (end - start),
            in_flight_max: 0,
            in_flight_cap_hits: 0,
            per_tier: per_tier(&w, &hist)?,
        });
        start = end;
    }
    let n = inside.len() as u64;
    let totals = PhaseStats {
        start_s: from_s,
        end_s: to_s,
        offered,
        sent: n,
        completed: n,
        offered_rate: offered as f64 / len,
        achieved_rate: n as f64 / len,
        in_flight_max: 0,
        in_flight_cap_hits: 0,
        per_tier: per_tier(&inside, &hist)?,
        overall: tier_stats(&inside, &hist)?,
    };
    Ok((windows, totals))
}

/// Quantiles of `v` (unsorted), ms.
pub fn quantiles(v: &[f64]) -> Quantiles {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mean = if s.is_empty() {
        0.0
    } else {
        s.iter().sum::<f64>() / s.len() as f64
    };
    Quantiles {
        count: s.len() as u64,
        mean,
        p50: quantile(&s, 0.50),
        p95: quantile(&s, 0.95),
        p99: quantile(&s, 0.99),
    }
}

/// Queue waits per tier of the requests answered in the span that carry timings.
pub fn queue_waits(reqs: &[Req], from_s: f64, to_s: f64) -> BTreeMap<String, Vec<f64>> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in reqs
        .iter()
        .filter(|r| r.finished_s >= from_s && r.finished_s < to_s)
    {
        if let Some(t) = &r.server {
            by.entry(r.tier.clone()).or_default().push(t.queue_wait_ms);
            by.entry("all".into()).or_default().push(t.queue_wait_ms);
        }
    }
    by
}

/// The sizing model's samples from the span: per (model, tier), each successful request's worker
/// time, its latency outside the queue and the worker, and how many other requests were on a
/// worker beside it on average (from every request of the step). A request's time on the worker
/// is taken to end when its answer came (sync answers leave as the image is stored; an async one
/// is seen up to a poll interval later, which the overlap then misplaces by that much).
pub fn job_samples(
    reqs: &[Req],
    from_s: f64,
    to_s: f64,
) -> BTreeMap<(String, String), Vec<JobSample>> {
    let mut spans: Vec<(f64, f64)> = reqs
        .iter()
        .filter_map(|r| {
            let t = r.server.as_ref()?;
            Some((r.finished_s - t.service_ms / 1000.0, r.finished_s))
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let longest = spans.iter().map(|s| s.1 - s.0).fold(0.0, f64::max);
    // Busy-time of the others over (a, b), divided by its length.
    let others = |a: f64, b: f64| -> f64 {
        if b <= a {
            return 0.0;
        }
        let lo = spans.partition_point(|s| s.0 < a - longest);
        let overlap: f64 = spans[lo..]
            .iter()
            .take_while(|s| s.0 < b)
            .map(|s| (s.1.min(b) - s.0.max(a)).max(0.0))
            .sum();
        // The request itself is one of the spans and overlaps itself fully.
        ((overlap - (b - a)) / (b - a)).max(0.0)
    };
    let mut by: BTreeMap<(String, String), Vec<JobSample>> = BTreeMap::new();
    for r in reqs
        .iter()
        .filter(|r| r.finished_s >= from_s && r.finished_s < to_s && r.outcome == OutcomeClass::Ok)
    {
        if let Some(t) = &r.server {
            let overhead_ms = (r.latency_ms() - t.queue_wait_ms - t.service_ms).max(0.0);
            by.entry((t.model.clone(), r.tier.clone()))
                .or_default()
                .push(JobSample {
                    service_ms: t.service_ms,
                    overhead_ms,
                    others: others(r.finished_s - t.service_ms / 1000.0, r.finished_s),
                });
        }
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(tier: &str, intended: f64, finished: f64, wait: f64) -> Req {
        Req {
            tier: tier.into(),
            outcome: OutcomeClass::Ok,
            intended_s: intended,
            sent_s: intended,
            finished_s: finished,
            server: Some(ServerTimings {
                model: "m".into(),
                queue_wait_ms: wait,
                service_ms: 100.0,
                batch_size: 1,
            }),
        }
    }

    #[test]
    fn points_are_windows_of_answers_with_the_in_flight_count_at_their_end() {
        let reqs = vec![
            req("turbo", 0.0, 0.5, 0.0),
            req("turbo", 0.5, 1.5, 0.0),
            req("turbo", 1.0, 3.5, 0.0),
        ];
        let offered = [0.0, 0.5, 1.0, 3.0];
        let p = points(&reqs, &offered, 1.0, 4.2);
        // Windows 0, 1 and 3 have answers; window 2 none; window 4 is not over.
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].t_s, 0.0);
        assert!((p[0].latency_ms - 500.0).abs() < 1e-9);
        // At 1 s: offered 2 (0.0, 0.5), answered 1.
        assert_eq!(p[0].in_flight, 1.0);
        // At 2 s: offered 3, answered 2; at 4 s: offered 4, answered 3.
        assert_eq!(p[1].in_flight, 1.0);
        assert_eq!((p[2].t_s, p[2].in_flight), (3.0, 1.0));
    }

    #[test]
    fn a_span_has_windows_totals_and_per_tier_stats() {
        let reqs: Vec<Req> = (0..40)
            .map(|i| {
                let t = i as f64 * 0.25;
                req(
                    if i % 4 == 0 { "fast" } else { "turbo" },
                    t,
                    t + 0.2,
                    i as f64,
                )
            })
            .collect();
        let (w, totals) = span_stats(&reqs, 20, 5.0, 10.0, 2.0).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!((w[2].start_s, w[2].end_s), (9.0, 10.0));
        assert_eq!(totals.completed, 20);
        assert_eq!(totals.per_tier["fast"].count, 5);
        assert!((totals.overall.latency.p50_ms - 200.0).abs() < 0.5);
        let q = queue_waits(&reqs, 5.0, 10.0);
        assert_eq!(q["all"].len(), 20);
        let s = job_samples(&reqs, 5.0, 10.0);
        let turbo = &s[&("m".to_owned(), "turbo".to_owned())];
        assert_eq!(turbo.len(), 15);
        // 200 ms latency less the wait and the 100 ms of service, floored at zero.
        assert!(turbo
            .iter()
            .all(|j| j.service_ms == 100.0 && j.overhead_ms >= 0.0));
    }
}
