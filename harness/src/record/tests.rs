use super::*;
use hdrhistogram::Histogram;
use reports::record::{Hist, HistConfig, TierStats};
use std::collections::BTreeMap;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn res(
    tier: &str,
    outcome: &str,
    intended: Duration,
    sent: Duration,
    finished: Duration,
) -> RequestResult {
    RequestResult {
        tier: tier.into(),
        outcome: outcome.into(),
        intended,
        sent,
        finished,
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Log-uniform microseconds from 200 µs to ~2 s.
    fn latency_us(&mut self) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (200.0 * 10f64.powf(4.0 * u)) as u64
    }
}

fn merged(stats: &[&TierStats], pick: fn(&TierStats) -> &Hist) -> Histogram<u64> {
    Hist::merge_all(stats.iter().map(|s| pick(s)))
        .unwrap()
        .decode()
        .unwrap()
}

#[test]
fn latency_is_from_intended_time_and_bucketed_by_it() {
    let mut r = Recorder::new(
        Duration::from_secs(1),
        ["fast", "slow"],
        HistConfig::default(),
    );
    r.note_offered(ms(900));
    // Intended at 0.9 s, sent at 1.2 s (behind schedule), answered at 1.5 s.
    r.record(&res("fast", "ok", ms(900), ms(1200), ms(1500)));
    let (windows, totals, outcomes, _) = r.finish(Duration::from_secs(2), ms(10));
    assert_eq!(windows.len(), 2);
    let w0 = &windows[0];
    // Statistics and `offered` by intended time; `sent` and `completed` by their own times.
    assert_eq!((w0.offered, w0.sent, w0.completed), (1, 0, 0));
    assert_eq!((windows[1].sent, windows[1].completed), (1, 1));
    let t = &w0.per_tier["fast"];
    assert_eq!(t.count, 1);
    assert_eq!(t.outcomes["ok"], 1);
    assert_eq!(t.latency.p50_ms, 600.0 + hdr_err(600_000));
    assert_eq!(t.service_time.p50_ms, 300.0 + hdr_err(300_000));
    assert_eq!(t.send_delay.p50_ms, 300.0 + hdr_err(300_000));
    // Every configured tier appears in every window, empty or not.
    assert_eq!(w0.per_tier["slow"].count, 0);
    assert_eq!(windows[1].per_tier["fast"].count, 0);
    assert_eq!(totals.per_tier["fast"].latency, t.latency);
    assert_eq!(totals.overall.latency, t.latency);
    assert_eq!(outcomes, BTreeMap::from([("ok".to_string(), 1)]));
}

/// How far HdrHistogram (3 digits) reports `us` above itself, in ms: it reports the highest
/// value equivalent to the recorded one.
fn hdr_err(us: u64) -> f64 {
    let h = HistConfig::default().new_histogram().unwrap();
    (h.highest_equivalent(us) - us) as f64 / 1000.0
}

