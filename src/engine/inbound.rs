//! A session's incoming messages: persisted to the webhook outbox (the
//! durability point: WhatsApp gets its ack only after this succeeded), then
//! shown to the views.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::backend::{InboundSink, IncomingMessage, PersistFuture};
use super::phone::Source;
use super::state::{EngineEvent, InboundMessage, Sender};
use crate::paths::SessionId;
use crate::webhook::hub::WebhookHub;
use crate::webhook::payload::{WebhookEvent, WireMedia, WireMessage, WireReply};

pub(crate) struct MessageForwarder {
    pub(crate) session: SessionId,
    pub(crate) hooks: Option<Arc<WebhookHub>>,
    pub(crate) events: broadcast::Sender<EngineEvent>,
}

impl InboundSink for MessageForwarder {
    fn persist<'a>(&'a self, batch: &'a [IncomingMessage]) -> PersistFuture<'a> {
        Box::pin(self.persist_batch(batch))
    }
}

impl MessageForwarder {
    async fn persist_batch(&self, batch: &[IncomingMessage]) -> Result<(), String> {
        for message in batch {
            if message.from.source == Source::Participant
                && let Some(lid) = &message.from.from_lid
            {
                tracing::info!(
                    "LID message - using participant: {} instead of LID: {lid}",
                    message.from.from
                );
            }
        }
        if let Some(hooks) = &self.hooks {
            let events: Vec<(WebhookEvent, String)> = batch
                .iter()
                .map(|m| {
                    (
                        WebhookEvent::MessagesUpsert(vec![wire_message(m)]),
                        dedupe_key(&self.session, m),
                    )
                })
                .collect();
            let refs: Vec<(&WebhookEvent, Option<&str>)> = events
                .iter()
                .map(|(event, key)| (event, Some(key.as_str())))
                .collect();
            hooks
                .publish_batch(&self.session, &refs)
                .await
                .map_err(|e| format!("cannot queue {} message(s): {e}", batch.len()))?;
        }
        // Only after everything is on disk do the views hear about it.
        for message in batch {
            let _ = self
                .events
                .send(EngineEvent::Message(Arc::new(view(&self.session, message))));
        }
        Ok(())
    }
}

/// Stanza ids are unique only within a (chat, sender): the key has all three.
/// An unreadable notice has a key of its own, so that the real message,
/// resent under the same id, is still delivered after it.
pub fn dedupe_key(session: &SessionId, m: &IncomingMessage) -> String {
    let notice = if m.unreadable { "|unreadable" } else { "" };
    format!("{session}|{}|{}|{}{notice}", m.chat, m.sender, m.id)
}

pub fn wire_message(m: &IncomingMessage) -> WireMessage {
    use base64::Engine as _;
    WireMessage {
        id: m.id.clone(),
        from: m.from.from.clone(),
        text: m.text.clone(),
        timestamp: m.timestamp,
        push_name: m.push_name.clone(),
        media: m.media.as_ref().map(|media| WireMedia {
            data: media
                .content
                .as_ref()
                .ok()
                .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
            mimetype: media.mimetype.clone(),
            filename: media.filename.clone(),
            omitted: media.content.as_ref().err().cloned(),
        }),
        is_group: m.is_group,
        group_id: m.is_group.then(|| m.chat.clone()),
        group_name: m.group_name.clone(),
        reply_to: m.reply_to.as_ref().map(|(id, text)| WireReply {
            message_id: id.clone(),
            text: text.clone(),
        }),
        from_lid: m.from.from_lid.clone(),
        from_resolved: m.from.resolved,
    }
}

fn view(session: &SessionId, m: &IncomingMessage) -> InboundMessage {
    InboundMessage {
        session: session.clone(),
        id: m.id.clone(),
        timestamp: m.timestamp,
        sender: if m.from.resolved {
            Sender::Phone(m.from.from.clone())
        } else {
            Sender::HiddenLid(m.from.from.clone())
        },
        sender_lid: m.from.from_lid.clone(),
        push_name: m.push_name.clone(),
        group: m
            .is_group
            .then(|| m.group_name.clone().unwrap_or_else(|| m.chat.clone())),
        text: m.text.clone(),
    }
}
