//! `firedrill run`: scenario -> plan -> target -> load, scrape and record -> verdict -> record.
//! The target started here is stopped on every exit path: normal end, error, and Ctrl-C.

use crate::load::{run_closed, run_open, Endpoint, EngineConfig, Event, HttpClient};
use crate::plan::Plan;
use crate::prometheus::{PromStack, StackOptions};
use crate::record::{Recorder, RequestResult};
use crate::rules::alerting::AlertState;
use crate::rules::group::{AlertEvent, RuleSet};
use crate::rules::rulefile::RuleFile;
use crate::scenario::alerts::RuleEngine;
use crate::scenario::{read_inputs, LoadModel, Scenario, TIERS};
use crate::scrape::{Scraper, SeriesStore};
use crate::target::{Target, TargetError};
use reports::record::{
    HistConfig, PlanSummary, RunRecord, ScenarioInfo, StageSummary, TargetInfo, TargetKind,
    ToolInfo, Verdict, RECORD_VERSION,
};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Progress to stderr that never panics: a closed stderr (`firedrill run ... 2>&1 | head`) must
/// not abort a run before its faults are rolled back.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// As `say!`, without the newline.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit codes.
pub mod exit {
    /// Every threshold held.
    pub const PASS: u8 = 0;
    /// A threshold or expectation failed.
    pub const FAILED: u8 = 1;
    /// The scenario (or something it names) is wrong.
    pub const BAD_INPUT: u8 = 2;
    /// The target or the harness's own infrastructure failed.
    pub const INFRA: u8 = 3;
}

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder; default `reports/out/<name>-<time>`.
    pub out_dir: Option<PathBuf>,
    /// The binary that runs the reference server (`firedrill` itself).
    pub server_exe: PathBuf,
    /// Send delay p99 above this marks the run untrustworthy.
    pub send_delay_limit: Duration,
    /// Statistics window length.
    pub window: Duration,
    /// Overrides the scenario's `rules.engine`.
    pub engine: Option<RuleEngine>,
    /// Turns on `rules.alertmanager` (and a real Prometheus with it).
    pub alertmanager: bool,
}

