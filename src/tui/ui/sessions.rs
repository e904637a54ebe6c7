//! The sessions pane: one row per session with its state badge, number,
//! attempt and live countdown, and the last close in plain words. In a
//! cluster, a Node column, and the sessions other hosts serve, dimmed,
//! with a hollow badge and their host's last report.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use std::time::Instant;

use super::seconds_until;
use super::theme::Theme;
use crate::cluster::view::ClusterSession;
use crate::engine::BacklogInfo;
use crate::engine::close::human_duration;
use crate::engine::{SessionSnapshot, SessionState};
use crate::tui::app::{App, Focus, Row};

/// Rows above the list: the column heads, in a cluster.
pub fn header_rows(app: &App) -> u16 {
    u16::from(app.cluster.is_some())
}

/// Where the session rows are drawn in the pane.
pub fn list_area(app: &App, pane: Rect) -> Rect {
    let inner = Block::new().borders(Borders::ALL).inner(pane);
    let header = header_rows(app).min(inner.height);
    Rect {
        y: inner.y + header,
        height: inner.height - header,
        ..inner
    }
}

/// The first row shown, so that the selection is always visible.
pub fn first_visible(app: &App, rows: u16) -> usize {
    let rows = rows.max(1) as usize;
    (app.selected + 1).saturating_sub(rows)
}

pub fn render(frame: &mut Frame, app: &App, pane: Rect, now: Instant, theme: Theme) {
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border(app.focus == Focus::Sessions))
        .title(" Sessions ");
    frame.render_widget(block, pane);
    let inner = list_area(app, pane);
    let rows = app.rows();
    if rows.is_empty() {
        let hint = Line::styled("No sessions yet: press a to add one.", theme.dim());
        frame.render_widget(Paragraph::new(hint), inner);
        return;
    }
    let id_width = rows
        .iter()
        .map(|row| row.id().as_str().chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    let node_width = app.cluster.as_ref().map(|view| {
        rows.iter()
            .map(|row| node_of(row, &view.node).chars().count())
            .chain([4])
            .max()
            .unwrap_or(0)
            .min(20)
    });
    if let Some(node_width) = node_width {
        let heads = Line::styled(
            format!(" {:<id_width$} {:<node_width$} STATE", "SESSION", "NODE"),
            theme.dim(),
        );
        let area = Rect {
            y: inner.y - 1,
            height: 1,
            ..inner
        };
        frame.render_widget(Paragraph::new(heads), area);
    }
    let first = first_visible(app, inner.height);
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(first)
        .take(inner.height as usize)
        .map(|(index, entry)| {
            let mut line = match entry {
                Row::Local(session) => {
                    let backlog = app.backlogs.get(&session.id);
                    row(session, backlog, id_width, now, theme)
                }
                Row::Remote(session) => remote_row(session, id_width, now, theme),
            };
            if let (Some(view), Some(width)) = (&app.cluster, node_width) {
                let node: String = node_of(entry, &view.node).chars().take(width).collect();
                let style = match entry {
                    Row::Remote(s) if s.owner.is_none() => theme.error(),
                    Row::Remote(_) => theme.dim(),
                    Row::Local(_) => Style::new(),
                };
                line.spans
                    .insert(1, Span::styled(format!("{node:<width$} "), style));
            }
            if index == app.selected {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The Node column: who serves the row's session ("no host" when none).
fn node_of<'a>(row: &'a Row, here: &'a str) -> &'a str {
    match row {
        Row::Local(_) => here,
        Row::Remote(session) => session.owner.as_deref().unwrap_or("no host"),
    }
}

/// A session another host serves (or none does): its id, a hollow badge,
/// its number and its host's words, all dimmed; whatever cannot be vouched
/// for says so.
fn remote_row<'a>(
    session: &'a ClusterSession,
    id_width: usize,
    now: Instant,
    theme: Theme,
) -> Line<'a> {
    let id: String = session.id.as_str().chars().take(id_width).collect();
    let mut spans = vec![
        Span::styled(format!(" {id:<id_width$} "), theme.dim()),
        Span::styled(format!("○ {}", session.state()), theme.dim()),
    ];
    // Right after the state it qualifies, so a narrow pane keeps it.
    if let Some(why) = &session.stale
        && session.owner.is_some()
    {
        spans.push(Span::styled(format!(" (stale: {why})"), theme.error()));
    }
    if let Some(phone) = session.phone() {
        spans.push(Span::styled(format!("  +{phone}"), theme.dim()));
    }
    let info = remote_detail(session, now);
    if !info.is_empty() {
        spans.push(Span::styled(format!("  {info}"), theme.dim()));
    }
    Line::from(spans)
}

/// What a remote session's row says beside its state: pairing happens on
/// its host's screen; a retry counts down as its host reported it.
pub fn remote_detail(session: &ClusterSession, now: Instant) -> String {
    let Some(node) = &session.owner else {
        return if session.logged_out {
            "logged out · POST /sessions/start pairs it again".to_string()
        } else {
            "waiting for a host to take it".to_string()
        };
    };
    let Some(report) = session.owners_report() else {
        return String::new();
    };
    if report.pairing() {
        let what = match report.state.as_str() {
            "Pairing Code" => "code",
            "Passkey Required" => "passkey",
            _ => "QR",
        };
        return format!("pairing: {what} on {node}");
    }
    let mut parts = Vec::new();
    if report.attempt > 0 {
        parts.push(format!("attempt {}", report.attempt));
    }
    if let Some(at) = report.next_retry_at {
        parts.push(format!("retry in {}s", seconds_until(at, now)));
    }
    if let Some(detail) = &report.detail {
        parts.push(detail.clone());
    } else if report.state == "Disconnected"
        && let Some(close) = &report.last_close
    {
        parts.push(close_words(close.status, &close.description));
    }
    if let Some(text) = report.backlog.as_ref().and_then(|b| backlog_words(b, now)) {
        parts.push(text);
    }
    parts.join(" · ")
}

fn row<'a>(
    session: &'a SessionSnapshot,
    backlog: Option<&BacklogInfo>,
    id_width: usize,
    now: Instant,
    theme: Theme,
) -> Line<'a> {
    let id: String = session.id.as_str().chars().take(id_width).collect();
    let mut spans = vec![
        Span::raw(format!(" {id:<id_width$} ")),
        Span::styled(
            format!("● {}", session.state.label()),
            theme.badge(&session.state),
        ),
    ];
    if let Some(phone) = &session.phone {
        spans.push(Span::styled(format!("  +{phone}"), theme.phone()));
    }
    if let Some(text) = backlog.and_then(|b| backlog_words(b, now)) {
        spans.push(Span::styled(format!("  {text}"), theme.error()));
    }
    let info = status_detail(session, now);
    if !info.is_empty() {
        spans.push(Span::styled(format!("  {info}"), theme.dim()));
    }
    Line::from(spans)
}

