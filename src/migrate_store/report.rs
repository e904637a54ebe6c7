//! What a migration did (or would do), per session: for a person on the
//! terminal, and as JSON for scripts. Webhook tokens and the database's
//! password are never shown.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use super::Direction;
use super::image::DeviceSummary;
use super::outbox_rows::OutboxCounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Copied,
    WouldCopy,
    /// Not copied, and nothing to fix by waiting: already in the target,
    /// not found, an invalid id.
    Skipped,
    /// Copying now would be unsafe: the session is being served.
    Refused,
    /// Reading, writing or verifying failed; the target was left as it was
    /// and the source is still served as before.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSummary {
    pub url: String,
    pub has_token: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReport {
    pub id: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSummary>,
    /// Rows per store table (the device row included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSummary>,
    pub logged_out: bool,
    /// What became of the source once the copy was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub checks: Vec<String>,
    pub warnings: Vec<String>,
}

impl SessionReport {
    pub(super) fn new(id: &str) -> SessionReport {
        SessionReport {
            id: id.to_string(),
            outcome: Outcome::Skipped,
            reason: None,
            device: None,
            store: None,
            outbox: None,
            webhook: None,
            logged_out: false,
            source: None,
            checks: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn ending(mut self, outcome: Outcome, reason: String) -> SessionReport {
        self.outcome = outcome;
        self.reason = Some(reason);
        self
    }

    pub(super) fn skipped(self, reason: String) -> SessionReport {
        self.ending(Outcome::Skipped, reason)
    }

    pub(super) fn refused(self, reason: String) -> SessionReport {
        self.ending(Outcome::Refused, reason)
    }

    pub(super) fn failed(self, reason: String) -> SessionReport {
        self.ending(Outcome::Failed, reason)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateReport {
    pub direction: Direction,
    pub dry_run: bool,
    /// The database's URL, its password masked.
    pub database: String,
    pub data_dir: String,
    /// Things that hold for the whole run (a dry run on a data dir in use).
    pub notes: Vec<String>,
    pub sessions: Vec<SessionReport>,
}

impl MigrateReport {
    /// True when every session was (or would be) copied.
    pub fn all_copied(&self) -> bool {
        self.sessions
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Copied | Outcome::WouldCopy))
    }

    pub fn copied(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.outcome == Outcome::Copied)
            .count()
    }
}

/// The non-empty counts, in words.
fn describe_store(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(table, n)| format!("{n} {}", table.replace('_', " ")))
        .collect();
    if parts.is_empty() {
        "no credentials (nothing to log in with)".to_string()
    } else {
        parts.join(", ")
    }
}

impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let (from, to) = match self.direction {
            Direction::ToDb => (&self.data_dir, &self.database),
            Direction::ToDir => (&self.database, &self.data_dir),
        };
        let _ = writeln!(out, "From {from}\nto   {to}");
        if self.dry_run {
            out.push_str("Dry run: nothing was written.\n");
        }
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        out.push('\n');
        for s in &self.sessions {
            let verdict = match s.outcome {
                Outcome::Copied => "copied",
                Outcome::WouldCopy => "would be copied",
                Outcome::Skipped => "SKIPPED",
                Outcome::Refused => "REFUSED",
                Outcome::Failed => "FAILED",
            };
            let _ = writeln!(out, "{}  {verdict}", s.id);
            if let Some(reason) = &s.reason {
                let _ = writeln!(out, "  {reason}");
            }
            if let Some(device) = &s.device {
                let jid = device.jid.as_deref().unwrap_or("not paired");
                let lid = device
                    .lid
                    .as_deref()
                    .map(|l| format!(", LID {l}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  device {jid}{lid}, name \"{}\"", device.push_name);
            }
            if let Some(store) = &s.store {
                let _ = writeln!(out, "  store: {}", describe_store(store));
            }
            if let Some(outbox) = &s.outbox {
                let _ = writeln!(
                    out,
                    "  webhook outbox: {} waiting, {} dead letters, {} delivered (kept to recognise repeats)",
                    outbox.waiting, outbox.dead_letters, outbox.delivered
                );
            }
            match &s.webhook {
                Some(w) => {
                    let token = if w.has_token { "token set" } else { "no token" };
                    let _ = writeln!(out, "  webhook {} ({token})", w.url);
                }
                None if s.store.is_some() => out.push_str("  no webhook\n"),
                None => {}
            }
            if s.logged_out {
                out.push_str("  logged out: waits for the operator to pair it again\n");
            }
            for check in &s.checks {
                let _ = writeln!(out, "  checked: {check}");
            }
            for warning in &s.warnings {
                let _ = writeln!(out, "  warning: {warning}");
            }
            if let Some(source) = &s.source {
                let _ = writeln!(out, "  source: {source}");
            }
            out.push('\n');
        }
        if self.copied() > 0 {
            out.push_str(match self.direction {
                Direction::ToDb => {
                    "The copied sessions live in the cluster database now: a wabridge with [cluster] on it\n\
                     serves each one (no QR). Their folders were moved aside (<id>.migrated-to-db-<time>),\n\
                     so no wabridge on this data dir serves them again: two clients on one linked device\n\
                     replace each other in a loop and break its encryption.\n"
                }
                Direction::ToDir => {
                    "The copied sessions were removed from the cluster database (store, settings, webhook\n\
                     rows, lease) once their copies in the data dir were verified, so no host serves them\n\
                     any more. Start wabridge on this data dir without [cluster]: they connect without a QR.\n"
                }
            });
        }
        f.write_str(out.trim_end())
    }
}
