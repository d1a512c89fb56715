//! The sizing model: how long requests wait for a worker, given an arrival rate, the measured
//! service times and a number of workers.
//!
//! Two answers, side by side:
//!
//! - **M/G/c, analytic** (the cross-check): Erlang C gives the probability of waiting in M/M/c;
//!   the Allen–Cunneen approximation scales the mean wait by `(1 + cs²) / 2`, the squared
//!   coefficient of variation of service; the tail is taken as exponential beyond the waiting
//!   probability, so `P(W > t) = C · exp(-t · C / W̄)`.
//! - **Simulation, the prediction**: a seeded discrete-event simulation of the queue the
//!   reference server runs: `c` workers, non-preemptive priority by tier (turbo before fast
//!   before relax, first come first served within a tier), arrivals from the scenario's process
//!   (Poisson, constant or gamma gaps) and each job's service time and non-queue overhead drawn
//!   together from the measured requests of its tier. It needs no distributional assumption, so it
//!   is exact for the queue's model where the formula is an approximation, and it gives per-tier
//!   quantiles of wait and latency where the formula gives an aggregate.
//!
//! Everything here is pure and seeded.

use crate::plan::sample;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// The arrival process the model assumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// Exponential gaps.
    Poisson,
    /// Evenly spaced.
    Constant,
    /// Gamma gaps with this squared coefficient of variation.
    Gamma(f64),
}

/// One measured request: what the worker spent on it and what it spent outside the queue and
/// the worker (gateway, prompt processing, network, fetching the image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobSample {
    /// Worker time, ms. In a simulation: the time it takes on a worker that is alone (slowed by
    /// the input's `contention` when others are busy).
    pub service_ms: f64,
    /// Latency outside the queue and the worker, ms.
    pub overhead_ms: f64,
    /// How many other jobs were in service beside it, on average over its service (measured;
    /// what [`fit_contention`] regresses on).
    pub others: f64,
}

/// How much busy workers slow each other: worker time ≈ `alone_ms` + `per_other_ms` × (other
/// jobs in service). Workers on separate GPUs do not interfere (`per_other_ms` ≈ 0); workers
/// that share a host, a GPU (MIG, time slicing) or a CPU (the reference server on a laptop) do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contention {
    /// Worker time with no other job in service, ms.
    pub alone_ms: f64,
    /// Added per other job in service, ms.
    pub per_other_ms: f64,
}

impl Contention {
    /// The slowdown per other busy worker, relative: a worker with `n` others busy runs at
    /// `1 / (1 + k n)` of its speed alone.
    pub fn k(&self) -> f64 {
        if self.alone_ms > 0.0 {
            self.per_other_ms / self.alone_ms
        } else {
            0.0
        }
    }
}

/// Least squares of worker time against the other jobs in service, over `samples`; a negative
/// slope (noise) is taken as none, and so is any slope when the others barely vary.
pub fn fit_contention(samples: &[JobSample]) -> Contention {
    let n = samples.len() as f64;
    if samples.is_empty() {
        return Contention {
            alone_ms: 0.0,
            per_other_ms: 0.0,
        };
    }
    let mx = samples.iter().map(|s| s.others).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.service_ms).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.others - mx).powi(2)).sum();
    let sxy: f64 = samples
        .iter()
        .map(|s| (s.others - mx) * (s.service_ms - my))
        .sum();
    // A spread of under a tenth of a job (one worker: every request alone) is the timing
    // approximation's noise, not contention: a slope fitted on it is meaningless.
    let b = if sxx / n > 0.01 {
        (sxy / sxx).max(0.0)
    } else {
        0.0
    };
    let a = my - b * mx;
    if a <= 0.0 {
        return Contention {
            alone_ms: my,
            per_other_ms: 0.0,
        };
    }
    Contention {
        alone_ms: a,
        per_other_ms: b,
    }
}

