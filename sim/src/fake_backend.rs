//! A scripted stand-in for WhatsApp behind the engine's backend seam, so the
//! supervisor's schedule can be driven on tokio's paused clock. Each call to
//! `run` plays the next scripted connection; what the engine did is recorded
//! for the test to assert on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::Notify;

use wabridge::engine::backend::{
    Answer, EventSink, GroupInfo, GroupMember, InboundSink, IncomingMessage, NumberCheck,
    OpenError, OpenOptions, Outgoing, Query, Sent, WaBackend, WaClient, WaEvent,
};
use wabridge::engine::close::CloseSignal;
use wabridge::session_files::SessionFiles;

/// One scripted connection.
#[derive(Debug, Clone)]
pub enum Conn {
    /// Emit these events, then the connection ends.
    Ends(Vec<WaEvent>),
    /// Emit these events, then stay up until the engine disconnects.
    Stays(Vec<WaEvent>),
    /// Pairing as the library can race it: the device is stored and the
    /// connection ends (the server's 515) before `PairSuccess` is reported,
    /// which then comes at the start of the next connection.
    PairsLate { phone: String },
    /// The handshake takes this long (on the paused clock), then the
    /// connection is up and stays; a disconnect meanwhile ends it.
    HandshakeTakes(Duration),
}

impl Conn {
    /// A connect that fails before anything happens (network error).
    pub fn unreachable() -> Conn {
        Conn::Ends(vec![])
    }

    /// Connects, then the socket closes.
    pub fn connects_then_drops() -> Conn {
        Conn::Ends(vec![
            connected(),
            WaEvent::Closed(CloseSignal::SocketClosed {
                detail: "stream ended (EOF)".into(),
            }),
        ])
    }

    pub fn closes_with(signal: CloseSignal) -> Conn {
        Conn::Ends(vec![WaEvent::Closed(signal)])
    }
}

pub fn connected() -> WaEvent {
    WaEvent::Connected {
        phone: Some("15551234567".into()),
        lid: Some("100000000000001".into()),
    }
}

/// What the engine asked of the fake, with the (paused) time of each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Open(String),
    Run(String, Instant),
    Disconnect(String),
    Logout(String),
    Send(String, Outgoing),
    Query(String, Query),
}

#[derive(Default)]
struct Shared {
    /// Scripts per session id; a session with no script left stays up.
    scripts: Mutex<std::collections::HashMap<String, VecDeque<Conn>>>,
    calls: Mutex<Vec<Call>>,
    /// Session ids whose store "fails to open".
    unreadable: Mutex<Vec<String>>,
    /// The inbound sink the engine gave each session's latest client.
    sinks: Mutex<std::collections::HashMap<String, Arc<dyn InboundSink>>>,
    /// Session ids whose store holds a linked device.
    registered: Mutex<std::collections::HashSet<String>>,
    /// Events the library reports late, at the start of the next run.
    late: Mutex<std::collections::HashMap<String, Vec<WaEvent>>>,
    /// Sessions whose logout the server answers only after this long.
    slow_logout: Mutex<std::collections::HashMap<String, Duration>>,
    /// What the reachability probe finds (no server at first).
    server_reachable: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Default)]
pub struct FakeBackend {
    shared: Arc<Shared>,
}

