//! Pure rendering: `render(frame, &app, now)` draws the whole screen from the
//! state and the given instant (so countdowns are deterministic in tests).
//! The layout is a function too, shared with mouse hit-testing.

mod detail;
mod messages;
mod overlay;
mod qr;
mod sessions;
pub mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use std::time::Instant;

use super::app::{App, ServiceLink};
use super::keymap::BINDINGS;
use crate::engine::SessionState;
use theme::Theme;

/// The sessions list never gets narrower than this.
const SESSIONS_MIN_WIDTH: u16 = 36;
/// Rows kept for the message stream under a QR code.
const MESSAGES_MIN_HEIGHT: u16 = 5;

/// Where each pane goes for a given terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub title: Rect,
    pub sessions: Rect,
    pub detail: Rect,
    pub messages: Rect,
    pub logs: Option<Rect>,
    pub footer: Rect,
}

pub fn layout(app: &App, area: Rect) -> Areas {
    let [title, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);

    // A QR code must be shown whole or not at all, so the pane that holds
    // it asks for its full size when the terminal has room.
    let qr = detail::qr_size(app);
    let top_height = match qr {
        Some((_, rows)) => {
            (rows + detail::QR_EXTRA_ROWS).min(body.height.saturating_sub(MESSAGES_MIN_HEIGHT))
        }
        None => {
            // The pairing code must show whole, its countdown included.
            let least = if detail::shows_pairing_code(app) {
                detail::PAIRING_CODE_ROWS
            } else {
                8
            };
            let wanted = app.row_count() as u16 + 2 + sessions::header_rows(app);
            wanted.clamp(least, (body.height / 2).max(least))
        }
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_height), Constraint::Min(0)]).areas(body);
    let detail_width = match qr {
        Some((cols, _)) => (cols + 2).min(top.width.saturating_sub(SESSIONS_MIN_WIDTH)),
        None => top.width * 45 / 100,
    };
    let [sessions, detail] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(detail_width)]).areas(top);
    let (messages, logs) = if app.show_logs {
        let [m, l] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .areas(bottom);
        (m, Some(l))
    } else {
        (bottom, None)
    };
    Areas {
        title,
        sessions,
        detail,
        messages,
        logs,
        footer,
    }
}

/// The whole-terminal size that shows a QR of `cols`×`rows` cells.
pub fn terminal_size_for_qr(cols: u16, rows: u16) -> (u16, u16) {
    (
        SESSIONS_MIN_WIDTH + cols + 2,
        rows + detail::QR_EXTRA_ROWS + MESSAGES_MIN_HEIGHT + 2,
    )
}

pub fn render(frame: &mut Frame, app: &App, now: Instant) {
    let theme = Theme { colors: app.colors };
    let areas = layout(app, frame.area());
    render_title(frame, app, areas.title, now, theme);
    sessions::render(frame, app, areas.sessions, now, theme);
    detail::render(frame, app, areas.detail, frame.area(), now, theme);
    messages::render_messages(frame, app, areas.messages, theme);
    if let Some(logs) = areas.logs {
        messages::render_logs(frame, app, logs, theme);
    }
    render_footer(frame, app, areas.footer, theme);
    overlay::render(frame, app, theme);
}

/// Which session row a click at (column, row) hits, if any.
pub fn session_at(app: &App, area: Rect, column: u16, row: u16) -> Option<usize> {
    let pane = layout(app, area).sessions;
    let inner = sessions::list_area(app, pane);
    if !inner.contains(ratatui::layout::Position::new(column, row)) {
        return None;
    }
    let index = sessions::first_visible(app, inner.height) + (row - inner.y) as usize;
    (index < app.row_count()).then_some(index)
}

fn render_title(frame: &mut Frame, app: &App, area: Rect, now: Instant, theme: Theme) {
    let connected = app
        .sessions
        .iter()
        .filter(|s| s.state == SessionState::Connected)
        .count();
    let here = format!(
        "{} session{}",
        app.sessions.len(),
        if app.sessions.len() == 1 { "" } else { "s" },
    );
    let mut spans = vec![Span::styled(
        match &app.cluster {
            None => format!(" wabridge · {here} · {connected} connected"),
            Some(view) => format!(
                " wabridge · node {} · {here} here · {connected} connected",
                view.node
            ),
        },
        theme.title(),
    )];
    match &app.link {
        ServiceLink::InProcess => {}
        ServiceLink::Attached { pid, .. } => {
            spans.push(Span::styled(
                format!(" · attached to pid {pid}"),
                theme.dim(),
            ));
        }
        ServiceLink::Gone(why) => spans.push(Span::styled(
            format!(" · service gone, reconnecting… ({why})"),
            theme.error(),
        )),
        ServiceLink::Closed(why) => {
            spans.push(Span::styled(format!(" · detached: {why}"), theme.error()));
        }
    }
    if let Some(notice) = &app.notice {
        spans.push(Span::styled(format!(" · {notice}"), theme.error()));
    }
    // Last, so that a notice is never cut off by it.
    if let Some(view) = &app.cluster {
        let view = view.with_local(app.sessions.iter().map(|s| &s.id));
        spans.extend(cluster_title(&view, now, theme));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The title's end in a cluster: the cluster (its nodes, its sessions,
/// those no host serves), or, first, that it cannot be read now and how
/// old what is shown is.
fn cluster_title(
    view: &crate::cluster::view::ClusterSnapshot,
    now: Instant,
    theme: Theme,
) -> Vec<Span<'static>> {
    if let Some(error) = &view.error {
        let shown = match view.read_at {
            Some(at) => format!(
                "cluster as read {} ago",
                crate::engine::close::human_duration(now.saturating_duration_since(at))
            ),
            None => "cluster not read yet".to_string(),
        };
        return vec![Span::styled(format!(" · {shown}: {error}"), theme.error())];
    }
    let mut spans = Vec::new();
    let nodes = view.nodes().len();
    if view.read_at.is_some() {
        spans.push(Span::raw(format!(
            " · cluster: {nodes} node{}, {} session{}",
            if nodes == 1 { "" } else { "s" },
            view.sessions.len(),
            if view.sessions.len() == 1 { "" } else { "s" },
        )));
    }
    let waiting = view.without_host().count();
    if waiting > 0 {
        spans.push(Span::styled(
            format!(", {waiting} waiting for a host"),
            theme.error(),
        ));
    }
    spans
}

fn render_footer(frame: &mut Frame, app: &App, area: Rect, theme: Theme) {
    let hints: Vec<_> = BINDINGS.iter().filter(|b| b.in_footer).collect();
    // Attached, `q` leaves the service running: say so.
    let short = |binding: &crate::tui::keymap::Binding| match binding.action {
        crate::tui::keymap::Action::Quit if app.detaches() => "detach",
        _ => binding.short,
    };
    let width: usize = hints
        .iter()
        .map(|b| b.keys_label.chars().count() + short(b).chars().count() + 3)
        .sum();
    // Tighter spacing on narrow terminals, so all hints fit in 80 columns.
    let gap = if width < area.width as usize {
        "  "
    } else {
        " "
    };
    let mut spans = vec![Span::raw(" ")];
    for binding in hints {
        spans.push(Span::styled(binding.keys_label, theme.key()));
        spans.push(Span::raw(format!(" {}{gap}", short(binding))));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Whole seconds left until `at`, rounded up so "0s" means now.
pub(crate) fn seconds_until(at: Instant, now: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}
