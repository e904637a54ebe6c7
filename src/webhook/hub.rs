//! One entry point for everything webhook: sessions publish events here
//! (persisted in the outbox first), and one delivery worker per session
//! follows that session's webhook settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::deliver::{Deliverer, DeliverySettings, Http, Transport, now_ms};
use super::outbox::{Backlog, DeadLetter, Enqueued, Outbox, OutboxError};
use super::outbox_thread::{OutboxThread, OwnedItems};
use super::payload::WebhookEvent;
use super::pg_outbox::{FenceSource, OutboxTable, PgOutbox};
use super::queue::Queue;
use crate::paths::{DataDir, SessionId};

struct Worker<Target> {
    target: watch::Sender<Option<Target>>,
    wake: Arc<Notify>,
}

/// One kind of target's side of the outbound seam: its outbox, and one
/// delivery worker per session following that session's settings.
pub struct Hub<T: Transport = Http> {
    outbox: Queue,
    deliverer: Arc<Deliverer<T>>,
    workers: Mutex<HashMap<SessionId, Worker<T::Target>>>,
    posted: super::bridge::PostedStatuses,
}

/// The webhooks' hub: HTTP POSTs to each session's URL.
pub type WebhookHub = Hub<Http>;

impl Hub<Http> {
    /// Opens `<data>/outbox/outbox.db`. Workers start as sessions set their
    /// targets; deliveries left from an earlier run go out then.
    pub fn open(data: &DataDir, settings: DeliverySettings) -> Result<Arc<WebhookHub>, String> {
        let path = data.root().join("outbox").join("outbox.db");
        let outbox = OutboxThread::start(Arc::new(
            Outbox::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        ));
        Self::over(outbox.into(), settings)
    }

    /// In a cluster: the outbox in the shared database (migrated), every
    /// write fenced by the lease this host holds (`fences`). A session's
    /// worker runs while the session runs here (it starts with the session
    /// and stops when the session stops on this host), and starts from the
    /// rows in the database: what a dead host left goes out from here,
    /// under the same delivery ids.
    pub async fn open_cluster(
        pool: deadpool_postgres::Pool,
        fences: FenceSource,
        settings: DeliverySettings,
    ) -> Result<Arc<WebhookHub>, String> {
        let outbox = PgOutbox::start(pool, fences, OutboxTable::Webhook)
            .await
            .map_err(|e| format!("cannot open the cluster's webhook outbox: {e}"))?;
        Self::over(outbox.into(), settings)
    }

    fn over(outbox: Queue, settings: DeliverySettings) -> Result<Arc<WebhookHub>, String> {
        let transport = Http::new(&settings)?;
        Ok(Hub::with_transport(outbox, transport, settings))
    }
}

impl<T: Transport> Hub<T> {
    /// A hub of `transport`'s kind over `outbox`.
    pub fn with_transport(outbox: Queue, transport: T, settings: DeliverySettings) -> Arc<Hub<T>> {
        tokio::spawn(prune_delivered_daily(
            T::NAME,
            outbox.clone(),
            settings.max_age,
        ));
        let deliverer = Arc::new(Deliverer::over(outbox.clone(), transport, settings));
        Arc::new(Hub {
            outbox,
            deliverer,
            workers: Mutex::new(HashMap::new()),
            posted: Default::default(),
        })
    }

    /// The target `settings` name for this kind of transport.
    pub fn target_of(&self, settings: &crate::session_files::SessionSettings) -> Option<T::Target> {
        self.deliverer.transport().target_of(settings)
    }

    /// The transport, for what it knows of its own health.
    pub fn transport(&self) -> &T {
        self.deliverer.transport()
    }

