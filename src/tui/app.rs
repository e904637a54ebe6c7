//! The dashboard's state and its `update`: every key press and engine event
//! becomes a new state plus effects for the runner to carry out. No I/O
//! here, so every behaviour is a plain unit test.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::keymap::{self, Action};
use crate::cluster::view::{ClusterSession, ClusterSnapshot};
use crate::console::wire::{Backfill, LogLine, Request};
use crate::engine::BacklogInfo;
use crate::engine::state::place_line;
use crate::engine::{InboundMessage, SenderNumber, SessionSnapshot, SessionState};
use crate::paths::SessionId;
use crate::qr::QrMatrix;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Log lines kept for the log tail.
const LOG_TAIL: usize = crate::console::hub::LOG_TAIL;
/// The longest answer a prompt takes (a webhook URL with its query).
const PROMPT_MAX: usize = 500;
/// Lines a PgUp/PgDn moves.
const PAGE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Sessions,
    Messages,
    Logs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    AddSession,
    PairPhone(SessionId),
    Webhook(SessionId),
    NatsSubject(SessionId),
    Filter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    Help,
    ConfirmLogout(SessionId),
    ConfirmQuit,
    Prompt {
        kind: PromptKind,
        input: String,
        error: Option<String>,
    },
}

/// What the runner must do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ask the service (in this process or attached to).
    Request(Request),
    /// Leave the dashboard: stops an in-process service, detaches from an
    /// attached one.
    Quit,
}

/// Where the service this dashboard shows is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceLink {
    /// In this process: quitting stops it.
    InProcess,
    /// Another process, attached to over its socket: quitting detaches.
    Attached { service: String, pid: u32 },
    /// The attached service went away (why); the link is trying again.
    Gone(String),
    /// The link gave up (why); only quitting is left.
    Closed(String),
}

#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    /// The operator clicked this session's row.
    SelectSession(usize),
    Session(SessionSnapshot),
    Sessions(Vec<SessionSnapshot>),
    /// The session was deleted.
    SessionRemoved(SessionId),
    Message(Arc<InboundMessage>),
    /// A session's webhook backlog changed.
    Backlog(SessionId, BacklogInfo),
    /// The feed overran this view: that many were dropped.
    MessagesSkipped(u64),
    Log(LogLine),
    /// Everything the service shows, on (re-)attaching or after a lag.
    Backfill(Backfill),
    /// Attached to this service.
    Attached {
        service: String,
        pid: u32,
    },
    ServiceGone(String),
    LinkClosed(String),
    /// A request of ours did not work (why).
    Notice(String),
    /// In a cluster: the whole cluster as the service last read it.
    Cluster(ClusterSnapshot),
}

/// One line of the sessions list: a session this service runs, or (in a
/// cluster) one another host serves, or none does.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    Local(&'a SessionSnapshot),
    Remote(&'a ClusterSession),
}

impl Row<'_> {
    pub fn id(&self) -> &SessionId {
        match self {
            Row::Local(s) => &s.id,
            Row::Remote(s) => &s.id,
        }
    }
}

/// A bounded buffer of lines with a scroll position counted from the newest.
#[derive(Debug, Clone)]
pub struct Scrollback<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// 0 = following the newest; otherwise lines above the bottom.
    pub offset: usize,
}

impl<T> Scrollback<T> {
    pub fn new(capacity: usize) -> Self {
        Scrollback {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            offset: 0,
        }
    }

    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
        // Keep a scrolled view on the same lines while new ones arrive.
        if self.offset > 0 {
            self.offset = (self.offset + 1).min(self.items.len().saturating_sub(1));
        }
    }

    pub fn items(&self) -> &VecDeque<T> {
        &self.items
    }

    pub fn items_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut()
    }

    pub fn following(&self) -> bool {
        self.offset == 0
    }

    fn scroll_up(&mut self, lines: usize) {
        self.offset = (self.offset + lines).min(self.items.len().saturating_sub(1));
    }

    fn scroll_down(&mut self, lines: usize) {
        self.offset = self.offset.saturating_sub(lines);
    }
}

