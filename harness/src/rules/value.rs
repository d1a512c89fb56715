//! The values a query produces, and its errors.

use crate::scrape::Labels;
use std::fmt;

/// One sample of an instant vector: a series' labels, the evaluation time and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The labels (the metric name as `__name__`, unless an operation dropped it).
    pub labels: Labels,
    /// The evaluation timestamp, ms.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One series of a range vector (a matrix): its labels and `(t_ms, value)` points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The labels.
    pub labels: Labels,
    /// The points, in increasing time order.
    pub points: Vec<(i64, f64)>,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number at the evaluation time.
    Scalar {
        /// Evaluation time, ms.
        t: i64,
        /// The value.
        v: f64,
    },
    /// A string at the evaluation time.
    String {
        /// Evaluation time, ms.
        t: i64,
        /// The string.
        s: String,
    },
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector; also the result of every range query.
    Matrix(Vec<RangeSeries>),
}

/// Whether a query failed to parse or to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The query text is not valid PromQL.
    Parse,
    /// The query is valid but its evaluation failed (as Prometheus' engine would).
    Exec,
}

/// A failed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// Parse or evaluation failure.
    pub kind: QueryErrorKind,
    /// What went wrong, in Prometheus' words where it has some.
    pub message: String,
}

impl QueryError {
    /// A parse error.
    pub fn parse(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: QueryErrorKind::Parse,
            message: message.into(),
        }
    }

    /// An evaluation error.
    pub fn exec(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: QueryErrorKind::Exec,
            message: message.into(),
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            QueryErrorKind::Parse => write!(f, "parse error: {}", self.message),
            QueryErrorKind::Exec => write!(f, "execution error: {}", self.message),
        }
    }
}

impl std::error::Error for QueryError {}
