//! What an import did (or would do), per session: for a person on the
//! terminal, and as JSON for scripts. Webhook tokens are never shown.

use std::fmt::{self, Write as _};
use std::path::Path;

use serde::Serialize;

use super::convert::Prepared;
use super::creds::DeviceSummary;
use super::{Counts, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Imported,
    WouldImport,
    /// The folder cannot be imported (never paired, bad files, bad name).
    Skipped,
    /// Importing now would be unsafe (in use, already there).
    Refused,
    /// Writing the new session failed; nothing was left behind.
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
    pub source: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSummary>,
    pub checks: Vec<String>,
    pub warnings: Vec<String>,
    pub problems: Vec<Problem>,
}

impl SessionReport {
    pub(super) fn new(id: &str, source: &Path) -> SessionReport {
        SessionReport {
            id: id.to_string(),
            source: source.display().to_string(),
            outcome: Outcome::Skipped,
            reason: None,
            device: None,
            counts: None,
            webhook: None,
            checks: Vec::new(),
            warnings: Vec::new(),
            problems: Vec::new(),
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

    pub(super) fn with_problems(mut self, problems: Vec<Problem>) -> SessionReport {
        let reason = format!(
            "{} file problem(s); nothing was imported from this folder",
            problems.len()
        );
        self.problems = problems;
        self.skipped(reason)
    }

    pub(super) fn describe(&mut self, prepared: &Prepared) {
        self.device = Some(prepared.summary.clone());
        self.counts = Some(prepared.counts());
        self.webhook = prepared.webhook.as_ref().map(|w| WebhookSummary {
            url: w.url.clone(),
            has_token: w.token.is_some(),
        });
        self.warnings.extend(prepared.warnings.iter().cloned());
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub dry_run: bool,
    pub sessions: Vec<SessionReport>,
}

impl ImportReport {
    /// True when every folder was (or would be) imported.
    pub fn all_imported(&self) -> bool {
        self.sessions
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Imported | Outcome::WouldImport))
    }

    pub fn imported(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.outcome == Outcome::Imported)
            .count()
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} Signal sessions, {} identities, {} pre-keys, {} sender keys, \
             {} LID mappings, {} app-state keys, {} tc-tokens",
            self.sessions,
            self.identities,
            self.pre_keys,
            self.sender_keys,
            self.lid_mappings,
            self.app_state_keys,
            self.tc_tokens
        )
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if self.dry_run {
            out.push_str("Dry run: nothing was written.\n\n");
        }
        for s in &self.sessions {
            let verdict = match s.outcome {
                Outcome::Imported => "imported",
                Outcome::WouldImport => "would be imported",
                Outcome::Skipped => "SKIPPED",
                Outcome::Refused => "REFUSED",
                Outcome::Failed => "FAILED",
            };
            let _ = writeln!(out, "{}  ({})  {verdict}", s.id, s.source);
            if let Some(reason) = &s.reason {
                let _ = writeln!(out, "  {reason}");
            }
            for p in &s.problems {
                let _ = writeln!(out, "  problem: {}: {}", p.file, p.problem);
            }
            if let Some(device) = &s.device {
                let lid = device
                    .lid
                    .as_deref()
                    .map(|l| format!(", LID {l}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  device {}{lid}, name \"{}\"",
                    device.pn, device.push_name
                );
            }
            if let Some(counts) = &s.counts {
                let _ = writeln!(out, "  {counts}");
            }
            match &s.webhook {
                Some(w) => {
                    let token = if w.has_token { "token set" } else { "no token" };
                    let _ = writeln!(out, "  webhook {} ({token})", w.url);
                }
                None if s.device.is_some() => out.push_str("  no webhook settings\n"),
                None => {}
            }
            for check in &s.checks {
                let _ = writeln!(out, "  checked: {check}");
            }
            for warning in &s.warnings {
                let _ = writeln!(out, "  warning: {warning}");
            }
            out.push('\n');
        }
        if self.imported() > 0 {
            out.push_str(
                "Never run the old bridge on the imported folders again: two clients on one \
                 linked device\nreplace each other in a loop and break encryption. Each folder \
                 was marked (creds.json\nrenamed to creds.json.moved-to-wabridge, and a \
                 MOVED-TO-WABRIDGE.txt beside it).\nStart wabridge: the imported sessions \
                 connect without a QR.\n",
            );
        }
        f.write_str(out.trim_end())
    }
}
