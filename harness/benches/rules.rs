//! Rule evaluation cost: the shipped rule groups (`dashboards/prometheus/alerts.yaml` and
//! `slo-rules.yaml`, 34 rules in 7 groups) evaluated over a one-hour run scraped every second,
//! by our engine and by real Prometheus (Debian's `/usr/bin/prometheus` 2.42, its blocks built
//! with `promtool`) over the same samples, reported as a ratio.
//!
//! The data: one hour at 1 s resolution of every series the rules read, shaped like the
//! reference server's exposition (its metric names, label sets and histogram buckets; see
//! `reference-server/src/metrics/catalog.rs`) for four replicas, seeded (ChaCha8), with incidents
//! on the timeline so that most alerts go pending and fire: a safety spike, an error burst, a
//! CSAM detection, slow cold starts, a fast-tier latency regression, a turbo queue backlog, a
//! worker short of VRAM, a replica down for three minutes, and an idle first forty minutes.
//! Sample timestamps sit off the 15 s evaluation grid (`x.125 s`, `x.375 s`, ...), as real
//! scrapes do, so no sample ever lies on a range's left edge, where Prometheus 2.42 (closed
//! windows) and our engine (Prometheus 3's left-open windows) would legitimately differ; and
//! counters start at 0, as a server started with the run has them, where 2.42's and later
//! Prometheus's `rate` extrapolation agree (see `Replica::step`).
//!
//! The work: every group at every 15 s interval over the hour (the groups set no interval; 15 s
//! is `rules.interval`'s default in a scenario), 240 evaluations of each of the 34 rules.
//! - Ours: the samples in a `SeriesStore`, `RuleSet::eval_due` stepping the clock by 15 s:
//!   recording rules write back, alerts go through their state machine and write `ALERTS`.
//! - Prometheus, two ways, each over HTTP on 127.0.0.1 with `stats=all` so that Prometheus also
//!   reports its own engine time (`execTotalTime`, which leaves out HTTP and JSON):
//!   *instant*: one `query` per rule per evaluation, group by group: the queries Prometheus's
//!   own rule manager runs, so the like-for-like comparison; *range*: one `query_range` per
//!   rule (step 15 s, the same 240 instants), Prometheus's cheapest way to the same answers, as
//!   it shares decoded samples between steps, which no rule manager (its own or ours) can, since
//!   each evaluation happens when its time comes. Transport is measured apart: the same number
//!   of requests for `vector(1)`, whose evaluation costs nothing.
//!   The alerting rules that read recording rules' outputs need those outputs in Prometheus's
//!   storage: they are computed by Prometheus itself first (untimed: one `query_range` per
//!   recording rule on the 15 s grid, what `promtool tsdb create-blocks-from rules` does, aligned
//!   to our grid) and imported as a second block before the timed Prometheus starts. Both sides
//!   thus evaluate the same 34 expressions at the same 240 instants over the same samples.
//!
//! The engines run one core each where there are two: ours (and the HTTP client) on CPU 0,
//! Prometheus on CPU 1 (`taskset`, so Go sees one CPU). Prometheus's range pass runs once
//! untimed first, so its blocks are paged in and its heap is grown, as ours is by building the
//! store; the instant pass comes after it.
//!
//! How to read it: "ours is Nx faster/slower" compares our total with Prometheus's own engine
//! time for the same evaluations (transport excluded), per way of asking; the wall-clock figures
//! with and without transport are shown too, and a table splits the engine times by group. Agreement is checked rule by rule: the (time, label set) pairs where each rule had output
//! must be the same on both sides, and recording rules' values equal to 1e-9 relative (the sides
//! sum in different orders); alerts' firing instants are compared with those that follow from
//! Prometheus's answers and each rule's `for`. The bench exits 1 when they disagree. Without
//! `prometheus` or `promtool` it prints our figures, says the comparison was skipped, and exits 0.
//!
//! `cargo bench -p firedrill --bench rules`; `-- --quick` leaves out the instant-query pass and
//! the table by group.

#[path = "common.rs"]
mod common;

use firedrill::load::HttpClient;
use firedrill::rules::group::RuleSet;
use firedrill::rules::rulefile::{parse_duration, RuleFile};
use firedrill::rules::Engine;
use firedrill::scrape::{is_stale, Labels, Series, SeriesStore};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Length of the run, seconds (one sample per second per series).
const HOUR_S: i64 = 3600;
/// The evaluation interval of the shipped groups, which set none: a scenario's default.
const INTERVAL_MS: i64 = 15_000;
/// Evaluations of each group over the hour.
const STEPS: i64 = HOUR_S * 1000 / INTERVAL_MS;
/// Replicas of the reference server scraped (the `instance` label).
const INSTANCES: usize = 4;
/// Each replica's scrape offset within the second: off the evaluation grid, and binary fractions
/// so that `promtool`'s `int64(seconds * 1000)` gives back exactly these milliseconds.
const OFFSETS_MS: [i64; INSTANCES] = [125, 375, 625, 875];
const SEED: u64 = 0x0F1E_D211_1000;
/// The run's start, fixed so that every run computes bit for bit the same (timestamps enter the
/// arithmetic of `rate`): 2023-11-14 22:30 UTC. The hour lies inside one 2-hour TSDB block, so
/// promtool writes one block per import; Prometheus's time retention only compares blocks with
/// each other, and is set to ten years anyway.
const T0_MS: i64 = 1_700_001_000_000;
const RULE_FILES: [&str; 2] = ["alerts.yaml", "slo-rules.yaml"];