/// Worker utilization with contention `k` at `rate` per second, mean alone time `work_ms` and `c`
/// workers: the fixed point of `rho = rate * S / c` with `S = work * (1 + k (c - 1) rho)` (each
/// busy worker sees the others busy at the utilization); infinite when there is none below 1.
pub fn utilization(rate: f64, work_ms: f64, k: f64, c: usize) -> f64 {
    let c = c.max(1) as f64;
    let base = rate * work_ms / 1000.0 / c;
    let denom = 1.0 - base * k * (c - 1.0);
    if denom <= 0.0 {
        return f64::INFINITY;
    }
    base / denom
}

/// A class of requests (a tier) in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// Its name (the tier).
    pub name: String,
    /// Share of the arrivals.
    pub share: f64,
    /// Lower is served first.
    pub priority: usize,
    /// Measured requests to draw from (must not be empty).
    pub samples: Vec<JobSample>,
}

/// Mean and squared coefficient of variation of the classes' service times, weighted by share.
pub fn service_moments(classes: &[Class]) -> (f64, f64) {
    let total: f64 = classes.iter().map(|c| c.share).sum();
    let (mut m1, mut m2) = (0.0, 0.0);
    for c in classes.iter().filter(|c| !c.samples.is_empty()) {
        let n = c.samples.len() as f64;
        let w = c.share / total;
        m1 += w * c.samples.iter().map(|s| s.service_ms).sum::<f64>() / n;
        m2 += w * c.samples.iter().map(|s| s.service_ms.powi(2)).sum::<f64>() / n;
    }
    let scv = if m1 > 0.0 {
        (m2 - m1 * m1).max(0.0) / (m1 * m1)
    } else {
        0.0
    };
    (m1, scv)
}

/// Erlang C: the probability that an arrival waits in M/M/c with offered load `a` (arrival rate
/// times mean service time) on `c` servers; 1 when `a >= c`.
pub fn erlang_c(c: usize, a: f64) -> f64 {
    if c == 0 || a >= c as f64 {
        return 1.0;
    }
    if a <= 0.0 {
        return 0.0;
    }
    // Erlang B by its stable recursion, then C from B.
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    let c = c as f64;
    c * b / (c - a * (1.0 - b))
}

/// The analytic M/G/c answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analytic {
    /// Utilization of the workers.
    pub utilization: f64,
    /// Probability of waiting at all.
    pub p_wait: f64,
    /// Mean wait, ms (infinite when overloaded).
    pub mean_wait_ms: f64,
    /// 95th percentile of the wait, ms.
    pub p95_wait_ms: f64,
}

/// M/G/c by Erlang C and Allen–Cunneen: `rate` per second, mean service `mean_ms` with squared
/// coefficient of variation `scv`, on `c` workers.
pub fn mgc(rate: f64, mean_ms: f64, scv: f64, c: usize) -> Analytic {
    let a = rate * mean_ms / 1000.0;
    let utilization = a / c as f64;
    if utilization >= 1.0 {
        return Analytic {
            utilization,
            p_wait: 1.0,
            mean_wait_ms: f64::INFINITY,
            p95_wait_ms: f64::INFINITY,
        };
    }
    let p_wait = erlang_c(c, a);
    let mm_wait = p_wait * mean_ms / (c as f64 - a);
    let mean_wait_ms = mm_wait * (1.0 + scv) / 2.0;
    let p95_wait_ms = if p_wait <= 0.05 {
        0.0
    } else {
        mean_wait_ms / p_wait * (p_wait / 0.05).ln()
    };
    Analytic {
        utilization,
        p_wait,
        mean_wait_ms,
        p95_wait_ms,
    }
}

/// What a simulation is of.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInput {
    /// Arrivals per second, all classes together.
    pub rate: f64,
    /// Their process.
    pub arrivals: Arrivals,
    /// The classes.
    pub classes: Vec<Class>,
    /// Workers.
    pub workers: usize,
    /// Slowdown per other busy worker ([`Contention::k`]); 0 for independent workers.
    pub contention: f64,
    /// Jobs to simulate (the first tenth warms the queue up and is not counted).
    pub jobs: usize,
    /// Seed.
    pub seed: u64,
}

/// Sorted waits and latencies of one class (or all), ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Waits {
    /// Queue waits, sorted.
    pub wait_ms: Vec<f64>,
    /// Latencies (overhead + wait + service), sorted.
    pub latency_ms: Vec<f64>,
}

