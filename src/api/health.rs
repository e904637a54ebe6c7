//! `/`, `/health` and `/metrics`: what a monitor needs, and the truth about
//! each session (the old fields stay, so existing checks keep passing).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::sessions::session_json;
use super::{ApiState, Trusted};
use crate::engine::SessionState;

/// Webhook backlog older than this makes `/health` say "degraded".
const STALE_BACKLOG_SECONDS: i64 = 300;

pub async fn root(State(state): State<Arc<ApiState>>) -> Json<Value> {
    let active = state
        .engine
        .snapshots()
        .iter()
        .filter(|s| s.state == SessionState::Connected)
        .count();
    Json(json!({
        "service": "WhatsApp Bridge (wabridge)",
        "status": "running",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs_f64(),
        "activeSessions": active,
    }))
}

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// With `api.token` set, a caller without it (a monitor) learns only the
/// overall status: no session ids, numbers or close reasons.
pub async fn health(
    State(state): State<Arc<ApiState>>,
    trusted: Option<Extension<Trusted>>,
) -> Json<Value> {
    let now = crate::engine::now();
    let sessions = state.engine.snapshots();
    let count = |f: fn(&SessionState) -> bool| sessions.iter().filter(|s| f(&s.state)).count();
    let connected = count(|s| *s == SessionState::Connected);
    let qr_pending = count(|s| s.api_status() == "QR Scan Required");
    let details: Vec<Value> = sessions
        .iter()
        .map(|s| session_json(&state, s, now))
        .collect();
    // Degraded: a session that should be up is not, or the ERP is behind.
    let stale_backlog = details.iter().any(|d| {
        d["webhook"]["oldestAgeSeconds"]
            .as_i64()
            .is_some_and(|age| age > STALE_BACKLOG_SECONDS)
            || d["webhook"]["writeError"].is_string()
    });
    let unhealthy_session = sessions.iter().any(|s| {
        matches!(
            s.state,
            SessionState::Disconnected | SessionState::Halted(_)
        )
    });
    let overall = if stale_backlog || unhealthy_session {
        "degraded"
    } else {
        "healthy"
    };
    if !trusted.is_some_and(|Extension(Trusted(t))| t) {
        return Json(json!({ "status": overall }));
    }
    let mut body = json!({
        "status": overall,
        "uptime": state.started.elapsed().as_secs_f64(),
        "memory": { "rss": rss_bytes() },
        "sessions": {
            "total": sessions.len(),
            "connected": connected,
            "disconnected": sessions.len() - connected - qr_pending,
            "qrPending": qr_pending,
            "details": details,
        },
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    // In a cluster, which host answered (each session says it too).
    if let Some(cluster) = &state.cluster {
        body["node"] = json!(cluster.node);
    }
    Json(body)
}

/// Reads one figure of a session's backlog at `now`.
type BacklogGauge = fn(&crate::engine::BacklogInfo, std::time::Instant) -> u64;

/// Prometheus text format.
pub async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let sessions = state.engine.snapshots();
    let mut out = String::new();
    out.push_str("# HELP wabridge_sessions Sessions by state.\n# TYPE wabridge_sessions gauge\n");
    for label in [
        "Connecting",
        "QR Scan Required",
        "Pairing Code",
        "Passkey Required",
        "Connected",
        "Disconnected",
        "Halted",
        "Logged Out",
        "Stopped",
    ] {
        let n = sessions.iter().filter(|s| s.state.label() == label).count();
        let _ = writeln!(out, "wabridge_sessions{{state=\"{label}\"}} {n}");
    }
    out.push_str("# HELP wabridge_reconnect_attempt Current reconnect attempt per session.\n# TYPE wabridge_reconnect_attempt gauge\n");
    for s in &sessions {
        let _ = writeln!(
            out,
            "wabridge_reconnect_attempt{{session=\"{}\"}} {}",
            s.id, s.attempt
        );
    }
    let now = crate::engine::now();
    let backlogs: Vec<_> = sessions
        .iter()
        .filter_map(|s| Some((s, s.backlog.as_ref()?)))
        .collect();
    let gauges: [(&str, &str, BacklogGauge); 3] = [
        (
            "wabridge_webhook_backlog",
            "Deliveries waiting per session.",
            |b, _| b.pending,
        ),
        (
            "wabridge_webhook_oldest_age_seconds",
            "Age of the oldest waiting delivery.",
            |b, now| b.oldest_age(now).map_or(0, |age| age.as_secs()),
        ),
        (
            "wabridge_webhook_dead_letters",
            "Deliveries the receiver refused.",
            |b, _| b.dead,
        ),
    ];
    for (name, help, value) in gauges {
        if backlogs.is_empty() {
            break;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (s, backlog) in &backlogs {
            let _ = writeln!(
                out,
                "{name}{{session=\"{}\"}} {}",
                s.id,
                value(backlog, now)
            );
        }
    }
    // In a cluster: which node serves each session listed here (this one).
    if let Some(cluster) = &state.cluster {
        out.push_str("# HELP wabridge_session_node The cluster node serving the session.\n# TYPE wabridge_session_node gauge\n");
        for s in &sessions {
            let _ = writeln!(
                out,
                "wabridge_session_node{{session=\"{}\",node=\"{}\"}} 1",
                s.id, cluster.node
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
