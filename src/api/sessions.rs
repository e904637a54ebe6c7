//! `/sessions…` routes: the old bridge's start/status/info/delete, and ours
//! (list, reconnect, QR image, dead letters).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, cluster_views};
use crate::cluster::store::AddError;
use crate::engine::{Command, SessionSnapshot, SessionState};
use crate::paths::SessionId;
use crate::qr::QrMatrix;

type Shared = State<Arc<ApiState>>;

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    Ok(SessionId::parse(raw)?)
}

fn snapshot(state: &ApiState, id: &SessionId) -> Result<SessionSnapshot, ApiError> {
    state.engine.snapshot(id).ok_or_else(ApiError::not_found)
}

/// The current QR code as the old bridge sent it: a PNG data URL.
fn qr_data_url(session: &SessionSnapshot) -> Option<String> {
    let SessionState::QrScanRequired(offer) = &session.state else {
        return None;
    };
    let png = QrMatrix::encode(&offer.payload).ok()?.to_png(8);
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    session_id: Option<String>,
    webhook_url: Option<String>,
    webhook_token: Option<String>,
    /// Ours, with `[nats]`: the session's subject prefix ("" turns NATS
    /// off for it).
    nats_subject: Option<String>,
    /// Ours: turn down calls to the number (unset: unchanged)...
    reject_calls: Option<bool>,
    /// ... and write this to the caller.
    call_reply: Option<String>,
    /// Ours: how its webhook carries media, `base64` or `url` (unset:
    /// unchanged).
    media: Option<crate::engine::backend::MediaMode>,
}

/// `POST /sessions/start`: starts (or finds) the session and waits, like
/// the old bridge, for a QR code or a connection.
pub async fn start(
    State(state): Shared,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let raw = request
        .session_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("sessionId is required"))?;
    let id = session_id(&raw)?;
    if let Some(url) = &request.webhook_url
        && !crate::session_files::is_webhook_url(url)
    {
        return Err(ApiError::bad_request(
            "webhookUrl must be an http:// or https:// URL",
        ));
    }
    if let Some(prefix) = request.nats_subject.as_deref().filter(|p| !p.is_empty()) {
        crate::nats::subject::check_prefix(prefix)
            .map_err(|e| ApiError::bad_request(format!("natsSubject {e}")))?;
    }
    if request.call_reply.is_some() && request.reject_calls != Some(true) {
        return Err(ApiError::bad_request(
            "callReply is sent only after a rejected call: set rejectCalls to true too",
        ));
    }
    if state.cluster.is_some() && request.nats_subject.is_some() {
        return Err(ApiError::bad_request(format!(
            "natsSubject: {}",
            crate::nats::subject::NO_OWN_PREFIX_IN_CLUSTER
        )));
    }
    if state.cluster.is_some() && request.media.is_some() {
        return Err(ApiError::bad_request(
            "media with [cluster] is not supported yet",
        ));
    }
    let deadline = tokio::time::Instant::now() + state.start_wait;
    let (started, mut watch) = match &state.cluster {
        None => {
            if request.nats_subject.is_some() {
                state
                    .engine
                    .set_nats_subject(&id, request.nats_subject.clone())?;
            }
            if let Some(mode) = request.media {
                state.engine.set_media_mode(&id, mode)?;
            }
            if let Some(reject) = request.reject_calls {
                state
                    .engine
                    .set_call_policy(&id, reject, request.call_reply.clone())?;
            }
            let started =
                state
                    .engine
                    .add_session(&id, request.webhook_url, request.webhook_token)?;
            let watch = state.engine.watch(&id).ok_or_else(ApiError::not_found)?;
            (started, watch)
        }
        Some(cluster) => match cluster_start(&state, cluster, &id, &request, deadline).await? {
            Ok(watch) => (false, watch),
            // Another host holds its lease: it runs (and shows its QR) there.
            Err(node) => return Ok(Json(json!({ "status": "Connecting", "node": node }))),
        },
    };
    // An existing session that stopped (logged out, halted) starts again; a
    // running one keeps its single socket.
    let current = watch.borrow().state.clone();
    if !started && matches!(current, SessionState::LoggedOut | SessionState::Halted(_)) {
        state.engine.command(&id, Command::ReconnectNow).await?;
    }
    let settled = tokio::time::timeout_at(
        deadline,
        watch.wait_for(|s| {
            matches!(
                s.state,
                SessionState::Connected | SessionState::QrScanRequired(_)
            )
        }),
    )
    .await;
    let session = match settled {
        Ok(Ok(session)) => session.clone(),
        _ => snapshot(&state, &id)?,
    };
    Ok(Json(match qr_data_url(&session) {
        Some(qr) => json!({ "qr": qr, "status": session.state.api_status() }),
        None => json!({ "status": session.state.api_status() }),
    }))
}

