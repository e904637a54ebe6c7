//! Delivers the outbox to each session's target: one worker per session
//! sends the head of its queue (so order is kept and at most one request
//! per session is in flight), retries what may succeed later, and parks what
//! never will. A hanging receiver only ever delays its own session. How one
//! delivery is sent is the [`Transport`]'s: the webhook's HTTP POST
//! ([`Http`]) or a broker's publish (`crate::nats`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use super::outbox::{Delivery, OutboxError};
use super::outbox_thread::DeliveryLimits;
use super::queue::Queue;
use crate::paths::SessionId;

/// Deliveries a worker reads from its queue at once (when messages go one
/// per POST; at most `max_post_bytes` of them together): acknowledging one
/// then costs no wait for the outbox thread until the run is sent.
const WINDOW: usize = 32;

/// Where a session's deliveries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    /// Sent as `X-Webhook-Token`; never logged.
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Older undelivered deliveries become dead letters.
    pub max_age: Duration,
    /// Signs bodies as `X-Wabridge-Signature: sha256=<hex>` when set.
    pub signing_secret: Option<String>,
    /// Messages per `messages.upsert` POST when a backlog is waiting. 1 (the
    /// default) posts each message alone, as the old bridge did.
    pub max_messages_per_post: usize,
    /// Bodies merged into one POST add up to at most this many bytes (a
    /// message alone may be larger: media travels inside it).
    pub max_post_bytes: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            timeout: Duration::from_secs(15),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            max_age: Duration::from_secs(7 * 24 * 3600),
            signing_secret: None,
            max_messages_per_post: 1,
            max_post_bytes: 256 * 1024,
        }
    }
}

/// What one attempt's result means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryVerdict {
    Delivered,
    /// 5xx, 408, 429, timeouts, connection errors: try again later.
    Retry(String),
    /// Any other 4xx: the receiver will never take it.
    Dead(String),
    /// 413: too large for the receiver; a batch is split and retried.
    TooLarge,
}

/// How deliveries reach one kind of target. The worker loop (order,
/// retries, dead letters, expiry) is the same for every kind.
pub trait Transport: Send + Sync + 'static {
    /// Where one session's deliveries go (a URL and token, a subject).
    type Target: Clone + PartialEq + Send + Sync + std::fmt::Debug + 'static;
    /// What logs call this kind of target: "webhook", "NATS".
    const NAME: &'static str;

    /// The target a session's settings name; None: nothing is queued for
    /// it.
    fn target_of(&self, settings: &crate::session_files::SessionSettings) -> Option<Self::Target>;

    /// Whether deliveries can go now. A broker whose connection is down is
    /// not: its workers wait for [`until_ready`](Transport::until_ready)
    /// instead of spending attempts (and growing backoffs) on it, and go
    /// on the moment it is back.
    fn is_ready(&self) -> bool {
        true
    }

    /// Resolves once the transport is ready again.
    fn until_ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }

    /// Sends one delivery (a message, or a batch of them in one body).
    fn send<'a>(
        &'a self,
        target: &'a Self::Target,
        delivery: &'a Delivery,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = DeliveryVerdict> + Send + 'a>>;
}

/// The webhook: one HTTP POST per delivery.
pub struct Http {
    client: reqwest::Client,
    signing_secret: Option<String>,
}

impl Http {
    pub fn new(settings: &DeliverySettings) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // The ERP's URL is configured; following redirects could turn a
            // POST into a GET somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            client,
            signing_secret: settings.signing_secret.clone(),
        })
    }

    async fn post(&self, target: &Target, delivery: &Delivery) -> Result<u16, String> {
        let mut request = self
            .client
            .post(&target.url)
            .header("Content-Type", "application/json")
            .header("X-Wabridge-Delivery", &delivery.delivery_id)
            .body(delivery.body.clone());
        if let Some(token) = &target.token {
            request = request.header("X-Webhook-Token", token);
        }
        if let Some(secret) = &self.signing_secret {
            // Signed at each attempt: a retry carries its own timestamp, the
            // same id (so the receiver still de-duplicates it).
            let timestamp = wall_clock_ms() / 1000;
            let id = &delivery.delivery_id;
            request = request
                .header("X-Wabridge-Signature", signature(secret, &delivery.body))
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header(
                    "webhook-signature",
                    standard_signature(secret, id, timestamp, &delivery.body),
                );
        }
        // The body of the answer is never read: a huge or garbage reply
        // cannot cost memory or time.
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err("timed out".to_string()),
            Err(e) if e.is_connect() => Err("connection refused or unreachable".to_string()),
            Err(e) => Err(format!("request failed: {}", e.without_url())),
        }
    }
}