pub struct App {
    /// The sessions this service runs, by id.
    pub sessions: Vec<SessionSnapshot>,
    /// In a cluster: the cluster as last read (None alone).
    pub cluster: Option<ClusterSnapshot>,
    /// The cluster's sessions this service does not run, by id.
    pub remote: Vec<ClusterSession>,
    /// The selected row of the list (`rows`).
    pub selected: usize,
    pub focus: Focus,
    pub messages: Scrollback<Arc<InboundMessage>>,
    /// LIDs shown as "number hidden" in the stream, to fill in once learned.
    hidden_lids: HashSet<String>,
    pub skipped_messages: u64,
    pub logs: Scrollback<String>,
    pub show_logs: bool,
    pub overlay: Option<Overlay>,
    /// Lower-cased message filter; empty = everything.
    pub filter: String,
    /// False when NO_COLOR is set: badges keep their text labels.
    pub colors: bool,
    /// Offset of the operator's clock from UTC, for message times.
    pub utc_offset: chrono::FixedOffset,
    /// Encoded pairing codes by session (payload, matrix): encoded once per
    /// code here, so rendering stays cheap.
    pub qr_codes: HashMap<SessionId, (String, QrMatrix)>,
    /// Webhook backlog per session (kept apart: session snapshots from the
    /// supervisor do not carry it).
    pub backlogs: HashMap<SessionId, BacklogInfo>,
    pub link: ServiceLink,
    /// The last request that did not work, until the next key.
    pub notice: Option<String>,
    /// The service run the log lines came from, and the last line's number:
    /// a backfill from the same run repeats lines already shown.
    log_source: Option<(u64, u64)>,
}

impl App {
    pub fn new(message_capacity: usize, colors: bool, utc_offset: chrono::FixedOffset) -> App {
        App {
            sessions: Vec::new(),
            cluster: None,
            remote: Vec::new(),
            selected: 0,
            focus: Focus::Sessions,
            messages: Scrollback::new(message_capacity),
            hidden_lids: HashSet::new(),
            skipped_messages: 0,
            logs: Scrollback::new(LOG_TAIL),
            show_logs: false,
            overlay: None,
            filter: String::new(),
            colors,
            utc_offset,
            qr_codes: HashMap::new(),
            backlogs: HashMap::new(),
            link: ServiceLink::InProcess,
            notice: None,
            log_source: None,
        }
    }

    /// Whether quitting leaves the service running.
    pub fn detaches(&self) -> bool {
        self.link != ServiceLink::InProcess
    }