#[test]
fn recorder_is_exact() {
    let tiers = ["fast", "std", "slow"];
    let mut r = Recorder::new(Duration::from_secs(1), tiers, HistConfig::default());
    let mut rng = Rng(3);
    let mut direct: BTreeMap<&str, Histogram<u64>> = tiers
        .iter()
        .map(|&t| (t, HistConfig::default().new_histogram().unwrap()))
        .collect();
    let mut all = HistConfig::default().new_histogram().unwrap();
    let mut values = Vec::new();
    // 60 s at 200 req/s, answered in random order of latency: results arrive out of order and
    // some land after their window could otherwise have closed.
    let mut pending: Vec<(Duration, RequestResult)> = Vec::new();
    for i in 0..12_000u64 {
        let intended = Duration::from_micros(i * 5_000);
        let tier = tiers[rng.below(3) as usize];
        let delay = rng.below(2_000);
        let lat = rng.latency_us().max(delay + 1);
        let sent = intended + Duration::from_micros(delay);
        let finished = intended + Duration::from_micros(lat);
        r.note_offered(intended);
        pending.push((finished, res(tier, "ok", intended, sent, finished)));
        pending.sort_by_key(|p| std::cmp::Reverse(p.0));
        while pending.last().is_some_and(|p| p.0 <= intended) {
            let (_, done) = pending.pop().unwrap();
            r.record(&done);
        }
        direct.get_mut(tier).unwrap().record(lat).unwrap();
        all.record(lat).unwrap();
        values.push(lat);
    }
    for (_, done) in pending.into_iter().rev() {
        r.record(&done);
    }
    let (windows, totals, _, _) = r.finish(Duration::from_secs(60), ms(10));
    assert_eq!(windows.iter().map(|w| w.offered).sum::<u64>(), 12_000);
    for t in tiers {
        let shards: Vec<&TierStats> = windows.iter().map(|w| &w.per_tier[t]).collect();
        let from_windows = merged(&shards, |s| &s.latency);
        // Windows merged == the whole run's histogram == one histogram of the same values.
        assert_eq!(from_windows, direct[t], "tier {t}");
        assert_eq!(totals.per_tier[t].latency.decode().unwrap(), direct[t]);
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            assert_eq!(
                from_windows.value_at_quantile(q),
                direct[t].value_at_quantile(q)
            );
        }
    }
    assert_eq!(totals.overall.latency.decode().unwrap(), all);
    // And against the exact sorted values: within HdrHistogram's 0.1%.
    values.sort_unstable();
    for q in [0.5, 0.95, 0.99] {
        let exact = values[((q * values.len() as f64).ceil() as usize) - 1] as f64;
        let got = totals
            .overall
            .latency
            .decode()
            .unwrap()
            .value_at_quantile(q) as f64;
        assert!(
            (got - exact).abs() <= exact * 0.001 + 1.0,
            "q={q}: {got} vs {exact}"
        );
    }
}

#[test]
fn memory_stays_flat_over_ten_thousand_windows() {
    let mut r = Recorder::new(
        Duration::from_secs(1),
        ["fast", "slow"],
        HistConfig::default(),
    );
    let mut rng = Rng(11);
    let mut at_1000 = None;
    for w in 0..10_000u64 {
        for k in 0..4u64 {
            let intended = Duration::from_millis(w * 1000 + k * 250);
            // One tier with traffic; "slow" has none, which must cost nothing while live.
            let tier = "fast";
            let lat = Duration::from_micros(1_000 + rng.below(50_000));
            r.note_offered(intended);
            r.note_in_flight(intended, 1);
            r.record(&res(tier, "ok", intended, intended, intended + lat));
        }
        if w == 999 {
            at_1000 = Some(r.footprint());
        }
    }
    let f1 = at_1000.unwrap();
    let f10 = r.footprint();
    // Live state does not grow with the number of windows: same open windows, same histograms.
    assert!(f10.open_windows <= 3, "{f10:?}");
    assert_eq!(f10.live_histograms, f1.live_histograms, "{f1:?} vs {f10:?}");
    assert_eq!(f10.live_histogram_bytes, f1.live_histogram_bytes);
    // What does grow is the compact serialized form: a couple of KB per window, far below the
    // ~190 KB of one live histogram.
    assert_eq!(f10.windows, 10_000);
    let per_window = f10.sealed_bytes / f10.windows;
    assert!(per_window < 3_000, "{per_window} bytes per window");
    assert!(f10.sealed_bytes < 12 * f1.sealed_bytes, "{f1:?} vs {f10:?}");
    let (windows, totals, _, trust) = r.finish(Duration::from_secs(10_000), ms(10));
    assert_eq!(windows.len(), 10_000);
    assert_eq!(totals.overall.count, 40_000);
    assert!(trust.trustworthy, "{trust:?}");
}

#[test]
fn window_waits_for_its_answers_then_seals() {
    let mut r = Recorder::new(Duration::from_secs(1), ["t"], HistConfig::default())
        .with_settle(Duration::ZERO);
    r.note_offered(ms(100));
    r.note_offered(ms(200));
    r.record(&res("t", "ok", ms(100), ms(100), ms(150)));
    // Time passes well beyond window 0, but one of its requests is unanswered: it stays live.
    r.note_offered(ms(5_000));
    assert_eq!(r.footprint().open_windows, 2);
    r.record(&res("t", "timeout", ms(200), ms(200), ms(5_200)));
    // Answered: window 0 seals (window 5 is still running).
    let f = r.footprint();
    assert_eq!(f.open_windows, 1, "{f:?}");
    assert_eq!(f.late_buffered, 0);
    let (windows, ..) = r.finish(ms(6_000), ms(10));
    let t = &windows[0].per_tier["t"];
    assert_eq!(t.count, 2);
    assert_eq!(t.outcomes["timeout"], 1);
    assert_eq!(t.latency.max_ms, 5_000.0 + hdr_err(5_000_000));
}