impl Transport for Http {
    type Target = Target;
    const NAME: &'static str = "webhook";

    fn target_of(&self, settings: &crate::session_files::SessionSettings) -> Option<Target> {
        settings.webhook_url.as_ref().map(|url| Target {
            url: url.clone(),
            token: settings.webhook_token.clone(),
        })
    }

    fn send<'a>(
        &'a self,
        target: &'a Target,
        delivery: &'a Delivery,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = DeliveryVerdict> + Send + 'a>> {
        Box::pin(async move { judge(self.post(target, delivery).await) })
    }
}

/// Pure: an HTTP status (or a transport error) to a verdict.
pub fn judge(result: Result<u16, String>) -> DeliveryVerdict {
    match result {
        Ok(status) if (200..300).contains(&status) => DeliveryVerdict::Delivered,
        Ok(status @ (408 | 429)) => DeliveryVerdict::Retry(format!("HTTP {status}")),
        Ok(413) => DeliveryVerdict::TooLarge,
        Ok(status) if (400..500).contains(&status) => {
            DeliveryVerdict::Dead(format!("HTTP {status}"))
        }
        Ok(status) => DeliveryVerdict::Retry(format!("HTTP {status}")),
        Err(error) => DeliveryVerdict::Retry(error),
    }
}

/// Delay before retry `attempt` (1-based): the engine's backoff schedule
/// over `retry_base`/`retry_max`, with up to 20% jitter.
pub fn retry_delay(settings: &DeliverySettings, attempt: u32, jitter_seed: u64) -> Duration {
    let policy = crate::engine::backoff::BackoffPolicy {
        base: settings.retry_base,
        max: settings.retry_max,
    };
    policy.jittered_delay(attempt, 0.2, jitter_seed)
}

pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The Standard Webhooks signature (`webhook-signature`): `v1,` and the
/// base64 HMAC-SHA256 of `"<id>.<timestamp>.<body>"`. Signing the delivery id
/// and the time with the body lets a receiver refuse a replayed request (an
/// old timestamp, or an id it has seen). The key is the secret's bytes, or,
/// for a `whsec_…` secret as Standard Webhooks tools generate them, the
/// base64 after the prefix, so their verifiers work unchanged.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| engine.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
}

/// Milliseconds since the Unix epoch as the outbox counts them: the wall
/// clock read once per process, then advanced by the monotonic clock. Ages
/// and retry times stored by this process stay right when the wall clock
/// jumps (NTP correcting a wrong boot clock, an operator setting the date):
/// a jump forward does not expire the whole queue at once, a jump back does
/// not hold retries for as long as it went back.
pub fn now_ms() -> i64 {
    static ANCHOR: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall_ms, at) = ANCHOR.get_or_init(|| (wall_clock_ms(), std::time::Instant::now()));
    wall_ms + at.elapsed().as_millis() as i64
}

/// The wall clock itself, for what a receiver compares with its own clock
/// (the signed `webhook-timestamp`).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long until a retry stored as due at `next_attempt_ms` is due; None
/// when it is due now. No retry is ever scheduled further ahead than the
/// longest retry delay, so a time beyond that was written under a clock
/// that has since been set back (by a run whose clock ran ahead): it is due
/// now rather than in as many days as the clock went back.
pub fn due_in(next_attempt_ms: i64, now_ms: i64, retry_max: Duration) -> Option<Duration> {
    let ahead = Duration::from_millis(u64::try_from(next_attempt_ms - now_ms).ok()?);
    (!ahead.is_zero() && ahead <= retry_max).then_some(ahead)
}

pub struct Deliverer<T: Transport = Http> {
    outbox: Queue,
    transport: T,
    settings: DeliverySettings,
}

impl Deliverer<Http> {
    /// The webhook's deliverer.
    pub fn new(outbox: impl Into<Queue>, settings: DeliverySettings) -> Result<Deliverer, String> {
        let transport = Http::new(&settings)?;
        Ok(Deliverer::over(outbox, transport, settings))
    }
}