    /// The sessions list: the ones this service runs and, in a cluster,
    /// the others, by id.
    pub fn rows(&self) -> Vec<Row<'_>> {
        if self.remote.is_empty() {
            return self.sessions.iter().map(Row::Local).collect();
        }
        let mut rows: Vec<Row> = self
            .sessions
            .iter()
            .map(Row::Local)
            .chain(self.remote.iter().map(Row::Remote))
            .collect();
        rows.sort_by(|a, b| a.id().cmp(b.id()));
        rows
    }

    pub fn row_count(&self) -> usize {
        self.sessions.len() + self.remote.len()
    }

    pub fn selected_row(&self) -> Option<Row<'_>> {
        if self.remote.is_empty() {
            return self.sessions.get(self.selected).map(Row::Local);
        }
        self.rows().get(self.selected).copied()
    }

    /// The selected session, when this service runs it.
    pub fn selected_session(&self) -> Option<&SessionSnapshot> {
        match self.selected_row()? {
            Row::Local(session) => Some(session),
            Row::Remote(_) => None,
        }
    }

    /// The selected session, when another host serves it (or none does).
    pub fn selected_remote(&self) -> Option<&ClusterSession> {
        match self.selected_row()? {
            Row::Remote(session) => Some(session),
            Row::Local(_) => None,
        }
    }

    /// True while something on screen counts (a retry, QR, pairing code or
    /// ban countdown; the selected session's "last answer … ago"): only
    /// then does the runner tick once a second.
    pub fn needs_tick(&self) -> bool {
        let answer_age_shown = self
            .selected_session()
            .is_some_and(|s| s.state == SessionState::Connected && s.last_answer_at.is_some());
        let remote_countdown = self
            .remote
            .iter()
            .any(|s| s.owners_report().is_some_and(|r| r.next_retry_at.is_some()));
        answer_age_shown
            || remote_countdown
            || self.sessions.iter().any(|s| {
                s.next_retry_at.is_some()
                    || matches!(
                        s.state,
                        SessionState::QrScanRequired(_)
                            | SessionState::PairingCode { .. }
                            | SessionState::Halted(
                                crate::engine::close::HaltReason::TemporaryBan { .. }
                            )
                    )
            })
    }

    fn pairing_in_progress(&self) -> bool {
        self.sessions.iter().any(|s| {
            matches!(
                s.state,
                SessionState::QrScanRequired(_)
                    | SessionState::PairingCode { .. }
                    | SessionState::PasskeyRequired
            )
        })
    }

    /// Messages that pass the filter, oldest first.
    pub fn visible_messages(&self) -> impl Iterator<Item = &Arc<InboundMessage>> {
        self.messages
            .items()
            .iter()
            .filter(|m| self.filter.is_empty() || matches_filter(m, &self.filter))
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::SelectSession(index) => {
                if index < self.row_count() {
                    self.selected = index;
                    self.focus = Focus::Sessions;
                }
                vec![]
            }
            Msg::Session(snapshot) => {
                self.upsert(snapshot);
                vec![]
            }
            Msg::Sessions(all) => {
                self.keeping_selection(|app| {
                    for snapshot in &all {
                        app.cache_qr(snapshot);
                        if let Some(backlog) = &snapshot.backlog {
                            app.backlogs.insert(snapshot.id.clone(), backlog.clone());
                        }
                    }
                    app.sessions = all;
                    app.sessions.sort_by(|a, b| a.id.cmp(&b.id));
                });
                vec![]
            }
            Msg::Cluster(view) => {
                self.keeping_selection(|app| app.cluster = Some(view));
                vec![]
            }
            Msg::Message(message) => {
                match (&message.sender, &message.sender_lid) {
                    (SenderNumber::HiddenLid(lid), _) => {
                        self.hidden_lids.insert(lid.clone());
                    }
                    (SenderNumber::Phone(phone), Some(lid)) if self.hidden_lids.remove(lid) => {
                        self.reveal(lid, phone);
                    }
                    _ => {}
                }
                let line = place_line(self.messages.items_mut(), message);
                if let Some(line) = line {
                    self.messages.push(line);
                }
                vec![]
            }
            Msg::Backlog(id, backlog) => {
                self.backlogs.insert(id, backlog);
                vec![]
            }
            Msg::MessagesSkipped(n) => {
                self.skipped_messages += n;
                vec![]
            }
            Msg::Log(line) => {
                if let Some((_, last)) = &mut self.log_source {
                    *last = line.seq;
                }
                self.logs.push(line.text);
                vec![]
            }
            Msg::SessionRemoved(id) => {
                self.keeping_selection(|app| app.sessions.retain(|s| s.id != id));
                self.qr_codes.remove(&id);
                self.backlogs.remove(&id);
                vec![]
            }
            Msg::Backfill(backfill) => {
                self.backfill(backfill);
                vec![]
            }
            Msg::Attached { service, pid } => {
                self.link = ServiceLink::Attached { service, pid };
                vec![]
            }
            Msg::ServiceGone(why) => {
                self.link = ServiceLink::Gone(why);
                vec![]
            }
            Msg::LinkClosed(why) => {
                self.link = ServiceLink::Closed(why);
                vec![]
            }
            Msg::Notice(text) => {
                self.notice = Some(text);
                vec![]
            }
        }
    }

    /// Catches up with the service: its sessions replace ours; its messages
    /// and log lines are added unless already shown (a re-attach to the same
    /// run: those take only their marks), so the operator keeps their place,
    /// selection and filter.
    fn backfill(&mut self, backfill: Backfill) {
        self.update(Msg::Sessions(backfill.sessions));
        let shown: HashSet<(SessionId, String)> = self
            .messages
            .items()
            .iter()
            .map(|m| (m.session.clone(), m.id.clone()))
            .collect();
        for message in backfill.messages {
            if shown.contains(&(message.session.clone(), message.id.clone())) {
                self.catch_up_marks(&message);
            } else {
                self.update(Msg::Message(message));
            }
        }
        let seen = match self.log_source {
            Some((instance, last)) if instance == backfill.instance => last,
            _ => 0,
        };
        self.log_source = Some((backfill.instance, seen));
        for line in backfill.logs.into_iter().filter(|l| l.seq > seen) {
            self.update(Msg::Log(line));
        }
    }

    /// A line already shown takes what happened to it while this
    /// dashboard was away (an edit, a delete, a resend), keeping the rest
    /// (a number learned since, say).
    fn catch_up_marks(&mut self, message: &InboundMessage) {
        let shown = self.messages.items_mut().find(|m| {
            m.session == message.session && m.id == message.id && m.action == message.action
        });
        if let Some(shown) = shown
            && (shown.text != message.text
                || shown.edited != message.edited
                || shown.deleted != message.deleted)
        {
            *shown = Arc::new(InboundMessage {
                text: message.text.clone(),
                edited: message.edited,
                deleted: message.deleted,
                ..(**shown).clone()
            });
        }
    }

    /// A LID's number became known: earlier messages from it show it now.
    fn reveal(&mut self, lid: &str, phone: &str) {
        for message in self.messages.items_mut() {
            if message.sender == SenderNumber::HiddenLid(lid.to_string()) {
                *message = Arc::new(InboundMessage {
                    sender: SenderNumber::Phone(phone.to_string()),
                    ..(**message).clone()
                });
            }
        }
    }

    fn upsert(&mut self, snapshot: SessionSnapshot) {
        self.cache_qr(&snapshot);
        if let Some(backlog) = &snapshot.backlog {
            self.backlogs.insert(snapshot.id.clone(), backlog.clone());
        }
        match self.sessions.binary_search_by(|s| s.id.cmp(&snapshot.id)) {
            Ok(index) => self.sessions[index] = snapshot,
            // Keep the same session selected when one is inserted above.
            Err(index) => self.keeping_selection(|app| app.sessions.insert(index, snapshot)),
        }
    }

    /// Changes the list, keeping the selected session selected (or, when
    /// it left the list, the row at the same place).
    fn keeping_selection(&mut self, change: impl FnOnce(&mut App)) {
        let kept = self.selected_row().map(|row| row.id().clone());
        change(self);
        self.remote = match &self.cluster {
            Some(view) => view
                .sessions
                .iter()
                .filter(|s| {
                    self.sessions
                        .binary_search_by(|local| local.id.cmp(&s.id))
                        .is_err()
                })
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if let Some(id) = kept {
            self.select_id(&id);
        }
        self.clamp_selection();
    }

    fn cache_qr(&mut self, snapshot: &SessionSnapshot) {
        let SessionState::QrScanRequired(offer) = &snapshot.state else {
            self.qr_codes.remove(&snapshot.id);
            return;
        };
        let cached = self.qr_codes.get(&snapshot.id);
        if cached.is_some_and(|(payload, _)| payload == &offer.payload) {
            return;
        }
        match QrMatrix::encode(&offer.payload) {
            Ok(matrix) => {
                self.qr_codes
                    .insert(snapshot.id.clone(), (offer.payload.clone(), matrix));
            }
            Err(_) => {
                self.qr_codes.remove(&snapshot.id);
            }
        }
    }

    fn select_id(&mut self, id: &SessionId) {
        if let Some(index) = self.rows().iter().position(|row| row.id() == id) {
            self.selected = index;
        }
    }

    fn clamp_selection(&mut self) {
        self.selected = self.selected.min(self.row_count().saturating_sub(1));
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.notice = None;
        // Ctrl-C always quits, like in any terminal program.
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return vec![Effect::Quit];
        }
        match self.overlay.take() {
            None => self.on_action_key(key.code),
            Some(Overlay::Help) => vec![],
            Some(Overlay::ConfirmLogout(id)) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    vec![Effect::Request(Request::Logout { session: id })]
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => vec![],
                _ => {
                    self.overlay = Some(Overlay::ConfirmLogout(id));
                    vec![]
                }
            },
            Some(Overlay::ConfirmQuit) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![Effect::Quit],
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => vec![],
                _ => {
                    self.overlay = Some(Overlay::ConfirmQuit);
                    vec![]
                }
            },
            Some(Overlay::Prompt { kind, input, error }) => {
                self.on_prompt_key(kind, input, error, key.code)
            }
        }
    }

    fn on_action_key(&mut self, code: KeyCode) -> Vec<Effect> {
        let Some(action) = keymap::action_for(code) else {
            return vec![];
        };
        if let Some(remote) = self.selected_remote()
            && let Some(refusal) = remote_refusal(remote, action)
        {
            self.notice = Some(refusal);
            return vec![];
        }
        let selected = self.selected_row().map(|row| row.id().clone());
        match action {
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::Reconnect => {
                return selected
                    .map(|session| vec![Effect::Request(Request::Reconnect { session })])
                    .unwrap_or_default();
            }
            Action::Logout => self.overlay = selected.map(Overlay::ConfirmLogout),
            Action::AddSession => self.open_prompt(PromptKind::AddSession, String::new()),
            Action::PairByCode => {
                if let Some(id) = selected {
                    self.open_prompt(PromptKind::PairPhone(id), String::new());
                }
            }
            Action::SetWebhook => {
                if let Some(id) = selected {
                    self.open_prompt(PromptKind::Webhook(id), String::new());
                }
            }
            Action::SetNatsSubject => {
                if let Some(id) = selected {
                    self.open_prompt(PromptKind::NatsSubject(id), String::new());
                }
            }
            Action::Filter => self.open_prompt(PromptKind::Filter, self.filter.clone()),
            Action::FocusNext => {
                self.focus = match (self.focus, self.show_logs) {
                    (Focus::Sessions, _) => Focus::Messages,
                    (Focus::Messages, true) => Focus::Logs,
                    _ => Focus::Sessions,
                }
            }
            Action::PageUp => self.scroll(|b| b.scroll_up(PAGE), |b| b.scroll_up(PAGE)),
            Action::PageDown => self.scroll(|b| b.scroll_down(PAGE), |b| b.scroll_down(PAGE)),
            Action::Follow => self.scroll(|b| b.offset = 0, |b| b.offset = 0),
            Action::ToggleLogs => {
                self.show_logs = !self.show_logs;
                if !self.show_logs && self.focus == Focus::Logs {
                    self.focus = Focus::Sessions;
                }
            }
            Action::Help => self.overlay = Some(Overlay::Help),
            Action::Quit => {
                // Quitting an in-process service mid-pairing loses the
                // pairing; detaching loses nothing.
                if !self.detaches() && self.pairing_in_progress() {
                    self.overlay = Some(Overlay::ConfirmQuit);
                } else {
                    return vec![Effect::Quit];
                }
            }
        }
        vec![]
    }

    fn open_prompt(&mut self, kind: PromptKind, input: String) {
        self.overlay = Some(Overlay::Prompt {
            kind,
            input,
            error: None,
        });
    }

    fn on_prompt_key(
        &mut self,
        kind: PromptKind,
        mut input: String,
        error: Option<String>,
        code: KeyCode,
    ) -> Vec<Effect> {
        match code {
            KeyCode::Esc => return vec![],
            KeyCode::Enter => return self.submit_prompt(kind, input),
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Char(c) if input.chars().count() < PROMPT_MAX && !c.is_control() => {
                input.push(c)
            }
            _ => {
                self.overlay = Some(Overlay::Prompt { kind, input, error });
                return vec![];
            }
        }
        self.overlay = Some(Overlay::Prompt {
            kind,
            input,
            error: None,
        });
        vec![]
    }

    fn submit_prompt(&mut self, kind: PromptKind, input: String) -> Vec<Effect> {
        let reject = |app: &mut App, kind, input, message: String| {
            app.overlay = Some(Overlay::Prompt {
                kind,
                input,
                error: Some(message),
            });
            vec![]
        };
        match kind {
            PromptKind::Filter => {
                self.filter = input.trim().to_lowercase();
                vec![]
            }
            PromptKind::AddSession => match SessionId::parse(input.trim()) {
                Ok(id) if self.rows().iter().any(|row| *row.id() == id) => reject(
                    self,
                    PromptKind::AddSession,
                    input,
                    format!("session {id} already exists"),
                ),
                Ok(session) => {
                    self.select_id(&session);
                    vec![Effect::Request(Request::AddSession { session })]
                }
                Err(e) => reject(self, PromptKind::AddSession, input, e.to_string()),
            },
            PromptKind::Webhook(session) => {
                let url = input.trim().to_string();
                if crate::session_files::is_webhook_url(&url) {
                    vec![Effect::Request(Request::SetWebhook {
                        session,
                        url,
                        token: None,
                    })]
                } else {
                    reject(
                        self,
                        PromptKind::Webhook(session),
                        input,
                        "enter an http:// or https:// URL".to_string(),
                    )
                }
            }
            // Empty turns NATS off for the session.
            PromptKind::NatsSubject(session) => {
                let subject = input.trim().to_string();
                match crate::nats::subject::check_prefix(&subject) {
                    Err(e) if !subject.is_empty() => reject(
                        self,
                        PromptKind::NatsSubject(session),
                        input,
                        format!("the prefix {e}"),
                    ),
                    _ => vec![Effect::Request(Request::SetNatsSubject {
                        session,
                        subject,
                    })],
                }
            }
            PromptKind::PairPhone(session) => match phone_digits(&input) {
                Some(phone) => vec![Effect::Request(Request::PairWithPhone { session, phone })],
                None => reject(
                    self,
                    PromptKind::PairPhone(session),
                    input,
                    "enter the phone number with country code, 7 to 15 digits".to_string(),
                ),
            },
        }
    }

    fn move_selection(&mut self, delta: isize) {
        if self.row_count() == 0 {
            return;
        }
        let last = self.row_count() - 1;
        self.selected = self.selected.saturating_add_signed(delta).min(last);
        self.focus = Focus::Sessions;
    }

    /// Scrolls the logs when they have the focus, the messages otherwise.
    fn scroll(
        &mut self,
        messages: impl FnOnce(&mut Scrollback<Arc<InboundMessage>>),
        logs: impl FnOnce(&mut Scrollback<String>),
    ) {
        if self.focus == Focus::Logs && self.show_logs {
            logs(&mut self.logs);
        } else {
            messages(&mut self.messages);
        }
    }
}

