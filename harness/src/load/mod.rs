//! The load engine: sends the plan's requests at their intended times (open model) or as N
//! users with think time (closed model), and reports every send and result as an `Event`.
//!
//! Latency is measured from the intended send time, so a stalled target cannot hide behind a
//! stalled client (coordinated omission); service time (from the actual send) and send delay
//! are reported beside it. Times are `Duration`s since the run's start instant.

pub mod client;
mod closed;
mod open;
pub mod request;

pub use client::HttpClient;
pub use closed::run_closed;
pub use open::run_open;
pub use request::Endpoint;

use crate::outcome::OutcomeClass;
use std::time::Duration;

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A request's intended send time came.
    Offered {
        /// Intended send time.
        at: Duration,
    },
    /// The in-flight cap delayed a send: the run's numbers are not trustworthy.
    CapHit {
        /// Intended send time.
        at: Duration,
    },
    /// A request finished.
    Done(Completed),
}

/// One finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// Tier label (`default` when the plan left it to the target).
    pub tier: String,
    /// Stage index.
    pub stage: usize,
    /// Outcome class.
    pub outcome: OutcomeClass,
    /// When it should have been sent.
    pub intended: Duration,
    /// When it was sent.
    pub sent: Duration,
    /// When its outcome was known.
    pub finished: Duration,
    /// What the target said the request cost (with `EngineConfig::server_timings`).
    pub server: Option<ServerTimings>,
}

/// What the target's final answer said a request cost, from its per-stage timings (the reference
/// server's `timings_ms`): time queued for a worker and time on the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTimings {
    /// The model that served it.
    pub model: String,
    /// Time in the queue before a worker took it, ms.
    pub queue_wait_ms: f64,
    /// Time on the worker (assignment and model load, generation, post-check, delivery), ms.
    pub service_ms: f64,
    /// Size of the batch it ran in (1 when the target does not say).
    pub batch_size: u32,
}

impl ServerTimings {
    /// Reads the timings of a job document; `None` when it has no `timings_ms.queue_wait` (a
    /// target that does not report them, or a job that never reached a worker).
    pub fn of(doc: &serde_json::Value) -> Option<ServerTimings> {
        let t = &doc["timings_ms"];
        let queue_wait_ms = t["queue_wait"].as_f64()?;
        let stage = |k: &str| t[k].as_f64().unwrap_or(0.0);
        let service_ms = [
            "worker_assignment",
            "generation",
            "safety_post_check",
            "delivery",
        ]
        .iter()
        .map(|k| stage(k))
        .sum();
        Some(ServerTimings {
            model: doc["model"].as_str().unwrap_or("").to_owned(),
            queue_wait_ms,
            service_ms,
            batch_size: doc["batch_size"].as_u64().map_or(1, |b| b as u32),
        })
    }
}

/// Engine settings from the scenario.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Client-side timeout per request.
    pub request_timeout: Duration,
    /// Async poll interval.
    pub poll_interval: Duration,
    /// Most requests in flight; at the cap, sends wait (and are marked late).
    pub max_in_flight: usize,
    /// Closed model: pause between a user's answer and its next request.
    pub think_time: Duration,
    /// After a success, download the result's image before the request counts as done.
    pub fetch_image: bool,
    /// Read the target's per-request timings from its answers (parses every success's body,
    /// which the plain load path skips).
    pub server_timings: bool,
}