/// "webhook: 12 waiting, oldest 3m · 1 dead", then each other target's
/// ("NATS: 5 waiting, oldest 2m"); nothing when all is delivered.
pub(super) fn backlog_words(backlog: &BacklogInfo, now: Instant) -> Option<String> {
    let targets = std::iter::once(("webhook", backlog)).chain(
        backlog
            .beside
            .iter()
            .map(|b| (b.target.as_str(), &b.backlog)),
    );
    let words: Vec<String> = targets
        .filter_map(|(target, queue)| Some(format!("{target}: {}", queue_words(queue, now)?)))
        .collect();
    (!words.is_empty()).then(|| words.join(" · "))
}

/// "12 waiting, oldest 3m · 1 dead" of one target's queue.
fn queue_words(backlog: &BacklogInfo, now: Instant) -> Option<String> {
    let mut parts = Vec::new();
    if backlog.pending > 0 {
        let age = backlog
            .oldest_age(now)
            .map(|age| format!(", oldest {}", human_duration(age)))
            .unwrap_or_default();
        parts.push(format!("{} waiting{age}", backlog.pending));
    }
    if backlog.dead > 0 {
        parts.push(format!("{} dead", backlog.dead));
    }
    if let Some(error) = &backlog.write_error {
        parts.push(format!("outbox cannot write: {error}"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// "attempt 3 · retry in 17s · network error", "code 2 of 6 · 42s", ...
pub fn status_detail(session: &SessionSnapshot, now: Instant) -> String {
    match &session.state {
        SessionState::Disconnected => {
            let mut parts = vec![format!("attempt {}", session.attempt)];
            if let Some(at) = session.next_retry_at {
                parts.push(format!("retry in {}s", seconds_until(at, now)));
            }
            if let Some(close) = &session.last_close {
                parts.push(close_words(close.status, &close.description));
            }
            parts.join(" · ")
        }
        SessionState::Halted(reason) => reason.describe(now),
        SessionState::QrScanRequired(offer) => format!(
            "code {} of 6 · {}",
            offer.index,
            human_duration(offer.expires_at.saturating_duration_since(now))
        ),
        SessionState::PairingCode { expires_at, .. } => format!(
            "enter the code on the phone · {}",
            human_duration(expires_at.saturating_duration_since(now))
        ),
        SessionState::PasskeyRequired => "confirm with a passkey on the phone".to_string(),
        SessionState::LoggedOut => "device unlinked · r to pair again".to_string(),
        SessionState::Connecting if session.attempt > 0 => format!("attempt {}", session.attempt),
        _ => String::new(),
    }
}

/// The last close in plain words for the sessions list.
fn close_words(status: u16, description: &str) -> String {
    match status {
        408 => "network error".to_string(),
        428 => "connection closed".to_string(),
        500 | 503 => format!("WhatsApp server error ({status})"),
        515 => "restart required".to_string(),
        495 => "server certificate invalid: intercepted?".to_string(),
        _ => description.to_string(),
    }
}
