//! The dashboard on ratatui's TestBackend: snapshots of each state, the QR
//! pane decoded back to its payload (proof that it scans), and the keys.

use std::sync::Arc;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use std::time::Instant;

use wabridge::cluster::status::ReportedStatus;
use wabridge::cluster::view::{ClusterSession, ClusterSnapshot};
use wabridge::console::wire::{Backfill, LogLine, Request};
use wabridge::engine::close::HaltReason;
use wabridge::engine::{
    InboundMessage, LastClose, LineAction, PeerFailures, QrOffer, SenderNumber, SessionSnapshot,
    SessionState,
};
use wabridge::nats::subject::NO_OWN_PREFIX_IN_CLUSTER;
use wabridge::tui::app::{App, Effect, Focus, Msg, Overlay};
use wabridge::tui::ui;

/// A real pairing payload's shape: ref, noise key, identity key, adv secret, platform.
const QR_PAYLOAD: &str = "2@Kd0zHcn7zVYtRg1fX4+Xr5BkEw9q3eQ0mC1vIbP2LwTn8sJ6uA4yDhGoZf5RkM1xNcQeW3pUv7tHaBsFgLj9Iy2Eo0Kr,\
QmFzZTY0LW5vaXNlLWtleS1mb3ItdGVzdGluZy1vbmx5IQ==,aWRlbnRpdHkta2V5LWZvci10ZXN0aW5nLW9ubHktISE=,\
YWR2LXNlY3JldC1mb3ItdGVzdGluZy1vbmx5LSEhISEh,1";

use crate::support::id;

fn app() -> App {
    App::new(10_000, true, chrono::FixedOffset::east_opt(0).unwrap())
}

fn session(name: &str, state: SessionState) -> SessionSnapshot {
    SessionSnapshot {
        state,
        ..SessionSnapshot::new(id(name))
    }
}

fn connected(name: &str, phone: &str) -> SessionSnapshot {
    SessionSnapshot {
        phone: Some(phone.into()),
        lid: Some("100000000000001".into()),
        ..session(name, SessionState::Connected)
    }
}

fn message(n: i64, sender: SenderNumber) -> Arc<InboundMessage> {
    Arc::new(InboundMessage {
        session: id("WA-Dexciss"),
        id: format!("3EB0{n:04}"),
        timestamp: 1_764_000_000 + n,
        sender_lid: match &sender {
            SenderNumber::HiddenLid(lid) => Some(lid.clone()),
            SenderNumber::Phone(_) => None,
        },
        sender,
        push_name: Some("Asha".into()),
        group: None,
        text: format!("order #{n} please"),
        edited: false,
        deleted: false,
        action: None,
    })
}

fn draw(app: &App, now: Instant, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(frame, app, now)).unwrap();
    terminal
}

fn screen(app: &App, now: Instant, width: u16, height: u16) -> String {
    draw(app, now, width, height).backend().to_string()
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

fn pairing(now: Instant) -> SessionSnapshot {
    session(
        "new-shop",
        SessionState::QrScanRequired(QrOffer {
            payload: QR_PAYLOAD.into(),
            expires_at: now + Duration::from_secs(42),
            index: 2,
        }),
    )
}

/// Reads the QR back from the drawn cells: each '▀' cell is two modules,
/// foreground on top and background below. Black means dark.
fn decode_qr(buffer: &Buffer) -> Option<String> {
    const SCALE: usize = 6;
    let area = buffer.area;
    let (w, h) = (area.width as usize, area.height as usize * 2);
    let dark = |x: usize, y: usize| {
        let cell = &buffer[(x as u16, (y / 2) as u16)];
        if cell.symbol() != "▀" {
            return false;
        }
        let color = if y.is_multiple_of(2) {
            cell.fg
        } else {
            cell.bg
        };
        color == Color::Black
    };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w * SCALE, h * SCALE, |x, y| {
        if dark(x / SCALE, y / SCALE) { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    let (_, content) = grids.first()?.decode().ok()?;
    Some(content)
}

#[test]
fn the_pairing_qr_scans_back_to_its_payload() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![
        pairing(now),
        connected("WA-Dexciss", "919075167132"),
    ]));
    app.update(key(KeyCode::Char('j')));
    let terminal = draw(&app, now, 140, 50);
    insta::assert_snapshot!("pairing_qr", terminal.backend().to_string());
    assert_eq!(
        decode_qr(terminal.backend().buffer()).as_deref(),
        Some(QR_PAYLOAD)
    );
}

#[test]
fn a_tiny_terminal_asks_for_the_size_it_needs_instead_of_a_clipped_code() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![pairing(now)]));
    let terminal = draw(&app, now, 80, 24);
    assert_eq!(decode_qr(terminal.backend().buffer()), None);
    let text = terminal.backend().to_string();
    assert!(text.contains("Terminal too small"), "{text}");
    insta::assert_snapshot!("tiny_terminal", text);
}

