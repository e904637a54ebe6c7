//! The seam between the engine and WhatsApp: the real adapter
//! (`whatsapp.rs`) implements it over whatsapp-rust; tests can put a scripted
//! fake behind it to drive the supervisor on tokio's paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use super::close::CloseSignal;
use super::phone::Resolution;
use crate::paths::SessionId;
use crate::session_files::SessionFiles;

/// What a client reports, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaEvent {
    QrCode {
        payload: String,
        valid_for: Duration,
    },
    PairCode {
        code: String,
        valid_for: Duration,
    },
    PasskeyRequired,
    PairSuccess {
        phone: String,
        lid: Option<String>,
    },
    Connected {
        phone: Option<String>,
        lid: Option<String>,
    },
    /// WhatsApp answered one of our liveness pings: the link is there.
    Answered,
    /// At login, the server announced `items` that arrived while the
    /// session was away (messages, receipts, notifications): the offline
    /// sync begins.
    OfflineSyncAnnounced {
        items: u32,
    },
    /// The offline sync finished: what was announced has been delivered.
    OfflineSyncDone,
    /// A stream error that did not (yet) end the connection.
    StreamError {
        code: String,
    },
    /// Progress of messages we sent: "Sent", "Delivered" or "Read"
    /// (the old bridge's words), at `timestamp_ms`.
    MessageStatus {
        message_ids: Vec<String>,
        status: &'static str,
        timestamp_ms: i64,
    },
    Closed(CloseSignal),
}

pub type EventSink = mpsc::UnboundedSender<WaEvent>;

/// A decrypted incoming message, library-neutral, sender already resolved.
/// Besides messages proper it carries what a person does to one (`event`):
/// an edit, a delete for everyone, a reaction; and calls.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    /// The stanza id (for a call: the call id).
    pub id: String,
    /// Full JID strings; with `id` they identify a message for dedupe.
    pub chat: String,
    pub sender: String,
    pub is_group: bool,
    pub group_name: Option<String>,
    pub push_name: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
    pub from: Resolution,
    /// Text, caption, or a marker like `[image]` / `[unsupported: x]`; for
    /// an edit, the new text.
    pub text: String,
    pub kind: ContentKind,
    /// The caption of an image, video or document, when it has one.
    pub caption: Option<String>,
    pub media: Option<IncomingMedia>,
    pub location: Option<Location>,
    /// One card for `contact`, several for `contacts`.
    pub contacts: Vec<ContactCard>,
    pub poll: Option<Poll>,
    /// The quoted message of a reply.
    pub quoted: Option<Quoted>,
    /// WhatsApp marks it as forwarded.
    pub forwarded: bool,
    /// The library could not decrypt it (`text` says why); the real content
    /// may still follow under the same id once the sender resends it.
    pub unreadable: bool,
    /// The id of the unreadable notice this message is the readable resend
    /// of (the same id: the ERP updates the record it made for the notice).
    pub replaces: Option<String>,
    pub event: InboundEvent,
}

impl IncomingMessage {
    /// A 1:1 text message with nothing else known yet: callers fill in the
    /// rest with struct update syntax.
    pub fn new(id: String, sender: String, from: Resolution, text: String) -> IncomingMessage {
        IncomingMessage {
            id,
            chat: sender.clone(),
            sender,
            is_group: false,
            group_name: None,
            push_name: None,
            timestamp: 0,
            from,
            text,
            kind: ContentKind::Text,
            caption: None,
            media: None,
            location: None,
            contacts: Vec::new(),
            poll: None,
            quoted: None,
            forwarded: false,
            unreadable: false,
            replaces: None,
            event: InboundEvent::Message,
        }
    }
}

/// What an incoming item is: a message, or something done to one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InboundEvent {
    #[default]
    Message,
    /// The sender edited message `target`; `text` is its new text.
    Edited { target: String },
    /// The sender deleted message `target` for everyone: their own, or, as
    /// a group's admin, `author`'s.
    Revoked {
        target: String,
        author: Option<Author>,
    },
    /// The sender reacted to message `target`; an empty emoji takes a
    /// reaction back.
    Reaction { target: String, emoji: String },
    /// The sender calls; `rejected` when this session turned it down.
    Call { video: bool, rejected: bool },
}

