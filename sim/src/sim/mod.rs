//! A loopback WhatsApp server that the real whatsapp-rust client connects to
//! (it accepts our certificate chain only with the dev-only feature
//! `danger-skip-cert-chain-verify`). It speaks Noise XX and IK, logs
//! registered devices in, offers pairing refs to new ones and completes the
//! pairing as the primary phone would (by QR code, or by a code typed on the
//! phone), answers the client's IQs, and fails connections in scripted ways.
//!
//! Plans say how each *next* connection goes; actions act on the latest
//! live one. Events say what happened, for tests to wait on.

mod conn;
mod contact;
pub mod kinds;
mod link_code;
mod media;
mod noise;
mod phone;
mod transport;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

pub use contact::{Addressing, Person};
pub use link_code::CodeRequest;
pub use noise::Handshake;

use contact::{Contact, UploadedKeys};

/// How the next connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnPlan {
    /// Registered → `<success>`; new device → six pairing refs, as the
    /// real server offers.
    Normal,
    /// Like `Normal`, but a new device gets only this many refs (the first
    /// lives 60 s, each further one 20 s), so codes run out sooner.
    QrRefs(usize),
    /// `<failure reason=…>` right after the handshake (402 with a ban code
    /// and expiry is a temporary ban).
    Failure {
        reason: u16,
        ban_code: Option<u16>,
        expire_secs: Option<u64>,
    },
    /// Log in, then `<stream:error code=…>` and close.
    StreamError { code: String },
    /// Log in, then `<conflict type="replaced">` and close.
    Replaced,
    /// Handshake, then drop the socket.
    CloseAfterHandshake,
    /// Accept the WebSocket and never answer.
    Silent,
}

impl ConnPlan {
    pub fn failure(reason: u16) -> ConnPlan {
        ConnPlan::Failure {
            reason,
            ban_code: None,
            expire_secs: None,
        }
    }
}

/// Something to do on the latest live connection.
#[derive(Debug, Clone)]
pub enum Action {
    /// Act as the phone scanning this QR payload: send `<pair-success>`.
    Scan(String),
    /// Act as the phone whose user typed this code for the connection's
    /// code request: send `primary_hello` (see `Simulator::enter_pair_code`).
    EnterPairCode(String),
    /// Act as the phone demanding a passkey before it links the companion:
    /// send `passkey_prologue_request`.
    DemandPasskey,
    Failure {
        reason: u16,
        ban_code: Option<u16>,
        expire_secs: Option<u64>,
    },
    StreamError {
        code: String,
    },
    Replaced,
    Close,
    /// The connection stays open and the server answers nothing more, as a
    /// link that silently vanished (or a half-open server) looks to the
    /// client: no FIN, no RST, no pong.
    Mute,
    /// Send this stanza (an encrypted message built by the simulator).
    Deliver(wacore_binary::Node),
    /// Ping the client as the real server does (`urn:xmpp:ping`); the time
    /// until its answer lands in `Simulator::take_ping_times`.
    Ping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    Handshake {
        conn: u64,
        handshake: Handshake,
        /// Phone number of a registered device logging in.
        username: Option<u64>,
        device: Option<u32>,
        client_static: [u8; 32],
    },
    QrRefsSent {
        conn: u64,
        refs: Vec<String>,
    },
    /// The phone linked a new device (QR scanned, or the right code typed).
    Paired {
        conn: u64,
        device: u16,
        pairing_ref: String,
    },
    /// A companion asked for a code to pair with `phone` (digits), and was
    /// given `pairing_ref`.
    PairCodeRequested {
        conn: u64,
        phone: String,
        pairing_ref: String,
    },
    /// The phone sent `primary_hello`: its user typed a code.
    PrimaryHelloSent {
        conn: u64,
        pairing_ref: String,
    },
    /// The phone could not open the companion's key bundle (the code typed
    /// was not the one shown): nothing is linked, the companion is not told.
    PairCodeRejected {
        conn: u64,
        pairing_ref: String,
    },
    /// The phone asked the companion for a passkey.
    PasskeyDemanded {
        conn: u64,
    },
    SuccessSent {
        conn: u64,
    },
    /// A person received (and decrypted) a message the client sent.
    MessageToPerson {
        conn: u64,
        id: String,
        /// The person's phone digits.
        to: String,
        /// The text, or the caption of a document.
        text: String,
        /// A document, downloaded and decrypted: (mimetype, file name, bytes).
        document: Option<(String, String, Vec<u8>)>,
    },
    /// A linked device uploaded its pre-keys: people can now write to it.
    PreKeysUploaded {
        conn: u64,
        device: u32,
        one_time: usize,
    },
    /// The client acknowledged a message we delivered.
    Receipt {
        conn: u64,
        id: String,
    },
    /// The client could not read message `id` and asked its sender for it
    /// again (a retry receipt).
    RetryReceipt {
        conn: u64,
        id: String,
    },
    /// The sender answered a retry receipt: message `id` went out again,
    /// readable this time (see `Simulator::send_unreadable_then`).
    Resent {
        conn: u64,
        id: String,
    },
    /// The client told the caller that call `call_id` rings (its receipt
    /// of the `<offer>`).
    CallRinging {
        conn: u64,
        call_id: String,
    },
    /// The client declined call `call_id` (`<call><reject …/></call>`).
    CallRejected {
        conn: u64,
        call_id: String,
    },
    Closed {
        conn: u64,
    },
}