#[test]
fn backoff_countdown_ticks_between_two_instants() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![SessionSnapshot {
        attempt: 3,
        next_retry_at: Some(now + Duration::from_secs(17)),
        last_close: Some(LastClose {
            status: 408,
            description: "could not connect (network error or handshake timeout)".into(),
        }),
        phone: Some("919075167132".into()),
        ..session("WA-Dexciss", SessionState::Disconnected)
    }]));
    let first = screen(&app, now, 100, 20);
    let later = screen(&app, now + Duration::from_secs(5), 100, 20);
    assert!(
        first.contains("attempt 3 · retry in 17s · network error"),
        "{first}"
    );
    assert!(later.contains("attempt 3 · retry in 12s"), "{later}");
    insta::assert_snapshot!("backoff_at_17s", first);
    insta::assert_snapshot!("backoff_at_12s", later);
    assert!(app.needs_tick());
}

#[test]
fn halted_reasons_read_as_plain_words() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![
        session("a-replaced", SessionState::Halted(HaltReason::Replaced)),
        session(
            "b-banned",
            SessionState::Halted(HaltReason::TemporaryBan {
                code: 101,
                lifts_at: now + Duration::from_secs(52 * 60),
            }),
        ),
        session(
            "c-outdated",
            SessionState::Halted(HaltReason::ClientOutdated),
        ),
    ]));
    let text = screen(&app, now, 150, 20);
    assert!(text.contains("replaced by another client"), "{text}");
    assert!(text.contains("temporary ban, lifts in 52m"), "{text}");
    assert!(text.contains("client outdated"), "{text}");
    insta::assert_snapshot!("halted", text);
}

#[test]
fn connecting_and_logged_out() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![
        session("a-connecting", SessionState::Connecting),
        session("b-gone", SessionState::LoggedOut),
    ]));
    app.update(key(KeyCode::Down));
    let text = screen(&app, now, 100, 20);
    assert!(text.contains("Press r to pair again"), "{text}");
    insta::assert_snapshot!("connecting_and_logged_out", text);
    assert!(!app.needs_tick(), "nothing counts down: no tick");
}

#[test]
fn a_message_flood_shows_the_newest_at_the_bottom() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![connected("WA-Dexciss", "919075167132")]));
    for n in 0..5000 {
        app.update(Msg::Message(message(
            n,
            SenderNumber::Phone("447700900123".into()),
        )));
    }
    let text = screen(&app, now, 100, 24);
    let last = text.lines().rev().find(|l| l.contains("order #")).unwrap();
    assert!(last.contains("order #4999 please"), "{text}");
    assert!(last.contains("+447700900123 (Asha)"), "{last}");
    insta::assert_snapshot!("message_flood", text);
}

#[test]
fn an_unresolved_lid_is_dimmed_and_never_shown_as_a_number() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![connected("WA-Dexciss", "919075167132")]));
    app.update(Msg::Message(message(
        1,
        SenderNumber::HiddenLid("260477250707536".into()),
    )));
    let terminal = draw(&app, now, 100, 20);
    let text = terminal.backend().to_string();
    assert!(
        text.contains("lid:260477250707536 (number hidden)"),
        "{text}"
    );
    assert!(!text.contains("+260477250707536"), "{text}");
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "lid:").unwrap();
    assert!(buffer[(x, y)].modifier.contains(Modifier::DIM));
    insta::assert_snapshot!("unresolved_lid", text);
}

#[test]
fn help_overlay_lists_every_key() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![connected("WA-Dexciss", "919075167132")]));
    app.update(key(KeyCode::Char('?')));
    let text = screen(&app, now, 120, 30);
    for binding in wabridge::tui::keymap::BINDINGS {
        assert!(text.contains(binding.help), "help lacks {:?}", binding.help);
    }
    insta::assert_snapshot!("help", text);
    app.update(key(KeyCode::Char('x')));
    assert_eq!(app.overlay, None, "any key closes the help");
}

fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let area = buffer.area;
    for y in 0..area.height {
        let row: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        if let Some(byte) = row.find(needle) {
            let x = row[..byte].chars().count() as u16;
            return Some((x, y));
        }
    }
    None
}

// ---- keys ----------------------------------------------------------------

fn two_sessions() -> App {
    let mut app = app();
    app.update(Msg::Sessions(vec![
        connected("a", "15550001111"),
        connected("b", "15550002222"),
    ]));
    app
}

#[test]
fn r_reconnects_the_selected_session() {
    let mut app = two_sessions();
    app.update(key(KeyCode::Char('j')));
    assert_eq!(
        app.update(key(KeyCode::Char('r'))),
        [Effect::Request(Request::Reconnect { session: id("b") })]
    );
}

#[test]
fn l_asks_before_logging_out() {
    let mut app = two_sessions();
    assert!(app.update(key(KeyCode::Char('l'))).is_empty());
    assert_eq!(app.overlay, Some(Overlay::ConfirmLogout(id("a"))));
    assert!(app.update(key(KeyCode::Char('n'))).is_empty());
    assert_eq!(app.overlay, None);
    app.update(key(KeyCode::Char('l')));
    assert_eq!(
        app.update(key(KeyCode::Char('y'))),
        [Effect::Request(Request::Logout { session: id("a") })]
    );
}

