//! A drill's record for the document tests: failures of every kind, faults with a failed
//! rollback, and hostile text (markup, ampersands, quotes) in every name a scenario controls.

use crate::record::*;
use std::collections::BTreeMap;

/// A latency histogram of `n` values spread over `lo_ms..hi_ms`.
fn hist(n: u64, lo_ms: u64, hi_ms: u64) -> Hist {
    let cfg = HistConfig::default();
    let mut h = cfg.new_histogram().expect("histogram");
    for i in 0..n {
        let ms = lo_ms + (hi_ms - lo_ms) * i / n.max(1);
        h.record(ms * 1000).expect("in range");
    }
    Hist::from_histogram(&h).expect("serializable")
}

fn tier(n: u64, lo: u64, hi: u64) -> TierStats {
    TierStats {
        count: n,
        outcomes: BTreeMap::from([("ok".into(), n)]),
        latency: hist(n, lo, hi),
        service_time: hist(n, lo / 2, hi / 2),
        send_delay: hist(n, 0, 1),
    }
}

/// The record.
pub(crate) fn record() -> RunRecord {
    let per_tier = BTreeMap::from([
        ("fast <i>".to_owned(), tier(40, 100, 900)),
        ("turbo".to_owned(), tier(60, 50, 300)),
    ]);
    let window = |i: u64| WindowStats {
        start_s: i as f64 * 5.0,
        end_s: (i + 1) as f64 * 5.0,
        offered: 50,
        sent: 50,
        completed: 50,
        offered_rate: 10.0,
        achieved_rate: 10.0,
        in_flight_max: 4,
        in_flight_cap_hits: 0,
        per_tier: per_tier.clone(),
    };
    let overall = TierStats::merge_all(per_tier.values()).expect("merge");
    let alert_fail = ExpectationVerdict {
        alert: "GpuOom<script>".into(),
        description: "fires within 30 s after oom.start".into(),
        passed: false,
        detail: "never went pending or firing".into(),
        latency_s: None,
        explanation: vec![
            "at 12.0 s:".into(),
            "  rate(errors[1m]) > 0.5 was 0 (<no data> & \"empty\")".into(),
        ],
    };
    RunRecord {
        version: RECORD_VERSION,
        tool: ToolInfo {
            name: "firedrill".into(),
            version: "0.1.0".into(),
        },
        scenario: ScenarioInfo {
            name: "drill <b>&\"'".into(),
            file: "scenarios/<drill>.yaml".into(),
            seed: 7,
            source: "name: \"drill <b>&\\\"'\"\n# </pre><script>alert(1)</script>\n".into(),
        },
        plan: PlanSummary {
            stages: vec![StageSummary {
                name: "hold".into(),
                kind: "hold".into(),
                start_s: 0.0,
                duration_s: 10.0,
                rate_from: 10.0,
                rate_to: 10.0,
            }],
            expected_requests: 100.0,
            duration_s: 10.0,
        },
        started_at: "2026-01-02T03:04:05.678Z".into(),
        duration_s: 10.2,
        target: TargetInfo {
            kind: TargetKind::ReferenceServer,
            url: "http://127.0.0.1:40000".into(),
            metrics_url: Some("http://127.0.0.1:40000/metrics".into()),
        },
        window_s: 5.0,
        windows: vec![window(0), window(1)],
        totals: PhaseStats {
            start_s: 0.0,
            end_s: 10.0,
            offered: 100,
            sent: 100,
            completed: 100,
            offered_rate: 10.0,
            achieved_rate: 10.0,
            in_flight_max: 4,
            in_flight_cap_hits: 0,
            per_tier,
            overall,
        },
        outcomes: BTreeMap::from([("ok".into(), 97), ("gpu_oom".into(), 3)]),
        series: serde_json::Value::Null,
        events: vec![
            Event {
                t_s: 0.0,
                kind: "stage".into(),
                name: "hold".into(),
                detail: "10 req/s".into(),
            },
            Event {
                t_s: 2.0,
                kind: "fault_start".into(),
                name: "oom<img src=x onerror=alert(1)>".into(),
                detail: "gpu_oom & friends".into(),
            },
        ],
        faults: vec![FaultRecord {
            name: "oom<img src=x onerror=alert(1)>".into(),
            kind: "gpu_oom".into(),
            via: "server".into(),
            planned_start_s: 2.0,
            planned_end_s: 8.0,
            injected_s: Some(2.01),
            reverted_s: None,
            spec: serde_json::json!({"kind": "gpu_oom", "fraction": 0.9}),
        }],
        fault_journal: vec![FaultJournalEntry {
            t_s: 2.01,
            fault: "oom".into(),
            action: "inject".into(),
            ok: true,
            detail: "injected".into(),
        }],
        rollback: Some(RollbackRecord {
            verified: false,
            problems: vec!["server still lists <gpu_oom>".into()],
        }),
        rules: None,
        alerts: vec![AlertRecord {
            name: "Surprise".into(),
            labels: BTreeMap::from([("severity".into(), "page\"><b>".into())]),
            transitions: vec![
                AlertTransition {
                    t_s: 4.0,
                    state: "pending".into(),
                },
                AlertTransition {
                    t_s: 5.0,
                    state: "firing".into(),
                },
            ],
            annotations: BTreeMap::new(),
        }],
        expectations: vec![
            alert_fail,
            ExpectationVerdict {
                alert: "Quiet".into(),
                description: "never fires".into(),
                passed: true,
                detail: "never fired".into(),
                latency_s: None,
                explanation: vec![],
            },
            ExpectationVerdict {
                alert: "SLO availability".into(),
                description: "keeps at least 50.0% of its error budget".into(),
                passed: true,
                detail: "80.0% of the budget left".into(),
                latency_s: None,
                explanation: vec![],
            },
            ExpectationVerdict {
                alert: "GpuOom".into(),
                description: "fires and resolves under both engines within 5 s".into(),
                passed: true,
                detail: "agree within 1.0 s".into(),
                latency_s: Some(1.0),
                explanation: vec![],
            },
            ExpectationVerdict {
                alert: "Surprise".into(),
                description: "no alert fires unexpected (add an expectation or rules.allow)".into(),
                passed: false,
                detail: "fired at 5.0 s {severity=\"page\"}".into(),
                latency_s: None,
                explanation: vec![],
            },
        ],
        slos: vec![SloRecord {
            name: "availability".into(),
            objective: 99.0,
            good: 97.0,
            total: 100.0,
            sli: Some(0.97),
            budget_consumed: Some(3.0),
            budget_remaining: Some(-2.0),
            burn: vec![BurnRecord {
                long_s: 60.0,
                short_s: 5.0,
                factor: 14.4,
                severity: "page".into(),
                max_long: Some(3.0),
                max_short: None,
            }],
        }],
        thresholds: vec![
            ThresholdVerdict {
                name: "p95 <fast> & \"quoted\"".into(),
                description: "p95 < 500 ms & \"fast\"".into(),
                passed: false,
                observed: Some(812.0),
                limit: 500.0,
                unit: "ms".into(),
                window: ThresholdWindow::Sliding {
                    length_s: 5.0,
                    worst_start_s: Some(5.0),
                },
                detail: "p95 was 812 ms > 500 ms: <b>&amp; \"x\" 'y'".into(),
            },
            ThresholdVerdict {
                name: "error ratio".into(),
                description: "errors below 5%".into(),
                passed: true,
                observed: Some(0.03),
                limit: 0.05,
                unit: "ratio".into(),
                window: ThresholdWindow::Run,
                detail: "3% errors".into(),
            },
        ],
        trust: Trust {
            trustworthy: false,
            reasons: vec!["send delay p99 12 ms > 10 ms <late>".into()],
            send_delay_p99_ms: 12.0,
            max_send_delay_ms: 40.0,
            in_flight_cap_hits: 0,
        },
        verdict: Verdict {
            passed: false,
            exit_code: 1,
        },
    }
}
