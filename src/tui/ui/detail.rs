//! The detail pane of the selected session: the pairing QR (drawn so a phone
//! scans it from the screen), the pairing code, or what the state means and
//! what the operator can do about it.

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use std::time::Instant;

use super::qr::QrWidget;
use super::sessions::{backlog_words, remote_detail, status_detail};
use super::theme::Theme;
use super::{seconds_until, terminal_size_for_qr};
use crate::cluster::view::ClusterSession;
use crate::engine::close::human_duration;
use crate::engine::{SessionSnapshot, SessionState};
use crate::qr::QrMatrix;
use crate::tui::app::App;

/// Rows around the code: the pane's borders and two lines of instructions.
pub const QR_EXTRA_ROWS: u16 = 4;

/// Rows the pairing code's pane needs: its seven lines (the countdown is
/// the last) and the border.
pub const PAIRING_CODE_ROWS: u16 = 9;

/// Whether the selected session shows a pairing code.
pub fn shows_pairing_code(app: &App) -> bool {
    app.selected_session()
        .is_some_and(|s| matches!(s.state, SessionState::PairingCode { .. }))
}

/// Cells the selected session's QR needs (columns, rows), if it shows one.
pub fn qr_size(app: &App) -> Option<(u16, u16)> {
    let session = app.selected_session()?;
    let (_, matrix) = app.qr_codes.get(&session.id)?;
    matches!(session.state, SessionState::QrScanRequired(_))
        .then(|| (matrix.width() as u16, matrix.half_block_rows() as u16))
}

pub fn render(frame: &mut Frame, app: &App, pane: Rect, screen: Rect, now: Instant, theme: Theme) {
    if let Some(remote) = app.selected_remote() {
        let block = Block::new()
            .borders(Borders::ALL)
            .title(format!(" {} ", remote.id));
        let inner = block.inner(pane);
        frame.render_widget(block, pane);
        let text = describe_remote(remote, now, theme);
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        return;
    }
    let Some(session) = app.selected_session() else {
        frame.render_widget(Block::new().borders(Borders::ALL).title(" Details "), pane);
        return;
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" {} ", session.id));
    let inner = block.inner(pane);
    frame.render_widget(block, pane);
    match (&session.state, app.qr_codes.get(&session.id)) {
        (SessionState::QrScanRequired(offer), Some((_, matrix))) => {
            let caption = vec![
                Line::from("Scan with WhatsApp › Linked devices › Link a device"),
                Line::styled(
                    format!(
                        "code {} of 6 · expires in {}s",
                        offer.index,
                        seconds_until(offer.expires_at, now)
                    ),
                    theme.dim(),
                ),
            ];
            render_qr(frame, matrix, inner, screen, caption, theme);
        }
        (SessionState::PairingCode { code, expires_at }, _) => {
            render_pairing_code(frame, code, seconds_until(*expires_at, now), inner, theme)
        }
        _ => {
            let mut text = describe(session, now, theme);
            let backlog = app.backlogs.get(&session.id);
            if let Some(words) = backlog.and_then(|b| backlog_words(b, now)) {
                text.insert(1, Line::styled(words, theme.error()));
            }
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        }
    }
}

/// The code whole (`QrWidget`) with its caption below, or, when the pane
/// is too small for a scannable code, how large the terminal must be.
fn render_qr(
    frame: &mut Frame,
    matrix: &QrMatrix,
    area: Rect,
    screen: Rect,
    caption: Vec<Line>,
    theme: Theme,
) {
    let qr = QrWidget { matrix };
    let (cols, rows) = qr.size();
    let caption_rows = caption.len() as u16;
    if area.width < cols || area.height < rows + caption_rows {
        let (need_w, need_h) = terminal_size_for_qr(cols, rows);
        let text = vec![
            Line::styled("Terminal too small for a scannable QR code.", theme.error()),
            Line::from(format!(
                "Enlarge it to at least {need_w}×{need_h} (now {}×{}),",
                screen.width, screen.height
            )),
            Line::from("or press p to pair by phone number instead."),
        ];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), area);
        return;
    }
    frame.render_widget(qr, Rect::new(area.x, area.y, area.width, rows));
    let caption_area = Rect::new(area.x, area.y + rows, area.width, caption_rows);
    frame.render_widget(
        Paragraph::new(caption).alignment(Alignment::Center),
        caption_area,
    );
}