#[test]
fn a_validates_the_new_session_id() {
    let mut app = two_sessions();
    app.update(key(KeyCode::Char('a')));
    typed(&mut app, "../x");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    let Some(Overlay::Prompt {
        error: Some(error), ..
    }) = &app.overlay
    else {
        panic!("{:?}", app.overlay)
    };
    assert!(error.contains("invalid session id"), "{error}");
    for _ in 0..4 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "b");
    app.update(key(KeyCode::Enter));
    assert!(
        matches!(&app.overlay, Some(Overlay::Prompt { error: Some(e), .. }) if e.contains("already exists"))
    );
    app.update(key(KeyCode::Backspace));
    typed(&mut app, "shop-2");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Effect::Request(Request::AddSession {
            session: id("shop-2")
        })]
    );
}

#[test]
fn p_pairs_by_a_phone_number() {
    let mut app = two_sessions();
    app.update(key(KeyCode::Char('p')));
    typed(&mut app, "12ab");
    app.update(key(KeyCode::Enter));
    assert!(matches!(
        &app.overlay,
        Some(Overlay::Prompt { error: Some(_), .. })
    ));
    app.update(key(KeyCode::Esc));
    app.update(key(KeyCode::Char('p')));
    typed(&mut app, "+91 90751 67132");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Effect::Request(Request::PairWithPhone {
            session: id("a"),
            phone: "919075167132".into()
        })]
    );
}

#[test]
fn q_asks_only_while_a_session_is_pairing() {
    let mut app = two_sessions();
    assert_eq!(app.update(key(KeyCode::Char('q'))), [Effect::Quit]);
    app.update(Msg::Session(pairing(Instant::now())));
    assert!(app.update(key(KeyCode::Char('q'))).is_empty());
    assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
    assert_eq!(app.update(key(KeyCode::Char('y'))), [Effect::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.update(Msg::Key(ctrl_c)), [Effect::Quit]);
}

#[test]
fn scrolling_stops_following_and_end_resumes() {
    let mut app = two_sessions();
    for n in 0..50 {
        app.update(Msg::Message(message(n, SenderNumber::Phone("1".into()))));
    }
    app.update(key(KeyCode::PageUp));
    assert!(!app.messages.following());
    let offset = app.messages.offset;
    app.update(Msg::Message(message(50, SenderNumber::Phone("1".into()))));
    assert_eq!(
        app.messages.offset,
        offset + 1,
        "the view stays on the same lines"
    );
    app.update(key(KeyCode::End));
    assert!(app.messages.following());
}

#[test]
fn slash_filters_messages() {
    let mut app = two_sessions();
    app.update(Msg::Message(message(1, SenderNumber::Phone("111".into()))));
    app.update(Msg::Message(message(2, SenderNumber::Phone("222".into()))));
    app.update(key(KeyCode::Char('/')));
    typed(&mut app, "#2 ");
    app.update(key(KeyCode::Enter));
    let shown: Vec<_> = app.visible_messages().map(|m| m.id.clone()).collect();
    assert_eq!(shown, ["3EB00002"]);
}

#[test]
fn a_click_selects_the_session_row() {
    let mut app = two_sessions();
    // Row 0 is the title, row 1 the pane border, rows 2.. the sessions.
    let hit = wabridge::tui::ui::session_at(&app, Rect::new(0, 0, 100, 30), 5, 3);
    assert_eq!(hit, Some(1));
    app.update(Msg::SelectSession(1));
    assert_eq!(app.selected, 1);
    assert_eq!(app.focus, Focus::Sessions);
}

#[test]
fn the_ring_buffer_is_bounded() {
    let mut app = App::new(100, true, chrono::FixedOffset::east_opt(0).unwrap());
    for n in 0..1000 {
        app.update(Msg::Message(message(n, SenderNumber::Phone("1".into()))));
    }
    assert_eq!(app.messages.items().len(), 100);
    assert_eq!(app.messages.items()[0].id, "3EB00900");
}

#[test]
fn skipped_messages_are_counted_on_screen() {
    let mut app = two_sessions();
    app.update(Msg::MessagesSkipped(42));
    let text = screen(&app, Instant::now(), 100, 20);
    assert!(text.contains("42 messages skipped"), "{text}");
}

#[test]
fn the_webhook_backlog_shows_beside_its_session() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![connected("WA-Dexciss", "919075167132")]));
    let text = screen(&app, now, 140, 20);
    assert!(
        !text.contains("webhook:"),
        "nothing shown while all is delivered"
    );
    app.update(Msg::Backlog(
        id("WA-Dexciss"),
        wabridge::engine::BacklogInfo {
            pending: 12,
            dead: 1,
            oldest_at: Some(now - Duration::from_secs(180)),
            write_error: None,
            beside: Vec::new(),
        },
    ));
    let text = screen(&app, now, 200, 20);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("webhook: 12 waiting, oldest 3m · 1 dead"))
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "in the sessions row and the detail pane: {text}"
    );

    // The webhook caught up; NATS, beside it, has not.
    app.update(Msg::Backlog(
        id("WA-Dexciss"),
        wabridge::engine::BacklogInfo {
            beside: vec![wabridge::engine::TargetBacklog {
                target: "NATS".into(),
                backlog: wabridge::engine::BacklogInfo {
                    pending: 5,
                    oldest_at: Some(now - Duration::from_secs(120)),
                    ..Default::default()
                },
            }],
            ..Default::default()
        },
    ));
    let text = screen(&app, now, 200, 20);
    assert!(!text.contains("webhook:"), "{text}");
    let rows = text
        .lines()
        .filter(|l| l.contains("NATS: 5 waiting, oldest 2m"))
        .count();
    assert_eq!(rows, 2, "in the sessions row and the detail pane: {text}");
}