/// In a cluster: adds the session to the shared list (any host may), asks
/// this host's lease manager to take it now, and waits until `deadline`
/// for it to run here. `Err(node)` when another host holds its lease
/// (`None`: nobody took it in time).
async fn cluster_start(
    state: &ApiState,
    cluster: &crate::cluster::control::ClusterControl,
    id: &SessionId,
    request: &StartRequest,
    deadline: tokio::time::Instant,
) -> Result<Result<tokio::sync::watch::Receiver<SessionSnapshot>, Option<String>>, ApiError> {
    // The cluster's row first, on any host: it clears the "logged out"
    // mark and carries the webhook to whichever host serves the session
    // (at its next renewal when that is another host).
    cluster
        .leases
        .add_session(
            id,
            request.webhook_url.as_deref(),
            request.webhook_token.as_deref(),
        )
        .await
        .map_err(|e| match e {
            AddError::BeingDeleted => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AddError::Database(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot save the session in the cluster: {e:#}"),
            ),
        })?;
    if let Some(reject) = request.reject_calls {
        cluster
            .leases
            .set_call_policy(id, reject, request.call_reply.as_deref())
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot save the call settings in the cluster: {e:#}"),
                )
            })?;
    }
    if state.engine.watch(id).is_none() {
        (cluster.take_now)();
    } else {
        // Served here: the running session at once.
        if request.webhook_url.is_some() || request.webhook_token.is_some() {
            state.engine.add_session(
                id,
                request.webhook_url.clone(),
                request.webhook_token.clone(),
            )?;
        }
        if let Some(reject) = request.reject_calls {
            state
                .engine
                .set_call_policy(id, reject, request.call_reply.clone())?;
        }
    }
    loop {
        if let Some(watch) = state.engine.watch(id) {
            return Ok(Ok(watch));
        }
        let owner = cluster.leases.owner(id).await.ok().flatten();
        if let Some(node) = owner.filter(|node| *node != cluster.node) {
            return Ok(Err(Some(node)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Err(None));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `GET /sessions/{id}/status`; in a cluster, a session another host
/// serves answers with its reported state and node (and `"remote": true`).
pub async fn status(
    State(state): Shared,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    if let Some((session, view)) = cluster_views::remote(&state, &id) {
        let now = crate::engine::now();
        let full = cluster_views::remote_session_json(&session, &view, now);
        return Ok(Json(json!({
            "status": full["status"],
            "node": full["node"],
            "remote": true,
            "stale": full["stale"],
            "staleReason": full["staleReason"],
        })));
    }
    let session = snapshot(&state, &id)?;
    Ok(Json(json!({ "status": session.state.api_status() })))
}

/// `GET /sessions/{id}`; a session another host serves has no QR here
/// (it shows on that host), and says which node serves it.
pub async fn info(State(state): Shared, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    if let Some((session, view)) = cluster_views::remote(&state, &id) {
        let now = crate::engine::now();
        let full = cluster_views::remote_session_json(&session, &view, now);
        return Ok(Json(json!({
            "status": full["status"],
            "qr": null,
            "hasWebhook": full["hasWebhook"],
            "node": full["node"],
            "remote": true,
            "stale": full["stale"],
            "staleReason": full["staleReason"],
        })));
    }
    let session = snapshot(&state, &id)?;
    Ok(Json(json!({
        "status": session.state.api_status(),
        "qr": qr_data_url(&session),
        "hasWebhook": session.has_webhook,
    })))
}

/// `DELETE /sessions/{id}`: logout and delete the credentials.
pub async fn delete(State(state): Shared, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let id = session_id(&raw)?;
    let served_here = state.engine.watch(&id).is_some();
    match &state.cluster {
        Some(cluster) if !served_here => return cluster_delete(&state, cluster, &id).await,
        _ => {}
    }
    state.engine.delete_session(&id).await?;
    // The customers' files it received go with it, not weeks later by age.
    if let Some(media) = state.media.clone() {
        let session = id.to_string();
        let forgotten = tokio::task::spawn_blocking(move || media.forget_session(&session)).await;
        if let Ok(n @ 1..) = forgotten {
            tracing::info!("session {id}: its {n} media file(s) removed");
        }
    }
    // In a cluster its credentials and its place in the list are in the
    // database: gone too, so no host takes it again.
    if let Some(cluster) = &state.cluster {
        cluster.leases.forget(&id).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("logged out, but cannot remove the session from the cluster: {e:#}"),
            )
        })?;
    }
    Ok(Json(json!({ "status": "logged out" })).into_response())
}

