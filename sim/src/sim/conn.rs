//! One client connection: the handshake, then the plan for this connection
//! (log in, offer pairing refs, or fail in a scripted way), an auto-responder
//! for the client's IQs (a code request among them), and the actions a test
//! asks for while it lives.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;

use super::contact::{Addressing, Person, UploadedKeys};
use super::link_code::{self, CodeRequest};
use super::noise::{self, Established};
use super::phone;
use super::transport::{Frames, NodeChannel};
use super::{Action, ConnPlan, Inner, Live, SimEvent};

const SERVER: &str = "s.whatsapp.net";
/// How long the server waits for a client to close after the stream ended.
const CLIENT_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Our pairing refs are `<prefix><connection>-<n>`, so a scanned code finds
/// its connection.
pub const REF_PREFIX: &str = "2@sim-ref-";
/// Pairing refs the real server offers a new device per connection.
const QR_REFS: usize = 6;
/// Our refs for pairing by code are `<prefix><connection>-<n>`.
pub const CODE_REF_PREFIX: &str = "3@sim-code-";

pub async fn serve(inner: Arc<Inner>, tcp: TcpStream, conn: u64) {
    let handshaking = inner.handshakes.enter();
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    // Plans are for clients: a bare TCP connect (a reachability probe)
    // that never speaks WebSocket takes none.
    let plan = inner.next_plan();
    let mut frames = Frames::new(ws);
    if plan == ConnPlan::Silent {
        // Accept and say nothing: the client must give up on its own.
        while frames.next_frame().await.is_ok() {}
        inner.emit(SimEvent::Closed { conn });
        return;
    }
    let established = noise::respond(&inner.server, &mut frames).await;
    drop(handshaking);
    let Ok(established) = established else {
        inner.emit(SimEvent::Closed { conn });
        return;
    };
    let Established {
        handshake,
        client_static,
        payload,
        read,
        write,
    } = established;
    let registered = payload.username.is_some();
    inner.emit(SimEvent::Handshake {
        conn,
        handshake,
        username: payload.username,
        device: payload.device,
        client_static,
    });
    let mut channel = NodeChannel::new(frames, read, write);
    let (actions_tx, actions) = mpsc::unbounded_channel();
    inner.register(Live {
        conn,
        device: registered.then_some(payload.device.unwrap_or(0)),
        code_request: None,
        actions: actions_tx,
    });
    let mut session = Session {
        inner: inner.clone(),
        conn,
        device: registered.then_some(payload.device.unwrap_or(0)),
        channel: &mut channel,
        pairing_iq: None,
        pings: std::collections::HashMap::new(),
        code_request: None,
        code_attempt: None,
        muted: false,
    };
    let _ = session.run(plan, registered, actions).await;
    channel.close().await;
    inner.unregister(conn);
    inner.emit(SimEvent::Closed { conn });
}

struct Session<'a> {
    inner: Arc<Inner>,
    conn: u64,
    /// The linked device logged in on this connection, if any.
    device: Option<u32>,
    channel: &'a mut NodeChannel,
    /// Id of the `<pair-success>` IQ we sent, answered by `<pair-device-sign>`.
    pairing_iq: Option<String>,
    /// Server pings awaiting their answer: id → when sent.
    pings: std::collections::HashMap<String, std::time::Instant>,
    /// The code the companion asked for (`companion_hello`), if any.
    code_request: Option<CodeRequest>,
    /// The phone's side of the last code typed, until the companion's key
    /// bundle answers it.
    code_attempt: Option<link_code::Attempt>,
    /// A half-open zombie (`Action::Mute`): it reads, answers nothing.
    muted: bool,
}