/// What a run (or a sweep) ended with.
#[derive(Debug)]
pub struct Outcome<R> {
    /// Process exit code.
    pub exit_code: u8,
    /// Where outputs went (when it got that far).
    pub out_dir: Option<PathBuf>,
    /// The record written (when it got that far).
    pub record: Option<R>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

/// What a run ended with.
pub type RunOutcome = Outcome<RunRecord>;

impl<R> Outcome<R> {
    /// Ended before a record: exit `code` with `error`.
    pub fn failed(code: u8, error: String, out_dir: Option<PathBuf>) -> Outcome<R> {
        Outcome {
            exit_code: code,
            out_dir,
            record: None,
            error: Some(error),
        }
    }
}

/// Runs a scenario file; prints progress to stderr.
pub async fn run(path: &Path, opts: RunOptions) -> RunOutcome {
    let mut scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => return RunOutcome::failed(exit::BAD_INPUT, e.to_string(), None),
    };
    if opts.engine.is_some() || opts.alertmanager {
        let Some(r) = scenario.rules.as_mut() else {
            return RunOutcome::failed(
                exit::BAD_INPUT,
                format!(
                    "{}: --engine and --alertmanager need `rules:` in the scenario",
                    path.display()
                ),
                None,
            );
        };
        if let Some(e) = opts.engine {
            r.engine = e;
        }
        if opts.alertmanager {
            r.alertmanager = true;
            if !r.engine.prometheus() {
                r.engine = RuleEngine::Both;
            }
        }
        if r.alertmanager && !r.engine.prometheus() {
            return RunOutcome::failed(
                exit::BAD_INPUT,
                "--engine builtin: the scenario's rules.alertmanager needs a real Prometheus"
                    .into(),
                None,
            );
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let plan = match read_inputs(&scenario, base)
        .map_err(|e| e.to_string())
        .and_then(|i| Plan::compile(&scenario, i).map_err(|e| format!("{}: {e}", path.display())))
    {
        Ok(p) => Arc::new(p),
        Err(e) => return RunOutcome::failed(exit::BAD_INPUT, e, None),
    };
    let (rule_set, rule_files) = match load_rules(&scenario, base) {
        Ok(r) => r,
        Err(e) => return RunOutcome::failed(exit::BAD_INPUT, e, None),
    };
    let rules_cfg = scenario.rules.clone();
    let engine = rules_cfg.as_ref().map_or(RuleEngine::Builtin, |r| r.engine);
    // Before the run: rules that can never fire on what the reference server exports.
    let lint_before = lint_rules(&scenario, base, None);
    for f in &lint_before {
        say!("firedrill: lint before the run: {f}");
    }
    let baseline = match &scenario.baseline {
        Some(b) => {
            let p = base.join(&b.record);
            match RunRecord::read(&p) {
                Ok(r) => Some(r),
                Err(e) => {
                    return RunOutcome::failed(
                        exit::BAD_INPUT,
                        format!("{}: baseline.record: {}: {e}", path.display(), p.display()),
                        None,
                    )
                }
            }
        }
        None => None,
    };
    let slo_spec = match scenario.rules.as_ref().and_then(|r| r.slos.as_ref()) {
        Some(f) => match crate::slo::SloFile::load(&base.join(f)) {
            Ok(spec) => {
                let unknown = scenario.expect.iter().enumerate().find_map(|(i, e)| {
                    let name = e.slo.as_ref()?;
                    (!spec.slos.iter().any(|s| &s.name == name)).then(|| {
                        format!(
                            "{}: expect[{i}].slo: no SLO named {name:?} in {}",
                            path.display(),
                            f.display()
                        )
                    })
                });
                if let Some(e) = unknown {
                    return RunOutcome::failed(exit::BAD_INPUT, e, None);
                }
                Some(spec)
            }
            Err(e) => return RunOutcome::failed(exit::BAD_INPUT, e, None),
        },
        None => None,
    };
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| crate::target::default_out_dir(&scenario.name));
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        return RunOutcome::failed(
            exit::INFRA,
            format!("cannot create {}: {e}", out_dir.display()),
            None,
        );
    }
    say!("firedrill: {} -> {}", scenario.name, out_dir.display());
    let mut target = match Target::start(&scenario, &opts.server_exe, &out_dir).await {
        Ok(t) => t,
        Err(TargetError::Config(e)) => {
            return RunOutcome::failed(
                exit::BAD_INPUT,
                format!("{}: {e}", path.display()),
                Some(out_dir),
            )
        }
        Err(TargetError::Failed(e)) => return RunOutcome::failed(exit::INFRA, e, Some(out_dir)),
    };
    let timeline = crate::scenario::faults::timeline(&scenario);
    // Network and HTTP faults need the fault proxy between the load and the target; scraping
    // still goes straight to the target.
    let proxy = if crate::scenario::faults::needs_proxy(&scenario) {
        let token = format!("{:032x}", rand::random::<u128>());
        match chaos::proxy::Proxy::new(target.base.clone(), token.clone())
            .start()
            .await
        {
            Ok(h) => {
                say!("firedrill: fault proxy {} -> {}", h.url(), target.base);
                Some((h, token))
            }
            Err(e) => {
                let _ = target.stop(Duration::from_secs(60)).await;
                return RunOutcome::failed(
                    exit::INFRA,
                    format!("cannot start the fault proxy: {e}"),
                    Some(out_dir),
                );
            }
        }
    } else {
        None
    };
    let channels = chaos::Channels {
        server: target.admin.clone(),
        proxy: proxy
            .as_ref()
            .map(|(h, token)| chaos::AdminClient::new(h.control_url(), token.clone())),
    };
    let api_base = proxy
        .as_ref()
        .map_or_else(|| target.base.clone(), |(h, _)| h.url());
    let prom = match (&rules_cfg, engine.prometheus()) {
        (Some(r), true) => {
            let started = PromStack::start(StackOptions {
                dir: &out_dir.join("prometheus"),
                metrics_url: &target.metrics_url,
                scrape_interval_ms: scenario.observe.scrape_interval.0.as_millis() as i64,
                eval_interval_ms: crate::rules::scale::scale_ms(
                    r.interval.0.as_millis() as i64,
                    r.time_scale,
                ),
                rules: &rule_files,
                time_scale: r.time_scale,
                alertmanager: r.alertmanager,
            })
            .await;
            match started {
                Ok(p) => {
                    say!(
                        "firedrill: prometheus {} evaluates the rules ({})",
                        p.url,
                        engine.as_str()
                    );
                    Some(p)
                }
                Err(e) => {
                    if let Some((h, _)) = proxy {
                        h.shutdown().await;
                    }
                    let _ = target.stop(Duration::from_secs(60)).await;
                    return RunOutcome::failed(exit::INFRA, e, Some(out_dir));
                }
            }
        }
        _ => None,
    };
    let start = Instant::now();
    let result = drive(
        &scenario,
        plan.clone(),
        &target,
        &api_base,
        &opts,
        Drill {
            start,
            timeline,
            channels,
            rules: rule_set,
            builtin: engine.builtin(),
            prometheus: prom.as_ref().map(|p| p.url.clone()),
        },
    )
    .await;
    let mut notifications = Vec::new();
    if let Some(p) = prom {
        if rules_cfg.as_ref().is_some_and(|r| r.alertmanager) {
            notifications = await_deliveries(&p, &result.7, start).await;
        }
        p.stop().await;
    }
    if let Some((h, _)) = proxy {
        h.shutdown().await;
    }
    let server_exit = target.stop(Duration::from_secs(60)).await;
    let (recorder, store, mut events, end, stopped, fault_outcome, rules_outcome, prom_outcome) =
        result;
    let (rules_info, alerts, mut expectations) = match &rules_outcome {
        Some((rs, evs)) => {
            let st = store.lock().expect("store lock");
            let (prom_events, prom_errors) = &prom_outcome;
            let judged = if engine.builtin() { evs } else { prom_events };
            let (mut info, alerts, mut verdicts) = judge_alerts(&scenario, rs, judged, &st, end);
            if let Some(info) = info.as_mut() {
                info.engine = engine.as_str().into();
                if !engine.builtin() {
                    info.errors = prom_errors.iter().take(5).cloned().collect();
                }
                if engine == RuleEngine::Both {
                    info.prometheus_alerts = alert_records(prom_events);
                    // Both evaluate at the same instants, but each scrapes the target at its own:
                    // a change reaches one store up to a scrape interval before the other, and
                    // the evaluation after it up to an evaluation interval later.
                    let tolerance = rs.longest_interval_ms() as f64 / 1000.0
                        + scenario.observe.scrape_interval.0.as_secs_f64();
                    verdicts.extend(crate::rules::agree::agreement(
                        &alerts,
                        &info.prometheus_alerts,
                        tolerance,
                        end.as_secs_f64(),
                    ));
                    info.errors.extend(prom_errors.iter().take(5).cloned());
                }
                if rules_cfg.as_ref().is_some_and(|r| r.alertmanager) {
                    let fired = if engine.builtin() {
                        &info.prometheus_alerts
                    } else {
                        &alerts
                    };
                    verdicts.extend(crate::rules::agree::delivered(fired, &notifications));
                    info.notifications = notifications;
                }
            }
            (info, alerts, verdicts)
        }
        None => (None, Vec::new(), Vec::new()),
    };
    // After the run: the same rules against what the target actually exported.
    let lint_after = {
        let st = store.lock().expect("store lock");
        lint_rules(&scenario, base, Some(&st))
    };
    for f in &lint_after {
        say!("firedrill: lint after the run: {f}");
        events.push(reports::record::Event {
            t_s: end.as_secs_f64(),
            kind: "lint".into(),
            name: f.code.as_str().into(),
            detail: f.to_string(),
        });
    }
    let slos = match &slo_spec {
        Some(spec) => {
            let st = store.lock().expect("store lock");
            let k = scenario.rules.as_ref().map_or(1.0, |r| r.time_scale);
            let engine = crate::rules::Engine::default();
            spec.slos
                .iter()
                .map(|slo| {
                    crate::slo::measure::measure(&engine, &st, slo, end.as_millis() as i64, k)
                })
                .collect()
        }
        None => Vec::new(),
    };
    for e in &scenario.expect {
        if let (Some(name), Some(b)) = (&e.slo, e.budget_remaining) {
            let rec = slos
                .iter()
                .find(|r: &&reports::record::SloRecord| &r.name == name);
            expectations.push(crate::slo::measure::judge_budget(name, b.at_least, rec));
        }
    }
    for a in &alerts {
        for t in &a.transitions {
            if t.state != "pending" {
                events.push(reports::record::Event {
                    t_s: t.t_s,
                    kind: format!("alert_{}", t.state),
                    name: a.name.clone(),
                    detail: String::new(),
                });
            }
        }
    }
    let (timeline, journal, rollback) = fault_outcome.unwrap_or_else(|| {
        (
            chaos::Timeline::default(),
            Vec::new(),
            chaos::Rollback {
                verified: true,
                problems: Vec::new(),
            },
        )
    });
    let (fault_records, fault_journal, rollback_record, fault_events) =
        crate::faults::to_record(&timeline, &journal, &rollback);
    events.extend(fault_events);
    events.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    // A drill whose faults did not go in or come out as planned proved nothing: that is an
    // infrastructure failure, whatever the thresholds say.
    let fault_problem = if !rollback.verified {
        Some(format!(
            "faults not verifiably rolled back: {}",
            rollback.problems.join("; ")
        ))
    } else {
        journal.iter().find(|e| !e.ok).map(|e| {
            format!(
                "fault {} {} failed: {}",
                e.fault,
                e.action.as_str(),
                e.detail
            )
        })
    };
    let interrupted = stopped.interrupted;
    let (windows, totals, outcomes, trust) = recorder.finish(end, opts.send_delay_limit);
    let window_s = opts.window.as_secs_f64();
    let thresholds = crate::verdict::judge(&scenario.thresholds, &windows, &totals, window_s);
    let passed = !interrupted
        && !stopped.aborted
        && fault_problem.is_none()
        && expectations.iter().all(|e| e.passed)
        && thresholds.iter().all(|t| t.passed);
    let exit_code = if interrupted || fault_problem.is_some() {
        exit::INFRA
    } else if passed {
        exit::PASS
    } else {
        exit::FAILED
    };
    if let Some(st) = server_exit.filter(|s| !s.success()) {
        events.push(reports::record::Event {
            t_s: end.as_secs_f64(),
            kind: "target".into(),
            name: "server_exit".into(),
            detail: format!("the reference server exited with {st}"),
        });
    }
    let series = {
        let store = store.lock().expect("store lock");
        serde_json::to_value(&*store).unwrap_or(serde_json::Value::Null)
    };
    let record = RunRecord {
        version: RECORD_VERSION,
        tool: ToolInfo {
            name: "firedrill".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scenario: ScenarioInfo {
            name: scenario.name.clone(),
            file: path.display().to_string(),
            seed: scenario.seed,
            source: std::fs::read_to_string(path).unwrap_or_default(),
        },
        plan: PlanSummary {
            stages: plan
                .stages
                .iter()
                .map(|s| StageSummary {
                    name: s.name.clone(),
                    kind: s.kind.into(),
                    start_s: s.start_s,
                    duration_s: s.duration_s,
                    rate_from: s.from,
                    rate_to: s.to,
                })
                .collect(),
            expected_requests: plan.expected_requests(),
            duration_s: plan.duration.as_secs_f64(),
        },
        started_at: reference_server::telemetry::rfc3339_millis(std::time::SystemTime::now() - end),
        duration_s: end.as_secs_f64(),
        target: TargetInfo {
            kind: if target.kind == "url" {
                TargetKind::Url
            } else {
                TargetKind::ReferenceServer
            },
            url: target.base.clone(),
            metrics_url: Some(target.metrics_url.clone()),
        },
        window_s,
        windows,
        totals,
        outcomes,
        series,
        events,
        faults: fault_records,
        fault_journal,
        rollback: rollback_record,
        rules: rules_info,
        alerts,
        expectations,
        slos,
        thresholds,
        trust,
        verdict: Verdict {
            passed,
            exit_code: exit_code as i32,
        },
    };
    let mut record = record;
    let mut exit_code = exit_code;
    if let (Some(b), Some(cfg)) = (&baseline, &scenario.baseline) {
        let v = baseline_verdict(b, &record, cfg);
        if !v.passed && record.verdict.passed {
            record.verdict.passed = false;
            exit_code = exit::FAILED;
            record.verdict.exit_code = exit_code as i32;
        }
        record.thresholds.push(v);
    }
    let record_path = out_dir.join("record.json");
    if let Err(e) = record.write(&record_path) {
        return RunOutcome::failed(
            exit::INFRA,
            format!("cannot write {}: {e}", record_path.display()),
            Some(out_dir),
        );
    }
    // The documents come after the record, so a failure here loses nothing: it is a warning,
    // and `firedrill report record.json` can render them again.
    {
        use std::io::Write as _;
        let warnings = match reports::write_documents(&record, &out_dir) {
            Ok(docs) => docs.warnings,
            Err(e) => vec![e],
        };
        for w in warnings {
            let _ = writeln!(std::io::stderr(), "firedrill: warning: {w}");
        }
    }
    RunOutcome {
        exit_code,
        out_dir: Some(out_dir),
        record: Some(record),
        error: if interrupted {
            Some("interrupted".to_owned())
        } else {
            fault_problem
        },
    }
}

/// The run against its baseline, as a threshold verdict: `firedrill compare`'s verdict, the
/// regressions named.
fn baseline_verdict(
    base: &RunRecord,
    run: &RunRecord,
    cfg: &crate::scenario::Baseline,
) -> reports::record::ThresholdVerdict {
    use reports::compare::{compare, CompareOptions, Judgement};
    let opts = CompareOptions {
        tolerance: cfg.tolerance,
        error_tolerance: cfg.error_tolerance,
        min_samples: cfg.min_samples,
        ..Default::default()
    };
    let (passed, observed, detail) = match compare(base, run, &opts) {
        Ok(c) => {
            let worst = c
                .rows
                .iter()
                .filter(|r| r.metric == "p95")
                .filter_map(|r| r.change)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            let bad: Vec<String> = c
                .rows
                .iter()
                .filter(|r| r.judgement == Judgement::Regression)
                .map(|r| {
                    let (lo, hi) = r.interval.unwrap_or((f64::NAN, f64::NAN));
                    format!(
                        "{} {} {:?} -> {:?} (interval {lo:.3}..{hi:.3})",
                        r.tier, r.metric, r.baseline, r.candidate
                    )
                })
                .collect();
            let few = c
                .rows
                .iter()
                .filter(|r| r.judgement == Judgement::TooFew)
                .count();
            let detail = if bad.is_empty() {
                format!(
                    "no regression beyond the tolerances{}",
                    if few > 0 {
                        format!(" ({few} row(s) with too few samples to judge)")
                    } else {
                        String::new()
                    }
                )
            } else {
                format!("regressed: {}", bad.join("; "))
            };
            (c.passed, worst, detail)
        }
        Err(e) => (false, None, format!("cannot compare: {e}")),
    };
    reports::record::ThresholdVerdict {
        name: "no regression against the baseline".into(),
        description: format!(
            "latency quantiles and throughput within {:.0}%, error rates within {:.1} points of {} (95% bootstrap intervals)",
            cfg.tolerance * 100.0,
            cfg.error_tolerance * 100.0,
            cfg.record.display()
        ),
        passed,
        observed,
        limit: 1.0 + cfg.tolerance,
        unit: "ratio".into(),
        window: reports::record::ThresholdWindow::Run,
        detail,
    }
}

/// Why the load stopped early, if it did.
#[derive(Debug, Clone, Copy)]
struct Stopped {
    /// Ctrl-C.
    interrupted: bool,
    /// An `abort: true` threshold was breached.
    aborted: bool,
}

/// What a run does beside the load: faults and where they go, and the rules to evaluate.
struct Drill {
    /// The run's clock.
    start: Instant,
    timeline: chaos::Timeline,
    channels: chaos::Channels,
    rules: Option<RuleSet>,
    /// Whether the embedded engine evaluates `rules` (otherwise they serve explanations only).
    builtin: bool,
    /// A real Prometheus to follow (its base URL).
    prometheus: Option<String>,
}

type Driven = (
    Recorder,
    Arc<Mutex<SeriesStore>>,
    Vec<reports::record::Event>,
    Duration,
    Stopped,
    Option<(chaos::Timeline, Vec<chaos::JournalEntry>, chaos::Rollback)>,
    Option<(RuleSet, Vec<AlertEvent>)>,
    (Vec<AlertEvent>, Vec<String>),
);

/// Runs load, faults, scraping and recording until the plan ends (or Ctrl-C, or an abort), then
/// rolls the faults back.
async fn drive(
    s: &Scenario,
    plan: Arc<Plan>,
    target: &Target,
    api_base: &str,
    opts: &RunOptions,
    drill: Drill,
) -> Driven {
    let Drill {
        start,
        timeline,
        channels,
        mut rules,
        builtin,
        prometheus,
    } = drill;
    let mut tiers: Vec<String> = TIERS.iter().map(|t| t.to_string()).collect();
    tiers.push("default".into());
    let mut recorder = Recorder::new(opts.window, tiers, HistConfig::default());
    let retention = plan.duration + Duration::from_secs(900);
    let store = Arc::new(Mutex::new(SeriesStore::with_retention(retention)));
    let mut events = Vec::new();
    let clock = move || start.elapsed().as_millis() as i64;

    let interval = s.observe.scrape_interval.0;
    let scraper = Scraper::new(
        &target.metrics_url,
        interval.max(Duration::from_millis(500)),
    );
    let scrape_task = match scraper {
        Ok(sc) => {
            let st = store.clone();
            Some(tokio::spawn(sc.run(
                st,
                interval,
                start + plan.duration + Duration::from_secs(3600),
                clock,
            )))
        }
        Err(e) => {
            events.push(reports::record::Event {
                t_s: 0.0,
                kind: "scrape".into(),
                name: "disabled".into(),
                detail: e.to_string(),
            });
            None
        }
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = EngineConfig {
        request_timeout: s.load.request_timeout.0,
        poll_interval: s.load.poll_interval.0,
        max_in_flight: s.load.max_in_flight,
        think_time: s.load.think_time.0,
        fetch_image: s.load.fetch_image,
        server_timings: false,
    };
    let ep = Arc::new(Endpoint::new(api_base, target.api_key.clone()));
    let engine = match plan.model {
        LoadModel::Open => tokio::spawn(run_open(
            plan.clone(),
            HttpClient::new(),
            ep,
            cfg,
            start,
            tx,
            stop_rx,
        )),
        LoadModel::Closed => tokio::spawn(run_closed(
            plan.clone(),
            HttpClient::new(),
            ep,
            cfg,
            start,
            tx,
            stop_rx,
        )),
    };
    for st in &plan.stages {
        events.push(reports::record::Event {
            t_s: st.start_s,
            kind: "stage".into(),
            name: format!("{}.start", st.name),
            detail: st.kind.into(),
        });
    }

    let (fault_tx, mut fault_rx) = mpsc::unbounded_channel();
    let faults = (!timeline.is_empty())
        .then(|| crate::faults::FaultRun::start(timeline, channels, start, fault_tx));

    let promql = crate::rules::Engine::default();
    let mut alert_events: Vec<AlertEvent> = Vec::new();
    let (prom_tx, mut prom_rx) = mpsc::unbounded_channel();
    let (prom_done, prom_done_rx) = tokio::sync::oneshot::channel();
    let epoch_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - start.elapsed().as_millis() as i64;
    let follower = prometheus.map(|url| {
        tokio::spawn(crate::prometheus::follow(
            url,
            epoch_ms,
            prom_tx,
            prom_done_rx,
        ))
    });
    let mut prom_events: Vec<AlertEvent> = Vec::new();
    let tag = if builtin && follower.is_some() {
        " (embedded)"
    } else {
        ""
    };
    // Rules are evaluated at their groups' due times; this only decides how often to look.
    let mut rule_tick = tokio::time::interval(Duration::from_millis(100));
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = Instant::now();
    let mut interrupted = false;
    let mut aborted = false;
    let total = plan.duration.as_secs_f64();
    let mut in_flight: i64 = 0;
    let mut done_recently = 0u64;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Offered { at }) => { recorder.note_offered(at); in_flight += 1; recorder.note_in_flight(at, in_flight.max(0) as usize); }
                Some(Event::CapHit { at }) => recorder.note_cap_hit(at),
                Some(Event::Done(c)) => {
                    in_flight -= 1;
                    done_recently += 1;
                    recorder.record(&RequestResult { tier: c.tier, outcome: c.outcome.as_str().to_owned(), intended: c.intended, sent: c.sent, finished: c.finished });
                }
                None => break,
            },
            _ = tick.tick() => {
                let p = recorder.progress();
                let el = start.elapsed().as_secs_f64();
                let errors: u64 = p.outcomes.iter().filter(|(k, _)| crate::outcome::OutcomeClass::ALL.iter().any(|c| c.as_str() == k.as_str() && c.is_error())).map(|(_, v)| v).sum();
                let line = format!(
                    "{:>5.0}/{:.0}s  offered {:>5.1}/s  achieved {:>5.1}/s  in flight {:>4}  p95 {}  errors {}{}",
                    el.min(total), total,
                    plan.value_at(el.min(total - 1e-9)),
                    done_recently as f64,
                    in_flight.max(0),
                    p.p95_ms.map_or("-".into(), |v| format!("{:.0} ms", v)),
                    errors,
                    if p.in_flight_cap_hits > 0 { "  (in-flight cap hit: numbers not trustworthy)" } else { "" },
                );
                done_recently = 0;
                if !interrupted {
                    let min = s.load.stages.first().map_or(5.0, |st| st.duration.secs().min(10.0)).max(opts.window.as_secs_f64());
                    if let Some(why) = crate::verdict::abort_breach(&s.thresholds, &recorder, el, min) {
                        say!("\nfiredrill: aborting: {why}");
                        events.push(reports::record::Event { t_s: el, kind: "run".into(), name: "aborted".into(), detail: why });
                        aborted = true;
                        interrupted = true;
                        let _ = stop_tx.send(true);
                        if let Some(f) = &faults { f.stop(); }
                    }
                }
                if tty {
                    say_raw!("\r{line}\x1b[K");
                } else if last_line.elapsed() >= Duration::from_secs(5) {
                    say!("{line}");
                    last_line = Instant::now();
                }
                let _ = std::io::stderr().flush();
            }
            _ = rule_tick.tick(), if builtin && rules.is_some() => {
                if let Some(rs) = rules.as_mut() {
                    let now = start.elapsed().as_millis() as i64;
                    let evs = {
                        let mut st = store.lock().expect("store lock");
                        rs.eval_due(&promql, &mut st, now)
                    };
                    for line in evs.iter().filter_map(|e| alert_line(e, tag)) {
                        if tty { say!("\r{line}\x1b[K"); } else { say!("{line}"); }
                    }
                    alert_events.extend(evs);
                }
            }
            Some(o) = prom_rx.recv() => {
                let o: crate::prometheus::api::Observed = o;
                // Under `both`, the embedded engine evaluates when Prometheus does.
                if let (true, Some(rs)) = (builtin, rules.as_mut()) {
                    for (group, at) in &o.first_evaluations {
                        rs.align(group, *at);
                    }
                }
                for line in o.events.iter().filter_map(|e| alert_line(e, " (prometheus)")) {
                    if tty { say!("\r{line}\x1b[K"); } else { say!("{line}"); }
                }
                prom_events.extend(o.events);
            }
            Some(e) = fault_rx.recv() => {
                let line = crate::faults::console_line(&e);
                if tty { say!("\r{line}\x1b[K"); } else { say!("{line}"); }
            }
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                say!("\nfiredrill: interrupted; stopping load and the target");
                events.push(reports::record::Event { t_s: start.elapsed().as_secs_f64(), kind: "run".into(), name: "interrupted".into(), detail: "Ctrl-C".into() });
                let _ = stop_tx.send(true);
                        if let Some(f) = &faults { f.stop(); }
            }
        }
    }
    if tty {
        say!();
    }
    let _ = engine.await;
    let end = start.elapsed();
    // Faults come out before anything else happens (and before the target is stopped).
    let fault_outcome = match faults {
        Some(f) => Some(f.finish().await),
        None => None,
    };
    while let Ok(e) = fault_rx.try_recv() {
        say!("{}", crate::faults::console_line(&e));
    }
    if let Some((_, _, rb)) = &fault_outcome {
        if rb.verified {
            say!("firedrill: every fault reverted; the targets list none");
        } else {
            say!(
                "firedrill: ROLLBACK NOT VERIFIED: {}",
                rb.problems.join("; ")
            );
        }
    }
    if let Some(t) = scrape_task {
        // One last scrape so counters include the final requests.
        if let Ok(sc) = Scraper::new(&target.metrics_url, Duration::from_secs(2)) {
            let _ = sc.scrape_into(&store, clock()).await;
        }
        t.abort();
    }
    let prom_errors = match follower {
        Some(task) => {
            let _ = prom_done.send(());
            let errors = task.await.unwrap_or_default();
            while let Ok(o) = prom_rx.try_recv() {
                prom_events.extend(o.events);
            }
            errors
        }
        None => Vec::new(),
    };
    // An abort is a verdict (exit 1), an interruption is not (exit 3).
    (
        recorder,
        store,
        events,
        end,
        Stopped {
            interrupted: interrupted && !aborted,
            aborted,
        },
        fault_outcome,
        rules.map(|r| (r, alert_events)),
        (prom_events, prom_errors),
    )
}

