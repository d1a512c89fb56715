//! How many workers a target rate needs: for each worker count, the queueing model's predicted
//! queue wait and latency per tier (see [`super::queueing`]), judged against the scenario's
//! latency thresholds; the recommendation is the fewest workers that meet them all. Pure.

use super::queueing::{
    fit_contention, mgc, replay, service_moments, simulate, utilization, Analytic, Arrivals, Class,
    Contention, JobSample, ReplayInput, SimInput, SimOutput,
};
use crate::scenario::{Arrival, Scenario, TIERS};
use reports::capacity::{SizingRecord, SizingRow};
use std::collections::BTreeMap;

/// Jobs per simulation: enough that the p95 of the wait moves by well under a percent between
/// seeds at the utilizations that matter.
const SIM_JOBS: usize = 200_000;

/// Replications of a check's schedule: a 60 s span at 15 req/s is ~900 jobs, so 200 of them
/// pool ~180,000 waits.
const REPLAY_REPS: usize = 200;

/// Without latency thresholds, the fewest workers at or below this utilization.
const DEFAULT_UTILIZATION: f64 = 0.8;

/// What the model needs to know besides the rate.
#[derive(Debug, Clone)]
pub struct Model {
    /// One class per tier, with its share of the traffic and its measured requests (their worker
    /// time as it would be alone: the contention taken out).
    pub classes: Vec<Class>,
    /// How busy workers slow each other, fitted on every measured request.
    pub contention: Contention,
    /// The arrival process.
    pub arrivals: Arrivals,
    /// The latency thresholds: `(name, tier, quantile 0..1, limit ms)`.
    pub limits: Vec<(String, Option<String>, f64, f64)>,
    /// Seed of the simulations.
    pub seed: u64,
}

impl Model {
    /// The model for `scenario`'s traffic: the contention fitted on `fit` (requests from light
    /// load to saturation), the jobs drawn from `samples` per `(model, tier)` (requests from the
    /// regimes of interest). Tiers the scenario sends but the samples lack are left out (with a
    /// note in `notes`).
    pub fn new(
        scenario: &Scenario,
        fit: &[JobSample],
        samples: &BTreeMap<(String, String), Vec<JobSample>>,
        notes: &mut Vec<String>,
    ) -> Model {
        let contention = fit_contention(fit);
        let k = contention.k();
        let alone = |j: &JobSample| JobSample {
            service_ms: j.service_ms / (1.0 + k * j.others),
            overhead_ms: j.overhead_ms,
            others: 0.0,
        };
        let mix = &scenario.load.mix.tiers;
        let shares: Vec<(String, f64)> = if mix.is_empty() {
            vec![("default".to_owned(), 1.0)]
        } else {
            mix.iter()
                .filter(|(_, w)| **w > 0.0)
                .map(|(t, w)| (t.clone(), *w))
                .collect()
        };
        let mut classes = Vec::new();
        for (tier, share) in shares {
            let pooled: Vec<JobSample> = samples
                .iter()
                .filter(|((_, t), _)| *t == tier)
                .flat_map(|(_, v)| v.iter().map(alone))
                .collect();
            if pooled.is_empty() {
                notes.push(format!(
                    "tier {tier}: no request with the target's timings was measured; the sizing leaves it out"
                ));
                continue;
            }
            classes.push(Class {
                priority: TIERS.iter().position(|t| *t == tier).unwrap_or(TIERS.len()),
                name: tier,
                share,
                samples: pooled,
            });
        }
        let arrivals = match &scenario.load.arrival {
            Arrival::Constant => Arrivals::Constant,
            Arrival::Gamma { burstiness } => Arrivals::Gamma(*burstiness),
            Arrival::Poisson | Arrival::Replay { .. } => Arrivals::Poisson,
        };
        let limits = scenario
            .thresholds
            .iter()
            .filter_map(|t| {
                let l = t.latency.as_ref()?;
                Some((
                    t.name.clone(),
                    l.tier.clone(),
                    l.percentile / 100.0,
                    l.below.0.as_secs_f64() * 1000.0,
                ))
            })
            .collect();
        Model {
            classes,
            contention,
            arrivals,
            limits,
            seed: scenario.seed,
        }
    }

