//! Publishing to JetStream: one connection per process, shared by every
//! session's delivery worker; one publish per delivery, awaited until the
//! stream acknowledges it (only then does the outbox let the row go).
//!
//! The delivery id travels as `Nats-Msg-Id`: a resend after a lost ack or
//! a crash is dropped by the stream's duplicate window (JetStream answers
//! `duplicate`, which is a success here). The body is the webhook's; the
//! headers say the session, the event and the delivery id, so a consumer
//! can route without parsing the body.

use std::error::Error as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;

use super::subject::subject;
use crate::webhook::deliver::{DeliveryVerdict, Transport, wall_clock_ms};
use crate::webhook::outbox::Delivery;

/// How to reach the server (`[nats]` in the config).
#[derive(Clone)]
pub struct NatsSettings {
    /// `nats://host:port` or `tls://host:port`; several separated by commas.
    /// `user:password@` in it is used, never logged.
    pub url: String,
    /// The prefix of sessions that name none of their own.
    pub subject_prefix: String,
    /// A `.creds` file (JWT and nkey seed).
    pub credentials: Option<std::path::PathBuf>,
    /// Trust only this CA for the server's certificate (turns TLS on).
    pub tls_ca: Option<std::path::PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// How long a publish waits for the stream's ack before it is retried.
    pub ack_timeout: Duration,
}

/// What the target knows of its own health, for `/health` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Unix ms of the last publish the stream acknowledged.
    pub last_success_ms: Option<i64>,
    /// The last failure and its unix ms; cleared by nothing (a success
    /// after it shows by its newer time).
    pub last_error: Option<(i64, String)>,
}

/// The JetStream target of every session.
pub struct JetStream {
    client: async_nats::Client,
    /// Whether the connection is up, as the client's events say; the
    /// delivery workers wait on it while it is down.
    up: tokio::sync::watch::Receiver<bool>,
    context: async_nats::jetstream::Context,
    subject_prefix: String,
    health: Arc<Mutex<Health>>,
}

impl JetStream {
    /// Connects in the background: wabridge starts (and queues in its
    /// outbox) while the server is down, and publishes once it is up. Bad
    /// settings (an unreadable credentials file) are refused now.
    pub async fn connect(settings: &NatsSettings) -> Result<JetStream, String> {
        let shown = shown_url(&settings.url);
        let (servers, login) = split_login(&settings.url);
        let (up_tx, up) = tokio::sync::watch::channel(false);
        let health = Arc::new(Mutex::new(Health::default()));
        let client = connect_options(settings, login)
            .await?
            .name("wabridge")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .event_callback(event_logger(shown.clone(), up_tx, health.clone()))
            .connect(servers.as_str())
            .await
            .map_err(|e| format!("cannot use the NATS server {shown}: {e}"))?;
        let mut context = async_nats::jetstream::new(client.clone());
        context.set_timeout(settings.ack_timeout);
        Ok(JetStream {
            client,
            up,
            context,
            subject_prefix: settings.subject_prefix.clone(),
            health,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, verdict: &DeliveryVerdict) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let now = wall_clock_ms();
        match verdict {
            DeliveryVerdict::Delivered => health.last_success_ms = Some(now),
            DeliveryVerdict::Retry(e) | DeliveryVerdict::Dead(e) => {
                health.last_error = Some((now, e.clone()));
            }
            DeliveryVerdict::TooLarge => {}
        }
    }

    async fn publish(&self, prefix: &str, delivery: &Delivery) -> DeliveryVerdict {
        // While disconnected the client would queue the publish and send it
        // on reconnect, after its ack had timed out here and the retry had
        // queued another copy: the outbox keeps it instead, once.
        if !self.is_connected() {
            return DeliveryVerdict::Retry("not connected to the NATS server".into());
        }
        let Some((session, event)) = session_and_event(&delivery.body) else {
            return DeliveryVerdict::Dead("the body names no session or event".into());
        };
        let subject = subject(prefix, &session, &event);
        let message = PublishMessage::build()
            .payload(delivery.body.clone().into())
            .message_id(&delivery.delivery_id)
            .header("Wabridge-Session", session.as_str())
            .header("Wabridge-Event", event.as_str())
            .header("Wabridge-Delivery", delivery.delivery_id.as_str());
        let acked = async {
            self.context
                .send_publish(subject.clone(), message)
                .await?
                .await
        }
        .await;
        match acked {
            Ok(_) => DeliveryVerdict::Delivered,
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                self.when_no_stream_answered(&subject).await
            }
            Err(e) => judge(&subject, &e),
        }
    }