/// What an operator is told instead of acting on a session this service
/// does not run: another host serves it (its dashboard or the API can
/// act), or none does yet. None for keys that act on no session, and for
/// its webhook, which goes through the cluster's database to its host.
/// Its own NATS subject cannot be set anywhere: the cluster keeps only its
/// webhook.
fn remote_refusal(session: &ClusterSession, action: Action) -> Option<String> {
    let id = &session.id;
    if action == Action::SetNatsSubject {
        return Some(format!(
            "{id}: {}",
            crate::nats::subject::NO_OWN_PREFIX_IN_CLUSTER
        ));
    }
    let Some(node) = &session.owner else {
        return matches!(
            action,
            Action::Reconnect | Action::Logout | Action::PairByCode
        )
        .then(|| {
            if session.logged_out {
                format!("{id} is logged out and no host serves it: POST /sessions/start through any host pairs it again")
            } else {
                format!("{id} has no host right now: a host takes it within seconds; try again then")
            }
        });
    };
    match action {
        Action::Reconnect | Action::Logout | Action::PairByCode => Some(format!(
            "{id} is served by {node}: use its dashboard or DELETE through the API"
        )),
        _ => None,
    }
}

/// "+91 90751 67132" → "919075167132"; None unless 7–15 digits remain.
fn phone_digits(input: &str) -> Option<String> {
    let digits: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '+' | '-' | '(' | ')'))
        .collect();
    crate::engine::phone::is_phone_number(&digits).then_some(digits)
}

fn matches_filter(message: &InboundMessage, filter: &str) -> bool {
    let sender = match &message.sender {
        SenderNumber::Phone(p) => p.as_str(),
        SenderNumber::HiddenLid(l) => l.as_str(),
    };
    [
        message.text.as_str(),
        sender,
        message.session.as_str(),
        message.push_name.as_deref().unwrap_or(""),
        message.group.as_deref().unwrap_or(""),
    ]
    .iter()
    .any(|field| field.to_lowercase().contains(filter))
}