#[test]
fn the_readme_key_table_is_the_keymap() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for binding in wabridge::tui::keymap::BINDINGS {
        let row = format!("| {} | {} |", binding.keys_label, binding.help);
        assert!(readme.contains(&row), "README.md lacks the key row {row:?}");
    }
}

#[test]
fn a_number_learned_later_shows_on_earlier_messages() {
    let mut app = app();
    app.update(Msg::Message(message(
        1,
        SenderNumber::HiddenLid("260477250707536".into()),
    )));
    let learned = Arc::new(InboundMessage {
        sender_lid: Some("260477250707536".into()),
        ..(*message(2, SenderNumber::Phone("919075167132".into()))).clone()
    });
    app.update(Msg::Message(learned));
    let senders: Vec<&SenderNumber> = app.messages.items().iter().map(|m| &m.sender).collect();
    assert_eq!(
        senders,
        [
            &SenderNumber::Phone("919075167132".into()),
            &SenderNumber::Phone("919075167132".into())
        ]
    );
}

#[test]
fn edits_and_deletes_mark_their_line_and_reactions_and_calls_say_what_happened() {
    let mut app = app();
    let now = Instant::now();
    app.update(Msg::Sessions(vec![connected("WA-Dexciss", "919075167132")]));
    let phone = || SenderNumber::Phone("919075167132".into());
    let action = |n: i64, text: &str, action: LineAction| {
        Arc::new(InboundMessage {
            text: text.into(),
            action: Some(action),
            ..(*message(n, phone())).clone()
        })
    };
    let target = |n: i64| format!("3EB0{n:04}");
    for n in 1..=3 {
        app.update(Msg::Message(message(n, phone())));
    }
    app.update(Msg::Message(action(
        10,
        "order #1, 2 boxes",
        LineAction::Edit { target: target(1) },
    )));
    app.update(Msg::Message(action(
        11,
        "",
        LineAction::Delete {
            target: target(2),
            author: None,
        },
    )));
    app.update(Msg::Message(action(
        12,
        "👍",
        LineAction::Reaction {
            target: target(3),
            quote: None,
        },
    )));
    app.update(Msg::Message(action(
        13,
        "",
        LineAction::Delete {
            target: "GONE".into(),
            author: None,
        },
    )));
    app.update(Msg::Message(action(
        14,
        "",
        LineAction::Call {
            video: false,
            rejected: true,
        },
    )));
    let text = screen(&app, now, 150, 30);
    assert!(text.contains("order #1, 2 boxes (edited)"), "{text}");
    assert!(
        !text.contains("order #1 please"),
        "the old text is gone: {text}"
    );
    assert!(text.contains("order #2 please (deleted)"), "{text}");
    assert!(
        text.contains("reacted 👍 to \u{201c}order #3 please\u{201d}"),
        "{text}"
    );
    assert!(text.contains("deleted message GONE"), "{text}");
    assert!(text.contains("is calling (voice call, rejected)"), "{text}");
    // An edit or a delete of a shown message adds no line of its own.
    assert_eq!(app.messages.items().len(), 6);
}

#[test]
fn a_group_admins_delete_marks_the_authors_line_and_nobody_elses() {
    let mut app = app();
    let now = Instant::now();
    app.update(Msg::Sessions(vec![connected("WA-Dexciss", "919075167132")]));
    let asha = SenderNumber::Phone("919075167132".into());
    let ben = SenderNumber::HiddenLid("100000000000002".into());
    app.update(Msg::Message(message(1, asha.clone())));
    let delete = |author: Option<SenderNumber>| {
        Arc::new(InboundMessage {
            text: String::new(),
            push_name: Some("Ben".into()),
            action: Some(LineAction::Delete {
                target: "3EB00001".into(),
                author,
            }),
            ..(*message(2, ben.clone())).clone()
        })
    };
    // Ben deleting "his own" message 3EB00001 does not touch Asha's.
    app.update(Msg::Message(delete(None)));
    let text = screen(&app, now, 150, 30);
    assert!(!text.contains("(deleted)"), "{text}");
    assert!(text.contains("deleted message 3EB00001"), "{text}");
    // As the group's admin, naming her, he does.
    app.update(Msg::Message(delete(Some(asha))));
    let text = screen(&app, now, 150, 30);
    assert!(text.contains("order #1 please (deleted)"), "{text}");
    assert_eq!(app.messages.items().len(), 2, "no line of its own");
    // One whose line left the stream says whose it was.
    app.update(Msg::Message(Arc::new(InboundMessage {
        action: Some(LineAction::Delete {
            target: "3EB09999".into(),
            author: Some(SenderNumber::HiddenLid("100000000000003".into())),
        }),
        ..(*delete(None)).clone()
    })));
    let text = screen(&app, now, 150, 30);
    assert!(
        text.contains("deleted message 3EB09999 of lid:100000000000003 (as group admin)"),
        "{text}"
    );
}

