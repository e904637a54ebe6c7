//! Connects the dashboard to the terminal and the engine: reads keys and
//! mouse clicks, feeds engine events and log lines into `App::update`,
//! carries out the effects, and redraws only when something changed (plus a
//! 1 Hz tick while a countdown is on screen). The terminal is restored on
//! every exit path, panics included.

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
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::app::{App, Effect, Msg};
use super::ui;
use crate::engine::{Engine, EngineEvent};

/// Log lines wait here for the log tail; the oldest are dropped if the
/// screen falls behind (the log file still has them).
pub type LogLines = mpsc::Receiver<String>;

/// Runs the dashboard until the operator quits or `shutdown` resolves.
pub async fn run(
    engine: Engine,
    mut logs: LogLines,
    message_capacity: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let mut terminal = enter()?;
    let colors = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let offset = *chrono::Local::now().offset();
    let mut app = App::new(message_capacity, colors, offset);
    app.update(Msg::Sessions(engine.snapshots()));

    let mut input = spawn_input_reader();
    let mut events = engine.subscribe();
    tokio::pin!(shutdown);
    // The loop only wakes for an input, an engine event, a log line or the
    // countdown tick, so drawing once per wake is drawing on change.
    loop {
        let now = crate::engine::now();
        terminal.draw(|frame| ui::render(frame, &app, now))?;
        // Tick only while a countdown is visible: an idle screen costs nothing.
        let tick = app
            .needs_tick()
            .then(|| tokio::time::sleep(Duration::from_secs(1)));
        let mut messages = Vec::new();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(event) = input.recv() => {
                if let Some(msg) = terminal_msg(event, &terminal, &app) {
                    messages.push(msg);
                }
            }
            event = events.recv() => messages.extend(engine_msgs(event, &engine)),
            Some(line) = logs.recv() => messages.push(Msg::Log(line)),
            _ = async { tick.unwrap().await }, if tick.is_some() => {}
        }
        // Coalesce a burst (a message flood) into one redraw.
        while let Ok(event) = events.try_recv() {
            messages.push(Msg::from_engine(event));
        }
        let mut quit = false;
        for msg in messages {
            for effect in app.update(msg) {
                quit |= apply(effect, &engine);
            }
        }
        if quit {
            break;
        }
    }
    leave(&mut terminal)
}

impl Msg {
    fn from_engine(event: EngineEvent) -> Msg {
        match event {
            EngineEvent::SessionChanged(snapshot) => Msg::Session(snapshot),
            EngineEvent::Message(message) => Msg::Message(message),
            EngineEvent::Backlog { session, backlog } => Msg::Backlog(session, backlog),
        }
    }
}

fn engine_msgs(event: Result<EngineEvent, RecvError>, engine: &Engine) -> Vec<Msg> {
    match event {
        Ok(event) => vec![Msg::from_engine(event)],
        // The screen fell behind a flood: the engine never waits for it. Say
        // how much was skipped and resync the session states.
        Err(RecvError::Lagged(n)) => {
            vec![Msg::MessagesSkipped(n), Msg::Sessions(engine.snapshots())]
        }
        Err(RecvError::Closed) => vec![Msg::Sessions(engine.snapshots())],
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

/// Carries out an effect; true means quit.
fn apply(effect: Effect, engine: &Engine) -> bool {
    match effect {
        Effect::Quit => return true,
        Effect::Command(id, command) => {
            let engine = engine.clone();
            // Never block the screen on a session's mailbox.
            tokio::spawn(async move {
                if let Err(e) = engine.command(&id, command).await {
                    tracing::warn!("command for {id} not delivered: {e}");
                }
            });
        }
        Effect::AddSession(id) => {
            if let Err(e) = engine.add_session(&id, None, None) {
                tracing::error!("cannot add session {id}: {e}");
            }
        }
    }
    false
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
