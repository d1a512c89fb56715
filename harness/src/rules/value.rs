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

/// Whether an annotation warns or only informs, as Prometheus splits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnnotationKind {
    /// `PromQL warning`: the result may not be what was meant (an invalid quantile, a sort
    /// that a range query undoes, a bucket without a usable `le`).
    Warning,
    /// `PromQL info`: a hint (a rate over a metric whose name does not say counter).
    Info,
}

impl AnnotationKind {
    /// Prometheus' prefix of the kind: `PromQL warning` or `PromQL info`.
    pub fn prefix(self) -> &'static str {
        match self {
            AnnotationKind::Warning => "PromQL warning",
            AnnotationKind::Info => "PromQL info",
        }
    }
}

/// Where in the query text an annotation points: the start of the expression it is about,
/// as Prometheus' `PositionRange.StartPosInput` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in bytes from the start of the line.
    pub column: usize,
}

impl fmt::Display for Position {
    /// `line:column`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A warning or info raised while a query was evaluated (Prometheus' annotations): the query
/// still answered, but something about it deserves a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Warning or info.
    pub kind: AnnotationKind,
    /// Prometheus' text after the kind's prefix, without position, e.g. `quantile value
    /// should be between 0 and 1, got 2`.
    pub message: String,
    /// What Prometheus appends before the position when it renders one (the statistics of
    /// `histogram_quantile`'s monotonicity fix); empty for the others.
    pub detail: String,
    /// Where the expression it is about starts, when the query text is known.
    pub position: Option<Position>,
}

impl fmt::Display for Annotation {
    /// As Prometheus' API renders it: `PromQL warning: message (line:col)`; without a known
    /// position, the bare `PromQL warning: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.prefix(), self.message)?;
        if let Some(p) = self.position {
            write!(f, "{} ({p})", self.detail)?;
        }
        Ok(())
    }
}

/// A query's result with the annotations its evaluation raised (deduplicated, in the order
/// each was first raised).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotated {
    /// The result.
    pub value: Value,
    /// Warnings and infos.
    pub annotations: Vec<Annotation>,
}
