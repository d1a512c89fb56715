use super::*;
use crate::record::*;
use std::collections::BTreeMap;

/// A unique scratch directory per test (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "firedrill-plots-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A histogram of `n` latencies spread over `lo_ms..hi_ms`.
fn hist(n: u64, lo_ms: u64, hi_ms: u64) -> Hist {
    let mut h = HistConfig::default().new_histogram().unwrap();
    for i in 0..n {
        h.saturating_record((lo_ms + (hi_ms - lo_ms) * i / n.max(1)) * 1000);
    }
    Hist::from_histogram(&h).unwrap()
}

fn tier(n: u64, lo: u64, hi: u64, timeouts: u64) -> TierStats {
    TierStats {
        count: n,
        outcomes: BTreeMap::from([("ok".into(), n - timeouts), ("timeout".into(), timeouts)]),
        latency: hist(n, lo, hi),
        service_time: hist(n, lo / 2, hi / 2),
        send_delay: hist(n, 0, 1),
    }
}

/// A scraped series in the harness's encoding: first timestamp, then deltas (ms).
fn series(labels: &[(&str, &str)], points: &[(i64, serde_json::Value)]) -> serde_json::Value {
    let mut prev = 0;
    let t: Vec<i64> = points
        .iter()
        .map(|(t, _)| {
            let d = t - prev;
            prev = *t;
            d
        })
        .collect();
    let v: Vec<serde_json::Value> = points.iter().map(|(_, v)| v.clone()).collect();
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::json!({"labels": labels, "t": t, "v": v})
}

fn every_second(f: impl Fn(i64) -> serde_json::Value) -> Vec<(i64, serde_json::Value)> {
    (0..=60).map(|s| (s * 1000, f(s))).collect()
}

