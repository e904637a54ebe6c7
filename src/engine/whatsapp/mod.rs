//! The only module that names whatsapp-rust types: builds a client over a
//! session's SQLite store and translates the library's events into
//! [`WaEvent`]s, in order (the handler runs inline on the dispatch path).
//! Incoming messages go through `inbound` (the durability hook).

mod cert_guard;
mod client_caches;
mod connect_errors;
mod content;
mod group_info;
mod inbound;
mod keepalive;
mod pg_backend;
pub mod pg_store;
mod query;
mod send;
mod store_config;

pub use cert_guard::certificate_chain_is_verified;
pub use connect_errors::note as note_library_error;
pub use pg_backend::{FenceSource, PgBackend};

use std::sync::{Arc, Mutex, OnceLock, Weak};

use whatsapp_rust::bot::Bot;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::{Client, Event, EventHandler, SqliteStore};
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::types::events::{ConnectFailureReason, UndecryptableMessage};
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;

use super::backend::{
    Answer, EventSink, OpenError, OpenOptions, Outgoing, Query, Sent, WaBackend, WaClient, WaEvent,
};
use super::close::CloseSignal;
use super::liveness::Liveness;
use crate::media_store::MediaStore;
use crate::paths::SessionId;
use crate::session_files::SessionFiles;

/// Connection settings shared by every session.
#[derive(Clone)]
pub struct WhatsAppBackend {
    pub ws_url: String,
    /// Pinned WhatsApp Web version; `None` fetches the current one on connect.
    pub version: Option<(u32, u32, u32)>,
    /// Incoming media above this many bytes is forwarded as metadata only.
    pub media_cap: u64,
    /// Where media goes for sessions whose webhook carries URLs; `None`:
    /// those sessions get base64 like the others.
    pub media_store: Option<Arc<MediaStore>>,
    /// The HTTP client for media up- and downloads (and the version fetch);
    /// `None` is the library's own. Tests put the simulator's media host
    /// here, as the WebSocket URL points at its server.
    pub http: Option<Arc<dyn HttpClient>>,
    /// When a connection that answers nothing is given up.
    pub liveness: Liveness,
}

impl std::fmt::Debug for WhatsAppBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppBackend")
            .field("ws_url", &self.ws_url)
            .field("version", &self.version)
            .field("media_cap", &self.media_cap)
            .field("http", &self.http.as_ref().map(|_| "custom"))
            .field("liveness", &self.liveness)
            .finish()
    }
}

/// A shared HTTP client handed to the library's builder.
struct SharedHttp(Arc<dyn HttpClient>);

#[whatsapp_rust::async_trait]
impl HttpClient for SharedHttp {
    async fn execute(&self, request: HttpRequest) -> whatsapp_rust::anyhow::Result<HttpResponse> {
        self.0.execute(request).await
    }

    // Downloads stream through the inner client when it can, so that the
    // media cap stops a download early instead of after it was all read.
    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: HttpRequest,
    ) -> whatsapp_rust::anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }
}