/// The console line for an alert that starts or stops firing.
fn alert_line(e: &AlertEvent, tag: &str) -> Option<String> {
    let tr = &e.transition;
    (tr.to == AlertState::Firing || tr.from == AlertState::Firing).then(|| {
        format!(
            "{:>6.1}s  alert {} {}{tag}",
            tr.at as f64 / 1000.0,
            tr.labels.get("alertname").map_or("?", |s| s.as_str()),
            if tr.to == AlertState::Firing {
                "FIRING"
            } else {
                "resolved"
            }
        )
    })
}

/// Waits (a few seconds at most) until Alertmanager has delivered every alert Prometheus fired,
/// then returns what it delivered.
async fn await_deliveries(
    p: &PromStack,
    prom_events: &(Vec<AlertEvent>, Vec<String>),
    start: Instant,
) -> Vec<reports::record::Notification> {
    let fired: Vec<_> = prom_events
        .0
        .iter()
        .filter(|e| e.transition.to == AlertState::Firing)
        .map(|e| &e.transition.labels)
        .collect();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let got = p.notifications(start.into_std());
        let all = fired
            .iter()
            .all(|l| got.iter().any(|n| n.status == "firing" && &n.labels == *l));
        if all || Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lints the scenario's rule files against the reference server's catalog (`store: None`, for a
/// reference-server target only) or against what a run scraped. Unreadable files are reported
/// by the rule loader instead.
fn lint_rules(
    s: &Scenario,
    base: &Path,
    store: Option<&SeriesStore>,
) -> Vec<crate::rules::lint::Finding> {
    use crate::rules::lint::{lint, Exported, LintOptions, RuleSource};
    let Some(r) = &s.rules else {
        return Vec::new();
    };
    let exported = match store {
        Some(st) => Exported::from_store(st),
        None if s.target.reference_server.is_some() => {
            let units = s
                .target
                .reference_server
                .as_ref()
                .and_then(|rs| rs.config.get("metric_units"))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            Exported::catalog(units)
        }
        None => return Vec::new(),
    };
    let sources: Vec<RuleSource> = r
        .files
        .iter()
        .filter_map(|f| RuleSource::read(&base.join(f)).ok())
        .collect();
    let opts = LintOptions {
        scrape_interval: s.observe.scrape_interval.0,
        time_scale: r.time_scale,
    };
    lint(&sources, &exported, &opts).findings
}

/// Rule files as read: (path, content).
type RuleFiles = Vec<(String, RuleFile)>;

/// Reads the scenario's rule files (relative to its folder) and loads them with its time scale;
/// also returns them as read, for a real Prometheus.
fn load_rules(s: &Scenario, base: &Path) -> Result<(Option<RuleSet>, RuleFiles), String> {
    let Some(r) = &s.rules else {
        return Ok((None, Vec::new()));
    };
    let mut files = Vec::new();
    for f in &r.files {
        let path = base.join(f);
        let rf = crate::rules::rulefile::RuleFile::load(&path)?;
        files.push((path.display().to_string(), rf));
    }
    let interval = crate::rules::scale::scale_ms(r.interval.0.as_millis() as i64, r.time_scale);
    let rs = RuleSet::load(&files, interval, r.time_scale, 0)?;
    Ok((Some(rs), files))
}

/// Alert state changes gathered by alert (label set), in the record's form.
fn alert_records(evs: &[AlertEvent]) -> Vec<reports::record::AlertRecord> {
    let mut by_alert: std::collections::BTreeMap<
        Vec<(String, String)>,
        reports::record::AlertRecord,
    > = Default::default();
    for e in evs {
        let tr = &e.transition;
        let key: Vec<(String, String)> = tr.labels.clone().into_iter().collect();
        let a = by_alert
            .entry(key)
            .or_insert_with(|| reports::record::AlertRecord {
                name: tr.labels.get("alertname").cloned().unwrap_or_default(),
                labels: tr.labels.clone(),
                transitions: Vec::new(),
                annotations: Default::default(),
            });
        a.transitions.push(reports::record::AlertTransition {
            t_s: tr.at as f64 / 1000.0,
            state: tr.to.as_str().into(),
        });
        if !e.annotations.is_empty() {
            a.annotations = e.annotations.clone();
        }
    }
    by_alert.into_values().collect()
}

/// The record's view of the rules: alerts with their state changes, and the expectations judged,
/// with explanations for the failures.
fn judge_alerts(
    s: &Scenario,
    rs: &RuleSet,
    evs: &[AlertEvent],
    store: &SeriesStore,
    end: Duration,
) -> (
    Option<reports::record::RulesInfo>,
    Vec<reports::record::AlertRecord>,
    Vec<reports::record::ExpectationVerdict>,
) {
    use crate::rules::expect::{judge, unexpected, Check, Resolved};
    use crate::scenario::alerts::resolve;
    let Some(r) = &s.rules else {
        return (None, Vec::new(), Vec::new());
    };
    let alerts = alert_records(evs);
    let end_s = end.as_secs_f64();
    let mut resolved = Vec::new();
    for e in &s.expect {
        let Some((alert, labels)) = e.alert_target() else {
            continue;
        };
        let label = |w: &crate::scenario::When| {
            let base = w.after.clone().unwrap_or_else(|| "the start".into());
            match w.at {
                Some(d) if w.after.is_some() => format!("{base} + {d}"),
                Some(d) => format!("{d}"),
                None => base,
            }
        };
        let at = |w: &crate::scenario::When| resolve(s, w).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut checks = Vec::new();
        if let Some(w) = &e.fires {
            checks.push(Check::Fires {
                from: at(w),
                within: w.within.map_or(0.0, |d| d.secs()),
                label: label(w),
            });
        }
        if let Some(w) = &e.resolves {
            checks.push(Check::Resolves {
                from: at(w),
                within: w.within.map_or(0.0, |d| d.secs()),
                label: label(w),
            });
        }
        if let Some(w) = &e.pending_at {
            checks.push(Check::StateAt {
                at: at(w),
                state: "pending",
                label: label(w),
            });
        }
        if let Some(w) = &e.firing_at {
            checks.push(Check::StateAt {
                at: at(w),
                state: "firing",
                label: label(w),
            });
        }
        if e.never {
            checks.push(Check::Never);
        }
        for check in checks {
            resolved.push(Resolved {
                alert: alert.clone(),
                labels: labels.clone(),
                check,
            });
        }
    }
    let engine = crate::rules::Engine::default();
    let infos = rs.rules();
    let mut verdicts: Vec<_> = resolved
        .iter()
        .map(|r| {
            let mut v = judge(r, &alerts);
            if !v.passed {
                // The time that mattered: the end of the window, or the point in time.
                let t = match &r.check {
                    Check::Fires { from, within, .. } | Check::Resolves { from, within, .. } => {
                        from + within
                    }
                    Check::StateAt { at, .. } => *at,
                    Check::Never => end_s,
                }
                .min(end_s);
                match infos.iter().find(|i| i.alert && i.name == r.alert) {
                    Some(info) => {
                        v.explanation.push(format!(
                            "rule {} in group {} (as evaluated): {}",
                            info.name, info.group, info.query
                        ));
                        v.explanation.extend(crate::rules::explain::explain(
                            &engine,
                            store,
                            &info.query,
                            (t * 1000.0) as i64,
                        ));
                    }
                    None => v.explanation.push(format!(
                        "no alerting rule named {:?} in the rule files",
                        r.alert
                    )),
                }
            }
            v
        })
        .collect();
    verdicts.extend(unexpected(&alerts, &resolved, &r.allow));
    let mut errors = rs.errors.clone();
    errors.truncate(5);
    let info = reports::record::RulesInfo {
        files: r.files.iter().map(|f| f.display().to_string()).collect(),
        time_scale: r.time_scale,
        interval_s: crate::rules::scale::scale_ms(r.interval.0.as_millis() as i64, r.time_scale)
            as f64
            / 1000.0,
        errors,
        engine: "builtin".into(),
        prometheus_alerts: Vec::new(),
        notifications: Vec::new(),
    };
    (Some(info), alerts, verdicts)
}

/// The end-of-run summary for the console: verdict, outcomes, latency per tier, thresholds, trust.
pub fn console_summary(r: &RunRecord) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = if r.verdict.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "{verdict}: {} ({:.0} s, {} requests)",
        r.scenario.name, r.duration_s, r.totals.completed
    );
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "  outcomes: {}", outcomes.join(", "));
    for (tier, t) in &r.totals.per_tier {
        if t.count == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "  {tier:<7} n={:<5} latency p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms  (service p95 {:.0} ms)",
            t.count, t.latency.p50_ms, t.latency.p95_ms, t.latency.p99_ms, t.service_time.p95_ms
        );
    }
    for t in &r.thresholds {
        let _ = writeln!(
            out,
            "  [{}] {}: {}",
            if t.passed { "ok" } else { "FAILED" },
            t.name,
            t.detail
        );
    }
    for e in &r.expectations {
        let _ = writeln!(
            out,
            "  [{}] {} {}: {}",
            if e.passed { "ok" } else { "FAILED" },
            // SLO verdicts are named `SLO name`; the rest are alerts.
            if e.alert.starts_with("SLO ") {
                e.alert.clone()
            } else {
                format!("alert {}", e.alert)
            },
            e.description,
            e.detail
        );
        for line in &e.explanation {
            let _ = writeln!(out, "      {line}");
        }
    }
    for slo in &r.slos {
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            out,
            "  SLO {} ({}%): SLI {}, budget remaining {} (the run as the window)",
            slo.name,
            slo.objective,
            slo.sli
                .map_or("-".to_owned(), |v| format!("{:.3}%", v * 100.0)),
            pct(slo.budget_remaining)
        );
    }
    for f in &r.faults {
        let at = |t: Option<f64>| t.map_or("never".to_owned(), |t| format!("{t:.1} s"));
        let _ = writeln!(
            out,
            "  fault {} ({} via {}): injected {}, reverted {}",
            f.name,
            f.kind,
            f.via,
            at(f.injected_s),
            at(f.reverted_s)
        );
    }
    if let Some(rb) = r.rollback.as_ref().filter(|rb| !rb.verified) {
        let _ = writeln!(out, "  ROLLBACK NOT VERIFIED: {}", rb.problems.join("; "));
    }
    if !r.trust.trustworthy {
        let _ = writeln!(
            out,
            "  numbers NOT trustworthy: {}",
            r.trust.reasons.join("; ")
        );
    }
    out
}