/// The kind of content, as the webhook's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentKind {
    #[default]
    Text,
    Image,
    Video,
    Audio,
    Voice,
    Document,
    Sticker,
    Location,
    LiveLocation,
    Contact,
    Contacts,
    Poll,
    ButtonsReply,
    ListReply,
    Unknown,
}

impl ContentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Text => "text",
            ContentKind::Image => "image",
            ContentKind::Video => "video",
            ContentKind::Audio => "audio",
            ContentKind::Voice => "voice",
            ContentKind::Document => "document",
            ContentKind::Sticker => "sticker",
            ContentKind::Location => "location",
            ContentKind::LiveLocation => "live_location",
            ContentKind::Contact => "contact",
            ContentKind::Contacts => "contacts",
            ContentKind::Poll => "poll",
            ContentKind::ButtonsReply => "buttons_reply",
            ContentKind::ListReply => "list_reply",
            ContentKind::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCard {
    pub name: Option<String>,
    pub vcard: String,
    /// The phone numbers in the vCard, digits only (WhatsApp's own `waid`
    /// when the card has one).
    pub numbers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub name: String,
    pub options: Vec<String>,
    /// How many options a voter may pick (0: any number).
    pub selectable: u32,
}

/// Who wrote a message someone else acted on (a group admin's delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// As the action names them: `<digits>@lid` or `<digits>@s.whatsapp.net`.
    pub jid: String,
    /// Their phone digits, when known (the group's member list).
    pub number: Option<String>,
}

/// The message a reply quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub id: String,
    /// Its text or caption, when the reply carries it.
    pub text: Option<String>,
    /// Who wrote it (a JID), when the reply says.
    pub participant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMedia {
    pub mimetype: String,
    pub filename: Option<String>,
    pub content: MediaContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaContent {
    /// The bytes, for the webhook's base64 (the old bridge's way).
    Bytes(Vec<u8>),
    /// Kept on disk for the webhook's URL mode.
    Stored(crate::media_store::StoredMedia),
    /// Why the bytes are not included (over the size cap, failed).
    Omitted(String),
}

/// How a session's webhook carries media: the old bridge's base64 inside
/// the POST (default), or a URL on wabridge's API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    #[default]
    Base64,
    Url,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Full JID: `<digits>@s.whatsapp.net` or `<id>@g.us`.
    pub to: String,
    /// Text, or the caption of the media.
    pub text: String,
    pub media: Option<OutgoingMedia>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMedia {
    pub data: Vec<u8>,
    pub mimetype: String,
    pub filename: Option<String>,
    pub kind: MediaKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    VoiceNote,
    Document,
}

impl MediaKind {
    /// How the old bridge chose: by mimetype, ogg audio as a voice note.
    pub fn for_mimetype(mimetype: &str) -> MediaKind {
        let mimetype = mimetype.to_ascii_lowercase();
        if mimetype.starts_with("image/") {
            MediaKind::Image
        } else if mimetype.starts_with("video/") {
            MediaKind::Video
        } else if mimetype.starts_with("audio/ogg") {
            MediaKind::VoiceNote
        } else if mimetype.starts_with("audio/") {
            MediaKind::Audio
        } else {
            MediaKind::Document
        }
    }
}

/// What the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    /// Unix seconds.
    pub timestamp: i64,
}