#[test]
fn a_resend_takes_its_notices_line_and_the_detail_names_peers_with_unreadable_messages() {
    let mut app = app();
    let now = Instant::now();
    app.update(Msg::Sessions(vec![SessionSnapshot {
        unreadable: vec![PeerFailures {
            peer: "919075167132".into(),
            count: 4,
        }],
        ..connected("WA-Dexciss", "919075167132")
    }]));
    let phone = || SenderNumber::Phone("919075167132".into());
    let notice = InboundMessage {
        text: "[unreadable: could not be decrypted]".into(),
        ..(*message(1, phone())).clone()
    };
    app.update(Msg::Message(Arc::new(notice)));
    app.update(Msg::Message(message(2, phone())));
    app.update(Msg::Message(Arc::new(InboundMessage {
        text: "the real order".into(),
        action: Some(LineAction::Replaces {
            target: "3EB00001".into(),
        }),
        ..(*message(1, phone())).clone()
    })));
    let text = screen(&app, now, 150, 40);
    assert!(text.contains("the real order"), "{text}");
    assert!(!text.contains("[unreadable"), "{text}");
    assert_eq!(app.messages.items().len(), 2, "no line of its own");
    assert!(
        text.contains("Unreadable messages: 4 (most from 919075167132 ×4)"),
        "{text}"
    );
}

fn backfill(instance: u64, sessions: Vec<SessionSnapshot>, messages: &[i64], logs: &[u64]) -> Msg {
    Msg::Backfill(Backfill {
        instance,
        sessions,
        messages: messages
            .iter()
            .map(|&n| message(n, SenderNumber::Phone("919075167132".into())))
            .collect(),
        logs: logs
            .iter()
            .map(|&seq| LogLine {
                seq,
                text: format!("line {seq}"),
            })
            .collect(),
    })
}

#[test]
fn a_reattached_dashboard_shows_what_happened_to_its_lines_meanwhile() {
    let now = Instant::now();
    let mut app = app();
    let sessions = vec![connected("WA-Dexciss", "919075167132")];
    app.update(backfill(1, sessions.clone(), &[1, 2], &[]));
    // Away, message 1 was edited and message 2 deleted: the service's
    // backfill has them marked.
    let Msg::Backfill(mut later) = backfill(1, sessions, &[1, 2], &[]) else {
        unreachable!()
    };
    later.messages[0] = Arc::new(InboundMessage {
        text: "order #1, 2 boxes".into(),
        edited: true,
        ..(*later.messages[0]).clone()
    });
    later.messages[1] = Arc::new(InboundMessage {
        deleted: true,
        ..(*later.messages[1]).clone()
    });
    app.update(Msg::Backfill(later));
    let text = screen(&app, now, 150, 30);
    assert!(text.contains("order #1, 2 boxes (edited)"), "{text}");
    assert!(text.contains("order #2 please (deleted)"), "{text}");
    assert_eq!(app.messages.items().len(), 2);
}

#[test]
fn reattaching_keeps_the_operators_place_and_shows_each_message_and_line_once() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Attached {
        service: "wabridge 0.1.0".into(),
        pid: 4242,
    });
    let sessions = vec![
        connected("a-shop", "15551234567"),
        connected("b-shop", "15557654321"),
    ];
    app.update(backfill(1, sessions.clone(), &[1, 2], &[1, 2]));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Char('/')));
    typed(&mut app, "order");
    app.update(key(KeyCode::Enter));
    let attached = screen(&app, now, 100, 30);
    assert!(attached.contains("attached to pid 4242"), "{attached}");
    assert!(attached.contains("q detach"), "{attached}");

    // The service goes away: the screen says so and keeps everything.
    app.update(Msg::ServiceGone("the service went away".into()));
    let gone = screen(&app, now, 100, 30);
    assert!(
        gone.contains("service gone, reconnecting… (the service went away)"),
        "{gone}"
    );
    assert!(gone.contains("order #2 please"), "{gone}");

    // The same run comes back with one more message and line: only those
    // are added; selection and filter are as they were.
    app.update(Msg::Attached {
        service: "wabridge 0.1.0".into(),
        pid: 4242,
    });
    app.update(backfill(1, sessions.clone(), &[1, 2, 3], &[1, 2, 3]));
    let texts: Vec<_> = app
        .messages
        .items()
        .iter()
        .map(|m| m.text.clone())
        .collect();
    assert_eq!(
        texts,
        ["order #1 please", "order #2 please", "order #3 please"]
    );
    assert_eq!(app.logs.items().len(), 3);
    assert_eq!(app.selected_session().unwrap().id.as_str(), "b-shop");
    assert_eq!(app.filter, "order");
    assert!(!screen(&app, now, 100, 30).contains("service gone"));

    // A restarted service (another run) numbers its lines afresh: all kept.
    app.update(backfill(2, sessions, &[], &[1]));
    assert_eq!(app.logs.items().len(), 4);
    assert_eq!(app.messages.items().len(), 3, "the earlier messages stay");
}