pub struct Inner {
    server: noise::ServerIdentity,
    phone: phone::Phone,
    plans: Mutex<VecDeque<ConnPlan>>,
    events: broadcast::Sender<SimEvent>,
    live: Mutex<Vec<Live>>,
    next_conn: AtomicU64,
    next_device: AtomicU16,
    next_id: AtomicU64,
    /// Pre-keys per linked device, as uploaded.
    keys: Mutex<std::collections::HashMap<u32, Arc<Mutex<UploadedKeys>>>>,
    /// Messages delivered to a device and not yet receipted, oldest first:
    /// like the real server, they go out again when the device logs in.
    unreceipted: Mutex<std::collections::HashMap<u32, Vec<(String, wacore_binary::Node)>>>,
    /// Groups the server knows: JID → (subject, members).
    groups: Mutex<std::collections::HashMap<String, (String, Vec<Person>)>>,
    /// (group, member LID) of each group admin.
    admins: Mutex<std::collections::HashSet<(String, String)>>,
    /// Phone or LID digits → LID of people the server knows (who can be
    /// written to).
    people: Mutex<std::collections::HashMap<String, String>>,
    /// Where media is up- and downloaded.
    media: media::MediaHost,
    /// People who wrote, by LID, with their Signal state.
    contacts: tokio::sync::Mutex<std::collections::HashMap<String, Contact>>,
    /// Messages to send again, readable, when the device asks for them:
    /// message id → what (see `Simulator::send_unreadable_then`).
    resends: Mutex<std::collections::HashMap<String, Resend>>,
    /// Ids of the calls the client declined, oldest first.
    rejected_calls: Mutex<Vec<String>>,
    /// Ids of the messages the client sent to people.
    sent_by_client: Mutex<std::collections::HashSet<String>>,
    /// Round trips of answered server pings, oldest first.
    ping_times: Mutex<Vec<Duration>>,
    /// Connections between their TCP accept and the end of their Noise
    /// handshake, now and at most since the last look.
    handshakes: Gauge,
    /// The next offline sync is announced, then cut off (the socket closed)
    /// after this many of the missed messages.
    cut_offline_sync: Mutex<Option<usize>>,
    /// The most live logins each device had at once, ever: above 1 means
    /// two clients were connected as one linked device at the same time.
    peak_logins: Mutex<std::collections::HashMap<u32, usize>>,
}

/// A message that went out unreadable, and what its sender sends again
/// when the device asks for it.
struct Resend {
    device: u32,
    from: Person,
    addressing: Addressing,
    message: waproto::whatsapp::Message,
}

