//! Content safety: the checks of seed 000's `safety_pre_check` and `safety_post_check` spans.
//!
//! - [`prompt`]: the pre-generation prompt classifier (rules and a blocklist by category), run
//!   before any compute is spent. It catches explicit prompts only; subtler ones pass it on
//!   purpose and are caught after generation by the image classifier.

pub mod prompt;

pub use prompt::{Category, PromptClassifier, PromptVerdict};
