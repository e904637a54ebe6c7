//! Webhook forwarding with durability on, against a loopback receiver in
//! the same process:
//! - rate: messages persisted to the outbox and delivered one per POST,
//!   one after the other (per-session order), next to a raw reqwest
//!   keep-alive loop posting the same bodies to the same receiver in the
//!   same run; published one at a time (live messages: the library hands
//!   them over as batches of one and waits for each fsync, so the disk's
//!   fsync time bounds them, printed beside) and 50 at a time (an offline
//!   queue after a reconnect);
//! - latency: enqueue → 2xx at a steady 1,000 msg/s, p50/p99;
//! - drain: a 1,000,000-message backlog left on disk (receiver down), then
//!   drained by a fresh process-worth of hub, one message per POST (the
//!   default) and 50 per POST (`webhook.max_messages_per_post`): rate and
//!   peak RSS.
//!
//! Prints figures; asserts none. Run: `cargo bench --bench webhook_forwarding`

#[path = "shared/live_traffic.rs"]
mod live_traffic;
#[path = "shared/peak_rss.rs"]
mod peak_rss;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::{DeliverySettings, Target, now_ms};
use wabridge::webhook::hub::WebhookHub;
use wabridge::webhook::outbox::Outbox;
use wabridge::webhook::payload::WebhookEvent;

use live_traffic::{message, publish_all};
use peak_rss::peak_rss_mib;

const RATE_MESSAGES: usize = 5_000;
const STEADY_RATE: u64 = 1_000;
const STEADY_SECONDS: u64 = 5;
const BACKLOG: usize = 1_000_000;
/// Sessions receiving live messages at once.
const LIVE_SESSIONS: usize = 20;

/// Arrival instants by message id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> &'static str {
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(id) = value["messages"][0]["id"].as_str() {
        arrivals
            .lock()
            .unwrap()
            .insert(id.to_string(), Instant::now());
    }
    "ok"
}

async fn start_receiver() -> (String, Arrivals) {
    let arrivals = Arrivals::default();
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, arrivals)
}

