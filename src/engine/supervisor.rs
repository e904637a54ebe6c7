//! One task per session: the only owner of its client and socket. It runs
//! one connection at a time, turns what happened into a decision
//! (`close::classify`), waits on the backoff schedule, and obeys the
//! operator's commands. Everything else only observes its snapshots.

use std::sync::Arc;

use std::time::Instant;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use super::backend::{OpenError, OpenOptions, WaBackend, WaClient, WaEvent};
use super::backoff::BackoffPolicy;
use super::close::{self, CloseSignal, Decision, HaltReason, RunOutcome};
use super::inbound::MessageForwarder;
use super::network_watch::{NetworkWait, WaitingOnNetwork};
use super::now;
use super::outbound::Outbound;
use super::progress::MessageProgress;
use super::requests::{Request, run_or_refuse};
use super::state::{EngineEvent, LastClose, QrOffer, SessionSnapshot, SessionState};
use super::unreadable::UnreadableLedger;
use crate::paths::DataDir;
use crate::session_files::{SessionFiles, SessionSettings};

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await
}

/// How long a connection may take to wind down after a disconnect.
pub(crate) const RUN_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a connection attempt may sit in its handshake before a
/// sibling's success says to start it over: a healthy handshake takes a
/// fraction of this.
const STALLED_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(3);

/// What the operator (TUI, API) can ask of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Skip the backoff wait, or leave Halted / Logged Out with a new
    /// connection (a new pairing when there are no credentials).
    ReconnectNow,
    /// Reconnect, pairing by a code typed on the phone with this number.
    PairWithPhone(String),
    /// Unlink the device (if connected) and delete the credentials.
    Logout,
    /// Disconnect, keeping the credentials, and end the task.
    Stop,
}

/// How long after a "reachable again" a session retries: its own share of
/// half a second, the same every time (sessions spread out, tests stay
/// exact). The handshake cap keeps the rest of the queue in order.
fn spread(id: &str) -> std::time::Duration {
    std::time::Duration::from_secs_f64(0.5 * super::backoff::stable_fraction(id, 0))
}

/// How fast a session reconnects.
pub(crate) struct Pacing {
    pub(crate) policy: BackoffPolicy,
    /// One permit per connection between its start and its handshake's end
    /// (connected, or showing a pairing code to a person): the engine's cap
    /// on handshakes at once, shared by every session.
    pub(crate) handshakes: Arc<Semaphore>,
    /// Sessions waiting out a network failure, for the network watch.
    pub(crate) waiting_on_network: Arc<WaitingOnNetwork>,
}

/// Where the supervisor goes next.
enum Next {
    Connect,
    /// Back off until this instant (already published as the next retry).
    WaitToRetry(Instant),
    WaitForOperator,
    Exit,
}

/// Publishes snapshot changes to the watch channel, the broadcast and the
/// outbound side (which picks what its target hears of them).
pub(crate) struct Publisher {
    snapshot: watch::Sender<SessionSnapshot>,
    events: broadcast::Sender<EngineEvent>,
    outbound: Option<Arc<dyn Outbound>>,
    /// "WhatsApp is reachable": said by a session that connected after
    /// failing, heard by the sessions waiting out a network failure.
    reachable: broadcast::Sender<()>,
    /// A close recorded but not yet published: it goes out with the state
    /// it leads to, so no view ever sees a close next to the old state.
    pending_close: Option<LastClose>,
    /// How far each recent sent message got, so its status never regresses.
    progress: MessageProgress,
}

impl Publisher {
    pub(crate) fn new(
        snapshot: watch::Sender<SessionSnapshot>,
        events: broadcast::Sender<EngineEvent>,
        outbound: Option<Arc<dyn Outbound>>,
        reachable: broadcast::Sender<()>,
    ) -> Self {
        Publisher {
            snapshot,
            events,
            outbound,
            reachable,
            pending_close: None,
            progress: MessageProgress::default(),
        }
    }

    /// Publishes `change` (with any pending close) as one new snapshot.
    fn update(&mut self, change: impl FnOnce(&mut SessionSnapshot)) {
        let pending_close = self.pending_close.take();
        self.snapshot.send_modify(|s| {
            if pending_close.is_some() {
                s.last_close = pending_close;
            }
            change(s);
        });
        let current = self.snapshot.borrow().clone();
        if let Some(outbound) = &self.outbound {
            outbound.session_changed(&current);
        }
        // No subscriber is fine: views come and go.
        let _ = self.events.send(EngineEvent::SessionChanged(current));
    }

