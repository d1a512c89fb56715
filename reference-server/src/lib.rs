//! The firedrill reference generation server: a real text-to-image/video service (axum + candle)
//! that emits the observability surface of the seed platforms, for firedrill to drill.
//!
//! A request flows `api` (gateway, prompt processing) -> `engine` (tiered `queue`, worker
//! assignment, generation with `compute`, post-generation `safety`, delivery to the `store`),
//! recording `metrics` and `telemetry` at every stage. See ARCHITECTURE.md.

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod compute;
pub mod config;
pub mod engine;
pub mod error;
pub mod faults;
pub mod gpu;
pub mod jobs;
pub mod metrics;
pub mod queue;
pub mod ratelimit;
pub mod rolling;
pub mod safety;
pub mod store;
pub mod telemetry;
pub mod types;