/// A one-minute gpu-oom drill: two tiers, a fault (and one that never got injected), alerts,
/// expectations of every kind, an SLO with its recording-rule series, latency thresholds, and
/// scraped series with gaps and staleness markers.
fn record() -> RunRecord {
    let windows: Vec<WindowStats> = (0..12)
        .map(|i| {
            let slow = (4..8).contains(&i);
            let mut per_tier = BTreeMap::from([(
                "turbo".to_string(),
                tier(
                    40,
                    50,
                    if slow { 3000 } else { 400 },
                    if slow { 4 } else { 0 },
                ),
            )]);
            // A window where "fast" had no requests: its lines must break, not dip to zero.
            if i != 6 {
                per_tier.insert("fast".into(), tier(20, 200, 900, 0));
            }
            WindowStats {
                start_s: i as f64 * 5.0,
                end_s: (i + 1) as f64 * 5.0,
                offered: 60,
                sent: if slow { 50 } else { 60 },
                completed: 58,
                offered_rate: 12.0,
                achieved_rate: if slow { 10.0 } else { 12.0 },
                in_flight_max: 8,
                in_flight_cap_hits: 0,
                per_tier,
            }
        })
        .collect();
    let totals_tiers: BTreeMap<String, TierStats> = ["turbo", "fast"]
        .iter()
        .map(|t| {
            let stats: Vec<&TierStats> =
                windows.iter().filter_map(|w| w.per_tier.get(*t)).collect();
            (t.to_string(), TierStats::merge_all(stats).unwrap())
        })
        .collect();
    let overall = TierStats::merge_all(totals_tiers.values()).unwrap();
    let up = |s: i64| serde_json::json!(if (20..40).contains(&s) { 95.0 } else { 12.0 });
    let store = serde_json::json!({
        "retention_ms": 600000,
        "metadata": {},
        "series": [
            series(&[("__name__", "queue_depth"), ("tier", "turbo"), ("model_required", "a")],
                &every_second(|s| serde_json::json!(if (20..40).contains(&s) { s - 15 } else { 0 }))),
            series(&[("__name__", "queue_depth"), ("tier", "turbo"), ("model_required", "b")],
                &every_second(|_| serde_json::json!(1))),
            series(&[("__name__", "queue_depth"), ("tier", "fast"), ("model_required", "a")],
                &every_second(|s| if s == 30 { "stale".into() } else { serde_json::json!(2) })),
            series(&[("__name__", "gpu_vram_utilization_percent"), ("worker_id", "worker-0")],
                &every_second(up)),
            series(&[("__name__", "gpu_vram_utilization_percent"), ("worker_id", "worker-1")],
                &every_second(|_| serde_json::json!(10.0))),
            series(&[("__name__", "gpu_compute_utilization_percent"), ("worker_id", "worker-0")],
                &every_second(|s| serde_json::json!((s % 10) as f64 * 9.0))),
            series(&[("__name__", "gpu_compute_utilization_percent"), ("worker_id", "worker-1")],
                &every_second(|_| "NaN".into())),
            series(&[("__name__", "slo:sli_error:ratio_rate5m"), ("slo", "availability")],
                &every_second(|s| serde_json::json!(if (22..40).contains(&s) { 0.1 } else { 0.0 }))),
            series(&[("__name__", "slo:sli_error:ratio_rate1h"), ("slo", "availability")],
                &every_second(|s| serde_json::json!(if s < 22 { 0.0 } else { 0.0005 * (s - 21).min(18) as f64 }))),
        ],
    });
    let alert = |name: &str, worker: &str, tr: &[(f64, &str)]| AlertRecord {
        name: name.into(),
        labels: BTreeMap::from([
            ("alertname".into(), name.into()),
            ("severity".into(), "page".into()),
            ("worker_id".into(), worker.into()),
        ]),
        transitions: tr
            .iter()
            .map(|(t, s)| AlertTransition {
                t_s: *t,
                state: s.to_string(),
            })
            .collect(),
        annotations: BTreeMap::new(),
    };
    let verdict = |alert: &str, description: &str, passed: bool| ExpectationVerdict {
        alert: alert.into(),
        description: description.into(),
        passed,
        detail: String::new(),
        latency_s: None,
        explanation: vec![],
    };
    RunRecord {
        version: RECORD_VERSION,
        tool: ToolInfo {
            name: "firedrill".into(),
            version: "0.1.0".into(),
        },
        scenario: ScenarioInfo {
            name: "gpu-oom".into(),
            file: "scenarios/gpu-oom.yaml".into(),
            seed: 7,
            source: String::new(),
        },
        plan: PlanSummary {
            stages: vec![
                StageSummary {
                    name: "baseline".into(),
                    kind: "hold".into(),
                    start_s: 0.0,
                    duration_s: 20.0,
                    rate_from: 12.0,
                    rate_to: 12.0,
                },
                StageSummary {
                    name: "oom".into(),
                    kind: "hold".into(),
                    start_s: 20.0,
                    duration_s: 40.0,
                    rate_from: 12.0,
                    rate_to: 12.0,
                },
            ],
            expected_requests: 720.0,
            duration_s: 60.0,
        },
        started_at: "2025-01-02T03:04:05Z".into(),
        duration_s: 60.0,
        target: TargetInfo {
            kind: TargetKind::ReferenceServer,
            url: "http://127.0.0.1:1".into(),
            metrics_url: Some("http://127.0.0.1:1/metrics".into()),
        },
        window_s: 5.0,
        windows,
        totals: PhaseStats {
            start_s: 0.0,
            end_s: 60.0,
            offered: 720,
            sent: 700,
            completed: 700,
            offered_rate: 12.0,
            achieved_rate: 11.7,
            in_flight_max: 8,
            in_flight_cap_hits: 0,
            per_tier: totals_tiers,
            overall,
        },
        outcomes: BTreeMap::from([("ok".into(), 684), ("timeout".into(), 16)]),
        series: store,
        events: vec![],
        faults: vec![
            FaultRecord {
                name: "hog".into(),
                kind: "gpu_oom".into(),
                via: "server".into(),
                planned_start_s: 20.0,
                planned_end_s: 40.0,
                injected_s: Some(20.01),
                reverted_s: Some(40.02),
                spec: serde_json::json!({"kind": "gpu_oom"}),
            },
            FaultRecord {
                name: "late".into(),
                kind: "latency".into(),
                via: "proxy".into(),
                planned_start_s: 50.0,
                planned_end_s: 70.0,
                injected_s: None,
                reverted_s: None,
                spec: serde_json::json!({}),
            },
        ],
        fault_journal: vec![],
        rollback: None,
        rules: Some(RulesInfo {
            files: vec!["alerts.yaml".into()],
            time_scale: 40.0,
            interval_s: 0.375,
            errors: vec![],
            engine: "builtin".into(),
            prometheus_alerts: vec![],
            notifications: vec![],
        }),
        alerts: vec![
            alert(
                "VRAMPressure",
                "worker-0",
                &[(21.0, "pending"), (26.0, "firing"), (41.0, "inactive")],
            ),
            alert(
                "VRAMPressure",
                "worker-1",
                &[(30.0, "pending"), (33.0, "inactive")],
            ),
            alert(
                "SLOBurnRatePage",
                "worker-0",
                &[(23.0, "pending"), (23.0, "firing")],
            ),
        ],
        expectations: vec![
            verdict("VRAMPressure", "fires within 25 s after hog.start", true),
            verdict("VRAMPressure", "resolves within 10 s after hog.end", true),
            verdict("SLOBurnRatePage", "fires within 5 s after oom.start", true),
            verdict("CSAMDetected", "never fires", true),
            verdict(
                "GenerationErrorRate",
                "fires within 15 s after hog.start",
                false,
            ),
            verdict("VRAMPressure", "is firing at 30s", true),
            verdict(
                "SLO availability",
                "keeps at least 50.0% of its error budget",
                false,
            ),
        ],
        slos: vec![SloRecord {
            name: "availability".into(),
            objective: 99.0,
            good: 684.0,
            total: 700.0,
            sli: Some(684.0 / 700.0),
            budget_consumed: Some(2.29),
            budget_remaining: Some(-1.29),
            burn: vec![
                BurnRecord {
                    long_s: 90.0,
                    short_s: 7.5,
                    factor: 14.4,
                    severity: "page".into(),
                    max_long: Some(0.9),
                    max_short: Some(10.0),
                },
                BurnRecord {
                    long_s: 540.0,
                    short_s: 45.0,
                    factor: 6.0,
                    severity: "page".into(),
                    max_long: None,
                    max_short: Some(0.0),
                },
            ],
        }],
        thresholds: vec![
            ThresholdVerdict {
                name: "turbo p95 under 2 s".into(),
                description: "p95 of turbo latency from intended send time <= 2s".into(),
                passed: false,
                observed: Some(2900.0),
                limit: 2000.0,
                unit: "ms".into(),
                window: ThresholdWindow::Run,
                detail: String::new(),
            },
            ThresholdVerdict {
                name: "p99 under 5 s".into(),
                description: "p99 of latency from intended send time <= 5s".into(),
                passed: true,
                observed: Some(2990.0),
                limit: 5000.0,
                unit: "ms".into(),
                window: ThresholdWindow::Run,
                detail: String::new(),
            },
            ThresholdVerdict {
                name: "errors".into(),
                description: "share of timeout <= 0.1".into(),
                passed: true,
                observed: Some(0.02),
                limit: 0.1,
                unit: "ratio".into(),
                window: ThresholdWindow::Run,
                detail: String::new(),
            },
        ],
        trust: Trust {
            trustworthy: true,
            reasons: vec![],
            send_delay_p99_ms: 0.1,
            max_send_delay_ms: 0.2,
            in_flight_cap_hits: 0,
        },
        verdict: Verdict {
            passed: false,
            exit_code: 1,
        },
    }
}

