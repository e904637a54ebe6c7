//! The sessions pane: one row per session with its state badge, number,
//! attempt and live countdown, and the last close in plain words.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use std::time::Instant;

use super::seconds_until;
use super::theme::Theme;
use crate::engine::BacklogInfo;
use crate::engine::close::human_duration;
use crate::engine::{SessionSnapshot, SessionState};
use crate::tui::app::{App, Focus};

pub fn list_area(pane: Rect) -> Rect {
    Block::new().borders(Borders::ALL).inner(pane)
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
    let inner = block.inner(pane);
    frame.render_widget(block, pane);
    if app.sessions.is_empty() {
        let hint = Line::styled("No sessions yet: press a to add one.", theme.dim());
        frame.render_widget(Paragraph::new(hint), inner);
        return;
    }
    let id_width = app
        .sessions
        .iter()
        .map(|s| s.id.as_str().chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    let first = first_visible(app, inner.height);
    let lines: Vec<Line> = app
        .sessions
        .iter()
        .enumerate()
        .skip(first)
        .take(inner.height as usize)
        .map(|(index, session)| {
            let backlog = app.backlogs.get(&session.id);
            let line = row(session, backlog, id_width, now, theme);
            if index == app.selected {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
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

/// "webhook: 12 waiting, oldest 3m · 1 dead"; nothing when all is delivered.
pub(super) fn backlog_words(backlog: &BacklogInfo, now: Instant) -> Option<String> {
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
    (!parts.is_empty()).then(|| format!("webhook: {}", parts.join(" · ")))
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
