//! Outcome classes: what one request's result counts as, from its HTTP status and error code.
//! Pure, so the load engine, thresholds and reports agree on one classification.

use serde::{Deserialize, Serialize};

/// The class of one request's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeClass {
    /// The generation succeeded.
    Ok,
    /// The prompt was blocked before generation.
    BlockedPre,
    /// The image was blocked after generation.
    BlockedPost,
    /// The caller's rate limit refused it.
    RateLimited,
    /// The service refused it for load (queue full, no capacity, draining).
    Overloaded,
    /// The GPU ran out of memory.
    GpuOom,
    /// A deadline passed, on the server or the client.
    Timeout,
    /// Any other HTTP error.
    HttpError,
    /// No HTTP answer at all (refused, reset, broken).
    ConnectionError,
}

impl OutcomeClass {
    /// Every class, in report order.
    pub const ALL: [OutcomeClass; 9] = [
        OutcomeClass::Ok,
        OutcomeClass::BlockedPre,
        OutcomeClass::BlockedPost,
        OutcomeClass::RateLimited,
        OutcomeClass::Overloaded,
        OutcomeClass::GpuOom,
        OutcomeClass::Timeout,
        OutcomeClass::HttpError,
        OutcomeClass::ConnectionError,
    ];

    /// The label used in records, metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Ok => "ok",
            OutcomeClass::BlockedPre => "blocked_pre",
            OutcomeClass::BlockedPost => "blocked_post",
            OutcomeClass::RateLimited => "rate_limited",
            OutcomeClass::Overloaded => "overloaded",
            OutcomeClass::GpuOom => "gpu_oom",
            OutcomeClass::Timeout => "timeout",
            OutcomeClass::HttpError => "http_error",
            OutcomeClass::ConnectionError => "connection_error",
        }
    }

    /// Whether the class counts against availability (blocks and client limits do not).
    pub fn is_error(self) -> bool {
        !matches!(
            self,
            OutcomeClass::Ok
                | OutcomeClass::BlockedPre
                | OutcomeClass::BlockedPost
                | OutcomeClass::RateLimited
        )
    }
}

/// Classifies an HTTP answer from its status and, when the body is a JSON error, its
/// `error.code` and `error.stage`.
pub fn classify(status: u16, code: Option<&str>, stage: Option<&str>) -> OutcomeClass {
    match (status, code) {
        (200..=299, _) => OutcomeClass::Ok,
        (422, _) if stage == Some("post") => OutcomeClass::BlockedPost,
        (422, _) => OutcomeClass::BlockedPre,
        (429, Some("rate_limited")) => OutcomeClass::RateLimited,
        (429, _) => OutcomeClass::Overloaded,
        (503, Some("gpu_oom")) => OutcomeClass::GpuOom,
        (503, _) => OutcomeClass::Overloaded,
        (504, _) | (408, _) => OutcomeClass::Timeout,
        _ => OutcomeClass::HttpError,
    }
}

/// Classifies the JSON body of an answer (`{"error": {"code", "stage"}}`) with its status.
pub fn classify_body(status: u16, body: &serde_json::Value) -> OutcomeClass {
    let e = &body["error"];
    classify(status, e["code"].as_str(), e["stage"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_and_codes_map_to_classes() {
        assert_eq!(classify(200, None, None), OutcomeClass::Ok);
        assert_eq!(classify(202, None, None), OutcomeClass::Ok);
        assert_eq!(
            classify(422, Some("content_blocked"), Some("pre")),
            OutcomeClass::BlockedPre
        );
        assert_eq!(
            classify(422, Some("content_blocked"), Some("post")),
            OutcomeClass::BlockedPost
        );
        assert_eq!(
            classify(429, Some("rate_limited"), None),
            OutcomeClass::RateLimited
        );
        assert_eq!(
            classify(429, Some("queue_full"), None),
            OutcomeClass::Overloaded
        );
        assert_eq!(classify(503, Some("gpu_oom"), None), OutcomeClass::GpuOom);
        assert_eq!(
            classify(503, Some("no_capacity"), None),
            OutcomeClass::Overloaded
        );
        assert_eq!(
            classify(504, Some("deadline_exceeded"), None),
            OutcomeClass::Timeout
        );
        assert_eq!(
            classify(400, Some("invalid_json"), None),
            OutcomeClass::HttpError
        );
        assert_eq!(classify(500, None, None), OutcomeClass::HttpError);
    }

    #[test]
    fn body_classification_and_labels() {
        let b = json!({"error": {"code": "content_blocked", "stage": "post", "category": "nsfw"}});
        assert_eq!(classify_body(422, &b), OutcomeClass::BlockedPost);
        assert_eq!(classify_body(200, &json!({})), OutcomeClass::Ok);
        let labels: std::collections::HashSet<_> =
            OutcomeClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), OutcomeClass::ALL.len());
        assert!(!OutcomeClass::BlockedPre.is_error());
        assert!(OutcomeClass::GpuOom.is_error());
        let s = serde_json::to_string(&OutcomeClass::GpuOom).unwrap();
        assert_eq!(s, "\"gpu_oom\"");
    }
}