#[test]
fn late_results_merge_exactly_into_sealed_windows() {
    // One open window at a time: every straggler lands in an already sealed window.
    let mut r = Recorder::new(Duration::from_secs(1), ["t"], HistConfig::default())
        .with_max_open_windows(1);
    let mut direct = HistConfig::default().new_histogram().unwrap();
    let mut rng = Rng(5);
    let mut stragglers = Vec::new();
    for i in 0..10_000u64 {
        let intended = Duration::from_millis(i * 3);
        let lat = Duration::from_micros(100 + rng.below(20_000_000));
        direct.record(lat.as_micros() as u64).unwrap();
        r.note_offered(intended);
        stragglers.push(res("t", "ok", intended, intended, intended + lat));
        if i % 100 == 99 {
            // Answer in reverse, after 100 more sends.
            for s in stragglers.drain(..).rev() {
                r.record(&s);
            }
        }
    }
    assert!(r.footprint().late_buffered < 4096);
    let (windows, totals, ..) = r.finish(Duration::from_secs(30), ms(10));
    let shards: Vec<&TierStats> = windows.iter().map(|w| &w.per_tier["t"]).collect();
    assert_eq!(merged(&shards, |s| &s.latency), direct);
    assert_eq!(shards.iter().map(|s| s.count).sum::<u64>(), 10_000);
    assert_eq!(totals.per_tier["t"].latency.decode().unwrap(), direct);
    // Each window holds exactly the requests intended in it: 1000 / 3 ms.
    assert!(windows[..30]
        .iter()
        .all(|w| w.per_tier["t"].count.abs_diff(333) <= 1));
}

/// Acceptance 2 of issue 3, recorder side: 100 req/s, the target stalls 1 s once, and a client
/// whose sends queue behind the stall. Latency from intended time must show the stall (analytic
/// p99: the 21st largest of 2000 latencies, 0.8 s), service time must not.
#[test]
fn coordinated_omission_shows_in_latency_not_service_time() {
    let mut r = Recorder::new(Duration::from_secs(5), ["t"], HistConfig::default());
    let service = ms(1);
    for i in 0..2_000u64 {
        let intended = Duration::from_millis(i * 10);
        // The stall: from 5 s to 6 s nothing can be sent; queued sends leave at 6 s.
        let sent = if intended >= ms(5_000) && intended < ms(6_000) {
            ms(6_000)
        } else {
            intended
        };
        r.note_offered(intended);
        r.record(&res("t", "ok", intended, sent, sent + service));
    }
    let (windows, totals, _, trust) = r.finish(Duration::from_secs(20), ms(10));
    let analytic_p99 = 800.0 + 1.0;
    let p99 = totals.overall.latency.p99_ms;
    assert!(
        (p99 - analytic_p99).abs() <= analytic_p99 * 0.10,
        "p99 {p99} ms"
    );
    assert!(
        totals.overall.service_time.p99_ms <= 1.01,
        "{:?}",
        totals.overall.service_time
    );
    // The window holding the stall shows it; the others do not.
    assert!(windows[1].per_tier["t"].latency.max_ms >= 1000.0);
    assert!(windows[0].per_tier["t"].latency.max_ms <= 1.01);
    // The harness fell behind its schedule: the run says so, with numbers.
    assert!(!trust.trustworthy);
    assert_eq!(trust.reasons.len(), 1);
    assert!(
        trust.reasons[0].contains("send delay p99 was"),
        "{:?}",
        trust.reasons
    );
    assert!(
        trust.reasons[0].contains("10.0 ms limit"),
        "{:?}",
        trust.reasons
    );
    assert!(trust.max_send_delay_ms >= 999.0);
}