#[derive(Clone)]
pub struct WhatsAppClient {
    client: Arc<Client>,
    /// The bot until its first run: `Bot::run` also starts the client's
    /// background workers, later runs call `Client::run` directly.
    bot: Arc<Mutex<Option<Bot>>>,
    /// The session's event channel, for what the library only logs.
    events: EventSink,
    liveness: Liveness,
    /// Asked before every connection: false stops it before it starts (a
    /// clustered host whose lease on the session ended; `PgBackend`).
    may_connect: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl WaBackend for WhatsAppBackend {
    type Client = WhatsAppClient;

    async fn server_reachable(&self, within: std::time::Duration) -> bool {
        let Some(address) = server_address(&self.ws_url) else {
            return false;
        };
        let connect = tokio::net::TcpStream::connect(address);
        matches!(tokio::time::timeout(within, connect).await, Ok(Ok(_)))
    }

    async fn open(
        &self,
        files: &SessionFiles,
        options: OpenOptions,
        events: EventSink,
    ) -> Result<WhatsAppClient, OpenError> {
        let path = files.store_path();
        let path = path.to_str().ok_or_else(|| {
            OpenError::Other(format!("store path {} is not UTF-8", path.display()))
        })?;
        let store = SqliteStore::with_config(path, store_config::session_store_config())
            .await
            .map_err(|e| store_error(error_chain(&e)))?;
        self.open_over(&files.id, Arc::new(store), options, events)
            .await
    }
}

impl WhatsAppBackend {
    /// A client over `store`, whichever backend holds it (the session's
    /// SQLite file, or the shared PostgreSQL schema: `PgBackend`).
    async fn open_over(
        &self,
        id: &SessionId,
        store: Arc<dyn Backend>,
        options: OpenOptions,
        events: EventSink,
    ) -> Result<WhatsAppClient, OpenError> {
        let hook = options.inbound.map(|sink| inbound::DurabilityHook {
            session: id.clone(),
            sink,
            groups: Arc::new(group_info::GroupCache::default()),
            media_cap: self.media_cap,
            media_store: self.media_store.clone(),
        });
        let forwarder = Forwarder {
            sink: events.clone(),
            client: Arc::new(OnceLock::new()),
            hook: hook.clone(),
        };
        let client_slot = forwarder.client.clone();
        let mut builder = Bot::builder()
            .with_backend_arc(store)
            .with_cache_config(client_caches::client_cache_config())
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(&self.ws_url))
            .with_event_handler(forwarder);
        if let Some(http) = &self.http {
            builder = builder.with_http_client(SharedHttp(http.clone()));
        }
        if let Some(version) = self.version {
            builder = builder.with_version(version);
        }
        if let Some(hook) = hook {
            builder = builder.with_inbound_durability_hook(hook);
        }
        if let Some(phone) = options.pair_phone {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: phone,
                ..PairCodeOptions::default()
            });
        }
        let bot = builder.build().await.map_err(|e| match e {
            whatsapp_rust::bot::BotBuilderError::Store(e) => store_error(error_chain(&e)),
            other => OpenError::Other(other.to_string()),
        })?;
        let client = bot.client();
        // We own the reconnect loop: the library's own (Fibonacci up to
        // 900 s, emitting nothing on a failed connect) would hide the real
        // schedule from the operator.
        client
            .enable_auto_reconnect
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = client_slot.set(Arc::downgrade(&client));
        Ok(WhatsAppClient {
            client,
            bot: Arc::new(Mutex::new(Some(bot))),
            events,
            liveness: self.liveness,
            may_connect: None,
        })
    }
}

/// An error and its causes, "outer: inner: innermost" (the store's own
/// message is only "database connection error"; SQLite's verdict is inside).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Only SQLite's own verdict that the file is not (or no longer) a sound
/// database moves a store aside. A full disk, a permission problem, too many
/// open files or a lock are the machine's trouble, not the store's: backing
/// off and retrying keeps the credentials, where moving aside would cost a
/// QR rescan.
fn store_error(message: String) -> OpenError {
    const CORRUPTION: [&str; 3] = [
        "file is not a database",           // SQLITE_NOTADB
        "database disk image is malformed", // SQLITE_CORRUPT
        "malformed database schema",
    ];
    let lower = message.to_ascii_lowercase();
    if CORRUPTION.iter().any(|sign| lower.contains(sign)) {
        OpenError::StoreUnreadable(message)
    } else {
        OpenError::Other(format!("session store cannot be opened now: {message}"))
    }
}

impl WaClient for WhatsAppClient {
    async fn run(&self) {
        if self.may_connect.as_ref().is_some_and(|may| !may()) {
            let detail = "this host no longer holds the session's lease".to_string();
            let _ = self
                .events
                .send(WaEvent::Closed(CloseSignal::SocketClosed { detail }));
            return;
        }
        let bot = self.bot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let run = connect_errors::capture(async {
            match bot {
                Some(bot) => bot.run().await,
                None => self.client.run().await,
            }
        });
        tokio::pin!(run);
        let failure = tokio::select! {
            failure = &mut run => failure,
            silent_for = keepalive::until_silent(&self.client, self.liveness, &self.events) => {
                // Said first, so the close the disconnect causes does not
                // pass for the reason.
                let _ = self.events.send(WaEvent::Closed(CloseSignal::NoAnswer { silent_for }));
                self.client.disconnect().await;
                run.await
            }
        };
        if let Some(connect_errors::ConnectFailure::CertificateInvalid(detail)) = failure {
            let _ = self
                .events
                .send(WaEvent::Closed(CloseSignal::CertificateInvalid { detail }));
        }
    }

