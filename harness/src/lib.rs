//! `firedrill`: a load-testing and chaos harness for GPU generation services.
//!
//! The scenario -> plan -> run -> verdict pipeline lands here issue by issue (see DESIGN.md);
//! this crate starts with the outcome vocabulary every later part records results in.

pub mod outcome;