    /// `message.status` for each of our sent messages the event takes
    /// further (never backwards).
    fn post_message_status(
        &mut self,
        message_ids: Vec<String>,
        status: &'static str,
        timestamp_ms: i64,
    ) {
        let Some(outbound) = &self.outbound else {
            return;
        };
        let session = &self.snapshot.borrow().id;
        for message_id in message_ids {
            if self.progress.advance(&message_id, status) {
                outbound.message_status(session, &message_id, status, timestamp_ms);
            }
        }
    }

    fn set_state(&mut self, state: SessionState) {
        self.update(|s| {
            s.state = state;
            s.next_retry_at = None;
        });
    }
}

pub(crate) struct Supervisor<B: WaBackend> {
    pub(crate) backend: Arc<B>,
    pub(crate) data: DataDir,
    pub(crate) files: SessionFiles,
    pacing: Pacing,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) publisher: Publisher,
    /// Set while the last failure was the network's (lost, closed, no
    /// answer), not a server's refusal: a sibling's success or the network
    /// watch says when it is over.
    network_wait: Option<NetworkWait>,
    /// The live client and its event stream, kept across backoff retries.
    client: Option<(B::Client, mpsc::UnboundedReceiver<WaEvent>)>,
    attempt: u32,
    previous_was_restart: bool,
    pair_phone: Option<String>,
    qr_index: u8,
    /// Messages that could not be read: which wait for a resend, and the
    /// failures per peer.
    unreadable: Arc<UnreadableLedger>,
}