fn names(files: &[PlotFile]) -> Vec<&str> {
    files.iter().map(|f| f.name.as_str()).collect()
}

/// Decodes a PNG and counts the pixels that are not white: a blank or nearly blank plot fails.
fn check_png(path: &Path) -> (u32, u32) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let share = inked as f64 / (w as f64 * h as f64);
    assert!(
        share > 0.02,
        "{}: only {share:.4} of pixels drawn",
        path.display()
    );
    // Text is there: dark pixels from the embedded font (and axes) exist.
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(dark > 2000, "{}: {dark} dark pixels", path.display());
    (w, h)
}

#[test]
fn every_plot_is_rendered_to_svg_and_png() {
    let dir = scratch("all").join("plots");
    let rec = record();
    let files = render_all(&rec, &dir).unwrap();
    assert_eq!(
        names(&files),
        [
            "latency",
            "throughput",
            "queue_gpu",
            "alerts",
            "budget",
            "percentiles"
        ]
    );
    for f in &files {
        assert_eq!(f.svg, dir.join(format!("{}.svg", f.name)));
        assert_eq!(f.png, dir.join(format!("{}.png", f.name)));
        let (w, h) = check_png(&f.png);
        assert_eq!(w, style::WIDTH);
        assert!(h > 300, "{}: {h}", f.name);
        let svg = std::fs::read_to_string(&f.svg).unwrap();
        assert!(svg.starts_with("<svg"), "{}", f.name);
        assert!(
            svg.contains(&format!("width=\"{w}\" height=\"{h}\"")),
            "{}",
            f.name
        );
        assert!(svg.contains(&f.title), "{}: title missing", f.name);
        // Every text element names the embedded font first.
        assert!(
            svg.contains(&format!("font-family=\"{}\"", style::FONT)),
            "{}",
            f.name
        );
        assert!(!svg.contains("font-family=\"sans-serif\""), "{}", f.name);
    }
    let svg = |name: &str| std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
    // What the plots say, as text.
    let latency = svg("latency");
    assert!(latency.contains("tier turbo"), "tier panel");
    assert!(latency.contains("turbo p95 under 2 s: ≤ 2000 ms ✗ failed"));
    assert!(latency.contains("hog") && latency.contains("late (not injected)"));
    assert!(latency.contains("latency (ms, log)") && latency.contains("time since run start (s)"));
    let alerts = svg("alerts");
    assert!(
        alerts.contains("VRAMPressure{worker_id=&quot;worker-0&quot;}")
            || alerts.contains("VRAMPressure{worker_id=\"worker-0\"}")
    );
    assert!(alerts.contains("CSAMDetected") && alerts.contains("GenerationErrorRate"));
    assert!(alerts.contains("✗ 1 missed"));
    let budget = svg("budget");
    assert!(budget.contains("availability keeps ≥ 50% ✗"));
    assert!(budget.contains("factor 14.4"));
    let pct = svg("percentiles");
    assert!(pct.contains("99%") && pct.contains("50%"));
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn a_record_without_series_skips_the_series_plots() {
    let dir = scratch("noseries");
    let mut rec = record();
    rec.series = serde_json::Value::Null;
    let files = render_all(&rec, &dir).unwrap();
    assert_eq!(
        names(&files),
        ["latency", "throughput", "alerts", "budget", "percentiles"]
    );
    // The budget falls back to what the record holds: bars, said so on the plot.
    let budget = std::fs::read_to_string(dir.join("budget.svg")).unwrap();
    assert!(budget.contains("at the end of the run"), "fallback caption");
    check_png(&dir.join("budget.png"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn odd_records_render_without_panicking() {
    // Zero-length run, no windows, no requests, no SLOs or alerts: nothing to plot.
    let mut empty = record();
    empty.duration_s = 0.0;
    empty.plan.duration_s = 0.0;
    empty.windows.clear();
    for s in empty.totals.per_tier.values_mut() {
        s.count = 0;
        s.latency = Hist::empty(&HistConfig::default()).unwrap();
    }
    empty.series = serde_json::json!({"series": "not a list"});
    empty.alerts.clear();
    empty.expectations.clear();
    empty.slos.clear();
    empty.faults.clear();
    let dir = scratch("empty");
    assert_eq!(render_all(&empty, &dir).unwrap(), vec![]);

    // NaN and infinities everywhere a number can be, empty windows, a 100% objective.
    let mut odd = record();
    odd.duration_s = f64::NAN;
    odd.windows[0].offered_rate = f64::NAN;
    odd.windows[1].achieved_rate = f64::INFINITY;
    odd.windows[2].end_s = odd.windows[2].start_s;
    odd.windows[3].per_tier.clear();
    odd.faults[0].reverted_s = Some(f64::NAN);
    odd.alerts[0].transitions[1].t_s = f64::NAN;
    odd.slos[0].objective = 100.0;
    odd.slos[0].budget_remaining = Some(f64::NEG_INFINITY);
    odd.slos[0].burn[0].max_long = Some(f64::NAN);
    odd.thresholds[0].limit = f64::NAN;
    odd.expectations.push(ExpectationVerdict {
        alert: "X".into(),
        description: "fires within NaN s after nowhere.start".into(),
        passed: false,
        detail: "{".into(),
        latency_s: None,
        explanation: vec![],
    });
    let files = render_all(&odd, &dir).unwrap();
    assert!(names(&files).contains(&"latency"), "{:?}", names(&files));
    for f in &files {
        assert!(f.png.exists() && f.svg.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_directory_is_an_error_naming_it() {
    let dir = scratch("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = render_all(&record(), &file.join("plots")).unwrap_err();
    assert!(err.contains("a-file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn percentile_axis_positions_and_labels() {
    assert_eq!(percentiles_label(0.0), "0%");
    assert_eq!(percentiles_label(1.0), "90%");
    assert_eq!(percentiles_label(2.0), "99%");
    assert_eq!(percentiles_label(3.0), "99.9%");
    assert_eq!(percentiles_label(5.0), "99.999%");
    assert_eq!(percentiles_label((2f64).log10()), "50%");
}

fn percentiles_label(x: f64) -> String {
    percentiles::label_of(x)
}

#[test]
fn scraped_series_decode_deltas_and_markers() {
    let store = series::Store::parse(&serde_json::json!({"series": [
        {"labels": {"__name__": "q", "tier": "a"}, "t": [1000, 1000, 1000], "v": [1, "stale", 3]},
        {"labels": {"__name__": "q", "tier": "a"}, "t": [1000, 1000, 1000], "v": [1, 1, 1]},
        {"labels": {"__name__": "q"}, "t": [1000], "v": [1, 2]},
        {"labels": {"__name__": "q", "tier": "b"}, "t": [2000], "v": ["+Inf"]},
    ]}));
    let by = store.sum_by("q", "tier");
    assert_eq!(by.len(), 2);
    assert_eq!(by[0].0, "a");
    assert_eq!(by[0].1[0], (1.0, 2.0));
    assert!(by[0].1[1].1.is_nan(), "a stale sample is a gap");
    assert_eq!(by[0].1[2], (3.0, 4.0));
    assert!(by[1].1[0].1.is_nan());
}

#[test]
fn lines_break_at_gaps() {
    let pts = [
        (0.0, 1.0),
        (1.0, f64::NAN),
        (2.0, 2.0),
        (3.0, 3.0),
        (4.0, f64::INFINITY),
    ];
    assert_eq!(
        style::segments(&pts),
        vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]
    );
    assert!(style::segments(&[]).is_empty());
}

/// Renders a real record for a person to look at:
/// `FIREDRILL_PLOT_RECORD=/path/record.json FIREDRILL_PLOT_OUT=/tmp/out cargo test -p reports
/// plots::tests::render_a_real_record -- --ignored --nocapture`.
#[test]
#[ignore = "needs a record from a real run"]
fn render_a_real_record() {
    let (Ok(path), Ok(out)) = (
        std::env::var("FIREDRILL_PLOT_RECORD"),
        std::env::var("FIREDRILL_PLOT_OUT"),
    ) else {
        return;
    };
    let rec = RunRecord::read(Path::new(&path)).unwrap();
    let t = std::time::Instant::now();
    let files = render_all(&rec, Path::new(&out)).unwrap();
    println!("rendered {:?} in {:?}", names(&files), t.elapsed());
}
