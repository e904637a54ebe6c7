//! The engine: one supervisor task per session behind one handle. Commands
//! go in; snapshots and an event broadcast come out, so the TUI, the HTTP API
//! and headless mode are thin views over the same state.

pub mod backend;
pub mod backoff;
pub mod close;
pub mod inbound;
pub mod liveness;
pub mod network_watch;
pub mod outbound;
pub mod phone;
pub mod progress;
pub mod requests;
pub mod state;
pub mod supervisor;
pub mod unreadable;
pub mod whatsapp;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::paths::{DataDir, SessionId};
use crate::session_files::SessionFiles;
use backend::{Answer, MediaMode, Outgoing, Query, Sent, WaBackend};
use backoff::BackoffPolicy;
use outbound::{DeadLetter, Outbound, OutboundError};
pub use requests::RequestError;
use requests::{Done, Op, Request};
pub use state::{
    BacklogInfo, EngineEvent, InboundMessage, LastClose, LineAction, PeerFailures, QrOffer,
    SenderNumber, SessionSnapshot, SessionState, TargetBacklog,
};
pub use supervisor::Command;
use supervisor::{Pacing, Publisher, Supervisor};

/// Now on tokio's clock (paused in tests), as the std `Instant` that
/// snapshots carry, so views need no tokio to read them.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// How long `shutdown` waits for sessions to disconnect cleanly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a DELETE waits for the logout: the supervisor's own bound on it,
/// plus the time a run gets to notice its disconnect, plus a margin.
const DELETE_GRACE: Duration = Duration::from_secs(
    supervisor::LOGOUT_BOUND.as_secs() + supervisor::RUN_EXIT_GRACE.as_secs() + 5,
);

/// Waits for a session's task to end, aborting it after `SHUTDOWN_GRACE`;
/// returns only once it no longer runs.
async fn end_task(mut task: JoinHandle<()>) {
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
        .await
        .is_err()
    {
        tracing::warn!("a session did not stop within {SHUTDOWN_GRACE:?}; aborting it");
        task.abort();
        let _ = task.await;
    }
}

/// Takes an id off the deleting list however the DELETE ends.
struct Deleting<'a> {
    set: &'a Mutex<std::collections::BTreeSet<SessionId>>,
    id: &'a SessionId,
}

impl Drop for Deleting<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(self.id);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("Session not found")]
    NotFound,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("cannot save session settings: {0}")]
    Storage(String),
    #[error("session is being deleted; try again when the DELETE has finished")]
    BeingDeleted,
    #[error("{}", crate::paths::MIGRATION_UNCONFIRMED)]
    MigrationUnconfirmed,
}

struct SessionHandle {
    commands: mpsc::Sender<Command>,
    requests: mpsc::Sender<Request>,
    snapshot: watch::Receiver<SessionSnapshot>,
    /// The supervisor's own sender, for the few fields the engine sets.
    snapshot_tx: watch::Sender<SessionSnapshot>,
    task: JoinHandle<()>,
}

type Spawner = dyn Fn(SessionId, Arc<Semaphore>) -> SessionHandle + Send + Sync;

/// Handshakes at once unless configured (`whatsapp.max_concurrent_handshakes`).
pub const DEFAULT_MAX_HANDSHAKES: usize = 10;

/// Cheap to clone; every clone talks to the same sessions.
/// A session's settings as a cluster's database holds them
/// (`Engine::serve_with`): they replace what the host's data dir had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedSettings {
    pub webhook_url: Option<String>,
    pub webhook_token: Option<String>,
    pub logged_out: bool,
    pub reject_calls: bool,
    pub call_reply: Option<String>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    data: DataDir,
    sessions: Mutex<BTreeMap<SessionId, SessionHandle>>,
    /// Ids whose DELETE is under way: nothing may start them until their old
    /// task has ended and their files are gone.
    deleting: Mutex<std::collections::BTreeSet<SessionId>>,
    events: broadcast::Sender<EngineEvent>,
    outbound: Option<Arc<dyn Outbound>>,
    /// The cap on connections handshaking at once, shared by the sessions.
    handshakes: Mutex<Arc<Semaphore>>,
    spawn: Box<Spawner>,
}

