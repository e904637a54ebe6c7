//! A session's messages that could not be read, kept in its folder
//! (`unreadable.json`): which notices still wait for their real content, so
//! that the readable resend (same chat, sender and id) is forwarded with a
//! `replaces` marker even across a restart; and how many failures each
//! peer caused, for `/metrics` and the dashboard (a peer with many is a
//! broken Signal session worth seeing).
//!
//! A notice is queued off the library's event path (its sender may need a
//! store lookup), so in a race its readable resend can come first: the
//! ledger remembers the last readable messages, and a notice for one of
//! them is stale (counted as a failure, never forwarded after the real
//! message).

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::backend::IncomingMessage;
use super::state::PeerFailures;
use crate::paths;
use crate::session_files::SessionFiles;

const FILE: &str = "unreadable.json";
/// Notices older than this no longer wait for a resend: the sender's phone
/// gives up retrying long before.
const WAIT_MS: i64 = 14 * 24 * 3600 * 1000;
/// A resolved notice is kept this long, for a redelivery of its resend
/// (when the resend's batch failed to persist, WhatsApp sends it again).
const RESOLVED_KEEP_MS: i64 = 3600 * 1000;
/// At most this many notices wait; the oldest go first.
const MAX_WAITING: usize = 10_000;
/// The peers with most failures that views show (all are counted).
const SHOWN_PEERS: usize = 20;
/// Readable messages remembered, to recognise a stale notice.
const RECENT_READABLE: usize = 256;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Ledger {
    waiting: Vec<Waiting>,
    /// Failures per peer (phone digits, or LID digits when hidden).
    failures: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Waiting {
    chat: String,
    sender: String,
    id: String,
    at_ms: i64,
    /// Its real content came. Kept a while all the same: if that batch
    /// fails to persist, WhatsApp delivers it again, and the copy must
    /// still say what it replaces.
    #[serde(default)]
    resolved: bool,
}

impl Waiting {
    fn of(m: &IncomingMessage, at_ms: i64) -> Waiting {
        Waiting {
            chat: m.chat.clone(),
            sender: m.sender.clone(),
            id: m.id.clone(),
            at_ms,
            resolved: false,
        }
    }

    fn is(&self, m: &IncomingMessage) -> bool {
        self.id == m.id && self.chat == m.chat && self.sender == m.sender
    }
}

/// A message's identity (chat, sender, id), small enough to remember many.
fn fingerprint(m: &IncomingMessage) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (&m.chat, &m.sender, &m.id).hash(&mut hasher);
    hasher.finish()
}

/// What a batch held, for the ledger.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Noted {
    /// Positions of the readable resends of forwarded notices.
    pub resends: Vec<usize>,
    /// A new failure was counted.
    pub failed: bool,
    /// Positions of notices whose readable message already went: not to
    /// be forwarded.
    pub stale: Vec<usize>,
}

pub struct UnreadableLedger {
    path: PathBuf,
    ledger: Mutex<Ledger>,
    /// Fingerprints of the last readable messages (in memory only: the
    /// race it guards against lasts seconds).
    recent: Mutex<VecDeque<u64>>,
}