#[test]
fn a_deleted_session_leaves_the_list_and_attached_quitting_never_asks() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![
        connected("a-shop", "15551234567"),
        pairing(now),
    ]));
    app.update(Msg::SessionRemoved(id("a-shop")));
    assert_eq!(app.sessions.len(), 1);
    assert_eq!(app.selected_session().unwrap().id.as_str(), "new-shop");

    // In this process, quitting mid-pairing stops the pairing: it asks.
    app.update(key(KeyCode::Char('q')));
    assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
    app.update(key(KeyCode::Esc));
    // Attached, quitting only detaches: nothing to ask.
    app.update(Msg::Attached {
        service: "wabridge 0.1.0".into(),
        pid: 1,
    });
    assert_eq!(app.update(key(KeyCode::Char('q'))), [Effect::Quit]);
}

#[test]
fn a_request_that_failed_is_shown_until_the_next_key() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Notice("cannot add session x: disk full".into()));
    assert!(screen(&app, now, 100, 20).contains("cannot add session x: disk full"));
    app.update(key(KeyCode::Down));
    assert!(!screen(&app, now, 100, 20).contains("disk full"));
}

#[test]
fn w_points_the_selected_sessions_webhook_elsewhere() {
    let mut app = app();
    app.update(Msg::Sessions(vec![connected("shop", "15551234567")]));
    app.update(key(KeyCode::Char('w')));
    typed(&mut app, "erp.example/hook");
    assert_eq!(app.update(key(KeyCode::Enter)), []);
    assert!(matches!(
        app.overlay,
        Some(Overlay::Prompt { error: Some(_), .. })
    ));
    app.update(key(KeyCode::Esc));
    app.update(key(KeyCode::Char('w')));
    typed(
        &mut app,
        "https://erp.example/api/method/whatsapp.webhook?site=a",
    );
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Effect::Request(Request::SetWebhook {
            session: id("shop"),
            url: "https://erp.example/api/method/whatsapp.webhook?site=a".into(),
            token: None,
        })]
    );
}

#[test]
fn n_sets_the_selected_sessions_nats_subject_or_turns_nats_off() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![
        connected("shop", "15551234567"),
        connected("shop.in", "15557654321"),
    ]));
    app.update(key(KeyCode::Char('n')));
    let text = screen(&app, now, 120, 30);
    assert!(
        text.contains("Subject prefix for shop's events (they go to <prefix>.shop.<event>):"),
        "{text}"
    );
    assert!(
        text.contains("empty: none of its events go to NATS"),
        "the hint says what empty does: {text}"
    );
    // Wildcards, spaces and empty tokens are refused in the prompt.
    for bad in ["erp.*", "erp..acme", "erp acme", "erp.>"] {
        typed(&mut app, bad);
        assert_eq!(app.update(key(KeyCode::Enter)), [], "{bad}");
        let Some(Overlay::Prompt {
            error: Some(error),
            input,
            ..
        }) = &app.overlay
        else {
            panic!("{bad}: {:?}", app.overlay)
        };
        assert!(error.starts_with("the prefix "), "{error}");
        assert_eq!(input, bad, "the input stays to be corrected");
        for _ in 0..bad.chars().count() {
            app.update(key(KeyCode::Backspace));
        }
    }
    typed(&mut app, " erp.acme ");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Effect::Request(Request::SetNatsSubject {
            session: id("shop"),
            subject: "erp.acme".into(),
        })]
    );
    assert_eq!(app.overlay, None);
    // Empty: NATS off for the session.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Char('n')));
    let text = screen(&app, now, 120, 30);
    assert!(
        text.contains("(they go to <prefix>.shop%2Ein.<event>)"),
        "a '.' in the id is escaped in the subject: {text}"
    );
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Effect::Request(Request::SetNatsSubject {
            session: id("shop.in"),
            subject: String::new(),
        })]
    );
}

#[test]
fn a_pairing_code_shows_whole_with_its_countdown() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![session(
        "shop",
        SessionState::PairingCode {
            code: "4FRAN6DJ".into(),
            expires_at: now + Duration::from_secs(180),
        },
    )]));
    let text = screen(&app, now, 150, 50);
    assert!(text.contains("4 F R A - N 6 D J"), "{text}");
    assert!(text.contains("expires in 180s"), "{text}");
}

