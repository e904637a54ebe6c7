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
use super::{ApiState, Trusted, cluster_views, nats_views};
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
    // In a cluster: sessions no host serves, or a database this host
    // cannot read, are this host's problem too.
    let cluster_unwell = cluster_views::degraded(&state);
    let nats = nats_views::health(&state);
    let nats_unwell = nats.as_ref().is_some_and(|(_, degraded)| *degraded);
    let overall = if stale_backlog || unhealthy_session || cluster_unwell || nats_unwell {
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
    // In a cluster, which host answered (each session says it too), and
    // the whole cluster: who serves how many, which sessions no host does.
    if let Some(cluster) = &state.cluster {
        body["node"] = json!(cluster.node);
    }
    if let Some(summary) = cluster_views::summary_json(&state, now) {
        body["cluster"] = summary;
    }
    if let Some((block, _)) = nats {
        body["nats"] = block;
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
    if sessions.iter().any(|s| !s.unreadable.is_empty()) {
        out.push_str("# HELP wabridge_unreadable_messages_total Messages that could not be decrypted, per session and peer (the peers with most).\n# TYPE wabridge_unreadable_messages_total counter\n");
        for s in &sessions {
            for peer in &s.unreadable {
                let _ = writeln!(
                    out,
                    "wabridge_unreadable_messages_total{{session=\"{}\",peer=\"{}\"}} {}",
                    s.id, peer.peer, peer.count
                );
            }
        }
    }
    if let Some(cluster) = &state.cluster {
        cluster_metrics(&mut out, &state, &cluster.node, &sessions, now);
    }
    nats_views::metrics(&mut out, &state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// In a cluster: which node serves each session (1; 0 with `node=""` for
/// a session no host serves), how many each node serves, and how fresh
/// this host's reading of the cluster is. Before the first reading, the
/// sessions this host serves.
fn cluster_metrics(
    out: &mut String,
    state: &ApiState,
    node: &str,
    local: &[crate::engine::SessionSnapshot],
    now: std::time::Instant,
) {
    let view = cluster_views::snapshot(state);
    let owners: Vec<(&str, Option<&str>)> = match &view {
        Some(view) => view
            .sessions
            .iter()
            .map(|s| (s.id.as_str(), s.owner.as_deref()))
            .collect(),
        None => local.iter().map(|s| (s.id.as_str(), Some(node))).collect(),
    };
    out.push_str("# HELP wabridge_session_node The cluster node serving the session (0: none does).\n# TYPE wabridge_session_node gauge\n");
    for (session, owner) in &owners {
        let _ = writeln!(
            out,
            "wabridge_session_node{{session=\"{session}\",node=\"{}\"}} {}",
            owner.unwrap_or(""),
            u8::from(owner.is_some())
        );
    }
    let mut per_node = std::collections::BTreeMap::from([(node, 0usize)]);
    for (_, owner) in &owners {
        if let Some(owner) = owner {
            *per_node.entry(owner).or_default() += 1;
        }
    }
    out.push_str("# HELP wabridge_cluster_node_sessions Sessions each cluster node serves.\n# TYPE wabridge_cluster_node_sessions gauge\n");
    for (name, count) in &per_node {
        let _ = writeln!(
            out,
            "wabridge_cluster_node_sessions{{node=\"{name}\"}} {count}"
        );
    }
    let Some(view) = &view else { return };
    // Logged-out sessions wait for an operator, not for a host.
    let _ = writeln!(
        out,
        "# HELP wabridge_cluster_sessions_without_host Sessions no cluster node serves (logged-out ones aside).\n# TYPE wabridge_cluster_sessions_without_host gauge\nwabridge_cluster_sessions_without_host {}",
        view.without_host().count()
    );
    let age = view
        .read_at
        .map_or(0, |at| now.saturating_duration_since(at).as_secs());
    let _ = writeln!(
        out,
        "# HELP wabridge_cluster_view_age_seconds Since this host last read the cluster's sessions.\n# TYPE wabridge_cluster_view_age_seconds gauge\nwabridge_cluster_view_age_seconds {age}"
    );
    let _ = writeln!(
        out,
        "# HELP wabridge_cluster_view_up Whether this host's last reading of the cluster worked.\n# TYPE wabridge_cluster_view_up gauge\nwabridge_cluster_view_up {}",
        u8::from(view.error.is_none())
    );
}