    /// "No stream" (no responders) also comes from a server whose
    /// JetStream is starting or shutting down: the event is a dead letter
    /// only when JetStream itself says that no stream takes the subject.
    async fn when_no_stream_answered(&self, subject: &str) -> DeliveryVerdict {
        match self.context.stream_by_subject(subject).await {
            Err(e) if matches!(e.kind(), GetStreamByNameErrorKind::NotFound) => {
                DeliveryVerdict::Dead(no_stream(subject))
            }
            Ok(stream) => DeliveryVerdict::Retry(format!(
                "no stream took {subject} a moment ago; {stream} does now"
            )),
            Err(e) => DeliveryVerdict::Retry(format!("JetStream is not answering: {e}")),
        }
    }
}

impl Transport for JetStream {
    /// The session's subject prefix.
    type Target = String;
    const NAME: &'static str = "NATS";

    /// The session's own `nats_subject`, else the config's prefix; an
    /// empty one turns NATS off for the session.
    fn target_of(&self, settings: &crate::session_files::SessionSettings) -> Option<String> {
        match settings.nats_subject.as_deref() {
            Some("") => None,
            Some(prefix) => Some(prefix.to_string()),
            None => Some(self.subject_prefix.clone()),
        }
    }

    fn is_ready(&self) -> bool {
        self.is_connected()
    }

    fn until_ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let mut up = self.up.clone();
        Box::pin(async move {
            // The events may lag the client's own state: either will do.
            while !self.is_connected() {
                let waited = tokio::time::timeout(Duration::from_secs(1), up.changed()).await;
                // The client is gone for good: never ready again.
                if let Ok(Err(_)) = waited {
                    std::future::pending::<()>().await;
                }
            }
        })
    }

    fn send<'a>(
        &'a self,
        prefix: &'a String,
        delivery: &'a Delivery,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = DeliveryVerdict> + Send + 'a>> {
        Box::pin(async move {
            let verdict = self.publish(prefix, delivery).await;
            self.record(&verdict);
            verdict
        })
    }
}

/// How to log in and check the server: the credentials file, the login
/// in the URL (async-nats does not read it from there), TLS.
async fn connect_options(
    settings: &NatsSettings,
    login: Option<Login>,
) -> Result<async_nats::ConnectOptions, String> {
    let mut options = match &settings.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| format!("cannot read the NATS credentials {}: {e}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    options = match login {
        Some(Login::UserAndPassword(user, password)) => options.user_and_password(user, password),
        Some(Login::Token(token)) => options.token(token),
        None => options,
    };
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &settings.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

type EventFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>;

/// The client's events: logged (a failing server once per disconnection,
/// not at every attempt every few seconds), told to `up`, which the
/// delivery workers wait on, and errors kept in `health` (why the server
/// is not connected shows on `/health`).
fn event_logger(
    server: String,
    up: tokio::sync::watch::Sender<bool>,
    health: Arc<Mutex<Health>>,
) -> impl Fn(async_nats::Event) -> EventFuture + Send + Sync + 'static {
    let said = Arc::new(AtomicBool::new(false));
    let up = Arc::new(up);
    move |event| {
        let (server, said, up) = (server.clone(), said.clone(), up.clone());
        let health = health.clone();
        let remember = move |error: String| {
            let mut health = health.lock().unwrap_or_else(|p| p.into_inner());
            health.last_error = Some((wall_clock_ms(), error));
        };
        let future: EventFuture = Box::pin(async move {
            match event {
                async_nats::Event::Connected => {
                    said.store(false, Ordering::Relaxed);
                    up.send_replace(true);
                    tracing::info!("NATS: connected to {server}");
                }
                async_nats::Event::Disconnected => {
                    up.send_replace(false);
                    tracing::warn!("NATS: disconnected from {server}; reconnecting");
                }
                async_nats::Event::ClientError(e) => {
                    remember(format!("cannot reach the server: {e}"));
                    if !said.swap(true, Ordering::Relaxed) {
                        tracing::warn!("NATS: cannot reach {server}: {e}; trying again");
                    }
                }
                async_nats::Event::ServerError(e) => {
                    remember(format!("the server refused wabridge: {e}"));
                    if !said.swap(true, Ordering::Relaxed) {
                        tracing::error!("NATS: {server} refused wabridge: {e}");
                    }
                }
                other => tracing::info!("NATS: {other}"),
            }
        });
        future
    }
}

