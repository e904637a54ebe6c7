//! Dashboard render cost: one frame with 100 sessions and 10,000 buffered
//! messages, drawn into ratatui's TestBackend. Prints figures; asserts none.
//!
//! Run: `cargo bench --bench tui_render`

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::Instant;

use wabridge::engine::close::HaltReason;
use wabridge::engine::{InboundMessage, LastClose, SenderNumber, SessionSnapshot, SessionState};
use wabridge::paths::SessionId;
use wabridge::tui::app::{App, Msg};
use wabridge::tui::ui;

fn sessions(now: Instant) -> Vec<SessionSnapshot> {
    (0..100)
        .map(|n| {
            let id = SessionId::parse(&format!("WA-shop-{n:03}")).unwrap();
            let state = match n % 4 {
                0 => SessionState::Connected,
                1 => SessionState::Disconnected,
                2 => SessionState::Halted(HaltReason::Replaced),
                _ => SessionState::Connecting,
            };
            SessionSnapshot {
                state,
                attempt: n % 7,
                next_retry_at: Some(now + Duration::from_secs(u64::from(n % 60))),
                last_close: Some(LastClose {
                    status: 408,
                    description: "could not connect".into(),
                }),
                phone: Some(format!("9190751{n:05}")),
                ..SessionSnapshot::new(id)
            }
        })
        .collect()
}

fn main() {
    let now = Instant::now();
    let mut app = App::new(10_000, true, chrono::FixedOffset::east_opt(0).unwrap());
    app.update(Msg::Sessions(sessions(now)));
    for n in 0..10_000i64 {
        let sender = if n % 5 == 0 {
            SenderNumber::HiddenLid(format!("2604772507{n:05}"))
        } else {
            SenderNumber::Phone(format!("4477009{n:05}"))
        };
        app.update(Msg::Message(Arc::new(InboundMessage {
            session: SessionId::parse("WA-shop-001").unwrap(),
            id: format!("3EB0{n:08}"),
            timestamp: 1_764_000_000 + n,
            sender,
            sender_lid: None,
            push_name: Some("Customer".into()),
            group: (n % 3 == 0).then(|| "Orders".to_string()),
            text: format!("message number {n} with some ordinary text in it"),
            edited: false,
            deleted: false,
            action: None,
        })));
    }
    for (width, height) in [(120u16, 40u16), (200, 60)] {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        // Warm up.
        for _ in 0..50 {
            terminal.draw(|f| ui::render(f, &app, now)).unwrap();
        }
        let mut times: Vec<Duration> = (0..500)
            .map(|_| {
                let start = StdInstant::now();
                terminal.draw(|f| ui::render(f, &app, now)).unwrap();
                start.elapsed()
            })
            .collect();
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "render {width}x{height}, 100 sessions, 10000 messages: mean {:?}, p50 {:?}, p99 {:?}",
            mean,
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}
