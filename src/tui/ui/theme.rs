//! Colours and emphasis. With NO_COLOR every style drops its colours and
//! keeps only bold/dim/reverse, so the text labels carry the meaning.

use ratatui::style::{Color, Modifier, Style};

use crate::engine::SessionState;

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub colors: bool,
}

impl Theme {
    fn paint(&self, style: Style, color: Color) -> Style {
        if self.colors { style.fg(color) } else { style }
    }

    pub fn badge(&self, state: &SessionState) -> Style {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        match state {
            SessionState::Connected => self.paint(bold, Color::Green),
            SessionState::Connecting => self.paint(bold, Color::Yellow),
            SessionState::QrScanRequired(_)
            | SessionState::PairingCode { .. }
            | SessionState::PasskeyRequired => self.paint(bold, Color::Magenta),
            SessionState::Disconnected => self.paint(bold, Color::LightRed),
            SessionState::Halted(_) => self.paint(bold, Color::Red),
            SessionState::LoggedOut | SessionState::Stopped => {
                self.paint(Style::new(), Color::DarkGray)
            }
        }
    }

    pub fn dim(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::DIM), Color::DarkGray)
    }

    pub fn title(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Cyan)
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Cyan)
        } else {
            Style::new()
        }
    }

    pub fn error(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Red)
    }

    pub fn key(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Yellow)
    }

    pub fn phone(&self) -> Style {
        self.paint(Style::new(), Color::LightBlue)
    }
}
