//! Recording a run: the live [`Recorder`] the load engine feeds with every request's result,
//! which turns them into the `reports::record` statistics the run record carries.
//!
//! The recorder is pure: it never reads a clock. Every instant is passed in as a `Duration`
//! since the run's start, so its behaviour (windowing, sealing, trust) is testable exactly and
//! replayable from a log of results.

mod recorder;

pub use recorder::{Footprint, Progress, Recorder, RequestResult};

#[cfg(test)]
mod tests;
