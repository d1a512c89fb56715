//! The plan: a scenario compiled into a rate (or user) profile and a lazy arrival schedule of
//! intended send times and request specs. Pure and deterministic for a seed: two compiles give
//! the same schedule, and nothing here sleeps or does I/O.

mod corpus;
pub(crate) mod sample;

pub use corpus::{builtin_corpus, Corpus};

use crate::scenario::{Arrival, LoadModel, Mix, Scenario, Stage};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A stretch of the profile where the value (rate or users) changes linearly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    /// Start, seconds from run start.
    pub start: f64,
    /// End, seconds from run start.
    pub end: f64,
    /// Value at the start.
    pub from: f64,
    /// Value at the end.
    pub to: f64,
    /// Index of the stage it belongs to.
    pub stage: usize,
}

impl Segment {
    /// Integral of the value over the segment (expected arrivals for a rate).
    pub fn area(&self) -> f64 {
        (self.end - self.start) * (self.from + self.to) / 2.0
    }
}

/// One stage as planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagePlan {
    /// Name (given, or `stage-N`).
    pub name: String,
    /// `hold`, `ramp`, `step` or `spike`.
    pub kind: &'static str,
    /// Start, seconds from run start.
    pub start_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
    /// Value at the start.
    pub from: f64,
    /// Value at the end.
    pub to: f64,
    /// Highest value within the stage.
    pub peak: f64,
}

/// Whether a request waits for its image or polls a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Answer when the image is ready.
    Sync,
    /// Submit a job, poll until it ends.
    Async,
}

/// What one request asks for; `None` fields are left to the target's defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestSpec {
    /// Tier.
    pub tier: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Steps.
    pub steps: Option<u32>,
    /// `WxH`.
    pub resolution: Option<String>,
    /// Sync or async.
    pub mode: Mode,
    /// Index into the corpus (safe prompts first, then unsafe).
    pub prompt: usize,
    /// Whether the prompt is from the unsafe part of the corpus.
    pub unsafe_prompt: bool,
    /// Generation seed.
    pub seed: u64,
}

/// One planned send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Send {
    /// 0-based sequence number.
    pub index: u64,
    /// Intended send time from run start.
    pub at: Duration,
    /// Stage it falls in.
    pub stage: usize,
    /// The request.
    pub spec: RequestSpec,
}

/// A compiled scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seed everything derives from.
    pub seed: u64,
    /// Open or closed.
    pub model: LoadModel,
    /// Arrival process (open model).
    pub arrival: Arrival,
    /// The stages.
    pub stages: Vec<StagePlan>,
    /// The piecewise-linear profile.
    pub segments: Vec<Segment>,
    /// Total length.
    pub duration: Duration,
    mixes: Vec<Mix>,
    replay: Option<Vec<f64>>,
    corpus: Corpus,
}

/// A planning error: the field and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    /// Field path.
    pub field: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for PlanError {}

/// Inputs a plan needs from files, read by the caller (the plan itself does no I/O).
#[derive(Debug, Clone, Default)]
pub struct PlanInputs {
    /// Send times (seconds) of a replay trace.
    pub replay: Option<Vec<f64>>,
    /// A prompt corpus from a file.
    pub corpus: Option<Corpus>,
}

fn merged(base: &Mix, over: &Option<Mix>) -> Mix {
    let Some(o) = over else { return base.clone() };
    let pick = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
        if b.is_empty() {
            a.clone()
        } else {
            b.clone()
        }
    };
    Mix {
        tiers: pick(&base.tiers, &o.tiers),
        models: pick(&base.models, &o.models),
        steps: pick(&base.steps, &o.steps),
        resolutions: pick(&base.resolutions, &o.resolutions),
        modes: pick(&base.modes, &o.modes),
        prompts: o.prompts.clone().or_else(|| base.prompts.clone()),
    }
}

fn stage_kind(s: &Stage) -> &'static str {
    if s.hold.is_some() {
        "hold"
    } else if s.ramp.is_some() {
        "ramp"
    } else if s.step.is_some() {
        "step"
    } else {
        "spike"
    }
}

