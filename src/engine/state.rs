//! What the views (TUI, API, headless log) see of a session.

use std::time::Instant;

use super::close::HaltReason;
use crate::paths::SessionId;

/// The pairing QR currently on offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrOffer {
    /// The payload to encode (`ref,noise,identity,adv,type`).
    pub payload: String,
    pub expires_at: Instant,
    /// 1-based; WhatsApp offers six codes per pairing attempt.
    pub index: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    Connecting,
    QrScanRequired(QrOffer),
    /// Pairing by phone number: the 8-character code to type on the phone.
    PairingCode {
        code: String,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastClose {
    pub status: u16,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    pub id: SessionId,
    pub state: SessionState,
    /// Failed reconnect attempts since the last Connected.
    pub attempt: u32,
    pub next_retry_at: Option<Instant>,
    pub last_close: Option<LastClose>,
    /// The linked account's phone number (digits), once known.
    pub phone: Option<String>,
    /// The linked account's LID (digits), once known.
    pub lid: Option<String>,
    pub has_webhook: bool,
    /// Webhook deliveries waiting, when forwarding is on.
    pub backlog: Option<BacklogInfo>,
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
            backlog: None,
        }
    }
}

/// A session's webhook backlog, with the oldest delivery's age as an
/// `Instant` so views compute "oldest 3m" from the `now` they are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BacklogInfo {
    pub pending: u64,
    pub dead: u64,
    pub oldest_at: Option<Instant>,
    /// The outbox cannot be written (disk full, say): incoming messages
    /// stay unacknowledged at WhatsApp, deliveries wait.
    pub write_error: Option<String>,
}

impl BacklogInfo {
    pub fn oldest_age(&self, now: Instant) -> Option<std::time::Duration> {
        self.oldest_at.map(|at| now.saturating_duration_since(at))
    }
}

/// Who sent a message, as honestly as it can be known: a LID is never
/// passed off as a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderNumber {
    /// Phone number digits.
    Phone(String),
    /// Only the LID is known (digits): the number is hidden.
    HiddenLid(String),
}

/// An incoming message as the views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Text, or a marker such as `[image]` for media.
    pub text: String,
}

/// Broadcast to every view.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    SessionChanged(SessionSnapshot),
    Message(std::sync::Arc<InboundMessage>),
    /// The session's webhook backlog changed.
    Backlog {
        session: SessionId,
        backlog: BacklogInfo,
    },
}
