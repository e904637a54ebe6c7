//! The one table of keys: `update` looks actions up here, and the footer and
//! the `?` help are rendered from it, so they cannot drift apart.

use ratatui::crossterm::event::KeyCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    Reconnect,
    Logout,
    AddSession,
    PairByCode,
    SetWebhook,
    SetNatsSubject,
    FocusNext,
    PageUp,
    PageDown,
    Follow,
    Filter,
    ToggleLogs,
    Help,
    Quit,
}

pub struct Binding {
    pub keys: &'static [KeyCode],
    /// How the keys are written in the footer and help ("↑/k").
    pub keys_label: &'static str,
    pub action: Action,
    /// A word or two for the footer.
    pub short: &'static str,
    /// A sentence for the help overlay.
    pub help: &'static str,
    pub in_footer: bool,
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: &[KeyCode::Up, KeyCode::Char('k')],
        keys_label: "↑/k",
        action: Action::Up,
        short: "up",
        help: "select the session above",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::Down, KeyCode::Char('j')],
        keys_label: "↓/j",
        action: Action::Down,
        short: "down",
        help: "select the session below",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::Char('r')],
        keys_label: "r",
        action: Action::Reconnect,
        short: "reconnect",
        help: "reconnect the selected session now (skips the retry wait; pairs again after a logout)",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('l')],
        keys_label: "l",
        action: Action::Logout,
        short: "logout",
        help: "log the selected session out: unlinks the device and deletes its credentials (asks first)",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('a')],
        keys_label: "a",
        action: Action::AddSession,
        short: "add",
        help: "add a session: asks for an id, then shows its pairing QR code",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('p')],
        keys_label: "p",
        action: Action::PairByCode,
        short: "pair code",
        help: "pair the selected session by phone number: shows an 8-character code to type on the phone",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('w')],
        keys_label: "w",
        action: Action::SetWebhook,
        short: "webhook",
        help: "point the selected session's webhook at a new URL (its token stays)",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::Char('n')],
        keys_label: "n",
        action: Action::SetNatsSubject,
        short: "NATS subject",
        help: "set the selected session's NATS subject prefix (empty: none of its events go to NATS)",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::Tab],
        keys_label: "Tab",
        action: Action::FocusNext,
        short: "focus",
        help: "move the focus between sessions, messages and logs",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::PageUp],
        keys_label: "PgUp",
        action: Action::PageUp,
        short: "scroll up",
        help: "scroll the messages (or logs) up; the stream stops following",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::PageDown],
        keys_label: "PgDn",
        action: Action::PageDown,
        short: "scroll down",
        help: "scroll the messages (or logs) down",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::End],
        keys_label: "End",
        action: Action::Follow,
        short: "follow",
        help: "jump to the newest message and follow the stream again",
        in_footer: false,
    },
    Binding {
        keys: &[KeyCode::Char('/')],
        keys_label: "/",
        action: Action::Filter,
        short: "filter",
        help: "filter the messages by text, number, name or session (empty clears)",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('L')],
        keys_label: "L",
        action: Action::ToggleLogs,
        short: "logs",
        help: "show or hide the log tail",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('?')],
        keys_label: "?",
        action: Action::Help,
        short: "help",
        help: "show this help",
        in_footer: true,
    },
    Binding {
        keys: &[KeyCode::Char('q')],
        keys_label: "q",
        action: Action::Quit,
        short: "quit",
        help: "quit: sessions disconnect, keeping credentials (asks while pairing); attached: detach, the service runs on",
        in_footer: true,
    },
];

pub fn action_for(code: KeyCode) -> Option<Action> {
    BINDINGS
        .iter()
        .find(|b| b.keys.contains(&code))
        .map(|b| b.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice() {
        let mut seen = Vec::new();
        for binding in BINDINGS {
            for key in binding.keys {
                assert!(!seen.contains(key), "{key:?} bound twice");
                seen.push(*key);
            }
        }
    }

    #[test]
    fn every_action_has_exactly_one_binding() {
        let actions = [
            Action::Up,
            Action::Down,
            Action::Reconnect,
            Action::Logout,
            Action::AddSession,
            Action::PairByCode,
            Action::SetWebhook,
            Action::SetNatsSubject,
            Action::FocusNext,
            Action::PageUp,
            Action::PageDown,
            Action::Follow,
            Action::Filter,
            Action::ToggleLogs,
            Action::Help,
            Action::Quit,
        ];
        for action in actions {
            let count = BINDINGS.iter().filter(|b| b.action == action).count();
            assert_eq!(count, 1, "{action:?}");
        }
        assert_eq!(BINDINGS.len(), actions.len());
    }

    #[test]
    fn lookup_finds_both_arrow_and_vim_keys() {
        assert_eq!(action_for(KeyCode::Up), Some(Action::Up));
        assert_eq!(action_for(KeyCode::Char('k')), Some(Action::Up));
        assert_eq!(action_for(KeyCode::Char('x')), None);
    }
}