    pub(super) fn posted(&self) -> &super::bridge::PostedStatuses {
        &self.posted
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Worker<T::Target>>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Points a session's deliveries at `target` (None pauses them).
    pub fn set_target(&self, session: &SessionId, target: Option<T::Target>) {
        let mut workers = self.workers();
        match workers.get(session) {
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
                    session.clone(),
                    receiver,
                    wake.clone(),
                ));
                workers.insert(
                    session.clone(),
                    Worker {
                        target: sender,
                        wake,
                    },
                );
            }
        }
    }

    /// The session stopped on this host. In a cluster its worker stops
    /// too (its rows stay for whichever host serves it next); alone, a
    /// worker lives as long as the process, as it always did.
    pub fn session_stopped(&self, session: &SessionId) {
        if self.outbox.is_shared() {
            // Dropping the target sender ends the worker's loop.
            self.workers().remove(session);
        }
    }

    fn has_target(&self, session: &SessionId) -> bool {
        self.workers()
            .get(session)
            .is_some_and(|w| w.target.borrow().is_some())
    }

    fn wake(&self, session: &SessionId) {
        if let Some(worker) = self.workers().get(session) {
            worker.wake.notify_one();
        }
    }

    /// Persists events for a session's webhook (in one transaction, maybe
    /// shared with other sessions' events), then wakes its worker. A session
    /// with no webhook queues nothing, as the old bridge sent nothing: a
    /// backlog would only grow, unseen, until it expired. Returns how many
    /// were queued (duplicates of a `dedupe_key` are not).
    pub async fn publish_batch(
        &self,
        session: &SessionId,
        events: &[(&WebhookEvent, Option<&str>)],
    ) -> Result<usize, OutboxError> {
        if !self.has_target(session) || events.is_empty() {
            return Ok(0);
        }
        let queued = self
            .outbox
            .enqueue_batch(session, owned(session, events), now_ms())
            .await?;
        self.wake(session);
        Ok(queued
            .iter()
            .filter(|q| matches!(q, Enqueued::New { .. }))
            .count())
    }

    /// Queues one event without waiting for the disk (status changes, which
    /// WhatsApp does not redeliver anyway): still in order with the
    /// session's messages; a failure is logged and shown in its backlog.
    pub fn publish_detached(&self, session: &SessionId, event: &WebhookEvent) {
        if !self.has_target(session) {
            return;
        }
        // Woken once the event is on disk: a worker reading its queue
        // before the commit would not find it.
        let worker = self.workers().get(session).map(|w| w.wake.clone());
        self.outbox
            .enqueue_detached(session, owned(session, &[(event, None)]), now_ms(), worker);
    }

    /// Resolves once every event handed over before is on disk.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.outbox.flush().await
    }

    /// Waits until some backlog changed; returns the sessions whose did.
    pub async fn changed_sessions(&self) -> Vec<SessionId> {
        self.outbox.changed_sessions().await
    }

    /// As last published by the outbox thread: never waits for the disk.
    pub fn backlog(&self, session: &SessionId) -> Backlog {
        self.outbox.backlog(session)
    }

    pub async fn dead_letters(&self, session: &SessionId) -> Result<Vec<DeadLetter>, OutboxError> {
        let letters = self.outbox.dead_letters(session, 1000).await?;
        Ok(letters
            .into_iter()
            .map(|letter| DeadLetter {
                target: T::NAME,
                ..letter
            })
            .collect())
    }

    pub async fn replay(
        &self,
        session: &SessionId,
        delivery_id: &str,
    ) -> Result<bool, OutboxError> {
        let replayed = self.outbox.replay(session, delivery_id, now_ms()).await?;
        self.wake(session);
        Ok(replayed)
    }

    /// A deleted session: its worker stops and its rows go (undelivered
    /// ones included: its webhook settings are gone with it, and a new
    /// session of the same id must not inherit them). Returns how many
    /// undelivered deliveries were dropped.
    pub async fn forget_session(&self, session: &SessionId) -> Result<u64, OutboxError> {
        // Dropping the target sender ends the worker's loop.
        self.workers().remove(session);
        self.outbox.drop_session(session).await
    }
}

fn owned(session: &SessionId, events: &[(&WebhookEvent, Option<&str>)]) -> OwnedItems {
    events
        .iter()
        .map(|(event, key)| (key.map(str::to_string), event.body(session.as_str())))
        .collect()
}

/// Once at start and then daily, forgets what was delivered longer ago than
/// a delivery may live.
async fn prune_delivered_daily(kind: &'static str, outbox: Queue, retention: std::time::Duration) {
    let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    loop {
        daily.tick().await;
        let before = now_ms() - retention.as_millis() as i64;
        match outbox.prune_delivered(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{kind} outbox: forgot {n} delivered message key(s)"),
            Err(e) => tracing::warn!("{kind} outbox: cannot prune delivered keys: {e}"),
        }
    }
}