#[test]
fn a_connected_session_shows_how_fresh_its_link_is_and_keeps_it_ticking() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![SessionSnapshot {
        last_answer_at: Some(now - Duration::from_secs(4)),
        ..connected("shop", "15551234567")
    }]));
    let text = screen(&app, now, 120, 30);
    assert!(text.contains("Last answer from WhatsApp: 4s ago"), "{text}");
    assert!(app.needs_tick(), "the age counts up on screen");
}

#[test]
fn an_interrupted_offline_sync_is_shown_not_only_logged() {
    let now = Instant::now();
    let mut app = app();
    app.update(Msg::Sessions(vec![SessionSnapshot {
        interrupted_sync: Some(6),
        ..connected("shop", "15551234567")
    }]));
    let text = screen(&app, now, 120, 30);
    assert!(
        text.contains("Offline sync interrupted (6 item(s) announced)"),
        "{text}"
    );
}

// ---- the whole cluster ---------------------------------------------------

fn remote(
    name: &str,
    owner: Option<&str>,
    report: Option<ReportedStatus>,
    now: Instant,
) -> ClusterSession {
    ClusterSession {
        id: id(name),
        owner: owner.map(String::from),
        logged_out: false,
        report_node: report.as_ref().and(owner.map(String::from)),
        reported_at: report.as_ref().map(|_| now - Duration::from_secs(2)),
        report,
        stale: None,
    }
}

fn report(state: SessionState) -> ReportedStatus {
    ReportedStatus {
        phone: Some("15550009999".into()),
        ..ReportedStatus::of(&session("x", state), Instant::now())
    }
}

/// host-a runs `b-here`; host-b serves `a-there` (Connected), `d-pairing`
/// and `e-retrying`; nobody serves `c-orphan`.
fn cluster_app(now: Instant) -> App {
    let mut app = app();
    app.update(Msg::Sessions(vec![connected("b-here", "919075167132")]));
    let retrying = ReportedStatus {
        attempt: 2,
        next_retry_at: Some(now + Duration::from_secs(8)),
        last_close: Some(LastClose {
            status: 408,
            description: "could not connect".into(),
        }),
        ..report(SessionState::Disconnected)
    };
    let pairing = ReportedStatus {
        phone: None,
        ..report(pairing(now).state)
    };
    app.update(Msg::Cluster(ClusterSnapshot {
        node: "host-a".into(),
        sessions: vec![
            remote(
                "a-there",
                Some("host-b"),
                Some(report(SessionState::Connected)),
                now,
            ),
            remote("b-here", Some("host-a"), None, now),
            remote("c-orphan", None, None, now),
            remote("d-pairing", Some("host-b"), Some(pairing), now),
            remote("e-retrying", Some("host-b"), Some(retrying), now),
        ],
        read_at: Some(now),
        error: None,
    }));
    app
}

#[test]
fn in_a_cluster_the_list_shows_every_sessions_node_and_the_other_hosts_sessions_dimmed() {
    let now = Instant::now();
    let mut app = cluster_app(now);
    app.update(key(KeyCode::Down));
    let terminal = draw(&app, now, 150, 24);
    let text = terminal.backend().to_string();
    let title = text.lines().next().unwrap();
    assert!(
        title.contains(
            "wabridge · node host-a · 1 session here · 1 connected · cluster: 2 nodes, 5 sessions, 1 waiting for a host"
        ),
        "{title}"
    );
    let row = |name: &str| {
        let cell = format!("│ {name} ");
        text.lines()
            .find(|l| l.contains(&cell))
            .unwrap()
            .to_string()
    };
    assert!(row("SESSION").contains("NODE"), "{text}");
    assert!(row("a-there").contains("host-b") && row("a-there").contains("○ Connected"));
    assert!(row("b-here").contains("host-a") && row("b-here").contains("● Connected"));
    assert!(
        row("c-orphan").contains("no host") && row("c-orphan").contains("waiting for a host"),
        "{text}"
    );
    assert!(row("d-pairing").contains("pairing: QR on host-b"), "{text}");
    assert!(
        row("e-retrying").contains("attempt 2 · retry in 8s"),
        "{text}"
    );
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "a-there").unwrap();
    assert!(buffer[(x, y)].modifier.contains(Modifier::DIM), "dimmed");
    let (x, y) = find(buffer, "b-here").unwrap();
    assert!(
        !buffer[(x, y)].modifier.contains(Modifier::DIM),
        "ours is not"
    );
    assert!(
        !text.contains("2@Kd0zHcn7"),
        "a remote QR is never drawn here"
    );
    insta::assert_snapshot!("cluster_list", text);
    // The countdown of a remote retry ticks like a local one.
    assert!(app.needs_tick());
}