impl<B: WaBackend> Supervisor<B> {
    pub(crate) fn new(
        backend: Arc<B>,
        data: DataDir,
        files: SessionFiles,
        pacing: Pacing,
        commands: mpsc::Receiver<Command>,
        requests: mpsc::Receiver<Request>,
        publisher: Publisher,
    ) -> Self {
        Supervisor {
            backend,
            data,
            unreadable: Arc::new(UnreadableLedger::open(&files)),
            files,
            pacing,
            commands,
            requests,
            publisher,
            network_wait: None,
            client: None,
            attempt: 0,
            previous_was_restart: false,
            pair_phone: None,
            qr_index: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut next = match self.files.load_settings() {
            Ok(settings) => {
                if let Some(outbound) = &self.publisher.outbound {
                    outbound.configure(&self.files.id, &settings);
                }
                let unreadable = self.unreadable.failures();
                self.publisher.update(|s| {
                    s.has_webhook = settings.webhook_url.is_some();
                    s.unreadable = unreadable;
                });
                if settings.logged_out {
                    self.publisher.set_state(SessionState::LoggedOut);
                    Next::WaitForOperator
                } else {
                    Next::Connect
                }
            }
            // Connecting without knowing the webhook would ack every message
            // to WhatsApp and forward none.
            Err(e) => self.halt(HaltReason::SettingsUnreadable {
                detail: e.to_string(),
            }),
        };
        loop {
            next = match next {
                Next::Connect => self.connect_once().await,
                Next::WaitToRetry(retry_at) => self.wait_to_retry(retry_at).await,
                Next::WaitForOperator => self.wait_for_operator().await,
                Next::Exit => break,
            };
        }
        if let Some((client, _)) = self.client.take() {
            client.disconnect().await;
        }
        self.publisher.set_state(SessionState::Stopped);
    }

    fn id(&self) -> &str {
        self.files.id.as_str()
    }

    /// Builds a client over the store, or says where to go instead.
    async fn open_client(&mut self) -> Result<(), Next> {
        if self.client.is_some() {
            return Ok(());
        }
        if let Err(e) = self.files.prepare() {
            tracing::error!("cannot prepare the folder of session {}: {e}", self.id());
            return Err(self.back_off(
                close::STATUS_CONNECTION_LOST,
                &format!("session folder unusable: {e}"),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let options = OpenOptions {
            pair_phone: self.pair_phone.clone(),
            inbound: Some(Arc::new(MessageForwarder {
                session: self.files.id.clone(),
                files: self.files.clone(),
                unreadable: self.unreadable.clone(),
                snapshot: self.publisher.snapshot.clone(),
                outbound: self.publisher.outbound.clone(),
                events: self.publisher.events.clone(),
            })),
        };
        match self.backend.open(&self.files, options, tx).await {
            Ok(client) => {
                self.client = Some((client, rx));
                self.qr_index = 0;
                Ok(())
            }
            Err(OpenError::StoreUnreadable(reason)) => Err(self.move_store_aside(&reason)),
            Err(OpenError::Other(reason)) => {
                tracing::error!("cannot start session {}: {reason}", self.id());
                Err(self.back_off(close::STATUS_CONNECTION_LOST, &reason))
            }
        }
    }

    /// A store that fails to open is moved aside with its folder (never
    /// deleted); the settings are written back so the webhook survives.
    fn move_store_aside(&mut self, reason: &str) -> Next {
        let settings = self.files.load_settings();
        let moved_to = match self.data.move_aside(&self.files.id) {
            Ok(path) => path.display().to_string(),
            Err(e) => {
                tracing::error!(
                    "session {} store unreadable ({reason}) and could not be moved aside: {e}",
                    self.id()
                );
                format!("(not moved: {e})")
            }
        };
        match settings.map(|settings| self.files.save_settings(&settings)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                tracing::error!("cannot restore settings of session {}: {e}", self.id());
            }
        }
        tracing::error!(
            "Session store of {} could not be opened ({reason}); moved to {moved_to}",
            self.id()
        );
        self.halt(HaltReason::StoreUnreadable { moved_to })
    }

    async fn connect_once(&mut self) -> Next {
        self.publisher.set_state(SessionState::Connecting);
        if let Err(next) = self.open_client().await {
            return next;
        }
        let Some((client, mut events)) = self.client.take() else {
            unreachable!("open_client succeeded");
        };
        // Wait for a handshake slot, still obeying the operator: after an
        // outage hundreds of sessions come due together, and WhatsApp should
        // not see them all at once from one address.
        let mut handshake = tokio::select! {
            permit = self.pacing.handshakes.clone().acquire_owned() => permit.ok(),
            command = self.commands.recv() => {
                self.client = Some((client, events));
                return self.obey_while_idle(command.unwrap_or(Command::Stop)).await;
            }
        };
        let mut outcome = RunOutcome {
            previous_was_restart: self.previous_was_restart,
            ..RunOutcome::default()
        };
        let registered_before = client.is_registered();
        // The connection runs on its own task so that operator commands which
        // talk to the server (logout) can be awaited while it keeps reading.
        let mut run = tokio::spawn({
            let client = client.clone();
            async move { client.run().await }
        });
        let mut operator = None;
        // Set once the operator interrupted: a connection stuck mid-handshake
        // may not notice the disconnect, so it gets a grace period, no more.
        let mut give_up_at = None;
        let started = now();
        let mut reachable = self.publisher.reachable.subscribe();
        let mut stalled = false;
        loop {
            tokio::select! {
                _ = &mut run => break,
                // The server is reachable again. An attempt of ours still in
                // its handshake after a while began while the path was dead:
                // its lost SYN or hello would be resent only seconds from now
                // (TCP waits 1, 2, 4, 8 s between), and a pending connect
                // does not heed a disconnect, so end it now and start over.
                Ok(()) = reachable.recv(), if handshake.is_some() && give_up_at.is_none() => {
                    if now() - started >= STALLED_HANDSHAKE {
                        tracing::info!(
                            "WhatsApp is reachable again; starting {}'s stalled connection attempt over",
                            self.id()
                        );
                        client.disconnect().await;
                        run.abort();
                        stalled = true;
                        break;
                    }
                }
                _ = sleep_until(give_up_at.unwrap_or_else(Instant::now)), if give_up_at.is_some() => {
                    tracing::debug!("connection of {} ignored the disconnect; aborting it", self.id());
                    run.abort();
                    break;
                }
                Some(event) = events.recv() => {
                    self.on_event(event, &mut outcome);
                    if outcome.connected || self.waiting_for_a_person() {
                        handshake.take();
                    }
                }
                Some(request) = self.requests.recv() => {
                    let live = outcome.connected && outcome.close.is_none() && operator.is_none();
                    run_or_refuse(live.then(|| client.clone()), request);
                }
                command = self.commands.recv(), if operator.is_none() => {
                    let command = command.unwrap_or(Command::Stop);
                    match &command {
                        Command::Logout => logout_bounded(&client, self.id()).await,
                        _ => client.disconnect().await,
                    }
                    operator = Some(command);
                    give_up_at = Some(now() + RUN_EXIT_GRACE);
                }
            }
        }
        // The handler runs inline, so every event of this run is queued now.
        while let Ok(event) = events.try_recv() {
            self.on_event(event, &mut outcome);
        }
        // Pairing completes on a task of the library's own, which stores the
        // device, answers the server and only then reports PairSuccess: the
        // server's 515 can end the run in between. The stored device says
        // what the missing event would have.
        if !registered_before && client.is_registered() {
            outcome.paired = true;
        }
        match operator {
            // A disconnected client is finished; the next connection builds a
            // new one over the same store.
            Some(command) => self.obey_after_disconnect(command).await,
            None if stalled => Next::Connect,
            None => {
                // The adapter disconnects a client whose link went silent:
                // finished like one the operator disconnected.
                if !matches!(outcome.close, Some(CloseSignal::NoAnswer { .. })) {
                    self.client = Some((client, events));
                }
                self.decide(outcome).await
            }
        }
    }

    fn on_event(&mut self, event: WaEvent, outcome: &mut RunOutcome) {
        let now = now();
        match event {
            WaEvent::QrCode { payload, valid_for } => {
                self.qr_index = self.qr_index.saturating_add(1);
                // Pairing by phone code, the library keeps rotating QR codes
                // beside it; the operator is typing the code (or answering
                // the passkey prompt), so that stays on screen.
                let code_on_screen = match &self.publisher.snapshot.borrow().state {
                    SessionState::PairingCode { expires_at, .. } => *expires_at > now,
                    SessionState::PasskeyRequired => true,
                    _ => false,
                };
                if code_on_screen {
                    return;
                }
                tracing::info!("QR code {} of 6 ready for {}", self.qr_index, self.id());
                self.publisher
                    .set_state(SessionState::QrScanRequired(QrOffer {
                        payload,
                        expires_at: now + valid_for,
                        index: self.qr_index,
                    }));
            }
            WaEvent::PairCode { code, valid_for } => {
                tracing::info!("Pairing code ready for {}", self.id());
                self.publisher.set_state(SessionState::PairingCode {
                    code,
                    expires_at: now + valid_for,
                });
            }
            WaEvent::PasskeyRequired => {
                tracing::warn!("Pairing of {} needs a passkey on the phone", self.id());
                self.publisher.set_state(SessionState::PasskeyRequired);
            }
            WaEvent::PairSuccess { phone, lid } => {
                tracing::info!("Paired {} with {}", self.id(), phone);
                outcome.paired = true;
                self.publisher.update(|s| {
                    s.phone = Some(phone);
                    s.lid = lid;
                });
            }
            WaEvent::Answered => self.publisher.update(|s| s.last_answer_at = Some(now)),
            WaEvent::OfflineSyncAnnounced { items } => {
                tracing::info!(
                    "Offline sync of {}: {items} item(s) to catch up on",
                    self.id()
                );
                outcome.offline_sync_pending = Some(items);
            }
            WaEvent::OfflineSyncDone => {
                outcome.offline_sync_pending = None;
                if self.publisher.snapshot.borrow().interrupted_sync.is_some() {
                    tracing::info!("Offline sync of {} finished", self.id());
                    self.publisher.update(|s| s.interrupted_sync = None);
                }
            }
            WaEvent::Connected { phone, lid } => {
                tracing::info!("WhatsApp Connected: {}", self.id());
                if self.attempt > 0 {
                    // No subscriber (nobody waiting) is fine.
                    let _ = self.publisher.reachable.send(());
                }
                outcome.connected = true;
                self.attempt = 0;
                self.network_wait = None;
                self.pair_phone = None;
                self.publisher.update(|s| {
                    s.state = SessionState::Connected;
                    s.attempt = 0;
                    s.next_retry_at = None;
                    s.last_answer_at = Some(now);
                    if phone.is_some() {
                        s.phone = phone;
                    }
                    if lid.is_some() {
                        s.lid = lid;
                    }
                });
            }
            WaEvent::MessageStatus {
                message_ids,
                status,
                timestamp_ms,
            } => self
                .publisher
                .post_message_status(message_ids, status, timestamp_ms),
            WaEvent::StreamError { code } => {
                tracing::warn!("Stream error for {}: code {code}", self.id());
                outcome.stream_error = Some(code);
            }
            WaEvent::Closed(signal) => {
                // A socket close after a decisive reason (logout, ban, ...)
                // must not hide that reason.
                let keep_earlier = outcome
                    .close
                    .as_ref()
                    .is_some_and(|c| !matches!(c, CloseSignal::SocketClosed { .. }));
                if !keep_earlier {
                    outcome.close = Some(signal);
                }
            }
        }
    }

    /// A pairing code or passkey prompt is up: the handshake is over, the
    /// rest is a person's pace.
    fn waiting_for_a_person(&self) -> bool {
        matches!(
            self.publisher.snapshot.borrow().state,
            SessionState::QrScanRequired(_)
                | SessionState::PairingCode { .. }
                | SessionState::PasskeyRequired
        )
    }

    async fn decide(&mut self, outcome: RunOutcome) -> Next {
        if let Some(items) = outcome.offline_sync_pending {
            tracing::warn!(
                "Offline sync of {} interrupted: the connection closed before the {items} item(s) the server announced were all delivered; what was not acknowledged comes again at the next login",
                self.id()
            );
            self.publisher.update(|s| s.interrupted_sync = Some(items));
        }
        let verdict = close::classify(&outcome, now());
        self.previous_was_restart = verdict.decision == Decision::RestartNow;
        let reconnects = matches!(verdict.decision, Decision::Backoff | Decision::RestartNow);
        tracing::info!(
            "Connection closed for {}. Status: {}. {}. Reconnecting: {reconnects}",
            self.id(),
            verdict.status,
            verdict.description
        );
        self.publisher.pending_close = Some(LastClose {
            status: verdict.status,
            description: verdict.description.clone(),
        });
        match verdict.decision {
            Decision::RestartNow => Next::Connect,
            Decision::Backoff => self.back_off(verdict.status, &verdict.description),
            Decision::Halt(reason) => {
                self.drop_client().await;
                self.halt(reason)
            }
            Decision::Wipe => {
                self.drop_client().await;
                self.wipe_credentials().await;
                Next::WaitForOperator
            }
        }
    }

    fn back_off(&mut self, status: u16, description: &str) -> Next {
        let network = matches!(
            status,
            close::STATUS_CONNECTION_LOST | close::STATUS_CONNECTION_CLOSED
        );
        self.network_wait = network.then(|| NetworkWait::new(&self.pacing.waiting_on_network));
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.pacing.policy.reconnect_delay(self.attempt, self.id());
        tracing::info!(
            "Attempting to reconnect {} (attempt {}) in {:.1}s with existing credentials...",
            self.id(),
            self.attempt,
            delay.as_secs_f64()
        );
        let attempt = self.attempt;
        let retry_at = now() + delay;
        self.publisher
            .pending_close
            .get_or_insert_with(|| LastClose {
                status,
                description: description.to_string(),
            });
        self.publisher.update(|s| {
            s.state = SessionState::Disconnected;
            s.attempt = attempt;
            s.next_retry_at = Some(retry_at);
        });
        Next::WaitToRetry(retry_at)
    }

    fn halt(&mut self, reason: HaltReason) -> Next {
        self.network_wait = None;
        tracing::warn!("Session {} halted: {}", self.id(), reason.describe(now()));
        self.publisher.set_state(SessionState::Halted(reason));
        Next::WaitForOperator
    }

    async fn wait_to_retry(&mut self, mut retry_at: Instant) -> Next {
        let mut reachable = self.publisher.reachable.subscribe();
        loop {
            tokio::select! {
                _ = sleep_until(retry_at) => return Next::Connect,
                // The network is back (another session got through, or the
                // network watch's probe did), so this one need not sleep out
                // its backoff. Spread over half a second, so a recovering
                // server is not hit by all at once.
                Ok(()) = reachable.recv(), if self.network_wait.is_some() => {
                    let soon = now() + spread(self.id());
                    if soon < retry_at {
                        tracing::info!(
                            "WhatsApp is reachable again; retrying {} in {:.1}s",
                            self.id(),
                            (soon - now()).as_secs_f64()
                        );
                        retry_at = soon;
                        self.publisher.update(|s| s.next_retry_at = Some(soon));
                    }
                }
                command = self.commands.recv() => {
                    return self.obey_while_idle(command.unwrap_or(Command::Stop)).await;
                }
                Some(request) = self.requests.recv() => run_or_refuse::<B::Client>(None, request),
            }
        }
    }

    async fn wait_for_operator(&mut self) -> Next {
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    return self.obey_while_idle(command.unwrap_or(Command::Stop)).await;
                }
                Some(request) = self.requests.recv() => run_or_refuse::<B::Client>(None, request),
            }
        }
    }

