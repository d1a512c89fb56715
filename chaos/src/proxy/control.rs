//! The control API: the reference server's admin fault API (`/admin/faults`), on its own
//! listener, so that [`AdminClient`](crate::AdminClient) drives the proxy and the server alike.
//!
//! - `POST /admin/faults` with an [`InjectRequest`] -> 201 and the [`InjectedFault`](crate::InjectedFault);
//! - `GET /admin/faults` -> 200 and the [`FaultList`](crate::FaultList);
//! - `DELETE /admin/faults/{id}` -> 200 and the faults left, or 404 `not_found`;
//! - `DELETE /admin/faults` -> 200 and the faults left (none).
//!
//! Every call needs `Authorization: Bearer <token>` (else 401 `unauthorized`). A body that does
//! not parse is 400 `invalid_fault`, a spec that parses but is wrong is 422 `invalid_fault`, and a
//! server-side kind is 422 `unsupported_fault`; messages name the field.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::InjectRequest;
use crate::proxy::auth::bearer_matches;
use crate::proxy::conn::GRACE;
use crate::proxy::table::{stopping, FaultTable};
use crate::proxy::{reply, FaultRefused};

/// The largest accepted request body: a fault spec is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// The path of the collection.
const FAULTS: &str = "/admin/faults";

/// Serves the control API on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    faults: FaultTable,
    token: Arc<[u8]>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopping(&mut shutdown) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, most likely: give the others a moment to close.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let faults = faults.clone();
                let token = token.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let faults = faults.clone();
                        let token = token.clone();
                        async move { Ok::<_, Infallible>(handle(req, &faults, &token).await) }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(GRACE, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// Answers one control request.
async fn handle(
    req: Request<Incoming>,
    faults: &FaultTable,
    token: &[u8],
) -> Response<Full<Bytes>> {
    let resp = if !bearer_matches(req.headers().get(AUTHORIZATION), token) {
        let mut resp = reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        );
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"firedrill proxy control\""),
        );
        resp
    } else {
        route(req, faults).await
    };
    resp.map(Full::new)
}

async fn route(req: Request<Incoming>, faults: &FaultTable) -> Response<Bytes> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == FAULTS || path == "/admin/faults/" {
        return match method {
            Method::POST => inject(req, faults).await,
            Method::GET => reply::json(StatusCode::OK, &faults.list()),
            Method::DELETE => reply::json(StatusCode::OK, &faults.revert_all()),
            _ => not_allowed(&method, &path),
        };
    }
    if let Some(id) = path.strip_prefix("/admin/faults/") {
        if !id.is_empty() && !id.contains('/') {
            return match method {
                Method::DELETE => match faults.revert(id) {
                    Ok(left) => reply::json(StatusCode::OK, &left),
                    Err(e) => refused(&e),
                },
                _ => not_allowed(&method, &path),
            };
        }
    }
    reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no such resource: {path} (the control API serves {FAULTS})"),
    )
}

async fn inject(req: Request<Incoming>, faults: &FaultTable) -> Response<Bytes> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_fault",
                &format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
            )
        }
    };
    let parsed: InjectRequest = match parse(&bytes) {
        Ok(r) => r,
        Err(message) => return reply::error(StatusCode::BAD_REQUEST, "invalid_fault", &message),
    };
    match faults.inject(parsed.fault) {
        Ok(injected) => reply::json(StatusCode::CREATED, &injected),
        Err(e) => refused(&e),
    }
}

/// Parses the body; the error names the field where parsing stopped.
fn parse(bytes: &[u8]) -> Result<InjectRequest, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: InjectRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("the body is not an InjectRequest: {}", e.inner())
        } else {
            format!("field `{path}`: {}", e.inner())
        }
    })?;
    de.end()
        .map_err(|e| format!("trailing data after the InjectRequest: {e}"))?;
    Ok(parsed)
}

fn refused(e: &FaultRefused) -> Response<Bytes> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    reply::error(status, e.code(), &e.to_string())
}

fn not_allowed(method: &Method, path: &str) -> Response<Bytes> {
    reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not allowed on {path}"),
    )
}
