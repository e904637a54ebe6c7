//! The inbound durability hook: turns the library's decrypted messages into
//! [`IncomingMessage`]s (resolving the sender's number, downloading media
//! under the size cap) and hands them to the engine's sink before the
//! library acknowledges them to the server.

use std::sync::Arc;
use std::time::Duration;

use whatsapp_rust::prelude::{Client, InboundMessage, MessageInfo};
use whatsapp_rust::types::message::MessageSource;
use whatsapp_rust::wacore::types::call::{CallAction, IncomingCall};
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{InboundDurabilityHook, Jid};

use super::content::{self, Extracted, MediaRef};
use super::group_info::GroupCache;
use crate::engine::backend::{
    ContentKind, InboundEvent, InboundSink, IncomingMedia, IncomingMessage,
};
use crate::engine::phone::{self, Lookups};

/// A download slower than this is forwarded without its bytes.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct DurabilityHook {
    pub sink: Arc<dyn InboundSink>,
    pub groups: Arc<GroupCache>,
    /// Media above this many bytes is forwarded as metadata only.
    pub media_cap: u64,
}

#[whatsapp_rust::async_trait]
impl InboundDurabilityHook for DurabilityHook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> whatsapp_rust::anyhow::Result<()> {
        let mut converted = Vec::with_capacity(batch.len());
        for message in batch {
            if let Some(incoming) = self.convert(&client, message).await {
                converted.push(incoming);
            }
        }
        // Err keeps the whole batch unacknowledged: WhatsApp redelivers it.
        self.sink
            .persist(&converted)
            .await
            .map_err(whatsapp_rust::anyhow::Error::msg)
    }
}

impl DurabilityHook {
    async fn convert(
        &self,
        client: &Arc<Client>,
        message: &InboundMessage,
    ) -> Option<IncomingMessage> {
        let info = &message.info;
        let source = &info.source;
        // Our own messages echoed from the phone are not customer messages.
        if source.is_from_me {
            return None;
        }
        let kind = if info.media_type.is_empty() {
            &info.r#type
        } else {
            &info.media_type
        };
        let about = |text| self.about(client, info, text);
        Some(match content::extract(&message.message, kind)? {
            Extracted::Message(content) => {
                let media = match &content.media {
                    Some(media) => Some(self.download(client, media).await),
                    None => None,
                };
                IncomingMessage {
                    kind: content.kind,
                    caption: content.caption,
                    media,
                    location: content.location,
                    contacts: content.contacts,
                    poll: content.poll,
                    quoted: content.quoted,
                    forwarded: content.forwarded,
                    ..about(content.text).await
                }
            }
            Extracted::Edited { target, text } => IncomingMessage {
                event: InboundEvent::Edited { target },
                ..about(text).await
            },
            Extracted::Revoked { target } => IncomingMessage {
                event: InboundEvent::Revoked { target },
                ..about(String::new()).await
            },
            Extracted::Reaction { target, emoji } => IncomingMessage {
                event: InboundEvent::Reaction {
                    target,
                    emoji: emoji.clone(),
                },
                ..about(emoji).await
            },
        })
    }

    /// A message the library could not decrypt: forwarded as a notice with
    /// the reason, never dropped in silence.
    pub async fn forward_unreadable(&self, client: &Arc<Client>, info: &MessageInfo, reason: &str) {
        let notice = IncomingMessage {
            unreadable: true,
            kind: ContentKind::Unknown,
            ..self
                .about(client, info, format!("[unreadable: {reason}]"))
                .await
        };
        if let Err(e) = self.sink.persist(std::slice::from_ref(&notice)).await {
            tracing::error!(
                "cannot queue the unreadable notice of message {}: {e}",
                info.id
            );
        }
    }

    /// A call: rejected (and the caller written to) when the session's
    /// policy says so, then forwarded as `call.received`. Only a ringing
    /// offer is rejected: one delivered late from the offline queue has
    /// already ended.
    pub async fn forward_call(&self, client: &Arc<Client>, call: &IncomingCall) {
        let CallAction::Offer {
            call_id,
            caller_pn,
            is_video,
            ..
        } = &call.action
        else {
            return;
        };
        let policy = self.sink.call_policy();
        let mut rejected = false;
        if policy.reject && !call.offline {
            match client.voip().reject(call).await {
                Ok(()) => rejected = true,
                Err(e) => tracing::warn!("cannot reject call {call_id}: {e}"),
            }
        }
        if rejected && let Some(reply) = policy.reply {
            let to = call.from.to_non_ad();
            let text = wa::Message {
                conversation: Some(reply),
                ..Default::default()
            };
            if let Err(e) = client.send_message(&to, text).await {
                tracing::warn!("cannot write to the caller of call {call_id}: {e}");
            }
        }
        let source = MessageSource {
            chat: call.from.to_non_ad(),
            sender: call.from.to_non_ad(),
            sender_alt: caller_pn.clone(),
            ..MessageSource::default()
        };
        let (from, _) = self.resolve_sender(client, &source).await;
        let notice = IncomingMessage {
            push_name: call.notify.clone().filter(|n| !n.is_empty()),
            timestamp: call.timestamp.timestamp(),
            event: InboundEvent::Call {
                video: *is_video,
                rejected,
            },
            ..IncomingMessage::new(
                call_id.clone(),
                source.sender.to_string(),
                from,
                String::new(),
            )
        };
        if let Err(e) = self.sink.persist(std::slice::from_ref(&notice)).await {
            tracing::error!("cannot queue call {call_id}: {e}");
        }
    }

