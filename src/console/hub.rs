//! The service's side of the dashboard feed: keeps what a dashboard shows
//! when it attaches (every session, the last messages, the log tail),
//! publishes every change to the attached dashboards, and carries out their
//! requests on the engine. The in-process dashboard and the ones attached
//! over the socket are fed from here alike.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

use super::wire::{Backfill, LogLine, Request, ServiceFrame};
use crate::cluster::control::ClusterControl;
use crate::cluster::view::ClusterSnapshot;
use crate::engine::state::place_line;
use crate::engine::{Command, Engine, EngineEvent, InboundMessage, SessionSnapshot};
use crate::paths::SessionId;

/// Log lines kept for a dashboard that attaches.
pub const LOG_TAIL: usize = 500;
/// Live frames a dashboard may fall behind by before it is resynced. Every
/// slot is allocated up front and keeps its last frame (~280 bytes each):
/// 1024 is a second of a 100-session flood, and a dashboard that falls
/// further behind is resynced, not left wrong.
const FEED_CAPACITY: usize = 1024;
/// Answers to one dashboard's requests waiting to be sent to it.
pub const NOTICE_QUEUE: usize = 16;

/// Cheap to clone; every clone serves the same feed.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// Which run of the service this is, so a dashboard can tell a restart
    /// from a reconnect to the same process.
    instance: u64,
    state: Mutex<Shown>,
    feed: broadcast::Sender<ServiceFrame>,
    /// In a cluster: where the dashboard's new sessions and webhooks go,
    /// so that they reach the host serving each (`act_through_cluster`).
    cluster: std::sync::OnceLock<ClusterControl>,
    /// Set when the service publishes to NATS (`[nats]`): without it a
    /// subject set from the dashboard is kept but unused, which the
    /// operator is told.
    nats: std::sync::OnceLock<()>,
}

/// What a dashboard shows, kept up to date from the engine's events (not
/// read from the engine at attach time, so that a dashboard never gets a
/// state older than a frame it already has).
struct Shown {
    sessions: BTreeMap<crate::paths::SessionId, SessionSnapshot>,
    messages: VecDeque<Arc<InboundMessage>>,
    message_capacity: usize,
    logs: VecDeque<LogLine>,
    next_log: u64,
    /// In a cluster, the cluster as last read; None alone.
    cluster: Option<ClusterSnapshot>,
}

/// A dashboard's view of the feed: everything so far, then every change.
pub struct Attachment {
    pub backfill: Backfill,
    /// In a cluster, the cluster as last read.
    pub cluster: Option<ClusterSnapshot>,
    live: broadcast::Receiver<ServiceFrame>,
}

impl Attachment {
    /// What a dashboard is sent first: the backfill, and in a cluster the
    /// cluster.
    pub fn first_frames(&self) -> Vec<ServiceFrame> {
        let mut frames = vec![ServiceFrame::Backfill(self.backfill.clone())];
        frames.extend(
            self.cluster
                .clone()
                .map(|view| ServiceFrame::Cluster { view }),
        );
        frames
    }

    /// The next frames for this dashboard: one change, or, when it fell
    /// behind a flood, how much it missed and the session states afresh.
    /// None once the service is shutting down.
    pub async fn next(&mut self, console: &Console) -> Option<Vec<ServiceFrame>> {
        match self.live.recv().await {
            Ok(frame) => Some(vec![frame]),
            Err(RecvError::Lagged(count)) => {
                let fresh = console.resync();
                let mut frames = vec![ServiceFrame::Skipped { count }];
                frames.extend(fresh.first_frames());
                self.live = fresh.live;
                Some(frames)
            }
            Err(RecvError::Closed) => None,
        }
    }
}

impl Console {
    /// Starts feeding from `engine` and `logs` (the log tail's lines),
    /// keeping `message_capacity` messages for dashboards that attach.
    pub fn start(engine: Engine, logs: mpsc::Receiver<String>, message_capacity: usize) -> Console {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let console = Console {
            inner: Arc::new(Inner {
                engine: engine.clone(),
                instance: instance_id(),
                state: Mutex::new(Shown {
                    sessions: BTreeMap::new(),
                    messages: VecDeque::new(),
                    message_capacity: message_capacity.max(1),
                    logs: VecDeque::new(),
                    next_log: 1,
                    cluster: None,
                }),
                feed,
                cluster: std::sync::OnceLock::new(),
                nats: std::sync::OnceLock::new(),
            }),
        };
        // Subscribe before reading the sessions: every change after the read
        // is then among the events, and applying an event twice is harmless.
        let events = engine.subscribe();
        console.resync_sessions(0);
        tokio::spawn(pump(Arc::downgrade(&console.inner), events, logs));
        console
    }

    /// Everything a dashboard shows now, and every change from now on, with
    /// nothing missed or repeated between the two.
    pub fn attach(&self) -> Attachment {
        self.attachment(true)
    }