    /// The prediction for `workers` at `rate`.
    pub fn predict(&self, rate: f64, workers: usize) -> SizingRow {
        let (work, _) = service_moments(&self.classes);
        let k = self.contention.k();
        let rho = utilization(rate, work, k, workers);
        if !rho.is_finite() || rho >= 1.0 || self.classes.is_empty() {
            return SizingRow {
                workers,
                utilization: rho,
                p_wait: 1.0,
                p95_wait_ms: f64::INFINITY,
                mgc_p95_wait_ms: f64::INFINITY,
                latency: self
                    .limits
                    .iter()
                    .map(|l| (l.0.clone(), f64::INFINITY))
                    .collect(),
                meets: false,
            };
        }
        let analytic = self.analytic(rate, workers);
        let out = simulate(&SimInput {
            rate,
            arrivals: self.arrivals,
            classes: self.classes.clone(),
            workers,
            contention: k,
            jobs: SIM_JOBS,
            seed: self.seed,
        });
        let latency: Vec<(String, f64)> = self
            .limits
            .iter()
            .map(|(name, tier, q, _)| {
                let w = match tier {
                    Some(t) => self
                        .classes
                        .iter()
                        .position(|c| &c.name == t)
                        .map_or(&out.overall, |i| &out.per_class[i]),
                    None => &out.overall,
                };
                (name.clone(), w.latency_quantile(*q))
            })
            .collect();
        let meets = if self.limits.is_empty() {
            rho <= DEFAULT_UTILIZATION
        } else {
            self.limits.iter().zip(&latency).all(|(l, p)| p.1 <= l.3)
        };
        SizingRow {
            workers,
            utilization: rho,
            p_wait: out.overall.p_wait(),
            p95_wait_ms: out.overall.wait_quantile(0.95),
            mgc_p95_wait_ms: analytic.p95_wait_ms,
            latency,
            meets,
        }
    }

    /// The mean worker time the model expects at `rate` on `workers`: the time alone, slowed
    /// by the others busy at the predicted utilization.
    pub fn service_at(&self, rate: f64, workers: usize) -> f64 {
        let (work, _) = service_moments(&self.classes);
        let k = self.contention.k();
        let rho = utilization(rate, work, k, workers).min(1.0);
        work * (1.0 + k * (workers.saturating_sub(1)) as f64 * rho)
    }

    /// M/G/c at `rate` on `workers` (the cross-check), at the worker time the contention implies
    /// at that utilization.
    pub fn analytic(&self, rate: f64, workers: usize) -> Analytic {
        let (_, scv) = service_moments(&self.classes);
        mgc(rate, self.service_at(rate, workers), scv, workers)
    }

    /// The model's waits for one run: `schedule` (arrival times in seconds, ascending, and
    /// tiers) replayed on `workers` with service times drawn from the measured ones, scaled by
    /// `slowdown` (1 as measured in the sweep), counting the jobs that arrive in `span` seconds.
    /// Tiers the model lacks are left out.
    pub fn replay(
        &self,
        schedule: &[(f64, &str)],
        span: (f64, f64),
        workers: usize,
        slowdown: f64,
    ) -> SimOutput {
        let classes: Vec<Class> = self
            .classes
            .iter()
            .map(|c| Class {
                samples: c
                    .samples
                    .iter()
                    .map(|j| JobSample {
                        service_ms: j.service_ms * slowdown,
                        ..*j
                    })
                    .collect(),
                ..c.clone()
            })
            .collect();
        let schedule = schedule
            .iter()
            .filter_map(|(at, tier)| {
                let class = classes.iter().position(|c| c.name == *tier)?;
                Some((at * 1000.0, class))
            })
            .collect();
        replay(&ReplayInput {
            schedule,
            count: (span.0 * 1000.0, span.1 * 1000.0),
            classes,
            workers,
            contention: self.contention.k(),
            reps: REPLAY_REPS,
            seed: self.seed,
        })
    }