impl FakeBackend {
    pub fn script(&self, id: &str, conns: impl IntoIterator<Item = Conn>) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .extend(conns);
    }

    /// The server answers `id`'s unlink only after `delay` (as a request
    /// that times out would), then the logout completes.
    pub fn answer_logout_after(&self, id: &str, delay: Duration) {
        self.shared
            .slow_logout
            .lock()
            .unwrap()
            .insert(id.to_string(), delay);
    }

    /// Whether the server answers the engine's reachability probe.
    pub fn set_server_reachable(&self, reachable: bool) {
        self.shared
            .server_reachable
            .store(reachable, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn store_unreadable(&self, id: &str) {
        self.shared.unreadable.lock().unwrap().push(id.to_string());
    }

    /// Plays WhatsApp delivering decrypted messages to a session: returns
    /// what the engine's durability point answered (Ok = ack).
    pub async fn deliver(&self, id: &str, batch: &[IncomingMessage]) -> Result<(), String> {
        let sink = self.shared.sinks.lock().unwrap().get(id).cloned();
        sink.expect("the session has a client").persist(batch).await
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Times at which session `id` started a connection.
    pub fn run_times(&self, id: &str) -> Vec<Instant> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Run(who, at) if who == id => Some(at),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, wanted: impl Fn(&Call) -> bool) -> usize {
        self.calls().iter().filter(|c| wanted(c)).count()
    }

    fn set_registered(&self, id: &str) {
        self.shared
            .registered
            .lock()
            .unwrap()
            .insert(id.to_string());
    }

    fn record(&self, call: Call) {
        self.shared.calls.lock().unwrap().push(call);
    }
}

#[derive(Clone)]
pub struct FakeClient {
    id: String,
    backend: FakeBackend,
    sink: EventSink,
    /// Wakes a connection that stays up when the engine disconnects.
    hang_up: Arc<Notify>,
}

impl WaBackend for FakeBackend {
    type Client = FakeClient;

    async fn server_reachable(&self, _within: Duration) -> bool {
        self.shared
            .server_reachable
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn open(
        &self,
        files: &SessionFiles,
        options: OpenOptions,
        events: EventSink,
    ) -> Result<FakeClient, OpenError> {
        let id = files.id.to_string();
        self.record(Call::Open(id.clone()));
        if let Some(sink) = options.inbound {
            self.shared.sinks.lock().unwrap().insert(id.clone(), sink);
        }
        if self.shared.unreadable.lock().unwrap().contains(&id) {
            return Err(OpenError::StoreUnreadable("file is not a database".into()));
        }
        Ok(FakeClient {
            id,
            backend: self.clone(),
            sink: events,
            hang_up: Arc::new(Notify::new()),
        })
    }
}

impl WaClient for FakeClient {
    async fn run(&self) {
        self.backend
            .record(Call::Run(self.id.clone(), wabridge::engine::now()));
        let next = self
            .backend
            .shared
            .scripts
            .lock()
            .unwrap()
            .get_mut(&self.id)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Conn::Stays(vec![connected()]));
        let late = self.backend.shared.late.lock().unwrap().remove(&self.id);
        for event in late.into_iter().flatten() {
            let _ = self.sink.send(event);
        }
        let (events, stays) = match next {
            Conn::HandshakeTakes(duration) => {
                tokio::select! {
                    _ = tokio::time::sleep(duration) => (vec![connected()], true),
                    // Disconnected mid-handshake: the attempt just ends.
                    _ = self.hang_up.notified() => (vec![], false),
                }
            }
            Conn::Ends(events) => (events, false),
            Conn::Stays(events) => (events, true),
            Conn::PairsLate { phone } => {
                self.backend.set_registered(&self.id);
                self.backend.shared.late.lock().unwrap().insert(
                    self.id.clone(),
                    vec![WaEvent::PairSuccess { phone, lid: None }],
                );
                (vec![], false)
            }
        };
        for event in events {
            if matches!(event, WaEvent::PairSuccess { .. }) {
                self.backend.set_registered(&self.id);
            }
            let _ = self.sink.send(event);
        }
        if stays {
            self.hang_up.notified().await;
        }
    }

    fn is_registered(&self) -> bool {
        self.backend
            .shared
            .registered
            .lock()
            .unwrap()
            .contains(&self.id)
    }

    async fn disconnect(&self) {
        self.backend.record(Call::Disconnect(self.id.clone()));
        self.hang_up.notify_one();
    }

    async fn send(&self, message: Outgoing) -> Result<Sent, String> {
        self.backend.record(Call::Send(self.id.clone(), message));
        let n = self.backend.count(|c| matches!(c, Call::Send(..)));
        Ok(Sent {
            id: format!("3EB0FAKE{n:04}"),
            timestamp: 1_764_000_000,
        })
    }

    /// Canned answers: numbers ending in 0 are not on WhatsApp; every group
    /// has one LID member whose number the group reveals.
    async fn query(&self, query: Query) -> Result<Answer, String> {
        self.backend
            .record(Call::Query(self.id.clone(), query.clone()));
        Ok(match query {
            Query::CheckNumbers(phones) => Answer::Numbers(
                phones
                    .into_iter()
                    .map(|phone| NumberCheck {
                        exists: !phone.ends_with('0'),
                        jid: Some(format!("{phone}@s.whatsapp.net")),
                        lid: None,
                        is_business: false,
                        phone,
                    })
                    .collect(),
            ),
            Query::GroupMetadata(id) => Answer::Group(GroupInfo {
                id,
                subject: "Orders".into(),
                creation: Some(1_700_000_000),
                participants: vec![GroupMember {
                    jid: "260477250707536@lid".into(),
                    phone: Some("919075167132".into()),
                    lid: Some("260477250707536".into()),
                    admin: true,
                }],
            }),
            Query::SubscribePresence(_) => Answer::Subscribed,
            Query::ContactInfo(_) => return Err("user info unavailable".into()),
        })
    }

    async fn logout(&self) {
        self.backend.record(Call::Logout(self.id.clone()));
        let delay = self
            .backend
            .shared
            .slow_logout
            .lock()
            .unwrap()
            .get(&self.id)
            .copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let _ = self
            .sink
            .send(WaEvent::Closed(CloseSignal::LoggedOut { code: 401 }));
        self.hang_up.notify_one();
    }
}
