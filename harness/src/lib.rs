//! `firedrill`: a load-testing and chaos harness for GPU generation services.
//!
//! Scenario -> plan -> run -> verdict (see DESIGN.md). `scenario` parses and validates the
//! YAML; `plan` compiles it, purely and deterministically for a seed; `outcome` is the
//! vocabulary every result is counted in.

pub mod capacity;
pub mod faults;
pub mod load;
pub mod outcome;
pub mod plan;
pub mod prometheus;
pub mod record;
pub mod rules;
pub mod run;
pub mod scenario;
pub mod scrape;
pub mod slo;
pub mod target;
pub mod verdict;
