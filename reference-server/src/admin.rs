//! The admin API (`/admin/faults`): injects, lists and reverts server-side faults, on its own
//! listener, behind a bearer token. Wire types come from [`chaos::api`].
//!
//! - `POST /admin/faults` with an [`InjectRequest`]: 201 and the [`InjectedFault`];
//! - `GET /admin/faults`: the [`FaultList`] of active faults;
//! - `DELETE /admin/faults/{id}`: reverts one, answers the faults left (404 `not_found` for an
//!   id that is not active);
//! - `DELETE /admin/faults`: reverts all, answers the (empty) list.
//!
//! Errors are `{"error": {"code", "message"}}`: 401 `unauthorized` without the right token,
//! 400 `invalid_fault` for a body that is not an inject request, 422 `invalid_fault` for a spec
//! that parses but is wrong (the message names the field), 422 `unsupported_fault` for a kind the
//! fault proxy implements. Admin requests are not counted in the public API's HTTP metrics.

use crate::api::constant_time_eq;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::faults::Rejection;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chaos::InjectRequest;
use std::sync::Arc;

/// Shared state of the admin handlers.
#[derive(Clone)]
pub struct AdminState {
    engine: Engine,
    token: Arc<str>,
}

impl AdminState {
    /// Admin state over a running engine, accepting `token`.
    pub fn new(engine: Engine, token: &str) -> AdminState {
        AdminState {
            engine,
            token: token.into(),
        }
    }
}

/// The admin router: every route behind the token check.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/faults", get(list).post(inject).delete(revert_all))
        .route("/admin/faults/{id}", delete(revert))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this admin route does not accept that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Refuses every request that does not carry `Authorization: Bearer <admin token>`.
async fn require_token(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), st.token.as_bytes()) => next.run(req).await,
        Some(_) => unauthorized("invalid admin token"),
        None => unauthorized("send Authorization: Bearer <admin token>"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"reference-server admin\""),
    );
    resp
}

/// `POST /admin/faults`.
async fn inject(State(st): State<AdminState>, body: Bytes) -> Response {
    let mut de = serde_json::Deserializer::from_slice(&body);
    let parsed: Result<InjectRequest, _> = serde_path_to_error::deserialize(&mut de);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let at = if path.is_empty() || path == "." {
                String::new()
            } else {
                format!("field `{path}`: ")
            };
            return bad_body(format!("{at}{}", e.inner()));
        }
    };
    if let Err(e) = de.end() {
        return bad_body(e.to_string());
    }
    let engine = st.engine.clone();
    let spec = req.fault;
    // Injecting may touch the engine's locks (evictions, crash flags): keep it off the runtime.
    let result = tokio::task::spawn_blocking(move || engine.inject_fault(spec)).await;
    match result {
        Ok(Ok(injected)) => (StatusCode::CREATED, Json(injected)).into_response(),
        Ok(Err(r @ Rejection::Invalid(_))) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_fault",
            r.to_string(),
        )
        .into_response(),
        Ok(Err(r @ Rejection::Unsupported(_))) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_fault",
            r.to_string(),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "injecting the fault failed",
        )
        .into_response(),
    }
}

fn bad_body(why: String) -> Response {
    ApiError::bad_request(
        "invalid_fault",
        format!("request body is not an inject request: {why}"),
    )
    .into_response()
}

/// `GET /admin/faults`.
async fn list(State(st): State<AdminState>) -> Response {
    Json(st.engine.list_faults()).into_response()
}

/// `DELETE /admin/faults/{id}`.
async fn revert(State(st): State<AdminState>, Path(id): Path<String>) -> Response {
    match st.engine.revert_fault(&id) {
        Some(left) => Json(left).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no active fault {id:?} (never injected, already reverted, or expired)"),
        )
        .into_response(),
    }
}

/// `DELETE /admin/faults`.
async fn revert_all(State(st): State<AdminState>) -> Response {
    Json(st.engine.revert_all_faults()).into_response()
}
