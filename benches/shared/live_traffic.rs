//! What the forwarding benchmarks publish, and how: one customer's order as
//! a `messages.upsert`, and sessions each publishing one event at a time
//! as live messages come (each waits for its commit).

use std::sync::Arc;
use std::time::Instant;

use wabridge::paths::SessionId;
use wabridge::webhook::deliver::Transport;
use wabridge::webhook::hub::Hub;
use wabridge::webhook::payload::{WebhookEvent, WireMessage};

pub fn message(id: &str) -> WebhookEvent {
    WebhookEvent::MessagesUpsert(vec![WireMessage {
        id: id.to_string(),
        from: "919075167132".into(),
        text: "Order 4711: 3 × blue widgets, deliver Friday".into(),
        timestamp: 1_764_000_000,
        push_name: Some("Asha".into()),
        media: None,
        is_group: false,
        group_id: None,
        group_name: None,
        reply_to: None,
        from_lid: Some("260477250707536".into()),
        from_resolved: true,
        ..Default::default()
    }])
}

/// Each of `sessions` publishes `per_session` events one at a time into
/// `hub`; returns when they started, once all are handed over.
pub async fn publish_all<T: Transport>(
    hub: &Arc<Hub<T>>,
    sessions: &[SessionId],
    per_session: usize,
) -> Instant {
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|session| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for n in 0..per_session {
                    let id = format!("{session}-{n}");
                    hub.publish_batch(&session, &[(&message(&id), Some(&id))])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started
}
