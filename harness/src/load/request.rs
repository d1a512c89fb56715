//! One generation request from start to outcome: submit, and for async jobs poll to a terminal
//! state; classified into the harness's outcome classes.

use super::client::{Answer, ClientError, HttpClient};
use super::{EngineConfig, ServerTimings};
use crate::outcome::{classify_body, OutcomeClass};
use crate::plan::{Mode, RequestSpec};
use hyper::Method;
use serde_json::Value;
use tokio::time::Instant;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Bearer API key.
    pub api_key: Option<String>,
    /// The submit URI, parsed once: it is on every request's path.
    submit: Result<hyper::Uri, String>,
}

impl Endpoint {
    /// An endpoint at `base` (no trailing slash) sending `api_key` as a bearer token.
    pub fn new(base: impl Into<String>, api_key: Option<String>) -> Endpoint {
        let base = base.into();
        let submit = format!("{base}/v1/generations")
            .parse()
            .map_err(|e| format!("{base}: {e}"));
        Endpoint {
            base,
            api_key,
            submit,
        }
    }

    fn generations_uri(&self) -> Result<hyper::Uri, ClientError> {
        self.submit.clone().map_err(ClientError::BadUrl)
    }
}

fn classify_answer(a: &Answer) -> OutcomeClass {
    // Success needs no body: parsing JSON only for errors keeps the hot path short.
    if (200..300).contains(&a.status) {
        return OutcomeClass::Ok;
    }
    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    classify_body(a.status, &v)
}

/// The request body, serialized straight from the spec (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct Body<'a> {
    prompt: &'a str,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'a str>,
    mode: &'static str,
}

/// The JSON body of a generation request: only what the plan chose, the rest left to the target.
pub fn body(spec: &RequestSpec, prompt: &str) -> Vec<u8> {
    let b = Body {
        prompt,
        seed: spec.seed,
        tier: spec.tier.as_deref(),
        model: spec.model.as_deref(),
        steps: spec.steps,
        resolution: spec.resolution.as_deref(),
        mode: match spec.mode {
            Mode::Sync => "sync",
            Mode::Async => "async",
        },
    };
    serde_json::to_vec(&b).unwrap_or_default()
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

/// Runs one request to its outcome by `deadline`: submit; for async jobs, poll every
/// `cfg.poll_interval` to a terminal state; with `cfg.fetch_image`, download the image of a success.
/// With `cfg.server_timings`, also returns what the final job document says the request cost.
pub async fn execute(
    client: &HttpClient,
    ep: &Endpoint,
    spec: &RequestSpec,
    prompt: &str,
    deadline: Instant,
    cfg: &EngineConfig,
) -> (OutcomeClass, Option<ServerTimings>) {
    let timings = |doc: &Value| {
        if cfg.server_timings {
            ServerTimings::of(doc)
        } else {
            None
        }
    };
    let run = async {
        let payload = body(spec, prompt);
        let a = match client
            .send_uri(
                Method::POST,
                ep.generations_uri(),
                ep.api_key.as_deref(),
                Some(payload),
            )
            .await
        {
            Ok(a) => a,
            Err(ClientError::BadUrl(_)) | Err(ClientError::Connection(_)) => {
                return (OutcomeClass::ConnectionError, None)
            }
        };
        if spec.mode == Mode::Sync || a.status != 202 {
            let class = classify_answer(&a);
            if class == OutcomeClass::Ok && (cfg.fetch_image || cfg.server_timings) {
                let doc: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                let t = timings(&doc);
                if cfg.fetch_image {
                    return (fetch_image(client, ep, &doc).await, t);
                }
                return (class, t);
            }
            return (class, None);
        }
        let id = serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        let Some(id) = id else {
            return (OutcomeClass::HttpError, None);
        };
        let status_url = format!("{}/v1/generations/{id}", ep.base);
        loop {
            tokio::time::sleep(cfg.poll_interval).await;
            match client
                .send(Method::GET, &status_url, ep.api_key.as_deref(), None)
                .await
            {
                Ok(a) if a.status == 200 => {
                    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                    match classify_job(&v) {
                        Some(OutcomeClass::Ok) if cfg.fetch_image => {
                            return (fetch_image(client, ep, &v).await, timings(&v))
                        }
                        Some(c) => return (c, timings(&v)),
                        None => {}
                    }
                }
                Ok(a) => return (classify_answer(&a), None),
                Err(_) => return (OutcomeClass::ConnectionError, None),
            }
        }
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(c) => c,
        Err(_) => (OutcomeClass::Timeout, None),
    }
}

/// The last step of a journey: download the image a finished job names (`image_url`, absolute or
/// relative to the endpoint). A success without an image, or an empty or failed download, is an
/// `http_error`: the user got nothing to show.
async fn fetch_image(client: &HttpClient, ep: &Endpoint, doc: &Value) -> OutcomeClass {
    let Some(url) = doc["image_url"].as_str() else {
        return OutcomeClass::HttpError;
    };
    let url = if url.starts_with('/') {
        format!("{}{url}", ep.base)
    } else {
        url.to_owned()
    };
    match client
        .send(Method::GET, &url, ep.api_key.as_deref(), None)
        .await
    {
        Ok(a) if a.status == 200 && !a.body.is_empty() => OutcomeClass::Ok,
        Ok(a) if a.status == 200 => OutcomeClass::HttpError,
        Ok(a) => classify_answer(&a),
        Err(_) => OutcomeClass::ConnectionError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let b: Value = serde_json::from_slice(&body(&spec, "a cat")).unwrap();
        assert_eq!(
            b,
            json!({"prompt": "a cat", "seed": 5, "tier": "turbo", "steps": 8, "mode": "async"})
        );
    }
}
