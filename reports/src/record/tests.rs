use super::*;
use hdrhistogram::Histogram;

/// A small deterministic generator (xorshift64*), so tests need no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A latency-like value in microseconds: log-uniform from 100 µs to ~10 s.
    fn latency_us(&mut self) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (100.0 * 10f64.powf(5.0 * u)) as u64
    }
}

fn hist_of(values: &[u64]) -> Histogram<u64> {
    let mut h = HistConfig::default().new_histogram().unwrap();
    for &v in values {
        h.saturating_record(v);
    }
    h
}

/// A unique scratch directory per test (no tempfile dependency; tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "firedrill-record-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tier(values: &[u64]) -> TierStats {
    let h = Hist::from_histogram(&hist_of(values)).unwrap();
    TierStats {
        count: values.len() as u64,
        outcomes: BTreeMap::from([("ok".into(), values.len() as u64)]),
        latency: h.clone(),
        service_time: h.clone(),
        send_delay: Hist::empty(&HistConfig::default()).unwrap(),
    }
}

/// A complete record: one window of fast requests, faults, alerts and SLOs.
pub(crate) fn sample_record() -> RunRecord {
    let mut rng = Rng(7);
    let values: Vec<u64> = (0..500).map(|_| rng.latency_us()).collect();
    let window = WindowStats {
        start_s: 0.0,
        end_s: 5.0,
        offered: 500,
        sent: 500,
        completed: 498,
        offered_rate: 100.0,
        achieved_rate: 100.0,
        in_flight_max: 12,
        in_flight_cap_hits: 0,
        per_tier: BTreeMap::from([("fast".into(), tier(&values))]),
    };
    RunRecord {
        version: RECORD_VERSION,
        tool: ToolInfo {
            name: "firedrill".into(),
            version: "0.1.0".into(),
        },
        scenario: ScenarioInfo {
            name: "quickstart".into(),
            file: "scenarios/quickstart.yaml".into(),
            seed: 42,
            source: "version: 1\nname: quickstart\n# ünïcode and \"quotes\"\n".into(),
        },
        plan: PlanSummary {
            stages: vec![StageSummary {
                name: "warm".into(),
                kind: "ramp".into(),
                start_s: 0.0,
                duration_s: 5.0,
                rate_from: 0.0,
                rate_to: 200.0,
            }],
            expected_requests: 500.0,
            duration_s: 5.0,
        },
        started_at: "2025-01-02T03:04:05.678Z".into(),
        duration_s: 5.0,
        target: TargetInfo {
            kind: TargetKind::ReferenceServer,
            url: "http://127.0.0.1:40000".into(),
            metrics_url: Some("http://127.0.0.1:40000/metrics".into()),
        },
        window_s: 5.0,
        windows: vec![window.clone()],
        totals: PhaseStats {
            start_s: 0.0,
            end_s: 5.0,
            offered: 500,
            sent: 500,
            completed: 498,
            offered_rate: 100.0,
            achieved_rate: 100.0,
            in_flight_max: 12,
            in_flight_cap_hits: 0,
            per_tier: window.per_tier.clone(),
            overall: window.overall().unwrap().unwrap(),
        },
        outcomes: BTreeMap::from([("ok".into(), 498), ("timeout".into(), 2)]),
        series: serde_json::json!({"queue_depth": [[0.0, 1.0], [1.0, 3.0]]}),
        events: vec![Event {
            t_s: 0.0,
            kind: "stage".into(),
            name: "warm".into(),
            detail: "ramp 0 -> 200 req/s".into(),
        }],
        faults: vec![FaultRecord {
            name: "oom".into(),
            kind: "gpu_oom".into(),
            via: "server".into(),
            planned_start_s: 1.0,
            planned_end_s: 2.0,
            injected_s: Some(1.01),
            reverted_s: Some(2.02),
            spec: serde_json::json!({"kind": "gpu_oom", "fraction": 0.9}),
        }],
        fault_journal: vec![FaultJournalEntry {
            t_s: 1.01,
            fault: "oom".into(),
            action: "inject".into(),
            ok: true,
            detail: "id f1".into(),
        }],
        rollback: Some(RollbackRecord {
            verified: true,
            problems: vec![],
        }),
        rules: Some(RulesInfo {
            files: vec!["alerts.yaml".into()],
            time_scale: 20.0,
            interval_s: 0.75,
            errors: vec![],
            engine: "both".into(),
            prometheus_alerts: vec![],
            notifications: vec![Notification {
                t_s: 2.0,
                status: "firing".into(),
                labels: BTreeMap::from([("alertname".into(), "VRAMPressure".into())]),
            }],
        }),
        alerts: vec![AlertRecord {
            name: "VRAMPressure".into(),
            labels: BTreeMap::from([("worker_id".into(), "worker-0".into())]),
            transitions: vec![
                AlertTransition {
                    t_s: 1.2,
                    state: "pending".into(),
                },
                AlertTransition {
                    t_s: 1.8,
                    state: "firing".into(),
                },
            ],
            annotations: BTreeMap::new(),
        }],
        slos: vec![SloRecord {
            name: "availability".into(),
            objective: 99.9,
            good: 998.0,
            total: 1000.0,
            sli: Some(0.998),
            budget_consumed: Some(2.0),
            budget_remaining: Some(-1.0),
            burn: vec![BurnRecord {
                long_s: 90.0,
                short_s: 7.5,
                factor: 14.4,
                severity: "page".into(),
                max_long: Some(3.0),
                max_short: Some(20.0),
            }],
        }],
        expectations: vec![ExpectationVerdict {
            alert: "VRAMPressure".into(),
            description: "fires within 30 s after oom.start".into(),
            passed: true,
            detail: "fired 0.8 s after".into(),
            latency_s: Some(0.8),
            explanation: vec![],
        }],
        thresholds: vec![
            ThresholdVerdict {
                name: "fast-p95".into(),
                description: "p95 latency of tier fast below 500 ms".into(),
                passed: false,
                observed: Some(612.5),
                limit: 500.0,
                unit: "ms".into(),
                window: ThresholdWindow::Sliding {
                    length_s: 30.0,
                    worst_start_s: Some(40.0),
                },
                detail: "worst window 40-70 s".into(),
            },
            ThresholdVerdict {
                name: "errors".into(),
                description: "error rate below 1%".into(),
                passed: true,
                observed: None,
                limit: 0.01,
                unit: "ratio".into(),
                window: ThresholdWindow::Run,
                detail: "no requests".into(),
            },
        ],
        trust: Trust {
            trustworthy: true,
            reasons: vec![],
            send_delay_p99_ms: 0.4,
            max_send_delay_ms: 1.2,
            in_flight_cap_hits: 0,
        },
        verdict: Verdict {
            passed: false,
            exit_code: 1,
        },
    }
}

