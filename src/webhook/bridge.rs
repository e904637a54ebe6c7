//! The engine's outbound seam, spoken as the old bridge's webhooks: which
//! session states are posted as `connection.update` (and once each), how a
//! message becomes a `messages.upsert` entry, what makes two deliveries of
//! one message the same (the dedupe key).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::deliver::Transport;
use super::deliver::now_ms;
use super::hub::Hub;
use super::payload::{
    WebhookEvent, WireAuthor, WireContact, WireLocation, WireMedia, WireMessage, WirePerson,
    WirePoll, WireQuoted, WireReply,
};
use crate::engine::backend::{InboundEvent, IncomingMedia, IncomingMessage, MediaContent};
use crate::engine::outbound::{DeadLetter, Outbound, OutboundError, OutboundFuture};
use crate::engine::phone;
use crate::engine::{BacklogInfo, SessionSnapshot, SessionState};
use crate::paths::SessionId;
use crate::session_files::SessionSettings;

/// The statuses the old bridge posted as `connection.update`.
const WEBHOOK_STATUSES: [&str; 4] = [
    "Connected",
    "QR Scan Required",
    "Disconnected",
    "Logged Out",
];

/// The status last posted per running session, so a retry loop posts
/// "Disconnected" once. Forgotten when the session's task stops, so its
/// next start posts afresh, as the old bridge did.
#[derive(Default)]
pub(super) struct PostedStatuses(Mutex<HashMap<SessionId, &'static str>>);

impl PostedStatuses {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, &'static str>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Transport> Outbound for Hub<T> {
    fn configure(&self, session: &SessionId, settings: &SessionSettings) {
        self.set_target(session, self.target_of(settings));
    }

    fn persist_messages<'a>(
        &'a self,
        session: &'a SessionId,
        batch: &'a [IncomingMessage],
    ) -> OutboundFuture<'a, ()> {
        Box::pin(async move {
            let events: Vec<(WebhookEvent, String)> = batch
                .iter()
                .map(|m| (webhook_event(m), dedupe_key(session, m)))
                .collect();
            let refs: Vec<(&WebhookEvent, Option<&str>)> = events
                .iter()
                .map(|(event, key)| (event, Some(key.as_str())))
                .collect();
            self.publish_batch(session, &refs)
                .await
                .map(|_| ())
                .map_err(|e| OutboundError(format!("cannot queue {} message(s): {e}", batch.len())))
        })
    }

    fn session_changed(&self, snapshot: &SessionSnapshot) {
        let mut posted = self.posted().lock();
        if snapshot.state == SessionState::Stopped {
            posted.remove(&snapshot.id);
            drop(posted);
            self.session_stopped(&snapshot.id);
            return;
        }
        let status = snapshot.state.api_status();
        if posted.get(&snapshot.id) == Some(&status) || !WEBHOOK_STATUSES.contains(&status) {
            return;
        }
        let error = match &snapshot.state {
            SessionState::Halted(reason) => Some(reason.describe(crate::engine::now())),
            SessionState::Disconnected => {
                snapshot.last_close.as_ref().map(|c| c.description.clone())
            }
            _ => None,
        };
        posted.insert(snapshot.id.clone(), status);
        drop(posted);
        self.publish_detached(
            &snapshot.id,
            &WebhookEvent::ConnectionUpdate { status, error },
        );
    }

    fn message_status(
        &self,
        session: &SessionId,
        message_id: &str,
        status: &'static str,
        at_ms: i64,
    ) {
        let event = WebhookEvent::MessageStatus {
            message_id: message_id.to_string(),
            status,
            timestamp: at_ms,
        };
        self.publish_detached(session, &event);
    }

    fn forget<'a>(&'a self, session: &'a SessionId) -> OutboundFuture<'a, u64> {
        self.posted().lock().remove(session);
        Box::pin(async move {
            self.forget_session(session)
                .await
                .map_err(|e| OutboundError(e.to_string()))
        })
    }

    fn flush(&self) -> OutboundFuture<'_, ()> {
        Box::pin(async move {
            Hub::flush(self)
                .await
                .map_err(|e| OutboundError(e.to_string()))
        })
    }

    fn backlog(&self, session: &SessionId) -> BacklogInfo {
        let backlog = Hub::backlog(self, session);
        // The outbox counts ages in wall-clock milliseconds; views want an
        // instant on the engine's clock.
        let (now, now_ms) = (crate::engine::now(), now_ms());
        BacklogInfo {
            pending: backlog.pending,
            dead: backlog.dead,
            oldest_at: backlog.oldest_ms.map(|ms| {
                let age = std::time::Duration::from_millis((now_ms - ms).max(0) as u64);
                now.checked_sub(age).unwrap_or(now)
            }),
            write_error: backlog.write_error,
            beside: Vec::new(),
        }
    }

    fn target_name(&self) -> &'static str {
        T::NAME
    }

    fn backlog_changes(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<SessionId>> + Send + '_>> {
        Box::pin(self.changed_sessions())
    }

    fn dead_letters<'a>(&'a self, session: &'a SessionId) -> OutboundFuture<'a, Vec<DeadLetter>> {
        Box::pin(async move {
            Hub::dead_letters(self, session)
                .await
                .map_err(|e| OutboundError(e.to_string()))
        })
    }

    fn replay<'a>(
        &'a self,
        session: &'a SessionId,
        delivery_id: &'a str,
    ) -> OutboundFuture<'a, bool> {
        Box::pin(async move {
            Hub::replay(self, session, delivery_id)
                .await
                .map_err(|e| OutboundError(e.to_string()))
        })
    }
}