type LabelMap = BTreeMap<String, String>;

// ---- the synthetic hour --------------------------------------------------------------------

const TIERS: [&str; 3] = ["turbo", "fast", "relax"];
/// Requests per second per replica, by tier.
const TIER_RATE: [f64; 3] = [1.5, 2.5, 1.0];
/// Median generation time by tier, seconds (objectives: turbo 10 s, fast 25 s, relax 60 s).
const TIER_MEDIAN_S: [f64; 3] = [4.0, 9.0, 25.0];
const MODELS: [&str; 3] = ["sdxl-mini", "flux-mini", "video-mini"];
const MODEL_SHARE: [f64; 3] = [0.5, 0.3, 0.2];
const STATUSES: [&str; 7] = [
    "success",
    "blocked",
    "failed",
    "timeout",
    "rate_limited",
    "cancelled",
    "rejected",
];
const GEN_BUCKETS: &[f64] = &[2.0, 5.0, 10.0, 15.0, 25.0, 40.0, 60.0, 120.0];
const LOAD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0];
const STAGES: [&str; 2] = ["pre", "post"];
const CATEGORIES: [&str; 5] = ["nsfw", "violence", "hate", "csam", "self_harm"];
/// How blocked prompts spread over the categories (CSAM only ever comes from its own event).
const CATEGORY_SHARE: [f64; 5] = [0.5, 0.25, 0.1, 0.0, 0.15];
const WARM_RESULTS: [&str; 3] = ["hit", "cold_start", "failed"];
const WORKERS: usize = 2;

/// The incidents, as second ranges of the hour.
const SAFETY_SPIKE: std::ops::Range<i64> = 480..1080;
const ERROR_BURST: std::ops::Range<i64> = 1200..1920;
const CSAM_AT: i64 = 1500;
const SLOW_COLD_LOADS: std::ops::Range<i64> = 900..2700;
const MANY_COLD_STARTS: std::ops::Range<i64> = 0..1500;
const FAST_TIER_SLOW: std::ops::Range<i64> = 2100..3000;
const TURBO_BACKLOG: std::ops::Range<i64> = 2160..2760;
const VRAM_PRESSURE: std::ops::Range<i64> = 720..1560;
const IDLE_GPUS: std::ops::Range<i64> = 0..2400;
const REPLICA_DOWN: std::ops::Range<i64> = 3000..3180;
const DOWN_REPLICA: usize = 3;

/// Series under construction: labels and samples, by index.
#[derive(Default)]
struct Gen {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
}

impl Gen {
    fn add(&mut self, name: &str, base: &[(&str, &str)], extra: &[(&str, &str)]) -> usize {
        let labels = Labels::new(
            [("__name__", name)]
                .iter()
                .chain(base)
                .chain(extra)
                .copied(),
        );
        self.series
            .push((labels, Vec::with_capacity(HOUR_S as usize)));
        self.series.len() - 1
    }

    fn push(&mut self, i: usize, t: i64, v: f64) {
        self.series[i].1.push((t, v));
    }
}

/// A cumulative histogram's series and counts.
struct Hist {
    bounds: &'static [f64],
    /// Bucket series, `+Inf` last; then `_sum` and `_count`.
    buckets: Vec<usize>,
    sum: usize,
    count: usize,
    counts: Vec<f64>,
    total: f64,
    n: f64,
}