impl Session<'_> {
    async fn run(
        &mut self,
        plan: ConnPlan,
        registered: bool,
        mut actions: mpsc::UnboundedReceiver<Action>,
    ) -> anyhow::Result<()> {
        match plan {
            ConnPlan::Silent => unreachable!("handled before the handshake"),
            ConnPlan::CloseAfterHandshake => return Ok(()),
            ConnPlan::Failure {
                reason,
                ban_code,
                expire_secs,
            } => {
                return self.fail(reason, ban_code, expire_secs).await;
            }
            ConnPlan::StreamError { code } => {
                self.login_or_offer_pairing(registered, QR_REFS).await?;
                return self.stream_error(&code).await;
            }
            ConnPlan::Replaced => {
                self.login_or_offer_pairing(registered, QR_REFS).await?;
                return self.replaced().await;
            }
            ConnPlan::Normal => self.login_or_offer_pairing(registered, QR_REFS).await?,
            ConnPlan::QrRefs(refs) => self.login_or_offer_pairing(registered, refs).await?,
        }
        loop {
            tokio::select! {
                node = self.channel.recv() => {
                    let node = node?;
                    if !self.muted && self.on_node(node).await? {
                        return Ok(());
                    }
                }
                Some(action) = actions.recv() => {
                    if self.on_action(action).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn login_or_offer_pairing(
        &mut self,
        registered: bool,
        qr_refs: usize,
    ) -> anyhow::Result<()> {
        if registered {
            let success = NodeBuilder::new("success")
                .attr("t", chrono::Utc::now().timestamp().to_string())
                .attr("lid", format!("{}@lid", self.inner.phone.lid))
                .attr("location", "sim")
                .build();
            self.channel.send(&success).await?;
            self.inner.emit(SimEvent::SuccessSent { conn: self.conn });
        } else {
            let refs: Vec<String> = (0..qr_refs)
                .map(|n| format!("{REF_PREFIX}{}-{n}", self.conn))
                .collect();
            let iq = NodeBuilder::new("iq")
                .attr("from", SERVER)
                .attr("type", "set")
                .attr("id", self.inner.next_id())
                .attr("xmlns", "md")
                .children([NodeBuilder::new("pair-device")
                    .children(
                        refs.iter()
                            .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
                    )
                    .build()])
                .build();
            self.channel.send(&iq).await?;
            self.inner.emit(SimEvent::QrRefsSent {
                conn: self.conn,
                refs,
            });
        }
        Ok(())
    }

    /// Handles one stanza from the client; true ends the connection.
    async fn on_node(&mut self, node: Node) -> anyhow::Result<bool> {
        if node.tag == "receipt" {
            self.on_receipt(&node).await;
            return Ok(false);
        }
        if node.tag == "message" && attr(&node, "to").is_some() {
            self.take_outgoing(&node).await?;
            return Ok(false);
        }
        if node.tag == "call" {
            self.take_call(&node).await?;
            return Ok(false);
        }
        if node.tag != "iq" {
            return Ok(false);
        }
        if let (Some(device), Some(keys)) = (self.device, UploadedKeys::from_upload(&node)) {
            let one_time = keys.one_time.len();
            self.inner
                .keys
                .lock()
                .unwrap()
                .insert(device, Arc::new(std::sync::Mutex::new(keys)));
            self.inner.emit(SimEvent::PreKeysUploaded {
                conn: self.conn,
                device,
                one_time,
            });
        }
        let id = attr(&node, "id").unwrap_or_default();
        let kind = attr(&node, "type").unwrap_or_default();
        if kind == "result" {
            if let Some(sent) = self.pings.remove(&id) {
                self.inner.ping_times.lock().unwrap().push(sent.elapsed());
                return Ok(false);
            }
            let signed = node
                .children()
                .is_some_and(|c| c.iter().any(|c| c.tag == "pair-device-sign"));
            if signed && self.pairing_iq.as_deref() == Some(id.as_str()) {
                // Linked: the real server restarts the stream now.
                self.stream_error("515").await?;
                return Ok(true);
            }
            return Ok(false);
        }
        let xmlns = attr(&node, "xmlns").unwrap_or_default();
        if xmlns == "md"
            && kind == "set"
            && let Some(reg) = node.get_optional_child(link_code::TAG)
        {
            self.on_link_code(&id, reg).await?;
            return Ok(false);
        }
        let mut reply = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "result")
            .attr("id", id.clone());
        if xmlns == "w:sync:app:state" {
            reply = reply.children([up_to_date(&node)]);
        }
        if xmlns == "encrypt"
            && kind == "get"
            && let Some(wanted) = node.get_optional_child("key")
        {
            reply = reply.children([self.bundles(wanted).await]);
        }
        // A device asks how many of its one-time pre-keys the server still
        // holds, and tops them up when they run low (Baileys at each login;
        // whatsapp-rust keeps a flag instead). Without a count Baileys fails
        // its check on every login.
        if xmlns == "encrypt" && kind == "get" && node.get_optional_child("count").is_some() {
            let left = self.uploaded_keys().map_or(0, |keys| keys.one_time.len());
            reply = reply.children([NodeBuilder::new("count")
                .attr("value", left.to_string())
                .build()]);
        }
        // The key-bundle check after login: a reply without `<digest>`
        // makes Baileys upload pre-keys again at every login; 404 is what
        // tells a device that the server has no bundle for it.
        if xmlns == "encrypt" && kind == "get" && node.get_optional_child("digest").is_some() {
            match self.uploaded_keys() {
                Some(keys) => reply = reply.children([keys.digest()]),
                None => {
                    self.send_iq_error(&id, 404, "item-not-found").await?;
                    return Ok(false);
                }
            }
        }
        if xmlns == "w:m" && node.get_optional_child("media_conn").is_some() {
            reply = reply.children([NodeBuilder::new("media_conn")
                .attr("auth", "sim-auth")
                .attr("ttl", "3600")
                .children([NodeBuilder::new("host")
                    .attr("hostname", super::media::HOST)
                    .build()])
                .build()]);
        }
        if xmlns == "w:g2"
            && let Some(group) = attr(&node, "to")
            && let Some(info) = self.inner.groups.lock().unwrap().get(&group).cloned()
        {
            let admins = self.inner.admins.lock().unwrap().clone();
            let is_admin = |m: &Person| admins.contains(&(group.clone(), m.lid.clone()));
            reply = reply.children([group_info(&group, &info.0, &info.1, is_admin)]);
        }
        self.channel.send(&reply.build()).await?;
        if xmlns == "passive"
            && node
                .children()
                .is_some_and(|c| c.iter().any(|c| c.tag == "active"))
        {
            // Leaving passive mode: what the device missed, then the count.
            let missed = self
                .device
                .and_then(|d| self.inner.unreceipted.lock().unwrap().get(&d).cloned())
                .unwrap_or_default();
            let cut = match missed.len() {
                0 => None,
                _ => self.inner.cut_offline_sync.lock().unwrap().take(),
            };
            if let Some(after) = cut {
                let preview = NodeBuilder::new("ib")
                    .children([NodeBuilder::new("offline_preview")
                        .attr("count", missed.len().to_string())
                        .attr("message", missed.len().to_string())
                        .attr("notification", "0")
                        .attr("receipt", "0")
                        .attr("appdata", "0")
                        .attr("call", "0")
                        .attr("status", "0")
                        .build()])
                    .build();
                self.channel.send(&preview).await?;
                for (_, stanza) in missed.iter().take(after) {
                    self.channel.send(stanza).await?;
                }
                anyhow::bail!("offline sync cut after {after} of {}", missed.len());
            }
            for (_, stanza) in &missed {
                self.channel.send(stanza).await?;
            }
            let offline = NodeBuilder::new("ib")
                .children([NodeBuilder::new("offline")
                    .attr("count", missed.len().to_string())
                    .build()])
                .build();
            self.channel.send(&offline).await?;
        }
        Ok(false)
    }

    /// A stage of pairing by code the companion sends.
    async fn on_link_code(&mut self, id: &str, reg: &Node) -> anyhow::Result<()> {
        match attr(reg, "stage").as_deref() {
            Some("companion_hello") => {
                let n = self
                    .inner
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let pairing_ref = format!("{CODE_REF_PREFIX}{}-{n}", self.conn);
                let Some(request) = CodeRequest::parse(reg, pairing_ref.clone()) else {
                    // What the real server answers content it cannot use.
                    return self.send_iq_error(id, 400, "bad-request").await;
                };
                self.channel
                    .send(&link_code::companion_hello_answer(id, &pairing_ref))
                    .await?;
                self.inner.record_code_request(self.conn, request.clone());
                self.inner.emit(SimEvent::PairCodeRequested {
                    conn: self.conn,
                    phone: request.phone.clone(),
                    pairing_ref,
                });
                self.code_request = Some(request);
                self.code_attempt = None;
            }
            Some("companion_finish") => {
                // The server acknowledges the bundle; only the phone can tell
                // whether it opens. When it does not (a mistyped code), the
                // real phone reports the failed link to its own user and the
                // companion hears nothing: whatsapp-rust documents exactly
                // this (`start_pair_success_timeout`: "a primary that could
                // not open the key bundle simply goes quiet", and the
                // `companion_finish` answer "is the server acknowledging the
                // bundle, not the primary opening it"), and writes the code
                // off after a minute of silence. So: ack, then pair or stay
                // silent. The phone's user may type the code again.
                self.send_iq_result(id).await?;
                let echoed = link_code_ref(reg);
                let Some(attempt) = self
                    .code_attempt
                    .take_if(|a| echoed.as_deref() == Some(a.pairing_ref.as_str()))
                else {
                    return Ok(());
                };
                match link_code::open_key_bundle(&self.inner.phone, &attempt, reg) {
                    Ok(companion) => self.send_pair_success(companion).await?,
                    Err(e) => {
                        tracing::warn!("simulated phone: linking by code failed: {e}");
                        self.inner.emit(SimEvent::PairCodeRejected {
                            conn: self.conn,
                            pairing_ref: attempt.pairing_ref,
                        });
                    }
                }
            }
            _ => self.send_iq_result(id).await?,
        }
        Ok(())
    }

    async fn send_iq_result(&mut self, id: &str) -> anyhow::Result<()> {
        let result = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "result")
            .attr("id", id.to_string())
            .build();
        self.channel.send(&result).await
    }

    async fn send_iq_error(&mut self, id: &str, code: u16, text: &str) -> anyhow::Result<()> {
        let error = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "error")
            .attr("id", id.to_string())
            .children([NodeBuilder::new("error")
                .attr("code", code.to_string())
                .attr("text", text.to_string())
                .build()])
            .build();
        self.channel.send(&error).await
    }

    /// The phone links `companion` as a new device: `<pair-success>`,
    /// answered by `<pair-device-sign>`, then the 515 restart.
    async fn send_pair_success(&mut self, companion: phone::Companion) -> anyhow::Result<()> {
        let device = self.inner.next_device();
        let id = self.inner.next_id();
        self.pairing_iq = Some(id.clone());
        let node = self.inner.phone.pair_success(&companion, device, &id)?;
        self.channel.send(&node).await?;
        self.inner.emit(SimEvent::Paired {
            conn: self.conn,
            device,
            pairing_ref: companion.pairing_ref,
        });
        Ok(())
    }

    /// A copy of the keys the device logged in here uploaded, if any.
    fn uploaded_keys(&self) -> Option<UploadedKeys> {
        let keys = self
            .inner
            .keys
            .lock()
            .unwrap()
            .get(&self.device?)
            .cloned()?;
        let keys = keys.lock().unwrap().clone();
        Some(keys)
    }

    /// The `<list>` answering a pre-key fetch: a bundle for each person the
    /// server knows, a 406 for anyone else.
    async fn bundles(&self, wanted: &Node) -> Node {
        let mut contacts = self.inner.contacts.lock().await;
        let users = wanted
            .children()
            .unwrap_or_default()
            .iter()
            .filter_map(|user| attr(user, "jid"))
            .map(|jid| {
                let digits = jid.split(['@', ':']).next().unwrap_or_default().to_string();
                let lid = self.inner.people.lock().unwrap().get(&digits).cloned();
                match lid.and_then(|lid| contacts.get_mut(&lid)) {
                    Some(contact) => contact.bundle(&jid),
                    None => NodeBuilder::new("user")
                        .attr("jid", jid)
                        .children([NodeBuilder::new("error").attr("code", "406").build()])
                        .build(),
                }
            })
            .collect::<Vec<_>>();
        NodeBuilder::new("list").children(users).build()
    }

    /// A receipt from the client: of a message we delivered (it leaves the
    /// queue), a retry receipt asking for one again (it stays queued, and
    /// goes out readable if it went out unreadable on purpose), or the
    /// receipt of a call's `<offer>` (the call rings there).
    async fn on_receipt(&mut self, node: &Node) {
        if let Some(offer) = node.get_optional_child("offer") {
            self.inner.emit(SimEvent::CallRinging {
                conn: self.conn,
                call_id: attr(offer, "call-id").unwrap_or_default(),
            });
            return;
        }
        let Some(id) = attr(node, "id") else { return };
        if attr(node, "type").is_some_and(|t| t == "retry") {
            self.inner.emit(SimEvent::RetryReceipt {
                conn: self.conn,
                id: id.clone(),
            });
            let Some(device) = self.device else { return };
            match self.inner.resend(device, &id).await {
                Ok(true) => self.inner.emit(SimEvent::Resent {
                    conn: self.conn,
                    id,
                }),
                Ok(false) => {}
                Err(e) => tracing::warn!("simulated sender: cannot resend {id}: {e:#}"),
            }
            return;
        }
        if let Some(device) = self.device
            && let Some(queue) = self.inner.unreceipted.lock().unwrap().get_mut(&device)
        {
            queue.retain(|(queued, _)| *queued != id);
        }
        self.inner.emit(SimEvent::Receipt {
            conn: self.conn,
            id,
        });
    }

    /// Call signalling from the client (whatsapp-rust declines a call with
    /// `<call to=caller id=…><reject call-id=… call-creator=… count="0"/>`,
    /// and expects no answer): a rejection is recorded; the server acks
    /// every `<call>` as the real one does, which the client may ignore.
    async fn take_call(&mut self, call: &Node) -> anyhow::Result<()> {
        let action = call.children().and_then(|c| c.first()).cloned();
        if let Some(reject) = action.as_ref().filter(|a| a.tag == "reject") {
            let call_id = attr(reject, "call-id").unwrap_or_default();
            self.inner
                .rejected_calls
                .lock()
                .unwrap()
                .push(call_id.clone());
            self.inner.emit(SimEvent::CallRejected {
                conn: self.conn,
                call_id,
            });
        }
        let Some(id) = attr(call, "id") else {
            return Ok(());
        };
        let mut ack = NodeBuilder::new("ack")
            .attr("class", "call")
            .attr("id", id)
            .attr("from", attr(call, "to").unwrap_or_default());
        if let Some(action) = &action {
            ack = ack.attr("type", action.tag.to_string());
        }
        self.channel.send(&ack.build()).await
    }

    /// A message the client sends: each person it is for decrypts their
    /// copy; the server acknowledges it.
    async fn take_outgoing(&mut self, message: &Node) -> anyhow::Result<()> {
        let id = attr(message, "id").unwrap_or_default();
        self.inner.sent_by_client.lock().unwrap().insert(id.clone());
        let sender = wacore::libsignal::protocol::ProtocolAddress::new(
            &format!("{}:{}", self.inner.phone.pn, self.device.unwrap_or(0)),
            0.into(),
        );
        let copies = message
            .get_optional_child("participants")
            .and_then(Node::children)
            .unwrap_or_default()
            .to_vec();
        for to in copies.iter().filter(|c| c.tag == "to") {
            let Some(jid) = attr(to, "jid") else { continue };
            let digits = jid.split(['@', ':']).next().unwrap_or_default().to_string();
            let Some(lid) = self.inner.people.lock().unwrap().get(&digits).cloned() else {
                continue;
            };
            let Some(enc) = to.get_optional_child("enc") else {
                continue;
            };
            let (Some(NodeContent::Bytes(ciphertext)), Some(kind)) =
                (&enc.content, attr(enc, "type"))
            else {
                continue;
            };
            let decrypted = {
                let mut contacts = self.inner.contacts.lock().await;
                let contact = contacts.get_mut(&lid).expect("known people have a contact");
                contact.decrypt(&sender, &kind, ciphertext).await?
            };
            let document = decrypted.document_message.as_option().and_then(|doc| {
                let blob = self.inner.media.get(doc.direct_path.as_deref()?)?;
                let bytes = wacore::download::DownloadUtils::verify_and_decrypt(
                    &blob,
                    doc.media_key.as_deref()?,
                    wacore::download::MediaType::Document,
                )
                .ok()?;
                Some((
                    doc.mimetype.clone().unwrap_or_default(),
                    doc.file_name.clone().unwrap_or_default(),
                    bytes,
                ))
            });
            let text = decrypted
                .conversation
                .clone()
                .or_else(|| {
                    decrypted
                        .document_message
                        .as_option()
                        .and_then(|d| d.caption.clone())
                })
                .unwrap_or_default();
            self.inner.emit(SimEvent::MessageToPerson {
                conn: self.conn,
                id: id.clone(),
                document,
                text,
                to: self
                    .inner
                    .people
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(k, v)| **v == lid && **k != lid)
                    .map_or(digits.clone(), |(pn, _)| pn.clone()),
            });
        }
        let to = attr(message, "to").unwrap_or_default();
        let now = chrono::Utc::now().timestamp().to_string();
        let ack = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.clone())
            .attr("from", to.clone())
            .attr("t", now.clone())
            .build();
        self.channel.send(&ack).await?;
        // The person's phone got it, then they read it.
        for kind in [None, Some("read")] {
            let mut receipt = NodeBuilder::new("receipt")
                .attr("id", id.clone())
                .attr("from", to.clone())
                .attr("t", now.clone());
            if let Some(kind) = kind {
                receipt = receipt.attr("type", kind);
            }
            self.channel.send(&receipt.build()).await?;
        }
        Ok(())
    }

    /// Carries out a test's request; true ends the connection.
    async fn on_action(&mut self, action: Action) -> anyhow::Result<bool> {
        match action {
            Action::Scan(payload) => {
                self.send_pair_success(phone::scan(&payload)?).await?;
                Ok(false)
            }
            Action::EnterPairCode(code) => {
                let Some(request) = self.code_request.clone() else {
                    return Ok(false);
                };
                // Two PBKDF2 derivations: off the async threads.
                let attempt =
                    tokio::task::spawn_blocking(move || link_code::type_code(&request, &code))
                        .await??;
                let hello =
                    link_code::primary_hello(&self.inner.phone, &attempt, &self.inner.next_id());
                self.channel.send(&hello).await?;
                self.inner.emit(SimEvent::PrimaryHelloSent {
                    conn: self.conn,
                    pairing_ref: attempt.pairing_ref.clone(),
                });
                self.code_attempt = Some(attempt);
                Ok(false)
            }
            Action::DemandPasskey => {
                let request = link_code::passkey_request(&self.inner.next_id());
                self.channel.send(&request).await?;
                self.inner
                    .emit(SimEvent::PasskeyDemanded { conn: self.conn });
                Ok(false)
            }
            Action::Failure {
                reason,
                ban_code,
                expire_secs,
            } => {
                self.fail(reason, ban_code, expire_secs).await?;
                Ok(true)
            }
            Action::StreamError { code } => {
                self.stream_error(&code).await?;
                Ok(true)
            }
            Action::Replaced => {
                self.replaced().await?;
                Ok(true)
            }
            Action::Close => Ok(true),
            Action::Mute => {
                self.muted = true;
                Ok(false)
            }
            Action::Deliver(stanza) => {
                self.channel.send(&stanza).await?;
                Ok(false)
            }
            Action::Ping => {
                let id = self.inner.next_id();
                let ping = NodeBuilder::new("iq")
                    .attr("from", SERVER)
                    .attr("type", "get")
                    .attr("xmlns", "urn:xmpp:ping")
                    .attr("id", id.clone())
                    .build();
                self.pings.insert(id, std::time::Instant::now());
                self.channel.send(&ping).await?;
                Ok(false)
            }
        }
    }

    async fn fail(
        &mut self,
        reason: u16,
        ban_code: Option<u16>,
        expire_secs: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut failure = NodeBuilder::new("failure")
            .attr("reason", reason.to_string())
            .attr("location", "sim");
        if let Some(code) = ban_code {
            failure = failure.attr("code", code.to_string());
        }
        if let Some(expire) = expire_secs {
            failure = failure.attr("expire", expire.to_string());
        }
        self.channel.send(&failure.build()).await?;
        // Closing now could reset the socket under the failure (unread
        // client bytes make the kernel send RST): let the client close.
        self.await_client_close().await;
        Ok(())
    }

    async fn stream_error(&mut self, code: &str) -> anyhow::Result<()> {
        let node = NodeBuilder::new("stream:error")
            .attr("code", code.to_string())
            .build();
        self.end_stream_with(node).await
    }

    async fn replaced(&mut self) -> anyhow::Result<()> {
        let node = NodeBuilder::new("stream:error")
            .children([NodeBuilder::new("conflict")
                .attr("type", "replaced")
                .build()])
            .build();
        self.end_stream_with(node).await
    }

    /// Sends `error`, then ends the stream as the real server does, and lets
    /// the client close the socket: it reads the error before the end, so
    /// its report of the error never races the close.
    async fn end_stream_with(&mut self, error: Node) -> anyhow::Result<()> {
        self.channel.send(&error).await?;
        self.channel
            .send(&NodeBuilder::new("xmlstreamend").build())
            .await?;
        self.await_client_close().await;
        Ok(())
    }

    /// Reads (and drops) what the client still sends until it closes the
    /// socket; a client that does not gets it closed by the caller.
    async fn await_client_close(&mut self) {
        let client_closed = async { while self.channel.recv().await.is_ok() {} };
        let _ = tokio::time::timeout(CLIENT_CLOSE_GRACE, client_closed).await;
    }
}