/// Stanza ids are unique only within a (chat, sender): the key has all three.
/// An unreadable notice has a key of its own, so that the real message,
/// resent under the same id, is still delivered after it.
pub fn dedupe_key(session: &SessionId, m: &IncomingMessage) -> String {
    let notice = if m.unreadable { "|unreadable" } else { "" };
    format!("{session}|{}|{}|{}{notice}", m.chat, m.sender, m.id)
}

/// The webhook event an incoming item makes: a message is a
/// `messages.upsert` of one, an action on a message or a call an event of
/// its own.
pub fn webhook_event(m: &IncomingMessage) -> WebhookEvent {
    let by = || WirePerson {
        from: m.from.from.clone(),
        from_lid: m.from.from_lid.clone(),
        from_resolved: m.from.resolved,
        push_name: m.push_name.clone(),
        group_id: m.is_group.then(|| m.chat.clone()),
        replaces: m.replaces.clone(),
    };
    match &m.event {
        InboundEvent::Message => WebhookEvent::MessagesUpsert(vec![wire_message(m)]),
        InboundEvent::Edited { target } => WebhookEvent::MessageEdited {
            message_id: target.clone(),
            text: m.text.clone(),
            edited_at: m.timestamp,
            by: by(),
        },
        InboundEvent::Revoked { target, author } => WebhookEvent::MessageRevoked {
            message_id: target.clone(),
            revoked_at: m.timestamp,
            by: by(),
            author: author.as_ref().map(|a| WireAuthor {
                from: a.number.clone(),
                from_lid: phone::is_lid(&a.jid).then(|| phone::user_of(&a.jid).to_string()),
            }),
        },
        InboundEvent::Reaction { target, emoji } => WebhookEvent::MessageReaction {
            message_id: target.clone(),
            emoji: emoji.clone(),
            removed: emoji.is_empty(),
            timestamp: m.timestamp,
            by: by(),
        },
        InboundEvent::Call { video, rejected } => WebhookEvent::CallReceived {
            call_id: m.id.clone(),
            video: *video,
            rejected: *rejected,
            timestamp: m.timestamp,
            by: by(),
        },
    }
}

/// Base64 bytes (the old bridge's), a URL on our API, or why neither.
fn wire_media(media: &IncomingMedia) -> WireMedia {
    use base64::Engine as _;
    let mut wire = WireMedia {
        data: None,
        mimetype: media.mimetype.clone(),
        filename: media.filename.clone(),
        omitted: None,
        url: None,
        size: None,
        expires_at: None,
    };
    match &media.content {
        MediaContent::Bytes(bytes) => {
            wire.data = Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        MediaContent::Stored(stored) => {
            wire.url = Some(stored.url.clone());
            wire.size = Some(stored.size);
            wire.expires_at = Some(stored.expires_at);
        }
        MediaContent::Omitted(why) => wire.omitted = Some(why.clone()),
    }
    wire
}

pub fn wire_message(m: &IncomingMessage) -> WireMessage {
    use crate::engine::backend::ContentKind;
    WireMessage {
        id: m.id.clone(),
        from: m.from.from.clone(),
        text: m.text.clone(),
        timestamp: m.timestamp,
        push_name: m.push_name.clone(),
        media: m.media.as_ref().map(wire_media),
        is_group: m.is_group,
        group_id: m.is_group.then(|| m.chat.clone()),
        group_name: m.group_name.clone(),
        reply_to: m.quoted.as_ref().map(|quoted| WireReply {
            message_id: quoted.id.clone(),
            text: quoted.text.clone(),
        }),
        from_lid: m.from.from_lid.clone(),
        from_resolved: m.from.resolved,
        // Left out for text, so a text message reads as the old bridge's.
        kind: (m.kind != ContentKind::Text).then(|| m.kind.as_str()),
        caption: m.caption.clone(),
        location: m.location.as_ref().map(|l| WireLocation {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name.clone(),
            address: l.address.clone(),
        }),
        contacts: m
            .contacts
            .iter()
            .map(|c| WireContact {
                name: c.name.clone(),
                numbers: c.numbers.clone(),
                vcard: c.vcard.clone(),
            })
            .collect(),
        poll: m.poll.as_ref().map(|p| WirePoll {
            name: p.name.clone(),
            options: p.options.clone(),
            selectable_count: p.selectable,
        }),
        quoted: m.quoted.as_ref().map(|q| {
            // A LID is never passed off as a number.
            let digits = |lid: bool| {
                q.participant
                    .as_deref()
                    .filter(|jid| phone::is_lid(jid) == lid)
                    .map(|jid| phone::user_of(jid).to_string())
            };
            WireQuoted {
                message_id: q.id.clone(),
                text: q.text.clone(),
                from: digits(false),
                from_lid: digits(true),
            }
        }),
        forwarded: m.forwarded,
        unreadable: m.unreadable,
        replaces: m.replaces.clone(),
    }
}
