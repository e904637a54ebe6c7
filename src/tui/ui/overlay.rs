//! Pop-ups over the dashboard: help (from the keymap), confirmations and
//! prompts.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::theme::Theme;
use crate::tui::app::{App, Overlay, PromptKind};
use crate::tui::keymap::BINDINGS;

pub fn render(frame: &mut Frame, app: &App, theme: Theme) {
    let Some(overlay) = &app.overlay else {
        return;
    };
    let (title, lines) = match overlay {
        Overlay::Help => (" Help · any key closes ".to_string(), help_lines(theme)),
        Overlay::ConfirmLogout(id) => (
            " Log out? ".to_string(),
            vec![
                Line::from(format!("Log out session {id}?")),
                Line::from("This unlinks the device from the phone and deletes its credentials;"),
                Line::from("pairing again needs a new QR scan."),
                Line::from(""),
                Line::from(vec![
                    Span::styled("y", theme.key()),
                    Span::raw(" log out   "),
                    Span::styled("n", theme.key()),
                    Span::raw(" keep it"),
                ]),
            ],
        ),
        Overlay::ConfirmQuit => (
            " Quit? ".to_string(),
            vec![
                Line::from("A session is pairing right now; quitting stops the pairing."),
                Line::from("Connected sessions keep their credentials."),
                Line::from(""),
                Line::from(vec![
                    Span::styled("y", theme.key()),
                    Span::raw(" quit   "),
                    Span::styled("n", theme.key()),
                    Span::raw(" stay"),
                ]),
            ],
        ),
        Overlay::Prompt { kind, input, error } => {
            let mut hint = "Enter confirms · Esc cancels";
            let (title, question) = match kind {
                PromptKind::AddSession => (
                    " Add a session ",
                    "Session id (letters, digits, _ . -; up to 64):".to_string(),
                ),
                PromptKind::PairPhone(id) => (
                    " Pair by phone number ",
                    format!("Phone number of the account to link to {id}, with country code:"),
                ),
                PromptKind::Webhook(id) => (
                    " Webhook ",
                    format!("URL that {id}'s messages are posted to (the token stays):"),
                ),
                PromptKind::NatsSubject(id) => {
                    hint = "Enter confirms (empty: none of its events go to NATS) · Esc cancels";
                    (
                        " NATS subject ",
                        format!(
                            "Subject prefix for {id}'s events (they go to {}):",
                            crate::nats::subject::subject("<prefix>", id.as_str(), "<event>")
                        ),
                    )
                }
                PromptKind::Filter => {
                    (" Filter messages ", "Show messages containing:".to_string())
                }
            };
            let mut lines = vec![
                Line::from(question),
                Line::from(vec![
                    Span::raw("> "),
                    Span::styled(format!("{input}▏"), theme.key()),
                ]),
            ];
            if let Some(error) = error {
                lines.push(Line::styled(error.clone(), theme.error()));
            }
            lines.push(Line::styled(hint, theme.dim()));
            (title.to_string(), lines)
        }
    };
    let width = (lines.iter().map(Line::width).max().unwrap_or(20) as u16 + 4)
        .max(title.chars().count() as u16 + 4);
    let area = centered(frame.area(), width, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(title)),
        area,
    );
}

fn help_lines(theme: Theme) -> Vec<Line<'static>> {
    let width = BINDINGS
        .iter()
        .map(|b| b.keys_label.chars().count())
        .max()
        .unwrap_or(4);
    BINDINGS
        .iter()
        .map(|b| {
            Line::from(vec![
                Span::styled(format!(" {:<width$}  ", b.keys_label), theme.key()),
                Span::raw(b.help),
            ])
        })
        .collect()
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}