/// Mean time of an 8 KiB append + fdatasync in `dir`: what one commit of
/// the outbox waits for at least.
fn fsync_micros(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    const ROUNDS: u32 = 1_000;
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        file.write_all(&[0; 8192]).unwrap();
        file.sync_data().unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

async fn wait_for(arrivals: &Arrivals, count: usize) {
    while arrivals.lock().unwrap().len() < count {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // On a worker like every task of the program (and the raw loop): the
    // main future runs on a thread of its own, which would put either side
    // a thread hop away from its connections.
    tokio::spawn(run()).await.unwrap();
}

async fn run() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, arrivals) = start_receiver().await;
    let session = SessionId::parse("shop").unwrap();

    // Raw: the same bodies, one after the other, on one keep-alive client.
    let client = reqwest::Client::new();
    let started = Instant::now();
    for n in 0..RATE_MESSAGES {
        let body = message(&format!("raw-{n}")).body("shop");
        client.post(&url).body(body).send().await.unwrap();
    }
    let raw_rate = RATE_MESSAGES as f64 / started.elapsed().as_secs_f64();

    // Ours: persisted first, then delivered by the session's worker.
    let hub = WebhookHub::open(
        &DataDir::new(tmp.path().join("rate")),
        DeliverySettings::default(),
    )
    .unwrap();
    hub.set_target(
        &session,
        Some(Target {
            url: url.clone(),
            token: Some("erp".into()),
        }),
    );
    let fsync = fsync_micros(tmp.path());
    println!(
        "disk: an 8 KiB append + fdatasync takes {fsync:.0} µs: one session publishing one message at a time reaches at most {:.0} msg/s",
        1e6 / fsync
    );
    // One message per publish (a live trickle), then batches of 50 (how an
    // offline queue drains after a reconnect).
    for batch in [1, 50] {
        arrivals.lock().unwrap().clear();
        let started = Instant::now();
        for chunk in (0..RATE_MESSAGES).collect::<Vec<_>>().chunks(batch) {
            let events: Vec<(WebhookEvent, String)> = chunk
                .iter()
                .map(|n| {
                    (
                        message(&format!("ours-{batch}-{n}")),
                        format!("k{batch}-{n}"),
                    )
                })
                .collect();
            let refs: Vec<(&WebhookEvent, Option<&str>)> =
                events.iter().map(|(e, k)| (e, Some(k.as_str()))).collect();
            hub.publish_batch(&session, &refs).await.unwrap();
        }
        wait_for(&arrivals, RATE_MESSAGES).await;
        let ours_rate = RATE_MESSAGES as f64 / started.elapsed().as_secs_f64();
        println!(
            "forwarding, published {batch} at a time, 1 per POST: {ours_rate:.0} msg/s durable vs {raw_rate:.0} msg/s raw reqwest ({:.2}×)",
            ours_rate / raw_rate
        );
    }

    many_sessions_live(&hub, &client, &url, &arrivals).await;

    // Steady 1,000 msg/s: enqueue → 2xx.
    arrivals.lock().unwrap().clear();
    let mut enqueued = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    let total = (STEADY_RATE * STEADY_SECONDS) as usize;
    for n in 0..total {
        tick.tick().await;
        let id = format!("steady-{n}");
        enqueued.insert(id.clone(), Instant::now());
        hub.publish_batch(&session, &[(&message(&id), Some(&id))])
            .await
            .unwrap();
    }
    wait_for(&arrivals, total).await;
    let mut latencies: Vec<f64> = {
        let arrivals = arrivals.lock().unwrap();
        enqueued
            .iter()
            .map(|(id, at)| arrivals[id].duration_since(*at).as_secs_f64() * 1000.0)
            .collect()
    };
    latencies.sort_by(f64::total_cmp);
    println!(
        "at {STEADY_RATE} msg/s for {STEADY_SECONDS}s: enqueue→2xx p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );

    // A million messages left on disk while the ERP was down, then drained:
    // one per POST (the old bridge's way, the default), then 50 per POST
    // (`webhook.max_messages_per_post = 50`).
    for per_post in [1, 50] {
        drain_backlog(
            &tmp.path().join(format!("backlog-{per_post}")),
            per_post,
            raw_rate,
        )
        .await;
    }
}

/// Live traffic of a busy bridge: `LIVE_SESSIONS` sessions each publishing
/// one message at a time (as the library hands live messages over), their
/// commits grouped, each session's worker posting its own queue; next to
/// as many raw reqwest loops at once, in the same run.
async fn many_sessions_live(
    hub: &Arc<WebhookHub>,
    client: &reqwest::Client,
    url: &str,
    arrivals: &Arrivals,
) {
    let per_session = RATE_MESSAGES / LIVE_SESSIONS;
    let started = Instant::now();
    let raw: Vec<_> = (0..LIVE_SESSIONS)
        .map(|s| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                for n in 0..per_session {
                    let body = message(&format!("raw-live-{s}-{n}")).body("shop");
                    client.post(&url).body(body).send().await.unwrap();
                }
            })
        })
        .collect();
    for task in raw {
        task.await.unwrap();
    }
    let raw_rate = (per_session * LIVE_SESSIONS) as f64 / started.elapsed().as_secs_f64();

    arrivals.lock().unwrap().clear();
    let sessions: Vec<SessionId> = (0..LIVE_SESSIONS)
        .map(|s| SessionId::parse(&format!("live-{s}")).unwrap())
        .collect();
    for session in &sessions {
        hub.set_target(
            session,
            Some(Target {
                url: url.to_string(),
                token: Some("erp".into()),
            }),
        );
    }
    let started = publish_all(hub, &sessions, per_session).await;
    wait_for(arrivals, per_session * LIVE_SESSIONS).await;
    let ours_rate = (per_session * LIVE_SESSIONS) as f64 / started.elapsed().as_secs_f64();
    println!(
        "forwarding, {LIVE_SESSIONS} sessions each publishing 1 at a time, 1 per POST: {ours_rate:.0} msg/s durable vs {raw_rate:.0} msg/s from {LIVE_SESSIONS} raw reqwest loops ({:.2}×)",
        ours_rate / raw_rate
    );
}

async fn drain_backlog(root: &std::path::Path, per_post: usize, raw_rate: f64) {
    let data = DataDir::new(root);
    let session = SessionId::parse("shop").unwrap();
    let started = Instant::now();
    {
        std::fs::create_dir_all(data.root().join("outbox")).unwrap();
        let outbox = Outbox::open(&data.root().join("outbox").join("outbox.db")).unwrap();
        let body = message("backlog").body("shop");
        for chunk in 0..BACKLOG / 1000 {
            let keys: Vec<String> = (0..1000).map(|n| format!("b{chunk}-{n}")).collect();
            let items: Vec<(Option<&str>, &[u8])> = keys
                .iter()
                .map(|k| (Some(k.as_str()), body.as_slice()))
                .collect();
            outbox.enqueue_batch("shop", &items, now_ms()).unwrap();
        }
    }
    println!(
        "backlog: {BACKLOG} messages queued in {:.1}s; peak RSS so far {:.1} MiB",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    // Counts messages, not requests: a POST may carry several.
    let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let drain_url = {
        let counted = counted.clone();
        let router = Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let counted = counted.clone();
                async move {
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let n = body["messages"].as_array().map_or(0, Vec::len);
                    counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    };
    let settings = DeliverySettings {
        max_messages_per_post: per_post,
        ..DeliverySettings::default()
    };
    let hub = WebhookHub::open(&data, settings).unwrap();
    let started = Instant::now();
    hub.set_target(
        &session,
        Some(Target {
            url: drain_url,
            token: None,
        }),
    );
    while counted.load(std::sync::atomic::Ordering::Relaxed) < BACKLOG {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_rate = BACKLOG as f64 / started.elapsed().as_secs_f64();
    println!(
        "drain, {per_post} per POST: {BACKLOG} messages at {drain_rate:.0} msg/s ({:.2}× raw); peak RSS of the whole bench {:.1} MiB",
        drain_rate / raw_rate,
        peak_rss_mib()
    );
}