fn attr(node: &Node, name: &str) -> Option<String> {
    node.attrs.get(name).map(|v| v.to_string())
}

/// The pairing ref a stage of pairing by code echoes.
fn link_code_ref(reg: &Node) -> Option<String> {
    match &reg.get_optional_child("link_code_pairing_ref")?.content {
        Some(NodeContent::Bytes(b)) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// "Nothing new" for every collection an app-state sync asks about.
fn up_to_date(request: &Node) -> Node {
    let collections = request
        .children()
        .into_iter()
        .flatten()
        .filter(|c| c.tag == "sync")
        .flat_map(|sync| sync.children().into_iter().flatten())
        .filter(|c| c.tag == "collection")
        .map(|c| {
            NodeBuilder::new("collection")
                .attr("name", attr(c, "name").unwrap_or_default())
                .attr("version", attr(c, "version").unwrap_or_else(|| "0".into()))
                .build()
        });
    NodeBuilder::new("sync").children(collections).build()
}

/// A 1:1 message as the server delivers it, naming the sender per
/// `addressing`.
pub fn message_stanza(
    id: &str,
    from: &Person,
    addressing: Addressing,
    kind: &str,
    ciphertext: Vec<u8>,
    edit: Option<&str>,
) -> Node {
    let mut message = NodeBuilder::new("message")
        .attr("id", id.to_string())
        .attr("type", "text")
        .attr("t", chrono::Utc::now().timestamp().to_string())
        .attr("notify", from.name.clone());
    if let Some(edit) = edit {
        message = message.attr("edit", edit.to_string());
    }
    message = match addressing {
        Addressing::Pn => message.attr("from", format!("{}@s.whatsapp.net", from.pn)),
        Addressing::LidWithPn => message
            .attr("from", format!("{}@lid", from.lid))
            .attr("sender_pn", format!("{}@s.whatsapp.net", from.pn)),
        Addressing::LidHidden => message.attr("from", format!("{}@lid", from.lid)),
    };
    message
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind.to_string())
            .bytes(ciphertext)
            .build()])
        .build()
}