impl Waits {
    /// The `q` quantile (0..1) of the wait, ms.
    pub fn wait_quantile(&self, q: f64) -> f64 {
        quantile(&self.wait_ms, q)
    }

    /// The `q` quantile (0..1) of the latency, ms.
    pub fn latency_quantile(&self, q: f64) -> f64 {
        quantile(&self.latency_ms, q)
    }

    /// Mean wait, ms.
    pub fn mean_wait_ms(&self) -> f64 {
        if self.wait_ms.is_empty() {
            return 0.0;
        }
        self.wait_ms.iter().sum::<f64>() / self.wait_ms.len() as f64
    }

    /// Share of jobs that waited at all.
    pub fn p_wait(&self) -> f64 {
        if self.wait_ms.is_empty() {
            return 0.0;
        }
        self.wait_ms.iter().filter(|&&w| w > 1e-9).count() as f64 / self.wait_ms.len() as f64
    }
}

/// The `q` quantile of sorted `v` (the value at rank `ceil(q n)`, as HdrHistogram reports it).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// What a simulation found.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOutput {
    /// Per class, in the input's order.
    pub per_class: Vec<Waits>,
    /// All classes together.
    pub overall: Waits,
    /// Busy time over capacity (workers × simulated time).
    pub utilization: f64,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    class: usize,
    arrival: f64,
    sample: JobSample,
}

/// A job on a worker: its index, when it started and the work (ms at full speed) it has left.
#[derive(Debug, Clone, Copy)]
struct Running {
    index: usize,
    job: Job,
    start: f64,
    left: f64,
}

/// What the simulation accumulates.
struct Tally {
    per_class: Vec<Waits>,
    overall: Waits,
    busy: f64,
    first: Option<f64>,
    last: f64,
}

impl Tally {
    fn new(classes: usize) -> Tally {
        Tally {
            per_class: vec![Waits::default(); classes],
            overall: Waits::default(),
            busy: 0.0,
            first: None,
            last: 0.0,
        }
    }

    fn done(&mut self, r: &Running, end: f64) {
        let wait = r.start - r.job.arrival;
        let latency = r.job.sample.overhead_ms + (end - r.job.arrival);
        self.first.get_or_insert(r.job.arrival);
        self.busy += end - r.start;
        self.last = self.last.max(end);
        for w in [&mut self.per_class[r.job.class], &mut self.overall] {
            w.wait_ms.push(wait);
            w.latency_ms.push(latency);
        }
    }

    fn finish(self, workers: usize, span: f64) -> SimOutput {
        let Tally {
            mut per_class,
            mut overall,
            busy,
            ..
        } = self;
        for w in per_class.iter_mut().chain([&mut overall]) {
            w.wait_ms.sort_by(f64::total_cmp);
            w.latency_ms.sort_by(f64::total_cmp);
        }
        SimOutput {
            per_class,
            overall,
            utilization: if span > 0.0 {
                busy / (span * workers as f64)
            } else {
                0.0
            },
        }
    }
}

/// Runs the simulation (times in ms). Workers run at `1 / (1 + k (n - 1))` of their speed alone
/// while `n` of them are busy; with `k = 0` this is the plain multi-server queue.
pub fn simulate(input: &SimInput) -> SimOutput {
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let classes: Vec<&Class> = input.classes.iter().collect();
    let total_share: f64 = classes.iter().map(|c| c.share).sum();
    let gap_ms = 1000.0 / input.rate;
    let mut next_arrival = 0.0f64;
    let mut arrived = 0usize;
    let arrivals = input.arrivals;
    let mut next = |rng: &mut ChaCha8Rng| {
        if arrived == input.jobs {
            return None;
        }
        arrived += 1;
        let at = next_arrival;
        next_arrival += match arrivals {
            Arrivals::Poisson => gap_ms * sample::exponential(rng),
            Arrivals::Constant => gap_ms,
            Arrivals::Gamma(scv) => {
                let shape = 1.0 / scv.max(1e-6);
                gap_ms * sample::gamma(rng, shape) / shape
            }
        };
        Some((at, pick(rng, &classes, total_share)))
    };
    let mut tally = Tally::new(classes.len());
    let warm = input.jobs / 10;
    run_queue(
        &mut next,
        &|index, _| index >= warm,
        &input.classes,
        input.workers,
        input.contention,
        &mut rng,
        &mut tally,
    );
    let span = tally.last - tally.first.unwrap_or(0.0);
    tally.finish(input.workers.max(1), span)
}

