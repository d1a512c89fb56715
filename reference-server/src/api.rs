//! The HTTP API (axum): the gateway (auth, rate limit, validation) and prompt processing
//! (pre-generation safety check, tokenization, text encoding) in front of the engine's queue,
//! job status and cancellation, image download, health, readiness and `/metrics`.

use crate::compute::tokenize;
use crate::config::{ApiKeyConfig, Config};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::jobs::{Job, JobContext, JobSpec, JobState, JobStatus};
use crate::ratelimit::TokenBucket;
use crate::safety::prompt::{Category, PromptClassifier};
use crate::telemetry::{exported_ids, hash_id, random_hex, TraceParent};
use crate::types::{Resolution, Tier};
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chaos::{SafetyStage, Stage};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info, info_span, warn, Instrument};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    cfg: Arc<Config>,
    prompt_check: Arc<PromptClassifier>,
    buckets: Arc<Mutex<HashMap<String, TokenBucket>>>,
}

impl AppState {
    /// State over a running engine.
    pub fn new(engine: Engine) -> Self {
        let cfg = engine.config().clone();
        AppState {
            engine,
            cfg,
            prompt_check: Arc::new(PromptClassifier::new(&[])),
            buckets: Arc::default(),
        }
    }
}

/// The router with every route and the RED-metrics middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/generations", axum::routing::post(create_generation))
        .route(
            "/v1/generations/{id}",
            get(get_generation).delete(cancel_generation),
        )
        .route("/v1/images/{file}", get(get_image))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), red_metrics))
        .with_state(state)
}

/// HTTP RED metrics of seed 004: requests by method, route and status; duration; in flight.
async fn red_metrics(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let m = st.engine.metrics().clone();
    m.active_requests.inc();
    let started = Instant::now();
    let resp = next.run(req).await;
    m.active_requests.dec();
    m.http_requests_total
        .with_label_values(&[&method, &endpoint, resp.status().as_str()])
        .inc();
    m.http_request_duration_seconds
        .with_label_values(&[&method, &endpoint])
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.engine.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no worker can take work",
        )
        .into_response()
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    st.engine.refresh_gauges();
    let body = st.engine.metrics().encode();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The authenticated caller.
struct Caller<'a> {
    key: &'a ApiKeyConfig,
}

fn authenticate<'a>(cfg: &'a Config, headers: &HeaderMap) -> Result<Caller<'a>, ApiError> {
    let unauth = |m: &str| {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
        e.details = Some(json!({"hint": "send Authorization: Bearer <api key>"}));
        e
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauth("missing Authorization header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauth("Authorization must be `Bearer <api key>`"))?;
    // Compare every key in full so timing does not reveal a matching prefix.
    let key = cfg
        .api_keys
        .iter()
        .fold(None, |found, k| {
            if constant_time_eq(k.key.as_bytes(), token.as_bytes()) {
                Some(k)
            } else {
                found
            }
        })
        .ok_or_else(|| unauth("invalid API key"))?;
    Ok(Caller { key })
}

/// Equality that takes the same time wherever the inputs differ (for secrets).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body of `POST /v1/generations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationRequest {
    prompt: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    steps: Option<i64>,
    #[serde(default)]
    resolution: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    mode: Option<String>,
    /// The end user the caller acts for (hashed before it is logged).
    #[serde(default)]
    user: Option<String>,
}

/// A request that passed validation.
struct Valid {
    prompt: String,
    tier: Tier,
    model: String,
    steps: u32,
    resolution: Resolution,
    seed: u64,
    sync: bool,
    user: String,
}