/// Credentials written in a server URL, as NATS clients read them.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// `nats://user:password@host`
    UserAndPassword(String, String),
    /// `nats://token@host`
    Token(String),
}

/// The servers of `url` (comma-separated) without the credentials written
/// in them, and those credentials (the first server's that has some;
/// percent-encoded characters decoded).
pub fn split_login(url: &str) -> (String, Option<Login>) {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut login = None;
    let servers: Vec<String> = url
        .split(',')
        .map(|server| {
            let server = server.trim();
            let Some((scheme, rest)) = server.split_once("://") else {
                return server.to_string();
            };
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else {
                return server.to_string();
            };
            let userinfo = &rest[..at];
            login.get_or_insert_with(|| match userinfo.split_once(':') {
                Some((user, password)) => Login::UserAndPassword(decode(user), decode(password)),
                None => Login::Token(decode(userinfo)),
            });
            format!("{scheme}://{}", &rest[at + 1..])
        })
        .collect();
    (servers.join(","), login)
}

/// `url` as logs and errors show it: the servers, never the user,
/// password or token written in it.
pub fn shown_url(url: &str) -> String {
    match split_login(url) {
        (servers, None) => servers,
        (servers, Some(_)) => format!("{servers} (with the login in the URL)"),
    }
}

/// The session and the event a body carries (`sessionId`, `event`).
fn session_and_event(body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "sessionId")]
        session: String,
        event: String,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    Some((envelope.session, envelope.event))
}

fn no_stream(subject: &str) -> String {
    format!("no JetStream stream takes the subject {subject}")
}

/// Pure: what a failed publish means for the delivery. What the stream
/// refuses for good is a dead letter (replayable once fixed: a stream for
/// the subject created, a limit raised); what may pass later is retried.
pub fn judge(subject: &str, error: &PublishError) -> DeliveryVerdict {
    let api = error
        .source()
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
    match error.kind() {
        PublishErrorKind::StreamNotFound => DeliveryVerdict::Dead(no_stream(subject)),
        PublishErrorKind::MaxPayloadExceeded => {
            DeliveryVerdict::Dead(format!("larger than the server's max_payload: {error}"))
        }
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
            DeliveryVerdict::Dead(format!("refused by the stream: {error}"))
        }
        PublishErrorKind::TimedOut => {
            DeliveryVerdict::Retry("no ack from JetStream in time".into())
        }
        PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            DeliveryVerdict::Retry(error.to_string())
        }
        // The stream answered: 4xx is about this message (too large for the
        // stream, a bad subject), anything else may pass later (full, no
        // leader, storage).
        PublishErrorKind::Other => match api {
            Some(api) if (400..500).contains(&api.code()) => {
                DeliveryVerdict::Dead(format!("refused by the stream: {api}"))
            }
            Some(api) => DeliveryVerdict::Retry(format!("JetStream: {api}")),
            None => DeliveryVerdict::Retry(error.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_of_the_url() {
        assert_eq!(
            split_login("nats://bridge:s%40cret@127.0.0.1:4222"),
            (
                "nats://127.0.0.1:4222".to_string(),
                Some(Login::UserAndPassword("bridge".into(), "s@cret".into()))
            )
        );
        assert_eq!(
            split_login("tls://t0ken@a:4222, tls://b:4222"),
            (
                "tls://a:4222,tls://b:4222".to_string(),
                Some(Login::Token("t0ken".into()))
            )
        );
        assert_eq!(
            split_login("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_string(), None)
        );
        assert_eq!(
            shown_url("nats://s3cret-token@h:4222"),
            "nats://h:4222 (with the login in the URL)"
        );
    }
}
