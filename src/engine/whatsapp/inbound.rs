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
    Author, ContentKind, InboundEvent, InboundSink, IncomingMedia, IncomingMessage, MediaContent,
    MediaMode,
};
use crate::engine::phone::{self, Lookups};
use crate::media_store::{MediaMeta, MediaStore, PartialMedia};
use crate::paths::SessionId;

/// A download slower than this is forwarded without its bytes...
const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);
/// ... unless it is large (URL mode takes files up to 100 MiB): then it
/// may take as long as this rate needs (100 MiB: about 13 minutes).
const SLOWEST_MEDIA_BYTES_PER_SECOND: u64 = 128 * 1024;

#[derive(Clone)]
pub struct DurabilityHook {
    /// The session whose messages these are.
    pub session: SessionId,
    pub sink: Arc<dyn InboundSink>,
    pub groups: Arc<GroupCache>,
    /// Media above this many bytes is forwarded as metadata only.
    pub media_cap: u64,
    /// Where media goes for a session whose webhook carries URLs.
    pub media_store: Option<Arc<MediaStore>>,
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
            Extracted::Revoked { target, author } => {
                let author = match author {
                    None => None,
                    Some(author) => Some(self.deleted_by_admin(client, source, author).await?),
                };
                IncomingMessage {
                    event: InboundEvent::Revoked { target, author },
                    ..about(String::new()).await
                }
            }
            Extracted::Reaction { target, emoji } => IncomingMessage {
                event: InboundEvent::Reaction {
                    target,
                    emoji: emoji.clone(),
                },
                ..about(emoji).await
            },
        })
    }

    /// The author of a message someone else deleted, when that someone is
    /// an admin of the group it was in; `None` otherwise (a member cannot
    /// delete another's message: such a key is forged, and dropped). The
    /// group's admins are fetched again before a refusal (at most once a
    /// minute per group), so one just made admin is not refused.
    async fn deleted_by_admin(
        &self,
        client: &Arc<Client>,
        source: &MessageSource,
        author: String,
    ) -> Option<Author> {
        if !source.is_group {
            return None;
        }
        let deleter = source.sender.user.as_str();
        let unknown_group = || {
            tracing::warn!(
                "a delete in {} by {} is dropped: the group's admins cannot be fetched",
                source.chat,
                source.sender
            );
        };
        let Some(mut group) = self.groups.lookup(client, &source.chat).await else {
            unknown_group();
            return None;
        };
        if !group.is_admin(deleter)
            && let Some(fresh) = self.groups.refetch(client, &source.chat).await
        {
            group = fresh;
        }
        if !group.is_admin(deleter) {
            tracing::info!(
                "a delete of {author}'s message in {} by {}, who is not an admin there, is ignored",
                source.chat,
                source.sender
            );
            return None;
        }
        let user = phone::user_of(&author);
        let number = if phone::is_lid(&author) {
            group.numbers.number_of(user)
        } else {
            Some(user.to_string())
        };
        Some(Author {
            jid: author,
            number,
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
            group_jid,
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
        // A group call names its group, as a group message does.
        let source = MessageSource {
            chat: group_jid.clone().unwrap_or_else(|| call.from.to_non_ad()),
            sender: call.from.to_non_ad(),
            sender_alt: caller_pn.clone(),
            is_group: group_jid.is_some(),
            ..MessageSource::default()
        };
        let (from, group_name) = self.resolve_sender(client, &source).await;
        let notice = IncomingMessage {
            chat: source.chat.to_string(),
            is_group: source.is_group,
            group_name,
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
        let content = match (&self.media_store, self.sink.media_mode()) {
            (Some(store), MediaMode::Url) => self.download_to_disk(client, media, store).await,
            _ => self.download_to_memory(client, media).await,
        };
        IncomingMedia {
            mimetype: media.mimetype(),
            filename: media.filename(),
            content,
        }
    }

    /// The bytes, for base64 in the webhook, under the (smaller) cap for
    /// what rides inside a POST.
    async fn download_to_memory(&self, client: &Arc<Client>, media: &MediaRef) -> MediaContent {
        if let Some(refused) = over_cap(media, self.media_cap) {
            return refused;
        }
        // The declared size is the sender's word: the download itself stops
        // once it passes the cap, so a sender who lies cannot make us hold
        // more than the cap in memory.
        let writer = CappedBuffer::new(self.media_cap);
        let over_cap = writer.over_cap.clone();
        let download = client.download_to_writer(downloadable(media), writer);
        match tokio::time::timeout(MEDIA_TIMEOUT, download).await {
            Ok(Ok(buffer)) => MediaContent::Bytes(buffer.bytes.into_inner()),
            Ok(Err(_)) if over_cap.load(std::sync::atomic::Ordering::SeqCst) => {
                MediaContent::Omitted(format!(
                    "not included: more than the {} byte cap",
                    self.media_cap
                ))
            }
            Ok(Err(e)) => MediaContent::Omitted(format!("download failed: {e}")),
            Err(_) => MediaContent::Omitted("download timed out".to_string()),
        }
    }

    /// Streamed to a file in the media store, for a URL in the webhook.
    async fn download_to_disk(
        &self,
        client: &Arc<Client>,
        media: &MediaRef,
        store: &Arc<MediaStore>,
    ) -> MediaContent {
        if let Some(refused) = over_cap(media, store.max_file_bytes()) {
            return refused;
        }
        let partial = match store.create() {
            Ok(partial) => DiskWriter(partial),
            Err(e) => return MediaContent::Omitted(format!("cannot store media: {e}")),
        };
        let download = client.download_to_writer(downloadable(media), partial);
        let allowed = media.size().map_or(MEDIA_TIMEOUT, |size| {
            MEDIA_TIMEOUT.max(Duration::from_secs(size / SLOWEST_MEDIA_BYTES_PER_SECOND))
        });
        let DiskWriter(partial) = match tokio::time::timeout(allowed, download).await {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => return MediaContent::Omitted(format!("download failed: {e}")),
            Err(_) => return MediaContent::Omitted("download timed out".to_string()),
        };
        let meta = MediaMeta {
            session: Some(self.session.to_string()),
            mimetype: media.mimetype(),
            filename: media.filename(),
            size: 0,
            created_ms: 0,
        };
        let store = store.clone();
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Renames, an fsync and the budget's sweep: off the runtime's threads.
        match tokio::task::spawn_blocking(move || store.keep(partial, meta, now_ms)).await {
            Ok(Ok(stored)) => MediaContent::Stored(stored),
            Ok(Err(e)) => MediaContent::Omitted(format!("cannot store media: {e}")),
            Err(e) => MediaContent::Omitted(format!("cannot store media: {e}")),
        }
    }
}

/// Refused before downloading when the sender declares more than `cap`.
fn over_cap(media: &MediaRef, cap: u64) -> Option<MediaContent> {
    let size = media.size().filter(|&s| s > cap)?;
    Some(MediaContent::Omitted(format!(
        "not included: {size} bytes is over the {cap} byte cap"
    )))
}

fn downloadable(media: &MediaRef) -> &dyn whatsapp_rust::wacore::download::Downloadable {
    match media {
        MediaRef::Image(m) => m.as_ref(),
        MediaRef::Video(m) => m.as_ref(),
        MediaRef::Audio(m) => m.as_ref(),
        MediaRef::Document(m) => m.as_ref(),
        MediaRef::Sticker(m) => m.as_ref(),
    }
}

/// A media store file as the library's download sink.
struct DiskWriter(PartialMedia);

impl std::io::Write for DiskWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl std::io::Seek for DiskWriter {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(to)
    }
}

impl whatsapp_rust::wacore::download::DownloadWriter for DiskWriter {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.0.truncate(len)
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