fn validate(cfg: &Config, caller: &Caller<'_>, r: GenerationRequest) -> Result<Valid, ApiError> {
    let tier = match r.tier.as_deref() {
        None => *caller
            .key
            .tiers
            .first()
            .expect("validated: keys have a tier"),
        Some(t) => Tier::parse(t).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_tier",
                format!("unknown tier {t:?}; expected turbo, fast or relax"),
            )
        })?,
    };
    if !caller.key.tiers.contains(&tier) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "tier_not_allowed",
            format!("this API key is not entitled to the {tier} tier"),
        ));
    }
    if r.prompt.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_prompt",
            "prompt must not be empty",
        ));
    }
    let chars = r.prompt.chars().count();
    if chars > cfg.limits.max_prompt_chars {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "prompt_too_long",
            format!(
                "prompt has {chars} characters; the limit is {}",
                cfg.limits.max_prompt_chars
            ),
        ));
    }
    let model = r.model.unwrap_or_else(|| cfg.default_model.clone());
    if cfg.model(&model).is_none() {
        return Err(ApiError::bad_request(
            "unknown_model",
            format!(
                "unknown model {model:?}; available: {}",
                cfg.model_names().join(", ")
            ),
        ));
    }
    let l = &cfg.limits;
    let steps = r.steps.unwrap_or(cfg.tiers.get(tier).default_steps as i64);
    if steps < l.min_steps as i64 || steps > l.max_steps as i64 {
        return Err(ApiError::bad_request(
            "invalid_steps",
            format!(
                "steps must be within {}..={}, got {steps}",
                l.min_steps, l.max_steps
            ),
        ));
    }
    let resolution = match r.resolution.as_deref() {
        None => cfg.default_resolution,
        Some(s) => Resolution::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_resolution",
                format!("resolution must be WxH such as 256x256, got {s:?}"),
            )
        })?,
    };
    cfg.check_resolution(resolution)
        .map_err(|m| ApiError::bad_request("invalid_resolution", format!("{resolution}: {m}")))?;
    let sync = match r.mode.as_deref() {
        None | Some("sync") => true,
        Some("async") => false,
        Some(m) => {
            return Err(ApiError::bad_request(
                "invalid_mode",
                format!("mode must be sync or async, got {m:?}"),
            ))
        }
    };
    Ok(Valid {
        prompt: r.prompt,
        tier,
        model,
        steps: steps as u32,
        resolution,
        seed: r.seed.unwrap_or_else(rand::random),
        sync,
        user: r.user.unwrap_or_else(|| caller.key.user.clone()),
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn prompt_key(user: &str, prompt: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (user, prompt).hash(&mut h);
    h.finish()
}

/// `POST /v1/generations`.
async fn create_generation(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let received = Instant::now();
    let root = info_span!(
        "generation_request",
        otel.name = "generation_request",
        request_id = tracing::field::Empty,
        tier = tracing::field::Empty,
        model = tracing::field::Empty
    );
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    if let Some(p) = &parent {
        p.adopt(&root);
    }
    let exported = exported_ids(&root);
    let span_id = exported
        .as_ref()
        .map_or_else(|| random_hex(8), |e| e.1.clone());
    let trace_id = exported
        .map(|e| e.0)
        .or_else(|| parent.as_ref().map(|p| p.trace_id.clone()))
        .unwrap_or_else(|| random_hex(16));
    let id = format!("gen-{}", random_hex(8));
    root.record("request_id", id.as_str());
    let mut resp = submit(
        &st,
        &headers,
        body,
        received,
        root.clone(),
        (&trace_id, &span_id),
        id,
    )
    .instrument(root)
    .await;
    if let Ok(v) = HeaderValue::from_str(&format!("00-{trace_id}-{span_id}-01")) {
        resp.headers_mut().insert("traceparent", v);
    }
    resp
}

async fn submit(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    received: Instant,
    root: tracing::Span,
    (trace_id, span_id): (&str, &str),
    id: String,
) -> Response {
    let cfg = &st.cfg;
    let m = st.engine.metrics().clone();

    // gateway: auth, rate limit, validation.
    let gateway = info_span!(
        "gateway",
        user_tier = tracing::field::Empty,
        rate_limit_remaining = tracing::field::Empty
    );
    let gw = gateway.enter();
    let caller = {
        let _s = info_span!("auth_check").entered();
        match authenticate(cfg, headers) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        }
    };
    if !is_json(headers) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request as Content-Type: application/json",
        )
        .into_response();
    }
    drop(gw);
    let bytes: Bytes = match axum::body::to_bytes(body, cfg.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {} bytes", cfg.limits.max_body_bytes),
            )
            .into_response()
        }
    };
    let gw = gateway.enter();
    let parsed: GenerationRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let code = if e.is_syntax() || e.is_eof() {
                "invalid_json"
            } else {
                "invalid_request"
            };
            return ApiError::bad_request(code, format!("request body: {e}")).into_response();
        }
    };
    let v = match validate(cfg, &caller, parsed) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    root.record("tier", v.tier.as_str());
    root.record("model", v.model.as_str());
    gateway.record("user_tier", v.tier.as_str());
    let (tier, model) = (v.tier.as_str(), v.model.clone());
    let limited = {
        let _s = info_span!("rate_limit_check").entered();
        let now = Instant::now();
        let mut buckets = st.buckets.lock().expect("bucket lock");
        let b = buckets.entry(caller.key.key.clone()).or_insert_with(|| {
            TokenBucket::new(caller.key.rate_limit_per_second, caller.key.burst, now)
        });
        let r = b.take(now);
        gateway.record("rate_limit_remaining", b.remaining());
        r
    };
    st.engine.note_request(prompt_key(&v.user, &v.prompt));
    if let Err(wait) = limited {
        m.requests_total
            .with_label_values(&[tier, "rate_limited", &model])
            .inc();
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded for this API key",
        )
        .retry_after(wait.as_secs_f64().ceil() as u64)
        .into_response();
    }
    drop(info_span!("request_routing"));
    drop(gw);
    let gateway_took = received.elapsed();
    drop(gateway);

    // prompt_processing: parsing, pre-generation safety check, tokenization, text encoding.
    let pp_start = Instant::now();
    let pp = info_span!(
        "prompt_processing",
        prompt_length = v.prompt.chars().count(),
        encoder_types = tracing::field::Empty
    );
    let user_id_hash = hash_id(&v.user);
    let organization_id_hash = hash_id(&caller.key.user);
    let t = Instant::now();
    let mut verdict = {
        let _p = pp.enter();
        drop(info_span!("prompt_parsing"));
        let _s = info_span!("safety_pre_check").entered();
        st.prompt_check.check(&v.prompt)
    };
    // Injected latency in the safety stage (outside the span guards, which cannot cross .await).
    let delay = st.engine.fault_stage_delay(Stage::Safety);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    m.safety_check_time.observe_ms(&["pre"], ms);
    m.safety_classifier_latency
        .observe_ms(&["prompt_classifier"], ms);
    // A false-positive storm: the prompt classifier also flags a share of passing prompts.
    if verdict.blocked.is_none()
        && crate::faults::fires(
            st.engine.fault_extra_block_fraction(SafetyStage::Pre),
            rand::random::<f64>(),
        )
    {
        verdict.blocked = Category::parse(crate::faults::false_positive_category(&id));
        verdict.matched_rule = Some("injected_safety_spike");
    }
    if let Some(category) = verdict.blocked {
        let category = category.as_str();
        m.safety_blocks_total
            .with_label_values(&["pre", category, tier])
            .inc();
        m.requests_total
            .with_label_values(&[tier, "blocked", &model])
            .inc();
        st.engine.note_pre_block();
        let event = "prompt_blocked";
        if category == "csam" {
            m.csam_detections_total.inc();
            error!(event = "csam_detected", severity = "CRITICAL", request_id = %id, trace_id, span_id, stage = "pre", user_context.user_id_hash = %user_id_hash, user_context.tier = tier, user_context.organization_id_hash = %organization_id_hash);
        }
        info!(event, request_id = %id, trace_id, span_id, stage = "pre", category, rule = verdict.matched_rule.unwrap_or(""), safety.prompt_passed = false, user_context.user_id_hash = %user_id_hash, user_context.tier = tier, user_context.organization_id_hash = %organization_id_hash);
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "content_blocked",
            "the prompt was blocked by the safety check",
        )
        .with_details(json!({"stage": "pre", "category": category, "id": id}))
        .into_response();
    }
    let encoder = st
        .engine
        .encoder(&v.model)
        .expect("validated model has an encoder");
    let profile = encoder.profile().clone();
    let tokens = {
        let _p = pp.enter();
        let _s = info_span!("tokenization").entered();
        tokenize(&v.prompt, profile.vocab, profile.max_tokens)
    };
    pp.record("encoder_types", profile.encoders.join(",").as_str());
    let pp2 = pp.clone();
    let encode_delay = st.engine.fault_stage_delay(Stage::TextEncoding);
    let encode_start = Instant::now();
    let encoded = tokio::task::spawn_blocking(move || {
        let _p = pp2.enter();
        let out = encoder.encode_text(&tokens);
        if !encode_delay.is_zero() {
            std::thread::sleep(encode_delay);
        }
        if let Ok((_, parts)) = &out {
            for (name, took) in parts {
                let ms = took.as_secs_f64() * 1e3;
                match name.as_str() {
                    "clip" => drop(info_span!("clip_encoding", duration_ms = ms)),
                    "t5" => drop(info_span!("t5_encoding", duration_ms = ms)),
                    other => drop(info_span!(
                        "text_encoding",
                        encoder = other,
                        duration_ms = ms
                    )),
                }
            }
        }
        out
    })
    .await;
    m.text_encoding_seconds
        .with_label_values(&[&model])
        .observe(encode_start.elapsed().as_secs_f64());
    let cond = match encoded {
        Ok(Ok((cond, _))) => cond,
        Ok(Err(e)) => {
            error!(event = "text_encoding_failed", request_id = %id, error = %format!("{e:#}"));
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "text encoding failed",
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "text encoding failed",
            )
            .into_response();
        }
    };
    drop(pp);
    let pp_took = pp_start.elapsed();

    let sync = v.sync;
    let job = Arc::new(Job::new(
        id.clone(),
        JobSpec {
            tier: v.tier,
            model: v.model.clone(),
            steps: v.steps,
            resolution: v.resolution,
            seed: v.seed,
            cond,
            scheduler: "euler",
        },
        JobContext {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            user_id_hash: user_id_hash.clone(),
            organization_id_hash: organization_id_hash.clone(),
        },
        root.clone(),
        received,
        cfg.deadline(v.tier),
    ));
    job.record_timing("gateway", gateway_took);
    job.record_timing("prompt_processing", pp_took);
    {
        let _e = info_span!("enqueue").entered();
        if let Err(e) = st.engine.submit(job.clone()) {
            let status = if e.code == "queue_full" {
                "rejected"
            } else {
                "failed"
            };
            m.requests_total
                .with_label_values(&[tier, status, &model])
                .inc();
            warn!(event = "request_rejected", request_id = %id, trace_id, span_id, code = e.code, user_context.tier = tier);
            return e.into_response();
        }
    }
    info!(event = "request_received", request_id = %id, trace_id, span_id, mode = if sync { "sync" } else { "async" }, config.model = %model, config.steps = v.steps, config.resolution = %v.resolution, safety.prompt_passed = true, user_context.user_id_hash = %user_id_hash, user_context.tier = tier, user_context.organization_id_hash = %organization_id_hash);
    if !sync {
        let mut body = serde_json::to_value(job.status()).unwrap_or_default();
        body["status_url"] = json!(format!("/v1/generations/{id}"));
        let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
        if let Ok(loc) = HeaderValue::from_str(&format!("/v1/generations/{id}")) {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        return resp;
    }
    // Sync: wait for a terminal state; a client that hangs up cancels its job.
    let guard = CancelOnDrop {
        engine: st.engine.clone(),
        job: Some(job.clone()),
    };
    let mut rx = job.subscribe();
    let limit = cfg.deadline(v.tier) + Duration::from_secs(5);
    let waited = tokio::time::timeout(limit, rx.wait_for(|s| s.status.is_terminal())).await;
    drop(guard);
    match waited {
        Ok(Ok(_)) => status_response(&job.status()),
        _ => {
            // The engine enforces deadlines; this is a backstop.
            st.engine.cancel(&job.id);
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                "the job did not finish in time",
            )
            .into_response()
        }
    }
}