impl Plan {
    /// Compiles a validated scenario.
    pub fn compile(s: &Scenario, inputs: PlanInputs) -> Result<Plan, PlanError> {
        let mut segments = Vec::new();
        let mut stages = Vec::new();
        let mut t = 0.0;
        let mut last = 0.0;
        for (i, st) in s.load.stages.iter().enumerate() {
            let d = st.duration.secs();
            let kind = stage_kind(st);
            let from = st.from.unwrap_or(last);
            let mut push = |a: f64, b: f64, v0: f64, v1: f64| {
                segments.push(Segment {
                    start: a,
                    end: b,
                    from: v0,
                    to: v1,
                    stage: i,
                })
            };
            let (v_from, v_to, peak) = match kind {
                "hold" => {
                    let r = st.hold.unwrap_or_default();
                    push(t, t + d, r, r);
                    (r, r, r)
                }
                "ramp" => {
                    let r = st.ramp.unwrap_or_default();
                    push(t, t + d, from, r);
                    (from, r, from.max(r))
                }
                "step" => {
                    let r = st.step.unwrap_or_default();
                    let n = st.steps.unwrap_or(1).max(1);
                    let w = d / n as f64;
                    for k in 0..n {
                        let v = from + (r - from) * (k + 1) as f64 / n as f64;
                        push(t + w * k as f64, t + w * (k + 1) as f64, v, v);
                    }
                    (from + (r - from) / n as f64, r, from.max(r))
                }
                _ => {
                    let p = st.spike.unwrap_or_default();
                    push(t, t + d / 2.0, last, p);
                    push(t + d / 2.0, t + d, p, last);
                    (last, last, p.max(last))
                }
            };
            stages.push(StagePlan {
                name: st
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{}", i + 1)),
                kind,
                start_s: t,
                duration_s: d,
                from: v_from,
                to: v_to,
                peak,
            });
            last = v_to;
            t += d;
        }
        let replay = match (&s.load.arrival, inputs.replay) {
            (Arrival::Replay { .. }, Some(mut times)) => {
                if let Some((i, bad)) = times
                    .iter()
                    .enumerate()
                    .find(|(_, x)| !x.is_finite() || **x < 0.0)
                {
                    return Err(PlanError {
                        field: "load.arrival.file".into(),
                        message: format!("entry {} is not a non-negative time: {bad}", i + 1),
                    });
                }
                times.sort_by(f64::total_cmp);
                Some(times)
            }
            (Arrival::Replay { .. }, None) => {
                return Err(PlanError {
                    field: "load.arrival.file".into(),
                    message: "the replay trace was not read".into(),
                })
            }
            _ => None,
        };
        let mixes = s
            .load
            .stages
            .iter()
            .map(|st| merged(&s.load.mix, &st.mix))
            .collect();
        Ok(Plan {
            seed: s.seed,
            model: s.load.model,
            arrival: s.load.arrival.clone(),
            stages,
            segments,
            duration: Duration::from_secs_f64(t),
            mixes,
            replay,
            corpus: inputs.corpus.unwrap_or_else(builtin_corpus),
        })
    }

    /// The profile's value (rate or users) at `t` seconds.
    pub fn value_at(&self, t: f64) -> f64 {
        self.segments
            .iter()
            .find(|s| t >= s.start && t < s.end)
            .map_or(0.0, |s| {
                s.from + (s.to - s.from) * (t - s.start) / (s.end - s.start)
            })
    }

    /// Expected number of requests (open model: the integral of the rate; replay: the trace).
    pub fn expected_requests(&self) -> f64 {
        match (&self.model, &self.replay) {
            (_, Some(r)) => r
                .iter()
                .filter(|t| **t < self.duration.as_secs_f64())
                .count() as f64,
            (LoadModel::Open, None) => self.segments.iter().map(Segment::area).sum(),
            (LoadModel::Closed, None) => f64::NAN,
        }
    }

    /// The prompt corpus requests index into.
    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    /// The stage index at `t` seconds (the last stage at or after the end).
    pub fn stage_at(&self, t: f64) -> usize {
        self.stages
            .iter()
            .rposition(|s| t >= s.start_s)
            .unwrap_or(0)
    }