impl UnreadableLedger {
    /// The session's ledger; an unreadable file is moved aside (never
    /// deleted) and a new one started.
    pub fn open(files: &SessionFiles) -> UnreadableLedger {
        let path = files.dir.join(FILE);
        let ledger = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                let aside = path.with_extension("json.unreadable");
                let kept = std::fs::rename(&path, &aside).map_or_else(
                    |e| format!("could not be moved aside: {e}"),
                    |()| format!("kept as {}", aside.display()),
                );
                tracing::warn!("{} is not valid ({e}); {kept}", path.display());
                Ledger::default()
            }),
            Err(_) => Ledger::default(),
        };
        UnreadableLedger {
            path,
            ledger: Mutex::new(ledger),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_READABLE)),
        }
    }

    /// Before `batch` is persisted: notices are recorded and counted, and
    /// the messages whose notice was forwarded are found (they get
    /// `replaces`). Saved when anything changed; a failed save is logged
    /// (the batch still goes: the marker is a courtesy, the message itself
    /// must not wait on it).
    pub fn note(&self, batch: &[IncomingMessage], now_ms: i64) -> Noted {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut noted = Noted::default();
        let mut changed = false;
        // Any kind of item can be a resend: a reaction or an edit that could
        // not be read came as a notice too.
        for (at, m) in batch.iter().enumerate() {
            if m.unreadable {
                if ledger.waiting.iter().any(|w| w.is(m)) {
                    continue;
                }
                *ledger.failures.entry(m.from.from.clone()).or_default() += 1;
                changed = true;
                noted.failed = true;
                if recent.contains(&fingerprint(m)) {
                    noted.stale.push(at);
                } else {
                    ledger.waiting.push(Waiting::of(m, now_ms));
                }
                continue;
            }
            if recent.len() == RECENT_READABLE {
                recent.pop_front();
            }
            recent.push_back(fingerprint(m));
            if let Some(notice) = ledger.waiting.iter_mut().find(|w| w.is(m)) {
                noted.resends.push(at);
                changed |= !notice.resolved;
                notice.resolved = true;
            }
        }
        let before = ledger.waiting.len();
        ledger.waiting.retain(|w| {
            let keep_ms = if w.resolved {
                RESOLVED_KEEP_MS
            } else {
                WAIT_MS
            };
            now_ms - w.at_ms < keep_ms
        });
        let excess = ledger.waiting.len().saturating_sub(MAX_WAITING);
        ledger.waiting.drain(..excess);
        changed |= ledger.waiting.len() != before;
        if changed && let Err(e) = self.save(&ledger) {
            tracing::warn!("cannot save {}: {e}", self.path.display());
        }
        noted
    }

    /// Failures per peer, most first, at most `SHOWN_PEERS`.
    pub fn failures(&self) -> Vec<PeerFailures> {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let mut peers: Vec<PeerFailures> = ledger
            .failures
            .iter()
            .map(|(peer, &count)| PeerFailures {
                peer: peer.clone(),
                count,
            })
            .collect();
        peers.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.peer.cmp(&b.peer)));
        peers.truncate(SHOWN_PEERS);
        peers
    }

    /// Notices still waiting for their real content.
    pub fn waiting(&self) -> usize {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.waiting.iter().filter(|w| !w.resolved).count()
    }

    fn save(&self, ledger: &Ledger) -> std::io::Result<()> {
        let json = serde_json::to_vec(ledger).map_err(std::io::Error::other)?;
        paths::write_private_file(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::phone::{Lookups, resolve};
    use crate::paths::{DataDir, SessionId};

    fn message(id: &str, unreadable: bool) -> IncomingMessage {
        let from = resolve(&Lookups {
            sender: "447700900123@s.whatsapp.net",
            ..Lookups::default()
        });
        IncomingMessage {
            unreadable,
            ..IncomingMessage::new(
                id.into(),
                "447700900123@s.whatsapp.net".into(),
                from,
                "x".into(),
            )
        }
    }

    #[test]
    fn the_resend_replaces_its_notice_across_a_restart_and_failures_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let files = SessionFiles::new(&DataDir::new(tmp.path()), &SessionId::parse("s").unwrap());
        std::fs::create_dir_all(&files.dir).unwrap();
        let ledger = UnreadableLedger::open(&files);
        let notices = [message("A", true), message("B", true), message("A", true)];
        assert!(ledger.note(&notices, 1_000).failed);
        assert_eq!(
            ledger.failures(),
            [PeerFailures {
                peer: "447700900123".into(),
                count: 2
            }]
        );
        assert_eq!(ledger.waiting(), 2);
        let reopened = UnreadableLedger::open(&files);
        let resent = [message("A", false), message("C", false)];
        let noted = reopened.note(&resent, 2_000);
        assert_eq!(noted.resends, [0], "C was never unreadable");
        assert!(!noted.failed);
        assert_eq!(reopened.waiting(), 1);
        // WhatsApp's second delivery of the resend (its first batch did not
        // persist) still says what it replaces; the outbox drops a copy.
        assert_eq!(reopened.note(&[message("A", false)], 3_000).resends, [0]);
        // Notices stop waiting after two weeks.
        reopened.note(&[], 2_000 + WAIT_MS);
        assert_eq!(reopened.waiting(), 0);
    }

    #[test]
    fn a_notice_that_comes_after_its_readable_message_is_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let files = SessionFiles::new(&DataDir::new(tmp.path()), &SessionId::parse("s").unwrap());
        std::fs::create_dir_all(&files.dir).unwrap();
        let ledger = UnreadableLedger::open(&files);
        assert_eq!(
            ledger.note(&[message("A", false)], 1_000).resends,
            [] as [usize; 0]
        );
        let late = ledger.note(&[message("A", true)], 1_001);
        assert_eq!(late.stale, [0]);
        assert!(late.failed, "still a failure of that peer");
        assert_eq!(ledger.waiting(), 0, "nothing to wait for");
        assert_eq!(
            ledger.note(&[message("B", true)], 1_002).stale,
            [] as [usize; 0]
        );
    }

    #[test]
    fn a_reaction_can_be_the_resend_of_a_notice() {
        let tmp = tempfile::tempdir().unwrap();
        let files = SessionFiles::new(&DataDir::new(tmp.path()), &SessionId::parse("s").unwrap());
        std::fs::create_dir_all(&files.dir).unwrap();
        let ledger = UnreadableLedger::open(&files);
        ledger.note(&[message("R", true)], 1_000);
        let reaction = IncomingMessage {
            event: crate::engine::backend::InboundEvent::Reaction {
                target: "M".into(),
                emoji: "👍".into(),
            },
            ..message("R", false)
        };
        assert_eq!(ledger.note(&[reaction], 2_000).resends, [0]);
        assert_eq!(ledger.waiting(), 0);
        // Resolved notices go after an hour, not two weeks.
        ledger.note(&[], 2_000 + RESOLVED_KEEP_MS);
        assert!(ledger.ledger.lock().unwrap().waiting.is_empty());
    }

    #[test]
    fn a_corrupt_ledger_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let files = SessionFiles::new(&DataDir::new(tmp.path()), &SessionId::parse("s").unwrap());
        std::fs::create_dir_all(&files.dir).unwrap();
        std::fs::write(files.dir.join(FILE), b"{not json").unwrap();
        let ledger = UnreadableLedger::open(&files);
        assert_eq!(ledger.waiting(), 0);
        assert!(files.dir.join("unreadable.json.unreadable").exists());
    }
}