/// Cancels a sync job whose client went away before it finished.
struct CancelOnDrop {
    engine: Engine,
    job: Option<Arc<Job>>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            if !job.is_terminal() {
                self.engine.cancel(&job.id);
            }
        }
    }
}

/// The response for a terminal job: 200 with the status, or its error with the fitting code.
fn status_response(s: &JobStatus) -> Response {
    let err = |status: StatusCode| {
        let mut body = json!({"error": s.error.clone().unwrap_or_else(|| json!({"code": "failed", "message": "the job failed"}))});
        body["error"]["id"] = json!(s.id);
        (status, Json(body)).into_response()
    };
    match s.status {
        JobState::Succeeded => Json(s).into_response(),
        JobState::Blocked => err(StatusCode::UNPROCESSABLE_ENTITY),
        JobState::Cancelled => {
            let e = ApiError::new(StatusCode::CONFLICT, "cancelled", "the job was cancelled")
                .with_details(json!({"id": s.id}));
            e.into_response()
        }
        JobState::Failed => {
            let code = s
                .error
                .as_ref()
                .and_then(|e| e["code"].as_str())
                .unwrap_or("");
            let mut resp = err(failure_status(code));
            if let Some(secs) = s
                .error
                .as_ref()
                .and_then(|e| e["retry_after_seconds"].as_u64())
            {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        JobState::Queued | JobState::Running => Json(s).into_response(),
    }
}

/// HTTP status of a job failure code.
fn failure_status(code: &str) -> StatusCode {
    match code {
        "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
        "gpu_oom" | "worker_lost" | "model_load_failed" | "shutting_down" | "no_capacity" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn find_job(st: &AppState, headers: &HeaderMap, id: &str) -> Result<Arc<Job>, ApiError> {
    let caller = authenticate(&st.cfg, headers)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no generation {id:?}"),
        )
    };
    let job = st.engine.jobs().get(id).ok_or_else(not_found)?;
    // Jobs are visible only to the key holder that created them.
    if job.ctx.organization_id_hash != hash_id(&caller.key.user) {
        return Err(not_found());
    }
    Ok(job)
}

/// `GET /v1/generations/{id}`.
async fn get_generation(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match find_job(&st, &headers, &id) {
        Ok(job) => {
            let mut body = serde_json::to_value(job.status()).unwrap_or_default();
            if let Some(pos) = st.engine.queue_position(&id) {
                body["queue_position"] = json!(pos);
            }
            Json(body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/generations/{id}`.
async fn cancel_generation(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let job = match find_job(&st, &headers, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    if job.is_terminal() {
        let s = job.status();
        return ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("generation {id} already ended as {:?}", s.status).to_lowercase(),
        )
        .into_response();
    }
    match st.engine.cancel(&id) {
        Some(s) => Json(s).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no generation {id:?}"),
        )
        .into_response(),
    }
}

/// `GET /v1/images/{id}.png`.
async fn get_image(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let Some(id) = file.strip_suffix(".png") else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "images are served as {id}.png",
        )
        .into_response();
    };
    if let Err(e) = find_job(&st, &headers, id) {
        return e.into_response();
    }
    match st.engine.store().get(id) {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no image for {id:?} (not finished, blocked or failed)"),
        )
        .into_response(),
    }
}