    fn is_registered(&self) -> bool {
        self.client.pn().is_some()
    }

    async fn disconnect(&self) {
        self.client.disconnect().await;
    }

    async fn logout(&self) {
        self.client.logout().await;
    }

    async fn send(&self, message: Outgoing) -> Result<Sent, String> {
        send::send(&self.client, message).await
    }

    async fn query(&self, query: Query) -> Result<Answer, String> {
        query::answer(&self.client, query).await
    }
}

struct Forwarder {
    sink: EventSink,
    /// Set right after the client is built; weak, because the client owns
    /// this handler.
    client: Arc<OnceLock<Weak<Client>>>,
    /// Forwards messages the library could not decrypt, as notices.
    hook: Option<inbound::DurabilityHook>,
}

impl Forwarder {
    /// Logs it and queues a notice for the webhook (off the event path: the
    /// sender's number may need a store lookup). The library has already
    /// asked the sender to resend; a readable resend follows as a message.
    fn forward_unreadable(&self, undecryptable: &UndecryptableMessage) {
        let info = undecryptable.info.clone();
        let reason = if undecryptable.is_unavailable {
            format!(
                "unavailable on this device ({:?})",
                undecryptable.unavailable_type
            )
        } else {
            "could not be decrypted; the sender's phone was asked to resend it".to_string()
        };
        tracing::warn!(
            "Undecryptable message {} from {}: {reason}",
            info.id,
            info.source.sender
        );
        let (Some(hook), Some(client)) =
            (self.hook.clone(), self.client.get().and_then(Weak::upgrade))
        else {
            return;
        };
        tokio::spawn(async move { hook.forward_unreadable(&client, &info, &reason).await });
    }

    /// A call: answered per the session's policy and forwarded, off the
    /// event path (rejecting and replying go over the connection).
    fn forward_call(&self, call: &whatsapp_rust::wacore::types::call::IncomingCall) {
        let (Some(hook), Some(client)) =
            (self.hook.clone(), self.client.get().and_then(Weak::upgrade))
        else {
            return;
        };
        let call = call.clone();
        tokio::spawn(async move { hook.forward_call(&client, &call).await });
    }

    fn own_ids(&self) -> (Option<String>, Option<String>) {
        let Some(client) = self.client.get().and_then(Weak::upgrade) else {
            return (None, None);
        };
        (
            client.pn().map(|j| j.user.to_string()),
            client.lid().map(|j| j.user.to_string()),
        )
    }
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        match &*event {
            Event::UndecryptableMessage(undecryptable) => {
                self.forward_unreadable(undecryptable);
                return;
            }
            Event::IncomingCall(call) => {
                self.forward_call(call);
                return;
            }
            _ => {}
        }
        if let Some(event) = self.translate(&event) {
            // The supervisor gone means the session is stopping: nothing to do.
            let _ = self.sink.send(event);
        }
    }
}

