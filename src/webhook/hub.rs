//! One entry point for everything webhook: sessions publish events here
//! (persisted in the outbox first), and one delivery worker per session
//! follows that session's webhook settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, watch};

use super::deliver::{Deliverer, DeliverySettings, Target, now_ms};
use super::outbox::{Backlog, DeadLetter, Enqueued, Outbox, OutboxError};
use super::payload::WebhookEvent;
use crate::paths::{DataDir, SessionId};

struct Worker {
    target: watch::Sender<Option<Target>>,
    wake: Arc<Notify>,
}

/// The target a session's saved settings name, if any.
pub fn target_of(settings: &crate::session_files::SessionSettings) -> Option<Target> {
    settings.webhook_url.as_ref().map(|url| Target {
        url: url.clone(),
        token: settings.webhook_token.clone(),
    })
}

pub struct WebhookHub {
    outbox: Arc<Outbox>,
    deliverer: Arc<Deliverer>,
    workers: Mutex<HashMap<String, Worker>>,
    /// Session ids whose backlog changed (queued, delivered, parked).
    changes: broadcast::Sender<String>,
}

impl WebhookHub {
    /// Opens `<data>/outbox/outbox.db`. Workers start as sessions set their
    /// targets; deliveries left from an earlier run go out then.
    pub fn open(data: &DataDir, settings: DeliverySettings) -> Result<Arc<WebhookHub>, String> {
        let path = data.root().join("outbox").join("outbox.db");
        let outbox = Arc::new(
            Outbox::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        );
        let (changes, _) = broadcast::channel(1024);
        let signal = {
            let changes = changes.clone();
            Arc::new(move |session: &str| {
                let _ = changes.send(session.to_string());
            })
        };
        tokio::spawn(prune_delivered_daily(outbox.clone(), settings.max_age));
        let deliverer =
            Arc::new(Deliverer::new(outbox.clone(), settings)?.with_change_signal(signal));
        Ok(Arc::new(WebhookHub {
            outbox,
            deliverer,
            workers: Mutex::new(HashMap::new()),
            changes,
        }))
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Points a session's deliveries at `target` (None pauses them).
    pub fn set_target(&self, session: &SessionId, target: Option<Target>) {
        let mut workers = self.workers();
        match workers.get(session.as_str()) {
            Some(worker) => {
                worker.target.send_if_modified(|current| {
                    let changed = *current != target;
                    *current = target;
                    changed
                });
            }
            None => {
                let (sender, receiver) = watch::channel(target);
                let wake = Arc::new(Notify::new());
                tokio::spawn(self.deliverer.clone().run_session(
                    session.to_string(),
                    receiver,
                    wake.clone(),
                ));
                workers.insert(
                    session.to_string(),
                    Worker {
                        target: sender,
                        wake,
                    },
                );
            }
        }
    }

    /// Persists an event for a session's webhook, then wakes its worker.
    /// A session with no webhook queues nothing, as the old bridge sent
    /// nothing: a backlog would only grow, unseen, until it expired.
    /// Returns false when nothing was queued (no webhook, or a duplicate of
    /// the same `dedupe_key`).
    pub fn publish(
        &self,
        session: &SessionId,
        event: &WebhookEvent,
        dedupe_key: Option<&str>,
    ) -> Result<bool, OutboxError> {
        Ok(self.publish_batch(session, &[(event, dedupe_key)])? > 0)
    }

    /// Like `publish` for several events, persisted in one transaction.
    /// Returns how many were queued.
    pub fn publish_batch(
        &self,
        session: &SessionId,
        events: &[(&WebhookEvent, Option<&str>)],
    ) -> Result<usize, OutboxError> {
        let has_target = self
            .workers()
            .get(session.as_str())
            .is_some_and(|w| w.target.borrow().is_some());
        if !has_target || events.is_empty() {
            return Ok(0);
        }
        let bodies: Vec<Vec<u8>> = events
            .iter()
            .map(|(event, _)| event.body(session.as_str()))
            .collect();
        let items: Vec<(Option<&str>, &[u8])> = events
            .iter()
            .zip(&bodies)
            .map(|((_, key), body)| (*key, body.as_slice()))
            .collect();
        let queued = self
            .outbox
            .enqueue_batch(session.as_str(), &items, now_ms())?;
        if let Some(worker) = self.workers().get(session.as_str()) {
            worker.wake.notify_one();
        }
        let _ = self.changes.send(session.to_string());
        Ok(queued
            .iter()
            .filter(|q| matches!(q, Enqueued::New { .. }))
            .count())
    }

    /// Session ids whose backlog changed; may lag under a flood (then
    /// re-read every backlog).
    pub fn subscribe_changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    pub fn backlog(&self, session: &SessionId) -> Backlog {
        self.outbox.backlog(session.as_str()).unwrap_or_else(|e| {
            tracing::error!("cannot read the webhook backlog of {session}: {e}");
            Backlog::default()
        })
    }

    pub fn dead_letters(&self, session: &SessionId) -> Result<Vec<DeadLetter>, OutboxError> {
        self.outbox.dead_letters(session.as_str(), 1000)
    }

    pub fn replay(&self, session: &SessionId, delivery_id: &str) -> Result<bool, OutboxError> {
        let replayed = self
            .outbox
            .replay(session.as_str(), delivery_id, now_ms())?;
        if let Some(worker) = self.workers().get(session.as_str()) {
            worker.wake.notify_one();
        }
        Ok(replayed)
    }
}

/// Once at start and then daily, forgets what was delivered longer ago than
/// a delivery may live.
async fn prune_delivered_daily(outbox: Arc<Outbox>, retention: std::time::Duration) {
    let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    loop {
        daily.tick().await;
        let before = now_ms() - retention.as_millis() as i64;
        match outbox.prune_delivered(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!("webhook outbox: forgot {n} delivered message key(s)"),
            Err(e) => tracing::warn!("webhook outbox: cannot prune delivered keys: {e}"),
        }
    }
}
