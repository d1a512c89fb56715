//! The validation error of the fault vocabulary.

use std::fmt;

/// A fault that parsed but makes no sense: names the offending field and says why.
///
/// `field` is a dotted path from the [`FaultSpec`](crate::FaultSpec) root, for example
/// `fault.probability`, `duration_ms` or `fault.models[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultError {
    /// The fault's name as given (possibly empty when the name itself is the problem).
    pub fault: String,
    /// Dotted path of the wrong field, from the `FaultSpec` root.
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl FaultError {
    /// Builds an error for `field` of the fault named `fault`.
    pub fn new(
        fault: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FaultError {
            fault: fault.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fault.is_empty() {
            write!(f, "fault: field `{}`: {}", self.field, self.message)
        } else {
            write!(
                f,
                "fault `{}`: field `{}`: {}",
                self.fault, self.field, self.message
            )
        }
    }
}

impl std::error::Error for FaultError {}