/// DELETE of a session another host serves (or none does yet): the request
/// goes into the cluster's row, the serving host carries it out at its next
/// renewal (a host takes an unserved one first), and this waits, like a
/// local DELETE, until the session is gone: `202` with the serving `node`
/// when that takes longer than a start may wait.
async fn cluster_delete(
    state: &ApiState,
    cluster: &crate::cluster::control::ClusterControl,
    id: &SessionId,
) -> Result<Response, ApiError> {
    let unavailable = |e: anyhow::Error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot reach the cluster's database: {e:#}"),
        )
    };
    if !cluster
        .leases
        .request_delete(id)
        .await
        .map_err(unavailable)?
    {
        return Err(ApiError::not_found());
    }
    (cluster.take_now)();
    let deadline = tokio::time::Instant::now() + state.start_wait;
    loop {
        if !cluster.leases.has_session(id).await.map_err(unavailable)? {
            return Ok(Json(json!({ "status": "logged out" })).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            let node = cluster.leases.owner(id).await.ok().flatten();
            let body = json!({
                "status": "deleting",
                "node": node,
                "message": "the session is being logged out by the host that serves it",
            });
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `POST /sessions/{id}/reconnect` (ours): skip the wait, or restart a
/// halted / logged-out session.
pub async fn reconnect(
    State(state): Shared,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    state.engine.command(&id, Command::ReconnectNow).await?;
    Ok(Json(json!({ "status": "reconnecting" })))
}

/// `GET /sessions` (ours): every session with its retry state and backlog;
/// in a cluster, every session of the cluster: the ones served here as
/// alone (plus `node`), the others as their hosts reported them.
pub async fn list(State(state): Shared) -> Json<Value> {
    let now = crate::engine::now();
    let local = state.engine.snapshots();
    let Some(view) = cluster_views::snapshot(&state) else {
        let sessions: Vec<Value> = local.iter().map(|s| session_json(&state, s, now)).collect();
        return Json(json!({ "sessions": sessions }));
    };
    let mut sessions: std::collections::BTreeMap<&str, Value> = local
        .iter()
        .map(|s| (s.id.as_str(), session_json(&state, s, now)))
        .collect();
    for session in &view.sessions {
        sessions
            .entry(session.id.as_str())
            .or_insert_with(|| cluster_views::remote_session_json(session, &view, now));
    }
    Json(json!({
        "sessions": sessions.into_values().collect::<Vec<_>>(),
        "cluster": cluster_views::summary_json(&state, now),
    }))
}

/// A session this host serves, as `/sessions` and `/health` list it; in
/// a cluster, with the `node` that serves it (this host).
pub(super) fn session_json(
    state: &ApiState,
    s: &SessionSnapshot,
    now: std::time::Instant,
) -> Value {
    let mut value = single_session_json(s, now);
    if let Some(cluster) = &state.cluster {
        value["node"] = json!(cluster.node);
    }
    value
}

fn single_session_json(s: &SessionSnapshot, now: std::time::Instant) -> Value {
    let backlog = s
        .backlog
        .as_ref()
        .map(|backlog| cluster_views::backlog_json(backlog, now));
    let detail = match &s.state {
        SessionState::Halted(reason) => Some(reason.describe(now)),
        _ => None,
    };
    json!({
        "id": s.id.as_str(),
        "status": s.state.api_status(),
        "state": s.state.label(),
        "detail": detail,
        "attempt": s.attempt,
        "nextRetryInSeconds": s.next_retry_at.map(|at| at.saturating_duration_since(now).as_secs()),
        "lastClose": s.last_close.as_ref().map(|c| json!({ "status": c.status, "reason": c.description })),
        // How fresh the link is known to be: seconds since WhatsApp last
        // answered a ping (while connected).
        "lastAnswerSecondsAgo": (s.state == SessionState::Connected)
            .then_some(s.last_answer_at)
            .flatten()
            .map(|at| now.saturating_duration_since(at).as_secs()),
        // The last offline sync was cut short: how many items the server
        // had announced (null once a sync finishes).
        "offlineSyncInterrupted": s.interrupted_sync.map(|items| json!({ "announced": items })),
        "phone": s.phone,
        "hasWebhook": s.has_webhook,
        "webhook": backlog,
    })
}

/// `GET /sessions/{id}/qr` (ours): the code as PNG, or SVG when asked.
pub async fn qr(
    State(state): Shared,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = snapshot(&state, &session_id(&raw)?)?;
    let SessionState::QrScanRequired(offer) = &session.state else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "No QR code: the session is not pairing",
        ));
    };
    let matrix = QrMatrix::encode(&offer.payload)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let wants_svg = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("image/svg+xml"));
    Ok(if wants_svg {
        ([(header::CONTENT_TYPE, "image/svg+xml")], matrix.to_svg()).into_response()
    } else {
        ([(header::CONTENT_TYPE, "image/png")], matrix.to_png(8)).into_response()
    })
}

fn webhooks_off() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Webhooks are off")
}

/// `GET /sessions/{id}/dead-letters` (ours)
pub async fn dead_letters(
    State(state): Shared,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    snapshot(&state, &id)?;
    let letters = state
        .engine
        .dead_letters(&id)
        .await
        .ok_or_else(webhooks_off)??;
    let letters: Vec<Value> = letters
        .iter()
        .map(|d| json!({ "deliveryId": d.delivery_id, "createdMs": d.created_ms, "attempts": d.attempts, "reason": d.reason, "target": d.target }))
        .collect();
    Ok(Json(json!({ "deadLetters": letters })))
}

/// `POST /sessions/{id}/dead-letters/{delivery}/replay` (ours)
pub async fn replay(
    State(state): Shared,
    Path((raw, delivery)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    snapshot(&state, &id)?;
    let replayed = state
        .engine
        .replay(&id, &delivery)
        .await
        .ok_or_else(webhooks_off)??;
    if replayed {
        Ok(Json(json!({ "status": "queued" })))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Dead letter not found",
        ))
    }
}
