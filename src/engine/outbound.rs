//! The engine's one way out: what it tells the world beyond its views about
//! its sessions (their messages, status changes and deleted sessions), and
//! what it asks back (the backlog of what has not got through yet, dead
//! letters). The webhook implements it (`webhook::bridge`, which owns the
//! old bridge's vocabulary); a broker target or a cluster store plug in
//! here, not into the supervisor.

use std::future::Future;
use std::pin::Pin;

use super::backend::IncomingMessage;
use super::state::{BacklogInfo, SessionSnapshot, TargetBacklog};
use crate::paths::SessionId;
use crate::session_files::SessionSettings;

/// Why the outbound side could not do what was asked (the disk is full,
/// its store cannot be read), in its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutboundError(pub String);

pub type OutboundFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, OutboundError>> + Send + 'a>>;

/// Something sent out that its receiver refused for good (or that expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The kind of target that refused it: "webhook", "NATS".
    pub target: &'static str,
    pub delivery_id: String,
    pub session: String,
    pub created_ms: i64,
    pub attempts: u32,
    pub reason: String,
}

pub trait Outbound: Send + Sync + 'static {
    /// A session's settings (its target) apply from now: at its start and
    /// whenever they change.
    fn configure(&self, session: &SessionId, settings: &SessionSettings);

    /// Persists incoming messages; resolves Ok only once they are durable,
    /// for WhatsApp is acknowledged right after. Waiting for the disk here
    /// never holds one of the runtime's worker threads.
    fn persist_messages<'a>(
        &'a self,
        session: &'a SessionId,
        batch: &'a [IncomingMessage],
    ) -> OutboundFuture<'a, ()>;

    /// A session's snapshot changed: tell what the target should hear of
    /// it (kept in order with its messages; not awaited).
    fn session_changed(&self, snapshot: &SessionSnapshot);

    /// One of our sent messages got further ("Sent", "Delivered", "Read").
    fn message_status(
        &self,
        session: &SessionId,
        message_id: &str,
        status: &'static str,
        at_ms: i64,
    );

    /// The session was deleted: forget what is held for it, so a new
    /// session of the same id starts empty. Returns how many undelivered
    /// items were dropped.
    fn forget<'a>(&'a self, session: &'a SessionId) -> OutboundFuture<'a, u64>;

    /// Resolves once everything handed over so far is durable (the
    /// changes and statuses that were not awaited): the engine's shutdown
    /// waits for it, so a status posted just before an exit is not lost.
    fn flush(&self) -> OutboundFuture<'_, ()>;

    /// What has not got through yet, as last known (no waiting).
    fn backlog(&self, session: &SessionId) -> BacklogInfo;

    /// What views call this target: "webhook", "NATS".
    fn target_name(&self) -> &'static str {
        "outbound"
    }

    /// Waits until some backlog changed; returns whose did.
    fn backlog_changes(&self) -> Pin<Box<dyn Future<Output = Vec<SessionId>> + Send + '_>>;

    fn dead_letters<'a>(&'a self, session: &'a SessionId) -> OutboundFuture<'a, Vec<DeadLetter>>;

    /// Puts a dead letter back in its queue; false when the session has no
    /// such letter.
    fn replay<'a>(
        &'a self,
        session: &'a SessionId,
        delivery_id: &'a str,
    ) -> OutboundFuture<'a, bool>;
}

/// Several outbound targets as one (the webhook and NATS JetStream): each
/// gets everything, each with its own queue. Messages count as persisted
/// once every target has them: if one fails, WhatsApp is not acknowledged
/// and delivers them again, and a target that already had them drops the
/// repeat by its dedupe key.
pub struct Fanout(pub Vec<std::sync::Arc<dyn Outbound>>);

impl Outbound for Fanout {
    fn configure(&self, session: &SessionId, settings: &SessionSettings) {
        self.0.iter().for_each(|o| o.configure(session, settings));
    }

    fn persist_messages<'a>(
        &'a self,
        session: &'a SessionId,
        batch: &'a [IncomingMessage],
    ) -> OutboundFuture<'a, ()> {
        Box::pin(async move {
            let all = self.0.iter().map(|o| o.persist_messages(session, batch));
            futures_util::future::try_join_all(all).await.map(|_| ())
        })
    }

    fn session_changed(&self, snapshot: &SessionSnapshot) {
        self.0.iter().for_each(|o| o.session_changed(snapshot));
    }

    fn message_status(
        &self,
        session: &SessionId,
        message_id: &str,
        status: &'static str,
        at_ms: i64,
    ) {
        for o in &self.0 {
            o.message_status(session, message_id, status, at_ms);
        }
    }

    fn forget<'a>(&'a self, session: &'a SessionId) -> OutboundFuture<'a, u64> {
        Box::pin(async move {
            let all = self.0.iter().map(|o| o.forget(session));
            let dropped = futures_util::future::try_join_all(all).await?;
            Ok(dropped.into_iter().sum())
        })
    }

    fn flush(&self) -> OutboundFuture<'_, ()> {
        Box::pin(async move {
            let all = self.0.iter().map(|o| o.flush());
            futures_util::future::try_join_all(all).await.map(|_| ())
        })
    }

    /// The first target's (the webhook's), with the others' `beside` it:
    /// the API's `/sessions` shows the first as the webhook backlog (the
    /// others have views of their own there: `/health`'s and `/metrics`'
    /// `nats`); the dashboard shows them all.
    fn backlog(&self, session: &SessionId) -> BacklogInfo {
        let Some((first, others)) = self.0.split_first() else {
            return BacklogInfo::default();
        };
        BacklogInfo {
            beside: others
                .iter()
                .map(|o| TargetBacklog {
                    target: o.target_name().to_string(),
                    backlog: o.backlog(session),
                })
                .collect(),
            ..first.backlog(session)
        }
    }

    fn target_name(&self) -> &'static str {
        self.0.first().map_or("outbound", |o| o.target_name())
    }

    fn backlog_changes(&self) -> Pin<Box<dyn Future<Output = Vec<SessionId>> + Send + '_>> {
        Box::pin(async move {
            let all: Vec<_> = self.0.iter().map(|o| o.backlog_changes()).collect();
            if all.is_empty() {
                return std::future::pending().await;
            }
            futures_util::future::select_all(all).await.0
        })
    }

    /// Every target's dead letters, oldest first (delivery ids are unique
    /// across targets).
    fn dead_letters<'a>(&'a self, session: &'a SessionId) -> OutboundFuture<'a, Vec<DeadLetter>> {
        Box::pin(async move {
            let all = self.0.iter().map(|o| o.dead_letters(session));
            let mut letters: Vec<DeadLetter> = futures_util::future::try_join_all(all)
                .await?
                .into_iter()
                .flatten()
                .collect();
            letters.sort_by_key(|l| l.created_ms);
            Ok(letters)
        })
    }

    fn replay<'a>(
        &'a self,
        session: &'a SessionId,
        delivery_id: &'a str,
    ) -> OutboundFuture<'a, bool> {
        Box::pin(async move {
            for o in &self.0 {
                if o.replay(session, delivery_id).await? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}