impl Forwarder {
    fn translate(&self, event: &Event) -> Option<WaEvent> {
        Some(match event {
            Event::PairingQrCode(qr) => WaEvent::QrCode {
                payload: qr.code.clone(),
                valid_for: qr.timeout,
            },
            Event::PairingCode(code) => WaEvent::PairCode {
                code: code.code.clone(),
                valid_for: code.timeout,
            },
            Event::PairPasskeyRequest(_) => WaEvent::PasskeyRequired,
            Event::PairSuccess(pair) => WaEvent::PairSuccess {
                phone: pair.id.user.to_string(),
                lid: Some(pair.lid.user.to_string()).filter(|l| !l.is_empty()),
            },
            Event::PairError(error) => {
                tracing::error!("pairing failed: {}", error.error);
                return None;
            }
            Event::Connected(_) => {
                let (phone, lid) = self.own_ids();
                WaEvent::Connected { phone, lid }
            }
            Event::LoggedOut(out) => WaEvent::Closed(CloseSignal::LoggedOut {
                code: logout_code(out),
            }),
            Event::TemporaryBan(ban) => WaEvent::Closed(CloseSignal::TemporaryBan {
                code: ban.code.code(),
                lifts_in: ban.expire.to_std().unwrap_or_default(),
            }),
            Event::ClientOutdated(_) => WaEvent::Closed(CloseSignal::ClientOutdated),
            Event::StreamReplaced(_) => WaEvent::Closed(CloseSignal::Replaced),
            Event::ConnectFailure(failure) => WaEvent::Closed(CloseSignal::ConnectFailure {
                code: u16::try_from(failure.reason.code()).unwrap_or(0),
            }),
            Event::StreamError(error) => WaEvent::StreamError {
                code: error.code.clone(),
            },
            Event::Disconnected(closed) => WaEvent::Closed(CloseSignal::SocketClosed {
                detail: closed.reason.to_string(),
            }),
            Event::Receipt(receipt) => WaEvent::MessageStatus {
                status: match receipt.r#type {
                    ReceiptType::Delivered => "Delivered",
                    ReceiptType::Read | ReceiptType::Played => "Read",
                    ReceiptType::Sent => "Sent",
                    _ => return None,
                },
                message_ids: receipt
                    .message_ids
                    .iter()
                    .map(|id| id.to_string())
                    .collect(),
                timestamp_ms: receipt.timestamp.timestamp_millis(),
            },
            Event::ServerAck(ack)
                if ack.class.as_deref() == Some("message") && ack.error.is_none() =>
            {
                WaEvent::MessageStatus {
                    status: "Sent",
                    message_ids: vec![ack.id.clone()],
                    timestamp_ms: ack.timestamp.map_or_else(
                        || chrono::Utc::now().timestamp_millis(),
                        |t| t.timestamp_millis(),
                    ),
                }
            }
            Event::PairingQrCodesExhausted(exhausted) if exhausted.disconnected => {
                WaEvent::Closed(CloseSignal::QrCodesExhausted)
            }
            Event::OfflineSyncPreview(preview) if preview.total > 0 => {
                WaEvent::OfflineSyncAnnounced {
                    items: preview.total.unsigned_abs(),
                }
            }
            Event::OfflineSyncCompleted(_) => WaEvent::OfflineSyncDone,
            _ => return None,
        })
    }
}

/// 401 for "logged out"/"device removed" (stream 516 keeps its own code so
/// the log says which), 403 locked, 406 unknown.
fn logout_code(out: &whatsapp_rust::types::events::LoggedOut) -> u16 {
    let stream_code = out
        .raw
        .as_ref()
        .filter(|raw| raw.tag == "stream:error")
        .and_then(|raw| raw.attrs.get("code").map(|c| c.to_string()))
        .and_then(|c| c.parse().ok());
    match (&out.reason, stream_code) {
        (ConnectFailureReason::LoggedOut, Some(516)) => 516,
        (reason, _) => u16::try_from(reason.code()).unwrap_or(401),
    }
}

/// `host:port` of a `ws://` or `wss://` URL (the scheme's port when none is
/// given), for the reachability probe.
fn server_address(ws_url: &str) -> Option<String> {
    let (scheme, rest) = ws_url.split_once("://")?;
    let default_port = match scheme {
        "wss" => 443,
        "ws" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?']).next()?;
    // "host:port", "[v6]:port", or a bare host.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && !port.contains(']'));
    Some(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    })
}

#[cfg(test)]
mod address_tests {
    use super::server_address;

    #[test]
    fn the_probe_targets_the_servers_host_and_port() {
        assert_eq!(
            server_address("wss://web.whatsapp.com/ws/chat").as_deref(),
            Some("web.whatsapp.com:443")
        );
        assert_eq!(
            server_address("ws://10.231.0.1:40123/ws/chat").as_deref(),
            Some("10.231.0.1:40123")
        );
        assert_eq!(
            server_address("wss://[::1]:8443/ws").as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(
            server_address("wss://[::1]/ws").as_deref(),
            Some("[::1]:443")
        );
        assert_eq!(server_address("http://x/ws"), None);
    }
}