impl Engine {
    /// Creates the engine; no session runs until `start_saved` or
    /// `add_session`.
    pub fn new<B: WaBackend>(backend: B, data: DataDir, policy: BackoffPolicy) -> Engine {
        Self::build(backend, data, policy, None)
    }

    /// Like `new`, with messages and status changes going out through
    /// `outbound` (the webhook hub, say).
    pub fn with_webhooks<B: WaBackend, O: Outbound>(
        backend: B,
        data: DataDir,
        policy: BackoffPolicy,
        outbound: Option<Arc<O>>,
    ) -> Engine {
        let outbound = outbound.map(|o| o as Arc<dyn Outbound>);
        Self::build(backend, data, policy, outbound)
    }

    /// Like `new`, with messages and status changes going out through
    /// `outbound` (several targets as one: `outbound::Fanout`).
    pub fn with_outbound<B: WaBackend>(
        backend: B,
        data: DataDir,
        policy: BackoffPolicy,
        outbound: Arc<dyn Outbound>,
    ) -> Engine {
        Self::build(backend, data, policy, Some(outbound))
    }

    fn build<B: WaBackend>(
        backend: B,
        data: DataDir,
        policy: BackoffPolicy,
        outbound: Option<Arc<dyn Outbound>>,
    ) -> Engine {
        let (events, _) = broadcast::channel(1024);
        let (reachable, _) = broadcast::channel(16);
        let backend = Arc::new(backend);
        let waiting_on_network = Arc::new(network_watch::WaitingOnNetwork::default());
        tokio::spawn(network_watch::watch(
            Arc::downgrade(&backend),
            waiting_on_network.clone(),
            reachable.clone(),
        ));
        let spawn = {
            let data = data.clone();
            let events = events.clone();
            let outbound = outbound.clone();
            move |id: SessionId, handshakes: Arc<Semaphore>| {
                let (command_tx, command_rx) = mpsc::channel(16);
                let (request_tx, request_rx) = mpsc::channel(64);
                let mut first = SessionSnapshot::new(id.clone());
                // What the outbox still holds for it from before a restart.
                first.backlog = outbound.as_ref().map(|o| o.backlog(&id));
                let (snapshot_tx, snapshot_rx) = watch::channel(first);
                let supervisor = Supervisor::new(
                    backend.clone(),
                    data.clone(),
                    SessionFiles::new(&data, &id),
                    Pacing {
                        policy,
                        handshakes,
                        waiting_on_network: waiting_on_network.clone(),
                    },
                    command_rx,
                    request_rx,
                    Publisher::new(
                        snapshot_tx.clone(),
                        events.clone(),
                        outbound.clone(),
                        reachable.clone(),
                    ),
                );
                SessionHandle {
                    commands: command_tx,
                    requests: request_tx,
                    snapshot: snapshot_rx,
                    snapshot_tx,
                    task: tokio::spawn(supervisor.run()),
                }
            }
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                data,
                sessions: Mutex::new(BTreeMap::new()),
                deleting: Mutex::new(Default::default()),
                events,
                outbound,
                handshakes: Mutex::new(Arc::new(Semaphore::new(DEFAULT_MAX_HANDSHAKES))),
                spawn: Box::new(spawn),
            }),
        };
        if let Some(outbound) = &engine.inner.outbound {
            tokio::spawn(forward_backlog_changes(
                outbound.clone(),
                Arc::downgrade(&engine.inner),
            ));
        }
        engine
    }

    /// At most `max` sessions handshake at once (at least one); applies to
    /// the sessions started from now on, so set it before starting any.
    pub fn limit_handshakes(&self, max: usize) {
        *lock(&self.inner.handshakes) = Arc::new(Semaphore::new(max.max(1)));
    }

    /// Starts every session saved in the data dir.
    pub fn start_saved(&self) -> std::io::Result<usize> {
        let ids = self.inner.data.saved_sessions()?;
        let count = ids.len();
        for id in ids {
            self.ensure_running(&id);
        }
        Ok(count)
    }

    /// Starts a session (pairing if it has no credentials), saving the given
    /// webhook settings with it. Returns false when it was already running;
    /// its single task keeps the socket (never a second one), and new webhook
    /// settings are saved for it.
    pub fn add_session(
        &self,
        id: &SessionId,
        webhook_url: Option<String>,
        webhook_token: Option<String>,
    ) -> Result<bool, EngineError> {
        self.may_change(id)?;
        let files = SessionFiles::new(&self.inner.data, id);
        if webhook_url.is_some() || webhook_token.is_some() {
            let settings = files
                .update_settings(|settings| {
                    if webhook_url.is_some() {
                        settings.webhook_url = webhook_url;
                    }
                    if webhook_token.is_some() {
                        settings.webhook_token = webhook_token;
                    }
                })
                .map_err(|e| EngineError::Storage(e.to_string()))?;
            if let Some(outbound) = &self.inner.outbound {
                outbound.configure(id, &settings);
            }
            self.show_webhook(id, settings.webhook_url.is_some());
        } else {
            crate::paths::create_private_dir(&files.dir)
                .map_err(|e| EngineError::Storage(e.to_string()))?;
        }
        Ok(self.ensure_running(id))
    }

    /// Sets the session's NATS subject prefix (`SessionSettings::
    /// nats_subject`; "" turns NATS off for it) and applies it at once.
    pub fn set_nats_subject(
        &self,
        id: &SessionId,
        prefix: Option<String>,
    ) -> Result<(), EngineError> {
        let settings = self.change_settings(id, |settings| settings.nats_subject = prefix)?;
        if let Some(outbound) = &self.inner.outbound {
            outbound.configure(id, &settings);
        }
        Ok(())
    }

    /// Sets what the session does with calls (`SessionSettings::
    /// reject_calls`, `call_reply`); asked afresh at each call.
    pub fn set_call_policy(
        &self,
        id: &SessionId,
        reject: bool,
        reply: Option<String>,
    ) -> Result<(), EngineError> {
        self.change_settings(id, |settings| {
            settings.reject_calls = reject;
            settings.call_reply = reply.filter(|r| !r.is_empty());
        })
        .map(drop)
    }

    /// Sets how the session's webhook carries media; asked afresh at each
    /// media message.
    pub fn set_media_mode(&self, id: &SessionId, mode: MediaMode) -> Result<(), EngineError> {
        self.change_settings(id, |settings| settings.media = mode)
            .map(drop)
    }

    /// Changes a session's saved settings, unless it may not be touched
    /// now (`may_change`).
    fn change_settings(
        &self,
        id: &SessionId,
        change: impl FnOnce(&mut crate::session_files::SessionSettings),
    ) -> Result<crate::session_files::SessionSettings, EngineError> {
        self.may_change(id)?;
        SessionFiles::new(&self.inner.data, id)
            .update_settings(change)
            .map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// Refuses to touch a session whose DELETE is under way (a new
    /// session of the id would be wiped with it) or whose folder an
    /// interrupted `migrate-store --to-dir` left unconfirmed.
    fn may_change(&self, id: &SessionId) -> Result<(), EngineError> {
        if lock(&self.inner.deleting).contains(id) {
            return Err(EngineError::BeingDeleted);
        }
        if self.inner.data.migration_unconfirmed(id) {
            return Err(EngineError::MigrationUnconfirmed);
        }
        Ok(())
    }

    /// Serves a session with settings kept elsewhere (a cluster's
    /// database): they replace the session's own, the task starts if it
    /// does not run, and a logged-out session the operator started again
    /// (`logged_out` now false) pairs again. Returns whether it started.
    pub fn serve_with(&self, id: &SessionId, served: &ServedSettings) -> Result<bool, EngineError> {
        if lock(&self.inner.deleting).contains(id) {
            return Err(EngineError::BeingDeleted);
        }
        let files = SessionFiles::new(&self.inner.data, id);
        let settings = files
            .update_settings(|settings| {
                settings.webhook_url = served.webhook_url.clone();
                settings.webhook_token = served.webhook_token.clone();
                settings.logged_out = served.logged_out;
                settings.reject_calls = served.reject_calls;
                settings.call_reply = served.call_reply.clone();
            })
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        if let Some(outbound) = &self.inner.outbound {
            outbound.configure(id, &settings);
        }
        self.show_webhook(id, settings.webhook_url.is_some());
        let started = self.ensure_running(id);
        let waiting_logged_out = self
            .watch(id)
            .is_some_and(|w| w.borrow().state == SessionState::LoggedOut);
        if !started && !served.logged_out && waiting_logged_out {
            let sender = lock(&self.inner.sessions)
                .get(id)
                .map(|h| h.commands.clone());
            if let Some(sender) = sender {
                // A full queue holds commands enough to wake it anyway.
                let _ = sender.try_send(Command::ReconnectNow);
            }
        }
        Ok(started)
    }

    /// A running session's `has_webhook` follows a webhook changed at run
    /// time (the next start reads it from the settings).
    fn show_webhook(&self, id: &SessionId, has_webhook: bool) {
        let sessions = lock(&self.inner.sessions);
        let Some(handle) = sessions.get(id) else {
            return;
        };
        handle
            .snapshot_tx
            .send_modify(|s| s.has_webhook = has_webhook);
        let _ = self.inner.events.send(EngineEvent::SessionChanged(
            handle.snapshot.borrow().clone(),
        ));
    }

    fn ensure_running(&self, id: &SessionId) -> bool {
        let mut sessions = lock(&self.inner.sessions);
        if sessions.get(id).is_some_and(|h| !h.task.is_finished()) {
            return false;
        }
        let handshakes = lock(&self.inner.handshakes).clone();
        sessions.insert(id.clone(), (self.inner.spawn)(id.clone(), handshakes));
        true
    }

    /// Sends an operator command to the task that owns the session.
    pub async fn command(&self, id: &SessionId, command: Command) -> Result<(), EngineError> {
        let sender = lock(&self.inner.sessions)
            .get(id)
            .map(|h| h.commands.clone())
            .ok_or(EngineError::NotFound)?;
        sender
            .send(command)
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// The old bridge's DELETE: logs out (unlinking the device when
    /// connected), deletes the credentials, and forgets the session, so it
    /// does not come back at the next start.
    ///
    /// The session's task is ended for sure (awaited, aborted if it will not
    /// stop) before its files go, and the id cannot be started meanwhile: a
    /// task left running could finish its logout later and wipe a new session
    /// of the same id, or share its store (two clients on one device).
    pub async fn delete_session(&self, id: &SessionId) -> Result<(), EngineError> {
        let mut watch = self.watch(id).ok_or(EngineError::NotFound)?;
        if !lock(&self.inner.deleting).insert(id.clone()) {
            return Err(EngineError::BeingDeleted);
        }
        let _deleting = Deleting {
            set: &self.inner.deleting,
            id,
        };
        self.command(id, Command::Logout).await?;
        // The supervisor bounds the logout itself; this bound only covers a
        // task that no longer answers at all.
        let logged_out = watch.wait_for(|s| s.state == SessionState::LoggedOut);
        if tokio::time::timeout(DELETE_GRACE, logged_out)
            .await
            .is_err()
        {
            tracing::warn!("session {id} did not confirm the logout in time; ending it");
        }
        let handle = lock(&self.inner.sessions).remove(id);
        if let Some(handle) = handle {
            let _ = handle.commands.try_send(Command::Stop);
            end_task(handle.task).await;
        }
        if let Some(outbound) = &self.inner.outbound {
            match outbound.forget(id).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    "session {id} deleted with {n} undelivered webhook deliveries; they are dropped"
                ),
                Err(e) => tracing::error!("cannot drop the webhook backlog of {id}: {e}"),
            }
        }
        // The session is gone from the engine whatever happens to its files.
        let _ = self
            .inner
            .events
            .send(EngineEvent::SessionRemoved(id.clone()));
        let dir = self.inner.data.session_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::Storage(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Ends a session's task on this host and forgets it here, keeping its
    /// credentials and files: a cluster host whose lease on it ended. The
    /// task gets `grace` to disconnect, then is aborted. False when the
    /// session did not run here.
    pub async fn stop_session(&self, id: &SessionId, grace: Duration) -> bool {
        let Some(handle) = lock(&self.inner.sessions).remove(id) else {
            return false;
        };
        let _ = handle.commands.try_send(Command::Stop);
        let mut task = handle.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!("session {id} did not stop within {grace:?}; aborting it");
            task.abort();
            let _ = task.await;
        }
        let _ = self
            .inner
            .events
            .send(EngineEvent::SessionRemoved(id.clone()));
        true
    }

    /// Sends a message through the session's live connection.
    pub async fn send(&self, id: &SessionId, message: Outgoing) -> Result<Sent, RequestError> {
        match self.request(id, Op::Send(message)).await? {
            Done::Sent(sent) => Ok(sent),
            Done::Answer(_) => Err(RequestError::Failed("unexpected answer".into())),
        }
    }

    /// Asks the session's live connection a lookup.
    pub async fn query(&self, id: &SessionId, query: Query) -> Result<Answer, RequestError> {
        match self.request(id, Op::Query(query)).await? {
            Done::Answer(answer) => Ok(answer),
            Done::Sent(_) => Err(RequestError::Failed("unexpected answer".into())),
        }
    }

    async fn request(&self, id: &SessionId, op: Op) -> Result<Done, RequestError> {
        let queue = lock(&self.inner.sessions)
            .get(id)
            .map(|h| h.requests.clone())
            .ok_or(RequestError::NotFound)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .send(Request { op, reply })
            .await
            .map_err(|_| RequestError::NotConnected)?;
        answer.await.unwrap_or(Err(RequestError::NotConnected))
    }

    pub fn snapshot(&self, id: &SessionId) -> Option<SessionSnapshot> {
        lock(&self.inner.sessions)
            .get(id)
            .map(|h| h.snapshot.borrow().clone())
    }

    /// Whether messages go out anywhere (a webhook hub is attached).
    pub fn forwards(&self) -> bool {
        self.inner.outbound.is_some()
    }

    /// What has not got through to the session's target yet; None when
    /// nothing is forwarded.
    pub fn backlog(&self, id: &SessionId) -> Option<BacklogInfo> {
        self.inner.outbound.as_ref().map(|o| o.backlog(id))
    }

    /// The session's dead letters; None when nothing is forwarded.
    pub async fn dead_letters(
        &self,
        id: &SessionId,
    ) -> Option<Result<Vec<DeadLetter>, OutboundError>> {
        Some(self.inner.outbound.as_ref()?.dead_letters(id).await)
    }

    /// Puts a dead letter back in its queue; None when nothing is forwarded.
    pub async fn replay(
        &self,
        id: &SessionId,
        delivery_id: &str,
    ) -> Option<Result<bool, OutboundError>> {
        Some(self.inner.outbound.as_ref()?.replay(id, delivery_id).await)
    }

    /// Every session, ordered by id.
    pub fn snapshots(&self) -> Vec<SessionSnapshot> {
        lock(&self.inner.sessions)
            .values()
            .map(|h| h.snapshot.borrow().clone())
            .collect()
    }

    /// A change feed for one session (resolves on every change).
    pub fn watch(&self, id: &SessionId) -> Option<watch::Receiver<SessionSnapshot>> {
        lock(&self.inner.sessions)
            .get(id)
            .map(|h| h.snapshot.clone())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Disconnects every session (never logs out) and waits for the tasks.
    pub async fn shutdown(&self) {
        let handles: Vec<SessionHandle> = std::mem::take(&mut *lock(&self.inner.sessions))
            .into_values()
            .collect();
        for handle in &handles {
            let _ = handle.commands.try_send(Command::Stop);
        }
        for handle in handles {
            end_task(handle.task).await;
        }
        if let Some(outbound) = &self.inner.outbound
            && let Err(e) = outbound.flush().await
        {
            tracing::error!("the last webhook events may not be saved: {e}");
        }
    }
}

/// How often views hear of backlog changes at most: a flood changes a
/// backlog thousands of times a second, and a view needs a few.
const BACKLOG_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// Keeps each session's snapshot's backlog current from the hub's "backlog
/// changed" signals, and tells the views, so `/health`, `/sessions`,
/// `/metrics` and the dashboard show it without polling. Changes are
/// coalesced: one refresh per session per `BACKLOG_REFRESH` at most.
async fn forward_backlog_changes(outbound: Arc<dyn Outbound>, engine: std::sync::Weak<Inner>) {
    loop {
        let changed = outbound.backlog_changes().await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        for id in changed {
            let backlog = outbound.backlog(&id);
            if let Some(handle) = lock(&inner.sessions).get(&id) {
                handle
                    .snapshot_tx
                    .send_modify(|s| s.backlog = Some(backlog.clone()));
            }
            let _ = inner.events.send(EngineEvent::Backlog {
                session: id,
                backlog,
            });
        }
        drop(inner);
        tokio::time::sleep(BACKLOG_REFRESH).await;
    }
}

/// A poisoned lock only means another thread panicked mid-update of a map
/// that stays consistent (single inserts/removes), so keep going.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
