//! Connects the dashboard to the terminal and to the service's feed (a
//! `Link`: the service in this process, or one attached to over its
//! socket; the dashboard cannot tell them apart): reads keys and mouse
//! clicks, feeds frames into `App::update`, sends the requests it makes,
//! and redraws only when something changed (plus a 1 Hz tick while a
//! countdown is on screen). The terminal is restored on every exit path,
//! panics included.

use std::io::{self, Stdout};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event, KeyEventKind, MouseButton, MouseEventKind,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::mpsc;

use super::app::{App, Effect, Msg};
use super::ui;
use crate::console::wire::ServiceFrame;
use crate::console::{Link, LinkEvent};

/// Runs the dashboard until the operator quits, the feed ends (the service
/// in this process shut down) or `shutdown` resolves.
pub async fn run(
    mut link: Link,
    message_capacity: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let mut terminal = enter()?;
    let colors = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let offset = *chrono::Local::now().offset();
    let mut app = App::new(message_capacity, colors, offset);

    let mut input = spawn_input_reader();
    tokio::pin!(shutdown);
    // The loop only wakes for an input, a frame or the countdown tick, so
    // drawing once per wake is drawing on change.
    loop {
        let now = crate::engine::now();
        terminal.draw(|frame| ui::render(frame, &app, now))?;
        // Tick only while a countdown is visible: an idle screen costs nothing.
        let tick = app
            .needs_tick()
            .then(|| tokio::time::sleep(Duration::from_secs(1)));
        let mut messages = std::collections::VecDeque::new();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(event) = input.recv() => {
                if let Some(msg) = terminal_msg(event, &terminal, &app) {
                    messages.push_back(msg);
                }
            }
            event = link.events.recv() => match event {
                Some(event) => messages.push_back(link_msg(event)),
                None => break,
            },
            _ = async { tick.unwrap().await }, if tick.is_some() => {}
        }
        // Coalesce a burst (a message flood) into one redraw.
        while let Ok(event) = link.events.try_recv() {
            messages.push_back(link_msg(event));
        }
        let mut quit = false;
        while let Some(msg) = messages.pop_front() {
            for effect in app.update(msg) {
                match effect {
                    Effect::Quit => quit = true,
                    // Never block the screen on the service.
                    Effect::Request(request) => {
                        if link.requests.try_send(request).is_err() {
                            messages.push_back(Msg::Notice(
                                "the service is busy; try again in a moment".into(),
                            ));
                        }
                    }
                }
            }
        }
        if quit {
            break;
        }
    }
    leave(&mut terminal)
}

fn link_msg(event: LinkEvent) -> Msg {
    match event {
        LinkEvent::Frame(frame) => frame_msg(*frame),
        LinkEvent::Gone(why) => Msg::ServiceGone(why),
        LinkEvent::Closed(why) => Msg::LinkClosed(why),
    }
}

fn frame_msg(frame: ServiceFrame) -> Msg {
    match frame {
        ServiceFrame::Hello { service, pid, .. } => Msg::Attached { service, pid },
        ServiceFrame::Refused { reason } => Msg::LinkClosed(reason),
        ServiceFrame::Backfill(backfill) => Msg::Backfill(backfill),
        ServiceFrame::Session { snapshot } => Msg::Session(snapshot),
        ServiceFrame::SessionRemoved { session } => Msg::SessionRemoved(session),
        ServiceFrame::Message { message } => Msg::Message(message),
        ServiceFrame::Backlog { session, backlog } => Msg::Backlog(session, backlog),
        ServiceFrame::Skipped { count } => Msg::MessagesSkipped(count),
        ServiceFrame::Log { line } => Msg::Log(line),
        ServiceFrame::Notice { text } => Msg::Notice(text),
        ServiceFrame::Cluster { view } => Msg::Cluster(view),
    }
}

/// A terminal event as a message. A click is turned into the session row
/// it hit here, where the terminal's size is known, so `update` needs no
/// layout.
fn terminal_msg(
    event: Event,
    terminal: &Terminal<CrosstermBackend<Stdout>>,
    app: &App,
) -> Option<Msg> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => Some(Msg::Key(key)),
        Event::Mouse(mouse) if mouse.kind == MouseEventKind::Down(MouseButton::Left) => {
            let size = terminal.size().ok()?;
            let area = ratatui::layout::Rect::new(0, 0, size.width, size.height);
            ui::session_at(app, area, mouse.column, mouse.row).map(Msg::SelectSession)
        }
        // Any other event (resize, focus) just triggers a redraw.
        _ => None,
    }
}

/// Reads terminal events on a thread of its own (crossterm's read blocks).
fn spawn_input_reader() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if tx.blocking_send(event).is_err() {
                break;
            }
        }
    });
    rx
}

fn enter() -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    Terminal::new(CrosstermBackend::new(io::stdout()))
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, DisableMouseCapture);
}

fn leave(terminal: &mut Terminal<CrosstermBackend<Stdout>>) -> io::Result<()> {
    restore();
    terminal.show_cursor()
}