    /// A message with `text` and what its envelope tells: ids, the sender's
    /// number, names, time.
    async fn about(
        &self,
        client: &Arc<Client>,
        info: &MessageInfo,
        text: String,
    ) -> IncomingMessage {
        let source = &info.source;
        let (from, group_name) = self.resolve_sender(client, source).await;
        IncomingMessage {
            chat: source.chat.to_string(),
            is_group: source.is_group,
            group_name,
            push_name: Some(info.push_name.clone()).filter(|n| !n.is_empty()),
            timestamp: info.timestamp.timestamp(),
            ..IncomingMessage::new(info.id.to_string(), source.sender.to_string(), from, text)
        }
    }

    /// The sender's number (in ARCHITECTURE.md's order) and the group's name.
    async fn resolve_sender(
        &self,
        client: &Arc<Client>,
        source: &MessageSource,
    ) -> (phone::Resolution, Option<String>) {
        let sender = source.sender.to_string();
        let sender_alt = source.sender_alt.as_ref().map(Jid::to_string);
        let stored_pn = if source.sender.is_lid() {
            match client.get_lid_pn_entry(&source.sender).await {
                Ok(entry) => entry.map(|e| e.phone_number.to_string()),
                Err(e) => {
                    tracing::warn!("LID lookup failed for a message: {e}");
                    None
                }
            }
        } else {
            None
        };
        let group = if source.is_group {
            self.groups.lookup(client, &source.chat).await
        } else {
            None
        };
        let participant_pn = group
            .as_ref()
            .and_then(|g| g.numbers.number_of(phone::user_of(&sender)));
        let from = phone::resolve(&Lookups {
            sender: &sender,
            sender_alt: sender_alt.as_deref(),
            stored_pn: stored_pn.as_deref(),
            participant_pn: participant_pn.as_deref(),
        });
        (from, group.map(|g| g.subject.clone()))
    }

    async fn download(&self, client: &Arc<Client>, media: &MediaRef) -> IncomingMedia {
        let mut incoming = IncomingMedia {
            mimetype: media.mimetype(),
            filename: media.filename(),
            content: Err(String::new()),
        };
        if let Some(size) = media.size().filter(|&s| s > self.media_cap) {
            incoming.content = Err(format!(
                "not included: {size} bytes is over the {} byte cap",
                self.media_cap
            ));
            return incoming;
        }
        let downloadable: &dyn whatsapp_rust::wacore::download::Downloadable = match media {
            MediaRef::Image(m) => m.as_ref(),
            MediaRef::Video(m) => m.as_ref(),
            MediaRef::Audio(m) => m.as_ref(),
            MediaRef::Document(m) => m.as_ref(),
            MediaRef::Sticker(m) => m.as_ref(),
        };
        // The declared size is the sender's word: the download itself stops
        // once it passes the cap, so a sender who lies cannot make us hold
        // more than the cap in memory.
        let writer = CappedBuffer::new(self.media_cap);
        let over_cap = writer.over_cap.clone();
        let download = client.download_to_writer(downloadable, writer);
        incoming.content = match tokio::time::timeout(MEDIA_TIMEOUT, download).await {
            Ok(Ok(buffer)) => Ok(buffer.bytes.into_inner()),
            Ok(Err(_)) if over_cap.load(std::sync::atomic::Ordering::SeqCst) => Err(format!(
                "not included: more than the {} byte cap",
                self.media_cap
            )),
            Ok(Err(e)) => Err(format!("download failed: {e}")),
            Err(_) => Err("download timed out".to_string()),
        };
        incoming
    }
}

/// An in-memory download sink that refuses to grow past `cap` bytes.
struct CappedBuffer {
    bytes: std::io::Cursor<Vec<u8>>,
    cap: u64,
    /// Set when a write would have passed the cap (the download then fails).
    over_cap: Arc<std::sync::atomic::AtomicBool>,
}

impl CappedBuffer {
    fn new(cap: u64) -> CappedBuffer {
        CappedBuffer {
            bytes: std::io::Cursor::new(Vec::new()),
            cap,
            over_cap: Arc::default(),
        }
    }
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.position() + buf.len() as u64 > self.cap {
            self.over_cap
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(std::io::Error::other("media is over the size cap"));
        }
        self.bytes.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for CappedBuffer {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.bytes.seek(to)
    }
}

impl whatsapp_rust::wacore::download::DownloadWriter for CappedBuffer {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.bytes
            .get_mut()
            .truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
}
