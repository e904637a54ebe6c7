//! The NATS target on `/health` and `/metrics`: whether the server is
//! connected, the last publish the stream acknowledged and the last error,
//! and each session's NATS backlog (its own queue beside the webhook's).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::ApiState;
use crate::webhook::deliver::now_ms;

/// A NATS backlog older than this, or a server not connected, makes
/// `/health` say "degraded" (as the webhook's).
const STALE_SECONDS: i64 = 300;

/// `/health`'s `nats` block and whether it makes the whole degraded; None
/// without `[nats]`.
pub fn health(state: &ApiState) -> Option<(Value, bool)> {
    let hub = state.nats.as_ref()?;
    let transport = hub.transport();
    let health = transport.health();
    let now = now_ms();
    let mut pending = 0;
    let mut dead = 0;
    let mut oldest_age: Option<i64> = None;
    let mut write_error = None;
    for session in state.engine.snapshots() {
        let backlog = hub.backlog(&session.id);
        pending += backlog.pending;
        dead += backlog.dead;
        if let Some(oldest) = backlog.oldest_ms {
            let age = (now - oldest).max(0) / 1000;
            oldest_age = Some(oldest_age.map_or(age, |a| a.max(age)));
        }
        write_error = write_error.or(backlog.write_error);
    }
    let connected = transport.is_connected();
    let degraded =
        !connected || oldest_age.is_some_and(|age| age > STALE_SECONDS) || write_error.is_some();
    let block = json!({
        "connected": connected,
        "pending": pending,
        "deadLetters": dead,
        "oldestAgeSeconds": oldest_age,
        "writeError": write_error,
        "lastSuccessMs": health.last_success_ms,
        "lastError": health.last_error.map(|(at, error)| json!({ "atMs": at, "error": error })),
    });
    Some((block, degraded))
}

/// The NATS gauges; nothing without `[nats]`.
pub fn metrics(out: &mut String, state: &ApiState) {
    let Some(hub) = &state.nats else {
        return;
    };
    let transport = hub.transport();
    let _ = writeln!(
        out,
        "# HELP wabridge_nats_connected Whether the NATS server is connected.\n# TYPE wabridge_nats_connected gauge\nwabridge_nats_connected {}",
        u8::from(transport.is_connected())
    );
    if let Some(ms) = transport.health().last_success_ms {
        let _ = writeln!(
            out,
            "# HELP wabridge_nats_last_success_timestamp_seconds When JetStream last acknowledged a publish.\n# TYPE wabridge_nats_last_success_timestamp_seconds gauge\nwabridge_nats_last_success_timestamp_seconds {}",
            ms / 1000
        );
    }
    let backlogs: Vec<_> = state
        .engine
        .snapshots()
        .into_iter()
        .map(|s| {
            let backlog = hub.backlog(&s.id);
            (s.id, backlog)
        })
        .collect();
    if backlogs.is_empty() {
        return;
    }
    out.push_str("# HELP wabridge_nats_backlog Events waiting for JetStream per session.\n# TYPE wabridge_nats_backlog gauge\n");
    for (id, backlog) in &backlogs {
        let _ = writeln!(
            out,
            "wabridge_nats_backlog{{session=\"{id}\"}} {}",
            backlog.pending
        );
    }
    out.push_str("# HELP wabridge_nats_dead_letters Events the stream refused per session.\n# TYPE wabridge_nats_dead_letters gauge\n");
    for (id, backlog) in &backlogs {
        let _ = writeln!(
            out,
            "wabridge_nats_dead_letters{{session=\"{id}\"}} {}",
            backlog.dead
        );
    }
}
