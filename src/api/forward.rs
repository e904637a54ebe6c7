//! In a cluster, a request for a session another host serves is forwarded
//! to that host's API (`[cluster] api_url`, which each host publishes in
//! `cluster_nodes` as it starts), so the ERP, or a load balancer in front
//! of the hosts, may call any host: sends, lookups, reconnects, QR codes
//! and dead letters answer wherever they are asked, as the serving host
//! answers them; a forwarded answer has `X-Wabridge-Node` naming that host.
//! While no host serves a session the cluster has (a takeover under way),
//! the answer is 503 with `Retry-After`, not a 404 the ERP could take for
//! good.
//!
//! A forwarded request carries `X-Wabridge-Forwarded-By`, and a host
//! answers such a request itself, whatever it serves: two hosts whose
//! leases moved while the request was on its way cannot bounce it between
//! them. The caller's `Authorization` goes along: the hosts of a cluster
//! share `api.token`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::cluster::store::Published;
use crate::paths::SessionId;

/// Set on a request one host forwards to another.
pub const FORWARDED_BY: &str = "x-wabridge-forwarded-by";
/// Set on an answer: the host that served the request's session.
pub const NODE: &str = "x-wabridge-node";

/// How long the serving host may take to answer (a media send uploads
/// first).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(180);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The request's headers that go along; the rest describe this hop.
const PASSED_ON: [header::HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

/// The middleware of the routes that name one session, in their path
/// (`/sessions/{id}/…`) or in their JSON body (`sessionId`). The body is
/// read here (up to `body_limit`), so it runs inside a send's turn.
pub async fn to_owner(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = &state.cluster else {
        return next.run(request).await;
    };
    if request.headers().contains_key(FORWARDED_BY) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limit = body_limit(parts.uri.path());
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the request body: over {limit} bytes, or cut off"),
            )
            .into_response();
        }
    };
    let here = move |parts, body: Bytes| next.run(Request::from_parts(parts, Body::from(body)));
    // A request without a valid session id gets the handler's own answer.
    let Some(id) = session_named(parts.uri.path(), &body) else {
        return here(parts, body).await;
    };
    if state.engine.watch(&id).is_some() {
        return here(parts, body).await;
    }
    let owner = match cluster.leases.owner_api(&id).await {
        Ok(Some((node, _))) if node == cluster.node => return here(parts, body).await,
        Ok(Some(owner)) => owner,
        // No host serves it now: `unserved` says whether to wait.
        Ok(None) => return unserved(cluster, &id, here(parts, body)).await,
        Err(e) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read which host serves {id} from the cluster's database: {e:#}"),
            )
            .into_response();
        }
    };
    match owner {
        (node, Published::At(api_url)) => {
            forward(&cluster.node, &node, &api_url, &parts, body).await
        }
        (node, Published::NotYet) => retry_soon(format!(
            "session {id} is served by {node}, which has not published its API address yet (it is starting)"
        )),
        (node, Published::Nothing) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "session {id} is served by {node}, which publishes no API address to forward to \
                 (set [cluster] api_url in its config); call that host"
            ),
        )
        .into_response(),
    }
}

/// A session no host serves right now: 503 with `Retry-After` when the
/// cluster has it (a takeover is under way: the ERP should send again in a
/// moment, not give up); otherwise the handler's own answer (a 404 for an
/// id nobody knows, as on one host).
async fn unserved(
    cluster: &crate::cluster::control::ClusterControl,
    id: &SessionId,
    handler: impl std::future::Future<Output = Response>,
) -> Response {
    if !matches!(cluster.leases.has_session(id).await, Ok(true)) {
        return handler.await;
    }
    retry_soon(format!(
        "no host serves {id} at this moment (it is being taken over)"
    ))
}

/// 503 with `Retry-After`: `why`, and that it passes by itself.
fn retry_soon(why: String) -> Response {
    let mut answer = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{why}; try again in a few seconds"),
    )
    .into_response();
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    answer
}

/// Sends the request on to `node` at `api_url` and hands back its answer.
async fn forward(
    from: &str,
    node: &str,
    api_url: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let mut request = client()
        .request(parts.method.clone(), format!("{api_url}{path}"))
        .header(FORWARDED_BY, from)
        .body(body);
    for name in PASSED_ON {
        if let Some(value) = parts.headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        // Not reached: nothing was done there.
        Err(e) if e.is_connect() => {
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the session is served by {node}, which cannot be reached at {api_url}: {}",
                    with_causes(e)
                ),
            )
            .into_response();
        }
        // Reached, and then silent: a send may have gone out there.
        Err(e) => return no_answer(node, e),
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(e) => return no_answer(node, e),
    };
    let mut headers = HeaderMap::new();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if let Ok(node) = HeaderValue::from_str(node) {
        headers.insert(NODE, node);
    }
    (status, headers, body).into_response()
}

/// One client for every forward (its connections are reused). It follows
/// no redirect: the request goes to the address the host published.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with these settings always builds")
    })
}

/// The serving host took the request and gave no (whole) answer: 504, and
/// the caller is told the request may have been carried out (a send
/// retried blindly could reach the customer twice).
fn no_answer(node: &str, error: reqwest::Error) -> Response {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "{node}, which serves the session, took the request but gave no answer ({}); \
             it may have been carried out: check before sending again",
            with_causes(error)
        ),
    )
    .into_response()
}

/// reqwest's error and what is under it, without its URL (our sentence
/// names the host already).
fn with_causes(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut layer = std::error::Error::source(&error);
    while let Some(inner) = layer {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        layer = inner.source();
    }
    text
}

/// The largest body a route takes (as its `DefaultBodyLimit`).
fn body_limit(path: &str) -> usize {
    if path == "/sessions/send" {
        super::send::SEND_BODY_LIMIT
    } else {
        super::BODY_LIMIT
    }
}

/// The session a request is about: `/sessions/{id}/…`, else the body's
/// `sessionId`.
fn session_named(path: &str, body: &[u8]) -> Option<SessionId> {
    #[derive(Deserialize)]
    struct Named {
        #[serde(rename = "sessionId")]
        session_id: Option<String>,
    }
    let in_path = path
        .strip_prefix("/sessions/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(id, _)| id.to_string());
    let raw = match in_path {
        Some(raw) => raw,
        None => serde_json::from_slice::<Named>(body).ok()?.session_id?,
    };
    SessionId::parse(&raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_comes_from_the_path_or_the_body() {
        let id =
            |path: &str, body: &str| session_named(path, body.as_bytes()).map(|s| s.to_string());
        assert_eq!(id("/sessions/shop/reconnect", ""), Some("shop".into()));
        assert_eq!(
            id("/sessions/shop/dead-letters/wab-1/replay", ""),
            Some("shop".into())
        );
        assert_eq!(
            id(
                "/sessions/send",
                r#"{"sessionId":"shop","receiver":"91","message":"hi"}"#
            ),
            Some("shop".into())
        );
        assert_eq!(id("/sessions/send", r#"{"receiver":"91"}"#), None);
        assert_eq!(id("/sessions/send", "not json"), None);
        assert_eq!(
            id("/sessions/..%2F..%2Fetc/qr", ""),
            None,
            "hostile ids stay here"
        );
    }
}