/// A group message as the server delivers it: `participant` names the
/// sender per `addressing`, with the sender key in a 1:1 `enc` beside the
/// group's `skmsg`.
pub fn group_message_stanza(
    id: &str,
    group: &str,
    from: &Person,
    addressing: Addressing,
    (pairwise, pairwise_kind): (Vec<u8>, &str),
    group_ciphertext: Vec<u8>,
    edit: Option<&str>,
) -> Node {
    let mut message = NodeBuilder::new("message")
        .attr("id", id.to_string())
        .attr("from", group.to_string())
        .attr("type", "text")
        .attr("t", chrono::Utc::now().timestamp().to_string())
        .attr("notify", from.name.clone());
    if let Some(edit) = edit {
        message = message.attr("edit", edit.to_string());
    }
    message = match addressing {
        Addressing::Pn => message
            .attr("participant", format!("{}@s.whatsapp.net", from.pn))
            .attr("addressing_mode", "pn"),
        Addressing::LidWithPn => message
            .attr("participant", format!("{}@lid", from.lid))
            .attr("participant_pn", format!("{}@s.whatsapp.net", from.pn))
            .attr("addressing_mode", "lid"),
        Addressing::LidHidden => message
            .attr("participant", format!("{}@lid", from.lid))
            .attr("addressing_mode", "lid"),
    };
    let enc = |kind: &str, bytes: Vec<u8>| {
        NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind.to_string())
            .bytes(bytes)
            .build()
    };
    message
        .children([enc(pairwise_kind, pairwise), enc("skmsg", group_ciphertext)])
        .build()
}