fn render_pairing_code(frame: &mut Frame, code: &str, seconds: u64, area: Rect, theme: Theme) {
    // Spaced out and bold so it reads across a room: "ABCD-EFGH" → "A B C D - E F G H".
    let spaced: String = code
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let dash = (i == 4 && !code.contains('-')).then_some(['-', ' ']);
            dash.into_iter().flatten().chain([c, ' '])
        })
        .collect();
    let text = vec![
        Line::from("Pair by phone number: on the phone open"),
        Line::from("WhatsApp › Linked devices › Link with phone number instead"),
        Line::from("and enter this code:"),
        Line::from(""),
        Line::styled(
            spaced.trim_end().to_string(),
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        ),
        Line::from(""),
        Line::styled(format!("expires in {seconds}s"), theme.dim()),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn describe(session: &SessionSnapshot, now: Instant, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![
        Span::raw("State: "),
        Span::styled(session.state.label(), theme.badge(&session.state)),
    ])];
    if let Some(phone) = &session.phone {
        lines.push(Line::from(format!("Phone: +{phone}")));
    }
    if let Some(lid) = &session.lid {
        lines.push(Line::styled(format!("LID: {lid}"), theme.dim()));
    }
    let detail = status_detail(session, now);
    if !detail.is_empty() {
        lines.push(Line::from(detail));
    }
    if session.state == SessionState::Connected
        && let Some(at) = session.last_answer_at
    {
        let ago = crate::engine::close::human_duration(now.saturating_duration_since(at));
        lines.push(Line::styled(
            format!("Last answer from WhatsApp: {ago} ago"),
            theme.dim(),
        ));
    }
    if let Some(items) = session.interrupted_sync {
        lines.push(Line::styled(
            format!(
                "Offline sync interrupted ({items} item(s) announced): the rest comes at the next login"
            ),
            theme.error(),
        ));
    }
    if !session.unreadable.is_empty() {
        let total: u64 = session.unreadable.iter().map(|p| p.count).sum();
        let worst: Vec<String> = session
            .unreadable
            .iter()
            .take(3)
            .map(|p| format!("{} ×{}", p.peer, p.count))
            .collect();
        lines.push(Line::styled(
            format!(
                "Unreadable messages: {total} (most from {})",
                worst.join(", ")
            ),
            theme.error(),
        ));
    }
    if let Some(close) = &session.last_close {
        lines.push(Line::styled(
            format!(
                "Last close: {} (status {})",
                close.description, close.status
            ),
            theme.dim(),
        ));
    }
    lines.push(Line::from(""));
    let advice = match &session.state {
        SessionState::Connecting => "Connecting with the saved credentials…",
        SessionState::Connected => "Connected. Messages appear below.",
        SessionState::Disconnected => "Retrying on its own; press r to retry now.",
        SessionState::Halted(_) => {
            "Stopped until you decide: press r to reconnect (credentials are kept)."
        }
        SessionState::LoggedOut => {
            "The device was unlinked and its credentials deleted. Press r to pair again."
        }
        SessionState::PasskeyRequired => {
            "The phone asks for a passkey to link this device: confirm it on the phone."
        }
        SessionState::QrScanRequired(_) => "Preparing the QR code…",
        SessionState::PairingCode { .. } | SessionState::Stopped => "",
    };
    lines.push(Line::from(advice));
    lines
}

/// A session this service does not run: who serves it, what its host last
/// said and how long ago, whatever cannot be vouched for, and where the
/// operator can act on it.
fn describe_remote(session: &ClusterSession, now: Instant, theme: Theme) -> Vec<Line<'static>> {
    let report = session.owners_report();
    let mut lines = vec![Line::from(vec![
        Span::raw("State: "),
        Span::styled(session.state().to_string(), theme.dim()),
        Span::styled(
            match (report, session.reported_at) {
                (Some(_), Some(at)) => format!(
                    " (reported by {} {} ago)",
                    session.report_node.as_deref().unwrap_or("?"),
                    human_duration(now.saturating_duration_since(at))
                ),
                _ => String::new(),
            },
            theme.dim(),
        ),
    ])];
    lines.push(match &session.owner {
        Some(node) => Line::from(format!("Served by: {node}")),
        None => Line::styled("Served by: no host (its lease is free)", theme.error()),
    });
    if let Some(phone) = session.phone() {
        lines.push(Line::from(format!("Phone: +{phone}")));
    }
    let detail = remote_detail(session, now);
    if !detail.is_empty() {
        lines.push(Line::from(detail));
    }
    if let Some(close) = report.and_then(|r| r.last_close.as_ref()) {
        lines.push(Line::styled(
            format!(
                "Last close: {} (status {})",
                close.description, close.status
            ),
            theme.dim(),
        ));
    }
    if let (Some(why), Some(_)) = (&session.stale, &session.owner) {
        lines.push(Line::styled(format!("Stale: {why}"), theme.error()));
    }
    lines.push(Line::from(""));
    let advice = match &session.owner {
        Some(node) if report.is_some_and(|r| r.pairing()) => {
            format!("Pairing happens on {node}: scan or type the code from {node}'s dashboard.")
        }
        Some(node) => format!(
            "Served by {node}: use its dashboard to reconnect, pair or log it out, or DELETE through the API."
        ),
        None if session.logged_out => {
            "Logged out: POST /sessions/start through any host pairs it again.".to_string()
        }
        None => "No host serves it: a host takes its lease within seconds.".to_string(),
    };
    lines.push(Line::from(advice));
    lines
}