/// Lookups the old bridge offered, answered by the live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Phone digits to check.
    CheckNumbers(Vec<String>),
    /// A full JID.
    ContactInfo(String),
    /// A group JID.
    GroupMetadata(String),
    /// A full JID whose presence updates we want.
    SubscribePresence(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Numbers(Vec<NumberCheck>),
    Contact(ContactInfo),
    Group(GroupInfo),
    Subscribed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheck {
    pub phone: String,
    pub exists: bool,
    pub jid: Option<String>,
    pub lid: Option<String>,
    pub is_business: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInfo {
    pub jid: String,
    pub lid: Option<String>,
    pub status: Option<String>,
    pub picture_id: Option<String>,
    pub is_business: bool,
    pub verified_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: String,
    pub subject: String,
    pub creation: Option<u64>,
    pub participants: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub jid: String,
    /// Phone digits when the group tells them (LID groups do, per member).
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub admin: bool,
}

/// Where a client puts decrypted messages *before* they are acknowledged
/// to WhatsApp: an error keeps them unacknowledged, so the server delivers
/// them again on the next connect.
pub trait InboundSink: Send + Sync + 'static {
    /// Resolves once the batch is on disk (Ok) or could not be (Err). Async,
    /// so that waiting for the disk never holds one of the runtime's few
    /// worker threads.
    fn persist<'a>(&'a self, batch: &'a [IncomingMessage]) -> PersistFuture<'a>;

    /// What to do with a call, asked when one comes in (the operator may
    /// have changed it since the session started).
    fn call_policy(&self) -> CallPolicy {
        CallPolicy::default()
    }

    /// How the session's webhook carries media, asked per media message.
    fn media_mode(&self) -> MediaMode {
        MediaMode::default()
    }
}

/// A session's answer to calls: let them ring (default), or reject them
/// and send the caller `reply` when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallPolicy {
    pub reject: bool,
    pub reply: Option<String>,
}

pub type PersistFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Options for building a client over a session's store.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Pair by phone-number code instead of (alongside) the QR.
    pub pair_phone: Option<String>,
    /// Receives every incoming message durably before its ack.
    pub inbound: Option<std::sync::Arc<dyn InboundSink>>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("pair_phone", &self.pair_phone)
            .field("inbound", &self.inbound.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store exists but cannot be opened: it is moved aside.
    #[error("session store unreadable: {0}")]
    StoreUnreadable(String),
    #[error("{0}")]
    Other(String),
}

pub trait WaBackend: Send + Sync + 'static {
    type Client: WaClient;

    /// Builds a client over the session's store; its events go to `events`.
    fn open(
        &self,
        files: &SessionFiles,
        options: OpenOptions,
        events: EventSink,
    ) -> impl Future<Output = Result<Self::Client, OpenError>> + Send;

    /// Deletes the credentials `id` keeps outside its session folder (the
    /// supervisor deletes that folder's store itself), on an explicit
    /// logout only. The SQLite backend keeps everything in the folder:
    /// nothing to do. A backend over a shared database deletes the
    /// session's rows there, and refuses (Err) when this host no longer
    /// holds the session.
    fn delete_credentials(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = id;
        async { Ok(()) }
    }

    /// Whether WhatsApp's server can be reached right now: a TCP connect,
    /// nothing more, that got through `within`. Asked twice a second while
    /// sessions wait out a network failure.
    fn server_reachable(&self, within: Duration) -> impl Future<Output = bool> + Send;
}

/// One client over one store. Cheap to clone (a shared handle), so the
/// connection can run on its own task while the supervisor keeps a handle
/// for operator commands.
pub trait WaClient: Clone + Send + Sync + 'static {
    /// One connection: connect, serve until it closes, return. Callable
    /// again after it returned, unless the client was disconnected.
    fn run(&self) -> impl Future<Output = ()> + Send;
    /// True once the store holds a linked device (set during pairing,
    /// before the library reports `PairSuccess`).
    fn is_registered(&self) -> bool;
    /// Ends the connection for good, keeping the credentials.
    fn disconnect(&self) -> impl Future<Output = ()> + Send;
    /// Unlinks the device when connected, then disconnects.
    fn logout(&self) -> impl Future<Output = ()> + Send;
    /// Sends a message on the live connection.
    fn send(&self, message: Outgoing) -> impl Future<Output = Result<Sent, String>> + Send;
    /// Answers a lookup on the live connection.
    fn query(&self, query: Query) -> impl Future<Output = Result<Answer, String>> + Send;
}