    /// A command that arrives while no connection is running.
    async fn obey_while_idle(&mut self, command: Command) -> Next {
        match command {
            Command::ReconnectNow => {
                tracing::info!("Reconnecting {} now (operator request)", self.id());
                self.leave_logged_out();
                Next::Connect
            }
            Command::PairWithPhone(phone) => {
                self.drop_client().await;
                self.pair_phone = Some(phone);
                self.leave_logged_out();
                Next::Connect
            }
            Command::Logout => {
                tracing::warn!(
                    "Logging out {} while not connected: the device cannot be unlinked from the phone now; remove it under Linked Devices",
                    self.id()
                );
                self.drop_client().await;
                self.wipe_credentials().await;
                Next::WaitForOperator
            }
            Command::Stop => Next::Exit,
        }
    }

    /// A command that interrupted a running connection (already disconnected).
    async fn obey_after_disconnect(&mut self, command: Command) -> Next {
        match command {
            Command::ReconnectNow => {
                tracing::info!("Reconnecting {} now (operator request)", self.id());
                Next::Connect
            }
            Command::PairWithPhone(phone) => {
                self.pair_phone = Some(phone);
                Next::Connect
            }
            Command::Logout => {
                self.wipe_credentials().await;
                Next::WaitForOperator
            }
            Command::Stop => Next::Exit,
        }
    }