/// A count and its peak.
#[derive(Default)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// Counts one in until the returned guard is dropped.
    pub(crate) fn enter(&self) -> GaugeGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self)
    }

    /// The peak since the last call; starts over from the count now.
    fn take_peak(&self) -> usize {
        self.peak
            .swap(self.now.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

pub(crate) struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    fn next_plan(&self) -> ConnPlan {
        self.plans
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(ConnPlan::Normal)
    }

    fn emit(&self, event: SimEvent) {
        let _ = self.events.send(event);
    }

    fn register(&self, live: Live) {
        let mut lives = self.live.lock().unwrap();
        if let Some(device) = live.device {
            let now = 1 + lives.iter().filter(|l| l.device == Some(device)).count();
            let mut peaks = self.peak_logins.lock().unwrap();
            let peak = peaks.entry(device).or_default();
            *peak = (*peak).max(now);
        }
        lives.push(live);
    }

    fn unregister(&self, conn: u64) {
        self.live.lock().unwrap().retain(|l| l.conn != conn);
    }

    /// Notes the code a live connection asked for, replacing an earlier one.
    fn record_code_request(&self, conn: u64, request: CodeRequest) {
        if let Some(live) = self
            .live
            .lock()
            .unwrap()
            .iter_mut()
            .find(|l| l.conn == conn)
        {
            live.code_request = Some(request);
        }
    }

    fn next_device(&self) -> u16 {
        self.next_device.fetch_add(1, Ordering::SeqCst)
    }

    fn next_id(&self) -> String {
        format!("sim-{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// Sends `action` to the newest live connection `target` matches.
    fn act_on(&self, target: Target, action: Action) -> bool {
        let live = self.live.lock().unwrap();
        live.iter()
            .rev()
            .find(|l| target.matches(l))
            .is_some_and(|l| l.actions.send(action).is_ok())
    }

    /// Keeps `stanza` until the device receipts it (in place of an earlier
    /// stanza with the same id, if one waits), and sends it now if the
    /// device is online (else at its next login).
    fn queue_and_deliver(&self, device: u32, id: &str, stanza: wacore_binary::Node) {
        {
            let mut queues = self.unreceipted.lock().unwrap();
            let queue = queues.entry(device).or_default();
            match queue.iter_mut().find(|(queued, _)| queued == id) {
                Some(waiting) => waiting.1 = stanza.clone(),
                None => queue.push((id.to_string(), stanza.clone())),
            }
        }
        self.act_on(Target::Device(device), Action::Deliver(stanza));
    }

    /// A device's uploaded keys and the address a sender encrypts to.
    fn device_keys(
        &self,
        device: u32,
    ) -> anyhow::Result<(
        Arc<Mutex<UploadedKeys>>,
        wacore::libsignal::protocol::ProtocolAddress,
    )> {
        let keys = self
            .keys
            .lock()
            .unwrap()
            .get(&device)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("device {device} has not uploaded pre-keys"))?;
        Ok((keys, self.device_address(device)))
    }

    /// The Signal address of linked `device`, as people encrypt to it.
    fn device_address(&self, device: u32) -> wacore::libsignal::protocol::ProtocolAddress {
        wacore::libsignal::protocol::ProtocolAddress::new(
            &format!("{}:{device}", self.phone.lid),
            device.into(),
        )
    }

    /// `from` encrypts `message` for linked `device` and the server queues
    /// and delivers it as message `id`.
    async fn encrypt_and_deliver(
        &self,
        device: u32,
        id: &str,
        from: &Person,
        addressing: Addressing,
        message: &waproto::whatsapp::Message,
    ) -> anyhow::Result<()> {
        let (keys, address) = self.device_keys(device)?;
        let (ciphertext, kind) = {
            let mut contacts = self.contacts.lock().await;
            let contact = contacts
                .entry(from.lid.clone())
                .or_insert_with(Contact::new);
            contact.encrypt(&address, &keys, message).await?
        };
        let edit = edit_attribute(message);
        let stanza = conn::message_stanza(id, from, addressing, kind, ciphertext, edit);
        self.queue_and_deliver(device, id, stanza);
        Ok(())
    }

    /// Linked `device` asked for message `id` again (a retry receipt): if
    /// it went out unreadable on purpose, its sender sends the real message
    /// now under the same id. True if it did.
    async fn resend(&self, device: u32, id: &str) -> anyhow::Result<bool> {
        let pending = {
            let mut resends = self.resends.lock().unwrap();
            match resends.get(id) {
                Some(resend) if resend.device == device => resends.remove(id),
                _ => None,
            }
        };
        let Some(Resend {
            from,
            addressing,
            message,
            ..
        }) = pending
        else {
            return Ok(false);
        };
        self.encrypt_and_deliver(device, id, &from, addressing, &message)
            .await?;
        Ok(true)
    }
}

/// The `edit` attribute a phone puts on the stanza of an edit ("1") or of a
/// delete of its own message for everyone ("7"), as whatsapp-rust's sender
/// does too.
fn edit_attribute(message: &waproto::whatsapp::Message) -> Option<&'static str> {
    use waproto::whatsapp::message::protocol_message::Type;
    let protocol = message.protocol_message.as_option()?;
    let from_me = protocol.key.as_option().and_then(|k| k.from_me) == Some(true);
    match protocol.r#type? {
        Type::MESSAGE_EDIT => Some("1"),
        Type::REVOKE if from_me => Some("7"),
        _ => None,
    }
}

