//! The whole cluster in this host's answers (with `[cluster]`): the
//! sessions other hosts serve, as their hosts last reported them
//! (`cluster::view`), with their node and `"remote": true`, and a summary
//! of who serves how many. Whatever this host cannot vouch for (an old
//! report, one from a node that no longer serves the session, a database
//! it cannot read) is marked `"stale"` with the reason.

use std::time::Instant;

use serde_json::{Value, json};

use super::ApiState;
use crate::cluster::view::{ClusterSession, ClusterSnapshot};
use crate::engine::BacklogInfo;
use crate::engine::close::human_duration;
use crate::paths::SessionId;

/// The cluster as this host last read it, with what it runs now counted
/// as its own; None alone, or before the first read (then the views list
/// what this host serves, as before).
pub(super) fn snapshot(state: &ApiState) -> Option<ClusterSnapshot> {
    let view = state.cluster_view.as_ref()?.borrow().clone();
    let here: Vec<SessionId> = state.engine.snapshots().into_iter().map(|s| s.id).collect();
    view.read_at.is_some().then(|| view.with_local(&here))
}

/// A session another host serves (or none does), if the cluster has it
/// and this host does not run it.
pub(super) fn remote(
    state: &ApiState,
    id: &SessionId,
) -> Option<(ClusterSession, ClusterSnapshot)> {
    if state.engine.snapshot(id).is_some() {
        return None;
    }
    let view = snapshot(state)?;
    let session = view.get(id)?.clone();
    Some((session, view))
}

/// Why the view cannot vouch for `session` now, if it cannot.
fn stale_reason(session: &ClusterSession, view: &ClusterSnapshot, now: Instant) -> Option<String> {
    if let Some(error) = &view.error {
        let age = view
            .read_at
            .map(|at| human_duration(now.saturating_duration_since(at)))
            .unwrap_or_else(|| "never".into());
        return Some(format!("{error} (last read {age} ago)"));
    }
    session.stale.clone()
}

/// The webhook backlog as `/sessions` shows it.
pub(super) fn backlog_json(backlog: &BacklogInfo, now: Instant) -> Value {
    json!({
        "pending": backlog.pending,
        "oldestAgeSeconds": backlog.oldest_age(now).map(|age| age.as_secs()),
        "deadLetters": backlog.dead,
        "writeError": backlog.write_error,
    })
}

/// A session this host does not serve, with the fields `/sessions` gives
/// a local one (null where its host did not say) and where it stands.
pub(super) fn remote_session_json(
    session: &ClusterSession,
    view: &ClusterSnapshot,
    now: Instant,
) -> Value {
    let report = session.owners_report();
    let stale = stale_reason(session, view, now);
    json!({
        "id": session.id.as_str(),
        "node": session.owner,
        "remote": true,
        "status": session.status(),
        "state": session.state(),
        "detail": report.and_then(|r| r.detail.clone()),
        "attempt": report.map_or(0, |r| r.attempt),
        "nextRetryInSeconds": report
            .and_then(|r| r.next_retry_at)
            .map(|at| at.saturating_duration_since(now).as_secs()),
        "lastClose": report
            .and_then(|r| r.last_close.as_ref())
            .map(|c| json!({ "status": c.status, "reason": c.description })),
        "offlineSyncInterrupted": report
            .and_then(|r| r.interrupted_sync)
            .map(|items| json!({ "announced": items })),
        "phone": session.phone(),
        "hasWebhook": report.is_some_and(|r| r.has_webhook),
        "webhook": report
            .and_then(|r| r.backlog.as_ref())
            .map(|b| backlog_json(b, now)),
        "reportedBy": session.report_node,
        "reportedSecondsAgo": session
            .reported_at
            .map(|at| now.saturating_duration_since(at).as_secs()),
        "stale": stale.is_some(),
        "staleReason": stale,
    })
}

/// Who serves how many, which sessions no host serves, and how fresh
/// this host's reading of it is.
pub(super) fn summary_json(state: &ApiState, now: Instant) -> Option<Value> {
    let cluster = state.cluster.as_ref()?;
    let Some(view) = snapshot(state) else {
        return Some(json!({ "node": cluster.node, "readSecondsAgo": null }));
    };
    let nodes: Vec<Value> = view
        .nodes()
        .into_iter()
        .map(|(node, sessions)| json!({ "node": node, "sessions": sessions }))
        .collect();
    let without_host: Vec<&str> = view.without_host().map(|s| s.id.as_str()).collect();
    Some(json!({
        "node": cluster.node,
        "nodes": nodes,
        "sessions": view.sessions.len(),
        "withoutHost": without_host,
        "readSecondsAgo": view.read_at.map(|at| now.saturating_duration_since(at).as_secs()),
        "error": view.error,
    }))
}

/// Whether the cluster is unwell as this host sees it: sessions no host
/// serves, or a database it cannot read.
pub(super) fn degraded(state: &ApiState) -> bool {
    snapshot(state).is_some_and(|view| view.error.is_some() || view.without_host().next().is_some())
}