impl<T: Transport> Deliverer<T> {
    pub fn over(
        outbox: impl Into<Queue>,
        transport: T,
        settings: DeliverySettings,
    ) -> Deliverer<T> {
        Deliverer {
            outbox: outbox.into(),
            transport,
            settings,
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Delivers one session's queue until `target` is closed. `wake` is
    /// notified on every enqueue; `target` is `None` while the session has no
    /// target (deliveries wait).
    pub async fn run_session(
        self: Arc<Self>,
        session: SessionId,
        mut target: watch::Receiver<Option<T::Target>>,
        wake: Arc<Notify>,
    ) {
        // Outbox failures in a row (disk full, say): each waits longer, so
        // a receiver that keeps answering is not re-sent the same delivery
        // as fast as it answers while its acks cannot be written.
        let mut failures = 0u32;
        // The deliveries read at once from the queue, sent front first.
        let mut window = VecDeque::new();
        loop {
            // The hub dropped this worker (its session was deleted): stop
            // before touching the queue a new session of the id may own.
            if target.has_changed().is_err() {
                return;
            }
            let current = target.borrow_and_update().clone();
            let step = self
                .next_step(&session, current.as_ref(), &mut window)
                .await;
            let wait = match step {
                Ok(wait) => {
                    failures = 0;
                    wait
                }
                Err(e) => {
                    failures += 1;
                    window.clear();
                    let delay = retry_delay(&self.settings, failures, now_ms() as u64);
                    tracing::error!(
                        "{} outbox of {session}: {e}; trying again in {}",
                        T::NAME,
                        humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                    );
                    Some(delay)
                }
            };
            // More is due now: go on without a timer, whose ~1 ms
            // granularity would cap delivery near 1,000 per second.
            if wait == Some(Duration::ZERO) {
                tokio::task::yield_now().await;
                continue;
            }
            // What was read may be stale by the time the worker wakes (a
            // dead letter replayed ahead of it): read afresh then.
            window.clear();
            let sleep = async {
                match wait {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
            };
            let away = !self.transport.is_ready();
            tokio::select! {
                _ = sleep => {}
                _ = wake.notified() => {}
                _ = self.transport.until_ready(), if away => {}
                changed = target.changed() => if changed.is_err() { return },
            }
        }
    }

    fn limits(&self) -> DeliveryLimits {
        DeliveryLimits {
            max_messages: self.settings.max_messages_per_post,
            max_bytes: self.settings.max_post_bytes,
            window: WINDOW,
        }
    }

    /// Takes the front of `window` (reading the queue first when it is
    /// empty) and sends it if due. Returns how long to wait before looking
    /// again: `Some(0)` at once, None until woken.
    async fn next_step(
        &self,
        session: &SessionId,
        target: Option<&T::Target>,
        window: &mut VecDeque<Delivery>,
    ) -> Result<Option<Duration>, OutboxError> {
        // Nowhere to send it: sleep until told.
        let Some(target) = target else {
            return Ok(None);
        };
        // The target is away: sleep until it is back (or told).
        if !self.transport.is_ready() {
            return Ok(None);
        }
        if window.is_empty() {
            let read = self
                .outbox
                .next_deliveries(session, self.limits(), now_ms())
                .await?;
            window.extend(read);
        }
        match window.pop_front() {
            Some(delivery) => self.attempt_if_due(session, target, delivery, window).await,
            None => Ok(None),
        }
    }

    /// Sends `delivery` if it is due and records the outcome; `window` holds
    /// the deliveries queued behind it.
    async fn attempt_if_due(
        &self,
        session: &SessionId,
        target: &T::Target,
        delivery: Delivery,
        window: &mut VecDeque<Delivery>,
    ) -> Result<Option<Duration>, OutboxError> {
        let now = now_ms();
        let members = delivery.members.clone();
        if let Some(wait) = due_in(delivery.next_attempt_ms, now, self.settings.retry_max) {
            return Ok(Some(wait));
        }
        if now - delivery.created_ms > self.settings.max_age.as_millis() as i64 {
            let reason = format!(
                "expired: undelivered for more than {}",
                humantime::format_duration(self.settings.max_age)
            );
            tracing::error!(
                "{} delivery {} for {session} {reason}; kept as a dead letter",
                T::NAME,
                delivery.delivery_id
            );
            self.outbox.bury(session, members, reason).await?;
            return Ok(Some(Duration::ZERO));
        }
        let verdict = match self.transport.send(target, &delivery).await {
            // One message too large on its own can never get through.
            DeliveryVerdict::TooLarge if delivery.members.len() < 2 => {
                DeliveryVerdict::Dead("HTTP 413".into())
            }
            verdict => verdict,
        };
        if verdict != DeliveryVerdict::Delivered {
            // The queue's head changes: what was read behind it waits.
            window.clear();
        }
        match verdict {
            // More was read behind it: record this one without waiting (the
            // outbox thread runs it before anything sent later) and go on.
            DeliveryVerdict::Delivered if !window.is_empty() => {
                self.outbox.ack_detached(session, members);
            }
            DeliveryVerdict::Delivered => {
                // One trip to the outbox for the ack and the next run.
                let next = self
                    .outbox
                    .ack_and_next(session, members, self.limits(), now_ms())
                    .await?;
                window.extend(next);
                // An empty queue: sleep until an enqueue wakes the worker
                // (a wake-up sent meanwhile is kept by the Notify).
                return Ok((!window.is_empty()).then_some(Duration::ZERO));
            }
            DeliveryVerdict::Retry(error) => {
                let attempt = delivery.attempts + 1;
                let delay = retry_delay(&self.settings, attempt, delivery.seq as u64 ^ now as u64);
                tracing::warn!(
                    "{} delivery {} for {session} failed ({error}); retry {attempt} in {}",
                    T::NAME,
                    delivery.delivery_id,
                    humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                );
                let at = now + delay.as_millis() as i64;
                self.outbox.retry_later(session, members, at, error).await?;
            }
            DeliveryVerdict::TooLarge => {
                tracing::warn!(
                    "{} refused batch {} for {session} as too large; sending it in two halves",
                    T::NAME,
                    delivery.delivery_id,
                );
                self.outbox.split_batch(session, members).await?;
            }
            DeliveryVerdict::Dead(reason) => {
                tracing::error!(
                    "{} refused delivery {} for {session} ({reason}); kept as a dead letter",
                    T::NAME,
                    delivery.delivery_id,
                );
                self.outbox.bury(session, members, reason).await?;
            }
        }
        Ok(Some(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_statuses_like_the_contract() {
        assert_eq!(judge(Ok(200)), DeliveryVerdict::Delivered);
        assert_eq!(judge(Ok(204)), DeliveryVerdict::Delivered);
        for status in [408, 429, 500, 502, 503] {
            assert!(
                matches!(judge(Ok(status)), DeliveryVerdict::Retry(_)),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(judge(Ok(status)), DeliveryVerdict::Dead(_)),
                "{status}"
            );
        }
        assert_eq!(judge(Ok(413)), DeliveryVerdict::TooLarge);
        assert!(matches!(
            judge(Err("timed out".into())),
            DeliveryVerdict::Retry(_)
        ));
        // A redirect is not a delivery; it may work later once fixed.
        assert!(matches!(judge(Ok(302)), DeliveryVerdict::Retry(_)));
    }

    #[test]
    fn a_retry_time_beyond_the_longest_delay_is_due_now() {
        let max = Duration::from_secs(300);
        assert_eq!(due_in(1_000, 1_000, max), None);
        assert_eq!(due_in(500, 1_000, max), None, "overdue");
        assert_eq!(due_in(3_000, 1_000, max), Some(Duration::from_secs(2)));
        assert_eq!(
            due_in(1_000 + 86_400_000, 1_000, max),
            None,
            "stored under a clock a day ahead"
        );
    }

    #[test]
    fn retry_delay_grows_caps_and_jitters_down_only() {
        let settings = DeliverySettings {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            ..DeliverySettings::default()
        };
        assert_eq!(retry_delay(&settings, 1, 0), Duration::from_secs(2));
        assert_eq!(retry_delay(&settings, 3, 0), Duration::from_secs(8));
        assert_eq!(retry_delay(&settings, 30, 0), Duration::from_secs(300));
        let jittered = retry_delay(&settings, 3, 999);
        assert!(jittered < Duration::from_secs(8) && jittered >= Duration::from_millis(6400));
    }

    #[test]
    fn standard_signature_follows_the_standard_webhooks_vector() {
        // The example of the Standard Webhooks specification.
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // A plain secret is used as it is.
        assert_ne!(
            standard_signature("plain", "id", 1, body),
            standard_signature("other", "id", 1, body)
        );
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