/// A connection past its handshake, and how to reach its task.
struct Live {
    conn: u64,
    /// The linked device logging in (`None` while a new device pairs).
    device: Option<u32>,
    /// The code this (new) device asked for, if it pairs by code.
    code_request: Option<CodeRequest>,
    actions: mpsc::UnboundedSender<Action>,
}

/// Which live connection an action goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The newest connection of any kind.
    Latest,
    /// The newest connection of this linked device (see `SimEvent::Paired`).
    Device(u32),
}

impl Target {
    fn matches(self, live: &Live) -> bool {
        match self {
            Target::Latest => true,
            Target::Device(device) => live.device == Some(device),
        }
    }
}

/// Cheap to clone; the server runs until the runtime ends.
#[derive(Clone)]
pub struct Simulator {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

/// The phone number and LID of the simulated account.
pub const PHONE: &str = "15551234567";
pub const LID: &str = "100000000000001";

impl Simulator {
    pub async fn start() -> std::io::Result<Simulator> {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> std::io::Result<Simulator> {
        Self::start_with_phone(addr, PHONE, LID).await
    }

    /// A simulator whose account has this phone number and LID (e.g. the
    /// account of an imported device).
    pub async fn start_with_phone(addr: &str, pn: &str, lid: &str) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            server: noise::ServerIdentity::generate(),
            phone: phone::Phone::new(pn, lid),
            plans: Mutex::new(VecDeque::new()),
            events,
            live: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            next_device: AtomicU16::new(3),
            next_id: AtomicU64::new(1),
            keys: Mutex::default(),
            unreceipted: Mutex::default(),
            groups: Mutex::default(),
            admins: Mutex::default(),
            people: Mutex::default(),
            media: media::MediaHost::default(),
            contacts: tokio::sync::Mutex::default(),
            ping_times: Mutex::default(),
            handshakes: Gauge::default(),
            cut_offline_sync: Mutex::default(),
            peak_logins: Mutex::default(),
            resends: Mutex::default(),
            rejected_calls: Mutex::default(),
            sent_by_client: Mutex::default(),
        });
        let accept = inner.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = accept.next_conn.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(conn::serve(accept.clone(), tcp, conn));
            }
        });
        Ok(Simulator { addr, inner })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn events(&self) -> broadcast::Receiver<SimEvent> {
        self.inner.events.subscribe()
    }

    /// Queues how a coming connection goes (first in, first used).
    pub fn push_plan(&self, plan: ConnPlan) {
        self.inner.plans.lock().unwrap().push_back(plan);
    }

    /// Acts on the most recent live connection; false if there is none.
    pub fn act(&self, action: Action) -> bool {
        self.act_on(Target::Latest, action)
    }

    /// Acts on the newest live connection `target` picks; false if none.
    pub fn act_on(&self, target: Target, action: Action) -> bool {
        self.inner.act_on(target, action)
    }

    /// The phone scans a QR payload: like the real server, route it to the
    /// connection that was offered that ref. False if it is gone.
    pub fn scan(&self, qr_payload: &str) -> bool {
        let conn = qr_payload
            .strip_prefix(conn::REF_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|n| n.parse::<u64>().ok());
        let live = self.inner.live.lock().unwrap();
        live.iter()
            .find(|l| Some(l.conn) == conn)
            .is_some_and(|l| l.actions.send(Action::Scan(qr_payload.to_string())).is_ok())
    }

    /// The phone's user types `code` (Linked devices → Link with phone
    /// number). Like the real server, which routes the phone's answer by
    /// number, it goes to the newest live connection that asked for a code
    /// for this account's number; false if there is none. The phone cannot
    /// tell a wrong code yet: it answers anyway, and only fails to open the
    /// companion's key bundle later (`SimEvent::PairCodeRejected`). As on a
    /// phone's input field, case and a separating dash do not matter.
    pub fn enter_pair_code(&self, code: &str) -> bool {
        let code: String = code
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let live = self.inner.live.lock().unwrap();
        live.iter()
            .rev()
            .find(|l| {
                l.code_request
                    .as_ref()
                    .is_some_and(|r| r.phone == self.inner.phone.pn)
            })
            .is_some_and(|l| l.actions.send(Action::EnterPairCode(code)).is_ok())
    }

    /// The phone demands a passkey before it links a new device: a
    /// `passkey_prologue_request` to the newest live connection of a device
    /// being linked (one that asked for a code first, if any); false if
    /// there is none.
    pub fn demand_passkey(&self) -> bool {
        let live = self.inner.live.lock().unwrap();
        let pairing = || live.iter().rev().filter(|l| l.device.is_none());
        pairing()
            .find(|l| l.code_request.is_some())
            .or_else(|| pairing().next())
            .is_some_and(|l| l.actions.send(Action::DemandPasskey).is_ok())
    }

    /// The code live connection `conn` asked for, if any.
    pub fn code_request(&self, conn: u64) -> Option<CodeRequest> {
        let live = self.inner.live.lock().unwrap();
        live.iter()
            .find(|l| l.conn == conn)
            .and_then(|l| l.code_request.clone())
    }

    /// `from` writes `text` to linked `device`, Signal-encrypted against the
    /// pre-keys it uploaded; returns the message id.
    pub async fn send_text(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        text: &str,
    ) -> anyhow::Result<String> {
        let message = kinds::text(text);
        self.send_message(device, from, addressing, &message).await
    }

    /// A fresh message id, as a phone makes them.
    fn message_id(&self, prefix: &str) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        format!("{prefix}{n:012}")
    }

    /// The HTTP client a client under test uses for media: the simulator's
    /// media host.
    pub fn media_http(&self) -> Arc<dyn whatsapp_rust::http::HttpClient> {
        Arc::new(self.inner.media.clone())
    }

    /// Makes `person` reachable: the server hands out their pre-keys, and
    /// what the client sends them is decrypted on their behalf.
    pub async fn add_person(&self, person: &Person) {
        {
            let mut people = self.inner.people.lock().unwrap();
            people.insert(person.pn.clone(), person.lid.clone());
            people.insert(person.lid.clone(), person.lid.clone());
        }
        self.inner
            .contacts
            .lock()
            .await
            .entry(person.lid.clone())
            .or_insert_with(Contact::new);
    }

    /// Makes the server know `group` (`<id>@g.us`): its subject and members,
    /// as it answers a client's group query (numbers included).
    pub fn add_group(&self, group: &str, subject: &str, members: &[Person]) {
        self.inner
            .groups
            .lock()
            .unwrap()
            .insert(group.to_string(), (subject.to_string(), members.to_vec()));
    }

    /// Makes `person` a member of `group`, which the server learns (with
    /// `subject`) if it did not know it.
    pub fn join_group(&self, group: &str, subject: &str, person: &Person) {
        let mut groups = self.inner.groups.lock().unwrap();
        let (_, members) = groups
            .entry(group.to_string())
            .or_insert_with(|| (subject.to_string(), Vec::new()));
        if !members.iter().any(|m| m.lid == person.lid) {
            members.push(person.clone());
        }
    }

    /// Makes `person` an admin of `group`, as the server then describes it.
    pub fn make_admin(&self, group: &str, person: &Person) {
        self.inner
            .admins
            .lock()
            .unwrap()
            .insert((group.to_string(), person.lid.clone()));
    }

    /// `from` writes `text` in `group` (`<id>@g.us`) to linked `device`:
    /// the sender key travels in a 1:1 message beside the group ciphertext.
    pub async fn send_group_text(
        &self,
        device: u32,
        group: &str,
        from: &Person,
        addressing: Addressing,
        text: &str,
    ) -> anyhow::Result<String> {
        let message = kinds::text(text);
        self.send_group_message(device, group, from, addressing, &message)
            .await
    }

    /// Like `send_group_text`, for any message content (see `kinds`).
    pub async fn send_group_message(
        &self,
        device: u32,
        group: &str,
        from: &Person,
        addressing: Addressing,
        message: &waproto::whatsapp::Message,
    ) -> anyhow::Result<String> {
        let (keys, address) = self.inner.device_keys(device)?;
        let (pairwise, group_ciphertext) = {
            let mut contacts = self.inner.contacts.lock().await;
            let contact = contacts
                .entry(from.lid.clone())
                .or_insert_with(Contact::new);
            contact
                .encrypt_group(group, &address, &keys, message)
                .await?
        };
        let id = self.message_id("3EB0GRP");
        let stanza = conn::group_message_stanza(
            &id,
            group,
            from,
            addressing,
            pairwise,
            group_ciphertext,
            edit_attribute(message),
        );
        self.inner.queue_and_deliver(device, &id, stanza);
        Ok(id)
    }

    /// Everyone forgets their Signal session with linked `device`, and the
    /// server drops the messages it still holds for it: for a device whose
    /// store is restored from a copy made before those sessions existed
    /// (a benchmark measuring each run on fresh copies), so that the next
    /// message from each person starts a new session (`pkmsg`) instead of
    /// continuing one the device never had. Its uploaded pre-keys stay:
    /// the copy still holds every one the server has not handed out.
    pub async fn forget_sessions(&self, device: u32) {
        let address = self.inner.device_address(device);
        for contact in self.inner.contacts.lock().await.values_mut() {
            contact.forget(&address);
        }
        self.inner.unreceipted.lock().unwrap().remove(&device);
    }

    /// Bytes of media downloads the client has read from the media host.
    pub fn media_served(&self) -> u64 {
        self.inner.media.served()
    }

    /// `from` sends `device` a document: encrypted with a fresh media key,
    /// uploaded to the simulator's media host, announced in a message.
    pub async fn send_document(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        document: (&str, &str, &[u8]),
        caption: &str,
    ) -> anyhow::Result<String> {
        self.send_document_declaring(device, from, addressing, document, caption, None)
            .await
    }

    /// Like `send_document`, with the message declaring `declared_length`
    /// bytes whatever the file's real size (a sender who lies about it).
    pub async fn send_document_declaring(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        document: (&str, &str, &[u8]),
        caption: &str,
        declared_length: Option<u64>,
    ) -> anyhow::Result<String> {
        let message = self.document_message(document, caption, declared_length)?;
        self.send_message(device, from, addressing, &message).await
    }

    /// The message announcing a document `(mimetype, file name, bytes)`:
    /// the file is encrypted with a fresh media key and uploaded to the
    /// simulator's media host; the message declares `declared_length`
    /// bytes if given, else the file's real size.
    pub fn document_message(
        &self,
        (mimetype, file_name, bytes): (&str, &str, &[u8]),
        caption: &str,
        declared_length: Option<u64>,
    ) -> anyhow::Result<waproto::whatsapp::Message> {
        let mut encryptor =
            wacore::upload::MediaEncryptor::new(wacore::download::MediaType::Document)?;
        let mut sealed = Vec::new();
        encryptor.update(bytes, &mut sealed);
        let info = encryptor.finalize(&mut sealed)?;
        let direct_path = self.inner.media.put(sealed);
        Ok(waproto::whatsapp::Message {
            document_message: waproto::buffa::MessageField::some(
                waproto::whatsapp::message::DocumentMessage {
                    url: Some(format!("https://{}{direct_path}", media::HOST)),
                    direct_path: Some(direct_path),
                    media_key: Some(info.media_key.to_vec()),
                    file_sha256: Some(info.file_sha256.to_vec()),
                    file_enc_sha256: Some(info.file_enc_sha256.to_vec()),
                    file_length: Some(declared_length.unwrap_or(info.file_length)),
                    mimetype: Some(mimetype.to_string()),
                    file_name: Some(file_name.to_string()),
                    caption: Some(caption.to_string()),
                    ..Default::default()
                },
            ),
            ..Default::default()
        })
    }

    /// Like `send_text`, for any message content (see `kinds`). An edit or
    /// a delete for everyone gets the stanza's `edit` attribute a phone
    /// puts on it.
    pub async fn send_message(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        message: &waproto::whatsapp::Message,
    ) -> anyhow::Result<String> {
        let id = self.message_id("3EB0SIM");
        self.inner
            .encrypt_and_deliver(device, &id, from, addressing, message)
            .await?;
        Ok(id)
    }

    /// `from` sends `device` a ciphertext made elsewhere (e.g. by a peer
    /// of an imported device); `kind` is "pkmsg", "msg" or "skmsg".
    pub fn send_ciphertext(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        kind: &str,
        ciphertext: Vec<u8>,
    ) -> String {
        let id = self.message_id("3EB0OLD");
        let stanza = conn::message_stanza(&id, from, addressing, kind, ciphertext, None);
        self.inner.queue_and_deliver(device, &id, stanza);
        id
    }

    /// `from` sends `device` a message nobody can decrypt (corrupted on
    /// the way, or from a session the device no longer has). The bytes do
    /// not even parse as a Signal message: the client refuses the stanza
    /// (a nack) and asks nobody to send it again.
    pub fn send_garbage(&self, device: u32, from: &Person, addressing: Addressing) -> String {
        let id = self.message_id("3EB0BAD");
        let garbage: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        let stanza = conn::message_stanza(&id, from, addressing, "msg", garbage, None);
        self.act_on(Target::Device(device), Action::Deliver(stanza));
        id
    }

    /// `from` sends `device` a message it cannot read, then the real
    /// `message` under the same id once the device asks for it again, as a
    /// sender's phone answers a retry receipt. The first copy is a
    /// well-formed Signal message whose MAC nobody can verify (as after a
    /// lost session or a corrupted ciphertext), so the client fails to
    /// decrypt it and sends `<receipt type="retry">`; the second is
    /// encrypted like `send_message`'s. Both are queued until receipted.
    /// `SimEvent::RetryReceipt` and then `SimEvent::Resent` say it
    /// happened. Returns the message id.
    pub fn send_unreadable_then(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        message: &waproto::whatsapp::Message,
    ) -> anyhow::Result<String> {
        let id = self.message_id("3EB0RTY");
        let unreadable = contact::unreadable_signal_message()?;
        self.inner.resends.lock().unwrap().insert(
            id.clone(),
            Resend {
                device,
                from: from.clone(),
                addressing,
                message: message.clone(),
            },
        );
        let stanza = conn::message_stanza(&id, from, addressing, "msg", unreadable, None);
        self.inner.queue_and_deliver(device, &id, stanza);
        Ok(id)
    }

    /// `from` calls linked `device` (a voice call, or a video call): a
    /// `<call>` with an `<offer>` as the server relays a ringing call, which
    /// whatsapp-rust turns into `Event::IncomingCall`. The device must be
    /// online: a call rings now or never. `SimEvent::CallRinging` says the
    /// client saw it, `SimEvent::CallRejected` (and `rejected_calls`) that
    /// it declined it. Returns the call id.
    pub fn send_call(
        &self,
        device: u32,
        from: &Person,
        addressing: Addressing,
        video: bool,
    ) -> anyhow::Result<String> {
        let call_id = format!("{:032X}", rand::random::<u128>());
        let stanza_id = self.message_id("CALL");
        let offer = conn::call_offer_stanza(&stanza_id, &call_id, from, addressing, video);
        anyhow::ensure!(
            self.act_on(Target::Device(device), Action::Deliver(offer)),
            "device {device} is not online: a call rings only a connected device"
        );
        Ok(call_id)
    }

    /// Ids of the calls the client declined, oldest first.
    pub fn rejected_calls(&self) -> Vec<String> {
        self.inner.rejected_calls.lock().unwrap().clone()
    }

    /// The simulated account as a person's phone names the chat with it:
    /// by number when the person writes by number, else by LID. What a
    /// `kinds` key's `remote_jid` holds for a message in that chat.
    pub fn account_jid(&self, addressing: Addressing) -> String {
        match addressing {
            Addressing::Pn => format!("{}@s.whatsapp.net", self.inner.phone.pn),
            Addressing::LidWithPn | Addressing::LidHidden => {
                format!("{}@lid", self.inner.phone.lid)
            }
        }
    }

    /// Whether the client sent message `id` to a person (then a reaction
    /// to it is to someone else's message, `from_me: false`).
    pub fn sent_by_client(&self, id: &str) -> bool {
        self.inner.sent_by_client.lock().unwrap().contains(id)
    }

    /// Messages to `device` that it has not receipted yet.
    pub fn unreceipted(&self, device: u32) -> usize {
        self.inner
            .unreceipted
            .lock()
            .unwrap()
            .get(&device)
            .map_or(0, Vec::len)
    }

    /// Sends `action` to every live connection; returns how many got it.
    pub fn act_on_all(&self, action: Action) -> usize {
        let live = self.inner.live.lock().unwrap();
        live.iter()
            .filter(|l| l.actions.send(action.clone()).is_ok())
            .count()
    }

    /// The round trips of the server pings answered since the last call.
    pub fn take_ping_times(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.inner.ping_times.lock().unwrap())
    }

    /// The next login that has missed messages waiting gets them announced
    /// (`<offline_preview>`), then only the first `after` of them before
    /// the connection drops: an offline sync cut short. None of them is
    /// receipted, so the next login gets them all again.
    pub fn cut_next_offline_sync(&self, after: usize) {
        *self.inner.cut_offline_sync.lock().unwrap() = Some(after);
    }

    /// The most connections that were handshaking at once (TCP accepted,
    /// Noise handshake not finished) since the last call.
    pub fn take_handshake_peak(&self) -> usize {
        self.inner.handshakes.take_peak()
    }

    pub fn live_connections(&self) -> usize {
        self.inner.live.lock().unwrap().len()
    }

    /// Live connections of logged-in devices: (connection id, device),
    /// oldest first. A connection id that stays means the same socket
    /// stayed up; a device that reconnected has a new one.
    pub fn live_logins(&self) -> Vec<(u64, u32)> {
        self.inner
            .live
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| Some((l.conn, l.device?)))
            .collect()
    }

    /// The most connections that were logged in as `device` at the same
    /// time since the simulator started (0: it never logged in). Above 1,
    /// two clients served one linked device at once.
    pub fn peak_logins(&self, device: u32) -> usize {
        self.inner
            .peak_logins
            .lock()
            .unwrap()
            .get(&device)
            .copied()
            .unwrap_or(0)
    }

    /// `count` consecutive device numbers the phone will never link, for
    /// clients that bring their own credentials (another library's peers):
    /// the server keeps pre-keys per device number, so theirs must not
    /// land on a device the phone linked. Returns the first.
    pub fn reserve_devices(&self, count: u16) -> u16 {
        self.inner.next_device.fetch_add(count, Ordering::SeqCst)
    }

    /// Live connection ids, oldest first.
    pub fn connection_ids(&self) -> Vec<u64> {
        self.inner
            .live
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.conn)
            .collect()
    }
}

/// Waits for the first event matching `wanted` (bounded).
pub async fn wait_for(
    events: &mut broadcast::Receiver<SimEvent>,
    within: Duration,
    wanted: impl Fn(&SimEvent) -> bool,
) -> SimEvent {
    let found = tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("simulator gone"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no matching simulator event within {within:?}"))
}

/// The device number of the next companion that finishes linking (its
/// pre-keys uploaded): what `send_text` and friends address.
pub async fn linked_device(events: &mut broadcast::Receiver<SimEvent>, within: Duration) -> u32 {
    let uploaded = wait_for(events, within, |e| {
        matches!(e, SimEvent::PreKeysUploaded { .. })
    })
    .await;
    let SimEvent::PreKeysUploaded { device, .. } = uploaded else {
        unreachable!()
    };
    device
}