    async fn drop_client(&mut self) {
        if let Some((client, _)) = self.client.take() {
            client.disconnect().await;
        }
    }

    /// Deletes this session's store files (only those) and marks it logged
    /// out, so a restart does not start a pairing nobody asked for.
    /// The backend deletes what it keeps elsewhere (a cluster's database);
    /// a host that no longer holds the session is refused there.
    async fn wipe_credentials(&mut self) {
        self.network_wait = None;
        let stored = self.backend.delete_credentials(&self.files.id).await;
        match (self.files.delete_credentials(), stored) {
            (Ok(()), Ok(())) => {
                tracing::warn!("Session {} logged out; credentials deleted", self.id())
            }
            (Err(e), _) => tracing::error!("cannot delete credentials of {}: {e}", self.id()),
            (_, Err(e)) => {
                tracing::error!("cannot delete the stored credentials of {}: {e}", self.id())
            }
        }
        self.update_settings(|s| s.logged_out = true);
        self.attempt = 0;
        self.publisher.update(|s| {
            s.state = SessionState::LoggedOut;
            s.attempt = 0;
            s.next_retry_at = None;
            s.phone = None;
            s.lid = None;
        });
    }

    fn leave_logged_out(&mut self) {
        if self.files.load_settings().is_ok_and(|s| s.logged_out) {
            self.update_settings(|s| s.logged_out = false);
        }
    }

    fn update_settings(&self, change: impl FnOnce(&mut SessionSettings)) {
        if let Err(e) = self.files.update_settings(change) {
            tracing::error!("cannot save settings of session {}: {e}", self.id());
        }
    }
}

/// How long a logout may wait for WhatsApp to confirm the unlink. A server
/// that never answers must not keep a DELETE (or the operator) waiting, nor
/// leave a task that logs out minutes later.
pub(crate) const LOGOUT_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs out, or after `LOGOUT_BOUND` gives up on the server's answer and
/// disconnects; the credentials are deleted either way by the caller.
async fn logout_bounded<C: WaClient>(client: &C, id: &str) {
    if tokio::time::timeout(LOGOUT_BOUND, client.logout())
        .await
        .is_err()
    {
        tracing::warn!(
            "WhatsApp did not confirm the logout of {id} within {LOGOUT_BOUND:?}; disconnecting (the phone may still list the device until it notices)"
        );
        client.disconnect().await;
    }
}
