//! What the views (TUI, API, headless log) see of a session.
//!
//! These types also cross a process boundary, to an attached dashboard
//! (`console/`), so they are serde types; an `Instant` crosses as the time
//! left until it (see `remaining`).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::close::HaltReason;
use crate::paths::SessionId;

/// The pairing QR currently on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrOffer {
    /// The payload to encode (`ref,noise,identity,adv,type`).
    pub payload: String,
    #[serde(with = "remaining", rename = "expires_in_ms")]
    pub expires_at: Instant,
    /// 1-based; WhatsApp offers six codes per pairing attempt.
    pub index: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Connecting,
    QrScanRequired(QrOffer),
    /// Pairing by phone number: the 8-character code to type on the phone.
    PairingCode {
        code: String,
        #[serde(with = "remaining", rename = "expires_in_ms")]
        expires_at: Instant,
    },
    /// The phone asked for a passkey before linking this device.
    PasskeyRequired,
    Connected,
    /// Waiting to retry; `attempt` and `next_retry_at` say when.
    Disconnected,
    Halted(HaltReason),
    LoggedOut,
    Stopped,
}

impl SessionState {
    /// The old Node bridge's status strings, which the ERP side compares.
    pub fn api_status(&self) -> &'static str {
        match self {
            SessionState::Connecting => "Connecting",
            SessionState::QrScanRequired(_)
            | SessionState::PairingCode { .. }
            | SessionState::PasskeyRequired => "QR Scan Required",
            SessionState::Connected => "Connected",
            SessionState::Disconnected | SessionState::Halted(_) | SessionState::Stopped => {
                "Disconnected"
            }
            SessionState::LoggedOut => "Logged Out",
        }
    }

    /// A short label for badges and logs (no colour needed to read it).
    pub fn label(&self) -> &'static str {
        match self {
            SessionState::Connecting => "Connecting",
            SessionState::QrScanRequired(_) => "QR Scan Required",
            SessionState::PairingCode { .. } => "Pairing Code",
            SessionState::PasskeyRequired => "Passkey Required",
            SessionState::Connected => "Connected",
            SessionState::Disconnected => "Disconnected",
            SessionState::Halted(_) => "Halted",
            SessionState::LoggedOut => "Logged Out",
            SessionState::Stopped => "Stopped",
        }
    }
}

/// How the last connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastClose {
    pub status: u16,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub id: SessionId,
    pub state: SessionState,
    /// Failed reconnect attempts since the last Connected.
    pub attempt: u32,
    #[serde(with = "remaining::option", rename = "next_retry_in_ms")]
    pub next_retry_at: Option<Instant>,
    pub last_close: Option<LastClose>,
    /// The linked account's phone number (digits), once known.
    pub phone: Option<String>,
    /// The linked account's LID (digits), once known.
    pub lid: Option<String>,
    pub has_webhook: bool,
    /// When WhatsApp last answered (a ping, or the login): how fresh the
    /// link is known to be. On the wire negative: it is in the past.
    #[serde(default, with = "remaining::option", rename = "last_answer_in_ms")]
    pub last_answer_at: Option<Instant>,
    /// Webhook deliveries waiting, when forwarding is on.
    pub backlog: Option<BacklogInfo>,
    /// The last offline sync was cut short by a disconnect (until one
    /// finishes): the server announced this many items. Nothing is lost
    /// (what was not acknowledged comes again at the next login), but the
    /// catch-up is not over.
    #[serde(default)]
    pub interrupted_sync: Option<u32>,
    /// Messages that could not be read, per peer (phone digits, or LID
    /// digits when hidden), most first: many from one peer is a broken
    /// session worth seeing.
    #[serde(default)]
    pub unreadable: Vec<PeerFailures>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerFailures {
    pub peer: String,
    pub count: u64,
}

impl SessionSnapshot {
    pub fn new(id: SessionId) -> Self {
        SessionSnapshot {
            id,
            state: SessionState::Connecting,
            attempt: 0,
            next_retry_at: None,
            last_close: None,
            phone: None,
            lid: None,
            has_webhook: false,
            last_answer_at: None,
            backlog: None,
            interrupted_sync: None,
            unreadable: Vec::new(),
        }
    }
}

/// A session's webhook backlog, with the oldest delivery's age as an
/// `Instant` so views compute "oldest 3m" from the `now` they are given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogInfo {
    pub pending: u64,
    pub dead: u64,
    /// On the wire negative: it is in the past.
    #[serde(with = "remaining::option", rename = "oldest_in_ms")]
    pub oldest_at: Option<Instant>,
    /// The outbox cannot be written (disk full, say): incoming messages
    /// stay unacknowledged at WhatsApp, deliveries wait.
    pub write_error: Option<String>,
    /// The session's other targets' queues (NATS beside the webhook).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub beside: Vec<TargetBacklog>,
}

/// Another target's backlog for the same session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetBacklog {
    /// As logs name it: "NATS".
    pub target: String,
    pub backlog: BacklogInfo,
}

impl BacklogInfo {
    pub fn oldest_age(&self, now: Instant) -> Option<std::time::Duration> {
        self.oldest_at.map(|at| now.saturating_duration_since(at))
    }
}

/// Who sent a message, as honestly as it can be known: a LID is never
/// passed off as a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderNumber {
    /// Phone number digits.
    Phone(String),
    /// Only the LID is known (digits): the number is hidden.
    HiddenLid(String),
}