/// A ringing call as the server relays it, in the shape whatsapp-rust's
/// `parse_call_stanza` reads (`Event::IncomingCall` with
/// `CallAction::Offer`): `<call from id t notify platform version>` around
/// `<offer call-id call-creator [caller_pn]>` with the caller's audio
/// codecs, and `<video/>` for a video call. The caller is named per
/// `addressing`, the number beside a LID as `caller_pn`. No `<enc>` (the
/// call key) nor relays: nobody can answer it, which a bridge does not.
pub fn call_offer_stanza(
    stanza_id: &str,
    call_id: &str,
    from: &Person,
    addressing: Addressing,
    video: bool,
) -> Node {
    let pn = format!("{}@s.whatsapp.net", from.pn);
    let caller = match addressing {
        Addressing::Pn => pn.clone(),
        Addressing::LidWithPn | Addressing::LidHidden => format!("{}@lid", from.lid),
    };
    let mut offer = NodeBuilder::new("offer")
        .attr("call-id", call_id.to_string())
        .attr("call-creator", caller.clone());
    if addressing == Addressing::LidWithPn {
        offer = offer.attr("caller_pn", pn);
    }
    let audio = |rate: &str| {
        NodeBuilder::new("audio")
            .attr("enc", "opus")
            .attr("rate", rate.to_string())
            .build()
    };
    let mut media = vec![audio("16000"), audio("8000")];
    if video {
        media.push(NodeBuilder::new("video").build());
    }
    NodeBuilder::new("call")
        .attr("from", caller)
        .attr("id", stanza_id.to_string())
        .attr("t", chrono::Utc::now().timestamp().to_string())
        .attr("notify", from.name.clone())
        .attr("platform", "android")
        .attr("version", "2.25.37.76")
        .children([offer.children(media).build()])
        .build()
}

/// `<group>` as the server describes a LID-addressed group, each member's
/// number included, admins marked.
fn group_info(
    group: &str,
    subject: &str,
    members: &[Person],
    is_admin: impl Fn(&Person) -> bool,
) -> Node {
    NodeBuilder::new("group")
        .attr("id", group.trim_end_matches("@g.us").to_string())
        .attr("subject", subject.to_string())
        .attr("addressing_mode", "lid")
        .attr("creation", "1764000000")
        .attr("s_t", "1764000000")
        .children(members.iter().map(|m| {
            let participant = NodeBuilder::new("participant")
                .attr("jid", format!("{}@lid", m.lid))
                .attr("phone_number", format!("{}@s.whatsapp.net", m.pn));
            if is_admin(m) {
                participant.attr("type", "admin").build()
            } else {
                participant.build()
            }
        }))
        .build()
}
