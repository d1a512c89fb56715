//! `firedrill sweep`: the I/O of capacity planning. Starts the target once, scrapes it the whole
//! time, runs each step the search asks for until the step is steady (or overloaded, or out of
//! time), drains and cools down between steps, sizes the worker pool from what it measured, and
//! checks each recommendation by starting the reference server with that many workers and
//! running the target rate on it. Writes `capacity.json`, the capacity plots, `report.html` and
//! `summary.md`.

use super::search::{Search, Strategy};
use super::sizing::Model;
use super::steady::{self, State};
use super::step::{self, Req};
use crate::load::{run_open, Completed, Endpoint, EngineConfig, Event, HttpClient};
use crate::plan::Plan;
use crate::run::exit;
use crate::scenario::capacity::Capacity;
use crate::scenario::{read_inputs, Arrival, Dur, LoadModel, Scenario, Stage};
use crate::scrape::{Scraper, SeriesStore};
use crate::target::{Target, TargetError};
use reports::capacity::{
    CapacityRecord, ContentionRecord, Method, StepRecord, ValidationRecord, CAPACITY_VERSION,
};
use reports::record::{ScenarioInfo, ThresholdVerdict, ThresholdWindow, ToolInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How a sweep is carried out (overrides of the scenario's `capacity:` section).
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Output folder; default `reports/out/<name>-<time>`.
    pub out_dir: Option<PathBuf>,
    /// The binary that runs the reference server (`firedrill` itself).
    pub server_exe: PathBuf,
    /// Run these rates instead of the scenario's rates or search.
    pub rates: Option<Vec<f64>>,
    /// Size for these rates instead of the scenario's `size_for`.
    pub size_for: Option<Vec<f64>>,
    /// Turn the check runs off (or on).
    pub validate: Option<bool>,
}

/// What a sweep ended with. Exit code: 0 an answer (and every check within tolerance), 1 no
/// rate held or a check missed, 2 bad input, 3 the target or the harness failed.
pub type SweepOutcome = crate::run::Outcome<CapacityRecord>;

fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Checks what only a sweep needs of a scenario; errors name the file and field.
pub fn check(s: &Scenario, path: &Path) -> Result<Capacity, String> {
    if s.load.model != LoadModel::Open {
        return Err(format!(
            "{}: field `load.model`: a sweep runs arrival rates, so it needs the open model (load.model: open)",
            path.display()
        ));
    }
    if let Arrival::Replay { .. } = s.load.arrival {
        return Err(format!(
            "{}: field `load.arrival`: a replayed trace has its own rate; a sweep needs constant, poisson or gamma arrivals",
            path.display()
        ));
    }
    if !s.faults.is_empty() {
        return Err(format!(
            "{}: field `faults`: a sweep measures the healthy target; run the faults as a drill (firedrill run)",
            path.display()
        ));
    }
    Ok(s.capacity.clone().unwrap_or_default())
}

/// The live side of one target: where to send, where to read its metrics, the store.
struct Live {
    target: Target,
    store: Arc<Mutex<SeriesStore>>,
    /// The store's clock: ms since this instant.
    epoch: Instant,
    scrape: Option<tokio::task::JoinHandle<crate::scrape::ScrapeStats>>,
    workers: Option<usize>,
}

impl Live {
    async fn start(s: &Scenario, exe: &Path, dir: &Path) -> Result<Live, TargetError> {
        let target = Target::start(s, exe, dir).await?;
        let store = Arc::new(Mutex::new(SeriesStore::with_retention(
            Duration::from_secs(24 * 3600),
        )));
        let epoch = Instant::now();
        let interval = s.observe.scrape_interval.0;
        let scrape = Scraper::new(
            &target.metrics_url,
            interval.max(Duration::from_millis(500)),
        )
        .ok()
        .map(|sc| {
            let st = store.clone();
            tokio::spawn(sc.run(
                st,
                interval,
                epoch + Duration::from_secs(7 * 24 * 3600),
                move || epoch.elapsed().as_millis() as i64,
            ))
        });
        let workers = s.target.reference_server.as_ref().map(|r| {
            r.workers
                .unwrap_or(reference_server::config::Workers::default().count)
        });
        Ok(Live {
            target,
            store,
            epoch,
            scrape,
            workers,
        })
    }

    async fn stop(mut self) {
        if let Some(t) = self.scrape.take() {
            t.abort();
        }
        let _ = self.target.stop(Duration::from_secs(60)).await;
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    fn scalar(&self, q: &str, t_ms: i64) -> Option<f64> {
        let st = self.store.lock().expect("store lock");
        crate::rules::Engine::default().scalar_at(&st, q, t_ms)
    }
}

/// A step as run: its record, its requests and the measured span.
struct Ran {
    record: StepRecord,
    reqs: Vec<Req>,
    span: (f64, f64),
}

/// Why a step did not finish.
enum StepError {
    Interrupted,
    Failed(String),
}

/// The scenario's traffic at `rate` for up to `max_step`.
fn at_rate(s: &Scenario, rate: f64, max_step: Duration, index: usize) -> Scenario {
    let mut s = s.clone();
    s.seed = s.seed.wrapping_add(index as u64);
    s.load.stages = vec![Stage {
        name: Some(format!("rate {rate}")),
        duration: Dur(max_step),
        hold: Some(rate),
        ramp: None,
        from: None,
        step: None,
        steps: None,
        spike: None,
        mix: None,
    }];
    s
}

/// Runs one step on `live` until it is steady, overloaded or out of time, then drains the
/// target and cools down.
async fn run_step(
    s: &Scenario,
    base: &Path,
    cfg: &Capacity,
    live: &Live,
    slos: &[crate::slo::Slo],
    rate: f64,
    index: usize,
) -> Result<Ran, StepError> {
    let scenario = at_rate(s, rate, cfg.max_step.0, index);
    let inputs = read_inputs(&scenario, base).map_err(|e| StepError::Failed(e.to_string()))?;
    let plan =
        Arc::new(Plan::compile(&scenario, inputs).map_err(|e| StepError::Failed(e.to_string()))?);
    let engine_cfg = EngineConfig {
        request_timeout: s.load.request_timeout.0,
        poll_interval: s.load.poll_interval.0,
        max_in_flight: s.load.max_in_flight,
        think_time: Duration::ZERO,
        fetch_image: s.load.fetch_image,
        server_timings: true,
    };
    let ep = Arc::new(Endpoint::new(
        &live.target.base,
        live.target.api_key.clone(),
    ));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let step_at_ms = live.now_ms();
    let engine = tokio::spawn(run_open(
        plan,
        HttpClient::new(),
        ep,
        engine_cfg,
        start,
        tx,
        stop_rx,
    ));
    let window = cfg.window.0.as_secs_f64();
    let measure = cfg.measure.0.as_secs_f64();
    let span_windows = ((measure / window).round() as usize).max(3);
    let max_step = cfg.max_step.0.as_secs_f64();
    let mut reqs: Vec<Req> = Vec::new();
    let mut offered: Vec<f64> = Vec::new();
    let mut cap_hits = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut rising_since: Option<f64> = None;
    let mut last_line = Instant::now();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut decided: Option<(State, f64, steady::Assessment)> = None;
    let mut interrupted = false;
    let push = |reqs: &mut Vec<Req>, c: Completed| {
        reqs.push(Req {
            tier: c.tier,
            outcome: c.outcome,
            intended_s: c.intended.as_secs_f64(),
            sent_s: c.sent.as_secs_f64(),
            finished_s: c.finished.as_secs_f64(),
            server: c.server,
        })
    };
    while decided.is_none() && !interrupted {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Offered { at }) => offered.push(at.as_secs_f64()),
                Some(Event::CapHit { .. }) => cap_hits += 1,
                Some(Event::Done(c)) => push(&mut reqs, c),
                None => break,
            },
            _ = tick.tick() => {
                let now = start.elapsed().as_secs_f64();
                let pts = step::points(&reqs, &offered, window, now);
                let a = steady::assess(&pts, span_windows, cfg.tolerance);
                let end = (now / window).floor() * window;
                match a.state {
                    State::Steady if end >= measure => decided = Some((State::Steady, end, a)),
                    State::Rising => {
                        // Overload keeps rising; near saturation a queue also wanders up for a
                        // while and comes back. Only a rise that lasts half a span more counts.
                        let since = *rising_since.get_or_insert(now);
                        if now - since >= measure / 2.0 && end >= measure {
                            decided = Some((State::Rising, end, a));
                        }
                    }
                    _ => rising_since = None,
                }
                if decided.is_none() && now >= max_step {
                    decided = Some((State::Warming, end, a));
                }
                if last_line.elapsed() >= Duration::from_secs(5) {
                    last_line = Instant::now();
                    say(&format!(
                        "  {rate} req/s: {now:.0} s, {} answered, in flight {}, latency drift {:+.0}% over the last {measure:.0} s",
                        reqs.len(),
                        offered.len().saturating_sub(reqs.len()),
                        a.latency_drift * 100.0
                    ));
                }
            }
            _ = &mut ctrl_c => interrupted = true,
        }
    }
    let _ = stop_tx.send(true);
    // Drain: the requests still in flight finish (each bounded by the request timeout).
    while let Some(ev) = rx.recv().await {
        if let Event::Done(c) = ev {
            push(&mut reqs, c);
        }
    }
    let _ = engine.await;
    if interrupted {
        return Err(StepError::Interrupted);
    }
    let Some((state, to, assessment)) = decided else {
        return Err(StepError::Failed(format!(
            "{rate} req/s: the load engine stopped before the step was decided"
        )));
    };
    let from = (to - measure).max(0.0);
    // The target's queue must be empty before the next step: answers can outlive the client's
    // timeout on the server.
    let drained_by = Instant::now() + Duration::from_secs(120);
    while Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match live.scalar("sum(queue_depth)", live.now_ms()) {
            Some(d) if d > 0.0 => continue,
            _ => break,
        }
    }
    tokio::time::sleep(cfg.cooldown.0).await;

    let span_offered = offered.iter().filter(|&&t| t >= from && t < to).count() as u64;
    let (windows, totals) =
        step::span_stats(&reqs, span_offered, from, to, window).map_err(StepError::Failed)?;
    let mut thresholds = crate::verdict::judge(&s.thresholds, &windows, &totals, window);
    let len = (to - from).max(1e-9);
    let ok = totals.overall.outcomes.get("ok").copied().unwrap_or(0);
    let errors: u64 = totals
        .overall
        .outcomes
        .iter()
        .filter(|(k, _)| {
            crate::outcome::OutcomeClass::ALL
                .iter()
                .any(|c| c.as_str() == k.as_str() && c.is_error())
        })
        .map(|(_, v)| v)
        .sum();
    // Served: an image, or a content block (a correct answer); not errors, not 429s.
    let answered: u64 = ["ok", "blocked_pre", "blocked_post"]
        .iter()
        .filter_map(|k| totals.overall.outcomes.get(*k))
        .sum();
    thresholds.push(served(answered, span_offered, len, cfg.tolerance));
    let (from_ms, to_ms) = (
        step_at_ms + (from * 1000.0) as i64,
        step_at_ms + (to * 1000.0) as i64,
    );
    let range = format!("{}ms", to_ms - from_ms);
    // Each SLO of `rules.slos` over the span, on the scraped counters.
    for slo in slos {
        let (good_sel, total_sel) = slo.selectors();
        let events = |sel: &str| {
            live.scalar(&format!("sum(increase({sel}[{range}]))"), to_ms)
                .unwrap_or(0.0)
        };
        thresholds.push(super::slo_verdict(
            slo,
            events(&good_sel),
            events(&total_sel),
        ));
    }
    let scrape_ms = s.observe.scrape_interval.0.as_millis().max(1);
    let queue_q = format!("sum(queue_depth)[{range}:{scrape_ms}ms]");
    let queue_depth_mean = live.scalar(&format!("avg_over_time({queue_q})"), to_ms);
    let queue_depth_max = live.scalar(&format!("max_over_time({queue_q})"), to_ms);
    let gpu_utilization = live.scalar(
        &format!("avg(avg_over_time(gpu_compute_utilization_percent[{range}]))"),
        to_ms,
    );
    let busy_ms: f64 = reqs
        .iter()
        .filter(|r| r.finished_s >= from && r.finished_s < to)
        .filter_map(|r| {
            r.server
                .as_ref()
                .map(|t| t.service_ms / t.batch_size.max(1) as f64)
        })
        .sum();
    let worker_utilization = live
        .workers
        .filter(|_| reqs.iter().any(|r| r.server.is_some()))
        .map(|w| busy_ms / (len * 1000.0 * w as f64));
    let queue_wait = step::queue_waits(&reqs, from, to)
        .into_iter()
        .map(|(k, v)| (k, step::quantiles(&v)))
        .collect();
    let state_name = match state {
        State::Steady => "steady",
        State::Rising => "rising",
        State::Warming => "unsteady",
    };
    let passed = state == State::Steady && cap_hits == 0 && thresholds.iter().all(|t| t.passed);
    let record = StepRecord {
        rate,
        state: state_name.into(),
        duration_s: to,
        warmup_s: from,
        measured_s: len,
        latency_drift: assessment.latency_drift,
        offered_rate: span_offered as f64 / len,
        throughput: totals.completed as f64 / len,
        goodput: ok as f64 / len,
        error_rate: if totals.completed == 0 {
            0.0
        } else {
            errors as f64 / totals.completed as f64
        },
        per_tier: totals.per_tier.clone(),
        overall: totals.overall.clone(),
        queue_depth_mean,
        queue_depth_max,
        gpu_utilization,
        worker_utilization,
        queue_wait,
        thresholds,
        passed,
    };
    Ok(Ran {
        record,
        reqs,
        span: (from, to),
    })
}