/// A simulation of a given schedule: the arrivals a run really sends, replayed with service
/// times drawn from the classes, so a prediction for that run carries no sampling noise from
/// the arrival process.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayInput {
    /// Arrivals: when (ms, ascending) and of which class.
    pub schedule: Vec<(f64, usize)>,
    /// Only jobs arriving in `[from, to)` ms are counted (the run's measured span).
    pub count: (f64, f64),
    /// The classes.
    pub classes: Vec<Class>,
    /// Workers.
    pub workers: usize,
    /// Slowdown per other busy worker ([`Contention::k`]).
    pub contention: f64,
    /// Replications, each with fresh service draws; their counted jobs are pooled.
    pub reps: usize,
    /// Seed.
    pub seed: u64,
}

/// Runs the schedule `reps` times and pools the counted jobs' waits and latencies.
pub fn replay(input: &ReplayInput) -> SimOutput {
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let mut tally = Tally::new(input.classes.len());
    let (from, to) = input.count;
    for _ in 0..input.reps.max(1) {
        let mut it = input
            .schedule
            .iter()
            .copied()
            .filter(|&(_, c)| c < input.classes.len());
        let mut next = |_: &mut ChaCha8Rng| it.next();
        run_queue(
            &mut next,
            &|_, at| at >= from && at < to,
            &input.classes,
            input.workers,
            input.contention,
            &mut rng,
            &mut tally,
        );
    }
    let busy_span = (to - from) * input.reps.max(1) as f64;
    tally.finish(input.workers.max(1), busy_span)
}

/// The event loop: jobs from `next` (arrival ms, ascending, and class), served by `workers` in
/// priority order, the ones `counted(index, arrival)` accepts added to `tally`.
fn run_queue(
    next: &mut dyn FnMut(&mut ChaCha8Rng) -> Option<(f64, usize)>,
    counted: &dyn Fn(usize, f64) -> bool,
    classes: &[Class],
    workers: usize,
    contention: f64,
    rng: &mut ChaCha8Rng,
    tally: &mut Tally,
) {
    let workers = workers.max(1);
    let k = contention.max(0.0);
    let speed = |n: usize| 1.0 / (1.0 + k * n.saturating_sub(1) as f64);
    // Queues by priority rank; within one, arrival order.
    let mut ranks: Vec<usize> = classes.iter().map(|c| c.priority).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let rank_of: Vec<usize> = classes
        .iter()
        .map(|c| ranks.iter().position(|&r| r == c.priority).unwrap_or(0))
        .collect();
    let mut queues: Vec<VecDeque<(usize, Job)>> = vec![VecDeque::new(); ranks.len()];
    let mut running: Vec<Running> = Vec::with_capacity(workers);
    let mut now = f64::NEG_INFINITY;
    let mut upcoming = next(rng);
    let mut arrived = 0usize;
    loop {
        // The next completion at the current speed, and the next arrival.
        let v = speed(running.len());
        let completion = running
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.left.total_cmp(&b.1.left))
            .map(|(i, r)| (i, now + r.left / v));
        let to = match (completion, upcoming) {
            (None, None) => break,
            (Some((_, tc)), Some((ta, _))) => tc.min(ta),
            (Some((_, tc)), None) => tc,
            (None, Some((ta, _))) => ta,
        };
        if now.is_finite() {
            for r in running.iter_mut() {
                r.left -= (to - now) * v;
            }
        }
        now = to;
        match completion {
            Some((i, tc)) if upcoming.is_none_or(|(ta, _)| tc <= ta) => {
                let r = running.swap_remove(i);
                if counted(r.index, r.job.arrival) {
                    tally.done(&r, now);
                }
                if let Some(q) = queues.iter_mut().find(|q| !q.is_empty()) {
                    let (index, job) = q.pop_front().expect("a non-empty queue");
                    running.push(Running {
                        index,
                        job,
                        start: now,
                        left: job.sample.service_ms,
                    });
                }
            }
            _ => {
                let (_, class) = upcoming.expect("an arrival is due");
                let samples = &classes[class].samples;
                let job = Job {
                    class,
                    arrival: now,
                    sample: samples[rng.random_range(0..samples.len())],
                };
                if running.len() < workers {
                    running.push(Running {
                        index: arrived,
                        job,
                        start: now,
                        left: job.sample.service_ms,
                    });
                } else {
                    queues[rank_of[class]].push_back((arrived, job));
                }
                arrived += 1;
                upcoming = next(rng);
            }
        }
    }
}

