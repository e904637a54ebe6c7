//! The outbox as the hub and the delivery workers use it: the SQLite one of
//! a single host ([`OutboxThread`], unchanged) or, with `[cluster]`, the
//! shared one in PostgreSQL ([`PgOutbox`]). The same calls, the same
//! guarantees; each variant forwards to its own.

use std::sync::Arc;

use tokio::sync::Notify;

use super::outbox::{Backlog, DeadLetter, Delivery, Enqueued, OutboxError};
use super::outbox_thread::{DeliveryLimits, OutboxThread, OwnedItems};
use super::pg_outbox::PgOutbox;
use crate::paths::SessionId;

#[derive(Clone)]
pub enum Queue {
    Sqlite(OutboxThread),
    Pg(PgOutbox),
}

impl From<OutboxThread> for Queue {
    fn from(outbox: OutboxThread) -> Queue {
        Queue::Sqlite(outbox)
    }
}

impl From<PgOutbox> for Queue {
    fn from(outbox: PgOutbox) -> Queue {
        Queue::Pg(outbox)
    }
}

macro_rules! either {
    ($self:ident, $q:ident => $call:expr) => {
        match $self {
            Queue::Sqlite($q) => $call,
            Queue::Pg($q) => $call,
        }
    };
}

impl Queue {
    /// Whether the queue is the cluster's (shared by hosts).
    pub fn is_shared(&self) -> bool {
        matches!(self, Queue::Pg(_))
    }

    pub async fn enqueue_batch(
        &self,
        session: &SessionId,
        items: OwnedItems,
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        either!(self, q => q.enqueue_batch(session, items, now_ms).await)
    }

    pub fn enqueue_detached(
        &self,
        session: &SessionId,
        items: OwnedItems,
        now_ms: i64,
        worker: Option<Arc<Notify>>,
    ) {
        either!(self, q => q.enqueue_detached(session, items, now_ms, worker))
    }

    pub async fn next_deliveries(
        &self,
        session: &SessionId,
        limits: DeliveryLimits,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        either!(self, q => q.next_deliveries(session, limits, now_ms).await)
    }

    pub async fn ack_and_next(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        limits: DeliveryLimits,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        either!(self, q => q.ack_and_next(session, seqs, limits, now_ms).await)
    }

    pub fn ack_detached(&self, session: &SessionId, seqs: Vec<i64>) {
        either!(self, q => q.ack_detached(session, seqs))
    }

    pub async fn retry_later(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        at_ms: i64,
        error: String,
    ) -> Result<(), OutboxError> {
        either!(self, q => q.retry_later(session, seqs, at_ms, error).await)
    }

    pub async fn bury(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        reason: String,
    ) -> Result<(), OutboxError> {
        either!(self, q => q.bury(session, seqs, reason).await)
    }

    pub async fn split_batch(
        &self,
        session: &SessionId,
        members: Vec<i64>,
    ) -> Result<bool, OutboxError> {
        either!(self, q => q.split_batch(session, members).await)
    }

    pub async fn replay(
        &self,
        session: &SessionId,
        delivery_id: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        either!(self, q => q.replay(session, delivery_id, now_ms).await)
    }

    pub async fn drop_session(&self, session: &SessionId) -> Result<u64, OutboxError> {
        either!(self, q => q.drop_session(session).await)
    }

    pub async fn dead_letters(
        &self,
        session: &SessionId,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        either!(self, q => q.dead_letters(session, limit).await)
    }

    pub async fn flush(&self) -> Result<(), OutboxError> {
        either!(self, q => q.flush().await)
    }

    pub async fn prune_delivered(&self, before_ms: i64) -> Result<usize, OutboxError> {
        either!(self, q => q.prune_delivered(before_ms).await)
    }

    pub fn backlog(&self, session: &SessionId) -> Backlog {
        either!(self, q => q.backlog(session))
    }

    pub async fn changed_sessions(&self) -> Vec<SessionId> {
        either!(self, q => q.changed_sessions().await)
    }
}