/// The check every step gets besides the scenario's thresholds: the target served (an image or a
/// content block; not an error, not a 429) what was offered, within the tolerance. A target that sheds load at its queue cap stays
/// fast for the requests it takes; this is what says it did not keep up.
fn served(answered: u64, offered: u64, len_s: f64, tolerance: f64) -> ThresholdVerdict {
    let need = offered as f64 * (1.0 - tolerance);
    let passed = answered as f64 >= need;
    let rate = |n: f64| n / len_s.max(1e-9);
    ThresholdVerdict {
        name: SERVED.into(),
        description: format!(
            "served answers (images and content blocks), at least {:.0}% of the requests offered in the span",
            (1.0 - tolerance) * 100.0
        ),
        passed,
        observed: Some(rate(answered as f64)),
        limit: rate(need),
        unit: "req/s".into(),
        window: ThresholdWindow::Run,
        detail: format!(
            "{}{answered} of {offered} offered were served ({:.2} of {:.2} req/s)",
            if passed { "" } else { "breached: " },
            rate(answered as f64),
            rate(offered as f64)
        ),
    }
}

/// The name of the [`served`] check.
pub const SERVED: &str = "served the offered rate";

/// The console line for a finished step.
fn step_line(i: usize, r: &StepRecord) -> String {
    let verdict = if r.passed { "held" } else { "BROKE" };
    let mut broke: Vec<&str> = r
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.name.as_str())
        .collect();
    match r.state.as_str() {
        "rising" => broke.push("latency and queue still rising"),
        "unsteady" => broke.push("not steady by max_step"),
        _ => {}
    }
    format!(
        "step {}: {} req/s {} after {:.0} s: throughput {:.2}/s, p95 {:.0} ms, errors {:.1}%{}{}  {verdict}{}",
        i + 1,
        r.rate,
        r.state,
        r.duration_s,
        r.throughput,
        r.overall.latency.p95_ms,
        r.error_rate * 100.0,
        r.queue_wait
            .get("all")
            .map_or(String::new(), |q| format!(", queue wait p95 {:.0} ms", q.p95)),
        r.worker_utilization
            .map_or(String::new(), |u| format!(", workers {:.0}% busy", u * 100.0)),
        if broke.is_empty() {
            String::new()
        } else {
            format!(" ({})", broke.join(", "))
        }
    )
}