fn pick<R: RngExt>(rng: &mut R, classes: &[&Class], total: f64) -> usize {
    let mut x = rng.random::<f64>() * total;
    for (i, c) in classes.iter().enumerate() {
        if x < c.share {
            return i;
        }
        x -= c.share;
    }
    classes.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_samples(mean: f64, n: usize, seed: u64) -> Vec<JobSample> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| JobSample {
                service_ms: mean * sample::exponential(&mut rng),
                overhead_ms: 0.0,
                others: 0.0,
            })
            .collect()
    }

    fn one_class(samples: Vec<JobSample>) -> Vec<Class> {
        vec![Class {
            name: "turbo".into(),
            share: 1.0,
            priority: 0,
            samples,
        }]
    }

    #[test]
    fn a_replayed_schedule_waits_as_its_arrivals_dictate() {
        // 50 ms jobs. Three arrivals at once on one worker wait 0, 50 and 100 ms; one at 350 ms
        // finds the worker free; the one at 1000 ms is outside the counted span, and the one of a
        // class the model lacks is left out. Every
        // replication of a deterministic schedule is the same.
        let job = JobSample {
            service_ms: 50.0,
            overhead_ms: 5.0,
            others: 0.0,
        };
        let input = ReplayInput {
            schedule: vec![
                (0.0, 0),
                (0.0, 0),
                (0.0, 0),
                (1.0, 7),
                (350.0, 0),
                (1000.0, 0),
            ],
            count: (0.0, 900.0),
            classes: one_class(vec![job]),
            workers: 1,
            contention: 0.0,
            reps: 3,
            seed: 1,
        };
        let out = replay(&input);
        let mut want = vec![0.0; 6];
        want.extend([50.0; 3]);
        want.extend([100.0; 3]);
        assert_eq!(out.overall.wait_ms, want);
        assert_eq!(out.overall.latency_quantile(1.0), 155.0);
        // Two workers: only the third waits, for the first to finish.
        let two = replay(&ReplayInput {
            workers: 2,
            ..input.clone()
        });
        assert_eq!(two.overall.wait_quantile(1.0), 50.0);
        assert_eq!(two.overall.p_wait(), 0.25);
    }

    #[test]
    fn a_long_poisson_schedule_replays_as_the_process_simulates() {
        // The same M/M/1 at rho 0.7 driven two ways: by the process and by a fixed schedule drawn
        // from it. Long enough that both are the long-run answer.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut t = 0.0;
        let schedule: Vec<(f64, usize)> = (0..300_000)
            .map(|_| {
                t += 1000.0 / 7.0 * sample::exponential(&mut rng);
                (t, 0)
            })
            .collect();
        let classes = one_class(exp_samples(100.0, 50_000, 3));
        let replayed = replay(&ReplayInput {
            count: (t * 0.1, t),
            schedule,
            classes: classes.clone(),
            workers: 1,
            contention: 0.0,
            reps: 1,
            seed: 4,
        });
        let simulated = simulate(&SimInput {
            rate: 7.0,
            arrivals: Arrivals::Poisson,
            classes,
            workers: 1,
            contention: 0.0,
            jobs: 300_000,
            seed: 5,
        });
        let (a, b) = (
            replayed.overall.wait_quantile(0.95),
            simulated.overall.wait_quantile(0.95),
        );
        assert!((a / b - 1.0).abs() < 0.05, "{a} vs {b}");
        assert!(
            (replayed.utilization - 0.7).abs() < 0.02,
            "{}",
            replayed.utilization
        );
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // c = 1: P(wait) = rho.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // c = 2, a = 1: 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // c = 10, a = 8 (textbook): 0.4092.
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 1e-3);
        assert_eq!(erlang_c(2, 2.0), 1.0);
    }

    #[test]
    fn simulated_mm1_and_mmc_agree_with_the_formulas() {
        // M/M/1 at rho 0.8, mean service 100 ms: mean wait 400 ms, p95 wait
        // ln(0.8 / 0.05) / (mu - lambda) = 2.77 / 2 per second = 1386 ms, exactly.
        let input = SimInput {
            rate: 8.0,
            arrivals: Arrivals::Poisson,
            classes: one_class(exp_samples(100.0, 50_000, 1)),
            workers: 1,
            contention: 0.0,
            jobs: 1_000_000,
            seed: 2,
        };
        let out = simulate(&input);
        let (m, scv) = service_moments(&input.classes);
        let a = mgc(8.0, m, scv, 1);
        let sim_p95 = out.overall.wait_quantile(0.95);
        // The samples' own mean is a little off 100 ms, and at 80% utilization that moves the
        // wait: compare with the formula on the samples' moments (Pollaczek–Khinchine, exact for
        // one server), and the formula with the exact ones.
        let sim_mean = out.overall.mean_wait_ms();
        assert!(
            (sim_mean / a.mean_wait_ms - 1.0).abs() < 0.05,
            "{sim_mean} vs {a:?}"
        );
        assert!(
            (sim_p95 / a.p95_wait_ms - 1.0).abs() < 0.06,
            "{sim_p95} vs {a:?}"
        );
        let exact = mgc(8.0, 100.0, 1.0, 1);
        assert!((exact.mean_wait_ms - 400.0).abs() < 1e-9);
        assert!((exact.p95_wait_ms / 1386.3 - 1.0).abs() < 1e-3, "{exact:?}");
        assert!((out.utilization - 0.8).abs() < 0.03, "{}", out.utilization);
        // M/M/3 at rho 0.8: Erlang C's mean wait.
        let input = SimInput {
            rate: 24.0,
            workers: 3,
            ..input
        };
        let out = simulate(&input);
        let a = mgc(24.0, m, scv, 3);
        assert!(
            (out.overall.p_wait() / a.p_wait - 1.0).abs() < 0.05,
            "{} vs {a:?}",
            out.overall.p_wait()
        );
        assert!(
            (out.overall.mean_wait_ms() / a.mean_wait_ms - 1.0).abs() < 0.08,
            "{} vs {a:?}",
            out.overall.mean_wait_ms()
        );
    }

    #[test]
    fn deterministic_service_waits_half_as_long_and_priority_shields_the_first_tier() {
        let det: Vec<JobSample> = vec![
            JobSample {
                service_ms: 100.0,
                overhead_ms: 5.0,
                others: 0.0,
            };
            10
        ];
        let input = SimInput {
            rate: 8.0,
            arrivals: Arrivals::Poisson,
            classes: one_class(det.clone()),
            workers: 1,
            contention: 0.0,
            jobs: 300_000,
            seed: 3,
        };
        // M/D/1: Pollaczek–Khinchine, half the M/M/1 wait: 200 ms.
        let out = simulate(&input);
        assert!(
            (out.overall.mean_wait_ms() / 200.0 - 1.0).abs() < 0.05,
            "{}",
            out.overall.mean_wait_ms()
        );
        let a = mgc(8.0, 100.0, 0.0, 1);
        assert!((a.mean_wait_ms - 200.0).abs() < 1e-9);
        // Latency adds the overhead and the service.
        assert!((out.overall.latency_quantile(0.0001) - 105.0).abs() < 1e-9);
        // Two tiers, same work: the first-priority one waits far less than the other.
        let classes = vec![
            Class {
                name: "turbo".into(),
                share: 1.0,
                priority: 0,
                samples: det.clone(),
            },
            Class {
                name: "fast".into(),
                share: 1.0,
                priority: 1,
                samples: det,
            },
        ];
        let out = simulate(&SimInput { classes, ..input });
        let (hi, lo) = (
            out.per_class[0].mean_wait_ms(),
            out.per_class[1].mean_wait_ms(),
        );
        // Cobham: W_k = W0 / ((1 - s_{k-1})(1 - s_k)), W0 = 40 ms: 66.7 and 333 ms.
        assert!((hi / 66.7 - 1.0).abs() < 0.06, "{hi}");
        assert!((lo / 333.3 - 1.0).abs() < 0.06, "{lo}");
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let input = SimInput {
            rate: 5.0,
            arrivals: Arrivals::Gamma(2.0),
            classes: one_class(exp_samples(100.0, 1000, 4)),
            workers: 1,
            contention: 0.0,
            jobs: 20_000,
            seed: 9,
        };
        assert_eq!(simulate(&input), simulate(&input));
        // Burstier arrivals wait longer than evenly spaced ones.
        let bursty = simulate(&input).overall.mean_wait_ms();
        let even = simulate(&SimInput {
            arrivals: Arrivals::Constant,
            ..input
        })
        .overall
        .mean_wait_ms();
        assert!(bursty > 2.0 * even, "{bursty} vs {even}");
    }

    #[test]
    fn contention_is_fitted_and_slows_busy_workers() {
        // 70 ms alone, +60 ms per other busy job, with noise.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let samples: Vec<JobSample> = (0..2000)
            .map(|i| {
                let others = (i % 11) as f64 / 10.0;
                JobSample {
                    service_ms: 70.0 + 60.0 * others + 10.0 * (rng.random::<f64>() - 0.5),
                    overhead_ms: 0.0,
                    others,
                }
            })
            .collect();
        let c = fit_contention(&samples);
        assert!(
            (c.alone_ms - 70.0).abs() < 1.0 && (c.per_other_ms - 60.0).abs() < 1.5,
            "{c:?}"
        );
        assert!((c.k() - 60.0 / 70.0).abs() < 0.03);
        // Without interference the fit finds none.
        let flat: Vec<JobSample> = samples
            .iter()
            .map(|s| JobSample {
                service_ms: 100.0,
                ..*s
            })
            .collect();
        assert_eq!(fit_contention(&flat).per_other_ms, 0.0);
        // One worker: the overlap is the timing approximation's jitter (a few hundredths of a
        // job), whatever the worker times do.
        let alone: Vec<JobSample> = samples
            .iter()
            .map(|s| JobSample {
                others: s.others * 0.05,
                ..*s
            })
            .collect();
        let c1 = fit_contention(&alone);
        assert_eq!(c1.per_other_ms, 0.0);
        assert!((c1.alone_ms - 100.0).abs() < 1.0, "{c1:?}");
        // Two workers that halve each other's speed when both are busy: busier, and longer
        // waits, than two independent ones; the fixed-point utilization agrees with the run.
        let input = SimInput {
            rate: 7.0,
            arrivals: Arrivals::Poisson,
            classes: one_class(vec![
                JobSample {
                    service_ms: 100.0,
                    overhead_ms: 0.0,
                    others: 0.0,
                };
                4
            ]),
            workers: 2,
            contention: 1.0,
            jobs: 200_000,
            seed: 6,
        };
        let shared = simulate(&input);
        let free = simulate(&SimInput {
            contention: 0.0,
            ..input.clone()
        });
        let rho = utilization(7.0, 100.0, 1.0, 2);
        assert!(
            (shared.utilization / rho - 1.0).abs() < 0.1,
            "{} vs {rho}",
            shared.utilization
        );
        assert!(
            (free.utilization - 0.35).abs() < 0.02,
            "{}",
            free.utilization
        );
        assert!(shared.overall.mean_wait_ms() > 2.0 * free.overall.mean_wait_ms());
        assert!((utilization(7.0, 100.0, 0.0, 2) - 0.35).abs() < 1e-12);
        assert!(utilization(12.0, 100.0, 1.0, 2) >= 1.0);
        assert!(utilization(25.0, 100.0, 1.0, 2).is_infinite());
    }
}
