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
}
