//! One generation request from start to outcome: submit, and for async jobs poll to a terminal
//! state; classified into the harness's outcome classes.

use super::client::{Answer, ClientError, HttpClient};
use crate::outcome::{classify_body, OutcomeClass};
use crate::plan::{Mode, RequestSpec};
use hyper::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Bearer API key.
    pub api_key: Option<String>,
}

/// The JSON body of a generation request.
pub fn body(spec: &RequestSpec, prompt: &str) -> Value {
    let mut b = json!({"prompt": prompt, "seed": spec.seed});
    if let Some(t) = &spec.tier {
        b["tier"] = json!(t);
    }
    if let Some(m) = &spec.model {
        b["model"] = json!(m);
    }
    if let Some(s) = spec.steps {
        b["steps"] = json!(s);
    }
    if let Some(r) = &spec.resolution {
        b["resolution"] = json!(r);
    }
    b["mode"] = json!(match spec.mode {
        Mode::Sync => "sync",
        Mode::Async => "async",
    });
    b
}

fn classify_answer(a: &Answer) -> OutcomeClass {
    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    classify_body(a.status, &v)
}

/// The outcome of a finished async job, from its status document.
fn classify_job(status: &Value) -> Option<OutcomeClass> {
    let code = status["error"]["code"].as_str();
    match status["status"].as_str()? {
        "queued" | "running" => None,
        "succeeded" => Some(OutcomeClass::Ok),
        "blocked" => Some(OutcomeClass::BlockedPost),
        "cancelled" => Some(OutcomeClass::HttpError),
        _ => Some(match code {
            Some("deadline_exceeded") => OutcomeClass::Timeout,
            Some("gpu_oom") => OutcomeClass::GpuOom,
            Some("shutting_down")
            | Some("no_capacity")
            | Some("worker_lost")
            | Some("model_load_failed") => OutcomeClass::Overloaded,
            _ => OutcomeClass::HttpError,
        }),
    }
}

/// Runs one request to its outcome within `timeout` (measured by the caller's clock from `deadline`).
pub async fn execute(
    client: &HttpClient,
    ep: &Endpoint,
    spec: &RequestSpec,
    prompt: &str,
    deadline: Instant,
    poll: Duration,
) -> OutcomeClass {
    let run = async {
        let url = format!("{}/v1/generations", ep.base);
        let payload = serde_json::to_vec(&body(spec, prompt)).unwrap_or_default();
        let a = match client
            .send(Method::POST, &url, ep.api_key.as_deref(), Some(payload))
            .await
        {
            Ok(a) => a,
            Err(ClientError::BadUrl(_)) | Err(ClientError::Connection(_)) => {
                return OutcomeClass::ConnectionError
            }
        };
        if spec.mode == Mode::Sync || a.status != 202 {
            return classify_answer(&a);
        }
        let id = serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        let Some(id) = id else {
            return OutcomeClass::HttpError;
        };
        let status_url = format!("{}/v1/generations/{id}", ep.base);
        loop {
            tokio::time::sleep(poll).await;
            match client
                .send(Method::GET, &status_url, ep.api_key.as_deref(), None)
                .await
            {
                Ok(a) if a.status == 200 => {
                    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                    if let Some(c) = classify_job(&v) {
                        return c;
                    }
                }
                Ok(a) => return classify_answer(&a),
                Err(_) => return OutcomeClass::ConnectionError,
            }
        }
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(c) => c,
        Err(_) => OutcomeClass::Timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_documents_classify() {
        assert_eq!(classify_job(&json!({"status": "running"})), None);
        assert_eq!(
            classify_job(&json!({"status": "succeeded"})),
            Some(OutcomeClass::Ok)
        );
        assert_eq!(
            classify_job(&json!({"status": "blocked"})),
            Some(OutcomeClass::BlockedPost)
        );
        assert_eq!(
            classify_job(&json!({"status": "failed", "error": {"code": "deadline_exceeded"}})),
            Some(OutcomeClass::Timeout)
        );
        assert_eq!(
            classify_job(&json!({"status": "failed", "error": {"code": "gpu_oom"}})),
            Some(OutcomeClass::GpuOom)
        );
        assert_eq!(classify_job(&json!({"nothing": 1})), None);
    }

    #[test]
    fn bodies_carry_only_what_the_plan_chose() {
        let spec = RequestSpec {
            tier: Some("turbo".into()),
            model: None,
            steps: Some(8),
            resolution: None,
            mode: Mode::Async,
            prompt: 0,
            unsafe_prompt: false,
            seed: 5,
        };
        let b = body(&spec, "a cat");
        assert_eq!(
            b,
            json!({"prompt": "a cat", "seed": 5, "tier": "turbo", "steps": 8, "mode": "async"})
        );
    }
}
