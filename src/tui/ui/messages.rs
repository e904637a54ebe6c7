//! The live message stream (newest at the bottom, following unless the
//! operator scrolled) and the log tail.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::theme::Theme;
use crate::engine::{InboundMessage, LineAction, SenderNumber};
use crate::tui::app::{App, Focus};

pub fn render_messages(frame: &mut Frame, app: &App, pane: Rect, theme: Theme) {
    let mut title = String::from(" Messages ");
    if !app.filter.is_empty() {
        title.push_str(&format!("· filter \"{}\" ", app.filter));
    }
    if !app.messages.following() {
        title.push_str("· scrolled, End to follow ");
    }
    if app.skipped_messages > 0 {
        title.push_str(&format!("· {} messages skipped ", app.skipped_messages));
    }
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border(app.focus == Focus::Messages))
        .title(title);
    let inner = block.inner(pane);
    frame.render_widget(block, pane);

    let rows = inner.height as usize;
    let visible: Vec<&InboundMessage> = app.visible_messages().map(|m| m.as_ref()).collect();
    if visible.is_empty() {
        let hint = if app.filter.is_empty() {
            "No messages yet."
        } else {
            "No message matches the filter."
        };
        frame.render_widget(Paragraph::new(Line::styled(hint, theme.dim())), inner);
        return;
    }
    let end = visible
        .len()
        .saturating_sub(app.messages.offset.min(visible.len().saturating_sub(1)));
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = visible[start..end]
        .iter()
        .map(|m| message_line(m, app.utc_offset, theme))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn message_line<'a>(
    message: &'a InboundMessage,
    offset: chrono::FixedOffset,
    theme: Theme,
) -> Line<'a> {
    let time = chrono::DateTime::from_timestamp(message.timestamp, 0)
        .map(|t| t.with_timezone(&offset).format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".to_string());
    let mut spans = vec![
        Span::styled(format!("{time} "), theme.dim()),
        Span::raw(format!("{} ", message.session)),
    ];
    match &message.sender {
        SenderNumber::Phone(phone) => spans.push(Span::styled(format!("+{phone}"), theme.phone())),
        // Never dressed up as a phone number.
        SenderNumber::HiddenLid(lid) => spans.push(Span::styled(
            format!("lid:{lid} (number hidden)"),
            theme.dim(),
        )),
    }
    if let Some(name) = &message.push_name {
        spans.push(Span::raw(format!(" ({name})")));
    }
    if let Some(group) = &message.group {
        spans.push(Span::styled(format!(" in {group}"), theme.dim()));
    }
    spans.extend(what_it_says(message, theme));
    Line::from(spans)
}

/// A member named in a line's text: `+<number>`, or the LID, never
/// dressed up as a number.
fn shown_number(who: &SenderNumber) -> String {
    match who {
        SenderNumber::Phone(phone) => format!("+{phone}"),
        SenderNumber::HiddenLid(lid) => format!("lid:{lid}"),
    }
}

/// The part after the sender: the text with its marks, or what was done.
fn what_it_says(message: &InboundMessage, theme: Theme) -> Vec<Span<'_>> {
    let short = |id: &str| id.chars().take(12).collect::<String>();
    match &message.action {
        None if message.deleted => vec![
            Span::styled(
                format!(": {}", message.text),
                theme.dim().add_modifier(Modifier::CROSSED_OUT),
            ),
            Span::styled(" (deleted)", theme.error()),
        ],
        // Placed on its notice's line when that is shown (`place_line`).
        None | Some(LineAction::Replaces { .. }) => {
            let mut spans = vec![Span::raw(format!(": {}", message.text))];
            if message.edited {
                spans.push(Span::styled(" (edited)", theme.dim()));
            }
            spans
        }
        // The message itself has left the stream: say which one.
        Some(LineAction::Edit { target }) => vec![Span::raw(format!(
            " edited {}: {}",
            short(target),
            message.text
        ))],
        Some(LineAction::Delete { target, author }) => vec![Span::styled(
            match author {
                None => format!(" deleted message {}", short(target)),
                Some(author) => format!(
                    " deleted message {} of {} (as group admin)",
                    short(target),
                    shown_number(author)
                ),
            },
            theme.error(),
        )],
        Some(LineAction::Reaction { target, quote }) => {
            let about = quote
                .as_ref()
                .map(|q| format!("\u{201c}{q}\u{201d}"))
                .unwrap_or_else(|| short(target));
            let text = if message.text.is_empty() {
                format!(" took back a reaction to {about}")
            } else {
                format!(" reacted {} to {about}", message.text)
            };
            vec![Span::raw(text)]
        }
        Some(LineAction::Call { video, rejected }) => {
            let kind = if *video { "video" } else { "voice" };
            let outcome = if *rejected { ", rejected" } else { "" };
            vec![Span::styled(
                format!(" is calling ({kind} call{outcome})"),
                theme.error(),
            )]
        }
    }
}

pub fn render_logs(frame: &mut Frame, app: &App, pane: Rect, theme: Theme) {
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.border(app.focus == Focus::Logs))
        .title(" Log ");
    let inner = block.inner(pane);
    frame.render_widget(block, pane);
    let items = app.logs.items();
    let end = items.len().saturating_sub(app.logs.offset);
    let start = end.saturating_sub(inner.height as usize);
    let lines: Vec<Line> = items
        .range(start..end)
        .map(|l| Line::raw(l.as_str()))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