/// An incoming message as the views show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub session: SessionId,
    pub id: String,
    /// Unix seconds, as WhatsApp stamped it.
    pub timestamp: i64,
    pub sender: SenderNumber,
    /// The LID digits the sender came as, if any: with a phone number in
    /// `sender`, a mapping learned, which earlier hidden ones can use.
    pub sender_lid: Option<String>,
    pub push_name: Option<String>,
    /// Group name (or id when the name is unknown) for group messages.
    pub group: Option<String>,
    /// Text, or a marker such as `[image]` for media; for an edit the new
    /// text, for a reaction the emoji.
    pub text: String,
    /// The sender changed this message after it was shown.
    pub edited: bool,
    pub deleted: bool,
    /// Set when the line is not a message but something done to one (or
    /// a call).
    pub action: Option<LineAction>,
}

/// What a stream line that is not a message reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LineAction {
    Edit {
        target: String,
    },
    /// `author`: whose message, when not the deleter's own (a group
    /// admin's delete).
    Delete {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<SenderNumber>,
    },
    /// An empty emoji takes a reaction back; `quote` is the start of the
    /// message reacted to, when the stream still shows it.
    Reaction {
        target: String,
        quote: Option<String>,
    },
    Call {
        video: bool,
        rejected: bool,
    },
    /// The readable resend of an unreadable notice: it takes the
    /// notice's line.
    Replaces {
        target: String,
    },
}

/// Where `line` goes in a stream of `lines`: an edit or a delete of a
/// message still shown marks that message and adds no line (None); a
/// reaction quotes the message it is about; anything else is its own line.
pub fn place_line<'a>(
    mut lines: impl Iterator<Item = &'a mut std::sync::Arc<InboundMessage>>,
    line: std::sync::Arc<InboundMessage>,
) -> Option<std::sync::Arc<InboundMessage>> {
    let target = match &line.action {
        Some(
            LineAction::Edit { target }
            | LineAction::Delete { target, .. }
            | LineAction::Replaces { target },
        )
        | Some(LineAction::Reaction { target, .. }) => target,
        _ => return Some(line),
    };
    // Anyone may react to a message; only its sender edits, deletes or
    // resends it (ids are unique per sender, not per session), or a group's
    // admin deletes it, naming its author.
    let anyones = matches!(line.action, Some(LineAction::Reaction { .. }));
    let author = match &line.action {
        Some(LineAction::Delete {
            author: Some(author),
            ..
        }) => author,
        _ => &line.sender,
    };
    let shown = lines.find(|m| {
        m.session == line.session
            && m.id == *target
            && m.action.is_none()
            && (anyones || m.sender == *author)
    });
    let as_message = || {
        std::sync::Arc::new(InboundMessage {
            action: None,
            ..(*line).clone()
        })
    };
    let Some(shown) = shown else {
        if let Some(LineAction::Replaces { .. }) = &line.action {
            return Some(as_message());
        }
        return Some(line);
    };
    let mut marked = (**shown).clone();
    match &line.action {
        Some(LineAction::Replaces { .. }) => marked = (*as_message()).clone(),
        Some(LineAction::Edit { .. }) => {
            marked.text = line.text.clone();
            marked.edited = true;
        }
        Some(LineAction::Delete { .. }) => marked.deleted = true,
        _ => {
            let quote: String = shown.text.chars().take(40).collect();
            let mut reaction = (*line).clone();
            reaction.action = Some(LineAction::Reaction {
                target: target.clone(),
                quote: Some(quote),
            });
            return Some(std::sync::Arc::new(reaction));
        }
    }
    *shown = std::sync::Arc::new(marked);
    None
}

/// Broadcast to every view.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    SessionChanged(SessionSnapshot),
    /// The session was deleted: views drop it.
    SessionRemoved(SessionId),
    Message(std::sync::Arc<InboundMessage>),
    /// The session's webhook backlog changed.
    Backlog {
        session: SessionId,
        backlog: BacklogInfo,
    },
}

/// An `Instant` as the milliseconds from now until it (negative once it
/// has passed). Instants mean nothing in another process; the time left
/// does, so the receiver turns it back into an instant on its own clock and
/// countdowns read the same on both sides (give or take the transit time).
pub(crate) mod remaining {
    use std::time::{Duration, Instant};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    fn to_millis(at: Instant) -> i64 {
        let now = crate::engine::now();
        match at.checked_duration_since(now) {
            Some(ahead) => ahead.as_millis().min(i64::MAX as u128) as i64,
            None => -(now.duration_since(at).as_millis().min(i64::MAX as u128) as i64),
        }
    }

    fn from_millis(millis: i64) -> Instant {
        let now = crate::engine::now();
        let offset = Duration::from_millis(millis.unsigned_abs());
        if millis >= 0 {
            now.checked_add(offset).unwrap_or(now)
        } else {
            now.checked_sub(offset).unwrap_or(now)
        }
    }

    pub fn serialize<S: Serializer>(at: &Instant, serializer: S) -> Result<S::Ok, S::Error> {
        to_millis(*at).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Instant, D::Error> {
        Ok(from_millis(i64::deserialize(deserializer)?))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            at: &Option<Instant>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            at.map(to_millis).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Instant>, D::Error> {
            Ok(Option::<i64>::deserialize(deserializer)?.map(from_millis))
        }
    }
}