    /// The open-model schedule: intended send times and request specs, lazily.
    pub fn sends(&self) -> Sends<'_> {
        Sends {
            plan: self,
            times: ChaCha8Rng::seed_from_u64(self.seed),
            choices: ChaCha8Rng::seed_from_u64(self.seed ^ 0x9E37_79B9_7F4A_7C15),
            lambda: 0.0,
            seg: 0,
            seg_lambda0: 0.0,
            index: 0,
        }
    }

    /// A request spec drawn for stage `stage` (used by the closed model, too).
    pub fn draw_request<R: RngExt + ?Sized>(&self, rng: &mut R, stage: usize) -> RequestSpec {
        let mix = &self.mixes[stage.min(self.mixes.len() - 1)];
        let tier = sample::weighted(rng, &mix.tiers).map(str::to_owned);
        let model = sample::weighted(rng, &mix.models).map(str::to_owned);
        let steps = sample::weighted(rng, &mix.steps).and_then(|k| k.parse().ok());
        let resolution = sample::weighted(rng, &mix.resolutions).map(str::to_owned);
        let mode = match sample::weighted(rng, &mix.modes) {
            Some("async") => Mode::Async,
            _ => Mode::Sync,
        };
        let share = mix.prompts.as_ref().map_or(0.0, |p| p.unsafe_share);
        let unsafe_prompt =
            share > 0.0 && !self.corpus.unsafe_prompts.is_empty() && rng.random::<f64>() < share;
        let prompt = if unsafe_prompt {
            self.corpus.safe.len() + rng.random_range(0..self.corpus.unsafe_prompts.len())
        } else {
            rng.random_range(0..self.corpus.safe.len().max(1))
        };
        RequestSpec {
            tier,
            model,
            steps,
            resolution,
            mode,
            prompt,
            unsafe_prompt,
            seed: rng.random(),
        }
    }
}

/// The lazy open-model schedule.
pub struct Sends<'a> {
    plan: &'a Plan,
    times: ChaCha8Rng,
    choices: ChaCha8Rng,
    lambda: f64,
    seg: usize,
    seg_lambda0: f64,
    index: u64,
}

impl Sends<'_> {
    /// Time `t` (seconds) at which the integrated rate reaches `target`, or `None` past the end.
    fn invert(&mut self, target: f64) -> Option<f64> {
        let segs = &self.plan.segments;
        while self.seg < segs.len() {
            let s = segs[self.seg];
            let area = s.area();
            if target <= self.seg_lambda0 + area && area > 0.0 {
                let dl = target - self.seg_lambda0;
                let d = s.end - s.start;
                let a = (s.to - s.from) / (2.0 * d);
                let b = s.from;
                // tau solves a*tau^2 + b*tau = dl; this form stays stable when a is tiny.
                let disc = (b * b + 4.0 * a * dl).max(0.0);
                let tau = if b + disc.sqrt() > 0.0 {
                    2.0 * dl / (b + disc.sqrt())
                } else {
                    0.0
                };
                return Some(s.start + tau.clamp(0.0, d));
            }
            self.seg_lambda0 += area;
            self.seg += 1;
        }
        None
    }
}

impl Iterator for Sends<'_> {
    type Item = Send;

    fn next(&mut self) -> Option<Send> {
        let at = if let Some(r) = &self.plan.replay {
            let t = *r.get(self.index as usize)?;
            if t >= self.plan.duration.as_secs_f64() {
                return None;
            }
            t
        } else {
            let gap = match self.plan.arrival {
                Arrival::Constant => {
                    // Centre constant arrivals: 0.5/r, 1.5/r, ... so stage edges do not bunch.
                    if self.index == 0 {
                        0.5
                    } else {
                        1.0
                    }
                }
                Arrival::Poisson => sample::exponential(&mut self.times),
                Arrival::Gamma { burstiness } => {
                    sample::gamma(&mut self.times, 1.0 / burstiness) * burstiness
                }
                Arrival::Replay { .. } => return None,
            };
            self.lambda += gap;
            let target = self.lambda;
            self.invert(target)?
        };
        let stage = self.plan.stage_at(at);
        let spec = self.plan.draw_request(&mut self.choices, stage);
        let send = Send {
            index: self.index,
            at: Duration::from_secs_f64(at),
            stage,
            spec,
        };
        self.index += 1;
        Some(send)
    }
}

#[cfg(test)]
mod tests;