#[test]
fn a_remote_sessions_detail_says_which_node_serves_it_and_keys_on_it_say_where_to_act() {
    let now = Instant::now();
    let mut app = cluster_app(now);
    // The cluster came in while b-here was selected: it still is.
    assert_eq!(app.selected_row().unwrap().id().as_str(), "b-here");
    app.update(key(KeyCode::Up));
    assert_eq!(app.selected_row().unwrap().id().as_str(), "a-there");
    let text = screen(&app, now, 150, 24);
    assert!(text.contains("Served by: host-b"), "{text}");
    assert!(
        text.contains("State: Connected (reported by host-b 2s ago)"),
        "{text}"
    );
    assert!(text.contains("Phone: +15550009999"), "{text}");
    insta::assert_snapshot!("cluster_remote_detail", text);

    // r, l and p do nothing here but say where to act.
    for k in ['r', 'l', 'p'] {
        assert_eq!(app.update(key(KeyCode::Char(k))), [], "{k}");
        assert_eq!(app.overlay, None, "{k}");
        assert_eq!(
            app.notice.as_deref(),
            Some("a-there is served by host-b: use its dashboard or DELETE through the API"),
            "{k}"
        );
    }
    let text = screen(&app, now, 150, 24);
    assert!(
        text.contains("a-there is served by host-b: use its dashboard or DELETE through the API"),
        "{text}"
    );
    // No host of a cluster sends to NATS yet.
    assert_eq!(app.update(key(KeyCode::Char('n'))), []);
    assert_eq!(app.overlay, None);
    assert_eq!(
        app.notice.as_deref(),
        Some(format!("a-there: {}", NO_OWN_PREFIX_IN_CLUSTER).as_str())
    );
    // w goes through the cluster's database to host-b.
    app.update(key(KeyCode::Char('w')));
    typed(&mut app, "https://erp.example/hook");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Effect::Request(Request::SetWebhook {
            session: id("a-there"),
            url: "https://erp.example/hook".into(),
            token: None,
        })]
    );
    // On a session no host serves.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    assert_eq!(app.selected_row().unwrap().id().as_str(), "c-orphan");
    assert_eq!(app.update(key(KeyCode::Char('r'))), []);
    assert!(
        app.notice
            .as_deref()
            .unwrap()
            .contains("has no host right now"),
        "{:?}",
        app.notice
    );
    assert_eq!(app.update(key(KeyCode::Char('n'))), []);
    assert_eq!(
        app.notice.as_deref(),
        Some(format!("c-orphan: {}", NO_OWN_PREFIX_IN_CLUSTER).as_str())
    );
    let text = screen(&app, now, 150, 24);
    assert!(text.contains("Served by: no host"), "{text}");
    // Ours still obeys.
    app.update(key(KeyCode::Up));
    assert_eq!(
        app.update(key(KeyCode::Char('r'))),
        [Effect::Request(Request::Reconnect {
            session: id("b-here")
        })]
    );
    // A pairing elsewhere is shown as such, with no code.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    let text = screen(&app, now, 150, 24);
    assert!(
        text.contains("Pairing happens on host-b: scan or type the code from host-b's"),
        "{text}"
    );
}

#[test]
fn the_selection_follows_a_session_that_moves_here_and_old_views_are_marked() {
    let now = Instant::now();
    let mut app = cluster_app(now);
    app.update(key(KeyCode::Down));
    assert_eq!(app.selected_row().unwrap().id().as_str(), "c-orphan");
    // This host takes c-orphan: the same session stays selected, now ours.
    app.update(Msg::Session(connected("c-orphan", "15551112222")));
    assert_eq!(app.selected_session().unwrap().id.as_str(), "c-orphan");
    // Counted as served here before the next reading of the cluster says so.
    let title = screen(&app, now, 150, 24)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        title.contains("2 sessions here") && !title.contains("waiting for a host"),
        "{title}"
    );
    // A session that leaves this host stays listed as another host's.
    app.update(Msg::SessionRemoved(id("b-here")));
    assert!(app.rows().iter().any(|r| r.id().as_str() == "b-here"));
    assert_eq!(app.selected_row().unwrap().id().as_str(), "c-orphan");

    // A click under the column heads selects the row drawn there.
    let screen_area = Rect::new(0, 0, 150, 24);
    assert_eq!(ui::session_at(&app, screen_area, 5, 2), None, "the heads");
    assert_eq!(ui::session_at(&app, screen_area, 5, 3), Some(0));
    app.update(Msg::SelectSession(0));
    assert_eq!(app.selected_row().unwrap().id().as_str(), "a-there");

    // A stale report and a database that cannot be read say so.
    let mut view = app.cluster.clone().unwrap();
    view.sessions[0].stale = Some("host-b last reported 40s ago".into());
    view.error = Some("cannot read the cluster's sessions: connection refused".into());
    view.read_at = Some(now - Duration::from_secs(30));
    app.update(Msg::Cluster(view));
    let text = screen(&app, now, 150, 24);
    assert!(
        text.contains(
            "cluster as read 30s ago: cannot read the cluster's sessions: connection refused"
        ),
        "{text}"
    );
    assert!(
        text.contains("(stale: host-b last reported 40s ago)"),
        "{text}"
    );
}