    /// The sizing table for `rate`: from the fewest workers that are not overloaded up to one
    /// past the recommendation (or `max_workers`).
    pub fn size(&self, rate: f64, max_workers: usize) -> SizingRecord {
        let (work, _) = service_moments(&self.classes);
        let k = self.contention.k();
        let first = (1..=max_workers)
            .find(|&c| utilization(rate, work, k, c) < 1.0)
            .unwrap_or(max_workers);
        let mut rows = Vec::new();
        let mut recommended = None;
        for c in first..=max_workers {
            let row = self.predict(rate, c);
            let meets = row.meets;
            rows.push(row);
            if recommended.is_some() {
                break;
            }
            if meets {
                recommended = Some(c);
                if c == max_workers {
                    break;
                }
            }
        }
        SizingRecord {
            rate,
            rows,
            recommended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(thresholds: &str) -> Scenario {
        Scenario::parse(&format!(
            "version: 1\nname: s\ntarget: {{reference_server: {{}}}}\nload:\n  arrival: {{process: poisson}}\n  mix: {{tiers: {{turbo: 1}}}}\n  stages: [{{hold: 1, for: 10s}}]\nthresholds:\n{thresholds}"
        ))
        .unwrap()
    }

    fn samples(ms: f64) -> BTreeMap<(String, String), Vec<JobSample>> {
        BTreeMap::from([(
            ("m".to_owned(), "turbo".to_owned()),
            vec![
                JobSample {
                    service_ms: ms,
                    overhead_ms: 10.0,
                    others: 0.0,
                };
                50
            ],
        )])
    }

    #[test]
    fn the_recommendation_is_the_fewest_workers_meeting_the_latency_limits() {
        // 100 ms of work at 15 req/s: 2 workers are 75% busy, 3 are 50%.
        let s = scenario(
            "  - {name: turbo p95, latency: {percentile: 95, tier: turbo, below: 400ms}}\n",
        );
        let mut notes = Vec::new();
        let m = Model::new(&s, &[], &samples(100.0), &mut notes);
        assert!(notes.is_empty());
        let r = m.size(15.0, 16);
        let rec = r.recommended.unwrap();
        let row = |c: usize| r.rows.iter().find(|x| x.workers == c).unwrap();
        assert!(row(rec).meets && row(rec).latency[0].1 <= 400.0, "{r:?}");
        if rec > r.rows[0].workers {
            assert!(!row(rec - 1).meets, "{r:?}");
        }
        // Predicted waits shrink with more workers, and the table goes one past the answer.
        assert!(row(rec + 1).p95_wait_ms <= row(rec).p95_wait_ms);
        assert_eq!(r.rows.last().unwrap().workers, rec + 1);
        // One worker at 15 req/s of 100 ms jobs is overloaded: never the first row.
        assert!(r.rows[0].workers >= 2);
    }

    #[test]
    fn a_replay_scales_the_work_and_leaves_out_unknown_tiers() {
        let s = scenario(
            "  - {name: turbo p95, latency: {percentile: 95, tier: turbo, below: 400ms}}\n",
        );
        let m = Model::new(&s, &[], &samples(100.0), &mut Vec::new());
        // Two turbo arrivals at once on one worker: the second waits for the first; the relax
        // one is not in the model.
        let schedule = [
            (0.0, "turbo"),
            (0.0, "relax"),
            (0.0, "turbo"),
            (2.0, "turbo"),
        ];
        let worst = |slowdown: f64| {
            let out = m.replay(&schedule, (0.0, 1.0), 1, slowdown);
            assert_eq!(out.overall.wait_ms.len(), 2 * REPLAY_REPS);
            out.overall.wait_quantile(1.0)
        };
        assert_eq!(worst(1.0), 100.0);
        assert_eq!(worst(1.5), 150.0);
    }

    #[test]
    fn an_impossible_limit_has_no_recommendation_and_a_missing_tier_is_noted() {
        let s = scenario(
            "  - {name: turbo p95, latency: {percentile: 95, tier: turbo, below: 50ms}}\n",
        );
        let mut notes = Vec::new();
        let m = Model::new(&s, &[], &samples(100.0), &mut notes);
        let r = m.size(5.0, 4);
        assert_eq!(r.recommended, None);
        assert_eq!(r.rows.last().unwrap().workers, 4);
        let m = Model::new(&s, &[], &BTreeMap::new(), &mut notes);
        assert!(m.classes.is_empty());
        assert!(notes[0].contains("turbo"), "{notes:?}");
    }
}