#[test]
fn cap_hits_make_the_run_untrustworthy() {
    let mut r = Recorder::new(Duration::from_secs(1), ["t"], HistConfig::default());
    for i in 0..100u64 {
        let at = ms(i * 10);
        r.note_offered(at);
        if (40..43).contains(&i) {
            r.note_cap_hit(at);
        } else {
            r.record(&res("t", "ok", at, at, at + ms(2)));
        }
    }
    let (windows, totals, _, trust) = r.finish(Duration::from_secs(1), ms(10));
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].in_flight_cap_hits, 3);
    assert_eq!(
        (totals.offered, totals.sent, totals.in_flight_cap_hits),
        (100, 97, 3)
    );
    assert!(!trust.trustworthy);
    assert_eq!(trust.in_flight_cap_hits, 3);
    let reason = &trust.reasons[0];
    assert!(
        reason.contains("hit 3 times")
            && reason.contains("3.0% of 100")
            && reason.contains("first at 0.4 s"),
        "{reason}"
    );
}

#[test]
fn a_clean_run_is_trustworthy() {
    let mut r = Recorder::new(Duration::from_secs(1), ["t"], HistConfig::default());
    for i in 0..100u64 {
        let at = ms(i * 10);
        r.note_offered(at);
        r.record(&res("t", "ok", at, at + ms(1), at + ms(5)));
    }
    let (.., trust) = r.finish(Duration::from_secs(1), ms(10));
    assert!(trust.trustworthy && trust.reasons.is_empty(), "{trust:?}");
    assert!(trust.send_delay_p99_ms <= 1.001);
}

#[test]
fn progress_and_snapshot_p95() {
    let mut r = Recorder::new(Duration::from_secs(1), ["a", "b"], HistConfig::default());
    assert_eq!(r.snapshot_p95(None), None);
    assert_eq!(r.snapshot_p95(Some("a")), None);
    for i in 1..=100u64 {
        let at = ms(i);
        r.note_offered(at);
        let outcome = if i % 10 == 0 { "overloaded" } else { "ok" };
        r.record(&res("a", outcome, at, at, at + ms(i)));
    }
    assert_eq!(r.snapshot_p95(Some("a")), Some(95.0 + hdr_err(95_000)));
    assert_eq!(r.snapshot_p95(None), r.snapshot_p95(Some("a")));
    assert_eq!(r.snapshot_p95(Some("b")), None);
    assert_eq!(r.snapshot_p95(Some("nope")), None);
    let p = r.progress();
    assert_eq!((p.offered, p.completed), (100, 100));
    assert_eq!(p.outcomes["overloaded"], 10);
    assert_eq!(p.outcomes["ok"], 90);
}

#[test]
fn windows_are_contiguous_and_the_last_is_clipped() {
    let mut r = Recorder::new(Duration::from_secs(5), ["t"], HistConfig::default());
    r.note_offered(ms(500));
    r.note_in_flight(ms(500), 7);
    r.record(&res("t", "ok", ms(500), ms(500), ms(600)));
    // Nothing in windows 1 and 2; one answer arrives after the run's end (12 s), at 13 s.
    r.note_offered(ms(11_000));
    r.record(&res(
        "new-tier",
        "timeout",
        ms(11_000),
        ms(11_000),
        ms(13_000),
    ));
    let (windows, totals, outcomes, _) = r.finish(Duration::from_secs(12), ms(10));
    let spans: Vec<(f64, f64)> = windows.iter().map(|w| (w.start_s, w.end_s)).collect();
    assert_eq!(spans, vec![(0.0, 5.0), (5.0, 10.0), (10.0, 13.0)]);
    assert_eq!(windows[0].in_flight_max, 7);
    assert_eq!(windows[0].offered_rate, 0.2);
    assert_eq!(windows[1].offered, 0);
    // A tier seen mid-run appears in every window, including ones sealed before it showed up.
    assert!(windows.iter().all(|w| w.per_tier.contains_key("new-tier")));
    assert_eq!(windows[2].per_tier["new-tier"].count, 1);
    assert_eq!((totals.start_s, totals.end_s), (0.0, 12.0));
    assert_eq!(totals.in_flight_max, 7);
    assert_eq!(outcomes.values().sum::<u64>(), 2);
}