/// Runs a sweep of the scenario at `path`; prints progress to stderr.
pub async fn sweep(path: &Path, opts: SweepOptions) -> SweepOutcome {
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => return SweepOutcome::failed(exit::BAD_INPUT, e.to_string(), None),
    };
    let mut cfg = match check(&scenario, path) {
        Ok(c) => c,
        Err(e) => return SweepOutcome::failed(exit::BAD_INPUT, e, None),
    };
    if let Some(r) = &opts.rates {
        cfg.rates = r.clone();
    }
    if let Some(r) = &opts.size_for {
        cfg.size_for = r.clone();
    }
    if let Some(v) = opts.validate {
        cfg.validate = v;
    }
    if let Err((field, message)) = crate::scenario::capacity::validate(&cfg) {
        return SweepOutcome::failed(
            exit::BAD_INPUT,
            format!("{}: field `{field}`: {message}", path.display()),
            None,
        );
    }
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
    if let Err(e) = read_inputs(&scenario, &base) {
        return SweepOutcome::failed(exit::BAD_INPUT, e.to_string(), None);
    }
    // Every step is judged by the SLOs of `rules.slos` too (the rule files are a drill's).
    let slos = match scenario.rules.as_ref().and_then(|r| r.slos.as_ref()) {
        Some(f) => match crate::slo::SloFile::load(&base.join(f)) {
            Ok(spec) => spec.slos,
            Err(e) => return SweepOutcome::failed(exit::BAD_INPUT, e, None),
        },
        None => Vec::new(),
    };
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| crate::target::default_out_dir(&format!("{}-sweep", scenario.name)));
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        return SweepOutcome::failed(
            exit::INFRA,
            format!("cannot create {}: {e}", out_dir.display()),
            None,
        );
    }
    say(&format!(
        "firedrill: sweep {} -> {}",
        scenario.name,
        out_dir.display()
    ));
    let started_at = reference_server::telemetry::rfc3339_millis(std::time::SystemTime::now());
    let live = match Live::start(&scenario, &opts.server_exe, &out_dir).await {
        Ok(l) => l,
        Err(TargetError::Config(e)) => {
            return SweepOutcome::failed(
                exit::BAD_INPUT,
                format!("{}: {e}", path.display()),
                Some(out_dir),
            )
        }
        Err(TargetError::Failed(e)) => return SweepOutcome::failed(exit::INFRA, e, Some(out_dir)),
    };
    let strategy = if cfg.rates.is_empty() {
        Strategy::Search {
            start: cfg.search.start,
            max: cfg.search.max,
            resolution: cfg.search.resolution,
        }
    } else {
        Strategy::Given(cfg.rates.clone())
    };
    let mut search = Search::new(strategy.clone());
    let mut steps: Vec<Ran> = Vec::new();
    let mut failure = None;
    // A step taken off the target's pace, waiting for its second try; and what was re-run.
    let mut pending: Option<(Ran, f64)> = None;
    let mut rerun_notes: Vec<String> = Vec::new();
    while let Some(rate) = search.next() {
        say(&format!(
            "firedrill: step {}: {rate} req/s",
            steps.len() + 1
        ));
        match run_step(&scenario, &base, &cfg, &live, &slos, rate, steps.len()).await {
            Ok(ran) => {
                say(&step_line(steps.len(), &ran.record));
                // A verdict taken while the target ran off its pace (a noisy neighbour,
                // throttling) is about the host more than the rate: the step is run again (left
                // unrecorded, the search asks for the same rate) and the try nearer the pace kept.
                let before: Vec<_> = steps
                    .iter()
                    .flat_map(|r| step::job_samples(&r.reqs, r.span.0, r.span.1).into_values())
                    .flatten()
                    .collect();
                let now: Vec<_> = step::job_samples(&ran.reqs, ran.span.0, ran.span.1)
                    .into_values()
                    .flatten()
                    .collect();
                let pace = super::pace(&before, &now);
                let ran = if let Some((first, first_pace)) = pending.take() {
                    let again =
                        pace.map_or(String::new(), |p| format!(" ({})", super::pace_words(p)));
                    let keep_first = pace.is_none_or(|p| first_pace.ln().abs() < p.ln().abs());
                    let why = format!(
                        "the {rate} req/s step {} while the target worked {}: it was run again{again} and the try nearer the sweep's pace kept (the {})",
                        if first.record.passed { "held" } else { "broke" },
                        super::pace_words(first_pace),
                        if keep_first { "first" } else { "second" }
                    );
                    say(&format!("firedrill: {why}"));
                    rerun_notes.push(why);
                    if keep_first {
                        first
                    } else {
                        ran
                    }
                } else if let Some(p) = pace.filter(|&p| super::off_pace(p, ran.record.passed)) {
                    say(&format!(
                        "firedrill: the target worked {} at {rate} req/s: running the step again",
                        super::pace_words(p)
                    ));
                    pending = Some((ran, p));
                    continue;
                } else {
                    ran
                };
                search.record(rate, ran.record.passed);
                steps.push(ran);
            }
            Err(StepError::Interrupted) => {
                failure = Some((exit::INFRA, "interrupted; the sweep stopped".to_owned()));
                break;
            }
            Err(StepError::Failed(e)) => {
                failure = Some((exit::INFRA, e));
                break;
            }
        }
    }
    let workers = live.workers;
    live.stop().await;
    if let Some((code, e)) = failure {
        return SweepOutcome::failed(code, e, Some(out_dir));
    }

    let answer = search.answer();
    let mut notes = rerun_notes;
    // The contention is fitted on every step's measured span, from light load (workers alone)
    // to saturation (all busy); the jobs the model draws come from the steps that held (the
    // regimes sizing is about).
    type Samples = BTreeMap<(String, String), Vec<super::queueing::JobSample>>;
    let collect = |held_only: bool| -> Samples {
        let mut m: Samples = BTreeMap::new();
        for r in steps.iter().filter(|r| !held_only || r.record.passed) {
            for (key, v) in step::job_samples(&r.reqs, r.span.0, r.span.1) {
                m.entry(key).or_default().extend(v);
            }
        }
        m
    };
    let all = collect(false);
    let held = collect(true);
    let samples = if held.is_empty() { all.clone() } else { held };
    let fit: Vec<super::queueing::JobSample> = all.values().flatten().copied().collect();
    let source = steps
        .iter()
        .filter(|r| r.record.passed)
        .max_by(|a, b| a.record.rate.total_cmp(&b.record.rate));
    if samples.is_empty() {
        notes.push("no request carried the target's per-stage timings (`timings_ms`): no service times, no sizing".into());
    }
    if let Some(r) = source {
        let batched = r
            .reqs
            .iter()
            .filter(|q| q.server.as_ref().is_some_and(|t| t.batch_size > 1))
            .count();
        if batched > 0 {
            notes.push(format!(
                "{batched} requests of the {} req/s step ran in batches: the sizing model serves one job per worker at a time, so with batching its waits are pessimistic (batching.max_batch: 1 makes the model exact)",
                r.record.rate
            ));
        }
    }
    let model = Model::new(&scenario, &fit, &samples, &mut notes);
    let size_for: Vec<f64> = if cfg.size_for.is_empty() {
        answer.max_passing.into_iter().collect()
    } else {
        cfg.size_for.clone()
    };
    let sizing: Vec<_> = if model.classes.is_empty() {
        Vec::new()
    } else {
        size_for
            .iter()
            .map(|&r| model.size(r, cfg.max_workers))
            .collect()
    };
    for s in &sizing {
        say(&format!(
            "firedrill: sizing for {} req/s: {}",
            s.rate,
            s.recommended.map_or_else(
                || format!(
                    "no worker count up to {} meets the latency thresholds",
                    cfg.max_workers
                ),
                reports::capacity::workers,
            )
        ));
    }

    let mut validation = Vec::new();
    if cfg.validate && scenario.target.reference_server.is_some() {
        for s in &sizing {
            let Some(c) = s.recommended else { continue };
            let row = s.rows.iter().find(|r| r.workers == c).cloned();
            let Some(row) = row else { continue };
            let mut check_s = scenario.clone();
            if let Some(rs) = check_s.target.reference_server.as_mut() {
                rs.workers = Some(c);
            }
            let dir = out_dir.join(format!("check-{}rps-{c}w", s.rate));
            let _ = std::fs::create_dir_all(&dir);
            say(&format!(
                "firedrill: checking the prediction: {} at {} req/s",
                reports::capacity::workers(c),
                s.rate
            ));
            let live = match Live::start(&check_s, &opts.server_exe, &dir).await {
                Ok(l) => l,
                Err(TargetError::Config(e) | TargetError::Failed(e)) => {
                    return SweepOutcome::failed(exit::INFRA, e, Some(out_dir))
                }
            };
            // A longer span than a step's: the p95 of the wait is what is compared.
            let check_cfg = Capacity {
                measure: cfg.check_measure,
                max_step: Dur(cfg.max_step.0.max(cfg.check_measure.0 * 2)),
                ..cfg.clone()
            };
            let ran = run_step(
                &check_s,
                &base,
                &check_cfg,
                &live,
                &slos,
                s.rate,
                1000 + validation.len(),
            )
            .await;
            live.stop().await;
            let ran = match ran {
                Ok(r) => r,
                Err(StepError::Interrupted) => {
                    return SweepOutcome::failed(
                        exit::INFRA,
                        "interrupted; the sweep stopped".into(),
                        Some(out_dir),
                    )
                }
                Err(StepError::Failed(e)) => {
                    return SweepOutcome::failed(exit::INFRA, e, Some(out_dir))
                }
            };
            let measured = ran.record.queue_wait.get("all").map_or(0.0, |q| q.p95);
            let measured_service = {
                let v: Vec<f64> = step::job_samples(&ran.reqs, ran.span.0, ran.span.1)
                    .values()
                    .flatten()
                    .map(|j| j.service_ms)
                    .collect();
                step::quantiles(&v).mean
            };
            // The model is run on the check's own schedule (seeded, so known before it ran): a
            // 60 s span of a random process can wait a quarter less or more than the long run,
            // and that is the schedule's luck, not the model's error. The check's workers may
            // also run slower or faster than the sweep's did (a shared host drifts); the judged
            // figure is the model at the speed the check measured, the sweep-speed one beside it.
            let realized = ran.record.offered_rate;
            let predicted_service = model.service_at(realized, c);
            let schedule: Vec<(f64, &str)> = ran
                .reqs
                .iter()
                .map(|r| (r.intended_s, r.tier.as_str()))
                .collect();
            let a_priori = model
                .replay(&schedule, ran.span, c, 1.0)
                .overall
                .wait_quantile(0.95);
            let slowdown = if predicted_service > 0.0 && measured_service > 0.0 {
                measured_service / predicted_service
            } else {
                1.0
            };
            let adjusted = model
                .replay(&schedule, ran.span, c, slowdown)
                .overall
                .wait_quantile(0.95);
            let (relative_error, passed) =
                super::check_prediction(adjusted, measured, measured_service);
            let (a_priori_error, _) =
                super::check_prediction(a_priori, measured, predicted_service);
            say(&format!(
                "firedrill: {} at {} req/s: p95 queue wait measured {measured:.0} ms; predicted {adjusted:.0} ms at the workers' measured speed ({:+.0}%, {}), {a_priori:.0} ms at the sweep's ({:+.0}%; the workers ran {:.0}% {} than in the sweep)",
                reports::capacity::workers(c),
                s.rate,
                relative_error * 100.0,
                if passed { "within tolerance" } else { "MISSED" },
                a_priori_error * 100.0,
                (slowdown - 1.0).abs() * 100.0,
                if slowdown > 1.0 { "slower" } else { "faster" },
            ));
            validation.push(ValidationRecord {
                rate: s.rate,
                workers: c,
                realized_rate: realized,
                sizing_p95_wait_ms: row.p95_wait_ms,
                predicted_p95_wait_ms: a_priori,
                a_priori_error,
                adjusted_p95_wait_ms: adjusted,
                mgc_p95_wait_ms: model.analytic(realized, c).p95_wait_ms,
                measured_p95_wait_ms: measured,
                relative_error,
                passed,
                predicted_service_ms: predicted_service,
                measured_service_ms: measured_service,
                step: ran.record,
            });
        }
    } else if cfg.validate && !sizing.is_empty() {
        notes.push("the check runs need the reference server as the target (they start it with the recommended worker count); skipped for a URL target".into());
    }

    let method = {
        let mut m = Method {
            strategy: match strategy {
                Strategy::Given(_) => "given".into(),
                Strategy::Search { .. } => "search".into(),
            },
            resolution: match strategy {
                Strategy::Given(_) => None,
                Strategy::Search { resolution, .. } => Some(resolution),
            },
            window_s: cfg.window.0.as_secs_f64(),
            measure_s: cfg.measure.0.as_secs_f64(),
            tolerance: cfg.tolerance,
            max_step_s: cfg.max_step.0.as_secs_f64(),
            cooldown_s: cfg.cooldown.0.as_secs_f64(),
            description: String::new(),
        };
        m.description = super::describe_method(&m);
        m
    };
    let step_records: Vec<StepRecord> = steps.into_iter().map(|r| r.record).collect();
    let highest = step_records.iter().map(|s| s.rate).max_by(f64::total_cmp);
    let record = CapacityRecord {
        version: CAPACITY_VERSION,
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
        started_at,
        workers,
        method,
        knees: super::knees(&step_records),
        answer: super::answer_record(answer, highest),
        steps: step_records,
        service: super::service_records(&samples),
        contention: (!model.classes.is_empty()).then_some(ContentionRecord {
            alone_ms: model.contention.alone_ms,
            per_other_ms: model.contention.per_other_ms,
            samples: fit.len() as u64,
        }),
        sizing,
        validation,
        notes,
    };
    if let Err(e) = record.write(&out_dir.join("capacity.json")) {
        return SweepOutcome::failed(exit::INFRA, e.to_string(), Some(out_dir));
    }
    if let Err(e) = reports::capacity_documents::write(&record, &out_dir) {
        say(&format!("firedrill: warning: {e}"));
    }
    let missed = record.validation.iter().any(|v| !v.passed);
    let code = if record.answer.max_passing_rate.is_none() || missed {
        1
    } else {
        0
    };
    SweepOutcome {
        exit_code: code,
        out_dir: Some(out_dir),
        record: Some(record),
        error: None,
    }
}