    /// The sessions only, for a dashboard that fell behind: its messages
    /// were skipped (and counted), its session states must be right.
    fn resync(&self) -> Attachment {
        self.attachment(false)
    }

    fn attachment(&self, with_history: bool) -> Attachment {
        let state = lock(&self.inner.state);
        Attachment {
            backfill: Backfill {
                instance: self.inner.instance,
                sessions: state.sessions.values().cloned().collect(),
                messages: history(&state.messages, with_history),
                logs: history(&state.logs, with_history),
            },
            cluster: state.cluster.clone(),
            live: self.inner.feed.subscribe(),
        }
    }

    /// In a cluster: the dashboards' new sessions and webhooks go through
    /// `control` (the database) instead of straight to the engine.
    pub fn act_through_cluster(&self, control: ClusterControl) {
        let _ = self.inner.cluster.set(control);
    }

    /// The service publishes to NATS (`[nats]` is configured).
    pub fn publishes_to_nats(&self) {
        let _ = self.inner.nats.set(());
    }

    /// Shows the whole cluster (`cluster::view`) on the dashboards: the
    /// latest reading now, and every new one as it comes.
    pub fn show_cluster(&self, mut view: watch::Receiver<ClusterSnapshot>) {
        let console = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let snapshot = view.borrow_and_update().clone();
                let Some(inner) = console.upgrade() else {
                    return;
                };
                Console { inner }.publish(|state| {
                    state.cluster = Some(snapshot.clone());
                    Some(ServiceFrame::Cluster { view: snapshot })
                });
                if view.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Who serves `session`, when another host does (or none does), as a
    /// sentence for an operator who asked this host to act on it.
    fn served_elsewhere(&self, session: &SessionId) -> Option<String> {
        let state = lock(&self.inner.state);
        let remote = state.cluster.as_ref()?.get(session)?;
        Some(match &remote.owner {
            Some(node) => format!(
                "{session} is served by {node}: use its dashboard or DELETE through the API"
            ),
            None => format!(
                "{session} has no host right now: a host takes it within seconds; try again then"
            ),
        })
    }

    /// Carries out an operator's request on a task of its own, so a slow
    /// one (a logout) never holds up the next; a refusal, a sentence for the
    /// operator, goes to `notices` (the dashboard that asked).
    pub fn execute_detached(&self, request: Request, notices: mpsc::Sender<String>) {
        let console = self.clone();
        tokio::spawn(async move {
            let answer = match console.try_execute(request).await {
                Ok(note) => note,
                Err(text) => {
                    tracing::warn!("dashboard request refused: {text}");
                    Some(text)
                }
            };
            if let Some(text) = answer {
                let _ = notices.send(text).await;
            }
        });
    }

    /// Carries out `request`; `Ok(Some(note))` when done with something
    /// the operator should know (it waits on another host).
    async fn try_execute(&self, request: Request) -> Result<Option<String>, String> {
        let engine = &self.inner.engine;
        let command = |session: SessionId, command| async move {
            match engine.command(&session, command).await {
                Ok(()) => Ok(None),
                // Another host's (a dashboard that does not know yet).
                Err(crate::engine::EngineError::NotFound) => Err(self
                    .served_elsewhere(&session)
                    .unwrap_or_else(|| format!("{session}: Session not found"))),
                Err(e) => Err(format!("{session}: {e}")),
            }
        };
        match request {
            Request::Reconnect { session } => command(session, Command::ReconnectNow).await,
            Request::Logout { session } => command(session, Command::Logout).await,
            Request::PairWithPhone { session, phone } => {
                if !crate::engine::phone::is_phone_number(&phone) {
                    return Err(format!(
                        "{session}: the phone number must be 7 to 15 digits with country code"
                    ));
                }
                command(session, Command::PairWithPhone(phone)).await
            }
            // In a cluster, through the database: a session started here
            // without its lease could run on two hosts.
            Request::AddSession { session } => match self.inner.cluster.get() {
                Some(cluster) => cluster.declare(engine, &session, None, None).await,
                None => engine
                    .add_session(&session, None, None)
                    .map(|_| None)
                    .map_err(|e| format!("cannot add session {session}: {e}")),
            },
            Request::SetWebhook {
                session,
                url,
                token,
            } => {
                if !crate::session_files::is_webhook_url(&url) {
                    return Err(format!(
                        "{session}: the webhook must be an http:// or https:// URL"
                    ));
                }
                if let Some(cluster) = self.inner.cluster.get()
                    && self.in_cluster(&session)
                {
                    return cluster.declare(engine, &session, Some(url), token).await;
                }
                if engine.snapshot(&session).is_none() {
                    return Err(format!("{session}: Session not found"));
                }
                engine
                    .add_session(&session, Some(url), token)
                    .map(|_| None)
                    .map_err(|e| format!("{session}: {e}"))
            }
            Request::SetNatsSubject { session, subject } => {
                if self.inner.cluster.get().is_some() {
                    return Err(format!(
                        "{session}: {}",
                        crate::nats::subject::NO_OWN_PREFIX_IN_CLUSTER
                    ));
                }
                if !subject.is_empty() {
                    crate::nats::subject::check_prefix(&subject)
                        .map_err(|e| format!("{session}: the NATS subject prefix {e}"))?;
                }
                if engine.snapshot(&session).is_none() {
                    return Err(format!("{session}: Session not found"));
                }
                engine
                    .set_nats_subject(&session, Some(subject))
                    .map_err(|e| format!("{session}: {e}"))?;
                Ok(self.inner.nats.get().is_none().then(|| {
                    format!(
                        "{session}: NATS subject saved, but this service has no [nats] in its config: nothing goes to NATS until it does"
                    )
                }))
            }
        }
    }

    /// Whether the cluster knows `session` (served here, elsewhere or by
    /// no host yet).
    fn in_cluster(&self, session: &SessionId) -> bool {
        self.inner.engine.snapshot(session).is_some()
            || lock(&self.inner.state)
                .cluster
                .as_ref()
                .is_some_and(|view| view.get(session).is_some())
    }

    /// Applies a change to what dashboards see and tells the attached ones,
    /// in one step under the lock, so `attach` never splits a change.
    fn publish(&self, apply: impl FnOnce(&mut Shown) -> Option<ServiceFrame>) {
        let mut state = lock(&self.inner.state);
        if let Some(frame) = apply(&mut state) {
            // No dashboard attached is not an error.
            let _ = self.inner.feed.send(frame);
        }
    }

    /// Reads the session states afresh after `missed` engine events were
    /// lost, and tells the attached dashboards.
    fn resync_sessions(&self, missed: u64) {
        let all = self.inner.engine.snapshots();
        let instance = self.inner.instance;
        if missed > 0 {
            self.publish(|_| Some(ServiceFrame::Skipped { count: missed }));
        }
        self.publish(|state| {
            state.sessions = all.iter().map(|s| (s.id.clone(), s.clone())).collect();
            Some(ServiceFrame::Backfill(Backfill {
                instance,
                sessions: all,
                messages: Vec::new(),
                logs: Vec::new(),
            }))
        });
    }

    fn on_engine_event(&self, event: EngineEvent) {
        self.publish(|state| match event {
            EngineEvent::SessionChanged(snapshot) => {
                state.sessions.insert(snapshot.id.clone(), snapshot.clone());
                Some(ServiceFrame::Session { snapshot })
            }
            EngineEvent::SessionRemoved(session) => {
                state.sessions.remove(&session);
                Some(ServiceFrame::SessionRemoved { session })
            }
            EngineEvent::Message(message) => {
                // The backfill shows edits and deletes as the live stream
                // does: on the line they are about.
                let line = place_line(state.messages.iter_mut(), message.clone());
                if let Some(line) = line {
                    if state.messages.len() == state.message_capacity {
                        state.messages.pop_front();
                    }
                    state.messages.push_back(line);
                }
                Some(ServiceFrame::Message { message })
            }
            EngineEvent::Backlog { session, backlog } => {
                if let Some(snapshot) = state.sessions.get_mut(&session) {
                    snapshot.backlog = Some(backlog.clone());
                }
                Some(ServiceFrame::Backlog { session, backlog })
            }
        });
    }

    fn on_log_line(&self, text: String) {
        self.publish(|state| {
            let line = LogLine {
                seq: state.next_log,
                text,
            };
            state.next_log += 1;
            if state.logs.len() == LOG_TAIL {
                state.logs.pop_front();
            }
            state.logs.push_back(line.clone());
            Some(ServiceFrame::Log { line })
        });
    }
}

/// Feeds the engine's events and the log lines into the console until the
/// engine is gone.
async fn pump(
    console: std::sync::Weak<Inner>,
    mut events: broadcast::Receiver<EngineEvent>,
    mut logs: mpsc::Receiver<String>,
) {
    let mut logs_open = true;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(inner) = console.upgrade() else { return };
                let console = Console { inner };
                match event {
                    Ok(event) => console.on_engine_event(event),
                    // Some changes were missed: read the states afresh. The
                    // messages in between are lost to the screen only (the
                    // webhooks have them).
                    Err(RecvError::Lagged(missed)) => console.resync_sessions(missed),
                    Err(RecvError::Closed) => return,
                }
            }
            line = logs.recv(), if logs_open => match line {
                Some(line) => {
                    let Some(inner) = console.upgrade() else { return };
                    Console { inner }.on_log_line(line);
                }
                None => logs_open = false,
            },
        }
    }
}

/// A buffer's items oldest first, or none.
fn history<T: Clone>(items: &VecDeque<T>, wanted: bool) -> Vec<T> {
    if wanted {
        items.iter().cloned().collect()
    } else {
        Vec::new()
    }
}

/// Different for every start of the service.
fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// A poisoned lock only means a panic elsewhere mid-update of plain data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
