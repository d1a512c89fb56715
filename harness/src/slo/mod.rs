//! Service level objectives: the spec (`spec.rs`), the error-budget and burn-rate arithmetic
//! (`budget.rs`, pure), and the Prometheus rules generated from a spec (`rules.rs`): recording
//! rules for the SLI's error ratio over each window and the SRE workbook's multi-window,
//! multi-burn-rate alerts. Drills validate exactly the generated rules.

pub mod budget;
pub mod measure;
pub mod rules;
pub mod spec;

pub use budget::{burn_rate, BudgetReport, BurnWindow, BURN_WINDOWS};
pub use spec::{Sli, Slo, SloFile};
