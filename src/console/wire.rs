//! The dashboard feed's wire format: JSON, one frame per line, over the
//! service's Unix socket (`<data dir>/wabridge.sock`).
//!
//! A connection goes:
//! 1. the service sends `hello` (its protocol number, version, pid);
//! 2. the dashboard answers with its own `hello`; a dashboard whose protocol
//!    differs gets `refused` and the connection closes (each side names both
//!    numbers, so an operator knows which binary to update);
//! 3. the service sends one `backfill` (every session, the buffered messages,
//!    the log tail), in a cluster a `cluster` frame (every session of the
//!    cluster, its node and reported state), then live frames as things
//!    happen (a `cluster` frame each time the service reads the cluster);
//! 4. the dashboard sends requests (reconnect, logout, pair by code, add a
//!    session, set a webhook or a NATS subject) at any time; a request that
//!    fails comes back as a `notice` to that dashboard only.
//!
//! `PROTOCOL` changes whenever a frame changes incompatibly; the snapshot
//! test in `tests/it/console.rs` pins the JSON, so a change cannot slip in
//! unnoticed. Instants travel as milliseconds left (`engine::state`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::cluster::view::ClusterSnapshot;
use crate::engine::{BacklogInfo, InboundMessage, SessionSnapshot};
use crate::paths::SessionId;

/// The version of this format (2: the `cluster` frame; 3: the
/// `set_nats_subject` request; 4: message lines that mark edits, deletes,
/// reactions, calls and resends, and the snapshot's unreadable peers).
pub const PROTOCOL: u32 = 4;

/// The longest line a dashboard may send: requests are small.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// The longest line the service may send: a backfill carries the whole
/// message buffer (10,000 messages are a few MiB).
pub const MAX_SERVICE_LINE: usize = 256 * 1024 * 1024;

/// One line of the service's log, numbered so that a dashboard that
/// re-attaches to the same service shows each line once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub text: String,
}

/// What a dashboard shows when it attaches: the state of everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// Which run of the service this is (it changes on restart).
    pub instance: u64,
    pub sessions: Vec<SessionSnapshot>,
    /// Oldest first.
    pub messages: Vec<Arc<InboundMessage>>,
    /// Oldest first.
    pub logs: Vec<LogLine>,
}

/// Service → dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServiceFrame {
    Hello {
        protocol: u32,
        /// `wabridge 0.1.0`
        service: String,
        pid: u32,
    },
    /// The dashboard cannot be served (its protocol differs); the
    /// connection closes after this.
    Refused {
        reason: String,
    },
    Backfill(Backfill),
    Session {
        snapshot: SessionSnapshot,
    },
    SessionRemoved {
        session: SessionId,
    },
    Message {
        message: Arc<InboundMessage>,
    },
    Backlog {
        session: SessionId,
        backlog: BacklogInfo,
    },
    /// This dashboard fell behind a flood: that many frames were not sent
    /// (a `backfill` of the sessions follows, so their states are right).
    Skipped {
        count: u64,
    },
    Log {
        line: LogLine,
    },
    /// In a cluster: the whole cluster as the service last read it (sent
    /// after the backfill and whenever it is read again).
    Cluster {
        view: ClusterSnapshot,
    },
    /// The answer to one of this dashboard's requests that did not work.
    Notice {
        text: String,
    },
}

/// What an operator asks of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Skip the retry wait (or leave Halted / Logged Out).
    Reconnect {
        session: SessionId,
    },
    /// Unlink the device and delete its credentials.
    Logout {
        session: SessionId,
    },
    /// Pair by a code typed on the phone with this number (digits).
    PairWithPhone {
        session: SessionId,
        phone: String,
    },
    AddSession {
        session: SessionId,
    },
    /// Point the session's webhook somewhere else (`url` http(s)://;
    /// a token of None keeps the current one).
    SetWebhook {
        session: SessionId,
        url: String,
        token: Option<String>,
    },
    /// Set the session's NATS subject prefix (`SessionSettings::
    /// nats_subject`); "" sends none of its events to NATS.
    SetNatsSubject {
        session: SessionId,
        subject: String,
    },
}

/// Dashboard → service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DashboardFrame {
    Hello {
        protocol: u32,
        /// `wabridge 0.1.0`
        client: String,
    },
    Request {
        request: Request,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer closed the connection in the middle of a frame")]
    ClosedMidFrame,
    #[error("a frame longer than {0} bytes")]
    TooLong(usize),
    #[error("not a frame: {0}")]
    Junk(serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// This program's name and version, as hellos carry it.
pub fn this_version() -> String {
    format!("wabridge {}", env!("CARGO_PKG_VERSION"))
}

/// Writes one frame and its newline.
pub async fn write_frame<W, T>(writer: &mut W, frame: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let mut line = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.flush().await
}

/// Reads one frame, refusing lines longer than `max` bytes without
/// holding more than that in memory.
pub async fn read_frame<R, T>(reader: &mut R, max: usize) -> Result<T, ReadError>
where
    R: AsyncBufRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let line = read_line(reader, max).await?;
    serde_json::from_slice(&line).map_err(ReadError::Junk)
}

async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Err(if line.is_empty() {
                ReadError::Closed
            } else {
                ReadError::ClosedMidFrame
            });
        }
        let (taken, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if line.len() + taken > max + 1 {
            return Err(ReadError::TooLong(max));
        }
        line.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        if done {
            line.pop();
            return Ok(line);
        }
    }
}