impl Hist {
    fn new(g: &mut Gen, name: &str, labels: &[(&str, &str)], bounds: &'static [f64]) -> Hist {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<usize> = bounds
            .iter()
            .map(|b| g.add(&bucket, labels, &[("le", &b.to_string())]))
            .collect();
        buckets.push(g.add(&bucket, labels, &[("le", "+Inf")]));
        Hist {
            bounds,
            sum: g.add(&format!("{name}_sum"), labels, &[]),
            count: g.add(&format!("{name}_count"), labels, &[]),
            counts: vec![0.0; buckets.len()],
            buckets,
            total: 0.0,
            n: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (c, b) in self.counts.iter_mut().zip(self.bounds) {
            if v <= *b {
                *c += 1.0;
            }
        }
        *self.counts.last_mut().expect("+Inf bucket") += 1.0;
        self.total += v;
        self.n += 1.0;
    }

    fn push(&self, g: &mut Gen, t: i64) {
        for (&i, &c) in self.buckets.iter().zip(&self.counts) {
            g.push(i, t, c);
        }
        g.push(self.sum, t, self.total);
        g.push(self.count, t, self.n);
    }
}

/// A counter's series and value.
struct Counter(usize, f64);

/// One replica's series and state.
struct Replica {
    up: usize,
    requests: Vec<Vec<Vec<Counter>>>,
    generation: Vec<Vec<Hist>>,
    queue: Vec<Vec<(usize, f64)>>,
    safety: Vec<Vec<Vec<Counter>>>,
    csam: Counter,
    warm: Vec<Counter>,
    load: Vec<Hist>,
    compute: Vec<usize>,
    vram: Vec<usize>,
}

impl Replica {
    fn new(g: &mut Gen, i: usize) -> Replica {
        let instance = format!("ref-{i}:8080");
        let base = [("job", "reference-server"), ("instance", instance.as_str())];
        let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
            base.iter()
                .map(|&(k, v)| (k, v.to_string()))
                .chain(extra.iter().map(|&(k, v)| (k, v.to_string())))
                .collect()
        };
        // Labels are built as owned strings, then borrowed for `Gen::add`.
        let add = |g: &mut Gen, name: &str, l: Vec<(&str, String)>| -> usize {
            let b: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            g.add(name, &b, &[])
        };
        let up = add(g, "up", with(&[]));
        let mut requests = Vec::new();
        let mut generation = Vec::new();
        let mut queue = Vec::new();
        for tier in TIERS {
            let mut r = Vec::new();
            let mut h = Vec::new();
            let mut q = Vec::new();
            for model in MODELS {
                r.push(
                    STATUSES
                        .iter()
                        .map(|status| {
                            Counter(
                                add(
                                    g,
                                    "requests_total",
                                    with(&[("tier", tier), ("model", model), ("status", status)]),
                                ),
                                0.0,
                            )
                        })
                        .collect(),
                );
                let l = with(&[
                    ("tier", tier),
                    ("model", model),
                    ("scheduler", "euler"),
                    ("has_controlnet", "false"),
                ]);
                let b: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                h.push(Hist::new(g, "generation_time_seconds", &b, GEN_BUCKETS));
                q.push((
                    add(
                        g,
                        "queue_depth",
                        with(&[("tier", tier), ("model_required", model)]),
                    ),
                    0.0,
                ));
            }
            requests.push(r);
            generation.push(h);
            queue.push(q);
        }
        let safety = STAGES
            .iter()
            .map(|stage| {
                CATEGORIES
                    .iter()
                    .map(|category| {
                        TIERS
                            .iter()
                            .map(|tier| {
                                Counter(
                                    add(
                                        g,
                                        "safety_blocks_total",
                                        with(&[
                                            ("stage", stage),
                                            ("category", category),
                                            ("tier", tier),
                                        ]),
                                    ),
                                    0.0,
                                )
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let csam = Counter(add(g, "csam_detections_total", with(&[])), 0.0);
        let warm = WARM_RESULTS
            .iter()
            .map(|r| {
                Counter(
                    add(g, "warm_pool_requests_total", with(&[("result", r)])),
                    0.0,
                )
            })
            .collect();
        let load = MODELS
            .iter()
            .map(|model| {
                let l = with(&[("model", model)]);
                let b: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                Hist::new(g, "model_load_seconds", &b, LOAD_BUCKETS)
            })
            .collect();
        let gpu = |g: &mut Gen, name: &str| -> Vec<usize> {
            (0..WORKERS)
                .map(|w| {
                    let id = format!("worker-{w}");
                    add(
                        g,
                        name,
                        with(&[
                            ("worker_id", &id),
                            ("gpu_type", "modelled-cpu"),
                            ("region", "local"),
                        ]),
                    )
                })
                .collect()
        };
        let compute = gpu(g, "gpu_compute_utilization_percent");
        let vram = gpu(g, "gpu_vram_utilization_percent");
        Replica {
            up,
            requests,
            generation,
            queue,
            safety,
            csam,
            warm,
            load,
            compute,
            vram,
        }
    }

    /// One second of replica `i` at second `s` of the hour, sampled at `t`.
    fn step(&mut self, g: &mut Gen, rng: &mut ChaCha8Rng, i: usize, s: i64, t: i64) {
        if i == DOWN_REPLICA && REPLICA_DOWN.contains(&s) {
            // A failed scrape: `up` is 0 and nothing else is written.
            g.push(self.up, t, 0.0);
            return;
        }
        g.push(self.up, t, 1.0);
        let (failed, timeout) = if ERROR_BURST.contains(&s) {
            (0.12, 0.05)
        } else {
            (0.0004, 0.0002)
        };
        let blocked = if SAFETY_SPIKE.contains(&s) {
            0.25
        } else {
            0.02
        };
        // Probabilities of the statuses after `success`, in `STATUSES` order.
        let outcome = [blocked, failed, timeout, 0.01, 0.0002, 0.0001];
        // The server starts with the run: at its first scrape every counter is still 0. (This
        // also keeps both sides' rate extrapolation identical where a window reaches back past a
        // counter's first sample, as the 1h, 6h and 3d windows always do: Prometheus reordered
        // the zero-point and threshold clamps there in 2024, PR #13725, after 2.42; our engine
        // follows the new order. From a 0 the two orders give the same answer.)
        let first = s == 0;
        for (ti, &rate) in TIER_RATE.iter().enumerate() {
            for (mi, &share) in MODEL_SHARE.iter().enumerate() {
                for _ in 0..if first { 0 } else { poisson(rng, rate * share) } {
                    let status = pick(rng, &outcome).map_or(0, |k| k + 1);
                    self.requests[ti][mi][status].1 += 1.0;
                    match status {
                        0 => {
                            let slow = ti == 1 && FAST_TIER_SLOW.contains(&s);
                            let median = TIER_MEDIAN_S[ti] * if slow { 2.45 } else { 1.0 };
                            self.generation[ti][mi].observe(lognormal(rng, median, 0.35));
                            self.acquire(rng, mi, s);
                        }
                        1 => {
                            let stage = usize::from(rng.random::<f64>() >= 0.8);
                            let cat = pick(rng, &CATEGORY_SHARE).unwrap_or(0);
                            self.safety[stage][cat][ti].1 += 1.0;
                        }
                        _ => {}
                    }
                }
            }
        }
        if i == 1 && s == CSAM_AT {
            self.csam.1 += 1.0;
            self.safety[1][3][1].1 += 1.0;
        }
        for (ti, row) in self.queue.iter_mut().enumerate() {
            let target = match ti {
                0 if TURBO_BACKLOG.contains(&s) => 4.5,
                0 => 1.0,
                1 => 2.0,
                _ => 5.0,
            };
            for (idx, v) in row.iter_mut() {
                *v = (*v + 0.1 * (target - *v) + 0.4 * normal(rng)).max(0.0);
                g.push(*idx, t, v.round());
            }
        }
        let busy = if IDLE_GPUS.contains(&s) { 22.0 } else { 68.0 };
        for w in 0..WORKERS {
            let c = (busy + 4.0 * normal(rng)).clamp(0.0, 100.0);
            g.push(self.compute[w], t, (c * 10.0).round() / 10.0);
            let v = if i == 0 && w == 1 && VRAM_PRESSURE.contains(&s) {
                (93.0 + normal(rng)).clamp(90.5, 99.5)
            } else {
                (70.0 + 5.0 * normal(rng)).clamp(40.0, 88.0)
            };
            g.push(self.vram[w], t, (v * 10.0).round() / 10.0);
        }
        for row in &self.requests {
            for counters in row {
                for c in counters {
                    g.push(c.0, t, c.1);
                }
            }
        }
        for h in self.generation.iter().flatten() {
            h.push(g, t);
        }
        for c in self.safety.iter().flatten().flatten() {
            g.push(c.0, t, c.1);
        }
        g.push(self.csam.0, t, self.csam.1);
        for c in &self.warm {
            g.push(c.0, t, c.1);
        }
        for h in &self.load {
            h.push(g, t);
        }
    }

    /// A worker acquires model `mi` for a generation: warm-pool hit, cold start, or failure.
    fn acquire(&mut self, rng: &mut ChaCha8Rng, mi: usize, s: i64) {
        let cold = if MANY_COLD_STARTS.contains(&s) {
            0.3
        } else {
            0.08
        };
        match pick(rng, &[cold, 0.005]) {
            None => {
                self.warm[0].1 += 1.0;
                let v = 0.02 + 0.025 * rng.random::<f64>();
                self.load[mi].observe(v);
            }
            Some(0) => {
                self.warm[1].1 += 1.0;
                let median = if SLOW_COLD_LOADS.contains(&s) {
                    5.0
                } else {
                    0.8
                };
                self.load[mi].observe(lognormal(rng, median, 0.3));
            }
            Some(_) => self.warm[2].1 += 1.0,
        }
    }
}

/// The index of the outcome drawn with probabilities `p` (their rest: `None`).
fn pick(rng: &mut ChaCha8Rng, p: &[f64]) -> Option<usize> {
    let mut u = rng.random::<f64>();
    for (k, &pk) in p.iter().enumerate() {
        if u < pk {
            return Some(k);
        }
        u -= pk;
    }
    None
}

/// Knuth's Poisson sampler (small means only, as here).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut p = 1.0;
    let mut k = 0;
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// The hour from `t0_ms`: every replica sampled every second.
fn generate(t0_ms: i64) -> Vec<Series> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut g = Gen::default();
    let mut replicas: Vec<Replica> = (0..INSTANCES).map(|i| Replica::new(&mut g, i)).collect();
    for s in 0..HOUR_S {
        for (i, r) in replicas.iter_mut().enumerate() {
            r.step(&mut g, &mut rng, i, s, t0_ms + s * 1000 + OFFSETS_MS[i]);
        }
    }
    g.series
        .into_iter()
        .map(|(l, v)| Series::new(l, v))
        .collect()
}

// ---- OpenMetrics, for promtool ---------------------------------------------------------------

/// `name{a="1",...}` with values escaped.
fn series_text(labels: impl IntoIterator<Item = (String, String)>) -> String {
    let mut name = String::new();
    let mut rest = Vec::new();
    for (k, v) in labels {
        if k == "__name__" {
            name = v;
        } else {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            rest.push(format!("{k}=\"{v}\""));
        }
    }
    format!("{name}{{{}}}", rest.join(","))
}

/// A value as OpenMetrics writes it; Rust's shortest round-trip digits, which Go parses back to
/// the same bits.
fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// Writes series as OpenMetrics text, each series' samples together and in time order (what
/// promtool's block writer needs), timestamps in seconds with milliseconds.
fn write_openmetrics<'a>(
    path: &Path,
    series: impl Iterator<Item = (String, &'a [(i64, f64)])>,
) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut line = String::new();
    let mut n = 0;
    for (head, samples) in series {
        for &(t, v) in samples {
            line.clear();
            let _ = writeln!(
                line,
                "{head} {} {}.{:03}",
                om_value(v),
                t.div_euclid(1000),
                t.rem_euclid(1000)
            );
            w.write_all(line.as_bytes())?;
            n += 1;
        }
    }
    w.write_all(b"# EOF\n")?;
    w.flush()?;
    Ok(n)
}

// ---- the rules -----------------------------------------------------------------------------

/// One rule as both sides evaluate it.
struct Rule {
    group: String,
    name: String,
    expr: String,
    record: bool,
    labels: LabelMap,
    for_ms: i64,
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus")
}

fn load_files() -> Vec<(String, RuleFile)> {
    RULE_FILES
        .iter()
        .map(|f| {
            let path = rules_dir().join(f);
            let rf = RuleFile::load(&path).expect("the shipped rule files load");
            (path.display().to_string(), rf)
        })
        .collect()
}

fn flatten(files: &[(String, RuleFile)]) -> Vec<Rule> {
    let mut out = Vec::new();
    for (_, f) in files {
        for g in &f.groups {
            for r in &g.rules {
                out.push(Rule {
                    group: g.name.clone(),
                    name: r.name().to_owned(),
                    expr: r.expr.clone(),
                    record: r.record.is_some(),
                    labels: r.labels.clone().into_iter().collect(),
                    for_ms: r
                        .for_
                        .as_deref()
                        .map_or(0, |d| parse_duration(d).expect("valid for")),
                });
            }
        }
    }
    out
}

// ---- Prometheus ----------------------------------------------------------------------------

/// A scratch folder, removed on every path that unwinds.
struct Scratch(PathBuf);

/// Scratch folders are named by this and the owning process's id.
const SCRATCH_PREFIX: &str = "firedrill-bench-rules-";

/// Removes scratch folders left by runs killed by a signal (which unwinds nothing): those whose
/// process is gone. (Their Prometheus went with them: `PR_SET_PDEATHSIG`.)
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(SCRATCH_PREFIX) {
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Prometheus server on 127.0.0.1, stopped on every path (also on panic: `Drop`; and if this
/// process dies, by the kernel: `PR_SET_PDEATHSIG`).
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(
        dir: &Path,
        data: &Path,
        name: &str,
        cpu: Option<usize>,
    ) -> Result<Prometheus, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        // No scrape targets and no rule files: the server only answers queries.
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  evaluation_interval: 15s\n")
            .map_err(|e| e.to_string())?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string(), "prometheus"]);
                cmd
            }
            None => Command::new("prometheus"),
        };
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            // Retention far beyond the data's age, so that no block is deleted under us.
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
        // its parent exits.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("prometheus: {e}"))?;
        let mut p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let api = Api::new(&p.base);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("prometheus exited ({status}): {}", p.log_tail()));
            }
            if matches!(api.get("/-/ready"), Ok((200, _))) {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(format!("prometheus not ready in 60 s: {}", p.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Peak resident memory (`VmHWM`), KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(&format!("/proc/{}/status", self.child.id()))
    }

    /// SIGTERM, then SIGKILL after 10 s; waits either way.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    std::fs::read_to_string(status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The HTTP API, through the harness's own client on a one-thread runtime.
struct Api {
    rt: tokio::runtime::Runtime,
    client: HttpClient,
    base: String,
}

/// Series of a result: labels (without `__name__` for computed ones) and points.
type Matrix = Vec<(LabelMap, Vec<(i64, f64)>)>;

impl Api {
    fn new(base: &str) -> Api {
        Api {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            client: HttpClient::new(),
            base: base.to_owned(),
        }
    }

    fn get(&self, path: &str) -> Result<(u16, bytes::Bytes), String> {
        let url = format!("{}{path}", self.base);
        let a = self
            .rt
            .block_on(self.client.send(hyper::Method::GET, &url, None, None))
            .map_err(|e| e.to_string())?;
        Ok((a.status, a.body))
    }

    /// A query API call: its result and Prometheus's own `execTotalTime`, seconds.
    fn query(&self, path: &str) -> Result<(Matrix, f64), String> {
        let (status, body) = self.get(path)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{path}: HTTP {status}: {}", v["error"]));
        }
        let data = &v["data"];
        let exec = data["stats"]["timings"]["execTotalTime"]
            .as_f64()
            .ok_or_else(|| format!("{path}: no stats in the answer"))?;
        let point = |p: &serde_json::Value| -> (i64, f64) {
            let t = (p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
            let v = p[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (t, v)
        };
        let labels = |m: &serde_json::Value| -> LabelMap {
            m.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let empty = Vec::new();
        let result = match data["resultType"].as_str() {
            Some("matrix") => data["result"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|s| {
                    let pts = s["values"].as_array().unwrap_or(&empty);
                    (labels(&s["metric"]), pts.iter().map(point).collect())
                })
                .collect(),
            Some("vector") => data["result"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|s| (labels(&s["metric"]), vec![point(&s["value"])]))
                .collect(),
            Some("scalar") => vec![(LabelMap::new(), vec![point(&data["result"])])],
            other => return Err(format!("{path}: result type {other:?}")),
        };
        Ok((result, exec))
    }

    fn query_range(&self, expr: &str, start: i64, end: i64) -> Result<(Matrix, f64), String> {
        self.query(&format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}&stats=all",
            urlencode(expr),
            secs(start),
            secs(end),
            secs(INTERVAL_MS)
        ))
    }

    fn query_instant(&self, expr: &str, t: i64) -> Result<(Matrix, f64), String> {
        self.query(&format!(
            "/api/v1/query?query={}&time={}&stats=all",
            urlencode(expr),
            secs(t)
        ))
    }
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn promtool_import(om: &Path, data: &Path) -> Result<(), String> {
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(om)
        .arg(data)
        .output()
        .map_err(|e| format!("promtool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "promtool failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Whether a binary runs (`--version`).
fn runs(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sets this thread's CPUs (Linux); a no-op where that fails. `common::pin_to` for one.
fn allow_cpus(cpus: impl IntoIterator<Item = usize>) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; pid 0 means this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Prometheus's figures for one way of asking.
#[derive(Default)]
struct PromPass {
    requests: usize,
    wall: Duration,
    engine_s: f64,
    /// Engine seconds by group.
    by_group: BTreeMap<String, f64>,
    transport_wall: Duration,
}

/// The timed Prometheus passes and its answers (range pass) by rule.
struct PromResults {
    range: PromPass,
    instant: Option<PromPass>,
    answers: Vec<Matrix>,
    import: Duration,
    peak_rss_kib: Option<u64>,
    compacted: bool,
}

/// Everything on the Prometheus side: blocks from the samples, the recording rules' outputs
/// computed by Prometheus and added as blocks, then the timed passes on a fresh server.
fn run_prometheus(
    store: &SeriesStore,
    raw: usize,
    rules: &[Rule],
    t0: i64,
    quick: bool,
) -> Result<PromResults, String> {
    remove_orphans();
    let dir = std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let scratch = Scratch(dir.clone());
    let data = scratch.0.join("data");
    let (start, end) = (t0 + INTERVAL_MS, t0 + STEPS * INTERVAL_MS);

    let begun = Instant::now();
    let om = scratch.0.join("samples.om");
    let heads: Vec<String> = store
        .iter()
        .take(raw)
        .map(|(_, s)| series_text(s.labels().iter().map(|(k, v)| (k.into(), v.into()))))
        .collect();
    write_openmetrics(
        &om,
        heads
            .iter()
            .zip(store.iter())
            .map(|(h, (_, s))| (h.clone(), s.samples())),
    )
    .map_err(|e| format!("{}: {e}", om.display()))?;
    promtool_import(&om, &data)?;
    let _ = std::fs::remove_file(&om);
    let import = begun.elapsed();

    // The recording rules' outputs, computed by Prometheus on our grid.
    {
        let setup = Prometheus::start(&scratch.0, &data, "setup", None)?;
        let api = Api::new(&setup.base);
        let mut recorded: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
        for r in rules.iter().filter(|r| r.record) {
            let (m, _) = api.query_range(&r.expr, start, end)?;
            for (mut l, pts) in m {
                l.extend(r.labels.clone());
                l.insert("__name__".into(), r.name.clone());
                recorded.push((series_text(l), pts));
            }
        }
        let rec = scratch.0.join("recorded.om");
        write_openmetrics(&rec, recorded.iter().map(|(h, p)| (h.clone(), &p[..])))
            .map_err(|e| e.to_string())?;
        drop(setup);
        promtool_import(&rec, &data)?;
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cpus >= 2 && runs("taskset");
    let mut prom = Prometheus::start(&scratch.0, &data, "timed", pinned.then_some(1))?;
    if pinned {
        common::pin_to(0);
    }
    let api = Api::new(&prom.base);
    // One query_range per rule: the pass's figures, and the answers.
    let range_pass = |trivial: bool| -> Result<(PromPass, Vec<Matrix>), String> {
        let mut pass = PromPass::default();
        let mut answers = Vec::new();
        let began = Instant::now();
        for r in rules {
            let (m, s) =
                api.query_range(if trivial { "vector(1)" } else { &r.expr }, start, end)?;
            pass.engine_s += s;
            *pass.by_group.entry(r.group.clone()).or_default() += s;
            pass.requests += 1;
            answers.push(m);
        }
        pass.wall = began.elapsed();
        Ok((pass, answers))
    };
    // Warm-up (untimed): the blocks paged in, the Go heap grown.
    range_pass(false)?;
    let (mut range, answers) = range_pass(false)?;
    range.transport_wall = range_pass(true)?.0.wall;
    // As Prometheus's rule manager asks: group by group, instant by instant, rule by rule.
    let instant = if quick {
        None
    } else {
        let mut groups: Vec<Vec<&Rule>> = Vec::new();
        for r in rules {
            match groups.last_mut() {
                Some(g) if g[0].group == r.group => g.push(r),
                _ => groups.push(vec![r]),
            }
        }
        let mut pass = PromPass::default();
        let began = Instant::now();
        for g in &groups {
            for k in 1..=STEPS {
                for r in g {
                    let (_, s) = api.query_instant(&r.expr, t0 + k * INTERVAL_MS)?;
                    pass.engine_s += s;
                    *pass.by_group.entry(r.group.clone()).or_default() += s;
                    pass.requests += 1;
                }
            }
        }
        pass.wall = began.elapsed();
        let began = Instant::now();
        for _ in 0..pass.requests {
            api.query_instant("vector(1)", end)?;
        }
        pass.transport_wall = began.elapsed();
        Some(pass)
    };
    let peak_rss_kib = prom.peak_rss_kib();
    prom.stop();
    let log = std::fs::read_to_string(&prom.log).unwrap_or_default();
    allow_cpus(0..cpus);
    Ok(PromResults {
        range,
        instant,
        answers,
        import,
        peak_rss_kib,
        // A compaction while we measured would have competed for Prometheus's core.
        compacted: log.contains("compact blocks"),
    })
}

// ---- agreement -----------------------------------------------------------------------------

/// (time, labels) -> value of one rule's output.
type Points = BTreeMap<(i64, LabelMap), f64>;

/// Our outputs of `rule` as they are in the store: a recording rule's series, or the alert's
/// `ALERTS` (pending or firing; without `alertstate`). Also the firing instants of an alert.
fn ours_of(store: &SeriesStore, rule: &Rule) -> (Points, BTreeSet<(i64, LabelMap)>) {
    let mut out = Points::new();
    let mut firing = BTreeSet::new();
    let name = if rule.record { &rule.name } else { "ALERTS" };
    for (_, s) in store.iter() {
        let l = s.labels();
        if l.metric_name() != Some(name)
            || rule.labels.iter().any(|(k, v)| l.get(k) != Some(v))
            || (!rule.record && l.get("alertname") != Some(&rule.name))
        {
            continue;
        }
        let mut key: LabelMap = l
            .iter()
            .filter(|(k, _)| *k != "__name__" && *k != "alertstate")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if !rule.record {
            key.remove("alertstate");
        }
        let is_firing = l.get("alertstate") == Some("firing");
        for &(t, v) in s.samples() {
            if is_stale(v) {
                continue;
            }
            out.insert((t, key.clone()), v);
            if is_firing {
                firing.insert((t, key.clone()));
            }
        }
    }
    (out, firing)
}

/// Prometheus's answers for `rule`, keyed as ours: rule labels added (and `alertname` for
/// alerts); with the firing instants that follow from `for`.
fn theirs_of(m: &Matrix, rule: &Rule) -> (Points, BTreeSet<(i64, LabelMap)>) {
    let mut out = Points::new();
    let mut firing = BTreeSet::new();
    for (labels, pts) in m {
        let mut key = labels.clone();
        key.remove("__name__");
        key.extend(rule.labels.clone());
        if !rule.record {
            key.insert("alertname".into(), rule.name.clone());
        }
        // Active since the first of consecutive evaluations with output; firing once `for` has
        // passed since then (Prometheus's rule manager, without `keep_firing_for`).
        let mut active_at: Option<i64> = None;
        let mut prev: Option<i64> = None;
        for &(t, v) in pts {
            out.insert((t, key.clone()), v);
            if prev != Some(t - INTERVAL_MS) {
                active_at = Some(t);
            }
            prev = Some(t);
            if !rule.record && active_at.is_some_and(|a| t - a >= rule.for_ms) {
                firing.insert((t, key.clone()));
            }
        }
    }
    (out, firing)
}

struct Agreement {
    lines: Vec<String>,
    ok: bool,
}

/// Rule by rule: outputs at the same (time, labels) on both sides, recording values equal.
fn agreement(store: &SeriesStore, rules: &[Rule], answers: &[Matrix], t0: i64) -> Agreement {
    // Allowed presence differences per rule: a value a rounding error away from a threshold may
    // compare differently (the sides sum in different orders). With off-grid samples nothing
    // else may differ.
    const SLACK: usize = 1;
    const REL: f64 = 1e-9;
    let mut lines = Vec::new();
    let mut ok = true;
    for (r, m) in rules.iter().zip(answers) {
        let (ours, our_firing) = ours_of(store, r);
        let (theirs, their_firing) = theirs_of(m, r);
        let only_ours = ours.keys().filter(|k| !theirs.contains_key(k)).count();
        let only_theirs = theirs.keys().filter(|k| !ours.contains_key(k)).count();
        let mut worst: f64 = 0.0;
        let mut worst_at = String::new();
        if r.record {
            for (k, a) in &ours {
                if let Some(b) = theirs.get(k) {
                    let d = if a.is_nan() && b.is_nan() || a == b {
                        0.0
                    } else {
                        (a - b).abs() / a.abs().max(b.abs())
                    };
                    let d = if d.is_nan() { f64::INFINITY } else { d };
                    if d > worst {
                        worst = d;
                        worst_at = format!(" (at {} s: {a} / {b})", (k.0 - t0) / 1000);
                    }
                }
            }
        }
        let firing_diff = our_firing.symmetric_difference(&their_firing).count();
        let good = only_ours + only_theirs <= SLACK && worst <= REL && firing_diff <= SLACK;
        ok &= good;
        let steps = |p: &Points| p.keys().map(|(t, _)| *t).collect::<BTreeSet<_>>().len();
        let detail = if r.record {
            format!(
                "max rel diff {worst:.1e}{}",
                if worst > REL { &worst_at } else { "" }
            )
        } else {
            format!(
                "firing {}/{} evaluations",
                our_firing.len(),
                their_firing.len()
            )
        };
        lines.push(format!(
            "  {} {:<28} {:<30} outputs {:>5}/{:<5} at {:>3}/{:<3} steps, {detail}",
            if good { "ok  " } else { "DIFF" },
            r.group,
            r.name,
            ours.len(),
            theirs.len(),
            steps(&ours),
            steps(&theirs),
        ));
    }
    Agreement { lines, ok }
}

/// Our time per group: each group alone over the hour (one `RuleSet` per group, on a fresh copy
/// of the samples), for the breakdown. The same evaluations as the main run, group after group.
fn ours_by_group(files: &[(String, RuleFile)], t0: i64) -> Vec<(String, Duration)> {
    let mut store = SeriesStore::from_series(generate(t0)).expect("distinct, ordered series");
    let engine = Engine::default();
    let mut out = Vec::new();
    for (path, f) in files {
        for g in &f.groups {
            let one = RuleFile {
                groups: vec![g.clone()],
            };
            let mut rs = RuleSet::load(&[(path.clone(), one)], INTERVAL_MS, 1.0, t0)
                .expect("the shipped rules load");
            let began = Instant::now();
            for k in 1..=STEPS {
                rs.eval_due(&engine, &mut store, t0 + k * INTERVAL_MS);
            }
            out.push((g.name.clone(), began.elapsed()));
        }
    }
    out
}

// ---- main ----------------------------------------------------------------------------------

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

fn ratio(ours: Duration, theirs: f64) -> String {
    let r = theirs / ours.as_secs_f64();
    if r >= 1.0 {
        format!("ours is {r:.1}x faster")
    } else {
        format!("ours is {:.1}x slower", 1.0 / r)
    }
}

fn run() -> i32 {
    let quick = std::env::args().any(|a| a == "--quick");
    let t0 = T0_MS;

    let began = Instant::now();
    let mut store = SeriesStore::from_series(generate(t0)).expect("distinct, ordered series");
    let raw = store.series_count();
    let samples = store.sample_count();
    println!(
        "data: {raw} series ({INSTANCES} replicas), {samples} samples (1 s for 1 h), generated in {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let files = load_files();
    let rules = flatten(&files);
    let groups: BTreeSet<&str> = rules.iter().map(|r| r.group.as_str()).collect();
    let evaluations = rules.len() as i64 * STEPS;

    // Prometheus runs after us, so that the two never share the machine; our rules' outputs
    // are series added after the first `raw`, which are what Prometheus gets.
    let prom_ok = runs("prometheus") && runs("promtool");

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        common::pin_to(0);
    }
    let mut rs = RuleSet::load(&files, INTERVAL_MS, 1.0, t0).expect("the shipped rules load");
    let engine = Engine::default();
    let mut transitions = 0;
    let began = Instant::now();
    for k in 1..=STEPS {
        transitions += rs.eval_due(&engine, &mut store, t0 + k * INTERVAL_MS).len();
    }
    let ours = began.elapsed();
    allow_cpus(0..cpus);
    let our_rss = vm_hwm_kib("/proc/self/status");
    if !rs.errors.is_empty() {
        eprintln!(
            "our rule errors: {:?}",
            &rs.errors[..rs.errors.len().min(5)]
        );
        return 1;
    }

    println!(
        "rules: {} in {} groups (alerts.yaml, slo-rules.yaml), every {} s for 1 h: {STEPS} evaluations each, {evaluations} in all",
        rules.len(),
        groups.len(),
        INTERVAL_MS / 1000
    );
    println!(
        "ours: {:.3} s ({:.1} us per rule evaluation), {transitions} alert state changes, peak RSS {}",
        ours.as_secs_f64(),
        ours.as_secs_f64() * 1e6 / evaluations as f64,
        mib(our_rss)
    );
    if !prom_ok {
        println!(
            "prometheus or promtool not found (Debian: apt install prometheus): comparison skipped"
        );
        return 0;
    }
    let p = match run_prometheus(&store, raw, &rules, t0, quick) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("prometheus side failed: {e}");
            return 1;
        }
    };
    println!(
        "prometheus 2.42: samples and recording outputs imported with promtool in {:.1} s (untimed); peak RSS {}",
        p.import.as_secs_f64(),
        mib(p.peak_rss_kib)
    );
    println!();
    println!(
        "{:<44} {:>9} {:>12} {:>12}  ours / theirs",
        "", "requests", "wall (s)", "engine (s)"
    );
    println!(
        "{:<44} {:>9} {:>12.3} {:>12.3}",
        "ours (RuleSet::eval_due, in process)",
        "-",
        ours.as_secs_f64(),
        ours.as_secs_f64()
    );
    let mut passes = vec![("prometheus, query_range per rule", &p.range)];
    if let Some(i) = &p.instant {
        passes.push(("prometheus, instant query per evaluation", i));
    }
    for (name, pass) in passes {
        println!(
            "{name:<44} {:>9} {:>12.3} {:>12.3}  {}",
            pass.requests,
            pass.wall.as_secs_f64(),
            pass.engine_s,
            ratio(ours, pass.engine_s)
        );
        println!(
            "{:<44} {:>9} {:>12.3} {:>12}  (wall minus transport {:.3} s: {})",
            "  transport: as many vector(1)",
            pass.requests,
            pass.transport_wall.as_secs_f64(),
            "",
            (pass.wall - pass.transport_wall.min(pass.wall)).as_secs_f64(),
            ratio(
                ours,
                (pass.wall - pass.transport_wall.min(pass.wall)).as_secs_f64()
            )
        );
    }
    if !quick {
        if cpus >= 2 {
            common::pin_to(0);
        }
        let mine = ours_by_group(&files, t0);
        allow_cpus(0..cpus);
        println!();
        println!(
            "{:<30} {:>6} {:>10} {:>14} {:>14}",
            "engine seconds by group", "rules", "ours", "prom range", "prom instant"
        );
        for (g, d) in &mine {
            let n = rules.iter().filter(|r| &r.group == g).count();
            let of = |pass: Option<&PromPass>| {
                pass.and_then(|x| x.by_group.get(g))
                    .map_or("-".into(), |s| format!("{s:.3}"))
            };
            println!(
                "{g:<30} {n:>6} {:>10.3} {:>14} {:>14}",
                d.as_secs_f64(),
                of(Some(&p.range)),
                of(p.instant.as_ref())
            );
        }
    }
    if p.compacted {
        println!("note: Prometheus compacted blocks while it was measured; its figures are high");
    }
    println!();
    println!("agreement, rule by rule (ours/prometheus; outputs are (time, labels) pairs):");
    let a = agreement(&store, &rules, &p.answers, t0);
    for l in &a.lines {
        println!("{l}");
    }
    if a.ok {
        println!("agreement: all {} rules agree", rules.len());
        0
    } else {
        println!("agreement: DISAGREE (see DIFF lines)");
        1
    }
}

fn main() {
    // Guards (scratch folder, Prometheus) live inside `run`, so they are dropped before exit.
    std::process::exit(run());
}
