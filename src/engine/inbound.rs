//! A session's incoming messages: persisted by the outbound side (the
//! durability point: WhatsApp gets its ack only after this succeeded), then
//! shown to the views.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::backend::{
    Author, CallPolicy, InboundEvent, InboundSink, IncomingMessage, MediaMode, PersistFuture,
};
use super::outbound::Outbound;
use super::phone::Source;
use super::state::{EngineEvent, InboundMessage, LineAction, SenderNumber, SessionSnapshot};
use super::unreadable::UnreadableLedger;
use crate::paths::SessionId;
use crate::session_files::SessionFiles;

pub(crate) struct MessageForwarder {
    pub(crate) session: SessionId,
    /// Where the session's settings (its call policy) are read.
    pub(crate) files: SessionFiles,
    pub(crate) unreadable: Arc<UnreadableLedger>,
    /// The session's snapshot, for its count of unreadable messages.
    pub(crate) snapshot: watch::Sender<SessionSnapshot>,
    pub(crate) outbound: Option<Arc<dyn Outbound>>,
    pub(crate) events: broadcast::Sender<EngineEvent>,
}

impl InboundSink for MessageForwarder {
    fn persist<'a>(&'a self, batch: &'a [IncomingMessage]) -> PersistFuture<'a> {
        Box::pin(self.persist_batch(batch))
    }

    fn media_mode(&self) -> MediaMode {
        // Unreadable settings halt the session before any message comes.
        self.files
            .load_settings()
            .map(|settings| settings.media)
            .unwrap_or_default()
    }

    fn call_policy(&self) -> CallPolicy {
        match self.files.load_settings() {
            Ok(settings) => CallPolicy {
                reject: settings.reject_calls,
                reply: settings.call_reply.filter(|r| !r.is_empty()),
            },
            Err(e) => {
                tracing::warn!(
                    "cannot read the call settings of session {}: {e}; the call rings on",
                    self.session
                );
                CallPolicy::default()
            }
        }
    }
}

impl MessageForwarder {
    async fn persist_batch(&self, batch: &[IncomingMessage]) -> Result<(), String> {
        let noted = self
            .unreadable
            .note(batch, chrono::Utc::now().timestamp_millis());
        // Copied (media bytes and all) only when a resend needs its marker
        // or a stale notice must go.
        let batch: std::borrow::Cow<[IncomingMessage]> =
            if noted.resends.is_empty() && noted.stale.is_empty() {
                batch.into()
            } else {
                let mut marked = batch.to_vec();
                for &at in &noted.resends {
                    marked[at].replaces = Some(marked[at].id.clone());
                }
                let kept = marked
                    .into_iter()
                    .enumerate()
                    .filter(|(at, _)| !noted.stale.contains(at))
                    .map(|(_, m)| m);
                kept.collect::<Vec<_>>().into()
            };
        if noted.failed {
            let failures = self.unreadable.failures();
            self.snapshot.send_modify(|s| s.unreadable = failures);
            let current = self.snapshot.borrow().clone();
            let _ = self.events.send(EngineEvent::SessionChanged(current));
        }
        for message in batch.iter() {
            if message.from.source == Source::Participant
                && let Some(lid) = &message.from.from_lid
            {
                tracing::info!(
                    "LID message - using participant: {} instead of LID: {lid}",
                    message.from.from
                );
            }
        }
        if let Some(outbound) = &self.outbound {
            outbound
                .persist_messages(&self.session, &batch)
                .await
                .map_err(|e| e.to_string())?;
        }
        // Only after everything is on disk do the views hear about it.
        for message in batch.iter() {
            let _ = self
                .events
                .send(EngineEvent::Message(Arc::new(view(&self.session, message))));
        }
        Ok(())
    }
}

/// An author as a stream line names a sender: the number, else the LID
/// digits.
fn shown_as(author: &Author) -> SenderNumber {
    let user = super::phone::user_of(&author.jid).to_string();
    match &author.number {
        Some(number) => SenderNumber::Phone(number.clone()),
        None if super::phone::is_lid(&author.jid) => SenderNumber::HiddenLid(user),
        None => SenderNumber::Phone(user),
    }
}

fn view(session: &SessionId, m: &IncomingMessage) -> InboundMessage {
    InboundMessage {
        session: session.clone(),
        id: m.id.clone(),
        timestamp: m.timestamp,
        sender: if m.from.resolved {
            SenderNumber::Phone(m.from.from.clone())
        } else {
            SenderNumber::HiddenLid(m.from.from.clone())
        },
        sender_lid: m.from.from_lid.clone(),
        push_name: m.push_name.clone(),
        group: m
            .is_group
            .then(|| m.group_name.clone().unwrap_or_else(|| m.chat.clone())),
        text: m.text.clone(),
        edited: false,
        deleted: false,
        action: match &m.event {
            InboundEvent::Message => m.replaces.as_ref().map(|target| LineAction::Replaces {
                target: target.clone(),
            }),
            InboundEvent::Edited { target } => Some(LineAction::Edit {
                target: target.clone(),
            }),
            InboundEvent::Revoked { target, author } => Some(LineAction::Delete {
                target: target.clone(),
                author: author.as_ref().map(shown_as),
            }),
            InboundEvent::Reaction { target, .. } => Some(LineAction::Reaction {
                target: target.clone(),
                quote: None,
            }),
            InboundEvent::Call { video, rejected } => Some(LineAction::Call {
                video: *video,
                rejected: *rejected,
            }),
        },
    }
}