#[test]
fn record_round_trips_through_a_file() {
    let dir = scratch("roundtrip");
    let path = dir.join("record.json");
    let rec = sample_record();
    rec.write(&path).unwrap();
    let back = RunRecord::read(&path).unwrap();
    assert_eq!(back, rec);
    // Overwriting is atomic and leaves no temporary file behind.
    rec.write(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["record.json".to_string()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn write_error_names_the_file() {
    let dir = scratch("write-err");
    let path = dir.join("missing-subdir").join("record.json");
    let err = sample_record().write(&path).unwrap_err().to_string();
    assert!(err.contains("missing-subdir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn histogram_survives_serialization_with_identical_percentiles() {
    let mut rng = Rng(1);
    let values: Vec<u64> = (0..20_000).map(|_| rng.latency_us()).collect();
    let h = hist_of(&values);
    let hist = Hist::from_histogram(&h).unwrap();
    // Through JSON text as well, as a reader would get it.
    let json = serde_json::to_string(&hist).unwrap();
    let back: Hist = serde_json::from_str(&json).unwrap();
    let decoded = back.decode().unwrap();
    assert_eq!(decoded, h);
    for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0] {
        assert_eq!(
            decoded.value_at_quantile(q),
            h.value_at_quantile(q),
            "q={q}"
        );
    }
    assert_eq!(back.count, 20_000);
    assert_summary_matches(&back, &h);
    assert_eq!(
        back.quantile_ms(0.75).unwrap(),
        Some(h.value_at_quantile(0.75) as f64 / 1000.0)
    );
    // The compressed form is compact: far smaller than the counts array it stands for.
    assert!(hist.hdr.len() < 40_000, "{} bytes", hist.hdr.len());
}

/// The summary fields are exactly what the HdrHistogram library computes.
fn assert_summary_matches(hist: &Hist, h: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    assert_eq!(hist.count, h.len());
    assert_eq!(hist.min_ms, ms(h.min()));
    assert_eq!(hist.max_ms, ms(h.max()));
    assert_eq!(hist.mean_ms, h.mean() / 1000.0);
    let got = [
        hist.p50_ms,
        hist.p90_ms,
        hist.p95_ms,
        hist.p99_ms,
        hist.p999_ms,
    ];
    let want = [0.5, 0.9, 0.95, 0.99, 0.999].map(|q| ms(h.value_at_quantile(q)));
    assert_eq!(got, want);
}

#[test]
fn summary_fields_match_the_library_on_edge_cases() {
    let mut rng = Rng(5);
    let cases: Vec<Vec<u64>> = vec![
        vec![0],
        vec![1],
        vec![7; 1000],
        vec![3_600_000_000],
        vec![1, 3_600_000_000],
        (1..=1000).collect(),
        (0..999).map(|_| rng.latency_us()).collect(),
    ];
    for values in cases {
        let h = hist_of(&values);
        assert_summary_matches(&Hist::from_histogram(&h).unwrap(), &h);
    }
}

#[test]
fn merge_of_shards_equals_histogram_of_all_values() {
    let mut rng = Rng(99);
    let a: Vec<u64> = (0..7_000).map(|_| rng.latency_us()).collect();
    let b: Vec<u64> = (0..3_000).map(|_| rng.latency_us() * 3).collect();
    let all: Vec<u64> = a.iter().chain(&b).copied().collect();
    let ha = Hist::from_histogram(&hist_of(&a)).unwrap();
    let hb = Hist::from_histogram(&hist_of(&b)).unwrap();
    let merged = ha.merge(&hb).unwrap();
    let direct = Hist::from_histogram(&hist_of(&all)).unwrap();
    assert_eq!(merged.decode().unwrap(), hist_of(&all));
    // Same counts, same summary, same bytes.
    assert_eq!(merged, direct);
    // Order does not matter, and an empty shard changes nothing.
    let empty = Hist::empty(&HistConfig::default()).unwrap();
    assert_eq!(Hist::merge_all([&hb, &empty, &ha]).unwrap(), direct);
    assert!(Hist::merge_all(std::iter::empty::<&Hist>()).is_err());
}

#[test]
fn tier_stats_merge_adds_counts_and_histograms() {
    let x = tier(&[1_000, 2_000]);
    let y = tier(&[3_000]);
    let m = x.merge(&y).unwrap();
    assert_eq!(m.count, 3);
    assert_eq!(m.outcomes["ok"], 3);
    assert_eq!(m.latency.count, 3);
    assert_eq!(m.send_delay.count, 0);
    assert_eq!(m.latency, tier(&[1_000, 2_000, 3_000]).latency);
}

#[test]
fn empty_histogram_has_zero_summary() {
    let e = Hist::empty(&HistConfig::default()).unwrap();
    assert_eq!(e.count, 0);
    assert_eq!(
        (e.min_ms, e.max_ms, e.p99_ms, e.mean_ms),
        (0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(e.quantile_ms(0.5).unwrap(), None);
    assert!(e.decode().unwrap().is_empty());
}

#[test]
fn corrupt_histogram_is_a_clear_error() {
    let mut h = Hist::empty(&HistConfig::default()).unwrap();
    h.hdr = "not base64!".into();
    assert!(h.decode().unwrap_err().to_string().contains("base64"));
    h.hdr = "AAAAAA==".into();
    assert!(h.decode().unwrap_err().to_string().contains("HdrHistogram"));
}

#[test]
fn unknown_version_is_refused_clearly() {
    let dir = scratch("version");
    let path = dir.join("future.json");
    let mut v = serde_json::to_value(sample_record()).unwrap();
    v["version"] = 2.into();
    // A future version may well have fields this build does not know: the version must be
    // what the reader complains about, not the field.
    v["new_in_v2"] = serde_json::json!({"x": 1});
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let err = RunRecord::read(&path).unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("future.json"), "{msg}");
    assert!(
        msg.contains("version 2 is not supported") && msg.contains("reads version 1"),
        "{msg}"
    );

    // No version at all: not a record.
    std::fs::write(&path, "{\"name\": \"x\"}").unwrap();
    let msg = RunRecord::read(&path).unwrap_err().to_string();
    assert!(msg.contains("not a firedrill run record"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_errors_name_file_line_and_column() {
    let dir = scratch("json");
    let path = dir.join("broken.json");
    std::fs::write(&path, "{\n  \"version\": 1,\n  \"tool\": ,\n}").unwrap();
    let err = RunRecord::read(&path).unwrap_err();
    match &err {
        RecordError::Json { line, column, .. } => assert_eq!((*line, *column), (3, 11)),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("broken.json:3:11: "), "{msg}");
    assert!(!msg.contains("at line"), "location printed twice: {msg}");

    // Structurally wrong: an unknown field, with its position.
    let mut v = serde_json::to_value(sample_record()).unwrap();
    v["trust"]["surprise"] = true.into();
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let msg = RunRecord::read(&path).unwrap_err().to_string();
    assert!(msg.contains("unknown field `surprise`"), "{msg}");
    assert!(msg.starts_with(&format!("{}:", path.display())), "{msg}");

    // Missing file.
    let msg = RunRecord::read(&dir.join("nope.json"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("nope.json") && msg.contains("reading"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
